//! The library's one error type. Every fallible library function returns [`Result`], whose
//! error says whose fault it was ([`Error`]'s variant: the command line turns it into exit code
//! 2 for bad input, 3 for a failing tool or device) and what happened, outermost context first
//! ("reading model.onnx: node 'Cast_3' (Cast): operator not supported").
//!
//! The library does not use `anyhow`: the binary does, on top of this type.

use std::fmt::Display;

/// What went wrong, by whose fault; the text is the whole one-line message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The same kind of error, with `context` said first: "context: message".
    #[must_use]
    pub fn context(self, context: impl Display) -> Self {
        let wrap = |message: String| format!("{context}: {message}");
        match self {
            Error::Input(m) => Error::Input(wrap(m)),
            Error::Import(m) => Error::Import(wrap(m)),
            Error::Solver(m) => Error::Solver(wrap(m)),
            Error::Tool(m) => Error::Tool(wrap(m)),
            Error::Device(m) => Error::Device(wrap(m)),
        }
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            Error::Input(m)
            | Error::Import(m)
            | Error::Solver(m)
            | Error::Tool(m)
            | Error::Device(m) => m,
        }
    }

    /// True when a tool or a device failed rather than the user's input (exit code 3).
    pub fn is_tool_or_device(&self) -> bool {
        matches!(self, Error::Tool(_) | Error::Device(_))
    }
}

/// Files the user named that cannot be read, or outputs that cannot be written: the path is in
/// the context the caller adds.
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Input(e.to_string())
    }
}

/// Malformed JSON (report.json, boxes, task files).
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Input(e.to_string())
    }
}

/// Malformed TOML (board files).
impl From<toml::de::Error> for Error {
    fn from(e: toml::de::Error) -> Self {
        Error::Input(e.to_string().replace('\n', " "))
    }
}

/// A tensor of the wrong shape in the model file.
impl From<ndarray::ShapeError> for Error {
    fn from(e: ndarray::ShapeError) -> Self {
        Error::Import(e.to_string())
    }
}

/// A template of the generated crate failed to render.
impl From<minijinja::Error> for Error {
    fn from(e: minijinja::Error) -> Self {
        Error::Tool(format!("{e:#}"))
    }
}

/// The debug probe or the chip behind it failed.
impl From<probe_rs::Error> for Error {
    fn from(e: probe_rs::Error) -> Self {
        Error::Device(e.to_string())
    }
}

/// A firmware image that is not a readable ELF file.
impl From<object::Error> for Error {
    fn from(e: object::Error) -> Self {
        Error::Tool(e.to_string())
    }
}

/// `.context(..)` and `.with_context(..)` on results and options, keeping the error's kind
/// (an option that is `None` is bad input).
pub trait Context<T> {
    /// On error, say `context` first.
    fn context(self, context: impl Display) -> Result<T>;
    /// On error, say the context `f` makes first (made only on error).
    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Display) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }
    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Display) -> Result<T> {
        self.ok_or_else(|| Error::Input(context.to_string()))
    }
    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| Error::Input(f().to_string()))
    }
}

/// An [`Error::Input`] from a format string.
macro_rules! input_error {
    ($($arg:tt)*) => { $crate::error::Error::Input(format!($($arg)*)) };
}

/// Return an [`Error::Input`] from a format string.
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::error::input_error!($($arg)*)) };
}

pub(crate) use bail;
pub(crate) use input_error;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_kind_and_reads_outermost_first() {
        let e: Result<()> = Err(Error::Tool("cargo exited with 101".into()));
        let e = e.context("building firmware").context("hil").unwrap_err();
        assert!(e.is_tool_or_device());
        assert_eq!(e.message(), "hil: building firmware: cargo exited with 101");
    }

    #[test]
    fn a_missing_option_is_bad_input() {
        let e = None::<u8>.context("no graph").unwrap_err();
        assert_eq!(e, Error::Input("no graph".into()));
    }
}
