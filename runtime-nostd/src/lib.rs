//! # ceg4n-runtime: the one definition of ceg4n's integer inference
//!
//! Every integer operation that a ceg4n network performs is defined here, once: the host
//! reference model calls these functions, the generated firmware crate contains exactly this
//! source, and the SMT encoding of the verifier is tested against it. A proof is only worth
//! something if it is about this code.
//!
//! The crate is `no_std`, allocates nothing, uses no floating point and no `unsafe` (but for
//! the opt-in `arm-dsp` feature's assembly, see [`PairedWords`]), and every
//! function is total: no input makes it panic (slices of mismatched length are truncated to the
//! shortest, as [`Iterator::zip`] does; integer arithmetic is explicitly wrapping where the
//! generator proves that no wrap can happen, and saturating or clamped elsewhere).
//!
//! ## The arithmetic of one dense layer
//! For output `o` with inputs `a[i]` (activations, any integer type of at most 16 bits),
//! weights `w[o][i]` (2..=16 bits, stored in `i8`/`i16`), bias `b[o]` and accumulator type
//! `Acc` (`i32` or `i64`, chosen by the generator from a proven bound so that it never wraps):
//!
//! ```text
//! acc[o] = b[o] + sum_i w[o][i] * a[i]                       (in Acc)
//! y[o]   = floor(acc[o] * M[o] / 2^S[o] + 1/2)              (exact, "round half up")
//! out[o] = min(max(y[o], lo), hi)                            (lo = 0 with a fused ReLU)
//! ```
//!
//! The last layer of a network skips requantization: its accumulators are the logits, and the
//! predicted class is [`argmax`] of them, the lowest index winning ties.

#![no_std]
// No unsafe code at all, unless the opt-in `arm-dsp` feature brings the one module of Arm
// assembly (`arm_dsp.rs`, the paired kernels' row loop); nothing else may use `unsafe` then.
#![cfg_attr(not(feature = "arm-dsp"), forbid(unsafe_code))]
#![cfg_attr(feature = "arm-dsp", deny(unsafe_code))]
#![deny(missing_docs)]

#[cfg(all(feature = "arm-dsp", target_arch = "arm"))]
mod arm_dsp;
pub mod paired;
pub use paired::{
    dense_accumulate_paired, dense_requantize_paired, widen_pairs, Lane16, PairedWords,
};

/// Smallest supported width in bits of weights and activations.
pub const MIN_BITS: u32 = 2;
/// Largest supported width in bits of weights and activations.
pub const MAX_BITS: u32 = 16;
/// Largest shift a [`Requant`] applies; larger values are treated as this one.
pub const MAX_SHIFT: u8 = 62;

/// Rounds `x / 2^shift` to the nearest integer, ties towards positive infinity:
/// `floor(x / 2^shift + 1/2)`. `shift` is clamped to `0..=62`.
///
/// Exact for every `x` with `|x| < 2^62`; beyond that the addition saturates.
#[inline]
pub const fn round_shift_right_i64(x: i64, shift: u8) -> i64 {
    let shift = if shift > MAX_SHIFT { MAX_SHIFT } else { shift };
    if shift == 0 {
        return x;
    }
    x.saturating_add(1 << (shift - 1)) >> shift
}

/// [`round_shift_right_i64`] on 128-bit integers (used by 64-bit accumulators).
#[inline]
pub const fn round_shift_right_i128(x: i128, shift: u8) -> i128 {
    let shift = if shift > MAX_SHIFT { MAX_SHIFT } else { shift };
    if shift == 0 {
        return x;
    }
    x.saturating_add(1 << (shift - 1)) >> shift
}

/// A requantization step: multiply by `multiplier / 2^shift`, rounding half up.
///
/// It maps an accumulator at scale `s_in * s_w` to an activation at scale `s_out` with
/// `multiplier / 2^shift ≈ s_in * s_w / s_out`. The generator keeps `multiplier` positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Requant {
    /// Integer multiplier (the generator normalises it into `2^30..2^31` when it can).
    pub multiplier: i32,
    /// Right shift, `0..=62`; larger values act as 62.
    pub shift: u8,
}

impl Requant {
    /// The identity: multiply by one.
    pub const IDENTITY: Requant = Requant {
        multiplier: 1,
        shift: 0,
    };
}

/// The closed integer range an activation is saturated to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ActRange {
    /// Smallest value (inclusive).
    pub min: i32,
    /// Largest value (inclusive).
    pub max: i32,
}

