//! Differential bounds: how far the integer network's dequantized values can lie from the
//! float network's, neuron by neuron, over a box (in the manner of ReluDiff / NeuroDiff).
//!
//! Bounding each network alone and subtracting loses everything they share: over a box both
//! logits may move by 10 while they never differ by more than 0.01. Here the difference itself
//! is propagated: with `h' = h + d` (dequantized input of a layer = float input + deviation)
//! and dequantized weights `w' = w + dw`,
//!
//! `z' - z = sum_i dw_i * h'_i + w_i * d_i + (b' - b)`,
//!
//! so the deviation grows by the (small) weight error times the activations plus the weights
//! times the (small) incoming deviation. Rounding adds at most half a step, requantization its
//! multiplier's relative error, and saturation / ReLU are 1-Lipschitz and monotone, so the
//! deviation after them lies between 0 and the deviation before them (or is exactly zero when
//! both networks are inactive). Every quantity is an interval; f64 rounding is covered by a
//! relative margin. Sound for the float network in real arithmetic and the integer network's
//! exact integer semantics (ceg4n-runtime), which is what the solver encodes too.

use super::bounds::{
    both_directions, float_bounds, requantization_error, step_of, FloatBounds, IntBounds, Interval,
};
use super::int_symbolic::dequantized_layers;
use super::substitution::{back_substitute, by_pair, pair_rows, NeuronBounds};
use crate::int_model::{IntNetwork, LayerOutput};
use crate::ir::{Activation, Network};
use ndarray::{Array1, Array2};

/// Relative widening for f64 rounding in the differential computation.
const MARGIN: f64 = 1e-9;

fn add(a: Interval<f64>, b: Interval<f64>) -> Interval<f64> {
    Interval {
        lo: a.lo + b.lo,
        hi: a.hi + b.hi,
    }
}

/// `w * [lo, hi]`.
fn scale(w: f64, i: Interval<f64>) -> Interval<f64> {
    let (p, q) = (w * i.lo, w * i.hi);
    Interval {
        lo: p.min(q),
        hi: p.max(q),
    }
}

fn intersect(a: Interval<f64>, b: Interval<f64>) -> Interval<f64> {
    let (lo, hi) = (a.lo.max(b.lo), a.hi.min(b.hi));
    // Both are sound enclosures of one value, so they overlap; guard rounding anyway.
    if lo <= hi {
        Interval { lo, hi }
    } else {
        a
    }
}

fn widen(i: Interval<f64>, magnitude: f64) -> Interval<f64> {
    let m = MARGIN * (1.0 + magnitude + i.lo.abs().max(i.hi.abs()));
    Interval {
        lo: i.lo - m,
        hi: i.hi + m,
    }
}

fn scaled(i: Interval<i64>, s: f64) -> Interval<f64> {
    scale(
        s,
        Interval {
            lo: i.lo as f64,
            hi: i.hi as f64,
        },
    )
}

/// The range of `clamp(z, lo, hi) - act(z)` for `z` in `z`: piecewise linear in `z`, so its
/// extremes lie at the ends or at the breakpoints `lo`, `hi`, `0`.
fn saturation_gap(z: Interval<f64>, lo: f64, hi: f64, activation: Activation) -> Interval<f64> {
    let act = |v: f64| match activation {
        Activation::Relu => v.max(0.0),
        Activation::None => v,
    };
    let g = |v: f64| v.clamp(lo, hi) - act(v);
    let mut out = Interval {
        lo: g(z.lo).min(g(z.hi)),
        hi: g(z.lo).max(g(z.hi)),
    };
    for v in [lo, hi, 0.0] {
        if v > z.lo && v < z.hi {
            out.lo = out.lo.min(g(v));
            out.hi = out.hi.max(g(v));
        }
    }
    out
}

