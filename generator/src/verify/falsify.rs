//! Looking for counterexamples without the solver: sampling, the float decision boundary,
//! local search near it.

use rand::SeedableRng;

use super::verdict::*;
use super::*;
use crate::ir::Network;

/// Looks for a disagreement without the solver: first at the given points, then along
/// segments between points the float network classifies differently, around the float
/// decision boundary (where the integer network's own boundary almost surely lies a little
/// off, leaving a thin sliver that uniform sampling misses).
impl Comparison<'_> {
    pub(crate) fn falsify(
        &self,
        lower: &[f64],
        upper: &[f64],
        points: &[Vec<f64>],
    ) -> Option<Counterexample> {
        self.falsify_until(lower, upper, points, None)
    }

    /// [`Comparison::falsify`] that stops looking at `deadline` (many points on a large
    /// network take seconds).
    pub(crate) fn falsify_until(
        &self,
        lower: &[f64],
        upper: &[f64],
        points: &[Vec<f64>],
        deadline: Option<Instant>,
    ) -> Option<Counterexample> {
        let time_left = || deadline.is_none_or(|d| Instant::now() < d);
        let (net, options) = (self.float, self.options);
        let decision = options.decision;
        let float_class = |x: &[f64]| decision.pick(&net.logits(x));
        let disagreement = |p: &[f64]| self.disagreement_at(lower, upper, p);
        if let Some(ce) = points
            .iter()
            .take_while(|_| time_left())
            .find_map(|p| disagreement(p))
        {
            return Some(ce);
        }
        if options.equivalence != Equivalence::Top1 {
            return None;
        }
        let classes: Vec<usize> = points
            .iter()
            .take_while(|_| time_left())
            .map(|p| float_class(p))
            .collect();
        let anchor = 0;
        let mut tried = 0;
        for (i, p) in points.iter().enumerate().take(classes.len()) {
            if !time_left() {
                return None;
            }
            if classes[i] == classes[anchor] || tried >= BOUNDARY_SEGMENTS {
                continue;
            }
            tried += 1;
            let a = &points[anchor];
            let at =
                |t: f64| -> Vec<f64> { a.iter().zip(p).map(|(x, y)| x + (y - x) * t).collect() };
            // Bisect to the float decision boundary on the segment.
            let (mut lo, mut hi) = (0.0f64, 1.0f64);
            let class_lo = classes[anchor];
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if float_class(&at(mid)) == class_lo {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            // Probe both sides of the boundary at growing distances.
            let mut delta = 1e-9;
            while delta < 0.5 {
                for t in [lo - delta, hi + delta] {
                    if (0.0..=1.0).contains(&t) {
                        if let Some(ce) = disagreement(&at(t)) {
                            return Some(ce);
                        }
                    }
                }
                delta *= 1.5;
            }
        }
        None
    }

    /// A replayed counterexample at `p` rounded to f32 (kept inside the box), if the host models
    /// disagree there and the f32 point reproduces it.
    fn disagreement_at(&self, lower: &[f64], upper: &[f64], p: &[f64]) -> Option<Counterexample> {
        let p32: Vec<f64> = p
            .iter()
            .zip(lower)
            .zip(upper)
            .map(|((v, l), u)| {
                let r = *v as f32 as f64;
                // Keep the f32 rounding inside the box.
                if r < *l || r > *u {
                    v.max(*l).min(*u)
                } else {
                    r
                }
            })
            .collect();
        // Cheap check on the host models first; tract runs only in the replay of a hit.
        if !self.violates(&p32) {
            return None;
        }
        let ce = self.replay(&p32, FoundBy::Sampling);
        ce.reproduces_in_f32.then_some(ce)
    }

    /// Whether `x` violates the equivalence on the host models (f64 float, integer runtime).
    pub fn violates(&self, x: &[f64]) -> bool {
        violates_given(&self.float.logits(x), self.quantized, x, self.options)
    }
}

