//! CEG4N refinement: the smallest bit-widths whose integer network is *proved* to pick the
//! float network's class on every box, and agrees with it on the user's data.
//!
//! A round proposes a configuration that every point of the screen set (box centres, every
//! counterexample found so far, and for the default strategy also sampled in-box points)
//! classifies like the float network, and that agrees with it on at least `min_agreement` of
//! the data rows (the fidelity floor), then verifies every box at exactly that configuration.
//! Replayed counterexamples join the screen set; a configuration that failed is never proposed
//! again.
//!
//! Strategies: `Descent` (default) first proves a conventional anchor (8-bit weights and
//! activations, input wide enough for the floor) so that there is always a verified answer to
//! fall back on; then it bisects one width at a time, largest weight tensor first, from the
//! widest configuration, screens each proposal by attack before any proof, verifies nested
//! boxes outermost first, widens its proposals by a bit after every few refuted rounds, and
//! lowers the best proof one width at a time while time allows. When boxes are undecided at
//! the anchor, the anchor moves to 16 bits; a box the verifier cannot decide even there is
//! reported `unknown` and left out of the claim. `Genetic` reproduces
//! the CEG4N artifact's (1+2) evolutionary search (1000 evaluations per round, restarted each
//! round, screened on centres and counterexamples only) for comparison.

mod genes;
mod metrics;
mod rounds;
mod screen;
mod search;

pub use metrics::{accuracy, uniform_curve, Accuracy, CurvePoint, Storage};
pub use screen::{allowed_misses, SetAsideRow, SET_ASIDE_REASON};
pub use search::{ANCHOR_BITS, GA_EVALUATIONS};

use std::time::{Duration, Instant};

use crate::error::{bail, Result};
use ceg4n_runtime::MAX_BITS;
use serde::{Deserialize, Serialize};

use crate::data::Property;
use crate::ir::Network;
use crate::quantize::{Calibration, QuantConfig};
use crate::task::Task;
use crate::verify::{self, BoxVerdict, VerifyOptions};

/// How candidates are proposed (named `default` and `ga` on the command line and in reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Search {
    /// The anchor, then per-width descent over a screen set with sampled points (ours).
    #[serde(rename = "default")]
    Descent,
    /// The CEG4N artifact's (1+2) evolutionary algorithm.
    #[serde(rename = "ga")]
    Genetic,
}

/// Settings of one refinement.
#[derive(Clone, Debug)]
pub struct RefineOptions {
    /// The strategy.
    pub search: Search,
    /// Seed of every random choice (same seed, same result).
    pub seed: u64,
    /// No new round starts after this much time.
    pub time_limit: Duration,
    /// At most this many rounds.
    pub max_rounds: usize,
    /// Per-box verification settings.
    pub verify: VerifyOptions,
    /// Boxes verified in parallel.
    pub jobs: usize,
    /// Per-channel weight scales for hidden layers: forced on or off, or `None` to let the
    /// search choose.
    pub per_channel: Option<bool>,
    /// One input format for all features.
    pub uniform_input: bool,
    /// The fidelity floor: the least fraction of the task's data rows on which the integer
    /// network must pick the float network's class (rows no 16-bit network matches are set
    /// aside and not counted). Ignored without data.
    pub min_agreement: f64,
}

/// The default fidelity floor.
pub const DEFAULT_MIN_AGREEMENT: f64 = 0.99;

/// Random in-box points per box added to the default strategy's screen set.
pub const SCREEN_SAMPLES_PER_BOX: usize = 64;

/// Proposals refuted by attack (without the verifier) before the default strategy verifies
/// its proposals regardless.
const MAX_ATTACK_ROUNDS: usize = 50;

/// The default strategy widens its proposals by one more bit per width after each this many
/// rounds the verifier refuted: near the smallest consistent widths every proof can find a new
/// counterexample, and a little slack ends the loop with a proof instead of the budget.
pub const WIDEN_AFTER_REFUTED_ROUNDS: usize = 3;

/// A box refuted in this many verified rounds in a row is verified at the widest
/// configurations; refuted there too, it is excluded (no width up to 16 bits can prove it).
const STUBBORN_BOX_ROUNDS: usize = 3;

/// Restarts of the evolutionary search within one round before it gives up.
pub const GA_RESTARTS: usize = 5;

/// One round of the loop.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Round {
    /// Weight bits proposed.
    pub weight_bits: Vec<u32>,
    /// Hidden activation bits proposed.
    pub activation_bits: Vec<u32>,
    /// Input bits proposed.
    pub input_bits: u32,
    /// `sum_l bits_l * |W_l|`.
    pub weight_storage_bits: u64,
    /// Boxes proved at this configuration.
    pub proved: usize,
    /// Boxes with a counterexample.
    pub counterexample: usize,
    /// Boxes undecided.
    pub unknown: usize,
    /// Seconds of the round (search and proofs).
    pub seconds: f64,
    /// Bits added to every width of the search's proposal (default strategy, after repeated
    /// refutations; 0 otherwise).
    #[serde(default)]
    pub widened_by: u32,
}

