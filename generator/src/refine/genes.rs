//! The search's encoding of a configuration, defined once: one width per weight tensor (input
//! side first), one per hidden activation, the input width, then the per-channel choice (0/1).

use std::borrow::Borrow;
use std::ops::{Deref, DerefMut};

use ceg4n_runtime::MAX_BITS;

use crate::quantize::QuantConfig;

/// A candidate configuration as the search moves through them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Genes(Vec<u32>);

impl Genes {
    /// Every weight and activation at `width`, the input at `input`.
    pub fn uniform(layers: usize, width: u32, input: u32, per_channel: u32) -> Genes {
        let mut genes = vec![width; 2 * layers - 1];
        genes.push(input);
        genes.push(per_channel);
        Genes(genes)
    }

    /// Every width at 16 bits.
    pub fn widest(layers: usize, per_channel: u32) -> Genes {
        Genes::uniform(layers, MAX_BITS, MAX_BITS, per_channel)
    }

    /// Genes of the given widths, then the per-channel choice.
    pub fn from_parts(mut widths: Vec<u32>, per_channel: u32) -> Genes {
        widths.push(per_channel);
        Genes(widths)
    }

    /// How many width genes `layers` layers have (weights, hidden activations, input).
    pub fn width_count(layers: usize) -> usize {
        2 * layers
    }

    /// The index of hidden activation `h`'s width.
    pub fn activation_index(layers: usize, h: usize) -> usize {
        layers + h
    }

    /// The index of the input width.
    pub fn input_index(layers: usize) -> usize {
        2 * layers - 1
    }

    /// The widths (every gene but the per-channel choice).
    pub fn widths(&self) -> &[u32] {
        &self.0[..self.0.len() - 1]
    }

    /// The widths, to change.
    pub fn widths_mut(&mut self) -> &mut [u32] {
        let n = self.0.len() - 1;
        &mut self.0[..n]
    }

    /// The configuration these genes stand for (the other settings from `template`).
    pub fn config(genes: &[u32], template: &QuantConfig) -> QuantConfig {
        let layers = template.weight_bits.len();
        QuantConfig {
            weight_bits: genes[..layers].to_vec(),
            act_bits: genes[layers..Genes::input_index(layers)].to_vec(),
            input_bits: genes[Genes::input_index(layers)],
            per_channel: genes[Genes::width_count(layers)] == 1,
            ..template.clone()
        }
    }
}

impl Deref for Genes {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        &self.0
    }
}

impl DerefMut for Genes {
    fn deref_mut(&mut self) -> &mut [u32] {
        &mut self.0
    }
}

impl Borrow<[u32]> for Genes {
    fn borrow(&self) -> &[u32] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_round_trips_through_a_configuration() {
        let template = QuantConfig {
            weight_bits: vec![16; 3],
            act_bits: vec![16; 2],
            input_bits: 16,
            per_channel: false,
            uniform_input: true,
        };
        let mut genes = Genes::uniform(3, 8, 9, 1);
        genes.widths_mut()[Genes::activation_index(3, 1)] = 5;
        let config = Genes::config(&genes, &template);
        assert_eq!(config.weight_bits, vec![8, 8, 8]);
        assert_eq!(config.act_bits, vec![8, 5]);
        assert_eq!(config.input_bits, 9);
        assert!(config.per_channel && config.uniform_input);
        assert_eq!(genes.widths().len(), Genes::width_count(3));
        assert_eq!(Genes::widest(3, 0).widths(), &[16; 6]);
    }
}
