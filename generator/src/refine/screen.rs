//! The host-side screen: points every candidate configuration must classify like the float
//! network (box centres, sampled in-box points, counterexamples) and the user's data rows, of
//! which all but a few (the fidelity floor's allowance) must agree.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::genes::Genes;
use super::metrics::Storage;
use crate::data::Property;
use crate::int_model::IntNetwork;
use crate::quantize::QuantConfig;
use crate::task::Task;
use crate::verify::{self, Quantized, VerifyOptions};

/// A point with the float network's logits there (computed once, checked thousands of times).
pub(super) struct ScreenPoint {
    pub x: Vec<f64>,
    float_logits: Vec<f64>,
    /// The box the point was drawn from or refutes (none for data rows).
    pub owner: Option<String>,
}

impl ScreenPoint {
    pub fn new(task: &Task, x: Vec<f64>, owner: Option<String>) -> ScreenPoint {
        let float_logits = task.net.logits(&x);
        ScreenPoint {
            x,
            float_logits,
            owner,
        }
    }

    fn violated_by(&self, quantized: Quantized, options: &VerifyOptions) -> bool {
        verify::violates_given(&self.float_logits, quantized, &self.x, options)
    }
}

/// A data row the fidelity floor does not count, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetAsideRow {
    /// The row's index in the data file (1-based, header not counted).
    pub row: usize,
    /// The float network's class there.
    pub float_class: usize,
    /// Why no configuration can agree there.
    pub reason: String,
}

/// Why a row is set aside: the only reason there is.
pub const SET_ASIDE_REASON: &str = "even the 16-bit integer networks pick another class than the float network here (float margin below 16-bit resolution)";

pub(super) struct Screen<'a> {
    pub task: &'a Task,
    pub options: &'a VerifyOptions,
    /// Points every configuration must get right.
    pub points: Vec<ScreenPoint>,
    /// Data rows (not set aside): all but `allowed_misses` must be right.
    pub rows: Vec<ScreenPoint>,
    /// How many rows a configuration may get wrong and still meet the fidelity floor.
    pub allowed_misses: usize,
    /// Configurations verified and refuted (or left undecided): never proposed again.
    pub rejected: HashSet<Genes>,
    /// The proved anchor's widths, once there is one: no width goes above the conventional
    /// configuration that is already proved (a wider one is needed nowhere).
    pub ceiling: Option<Vec<u32>>,
    pub evaluations: usize,
    pub template: QuantConfig,
}