impl ActRange {
    /// Signed range of `bits` bits: `-2^(bits-1) ..= 2^(bits-1) - 1`. `bits` is clamped to
    /// `MIN_BITS..=MAX_BITS`.
    pub const fn signed(bits: u32) -> ActRange {
        let bits = clamp_bits(bits);
        ActRange {
            min: -(1 << (bits - 1)),
            max: (1 << (bits - 1)) - 1,
        }
    }

    /// Range of a ReLU output stored in `bits` bits, unsigned: `0 ..= 2^bits - 1`. `bits` is
    /// clamped to `MIN_BITS..=MAX_BITS`.
    pub const fn relu(bits: u32) -> ActRange {
        let bits = clamp_bits(bits);
        ActRange {
            min: 0,
            max: (1 << bits) - 1,
        }
    }

    /// Saturates `value` into the range.
    #[inline]
    pub const fn clamp(self, value: i64) -> i32 {
        if value < self.min as i64 {
            self.min
        } else if value > self.max as i64 {
            self.max
        } else {
            value as i32
        }
    }
}

/// Input quantization of a fixed-point value: `bits / 2^from_frac` expressed in steps of
/// `2^-to_frac` and saturated to `range`, i.e. `clamp(floor(bits * 2^(to_frac - from_frac) +
/// 1/2))`, the rounding the verifier assumes for every input. Exact for every argument (no
/// intermediate overflow): the caller's fixed-point sensor value needs no float on the device.
pub const fn rescale_fixed(bits: i128, from_frac: i32, to_frac: i32, range: ActRange) -> i32 {
    let shift = from_frac as i64 - to_frac as i64;
    let scaled: i128 = if shift > 0 {
        if shift >= 128 {
            // -1/2 <= bits / 2^shift < 1/2: rounds to 0.
            0
        } else {
            // floor(b / 2^s + 1/2) = floor(b / 2^s) + (bit s-1 of b), with no addition to
            // overflow.
            (bits >> shift) + ((bits >> (shift - 1)) & 1)
        }
    } else {
        let up = -shift;
        if bits == 0 {
            0
        } else if up >= 127 {
            if bits > 0 {
                i128::MAX
            } else {
                i128::MIN
            }
        } else {
            let limit = i128::MAX >> up;
            if bits > limit {
                i128::MAX
            } else if bits < -limit - 1 {
                i128::MIN
            } else {
                bits << up
            }
        }
    };
    let narrowed = if scaled > i64::MAX as i128 {
        i64::MAX
    } else if scaled < i64::MIN as i128 {
        i64::MIN
    } else {
        scaled as i64
    };
    range.clamp(narrowed)
}

/// Input quantization of an IEEE-754 binary64 value, given by its bits (`f64::to_bits`): the
/// same `clamp(floor(x * 2^to_frac + 1/2))` as [`rescale_fixed`], computed without float:
/// every finite double is exactly `mantissa * 2^exponent`, a fixed-point value. NaN maps to 0;
/// infinities saturate. The host model quantizes every input with this function.
pub const fn quantize_f64_bits(bits: u64, to_frac: i32, range: ActRange) -> i32 {
    quantize_ieee(bits, 52, 11, to_frac, range)
}

/// [`quantize_f64_bits`] for an IEEE-754 binary32 value (`f32::to_bits`): what a generated
/// crate does to an `f32` input, with integer operations only.
pub const fn quantize_f32_bits(bits: u32, to_frac: i32, range: ActRange) -> i32 {
    quantize_ieee(bits as u64, 23, 8, to_frac, range)
}

/// An IEEE-754 value of `fraction_bits` fraction and `exponent_bits` exponent bits (sign bit
/// above them) as the fixed-point value `±mantissa * 2^power`, rescaled by [`rescale_fixed`].
const fn quantize_ieee(
    bits: u64,
    fraction_bits: u32,
    exponent_bits: u32,
    to_frac: i32,
    range: ActRange,
) -> i32 {
    let negative = (bits >> (fraction_bits + exponent_bits)) & 1 == 1;
    let all_ones = (1u64 << exponent_bits) - 1;
    let exponent = (bits >> fraction_bits) & all_ones;
    let fraction = bits & ((1u64 << fraction_bits) - 1);
    if exponent == all_ones {
        return if fraction != 0 {
            0
        } else if negative {
            range.min
        } else {
            range.max
        };
    }
    // The exponent bias; subnormals have no implicit leading one and the smallest exponent.
    let bias = (1i32 << (exponent_bits - 1)) - 1;
    let (mantissa, power) = if exponent == 0 {
        (fraction, 1 - bias - fraction_bits as i32)
    } else {
        (
            fraction | (1u64 << fraction_bits),
            exponent as i32 - bias - fraction_bits as i32,
        )
    };
    let signed = if negative {
        -(mantissa as i128)
    } else {
        mantissa as i128
    };
    rescale_fixed(signed, -power, to_frac, range)
}

