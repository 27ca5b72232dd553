//! Symbolic (DeepPoly-style) bounds on the integer network itself.
//!
//! In real numbers the integer network is a ReLU-like network whose weights are the dequantized
//! integer weights: a layer's accumulator, dequantized, is `u = W' h' + b'` exactly (`W'`, `b'`
//! the integer weights and bias times their scales, `h'` the dequantized inputs), and a hidden
//! neuron's dequantized output is `clamp(u + e, lo, hi)`, where `e` is what requantization adds
//! (half an output step of rounding plus the multiplier's relative error times the accumulator)
//! and `[lo, hi]` the saturation range. Every function of the chain is monotone, so each neuron
//! gets linear lower and upper bounds in `u` over its range (DeepPoly's relaxations, with `e`
//! folded into the offsets), and a linear form over the logits is bounded by substituting
//! layer after layer down to the dequantized input. Only rounding enters as error, not the
//! weights' quantization: where the differential bound ([`super::differential`]) adds the
//! weight error times every activation, this bound keeps the integer weights exact, so on wide
//! layers it is far tighter. f64 rounding is covered by a relative margin.

use super::bounds::{
    bias_i64, both_directions, requantization_error, step_of, IntBounds, Interval,
};
use super::substitution::{back_substitute, by_pair, pair_rows, NeuronBounds};
use crate::int_model::{IntNetwork, LayerOutput};
use ndarray::{Array1, Array2};

/// `clamp(u + e, lo, hi)` for `u` in `[ul, uh]` and `e` in `[el, eh]`, bounded linearly in `u`.
fn clamp_relaxation(ul: f64, uh: f64, el: f64, eh: f64, lo: f64, hi: f64) -> NeuronBounds {
    let (vl, vh) = (ul + el, uh + eh);
    // Bounds in `v = u + e` first (slopes >= 0), then `e` moves into the offsets.
    let (lower, upper): ((f64, f64), (f64, f64)) = if vh <= lo {
        ((0.0, lo), (0.0, lo))
    } else if vl >= hi {
        ((0.0, hi), (0.0, hi))
    } else if vl >= lo && vh <= hi {
        ((1.0, 0.0), (1.0, 0.0))
    } else {
        // clamp(v) <= max(v, lo), convex: below its chord over [vl, vh]; and <= hi.
        let upper = if vl < lo {
            let slope = (vh.max(lo) - lo) / (vh - vl);
            (slope, lo - slope * vl)
        } else if vh - hi > hi - vl {
            (0.0, hi)
        } else {
            (1.0, 0.0)
        };
        // clamp(v) >= min(v, hi), concave: above its chord over [vl, vh]; and >= lo.
        let lower = if vh > hi {
            let slope = (hi - vl.min(hi)) / (vh - vl);
            (slope, vl.min(hi) - slope * vl)
        } else if vh - lo > lo - vl {
            (1.0, 0.0)
        } else {
            (0.0, lo)
        };
        (lower, upper)
    };
    NeuronBounds {
        lower_slope: lower.0,
        lower_offset: lower.1 + lower.0 * el,
        upper_slope: upper.0,
        upper_offset: upper.1 + upper.0 * eh,
    }
}

/// The integer network in real numbers, layer by layer: the dequantized weights (integer
/// weight times the accumulator's scale over the input's scale) and biases, so that a layer's
/// dequantized accumulator is exactly `weights · h' + bias` for its dequantized inputs `h'`.
/// `None` when a layer's width does not match the layer below.
pub(crate) fn dequantized_layers(int: &IntNetwork) -> Option<Vec<(Array2<f64>, Array1<f64>)>> {
    let mut in_scale: Vec<f64> = (0..int.input_len()).map(|i| int.input.scale(i)).collect();
    let mut layers = Vec::with_capacity(int.layers.len());
    for layer in &int.layers {
        let n = layer.inputs;
        if in_scale.len() != n {
            return None;
        }
        let weights = Array2::from_shape_fn((layer.outputs, n), |(o, i)| {
            f64::from(layer.weights[o * n + i]) * layer.acc_scale[o] / in_scale[i]
        });
        let bias = bias_i64(&layer.bias);
        let bias = Array1::from_shape_fn(layer.outputs, |o| bias[o] as f64 * layer.acc_scale[o]);
        if let LayerOutput::Activations { scale, .. } = &layer.output {
            in_scale = vec![*scale; layer.outputs];
        }
        layers.push((weights, bias));
    }
    Some(layers)
}

