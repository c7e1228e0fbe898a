//! clips: an MP4 around each alert, from `clips.pre_capture` before the triggering frame to
//! `clips.post_capture` after it, built from the camera's own encoded stream.
//!
//! ```text
//! ingest (every access unit, before any is dropped for the cadence)
//!   ─► Ring per camera: units from a key frame at least pre_capture back (bounded by
//!      clips.buffer_max; the oldest group of pictures goes first)
//! alert `new` ─► request(camera, alert, pts) ─► waits for post_capture more stream
//!   (a `new` alert of the same camera within a clip still being recorded joins it: one
//!    clip for the alerts of one moment, its end moved to cover the latest, within a cap)
//!   ─► worker thread (nice 19, one clip at a time):
//!        blurred: appsrc ! h264parse ! avdec ! videorate (clips.fps) ! BGR ─► YuNet on every
//!                 frame, faces of the frame and its neighbours pixelated ─► x264enc ! mp4mux
//!        raw:     appsrc ! h264parse ! mp4mux (the stream copied, explicit setting only)
//!   ─► the MP4 in memory ─► DiskGuard::admit (the disk reserve kept for alerts; the oldest
//!      optional files make room, else the clip is skipped and counted)
//!   ─► <clips.dir>/<first alert id>.mp4 (written as .part, then renamed) ─► `on_ready`
//! ```
//!
//! Faces are detected, never identified. Blurred clips need a face model (family `yunet`)
//! in `[models]`; without one, a camera's blurred clips are off (said once in the log).
//! Memory: what the rings hold, reported per camera (`buffered_bytes`).

use crate::Locked;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tracing::{info, warn};

use crate::config::{ClipPolicy, Config, Family, ModelSpec};
use crate::outbox::{DiskGuard, Optional};
use crate::privacy::FaceSearch;

/// An encoded access unit (Annex B, parameter sets in front of key frames).
struct Unit {
    pts: Duration,
    key: bool,
    data: Vec<u8>,
}

/// A clip waiting for the stream after its alerts.
struct Pending {
    /// The alerts it shows; the first names the file.
    alerts: Vec<String>,
    /// The first alert's moment: joined alerts move `to`, never further than a cap from it.
    at: Duration,
    from: Duration,
    to: Duration,
    policy: ClipPolicy,
    asked: Instant,
}

#[derive(Default)]
struct Ring {
    codec: &'static str,
    units: VecDeque<Unit>,
    bytes: usize,
    pending: Vec<Pending>,
}

impl Ring {
    fn newest(&self) -> Option<Duration> {
        self.units.back().map(|u| u.pts)
    }

    /// Drops whole groups of pictures from the front while the next key frame still starts
    /// at least `keep` before the newest unit (and no pending clip needs them), then while
    /// over `max` bytes whatever is pending.
    fn trim(&mut self, keep: Duration, max: usize) {
        while let Some(next_key) = self.units.iter().skip(1).position(|u| u.key).map(|i| i + 1) {
            let next_pts = self.units[next_key].pts;
            let newest = self.newest().unwrap_or_default();
            let needed = self.pending.iter().map(|p| p.from).min();
            let old_enough = newest.saturating_sub(next_pts) >= keep && needed.is_none_or(|f| next_pts <= f);
            if !(old_enough || self.bytes > max) {
                break;
            }
            for u in self.units.drain(..next_key) {
                self.bytes -= u.data.len();
            }
        }
        // One group of pictures larger than the cap: keep what is newest.
        while self.bytes > max && self.units.len() > 1 {
            if let Some(u) = self.units.pop_front() {
                self.bytes -= u.data.len();
            }
            while self.units.front().is_some_and(|u| !u.key) {
                if let Some(u) = self.units.pop_front() {
                    self.bytes -= u.data.len();
                }
            }
        }
    }

    /// The units of a clip: from the last key frame at or before `from`, up to `to`.
    fn cut(&self, from: Duration, to: Duration) -> Vec<(Duration, bool, Vec<u8>)> {
        let start =
            self.units.iter().rposition(|u| u.key && u.pts <= from).or_else(|| self.units.iter().position(|u| u.key));
        let Some(start) = start else { return Vec::new() };
        self.units.iter().skip(start).take_while(|u| u.pts <= to).map(|u| (u.pts, u.key, u.data.clone())).collect()
    }
}

