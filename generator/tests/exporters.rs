//! Graphs as the exporters write them (models/exporters/, made by make.py with skl2onnx, torch
//! and tf2onnx): ceg4n's float model reproduces onnxruntime's recorded outputs and labels on
//! every test row, and reads the labels the way the user writes them.

mod common;

use ceg4n::data::Dataset;
use ceg4n::ir::{ClassLabels, HeadOutput, Network, Scores};
use ceg4n::onnx_import::import_path;
use common::root;

fn exporter_file(name: &str) -> std::path::PathBuf {
    root().join("models/exporters").join(name)
}

/// onnxruntime's numeric output (scores or logits) and label per row.
fn expected(name: &str) -> Vec<(Vec<f64>, String)> {
    let text = std::fs::read_to_string(exporter_file(&format!("{name}.expected.csv"))).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let (label, numbers) = cells.split_last().unwrap();
            let numbers = numbers.iter().map(|c| c.parse().unwrap()).collect();
            (numbers, label.to_string())
        })
        .collect()
}

/// What the graph outputs numerically, computed from ceg4n's f64 logits.
fn numeric_output(net: &Network, logits: &[f64], width: usize) -> Vec<f64> {
    let softmax = |l: &[f64]| {
        let max = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = l.iter().map(|v| (v - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.into_iter().map(|v| v / sum).collect::<Vec<f64>>()
    };
    match net.head.scores {
        None if net.head.binary => vec![logits[1]],
        None => logits.to_vec(),
        Some(Scores::Softmax) => softmax(logits),
        Some(Scores::LogSoftmax) => softmax(logits).iter().map(|p| p.ln()).collect(),
        Some(Scores::Sigmoid) => {
            let p = 1.0 / (1.0 + (-logits[1]).exp());
            if width == 1 {
                vec![p]
            } else {
                vec![1.0 - p, p]
            }
        }
    }
}

/// Every row: outputs within f32 rounding of onnxruntime's, the same label; and the float
/// accuracy on the user's labels equals onnxruntime's label accuracy exactly.
fn check(name: &str) -> Network {
    let net = import_path(&exporter_file(&format!("{name}.onnx"))).unwrap();
    let data = Dataset::load_csv_for(&exporter_file(&format!("{name}.csv")), &net).unwrap();
    let expected = expected(name);
    assert_eq!(data.features.len(), expected.len(), "{name}");
    let label_of = |class: usize| match &net.head.labels {
        Some(labels) => labels.label(class).unwrap(),
        None => class.to_string(),
    };
    let (mut ours, mut theirs) = (0, 0);
    for (row, ((x, truth), (output, label))) in data
        .features
        .iter()
        .zip(&data.labels)
        .zip(&expected)
        .enumerate()
    {
        let logits = net.logits(x);
        let computed = numeric_output(&net, &logits, output.len());
        assert_eq!(computed.len(), output.len(), "{name} row {row}");
        for (a, b) in computed.iter().zip(output) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{name} row {row}: ceg4n {computed:?}, onnxruntime {output:?}"
            );
        }
        let class = ceg4n::verify::Decision::ArgMax.pick(&logits);
        assert_eq!(&label_of(class), label, "{name} row {row}");
        ours += usize::from(class == *truth);
        theirs += usize::from(*label == label_of(*truth));
    }
    assert_eq!(
        ours, theirs,
        "{name}: float accuracy differs from onnxruntime's"
    );
    net
}

#[test]
fn skl2onnx_multiclass_with_and_without_zipmap() {
    for (name, output) in [
        ("skl_iris_zipmap_off", HeadOutput::Scores),
        ("skl_iris_zipmap_on", HeadOutput::ScoreMap),
    ] {
        let net = check(name);
        assert_eq!(net.head.scores, Some(Scores::Softmax));
        assert_eq!(net.head.outputs, [HeadOutput::Label, output]);
        assert_eq!(net.head.labels, Some(ClassLabels::Ints(vec![0, 1, 2])));
        assert!(!net.head.binary);
    }
}

