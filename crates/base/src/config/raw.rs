//! The config file as written: serde types that refuse unknown fields. Every field's doc
//! comment is the operator's manual for it; `deploy/edge-node.example.toml` shows them all.
//! Nothing here is checked beyond its TOML type: `validate` does the rest.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::model::{
    ClipPolicy, Coordinates, DecodeMode, Direction, EscalationStep, FacePolicy, HwDecode, LivePolicy, Priority,
    Provider, RtspClient, RuleKindName, Severity, Transport,
};

/// A point: `[x, y]` in the camera's `coordinates`.
pub type RawPoint = [f64; 2];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Config format version. Must be `1`.
    pub version: i64,
    pub node: RawNode,
    /// The MQTT broker. Leave the section out to run an embedded broker on 127.0.0.1
    /// (demo and single-box use).
    pub mqtt: Option<RawMqtt>,
    /// The embedded broker, used when there is no `[mqtt]` section.
    pub embedded_broker: Option<RawEmbeddedBroker>,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub http: RawHttp,
    /// Event clips: an MP4 around each alert.
    #[serde(default)]
    pub clips: RawClips,
    /// Detection models by name (`[models.objects]`, `[models.faces]`); cameras refer to these names.
    #[serde(default)]
    pub models: BTreeMap<String, RawModel>,
    #[serde(default)]
    pub inference: RawInference,
    /// Values every camera inherits unless it sets its own.
    #[serde(default)]
    pub defaults: RawDefaults,
    /// This node's share of a district camera list read by several nodes.
    pub shard: Option<RawShard>,
    #[serde(default)]
    pub cameras: Vec<RawCamera>,
    #[serde(default)]
    pub grid: RawGrid,
    #[serde(default)]
    pub dispatch: RawDispatch,
    /// Home Assistant MQTT discovery.
    #[serde(default)]
    pub home_assistant: RawHomeAssistant,
    /// Residents' reports (the dispatcher's intake API).
    #[serde(default)]
    pub reports: RawReports,
    /// The apps the dispatcher serves to the people who act (the inspectors' app).
    #[serde(default)]
    pub apps: RawApps,
}

