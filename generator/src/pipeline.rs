//! The pipeline steps the CLI's commands are made of, as library calls with typed results.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::data::{load_properties, write_properties, DataBoxes, Dataset, Property};
use crate::onnx_import::import_path;
use crate::refine::{accuracy, refine, uniform_curve, Progress, RefineOptions};
use crate::report::RefineReport;
use crate::task::Task;

/// Where the boxes of a refinement come from.
#[derive(Clone, Debug)]
pub enum BoxSource {
    /// A CEG4N property file.
    File(PathBuf),
    /// Rows of the data, boxed (written to `DIR/boxes.json`).
    FromData(DataBoxes),
}

/// One refinement as the user asked for it.
#[derive(Clone, Debug)]
pub struct RefineRequest<'a> {
    /// The ONNX model.
    pub model: &'a Path,
    /// The boxes.
    pub boxes: BoxSource,
    /// A labelled CSV: calibration, the fidelity floor, and the accuracy figures.
    pub data: Option<&'a Path>,
    /// The loop's settings.
    pub options: RefineOptions,
    /// The report folder (boxes made from data are written there too).
    pub out: &'a Path,
}

/// The name of the property file written when boxes are made from data.
pub const DATA_BOXES_FILE: &str = "boxes.json";

/// Imports the model, loads the data and the boxes (making and writing them from the data
/// when asked), runs the refinement and assembles its report (not yet written).
pub fn refine_model(request: &RefineRequest, progress: &dyn Progress) -> Result<RefineReport> {
    let net = import_path(request.model)?;
    let data = request
        .data
        .map(|p| Dataset::load_csv(p, net.input_len()))
        .transpose()?;
    let (props, props_path): (Vec<Property>, PathBuf) = match &request.boxes {
        BoxSource::File(path) => (load_properties(path, net.input_len())?, path.clone()),
        BoxSource::FromData(spec) => {
            let Some(data) = &data else {
                bail!("boxes from data need --data (or give --props FILE)");
            };
            if !(spec.radius.is_finite() && spec.radius > 0.0) {
                bail!("--radius {} must be a positive fraction of each feature's range", spec.radius);
            }
            if spec.count == Some(0) {
                bail!("--boxes 0: give at least one row to box");
            }
            let logits: Vec<Vec<f64>> = data.features.iter().map(|x| net.logits(x)).collect();
            let decision = request.options.verify.decision;
            let classes: Vec<usize> = logits.iter().map(|l| decision.pick(l)).collect();
            let props = spec.make(data, &classes, &logits);
            let path = request.out.join(DATA_BOXES_FILE);
            write_properties(&path, &props)?;
            (props, path)
        }
    };
    let task = Task::with_data(request.model, net, props, data);
    let refinement = refine(&task, &request.options, progress)?;
    let accuracy = match (&task.data, &refinement.config) {
        (Some(d), Some(c)) => Some(accuracy(
            &task,
            c,
            d,
            request.options.min_agreement,
            &refinement.rows_set_aside,
            request.options.verify.decision,
        )?),
        _ => None,
    };
    let mut report = RefineReport::new(
        &task,
        &props_path,
        request.data,
        request.options.search,
        request.options.seed,
        &request.options.verify,
        &refinement,
        accuracy,
        (
            request.options.per_channel == Some(true),
            request.options.uniform_input,
        ),
    )?;
    if let (Some(d), Some(c)) = (&task.data, &refinement.config) {
        report.accuracy_curve = uniform_curve(&task, c, d)?;
    }
    Ok(report)
}
