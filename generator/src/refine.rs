//! CEG4N refinement: the smallest bit-widths whose integer network is *proved* to pick the
//! float network's class on every box.
//!
//! A round proposes a configuration that every point of the screen set (box centres, every
//! counterexample found so far, and for the default strategy also sampled in-box points)
//! classifies like the float network, then verifies every box at exactly that configuration.
//! Replayed counterexamples join the screen set; a configuration that failed is never proposed
//! again. The loop ends at the first configuration proved on every box, or at the budget.
//!
//! Strategies: `Descent` (default) bisects one width at a time, largest weight tensor first,
//! from the widest configuration, screens each proposal by attack before any proof, verifies
//! nested boxes outermost first, and widens its proposals by a bit after every few refuted
//! rounds; `Genetic` reproduces the CEG4N artifact's (1+2) evolutionary
//! search (1000 evaluations per round, restarted each round, screened on centres and
//! counterexamples only) for comparison.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ceg4n_runtime::{MAX_BITS, MIN_BITS};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::data::{Dataset, Property};
use crate::int_model::IntNetwork;
use crate::ir::Network;
use crate::quantize::QuantConfig;
use crate::task::Task;
use crate::verify::{self, BoxVerdict, Quantized, Status, VerifyOptions};

/// How candidates are proposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Search {
    /// Per-width bisection over a screen set with sampled points (ours).
    Descent,
    /// The CEG4N artifact's (1+2) evolutionary algorithm.
    Genetic,
}

/// Settings of one refinement.
#[derive(Clone, Debug)]
pub struct RefineOptions {
    /// The strategy.
    pub search: Search,
    /// Seed of every random choice (same seed, same result).
    pub seed: u64,
    /// No new round starts after this much time.
    pub time_limit: Duration,
    /// At most this many rounds.
    pub max_rounds: usize,
    /// Per-box verification settings.
    pub verify: VerifyOptions,
    /// Boxes verified in parallel.
    pub jobs: usize,
    /// Per-channel weight scales for hidden layers: forced on or off, or `None` to let the
    /// search choose.
    pub per_channel: Option<bool>,
    /// One input format for all features.
    pub uniform_input: bool,
}

/// Random in-box points per box added to the default strategy's screen set.
pub const SCREEN_SAMPLES_PER_BOX: usize = 64;

/// Candidate evaluations per round of the evolutionary search (the artifact's setting).
pub const GA_EVALUATIONS: usize = 1000;

/// Proposals refuted by attack (without the verifier) before the default strategy verifies
/// its proposals regardless.
const MAX_ATTACK_ROUNDS: usize = 50;

/// The default strategy widens its proposals by one more bit per width after each this many
/// rounds the verifier refuted: near the smallest consistent widths every proof can find a new
/// counterexample, and a little slack ends the loop with a proof instead of the budget.
pub const WIDEN_AFTER_REFUTED_ROUNDS: usize = 3;

/// A box refuted in this many verified rounds in a row is verified at the widest
/// configurations; refuted there too, it is excluded (no width up to 16 bits can prove it).
const STUBBORN_BOX_ROUNDS: usize = 3;

/// Restarts of the evolutionary search within one round before it gives up.
pub const GA_RESTARTS: usize = 5;

/// Storage of one configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Storage {
    /// `sum_l bits_l * |W_l|`: the objective.
    pub weight_storage_bits: u64,
    /// `sum_l bits_l * (|W_l| + |b_l|)`: the paper's objective.
    pub paper_storage_bits: u64,
    /// Input and hidden activations at their widths (the second objective).
    pub activation_bits: u64,
}

impl Storage {
    /// The storage of `config` for `net`.
    pub fn of(net: &Network, config: &QuantConfig) -> Storage {
        let weights = net.layers.iter().zip(&config.weight_bits);
        Storage {
            weight_storage_bits: weights
                .clone()
                .map(|(l, b)| *b as u64 * l.weights.len() as u64)
                .sum(),
            paper_storage_bits: weights
                .map(|(l, b)| *b as u64 * (l.weights.len() + l.bias.len()) as u64)
                .sum(),
            activation_bits: config.input_bits as u64 * net.input_len() as u64
                + net
                    .layers
                    .iter()
                    .zip(&config.act_bits)
                    .map(|(l, b)| *b as u64 * l.outputs() as u64)
                    .sum::<u64>(),
        }
    }

