//! ONNX → [`Network`]: translation only, no computation beyond folding constants the way the
//! graph states them.
//!
//! The ONNX protobuf is decoded by tract-onnx; we then walk the nodes in their (topological)
//! order, tracking for each tensor whether it is a constant or the single dynamic value flowing
//! from the input through the chain (`mod.rs`), or a value of the classifier head computed from
//! the logits (`head.rs`: scores, class index, labels, which may branch). Anything outside
//! [`SUPPORTED_OPS`] or outside that shape is rejected with one line naming the node and the op.

mod head;
mod tensor;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::error::{bail, input_error, Context, Error, Result};
use ndarray::{Array1, Array2, ArrayD, Axis};
use tract_onnx::pb;
use tract_onnx::prelude::Framework;

use crate::ir::{self, Activation, Dense, Head, InputOp, Network};
use head::HeadValue;
use tensor::*;

/// The ONNX operators the importer accepts (`ai.onnx.ml` ones marked so).
pub const SUPPORTED_OPS: &[&str] = &[
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Relu",
    "BatchNormalization",
    "Flatten",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Transpose (of constants)",
    "Identity",
    "Dropout",
    "Cast",
    "Constant",
    "Softmax",
    "LogSoftmax",
    "Sigmoid (of one logit)",
    "Concat (binary head)",
    "ArgMax",
    "ai.onnx.ml Scaler",
    "ai.onnx.ml ArrayFeatureExtractor (class labels)",
    "ai.onnx.ml ZipMap",
];

/// The ONNX opset versions the importer accepts: up to the newest that onnx 1.23 (the
/// exporters' pinned version, models/exporters) defines. From 21 to 28 the supported operators
/// changed only in the tensor types they accept (float8, int4, float4 and the like), never in
/// what they compute on float32; skl2onnx 1.20 writes opset 22 by default.
pub const SUPPORTED_OPSETS: std::ops::RangeInclusive<i64> = 8..=28;

/// Reads and translates an ONNX model file.
pub fn import_path(path: &Path) -> Result<Network> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    import_bytes(&bytes).with_context(|| format!("{}", path.display()))
}

/// Translates an ONNX model held in memory. Every failure is an [`Error::Import`].
pub fn import_bytes(bytes: &[u8]) -> Result<Network> {
    translate(bytes).map_err(|e| match e {
        Error::Input(message) => Error::Import(message),
        other => other,
    })
}

fn translate(bytes: &[u8]) -> Result<Network> {
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &*bytes)
        .map_err(|e| input_error!("not a valid ONNX model (protobuf decoding failed: {e})"))?;
    check_opset(&proto)?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| input_error!("the ONNX model has no graph"))?;
    Importer::default().run(graph)
}

fn check_opset(proto: &pb::ModelProto) -> Result<()> {
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version);
    match opset {
        Some(v) if SUPPORTED_OPSETS.contains(&v) => Ok(()),
        Some(v) => bail!(
            "ONNX opset {v} is not supported (supported: {}..={})",
            SUPPORTED_OPSETS.start(),
            SUPPORTED_OPSETS.end()
        ),
        None => bail!("the ONNX model declares no default-domain opset"),
    }
}

/// Where the dynamic value stands in the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The network input, possibly after elementwise input operations.
    Input,
    /// The output of `layers[index]`, before (`activated: false`) or after its activation.
    Layer { index: usize, activated: bool },
    /// A value of the classifier head, computed from the logits.
    Head(HeadValue),
}

#[derive(Clone, Debug)]
enum Value {
    Const(ArrayD<f32>),
    Dynamic { stage: Stage, len: usize },
}

#[derive(Default)]
struct Importer {
    values: HashMap<String, Value>,
    /// The tensors of initializers and Constant nodes as stored (class tables are int64 or
    /// string tensors, which `Value::Const` does not hold).
    tensors: HashMap<String, pb::TensorProto>,
    consumed: HashSet<String>,
    input_ops: Vec<InputOp>,
    layers: Vec<Dense>,
    head: Head,
    /// The layer whose output the head reads (must end up the last one).
    head_layer: Option<usize>,
    logits_name: Option<String>,
}

