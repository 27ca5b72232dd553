//! Code generation: an [`IntNetwork`] becomes a standalone `no_std` crate rendered from the
//! minijinja templates in `templates/crate/`. Every number and type choice is computed here;
//! the templates only lay out and loop. The kernels are ceg4n-runtime itself, vendored into the
//! crate (`runtime/`) byte for byte, so the crate builds offline and runs the proved arithmetic.

use std::path::{Path, PathBuf};

use crate::error::{bail, Context, Result};
use minijinja::{context, Environment};
use serde::Serialize;

use crate::board::Board;
use crate::int_model::{AccWidth, Bias, IntLayer, IntNetwork, LayerOutput};
use ceg4n_runtime::PairedWords;

/// The marker file that identifies a directory as generated (and so safe to replace).
pub const MARKER: &str = ".ceg4n-generated";

/// A box and what was established about it, for the certificate.
#[derive(Clone, Debug, Serialize)]
pub struct CertifiedBox {
    /// Box id.
    pub id: String,
    /// What was established.
    pub status: CertifiedStatus,
}

/// What a certificate says about one box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CertifiedStatus {
    /// Proved at the crate's exact bits.
    #[serde(rename = "proved")]
    Proved,
    /// Refuted at these bits (a replayed counterexample).
    #[serde(rename = "counterexample")]
    Counterexample,
    /// Undecided within the time-out: not claimed.
    #[serde(rename = "unknown")]
    Unknown,
    /// No configuration up to 16 bits can be proved there (see the report).
    #[serde(rename = "excluded")]
    Excluded,
    /// Generated at explicit bits, without a proof.
    #[serde(rename = "not verified")]
    NotVerified,
}

impl From<crate::verify::Status> for CertifiedStatus {
    fn from(status: crate::verify::Status) -> Self {
        match status {
            crate::verify::Status::Proved => CertifiedStatus::Proved,
            crate::verify::Status::Counterexample => CertifiedStatus::Counterexample,
            crate::verify::Status::Unknown => CertifiedStatus::Unknown,
        }
    }
}

/// What the certificate in the crate's README states.
#[derive(Clone, Debug, Serialize)]
pub struct Certificate {
    /// Model file name.
    pub model: String,
    /// SHA-256 of the model file.
    pub model_sha256: String,
    /// Whether every (non-excluded) box was proved at these exact bits.
    pub verified: bool,
    /// Per box.
    pub boxes: Vec<CertifiedBox>,
    /// ceg4n version.
    pub tool_version: String,
    /// Agreement with the float network on the user's data and the floor it met (refine
    /// with `--data`), else `None`: nothing but the boxes constrained accuracy.
    pub fidelity: Option<Fidelity>,
    /// `Some(E)` when the boxes were proved epsilon-equivalent (every dequantized logit within
    /// E of the float one) rather than top-1.
    pub epsilon: Option<f64>,
}

/// What the certificate says about accuracy on the user's data.
#[derive(Clone, Debug, Serialize)]
pub struct Fidelity {
    /// The data file's name.
    pub data: String,
    /// Accuracy, agreement and the floor.
    pub accuracy: crate::refine::Accuracy,
}

/// One test vector: a quantized input and the host model's logits there.
#[derive(Clone, Debug, Serialize)]
pub struct Vector {
    /// Where it comes from (`centre 1.01`, `counterexample`, `random 1.01`, ...).
    pub origin: String,
    /// The quantized input.
    pub input: Vec<i32>,
    /// The logits of the host model (ceg4n-runtime on the host).
    pub logits: Vec<i64>,
    /// The class.
    pub class: usize,
}

/// Everything one generated crate needs.
pub struct CrateSpec<'a> {
    /// Crate name.
    pub name: String,
    /// The network.
    pub net: &'a IntNetwork,
    /// The board it is built for.
    pub board: &'a Board,
    /// The certificate.
    pub certificate: Certificate,
    /// Test vectors checked bit for bit by the crate's host tests.
    pub vectors: Vec<Vector>,
}

