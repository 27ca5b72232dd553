//! CEG4N refinement: the smallest bit-widths whose integer network is *proved* to pick the
//! float network's class on every box, and agrees with it on the user's data.
//!
//! A round proposes a configuration that every point of the screen set (box centres, every
//! counterexample found so far, and for the default strategy also sampled in-box points)
//! classifies like the float network, and that agrees with it on at least `min_agreement` of
//! the data rows (the fidelity floor), then verifies every box at exactly that configuration.
//! Replayed counterexamples join the screen set; a configuration that failed is never proposed
//! again.
//!
//! Strategies: `Descent` (default) first proves a conventional anchor (8-bit weights and
//! activations, input wide enough for the floor) so that there is always a verified answer to
//! fall back on; then it bisects one width at a time, largest weight tensor first, from the
//! widest configuration, screens each proposal by attack before any proof, verifies nested
//! boxes outermost first, widens its proposals by a bit after every few refuted rounds, and
//! lowers the best proof one width at a time while time allows. A box the verifier cannot
//! decide at the anchor is reported `unknown` and left out of the claim. `Genetic` reproduces
//! the CEG4N artifact's (1+2) evolutionary search (1000 evaluations per round, restarted each
//! round, screened on centres and counterexamples only) for comparison.

mod metrics;
mod screen;
mod search;

pub use metrics::{accuracy, uniform_curve, Accuracy, CurvePoint, Storage};
pub use screen::{allowed_misses, SetAsideRow, SET_ASIDE_REASON};
pub use search::{ANCHOR_BITS, GA_EVALUATIONS};

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ceg4n_runtime::MAX_BITS;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::data::Property;
use crate::ir::Network;
use crate::quantize::QuantConfig;
use crate::task::Task;
use crate::verify::{self, BoxVerdict, Quantized, Status, VerifyOptions};
use screen::Screen;

/// How candidates are proposed (named `default` and `ga` on the command line and in reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Search {
    /// The anchor, then per-width descent over a screen set with sampled points (ours).
    #[serde(rename = "default")]
    Descent,
    /// The CEG4N artifact's (1+2) evolutionary algorithm.
    #[serde(rename = "ga")]
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
    /// The fidelity floor: the least fraction of the task's data rows on which the integer
    /// network must pick the float network's class (rows no 16-bit network matches are set
    /// aside and not counted). Ignored without data.
    pub min_agreement: f64,
}

/// The default fidelity floor.
pub const DEFAULT_MIN_AGREEMENT: f64 = 0.99;

/// Random in-box points per box added to the default strategy's screen set.
pub const SCREEN_SAMPLES_PER_BOX: usize = 64;

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
    pub reason: ExclusionReason,
}

/// Why no configuration up to 16 bits can be proved on a box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionReason {
    /// The float network's class changes inside the box (at the witness): no quantized
    /// network, constant on each input quantization cell, can be equivalent there.
    #[serde(alias = "the float decision boundary crosses the box")]
    FloatBoundary,
    /// Even the widest (16-bit) integer networks disagree with the float one at the witness.
    #[serde(
        alias = "even at 16 bits the integer network disagrees with the float one at the witness"
    )]
    WidestDisagrees,
}

impl std::fmt::Display for ExclusionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExclusionReason::FloatBoundary => f.write_str("the float decision boundary crosses the box"),
            ExclusionReason::WidestDisagrees => write!(
                f,
                "even at {MAX_BITS} bits the integer network disagrees with the float one at the witness"
            ),
        }
    }
}

