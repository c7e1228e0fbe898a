//! inference: ONNX Runtime, the model families' labels, and (later) the shared worker pool.
//!
//! Today: finding and loading the ONNX Runtime library (`runtime`) and building sessions
//! for the configured models. Pre/post-processing and the pool arrive with issue 4.

pub mod labels;
pub mod runtime;

pub use runtime::{OrtError, init_runtime, library_path, load_session};
