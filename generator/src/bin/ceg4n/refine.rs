//! `ceg4n refine`: the CEG4N loop, its report, and the summary a person reads first.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::args::{RefineArgs, SearchArg};
use ceg4n::quantize::QuantConfig;
use ceg4n::refine::ExclusionReason;
use ceg4n::report::RefineReport;

#[allow(clippy::too_many_arguments)]
pub(crate) fn refine(
    model: &Path,
    props: Option<&Path>,
    search: SearchArg,
    args: &RefineArgs,
    out: &Path,
    quiet: bool,
    json: bool,
) -> Result<ExitCode> {
    let report = refine_report(model, props, search, args, out, quiet)?;
    let path = write_reports(&report, out)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_refine_summary(&report);
        println!("report: {}", path.display());
    }
    Ok(crate::success_if(report.verified))
}

/// Progress of a refinement on stderr: one bar per round over its boxes.
struct RefineProgress {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
    quiet: bool,
}

impl ceg4n::refine::Progress for RefineProgress {
    fn round(&self, round: usize, candidate: &QuantConfig, boxes: usize) {
        if self.quiet {
            return;
        }
        let bar = indicatif::ProgressBar::new(boxes as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} boxes {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!(
            "round {round}: weights {:?} activations {:?} input {}",
            candidate.weight_bits, candidate.act_bits, candidate.input_bits
        ));
        let mut slot = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(previous) = slot.replace(bar) {
            previous.finish();
        }
    }

    fn proof(&self, verdict: &ceg4n::verify::BoxVerdict) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            bar.set_message(format!("(last: {} {:?})", verdict.id, verdict.status));
            bar.inc(1);
        }
    }
}

pub(crate) fn refine_options(
    args: &RefineArgs,
    search: SearchArg,
) -> Result<ceg4n::refine::RefineOptions> {
    if !(args.time_limit.is_finite() && args.time_limit > 0.0) {
        bail!(
            "--time-limit {} must be a positive number of seconds",
            args.time_limit
        );
    }
    Ok(ceg4n::refine::RefineOptions {
        search: match search {
            SearchArg::Default => ceg4n::refine::Search::Descent,
            SearchArg::Ga => ceg4n::refine::Search::Genetic,
        },
        seed: args.seed,
        time_limit: std::time::Duration::from_secs_f64(args.time_limit),
        max_rounds: args.max_rounds,
        verify: args.proof.options()?,
        jobs: args.proof.jobs(),
        per_channel: args.per_channel.then_some(true),
        uniform_input: args.uniform_input,
        min_agreement: args.min_agreement,
    })
}

/// Refines `model` (its boxes from `props`, or made from `args.data`); the report, not yet
/// written.
pub(crate) fn refine_report(
    model: &Path,
    props: Option<&Path>,
    search: SearchArg,
    args: &RefineArgs,
    out: &Path,
    quiet: bool,
) -> Result<RefineReport> {
    use ceg4n::pipeline::{refine_model, BoxSource, RefineRequest};
    let boxes = match (props, &args.data) {
        (Some(p), _) => {
            if args.boxes.is_some() || args.radius.is_some() {
                bail!(
                    "--boxes and --radius make boxes from --data; they do not apply with --props"
                );
            }
            BoxSource::File(p.to_path_buf())
        }
        (None, Some(_)) => BoxSource::FromData(ceg4n::data::DataBoxes {
            count: args.boxes,
            radius: args.radius.unwrap_or(ceg4n::data::DEFAULT_DATA_BOX_RADIUS),
            seed: args.seed,
        }),
        (None, None) => bail!(
            "give --props FILE (the boxes to prove) or --data CSV (boxes are made around its rows)"
        ),
    };
    if args.data.is_none() && !quiet {
        eprintln!("note: without --data nothing but the boxes constrains accuracy; give a labelled CSV to keep the model's accuracy (--min-agreement)");
    }
    let request = RefineRequest {
        model,
        boxes,
        data: args.data.as_deref(),
        options: refine_options(args, search)?,
        out,
    };
    let progress = RefineProgress {
        bar: std::sync::Mutex::new(None),
        quiet,
    };
    let report = refine_model(&request, &progress)?;
    if let Some(bar) = progress
        .bar
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        bar.finish_and_clear();
    }
    Ok(report)
}

