//! The z3 encoding of both networks over one box, in linear integer/real arithmetic.
//!
//! Float network: reals, exact over the f32 parameters (each f32 is an exact rational).
//! Integer network: integers, following ceg4n-runtime's documented arithmetic step by step:
//! input `q = floor(x * 2^f + 1/2)` then saturation; `acc = b + sum w*a`;
//! `y = floor(acc * M / 2^S + 1/2)` as `2^S*y <= acc*M + 2^(S-1) <= 2^S*y + 2^S - 1`; saturation.
//! Neurons whose phase (ReLU or saturation) the bounds fix are encoded without a case split.
//!
//! The integer network's values are z3 reals; the exact encoding adds `is_int` on every rounded
//! quantity (inputs and requantized activations; sums of integers are integers). The *relaxed*
//! encoding drops those integrality constraints: it has every exact solution and more, so
//! "unsat" in it is a proof, and it is pure linear real arithmetic, which z3 decides far faster.

use z3::ast::{Bool, Real};
use z3::Solver;

use super::bounds::{bias_i64, step_of, FloatBounds, IntBounds, Interval};
use crate::int_model::{IntNetwork, LayerOutput};
use crate::ir::{Activation, InputOp, Network};

/// The z3 terms of one encoded box.
pub struct Encoding {
    /// The real input variables.
    pub x: Vec<Real>,
    /// The float logits.
    pub float_logits: Vec<Real>,
    /// The integer logits (integral in every exact solution).
    pub int_logits: Vec<Real>,
}

/// An f32 as an exact z3 rational.
pub fn real_of_f32(v: f32) -> Real {
    let (num, den) = exact_fraction(v as f64);
    Real::from_rational_str(&num, &den).expect("decimal strings are valid rationals")
}

/// An f64 as an exact z3 rational.
pub fn real_of_f64(v: f64) -> Real {
    let (num, den) = exact_fraction(v);
    Real::from_rational_str(&num, &den).expect("decimal strings are valid rationals")
}

/// `v = num / den` exactly, as decimal strings (den a power of two).
fn exact_fraction(v: f64) -> (String, String) {
    if v == 0.0 || !v.is_finite() {
        return ("0".into(), "1".into());
    }
    let bits = v.to_bits();
    let sign = if bits >> 63 == 1 { "-" } else { "" };
    let exp_bits = ((bits >> 52) & 0x7ff) as i64;
    let frac = bits & ((1u64 << 52) - 1);
    let (mut mantissa, mut exp) = if exp_bits == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp_bits - 1075)
    };
    while mantissa % 2 == 0 && exp < 0 {
        mantissa /= 2;
        exp += 1;
    }
    if exp >= 0 {
        (
            format!("{sign}{}", mul_pow2(&mantissa.to_string(), exp as u32)),
            "1".into(),
        )
    } else {
        (format!("{sign}{mantissa}"), mul_pow2("1", (-exp) as u32))
    }
}

/// A decimal string times `2^k`, as a decimal string.
fn mul_pow2(decimal: &str, k: u32) -> String {
    let mut digits: Vec<u8> = decimal.bytes().rev().map(|b| b - b'0').collect();
    for _ in 0..k {
        let mut carry = 0;
        for d in digits.iter_mut() {
            let v = *d * 2 + carry;
            *d = v % 10;
            carry = v / 10;
        }
        if carry > 0 {
            digits.push(carry);
        }
    }
    digits.iter().rev().map(|d| (d + b'0') as char).collect()
}

fn int(v: i64) -> Real {
    Real::from_rational(v, 1)
}

fn big(v: i128) -> Real {
    Real::from_rational_str(&v.to_string(), "1").expect("decimal strings are valid rationals")
}

fn bounded_real(solver: &Solver, name: String, value: &Real, bounds: Interval<f64>) -> Real {
    let v = Real::new_const(name);
    solver.assert(v.eq(value));
    solver.assert(v.ge(real_of_f64(bounds.lo)));
    solver.assert(v.le(real_of_f64(bounds.hi)));
    v
}

