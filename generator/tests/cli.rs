//! The `ceg4n` binary: JSON contracts and one-line errors with a non-zero exit, never a panic.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn ceg4n(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_ceg4n"))
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Fails unless the run exited non-zero with exactly one line on stderr containing `needle`.
fn assert_one_line_error(run: &Run, needle: &str) {
    assert_ne!(run.code, 0, "must fail: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "panic: {}", run.stderr);
    assert_eq!(
        run.stderr.trim_end().lines().count(),
        1,
        "one line: {}",
        run.stderr
    );
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(
        run.stderr.contains(needle),
        "expected '{needle}' in: {}",
        run.stderr
    );
}

#[test]
fn inspect_json_has_the_documented_keys() {
    let run = ceg4n(&["inspect", path(&model_file("digits_mlp.onnx")), "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["params"], 64 * 16 + 16 + 16 * 10 + 10);
    assert_eq!(v["inputs"][0]["name"], "pixels");
    assert_eq!(v["outputs"][0]["name"], "probabilities");
    assert_eq!(
        v["layers"][0],
        serde_json::json!({"kind": "dense", "in": 64, "out": 16, "activation": "relu"})
    );
    assert_eq!(v["layers"][1]["activation"], "none");
    let text = ceg4n(&["inspect", path(&model_file("iris_mlp.onnx"))]);
    assert!(
        text.stdout.contains("layer 1  dense   10 -> 8    relu"),
        "{}",
        text.stdout
    );
}

#[test]
fn eval_json_reports_float_and_quantized_accuracy() {
    let model = model_file("iris_mlp.onnx");
    let csv = model_file("iris_test.csv");
    let run = ceg4n(&[
        "eval",
        path(&model),
        "--data",
        path(&csv),
        "--bits",
        "8",
        "--act-bits",
        "8",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["rows"], 30);
    assert_eq!(v["float_accuracy"], 1.0);
    assert_eq!(v["quantized_accuracy"], 1.0);
    assert!(v["max_abs_diff_vs_reference"].is_null());

    let float_only = ceg4n(&["eval", path(&model), "--data", path(&csv), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&float_only.stdout).unwrap();
    assert!(v["quantized_accuracy"].is_null());
}

#[test]
fn eval_on_properties_compares_logits_with_the_recorded_ones() {
    let props = model_file("iris_props.json");
    let run = ceg4n(&[
        "eval",
        path(&model_file("iris_mlp.onnx")),
        "--data",
        path(&props),
        "--bits",
        "16",
        "--act-bits",
        "16",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["rows"], 9);
    assert!(v["max_abs_diff_vs_reference"].as_f64().unwrap() <= 1e-4);
    assert_eq!(v["quantized_agreement_with_float"], 1.0);
}

#[test]
fn bad_inputs_fail_with_one_line_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let iris = model_file("iris_mlp.onnx");
    let csv = model_file("iris_test.csv");

    let truncated = dir.path().join("truncated.onnx");
    let bytes = std::fs::read(&iris).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_one_line_error(
        &ceg4n(&["inspect", path(&truncated)]),
        "truncated.onnx: not a valid ONNX model",
    );

    assert_one_line_error(
        &ceg4n(&["inspect", path(&fixture("unsupported_sigmoid.onnx"))]),
        "node 'squash' (op Sigmoid): Sigmoid over 3 logits is a multi-label head; supported: Sigmoid of a single logit",
    );
    assert_one_line_error(
        &ceg4n(&["inspect", path(&fixture("unsupported_conv.onnx"))]),
        "op Conv",
    );

    let wrong_columns = dir.path().join("wrong.csv");
    std::fs::write(&wrong_columns, "a,b,c,label\n0.1,0.2,0.3,1\n").unwrap();
    assert_one_line_error(
        &ceg4n(&["eval", path(&iris), "--data", path(&wrong_columns)]),
        "wrong.csv line 2: 4 columns, expected 5 (4 features + label)",
    );

    for bits in ["1", "40"] {
        assert_one_line_error(
            &ceg4n(&["eval", path(&iris), "--data", path(&csv), "--bits", bits]),
            &format!("--bits {bits} is out of range; supported widths: 2..=16 bits"),
        );
    }
    assert_one_line_error(
        &ceg4n(&[
            "eval",
            path(&iris),
            "--data",
            path(&csv),
            "--bits",
            "8",
            "--act-bits",
            "0",
        ]),
        "--act-bits 0 is out of range",
    );
    assert_one_line_error(
        &ceg4n(&["inspect", "/no/such/model.onnx"]),
        "cannot read /no/such/model.onnx",
    );

    let not_props = dir.path().join("props.json");
    std::fs::write(&not_props, "{\"x\": 1}").unwrap();
    assert_one_line_error(
        &ceg4n(&["eval", path(&iris), "--data", path(&not_props)]),
        "not a CEG4N property file",
    );
}

#[test]
fn verify_exits_zero_only_when_every_box_is_proved() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_file("iris_mlp.onnx");
    let all = model_file("iris_props.json");
    let props: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&all).unwrap()).unwrap();
    let small: Vec<_> = props
        .into_iter()
        // Away from test point 1, which sits on a float decision boundary (any quantization
        // disagrees somewhere next to it).
        .filter(|p| p["ball_size"] == 0.01 && !p["id"].as_str().unwrap().starts_with("1."))
        .collect();
    let small_path = dir.path().join("small.json");
    std::fs::write(&small_path, serde_json::to_string(&small).unwrap()).unwrap();

    let run = ceg4n(&[
        "verify",
        path(&model),
        "--props",
        path(&small_path),
        "--bits",
        "8",
        "--act-bits",
        "8",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["summary"]["proved"], small.len());
    assert_eq!(v["boxes"][0]["status"], "proved");
    assert!(v["boxes"][0]["counterexample"].is_null());

    let run = ceg4n(&[
        "verify",
        path(&model),
        "--props",
        path(&all),
        "--bits",
        "2",
        "--act-bits",
        "8",
        "--json",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let boxes = v["boxes"].as_array().unwrap();
    let ce = boxes
        .iter()
        .find(|b| b["status"] == "counterexample")
        .expect("2-bit weights give a counterexample");
    assert_ne!(
        ce["counterexample"]["float_class"],
        ce["counterexample"]["quantized_class"]
    );
    assert_eq!(v["summary"]["unknown"], 0);

    assert_one_line_error(
        &ceg4n(&[
            "verify",
            path(&model),
            "--props",
            path(&all),
            "--timeout",
            "0",
        ]),
        "--timeout 0 must be a positive number of seconds",
    );
}

#[test]
fn verify_epsilon_is_honoured() {
    let model = model_file("iris_mlp.onnx");
    let props = model_file("iris_props.json");
    let loose = ceg4n(&[
        "verify",
        path(&model),
        "--props",
        path(&props),
        "--bits",
        "8",
        "--epsilon",
        "2",
        "--json",
    ]);
    assert_eq!(loose.code, 0, "{}{}", loose.stdout, loose.stderr);
    let tight = ceg4n(&[
        "verify",
        path(&model),
        "--props",
        path(&props),
        "--bits",
        "8",
        "--epsilon",
        "1e-5",
        "--json",
    ]);
    assert_eq!(tight.code, 1, "{}", tight.stderr);
    let v: serde_json::Value = serde_json::from_str(&tight.stdout).unwrap();
    for b in v["boxes"].as_array().unwrap() {
        assert_eq!(b["status"], "counterexample");
        assert!(b["counterexample"]["max_abs_diff"].as_f64().unwrap() > 1e-5);
    }
    assert_one_line_error(
        &ceg4n(&[
            "verify",
            path(&model),
            "--props",
            path(&props),
            "--epsilon",
            "-1",
        ]),
        "--epsilon -1 must be a non-negative number",
    );
}

#[test]
fn refine_writes_a_report_with_the_documented_keys() {
    let out = tempfile::tempdir().unwrap();
    let run = ceg4n(&[
        "refine",
        path(&model_file("iris_mlp.onnx")),
        "--props",
        path(&model_file("iris_props.json")),
        "--data",
        path(&model_file("iris_test.csv")),
        "--out",
        path(out.path()),
        "--quiet",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let printed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let text = std::fs::read_to_string(out.path().join("report.json")).unwrap();
    let written: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(printed, written);
    for key in [
        "weight_bits",
        "activation_bits",
        "weight_storage_bits",
        "paper_storage_bits",
        "boxes",
        "proved",
        "verified",
        "rounds",
        "counterexamples",
        "verifier_calls",
        "seconds",
        "accuracy",
        "excluded",
        "model_sha256",
    ] {
        assert!(written.get(key).is_some(), "missing {key}");
    }
    assert_eq!(written["verified"], true);
    assert_eq!(written["proved"], 9);
    let acc = &written["accuracy"];
    for key in ["float", "quantized", "uniform_baseline", "agreement"] {
        assert!(acc[key].as_f64().unwrap() > 0.3, "{key}: {acc}");
    }
    assert_eq!(acc["min_agreement"], 0.99);
    assert_eq!(acc["floor_met"], true);
    assert!(acc["agreement"].as_f64().unwrap() >= 0.99, "{acc}");
    assert!(written["rows_set_aside"].as_array().unwrap().is_empty());
    assert_eq!(written["stop"], "every_box_proved");
    let report = ceg4n::report::RefineReport::load(&out.path().join("report.json")).unwrap();
    assert!(report.config().is_some());
}

#[test]
fn refine_without_props_boxes_data_rows_and_writes_them() {
    let out = tempfile::tempdir().unwrap();
    let run = ceg4n(&[
        "refine",
        path(&model_file("iris_mlp.onnx")),
        "--data",
        path(&model_file("iris_test.csv")),
        "--boxes",
        "6",
        "--out",
        path(out.path()),
        "--quiet",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let boxes_file = out.path().join("boxes.json");
    assert_eq!(report["props"], path(&boxes_file));
    // The written boxes are a CEG4N property file: 6 rows, 2 per float class (iris has 3).
    let props = ceg4n::data::load_properties(&boxes_file, 4).unwrap();
    assert_eq!(props.len(), 6);
    let net = ceg4n::onnx_import::import_path(&model_file("iris_mlp.onnx")).unwrap();
    let mut per_class = [0; 3];
    for p in &props {
        per_class[net.classify(&p.x)] += 1;
        assert!(p.id.starts_with("row "), "{}", p.id);
    }
    assert_eq!(per_class, [2, 2, 2]);
    assert_eq!(report["verified"], true, "{}", report["stop_reason"]);
    assert!(report["accuracy"]["agreement"].as_f64().unwrap() >= 0.99);
    // Without --data nothing but the boxes constrains accuracy: said once, on stderr.
    let run = ceg4n(&[
        "refine",
        path(&model_file("iris_mlp.onnx")),
        "--props",
        path(&boxes_file),
        "--out",
        path(out.path()),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stderr
            .matches("nothing but the boxes constrains accuracy")
            .count(),
        1,
        "{}",
        run.stderr
    );
    // Neither boxes nor data: one line.
    let run = ceg4n(&["refine", path(&model_file("iris_mlp.onnx"))]);
    assert_ne!(run.code, 0);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[test]
fn boards_are_bundled_and_a_board_dir_adds_more() {
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ceg4n"))
            .args(args)
            .current_dir(elsewhere.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // From a directory that is not the checkout: the bundled boards are in the binary.
    let (code, listed) = run(&["boards"]);
    assert_eq!(code, Some(0));
    assert!(
        listed.contains("mps2-an386") && listed.contains("microbit"),
        "{listed}"
    );
    let extra = elsewhere.path().join("boards");
    std::fs::create_dir(&extra).unwrap();
    std::fs::write(
        extra.join("my-board.toml"),
        "name = \"my-board\"\ndescription = \"a test board\"\ncore = \"cortex-m4f\"\ntarget = \"thumbv7em-none-eabihf\"\nflash_origin = 0\nflash_length = 65536\nram_origin = 536870912\nram_length = 16384\nprobe_rs_chip = \"STM32F401CCUx\"\n",
    )
    .unwrap();
    let (code, listed) = run(&["boards", "--board-dir", path(&extra)]);
    assert_eq!(code, Some(0));
    assert!(
        listed.contains("my-board") && listed.contains("mps2-an386"),
        "{listed}"
    );
}

#[test]
fn exit_codes_tell_bad_input_from_a_failing_tool() {
    // A real board without a probe: the device is missing (3), not the user's input (2).
    let out = tempfile::tempdir().unwrap();
    let run = ceg4n(&[
        "hil",
        "--board",
        "nrf52840-dk",
        "--report",
        path(&out.path().join("missing.json")),
    ]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let run = ceg4n(&["boards", "--board-dir", path(&out.path().join("nope"))]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

/// `refine --epsilon`: refinement under the paper's epsilon-equivalence (ACAS Xu's property).
/// Whatever the search reaches in its time limit, the report says which property it proved,
/// and every box it reports proved is proved again from scratch by `verify` at its bits.
#[test]
fn refine_under_epsilon_equivalence_reports_what_verify_proves_again() {
    let out = tempfile::tempdir().unwrap();
    let props: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(model_file("iris_props.json")).unwrap())
            .unwrap();
    let first: Vec<&serde_json::Value> = props
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| id.starts_with("1.")))
        .collect();
    let props_file = out.path().join("props.json");
    std::fs::write(&props_file, serde_json::to_string(&first).unwrap()).unwrap();
    let report_dir = out.path().join("refine");
    #[rustfmt::skip]
    let run = ceg4n(&[
        "refine", path(&model_file("iris_mlp.onnx")), "--props", path(&props_file),
        "--epsilon", "0.5", "--timeout", "2", "--time-limit", "20", "--quiet",
        "--out", path(&report_dir),
    ]);
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["epsilon"], 0.5);
    let proved: Vec<&str> = report["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["status"] == "proved")
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    if proved.is_empty() {
        return;
    }
    let again: Vec<&&serde_json::Value> = first
        .iter()
        .filter(|p| proved.contains(&p["id"].as_str().unwrap()))
        .collect();
    let again_file = out.path().join("proved.json");
    std::fs::write(&again_file, serde_json::to_string(&again).unwrap()).unwrap();
    let list = |key: &str| {
        report[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let (bits, act_bits) = (list("weight_bits"), list("activation_bits"));
    let input_bits = report["input_bits"].to_string();
    let model = model_file("iris_mlp.onnx");
    let mut args = vec![
        "verify",
        path(&model),
        "--props",
        path(&again_file),
        "--bits",
        &bits,
        "--act-bits",
        &act_bits,
        "--input-bits",
        &input_bits,
        "--epsilon",
        "0.5",
        "--timeout",
        "60",
    ];
    if report["per_channel"] == true {
        args.push("--per-channel");
    }
    let verify = ceg4n(&args);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
}
