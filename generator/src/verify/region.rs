//! Deciding one region (a box or a part of it): bounds, solver queries per class pair, and
//! splitting the region when the solver cannot decide it in time.

use std::time::{Duration, Instant};

use super::bounds::{float_bounds, float_logit_differences};
use super::branching::{self, Branched};
use super::epsilon::{deviation_queries, BOUND_SPLIT_MAX_INPUTS};
use super::*;
use super::{falsify::*, solver::*, verdict::*};
use crate::ir::Network;

/// One solver question about a box.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Query {
    /// Can the float network pick `float` while the quantized one prefers `rival` over it?
    Pair { float: usize, rival: usize },
    /// Can dequantized output `output` exceed the float one by more than eps (`above`), or
    /// fall short of it by more than eps?
    Deviation {
        output: usize,
        above: bool,
        eps: f64,
    },
}

/// Upper bounds of every logit difference of both networks over a box, oriented by the
/// decision rule (`float[j][k] >= f_j - f_k`, `quantized[j][k] >= q_j - q_k` after orienting):
/// the class is the argmax of the oriented logits.
pub(crate) struct PairBounds {
    pub(crate) float: Vec<Vec<f64>>,
    pub(crate) quantized: Vec<Vec<f64>>,
    /// The quantized bounds are of integer logits: a rival above class `k` (higher index, so
    /// the lowest-index tie-break picks `k`) must exceed it by 1 to win.
    pub(crate) integral: bool,
}

impl PairBounds {
    /// Over the box `[lower, upper]` (`fb` the float network's bounds on it): the float
    /// network's back-substituted bounds; the quantized network's tightest of its interval
    /// bounds, the float bounds plus the differential deviation, and its own symbolic bounds.
    pub(crate) fn new(
        net: &Network,
        quantized: Quantized,
        model: Option<&differential::DeviationModel>,
        fb: &bounds::FloatBounds,
        (lower, upper): (&[f64], &[f64]),
        decision: Decision,
    ) -> PairBounds {
        // d[j][k] bounds logit_j - logit_k from above.
        let float_diff = float_logit_differences(net, fb);
        let (quant_diff, integral) = match quantized {
            Quantized::Integer(int) => {
                // The integer bounds once: for the intervals' differences and both narrowings.
                let ib = bounds::int_bounds(int, lower, upper);
                let mut quant_diff = super::quantized::integer_logit_differences(int, &ib);
                if let Some(model) = model {
                    narrow_by_deviation(
                        net,
                        int,
                        model,
                        fb,
                        &ib,
                        (lower, upper),
                        &float_diff,
                        &mut quant_diff,
                    );
                }
                // The integer network's own symbolic bound.
                if let Some(d) = super::int_symbolic::symbolic_logit_differences(int, &ib) {
                    for (row, bounds) in quant_diff.iter_mut().zip(&d) {
                        for (q, bound) in row.iter_mut().zip(bounds) {
                            narrow_integer_bound(q, *bound);
                        }
                    }
                }
                (quant_diff, true)
            }
            Quantized::Paper(_) => quantized.logit_differences(lower, upper),
        };
        PairBounds {
            float: decision.orient_differences(float_diff),
            quantized: decision.orient_differences(quant_diff),
            integral,
        }
    }

    /// How far the bounds leave room for the quantized network to prefer `rival` over `class`:
    /// negative when they exclude it.
    pub(crate) fn quantized_rival_room(&self, class: usize, rival: usize) -> f64 {
        let gap_needed = if rival > class && self.integral {
            1.0
        } else {
            0.0
        };
        self.quantized[rival][class] - gap_needed
    }

    /// The (float class, rival class) pairs the bounds do not exclude.
    pub(crate) fn queries(&self) -> Vec<Query> {
        let classes = self.float.len();
        let float_diff = &self.float;
        // The float network can pick k only if k can reach every other logit.
        let float_possible =
            (0..classes).filter(|k| (0..classes).all(|m| m == *k || float_diff[*k][m] >= 0.0));
        let mut queries = Vec::new();
        for k in float_possible {
            for j in (0..classes).filter(|j| *j != k) {
                // The quantized network can prefer j over k only if its bounds allow it.
                if self.quantized_rival_room(k, j) >= 0.0 {
                    queries.push(Query::Pair { float: k, rival: j });
                }
            }
        }
        queries
    }
}

