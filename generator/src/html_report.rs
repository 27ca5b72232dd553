//! `report.html`: one self-contained page (inline SVG plots by plotters, no scripts, no external
//! files) for people who would rather look than read a JSON report.

use std::fmt::Write as _;

use crate::error::{input_error, Result};
use plotters::prelude::*;

use crate::report::RefineReport;
use crate::verify::Status;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 340;

fn plot_error<E: std::fmt::Debug>(e: E) -> crate::Error {
    input_error!("plotting failed: {e:?}")
}

/// Weight and activation bits per layer, side by side.
fn bits_plot(report: &RefineReport) -> Result<String> {
    let weights = report.weight_bits.clone().unwrap_or_default();
    let acts = report.activation_bits.clone().unwrap_or_default();
    let layers = weights.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Bits per layer (blue: weights, orange: activations)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(40)
            .build_cartesian_2d(0f64..layers.max(1) as f64, 0u32..17u32)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("layer (input side first)")
            .y_desc("bits")
            .x_labels(layers.max(1) as usize + 1)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .disable_x_mesh()
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(weights.iter().enumerate().map(|(l, b)| {
                let x = l as f64;
                Rectangle::new([(x + 0.1, 0), (x + 0.48, *b)], BLUE.filled())
            }))
            .map_err(plot_error)?;
        chart
            .draw_series(acts.iter().enumerate().map(|(l, b)| {
                let x = l as f64;
                Rectangle::new(
                    [(x + 0.52, 0), (x + 0.9, *b)],
                    RGBColor(240, 140, 20).filled(),
                )
            }))
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Test accuracy against weight storage: the uniform curve, the refined point, the float line.
fn accuracy_plot(report: &RefineReport) -> Result<Option<String>> {
    let (Some(acc), Some(storage)) = (report.accuracy, report.weight_storage_bits) else {
        return Ok(None);
    };
    if report.accuracy_curve.is_empty() {
        return Ok(None);
    }
    let max_storage = report
        .accuracy_curve
        .iter()
        .map(|p| p.weight_storage_bits)
        .max()
        .unwrap_or(1)
        .max(storage) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Test accuracy vs storage (grey: uniform, red: ceg4n, dashed: float, dotted: floor)",
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..max_storage * 1.05, 0f64..1.05f64)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("weight storage (bits)")
            .y_desc("test accuracy")
            .draw()
            .map_err(plot_error)?;
        let curve: Vec<(f64, f64)> = report
            .accuracy_curve
            .iter()
            .map(|p| (p.weight_storage_bits as f64, p.accuracy))
            .collect();
        chart
            .draw_series(LineSeries::new(
                curve.clone(),
                BLACK.mix(0.5).stroke_width(2),
            ))
            .map_err(plot_error)?;
        chart
            .draw_series(
                curve
                    .iter()
                    .map(|p| Circle::new(*p, 3, BLACK.mix(0.5).filled())),
            )
            .map_err(plot_error)?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, acc.float), (max_storage * 1.05, acc.float)],
                6,
                4,
                BLUE.stroke_width(1),
            ))
            .map_err(plot_error)?;
        // The fidelity floor in accuracy terms: agreeing with the float network on at least
        // `min_agreement` of the rows keeps accuracy at least this high.
        let floor = acc.float - (1.0 - acc.min_agreement);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, floor), (max_storage * 1.05, floor)],
                2,
                3,
                RED.mix(0.7).stroke_width(1),
            ))
            .map_err(plot_error)?;
        chart
            .draw_series(std::iter::once(Circle::new(
                (storage as f64, acc.quantized),
                6,
                RED.filled(),
            )))
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(Some(svg))
}