impl Importer {
    fn run(mut self, graph: &pb::GraphProto) -> Result<Network> {
        for t in &graph.initializer {
            self.tensors.insert(t.name.clone(), t.clone());
            // Class tables (strings) are read by ArrayFeatureExtractor from `tensors`.
            if let Ok(value) = decode_tensor(t) {
                self.values.insert(t.name.clone(), Value::Const(value));
            }
        }
        let initializers: HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<&pb::ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !initializers.contains(i.name.as_str()))
            .collect();
        let [input] = inputs.as_slice() else {
            bail!(
                "the graph has {} inputs; supported: exactly one (a float feature vector)",
                inputs.len()
            );
        };
        let input = tensor_info(input)?;
        let input_len: usize = input.shape.iter().map(|d| d.unwrap_or(1)).product();
        if input_len == 0 {
            bail!("input '{}' has no elements", input.name);
        }
        self.values.insert(
            input.name.clone(),
            Value::Dynamic {
                stage: Stage::Input,
                len: input_len,
            },
        );

        for node in &graph.node {
            self.node(node)
                .with_context(|| format!("node '{}' (op {})", node_name(node), node.op_type))?;
        }

        if self.layers.is_empty() {
            bail!("the graph has no Gemm/MatMul layer; supported: dense ReLU classifiers");
        }
        let last = self.layers.len() - 1;
        if self.head_layer.is_some_and(|l| l != last) {
            bail!("the classifier head reads a layer before the last one; supported: a head on the last layer's logits");
        }
        let outputs = graph
            .output
            .iter()
            .map(tensor_info)
            .collect::<Result<Vec<_>>>()?;
        for out in &outputs {
            let what = match self.values.get(&out.name) {
                Some(Value::Dynamic {
                    stage: Stage::Layer { index, .. },
                    ..
                }) if *index == last => ir::HeadOutput::Logits,
                Some(Value::Dynamic {
                    stage: Stage::Head(value),
                    ..
                }) => value.output(),
                _ => bail!(
                    "graph output '{}' is not the result of the last layer; supported: a single chain ending in the logits and a classifier head on them",
                    out.name
                ),
            };
            self.head.outputs.push(what);
        }
        // A single logit is a binary classifier: class 1 exactly when the logit is positive.
        if self.layers[last].outputs() == 1 {
            self.head.binary = true;
            let layer = &mut self.layers[last];
            let zero_row = Array2::zeros((1, layer.inputs()));
            layer.weights = ndarray::concatenate![Axis(0), zero_row, layer.weights];
            layer.bias = ndarray::concatenate![Axis(0), Array1::zeros(1), layer.bias];
        }
        let classes = self.layers[last].outputs();
        if let Some(labels) = &self.head.labels {
            if labels.len() != classes {
                bail!(
                    "the class table has {} labels for {classes} classes",
                    labels.len()
                );
            }
        }
        for pair in self.layers.windows(2) {
            debug_assert_eq!(pair[0].outputs(), pair[1].inputs());
        }
        Ok(Network {
            input,
            outputs,
            logits_name: self.logits_name.unwrap_or_default(),
            input_ops: self.input_ops,
            layers: self.layers,
            head: self.head,
        })
    }

    fn node(&mut self, node: &pb::NodeProto) -> Result<()> {
        let ml = node.domain == "ai.onnx.ml";
        if !(node.domain.is_empty() || node.domain == "ai.onnx" || ml) {
            bail!(
                "operator domain '{}' is not supported; supported ops: {}",
                node.domain,
                SUPPORTED_OPS.join(", ")
            );
        }
        let output = node
            .output
            .first()
            .ok_or_else(|| input_error!("the node has no output"))?
            .clone();
        // Nodes on head values (scores, class index, labels) are the head's business.
        let head_operand = node.input.iter().any(|name| {
            matches!(
                self.values.get(name),
                Some(Value::Dynamic {
                    stage: Stage::Head(_),
                    ..
                })
            )
        });
        let value = if head_operand || head::starts_head(node) {
            self.head_node(node)?
        } else {
            match (ml, node.op_type.as_str()) {
                (false, "Constant") => {
                    if let Some(t) = attr(node, "value").and_then(|a| a.t.as_ref()) {
                        self.tensors.insert(output.clone(), t.clone());
                    }
                    Value::Const(constant_value(node)?)
                }
                (false, "Identity" | "Dropout" | "Flatten" | "Squeeze" | "Unsqueeze" | "Cast") => {
                    self.shape_op(node)?
                }
                (false, "Transpose") => match self.operand(node, 0)? {
                    Value::Const(c) => Value::Const(transpose_const(&c, attr_ints(node, "perm"))?),
                    Value::Dynamic { .. } => bail!(
                        "Transpose of a computed tensor is not supported; supported: Transpose of constant weights"
                    ),
                },
                (false, "Reshape") => {
                    let shape = match self.operand(node, 1)? {
                        Value::Const(c) => c,
                        Value::Dynamic { .. } => {
                            bail!("a computed target shape is not supported")
                        }
                    };
                    let value = self.operand(node, 0)?;
                    let Value::Dynamic { len, .. } = value else {
                        bail!("reshaping a constant is not supported");
                    };
                    check_vector_reshape(&shape, len)?;
                    self.consume(node, 0, value)?
                }
                (false, "Add" | "Sub" | "Mul" | "Div") => self.elementwise(node)?,
                (false, "Gemm") => self.gemm(node)?,
                (false, "MatMul") => self.matmul(node)?,
                (false, "Relu") => self.relu(node)?,
                (false, "BatchNormalization") => self.batch_norm(node)?,
                (true, "Scaler") => self.scaler(node)?,
                (_, other) => bail!(
                    "operator {other} is not supported; supported: {}",
                    SUPPORTED_OPS.join(", ")
                ),
            }
        };
        if let Value::Dynamic {
            stage: Stage::Layer { .. },
            ..
        } = value
        {
            self.logits_name = Some(output.clone());
        }
        self.values.insert(output, value);
        Ok(())
    }

    /// Identity, Dropout (inference: identity), Flatten, Squeeze, Unsqueeze and Cast to float:
    /// the feature vector stays the same vector.
    fn shape_op(&mut self, node: &pb::NodeProto) -> Result<Value> {
        if node.op_type == "Cast" {
            let to = attr_i64(node, "to")?.unwrap_or(0);
            if to != pb::tensor_proto::DataType::Float as i64 {
                bail!("Cast to ONNX data type {to} is not supported in the network; supported: Cast to float (1)");
            }
        }
        match self.operand(node, 0)? {
            Value::Const(c) => match node.op_type.as_str() {
                "Identity" | "Dropout" | "Cast" => Ok(Value::Const(c)),
                _ => bail!("shape operations on constants are not supported"),
            },
            dynamic => self.consume(node, 0, dynamic),
        }
    }

    fn relu(&mut self, node: &pb::NodeProto) -> Result<Value> {
        let value = self.operand(node, 0)?;
        match value {
            Value::Dynamic {
                stage: Stage::Layer { index, .. },
                len,
            } => {
                self.consume(node, 0, value.clone())?;
                self.layers[index].activation = Activation::Relu;
                Ok(Value::Dynamic {
                    stage: Stage::Layer {
                        index,
                        activated: true,
                    },
                    len,
                })
            }
            Value::Dynamic { .. } => bail!("Relu is supported only after a Gemm/MatMul layer"),
            Value::Const(_) => bail!("Relu on a constant is not supported"),
        }
    }

    /// ai.onnx.ml Scaler on the input, `(x - offset) * scale` (scikit-learn's StandardScaler
    /// and MinMaxScaler): input operations, so data and boxes stay in the user's raw units.
    fn scaler(&mut self, node: &pb::NodeProto) -> Result<Value> {
        let value = self.operand(node, 0)?;
        let Value::Dynamic {
            stage: Stage::Input,
            len,
        } = value
        else {
            bail!("Scaler is supported only on the network input");
        };
        let vector = |name: &str, default: f32| -> Result<Array1<f32>> {
            let v = attr_floats(node, name);
            match v.len() {
                0 => Ok(Array1::from_elem(len, default)),
                1 => Ok(Array1::from_elem(len, v[0])),
                n if n == len => Ok(Array1::from(v)),
                n => bail!("Scaler {name} has {n} values for {len} features"),
            }
        };
        let (offset, scale) = (vector("offset", 0.0)?, vector("scale", 1.0)?);
        self.consume(node, 0, value.clone())?;
        self.input_ops.push(InputOp::Sub(offset));
        self.input_ops.push(InputOp::Mul(scale));
        Ok(value)
    }

    /// BatchNormalization (inference form) on the input or right after a dense layer, folded:
    /// `y = a (x - mean) + B` with `a = scale / sqrt(var + epsilon)`.
    fn batch_norm(&mut self, node: &pb::NodeProto) -> Result<Value> {
        let value = self.operand(node, 0)?;
        let Value::Dynamic { stage, len } = value else {
            bail!("BatchNormalization of a constant is not supported");
        };
        let epsilon = f64::from(attr_f32(node, "epsilon")?.unwrap_or(1e-5));
        let parameter = |i: usize, what: &str| -> Result<Array1<f64>> {
            match self.operand(node, i)? {
                Value::Const(c) => Ok(broadcast_vector(&c, len)
                    .with_context(|| format!("BatchNormalization {what}"))?
                    .mapv(f64::from)),
                Value::Dynamic { .. } => {
                    bail!("BatchNormalization with a computed {what} is not supported")
                }
            }
        };
        let (scale, bias) = (parameter(1, "scale")?, parameter(2, "B")?);
        let (mean, var) = (parameter(3, "mean")?, parameter(4, "var")?);
        let a = &scale / &var.mapv(|v| (v + epsilon).sqrt());
        self.consume(node, 0, value.clone())?;
        match stage {
            Stage::Input => {
                let f32s = |v: Array1<f64>| v.mapv(|x| x as f32);
                self.input_ops.push(InputOp::Sub(f32s(mean)));
                self.input_ops.push(InputOp::Mul(f32s(a)));
                self.input_ops.push(InputOp::Add(f32s(bias)));
            }
            Stage::Layer {
                index,
                activated: false,
            } => {
                let layer = &mut self.layers[index];
                for (o, mut row) in layer.weights.rows_mut().into_iter().enumerate() {
                    row.mapv_inplace(|w| (f64::from(w) * a[o]) as f32);
                    let b = f64::from(layer.bias[o]);
                    layer.bias[o] = (a[o] * (b - mean[o]) + bias[o]) as f32;
                }
            }
            _ => bail!("BatchNormalization is supported on the input or right after Gemm/MatMul"),
        }
        Ok(value)
    }

    fn operand(&self, node: &pb::NodeProto, i: usize) -> Result<Value> {
        let name = node
            .input
            .get(i)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| input_error!("input {i} is missing"))?;
        self.values
            .get(name)
            .cloned()
            .ok_or_else(|| input_error!("input '{name}' is not produced by any earlier node"))
    }

    /// Marks dynamic input `i` of `node` as used (a second use would be a branch) and returns
    /// the value unchanged. Head values may branch (scores feed both ArgMax and ZipMap).
    fn consume(&mut self, node: &pb::NodeProto, i: usize, value: Value) -> Result<Value> {
        let name = &node.input[i];
        let in_head = matches!(
            value,
            Value::Dynamic {
                stage: Stage::Head(_),
                ..
            }
        );
        if !self.consumed.insert(name.clone()) && !in_head {
            bail!("tensor '{name}' is used twice; supported: a single chain without branches");
        }
        Ok(value)
    }

    fn elementwise(&mut self, node: &pb::NodeProto) -> Result<Value> {
        let (a, b) = (self.operand(node, 0)?, self.operand(node, 1)?);
        let op = node.op_type.as_str();
        let (dyn_index, value, constant, dynamic_first) = match (a, b) {
            (Value::Const(x), Value::Const(y)) => {
                return Ok(Value::Const(fold_consts(op, &x, &y)?))
            }
            (d @ Value::Dynamic { .. }, Value::Const(c)) => (0, d, c, true),
            (Value::Const(c), d @ Value::Dynamic { .. }) => (1, d, c, false),
            _ => bail!("{op} of two computed tensors is not supported"),
        };
        let Value::Dynamic { stage, len } = value else {
            unreachable!("matched as dynamic above")
        };
        let c = broadcast_vector(&constant, len)?;
        self.consume(node, dyn_index, value.clone())?;
        match stage {
            Stage::Input => {
                let ops = match (op, dynamic_first) {
                    ("Add", _) => vec![InputOp::Add(c)],
                    ("Mul", _) => vec![InputOp::Mul(c)],
                    ("Sub", true) => vec![InputOp::Sub(c)],
                    ("Div", true) => vec![InputOp::Div(c)],
                    // c - x = (-1 * x) + c
                    ("Sub", false) => vec![InputOp::Mul(Array1::from_elem(len, -1.0)), InputOp::Add(c)],
                    _ => bail!("dividing a constant by the input is not supported (not affine)"),
                };
                self.input_ops.extend(ops);
            }
            Stage::Layer {
                index,
                activated: false,
            } => {
                let layer = &mut self.layers[index];
                match (op, dynamic_first) {
                    ("Add", _) => layer.bias += &c,
                    ("Sub", true) => layer.bias -= &c,
                    ("Sub", false) => {
                        layer.weights.mapv_inplace(|w| -w);
                        layer.bias = &c - &layer.bias;
                    }
                    ("Mul", _) => {
                        layer.weights *= &c.view().insert_axis(Axis(1));
                        layer.bias *= &c;
                    }
                    ("Div", true) => {
                        layer.weights /= &c.view().insert_axis(Axis(1));
                        layer.bias /= &c;
                    }
                    _ => bail!("dividing a constant by a layer output is not supported (not affine)"),
                }
            }
            Stage::Layer { activated: true, .. } => bail!(
                "{op} after an activation is not supported; supported: {op} on the input or right after Gemm/MatMul"
            ),
            Stage::Head(_) => bail!("{op} of a head value is handled by the head, not the chain"),
        }
        Ok(Value::Dynamic { stage, len })
    }

    fn gemm(&mut self, node: &pb::NodeProto) -> Result<Value> {
        let alpha = attr_f32(node, "alpha")?.unwrap_or(1.0);
        let beta = attr_f32(node, "beta")?.unwrap_or(1.0);
        let trans_b = attr_i64(node, "transB")?.unwrap_or(0) != 0;
        // transA transposes the batch of row vectors; for a single vector (our dynamic value
        // is always one vector) it only changes whether the input is a row or a column.
        let _trans_a = attr_i64(node, "transA")?.unwrap_or(0) != 0;
        let input = self.operand(node, 0)?;
        let Value::Const(b) = self.operand(node, 1)? else {
            bail!("Gemm with a computed B is not supported; supported: constant weights");
        };
        let b = as_matrix(&b, "B")?;
        // Y = A · B (or A · Bᵀ): weights[out, in] = Bᵀ (or B).
        let mut weights = if trans_b { b } else { b.reversed_axes() };
        if alpha != 1.0 {
            weights.mapv_inplace(|w| w * alpha);
        }
        let bias = match node.input.get(2).filter(|n| !n.is_empty()) {
            None => Array1::zeros(weights.nrows()),
            Some(_) => match self.operand(node, 2)? {
                Value::Const(c) => broadcast_vector(&c, weights.nrows())? * beta,
                Value::Dynamic { .. } => bail!("Gemm with a computed C is not supported"),
            },
        };
        self.push_layer(node, input, weights, bias)
    }

    fn matmul(&mut self, node: &pb::NodeProto) -> Result<Value> {
        let (a, b) = (self.operand(node, 0)?, self.operand(node, 1)?);
        let (dyn_index, input, weights) = match (a, b) {
            // x · W with W [in, out]
            (d @ Value::Dynamic { .. }, Value::Const(w)) => {
                (0, d, as_matrix(&w, "weight")?.reversed_axes())
            }
            // W · x with W [out, in] and x a column
            (Value::Const(w), d @ Value::Dynamic { .. }) => (1, d, as_matrix(&w, "weight")?),
            _ => bail!("MatMul needs exactly one constant operand (the weights)"),
        };
        let bias = Array1::zeros(weights.nrows());
        if dyn_index == 1 {
            // push_layer consumes input 0; route the consumption to the dynamic operand.
            self.consume(node, 1, input.clone())?;
            return self.push_layer_consumed(input, weights, bias);
        }
        self.push_layer(node, input, weights, bias)
    }

    fn push_layer(
        &mut self,
        node: &pb::NodeProto,
        input: Value,
        weights: Array2<f32>,
        bias: Array1<f32>,
    ) -> Result<Value> {
        let input = self.consume(node, 0, input)?;
        self.push_layer_consumed(input, weights, bias)
    }

    fn push_layer_consumed(
        &mut self,
        input: Value,
        weights: Array2<f32>,
        bias: Array1<f32>,
    ) -> Result<Value> {
        let Value::Dynamic { len, .. } = input else {
            bail!("the layer input must be computed from the network input, not a constant");
        };
        if weights.ncols() != len {
            bail!(
                "weights of shape [out={}, in={}] do not fit an input of {len} values",
                weights.nrows(),
                weights.ncols()
            );
        }
        if weights.iter().chain(bias.iter()).any(|v| !v.is_finite()) {
            bail!("weights or bias contain NaN or infinity");
        }
        let outputs = weights.nrows();
        self.layers.push(Dense {
            weights: weights.as_standard_layout().to_owned(),
            bias,
            activation: Activation::None,
        });
        Ok(Value::Dynamic {
            stage: Stage::Layer {
                index: self.layers.len() - 1,
                activated: false,
            },
            len: outputs,
        })
    }
}

fn node_name(node: &pb::NodeProto) -> &str {
    if node.name.is_empty() {
        node.output.first().map_or("?", String::as_str)
    } else {
        &node.name
    }
}
