//! The integer network: every parameter an integer, evaluated on the host by calling
//! ceg4n-runtime — the very functions the generated firmware runs.

use ceg4n_runtime::{
    dense_accumulate, dense_accumulate_packed, dense_requantize, dense_requantize_packed, ActRange,
    Packed, Requant,
};
use serde::Serialize;

/// A quantized network, the exact object that is verified and deployed.
#[derive(Clone, Debug, Serialize)]
pub struct IntNetwork {
    /// How real inputs become integers.
    pub input: InputFormat,
    /// Layers, input side first; the last one outputs [`LayerOutput::Logits`].
    pub layers: Vec<IntLayer>,
    /// The float model's class labels in class-index order, if its graph has a class table.
    pub class_labels: Option<crate::ir::ClassLabels>,
}

/// Signed fixed point, one format per feature: feature `i` is stored as
/// `q = clamp(floor(x * 2^frac_bits[i] + 1/2))` in `bits` bits, i.e. with scale `2^-frac_bits[i]`.
///
/// Per-feature formats keep small features precise next to large ones (raw sensor units, e.g.
/// wine's proline in the thousands beside hue below one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InputFormat {
    /// Total width, sign included (2..=16).
    pub bits: u32,
    /// Fractional bits per feature (negative for inputs of large magnitude).
    pub frac_bits: Vec<i32>,
}

/// The width of a layer's accumulator, chosen from a proven bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccWidth {
    /// Fits `i32`.
    I32,
    /// Needs `i64`.
    I64,
}

/// Bias at accumulator scale, in the accumulator's type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bias {
    /// For `AccWidth::I32` layers.
    I32(Vec<i32>),
    /// For `AccWidth::I64` layers.
    I64(Vec<i64>),
}

/// What a layer hands on.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerOutput {
    /// Requantized, saturated activations (hidden layers).
    Activations {
        /// Activation width in bits.
        bits: u32,
        /// Whether a ReLU is fused (unsigned range).
        relu: bool,
        /// The saturation range.
        #[serde(skip)]
        range: ActRange,
        /// One step per output (all equal under per-layer scaling).
        #[serde(skip)]
        requant: Vec<Requant>,
        /// Real value of one activation step.
        scale: f64,
    },
    /// Raw accumulators: the logits (last layer), of real value `acc * acc_scale`.
    Logits,
}

/// Widths below this are bit-packed (`Packed`): a 2..7-bit weight costs `bits/8` bytes instead
/// of one, for a few shifts per read.
pub const PACK_BELOW_BITS: u32 = 8;

/// `weights` bit-packed at `bits` when the width is packed on the device.
pub fn pack_weights(weights: &[i16], bits: u32) -> Option<Vec<u8>> {
    (bits < PACK_BELOW_BITS).then(|| {
        let mut bytes = vec![0u8; Packed::bytes_for(weights.len(), bits)];
        Packed::pack_into(weights, bits, &mut bytes);
        bytes
    })
}

/// One quantized dense layer.
#[derive(Clone, Debug, Serialize)]
pub struct IntLayer {
    /// Number of inputs.
    pub inputs: usize,
    /// Number of outputs.
    pub outputs: usize,
    /// Weight width in bits (2..=16); every weight lies in `±(2^(bits-1) - 1)`.
    pub weight_bits: u32,
    /// Row-major `[outputs][inputs]`.
    #[serde(skip)]
    pub weights: Vec<i16>,
    /// The weights bit-packed as the device stores them (`ceg4n_runtime::Packed`), for widths
    /// below [`PACK_BELOW_BITS`]: the host evaluates these with the packed kernels, exactly as
    /// the device does.
    #[serde(skip)]
    pub packed: Option<Vec<u8>>,
    /// Bias at accumulator scale.
    #[serde(skip)]
    pub bias: Bias,
    /// Accumulator width.
    pub accumulator: AccWidth,
    /// Largest `|bias| + sum |w| * max|a|` over outputs: the proven accumulator bound.
    pub accumulator_bound: i128,
    /// Real value of one accumulator step, per output.
    #[serde(skip)]
    pub acc_scale: Vec<f64>,
    /// Whether weights are scaled per output channel.
    pub per_channel: bool,
    /// Output handling.
    pub output: LayerOutput,
}

impl InputFormat {
    /// The integer range of an input.
    pub fn range(&self) -> ActRange {
        ActRange::signed(self.bits)
    }

