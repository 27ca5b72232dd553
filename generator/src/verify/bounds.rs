//! Interval bounds of every neuron of both networks over a box. Sound for the float network in
//! real arithmetic (up to f64 rounding, which is widened by a relative margin) and exact-sound
//! for the integer network (every integer operation is monotone, evaluated with ceg4n-runtime).

use ceg4n_runtime::{Accumulator, Requant};
use ndarray::Array2;

use crate::int_model::{Bias, IntNetwork, LayerOutput};
use crate::ir::{Activation, Network};

pub use super::int_symbolic::int_linear_upper_bound;

/// A closed interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval<T> {
    /// Lower end.
    pub lo: T,
    /// Upper end.
    pub hi: T,
}

impl Interval<f64> {
    /// The smallest interval holding both.
    pub fn hull(self, other: Interval<f64>) -> Interval<f64> {
        Interval {
            lo: self.lo.min(other.lo),
            hi: self.hi.max(other.hi),
        }
    }
}

/// Float bounds per layer: pre-activation `z` and post-activation `h`.
#[derive(Clone, Debug)]
pub struct FloatBounds {
    /// The preprocessed input (after input operations).
    pub input: Vec<Interval<f64>>,
    /// Per layer, per neuron: `z = W h_prev + b`.
    pub pre: Vec<Vec<Interval<f64>>>,
    /// Per layer, per neuron: the activation applied to `z`.
    pub post: Vec<Vec<Interval<f64>>>,
    /// Per input, how much of the unstable ReLUs' relaxation error its range accounts for: the
    /// sum over unstable neurons of the relaxation's height times the input's width times its
    /// coefficient in the neuron's linear bounds (ReluVal's "smear"). Splitting the input with
    /// the largest share tightens the bounds most. Zero in the bounds of a branch
    /// ([`FloatBounds::with_phase`]), which nothing splits by input.
    pub influence: Vec<f64>,
}

/// Integer bounds per layer: accumulator, rounded requantization and saturated output.
#[derive(Clone, Debug)]
pub struct IntBounds {
    /// The quantized input (before saturation) and after it.
    pub input_raw: Vec<Interval<i64>>,
    /// The saturated input.
    pub input: Vec<Interval<i64>>,
    /// Per layer, per neuron: the accumulator.
    pub acc: Vec<Vec<Interval<i64>>>,
    /// Per hidden layer, per neuron: `floor(acc * M / 2^S + 1/2)` before saturation.
    pub requant: Vec<Vec<Interval<i64>>>,
    /// Per hidden layer, per neuron: the saturated activation.
    pub out: Vec<Vec<Interval<i64>>>,
}

/// Relative widening of float bounds to absorb f64 rounding in their computation.
const FLOAT_MARGIN: f64 = 1e-9;

fn widen(i: Interval<f64>) -> Interval<f64> {
    let m = FLOAT_MARGIN * (1.0 + i.lo.abs().max(i.hi.abs()));
    Interval {
        lo: i.lo - m,
        hi: i.hi + m,
    }
}

/// Float bounds over the box `[lower, upper]`.
pub fn float_bounds(net: &Network, lower: &[f64], upper: &[f64]) -> FloatBounds {
    let (a, b) = (net.preprocess(lower), net.preprocess(upper));
    // Elementwise affine maps are monotone per feature (increasing or decreasing).
    let input: Vec<Interval<f64>> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| {
            widen(Interval {
                lo: x.min(*y),
                hi: x.max(*y),
            })
        })
        .collect();
    let mut fb = FloatBounds {
        influence: vec![0.0; input.len()],
        input,
        pre: Vec::new(),
        post: Vec::new(),
    };
    fb.extend(net, &[], None).expect("no phase is fixed");
    fb
}

/// A ReLU's side, fixed by a branch of the branch and bound ([`crate::verify`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `z >= 0`: the neuron passes its input on.
    Active,
    /// `z <= 0`: the neuron outputs zero.
    Inactive,
}

