//! Property tests: every kernel agrees with a straightforward i128 reference of the arithmetic
//! documented in the crate root.

use ceg4n_runtime::*;
use proptest::prelude::*;

/// floor(x / 2^s + 1/2) by exact rational reasoning on i128.
fn reference_round_shift(x: i128, shift: u8) -> i128 {
    let d = 1i128 << shift.min(MAX_SHIFT);
    // floor((2x + d) / (2d))
    (2 * x + d).div_euclid(2 * d)
}

fn reference_layer(
    input: &[i32],
    weights: &[i32],
    bias: &[i64],
    requant: Option<&[Requant]>,
    range: ActRange,
) -> Vec<i128> {
    let n = input.len();
    bias.iter()
        .enumerate()
        .map(|(o, b)| {
            let acc: i128 = *b as i128
                + (0..n)
                    .map(|i| weights[o * n + i] as i128 * input[i] as i128)
                    .sum::<i128>();
            match requant {
                None => acc,
                Some(r) => {
                    let step = if r.len() == 1 { r[0] } else { r[o] };
                    let y = reference_round_shift(acc * step.multiplier as i128, step.shift);
                    y.clamp(range.min as i128, range.max as i128)
                }
            }
        })
        .collect()
}

fn bits() -> impl Strategy<Value = u32> {
    MIN_BITS..=MAX_BITS
}

/// A layer: (input, weights row-major, bias, weight bits, act bits).
fn layer(
    max_in: usize,
    max_out: usize,
) -> impl Strategy<Value = (Vec<i32>, Vec<i32>, Vec<i64>, u32, u32)> {
    (1..=max_in, 1..=max_out, bits(), bits()).prop_flat_map(|(n, m, wb, ab)| {
        let w = weight_range(wb);
        let a = ActRange::signed(ab);
        (
            prop::collection::vec(a.min..=a.max, n),
            prop::collection::vec(w.min..=w.max, n * m),
            prop::collection::vec(-(1i64 << 40)..(1i64 << 40), m),
            Just(wb),
            Just(ab),
        )
    })
}

