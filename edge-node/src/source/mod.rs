//! source: RTSP cameras in, decoded frames out, with a supervisor that keeps every
//! camera streaming by itself.
//!
//! Input: [`CameraSpec`]s (from the validated config). Output: [`Frame`]s through a
//! callback, at most `detect_fps` per camera, scaled to fit the camera's detection size,
//! BGR. Queues: each pipeline's appsink keeps only the newest frame (a slow consumer never
//! stalls the RTSP session); the callback runs on the camera's streaming thread and must
//! return quickly.
//!
//! One supervisor thread runs the state machine of every camera (`connecting → streaming
//! → stalled | backoff | failed: <reason> → connecting …`): GStreamer bus errors arrive as
//! messages, a camera whose frames stop for `stall_timeout` is torn down, and every retry
//! waits a capped exponential backoff with jitter. Pipelines are stopped on helper
//! threads, so a camera that hangs in teardown never delays another.
//! [`Ingest::apply`] diffs a new camera list and restarts only the cameras that changed.
//! Shutdown: [`Ingest::shutdown`] stops every pipeline within a deadline.

mod color;
pub mod decoders;
mod gate;
mod pipeline;
mod rate;
mod reason;
mod retina;
mod stream_time;
#[cfg(test)]
mod supervisor_tests;

use crate::Locked;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use tracing::{info, warn};

pub use gate::{BURST_FPS, Demand, FRUITLESS_FOR, KeyframeGate, RateLimiter};
pub use gridsight_base::backoff::Backoff;
pub use pipeline::fit_size;
pub use rate::Rates;
pub use reason::FailReason;
pub use stream_time::StreamClock;

use crate::config::{self, DecodeMode, HwDecode, RtspClient, Secret, Transport};
use crate::contract;
use crate::drops::{Dropped, Drops};
use crate::types::Frame;

/// Receives every frame a camera hands on. Runs on the camera's streaming thread.
pub type FrameCallback = Arc<dyn Fn(Frame) + Send + Sync>;

/// Called with every encoded access unit a camera receives, before the cadence drops any:
/// (camera, codec, stream timestamp, key frame, Annex B bytes). Event clips record this way.
pub type UnitCallback = Arc<dyn Fn(&Arc<str>, &'static str, Duration, bool, &[u8]) + Send + Sync>;

/// An [`UnitCallback`] in [`IngestOptions`].
#[derive(Clone)]
pub struct UnitTap(pub UnitCallback);

impl std::fmt::Debug for UnitTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnitTap")
    }
}

/// What ingest needs to know about one camera.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraSpec {
    pub id: String,
    /// RTSP address without credentials (safe to log).
    pub location: String,
    pub credentials: Option<(String, Secret)>,
    pub transport: Transport,
    pub decode: DecodeMode,
    pub hw_decode: HwDecode,
    /// Which RTSP client receives the camera (`retina` falls back to `gstreamer` where it must).
    pub rtsp_client: RtspClient,
    pub detect_fps: f64,
    /// Frames are scaled to fit inside this (width, height), keeping the aspect ratio.
    pub fit: (u32, u32),
    pub stall_timeout: Duration,
    /// The camera's rules that need more than key frames (`adaptive` bursts for them).
    pub delta_rules: Vec<String>,
    /// A rule names its `shortest_visit`: the camera looks at `detect_fps` whether anything
    /// moves or not (see [`looks_always`]).
    pub looks_always: bool,
    /// Set while those rules want every frame (see [`Demand`]).
    pub demand: Demand,
    /// Where the camera is on the map (its status says it).
    pub place: Option<contract::CameraPlace>,
    /// The micro-grid it watches (its status says it).
    pub micro_grid: Option<String>,
}

impl CameraSpec {
    /// From a validated camera; `fit` is the camera's input size or its largest model input.
    pub fn from_config(cam: &config::Camera, cfg: &config::Config) -> Self {
        let fit = cam.input_size.unwrap_or_else(|| {
            cam.models
                .iter()
                .filter_map(|m| cfg.models.get(m))
                .map(|m| m.input_size)
                .max_by_key(|(w, h)| w * h)
                .unwrap_or((640, 384))
        });
        Self {
            id: cam.id.clone(),
            location: cam.url.to_string(),
            credentials: cam.credentials.as_ref().map(|c| (c.username.clone(), c.password.clone())),
            transport: cam.transport,
            decode: cam.decode,
            hw_decode: cam.hw_decode,
            rtsp_client: cam.rtsp_client,
            detect_fps: detect_fps(cam),
            fit,
            stall_timeout: cam.stall_timeout,
            delta_rules: delta_rules(cam),
            looks_always: looks_always(cam),
            demand: Demand::default(),
            place: cam.location.map(|location| contract::CameraPlace {
                location,
                direction: cam.direction.map(|d| d.0),
                field_of_view: cam.direction.map(|d| d.1),
            }),
            micro_grid: cam.micro_grid.clone(),
        }
    }