/// Neuron `neuron` of layer `layer` restricted to `phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedPhase {
    /// The layer.
    pub layer: usize,
    /// The neuron in it.
    pub neuron: usize,
    /// Its side.
    pub phase: Phase,
}

impl FixedPhase {
    /// `z` clipped to the phase; `None` when nothing is left.
    fn clip(&self, z: Interval<f64>) -> Option<Interval<f64>> {
        let z = match self.phase {
            Phase::Active => Interval {
                lo: z.lo.max(0.0),
                hi: z.hi,
            },
            Phase::Inactive => Interval {
                lo: z.lo,
                hi: z.hi.min(0.0),
            },
        };
        (z.lo <= z.hi).then_some(z)
    }
}

impl FloatBounds {
    /// Computes the layers after the ones already bounded (all of them when none is), each
    /// neuron of `fixed` clipped to its phase; `None` when that leaves a neuron no range. With
    /// `parent`, the bounds of a box these bounds' box lies in, each neuron's interval is
    /// intersected with the parent's and only the neurons a bound's relaxations read (unstable
    /// ReLUs) and the outputs are tightened by back-substitution: a stable ReLU is relaxed
    /// exactly whatever its range, and a branch and bound's parts are mostly stable neurons
    /// (on digits28, 784-256-256, re-bounding the second layer after a split in the first
    /// is most of a part's cost).
    pub(crate) fn extend(
        &mut self,
        net: &Network,
        fixed: &[FixedPhase],
        parent: Option<&FloatBounds>,
    ) -> Option<()> {
        for (l, layer) in net.layers.iter().enumerate().skip(self.pre.len()) {
            let prev = self.post.last().unwrap_or(&self.input);
            let z: Vec<Interval<f64>> = layer
                .weights
                .rows()
                .into_iter()
                .zip(&layer.bias)
                .map(|(row, bias)| {
                    let (mut lo, mut hi) = (*bias as f64, *bias as f64);
                    for (w, x) in row.iter().zip(prev) {
                        let w = *w as f64;
                        let (p, q) = (w * x.lo, w * x.hi);
                        lo += p.min(q);
                        hi += p.max(q);
                    }
                    widen(Interval { lo, hi })
                })
                .collect();
            let z = match parent {
                Some(p) => z
                    .iter()
                    .zip(&p.pre[l])
                    .map(|(a, b)| {
                        let (lo, hi) = (a.lo.max(b.lo), a.hi.min(b.hi));
                        (lo <= hi).then_some(Interval { lo, hi })
                    })
                    .collect::<Option<Vec<_>>>()?,
                None => z,
            };
            let last = l + 1 == net.layers.len();
            let relu = layer.activation == Activation::Relu;
            let tightened: Vec<usize> = (0..z.len())
                .filter(|o| parent.is_none() || last || (relu && z[*o].lo < 0.0 && z[*o].hi > 0.0))
                .collect();
            // The tightened neurons' linear bounds in the input (row r from above, r + k from
            // below, for `tightened[r]` of `k`) when back-substituted; on the first layer, the
            // weights.
            let (mut z, coef) = if self.pre.is_empty() || tightened.is_empty() {
                (z, None)
            } else {
                let (z, coef) =
                    tighten_by_back_substitution(net, &self.input, &self.pre, z, &tightened);
                (z, Some(coef))
            };
            for f in fixed.iter().filter(|f| f.layer == l) {
                z[f.neuron] = f.clip(z[f.neuron])?;
            }
            if layer.activation == Activation::Relu {
                let k = tightened.len();
                for (o, zo) in z
                    .iter()
                    .enumerate()
                    .filter(|(_, z)| z.lo < 0.0 && z.hi > 0.0)
                {
                    let height = relaxation_height(*zo);
                    // Every unstable neuron was tightened: `r` is its row.
                    let r = tightened.binary_search(&o).unwrap_or_default();
                    for (i, x) in self.input.iter().enumerate() {
                        let a = match &coef {
                            Some(c) => c[[r, i]].abs() + c[[r + k, i]].abs(),
                            None => 2.0 * f64::from(layer.weights[[o, i]]).abs(),
                        };
                        self.influence[i] += height * a * (x.hi - x.lo);
                    }
                }
            }
            let h = z.iter().map(|i| activate(layer.activation, *i)).collect();
            self.pre.push(z);
            self.post.push(h);
        }
        Some(())
    }

