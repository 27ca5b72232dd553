//! Input data: labelled CSV files and CEG4N property files (boxes around points).

use std::path::Path;

use crate::error::{bail, input_error, Context, Result};
use crate::ir::{ClassLabels, Network};
use serde::Deserialize;

/// Labelled feature vectors.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// One feature vector per row.
    pub features: Vec<Vec<f64>>,
    /// One class label per row.
    pub labels: Vec<usize>,
}

/// A CEG4N property: an L-inf box around a point, with the float network's logits there.
#[derive(Clone, Debug)]
pub struct Property {
    /// Identifier, e.g. "1.01".
    pub id: String,
    /// The centre point.
    pub x: Vec<f64>,
    /// Lower corner of the box (already clipped to the input domain).
    pub lower: Vec<f64>,
    /// Upper corner of the box.
    pub upper: Vec<f64>,
    /// Reference logits of the float network at `x`, if recorded.
    pub y: Option<Vec<f64>>,
    /// The L-inf radius, if recorded.
    pub ball_size: Option<f64>,
}

impl Property {
    /// Whether `other`'s box lies inside this one (a proof here covers it).
    pub fn contains(&self, other: &Property) -> bool {
        self.lower.len() == other.lower.len()
            && self.lower.iter().zip(&other.lower).all(|(a, b)| a <= b)
            && self.upper.iter().zip(&other.upper).all(|(a, b)| a >= b)
    }

    /// Whether the point `x` lies in the box.
    pub fn contains_point(&self, x: &[f64]) -> bool {
        x.len() == self.lower.len()
            && x.iter()
                .zip(self.lower.iter().zip(&self.upper))
                .all(|(v, (l, u))| l <= v && v <= u)
    }

    /// The centre, the corners (all of them when there are at most `max_exhaustive` inputs,
    /// else `sampled_corners` random ones) and `samples` uniform points of the box.
    pub fn sample_points(
        &self,
        max_exhaustive: usize,
        sampled_corners: usize,
        samples: usize,
        rng: &mut impl rand::Rng,
    ) -> Vec<Vec<f64>> {
        let n = self.lower.len();
        let exhaustive = n <= max_exhaustive;
        let corners = if exhaustive {
            1usize << n
        } else {
            sampled_corners
        };
        let mut points = Vec::with_capacity(1 + corners + samples);
        points.push(self.x.clone());
        for c in 0..corners {
            points.push(
                (0..n)
                    .map(|i| {
                        let up = if exhaustive {
                            (c >> i) & 1 == 1
                        } else {
                            rng.random()
                        };
                        if up {
                            self.upper[i]
                        } else {
                            self.lower[i]
                        }
                    })
                    .collect(),
            );
        }
        for _ in 0..samples {
            points.push(
                (0..n)
                    .map(|i| self.lower[i] + (self.upper[i] - self.lower[i]) * rng.random::<f64>())
                    .collect(),
            );
        }
        points
    }
}

/// What a `--data` file holds.
#[derive(Clone, Debug)]
pub enum DataFile {
    /// A labelled CSV.
    Csv(Dataset),
    /// A property JSON.
    Properties(Vec<Property>),
}

impl DataFile {
    /// Reads a CSV (by extension `.csv`, labels as [`Dataset::load_csv_for`]) or a property
    /// JSON (anything else that parses as JSON), checking that rows fit `net`'s input.
    pub fn load(path: &Path, net: &Network) -> Result<DataFile> {
        let is_csv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if is_csv {
            Ok(DataFile::Csv(Dataset::load_csv_for(path, net)?))
        } else {
            Ok(DataFile::Properties(load_properties(
                path,
                net.input_len(),
            )?))
        }
    }
}

impl Dataset {
    /// Reads a CSV of `features` feature columns followed by an integer `label` column (the
    /// class index). A first line that does not parse as numbers is taken as the header.
    pub fn load_csv(path: &Path, features: usize) -> Result<Dataset> {
        Self::read_csv(path, features, None)
    }

    /// Reads a CSV for `net`: its input features, then a label column written as the model's
    /// class labels when the graph has a class table (e.g. `barolo`, or `3` of classes
    /// `[1, 3, 5]`), else as the class index.
    pub fn load_csv_for(path: &Path, net: &Network) -> Result<Dataset> {
        Self::read_csv(path, net.input_len(), net.head.labels.as_ref())
    }

