//! Dense layers shaped for two multiply-accumulates per instruction (Cortex-M4/M7/M33 `SMLAD`).
//!
//! The arithmetic is the one of [`crate::dense_accumulate`] and [`crate::dense_requantize`]:
//! only the order in which the integer products are summed differs, and an integer sum that
//! does not wrap does not depend on its order, so every output is the same bit for bit (the
//! property tests check it against [`crate::dot`]). What changes is the storage:
//!
//! - **Weights** ([`PairedWords`]): 8-, 4- or 2-bit weights in 32-bit words, one row after the
//!   other, each row padded with zero weights to whole words. Word `k` of a row holds the row's
//!   weights `k * L .. (k + 1) * L` (`L = 32 / bits`) in `8 / bits` *fields*: field `f` is bits
//!   `f * bits .. (f + 1) * bits` of every byte, and bytes 0, 2, 1, 3 of field `f` hold weights
//!   `4f`, `4f + 1`, `4f + 2`, `4f + 3` of the word. Shifted to the top of its byte and masked,
//!   a field is four signed bytes scaled by `2^(8 - bits)`; sign-extending bytes 0 and 2 (and,
//!   rotated by 8, bytes 1 and 3) gives two 16-bit weights per register (`SXTB16`), ready for
//!   one two-lane multiply-accumulate.
//! - **Activations**: widened once per layer into *pairs*: word `k` holds activations `2k` (low
//!   half) and `2k + 1` (high half) as 16-bit two's complement ([`widen_pairs`]), so one load
//!   brings both operands of a two-lane multiply-accumulate.
//!
//! The scaled products sum to `2^(8 - bits)` times the dot product; the kernel shifts the
//! scaling out, exactly. The generator uses this path only for `i32` accumulators whose proven
//! bound times `2^(8 - bits)` stays below `2^31`, and for activations that fit 16 bits
//! ([`Lane16`]).
//!
//! The row loop is safe Rust by default ([`crate::dense_accumulate_paired`]); with the opt-in
//! feature `arm-dsp` on an Arm target it is a short `asm!` block using `SXTB16` and `SMLAD`
//! (the DSP extension: Cortex-M4, M7, M33 with DSP), bit-exact with the safe loop.

use crate::{Activation, ActRange, Requant};

/// An activation type that fits a 16-bit lane: `i8`, `u8` and `i16` (not `u16`, whose values
/// above `i16::MAX` would not).
pub trait Lane16: Activation {}
impl Lane16 for i8 {}
impl Lane16 for u8 {}
impl Lane16 for i16 {}

/// Weights of 8, 4 or 2 bits in 32-bit words, in the order two-lane multiply-accumulates
/// consume them (see the [module documentation](self)).
///
/// ```
/// use ceg4n_runtime::PairedWords;
/// // Two rows of three 8-bit weights: each row is padded to one word of four.
/// let mut words = [0u32; 2];
/// PairedWords::pack_into(&[1, -2, 3, 4, 5, -6], 3, 8, &mut words);
/// // Bytes 0, 2, 1, 3 hold weights 0, 1, 2, 3 of the row.
/// assert_eq!(words[0].to_le_bytes(), [1, 3, (-2i8) as u8, 0]);
/// assert_eq!(PairedWords::words_per_row(3, 8), 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairedWords<'a> {
    words: &'a [u32],
    bits: u32,
}

