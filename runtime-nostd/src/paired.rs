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
//!   `f * bits .. (f + 1) * bits` of every byte, and byte `j` of field `f` holds weight
//!   `4f + j` of the word (8-bit weights: the plain byte order). Shifted to the top of its
//!   byte and masked, a field is four signed bytes scaled by `2^(8 - bits)`; sign-extending
//!   bytes 0 and 2 (and, rotated by 8, bytes 1 and 3) gives two 16-bit weights per register
//!   (`SXTB16`), ready for one two-lane multiply-accumulate.
//! - **Activations**: widened once per layer into *pairs* of 16-bit two's complement lanes
//!   ([`widen_pairs`]): for every group of four activations `a[4j..4j + 4]`, word `2j` holds
//!   `a[4j]` (low lane) and `a[4j + 2]` (high lane), word `2j + 1` holds `a[4j + 1]` and
//!   `a[4j + 3]` — the lanes `SXTB16` gives the weights, and for `u8` activations two masks
//!   of one loaded word.
//!
//! The scaled products sum to `2^(8 - bits)` times the dot product; the kernel shifts the
//! scaling out, exactly. The generator uses this path only for `i32` accumulators whose proven
//! bound times `2^(8 - bits)` stays below `2^31`, and for activations that fit 16 bits
//! ([`Lane16`]).
//!
//! The row loop is safe Rust by default ([`crate::dense_accumulate_paired`]); with the opt-in
//! feature `arm-dsp` on an Arm target it is a short `asm!` block using `SXTB16` and `SMLAD`
//! (the DSP extension: Cortex-M4, M7, M33 with DSP), bit-exact with the safe loop.

use crate::{ActRange, Activation, Requant};

/// An activation type that fits a 16-bit lane: `i8`, `u8` and `i16` (not `u16`, whose values
/// above `i16::MAX` would not).
pub trait Lane16: Activation {
    /// Activations `a[0..4]` as the two pairs the kernels read: `(a0, a2)` and `(a1, a3)`,
    /// each as low and high 16-bit lanes.
    fn widen4(a: [Self; 4]) -> [u32; 2];

    /// Widens whole groups of four: `input[..4 * g]` into `pairs[..2 * g]` with [`widen4`],
    /// where `g` is the smaller of the whole groups in `input` and the word pairs in `pairs`;
    /// returns `g`. (Byte activations do it in assembly with the `arm-dsp` feature.)
    ///
    /// [`widen4`]: Lane16::widen4
    #[inline(always)]
    fn widen_groups(input: &[Self], pairs: &mut [u32]) -> usize {
        widen_groups_portable(input, pairs)
    }
}

/// [`Lane16::widen_groups`] in safe Rust. Its loop counter is hidden from the optimiser (an
/// identity): in a crate's `logits`, where lengths are constants, the compiler would unroll
/// this once-per-layer loop into hundreds of bytes of flash.
#[inline(always)]
fn widen_groups_portable<A: Lane16>(input: &[A], pairs: &mut [u32]) -> usize {
    let groups = (input.len() / 4).min(pairs.len() / 2);
    let mut j = 0;
    while j < groups {
        let (Some(g), Some(o)) = (input.get(4 * j..4 * j + 4), pairs.get_mut(2 * j..2 * j + 2))
        else {
            break;
        };
        [o[0], o[1]] = A::widen4([g[0], g[1], g[2], g[3]]);
        j = core::hint::black_box(j + 1);
    }
    j
}

/// The pairs of four activations, lane by lane.
#[inline(always)]
fn pairs_of<A: Activation>(a: [A; 4]) -> [u32; 2] {
    let lane = |x: A| x.to_i32() as u16 as u32;
    [lane(a[0]) | lane(a[2]) << 16, lane(a[1]) | lane(a[3]) << 16]
}

impl Lane16 for i8 {
    #[inline(always)]
    fn widen4(a: [i8; 4]) -> [u32; 2] {
        pairs_of(a)
    }
    #[cfg(all(feature = "arm-dsp", target_arch = "arm"))]
    #[inline(always)]
    fn widen_groups(input: &[i8], pairs: &mut [u32]) -> usize {
        crate::arm_dsp::widen_groups_i8(input, pairs)
    }
}
impl Lane16 for u8 {
    #[inline(always)]
    fn widen4(a: [u8; 4]) -> [u32; 2] {
        // Zero-extension of bytes 0, 2 and 1, 3 of one word: two masks.
        let word = u32::from_le_bytes(a);
        [word & 0x00FF_00FF, (word >> 8) & 0x00FF_00FF]
    }
    #[cfg(all(feature = "arm-dsp", target_arch = "arm"))]
    #[inline(always)]
    fn widen_groups(input: &[u8], pairs: &mut [u32]) -> usize {
        crate::arm_dsp::widen_groups_u8(input, pairs)
    }
}
impl Lane16 for i16 {
    #[inline(always)]
    fn widen4(a: [i16; 4]) -> [u32; 2] {
        pairs_of(a)
    }
}