/// Per layer, per neuron, bounds of `dequantized integer value - float value`: pre-activation
/// (`acc * acc_scale - z`) and post-activation (`out * scale - h`). The last entry of
/// [`Deviation::pre`] bounds the dequantized logits' deviation.
#[derive(Clone, Debug)]
pub struct Deviation {
    /// Per layer: the accumulators' deviation (dequantized `acc` minus the float `z`).
    pub pre: Vec<Vec<Interval<f64>>>,
    /// Per hidden layer: the activations' deviation.
    pub post: Vec<Vec<Interval<f64>>>,
    /// The integer network's bounds, narrowed by the float bounds plus the deviation.
    pub int: IntBounds,
    /// What back-substitution reads: per layer the injected error, per hidden layer how each
    /// neuron passes the deviation on, and the input's deviation.
    injected: Vec<Vec<Interval<f64>>>,
    passes: Vec<Vec<Pass>>,
    input_deviation: Vec<Interval<f64>>,
}

impl Deviation {
    /// Bounds of the dequantized logits minus the float logits.
    pub fn logits(&self) -> &[Interval<f64>] {
        self.pre.last().map_or(&[], Vec::as_slice)
    }

    /// `d[j][k]`, an upper bound of `dev_j - dev_k` (the deviation of the logit difference
    /// `j - k`): the tighter of `logits()[j].hi - logits()[k].lo` and
    /// [`Deviation::symbolic_differences`]. Computed on demand: top-1 queries need it,
    /// ε-equivalence does not.
    pub fn differences(&self, model: &DeviationModel) -> Vec<Vec<f64>> {
        let logits = self.logits();
        let mut d = self.symbolic_differences(model);
        for (j, row) in d.iter_mut().enumerate() {
            for (k, bound) in row.iter_mut().enumerate() {
                *bound = bound.min(logits[j].hi - logits[k].lo);
            }
        }
        d
    }

    /// `dev_j - dev_k` bounded as one linear form, back-substituted through every layer: the
    /// two logits share every hidden deviation, which the difference of their intervals counts
    /// twice.
    pub fn symbolic_differences(&self, model: &DeviationModel) -> Vec<Vec<f64>> {
        let classes = self.logits().len();
        let Some(top) = self.injected.len().checked_sub(1) else {
            return Vec::new();
        };
        let bounds = back_substitute(
            &model.weights(),
            &self.injected,
            &self.passes,
            &self.input_deviation,
            top,
            pair_rows(classes, |_| 1.0),
        );
        by_pair(&bounds, classes)
    }
}

/// One layer of both networks in real numbers: the float weights (input operations folded
/// into the first layer), the dequantized integer weights' error, both as plain and absolute
/// matrices (for interval matrix-vector products in centre-radius form).
#[derive(Clone, Debug)]
struct LayerPair {
    w: Array2<f64>,
    w_abs: Array2<f64>,
    dw: Array2<f64>,
    dw_abs: Array2<f64>,
    /// Dequantized bias minus float bias.
    db: Array1<f64>,
    /// |float bias|, for the rounding margin.
    b_abs: Array1<f64>,
}

/// Both networks prepared for [`DeviationModel::deviation`]: the deviation of the integer
/// network from the float one over boxes. Built once per comparison.
#[derive(Clone, Debug)]
pub struct DeviationModel {
    layers: Vec<LayerPair>,
}

/// `M x` for `x` in intervals given as centre and radius: `M mid +- |M| rad`.
fn interval_product(
    m: &Array2<f64>,
    m_abs: &Array2<f64>,
    x: &[Interval<f64>],
) -> (Array1<f64>, Array1<f64>) {
    let mid: Array1<f64> = x.iter().map(|i| 0.5 * (i.lo + i.hi)).collect();
    let rad: Array1<f64> = x.iter().map(|i| 0.5 * (i.hi - i.lo)).collect();
    (m.dot(&mid), m_abs.dot(&rad))
}

impl DeviationModel {
    /// Each layer's float weights, as back-substitution reads them.
    fn weights(&self) -> Vec<&Array2<f64>> {
        self.layers.iter().map(|pair| &pair.w).collect()
    }