    /// Lexicographic objective: weights first, then activations.
    fn key(&self) -> (u64, u64) {
        (self.weight_storage_bits, self.activation_bits)
    }
}

/// One round of the loop.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Round {
    /// Weight bits proposed.
    pub weight_bits: Vec<u32>,
    /// Hidden activation bits proposed.
    pub activation_bits: Vec<u32>,
    /// Input bits proposed.
    pub input_bits: u32,
    /// `sum_l bits_l * |W_l|`.
    pub weight_storage_bits: u64,
    /// Boxes proved at this configuration.
    pub proved: usize,
    /// Boxes with a counterexample.
    pub counterexample: usize,
    /// Boxes undecided.
    pub unknown: usize,
    /// Seconds of the round (search and proofs).
    pub seconds: f64,
    /// Bits added to every width of the search's proposal (default strategy, after repeated
    /// refutations; 0 otherwise).
    #[serde(default)]
    pub widened_by: u32,
}

/// A counterexample found during the refinement.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct FoundCounterexample {
    /// The round (1-based) whose candidate it refuted.
    pub round: usize,
    /// The box.
    pub box_id: String,
    /// The input (f32).
    pub input: Vec<f32>,
    /// The float network's class there.
    pub float_class: usize,
    /// The refuted candidate's class there.
    pub quantized_class: usize,
}

/// Accuracy on a labelled test set.
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize)]
pub struct Accuracy {
    /// The float network.
    pub float: f64,
    /// The refined integer network.
    pub quantized: f64,
    /// Uniform quantization (one weight width, the refined activation widths) at no more
    /// weight storage than the refined network.
    pub uniform_baseline: f64,
    /// The baseline's weight width.
    pub uniform_bits: u32,
}

/// A box left out of the refinement because the float network's class changes inside it.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ExcludedBox {
    /// The box.
    pub id: String,
    /// The float class at the centre.
    pub centre_class: usize,
    /// A point of the box (f32) where the float network picks another class.
    pub witness: Vec<f32>,
    /// The float class there.
    pub witness_class: usize,
    /// Why no configuration can be proved on the box.
    #[serde(default)]
    pub reason: String,
}

impl ExcludedBox {
    /// The exclusion of `prop` with the witness `x`: the float class changes at `x`, or even
    /// the widest integer network disagrees with the float one there.
    fn new(net: &Network, options: &VerifyOptions, prop: &Property, x: &[f64]) -> ExcludedBox {
        let centre_class = options.decision.pick(&net.logits(&prop.x));
        let witness_class = options.decision.pick(&net.logits(x));
        ExcludedBox {
            id: prop.id.clone(),
            centre_class,
            witness_class,
            witness: x.iter().map(|v| *v as f32).collect(),
            reason: if witness_class != centre_class {
                "the float decision boundary crosses the box".into()
            } else {
                format!("even at {MAX_BITS} bits the integer network disagrees with the float one at the witness")
            },
        }
    }
}

/// The outcome of a refinement.
#[derive(Clone, Debug, Serialize)]
pub struct Refinement {
    /// Boxes no configuration up to 16 bits can be proved on (the float class is not constant
    /// on them, or even 16 bits disagree somewhere), each with a witness.
    pub excluded: Vec<ExcludedBox>,
    /// The reported configuration: the one proved on every box, else the last candidate.
    pub config: Option<QuantConfig>,
    /// Whether every box (except the excluded ones) was proved at exactly `config`.
    pub verified: bool,
    /// Storage of `config`.
    pub storage: Option<Storage>,
    /// The verdicts at `config` (or at the last candidate).
    pub boxes: Vec<BoxVerdict>,
    /// Per-round history.
    pub rounds: Vec<Round>,
    /// Every counterexample, in order.
    pub counterexamples: Vec<FoundCounterexample>,
    /// Boxes that reached the verifier, summed over rounds (the default strategy skips boxes
    /// an enclosing box's verdict decides).
    pub verifier_calls: usize,
    /// Candidate configurations screened on host models.
    pub screened: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Why the loop stopped.
    pub stop_reason: String,
}