/// [`Comparison::violates`] with the float network's logits at `x` already computed.
pub fn violates_given(
    float: &[f64],
    quantized: Quantized,
    x: &[f64],
    options: &VerifyOptions,
) -> bool {
    let q = quantized.logits(x);
    match options.equivalence {
        Equivalence::Top1 => options.decision.pick(float) != q.class(options.decision),
        Equivalence::Epsilon(eps) => largest_deviation(float, &quantized.dequantized(&q)) > eps,
    }
}

/// The gradient of `sign * (logit_j - logit_k)` of the float network with respect to its raw
/// input at `x` (the network is piecewise linear: back-propagation through the active ReLUs
/// and the input operations' per-feature scale).
fn rival_gradient(net: &Network, x: &[f64], j: usize, k: usize, sign: f64) -> Vec<f64> {
    use crate::ir::Activation;
    let outputs = net.layer_outputs(x);
    let mut g = vec![0.0f64; net.output_len()];
    (g[j], g[k]) = (sign, -sign);
    for (l, layer) in net.layers.iter().enumerate().rev() {
        if layer.activation == Activation::Relu {
            for (gi, h) in g.iter_mut().zip(&outputs[l]) {
                if *h <= 0.0 {
                    *gi = 0.0;
                }
            }
        }
        let mut below = vec![0.0f64; layer.inputs()];
        for (gz, row) in g.iter().zip(layer.weights.rows()) {
            if *gz != 0.0 {
                for (b, w) in below.iter_mut().zip(row) {
                    *b += gz * f64::from(*w);
                }
            }
        }
        g = below;
    }
    let (alpha, _) = crate::quantize::input_affine(net);
    for (gi, a) in g.iter_mut().zip(alpha) {
        *gi *= a;
    }
    g
}

/// Where projected gradient steps on the float network's margin ended.
pub(crate) enum FloatDescent {
    /// A point of the box where the float network picks another class than at the start.
    ClassChange(Vec<f64>),
    /// No class change: the point with the smallest float margin over a rival, where the
    /// quantized network, whose logits are off by its rounding, is the likeliest to disagree.
    Closest(Vec<f64>),
}

/// Projected gradient steps (signed, as for an L-inf box) lowering the float margin of
/// `k = class(start)` over each rival in turn: on many-input networks far faster than the
/// solver at showing that the float class is not constant. Stops at `until`.
pub(crate) fn float_margin_descent(
    net: &Network,
    lower: &[f64],
    upper: &[f64],
    start: &[f64],
    rivals: &[usize],
    decision: Decision,
    until: std::time::Instant,
) -> FloatDescent {
    let k = decision.pick(&net.logits(start));
    let sign = decision.sign();
    let (mut closest, mut smallest) = (start.to_vec(), f64::INFINITY);
    'rivals: for &j in rivals {
        let mut x = start.to_vec();
        let mut step = 0.25;
        for iteration in 0..GRADIENT_STEPS {
            if std::time::Instant::now() >= until {
                break 'rivals;
            }
            let g = rival_gradient(net, &x, j, k, sign);
            x = x
                .iter()
                .zip(&g)
                .enumerate()
                .map(|(i, (v, gi))| {
                    let moved = v + step * (upper[i] - lower[i]) * gi.signum();
                    f32_within(moved, lower[i], upper[i])
                })
                .collect();
            let f = net.logits(&x);
            if decision.pick(&f) != k {
                return FloatDescent::ClassChange(x);
            }
            let margin = sign * (f[k] - f[j]);
            if margin < smallest {
                (closest, smallest) = (x.clone(), margin);
            }
            if iteration % 8 == 7 {
                step *= 0.5;
            }
        }
    }
    FloatDescent::Closest(closest)
}

/// Projected gradient steps per rival class in [`float_margin_descent`].
const GRADIENT_STEPS: usize = 32;

