//! Float network + bit-widths + calibration → [`IntNetwork`].
//!
//! Symmetric weights (per layer, or per output channel for hidden layers), bias at the
//! accumulator scale, per-tensor activation scales from a calibration of the largest activation,
//! requantization by a 31-bit multiplier and a shift. Input operations (normalisation) are
//! folded into the first layer here, in f64, so the integer network takes the raw input.

use crate::error::{bail, Result};
use ceg4n_runtime::{weight_range, ActRange, Requant, MAX_BITS, MIN_BITS};
use ndarray::{Array1, Array2};
use serde::Serialize;

use crate::data::Property;
use crate::int_model::{AccWidth, Bias, InputFormat, IntLayer, IntNetwork, LayerOutput};
use crate::ir::{Activation, InputOp, Network};

/// Bit-widths of one quantization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuantConfig {
    /// Weight bits per layer.
    pub weight_bits: Vec<u32>,
    /// Activation bits per hidden layer (the last layer outputs raw accumulators).
    pub act_bits: Vec<u32>,
    /// Input width in bits.
    pub input_bits: u32,
    /// Scale hidden-layer weights per output channel instead of per layer.
    pub per_channel: bool,
    /// One input fixed-point format for every feature instead of one per feature.
    pub uniform_input: bool,
}

/// Random points drawn inside each box for calibration.
pub const CALIBRATION_SAMPLES_PER_BOX: usize = 256;

/// The weight width `verify` and `bench verify` use when no `--bits` is given.
pub const DEFAULT_WEIGHT_BITS: u32 = 8;

/// The default input width.
pub const DEFAULT_INPUT_BITS: u32 = 16;

impl QuantConfig {
    /// Expands per-network bit lists: one value applies to every layer, otherwise one value per
    /// layer (weights) or per hidden layer (activations; a value for the last layer is accepted
    /// and ignored, since logits stay at accumulator width).
    pub fn for_network(
        net: &Network,
        weight_bits: &[u32],
        act_bits: &[u32],
        input_bits: u32,
        per_channel: bool,
        uniform_input: bool,
    ) -> Result<QuantConfig> {
        let layers = net.layers.len();
        let hidden = layers - 1;
        let expand = |values: &[u32], n: usize, accept: &[usize], what: &str| -> Result<Vec<u32>> {
            for v in values {
                check_bits(*v, what)?;
            }
            match values.len() {
                1 => Ok(vec![values[0]; n]),
                len if accept.contains(&len) => Ok(values[..n].to_vec()),
                len => bail!(
                    "{what} lists {len} values; the network has {layers} layers: give one value or {}",
                    accept.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" or ")
                ),
            }
        };
        check_bits(input_bits, "--input-bits")?;
        Ok(QuantConfig {
            weight_bits: expand(weight_bits, layers, &[layers], "--bits")?,
            act_bits: expand(act_bits, hidden, &[hidden, layers], "--act-bits")?,
            input_bits,
            per_channel,
            uniform_input,
        })
    }
}

/// Checks a bit-width against the supported range.
pub fn check_bits(bits: u32, what: &str) -> Result<()> {
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        bail!("{what} {bits} is out of range; supported widths: {MIN_BITS}..={MAX_BITS} bits");
    }
    Ok(())
}

/// The largest magnitudes seen (or proven) at the input and after every layer.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Calibration {
    /// Largest |x| of each raw input feature.
    pub input_max_abs: Vec<f64>,
    /// Largest |activation| after each layer (after its activation function).
    pub layer_max_abs: Vec<f64>,
}

impl Calibration {
    /// From sample points (float forward passes).
    pub fn from_points<'a>(
        net: &Network,
        points: impl IntoIterator<Item = &'a Vec<f64>>,
    ) -> Calibration {
        let mut cal = Calibration::empty(net);
        for x in points {
            cal.observe_input(x);
            for (m, out) in cal.layer_max_abs.iter_mut().zip(net.layer_outputs(x)) {
                *m = out.iter().fold(*m, |m, v| m.max(v.abs()));
            }
        }
        cal
    }

    /// From input boxes: their centres, corners (all of them up to 8 inputs, else 256) and
    /// uniform samples inside them. An empirical range, as post-training quantization uses;
    /// values beyond it saturate, and that saturation is part of what the verifier proves.
    pub fn from_boxes(net: &Network, boxes: &[Property]) -> Calibration {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xCE64);
        let points: Vec<Vec<f64>> = boxes
            .iter()
            .flat_map(|b| b.sample_points(8, 256, CALIBRATION_SAMPLES_PER_BOX, &mut rng))
            .collect();
        Calibration::from_points(net, &points)
    }

    /// The larger of two calibrations, element by element.
    pub fn union(&self, other: &Calibration) -> Calibration {
        Calibration {
            input_max_abs: max_each(&self.input_max_abs, &other.input_max_abs),
            layer_max_abs: max_each(&self.layer_max_abs, &other.layer_max_abs),
        }
    }

    fn empty(net: &Network) -> Calibration {
        Calibration {
            input_max_abs: vec![0.0; net.input_len()],
            layer_max_abs: vec![0.0; net.layers.len()],
        }
    }

    fn observe_input(&mut self, x: &[f64]) {
        for (m, v) in self.input_max_abs.iter_mut().zip(x) {
            *m = m.max(v.abs());
        }
    }
}