#[derive(Serialize)]
struct LayerView {
    index: usize,
    inputs: usize,
    outputs: usize,
    weight_bits: u32,
    /// How the weights are stored: one entry, or two when the `arm-dsp` feature stores them
    /// otherwise (each under its `cfg`).
    storages: Vec<StorageView>,
    acc_type: &'static str,
    bias: String,
    hidden: bool,
    requant: String,
    requant_len: usize,
    range_min: i32,
    range_max: i32,
    act_bits: u32,
}

/// One way a layer's weights are stored, and the kernel call that reads them.
#[derive(Serialize)]
struct StorageView {
    /// The `cfg` predicate that compiles this storage in (`None`: always).
    cfg: Option<&'static str>,
    layout: WeightLayout,
    weight_type: &'static str,
    weights: String,
    weight_len: usize,
    /// The kernel's name suffix and its weights argument, e.g. `_paired` and
    /// `&mut scratch, PairedWords::new(&LAYER0_WEIGHTS, 8)`.
    kernel_suffix: &'static str,
    weights_arg: String,
}

/// The `cfg` predicates of the default build and of the `arm-dsp` build.
const DEFAULT_BUILD: &str = "not(feature = \"arm-dsp\")";
const ARM_DSP_BUILD: &str = "feature = \"arm-dsp\"";

/// The class labels as the template writes them: the element type and the literals.
fn label_view(labels: Option<&crate::ir::ClassLabels>, outputs: usize) -> minijinja::Value {
    use crate::ir::ClassLabels;
    // A const's `&str` is `'static` already; the accessor's return type must say so.
    let (const_type, label_type, items, from_model): (&str, &str, Vec<String>, bool) = match labels
    {
        Some(ClassLabels::Ints(v)) => ("i64", "i64", v.iter().map(i64::to_string).collect(), true),
        Some(ClassLabels::Strings(v)) => (
            "&str",
            "&'static str",
            v.iter().map(|s| format!("{s:?}")).collect(),
            true,
        ),
        // No class table in the model: the class indices, as text.
        None => (
            "&str",
            "&'static str",
            (0..outputs).map(|i| format!("\"{i}\"")).collect(),
            false,
        ),
    };
    context! {
        const_type => const_type,
        label_type => label_type,
        items => items.join(", "),
        from_model => from_model,
    }
}

/// Memory the crate needs, computed from its arrays.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Memory {
    /// Bytes of weight arrays.
    pub weight_bytes: usize,
    /// Bytes of biases and requantization steps.
    pub parameter_bytes: usize,
    /// Bytes of the two activation buffers (ping-pong) plus the logits.
    pub buffer_bytes: usize,
}

pub use crate::int_model::PACK_BELOW_BITS;

mod layout;
mod templates;
mod test_vectors;

pub use layout::WeightLayout;
use layout::{stored_weight_bytes, stored_weights};
use templates::{board_dependencies, boot_block_item, FIRMWARE_TEMPLATES, TEMPLATES};
pub use templates::{RUNTIME_FILES, RUNTIME_SOURCE};
pub use test_vectors::{vectors, RANDOM_VECTORS_PER_BOX};

/// The requantization steps a layer stores: one when every output shares it (per-layer
/// scaling; the runtime applies `requant[0]` to every output then), else one per output.
fn stored_requant(requant: &[ceg4n_runtime::Requant]) -> &[ceg4n_runtime::Requant] {
    match requant.split_first() {
        Some((first, rest)) if rest.iter().all(|r| r == first) => &requant[..1],
        _ => requant,
    }
}