/// A finished clip.
#[derive(Debug, Clone)]
pub struct ClipDone {
    pub camera: String,
    /// The clip's id: its first alert's, and the file's name.
    pub alert: String,
    /// Every alert it shows (the first is `alert`).
    pub alerts: Vec<String>,
    pub path: PathBuf,
    pub policy: ClipPolicy,
    pub duration: Duration,
    pub frames: u64,
    pub bytes: u64,
    /// Faces pixelated (blurred clips).
    pub faces: u64,
    /// CPU time of the worker thread (face model, pixelation); GStreamer's decoding and
    /// encoding run on threads of their own and are not in it.
    pub cpu: Duration,
}

impl ClipDone {
    /// `gridsight.clip`: the clip of `alert` (one of the alerts it shows) is ready.
    pub fn ready(&self, node: &str, alert: &str) -> crate::contract::ClipReady {
        use crate::contract::{ClipPrivacy, ClipReady, Schema, Version1};
        ClipReady {
            schema: Schema::new(),
            version: Version1,
            node: node.to_string(),
            camera: self.camera.clone(),
            alert: alert.to_string(),
            url: format!("/clips/{}.mp4", self.alert),
            privacy: match self.policy {
                ClipPolicy::Raw => ClipPrivacy::Raw,
                _ => ClipPrivacy::Blurred,
            },
            duration_s: (self.duration.as_secs_f64() * 10.0).round() / 10.0,
            frames: self.frames,
            bytes: self.bytes,
            at: crate::contract::time::now(),
        }
    }
}

struct Job {
    camera: String,
    alerts: Vec<String>,
    codec: &'static str,
    policy: ClipPolicy,
    units: Vec<(Duration, bool, Vec<u8>)>,
}

/// Every camera's ring and the clip worker.
pub struct Clips {
    pre: Duration,
    post: Duration,
    buffer_max: usize,
    dir: PathBuf,
    rings: Mutex<HashMap<Arc<str>, Ring>>,
    policies: Mutex<HashMap<String, ClipPolicy>>,
    jobs: std::sync::mpsc::SyncSender<Job>,
}

/// A joined alert may stretch a clip to at most this many times `pre_capture + post_capture`.
const MAX_STRETCH: u32 = 2;

/// Jobs waiting for the worker; more are refused (and logged) rather than piling up.
const QUEUE: usize = 32;
/// A pending clip whose stream stopped is cut with what there is after this much more.
const GIVE_UP: Duration = Duration::from_secs(20);

