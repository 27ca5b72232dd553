//! The `ceg4n` command line. It parses arguments, calls the library and formats results; it
//! computes nothing itself.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

use ceg4n::data::DataFile;
use ceg4n::ir::{Activation, InputOp, Network};
use ceg4n::onnx_import::import_path;
use ceg4n::quantize::{
    quantize, Calibration, QuantConfig, DEFAULT_INPUT_BITS, DEFAULT_WEIGHT_BITS,
};
use ceg4n::verify::Decision;

#[derive(Parser)]
#[command(
    name = "ceg4n",
    version,
    about = "Verified quantization of ONNX classifiers into integer-only no_std Rust crates",
    after_help = "Example:\n  ceg4n run                # the bundled model: refine, generate, run on QEMU, report"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole pipeline in one command: refine, generate, run on an emulated board, compare
    /// with the host model, count instructions, and write report.json + report.html. Without
    /// MODEL it uses the bundled iris model, its boxes and test set.
    #[command(
        after_help = "Examples:\n  ceg4n run\n  ceg4n run my_model.onnx --data test.csv --board microbit --out out/my\n  ceg4n run my_model.onnx --props boxes.json --data test.csv"
    )]
    Run {
        /// The ONNX model (default: the bundled models/iris_mlp.onnx).
        model: Option<PathBuf>,
        /// The boxes (default with the bundled model: models/iris_props.json). Optional with
        /// --data: then boxes are made around data rows and written to OUT/boxes.json.
        #[arg(long)]
        props: Option<PathBuf>,
        /// An emulated board (see `ceg4n boards`).
        #[arg(long, default_value = "mps2-an386")]
        board: String,
        /// The output folder (report.json, report.html, crate/, firmware/).
        #[arg(long, default_value = "ceg4n-out/run")]
        out: PathBuf,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        refine: RefineArgs,
        /// The board directory.
        #[arg(long, default_value_os_t = ceg4n::board::default_dir())]
        boards: PathBuf,
    },
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
    /// Find the smallest per-layer bit-widths whose integer network is proved to pick the
    /// float network's class on every box (CEG4N); writes DIR/report.json.
    #[command(
        after_help = "Exit status: 0 verified (every claimed box proved at the reported bits, the fidelity floor met), 1 not verified, 2 bad input.\n\nExamples:\n  ceg4n refine models/digits_mlp.onnx --data models/digits_test.csv --out out/digits\n  ceg4n refine models/iris_mlp.onnx --props models/iris_props.json --data models/iris_test.csv --out out/iris"
    )]
    Refine {
        /// The ONNX model.
        model: PathBuf,
        /// A CEG4N property file (boxes). Optional with --data: then boxes are made around
        /// data rows (--boxes, --radius) and written to OUT/boxes.json.
        #[arg(long, required_unless_present = "data")]
        props: Option<PathBuf>,
        /// Search strategy.
        #[arg(long, value_enum, default_value_t = SearchArg::Default)]
        search: SearchArg,
        #[command(flatten)]
        refine: RefineArgs,
        /// The report folder.
        #[arg(long, default_value = "ceg4n-out")]
        out: PathBuf,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// Print the report JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Generate a standalone no_std crate (integer kernels, weights, test vectors, certificate)
    /// for a refined model and a board.
    #[command(
        after_help = "Examples:\n  ceg4n generate --report out/iris/report.json --board mps2-an386 --out out/iris-crate\n  ceg4n generate models/iris_mlp.onnx --props models/iris_props.json --bits 4 --act-bits 8 --board microbit --out out/iris4"
    )]
    Generate {
        #[command(flatten)]
        source: CrateSourceArgs,
        /// Board name (see `ceg4n boards`).
        #[arg(long)]
        board: String,
        /// Output directory of the crate.
        #[arg(long)]
        out: PathBuf,
        /// Crate name (default: the model's file stem + "-model").
        #[arg(long)]
        name: Option<String>,
        /// Replace an existing directory that ceg4n did not generate.
        #[arg(long)]
        force: bool,
        /// Skip measuring the model's flash and stack on a build for the board's target.
        #[arg(long)]
        no_measure: bool,
        /// The board directory.
        #[arg(long, default_value_os_t = ceg4n::board::default_dir())]
        boards: PathBuf,
    },
    /// Run a model on an emulated board: generate its crate and firmware, build, run under
    /// QEMU, and compare every device output with the host model, bit for bit.
    #[command(
        after_help = "Exit status: 0 every vector bit-exact, 1 a mismatch, 2 bad input.\n\nExample:\n  ceg4n hil --board mps2-an386 --report ceg4n-out/iris/report.json --out ceg4n-out/iris/hil"
    )]
    Hil {
        #[command(flatten)]
        source: CrateSourceArgs,
        /// Board name (see `ceg4n boards`).
        #[arg(long)]
        board: String,
        /// Working directory (crate/, firmware/, target/).
        #[arg(long, default_value = "ceg4n-out/hil")]
        out: PathBuf,
        /// Seconds before the emulated board is killed.
        #[arg(long, default_value_t = 120.0)]
        timeout: f64,
        /// Test-only: flip one first-layer weight in the firmware; the run must then fail.
        #[arg(long)]
        corrupt_weight: bool,
        /// The board directory.
        #[arg(long, default_value_os_t = ceg4n::board::default_dir())]
        boards: PathBuf,
    },
    /// Build a firmware crate (from `ceg4n hil` or your own) and flash it onto a real board
    /// through a debug probe (probe-rs), then reset the board.
    #[command(
        after_help = "Example:\n  ceg4n flash --board nrf52840-dk --crate ceg4n-out/hil/firmware"
    )]
    Flash {
        /// Board name (see `ceg4n boards`; needs a probe_rs_chip).
        #[arg(long)]
        board: String,
        /// The firmware crate directory.
        #[arg(long = "crate")]
        crate_dir: PathBuf,
        /// The board directory.
        #[arg(long, default_value_os_t = ceg4n::board::default_dir())]
        boards: PathBuf,
    },
    /// List the boards (one data file per board in boards/).
    #[command(after_help = "Example:\n  ceg4n boards")]
    Boards {
        /// The board directory.
        #[arg(long, default_value_os_t = ceg4n::board::default_dir())]
        boards: PathBuf,
    },
    /// Benchmarks: verification and refinement over a suite folder laid out like the CEG4N
    /// paper's, and instructions per inference on emulated boards.
    #[command(
        subcommand,
        after_help = "Example:\n  ceg4n bench refine --suite ../shared/benchmarks/ceg4n --only iris,seeds"
    )]
    Bench(BenchCommand),
    /// Prove, box by box, that the integer network picks the float network's class.
    #[command(
        after_help = "Exit status: 0 every box proved, 1 some box not proved, 2 bad input.\n\nExample:\n  ceg4n verify models/iris_mlp.onnx --props models/iris_props.json --bits 4 --act-bits 8"
    )]
    Verify {
        /// The ONNX model.
        model: PathBuf,
        /// A CEG4N property file (boxes).
        #[arg(long, required_unless_present = "points", conflicts_with = "points")]
        props: Option<PathBuf>,
        /// Or: a labelled CSV whose rows are box centres (with --radius).
        #[arg(long, requires = "radius")]
        points: Option<PathBuf>,
        /// L-inf radius of the boxes around --points.
        #[arg(long)]
        radius: Option<f64>,
        /// Clip the boxes around --points to this input domain: LO,HI.
        #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
        domain: Option<Vec<f64>>,
        #[command(flatten)]
        quant: BitsArgs,
        #[command(flatten)]
        solve: SolveArgs,
        /// Print JSON (keys: boxes [id, status, seconds, counterexample], summary).
        #[arg(long)]
        json: bool,
    },
}

