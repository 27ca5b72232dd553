//! Top-1 boxes of few inputs on which the float network keeps one class: the quantized
//! network's rivals excluded by bounds, part by part, bisecting the input box.
//!
//! On such boxes the question is the quantized network's robustness alone. The solver splits
//! a box it cannot decide one input at a time, a second per query, which on a dozen inputs
//! does not converge (a fresh scikit-learn 12-32-24-4 MLP at 8/8: 7 of 40 data-row boxes
//! undecided after 60 s each), while the bounds of a part cost well under a millisecond and
//! tighten quickly as it shrinks.

use std::time::Instant;

use super::bounds::float_bounds;
use super::differential::input_cells;
use super::epsilon::{
    volume_fraction, widest_influence, BOUND_SPLIT_MAX_INPUTS, MAX_ENUMERATED_CELLS,
};
use super::region::{Outcome, PairBounds, Region};
use super::{midpoint, Quantized};

/// When the bisection's three quarters of the time are up and less than this fraction of the
/// box is left open, it goes on to the box's deadline instead of handing the box to the
/// solver (a fresh scikit-learn 8-16-16-3 MLP's row-24 box: 0.004% left open in 5 parts, on
/// which the exact encoding timed out).
const NEARLY_CLOSED: f64 = 0.01;

/// A part of the box, how much room its bounds leave a rival (negative: none), the input to
/// split it along, and where the quantized network was seen to pick a rival.
struct Part {
    lower: Vec<f64>,
    upper: Vec<f64>,
    room: f64,
    split: Option<usize>,
    witness: Option<Vec<f64>>,
}

