//! The float network, as imported: elementwise input operations followed by dense layers.
//!
//! This is the only representation the rest of ceg4n sees; the importer translates ONNX into it
//! and nothing else reads ONNX. Parameters are kept exactly as the model file stores them (f32).

use ndarray::{Array1, Array2};

/// A feed-forward classifier: `input_ops` applied to the input vector in order, then `layers`.
#[derive(Clone, Debug)]
pub struct Network {
    /// Name and shape of the graph input (symbolic dimensions are `None`).
    pub input: TensorInfo,
    /// Names and shapes of the graph outputs.
    pub outputs: Vec<TensorInfo>,
    /// Name of the tensor holding the logits (the last dense layer's output).
    pub logits_name: String,
    /// Elementwise operations on the input before the first layer (normalisation).
    pub input_ops: Vec<InputOp>,
    /// Dense layers, input side first.
    pub layers: Vec<Dense>,
    /// What the graph applies to the logits, if anything (not needed for the class).
    pub head: Option<Head>,
}

/// Name and shape of a graph input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name in the ONNX graph.
    pub name: String,
    /// Dimensions; `None` for a symbolic one (a batch dimension, usually).
    pub shape: Vec<Option<usize>>,
}

/// An elementwise operation on the input vector, with a constant of one element per input
/// feature (scalars are broadcast at import).
#[derive(Clone, Debug, PartialEq)]
pub enum InputOp {
    /// `x + c`
    Add(Array1<f32>),
    /// `x - c`
    Sub(Array1<f32>),
    /// `x * c`
    Mul(Array1<f32>),
    /// `x / c`
    Div(Array1<f32>),
}

/// A dense layer `activation(weights · x + bias)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// `[outputs, inputs]`, row-major: row `o` holds the weights of output `o`.
    pub weights: Array2<f32>,
    /// One per output.
    pub bias: Array1<f32>,
    /// The activation fused after the layer.
    pub activation: Activation,
}

/// The activation after a dense layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Identity.
    None,
    /// `max(x, 0)`.
    Relu,
}

/// An operation on the logits that does not change the predicted class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Head {
    /// Softmax (monotone: same argmax).
    Softmax,
    /// LogSoftmax (monotone: same argmax).
    LogSoftmax,
    /// ArgMax: the graph outputs the class index.
    ArgMax,
}

impl Dense {
    /// Number of inputs.
    pub fn inputs(&self) -> usize {
        self.weights.ncols()
    }
    /// Number of outputs.
    pub fn outputs(&self) -> usize {
        self.weights.nrows()
    }
}

impl Network {
    /// Number of input features.
    pub fn input_len(&self) -> usize {
        self.layers.first().map_or(0, Dense::inputs)
    }
    /// Number of logits (classes).
    pub fn output_len(&self) -> usize {
        self.layers.last().map_or(0, Dense::outputs)
    }
    /// Number of parameters: weights and biases of every layer (input normalisation constants
    /// are not counted).
    pub fn param_count(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weights.len() + l.bias.len())
            .sum()
    }
}

impl InputOp {
    /// The constant operand.
    pub fn constant(&self) -> &Array1<f32> {
        match self {
            InputOp::Add(c) | InputOp::Sub(c) | InputOp::Mul(c) | InputOp::Div(c) => c,
        }
    }
    /// The ONNX operator name ("Add", "Sub", "Mul", "Div").
    pub fn name(&self) -> &'static str {
        match self {
            InputOp::Add(_) => "Add",
            InputOp::Sub(_) => "Sub",
            InputOp::Mul(_) => "Mul",
            InputOp::Div(_) => "Div",
        }
    }

    /// Applies the operation to one feature in exact-as-possible f64 arithmetic.
    pub fn apply(&self, i: usize, x: f64) -> f64 {
        let c = self.constant()[i] as f64;
        match self {
            InputOp::Add(_) => x + c,
            InputOp::Sub(_) => x - c,
            InputOp::Mul(_) => x * c,
            InputOp::Div(_) => x / c,
        }
    }
}