/// A point of the box where the float network picks another class than `k = class(start)`,
/// by a gradient-free local search that lowers the float margin of `k` over its best rival
/// (random moves kept when they do not raise it, shrinking on failure).
pub(crate) fn float_class_change_near(
    net: &Network,
    lower: &[f64],
    upper: &[f64],
    start: &[f64],
    decision: Decision,
    until: std::time::Instant,
) -> Option<Vec<f64>> {
    let k = decision.pick(&net.logits(start));
    let sign = decision.sign();
    let margin = |x: &[f64]| -> f64 {
        let f = net.logits(x);
        (0..f.len())
            .filter(|j| *j != k)
            .map(|j| sign * (f[k] - f[j]))
            .fold(f64::INFINITY, f64::min)
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xF1A7);
    let moves = LocalSearch {
        lower,
        upper,
        step: 0.5,
        shrink: 0.97,
        until,
        points: Points::F32,
    };
    for x in moves.starts(start, FLOAT_SEARCH_RESTARTS, &mut rng) {
        let found = moves.run(x, &margin, &mut rng, |x, best| {
            (best < 0.0 && decision.pick(&net.logits(x)) != k).then(|| x.to_vec())
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The points a [`LocalSearch`] visits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Points {
    /// Any point of the box (the objective replays its result in f32 itself).
    Reals,
    /// Points rounded to f32 first: the float class search reports an input as a model reads it.
    F32,
}

/// A gradient-free local search inside a box: from a point, random moves (each coordinate by
/// up to `step` times the box width, then [`LocalSearch::clamp`]ed) are kept when they do not
/// raise the objective; a rejected move shrinks `step` by `shrink`. Runs [`ATTACK_STEPS`] moves.
pub(crate) struct LocalSearch<'a> {
    lower: &'a [f64],
    upper: &'a [f64],
    step: f64,
    shrink: f64,
    /// The search gives up at this instant (the box's deadline).
    until: std::time::Instant,
    points: Points,
}

impl LocalSearch<'_> {
    /// `x` moved into the box (rounded to f32 first for [`Points::F32`]).
    fn clamp(&self, x: Vec<f64>) -> Vec<f64> {
        x.iter()
            .zip(self.lower)
            .zip(self.upper)
            .map(|((v, l), u)| match self.points {
                Points::Reals => v.max(*l).min(*u),
                Points::F32 => f32_within(*v, *l, *u),
            })
            .collect()
    }

    /// `count` starting points: `first`, then uniformly random points of the box, clamped.
    pub(crate) fn starts(
        &self,
        first: &[f64],
        count: usize,
        rng: &mut impl rand::Rng,
    ) -> Vec<Vec<f64>> {
        let mut starts = vec![first.to_vec()];
        for _ in 1..count {
            starts.push(self.clamp(random_point(self.lower, self.upper, rng)));
        }
        starts
    }

    /// Searches from `x`; before each move, `found(x, objective(x))` may end the search with a
    /// result.
    pub(crate) fn run<R>(
        &self,
        mut x: Vec<f64>,
        objective: &dyn Fn(&[f64]) -> f64,
        rng: &mut impl rand::Rng,
        mut found: impl FnMut(&[f64], f64) -> Option<R>,
    ) -> Option<R> {
        let mut best = objective(&x);
        let mut step = self.step;
        let n = x.len();
        let (steps, shrink) = if n <= SPARSE_MOVES_ABOVE {
            (ATTACK_STEPS, self.shrink)
        } else {
            (
                ATTACK_STEPS.max(4 * n),
                self.shrink.powf(SPARSE_MOVES_ABOVE as f64 / n as f64),
            )
        };
        for step_index in 0..steps {
            if let Some(result) = found(&x, best) {
                return Some(result);
            }
            if step_index % 16 == 0 && std::time::Instant::now() >= self.until {
                return None;
            }
            // Few inputs: every coordinate moves. Many: one does, and a rejection shrinks the
            // step by a share of `shrink` (a move of all 784 pixels of an image at once is
            // almost always worse, so a joint move would only shrink the step to nothing).
            let y = if n <= SPARSE_MOVES_ABOVE {
                self.clamp(
                    x.iter()
                        .zip(self.lower)
                        .zip(self.upper)
                        .map(|((v, l), u)| v + (u - l) * step * rng.random_range(-1.0..1.0))
                        .collect(),
                )
            } else {
                let i = rng.random_range(0..n);
                let mut y = x.clone();
                y[i] += (self.upper[i] - self.lower[i]) * step * rng.random_range(-1.0..1.0);
                self.clamp(y)
            };
            let value = objective(&y);
            if value <= best {
                (x, best) = (y, value);
            } else {
                step = (step * shrink).max(1e-6);
            }
        }
        None
    }
}

/// Restarts of [`float_class_change_near`].
pub(crate) const FLOAT_SEARCH_RESTARTS: usize = 8;

/// Inputs above which a local search move changes one coordinate, not all.
const SPARSE_MOVES_ABOVE: usize = 32;

/// Steps of the local search in [`attack`] (at least four per input).
pub(crate) const ATTACK_STEPS: usize = 400;

impl Comparison<'_> {
    /// A gradient-free local search from `start` that pushes the quantized network's margin for
    /// the float class (or, under epsilon-equivalence, the deviation) towards a violation: random
    /// moves inside the box, kept when they do not worsen the objective, shrinking on failure.
    pub(crate) fn attack(
        &self,
        lower: &[f64],
        upper: &[f64],
        start: &[f64],
        until: std::time::Instant,
    ) -> Option<Counterexample> {
        self.attack_in_steps(lower, upper, start, 0.25, until)
    }

    /// [`Comparison::attack`] with moves of up to `step` times the box's width at first.
    fn attack_in_steps(
        &self,
        lower: &[f64],
        upper: &[f64],
        start: &[f64],
        step: f64,
        until: std::time::Instant,
    ) -> Option<Counterexample> {
        let objective = |x: &[f64]| self.violation_score(x);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xA77AC);
        let moves = LocalSearch {
            lower,
            upper,
            step,
            shrink: 0.95,
            until,
            points: Points::Reals,
        };
        moves.run(
            moves.clamp(start.to_vec()),
            &objective,
            &mut rng,
            |x, best| {
                if best >= 0.0 {
                    return None;
                }
                let ce = self.replay(x, FoundBy::SolverAndSearch);
                ce.reproduces_in_f32.then_some(ce)
            },
        )
    }
}

