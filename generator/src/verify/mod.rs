//! Equivalence verification: does the integer network pick the float network's class on every
//! input of a box?
//!
//! Per box: bounds on both networks (interval propagation), a cheap search for a disagreement
//! on sampled points, then z3 over the linear integer/real encoding, one incremental query per
//! (float class, competing integer class) pair that the bounds do not already exclude. Every
//! counterexample is replayed concretely (f64 float model, tract's f32 inference when
//! available, ceg4n-runtime) before it is reported.

pub mod bounds;
pub mod encode;
pub mod quantized;

use std::time::{Duration, Instant};

use rand::SeedableRng;
use serde::Serialize;
use z3::{Params, SatResult, Solver};

use crate::data::Property;
use crate::ir::Network;
use crate::tract_reference::TractReference;
use bounds::{float_bounds, float_logit_differences};
use encode::{encode_float, float_picks, input_vars};
pub use quantized::{Quantized, QuantizedLogits};

/// The outcome for one box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every input of the box gets the same class from both networks.
    Proved,
    /// An input where the classes differ was found (see the counterexample).
    Counterexample,
    /// Time-out or the solver gave up: nothing is claimed.
    Unknown,
}

/// A concrete input where the networks disagree, replayed.
#[derive(Clone, Debug, Serialize)]
pub struct Counterexample {
    /// The input, as f32.
    pub input: Vec<f32>,
    /// Float logits (f64 evaluation of the f32 parameters).
    pub float_logits: Vec<f64>,
    /// Float class.
    pub float_class: usize,
    /// tract's f32 logits, when the model file was available.
    pub tract_logits: Option<Vec<f32>>,
    /// Quantized logits (integers from ceg4n-runtime, or reals under paper semantics).
    pub quantized_logits: QuantizedLogits,
    /// Integer class.
    pub quantized_class: usize,
    /// Largest |float logit - dequantized quantized logit|.
    pub max_abs_diff: f64,
    /// Whether the disagreement holds at the f32 input (f64 model, tract when available).
    /// `false`: the solver's exact witness lies so close to a decision boundary that rounding
    /// it to f32 loses the disagreement; the property is still false in exact arithmetic.
    pub reproduces_in_f32: bool,
    /// How it was found.
    pub found_by: FoundBy,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Proved => "proved",
            Status::Counterexample => "counterexample",
            Status::Unknown => "unknown",
        })
    }
}

/// How a counterexample was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    /// Random or corner points of the box.
    Sampling,
    /// A z3 model (rounded to f32 and replayed).
    Solver,
    /// A z3 model, then a local search near it.
    SolverAndSearch,
}

/// The verdict on one box.
#[derive(Clone, Debug, Serialize)]
pub struct BoxVerdict {
    /// The property id.
    pub id: String,
    /// Outcome.
    pub status: Status,
    /// Wall-clock seconds spent on the box.
    pub seconds: f64,
    /// Solver queries issued (0 when bounds or sampling decided).
    pub queries: usize,
    /// The counterexample, for `Status::Counterexample`.
    pub counterexample: Option<Counterexample>,
    /// Why the box is unknown, for `Status::Unknown`.
    pub reason: Option<String>,
    /// The box whose verdict decided this one without a verifier call: a proved box that
    /// contains it, or a box whose counterexample lies inside it (see [`verify_nested_boxes`]).
    pub decided_by: Option<String>,
}

/// How a class is read off the logits (ties go to the lowest index either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The largest logit (classifiers).
    #[default]
    ArgMax,
    /// The smallest score (advisory networks such as ACAS Xu).
    ArgMin,
}

impl Decision {
    /// The class of `logits`.
    pub fn pick<T: PartialOrd + Copy>(self, logits: &[T]) -> usize {
        match self {
            Decision::ArgMax => ceg4n_runtime::argmax(logits),
            Decision::ArgMin => ceg4n_runtime::argmin(logits),
        }
    }

    /// Logit terms oriented so that the class is their argmax (argmin(v) = argmax(-v), with
    /// the same lowest-index tie-break).
    fn orient(self, logits: Vec<z3::ast::Real>) -> Vec<z3::ast::Real> {
        match self {
            Decision::ArgMax => logits,
            Decision::ArgMin => logits.into_iter().map(|v| -v).collect(),
        }
    }

    /// Difference bounds `d[j][k] >= logit_j - logit_k` oriented like [`Decision::orient`]:
    /// under argmin the oriented difference `-l_j + l_k` is bounded by `d[k][j]`.
    fn orient_differences(self, d: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
        match self {
            Decision::ArgMax => d,
            Decision::ArgMin => (0..d.len())
                .map(|j| (0..d.len()).map(|k| d[k][j]).collect())
                .collect(),
        }
    }
}

/// What "equivalent" means on a box.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Equivalence {
    /// Both networks pick the same class (top-1).
    #[default]
    Top1,
    /// Every logit of the dequantized network is within `eps` of the float one (L-inf).
    Epsilon(f64),
}