/// A counterexample found during the refinement.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct FoundCounterexample {
    /// The round (1-based) whose candidate it refuted.
    pub round: usize,
    /// The box.
    pub box_id: String,
    /// The input (f32).
    pub input: Vec<f32>,
    /// The float network's class there.
    pub float_class: usize,
    /// The refuted candidate's class there.
    pub quantized_class: usize,
}

/// A box left out of the refinement because no configuration up to 16 bits can be proved on
/// it ([`ExclusionReason`]).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ExcludedBox {
    /// The box.
    pub id: String,
    /// The float class at the centre.
    pub centre_class: usize,
    /// A point of the box (f32) where no configuration can be proved: the float class changes
    /// there, or even the widest integer network disagrees with the float one.
    pub witness: Vec<f32>,
    /// The float class there.
    pub witness_class: usize,
    /// Why no configuration can be proved on the box.
    pub reason: ExclusionReason,
}

/// Why no configuration up to 16 bits can be proved on a box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionReason {
    /// The float network's class changes inside the box (at the witness): no quantized
    /// network, constant on each input quantization cell, can be equivalent there.
    #[serde(alias = "the float decision boundary crosses the box")]
    FloatBoundary,
    /// Even the widest (16-bit) integer networks disagree with the float one at the witness.
    #[serde(
        alias = "even at 16 bits the integer network disagrees with the float one at the witness"
    )]
    WidestDisagrees,
    /// Even the widest integer networks disagree at the witness, where a float activation
    /// exceeds the range calibrated on the boxes' samples (and the data rows): the integer
    /// network saturates there, which no width changes.
    Saturates,
}

impl std::fmt::Display for ExclusionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExclusionReason::FloatBoundary => f.write_str("the float decision boundary crosses the box"),
            ExclusionReason::WidestDisagrees => write!(
                f,
                "even at {MAX_BITS} bits the integer network disagrees with the float one at the witness"
            ),
            ExclusionReason::Saturates => write!(
                f,
                "even at {MAX_BITS} bits the integer network saturates at the witness: an activation there exceeds the range calibrated on the boxes' samples and the data rows"
            ),
        }
    }
}

impl ExcludedBox {
    /// The exclusion of `prop` with the witness `x`: the float class changes at `x` (top-1
    /// equivalence only: under ε-equivalence the class plays no part), or even the widest
    /// integer network disagrees with the float one there, saturating where a float
    /// activation exceeds its `calibration` range.
    pub(crate) fn new(
        net: &Network,
        options: &VerifyOptions,
        calibration: &Calibration,
        prop: &Property,
        x: &[f64],
    ) -> ExcludedBox {
        let centre_class = options.decision.pick(&net.logits(&prop.x));
        let witness_class = options.decision.pick(&net.logits(x));
        let saturates = verify::Saturation::at(net, &calibration.layer_max_abs, x).is_some();
        ExcludedBox {
            id: prop.id.clone(),
            centre_class,
            witness_class,
            witness: x.iter().map(|v| *v as f32).collect(),
            reason: if options.equivalence == verify::Equivalence::Top1
                && witness_class != centre_class
            {
                ExclusionReason::FloatBoundary
            } else if saturates {
                ExclusionReason::Saturates
            } else {
                ExclusionReason::WidestDisagrees
            },
        }
    }
}

/// The outcome of a refinement.
#[derive(Clone, Debug, Serialize)]
pub struct Refinement {
    /// Boxes no configuration up to 16 bits can be proved on (the float class is not constant
    /// on them, or even 16 bits disagree somewhere), each with a witness.
    pub excluded: Vec<ExcludedBox>,
    /// The reported configuration: the smallest one proved on every claimed box and meeting
    /// the fidelity floor, else the last candidate.
    pub config: Option<QuantConfig>,
    /// Whether every claimed box was proved at exactly `config` and the floor is met. Boxes
    /// not claimed: the excluded ones, and those the verifier could not decide at the anchor
    /// (`unknown` in `boxes`).
    pub verified: bool,
    /// Storage of `config`.
    pub storage: Option<Storage>,
    /// The verdicts at `config` (or at the last candidate), and the `unknown` verdicts of boxes
    /// left out of the claim.
    pub boxes: Vec<BoxVerdict>,
    /// Per-round history.
    pub rounds: Vec<Round>,
    /// Every counterexample, in order.
    pub counterexamples: Vec<FoundCounterexample>,
    /// Boxes that reached the verifier, summed over rounds (the default strategy skips boxes
    /// an enclosing box's verdict decides).
    pub verifier_calls: usize,
    /// Candidate configurations screened on host models.
    pub screened: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Why the loop stopped.
    pub stop: StopReason,
    /// Data rows the fidelity floor does not count (no 16-bit network agrees there).
    pub rows_set_aside: Vec<SetAsideRow>,
    /// Accuracy and agreement with the float network on the task's data at `config` (the
    /// figures the floor was checked with), when there is data and a configuration.
    pub accuracy: Option<Accuracy>,
}