/// `[apps]`: the inspectors' app at `/inspector/` of the dispatcher's listener (`edge-node
/// dispatch`, or `edge-node run` when it dispatches).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApps {
    /// File of the inspectors' credentials, one `<inspector id> <token>` per line (`#` starts
    /// a comment; tokens of at least 16 characters, e.g. `openssl rand -hex 16`, each
    /// inspector of `[grid]` at most once). The app is served when this is set; an inspector
    /// signs in with their token and sees only their own orders.
    pub inspector_tokens: Option<PathBuf>,
    /// The espeak-ng voice that reads new orders aloud (`/orders/<id>/voice`): `"en"`,
    /// `"cmn"` (Mandarin), or any name of `espeak-ng --voices`. Default: `"en"`.
    pub voice: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReports {
    /// Accept residents' reports at `/api/v1/reports` of the dispatcher's listener. Default: false.
    pub enabled: Option<bool>,
    /// The categories residents may report (snake_case), e.g. `["pothole", "litter"]`.
    pub categories: Option<Vec<String>>,
    /// Reports of one category this close (meters) and within `attach_for` join one open
    /// order. Default: 50.
    pub attach_within: Option<f64>,
    /// Default: `"2h"`.
    pub attach_for: Option<String>,
    /// A location in no micro-grid: `"refuse"` (default) or `"control_room"`.
    pub outside: Option<String>,
    /// Reports accepted per minute from one address. Default: 10.
    pub per_address: Option<u32>,
    /// Requests per minute with one reporter token. Default: 20.
    pub per_token: Option<u32>,
    /// Reports per minute through one app gateway on MQTT. Default: 600.
    pub per_gateway: Option<u32>,
    /// A rating (1-5) at or below this reopens the resolved order (1 to 4). Default: never.
    pub reopen_at_most: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHomeAssistant {
    /// Publish discovery configs (one device per camera, via the node's). Default: false.
    pub enabled: Option<bool>,
    /// Discovery topic prefix. Default: `"homeassistant"`.
    pub discovery_prefix: Option<String>,
    /// Home Assistant's birth topic: `online` there makes the node publish again.
    /// Default: `"<discovery_prefix>/status"`.
    pub birth_topic: Option<String>,
}

/// `[dispatch]`: the dispatcher that turns alerts into orders for inspectors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDispatch {
    /// Run the dispatcher inside `edge-node run` (a single box). Default: true when
    /// `[grid]` has inspectors. Set false when a district runs `edge-node dispatch`.
    pub enabled: Option<bool>,
    /// How often order statistics are published (retained) and refreshed. Default: `"60s"`.
    pub stats_interval: Option<String>,
    /// Closed orders older than this are deleted. Default: `"90d"`.
    pub retention: Option<String>,
    /// A new order goes to the nearest on-duty inspector of its grid who shares a position
    /// (the inspectors' app) and holds fewer open orders than this; 0 turns nearest
    /// assignment off. Orders without a place, or no such inspector: the fewest open orders
    /// first, round-robin on ties. Default: 3.
    pub nearest_max_open: Option<u32>,
    /// An inspector's shared position older than this is not used. Default: `"2m"`.
    pub position_max_age: Option<String>,
    /// Which alert categories create orders, and how they are handled. An alert whose
    /// category has no route (and no `"*"` route) creates no order. Default: one `"*"` route.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

/// `[[dispatch.routes]]`: how the orders of one alert category are handled.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Alert category (e.g. `illegal_parking`), or `"*"` for every category without a route of its own.
    pub category: String,
    /// `low`, `normal` (default), `high`, `urgent`.
    pub priority: Option<Priority>,
    /// The assignee must accept within this, or the order is reassigned / escalated. Default: `"10m"`.
    pub accept_within: Option<String>,
    /// Accepted orders must be resolved within this, or they are escalated. Default: `"2h"`.
    pub resolve_within: Option<String>,
    /// Reassignments to another on-duty inspector after an accept timeout, before escalating. Default: 1.
    pub reassign: Option<u32>,
    /// Escalation chain: `["leader", "control_room"]` (default), `["control_room"]`.
    pub escalate: Option<Vec<EscalationStep>>,
}

/// `[node]`: who this node is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// Unique id of this node in the district: lowercase letters, digits, `-` and `_`.
    /// Used in MQTT topics and the MQTT client id.
    pub id: String,
    /// Human name shown on dashboards. Default: the id.
    pub name: Option<String>,
    /// Time zone of weekly schedules (rules' active hours, inspectors' duty): an IANA name
    /// (`"Asia/Shanghai"`), `"UTC"` or a fixed offset (`"UTC+08:00"`). Default: the machine's.
    /// Changing it needs a restart.
    pub time_zone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// Broker host name or address.
    pub host: String,
    /// Broker port. Default: 1883, or 8883 with `tls = true`.
    pub port: Option<u16>,
    /// Connect with TLS. Default: false.
    #[serde(default)]
    pub tls: bool,
    /// PEM file with the CA that signed the broker's certificate. Default: the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `client_key_file`).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key for `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// User name for the broker.
    pub username: Option<String>,
    /// Password for the broker. Prefer `password_file`; never both.
    pub password: Option<String>,
    /// File holding the broker password (first line, surrounding whitespace trimmed).
    pub password_file: Option<PathBuf>,
    /// MQTT client id. Default: `gridsight-<node id>`; must be unique per broker.
    pub client_id: Option<String>,
    /// First topic level. Default: `gridsight`.
    pub topic_prefix: Option<String>,
    /// MQTT keep-alive. Default: `"30s"`.
    pub keep_alive: Option<String>,
    /// Publishes awaiting PUBACK at once. Default: 100.
    pub max_inflight: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmbeddedBroker {
    /// Loopback address the embedded broker listens on (no TLS, no authentication).
    /// Default: `"127.0.0.1:1883"`.
    pub listen: Option<String>,
}

