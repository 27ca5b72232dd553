//! `ceg4n generate`, `hil`, `flash` and `boards`: crates, emulated and real boards.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::args::CrateSourceArgs;
use ceg4n::board::Board;
use ceg4n::pipeline::prepare_crate;

pub(crate) fn generate(
    source: &CrateSourceArgs,
    board: &str,
    board_dir: Option<&Path>,
    out: &Path,
    name: Option<String>,
    force: bool,
    measure: bool,
) -> Result<ExitCode> {
    let board = Board::find(board_dir, board)?;
    let report = source.load_report()?;
    let bits = source.quant.spec();
    let prepared = prepare_crate(source.source(report.as_ref(), &bits)?, name)?;
    let spec = prepared.spec(&board);
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
    if measure {
        // Measured on a build for the board's target; the stack on an emulated board of the
        // same target. Never fails the generation: without a toolchain or QEMU it says why.
        let measured = (|| -> ceg4n::Result<ceg4n::hil::MeasuredMemory> {
            let emulated = match board.qemu_machine {
                Some(_) => Some(board.clone()),
                None => Board::all(board_dir)?
                    .into_iter()
                    .find(|b| b.target == board.target && b.qemu_machine.is_some()),
            };
            let work = tempfile::tempdir()?;
            ceg4n::hil::measure_memory(
                &spec,
                emulated.as_ref(),
                work.path(),
                &std::env::temp_dir().join("ceg4n-firmware-target"),
                Duration::from_secs(60),
                ceg4n::hil::Kernels::Safe,
            )
        })();
        match measured {
            Ok(m) => println!("{}", measured_memory_line(&m)),
            Err(e) => println!("memory not measured (--no-measure skips this): {e:#}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of measured model memory.
pub(crate) fn measured_memory_line(m: &ceg4n::hil::MeasuredMemory) -> String {
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
pub(crate) fn hil(
    source: &CrateSourceArgs,
    board: &str,
    board_dir: Option<&Path>,
    out: &Path,
    timeout: f64,
    corrupt_weight: bool,
    kernels: ceg4n::hil::Kernels,
) -> Result<ExitCode> {
    let board = Board::find(board_dir, board)?;
    // Before the report is read: a missing device is said first (exit 3).
    ceg4n::pipeline::require_runnable(&board)?;
    let report = source.load_report()?;
    let bits = source.quant.spec();
    let (comparison, run) = ceg4n::pipeline::hil_on_board(
        source.source(report.as_ref(), &bits)?,
        &board,
        out,
        Duration::from_secs_f64(timeout),
        corrupt_weight,
        kernels,
    )?;
    for m in comparison.mismatches.iter().take(10) {
        println!("mismatch: {m}");
    }
    if comparison.mismatches.len() > 10 {
        println!("... and {} more", comparison.mismatches.len() - 10);
    }
    if run.timed_out {
        println!("the firmware did not finish within {timeout} s");
    }
    let ran_on = match &board.qemu_machine {
        Some(machine) => format!("QEMU {machine}"),
        None => "debug probe, RTT".into(),
    };
    println!(
        "{}/{} vectors bit-exact on {} ({}, {ran_on}, {kernels} kernels), {:.1} s",
        comparison.bit_exact, comparison.total, board.name, board.core, run.seconds
    );
    Ok(crate::success_if(
        comparison.passed() && run.exit_code == Some(0),
    ))
}

pub(crate) fn flash(board: &str, board_dir: Option<&Path>, crate_dir: &Path) -> Result<ExitCode> {
    let board = Board::find(board_dir, board)?;
    if board.probe_rs_chip.is_none() {
        bail!(
            "board {} has no probe_rs_chip in its board file; emulated boards run with `ceg4n hil`",
            board.name
        );
    }
    // Fail fast, before a build, when no probe is attached.
    if ceg4n::flash::probes().is_empty() {
        return Err(ceg4n::Error::Device(ceg4n::flash::NO_PROBE.into()).into());
    }
    let elf = ceg4n::hil::build_firmware(
        crate_dir,
        &crate_dir.join("target"),
        ceg4n::hil::FirmwareVariant::Check,
        ceg4n::hil::Kernels::Safe,
    )?;
    let probe = ceg4n::flash::flash(&board, &elf)?;
    println!(
        "flashed {} onto {} through {probe}",
        elf.display(),
        board.name
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn boards(board_dir: Option<&Path>) -> Result<ExitCode> {
    for b in Board::all(board_dir)? {
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
    Ok(ExitCode::SUCCESS)
}
