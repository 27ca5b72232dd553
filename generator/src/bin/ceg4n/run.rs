//! `ceg4n run`: refine, generate, run on an emulated board, compare, count, report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::args::{RefineArgs, SearchArg};
use crate::generate::measured_memory_line;
use crate::refine::{print_refine_summary, refine_report, write_reports};
use ceg4n::board::Board;

pub(crate) fn run(
    model: Option<PathBuf>,
    props: Option<PathBuf>,
    mut refine: RefineArgs,
    board: &str,
    board_dir: Option<&Path>,
    out: &Path,
    quiet: bool,
) -> Result<ExitCode> {
    let board = Board::find(board_dir, board)?;
    let (model, props) = match (model, props) {
        // The bundled model, written next to the report so the report can name it.
        (None, None) => {
            let bundled = ceg4n::bundled::write_to(&out.join("model"))?;
            if refine.data.is_none() {
                refine.data = Some(bundled.data);
            }
            (bundled.model, Some(bundled.props))
        }
        (Some(m), p) => (m, p),
        (None, Some(_)) => bail!("--props needs MODEL"),
    };
    let step = |what: &str| {
        if !quiet {
            eprintln!("== {what}");
        }
    };
    step("refine: search bit-widths and prove every box");
    let mut report = refine_report(
        &model,
        props.as_deref(),
        SearchArg::Default,
        &refine,
        out,
        quiet,
    )?;
    if report.config().is_none() {
        write_reports(&report, out)?;
        print_refine_summary(&report);
        bail!("no configuration to generate: {}", report.stop_reason);
    }
    step(&format!(
        "generate the crate for {} and run it under QEMU; count instructions; measure memory",
        board.name
    ));
    let device = ceg4n::pipeline::run_on_board(&mut report, &board, out)?;
    if let Err(e) = &device.bench {
        eprintln!("instruction count skipped: {e:#}");
    }
    if let Err(e) = &device.measured {
        eprintln!("memory measurement skipped: {e:#}");
    }
    let json = write_reports(&report, out)?;
    let memory = &device.memory;
    println!();
    print_refine_summary(&report);
    println!(
        "model memory: {} B flash (weights {} + parameters {}), {} B RAM buffers{}",
        memory.weight_bytes + memory.parameter_bytes,
        memory.weight_bytes,
        memory.parameter_bytes,
        memory.buffer_bytes,
        device.bench.as_ref().map_or(String::new(), |b| format!(
            "; test firmware {} B flash, {} B static RAM",
            b.flash_bytes, b.ram_bytes
        ))
    );
    if let Ok(m) = &device.measured {
        println!("{}", measured_memory_line(m));
    }
    if let Ok(b) = &device.bench {
        println!(
            "instructions per inference on {}: {:.0} ({:.2} per MAC, QEMU count)",
            board.name, b.instructions_per_inference, b.instructions_per_mac
        );
    }
    for m in device.comparison.mismatches.iter().take(10) {
        println!("mismatch: {m}");
    }
    println!(
        "report: {} and {}",
        json.display(),
        out.join("report.html").display()
    );
    let exact = device.bit_exact();
    println!(
        "{}/{} device outputs {} on {} ({}, QEMU)",
        device.comparison.bit_exact,
        device.comparison.total,
        if exact { "bit-exact" } else { "MISMATCHED" },
        board.name,
        board.core
    );
    Ok(crate::success_if(exact && report.verified))
}
