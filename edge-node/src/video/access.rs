//! access: who may watch raw live video, and the audit of every view.
//!
//! Raw live video shows faces. It is served only to credentials with the `live` right
//! (`http.users_file` roles `live` and `admin`; the `token_file` token is an admin's; on a
//! loopback-only listener without credentials, the local user is), and only for cameras
//! whose `privacy.live` is not `off`. Anyone else gets 403 with the reason and the address of
//! the pixelated live picture. Every view is audited: a line in `<data_dir>/audit/live.jsonl`
//! when it starts and when it ends (written and synced before the first byte is sent), a
//! `gridsight.live_view` message to the district through the outbox (so a broker outage
//! delays it, never loses it), and counts on `/metrics`.

use crate::Locked;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, State, ws};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::{info, warn};

use super::{LiveVideo, Viewer, WatchError};

/// How long a viewer's fragments wait for the next ones to go out in one write (15 frames at
/// 25 fps). A write and a wake per frame per viewer cost about 0.67 ms of CPU per
/// viewer-second on loopback, 200 ms batches 0.37 ms, 400 ms batches 0.22 ms (`make
/// bench-live`); the price is up to this much more delay to the screen.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(600);
use crate::config::Role;
use crate::contract::LiveView;
use crate::telemetry::http::Caller;

/// Views kept in memory for `GET /audit/live`.
const RECENT: usize = 200;

/// The audit file is rotated at this size: `live.jsonl` becomes `live-<UTC time>-<n>.jsonl`.
const ROTATE_BYTES: u64 = 16 << 20;
/// Rotated audit files kept (the oldest beyond are deleted): 8 × 16 MiB, about 400,000 views.
const KEEP_ROTATED: usize = 8;

/// The audit of raw live views.
pub struct Audit {
    node: String,
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
    /// Rotation: at what size, and how many rotated files are kept.
    rotate: (u64, usize),
    rotations: AtomicU64,
    publish: Box<dyn Fn(&LiveView) + Send + Sync>,
    recent: Mutex<VecDeque<LiveView>>,
    /// Views and watched seconds per (camera, role).
    counts: Mutex<BTreeMap<(String, String), (u64, f64)>>,
    next: AtomicU64,
    run: u64,
    pub bytes: AtomicU64,
    pub skipped: AtomicU64,
    /// Refusals: no right, or the camera forbids it.
    pub refused: AtomicU64,
}

