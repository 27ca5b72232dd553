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
        let mut x = self.preprocess(input);
        let mut outputs = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let y: Vec<f64> = layer
                .weights
                .rows()
                .into_iter()
                .zip(&layer.bias)
                .map(|(row, b)| {
                    let acc = row
                        .iter()
                        .zip(&x)
                        .fold(*b as f64, |acc, (w, v)| acc + *w as f64 * v);
                    match layer.activation {
                        Activation::None => acc,
                        Activation::Relu => acc.max(0.0),
                    }
                })
                .collect();
            outputs.push(y.clone());
            x = y;
        }
        outputs
    }

    /// The predicted class: argmax of the logits, the lowest index winning ties.
    pub fn classify(&self, input: &[f64]) -> usize {
        ceg4n_runtime::argmax(&self.logits(input))
    }
}