/// `[storage]`: where the node keeps its state, and how much disk it may use.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// Folder for the outbox and dispatch databases. Default: `/var/lib/gridsight`.
    /// Relative paths in this file are relative to the file's own folder.
    pub data_dir: Option<PathBuf>,
    /// Folder holding the ONNX files and their `manifest.toml`. Default: `/usr/share/gridsight/models`.
    pub models_dir: Option<PathBuf>,
    /// Folder for alert snapshots. Default: `<data_dir>/snapshots`.
    pub snapshot_dir: Option<PathBuf>,
    /// Snapshots older than this are deleted. Default: `"7d"`.
    pub snapshot_max_age: Option<String>,
    /// Oldest snapshots are deleted beyond this total. Default: `"2GiB"`.
    pub snapshot_max_size: Option<String>,
    /// Outbox size limit; when full, oldest unsent snapshots go first, alerts never. Default: `"512MiB"`.
    /// Also bounded by the free space of `data_dir`'s filesystem less `disk_reserve`.
    pub outbox_max_size: Option<String>,
    /// Free space on `data_dir`'s filesystem kept for alerts and orders: an optional write
    /// (snapshot, event clip, thumbnail, resident's photo or audio) happens only above it,
    /// after the oldest optional files and unsent snapshots are deleted to make room; below
    /// it the node reports "disk low" and alerts are still stored. Default: `"64MiB"`.
    pub disk_reserve: Option<String>,
}

/// `[http]`: the status page, snapshots, clips, health, status and metrics.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Address of `/metrics`, `/healthz`, `/readyz` and the status page. Default: `"127.0.0.1:9090"`.
    /// An address other than loopback needs `token_file`.
    pub listen: Option<String>,
    /// File whose first line is the access token (at least 16 characters): every request but
    /// `/healthz` and `/readyz` must then carry `Authorization: Bearer <token>` (or basic
    /// auth with the token as password). Required when `listen` is not a loopback address.
    pub token_file: Option<PathBuf>,
    /// File of named credentials with a role, one `<name> <role> <token>` per line (`#`
    /// starts a comment): `viewer` sees the pages and blurred media, `live` also raw live
    /// video, `admin` everything (the `token_file` token is an admin's). Each raw live view is
    /// recorded in the audit log under the name. Re-read on reload.
    pub users_file: Option<PathBuf>,
    /// How many cameras around an alert its view on the status page shows beside its own
    /// (the nearest by `location`, else those of its micro-grid), 0 to 12. Default: 4.
    pub nearby_cameras: Option<u32>,
    /// The address operators reach this node's pages at (e.g. `"https://edge-3.district.lan:9443"`),
    /// published in the node's status so the district page opens a camera's live video on its
    /// node. Default: none (the district shows pictures only).
    pub public_url: Option<String>,
}

/// `[models.<name>]`: one detection model (the YOLOX object or the YuNet face family).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// ONNX file in `storage.models_dir`; must be listed in its `manifest.toml`.
    pub file: String,
    /// Input `[width, height]` for files with a dynamic size (multiples of 32).
    /// Default: the size the file declares; dynamic files default to `[640, 384]`.
    pub input_size: Option<[u32; 2]>,
    /// Minimum score to keep a detection, 0–1. Default: 0.35 (yolox), 0.7 (yunet).
    pub score_threshold: Option<f64>,
    /// IoU above which overlapping boxes of one class are merged, 0–1. Default: 0.45 (yolox), 0.3 (yunet).
    pub nms_iou: Option<f64>,
    /// Keep only these class labels (e.g. `["person", "car"]`). Default: all.
    pub classes: Option<Vec<String>>,
    /// Label per class id, for a model trained on other classes. Default: the family's labels.
    pub labels: Option<Vec<String>>,
}