    /// `None` when the networks' shapes do not match layer by layer.
    pub fn new(float: &Network, int: &IntNetwork) -> Option<DeviationModel> {
        if float.layers.len() != int.layers.len() || float.layers.is_empty() {
            return None;
        }
        let mut layers = Vec::new();
        for ((w, b), (int_w, int_b)) in crate::quantize::effective_layers(float)
            .into_iter()
            .zip(dequantized_layers(int)?)
        {
            if int_w.dim() != w.dim() {
                return None;
            }
            let dw = int_w - &w;
            let db = int_b - &b;
            layers.push(LayerPair {
                w_abs: w.mapv(f64::abs),
                dw_abs: dw.mapv(f64::abs),
                b_abs: b.mapv(f64::abs),
                w,
                dw,
                db,
            });
        }
        Some(DeviationModel { layers })
    }

    /// The deviation over the box `[lower, upper]`, given both networks' bounds on it.
    pub fn deviation(
        &self,
        float: &Network,
        int: &IntNetwork,
        fb: &FloatBounds,
        ib: &IntBounds,
        lower: &[f64],
        upper: &[f64],
    ) -> Option<Deviation> {
        // The integer bounds are tightened layer by layer as the deviation is known: an
        // accumulator lies within the float value plus its deviation.
        let mut ib = ib.clone();
        // Layer 0 reads the raw input (input operations folded into its weights).
        let in_scale: Vec<f64> = (0..lower.len()).map(|i| int.input.scale(i)).collect();
        let mut h_int: Vec<Interval<f64>> = ib
            .input
            .iter()
            .zip(&in_scale)
            .map(|(q, s)| scaled(*q, *s))
            .collect();
        // Rounding to the nearest step moves a feature by at most half a step; saturation moves it
        // to the range's end.
        let mut d: Vec<Interval<f64>> = (0..lower.len())
            .map(|i| {
                let s = in_scale[i];
                let half = Interval {
                    lo: -0.5 * s,
                    hi: 0.5 * s,
                };
                if ib.input_raw[i] == ib.input[i] {
                    half
                } else {
                    let sat = Interval {
                        lo: h_int[i].lo - upper[i],
                        hi: h_int[i].hi - lower[i],
                    };
                    half.hull(sat)
                }
            })
            .collect();
        let input_deviation = d.clone();
        let (mut pre, mut post) = (Vec::new(), Vec::new());
        // Per layer: the error injected by the quantized weights and bias (`dw * h' + db`), and
        // (hidden layers) how each neuron passes its deviation on.
        let mut injected: Vec<Vec<Interval<f64>>> = Vec::new();
        let mut passes: Vec<Vec<Pass>> = Vec::new();
        let weights = self.weights();
        for (l, ((layer, pair), flayer)) in int
            .layers
            .iter()
            .zip(&self.layers)
            .zip(&float.layers)
            .enumerate()
        {
            if h_int.len() != pair.w.ncols() {
                return None;
            }
            let (e_mid, e_rad) = interval_product(&pair.dw, &pair.dw_abs, &h_int);
            let (c_mid, c_rad) = interval_product(&pair.w, &pair.w_abs, &d);
            let h_mag: Array1<f64> = h_int.iter().map(|i| i.lo.abs().max(i.hi.abs())).collect();
            let d_mag: Array1<f64> = d.iter().map(|i| i.lo.abs().max(i.hi.abs())).collect();
            // Everything summed, in magnitude, for the rounding margin.
            let magnitude =
                pair.w_abs.dot(&(&h_mag + &d_mag)) + pair.dw_abs.dot(&h_mag) + &pair.b_abs;
            let (mut e, mut dz) = (Vec::with_capacity(layer.outputs), Vec::new());
            for o in 0..layer.outputs {
                let inject = widen(
                    Interval {
                        lo: pair.db[o] + e_mid[o] - e_rad[o],
                        hi: pair.db[o] + e_mid[o] + e_rad[o],
                    },
                    magnitude[o],
                );
                let carried = widen(
                    Interval {
                        lo: c_mid[o] - c_rad[o],
                        hi: c_mid[o] + c_rad[o],
                    },
                    magnitude[o],
                );
                e.push(inject);
                dz.push(add(inject, carried));
            }
            injected.push(e);
            // Symbolically: the deviation of each neuron back-substituted through the layers
            // below, where the signs of the weights cancel what intervals add up. Rows 0..n bound
            // dz from above, rows n..2n bound -dz from above.
            let m = layer.outputs;
            let c = both_directions(m);
            let symbolic = back_substitute(&weights, &injected, &passes, &input_deviation, l, c);
            let dz: Vec<Interval<f64>> = dz
                .into_iter()
                .enumerate()
                .map(|(o, interval)| {
                    let interval = intersect(
                        interval,
                        Interval {
                            lo: -symbolic[o + m],
                            hi: symbolic[o],
                        },
                    );
                    // Never looser than the difference of the two networks' own bounds.
                    let acc = scaled(ib.acc[l][o], layer.acc_scale[o]);
                    let z = fb.pre[l][o];
                    intersect(
                        interval,
                        Interval {
                            lo: acc.lo - z.hi,
                            hi: acc.hi - z.lo,
                        },
                    )
                })
                .collect();
            tighten_layer(&mut ib, layer, l, &fb.pre[l], &dz);
            if let LayerOutput::Activations {
                range,
                requant,
                scale: out_scale,
                ..
            } = &layer.output
            {
                let (lo, hi) = (
                    f64::from(range.min) * out_scale,
                    f64::from(range.max) * out_scale,
                );
                let mut pass = Vec::with_capacity(layer.outputs);
                let dh: Vec<Interval<f64>> = (0..layer.outputs)
                    .map(|o| {
                        let rounding = requantization_error(
                            step_of(requant, o),
                            layer.acc_scale[o],
                            *out_scale,
                            ib.acc[l][o],
                        );
                        let dy = widen(add(dz[o], rounding), 0.0);
                        // clamp(y', lo, hi) - act(z) = [clamp(y') - clamp(z)] + [clamp(z) - act(z)]:
                        // the first lies between 0 and y' - z (clamp is monotone, 1-Lipschitz).
                        let moved = Interval {
                            lo: dy.lo.min(0.0),
                            hi: dy.hi.max(0.0),
                        };
                        let z = fb.pre[l][o];
                        let gap = saturation_gap(z, lo, hi, flayer.activation);
                        let out = scaled(ib.out[l][o], *out_scale);
                        let h = fb.post[l][o];
                        let dh = intersect(
                            widen(add(moved, gap), 0.0),
                            Interval {
                                lo: out.lo - h.hi,
                                hi: out.hi - h.lo,
                            },
                        );
                        let y = ib.requant[l][o];
                        let float_passes = flayer.activation == Activation::None || z.lo >= 0.0;
                        let int_passes =
                            y.lo >= i64::from(range.min) && y.hi <= i64::from(range.max);
                        let float_zero = flayer.activation == Activation::Relu && z.hi <= 0.0;
                        let int_zero = range.min == 0 && y.hi <= 0;
                        pass.push(if float_passes && int_passes {
                            Pass::exact(rounding)
                        } else if float_zero && int_zero {
                            Pass::constant(Interval { lo: 0.0, hi: 0.0 })
                        } else {
                            Pass::relaxed(dz[o], rounding, gap, dh)
                        });
                        dh
                    })
                    .collect();
                h_int = ib.out[l].iter().map(|q| scaled(*q, *out_scale)).collect();
                post.push(dh.clone());
                passes.push(pass);
                d = dh;
            }
            pre.push(dz);
        }
        Some(Deviation {
            pre,
            post,
            int: ib,
            injected,
            passes,
            input_deviation,
        })
    }
}

