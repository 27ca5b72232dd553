//! Back-substitution of linear forms through layers whose neurons have linear lower and upper
//! bounds (DeepPoly's step), shared by the differential bound ([`super::differential`]: the
//! deviation of the integer network from the float one) and the integer network's own bound
//! ([`super::int_symbolic`]).
//!
//! The layers are `z_l = W_l h_(l-1) + t_l`, with `t_l` known only as intervals (a bias, or an
//! injected error), each `h_l` bounded linearly in `z_l` neuron by neuron, and `h_(-1)`, the
//! input, as intervals. f64 rounding is covered by a relative margin.

use super::bounds::Interval;
use ndarray::{Array1, Array2};

/// Relative widening for f64 rounding.
const MARGIN: f64 = 1e-9;

/// One neuron's linear bounds `lower_slope * z + lower_offset <= h <= upper_slope * z +
/// upper_offset` (slopes >= 0), so that back-substitution carries a form through the neuron
/// instead of stopping there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NeuronBounds {
    pub(crate) lower_slope: f64,
    pub(crate) lower_offset: f64,
    pub(crate) upper_slope: f64,
    pub(crate) upper_offset: f64,
}

impl NeuronBounds {
    /// Only an interval of `h` is known.
    pub(crate) fn constant(h: Interval<f64>) -> NeuronBounds {
        NeuronBounds {
            lower_slope: 0.0,
            lower_offset: h.lo,
            upper_slope: 0.0,
            upper_offset: h.hi,
        }
    }
}

/// Upper bounds of `coef · z_top` for every row of `coef`: `z_l = weights[l] h_(l-1) +
/// terms[l]`, each neuron's `h_l` by its [`NeuronBounds`] in `neurons[l]`, the input by its
/// intervals.
pub(crate) fn back_substitute(
    weights: &[&Array2<f64>],
    terms: &[Vec<Interval<f64>>],
    neurons: &[Vec<NeuronBounds>],
    input: &[Interval<f64>],
    top: usize,
    mut coef: Array2<f64>,
) -> Vec<f64> {
    let rows = coef.nrows();
    let (mut bound, mut magnitude) = (Array1::<f64>::zeros(rows), Array1::<f64>::zeros(rows));
    // Adds the upper end of `coef · i` over the intervals `terms`: the positive coefficients
    // take the upper ends, the negative ones the lower ends (as matrix products: this runs for
    // every part of every box). The magnitude is over-estimated by `|coef| · max(|lo|, |hi|)`,
    // which only widens the rounding margin.
    let concretize = |coef: &Array2<f64>,
                      terms: &[Interval<f64>],
                      bound: &mut Array1<f64>,
                      magnitude: &mut Array1<f64>| {
        let lo: Array1<f64> = terms.iter().map(|i| i.lo).collect();
        let hi: Array1<f64> = terms.iter().map(|i| i.hi).collect();
        let mag: Array1<f64> = terms.iter().map(|i| i.lo.abs().max(i.hi.abs())).collect();
        let positive = coef.mapv(|a| a.max(0.0));
        let negative = coef - &positive;
        *bound += &(positive.dot(&hi) + negative.dot(&lo));
        *magnitude += &coef.mapv(f64::abs).dot(&mag);
    };
    for l in (0..=top).rev() {
        concretize(&coef, &terms[l], &mut bound, &mut magnitude);
        coef = coef.dot(weights[l]);
        if l == 0 {
            break;
        }
        // Each neuron's linear bound on the side its coefficient's sign asks for: its offset is
        // concretized, its slope carries the coefficient down to the layer's `z`.
        let layer = &neurons[l - 1];
        let column = |f: fn(&NeuronBounds) -> f64| layer.iter().map(f).collect::<Array1<f64>>();
        let (upper_slope, upper_offset) = (column(|p| p.upper_slope), column(|p| p.upper_offset));
        let (lower_slope, lower_offset) = (column(|p| p.lower_slope), column(|p| p.lower_offset));
        let positive = coef.mapv(|a| a.max(0.0));
        let negative = &coef - &positive;
        bound += &(positive.dot(&upper_offset) + negative.dot(&lower_offset));
        magnitude += &(positive.dot(&upper_offset.mapv(f64::abs))
            - negative.dot(&lower_offset.mapv(f64::abs)));
        coef = positive * &upper_slope + negative * &lower_slope;
    }
    concretize(&coef, input, &mut bound, &mut magnitude);
    bound
        .iter()
        .zip(&magnitude)
        .map(|(b, m)| b + MARGIN * (1.0 + m))
        .collect()
}

/// One row per ordered pair of outputs, row `j * n + k` being `scale(j) e_j - scale(k) e_k`
/// (zero when `j == k`): back-substituted, the upper bounds of every output difference.
pub(crate) fn pair_rows(n: usize, scale: impl Fn(usize) -> f64) -> Array2<f64> {
    Array2::from_shape_fn((n * n, n), |(r, o)| {
        let (j, k) = (r / n, r % n);
        if j == k {
            0.0
        } else if o == j {
            scale(o)
        } else if o == k {
            -scale(o)
        } else {
            0.0
        }
    })
}

/// The bounds of [`pair_rows`] as `d[j][k]`.
pub(crate) fn by_pair(bounds: &[f64], n: usize) -> Vec<Vec<f64>> {
    bounds.chunks(n.max(1)).map(<[f64]>::to_vec).collect()
}
