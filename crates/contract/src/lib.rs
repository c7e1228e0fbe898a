//! gridsight's contract: what crosses a process over MQTT, as types shared by producer and
//! consumer, the one place topics are built, and the one place time is written
//! ([`time`]). A leaf crate (serde only): the node, the dispatcher and any app build and
//! read every payload through these types.
//!
//! Every payload carries `schema` and `version`; a consumer refuses a payload whose schema,
//! version, field types or enum values it does not know (an unknown state is an error, not
//! a default). The book's MQTT contract page (docs/src/reference/mqtt.md) shows one example of each, and a test parses them with these types.

use serde::{Deserialize, Serialize};

pub mod time;

/// Every topic of the contract, from the prefix (`mqtt.topic_prefix`, default `gridsight`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.trim_end_matches('/').to_string() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>/<node>/availability`: retained `online`/`offline`, the node's Last Will.
    pub fn availability(&self, node: &str) -> String {
        format!("{}/{node}/availability", self.prefix)
    }

    pub fn alerts(&self, node: &str) -> String {
        format!("{}/{node}/alerts", self.prefix)
    }

    /// Every node's alerts (the district dispatcher subscribes to this).
    pub fn all_alerts(&self) -> String {
        format!("{}/+/alerts", self.prefix)
    }

    pub fn snapshot(&self, node: &str, alert: &str) -> String {
        format!("{}/{node}/snapshots/{alert}", self.prefix)
    }

    pub fn node_status(&self, node: &str) -> String {
        format!("{}/{node}/status", self.prefix)
    }

    pub fn camera_status(&self, node: &str, camera: &str) -> String {
        format!("{}/{node}/cameras/{camera}/status", self.prefix)
    }

    /// Says an alert's clip is ready (`gridsight.clip`).
    pub fn clip(&self, node: &str, alert: &str) -> String {
        format!("{}/{node}/clips/{alert}", self.prefix)
    }

    /// A camera's thumbnail (retained JPEG, 160 px wide, faces pixelated; every 30 s), for
    /// the district page.
    pub fn camera_thumbnail(&self, node: &str, camera: &str) -> String {
        format!("{}/{node}/cameras/{camera}/thumbnail", self.prefix)
    }

    /// A live snapshot a `snapshot` command asked for (JPEG, faces pixelated).
    pub fn camera_snapshot(&self, node: &str, camera: &str) -> String {
        format!("{}/{node}/cameras/{camera}/snapshot", self.prefix)
    }

    /// The audit of raw live views ([`LiveView`]).
    pub fn live_audit(&self, node: &str) -> String {
        format!("{}/{node}/audit/live", self.prefix)
    }

    pub fn commands(&self, node: &str) -> String {
        format!("{}/{node}/commands", self.prefix)
    }

    pub fn command_replies(&self, node: &str) -> String {
        format!("{}/{node}/commands/reply", self.prefix)
    }

    /// Residents' reports from apps' gateways (`<prefix>/dispatch/reports/in/<gateway>`).
    pub fn reports_in_filter(&self) -> String {
        format!("{}/dispatch/reports/in/+", self.prefix)
    }

    /// The gateway of a reports topic, if it is one.
    pub fn gateway_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic
            .strip_prefix(&self.prefix)?
            .strip_prefix("/dispatch/reports/in/")
            .filter(|s| !s.is_empty() && !s.contains('/'))
    }

    pub fn report_replies(&self, gateway: &str) -> String {
        format!("{}/dispatch/reports/replies/{gateway}", self.prefix)
    }

    /// Order events for everyone.
    pub fn orders(&self) -> String {
        format!("{}/dispatch/orders", self.prefix)
    }

    /// Where `sender` (an inspector id or `control_room`) sends order updates.
    pub fn updates(&self, sender: &str) -> String {
        format!("{}/dispatch/updates/{sender}", self.prefix)
    }

    pub fn updates_filter(&self) -> String {
        self.updates("+")
    }

    /// The sender of an update topic, if it is one.
    pub fn sender_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic
            .strip_prefix(&self.prefix)?
            .strip_prefix("/dispatch/updates/")
            .filter(|s| !s.is_empty() && !s.contains('/'))
    }

    pub fn replies(&self, sender: &str) -> String {
        format!("{}/dispatch/replies/{sender}", self.prefix)
    }

    pub fn control_room(&self) -> String {
        format!("{}/dispatch/control_room", self.prefix)
    }

    /// An inspector's default contact topic.
    pub fn inspector(&self, id: &str) -> String {
        format!("{}/dispatch/inspectors/{id}", self.prefix)
    }

    pub fn stats(&self) -> String {
        format!("{}/dispatch/stats", self.prefix)
    }

    /// The dispatcher's own availability (one per node id running it).
    pub fn dispatcher_availability(&self, node: &str) -> String {
        format!("{}/dispatch/{node}/availability", self.prefix)
    }

    /// An inspector app's availability (the `edge-node inspector` helper).
    pub fn inspector_availability(&self, id: &str) -> String {
        format!("{}/inspectors/{id}/availability", self.prefix)
    }
}

