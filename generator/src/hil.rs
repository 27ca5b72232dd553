//! Hardware in the loop, emulated: build the firmware crate that `codegen` writes, run it under
//! QEMU with semihosting, and compare every output it reports with the host model.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::board::Board;
use crate::codegen::Vector;

/// Builds the firmware crate in `dir` for its board (release), with `features`; returns the ELF.
/// `target_dir` lets several firmware builds share compiled dependencies.
pub fn build_firmware(dir: &Path, target_dir: &Path, features: &[&str]) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--quiet"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("RUSTFLAGS");
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let out = cmd
        .output()
        .with_context(|| format!("{}: cannot run cargo", dir.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or("cargo build failed");
        bail!("{}: firmware build failed: {first}", dir.display());
    }
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))?;
    let name = manifest
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .context("the firmware Cargo.toml names no package")?;
    let config = std::fs::read_to_string(dir.join(".cargo/config.toml"))?;
    let target = config
        .lines()
        .find_map(|l| l.strip_prefix("target = \""))
        .and_then(|l| l.strip_suffix('"'))
        .context("the firmware .cargo/config.toml names no target")?;
    Ok(target_dir.join(target).join("release").join(name))
}

/// What one QEMU run printed and how it ended.
#[derive(Clone, Debug)]
pub struct QemuRun {
    /// Everything the firmware printed over semihosting.
    pub stdout: String,
    /// The firmware's exit status (semihosting exit), `None` if it was killed.
    pub exit_code: Option<i32>,
    /// Killed by the host-side watchdog.
    pub timed_out: bool,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Runs `elf` on the board's QEMU machine with semihosting; kills it after `timeout`.
pub fn run_qemu(board: &Board, elf: &Path, timeout: Duration) -> Result<QemuRun> {
    let Some(machine) = &board.qemu_machine else {
        bail!(
            "board {} is not emulated (no qemu_machine in its board file); real boards run through a debug probe",
            board.name
        );
    };
    let mut cmd = Command::new("qemu-system-arm");
    cmd.args(["-M", machine]);
    if let Some(cpu) = &board.qemu_cpu {
        cmd.args(["-cpu", cpu]);
    }
    cmd.args([
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
        "-kernel",
    ])
    .arg(elf)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        anyhow::anyhow!(
            "cannot start qemu-system-arm ({e}); install it (apt-get install -y qemu-system-arm)"
        )
    })?;
    let mut stdout = child.stdout.take().context("qemu stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            timed_out = true;
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = reader.join().unwrap_or_default();
    Ok(QemuRun {
        stdout,
        exit_code: status.and_then(|s| s.code()),
        timed_out,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Device outputs against the host model.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Vectors sent.
    pub total: usize,
    /// Vectors whose device logits and class equal the host model's exactly.
    pub bit_exact: usize,
    /// One line per mismatching or missing vector.
    pub mismatches: Vec<String>,
    /// The firmware reached its final `DONE` line.
    pub completed: bool,
}

impl Comparison {
    /// Every vector reported and bit-exact.
    pub fn passed(&self) -> bool {
        self.completed && self.bit_exact == self.total && self.mismatches.is_empty()
    }
}

/// Parses the firmware's `V <index> <class> <logits>...` lines and compares each with the
/// host model's vector.
pub fn compare(vectors: &[Vector], stdout: &str) -> Comparison {
    let mut seen = vec![false; vectors.len()];
    let mut bit_exact = 0;
    let mut mismatches = Vec::new();
    let mut completed = false;
    for line in stdout.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("DONE") => completed = true,
            Some("V") => {
                let numbers: Vec<i64> = fields.filter_map(|f| f.parse().ok()).collect();
                let (Some(index), Some(class)) = (numbers.first(), numbers.get(1)) else {
                    mismatches.push(format!("unreadable line: {line}"));
                    continue;
                };
                let Some(v) = vectors.get(*index as usize) else {
                    mismatches.push(format!("unknown vector index: {line}"));
                    continue;
                };
                seen[*index as usize] = true;
                let logits = &numbers[2..];
                if logits == v.logits.as_slice() && *class as usize == v.class {
                    bit_exact += 1;
                } else {
                    mismatches.push(format!(
                        "vector {index} ({}): device class {class} logits {logits:?}, host class {} logits {:?}",
                        v.origin, v.class, v.logits
                    ));
                }
            }
            _ => {}
        }
    }
    for (i, s) in seen.iter().enumerate() {
        if !s {
            mismatches.push(format!(
                "vector {i} ({}): no output from the device",
                vectors[i].origin
            ));
        }
    }
    Comparison {
        total: vectors.len(),
        bit_exact,
        mismatches,
        completed,
    }
}
