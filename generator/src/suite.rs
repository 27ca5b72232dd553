//! A benchmark suite folder laid out like the CEG4N paper's (`networks/NAME.onnx`,
//! `properties/NAME.json`, and a README with the artifact's results).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{bail, Context, Result};
use serde::Serialize;

/// What the paper's artifact reached on one network (from the suite README).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ArtifactResult {
    /// Boxes it proved in its final round.
    pub proved: Option<u32>,
    /// Median seconds per proof.
    pub median_seconds: Option<f64>,
    /// Largest seconds per proof.
    pub max_seconds: Option<f64>,
    /// Its final weight bits per layer.
    pub bits: Option<Vec<u32>>,
}

/// A suite folder.
#[derive(Clone, Debug)]
pub struct Suite {
    /// The folder.
    pub root: PathBuf,
    /// Network names that have both a model and a property file, sorted.
    pub networks: Vec<String>,
    /// The artifact's results by network name (empty without a README).
    pub artifact: BTreeMap<String, ArtifactResult>,
}

impl Suite {
    /// Reads the folder.
    pub fn load(root: &Path) -> Result<Suite> {
        let networks_dir = root.join("networks");
        let entries = std::fs::read_dir(&networks_dir).with_context(|| {
            format!(
                "{}: not a suite folder (expected networks/ and properties/)",
                root.display()
            )
        })?;
        let mut networks: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let path = e.path();
                (path.extension()? == "onnx")
                    .then(|| path.file_stem()?.to_str().map(String::from))?
            })
            .filter(|name| {
                root.join("properties")
                    .join(format!("{name}.json"))
                    .exists()
            })
            .collect();
        networks.sort();
        if networks.is_empty() {
            bail!(
                "{}: no network with a matching properties/NAME.json",
                root.display()
            );
        }
        let artifact = std::fs::read_to_string(root.join("README.md"))
            .map(|text| parse_artifact_results(&text))
            .unwrap_or_default();
        Ok(Suite {
            root: root.to_path_buf(),
            networks,
            artifact,
        })
    }

    /// The model file of a network.
    pub fn model(&self, name: &str) -> PathBuf {
        self.root.join("networks").join(format!("{name}.onnx"))
    }

    /// The labelled test set of a network's family (`datasets/<family>_test.csv`, where the
    /// family is the name up to its first `_`), if the suite has one.
    pub fn test_set(&self, name: &str) -> Option<PathBuf> {
        let family = name.split('_').next()?;
        let path = self
            .root
            .join("datasets")
            .join(format!("{family}_test.csv"));
        path.exists().then_some(path)
    }

    /// The property file of a network.
    pub fn properties(&self, name: &str) -> PathBuf {
        self.root.join("properties").join(format!("{name}.json"))
    }
}

/// Reads the artifact's per-network table rows (`| name | proved | median | max |`) and its
/// bit-width list (`name b1,b2,.. · name ...`).
pub fn parse_artifact_results(readme: &str) -> BTreeMap<String, ArtifactResult> {
    let mut out: BTreeMap<String, ArtifactResult> = BTreeMap::new();
    for line in readme.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if line.trim_start().starts_with('|') && cells.len() == 4 {
            if let (Ok(proved), Ok(median), Ok(max)) = (
                cells[1].parse::<u32>(),
                cells[2].parse::<f64>(),
                cells[3].parse::<f64>(),
            ) {
                let entry = out.entry(cells[0].to_string()).or_default();
                entry.proved = Some(proved);
                entry.median_seconds = Some(median);
                entry.max_seconds = Some(max);
            }
            continue;
        }
        for part in line.split('·') {
            let words: Vec<&str> = part.split_whitespace().collect();
            if let [name, bits] = words.as_slice() {
                let parsed: Result<Vec<u32>, _> = bits
                    .trim_end_matches('.')
                    .split(',')
                    .map(str::parse)
                    .collect();
                if let (Ok(bits), true) = (parsed, name.contains('_')) {
                    out.entry(name.to_string()).or_default().bits = Some(bits);
                }
            }
        }
    }
    out
}
