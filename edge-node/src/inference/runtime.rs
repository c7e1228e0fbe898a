//! Finding and loading ONNX Runtime (`ort` with `load-dynamic`), and building sessions.
//!
//! The library is `libonnxruntime.so.1.31.1` from the PyPI wheel, installed by `make setup`
//! into `.cache/onnxruntime/`. `ORT_DYLIB_PATH` wins when set; otherwise the usual places
//! are searched. A missing library is reported with the command that fixes it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use crate::config::Provider;

pub const LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";

#[derive(Debug, thiserror::Error)]
pub enum OrtError {
    #[error(
        "ONNX Runtime library {LIBRARY_FILE} not found (looked in: {looked}); run `make setup` in the \
         gridsight checkout, or set ORT_DYLIB_PATH to the library's path"
    )]
    NotFound { looked: String },
    #[error("ORT_DYLIB_PATH is {path} but no such file exists; run `make setup` or correct the variable")]
    EnvMissing { path: PathBuf },
    #[error("cannot load ONNX Runtime from {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("cannot load model {path}: {reason}")]
    Model { path: PathBuf, reason: String },
}

/// Where the library is: `ORT_DYLIB_PATH`, or `.cache/onnxruntime/` above the executable or
/// the working directory, or a system library folder.
pub fn library_path() -> Result<PathBuf, OrtError> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(OrtError::EnvMissing { path: p }) };
    }
    let mut candidates = Vec::new();
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    for root in roots {
        candidates.push(root.join(".cache/onnxruntime").join(LIBRARY_FILE));
    }
    for dir in ["/usr/lib/gridsight", "/usr/local/lib", "/usr/lib/x86_64-linux-gnu"] {
        candidates.push(Path::new(dir).join(LIBRARY_FILE));
    }
    candidates.dedup();
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let looked = candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    Err(OrtError::NotFound { looked })
}

/// The environment must outlive every session: `ort` keeps only a weak reference to it.
static RUNTIME: OnceLock<Result<(PathBuf, ort::environment::Environment), String>> = OnceLock::new();

/// Loads the library and creates the process-wide environment, once. Returns the
/// library's path and the environment sessions are built in.
pub fn init_runtime() -> Result<(&'static Path, &'static ort::environment::Environment), OrtError> {
    let result = RUNTIME.get_or_init(|| {
        let path = library_path().map_err(|e| e.to_string())?;
        let builder =
            ort::init_from(&path).map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?;
        // No usage telemetry: a site box reports to its operators, nobody else.
        let env = builder
            .with_name("gridsight")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))?;
        Ok((path, env))
    });
    match result {
        Ok((path, env)) => Ok((path.as_path(), env)),
        Err(reason) => Err(match library_path() {
            Err(e) => e,
            Ok(path) => OrtError::Load { path, reason: reason.clone() },
        }),
    }
}

/// Builds a CPU session with full graph optimisation, `threads` intra-op threads and no
/// spinning (spinning threads burn CPU that the decoders need).
pub fn load_session(path: &Path, threads: usize) -> Result<Session, OrtError> {
    load_session_with(path, threads, Provider::Cpu)
}

/// Whether this ONNX Runtime build has the provider (the PyPI `onnxruntime` wheel is CPU only).
pub fn provider_available(provider: Provider) -> bool {
    use ort::ep::ExecutionProvider;
    if init_runtime().is_err() {
        return provider == Provider::Cpu;
    }
    match provider {
        Provider::Cpu => true,
        Provider::Cuda => ort::ep::CUDA::is_available().unwrap_or(false),
        Provider::Tensorrt => ort::ep::TensorRT::is_available().unwrap_or(false),
        Provider::Openvino => ort::ep::OpenVINO::is_available().unwrap_or(false),
    }
}

/// As [`load_session`], on the configured execution provider when the library has it; a
/// provider it lacks falls back to CPU with one log line saying why.
#[allow(clippy::result_large_err)] // ort's own error type, converted once at the end
pub fn load_session_with(path: &Path, threads: usize, provider: Provider) -> Result<Session, OrtError> {
    let (_, env) = init_runtime()?;
    let fail = |reason: String| OrtError::Model { path: path.to_path_buf(), reason };
    let mut builder = Session::builder(env).map_err(|e| fail(e.to_string()))?;
    if provider != Provider::Cpu {
        if provider_available(provider) {
            let ep = match provider {
                Provider::Cuda => ort::ep::CUDA::default().build(),
                Provider::Tensorrt => ort::ep::TensorRT::default().build(),
                _ => ort::ep::OpenVINO::default().build(),
            };
            builder = builder.with_execution_providers([ep]).map_err(|e| fail(e.to_string()))?;
            tracing::info!(?provider, model = %path.display(), "execution provider registered");
        } else {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(?provider, "this ONNX Runtime build has no such execution provider (the PyPI onnxruntime wheel is CPU only); using CPU");
            });
        }
    }
    builder
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .and_then(|b| b.with_intra_threads(threads))
        .and_then(|b| b.with_intra_op_spinning(false))
        .and_then(|b| b.with_inter_op_spinning(false))
        .map_err(|e| fail(e.to_string()))?
        .commit_from_file(path)
        .map_err(|e| fail(e.to_string()))
}
