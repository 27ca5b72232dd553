//! The quantizer and the host integer model.

mod common;

use ceg4n::data::{load_properties, Dataset};
use ceg4n::int_model::{AccWidth, Bias, LayerOutput};
use ceg4n::ir::Network;
use ceg4n::onnx_import::import_path;
use ceg4n::quantize::{quantize, requant_step, Calibration, QuantConfig};
use common::*;
use proptest::prelude::*;

fn config(net: &Network, w: u32, a: u32) -> QuantConfig {
    QuantConfig::for_network(net, &[w], &[a], 16, false, false).unwrap()
}

fn agreement(net: &Network, int_net: &ceg4n::int_model::IntNetwork, points: &[Vec<f64>]) -> f64 {
    let same = points
        .iter()
        .filter(|x| net.classify(x) == int_net.classify(x))
        .count();
    same as f64 / points.len() as f64
}

#[test]
fn sixteen_bits_keep_every_class_on_bundled_data_and_property_centres() {
    for (model, csv) in BUNDLED {
        let net = import_path(&model_file(model)).unwrap();
        let data = Dataset::load_csv(&model_file(csv), net.input_len()).unwrap();
        let cal = Calibration::from_points(&net, &data.features);
        let int_net = quantize(&net, &config(&net, 16, 16), &cal).unwrap();
        assert_eq!(agreement(&net, &int_net, &data.features), 1.0, "{model}");
    }
    for (model, props) in [
        ("iris_mlp.onnx", "iris_props.json"),
        ("digits_mlp.onnx", "digits_props.json"),
    ] {
        let net = import_path(&model_file(model)).unwrap();
        let props = load_properties(&model_file(props), net.input_len()).unwrap();
        let cal = Calibration::from_boxes(&net, &props);
        let int_net = quantize(&net, &config(&net, 16, 16), &cal).unwrap();
        let centres: Vec<Vec<f64>> = props.iter().map(|p| p.x.clone()).collect();
        assert_eq!(agreement(&net, &int_net, &centres), 1.0, "{model}");
    }
}

#[test]
fn eight_bits_keep_test_accuracy_within_a_few_points() {
    for (model, csv) in BUNDLED {
        let net = import_path(&model_file(model)).unwrap();
        let data = Dataset::load_csv(&model_file(csv), net.input_len()).unwrap();
        let cal = Calibration::from_points(&net, &data.features);
        let int_net = quantize(&net, &config(&net, 8, 8), &cal).unwrap();
        let accuracy = |f: &dyn Fn(&Vec<f64>) -> usize| {
            data.features
                .iter()
                .zip(&data.labels)
                .filter(|(x, y)| f(x) == **y)
                .count() as f64
                / data.labels.len() as f64
        };
        let float = accuracy(&|x| net.classify(x));
        let quant = accuracy(&|x| int_net.classify(x));
        assert!(
            quant >= float - 0.03,
            "{model}: float {float}, 8-bit {quant}"
        );
    }
}

#[test]
fn every_parameter_respects_its_width_and_the_accumulator_bound_holds() {
    let net = import_path(&model_file("digits_mlp.onnx")).unwrap();
    let data = Dataset::load_csv(&model_file("digits_test.csv"), net.input_len()).unwrap();
    let cal = Calibration::from_points(&net, &data.features);
    for (w, a) in [(2, 2), (3, 5), (8, 8), (16, 16)] {
        let int_net = quantize(&net, &config(&net, w, a), &cal).unwrap();
        for layer in &int_net.layers {
            let max = (1i32 << (w - 1)) - 1;
            assert!(
                layer.weights.iter().all(|q| (*q as i32).abs() <= max),
                "{w} bits"
            );
            match (&layer.bias, layer.accumulator) {
                (Bias::I32(_), AccWidth::I32) | (Bias::I64(_), AccWidth::I64) => {}
                _ => panic!("bias type does not match the accumulator"),
            }
            assert_eq!(
                layer.accumulator == AccWidth::I32,
                layer.accumulator_bound <= i32::MAX as i128
            );
            if let LayerOutput::Activations {
                range, bits, relu, ..
            } = &layer.output
            {
                assert_eq!(*bits, a);
                assert!(*relu);
                assert_eq!((range.min, range.max), (0, (1 << a) - 1));
            }
        }
    }
}

#[test]
fn wide_layers_get_a_64_bit_accumulator() {
    let net = import_path(&model_file("digits_mlp.onnx")).unwrap();
    let data = Dataset::load_csv(&model_file("digits_test.csv"), net.input_len()).unwrap();
    let cal = Calibration::from_points(&net, &data.features);
    // 64 inputs * 2^15 * 2^15 exceeds i32: the first layer needs i64 at 16/16 bits.
    let int_net = quantize(&net, &config(&net, 16, 16), &cal).unwrap();
    assert_eq!(int_net.layers[0].accumulator, AccWidth::I64);
    let int_net = quantize(&net, &config(&net, 4, 8), &cal).unwrap();
    assert_eq!(int_net.layers[1].accumulator, AccWidth::I32);
}

#[test]
fn bit_widths_out_of_range_or_miscounted_are_refused() {
    let net = import_path(&model_file("iris_mlp.onnx")).unwrap();
    for bits in [0, 1, 17, 40] {
        let e = QuantConfig::for_network(&net, &[bits], &[8], 16, false, false).unwrap_err();
        assert!(
            format!("{e}").contains("supported widths: 2..=16 bits"),
            "{e}"
        );
    }
    let e = QuantConfig::for_network(&net, &[8, 8], &[8], 16, false, false).unwrap_err();
    assert!(format!("{e}").contains("network has 3 layers"), "{e}");
    // One activation width per hidden layer, or per layer (the last is ignored).
    assert!(QuantConfig::for_network(&net, &[4, 5, 6], &[7, 9], 16, false, false).is_ok());
    assert!(QuantConfig::for_network(&net, &[4], &[7, 9, 3], 16, false, false).is_ok());
}

#[test]
fn requant_steps_approximate_their_multiplier() {
    for m in [1e-9, 3.3e-4, 0.1, 0.5, 0.999, 1.0, 7.25, 1000.0] {
        let r = requant_step(m).unwrap();
        let approx = r.multiplier as f64 / (r.shift as f64).exp2();
        assert!(
            (approx - m).abs() <= m * 1e-8 + 2f64.powi(-62),
            "{m}: {r:?}"
        );
    }
    assert!(requant_step(0.0).is_err());
    assert!(requant_step(f64::NAN).is_err());
    assert!(requant_step(1e12).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// At 16 bits everywhere, dequantized logits track the float ones closely on calibration
    /// points: the integer model and its scales are consistent.
    #[test]
    fn sixteen_bit_dequantized_logits_track_float(seed in 0u64..1000, hidden in 1usize..12, inputs in 1usize..10) {
        let net = random_network(&mut rng(seed), &[inputs, hidden, hidden, 3]);
        let mut r = rng(seed + 1);
        let points: Vec<Vec<f64>> = (0..64).map(|_| random_vector(&mut r, inputs, -1.0, 1.0)).collect();
        let cal = Calibration::from_points(&net, &points);
        let int_net = quantize(&net, &config(&net, 16, 16), &cal).unwrap();
        let scale = cal.layer_max_abs.iter().cloned().fold(1.0, f64::max);
        for x in &points {
            let f = net.logits(x);
            let q = int_net.dequantized_logits(x);
            for (a, b) in f.iter().zip(&q) {
                prop_assert!((a - b).abs() <= 2e-3 * scale, "float {a} vs dequantized {b}");
            }
        }
    }
}
