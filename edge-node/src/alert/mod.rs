//! alert: rule events become small JSON alerts and privacy-safe snapshots, written to the
//! outbox before anything is published.
//!
//! Input: [`RuleEvent`]s of a camera with the frame they came from. Output: outbox rows —
//! one alert per event on `<prefix>/<node>/alerts` (schema `gridsight.alert`, version 1,
//! well under 4 KiB), and for each `new` event a JPEG on `<prefix>/<node>/snapshots/<id>`
//! with the triggering box drawn and every face pixelated (unless the camera's privacy
//! setting is `raw`), downscaled to at most 640 pixels wide, also kept on disk. Writes are
//! synchronous: when `emit` returns, the alert is durable.

use crate::Locked;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::contract::time::rfc3339;
use crate::contract::{Alert, AlertType, Schema, Version1};

use crate::config::FacePolicy;
use crate::outbox::{Kind, Message, Optional, Outbox, OutboxError};
use crate::privacy::Privacy;
pub use crate::privacy::{pixelate, pixelate_coarser};
use crate::rules::{EventKind, RuleEvent};
use crate::types::{Face, Frame};

/// Where alerts of one node go.
pub struct AlertSink {
    node: String,
    topics: crate::contract::Topics,
    snapshot_dir: Option<PathBuf>,
    /// Distinguishes this process's ids from those of earlier runs.
    nonce: u32,
    seq: AtomicU64,
    /// The last [`RECENT`] alerts stored, oldest first (the status page).
    recent: Mutex<std::collections::VecDeque<Alert>>,
    /// Searches snapshots for faces on the whole frame (none: only the faces given).
    privacy: Arc<Privacy>,
}

/// How many alerts [`AlertSink::recent`] keeps.
pub const RECENT: usize = 100;

/// Camera facts an alert carries.
pub struct CameraInfo<'a> {
    pub id: &'a str,
    pub micro_grid: Option<&'a str>,
    pub grid: Option<&'a str>,
    pub faces: FacePolicy,
    /// The event clip a `new` alert points at (its own id, or that of the clip it shares
    /// with alerts of the same moment); `None`: no clip.
    pub clip: Option<&'a str>,
    /// The camera's `[longitude, latitude]`, when configured.
    pub location: Option<[f64; 2]>,
}

pub const SNAPSHOT_MAX_WIDTH: u32 = 640;