    /// Which frames this camera decodes, and why, for the log and the status.
    pub fn cadence(&self) -> String {
        let fps = self.detect_fps;
        let near_line = if self.delta_rules.iter().any(|r| r.ends_with("(line_cross)")) {
            format!(", {} per second while a track is near a line", fps.max(BURST_FPS))
        } else {
            String::new()
        };
        match self.decode {
            DecodeMode::Keyframes if !self.delta_rules.is_empty() => format!(
                "key frames only (decode = \"keyframes\"), although {} needs more: what happens between two key frames is missed (the default, decode = \"adaptive\", follows the rules)",
                self.delta_rules.join(", ")
            ),
            DecodeMode::Keyframes => "key frames only (decode = \"keyframes\")".into(),
            DecodeMode::All => format!(
                "every frame, all the time (decode = \"all\"), {fps} per second handed on: the most CPU a camera can cost (its decoding time is gridsight_camera_cpu_seconds_total{{stage=\"decode\"}})"
            ),
            DecodeMode::Auto => format!(
                "key frames while they come at least {fps} per second, else every frame (detect_fps = {fps} set, decode = \"auto\")"
            ),
            DecodeMode::Adaptive if self.delta_rules.is_empty() => {
                "key frames only: every rule is served by key-frame sampling".into()
            }
            DecodeMode::Adaptive if self.looks_always => format!(
                "a look every {} s, quiet or not, each GOP decoded up to its last look{} ({} needs it)",
                (1000.0 / fps).round() / 1000.0,
                near_line,
                self.delta_rules.join(", ")
            ),
            DecodeMode::Adaptive => format!(
                "key frames while quiet; every frame at {fps} per second while something moves (until detection finds nothing moving there for {} s) or a moving track is in view{} ({} needs it)",
                FRUITLESS_FOR.as_secs(),
                near_line,
                self.delta_rules.join(", ")
            ),
        }
    }
}

/// Rules served badly by one detection per key frame: a crossing happens between two key
/// frames, a face walks past in a second, and a `zone_enter` rule may say that visits
/// shorter than a key-frame interval matter (`shortest_visit`).
pub fn delta_rules(cam: &config::Camera) -> Vec<String> {
    cam.rules
        .iter()
        .filter(|r| match &r.kind {
            config::RuleKind::LineCross { .. } | config::RuleKind::FaceInZone { .. } => true,
            config::RuleKind::ZoneEnter { shortest_visit, .. } => shortest_visit.is_some(),
            _ => false,
        })
        .map(|r| format!("{} ({})", r.id, r.kind.name().as_str()))
        .collect()
}

/// Frames per second handed on to detection: the camera's `detect_fps`, or more where a
/// rule's `shortest_visit` needs a look at least that often: once per visit of a zone, twice
/// per time in view of something that crosses a line (a look before the crossing).
pub fn detect_fps(cam: &config::Camera) -> f64 {
    cam.rules
        .iter()
        .filter_map(|r| match &r.kind {
            config::RuleKind::ZoneEnter { shortest_visit: Some(d), .. } => Some(1.0 / d.as_secs_f64()),
            config::RuleKind::LineCross { shortest_visit: Some(d), .. } => Some(2.0 / d.as_secs_f64()),
            _ => None,
        })
        .fold(cam.detect_fps, f64::max)
}

/// Whether a rule names its `shortest_visit`: then the camera looks at [`detect_fps`]
/// whether anything moves or not, decoding up to each look, since a visit (or a crossing)
/// that starts after a quiet key frame and ends before the next one is seen by no key frame.
pub fn looks_always(cam: &config::Camera) -> bool {
    cam.rules.iter().any(|r| {
        matches!(
            r.kind,
            config::RuleKind::ZoneEnter { shortest_visit: Some(_), .. }
                | config::RuleKind::LineCross { shortest_visit: Some(_), .. }
        )
    })
}

