//! graph: the stages of `edge-node run` wired in one place, and a config diff applied to them.
//!
//! ```text
//! source::Ingest ──Frame──► on_frame: CameraCore::admit (motion gate; skip counted)
//!   (streaming thread)         │ submit (per-camera queue, drop oldest, counted)
//!                              ▼
//!                        inference::InferencePool (workers; one frame of a camera at a time)
//!                              │ on_detections, in capture order
//!                              ▼
//!                        CameraCore::observe (tracker → rules, stream time; a panic resets
//!                              │ that camera's core and is counted)     ── camera lock released
//!                              ▼
//!                        Emitter: alert JSON + snapshot JPEG ─► Outbox (SQLite) ─► MqttLink
//! ```
//!
//! [`Graph::apply`] is the one config diff: new cameras get a core and a pool queue,
//! unchanged ones keep theirs, changed or removed ones end their open incidents with `end`
//! alerts (and changed ones start afresh); ingest restarts only the cameras whose stream
//! settings changed.

use crate::Locked;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tracing::{error, info, warn};

use crate::alert::{AlertSink, CameraInfo};
use crate::camera::{Cameras, Placement};
use crate::config::Config;
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
}

impl Graph {
    pub fn new(ids: Arc<IncidentIds>, emitter: Emitter) -> Self {
        let live = Arc::new(crate::live::LiveFrames::new(emitter.alerts.privacy()));
        Self { cameras: Arc::default(), ids, emitter: Arc::new(emitter), found: Arc::default(), live }
    }

    /// The inference pool's callback: detections → the camera's core → alerts. Runs on a
    /// worker, one frame of a camera at a time, in capture order (the pool guarantees it).
    pub fn on_detections(&self) -> DetectionCallback {
        let (cameras, emitter, found) = (self.cameras.clone(), self.emitter.clone(), self.found.clone());
        let live = self.live.clone();
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
            let Some(core) = cameras.get(&frame.camera) else { return };
            let (events, placement) = {
                let mut core = core.locked();
                let observed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core.observe(frame, &d)));
                match observed {
                    Ok(events) => (events, core.placement.clone()),
                    Err(_) => {
                        // One camera's bad frame: its tracker and rules start afresh, the
                        // others never notice.
                        core.reset();
                        emitter.registry.camera(&frame.camera).panics.fetch_add(1, Relaxed);
                        error!(camera = %frame.camera, seq = frame.seq, "panic while tracking or evaluating rules; this camera's tracker and rules start afresh");
                        return;
                    }
                }
            };
            // A camera without a face model: its snapshots hide the head of every person
            // instead (the faces nobody looked for).
            let heads: Vec<Face>;
            let faces = if !events.is_empty() && live.runs_faces(&frame.camera) == Some(false) {
                heads = d
                    .objects
                    .iter()
                    .filter(|o| &*o.label == "person")
                    .map(|o| Face { bbox: crate::live::head_of(o.bbox), score: o.score, landmarks: [[0.0; 2]; 5] })
                    .collect();
                &heads
            } else {
                &d.faces
            };
            // The camera's lock is released: ingest's streaming thread never waits on the JPEG.
            emitter.emit(&frame.camera, &placement, &events, Some(frame), faces, frame.wall);
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
                registry.camera(&frame.camera).skipped_motion.fetch_add(1, Relaxed);
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
            self.emitter.emit(&e.camera, &e.placement, &e.events, None, &[], e.wall);
        }
    }
}
