//! What the node shows of itself: `/metrics` (every stage's counters, read on each
//! scrape), `/healthz` and `/readyz`, the camera and disk parts of `/status` and of the
//! retained MQTT status, and the log line when the disk changes state.

use std::sync::Arc;

use tracing::{info, warn};

use crate::Locked;
use crate::alert::AlertSink;
use crate::contract;
use crate::drops::Dropped;
use crate::inference::InferencePool;
use crate::outbox::{DiskGuard, DiskState};
use crate::telemetry::{CameraRegistry, MetricsText};

/// `gridsight.camera_status` JSON (MQTT status topic and `/status`), with what the node's
/// own counters add (the tracks seen at one look only).
pub(crate) fn camera_status_json(
    node: &str,
    c: &crate::source::CameraStatus,
    at: &str,
    counters: &CameraRegistry,
) -> serde_json::Value {
    let mut status = c.to_contract(node, at);
    status.tracks_seen_once = counters.get(&c.id).and_then(|n| match n.recent_tracks.get() {
        (_, 0) => None,
        (once, of) => Some(contract::TracksSeenOnce { once, of }),
    });
    serde_json::to_value(status).unwrap_or_default()
}

/// What the HTTP endpoints show of the outbox; refreshed by the main loop every 10 s
/// (camera figures are read fresh on each request).
#[derive(Default)]
pub(crate) struct Snapshot {
    pub(crate) outbox_pending: u64,
    pub(crate) outbox_dropped_snapshots: u64,
    pub(crate) at: String,
}

/// What `/metrics` reads on each scrape.
pub(crate) struct MetricsSources {
    pub(crate) cameras: crate::source::StatusReader,
    pub(crate) counters: Arc<CameraRegistry>,
    /// Weak: shutdown takes the pool back whole to stop its workers.
    pub(crate) pool: std::sync::Weak<InferencePool>,
    pub(crate) link: Arc<crate::mqtt::LinkStats>,
    pub(crate) disk: DiskGuard,
    pub(crate) alerts: Arc<AlertSink>,
    pub(crate) clips: Option<Arc<crate::clips::Clips>>,
}