/// Seconds per box at the reported configuration, coloured by outcome.
fn proof_time_plot(report: &RefineReport) -> Result<String> {
    let n = report.boxes.len().max(1);
    let max = report
        .boxes
        .iter()
        .map(|b| b.seconds)
        .fold(0.0, f64::max)
        .max(1e-3);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Seconds per box (green: proved, red: counterexample, grey: unknown)",
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..n as f64, 0f64..max * 1.1)
            .map_err(plot_error)?;
        let ids: Vec<String> = report.boxes.iter().map(|b| b.id.clone()).collect();
        chart
            .configure_mesh()
            .x_desc("box")
            .y_desc("seconds")
            .x_labels(n.min(30))
            .x_label_formatter(&|x| ids.get(*x as usize).cloned().unwrap_or_default())
            .disable_x_mesh()
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(report.boxes.iter().enumerate().map(|(i, b)| {
                let colour = match b.status {
                    Status::Proved => RGBColor(40, 160, 70),
                    Status::Counterexample => RED,
                    Status::Unknown => RGBColor(150, 150, 150),
                };
                let x = i as f64;
                Rectangle::new([(x + 0.15, 0.0), (x + 0.85, b.seconds)], colour.filled())
            }))
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The whole page.
pub fn render(report: &RefineReport) -> Result<String> {
    let mut html = String::new();
    let model = escape(&report.model.display().to_string());
    let verdict = if report.verified {
        "<span class=ok>verified</span>"
    } else {
        "<span class=bad>not verified</span>"
    };
    // Accuracy belongs beside the verdict: a proof is worth something only if the model is
    // still the one the user wanted.
    let fidelity = report.accuracy.map_or(
        " No data was given: nothing but the boxes constrains accuracy.".to_string(),
        |a| {
            format!(
                " <span class={}>Agreement with the float network {:.3} on {} data rows (floor {}{})</span>; \
                 test accuracy float {:.3}, ceg4n {:.3}.",
                if a.floor_met { "ok" } else { "bad" },
                a.agreement,
                a.rows,
                a.min_agreement,
                if a.floor_met { ", met" } else { ", NOT met" },
                a.float,
                a.quantized
            )
        },
    );
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=utf-8><title>ceg4n report: {model}</title>\
         <style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}\
         .ok{{color:#1a7f37;font-weight:bold}}.bad{{color:#c62828;font-weight:bold}}\
         figure{{margin:1em 0}}</style></head><body>\
         <h1>ceg4n: {model}</h1><p>{verdict} &mdash; {} of {} boxes proved at exactly these bits{}{}.{fidelity}</p><table>",
        report.proved,
        report.boxes.len(),
        if report.excluded.is_empty() {
            String::new()
        } else {
            format!(
                "; {} box(es) excluded: no configuration up to 16 bits can be proved there",
                report.excluded.len()
            )
        },
        if report.unproved.is_empty() || !report.verified {
            String::new()
        } else {
            format!(
                "; not claimed (undecided within the time-out): {}",
                escape(&report.unproved.join(", "))
            )
        }
    );
    let join = |v: &Option<Vec<u32>>| {
        v.as_ref().map_or("-".into(), |v| {
            v.iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
    };
    let mut row = |k: &str, v: String| {
        let _ = write!(html, "<tr><th>{k}</th><td>{}</td></tr>", escape(&v));
    };
    row("weight bits per layer", join(&report.weight_bits));
    row(
        "activation bits per hidden layer",
        join(&report.activation_bits),
    );
    row(
        "input bits",
        report.input_bits.map_or("-".into(), |b| b.to_string()),
    );
    if let Some(paper) = report.paper_storage_bits {
        row(
            "weight storage",
            format!(
                "{} bits with biases ({:.1}x smaller than float32's {} bits)",
                paper,
                report.float32_storage_bits as f64 / paper.max(1) as f64,
                report.float32_storage_bits
            ),
        );
    }
    if let Some(a) = report.accuracy {
        row(
            "test accuracy",
            format!(
                "float {:.3} / ceg4n {:.3} / uniform {}-bit {:.3}",
                a.float, a.quantized, a.uniform_bits, a.uniform_baseline
            ),
        );
        row(
            "agreement with the float network",
            format!(
                "{:.4} of {} rows ({:.4} of the rows counted); floor {}: {}",
                a.agreement,
                a.rows,
                a.agreement_counted,
                a.min_agreement,
                if a.floor_met { "met" } else { "NOT met" }
            ),
        );
    }
    if !report.rows_set_aside.is_empty() {
        let rows: Vec<String> = report
            .rows_set_aside
            .iter()
            .map(|r| r.row.to_string())
            .collect();
        row(
            "data rows set aside",
            format!("{} ({})", rows.join(", "), crate::refine::SET_ASIDE_REASON),
        );
    }
    row(
        "search",
        format!(
            "{} rounds, {} verifier calls, {} counterexamples, {:.1} s ({})",
            report.rounds,
            report.verifier_calls,
            report.counterexamples.len(),
            report.seconds,
            report.stop_reason
        ),
    );
    if let Some(d) = &report.device {
        row(
            "device",
            format!(
                "{}/{} vectors bit-exact on {} ({})",
                d.bit_exact, d.vectors, d.board, d.core
            ),
        );
        if let Some(i) = d.instructions_per_inference {
            row(
                "instructions per inference",
                format!(
                    "{i:.0} ({:.2} per MAC; QEMU instruction count)",
                    d.instructions_per_mac.unwrap_or(0.0)
                ),
            );
        }
        row(
            "memory",
            format!(
                "model: {} B weights and parameters, {} B activation buffers; measured on the device build: {} B flash with code, {} B stack per inference; test firmware: {} B flash, {} B static RAM",
                d.model_flash_bytes,
                d.model_ram_bytes,
                d.measured_model_flash_bytes.map_or("-".into(), |f| f.to_string()),
                d.measured_stack_bytes.map_or("-".into(), |f| f.to_string()),
                d.flash_bytes.map_or("-".into(), |f| f.to_string()),
                d.ram_bytes.map_or("-".into(), |r| r.to_string())
            ),
        );
    }
    row("model SHA-256", report.model_sha256.clone());
    html.push_str("</table>");
    html.push_str("<figure>");
    html.push_str(&bits_plot(report)?);
    html.push_str("</figure>");
    if let Some(svg) = accuracy_plot(report)? {
        html.push_str("<figure>");
        html.push_str(&svg);
        html.push_str("</figure>");
    }
    html.push_str("<figure>");
    html.push_str(&proof_time_plot(report)?);
    html.push_str(
        "</figure><h2>Boxes</h2><table><tr><th>box</th><th>status</th><th>seconds</th></tr>",
    );
    for b in &report.boxes {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{:.3}</td></tr>",
            escape(&b.id),
            b.status,
            b.seconds
        );
    }
    for e in &report.excluded {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>excluded: {} (float class {} at the centre, {} at {:?})</td><td>-</td></tr>",
            escape(&e.id),
            escape(&e.reason.to_string()),
            e.centre_class,
            e.witness_class,
            e.witness
        );
    }
    html.push_str("</table><h2>What is guaranteed</h2><p>");
    html.push_str(&guarantee(report.epsilon));
    html.push_str("</p></body></html>\n");
    Ok(html)
}

