//! The library's error kinds, as the command line reports them (exit code 2 for bad input,
//! 3 for a failing tool or device). Library functions return `anyhow::Result` with context
//! lines; a failure of a kind below carries one of these in its chain.

/// What went wrong, by whose fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file, argument or model the user gave is wrong or unsupported.
    #[error("{0}")]
    Input(String),
    /// The ONNX graph cannot be translated.
    #[error("{0}")]
    Import(String),
    /// The solver failed (not a time-out: those are `unknown` verdicts).
    #[error("{0}")]
    Solver(String),
    /// An external tool failed: cargo, QEMU, the C compiler of the QEMU plugin.
    #[error("{0}")]
    Tool(String),
    /// A device or debug probe failed or is missing.
    #[error("{0}")]
    Device(String),
}
