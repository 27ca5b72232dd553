//! The loop's state from round to round, and one round: propose, attack, verify, learn.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::error::Result;
use ceg4n_runtime::MAX_BITS;
use rand::SeedableRng;

use super::genes::Genes;
use super::metrics::{self, Storage};
use super::screen::{Screen, SetAsideRow};
use super::*;
use crate::data::Property;
use crate::int_model::IntNetwork;
use crate::quantize::QuantConfig;
use crate::task::Task;
use crate::verify::{self, BoxVerdict, Quantized, Status, VerifyOptions};

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
    genes: Genes,
    config: QuantConfig,
    verdicts: Vec<BoxVerdict>,
}

/// Everything the loop carries from round to round.
pub(super) struct LoopState<'a> {
    task: &'a Task,
    options: &'a RefineOptions,
    verify: &'a VerifyOptions,
    progress: &'a dyn Progress,
    start: Instant,
    rng: rand_chacha::ChaCha8Rng,
    screen: Screen<'a>,
    /// The per-channel gene's allowed values.
    per_channel: Vec<u32>,
    /// Boxes claimed: verified every round.
    props: Vec<Property>,
    excluded: Vec<ExcludedBox>,
    /// Boxes the verifier could not decide at the anchor: reported, not claimed.
    unclaimed: Vec<BoxVerdict>,
    rows_set_aside: Vec<SetAsideRow>,
    phase: Phase,
    /// The narrowest width the anchor may take: raised to 16 bits when boxes are undecided at
    /// a narrower anchor (the wider the integer network, the smaller its deviation from the
    /// float one, and the easier the proof).
    anchor_from: u32,
    /// Per box, the time a candidate round gives it: a few times what its proof took at the
    /// anchor. A candidate whose proof takes much longer than the widest configuration's is
    /// rejected as surely as by a counterexample, without spending the whole time-out.
    budgets: HashMap<String, Duration>,
    rounds: Vec<Round>,
    counterexamples: Vec<FoundCounterexample>,
    verifier_calls: usize,
    attacks: usize,
    refuted_rounds: usize,
    refuted_in_a_row: HashMap<String, usize>,
    /// The last candidate verified (reported when nothing is proved).
    last: Option<(QuantConfig, Vec<BoxVerdict>)>,
    best: Option<Proved>,
    longest_round: f64,
}

