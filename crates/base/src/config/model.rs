//! Validated configuration: what the rest of the node reads. Every value here has been
//! checked, every reference resolved and every camera has its defaults merged in.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::secret::Secret;
use super::units::Schedule;
use crate::geometry::{Polygon, Polyline};

/// How RTP packets travel from the camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// RTP interleaved in the RTSP TCP connection (default: works through NAT and firewalls).
    Tcp,
    /// RTP over UDP (less latency, loses packets on a busy network).
    Udp,
}

/// Which frames reach the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecodeMode {
    /// Only key frames are decoded: decode cost falls by about the GOP length.
    Keyframes,
    /// Every frame is decoded, then at most `detect_fps` frames are handed on.
    All,
    /// `keyframes` when `detect_fps` is at or below the measured key-frame rate, else `all`.
    Auto,
    /// The default: follows the camera's rules. Key frames only when every rule is served
    /// by key-frame sampling (dwell, entering a zone, crowding) or nothing moves; a camera
    /// with a rule that needs more (line crossing, faces in a zone) keeps decoding the delta
    /// frames after a key frame that shows motion, at `detect_fps` (5 per second while a
    /// track is within reach of a watched line), while something moves from look to look
    /// (for at most 3 s while detection finds nothing moving there: wind, rain, a panning
    /// view) or a confirmed track that moves is in view (seen at one of the latest three
    /// looks; a parked car or a seated person is not), and goes back to key frames when
    /// neither holds.
    Adaptive,
}

/// Which RTSP client receives a camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RtspClient {
    /// RTSP/RTP in Rust (`retina`), access units straight to the decoder: the least CPU.
    /// TCP only, no `rtsps`; such cameras use `gstreamer`.
    Retina,
    /// GStreamer's `rtspsrc`: UDP, `rtsps`, and cameras retina cannot parse.
    Gstreamer,
}

/// Hardware decoder preference; falls back to software with a logged reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HwDecode {
    None,
    Auto,
    Vaapi,
    Nvdec,
}

/// Coordinate system of a camera's zones and lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coordinates {
    /// Fractions of the frame width and height, 0.0–1.0 (survives resolution changes).
    Normalized,
    /// Pixels of the camera's native frame.
    Pixel,
}

/// ONNX Runtime execution provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Cpu,
    Cuda,
    Tensorrt,
    Openvino,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn name(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Urgent => "urgent",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationStep {
    Leader,
    ControlRoom,
}

/// `[dispatch]`: whether the dispatcher runs in-process, and the routes by category.
#[derive(Debug, Clone)]
pub struct Dispatch {
    pub enabled: bool,
    pub stats_interval: Duration,
    pub retention: Duration,
    pub routes: Vec<Route>,
    /// Nearest assignment: fewer open orders than this (0: off).
    pub nearest_max_open: u32,
    pub position_max_age: Duration,
}

impl Dispatch {
    /// The route for a category: its own, else `"*"`, else none (no order).
    pub fn route(&self, category: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.category == category).or_else(|| self.routes.iter().find(|r| r.category == "*"))
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    pub category: String,
    pub priority: Priority,
    pub accept_within: Duration,
    pub resolve_within: Duration,
    pub reassign: u32,
    pub escalate: Vec<EscalationStep>,
}

impl Route {
    pub fn default_for(category: &str) -> Self {
        Self {
            category: category.to_string(),
            priority: Priority::Normal,
            accept_within: Duration::from_secs(600),
            resolve_within: Duration::from_secs(7200),
            reassign: 1,
            escalate: vec![EscalationStep::Leader, EscalationStep::ControlRoom],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKindName {
    ZoneDwell,
    LineCross,
    Crowd,
    ZoneEnter,
    FaceInZone,
    Absence,
    LeftObject,
    RemovedObject,
}

impl RuleKindName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZoneDwell => "zone_dwell",
            Self::LineCross => "line_cross",
            Self::Crowd => "crowd",
            Self::ZoneEnter => "zone_enter",
            Self::FaceInZone => "face_in_zone",
            Self::Absence => "absence",
            Self::LeftObject => "left_object",
            Self::RemovedObject => "removed_object",
        }
    }
}

/// Which way a track must cross a line, as seen walking from the line's first point
/// towards its last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Either,
    LeftToRight,
    RightToLeft,
}