/// Which change of an incident an alert reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    New,
    Update,
    End,
}

impl AlertType {
    pub fn name(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Update => "update",
            Self::End => "end",
        }
    }
}

/// `gridsight.alert` version 1, on `<prefix>/<node>/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub schema: Schema<AlertSchema>,
    pub version: Version1,
    /// Unique and time-ordered: `<ms>-<run nonce>-<counter>`.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: AlertType,
    /// `<node>/<camera>/<rule>/<number>`: shared by the events of one incident.
    pub incident: String,
    pub node: String,
    pub camera: String,
    pub rule: String,
    pub category: String,
    pub severity: Severity,
    pub dispatch: bool,
    pub label: String,
    pub score: f64,
    pub track: Option<u64>,
    pub zone: Option<String>,
    pub count: Option<u32>,
    /// `[x1, y1, x2, y2]` in camera pixels.
    #[serde(rename = "box")]
    pub bbox: Option<[f64; 4]>,
    pub micro_grid: Option<String>,
    pub grid: Option<String>,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub ended_at: Option<String>,
    /// Topic of the snapshot JPEG, when one was stored.
    pub snapshot: Option<String>,
    /// Path of the event clip on the node's HTTP listener (`/clips/<id>.mp4`), for a `new`
    /// alert of a camera with clips; a `gridsight.clip` message says when it is ready. The
    /// `new` alerts of one camera and moment share one clip (the id of the first of them).
    #[serde(default)]
    pub clip: Option<String>,
    /// The camera's `[longitude, latitude]`, when the config gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<[f64; 2]>,
    /// `absence` rules: when somebody the rule watches was last seen in the zone (RFC 3339);
    /// absent when nobody was seen since the node started watching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

/// `gridsight.clip` version 1, on `<prefix>/<node>/clips/<alert id>`: the clip is ready.
/// One message per alert the clip shows, each with the same `url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipReady {
    pub schema: Schema<ClipSchema>,
    pub version: Version1,
    pub node: String,
    pub camera: String,
    pub alert: String,
    /// Path on the node's HTTP listener (shared by the alerts of one moment).
    pub url: String,
    pub privacy: ClipPrivacy,
    pub duration_s: f64,
    pub frames: u64,
    pub bytes: u64,
    pub at: String,
}

/// `gridsight.live_view` version 1, on `<prefix>/<node>/audit/live`: somebody watched a
/// camera's raw live video. Published when the view starts (no `ended_at`) and when it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveView {
    pub schema: Schema<LiveViewSchema>,
    pub version: Version1,
    /// Unique per node and view (the start and end messages share it).
    pub id: String,
    pub node: String,
    pub camera: String,
    /// The credential's name (`http.users_file`; `admin` for `http.token_file`, `local`
    /// without credentials).
    pub viewer: String,
    pub role: String,
    /// `mp4` (one long HTTP response) or `websocket`.
    pub transport: String,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    pub bytes: u64,
    /// Fragments skipped because the viewer fell behind.
    pub skipped: u64,
}

/// What a clip shows of faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipPrivacy {
    Blurred,
    Raw,
}

