//! One verification task: a float network, its property boxes, the user's data rows (if any),
//! the calibration those boxes and rows give, and tract's f32 run of the model file for
//! replaying counterexamples. `verify`, `bench verify` and `refine` all start from it, so they
//! quantize and replay alike.

use std::path::{Path, PathBuf};

use crate::error::Result;

use crate::data::{Dataset, Property};
use crate::int_model::IntNetwork;
use crate::ir::Network;
use crate::quantize::{paper_fake_quantize, quantize, Calibration, QuantConfig};
use crate::tract_reference::TractReference;
use crate::verify::{Comparison, Quantized, VerifyOptions};

/// A network and the boxes it is verified on.
pub struct Task {
    /// The ONNX file.
    pub model_path: PathBuf,
    /// The imported float network.
    pub net: Network,
    /// The boxes.
    pub props: Vec<Property>,
    /// The user's data rows (`--data`): they calibrate, and refinement keeps the integer
    /// network's agreement with the float one on them above a floor.
    pub data: Option<Dataset>,
    /// Activation ranges sampled from the boxes and the data rows.
    pub calibration: Calibration,
    /// tract's f32 inference of the model file, when tract can run it.
    pub reference: Option<TractReference>,
}

impl Task {
    /// Calibrates on the boxes and loads tract's reference run.
    pub fn new(model_path: &Path, net: Network, props: Vec<Property>) -> Task {
        Task::with_data(model_path, net, props, None)
    }

    /// Calibrates on the boxes and the data rows: the integer network's ranges then cover the
    /// inputs the model will see, not only the neighbourhoods of a few boxes.
    pub fn with_data(
        model_path: &Path,
        net: Network,
        props: Vec<Property>,
        data: Option<Dataset>,
    ) -> Task {
        let mut calibration = Calibration::from_boxes(&net, &props);
        if let Some(d) = &data {
            calibration = calibration.union(&Calibration::from_points(&net, &d.features));
        }
        Task::with_calibration(model_path, net, props, data, calibration)
    }

    /// A task with a calibration recorded earlier (a refine report's), so that the network
    /// quantizes exactly as it did when it was verified.
    pub fn with_calibration(
        model_path: &Path,
        net: Network,
        props: Vec<Property>,
        data: Option<Dataset>,
        calibration: Calibration,
    ) -> Task {
        let reference = TractReference::load(model_path, &net).ok();
        Task {
            model_path: model_path.to_path_buf(),
            net,
            props,
            data,
            calibration,
            reference,
        }
    }

    /// The comparison of this task's float network with `quantized`, with tract's cross-check
    /// of the ONNX file when it loaded.
    pub fn compare<'a>(
        &'a self,
        quantized: Quantized<'a>,
        options: &'a VerifyOptions,
    ) -> Comparison<'a> {
        Comparison::new(&self.net, quantized, options).with_reference(self.reference.as_ref())
    }

    /// The integer network at `config`, calibrated on the boxes.
    pub fn quantize(&self, config: &QuantConfig) -> Result<IntNetwork> {
        quantize(&self.net, config, &self.calibration)
    }

    /// The paper artifact's fake-quantized network at `config`'s weight bits.
    pub fn paper_network(&self, config: &QuantConfig) -> Network {
        paper_fake_quantize(&self.net, &config.weight_bits)
    }
}