/// Narrows the integer logits' difference bounds `quant_diff[j][k] >= q_j - q_k` by the float
/// ones plus the deviation: `s (q_j - q_k) = (f_j - f_k) + (dev_j - dev_k)` when every logit has
/// the same scale `s`. Where the float network keeps a margin over a rival wider than the
/// quantization error, the rival is excluded without the solver.
#[allow(clippy::too_many_arguments)]
fn narrow_by_deviation(
    net: &Network,
    int: &crate::int_model::IntNetwork,
    model: &differential::DeviationModel,
    fb: &bounds::FloatBounds,
    ib: &bounds::IntBounds,
    (lower, upper): (&[f64], &[f64]),
    float_diff: &[Vec<f64>],
    quant_diff: &mut [Vec<f64>],
) {
    let Some(scales) = int.layers.last().map(|l| &l.acc_scale) else {
        return;
    };
    let Some(s) = scales.first().copied() else {
        return;
    };
    if scales.iter().any(|v| *v != s) || s <= 0.0 {
        return;
    }
    let Some(dev) = model.deviation(net, int, fb, ib, lower, upper) else {
        return;
    };
    let dev = dev.differences(model);
    for (j, row) in quant_diff.iter_mut().enumerate() {
        for (k, q) in row.iter_mut().enumerate() {
            if j == k {
                continue;
            }
            narrow_integer_bound(q, (float_diff[j][k] + dev[j][k]) / s);
        }
    }
}

/// Lowers `q`, an upper bound of a difference of integer logits, to the integer at or below
/// `real`, another upper bound of it (after a margin for f64 rounding).
fn narrow_integer_bound(q: &mut f64, real: f64) {
    let bound = (real + 1e-9 * (1.0 + real.abs())).floor();
    if bound.is_finite() {
        *q = q.min(bound);
    }
}

/// How deep a hard box is bisected (at most 2^depth sub-boxes).
pub(crate) const MAX_SPLIT_DEPTH: u32 = 8;

pub(crate) enum Outcome {
    Proved,
    Counterexample(Counterexample),
    Unknown(String),
}

/// Everything needed to decide sub-boxes of one property box.
pub(crate) struct Region<'a> {
    pub(crate) cmp: Comparison<'a>,
    pub(crate) id: &'a str,
    pub(crate) queries: std::cell::Cell<usize>,
    /// The class the float network was proved to pick on the whole box, once known.
    pub(crate) float_constant: std::cell::Cell<Option<usize>>,
    /// The float network's class at the box's centre and the rivals that branch and bound
    /// left open over the whole box: what an unknown verdict's reason names.
    pub(crate) open_float_rivals: std::cell::RefCell<Option<(usize, Vec<usize>)>>,
    /// Both networks prepared for differential bounds (integer semantics only), once needed.
    pub(crate) deviation_model: std::cell::OnceCell<Option<differential::DeviationModel>>,
    /// The longest time building one z3 encoding of this box took (before the first, an
    /// estimate from the network's size): a large network takes seconds, and building cannot
    /// be interrupted, so none is started that would end past the deadline.
    pub(crate) encoding_cost: std::cell::Cell<Duration>,
}

/// Why a region is unknown when no encoding could be built in the time left.
const NO_TIME_TO_ENCODE: &str = "time-out (no time left to encode the networks for the solver)";

