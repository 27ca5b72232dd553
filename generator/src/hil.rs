//! Hardware in the loop, emulated: build the firmware crate that `codegen` writes, run it under
//! QEMU with semihosting, and compare every output it reports with the host model.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{bail, Context, Result};
use serde::Serialize;

use crate::board::Board;
use crate::codegen::Vector;
use crate::Error;

/// Which program the test firmware is built as (one cargo feature of templates/firmware each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirmwareVariant {
    /// Runs every vector and reports each output (the hardware-in-the-loop check).
    Check,
    /// Test-only: the check with the largest first-layer weight negated; it must fail.
    CorruptWeight,
    /// Runs inference over the vectors 10 times (instruction counting).
    Bench,
    /// The bench program without inference (its instructions are subtracted).
    BenchBaseline,
    /// Links only if inference has no path to a panic.
    ProveNoPanic,
    /// One inference on a painted stack, printing the stack used.
    MeasureMemory,
    /// The measuring program without the model (its image is subtracted).
    MeasureMemoryBaseline,
}

impl FirmwareVariant {
    /// The firmware crate's cargo feature for this variant.
    pub fn feature(self) -> Option<&'static str> {
        match self {
            FirmwareVariant::Check => None,
            FirmwareVariant::CorruptWeight => Some("corrupt-weight"),
            FirmwareVariant::Bench => Some("bench"),
            FirmwareVariant::BenchBaseline => Some("bench-baseline"),
            FirmwareVariant::ProveNoPanic => Some("prove-no-panic"),
            FirmwareVariant::MeasureMemory => Some("measure-memory"),
            FirmwareVariant::MeasureMemoryBaseline => Some("measure-memory-baseline"),
        }
    }
}

/// Which row loop the firmware's paired layers run (those exist on DSP boards only; elsewhere
/// both choices build the same program).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Kernels {
    /// The generated crate's default: safe Rust.
    #[serde(rename = "safe")]
    Safe,
    /// The crate's opt-in `arm-dsp` feature: the loop in Arm assembly (SXTB16, SMLAD).
    #[serde(rename = "arm-dsp")]
    ArmDsp,
}

impl Kernels {
    /// The firmware crate's cargo feature for this choice.
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Kernels::Safe => None,
            Kernels::ArmDsp => Some("arm-dsp"),
        }
    }

    /// The choices worth telling apart on `board`: both on a DSP core, else the default only.
    pub fn on(board: &Board) -> &'static [Kernels] {
        if board.has_dsp() {
            &[Kernels::Safe, Kernels::ArmDsp]
        } else {
            &[Kernels::Safe]
        }
    }
}

impl std::fmt::Display for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.feature().unwrap_or("safe"))
    }
}

/// Builds the firmware crate in `dir` for its board (release) as `variant` with `kernels`;
/// returns the ELF. `target_dir` lets several firmware builds share compiled dependencies.
pub fn build_firmware(
    dir: &Path,
    target_dir: &Path,
    variant: FirmwareVariant,
    kernels: Kernels,
) -> Result<PathBuf> {
    // Absolute: cargo resolves a relative CARGO_TARGET_DIR against the firmware directory.
    std::fs::create_dir_all(target_dir)
        .with_context(|| format!("{}: cannot create", target_dir.display()))?;
    let target_dir = &target_dir.canonicalize()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--quiet"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("RUSTFLAGS");
    let features: Vec<&str> = [variant.feature(), kernels.feature()]
        .into_iter()
        .flatten()
        .collect();
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
        return Err(Error::Tool(format!(
            "{}: firmware build failed: {first}",
            dir.display()
        )));
    }
    let (name, target) = firmware_name_and_target(dir)?;
    Ok(target_dir.join(target).join("release").join(name))
}