/// Relative widening of a dequantized integer logit, for the f64 rounding of `acc * scale`.
const DEQUANTIZATION_MARGIN: f64 = 1e-12;

/// The closed set of reals that quantize to `v` (`floor(x / step + 1/2) = v`, saturating at
/// the input range's ends): `[(v - 1/2) step, (v + 1/2) step]`, unbounded at a saturated end.
/// Exact in f64: the step is a power of two.
pub fn input_cell(int: &IntNetwork, feature: usize, v: i32) -> Interval<f64> {
    let (step, range) = (int.input.scale(feature), int.input.range());
    Interval {
        lo: if v <= range.min {
            f64::NEG_INFINITY
        } else {
            (f64::from(v) - 0.5) * step
        },
        hi: if v >= range.max {
            f64::INFINITY
        } else {
            (f64::from(v) + 0.5) * step
        },
    }
}

/// One integer input of a box and the part of the box that quantizes to it.
#[derive(Clone, Debug)]
pub struct InputCell {
    /// The integer input.
    pub input: Vec<i32>,
    /// The box clipped to the input's cell: lower corner.
    pub lower: Vec<f64>,
    /// Upper corner.
    pub upper: Vec<f64>,
}

/// Every integer input of the box `[lower, upper]` with the part of the box that quantizes to
/// it, when there are at most `max_cells` of them; `None` for more.
pub fn input_cells(
    int: &IntNetwork,
    lower: &[f64],
    upper: &[f64],
    max_cells: usize,
) -> Option<Vec<InputCell>> {
    let ranges: Vec<(i32, i32)> = (0..lower.len())
        .map(|i| {
            (
                int.input.quantize(i, lower[i]),
                int.input.quantize(i, upper[i]),
            )
        })
        .collect();
    let count = ranges.iter().try_fold(1usize, |n, (a, b)| {
        n.checked_mul(usize::try_from(i64::from(*b) - i64::from(*a) + 1).ok()?)
    })?;
    if count > max_cells {
        return None;
    }
    let mut cells = Vec::with_capacity(count);
    let mut v: Vec<i32> = ranges.iter().map(|r| r.0).collect();
    'cells: loop {
        let (mut lo, mut hi) = (lower.to_vec(), upper.to_vec());
        for (i, value) in v.iter().enumerate() {
            let cell = input_cell(int, i, *value);
            lo[i] = lo[i].max(cell.lo);
            hi[i] = hi[i].min(cell.hi);
        }
        cells.push(InputCell {
            input: v.clone(),
            lower: lo,
            upper: hi,
        });
        // The next integer input, odometer order.
        for (i, value) in v.iter_mut().enumerate() {
            if *value < ranges[i].1 {
                *value += 1;
                continue 'cells;
            }
            *value = ranges[i].0;
        }
        return Some(cells);
    }
}