impl Clips {
    /// Starts the worker; `on_ready` is called on it for each clip written. With `disk`,
    /// a clip is written only when it leaves the disk reserve intact (see
    /// [`crate::outbox::DiskGuard::admit`]).
    pub fn start(config: &Config, disk: Option<DiskGuard>, on_ready: Arc<dyn Fn(ClipDone) + Send + Sync>) -> Arc<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let c = &config.clips;
        if let Some(d) = &disk {
            d.keep_files(Optional::Clip, &c.dir, "mp4");
        }
        let face_model = crate::privacy::face_model(config);
        let worker = Worker { dir: c.dir.clone(), fps: c.fps, face_model, search: None, disk };
        let _ = std::thread::Builder::new().name("clips".into()).spawn(move || worker.run(rx, on_ready));
        let clips = Arc::new(Self {
            pre: c.pre_capture,
            post: c.post_capture,
            buffer_max: c.buffer_max_bytes as usize,
            dir: c.dir.clone(),
            rings: Mutex::default(),
            policies: Mutex::default(),
            jobs: tx,
        });
        clips.configure(config);
        clips
    }

    /// Follows the config: which cameras record, and how.
    pub fn configure(&self, config: &Config) {
        let has_faces = config.models.values().any(|m| m.family == Family::Yunet);
        let mut policies = HashMap::new();
        for c in config.cameras.iter().filter(|c| c.here && c.enabled) {
            let policy = match c.clips {
                ClipPolicy::Blurred if !has_faces => {
                    warn!(camera = %c.id, "clips: no face model (family yunet) in [models], so no blurred clips; add one, or set privacy.clips");
                    ClipPolicy::Off
                }
                p => p,
            };
            if policy != ClipPolicy::Off {
                policies.insert(c.id.clone(), policy);
            }
        }
        // A ring per recording camera, made here so that the per-unit path takes one lock.
        {
            let mut rings = self.rings.locked();
            rings.retain(|id, _| policies.contains_key(&**id));
            for id in policies.keys() {
                rings.entry(Arc::from(id.as_str())).or_default();
            }
        }
        *self.policies.locked() = policies;
    }

    /// Whether alerts of `camera` get a clip.
    pub fn records(&self, camera: &str) -> bool {
        self.policies.locked().contains_key(camera)
    }

    /// An access unit of `camera`, as received (called for every unit, key or not).
    pub fn unit(&self, camera: &Arc<str>, codec: &'static str, pts: Duration, key: bool, data: &[u8]) {
        let mut rings = self.rings.locked();
        // Only recording cameras have a ring.
        let Some(ring) = rings.get_mut(camera) else { return };
        // A new session starts its timestamps again: what was kept belongs to the old one.
        if ring.newest().is_some_and(|n| pts + Duration::from_secs(1) < n) || ring.codec != codec {
            let done: Vec<Pending> = ring.pending.drain(..).collect();
            for p in done {
                self.send(camera, ring, p);
            }
            *ring = Ring { codec, ..Ring::default() };
        }
        if ring.units.is_empty() && !key {
            return;
        }
        ring.bytes += data.len();
        ring.units.push_back(Unit { pts, key, data: data.to_vec() });
        let (ready, waiting): (Vec<Pending>, Vec<Pending>) =
            ring.pending.drain(..).partition(|p| pts >= p.to || p.asked.elapsed() > self.post + GIVE_UP);
        ring.pending = waiting;
        for p in ready {
            self.send(camera, ring, p);
        }
        ring.trim(self.pre, self.buffer_max);
    }

    fn send(&self, camera: &str, ring: &Ring, p: Pending) {
        let units = ring.cut(p.from, p.to);
        let alert = p.alerts.first().cloned().unwrap_or_default();
        if units.is_empty() {
            warn!(camera, alert, "clip: nothing of the stream was kept for it");
            return;
        }
        let job = Job { camera: camera.to_string(), alerts: p.alerts, codec: ring.codec, policy: p.policy, units };
        if self.jobs.try_send(job).is_err() {
            warn!(camera, alert, "clip: {QUEUE} clips already wait for the worker; this one is not made");
        }
    }

    /// Asks for the clip of `alert`, whose triggering frame has stream timestamp `pts`
    /// (`None`: the newest unit). Returns the id of the clip that will show it: its own,
    /// or that of a clip of the same camera still being recorded around `pts`, which it
    /// joins (the clip's end moves to `post_capture` after it, within [`MAX_STRETCH`]).
    /// `None`: no clip will be made.
    pub fn request(&self, camera: &str, alert: &str, pts: Option<Duration>) -> Option<String> {
        let policy = self.policies.locked().get(camera).copied()?;
        let mut rings = self.rings.locked();
        let ring = rings.get_mut(camera)?;
        let at = pts.or(ring.newest())?;
        let cap = (self.pre + self.post) * MAX_STRETCH;
        if let Some(p) = ring.pending.iter_mut().find(|p| p.policy == policy && p.from <= at && at <= p.to) {
            p.alerts.push(alert.to_string());
            p.to = p.to.max(at + self.post).min(p.at.saturating_sub(self.pre) + cap);
            return p.alerts.first().cloned();
        }
        ring.pending.push(Pending {
            alerts: vec![alert.to_string()],
            at,
            from: at.saturating_sub(self.pre),
            to: at + self.post,
            policy,
            asked: Instant::now(),
        });
        Some(alert.to_string())
    }

    /// Takes back a [`Self::request`] whose alert could not be stored: it leaves its clip,
    /// and a clip no alert is left in is not made.
    pub fn cancel(&self, camera: &str, alert: &str) {
        let mut rings = self.rings.locked();
        let Some(ring) = rings.get_mut(camera) else { return };
        for p in &mut ring.pending {
            // The file keeps the first alert's name even if that one is taken back.
            p.alerts.retain(|a| a != alert);
        }
        ring.pending.retain(|p| !p.alerts.is_empty());
    }

    /// Cuts clips whose camera stopped sending (called now and then by the node).
    pub fn tick(&self) {
        let mut rings = self.rings.locked();
        for (camera, ring) in rings.iter_mut() {
            let (late, waiting): (Vec<Pending>, Vec<Pending>) =
                ring.pending.drain(..).partition(|p| p.asked.elapsed() > self.post + GIVE_UP);
            ring.pending = waiting;
            for p in late {
                self.send(camera, ring, p);
            }
        }
    }

    /// Bytes of stream each camera holds for clips.
    pub fn buffered_bytes(&self) -> Vec<(String, u64)> {
        self.rings.locked().iter().map(|(c, r)| (c.to_string(), r.bytes as u64)).collect()
    }

    /// The clip file of an alert, if it exists (`id` as alerts make them; anything else is
    /// refused, so no path leaves the folder).
    pub fn file(&self, id: &str) -> Option<PathBuf> {
        if id.is_empty() || id.len() > 40 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return None;
        }
        let path = self.dir.join(format!("{id}.mp4"));
        path.is_file().then_some(path)
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