/// The package name (Cargo.toml) and build target (.cargo/config.toml) of a firmware crate.
fn firmware_name_and_target(dir: &Path) -> Result<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        package: Package,
    }
    #[derive(serde::Deserialize)]
    struct Package {
        name: String,
    }
    #[derive(serde::Deserialize)]
    struct Config {
        build: Build,
    }
    #[derive(serde::Deserialize)]
    struct Build {
        target: String,
    }
    let read = |path: PathBuf| -> Result<String> {
        std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))
    };
    let manifest_path = dir.join("Cargo.toml");
    let manifest: Manifest = toml::from_str(&read(manifest_path.clone())?)
        .with_context(|| format!("{}: no [package] name", manifest_path.display()))?;
    let config_path = dir.join(".cargo/config.toml");
    let config: Config = toml::from_str(&read(config_path.clone())?)
        .with_context(|| format!("{}: no [build] target", config_path.display()))?;
    Ok((manifest.package.name, config.build.target))
}

/// What one run of the test firmware printed and how it ended: under QEMU, or on a real
/// board over RTT ([`crate::flash::run_rtt`]).
#[derive(Clone, Debug)]
pub struct DeviceRun {
    /// Everything the firmware printed (semihosting under QEMU, RTT channel 0 on a board).
    pub stdout: String,
    /// The firmware's exit status (semihosting exit under QEMU; on a real board, which runs
    /// on after its `DONE` line, the status it reports there: 0 when it saw no mismatch),
    /// `None` if it was killed or never finished.
    pub exit_code: Option<i32>,
    /// Killed by the host-side watchdog.
    pub timed_out: bool,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Runs `elf` on the board's QEMU machine with semihosting; kills it after `timeout`.
pub fn run_qemu(board: &Board, elf: &Path, timeout: Duration) -> Result<DeviceRun> {
    run_qemu_with(board, elf, timeout, &[])
}

/// [`run_qemu`] with extra QEMU arguments.
fn run_qemu_with(
    board: &Board,
    elf: &Path,
    timeout: Duration,
    extra: &[std::ffi::OsString],
) -> Result<DeviceRun> {
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
    .args(extra)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        Error::Tool(format!(
            "cannot start qemu-system-arm ({e}); install it (apt-get install -y qemu-system-arm)"
        ))
    })?;
    let mut stdout = child.stdout.take().context("qemu stdout")?;
    let mut stderr = child.stderr.take().context("qemu stderr")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let error_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
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
    let errors = error_reader.join().unwrap_or_default();
    if stdout.is_empty() && !timed_out && status.is_some_and(|s| !s.success()) {
        return Err(Error::Tool(format!(
            "qemu-system-arm failed on {}: {}",
            elf.display(),
            errors.lines().next().unwrap_or("no message")
        )));
    }
    Ok(DeviceRun {
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

/// The instruction-counting TCG plugin's source (see hil-tests/plugin/insn_count.c).
pub const PLUGIN_SOURCE: &str = include_str!("../../hil-tests/plugin/insn_count.c");

/// Builds the instruction-counting plugin into `dir` with the system C compiler.
pub fn build_plugin(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let source = dir.join("insn_count.c");
    let library = dir.join("libinsn_count.so");
    std::fs::write(&source, PLUGIN_SOURCE)?;
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .map_err(|e| {
            Error::Tool(format!(
                "cannot run cc to build the QEMU plugin ({e}); install gcc"
            ))
        })?;
    if !status.success() {
        return Err(Error::Tool(format!(
            "{}: the QEMU plugin did not compile",
            source.display()
        )));
    }
    Ok(library)
}

/// Guest instructions one run of `elf` executes, counted by the plugin.
pub fn count_instructions(
    board: &Board,
    elf: &Path,
    plugin: &Path,
    timeout: Duration,
) -> Result<u64> {
    let log = elf.with_extension("insns.log");
    let _ = std::fs::remove_file(&log);
    let mut extra: Vec<std::ffi::OsString> = vec![
        "-plugin".into(),
        plugin.into(),
        "-d".into(),
        "plugin".into(),
        "-D".into(),
    ];
    extra.push(log.clone().into());
    let run = run_qemu_with(board, elf, timeout, &extra)?;
    if run.timed_out || run.exit_code != Some(0) {
        bail!(
            "{}: the benchmark firmware did not finish cleanly on {}",
            elf.display(),
            board.name
        );
    }
    let text = std::fs::read_to_string(&log)
        .with_context(|| format!("{}: no plugin output", log.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("ceg4n-insns ")?.trim().parse().ok())
        .with_context(|| format!("{}: no instruction count", log.display()))
}

/// Flash and RAM of a firmware ELF, from its allocated sections, and the bytes of the model's
/// weight arrays (`LAYER0_WEIGHTS`, `LAYER1_WEIGHTS`, ... symbols).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ElfMemory {
    /// Code, read-only data, vector table and initialised data's load image.
    pub flash_bytes: u64,
    /// Initialised and zeroed data (the stack is not counted).
    pub ram_bytes: u64,
    /// The weight arrays.
    pub weight_bytes: u64,
}

/// Reads the section and symbol tables of `elf`.
pub fn elf_memory(elf: &Path) -> Result<ElfMemory> {
    use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SectionKind};
    let data = std::fs::read(elf).with_context(|| format!("{}: cannot read", elf.display()))?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{}: not an ELF file", elf.display()))?;
    let (mut flash, mut ram) = (0, 0);
    for section in file.sections() {
        let SectionFlags::Elf { sh_flags } = section.flags() else {
            continue;
        };
        const ALLOC: u64 = 0x2;
        const WRITE: u64 = 0x1;
        if sh_flags & ALLOC == 0 {
            continue;
        }
        let size = section.size();
        match (sh_flags & WRITE != 0, section.kind()) {
            (false, _) => flash += size,
            (true, SectionKind::UninitializedData) => ram += size,
            (true, _) => {
                // .data: stored in flash, copied to RAM at start-up.
                flash += size;
                ram += size;
            }
        }
    }
    // Rust-mangled `<crate>::LAYER<k>_WEIGHTS` statics: the path component is
    // `<len>LAYER<k>_WEIGHTS`, then the hash.
    let is_weight_array = |name: &str| {
        (0..64).any(|k: usize| {
            let component = format!("LAYER{k}_WEIGHTS");
            name.contains(&format!("{}{component}17h", component.len()))
        })
    };
    let weight_bytes = file
        .symbols()
        .filter(|s| s.name().is_ok_and(is_weight_array))
        .map(|s| s.size())
        .sum();
    Ok(ElfMemory {
        flash_bytes: flash,
        ram_bytes: ram,
        weight_bytes,
    })
}

/// One model on one emulated board.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceBench {
    /// Board.
    pub board: String,
    /// Core.
    pub core: String,
    /// The row loop of the paired layers (the crate's default, or its opt-in `arm-dsp`).
    pub kernels: Kernels,
    /// How each layer's weights are stored (`plain`, `packed`, `paired`).
    pub layouts: Vec<crate::codegen::WeightLayout>,
    /// Multiply-accumulates per inference.
    pub macs: usize,
    /// Guest instructions per inference (QEMU TCG count; QEMU does not model cycles).
    pub instructions_per_inference: f64,
    /// `instructions_per_inference / macs`.
    pub instructions_per_mac: f64,
    /// Flash of the test firmware (code, constants, test vectors, initialised data).
    pub flash_bytes: u64,
    /// Static RAM of the test firmware (stack not included).
    pub ram_bytes: u64,
    /// Weight arrays left as arrays in the ELF (the compiler folds small ones into code, so
    /// this can be below the generated figure).
    pub weight_bytes_elf: u64,
    /// Weight arrays as the generator computed them.
    pub weight_bytes_generated: usize,
    /// The model's own flash: code, weights and parameters (an image with one inference call
    /// minus the same image without it, as [`measure_memory`] measures it).
    pub model_flash_bytes: u64,
}