    /// Real value of one step of feature `i`.
    pub fn scale(&self, i: usize) -> f64 {
        (-self.frac_bits.get(i).copied().unwrap_or(0) as f64).exp2()
    }

    /// Feature `i` as `clamp(floor(x * 2^frac_bits[i] + 1/2))`, exactly (NaN maps to 0): by
    /// ceg4n-runtime, from the value's bits, as the generated crate quantizes its inputs.
    pub fn quantize(&self, i: usize, x: f64) -> i32 {
        let frac = self.frac_bits.get(i).copied().unwrap_or(0);
        ceg4n_runtime::quantize_f64_bits(x.to_bits(), frac, self.range())
    }
}

impl IntNetwork {
    /// Number of inputs.
    pub fn input_len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.inputs)
    }

    /// Quantizes a real input vector.
    pub fn quantize_input(&self, x: &[f64]) -> Vec<i32> {
        x.iter()
            .enumerate()
            .map(|(i, v)| self.input.quantize(i, *v))
            .collect()
    }

    /// The integer logits for an already quantized input, computed by ceg4n-runtime.
    pub fn logits_q(&self, input: &[i32]) -> Vec<i64> {
        let mut activations: Vec<i32> = input.to_vec();
        for layer in &self.layers {
            // The device's kernels: packed ones where the device stores packed weights.
            let packed = layer
                .packed
                .as_deref()
                .map(|bytes| Packed::new(bytes, layer.weight_bits));
            match &layer.output {
                LayerOutput::Activations { range, requant, .. } => {
                    let mut out = vec![0i32; layer.outputs];
                    let (w, r, range) = (&layer.weights, requant, *range);
                    match (&layer.bias, packed) {
                        (Bias::I32(b), None) => {
                            dense_requantize(&activations, w, b, r, range, &mut out)
                        }
                        (Bias::I64(b), None) => {
                            dense_requantize(&activations, w, b, r, range, &mut out)
                        }
                        (Bias::I32(b), Some(p)) => {
                            dense_requantize_packed(&activations, p, b, r, range, &mut out)
                        }
                        (Bias::I64(b), Some(p)) => {
                            dense_requantize_packed(&activations, p, b, r, range, &mut out)
                        }
                    }
                    activations = out;
                }
                LayerOutput::Logits => {
                    let w = &layer.weights;
                    return match &layer.bias {
                        Bias::I32(b) => {
                            let mut out = vec![0i32; layer.outputs];
                            match packed {
                                None => dense_accumulate(&activations, w, b, &mut out),
                                Some(p) => dense_accumulate_packed(&activations, p, b, &mut out),
                            }
                            out.into_iter().map(i64::from).collect()
                        }
                        Bias::I64(b) => {
                            let mut out = vec![0i64; layer.outputs];
                            match packed {
                                None => dense_accumulate(&activations, w, b, &mut out),
                                Some(p) => dense_accumulate_packed(&activations, p, b, &mut out),
                            }
                            out
                        }
                    };
                }
            }
        }
        activations.into_iter().map(i64::from).collect()
    }

    /// The integer logits of a real input (quantized first).
    pub fn logits(&self, x: &[f64]) -> Vec<i64> {
        self.logits_q(&self.quantize_input(x))
    }

    /// The logits as real numbers (`acc * acc_scale`).
    pub fn dequantized_logits(&self, x: &[f64]) -> Vec<f64> {
        self.dequantize(&self.logits(x))
    }

    /// Integer logits as real numbers (`acc * acc_scale`).
    pub fn dequantize(&self, logits: &[i64]) -> Vec<f64> {
        let scale = self.layers.last().map_or(&[][..], |l| &l.acc_scale[..]);
        logits
            .iter()
            .zip(scale)
            .map(|(q, s)| *q as f64 * s)
            .collect()
    }

    /// The predicted class (argmax of the integer logits, lowest index on ties).
    pub fn classify(&self, x: &[f64]) -> usize {
        ceg4n_runtime::argmax(&self.logits(x))
    }

    /// Per hidden layer, the largest activation it can represent, dequantized: a float
    /// activation above it saturates in this network.
    pub fn largest_activations(&self) -> Vec<f64> {
        self.layers
            .iter()
            .filter_map(|layer| match &layer.output {
                LayerOutput::Activations { range, scale, .. } => Some(f64::from(range.max) * scale),
                LayerOutput::Logits => None,
            })
            .collect()
    }
}
