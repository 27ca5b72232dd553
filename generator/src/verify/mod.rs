//! Equivalence verification: does the integer network pick the float network's class on every
//! input of a box?
//!
//! Per box: bounds on both networks (interval propagation), a cheap search for a disagreement
//! on sampled points, then z3 over the linear integer/real encoding, one incremental query per
//! (float class, competing integer class) pair that the bounds do not already exclude. Every
//! counterexample is replayed concretely (f64 float model, tract's f32 inference when
//! available, ceg4n-runtime) before it is reported.

pub mod bounds;
pub mod branching;
mod coordinate_search;
pub mod differential;
pub mod encode;
mod epsilon;
mod falsify;
pub mod int_symbolic;
pub mod quantized;
mod region;
mod replay;
mod rival_split;
mod schedule;
mod solver;
mod substitution;
mod verdict;

use std::time::Instant;

use rand::SeedableRng;

use crate::data::Property;
use crate::ir::Network;
use crate::tract_reference::TractReference;
use bounds::{float_bounds, float_logit_differences};
pub use falsify::violates_given;
pub use quantized::{Quantized, QuantizedLogits};
use region::{Outcome, Region};
use solver::{Answer, RivalSolver};
pub use verdict::{
    BoxVerdict, Counterexample, Decision, Equivalence, FoundBy, Saturation, Status, VerifyOptions,
};

/// What is compared and how: the float network, its quantized counterpart, tract's f32 run of
/// the ONNX file as a cross-check (optional), and the options. Every verification step
/// (sampling, local search, the solver, replay, scheduling many boxes) is a method of it.
#[derive(Clone, Copy)]
pub struct Comparison<'a> {
    /// The float network (evaluated in f64 from its f32 parameters).
    pub float: &'a Network,
    /// The quantized network it is compared with.
    pub quantized: Quantized<'a>,
    /// tract's inference of the ONNX file, recorded beside each counterexample.
    pub reference: Option<&'a TractReference>,
    /// Equivalence, decision, time-outs, samples.
    pub options: &'a VerifyOptions,
}

impl<'a> Comparison<'a> {
    /// Compares `float` with `quantized` under `options`, without the tract cross-check.
    pub fn new(float: &'a Network, quantized: Quantized<'a>, options: &'a VerifyOptions) -> Self {
        Comparison {
            float,
            quantized,
            reference: None,
            options,
        }
    }

    /// The same comparison, recording tract's logits beside each counterexample.
    pub fn with_reference(self, reference: Option<&'a TractReference>) -> Self {
        Comparison { reference, ..self }
    }

    /// Verifies one box.
    pub fn verify_box(&self, prop: &Property) -> BoxVerdict {
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
        let deadline = self.options.box_deadline_from(&prop.id, start);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5EED);
        let points = prop.sample_points(10, 64, self.options.samples, &mut rng);
        if let Some(ce) = self.falsify_until(lower, upper, &points, Some(deadline)) {
            return verdict(Status::Counterexample, 0, Some(ce), None);
        }

        // 2. Bounds and the solver, splitting the box when the solver cannot decide it in time.
        let region = Region {
            cmp: *self,
            id: &prop.id,
            queries: std::cell::Cell::new(0),
            float_constant: std::cell::Cell::new(None),
            open_float_rivals: std::cell::RefCell::new(None),
            deviation_model: std::cell::OnceCell::new(),
            encoding_cost: std::cell::Cell::new(expected_encoding_cost(self.float)),
        };
        if Instant::now() >= deadline {
            let reason = "the time limit was reached before the solver could start".to_string();
            return verdict(Status::Unknown, 0, None, Some(reason));
        }
        let outcome = region.decide(lower, upper, 0, deadline);
        let queries = region.queries.get();
        match outcome {
            Outcome::Proved => verdict(Status::Proved, queries, None, None),
            Outcome::Counterexample(ce) => verdict(Status::Counterexample, queries, Some(ce), None),
            Outcome::Unknown(reason) => {
                let reason = match region.open_float_rivals.take() {
                    Some((k, rivals)) if region.float_constant.get() != Some(k) => {
                        let rivals: Vec<String> = rivals.iter().map(usize::to_string).collect();
                        format!(
                            "{reason}; over the whole box the float network's class {k} was not proved against class(es) {} (branch and bound on its ReLUs left them open, and the solver did not decide them in time)",
                            rivals.join(", ")
                        )
                    }
                    _ => reason,
                };
                verdict(Status::Unknown, queries, None, Some(reason))
            }
        }
    }

    /// Looks for a counterexample on one box without the solver: sampling, the float decision
    /// boundary, and a local search from the centre. Cheap screening before a proof is
    /// attempted.
    pub fn search_counterexample(&self, prop: &Property) -> Option<Counterexample> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5C4EE);
        let points = prop.sample_points(10, 64, self.options.samples, &mut rng);
        let (lower, upper) = (&prop.lower, &prop.upper);
        self.falsify(lower, upper, &points).or_else(|| {
            let until = self.options.deadline_from(Instant::now());
            self.attack(lower, upper, &prop.x, until)
        })
    }
}

/// The centre of the box `[lower, upper]`.
/// Building a z3 encoding per network parameter, measured on this project's machines (a
/// 784-256-256-10 network, 268k parameters, takes about 4.5 s): the estimate of the first
/// encoding of a box, before one was timed; the estimate never lets the first build of a large
/// network overrun the box's deadline.
const ENCODING_SECONDS_PER_PARAMETER: f64 = 12e-6;

/// The expected time to build one encoding of `net`.
fn expected_encoding_cost(net: &Network) -> std::time::Duration {
    std::time::Duration::from_secs_f64(net.param_count() as f64 * ENCODING_SECONDS_PER_PARAMETER)
}

/// `v` rounded to f32 (the input type a model reads), then kept within `[lower, upper]`.
fn f32_within(v: f64, lower: f64, upper: f64) -> f64 {
    (v as f32 as f64).max(lower).min(upper)
}

fn midpoint(lower: &[f64], upper: &[f64]) -> Vec<f64> {
    lower
        .iter()
        .zip(upper)
        .map(|(l, u)| 0.5 * (l + u))
        .collect()
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