    /// The bounds of the part of the box where the neurons of `fixed` and `new` are in their
    /// phases, given these bounds for `fixed` alone: `new`'s range is clipped at zero and the
    /// layers above it recomputed (their relaxations then treat it as linear or zero). Valid
    /// for the network on that part; `None` when the bounds show the part is empty.
    pub fn with_phase(
        &self,
        net: &Network,
        fixed: &[FixedPhase],
        new: FixedPhase,
    ) -> Option<FloatBounds> {
        let l = new.layer;
        let mut fb = FloatBounds {
            influence: vec![0.0; self.input.len()],
            input: self.input.clone(),
            pre: self.pre[..=l].to_vec(),
            post: self.post[..=l].to_vec(),
        };
        let z = new.clip(fb.pre[l][new.neuron])?;
        fb.pre[l][new.neuron] = z;
        fb.post[l][new.neuron] = activate(net.layers[l].activation, z);
        fb.extend(net, fixed, Some(self))?;
        Some(fb)
    }
}

fn activate(activation: Activation, z: Interval<f64>) -> Interval<f64> {
    match activation {
        Activation::None => z,
        Activation::Relu => Interval {
            lo: z.lo.max(0.0),
            hi: z.hi.max(0.0),
        },
    }
}

/// The pre-activation bounds `z` of layer `pre.len()`, the neurons `tightened` tightened by
/// back-substitution through the layers below (DeepPoly-style intermediate bounds): deep
/// layers' intervals otherwise grow with every layer's cancellations ignored. Also returns the
/// linear bounds' coefficients on the input (row `r`: `z` of neuron `tightened[r]` from above,
/// row `r + k`: its `-z` from above, `k` neurons tightened).
fn tighten_by_back_substitution(
    net: &Network,
    input: &[Interval<f64>],
    pre: &[Vec<Interval<f64>>],
    mut z: Vec<Interval<f64>>,
    tightened: &[usize],
) -> (Vec<Interval<f64>>, Array2<f64>) {
    let k = tightened.len();
    let c = directions_of(z.len(), tightened);
    let forms = float_linear_forms(
        net,
        pre,
        pre.len(),
        c,
        false,
        LowerRelaxation::ByRange,
        None,
    );
    let bound = forms.upper_bounds(input);
    for (r, o) in tightened.iter().enumerate() {
        z[*o] = Interval {
            lo: z[*o].lo.max(-bound[r + k]),
            hi: z[*o].hi.min(bound[r]),
        };
    }
    (z, forms.coef)
}

/// The rows `e_0 .. e_(n-1)` then `-e_0 .. -e_(n-1)`: back-substituted, they bound `n`
/// quantities from above and from below at once.
pub(crate) fn both_directions(n: usize) -> Array2<f64> {
    directions_of(n, &(0..n).collect::<Vec<_>>())
}

/// [`both_directions`] for the quantities `selected` of `n` only: row `r` is
/// `e_(selected[r])`, row `r + k` its negation (`k` selected).
fn directions_of(n: usize, selected: &[usize]) -> Array2<f64> {
    let k = selected.len();
    Array2::from_shape_fn((2 * k, n), |(r, o)| match selected.get(r % k.max(1)) {
        Some(s) if *s == o && r < k => 1.0,
        Some(s) if *s == o => -1.0,
        _ => 0.0,
    })
}