impl Comparison<'_> {
    /// Looks for a disagreement at points that differ from `x` in a few inputs, each redrawn
    /// uniformly from the box ([`AROUND_SAMPLES`] points at most, until `until`). Near the
    /// float network's thinnest margin the quantized network's rounding error decides the
    /// class, and that error changes from point to point almost at random: on a 784-input
    /// network a few hundred such draws show a disagreement that a descent on the quantized
    /// margin, stuck on its flat steps, does not reach.
    pub(crate) fn sample_around(
        &self,
        lower: &[f64],
        upper: &[f64],
        x: &[f64],
        until: std::time::Instant,
    ) -> Option<Counterexample> {
        use rand::Rng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xA20D);
        let n = x.len();
        for sample in 0..AROUND_SAMPLES {
            if sample % 16 == 0 && std::time::Instant::now() >= until {
                return None;
            }
            let mut y = x.to_vec();
            for _ in 0..AROUND_REDRAWN.min(n) {
                let i = rng.random_range(0..n);
                y[i] = rng.random_range(lower[i]..=upper[i]);
            }
            if let Some(ce) = self.disagreement_at(lower, upper, &y) {
                return Some(ce);
            }
        }
        None
    }
}

impl Comparison<'_> {
    /// Looks for a disagreement where the integer network saturates. Calibration takes the
    /// ranges from sampled points, so a box's extreme activations can lie beyond them, and
    /// there the clamped activation is off by far more than rounding (ACAS Xu 1_1 at 16/16, box
    /// 8.5: an activation 15% above its range, deviation 0.07, where the largest deviation
    /// found by bisection was 0.009). Such a region can be a sliver of the box (1_3, box 8.5:
    /// 0.007% of it, where an activation reaches 1.55 times its range). In order:
    /// - attacks from the [`SATURATION_SAMPLES`] points of largest deviation;
    /// - for each activation the samples put closest to (or beyond) its range, climbs on that
    ///   activation alone from the samples where it is largest (a climb on the largest excess
    ///   over all activations follows whichever leads at its start);
    /// - climbs on the largest excess from the centre and random points, which reach regions
    ///   no sample hints at;
    ///
    /// and from every point a climb leaves beyond a range, attacks on the violation.
    /// `None` for the paper's semantics (no saturation), when nothing is found, or at `until`.
    pub fn saturation_search(
        &self,
        lower: &[f64],
        upper: &[f64],
        until: std::time::Instant,
    ) -> Option<Counterexample> {
        let Quantized::Integer(int) = self.quantized else {
            return None;
        };
        let range_max = int.largest_activations();
        // Per activation, how far it lies above its layer's range, relative to the range.
        let ratios = |x: &[f64]| -> Vec<f64> {
            self.float
                .layer_outputs(x)
                .iter()
                .zip(&range_max)
                .flat_map(|(h, max)| h.iter().map(move |v| v / max - 1.0))
                .collect()
        };
        let excess = |x: &[f64]| ratios(x).into_iter().fold(f64::NEG_INFINITY, f64::max);
        let out_of_time = || std::time::Instant::now() >= until;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5A7);
        let moves = LocalSearch {
            lower,
            upper,
            step: 0.5,
            shrink: 0.95,
            until,
            points: Points::Reals,
        };
        // From a point, the deviation climbs within the saturating region (small moves: it can
        // be tiny) and, with the usual moves, beyond it.
        let attack_from = |x: &[f64]| {
            [SATURATED_ATTACK_STEP, 0.25]
                .into_iter()
                .find_map(|step| self.attack_in_steps(lower, upper, x, step, until))
        };
        let centre = super::midpoint(lower, upper);
        let samples = moves.starts(&centre, SATURATION_SAMPLES, &mut rng);
        let mut deviations = Vec::with_capacity(DEVIATION_SAMPLES);
        for (s, x) in samples.iter().take(DEVIATION_SAMPLES).enumerate() {
            if s % 1024 == 0 && out_of_time() {
                return None;
            }
            deviations.push((self.deviation_at(x), s));
        }
        deviations.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, s) in deviations.into_iter().take(DEVIATION_STARTS) {
            if let Some(ce) = attack_from(&samples[s]) {
                return Some(ce);
            }
        }
        // Per activation, the samples where it is largest, best first.
        let mut best: Vec<Vec<(f64, usize)>> = Vec::new();
        for (s, x) in samples.iter().enumerate() {
            if s % 1024 == 0 && out_of_time() {
                return None;
            }
            let r = ratios(x);
            best.resize(r.len(), Vec::new());
            for (top, v) in best.iter_mut().zip(r) {
                if top.len() < STARTS_PER_ACTIVATION || v > top[top.len() - 1].0 {
                    let at = top.partition_point(|(w, _)| *w >= v);
                    top.insert(at, (v, s));
                    top.truncate(STARTS_PER_ACTIVATION);
                }
            }
        }
        let mut targets: Vec<(usize, Vec<(f64, usize)>)> = best.into_iter().enumerate().collect();
        targets.sort_by(|a, b| b.1[0].0.total_cmp(&a.1[0].0));
        let samples = &samples;
        let targeted = targets
            .into_iter()
            .take(TARGETED_ACTIVATIONS)
            .flat_map(|(a, top)| {
                top.into_iter()
                    .map(move |(_, s)| (Some(a), samples[s].clone()))
            });
        let random = moves
            .starts(&centre, RANDOM_CLIMBS, &mut rng)
            .into_iter()
            .map(|x| (None, x));
        for (activation, start) in targeted.chain(random).collect::<Vec<_>>() {
            if out_of_time() {
                return None;
            }
            let objective = |x: &[f64]| match activation {
                Some(a) => -ratios(x)[a],
                None => -excess(x),
            };
            // To the largest excess, not the first: just above the range the clamp costs next
            // to nothing (1_3, box 8.5: the first saturating points deviated by 0.0005).
            let mut climbed = (start.clone(), f64::INFINITY);
            moves.run(start, &objective, &mut rng, |x, best| {
                climbed = (x.to_vec(), best);
                None::<()>
            });
            let (x, best) = climbed;
            if best < 0.0 {
                if let Some(ce) = attack_from(&x) {
                    return Some(ce);
                }
            }
        }
        None
    }
}

