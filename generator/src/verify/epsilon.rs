//! ε-equivalence over a box: bounds of the integer network's deviation from the float one
//! (differential where possible), and the input splitting that decides boxes of few inputs
//! (ACAS Xu) by those bounds alone.

use std::time::Instant;

use super::bounds::{self, float_bounds};
use super::differential::{cell_deviation, input_cell};
use super::region::{Outcome, Query, Region};
use super::{midpoint, Quantized};

/// How far the deviation bounds reach beyond `[-eps, eps]` (at most 0: the box is proved).
fn deviation_excess(deviations: &[bounds::Interval<f64>], eps: f64) -> f64 {
    deviations
        .iter()
        .map(|d| (d.hi - eps).max(-d.lo - eps))
        .fold(f64::NEG_INFINITY, f64::max)
}

/// The (output, direction) deviations beyond `eps` that the bounds do not exclude.
pub(crate) fn deviation_queries(deviations: &[bounds::Interval<f64>], eps: f64) -> Vec<Query> {
    let mut queries = Vec::new();
    for (output, d) in deviations.iter().enumerate() {
        if -d.lo > eps {
            queries.push(Query::Deviation {
                output,
                above: false,
                eps,
            });
        }
        if d.hi > eps {
            queries.push(Query::Deviation {
                output,
                above: true,
                eps,
            });
        }
    }
    queries
}

/// A part of a box, how far its deviation bounds exceed eps, and the input to split it along.
struct Part {
    lower: Vec<f64>,
    upper: Vec<f64>,
    excess: f64,
    split: Option<usize>,
}

/// The input with the largest [`bounds::FloatBounds::influence`]; `None` when no neuron is
/// unstable (the caller then splits the input that moves the first layer most) or every input
/// is a point.
pub(crate) fn widest_influence(
    fb: &bounds::FloatBounds,
    lower: &[f64],
    upper: &[f64],
) -> Option<usize> {
    let splittable = |i: &usize| upper[*i] > lower[*i];
    if fb.influence.iter().all(|v| *v == 0.0) {
        return None;
    }
    (0..lower.len())
        .filter(splittable)
        .max_by(|a, b| fb.influence[*a].total_cmp(&fb.influence[*b]))
}

/// The volume of the part `[lo, hi]` as a fraction of the box `[lower, upper]`'s, over the
/// inputs along which the box is not a point.
pub(crate) fn volume_fraction((lo, hi): (&[f64], &[f64]), (lower, upper): (&[f64], &[f64])) -> f64 {
    lo.iter()
        .zip(hi)
        .zip(lower.iter().zip(upper))
        .filter(|(_, (l, u))| u > l)
        .map(|((a, b), (l, u))| (b - a) / (u - l))
        .product()
}

/// Up to this many inputs, ε-equivalence boxes are decided by splitting the input box under
/// the differential bounds rather than by the solver.
pub(crate) const BOUND_SPLIT_MAX_INPUTS: usize = 16;

/// Up to this many integer inputs in a part, its deviation is bounded input cell by input cell
/// ([`cell_deviation`]): bisection converges on cell boundaries, where a part straddles two
/// cells, and the integer network's interval bounds over even two neighbouring inputs widen
/// layer by layer (on ACAS Xu 1_1 at 16/16, a part 1e-16 wide straddling two cells in two
/// inputs bounded the deviation within [-0.0500, -0.0441] where it is -0.0465): without
/// enumeration the bisection never ends there.
pub(crate) const MAX_ENUMERATED_CELLS: usize = 32;

/// After bounding this many parts without closing the box, the bisection searches for a
/// saturating activation ([`super::Comparison::saturation_search`]). On ACAS Xu at 16/16 and
/// ε 0.05 every box that bounds decide at all is closed within 250 parts but one (1_1 box 9.3,
/// about 5000).
const SATURATION_SEARCH_AFTER_PARTS: usize = 256;

/// A part's centre deviating by more than this fraction of eps starts a local search for a
/// violation.
const ATTACK_FROM_DEVIATION: f64 = 0.5;