/// Options of a verification run.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// The property proved on every box.
    pub equivalence: Equivalence,
    /// How classes are read off the logits.
    pub decision: Decision,
    /// Time limit per box.
    pub timeout: Duration,
    /// Random points tried per box before the solver.
    pub samples: usize,
    /// No solver work past this instant (a refinement's `--time-limit`): a box started later,
    /// or cut short by it, is unknown.
    pub deadline: Option<Instant>,
}

impl VerifyOptions {
    /// When work started at `start` must end: its time-out, or the overall deadline if sooner.
    pub fn deadline_from(&self, start: Instant) -> Instant {
        let own = start + self.timeout;
        self.deadline.map_or(own, |d| d.min(own))
    }
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            equivalence: Equivalence::Top1,
            decision: Decision::ArgMax,
            timeout: Duration::from_secs(60),
            samples: 256,
            deadline: None,
        }
    }
}

/// Verifies one box.
pub fn verify_box(
    net: &Network,
    quantized: Quantized,
    reference: Option<&TractReference>,
    prop: &Property,
    options: &VerifyOptions,
) -> BoxVerdict {
    let start = Instant::now();
    let verdict = |status, queries, counterexample, reason| BoxVerdict {
        id: prop.id.clone(),
        status,
        seconds: start.elapsed().as_secs_f64(),
        queries,
        counterexample,
        reason,
        decided_by: None,
    };
    let (lower, upper) = (&prop.lower, &prop.upper);

    // 1. Sampling: the centre, corners and random points.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5EED);
    let points = prop.sample_points(10, 64, options.samples, &mut rng);
    if let Some(ce) = falsify(net, quantized, reference, lower, upper, &points, options) {
        return verdict(Status::Counterexample, 0, Some(ce), None);
    }

    // 2. Bounds and the solver, splitting the box when the solver cannot decide it in time.
    let region = Region {
        net,
        quantized,
        reference,
        options,
        id: &prop.id,
        queries: std::cell::Cell::new(0),
        float_constant: std::cell::Cell::new(None),
    };
    let deadline = options.deadline_from(start);
    if Instant::now() >= deadline {
        let reason = "the time limit was reached before the solver could start".to_string();
        return verdict(Status::Unknown, 0, None, Some(reason));
    }
    let outcome = region.decide(lower, upper, 0, deadline);
    let queries = region.queries.get();
    match outcome {
        Outcome::Proved => verdict(Status::Proved, queries, None, None),
        Outcome::Counterexample(ce) => verdict(Status::Counterexample, queries, Some(ce), None),
        Outcome::Unknown(reason) => verdict(Status::Unknown, queries, None, Some(reason)),
    }
}

/// The centre of the box `[lower, upper]`.
fn midpoint(lower: &[f64], upper: &[f64]) -> Vec<f64> {
    lower
        .iter()
        .zip(upper)
        .map(|(l, u)| 0.5 * (l + u))
        .collect()
}

/// Looks for a counterexample on one box without the solver: sampling, the float decision
/// boundary, and a local search from the centre. Cheap screening before a proof is attempted.
pub fn search_counterexample(
    net: &Network,
    quantized: Quantized,
    reference: Option<&TractReference>,
    prop: &Property,
    options: &VerifyOptions,
) -> Option<Counterexample> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5C4EE);
    let points = prop.sample_points(10, 64, options.samples, &mut rng);
    let (lower, upper) = (&prop.lower, &prop.upper);
    falsify(net, quantized, reference, lower, upper, &points, options)
        .or_else(|| attack(net, quantized, reference, lower, upper, &prop.x, options))
}

/// A point of the box where the float network picks another class than at the centre, if
/// there is one (sampling first, then z3 per rival class within `options.timeout`). No
/// quantized network with a quantized input can be equivalent on such a box: it is constant
/// on each input quantization cell, and the float decision boundary passes through cells.
/// Top-1 only; `None` also when the solver could not decide in time.
pub fn float_class_change(
    net: &Network,
    prop: &Property,
    options: &VerifyOptions,
) -> Option<Vec<f64>> {
    let decision = options.decision;
    let (lower, upper) = (&prop.lower, &prop.upper);
    let centre = midpoint(lower, upper);
    let k = decision.pick(&net.logits(&centre));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xF10A7);
    if let Some(x) = prop
        .sample_points(10, 64, options.samples, &mut rng)
        .into_iter()
        .find(|x| decision.pick(&net.logits(x)) != k)
    {
        return Some(x);
    }
    let fb = float_bounds(net, lower, upper);
    let diff = decision.orient_differences(float_logit_differences(net, &fb));
    let deadline = options.deadline_from(Instant::now());
    let mut solver = RivalSolver::float(net, lower, upper, &fb, decision);
    (0..diff.len())
        .filter(|j| *j != k && diff[*j][k] >= 0.0)
        .find_map(|j| match solver.check(k, j, deadline) {
            // The witness is rounded to f32; keep it only if the class change survives.
            Answer::Sat(x) => (decision.pick(&net.logits(&x)) != k).then_some(x),
            _ => None,
        })
}

