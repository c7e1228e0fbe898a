//! inference: face and object detection on ONNX Runtime.
//!
//! - `runtime`: finding and loading the ONNX Runtime library; sessions (graph optimisation,
//!   no spinning).
//! - `preprocess`: letterbox and tensor fill straight from the frame (pure).
//! - `family` + `yolox`, `yunet`: each family's padding and output decoding (pure); a new
//!   family is one module.
//! - `nms`: class-aware non-maximum suppression (pure).
//! - `detector`: a worker's models; runs a camera's models on frames, batching frames of
//!   equal input size where the file allows it; boxes come back in camera pixels.
//! - `pool`: worker threads shared by all cameras; per-camera queues with drop-oldest,
//!   round-robin fairness, batching across cameras.
//! - `labels`: class labels per family.

pub mod detector;
pub mod family;
pub use gridsight_base::labels;
pub mod nms;
pub mod pool;
pub mod preprocess;
pub mod runtime;
pub mod yolox;
pub mod yunet;

pub use detector::{Detector, Job, Model};
pub use pool::{DetectionCallback, InferencePool, PoolStats};
pub use preprocess::{ImageView, Letterbox};
pub use runtime::{OrtError, init_runtime, library_path, load_session};
