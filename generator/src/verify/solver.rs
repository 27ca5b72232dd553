//! z3 queries: the joint float/quantized encoding per class pair, single-network rival
//! queries, and one time-limited check.

use std::time::Instant;

use z3::{Params, SatResult, Solver};

use super::encode::{encode_float, float_picks, input_vars};
use super::*;
use super::{region::*, verdict::*};
use crate::ir::Network;

pub(crate) enum Answer {
    Unsat,
    /// A witness input (rounded to f32 and clamped into the box).
    Sat(Vec<f64>),
    Unknown(String),
}

/// One z3 solver holding the encoding of a box, queried per class pair.
pub(crate) struct PairSolver<'a> {
    solver: Solver,
    x: Vec<z3::ast::Real>,
    float_logits: Vec<z3::ast::Real>,
    quantized_logits: Vec<z3::ast::Real>,
    /// The dequantized quantized logits, for epsilon queries (not oriented).
    dequantized: Vec<z3::ast::Real>,
    /// The float logits, not oriented.
    float_raw: Vec<z3::ast::Real>,
    quantized: Quantized<'a>,
    lower: &'a [f64],
    upper: &'a [f64],
}

impl<'a> PairSolver<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        net: &Network,
        quantized: Quantized<'a>,
        lower: &'a [f64],
        upper: &'a [f64],
        fb: &bounds::FloatBounds,
        exact: bool,
        options: &VerifyOptions,
    ) -> Self {
        let decision = options.decision;
        let solver = Solver::new();
        let x = input_vars(&solver, lower, upper);
        let float_raw = encode_float(&solver, net, &x, fb, "");
        let quantized_raw = quantized.encode(&solver, &x, lower, upper, exact);
        let dequantized = quantized
            .dequantization_scales()
            .iter()
            .zip(&quantized_raw)
            .map(|(s, q)| q * encode::real_of_f64(*s))
            .collect();
        let float_logits = decision.orient(float_raw.clone());
        let quantized_logits = decision.orient(quantized_raw);
        PairSolver {
            solver,
            x,
            float_logits,
            quantized_logits,
            dequantized,
            float_raw,
            quantized,
            lower,
            upper,
        }
    }

    /// Is there an input in the box that answers `query` with yes?
    pub(crate) fn check(&mut self, query: Query, deadline: Instant) -> Answer {
        let (solver, float_logits, quantized_logits) =
            (&self.solver, &self.float_logits, &self.quantized_logits);
        let (dequantized, float_raw, quantized) =
            (&self.dequantized, &self.float_raw, self.quantized);
        solve(
            solver,
            &self.x,
            self.lower,
            self.upper,
            deadline,
            || match query {
                Query::Pair { float, rival } => z3::ast::Bool::and(&[
                    float_picks(float_logits, float),
                    quantized.prefers(quantized_logits, rival, float),
                ]),
                Query::Deviation { output, above, eps } => {
                    let gap = if above {
                        &dequantized[output] - &float_raw[output]
                    } else {
                        &float_raw[output] - &dequantized[output]
                    };
                    gap.gt(encode::real_of_f64(eps))
                }
            },
        )
    }
}

/// One network alone over a box, asked whether it can prefer a rival class over a given one.
/// When the float network keeps one class on the whole box, the box is equivalent exactly when
/// the quantized network keeps it too: two single-network questions, each far easier for the
/// solver than the joint one (no product of both networks' case splits).
pub(crate) struct RivalSolver<'a> {
    solver: Solver,
    x: Vec<z3::ast::Real>,
    /// Oriented logits.
    logits: Vec<z3::ast::Real>,
    /// `None` for the float network.
    quantized: Option<Quantized<'a>>,
    lower: &'a [f64],
    upper: &'a [f64],
}