/// The encoding pipeline of a blurred clip, its source, and the MP4's bytes as they come.
type Encoder = (gst::Pipeline, gst_app::AppSrc, Arc<Mutex<Vec<u8>>>);

/// A decoded clip frame: (pts, width, height, BGR, face boxes found in it).
type Picture = (gst::ClockTime, u32, u32, Vec<u8>, Vec<[f32; 4]>);

struct Worker {
    dir: PathBuf,
    fps: u32,
    /// The face model of the whole-frame search of every clip frame ([`crate::privacy`]).
    face_model: Option<ModelSpec>,
    search: Option<FaceSearch>,
    disk: Option<DiskGuard>,
}

/// Why a clip was not made.
enum NotMade {
    /// The disk was under its reserve (counted by the guard).
    Disk,
    Failed(String),
}

impl From<String> for NotMade {
    fn from(e: String) -> Self {
        Self::Failed(e)
    }
}

impl From<&str> for NotMade {
    fn from(e: &str) -> Self {
        Self::Failed(e.to_string())
    }
}

/// The calling thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid pointer to a timespec on the stack.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Worker {
    fn run(mut self, rx: std::sync::mpsc::Receiver<Job>, on_ready: Arc<dyn Fn(ClipDone) + Send + Sync>) {
        // Low priority: clips never take CPU from ingest or detection (Linux: per thread).
        // SAFETY: plain syscalls on this thread.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 19);
        }
        for job in rx {
            let started = thread_cpu();
            let (camera, alerts, policy) = (job.camera.clone(), job.alerts.clone(), job.policy);
            let alert = alerts.first().cloned().unwrap_or_default();
            match self.make(job) {
                Ok(mut done) => {
                    done.cpu = thread_cpu().saturating_sub(started);
                    info!(camera, alert, alerts = alerts.len(), privacy = ?policy, duration_s = format!("{:.1}", done.duration.as_secs_f64()), frames = done.frames, faces = done.faces, bytes = done.bytes, worker_cpu_ms = done.cpu.as_millis() as u64, "clip ready");
                    on_ready(done);
                }
                // Said by the guard (at most once a minute) and counted there.
                Err(NotMade::Disk) => {}
                Err(NotMade::Failed(e)) => warn!(camera, alert, "clip not made: {e}"),
            }
        }
    }

    /// Whether `bytes` more may be written (always, without a guard).
    fn admit(&self, bytes: u64) -> Result<(), NotMade> {
        match &self.disk {
            Some(d) if !d.admit(Optional::Clip, bytes) => Err(NotMade::Disk),
            _ => Ok(()),
        }
    }

    fn make(&mut self, job: Job) -> Result<ClipDone, NotMade> {
        let alert = job.alerts.first().cloned().ok_or("a clip without an alert")?;
        let path = self.dir.join(format!("{alert}.mp4"));
        let part = self.dir.join(format!("{alert}.mp4.part"));
        let first = job.units.first().map(|u| u.0).unwrap_or_default();
        let last = job.units.last().map(|u| u.0).unwrap_or_default();
        // Before the work: a clip that cannot be stored is not made (a blurred clip is
        // about a third of its stream).
        let stream: u64 = job.units.iter().map(|u| u.2.len() as u64).sum();
        self.admit(if job.policy == ClipPolicy::Raw { stream } else { stream / 3 })?;
        let (mp4, frames, faces) = match job.policy {
            ClipPolicy::Raw => {
                let (mp4, n) = self.copy(job.codec, job.units, first)?;
                (mp4, n, 0)
            }
            _ => self.blur(job.codec, job.units, first)?,
        };
        // The clip as it is, against the reserve, before a byte of it is on the disk.
        let bytes = mp4.len() as u64;
        self.admit(bytes)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        std::fs::write(&part, &mp4).map_err(|e| {
            let _ = std::fs::remove_file(&part);
            format!("{}: {e}", part.display())
        })?;
        std::fs::rename(&part, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(ClipDone {
            camera: job.camera,
            alert,
            alerts: job.alerts,
            path,
            policy: job.policy,
            duration: last.saturating_sub(first),
            frames,
            bytes,
            faces,
            cpu: Duration::ZERO,
        })
    }

    fn source(codec: &str) -> gst_app::AppSrc {
        let caps = gst::Caps::builder(format!("video/x-{codec}"))
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .build();
        // Named, so its streaming thread (the clip's parse and decode) reads `clipsrc:src`
        // in `top -H` and the node benchmark, apart from the cameras' own appsrc threads.
        gst_app::AppSrc::builder()
            .name("clipsrc")
            .caps(&caps)
            .format(gst::Format::Time)
            .is_live(false)
            .block(true)
            .build()
    }

    /// Feeds the units (moved into the buffers, not copied), then the end of stream.
    /// A pipeline of the units' source linked to the bin `desc` (not started yet).
    fn fed(codec: &str, desc: &str) -> Result<(gst::Pipeline, gst_app::AppSrc, gst::Bin), String> {
        let bin = gst::parse::bin_from_description(desc, true).map_err(|e| e.to_string())?;
        let pipeline = gst::Pipeline::new();
        let src = Self::source(codec);
        pipeline
            .add_many([src.upcast_ref::<gst::Element>(), bin.upcast_ref::<gst::Element>()])
            .map_err(|e| e.to_string())?;
        src.link(&bin).map_err(|e| e.to_string())?;
        Ok((pipeline, src, bin))
    }

    fn push_units(src: &gst_app::AppSrc, units: Vec<(Duration, bool, Vec<u8>)>, first: Duration) -> Result<(), String> {
        for (pts, key, data) in units {
            let mut b = gst::Buffer::from_mut_slice(data);
            {
                let b = b.get_mut().expect("a new buffer is writable");
                b.set_pts(gst::ClockTime::from_nseconds(pts.saturating_sub(first).as_nanos() as u64));
                if !key {
                    b.set_flags(gst::BufferFlags::DELTA_UNIT);
                }
            }
            src.push_buffer(b).map_err(|e| format!("cannot feed the clip pipeline: {e:?}"))?;
        }
        src.end_of_stream().map_err(|e| format!("{e:?}"))?;
        Ok(())
    }

    /// Waits for the end of a pipeline fed from memory; its error if it fails.
    fn finish(pipeline: &gst::Pipeline) -> Result<(), String> {
        let bus = pipeline.bus().ok_or("no bus")?;
        let result = loop {
            match bus.timed_pop(gst::ClockTime::from_seconds(60)) {
                None => break Err("the clip pipeline did not finish within 60 s".to_string()),
                Some(m) => match m.view() {
                    gst::MessageView::Eos(_) => break Ok(()),
                    gst::MessageView::Error(e) => break Err(format!("{} ({:?})", e.error(), e.debug())),
                    _ => {}
                },
            }
        };
        let _ = pipeline.set_state(gst::State::Null);
        result
    }

    /// Collects what the bin's appsink `out` receives (the MP4: with `faststart`, mp4mux
    /// writes it in order, headers first, so it needs no seekable file).
    fn collect(bin: &gst::Bin) -> Result<Arc<Mutex<Vec<u8>>>, String> {
        let sink =
            bin.by_name("out").ok_or("no appsink")?.downcast::<gst_app::AppSink>().map_err(|_| "not an appsink")?;
        let bytes: Arc<Mutex<Vec<u8>>> = Arc::default();
        let into = bytes.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
                        into.locked().extend_from_slice(&map);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        Ok(bytes)
    }

    /// `raw`: the units as they came, in an MP4 (its bytes, and the units in it).
    fn copy(
        &self,
        codec: &str,
        units: Vec<(Duration, bool, Vec<u8>)>,
        first: Duration,
    ) -> Result<(Vec<u8>, u64), String> {
        let parse = if codec == "h265" { "h265parse" } else { "h264parse" };
        let desc = format!("{parse} ! mp4mux faststart=true ! appsink name=out sync=false");
        let (pipeline, src, bin) = Self::fed(codec, &desc)?;
        let mp4 = Self::collect(&bin)?;
        pipeline.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
        let n = units.len() as u64;
        Self::push_units(&src, units, first)?;
        Self::finish(&pipeline)?;
        let mp4 = std::mem::take(&mut *mp4.locked());
        Ok((mp4, n))
    }

    /// `blurred`: decoded at `fps`, faces pixelated, encoded again (the MP4's bytes, its
    /// frames, the faces pixelated).
    fn blur(
        &mut self,
        codec: &str,
        units: Vec<(Duration, bool, Vec<u8>)>,
        first: Duration,
    ) -> Result<(Vec<u8>, u64, u64), String> {
        if self.search.is_none() {
            let spec = self.face_model.as_ref().ok_or("no face model to blur with")?;
            self.search = Some(FaceSearch::new(spec).map_err(|e| e.to_string())?);
        }
        let search = self.search.as_mut().expect("made above");
        let (parse, dec) = if codec == "h265" { ("h265parse", "avdec_h265") } else { ("h264parse", "avdec_h264") };
        let fps = self.fps;
        // The rate first: only the frames kept are scaled and converted (every picture must
        // be decoded, a delta frame needs the ones before it, but at 5 of 25 frames a second
        // four in five conversions to BGR were thrown away).
        let desc = format!(
            "{parse} ! {dec} ! videorate ! video/x-raw,framerate={fps}/1 ! videoscale ! \
             video/x-raw,pixel-aspect-ratio=1/1 ! videoconvert ! video/x-raw,format=BGR ! appsink name=sink sync=false max-buffers=4"
        );
        let (decode, src, bin) = Self::fed(codec, &desc)?;
        let sink =
            bin.by_name("sink").ok_or("no appsink")?.downcast::<gst_app::AppSink>().map_err(|_| "not an appsink")?;
        decode.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
        let feeder = {
            let src = src.clone();
            std::thread::spawn(move || Self::push_units(&src, units, first))
        };

        let mut encode: Option<Encoder> = None;
        // Frame i goes out with the faces the search found in i-1, i and i+1 and those the
        // verify passes found in i-1 pixelated (a face missed in one frame is still hidden by
        // its neighbours), then verified ([`FaceSearch::verify`]: what is still found at 2x
        // or 1x is pixelated too).
        let mut window: VecDeque<Picture> = VecDeque::new();
        let (mut frames, mut faces) = (0u64, 0u64);
        let mut carried: Vec<[f32; 4]> = Vec::new();
        let mut emit = |encode: &mut Option<Encoder>,
                        search: &mut FaceSearch,
                        window: &VecDeque<Picture>,
                        i: usize|
         -> Result<(), String> {
            let (pts, w, h, data, _) = &window[i];
            let mut bgr = data.clone();
            let lo = i.saturating_sub(1);
            let hi = (i + 1).min(window.len() - 1);
            // With what the verify passes found on the frame before (a face near a score
            // threshold is found in one frame and not the next).
            let mut hidden: Vec<[f32; 4]> = window.range(lo..=hi).flat_map(|p| p.4.iter().copied()).collect();
            hidden.append(&mut carried);
            for b in &hidden {
                crate::privacy::pixelate(&mut bgr, *w, *h, *b);
            }
            carried = search.verify(&mut bgr, *w, *h, &hidden).map_err(|e| e.to_string())?;
            faces += carried.len() as u64;
            if encode.is_none() {
                *encode = Some(Self::encoder(*w, *h, fps)?);
            }
            let (_, esrc, _) = encode.as_ref().unwrap();
            let mut b = gst::Buffer::from_mut_slice(bgr);
            b.get_mut().expect("a new buffer is writable").set_pts(*pts);
            esrc.push_buffer(b).map_err(|e| format!("cannot feed the encoder: {e:?}"))?;
            frames += 1;
            Ok(())
        };
        let mut found_total = 0u64;
        while let Ok(sample) = sink.pull_sample() {
            let Some(buffer) = sample.buffer() else { continue };
            let Some(st) = sample.caps().and_then(|c| c.structure(0).map(|s| s.to_owned())) else { continue };
            let (w, h) = (st.get::<i32>("width").unwrap_or(0) as u32, st.get::<i32>("height").unwrap_or(0) as u32);
            let Ok(map) = buffer.map_readable() else { continue };
            // Tightly packed BGR: videoconvert pads rows to 4 bytes; copy row by row.
            let stride = map.len() / h.max(1) as usize;
            let mut data = Vec::with_capacity((w * h * 3) as usize);
            for row in map.chunks(stride).take(h as usize) {
                data.extend_from_slice(&row[..(w * 3) as usize]);
            }
            let found = search.search(&data, w, h).map_err(|e| e.to_string())?;
            found_total += found.len() as u64;
            window.push_back((buffer.pts().unwrap_or(gst::ClockTime::ZERO), w, h, data, found));
            // The encoder exists once a frame went out: the first frame goes out with only its
            // next neighbour, every other one once its next neighbour is in.
            if window.len() == 3 {
                emit(&mut encode, search, &window, 1)?;
                window.pop_front();
            } else if window.len() == 2 && encode.is_none() {
                emit(&mut encode, search, &window, 0)?;
            }
        }
        // The last frame, with its earlier neighbour's faces.
        if window.len() >= 2 {
            emit(&mut encode, search, &window, window.len() - 1)?;
        } else if window.len() == 1 && encode.is_none() {
            emit(&mut encode, search, &window, 0)?;
        }
        let faces = faces + found_total;
        let fed = feeder.join().map_err(|_| "the clip feeder panicked".to_string())?;
        let decoded = Self::finish(&decode);
        fed?;
        decoded?;
        let (pipeline, esrc, mp4) = encode.ok_or("no picture decoded from the kept stream")?;
        esrc.end_of_stream().map_err(|e| format!("{e:?}"))?;
        Self::finish(&pipeline)?;
        let mp4 = std::mem::take(&mut *mp4.locked());
        Ok((mp4, frames, faces))
    }

    /// The encoding pipeline of a blurred clip: BGR frames in, the MP4's bytes collected.
    fn encoder(w: u32, h: u32, fps: u32) -> Result<Encoder, String> {
        // I420 before x264enc: Debian's x264 otherwise picks 4:4:4, which few players play.
        let desc = format!(
            "videoconvert ! video/x-raw,format=I420 ! x264enc speed-preset=veryfast pass=qual quantizer=26 bframes=0 key-int-max={} \
             ! video/x-h264,profile=high ! h264parse ! mp4mux faststart=true ! appsink name=out sync=false",
            fps * 2
        );
        let bin = gst::parse::bin_from_description(&desc, true).map_err(|e| e.to_string())?;
        let mp4 = Self::collect(&bin)?;
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "BGR")
            .field("width", w as i32)
            .field("height", h as i32)
            .field("framerate", gst::Fraction::new(fps as i32, 1))
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build();
        // Its streaming thread (conversion, x264) reads `clipenc:src`.
        let src = gst_app::AppSrc::builder()
            .name("clipenc")
            .caps(&caps)
            .format(gst::Format::Time)
            .is_live(false)
            .block(true)
            .build();
        let pipeline = gst::Pipeline::new();
        pipeline
            .add_many([src.upcast_ref::<gst::Element>(), bin.upcast_ref::<gst::Element>()])
            .map_err(|e| e.to_string())?;
        src.link(&bin).map_err(|e| e.to_string())?;
        pipeline.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
        Ok((pipeline, src, mp4))
    }
}