/// `gridsight.camera_status` version 1, retained on `<prefix>/<node>/cameras/<camera>/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraStatus {
    pub schema: Schema<CameraStatusSchema>,
    pub version: Version1,
    pub node: String,
    pub camera: String,
    pub state: CameraState,
    /// The state in words, with the reason and the retry delay.
    pub detail: String,
    pub fps_in: f64,
    pub fps_decoded: f64,
    pub fps_out: f64,
    pub decode: DecodeNow,
    /// Which frames the camera decodes and why (e.g. key frames while quiet, every frame
    /// while something moves, for a line-crossing rule).
    #[serde(default)]
    pub cadence: String,
    pub received: u64,
    pub decoded: u64,
    pub handed_on: u64,
    pub reconnects: u64,
    pub stalls: u64,
    pub last_error: Option<String>,
    pub at: String,
    /// Where the camera is and where it looks, when its config says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<CameraPlace>,
    /// The micro-grid it watches, when its config says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_grid: Option<String>,
    /// Of the latest confirmed tracks that ended, how many were seen at one look only;
    /// absent until one has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracks_seen_once: Option<TracksSeenOnce>,
}

/// Of the latest `of` confirmed tracks that ended on a camera (20 at most), `once` were
/// matched at one look only: visits about as short as the time between two of its looks, or
/// shorter, seen because a look fell in them; one a little shorter falls between two looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracksSeenOnce {
    pub once: u32,
    pub of: u32,
}

/// A camera on the map: `[longitude, latitude]`, and the way it faces (degrees clockwise
/// from north) with its field of view (degrees), when known.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CameraPlace {
    pub location: [f64; 2],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_of_view: Option<f64>,
}

/// Where a camera is in its life, as the status says it (the supervisor's own state adds
/// the reason and the retry delay, written in `detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    Connecting,
    Streaming,
    /// Frames stopped; reconnecting.
    Stalled,
    /// Lost (stream ended, connection dropped, timeout); reconnecting.
    Backoff,
    /// Refused (unauthorized, no such stream, unsupported codec); still retried.
    Failed,
}

impl CameraState {
    /// The name the status carries: `connecting`, `streaming`, `stalled`, `backoff`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Streaming => "streaming",
            Self::Stalled => "stalled",
            Self::Backoff => "backoff",
            Self::Failed => "failed",
        }
    }
}

/// What a camera's decoder is being fed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecodeNow {
    Keyframes,
    All,
}

/// `gridsight.node_status` version 1, retained on `<prefix>/<node>/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub schema: Schema<NodeStatusSchema>,
    pub version: Version1,
    pub node: String,
    pub name: String,
    pub cameras: usize,
    pub streaming: usize,
    pub outbox_pending: u64,
    pub outbox_dropped_snapshots: u64,
    pub disk: Option<DiskStatus>,
    /// This node's share of a district camera list (`[shard]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardStatus>,
    /// Where operators reach the node's pages and live video (`http.public_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    pub at: String,
}

/// Which shard a node is and which cameras it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardStatus {
    pub index: usize,
    pub count: usize,
    pub nodes: Vec<String>,
    /// The cameras this node owns (enabled ones), by id.
    pub cameras: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskStatus {
    pub state: DiskStateName,
    pub free_bytes: Option<u64>,
    pub reserve_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskStateName {
    Ok,
    Low,
    Full,
}

/// `gridsight.command_reply` version 1, on `<prefix>/<node>/commands/reply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandReply {
    pub schema: Schema<CommandReplySchema>,
    pub version: Version1,
    pub node: String,
    /// The request's `id`, when it had a usable one.
    pub id: Option<String>,
    pub command: Option<Command>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: String,
}

/// What happened to an order (`event` of `gridsight.order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEventKind {
    Created,
    Assigned,
    Reassigned,
    Accepted,
    OnSite,
    Resolved,
    Rejected,
    Escalated,
    Cancelled,
    AlertAttached,
    /// A resident rated the resolved work at or below `reports.reopen_at_most`.
    Reopened,
}

impl OrderEventKind {
    pub const ALL: [Self; 11] = [
        Self::Created,
        Self::Assigned,
        Self::Reassigned,
        Self::Accepted,
        Self::OnSite,
        Self::Resolved,
        Self::Rejected,
        Self::Escalated,
        Self::Cancelled,
        Self::AlertAttached,
        Self::Reopened,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Assigned => "assigned",
            Self::Reassigned => "reassigned",
            Self::Accepted => "accepted",
            Self::OnSite => "on_site",
            Self::Resolved => "resolved",
            Self::Rejected => "rejected",
            Self::Escalated => "escalated",
            Self::Cancelled => "cancelled",
            Self::AlertAttached => "alert_attached",
            Self::Reopened => "reopened",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    Assigned,
    Accepted,
    OnSite,
    Escalated,
    Resolved,
    Cancelled,
}

/// Which deadline an order's `deadline` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    Accept,
    Resolve,
}

