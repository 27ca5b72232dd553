//! A coordinate search for a violation on boxes of few inputs: from a bisection's worst point,
//! the box's corners and random points, each input in turn is moved to the best of a grid
//! across the whole box, then nudged by halving steps.
//!
//! Why a second search next to [`super::falsify`]'s random moves: where the quantized network
//! saturates, the deviation is a ridge along a few inputs that random moves in all inputs at
//! once rarely follow. On ACAS Xu 1_2 at 16/16 (box 8.5, ε 0.05) the random-move searches
//! found deviations up to 0.0066 in 60 s; this search finds one of 0.0502 > ε in about 4 s.

use std::time::Instant;

use rand::SeedableRng;

use super::falsify::random_point;
use super::verdict::{Counterexample, FoundBy};
use super::Comparison;

/// The bisections under bounds ([`super::epsilon`], [`super::rival_split`]) run the search
/// once a box is still open after this many parts. On ACAS Xu at 16/16 and ε 0.05 the boxes
/// bounds prove take at most about 5000 parts; those that need more than 2048 pay the search's
/// time once.
const SEARCH_AFTER_PARTS: usize = 2048;

/// The search gets a sixteenth of the box's remaining time at most: it is paid by boxes that
/// hold too (ACAS Xu 1_5 box 9.5 is proved in about 51 s of 60 without it, and with a quarter
/// it was not).
const SEARCH_SHARE: f64 = 16.0;

/// Grid points per input (both ends included) of a line search across the box.
const LINE_POINTS: usize = 33;

/// Sweeps over every input before the line search settles for the point it has.
const LINE_SWEEPS: usize = 6;

/// The pattern search's first step, as a fraction of an input's range.
const FIRST_STEP: f64 = 0.25;

/// Rounds of line and pattern search per start; a round that improves nothing ends it.
const CLIMB_ROUNDS: usize = 4;

/// The pattern search stops when its step falls below this fraction of an input's range.
const SMALLEST_STEP: f64 = 1e-6;

/// Up to this many inputs, every corner of the box is a start (2^8 = 256 corners).
const CORNER_INPUTS: usize = 8;

impl Comparison<'_> {
    /// The bisections under bounds call this with each part they take up, `parts` counting
    /// it: once a box is still open after [`SEARCH_AFTER_PARTS`] parts, a
    /// [`Comparison::coordinate_search`] from `seed` (the point of the worst bound found so
    /// far; empty when there is none yet) with [`SEARCH_SHARE`] of the time left until
    /// `deadline`. Otherwise nothing.
    pub(crate) fn search_when_stalled(
        &self,
        parts: usize,
        (lower, upper): (&[f64], &[f64]),
        seed: &[f64],
        deadline: Instant,
    ) -> Option<Counterexample> {
        if parts != SEARCH_AFTER_PARTS {
            return None;
        }
        let now = Instant::now();
        let budget = deadline
            .saturating_duration_since(now)
            .div_f64(SEARCH_SHARE);
        self.coordinate_search(lower, upper, &[seed.to_vec()], now + budget)
    }

    /// Searches `[lower, upper]` for a point that violates the property (it is replayed on
    /// both networks before it is returned), from `seeds`, the corners (up to
    /// [`CORNER_INPUTS`] inputs), the centre and then random points, until `until`.
    pub fn coordinate_search(
        &self,
        lower: &[f64],
        upper: &[f64],
        seeds: &[Vec<f64>],
        until: Instant,
    ) -> Option<Counterexample> {
        let n = lower.len();
        // A bisection that has not yet found its worst point passes an empty seed.
        let mut starts: Vec<Vec<f64>> = seeds.iter().filter(|s| s.len() == n).cloned().collect();
        if n <= CORNER_INPUTS {
            for corner in 0..1usize << n {
                let pick = |i: usize| {
                    if corner >> i & 1 == 1 {
                        upper[i]
                    } else {
                        lower[i]
                    }
                };
                starts.push((0..n).map(pick).collect());
            }
        }
        starts.push(super::midpoint(lower, upper));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xC00D);
        // Then random starts until the time is up: the violations this search finds can lie
        // in basins a few hundred random starts hit once (ACAS Xu 1_2, box 8.5).
        let random = std::iter::repeat_with(move || random_point(lower, upper, &mut rng));
        let starts = starts.into_iter().chain(random);
        let search = Coordinates {
            lower,
            upper,
            until,
        };
        let mut lowest = f64::INFINITY;
        for (s, start) in starts.enumerate() {
            if Instant::now() >= until {
                if std::env::var_os("CEG4N_DEBUG").is_some() {
                    eprintln!("coordinate search: {s} starts, lowest score {lowest}");
                }
                return None;
            }
            let (x, score) = search.climb(start, &|x| self.violation_score(x));
            lowest = lowest.min(score);
            if score < 0.0 {
                let ce = self.replay(&x, FoundBy::Search);
                if ce.reproduces_in_f32 {
                    return Some(ce);
                }
            }
        }
        None
    }
}

