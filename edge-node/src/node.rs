//! node: the `edge-node run` daemon. Builds each stage from the validated config, runs
//! until SIGINT or SIGTERM, then stops everything within a deadline.
//!
//! Today it verifies that ONNX Runtime and every configured model load (so a broken
//! install is reported at start, not at the first frame) and reports the cameras it
//! owns; ingest, detection and alerting are wired in as their stages land.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::Config;
use crate::inference;

/// How long shutdown may take before the process exits anyway.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Inference(#[from] inference::OrtError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen for shutdown signals: {0}")]
    Signals(std::io::Error),
}

/// Runs the node until a shutdown signal arrives.
pub fn run(config: Config) -> Result<(), NodeError> {
    info!(summary = %config.summary(), "starting");
    let (lib, _) = inference::init_runtime()?;
    info!(library = %lib.display(), "onnx runtime loaded");
    for (name, spec) in &config.models {
        let started = Instant::now();
        let session = inference::load_session(&spec.path, config.inference.threads_per_worker)?;
        info!(
            model = %name,
            family = %spec.family,
            file = %spec.path.file_name().unwrap_or_default().to_string_lossy(),
            input = format!("{}x{}", spec.input_size.0, spec.input_size.1),
            load_ms = started.elapsed().as_millis() as u64,
            "model ready"
        );
        drop(session);
    }
    for cam in &config.cameras {
        info!(
            camera = %cam.id,
            url = %cam.url,
            enabled = cam.enabled,
            decode = ?cam.decode,
            detect_fps = cam.detect_fps,
            zones = cam.zones.len(),
            rules = cam.rules.len(),
            grid = config.grid_of(cam).unwrap_or("-"),
            "camera configured"
        );
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("edge-node")
        .build()
        .map_err(NodeError::Runtime)?;
    rt.block_on(async {
        let signal = wait_for_shutdown().await.map_err(NodeError::Signals)?;
        info!(signal, "shutting down");
        Ok::<_, NodeError>(())
    })?;
    let started = Instant::now();
    rt.shutdown_timeout(SHUTDOWN_DEADLINE);
    if started.elapsed() >= SHUTDOWN_DEADLINE {
        warn!(deadline_s = SHUTDOWN_DEADLINE.as_secs(), "some tasks did not stop before the deadline");
    }
    info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT, naming which.
pub async fn wait_for_shutdown() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