/// One solver question about a box.
#[derive(Clone, Copy, Debug)]
enum Query {
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

/// The (float class, rival class) pairs the bounds do not exclude.
fn class_pair_queries(
    net: &Network,
    quantized: Quantized,
    fb: &bounds::FloatBounds,
    lower: &[f64],
    upper: &[f64],
    decision: Decision,
) -> Vec<Query> {
    // d[j][k] bounds (oriented) logit_j - logit_k from above.
    let float_diff = decision.orient_differences(float_logit_differences(net, fb));
    let (quant_diff, integral) = quantized.logit_differences(lower, upper);
    let quant_diff = decision.orient_differences(quant_diff);
    let classes = float_diff.len();
    // The float network can pick k only if k can reach every other logit.
    let float_possible =
        (0..classes).filter(|k| (0..classes).all(|m| m == *k || float_diff[*k][m] >= 0.0));
    let mut queries = Vec::new();
    for k in float_possible {
        for j in (0..classes).filter(|j| *j != k) {
            // The quantized network can prefer j over k only if its bounds allow it.
            let gap_needed = if j > k && integral { 1.0 } else { 0.0 };
            if quant_diff[j][k] >= gap_needed {
                queries.push(Query::Pair { float: k, rival: j });
            }
        }
    }
    queries
}

/// The (output, direction) deviations the interval bounds do not exclude.
fn deviation_queries(
    quantized: Quantized,
    fb: &bounds::FloatBounds,
    lower: &[f64],
    upper: &[f64],
    eps: f64,
) -> Vec<Query> {
    let float = fb.pre.last().cloned().unwrap_or_default();
    let dequantized = quantized.dequantized_bounds(lower, upper);
    let mut queries = Vec::new();
    for (output, (f, q)) in float.iter().zip(&dequantized).enumerate() {
        // float - dequantized lies in [f.lo - q.hi, f.hi - q.lo].
        if f.hi - q.lo > eps {
            queries.push(Query::Deviation {
                output,
                above: false,
                eps,
            });
        }
        if q.hi - f.lo > eps {
            queries.push(Query::Deviation {
                output,
                above: true,
                eps,
            });
        }
    }
    queries
}

/// How deep a hard box is bisected (at most 2^depth sub-boxes).
const MAX_SPLIT_DEPTH: u32 = 8;

enum Outcome {
    Proved,
    Counterexample(Counterexample),
    Unknown(String),
}

/// Everything needed to decide sub-boxes of one property box.
struct Region<'a> {
    net: &'a Network,
    quantized: Quantized<'a>,
    reference: Option<&'a TractReference>,
    options: &'a VerifyOptions,
    id: &'a str,
    queries: std::cell::Cell<usize>,
    /// The class the float network was proved to pick on the whole box, once known.
    float_constant: std::cell::Cell<Option<usize>>,
}

