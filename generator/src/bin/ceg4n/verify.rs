//! `ceg4n verify`: box-by-box proofs at given bits.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use crate::args::{BitsArgs, Semantics, SolveArgs};
use ceg4n::pipeline::{verify_model, VerifyBoxes};
use ceg4n::quantize::DEFAULT_WEIGHT_BITS;
use ceg4n::verify::{Equivalence, Status};

/// Where `verify` takes its boxes from (its arguments).
pub(crate) struct BoxSource {
    pub(crate) props: Option<PathBuf>,
    pub(crate) points: Option<PathBuf>,
    pub(crate) radius: Option<f64>,
    pub(crate) domain: Option<Vec<f64>>,
}

pub(crate) fn verify(
    model: &Path,
    boxes: &BoxSource,
    quant: &BitsArgs,
    solve: &SolveArgs,
    as_json: bool,
) -> Result<ExitCode> {
    let boxes = VerifyBoxes {
        props: boxes.props.as_deref(),
        points: boxes.points.as_deref(),
        radius: boxes.radius,
        domain: boxes.domain.as_deref(),
    };
    let options = solve.options()?;
    let result = verify_model(
        model,
        &boxes,
        &quant.spec_or(DEFAULT_WEIGHT_BITS),
        solve.semantics == Semantics::Paper,
        &options,
        solve.jobs(),
    )?;
    let verdicts = &result.verdicts;
    let count = |s: Status| verdicts.iter().filter(|v| v.status == s).count();
    let (proved, ces, unknown) = (
        count(Status::Proved),
        count(Status::Counterexample),
        count(Status::Unknown),
    );
    let (config, seconds) = (&result.config, result.seconds);
    if as_json {
        let out = json!({
            "boxes": verdicts,
            "summary": {"proved": proved, "counterexample": ces, "unknown": unknown, "seconds": seconds},
            "weight_bits": config.weight_bits,
            "act_bits": config.act_bits,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for v in verdicts {
            let status = match v.status {
                Status::Proved => "proved".to_string(),
                Status::Counterexample => {
                    let ce = v
                        .counterexample
                        .as_ref()
                        .expect("counterexample status carries one");
                    // Under ε-equivalence the classes may agree: the logits are what differ.
                    let what = match options.equivalence {
                        Equivalence::Top1 => format!(
                            "float class {}, integer class {}",
                            ce.float_class, ce.quantized_class
                        ),
                        Equivalence::Epsilon(eps) => {
                            format!("a logit off by {:.4} > ε {eps}", ce.max_abs_diff)
                        }
                    };
                    // A saturating activation is a calibration matter, not a bit-width one.
                    let saturation = ce.saturation.map_or(String::new(), |s| {
                        format!(
                            "; hidden layer {} saturates: an activation at {:.2}x its calibrated range",
                            s.layer + 1,
                            s.ratio
                        )
                    });
                    format!(
                        "counterexample ({what}{saturation}{}) at {:?}",
                        if ce.reproduces_in_f32 {
                            ""
                        } else {
                            ", not reproducible at f32 precision"
                        },
                        ce.input
                    )
                }
                Status::Unknown => format!("unknown ({})", v.reason.as_deref().unwrap_or("")),
            };
            println!("box {:<8} {:>8.3}s  {status}", v.id, v.seconds);
        }
        println!(
            "{proved}/{} proved, {ces} counterexample(s), {unknown} unknown in {seconds:.2}s (weights {:?} bits, activations {:?} bits)",
            verdicts.len(),
            config.weight_bits,
            config.act_bits
        );
    }
    Ok(crate::success_if(proved == verdicts.len()))
}