/// The refinement search strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SearchArg {
    /// Per-width bisection screened on counterexamples and sampled points.
    Default,
    /// The CEG4N artifact's (1+2) evolutionary search, for comparison.
    Ga,
}

/// Settings of `refine` (and of the refinement inside `run`).
#[derive(clap::Args)]
struct RefineArgs {
    /// A labelled CSV (feature columns, then `label`): it calibrates the activation ranges,
    /// sets the fidelity floor (--min-agreement), and gives float, refined and
    /// uniform-baseline accuracy.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The fidelity floor: the refined integer network must pick the float network's class on
    /// at least this fraction of the --data rows (0..=1).
    #[arg(long, default_value_t = ceg4n::refine::DEFAULT_MIN_AGREEMENT)]
    min_agreement: f64,
    /// Without --props: box this many data rows, stratified by float class [default: 10 per
    /// class, at most 100].
    #[arg(long)]
    boxes: Option<usize>,
    /// Without --props: each box spans this fraction of each feature's range in the data on
    /// either side of its row [default: 0.01].
    #[arg(long)]
    radius: Option<f64>,
    /// Seed of every random choice (same seed, same result).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The whole refinement ends within this many seconds (a proof cut short is unknown),
    /// with the smallest configuration proved by then.
    #[arg(long, default_value_t = 300.0)]
    time_limit: f64,
    /// At most this many rounds.
    #[arg(long, default_value_t = 50)]
    max_rounds: usize,
    /// Always scale hidden-layer weights per output channel (default: the search chooses).
    #[arg(long)]
    per_channel: bool,
    /// One input fixed-point format for all features (default: one per feature).
    #[arg(long)]
    uniform_input: bool,
    #[command(flatten)]
    proof: ProofArgs,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Run a model on emulated boards and count instructions per inference (QEMU TCG plugin),
    /// with flash, RAM and weight bytes read from the firmware ELF.
    #[command(
        after_help = "Example:\n  ceg4n bench hil --report ceg4n-out/iris/report.json --boards microbit,lm3s6965evb,mps2-an386"
    )]
    Hil {
        #[command(flatten)]
        source: CrateSourceArgs,
        /// Emulated boards (comma-separated).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "microbit,lm3s6965evb,mps2-an386,mps2-an500"
        )]
        boards: Vec<String>,
        /// Working directory.
        #[arg(long, default_value = "ceg4n-out/bench-hil")]
        out: PathBuf,
        /// The board directory.
        #[arg(long, default_value_os_t = ceg4n::board::default_dir())]
        board_dir: PathBuf,
        /// Print JSON (a list of per-board rows).
        #[arg(long)]
        json: bool,
    },
    /// Refine every network of a suite with each strategy; per network: bits found, weight
    /// storage vs the artifact's bits, boxes proved, rounds, verifier calls, seconds, accuracy.
    #[command(
        after_help = "Example:\n  ceg4n bench refine --suite ../shared/benchmarks/ceg4n --only iris,seeds"
    )]
    Refine {
        /// The suite folder (networks/, properties/, datasets/, README.md).
        #[arg(long)]
        suite: PathBuf,
        /// Only networks whose name contains one of these (comma-separated).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Strategies to run (comma-separated).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "default,ga")]
        searches: Vec<SearchArg>,
        #[command(flatten)]
        refine: RefineArgs,
        /// Print JSON (a list of per-network rows).
        #[arg(long)]
        json: bool,
    },
    /// Verify every box of every network; per network: proved/counterexample/unknown, median
    /// and max seconds, and the speed-up over the paper artifact's median (suite README).
    #[command(
        after_help = "Examples:\n  ceg4n bench verify --suite ../shared/benchmarks/ceg4n --only iris,seeds --bits 4\n  ceg4n bench verify --suite ../shared/benchmarks/ceg4n --only iris,seeds --semantics paper"
    )]
    Verify {
        /// The suite folder (networks/, properties/, README.md).
        #[arg(long)]
        suite: PathBuf,
        /// Only networks whose name contains one of these (comma-separated).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Bit-widths (without --bits: 8, or the artifact's bits under paper semantics).
        #[command(flatten)]
        quant: BitsArgs,
        #[command(flatten)]
        solve: SolveArgs,
        /// Print JSON (a list of per-network rows).
        #[arg(long)]
        json: bool,
    },
}