impl Region<'_> {
    /// Decides the box `[lower, upper]`: bounds first, then z3 per class pair (relaxed, then
    /// exact for spurious relaxed witnesses), bisecting when a query runs out of its time slice.
    fn decide(&self, lower: &[f64], upper: &[f64], depth: u32, deadline: Instant) -> Outcome {
        let (net, quantized, decision) = (self.net, self.quantized, self.options.decision);
        if depth > 0 {
            // A sub-box: its centre is a cheap first guess.
            let centre = midpoint(lower, upper);
            if let Some(ce) = falsify(
                net,
                quantized,
                self.reference,
                lower,
                upper,
                &[centre],
                self.options,
            ) {
                return Outcome::Counterexample(ce);
            }
        }
        let fb = float_bounds(net, lower, upper);
        let queries = match self.options.equivalence {
            Equivalence::Top1 => class_pair_queries(net, quantized, &fb, lower, upper, decision),
            Equivalence::Epsilon(eps) => deviation_queries(quantized, &fb, lower, upper, eps),
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
        if self.options.equivalence == Equivalence::Top1 {
            if let Some(outcome) =
                self.decompose(lower, upper, &fb, &queries, depth, deadline, slice)
            {
                return outcome;
            }
        }
        let relaxed_only = !quantized.has_relaxation();
        let mut relaxed = PairSolver::new(
            net,
            quantized,
            lower,
            upper,
            &fb,
            relaxed_only,
            self.options,
        );
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
                    if let Some(ce) = self.near_relaxed_witness(lower, upper, &x, relaxed_only) {
                        return Outcome::Counterexample(ce);
                    }
                }
            }
            let exact = exact.get_or_insert_with(|| {
                PairSolver::new(net, quantized, lower, upper, &fb, true, self.options)
            });
            self.queries.set(self.queries.get() + 1);
            match exact.check(query, slice()) {
                Answer::Unsat => {}
                Answer::Unknown(reason) => {
                    return self.split_or(lower, upper, depth, deadline, reason)
                }
                Answer::Sat(x) => {
                    let ce = replay(
                        net,
                        quantized,
                        self.reference,
                        &x,
                        FoundBy::Solver,
                        self.options,
                    );
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
    fn decompose(
        &self,
        lower: &[f64],
        upper: &[f64],
        fb: &bounds::FloatBounds,
        queries: &[Query],
        depth: u32,
        deadline: Instant,
        slice: impl Fn() -> Instant,
    ) -> Option<Outcome> {
        let (net, quantized, decision) = (self.net, self.quantized, self.options.decision);
        let centre = midpoint(lower, upper);
        let k = decision.pick(&net.logits(&centre));
        let float_diff = decision.orient_differences(float_logit_differences(net, fb));
        let float_rivals: Vec<usize> = (0..float_diff.len())
            .filter(|j| *j != k && float_diff[*j][k] >= 0.0)
            .collect();
        let known_constant = depth > 0 && self.float_constant.get() == Some(k);
        if !float_rivals.is_empty() && !known_constant {
            let mut float = RivalSolver::float(net, lower, upper, fb, decision);
            for j in float_rivals {
                self.queries.set(self.queries.get() + 1);
                let started = Instant::now();
                let answer = float.check(k, j, slice());
                self.debug(depth, &format!("float robust {k} vs {j}"), &answer, started);
                let answer = match answer {
                    // Undecided: a local search for an input where the float class changes is
                    // cheap, and such a point lets the boundary search below find a
                    // counterexample.
                    Answer::Unknown(reason) => {
                        match float_class_change_near(net, lower, upper, &centre, decision) {
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
                        return falsify(
                            net,
                            quantized,
                            self.reference,
                            lower,
                            upper,
                            &[centre, x],
                            self.options,
                        )
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
        let rivals = queries.iter().filter_map(|q| match q {
            Query::Pair { float, rival } if *float == k => Some(*rival),
            _ => None,
        });
        let relaxed_only = !quantized.has_relaxation();
        let mut relaxed = RivalSolver::quantized(quantized, lower, upper, relaxed_only, decision);
        let mut exact: Option<RivalSolver> = None;
        for j in rivals {
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
                    return Some(self.split_or(lower, upper, depth, deadline, reason))
                }
                Answer::Sat(x) => {
                    if let Some(ce) = self.near_relaxed_witness(lower, upper, &x, relaxed_only) {
                        return Some(Outcome::Counterexample(ce));
                    }
                }
            }
            let exact = exact.get_or_insert_with(|| {
                RivalSolver::quantized(quantized, lower, upper, true, decision)
            });
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
                    return Some(self.split_or(lower, upper, depth, deadline, reason))
                }
                Answer::Sat(x) => {
                    let ce = replay(
                        net,
                        quantized,
                        self.reference,
                        &x,
                        FoundBy::Solver,
                        self.options,
                    );
                    return Some(Outcome::Counterexample(ce));
                }
            }
        }
        Some(Outcome::Proved)
    }

    /// A counterexample from a relaxed encoding's witness `x`: the witness itself when it
    /// replays (or when the encoding was exact), else one found by local search around it —
    /// real disagreements often lie near a spurious witness, and searching is far cheaper than
    /// the exact encoding. `None` sends the query on to the exact encoding.
    fn near_relaxed_witness(
        &self,
        lower: &[f64],
        upper: &[f64],
        x: &[f64],
        relaxed_only: bool,
    ) -> Option<Counterexample> {
        let (net, quantized) = (self.net, self.quantized);
        let ce = replay(
            net,
            quantized,
            self.reference,
            x,
            FoundBy::Solver,
            self.options,
        );
        if ce.reproduces_in_f32 || relaxed_only {
            return Some(ce);
        }
        attack(
            net,
            quantized,
            self.reference,
            lower,
            upper,
            x,
            self.options,
        )
    }

    /// With `CEG4N_DEBUG` set, one line per solver query on stderr.
    fn debug(&self, depth: u32, what: &str, answer: &Answer, started: Instant) {
        if std::env::var_os("CEG4N_DEBUG").is_some() {
            let verdict = match answer {
                Answer::Unsat => "unsat",
                Answer::Sat(_) => "sat",
                Answer::Unknown(_) => "unknown",
            };
            eprintln!(
                "box {} depth {depth} {what}: {verdict} in {:.3}s",
                self.id,
                started.elapsed().as_secs_f64()
            );
        }
    }

    /// Bisects the box along the input that moves the first layer most, and decides both
    /// halves; `Unknown(reason)` when it may not split further or time is up.
    fn split_or(
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
    fn split_dimension(&self, lower: &[f64], upper: &[f64]) -> Option<usize> {
        let first = self.net.layers.first()?;
        let (a, b) = (self.net.preprocess(lower), self.net.preprocess(upper));
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

enum Answer {
    Unsat,
    /// A witness input (rounded to f32 and clamped into the box).
    Sat(Vec<f64>),
    Unknown(String),
}

/// One z3 solver holding the encoding of a box, queried per class pair.
struct PairSolver<'a> {
    solver: Solver,
    x: Vec<z3::ast::Real>,
    float_logits: Vec<z3::ast::Real>,
    quantized_logits: Vec<z3::ast::Real>,
    /// The dequantized quantized logits, for epsilon queries (not oriented).
    dequantized: Vec<z3::ast::Real>,
    /// The float logits, not oriented.
    float_raw: Vec<z3::ast::Real>,
    quantized: Quantized<'a>,
    lower: &'a [f64],
    upper: &'a [f64],
}

impl<'a> PairSolver<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        net: &Network,
        quantized: Quantized<'a>,
        lower: &'a [f64],
        upper: &'a [f64],
        fb: &bounds::FloatBounds,
        exact: bool,
        options: &VerifyOptions,
    ) -> Self {
        let decision = options.decision;
        let solver = Solver::new();
        let x = input_vars(&solver, lower, upper);
        let float_raw = encode_float(&solver, net, &x, fb, "");
        let quantized_raw = quantized.encode(&solver, &x, lower, upper, exact);
        let dequantized = quantized
            .dequantization_scales()
            .iter()
            .zip(&quantized_raw)
            .map(|(s, q)| q * encode::real_of_f64(*s))
            .collect();
        let float_logits = decision.orient(float_raw.clone());
        let quantized_logits = decision.orient(quantized_raw);
        PairSolver {
            solver,
            x,
            float_logits,
            quantized_logits,
            dequantized,
            float_raw,
            quantized,
            lower,
            upper,
        }
    }

    /// Is there an input in the box that answers `query` with yes?
    fn check(&mut self, query: Query, deadline: Instant) -> Answer {
        let (solver, float_logits, quantized_logits) =
            (&self.solver, &self.float_logits, &self.quantized_logits);
        let (dequantized, float_raw, quantized) =
            (&self.dequantized, &self.float_raw, self.quantized);
        solve(
            solver,
            &self.x,
            self.lower,
            self.upper,
            deadline,
            || match query {
                Query::Pair { float, rival } => {
                    solver.assert(float_picks(float_logits, float));
                    solver.assert(quantized.prefers(quantized_logits, rival, float));
                }
                Query::Deviation { output, above, eps } => {
                    let gap = if above {
                        &dequantized[output] - &float_raw[output]
                    } else {
                        &float_raw[output] - &dequantized[output]
                    };
                    solver.assert(gap.gt(encode::real_of_f64(eps)));
                }
            },
        )
    }
}

/// One network alone over a box, asked whether it can prefer a rival class over a given one.
/// When the float network keeps one class on the whole box, the box is equivalent exactly when
/// the quantized network keeps it too: two single-network questions, each far easier for the
/// solver than the joint one (no product of both networks' case splits).
struct RivalSolver<'a> {
    solver: Solver,
    x: Vec<z3::ast::Real>,
    /// Oriented logits.
    logits: Vec<z3::ast::Real>,
    /// `None` for the float network.
    quantized: Option<Quantized<'a>>,
    lower: &'a [f64],
    upper: &'a [f64],
}

impl<'a> RivalSolver<'a> {
    fn float(
        net: &Network,
        lower: &'a [f64],
        upper: &'a [f64],
        fb: &bounds::FloatBounds,
        decision: Decision,
    ) -> Self {
        let solver = Solver::new();
        let x = input_vars(&solver, lower, upper);
        let logits = decision.orient(encode_float(&solver, net, &x, fb, ""));
        RivalSolver {
            solver,
            x,
            logits,
            quantized: None,
            lower,
            upper,
        }
    }

    fn quantized(
        quantized: Quantized<'a>,
        lower: &'a [f64],
        upper: &'a [f64],
        exact: bool,
        decision: Decision,
    ) -> Self {
        let solver = Solver::new();
        let x = input_vars(&solver, lower, upper);
        let logits = decision.orient(quantized.encode(&solver, &x, lower, upper, exact));
        RivalSolver {
            solver,
            x,
            logits,
            quantized: Some(quantized),
            lower,
            upper,
        }
    }

    /// Is there an input in the box where this network prefers `rival` over `class`?
    fn check(&mut self, class: usize, rival: usize, deadline: Instant) -> Answer {
        let (solver, logits) = (&self.solver, &self.logits);
        let prefers = match self.quantized {
            Some(q) => q.prefers(logits, rival, class),
            None => encode::real_prefers(logits, rival, class),
        };
        solve(solver, &self.x, self.lower, self.upper, deadline, || {
            solver.assert(prefers)
        })
    }
}

/// Runs one query on `solver` in a push/pop scope: `assert` adds the question; a witness is
/// rounded to f32 and clamped into the box.
fn solve(
    solver: &Solver,
    x: &[z3::ast::Real],
    lower: &[f64],
    upper: &[f64],
    deadline: Instant,
    assert: impl FnOnce(),
) -> Answer {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Answer::Unknown("time-out".into());
    }
    let mut params = Params::new();
    params.set_u32(
        "timeout",
        remaining.as_millis().clamp(1, u32::MAX as u128) as u32,
    );
    solver.set_params(&params);
    solver.push();
    assert();
    let answer = match solver.check() {
        SatResult::Unsat => Answer::Unsat,
        SatResult::Sat => {
            let witness: Option<Vec<f64>> = solver.get_model().and_then(|m| {
                x.iter()
                    .map(|v| m.eval(v, true).map(|r| r.approx_f64()))
                    .collect()
            });
            match witness {
                Some(w) => Answer::Sat(
                    w.iter()
                        .zip(lower)
                        .zip(upper)
                        .map(|((v, l), u)| (*v as f32 as f64).max(*l).min(*u))
                        .collect(),
                ),
                None => Answer::Unknown("solver returned no model".into()),
            }
        }
        SatResult::Unknown => {
            let reason = solver
                .get_reason_unknown()
                .unwrap_or_else(|| "unknown".into());
            Answer::Unknown(
                if reason.contains("timeout") || reason.contains("canceled") {
                    "time-out".into()
                } else {
                    reason
                },
            )
        }
    };
    solver.pop(1);
    answer
}

