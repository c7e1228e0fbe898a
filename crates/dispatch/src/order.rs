//! Orders as stored, the updates inspectors send, and their JSON forms.

use rusqlite::{OptionalExtension, Row, Transaction, params};

/// Where an order is in its life. `created` is an event, not a resting state: a new order
/// is assigned or escalated in the same transaction that creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Assigned,
    Accepted,
    OnSite,
    Escalated,
    Resolved,
    Cancelled,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            Self::Assigned => "assigned",
            Self::Accepted => "accepted",
            Self::OnSite => "on_site",
            Self::Escalated => "escalated",
            Self::Resolved => "resolved",
            Self::Cancelled => "cancelled",
        }
    }

    /// A stored state; an unknown one is an error (a newer or damaged database), never a
    /// silent default.
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "assigned" => Self::Assigned,
            "accepted" => Self::Accepted,
            "on_site" => Self::OnSite,
            "escalated" => Self::Escalated,
            "resolved" => Self::Resolved,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// As published.
    pub fn contract(self) -> crate::contract::OrderState {
        use crate::contract::OrderState as S;
        match self {
            Self::Assigned => S::Assigned,
            Self::Accepted => S::Accepted,
            Self::OnSite => S::OnSite,
            Self::Escalated => S::Escalated,
            Self::Resolved => S::Resolved,
            Self::Cancelled => S::Cancelled,
        }
    }

    pub fn is_closed(self) -> bool {
        matches!(self, Self::Resolved | Self::Cancelled)
    }
}

/// What a stored deadline waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// The assignee (or escalation target) must accept by then.
    Accept,
    /// The order must be resolved by then.
    Resolve,
}

/// The escalation target that is not an inspector.
pub const CONTROL_ROOM: &str = "control_room";

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: String,
    /// `node/camera/rule/zone`: at most one open order per key.
    pub key: String,
    pub state: State,
    pub node: String,
    pub camera: String,
    pub rule: String,
    pub zone: Option<String>,
    pub category: String,
    pub severity: String,
    pub priority: String,
    pub micro_grid: Option<String>,
    pub grid: Option<String>,
    /// Who must act now: an inspector id or [`CONTROL_ROOM`].
    pub assignee: Option<String>,
    /// The inspector who accepted the work, if any.
    pub worker: Option<String>,
    /// Steps taken along the route's escalation chain.
    pub escalation: u32,
    pub escalations: u32,
    pub reassignments: u32,
    /// Inspectors who rejected it or let it time out: not asked again.
    pub excluded: Vec<String>,
    pub deadline_ms: Option<i64>,
    pub deadline: Option<Deadline>,
    pub alerts: u32,
    pub first_alert: String,
    pub last_alert: String,
    pub label: String,
    pub score: f64,
    pub snapshot: Option<String>,
    pub created_ms: i64,
    pub assigned_ms: Option<i64>,
    pub accepted_ms: Option<i64>,
    pub on_site_ms: Option<i64>,
    pub resolved_ms: Option<i64>,
    pub closed_ms: Option<i64>,
    pub cancel_reason: Option<String>,
    pub note: Option<String>,
    /// The event clip of its first alert, as the alert names it (`/clips/<id>.mp4` on the node).
    pub clip: Option<String>,
    /// `[longitude, latitude]`: the camera's, or the report's.
    pub location: Option<[f64; 2]>,
}

/// The dispatcher's tables, as upgrade steps (see `Outbox::upgrade_tables`); a new column
/// or table is a new step at the end, never an edit of an old one. Databases made before
/// versioning have step 1's tables already (`IF NOT EXISTS`).
pub const SCHEMA_STEPS: &[&str] = &[SCHEMA_1, super::reports::SCHEMA_2, SCHEMA_3, SCHEMA_4];

/// Step 4: photos of the work sent with an inspector's update (faces pixelated), one per
/// update id; the clip of an order's first alert; where the order is; the control room's
/// recorded voice messages.
const SCHEMA_4: &str = "
ALTER TABLE orders ADD COLUMN clip TEXT;
ALTER TABLE orders ADD COLUMN lon REAL;
ALTER TABLE orders ADD COLUMN lat REAL;
CREATE TABLE IF NOT EXISTS order_messages (
    order_id TEXT NOT NULL, seq INTEGER NOT NULL, by_who TEXT NOT NULL, audio BLOB NOT NULL,
    audio_type TEXT NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (order_id, seq)
);
CREATE TABLE IF NOT EXISTS order_photos (
    order_id TEXT NOT NULL, update_id TEXT NOT NULL, by_who TEXT NOT NULL, jpeg BLOB NOT NULL,
    at_ms INTEGER NOT NULL, PRIMARY KEY (order_id, update_id)
);
";

