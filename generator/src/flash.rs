//! Real boards over a debug probe (probe-rs): find the probe, flash the firmware ELF, reset.

use std::path::Path;

use crate::error::{bail, Context, Result};

use crate::board::Board;
use crate::Error;

/// The debug probes attached to this machine, as one line each.
pub fn probes() -> Vec<String> {
    probe_rs::probe::list::Lister::new()
        .list_all()
        .iter()
        .map(|p| p.to_string())
        .collect()
}

/// The one-line error when no debug probe is attached.
pub const NO_PROBE: &str = "no debug probe found (connect one, e.g. an ST-Link, J-Link or CMSIS-DAP probe, and check its USB permissions)";

/// Flashes `elf` onto `board` through the first debug probe and resets the core.
pub fn flash(board: &Board, elf: &Path) -> Result<String> {
    let Some(chip) = &board.probe_rs_chip else {
        bail!(
            "board {} has no probe_rs_chip in its board file; it cannot be flashed with probe-rs",
            board.name
        );
    };
    let probes = probe_rs::probe::list::Lister::new().list_all();
    let Some(info) = probes.first() else {
        return Err(Error::Device(NO_PROBE.into()));
    };
    let probe = info
        .open()
        .map_err(|e| Error::Device(format!("cannot open the debug probe {info}: {e}")))?;
    let mut session = probe
        .attach(chip.as_str(), probe_rs::Permissions::default())
        .map_err(|e| Error::Device(format!("cannot attach to {chip} through {info}: {e}")))?;
    probe_rs::flashing::download_file(
        &mut session,
        elf,
        probe_rs::flashing::ElfLoader(probe_rs::flashing::ElfOptions::default()),
    )
    .map_err(|e| Error::Device(format!("{}: flashing {chip} failed: {e}", elf.display())))?;
    session
        .core(0)
        .context("no core 0")?
        .reset()
        .context("reset after flashing failed")?;
    Ok(info.to_string())
}
