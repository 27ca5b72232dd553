//! ONNX → [`Network`]: translation only, no computation beyond folding constants the way the
//! graph states them.
//!
//! The ONNX protobuf is decoded by tract-onnx; we then walk the nodes in their (topological)
//! order, tracking for each tensor whether it is a constant or the single dynamic value flowing
//! from the input through the chain. Anything outside [`SUPPORTED_OPS`] or outside a single
//! chain is rejected with one line naming the node and the op.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::error::{bail, input_error, Context, Error, Result};
use ndarray::{Array1, Array2, ArrayD, Axis, IxDyn};
use tract_onnx::pb;
use tract_onnx::prelude::Framework;

use crate::ir::{Activation, Dense, Head, InputOp, Network, TensorInfo};

/// The ONNX operators the importer accepts.
pub const SUPPORTED_OPS: &[&str] = &[
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Relu",
    "Flatten",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Dropout",
    "Constant",
    "Softmax",
    "LogSoftmax",
    "ArgMax",
];

/// The ONNX opset versions the importer accepts.
pub const SUPPORTED_OPSETS: std::ops::RangeInclusive<i64> = 8..=21;

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
    /// After a Softmax/LogSoftmax/ArgMax head.
    Head,
}

#[derive(Clone, Debug)]
enum Value {
    Const(ArrayD<f32>),
    Dynamic { stage: Stage, len: usize },
}

#[derive(Default)]
struct Importer {
    values: HashMap<String, Value>,
    consumed: HashSet<String>,
    input_ops: Vec<InputOp>,
    layers: Vec<Dense>,
    head: Option<Head>,
    logits_name: Option<String>,
}

