//! How candidate configurations are proposed: the conventional anchor, per-width descent with
//! bit trades and a random polish, widening and lowering one width at a time (the default
//! strategy), and the CEG4N artifact's (1+2) evolutionary search.
//!
//! Genes: weight bits per layer, hidden activation bits, input bits, per-channel (0/1).

use ceg4n_runtime::{MAX_BITS, MIN_BITS};
use rand::{Rng, SeedableRng};

use super::genes::Genes;
use super::screen::Screen;

/// Candidate evaluations per round of the evolutionary search (the artifact's setting).
pub const GA_EVALUATIONS: usize = 1000;

/// The conventional width the anchor starts from: 8-bit weights and activations.
pub const ANCHOR_BITS: u32 = 8;

/// The anchor: the smallest conventional configuration that passes the screen (every screen
/// point, and the fidelity floor on the data rows) and was not rejected: weights and
/// activations at one width from `from` ([`ANCHOR_BITS`] at first) up, input from that width
/// up, per-layer scales before per-channel ones. `None` if not even 16 bits pass.
pub(super) fn anchor(
    screen: &mut Screen,
    per_channel: &[u32],
    layers: usize,
    from: u32,
) -> Option<Genes> {
    for width in from..=MAX_BITS {
        for input in width..=MAX_BITS {
            for pc in per_channel {
                let genes = Genes::uniform(layers, width, input, *pc);
                if !screen.rejected.contains(&*genes) && screen.passes(&genes) {
                    return Some(genes);
                }
            }
        }
    }
    None
}

/// `best` with one width lowered by a bit: the width that saves the most storage first, among
/// those that pass the screen and were not refuted before; `None` if none qualifies.
pub(super) fn lower_one_width(screen: &mut Screen, best: &Genes) -> Option<Genes> {
    let widths = best.widths().len();
    let mut order: Vec<usize> = (0..widths).filter(|g| best[*g] > MIN_BITS).collect();
    let lowered = |g: usize| {
        let mut lower = best.clone();
        lower.widths_mut()[g] -= 1;
        lower
    };
    order.sort_by_key(|g| screen.storage(&lowered(*g)).key());
    order.into_iter().find_map(|g| {
        let lower = lowered(g);
        screen.passes(&lower).then_some(lower)
    })
}

/// `genes` with at least `step` bits added to every width (capped at 16): the first such
/// widening that passes the screen and was not refuted before, with the bits added; `genes`
/// itself (and 0) when `step` is 0 or no widening qualifies.
pub(super) fn widen(screen: &mut Screen, genes: Genes, step: u32) -> (Genes, u32) {
    if step == 0 {
        return (genes, 0);
    }
    for extra in step..=MAX_BITS - MIN_BITS {
        let mut wider = genes.clone();
        for g in wider.widths_mut() {
            *g = (*g + extra).min(MAX_BITS);
        }
        if !screen.rejected.contains(&*wider) && screen.passes(&wider) {
            return (wider, extra);
        }
        if wider.widths().iter().all(|g| *g == MAX_BITS) {
            break;
        }
    }
    (genes, 0)
}

/// Lowers one width at a time by bisection, sweeping until nothing moves, then trades one bit
/// between two widths while that lowers the storage. The weight widths are tried in several
/// orders (each order can end in a different local minimum); the smallest result wins. `None`
/// if `top` itself fails the screen.
pub(super) fn descend(screen: &mut Screen, top: &Genes, layers: usize) -> Option<Genes> {
    if !screen.passes(top) {
        return None;
    }
    let net = &screen.task.net;
    let mut by_size: Vec<usize> = (0..layers).collect();
    by_size.sort_by_key(|l| std::cmp::Reverse(net.layers[*l].weights.len()));
    let mut hidden: Vec<usize> = (0..layers - 1).collect();
    hidden.sort_by_key(|l| std::cmp::Reverse(net.layers[*l].outputs()));
    let tail: Vec<usize> = hidden
        .iter()
        .map(|h| Genes::activation_index(layers, *h))
        .chain(std::iter::once(Genes::input_index(layers)))
        .collect();
    let mut best: Option<Genes> = None;
    for rotation in 0..layers.min(DESCENT_ORDERS) {
        let mut order = by_size.clone();
        order.rotate_left(rotation);
        order.extend(&tail);
        let mut current = top.clone();
        bisect_each(screen, &mut current, &order);
        trade_bits(screen, &mut current);
        polish(screen, &mut current, rotation as u64);
        let better = best
            .as_ref()
            .is_none_or(|b| screen.storage(&current).key() < screen.storage(b).key());
        if better {
            best = Some(current);
        }
    }
    best
}

/// Weight-width orders tried by [`descend`].
const DESCENT_ORDERS: usize = 4;