/// Deletes clips past `max_age`, then the oldest beyond `max_bytes`.
pub fn prune(dir: &std::path::Path, max_age: Duration, max_bytes: u64) -> std::io::Result<(usize, u64)> {
    crate::alert::prune_files(dir, "mp4", max_age, max_bytes, SystemTime::now())
}

/// `GET /clips/<alert id>.mp4`: an event clip, as the alert's `clip` field names it.
pub fn routes(clips: Arc<Clips>) -> axum::Router {
    use crate::http::{Get, Reply, get};
    axum::Router::new().route(
        "/clips/:file",
        get(move |g: &Get| {
            let found =
                g.param("file").strip_suffix(".mp4").and_then(|id| clips.file(id)).and_then(|p| std::fs::read(p).ok());
            match found {
                Some(mp4) => Reply::new(200, "video/mp4", mp4),
                None => Reply::new(404, "text/plain", "no such clip (not made yet, deleted by retention, or off)\n"),
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(ring: &mut Ring, ms: u64, key: bool, len: usize) {
        ring.bytes += len;
        ring.units.push_back(Unit { pts: Duration::from_millis(ms), key, data: vec![0; len] });
    }

    #[test]
    fn the_ring_keeps_a_key_frame_before_pre_capture_and_stays_bounded() {
        let mut r = Ring { codec: "h264", ..Ring::default() };
        // 2 s groups of pictures, 25 units each (80 ms apart).
        for i in 0..250u64 {
            unit(&mut r, i * 80, i % 25 == 0, 1000);
            r.trim(Duration::from_secs(5), 1 << 20);
        }
        let newest = r.newest().unwrap();
        let first = r.units.front().unwrap();
        assert!(first.key);
        assert!(newest - first.pts >= Duration::from_secs(5), "{:?}", newest - first.pts);
        assert!(newest - first.pts < Duration::from_secs(7), "at most one group more than needed");
        // The cap wins over pre_capture.
        r.trim(Duration::from_secs(5), 30_000);
        assert!(r.bytes <= 30_000 && r.units.front().unwrap().key, "{}", r.bytes);
    }

    /// Alerts of one camera's moment share one clip; a later one gets its own.
    #[test]
    fn alerts_of_one_moment_share_a_clip() {
        let text = format!(
            "version = 1\n[node]\nid = \"n\"\n[storage]\ndata_dir = \"{}\"\nmodels_dir = \"{}\"\n[models.faces]\nfile = \"yunet_s_dynamic.onnx\"\n[[cameras]]\nid = \"a\"\nurl = \"rtsp://h/a\"\nmodels = [\"faces\"]\n",
            std::env::temp_dir().join(format!("gridsight-clips-unit-{}", std::process::id())).display(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/../models")
        );
        let config = crate::config::parse(&text, std::path::Path::new(".")).unwrap();
        let clips = Clips::start(&config, None, Arc::new(|_| {}));
        let cam: Arc<str> = Arc::from("a");
        // 8 s of stream, a key frame every 2 s.
        for i in 0..100u64 {
            clips.unit(&cam, "h264", Duration::from_millis(i * 80), i % 25 == 0, &[0; 10]);
        }
        let at = |ms: u64| Some(Duration::from_millis(ms));
        assert_eq!(clips.request("a", "first", at(6000)).as_deref(), Some("first"));
        assert_eq!(clips.request("a", "second", at(6011)).as_deref(), Some("first"), "11 ms later: the same clip");
        assert_eq!(clips.request("a", "third", at(9000)).as_deref(), Some("first"), "within the clip still recording");
        {
            let rings = clips.rings.locked();
            let p = &rings[&cam].pending;
            assert_eq!(p.len(), 1);
            assert_eq!(p[0].alerts, ["first", "second", "third"]);
            assert_eq!(
                (p[0].from, p[0].to),
                (Duration::from_secs(1), Duration::from_secs(14)),
                "its end follows the latest"
            );
        }
        // Alerts in a row stretch it, at most to 2 × (5 s + 5 s) from its start.
        assert_eq!(clips.request("a", "more", at(13900)).as_deref(), Some("first"));
        assert_eq!(clips.request("a", "still", at(18500)).as_deref(), Some("first"));
        assert_eq!(clips.rings.locked()[&cam].pending[0].to, Duration::from_secs(21), "capped");
        clips.cancel("a", "more");
        clips.cancel("a", "still");
        // After its end: its own clip.
        assert_eq!(clips.request("a", "fourth", at(25000)).as_deref(), Some("fourth"));
        // An alert that could not be stored leaves its clip; a clip nobody is left in goes.
        clips.cancel("a", "fourth");
        clips.cancel("a", "second");
        let rings = clips.rings.locked();
        assert_eq!(rings[&cam].pending.len(), 1);
        assert_eq!(rings[&cam].pending[0].alerts, ["first", "third"]);
        drop(rings);
        assert_eq!(clips.request("b", "x", at(1000)), None, "a camera without clips");
    }

    #[test]
    fn a_pending_clip_keeps_its_start_and_is_cut_at_a_key_frame() {
        let mut r = Ring { codec: "h264", ..Ring::default() };
        for i in 0..100u64 {
            unit(&mut r, i * 80, i % 25 == 0, 100);
        }
        // Event at 6.0 s: from 1.0 s; the cut starts at the key frame of 0.0 s.
        r.pending.push(Pending {
            alerts: vec!["a".into()],
            at: Duration::from_millis(6000),
            from: Duration::from_millis(1000),
            to: Duration::from_millis(11000),
            policy: ClipPolicy::Blurred,
            asked: Instant::now(),
        });
        for i in 100..200u64 {
            unit(&mut r, i * 80, i % 25 == 0, 100);
            r.trim(Duration::from_secs(5), 1 << 20);
        }
        assert_eq!(r.units.front().unwrap().pts, Duration::ZERO, "the pending clip's start is kept");
        let cut = r.cut(Duration::from_millis(1000), Duration::from_millis(11000));
        assert!(cut[0].1 && cut[0].0 == Duration::ZERO);
        assert_eq!(cut.last().unwrap().0, Duration::from_millis(10960));
        r.pending.clear();
        r.trim(Duration::from_secs(5), 1 << 20);
        assert!(r.units.front().unwrap().pts >= Duration::from_secs(8));
    }
}