impl<'a> PairedWords<'a> {
    /// Paired weights of `bits` bits in `words`; widths other than 2, 4 and 8 are read as 8.
    pub const fn new(words: &'a [u32], bits: u32) -> PairedWords<'a> {
        PairedWords {
            words,
            bits: lane_bits(bits),
        }
    }

    /// Weights per word at `bits` bits (16, 8 or 4).
    pub const fn per_word(bits: u32) -> usize {
        32 / lane_bits(bits) as usize
    }

    /// Words per row of `inputs` weights (the row padded with zero weights to whole words).
    pub const fn words_per_row(inputs: usize, bits: u32) -> usize {
        inputs.div_ceil(Self::per_word(bits))
    }

    /// Activation pairs a row of `inputs` weights reads ([`widen_pairs`] pads with zeros).
    pub const fn pairs_for(inputs: usize, bits: u32) -> usize {
        Self::words_per_row(inputs, bits) * Self::per_word(bits) / 2
    }

    /// Packs row-major `values` (rows of `inputs` weights, each within `bits` bits) into `out`,
    /// which should hold `rows * words_per_row(inputs, bits)` words. Values are truncated to
    /// their low `bits` bits and words beyond `out` are dropped, so packing is total.
    pub fn pack_into(values: &[i16], inputs: usize, bits: u32, out: &mut [u32]) {
        let bits = lane_bits(bits);
        let per_word = Self::per_word(bits);
        let per_row = Self::words_per_row(inputs, bits);
        out.iter_mut().for_each(|w| *w = 0);
        if inputs == 0 {
            return;
        }
        for (k, v) in values.iter().enumerate() {
            let (row, i) = (k / inputs, k % inputs);
            let word = row * per_row + i / per_word;
            let (field, lane) = ((i % per_word) / 4, i % 4);
            // Lanes 0..4 of a field live in bytes 0, 2, 1, 3.
            let byte = [0, 2, 1, 3][lane];
            let raw = (*v as u32) & ((1 << bits) - 1);
            if let Some(w) = out.get_mut(word) {
                *w |= raw << (8 * byte + field * bits as usize);
            }
        }
    }

    /// The words of row `o` (empty past the end).
    #[inline]
    fn row(&self, o: usize, per_row: usize) -> &'a [u32] {
        self.words
            .get(o * per_row..(o + 1) * per_row)
            .unwrap_or(&[])
    }
}

/// 2, 4 or 8 (any other width reads as 8).
const fn lane_bits(bits: u32) -> u32 {
    match bits {
        2 | 4 => bits,
        _ => 8,
    }
}

/// Writes activation pairs: `pairs[k]` holds `input[2k]` in its low and `input[2k + 1]` in its
/// high 16 bits (two's complement); pairs past the input are zero. Stops at the end of `pairs`.
#[inline]
pub fn widen_pairs<A: Lane16>(input: &[A], pairs: &mut [u32]) {
    let mut values = input.iter().map(|a| a.to_i32() as u16 as u32);
    for pair in pairs.iter_mut() {
        let low = values.next().unwrap_or(0);
        let high = values.next().unwrap_or(0);
        *pair = low | high << 16;
    }
}

/// The top `bits` bits of every byte set: where a field sits once shifted to the top.
const fn field_mask(bits: u32) -> u32 {
    let byte = (0xFF00u32 >> bits) & 0xFF;
    byte * 0x0101_0101
}

/// Sign-extends bytes 0 and 2 of `x` into the low and high 16-bit lanes (Arm's `SXTB16`).
#[inline(always)]
fn sxtb16(x: u32) -> u32 {
    (x as i8 as i16 as u16 as u32) | ((x >> 16) as i8 as i16 as u16 as u32) << 16
}

/// `acc` plus the products of the low and of the high signed 16-bit lanes (Arm's `SMLAD`),
/// wrapping.
#[inline(always)]
fn smlad(x: u32, y: u32, acc: i32) -> i32 {
    let low = (x as i16 as i32) * (y as i16 as i32);
    let high = ((x >> 16) as i16 as i32) * ((y >> 16) as i16 as i32);
    acc.wrapping_add(low).wrapping_add(high)
}

/// The scaled dot product (`2^(8 - bits)` times the true one) of one row's `words` with the
/// activation `pairs`, in safe Rust: the reference the `asm!` loop is tested against.
#[inline]
pub(crate) fn scaled_row_dot_portable(words: &[u32], pairs: &[u32], bits: u32, acc: i32) -> i32 {
    let fields = (8 / bits) as usize;
    let mask = field_mask(bits);
    let mut acc = acc;
    for (w, p) in words.iter().zip(pairs.chunks_exact(2 * fields)) {
        for f in 0..fields {
            let x = (w << (8 - bits * (f as u32 + 1))) & mask;
            acc = smlad(sxtb16(x), p[2 * f], acc);
            acc = smlad(sxtb16(x.rotate_right(8)), p[2 * f + 1], acc);
        }
    }
    acc
}

