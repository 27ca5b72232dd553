//! Generated crates: the vendored runtime is ceg4n-runtime byte for byte, the layout of a small
//! crate is pinned by a snapshot, and a generated crate builds for the three Cortex-M targets
//! and reproduces the host model's logits bit for bit in its own tests (offline).

mod common;

use std::process::Command;

use ceg4n::board::{Board, BootBlock};
use ceg4n::codegen::{
    vectors, Certificate, CertifiedBox, CrateSpec, RUNTIME_FILES, RUNTIME_SOURCE,
};
use ceg4n::data::load_properties;
use ceg4n::onnx_import::import_path;
use ceg4n::quantize::QuantConfig;
use ceg4n::task::Task;
use common::*;

fn iris_crate(dir: &std::path::Path, bits: &[u32], act_bits: &[u32]) -> usize {
    labelled_iris_crate(dir, bits, act_bits, None)
}

/// [`iris_crate`], with class labels as an exporter's class table would give them.
fn labelled_iris_crate(
    dir: &std::path::Path,
    bits: &[u32],
    act_bits: &[u32],
    labels: Option<ceg4n::ir::ClassLabels>,
) -> usize {
    model_crate(
        dir,
        ("iris_mlp.onnx", "iris_props.json"),
        bits,
        act_bits,
        labels,
    )
}

/// A crate of a bundled `(model, boxes)` for the Cortex-M4F board.
fn model_crate(
    dir: &std::path::Path,
    models: (&str, &str),
    bits: &[u32],
    act_bits: &[u32],
    labels: Option<ceg4n::ir::ClassLabels>,
) -> usize {
    let board = Board::find(None, "mps2-an386").unwrap();
    board_crate(dir, models, bits, act_bits, labels, &board)
}

/// [`model_crate`] for `board`.
fn board_crate(
    dir: &std::path::Path,
    (model, boxes): (&str, &str),
    bits: &[u32],
    act_bits: &[u32],
    labels: Option<ceg4n::ir::ClassLabels>,
    board: &Board,
) -> usize {
    let model = model_file(model);
    let net = import_path(&model).unwrap();
    let props = load_properties(&model_file(boxes), net.input_len()).unwrap();
    let task = Task::new(&model, net, props);
    let config = QuantConfig::for_network(&task.net, bits, act_bits, 8, false, false).unwrap();
    let mut int_net = task.quantize(&config).unwrap();
    int_net.class_labels = labels;
    let spec = CrateSpec {
        name: "iris-snapshot".into(),
        net: &int_net,
        board,
        certificate: Certificate {
            model: model.file_name().unwrap().to_string_lossy().into_owned(),
            model_sha256: "0".repeat(64),
            verified: false,
            boxes: vec![CertifiedBox {
                id: "1.0".into(),
                status: ceg4n::codegen::CertifiedStatus::NotVerified,
            }],
            tool_version: "test".into(),
            fidelity: None,
            epsilon: None,
        },
        vectors: vectors(&int_net, &task.props[..1], &[], 1),
    };
    spec.write(dir, false).unwrap();
    spec.vectors.len()
}

#[test]
fn the_vendored_runtime_is_the_runtime() {
    let original = std::fs::read_to_string(root().join("runtime-nostd/src/lib.rs")).unwrap();
    assert_eq!(RUNTIME_SOURCE, original);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    iris_crate(&out, &[4], &[8]);
    // Every source file of the runtime, byte for byte.
    let sources: Vec<_> = std::fs::read_dir(root().join("runtime-nostd/src"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(sources.len(), RUNTIME_FILES.len(), "{sources:?}");
    for (file, text) in RUNTIME_FILES {
        let original =
            std::fs::read_to_string(root().join("runtime-nostd/src").join(file)).unwrap();
        assert_eq!(*text, original, "{file}");
        let vendored = std::fs::read_to_string(out.join("runtime/src").join(file)).unwrap();
        assert_eq!(vendored, original, "{file}");
    }
}

/// Pins the generated `src/lib.rs` of a small crate: a template change shows up as a diff here.
/// Set `UPDATE_SNAPSHOTS=1` to accept a deliberate change.
#[test]
fn generated_source_matches_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    iris_crate(&out, &[4], &[8]);
    let snapshot = fixture("snapshots/iris_4bit_lib.rs");
    let actual = std::fs::read_to_string(out.join("src/lib.rs")).unwrap();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(snapshot.parent().unwrap()).unwrap();
        std::fs::write(&snapshot, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap();
    assert_eq!(
        actual, expected,
        "generated source changed (UPDATE_SNAPSHOTS=1 to accept)"
    );
}

#[test]
fn an_existing_directory_is_never_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep").unwrap();
    let model = model_file("iris_mlp.onnx");
    let run = Command::new(env!("CARGO_BIN_EXE_ceg4n"))
        .args(["generate", model.to_str().unwrap(), "--props"])
        .arg(model_file("iris_props.json"))
        .args(["--bits", "4", "--board", "microbit", "--out"])
        .arg(&mine)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1);
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "keep"
    );
}

