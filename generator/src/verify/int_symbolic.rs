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

use super::bounds::{bias_i64, step_of, IntBounds};
use crate::int_model::{IntNetwork, LayerOutput};
use ndarray::{Array1, Array2};

/// Relative widening for f64 rounding.
const MARGIN: f64 = 1e-9;

/// One neuron's linear bounds `lower_slope * u + lower_offset <= h <= upper_slope * u +
/// upper_offset` on its accumulator's range (slopes >= 0).
#[derive(Clone, Copy, Debug)]
struct Relaxation {
    lower_slope: f64,
    lower_offset: f64,
    upper_slope: f64,
    upper_offset: f64,
}

impl Relaxation {
    fn constant(c: f64) -> Relaxation {
        Relaxation {
            lower_slope: 0.0,
            lower_offset: c,
            upper_slope: 0.0,
            upper_offset: c,
        }
    }
}

/// `clamp(u + e, lo, hi)` for `u` in `[ul, uh]` and `e` in `[el, eh]`, bounded linearly in `u`.
fn clamp_relaxation(ul: f64, uh: f64, el: f64, eh: f64, lo: f64, hi: f64) -> Relaxation {
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
    if lower.0 == 0.0 && upper.0 == 0.0 && lower.1 == upper.1 {
        return Relaxation::constant(lower.1);
    }
    Relaxation {
        lower_slope: lower.0,
        lower_offset: lower.1 + lower.0 * el,
        upper_slope: upper.0,
        upper_offset: upper.1 + upper.0 * eh,
    }
}

/// Upper bounds of `rows · u_top` (`u_top` the dequantized accumulators of layer `top`), by
/// substitution through the relaxations of the layers below, down to the dequantized input in
/// `input` (intervals).
fn back_substitute(
    layers: &[(Array2<f64>, Array1<f64>)],
    relaxations: &[Vec<Relaxation>],
    input: &[(f64, f64)],
    top: usize,
    mut coef: Array2<f64>,
) -> Vec<f64> {
    let rows = coef.nrows();
    let (mut bound, mut magnitude) = (Array1::<f64>::zeros(rows), Array1::<f64>::zeros(rows));
    for l in (0..=top).rev() {
        let (w, b) = &layers[l];
        bound += &coef.dot(b);
        magnitude += &coef.mapv(f64::abs).dot(&b.mapv(f64::abs));
        coef = coef.dot(w);
        if l == 0 {
            break;
        }
        let relax = &relaxations[l - 1];
        let column = |f: fn(&Relaxation) -> f64| relax.iter().map(f).collect::<Array1<f64>>();
        let positive = coef.mapv(|a| a.max(0.0));
        let negative = &coef - &positive;
        let (upper_offset, lower_offset) = (column(|r| r.upper_offset), column(|r| r.lower_offset));
        bound += &(positive.dot(&upper_offset) + negative.dot(&lower_offset));
        magnitude += &(positive.dot(&upper_offset.mapv(f64::abs))
            - negative.dot(&lower_offset.mapv(f64::abs)));
        coef = positive * &column(|r| r.upper_slope) + negative * &column(|r| r.lower_slope);
    }
    let lo: Array1<f64> = input.iter().map(|i| i.0).collect();
    let hi: Array1<f64> = input.iter().map(|i| i.1).collect();
    let mag: Array1<f64> = input.iter().map(|i| i.0.abs().max(i.1.abs())).collect();
    let positive = coef.mapv(|a| a.max(0.0));
    let negative = &coef - &positive;
    bound += &(positive.dot(&hi) + negative.dot(&lo));
    magnitude += &coef.mapv(f64::abs).dot(&mag);
    bound
        .iter()
        .zip(&magnitude)
        .map(|(b, m)| b + MARGIN * (1.0 + m))
        .collect()
}