impl ExcludedBox {
    /// The exclusion of `prop` with the witness `x`: the float class changes at `x`, or even
    /// the widest integer network disagrees with the float one there.
    pub(crate) fn new(
        net: &Network,
        options: &VerifyOptions,
        prop: &Property,
        x: &[f64],
    ) -> ExcludedBox {
        let centre_class = options.decision.pick(&net.logits(&prop.x));
        let witness_class = options.decision.pick(&net.logits(x));
        ExcludedBox {
            id: prop.id.clone(),
            centre_class,
            witness_class,
            witness: x.iter().map(|v| *v as f32).collect(),
            reason: if witness_class != centre_class {
                ExclusionReason::FloatBoundary
            } else {
                ExclusionReason::WidestDisagrees
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
    /// The reported configuration: the smallest one proved on every claimed box and meeting
    /// the fidelity floor, else the last candidate.
    pub config: Option<QuantConfig>,
    /// Whether every claimed box was proved at exactly `config` and the floor is met. Boxes
    /// not claimed: the excluded ones, and those the verifier could not decide at the anchor
    /// (`unknown` in `boxes`).
    pub verified: bool,
    /// Storage of `config`.
    pub storage: Option<Storage>,
    /// The verdicts at `config` (or at the last candidate), and the `unknown` verdicts of boxes
    /// left out of the claim.
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
    pub stop: StopReason,
    /// Data rows the fidelity floor does not count (no 16-bit network agrees there).
    pub rows_set_aside: Vec<SetAsideRow>,
}

/// Why the loop stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The first proposal of the search was proved on every claimed box.
    EveryBoxProved,
    /// Every claimed box proved; no width of the best proof can be lowered further.
    NothingLower,
    /// The time limit was reached (with or without a proved configuration).
    TimeLimit,
    /// The round limit was reached.
    MaxRounds,
    /// Every box was excluded or left undecided.
    NoBoxLeft,
    /// No configuration up to 16 bits classifies every screened point like the float network
    /// and meets the fidelity floor.
    NoConsistentConfiguration,
    /// The evolutionary search found no configuration consistent with the counterexamples.
    EvolutionFoundNothing,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::EveryBoxProved => "every box proved",
            StopReason::NothingLower => "every box proved; no width of it can be lowered further",
            StopReason::TimeLimit => "the time limit was reached",
            StopReason::MaxRounds => "the round limit was reached",
            StopReason::NoBoxLeft => "no box left to prove",
            StopReason::NoConsistentConfiguration => "no configuration up to 16 bits classifies every screened point like the float network and meets the fidelity floor",
            StopReason::EvolutionFoundNothing => "the evolutionary search found no configuration consistent with the counterexamples",
        })
    }
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

/// Where the default strategy's loop is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Proving a conventional configuration first, so that there is an answer to fall back on.
    Anchor,
    /// Proposing the smallest configuration the screen admits.
    Search,
    /// Lowering the best proved configuration one width at a time.
    Lowering,
}

/// A configuration proved on every claimed box.
struct Proved {
    genes: Vec<u32>,
    config: QuantConfig,
    verdicts: Vec<BoxVerdict>,
}

