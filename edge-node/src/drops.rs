//! Frames that go no further, as typed events. Every place that drops a frame calls
//! [`Drops::record`] with why ([`Dropped`]): one call counts it (for `/metrics`, the status
//! and the logs) and, when the drop was not meant (the node fell behind, a model failed),
//! logs it — the first at once, then at most one line a minute per camera and reason with
//! how many since, so a node that falls behind says so without flooding its log.
//!
//! A leaf: it knows nothing of the stages that call it. One [`Registry`] per node holds a
//! [`Drops`] per camera for the life of the process (a reloaded camera keeps its counts).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::{Locked, RwLocked};

/// Why a frame went no further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dropped {
    /// A delta frame not decoded: the camera decodes key frames only (intended).
    DeltaFrame,
    /// Beyond the camera's detection rate (intended).
    OverDetectFps,
    /// A key frame the shared decoders had no room for (the node is behind).
    DecoderQueueFull,
    /// A key frame a shared decoder never returned a picture for (a corrupt picture).
    DecoderNoPicture,
    /// Nothing moved and no track was live: not worth a detection (intended).
    NoMotion,
    /// The camera's inference queue was full: its oldest frame made room (the node is behind).
    InferenceQueueFull,
    /// ONNX Runtime returned an error for the frame.
    InferenceError,
    /// Detecting or handling the frame panicked (caught; the worker went on).
    InferencePanic,
    /// Older than a frame already tracked (never reaches the tracker).
    OutOfOrder,
}

impl Dropped {
    pub const ALL: [Dropped; 9] = [
        Self::DeltaFrame,
        Self::OverDetectFps,
        Self::DecoderQueueFull,
        Self::DecoderNoPicture,
        Self::NoMotion,
        Self::InferenceQueueFull,
        Self::InferenceError,
        Self::InferencePanic,
        Self::OutOfOrder,
    ];

    /// The stage that dropped it (`stage` label of `gridsight_camera_frames_dropped_total`).
    pub fn stage(self) -> &'static str {
        match self {
            Self::DeltaFrame | Self::OverDetectFps => "ingest",
            Self::DecoderQueueFull | Self::DecoderNoPicture => "decoder",
            Self::NoMotion => "motion",
            Self::InferenceQueueFull | Self::InferenceError | Self::InferencePanic => "inference",
            Self::OutOfOrder => "tracker",
        }
    }

    /// Why (`reason` label).
    pub fn reason(self) -> &'static str {
        match self {
            Self::DeltaFrame => "delta_frame",
            Self::OverDetectFps => "over_detect_fps",
            Self::DecoderQueueFull | Self::InferenceQueueFull => "queue_full",
            Self::DecoderNoPicture => "no_picture",
            Self::NoMotion => "no_motion",
            Self::InferenceError => "error",
            Self::InferencePanic => "panic",
            Self::OutOfOrder => "out_of_order",
        }
    }

    /// Whether the design meant it (`intended` label); an unintended drop is logged.
    pub fn intended(self) -> bool {
        matches!(self, Self::DeltaFrame | Self::OverDetectFps | Self::NoMotion)
    }

    /// What an operator reads in the log line.
    fn words(self) -> &'static str {
        match self {
            Self::DeltaFrame | Self::OverDetectFps | Self::NoMotion => "intended",
            Self::DecoderQueueFull => "the shared key-frame decoders are behind: key frames are dropped",
            Self::DecoderNoPicture => "a shared decoder returned no picture for a key frame (corrupt picture?)",
            Self::InferenceQueueFull => "inference is behind: the oldest queued frames are dropped",
            Self::InferenceError => "inference failed on frames (see the error logged with it)",
            Self::InferencePanic => "handling frames panicked (caught; see the error logged with it)",
            Self::OutOfOrder => "frames arrived older than frames already tracked",
        }
    }
}