/// `gridsight.order` version 1, on `<prefix>/dispatch/orders` and the contact topics of
/// the inspectors (or control room) it concerns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderEvent {
    pub schema: Schema<OrderSchema>,
    pub version: Version1,
    pub event: OrderEventKind,
    /// Who caused it (an inspector id, `control_room`), `None` for the dispatcher itself.
    pub by: Option<String>,
    pub detail: Option<String>,
    pub at: String,
    pub order: OrderView,
}

/// An order as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: String,
    pub state: OrderState,
    pub category: String,
    pub priority: String,
    pub severity: String,
    pub node: String,
    pub camera: String,
    pub rule: String,
    pub zone: Option<String>,
    pub micro_grid: Option<String>,
    pub grid: Option<String>,
    pub assignee: Option<String>,
    pub worker: Option<String>,
    pub escalation: u32,
    pub reassignments: u32,
    pub alerts: u32,
    pub first_alert: String,
    pub last_alert: String,
    pub label: String,
    pub score: f64,
    pub snapshot: Option<String>,
    pub created_at: String,
    pub assigned_at: Option<String>,
    pub accepted_at: Option<String>,
    pub on_site_at: Option<String>,
    pub resolved_at: Option<String>,
    pub closed_at: Option<String>,
    pub deadline: Option<String>,
    pub deadline_kind: Option<DeadlineKind>,
    pub cancel_reason: Option<String>,
    pub note: Option<String>,
    /// Where it is, `[longitude, latitude]`: the camera's, or the resident's report's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<[f64; 2]>,
}

/// `gridsight.order_reply` version 1, on `<prefix>/dispatch/replies/<sender>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderReply {
    pub schema: Schema<OrderReplySchema>,
    pub version: Version1,
    /// The update's `id`, when it had a usable one.
    pub update: Option<String>,
    pub order: Option<String>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub state: Option<OrderState>,
    /// A replayed update: the stored answer, nothing changed.
    pub duplicate: bool,
    pub at: String,
}

/// `gridsight.dispatch_stats` version 1, retained on `<prefix>/dispatch/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchStats {
    pub schema: Schema<DispatchStatsSchema>,
    pub version: Version1,
    pub window_s: u64,
    pub at: String,
    pub groups: Vec<StatsGroup>,
}

/// Statistics of one grid and category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsGroup {
    pub grid: String,
    pub category: String,
    pub created: u64,
    pub open: u64,
    pub resolved: u64,
    pub cancelled: u64,
    pub handled_rate: f64,
    pub accept_p50_s: Option<f64>,
    pub accept_p90_s: Option<f64>,
    pub resolve_p50_s: Option<f64>,
    pub resolve_p90_s: Option<f64>,
    pub escalations: u64,
    /// Residents' reports in the window, how many were rated, their mean rating, and the
    /// orders reopened after a low rating (absent from statistics of older dispatchers).
    #[serde(default)]
    pub reports: u64,
    #[serde(default)]
    pub rated: u64,
    #[serde(default)]
    pub rating_mean: Option<f64>,
    #[serde(default)]
    pub reopened: u64,
}

/// A schema name that (de)serialises as its one string and refuses any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Schema<S>(std::marker::PhantomData<S>);

pub trait SchemaName {
    const NAME: &'static str;
}

macro_rules! schema {
    ($ty:ident, $name:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $ty;
        impl SchemaName for $ty {
            const NAME: &'static str = $name;
        }
    };
}

schema!(AlertSchema, "gridsight.alert");
schema!(ClipSchema, "gridsight.clip");
schema!(CameraStatusSchema, "gridsight.camera_status");
schema!(NodeStatusSchema, "gridsight.node_status");
schema!(CommandReplySchema, "gridsight.command_reply");
schema!(OrderSchema, "gridsight.order");
schema!(OrderReplySchema, "gridsight.order_reply");
schema!(DispatchStatsSchema, "gridsight.dispatch_stats");
schema!(ReportStatusSchema, "gridsight.report_status");
schema!(ReportReplySchema, "gridsight.report_reply");
schema!(LiveViewSchema, "gridsight.live_view");

