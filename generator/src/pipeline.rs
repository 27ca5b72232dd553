//! The pipeline steps the CLI's commands are made of, as library calls with typed results.

use std::path::{Path, PathBuf};

use crate::error::{bail, Result};

use crate::data::{load_properties, write_properties, DataBoxes, Dataset, Property};
use crate::onnx_import::import_path;
use crate::refine::{refine, uniform_curve, Progress, RefineOptions};
use crate::report::RefineReport;
use crate::task::Task;

/// Where the boxes of a refinement come from.
#[derive(Clone, Debug)]
pub enum BoxSource {
    /// A CEG4N property file.
    File(PathBuf),
    /// Rows of the data, boxed (written to `DIR/boxes.json`).
    FromData(DataBoxes),
}

/// One refinement as the user asked for it.
#[derive(Clone, Debug)]
pub struct RefineRequest<'a> {
    /// The ONNX model.
    pub model: &'a Path,
    /// The boxes.
    pub boxes: BoxSource,
    /// A labelled CSV: calibration, the fidelity floor, and the accuracy figures.
    pub data: Option<&'a Path>,
    /// The loop's settings.
    pub options: RefineOptions,
    /// The report folder (boxes made from data are written there too).
    pub out: &'a Path,
}

/// The name of the property file written when boxes are made from data.
pub const DATA_BOXES_FILE: &str = "boxes.json";

/// Imports the model, loads the data and the boxes (making and writing them from the data
/// when asked), runs the refinement and assembles its report (not yet written).
pub fn refine_model(request: &RefineRequest, progress: &dyn Progress) -> Result<RefineReport> {
    let net = import_path(request.model)?;
    let data = request
        .data
        .map(|p| Dataset::load_csv_for(p, &net))
        .transpose()?;
    let (props, props_path): (Vec<Property>, PathBuf) = match &request.boxes {
        BoxSource::File(path) => (load_properties(path, net.input_len())?, path.clone()),
        BoxSource::FromData(spec) => {
            let Some(data) = &data else {
                bail!("boxes from data need --data (or give --props FILE)");
            };
            if !(spec.radius.is_finite() && spec.radius > 0.0) {
                bail!(
                    "--radius {} must be a positive fraction of each feature's range",
                    spec.radius
                );
            }
            if spec.count == Some(0) {
                bail!("--boxes 0: give at least one row to box");
            }
            let logits: Vec<Vec<f64>> = data.features.iter().map(|x| net.logits(x)).collect();
            let decision = request.options.verify.decision;
            let classes: Vec<usize> = logits.iter().map(|l| decision.pick(l)).collect();
            let props = spec.make(data, &classes, &logits);
            let path = request.out.join(DATA_BOXES_FILE);
            write_properties(&path, &props)?;
            (props, path)
        }
    };
    let task = Task::with_data(request.model, net, props, data);
    let refinement = refine(&task, &request.options, progress)?;
    let mut report = RefineReport::new(
        &task,
        &props_path,
        request.data,
        request.options.search,
        request.options.seed,
        &request.options.verify,
        &refinement,
        refinement.accuracy,
        (
            request.options.per_channel == Some(true),
            request.options.uniform_input,
        ),
    )?;
    if let (Some(d), Some(c)) = (&task.data, &refinement.config) {
        report.accuracy_curve = uniform_curve(&task, c, d)?;
    }
    Ok(report)
}

/// Bit-widths as the user gives them (one value for every layer, or one per layer), before the
/// network is known.
#[derive(Clone, Debug)]
pub struct BitsSpec {
    /// Weight bits: one value or one per layer.
    pub weight_bits: Vec<u32>,
    /// Hidden activation bits: one value or one per hidden layer.
    pub act_bits: Vec<u32>,
    /// Input width.
    pub input_bits: u32,
    /// Per-channel weight scales for hidden layers.
    pub per_channel: bool,
    /// One input format for all features.
    pub uniform_input: bool,
}

impl BitsSpec {
    /// The configuration for `net`.
    pub fn config(&self, net: &crate::ir::Network) -> Result<crate::quantize::QuantConfig> {
        crate::quantize::QuantConfig::for_network(
            net,
            &self.weight_bits,
            &self.act_bits,
            self.input_bits,
            self.per_channel,
            self.uniform_input,
        )
    }
}

