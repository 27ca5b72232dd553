//! `ceg4n eval`: accuracy of the float model and of a quantization.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use crate::args::BitsArgs;
use ceg4n::onnx_import::import_path;
use ceg4n::pipeline::evaluate;

pub(crate) fn eval(
    model: &Path,
    data: &Path,
    quant: &BitsArgs,
    calib: Option<&Path>,
    as_json: bool,
) -> Result<ExitCode> {
    let net = import_path(model)?;
    let bits = quant.spec();
    let e = evaluate(&net, data, bits.as_ref(), calib)?;
    if as_json {
        let out = json!({
            "rows": e.rows,
            "float_accuracy": e.float_accuracy,
            "quantized_accuracy": e.quantized.as_ref().map(|q| q.accuracy),
            "max_abs_diff_vs_reference": e.max_abs_diff_vs_reference,
            "quantized_agreement_with_float": e.quantized.as_ref().map(|q| q.agreement),
            "quantization": e.quantized.as_ref().map(|q| json!({
                "weight_bits": q.config.weight_bits,
                "act_bits": q.config.act_bits,
                "input": q.int_net.input,
                "layers": q.int_net.layers,
            })),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("rows                 {}", e.rows);
    println!("float accuracy       {:.4}", e.float_accuracy);
    if let Some(q) = &e.quantized {
        println!(
            "quantized accuracy   {:.4}  (weights {:?} bits, activations {:?} bits, input {} bits with fractional bits {:?})",
            q.accuracy, q.config.weight_bits, q.config.act_bits, q.int_net.input.bits, q.int_net.input.frac_bits
        );
        println!("same class as float  {:.4}", q.agreement);
    }
    if let Some(d) = e.max_abs_diff_vs_reference {
        println!("max |float - y|      {d:.3e}");
    }
    Ok(ExitCode::SUCCESS)
}