/// The first layer's weights with one negated (test-only: hardware-in-the-loop tests must
/// catch it): the weight of largest magnitude whose negation changes the host model's logits
/// on some test vector (a weight into a neuron no vector activates would go unnoticed), else
/// the largest.
fn corrupted_first_layer(net: &IntNetwork, vectors: &[Vector]) -> Vec<i16> {
    let first = &net.layers[0];
    let mut order: Vec<usize> = (0..first.weights.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(first.weights[*i].unsigned_abs()));
    let negated = |i: usize| {
        let mut w = first.weights.clone();
        w[i] = -w[i];
        w
    };
    // A few candidates suffice: a large weight into a live neuron shows at once.
    let visible = order.iter().copied().take(64).find(|&i| {
        let mut probe = net.clone();
        probe.layers[0].weights = negated(i);
        probe.layers[0].packed =
            crate::int_model::pack_weights(&probe.layers[0].weights, first.weight_bits);
        vectors.iter().any(|v| probe.logits_q(&v.input) != v.logits)
    });
    match visible.or(order.first().copied()) {
        Some(i) => negated(i),
        None => first.weights.clone(),
    }
}

fn activation_type(bits: u32, relu: bool) -> (&'static str, usize) {
    match (bits <= 8, relu) {
        (true, true) => ("u8", 1),
        (true, false) => ("i8", 1),
        (false, true) => ("u16", 2),
        (false, false) => ("i16", 2),
    }
}

fn acc_type(width: AccWidth) -> (&'static str, usize) {
    match width {
        AccWidth::I32 => ("i32", 4),
        AccWidth::I64 => ("i64", 8),
    }
}

