//! gridsight edge node: RTSP cameras in, detections, violation alerts and dispatch orders out.
//!
//! # Layout
//!
//! One frame, from the camera to the broker's PUBACK, in the order it meets the modules
//! (each stage's `mod.rs` opens with its input, output, queue policy and shutdown):
//!
//! 1. [`source`]: one GStreamer pipeline per camera (`source/pipeline.rs`: RTSP, H.264/H.265,
//!    key-frame-only or rate-limited decoding, scale then convert to BGR), supervised by one
//!    thread (`source/mod.rs`: states, backoff, stalls, 461 transport swap; `Clock` and
//!    `Opener` seams with `supervisor_tests.rs`). Each frame gets its stream time
//!    (`source/stream_time.rs`) and is handed to the callback [`graph`] gave ingest.
//! 2. [`camera`]: `CameraCore::admit` runs the [`motion`] gate (no motion, no live track ⇒
//!    skipped, counted).
//! 3. [`inference`]: the shared pool (`inference/pool.rs`: per-camera queues, drop oldest;
//!    one frame of a camera at a time, in order; panics caught) runs the models (YOLOX,
//!    YuNet) on ONNX Runtime and calls back with detections.
//! 4. [`camera`]: `CameraCore::observe` feeds the [`track`]er and the [`rules`] engine on
//!    stream time ([`localtime`] gives schedules the node's time zone) → rule events.
//! 5. [`graph`]: the `Emitter` turns events into [`alert`]s (JSON per [`contract`], a
//!    face-pixelated snapshot within the disk reserve) stored in the [`outbox`] (SQLite,
//!    before anything is published). Every published picture is searched for faces on the
//!    whole picture first ([`privacy`]), whatever the crop path found for the rules.
//! 6. [`mqtt`]: the link publishes outbox rows at QoS 1 and deletes each on its PUBACK;
//!    [`broker`] is the embedded broker when there is no `[mqtt]`; [`control`] answers
//!    commands; [`dispatch`] turns alerts into inspectors' orders (in-process or
//!    `edge-node dispatch`).
//!
//! The crates below this one (re-exported under the module names used here): [`contract`]
//! (payloads and topics), `gridsight-base` ([`config`], [`outbox`], [`mqtt`], [`geometry`],
//! [`localtime`], HTTP and metrics helpers) and `gridsight-dispatch` ([`dispatch`]: orders,
//! reports, the district page). None of them can call into the node.
//!
//! Around them: [`config`] (the TOML file: raw serde types → `validate()` with path, line
//! and column → [`config::Config`]), [`contract`] (every MQTT payload as one type, and
//! [`contract::Topics`]), [`geometry`] (zones and lines), [`types`] (`Frame`, detections),
//! [`graph`] (the stages wired in one place and the config diff of a reload), [`node`] (the
//! `run` daemon: start-up order and the main loop), [`shutdown`] (the order of stopping,
//! within one deadline), [`datadir`]
//! (one process per `data_dir`), [`drops`] (every dropped frame as a typed event: counted and,
//! when not intended, logged in one call), [`telemetry`] (logging; axum endpoints `/metrics` via
//! prometheus-client, `/healthz`, `/readyz`, `/status`), [`sim`] (the RTSP camera simulator)
//! and [`detect`] (`edge-node detect` on files).

pub mod alert;
pub mod broker;
pub mod camera;
pub mod clips;
pub mod control;
pub mod datadir;
pub mod detect;
pub mod drops;
pub mod graph;
pub mod ha;
pub mod inference;
pub mod live;
pub mod media;
pub mod motion;
pub mod node;
pub mod privacy;
pub mod rules;
pub mod shutdown;
pub mod sim;
pub mod source;
pub mod still;
pub mod systemd;
pub mod telemetry;
pub mod track;
pub mod types;
pub mod video;

// The crates below the node, under the names its modules use. Dependencies point one
// way: contract ← base ← dispatch ← this crate; none of them can call into the node.
pub use gridsight_base::{Locked, RwLocked, clock, config, geometry, http, localtime, mqtt, outbox};
pub use gridsight_contract as contract;
pub use gridsight_dispatch as dispatch;

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
