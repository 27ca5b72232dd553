//! Branch and bound on the float network's ReLU phases: does the float network keep its class
//! against a rival over a box?
//!
//! On many-input networks (784 pixels) splitting the input box does not help — every half
//! still spans 783 full dimensions — while a few dozen unstable ReLUs are what make the
//! symbolic bounds loose. Fixing one to its active or inactive side makes it linear on the
//! part of the box where it has that side, and the layers above are re-bounded with it fixed.
//! The parts are not boxes, so each fixed phase also constrains the input: `z >= 0` (active)
//! implies `upper_z(x) >= 0` for the neuron's linear upper bound in the input, and `z <= 0`
//! (inactive) implies `-lower_z(x) >= 0`. The bound over a part maximises the objective's
//! linear bound over the box under those constraints through their Lagrangian dual (any
//! multipliers `beta >= 0` give a sound bound; projected subgradient steps lower it), as
//! beta-CROWN does at the input layer.

use std::time::Instant;

use ndarray::{Array1, Array2};

use super::bounds::{
    float_linear_forms, float_linear_upper_bound, relaxation_height, FixedPhase, FloatBounds,
    Interval, LinearForms, LowerRelaxation, Phase,
};
use crate::ir::Network;

/// What branch and bound found for `c · logits < 0`.
#[derive(Clone, Debug, PartialEq)]
pub enum Branched {
    /// Negative on every input of the box.
    Proved,
    /// A part whose every ReLU is fixed still reaches zero: its linear bound's maximiser (a raw
    /// input of the box), which is worth checking concretely.
    Candidate(Vec<f64>),
    /// The deadline came first.
    Open,
}

impl Branched {
    /// One word for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Branched::Proved => "proved",
            Branched::Candidate(_) => "candidate",
            Branched::Open => "open",
        }
    }
}

/// Subgradient steps on the multipliers of one part, at most.
const DUAL_STEPS: usize = 1000;

/// Steps without progress after which the multipliers are left as they are.
const DUAL_PATIENCE: usize = 40;

/// Whether `c · logits < 0` on every input of the box `fb` bounds (`lower`, `upper` its raw
/// corners), by branching on the ReLU whose relaxation costs the bound most until every part is
/// closed.
pub fn float_difference_negative(
    net: &Network,
    fb: &FloatBounds,
    c: &[f64],
    (lower, upper): (&[f64], &[f64]),
    deadline: Instant,
) -> Branched {
    // Depth first: the open parts stay few.
    let mut open: Vec<(Vec<FixedPhase>, FloatBounds)> = vec![(Vec::new(), fb.clone())];
    let mut parts = 0usize;
    while let Some((fixed, fb)) = open.pop() {
        if Instant::now() >= deadline {
            if std::env::var_os("CEG4N_DEBUG").is_some() {
                eprintln!("branching: {parts} parts bounded, {} open", open.len() + 1);
            }
            return Branched::Open;
        }
        parts += 1;
        let (bound, loss, maximiser) = part_bound(net, &fb, c, &fixed);
        if bound < 0.0 {
            continue;
        }
        // Where no relaxation on the objective's path is left, the constraints' own relaxations
        // (unstable neurons below the fixed ones) are what remains loose.
        let Some((layer, neuron)) = costliest(&loss).or_else(|| widest_unstable(net, &fb)) else {
            return Branched::Candidate(raw_input(net, &maximiser, lower, upper));
        };
        for phase in [Phase::Inactive, Phase::Active] {
            let new = FixedPhase {
                layer,
                neuron,
                phase,
            };
            let mut fixed = fixed.clone();
            fixed.push(new);
            if let Some(part) = fb.with_phase(net, &fixed, new) {
                open.push((fixed, part));
            }
        }
    }
    Branched::Proved
}

/// An upper bound of `c · logits` on the part (the box where every neuron of `fixed` has its
/// phase), what each unstable neuron's relaxation costs it, and the maximiser of the bound's
/// linear form (preprocessed input).
fn part_bound(
    net: &Network,
    fb: &FloatBounds,
    c: &[f64],
    fixed: &[FixedPhase],
) -> (f64, Vec<Vec<f64>>, Vec<f64>) {
    let mut loss: Vec<Vec<f64>> = fb.pre.iter().map(|z| vec![0.0; z.len()]).collect();
    let top = net.layers.len() - 1;
    let row = |c: &[f64]| Array2::from_shape_vec((1, c.len()), c.to_vec()).expect("one row");
    let objective = float_linear_forms(
        net,
        &fb.pre,
        top,
        row(c),
        true,
        LowerRelaxation::ByRange,
        Some(&mut loss),
    );
    // Each fixed phase as `form(x) >= 0`: the linear upper bound of `z` (active) or of `-z`
    // (inactive) in the input, from the part's bounds of the layers below it.
    // One back-substitution per layer for all its fixed neurons, stacked.
    let n = fb.input.len();
    let mut constraints = LinearForms {
        coef: Array2::zeros((0, n)),
        constant: Vec::new(),
        magnitude: Vec::new(),
    };
    let mut layers: Vec<usize> = fixed.iter().map(|f| f.layer).collect();
    layers.sort_unstable();
    layers.dedup();
    for layer in layers {
        let here: Vec<&FixedPhase> = fixed.iter().filter(|f| f.layer == layer).collect();
        let rows = Array2::from_shape_fn((here.len(), fb.pre[layer].len()), |(r, o)| {
            match (here[r].neuron == o, here[r].phase) {
                (false, _) => 0.0,
                (true, Phase::Active) => 1.0,
                (true, Phase::Inactive) => -1.0,
            }
        });
        let forms = float_linear_forms(
            net,
            &fb.pre,
            layer,
            rows,
            false,
            LowerRelaxation::ByRange,
            None,
        );
        constraints.coef = ndarray::concatenate![ndarray::Axis(0), constraints.coef, forms.coef];
        constraints.constant.extend(forms.constant);
        constraints.magnitude.extend(forms.magnitude);
    }
    let (dual, maximiser) = lagrangian_bound(&objective, &constraints, &fb.input);
    // The other relaxations only where the dual leaves the part open (they cost three more
    // back-substitutions).
    let bound = if dual < 0.0 {
        dual
    } else {
        dual.min(float_linear_upper_bound(net, fb, c))
    };
    (bound, loss, maximiser)
}