/// How often an unintended drop of one kind is logged per camera at most.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// One camera's drops.
#[derive(Debug)]
pub struct Drops {
    camera: Arc<str>,
    counts: [AtomicU64; Dropped::ALL.len()],
    /// Per unintended kind: when it was last logged and the count then.
    logged: Mutex<BTreeMap<Dropped, (Instant, u64)>>,
}

impl Drops {
    pub fn new(camera: &str) -> Self {
        Self { camera: Arc::from(camera), counts: Default::default(), logged: Mutex::default() }
    }

    /// A frame was dropped for `why`: counted, and logged when not intended.
    pub fn record(&self, why: Dropped) {
        let n = self.counts[why as usize].fetch_add(1, Relaxed) + 1;
        if why.intended() {
            return;
        }
        let now = Instant::now();
        let mut logged = self.logged.locked();
        let since = match logged.get(&why) {
            Some((at, _)) if now.duration_since(*at) < LOG_EVERY => return,
            Some((_, then)) => n - then,
            None => 1,
        };
        logged.insert(why, (now, n));
        drop(logged);
        warn!(
            camera = %self.camera,
            stage = why.stage(),
            reason = why.reason(),
            dropped = since,
            total = n,
            "frames dropped: {}",
            why.words()
        );
    }

    pub fn count(&self, why: Dropped) -> u64 {
        self.counts[why as usize].load(Relaxed)
    }
}

/// Every camera's [`Drops`], by camera id.
#[derive(Debug, Default)]
pub struct Registry {
    cameras: RwLock<BTreeMap<String, Arc<Drops>>>,
}

impl Registry {
    /// The camera's drops, made on first use.
    pub fn camera(&self, id: &str) -> Arc<Drops> {
        if let Some(d) = self.cameras.read_locked().get(id) {
            return d.clone();
        }
        self.cameras.write_locked().entry(id.to_string()).or_insert_with(|| Arc::new(Drops::new(id))).clone()
    }

    /// The camera's count of `why` (0 for a camera that dropped nothing yet).
    pub fn count(&self, id: &str, why: Dropped) -> u64 {
        self.cameras.read_locked().get(id).map_or(0, |d| d.count(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_counts_and_labels_each_reason() {
        let d = Drops::new("gate");
        for why in Dropped::ALL {
            d.record(why);
        }
        d.record(Dropped::InferenceQueueFull);
        assert_eq!(d.count(Dropped::InferenceQueueFull), 2);
        assert!(Dropped::ALL.iter().all(|w| d.count(*w) >= 1));
        let labels: std::collections::BTreeSet<_> = Dropped::ALL.iter().map(|w| (w.stage(), w.reason())).collect();
        assert_eq!(labels.len(), Dropped::ALL.len(), "each kind has its own stage and reason");
        assert_eq!(Dropped::ALL.iter().filter(|w| w.intended()).count(), 3);
        // `ALL` is in declaration order (the counts are indexed by the discriminant).
        assert!(Dropped::ALL.iter().enumerate().all(|(i, w)| *w as usize == i));
    }

    #[test]
    fn unintended_drops_are_logged_once_a_minute_at_most() {
        let d = Drops::new("gate");
        for _ in 0..1000 {
            d.record(Dropped::InferenceQueueFull);
            d.record(Dropped::NoMotion);
        }
        let logged = d.logged.locked();
        assert_eq!(logged.len(), 1, "intended drops are not logged");
        assert_eq!(logged[&Dropped::InferenceQueueFull].1, 1, "logged at the first, not again within the minute");
    }

    #[test]
    fn the_registry_keeps_one_per_camera() {
        let r = Registry::default();
        r.camera("a").record(Dropped::OutOfOrder);
        r.camera("a").record(Dropped::OutOfOrder);
        assert_eq!(r.count("a", Dropped::OutOfOrder), 2);
        assert_eq!(r.count("b", Dropped::OutOfOrder), 0);
        assert!(Arc::ptr_eq(&r.camera("a"), &r.camera("a")));
    }
}
