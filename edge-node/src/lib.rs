//! gridsight edge node: RTSP cameras in, detections, violation alerts and dispatch orders out.
//!
//! # Layout
//!
//! Modules follow the data flow of `ARCHITECTURE.md` §2; each stage's `mod.rs` opens with
//! its input, output, queue policy and shutdown behaviour.
//!
//! - [`config`]: the one TOML file: raw serde types → `validate()` (every error, with TOML
//!   path, line and column) → validated [`config::Config`] with defaults merged per camera.
//! - [`contract`]: every MQTT payload as one type shared by producer and consumer, and the
//!   one builder of every topic ([`contract::Topics`]).
//! - [`geometry`]: polygons and polylines for zones and lines, with the checks that keep
//!   them simple and non-degenerate.
//! - [`inference`]: ONNX Runtime loading (`ORT_DYLIB_PATH` or `.cache/onnxruntime`), model
//!   sessions and each family's labels.
//! - [`source`]: one GStreamer pipeline per camera (RTSP, H.264/H.265, key-frame-only or
//!   rate-limited decoding, scale then convert), supervised: states, backoff, stalls.
//! - [`sim`]: the RTSP camera simulator used by tests, benchmarks and the demo.
//! - [`types`]: messages that cross stages (`Frame`).
//! - [`detect`]: `edge-node detect` — the detection path on image files and clips.
//! - [`motion`]: the per-camera motion gate in front of inference.
//! - [`camera`]: the per-camera core (motion gate → tracker → rules) fed in capture order on
//!   stream time, and the set of cores a config diff updates (reload keeps unchanged ones).
//! - [`track`]: per-camera tracker (stable ids, stationary flag, faces on people).
//! - [`rules`]: per-camera rule engine (dwell, line crossing, crowd, zone entry, faces in
//!   a zone) turning tracks into incident events; [`localtime`] gives schedules the node's
//!   time zone.
//! - [`alert`]: rule events → small JSON alerts and face-pixelated JPEG snapshots, into
//!   the outbox.
//! - [`outbox`]: SQLite store of every message that must not be lost, until its PUBACK.
//! - [`mqtt`]: the broker connection: publishes outbox rows at QoS 1, removes them on
//!   PUBACK, reconnects with backoff; availability with Last Will; subscriptions with a size
//!   limit (and manual acks for the dispatcher). [`broker`]: the embedded broker (rumqttd)
//!   used when the config has no `[mqtt]`. [`control`]: commands over MQTT.
//! - [`dispatch`]: alerts → orders for on-duty inspectors, deadlines, escalation, updates
//!   from inspectors' apps, statistics; in-process or `edge-node dispatch`.
//! - [`datadir`]: the exclusive lock that keeps a second process off a node's `data_dir`.
//! - [`graph`]: the stages of `run` wired in one place (ingest → gate → pool → camera core →
//!   alerts), and the one config diff applied to them on reload.
//! - [`node`]: the `run` daemon: builds the stages from a config, runs until SIGINT/SIGTERM,
//!   shuts down within a deadline.
//! - [`telemetry`]: structured logging and the HTTP endpoints (`/metrics`, `/healthz`,
//!   `/readyz`, `/status`).

pub mod alert;
pub mod broker;
pub mod camera;
pub mod config;
pub mod contract;
pub mod control;
pub mod datadir;
pub mod detect;
pub mod dispatch;
pub mod geometry;
pub mod graph;
pub mod inference;
pub mod localtime;
pub mod motion;
pub mod mqtt;
pub mod node;
pub mod outbox;
pub mod rules;
pub mod sim;
pub mod source;
pub mod telemetry;
pub mod track;
pub mod types;

/// Initialises GStreamer once per process.
pub fn init_gstreamer() -> Result<(), gstreamer::glib::Error> {
    static INIT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INIT.get_or_init(|| gstreamer::init().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| gstreamer::glib::Error::new(gstreamer::CoreError::Failed, &e))
}

/// Limits glibc to two malloc arenas. Each camera's streaming threads would otherwise
/// spread allocations over up to 8 arenas per core, and every camera restart leaves
/// fragments behind: measured 47 KB of RSS growth per restart cycle with the default, flat
/// with two arenas (`cargo bench --bench ingest -- restarts`). Call before threads start.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_ARENA_MAX: i32 = -8;
        // SAFETY: mallopt only adjusts allocator parameters; called before other threads exist.
        unsafe {
            mallopt(M_ARENA_MAX, 2);
        }
    }
}

/// Exit status for a config that fails validation (`EX_USAGE`).
pub const EXIT_BAD_CONFIG: i32 = 64;

/// Locks that outlive a panic elsewhere. A panic is caught where it happens (one camera's
/// frame, one worker's batch) and logged there; a lock its thread held is still consistent
/// enough to go on with (every critical section here is short and leaves no half-written
/// state), so the others take the lock instead of panicking in turn.
pub trait Locked<T: ?Sized> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for std::sync::Mutex<T> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T> {
        self.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// [`Locked`] for readers-writer locks.
pub trait RwLocked<T: ?Sized> {
    fn read_locked(&self) -> std::sync::RwLockReadGuard<'_, T>;
    fn write_locked(&self) -> std::sync::RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLocked<T> for std::sync::RwLock<T> {
    fn read_locked(&self) -> std::sync::RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn write_locked(&self) -> std::sync::RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