/// Per-camera counters, monotonic since the camera was added.
#[derive(Default, Debug)]
pub struct Counters {
    /// Access units received (after the parser), every frame of the stream.
    pub received: AtomicU64,
    pub keyframes: AtomicU64,
    /// Pictures out of the decoder.
    pub decoded: AtomicU64,
    /// Frames handed to the consumer.
    pub handed_on: AtomicU64,
    pub reconnects: AtomicU64,
    pub stalls: AtomicU64,
    /// Pipelines started (first connection, reconnects and config changes).
    pub starts: AtomicU64,
    /// CPU time of the camera's streaming thread, nanoseconds, by stage (see [`StageCpu`]).
    pub cpu: StageCpu,
}

/// CPU time a camera's streaming thread spends in each stage after the parser, measured
/// with the thread's own CPU clock between the pipeline's probes (the chain from parser to
/// appsink runs synchronously on that one thread). What the thread spends before the
/// parser (RTP depayloading, the jitter buffer) and the RTSP reader thread are "receive",
/// measured by the node benchmark per thread.
#[derive(Default, Debug)]
pub struct StageCpu {
    pub decode_ns: AtomicU64,
    /// Scaling and conversion to BGR, and the copy handed on.
    pub convert_ns: AtomicU64,
    /// The frame callback: the motion gate and the hand-off to inference.
    pub motion_ns: AtomicU64,
    /// The thread CPU clock at the last probe (0: none).
    mark_ns: AtomicU64,
}

/// This thread's CPU time in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write into; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl StageCpu {
    /// A unit goes into the decoder now.
    pub fn start(&self) {
        self.mark_ns.store(thread_cpu_ns(), Ordering::Relaxed);
    }

    /// The stage that began at the last mark ends now: its time goes to `into`.
    pub fn lap(&self, into: &AtomicU64) {
        let now = thread_cpu_ns();
        let mark = self.mark_ns.swap(now, Ordering::Relaxed);
        if mark > 0 && now >= mark {
            into.fetch_add(now - mark, Ordering::Relaxed);
        }
    }

    /// No stage is running (the frame went no further).
    pub fn stop(&self) {
        self.mark_ns.store(0, Ordering::Relaxed);
    }

    pub fn seconds(&self) -> [(&'static str, f64); 3] {
        let s = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e9;
        [("decode", s(&self.decode_ns)), ("convert", s(&self.convert_ns)), ("motion", s(&self.motion_ns))]
    }
}

/// Shared between a camera's pipeline callbacks and the supervisor.
pub struct CameraShared {
    pub counters: Counters,
    /// Frames dropped, by why (the node's registry: kept across reconnects and reloads).
    pub drops: Arc<Drops>,
    /// Milliseconds after the supervisor's epoch of the last access unit (+1; 0 = none yet).
    last_unit_ms: AtomicU64,
    /// Source width << 32 | height.
    source_size: AtomicU64,
    decoding_all: AtomicBool,
    status: Mutex<StatusInner>,
    /// PTS → stream time for the frames handed on (reset at each connection).
    stream_clock: Mutex<StreamClock>,
}

impl CameraShared {
    pub fn new(drops: Arc<Drops>) -> Self {
        Self {
            counters: Counters::default(),
            drops,
            last_unit_ms: AtomicU64::default(),
            source_size: AtomicU64::default(),
            decoding_all: AtomicBool::default(),
            status: Mutex::default(),
            stream_clock: Mutex::default(),
        }
    }
}

#[derive(Default, Clone)]
struct StatusInner {
    state: CameraState,
    last_error: Option<String>,
    fps_in: f64,
    fps_decoded: f64,
    fps_out: f64,
    cadence: String,
    place: Option<contract::CameraPlace>,
    micro_grid: Option<String>,
}

/// Where a camera is in its life.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum CameraState {
    #[default]
    Connecting,
    Streaming,
    /// Frames stopped; reconnecting after `retry_in`.
    Stalled {
        retry_in: Duration,
    },
    /// Lost (stream ended, connection dropped, timeout); reconnecting after `retry_in`.
    Backoff {
        reason: FailReason,
        retry_in: Duration,
    },
    /// Refused (unauthorized, no such stream, unsupported codec); still retried.
    Failed {
        reason: FailReason,
        retry_in: Duration,
    },
}

impl CameraState {
    /// The state the status carries ([`contract::CameraState`]); this one adds why and when
    /// the next try is, which the status writes in words (`detail`, this type's `Display`).
    pub fn kind(&self) -> contract::CameraState {
        use contract::CameraState as S;
        match self {
            Self::Connecting => S::Connecting,
            Self::Streaming => S::Streaming,
            Self::Stalled { .. } => S::Stalled,
            Self::Backoff { .. } => S::Backoff,
            Self::Failed { .. } => S::Failed,
        }
    }

    /// `connecting`, `streaming`, `stalled`, `backoff`, `failed`.
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }
}