impl AlertSink {
    pub fn new(node: &str, prefix: &str, snapshot_dir: Option<PathBuf>) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let nonce = now.subsec_nanos() ^ std::process::id().rotate_left(16);
        Self {
            node: node.into(),
            topics: crate::contract::Topics::new(prefix),
            snapshot_dir,
            nonce,
            seq: AtomicU64::new(0),
            recent: Mutex::default(),
            privacy: Arc::default(),
        }
    }

    /// Snapshots are searched for faces with `privacy` ([`crate::privacy`]) before they are
    /// stored.
    pub fn with_privacy(mut self, privacy: Arc<Privacy>) -> Self {
        self.privacy = privacy;
        self
    }

    /// The face search pictures of this node go through.
    pub fn privacy(&self) -> Arc<Privacy> {
        self.privacy.clone()
    }

    /// The alerts stored lately, newest first.
    pub fn recent(&self) -> Vec<Alert> {
        self.recent.locked().iter().rev().cloned().collect()
    }

    fn remember(&self, alert: &Alert) {
        let mut r = self.recent.locked();
        if r.len() == RECENT {
            r.pop_front();
        }
        r.push_back(alert.clone());
    }

    /// The stored snapshot file of an alert, if it is still there (`id` as made by
    /// [`Self::next_id`]; anything else is refused, so no path leaves the folder).
    pub fn snapshot_file(&self, id: &str) -> Option<Vec<u8>> {
        if id.is_empty() || id.len() > 40 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return None;
        }
        std::fs::read(self.snapshot_dir.as_ref()?.join(format!("{id}.jpg"))).ok()
    }

    /// A unique, time-ordered id: milliseconds, this run's nonce, a counter.
    pub fn next_id(&self) -> String {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        format!("{ms:013}-{:08x}-{:06}", self.nonce, self.seq.fetch_add(1, Ordering::Relaxed))
    }

    pub fn alerts_topic(&self) -> String {
        self.topics.alerts(&self.node)
    }

    /// Builds the alert (and, for `new`, the snapshot) and stores both in the outbox.
    /// Returns the alert's JSON.
    /// Builds the alert (and for a `new` event, its snapshot) and stores both in the
    /// outbox in one transaction. The slow part, the JPEG, is made before the outbox lock
    /// is taken, so the MQTT link is never kept waiting by it.
    pub fn emit(
        &self,
        outbox: &Mutex<Outbox>,
        cam: &CameraInfo,
        event: &RuleEvent,
        frame: Option<&Frame>,
        faces: &[Face],
        wall: SystemTime,
    ) -> Result<Alert, OutboxError> {
        self.emit_as(&self.next_id(), outbox, cam, event, frame, faces, wall)
    }

    /// [`Self::emit`] with an id made beforehand by [`Self::next_id`] (so that a clip can
    /// be asked for in its name before the alert is built).
    #[allow(clippy::too_many_arguments)]
    pub fn emit_as(
        &self,
        id: &str,
        outbox: &Mutex<Outbox>,
        cam: &CameraInfo,
        event: &RuleEvent,
        frame: Option<&Frame>,
        faces: &[Face],
        wall: SystemTime,
    ) -> Result<Alert, OutboxError> {
        let id = id.to_string();
        let snapshot_topic = self.topics.snapshot(&self.node, &id);
        let jpeg = match (event.kind, frame) {
            (EventKind::New, Some(f)) => snapshot(f, event.bbox, faces, cam.faces, Some(&self.privacy)),
            _ => None,
        };
        let mut out = outbox.locked();
        let jpeg = jpeg.filter(|j| self.room_for_snapshot(&mut out, j.len() as u64));
        let alert = alert_for(&id, &self.node, cam, event, wall, jpeg.as_ref().map(|_| snapshot_topic.as_str()));
        let payload = serde_json::to_vec(&alert).unwrap_or_default();
        let alert_row = Message { topic: self.alerts_topic(), payload, retain: false, kind: Kind::Alert };
        let mut messages = vec![alert_row.clone()];
        if let Some(jpeg) = jpeg {
            if let Some(dir) = &self.snapshot_dir
                && std::fs::create_dir_all(dir).is_ok()
            {
                let _ = std::fs::write(dir.join(format!("{id}.jpg")), &jpeg);
            }
            messages.push(Message { topic: snapshot_topic, payload: jpeg, retain: false, kind: Kind::Snapshot });
        }
        let stored = match out.push_all(&messages) {
            Ok(_) => Ok(alert),
            // No room even for the alert: everything that is not an alert makes way, then
            // the alert alone is stored (its snapshot field then names nothing).
            Err(e) if e.is_disk_full() => {
                tracing::warn!(
                    camera = cam.id,
                    "disk full: deleting optional files and unsent snapshots to store the alert"
                );
                match out.disk() {
                    // Every optional file (snapshots, clips) makes way, oldest first.
                    Some(disk) => {
                        disk.delete_oldest(u64::MAX);
                    }
                    None => {
                        if let Some(dir) = &self.snapshot_dir {
                            let _ = free_oldest_snapshots(dir, u64::MAX);
                        }
                    }
                }
                out.drop_snapshots(u64::MAX)?;
                let mut alert = alert;
                alert.snapshot = None;
                let row = Message { payload: serde_json::to_vec(&alert).unwrap_or_default(), ..alert_row };
                out.push(&row)?;
                Ok(alert)
            }
            Err(e) => Err(e),
        };
        drop(out);
        if let Ok(a) = &stored {
            self.remember(a);
        }
        stored
    }

    /// Whether a snapshot of `len` bytes (a file, an outbox row and its WAL frames) fits
    /// without eating into the disk reserve kept for alerts, after deleting the oldest
    /// optional files and then unsent snapshots to make room (see [`crate::outbox::DiskGuard::admit`]).
    fn room_for_snapshot(&self, out: &mut Outbox, len: u64) -> bool {
        let Some(disk) = out.disk().cloned() else { return true };
        if let Some(dir) = &self.snapshot_dir {
            disk.keep_files(Optional::Snapshot, dir, "jpg");
        }
        disk.admit_with(Optional::Snapshot, len * 3, |short| {
            let _ = out.drop_snapshots(short);
        })
    }
}

/// Deletes the oldest `.jpg` files in `dir` until at least `bytes` are freed; returns
/// (files removed, bytes freed).
pub fn free_oldest_snapshots(dir: &std::path::Path, bytes: u64) -> std::io::Result<(usize, u64)> {
    let mut files = snapshot_files(dir, SystemTime::now())?;
    files.sort();
    let (mut removed, mut freed) = (0, 0);
    for (_, len, path) in files {
        if freed >= bytes {
            break;
        }
        std::fs::remove_file(&path)?;
        removed += 1;
        freed += len;
    }
    Ok((removed, freed))
}