/// Integer bounds over the box `[lower, upper]` (inputs quantized with the network's format).
pub fn int_bounds(net: &IntNetwork, lower: &[f64], upper: &[f64]) -> IntBounds {
    let range = net.input.range();
    let input_raw: Vec<Interval<i64>> = lower
        .iter()
        .zip(upper)
        .enumerate()
        .map(|(i, (l, u))| Interval {
            lo: unclamped_input(net, i, *l),
            hi: unclamped_input(net, i, *u),
        })
        .collect();
    let input: Vec<Interval<i64>> = input_raw
        .iter()
        .map(|i| Interval {
            lo: i.lo.clamp(range.min as i64, range.max as i64),
            hi: i.hi.clamp(range.min as i64, range.max as i64),
        })
        .collect();
    let mut prev = input.clone();
    let (mut acc_all, mut requant_all, mut out_all) = (Vec::new(), Vec::new(), Vec::new());
    for layer in &net.layers {
        let bias = bias_i64(&layer.bias);
        let acc: Vec<Interval<i64>> = layer
            .weights
            .chunks(layer.inputs.max(1))
            .zip(&bias)
            .map(|(row, b)| {
                let (mut lo, mut hi) = (*b, *b);
                for (w, x) in row.iter().zip(&prev) {
                    let w = *w as i64;
                    let (p, q) = (w * x.lo, w * x.hi);
                    lo += p.min(q);
                    hi += p.max(q);
                }
                Interval { lo, hi }
            })
            .collect();
        if let LayerOutput::Activations { range, requant, .. } = &layer.output {
            let rq: Vec<Interval<i64>> = acc
                .iter()
                .enumerate()
                .map(|(o, a)| {
                    let step = step_of(requant, o);
                    Interval {
                        lo: a.lo.requantize(step),
                        hi: a.hi.requantize(step),
                    }
                })
                .collect();
            let out: Vec<Interval<i64>> = rq
                .iter()
                .map(|i| Interval {
                    lo: range.clamp(i.lo) as i64,
                    hi: range.clamp(i.hi) as i64,
                })
                .collect();
            requant_all.push(rq);
            out_all.push(out.clone());
            prev = out;
        }
        acc_all.push(acc);
    }
    IntBounds {
        input_raw,
        input,
        acc: acc_all,
        requant: requant_all,
        out: out_all,
    }
}

/// `floor(x * 2^f + 1/2)` without saturation (saturating only at the i64 range).
pub fn unclamped_input(net: &IntNetwork, i: usize, x: f64) -> i64 {
    let v = (x / net.input.scale(i) + 0.5).floor();
    if v.is_nan() {
        0
    } else {
        v.clamp(i64::MIN as f64, i64::MAX as f64) as i64
    }
}

/// The requantization step of output `o` as the runtime picks it.
pub fn step_of(requant: &[Requant], o: usize) -> Requant {
    requant
        .get(o)
        .or(requant.first())
        .copied()
        .unwrap_or(Requant::IDENTITY)
}

/// What requantization adds to a hidden neuron's dequantized value: `y = floor(acc * r + 1/2)`
/// (`r` the step's multiplier over its power of two) puts `y * out_scale - acc * acc_scale`
/// within `acc * (r * out_scale - acc_scale) +- out_scale / 2`, for `acc` in its bounds
/// (widened for f64 rounding).
pub(crate) fn requantization_error(
    step: Requant,
    acc_scale: f64,
    out_scale: f64,
    acc: Interval<i64>,
) -> Interval<f64> {
    let r = f64::from(step.multiplier) / 2f64.powi(i32::from(step.shift.min(62)));
    let rho = r * out_scale - acc_scale;
    let (a, b) = (rho * acc.lo as f64, rho * acc.hi as f64);
    widen(Interval {
        lo: a.min(b) - 0.5 * out_scale,
        hi: a.max(b) + 0.5 * out_scale,
    })
}

/// The bias widened to i64.
pub fn bias_i64(bias: &Bias) -> Vec<i64> {
    match bias {
        Bias::I32(b) => b.iter().map(|v| *v as i64).collect(),
        Bias::I64(b) => b.clone(),
    }
}