/// Runs the counterexample-guided loop on `task`.
pub fn refine(task: &Task, options: &RefineOptions, progress: &dyn Progress) -> Result<Refinement> {
    if task.props.is_empty() {
        bail!("{}: no boxes to refine on", task.model_path.display());
    }
    if !(0.0..=1.0).contains(&options.min_agreement) {
        bail!(
            "--min-agreement {} must lie between 0 and 1",
            options.min_agreement
        );
    }
    let start = Instant::now();
    // Every proof of the run ends by the time limit: a box cut short is unknown.
    let verify_options = VerifyOptions {
        deadline: Some(start + options.time_limit),
        ..options.verify.clone()
    };
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
    let changes = crate::parallel::map(&task.props, options.jobs, |p| {
        verify::float_class_change(net, p, &verify_options)
    });
    for (p, change) in task.props.iter().zip(changes) {
        match change {
            Some(x) => excluded.push(ExcludedBox::new(net, &verify_options, p, &x)),
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
                verify::violates(&task.net, Quantized::Integer(&widest), x, &verify_options)
            }) {
                Some(x) => excluded.push(ExcludedBox::new(net, &verify_options, &p, x)),
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
        options: &verify_options,
        points: Vec::new(),
        rows: Vec::new(),
        allowed_misses: 0,
        rejected: HashSet::new(),
        evaluations: 0,
        template: template.clone(),
    };
    for x in points {
        screen.add_point(x);
    }
    let per_channel_choices: Vec<u32> = match options.per_channel {
        Some(forced) => vec![forced as u32],
        None => vec![0, 1],
    };
    // The data rows join the screen: the fidelity floor is a constraint of the search.
    let rows_set_aside = match &task.data {
        Some(data) => screen.take_rows(&data.features, &per_channel_choices, options.min_agreement),
        None => Vec::new(),
    };

    let mut phase = match options.search {
        Search::Descent => Phase::Anchor,
        Search::Genetic => Phase::Search,
    };
    let mut rounds: Vec<Round> = Vec::new();
    let mut counterexamples = Vec::new();
    let mut verifier_calls = 0;
    let mut attacks = 0;
    let mut refuted_rounds = 0;
    let mut refuted_in_a_row: HashMap<String, usize> = HashMap::new();
    // The last candidate verified (reported when nothing is proved).
    let mut last: Option<(QuantConfig, Vec<BoxVerdict>)> = None;
    let mut best: Option<Proved> = None;
    // Boxes the verifier could not decide at the anchor: reported, not claimed.
    let mut unclaimed: Vec<BoxVerdict> = Vec::new();
    let mut longest_round = 0.0f64;
    let stop = loop {
        if rounds.len() >= options.max_rounds {
            break StopReason::MaxRounds;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let limit = options.time_limit.as_secs_f64();
        // With a proof in hand, a round that would likely pass the limit is not started.
        if elapsed >= limit || (best.is_some() && elapsed + longest_round > limit) {
            break StopReason::TimeLimit;
        }
        if props.is_empty() {
            break StopReason::NoBoxLeft;
        }
        let round_start = Instant::now();
        let proposal = match (phase, options.search) {
            (Phase::Anchor, _) => search::anchor(&mut screen, &per_channel_choices, layers),
            (Phase::Lowering, _) => {
                let best_genes = &best.as_ref().expect("lowering starts from a proof").genes;
                search::lower_one_width(&mut screen, best_genes)
            }
            (Phase::Search, Search::Descent) => {
                let found: Vec<Vec<u32>> = per_channel_choices
                    .iter()
                    .filter_map(|pc| {
                        let mut top = vec![MAX_BITS; 2 * layers];
                        top.push(*pc);
                        search::descend(&mut screen, &top, layers)
                    })
                    .collect();
                found.into_iter().min_by_key(|g| screen.storage(g).key())
            }
            // A restart may end on an inconsistent configuration; a few more restarts are
            // part of the same round.
            (Phase::Search, Search::Genetic) => (0..GA_RESTARTS)
                .find_map(|_| search::evolve(&mut screen, &per_channel_choices, &mut rng)),
        };
        let Some(mut genes) = proposal else {
            if phase == Phase::Lowering {
                break StopReason::NothingLower;
            }
            // Points that no configuration, not even the widest, gets right (found during
            // the refinement: the float class changes there, or the margin is below 16-bit
            // resolution): the boxes holding them cannot be proved; exclude them and go on.
            let blocked = screen.blocking_points(&per_channel_choices);
            if !blocked.is_empty() {
                props.retain(|p| match blocked.iter().find(|x| p.contains_point(x)) {
                    Some(x) => {
                        excluded.push(ExcludedBox::new(net, &verify_options, p, x));
                        false
                    }
                    None => true,
                });
                screen.points.retain(|p| !blocked.contains(&p.x));
                continue;
            }
            if best.is_some() {
                phase = Phase::Lowering;
                continue;
            }
            break match options.search {
                Search::Descent => StopReason::NoConsistentConfiguration,
                Search::Genetic => StopReason::EvolutionFoundNothing,
            };
        };
        let mut widened_by = 0;
        if options.search == Search::Descent && phase == Phase::Search {
            let step = (refuted_rounds / WIDEN_AFTER_REFUTED_ROUNDS) as u32;
            (genes, widened_by) = search::widen(&mut screen, genes, step);
            // Nothing smaller than the best proof: lower that one instead.
            if let Some(b) = &best {
                if screen.storage(&genes).key() >= screen.storage(&b.genes).key() {
                    phase = Phase::Lowering;
                    continue;
                }
            }
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
                        &verify_options,
                    )
                    .filter(|ce| ce.reproduces_in_f32)
                    .map(|ce| (p.id.clone(), ce))
                })
                .collect();
            if !found.is_empty() {
                attacks += 1;
                for (id, ce) in found {
                    screen.add_point(ce.input.iter().map(|v| *v as f64).collect());
                    counterexamples.push(FoundCounterexample::new(round, id, &ce));
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
                    &verify_options,
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
                    &verify_options,
                    options.jobs,
                    &done,
                );
                verifier_calls += verdicts.len();
                verdicts
            }
        };
        let count = |s: Status| verdicts.iter().filter(|v| v.status == s).count();
        // The anchor round predicts no later round: boxes it leaves undecided are not verified
        // again.
        if phase != Phase::Anchor {
            longest_round = longest_round.max(round_start.elapsed().as_secs_f64());
        }
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
                counterexamples.push(FoundCounterexample::new(round, v.id.clone(), ce));
                screen.add_point(ce.input.iter().map(|v| *v as f64).collect());
            }
        }
        let mut verdicts = verdicts;
        // Boxes cut short by the time limit were not given their time-out: they stay claimed.
        let cut_short = Instant::now() >= start + options.time_limit;
        if phase == Phase::Anchor && !cut_short {
            // A box the verifier cannot decide within its time-out at the conventional widths
            // is reported and left out of the claim; it does not hold the other boxes back.
            let (undecided, decided): (Vec<BoxVerdict>, Vec<BoxVerdict>) = verdicts
                .into_iter()
                .partition(|v| v.status == Status::Unknown);
            props.retain(|p| !undecided.iter().any(|v| v.id == p.id));
            unclaimed.extend(undecided);
            verdicts = decided;
        }
        let refuted = verdicts.iter().any(|v| v.status == Status::Counterexample);
        let all_proved = verdicts.iter().all(|v| v.status == Status::Proved);
        if options.search == Search::Descent && phase != Phase::Lowering && refuted {
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
                if let Some(x) = screen.refuted_at_widest(p, &per_channel_choices) {
                    excluded.push(ExcludedBox::new(net, &verify_options, p, &x));
                    props.retain(|q| q.id != id);
                    dropped = true;
                }
            }
            if dropped {
                // The refutations were the excluded box's: widen from scratch.
                refuted_rounds = 0;
            }
        }
        if all_proved && !verdicts.is_empty() {
            let smaller = best
                .as_ref()
                .is_none_or(|b| screen.storage(&genes).key() < screen.storage(&b.genes).key());
            if smaller {
                best = Some(Proved {
                    genes: genes.clone(),
                    config: config.clone(),
                    verdicts: verdicts.clone(),
                });
            }
            match phase {
                Phase::Anchor => phase = Phase::Search,
                // A widened proof may have slack: lower it one width at a time.
                Phase::Search if widened_by > 0 => phase = Phase::Lowering,
                Phase::Search => break StopReason::EveryBoxProved,
                Phase::Lowering => {}
            }
            continue;
        }
        last = Some((config, verdicts));
        screen.rejected.insert(genes);
        if phase == Phase::Search && refuted {
            refuted_rounds += 1;
        }
        // The search's proposal was too far from anything the verifier can decide in time:
        // approach it from the best proof instead, one width at a time.
        if phase == Phase::Search && !refuted && best.is_some() {
            phase = Phase::Lowering;
        }
    };
    let verified = best.is_some();
    let (config, mut boxes) = match (best, last) {
        (Some(b), _) => (Some(b.config), b.verdicts),
        (None, Some((c, v))) => (Some(c), v),
        (None, None) => (None, Vec::new()),
    };
    boxes.extend(unclaimed);
    boxes.sort_by_key(|v| task.props.iter().position(|p| p.id == v.id));
    let storage = config.as_ref().map(|c| Storage::of(net, c));
    // The floor was a constraint of the search; checked here once more on the result, so that
    // no report can say verified below it.
    let floor_met = match (&task.data, &config) {
        (Some(data), Some(c)) => {
            metrics::accuracy(
                task,
                c,
                data,
                options.min_agreement,
                &rows_set_aside,
                options.verify.decision,
            )?
            .floor_met
        }
        _ => true,
    };
    Ok(Refinement {
        excluded,
        config,
        verified: verified && floor_met,
        storage,
        boxes,
        rounds,
        counterexamples,
        verifier_calls,
        screened: screen.evaluations,
        seconds: start.elapsed().as_secs_f64(),
        stop,
        rows_set_aside,
    })
}

impl FoundCounterexample {
    fn new(round: usize, box_id: String, ce: &verify::Counterexample) -> FoundCounterexample {
        FoundCounterexample {
            round,
            box_id,
            input: ce.input.clone(),
            float_class: ce.float_class,
            quantized_class: ce.quantized_class,
        }
    }
}