fn requant_step() -> impl Strategy<Value = Requant> {
    (1i32..=i32::MAX, 0u8..=70).prop_map(|(multiplier, shift)| Requant { multiplier, shift })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn round_shift_matches_reference(x in -(1i64 << 61)..(1i64 << 61), shift in 0u8..=70) {
        prop_assert_eq!(round_shift_right_i64(x, shift) as i128, reference_round_shift(x as i128, shift));
        prop_assert_eq!(round_shift_right_i128(x as i128, shift), reference_round_shift(x as i128, shift));
    }

    #[test]
    fn i32_accumulation_matches_reference((input, weights, bias, _wb, _ab) in layer(40, 12)) {
        // Keep the bias in i32 range: the generator picks i32 only when the bound fits.
        let bias32: Vec<i32> = bias.iter().map(|b| (*b >> 20) as i32).collect();
        let bias_wide: Vec<i64> = bias32.iter().map(|b| *b as i64).collect();
        let w16: Vec<i16> = weights.iter().map(|w| *w as i16).collect();
        let mut out = vec![0i32; bias32.len()];
        dense_accumulate(&input, &w16, &bias32, &mut out);
        let expected = reference_layer(&input, &weights, &bias_wide, None, ActRange::signed(16));
        for (got, want) in out.iter().zip(&expected) {
            // No overflow is possible at these sizes (40 * 2^15 * 2^15 + 2^20 < 2^31 fails only
            // for the widest draws); compare modulo 2^32 as the kernel documents wrapping.
            prop_assert_eq!(*got, *want as i32);
        }
    }

    #[test]
    fn i64_requantization_matches_reference(
        (input, weights, bias, _wb, ab) in layer(40, 12),
        steps in prop::collection::vec(requant_step(), 1..=12),
        relu in any::<bool>(),
    ) {
        let w16: Vec<i16> = weights.iter().map(|w| *w as i16).collect();
        let range = if relu { ActRange::relu(ab) } else { ActRange::signed(ab) };
        let steps = if steps.len() >= bias.len() { steps[..bias.len()].to_vec() } else { steps[..1].to_vec() };
        let mut out = vec![0i32; bias.len()];
        dense_requantize(&input, &w16, &bias, &steps, range, &mut out);
        let expected = reference_layer(&input, &weights, &bias, Some(&steps), range);
        prop_assert_eq!(out.iter().map(|v| *v as i128).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn i32_requantization_matches_reference(
        (input, weights, _bias, _wb, ab) in layer(16, 8),
        step in requant_step(),
    ) {
        // 16 * 2^15 * 2^15 < 2^31: no accumulator overflow, so the reference applies exactly.
        let input: Vec<i16> = input.iter().map(|a| *a as i16).collect();
        let input32: Vec<i32> = input.iter().map(|a| *a as i32).collect();
        let w8: Vec<i8> = weights.iter().map(|w| (*w).clamp(-127, 127) as i8).collect();
        let w32: Vec<i32> = w8.iter().map(|w| *w as i32).collect();
        let m = w8.len() / input.len();
        let bias = vec![0i32; m];
        let range = ActRange::relu(ab);
        let mut out = vec![0u16; m];
        dense_requantize(&input, &w8, &bias, &[step], range, &mut out);
        let expected = reference_layer(&input32, &w32, &vec![0; m], Some(&[step]), range);
        prop_assert_eq!(out.iter().map(|v| *v as i128).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn packed_weights_round_trip(
        (_input, weights, _bias, wb, _ab) in layer(40, 12),
    ) {
        let w16: Vec<i16> = weights.iter().map(|w| *w as i16).collect();
        let mut bytes = vec![0u8; Packed::bytes_for(w16.len(), wb)];
        Packed::pack_into(&w16, wb, &mut bytes);
        let packed = Packed::new(&bytes, wb);
        for (k, w) in weights.iter().enumerate() {
            prop_assert_eq!(packed.get(k), *w);
        }
    }

    #[test]
    fn packed_kernels_equal_the_unpacked_ones(
        (input, weights, bias, wb, ab) in layer(40, 12),
        steps in prop::collection::vec(requant_step(), 1..=12),
        relu in any::<bool>(),
    ) {
        let w16: Vec<i16> = weights.iter().map(|w| *w as i16).collect();
        let mut bytes = vec![0u8; Packed::bytes_for(w16.len(), wb)];
        Packed::pack_into(&w16, wb, &mut bytes);
        let packed = Packed::new(&bytes, wb);
        let range = if relu { ActRange::relu(ab) } else { ActRange::signed(ab) };
        let steps = if steps.len() >= bias.len() { steps[..bias.len()].to_vec() } else { steps[..1].to_vec() };
        let (mut plain, mut from_packed) = (vec![0i32; bias.len()], vec![0i32; bias.len()]);
        dense_requantize(&input, &w16, &bias, &steps, range, &mut plain);
        dense_requantize_packed(&input, packed, &bias, &steps, range, &mut from_packed);
        prop_assert_eq!(&plain, &from_packed);
        let (mut plain, mut from_packed) = (vec![0i64; bias.len()], vec![0i64; bias.len()]);
        dense_accumulate(&input, &w16, &bias, &mut plain);
        dense_accumulate_packed(&input, packed, &bias, &mut from_packed);
        prop_assert_eq!(plain, from_packed);
    }

    /// The paired layout (8-, 4- and 2-bit weights in words, activations widened to 16-bit
    /// pairs, rows padded) computes the plain kernels' outputs bit for bit, for every row
    /// length (whole words or not) and every activation type that fits a 16-bit lane.
    #[test]
    fn paired_kernels_equal_the_plain_ones(
        (n, m, wb) in (1usize..=70, 1usize..=9, prop::sample::select(vec![2u32, 4, 8])),
        seed in any::<u64>(),
        steps in prop::collection::vec(requant_step(), 1..=9),
        relu in any::<bool>(),
    ) {
        // Deterministic values from the seed (a vector strategy per shape would be slower).
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let w = weight_range(wb);
        let span = (w.max - w.min + 1) as u64;
        let weights: Vec<i16> = (0..n * m).map(|_| (w.min + (next() % span) as i32) as i16).collect();
        let bias: Vec<i32> = (0..m).map(|_| (next() % 2_000_001) as i32 - 1_000_000).collect();
        let mut words = vec![0u32; m * PairedWords::words_per_row(n, wb)];
        PairedWords::pack_into(&weights, n, wb, &mut words);
        let paired = PairedWords::new(&words, wb);
        let mut pairs = vec![0u32; PairedWords::scratch_for(n, m, wb)];
        let range = if relu { ActRange::relu(8) } else { ActRange::signed(8) };
        let steps = if steps.len() >= m { steps[..m].to_vec() } else { steps[..1].to_vec() };
        let wide: Vec<i16> = weights.clone();

        let u8_input: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        let i8_input: Vec<i8> = (0..n).map(|_| next() as i8).collect();
        let i16_input: Vec<i16> = (0..n).map(|_| (next() % 4096) as i16 - 2048).collect();
        let (mut plain, mut from_paired) = (vec![0i32; m], vec![0i32; m]);
        dense_accumulate(&u8_input, &wide, &bias, &mut plain);
        dense_accumulate_paired(&u8_input, &mut pairs, paired, &bias, &mut from_paired);
        prop_assert_eq!(&plain, &from_paired);
        dense_accumulate(&i8_input, &wide, &bias, &mut plain);
        dense_accumulate_paired(&i8_input, &mut pairs, paired, &bias, &mut from_paired);
        prop_assert_eq!(&plain, &from_paired);
        dense_accumulate(&i16_input, &wide, &bias, &mut plain);
        dense_accumulate_paired(&i16_input, &mut pairs, paired, &bias, &mut from_paired);
        prop_assert_eq!(&plain, &from_paired);
        let (mut plain, mut from_paired) = (vec![0u8; m], vec![0u8; m]);
        dense_requantize(&u8_input, &wide, &bias, &steps, range, &mut plain);
        dense_requantize_paired(&u8_input, &mut pairs, paired, &bias, &steps, range, &mut from_paired);
        prop_assert_eq!(plain, from_paired);
    }

    #[test]
    fn argmax_takes_the_lowest_index_of_the_maximum(values in prop::collection::vec(-5i32..5, 1..20)) {
        let max = *values.iter().max().unwrap();
        let first = values.iter().position(|v| *v == max).unwrap();
        prop_assert_eq!(argmax(&values), first);
        let min = *values.iter().min().unwrap();
        prop_assert_eq!(argmin(&values), values.iter().position(|v| *v == min).unwrap());
    }
}

#[test]
fn ranges_are_the_documented_ones() {
    assert_eq!(
        ActRange::signed(8),
        ActRange {
            min: -128,
            max: 127
        }
    );
    assert_eq!(ActRange::relu(8), ActRange { min: 0, max: 255 });
    assert_eq!(ActRange::relu(16), ActRange { min: 0, max: 65535 });
    assert_eq!(weight_range(2), ActRange { min: -1, max: 1 });
    assert_eq!(
        weight_range(16),
        ActRange {
            min: -32767,
            max: 32767
        }
    );
    // Out-of-range widths are clamped, never a panic.
    assert_eq!(ActRange::signed(0), ActRange::signed(2));
    assert_eq!(ActRange::relu(40), ActRange::relu(16));
}

#[test]
fn rounding_is_half_up() {
    assert_eq!(round_shift_right_i64(3, 1), 2); // 1.5 -> 2
    assert_eq!(round_shift_right_i64(-3, 1), -1); // -1.5 -> -1
    assert_eq!(round_shift_right_i64(-5, 2), -1); // -1.25 -> -1
    assert_eq!(round_shift_right_i64(5, 0), 5);
}

#[test]
fn empty_and_mismatched_slices_do_not_panic() {
    assert_eq!(argmax::<i32>(&[]), 0);
    let mut out = [0i32; 3];
    dense_accumulate::<i32, i8, i32>(&[], &[], &[1, 2], &mut out);
    assert_eq!(out, [1, 2, 0]);
    dense_accumulate::<i32, i8, i32>(&[1, 2], &[1, 1, 1], &[0, 0, 0], &mut out);
    assert_eq!(out, [3, 2, 0]);
    let mut out8 = [0u8; 2];
    dense_requantize::<u8, i8, i32, u8>(
        &[200],
        &[1, 1],
        &[100, 0],
        &[],
        ActRange::relu(8),
        &mut out8,
    );
    assert_eq!(out8, [255, 200]);
}

/// `floor(x * 2^to_frac + 1/2)` computed with the `fixed` crate's own arithmetic.
fn fixed_reference(bits: i64, to_frac: i32) -> i64 {
    use fixed::types::{I32F32, I64F64};
    let x: I64F64 = I32F32::from_bits(bits).to_num();
    let scaled = if to_frac >= 0 {
        x << to_frac as u32
    } else {
        x >> (-to_frac) as u32
    };
    (scaled + I64F64::from_num(0.5)).floor().to_num::<i64>()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn fixed_point_inputs_are_rounded_half_up_like_the_fixed_crate(
        bits in -(1i64 << 40)..(1i64 << 40),
        to_frac in -20i32..=20,
        width in bits(),
    ) {
        let range = ActRange::signed(width);
        let expected = fixed_reference(bits, to_frac).clamp(range.min as i64, range.max as i64);
        prop_assert_eq!(rescale_fixed(bits as i128, 32, to_frac, range) as i64, expected);
    }

    #[test]
    fn fixed_point_rescaling_is_exact_for_any_bits(
        bits in any::<i128>(),
        from_frac in -300i32..=300,
        to_frac in -300i32..=300,
    ) {
        let range = ActRange { min: i32::MIN, max: i32::MAX };
        let got = rescale_fixed(bits, from_frac, to_frac, range) as i128;
        let shift = from_frac as i64 - to_frac as i64;
        let exact: Option<i128> = if (1..=126).contains(&shift) {
            // Quotient and remainder by 2^shift; round up from half a step.
            let step = 1i128 << shift;
            let (q, r) = (bits.div_euclid(step), bits.rem_euclid(step));
            Some(q + (r >= step / 2) as i128)
        } else if shift <= 0 && shift > -64 && bits.unsigned_abs() < (1u128 << 60) {
            Some(bits * (1i128 << -shift))
        } else {
            None
        };
        if let Some(exact) = exact {
            prop_assert_eq!(got, exact.clamp(i32::MIN as i128, i32::MAX as i128));
        }
        prop_assert!(bits >= 0 || got <= 0);
        prop_assert!(bits <= 0 || got >= 0);
    }
}

#[test]
fn fixed_point_rescaling_at_the_extremes() {
    let wide = ActRange {
        min: i32::MIN,
        max: i32::MAX,
    };
    let narrow = ActRange::signed(8);
    assert_eq!(rescale_fixed(i128::MIN, 0, 0, wide), i32::MIN);
    assert_eq!(rescale_fixed(i128::MAX, 0, 0, wide), i32::MAX);
    assert_eq!(rescale_fixed(i128::MIN, 128, 0, wide), 0); // -1/2 rounds up to 0
    assert_eq!(rescale_fixed(i128::MIN, 127, 0, wide), -1); // exactly -1
    assert_eq!(rescale_fixed(i128::MAX, 126, 0, wide), 2); // 2 - 2^-126 rounds to 2
    assert_eq!(rescale_fixed(1, 0, 200, narrow), 127);
    assert_eq!(rescale_fixed(-1, 0, 200, narrow), -128);
    // Ties go up: 2.5 -> 3, -2.5 -> -2.
    assert_eq!(rescale_fixed(5, 1, 0, wide), 3);
    assert_eq!(rescale_fixed(-5, 1, 0, wide), -2);
}

/// `clamp(floor(x * 2^to_frac + 1/2))` by exact float reasoning (scaling by a power of two is
/// exact in this range, and so is `y - floor(y)` for |y| < 2^52).
fn float_reference(x: f64, to_frac: i32, range: ActRange) -> i32 {
    if x.is_nan() {
        return 0;
    }
    let y = x * 2f64.powi(to_frac);
    let f = y.floor();
    let rounded = if y - f >= 0.5 { f + 1.0 } else { f };
    rounded.clamp(range.min as f64, range.max as f64) as i32
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn float_inputs_are_quantized_exactly_from_their_bits(
        x in -1.0e6f64..1.0e6,
        to_frac in -20i32..=20,
        width in bits(),
    ) {
        let range = ActRange::signed(width);
        prop_assert_eq!(quantize_f64_bits(x.to_bits(), to_frac, range), float_reference(x, to_frac, range));
        let x32 = x as f32;
        prop_assert_eq!(
            quantize_f32_bits(x32.to_bits(), to_frac, range),
            quantize_f64_bits((x32 as f64).to_bits(), to_frac, range)
        );
    }

    #[test]
    fn tiny_and_subnormal_inputs_round_like_the_reference(
        x in -1.0e-300f64..1.0e-300,
        to_frac in -20i32..=20,
    ) {
        let range = ActRange::signed(16);
        prop_assert_eq!(quantize_f64_bits(x.to_bits(), to_frac, range), float_reference(x, to_frac, range));
    }
}

#[test]
fn float_input_quantization_at_the_edges() {
    let r = ActRange::signed(8);
    // The largest double below 1/2 rounds down (x + 0.5 in f64 would round up to 1).
    assert_eq!(quantize_f64_bits(0.49999999999999994f64.to_bits(), 0, r), 0);
    assert_eq!(quantize_f64_bits(0.5f64.to_bits(), 0, r), 1);
    assert_eq!(quantize_f64_bits((-0.5f64).to_bits(), 0, r), 0);
    assert_eq!(quantize_f64_bits((-0.0f64).to_bits(), 3, r), 0);
    assert_eq!(quantize_f64_bits(f64::NAN.to_bits(), 3, r), 0);
    assert_eq!(quantize_f64_bits(f64::INFINITY.to_bits(), 3, r), 127);
    assert_eq!(quantize_f64_bits(f64::NEG_INFINITY.to_bits(), 3, r), -128);
    assert_eq!(quantize_f32_bits(f32::MIN_POSITIVE.to_bits(), 200, r), 127);
    assert_eq!(quantize_f32_bits(1e-45f32.to_bits(), 149, r), 1); // the smallest subnormal
    assert_eq!(quantize_f32_bits(2.75f32.to_bits(), 1, r), 6); // 5.5 -> 6
    assert_eq!(quantize_f32_bits((-2.75f32).to_bits(), 1, r), -5); // -5.5 -> -5
}
