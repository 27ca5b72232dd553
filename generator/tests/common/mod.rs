//! Shared helpers of the integration tests: paths of the bundled models and a seeded RNG.
#![allow(dead_code)]

use std::path::PathBuf;

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