impl Screen<'_> {
    /// The configuration genes stand for.
    pub fn config(&self, genes: &[u32]) -> QuantConfig {
        Genes::config(genes, &self.template)
    }

    /// Adds a point of box `owner` that every configuration must get right.
    pub fn add_point(&mut self, x: Vec<f64>, owner: &str) {
        let point = ScreenPoint::new(self.task, x, Some(owner.to_string()));
        self.points.push(point);
    }

    /// Drops the points of an excluded box: it constrains nothing any more.
    pub fn drop_box(&mut self, id: &str) {
        self.points.retain(|p| p.owner.as_deref() != Some(id));
    }

    /// Points the configuration gets wrong plus rows it gets wrong beyond the allowance,
    /// stopping after `limit`.
    pub fn violations(&mut self, genes: &[u32], limit: usize) -> usize {
        self.evaluations += 1;
        // Past the run's time limit every candidate is turned down, so that a search ends at
        // once and the limit holds (screening thousands of candidates took 20 s on ACAS Xu).
        let out_of_time = self
            .options
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d);
        if out_of_time || self.rejected.contains(genes) || self.above_ceiling(genes) {
            return usize::MAX;
        }
        let Ok(int_net) = self.task.quantize(&self.config(genes)) else {
            return usize::MAX;
        };
        let quantized = Quantized::Integer(&int_net);
        let mut count = 0;
        for i in 0..self.points.len() {
            if self.points[i].violated_by(quantized, self.options) {
                // Points that refute one candidate tend to refute the next: check them first.
                self.points.swap(0, i);
                count += 1;
                if count >= limit {
                    return count;
                }
            }
        }
        let mut misses = 0;
        for row in &self.rows {
            if row.violated_by(quantized, self.options) {
                misses += 1;
                if misses > self.allowed_misses && count + misses - self.allowed_misses >= limit {
                    break;
                }
            }
        }
        count + misses.saturating_sub(self.allowed_misses)
    }

    /// Whether some width of `genes` lies above the ceiling.
    fn above_ceiling(&self, genes: &[u32]) -> bool {
        self.ceiling
            .as_ref()
            .is_some_and(|c| genes.iter().zip(c).any(|(g, top)| g > top))
    }

    /// The widths a descent starts from: the ceiling, else 16 bits everywhere.
    pub fn top(&self, per_channel: u32) -> Genes {
        match &self.ceiling {
            Some(c) => Genes::from_parts(c.clone(), per_channel),
            None => Genes::widest(self.template.weight_bits.len(), per_channel),
        }
    }

    pub fn passes(&mut self, genes: &[u32]) -> bool {
        self.violations(genes, 1) == 0
    }

    pub fn storage(&self, genes: &[u32]) -> Storage {
        Storage::of(&self.task.net, &self.config(genes))
    }

    /// The integer networks at the widest configurations: 16 bits, each per-channel choice.
    pub fn widest_networks(&self, per_channel: &[u32]) -> Vec<IntNetwork> {
        let layers = self.template.weight_bits.len();
        per_channel
            .iter()
            .filter_map(|pc| {
                let top = Genes::widest(layers, *pc);
                self.task.quantize(&self.config(&top)).ok()
            })
            .collect()
    }

    /// A counterexample on `prop` at every widest configuration, if each has one; `None` as
    /// soon as one of them is not refuted.
    pub fn refuted_at_widest(&self, prop: &Property, per_channel: &[u32]) -> Option<Vec<f64>> {
        let task = self.task;
        let mut witness = None;
        for int_net in self.widest_networks(per_channel) {
            let verdict = task
                .compare(Quantized::Integer(&int_net), self.options)
                .verify_box(prop);
            let ce = verdict.counterexample.filter(|c| c.reproduces_in_f32)?;
            witness.get_or_insert(ce.input.iter().map(|v| *v as f64).collect());
        }
        witness
    }

    /// The points that every widest configuration (16 bits, each per-channel choice) gets
    /// wrong.
    pub fn blocking_points(&self, per_channel: &[u32]) -> Vec<Vec<f64>> {
        let widest = self.widest_networks(per_channel);
        self.points
            .iter()
            .filter(|p| {
                widest
                    .iter()
                    .all(|n| p.violated_by(Quantized::Integer(n), self.options))
            })
            .map(|p| p.x.clone())
            .collect()
    }

    /// Takes the data rows into the screen: rows every widest configuration gets wrong are set
    /// aside (returned, with the reason); of the others, all but `1 - min_agreement` of them
    /// must agree.
    pub fn take_rows(
        &mut self,
        rows: &[Vec<f64>],
        per_channel: &[u32],
        min_agreement: f64,
    ) -> Vec<SetAsideRow> {
        let widest = self.widest_networks(per_channel);
        let mut set_aside = Vec::new();
        for (i, x) in rows.iter().enumerate() {
            let point = ScreenPoint::new(self.task, x.clone(), None);
            let unmatched = widest
                .iter()
                .all(|n| point.violated_by(Quantized::Integer(n), self.options));
            if unmatched {
                set_aside.push(SetAsideRow {
                    row: i + 1,
                    float_class: self.options.decision.pick(&point.float_logits),
                    reason: SET_ASIDE_REASON.into(),
                });
            } else {
                self.rows.push(point);
            }
        }
        self.allowed_misses = allowed_misses(self.rows.len(), min_agreement);
        set_aside
    }
}

/// The most of `rows` rows that may disagree while agreement stays at least `min_agreement`.
pub fn allowed_misses(rows: usize, min_agreement: f64) -> usize {
    // The small epsilon keeps e.g. 0.99 * 300 from flooring to 2 through rounding.
    ((1.0 - min_agreement) * rows as f64 + 1e-9)
        .floor()
        .max(0.0) as usize
}

#[cfg(test)]
mod tests {
    use super::allowed_misses;

    #[test]
    fn the_floor_allows_whole_rows_only() {
        assert_eq!(allowed_misses(360, 0.99), 3);
        assert_eq!(allowed_misses(300, 0.99), 3); // 0.99 * 300 is not floored to 2
        assert_eq!(allowed_misses(30, 0.99), 0);
        assert_eq!(allowed_misses(100, 1.0), 0);
        assert_eq!(allowed_misses(100, 0.0), 100);
        assert_eq!(allowed_misses(0, 0.99), 0);
    }
}
