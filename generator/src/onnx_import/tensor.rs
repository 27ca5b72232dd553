//! Tensors, attributes and constants of an ONNX graph, decoded.

use ndarray::{Array1, Array2, ArrayD, IxDyn};
use tract_onnx::pb;

use crate::error::{bail, input_error, Result};
use crate::ir::{ClassLabels, TensorInfo};

pub(super) fn tensor_info(v: &pb::ValueInfoProto) -> Result<TensorInfo> {
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

pub(super) fn as_matrix(t: &ArrayD<f32>, what: &str) -> Result<Array2<f32>> {
    let shape = t.shape().to_vec();
    let dims: Vec<usize> = match shape.as_slice() {
        [r, c] => vec![*r, *c],
        _ => bail!("{what} has shape {shape:?}; supported: a 2-D matrix"),
    };
    Ok(t.to_shape((dims[0], dims[1]))?.to_owned())
}

/// A constant that broadcasts against a vector of `len` values: a scalar or any shape holding
/// exactly `len` elements along one axis (e.g. `[len]`, `[1, len]`).
pub(super) fn broadcast_vector(c: &ArrayD<f32>, len: usize) -> Result<Array1<f32>> {
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

pub(super) fn fold_consts(op: &str, x: &ArrayD<f32>, y: &ArrayD<f32>) -> Result<ArrayD<f32>> {
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
pub(super) fn check_vector_reshape(shape: &ArrayD<f32>, len: usize) -> Result<()> {
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

pub(super) fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

pub(super) fn attr_f32(node: &pb::NodeProto, name: &str) -> Result<Option<f32>> {
    Ok(attr(node, name).map(|a| a.f))
}

pub(super) fn attr_i64(node: &pb::NodeProto, name: &str) -> Result<Option<i64>> {
    Ok(attr(node, name).map(|a| a.i))
}

pub(super) fn constant_value(node: &pb::NodeProto) -> Result<ArrayD<f32>> {
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
pub(super) fn decode_tensor(t: &pb::TensorProto) -> Result<ArrayD<f32>> {
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

/// The float list attribute `name` (empty when absent).
pub(super) fn attr_floats(node: &pb::NodeProto, name: &str) -> Vec<f32> {
    attr(node, name)
        .map(|a| a.floats.clone())
        .unwrap_or_default()
}

/// The integer list attribute `name`, if present.
pub(super) fn attr_ints(node: &pb::NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

/// Class labels from a ZipMap's `classlabels_int64s` or `classlabels_strings`.
pub(super) fn attr_labels(node: &pb::NodeProto) -> Option<ClassLabels> {
    if let Some(a) = attr(node, "classlabels_strings").filter(|a| !a.strings.is_empty()) {
        let labels = a
            .strings
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned());
        return Some(ClassLabels::Strings(labels.collect()));
    }
    attr_ints(node, "classlabels_int64s")
        .filter(|v| !v.is_empty())
        .map(ClassLabels::Ints)
}

/// Class labels from an int64 (or int32) or string tensor, as scikit-learn's `classes_`.
pub(super) fn decode_labels(t: &pb::TensorProto) -> Result<ClassLabels> {
    use pb::tensor_proto::DataType;
    let raw = &t.raw_data;
    Ok(match DataType::try_from(t.data_type) {
        Ok(DataType::String) => ClassLabels::Strings(
            t.string_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        ),
        Ok(DataType::Int64) if !raw.is_empty() => ClassLabels::Ints(
            raw.chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        Ok(DataType::Int64) => ClassLabels::Ints(t.int64_data.clone()),
        Ok(DataType::Int32) if raw.is_empty() => {
            ClassLabels::Ints(t.int32_data.iter().map(|v| i64::from(*v)).collect())
        }
        _ => bail!(
            "class table '{}' has ONNX data type {}; supported: int64, int32 or string labels",
            t.name,
            t.data_type
        ),
    })
}

/// A constant transposed by `perm` (reversed axes when absent), as ONNX Transpose does.
pub(super) fn transpose_const(c: &ArrayD<f32>, perm: Option<Vec<i64>>) -> Result<ArrayD<f32>> {
    let rank = c.ndim();
    let perm: Vec<usize> = match perm {
        None => (0..rank).rev().collect(),
        Some(p) => p
            .iter()
            .map(|a| usize::try_from(*a).ok().filter(|a| *a < rank))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| {
                input_error!("Transpose perm {p:?} does not fit a rank-{rank} tensor")
            })?,
    };
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    if sorted != (0..rank).collect::<Vec<_>>() {
        bail!("Transpose perm {perm:?} is not a permutation of the {rank} axes");
    }
    Ok(c.view()
        .permuted_axes(IxDyn(&perm))
        .as_standard_layout()
        .to_owned())
}