impl Importer {
    fn run(mut self, graph: &pb::GraphProto) -> Result<Network> {
        for t in &graph.initializer {
            self.values
                .insert(t.name.clone(), Value::Const(decode_tensor(t)?));
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
        let outputs = graph
            .output
            .iter()
            .map(tensor_info)
            .collect::<Result<Vec<_>>>()?;
        let last = self.layers.len() - 1;
        for out in &outputs {
            match self.values.get(&out.name) {
                Some(Value::Dynamic {
                    stage: Stage::Layer { index, .. },
                    ..
                }) if *index == last => {}
                Some(Value::Dynamic {
                    stage: Stage::Head, ..
                }) => {}
                _ => bail!(
                    "graph output '{}' is not the result of the last layer; supported: a single chain ending in the logits (optionally Softmax/ArgMax)",
                    out.name
                ),
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
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
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
        let value = match node.op_type.as_str() {
            "Constant" => Value::Const(constant_value(node)?),
            "Identity" | "Dropout" | "Flatten" | "Squeeze" | "Unsqueeze" => {
                match self.operand(node, 0)? {
                    Value::Const(c) => {
                        if node.op_type == "Identity" || node.op_type == "Dropout" {
                            Value::Const(c)
                        } else {
                            bail!("shape operations on constants are not supported")
                        }
                    }
                    dynamic => self.consume(node, 0, dynamic)?,
                }
            }
            "Reshape" => {
                let shape = match self.operand(node, 1)? {
                    Value::Const(c) => c,
                    Value::Dynamic { .. } => bail!("a computed target shape is not supported"),
                };
                let value = self.operand(node, 0)?;
                let Value::Dynamic { len, .. } = value else {
                    bail!("reshaping a constant is not supported");
                };
                check_vector_reshape(&shape, len)?;
                self.consume(node, 0, value)?
            }
            "Add" | "Sub" | "Mul" | "Div" => self.elementwise(node)?,
            "Gemm" => self.gemm(node)?,
            "MatMul" => self.matmul(node)?,
            "Relu" => {
                let value = self.operand(node, 0)?;
                match value {
                    Value::Dynamic {
                        stage: Stage::Layer { index, .. },
                        len,
                    } => {
                        self.consume(node, 0, value.clone())?;
                        self.layers[index].activation = Activation::Relu;
                        Value::Dynamic {
                            stage: Stage::Layer {
                                index,
                                activated: true,
                            },
                            len,
                        }
                    }
                    Value::Dynamic { .. } => {
                        bail!("Relu is supported only after a Gemm/MatMul layer")
                    }
                    Value::Const(_) => bail!("Relu on a constant is not supported"),
                }
            }
            "Softmax" | "LogSoftmax" | "ArgMax" => {
                let value = self.operand(node, 0)?;
                let Value::Dynamic {
                    stage: Stage::Layer { index, .. },
                    ..
                } = value
                else {
                    bail!(
                        "{} is supported only on the logits of the last layer",
                        node.op_type
                    );
                };
                self.consume(node, 0, value)?;
                self.logits_name = Some(node.input[0].clone());
                self.head = Some(match node.op_type.as_str() {
                    "Softmax" => Head::Softmax,
                    "LogSoftmax" => Head::LogSoftmax,
                    _ => Head::ArgMax,
                });
                let _ = index;
                Value::Dynamic {
                    stage: Stage::Head,
                    len: 1,
                }
            }
            other => bail!(
                "operator {other} is not supported; supported: {}",
                SUPPORTED_OPS.join(", ")
            ),
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
    /// the value unchanged.
    fn consume(&mut self, node: &pb::NodeProto, i: usize, value: Value) -> Result<Value> {
        let name = &node.input[i];
        if !self.consumed.insert(name.clone()) {
            bail!("tensor '{name}' is used twice; supported: a single chain without branches");
        }
        if let Value::Dynamic {
            stage: Stage::Head, ..
        } = value
        {
            if node.op_type != "Identity" {
                bail!("nothing but Identity may follow Softmax/LogSoftmax/ArgMax");
            }
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
            Stage::Head => bail!("nothing but Identity may follow Softmax/LogSoftmax/ArgMax"),
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
        let Value::Dynamic { stage, len } = input else {
            bail!("the layer input must be computed from the network input, not a constant");
        };
        if stage == Stage::Head {
            bail!("nothing but Identity may follow Softmax/LogSoftmax/ArgMax");
        }
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

fn tensor_info(v: &pb::ValueInfoProto) -> Result<TensorInfo> {
    use pb::tensor_shape_proto::dimension::Value as Dim;
    use pb::type_proto::Value as Type;
    let shape = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Type::TensorType(t)) => t
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(Dim::DimValue(n)) if n > 0 => Some(n as usize),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    Ok(TensorInfo {
        name: v.name.clone(),
        shape,
    })
}

fn as_matrix(t: &ArrayD<f32>, what: &str) -> Result<Array2<f32>> {
    let shape = t.shape().to_vec();
    let dims: Vec<usize> = match shape.as_slice() {
        [r, c] => vec![*r, *c],
        _ => bail!("{what} has shape {shape:?}; supported: a 2-D matrix"),
    };
    Ok(t.to_shape((dims[0], dims[1]))?.to_owned())
}

/// A constant that broadcasts against a vector of `len` values: a scalar or any shape holding
/// exactly `len` elements along one axis (e.g. `[len]`, `[1, len]`).
fn broadcast_vector(c: &ArrayD<f32>, len: usize) -> Result<Array1<f32>> {
    match c.len() {
        1 => Ok(Array1::from_elem(
            len,
            c.iter().next().copied().unwrap_or(0.0),
        )),
        n if n == len && c.shape().iter().filter(|d| **d != 1).count() <= 1 => {
            Ok(Array1::from_iter(c.iter().copied()))
        }
        _ => bail!(
            "constant of shape {:?} does not broadcast to a vector of {len} values",
            c.shape()
        ),
    }
}

fn fold_consts(op: &str, x: &ArrayD<f32>, y: &ArrayD<f32>) -> Result<ArrayD<f32>> {
    if x.shape() != y.shape() && x.len() != 1 && y.len() != 1 {
        bail!(
            "{op} of constants with shapes {:?} and {:?} is not supported",
            x.shape(),
            y.shape()
        );
    }
    let f = |a: f32, b: f32| match op {
        "Add" => a + b,
        "Sub" => a - b,
        "Mul" => a * b,
        _ => a / b,
    };
    Ok(if y.len() == 1 {
        let b = y.iter().next().copied().unwrap_or(0.0);
        x.mapv(|a| f(a, b))
    } else if x.len() == 1 {
        let a = x.iter().next().copied().unwrap_or(0.0);
        y.mapv(|b| f(a, b))
    } else {
        ndarray::Zip::from(x).and(y).map_collect(|a, b| f(*a, *b))
    })
}

/// A Reshape of the dynamic vector must keep it one vector: at most one dimension above 1.
fn check_vector_reshape(shape: &ArrayD<f32>, len: usize) -> Result<()> {
    let dims: Vec<i64> = shape.iter().map(|d| *d as i64).collect();
    let big = dims.iter().filter(|d| **d > 1).count();
    let ok = match big {
        0 => true,
        1 => dims.iter().any(|d| *d as usize == len) && !dims.contains(&-1),
        _ => false,
    };
    if !ok {
        bail!("Reshape to {dims:?} would split the feature vector of {len} values; supported: flattening reshapes");
    }
    Ok(())
}

fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_f32(node: &pb::NodeProto, name: &str) -> Result<Option<f32>> {
    Ok(attr(node, name).map(|a| a.f))
}

fn attr_i64(node: &pb::NodeProto, name: &str) -> Result<Option<i64>> {
    Ok(attr(node, name).map(|a| a.i))
}

fn constant_value(node: &pb::NodeProto) -> Result<ArrayD<f32>> {
    if let Some(t) = attr(node, "value").and_then(|a| a.t.as_ref()) {
        return decode_tensor(t);
    }
    if let Some(a) = attr(node, "value_float") {
        return Ok(ArrayD::from_elem(IxDyn(&[]), a.f));
    }
    if let Some(a) = attr(node, "value_floats") {
        return Ok(ArrayD::from_shape_vec(
            IxDyn(&[a.floats.len()]),
            a.floats.clone(),
        )?);
    }
    if let Some(a) = attr(node, "value_int") {
        return Ok(ArrayD::from_elem(IxDyn(&[]), a.i as f32));
    }
    if let Some(a) = attr(node, "value_ints") {
        let v: Vec<f32> = a.ints.iter().map(|i| *i as f32).collect();
        return Ok(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v)?);
    }
    bail!("Constant without a value/value_float(s)/value_int(s) attribute is not supported")
}

/// Decodes a float, double, int32 or int64 tensor into f32 values (integer tensors only carry
/// shapes and axes here, which f32 represents exactly).
fn decode_tensor(t: &pb::TensorProto) -> Result<ArrayD<f32>> {
    use pb::tensor_proto::DataType;
    if t.data_location == Some(pb::tensor_proto::DataLocation::External as i32) {
        bail!(
            "tensor '{}' is stored in an external file; supported: weights inside the .onnx file",
            t.name
        );
    }
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|d| {
            usize::try_from(*d)
                .map_err(|_| input_error!("tensor '{}' has a negative dimension", t.name))
        })
        .collect::<Result<_>>()?;
    let count: usize = dims.iter().product();
    let raw = &t.raw_data;
    let values: Vec<f32> = match DataType::try_from(t.data_type) {
        Ok(DataType::Float) if !raw.is_empty() => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Ok(DataType::Float) => t.float_data.clone(),
        Ok(DataType::Double) if !raw.is_empty() => raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        Ok(DataType::Double) => t.double_data.iter().map(|v| *v as f32).collect(),
        Ok(DataType::Int64) if !raw.is_empty() => raw
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        Ok(DataType::Int64) => t.int64_data.iter().map(|v| *v as f32).collect(),
        Ok(DataType::Int32) if !raw.is_empty() => raw
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
            .collect(),
        Ok(DataType::Int32) => t.int32_data.iter().map(|v| *v as f32).collect(),
        _ => bail!(
            "tensor '{}' has ONNX data type {}; supported: float, double, int32, int64",
            t.name,
            t.data_type
        ),
    };
    if values.len() != count {
        bail!(
            "tensor '{}' holds {} values but its shape {dims:?} needs {count}",
            t.name,
            values.len()
        );
    }
    Ok(ArrayD::from_shape_vec(IxDyn(&dims), values)?)
}