/// A comma-separated list, wrapped every `per_line` items (rustfmt-stable layout).
fn list<T: std::fmt::Display>(values: impl IntoIterator<Item = T>) -> String {
    values
        .into_iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The activation type shared by the ping-pong buffers: wide enough for every hidden layer.
fn buffer_type(net: &IntNetwork) -> (&'static str, usize) {
    let mut bits = 0;
    let mut all_relu = true;
    for l in &net.layers {
        if let LayerOutput::Activations { bits: b, relu, .. } = &l.output {
            bits = bits.max(*b);
            all_relu &= *relu;
        }
    }
    activation_type(bits.max(1), all_relu)
}

impl CrateSpec<'_> {
    /// How each layer's weights are stored on this spec's board: in the crate's default
    /// build, or with its opt-in `arm-dsp` feature (paired layers on DSP cores).
    pub fn layouts(&self, arm_dsp: bool) -> Vec<WeightLayout> {
        if !arm_dsp {
            return self.net.layers.iter().map(WeightLayout::unpaired).collect();
        }
        // Hidden activations share one buffer type; the input is `i8` or `i16`.
        let hidden_fits_16 = buffer_type(self.net).0 != "u16";
        let fits: Vec<bool> = (0..self.net.layers.len())
            .map(|i| i == 0 || hidden_fits_16)
            .collect();
        WeightLayout::choose(&self.net.layers, self.board, &fits)
    }

    /// Bytes of the weight arrays in the default build or the `arm-dsp` one.
    pub fn weight_bytes(&self, arm_dsp: bool) -> usize {
        self.net
            .layers
            .iter()
            .zip(self.layouts(arm_dsp))
            .map(|(l, layout)| stored_weight_bytes(l, layout))
            .sum()
    }

    /// Memory figures of the generated arrays.
    pub fn memory(&self) -> Memory {
        let net = self.net;
        let weight_bytes = self.weight_bytes(false);
        let parameter_bytes = net
            .layers
            .iter()
            .map(|l| {
                let bias = l.outputs * acc_type(l.accumulator).1;
                let requant = match &l.output {
                    LayerOutput::Activations { requant, .. } => stored_requant(requant).len() * 8,
                    LayerOutput::Logits => 0,
                };
                bias + requant
            })
            .sum();
        let hidden = net
            .layers
            .iter()
            .filter(|l| matches!(l.output, LayerOutput::Activations { .. }))
            .map(|l| l.outputs)
            .max()
            .unwrap_or(0);
        let last = net
            .layers
            .last()
            .map_or((0, 4), |l| (l.outputs, acc_type(l.accumulator).1));
        Memory {
            weight_bytes,
            parameter_bytes,
            buffer_bytes: 2 * hidden * buffer_type(net).1 + last.0 * last.1,
        }
    }

    /// The template context: every number and choice, computed here.
    /// `corrupt`: the test-only copy of the crate with one first-layer weight negated, which
    /// the firmware's `corrupt-weight` feature runs instead (HIL tests must catch it).
    fn context(&self, corrupt: bool) -> Result<minijinja::Value> {
        let net = self.net;
        if net.layers.is_empty() {
            bail!("the network has no layers");
        }
        let (layouts, dsp_layouts) = (self.layouts(false), self.layouts(true));
        // The test-only copy's first layer has one weight negated (found by evaluating the
        // host model, so only computed for that copy).
        let corrupted = corrupt.then(|| corrupted_first_layer(net, &self.vectors));
        let storage =
            |index: usize, l: &IntLayer, layout: WeightLayout, cfg: Option<&'static str>| {
                let weights = match &corrupted {
                    Some(negated) if index == 0 => negated,
                    _ => &l.weights,
                };
                let (weight_type, stored) =
                    stored_weights(weights, l.inputs, l.weight_bits, layout);
                let (kernel_suffix, weights_arg) = match layout {
                    WeightLayout::Plain => ("", format!("&LAYER{index}_WEIGHTS")),
                    WeightLayout::Packed => (
                        "_packed",
                        format!("Packed::new(&LAYER{index}_WEIGHTS, {})", l.weight_bits),
                    ),
                    WeightLayout::Paired => (
                        "_paired",
                        format!(
                            "&mut scratch, PairedWords::new(&LAYER{index}_WEIGHTS, {})",
                            l.weight_bits
                        ),
                    ),
                };
                StorageView {
                    cfg,
                    layout,
                    weight_type,
                    weight_len: stored.len(),
                    weights: stored.join(", "),
                    kernel_suffix,
                    weights_arg,
                }
            };
        let layers: Vec<LayerView> = net
            .layers
            .iter()
            .zip(layouts.iter().zip(&dsp_layouts))
            .enumerate()
            .map(|(index, (l, (&layout, &dsp_layout)))| {
                let storages = if layout == dsp_layout {
                    vec![storage(index, l, layout, None)]
                } else {
                    vec![
                        storage(index, l, layout, Some(DEFAULT_BUILD)),
                        storage(index, l, dsp_layout, Some(ARM_DSP_BUILD)),
                    ]
                };
                let (at, _) = acc_type(l.accumulator);
                let bias = match &l.bias {
                    Bias::I32(b) => list(b),
                    Bias::I64(b) => list(b),
                };
                let (hidden, requant, requant_len, range_min, range_max, act_bits) = match &l.output
                {
                    LayerOutput::Activations {
                        range,
                        requant,
                        bits,
                        ..
                    } => (
                        true,
                        stored_requant(requant)
                            .iter()
                            .map(|r| {
                                format!(
                                    "Requant {{ multiplier: {}, shift: {} }}",
                                    r.multiplier, r.shift
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", "),
                        stored_requant(requant).len(),
                        range.min,
                        range.max,
                        *bits,
                    ),
                    LayerOutput::Logits => (false, String::new(), 0, 0, 0, 0),
                };
                LayerView {
                    index,
                    inputs: l.inputs,
                    outputs: l.outputs,
                    weight_bits: l.weight_bits,
                    storages,
                    acc_type: at,
                    bias,
                    hidden,
                    requant,
                    requant_len,
                    range_min,
                    range_max,
                    act_bits,
                }
            })
            .collect();
        let last = net.layers.last().expect("checked non-empty");
        let input_type = if net.input.bits <= 8 { "i8" } else { "i16" };
        let hidden_max = layers
            .iter()
            .filter(|l| l.hidden)
            .map(|l| l.outputs)
            .max()
            .unwrap_or(1);
        let memory = self.memory();
        // The runtime items each build uses: those of both go in one `use`, the others in one
        // `use` per build (an unused import would warn).
        let imports_of = |layouts: &[WeightLayout]| -> Vec<&'static str> {
            let uses = |hidden: bool, layout: WeightLayout| {
                net.layers.iter().zip(layouts).any(|(l, ly)| {
                    matches!(l.output, LayerOutput::Activations { .. }) == hidden && *ly == layout
                })
            };
            let any = |layout: WeightLayout| layouts.contains(&layout);
            let hidden = layers.iter().any(|l| l.hidden);
            [
                ("argmax", true),
                ("dense_accumulate", uses(false, WeightLayout::Plain)),
                ("dense_accumulate_packed", uses(false, WeightLayout::Packed)),
                ("dense_accumulate_paired", uses(false, WeightLayout::Paired)),
                ("dense_requantize", uses(true, WeightLayout::Plain)),
                ("dense_requantize_packed", uses(true, WeightLayout::Packed)),
                ("dense_requantize_paired", uses(true, WeightLayout::Paired)),
                ("ActRange", hidden),
                ("Packed", any(WeightLayout::Packed)),
                ("PairedWords", any(WeightLayout::Paired)),
                ("Requant", hidden),
            ]
            .into_iter()
            .filter_map(|(name, used)| used.then_some(name))
            .collect()
        };
        let (default_imports, dsp_imports) = (imports_of(&layouts), imports_of(&dsp_layouts));
        let common: Vec<&str> = default_imports
            .iter()
            .copied()
            .filter(|i| dsp_imports.contains(i))
            .collect();
        let only = |these: &[&'static str]| -> String {
            these
                .iter()
                .copied()
                .filter(|i| !common.contains(i))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (default_only_imports, dsp_only_imports) = (only(&default_imports), only(&dsp_imports));
        let ctx = context! {
            corrupt => corrupt,
            corrupt_name => format!("{}-corrupt", self.name),
            imports => common.join(", "),
            default_only_imports => default_only_imports,
            dsp_only_imports => dsp_only_imports,
            default_build => DEFAULT_BUILD,
            dsp_build => ARM_DSP_BUILD,
            name => &self.name,
            crate_ident => self.name.replace('-', "_"),
            board => self.board,
            layers => &layers,
            inputs => net.input_len(),
            outputs => last.outputs,
            input_bits => net.input.bits,
            input_type => input_type,
            input_min => net.input.range().min,
            input_max => net.input.range().max,
            frac_bits => list(&net.input.frac_bits),
            logit_type => acc_type(last.accumulator).0,
            logit_scale => list(last.acc_scale.iter().map(|s| format!("{s:e}"))),
            buffer_type => buffer_type(net).0,
            hidden_max => hidden_max,
            // Scratch of the paired kernels: the largest paired layer's activation pairs and
            // row sums.
            scratch_len => net
                .layers
                .iter()
                .zip(&dsp_layouts)
                .filter(|(_, layout)| **layout == WeightLayout::Paired)
                .map(|(l, _)| PairedWords::scratch_for(l.inputs, l.outputs, l.weight_bits))
                .max(),
            memory => memory,
            certificate => &self.certificate,
            vectors => self.vectors.iter().map(|v| context! {
                origin => &v.origin,
                input => list(&v.input),
                logits => list(&v.logits),
                class => v.class,
            }).collect::<Vec<_>>(),
            vector_count => self.vectors.len(),
            labels => label_view(net.class_labels.as_ref(), last.outputs),
            runtime_version => env!("CARGO_PKG_VERSION"),
            boot_block_item => boot_block_item(self.board.boot_block),
            board_dependencies => board_dependencies(self.board),
            flash_origin => format!("0x{:08x}", self.board.flash_origin),
            ram_origin => format!("0x{:08x}", self.board.ram_origin),
        };
        Ok(ctx)
    }

    fn render(&self) -> Result<Vec<(String, String)>> {
        let mut files = render_all(TEMPLATES, &self.context(false)?)?;
        for (file, text) in RUNTIME_FILES {
            files.push((format!("runtime/src/{file}"), (*text).into()));
        }
        files.push((
            MARKER.into(),
            "This directory was written by `ceg4n generate`; it may replace it.\n".into(),
        ));
        Ok(files)
    }

    /// Writes the crate to `out` atomically (see [`write_atomically`]).
    pub fn write(&self, out: &Path, force: bool) -> Result<PathBuf> {
        write_atomically(
            &self.render()?,
            out,
            force,
            &[
                "src/lib.rs",
                "tests/vectors.rs",
                "examples/classify.rs",
                "build.rs",
            ],
        )
    }

    /// Writes the firmware crate for the board to `out`, next to this crate written to
    /// `out/../crate`: it runs every vector and reports each output over semihosting.
    pub fn write_firmware(&self, out: &Path, force: bool) -> Result<PathBuf> {
        let mut files = render_all(FIRMWARE_TEMPLATES, &self.context(false)?)?;
        // The test-only corrupted model lives with the firmware, not in the product crate.
        let corrupt: Vec<(&str, &str)> = TEMPLATES
            .iter()
            .copied()
            .filter(|(path, _)| ["Cargo.toml", "src/lib.rs"].contains(path))
            .collect();
        // It uses the real crate's runtime (one runtime in the build).
        for (path, text) in render_all(&corrupt, &self.context(true)?)? {
            files.push((format!("corrupt-model/{path}"), text));
        }
        files.push((
            MARKER.into(),
            "This directory was written by `ceg4n hil`; it may replace it.\n".into(),
        ));
        write_atomically(&files, out, force, &["src/main.rs", "build.rs"])
    }
}

fn render_all(templates: &[(&str, &str)], ctx: &minijinja::Value) -> Result<Vec<(String, String)>> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    templates
        .iter()
        .map(|(path, source)| {
            let text = env
                .render_str(source, ctx)
                .with_context(|| format!("template {path}"))?;
            Ok((path.to_string(), text))
        })
        .collect()
}

