//! graph: the stages of `edge-node run` wired in one place, and a config diff applied to them.
//!
//! ```text
//! source::Ingest ──Frame──► on_frame: CameraCore::admit (motion gate; skip counted)
//!   (streaming thread)         │ submit (per-camera queue, drop oldest, counted)
//!                              ▼
//!                        inference::InferencePool (workers; one frame of a camera at a time)
//!                              │ on_detections, in capture order (live snapshots, counts)
//!                              │ camera queue (CAMERA_QUEUE, bounded: a full queue makes
//!                              ▼ the worker wait; nothing is dropped)
//!                        camera stage thread: CameraCore::observe (tracker → rules, stream
//!                              │ time; a panic resets that camera's core and is counted)
//!                              │ alert queue (ALERT_QUEUE, bounded, waits likewise)
//!                              ▼
//!                        alert stage (ALERT_THREADS, a camera always on the same one):
//!                              Emitter: alert + snapshot JPEG (faces hidden)
//!                              ─► Outbox (SQLite) ─► MqttLink
//! ```
//!
//! Inference workers no longer wait on a snapshot's face search or an SQLite commit; the
//! queues keep each camera's order (the pool never holds two of its frames at once, the
//! camera stage is one thread, and a camera's events always go to the same alert thread).
//!
//! [`Graph::apply`] is the one config diff: new cameras get a core and a pool queue,
//! unchanged ones keep theirs, changed or removed ones end their open incidents with `end`
//! alerts (and changed ones start afresh); ingest restarts only the cameras whose stream
//! settings changed.

use crate::Locked;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tracing::{error, info, warn};

use crate::alert::{AlertSink, CameraInfo};
use crate::camera::{Cameras, Placement};
use crate::config::Config;
use crate::drops::Dropped;
use crate::inference::{DetectionCallback, InferencePool};
use crate::motion::Gate;
use crate::outbox::Outbox;
use crate::rules::{IncidentIds, RuleEvent};
use crate::source::FrameCallback;
use crate::telemetry::CameraRegistry;
use crate::types::{Detections, Face, Frame};

/// Rule events → alerts in the outbox, counted per camera, one log line each.
pub struct Emitter {
    pub node: String,
    pub alerts: Arc<AlertSink>,
    pub outbox: Arc<Mutex<Outbox>>,
    pub registry: Arc<CameraRegistry>,
    /// Wakes the MQTT link.
    pub notify: Arc<dyn Fn() + Send + Sync>,
    /// Event clips (`None` in tools that make no clips).
    pub clips: Option<Arc<crate::clips::Clips>>,
    /// With Home Assistant discovery: violation events and last snapshots per camera.
    pub home_assistant: Option<crate::contract::Topics>,
}

impl Emitter {
    pub fn emit(
        &self,
        camera: &str,
        placement: &Placement,
        events: &[RuleEvent],
        frame: Option<&Frame>,
        faces: &[Face],
        wall: SystemTime,
    ) {
        if events.is_empty() {
            return;
        }
        let counters = self.registry.camera(camera);
        let clips = self.clips.as_ref().filter(|c| frame.is_some() && c.records(camera));
        for e in events {
            let id = self.alerts.next_id();
            // A `new` alert's clip, asked for before the alert is built: its own, or the one
            // of this camera's moment it shares.
            let clip = clips
                .filter(|_| e.kind == crate::rules::EventKind::New)
                .and_then(|c| c.request(camera, &id, frame.and_then(|f| f.pts)));
            let cam = CameraInfo {
                id: camera,
                micro_grid: placement.micro_grid.as_deref(),
                grid: placement.grid.as_deref(),
                faces: placement.faces,
                clip: clip.as_deref(),
                location: placement.location,
            };
            match self.alerts.emit_as(&id, &self.outbox, &cam, e, frame, faces, wall) {
                Ok(a) => {
                    counters.alerts_stored.fetch_add(1, Relaxed);
                    if let Some(topics) = &self.home_assistant {
                        let mut out = self.outbox.locked();
                        // The snapshot again, as Home Assistant's image: optional like it.
                        let jpeg = self.alerts.snapshot_file(&a.id).filter(|j| {
                            out.disk().is_none_or(|d| d.admit(crate::outbox::Optional::Snapshot, j.len() as u64 * 2))
                        });
                        let extra = crate::ha::alert_messages(topics, &a, jpeg);
                        if let Err(e) = out.push_all(&extra) {
                            warn!(camera, "cannot store the home assistant event: {e}");
                        }
                    }
                    info!(
                        node = %self.node,
                        camera,
                        alert = %a.id,
                        incident = %a.incident,
                        r#type = %a.kind.name(),
                        category = %e.category,
                        label = %e.label,
                        zone = %e.zone.as_deref().unwrap_or("-"),
                        "alert stored"
                    );
                }
                Err(err) => {
                    counters.alerts_failed.fetch_add(1, Relaxed);
                    if let (Some(c), Some(_)) = (clips, &clip) {
                        c.cancel(camera, &id);
                    }
                    error!(camera, "cannot store alert: {err}");
                }
            }
        }
        (self.notify)();
    }
}

