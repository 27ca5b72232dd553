//! The invariants ARCHITECTURE.md states, checked on the source tree (each rule there names
//! the test here that keeps it true).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path, text));
        }
    }
    out
}

/// The library's sources (the binary's live under src/bin).
fn library() -> Vec<(PathBuf, String)> {
    let src = root().join("generator/src");
    sources(&src)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(src.join("bin")))
        .collect()
}

fn cli() -> Vec<(PathBuf, String)> {
    sources(&root().join("generator/src/bin"))
}

fn name(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn only_the_importer_and_the_cross_check_read_onnx() {
    for (path, text) in library() {
        let file = path.file_name().unwrap().to_str().unwrap();
        let in_importer = path.components().any(|c| c.as_os_str() == "onnx_import");
        if text.contains("tract_onnx") {
            assert!(
                in_importer || file == "tract_reference.rs",
                "{} uses tract_onnx",
                name(&path)
            );
        }
    }
}

#[test]
fn the_cli_is_thin() {
    for (path, text) in cli() {
        let lines = text.lines().count();
        assert!(lines <= 500, "{}: {lines} lines", name(&path));
        // Pipeline steps are library calls: the CLI never builds tasks, quantizes, verifies a
        // box or runs the refinement loop itself.
        for needle in [
            "Task::",
            "quantize::quantize",
            "verify_box(",
            "ceg4n::refine::refine",
            "hil::run_model",
        ] {
            assert!(
                !text.contains(needle),
                "{} calls {needle}: that belongs in the library (pipeline)",
                name(&path)
            );
        }
    }
}

#[test]
fn library_files_do_one_job_each() {
    for (path, text) in library() {
        let lines = text.lines().count();
        assert!(
            lines <= 750,
            "{}: {lines} lines; split it by job",
            name(&path)
        );
    }
}

#[test]
fn states_are_enums_not_strings() {
    for (path, text) in library() {
        for needle in ["status == \"", "status != \"", "status.as_str()"] {
            assert!(
                !text.contains(needle),
                "{} compares a state as a string ({needle})",
                name(&path)
            );
        }
    }
}

#[test]
fn the_library_speaks_its_own_error_type() {
    // anyhow is the binary's: library functions return `ceg4n::Result`, whose error kind
    // decides the exit code.
    for (path, text) in library() {
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        assert!(
            !code.contains("anyhow"),
            "{} uses anyhow; return ceg4n::Result",
            name(&path)
        );
    }
}

#[test]
fn nothing_is_looked_up_in_the_build_tree_at_run_time() {
    // Assets are embedded (include_str!, include_bytes!, include_dir!): an installed binary
    // needs no checkout.
    for (path, text) in library().into_iter().chain(cli()) {
        assert!(
            !text.contains("env!(\"CARGO_MANIFEST_DIR\")"),
            "{} reads CARGO_MANIFEST_DIR at run time",
            name(&path)
        );
    }
}

#[test]
fn the_runtime_depends_on_nothing() {
    let manifest = std::fs::read_to_string(root().join("runtime-nostd/Cargo.toml")).unwrap();
    let table: toml::Table = manifest.parse().unwrap();
    let deps = table.get("dependencies").and_then(|d| d.as_table());
    assert!(
        deps.is_none_or(|d| d.is_empty()),
        "runtime dependencies: {deps:?}"
    );
    let lib = std::fs::read_to_string(root().join("runtime-nostd/src/lib.rs")).unwrap();
    assert!(lib.contains("#![no_std]"));
    // No unsafe code but the opt-in `arm-dsp` feature's assembly, in its own file.
    assert!(lib.contains("#![cfg_attr(not(feature = \"arm-dsp\"), forbid(unsafe_code))]"));
    assert!(lib.contains("#![cfg_attr(feature = \"arm-dsp\", deny(unsafe_code))]"));
    assert!(lib.contains("#[cfg(all(feature = \"arm-dsp\", target_arch = \"arm\"))]\nmod arm_dsp;"));
    let mut code = String::new();
    for entry in std::fs::read_dir(root().join("runtime-nostd/src")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name != "arm_dsp.rs" {
            let uses_unsafe = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .any(|l| {
                    ["unsafe {", "unsafe fn", "unsafe impl"]
                        .iter()
                        .any(|u| l.contains(u))
                });
            assert!(!uses_unsafe, "{name}: unsafe outside arm_dsp.rs");
        }
        code.push_str(&text);
    }
    // No float type in code (identifiers such as `quantize_f64_bits` and comments aside).
    let in_identifier = |c: Option<char>| c.is_some_and(|c| c == '_' || c.is_alphanumeric());
    for line in code.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
        for float in ["f32", "f64"] {
            for (at, _) in line.match_indices(float) {
                let before = line[..at].chars().next_back();
                let after = line[at + 3..].chars().next();
                assert!(
                    in_identifier(before) || in_identifier(after),
                    "the runtime computes no float: {line}"
                );
            }
        }
    }
}
