//! telemetry: structured logs (tracing), and the HTTP endpoints: Prometheus `/metrics`,
//! `/healthz`, `/readyz`, `/status`. MQTT status topics are published by the node. What the
//! dispatcher shows too (metric families, probes, the HTTP helpers) is in
//! `gridsight_base::telemetry` and re-exported here.

pub(crate) mod node;
pub mod page;

pub use gridsight_base::http;
pub use gridsight_base::telemetry::*;

use crate::RwLocked;

/// Counters the node keeps per camera beside ingest's own (`source::Counters`) and the
/// inference pool's: alerts stored, refused by the store, and delivered. Monotonic for the
/// life of the process (a reloaded camera keeps them). Dropped frames are counted in
/// [`CameraRegistry::drops`].
#[derive(Debug, Default)]
pub struct CameraCounters {
    pub alerts_stored: std::sync::atomic::AtomicU64,
    /// Unintended: the outbox refused the alert (it is lost; the log says why).
    pub alerts_failed: std::sync::atomic::AtomicU64,
    /// Acknowledged by the broker (PUBACK).
    pub alerts_delivered: std::sync::atomic::AtomicU64,
    /// Panics while tracking or evaluating this camera's rules (caught; its core restarted).
    pub panics: std::sync::atomic::AtomicU64,
    /// Frames detected on a crop around what moved instead of the whole frame.
    pub cropped: std::sync::atomic::AtomicU64,
}

/// Every camera's [`CameraCounters`], by camera id.
#[derive(Debug, Default)]
pub struct CameraRegistry {
    /// Every camera's dropped frames, by why (shared with ingest and the inference pool).
    pub drops: std::sync::Arc<crate::drops::Registry>,
    cameras: std::sync::RwLock<std::collections::BTreeMap<String, std::sync::Arc<CameraCounters>>>,
}

impl CameraRegistry {
    /// The camera's counters, created on first use.
    pub fn camera(&self, id: &str) -> std::sync::Arc<CameraCounters> {
        if let Some(c) = self.cameras.read_locked().get(id) {
            return c.clone();
        }
        self.cameras.write_locked().entry(id.to_string()).or_default().clone()
    }

    /// The camera's counters if it has any.
    pub fn get(&self, id: &str) -> Option<std::sync::Arc<CameraCounters>> {
        self.cameras.read_locked().get(id).cloned()
    }
}
