//! How the device stores a layer's weights: plain, bit-packed, or paired for the Arm DSP
//! kernels, chosen per layer by the generator, and the arrays' contents in each layout.

use ceg4n_runtime::{Packed, PairedWords};
use serde::Serialize;

use super::PACK_BELOW_BITS;
use crate::board::Board;
use crate::int_model::{AccWidth, IntLayer};

/// How the device stores a layer's weights; the generator picks one per layer
/// ([`WeightLayout::choose`]) and the kernels that read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightLayout {
    /// One `i8` or `i16` per weight, row-major (`dense_*`).
    Plain,
    /// Bit-packed back to back (`Packed`, `dense_*_packed`): widths below [`PACK_BELOW_BITS`].
    Packed,
    /// 8-, 4- or 2-bit weights in words ordered for two multiply-accumulates per instruction,
    /// rows padded to whole words (`PairedWords`, `dense_*_paired`): DSP cores only.
    Paired,
}

/// The most flash the paired layout's row padding may add to the network's weights, in
/// percent of their plain or packed size (the crate's flash must not grow for the speed).
const PAIRED_MAX_PADDING_PERCENT: usize = 10;

impl WeightLayout {
    /// The layout without the DSP path: plain, or bit-packed below [`PACK_BELOW_BITS`].
    pub(super) fn unpaired(layer: &IntLayer) -> WeightLayout {
        if layer.weight_bits < PACK_BELOW_BITS {
            WeightLayout::Packed
        } else {
            WeightLayout::Plain
        }
    }

    /// Whether `layer` can be paired: 8-, 4- or 2-bit weights, a 32-bit accumulator whose
    /// proven bound still fits once scaled by `2^(8 - bits)` (the paired loop sums scaled
    /// products), and inputs that fit a 16-bit lane (`input_fits_16`).
    fn pairable(layer: &IntLayer, input_fits_16: bool) -> bool {
        let bits = layer.weight_bits;
        let scaled_bound_fits = matches!(bits, 2 | 4 | 8)
            && layer
                .accumulator_bound
                .checked_shl(8 - bits)
                .is_some_and(|b| b < 1i128 << 31);
        layer.accumulator == AccWidth::I32 && input_fits_16 && scaled_bound_fits
    }

    /// The layouts of `layers` on `board` (`input_fits_16[i]`: whether layer `i`'s inputs fit a
    /// 16-bit lane). On a DSP core every pairable layer is paired, unless the rows' padding
    /// would add more than [`PAIRED_MAX_PADDING_PERCENT`] to the weights; all or none, so that
    /// one kernel family serves the network (two would cost more code than padding saves).
    pub fn choose(layers: &[IntLayer], board: &Board, input_fits_16: &[bool]) -> Vec<WeightLayout> {
        let unpaired: Vec<WeightLayout> = layers.iter().map(WeightLayout::unpaired).collect();
        if !board.has_dsp() {
            return unpaired;
        }
        let paired: Vec<WeightLayout> = layers
            .iter()
            .zip(input_fits_16)
            .zip(&unpaired)
            .map(|((l, fits), &u)| {
                if WeightLayout::pairable(l, *fits) {
                    WeightLayout::Paired
                } else {
                    u
                }
            })
            .collect();
        let bytes = |layouts: &[WeightLayout]| -> usize {
            layers
                .iter()
                .zip(layouts)
                .map(|(l, layout)| stored_weight_bytes(l, *layout))
                .sum()
        };
        if bytes(&paired) * 100 <= bytes(&unpaired) * (100 + PAIRED_MAX_PADDING_PERCENT) {
            paired
        } else {
            unpaired
        }
    }
}

/// Bytes of `layer`'s weights stored in `layout`.
pub(super) fn stored_weight_bytes(layer: &IntLayer, layout: WeightLayout) -> usize {
    match layout {
        WeightLayout::Paired => {
            4 * layer.outputs * PairedWords::words_per_row(layer.inputs, layer.weight_bits)
        }
        WeightLayout::Plain | WeightLayout::Packed => {
            weight_bytes(&layer.weights, layer.weight_bits)
        }
    }
}

/// How a layer's weights are stored: element type and the array's contents (packed exactly as
/// the host model evaluates them, or paired for the DSP kernels).
pub(super) fn stored_weights(
    weights: &[i16],
    inputs: usize,
    bits: u32,
    layout: WeightLayout,
) -> (&'static str, Vec<String>) {
    match layout {
        WeightLayout::Paired => {
            let rows = weights.len() / inputs.max(1);
            let mut words = vec![0u32; rows * PairedWords::words_per_row(inputs, bits)];
            PairedWords::pack_into(weights, inputs, bits, &mut words);
            ("u32", words.iter().map(|w| format!("{w:#010x}")).collect())
        }
        WeightLayout::Packed => {
            let bytes = crate::int_model::pack_weights(weights, bits).unwrap_or_default();
            ("u8", bytes.iter().map(|b| b.to_string()).collect())
        }
        WeightLayout::Plain if bits <= 8 => ("i8", weights.iter().map(|w| w.to_string()).collect()),
        WeightLayout::Plain => ("i16", weights.iter().map(|w| w.to_string()).collect()),
    }
}

/// Bytes of a layer's stored weights.
fn weight_bytes(weights: &[i16], bits: u32) -> usize {
    if bits < PACK_BELOW_BITS {
        Packed::bytes_for(weights.len(), bits)
    } else if bits <= 8 {
        weights.len()
    } else {
        2 * weights.len()
    }
}