/// Where a crate's network and certificate come from.
#[derive(Clone, Copy, Debug)]
pub enum CrateSource<'a> {
    /// A refine report: its bits, its calibration, its proof results as the certificate.
    Report(&'a RefineReport),
    /// A model at explicit bits, calibrated on boxes; the certificate says nothing is proved.
    Model {
        /// The ONNX model.
        model: &'a Path,
        /// The boxes that calibrate the activation ranges (and give test vectors).
        props: &'a Path,
        /// The bits.
        bits: &'a BitsSpec,
    },
}

/// Everything a crate is generated from.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The integer network.
    pub int_net: crate::int_model::IntNetwork,
    /// The crate name.
    pub name: String,
    /// What the crate's README certifies.
    pub certificate: crate::codegen::Certificate,
    /// Test vectors with the host model's logits.
    pub vectors: Vec<crate::codegen::Vector>,
}

impl Prepared {
    /// The crate for `board`.
    pub fn spec<'a>(&'a self, board: &'a crate::board::Board) -> crate::codegen::CrateSpec<'a> {
        crate::codegen::CrateSpec {
            name: self.name.clone(),
            net: &self.int_net,
            board,
            certificate: self.certificate.clone(),
            vectors: self.vectors.clone(),
        }
    }
}

/// A file's name without its folder.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Rebuilds the network a crate is generated from (checking that a report's model did not
/// change since it was verified), its certificate and its test vectors.
pub fn prepare_crate(source: CrateSource, name: Option<String>) -> Result<Prepared> {
    use crate::codegen::{vectors, Certificate, CertifiedBox, CertifiedStatus, Fidelity};
    use crate::report::sha256_file;
    let (task, config, certificate, extra) = match source {
        CrateSource::Report(report) => {
            let Some(config) = report.config() else {
                bail!(
                    "{}: the report has no configuration to generate",
                    report.model.display()
                );
            };
            let net = import_path(&report.model)?;
            let sha = sha256_file(&report.model)?;
            if sha != report.model_sha256 {
                bail!(
                    "{}: the model file changed since the report was written (SHA-256 differs); refine again",
                    report.model.display()
                );
            }
            let props = load_properties(&report.props, net.input_len())?;
            // The calibration the network was verified with (boxes and data rows).
            let task = match &report.calibration {
                Some(cal) => Task::with_calibration(&report.model, net, props, None, cal.clone()),
                None => Task::new(&report.model, net, props),
            };
            let mut boxes: Vec<CertifiedBox> = report
                .boxes
                .iter()
                .map(|b| CertifiedBox {
                    id: b.id.clone(),
                    status: b.status.into(),
                })
                .collect();
            boxes.extend(report.excluded.iter().map(|e| CertifiedBox {
                id: e.id.clone(),
                status: CertifiedStatus::Excluded,
            }));
            let extra: Vec<(String, Vec<f64>)> = report
                .counterexamples
                .iter()
                .map(|c| {
                    (
                        format!("counterexample {}", c.box_id),
                        c.input.iter().map(|v| *v as f64).collect(),
                    )
                })
                .collect();
            let certificate = Certificate {
                model: file_name(&report.model),
                model_sha256: sha,
                verified: report.verified,
                boxes,
                tool_version: env!("CARGO_PKG_VERSION").into(),
                fidelity: report.accuracy.map(|accuracy| Fidelity {
                    data: report.data.as_deref().map_or("-".into(), file_name),
                    accuracy,
                }),
                epsilon: report.epsilon,
            };
            (task, config, certificate, extra)
        }
        CrateSource::Model { model, props, bits } => {
            let net = import_path(model)?;
            let config = bits.config(&net)?;
            let props = load_properties(props, net.input_len())?;
            let task = Task::new(model, net, props);
            let certificate = Certificate {
                model: file_name(model),
                model_sha256: sha256_file(model)?,
                verified: false,
                boxes: task
                    .props
                    .iter()
                    .map(|p| CertifiedBox {
                        id: p.id.clone(),
                        status: CertifiedStatus::NotVerified,
                    })
                    .collect(),
                tool_version: env!("CARGO_PKG_VERSION").into(),
                fidelity: None,
                epsilon: None,
            };
            (task, config, certificate, Vec::new())
        }
    };
    let int_net = task.quantize(&config)?;
    let name = match name {
        Some(n) => n,
        None => crate_name_for(&task.model_path),
    };
    check_crate_name(&name)?;
    let vectors = vectors(&int_net, &task.props, &extra, VECTOR_SEED);
    Ok(Prepared {
        int_net,
        name,
        certificate,
        vectors,
    })
}

