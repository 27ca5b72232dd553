//! The paired row loop in Arm assembly (opt-in feature `arm-dsp`; Cortex-M4, M7, M33 with the
//! DSP extension): `SXTB16` sign-extends two weights into 16-bit lanes, `SMLAD` multiplies both
//! lanes by an activation pair and accumulates, so two multiply-accumulates cost one
//! instruction. The loops form exactly the products of
//! [`scaled_row_dot_portable`](crate::paired::scaled_row_dot_portable) and wrap the same way
//! (`SMLAD` wraps at 32 bits; a wrapping sum does not depend on its order).
//!
//! Why assembly: stable Rust exposes neither instruction (`core::arch::arm`'s DSP intrinsics
//! are unstable), and LLVM forms `SMLAD` only from pairs of 16-bit loads, which would double
//! the weights' flash.
#![allow(unsafe_code)]

/// The scaled dot product of every row of `words` (rows of `per_row` words, one after the
/// other) with `pairs`, into `dots`, as
/// [`scaled_row_dot_portable`](crate::paired::scaled_row_dot_portable) computes it. A row
/// reads the words that have their activation pairs; rows past `words` are not computed.
#[inline(always)]
pub(crate) fn scaled_dots<const BITS: u32>(
    words: &[u32],
    per_row: usize,
    pairs: &[u32],
    dots: &mut [u32],
) {
    let pairs_per_word = 32 / BITS as usize / 2;
    let n = per_row.min(pairs.len() / pairs_per_word);
    let rows = words
        .len()
        .checked_div(per_row)
        .map_or(0, |whole| whole.min(dots.len()));
    // The row count hidden from the optimiser (an identity; see `paired::scaled_dots`).
    let rows = core::hint::black_box(rows);
    let mut row = words.as_ptr();
    for dot in dots.iter_mut().take(rows) {
        // SAFETY: `row` starts one of the `rows` whole rows inside `words`, so `n <= per_row`
        // words are readable there, and `pairs` holds `n * pairs_per_word` words; both are
        // `u32` slices, so word-aligned.
        let (acc, next) = unsafe {
            match BITS {
                8 => dot8(row, pairs.as_ptr(), n),
                4 => dot4(row, pairs.as_ptr(), n),
                _ => dot2(row, pairs.as_ptr(), n),
            }
        };
        *dot = acc as u32;
        // The next row: `n` words were read, `per_row` make a row.
        row = next.wrapping_add(per_row - n);
    }
}

/// 8-bit weights: one word first if the row has an odd number, then two words (8 weights,
/// 4 activation pairs) per iteration. Returns the sum and the word after the row's `n`.
///
/// # Safety
/// `words` must point to `n` readable, word-aligned words and `pairs` to `2 * n`.
#[inline(always)]
unsafe fn dot8(words: *const u32, pairs: *const u32, n: usize) -> (i32, *const u32) {
    let mut acc: i32 = 0;
    let mut wp = words;
    // SAFETY: the loops read `n` words from `words` and `2 * n` from `pairs` (the caller's
    // promise), through word-aligned pointers (LDRD needs 4-byte alignment); they write only
    // the named registers and the flags.
    unsafe {
        core::arch::asm!(
            // n /= 2; the carry says whether a lone word comes first.
            "lsrs {n}, {n}, #1",
            "bcc 3f",
            "ldr {w0}, [{wp}], #4",
            "ldrd {a0}, {a1}, [{ap}], #8",
            "sxtb16 {t}, {w0}",
            "smlad {acc}, {t}, {a0}, {acc}",
            "sxtb16 {t}, {w0}, ror #8",
            "smlad {acc}, {t}, {a1}, {acc}",
            // The flags are still those of the shift: zero pairs of words left?
            "3:",
            "beq 4f",
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
            "4:",
            wp = inout(reg) wp,
            ap = inout(reg) pairs => _,
            n = inout(reg) n => _,
            acc = inout(reg) acc,
            w0 = out(reg) _,
            w1 = out(reg) _,
            a0 = out(reg) _,
            a1 = out(reg) _,
            t = out(reg) _,
            options(pure, readonly, nostack),
        );
    }
    (acc, wp)
}