/// Step 3: every event of every order, as announced (an order made before this step has
/// none; its timeline comes from its timestamps).
const SCHEMA_3: &str = "
CREATE TABLE IF NOT EXISTS order_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL, event TEXT NOT NULL, by_who TEXT, detail TEXT, at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS order_events_order ON order_events(order_id, seq);
";

const SCHEMA_1: &str = "
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    node TEXT NOT NULL, camera TEXT NOT NULL, rule TEXT NOT NULL, zone TEXT,
    category TEXT NOT NULL, severity TEXT NOT NULL, priority TEXT NOT NULL,
    micro_grid TEXT, grid TEXT,
    assignee TEXT, worker TEXT,
    escalation INTEGER NOT NULL, escalations INTEGER NOT NULL, reassignments INTEGER NOT NULL,
    excluded TEXT NOT NULL,
    deadline_ms INTEGER, deadline TEXT,
    alerts INTEGER NOT NULL, first_alert TEXT NOT NULL, last_alert TEXT NOT NULL,
    label TEXT NOT NULL, score REAL NOT NULL, snapshot TEXT,
    created_ms INTEGER NOT NULL, assigned_ms INTEGER, accepted_ms INTEGER, on_site_ms INTEGER,
    resolved_ms INTEGER, closed_ms INTEGER,
    cancel_reason TEXT, note TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS orders_open_key ON orders(key) WHERE closed_ms IS NULL;
CREATE INDEX IF NOT EXISTS orders_deadline ON orders(deadline_ms) WHERE deadline_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_created ON orders(created_ms);
-- Open orders per person, for least-loaded assignment.
CREATE INDEX IF NOT EXISTS orders_open_assignee ON orders(assignee) WHERE closed_ms IS NULL;
CREATE INDEX IF NOT EXISTS orders_open_worker ON orders(worker) WHERE closed_ms IS NULL;
-- Alerts already turned into (or attached to) an order: a replayed alert changes nothing.
CREATE TABLE IF NOT EXISTS seen_alerts (id TEXT PRIMARY KEY, order_id TEXT, at_ms INTEGER NOT NULL);
-- Updates already answered, by sender and update id: a replayed update gets the same reply.
CREATE TABLE IF NOT EXISTS updates (
    sender TEXT NOT NULL, id TEXT NOT NULL, reply TEXT NOT NULL, at_ms INTEGER NOT NULL,
    PRIMARY KEY (sender, id)
);
-- Round-robin position per grid: the inspector assigned last.
CREATE TABLE IF NOT EXISTS cursors (grid TEXT PRIMARY KEY, last TEXT NOT NULL);
";

const COLUMNS: &str = "id, key, state, node, camera, rule, zone, category, severity, priority, micro_grid, grid, \
    assignee, worker, escalation, escalations, reassignments, excluded, deadline_ms, deadline, alerts, first_alert, \
    last_alert, label, score, snapshot, created_ms, assigned_ms, accepted_ms, on_site_ms, resolved_ms, closed_ms, \
    cancel_reason, note, clip, lon, lat";

/// One stored order event: (event, by, detail, at_ms).
pub type EventRow = (String, Option<String>, Option<String>, i64);