/// What detection found per camera since the last report (the 10 s log line).
#[derive(Default)]
pub struct Found {
    pub frames: u64,
    pub faces: u64,
    pub objects: BTreeMap<String, u64>,
    pub infer: Duration,
}

/// The per-camera stages and what feeds them.
pub struct Graph {
    pub cameras: Arc<Cameras>,
    pub ids: Arc<IncidentIds>,
    pub emitter: Arc<Emitter>,
    pub found: Arc<Mutex<HashMap<Arc<str>, Found>>>,
    /// The newest detected frame of each camera (live snapshots).
    pub live: Arc<crate::live::LiveFrames>,
    /// Each camera's raw live video, repackaged from its access units.
    pub video: Arc<crate::video::LiveVideo>,
    /// The camera stage's queue (detections in, and the incidents a reload ended).
    to_cameras: SyncSender<ToCameras>,
    stages: Mutex<Option<Stages>>,
}

/// Frames with detections the camera stage may hold before inference waits for it. The
/// policy is to wait, never to drop: an alert may hang on any frame.
pub const CAMERA_QUEUE: usize = 256;
/// Rule events with their frame the alert stage may hold before the camera stage waits for
/// it (the same policy: an alert is never dropped).
pub const ALERT_QUEUE: usize = 64;

/// Threads of the alert stage: a snapshot's JPEG and face search take milliseconds, and the
/// inference pool's workers did them side by side before the stage existed. A camera's
/// events always go to the same thread, so they stay in order.
pub const ALERT_THREADS: usize = 2;

/// What the camera stage receives, in order.
enum ToCameras {
    /// A frame of a camera and what inference found in it.
    Detected(Frame, Detections),
    /// Open incidents a reload ended: they go to the alert stage behind the events before.
    Ended(crate::camera::Ended),
    /// Everything before it is handled: stop (the alert stage after it).
    Stop,
}

/// What the alert stage receives: one camera's rule events, with the frame they came from
/// (snapshots, clips) and the faces to hide in it.
enum ToAlerts {
    Events(Box<Batch>),
    Stop,
}

/// One frame's rule events for the alert stage.
struct Batch {
    camera: Arc<str>,
    placement: Placement,
    events: Vec<RuleEvent>,
    frame: Option<Frame>,
    faces: Vec<Face>,
    wall: SystemTime,
}

