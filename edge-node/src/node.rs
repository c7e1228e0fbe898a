//! node: the `edge-node run` daemon. Builds each stage from the validated config, runs
//! until SIGINT or SIGTERM, then stops everything within a deadline.
//!
//! Today: it verifies that ONNX Runtime and every configured model load (a broken
//! install is reported at start, not at the first frame), then ingests every enabled
//! camera (`source`), logging per-camera state and frame rates. SIGHUP re-reads the
//! config: a valid file is applied (only changed cameras restart), an invalid one is
//! reported and the running config stays. Detection and alerting are wired in as their
//! stages land.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{self, Config};
use crate::inference;
use crate::source::{CameraSpec, Ingest, IngestOptions};

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
    #[error("cannot start GStreamer: {0}")]
    Gstreamer(String),
}

fn camera_specs(config: &Config) -> Vec<CameraSpec> {
    config.cameras.iter().filter(|c| c.enabled).map(|c| CameraSpec::from_config(c, config)).collect()
}

/// Runs the node until a shutdown signal arrives. `path` is re-read on SIGHUP.
pub fn run(config: Config, path: PathBuf) -> Result<(), NodeError> {
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

    // Until detection lands, frames are counted (the per-camera status lines show the rates).
    let ingest = Ingest::start(camera_specs(&config), Arc::new(|_frame| {}), IngestOptions::default())
        .map_err(|e| NodeError::Gstreamer(e.to_string()))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("edge-node")
        .build()
        .map_err(NodeError::Runtime)?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).map_err(NodeError::Signals)?;
        let shutdown = wait_for_shutdown();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                signal = &mut shutdown => {
                    info!(signal = signal.map_err(NodeError::Signals)?, "shutting down");
                    return Ok::<_, NodeError>(());
                }
                _ = hup.recv() => match config::load(&path) {
                    Ok(new) => {
                        info!(summary = %new.summary(), "config reloaded");
                        ingest.apply(camera_specs(&new));
                    }
                    Err(e) => warn!("config reload refused, keeping the running config: {e}"),
                },
            }
        }
    })?;
    let started = Instant::now();
    if !ingest.shutdown(SHUTDOWN_DEADLINE) {
        warn!(deadline_s = SHUTDOWN_DEADLINE.as_secs(), "some camera pipelines did not stop before the deadline");
    }
    rt.shutdown_timeout(SHUTDOWN_DEADLINE.saturating_sub(started.elapsed()));
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