/// How each box is proved, shared by every command that verifies.
#[derive(clap::Args)]
struct ProofArgs {
    /// Seconds allowed per box.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Boxes verified in parallel (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Classes are the smallest score (advisory networks such as ACAS Xu).
    #[arg(long)]
    argmin: bool,
}

impl ProofArgs {
    /// Top-1 options.
    fn options(&self) -> Result<ceg4n::verify::VerifyOptions> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            bail!(
                "--timeout {} must be a positive number of seconds",
                self.timeout
            );
        }
        Ok(ceg4n::verify::VerifyOptions {
            decision: if self.argmin {
                Decision::ArgMin
            } else {
                Decision::ArgMax
            },
            timeout: std::time::Duration::from_secs_f64(self.timeout),
            ..Default::default()
        })
    }

    fn jobs(&self) -> usize {
        self.jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// How boxes are decided, shared by `verify` and `bench verify`.
#[derive(clap::Args)]
struct SolveArgs {
    #[command(flatten)]
    proof: ProofArgs,
    /// integer: the runtime's integer network (the product); paper: the CEG4N artifact's fake
    /// quantization (rounded weights, float activations), for comparison.
    #[arg(long, value_enum, default_value_t = Semantics::Integer)]
    semantics: Semantics,
    /// Prove epsilon-equivalence instead of top-1: every dequantized logit within E of the
    /// float one.
    #[arg(long, allow_negative_numbers = true)]
    epsilon: Option<f64>,
}

impl SolveArgs {
    fn options(&self) -> Result<ceg4n::verify::VerifyOptions> {
        let equivalence = match self.epsilon {
            None => ceg4n::verify::Equivalence::Top1,
            Some(e) if e.is_finite() && e >= 0.0 => ceg4n::verify::Equivalence::Epsilon(e),
            Some(e) => bail!("--epsilon {e} must be a non-negative number"),
        };
        Ok(ceg4n::verify::VerifyOptions {
            equivalence,
            ..self.proof.options()?
        })
    }

    fn jobs(&self) -> usize {
        self.proof.jobs()
    }
}

/// What the float network is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Semantics {
    /// ceg4n-runtime's integer network.
    Integer,
    /// The paper artifact's fake quantization.
    Paper,
}

/// What a crate is generated from: a refine report, or a model at explicit bits.
#[derive(clap::Args)]
struct CrateSourceArgs {
    /// A refine report: its reported bits, with its proof results as the certificate.
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    report: Option<PathBuf>,
    /// Or: an ONNX model with explicit --bits (no proof; the certificate says so).
    model: Option<PathBuf>,
    /// The boxes that calibrate activation ranges (with MODEL).
    #[arg(long, requires = "model")]
    props: Option<PathBuf>,
    #[command(flatten)]
    quant: BitsArgs,
}

