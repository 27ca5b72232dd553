//! The refinement report (`report.json`): a stable, documented schema (see
//! `docs/report-schema.md`) that `generate` and `hil` read back.

use std::path::{Path, PathBuf};

use crate::error::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::quantize::{Calibration, QuantConfig};
use crate::refine::{
    Accuracy, CurvePoint, ExcludedBox, FoundCounterexample, Refinement, Round, Search, SetAsideRow,
    StopReason,
};
use crate::task::Task;
use crate::verify::{BoxVerdict, Decision, Equivalence, Status, VerifyOptions};

/// The schema identifier written into every report.
pub const SCHEMA: &str = "ceg4n-refine/1";

/// One box at the reported configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BoxResult {
    /// Box id from the property file.
    pub id: String,
    /// The outcome.
    pub status: Status,
    /// Seconds spent on the box.
    pub seconds: f64,
    /// The counterexample input, if any.
    pub counterexample: Option<Vec<f32>>,
    /// The enclosing box whose verdict decided this one without a verifier call, if any.
    #[serde(default)]
    pub decided_by: Option<String>,
}

/// `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefineReport {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The ceg4n version that wrote it.
    pub tool_version: String,
    /// The model file as given.
    pub model: PathBuf,
    /// SHA-256 of the model file.
    pub model_sha256: String,
    /// The property file (boxes) as given, or the one refine wrote from the data.
    pub props: PathBuf,
    /// The data file (`--data`) as given, if any.
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// The activation ranges the network was quantized with (boxes and data rows), so that
    /// `generate` rebuilds exactly the verified network.
    #[serde(default)]
    pub calibration: Option<Calibration>,
    /// The search strategy.
    pub search: Search,
    /// The seed.
    pub seed: u64,
    /// How classes are read off the logits.
    pub decision: Decision,
    /// Weight bits per layer of the reported configuration (null if no candidate).
    pub weight_bits: Option<Vec<u32>>,
    /// Hidden activation bits per hidden layer.
    pub activation_bits: Option<Vec<u32>>,
    /// Input bits.
    pub input_bits: Option<u32>,
    /// Hidden layers' weights scaled per output channel.
    pub per_channel: bool,
    /// One input format for all features.
    pub uniform_input: bool,
    /// `sum_l bits_l * |W_l|`.
    pub weight_storage_bits: Option<u64>,
    /// `sum_l bits_l * (|W_l| + |b_l|)` (the paper's objective).
    pub paper_storage_bits: Option<u64>,
    /// Input and hidden activations at their widths.
    pub activation_storage_bits: Option<u64>,
    /// The float network's weights and biases at 32 bits.
    pub float32_storage_bits: u64,
    /// Per box at the reported configuration.
    pub boxes: Vec<BoxResult>,
    /// Boxes proved at the reported configuration.
    pub proved: usize,
    /// Ids of boxes not proved at the reported configuration.
    pub unproved: Vec<String>,
    /// Every claimed box proved at exactly the reported configuration, and (with data) the
    /// fidelity floor met. Not claimed: the `excluded` boxes and the `unknown` ones.
    pub verified: bool,
    /// Boxes no configuration up to 16 bits can be proved on, left out with a witness point:
    /// the float decision boundary crosses them (no quantized network, constant on each input
    /// quantization cell, can be equivalent there), or even 16 bits disagree at the witness.
    pub excluded: Vec<ExcludedBox>,
    /// Rounds run.
    pub rounds: usize,
    /// Per-round history.
    pub history: Vec<Round>,
    /// Every counterexample found.
    pub counterexamples: Vec<FoundCounterexample>,
    /// Boxes that reached the verifier, summed over rounds.
    pub verifier_calls: usize,
    /// Candidate configurations screened on host models.
    pub screened: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Why the loop stopped, in words.
    pub stop_reason: String,
    /// Why the loop stopped.
    #[serde(default)]
    pub stop: Option<StopReason>,
    /// Data rows the fidelity floor does not count, each with the reason.
    #[serde(default)]
    pub rows_set_aside: Vec<SetAsideRow>,
    /// Test accuracy and agreement with the float network, when `--data` was given.
    pub accuracy: Option<Accuracy>,
    /// Seconds allowed per box.
    pub timeout_seconds: f64,
    /// Test accuracy of uniform quantization at each weight width (with `--data`).
    #[serde(default)]
    pub accuracy_curve: Vec<CurvePoint>,
    /// The run on a device (`ceg4n run`), if there was one.
    #[serde(default)]
    pub device: Option<DeviceSummary>,
    /// The property proved: `None` top-1 (the same class), `Some(E)` epsilon-equivalence
    /// (every dequantized logit within E of the float one), as the paper's ACAS Xu runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// The model's class labels in class-index order, when its graph has a class table
    /// (classes in `boxes`, `excluded` and `counterexamples` are indices into it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_labels: Option<crate::ir::ClassLabels>,
}