/// Why the loop stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The first proposal of the search was proved on every claimed box.
    EveryBoxProved,
    /// Every claimed box proved; no width of the best proof can be lowered further.
    NothingLower,
    /// The time limit was reached (with or without a proved configuration).
    TimeLimit,
    /// The round limit was reached.
    MaxRounds,
    /// Every box was excluded or left undecided.
    NoBoxLeft,
    /// No configuration up to 16 bits classifies every screened point like the float network
    /// and meets the fidelity floor.
    NoConsistentConfiguration,
    /// The evolutionary search found no configuration consistent with the counterexamples.
    EvolutionFoundNothing,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::EveryBoxProved => "every box proved",
            StopReason::NothingLower => "every box proved; no width of it can be lowered further",
            StopReason::TimeLimit => "the time limit was reached",
            StopReason::MaxRounds => "the round limit was reached",
            StopReason::NoBoxLeft => "no box left to prove",
            StopReason::NoConsistentConfiguration => "no configuration up to 16 bits classifies every screened point like the float network and meets the fidelity floor",
            StopReason::EvolutionFoundNothing => "the evolutionary search found no configuration consistent with the counterexamples",
        })
    }
}

/// Receives progress events (an indicatif bar in the CLI; nothing in tests).
pub trait Progress: Sync {
    /// A round starts verifying `candidate` on `boxes` boxes.
    fn round(&self, _round: usize, _candidate: &QuantConfig, _boxes: usize) {}
    /// One box finished.
    fn proof(&self, _verdict: &BoxVerdict) {}
}

/// No progress output.
pub struct Silent;
impl Progress for Silent {}

/// Runs the counterexample-guided loop on `task`.
pub fn refine(task: &Task, options: &RefineOptions, progress: &dyn Progress) -> Result<Refinement> {
    if task.props.is_empty() {
        bail!("{}: no boxes to refine on", task.model_path.display());
    }
    if !(0.0..=1.0).contains(&options.min_agreement) {
        bail!(
            "--min-agreement {} must lie between 0 and 1",
            options.min_agreement
        );
    }
    let start = Instant::now();
    // Every proof of the run ends by the time limit: a box cut short is unknown.
    let verify_options = VerifyOptions {
        deadline: Some(start + options.time_limit),
        ..options.verify.clone()
    };
    let mut state = rounds::LoopState::new(task, options, &verify_options, progress, start)?;
    let stop = state.run()?;
    state.finish(stop)
}

impl FoundCounterexample {
    fn new(round: usize, box_id: String, ce: &verify::Counterexample) -> FoundCounterexample {
        FoundCounterexample {
            round,
            box_id,
            input: ce.input.clone(),
            float_class: ce.float_class,
            quantized_class: ce.quantized_class,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under ε-equivalence a box is excluded only because even 16 bits deviate by more than ε
    /// at the witness, whatever the float classes there (ACAS Xu 1_1 box 8.5 was reported as
    /// crossed by the float decision boundary).
    #[test]
    fn the_exclusion_reason_follows_the_equivalence() {
        let net = crate::onnx_import::import_bytes(include_bytes!("../../../models/iris_mlp.onnx"))
            .unwrap();
        let prop = Property {
            id: "b".into(),
            lower: vec![0.0; 4],
            upper: vec![1.0; 4],
            x: vec![0.0; 4],
            y: None,
            ball_size: None,
        };
        // A corner of another float class than the centre.
        let witness = [
            vec![1.0; 4],
            vec![0.0, 1.0, 0.0, 1.0],
            vec![1.0, 0.0, 1.0, 0.0],
        ]
        .into_iter()
        .find(|x| net.classify(x) != net.classify(&prop.x))
        .expect("the unit box spans two iris classes");
        let top1 = VerifyOptions::default();
        let epsilon = VerifyOptions {
            equivalence: verify::Equivalence::Epsilon(0.05),
            ..VerifyOptions::default()
        };
        let whole_box = Calibration::from_boxes(&net, std::slice::from_ref(&prop));
        let reason = |options, calibration| {
            ExcludedBox::new(&net, options, calibration, &prop, &witness).reason
        };
        assert_eq!(reason(&top1, &whole_box), ExclusionReason::FloatBoundary);
        assert_eq!(
            reason(&epsilon, &whole_box),
            ExclusionReason::WidestDisagrees
        );
        // Calibrated at the centre alone, the network saturates at the (corner) witness: no
        // width can help there, and the reason says why.
        let centre = Calibration::from_points(&net, [&prop.x]);
        assert_eq!(reason(&epsilon, &centre), ExclusionReason::Saturates);
    }
}