/// The box a coordinate search moves in, and when it gives up.
struct Coordinates<'a> {
    lower: &'a [f64],
    upper: &'a [f64],
    until: Instant,
}

impl Coordinates<'_> {
    /// From `x`, the lowest `objective` found (below zero: stop there) and where: rounds of line
    /// searches across the box along each input, then a pattern search with halving steps,
    /// until a round improves nothing.
    fn climb(&self, x: Vec<f64>, objective: &dyn Fn(&[f64]) -> f64) -> (Vec<f64>, f64) {
        let inputs: Vec<usize> = (0..x.len())
            .filter(|i| self.upper[*i] > self.lower[*i])
            .collect();
        let best = objective(&x);
        let mut climb = Climb {
            x,
            best,
            objective,
            within: self,
        };
        for _ in 0..CLIMB_ROUNDS {
            let before = climb.best;
            climb.line_sweeps(&inputs);
            climb.pattern(&inputs);
            if climb.best < 0.0 || climb.best >= before || Instant::now() >= self.until {
                break;
            }
        }
        (climb.x, climb.best)
    }
}

/// One climb's point, its objective and the box.
struct Climb<'a> {
    x: Vec<f64>,
    best: f64,
    objective: &'a dyn Fn(&[f64]) -> f64,
    within: &'a Coordinates<'a>,
}

impl Climb<'_> {
    /// Moves input `i` to `v` (clamped into the box) if that lowers the objective.
    fn try_at(&mut self, i: usize, v: f64) -> bool {
        let mut y = self.x.clone();
        y[i] = v.clamp(self.within.lower[i], self.within.upper[i]);
        let score = (self.objective)(&y);
        let better = score < self.best;
        if better {
            (self.x, self.best) = (y, score);
        }
        better
    }

    fn done(&self) -> bool {
        self.best < 0.0 || Instant::now() >= self.within.until
    }

    /// Each input in turn to the best of [`LINE_POINTS`] across the box, until a sweep moves
    /// none (at most [`LINE_SWEEPS`]).
    fn line_sweeps(&mut self, inputs: &[usize]) {
        for _ in 0..LINE_SWEEPS {
            let mut moved = false;
            for &i in inputs {
                let (l, u) = (self.within.lower[i], self.within.upper[i]);
                for k in 0..LINE_POINTS {
                    moved |= self.try_at(i, l + (u - l) * k as f64 / (LINE_POINTS - 1) as f64);
                }
                if self.done() {
                    return;
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Moves of each input by `step` times its range either way, from [`FIRST_STEP`]; the
    /// step halves whenever no input moves, down to [`SMALLEST_STEP`].
    fn pattern(&mut self, inputs: &[usize]) {
        let mut step = FIRST_STEP;
        while step >= SMALLEST_STEP && !self.done() {
            let mut moved = false;
            for &i in inputs {
                let width = self.within.upper[i] - self.within.lower[i];
                for sign in [1.0, -1.0] {
                    moved |= self.try_at(i, self.x[i] + sign * step * width);
                }
            }
            if !moved {
                step /= 2.0;
            }
        }
    }
}