/// Writes `spec`'s crate and firmware under `work`, counts instructions per inference (a
/// 10-pass run minus an inference-free baseline) with `kernels`, and reads the test
/// firmware's and the model's flash.
pub fn bench_device(
    spec: &crate::codegen::CrateSpec,
    work: &Path,
    plugin: &Path,
    kernels: Kernels,
) -> Result<DeviceBench> {
    let board = spec.board;
    spec.write(&work.join("crate"), true)?;
    spec.write_firmware(&work.join("firmware"), true)?;
    let firmware = work.join("firmware");
    let target = work.join("target");
    let timeout = Duration::from_secs(300);
    let mut counts = Vec::new();
    for variant in [FirmwareVariant::Bench, FirmwareVariant::BenchBaseline] {
        let elf = build_firmware(&firmware, &target, variant, kernels)?;
        counts.push(count_instructions(board, &elf, plugin, timeout)?);
    }
    let elf = build_firmware(&firmware, &target, FirmwareVariant::Check, kernels)?;
    let memory = elf_memory(&elf)?;
    // The model's flash, from the firmware already written above.
    let with = work.join("measure-memory.elf");
    let (with_model, without_model) = build_memory_pair(&firmware, &with, &target, kernels)?;
    let inferences = 10 * spec.vectors.len();
    let per_inference = counts[0].saturating_sub(counts[1]) as f64 / inferences.max(1) as f64;
    let macs: usize = spec.net.layers.iter().map(|l| l.inputs * l.outputs).sum();
    Ok(DeviceBench {
        board: board.name.clone(),
        core: board.core.clone(),
        kernels,
        layouts: spec.layouts(kernels == Kernels::ArmDsp),
        macs,
        instructions_per_inference: per_inference,
        instructions_per_mac: per_inference / macs.max(1) as f64,
        flash_bytes: memory.flash_bytes,
        ram_bytes: memory.ram_bytes,
        weight_bytes_elf: memory.weight_bytes,
        weight_bytes_generated: spec.weight_bytes(kernels == Kernels::ArmDsp),
        model_flash_bytes: with_model
            .flash_bytes
            .saturating_sub(without_model.flash_bytes),
    })
}

