//! The paired row loop in Arm assembly (opt-in feature `arm-dsp`; Cortex-M4, M7, M33 with the
//! DSP extension): `SXTB16` sign-extends two weights into 16-bit lanes, `SMLAD` multiplies both
//! lanes by an activation pair and accumulates, so two multiply-accumulates cost one
//! instruction. The loops compute exactly [`scaled_row_dot_portable`]: the same products,
//! summed in the same order, wrapping the same way (`SMLAD` wraps at 32 bits).
//!
//! Why assembly: stable Rust exposes neither instruction (`core::arch::arm`'s DSP intrinsics
//! are unstable), and LLVM forms `SMLAD` only from pairs of 16-bit loads, which would double
//! the weights' flash.
#![allow(unsafe_code)]

use crate::paired::scaled_row_dot_portable;

/// The scaled dot product of one row, as [`scaled_row_dot_portable`] computes it.
#[inline]
pub(crate) fn scaled_row_dot(words: &[u32], pairs: &[u32], bits: u32) -> i32 {
    let pairs_per_word = 32 / bits as usize / 2;
    // Whole words that have their activation pairs; anything else is not read.
    let n = words.len().min(pairs.len() / pairs_per_word);
    let (words, pairs) = (&words[..n], &pairs[..n * pairs_per_word]);
    match bits {
        8 => {
            let twins = n / 2;
            let acc = dot8_word_pairs(&words[..2 * twins], &pairs[..4 * twins]);
            scaled_row_dot_portable(&words[2 * twins..], &pairs[4 * twins..], 8, acc)
        }
        4 => dot4(words, pairs),
        _ => dot2(words, pairs),
    }
}

/// 8-bit weights, two words (8 weights, 4 activation pairs) per iteration: `words.len()` even,
/// `pairs.len() == 2 * words.len()`.
#[inline]
fn dot8_word_pairs(words: &[u32], pairs: &[u32]) -> i32 {
    let iterations = words.len() / 2;
    let mut acc: i32 = 0;
    if iterations == 0 {
        return acc;
    }
    // SAFETY: the loop reads `2 * iterations` words from `words` and `4 * iterations` from
    // `pairs`, both in bounds (checked above by the slice lengths), through word-aligned `u32`
    // pointers (LDRD needs 4-byte alignment); it writes only the named registers.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldrd {w0}, {w1}, [{wp}], #8",
            "ldrd {a0}, {a1}, [{ap}], #8",
            "sxtb16 {t}, {w0}",
            "smlad {acc}, {t}, {a0}, {acc}",
            "sxtb16 {t}, {w0}, ror #8",
            "smlad {acc}, {t}, {a1}, {acc}",
            "ldrd {a0}, {a1}, [{ap}], #8",
            "sxtb16 {t}, {w1}",
            "smlad {acc}, {t}, {a0}, {acc}",
            "sxtb16 {t}, {w1}, ror #8",
            "smlad {acc}, {t}, {a1}, {acc}",
            "subs {n}, {n}, #1",
            "bne 2b",
            wp = inout(reg) words.as_ptr() => _,
            ap = inout(reg) pairs.as_ptr() => _,
            n = inout(reg) iterations => _,
            acc = inout(reg) acc,
            w0 = out(reg) _,
            w1 = out(reg) _,
            a0 = out(reg) _,
            a1 = out(reg) _,
            t = out(reg) _,
            options(pure, readonly, nostack),
        );
    }
    acc
}

/// 4-bit weights, one word (8 weights in two fields, 4 activation pairs) per iteration.
#[inline]
fn dot4(words: &[u32], pairs: &[u32]) -> i32 {
    let mut acc: i32 = 0;
    if words.is_empty() {
        return acc;
    }
    // SAFETY: as in `dot8_word_pairs`: `words.len()` words and `4 * words.len()` pairs read,
    // in bounds and word-aligned.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldr {w}, [{wp}], #4",
            "ldrd {a0}, {a1}, [{ap}], #8",
            // Field 0 (the low nibbles), moved to the top of each byte.
            "and {x}, {mask}, {w}, lsl #4",
            "sxtb16 {t}, {x}",
            "smlad {acc}, {t}, {a0}, {acc}",
            "sxtb16 {t}, {x}, ror #8",
            "smlad {acc}, {t}, {a1}, {acc}",
            "ldrd {a0}, {a1}, [{ap}], #8",
            // Field 1 (the high nibbles), already at the top.
            "and {x}, {mask}, {w}",
            "sxtb16 {t}, {x}",
            "smlad {acc}, {t}, {a0}, {acc}",
            "sxtb16 {t}, {x}, ror #8",
            "smlad {acc}, {t}, {a1}, {acc}",
            "subs {n}, {n}, #1",
            "bne 2b",
            wp = inout(reg) words.as_ptr() => _,
            ap = inout(reg) pairs.as_ptr() => _,
            n = inout(reg) words.len() => _,
            mask = in(reg) 0xF0F0_F0F0u32,
            acc = inout(reg) acc,
            w = out(reg) _,
            x = out(reg) _,
            a0 = out(reg) _,
            a1 = out(reg) _,
            t = out(reg) _,
            options(pure, readonly, nostack),
        );
    }
    acc
}

/// 2-bit weights, one word (16 weights in four fields, 8 activation pairs) per iteration.
#[inline]
fn dot2(words: &[u32], pairs: &[u32]) -> i32 {
    let mut acc: i32 = 0;
    if words.is_empty() {
        return acc;
    }
    // SAFETY: as in `dot8_word_pairs`: `words.len()` words and `8 * words.len()` pairs read,
    // in bounds and word-aligned.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldr {w}, [{wp}], #4",
            "ldrd {a0}, {a1}, [{ap}], #8",
            "and {x}, {mask}, {w}, lsl #6",
            "sxtb16 {t}, {x}",
            "smlad {acc}, {t}, {a0}, {acc}",
            "sxtb16 {t}, {x}, ror #8",
            "smlad {acc}, {t}, {a1}, {acc}",
            "ldrd {a0}, {a1}, [{ap}], #8",
            "and {x}, {mask}, {w}, lsl #4",
            "sxtb16 {t}, {x}",
            "smlad {acc}, {t}, {a0}, {acc}",
            "sxtb16 {t}, {x}, ror #8",
            "smlad {acc}, {t}, {a1}, {acc}",
            "ldrd {a0}, {a1}, [{ap}], #8",
            "and {x}, {mask}, {w}, lsl #2",
            "sxtb16 {t}, {x}",
            "smlad {acc}, {t}, {a0}, {acc}",
            "sxtb16 {t}, {x}, ror #8",
            "smlad {acc}, {t}, {a1}, {acc}",
            "ldrd {a0}, {a1}, [{ap}], #8",
            "and {x}, {mask}, {w}",
            "sxtb16 {t}, {x}",
            "smlad {acc}, {t}, {a0}, {acc}",
            "sxtb16 {t}, {x}, ror #8",
            "smlad {acc}, {t}, {a1}, {acc}",
            "subs {n}, {n}, #1",
            "bne 2b",
            wp = inout(reg) words.as_ptr() => _,
            ap = inout(reg) pairs.as_ptr() => _,
            n = inout(reg) words.len() => _,
            mask = in(reg) 0xC0C0_C0C0u32,
            acc = inout(reg) acc,
            w = out(reg) _,
            x = out(reg) _,
            a0 = out(reg) _,
            a1 = out(reg) _,
            t = out(reg) _,
            options(pure, readonly, nostack),
        );
    }
    acc
}
