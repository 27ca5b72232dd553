//! What verification says: per-box verdicts, counterexamples, the decision rule, the
//! equivalence proved, and the options.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::*;

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
    /// Whether the disagreement holds at the f32 input (for the float network: the f64
    /// evaluation of its f32 parameters).
    /// `false`: the solver's exact witness lies so close to a decision boundary that rounding
    /// it to f32 loses the disagreement; the property is still false in exact arithmetic.
    pub reproduces_in_f32: bool,
    /// Whether tract's f32 inference of the model file reaches the same verdict at the f32
    /// input (a cross-check of the importer; it decides nothing), when tract could run it.
    pub tract_agrees: Option<bool>,
    /// How it was found.
    pub found_by: FoundBy,
    /// The hidden layer whose float activation at the input lies furthest beyond the range
    /// calibration gave it (the integer network saturates there, and no bit-width changes
    /// that); `None` when every activation is within its range, and under the paper's
    /// semantics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saturation: Option<Saturation>,
}

/// Where the integer network saturates at a counterexample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Saturation {
    /// The hidden layer, 0 for the first.
    pub layer: usize,
    /// Its largest float activation magnitude there over the largest it can represent
    /// (above 1).
    pub ratio: f64,
}

impl Saturation {
    /// The hidden layer of `net` whose float activation at `x` lies furthest beyond its
    /// range (`range_max`, one per hidden layer or more), if any does.
    pub fn at(net: &Network, range_max: &[f64], x: &[f64]) -> Option<Saturation> {
        let hidden = net.layers.len().saturating_sub(1);
        net.layer_outputs(x)
            .iter()
            .take(hidden)
            .zip(range_max)
            .enumerate()
            .map(|(layer, (h, max))| Saturation {
                layer,
                ratio: h.iter().fold(0.0f64, |m, v| m.max(v.abs())) / max,
            })
            .filter(|s| s.ratio > 1.0)
            .max_by(|a, b| a.ratio.total_cmp(&b.ratio))
    }
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
    /// A search of the box along one input at a time, from its corners and random points.
    Search,
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
    pub(crate) fn orient(self, logits: Vec<z3::ast::Real>) -> Vec<z3::ast::Real> {
        match self {
            Decision::ArgMax => logits,
            Decision::ArgMin => logits.into_iter().map(|v| -v).collect(),
        }
    }

    /// `1` under argmax, `-1` under argmin: the sign that makes a larger oriented logit the
    /// preferred class.
    pub(crate) fn sign(self) -> f64 {
        match self {
            Decision::ArgMax => 1.0,
            Decision::ArgMin => -1.0,
        }
    }

    /// Difference bounds `d[j][k] >= logit_j - logit_k` oriented like [`Decision::orient`]:
    /// under argmin the oriented difference `-l_j + l_k` is bounded by `d[k][j]`.
    pub(crate) fn orient_differences(self, d: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
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
    /// Shorter time limits for some boxes, by box id: refinement's candidate rounds give a box
    /// a few times what its proof took at the anchor. A box's limit is the smaller of its
    /// budget and `timeout`.
    pub budgets: HashMap<String, Duration>,
}

impl VerifyOptions {
    /// When work started at `start` must end: its time-out, or the overall deadline if sooner.
    pub fn deadline_from(&self, start: Instant) -> Instant {
        let own = start + self.timeout;
        self.deadline.map_or(own, |d| d.min(own))
    }

    /// [`VerifyOptions::deadline_from`] for box `id`, within its budget if it has one.
    pub fn box_deadline_from(&self, id: &str, start: Instant) -> Instant {
        let own = self.deadline_from(start);
        self.budgets.get(id).map_or(own, |b| own.min(start + *b))
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
            budgets: HashMap::new(),
        }
    }
}