fn max_each(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x.max(*y)).collect()
}

/// The input operations composed into one affine map per feature, `x' = alpha * x + beta`:
/// `(alpha, beta)`, in f64.
pub(crate) fn input_affine(net: &Network) -> (Vec<f64>, Vec<f64>) {
    let n = net.input_len();
    let (mut alpha, mut beta) = (vec![1.0f64; n], vec![0.0f64; n]);
    for op in &net.input_ops {
        for i in 0..n {
            let c = op.constant()[i] as f64;
            match op {
                InputOp::Add(_) => beta[i] += c,
                InputOp::Sub(_) => beta[i] -= c,
                InputOp::Mul(_) => {
                    alpha[i] *= c;
                    beta[i] *= c;
                }
                InputOp::Div(_) => {
                    alpha[i] /= c;
                    beta[i] /= c;
                }
            }
        }
    }
    (alpha, beta)
}

/// The first layer with the input operations folded in: `x' = alpha * x + beta` per feature
/// ([`input_affine`]), so `W x' + b = (W diag(alpha)) x + (b + W beta)`. All in f64.
pub(crate) fn effective_layers(net: &Network) -> Vec<(Array2<f64>, Array1<f64>)> {
    let (alpha, beta) = input_affine(net);
    net.layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            let w = layer.weights.mapv(f64::from);
            let b = layer.bias.mapv(f64::from);
            if l > 0 {
                return (w, b);
            }
            let folded_b = &b + &w.dot(&Array1::from(beta.clone()));
            let folded_w = &w * &Array1::from(alpha.clone());
            (folded_w, folded_b)
        })
        .collect()
}

/// Quantizes `net` at `config`, with activation scales from `cal`.
pub fn quantize(net: &Network, config: &QuantConfig, cal: &Calibration) -> Result<IntNetwork> {
    let input = input_format(config.input_bits, &cal.input_max_abs, config.uniform_input);
    // The first layer sees integers: its effective weights absorb each feature's scale.
    let mut in_scale = 1.0;
    let mut in_max_abs = input.range().min.unsigned_abs() as i128;
    let last = net.layers.len() - 1;
    let mut layers = Vec::with_capacity(net.layers.len());
    for (l, ((mut w, b), layer)) in effective_layers(net)
        .into_iter()
        .zip(&net.layers)
        .enumerate()
    {
        if l == 0 {
            for (mut column, f) in w.columns_mut().into_iter().zip(&input.frac_bits) {
                column *= (-*f as f64).exp2();
            }
        }
        let bits = config.weight_bits[l];
        let per_channel = config.per_channel && l != last;
        let qmax = weight_range(bits).max as f64;
        let row_scale = |row: ndarray::ArrayView1<f64>| {
            let m = row.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            if m > 0.0 {
                m / qmax
            } else {
                1.0
            }
        };
        let w_scales: Vec<f64> = if per_channel {
            w.rows().into_iter().map(row_scale).collect()
        } else {
            vec![row_scale(w.view().into_shape_with_order(w.len())?); w.nrows()]
        };
        let weights: Vec<i16> = w
            .rows()
            .into_iter()
            .zip(&w_scales)
            .flat_map(|(row, s)| {
                row.iter()
                    .map(|v| (v / s).round().clamp(-qmax, qmax) as i16)
                    .collect::<Vec<_>>()
            })
            .collect();
        let acc_scale: Vec<f64> = w_scales.iter().map(|s| s * in_scale).collect();
        let bias_q: Vec<i64> = b
            .iter()
            .zip(&acc_scale)
            .map(|(b, s)| (b / s).round() as i64)
            .collect();
        let bound = weights
            .chunks(w.ncols().max(1))
            .zip(&bias_q)
            .map(|(row, b)| {
                (*b as i128).abs()
                    + row.iter().map(|w| (*w as i128).abs()).sum::<i128>() * in_max_abs
            })
            .max()
            .unwrap_or(0);
        if bound > i64::MAX as i128 / 2 {
            bail!("layer {l}: accumulator bound {bound} exceeds 63 bits; use fewer input/activation bits");
        }
        let accumulator = if bound <= i32::MAX as i128 {
            AccWidth::I32
        } else {
            AccWidth::I64
        };
        let bias = match accumulator {
            AccWidth::I32 => Bias::I32(bias_q.iter().map(|b| *b as i32).collect()),
            AccWidth::I64 => Bias::I64(bias_q),
        };
        let output = if l == last {
            LayerOutput::Logits
        } else {
            let act_bits = config.act_bits[l];
            let relu = layer.activation == Activation::Relu;
            let range = if relu {
                ActRange::relu(act_bits)
            } else {
                ActRange::signed(act_bits)
            };
            let max_abs = cal.layer_max_abs[l];
            let scale = if max_abs > 0.0 {
                max_abs / range.max as f64
            } else {
                1.0
            };
            let requant = acc_scale
                .iter()
                .map(|s| requant_step(s / scale))
                .collect::<Result<Vec<_>>>()?;
            in_scale = scale;
            in_max_abs = range.min.unsigned_abs().max(range.max.unsigned_abs()) as i128;
            LayerOutput::Activations {
                bits: act_bits,
                relu,
                range,
                requant,
                scale,
            }
        };
        layers.push(IntLayer {
            inputs: w.ncols(),
            outputs: w.nrows(),
            weight_bits: bits,
            packed: crate::int_model::pack_weights(&weights, bits),
            weights,
            bias,
            accumulator,
            accumulator_bound: bound,
            acc_scale,
            per_channel,
            output,
        });
    }
    Ok(IntNetwork {
        input,
        layers,
        class_labels: net.head.labels.clone(),
    })
}