/// Bisects each gene in `order` down to the smallest width that passes, until a sweep changes
/// nothing.
fn bisect_each(screen: &mut Screen, current: &mut [u32], order: &[usize]) {
    for _sweep in 0..4 {
        let before = current.to_vec();
        for &gene in order {
            let (mut lo, mut hi) = (MIN_BITS, current[gene]);
            while lo < hi {
                let mid = (lo + hi) / 2;
                let mut trial = current.to_vec();
                trial[gene] = mid;
                if screen.passes(&trial) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            current[gene] = hi;
        }
        if current == before.as_slice() {
            break;
        }
    }
}

/// Screenings of the random local search that ends each descent.
const POLISH_EVALUATIONS: usize = 3000;

/// The local search stops after this many screenings without a smaller storage.
const POLISH_PATIENCE: usize = 600;

/// Random small moves (each width, with probability 2/n, moved by up to 3 or redrawn) kept when they pass and do
/// not increase the storage: the widths interact (a coarser activation can suit a coarser
/// weight), which one-at-a-time descent cannot see.
fn polish(screen: &mut Screen, current: &mut Genes, seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x0090_1154 ^ seed);
    let n = current.widths().len();
    let mut key = screen.storage(current).key();
    let mut since_improvement = 0;
    for _ in 0..POLISH_EVALUATIONS {
        if since_improvement >= POLISH_PATIENCE {
            break;
        }
        since_improvement += 1;
        let mut trial = current.clone();
        while trial == *current {
            for g in trial.iter_mut().take(n) {
                if rng.random_range(0..n) < 2 {
                    if rng.random_range(0..4) == 0 {
                        *g = rng.random_range(MIN_BITS..=MAX_BITS);
                    } else {
                        let step: i32 = [-3, -2, -1, 1, 2, 3][rng.random_range(0..6)];
                        *g = (*g as i32 + step).clamp(MIN_BITS as i32, MAX_BITS as i32) as u32;
                    }
                }
            }
        }
        let trial_key = screen.storage(&trial).key();
        if trial_key <= key && screen.passes(&trial) {
            if trial_key < key {
                since_improvement = 0;
            }
            (*current, key) = (trial, trial_key);
        }
    }
}

/// Moves of one bit down on one gene and up to two bits up on another, kept when they pass and
/// lower the storage, until none helps.
fn trade_bits(screen: &mut Screen, current: &mut Genes) {
    let n = current.widths().len();
    loop {
        let key = screen.storage(current).key();
        let mut improved = false;
        'search: for down in 0..n {
            if current[down] <= MIN_BITS {
                continue;
            }
            for up in (0..n).filter(|u| *u != down) {
                for raise in 1..=2 {
                    let mut trial = current.clone();
                    trial[down] -= 1;
                    trial[up] = (trial[up] + raise).min(MAX_BITS);
                    if screen.storage(&trial).key() < key && screen.passes(&trial) {
                        *current = trial;
                        improved = true;
                        break 'search;
                    }
                }
            }
        }
        if !improved {
            break;
        }
    }
}

/// The artifact's search: a (1+2) evolutionary algorithm from a random configuration; each
/// gene of a child is redrawn with probability 1/n; a child replaces the parent when it has no
/// more screen violations and no more storage. `None` if no consistent configuration was found.
pub(super) fn evolve(
    screen: &mut Screen,
    per_channel: &[u32],
    rng: &mut impl Rng,
) -> Option<Genes> {
    // Bit genes, then the per-channel gene.
    let n = Genes::width_count(screen.template.weight_bits.len()) + 1;
    let draw = |rng: &mut dyn rand::RngCore, g: usize| {
        if g + 1 < n {
            rng.random_range(MIN_BITS..=MAX_BITS)
        } else {
            per_channel[rng.random_range(0..per_channel.len())]
        }
    };
    let fitness = |screen: &mut Screen, genes: &[u32]| {
        let violations = screen.violations(genes, usize::MAX);
        (violations, screen.storage(genes).key())
    };
    // Widths first, then the per-channel choice: the order of random draws is the seed's.
    let widths: Vec<u32> = (0..n - 1).map(|g| draw(rng, g)).collect();
    let per_channel_choice = draw(rng, n - 1);
    let mut parent = Genes::from_parts(widths, per_channel_choice);
    let mut parent_fitness = fitness(screen, &parent);
    let mut evaluations = 1;
    while evaluations < GA_EVALUATIONS {
        for _child in 0..2 {
            let mut child = parent.clone();
            let mut mutated = false;
            for (g, gene) in child.iter_mut().enumerate() {
                if rng.random_range(0..n) == 0 {
                    *gene = draw(rng, g);
                    mutated = true;
                }
            }
            if !mutated {
                let g = rng.random_range(0..n);
                child[g] = draw(rng, g);
            }
            let f = fitness(screen, &child);
            evaluations += 1;
            if f <= parent_fitness {
                (parent, parent_fitness) = (child, f);
            }
        }
    }
    (parent_fitness.0 == 0).then_some(parent)
}