/// What snapshots do with faces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FacePolicy {
    /// Every detected face is blurred (default).
    Blur,
    /// Faces are left as captured; only for cameras whose legal basis allows it.
    Raw,
}

/// `[reports]`: residents' reports; `None` when off (the default).
#[derive(Debug, Clone)]
pub struct Reports {
    pub categories: Vec<String>,
    pub attach_within_m: f64,
    pub attach_for: Duration,
    /// A location in no micro-grid goes to the control room (else it is refused).
    pub outside_to_control_room: bool,
    pub per_address: u32,
    pub per_token: u32,
    pub per_gateway: u32,
    /// A rating at or below this reopens the order; `None`: ratings never reopen.
    pub reopen_at_most: Option<u8>,
}

/// `[home_assistant]`: MQTT discovery for Home Assistant; `None` when off (the default).
#[derive(Debug, Clone)]
pub struct HomeAssistant {
    pub discovery_prefix: String,
    pub birth_topic: String,
}

/// What event clips do (`privacy.clips`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipPolicy {
    /// Decoded, every face pixelated, re-encoded at a reduced rate (default).
    Blurred,
    /// The camera's stream copied as it is; only by explicit setting.
    Raw,
    /// No clips.
    Off,
}

/// Whether a camera's raw live video may be watched (`privacy.live`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LivePolicy {
    /// By credentials with the `live` right (default).
    On,
    /// By nobody: the pixelated live picture instead.
    Off,
}

/// What a credential of the HTTP listener may do (`http.users_file`), least first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The pages, pictures and clips (faces pixelated).
    Viewer,
    /// Also raw live video.
    Live,
    /// Everything.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Live => "live",
            Role::Admin => "admin",
        }
    }
}

/// A named credential of the HTTP listener.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub token: Secret,
}

/// `[clips]`: event clips around alerts.
#[derive(Debug, Clone)]
pub struct Clips {
    pub pre_capture: Duration,
    pub post_capture: Duration,
    pub fps: u32,
    pub max_age: Duration,
    pub max_bytes: u64,
    /// Most encoded video one camera keeps for clips.
    pub buffer_max_bytes: u64,
    pub dir: PathBuf,
}

pub use crate::labels::Family;

#[derive(Debug, Clone)]
pub struct Config {
    pub node: Node,
    /// `None`: the node runs an embedded broker on `embedded_broker`.
    pub mqtt: Option<Mqtt>,
    /// Where the embedded broker listens (a loopback address); `None` when `[mqtt]` is set.
    pub embedded_broker: Option<SocketAddr>,
    pub storage: Storage,
    pub http: Http,
    pub clips: Clips,
    pub models: BTreeMap<String, ModelSpec>,
    pub inference: Inference,
    pub cameras: Vec<Camera>,
    pub grid: Grid,
    pub dispatch: Dispatch,
    /// This node's share of a district camera list; `None`: every camera runs here.
    pub shard: Option<Shard>,
    pub home_assistant: Option<HomeAssistant>,
    pub reports: Option<Reports>,
    pub apps: Apps,
}

/// `[apps]`: the inspectors' app.
#[derive(Debug, Clone, Default)]
pub struct Apps {
    /// Inspector id → token; empty: the inspectors' app is off.
    pub inspector_tokens: Vec<(String, Secret)>,
    /// The espeak-ng voice of spoken order summaries.
    pub voice: String,
}