impl<'a> RivalSolver<'a> {
    pub(crate) fn float(
        net: &Network,
        lower: &'a [f64],
        upper: &'a [f64],
        fb: &bounds::FloatBounds,
        decision: Decision,
    ) -> Self {
        let solver = Solver::new();
        let x = input_vars(&solver, lower, upper);
        let logits = decision.orient(encode_float(&solver, net, &x, fb, ""));
        RivalSolver {
            solver,
            x,
            logits,
            quantized: None,
            lower,
            upper,
        }
    }

    pub(crate) fn quantized(
        quantized: Quantized<'a>,
        lower: &'a [f64],
        upper: &'a [f64],
        exact: bool,
        decision: Decision,
    ) -> Self {
        let solver = Solver::new();
        let x = input_vars(&solver, lower, upper);
        let logits = decision.orient(quantized.encode(&solver, &x, lower, upper, exact));
        RivalSolver {
            solver,
            x,
            logits,
            quantized: Some(quantized),
            lower,
            upper,
        }
    }

    /// Is there an input in the box where this network prefers `rival` over `class`?
    pub(crate) fn check(&mut self, class: usize, rival: usize, deadline: Instant) -> Answer {
        let (solver, logits) = (&self.solver, &self.logits);
        let prefers = match self.quantized {
            Some(q) => q.prefers(logits, rival, class),
            None => encode::real_prefers(logits, rival, class),
        };
        solve(solver, &self.x, self.lower, self.upper, deadline, || {
            prefers
        })
    }
}

/// `solver.check_assumptions(..)`, interrupted at `deadline` by a watchdog thread: z3's own
/// `timeout` parameter is not checked in every phase (internalizing a large encoding,
/// preprocessing), and a box's time-out is a promise about wall time.
fn check_until(solver: &Solver, assumptions: &[z3::ast::Bool], deadline: Instant) -> SatResult {
    let context = z3::Context::thread_local();
    let handle = context.handle();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let wait = deadline.saturating_duration_since(Instant::now());
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(wait) {
                handle.interrupt();
            }
        });
        let result = solver.check_assumptions(assumptions);
        drop(done);
        result
    })
}

/// Runs one query on `solver`: `question` is asserted behind a fresh literal and checked under
/// that assumption (no push/pop: z3's first push internalizes the whole encoding outside any
/// time limit, seconds on 784-input networks); a witness is rounded to f32 and clamped into
/// the box.
pub(crate) fn solve(
    solver: &Solver,
    x: &[z3::ast::Real],
    lower: &[f64],
    upper: &[f64],
    deadline: Instant,
    question: impl FnOnce() -> z3::ast::Bool,
) -> Answer {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Answer::Unknown("time-out".into());
    }
    let mut params = Params::new();
    params.set_u32(
        "timeout",
        remaining.as_millis().clamp(1, u32::MAX as u128) as u32,
    );
    solver.set_params(&params);
    let asked = z3::ast::Bool::fresh_const("query");
    solver.assert(asked.implies(question()));
    let answer = match check_until(solver, std::slice::from_ref(&asked), deadline) {
        SatResult::Unsat => Answer::Unsat,
        SatResult::Sat => {
            let witness: Option<Vec<f64>> = solver.get_model().and_then(|m| {
                x.iter()
                    .map(|v| m.eval(v, true).map(|r| r.approx_f64()))
                    .collect()
            });
            match witness {
                Some(w) => Answer::Sat(
                    w.iter()
                        .zip(lower)
                        .zip(upper)
                        .map(|((v, l), u)| super::f32_within(*v, *l, *u))
                        .collect(),
                ),
                None => Answer::Unknown("solver returned no model".into()),
            }
        }
        SatResult::Unknown => {
            let reason = solver
                .get_reason_unknown()
                .unwrap_or_else(|| "unknown".into());
            Answer::Unknown(
                if reason.contains("timeout") || reason.contains("canceled") {
                    "time-out".into()
                } else {
                    reason
                },
            )
        }
    };
    // The question stays asserted behind its literal, which is never assumed again.
    answer
}