/// The first moves of the attack from a saturating point, relative to the box's width.
const SATURATED_ATTACK_STEP: f64 = 0.01;

/// Points of the box sampled by [`Comparison::saturation_search`] (0.3 s on ACAS Xu; the
/// search runs only on boxes of few inputs that bounds did not close quickly).
const SATURATION_SAMPLES: usize = 32768;

/// The samples whose deviation [`Comparison::saturation_search`] computes (the integer
/// network's run costs more than the float one's).
const DEVIATION_SAMPLES: usize = 8192;

/// Attacks from the sampled points of largest deviation.
const DEVIATION_STARTS: usize = 16;

/// Activations climbed on, those the samples put closest to (or beyond) their range.
const TARGETED_ACTIVATIONS: usize = 16;

/// Climbs per targeted activation, from the samples where it is largest.
const STARTS_PER_ACTIVATION: usize = 4;

/// Climbs on the largest excess over all activations, from the centre and random points.
const RANDOM_CLIMBS: usize = 16;

/// Points tried by [`Comparison::sample_around`].
const AROUND_SAMPLES: usize = 2000;

/// Inputs redrawn per point in [`Comparison::sample_around`].
const AROUND_REDRAWN: usize = 3;

/// The largest `|float - dequantized|` over the logits.
fn largest_deviation(float: &[f64], dequantized: &[f64]) -> f64 {
    float
        .iter()
        .zip(dequantized)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

impl Comparison<'_> {
    /// The largest deviation of a dequantized logit from the float one at `x`.
    pub(crate) fn deviation_at(&self, x: &[f64]) -> f64 {
        let q = self.quantized.logits(x);
        largest_deviation(&self.float.logits(x), &self.quantized.dequantized(&q))
    }

    /// How far `x` is from violating the property: below zero exactly where it violates it
    /// (ε: `eps` minus the largest deviation; top-1: the quantized network's lead over its
    /// rivals for the float class, -1 when it picks another class).
    pub(crate) fn violation_score(&self, x: &[f64]) -> f64 {
        let (quantized, decision) = (self.quantized, self.options.decision);
        let f = self.float.logits(x);
        let q = quantized.logits(x);
        let dq = quantized.dequantized(&q);
        match self.options.equivalence {
            Equivalence::Epsilon(eps) => eps - largest_deviation(&f, &dq),
            Equivalence::Top1 => {
                let k = decision.pick(&f);
                if q.class(decision) != k {
                    -1.0
                } else {
                    lead_over_rivals(&dq, k, decision)
                }
            }
        }
    }

    /// How far the quantized network's dequantized logit for `class` leads its closest rival at
    /// `x` (negative: a rival leads).
    pub(crate) fn quantized_margin_at(&self, x: &[f64], class: usize) -> f64 {
        let dq = self.quantized.dequantized(&self.quantized.logits(x));
        lead_over_rivals(&dq, class, self.options.decision)
    }
}

/// A uniformly random point of the box `[lower, upper]`.
pub(crate) fn random_point(lower: &[f64], upper: &[f64], rng: &mut impl rand::Rng) -> Vec<f64> {
    lower
        .iter()
        .zip(upper)
        .map(|(l, u)| rng.random_range(*l..=*u))
        .collect()
}

/// How far logit `class` of `logits` leads the closest other one under `decision` (negative:
/// another leads).
fn lead_over_rivals(logits: &[f64], class: usize, decision: Decision) -> f64 {
    let sign = decision.sign();
    (0..logits.len())
        .filter(|j| *j != class)
        .map(|j| sign * (logits[class] - logits[j]))
        .fold(f64::INFINITY, f64::min)
}

/// Segments between differently classified points searched for a boundary disagreement.
pub(crate) const BOUNDARY_SEGMENTS: usize = 16;