/// Writes report.json and report.html into `out`; returns the JSON's path.
pub(crate) fn write_reports(report: &RefineReport, out: &Path) -> Result<PathBuf> {
    let path = report.write(out)?;
    ceg4n::html_report::write(report, out)?;
    Ok(path)
}

pub(crate) fn print_refine_summary(r: &RefineReport) {
    match (&r.weight_bits, &r.activation_bits, r.input_bits) {
        (Some(w), Some(a), Some(i)) => {
            // Undecided boxes are left out of the claim: the verdict line says so itself.
            let undecided = r
                .boxes
                .iter()
                .filter(|b| b.status == ceg4n::verify::Status::Unknown)
                .count();
            let verdict = match (r.verified, undecided) {
                (false, _) => "NOT verified".to_string(),
                (true, 0) => "verified".to_string(),
                (true, open) => format!(
                    "verified except {open} undecided box(es), not claimed ({} of {} proved)",
                    r.proved,
                    r.boxes.len()
                ),
            };
            println!("{verdict}: weights {w:?} bits, activations {a:?} bits, input {i} bits")
        }
        _ => println!("no candidate configuration"),
    }
    if let (Some(storage), Some(paper)) = (r.weight_storage_bits, r.paper_storage_bits) {
        println!(
            "weight storage: {storage} bits (with biases at weight bits: {paper}); float32: {} bits ({:.1}x smaller)",
            r.float32_storage_bits,
            r.float32_storage_bits as f64 / paper.max(1) as f64
        );
    }
    for (reason, boxes) in [
        (
            ExclusionReason::FloatBoundary,
            "the float decision boundary crosses (no quantized network can be equivalent there)",
        ),
        (
            ExclusionReason::WidestDisagrees,
            "where even 16-bit integer networks disagree with the float one (a margin, or ε, below 16-bit resolution)",
        ),
        (
            ExclusionReason::Saturates,
            "where even 16-bit integer networks saturate (an activation exceeds the range calibrated on the boxes' samples and the --data rows)",
        ),
    ] {
        let ids: Vec<&str> = r
            .excluded
            .iter()
            .filter(|e| e.reason == reason)
            .map(|e| e.id.as_str())
            .collect();
        if !ids.is_empty() {
            println!("excluded {} box(es) {boxes}: {}", ids.len(), ids.join(", "));
        }
    }
    println!(
        "boxes: {}/{} proved{}; {} rounds, {} verifier calls, {} counterexamples, {} candidates screened, {:.1} s ({})",
        r.proved,
        r.boxes.len(),
        if r.unproved.is_empty() {
            String::new()
        } else if r.verified {
            format!(
                " (undecided within the time-out, not claimed: {})",
                r.unproved.join(", ")
            )
        } else {
            format!(" (not proved: {})", r.unproved.join(", "))
        },
        r.rounds,
        r.verifier_calls,
        r.counterexamples.len(),
        r.screened,
        r.seconds,
        r.stop_reason
    );
    if let Some(a) = &r.accuracy {
        println!(
            "test accuracy: float {:.4}, ceg4n {:.4}, uniform {}-bit baseline {:.4}",
            a.float, a.quantized, a.uniform_bits, a.uniform_baseline
        );
        println!(
            "agreement with the float network: {:.4} of {} rows (floor {}: {})",
            a.agreement,
            a.rows,
            a.min_agreement,
            if a.floor_met { "met" } else { "NOT met" }
        );
    }
    if !r.rows_set_aside.is_empty() {
        let rows: Vec<String> = r.rows_set_aside.iter().map(|s| s.row.to_string()).collect();
        println!(
            "rows set aside ({}; not counted by the floor): {}",
            ceg4n::refine::SET_ASIDE_REASON,
            rows.join(", ")
        );
    }
}