/// Bounds of each dequantized logit minus the float one over `[lower, upper]`, exact but for
/// the float network's bounds, when the box holds at most `max_cells` integer inputs: per
/// integer input `v`, the integer network's logits at `v` (it is constant on `v`'s cell) minus
/// the float network's bounds over the cell's part of the box; their union. `None` for more
/// integer inputs.
pub fn cell_deviation(
    float: &Network,
    int: &IntNetwork,
    lower: &[f64],
    upper: &[f64],
    max_cells: usize,
) -> Option<Vec<Interval<f64>>> {
    let mut union: Option<Vec<Interval<f64>>> = None;
    for cell in input_cells(int, lower, upper, max_cells)? {
        let fb = float_bounds(float, &cell.lower, &cell.upper);
        let logits = int.dequantize(&int.logits_q(&cell.input));
        let deviation = logits.iter().zip(fb.pre.last()?).map(|(q, f)| {
            let m = DEQUANTIZATION_MARGIN * (1.0 + q.abs());
            Interval {
                lo: q - m - f.hi,
                hi: q + m - f.lo,
            }
        });
        union = Some(match union {
            None => deviation.collect(),
            Some(u) => u.iter().zip(deviation).map(|(a, b)| a.hull(b)).collect(),
        });
    }
    union
}