impl Order {
    /// A new order from its first alert (or report) `first`, before assignment: its id is
    /// `o-<first>`, the lifecycle fields are empty. The caller sets what it is about.
    pub fn new(key: String, first: &str, route: &crate::config::Route, now: i64) -> Self {
        Self {
            id: format!("o-{first}"),
            key,
            state: State::Assigned,
            node: String::new(),
            camera: String::new(),
            rule: String::new(),
            zone: None,
            category: String::new(),
            severity: String::new(),
            priority: route.priority.name().to_string(),
            micro_grid: None,
            grid: None,
            assignee: None,
            worker: None,
            escalation: 0,
            escalations: 0,
            reassignments: 0,
            excluded: Vec::new(),
            deadline_ms: None,
            deadline: None,
            alerts: 1,
            first_alert: first.to_string(),
            last_alert: first.to_string(),
            label: String::new(),
            score: 0.0,
            snapshot: None,
            created_ms: now,
            assigned_ms: None,
            accepted_ms: None,
            on_site_ms: None,
            resolved_ms: None,
            closed_ms: None,
            cancel_reason: None,
            note: None,
            clip: None,
            location: None,
        }
    }

    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        let excluded: String = r.get(17)?;
        let deadline: Option<String> = r.get(19)?;
        let unknown = |column: usize, what: &str, value: &str| {
            rusqlite::Error::FromSqlConversionFailure(
                column,
                rusqlite::types::Type::Text,
                format!("unknown stored order {what} {value:?}").into(),
            )
        };
        let state: String = r.get(2)?;
        let deadline = match deadline.as_deref() {
            None => None,
            Some("accept") => Some(Deadline::Accept),
            Some("resolve") => Some(Deadline::Resolve),
            Some(other) => return Err(unknown(19, "deadline", other)),
        };
        Ok(Self {
            id: r.get(0)?,
            key: r.get(1)?,
            state: State::parse(&state).ok_or_else(|| unknown(2, "state", &state))?,
            node: r.get(3)?,
            camera: r.get(4)?,
            rule: r.get(5)?,
            zone: r.get(6)?,
            category: r.get(7)?,
            severity: r.get(8)?,
            priority: r.get(9)?,
            micro_grid: r.get(10)?,
            grid: r.get(11)?,
            assignee: r.get(12)?,
            worker: r.get(13)?,
            escalation: r.get(14)?,
            escalations: r.get(15)?,
            reassignments: r.get(16)?,
            excluded: excluded.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            deadline_ms: r.get(18)?,
            deadline,
            alerts: r.get(20)?,
            first_alert: r.get(21)?,
            last_alert: r.get(22)?,
            label: r.get(23)?,
            score: r.get(24)?,
            snapshot: r.get(25)?,
            created_ms: r.get(26)?,
            assigned_ms: r.get(27)?,
            accepted_ms: r.get(28)?,
            on_site_ms: r.get(29)?,
            resolved_ms: r.get(30)?,
            closed_ms: r.get(31)?,
            cancel_reason: r.get(32)?,
            note: r.get(33)?,
            clip: r.get(34)?,
            location: match (r.get::<_, Option<f64>>(35)?, r.get::<_, Option<f64>>(36)?) {
                (Some(lon), Some(lat)) => Some([lon, lat]),
                _ => None,
            },
        })
    }

    pub fn load(tx: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<Self>> {
        tx.query_row(&format!("SELECT {COLUMNS} FROM orders WHERE id = ?1"), [id], Self::from_row).optional()
    }

    pub fn open_for_key(tx: &Transaction, key: &str) -> rusqlite::Result<Option<Self>> {
        tx.query_row(
            &format!("SELECT {COLUMNS} FROM orders WHERE key = ?1 AND closed_ms IS NULL"),
            [key],
            Self::from_row,
        )
        .optional()
    }

    /// Up to `limit` open orders whose deadline is at or before `now`, earliest first.
    pub fn due(tx: &Transaction, now: i64, limit: usize) -> rusqlite::Result<Vec<Self>> {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM orders WHERE deadline_ms IS NOT NULL AND deadline_ms <= ?1 AND closed_ms IS NULL ORDER BY deadline_ms, id LIMIT ?2"
        ))?;
        stmt.query_map(params![now, limit as i64], Self::from_row)?.collect()
    }

    /// The order's events as announced, oldest first: (event, by, detail, at_ms).
    pub fn events(conn: &rusqlite::Connection, id: &str) -> rusqlite::Result<Vec<EventRow>> {
        let mut stmt = conn
            .prepare_cached("SELECT event, by_who, detail, at_ms FROM order_events WHERE order_id = ?1 ORDER BY seq")?;
        stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect()
    }

    /// The open orders `who` must act on or works on, and those closed since `closed_since`.
    pub fn of(conn: &rusqlite::Connection, who: &str, closed_since: i64) -> rusqlite::Result<Vec<Self>> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM orders WHERE (assignee = ?1 OR worker = ?1) \
             AND (closed_ms IS NULL OR closed_ms >= ?2) ORDER BY created_ms DESC, id"
        ))?;
        stmt.query_map(params![who, closed_since], Self::from_row)?.collect()
    }

    pub fn all(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<Self>> {
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM orders ORDER BY created_ms, id"))?;
        stmt.query_map([], Self::from_row)?.collect()
    }

    pub fn save(&self, tx: &Transaction) -> rusqlite::Result<()> {
        let deadline = self.deadline.map(|d| if d == Deadline::Resolve { "resolve" } else { "accept" });
        tx.execute(
            &format!(
                "INSERT OR REPLACE INTO orders ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, \
                 ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37)"
            ),
            params![
                self.id,
                self.key,
                self.state.name(),
                self.node,
                self.camera,
                self.rule,
                self.zone,
                self.category,
                self.severity,
                self.priority,
                self.micro_grid,
                self.grid,
                self.assignee,
                self.worker,
                self.escalation,
                self.escalations,
                self.reassignments,
                self.excluded.join(","),
                self.deadline_ms,
                deadline,
                self.alerts,
                self.first_alert,
                self.last_alert,
                self.label,
                self.score,
                self.snapshot,
                self.created_ms,
                self.assigned_ms,
                self.accepted_ms,
                self.on_site_ms,
                self.resolved_ms,
                self.closed_ms,
                self.cancel_reason,
                self.note,
                self.clip,
                self.location.map(|l| l[0]),
                self.location.map(|l| l[1]),
            ],
        )?;
        Ok(())
    }

    /// Gives the order to `who`, who must accept within `accept_within`; returns the
    /// previous assignee.
    pub fn assign_to(&mut self, who: &str, now: i64, accept_within: std::time::Duration) -> Option<String> {
        self.state = State::Assigned;
        self.assigned_ms = Some(now);
        self.deadline_ms = Some(now + accept_within.as_millis() as i64);
        self.deadline = Some(Deadline::Accept);
        self.assignee.replace(who.to_string())
    }

    /// The order as published (`order` in `gridsight.order` events).
    pub fn view(&self) -> crate::contract::OrderView {
        let t = |ms: Option<i64>| ms.map(crate::contract::time::rfc3339_ms);
        crate::contract::OrderView {
            id: self.id.clone(),
            state: self.state.contract(),
            category: self.category.clone(),
            priority: self.priority.clone(),
            severity: self.severity.clone(),
            node: self.node.clone(),
            camera: self.camera.clone(),
            rule: self.rule.clone(),
            zone: self.zone.clone(),
            micro_grid: self.micro_grid.clone(),
            grid: self.grid.clone(),
            assignee: self.assignee.clone(),
            worker: self.worker.clone(),
            escalation: self.escalation,
            reassignments: self.reassignments,
            alerts: self.alerts,
            first_alert: self.first_alert.clone(),
            last_alert: self.last_alert.clone(),
            label: self.label.clone(),
            score: (self.score * 1000.0).round() / 1000.0,
            snapshot: self.snapshot.clone(),
            created_at: crate::contract::time::rfc3339_ms(self.created_ms),
            assigned_at: t(self.assigned_ms),
            accepted_at: t(self.accepted_ms),
            on_site_at: t(self.on_site_ms),
            resolved_at: t(self.resolved_ms),
            closed_at: t(self.closed_ms),
            deadline: t(self.deadline_ms),
            deadline_kind: self.deadline.map(|d| match d {
                Deadline::Accept => crate::contract::DeadlineKind::Accept,
                Deadline::Resolve => crate::contract::DeadlineKind::Resolve,
            }),
            cancel_reason: self.cancel_reason.clone(),
            note: self.note.clone(),
            location: self.location,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.view()).unwrap_or_default()
    }
}