impl Region<'_> {
    /// Bounds of each dequantized logit minus the float one over the box: the differential
    /// bound of the integer network, else the two networks' bounds subtracted.
    pub(crate) fn deviation_bounds(
        &self,
        fb: &bounds::FloatBounds,
        lower: &[f64],
        upper: &[f64],
    ) -> Vec<bounds::Interval<f64>> {
        let (net, quantized) = (self.cmp.float, self.cmp.quantized);
        if let (Quantized::Integer(int), Some(model)) = (quantized, self.deviation_model()) {
            let ib = bounds::int_bounds(int, lower, upper);
            // Never looser than the subtraction: it is intersected with it layer by layer.
            if let Some(dev) = model.deviation(net, int, fb, &ib, lower, upper) {
                return dev.logits().to_vec();
            }
        }
        let float = fb.pre.last().cloned().unwrap_or_default();
        let dequantized = quantized.dequantized_bounds(lower, upper);
        float
            .iter()
            .zip(&dequantized)
            .map(|(f, q)| bounds::Interval {
                lo: q.lo - f.hi,
                hi: q.hi - f.lo,
            })
            .collect()
    }

    /// Where to cut `[lo, hi]` along `dim`: at the input cell boundary nearest the midpoint when
    /// the range holds more than one integer input (so that the parts' integer inputs stay few,
    /// [`cell_deviation`]), else at the midpoint; `None` when the range cannot be cut.
    pub(crate) fn cut(&self, dim: usize, lo: f64, hi: f64) -> Option<f64> {
        let mid = 0.5 * (lo + hi);
        let inside = |c: &f64| *c > lo && *c < hi;
        let boundary = match self.cmp.quantized {
            Quantized::Integer(int)
                if int.input.quantize(dim, lo) < int.input.quantize(dim, hi) =>
            {
                let cell = input_cell(int, dim, int.input.quantize(dim, mid));
                [cell.lo, cell.hi]
                    .into_iter()
                    .filter(|c| c.is_finite() && inside(c))
                    .min_by(|a, b| (a - mid).abs().total_cmp(&(b - mid).abs()))
            }
            _ => None,
        };
        boundary.or_else(|| inside(&mid).then_some(mid))
    }

    /// The part `[lower, upper]` bounded: its excess over eps and the input to split it along.
    fn part(&self, lower: Vec<f64>, upper: Vec<f64>, eps: f64) -> Part {
        let fb = float_bounds(self.cmp.float, &lower, &upper);
        let cells = match self.cmp.quantized {
            Quantized::Integer(int) => {
                cell_deviation(self.cmp.float, int, &lower, &upper, MAX_ENUMERATED_CELLS)
            }
            Quantized::Paper(_) => None,
        };
        let deviations = cells.unwrap_or_else(|| self.deviation_bounds(&fb, &lower, &upper));
        let excess = deviation_excess(&deviations, eps);
        let split = widest_influence(&fb, &lower, &upper);
        Part {
            lower,
            upper,
            excess,
            split,
        }
    }

    /// Decides an ε-equivalence box of few inputs by bounds alone: bisects it (depth first)
    /// until the differential bounds exclude every deviation beyond `eps` on each part, or a
    /// part's centre violates the property. Deep networks over a box defeat the solver, while the bounds of
    /// small boxes are nearly exact and cost microseconds.
    pub(crate) fn split_by_bounds(
        &self,
        lower: &[f64],
        upper: &[f64],
        eps: f64,
        deadline: Instant,
    ) -> Outcome {
        let whole = self.part(lower.to_vec(), upper.to_vec(), eps);
        let mut stack = vec![whole];
        let mut parts = 0usize;
        let mut worst = 0.0f64;
        let mut worst_at = Vec::new();
        while let Some(Part {
            lower: lo,
            upper: hi,
            excess,
            split,
        }) = stack.pop()
        {
            if excess <= 0.0 {
                continue;
            }
            if Instant::now() >= deadline {
                let volume = |lo: &[f64], hi: &[f64]| volume_fraction((lo, hi), (lower, upper));
                // Parts already bounded within eps wait on the stack too: they are closed.
                let still_open: Vec<&Part> = stack.iter().filter(|p| p.excess > 0.0).collect();
                let open: f64 = volume(&lo, &hi)
                    + still_open
                        .iter()
                        .map(|p| volume(&p.lower, &p.upper))
                        .sum::<f64>();
                return Outcome::Unknown(format!(
                    "time-out after bounding {parts} parts of the box, {} left open ({:.2}% of its volume); largest deviation found {worst:.4} (at {worst_at:?})",
                    still_open.len() + 1,
                    100.0 * open
                ));
            }
            parts += 1;
            // The saturation search costs about half a second (64 restarts); most boxes are
            // proved by far fewer parts than this, so only a box the bisection has not closed
            // by then pays for it.
            if parts == SATURATION_SEARCH_AFTER_PARTS {
                if let Some(ce) = self.cmp.saturation_search(lower, upper, deadline) {
                    return Outcome::Counterexample(ce);
                }
            }
            let search = self
                .cmp
                .search_when_stalled(parts, (lower, upper), &worst_at, deadline);
            if let Some(ce) = search {
                return Outcome::Counterexample(ce);
            }
            let centre = midpoint(&lo, &hi);
            if let Some(ce) = self.cmp.falsify(&lo, &hi, std::slice::from_ref(&centre)) {
                return Outcome::Counterexample(ce);
            }
            // The bisection goes where the bounds are loosest, which is where the deviation is
            // largest (a saturating neuron): a local search from each new largest deviation at
            // a part's centre finds violations that centres miss (ACAS Xu 1_1 at 16/16, box
            // 8.5: 0.102 a few steps from a centre at 0.0465).
            let deviation = self.cmp.deviation_at(&centre);
            if deviation > worst {
                (worst, worst_at) = (deviation, centre.clone());
                if deviation > ATTACK_FROM_DEVIATION * eps {
                    if let Some(ce) = self.cmp.attack(lower, upper, &centre, deadline) {
                        return Outcome::Counterexample(ce);
                    }
                }
            }
            // The input whose range accounts for most of the unstable neurons' relaxation
            // error (ReluVal's smear), else the one that moves the first layer most. On ACAS
            // Xu 1_1 (16/16, ε 0.05) this takes 53 parts where the first layer's rule took 372
            // (box 4.1), 46 where it took 2254 (box 9.1).
            let cut = |d: usize| self.cut(d, lo[d], hi[d]).map(|c| (d, c));
            let dim = split
                .and_then(cut)
                .or_else(|| self.split_dimension(&lo, &hi).and_then(cut));
            let Some((dim, mid)) = dim else {
                // Too small to split, yet the bounds still reach beyond eps (a deviation just
                // below eps, at a saturating neuron, can do that): the solver decides it.
                match self.decide(&lo, &hi, 1, deadline) {
                    Outcome::Proved => continue,
                    other => return other,
                }
            };
            let (mut left_hi, mut right_lo) = (hi.clone(), lo.clone());
            left_hi[dim] = mid;
            right_lo[dim] = mid;
            let left = self.part(lo, left_hi, eps);
            let right = self.part(right_lo, hi, eps);
            stack.extend([right, left]);
        }
        if std::env::var_os("CEG4N_DEBUG").is_some() {
            eprintln!("box {}: proved by bounds on {parts} parts", self.id);
        }
        Outcome::Proved
    }
}
