//! tract's own inference of the ONNX file: an independent check that the importer understood
//! the graph (ceg4n never uses it to compute anything else).

use std::path::Path;

use crate::error::{input_error, Context, Result};
use tract_onnx::prelude::*;

use crate::ir::Network;

/// A runnable tract plan of an ONNX file that outputs the logits tensor.
pub struct TractReference {
    plan: std::sync::Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
    /// The graph's one logit `z` is compared as ceg4n's `[0, z]` (binary head).
    binary: bool,
}

impl TractReference {
    /// Loads `path`, whose import is `network`, and prepares it to output `network.logits_name`.
    pub fn load(path: &Path, network: &Network) -> Result<Self> {
        let input_shape: Vec<usize> = network.input.shape.iter().map(|d| d.unwrap_or(1)).collect();
        let plan = tract_onnx::onnx()
            .model_for_path(path)
            .and_then(|m| m.with_input_fact(0, f32::fact(&input_shape).into()))
            .and_then(|mut m| {
                m.select_outputs_by_name([network.logits_name.as_str()])?;
                Ok(m)
            })
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| input_error!("tract could not load {}: {e:#}", path.display()))?;
        Ok(TractReference {
            plan,
            input_shape,
            binary: network.head.binary,
        })
    }

    /// The logits tract computes (in f32) for one input vector.
    pub fn logits(&self, input: &[f32]) -> Result<Vec<f32>> {
        let tensor =
            tract_ndarray::ArrayD::from_shape_vec(self.input_shape.as_slice(), input.to_vec())
                .context("input does not fit the model's input shape")?;
        let out = self
            .plan
            .run(tvec!(Tensor::from(tensor).into()))
            .map_err(|e| input_error!("tract inference failed: {e:#}"))?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| input_error!("tract output is not f32: {e:#}"))?;
        let logits = view.iter().copied();
        Ok(if self.binary {
            std::iter::once(0.0).chain(logits).collect()
        } else {
            logits.collect()
        })
    }
}