impl std::fmt::Display for CameraState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connecting | Self::Streaming => f.write_str(self.name()),
            Self::Stalled { retry_in } => write!(f, "stalled (retry in {:.1}s)", retry_in.as_secs_f64()),
            Self::Backoff { reason, retry_in } => {
                write!(f, "backoff: {reason} (retry in {:.1}s)", retry_in.as_secs_f64())
            }
            Self::Failed { reason, retry_in } => {
                write!(f, "failed: {reason} (retry in {:.1}s)", retry_in.as_secs_f64())
            }
        }
    }
}

/// A camera's status for logs, the status API and MQTT.
#[derive(Debug, Clone)]
pub struct CameraStatus {
    pub id: String,
    pub state: CameraState,
    pub last_error: Option<String>,
    /// Rates over the last status window, per second.
    pub fps_in: f64,
    pub fps_decoded: f64,
    pub fps_out: f64,
    pub received: u64,
    pub keyframes: u64,
    pub decoded: u64,
    pub handed_on: u64,
    pub dropped_delta: u64,
    pub dropped_rate: u64,
    /// Key frames the shared decoders had no room for (unintended).
    pub dropped_decoder: u64,
    pub reconnects: u64,
    pub stalls: u64,
    pub starts: u64,
    /// Whether every frame is being decoded (`all`, or `auto` that chose it).
    pub decoding_all: bool,
    /// Which frames this camera decodes and why ([`CameraSpec::cadence`]).
    pub cadence: String,
    /// Where it is on the map, from its config.
    pub place: Option<contract::CameraPlace>,
    pub micro_grid: Option<String>,
    pub source_size: (u32, u32),
    /// CPU seconds of the streaming thread by stage: decode, convert, motion.
    pub cpu: [(&'static str, f64); 3],
}

impl CameraStatus {
    /// As `gridsight.camera_status` says it (the retained MQTT status and `/status`), from
    /// `node`, at `at`; rates rounded to hundredths.
    pub fn to_contract(&self, node: &str, at: &str) -> contract::CameraStatus {
        let round = |v: f64| (v * 100.0).round() / 100.0;
        contract::CameraStatus {
            schema: contract::Schema::new(),
            version: contract::Version1,
            node: node.to_string(),
            camera: self.id.clone(),
            state: self.state.kind(),
            detail: self.state.to_string(),
            fps_in: round(self.fps_in),
            fps_decoded: round(self.fps_decoded),
            fps_out: round(self.fps_out),
            decode: if self.decoding_all { contract::DecodeNow::All } else { contract::DecodeNow::Keyframes },
            cadence: self.cadence.clone(),
            received: self.received,
            decoded: self.decoded,
            handed_on: self.handed_on,
            reconnects: self.reconnects,
            stalls: self.stalls,
            last_error: self.last_error.clone(),
            at: at.to_string(),
            place: self.place,
            micro_grid: self.micro_grid.clone(),
            tracks_seen_once: None,
        }
    }
}

#[derive(Debug)]
pub(crate) enum PipelineEvent {
    Failed(FailReason, String),
    Ended,
}

pub(crate) enum Msg {
    /// New camera list; the sender is answered once it is applied.
    Apply(Vec<CameraSpec>, Sender<()>),
    Pipeline {
        id: String,
        generation: u64,
        event: PipelineEvent,
    },
    Shutdown,
}

/// Timing of the supervisor; tests shorten them.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Streaming this long resets the backoff.
    pub stable_after: Duration,
    /// A status line per camera this often (zero: never).
    pub status_every: Duration,
    /// Every access unit received (event clips); `None`: nobody listens.
    pub on_unit: Option<UnitTap>,
    /// Where each camera's dropped frames are counted (the node's, shared with inference).
    pub drops: Arc<crate::drops::Registry>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            status_every: Duration::from_secs(10),
            on_unit: None,
            drops: Arc::default(),
        }
    }
}

pub use crate::clock::{Clock, ManualClock, SystemClock};

/// A running camera source; stopping it may block (it runs on a helper thread).
pub(crate) trait Source: Send {
    fn stop(self: Box<Self>);
}

/// What a source needs to report to the supervisor and hand frames on.
pub(crate) struct SourceContext {
    pub shared: Arc<CameraShared>,
    pub generation: u64,
    pub epoch: Instant,
    pub events: Sender<Msg>,
    pub on_frame: FrameCallback,
    pub on_unit: Option<UnitCallback>,
}