/// Runs `cargo --offline ARGS` in `dir` with `target` as its target directory; it must
/// succeed. Its standard output.
fn cargo_offline(dir: &std::path::Path, target: &std::path::Path, args: &[&str]) -> String {
    cargo_in(dir, target, &[&["--offline"][..], args].concat())
}

/// Fetches what a generated crate's board example needs (its dev-dependencies; the library
/// itself needs nothing), so that every later command can run offline.
fn fetch(dir: &std::path::Path, target: &std::path::Path) {
    cargo_in(dir, target, &["fetch"]);
}

/// Runs `cargo ARGS` in `dir` with `target` as its target directory; it must succeed. Its
/// standard output.
fn cargo_in(dir: &std::path::Path, target: &std::path::Path, args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(&cargo)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env("RUSTDOCFLAGS", "-D warnings")
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Builds a generated crate offline in a fresh directory for the three targets and runs its
/// host tests (bit-exact logits) and clippy.
#[test]
fn a_generated_crate_builds_for_cortex_m_and_matches_the_host_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("crate");
    let labels = ["setosa", "versicolor", "virginica"].map(String::from);
    let labels = ceg4n::ir::ClassLabels::Strings(labels.to_vec());
    let count = labelled_iris_crate(&out, &[3, 5, 4], &[6, 4], Some(labels));
    assert!(count >= 10);
    let target = dir.path().join("target");
    let run = |args: &[&str]| cargo_offline(&out, &target, args);
    fetch(&out, &target);
    // Every feature is the product's (the test-only corrupted model lives with the firmware):
    // the vectors pass, through the free functions and the `Classifier` trait, and so does
    // the crate documentation's example. On the host: the crate builds for its board by
    // default (.cargo/config.toml).
    let tested = run(&["test", "--target", "host-tuple", "--all-features"]);
    assert!(tested.contains("3 passed"), "{tested}");
    assert!(
        tested.contains("src/lib.rs - (line") && tested.contains("... ok"),
        "the crate doc's example: {tested}"
    );
    // Documentation builds without a warning (missing docs are denied in the crate).
    run(&["doc", "--no-deps"]);
    for target in [
        "thumbv6m-none-eabi",
        "thumbv7m-none-eabi",
        "thumbv7em-none-eabihf",
    ] {
        run(&["build", "--release", "--target", target]);
    }
    run(&[
        "clippy",
        "--target",
        "host-tuple",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]);

    // The `arm-dsp` build of a 4-bit digits crate for the Cortex-M4F: paired weights, whose
    // safe row loop runs on the host (the vectors must pass), whose assembly builds and lints
    // clean for the M4F (the device runs it: `hil` tests it bit for bit).
    let paired = dir.path().join("paired");
    let models = ("digits_mlp.onnx", "digits_props.json");
    model_crate(&paired, models, &[4], &[8], None);
    let lib = std::fs::read_to_string(paired.join("src/lib.rs")).unwrap();
    assert!(
        lib.contains("PairedWords::new(&LAYER0_WEIGHTS, 4)"),
        "{lib}"
    );
    let run_paired = |args: &[&str]| cargo_offline(&paired, &target, args);
    fetch(&paired, &target);
    let tested = run_paired(&["test", "--target", "host-tuple", "--features", "arm-dsp"]);
    assert!(
        tested.contains("logits_match_the_host_model_bit_for_bit ... ok"),
        "{tested}"
    );
    let dsp = ["--target", "thumbv7em-none-eabihf", "--features", "arm-dsp"];
    run_paired(&[&["build", "--release"][..], &dsp[..]].concat());
    run_paired(&[&["clippy"][..], &dsp[..], &["--", "-D", "warnings"][..]].concat());
}

