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
    /// Confirmed tracks that ended, and of them those matched at one look only.
    pub tracks_ended: std::sync::atomic::AtomicU64,
    pub tracks_seen_once: std::sync::atomic::AtomicU64,
    /// The same for the latest tracks that ended ([`SeenOnce`]).
    pub recent_tracks: SeenOnce,
}

impl CameraCounters {
    /// A confirmed track ended after `looks` matches.
    pub fn track_ended(&self, looks: u32) {
        use std::sync::atomic::Ordering::Relaxed;
        self.tracks_ended.fetch_add(1, Relaxed);
        if looks <= 1 {
            self.tracks_seen_once.fetch_add(1, Relaxed);
        }
        self.recent_tracks.record(looks <= 1);
    }
}

/// The latest [`SeenOnce::HELD`] confirmed tracks that ended, whether each was matched at one
/// look only: a visit about as short as the time between two of the camera's looks, or
/// shorter, seen because a look fell in it (one a little shorter falls between two looks).
/// One word: the outcomes as bits (the newest lowest) and, above them, how many are held.
#[derive(Debug, Default)]
pub struct SeenOnce(std::sync::atomic::AtomicU64);

impl SeenOnce {
    pub const HELD: u32 = 20;
    /// The outcome bits.
    const BITS: u64 = (1 << Self::HELD) - 1;

    pub fn record(&self, once: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = self.0.fetch_update(Relaxed, Relaxed, |v| {
            let held = ((v >> 32) as u32 + 1).min(Self::HELD);
            Some((u64::from(held) << 32) | (((v << 1) | u64::from(once)) & Self::BITS))
        });
    }

    /// (seen at one look only, of how many held).
    pub fn get(&self) -> (u32, u32) {
        let v = self.0.load(std::sync::atomic::Ordering::Relaxed);
        ((v & Self::BITS).count_ones(), (v >> 32) as u32)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_once_holds_the_latest_twenty_tracks() {
        let s = SeenOnce::default();
        assert_eq!(s.get(), (0, 0));
        for _ in 0..5 {
            s.record(true);
        }
        assert_eq!(s.get(), (5, 5));
        for _ in 0..17 {
            s.record(false);
        }
        // The first two of the five have left the window.
        assert_eq!(s.get(), (3, SeenOnce::HELD));
        for _ in 0..3 {
            s.record(false);
        }
        assert_eq!(s.get(), (0, SeenOnce::HELD));
    }
}