/// The dot product of one row (without bias).
#[inline]
fn row_dot(words: &[u32], pairs: &[u32], bits: u32) -> i32 {
    #[cfg(all(feature = "arm-dsp", target_arch = "arm"))]
    let scaled = crate::arm_dsp::scaled_row_dot(words, pairs, bits);
    #[cfg(not(all(feature = "arm-dsp", target_arch = "arm")))]
    let scaled = scaled_row_dot_portable(words, pairs, bits, 0);
    // Exact: every product was scaled by 2^(8 - bits).
    scaled >> (8 - bits)
}

/// Calls `f(o, acc)` with `bias[o] + row o · input` for every output, in the paired layout.
#[inline]
fn for_each_paired_accumulator<A: Lane16>(
    input: &[A],
    pairs: &mut [u32],
    weights: PairedWords,
    bias: &[i32],
    mut f: impl FnMut(usize, i32),
) {
    let bits = weights.bits;
    let per_row = PairedWords::words_per_row(input.len(), bits);
    let used = PairedWords::pairs_for(input.len(), bits).min(pairs.len());
    let pairs = &mut pairs[..used];
    widen_pairs(input, pairs);
    for (o, b) in bias.iter().enumerate() {
        let dot = row_dot(weights.row(o, per_row), pairs, bits);
        f(o, b.wrapping_add(dot));
    }
}

/// [`crate::dense_accumulate`] over [`PairedWords`] weights: `out[o] = bias[o] + row o ·
/// input`, with `pairs` as scratch for the widened input (at least
/// [`PairedWords::pairs_for`] words; a shorter scratch truncates the rows).
///
/// ```
/// use ceg4n_runtime::{dense_accumulate, dense_accumulate_paired, PairedWords};
/// let weights: [i16; 6] = [1, -2, 3, 4, 5, -6];
/// let input: [u8; 3] = [7, 8, 9];
/// let mut words = [0u32; 2];
/// PairedWords::pack_into(&weights, 3, 4, &mut words);
/// let (mut paired, mut plain) = ([0i32; 2], [0i32; 2]);
/// let mut pairs = [0u32; 4];
/// dense_accumulate_paired(&input, &mut pairs, PairedWords::new(&words, 4), &[10, 20], &mut paired);
/// let wide: Vec<i8> = weights.iter().map(|w| *w as i8).collect();
/// dense_accumulate(&input, &wide, &[10, 20], &mut plain);
/// assert_eq!(paired, plain);
/// ```
pub fn dense_accumulate_paired<A: Lane16>(
    input: &[A],
    pairs: &mut [u32],
    weights: PairedWords,
    bias: &[i32],
    out: &mut [i32],
) {
    let mut outputs = out.iter_mut();
    for_each_paired_accumulator(input, pairs, weights, bias, |_, acc| {
        if let Some(y) = outputs.next() {
            *y = acc;
        }
    });
}

/// [`crate::dense_requantize`] over [`PairedWords`] weights (`pairs` as in
/// [`dense_accumulate_paired`]).
pub fn dense_requantize_paired<A: Lane16, O: Activation>(
    input: &[A],
    pairs: &mut [u32],
    weights: PairedWords,
    bias: &[i32],
    requant: &[Requant],
    range: ActRange,
    out: &mut [O],
) {
    let mut outputs = out.iter_mut();
    for_each_paired_accumulator(input, pairs, weights, bias, |o, acc| {
        let step = requant
            .get(o)
            .or(requant.first())
            .copied()
            .unwrap_or(Requant::IDENTITY);
        if let Some(y) = outputs.next() {
            *y = O::from_i32_saturating(range.clamp(crate::Accumulator::requantize(acc, step)));
        }
    });
}