/// The board example of a generated crate (`examples/classify.rs`, run by `cargo run --release
/// --example classify` through the runner in `.cargo/config.toml`; the QEMU boards run it in
/// the `hil` tests) builds and lints clean for every bundled board, real ones included, with
/// their memory maps; on the host it runs with std and agrees with the vectors. And the crate
/// is publishable: `cargo package` packages it and its vendored runtime, offline.
#[test]
fn the_board_example_builds_for_every_board_and_the_crate_packages_offline() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    let models = ("iris_mlp.onnx", "iris_props.json");
    let boards = Board::all(None).unwrap();
    assert!(boards.len() >= 12, "{boards:?}");
    for board in &boards {
        let out = dir.path().join(&board.name);
        board_crate(&out, models, &[4], &[8], None, board);
        let config = std::fs::read_to_string(out.join(".cargo/config.toml")).unwrap();
        assert!(config.contains(&format!("target = \"{}\"", board.target)));
        let runner = match (&board.qemu_machine, &board.probe_rs_chip) {
            (Some(machine), _) => format!("qemu-system-arm -M {machine}"),
            (None, Some(chip)) => format!("probe-rs run --chip {chip}"),
            (None, None) => panic!("{}: neither emulated nor a probe-rs chip", board.name),
        };
        assert!(config.contains(&runner), "{}: {config}", board.name);
        cargo_in(
            &out,
            &target,
            &["build", "--release", "--example", "classify"],
        );
        let elf = target.join(&board.target).join("release/examples/classify");
        let memory = ceg4n::hil::elf_memory(&elf).unwrap();
        assert!(memory.flash_bytes > 0, "{}", board.name);
        // Linked with the board's memory map: the vector table sits at its flash origin, after
        // the boot block the chip's boot ROM needs there.
        let vectors = elf_section_address(&elf, ".vector_table");
        match board.boot_block {
            None => assert_eq!(vectors, Some(board.flash_origin), "{}", board.name),
            Some(BootBlock::Rp2040Boot2) => {
                let boot2 = elf_section_address(&elf, ".boot2");
                assert_eq!(boot2, Some(board.flash_origin), "{}", board.name);
                assert_eq!(vectors, Some(board.flash_origin + 0x100), "{}", board.name);
            }
            Some(BootBlock::Rp2350ImageDef) => {
                assert_eq!(vectors, Some(board.flash_origin), "{}", board.name);
                let block = elf_section_address(&elf, ".start_block").unwrap();
                assert!(
                    block < board.flash_origin + 4096,
                    "{}: {block:#x}",
                    board.name
                );
            }
        }
    }
    // Lints: the emulated (semihosting) and the real-board (RTT) flavour.
    for name in ["mps2-an386", "nrf52840-dk"] {
        let out = dir.path().join(name);
        cargo_in(
            &out,
            &target,
            &["clippy", "--examples", "--", "-D", "warnings"],
        );
    }
    // On the host the example runs with std: every vector, then the summary.
    let an386 = dir.path().join("mps2-an386");
    let ran = cargo_offline(
        &an386,
        &target,
        &[
            "run",
            "--quiet",
            "--example",
            "classify",
            "--target",
            "host-tuple",
        ],
    );
    assert!(ran.starts_with("vector 0: class "), "{ran}");
    assert!(
        ran.ends_with(" vectors, 0 differ from the host model\n"),
        "{ran}"
    );
    // Publishable: the crate and its vendored runtime package (and build) offline.
    let listed = cargo_offline(&an386, &target, &["package", "--list"]);
    for file in [
        "examples/classify.rs",
        "memory.x",
        "build.rs",
        "src/arm_dsp.rs",
    ] {
        assert!(listed.contains(file), "{file} not packaged: {listed}");
    }
    cargo_offline(&an386, &target, &["package"]);
    let packaged = target.join("package");
    for name in ["iris-snapshot-0.1.0.crate", "ceg4n-runtime-0.1.0.crate"] {
        assert!(packaged.join(name).exists(), "{name}");
    }
}

/// The load address of an ELF section.
fn elf_section_address(elf: &std::path::Path, name: &str) -> Option<u64> {
    use object::{Object, ObjectSection};
    let data = std::fs::read(elf).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.section_by_name(name).map(|s| s.address())
}
