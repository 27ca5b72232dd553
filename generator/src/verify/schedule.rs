//! Many boxes: in parallel, and nested boxes outermost first.

use super::verdict::*;
use super::*;
use crate::data::Property;

impl Comparison<'_> {
    /// Verifies every box, `jobs` boxes at a time (each worker thread has its own z3 context).
    /// Verdicts come back in the order of `props`.
    pub fn verify_boxes(&self, props: &[Property], jobs: usize) -> Vec<BoxVerdict> {
        self.verify_boxes_with(props, jobs, &|_| {})
    }

    /// [`Comparison::verify_boxes`], calling `done` with each verdict as it is reached.
    pub fn verify_boxes_with(
        &self,
        props: &[Property],
        jobs: usize,
        done: &(dyn Fn(&BoxVerdict) + Sync),
    ) -> Vec<BoxVerdict> {
        crate::parallel::map(props, jobs, |prop| {
            let verdict = self.verify_box(prop);
            done(&verdict);
            verdict
        })
    }

    /// Verifies every box like [`Comparison::verify_boxes_with`], but boxes that lie inside other boxes after
    /// them: a box inside a proved box is proved by that proof, and a box holding a counterexample
    /// of a box around it is refuted by that (already replayed) point; only the rest reach the
    /// verifier. With the usual nested radii (0.01 within 0.03 within 0.05 around one centre) a
    /// robust centre costs one proof instead of three. Returns the verdicts in `props` order and
    /// the number of boxes that reached the verifier.
    pub fn verify_nested_boxes(
        &self,
        props: &[Property],
        jobs: usize,
        done: &(dyn Fn(&BoxVerdict) + Sync),
    ) -> (Vec<BoxVerdict>, usize) {
        // Box j encloses box i when it contains it; of two equal boxes the first encloses the other.
        let encloses = |j: usize, i: usize| {
            j != i && props[j].contains(&props[i]) && (j < i || !props[i].contains(&props[j]))
        };
        let mut verdicts: Vec<Option<BoxVerdict>> = vec![None; props.len()];
        let mut calls = 0;
        while verdicts.iter().any(Option::is_none) {
            // Decide what the verdicts so far decide; verify the boxes no undecided box encloses.
            let mut ready = Vec::new();
            for i in 0..props.len() {
                if verdicts[i].is_some() {
                    continue;
                }
                if let Some(decided) = decided_by_enclosing(props, &verdicts, i, &encloses) {
                    done(&decided);
                    verdicts[i] = Some(decided);
                } else if (0..props.len()).all(|j| !encloses(j, i) || verdicts[j].is_some()) {
                    ready.push(i);
                }
            }
            if ready.is_empty() {
                continue;
            }
            let batch: Vec<Property> = ready.iter().map(|&i| props[i].clone()).collect();
            calls += batch.len();
            let results = self.verify_boxes_with(&batch, jobs, done);
            for (i, v) in ready.into_iter().zip(results) {
                verdicts[i] = Some(v);
            }
        }
        (verdicts.into_iter().flatten().collect(), calls)
    }
}

/// The verdict of box `i` implied by the decided boxes enclosing it, if any.
pub(crate) fn decided_by_enclosing(
    props: &[Property],
    verdicts: &[Option<BoxVerdict>],
    i: usize,
    encloses: &impl Fn(usize, usize) -> bool,
) -> Option<BoxVerdict> {
    let prop = &props[i];
    let inherit = |j: usize, status, counterexample| BoxVerdict {
        id: prop.id.clone(),
        status,
        seconds: 0.0,
        queries: 0,
        counterexample,
        reason: None,
        decided_by: Some(props[j].id.clone()),
    };
    let enclosing = (0..props.len()).filter(|&j| encloses(j, i));
    for j in enclosing {
        let Some(v) = &verdicts[j] else { continue };
        match (&v.status, &v.counterexample) {
            (Status::Proved, _) => return Some(inherit(j, Status::Proved, None)),
            (Status::Counterexample, Some(ce)) => {
                let x: Vec<f64> = ce.input.iter().map(|v| *v as f64).collect();
                if ce.reproduces_in_f32 && prop.contains_point(&x) {
                    return Some(inherit(j, Status::Counterexample, Some(ce.clone())));
                }
            }
            _ => {}
        }
    }
    None
}