impl Region<'_> {
    /// The part `[lower, upper]` bounded against every rival of `class`: exactly, input cell
    /// by input cell, when it holds few integer inputs (bisection converges on cell boundaries,
    /// where bounds over two neighbouring inputs in every dimension never close; see
    /// [`MAX_ENUMERATED_CELLS`]).
    fn rival_part(&self, lower: Vec<f64>, upper: Vec<f64>, class: usize) -> Part {
        let mut witness = None;
        if let Quantized::Integer(int) = self.cmp.quantized {
            if let Some(cells) = input_cells(int, &lower, &upper, MAX_ENUMERATED_CELLS) {
                let decision = self.cmp.options.decision;
                witness = cells
                    .iter()
                    .find(|cell| decision.pick(&int.logits_q(&cell.input)) != class)
                    .map(|cell| midpoint(&cell.lower, &cell.upper));
                if witness.is_none() {
                    // Every integer input of the part keeps the class: closed, nothing to
                    // bound or split.
                    return Part {
                        lower,
                        upper,
                        room: -1.0,
                        split: None,
                        witness,
                    };
                }
            }
        }
        let fb = float_bounds(self.cmp.float, &lower, &upper);
        let split = widest_influence(&fb, &lower, &upper);
        if witness.is_some() {
            return Part {
                lower,
                upper,
                room: 0.0,
                split,
                witness,
            };
        }
        let bounds = PairBounds::new(
            self.cmp.float,
            self.cmp.quantized,
            self.deviation_model(),
            &fb,
            (&lower, &upper),
            self.cmp.options.decision,
        );
        let room = (0..bounds.quantized.len())
            .filter(|j| *j != class)
            .map(|j| bounds.quantized_rival_room(class, j))
            .fold(f64::NEG_INFINITY, f64::max);
        Part {
            lower,
            upper,
            room,
            split,
            witness: None,
        }
    }

    /// Where to split the part `[lo, hi]`: the input and the two halves' ends along it
    /// (`left_hi` and `right_lo`). With the integer semantics, between two integer inputs, so
    /// that each half holds fewer of them (the left half ends just below the cell boundary
    /// nearest the midpoint, where the right one starts: a cell boundary quantizes to the
    /// upper input), along the input with the most relaxation error (`preferred`) or else the
    /// one that moves the first layer most among those still holding several integer inputs.
    /// Otherwise at the midpoint. `None` when nothing can be split.
    ///
    /// The reals strictly between the two halves (between `left_hi`, the boundary's f64
    /// predecessor, and the boundary) are in neither, but they quantize to `left_hi`'s input:
    /// the halves still hold every integer input of the part, and the quantized network's
    /// class depends on nothing else (the float network's was proved on the whole box).
    fn rival_cut(
        &self,
        lo: &[f64],
        hi: &[f64],
        preferred: Option<usize>,
    ) -> Option<(usize, f64, f64)> {
        let Quantized::Integer(int) = self.cmp.quantized else {
            let dim = preferred.or_else(|| self.split_dimension(lo, hi))?;
            let mid = 0.5 * (lo[dim] + hi[dim]);
            return (mid > lo[dim] && mid < hi[dim]).then_some((dim, mid, mid));
        };
        let inputs = |d: usize| (int.input.quantize(d, lo[d]), int.input.quantize(d, hi[d]));
        let several = |d: &usize| {
            let (a, b) = inputs(*d);
            a < b
        };
        let dim = preferred.filter(several).or_else(|| {
            let (lo, mut hi) = (lo.to_vec(), hi.to_vec());
            // Inputs holding one integer input are not worth splitting: pin them.
            for d in (0..lo.len()).filter(|d| !several(d)) {
                hi[d] = lo[d];
            }
            self.split_dimension(&lo, &hi)
        })?;
        let (a, b) = inputs(dim);
        let mid = 0.5 * (lo[dim] + hi[dim]);
        let step = int.input.scale(dim);
        // The boundary between inputs v and v + 1 is (v + 1/2) step (exact: a power of two).
        let v = ((mid / step - 0.5).round() as i64).clamp(i64::from(a), i64::from(b) - 1);
        let boundary = (v as f64 + 0.5) * step;
        let below = boundary.next_down();
        let separated = below >= lo[dim]
            && boundary <= hi[dim]
            && i64::from(int.input.quantize(dim, below)) == v
            && i64::from(int.input.quantize(dim, boundary)) == v + 1;
        separated.then_some((dim, below, boundary))
    }

    /// Whether the quantized network picks `k` on every input of the box, given that the
    /// float network does and that bounds leave `rivals` open. Few inputs: bisecting the box
    /// under bounds decides most of these boxes far sooner than the solver, so it goes first
    /// with three quarters of the time left (all of it when by then it has nearly closed the
    /// box); the solver gets the whole box and the rest of the time.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn keep_class(
        &self,
        lower: &[f64],
        upper: &[f64],
        k: usize,
        rivals: &[usize],
        depth: u32,
        deadline: Instant,
        slice: impl Fn() -> Instant,
    ) -> Outcome {
        if depth > 0 || rivals.is_empty() || lower.len() > BOUND_SPLIT_MAX_INPUTS {
            return self
                .quantized_rivals_by_solver(lower, upper, k, rivals, depth, deadline, slice);
        }
        let now = Instant::now();
        let until = now + deadline.saturating_duration_since(now) * 3 / 4;
        let outcome = self.keep_class_by_bounds(lower, upper, k, until, deadline);
        let verdict = match &outcome {
            Outcome::Proved => "proved",
            Outcome::Counterexample(_) => "counterexample",
            Outcome::Unknown(reason) => reason,
        };
        self.debug_line(
            depth,
            &format!("quantized keeps {k} by bounds"),
            verdict,
            now,
        );
        let Outcome::Unknown(bisection) = outcome else {
            return outcome;
        };
        match self.quantized_rivals_by_solver(lower, upper, k, rivals, depth, deadline, slice) {
            Outcome::Unknown(reason) => Outcome::Unknown(format!(
                "bisection under bounds: {bisection}; then the solver on the whole box: {reason}"
            )),
            outcome => outcome,
        }
    }

    /// Whether the quantized network picks `class` on every input of the box, given that the
    /// float network does: bisects the box (depth first) until the bounds of each part exclude
    /// every rival, or a part's centre disagrees. A part too small to split goes to the
    /// solver. `Unknown` at `until`, with how much of the box is left open, unless less than
    /// [`NEARLY_CLOSED`] of it is: then at `deadline`.
    fn keep_class_by_bounds(
        &self,
        lower: &[f64],
        upper: &[f64],
        class: usize,
        mut until: Instant,
        deadline: Instant,
    ) -> Outcome {
        let mut stack = vec![self.rival_part(lower.to_vec(), upper.to_vec(), class)];
        let mut parts = 0usize;
        let (mut thinnest, mut thinnest_at) = (f64::INFINITY, Vec::new());
        while let Some(part) = stack.pop() {
            if part.room < 0.0 {
                continue;
            }
            let now = Instant::now();
            if now >= until {
                let open: f64 = std::iter::once(&part)
                    .chain(&stack)
                    .map(|p| volume_fraction((&p.lower, &p.upper), (lower, upper)))
                    .sum();
                if now < deadline && open < NEARLY_CLOSED {
                    // The rest is most likely slivers at cell boundaries, which the bisection
                    // closes sooner than the solver (whose exact encoding stalls even on them).
                    until = deadline;
                } else {
                    return Outcome::Unknown(format!(
                        "time-out after bounding {parts} parts of the box, {} left open ({:.2}% of its volume); thinnest quantized margin found {thinnest:.4}",
                        stack.len() + 1,
                        100.0 * open
                    ));
                }
            }
            parts += 1;
            let search =
                self.cmp
                    .search_when_stalled(parts, (lower, upper), &thinnest_at, deadline);
            if let Some(ce) = search {
                return Outcome::Counterexample(ce);
            }
            let Part {
                lower: lo,
                upper: hi,
                split,
                witness,
                ..
            } = part;
            let centre = midpoint(&lo, &hi);
            let margin = self.cmp.quantized_margin_at(&centre, class);
            let candidates: Vec<Vec<f64>> = witness.into_iter().chain([centre.clone()]).collect();
            if let Some(ce) = self.cmp.falsify(&lo, &hi, &candidates) {
                return Outcome::Counterexample(ce);
            }
            // The bisection goes where the bounds are loosest, which is where the quantized
            // margin is thinnest: a local search from each new thinnest margin at a part's
            // centre finds the disagreements that centres miss.
            if margin < thinnest {
                (thinnest, thinnest_at) = (margin, centre.clone());
                if let Some(ce) = self.cmp.attack(lower, upper, &centre, deadline) {
                    return Outcome::Counterexample(ce);
                }
            }
            let Some((dim, left_hi, right_lo)) = self.rival_cut(&lo, &hi, split) else {
                // A point (or no integer input left to separate): the solver decides it.
                match self.decide(&lo, &hi, 1, deadline) {
                    Outcome::Proved => continue,
                    other => return other,
                }
            };
            let (mut left_upper, mut right_lower) = (hi.clone(), lo.clone());
            left_upper[dim] = left_hi;
            right_lower[dim] = right_lo;
            let left = self.rival_part(lo, left_upper, class);
            let right = self.rival_part(right_lower, hi, class);
            // Parts the bounds close need no place on the stack.
            stack.extend([right, left].into_iter().filter(|p| p.room >= 0.0));
        }
        if std::env::var_os("CEG4N_DEBUG").is_some() {
            eprintln!(
                "box {}: rivals excluded by bounds on {parts} parts",
                self.id
            );
        }
        Outcome::Proved
    }
}