/// Receives progress events (an indicatif bar in the CLI; nothing in tests).
pub trait Progress: Sync {
    /// A round starts verifying `candidate` on `boxes` boxes.
    fn round(&self, _round: usize, _candidate: &QuantConfig, _boxes: usize) {}
    /// One box finished.
    fn proof(&self, _verdict: &BoxVerdict) {}
}

/// No progress output.
pub struct Silent;
impl Progress for Silent {}

/// The host-side screen: points every candidate must classify like the float network.
struct Screen<'a> {
    task: &'a Task,
    options: &'a VerifyOptions,
    points: Vec<Vec<f64>>,
    /// Configurations verified and refuted (or left undecided): never proposed again.
    rejected: HashSet<Vec<u32>>,
    evaluations: usize,
    template: QuantConfig,
}

impl Screen<'_> {
    fn config(&self, genes: &[u32]) -> QuantConfig {
        let layers = self.template.weight_bits.len();
        QuantConfig {
            weight_bits: genes[..layers].to_vec(),
            act_bits: genes[layers..2 * layers - 1].to_vec(),
            input_bits: genes[2 * layers - 1],
            per_channel: genes[2 * layers] == 1,
            ..self.template.clone()
        }
    }

    /// Points the configuration gets wrong, stopping after `limit`.
    fn violations(&mut self, genes: &[u32], limit: usize) -> usize {
        self.evaluations += 1;
        if self.rejected.contains(genes) {
            return usize::MAX;
        }
        let Ok(int_net) = self.task.quantize(&self.config(genes)) else {
            return usize::MAX;
        };
        let quantized = Quantized::Integer(&int_net);
        let mut count = 0;
        for p in &self.points {
            if verify::violates(&self.task.net, quantized, p, self.options) {
                count += 1;
                if count >= limit {
                    break;
                }
            }
        }
        count
    }

    fn passes(&mut self, genes: &[u32]) -> bool {
        self.violations(genes, 1) == 0
    }

    fn storage(&self, genes: &[u32]) -> Storage {
        Storage::of(&self.task.net, &self.config(genes))
    }
}