/// Weights of 8, 4 or 2 bits in 32-bit words, in the order two-lane multiply-accumulates
/// consume them (see the [module documentation](crate::paired)).
///
/// ```
/// use ceg4n_runtime::PairedWords;
/// // Two rows of three 8-bit weights: each row is padded to one word of four.
/// let mut words = [0u32; 2];
/// PairedWords::pack_into(&[1, -2, 3, 4, 5, -6], 3, 8, &mut words);
/// assert_eq!(words[0].to_le_bytes(), [1, (-2i8) as u8, 3, 0]);
/// // 4-bit weights: byte j holds weights j (low nibble) and 4 + j (high nibble).
/// let mut word = [0u32; 1];
/// PairedWords::pack_into(&[1, 2, 3, 4, 5, 6, 7, -1], 8, 4, &mut word);
/// assert_eq!(word[0].to_le_bytes(), [0x51, 0x62, 0x73, 0xF4]);
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

    /// Scratch words a paired kernel needs for a layer of `inputs` and `outputs`: the input's
    /// activation pairs, then one sum per output.
    pub const fn scratch_for(inputs: usize, outputs: usize, bits: u32) -> usize {
        Self::pairs_for(inputs, bits) + outputs
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
            let (field, byte) = ((i % per_word) / 4, i % 4);
            let raw = (*v as u32) & ((1 << bits) - 1);
            if let Some(w) = out.get_mut(word) {
                *w |= raw << (8 * byte + field * bits as usize);
            }
        }
    }
}

/// 2, 4 or 8 (any other width reads as 8).
const fn lane_bits(bits: u32) -> u32 {
    match bits {
        2 | 4 => bits,
        _ => 8,
    }
}

/// Writes the activation pairs of `input` (see the [module documentation](crate::paired)):
/// for every group of four activations, `pairs[2j]` holds `a[4j]` and `a[4j + 2]`, `pairs[2j +
/// 1]` holds `a[4j + 1]` and `a[4j + 3]` (low and high 16-bit lanes). Activations past the
/// input are zero; stops at the end of `pairs`.
///
/// ```
/// let mut pairs = [7u32; 4];
/// ceg4n_runtime::widen_pairs(&[1u8, 2, 3, 4, 5], &mut pairs);
/// assert_eq!(pairs, [1 | 3 << 16, 2 | 4 << 16, 5, 0]);
/// ```
// Not inlined: one copy per activation type serves every layer.
#[inline(never)]
pub fn widen_pairs<A: Lane16>(input: &[A], pairs: &mut [u32]) {
    let zero = A::from_i32_saturating(0);
    let groups = A::widen_groups(input, pairs);
    let mut written = 2 * groups;
    let rest = input.get(4 * groups..).unwrap_or(&[]);
    // A last, partial group (the rest of `input` when `pairs` had room for it).
    if !rest.is_empty() && rest.len() < 4 {
        if let Some(o) = pairs.get_mut(written..written + 2) {
            let at = |i: usize| rest.get(i).copied().unwrap_or(zero);
            [o[0], o[1]] = A::widen4([at(0), at(1), at(2), at(3)]);
            written += 2;
        }
    }
    pairs.iter_mut().skip(written).for_each(|p| *p = 0);
}

/// The top `bits` bits of every byte set: where a field sits once shifted to the top.
const fn field_mask(bits: u32) -> u32 {
    let byte = (0xFF00u32 >> bits) & 0xFF;
    byte * 0x0101_0101
}

/// Byte `k` of `x`, sign-extended.
#[inline(always)]
fn signed_byte(x: u32, k: u32) -> i32 {
    (x >> (8 * k)) as i8 as i32
}

/// Lane `k` (0: low, 1: high 16 bits) of a pair, sign-extended.
#[inline(always)]
fn lane(pair: u32, k: u32) -> i32 {
    (pair >> (16 * k)) as i16 as i32
}

/// The scaled dot product (`2^(8 - bits)` times the true one) of one row's `words` with the
/// activation `pairs`, plus `acc`, in safe Rust: the reference the `asm!` loop is tested
/// against. It forms the same products as `SXTB16`/`SMLAD` would (bytes 0 and 2 of a field
/// with the first pair's lanes, bytes 1 and 3 with the second's); the order of a wrapping sum
/// does not change it.
#[inline(always)]
#[cfg_attr(all(feature = "arm-dsp", target_arch = "arm"), allow(dead_code))]
pub(crate) fn scaled_row_dot_portable(words: &[u32], pairs: &[u32], bits: u32, acc: i32) -> i32 {
    let fields = 8 / bits;
    let mask = field_mask(bits);
    let mut acc = acc;
    for (w, p) in words.iter().zip(pairs.chunks_exact(2 * fields as usize)) {
        for f in 0..fields {
            let x = (w << (8 - bits * (f + 1))) & mask;
            let (first, second) = (p[2 * f as usize], p[2 * f as usize + 1]);
            acc = acc
                .wrapping_add(signed_byte(x, 0).wrapping_mul(lane(first, 0)))
                .wrapping_add(signed_byte(x, 2).wrapping_mul(lane(first, 1)))
                .wrapping_add(signed_byte(x, 1).wrapping_mul(lane(second, 0)))
                .wrapping_add(signed_byte(x, 3).wrapping_mul(lane(second, 1)));
        }
    }
    acc
}

