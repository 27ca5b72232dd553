//! The crate's test vectors: inputs from the boxes and the caller, with the host model's
//! logits, which the generated crate and the device must reproduce bit for bit.

use super::Vector;
use crate::int_model::IntNetwork;

/// Random in-box points per box among the test vectors.
pub const RANDOM_VECTORS_PER_BOX: usize = 16;

/// Test vectors: every box's centre, up to 8 corners and random points, and the given inputs
/// (counterexamples, test rows), each with the host model's logits.
pub fn vectors(
    net: &IntNetwork,
    props: &[crate::data::Property],
    extra: &[(String, Vec<f64>)],
    seed: u64,
) -> Vec<Vector> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut points: Vec<(String, Vec<f64>)> = Vec::new();
    for p in props {
        for (k, x) in p
            .sample_points(0, 8, RANDOM_VECTORS_PER_BOX, &mut rng)
            .into_iter()
            .enumerate()
        {
            let origin = match k {
                0 => format!("centre {}", p.id),
                k if k <= 8 => format!("corner {}", p.id),
                _ => format!("random {}", p.id),
            };
            points.push((origin, x));
        }
    }
    points.extend(extra.iter().cloned());
    points
        .into_iter()
        .map(|(origin, x)| {
            let input = net.quantize_input(&x);
            let logits = net.logits_q(&input);
            Vector {
                class: ceg4n_runtime::argmax(&logits),
                origin,
                input,
                logits,
            }
        })
        .collect()
}