/// The generated crate run on a board (written by `ceg4n run`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceSummary {
    /// Board name.
    pub board: String,
    /// Core.
    pub core: String,
    /// Vectors whose device output equals the host model's exactly.
    pub bit_exact: usize,
    /// Vectors run.
    pub vectors: usize,
    /// Guest instructions per inference (QEMU), if counted.
    pub instructions_per_inference: Option<f64>,
    /// Instructions per multiply-accumulate, if counted.
    pub instructions_per_mac: Option<f64>,
    /// Flash of the test firmware in bytes.
    pub flash_bytes: Option<u64>,
    /// Static RAM of the test firmware in bytes (stack excluded).
    pub ram_bytes: Option<u64>,
    /// Weight and parameter bytes as generated.
    pub model_flash_bytes: usize,
    /// Activation buffer bytes as generated (stack, during inference).
    pub model_ram_bytes: usize,
    /// The model's flash measured on the device build (code, weights, parameters): the image
    /// with one `logits` call minus the same image without it.
    #[serde(default)]
    pub measured_model_flash_bytes: Option<u64>,
    /// Deepest stack use of one inference, measured by painting the stack under QEMU.
    #[serde(default)]
    pub measured_stack_bytes: Option<u64>,
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

impl RefineReport {
    /// Assembles the report of a finished refinement.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        task: &Task,
        props_path: &Path,
        data_path: Option<&Path>,
        search: Search,
        seed: u64,
        verify: &VerifyOptions,
        refinement: &Refinement,
        accuracy: Option<Accuracy>,
        quant: (bool, bool),
    ) -> Result<RefineReport> {
        let config = refinement.config.as_ref();
        let storage = refinement.storage;
        let boxes: Vec<BoxResult> = refinement.boxes.iter().map(box_result).collect();
        Ok(RefineReport {
            schema: SCHEMA.into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            model: task.model_path.clone(),
            model_sha256: sha256_file(&task.model_path)?,
            props: props_path.to_path_buf(),
            data: data_path.map(Path::to_path_buf),
            calibration: Some(task.calibration.clone()),
            search,
            seed,
            decision: verify.decision,
            epsilon: match verify.equivalence {
                Equivalence::Epsilon(e) => Some(e),
                Equivalence::Top1 => None,
            },
            weight_bits: config.map(|c| c.weight_bits.clone()),
            activation_bits: config.map(|c| c.act_bits.clone()),
            input_bits: config.map(|c| c.input_bits),
            per_channel: config.map_or(quant.0, |c| c.per_channel),
            uniform_input: config.map_or(quant.1, |c| c.uniform_input),
            weight_storage_bits: storage.map(|s| s.weight_storage_bits),
            paper_storage_bits: storage.map(|s| s.paper_storage_bits),
            activation_storage_bits: storage.map(|s| s.activation_bits),
            float32_storage_bits: 32 * task.net.param_count() as u64,
            proved: boxes.iter().filter(|b| b.status == Status::Proved).count(),
            unproved: boxes
                .iter()
                .filter(|b| b.status != Status::Proved)
                .map(|b| b.id.clone())
                .collect(),
            boxes,
            verified: refinement.verified,
            excluded: refinement.excluded.clone(),
            rounds: refinement.rounds.len(),
            history: refinement.rounds.clone(),
            counterexamples: refinement.counterexamples.clone(),
            verifier_calls: refinement.verifier_calls,
            screened: refinement.screened,
            seconds: refinement.seconds,
            stop_reason: refinement.stop.to_string(),
            stop: Some(refinement.stop),
            rows_set_aside: refinement.rows_set_aside.clone(),
            accuracy,
            timeout_seconds: verify.timeout.as_secs_f64(),
            accuracy_curve: Vec::new(),
            device: None,
            class_labels: task.net.head.labels.clone(),
        })
    }

    /// The reported configuration, if there is one.
    pub fn config(&self) -> Option<QuantConfig> {
        Some(QuantConfig {
            weight_bits: self.weight_bits.clone()?,
            act_bits: self.activation_bits.clone()?,
            input_bits: self.input_bits?,
            per_channel: self.per_channel,
            uniform_input: self.uniform_input,
        })
    }

    /// Reads a report, checking its schema.
    pub fn load(path: &Path) -> Result<RefineReport> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the report", path.display()))?;
        let report: RefineReport = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a ceg4n refine report (expected schema {SCHEMA})",
                path.display()
            )
        })?;
        if report.schema != SCHEMA {
            bail!(
                "{}: report schema {} is not supported; expected {SCHEMA}",
                path.display(),
                report.schema
            );
        }
        Ok(report)
    }

    /// Writes `report.json` into `dir` (created if missing) via a temporary file and a rename,
    /// so a reader never sees half a report.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the directory", dir.display()))?;
        let path = dir.join("report.json");
        let tmp = dir.join(".report.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(path)
    }
}

fn box_result(v: &BoxVerdict) -> BoxResult {
    BoxResult {
        id: v.id.clone(),
        status: v.status,
        seconds: v.seconds,
        counterexample: v.counterexample.as_ref().map(|c| c.input.clone()),
        decided_by: v.decided_by.clone(),
    }
}
