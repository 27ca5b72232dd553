//! Arguments shared by several subcommands.

use std::path::PathBuf;

use anyhow::{bail, Result};

use ceg4n::pipeline::{BitsSpec, CrateSource};
use ceg4n::quantize::DEFAULT_INPUT_BITS;
use ceg4n::report::RefineReport;
use ceg4n::verify::Decision;

/// The refinement search strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SearchArg {
    /// Per-width bisection screened on counterexamples and sampled points.
    Default,
    /// The CEG4N artifact's (1+2) evolutionary search, for comparison.
    Ga,
}

/// Settings of `refine` (and of the refinement inside `run`).
#[derive(clap::Args)]
pub(crate) struct RefineArgs {
    /// A labelled CSV (feature columns, then `label`): it calibrates the activation ranges,
    /// sets the fidelity floor (--min-agreement), and gives float, refined and
    /// uniform-baseline accuracy.
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// The fidelity floor: the refined integer network must pick the float network's class on
    /// at least this fraction of the --data rows (0..=1).
    #[arg(long, default_value_t = ceg4n::refine::DEFAULT_MIN_AGREEMENT)]
    pub(crate) min_agreement: f64,
    /// Without --props: box this many data rows, stratified by float class [default: 10 per
    /// class, at most 100].
    #[arg(long)]
    pub(crate) boxes: Option<usize>,
    /// Without --props: each box spans this fraction of each feature's range in the data on
    /// either side of its row [default: 0.01].
    #[arg(long)]
    pub(crate) radius: Option<f64>,
    /// Seed of every random choice (same seed, same result).
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// The whole refinement ends within this many seconds (a proof cut short is unknown),
    /// with the smallest configuration proved by then.
    #[arg(long, default_value_t = 300.0)]
    pub(crate) time_limit: f64,
    /// At most this many rounds.
    #[arg(long, default_value_t = 50)]
    pub(crate) max_rounds: usize,
    /// Always scale hidden-layer weights per output channel (default: the search chooses).
    #[arg(long)]
    pub(crate) per_channel: bool,
    /// One input fixed-point format for all features (default: one per feature).
    #[arg(long)]
    pub(crate) uniform_input: bool,
    #[command(flatten)]
    pub(crate) proof: ProofArgs,
}

/// How each box is proved, shared by every command that verifies.
#[derive(clap::Args)]
pub(crate) struct ProofArgs {
    /// Seconds allowed per box.
    #[arg(long, default_value_t = 60.0)]
    pub(crate) timeout: f64,
    /// Boxes verified in parallel (default: the number of cores).
    #[arg(long)]
    pub(crate) jobs: Option<usize>,
    /// Classes are the smallest score (advisory networks such as ACAS Xu).
    #[arg(long)]
    pub(crate) argmin: bool,
    /// Prove epsilon-equivalence instead of top-1 (the paper's ACAS Xu property): every
    /// dequantized logit within E of the float one.
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) epsilon: Option<f64>,
}

impl ProofArgs {
    /// The verification options the flags ask for.
    pub(crate) fn options(&self) -> Result<ceg4n::verify::VerifyOptions> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            bail!(
                "--timeout {} must be a positive number of seconds",
                self.timeout
            );
        }
        let equivalence = match self.epsilon {
            None => ceg4n::verify::Equivalence::Top1,
            Some(e) if e.is_finite() && e >= 0.0 => ceg4n::verify::Equivalence::Epsilon(e),
            Some(e) => bail!("--epsilon {e} must be a non-negative number"),
        };
        Ok(ceg4n::verify::VerifyOptions {
            equivalence,
            decision: if self.argmin {
                Decision::ArgMin
            } else {
                Decision::ArgMax
            },
            timeout: std::time::Duration::from_secs_f64(self.timeout),
            ..Default::default()
        })
    }

    pub(crate) fn jobs(&self) -> usize {
        self.jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// How boxes are decided, shared by `verify` and `bench verify`.
#[derive(clap::Args)]
pub(crate) struct SolveArgs {
    #[command(flatten)]
    pub(crate) proof: ProofArgs,
    /// integer: the runtime's integer network (the product); paper: the CEG4N artifact's fake
    /// quantization (rounded weights, float activations), for comparison.
    #[arg(long, value_enum, default_value_t = Semantics::Integer)]
    pub(crate) semantics: Semantics,
}

impl SolveArgs {
    pub(crate) fn options(&self) -> Result<ceg4n::verify::VerifyOptions> {
        self.proof.options()
    }

    pub(crate) fn jobs(&self) -> usize {
        self.proof.jobs()
    }
}

/// What the float network is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Semantics {
    /// ceg4n-runtime's integer network.
    Integer,
    /// The paper artifact's fake quantization.
    Paper,
}

