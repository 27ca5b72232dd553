//! What a configuration costs and keeps: storage, test accuracy against the float network and
//! a uniform baseline, and agreement with the float network on the user's data (the fidelity
//! floor).

use crate::error::Result;
use ceg4n_runtime::{MAX_BITS, MIN_BITS};
use serde::Serialize;

use super::screen::SetAsideRow;
use crate::data::Dataset;
use crate::int_model::IntNetwork;
use crate::ir::Network;
use crate::quantize::QuantConfig;
use crate::task::Task;
use crate::verify::Decision;

/// Storage of one configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Storage {
    /// `sum_l bits_l * |W_l|`: the objective.
    pub weight_storage_bits: u64,
    /// `sum_l bits_l * (|W_l| + |b_l|)`: the paper's objective.
    pub paper_storage_bits: u64,
    /// Input and hidden activations at their widths (the second objective).
    pub activation_bits: u64,
}

impl Storage {
    /// The storage of `config` for `net`.
    pub fn of(net: &Network, config: &QuantConfig) -> Storage {
        let weights = net.layers.iter().zip(&config.weight_bits);
        Storage {
            weight_storage_bits: weights
                .clone()
                .map(|(l, b)| *b as u64 * l.weights.len() as u64)
                .sum(),
            paper_storage_bits: weights
                .map(|(l, b)| *b as u64 * (l.weights.len() + l.bias.len()) as u64)
                .sum(),
            activation_bits: config.input_bits as u64 * net.input_len() as u64
                + net
                    .layers
                    .iter()
                    .zip(&config.act_bits)
                    .map(|(l, b)| *b as u64 * l.outputs() as u64)
                    .sum::<u64>(),
        }
    }

    /// Lexicographic objective: weights first, then activations.
    pub fn key(&self) -> (u64, u64) {
        (self.weight_storage_bits, self.activation_bits)
    }
}

/// Accuracy on a labelled test set, and agreement with the float network on it.
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize)]
pub struct Accuracy {
    /// The float network.
    pub float: f64,
    /// The refined integer network.
    pub quantized: f64,
    /// Uniform quantization (one weight width, the refined activation widths) at no more
    /// weight storage than the refined network.
    pub uniform_baseline: f64,
    /// The baseline's weight width.
    pub uniform_bits: u32,
    /// Fraction of all rows where the refined integer network picks the float network's class.
    #[serde(default)]
    pub agreement: f64,
    /// The fidelity floor: the least agreement the refinement accepts, on the rows not set
    /// aside.
    #[serde(default)]
    pub min_agreement: f64,
    /// Agreement on the rows not set aside (what the floor is checked against).
    #[serde(default)]
    pub agreement_counted: f64,
    /// Whether `agreement_counted >= min_agreement`.
    #[serde(default)]
    pub floor_met: bool,
    /// Data rows.
    #[serde(default)]
    pub rows: usize,
}

/// One point of the uniform-quantization curve: every layer at `weight_bits`.
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize)]
pub struct CurvePoint {
    /// The one weight width.
    pub weight_bits: u32,
    /// `sum_l weight_bits * |W_l|`.
    pub weight_storage_bits: u64,
    /// Test accuracy.
    pub accuracy: f64,
}

/// Test accuracy of uniform quantization at every weight width (activations and input as in
/// `config`): the curve the refined network is compared against.
pub fn uniform_curve(task: &Task, config: &QuantConfig, data: &Dataset) -> Result<Vec<CurvePoint>> {
    (MIN_BITS..=MAX_BITS)
        .map(|bits| {
            let uniform = QuantConfig {
                weight_bits: vec![bits; task.net.layers.len()],
                ..config.clone()
            };
            let int_net = task.quantize(&uniform)?;
            let correct = data
                .features
                .iter()
                .zip(&data.labels)
                .filter(|(x, label)| int_net.classify(x) == **label)
                .count();
            Ok(CurvePoint {
                weight_bits: bits,
                weight_storage_bits: Storage::of(&task.net, &uniform).weight_storage_bits,
                accuracy: correct as f64 / data.features.len().max(1) as f64,
            })
        })
        .collect()
}