/// `d[j][k]`: an upper bound of `logit_j - logit_k` (the integer logits) over the box whose
/// integer interval bounds are `ib`; `None` when the network has no layer.
pub fn symbolic_logit_differences(int: &IntNetwork, ib: &IntBounds) -> Option<Vec<Vec<f64>>> {
    let (last, hidden) = int.layers.split_last()?;
    if ib.input.len() != int.input_len() {
        return None;
    }
    // The dequantized input of layer 0: every value the saturated quantized input can take.
    let input: Vec<Interval<f64>> = ib
        .input
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let s = int.input.scale(i);
            Interval {
                lo: q.lo as f64 * s,
                hi: q.hi as f64 * s,
            }
        })
        .collect();
    // `u_l = weights[l] h'_(l-1) + biases[l]`, exactly.
    let layers = dequantized_layers(int)?;
    let weights: Vec<&Array2<f64>> = layers.iter().map(|(w, _)| w).collect();
    let biases: Vec<Vec<Interval<f64>>> = layers
        .iter()
        .map(|(_, b)| b.iter().map(|v| Interval { lo: *v, hi: *v }).collect())
        .collect();
    let mut neurons: Vec<Vec<NeuronBounds>> = Vec::new();
    for (l, layer) in hidden.iter().enumerate() {
        let LayerOutput::Activations {
            range,
            requant,
            scale: out_scale,
            ..
        } = &layer.output
        else {
            return None;
        };
        let m = layer.outputs;
        if ib.acc.get(l).is_none_or(|a| a.len() != m) {
            return None;
        }
        // The accumulators' range: the symbolic bound, within the integer intervals.
        let symbolic = back_substitute(&weights, &biases, &neurons, &input, l, both_directions(m));
        let (lo, hi) = (
            f64::from(range.min) * out_scale,
            f64::from(range.max) * out_scale,
        );
        let layer_bounds = (0..m)
            .map(|o| {
                let acc = ib.acc[l][o];
                let s = layer.acc_scale[o];
                let ul = (acc.lo as f64 * s).max(-symbolic[o + m]);
                let uh = (acc.hi as f64 * s).min(symbolic[o]);
                let e = requantization_error(step_of(requant, o), s, *out_scale, acc);
                clamp_relaxation(ul.min(uh), uh.max(ul), e.lo, e.hi, lo, hi)
            })
            .collect();
        neurons.push(layer_bounds);
    }
    // Logits are accumulators: `logit_o = u_o / acc_scale_o`.
    let classes = last.outputs;
    let rows = pair_rows(classes, |o| 1.0 / last.acc_scale[o]);
    let bounds = back_substitute(&weights, &biases, &neurons, &input, hidden.len(), rows);
    Some(by_pair(&bounds, classes))
}