/// A loop over sub-byte weights, one word per iteration: for each field (its left shift to
/// the top of the bytes given), mask it, sign-extend its two lane pairs and accumulate them
/// against two activation pairs. Returns the sum and the word after the row's `n`.
macro_rules! sub_byte_dot {
    ($(#[$doc:meta])* $name:ident, $mask:literal, $($shift:literal),+) => {
        $(#[$doc])*
        #[inline(always)]
        unsafe fn $name(words: *const u32, pairs: *const u32, n: usize) -> (i32, *const u32) {
            let mut acc: i32 = 0;
            let mut wp = words;
            if n == 0 {
                return (acc, wp);
            }
            // SAFETY: as in `dot8`: `n` words and, per field, `2 * n` pairs read, in bounds
            // (the caller's promise) and word-aligned.
            unsafe {
                core::arch::asm!(
                    "2:",
                    "ldr {w}, [{wp}], #4",
                    $(
                        "ldrd {a0}, {a1}, [{ap}], #8",
                        concat!("and {x}, {mask}, {w}, lsl #", $shift),
                        "sxtb16 {t}, {x}",
                        "smlad {acc}, {t}, {a0}, {acc}",
                        "sxtb16 {t}, {x}, ror #8",
                        "smlad {acc}, {t}, {a1}, {acc}",
                    )+
                    "subs {n}, {n}, #1",
                    "bne 2b",
                    wp = inout(reg) wp,
                    ap = inout(reg) pairs => _,
                    n = inout(reg) n => _,
                    mask = in(reg) $mask,
                    acc = inout(reg) acc,
                    w = out(reg) _,
                    x = out(reg) _,
                    a0 = out(reg) _,
                    a1 = out(reg) _,
                    t = out(reg) _,
                    options(pure, readonly, nostack),
                );
            }
            (acc, wp)
        }
    };
}

sub_byte_dot!(
    /// 4-bit weights: two fields (low nibbles, then high) per word, 8 weights.
    ///
    /// # Safety
    /// `words` must point to `n` readable, word-aligned words and `pairs` to `4 * n`.
    dot4, 0xF0F0_F0F0u32, 4, 0
);

sub_byte_dot!(
    /// 2-bit weights: four fields per word, 16 weights.
    ///
    /// # Safety
    /// `words` must point to `n` readable, word-aligned words and `pairs` to `8 * n`.
    dot2, 0xC0C0_C0C0u32, 6, 4, 2, 0
);

/// [`Lane16::widen_groups`](crate::Lane16::widen_groups) of signed bytes: `SXTB16` of one
/// loaded word gives both pairs of a group.
#[inline(always)]
pub(crate) fn widen_groups_i8(input: &[i8], pairs: &mut [u32]) -> usize {
    let groups = (input.len() / 4).min(pairs.len() / 2);
    // SAFETY: `groups` whole groups of input bytes and word pairs are in bounds.
    unsafe { widen_bytes::<true>(input.as_ptr().cast(), pairs.as_mut_ptr(), groups) };
    groups
}

/// [`Lane16::widen_groups`](crate::Lane16::widen_groups) of unsigned bytes (`UXTB16`).
#[inline(always)]
pub(crate) fn widen_groups_u8(input: &[u8], pairs: &mut [u32]) -> usize {
    let groups = (input.len() / 4).min(pairs.len() / 2);
    // SAFETY: `groups` whole groups of input bytes and word pairs are in bounds.
    unsafe { widen_bytes::<false>(input.as_ptr(), pairs.as_mut_ptr(), groups) };
    groups
}

/// Writes the pairs of `groups` groups of four bytes: `(b0, b2)` and `(b1, b3)` as 16-bit
/// lanes, sign-extended when `SIGNED`, else zero-extended.
///
/// # Safety
/// `input` must point to `4 * groups` readable bytes (any alignment: Armv7-M loads a word
/// from any address) and `pairs` to `2 * groups` writable, word-aligned words.
#[inline(always)]
unsafe fn widen_bytes<const SIGNED: bool>(input: *const u8, pairs: *mut u32, groups: usize) {
    if groups == 0 {
        return;
    }
    // Both loops: load a group, extend its bytes (0, 2) and (1, 3), store the two pairs.
    macro_rules! widen_loop {
        ($extend:literal) => {
            core::arch::asm!(
                "2:",
                "ldr {w}, [{ip}], #4",
                concat!($extend, " {p0}, {w}"),
                concat!($extend, " {p1}, {w}, ror #8"),
                "strd {p0}, {p1}, [{op}], #8",
                "subs {n}, {n}, #1",
                "bne 2b",
                ip = inout(reg) input => _,
                op = inout(reg) pairs => _,
                n = inout(reg) groups => _,
                w = out(reg) _,
                p0 = out(reg) _,
                p1 = out(reg) _,
                options(nostack),
            )
        };
    }
    // SAFETY: the loop reads `4 * groups` bytes and writes `2 * groups` words (the caller's
    // promise), word-aligned for STRD; it writes only the named registers and the flags.
    unsafe {
        if SIGNED {
            widen_loop!("sxtb16");
        } else {
            widen_loop!("uxtb16");
        }
    }
}