/// Test accuracy of the float network, the refined network and the uniform baseline, and the
/// refined network's agreement with the float one (over all rows, and over the rows not in
/// `set_aside`, against the floor `min_agreement`).
pub fn accuracy(
    task: &Task,
    config: &QuantConfig,
    data: &Dataset,
    min_agreement: f64,
    set_aside: &[SetAsideRow],
    decision: Decision,
) -> Result<Accuracy> {
    let net = &task.net;
    let float_class = |x: &[f64]| decision.pick(&net.logits(x));
    let int_class = |n: &IntNetwork, x: &[f64]| decision.pick(&n.logits(x));
    let rows = data.features.len();
    let rate = |classify: &dyn Fn(&[f64]) -> usize| {
        let correct = data
            .features
            .iter()
            .zip(&data.labels)
            .filter(|(x, label)| classify(x) == **label)
            .count();
        correct as f64 / rows.max(1) as f64
    };
    let refined = task.quantize(config)?;
    // The widest single weight width whose storage does not exceed the refined network's.
    let budget = Storage::of(net, config).weight_storage_bits;
    let params: u64 = net.layers.iter().map(|l| l.weights.len() as u64).sum();
    let uniform_bits = ((budget / params.max(1)) as u32).clamp(MIN_BITS, MAX_BITS);
    let uniform_config = QuantConfig {
        weight_bits: vec![uniform_bits; net.layers.len()],
        ..config.clone()
    };
    let uniform = task.quantize(&uniform_config)?;
    let agrees: Vec<bool> = data
        .features
        .iter()
        .map(|x| int_class(&refined, x) == float_class(x))
        .collect();
    let counted: Vec<bool> = agrees
        .iter()
        .enumerate()
        .filter(|(i, _)| !set_aside.iter().any(|s| s.row == i + 1))
        .map(|(_, a)| *a)
        .collect();
    let fraction = |v: &[bool]| v.iter().filter(|a| **a).count() as f64 / v.len().max(1) as f64;
    let agreement_counted = fraction(&counted);
    let allowed = super::screen::allowed_misses(counted.len(), min_agreement);
    Ok(Accuracy {
        float: rate(&float_class),
        quantized: rate(&|x| int_class(&refined, x)),
        uniform_baseline: rate(&|x| int_class(&uniform, x)),
        uniform_bits,
        agreement: fraction(&agrees),
        min_agreement,
        agreement_counted,
        floor_met: counted.iter().filter(|a| !**a).count() <= allowed,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Activation, Dense, Network, TensorInfo};

    fn net() -> Network {
        let layer = |i: usize, o: usize, activation| Dense {
            weights: ndarray::Array2::zeros((o, i)),
            bias: ndarray::Array1::zeros(o),
            activation,
        };
        Network {
            input: TensorInfo {
                name: "x".into(),
                shape: vec![Some(1), Some(4)],
            },
            outputs: vec![],
            input_ops: vec![],
            layers: vec![layer(4, 3, Activation::Relu), layer(3, 2, Activation::None)],
            head: Default::default(),
            logits_name: "y".into(),
        }
    }

    #[test]
    fn storage_counts_bits_per_weight_bias_and_activation() {
        let config = QuantConfig {
            weight_bits: vec![4, 8],
            act_bits: vec![6],
            input_bits: 5,
            per_channel: false,
            uniform_input: false,
        };
        let s = Storage::of(&net(), &config);
        assert_eq!(s.weight_storage_bits, 4 * 12 + 8 * 6);
        assert_eq!(s.paper_storage_bits, 4 * (12 + 3) + 8 * (6 + 2));
        assert_eq!(s.activation_bits, 5 * 4 + 6 * 3);
        assert!(
            s.key()
                < Storage::of(
                    &net(),
                    &QuantConfig {
                        weight_bits: vec![5, 8],
                        ..config
                    }
                )
                .key()
        );
    }
}
