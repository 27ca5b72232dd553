//! Benchmarks over a suite folder: verification per network, compared with the paper's artifact.

use std::time::Instant;

use crate::error::Result;
use serde::Serialize;

use crate::data::load_properties;
use crate::onnx_import::import_path;
use crate::quantize::{QuantConfig, DEFAULT_WEIGHT_BITS};
use crate::suite::Suite;
use crate::task::Task;
use crate::verify::{Quantized, Status, VerifyOptions};

/// Settings of `bench verify`.
#[derive(Clone, Debug)]
pub struct VerifyBench {
    /// Weight bits for every layer; `None` under paper semantics means the artifact's bits.
    pub weight_bits: Option<Vec<u32>>,
    /// Activation bits (integer semantics).
    pub act_bits: Vec<u32>,
    /// Input bits (integer semantics).
    pub input_bits: u32,
    /// Per-channel weight scales for hidden layers (integer semantics).
    pub per_channel: bool,
    /// One input format for all features (integer semantics).
    pub uniform_input: bool,
    /// Compare with the artifact's fake quantization instead of the integer network.
    pub paper: bool,
    /// Per-box options.
    pub options: VerifyOptions,
    /// Parallel boxes.
    pub jobs: usize,
}

/// One network's results.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyRow {
    /// Network name.
    pub network: String,
    /// Weight bits used.
    pub weight_bits: Vec<u32>,
    /// Boxes.
    pub boxes: usize,
    /// Proved boxes.
    pub proved: usize,
    /// Boxes with a counterexample.
    pub counterexample: usize,
    /// Undecided boxes.
    pub unknown: usize,
    /// Median seconds per box.
    pub median_seconds: f64,
    /// Median seconds per proved box (what the artifact's table reports).
    pub median_proof_seconds: Option<f64>,
    /// Largest seconds per box.
    pub max_seconds: f64,
    /// Largest seconds of a decided box (proved or counterexample): what "every decided box
    /// within its time" is about, where `max_seconds` is an unknown box's time-out.
    pub max_decided_seconds: Option<f64>,
    /// Wall-clock seconds for the network.
    pub total_seconds: f64,
    /// The artifact's median seconds per proof, if the suite README gives it.
    pub artifact_median_seconds: Option<f64>,
    /// `artifact median / our median per proof`, if both exist.
    pub speedup_vs_artifact: Option<f64>,
    /// Why the network was skipped, if it was.
    pub skipped: Option<String>,
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}

impl VerifyBench {
    /// Verifies every box of network `name`, calling `progress` with the finished row.
    pub fn run_network(&self, suite: &Suite, name: &str) -> Result<VerifyRow> {
        let artifact = suite.artifact.get(name).cloned().unwrap_or_default();
        let net = import_path(&suite.model(name))?;
        let props = load_properties(&suite.properties(name), net.input_len())?;
        let bits = match (&self.weight_bits, self.paper) {
            (Some(b), _) => b.clone(),
            (None, true) => match artifact.bits.clone() {
                Some(b) => b,
                None => {
                    return Ok(skipped(
                        name,
                        "the suite README lists no artifact bits for it",
                    ))
                }
            },
            (None, false) => vec![DEFAULT_WEIGHT_BITS],
        };
        let config = QuantConfig::for_network(
            &net,
            &bits,
            &self.act_bits,
            self.input_bits,
            self.per_channel,
            self.uniform_input,
        )?;
        let task = Task::new(&suite.model(name), net, props);
        let int_net = task.quantize(&config)?;
        let paper_net = task.paper_network(&config);
        let quantized = if self.paper {
            Quantized::Paper(&paper_net)
        } else {
            Quantized::Integer(&int_net)
        };
        let start = Instant::now();
        let verdicts = task
            .compare(quantized, &self.options)
            .verify_boxes(&task.props, self.jobs);
        let total_seconds = start.elapsed().as_secs_f64();
        let count = |s: Status| verdicts.iter().filter(|v| v.status == s).count();
        let mut seconds: Vec<f64> = verdicts.iter().map(|v| v.seconds).collect();
        let max_seconds = seconds.iter().copied().fold(0.0, f64::max);
        let median_seconds = median(&mut seconds);
        let mut proof_seconds: Vec<f64> = verdicts
            .iter()
            .filter(|v| v.status == Status::Proved)
            .map(|v| v.seconds)
            .collect();
        let median_proof_seconds = (!proof_seconds.is_empty()).then(|| median(&mut proof_seconds));
        let max_decided_seconds = verdicts
            .iter()
            .filter(|v| v.status != Status::Unknown)
            .map(|v| v.seconds)
            .reduce(f64::max);
        Ok(VerifyRow {
            network: name.to_string(),
            weight_bits: config.weight_bits,
            boxes: verdicts.len(),
            proved: count(Status::Proved),
            counterexample: count(Status::Counterexample),
            unknown: count(Status::Unknown),
            median_seconds,
            median_proof_seconds,
            max_seconds,
            max_decided_seconds,
            total_seconds,
            artifact_median_seconds: artifact.median_seconds,
            // Sub-millisecond medians are clamped to 1 ms so the ratio stays meaningful.
            speedup_vs_artifact: artifact
                .median_seconds
                .zip(median_proof_seconds)
                .map(|(a, ours)| a / ours.max(1e-3)),
            skipped: None,
        })
    }
}