/// This node's place in a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct Shard {
    pub index: usize,
    /// The nodes' ids, by index (`nodes[index]` is this node's id).
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub name: String,
    /// The `TZ` value for `node.time_zone` (see `localtime::tz_value`); `None`: the machine's zone.
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Mqtt {
    pub host: String,
    pub port: u16,
    pub tls: Option<Tls>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub client_id: String,
    pub topic_prefix: String,
    pub keep_alive: Duration,
    pub max_inflight: u16,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Storage {
    pub data_dir: PathBuf,
    pub models_dir: PathBuf,
    pub snapshot_dir: PathBuf,
    pub snapshot_max_age: Duration,
    pub snapshot_max_bytes: u64,
    pub outbox_max_bytes: u64,
    /// Free bytes on `data_dir`'s filesystem kept for alert rows.
    pub disk_reserve: u64,
}

#[derive(Debug, Clone)]
pub struct Http {
    pub listen: SocketAddr,
    /// The access token requests must carry (`http.token_file`); `None` on loopback only.
    pub token: Option<Secret>,
    /// Named credentials with their roles (`http.users_file`).
    pub users: Vec<User>,
    /// Cameras shown around an alert on the status page.
    pub nearby_cameras: u32,
    /// Where operators reach this node's pages (`http.public_url`), without a trailing `/`.
    pub public_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    pub family: Family,
    pub path: PathBuf,
    /// Fixed by the file, or the configured size for a dynamic file. (width, height)
    pub input_size: (u32, u32),
    /// Whether the file accepts other input sizes (per camera).
    pub dynamic: bool,
    pub score_threshold: f32,
    pub nms_iou: f32,
    /// Class ids kept; empty keeps all.
    pub classes: Vec<usize>,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Inference {
    pub provider: Provider,
    pub workers: usize,
    pub threads_per_worker: usize,
    pub max_batch: usize,
    pub max_wait: Duration,
    pub queue_per_camera: usize,
}

#[derive(Debug, Clone)]
pub struct Camera {
    pub id: String,
    pub name: String,
    pub url: RtspUrl,
    pub credentials: Option<Credentials>,
    pub enabled: bool,
    pub transport: Transport,
    pub decode: DecodeMode,
    pub hw_decode: HwDecode,
    pub rtsp_client: RtspClient,
    pub detect_fps: f64,
    pub models: Vec<String>,
    pub input_size: Option<(u32, u32)>,
    pub micro_grid: Option<String>,
    /// `[longitude, latitude]`.
    pub location: Option<[f64; 2]>,
    /// Degrees clockwise from north, and the field of view in degrees (map only).
    pub direction: Option<(f64, f64)>,
    /// The node it is pinned to (`node = "..."`).
    pub node: Option<String>,
    /// Whether this node runs it: enabled, and its shard's (always, without `[shard]`).
    pub here: bool,
    pub stall_timeout: Duration,
    pub motion_gate: bool,
    pub full_detect_interval: Duration,
    pub coordinates: Coordinates,
    pub zones: BTreeMap<String, Polygon>,
    pub lines: BTreeMap<String, Polyline>,
    pub rules: Vec<Rule>,
    pub faces: FacePolicy,
    /// Event clips of this camera's alerts.
    pub clips: ClipPolicy,
    /// Raw live video of this camera.
    pub live: LivePolicy,
}

#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &self.password).finish()
    }
}

/// An RTSP address without credentials: safe to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspUrl {
    pub secure: bool,
    pub host: String,
    pub port: Option<u16>,
    /// Path and query, starting with `/` (or empty).
    pub path: String,
}

impl fmt::Display for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "rtsps" } else { "rtsp" };
        write!(f, "{scheme}://{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        f.write_str(&self.path)
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub category: String,
    pub severity: Severity,
    pub min_score: f32,
    pub cooldown: Duration,
    pub dispatch: bool,
    pub kind: RuleKind,
}

#[derive(Debug, Clone)]
pub enum RuleKind {
    ZoneDwell {
        zone: String,
        classes: Vec<String>,
        min_duration: Duration,
        stationary_only: bool,
    },
    LineCross {
        line: String,
        classes: Vec<String>,
        direction: Direction,
        /// The shortest time in view of something that crosses, that the rule must catch:
        /// the camera looks at least twice that often, quiet scene or not.
        shortest_visit: Option<Duration>,
    },
    Crowd {
        zone: String,
        classes: Vec<String>,
        min_count: u32,
        min_duration: Duration,
    },
    ZoneEnter {
        zone: String,
        classes: Vec<String>,
        schedule: Schedule,
        shortest_visit: Option<Duration>,
    },
    FaceInZone {
        zone: String,
        schedule: Schedule,
    },
    /// Nobody of `classes` seen in the zone for `min_duration` of the schedule's active time
    /// (a door of someone who lives alone: "no one came out between 07:00 and 11:00").
    Absence {
        zone: String,
        classes: Vec<String>,
        min_duration: Duration,
        schedule: Schedule,
    },
    /// Something new stays in the zone (goods spread out, piled materials, rubbish, a bag):
    /// a region of the camera's dual background (`edge_node::still`), no class needed.
    LeftObject(StillRule),
    /// Something that was in the zone is gone (a manhole cover, a fire extinguisher).
    RemovedObject(StillRule),
}