/// `[inference]`: the shared pool that runs the detection models for every camera.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInference {
    /// Execution provider: `cpu`, `cuda`, `tensorrt` or `openvino`. Default: `cpu`; a provider the
    /// library lacks falls back to CPU with a logged reason.
    pub provider: Option<Provider>,
    /// Inference worker threads, each with its own sessions. Default: 0 = one per core, at most 4.
    pub workers: Option<u32>,
    /// ONNX Runtime intra-op threads per worker. Default: 1.
    pub threads_per_worker: Option<u32>,
    /// Most frames batched across cameras into one run (1 for fixed-batch models). Default: 1.
    pub max_batch: Option<u32>,
    /// Longest a frame waits for a batch to fill. Default: `"10ms"`.
    pub max_wait: Option<String>,
    /// Frames a camera may have queued for inference; more are dropped and counted. Default: 2.
    pub queue_per_camera: Option<u32>,
}

/// Every field may also be set per camera.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// `tcp` (default) or `udp`.
    pub transport: Option<Transport>,
    /// `adaptive` (default: follows the rules), `keyframes`, `all` or `auto` (default when
    /// `detect_fps` is set: key frames while they are frequent enough for it, else all).
    pub decode: Option<DecodeMode>,
    /// Hardware decoder: `none` (default), `auto`, `vaapi`, `nvdec`.
    pub hw_decode: Option<HwDecode>,
    /// RTSP client: `retina` (default: least CPU; TCP, no rtsps) or `gstreamer`.
    pub rtsp_client: Option<RtspClient>,
    /// Frames per second handed to detection, > 0. Default: 1.0.
    pub detect_fps: Option<f64>,
    /// Names of `[models.*]` to run. Default: every model defined.
    pub models: Option<Vec<String>>,
    /// No frame for this long ⇒ the stream is torn down and reconnected. Default: `"10s"`.
    pub stall_timeout: Option<String>,
    /// Skip inference on frames without motion (and without live tracks). Default: true.
    pub motion_gate: Option<bool>,
    /// With the motion gate on, still run a full detection at least this often. Default: `"30s"`.
    pub full_detect_interval: Option<String>,
    /// `normalized` (default: 0–1 fractions of the frame) or `pixel`.
    pub coordinates: Option<Coordinates>,
    /// Faces in snapshots and event clips.
    pub privacy: Option<RawPrivacy>,
    /// Defaults for every rule.
    pub rules: Option<RawRuleDefaults>,
}

/// What pictures and clips that leave the node show of faces.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrivacy {
    /// Faces in snapshots: `blur` (default) or `raw`.
    pub faces: Option<FacePolicy>,
    /// Event clips: `blurred` (default: decoded, faces pixelated, re-encoded at `clips.fps`),
    /// `raw` (the camera's own stream, copied) or `off`.
    pub clips: Option<ClipPolicy>,
    /// Raw live video (`/cameras/<id>/live.mp4`, the live tiles of the status page and the
    /// wall) for credentials with the `live` right: `on` (default) or `off` (everyone gets
    /// the pixelated live picture instead).
    pub live: Option<LivePolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClips {
    /// Stream before the alert's frame. Default: `"5s"`.
    pub pre_capture: Option<String>,
    /// Stream after it. Default: `"5s"`.
    pub post_capture: Option<String>,
    /// Frames per second of a blurred clip (1-25). Default: 5.
    pub fps: Option<f64>,
    /// Clips older than this are deleted. Default: `"7d"`.
    pub max_age: Option<String>,
    /// Oldest clips are deleted beyond this total. Default: `"4GiB"`.
    pub max_size: Option<String>,
    /// Most encoded video a camera keeps for clips (its ring of access units). Default: `"4MiB"`.
    pub buffer_max: Option<String>,
    /// Folder of the clips. Default: `<data_dir>/clips`.
    pub dir: Option<PathBuf>,
}