/// Looks for a disagreement without the solver: first at the given points, then along
/// segments between points the float network classifies differently, around the float
/// decision boundary (where the integer network's own boundary almost surely lies a little
/// off, leaving a thin sliver that uniform sampling misses).
fn falsify(
    net: &Network,
    quantized: Quantized,
    reference: Option<&TractReference>,
    lower: &[f64],
    upper: &[f64],
    points: &[Vec<f64>],
    options: &VerifyOptions,
) -> Option<Counterexample> {
    let decision = options.decision;
    let float_class = |x: &[f64]| decision.pick(&net.logits(x));
    let to_f32_box = |p: &[f64]| -> Vec<f64> {
        p.iter()
            .zip(lower)
            .zip(upper)
            .map(|((v, l), u)| {
                let r = *v as f32 as f64;
                // Keep the f32 rounding inside the box.
                if r < *l || r > *u {
                    v.max(*l).min(*u)
                } else {
                    r
                }
            })
            .collect()
    };
    let disagreement = |p: &[f64]| -> Option<Counterexample> {
        let p32 = to_f32_box(p);
        if p32
            .iter()
            .zip(lower)
            .zip(upper)
            .any(|((v, l), u)| v < l || v > u)
        {
            return None;
        }
        // Cheap check on the host models first; tract runs only in the replay of a hit.
        if !violates(net, quantized, &p32, options) {
            return None;
        }
        let ce = replay(net, quantized, reference, &p32, FoundBy::Sampling, options);
        ce.reproduces_in_f32.then_some(ce)
    };
    if let Some(ce) = points.iter().find_map(|p| disagreement(p)) {
        return Some(ce);
    }
    if options.equivalence != Equivalence::Top1 {
        return None;
    }
    let classes: Vec<usize> = points.iter().map(|p| float_class(p)).collect();
    let anchor = 0;
    let mut tried = 0;
    for (i, p) in points.iter().enumerate() {
        if classes[i] == classes[anchor] || tried >= BOUNDARY_SEGMENTS {
            continue;
        }
        tried += 1;
        let a = &points[anchor];
        let at = |t: f64| -> Vec<f64> { a.iter().zip(p).map(|(x, y)| x + (y - x) * t).collect() };
        // Bisect to the float decision boundary on the segment.
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        let class_lo = classes[anchor];
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if float_class(&at(mid)) == class_lo {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        // Probe both sides of the boundary at growing distances.
        let mut delta = 1e-9;
        while delta < 0.5 {
            for t in [lo - delta, hi + delta] {
                if (0.0..=1.0).contains(&t) {
                    if let Some(ce) = disagreement(&at(t)) {
                        return Some(ce);
                    }
                }
            }
            delta *= 1.5;
        }
    }
    None
}

/// Whether `x` violates the equivalence on the host models (f64 float, integer runtime).
pub fn violates(net: &Network, quantized: Quantized, x: &[f64], options: &VerifyOptions) -> bool {
    violates_given(&net.logits(x), quantized, x, options)
}

/// [`violates`] with the float network's logits at `x` already computed.
pub fn violates_given(
    float: &[f64],
    quantized: Quantized,
    x: &[f64],
    options: &VerifyOptions,
) -> bool {
    let q = quantized.logits(x);
    match options.equivalence {
        Equivalence::Top1 => options.decision.pick(float) != q.class(options.decision),
        Equivalence::Epsilon(eps) => float
            .iter()
            .zip(quantized.dequantized(&q))
            .any(|(a, b)| (a - b).abs() > eps),
    }
}

/// A point of the box where the float network picks another class than `k = class(start)`,
/// by a gradient-free local search that lowers the float margin of `k` over its best rival
/// (random moves kept when they do not raise it, shrinking on failure).
fn float_class_change_near(
    net: &Network,
    lower: &[f64],
    upper: &[f64],
    start: &[f64],
    decision: Decision,
) -> Option<Vec<f64>> {
    use rand::Rng;
    let k = decision.pick(&net.logits(start));
    let sign = if decision == Decision::ArgMax {
        1.0
    } else {
        -1.0
    };
    let margin = |x: &[f64]| -> f64 {
        let f = net.logits(x);
        (0..f.len())
            .filter(|j| *j != k)
            .map(|j| sign * (f[k] - f[j]))
            .fold(f64::INFINITY, f64::min)
    };
    let clamp = |x: Vec<f64>| -> Vec<f64> {
        x.iter()
            .zip(lower)
            .zip(upper)
            .map(|((v, l), u)| (*v as f32 as f64).max(*l).min(*u))
            .collect()
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xF1A7);
    let moves = LocalSearch {
        lower,
        upper,
        step: 0.5,
        shrink: 0.97,
    };
    for restart in 0..FLOAT_SEARCH_RESTARTS {
        let x = if restart == 0 {
            start.to_vec()
        } else {
            clamp(
                lower
                    .iter()
                    .zip(upper)
                    .map(|(l, u)| rng.random_range(*l..=*u))
                    .collect(),
            )
        };
        let found = moves.run(x, &margin, &clamp, &mut rng, |x, best| {
            (best < 0.0 && decision.pick(&net.logits(x)) != k).then(|| x.to_vec())
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

/// A gradient-free local search inside a box: from a point, random moves (each coordinate by
/// up to `step` times the box width, then `clamp`ed) are kept when they do not raise the
/// objective; a rejected move shrinks `step` by `shrink`. Runs [`ATTACK_STEPS`] moves.
struct LocalSearch<'a> {
    lower: &'a [f64],
    upper: &'a [f64],
    step: f64,
    shrink: f64,
}

impl LocalSearch<'_> {
    /// Searches from `x`; before each move, `found(x, objective(x))` may end the search with a
    /// result.
    fn run<R>(
        &self,
        mut x: Vec<f64>,
        objective: &dyn Fn(&[f64]) -> f64,
        clamp: &dyn Fn(Vec<f64>) -> Vec<f64>,
        rng: &mut impl rand::Rng,
        mut found: impl FnMut(&[f64], f64) -> Option<R>,
    ) -> Option<R> {
        let mut best = objective(&x);
        let mut step = self.step;
        for _ in 0..ATTACK_STEPS {
            if let Some(result) = found(&x, best) {
                return Some(result);
            }
            let y = clamp(
                x.iter()
                    .zip(self.lower)
                    .zip(self.upper)
                    .map(|((v, l), u)| v + (u - l) * step * rng.random_range(-1.0..1.0))
                    .collect(),
            );
            let value = objective(&y);
            if value <= best {
                (x, best) = (y, value);
            } else {
                step = (step * self.shrink).max(1e-6);
            }
        }
        None
    }
}

/// Restarts of [`float_class_change_near`].
const FLOAT_SEARCH_RESTARTS: usize = 8;

/// Steps of the local search in [`attack`].
const ATTACK_STEPS: usize = 400;

/// A gradient-free local search from `start` that pushes the quantized network's margin for
/// the float class (or, under epsilon-equivalence, the deviation) towards a violation: random
/// moves inside the box, kept when they do not worsen the objective, shrinking on failure.
fn attack(
    net: &Network,
    quantized: Quantized,
    reference: Option<&TractReference>,
    lower: &[f64],
    upper: &[f64],
    start: &[f64],
    options: &VerifyOptions,
) -> Option<Counterexample> {
    let decision = options.decision;
    // Lower is closer to a violation; a violation scores below zero.
    let objective = |x: &[f64]| -> f64 {
        let f = net.logits(x);
        let q = quantized.logits(x);
        let dq = quantized.dequantized(&q);
        match options.equivalence {
            Equivalence::Epsilon(eps) => {
                eps - f
                    .iter()
                    .zip(&dq)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max)
            }
            Equivalence::Top1 => {
                let k = decision.pick(&f);
                let sign = if decision == Decision::ArgMax {
                    1.0
                } else {
                    -1.0
                };
                let rival = (0..dq.len())
                    .filter(|j| *j != k)
                    .map(|j| sign * (dq[k] - dq[j]))
                    .fold(f64::INFINITY, f64::min);
                if q.class(decision) != k {
                    -1.0
                } else {
                    rival
                }
            }
        }
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xA77AC);
    let clamp = |x: Vec<f64>| -> Vec<f64> {
        x.iter()
            .zip(lower)
            .zip(upper)
            .map(|((v, l), u)| v.max(*l).min(*u))
            .collect()
    };
    let moves = LocalSearch {
        lower,
        upper,
        step: 0.25,
        shrink: 0.95,
    };
    moves.run(
        clamp(start.to_vec()),
        &objective,
        &clamp,
        &mut rng,
        |x, best| {
            if best >= 0.0 {
                return None;
            }
            let ce = replay(
                net,
                quantized,
                reference,
                x,
                FoundBy::SolverAndSearch,
                options,
            );
            ce.reproduces_in_f32.then_some(ce)
        },
    )
}

/// Segments between differently classified points searched for a boundary disagreement.
const BOUNDARY_SEGMENTS: usize = 16;

/// Evaluates both networks concretely at `x` (rounded to f32).
pub fn replay(
    net: &Network,
    quantized: Quantized,
    reference: Option<&TractReference>,
    x: &[f64],
    found_by: FoundBy,
    options: &VerifyOptions,
) -> Counterexample {
    let decision = options.decision;
    let input: Vec<f32> = x.iter().map(|v| *v as f32).collect();
    let x32: Vec<f64> = input.iter().map(|v| *v as f64).collect();
    let float_logits = net.logits(&x32);
    let float_class = decision.pick(&float_logits);
    let quantized_logits = quantized.logits(&x32);
    let quantized_class = quantized_logits.class(decision);
    let dequantized = quantized.dequantized(&quantized_logits);
    let deviation = |reference: &[f64]| {
        reference
            .iter()
            .zip(&dequantized)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    };
    let max_abs_diff = deviation(&float_logits);
    let tract_logits = reference.and_then(|r| r.logits(&input).ok());
    // The violation must hold for the f64 model and, when available, for tract's f32 run.
    let violated = |logits: &[f64]| match options.equivalence {
        Equivalence::Top1 => decision.pick(logits) != quantized_class,
        Equivalence::Epsilon(eps) => deviation(logits) > eps,
    };
    let tract_agrees = tract_logits.as_ref().is_none_or(|t| {
        let t: Vec<f64> = t.iter().map(|v| *v as f64).collect();
        violated(&t)
    });
    Counterexample {
        reproduces_in_f32: violated(&float_logits) && tract_agrees,
        max_abs_diff,
        input,
        float_logits,
        float_class,
        tract_logits,
        quantized_logits,
        quantized_class,
        found_by,
    }
}

/// Verifies every box, `jobs` boxes at a time (each worker thread has its own z3 context).
/// Verdicts come back in the order of `props`.
pub fn verify_boxes(
    net: &Network,
    quantized: Quantized,
    reference: Option<&TractReference>,
    props: &[Property],
    options: &VerifyOptions,
    jobs: usize,
) -> Vec<BoxVerdict> {
    verify_boxes_with(net, quantized, reference, props, options, jobs, &|_| {})
}

/// [`verify_boxes`], calling `done` with each verdict as it is reached.
pub fn verify_boxes_with(
    net: &Network,
    quantized: Quantized,
    reference: Option<&TractReference>,
    props: &[Property],
    options: &VerifyOptions,
    jobs: usize,
    done: &(dyn Fn(&BoxVerdict) + Sync),
) -> Vec<BoxVerdict> {
    crate::parallel::map(props, jobs, |prop| {
        let verdict = verify_box(net, quantized, reference, prop, options);
        done(&verdict);
        verdict
    })
}

/// Verifies every box like [`verify_boxes_with`], but boxes that lie inside other boxes after
/// them: a box inside a proved box is proved by that proof, and a box holding a counterexample
/// of a box around it is refuted by that (already replayed) point; only the rest reach the
/// verifier. With the usual nested radii (0.01 within 0.03 within 0.05 around one centre) a
/// robust centre costs one proof instead of three. Returns the verdicts in `props` order and
/// the number of boxes that reached the verifier.
pub fn verify_nested_boxes(
    net: &Network,
    quantized: Quantized,
    reference: Option<&TractReference>,
    props: &[Property],
    options: &VerifyOptions,
    jobs: usize,
    done: &(dyn Fn(&BoxVerdict) + Sync),
) -> (Vec<BoxVerdict>, usize) {
    // Box j encloses box i when it contains it; of two equal boxes the first encloses the other.
    let encloses = |j: usize, i: usize| {
        j != i && props[j].contains(&props[i]) && (j < i || !props[i].contains(&props[j]))
    };
    let mut verdicts: Vec<Option<BoxVerdict>> = vec![None; props.len()];
    let mut calls = 0;
    while verdicts.iter().any(Option::is_none) {
        // Decide what the verdicts so far decide; verify the boxes no undecided box encloses.
        let mut ready = Vec::new();
        for i in 0..props.len() {
            if verdicts[i].is_some() {
                continue;
            }
            if let Some(decided) = decided_by_enclosing(props, &verdicts, i, &encloses) {
                done(&decided);
                verdicts[i] = Some(decided);
            } else if (0..props.len()).all(|j| !encloses(j, i) || verdicts[j].is_some()) {
                ready.push(i);
            }
        }
        if ready.is_empty() {
            continue;
        }
        let batch: Vec<Property> = ready.iter().map(|&i| props[i].clone()).collect();
        calls += batch.len();
        let results = verify_boxes_with(net, quantized, reference, &batch, options, jobs, done);
        for (i, v) in ready.into_iter().zip(results) {
            verdicts[i] = Some(v);
        }
    }
    (verdicts.into_iter().flatten().collect(), calls)
}

/// The verdict of box `i` implied by the decided boxes enclosing it, if any.
fn decided_by_enclosing(
    props: &[Property],
    verdicts: &[Option<BoxVerdict>],
    i: usize,
    encloses: &impl Fn(usize, usize) -> bool,
) -> Option<BoxVerdict> {
    let prop = &props[i];
    let inherit = |j: usize, status, counterexample| BoxVerdict {
        id: prop.id.clone(),
        status,
        seconds: 0.0,
        queries: 0,
        counterexample,
        reason: None,
        decided_by: Some(props[j].id.clone()),
    };
    let enclosing = (0..props.len()).filter(|&j| encloses(j, i));
    for j in enclosing {
        let Some(v) = &verdicts[j] else { continue };
        match (&v.status, &v.counterexample) {
            (Status::Proved, _) => return Some(inherit(j, Status::Proved, None)),
            (Status::Counterexample, Some(ce)) => {
                let x: Vec<f64> = ce.input.iter().map(|v| *v as f64).collect();
                if ce.reproduces_in_f32 && prop.contains_point(&x) {
                    return Some(inherit(j, Status::Counterexample, Some(ce.clone())));
                }
            }
            _ => {}
        }
    }
    None
}
