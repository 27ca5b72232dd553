//! ceg4n: counterexample-guided quantization of ONNX classifiers into verified integer-only
//! `no_std` Rust crates. See ARCHITECTURE.md for where each concern lives.

pub mod bench;
pub mod board;
pub mod bundled;
pub mod codegen;
pub mod data;
pub mod error;
pub mod flash;
pub mod float_model;
pub mod hil;
pub mod html_report;
pub mod int_model;
pub mod ir;
pub mod onnx_import;
pub mod parallel;
pub mod pipeline;
pub mod quantize;
pub mod refine;
pub mod report;
pub mod suite;
pub mod task;
pub mod tract_reference;
pub mod verify;

pub use error::{Error, Result};