impl<S> Schema<S> {
    pub fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<S: SchemaName> Serialize for Schema<S> {
    fn serialize<Se: serde::Serializer>(&self, s: Se) -> Result<Se::Ok, Se::Error> {
        s.serialize_str(S::NAME)
    }
}

impl<'de, S: SchemaName> Deserialize<'de> for Schema<S> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let got = String::deserialize(d)?;
        if got == S::NAME {
            Ok(Self::new())
        } else {
            Err(serde::de::Error::custom(format!("schema is {got:?}, expected {:?}", S::NAME)))
        }
    }
}

/// The version number 1, refusing any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Version1;

impl Serialize for Version1 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(1)
    }
}

impl<'de> Deserialize<'de> for Version1 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            1 => Ok(Self),
            v => Err(serde::de::Error::custom(format!("version {v} is not known (this node reads version 1)"))),
        }
    }
}

/// How serious an alert is (a rule's `severity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// What a node command asks for (`<prefix>/<node>/commands`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Status,
    Reload,
    Ping,
    Snapshot,
}

impl Command {
    pub fn name(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Reload => "reload",
            Self::Ping => "ping",
            Self::Snapshot => "snapshot",
        }
    }
}

/// What an inspector's app (or the control room) asks of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderAction {
    Accept,
    Reject,
    Arrive,
    Resolve,
    Cancel,
    Assign,
}

impl OrderAction {
    pub fn name(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Reject => "reject",
            Self::Arrive => "arrive",
            Self::Resolve => "resolve",
            Self::Cancel => "cancel",
            Self::Assign => "assign",
        }
    }
}

/// A lifecycle update, on `<prefix>/dispatch/updates/<sender>`:
/// `{"id": "u-17", "order": "o-…", "action": "accept", "by": "insp-1", "note": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderUpdate {
    /// Unique per sender: a replayed update is answered again and changes nothing.
    pub id: String,
    pub order: String,
    pub action: OrderAction,
    /// The sender's id; must match the topic it came on.
    pub by: String,
    /// `reject` and `cancel` need one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `assign`: the inspector to give the order to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// `gridsight.report_status` version 1: a resident's report as its reporter sees it
/// (`GET /api/v1/reports/<id>`, and pushed by the residents' app).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportStatus {
    pub schema: Schema<ReportStatusSchema>,
    pub version: Version1,
    pub id: String,
    /// Always `resident`.
    pub source: String,
    pub category: String,
    pub text: String,
    pub location: ReportLocation,
    /// Path of the stored (pixelated) photo, when there is one.
    pub photo: Option<String>,
    /// Whether a voice note was kept.
    pub audio: bool,
    pub order: Option<String>,
    /// The order's state (`assigned` … `resolved`), or `not_dispatched`.
    pub state: String,
    /// Every step, oldest first; inspectors are not named.
    pub timeline: Vec<ReportStep>,
    /// The inspector's note when closing.
    pub note: Option<String>,
    pub rating: Option<u8>,
    pub rating_comment: Option<String>,
}

/// Where a report is: its point and the micro-grid (and grid) it fell in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportLocation {
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub micro_grid: Option<String>,
    pub grid: Option<String>,
}

/// One step of a report's timeline: `reported`, `assigned`, `accepted`, `on_site`,
/// `resolved` (with the note), `reopened`, `cancelled` (with why), …
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportStep {
    pub event: String,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `gridsight.report_reply` version 1, on `<prefix>/dispatch/reports/replies/<gateway>`:
/// the answer to a report an app's gateway published (`request` is its id). The HTTP API
/// answers a new report with the same fields (without `schema`, `version`, `request`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportReply {
    pub schema: Schema<ReportReplySchema>,
    pub version: Version1,
    pub request: Option<String>,
    pub ok: bool,
    /// The report's id and the reporter's token (the only time it is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// The report joined an open order of the same category nearby.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached: Option<bool>,
    /// What was not kept (`photo`, `audio`) because the disk is under its reserve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Refused for now (too many through this gateway): nothing was stored, send it again later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<bool>,
    /// The same request again: the stored answer, nothing new stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
}