/// Every field may also be set per rule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuleDefaults {
    /// `info`, `low`, `medium` (default), `high`, `critical`.
    pub severity: Option<Severity>,
    /// Minimum detection score for a rule to consider an object, 0–1. Default: 0.5.
    pub min_score: Option<f64>,
    /// After a rule fires for a track, the same rule and zone stay quiet this long. Default: `"60s"`.
    pub cooldown: Option<String>,
    /// Whether alerts of the rule create dispatch orders. Default: true.
    pub dispatch: Option<bool>,
}

/// `[shard]`: several nodes read one district file; each runs the cameras that rendezvous
/// hashing of the camera id gives it (or that are pinned to it with `node`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShard {
    /// Number of nodes sharing the camera list, ≥ 1.
    pub count: i64,
    /// This node's index, `0..count`. Or `index_env`.
    pub index: Option<i64>,
    /// Environment variable holding the index (on Kubernetes, the StatefulSet pod index
    /// through the downward API, label `apps.kubernetes.io/pod-index`).
    pub index_env: Option<String>,
    /// The nodes' ids by index. Default: `<node.id>-0`, `<node.id>-1`, … (a StatefulSet's pod
    /// names). This node's id becomes the entry at its index.
    pub nodes: Option<Vec<String>>,
}

/// `[[cameras]]`: one camera. Every field of `[defaults]` may be set here for this camera.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCamera {
    /// Unique camera id: lowercase letters, digits, `-` and `_` (used in MQTT topics).
    pub id: String,
    /// Human name. Default: the id.
    pub name: Option<String>,
    /// `rtsp://host[:port]/path` or `rtsps://...`. Credentials may be embedded
    /// (`rtsp://user:pass@host/...`) but `username` with `password_file` is better.
    pub url: String,
    /// RTSP user name.
    pub username: Option<String>,
    /// RTSP password; prefer `password_file`; never both.
    pub password: Option<String>,
    /// File holding the RTSP password.
    pub password_file: Option<PathBuf>,
    /// `false` keeps the camera in the file but does not connect. Default: true.
    pub enabled: Option<bool>,
    /// `[defaults]` `transport`, for this camera.
    pub transport: Option<Transport>,
    /// `[defaults]` `decode`, for this camera.
    pub decode: Option<DecodeMode>,
    /// `[defaults]` `hw_decode`, for this camera.
    pub hw_decode: Option<HwDecode>,
    /// `[defaults]` `rtsp_client`, for this camera.
    pub rtsp_client: Option<RtspClient>,
    /// `[defaults]` `detect_fps`, for this camera.
    pub detect_fps: Option<f64>,
    /// `[defaults]` `models`, for this camera.
    pub models: Option<Vec<String>>,
    /// Model input `[width, height]` for this camera (dynamic models only; multiples of 32),
    /// e.g. `[640, 384]` for a 16:9 camera.
    pub input_size: Option<[u32; 2]>,
    /// Micro-grid (from `[[grid.micro_grids]]`) the camera watches; alerts route to its grid.
    pub micro_grid: Option<String>,
    /// Where the camera is, `[longitude, latitude]` (WGS 84), e.g. `[121.4741, 31.2312]`.
    /// Alerts carry it, and the dispatcher gives their orders to the nearest on-duty
    /// inspector. Inside its micro-grid's `polygon` when that has one.
    pub location: Option<[f64; 2]>,
    /// The way the camera looks, degrees clockwise from north (0-360), for the map. Needs `location`.
    pub direction: Option<f64>,
    /// How wide it sees, degrees (1-360), for the map. Default with `direction`: 60.
    pub field_of_view: Option<f64>,
    /// Pin the camera to one node of the `[shard]` (its id) instead of hashing.
    pub node: Option<String>,
    /// `[defaults]` `stall_timeout`, for this camera.
    pub stall_timeout: Option<String>,
    /// `[defaults]` `motion_gate`, for this camera.
    pub motion_gate: Option<bool>,
    /// `[defaults]` `full_detect_interval`, for this camera.
    pub full_detect_interval: Option<String>,
    /// `[defaults]` `coordinates`, for this camera.
    pub coordinates: Option<Coordinates>,
    /// Named polygon zones: `[cameras.zones.loading_bay] polygon = [[x, y], ...]`.
    #[serde(default)]
    pub zones: BTreeMap<String, RawZone>,
    /// Named polylines: `[cameras.lines.gate] points = [[x, y], ...]`.
    #[serde(default)]
    pub lines: BTreeMap<String, RawLine>,
    /// The camera's violation rules.
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// `[defaults.privacy]`, for this camera.
    pub privacy: Option<RawPrivacy>,
}