/// Runs the counterexample-guided loop on `task`.
pub fn refine(task: &Task, options: &RefineOptions, progress: &dyn Progress) -> Result<Refinement> {
    if task.props.is_empty() {
        bail!("{}: no boxes to refine on", task.model_path.display());
    }
    let start = Instant::now();
    let net = &task.net;
    let layers = net.layers.len();
    let template = QuantConfig {
        weight_bits: vec![MAX_BITS; layers],
        act_bits: vec![MAX_BITS; layers - 1],
        input_bits: MAX_BITS,
        per_channel: false,
        uniform_input: options.uniform_input,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.seed);
    // Boxes the float decision boundary crosses admit no equivalent quantized network.
    let mut excluded = Vec::new();
    let mut props = Vec::new();
    for p in &task.props {
        match verify::float_class_change(net, p, &options.verify) {
            Some(x) => excluded.push(ExcludedBox::new(net, &options.verify, p, &x)),
            None => props.push(p.clone()),
        }
    }
    let mut points: Vec<Vec<f64>> = Vec::new();
    if options.search == Search::Descent {
        let widest = task.quantize(&template)?;
        let mut kept = Vec::new();
        for p in props {
            let samples = p.sample_points(0, 16, SCREEN_SAMPLES_PER_BOX, &mut rng);
            // A box where even the widest configuration disagrees somewhere cannot be proved
            // at any width.
            match samples.iter().find(|x| {
                verify::violates(&task.net, Quantized::Integer(&widest), x, &options.verify)
            }) {
                Some(x) => excluded.push(ExcludedBox::new(net, &options.verify, &p, x)),
                None => {
                    points.extend(samples);
                    kept.push(p);
                }
            }
        }
        props = kept;
    } else {
        points = props.iter().map(|p| p.x.clone()).collect();
    }
    let mut screen = Screen {
        task,
        options: &options.verify,
        points,
        rejected: HashSet::new(),
        evaluations: 0,
        template: template.clone(),
    };
    // Genes: weight bits per layer, hidden activation bits, input bits, per-channel (0/1).
    let per_channel_choices: Vec<u32> = match options.per_channel {
        Some(forced) => vec![forced as u32],
        None => vec![0, 1],
    };

    let mut rounds = Vec::new();
    let mut counterexamples = Vec::new();
    let mut verifier_calls = 0;
    let mut attacks = 0;
    let mut refuted_rounds = 0;
    let mut refuted_in_a_row: std::collections::HashMap<String, usize> = Default::default();
    let mut last: Option<(QuantConfig, Vec<BoxVerdict>)> = None;
    // A configuration proved on every box after widening, which the default strategy then
    // tries to lower one width at a time (each lowering proved before it is kept).
    let mut proved_widened: Option<(Vec<u32>, QuantConfig, Vec<BoxVerdict>)> = None;
    let mut longest_round = 0.0f64;
    let mut verified = false;
    let stop_reason;
    loop {
        if rounds.len() >= options.max_rounds {
            stop_reason = format!("--max-rounds {} reached", options.max_rounds);
            break;
        }
        if start.elapsed() >= options.time_limit {
            stop_reason = format!("--time-limit {} s reached", options.time_limit.as_secs());
            break;
        }
        if proved_widened.is_some()
            && start.elapsed().as_secs_f64() + longest_round > options.time_limit.as_secs_f64()
        {
            stop_reason = format!(
                "every box proved; lowering its widths stopped: another round would pass --time-limit {} s",
                options.time_limit.as_secs()
            );
            break;
        }
        let round_start = Instant::now();
        let proposal = match (&proved_widened, options.search) {
            (Some((best, _, _)), _) => {
                let Some(lower) = lower_one_width(&mut screen, best) else {
                    stop_reason = "every box proved; no width of it can be lowered further".into();
                    break;
                };
                Some(lower)
            }
            (None, Search::Descent) => {
                let found: Vec<Vec<u32>> = per_channel_choices
                    .iter()
                    .filter_map(|pc| {
                        let mut top = vec![MAX_BITS; 2 * layers];
                        top.push(*pc);
                        descend(&mut screen, &top, layers)
                    })
                    .collect();
                found.into_iter().min_by_key(|g| screen.storage(g).key())
            }
            // A restart may end on an inconsistent configuration; a few more restarts are
            // part of the same round.
            (None, Search::Genetic) => {
                (0..GA_RESTARTS).find_map(|_| evolve(&mut screen, &per_channel_choices, &mut rng))
            }
        };
        if props.is_empty() {
            stop_reason = "no box left to prove".into();
            break;
        }
        let Some(mut genes) = proposal else {
            // Points that no configuration, not even the widest, gets right (found during
            // the refinement: the float class changes there, or the margin is below 16-bit
            // resolution): the boxes holding them cannot be proved; exclude them and go on.
            let blocked = blocking_points(&mut screen, &per_channel_choices, layers);
            if !blocked.is_empty() {
                props.retain(|p| match blocked.iter().find(|x| p.contains_point(x)) {
                    Some(x) => {
                        excluded.push(ExcludedBox::new(net, &options.verify, p, x));
                        false
                    }
                    None => true,
                });
                screen.points.retain(|x| !blocked.contains(x));
                continue;
            }
            stop_reason = match options.search {
                Search::Descent => "no configuration up to 16 bits classifies every screened point like the float network",
                Search::Genetic => "the evolutionary search found no configuration consistent with the counterexamples",
            }
            .into();
            break;
        };
        let mut widened_by = 0;
        if options.search == Search::Descent && proved_widened.is_none() {
            let step = (refuted_rounds / WIDEN_AFTER_REFUTED_ROUNDS) as u32;
            (genes, widened_by) = widen(&mut screen, genes, step);
        }
        let config = screen.config(&genes);
        let round = rounds.len() + 1;
        let int_net = task.quantize(&config)?;
        if options.search == Search::Descent && attacks < MAX_ATTACK_ROUNDS {
            // Screen by attack before any proof: counterexamples found this way cost no
            // verifier call; the next proposal accounts for them.
            let found: Vec<(String, verify::Counterexample)> = props
                .iter()
                .filter_map(|p| {
                    verify::search_counterexample(
                        net,
                        Quantized::Integer(&int_net),
                        task.reference.as_ref(),
                        p,
                        &options.verify,
                    )
                    .filter(|ce| ce.reproduces_in_f32)
                    .map(|ce| (p.id.clone(), ce))
                })
                .collect();
            if !found.is_empty() {
                attacks += 1;
                for (id, ce) in found {
                    screen
                        .points
                        .push(ce.input.iter().map(|v| *v as f64).collect());
                    counterexamples.push(FoundCounterexample {
                        round,
                        box_id: id,
                        input: ce.input,
                        float_class: ce.float_class,
                        quantized_class: ce.quantized_class,
                    });
                }
                screen.rejected.insert(genes);
                continue;
            }
        }
        progress.round(round, &config, props.len());
        let quantized = Quantized::Integer(&int_net);
        let reference = task.reference.as_ref();
        let done = |v: &BoxVerdict| progress.proof(v);
        let verdicts = match options.search {
            // Boxes inside other boxes are verified after them, and only when the enclosing
            // verdict does not decide them.
            Search::Descent => {
                let (verdicts, calls) = verify::verify_nested_boxes(
                    net,
                    quantized,
                    reference,
                    &props,
                    &options.verify,
                    options.jobs,
                    &done,
                );
                verifier_calls += calls;
                verdicts
            }
            // The artifact verifies every property in every round.
            Search::Genetic => {
                let verdicts = verify::verify_boxes_with(
                    net,
                    quantized,
                    reference,
                    &props,
                    &options.verify,
                    options.jobs,
                    &done,
                );
                verifier_calls += verdicts.len();
                verdicts
            }
        };
        let count = |s: Status| verdicts.iter().filter(|v| v.status == s).count();
        longest_round = longest_round.max(round_start.elapsed().as_secs_f64());
        rounds.push(Round {
            weight_bits: config.weight_bits.clone(),
            activation_bits: config.act_bits.clone(),
            input_bits: config.input_bits,
            weight_storage_bits: screen.storage(&genes).weight_storage_bits,
            proved: count(Status::Proved),
            counterexample: count(Status::Counterexample),
            unknown: count(Status::Unknown),
            seconds: round_start.elapsed().as_secs_f64(),
            widened_by,
        });
        for v in &verdicts {
            if let Some(ce) = &v.counterexample {
                counterexamples.push(FoundCounterexample {
                    round,
                    box_id: v.id.clone(),
                    input: ce.input.clone(),
                    float_class: ce.float_class,
                    quantized_class: ce.quantized_class,
                });
                screen
                    .points
                    .push(ce.input.iter().map(|v| *v as f64).collect());
            }
        }
        let all_proved = count(Status::Proved) == verdicts.len();
        if options.search == Search::Descent && proved_widened.is_none() && !all_proved {
            for v in &verdicts {
                if v.status == Status::Counterexample {
                    *refuted_in_a_row.entry(v.id.clone()).or_insert(0) += 1;
                } else {
                    refuted_in_a_row.remove(&v.id);
                }
            }
            let stubborn: Vec<String> = refuted_in_a_row
                .iter()
                .filter(|(_, n)| **n >= STUBBORN_BOX_ROUNDS)
                .map(|(id, _)| id.clone())
                .collect();
            let mut dropped = false;
            for id in stubborn {
                refuted_in_a_row.remove(&id);
                let Some(p) = props.iter().find(|p| p.id == id) else {
                    continue;
                };
                verifier_calls += per_channel_choices.len();
                if let Some(x) =
                    refuted_at_widest(&screen, p, &per_channel_choices, layers, options)
                {
                    excluded.push(ExcludedBox::new(net, &options.verify, p, &x));
                    props.retain(|q| q.id != id);
                    dropped = true;
                }
            }
            if dropped {
                // The refutations were the excluded box's: widen from scratch.
                refuted_rounds = 0;
            }
        }
        if all_proved {
            verified = true;
            // A widened (or already lowered) configuration: try lowering it, keeping it as
            // the result until a lower one is proved.
            if widened_by > 0 || proved_widened.is_some() {
                proved_widened = Some((genes, config, verdicts));
                continue;
            }
            last = Some((config, verdicts));
            stop_reason = "every box proved".into();
            break;
        }
        last = Some((config, verdicts));
        screen.rejected.insert(genes);
        refuted_rounds += 1;
    }
    if let Some((_, config, verdicts)) = proved_widened {
        last = Some((config, verdicts));
    }
    let storage = last.as_ref().map(|(c, _)| Storage::of(net, c));
    let (config, boxes) = match last {
        Some((c, b)) => (Some(c), b),
        None => (None, Vec::new()),
    };
    Ok(Refinement {
        excluded,
        config,
        verified,
        storage,
        boxes,
        rounds,
        counterexamples,
        verifier_calls,
        screened: screen.evaluations,
        seconds: start.elapsed().as_secs_f64(),
        stop_reason,
    })
}