impl<'a> LoopState<'a> {
    /// Excludes the boxes no configuration can be proved on, and fills the screen (box
    /// points, and the data rows under the fidelity floor).
    pub(super) fn new(
        task: &'a Task,
        options: &'a RefineOptions,
        verify: &'a VerifyOptions,
        progress: &'a dyn Progress,
        start: Instant,
    ) -> Result<LoopState<'a>> {
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
        // Under epsilon-equivalence the class plays no part: no box is excluded for it.
        let top1 = verify.equivalence == verify::Equivalence::Top1;
        let changes = crate::parallel::map(&task.props, options.jobs, |p| {
            top1.then(|| verify::float_class_change(net, p, verify))
                .flatten()
        });
        for (p, change) in task.props.iter().zip(changes) {
            match change {
                Some(x) => excluded.push(ExcludedBox::new(net, verify, &task.calibration, p, &x)),
                None => props.push(p.clone()),
            }
        }
        let mut points: Vec<(Vec<f64>, String)> = Vec::new();
        if options.search == Search::Descent {
            let widest = task.quantize(&template)?;
            let mut kept = Vec::new();
            for p in props {
                let samples = p.sample_points(0, 16, SCREEN_SAMPLES_PER_BOX, &mut rng);
                // A box where even the widest configuration disagrees somewhere cannot be
                // proved at any width.
                match samples.iter().find(|x| {
                    task.compare(Quantized::Integer(&widest), verify)
                        .violates(x)
                }) {
                    Some(x) => {
                        excluded.push(ExcludedBox::new(net, verify, &task.calibration, &p, x))
                    }
                    None => {
                        points.extend(samples.into_iter().map(|x| (x, p.id.clone())));
                        kept.push(p);
                    }
                }
            }
            props = kept;
        } else {
            points = props.iter().map(|p| (p.x.clone(), p.id.clone())).collect();
        }
        let mut screen = Screen {
            task,
            options: verify,
            points: Vec::new(),
            rows: Vec::new(),
            allowed_misses: 0,
            rejected: HashSet::new(),
            ceiling: None,
            evaluations: 0,
            template,
        };
        for (x, owner) in points {
            screen.add_point(x, &owner);
        }
        let per_channel: Vec<u32> = match options.per_channel {
            Some(forced) => vec![forced as u32],
            None => vec![0, 1],
        };
        // The data rows join the screen: the fidelity floor is a constraint of the search.
        let rows_set_aside = match &task.data {
            Some(data) => screen.take_rows(&data.features, &per_channel, options.min_agreement),
            None => Vec::new(),
        };
        Ok(LoopState {
            task,
            options,
            verify,
            progress,
            start,
            rng,
            screen,
            per_channel,
            props,
            excluded,
            unclaimed: Vec::new(),
            rows_set_aside,
            phase: match options.search {
                Search::Descent => Phase::Anchor,
                Search::Genetic => Phase::Search,
            },
            // Under ε-equivalence the deviation, which shrinks with every bit, is what is
            // proved: a narrow anchor leaves most boxes undecided after their whole time-out
            // (ACAS Xu 1_1, ε 0.05: 13 of 24 at 10 bits, 429 s) before the widest is tried.
            anchor_from: if verify.equivalence == verify::Equivalence::Top1 {
                ANCHOR_BITS
            } else {
                MAX_BITS
            },
            budgets: HashMap::new(),
            rounds: Vec::new(),
            counterexamples: Vec::new(),
            verifier_calls: 0,
            attacks: 0,
            refuted_rounds: 0,
            refuted_in_a_row: HashMap::new(),
            last: None,
            best: None,
            longest_round: 0.0,
        })
    }

    fn layers(&self) -> usize {
        self.task.net.layers.len()
    }

    /// Rounds until a stop reason.
    pub(super) fn run(&mut self) -> Result<StopReason> {
        loop {
            if self.rounds.len() >= self.options.max_rounds {
                return Ok(StopReason::MaxRounds);
            }
            let elapsed = self.start.elapsed().as_secs_f64();
            let limit = self.options.time_limit.as_secs_f64();
            // With a proof in hand, a round that would likely pass the limit is not started.
            if elapsed >= limit || (self.best.is_some() && elapsed + self.longest_round > limit) {
                return Ok(StopReason::TimeLimit);
            }
            if self.props.is_empty() {
                return Ok(StopReason::NoBoxLeft);
            }
            let round_start = Instant::now();
            let proposed = self.propose();
            // The search itself can take seconds; it stops at the limit, and so does the run.
            if self.start.elapsed() >= self.options.time_limit {
                return Ok(StopReason::TimeLimit);
            }
            let Some(genes) = proposed else {
                if self.phase == Phase::Lowering {
                    return Ok(StopReason::NothingLower);
                }
                if self.exclude_blocked() {
                    continue;
                }
                if self.best.is_some() {
                    self.phase = Phase::Lowering;
                    continue;
                }
                return Ok(match self.options.search {
                    Search::Descent => StopReason::NoConsistentConfiguration,
                    Search::Genetic => StopReason::EvolutionFoundNothing,
                });
            };
            let (genes, widened_by) = self.widen(genes);
            // Nothing smaller than the best proof: lower that one instead.
            if self.phase == Phase::Search && self.no_smaller_than_best(&genes) {
                self.phase = Phase::Lowering;
                continue;
            }
            if let Some(stop) = self.round(genes, widened_by, round_start)? {
                return Ok(stop);
            }
        }
    }

    /// The next candidate of the current phase.
    fn propose(&mut self) -> Option<Genes> {
        let layers = self.layers();
        match (self.phase, self.options.search) {
            (Phase::Anchor, _) => search::anchor(
                &mut self.screen,
                &self.per_channel,
                layers,
                self.anchor_from,
            ),
            (Phase::Lowering, _) => {
                let best = &self
                    .best
                    .as_ref()
                    .expect("lowering starts from a proof")
                    .genes;
                search::lower_one_width(&mut self.screen, best)
            }
            (Phase::Search, Search::Descent) => {
                let found: Vec<Genes> = self
                    .per_channel
                    .iter()
                    .filter_map(|pc| {
                        let top = self.screen.top(*pc);
                        search::descend(&mut self.screen, &top, layers)
                    })
                    .collect();
                found
                    .into_iter()
                    .min_by_key(|g| self.screen.storage(g).key())
            }
            // A restart may end on an inconsistent configuration; a few more restarts are
            // part of the same round.
            (Phase::Search, Search::Genetic) => (0..GA_RESTARTS)
                .find_map(|_| search::evolve(&mut self.screen, &self.per_channel, &mut self.rng)),
        }
    }

    /// Points that no configuration, not even the widest, gets right (found during the
    /// refinement: the float class changes there, or the margin is below 16-bit resolution):
    /// the boxes holding them cannot be proved; excludes them. Whether any was found.
    fn exclude_blocked(&mut self) -> bool {
        let blocked = self.screen.blocking_points(&self.per_channel);
        if blocked.is_empty() {
            return false;
        }
        // Each blocked point lies in the box it was drawn from, so that box is excluded and
        // its points (the blocked ones among them) leave the screen.
        let hits: Vec<(String, Vec<f64>)> = self
            .props
            .iter()
            .filter_map(|p| {
                let x = blocked.iter().find(|x| p.contains_point(x))?;
                Some((p.id.clone(), x.clone()))
            })
            .collect();
        for (id, x) in hits {
            self.exclude(&id, &x);
        }
        true
    }

    /// Leaves box `id` out of the claim with the witness `x` (no width up to 16 bits can be
    /// proved there): it is recorded as excluded, and its screen points constrain nothing more.
    fn exclude(&mut self, id: &str, x: &[f64]) {
        let Some(prop) = self.props.iter().find(|p| p.id == id) else {
            return;
        };
        self.excluded.push(ExcludedBox::new(
            &self.task.net,
            self.verify,
            &self.task.calibration,
            prop,
            x,
        ));
        self.props.retain(|p| p.id != id);
        self.refuted_in_a_row.remove(id);
        self.screen.drop_box(id);
    }

    /// After every few refuted rounds the default search's proposals get a bit more per width.
    fn widen(&mut self, genes: Genes) -> (Genes, u32) {
        if self.options.search == Search::Descent && self.phase == Phase::Search {
            let step = (self.refuted_rounds / WIDEN_AFTER_REFUTED_ROUNDS) as u32;
            search::widen(&mut self.screen, genes, step)
        } else {
            (genes, 0)
        }
    }

    fn no_smaller_than_best(&self, genes: &[u32]) -> bool {
        self.best.as_ref().is_some_and(|b| {
            self.screen.storage(genes).key() >= self.screen.storage(&b.genes).key()
        })
    }

    /// Attacks the candidate on every claimed box without the solver; counterexamples found
    /// join the screen and reject the candidate. Whether any was found.
    fn refuted_by_attack(&mut self, genes: &Genes, int_net: &IntNetwork, round: usize) -> bool {
        if self.options.search != Search::Descent || self.attacks >= MAX_ATTACK_ROUNDS {
            return false;
        }
        let task = self.task;
        let found: Vec<(String, verify::Counterexample)> = self
            .props
            .iter()
            .filter_map(|p| {
                task.compare(Quantized::Integer(int_net), self.verify)
                    .search_counterexample(p)
                    .filter(|ce| ce.reproduces_in_f32)
                    .map(|ce| (p.id.clone(), ce))
            })
            .collect();
        if found.is_empty() {
            return false;
        }
        self.attacks += 1;
        for (id, ce) in found {
            self.learn(round, &id, &ce);
        }
        self.screen.rejected.insert(genes.clone());
        true
    }

    /// A replayed counterexample of box `id`: recorded, and a point of the screen, unless the
    /// float class there differs from the box centre's: then the float decision boundary
    /// crosses the box, which is excluded with that witness (no width can be proved there, and
    /// its points would only push every width up).
    fn learn(&mut self, round: usize, id: &str, ce: &verify::Counterexample) {
        self.counterexamples
            .push(FoundCounterexample::new(round, id.to_string(), ce));
        let x: Vec<f64> = ce.input.iter().map(|v| *v as f64).collect();
        let Some(prop) = self.props.iter().find(|p| p.id == id) else {
            return;
        };
        let net = &self.task.net;
        let decision = self.verify.decision;
        let top1 = self.verify.equivalence == verify::Equivalence::Top1;
        if top1 && decision.pick(&net.logits(&x)) != decision.pick(&net.logits(&prop.x)) {
            self.exclude(id, &x);
        } else {
            self.screen.add_point(x, id);
        }
    }

    /// Verifies every claimed box at the candidate (nested boxes outermost first for the
    /// default search; every box for the artifact's).
    fn verify_claimed(&mut self, int_net: &IntNetwork) -> Vec<BoxVerdict> {
        let task = self.task;
        let options = VerifyOptions {
            budgets: self.budgets.clone(),
            ..self.verify.clone()
        };
        let comparison = task.compare(Quantized::Integer(int_net), &options);
        let progress = self.progress;
        let done = |v: &BoxVerdict| progress.proof(v);
        let jobs = self.options.jobs;
        match self.options.search {
            Search::Descent => {
                let (verdicts, calls) = comparison.verify_nested_boxes(&self.props, jobs, &done);
                self.verifier_calls += calls;
                verdicts
            }
            Search::Genetic => {
                let verdicts = comparison.verify_boxes_with(&self.props, jobs, &done);
                self.verifier_calls += verdicts.len();
                verdicts
            }
        }
    }

    /// Boxes refuted several rounds in a row are verified at the widest configurations;
    /// refuted there too, they are excluded.
    fn exclude_stubborn(&mut self, verdicts: &[BoxVerdict]) {
        for v in verdicts {
            if v.status == Status::Counterexample {
                *self.refuted_in_a_row.entry(v.id.clone()).or_insert(0) += 1;
            } else {
                self.refuted_in_a_row.remove(&v.id);
            }
        }
        let stubborn: Vec<String> = self
            .refuted_in_a_row
            .iter()
            .filter(|(_, n)| **n >= STUBBORN_BOX_ROUNDS)
            .map(|(id, _)| id.clone())
            .collect();
        let mut dropped = false;
        for id in stubborn {
            self.refuted_in_a_row.remove(&id);
            let Some(p) = self.props.iter().find(|p| p.id == id) else {
                continue;
            };
            self.verifier_calls += self.per_channel.len();
            if let Some(x) = self.screen.refuted_at_widest(p, &self.per_channel) {
                self.exclude(&id, &x);
                dropped = true;
            }
        }
        if dropped {
            // The refutations were the excluded box's: widen from scratch.
            self.refuted_rounds = 0;
        }
    }

    /// One round at `genes`: attack, verify, learn. A stop reason when the loop is done.
    fn round(
        &mut self,
        genes: Genes,
        widened_by: u32,
        round_start: Instant,
    ) -> Result<Option<StopReason>> {
        let config = self.screen.config(&genes);
        let round = self.rounds.len() + 1;
        let int_net = self.task.quantize(&config)?;
        // Screen by attack before any proof: counterexamples found this way cost no verifier
        // call; the next proposal accounts for them.
        if self.refuted_by_attack(&genes, &int_net, round) {
            return Ok(None);
        }
        self.progress.round(round, &config, self.props.len());
        let verdicts = self.verify_claimed(&int_net);
        let count =
            |verdicts: &[BoxVerdict], s: Status| verdicts.iter().filter(|v| v.status == s).count();
        // The anchor round predicts no later round: boxes it leaves undecided are not
        // verified again.
        if self.phase != Phase::Anchor {
            self.longest_round = self.longest_round.max(round_start.elapsed().as_secs_f64());
        }
        self.rounds.push(Round {
            weight_bits: config.weight_bits.clone(),
            activation_bits: config.act_bits.clone(),
            input_bits: config.input_bits,
            weight_storage_bits: self.screen.storage(&genes).weight_storage_bits,
            proved: count(&verdicts, Status::Proved),
            counterexample: count(&verdicts, Status::Counterexample),
            unknown: count(&verdicts, Status::Unknown),
            seconds: round_start.elapsed().as_secs_f64(),
            widened_by,
        });
        for v in &verdicts {
            if let Some(ce) = &v.counterexample {
                self.learn(round, &v.id, ce);
            }
        }
        // Verdicts of boxes excluded just now decide nothing.
        let verdicts: Vec<BoxVerdict> = verdicts
            .into_iter()
            .filter(|v| !self.excluded.iter().any(|e| e.id == v.id))
            .collect();
        let mut verdicts = verdicts;
        // Boxes cut short by the time limit were not given their time-out: they stay claimed.
        let cut_short = Instant::now() >= self.start + self.options.time_limit;
        let undecided = verdicts.iter().any(|v| v.status == Status::Unknown);
        if self.phase == Phase::Anchor && !cut_short && undecided && self.anchor_from < MAX_BITS {
            // Before boxes are left out, the widest anchor: it is the easiest to prove.
            self.anchor_from = MAX_BITS;
            self.last = Some((config, verdicts));
            self.screen.rejected.insert(genes);
            return Ok(None);
        }
        if self.phase == Phase::Anchor && !cut_short {
            // A box the verifier cannot decide within its time-out even at 16 bits is
            // reported and left out of the claim; it does not hold the other boxes back.
            let (undecided, decided): (Vec<BoxVerdict>, Vec<BoxVerdict>) = verdicts
                .into_iter()
                .partition(|v| v.status == Status::Unknown);
            self.props
                .retain(|p| !undecided.iter().any(|v| v.id == p.id));
            self.unclaimed.extend(undecided);
            verdicts = decided;
        }
        let refuted = verdicts.iter().any(|v| v.status == Status::Counterexample);
        let all_proved = verdicts.iter().all(|v| v.status == Status::Proved);
        if self.options.search == Search::Descent && self.phase != Phase::Lowering && refuted {
            self.exclude_stubborn(&verdicts);
        }
        if all_proved && !verdicts.is_empty() {
            if !self.no_smaller_than_best(&genes) {
                self.best = Some(Proved {
                    genes,
                    config,
                    verdicts,
                });
            }
            match self.phase {
                Phase::Anchor => {
                    if let Some(best) = &self.best {
                        self.budgets = best
                            .verdicts
                            .iter()
                            .map(|v| (v.id.clone(), candidate_budget(v.seconds)))
                            .collect();
                    }
                    // Nothing wider than the proved anchor is needed anywhere.
                    self.screen.ceiling = self.best.as_ref().map(|b| b.genes.widths().to_vec());
                    self.phase = Phase::Search;
                }
                // A widened proof may have slack: lower it one width at a time.
                Phase::Search if widened_by > 0 => self.phase = Phase::Lowering,
                Phase::Search => return Ok(Some(StopReason::EveryBoxProved)),
                Phase::Lowering => {}
            }
            return Ok(None);
        }
        self.last = Some((config, verdicts));
        self.screen.rejected.insert(genes);
        if self.phase == Phase::Search && refuted {
            self.refuted_rounds += 1;
        }
        // The search's proposal was too far from anything the verifier can decide in time:
        // approach it from the best proof instead, one width at a time.
        if self.phase == Phase::Search && !refuted && self.best.is_some() {
            self.phase = Phase::Lowering;
        }
        Ok(None)
    }

    /// The outcome: the best proof (or the last candidate), with every unclaimed verdict.
    pub(super) fn finish(self, stop: StopReason) -> Result<Refinement> {
        let task = self.task;
        let verified = self.best.is_some();
        let (config, mut boxes) = match (self.best, self.last) {
            (Some(b), _) => (Some(b.config), b.verdicts),
            (None, Some((c, v))) => (Some(c), v),
            (None, None) => (None, Vec::new()),
        };
        boxes.extend(self.unclaimed);
        boxes.sort_by_key(|v| task.props.iter().position(|p| p.id == v.id));
        let storage = config.as_ref().map(|c| Storage::of(&task.net, c));
        // The floor was a constraint of the search; checked here once more on the result, so
        // that no report can say verified below it.
        let accuracy = match (&task.data, &config) {
            (Some(data), Some(c)) => Some(metrics::accuracy(
                task,
                c,
                data,
                self.options.min_agreement,
                &self.rows_set_aside,
                self.options.verify.decision,
            )?),
            _ => None,
        };
        let floor_met = accuracy.is_none_or(|a| a.floor_met);
        Ok(Refinement {
            excluded: self.excluded,
            config,
            verified: verified && floor_met,
            storage,
            boxes,
            rounds: self.rounds,
            counterexamples: self.counterexamples,
            verifier_calls: self.verifier_calls,
            screened: self.screen.evaluations,
            seconds: self.start.elapsed().as_secs_f64(),
            stop,
            rows_set_aside: self.rows_set_aside,
            accuracy,
        })
    }
}

/// A candidate's time for a box proved at the anchor in `anchor_seconds`.
fn candidate_budget(anchor_seconds: f64) -> Duration {
    Duration::from_secs_f64((CANDIDATE_BUDGET_FACTOR * anchor_seconds).max(MIN_CANDIDATE_BUDGET))
}

/// How many times its anchor proof's time a candidate gives a box.
const CANDIDATE_BUDGET_FACTOR: f64 = 4.0;

/// The least time a candidate gives a box, in seconds (proofs at the anchor often take
/// milliseconds; a narrower candidate's proof legitimately takes longer).
const MIN_CANDIDATE_BUDGET: f64 = 5.0;