const fn clamp_bits(bits: u32) -> u32 {
    if bits < MIN_BITS {
        MIN_BITS
    } else if bits > MAX_BITS {
        MAX_BITS
    } else {
        bits
    }
}

/// The symmetric range of a weight of `bits` bits: `-(2^(bits-1) - 1) ..= 2^(bits-1) - 1`
/// (the most negative code is unused so that negation is exact). `bits` is clamped to
/// `MIN_BITS..=MAX_BITS`.
pub const fn weight_range(bits: u32) -> ActRange {
    let bits = clamp_bits(bits);
    let max = (1 << (bits - 1)) - 1;
    ActRange { min: -max, max }
}

/// An integer type that can hold an activation (input or output of a layer).
pub trait Activation: Copy {
    /// Widens to `i32` (exact).
    fn to_i32(self) -> i32;
    /// Narrows from a value already clamped into this type's range; values outside it are
    /// saturated, so the conversion is total.
    fn from_i32_saturating(value: i32) -> Self;
}

macro_rules! impl_activation {
    ($($t:ty),*) => {$(
        impl Activation for $t {
            #[inline]
            fn to_i32(self) -> i32 {
                self as i32
            }
            #[inline]
            fn from_i32_saturating(value: i32) -> Self {
                if value < <$t>::MIN as i32 {
                    <$t>::MIN
                } else if value > <$t>::MAX as i32 {
                    <$t>::MAX
                } else {
                    value as $t
                }
            }
        }
    )*};
}
impl_activation!(i8, u8, i16, u16);

impl Activation for i32 {
    #[inline]
    fn to_i32(self) -> i32 {
        self
    }
    #[inline]
    fn from_i32_saturating(value: i32) -> Self {
        value
    }
}

/// A stored weight: `i8` for widths up to 8 bits, `i16` up to 16.
pub trait Weight: Copy {
    /// Widens to `i32` (exact).
    fn to_i32(self) -> i32;
}
impl Weight for i8 {
    #[inline]
    fn to_i32(self) -> i32 {
        self as i32
    }
}
impl Weight for i16 {
    #[inline]
    fn to_i32(self) -> i32 {
        self as i32
    }
}

/// An accumulator: `i32`, or `i64` for layers whose proven bound exceeds `i32`.
///
/// Accumulation wraps (two's complement); the generator only picks an accumulator whose range
/// provably holds `|b| + sum |w| * max|a|`, so no wrap happens in a generated network.
pub trait Accumulator: Copy {
    /// Zero.
    const ZERO: Self;
    /// `self + w * a`, wrapping.
    fn mul_add(self, w: i32, a: i32) -> Self;
    /// `floor(self * r.multiplier / 2^r.shift + 1/2)`, computed exactly in a wider type.
    fn requantize(self, r: Requant) -> i64;
    /// Widens to `i64` (exact).
    fn to_i64(self) -> i64;
}

impl Accumulator for i32 {
    const ZERO: Self = 0;
    #[inline]
    fn mul_add(self, w: i32, a: i32) -> Self {
        self.wrapping_add(w.wrapping_mul(a))
    }
    #[inline]
    fn requantize(self, r: Requant) -> i64 {
        // |self| <= 2^31 and |multiplier| <= 2^31, so the product fits in 63 bits.
        round_shift_right_i64(self as i64 * r.multiplier as i64, r.shift)
    }
    #[inline]
    fn to_i64(self) -> i64 {
        self as i64
    }
}

impl Accumulator for i64 {
    const ZERO: Self = 0;
    #[inline]
    fn mul_add(self, w: i32, a: i32) -> Self {
        // |w * a| < 2^31 for 16-bit operands, so the product itself is exact in i32 range;
        // widen first anyway so that wider activations cannot wrap.
        self.wrapping_add(w as i64 * a as i64)
    }
    #[inline]
    fn requantize(self, r: Requant) -> i64 {
        let y = round_shift_right_i128(self as i128 * r.multiplier as i128, r.shift);
        if y > i64::MAX as i128 {
            i64::MAX
        } else if y < i64::MIN as i128 {
            i64::MIN
        } else {
            y as i64
        }
    }
    #[inline]
    fn to_i64(self) -> i64 {
        self
    }
}

/// `bias + sum_i weights[i] * input[i]` for one output row, in accumulator type `Acc`.
#[inline]
pub fn dot<A: Activation, W: Weight, Acc: Accumulator>(input: &[A], row: &[W], bias: Acc) -> Acc {
    input
        .iter()
        .zip(row)
        .fold(bias, |acc, (a, w)| acc.mul_add(w.to_i32(), a.to_i32()))
}

