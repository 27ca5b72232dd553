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
    /// What the graph does after the logits (scores, class index, labels).
    pub head: Head,
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

/// What the graph does after the logits. None of it changes the class, which is always the
/// argmax of the logits, lowest index on ties.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Head {
    /// How the graph turns the logits into scores, if it does.
    pub scores: Option<Scores>,
    /// The graph computed a single logit `z` (a binary classifier): it was widened to
    /// `[0, z]`, so the class is 1 exactly when `z > 0` — the rule of `Sigmoid(z) > 0.5` with
    /// ArgMax's tie going to class 0.
    pub binary: bool,
    /// What each graph output is, in the graph's output order.
    pub outputs: Vec<HeadOutput>,
    /// The class labels, in class-index order, when the graph maps indices to labels
    /// (scikit-learn's `classes_`).
    pub labels: Option<ClassLabels>,
}

impl Head {
    /// One line: scores, outputs, labels, binary form.
    pub fn describe(&self) -> String {
        let mut parts = vec![match self.scores {
            Some(s) => format!("{s:?} of the logits"),
            None => "logits".to_string(),
        }];
        let outputs: Vec<&str> = self
            .outputs
            .iter()
            .map(|o| match o {
                HeadOutput::Logits => "logits",
                HeadOutput::Scores => "scores",
                HeadOutput::ClassIndex => "class index",
                HeadOutput::Label => "label",
                HeadOutput::ScoreMap => "score map (ZipMap)",
            })
            .collect();
        parts.push(format!("outputs: {}", outputs.join(", ")));
        if let Some(labels) = &self.labels {
            let shown: Vec<String> = (0..labels.len()).filter_map(|i| labels.label(i)).collect();
            parts.push(format!("labels: {}", shown.join(", ")));
        }
        if self.binary {
            parts.push("binary: one logit z, widened to [0, z] (class 1 iff z > 0)".into());
        }
        parts.join("; ")
    }
}

/// A monotone map from logits to scores (it keeps the argmax).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Scores {
    /// Softmax over the classes.
    Softmax,
    /// LogSoftmax over the classes.
    LogSoftmax,
    /// Sigmoid of a binary classifier's one logit (with `1 - p` for class 0, or alone).
    Sigmoid,
}

/// What a graph output holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadOutput {
    /// The logits of the last layer.
    Logits,
    /// The scores (probabilities) the head computes from them.
    Scores,
    /// The class index (ArgMax).
    ClassIndex,
    /// The class label (ArgMax through the label table).
    Label,
    /// A map from label to score (ai.onnx.ml ZipMap).
    ScoreMap,
}

/// Class labels in class-index order: integers (possibly not 0..n) or strings.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum ClassLabels {
    /// Integer labels, e.g. scikit-learn classes `[3, 5, 7]`.
    Ints(Vec<i64>),
    /// String labels, e.g. `["setosa", "versicolor", "virginica"]`.
    Strings(Vec<String>),
}

impl ClassLabels {
    /// Number of labels.
    pub fn len(&self) -> usize {
        match self {
            ClassLabels::Ints(v) => v.len(),
            ClassLabels::Strings(v) => v.len(),
        }
    }

    /// True when there is no label.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The label of class `index`, as text.
    pub fn label(&self, index: usize) -> Option<String> {
        match self {
            ClassLabels::Ints(v) => v.get(index).map(i64::to_string),
            ClassLabels::Strings(v) => v.get(index).cloned(),
        }
    }

    /// The class index whose label is written `text` (a CSV cell).
    pub fn index_of(&self, text: &str) -> Option<usize> {
        match self {
            ClassLabels::Ints(v) => {
                let n: i64 = text.parse::<i64>().ok().or_else(|| {
                    let f = text.parse::<f64>().ok()?;
                    (f.fract() == 0.0).then_some(f as i64)
                })?;
                v.iter().position(|l| *l == n)
            }
            ClassLabels::Strings(v) => v.iter().position(|l| l == text),
        }
    }
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