/// The camera stage's and the alert stage's threads, for shutdown.
pub struct Stages {
    to_cameras: SyncSender<ToCameras>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Stages {
    /// Lets both stages finish what they hold (every alert stored), then stop; waits up to
    /// `deadline`. Returns whether they stopped in time.
    pub fn finish(self, deadline: Duration) -> bool {
        let until = std::time::Instant::now() + deadline;
        let mut stop = ToCameras::Stop;
        loop {
            match self.to_cameras.try_send(stop) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if std::time::Instant::now() < until => {
                    stop = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => break,
            }
        }
        while self.threads.iter().any(|t| !t.is_finished()) {
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

impl Graph {
    pub fn new(ids: Arc<IncidentIds>, emitter: Emitter) -> Self {
        let live = Arc::new(crate::live::LiveFrames::new(emitter.alerts.privacy()));
        let cameras: Arc<Cameras> = Arc::default();
        let emitter = Arc::new(emitter);
        let (to_cameras, cameras_rx) = sync_channel(CAMERA_QUEUE);
        // The alert stage's threads, each with its queue; a camera always goes to the same one.
        let (to_alerts, alert_threads): (Vec<_>, Vec<_>) = (0..ALERT_THREADS)
            .map(|i| {
                let (tx, rx) = sync_channel(ALERT_QUEUE);
                let emitter = emitter.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("alert-stage-{i}"))
                    .spawn(move || alert_stage(rx, &emitter))
                    .expect("cannot start the alert stage's thread");
                (tx, thread)
            })
            .unzip();
        let camera_stage = {
            let (cameras, registry, live) = (cameras.clone(), emitter.registry.clone(), live.clone());
            std::thread::Builder::new()
                .name("camera-stage".into())
                .spawn(move || camera_stage(cameras_rx, to_alerts, &cameras, &registry, &live))
                .expect("cannot start the camera stage's thread")
        };
        let mut threads = vec![camera_stage];
        threads.extend(alert_threads);
        let stages = Stages { to_cameras: to_cameras.clone(), threads };
        Self {
            cameras,
            ids,
            emitter,
            found: Arc::default(),
            live,
            video: Arc::default(),
            to_cameras,
            stages: Mutex::new(Some(stages)),
        }
    }

    /// The stages' threads, for shutdown ([`Stages::finish`] after the inference pool has
    /// stopped). Once.
    pub fn stages(&self) -> Option<Stages> {
        self.stages.locked().take()
    }

    /// The inference pool's callback: live snapshots and the detection counts, then the
    /// frame to the camera stage's queue (waiting when it is full). Runs on a worker, one
    /// frame of a camera at a time, in capture order (the pool guarantees it; the queue
    /// keeps it).
    pub fn on_detections(&self) -> DetectionCallback {
        let (found, live, to_cameras) = (self.found.clone(), self.live.clone(), self.to_cameras.clone());
        Arc::new(move |frame: &Frame, d: Detections, took: Duration| {
            live.update(frame, &d);
            {
                let mut all = found.locked();
                let f = all.entry(frame.camera.clone()).or_default();
                f.frames += 1;
                f.faces += d.faces.len() as u64;
                f.infer += took;
                for o in &d.objects {
                    *f.objects.entry(o.label.to_string()).or_default() += 1;
                }
            }
            if to_cameras.send(ToCameras::Detected(frame.clone(), d)).is_err() {
                warn!(camera = %frame.camera, "the camera stage has stopped; a detected frame is not evaluated");
            }
        })
    }

    /// Ingest's callback: the motion gate, then the pool. Runs on the camera's streaming
    /// thread and returns at once.
    pub fn on_frame(&self, pool: Arc<InferencePool>) -> FrameCallback {
        let (cameras, registry) = (self.cameras.clone(), self.emitter.registry.clone());
        Arc::new(move |mut frame: Frame| {
            let Some(core) = cameras.get(&frame.camera) else { return };
            let gate = {
                let mut core = core.locked();
                let gate = core.admit(&frame);
                frame.roi = core.roi(&gate, &frame);
                gate
            };
            if gate == Gate::Skip {
                registry.drops.camera(&frame.camera).record(Dropped::NoMotion);
                return;
            }
            if frame.roi.is_some() {
                registry.camera(&frame.camera).cropped.fetch_add(1, Relaxed);
            }
            pool.submit(frame);
        })
    }

    /// Applies `config`'s cameras: cores and pool queues follow the diff, and the open
    /// incidents of changed or removed cameras end with `end` alerts.
    pub fn apply(&self, config: &Config, pool: &InferencePool) {
        let before = self.cameras.ids();
        self.live.configure(config);
        self.video.configure(config);
        if let Some(c) = &self.emitter.clips {
            c.configure(config);
        }
        let (built, ended) = self.cameras.apply(config, &self.ids);
        for id in before.iter().filter(|id| self.cameras.get(id).is_none()) {
            pool.unregister(id);
        }
        for id in &built {
            if let Some(core) = self.cameras.get(id) {
                pool.register(id, core.locked().models().to_vec());
            }
        }
        for e in ended {
            info!(camera = %e.camera, incidents = e.events.len(), "camera changed or removed: its open incidents end");
            // Behind the events of frames already queued, so an incident never ends before
            // it was raised.
            if self.to_cameras.send(ToCameras::Ended(e)).is_err() {
                error!("the camera stage has stopped; incidents a reload ended are not stored");
            }
        }
    }
}

/// The camera stage: each frame's detections through its camera's core (tracker → rules,
/// stream time; a panic resets that camera's core and is counted), the events to the alert
/// stage. One thread for every camera: tracking and rules cost microseconds a frame.
fn camera_stage(
    rx: Receiver<ToCameras>,
    to_alerts: Vec<SyncSender<ToAlerts>>,
    cameras: &Cameras,
    registry: &CameraRegistry,
    live: &crate::live::LiveFrames,
) {
    let send = |camera: &str, m: ToAlerts| {
        let shard = camera.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize)) % to_alerts.len();
        if to_alerts[shard].send(m).is_err() {
            error!(camera, "the alert stage has stopped; rule events are not stored");
        }
    };
    while let Ok(m) = rx.recv() {
        match m {
            ToCameras::Stop => break,
            ToCameras::Ended(e) => send(
                &e.camera.clone(),
                ToAlerts::Events(Box::new(Batch {
                    camera: e.camera,
                    placement: e.placement,
                    events: e.events,
                    frame: None,
                    faces: Vec::new(),
                    wall: e.wall,
                })),
            ),
            ToCameras::Detected(frame, d) => {
                let Some(core) = cameras.get(&frame.camera) else { continue };
                let (events, placement) = {
                    let mut core = core.locked();
                    let observed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core.observe(&frame, &d)));
                    match observed {
                        Ok(Ok(events)) => {
                            if !core.ended_looks().is_empty() {
                                let counters = registry.camera(&frame.camera);
                                core.ended_looks().iter().for_each(|looks| counters.track_ended(*looks));
                            }
                            (events, core.placement.clone())
                        }
                        Ok(Err(dropped)) => {
                            registry.drops.camera(&frame.camera).record(dropped);
                            continue;
                        }
                        Err(_) => {
                            // One camera's bad frame: its tracker and rules start afresh, the
                            // others never notice.
                            core.reset();
                            registry.camera(&frame.camera).panics.fetch_add(1, Relaxed);
                            error!(camera = %frame.camera, seq = frame.seq, "panic while tracking or evaluating rules; this camera's tracker and rules start afresh");
                            continue;
                        }
                    }
                };
                if events.is_empty() {
                    continue;
                }
                // A camera without a face model: its snapshots hide the head of every person
                // instead (the faces nobody looked for).
                let faces = if live.runs_faces(&frame.camera) == Some(false) {
                    d.objects
                        .iter()
                        .filter(|o| &*o.label == "person")
                        .map(|o| Face { bbox: crate::live::head_of(o.bbox), score: o.score, landmarks: [[0.0; 2]; 5] })
                        .collect()
                } else {
                    d.faces
                };
                let (camera, wall) = (frame.camera.clone(), frame.wall);
                let batch = Batch { camera: camera.clone(), placement, events, frame: Some(frame), faces, wall };
                send(&camera, ToAlerts::Events(Box::new(batch)));
            }
        }
    }
    for tx in &to_alerts {
        let _ = tx.send(ToAlerts::Stop);
    }
}

/// One thread of the alert stage: rule events → alerts (snapshot JPEG, clip request, the
/// outbox's SQLite commit), in the order the camera stage sent them.
fn alert_stage(rx: Receiver<ToAlerts>, emitter: &Emitter) {
    while let Ok(m) = rx.recv() {
        match m {
            ToAlerts::Stop => break,
            ToAlerts::Events(b) => emitter.emit(&b.camera, &b.placement, &b.events, b.frame.as_ref(), &b.faces, b.wall),
        }
    }
}