/// Calls `f(o, acc)` with the accumulator `bias[o] + sum_i weights[o * n + i] * input[i]` of
/// every output `o`, where `n = input.len()` and `weights` is row-major (one row of `n`
/// weights per output). Stops at the shortest of `bias` and the rows of `weights`.
#[inline]
fn for_each_accumulator<A: Activation, W: Weight, Acc: Accumulator>(
    input: &[A],
    weights: &[W],
    bias: &[Acc],
    mut f: impl FnMut(usize, Acc),
) {
    if input.is_empty() {
        bias.iter().enumerate().for_each(|(o, b)| f(o, *b));
        return;
    }
    for (o, (row, b)) in weights.chunks_exact(input.len()).zip(bias).enumerate() {
        f(o, dot(input, row, *b));
    }
}

/// The accumulators of a dense layer: `out[o] = bias[o] + sum_i weights[o * n + i] * input[i]`
/// with `n = input.len()` and `weights` row-major (one row of `n` weights per output).
///
/// This is the last layer of a network: its outputs are the logits.
pub fn dense_accumulate<A: Activation, W: Weight, Acc: Accumulator>(
    input: &[A],
    weights: &[W],
    bias: &[Acc],
    out: &mut [Acc],
) {
    let mut outputs = out.iter_mut();
    for_each_accumulator(input, weights, bias, |_, acc| {
        if let Some(y) = outputs.next() {
            *y = acc;
        }
    });
}

/// Output `o` of a hidden layer from its accumulator: requantized by `requant[o]` (or
/// `requant[0]` for every output when one step is given: per-layer scaling; the identity when
/// none is given), then saturated into `range`. Always inlined: the kernels' code must be
/// what it was when the step lookup was written in each of them (flash and speed measured).
#[inline(always)]
fn requantize_output<Acc: Accumulator, O: Activation>(
    acc: Acc,
    requant: &[Requant],
    o: usize,
    range: ActRange,
) -> O {
    let step = requant
        .get(o)
        .or(requant.first())
        .copied()
        .unwrap_or(Requant::IDENTITY);
    O::from_i32_saturating(range.clamp(acc.requantize(step)))
}

/// A hidden dense layer: accumulate as [`dense_accumulate`], requantize with `requant[o]`
/// (or `requant[0]` for every output when one step is given: per-layer scaling; the identity
/// when none is given), then saturate into `range` (a fused ReLU is `range.min == 0`).
pub fn dense_requantize<A: Activation, W: Weight, Acc: Accumulator, O: Activation>(
    input: &[A],
    weights: &[W],
    bias: &[Acc],
    requant: &[Requant],
    range: ActRange,
    out: &mut [O],
) {
    let mut outputs = out.iter_mut();
    for_each_accumulator(input, weights, bias, |o, acc| {
        if let Some(y) = outputs.next() {
            *y = requantize_output(acc, requant, o, range);
        }
    });
}

/// Weights of 2..=16 bits packed back to back into bytes: weight `k` occupies bits
/// `k*bits .. (k+1)*bits` of the little-endian bit stream, in two's complement. Sub-byte widths
/// cost `bits/8` bytes per weight instead of one; reading one costs a few shifts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packed<'a> {
    bytes: &'a [u8],
    bits: u32,
}