/// A `left_object` or `removed_object` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct StillRule {
    pub zone: String,
    /// Smallest region, as a share of the frame (0–1).
    pub min_area: f32,
    /// How long it must stay, counted from when it appeared.
    pub min_duration: Duration,
    /// After this long it is background: the incident ends and does not come back.
    pub absorb_after: Duration,
    /// A region an object of these classes explains (detected over it) is not reported.
    pub ignore_classes: Vec<String>,
}

impl RuleKind {
    pub fn name(&self) -> RuleKindName {
        match self {
            Self::ZoneDwell { .. } => RuleKindName::ZoneDwell,
            Self::LineCross { .. } => RuleKindName::LineCross,
            Self::Crowd { .. } => RuleKindName::Crowd,
            Self::ZoneEnter { .. } => RuleKindName::ZoneEnter,
            Self::FaceInZone { .. } => RuleKindName::FaceInZone,
            Self::Absence { .. } => RuleKindName::Absence,
            Self::LeftObject(_) => RuleKindName::LeftObject,
            Self::RemovedObject(_) => RuleKindName::RemovedObject,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Grid {
    pub communities: Vec<Community>,
    pub grids: Vec<GridCell>,
    pub micro_grids: Vec<MicroGrid>,
    pub inspectors: Vec<Inspector>,
}

#[derive(Debug, Clone)]
pub struct Community {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct GridCell {
    pub id: String,
    pub name: String,
    pub community: String,
    pub leader: Option<String>,
}

#[derive(Debug, Clone)]
pub struct MicroGrid {
    pub id: String,
    pub name: String,
    pub grid: String,
    /// Its area, x = longitude, y = latitude.
    pub area: Option<Polygon>,
}

#[derive(Debug, Clone)]
pub struct Inspector {
    pub id: String,
    pub name: String,
    pub grid: String,
    pub contact_topic: Option<String>,
    pub duty: Schedule,
}

impl Config {
    /// The grid cell a camera belongs to, through its micro-grid.
    pub fn grid_of(&self, camera: &Camera) -> Option<&str> {
        let mg = camera.micro_grid.as_deref()?;
        self.grid.micro_grids.iter().find(|m| m.id == mg).map(|m| m.grid.as_str())
    }

    /// One line for logs and `check-config`.
    pub fn summary(&self) -> String {
        let enabled = self.cameras.iter().filter(|c| c.here).count();
        let rules: usize = self.cameras.iter().map(|c| c.rules.len()).sum();
        let broker = match &self.mqtt {
            Some(m) => format!("{}:{}{}", m.host, m.port, if m.tls.is_some() { " (tls)" } else { "" }),
            None => format!("embedded on {}", self.embedded_broker.map_or("-".into(), |a| a.to_string())),
        };
        format!(
            "node {}{}: {} cameras ({} enabled here), {} rules, {} models, {} micro-grids, {} inspectors, broker {}, dispatch {}",
            self.node.id,
            self.shard.as_ref().map_or(String::new(), |s| format!(" (shard {} of {})", s.index, s.nodes.len())),
            self.cameras.len(),
            enabled,
            rules,
            self.models.len(),
            self.grid.micro_grids.len(),
            self.grid.inspectors.len(),
            broker,
            if self.dispatch.enabled { "in-process" } else { "elsewhere" }
        )
    }

    /// What is valid but probably not what the operator wants, one sentence each: printed by
    /// `check-config` and logged by `run` at start.
    pub fn advice(&self) -> Vec<String> {
        let mut out = Vec::new();
        let has_face_model = self.models.values().any(|m| m.family == Family::Yunet);
        let blurred: Vec<&str> =
            self.cameras.iter().filter(|c| c.here && c.faces == FacePolicy::Blur).map(|c| c.id.as_str()).collect();
        if !has_face_model && !blurred.is_empty() {
            let shown = blurred.iter().take(5).copied().collect::<Vec<_>>().join(", ");
            let more = if blurred.len() > 5 { format!(" and {} more", blurred.len() - 5) } else { String::new() };
            out.push(format!(
                "no face model (family yunet): the pictures this node publishes of cameras with faces = \"blur\" \
                 ({shown}{more}) are not searched for faces; only the heads of the people the object model finds \
                 are pixelated, and a face it misses is published. Add [models.faces] file = \"yunet_s_dynamic.onnx\" \
                 (a camera without `models` runs every model on its frames; `models = [\"objects\"]` keeps the face \
                 model to published pictures)"
            ));
        }
        out
    }
}

/// A rule's severity is the alert's: one type, in the contract.
pub use gridsight_contract::Severity;