fn skipped(name: &str, why: &str) -> VerifyRow {
    VerifyRow {
        network: name.to_string(),
        weight_bits: vec![],
        boxes: 0,
        proved: 0,
        counterexample: 0,
        unknown: 0,
        median_seconds: 0.0,
        median_proof_seconds: None,
        max_seconds: 0.0,
        max_decided_seconds: None,
        total_seconds: 0.0,
        artifact_median_seconds: None,
        speedup_vs_artifact: None,
        skipped: Some(why.to_string()),
    }
}

/// One network refined by one strategy.
#[derive(Clone, Debug, Serialize)]
pub struct RefineRow {
    /// Network name.
    pub network: String,
    /// `default` or `ga`.
    pub search: String,
    /// Weight bits found.
    pub weight_bits: Vec<u32>,
    /// Hidden activation bits found.
    pub activation_bits: Vec<u32>,
    /// Input bits found.
    pub input_bits: u32,
    /// `sum_l bits_l * |W_l|` of what we found.
    pub weight_storage_bits: u64,
    /// The same for the artifact's bits (suite README), if listed.
    pub artifact_weight_storage_bits: Option<u64>,
    /// `sum_l bits_l * (|W_l| + |b_l|)` of what we found.
    pub paper_storage_bits: u64,
    /// Every box proved at the bits found.
    pub verified: bool,
    /// Boxes proved at the bits found.
    pub proved: usize,
    /// Boxes.
    pub boxes: usize,
    /// Boxes left out: the float class changes inside them.
    pub excluded: usize,
    /// Rounds.
    pub rounds: usize,
    /// Boxes verified in total.
    pub verifier_calls: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Test accuracy (float, refined, uniform baseline) and agreement with the float network
    /// when the suite has a test set.
    pub accuracy: Option<crate::refine::Accuracy>,
    /// Why the refinement stopped.
    pub stop_reason: String,
}

/// Refines network `name` of the suite with `options`.
pub fn refine_network(
    suite: &Suite,
    name: &str,
    options: &crate::refine::RefineOptions,
) -> Result<RefineRow> {
    use crate::refine::{refine, Search, Silent, Storage};
    let net = import_path(&suite.model(name))?;
    let props = load_properties(&suite.properties(name), net.input_len())?;
    let test = suite
        .test_set(name)
        .map(|p| crate::data::Dataset::load_csv_for(&p, &net))
        .transpose()?;
    // The test split calibrates and sets the fidelity floor, as `--data` does for `refine`.
    let task = Task::with_data(&suite.model(name), net, props, test);
    let artifact_weight_storage_bits = suite.artifact.get(name).and_then(|a| {
        let bits = a.bits.as_ref()?;
        (bits.len() == task.net.layers.len()).then(|| {
            task.net
                .layers
                .iter()
                .zip(bits)
                .map(|(l, b)| *b as u64 * l.weights.len() as u64)
                .sum()
        })
    });
    let refinement = refine(&task, options, &Silent)?;
    let config = refinement.config.clone();
    let storage = config.as_ref().map(|c| Storage::of(&task.net, c));
    Ok(RefineRow {
        network: name.to_string(),
        search: match options.search {
            Search::Descent => "default",
            Search::Genetic => "ga",
        }
        .into(),
        weight_bits: config
            .as_ref()
            .map(|c| c.weight_bits.clone())
            .unwrap_or_default(),
        activation_bits: config
            .as_ref()
            .map(|c| c.act_bits.clone())
            .unwrap_or_default(),
        input_bits: config.as_ref().map_or(0, |c| c.input_bits),
        weight_storage_bits: storage.map_or(0, |s| s.weight_storage_bits),
        artifact_weight_storage_bits,
        paper_storage_bits: storage.map_or(0, |s| s.paper_storage_bits),
        verified: refinement.verified,
        proved: refinement
            .boxes
            .iter()
            .filter(|b| b.status == Status::Proved)
            .count(),
        boxes: task.props.len(),
        excluded: refinement.excluded.len(),
        rounds: refinement.rounds.len(),
        verifier_calls: refinement.verifier_calls,
        seconds: refinement.seconds,
        accuracy: refinement.accuracy,
        stop_reason: refinement.stop.to_string(),
    })
}