    fn read_csv(path: &Path, features: usize, labels: Option<&ClassLabels>) -> Result<Dataset> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut data = Dataset::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            // A first line with a cell that is not a number (or, with a class table, a label
            // cell that is not a label) is the header.
            let not_number = |c: &&str| c.parse::<f64>().is_err();
            let not_label = |c: &&str| match labels {
                Some(table) => table.index_of(c.trim_matches('"')).is_none(),
                None => not_number(c),
            };
            let header = cells[..features.min(cells.len())].iter().any(not_number)
                || cells.get(features).is_some_and(not_label);
            if n == 0 && header {
                continue;
            }
            if cells.len() != features + 1 {
                bail!(
                    "{} line {}: {} columns, expected {} ({features} features + label)",
                    path.display(),
                    n + 1,
                    cells.len(),
                    features + 1
                );
            }
            let parsed: Result<Vec<f64>, _> =
                cells[..features].iter().map(|c| c.parse::<f64>()).collect();
            let Ok(values) = parsed else {
                bail!(
                    "{} line {}: a feature is not a number",
                    path.display(),
                    n + 1
                );
            };
            let cell = cells[features].trim_matches('"');
            let label = match labels {
                Some(table) => table.index_of(cell),
                None => cell
                    .parse::<f64>()
                    .ok()
                    .filter(|v| *v >= 0.0 && v.fract() == 0.0)
                    .map(|v| v as usize),
            };
            let Some(label) = label else {
                match labels {
                    Some(table) => bail!(
                        "{} line {}: label '{cell}' is not one of the model's class labels ({})",
                        path.display(),
                        n + 1,
                        (0..table.len().min(10))
                            .filter_map(|i| table.label(i))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => bail!(
                        "{} line {}: label {cell} is not a class index",
                        path.display(),
                        n + 1
                    ),
                }
            };
            if values.iter().any(|v| !v.is_finite()) {
                bail!("{} line {}: NaN or infinite value", path.display(), n + 1);
            }
            data.features.push(values);
            data.labels.push(label);
        }
        if data.features.is_empty() {
            bail!("{}: no data rows", path.display());
        }
        Ok(data)
    }
}

#[derive(Deserialize)]
struct RawProperty {
    id: serde_json::Value,
    x: serde_json::Value,
    lower_bounds: serde_json::Value,
    upper_bounds: serde_json::Value,
    #[serde(default)]
    y: Option<serde_json::Value>,
    #[serde(default)]
    ball_size: Option<f64>,
}

/// Reads a CEG4N property file: a JSON list of boxes (nested arrays are flattened).
pub fn load_properties(path: &Path, features: usize) -> Result<Vec<Property>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let raw: Vec<RawProperty> = serde_json::from_str(&text).map_err(|e| {
        input_error!(
            "{}: not a CEG4N property file ({e}); expected a JSON list of {{id, x, lower_bounds, upper_bounds, y}}, or use a .csv",
            path.display()
        )
    })?;
    if raw.is_empty() {
        bail!("{}: no properties", path.display());
    }
    raw.into_iter()
        .map(|r| {
            let id = match &r.id {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let vector = |v: &serde_json::Value, what: &str| -> Result<Vec<f64>> {
                let flat = flatten(v).ok_or_else(|| {
                    input_error!(
                        "{} property {id}: `{what}` is not a (nested) list of numbers",
                        path.display()
                    )
                })?;
                if flat.len() != features {
                    bail!(
                        "{} property {id}: `{what}` has {} values, the model takes {features}",
                        path.display(),
                        flat.len()
                    );
                }
                Ok(flat)
            };
            let (x, lower, upper) = (
                vector(&r.x, "x")?,
                vector(&r.lower_bounds, "lower_bounds")?,
                vector(&r.upper_bounds, "upper_bounds")?,
            );
            if lower.iter().zip(&upper).any(|(l, u)| l > u) {
                bail!(
                    "{} property {id}: a lower bound exceeds its upper bound",
                    path.display()
                );
            }
            let y = match &r.y {
                Some(v) => Some(flatten(v).ok_or_else(|| {
                    input_error!(
                        "{} property {id}: `y` is not a list of numbers",
                        path.display()
                    )
                })?),
                None => None,
            };
            Ok(Property {
                id,
                x,
                lower,
                upper,
                y,
                ball_size: r.ball_size,
            })
        })
        .collect()
}