impl<'a> Packed<'a> {
    /// Packed weights of `bits` bits (clamped to `MIN_BITS..=MAX_BITS`) in `bytes`.
    pub const fn new(bytes: &'a [u8], bits: u32) -> Packed<'a> {
        Packed {
            bytes,
            bits: clamp_bits(bits),
        }
    }

    /// Bytes needed for `count` weights of `bits` bits.
    pub const fn bytes_for(count: usize, bits: u32) -> usize {
        (count * clamp_bits(bits) as usize).div_ceil(8)
    }

    /// Weight `k` (0 past the end of the bytes, so the read is total).
    #[inline]
    pub fn get(&self, k: usize) -> i32 {
        let bits = self.bits as usize;
        let first = k * bits;
        let (byte, offset) = (first / 8, first % 8);
        // 16 bits at any offset span at most 3 bytes.
        let window = (0..3).fold(0u32, |w, j| {
            w | (self.bytes.get(byte + j).copied().unwrap_or(0) as u32) << (8 * j)
        });
        let raw = (window >> offset) & ((1u32 << bits) - 1);
        let sign = 1u32 << (bits - 1);
        (raw ^ sign) as i32 - sign as i32
    }

    /// Packs `values` (each already within `bits` bits, two's complement) into `out`, which
    /// must hold [`Packed::bytes_for`] bytes; values that do not fit are truncated to their low
    /// bits, and extra values beyond `out` are dropped, so packing is total.
    pub fn pack_into(values: &[i16], bits: u32, out: &mut [u8]) {
        let bits = clamp_bits(bits) as usize;
        out.iter_mut().for_each(|b| *b = 0);
        for (k, v) in values.iter().enumerate() {
            let raw = (*v as u32) & ((1u32 << bits) - 1);
            for i in 0..bits {
                let bit = k * bits + i;
                if let Some(byte) = out.get_mut(bit / 8) {
                    *byte |= (((raw >> i) & 1) as u8) << (bit % 8);
                }
            }
        }
    }
}

/// [`dense_accumulate`] over [`Packed`] weights: `n_out` outputs of `input.len()` weights each.
pub fn dense_accumulate_packed<A: Activation, Acc: Accumulator>(
    input: &[A],
    weights: Packed,
    bias: &[Acc],
    out: &mut [Acc],
) {
    let n = input.len();
    for (o, (y, b)) in out.iter_mut().zip(bias).enumerate() {
        *y = packed_dot(input, weights, o * n, *b);
    }
}

/// [`dense_requantize`] over [`Packed`] weights.
pub fn dense_requantize_packed<A: Activation, Acc: Accumulator, O: Activation>(
    input: &[A],
    weights: Packed,
    bias: &[Acc],
    requant: &[Requant],
    range: ActRange,
    out: &mut [O],
) {
    let n = input.len();
    for (o, (y, b)) in out.iter_mut().zip(bias).enumerate() {
        let acc = packed_dot(input, weights, o * n, *b);
        *y = requantize_output(acc, requant, o, range);
    }
}

#[inline]
fn packed_dot<A: Activation, Acc: Accumulator>(
    input: &[A],
    weights: Packed,
    first: usize,
    bias: Acc,
) -> Acc {
    input.iter().enumerate().fold(bias, |acc, (i, a)| {
        acc.mul_add(weights.get(first + i), a.to_i32())
    })
}

/// A classifier with integer inference: what a generated crate's `Model` implements, so that
/// firmware can be written against any ceg4n model.
///
/// ```
/// use ceg4n_runtime::{argmax, Classifier};
///
/// /// A toy model: the logits are the input.
/// struct Echo;
/// impl Classifier for Echo {
///     const INPUTS: usize = 2;
///     const OUTPUTS: usize = 2;
///     type Input = [i8; 2];
///     type Logits = [i32; 2];
///     fn logits(&self, input: &[i8; 2], out: &mut [i32; 2]) {
///         *out = input.map(i32::from);
///     }
///     fn predict(&self, input: &[i8; 2]) -> usize {
///         let mut out = [0; 2];
///         self.logits(input, &mut out);
///         argmax(&out)
///     }
/// }
/// assert_eq!(Echo.predict(&[3, 5]), 1);
/// ```
pub trait Classifier {
    /// Number of input features.
    const INPUTS: usize;
    /// Number of logits (classes).
    const OUTPUTS: usize;
    /// A quantized input vector (`[i8; INPUTS]` or `[i16; INPUTS]`).
    type Input;
    /// The integer logits (`[i32; OUTPUTS]` or `[i64; OUTPUTS]`).
    type Logits;
    /// Writes the integer logits of `input` into `out`.
    fn logits(&self, input: &Self::Input, out: &mut Self::Logits);
    /// The predicted class: the largest logit, the lowest index on ties ([`argmax`]).
    fn predict(&self, input: &Self::Input) -> usize;
}

/// Index of the largest value; the lowest index wins ties. `0` for an empty slice.
pub fn argmax<T: PartialOrd + Copy>(values: &[T]) -> usize {
    best_index(values, |candidate, best| candidate > best)
}

/// Index of the smallest value; the lowest index wins ties. `0` for an empty slice.
/// (Advisory networks such as ACAS Xu pick the minimum score.)
pub fn argmin<T: PartialOrd + Copy>(values: &[T]) -> usize {
    best_index(values, |candidate, best| candidate < best)
}

fn best_index<T: Copy>(values: &[T], better: impl Fn(T, T) -> bool) -> usize {
    let mut iter = values.iter().copied().enumerate();
    let Some((mut best, mut best_value)) = iter.next() else {
        return 0;
    };
    for (i, v) in iter {
        if better(v, best_value) {
            best = i;
            best_value = v;
        }
    }
    best
}