/// The update payload and its action: one type each, in the contract.
pub use gridsight_contract::{OrderAction as Action, OrderUpdate as Update};

/// Parses an update, refusing anything but the documented object with sane sizes.
pub fn parse_update(payload: &[u8]) -> Result<Update, (Option<String>, String)> {
    let text = std::str::from_utf8(payload).map_err(|_| (None, "payload is not UTF-8 JSON".to_string()))?;
    if !text.trim_start().starts_with('{') {
        return Err((None, "not a JSON object".into()));
    }
    let u: Update = serde_json::from_str(text).map_err(|e| {
        let id = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("id")?.as_str().map(str::to_string))
            .filter(|id| short(id, 64));
        (id, format!("not a valid update: {e}"))
    })?;
    let id = Some(u.id.clone()).filter(|id| short(id, 64));
    if !short(&u.id, 64) || !short(&u.order, 200) || !short(&u.by, 64) {
        return Err((id, "id, order and by must be 1-64 (order 1-200) printable characters".into()));
    }
    // Limited in bytes, so that every order event stays under 4 KiB whatever the text.
    let text_ok = |s: &String| s.len() <= 300 && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    if ![&u.reason, &u.note].into_iter().flatten().all(text_ok) {
        return Err((id, "reason and note are limited to 300 bytes of text (no control characters)".into()));
    }
    Ok(u)
}

fn short(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.chars().count()) && !s.chars().any(char::is_control)
}