/// Prometheus text for the node: per camera (state, rates, and counters for every frame
/// received, decoded, handed on, detected or dropped with its stage and reason, and every
/// alert stored, refused or delivered), and for the outbox and MQTT link.
pub(crate) fn node_metrics(m: &mut MetricsText, s: &Snapshot, src: &MetricsSources) {
    use std::sync::atomic::Ordering::Relaxed;
    let cams = src.cameras.status();
    let per_cam = |f: &dyn Fn(&crate::source::CameraStatus) -> f64| -> Vec<(Vec<(&str, &str)>, f64)> {
        cams.iter().map(|c| (vec![("camera", c.id.as_str())], f(c))).collect()
    };
    let node_counter = |f: &dyn Fn(&crate::telemetry::CameraCounters) -> u64| -> Vec<(Vec<(&str, &str)>, f64)> {
        cams.iter()
            .map(|c| (vec![("camera", c.id.as_str())], src.counters.get(&c.id).map_or(0, |n| f(&n)) as f64))
            .collect()
    };
    if let Some(clips) = &src.clips {
        let held = clips.buffered_bytes();
        let samples: Vec<(Vec<(&str, &str)>, f64)> =
            held.iter().map(|(c, b)| (vec![("camera", c.as_str())], *b as f64)).collect();
        m.family(
            "gridsight_camera_clip_buffer_bytes",
            "Encoded stream the camera keeps for event clips (pre_capture, bounded by clips.buffer_max).",
            "gauge",
            &samples,
        );
    }
    m.family(
        "gridsight_camera_up",
        "1 while the camera is streaming.",
        "gauge",
        &per_cam(&|c| f64::from(u8::from(c.state == crate::source::CameraState::Streaming))),
    );
    m.family(
        "gridsight_camera_fps_in",
        "Frames received per second (recent window).",
        "gauge",
        &per_cam(&|c| c.fps_in),
    );
    m.family(
        "gridsight_camera_fps_decoded",
        "Frames decoded per second (recent window).",
        "gauge",
        &per_cam(&|c| c.fps_decoded),
    );
    m.family(
        "gridsight_camera_fps_out",
        "Frames handed to detection per second (recent window).",
        "gauge",
        &per_cam(&|c| c.fps_out),
    );
    m.family(
        "gridsight_camera_frames_received_total",
        "Access units received (every frame of the stream).",
        "counter",
        &per_cam(&|c| c.received as f64),
    );
    m.family("gridsight_camera_keyframes_total", "Key frames received.", "counter", &per_cam(&|c| c.keyframes as f64));
    m.family(
        "gridsight_camera_frames_decoded_total",
        "Pictures out of the decoder.",
        "counter",
        &per_cam(&|c| c.decoded as f64),
    );
    let mut cpu: Vec<(Vec<(&str, &str)>, f64)> = Vec::new();
    for c in &cams {
        for (stage, secs) in &c.cpu {
            cpu.push((vec![("camera", c.id.as_str()), ("stage", stage)], *secs));
        }
    }
    m.family(
        "gridsight_camera_cpu_seconds_total",
        "CPU time of the camera's streaming thread by stage (decode, convert: scaling and conversion, motion: the motion gate and hand-off).",
        "counter",
        &cpu,
    );
    m.family(
        "gridsight_camera_frames_handed_on_total",
        "Frames handed from ingest to the motion gate and detection.",
        "counter",
        &per_cam(&|c| c.handed_on as f64),
    );
    let pool = src.pool.upgrade();
    let pool_stats: Vec<(String, crate::inference::PoolStats)> =
        cams.iter().map(|c| (c.id.clone(), pool.as_ref().and_then(|p| p.stats(&c.id)).unwrap_or_default())).collect();
    drop(pool);
    m.family(
        "gridsight_camera_frames_detected_total",
        "Frames the detectors processed.",
        "counter",
        &pool_stats.iter().map(|(id, p)| (vec![("camera", id.as_str())], p.processed as f64)).collect::<Vec<_>>(),
    );
    m.family(
        "gridsight_camera_frames_cropped_total",
        "Frames detected on a crop around what moved (and the live tracks) instead of the whole frame.",
        "counter",
        &node_counter(&|n| n.cropped.load(Relaxed)),
    );
    let ended: Vec<(Vec<(&str, &str)>, f64)> = cams
        .iter()
        .flat_map(|c| {
            let n = src.counters.get(&c.id);
            let (all, once) = n.map_or((0, 0), |n| (n.tracks_ended.load(Relaxed), n.tracks_seen_once.load(Relaxed)));
            [
                (vec![("camera", c.id.as_str()), ("looks", "one")], once as f64),
                (vec![("camera", c.id.as_str()), ("looks", "several")], (all - once) as f64),
            ]
        })
        .collect();
    m.family(
        "gridsight_camera_tracks_ended_total",
        "Confirmed tracks that ended, by whether they were matched at one look only (a visit about as short as the time between two looks, or shorter: one a little shorter falls between two looks unseen) or at several.",
        "counter",
        &ended,
    );
    m.family(
        "gridsight_camera_inference_seconds_total",
        "Time the detectors spent on the camera's frames (a batch's time shared among its frames).",
        "counter",
        &pool_stats.iter().map(|(id, p)| (vec![("camera", id.as_str())], p.busy.as_secs_f64())).collect::<Vec<_>>(),
    );
    let mut dropped: Vec<(Vec<(&str, &str)>, f64)> = Vec::new();
    for c in &cams {
        for why in Dropped::ALL {
            dropped.push((
                vec![
                    ("camera", c.id.as_str()),
                    ("stage", why.stage()),
                    ("reason", why.reason()),
                    ("intended", if why.intended() { "true" } else { "false" }),
                ],
                src.counters.drops.count(&c.id, why) as f64,
            ));
        }
    }
    m.family(
        "gridsight_camera_frames_dropped_total",
        "Frames dropped, by stage and reason; intended=\"false\" means the node fell behind.",
        "counter",
        &dropped,
    );
    m.family(
        "gridsight_camera_alerts_stored_total",
        "Alerts written to the outbox.",
        "counter",
        &node_counter(&|n| n.alerts_stored.load(Relaxed)),
    );
    m.family(
        "gridsight_camera_alerts_failed_total",
        "Alerts the outbox refused (lost; see the log).",
        "counter",
        &node_counter(&|n| n.alerts_failed.load(Relaxed)),
    );
    m.family(
        "gridsight_camera_alerts_delivered_total",
        "Alerts the broker acknowledged (PUBACK).",
        "counter",
        &node_counter(&|n| n.alerts_delivered.load(Relaxed)),
    );
    m.family(
        "gridsight_camera_panics_total",
        "Panics caught while tracking or evaluating the camera's rules (its tracker and rules restarted).",
        "counter",
        &node_counter(&|n| n.panics.load(Relaxed)),
    );
    m.family("gridsight_camera_reconnects_total", "Reconnections.", "counter", &per_cam(&|c| c.reconnects as f64));
    m.family("gridsight_camera_stalls_total", "Stalls detected.", "counter", &per_cam(&|c| c.stalls as f64));
    m.family(
        "gridsight_outbox_pending",
        "Messages waiting for the broker's PUBACK.",
        "gauge",
        &[(vec![], s.outbox_pending as f64)],
    );
    m.family(
        "gridsight_outbox_snapshots_dropped_total",
        "Unsent snapshots deleted to keep the outbox within its size or the disk reserve.",
        "counter",
        &[(vec![], s.outbox_dropped_snapshots as f64)],
    );
    super::disk_metrics(m, &src.disk);
    let link = &src.link;
    m.family(
        "gridsight_mqtt_connected",
        "1 while connected to the broker.",
        "gauge",
        &[(vec![], f64::from(u8::from(link.connected.load(std::sync::atomic::Ordering::SeqCst))))],
    );
    m.family(
        "gridsight_mqtt_acked_total",
        "Messages the broker acknowledged.",
        "counter",
        &[(vec![], link.acked.load(Relaxed) as f64)],
    );
    m.family(
        "gridsight_mqtt_connects_total",
        "Connections made to the broker.",
        "counter",
        &[(vec![], link.connects.load(Relaxed) as f64)],
    );
}

