//! The network compared with the float one: the integer network (the product), or the CEG4N
//! artifact's fake-quantized float network (`--semantics paper`, for like-for-like timing).

use serde::Serialize;
use z3::ast::{Bool, Real};
use z3::Solver;

use super::bounds::{
    float_bounds, float_logit_differences, int_bounds, int_logit_differences, IntBounds, Interval,
};
use super::encode::{encode_float, encode_int, int_prefers, real_prefers};
use super::Decision;
use crate::int_model::IntNetwork;
use crate::ir::Network;

/// The second network of an equivalence check.
#[derive(Clone, Copy, Debug)]
pub enum Quantized<'a> {
    /// Integer semantics of ceg4n-runtime (what the firmware runs).
    Integer(&'a IntNetwork),
    /// Fake quantization: rounded weights, real-valued activations (the paper's artifact).
    Paper(&'a Network),
}

/// Logits of the quantized network.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum QuantizedLogits {
    /// Integer logits (accumulators).
    Integer(Vec<i64>),
    /// Real logits (paper semantics).
    Real(Vec<f64>),
}

impl QuantizedLogits {
    /// The class the decision rule picks (lowest index on ties).
    pub fn class(&self, decision: Decision) -> usize {
        match self {
            QuantizedLogits::Integer(v) => decision.pick(v),
            QuantizedLogits::Real(v) => decision.pick(v),
        }
    }
}

impl Quantized<'_> {
    /// Logits at `x`.
    pub fn logits(&self, x: &[f64]) -> QuantizedLogits {
        match self {
            Quantized::Integer(n) => QuantizedLogits::Integer(n.logits(x)),
            Quantized::Paper(n) => QuantizedLogits::Real(n.logits(x)),
        }
    }

    /// Class at `x`.
    pub fn classify(&self, x: &[f64], decision: Decision) -> usize {
        self.logits(x).class(decision)
    }

    /// `d[j][k]`: an upper bound of `logit_j - logit_k` over the box, and whether logits are
    /// integers.
    pub fn logit_differences(&self, lower: &[f64], upper: &[f64]) -> (Vec<Vec<f64>>, bool) {
        match self {
            Quantized::Integer(n) => (
                integer_logit_differences(n, &int_bounds(n, lower, upper)),
                true,
            ),
            Quantized::Paper(n) => (
                float_logit_differences(n, &float_bounds(n, lower, upper)),
                false,
            ),
        }
    }

    /// Asserts the network over `x` (exactly, or relaxed for the integer network); returns its
    /// logits.
    pub fn encode(
        &self,
        solver: &Solver,
        x: &[Real],
        lower: &[f64],
        upper: &[f64],
        exact: bool,
    ) -> Vec<Real> {
        match self {
            Quantized::Integer(n) => encode_int(solver, n, x, &int_bounds(n, lower, upper), exact),
            Quantized::Paper(n) => encode_float(solver, n, x, &float_bounds(n, lower, upper), "p"),
        }
    }

    /// The real value of one step of each logit (1 for real-valued logits).
    pub fn dequantization_scales(&self) -> Vec<f64> {
        match self {
            Quantized::Integer(n) => n
                .layers
                .last()
                .map(|l| l.acc_scale.clone())
                .unwrap_or_default(),
            Quantized::Paper(n) => vec![1.0; n.output_len()],
        }
    }

    /// The logits as real numbers.
    pub fn dequantized(&self, logits: &QuantizedLogits) -> Vec<f64> {
        match logits {
            QuantizedLogits::Integer(v) => match self {
                Quantized::Integer(n) => n.dequantize(v),
                Quantized::Paper(_) => v.iter().map(|q| *q as f64).collect(),
            },
            QuantizedLogits::Real(v) => v.clone(),
        }
    }

    /// Sound bounds of the dequantized logits over the box.
    pub fn dequantized_bounds(&self, lower: &[f64], upper: &[f64]) -> Vec<Interval<f64>> {
        match self {
            Quantized::Integer(n) => {
                let acc = int_bounds(n, lower, upper)
                    .acc
                    .last()
                    .cloned()
                    .unwrap_or_default();
                acc.iter()
                    .zip(self.dequantization_scales())
                    .map(|(i, s)| Interval {
                        lo: i.lo as f64 * s,
                        hi: i.hi as f64 * s,
                    })
                    .collect()
            }
            Quantized::Paper(n) => float_bounds(n, lower, upper)
                .pre
                .last()
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Whether the encoding has integrality constraints to relax.
    pub fn has_relaxation(&self) -> bool {
        matches!(self, Quantized::Integer(_))
    }

    /// `this network prefers class j over class k`.
    pub fn prefers(&self, logits: &[Real], j: usize, k: usize) -> Bool {
        match self {
            Quantized::Integer(_) => int_prefers(logits, j, k),
            Quantized::Paper(_) => real_prefers(logits, j, k),
        }
    }
}

/// [`Quantized::logit_differences`] of the integer network from its interval bounds `ib`
/// (computed once by a caller that needs them for more).
pub(crate) fn integer_logit_differences(n: &IntNetwork, ib: &IntBounds) -> Vec<Vec<f64>> {
    int_logit_differences(n, ib)
        .iter()
        .map(|row| row.iter().map(|v| *v as f64).collect())
        .collect()
}