/// `clamp(y, lo, hi)` for `y` in `bounds`. When the clamp is active on part of the range, the
/// result is a fresh variable with the convex hull of the clamp over the range asserted as
/// redundant cuts (in integer coefficients, so exact): they give the solver's LP core the
/// tightest linear picture of each unstable neuron.
fn saturate(
    solver: &Solver,
    name: String,
    y: &Real,
    bounds: Interval<i64>,
    lo: i64,
    hi: i64,
) -> Real {
    if bounds.lo >= lo && bounds.hi <= hi {
        return y.clone();
    } else if bounds.hi <= lo {
        return int(lo);
    } else if bounds.lo >= hi {
        return int(hi);
    }
    let (low, high) = (int(lo), int(hi));
    let h = Real::new_const(name);
    solver.assert(h.eq(y.lt(&low).ite(&low, &y.gt(&high).ite(&high, y))));
    let (yl, yh) = (bounds.lo as i128, bounds.hi as i128);
    let clamp = |v: i128| v.clamp(lo as i128, hi as i128);
    let (hl, hh) = (clamp(yl), clamp(yh));
    // Upper hull: from (yl, hl) up to where the clamp reaches hh, then flat.
    let ku = (hi as i128).min(yh);
    // Lower hull: flat at hl until the clamp leaves it, then up to (yh, hh).
    let kl = (lo as i128).max(yl);
    solver.assert(h.ge(big(hl)));
    solver.assert(h.le(big(hh)));
    if ku > yl {
        // (ku - yl) (h - hl) <= (hh - hl) (y - yl)
        solver.assert((big(ku - yl) * (&h - big(hl))).le(&(big(hh - hl) * (y - big(yl)))));
    }
    if yh > kl {
        // (yh - kl) (h - hl) >= (hh - hl) (y - kl)
        solver.assert((big(yh - kl) * (&h - big(hl))).ge(&(big(hh - hl) * (y - big(kl)))));
    }
    h
}

/// Asserts both networks over the box `[lower, upper]` into `solver` (exactly, or relaxed).
#[allow(clippy::too_many_arguments)]
pub fn encode(
    solver: &Solver,
    net: &Network,
    int_net: &IntNetwork,
    lower: &[f64],
    upper: &[f64],
    fb: &FloatBounds,
    ib: &IntBounds,
    exact: bool,
) -> Encoding {
    let x = input_vars(solver, lower, upper);
    let float_logits = encode_float(solver, net, &x, fb, "");
    let int_logits = encode_int(solver, int_net, &x, ib, exact);
    Encoding {
        x,
        float_logits,
        int_logits,
    }
}

/// The real input variables, constrained to the box.
pub fn input_vars(solver: &Solver, lower: &[f64], upper: &[f64]) -> Vec<Real> {
    (0..lower.len())
        .map(|i| {
            let v = Real::new_const(format!("x{i}"));
            solver.assert(v.ge(real_of_f64(lower[i])));
            solver.assert(v.le(real_of_f64(upper[i])));
            v
        })
        .collect()
}

/// A float network in exact real arithmetic over `x`; returns its logits. `prefix` keeps the
/// names of two float networks in one solver apart.
pub fn encode_float(
    solver: &Solver,
    net: &Network,
    x: &[Real],
    fb: &FloatBounds,
    prefix: &str,
) -> Vec<Real> {
    let mut h: Vec<Real> = x
        .iter()
        .enumerate()
        .map(|(i, xi)| {
            net.input_ops.iter().fold(xi.clone(), |v, op| {
                let c = real_of_f32(op.constant()[i]);
                match op {
                    InputOp::Add(_) => v + c,
                    InputOp::Sub(_) => v - c,
                    InputOp::Mul(_) => v * c,
                    InputOp::Div(_) => v / c,
                }
            })
        })
        .collect();
    for (l, layer) in net.layers.iter().enumerate() {
        h = layer
            .weights
            .rows()
            .into_iter()
            .zip(&layer.bias)
            .enumerate()
            .map(|(o, (row, b))| {
                let terms: Vec<Real> = row
                    .iter()
                    .zip(&h)
                    .filter(|(w, _)| **w != 0.0)
                    .map(|(w, v)| v * real_of_f32(*w))
                    .chain(std::iter::once(real_of_f32(*b)))
                    .collect();
                let z = bounded_real(
                    solver,
                    format!("{prefix}z{l}_{o}"),
                    &Real::add(&terms),
                    fb.pre[l][o],
                );
                match layer.activation {
                    Activation::None => z,
                    Activation::Relu => {
                        let zb = fb.pre[l][o];
                        if zb.lo >= 0.0 {
                            z
                        } else if zb.hi <= 0.0 {
                            real_of_f64(0.0)
                        } else {
                            let h = Real::new_const(format!("{prefix}h{l}_{o}"));
                            solver.assert(h.eq(z.ge(real_of_f64(0.0)).ite(&z, &real_of_f64(0.0))));
                            // Redundant triangle cuts (implied by the ite) that give the
                            // solver's LP core the convex hull of the unstable ReLU.
                            solver.assert(h.ge(real_of_f64(0.0)));
                            solver.assert(h.ge(&z));
                            let slope = real_of_f64(zb.hi / (zb.hi - zb.lo));
                            solver.assert(h.le(&(slope * (&z - real_of_f64(zb.lo)))));
                            h
                        }
                    }
                }
            })
            .collect();
    }
    h
}

