//! The float network evaluated on the host, in f64 over the f32 parameters of the model file
//! (the closest cheap stand-in for the exact real arithmetic that the verifier reasons about).

use crate::ir::{Activation, Network};

impl Network {
    /// The input after the elementwise input operations.
    pub fn preprocess(&self, input: &[f64]) -> Vec<f64> {
        input
            .iter()
            .enumerate()
            .map(|(i, x)| self.input_ops.iter().fold(*x, |v, op| op.apply(i, v)))
            .collect()
    }

    /// The logits for one input vector.
    pub fn logits(&self, input: &[f64]) -> Vec<f64> {
        self.layer_outputs(input).pop().unwrap_or_default()
    }

    /// The output of every layer (after its activation), input side first.
    pub fn layer_outputs(&self, input: &[f64]) -> Vec<Vec<f64>> {
        self.layer_values(input)
            .into_iter()
            .map(|(_, h)| h)
            .collect()
    }

    /// Every layer's pre-activations `z = W h + b` (what the verifier's bounds and ReLU
    /// phases are about), input side first.
    pub fn pre_activations(&self, input: &[f64]) -> Vec<Vec<f64>> {
        self.layer_values(input)
            .into_iter()
            .map(|(z, _)| z)
            .collect()
    }

    /// Per layer, its pre-activations and its output.
    fn layer_values(&self, input: &[f64]) -> Vec<(Vec<f64>, Vec<f64>)> {
        let input = self.preprocess(input);
        let mut values: Vec<(Vec<f64>, Vec<f64>)> = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            // The previous layer's output, read in place (this runs in every local search).
            let x = values.last().map_or(&input, |(_, h)| h);
            let z: Vec<f64> = layer
                .weights
                .rows()
                .into_iter()
                .zip(&layer.bias)
                .map(|(row, b)| {
                    f64::from(*b)
                        + match row.as_slice() {
                            Some(w) => dot(w, x),
                            None => row.iter().zip(x).map(|(w, v)| f64::from(*w) * v).sum(),
                        }
                })
                .collect();
            let h: Vec<f64> = match layer.activation {
                Activation::None => z.clone(),
                Activation::Relu => z.iter().map(|v| v.max(0.0)).collect(),
            };
            values.push((z, h));
        }
        values
    }

    /// The predicted class: argmax of the logits, the lowest index winning ties.
    pub fn classify(&self, input: &[f64]) -> usize {
        ceg4n_runtime::argmax(&self.logits(input))
    }
}

/// Lanes of [`dot`]'s independent partial sums.
const LANES: usize = 8;

/// `w · x` in f64 over `LANES` independent partial sums: one running sum is a chain of
/// dependent additions the compiler may not reorder, and on 784-input layers this forward pass
/// was what the falsifier spent its time in. The result differs from the sequential sum only
/// by f64 rounding.
fn dot(w: &[f32], x: &[f64]) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let (w_chunks, x_chunks) = (w.chunks_exact(LANES), x.chunks_exact(LANES));
    let tail: f64 = w_chunks
        .remainder()
        .iter()
        .zip(x_chunks.remainder())
        .map(|(a, b)| f64::from(*a) * b)
        .sum();
    for (wc, xc) in w_chunks.zip(x_chunks) {
        for ((lane, a), b) in lanes.iter_mut().zip(wc).zip(xc) {
            *lane += f64::from(*a) * b;
        }
    }
    lanes.iter().sum::<f64>() + tail
}
