//! ε-equivalence over a box: bounds of the integer network's deviation from the float one
//! (differential where possible), and the input splitting that decides boxes of few inputs
//! (ACAS Xu) by those bounds alone.

use std::time::Instant;

use super::bounds::{self, float_bounds};
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
fn widest_influence(fb: &bounds::FloatBounds, lower: &[f64], upper: &[f64]) -> Option<usize> {
    let splittable = |i: &usize| upper[*i] > lower[*i];
    if fb.influence.iter().all(|v| *v == 0.0) {
        return None;
    }
    (0..lower.len())
        .filter(splittable)
        .max_by(|a, b| fb.influence[*a].total_cmp(&fb.influence[*b]))
}

/// Up to this many inputs, ε-equivalence boxes are decided by splitting the input box under
/// the differential bounds rather than by the solver.
pub(crate) const BOUND_SPLIT_MAX_INPUTS: usize = 16;

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

    /// The part `[lower, upper]` bounded: its excess over eps and the input to split it along.
    fn part(&self, lower: Vec<f64>, upper: Vec<f64>, eps: f64) -> Part {
        let fb = float_bounds(self.cmp.float, &lower, &upper);
        let excess = deviation_excess(&self.deviation_bounds(&fb, &lower, &upper), eps);
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
                let volume = |lo: &[f64], hi: &[f64]| -> f64 {
                    lo.iter()
                        .zip(hi)
                        .zip(lower.iter().zip(upper))
                        .filter(|(_, (l, u))| u > l)
                        .map(|((a, b), (l, u))| (b - a) / (u - l))
                        .product()
                };
                let open: f64 = volume(&lo, &hi)
                    + stack
                        .iter()
                        .map(|p| volume(&p.lower, &p.upper))
                        .sum::<f64>();
                return Outcome::Unknown(format!(
                    "time-out after bounding {parts} parts of the box, {} left open ({:.2}% of its volume)",
                    stack.len() + 1,
                    100.0 * open
                ));
            }
            parts += 1;
            let centre = midpoint(&lo, &hi);
            if let Some(ce) = self.cmp.falsify(&lo, &hi, &[centre]) {
                return Outcome::Counterexample(ce);
            }
            // The input whose range accounts for most of the unstable neurons' relaxation
            // error (ReluVal's smear), else the one that moves the first layer most. On ACAS
            // Xu 1_1 (16/16, ε 0.05) this takes 53 parts where the first layer's rule took 372
            // (box 4.1), 46 where it took 2254 (box 9.1).
            let halvable = |d: &usize| {
                let mid = 0.5 * (lo[*d] + hi[*d]);
                mid > lo[*d] && mid < hi[*d]
            };
            let dim = split
                .filter(halvable)
                .or_else(|| self.split_dimension(&lo, &hi).filter(halvable));
            let Some(dim) = dim else {
                // Too small to split, yet the bounds still reach beyond eps (a deviation just
                // below eps, at a saturating neuron, can do that): the solver decides it.
                match self.decide(&lo, &hi, 1, deadline) {
                    Outcome::Proved => continue,
                    other => return other,
                }
            };
            let mid = 0.5 * (lo[dim] + hi[dim]);
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