/// The snapshot files of `dir`: (modified, size, path).
fn snapshot_files(dir: &std::path::Path, now: SystemTime) -> std::io::Result<Vec<(SystemTime, u64, PathBuf)>> {
    files_of(dir, "jpg", now)
}

fn files_of(dir: &std::path::Path, ext: &str, now: SystemTime) -> std::io::Result<Vec<(SystemTime, u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() && entry.path().extension().is_some_and(|e| e == ext) {
            files.push((meta.modified().unwrap_or(now), meta.len(), entry.path()));
        }
    }
    Ok(files)
}

/// The alert document (documented in the book: docs/src/reference/mqtt.md).
pub fn alert_for(
    id: &str,
    node: &str,
    cam: &CameraInfo,
    e: &RuleEvent,
    wall: SystemTime,
    snapshot: Option<&str>,
) -> Alert {
    // Event times are stream-relative; place them on the wall clock relative to `wall`,
    // the moment of the frame that produced the event.
    let now = e.ended_at.unwrap_or(e.started_at).max(e.started_at);
    let at = |t: Duration| rfc3339(wall.checked_sub(now.saturating_sub(t)).unwrap_or(wall));
    // Through f64, so 258.4 prints as 258.4 and not 258.3999938964844.
    let round = |v: f32| (v as f64 * 10.0).round() / 10.0;
    Alert {
        schema: Schema::new(),
        version: Version1,
        id: id.to_string(),
        kind: match e.kind {
            EventKind::New => AlertType::New,
            EventKind::Update => AlertType::Update,
            EventKind::End => AlertType::End,
        },
        incident: format!("{node}/{}/{}/{}", cam.id, e.rule, e.incident),
        node: node.to_string(),
        camera: cam.id.to_string(),
        rule: e.rule.clone(),
        category: e.category.clone(),
        severity: e.severity,
        dispatch: e.dispatch,
        label: e.label.clone(),
        score: (e.score as f64 * 1000.0).round() / 1000.0,
        track: e.track,
        zone: e.zone.clone(),
        count: e.count,
        bbox: e.bbox.map(|b| b.map(round)),
        micro_grid: cam.micro_grid.map(str::to_string),
        grid: cam.grid.map(str::to_string),
        // Computed once, when the incident opened: the same in every alert of it.
        started_at: rfc3339(e.started_wall),
        ended_at: e.ended_at.map(at),
        snapshot: snapshot.map(str::to_string),
        clip: cam.clip.filter(|_| e.kind == EventKind::New).map(|c| format!("/clips/{c}.mp4")),
        location: cam.location,
        last_seen: e.last_seen.map(rfc3339),
    }
}

/// JPEG of the frame: faces pixelated (unless `raw`), the triggering box drawn, at most
/// [`SNAPSHOT_MAX_WIDTH`] wide. Boxes are in camera pixels and mapped to the frame.
/// With `privacy` (and the `blur` policy), every face a whole-frame search finds is
/// pixelated too ([`crate::privacy`]), not only the `faces` the camera's detection found.
pub fn snapshot(
    frame: &Frame,
    bbox: Option<[f32; 4]>,
    faces: &[Face],
    policy: FacePolicy,
    privacy: Option<&Privacy>,
) -> Option<Vec<u8>> {
    match policy {
        FacePolicy::Blur => {
            let hide: Vec<[f32; 4]> = faces.iter().map(|f| f.bbox).collect();
            let safe = safe_pixels(frame, &hide, privacy)?;
            jpeg_of(&safe, frame, bbox, SNAPSHOT_MAX_WIDTH)
        }
        FacePolicy::Raw => jpeg_of(&frame.data, frame, bbox, SNAPSHOT_MAX_WIDTH),
    }
}

/// The frame's pixels (packed BGR) with the `hide` regions (camera pixels) pixelated and,
/// with `privacy`, every face its whole-frame search finds. `None` when the search failed
/// (then nothing of the frame may be published; logged).
pub fn safe_pixels(frame: &Frame, hide: &[[f32; 4]], privacy: Option<&Privacy>) -> Option<Vec<u8>> {
    let (w, h) = (frame.width, frame.height);
    let to_frame = to_frame_pixels(frame);
    let known: Vec<[f32; 4]> = hide.iter().map(|b| to_frame(*b)).collect();
    let mut bgr = frame.data.to_vec();
    match privacy {
        Some(p) => {
            if let Err(e) = p.hide(&mut bgr, w, h, &known) {
                tracing::error!(camera = %frame.camera, "the face search failed, so this picture is not published: {e}");
                return None;
            }
        }
        None => {
            for b in &known {
                pixelate(&mut bgr, w, h, *b);
            }
        }
    }
    Some(bgr)
}