/// The input format of `bits` bits with, per feature, the most fractional bits that still hold
/// its largest magnitude; with `uniform`, one format (the coarsest) for every feature.
pub fn input_format(bits: u32, max_abs: &[f64], uniform: bool) -> InputFormat {
    let top = ((1i64 << (bits - 1)) - 1) as f64;
    let fitted: Vec<Option<i32>> = max_abs
        .iter()
        .map(|m| {
            (*m > 0.0 && m.is_finite()).then(|| ((top / m).log2().floor() as i32).clamp(-32, 32))
        })
        .collect();
    // A feature never seen away from zero gets the coarsest format of the others, so that a
    // value outside the calibration data is not clipped at once.
    let coarsest = fitted
        .iter()
        .flatten()
        .copied()
        .min()
        .unwrap_or(bits as i32 - 1);
    let frac_bits = fitted
        .iter()
        .map(|f| {
            if uniform {
                coarsest
            } else {
                f.unwrap_or(coarsest)
            }
        })
        .collect();
    InputFormat { bits, frac_bits }
}

/// `multiplier / 2^shift ≈ m` with the multiplier in `2^30..2^31` where the shift range allows.
pub fn requant_step(m: f64) -> Result<Requant> {
    if !(m.is_finite() && m > 0.0) {
        bail!("requantization multiplier {m} is not a positive number");
    }
    let mut shift = (30 - m.log2().floor() as i64).clamp(0, ceg4n_runtime::MAX_SHIFT as i64);
    loop {
        let multiplier = (m * (shift as f64).exp2()).round();
        if multiplier <= i32::MAX as f64 {
            return Ok(Requant {
                multiplier: multiplier as i32,
                shift: shift as u8,
            });
        }
        if shift == 0 {
            bail!("requantization multiplier {m} is too large (activation scale too small)");
        }
        shift -= 1;
    }
}

/// The CEG4N artifact's fake quantization (`--semantics paper`): per layer
/// `s = 2 * max|W, b| / (2^bits - 1)`, `w' = round(w / s) * s` and `b' = round(b / s) * s`
/// rounding half away from zero, activations and input left in float. Input operations are
/// kept as they are. The result is a float network (parameters stored as f32).
pub fn paper_fake_quantize(net: &Network, weight_bits: &[u32]) -> Network {
    let mut out = net.clone();
    for (layer, bits) in out.layers.iter_mut().zip(weight_bits) {
        let max = layer
            .weights
            .iter()
            .chain(layer.bias.iter())
            .fold(0.0f64, |m, v| m.max((*v as f64).abs()));
        if max == 0.0 {
            continue;
        }
        let scale = 2.0 * max / ((1u64 << bits) - 1) as f64;
        let fake = |v: &mut f32| *v = (((*v as f64) / scale).round() * scale) as f32;
        layer.weights.iter_mut().for_each(fake);
        layer.bias.iter_mut().for_each(fake);
    }
    out
}