/// `d[j][k]`: an upper bound of `logit_j - logit_k` over the box: the better of the last
/// layer's weight differences over interval inputs and back-substitution through every layer.
pub fn float_logit_differences(net: &Network, fb: &FloatBounds) -> Vec<Vec<f64>> {
    let Some(last) = net.layers.last() else {
        return Vec::new();
    };
    let inputs = if net.layers.len() >= 2 {
        &fb.post[net.layers.len() - 2]
    } else {
        &fb.input
    };
    let m = last.outputs();
    // Every pair (j, k), j != k, as one row `e_j - e_k`, back-substituted together.
    let pairs: Vec<(usize, usize)> = (0..m)
        .flat_map(|j| (0..m).filter(move |k| *k != j).map(move |k| (j, k)))
        .collect();
    let rows = Array2::from_shape_fn((pairs.len(), m), |(r, o)| {
        let (j, k) = pairs[r];
        if o == j {
            1.0
        } else if o == k {
            -1.0
        } else {
            0.0
        }
    });
    let linear = float_linear_upper_bounds(net, fb, rows);
    let mut d = vec![vec![0.0; m]; m];
    for ((j, k), linear) in pairs.into_iter().zip(linear) {
        let mut hi = last.bias[j] as f64 - last.bias[k] as f64;
        for (i, x) in inputs.iter().enumerate() {
            let w = last.weights[[j, i]] as f64 - last.weights[[k, i]] as f64;
            hi += (w * x.lo).max(w * x.hi);
        }
        d[j][k] = widen(Interval { lo: hi, hi }).hi.min(linear);
    }
    d
}

/// `d[j][k]`: an upper bound of `logit_j - logit_k` of the integer network over the box: the
/// better of exact integer arithmetic on the last layer's weight differences and
/// back-substitution through every layer (floored: the logits are integers).
pub fn int_logit_differences(net: &IntNetwork, ib: &IntBounds) -> Vec<Vec<i128>> {
    let Some(last) = net.layers.last() else {
        return Vec::new();
    };
    let inputs = ib.out.last().unwrap_or(&ib.input);
    let bias = bias_i64(&last.bias);
    let n = last.inputs.max(1);
    let m = last.outputs;
    let difference = |j: usize, k: usize| {
        let mut hi = bias[j] as i128 - bias[k] as i128;
        for (i, x) in inputs.iter().enumerate().take(n) {
            let w = last.weights[j * n + i] as i128 - last.weights[k * n + i] as i128;
            hi += (w * x.lo as i128).max(w * x.hi as i128);
        }
        let mut c = vec![0.0; m];
        (c[j], c[k]) = (1.0, -1.0);
        let linear = int_linear_upper_bound(net, ib, &c);
        if linear.is_finite() && linear.abs() < 1e30 {
            hi.min(linear.floor() as i128)
        } else {
            hi
        }
    };
    (0..m)
        .map(|j| {
            (0..m)
                .map(|k| if j == k { 0 } else { difference(j, k) })
                .collect()
        })
        .collect()
}

/// A sound upper bound of `c · h_L` (the float network's last-layer output) over the box that
/// `fb` was computed on, by back-substitution (CROWN/DeepPoly style): each layer's output is
/// replaced by its affine form, each unstable ReLU by a linear relaxation chosen for the sign
/// of its coefficient (above: the chord over `[l, u]`; below: `0` or `z`, whichever is
/// tighter), down to the preprocessed input, bounded by its box. Much tighter than intervals
/// where neurons are shared by the compared logits, and linear time: it decides rival classes
/// that would otherwise cost the solver exact rational pivots over hundreds of inputs.
/// f64 rounding is covered by a relative margin on the result; never looser than intervals.
pub fn float_linear_upper_bound(net: &Network, fb: &FloatBounds, c: &[f64]) -> f64 {
    let rows = Array2::from_shape_vec((1, c.len()), c.to_vec()).expect("one row");
    float_linear_upper_bounds(net, fb, rows)[0]
}

