//! The importer against real exports, tract's own inference, and malformed models.

mod common;

use ceg4n::data::Dataset;
use ceg4n::ir::{Activation, HeadOutput, InputOp, Scores};
use ceg4n::onnx_import::{import_bytes, import_path};
use ceg4n::tract_reference::TractReference;
use common::*;
use prost::Message;

/// Float evaluator vs tract on random inputs spanning each model's data range.
fn assert_matches_tract(path: &std::path::Path, lo: f64, hi: f64) {
    let net = import_path(path).unwrap();
    let reference = TractReference::load(path, &net).unwrap();
    let mut rng = rng(1);
    for _ in 0..200 {
        let x = random_vector(&mut rng, net.input_len(), lo, hi);
        // Round through f32 so both evaluate the same input.
        let x: Vec<f64> = x.iter().map(|v| *v as f32 as f64).collect();
        let ours = net.logits(&x);
        let xf: Vec<f32> = x.iter().map(|v| *v as f32).collect();
        let theirs = reference.logits(&xf).unwrap();
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(&theirs) {
            let tolerance = 1e-4 * (1.0 + b.abs() as f64);
            assert!(
                (a - *b as f64).abs() <= tolerance,
                "{}: ours {a} vs tract {b} at {x:?}",
                path.display()
            );
        }
    }
}

#[test]
fn bundled_models_match_tract() {
    assert_matches_tract(&model_file("iris_mlp.onnx"), 0.0, 1.0);
    assert_matches_tract(&model_file("digits_mlp.onnx"), 0.0, 16.0);
    assert_matches_tract(&model_file("wine_mlp.onnx"), 0.0, 1000.0);
    assert_matches_tract(&fixture("relu_after_last_opset21.onnx"), -2.0, 2.0);
}

#[test]
fn exporter_styles_are_understood() {
    let iris = import_path(&model_file("iris_mlp.onnx")).unwrap();
    assert_eq!(iris.layers.len(), 3);
    assert_eq!(iris.input_len(), 4);
    assert_eq!(iris.output_len(), 3);
    assert!(iris.input_ops.is_empty());
    assert_eq!(iris.layers[0].activation, Activation::Relu);
    assert_eq!(iris.layers[2].activation, Activation::None);
    assert_eq!(iris.param_count(), 4 * 10 + 10 + 10 * 8 + 8 + 8 * 3 + 3);

    let digits = import_path(&model_file("digits_mlp.onnx")).unwrap();
    assert!(matches!(digits.input_ops.as_slice(), [InputOp::Div(_)]));
    assert_eq!(digits.head.scores, Some(Scores::Softmax));
    assert_eq!(digits.layers[0].weights.shape(), &[16, 64]);

    let wine = import_path(&model_file("wine_mlp.onnx")).unwrap();
    assert!(matches!(
        wine.input_ops.as_slice(),
        [InputOp::Sub(_), InputOp::Div(_)]
    ));
    assert_eq!(wine.head.outputs, [HeadOutput::ClassIndex]);
    assert_eq!(wine.logits_name, "logits");

    let tail = import_path(&fixture("relu_after_last_opset21.onnx")).unwrap();
    assert_eq!(tail.layers.last().unwrap().activation, Activation::Relu);
}

#[test]
fn float_accuracy_of_bundled_models_is_the_trained_one() {
    for (model, csv) in BUNDLED {
        let net = import_path(&model_file(model)).unwrap();
        let data = Dataset::load_csv(&model_file(csv), net.input_len()).unwrap();
        let correct = data
            .features
            .iter()
            .zip(&data.labels)
            .filter(|(x, y)| net.classify(x) == **y)
            .count();
        let accuracy = correct as f64 / data.labels.len() as f64;
        assert!(accuracy > 0.9, "{model}: float accuracy {accuracy}");
    }
}

fn error_of(result: ceg4n::Result<ceg4n::ir::Network>) -> String {
    let error = result.expect_err("import must fail");
    assert!(
        matches!(error, ceg4n::Error::Import(_) | ceg4n::Error::Input(_)),
        "{error:?}"
    );
    error.to_string()
}

#[test]
fn unsupported_ops_are_named_with_the_node_and_the_supported_list() {
    let e = error_of(import_path(&fixture("unsupported_sigmoid.onnx")));
    assert!(e.contains("node 'squash' (op Sigmoid)"), "{e}");
    assert!(
        e.contains("multi-label head; supported: Sigmoid of a single logit"),
        "{e}"
    );
    let e = error_of(import_path(&fixture("unsupported_conv.onnx")));
    assert!(e.contains("node 'conv1' (op Conv)"), "{e}");
    assert!(e.contains("supported: Gemm, MatMul"), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn truncated_and_garbage_files_are_rejected() {
    let bytes = std::fs::read(model_file("iris_mlp.onnx")).unwrap();
    for cut in [1, 10, bytes.len() / 2, bytes.len() - 3] {
        let e = error_of(import_bytes(&bytes[..cut]));
        assert!(
            e.contains("not a valid ONNX model") || e.contains("no graph"),
            "cut {cut}: {e}"
        );
    }
    let e = error_of(import_bytes(b"this is not onnx at all"));
    assert!(e.contains("not a valid ONNX model"), "{e}");
    let e = error_of(import_path(std::path::Path::new("/nonexistent/model.onnx")));
    assert!(e.contains("cannot read /nonexistent/model.onnx"), "{e}");
}

#[test]
fn opsets_outside_8_to_28_are_rejected() {
    let bytes = std::fs::read(model_file("iris_mlp.onnx")).unwrap();
    for (opset, ok) in [(7, false), (8, true), (22, true), (28, true), (29, false)] {
        let mut proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
        proto.opset_import[0].version = opset;
        let result = import_bytes(&proto.encode_to_vec());
        assert_eq!(result.is_ok(), ok, "opset {opset}");
        if !ok {
            assert!(error_of(result).contains(&format!(
                "opset {opset} is not supported (supported: 8..=28)"
            )));
        }
    }
}

#[test]
fn branching_graphs_are_rejected() {
    let bytes = std::fs::read(model_file("iris_mlp.onnx")).unwrap();
    let mut proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = proto.graph.as_mut().unwrap();
    // Feed the first ReLU's input also into a second ReLU: a branch.
    let mut extra = graph.node[2].clone();
    extra.output = vec!["branch".into()];
    extra.name = "second_use".into();
    graph.node.push(extra);
    let e = error_of(import_bytes(&proto.encode_to_vec()));
    assert!(e.contains("used twice"), "{e}");
}
