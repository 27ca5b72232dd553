//! The `ceg4n` command line. It parses arguments, calls the library and formats results; it
//! computes nothing itself.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

use ceg4n::data::DataFile;
use ceg4n::ir::{Activation, Network};
use ceg4n::onnx_import::import_path;
use ceg4n::quantize::{quantize, Calibration, QuantConfig, DEFAULT_INPUT_BITS};

#[derive(Parser)]
#[command(
    name = "ceg4n",
    version,
    about = "Verified quantization of ONNX classifiers into integer-only no_std Rust crates",
    after_help = "Example:\n  ceg4n inspect models/iris_mlp.onnx"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model's inputs, outputs and layers.
    #[command(after_help = "Example:\n  ceg4n inspect models/iris_mlp.onnx --json")]
    Inspect {
        /// The ONNX model.
        model: PathBuf,
        /// Print JSON (keys: inputs, outputs, layers, params).
        #[arg(long)]
        json: bool,
    },
    /// Accuracy of the float model and, given bit-widths, of its integer quantization.
    #[command(
        after_help = "Example:\n  ceg4n eval models/iris_mlp.onnx --data models/iris_test.csv --bits 8 --act-bits 8"
    )]
    Eval {
        /// The ONNX model.
        model: PathBuf,
        /// A labelled CSV (feature columns, then `label`) or a CEG4N property JSON.
        #[arg(long)]
        data: PathBuf,
        #[command(flatten)]
        quant: BitsArgs,
        /// Calibrate activation ranges on this CSV/property file instead of --data.
        #[arg(long)]
        calib: Option<PathBuf>,
        /// Print JSON (keys: rows, float_accuracy, quantized_accuracy, max_abs_diff_vs_reference).
        #[arg(long)]
        json: bool,
    },
    /// Prove, box by box, that the integer network picks the float network's class.
    #[command(
        after_help = "Exit status: 0 every box proved, 1 some box not proved, 2 bad input.\n\nExample:\n  ceg4n verify models/iris_mlp.onnx --props models/iris_props.json --bits 4 --act-bits 8"
    )]
    Verify {
        /// The ONNX model.
        model: PathBuf,
        /// A CEG4N property file (boxes).
        #[arg(long)]
        props: PathBuf,
        #[command(flatten)]
        quant: BitsArgs,
        /// Seconds allowed per box.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
        /// Print JSON (keys: boxes [id, status, seconds, counterexample], summary).
        #[arg(long)]
        json: bool,
    },
}

/// Bit-width options shared by the commands that quantize.
#[derive(clap::Args)]
struct BitsArgs {
    /// Weight bits: one value for every layer or one per layer (W1,W2,..), 2..=16.
    #[arg(long, value_delimiter = ',')]
    bits: Option<Vec<u32>>,
    /// Activation bits of the hidden layers: one value or one per hidden layer, 2..=16.
    #[arg(long, value_delimiter = ',', default_value = "8")]
    act_bits: Vec<u32>,
    /// Input fixed-point width in bits, 2..=16.
    #[arg(long, default_value_t = DEFAULT_INPUT_BITS)]
    input_bits: u32,
    /// Scale hidden-layer weights per output channel.
    #[arg(long)]
    per_channel: bool,
    /// One input fixed-point format for all features (default: one per feature).
    #[arg(long)]
    uniform_input: bool,
}

impl BitsArgs {
    fn config(&self, net: &Network) -> Result<Option<QuantConfig>> {
        self.bits
            .as_ref()
            .map(|b| {
                QuantConfig::for_network(
                    net,
                    b,
                    &self.act_bits,
                    self.input_bits,
                    self.per_channel,
                    self.uniform_input,
                )
            })
            .transpose()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Inspect { model, json } => inspect(&model, json),
        Command::Eval {
            model,
            data,
            quant,
            calib,
            json,
        } => {
            let net = import_path(&model)?;
            let config = quant.config(&net)?;
            eval(&net, &data, config.as_ref(), calib.as_ref(), json)
        }
        Command::Verify {
            model,
            props,
            quant,
            timeout,
            json,
        } => return verify_command(&model, &props, &quant, timeout, json),
    }
    .map(|()| ExitCode::SUCCESS)
}

fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::None => "none",
        Activation::Relu => "relu",
    }
}

fn inspect(model: &std::path::Path, as_json: bool) -> Result<()> {
    let net = import_path(model)?;
    let shape = |s: &[Option<usize>]| -> Vec<serde_json::Value> {
        s.iter()
            .map(|d| d.map_or(json!("?"), |n| json!(n)))
            .collect()
    };
    if as_json {
        let out = json!({
            "inputs": [{"name": net.input.name, "shape": shape(&net.input.shape), "features": net.input_len()}],
            "outputs": net.outputs.iter().map(|o| json!({"name": o.name, "shape": shape(&o.shape)})).collect::<Vec<_>>(),
            "input_ops": net.input_ops.iter().map(|op| format!("{op:?}").split('(').next().unwrap_or("").to_string()).collect::<Vec<_>>(),
            "layers": net.layers.iter().map(|l| json!({
                "kind": "dense", "in": l.inputs(), "out": l.outputs(), "activation": activation_name(l.activation)
            })).collect::<Vec<_>>(),
            "head": net.head,
            "params": net.param_count(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let dims = |s: &[Option<usize>]| {
        s.iter()
            .map(|d| d.map_or("?".to_string(), |n| n.to_string()))
            .collect::<Vec<_>>()
            .join("x")
    };
    println!("model   {}", model.display());
    println!(
        "input   {} [{}] ({} features)",
        net.input.name,
        dims(&net.input.shape),
        net.input_len()
    );
    for o in &net.outputs {
        println!("output  {} [{}]", o.name, dims(&o.shape));
    }
    if !net.input_ops.is_empty() {
        let ops: Vec<String> = net
            .input_ops
            .iter()
            .map(|op| {
                format!("{op:?}")
                    .split('(')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        println!("input ops  {}", ops.join(" -> "));
    }
    for (i, l) in net.layers.iter().enumerate() {
        println!(
            "layer {i}  dense {:>4} -> {:<4} {}",
            l.inputs(),
            l.outputs(),
            activation_name(l.activation)
        );
    }
    if let Some(h) = net.head {
        println!("head    {h:?}");
    }
    println!("params  {}", net.param_count());
    Ok(())
}

struct Rows {
    inputs: Vec<Vec<f64>>,
    labels: Vec<usize>,
    reference: Option<Vec<Vec<f64>>>,
}

fn eval(
    net: &Network,
    data_path: &std::path::Path,
    config: Option<&QuantConfig>,
    calib_path: Option<&PathBuf>,
    as_json: bool,
) -> Result<()> {
    let features = net.input_len();
    let data = DataFile::load(data_path, features)?;
    let rows = match &data {
        DataFile::Csv(d) => Rows {
            inputs: d.features.clone(),
            labels: d.labels.clone(),
            reference: None,
        },
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
            Rows {
                inputs: props.iter().map(|p| p.x.clone()).collect(),
                labels: reference.iter().map(|y| ceg4n_runtime::argmax(y)).collect(),
                reference: Some(reference),
            }
        }
    };
    let n = rows.inputs.len() as f64;
    let float_correct = rows
        .inputs
        .iter()
        .zip(&rows.labels)
        .filter(|(x, label)| net.classify(x) == **label)
        .count();
    let max_diff = rows.reference.as_ref().map(|refs| {
        rows.inputs
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
    let quantized = match config {
        None => None,
        Some(config) => {
            let calibration = match calib_path {
                Some(p) => calibration_of(net, &DataFile::load(p, features)?),
                None => calibration_of(net, &data),
            };
            let int_net = quantize(net, config, &calibration)?;
            let correct = rows
                .inputs
                .iter()
                .zip(&rows.labels)
                .filter(|(x, label)| int_net.classify(x) == **label)
                .count();
            let agree = rows
                .inputs
                .iter()
                .filter(|x| int_net.classify(x) == net.classify(x))
                .count();
            Some((int_net, correct as f64 / n, agree as f64 / n))
        }
    };
    let float_accuracy = float_correct as f64 / n;
    if as_json {
        let out = json!({
            "rows": rows.inputs.len(),
            "float_accuracy": float_accuracy,
            "quantized_accuracy": quantized.as_ref().map(|q| q.1),
            "max_abs_diff_vs_reference": max_diff,
            "quantized_agreement_with_float": quantized.as_ref().map(|q| q.2),
            "quantization": quantized.as_ref().map(|(int_net, ..)| json!({
                "weight_bits": config.map(|c| c.weight_bits.clone()),
                "act_bits": config.map(|c| c.act_bits.clone()),
                "input": int_net.input,
                "layers": int_net.layers,
            })),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("rows                 {}", rows.inputs.len());
    println!("float accuracy       {float_accuracy:.4}");
    if let Some((int_net, acc, agree)) = &quantized {
        let c = config.expect("quantized only with a config");
        println!(
            "quantized accuracy   {acc:.4}  (weights {:?} bits, activations {:?} bits, input {} bits with fractional bits {:?})",
            c.weight_bits, c.act_bits, int_net.input.bits, int_net.input.frac_bits
        );
        println!("same class as float  {agree:.4}");
    }
    if let Some(d) = max_diff {
        println!("max |float - y|      {d:.3e}");
    }
    Ok(())
}

/// Activation ranges for quantization: interval bounds over property boxes (sound inside
/// them), or the largest values seen on CSV rows.
fn calibration_of(net: &Network, data: &DataFile) -> Calibration {
    match data {
        DataFile::Csv(d) => Calibration::from_points(net, &d.features),
        DataFile::Properties(props) => Calibration::from_boxes(net, props),
    }
}

fn verify_command(
    model: &std::path::Path,
    props_path: &std::path::Path,
    quant: &BitsArgs,
    timeout: f64,
    as_json: bool,
) -> Result<ExitCode> {
    use ceg4n::verify::{verify_box, Status, VerifyOptions};
    let net = import_path(model)?;
    let props = ceg4n::data::load_properties(props_path, net.input_len())?;
    let config = match quant.config(&net)? {
        Some(c) => c,
        None => QuantConfig::for_network(
            &net,
            &[8],
            &quant.act_bits,
            quant.input_bits,
            quant.per_channel,
            quant.uniform_input,
        )?,
    };
    if !(timeout.is_finite() && timeout > 0.0) {
        bail!("--timeout {timeout} must be a positive number of seconds");
    }
    let int_net = quantize(&net, &config, &Calibration::from_boxes(&net, &props))?;
    let reference = ceg4n::tract_reference::TractReference::load(model, &net).ok();
    let options = VerifyOptions {
        timeout: std::time::Duration::from_secs_f64(timeout),
        ..VerifyOptions::default()
    };
    let start = std::time::Instant::now();
    let verdicts: Vec<_> = props
        .iter()
        .map(|p| verify_box(&net, &int_net, reference.as_ref(), p, &options))
        .collect();
    let count = |s: Status| verdicts.iter().filter(|v| v.status == s).count();
    let (proved, ces, unknown) = (
        count(Status::Proved),
        count(Status::Counterexample),
        count(Status::Unknown),
    );
    let seconds = start.elapsed().as_secs_f64();
    if as_json {
        let out = json!({
            "boxes": verdicts,
            "summary": {"proved": proved, "counterexample": ces, "unknown": unknown, "seconds": seconds},
            "weight_bits": config.weight_bits,
            "act_bits": config.act_bits,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for v in &verdicts {
            let status = match v.status {
                Status::Proved => "proved".to_string(),
                Status::Counterexample => {
                    let ce = v
                        .counterexample
                        .as_ref()
                        .expect("counterexample status carries one");
                    format!(
                        "counterexample (float class {}, integer class {}{}) at {:?}",
                        ce.float_class,
                        ce.quantized_class,
                        if ce.reproduces_in_f32 {
                            ""
                        } else {
                            ", not reproducible at f32 precision"
                        },
                        ce.input
                    )
                }
                Status::Unknown => format!("unknown ({})", v.reason.as_deref().unwrap_or("")),
            };
            println!("box {:<8} {:>8.3}s  {status}", v.id, v.seconds);
        }
        println!(
            "{proved}/{} proved, {ces} counterexample(s), {unknown} unknown in {seconds:.2}s (weights {:?} bits, activations {:?} bits)",
            verdicts.len(),
            config.weight_bits,
            config.act_bits
        );
    }
    Ok(if proved == verdicts.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