/// Camera pixels to the frame's.
fn to_frame_pixels(frame: &Frame) -> impl Fn([f32; 4]) -> [f32; 4] {
    let sx = frame.width as f32 / frame.source_width.max(frame.width) as f32;
    let sy = frame.height as f32 / frame.source_height.max(frame.height) as f32;
    move |b: [f32; 4]| [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]
}

/// JPEG of the frame with the `hide` regions pixelated and `bbox` drawn (both in camera
/// pixels), at most `max_width` wide (aspect kept). No face search: see [`snapshot`].
pub fn jpeg(frame: &Frame, hide: &[[f32; 4]], bbox: Option<[f32; 4]>, max_width: u32) -> Option<Vec<u8>> {
    let safe = safe_pixels(frame, hide, None)?;
    jpeg_of(&safe, frame, bbox, max_width)
}

/// JPEG of `bgr` (the frame's size) with `bbox` (camera pixels) drawn, at most `max_width`
/// wide (aspect kept).
pub fn jpeg_of(bgr: &[u8], frame: &Frame, bbox: Option<[f32; 4]>, max_width: u32) -> Option<Vec<u8>> {
    let (w, h) = (frame.width, frame.height);
    let to_frame = to_frame_pixels(frame);
    let mut rgb: Vec<u8> = bgr.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
    if let Some(b) = bbox {
        crate::detect::draw_box(&mut rgb, w, h, to_frame(b), [255, 60, 0]);
    }
    let img = image::RgbImage::from_raw(w, h, rgb)?;
    let max_width = max_width.max(16);
    let img = if w > max_width {
        let nh = (h as f32 * max_width as f32 / w as f32).round().max(1.0) as u32;
        image::imageops::resize(&img, max_width, nh, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80).encode_image(&img).ok()?;
    Some(out)
}

/// Deletes snapshot files older than `max_age`, then the oldest ones while the folder holds
/// more than `max_bytes`. Returns (files removed, bytes kept).
pub fn prune_snapshots(
    dir: &std::path::Path,
    max_age: Duration,
    max_bytes: u64,
    now: SystemTime,
) -> std::io::Result<(usize, u64)> {
    prune_files(dir, "jpg", max_age, max_bytes, now)
}

/// Deletes the `*.<ext>` files of `dir` older than `max_age`, then the oldest while the
/// rest exceed `max_bytes`. Returns (files removed, bytes left).
pub fn prune_files(
    dir: &std::path::Path,
    ext: &str,
    max_age: Duration,
    max_bytes: u64,
    now: SystemTime,
) -> std::io::Result<(usize, u64)> {
    let mut files = files_of(dir, ext, now)?;
    files.sort();
    let mut removed = 0;
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    for (modified, len, path) in files {
        let too_old = now.duration_since(modified).unwrap_or_default() > max_age;
        if too_old || total > max_bytes {
            std::fs::remove_file(&path)?;
            removed += 1;
            total -= len;
        }
    }
    Ok((removed, total))
}

/// `GET /alerts/<alert id>.jpg`: a stored alert snapshot.
pub fn routes(alerts: Arc<AlertSink>) -> axum::Router {
    use crate::http::{Get, Reply, get};
    axum::Router::new().route(
        "/alerts/:file",
        get(move |g: &Get| match g.param("file").strip_suffix(".jpg").and_then(|id| alerts.snapshot_file(id)) {
            Some(jpeg) => Reply::new(200, "image/jpeg", jpeg),
            None => Reply::new(404, "text/plain", "no such snapshot (deleted by retention, or never stored)\n"),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_by_age_then_by_size() {
        let dir = std::env::temp_dir().join(format!("gridsight-snaps-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let now = SystemTime::now();
        for (name, age_s) in [("a.jpg", 10_000u64), ("b.jpg", 300), ("c.jpg", 200), ("d.jpg", 100)] {
            let p = dir.join(name);
            std::fs::write(&p, vec![0u8; 100]).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(now - Duration::from_secs(age_s))
                .unwrap();
        }
        std::fs::write(dir.join("notes.txt"), "not a snapshot").unwrap();
        // a.jpg is past the age limit; then 300 bytes > 250: b.jpg (oldest) goes too.
        let (removed, kept) = prune_snapshots(&dir, Duration::from_secs(3600), 250, now).unwrap();
        assert_eq!((removed, kept), (2, 200));
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["c.jpg", "d.jpg", "notes.txt"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ids_are_unique_and_ordered() {
        let s = AlertSink::new("n", "gridsight", None);
        let ids: Vec<String> = (0..1000).map(|_| s.next_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids);
    }
}