/// What a crate is generated from: a refine report, or a model at explicit bits.
#[derive(clap::Args)]
pub(crate) struct CrateSourceArgs {
    /// A refine report: its reported bits, with its proof results as the certificate.
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    pub(crate) report: Option<PathBuf>,
    /// Or: an ONNX model with explicit --bits (no proof; the certificate says so).
    pub(crate) model: Option<PathBuf>,
    /// The boxes that calibrate activation ranges (with MODEL).
    #[arg(long, requires = "model")]
    pub(crate) props: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) quant: BitsArgs,
}

impl CrateSourceArgs {
    /// Loads the report, if one is named (the crate source borrows it).
    pub(crate) fn load_report(&self) -> Result<Option<RefineReport>> {
        self.report
            .as_deref()
            .map(RefineReport::load)
            .transpose()
            .map_err(Into::into)
    }

    /// The library's crate source: `report` (from [`Self::load_report`]) or the model at
    /// explicit bits.
    pub(crate) fn source<'a>(
        &'a self,
        report: Option<&'a RefineReport>,
        bits: &'a Option<BitsSpec>,
    ) -> Result<CrateSource<'a>> {
        match (report, &self.model) {
            (Some(report), _) => Ok(CrateSource::Report(report)),
            (None, Some(model)) => {
                let Some(props) = &self.props else {
                    bail!(
                        "--props is required with MODEL: the boxes calibrate the activation ranges"
                    );
                };
                let Some(bits) = bits else {
                    bail!("--bits is required with MODEL (or pass --report from `ceg4n refine`)");
                };
                Ok(CrateSource::Model { model, props, bits })
            }
            (None, None) => bail!("give --report REPORT.json or MODEL.onnx with --bits"),
        }
    }
}

/// Bit-width options shared by the commands that quantize.
#[derive(clap::Args)]
pub(crate) struct BitsArgs {
    /// Weight bits: one value for every layer or one per layer (W1,W2,..), 2..=16.
    #[arg(long, value_delimiter = ',')]
    pub(crate) bits: Option<Vec<u32>>,
    /// Activation bits of the hidden layers: one value or one per hidden layer, 2..=16.
    #[arg(long, value_delimiter = ',', default_value = "8")]
    pub(crate) act_bits: Vec<u32>,
    /// Input fixed-point width in bits, 2..=16.
    #[arg(long, default_value_t = DEFAULT_INPUT_BITS)]
    pub(crate) input_bits: u32,
    /// Scale hidden-layer weights per output channel.
    #[arg(long)]
    pub(crate) per_channel: bool,
    /// One input fixed-point format for all features (default: one per feature).
    #[arg(long)]
    pub(crate) uniform_input: bool,
}

impl BitsArgs {
    /// The bits given, if `--bits` was.
    pub(crate) fn spec(&self) -> Option<BitsSpec> {
        self.bits.as_ref().map(|b| self.spec_with(b))
    }

    /// The bits given, with `weight_bits` where `--bits` was not given.
    pub(crate) fn spec_or(&self, weight_bits: u32) -> BitsSpec {
        self.spec()
            .unwrap_or_else(|| self.spec_with(&[weight_bits]))
    }

    fn spec_with(&self, weight_bits: &[u32]) -> BitsSpec {
        BitsSpec {
            weight_bits: weight_bits.to_vec(),
            act_bits: self.act_bits.clone(),
            input_bits: self.input_bits,
            per_channel: self.per_channel,
            uniform_input: self.uniform_input,
        }
    }
}
