//! The bundled default model (iris, 4-10-8-3), carried inside the binary so that `ceg4n run`
//! works from any directory, on a machine without the repository.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// The bundled model's files, written out.
#[derive(Clone, Debug)]
pub struct BundledModel {
    /// The ONNX model.
    pub model: PathBuf,
    /// Its boxes (CEG4N property file).
    pub props: PathBuf,
    /// Its labelled test split.
    pub data: PathBuf,
}

const FILES: [(&str, &[u8]); 3] = [
    (
        "iris_mlp.onnx",
        include_bytes!("../../models/iris_mlp.onnx"),
    ),
    (
        "iris_props.json",
        include_bytes!("../../models/iris_props.json"),
    ),
    (
        "iris_test.csv",
        include_bytes!("../../models/iris_test.csv"),
    ),
];

/// Writes the bundled model, its boxes and its test set into `dir` (created if missing).
pub fn write_to(dir: &Path) -> Result<BundledModel> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the directory", dir.display()))?;
    for (name, bytes) in FILES {
        let path = dir.join(name);
        std::fs::write(&path, bytes)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(BundledModel {
        model: dir.join(FILES[0].0),
        props: dir.join(FILES[1].0),
        data: dir.join(FILES[2].0),
    })
}
