//! `ceg4n bench`: verification and refinement over a suite folder, instructions per inference
//! on emulated boards.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;

use crate::args::{BitsArgs, CrateSourceArgs, RefineArgs, SearchArg, Semantics, SolveArgs};
use crate::refine::refine_options;
use ceg4n::pipeline::prepare_crate;

#[derive(Subcommand)]
pub(crate) enum BenchCommand {
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
        /// A folder of extra board files (the bundled boards are always known).
        #[arg(long)]
        board_dir: Option<PathBuf>,
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

pub(crate) fn bench(command: BenchCommand) -> Result<ExitCode> {
    match command {
        BenchCommand::Hil {
            source,
            boards,
            out,
            board_dir,
            json,
        } => bench_hil(&source, &boards, board_dir.as_deref(), &out, json),
        BenchCommand::Refine {
            suite,
            only,
            searches,
            refine,
            json,
        } => bench_refine(&suite, &only, &searches, &refine, json),
        BenchCommand::Verify {
            suite,
            only,
            quant,
            solve,
            json,
        } => {
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
    }
    .map(|()| ExitCode::SUCCESS)
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
            "{:<30} {:<10} {:>5} {:>6} {:>4} {:>7} {:>9} {:>11} {:>9} {:>11} {:>12} {:>9}",
            "network",
            "bits",
            "boxes",
            "proved",
            "ce",
            "unknown",
            "median_s",
            "proof_med_s",
            "max_s",
            "max_decided",
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
                    "{:<30} {:<10} {:>5} {:>6} {:>4} {:>7} {:>9.4} {:>11} {:>9.3} {:>11} {:>12} {:>9}",
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
                    row.max_decided_seconds
                        .map_or("-".into(), |m| format!("{m:.3}")),
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

fn bench_hil(
    source: &CrateSourceArgs,
    boards: &[String],
    board_dir: Option<&Path>,
    out: &Path,
    as_json: bool,
) -> Result<()> {
    let report = source.load_report()?;
    let bits = source.quant.spec();
    let prepared = prepare_crate(source.source(report.as_ref(), &bits)?, None)?;
    let plugin = ceg4n::hil::build_plugin(&out.join("plugin"))?;
    // The network's shape and bits, e.g. `784-256-256-10 w8,8,8`.
    let net = &prepared.int_net;
    let shape = std::iter::once(net.input_len())
        .chain(net.layers.iter().map(|l| l.outputs))
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("-");
    let weight_bits = net
        .layers
        .iter()
        .map(|l| l.weight_bits.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let shape = format!("{shape} w{weight_bits}");
    if !as_json {
        println!(
            "{:<12} {:<11} {:<22} {:<8} {:>7} {:>12} {:>9} {:>11} {:>9} {:>8} {:>17}  layouts",
            "board",
            "core",
            "shape",
            "kernels",
            "MACs",
            "instr/infer",
            "instr/MAC",
            "model flash",
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
        for &kernels in ceg4n::hil::Kernels::on(&board) {
            let work = out.join(format!("{}-{kernels}", board.name));
            let row = ceg4n::hil::bench_device(&spec, &work, &plugin, kernels)?;
            if !as_json {
                let layouts: Vec<String> = row
                    .layouts
                    .iter()
                    .map(|l| format!("{l:?}").to_lowercase())
                    .collect();
                println!(
                    "{:<12} {:<11} {:<22} {:<8} {:>7} {:>12.1} {:>9.2} {:>11} {:>9} {:>8} {:>17}  {}",
                    row.board,
                    row.core,
                    shape,
                    row.kernels.to_string(),
                    row.macs,
                    row.instructions_per_inference,
                    row.instructions_per_mac,
                    row.model_flash_bytes,
                    row.flash_bytes,
                    row.ram_bytes,
                    format!("{}/{}", row.weight_bytes_elf, row.weight_bytes_generated),
                    layouts.join(",")
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