/// Seed of the random in-box test vectors (fixed: the same report gives the same crate).
const VECTOR_SEED: u64 = 0xC0DE;

/// The default crate name: the model's file stem, lower case, other characters as '-',
/// then "-model".
pub fn crate_name_for(model: &Path) -> String {
    let stem = model
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model")
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    format!("{stem}-model")
}

/// A crate name is letters, digits, '-' and '_', not starting with a digit.
pub fn check_crate_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        bail!("--name {name}: a crate name is letters, digits, '-' and '_', not starting with a digit");
    }
    Ok(())
}

/// What running a verified model on an emulated board found.
#[derive(Debug)]
pub struct DeviceRun {
    /// Device outputs against the host model, vector by vector.
    pub comparison: crate::hil::Comparison,
    /// How the QEMU run ended.
    pub run: crate::hil::DeviceRun,
    /// Instructions per inference (QEMU plugin); an error says why it was not counted.
    pub bench: Result<crate::hil::DeviceBench>,
    /// The model's flash and stack measured on the device build; an error says why not.
    pub measured: Result<crate::hil::MeasuredMemory>,
    /// The model's memory as generated.
    pub memory: crate::codegen::Memory,
}

impl DeviceRun {
    /// Every vector bit-exact and the firmware's own check passed.
    pub fn bit_exact(&self) -> bool {
        self.comparison.passed() && self.run.exit_code == Some(0)
    }
}

/// `ceg4n run`'s device half, in memory: generates the crate of a refine report for an
/// emulated board, runs it under QEMU comparing every output with the host model, counts
/// instructions, measures memory, and records the summary in `report.device`.
pub fn run_on_board(
    report: &mut RefineReport,
    board: &crate::board::Board,
    out: &Path,
) -> Result<DeviceRun> {
    use std::time::Duration;
    if board.qemu_machine.is_none() {
        bail!(
            "board {} is not emulated; `ceg4n run` runs on a QEMU board (see `ceg4n boards`)",
            board.name
        );
    }
    let prepared = prepare_crate(CrateSource::Report(report), None)?;
    let spec = prepared.spec(board);
    let (comparison, run) = crate::hil::run_model(
        &spec,
        out,
        &out.join("target"),
        crate::hil::FirmwareVariant::Check,
        crate::hil::Kernels::Safe,
        Duration::from_secs(300),
        false,
    )?;
    let bench = crate::hil::build_plugin(&out.join("plugin")).and_then(|plugin| {
        crate::hil::bench_device(
            &spec,
            &out.join("bench"),
            &plugin,
            crate::hil::Kernels::Safe,
        )
    });
    let measured = crate::hil::measure_memory(
        &spec,
        Some(board),
        &out.join("memory"),
        &out.join("target"),
        Duration::from_secs(60),
        crate::hil::Kernels::Safe,
    );
    let memory = spec.memory();
    let bench_ok = bench.as_ref().ok();
    let measured_ok = measured.as_ref().ok();
    report.device = Some(crate::report::DeviceSummary {
        measured_model_flash_bytes: measured_ok.map(|m| m.model_flash_bytes),
        measured_stack_bytes: measured_ok.and_then(|m| m.stack_bytes),
        board: board.name.clone(),
        core: board.core.clone(),
        bit_exact: comparison.bit_exact,
        vectors: comparison.total,
        instructions_per_inference: bench_ok.map(|b| b.instructions_per_inference),
        instructions_per_mac: bench_ok.map(|b| b.instructions_per_mac),
        flash_bytes: bench_ok.map(|b| b.flash_bytes),
        ram_bytes: bench_ok.map(|b| b.ram_bytes),
        model_flash_bytes: memory.weight_bytes + memory.parameter_bytes,
        model_ram_bytes: memory.buffer_bytes,
    });
    Ok(DeviceRun {
        comparison,
        run,
        bench,
        measured,
        memory,
    })
}