/// `{"state", "free_bytes", "reserve_bytes"}` of the disk under `data_dir`.
pub(crate) fn disk_status(disk: &DiskGuard) -> contract::DiskStatus {
    let free = disk.free();
    contract::DiskStatus {
        state: match free.map_or(DiskState::Ok, |f| disk.state_of(f)) {
            DiskState::Ok => contract::DiskStateName::Ok,
            DiskState::Low => contract::DiskStateName::Low,
            DiskState::Full => contract::DiskStateName::Full,
        },
        free_bytes: free,
        reserve_bytes: disk.reserve(),
    }
}

pub(crate) fn disk_json(disk: &DiskGuard) -> serde_json::Value {
    serde_json::to_value(disk_status(disk)).unwrap_or_default()
}

/// Logs when the disk under `data_dir` changes state; returns the state now.
pub(crate) fn log_disk_change(disk: &DiskGuard, before: DiskState) -> DiskState {
    let Some(free) = disk.free() else { return before };
    let now = disk.state_of(free);
    if now != before {
        let (free_mb, reserve_mb) = (free as f64 / 1e6, disk.reserve() as f64 / 1e6);
        match now {
            DiskState::Ok => {
                info!(free_mb, reserve_mb, "disk ok again: snapshots, clips and thumbnails are stored again")
            }
            DiskState::Low => warn!(
                free_mb,
                reserve_mb,
                "disk low: under the reserve kept for alerts; old snapshots and clips are deleted and new ones not stored, alerts still are"
            ),
            DiskState::Full => tracing::error!(
                free_mb,
                reserve_mb,
                "disk full: alerts are at risk; free space on the filesystem of storage.data_dir"
            ),
        }
    }
    now
}

/// `GET /status`: every camera's status (with when its newest picture was taken), the
/// outbox and the disk, as JSON.
pub(crate) fn status_route(
    node: String,
    snapshot: Arc<std::sync::Mutex<Snapshot>>,
    sources: Arc<MetricsSources>,
    live: Arc<crate::live::LiveFrames>,
) -> axum::Router {
    use super::http::{Get, get, json};
    axum::Router::new().route(
        "/status",
        get(move |_: &Get| {
            let s = snapshot.locked();
            let cams: Vec<_> = sources
                .cameras
                .status()
                .iter()
                .map(|c| {
                    let mut v = camera_status_json(&node, c, &s.at, &sources.counters);
                    v["snapshot_at"] = live.at(&c.id).map(crate::contract::time::rfc3339).into();
                    v
                })
                .collect();
            json(&serde_json::json!({
                "node": node, "outbox_pending": s.outbox_pending, "disk": disk_json(&sources.disk),
                "at": s.at, "cameras": cams,
            }))
        }),
    )
}