/// Whether `id` can be a request or update id: 1 to 64 characters, none of them a
/// control character.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.chars().all(|c| !c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_camera_states_name_is_the_one_the_status_carries() {
        use CameraState::*;
        for s in [Connecting, Streaming, Stalled, Backoff, Failed] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    /// Every ```json example of the book's MQTT contract page parses as the type its `schema` names, and
    /// serialises back to the same JSON value.
    #[test]
    fn contract_page_examples_parse_and_round_trip() {
        let page = include_str!("../../../docs/src/reference/mqtt.md");
        let mut seen = std::collections::BTreeSet::new();
        for block in page.split("```json\n").skip(1) {
            let text = &block[..block.find("```").expect("closed block")];
            let v: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
            let schema = v["schema"].as_str().unwrap_or("").to_string();
            let back = match schema.as_str() {
                "gridsight.alert" => serde_json::to_value(serde_json::from_value::<Alert>(v.clone()).unwrap()),
                "gridsight.camera_status" => {
                    serde_json::to_value(serde_json::from_value::<CameraStatus>(v.clone()).unwrap())
                }
                "gridsight.node_status" => {
                    serde_json::to_value(serde_json::from_value::<NodeStatus>(v.clone()).unwrap())
                }
                "gridsight.command_reply" => {
                    serde_json::to_value(serde_json::from_value::<CommandReply>(v.clone()).unwrap())
                }
                "gridsight.order" => serde_json::to_value(serde_json::from_value::<OrderEvent>(v.clone()).unwrap()),
                "gridsight.order_reply" => {
                    serde_json::to_value(serde_json::from_value::<OrderReply>(v.clone()).unwrap())
                }
                "gridsight.dispatch_stats" => {
                    serde_json::to_value(serde_json::from_value::<DispatchStats>(v.clone()).unwrap())
                }
                "gridsight.clip" => serde_json::to_value(serde_json::from_value::<ClipReady>(v.clone()).unwrap()),
                "gridsight.report_status" => {
                    serde_json::to_value(serde_json::from_value::<ReportStatus>(v.clone()).unwrap())
                }
                "gridsight.report_reply" => {
                    serde_json::to_value(serde_json::from_value::<ReportReply>(v.clone()).unwrap())
                }
                "gridsight.live_view" => serde_json::to_value(serde_json::from_value::<LiveView>(v.clone()).unwrap()),
                // A request without a schema: an order update (a command is parsed in control's tests).
                "" if v.get("action").is_some() => {
                    let u: OrderUpdate = serde_json::from_value(v.clone()).unwrap();
                    serde_json::to_value(u)
                }
                "" => continue,
                other => panic!("the MQTT contract page shows a payload of unknown schema {other}"),
            }
            .unwrap();
            assert_eq!(back, v, "{schema} does not round-trip");
            seen.insert(schema);
        }
        for want in [
            "gridsight.alert",
            "gridsight.camera_status",
            "gridsight.node_status",
            "gridsight.command_reply",
            "gridsight.order",
            "gridsight.order_reply",
            "gridsight.dispatch_stats",
            "gridsight.clip",
            "gridsight.report_status",
            "gridsight.report_reply",
            "gridsight.live_view",
            "",
        ] {
            assert!(seen.contains(want), "the MQTT contract page has no {want} example");
        }
    }

    #[test]
    fn unknown_schema_version_and_states_are_refused() {
        let page = include_str!("../../../docs/src/reference/mqtt.md");
        let text = page.split("```json\n").nth(1).unwrap().split("```").next().unwrap();
        let good: serde_json::Value = serde_json::from_str(text).unwrap();
        for (field, bad) in [
            ("schema", serde_json::json!("gridsight.other")),
            ("version", serde_json::json!(2)),
            ("type", serde_json::json!("reopened")),
            ("severity", serde_json::json!("apocalyptic")),
            ("score", serde_json::json!("high")),
        ] {
            let mut v = good.clone();
            v[field] = bad;
            assert!(serde_json::from_value::<Alert>(v).is_err(), "{field} accepted");
        }
    }

    #[test]
    fn topics_come_from_the_prefix() {
        let t = Topics::new("site/");
        assert_eq!(t.alerts("n1"), "site/n1/alerts");
        assert_eq!(t.camera_status("n1", "c"), "site/n1/cameras/c/status");
        assert_eq!(t.sender_of("site/dispatch/updates/insp-1"), Some("insp-1"));
        assert_eq!(t.sender_of("gridsight/dispatch/updates/insp-1"), None);
        assert_eq!(t.sender_of("site/dispatch/updates/a/b"), None);
        assert_eq!(t.inspector_availability("i"), "site/inspectors/i/availability");
    }
}