/// Accuracy of a model on a data file, and of its quantization at given bits.
#[derive(Debug)]
pub struct Evaluation {
    /// Rows evaluated.
    pub rows: usize,
    /// Float accuracy (labels: the CSV's, or the class of a property's recorded logits).
    pub float_accuracy: f64,
    /// Largest |float logit - recorded logit| (property files only).
    pub max_abs_diff_vs_reference: Option<f64>,
    /// The quantized network's figures, when bits were given.
    pub quantized: Option<QuantizedEvaluation>,
}

/// A quantized network's figures on the rows of an [`Evaluation`].
#[derive(Debug)]
pub struct QuantizedEvaluation {
    /// The integer network.
    pub int_net: crate::int_model::IntNetwork,
    /// Its bits.
    pub config: crate::quantize::QuantConfig,
    /// Its accuracy.
    pub accuracy: f64,
    /// Fraction of rows where it picks the float network's class.
    pub agreement: f64,
}

/// Evaluates `net` on `data_path` (a labelled CSV or a CEG4N property file); with `bits`, also
/// its quantization, calibrated on `calib_path` (else on the data itself: largest values on
/// CSV rows, samples of property boxes).
pub fn evaluate(
    net: &crate::ir::Network,
    data_path: &Path,
    bits: Option<&BitsSpec>,
    calib_path: Option<&Path>,
) -> Result<Evaluation> {
    use crate::data::DataFile;
    use crate::error::Context;
    use crate::quantize::Calibration;
    let data = DataFile::load(data_path, net)?;
    let (inputs, labels, reference) = match &data {
        DataFile::Csv(d) => (d.features.clone(), d.labels.clone(), None),
        DataFile::Properties(props) => {
            let reference = props
                .iter()
                .map(|p| {
                    p.y.clone().with_context(|| {
                        format!(
                            "{}: property {} has no `y` logits to label it",
                            data_path.display(),
                            p.id
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if let Some(bad) = reference.iter().find(|y| y.len() != net.output_len()) {
                bail!(
                    "{}: `y` has {} values, the model has {} outputs",
                    data_path.display(),
                    bad.len(),
                    net.output_len()
                );
            }
            let labels = reference.iter().map(|y| ceg4n_runtime::argmax(y)).collect();
            let inputs = props.iter().map(|p| p.x.clone()).collect();
            (inputs, labels, Some(reference))
        }
    };
    let n = inputs.len() as f64;
    let rate = |classify: &dyn Fn(&[f64]) -> usize| {
        let hits = inputs
            .iter()
            .zip(&labels)
            .filter(|(x, label)| classify(x) == **label)
            .count();
        hits as f64 / n
    };
    let max_abs_diff_vs_reference = reference.as_ref().map(|refs| {
        inputs
            .iter()
            .zip(refs)
            .flat_map(|(x, y)| {
                net.logits(x)
                    .into_iter()
                    .zip(y.clone())
                    .map(|(a, b)| (a - b).abs())
            })
            .fold(0.0f64, f64::max)
    });
    let calibration_of = |data: &DataFile| match data {
        DataFile::Csv(d) => Calibration::from_points(net, &d.features),
        DataFile::Properties(props) => Calibration::from_boxes(net, props),
    };
    let quantized = match bits {
        None => None,
        Some(bits) => {
            let config = bits.config(net)?;
            let calibration = match calib_path {
                Some(p) => calibration_of(&DataFile::load(p, net)?),
                None => calibration_of(&data),
            };
            let int_net = crate::quantize::quantize(net, &config, &calibration)?;
            let accuracy = rate(&|x| int_net.classify(x));
            let agree = inputs
                .iter()
                .filter(|x| int_net.classify(x) == net.classify(x))
                .count();
            Some(QuantizedEvaluation {
                int_net,
                config,
                accuracy,
                agreement: agree as f64 / n,
            })
        }
    };
    Ok(Evaluation {
        rows: inputs.len(),
        float_accuracy: rate(&|x| net.classify(x)),
        max_abs_diff_vs_reference,
        quantized,
    })
}

/// What `verify` found.
#[derive(Debug)]
pub struct Verification {
    /// The bits verified.
    pub config: crate::quantize::QuantConfig,
    /// One verdict per box, in the boxes' order.
    pub verdicts: Vec<crate::verify::BoxVerdict>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Verifies `props` on `model` quantized at `config` (calibrated on the boxes): the integer
/// network, or with `paper` the CEG4N artifact's fake quantization.
pub fn verify_model(
    model: &Path,
    boxes: &VerifyBoxes,
    bits: &BitsSpec,
    paper: bool,
    options: &crate::verify::VerifyOptions,
    jobs: usize,
) -> Result<Verification> {
    use crate::verify::Quantized;
    let net = import_path(model)?;
    let config = bits.config(&net)?;
    let props = boxes.load(net.input_len())?;
    let task = Task::new(model, net, props);
    let int_net = task.quantize(&config)?;
    let paper_net = task.paper_network(&config);
    let quantized = if paper {
        Quantized::Paper(&paper_net)
    } else {
        Quantized::Integer(&int_net)
    };
    let start = std::time::Instant::now();
    let verdicts = task
        .compare(quantized, options)
        .verify_boxes(&task.props, jobs);
    Ok(Verification {
        config,
        verdicts,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Where `verify` takes its boxes from: a property file, or boxes of `radius` around the rows
/// of a CSV (clipped to `domain` = [lo, hi] if given).
#[derive(Clone, Copy, Debug)]
pub struct VerifyBoxes<'a> {
    /// A CEG4N property file.
    pub props: Option<&'a Path>,
    /// Or a labelled CSV of box centres.
    pub points: Option<&'a Path>,
    /// The L-inf radius around `points`.
    pub radius: Option<f64>,
    /// LO,HI to clip the boxes around `points` to.
    pub domain: Option<&'a [f64]>,
}

impl VerifyBoxes<'_> {
    /// The boxes, for a model of `features` inputs.
    pub fn load(&self, features: usize) -> Result<Vec<Property>> {
        use crate::error::Context;
        if let Some(p) = self.props {
            return load_properties(p, features);
        }
        let (Some(points), Some(radius)) = (self.points, self.radius) else {
            bail!("give --props FILE, or --points CSV with --radius R");
        };
        if !(radius.is_finite() && radius >= 0.0) {
            bail!("--radius {radius} must be a non-negative number");
        }
        let domain = match self.domain {
            None => None,
            Some([lo, hi]) if lo <= hi => Some((*lo, *hi)),
            Some(d) => bail!("--domain {d:?} must be LO,HI with LO <= HI"),
        };
        let data = Dataset::load_csv(points, features)?;
        crate::data::boxes_around(&data, radius, domain)
            .with_context(|| points.display().to_string())
    }
}

/// `ceg4n hil`: generates the crate and its test firmware for `board` under `out`, runs it
/// under QEMU (an emulated board, killed after `timeout`) or on the real board through a debug
/// probe (flashed with probe-rs, its report read over RTT until `timeout`), and compares every
/// device output with the host model. `corrupt_weight` (test-only) flips a first-layer weight
/// in the firmware: the comparison must then fail. `kernels` picks the paired layers' row
/// loop.
pub fn hil_on_board(
    source: CrateSource,
    board: &crate::board::Board,
    out: &Path,
    timeout: std::time::Duration,
    corrupt_weight: bool,
    kernels: crate::hil::Kernels,
) -> Result<(crate::hil::Comparison, crate::hil::DeviceRun)> {
    if !crate::hil::Kernels::on(board).contains(&kernels) {
        bail!(
            "--arm-dsp: board {} ({}) has no DSP extension; it needs a thumbv7em core (Cortex-M4, M7)",
            board.name,
            board.core
        );
    }
    // Before anything is written: a real board needs its probe.
    require_runnable(board)?;
    let prepared = prepare_crate(source, None)?;
    let spec = prepared.spec(board);
    let variant = if corrupt_weight {
        crate::hil::FirmwareVariant::CorruptWeight
    } else {
        crate::hil::FirmwareVariant::Check
    };
    crate::hil::run_model(
        &spec,
        out,
        &out.join("target"),
        variant,
        kernels,
        timeout,
        false,
    )
}

/// Fails (a device error) unless `board` can run the test firmware here: QEMU emulates it, or
/// it is a real board with a debug probe attached (results read back over RTT).
pub fn require_runnable(board: &crate::board::Board) -> Result<()> {
    match board.qemu_machine {
        Some(_) => Ok(()),
        None => crate::flash::require_probe(board),
    }
}