/// The model's memory on the device, measured: two firmware images that differ only in one
/// call to `logits`, and the stack painted before that call.
#[derive(Clone, Debug, Serialize)]
pub struct MeasuredMemory {
    /// The target the images were built for.
    pub target: String,
    /// Flash of the image with the model minus the image without it (code, weights, biases,
    /// requantization steps).
    pub model_flash_bytes: u64,
    /// Static RAM of the model (the same difference; 0 when everything lives on the stack).
    pub model_static_ram_bytes: u64,
    /// Deepest stack use of one inference call (activation buffers and call frames), run on
    /// `stack_board` under QEMU; `None` when no emulated board of the target could run it.
    pub stack_bytes: Option<u64>,
    /// The emulated board the stack was measured on (same target, so the same code).
    pub stack_board: Option<String>,
    /// Why the stack was not measured.
    pub stack_skipped: Option<String>,
}

/// Builds the written firmware crate `firmware` as the `measure-memory` pair (with and
/// without the model) and reads both images; the measuring ELF is copied to `with` (both
/// images land at the same path).
fn build_memory_pair(
    firmware: &Path,
    with: &Path,
    target_dir: &Path,
    kernels: Kernels,
) -> Result<(ElfMemory, ElfMemory)> {
    let built = build_firmware(
        firmware,
        target_dir,
        FirmwareVariant::MeasureMemory,
        kernels,
    )?;
    std::fs::copy(&built, with).with_context(|| format!("{}: cannot copy", built.display()))?;
    let with_memory = elf_memory(with)?;
    let without = elf_memory(&build_firmware(
        firmware,
        target_dir,
        FirmwareVariant::MeasureMemoryBaseline,
        kernels,
    )?)?;
    Ok((with_memory, without))
}

