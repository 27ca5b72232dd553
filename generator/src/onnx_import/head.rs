//! The classifier head: what a graph computes from the logits. Exporters write more than the
//! logits — scikit-learn's skl2onnx adds Softmax (or Sigmoid, `1 - p` and Concat for two
//! classes), ArgMax, the class table (ai.onnx.ml ArrayFeatureExtractor) and ZipMap; PyTorch
//! and Keras add Softmax or Sigmoid. Each head value is checked to be a function of the logits
//! that keeps their argmax (so the class ceg4n verifies is the class the graph reports), and
//! the class labels are kept.

use tract_onnx::pb;

use super::tensor::{attr, attr_i64, attr_labels, decode_labels};
use super::{Importer, Stage, Value};
use crate::error::{bail, Result};
use crate::ir::{ClassLabels, HeadOutput, Scores};

/// A value of the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HeadValue {
    /// Scores whose argmax is the logits' argmax: Softmax, LogSoftmax, or
    /// `[1 - sigmoid(z), sigmoid(z)]` of one logit.
    Scores,
    /// `sigmoid(z)` of a single logit.
    Positive,
    /// `1 - sigmoid(z)`.
    Negative,
    /// The argmax.
    ClassIndex,
    /// The class table at the argmax.
    Label,
    /// ZipMap of the scores.
    ScoreMap,
}

impl HeadValue {
    /// What a graph output holding this value is.
    pub(super) fn output(self) -> HeadOutput {
        match self {
            HeadValue::Scores | HeadValue::Positive | HeadValue::Negative => HeadOutput::Scores,
            HeadValue::ClassIndex => HeadOutput::ClassIndex,
            HeadValue::Label => HeadOutput::Label,
            HeadValue::ScoreMap => HeadOutput::ScoreMap,
        }
    }
}

/// Operators that start a head when applied to a layer's output.
pub(super) fn starts_head(node: &pb::NodeProto) -> bool {
    node.domain.is_empty()
        && matches!(
            node.op_type.as_str(),
            "Softmax" | "LogSoftmax" | "Sigmoid" | "ArgMax"
        )
}

const HEAD_OPS: &str = "Softmax, LogSoftmax, Sigmoid (one logit), 1 - p and Concat (two-class \
     probabilities), ArgMax, ai.onnx.ml ArrayFeatureExtractor (class table), ai.onnx.ml ZipMap, \
     Identity, Cast, Reshape, Flatten, Squeeze, Unsqueeze";

