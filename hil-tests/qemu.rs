//! Hardware in the loop under QEMU: for three bundled models and one board per core family
//! (Cortex-M0, M3, M4F, M33), generate the crate and its firmware, build it, run it in QEMU and
//! compare every device output with the host model, bit for bit. A firmware with one corrupted
//! weight must be caught. Skipped, saying why, when qemu-system-arm is not installed
//! (scripts/setup.sh installs it).
//!
//! Built as a test of the `ceg4n` package (generator/Cargo.toml points here).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ceg4n::board::Board;
use ceg4n::codegen::{vectors, Certificate, CertifiedBox, CrateSpec, Vector};
use ceg4n::data::{boxes_around, load_properties, Dataset, Property};
use ceg4n::hil::{build_firmware, run_model, FirmwareVariant, Kernels};
use ceg4n::int_model::IntNetwork;
use ceg4n::onnx_import::import_path;
use ceg4n::quantize::QuantConfig;
use ceg4n::refine::{refine, RefineOptions, Search, Silent};
use ceg4n::task::Task;
use ceg4n::verify::VerifyOptions;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn qemu_available() -> bool {
    std::process::Command::new("qemu-system-arm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether the test must be skipped because qemu-system-arm is missing; says so when it is.
/// Whether a QEMU test must be skipped: only outside CI. Under `CI=true` a missing QEMU is a
/// failure (the test command installs it), never a silent pass.
fn skipped_without_qemu() -> bool {
    if qemu_available() {
        return false;
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "qemu-system-arm is not installed, and CI=true: scripts/setup.sh must install it"
    );
    eprintln!("SKIPPED: qemu-system-arm is not installed (scripts/setup.sh installs it with apt)");
    true
}

/// A model at its bits with its test vectors (box points plus the test set).
struct Case {
    name: &'static str,
    net: IntNetwork,
    vectors: Vec<Vector>,
}

fn case(
    name: &'static str,
    model: &str,
    props: Vec<Property>,
    test: &str,
    bits: Option<(&[u32], &[u32])>,
) -> Case {
    let path = models_dir().join(model);
    let net = import_path(&path).unwrap();
    let test = Dataset::load_csv(&models_dir().join(test), net.input_len()).unwrap();
    let task = Task::new(&path, net, props);
    let config = match bits {
        Some((w, a)) => QuantConfig::for_network(&task.net, w, a, 16, false, false).unwrap(),
        // Refined bits: the CEG4N loop on the bundled boxes.
        None => {
            let options = RefineOptions {
                search: Search::Descent,
                seed: 0,
                time_limit: Duration::from_secs(120),
                max_rounds: 20,
                verify: VerifyOptions::default(),
                jobs: 2,
                per_channel: None,
                uniform_input: false,
                min_agreement: ceg4n::refine::DEFAULT_MIN_AGREEMENT,
            };
            let r = refine(&task, &options, &Silent).unwrap();
            assert!(r.verified, "{name}: {:?}", r.stop);
            r.config.unwrap()
        }
    };
    let int_net = task.quantize(&config).unwrap();
    let extra: Vec<(String, Vec<f64>)> = test
        .features
        .iter()
        .enumerate()
        .map(|(i, x)| (format!("test row {i}"), x.clone()))
        .collect();
    let vectors = vectors(&int_net, &task.props, &extra, 7);
    assert!(
        vectors.len() >= 200,
        "{name}: only {} vectors",
        vectors.len()
    );
    Case {
        name,
        net: int_net,
        vectors,
    }
}

fn cases() -> Vec<Case> {
    let iris_props = load_properties(&models_dir().join("iris_props.json"), 4).unwrap();
    let digits_props = load_properties(&models_dir().join("digits_props.json"), 64).unwrap();
    let wine_test = Dataset::load_csv(&models_dir().join("wine_test.csv"), 13).unwrap();
    let wine_rows = Dataset {
        features: wine_test.features[..9].to_vec(),
        labels: wine_test.labels[..9].to_vec(),
    };
    let wine_props = boxes_around(&wine_rows, 0.05, None).unwrap();
    vec![
        case("iris", "iris_mlp.onnx", iris_props, "iris_test.csv", None),
        case(
            "digits",
            "digits_mlp.onnx",
            digits_props,
            "digits_test.csv",
            Some((&[6], &[8])),
        ),
        case(
            "wine",
            "wine_mlp.onnx",
            wine_props,
            "wine_test.csv",
            Some((&[8, 5], &[6])),
        ),
    ]
}

/// The bundled iris model at 4-bit weights and 8-bit activations, without refinement: for
/// tests of the crate's plumbing rather than of the bits.
fn iris_at_4_bits() -> Case {
    let iris_props = load_properties(&models_dir().join("iris_props.json"), 4).unwrap();
    case(
        "iris",
        "iris_mlp.onnx",
        iris_props,
        "iris_test.csv",
        Some((&[4], &[8])),
    )
}

fn spec<'a>(case: &'a Case, board: &'a Board) -> CrateSpec<'a> {
    CrateSpec {
        name: format!("{}-model", case.name),
        net: &case.net,
        board,
        certificate: Certificate {
            model: case.name.into(),
            model_sha256: "-".into(),
            verified: false,
            boxes: vec![CertifiedBox {
                id: "-".into(),
                status: ceg4n::codegen::CertifiedStatus::NotVerified,
            }],
            tool_version: env!("CARGO_PKG_VERSION").into(),
            fidelity: None,
            epsilon: None,
        },
        vectors: case.vectors.clone(),
    }
}

/// Generates, builds and runs one case on one board; returns (bit-exact, total, exit code).
fn run(case: &Case, board: &Board, work: &Path, corrupt: bool) -> (usize, usize, Option<i32>) {
    run_with(case, board, work, corrupt, Kernels::Safe)
}

/// [`run`] with the crate built with `kernels`.
fn run_with(
    case: &Case,
    board: &Board,
    work: &Path,
    corrupt: bool,
    kernels: Kernels,
) -> (usize, usize, Option<i32>) {
    let spec = spec(case, board);
    let dir = work.join(format!("{}-{}-{kernels}", case.name, board.name));
    let variant = if corrupt {
        FirmwareVariant::CorruptWeight
    } else {
        FirmwareVariant::Check
    };
    // One target directory per test: the boards of one core share compiled dependencies.
    let target = work.join("target");
    let (c, qemu) = run_model(
        &spec,
        &dir,
        &target,
        variant,
        kernels,
        Duration::from_secs(120),
        true,
    )
    .unwrap();
    assert!(
        !qemu.timed_out,
        "{} on {}: QEMU timed out",
        case.name, board.name
    );
    if !corrupt {
        for m in c.mismatches.iter().take(5) {
            eprintln!("{} on {}: {m}", case.name, board.name);
        }
    }
    (c.bit_exact, c.total, qemu.exit_code)
}

#[test]
fn device_outputs_equal_the_host_model_bit_for_bit_on_m0_m3_m4f_m33() {
    if skipped_without_qemu() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let cases = cases();
    // Armv6-M, Armv7-M, Armv7E-M and Armv8-M Mainline (thumbv8m.main, Cortex-M33).
    for board in ["microbit", "lm3s6965evb", "mps2-an386", "mps2-an505"] {
        let board = Board::find(None, board).unwrap();
        for case in &cases {
            let (exact, total, code) = run(case, &board, work.path(), false);
            eprintln!(
                "{}/{} vectors bit-exact: {} on {}",
                exact, total, case.name, board.name
            );
            assert_eq!(exact, total, "{} on {}", case.name, board.name);
            assert_eq!(
                code,
                Some(0),
                "{} on {}: the device saw a mismatch",
                case.name,
                board.name
            );
        }
    }
}

/// What a user types in a generated crate: `cargo run --release --example classify` builds the
/// board example and runs it through the crate's runner (.cargo/config.toml: QEMU with
/// semihosting for emulated boards); it prints every vector's class and label and exits 0.
#[test]
fn cargo_run_of_the_board_example_prints_every_class_under_qemu() {
    if skipped_without_qemu() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let iris = iris_at_4_bits();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for board in ["mps2-an386", "lm3s6965evb", "mps2-an505"] {
        let board = Board::find(None, board).unwrap();
        let dir = work.path().join(&board.name);
        spec(&iris, &board).write(&dir, true).unwrap();
        // A watchdog: a hung example must fail the test, not stall it.
        let run = std::process::Command::new("timeout")
            .args([
                "300",
                &cargo,
                "run",
                "--quiet",
                "--release",
                "--example",
                "classify",
            ])
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", work.path().join("target"))
            .env_remove("RUSTFLAGS")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert_eq!(
            run.status.code(),
            Some(0),
            "{}: {stdout}{}",
            board.name,
            String::from_utf8_lossy(&run.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            iris.vectors.len() + 1,
            "{}: {stdout}",
            board.name
        );
        for (i, (line, v)) in lines.iter().zip(&iris.vectors).enumerate() {
            // iris_mlp.onnx has no class table: the labels are the class indices.
            let expected = format!("vector {i}: class {} ({})", v.class, v.class);
            assert_eq!(*line, expected, "{}", board.name);
        }
        let summary = format!(
            "{} vectors, 0 differ from the host model",
            iris.vectors.len()
        );
        assert_eq!(lines.last(), Some(&summary.as_str()), "{}", board.name);
        eprintln!(
            "{}: cargo run --example classify printed {} classes",
            board.name,
            iris.vectors.len()
        );
    }
}

/// The opt-in `arm-dsp` kernels (SXTB16/SMLAD assembly over paired weights) on the Cortex-M4F:
/// every vector bit-exact with the host model, as the default build's are, at 8-, 4- and 2-bit
/// weights (each a paired layout of its own), and a corrupted weight is caught there too.
#[test]
fn the_arm_dsp_kernels_are_bit_exact_with_the_default_ones_on_m4f() {
    if skipped_without_qemu() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let board = Board::find(None, "mps2-an386").unwrap();
    let digits_props = load_properties(&models_dir().join("digits_props.json"), 64).unwrap();
    for bits in [8u32, 4, 2] {
        let name = ["digits-w8", "digits-w4", "digits-w2"]
            [[8, 4, 2].iter().position(|b| *b == bits).unwrap()];
        let case = case(
            name,
            "digits_mlp.onnx",
            digits_props.clone(),
            "digits_test.csv",
            Some((&[bits], &[8])),
        );
        let layouts = spec(&case, &board).layouts(true);
        assert!(
            layouts.contains(&ceg4n::codegen::WeightLayout::Paired),
            "{name}: {layouts:?}"
        );
        for kernels in [Kernels::Safe, Kernels::ArmDsp] {
            let (exact, total, code) = run_with(&case, &board, work.path(), false, kernels);
            eprintln!("{exact}/{total} vectors bit-exact: {name} on mps2-an386, {kernels}");
            assert_eq!(exact, total, "{name}, {kernels}");
            assert_eq!(
                code,
                Some(0),
                "{name}, {kernels}: the device saw a mismatch"
            );
        }
        if bits == 8 {
            let (exact, total, code) = run_with(&case, &board, work.path(), true, Kernels::ArmDsp);
            assert!(exact < total, "a corrupted paired weight went unnoticed");
            assert_eq!(code, Some(1));
        }
    }
}

#[test]
fn a_corrupted_weight_is_caught_on_the_device() {
    if skipped_without_qemu() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let board = Board::find(None, "mps2-an386").unwrap();
    let iris = &cases()[0];
    let (exact, total, code) = run(iris, &board, work.path(), true);
    assert!(exact < total, "a corrupted weight went unnoticed");
    assert_eq!(code, Some(1), "the device's own check must fail too");
}

#[test]
fn instructions_per_inference_are_counted_by_the_tcg_plugin() {
    if skipped_without_qemu() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let Ok(plugin) = ceg4n::hil::build_plugin(&work.path().join("plugin")) else {
        eprintln!("SKIPPED: no C compiler (cc) to build the QEMU instruction-counting plugin");
        return;
    };
    let digits = &cases()[1];
    // The M4F (Armv7E-M) and the M33 (Armv8-M Mainline).
    for board in ["mps2-an386", "mps2-an505"] {
        let board = Board::find(None, board).unwrap();
        let spec = spec(digits, &board);
        let work = work.path().join(format!("bench-{}", board.name));
        let row = ceg4n::hil::bench_device(&spec, &work, &plugin, Kernels::Safe).unwrap();
        eprintln!(
            "{} ({}): {:.2} instructions per MAC, {row:?}",
            board.name, board.core, row.instructions_per_mac
        );
        // Every MAC needs at least one multiply instruction, and inference is not free of
        // overhead.
        assert!(row.instructions_per_inference >= row.macs as f64, "{row:?}");
        assert!(row.instructions_per_mac < 50.0, "{row:?}");
        assert!(
            row.flash_bytes > row.weight_bytes_generated as u64,
            "{row:?}"
        );
    }
}

/// The test firmware of a real board reports over RTT: it builds, with rtt-target's control
/// block in the board's RAM, for an Armv6-M and an Armv7E-M board (no probe needed).
#[test]
fn the_real_board_firmware_reports_over_rtt() {
    let work = tempfile::tempdir().unwrap();
    let iris = iris_at_4_bits();
    for board in ["rp2040", "nrf52840-dk"] {
        let board = Board::find(None, board).unwrap();
        let dir = work.path().join(&board.name);
        let elf = check_firmware(&iris, &board, &dir, &work.path().join("target"));
        let control_block = ceg4n::flash::rtt_control_block(&elf).unwrap();
        let ram = board.ram_origin..board.ram_origin + board.ram_length;
        assert!(
            ram.contains(&control_block),
            "{}: {control_block:#x}",
            board.name
        );
    }
}

/// The board named by `CEG4N_PROBE` (a debug probe attached to it).
fn probe_board() -> Board {
    let name = std::env::var("CEG4N_PROBE")
        .expect("set CEG4N_PROBE=<board> (e.g. nrf52840-dk) with a debug probe attached");
    Board::find(None, &name).unwrap()
}

/// Writes `case`'s crate and test firmware for `board` under `dir` and builds the check.
fn check_firmware(case: &Case, board: &Board, dir: &Path, target: &Path) -> PathBuf {
    let spec = spec(case, board);
    spec.write(&dir.join("crate"), true).unwrap();
    spec.write_firmware(&dir.join("firmware"), true).unwrap();
    build_firmware(
        &dir.join("firmware"),
        target,
        FirmwareVariant::Check,
        Kernels::Safe,
    )
    .unwrap()
}

/// `ceg4n hil` on a real board: flashed through the probe, its report read over RTT, every
/// output compared with the host model, bit for bit.
#[test]
#[ignore = "needs a debug probe: CEG4N_PROBE=<board> cargo test --test hil -- --ignored real_board"]
fn real_board_hil_over_rtt_is_bit_exact_when_a_probe_is_named() {
    let board = probe_board();
    let work = tempfile::tempdir().unwrap();
    let iris = &cases()[0];
    let (exact, total, code) = run(iris, &board, work.path(), false);
    assert_eq!((exact, code), (total, Some(0)), "{}", board.name);
    // A corrupted weight is caught on the board too.
    let (exact, total, _) = run(iris, &board, work.path(), true);
    assert!(
        exact < total,
        "{}: the corrupted weight went unnoticed",
        board.name
    );
}

/// Real boards: needs a debug probe, so it is reported as ignored unless asked for:
/// `CEG4N_PROBE=nrf52840-dk cargo test --test hil -- --ignored real_board`.
#[test]
#[ignore = "needs a debug probe: CEG4N_PROBE=<board> cargo test --test hil -- --ignored real_board"]
fn real_board_flashing_when_a_probe_is_named() {
    let board = probe_board();
    let work = tempfile::tempdir().unwrap();
    let iris = &cases()[0];
    let elf = check_firmware(iris, &board, work.path(), &work.path().join("target"));
    let probe = ceg4n::flash::flash(&board, &elf).unwrap();
    eprintln!("flashed {} through {probe}", board.name);
}

#[test]
fn flashing_or_hil_without_a_probe_fails_with_one_clear_line() {
    if !ceg4n::flash::probes().is_empty() {
        eprintln!("SKIPPED: a debug probe is attached");
        return;
    }
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_ceg4n"))
        .args(["flash", "--board", "nrf52840-dk", "--crate", "."])
        .output()
        .unwrap();
    // A missing device, not bad input: exit code 3.
    assert_eq!(run.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no debug probe found"), "{stderr}");
    // `ceg4n hil` on a real board says the same, before it writes anything.
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("hil");
    let model = models_dir().join("iris_mlp.onnx");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_ceg4n"))
        .args(["hil", "--board", "nrf52840-dk", "--bits", "4", "--props"])
        .arg(models_dir().join("iris_props.json"))
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no debug probe found"), "{stderr}");
    assert!(!out.exists(), "a half-written {}", out.display());
}

/// The firmware built with `prove-no-panic` links only if the optimiser removed every path to
/// the panic handler (which calls an undefined symbol): inference provably cannot panic.
#[test]
fn inference_has_no_panicking_path() {
    let work = tempfile::tempdir().unwrap();
    let digits_props = load_properties(&models_dir().join("digits_props.json"), 64).unwrap();
    let paired = case(
        "digits-w4",
        "digits_mlp.onnx",
        digits_props,
        "digits_test.csv",
        Some((&[4], &[8])),
    );
    let mut cases = cases();
    cases.push(paired);
    for case in &cases {
        for (board, kernels) in [
            ("microbit", Kernels::Safe),
            ("mps2-an386", Kernels::Safe),
            ("mps2-an386", Kernels::ArmDsp),
        ] {
            let board = Board::find(None, board).unwrap();
            let spec = spec(case, &board);
            let dir = work
                .path()
                .join(format!("{}-{}-{kernels}", case.name, board.name));
            spec.write(&dir.join("crate"), true).unwrap();
            spec.write_firmware(&dir.join("firmware"), true).unwrap();
            if let Err(e) = build_firmware(
                &dir.join("firmware"),
                &work.path().join("target"),
                FirmwareVariant::ProveNoPanic,
                kernels,
            ) {
                panic!(
                    "{} on {} ({kernels}): inference may panic: {e:#}",
                    case.name, board.name
                );
            }
        }
    }
}

/// Runs the `ceg4n` binary with `args`; it must exit 0. Its standard output.
fn ceg4n_succeeds(args: &[&std::ffi::OsStr]) -> String {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_ceg4n"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert_eq!(
        run.status.code(),
        Some(0),
        "ceg4n {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

/// The README's main job: `ceg4n run` on the bundled model ends with the device verdict, and
/// its report.html holds the three plots (and, when Chromium is installed, renders headless).
#[test]
fn the_main_job_runs_end_to_end_and_writes_a_readable_report() {
    if skipped_without_qemu() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("run");
    let stdout = ceg4n_succeeds(&[
        "run".as_ref(),
        "--quiet".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let last = stdout.trim_end().lines().last().unwrap();
    assert!(last.contains("bit-exact on mps2-an386"), "{stdout}");
    assert!(stdout.contains("verified: weights"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["device"]["bit_exact"], report["device"]["vectors"]);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        3,
        "bits, accuracy and proof-time plots"
    );
    let Some(browser) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        eprintln!("SKIPPED (headless rendering only): no Chromium installed");
        return;
    };
    let shot = work.path().join("report.png");
    let status = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1000,2200",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", out.join("report.html").display()))
        .output()
        .unwrap();
    assert!(status.status.success());
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 20_000, "a rendered page with plots is not tiny");
}

/// Models as the exporters write them (models/exporters/): `ceg4n run MODEL --data CSV` (boxes
/// made from the data) ends verified, at the float accuracy, and bit-exact on the device — the
/// raw-unit scikit-learn Pipeline with string labels, a two-class skl2onnx head, a torch dynamo
/// export and a Keras model through tf2onnx.
#[test]
fn exporter_models_run_verified_and_bit_exact() {
    if skipped_without_qemu() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    for name in [
        "skl_pipeline_wine",
        "skl_binary_zipmap_on",
        "torch_dynamo",
        "keras_tf2onnx",
    ] {
        let dir = models_dir().join("exporters");
        let out = work.path().join(name);
        let (model, data) = (
            dir.join(format!("{name}.onnx")),
            dir.join(format!("{name}.csv")),
        );
        ceg4n_succeeds(&[
            "run".as_ref(),
            model.as_os_str(),
            "--data".as_ref(),
            data.as_os_str(),
            "--quiet".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(report["verified"], true, "{name}");
        assert_eq!(report["accuracy"]["floor_met"], true, "{name}");
        assert_eq!(
            report["device"]["bit_exact"], report["device"]["vectors"],
            "{name}"
        );
        if name == "skl_pipeline_wine" {
            let labels = serde_json::json!(["barbera", "barolo", "grignolino"]);
            assert_eq!(report["class_labels"], labels);
            let lib = std::fs::read_to_string(out.join("crate/src/lib.rs")).unwrap();
            assert!(lib.contains("pub const CLASS_LABELS"), "{name}");
        }
    }
}

/// `llvm-size`'s Berkeley totals of `elf`: (text + data, data + bss), if the tool is installed.
fn llvm_size(elf: &Path) -> Option<(u64, u64)> {
    let out = std::process::Command::new("llvm-size")
        .arg(elf)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let row: Vec<u64> = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .take(3)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    Some((row[0] + row[1], row[1] + row[2]))
}

#[test]
fn the_model_memory_is_measured_on_the_device_build() {
    if skipped_without_qemu() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let cases = cases();
    for board in ["microbit", "mps2-an386"] {
        let board = Board::find(None, board).unwrap();
        for case in &cases {
            let spec = spec(case, &board);
            let computed = spec.memory();
            let dir = work.path().join(format!("{}-{}", case.name, board.name));
            let measured = ceg4n::hil::measure_memory(
                &spec,
                Some(&board),
                &dir,
                &work.path().join("target"),
                Duration::from_secs(60),
                Kernels::Safe,
            )
            .unwrap();
            eprintln!("{} on {}: {computed:?} {measured:?}", case.name, board.name);
            let data = (computed.weight_bytes + computed.parameter_bytes) as u64;
            // The image holds every weight and parameter byte, plus the kernels' code.
            assert!(measured.model_flash_bytes > data, "{measured:?}");
            assert!(measured.model_flash_bytes < data + 4096, "{measured:?}");
            // Nothing static: buffers live on the stack only while `logits` runs.
            assert_eq!(measured.model_static_ram_bytes, 0, "{measured:?}");
            let stack = measured.stack_bytes.expect("QEMU ran the memory probe");
            assert!((8..2048).contains(&stack), "{measured:?}");
            // Our ELF reading is what llvm-size reports.
            let elf = dir.join("measure-memory.elf");
            let ours = ceg4n::hil::elf_memory(&elf).unwrap();
            match llvm_size(&elf) {
                Some((flash, ram)) => {
                    assert_eq!((ours.flash_bytes, ours.ram_bytes), (flash, ram));
                }
                None => eprintln!("llvm-size not installed: section sizes not cross-checked"),
            }
        }
    }
}

#[test]
fn generate_prints_the_measured_memory() {
    if skipped_without_qemu() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // Real boards' targets, with the stack measured on an emulated board of the same target:
    // with that board's memory map when the real one's differs (the RP2040's flash is at
    // 0x10000000, behind its boot loader; the micro:bit's at 0).
    for (board, target, emulated) in [
        ("nrf52840-dk", "thumbv7em-none-eabihf", "mps2-an386"),
        ("rp2040", "thumbv6m-none-eabi", "microbit"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ceg4n"))
            .arg("generate")
            .arg(models_dir().join("iris_mlp.onnx"))
            .arg("--props")
            .arg(models_dir().join("iris_props.json"))
            .args(["--bits", "4", "--board", board, "--out"])
            .arg(work.path().join(board))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("measured on a {target} build: model flash "))
                && stdout.contains(&format!(
                    "(painted, one inference on {emulated} under QEMU)"
                )),
            "{board}: {stdout}"
        );
    }
}