/// A named zone of a camera.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    /// Corners in order around the area (at least 3, not crossing itself).
    pub polygon: Vec<RawPoint>,
}

/// A named line of a camera (for `line_cross` rules).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLine {
    /// At least 2 points. Direction (`left_to_right`) is as seen walking from first to last.
    pub points: Vec<RawPoint>,
}

/// `[[cameras.rules]]`: one violation rule of a camera.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Unique per camera.
    pub id: String,
    /// `zone_dwell`, `line_cross`, `crowd`, `zone_enter`, `face_in_zone`, `absence` (nobody
    /// of `classes` seen in the zone for `min_duration` within the `schedule`), `left_object`
    /// (something new stays in the zone for `min_duration`: goods, materials, rubbish, a bag;
    /// no class needed) or `removed_object` (something that was in the zone stays gone).
    pub kind: RuleKindName,
    /// Alert category, snake_case (e.g. `illegal_parking`, `loitering`, `intrusion`); dispatch routes by it.
    pub category: String,
    /// Zone name (all kinds but `line_cross`).
    pub zone: Option<String>,
    /// Line name (`line_cross` only).
    pub line: Option<String>,
    /// Object labels the rule watches (e.g. `["car", "truck"]`): any class of the camera's
    /// object models. Required except for `face_in_zone`, `left_object` and `removed_object`.
    pub classes: Option<Vec<String>>,
    /// `zone_dwell`, `crowd`: how long the condition must hold, e.g. `"5m"`; `absence`: how
    /// long nobody may be seen (of the schedule's active time), e.g. `"4h"`; `left_object`,
    /// `removed_object`: how long the change must stay, from when it appeared, at least 10 s
    /// (e.g. `"2m"`; the alert comes within one key-frame interval after).
    pub min_duration: Option<String>,
    /// `zone_dwell`: count only stationary objects (illegal parking). Default: false.
    pub stationary_only: Option<bool>,
    /// `line_cross`: `either` (default), `left_to_right`, `right_to_left`.
    pub direction: Option<Direction>,
    /// `crowd`: at least this many objects, ≥ 1.
    pub min_count: Option<u32>,
    /// `zone_enter`, `face_in_zone`, `absence`: active windows, e.g. `["mon-fri 22:00-06:00"]`.
    /// Default: always. An `absence` rule counts only active time, and checks once more when
    /// a window closes (`["daily 07:00-11:00"]` with `min_duration = "4h"`: nobody between 7 and 11).
    pub schedule: Option<Vec<String>>,
    /// `zone_enter`: the shortest visit the rule must catch, e.g. `"1s"` (a cyclist crossing
    /// the zone). Default: unset, the rule is served by key frames and catches what stays in
    /// the zone at least one key-frame interval (2 s on a typical camera). Set, the camera
    /// looks at least once per `shortest_visit`, quiet scene or not (a visit may start and
    /// end between two key frames of a still scene), decoding each GOP up to its last look:
    /// at `"1s"` and a 2 s GOP about half the frames, always; at 250 ms every frame
    /// (≈ 22 ms per camera-second at 360p in software). Looks at a quiet scene cost no
    /// detection (the motion gate).
    /// `line_cross`: the shortest time in view of something that crosses, that the rule must
    /// catch, e.g. `"2s"` (a runner across the view). Default: unset, a quiet camera sleeps
    /// on key frames and wakes at the first one that shows motion, so a crossing wholly
    /// between two key frames of a quiet scene is missed. Set, the camera looks at least
    /// twice per `shortest_visit`, quiet or not: with the line across the middle of the
    /// view, a look falls before the crossing, and the burst near the line follows it.
    pub shortest_visit: Option<String>,
    /// `left_object`, `removed_object`: the smallest change reported, as a share of the
    /// frame (0–1). Default: 0.002 (a 30×30 pixel patch of a 640×360 frame is 0.004).
    pub min_area: Option<f64>,
    /// `left_object`, `removed_object`: after this long a change is background (the incident
    /// ends, a thing left for good alerts once). Default: `"30m"`; longer than `min_duration`.
    pub absorb_after: Option<String>,
    /// `left_object`, `removed_object`: classes whose detection over a change explains it
    /// (a parked car is `zone_dwell`'s business, a person standing still is not rubbish).
    /// Default: `["person"]` where the camera's models know people, else none.
    pub ignore_classes: Option<Vec<String>>,
    /// `[defaults.rules]` `severity`, for this rule.
    pub severity: Option<Severity>,
    /// `[defaults.rules]` `min_score`, for this rule.
    pub min_score: Option<f64>,
    /// `[defaults.rules]` `cooldown`, for this rule.
    pub cooldown: Option<String>,
    /// `[defaults.rules]` `dispatch`, for this rule.
    pub dispatch: Option<bool>,
}