impl Region<'_> {
    /// `build()` (a solver with its encoding) if the longest build so far would still end
    /// before `deadline`; records how long it took.
    fn encoding<T>(&self, deadline: Instant, build: impl FnOnce() -> T) -> Option<T> {
        let started = Instant::now();
        if started + self.encoding_cost.get() >= deadline {
            return None;
        }
        let built = build();
        self.encoding_cost
            .set(self.encoding_cost.get().max(started.elapsed()));
        Some(built)
    }

    /// The solver in `slot`, built there by [`Region::encoding`] on first use; `None` when it
    /// is not built yet and no time is left to build it.
    fn encoding_once<'s, T>(
        &self,
        slot: &'s mut Option<T>,
        deadline: Instant,
        build: impl FnOnce() -> T,
    ) -> Option<&'s mut T> {
        if slot.is_none() {
            *slot = Some(self.encoding(deadline, build)?);
        }
        slot.as_mut()
    }

    /// Both networks prepared for differential bounds, built on first use.
    pub(crate) fn deviation_model(&self) -> Option<&differential::DeviationModel> {
        self.deviation_model
            .get_or_init(|| match self.cmp.quantized {
                Quantized::Integer(int) => differential::DeviationModel::new(self.cmp.float, int),
                Quantized::Paper(_) => None,
            })
            .as_ref()
    }

    /// Decides the box `[lower, upper]`: bounds first, then z3 per class pair (relaxed, then
    /// exact for spurious relaxed witnesses), bisecting when a query runs out of its time slice.
    pub(crate) fn decide(
        &self,
        lower: &[f64],
        upper: &[f64],
        depth: u32,
        deadline: Instant,
    ) -> Outcome {
        let (net, quantized, decision) = (
            self.cmp.float,
            self.cmp.quantized,
            self.cmp.options.decision,
        );
        if depth > 0 {
            // A sub-box: its centre is a cheap first guess.
            let centre = midpoint(lower, upper);
            if let Some(ce) = self.cmp.falsify(lower, upper, &[centre]) {
                return Outcome::Counterexample(ce);
            }
        }
        if Instant::now() >= deadline {
            return Outcome::Unknown("time-out".into());
        }
        let fb = float_bounds(net, lower, upper);
        let queries = match self.cmp.options.equivalence {
            Equivalence::Top1 => PairBounds::new(
                net,
                quantized,
                self.deviation_model(),
                &fb,
                (lower, upper),
                decision,
            )
            .queries(),
            Equivalence::Epsilon(eps) => {
                let deviations = self.deviation_bounds(&fb, lower, upper);
                let queries = deviation_queries(&deviations, eps);
                if !queries.is_empty() && depth == 0 && lower.len() <= BOUND_SPLIT_MAX_INPUTS {
                    return self.split_by_bounds(lower, upper, eps, deadline);
                }
                queries
            }
        };
        if queries.is_empty() {
            return Outcome::Proved;
        }

        let can_split = depth < MAX_SPLIT_DEPTH;
        // One query may use a quarter of the region's time (at least a second) while the
        // region can still be split; the rest is for its halves.
        let slice = || {
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            if can_split {
                deadline.min(now + (remaining / 4).max(Duration::from_secs(1)))
            } else {
                deadline
            }
        };
        if self.cmp.options.equivalence == Equivalence::Top1 {
            if let Some(outcome) =
                self.decompose(lower, upper, &fb, &queries, depth, deadline, slice)
            {
                return outcome;
            }
        }
        let relaxed_only = !quantized.has_relaxation();
        let Some(mut relaxed) = self.encoding(deadline, || {
            PairSolver::new(
                net,
                quantized,
                lower,
                upper,
                &fb,
                relaxed_only,
                self.cmp.options,
            )
        }) else {
            return Outcome::Unknown(NO_TIME_TO_ENCODE.into());
        };
        let mut exact: Option<PairSolver> = None;
        for query in queries {
            self.queries.set(self.queries.get() + 1);
            let t = Instant::now();
            let answer = relaxed.check(query, slice());
            self.debug(depth, &format!("{query:?} relaxed"), &answer, t);
            match answer {
                Answer::Unsat => continue,
                Answer::Unknown(reason) => {
                    return self.split_or(lower, upper, depth, deadline, reason)
                }
                Answer::Sat(x) => {
                    if let Some(ce) =
                        self.near_relaxed_witness(lower, upper, &x, relaxed_only, deadline)
                    {
                        return Outcome::Counterexample(ce);
                    }
                }
            }
            let Some(exact) = self.encoding_once(&mut exact, deadline, || {
                PairSolver::new(net, quantized, lower, upper, &fb, true, self.cmp.options)
            }) else {
                return Outcome::Unknown(NO_TIME_TO_ENCODE.into());
            };
            self.queries.set(self.queries.get() + 1);
            match exact.check(query, slice()) {
                Answer::Unsat => {}
                Answer::Unknown(reason) => {
                    return self.split_or(lower, upper, depth, deadline, reason)
                }
                Answer::Sat(x) => {
                    let ce = self.cmp.replay(&x, FoundBy::Solver);
                    return Outcome::Counterexample(ce);
                }
            }
        }
        Outcome::Proved
    }

    /// Decides the box as two single-network questions when the float network keeps the
    /// centre's class `k` on the whole box: then the box is equivalent exactly when the
    /// quantized network keeps `k` too. `None` when the float network's class is not constant
    /// (or that could not be decided in time) and no disagreement was found near its decision
    /// boundary: the joint queries take over.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decompose(
        &self,
        lower: &[f64],
        upper: &[f64],
        fb: &bounds::FloatBounds,
        queries: &[Query],
        depth: u32,
        deadline: Instant,
        slice: impl Fn() -> Instant,
    ) -> Option<Outcome> {
        let (net, decision) = (self.cmp.float, self.cmp.options.decision);
        let centre = midpoint(lower, upper);
        let k = decision.pick(&net.logits(&centre));
        let float_diff = decision.orient_differences(float_logit_differences(net, fb));
        let float_rivals: Vec<usize> = (0..float_diff.len())
            .filter(|j| *j != k && float_diff[*j][k] >= 0.0)
            .collect();
        let known_constant = depth > 0 && self.float_constant.get() == Some(k);
        if !float_rivals.is_empty() && !known_constant {
            // Gradient steps first: where the float class changes, they usually show it in
            // milliseconds, and the boundary search below then finds the counterexample.
            match float_margin_descent(net, lower, upper, &centre, &float_rivals, decision, slice())
            {
                FloatDescent::ClassChange(x) => {
                    if let Some(ce) = self.cmp.falsify(lower, upper, &[centre.clone(), x]) {
                        return Some(Outcome::Counterexample(ce));
                    }
                }
                // Where the float margin is thinnest the quantized network's rounding flips
                // the class if anywhere. Its rounding error varies from point to point like
                // noise, so points a few inputs away are fresh draws of it; a local search on
                // the quantized margin follows.
                FloatDescent::Closest(x) => {
                    let found = self
                        .cmp
                        .sample_around(lower, upper, &x, slice())
                        .or_else(|| self.cmp.attack(lower, upper, &x, slice()));
                    if let Some(ce) = found {
                        return Some(Outcome::Counterexample(ce));
                    }
                }
            }
            // Branching on the float network's ReLUs next (half the time left at most): on
            // many-input networks it closes what the solver cannot.
            // Rivals with the smallest bound first, each with an equal share of what is left
            // (one that cannot be closed would otherwise take every later rival's time).
            let now = Instant::now();
            let until = now + deadline.saturating_duration_since(now) / 2;
            let mut float_rivals = float_rivals;
            float_rivals.sort_by(|a, b| float_diff[*a][k].total_cmp(&float_diff[*b][k]));
            let mut open_rivals = Vec::new();
            for (index, &j) in float_rivals.iter().enumerate() {
                let mut c = vec![0.0; float_diff.len()];
                c[j] = decision.sign();
                c[k] = -decision.sign();
                let started = Instant::now();
                let left = (float_rivals.len() - index) as u32;
                let share = started + until.saturating_duration_since(started) / left;
                let branched =
                    branching::float_difference_negative(net, fb, &c, (lower, upper), share);
                self.debug_line(
                    depth,
                    &format!("float robust {k} vs {j} by branching"),
                    branched.name(),
                    started,
                );
                match branched {
                    Branched::Proved => {}
                    Branched::Candidate(x) => {
                        if let Some(ce) = self.cmp.falsify(lower, upper, &[centre.clone(), x]) {
                            return Some(Outcome::Counterexample(ce));
                        }
                        open_rivals.push(j);
                    }
                    Branched::Open => open_rivals.push(j),
                }
            }
            if depth == 0 && !open_rivals.is_empty() {
                self.open_float_rivals
                    .replace(Some((k, open_rivals.clone())));
            }
            let float_rivals = open_rivals;
            let mut float = None;
            for j in float_rivals {
                let float = match self.encoding_once(&mut float, deadline, || {
                    RivalSolver::float(net, lower, upper, fb, decision)
                }) {
                    Some(solver) => solver,
                    None => return Some(Outcome::Unknown(NO_TIME_TO_ENCODE.into())),
                };
                self.queries.set(self.queries.get() + 1);
                let started = Instant::now();
                let answer = float.check(k, j, slice());
                self.debug(depth, &format!("float robust {k} vs {j}"), &answer, started);
                let answer = match answer {
                    // Undecided: a local search for an input where the float class changes is
                    // cheap, and such a point lets the boundary search below find a
                    // counterexample.
                    Answer::Unknown(reason) => {
                        match float_class_change_near(
                            net, lower, upper, &centre, decision, deadline,
                        ) {
                            Some(x) => Answer::Sat(x),
                            None => Answer::Unknown(reason),
                        }
                    }
                    other => other,
                };
                match answer {
                    Answer::Unsat => continue,
                    Answer::Unknown(_) => return None,
                    Answer::Sat(x) => {
                        // The float class changes inside the box: the integer network's
                        // boundary almost surely lies a little off the float one.
                        return self
                            .cmp
                            .falsify(lower, upper, &[centre, x])
                            .map(Outcome::Counterexample);
                    }
                }
            }
        }
        // The float network picks k everywhere (and so on every sub-box): any input where the
        // quantized network prefers a rival is a counterexample.
        if depth == 0 {
            self.float_constant.set(Some(k));
        }
        let rivals: Vec<usize> = queries
            .iter()
            .filter_map(|q| match q {
                Query::Pair { float, rival } if *float == k => Some(*rival),
                _ => None,
            })
            .collect();
        Some(self.keep_class(lower, upper, k, &rivals, depth, deadline, slice))
    }

    /// Whether the quantized network picks `k` over each of `rivals` on the whole box, by the
    /// solver (relaxed encoding first, exact for spurious witnesses), splitting the box when a
    /// query runs out of its slice of the time.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn quantized_rivals_by_solver(
        &self,
        lower: &[f64],
        upper: &[f64],
        k: usize,
        rivals: &[usize],
        depth: u32,
        deadline: Instant,
        slice: impl Fn() -> Instant,
    ) -> Outcome {
        let (quantized, decision) = (self.cmp.quantized, self.cmp.options.decision);
        let relaxed_only = !quantized.has_relaxation();
        let Some(mut relaxed) = self.encoding(deadline, || {
            RivalSolver::quantized(quantized, lower, upper, relaxed_only, decision)
        }) else {
            return Outcome::Unknown(NO_TIME_TO_ENCODE.into());
        };
        let mut exact: Option<RivalSolver> = None;
        for &j in rivals {
            self.queries.set(self.queries.get() + 1);
            let started = Instant::now();
            let answer = relaxed.check(k, j, slice());
            self.debug(
                depth,
                &format!("quantized robust {k} vs {j} (relaxed)"),
                &answer,
                started,
            );
            match answer {
                Answer::Unsat => continue,
                Answer::Unknown(reason) => {
                    return self.split_or(lower, upper, depth, deadline, reason)
                }
                Answer::Sat(x) => {
                    if let Some(ce) =
                        self.near_relaxed_witness(lower, upper, &x, relaxed_only, deadline)
                    {
                        return Outcome::Counterexample(ce);
                    }
                }
            }
            let Some(exact) = self.encoding_once(&mut exact, deadline, || {
                RivalSolver::quantized(quantized, lower, upper, true, decision)
            }) else {
                return Outcome::Unknown(NO_TIME_TO_ENCODE.into());
            };
            self.queries.set(self.queries.get() + 1);
            let started = Instant::now();
            let answer = exact.check(k, j, slice());
            self.debug(
                depth,
                &format!("quantized robust {k} vs {j} (exact)"),
                &answer,
                started,
            );
            match answer {
                Answer::Unsat => {}
                Answer::Unknown(reason) => {
                    return self.split_or(lower, upper, depth, deadline, reason)
                }
                Answer::Sat(x) => {
                    let ce = self.cmp.replay(&x, FoundBy::Solver);
                    return Outcome::Counterexample(ce);
                }
            }
        }
        Outcome::Proved
    }

    /// A counterexample from a relaxed encoding's witness `x`: the witness itself when it
    /// replays (or when the encoding was exact), else one found by local search around it —
    /// real disagreements often lie near a spurious witness, and searching is far cheaper than
    /// the exact encoding. `None` sends the query on to the exact encoding.
    pub(crate) fn near_relaxed_witness(
        &self,
        lower: &[f64],
        upper: &[f64],
        x: &[f64],
        relaxed_only: bool,
        deadline: Instant,
    ) -> Option<Counterexample> {
        let ce = self.cmp.replay(x, FoundBy::Solver);
        if ce.reproduces_in_f32 || relaxed_only {
            return Some(ce);
        }
        self.cmp.attack(lower, upper, x, deadline)
    }

    /// With `CEG4N_DEBUG` set, one line per solver query on stderr.
    pub(crate) fn debug(&self, depth: u32, what: &str, answer: &Answer, started: Instant) {
        let verdict = match answer {
            Answer::Unsat => "unsat",
            Answer::Sat(_) => "sat",
            Answer::Unknown(_) => "unknown",
        };
        self.debug_line(depth, what, verdict, started);
    }

    /// With `CEG4N_DEBUG` set, one line on stderr: what was asked, the verdict, how long.
    pub(crate) fn debug_line(&self, depth: u32, what: &str, verdict: &str, started: Instant) {
        if std::env::var_os("CEG4N_DEBUG").is_some() {
            eprintln!(
                "box {} depth {depth} {what}: {verdict} in {:.3}s",
                self.id,
                started.elapsed().as_secs_f64()
            );
        }
    }

    /// Bisects the box along the input that moves the first layer most, and decides both
    /// halves; `Unknown(reason)` when it may not split further or time is up.
    pub(crate) fn split_or(
        &self,
        lower: &[f64],
        upper: &[f64],
        depth: u32,
        deadline: Instant,
        reason: String,
    ) -> Outcome {
        let now = Instant::now();
        if depth >= MAX_SPLIT_DEPTH || now >= deadline {
            return Outcome::Unknown(reason);
        }
        let Some(dim) = self.split_dimension(lower, upper) else {
            return Outcome::Unknown(reason);
        };
        let mid = 0.5 * (lower[dim] + upper[dim]);
        let mut left_upper = upper.to_vec();
        left_upper[dim] = mid;
        let mut right_lower = lower.to_vec();
        right_lower[dim] = mid;
        // The left half gets half of the time left; the right half whatever remains.
        let half = now + deadline.saturating_duration_since(now) / 2;
        let left = self.decide(lower, &left_upper, depth + 1, half);
        match left {
            Outcome::Counterexample(_) => left,
            Outcome::Proved => self.decide(&right_lower, upper, depth + 1, deadline),
            Outcome::Unknown(reason) => match self.decide(&right_lower, upper, depth + 1, deadline)
            {
                ce @ Outcome::Counterexample(_) => ce,
                _ => Outcome::Unknown(reason),
            },
        }
    }

    /// The input whose interval, scaled by its first-layer weights (after input operations),
    /// spans the widest range; `None` when every interval is a point.
    pub(crate) fn split_dimension(&self, lower: &[f64], upper: &[f64]) -> Option<usize> {
        let first = self.cmp.float.layers.first()?;
        let (a, b) = (
            self.cmp.float.preprocess(lower),
            self.cmp.float.preprocess(upper),
        );
        (0..lower.len())
            .filter(|i| upper[*i] > lower[*i])
            .map(|i| {
                let influence: f64 = first
                    .weights
                    .column(i)
                    .iter()
                    .map(|w| (*w as f64).abs())
                    .sum();
                (i, (b[i] - a[i]).abs() * influence)
            })
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .map(|(i, _)| i)
    }
}