/// The scaled dot product of every row with `pairs`, into `dots` (as `u32` bits), one row per
/// word of `dots`. Not inlined, and its row count hidden from the optimiser (an identity): in
/// a crate's `logits` every length is a constant, and the compiler would unroll a small
/// layer's rows into copies of the row loop, flash that saves next to no instruction. One
/// copy per weight width (`BITS`, a constant so that each width gets its own straight loop)
/// serves every layer.
#[inline(never)]
fn scaled_dots<const BITS: u32>(words: &[u32], per_row: usize, pairs: &[u32], dots: &mut [u32]) {
    #[cfg(all(feature = "arm-dsp", target_arch = "arm"))]
    crate::arm_dsp::scaled_dots::<BITS>(words, per_row, pairs, dots);
    #[cfg(not(all(feature = "arm-dsp", target_arch = "arm")))]
    {
        let rows = core::hint::black_box(dots.len());
        for o in 0..rows {
            let Some(dot) = dots.get_mut(o) else { break };
            let row = words.get(o * per_row..(o + 1) * per_row).unwrap_or(&[]);
            *dot = scaled_row_dot_portable(row, pairs, BITS, 0) as u32;
        }
    }
}

/// Calls `f(o, acc)` with `bias[o] + row o · input` for every output, in the paired layout;
/// `scratch` holds the input's pairs, then the rows' scaled dot products.
#[inline]
fn for_each_paired_accumulator<A: Lane16>(
    input: &[A],
    scratch: &mut [u32],
    weights: PairedWords,
    bias: &[i32],
    mut f: impl FnMut(usize, i32),
) {
    let bits = weights.bits;
    let per_row = PairedWords::words_per_row(input.len(), bits);
    let used = PairedWords::pairs_for(input.len(), bits).min(scratch.len());
    let (pairs, dots) = scratch.split_at_mut(used);
    let rows = bias.len().min(dots.len());
    let dots = &mut dots[..rows];
    widen_pairs(input, pairs);
    match bits {
        8 => scaled_dots::<8>(weights.words, per_row, pairs, dots),
        4 => scaled_dots::<4>(weights.words, per_row, pairs, dots),
        _ => scaled_dots::<2>(weights.words, per_row, pairs, dots),
    }
    // A loop the optimiser may neither unroll nor peel (its counter is hidden, an identity):
    // with every length and bias a constant it would otherwise expand into one copy of the
    // requantization per output, which cost the 64-10-10 network a fifth of its flash.
    let mut o = 0;
    while o < rows {
        let (Some(b), Some(dot)) = (bias.get(o), dots.get(o)) else {
            break;
        };
        // Exact: every product was scaled by 2^(8 - bits).
        f(o, b.wrapping_add(*dot as i32 >> (8 - bits)));
        o = core::hint::black_box(o + 1);
    }
}

/// [`crate::dense_accumulate`] over [`PairedWords`] weights: `out[o] = bias[o] + row o ·
/// input`, with `scratch` for the widened input and the rows' sums (at least
/// [`PairedWords::scratch_for`] words; a shorter scratch truncates the rows, then the outputs).
///
/// ```
/// use ceg4n_runtime::{dense_accumulate, dense_accumulate_paired, PairedWords};
/// let weights: [i16; 6] = [1, -2, 3, 4, 5, -6];
/// let input: [u8; 3] = [7, 8, 9];
/// let mut words = [0u32; 2];
/// PairedWords::pack_into(&weights, 3, 4, &mut words);
/// let (mut paired, mut plain) = ([0i32; 2], [0i32; 2]);
/// let mut scratch = [0u32; PairedWords::scratch_for(3, 2, 4)];
/// dense_accumulate_paired(&input, &mut scratch, PairedWords::new(&words, 4), &[10, 20], &mut paired);
/// let wide: Vec<i8> = weights.iter().map(|w| *w as i8).collect();
/// dense_accumulate(&input, &wide, &[10, 20], &mut plain);
/// assert_eq!(paired, plain);
/// ```
pub fn dense_accumulate_paired<A: Lane16>(
    input: &[A],
    scratch: &mut [u32],
    weights: PairedWords,
    bias: &[i32],
    out: &mut [i32],
) {
    let mut outputs = out.iter_mut();
    for_each_paired_accumulator(input, scratch, weights, bias, |_, acc| {
        if let Some(y) = outputs.next() {
            *y = acc;
        }
    });
}

/// [`crate::dense_requantize`] over [`PairedWords`] weights (`scratch` as in
/// [`dense_accumulate_paired`]).
pub fn dense_requantize_paired<A: Lane16, O: Activation>(
    input: &[A],
    scratch: &mut [u32],
    weights: PairedWords,
    bias: &[i32],
    requant: &[Requant],
    range: ActRange,
    out: &mut [O],
) {
    let mut outputs = out.iter_mut();
    for_each_paired_accumulator(input, scratch, weights, bias, |o, acc| {
        if let Some(y) = outputs.next() {
            *y = crate::requantize_output(acc, requant, o, range);
        }
    });
}