fn flatten(v: &serde_json::Value) -> Option<Vec<f64>> {
    match v {
        serde_json::Value::Number(n) => n.as_f64().map(|x| vec![x]),
        serde_json::Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                out.extend(flatten(item)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// L-inf boxes of `radius` around every row of a dataset, clipped to `domain` if given; ids
/// are "row N" (1-based data rows). A row whose box misses the domain entirely is an error.
pub fn boxes_around(
    data: &Dataset,
    radius: f64,
    domain: Option<(f64, f64)>,
) -> Result<Vec<Property>> {
    let (lo, hi) = domain.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
    data.features
        .iter()
        .enumerate()
        .map(|(n, x)| {
            let lower: Vec<f64> = x.iter().map(|v| (v - radius).max(lo)).collect();
            let upper: Vec<f64> = x.iter().map(|v| (v + radius).min(hi)).collect();
            if lower.iter().zip(&upper).any(|(l, u)| l > u) {
                bail!(
                    "data row {}: its box of radius {radius} lies outside the domain {lo}..{hi}",
                    n + 1
                );
            }
            Ok(Property {
                id: format!("row {}", n + 1),
                x: x.clone(),
                lower,
                upper,
                y: None,
                ball_size: Some(radius),
            })
        })
        .collect()
}

/// Boxes made from data rows when the user gives no property file (`--boxes`, `--radius`).
#[derive(Clone, Copy, Debug)]
pub struct DataBoxes {
    /// Rows boxed; `None`: 10 per float class, at most [`MAX_DATA_BOXES`].
    pub count: Option<usize>,
    /// Half-width of each box as a fraction of each feature's range in the data.
    pub radius: f64,
    /// Seed of the row choice.
    pub seed: u64,
}

/// Rows boxed per float class by default.
pub const DATA_BOXES_PER_CLASS: usize = 10;

/// The most boxes made from data.
pub const MAX_DATA_BOXES: usize = 100;

/// The default `--radius`: 1% of each feature's range.
pub const DEFAULT_DATA_BOX_RADIUS: f64 = 0.01;

impl DataBoxes {
    /// Boxes around rows of `data`, chosen deterministically (seeded) and stratified by the
    /// float class `classes[row]`: classes take turns, each giving its rows in a seeded
    /// shuffled order, until `count` rows are taken. Each box spans `radius` times the
    /// feature's range in the data on either side of the row, clipped to that range; a
    /// feature constant in the data stays at its value. Ids are "row N" (1-based data rows).
    pub fn make(&self, data: &Dataset, classes: &[usize], logits: &[Vec<f64>]) -> Vec<Property> {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let class_count = classes.iter().max().map_or(0, |m| m + 1);
        let count = self
            .count
            .unwrap_or(DATA_BOXES_PER_CLASS * class_count)
            .min(MAX_DATA_BOXES)
            .min(data.features.len());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); class_count];
        for (row, class) in classes.iter().enumerate() {
            by_class[*class].push(row);
        }
        for rows in &mut by_class {
            rows.shuffle(&mut rng);
            rows.reverse(); // popped from the back: the shuffled order
        }
        let mut chosen = Vec::with_capacity(count);
        while chosen.len() < count {
            for rows in &mut by_class {
                if chosen.len() < count {
                    chosen.extend(rows.pop());
                }
            }
        }
        chosen.sort_unstable();
        let n = data.features.first().map_or(0, Vec::len);
        let (mut lo, mut hi) = (vec![f64::INFINITY; n], vec![f64::NEG_INFINITY; n]);
        for x in &data.features {
            for i in 0..n {
                lo[i] = lo[i].min(x[i]);
                hi[i] = hi[i].max(x[i]);
            }
        }
        chosen
            .into_iter()
            .map(|row| {
                let x = &data.features[row];
                // Bounds and centre as f32, the precision of property files and device inputs.
                let f = |v: f64| v as f32 as f64;
                let half = |i: usize| self.radius * (hi[i] - lo[i]);
                Property {
                    id: format!("row {}", row + 1),
                    x: x.iter().map(|v| f(*v)).collect(),
                    lower: (0..n).map(|i| f((x[i] - half(i)).max(lo[i]))).collect(),
                    upper: (0..n).map(|i| f((x[i] + half(i)).min(hi[i]))).collect(),
                    y: Some(logits[row].clone()),
                    ball_size: Some(self.radius),
                }
            })
            .collect()
    }
}

/// Writes boxes as a CEG4N property file (the format [`load_properties`] reads).
pub fn write_properties(path: &Path, props: &[Property]) -> Result<()> {
    let list: Vec<serde_json::Value> = props
        .iter()
        .map(|p| {
            // Values are written as f64 so that they read back exactly (boxes made from data
            // already hold f32-representable values).
            let values = |v: &[f64]| v.to_vec();
            serde_json::json!({
                "id": p.id,
                "ball_size": p.ball_size,
                "x": [values(&p.x)],
                "lower_bounds": [values(&p.lower)],
                "upper_bounds": [values(&p.upper)],
                "input_shape": [1, p.x.len()],
                "output_shape": [1, p.y.as_ref().map_or(0, Vec::len)],
                "y": p.y.as_ref().map(|y| vec![y.clone()]),
            })
        })
        .collect();
    let text = serde_json::to_string_pretty(&list)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the directory", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(rows: &[[f64; 2]]) -> Dataset {
        Dataset {
            features: rows.iter().map(|r| r.to_vec()).collect(),
            labels: vec![0; rows.len()],
        }
    }

    #[test]
    fn boxes_from_data_are_stratified_seeded_and_inside_the_data_range() {
        let rows: Vec<[f64; 2]> = (0..30).map(|i| [i as f64, 100.0 - i as f64]).collect();
        let data = dataset(&rows);
        let classes: Vec<usize> = (0..30).map(|i| if i < 24 { 0 } else { 1 }).collect();
        let logits: Vec<Vec<f64>> = classes.iter().map(|c| vec![*c as f64, 0.5]).collect();
        let spec = DataBoxes {
            count: Some(6),
            radius: 0.1,
            seed: 3,
        };
        let boxes = spec.make(&data, &classes, &logits);
        assert_eq!(boxes.len(), 6);
        // Classes take turns: 3 rows of each, although class 1 has only 6 rows of 30.
        let row = |p: &Property| p.id["row ".len()..].parse::<usize>().unwrap() - 1;
        assert_eq!(boxes.iter().filter(|p| classes[row(p)] == 1).count(), 3);
        for p in &boxes {
            assert!(p.contains_point(&p.x));
            // Half-width 0.1 * range 29, clipped to the data's range.
            assert!(p.upper[0] - p.x[0] <= 2.9 + 1e-6, "{p:?}");
            assert!(p.lower[0] >= 0.0 && p.upper[0] <= 29.0, "{p:?}");
        }
        // Same seed, same boxes; another seed, other rows.
        let again = spec.make(&data, &classes, &logits);
        assert_eq!(
            boxes.iter().map(|p| &p.id).collect::<Vec<_>>(),
            again.iter().map(|p| &p.id).collect::<Vec<_>>()
        );
        // Default: 10 per class, capped by the rows there are.
        let all = DataBoxes {
            count: None,
            ..spec
        }
        .make(&data, &classes, &logits);
        assert_eq!(all.len(), 20);
    }

    #[test]
    fn written_boxes_read_back_exactly() {
        let data = dataset(&[[0.1, 0.7], [0.3, 0.2], [0.9, 0.4]]);
        let classes = vec![0, 1, 0];
        let logits = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![2.0, 1.0]];
        let spec = DataBoxes {
            count: None,
            radius: 0.013,
            seed: 0,
        };
        let boxes = spec.make(&data, &classes, &logits);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("boxes.json");
        write_properties(&path, &boxes).unwrap();
        let read = load_properties(&path, 2).unwrap();
        assert_eq!(read.len(), boxes.len());
        for (a, b) in boxes.iter().zip(&read) {
            assert_eq!(
                (&a.id, &a.x, &a.lower, &a.upper),
                (&b.id, &b.x, &b.lower, &b.upper)
            );
            assert_eq!(a.y, b.y);
        }
    }

    #[test]
    fn box_nesting() {
        let outer = Property {
            id: "o".into(),
            x: vec![0.5],
            lower: vec![0.0],
            upper: vec![1.0],
            y: None,
            ball_size: None,
        };
        let inner = Property {
            id: "i".into(),
            lower: vec![0.25],
            upper: vec![0.75],
            ..outer.clone()
        };
        assert!(outer.contains(&inner) && !inner.contains(&outer));
        assert!(outer.contains(&outer));
        assert!(inner.contains_point(&[0.25]) && !inner.contains_point(&[0.8]));
    }
}