/// `[grid]`: the grid-management map: communities, grids, micro-grids and the inspectors
/// who work them. Alerts route to the grid of their camera's micro-grid.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrid {
    /// Residential communities.
    #[serde(default)]
    pub communities: Vec<RawCommunity>,
    /// Grid cells, each in a community.
    #[serde(default)]
    pub grids: Vec<RawGridCell>,
    /// Micro-grids, each in a grid.
    #[serde(default)]
    pub micro_grids: Vec<RawMicroGrid>,
    /// Inspectors, each working one grid.
    #[serde(default)]
    pub inspectors: Vec<RawInspector>,
}

/// A residential community (or district part) that grids belong to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommunity {
    /// Unique community id (referred to by the other tables and in alerts).
    pub id: String,
    /// Human name. Default: the id.
    pub name: Option<String>,
}

/// A grid cell: the unit inspectors are assigned to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGridCell {
    /// Unique grid id (referred to by the other tables and in alerts).
    pub id: String,
    /// Human name. Default: the id.
    pub name: Option<String>,
    /// Community id.
    pub community: String,
    /// Inspector id of the grid leader, first escalation step.
    pub leader: Option<String>,
}

/// A micro-grid: the smallest area; cameras and residents' reports are placed in one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMicroGrid {
    /// Unique micro-grid id (referred to by the other tables and in alerts).
    pub id: String,
    /// Human name. Default: the id.
    pub name: Option<String>,
    /// Grid id.
    pub grid: String,
    /// Its area on the map, `[[lon, lat], ...]` (WGS 84): residents' reports are placed in
    /// the micro-grid whose area holds their location.
    pub polygon: Option<Vec<[f64; 2]>>,
}

/// An inspector: who gets the orders of their grid while on duty.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInspector {
    /// Unique inspector id (referred to by the other tables and in alerts).
    pub id: String,
    /// Human name, shown to the control room.
    pub name: String,
    /// Grid id the inspector works in.
    pub grid: String,
    /// MQTT topic the inspector's app listens on. Default: `gridsight/dispatch/inspectors/<id>`.
    pub contact_topic: Option<String>,
    /// Weekly duty windows, e.g. `["mon-fri 08:00-18:00"]`. Default: always on duty.
    #[serde(default)]
    pub duty: Vec<String>,
}