/// Opens camera sources: the real one builds and starts a GStreamer pipeline; tests use a
/// fake to drive the supervisor's state machine without a network.
pub(crate) trait Opener: Send {
    fn open(&self, spec: &CameraSpec, cx: SourceContext) -> Result<Box<dyn Source>, FailReason>;
}

/// RTSP through GStreamer (`pipeline.rs`), or retina (`retina.rs`) where the camera's
/// `rtsp_client` asks for it and retina can serve it.
#[derive(Default)]
struct GstOpener {
    fallbacks: Arc<retina::Fallbacks>,
}

struct GstSource(gst::Pipeline);

impl Source for GstSource {
    fn stop(self: Box<Self>) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

impl Opener for GstOpener {
    fn open(&self, spec: &CameraSpec, cx: SourceContext) -> Result<Box<dyn Source>, FailReason> {
        if spec.rtsp_client == RtspClient::Retina {
            let why = retina::unsupported(spec)
                .or_else(|| self.fallbacks.contains(&spec.id).then_some("retina could not parse its stream"));
            match why {
                None => return Ok(Box::new(retina::open(spec, cx, self.fallbacks.clone())?)),
                Some(why) => info!(camera = %spec.id, reason = why, "rtsp_client retina: using the gstreamer client"),
            }
        }
        let p = pipeline::build(spec, cx.shared, cx.generation, cx.epoch, cx.events, cx.on_frame, cx.on_unit)?;
        p.set_state(gst::State::Playing).map_err(|_| FailReason::Other("pipeline refused to start".into()))?;
        Ok(Box::new(GstSource(p)))
    }
}

/// Every camera of the node, supervised by one thread.
pub struct Ingest {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
    cameras: Arc<Mutex<BTreeMap<String, Arc<CameraShared>>>>,
    teardowns: Arc<AtomicUsize>,
}

impl Ingest {
    pub fn start(
        specs: Vec<CameraSpec>,
        on_frame: FrameCallback,
        options: IngestOptions,
    ) -> Result<Self, gst::glib::Error> {
        crate::init_gstreamer()?;
        let (tx, rx) = mpsc::channel();
        let cameras = Arc::new(Mutex::new(BTreeMap::new()));
        let teardowns = Arc::new(AtomicUsize::new(0));
        let mut sup = Supervisor::new(
            tx.clone(),
            on_frame,
            options,
            cameras.clone(),
            teardowns.clone(),
            Box::new(GstOpener::default()),
            Arc::new(SystemClock),
        );
        let thread = std::thread::Builder::new()
            .name("ingest-supervisor".into())
            .spawn(move || sup.run(rx))
            .expect("spawn ingest supervisor");
        let ingest = Self { tx, thread: Some(thread), cameras, teardowns };
        ingest.apply(specs);
        Ok(ingest)
    }

    /// Replaces the camera list: new cameras start, removed ones stop, changed ones
    /// restart; the others are untouched. Returns once the supervisor has applied it.
    pub fn apply(&self, specs: Vec<CameraSpec>) {
        let (done, applied) = mpsc::channel();
        if self.tx.send(Msg::Apply(specs, done)).is_ok() {
            let _ = applied.recv();
        }
    }

    pub fn status(&self) -> Vec<CameraStatus> {
        self.cameras.locked().iter().map(|(id, s)| status_of(id, s)).collect()
    }

    /// A handle that reads every camera's current status from any thread (HTTP endpoints).
    pub fn status_reader(&self) -> StatusReader {
        StatusReader { cameras: self.cameras.clone() }
    }

    pub fn camera(&self, id: &str) -> Option<CameraStatus> {
        self.cameras.locked().get(id).map(|s| status_of(id, s))
    }

    /// Stops every pipeline; returns false when some did not stop before the deadline.
    pub fn shutdown(mut self, deadline: Duration) -> bool {
        self.stop(deadline)
    }