/// `min over beta >= 0` (approximately, by projected subgradient steps) of
/// `max over x in box of objective(x) + sum beta_i constraint_i(x)`: an upper bound of the
/// objective over the inputs where every `constraint_i(x) >= 0`, and the last maximiser.
fn lagrangian_bound(
    objective: &LinearForms,
    constraints: &LinearForms,
    input: &[Interval<f64>],
) -> (f64, Vec<f64>) {
    let n = input.len();
    let m = constraints.constant.len();
    // The constraints' constants and magnitudes, weighted by the multipliers at every step.
    let constants = Array1::from(constraints.constant.clone());
    let magnitudes = Array1::from(constraints.magnitude.clone());
    let mut beta = Array1::<f64>::zeros(m);
    let (mut best, mut best_x) = (f64::INFINITY, Vec::new());
    let mut stalled = 0;
    for _ in 0..=DUAL_STEPS {
        // The Lagrangian is linear in x: each coordinate at its box end.
        // Row by row (`axpy`), skipping zero multipliers: the product with the transposed
        // constraint matrix went through ndarray's strided fallback, half of a part's cost.
        let mut coef: Array1<f64> = objective.coef.row(0).to_owned();
        for (b, row) in beta.iter().zip(constraints.coef.rows()) {
            if *b != 0.0 {
                coef.scaled_add(*b, &row);
            }
        }
        let constant = objective.constant[0] + beta.dot(&constants);
        let magnitude = objective.magnitude[0] + beta.dot(&magnitudes);
        let lagrangian = LinearForms {
            coef: coef.clone().into_shape_with_order((1, n)).expect("one row"),
            constant: vec![constant],
            magnitude: vec![magnitude],
        };
        let value = lagrangian.upper_bounds(input)[0];
        let x: Array1<f64> = coef
            .iter()
            .zip(input)
            .map(|(a, i)| if *a > 0.0 { i.hi } else { i.lo })
            .collect();
        if value < best - 1e-6 * (1.0 + best.abs()) {
            stalled = 0;
        } else {
            stalled += 1;
        }
        if value < best {
            best = value;
            best_x = x.to_vec();
        }
        if best < 0.0 || m == 0 || stalled >= DUAL_PATIENCE {
            break;
        }
        // Subgradient: each constraint's value at the maximiser; Polyak's step towards a
        // value just below zero, the target.
        let g: Array1<f64> = constraints.coef.dot(&x) + &constants;
        let norm = g.dot(&g);
        if norm == 0.0 {
            break;
        }
        let step = (value + 1e-3 * (1.0 + value.abs())) / norm;
        beta.zip_mut_with(&g, |b, gi| *b = (*b - step * gi).max(0.0));
    }
    (best, best_x)
}

/// The neuron with the largest positive loss.
fn costliest(loss: &[Vec<f64>]) -> Option<(usize, usize)> {
    loss.iter()
        .enumerate()
        .flat_map(|(l, row)| row.iter().enumerate().map(move |(o, v)| (l, o, *v)))
        .filter(|(_, _, v)| *v > 0.0)
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(l, o, _)| (l, o))
}

/// The unstable ReLU with the largest relaxation height, lowest layers first.
fn widest_unstable(net: &Network, fb: &FloatBounds) -> Option<(usize, usize)> {
    let hidden = net.layers.len().saturating_sub(1);
    fb.pre.iter().take(hidden).enumerate().find_map(|(l, z)| {
        z.iter()
            .enumerate()
            .filter(|(_, i)| i.lo < 0.0 && i.hi > 0.0)
            .max_by(|a, b| relaxation_height(*a.1).total_cmp(&relaxation_height(*b.1)))
            .map(|(o, _)| (l, o))
    })
}

/// The raw input whose preprocessed value is `x` (each coordinate at an end of the box): the
/// input operations are monotone per feature, so each coordinate is the raw box's end that
/// maps there.
fn raw_input(net: &Network, x: &[f64], lower: &[f64], upper: &[f64]) -> Vec<f64> {
    let (a, b) = (net.preprocess(lower), net.preprocess(upper));
    (0..x.len())
        .map(|i| {
            if (x[i] - a[i]).abs() <= (x[i] - b[i]).abs() {
                lower[i]
            } else {
                upper[i]
            }
        })
        .collect()
}