/// How a hidden neuron's activation deviation `dh` follows from its accumulator's `dz`: linear
/// bounds in `dz`, so that back-substitution carries the deviation through the neuron.
type Pass = NeuronBounds;

impl Pass {
    /// Both networks pass the value on unsaturated: `dh = dz + rounding`.
    fn exact(rounding: Interval<f64>) -> Pass {
        Pass {
            lower_slope: 1.0,
            lower_offset: rounding.lo,
            upper_slope: 1.0,
            upper_offset: rounding.hi,
        }
    }

    /// `dh = phi(dz + rounding) + gap`, where `phi(v) = clamp(z + v) - clamp(z)` is monotone,
    /// 1-Lipschitz and zero at zero, hence between `min(0, v)` and `max(0, v)`: bounded by the
    /// chords of those over `v`'s range (as DeepPoly bounds a ReLU, here on the difference of the
    /// two networks, in the manner of NeuroDiff); `dh`, the neuron's interval, where the range
    /// is not finite.
    fn relaxed(
        dz: Interval<f64>,
        rounding: Interval<f64>,
        gap: Interval<f64>,
        dh: Interval<f64>,
    ) -> Pass {
        let (a, b) = (dz.lo + rounding.lo, dz.hi + rounding.hi);
        if !(a.is_finite() && b.is_finite()) {
            return Pass::constant(dh);
        }
        // Upper bound of phi(v) for v = dz + r, r <= rounding.hi.
        let (upper_slope, upper_offset) = if b <= 0.0 {
            (0.0, 0.0)
        } else if a >= 0.0 {
            (1.0, rounding.hi)
        } else {
            let s = b / (b - a);
            (s, s * (rounding.hi - a))
        };
        let (lower_slope, lower_offset) = if a >= 0.0 {
            (0.0, 0.0)
        } else if b <= 0.0 {
            (1.0, rounding.lo)
        } else {
            let s = -a / (b - a);
            (s, a + s * (rounding.lo - a))
        };
        Pass {
            lower_slope,
            lower_offset: lower_offset + gap.lo,
            upper_slope,
            upper_offset: upper_offset + gap.hi,
        }
    }
}

/// Narrows layer `l`'s accumulator bounds to `(z + dz) / acc_scale` (integers: rounded inward,
/// after a margin for f64 rounding) and recomputes its requantized and saturated bounds.
fn tighten_layer(
    ib: &mut IntBounds,
    layer: &crate::int_model::IntLayer,
    l: usize,
    z: &[Interval<f64>],
    dz: &[Interval<f64>],
) {
    use ceg4n_runtime::Accumulator;
    for (o, acc) in ib.acc[l].iter_mut().enumerate() {
        let s = layer.acc_scale[o];
        let (lo, hi) = ((z[o].lo + dz[o].lo) / s, (z[o].hi + dz[o].hi) / s);
        let m = MARGIN * (1.0 + lo.abs().max(hi.abs()));
        let (lo, hi) = ((lo - m).ceil(), (hi + m).floor());
        if !(lo.is_finite() && hi.is_finite()) || lo.abs() > 9e15 || hi.abs() > 9e15 {
            continue;
        }
        let tight = Interval {
            lo: acc.lo.max(lo as i64),
            hi: acc.hi.min(hi as i64),
        };
        if tight.lo <= tight.hi {
            *acc = tight;
        }
    }
    if let LayerOutput::Activations { range, requant, .. } = &layer.output {
        for (o, acc) in ib.acc[l].iter().enumerate() {
            let step = step_of(requant, o);
            let y = Interval {
                lo: acc.lo.requantize(step),
                hi: acc.hi.requantize(step),
            };
            ib.requant[l][o] = y;
            ib.out[l][o] = Interval {
                lo: range.clamp(y.lo) as i64,
                hi: range.clamp(y.hi) as i64,
            };
        }
    }
}