/// Writes `files` into `out`: into a sibling temporary directory first (rustfmt'ed), then
/// renamed into place, so `out` is never half-written. An existing `out` is replaced only if
/// it was generated (it holds the marker file) or `force` is set.
fn write_atomically(
    files: &[(String, String)],
    out: &Path,
    force: bool,
    rust_sources: &[&str],
) -> Result<PathBuf> {
    if out.exists() && !out.join(MARKER).exists() && !force {
        bail!(
            "{}: exists and was not generated by ceg4n; pass --force to replace it",
            out.display()
        );
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("{}: cannot create", parent.display()))?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("crate"),
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let written = (|| -> Result<()> {
        for (path, text) in files {
            let target = tmp.join(path);
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&target, text)
                .with_context(|| format!("{}: cannot write", target.display()))?;
        }
        rustfmt(&tmp, rust_sources)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if out.exists() {
        std::fs::remove_dir_all(out)
            .with_context(|| format!("{}: cannot replace", out.display()))?;
    }
    std::fs::rename(&tmp, out).with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(out.to_path_buf())
}

/// Formats the generated Rust sources with rustfmt when it is installed (it ships with every
/// rustup toolchain); the layout is then exactly what `cargo fmt` would leave.
pub fn rustfmt(dir: &Path, sources: &[&str]) -> Result<()> {
    let sources: Vec<PathBuf> = sources.iter().map(|p| dir.join(p)).collect();
    match std::process::Command::new("rustfmt")
        .args(["--edition", "2021"])
        .args(&sources)
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("rustfmt failed on the generated crate ({s})"),
        // No rustfmt: the crate is still valid Rust, only not normalised.
        Err(_) => Ok(()),
    }
}