impl Audit {
    /// An audit kept under `data_dir/audit/`; `publish` sends each record to the district.
    pub fn new(node: &str, data_dir: &std::path::Path, publish: Box<dyn Fn(&LiveView) + Send + Sync>) -> Self {
        let path = data_dir.join("audit").join("live.jsonl");
        let run = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        Audit {
            node: node.to_string(),
            path,
            file: Mutex::new(None),
            rotate: (ROTATE_BYTES, KEEP_ROTATED),
            rotations: AtomicU64::new(0),
            publish,
            recent: Mutex::default(),
            counts: Mutex::default(),
            next: AtomicU64::new(0),
            run,
            bytes: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Starts recording a view (written before anything is shown).
    pub fn start(self: &Arc<Self>, caller: &Caller, camera: &str, transport: &str) -> View {
        let record = LiveView {
            schema: Default::default(),
            version: Default::default(),
            id: format!("{}-{}", self.run, self.next.fetch_add(1, Ordering::Relaxed) + 1),
            node: self.node.clone(),
            camera: camera.to_string(),
            viewer: caller.name.clone(),
            role: caller.role.name().to_string(),
            transport: transport.to_string(),
            started_at: crate::contract::time::rfc3339(SystemTime::now()),
            ended_at: None,
            bytes: 0,
            skipped: 0,
        };
        info!(viewer = %caller.name, camera, transport, "live view started");
        self.record(&record);
        self.counts.locked().entry((camera.to_string(), record.role.clone())).or_default().0 += 1;
        View { audit: self.clone(), record, since: Instant::now(), bytes: 0, skipped: 0 }
    }

    fn record(&self, r: &LiveView) {
        let line = serde_json::to_string(r).unwrap_or_default();
        let mut file = self.file.locked();
        if file.is_none() {
            let opened = self
                .path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|_| std::fs::OpenOptions::new().create(true).append(true).open(&self.path));
            match opened {
                Ok(f) => *file = Some(f),
                Err(e) => warn!(path = %self.path.display(), "cannot open the live-view audit log: {e}"),
            }
        }
        if let Some(f) = file.as_mut() {
            match writeln!(f, "{line}").and_then(|_| f.sync_data()).and_then(|_| f.metadata()) {
                Err(e) => {
                    warn!(path = %self.path.display(), "cannot write the live-view audit log: {e}");
                    *file = None;
                }
                Ok(meta) if meta.len() >= self.rotate.0 => {
                    *file = None;
                    self.rotated();
                }
                Ok(_) => {}
            }
        }
        drop(file);
        (self.publish)(r);
        let mut recent = self.recent.locked();
        match recent.iter_mut().find(|v| v.id == r.id) {
            Some(v) => *v = r.clone(),
            None => {
                recent.push_back(r.clone());
                if recent.len() > RECENT {
                    recent.pop_front();
                }
            }
        }
    }

    /// Renames the full audit file to `live-<UTC time>-<n>.jsonl` (the next record starts a new
    /// one) and deletes the oldest rotated files beyond the number kept.
    fn rotated(&self) {
        let stamp = crate::contract::time::rfc3339(SystemTime::now()).replace([':', '.'], "");
        let n = self.rotations.fetch_add(1, Ordering::Relaxed);
        let to = self.path.with_file_name(format!("live-{stamp}-{n:04}.jsonl"));
        match std::fs::rename(&self.path, &to) {
            Ok(()) => info!(to = %to.display(), "live-view audit log rotated"),
            Err(e) => warn!(path = %self.path.display(), "cannot rotate the live-view audit log: {e}"),
        }
        let Some(dir) = self.path.parent() else { return };
        let mut old: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("live-") && n.ends_with(".jsonl"))
            })
            .collect();
        // The names sort by time.
        old.sort();
        let excess = old.len().saturating_sub(self.rotate.1);
        for p in &old[..excess] {
            if let Err(e) = std::fs::remove_file(p) {
                warn!(path = %p.display(), "cannot delete an old live-view audit log: {e}");
            }
        }
    }

    /// The newest views, newest first.
    pub fn recent(&self) -> Vec<LiveView> {
        self.recent.locked().iter().rev().cloned().collect()
    }

    /// Views and watched seconds per (camera, role), for `/metrics`.
    pub fn counts(&self) -> Vec<((String, String), (u64, f64))> {
        self.counts.locked().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// One view being watched; its end is recorded when it is dropped (the viewer left, the
/// camera went, the node stops).
pub struct View {
    audit: Arc<Audit>,
    record: LiveView,
    since: Instant,
    bytes: u64,
    skipped: u64,
}

impl View {
    fn sent(&mut self, n: usize) {
        self.bytes += n as u64;
        self.audit.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn skipped(&mut self, total: u64) {
        self.audit.skipped.fetch_add(total - self.skipped, Ordering::Relaxed);
        self.skipped = total;
    }
}

impl Drop for View {
    fn drop(&mut self) {
        let mut r = self.record.clone();
        r.ended_at = Some(crate::contract::time::rfc3339(SystemTime::now()));
        r.bytes = self.bytes;
        r.skipped = self.skipped;
        let seconds = self.since.elapsed().as_secs_f64();
        if let Some(c) = self.audit.counts.locked().get_mut(&(r.camera.clone(), r.role.clone())) {
            c.1 += seconds;
        }
        info!(viewer = %r.viewer, camera = %r.camera, seconds = format!("{seconds:.1}"), bytes = r.bytes, "live view ended");
        self.audit.record(&r);
    }
}

/// `None` when `caller` may watch raw live video, else the answer that says why not.
fn not_allowed(audit: &Audit, caller: &Caller, camera: &str) -> Option<Response> {
    if caller.role >= Role::Live {
        return None;
    }
    audit.refused.fetch_add(1, Ordering::Relaxed);
    Some(
        (
            StatusCode::FORBIDDEN,
            [(header::CACHE_CONTROL, "no-store")],
            format!(
                "{} ({}) may not watch raw live video, which shows faces: that needs the live or admin role \
             (http.users_file). The pixelated live picture is at /cameras/{camera}/snapshot.jpg\n",
                caller.name,
                caller.role.name()
            ),
        )
            .into_response(),
    )
}

fn refusal(audit: &Audit, camera: &str, e: WatchError) -> Response {
    let status = match e {
        WatchError::Unknown => StatusCode::NOT_FOUND,
        WatchError::Forbidden => {
            audit.refused.fetch_add(1, Ordering::Relaxed);
            StatusCode::FORBIDDEN
        }
        WatchError::NoVideo | WatchError::Unsupported(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let hint = if status == StatusCode::NOT_FOUND {
        String::new()
    } else {
        format!("; the pixelated live picture is at /cameras/{camera}/snapshot.jpg")
    };
    (status, [(header::CACHE_CONTROL, "no-store")], format!("camera {camera}: {e}{hint}\n")).into_response()
}

#[derive(Clone)]
struct Live {
    video: Arc<LiveVideo>,
    audit: Arc<Audit>,
}

/// `GET /cameras/<id>/live.mp4`: one long response of fragmented MP4 (init segment, then a
/// fragment per frame from the newest key frame on) until the viewer leaves.
async fn mp4(State(live): State<Live>, Path(camera): Path<String>, caller: axum::Extension<Caller>) -> Response {
    use futures::StreamExt;
    if let Some(r) = not_allowed(&live.audit, &caller, &camera) {
        return r;
    }
    let watch = match live.video.watch(&camera) {
        Ok(w) => w,
        Err(e) => return refusal(&live.audit, &camera, e),
    };
    let mut first: VecDeque<Bytes> = std::iter::once(watch.init.clone()).collect();
    let (viewer, backlog) = Viewer::new(watch);
    first.extend(backlog.into_iter().map(|p| p.bytes));
    let view = live.audit.start(&caller, &camera, "mp4");
    let stream = futures::stream::unfold((viewer, first, view), |(mut viewer, mut first, mut view)| async move {
        let bytes = match first.pop_front() {
            Some(b) => b,
            None => {
                let batch = viewer.batch(LINGER).await?;
                if let Some(init) = batch.init.clone() {
                    first.push_back(batch.bytes());
                    init
                } else {
                    batch.bytes()
                }
            }
        };
        view.sent(bytes.len());
        view.skipped(viewer.skipped);
        Some((bytes, (viewer, first, view)))
    });
    (
        [(header::CONTENT_TYPE, "video/mp4"), (header::CACHE_CONTROL, "no-store")],
        axum::body::Body::from_stream(stream.map(Ok::<_, std::convert::Infallible>)),
    )
        .into_response()
}

/// `GET /cameras/<id>/live.ws`: the same stream over a WebSocket for Media Source Extensions:
/// first a text message `{"codec", "width", "height"}`, then binary messages (the init
/// segment, after a text message `{"init": true}`, and fragments, several per message),
/// and a text message `{"time", "wall"}` before a message that starts with a key frame (the
/// stream's time in seconds, and the wall-clock milliseconds the node received it) so the
/// page can show how late it is.
async fn websocket(
    State(live): State<Live>,
    Path(camera): Path<String>,
    caller: axum::Extension<Caller>,
    upgrade: ws::WebSocketUpgrade,
) -> Response {
    if let Some(r) = not_allowed(&live.audit, &caller, &camera) {
        return r;
    }
    let watch = match live.video.watch(&camera) {
        Ok(w) => w,
        Err(e) => return refusal(&live.audit, &camera, e),
    };
    let view = live.audit.start(&caller, &camera, "websocket");
    upgrade.on_upgrade(move |socket| serve_socket(socket, watch, view))
}

async fn serve_socket(socket: ws::WebSocket, watch: super::Watch, mut view: View) {
    use futures::{SinkExt, StreamExt};
    use ws::Message;
    // The page says nothing; its close (or a dead socket) ends the view. Read apart, so
    // waiting for it never cancels a batch being gathered.
    let (mut socket, mut incoming) = socket.split();
    let (closed_tx, mut closed) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        while let Some(Ok(m)) = incoming.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
        let _ = closed_tx.send(());
    });
    let hello = serde_json::json!({"codec": watch.codec, "width": watch.width, "height": watch.height});
    let init = watch.init.clone();
    let (mut viewer, backlog) = Viewer::new(watch);
    let wall_ms = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let init_mark = || Message::Text(r#"{"init":true}"#.to_string());
    let mut out: Vec<Message> = vec![Message::Text(hello.to_string()), init_mark(), Message::Binary(init.to_vec())];
    for p in backlog {
        if p.key {
            out.push(Message::Text(serde_json::json!({"time": p.time, "wall": wall_ms(p.wall)}).to_string()));
        }
        out.push(Message::Binary(p.bytes.to_vec()));
    }
    loop {
        for m in out.drain(..) {
            let n = match &m {
                Message::Binary(b) => b.len(),
                _ => 0,
            };
            if socket.send(m).await.is_err() {
                return;
            }
            view.sent(n);
        }
        view.skipped(viewer.skipped);
        tokio::select! {
            batch = viewer.batch(LINGER) => {
                let Some(batch) = batch else { return };
                if let Some(init) = &batch.init {
                    out.push(init_mark());
                    out.push(Message::Binary(init.to_vec()));
                }
                let first = &batch.pieces[0];
                if first.key {
                    out.push(Message::Text(serde_json::json!({"time": first.time, "wall": wall_ms(first.wall)}).to_string()));
                }
                out.push(Message::Binary(batch.bytes().to_vec()));
            },
            _ = &mut closed => return,
        }
    }
}

/// `GET /audit/live` (admins): the newest raw live views, newest first, as JSON.
async fn recent(State(live): State<Live>, caller: axum::Extension<Caller>) -> Response {
    if caller.role < Role::Admin {
        return (StatusCode::FORBIDDEN, format!("{}: the audit of live views is for admins\n", caller.name))
            .into_response();
    }
    crate::telemetry::http::json(&live.audit.recent()).into_response()
}

/// `GET /api/live`: who the caller is, and for each camera whether the caller may watch its
/// raw live video now, or why not in words (the pages fall back to the pixelated picture
/// and say why).
async fn availability(State(live): State<Live>, caller: axum::Extension<Caller>) -> Response {
    let may = caller.role >= Role::Live;
    let cameras: serde_json::Map<String, serde_json::Value> = live
        .video
        .availability()
        .into_iter()
        .map(|(c, why)| {
            let why = if may {
                why
            } else {
                Some(format!("{} ({}) has no right to raw live video", caller.name, caller.role.name()))
            };
            (c, serde_json::json!({"live": why.is_none(), "why": why}))
        })
        .collect();
    crate::telemetry::http::json(&serde_json::json!({
        "viewer": caller.name, "role": caller.role.name(), "cameras": cameras,
    }))
    .with_header(header::CACHE_CONTROL, "no-store")
    .into_response()
}

/// The video wall for the big screen (`GET /wall`; see the page's own notes).
const WALL: &str = include_str!("wall.html");

/// The routes of raw live video, its audit and the wall.
pub fn routes(video: Arc<LiveVideo>, audit: Arc<Audit>) -> axum::Router {
    axum::Router::new()
        .route("/api/live", axum::routing::get(availability))
        .route(
            "/wall",
            axum::routing::get(|| async {
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], WALL)
            }),
        )
        .route("/cameras/:camera/live.mp4", axum::routing::get(mp4))
        .route("/cameras/:camera/live.ws", axum::routing::get(websocket))
        .route("/audit/live", axum::routing::get(recent))
        .with_state(Live { video, audit })
}

/// Live video's figures for `/metrics`.
pub fn metrics(m: &mut crate::telemetry::MetricsText, video: &LiveVideo, audit: &Audit) {
    let viewers = video.viewers();
    let samples: Vec<(Vec<(&str, &str)>, f64)> =
        viewers.iter().map(|(c, n)| (vec![("camera", c.as_str())], *n as f64)).collect();
    m.family("gridsight_live_viewers", "Raw live video viewers now.", "gauge", &samples);
    let held = video.buffered();
    let held: Vec<(Vec<(&str, &str)>, f64)> =
        held.iter().map(|(c, b)| (vec![("camera", c.as_str())], *b as f64)).collect();
    m.family(
        "gridsight_live_buffer_bytes",
        "Stream kept since the last key frame so a new viewer starts at once (at most 2 MiB).",
        "gauge",
        &held,
    );
    let counts = audit.counts();
    let views: Vec<(Vec<(&str, &str)>, f64)> =
        counts.iter().map(|((c, r), (n, _))| (vec![("camera", c.as_str()), ("role", r.as_str())], *n as f64)).collect();
    m.family("gridsight_live_views", "Raw live views started (audited).", "counter", &views);
    let seconds: Vec<(Vec<(&str, &str)>, f64)> =
        counts.iter().map(|((c, r), (_, s))| (vec![("camera", c.as_str()), ("role", r.as_str())], *s)).collect();
    m.family("gridsight_live_view_seconds", "Seconds of raw live video watched (ended views).", "counter", &seconds);
    let one = |v: u64| vec![(Vec::<(&str, &str)>::new(), v as f64)];
    m.family(
        "gridsight_live_refused",
        "Raw live views refused (no live right, or privacy.live = off).",
        "counter",
        &one(audit.refused.load(Ordering::Relaxed)),
    );
    m.family(
        "gridsight_live_sent_bytes",
        "Bytes of live video sent to viewers.",
        "counter",
        &one(audit.bytes.load(Ordering::Relaxed)),
    );
    m.family(
        "gridsight_live_skipped_fragments",
        "Fragments skipped because a viewer fell behind (it resumed at the newest key frame).",
        "counter",
        &one(audit.skipped.load(Ordering::Relaxed)),
    );
    m.family(
        "gridsight_live_fragments",
        "Frames repackaged as fMP4 fragments (once each, however many watch).",
        "counter",
        &one(video.fragments.load(Ordering::Relaxed)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_file_rotates_and_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!("gridsight-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut audit = Audit::new("n", &dir, Box::new(|_| {}));
        // Rotate every ~2 records, keep 2 rotated files.
        audit.rotate = (500, 2);
        let audit = Arc::new(audit);
        let caller = Caller { name: "ops".into(), role: Role::Live };
        for k in 0..12 {
            let view = audit.start(&caller, &format!("cam-{k}"), "mp4");
            drop(view);
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.join("audit"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        names.sort();
        let rotated = names.iter().filter(|n| n.starts_with("live-")).count();
        assert!((1..=2).contains(&rotated), "two rotated files kept at most: {names:?}");
        // The newest views are kept, the oldest deleted.
        let all: String = names.iter().map(|n| std::fs::read_to_string(dir.join("audit").join(n)).unwrap()).collect();
        assert!(all.contains("\"cam-11\""), "{all}");
        assert!(!all.contains("\"cam-0\""), "the oldest were deleted: {all}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