    fn stop(&mut self, deadline: Duration) -> bool {
        let Some(thread) = self.thread.take() else { return true };
        let _ = self.tx.send(Msg::Shutdown);
        let _ = thread.join();
        let until = Instant::now() + deadline;
        while self.teardowns.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= until {
                warn!(
                    pending = self.teardowns.load(Ordering::SeqCst),
                    "camera pipelines did not stop before the deadline"
                );
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Reads the cameras' status; see [`Ingest::status_reader`].
#[derive(Clone)]
pub struct StatusReader {
    cameras: Arc<Mutex<BTreeMap<String, Arc<CameraShared>>>>,
}

impl StatusReader {
    pub fn status(&self) -> Vec<CameraStatus> {
        self.cameras.locked().iter().map(|(id, s)| status_of(id, s)).collect()
    }
}

fn status_of(id: &str, s: &CameraShared) -> CameraStatus {
    let inner = s.status.locked().clone();
    let c = &s.counters;
    let size = s.source_size.load(Ordering::Relaxed);
    CameraStatus {
        id: id.to_string(),
        state: inner.state,
        last_error: inner.last_error,
        fps_in: inner.fps_in,
        fps_decoded: inner.fps_decoded,
        fps_out: inner.fps_out,
        received: c.received.load(Ordering::Relaxed),
        keyframes: c.keyframes.load(Ordering::Relaxed),
        decoded: c.decoded.load(Ordering::Relaxed),
        handed_on: c.handed_on.load(Ordering::Relaxed),
        dropped_delta: s.drops.count(Dropped::DeltaFrame),
        dropped_rate: s.drops.count(Dropped::OverDetectFps),
        dropped_decoder: s.drops.count(Dropped::DecoderQueueFull) + s.drops.count(Dropped::DecoderNoPicture),
        reconnects: c.reconnects.load(Ordering::Relaxed),
        stalls: c.stalls.load(Ordering::Relaxed),
        starts: c.starts.load(Ordering::Relaxed),
        decoding_all: s.decoding_all.load(Ordering::Relaxed),
        cadence: inner.cadence,
        place: inner.place,
        micro_grid: inner.micro_grid,
        cpu: c.cpu.seconds(),
        source_size: ((size >> 32) as u32, (size & 0xffff_ffff) as u32),
    }
}

/// The supervisor's view of one camera.
struct Slot {
    spec: CameraSpec,
    shared: Arc<CameraShared>,
    source: Option<Box<dyn Source>>,
    generation: u64,
    phase: Phase,
    backoff: Backoff,
    /// Counter samples for the rates (received, decoded, handed on) while streaming.
    rates: Rates,
    /// The other transport, used after the server refused the configured one (461); kept
    /// while it works, dropped when it fails too or the camera's config changes.
    transport_override: Option<Transport>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Connecting { since: Instant },
    Streaming { since: Instant },
    Waiting { until: Instant },
}

struct Supervisor {
    slots: BTreeMap<String, Slot>,
    tx: Sender<Msg>,
    on_frame: FrameCallback,
    options: IngestOptions,
    epoch: Instant,
    cameras: Arc<Mutex<BTreeMap<String, Arc<CameraShared>>>>,
    teardowns: Arc<AtomicUsize>,
    next_generation: u64,
    last_status: Instant,
    opener: Box<dyn Opener>,
    clock: Arc<dyn Clock>,
}

const TICK: Duration = Duration::from_millis(100);

impl Supervisor {
    fn new(
        tx: Sender<Msg>,
        on_frame: FrameCallback,
        options: IngestOptions,
        cameras: Arc<Mutex<BTreeMap<String, Arc<CameraShared>>>>,
        teardowns: Arc<AtomicUsize>,
        opener: Box<dyn Opener>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let now = clock.now();
        Self {
            slots: BTreeMap::new(),
            tx,
            on_frame,
            options,
            epoch: now,
            cameras,
            teardowns,
            next_generation: 1,
            last_status: now,
            opener,
            clock,
        }
    }

    fn run(&mut self, rx: Receiver<Msg>) {
        loop {
            match rx.recv_timeout(TICK) {
                Ok(Msg::Apply(specs, done)) => {
                    self.apply(specs);
                    let _ = done.send(());
                }
                Ok(Msg::Pipeline { id, generation, event }) => self.on_event(&id, generation, event),
                Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.tick();
        }
        let ids: Vec<String> = self.slots.keys().cloned().collect();
        for id in ids {
            self.remove(&id);
        }
    }

    fn apply(&mut self, specs: Vec<CameraSpec>) {
        let wanted: BTreeMap<String, CameraSpec> = specs.into_iter().map(|s| (s.id.clone(), s)).collect();
        let gone: Vec<String> = self.slots.keys().filter(|id| !wanted.contains_key(*id)).cloned().collect();
        for id in gone {
            info!(camera = %id, "camera removed");
            self.remove(&id);
        }
        for (id, spec) in wanted {
            match self.slots.get(&id) {
                Some(slot) if slot.spec == spec => {}
                Some(_) => {
                    info!(camera = %id, "camera changed; restarting its pipeline");
                    let slot = self.slots.get_mut(&id).unwrap();
                    slot.spec = spec;
                    slot.transport_override = None;
                    slot.backoff.reset();
                    self.teardown(&id);
                    self.connect(&id);
                }
                None => {
                    let shared = Arc::new(CameraShared::new(self.options.drops.camera(&id)));
                    self.cameras.locked().insert(id.clone(), shared.clone());
                    let seed =
                        id.bytes().fold(self.epoch.elapsed().as_nanos() as u64, |h, b| h.rotate_left(5) ^ b as u64);
                    let now = self.clock.now();
                    self.slots.insert(
                        id.clone(),
                        Slot {
                            spec,
                            shared,
                            source: None,
                            generation: 0,
                            phase: Phase::Connecting { since: now },
                            backoff: Backoff::new(self.options.backoff_base, self.options.backoff_max, seed),
                            rates: Rates::default(),
                            transport_override: None,
                        },
                    );
                    self.connect(&id);
                }
            }
        }
    }

    fn remove(&mut self, id: &str) {
        self.teardown(id);
        self.slots.remove(id);
        self.cameras.locked().remove(id);
    }

    fn connect(&mut self, id: &str) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let Some(slot) = self.slots.get_mut(id) else { return };
        slot.generation = generation;
        let now = self.clock.now();
        slot.phase = Phase::Connecting { since: now };
        slot.shared.last_unit_ms.store(0, Ordering::Relaxed);
        slot.shared.counters.starts.fetch_add(1, Ordering::Relaxed);
        // Rates count from the connection, so the first frames are in the first window.
        let c = &slot.shared.counters;
        slot.rates.clear();
        slot.rates.push(now, [&c.received, &c.decoded, &c.handed_on].map(|n| n.load(Ordering::Relaxed)));
        set_state(&slot.shared, CameraState::Connecting, None);
        let spec = match slot.transport_override {
            Some(t) => CameraSpec { transport: t, ..slot.spec.clone() },
            None => slot.spec.clone(),
        };
        let cadence = spec.cadence();
        info!(camera = %id, url = %spec.location, transport = ?spec.transport, decode = ?spec.decode, cadence = %cadence, "connecting");
        {
            let mut status = slot.shared.status.locked();
            status.cadence = cadence;
            status.place = spec.place;
            status.micro_grid = spec.micro_grid.clone();
        }
        let cx = SourceContext {
            shared: slot.shared.clone(),
            generation,
            epoch: self.epoch,
            events: self.tx.clone(),
            on_frame: self.on_frame.clone(),
            on_unit: self.options.on_unit.as_ref().map(|t| t.0.clone()),
        };
        match self.opener.open(&spec, cx) {
            Ok(source) => slot.source = Some(source),
            Err(reason) => self.fail(id, reason, String::new()),
        }
    }

    /// Stops the camera's pipeline on a helper thread; late messages from it are ignored
    /// (their generation is stale).
    fn teardown(&mut self, id: &str) {
        let Some(slot) = self.slots.get_mut(id) else { return };
        slot.generation = 0;
        if let Some(source) = slot.source.take() {
            self.teardowns.fetch_add(1, Ordering::SeqCst);
            let pending = self.teardowns.clone();
            let spawned = std::thread::Builder::new().name(format!("teardown-{id}")).spawn(move || {
                source.stop();
                pending.fetch_sub(1, Ordering::SeqCst);
            });
            if spawned.is_err() {
                self.teardowns.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    fn on_event(&mut self, id: &str, generation: u64, event: PipelineEvent) {
        let Some(slot) = self.slots.get(id) else { return };
        if slot.generation != generation || generation == 0 {
            return;
        }
        match event {
            PipelineEvent::Failed(reason, detail) => self.fail(id, reason, detail),
            PipelineEvent::Ended => self.fail(id, FailReason::StreamEnded, String::new()),
        }
    }

    /// Tears down and schedules a retry, naming why. A server that refuses the configured
    /// transport gets one immediate try over the other one before any backoff.
    fn fail(&mut self, id: &str, reason: FailReason, detail: String) {
        self.teardown(id);
        let Some(slot) = self.slots.get_mut(id) else { return };
        let mut reason = reason;
        if let FailReason::TransportRefused { tried, .. } = reason {
            if slot.transport_override.is_none() {
                let other = match tried {
                    Transport::Tcp => Transport::Udp,
                    Transport::Udp => Transport::Tcp,
                };
                warn!(camera = %id, refused = ?tried, trying = ?other, "the camera refused the configured transport (461 Unsupported Transport); trying the other one once");
                slot.transport_override = Some(other);
                set_state(&slot.shared, CameraState::Connecting, Some(reason.to_string()));
                self.connect(id);
                return;
            }
            // Both refused: back to the configured transport after the backoff.
            slot.transport_override = None;
            reason = FailReason::TransportRefused { tried, both: true };
        } else if slot.transport_override.is_some() && !matches!(slot.phase, Phase::Streaming { .. }) {
            // The other transport never streamed: the next attempt uses the configured one.
            slot.transport_override = None;
        }
        let delay = slot.backoff.next_delay();
        slot.phase = Phase::Waiting { until: self.clock.now() + delay };
        let attempt = slot.backoff.attempts();
        let state = match &reason {
            FailReason::Stalled => CameraState::Stalled { retry_in: delay },
            r if r.is_hard() => CameraState::Failed { reason: reason.clone(), retry_in: delay },
            _ => CameraState::Backoff { reason: reason.clone(), retry_in: delay },
        };
        warn!(camera = %id, state = %state.name(), reason = %reason, attempt, backoff_ms = delay.as_millis() as u64, detail = %detail, "camera not streaming; will retry");
        set_state(&slot.shared, state, Some(reason.to_string()));
    }

    fn tick(&mut self) {
        let now = self.clock.now();
        let now_ms = now.duration_since(self.epoch).as_millis() as u64;
        let mut actions: Vec<(String, Option<FailReason>)> = Vec::new();
        for (id, slot) in &mut self.slots {
            let last = slot.shared.last_unit_ms.load(Ordering::Relaxed);
            match slot.phase {
                Phase::Connecting { since } => {
                    if last > 0 {
                        slot.phase = Phase::Streaming { since: now };
                        if let Some(t) = slot.transport_override {
                            warn!(camera = %id, transport = ?t, configured = ?slot.spec.transport, "streaming over the transport the camera accepts; set it in the camera's config to skip the refused attempt");
                        }
                        info!(camera = %id, after_ms = now.duration_since(since).as_millis() as u64, "streaming");
                        set_state(&slot.shared, CameraState::Streaming, None);
                    } else if now.duration_since(since) > slot.spec.stall_timeout.max(Duration::from_secs(10)) {
                        actions.push((id.clone(), Some(FailReason::Timeout)));
                    }
                }
                Phase::Streaming { since } => {
                    let silent = Duration::from_millis(now_ms.saturating_sub(last.saturating_sub(1)));
                    if silent > slot.spec.stall_timeout {
                        slot.shared.counters.stalls.fetch_add(1, Ordering::Relaxed);
                        warn!(camera = %id, silent_ms = silent.as_millis() as u64, "stalled: no frames; reconnecting");
                        actions.push((id.clone(), Some(FailReason::Stalled)));
                    } else if now.duration_since(since) > self.options.stable_after && slot.backoff.attempts() > 0 {
                        slot.backoff.reset();
                    }
                }
                Phase::Waiting { until } => {
                    if now >= until {
                        slot.shared.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                        actions.push((id.clone(), None));
                    }
                }
            }
            // Rates while streaming, over windows that hold several frames (`Rates`).
            let c = &slot.shared.counters;
            let counts = [&c.received, &c.decoded, &c.handed_on].map(|n| n.load(Ordering::Relaxed));
            let streaming = matches!(slot.phase, Phase::Streaming { .. });
            if !streaming || slot.rates.push(now, counts) {
                let [fps_in, fps_decoded, fps_out] = if streaming { slot.rates.rates() } else { [0.0; 3] };
                let mut st = slot.shared.status.locked();
                (st.fps_in, st.fps_decoded, st.fps_out) = (fps_in, fps_decoded, fps_out);
            }
        }
        for (id, action) in actions {
            match action {
                Some(reason) => self.fail(&id, reason, String::new()),
                None => {
                    info!(camera = %id, attempt = self.slots[&id].backoff.attempts(), "reconnecting");
                    self.connect(&id)
                }
            }
        }
        if !self.options.status_every.is_zero() && now.duration_since(self.last_status) >= self.options.status_every {
            self.last_status = now;
            for (id, slot) in &self.slots {
                let s = status_of(id, &slot.shared);
                info!(
                    camera = %id,
                    state = %s.state,
                    fps_in = format!("{:.2}", s.fps_in),
                    fps_decoded = format!("{:.2}", s.fps_decoded),
                    fps_out = format!("{:.2}", s.fps_out),
                    decode = if s.decoding_all { "all" } else { "keyframes" },
                    size = format!("{}x{}", s.source_size.0, s.source_size.1),
                    reconnects = s.reconnects,
                    stalls = s.stalls,
                    "camera status"
                );
            }
        }
    }
}

fn set_state(shared: &CameraShared, state: CameraState, error: Option<String>) {
    let mut st = shared.status.locked();
    st.state = state;
    if error.is_some() {
        st.last_error = error;
    }
}