impl Importer {
    /// A node of the head (its operand is the logits or a head value).
    pub(super) fn head_node(&mut self, node: &pb::NodeProto) -> Result<Value> {
        let op = node.op_type.as_str();
        let ml = node.domain == "ai.onnx.ml";
        let head = |value: HeadValue, len: usize| Value::Dynamic {
            stage: Stage::Head(value),
            len,
        };
        match (ml, op) {
            (false, "Softmax" | "LogSoftmax" | "Sigmoid" | "ArgMax") => {
                let value = self.operand(node, 0)?;
                if op == "ArgMax" {
                    check_argmax(node)?;
                }
                match value {
                    Value::Dynamic {
                        stage: Stage::Layer { index, .. },
                        len,
                    } => {
                        self.consume(node, 0, value)?;
                        self.head_layer = Some(index);
                        self.logits_name = Some(node.input[0].clone());
                        Ok(match op {
                            "Softmax" => head(self.scores(Scores::Softmax)?, len),
                            "LogSoftmax" => head(self.scores(Scores::LogSoftmax)?, len),
                            "Sigmoid" if len == 1 => head(self.scores(Scores::Sigmoid)?, 1),
                            "Sigmoid" => bail!(
                                "Sigmoid over {len} logits is a multi-label head; supported: Sigmoid of a single logit (binary classifier), Softmax over several"
                            ),
                            _ => head(HeadValue::ClassIndex, 1),
                        })
                    }
                    Value::Dynamic {
                        stage: Stage::Head(HeadValue::Scores),
                        ..
                    } if op == "ArgMax" => Ok(head(HeadValue::ClassIndex, 1)),
                    _ => bail!(
                        "{op} is supported only on the logits of the last layer (ArgMax also on the scores)"
                    ),
                }
            }
            (false, "Identity" | "Cast" | "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze") => {
                match self.operand(node, 0)? {
                    value @ Value::Dynamic {
                        stage: Stage::Head(_),
                        ..
                    } => Ok(value),
                    _ => bail!("{op} mixes a head value into its shape; supported: {op} of a head value"),
                }
            }
            (false, "Sub") => {
                // skl2onnx's two-class head: 1 - sigmoid(z).
                let (a, b) = (self.operand(node, 0)?, self.operand(node, 1)?);
                match (a, b) {
                    (
                        Value::Const(one),
                        Value::Dynamic {
                            stage: Stage::Head(HeadValue::Positive),
                            ..
                        },
                    ) if one.iter().all(|v| *v == 1.0) => Ok(head(HeadValue::Negative, 1)),
                    _ => bail!("Sub on the head is supported only as 1 - sigmoid(logit)"),
                }
            }
            (false, "Concat") => {
                let parts: Vec<Value> = (0..node.input.len())
                    .map(|i| self.operand(node, i))
                    .collect::<Result<_>>()?;
                let kind = |v: &Value| match v {
                    Value::Dynamic {
                        stage: Stage::Head(h),
                        ..
                    } => Some(*h),
                    _ => None,
                };
                let kinds: Vec<Option<HeadValue>> = parts.iter().map(kind).collect();
                let axis = attr_i64(node, "axis")?.unwrap_or(1);
                if kinds != [Some(HeadValue::Negative), Some(HeadValue::Positive)]
                    || !(axis == 1 || axis == -1)
                {
                    bail!("Concat on the head is supported only as [1 - sigmoid(z), sigmoid(z)] along the class axis");
                }
                Ok(head(HeadValue::Scores, 2))
            }
            (true, "ArrayFeatureExtractor") => {
                let index = self.operand(node, 1)?;
                let table = node.input.first().and_then(|name| self.tensors.get(name));
                let (Some(table), Value::Dynamic {
                    stage: Stage::Head(HeadValue::ClassIndex),
                    ..
                }) = (table, index)
                else {
                    bail!("ArrayFeatureExtractor is supported only as a constant class table indexed by the ArgMax of the logits");
                };
                let labels = decode_labels(table)?;
                self.labels(labels)?;
                Ok(head(HeadValue::Label, 1))
            }
            (true, "ZipMap") => match self.operand(node, 0)? {
                Value::Dynamic {
                    stage: Stage::Head(HeadValue::Scores),
                    len,
                } => {
                    if let Some(labels) = attr_labels(node) {
                        self.labels(labels)?;
                    }
                    Ok(head(HeadValue::ScoreMap, len))
                }
                _ => bail!("ZipMap is supported only on the scores (probabilities)"),
            },
            _ => bail!(
                "{op} on the classifier head is not supported (the head must be a function of the logits that keeps their argmax); supported after the logits: {HEAD_OPS}"
            ),
        }
    }

    /// Records how the head scores the logits (one way per graph).
    fn scores(&mut self, scores: Scores) -> Result<HeadValue> {
        match self.head.scores {
            Some(s) if s != scores => {
                bail!("the graph scores the logits twice ({s:?} and {scores:?}); supported: one")
            }
            _ => self.head.scores = Some(scores),
        }
        Ok(match scores {
            Scores::Sigmoid => HeadValue::Positive,
            _ => HeadValue::Scores,
        })
    }

    /// Records the class labels; a second table (ZipMap beside ArrayFeatureExtractor) must agree.
    fn labels(&mut self, labels: ClassLabels) -> Result<()> {
        match &self.head.labels {
            Some(known) if *known != labels => {
                bail!("the graph's class tables disagree ({known:?} and {labels:?})")
            }
            _ => self.head.labels = Some(labels),
        }
        Ok(())
    }
}

/// ArgMax must break ties to the lowest index, as ceg4n's argmax does.
fn check_argmax(node: &pb::NodeProto) -> Result<()> {
    if attr(node, "select_last_index").is_some_and(|a| a.i != 0) {
        bail!("ArgMax with select_last_index=1 breaks ties to the last class; supported: ties to the first (select_last_index=0)");
    }
    Ok(())
}