/// [`float_linear_upper_bound`] for every row of `c`, each the best over the ReLU lower
/// relaxations tried (chosen per neuron by its range, or `h >= 0`, or `h >= z` throughout: each
/// is sound, and which is tightest depends on the query).
fn float_linear_upper_bounds(net: &Network, fb: &FloatBounds, c: Array2<f64>) -> Vec<f64> {
    let Some(top) = net.layers.len().checked_sub(1) else {
        return vec![f64::INFINITY; c.nrows()];
    };
    let mut best = vec![f64::INFINITY; c.nrows()];
    for lower in [
        LowerRelaxation::ByRange,
        LowerRelaxation::Zero,
        LowerRelaxation::Identity,
    ] {
        let linear =
            back_substitute_float_rows(net, &fb.input, &fb.pre, top, c.clone(), true, lower, None);
        for (b, l) in best.iter_mut().zip(linear) {
            *b = b.min(l);
        }
    }
    // Back-substitution is not always tighter than intervals (a relaxation chosen for one
    // neuron can be loose where intervals are exact): the better of the two.
    let last = fb.post.last().map_or(&[][..], Vec::as_slice);
    for (b, row) in best.iter_mut().zip(c.rows()) {
        let interval: f64 = row
            .iter()
            .zip(last)
            .map(|(a, i)| (a * i.lo).max(a * i.hi))
            .sum();
        *b = b.min(interval);
    }
    best
}

/// Which linear lower bound an unstable ReLU `h = max(z, 0)` gets in back-substitution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LowerRelaxation {
    /// `h >= 0` when the neuron's range is mostly negative, else `h >= z` (DeepPoly's rule).
    ByRange,
    /// `h >= 0` everywhere.
    Zero,
    /// `h >= z` everywhere.
    Identity,
}

/// Sound upper bounds of `c · h_top` for every row of `c` (after layer `top`'s activation when
/// `activation`, else of its pre-activation `c · z_top`) by back-substitution down to the
/// preprocessed input, using the pre-activation bounds `pre` of the layers below (and of `top`
/// itself when `activation`) for the ReLU relaxations, `lower` for their lower sides. The
/// layers' weights are applied as matrix products, so bounding all neurons of a layer costs a
/// few matrix multiplications. With `loss`, what each unstable ReLU's upper relaxation may
/// add to row 0's bound (its coefficient's magnitude times the relaxation's height) is added to
/// `loss[layer][neuron]`: the branch and bound splits where that is largest.
#[allow(clippy::too_many_arguments)]
fn back_substitute_float_rows(
    net: &Network,
    input: &[Interval<f64>],
    pre: &[Vec<Interval<f64>>],
    top: usize,
    coef: Array2<f64>,
    activation: bool,
    lower: LowerRelaxation,
    loss: Option<&mut [Vec<f64>]>,
) -> Vec<f64> {
    float_linear_forms(net, pre, top, coef, activation, lower, loss).upper_bounds(input)
}

/// Linear upper bounds `coef · x + constant` of some quantities, one per row, in the
/// preprocessed input `x`; `magnitude` sums the magnitudes of what was added to `constant`
/// (for the f64 rounding margin).
pub(crate) struct LinearForms {
    /// Per row, the coefficients on the preprocessed input.
    pub coef: Array2<f64>,
    /// Per row, the constant.
    pub constant: Vec<f64>,
    /// Per row, the sum of magnitudes behind the constant.
    pub magnitude: Vec<f64>,
}

