//! `ceg4n inspect`: what the importer made of a model.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use ceg4n::ir::{Activation, InputOp};
use ceg4n::onnx_import::import_path;

fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::None => "none",
        Activation::Relu => "relu",
    }
}

pub(crate) fn inspect(model: &Path, as_json: bool) -> Result<ExitCode> {
    let net = import_path(model)?;
    let shape = |s: &[Option<usize>]| -> Vec<serde_json::Value> {
        s.iter()
            .map(|d| d.map_or(json!("?"), |n| json!(n)))
            .collect()
    };
    if as_json {
        let out = json!({
            "inputs": [{"name": net.input.name, "shape": shape(&net.input.shape), "features": net.input_len()}],
            "outputs": net.outputs.iter().map(|o| json!({"name": o.name, "shape": shape(&o.shape)})).collect::<Vec<_>>(),
            "input_ops": net.input_ops.iter().map(InputOp::name).collect::<Vec<_>>(),
            "layers": net.layers.iter().map(|l| json!({
                "kind": "dense", "in": l.inputs(), "out": l.outputs(), "activation": activation_name(l.activation)
            })).collect::<Vec<_>>(),
            "head": net.head,
            "params": net.param_count(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let dims = |s: &[Option<usize>]| {
        s.iter()
            .map(|d| d.map_or("?".to_string(), |n| n.to_string()))
            .collect::<Vec<_>>()
            .join("x")
    };
    println!("model   {}", model.display());
    println!(
        "input   {} [{}] ({} features)",
        net.input.name,
        dims(&net.input.shape),
        net.input_len()
    );
    for o in &net.outputs {
        println!("output  {} [{}]", o.name, dims(&o.shape));
    }
    if !net.input_ops.is_empty() {
        let ops: Vec<&str> = net.input_ops.iter().map(InputOp::name).collect();
        println!("input ops  {}", ops.join(" -> "));
    }
    for (i, l) in net.layers.iter().enumerate() {
        println!(
            "layer {i}  dense {:>4} -> {:<4} {}",
            l.inputs(),
            l.outputs(),
            activation_name(l.activation)
        );
    }
    println!("head    {}", net.head.describe());
    println!("params  {}", net.param_count());
    Ok(ExitCode::SUCCESS)
}