#[test]
fn skl2onnx_binary_heads_decide_by_the_sign_of_one_logit() {
    for name in ["skl_binary_zipmap_off", "skl_binary_zipmap_on"] {
        let net = check(name);
        assert!(net.head.binary, "{name}");
        assert_eq!(net.head.scores, Some(Scores::Sigmoid));
        // The classes are iris 1 and 2: labels, not indices.
        assert_eq!(net.head.labels, Some(ClassLabels::Ints(vec![1, 2])));
        let last = net.layers.last().unwrap();
        assert_eq!(last.outputs(), 2);
        assert!(last.weights.row(0).iter().all(|w| *w == 0.0) && last.bias[0] == 0.0);
    }
}

#[test]
fn a_scaler_pipeline_keeps_raw_units_and_string_labels() {
    let net = check("skl_pipeline_wine");
    assert_eq!(net.input_ops.len(), 2, "Scaler = Sub offset, Mul scale");
    assert_eq!(net.head.outputs, [HeadOutput::Label, HeadOutput::ScoreMap]);
    let Some(ClassLabels::Strings(labels)) = &net.head.labels else {
        panic!("{:?}", net.head.labels)
    };
    assert_eq!(labels, &["barbera", "barolo", "grignolino"]);
    // Raw units: proline (feature 12) is in the hundreds in the data.
    let data = Dataset::load_csv_for(&exporter_file("skl_pipeline_wine.csv"), &net).unwrap();
    assert!(data.features.iter().all(|x| x[12] > 200.0));
}

#[test]
fn skl2onnx_defaults_opset_22_and_a_min_max_scaler() {
    // No target_opset: skl2onnx 1.20 writes opset 22, and MinMaxScaler as Cast, Mul, Add.
    let net = check("skl_default_opset");
    assert_eq!(net.input_ops.len(), 2, "Mul scale, Add offset");
    assert_eq!(net.layers.len(), 2);
    assert_eq!(net.head.labels, Some(ClassLabels::Ints(vec![0, 1, 2])));
}

#[test]
fn torch_torchscript_and_dynamo_exports() {
    for name in ["torch_torchscript", "torch_dynamo"] {
        let net = check(name);
        assert_eq!(net.head.outputs, [HeadOutput::Logits], "{name}");
        assert_eq!(net.layers.len(), 2);
    }
}

#[test]
fn keras_through_tf2onnx() {
    let net = check("keras_tf2onnx");
    assert_eq!(net.head.scores, Some(Scores::Softmax));
}

#[test]
fn a_label_the_model_does_not_know_is_named() {
    let net = import_path(&exporter_file("skl_pipeline_wine.onnx")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    let row = vec!["1"; 13].join(",");
    std::fs::write(&csv, format!("{row},barolo\n{row},chianti\n")).unwrap();
    let e = Dataset::load_csv_for(&csv, &net).unwrap_err().to_string();
    assert!(
        e.contains("line 2: label 'chianti' is not one of the model's class labels"),
        "{e}"
    );
}

#[test]
fn exporter_idioms_at_the_oldest_and_newest_opsets() {
    // Cast, Sub/Div normalisation, MatMul with a Transpose of a constant, BatchNormalization
    // folded into the layer, Gemm with alpha, beta and transB, dynamic batch.
    for name in ["idioms_opset9", "idioms_opset21", "idioms_opset28"] {
        let net = check(name);
        assert_eq!(net.layers.len(), 2, "{name}");
        assert_eq!(net.input_ops.len(), 2, "{name}");
    }
}

#[test]
fn heads_that_could_change_the_class_are_refused_with_the_reason() {
    let error = |name: &str| {
        import_path(&exporter_file(&format!("refused_{name}.onnx")))
            .unwrap_err()
            .to_string()
    };
    let e = error("shifted_scores");
    assert!(e.contains("node 'q' (op Add)"), "{e}");
    assert!(
        e.contains("a function of the logits that keeps their argmax"),
        "{e}"
    );
    let e = error("argmax_last");
    assert!(e.contains("select_last_index=1"), "{e}");
}