/// The integer network over `x` (exactly, or relaxed without integrality); returns its logits.
pub fn encode_int(
    solver: &Solver,
    int_net: &IntNetwork,
    x: &[Real],
    ib: &IntBounds,
    exact: bool,
) -> Vec<Real> {
    let range = int_net.input.range();
    let mut a: Vec<Real> = x
        .iter()
        .enumerate()
        .map(|(i, xi)| {
            let q = Real::new_const(format!("q{i}"));
            if exact {
                solver.assert(q.is_int());
            }
            // q = floor(x * 2^f + 1/2)  <=>  q <= x * 2^f + 1/2 < q + 1
            let scaled = xi / real_of_f64(int_net.input.scale(i));
            let half = Real::from_rational(1, 2);
            solver.assert(q.le(&(&scaled + &half)));
            solver.assert((&scaled + &half).lt(&(&q + Real::from_rational(1, 1))));
            let raw = ib.input_raw[i];
            solver.assert(q.ge(int(raw.lo)));
            solver.assert(q.le(int(raw.hi)));
            saturate(
                solver,
                format!("qs{i}"),
                &q,
                raw,
                range.min as i64,
                range.max as i64,
            )
        })
        .collect();
    let mut int_logits = Vec::new();
    for (l, layer) in int_net.layers.iter().enumerate() {
        let bias = bias_i64(&layer.bias);
        let acc: Vec<Real> = layer
            .weights
            .chunks(layer.inputs.max(1))
            .zip(&bias)
            .enumerate()
            .map(|(o, (row, b))| {
                let terms: Vec<Real> = row
                    .iter()
                    .zip(&a)
                    .filter(|(w, _)| **w != 0)
                    .map(|(w, v)| v * int(*w as i64))
                    .chain(std::iter::once(int(*b)))
                    .collect();
                let v = Real::new_const(format!("acc{l}_{o}"));
                solver.assert(v.eq(Real::add(&terms)));
                let bounds = ib.acc[l][o];
                solver.assert(v.ge(int(bounds.lo)));
                solver.assert(v.le(int(bounds.hi)));
                v
            })
            .collect();
        match &layer.output {
            LayerOutput::Logits => int_logits = acc,
            LayerOutput::Activations { range, requant, .. } => {
                a = acc
                    .iter()
                    .enumerate()
                    .map(|(o, acc)| {
                        let step = step_of(requant, o);
                        let shift = step.shift.min(ceg4n_runtime::MAX_SHIFT) as u32;
                        let y = Real::new_const(format!("y{l}_{o}"));
                        if exact {
                            solver.assert(y.is_int());
                        }
                        let yb = ib.requant[l][o];
                        solver.assert(y.ge(int(yb.lo)));
                        solver.assert(y.le(int(yb.hi)));
                        let product = acc * int(step.multiplier as i64);
                        let pow = big(1i128 << shift);
                        let scaled_y = &y * &pow;
                        let rounded = if shift == 0 {
                            product.clone()
                        } else {
                            &product + big(1i128 << (shift - 1))
                        };
                        // 2^S*y <= acc*M + 2^(S-1) <= 2^S*y + 2^S - 1
                        solver.assert(scaled_y.le(&rounded));
                        solver.assert(rounded.le(&(&scaled_y + &pow - int(1))));
                        saturate(
                            solver,
                            format!("ys{l}_{o}"),
                            &y,
                            yb,
                            range.min as i64,
                            range.max as i64,
                        )
                    })
                    .collect();
            }
        }
    }
    int_logits
}

/// `network picks class k`: strictly above every lower index, at least every higher one.
pub fn float_picks(logits: &[Real], k: usize) -> Bool {
    let terms: Vec<Bool> = logits
        .iter()
        .enumerate()
        .filter(|(m, _)| *m != k)
        .map(|(m, v)| {
            if m < k {
                logits[k].gt(v)
            } else {
                logits[k].ge(v)
            }
        })
        .collect();
    Bool::and(&terms)
}

/// `the integer network prefers j over k` under lowest-index tie-breaking (logits are
/// integers, so "greater" is "at least one more", which also tightens the relaxation).
pub fn int_prefers(logits: &[Real], j: usize, k: usize) -> Bool {
    if j < k {
        logits[j].ge(&logits[k])
    } else {
        logits[j].ge(&(&logits[k] + int(1)))
    }
}

/// `a real-valued network prefers j over k` under lowest-index tie-breaking.
pub fn real_prefers(logits: &[Real], j: usize, k: usize) -> Bool {
    if j < k {
        logits[j].ge(&logits[k])
    } else {
        logits[j].gt(&logits[k])
    }
}