/// The integer networks at the widest configurations: 16 bits, each per-channel choice.
fn widest_networks(screen: &Screen, per_channel: &[u32], layers: usize) -> Vec<IntNetwork> {
    per_channel
        .iter()
        .filter_map(|pc| {
            let mut top = vec![MAX_BITS; 2 * layers];
            top.push(*pc);
            screen.task.quantize(&screen.config(&top)).ok()
        })
        .collect()
}

/// A counterexample on `prop` at every widest configuration, if each has one; `None` as soon
/// as one of them is not refuted.
fn refuted_at_widest(
    screen: &Screen,
    prop: &Property,
    per_channel: &[u32],
    layers: usize,
    options: &RefineOptions,
) -> Option<Vec<f64>> {
    let task = screen.task;
    let mut witness = None;
    for int_net in widest_networks(screen, per_channel, layers) {
        let verdict = verify::verify_box(
            &task.net,
            Quantized::Integer(&int_net),
            task.reference.as_ref(),
            prop,
            &options.verify,
        );
        let ce = verdict.counterexample.filter(|c| c.reproduces_in_f32)?;
        witness.get_or_insert(ce.input.iter().map(|v| *v as f64).collect());
    }
    witness
}

/// The screen points that every widest configuration (16 bits, each per-channel choice) gets
/// wrong.
fn blocking_points(screen: &mut Screen, per_channel: &[u32], layers: usize) -> Vec<Vec<f64>> {
    let widest = widest_networks(screen, per_channel, layers);
    screen
        .points
        .iter()
        .filter(|x| {
            widest.iter().all(|int_net| {
                verify::violates(
                    &screen.task.net,
                    Quantized::Integer(int_net),
                    x,
                    screen.options,
                )
            })
        })
        .cloned()
        .collect()
}