impl LinearForms {
    /// Each row's maximum over the input box, with a margin for f64 rounding.
    pub(crate) fn upper_bounds(&self, input: &[Interval<f64>]) -> Vec<f64> {
        (0..self.constant.len())
            .map(|r| {
                let (mut bound, mut mag) = (self.constant[r], self.magnitude[r]);
                for (a, x) in self.coef.row(r).iter().zip(input) {
                    let term = (a * x.lo).max(a * x.hi);
                    bound += term;
                    mag += term.abs() + (a * x.lo).abs();
                }
                bound + FLOAT_MARGIN * (1.0 + mag)
            })
            .collect()
    }
}

/// The height of an unstable ReLU's triangle relaxation over `z`: how far its upper chord
/// lies above `max(z, 0)` at `z = 0`.
pub(crate) fn relaxation_height(z: Interval<f64>) -> f64 {
    z.hi * -z.lo / (z.hi - z.lo)
}

/// `coef · weights` in f64. Few rows (a branch and bound's objective) are summed row by row from
/// the f32 weights, skipping zero coefficients (inactive ReLUs): converting a 784-256 layer's
/// weights to f64 for one row cost more than the product.
fn times_weights(coef: &Array2<f64>, weights: &Array2<f32>) -> Array2<f64> {
    const FEW_ROWS: usize = 8;
    if coef.nrows() > FEW_ROWS {
        return coef.dot(&weights.mapv(f64::from));
    }
    let mut out = Array2::<f64>::zeros((coef.nrows(), weights.ncols()));
    for (row, mut target) in coef.rows().into_iter().zip(out.rows_mut()) {
        for (a, w) in row.iter().zip(weights.rows()) {
            if *a != 0.0 {
                target.zip_mut_with(&w, |t, w| *t += a * f64::from(*w));
            }
        }
    }
    out
}

/// The linear forms behind [`back_substitute_float_rows`], before the input box bounds them.
pub(crate) fn float_linear_forms(
    net: &Network,
    pre: &[Vec<Interval<f64>>],
    top: usize,
    mut coef: Array2<f64>,
    activation: bool,
    lower: LowerRelaxation,
    mut loss: Option<&mut [Vec<f64>]>,
) -> LinearForms {
    let rows = coef.nrows();
    let mut constant = vec![0.0f64; rows];
    // Sum of magnitudes of everything added, for the rounding margin.
    let mut magnitude = vec![0.0f64; rows];
    for (l, layer) in net.layers.iter().enumerate().take(top + 1).rev() {
        // Through the activation: coefficients on h_l become coefficients on z_l.
        if layer.activation == Activation::Relu && (l < top || activation) {
            for (r, mut row) in coef.rows_mut().into_iter().enumerate() {
                for (o, (a, z)) in row.iter_mut().zip(&pre[l]).enumerate() {
                    if z.lo >= 0.0 {
                        continue;
                    }
                    if z.hi <= 0.0 {
                        *a = 0.0;
                        continue;
                    }
                    if let Some(loss) = loss.as_deref_mut().filter(|_| r == 0) {
                        loss[l][o] += a.abs() * relaxation_height(*z);
                    }
                    if *a >= 0.0 {
                        // h <= s (z - lo), s = hi / (hi - lo)
                        let s = z.hi / (z.hi - z.lo);
                        constant[r] -= *a * s * z.lo;
                        magnitude[r] += (*a * s * z.lo).abs();
                        *a *= s;
                    } else if lower == LowerRelaxation::Zero
                        || (lower == LowerRelaxation::ByRange && z.hi < -z.lo)
                    {
                        // h >= 0: a negative coefficient times h is at most 0.
                        *a = 0.0;
                    }
                    // else h >= z: keep the coefficient on z.
                }
            }
        }
        // Through the affine map: z_l = W h_{l-1} + b.
        let bias = layer.bias.mapv(f64::from);
        let added = coef.dot(&bias);
        let added_abs = coef.mapv(f64::abs).dot(&bias.mapv(f64::abs));
        for r in 0..rows {
            constant[r] += added[r];
            magnitude[r] += added_abs[r];
        }
        coef = times_weights(&coef, &layer.weights);
    }
    LinearForms {
        coef,
        constant,
        magnitude,
    }
}