/// What a proved box means, for the property the report's boxes were proved for.
fn guarantee(epsilon: Option<f64>) -> String {
    let property = match epsilon {
        None => "the generated integer code picks the class the float network picks in exact \
                 real arithmetic over its f32 weights (ties to the lowest index)"
            .to_string(),
        Some(eps) => format!(
            "every dequantized logit of the generated integer code lies within {eps} of the \
             float network's logit in exact real arithmetic over its f32 weights (the classes \
             they pick can differ where two float logits lie within 2 x {eps} of each other)"
        ),
    };
    format!(
        "For every input in a proved box, {property}. Nothing is claimed outside the boxes; the \
         float network evaluated in f32 can differ from real arithmetic by ~1e-6."
    )
}

/// Writes `report.html` into `dir` (via a temporary file and a rename).
pub fn write(report: &RefineReport, dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let html = render(report)?;
    let path = dir.join("report.html");
    let tmp = dir.join(".report.html.tmp");
    std::fs::write(&tmp, html)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::guarantee;

    /// The page states the property that was proved: under ε-equivalence the classes are not
    /// claimed equal.
    #[test]
    fn the_guarantee_names_the_proved_property() {
        assert!(guarantee(None).contains("picks the class the float network picks"));
        let eps = guarantee(Some(0.05));
        assert!(eps.contains("within 0.05"), "{eps}");
        assert!(
            !eps.contains("picks the class the float network picks"),
            "{eps}"
        );
    }
}