/// A sound upper bound of `c · acc_L` (the integer network's logits) over the box `ib` was
/// computed on, by back-substitution as [`float_linear_upper_bound`]: each saturation
/// `clamp(y, lo, hi)` is replaced by its chord above or below (the hull the encoding's cuts
/// also use), each rounding `y = floor(acc * M / 2^S + 1/2)` by `acc * M / 2^S ± 1/2`, down to
/// the quantized input, bounded by its box. Never looser than intervals.
pub fn int_linear_upper_bound(net: &IntNetwork, ib: &IntBounds, c: &[f64]) -> f64 {
    let mut coef: Vec<f64> = c.to_vec();
    let mut constant = 0.0f64;
    let mut magnitude = 0.0f64;
    for (l, layer) in net.layers.iter().enumerate().rev() {
        // acc_l = b + W in_l.
        for (a, b) in coef.iter().zip(bias_i64(&layer.bias)) {
            constant += a * b as f64;
            magnitude += (a * b as f64).abs();
        }
        let n = layer.inputs.max(1);
        let mut below = vec![0.0f64; layer.inputs];
        for (a, row) in coef.iter().zip(layer.weights.chunks(n)) {
            if *a == 0.0 {
                continue;
            }
            for (acc, w) in below.iter_mut().zip(row) {
                *acc += a * f64::from(*w);
            }
        }
        coef = below;
        if l == 0 {
            break;
        }
        // in_l = clamp(floor(acc_{l-1} * r + 1/2), lo, hi), per output of layer l-1.
        let previous = &net.layers[l - 1];
        let LayerOutput::Activations { range, requant, .. } = &previous.output else {
            return f64::INFINITY;
        };
        let (lo, hi) = (f64::from(range.min), f64::from(range.max));
        for (o, a) in coef.iter_mut().enumerate() {
            let y = ib.requant[l - 1][o];
            let (yl, yh) = (y.lo as f64, y.hi as f64);
            let out = ib.out[l - 1][o];
            let (hl, hh) = (out.lo as f64, out.hi as f64);
            // in <= / >= slope * y + offset, the chord chosen for the coefficient's sign.
            let (slope, offset) = if hl == hh {
                (0.0, hl)
            } else if yl >= lo && yh <= hi {
                (1.0, 0.0)
            } else if *a >= 0.0 {
                // Above: the chord from (yl, hl) to (min(hi, yh), hh).
                let s = (hh - hl) / (hi.min(yh) - yl);
                (s, hl - s * yl)
            } else {
                // Below: the chord from (max(lo, yl), hl) to (yh, hh).
                let s = (hh - hl) / (yh - lo.max(yl));
                (s, hl - s * lo.max(yl))
            };
            constant += *a * offset;
            magnitude += (*a * offset).abs();
            let on_y = *a * slope;
            // y <= acc * r + 1/2 and y >= acc * r - 1/2: |on_y| / 2 covers either sign.
            constant += on_y.abs() * 0.5;
            let step = step_of(requant, o);
            let r = f64::from(step.multiplier) / 2f64.powi(i32::from(step.shift.min(62)));
            *a = on_y * r;
        }
    }
    let mut bound = constant;
    for (a, q) in coef.iter().zip(&ib.input) {
        let term = (a * q.lo as f64).max(a * q.hi as f64);
        bound += term;
        magnitude += term.abs() + (a * q.lo as f64).abs();
    }
    let linear = bound + 1e-9 * (1.0 + magnitude);
    let Some(last) = ib.acc.last() else {
        return linear;
    };
    let interval: f64 = c
        .iter()
        .zip(last)
        .map(|(a, i)| (a * i.lo as f64).max(a * i.hi as f64))
        .sum();
    linear.min(interval)
}

#[cfg(test)]
mod tests {
    use super::clamp_relaxation;

    /// Every relaxation holds on a grid of its range, for every noise value.
    #[test]
    fn clamp_relaxations_hold_on_their_range() {
        let cases = [
            (-3.0, 5.0),
            (-3.0, -1.0),
            (0.5, 0.9),
            (0.2, 7.0),
            (-2.0, 0.5),
            (2.5, 6.0),
            (-0.1, 0.1),
        ];
        for (ul, uh) in cases {
            for (el, eh) in [(0.0, 0.0), (-0.05, 0.05), (-0.3, 0.1)] {
                let r = clamp_relaxation(ul, uh, el, eh, 0.0, 2.0);
                for i in 0..=100 {
                    let u = ul + (uh - ul) * f64::from(i) / 100.0;
                    for t in 0..=10 {
                        let e = el + (eh - el) * f64::from(t) / 10.0;
                        let h = (u + e).clamp(0.0, 2.0);
                        let (lower, upper) = (
                            r.lower_slope * u + r.lower_offset,
                            r.upper_slope * u + r.upper_offset,
                        );
                        assert!(
                            lower <= h + 1e-12 && h <= upper + 1e-12,
                            "u {u} e {e}: {h} outside [{lower}, {upper}] ({ul}, {uh}, {el}, {eh})"
                        );
                    }
                }
            }
        }
    }
}
