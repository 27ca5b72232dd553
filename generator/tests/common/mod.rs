//! Shared helpers of the integration tests: paths of the bundled models and a seeded RNG.
#![allow(dead_code)]

use std::path::PathBuf;

use ceg4n::ir::{Activation, Dense, Network, TensorInfo};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of the bundled `models/` folder.
pub fn model_file(name: &str) -> PathBuf {
    root().join("models").join(name)
}

/// A file of `generator/tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The bundled models with their test CSV.
pub const BUNDLED: &[(&str, &str)] = &[
    ("iris_mlp.onnx", "iris_test.csv"),
    ("digits_mlp.onnx", "digits_test.csv"),
    ("wine_mlp.onnx", "wine_test.csv"),
];

/// A deterministic RNG.
pub fn rng(seed: u64) -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

/// A random vector with entries in `[lo, hi)`.
pub fn random_vector(rng: &mut impl Rng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n)
        .map(|_| lo + (hi - lo) * rng.random::<f64>())
        .collect()
}

/// A uniformly random point of the box `[lower, upper]`.
pub fn random_point(rng: &mut impl Rng, lower: &[f64], upper: &[f64]) -> Vec<f64> {
    lower
        .iter()
        .zip(upper)
        .map(|(l, u)| rng.random_range(*l..=*u))
        .collect()
}

/// The input operations of a standardising preprocessor, `(x - 0.25) / 0.5` on `n` features.
pub fn standardising_ops(n: usize) -> Vec<ceg4n::ir::InputOp> {
    use ceg4n::ir::InputOp;
    vec![
        InputOp::Sub(Array1::from_elem(n, 0.25)),
        InputOp::Div(Array1::from_elem(n, 0.5)),
    ]
}

/// A box of `n` inputs around a random centre in [-1, 1) with a random radius in `radius`:
/// `(centre, lower, upper)`.
pub fn random_box(
    rng: &mut impl Rng,
    n: usize,
    radius: std::ops::Range<f64>,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let centre = random_vector(rng, n, -1.0, 1.0);
    let r = rng.random_range(radius);
    let lower = centre.iter().map(|c| c - r).collect();
    let upper = centre.iter().map(|c| c + r).collect();
    (centre, lower, upper)
}

/// A random ReLU MLP with layer sizes `sizes` (input first), weights in [-1, 1), biases in
/// [-0.5, 0.5), no input operations.
pub fn random_network(rng: &mut impl Rng, sizes: &[usize]) -> Network {
    let layers = sizes
        .windows(2)
        .enumerate()
        .map(|(i, w)| Dense {
            weights: Array2::from_shape_fn((w[1], w[0]), |_| rng.random_range(-1.0f32..1.0)),
            bias: Array1::from_shape_fn(w[1], |_| rng.random_range(-0.5f32..0.5)),
            activation: if i + 2 < sizes.len() {
                Activation::Relu
            } else {
                Activation::None
            },
        })
        .collect();
    Network {
        input: TensorInfo {
            name: "x".into(),
            shape: vec![Some(1), Some(sizes[0])],
        },
        outputs: vec![],
        logits_name: "y".into(),
        input_ops: vec![],
        layers,
        head: Default::default(),
    }
}