/// `best` with one width lowered by a bit: the width that saves the most storage first, among
/// those that pass the screen and were not refuted before; `None` if none qualifies.
fn lower_one_width(screen: &mut Screen, best: &[u32]) -> Option<Vec<u32>> {
    let widths = best.len() - 1;
    let mut order: Vec<usize> = (0..widths).filter(|g| best[*g] > MIN_BITS).collect();
    order.sort_by_key(|g| {
        let mut lower = best.to_vec();
        lower[*g] -= 1;
        screen.storage(&lower).key()
    });
    order.into_iter().find_map(|g| {
        let mut lower = best.to_vec();
        lower[g] -= 1;
        screen.passes(&lower).then_some(lower)
    })
}

/// `genes` with at least `step` bits added to every width (capped at 16): the first such
/// widening that passes the screen and was not refuted before, with the bits added; `genes`
/// itself (and 0) when `step` is 0 or no widening qualifies.
fn widen(screen: &mut Screen, genes: Vec<u32>, step: u32) -> (Vec<u32>, u32) {
    if step == 0 {
        return (genes, 0);
    }
    let widths = genes.len() - 1;
    for extra in step..=MAX_BITS - MIN_BITS {
        let mut wider = genes.clone();
        for g in &mut wider[..widths] {
            *g = (*g + extra).min(MAX_BITS);
        }
        if !screen.rejected.contains(&wider) && screen.passes(&wider) {
            return (wider, extra);
        }
        if wider[..widths].iter().all(|g| *g == MAX_BITS) {
            break;
        }
    }
    (genes, 0)
}

