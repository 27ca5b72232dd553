//! The `ceg4n` command line: argument definitions, one module per subcommand, printing. Every
//! computation is a library call (`ceg4n::pipeline` and the modules it names).

mod args;
mod bench;
mod eval;
mod generate;
mod inspect;
mod refine;
mod run;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use args::{BitsArgs, CrateSourceArgs, RefineArgs, SearchArg, SolveArgs};
use bench::BenchCommand;

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
        /// A folder of extra board files (the bundled boards are always known).
        #[arg(long, alias = "boards")]
        board_dir: Option<PathBuf>,
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
        /// A folder of extra board files (the bundled boards are always known).
        #[arg(long, alias = "boards")]
        board_dir: Option<PathBuf>,
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
        /// Build with the crate's opt-in `arm-dsp` feature (the paired layers' loop in Arm
        /// assembly; DSP cores such as mps2-an386's Cortex-M4F).
        #[arg(long)]
        arm_dsp: bool,
        /// A folder of extra board files (the bundled boards are always known).
        #[arg(long, alias = "boards")]
        board_dir: Option<PathBuf>,
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
        /// A folder of extra board files (the bundled boards are always known).
        #[arg(long, alias = "boards")]
        board_dir: Option<PathBuf>,
    },
    /// List the boards (one data file per board in boards/).
    #[command(after_help = "Example:\n  ceg4n boards")]
    Boards {
        /// A folder of extra board files (the bundled boards are always known).
        #[arg(long, alias = "boards")]
        board_dir: Option<PathBuf>,
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

fn main() -> ExitCode {
    restore_default_sigpipe();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {message}");
            exit_code_of(&e)
        }
    }
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`ceg4n boards | head`) would panic;
/// the default action ends the process quietly, as Unix tools do.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Exit codes: 0 success, 1 not verified or a device mismatch, 2 bad input, 3 a tool or device
/// failed (cargo, QEMU, a C compiler, a debug probe).
fn exit_code_of(error: &anyhow::Error) -> ExitCode {
    let tool_failed = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ceg4n::Error>(),
            Some(ceg4n::Error::Tool(_) | ceg4n::Error::Device(_))
        )
    });
    ExitCode::from(if tool_failed { 3 } else { 2 })
}

/// Exit code 0 when `ok`, else 1 (not verified, or a device mismatch).
fn success_if(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Inspect { model, json } => inspect::inspect(&model, json),
        Command::Eval {
            model,
            data,
            quant,
            calib,
            json,
        } => eval::eval(&model, &data, &quant, calib.as_deref(), json),
        Command::Bench(command) => bench::bench(command),
        Command::Hil {
            source,
            board,
            out,
            timeout,
            corrupt_weight,
            arm_dsp,
            board_dir,
        } => generate::hil(
            &source,
            &board,
            board_dir.as_deref(),
            &out,
            timeout,
            corrupt_weight,
            if arm_dsp {
                ceg4n::hil::Kernels::ArmDsp
            } else {
                ceg4n::hil::Kernels::Safe
            },
        ),
        Command::Flash {
            board,
            crate_dir,
            board_dir,
        } => generate::flash(&board, board_dir.as_deref(), &crate_dir),
        Command::Boards { board_dir } => generate::boards(board_dir.as_deref()),
        Command::Generate {
            source,
            board,
            out,
            name,
            force,
            no_measure,
            board_dir,
        } => generate::generate(
            &source,
            &board,
            board_dir.as_deref(),
            &out,
            name,
            force,
            !no_measure,
        ),
        Command::Run {
            model,
            props,
            board,
            out,
            quiet,
            refine,
            board_dir,
        } => run::run(
            model,
            props,
            refine,
            &board,
            board_dir.as_deref(),
            &out,
            quiet,
        ),
        Command::Refine {
            model,
            props,
            search,
            refine,
            out,
            quiet,
            json,
        } => refine::refine(&model, props.as_deref(), search, &refine, &out, quiet, json),
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
            let boxes = verify::BoxSource {
                props,
                points,
                radius,
                domain,
            };
            verify::verify(&model, &boxes, &quant, &solve, json)
        }
    }
}