/// `d[j][k]`: an upper bound of `logit_j - logit_k` (the integer logits) over the box whose
/// integer interval bounds are `ib`; `None` when the network has no layer.
pub fn symbolic_logit_differences(int: &IntNetwork, ib: &IntBounds) -> Option<Vec<Vec<f64>>> {
    let last = int.layers.last()?;
    // The dequantized input of layer 0: every value the saturated quantized input can take.
    let input: Vec<(f64, f64)> = ib
        .input
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let s = int.input.scale(i);
            (q.lo as f64 * s, q.hi as f64 * s)
        })
        .collect();
    let mut in_scale: Vec<f64> = (0..input.len()).map(|i| int.input.scale(i)).collect();
    let mut layers = Vec::with_capacity(int.layers.len());
    let mut relaxations: Vec<Vec<Relaxation>> = Vec::new();
    for (l, layer) in int.layers.iter().enumerate() {
        let n = layer.inputs;
        if in_scale.len() != n || ib.acc.get(l).is_none_or(|a| a.len() != layer.outputs) {
            return None;
        }
        let bias = bias_i64(&layer.bias);
        let w = Array2::from_shape_fn((layer.outputs, n), |(o, i)| {
            f64::from(layer.weights[o * n + i]) * layer.acc_scale[o] / in_scale[i]
        });
        let b = Array1::from_shape_fn(layer.outputs, |o| bias[o] as f64 * layer.acc_scale[o]);
        layers.push((w, b));
        let LayerOutput::Activations {
            range,
            requant,
            scale: out_scale,
            ..
        } = &layer.output
        else {
            break;
        };
        // The accumulators' range: the symbolic bound, within the integer intervals.
        let m = layer.outputs;
        let both = Array2::from_shape_fn((2 * m, m), |(r, o)| match r {
            r if r == o => 1.0,
            r if r == o + m => -1.0,
            _ => 0.0,
        });
        let symbolic = back_substitute(&layers, &relaxations, &input, l, both);
        let (lo, hi) = (
            f64::from(range.min) * out_scale,
            f64::from(range.max) * out_scale,
        );
        let relax = (0..m)
            .map(|o| {
                let acc = ib.acc[l][o];
                let s = layer.acc_scale[o];
                let ul = (acc.lo as f64 * s).max(-symbolic[o + m]);
                let uh = (acc.hi as f64 * s).min(symbolic[o]);
                // y = floor(acc * r + 1/2): y * out_scale - acc * s lies within
                // acc * (r * out_scale - s) +- out_scale / 2.
                let step = step_of(requant, o);
                let r = f64::from(step.multiplier) / 2f64.powi(i32::from(step.shift.min(62)));
                let rho = r * out_scale - s;
                let (a, c) = (rho * acc.lo as f64, rho * acc.hi as f64);
                let margin = MARGIN * (1.0 + a.abs().max(c.abs()) + out_scale);
                let (el, eh) = (
                    a.min(c) - 0.5 * out_scale - margin,
                    a.max(c) + 0.5 * out_scale + margin,
                );
                clamp_relaxation(ul.min(uh), uh.max(ul), el, eh, lo, hi)
            })
            .collect();
        relaxations.push(relax);
        in_scale = vec![*out_scale; m];
    }
    if layers.len() != int.layers.len() {
        return None;
    }
    // Row `j * classes + k` is `e_j / s_j - e_k / s_k`: logits are accumulators.
    let classes = last.outputs;
    let rows = Array2::from_shape_fn((classes * classes, classes), |(r, o)| {
        let (j, k) = (r / classes, r % classes);
        if j == k {
            0.0
        } else if o == j {
            1.0 / last.acc_scale[o]
        } else if o == k {
            -1.0 / last.acc_scale[o]
        } else {
            0.0
        }
    });
    let top = int.layers.len() - 1;
    let bounds = back_substitute(&layers, &relaxations, &input, top, rows);
    Some(bounds.chunks(classes).map(<[f64]>::to_vec).collect())
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