/// Lowers one width at a time by bisection, sweeping until nothing moves, then trades one bit
/// between two widths while that lowers the storage. The weight widths are tried in several
/// orders (each order can end in a different local minimum); the smallest result wins. `None`
/// if `top` itself fails the screen.
fn descend(screen: &mut Screen, top: &[u32], layers: usize) -> Option<Vec<u32>> {
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
        .map(|h| layers + h)
        .chain(std::iter::once(2 * layers - 1))
        .collect();
    let mut best: Option<Vec<u32>> = None;
    for rotation in 0..layers.min(DESCENT_ORDERS) {
        let mut order = by_size.clone();
        order.rotate_left(rotation);
        order.extend(&tail);
        let mut current = top.to_vec();
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
fn polish(screen: &mut Screen, current: &mut Vec<u32>, seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x0090_1154 ^ seed);
    let n = current.len() - 1;
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
fn trade_bits(screen: &mut Screen, current: &mut Vec<u32>) {
    let n = current.len() - 1;
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
fn evolve(screen: &mut Screen, per_channel: &[u32], rng: &mut impl Rng) -> Option<Vec<u32>> {
    // Bit genes, then the per-channel gene.
    let n = screen.template.weight_bits.len() * 2 + 1;
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
    let mut parent: Vec<u32> = (0..n).map(|g| draw(rng, g)).collect();
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

/// One point of the uniform-quantization curve: every layer at `weight_bits`.
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize)]
pub struct CurvePoint {
    /// The one weight width.
    pub weight_bits: u32,
    /// `sum_l weight_bits * |W_l|`.
    pub weight_storage_bits: u64,
    /// Test accuracy.
    pub accuracy: f64,
}

/// Test accuracy of uniform quantization at every weight width (activations and input as in
/// `config`): the curve the refined network is compared against.
pub fn uniform_curve(task: &Task, config: &QuantConfig, data: &Dataset) -> Result<Vec<CurvePoint>> {
    (MIN_BITS..=MAX_BITS)
        .map(|bits| {
            let uniform = QuantConfig {
                weight_bits: vec![bits; task.net.layers.len()],
                ..config.clone()
            };
            let int_net = task.quantize(&uniform)?;
            let correct = data
                .features
                .iter()
                .zip(&data.labels)
                .filter(|(x, label)| int_net.classify(x) == **label)
                .count();
            Ok(CurvePoint {
                weight_bits: bits,
                weight_storage_bits: Storage::of(&task.net, &uniform).weight_storage_bits,
                accuracy: correct as f64 / data.features.len().max(1) as f64,
            })
        })
        .collect()
}

/// Test accuracy of the float network, the refined network and the uniform baseline.
pub fn accuracy(task: &Task, config: &QuantConfig, data: &Dataset) -> Result<Accuracy> {
    let net = &task.net;
    let rate = |classify: &dyn Fn(&[f64]) -> usize| {
        let correct = data
            .features
            .iter()
            .zip(&data.labels)
            .filter(|(x, label)| classify(x) == **label)
            .count();
        correct as f64 / data.features.len().max(1) as f64
    };
    let refined = task.quantize(config)?;
    // The widest single weight width whose storage does not exceed the refined network's.
    let budget = Storage::of(net, config).weight_storage_bits;
    let params: u64 = net.layers.iter().map(|l| l.weights.len() as u64).sum();
    let uniform_bits = ((budget / params.max(1)) as u32).clamp(MIN_BITS, MAX_BITS);
    let uniform_config = QuantConfig {
        weight_bits: vec![uniform_bits; net.layers.len()],
        ..config.clone()
    };
    let uniform = task.quantize(&uniform_config)?;
    Ok(Accuracy {
        float: rate(&|x| net.classify(x)),
        quantized: rate(&|x| refined.classify(x)),
        uniform_baseline: rate(&|x| uniform.classify(x)),
        uniform_bits,
    })
}
