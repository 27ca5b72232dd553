//! Real boards over a debug probe (probe-rs): find the probe, flash the firmware ELF, reset;
//! or run the test firmware and read its report back over RTT.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{bail, Context, Result};
use probe_rs::MemoryInterface;

use crate::board::Board;
use crate::hil::DeviceRun;
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

/// Fails (a device error, [`NO_PROBE`]) unless a debug probe is attached, and unless `board`
/// names its probe-rs chip: checked before anything is generated or built.
pub fn require_probe(board: &Board) -> Result<()> {
    chip(board)?;
    if probe_rs::probe::list::Lister::new().list_all().is_empty() {
        return Err(Error::Device(NO_PROBE.into()));
    }
    Ok(())
}

fn chip(board: &Board) -> Result<&str> {
    match &board.probe_rs_chip {
        Some(chip) => Ok(chip),
        None => bail!(
            "board {} has no probe_rs_chip in its board file; it cannot be flashed with probe-rs",
            board.name
        ),
    }
}

/// A session on `board`'s chip through the first debug probe, and the probe's description.
fn attach(board: &Board) -> Result<(probe_rs::Session, String)> {
    let chip = chip(board)?;
    let probes = probe_rs::probe::list::Lister::new().list_all();
    let Some(info) = probes.first() else {
        return Err(Error::Device(NO_PROBE.into()));
    };
    let probe = info
        .open()
        .map_err(|e| Error::Device(format!("cannot open the debug probe {info}: {e}")))?;
    let session = probe
        .attach(chip, probe_rs::Permissions::default())
        .map_err(|e| Error::Device(format!("cannot attach to {chip} through {info}: {e}")))?;
    Ok((session, info.to_string()))
}

/// Writes `elf` into the flash of the session's chip.
fn download(session: &mut probe_rs::Session, elf: &Path) -> Result<()> {
    probe_rs::flashing::download_file(
        session,
        elf,
        probe_rs::flashing::ElfLoader(probe_rs::flashing::ElfOptions::default()),
    )
    .map_err(|e| Error::Device(format!("{}: flashing failed: {e}", elf.display())))
}

/// Flashes `elf` onto `board` through the first debug probe and resets the core.
pub fn flash(board: &Board, elf: &Path) -> Result<String> {
    let (mut session, probe) = attach(board)?;
    download(&mut session, elf)?;
    session
        .core(0)
        .context("no core 0")?
        .reset()
        .context("reset after flashing failed")?;
    Ok(probe)
}

/// The address of the RTT control block (`_SEGGER_RTT`, rtt-target's) in `elf`.
pub fn rtt_control_block(elf: &Path) -> Result<u64> {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(elf).with_context(|| format!("{}: cannot read", elf.display()))?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{}: not an ELF file", elf.display()))?;
    file.symbols()
        .find(|s| s.name() == Ok("_SEGGER_RTT"))
        .map(|s| s.address())
        .with_context(|| {
            format!(
                "{}: no _SEGGER_RTT symbol: the firmware does not report over RTT",
                elf.display()
            )
        })
}

/// Flashes the test firmware `elf` onto `board`, runs it and reads its report (RTT up channel
/// 0) until its `DONE` line, or until `timeout` after the start: the watchdog of the QEMU
/// path, here as a deadline on the read loop (a real board's firmware runs on after `DONE`;
/// nothing else ends it).
pub fn run_rtt(board: &Board, elf: &Path, timeout: Duration) -> Result<DeviceRun> {
    let start = Instant::now();
    let control_block = rtt_control_block(elf)?;
    let (mut session, probe) = attach(board)?;
    download(&mut session, elf)?;
    let device = |what: &str, e: &dyn std::fmt::Display| {
        Error::Device(format!("{} through {probe}: {what}: {e}", board.name))
    };
    let mut core = session.core(0).context("no core 0")?;
    core.reset_and_halt(Duration::from_millis(500))
        .map_err(|e| device("reset", &e))?;
    // RAM survives the reset: clear the control block's ID so that a previous run's report
    // cannot be read before this run writes its own.
    core.write_8(control_block, &[0; 16])
        .map_err(|e| device("clearing the RTT control block", &e))?;
    core.run().map_err(|e| device("run", &e))?;
    let mut rtt = None;
    let mut text = String::new();
    let mut buffer = [0u8; 1024];
    let timed_out = loop {
        if start.elapsed() >= timeout {
            break true;
        }
        let Some(attached) = rtt.as_mut() else {
            // The firmware sets the control block up first thing; until then, retry.
            match probe_rs::rtt::Rtt::attach_at(&mut core, control_block) {
                Ok(attached) => rtt = Some(attached),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
            continue;
        };
        let Some(channel) = attached.up_channel(0) else {
            bail!("{}: the firmware has no RTT up channel 0", elf.display());
        };
        let read = channel
            .read(&mut core, &mut buffer)
            .map_err(|e| device("reading RTT", &e))?;
        text.push_str(&String::from_utf8_lossy(&buffer[..read]));
        if done_line(&text).is_some() {
            break false;
        }
        if read == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let exit_code = match done_line(&text) {
        Some(0) => Some(0),
        Some(_) => Some(1),
        None => None,
    };
    Ok(DeviceRun {
        stdout: text,
        exit_code,
        timed_out,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The mismatch count of a complete `DONE <count> <mismatches>` line in `text`.
fn done_line(text: &str) -> Option<u64> {
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .find_map(|l| {
            let mut fields = l.strip_prefix("DONE ")?.split_whitespace();
            fields.next()?;
            fields.next()?.parse().ok()
        })
}

#[cfg(test)]
mod tests {
    use super::done_line;

    #[test]
    fn the_report_ends_at_a_complete_done_line() {
        assert_eq!(done_line("V 0 1 2\nDONE 1 0\n"), Some(0));
        assert_eq!(done_line("V 0 1 2\nDONE 3 2\n"), Some(2));
        // Still arriving: no newline yet.
        assert_eq!(done_line("V 0 1 2\nDONE 3 2"), None);
        assert_eq!(done_line("V 0 1 2\n"), None);
    }
}