/// The image whose stack `emulated` measures: the measuring image `with` itself when it was
/// built for that board, else the same program (same target, so the same code) built with the
/// emulated board's memory map, under `work/stack` (a real board's map, e.g. flash at
/// 0x10000000, does not run on an emulated machine).
fn stack_image(
    spec: &crate::codegen::CrateSpec,
    emulated: &Board,
    work: &Path,
    with: &Path,
    target_dir: &Path,
    kernels: Kernels,
) -> Result<PathBuf> {
    if emulated == spec.board {
        return Ok(with.to_path_buf());
    }
    let on_emulated = crate::codegen::CrateSpec {
        name: spec.name.clone(),
        net: spec.net,
        board: emulated,
        certificate: spec.certificate.clone(),
        vectors: spec.vectors.clone(),
    };
    let dir = work.join("stack");
    on_emulated.write(&dir.join("crate"), true)?;
    on_emulated.write_firmware(&dir.join("firmware"), true)?;
    build_firmware(
        &dir.join("firmware"),
        target_dir,
        FirmwareVariant::MeasureMemory,
        kernels,
    )
}

/// Builds the `measure-memory` firmware pair of `spec` under `work` and runs the measuring
/// one under QEMU on `emulated` (a board of the same target; `None`: flash only).
pub fn measure_memory(
    spec: &crate::codegen::CrateSpec,
    emulated: Option<&Board>,
    work: &Path,
    target_dir: &Path,
    timeout: Duration,
    kernels: Kernels,
) -> Result<MeasuredMemory> {
    spec.write(&work.join("crate"), true)?;
    spec.write_firmware(&work.join("firmware"), true)?;
    let with = work.join("measure-memory.elf");
    let (with_memory, without) =
        build_memory_pair(&work.join("firmware"), &with, target_dir, kernels)?;
    let stack = match emulated {
        None => Err(format!(
            "no emulated board with target {}",
            spec.board.target
        )),
        Some(board) => stack_image(spec, board, work, &with, target_dir, kernels)
            .and_then(|elf| run_qemu(board, &elf, timeout))
            .map_err(|e| format!("{e:#}"))
            .and_then(|run| {
                run.stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("STACK ")?.trim().parse().ok())
                    .ok_or_else(|| {
                        format!(
                            "the memory probe printed no STACK line (exit {:?})",
                            run.exit_code
                        )
                    })
            }),
    };
    let (stack_bytes, stack_skipped) = match stack {
        Ok(bytes) => (Some(bytes), None),
        Err(why) => (None, Some(why)),
    };
    Ok(MeasuredMemory {
        target: spec.board.target.clone(),
        model_flash_bytes: with_memory.flash_bytes.saturating_sub(without.flash_bytes),
        model_static_ram_bytes: with_memory.ram_bytes.saturating_sub(without.ram_bytes),
        stack_bytes,
        stack_board: stack_bytes.and(emulated.map(|b| b.name.clone())),
        stack_skipped,
    })
}

/// Writes `spec`'s crate and firmware under `work` (`crate/`, `firmware/`; `force` as in
/// [`crate::codegen::CrateSpec::write`]), builds the firmware as `variant` in `target_dir`
/// (shareable between runs), runs it under QEMU or on a real board over a debug probe (RTT),
/// and compares every output with the host model.
pub fn run_model(
    spec: &crate::codegen::CrateSpec,
    work: &Path,
    target_dir: &Path,
    variant: FirmwareVariant,
    kernels: Kernels,
    timeout: Duration,
    force: bool,
) -> Result<(Comparison, DeviceRun)> {
    spec.write(&work.join("crate"), force)?;
    spec.write_firmware(&work.join("firmware"), force)?;
    let elf = build_firmware(&work.join("firmware"), target_dir, variant, kernels)?;
    let run = match spec.board.qemu_machine {
        Some(_) => run_qemu(spec.board, &elf, timeout)?,
        None => crate::flash::run_rtt(spec.board, &elf, timeout)?,
    };
    Ok((compare(&spec.vectors, &run.stdout), run))
}