impl CrateSourceArgs {
    fn source(&self) -> CrateSource<'_> {
        CrateSource {
            report: self.report.as_deref(),
            model: self.model.as_deref(),
            props: self.props.as_deref(),
            quant: &self.quant,
        }
    }
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
        Command::Bench(BenchCommand::Hil {
            source,
            boards,
            out,
            board_dir,
            json,
        }) => {
            let source = source.source();
            bench_hil(&source, &boards, &board_dir, &out, json)
        }
        Command::Bench(BenchCommand::Refine {
            suite,
            only,
            searches,
            refine,
            json,
        }) => bench_refine(&suite, &only, &searches, &refine, json),
        Command::Bench(BenchCommand::Verify {
            suite,
            only,
            quant,
            solve,
            json,
        }) => {
            let settings = ceg4n::bench::VerifyBench {
                weight_bits: quant.bits,
                act_bits: quant.act_bits,
                input_bits: quant.input_bits,
                per_channel: quant.per_channel,
                uniform_input: quant.uniform_input,
                paper: solve.semantics == Semantics::Paper,
                options: solve.options()?,
                jobs: solve.jobs(),
            };
            bench_verify(&suite, &only, &settings, json)
        }
        Command::Hil {
            source,
            board,
            out,
            timeout,
            corrupt_weight,
            boards,
        } => {
            let board = ceg4n::board::Board::find(&boards, &board)?;
            let source = source.source();
            return hil_command(&source, &board, &out, timeout, corrupt_weight);
        }
        Command::Flash {
            board,
            crate_dir,
            boards,
        } => {
            let board = ceg4n::board::Board::find(&boards, &board)?;
            if board.probe_rs_chip.is_none() {
                bail!(
                    "board {} has no probe_rs_chip in its board file; emulated boards run with `ceg4n hil`",
                    board.name
                );
            }
            // Fail fast, before a build, when no probe is attached.
            if ceg4n::flash::probes().is_empty() {
                bail!("no debug probe found (connect one, e.g. an ST-Link, J-Link or CMSIS-DAP probe, and check its USB permissions)");
            }
            let elf = ceg4n::hil::build_firmware(&crate_dir, &crate_dir.join("target"), &[])?;
            let probe = ceg4n::flash::flash(&board, &elf)?;
            println!("flashed {} onto {} through {probe}", elf.display(), board.name);
            Ok(())
        }
        Command::Boards { boards } => {
            for b in ceg4n::board::Board::all(&boards)? {
                let how = match (&b.qemu_machine, &b.probe_rs_chip) {
                    (Some(m), _) => format!("QEMU -M {m}"),
                    (None, Some(c)) => format!("probe-rs chip {c}"),
                    (None, None) => "no runner".into(),
                };
                println!(
                    "{:<14} {:<14} {:<22} flash {:>5} KiB  RAM {:>5} KiB  {how}",
                    b.name,
                    b.core,
                    b.target,
                    b.flash_length / 1024,
                    b.ram_length / 1024
                );
            }
            Ok(())
        }
        Command::Generate {
            source,
            board,
            out,
            name,
            force,
            no_measure,
            boards,
        } => {
            let board = ceg4n::board::Board::find(&boards, &board)?;
            let source = source.source();
            let measure_with = (!no_measure).then_some(boards.as_path());
            generate_command(&source, &board, &out, name, force, measure_with)
        }
        Command::Run {
            model,
            props,
            board,
            out,
            quiet,
            mut refine,
            boards,
        } => {
            let bundled = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../models")
                .canonicalize()
                .context("the bundled models/ folder is missing; pass MODEL and --props")?;
            let (model, props) = match (model, props) {
                (None, None) => {
                    if refine.data.is_none() {
                        refine.data = Some(bundled.join("iris_test.csv"));
                    }
                    (
                        bundled.join("iris_mlp.onnx"),
                        Some(bundled.join("iris_props.json")),
                    )
                }
                (Some(m), p) => (m, p),
                (None, Some(_)) => bail!("--props needs MODEL"),
            };
            let board = ceg4n::board::Board::find(&boards, &board)?;
            return run_command(&model, props.as_deref(), &refine, &board, &out, quiet);
        }
        Command::Refine {
            model,
            props,
            search,
            refine,
            out,
            quiet,
            json,
        } => {
            let report = refine_command(&model, props.as_deref(), search, &refine, &out, quiet)?;
            let path = write_reports(&report, &out)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_refine_summary(&report);
                println!("report: {}", path.display());
            }
            return Ok(if report.verified {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Command::Verify {
            model,
            props,
            points,
            radius,
            domain,
            quant,
            solve,
            json,
        } => {
            let boxes = BoxSource {
                props,
                points,
                radius,
                domain,
            };
            return verify_command(&model, &boxes, &quant, &solve, json);
        }
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
            "input_ops": net.input_ops.iter().map(InputOp::name).collect::<Vec<_>>(),
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
        let ops: Vec<&str> = net.input_ops.iter().map(InputOp::name).collect();
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

/// Where `verify` takes its boxes from.
struct BoxSource {
    props: Option<PathBuf>,
    points: Option<PathBuf>,
    radius: Option<f64>,
    domain: Option<Vec<f64>>,
}

impl BoxSource {
    fn load(&self, features: usize) -> Result<Vec<ceg4n::data::Property>> {
        if let Some(p) = &self.props {
            return ceg4n::data::load_properties(p, features);
        }
        let (Some(points), Some(radius)) = (&self.points, self.radius) else {
            bail!("give --props FILE, or --points CSV with --radius R");
        };
        if !(radius.is_finite() && radius >= 0.0) {
            bail!("--radius {radius} must be a non-negative number");
        }
        let domain = match self.domain.as_deref() {
            None => None,
            Some([lo, hi]) if lo <= hi => Some((*lo, *hi)),
            Some(d) => bail!("--domain {d:?} must be LO,HI with LO <= HI"),
        };
        let data = ceg4n::data::Dataset::load_csv(points, features)?;
        ceg4n::data::boxes_around(&data, radius, domain)
            .with_context(|| points.display().to_string())
    }
}

fn verify_command(
    model: &std::path::Path,
    boxes: &BoxSource,
    quant: &BitsArgs,
    solve: &SolveArgs,
    as_json: bool,
) -> Result<ExitCode> {
    use ceg4n::verify::{verify_boxes, Quantized, Status};
    let net = import_path(model)?;
    let props = boxes.load(net.input_len())?;
    let config = match quant.config(&net)? {
        Some(c) => c,
        None => QuantConfig::for_network(
            &net,
            &[DEFAULT_WEIGHT_BITS],
            &quant.act_bits,
            quant.input_bits,
            quant.per_channel,
            quant.uniform_input,
        )?,
    };

    let task = ceg4n::task::Task::new(model, net, props);
    let int_net = task.quantize(&config)?;
    let paper_net = task.paper_network(&config);
    let quantized = match solve.semantics {
        Semantics::Integer => Quantized::Integer(&int_net),
        Semantics::Paper => Quantized::Paper(&paper_net),
    };
    let options = solve.options()?;
    let start = std::time::Instant::now();
    let verdicts = verify_boxes(
        &task.net,
        quantized,
        task.reference.as_ref(),
        &task.props,
        &options,
        solve.jobs(),
    );
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

fn bench_verify(
    suite_dir: &std::path::Path,
    only: &[String],
    settings: &ceg4n::bench::VerifyBench,
    as_json: bool,
) -> Result<()> {
    let suite = ceg4n::suite::Suite::load(suite_dir)?;
    let names = selected_networks(&suite, only)?;
    if !as_json {
        println!(
            "{:<30} {:<10} {:>5} {:>6} {:>4} {:>7} {:>9} {:>11} {:>9} {:>12} {:>9}",
            "network",
            "bits",
            "boxes",
            "proved",
            "ce",
            "unknown",
            "median_s",
            "proof_med_s",
            "max_s",
            "artifact_med",
            "speedup"
        );
    }
    let mut rows = Vec::new();
    for name in names {
        let row = settings.run_network(&suite, name)?;
        if !as_json {
            if let Some(why) = &row.skipped {
                println!("{:<30} skipped: {why}", row.network);
            } else {
                let bits: Vec<String> = row.weight_bits.iter().map(|b| b.to_string()).collect();
                println!(
                    "{:<30} {:<10} {:>5} {:>6} {:>4} {:>7} {:>9.4} {:>11} {:>9.3} {:>12} {:>9}",
                    row.network,
                    bits.join(","),
                    row.boxes,
                    row.proved,
                    row.counterexample,
                    row.unknown,
                    row.median_seconds,
                    row.median_proof_seconds
                        .map_or("-".into(), |m| format!("{m:.4}")),
                    row.max_seconds,
                    row.artifact_median_seconds
                        .map_or("-".into(), |m| format!("{m:.1}")),
                    row.speedup_vs_artifact
                        .map_or("-".into(), |s| format!("{s:.0}x")),
                );
            }
        }
        rows.push(row);
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

/// Progress of a refinement on stderr: one bar per round over its boxes.
struct RefineProgress {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
    quiet: bool,
}

impl ceg4n::refine::Progress for RefineProgress {
    fn round(&self, round: usize, candidate: &QuantConfig, boxes: usize) {
        if self.quiet {
            return;
        }
        let bar = indicatif::ProgressBar::new(boxes as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} boxes {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!(
            "round {round}: weights {:?} activations {:?} input {}",
            candidate.weight_bits, candidate.act_bits, candidate.input_bits
        ));
        let mut slot = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(previous) = slot.replace(bar) {
            previous.finish();
        }
    }

    fn proof(&self, verdict: &ceg4n::verify::BoxVerdict) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            bar.set_message(format!("(last: {} {:?})", verdict.id, verdict.status));
            bar.inc(1);
        }
    }
}

/// The suite's networks whose names contain one of `only` (all when `only` is empty).
fn selected_networks<'a>(
    suite: &'a ceg4n::suite::Suite,
    only: &[String],
) -> Result<Vec<&'a String>> {
    let names: Vec<&String> = suite
        .networks
        .iter()
        .filter(|n| only.is_empty() || only.iter().any(|o| n.contains(o.as_str())))
        .collect();
    if names.is_empty() {
        bail!(
            "{}: no network matches --only {}",
            suite.root.display(),
            only.join(",")
        );
    }
    Ok(names)
}

fn bench_refine(
    suite_dir: &std::path::Path,
    only: &[String],
    searches: &[SearchArg],
    args: &RefineArgs,
    as_json: bool,
) -> Result<()> {
    let suite = ceg4n::suite::Suite::load(suite_dir)?;
    let names = selected_networks(&suite, only)?;
    if !as_json {
        println!(
            "{:<16} {:<7} {:<10} {:<8} {:>3} {:>8} {:>8} {:>9} {:>6} {:>6} {:>8} {:>20} {:>6}",
            "network",
            "search",
            "bits",
            "act",
            "in",
            "storage",
            "artifact",
            "proved",
            "rounds",
            "calls",
            "seconds",
            "acc float/ours/unif",
            "agree"
        );
    }
    let mut rows = Vec::new();
    for name in names {
        for search in searches {
            let options = refine_options(args, *search)?;
            let row = ceg4n::bench::refine_network(&suite, name, &options)?;
            if !as_json {
                let join = |v: &[u32]| {
                    v.iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                println!(
                    "{:<16} {:<7} {:<10} {:<8} {:>3} {:>8} {:>8} {:>9} {:>6} {:>6} {:>8.2} {:>20} {:>6}",
                    row.network,
                    row.search,
                    join(&row.weight_bits),
                    join(&row.activation_bits),
                    row.input_bits,
                    row.weight_storage_bits,
                    row.artifact_weight_storage_bits
                        .map_or("-".into(), |a| a.to_string()),
                    format!(
                        "{}+{}x/{}{}",
                        row.proved,
                        row.excluded,
                        row.boxes,
                        if row.verified { "" } else { "!" }
                    ),
                    row.rounds,
                    row.verifier_calls,
                    row.seconds,
                    row.accuracy.map_or("-".into(), |a| format!(
                        "{:.3}/{:.3}/{:.3}",
                        a.float, a.quantized, a.uniform_baseline
                    )),
                    row.accuracy.map_or("-".into(), |a| format!(
                        "{:.3}{}",
                        a.agreement,
                        if a.floor_met { "" } else { "!" }
                    )),
                );
            }
            rows.push(row);
        }
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

fn refine_options(args: &RefineArgs, search: SearchArg) -> Result<ceg4n::refine::RefineOptions> {
    if !(args.time_limit.is_finite() && args.time_limit > 0.0) {
        bail!(
            "--time-limit {} must be a positive number of seconds",
            args.time_limit
        );
    }
    Ok(ceg4n::refine::RefineOptions {
        search: match search {
            SearchArg::Default => ceg4n::refine::Search::Descent,
            SearchArg::Ga => ceg4n::refine::Search::Genetic,
        },
        seed: args.seed,
        time_limit: std::time::Duration::from_secs_f64(args.time_limit),
        max_rounds: args.max_rounds,
        verify: args.proof.options()?,
        jobs: args.proof.jobs(),
        per_channel: args.per_channel.then_some(true),
        uniform_input: args.uniform_input,
        min_agreement: args.min_agreement,
    })
}

fn refine_command(
    model: &std::path::Path,
    props: Option<&std::path::Path>,
    search: SearchArg,
    args: &RefineArgs,
    out: &std::path::Path,
    quiet: bool,
) -> Result<ceg4n::report::RefineReport> {
    use ceg4n::pipeline::{refine_model, BoxSource, RefineRequest};
    let boxes = match (props, &args.data) {
        (Some(p), _) => {
            if args.boxes.is_some() || args.radius.is_some() {
                bail!("--boxes and --radius make boxes from --data; they do not apply with --props");
            }
            BoxSource::File(p.to_path_buf())
        }
        (None, Some(_)) => BoxSource::FromData(ceg4n::data::DataBoxes {
            count: args.boxes,
            radius: args.radius.unwrap_or(ceg4n::data::DEFAULT_DATA_BOX_RADIUS),
            seed: args.seed,
        }),
        (None, None) => bail!("give --props FILE (the boxes to prove) or --data CSV (boxes are made around its rows)"),
    };
    if args.data.is_none() && !quiet {
        eprintln!("note: without --data nothing but the boxes constrains accuracy; give a labelled CSV to keep the model's accuracy (--min-agreement)");
    }
    let request = RefineRequest {
        model,
        boxes,
        data: args.data.as_deref(),
        options: refine_options(args, search)?,
        out,
    };
    let progress = RefineProgress {
        bar: std::sync::Mutex::new(None),
        quiet,
    };
    let report = refine_model(&request, &progress)?;
    if let Some(bar) = progress
        .bar
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        bar.finish_and_clear();
    }
    Ok(report)
}

/// Writes report.json and report.html into `out`; returns the JSON's path.
fn write_reports(report: &ceg4n::report::RefineReport, out: &std::path::Path) -> Result<PathBuf> {
    let path = report.write(out)?;
    ceg4n::html_report::write(report, out)?;
    Ok(path)
}

fn print_refine_summary(r: &ceg4n::report::RefineReport) {
    match (&r.weight_bits, &r.activation_bits, r.input_bits) {
        (Some(w), Some(a), Some(i)) => println!(
            "{}: weights {w:?} bits, activations {a:?} bits, input {i} bits",
            if r.verified {
                "verified"
            } else {
                "NOT verified"
            }
        ),
        _ => println!("no candidate configuration"),
    }
    if let (Some(storage), Some(paper)) = (r.weight_storage_bits, r.paper_storage_bits) {
        println!(
            "weight storage: {storage} bits (with biases at weight bits: {paper}); float32: {} bits ({:.1}x smaller)",
            r.float32_storage_bits,
            r.float32_storage_bits as f64 / paper.max(1) as f64
        );
    }
    if !r.excluded.is_empty() {
        let crossed: Vec<&str> = r
            .excluded
            .iter()
            .filter(|e| e.witness_class != e.centre_class)
            .map(|e| e.id.as_str())
            .collect();
        let finer: Vec<&str> = r
            .excluded
            .iter()
            .filter(|e| e.witness_class == e.centre_class)
            .map(|e| e.id.as_str())
            .collect();
        if !crossed.is_empty() {
            println!(
                "excluded {} box(es) the float decision boundary crosses (no quantized network can be equivalent there): {}",
                crossed.len(),
                crossed.join(", ")
            );
        }
        if !finer.is_empty() {
            println!(
                "excluded {} box(es) where even 16-bit integer networks disagree with the float one (margin below 16-bit resolution): {}",
                finer.len(),
                finer.join(", ")
            );
        }
    }
    println!(
        "boxes: {}/{} proved{}; {} rounds, {} verifier calls, {} counterexamples, {} candidates screened, {:.1} s ({})",
        r.proved,
        r.boxes.len(),
        if r.unproved.is_empty() {
            String::new()
        } else if r.verified {
            format!(
                " (undecided within the time-out, not claimed: {})",
                r.unproved.join(", ")
            )
        } else {
            format!(" (not proved: {})", r.unproved.join(", "))
        },
        r.rounds,
        r.verifier_calls,
        r.counterexamples.len(),
        r.screened,
        r.seconds,
        r.stop_reason
    );
    if let Some(a) = &r.accuracy {
        println!(
            "test accuracy: float {:.4}, ceg4n {:.4}, uniform {}-bit baseline {:.4}",
            a.float, a.quantized, a.uniform_bits, a.uniform_baseline
        );
        println!(
            "agreement with the float network: {:.4} of {} rows (floor {}: {})",
            a.agreement,
            a.rows,
            a.min_agreement,
            if a.floor_met { "met" } else { "NOT met" }
        );
    }
    if !r.rows_set_aside.is_empty() {
        let rows: Vec<String> = r.rows_set_aside.iter().map(|s| s.row.to_string()).collect();
        println!(
            "rows set aside ({}; not counted by the floor): {}",
            ceg4n::refine::SET_ASIDE_REASON,
            rows.join(", ")
        );
    }
}

/// Where a crate's network and certificate come from: a refine report, or a model with bits.
struct CrateSource<'a> {
    report: Option<&'a std::path::Path>,
    model: Option<&'a std::path::Path>,
    props: Option<&'a std::path::Path>,
    quant: &'a BitsArgs,
}

/// Everything a crate is generated from.
struct Prepared {
    int_net: ceg4n::int_model::IntNetwork,
    name: String,
    certificate: ceg4n::codegen::Certificate,
    vectors: Vec<ceg4n::codegen::Vector>,
}

impl Prepared {
    fn spec<'a>(&'a self, board: &'a ceg4n::board::Board) -> ceg4n::codegen::CrateSpec<'a> {
        ceg4n::codegen::CrateSpec {
            name: self.name.clone(),
            net: &self.int_net,
            board,
            certificate: self.certificate.clone(),
            vectors: self.vectors.clone(),
        }
    }
}

fn prepare_crate(source: &CrateSource, name: Option<String>) -> Result<Prepared> {
    use ceg4n::codegen::{vectors, Certificate, CertifiedBox};
    let (task, config, certificate, extra) = match (source.report, source.model) {
        (Some(path), _) => {
            let report = ceg4n::report::RefineReport::load(path)?;
            let Some(config) = report.config() else {
                bail!(
                    "{}: the report has no configuration to generate",
                    path.display()
                );
            };
            let net = import_path(&report.model)?;
            let sha = ceg4n::report::sha256_file(&report.model)?;
            if sha != report.model_sha256 {
                bail!(
                    "{}: the model file changed since the report was written (SHA-256 differs); refine again",
                    report.model.display()
                );
            }
            let props = ceg4n::data::load_properties(&report.props, net.input_len())?;
            // The calibration the network was verified with (boxes and data rows).
            let task = match &report.calibration {
                Some(cal) => ceg4n::task::Task::with_calibration(
                    &report.model,
                    net,
                    props,
                    None,
                    cal.clone(),
                ),
                None => ceg4n::task::Task::new(&report.model, net, props),
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
                status: ceg4n::codegen::CertifiedStatus::Excluded,
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
                fidelity: report.accuracy.map(|accuracy| ceg4n::codegen::Fidelity {
                    data: report.data.as_deref().map_or("-".into(), file_name),
                    accuracy,
                }),
            };
            (task, config, certificate, extra)
        }
        (None, Some(model)) => {
            let Some(props) = source.props else {
                bail!("--props is required with MODEL: the boxes calibrate the activation ranges");
            };
            let net = import_path(model)?;
            let Some(config) = source.quant.config(&net)? else {
                bail!("--bits is required with MODEL (or pass --report from `ceg4n refine`)");
            };
            let props = ceg4n::data::load_properties(props, net.input_len())?;
            let task = ceg4n::task::Task::new(model, net, props);
            let certificate = Certificate {
                model: file_name(model),
                model_sha256: ceg4n::report::sha256_file(model)?,
                verified: false,
                boxes: task
                    .props
                    .iter()
                    .map(|p| CertifiedBox {
                        id: p.id.clone(),
                        status: ceg4n::codegen::CertifiedStatus::NotVerified,
                    })
                    .collect(),
                tool_version: env!("CARGO_PKG_VERSION").into(),
                fidelity: None,
            };
            (task, config, certificate, Vec::new())
        }
        (None, None) => bail!("give --report REPORT.json or MODEL.onnx with --bits"),
    };
    let int_net = task.quantize(&config)?;
    let stem = task
        .model_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model")
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let name = name.unwrap_or_else(|| format!("{stem}-model"));
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        bail!("--name {name}: a crate name is letters, digits, '-' and '_', not starting with a digit");
    }
    let vectors = vectors(&int_net, &task.props, &extra, 0xC0DE);
    Ok(Prepared {
        int_net,
        name,
        certificate,
        vectors,
    })
}

fn generate_command(
    source: &CrateSource,
    board: &ceg4n::board::Board,
    out: &std::path::Path,
    name: Option<String>,
    force: bool,
    measure_with: Option<&std::path::Path>,
) -> Result<()> {
    let prepared = prepare_crate(source, name)?;
    let spec = prepared.spec(board);
    let memory = spec.memory();
    spec.write(out, force)?;
    println!(
        "generated {} for {} ({}): {} vectors; flash: weights {} B + parameters {} B; RAM: buffers {} B",
        out.display(),
        board.name,
        board.target,
        spec.vectors.len(),
        memory.weight_bytes,
        memory.parameter_bytes,
        memory.buffer_bytes
    );
    // With the boards directory: measure (an emulated board of the target may come from it).
    if let Some(boards) = measure_with {
        measure_command(&spec, boards);
    }
    Ok(())
}

/// Measures the generated model's flash and stack on a build for the board's target (the
/// stack under QEMU on an emulated board of the same target) and prints them next to the
/// computed figures. Never fails the generation: without a toolchain or QEMU it says why.
fn measure_command(spec: &ceg4n::codegen::CrateSpec, boards: &std::path::Path) {
    let board = spec.board;
    let measured = (|| -> Result<ceg4n::hil::MeasuredMemory> {
        let emulated = match board.qemu_machine {
            Some(_) => Some(board.clone()),
            None => ceg4n::board::Board::all(boards)?
                .into_iter()
                .find(|b| b.target == board.target && b.qemu_machine.is_some()),
        };
        let work = tempfile::tempdir()?;
        ceg4n::hil::measure_memory(
            spec,
            emulated.as_ref(),
            work.path(),
            &std::env::temp_dir().join("ceg4n-firmware-target"),
            std::time::Duration::from_secs(60),
        )
    })();
    match measured {
        Ok(m) => println!("{}", measured_memory_line(&m)),
        Err(e) => println!("memory not measured (--no-measure skips this): {e:#}"),
    }
}

/// One line of measured model memory.
fn measured_memory_line(m: &ceg4n::hil::MeasuredMemory) -> String {
    let stack = match (m.stack_bytes, &m.stack_board, &m.stack_skipped) {
        (Some(bytes), Some(board), _) => {
            format!("stack {bytes} B (painted, one inference on {board} under QEMU)")
        }
        (_, _, Some(why)) => format!("stack not measured: {why}"),
        _ => "stack not measured".into(),
    };
    format!(
        "measured on a {} build: model flash {} B (code, weights and parameters), static RAM {} B, {stack}",
        m.target, m.model_flash_bytes, m.model_static_ram_bytes
    )
}

/// Generates the crate and its firmware under `out`, runs it under QEMU and compares every
/// output with the host model.
fn hil_command(
    source: &CrateSource,
    board: &ceg4n::board::Board,
    out: &std::path::Path,
    timeout: f64,
    corrupt_weight: bool,
) -> Result<ExitCode> {
    if board.qemu_machine.is_none() {
        bail!(
            "board {} is a real board ({}): flash it with `ceg4n flash`; reading device results back over RTT is not implemented yet; emulated boards: see `ceg4n boards`",
            board.name,
            board.probe_rs_chip.as_deref().unwrap_or("no probe-rs chip")
        );
    }
    let prepared = prepare_crate(source, None)?;
    let spec = prepared.spec(board);
    let features: &[&str] = if corrupt_weight {
        &["corrupt-weight"]
    } else {
        &[]
    };
    let (comparison, run) = ceg4n::hil::run_model(
        &spec,
        out,
        &out.join("target"),
        features,
        std::time::Duration::from_secs_f64(timeout),
        false,
    )?;
    for m in comparison.mismatches.iter().take(10) {
        println!("mismatch: {m}");
    }
    if comparison.mismatches.len() > 10 {
        println!("... and {} more", comparison.mismatches.len() - 10);
    }
    if run.timed_out {
        println!("the firmware did not finish within {timeout} s (killed)");
    }
    println!(
        "{}/{} vectors bit-exact on {} ({}, QEMU {}), {:.1} s",
        comparison.bit_exact,
        comparison.total,
        board.name,
        board.core,
        board.qemu_machine.as_deref().unwrap_or("-"),
        run.seconds
    );
    Ok(if comparison.passed() && run.exit_code == Some(0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `ceg4n run`: refine, generate, run on QEMU, count instructions, report.
fn run_command(
    model: &std::path::Path,
    props: Option<&std::path::Path>,
    args: &RefineArgs,
    board: &ceg4n::board::Board,
    out: &std::path::Path,
    quiet: bool,
) -> Result<ExitCode> {
    if board.qemu_machine.is_none() {
        bail!(
            "board {} is not emulated; `ceg4n run` runs on a QEMU board (see `ceg4n boards`)",
            board.name
        );
    }
    let step = |what: &str| {
        if !quiet {
            eprintln!("== {what}");
        }
    };
    step("refine: search bit-widths and prove every box");
    let mut report = refine_command(model, props, SearchArg::Default, args, out, quiet)?;
    let report_path = report.write(out)?;
    if report.config().is_none() {
        write_reports(&report, out)?;
        print_refine_summary(&report);
        bail!("no configuration to generate: {}", report.stop_reason);
    }
    step(&format!(
        "generate the crate for {} and run it under QEMU",
        board.name
    ));
    let quant = BitsArgs {
        bits: None,
        act_bits: vec![8],
        input_bits: DEFAULT_INPUT_BITS,
        per_channel: false,
        uniform_input: false,
    };
    let source = CrateSource {
        report: Some(&report_path),
        model: None,
        props: None,
        quant: &quant,
    };
    let prepared = prepare_crate(&source, None)?;
    let spec = prepared.spec(board);
    let (comparison, run) = ceg4n::hil::run_model(
        &spec,
        out,
        &out.join("target"),
        &[],
        std::time::Duration::from_secs(300),
        false,
    )?;
    step("count instructions per inference (QEMU plugin)");
    let bench = ceg4n::hil::build_plugin(&out.join("plugin"))
        .and_then(|plugin| ceg4n::hil::bench_device(&spec, &out.join("bench"), &plugin));
    if let Err(e) = &bench {
        eprintln!("instruction count skipped: {e:#}");
    }
    let bench = bench.ok();
    step("measure the model's flash and stack on the device build");
    let measured = ceg4n::hil::measure_memory(
        &spec,
        Some(board),
        &out.join("memory"),
        &out.join("target"),
        std::time::Duration::from_secs(60),
    );
    if let Err(e) = &measured {
        eprintln!("memory measurement skipped: {e:#}");
    }
    let measured = measured.ok();
    let memory = spec.memory();
    report.device = Some(ceg4n::report::DeviceSummary {
        measured_model_flash_bytes: measured.as_ref().map(|m| m.model_flash_bytes),
        measured_stack_bytes: measured.as_ref().and_then(|m| m.stack_bytes),
        board: board.name.clone(),
        core: board.core.clone(),
        bit_exact: comparison.bit_exact,
        vectors: comparison.total,
        instructions_per_inference: bench.as_ref().map(|b| b.instructions_per_inference),
        instructions_per_mac: bench.as_ref().map(|b| b.instructions_per_mac),
        flash_bytes: bench.as_ref().map(|b| b.flash_bytes),
        ram_bytes: bench.as_ref().map(|b| b.ram_bytes),
        model_flash_bytes: memory.weight_bytes + memory.parameter_bytes,
        model_ram_bytes: memory.buffer_bytes,
    });
    let json = write_reports(&report, out)?;
    println!();
    print_refine_summary(&report);
    println!(
        "model memory: {} B flash (weights {} + parameters {}), {} B RAM buffers{}",
        memory.weight_bytes + memory.parameter_bytes,
        memory.weight_bytes,
        memory.parameter_bytes,
        memory.buffer_bytes,
        bench.as_ref().map_or(String::new(), |b| format!(
            "; test firmware {} B flash, {} B static RAM",
            b.flash_bytes, b.ram_bytes
        ))
    );
    if let Some(m) = &measured {
        println!("{}", measured_memory_line(m));
    }
    if let Some(b) = &bench {
        println!(
            "instructions per inference on {}: {:.0} ({:.2} per MAC, QEMU count)",
            board.name, b.instructions_per_inference, b.instructions_per_mac
        );
    }
    for m in comparison.mismatches.iter().take(10) {
        println!("mismatch: {m}");
    }
    println!(
        "report: {} and {}",
        json.display(),
        out.join("report.html").display()
    );
    let exact = comparison.passed() && run.exit_code == Some(0);
    println!(
        "{}/{} device outputs {} on {} ({}, QEMU)",
        comparison.bit_exact,
        comparison.total,
        if exact { "bit-exact" } else { "MISMATCHED" },
        board.name,
        board.core
    );
    Ok(if exact && report.verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn bench_hil(
    source: &CrateSource,
    boards: &[String],
    board_dir: &std::path::Path,
    out: &std::path::Path,
    as_json: bool,
) -> Result<()> {
    let prepared = prepare_crate(source, None)?;
    let plugin = ceg4n::hil::build_plugin(&out.join("plugin"))?;
    if !as_json {
        println!(
            "{:<12} {:<13} {:>6} {:>12} {:>9} {:>9} {:>8} {:>17}",
            "board",
            "core",
            "MACs",
            "instr/infer",
            "instr/MAC",
            "flash B",
            "RAM B",
            "weights ELF/gen B"
        );
    }
    let mut rows = Vec::new();
    for name in boards {
        let board = ceg4n::board::Board::find(board_dir, name)?;
        if board.qemu_machine.is_none() {
            bail!("board {name} is not emulated; bench hil runs on QEMU boards only");
        }
        let spec = prepared.spec(&board);
        let row = ceg4n::hil::bench_device(&spec, &out.join(&board.name), &plugin)?;
        if !as_json {
            println!(
                "{:<12} {:<13} {:>6} {:>12.1} {:>9.2} {:>9} {:>8} {:>17}",
                row.board,
                row.core,
                row.macs,
                row.instructions_per_inference,
                row.instructions_per_mac,
                row.flash_bytes,
                row.ram_bytes,
                format!("{}/{}", row.weight_bytes_elf, row.weight_bytes_generated)
            );
        }
        rows.push(row);
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
