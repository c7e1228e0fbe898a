//! gridsight-dispatch: alerts become orders for the inspectors on duty in the camera's grid, and every
//! order is followed until it is closed.
//!
//! Input: alert events (`gridsight.alert` JSON, from the broker), lifecycle updates from
//! inspectors' apps and the control room, and the clock. Output: order events through the
//! outbox. All state (orders, stored deadlines, alerts and updates already handled, the
//! round-robin position) lives in SQLite next to the outbox, and every change commits in one
//! transaction with the messages announcing it, so a crash or power cut never leaves an order
//! changed but unannounced, or announced but unchanged.
//!
//! Lifecycle: `created → assigned → accepted → on_site → resolved`; `rejected` sends it back
//! to assignment; `escalated` hands it to the grid leader, then the control room; `cancelled`
//! closes it as a false alarm with a reason. One open order per camera + rule + zone: later
//! alerts attach to it. Order ids derive from the first alert's id, and alert ids already
//! handled are remembered, so a replayed alert or a restart never makes a second order.
//! Timers are stored deadlines checked by [`Dispatcher::tick`]; nothing sleeps.
//!
//! The core is a function of its inputs and `now` (milliseconds since the epoch): tests drive
//! it with a paused clock.

pub mod apps;
pub mod fleet;
pub mod inspector;
pub mod intake;
pub mod order;
pub mod page;
pub mod problems;
pub mod reports;
pub mod service;
pub mod stats;
#[cfg(test)]
mod tests;

// The shared base under the names the node's modules use (`crate::config`, …).
use gridsight_base::{Locked, RwLocked, clock, config, geometry, http, localtime, mqtt, outbox, telemetry};
use gridsight_contract as contract;
use std::sync::{Arc, Mutex};

use rusqlite::{OptionalExtension, Transaction, params};
use tracing::info;

use crate::config::{Dispatch, EscalationStep, Grid, Route};
use crate::localtime::LocalTime;
use crate::outbox::{Kind, Message, Outbox, OutboxError};
pub use order::{Action, CONTROL_ROOM, Deadline, Order, State, Update};

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] OutboxError),
    #[error("dispatch store: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// What became of an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertOutcome {
    Created(String),
    Attached(String),
    /// Seen before (a replay): nothing changed.
    Duplicate,
    /// Not for dispatch: the rule says so, no route for the category, or an `update`/`end`
    /// of an incident without an open order.
    Ignored(String),
    /// Not a usable alert.
    Refused(String),
}

/// The answer to an update, as published on the sender's reply topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub ok: bool,
    pub update: Option<String>,
    pub order: Option<String>,
    pub detail: String,
    pub state: Option<crate::contract::OrderState>,
    pub duplicate: bool,
}

impl Reply {
    fn refused(update: Option<String>, order: Option<String>, reason: impl Into<String>) -> Self {
        Self { ok: false, update, order, detail: reason.into(), state: None, duplicate: false }
    }

    pub fn to_json(&self, at_ms: i64) -> serde_json::Value {
        let reply = crate::contract::OrderReply {
            schema: crate::contract::Schema::new(),
            version: crate::contract::Version1,
            update: self.update.clone(),
            order: self.order.clone(),
            ok: self.ok,
            detail: self.ok.then(|| self.detail.clone()),
            reason: (!self.ok).then(|| self.detail.clone()),
            state: self.state,
            duplicate: self.duplicate,
            at: crate::contract::time::rfc3339_ms(at_ms),
        };
        serde_json::to_value(&reply).unwrap_or_default()
    }
}

/// Local calendar of a time, for duty schedules.
pub type Calendar = Arc<dyn Fn(i64) -> LocalTime + Send + Sync>;

pub struct Dispatcher {
    store: Arc<Mutex<Outbox>>,
    grid: Grid,
    config: Dispatch,
    topics: crate::contract::Topics,
    calendar: Calendar,
    /// Counts committed changes: the apps' event streams wait on it instead of polling.
    changes: tokio::sync::watch::Sender<u64>,
    /// The latest position each on-duty inspector's app shared (memory only: a restart
    /// forgets them, and the apps send them again within a minute).
    positions: Mutex<std::collections::HashMap<String, Position>>,
    /// What time it is for the service around the core, the apps and the pages (the core's
    /// own methods take `now`).
    clock: Arc<dyn clock::Clock>,
}

/// Where an inspector's phone was: `[longitude, latitude]`, accuracy in meters, when (ms).
#[derive(Debug, Clone, Copy)]
pub struct Position {
    pub location: [f64; 2],
    pub accuracy_m: f64,
    pub at_ms: i64,
}

impl Dispatcher {
    /// Uses (and creates when missing) the dispatch tables in `store`'s database.
    pub fn new(
        store: Arc<Mutex<Outbox>>,
        grid: Grid,
        config: Dispatch,
        prefix: &str,
        calendar: Calendar,
    ) -> Result<Self, DispatchError> {
        store.locked().upgrade_tables("dispatch", order::SCHEMA_STEPS)?;
        let changes = tokio::sync::watch::Sender::new(0);
        Ok(Self {
            store,
            grid,
            config,
            topics: crate::contract::Topics::new(prefix),
            calendar,
            changes,
            positions: Mutex::default(),
            clock: clock::system(),
        })
    }

    /// The same dispatcher going by `clock` (tests pass a paused one).
    pub fn with_clock(mut self, clock: Arc<dyn clock::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Now, in milliseconds since the epoch, by the dispatcher's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.unix_ms()
    }

    /// The dispatcher's clock.
    pub fn clock(&self) -> &Arc<dyn clock::Clock> {
        &self.clock
    }

    /// Keeps the latest position of an on-duty inspector (`Some`), or forgets it when they
    /// go off duty (`None`).
    pub fn set_position(&self, who: &str, position: Option<Position>) {
        let mut all = self.positions.locked();
        match position {
            Some(p) => {
                all.insert(who.to_string(), p);
            }
            None => {
                all.remove(who);
            }
        }
    }

    /// Every inspector's recent position (for the control room's map).
    pub fn positions(&self, now: i64) -> Vec<(String, Position)> {
        let max_age = self.config.position_max_age.as_millis() as i64;
        let mut all: Vec<_> = self
            .positions
            .locked()
            .iter()
            .filter(|(_, p)| now - p.at_ms <= max_age)
            .map(|(who, p)| (who.clone(), *p))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// An inspector's position if it is recent enough to assign by.
    pub fn position_of(&self, who: &str, now: i64) -> Option<Position> {
        let max_age = self.config.position_max_age.as_millis() as i64;
        self.positions.locked().get(who).copied().filter(|p| now - p.at_ms <= max_age)
    }

    /// Wakes when a change is committed (an order created, updated, escalated; a report).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// One transaction of the store, then the watchers are woken.
    pub(crate) fn commit<T, E: From<OutboxError>>(
        &self,
        f: impl FnOnce(&Transaction, &mut Vec<Message>) -> Result<T, E>,
    ) -> Result<T, E> {
        let out = self.store.locked().transaction(f);
        if out.is_ok() {
            self.changes.send_modify(|n| *n += 1);
        }
        out
    }

    pub fn store(&self) -> &Arc<Mutex<Outbox>> {
        &self.store
    }

    pub fn topics(&self) -> &crate::contract::Topics {
        &self.topics
    }

    pub fn orders_topic(&self) -> String {
        self.topics.orders()
    }

    pub fn updates_filter(&self) -> String {
        self.topics.updates_filter()
    }

    /// The sender of an update topic (`<prefix>/dispatch/updates/<sender>`).
    pub fn sender_of<'t>(&self, topic: &'t str) -> Option<&'t str> {
        self.topics.sender_of(topic)
    }

    pub fn reply_topic(&self, sender: &str) -> String {
        self.topics.replies(sender)
    }

    /// Where an inspector (or the control room) hears about orders given to them.
    pub fn contact_topic(&self, who: &str) -> String {
        match self.grid.inspectors.iter().find(|i| i.id == who).and_then(|i| i.contact_topic.clone()) {
            Some(t) => t,
            None if who == CONTROL_ROOM => self.topics.control_room(),
            None => self.topics.inspector(who),
        }
    }

    /// The route of a stored order's category (the default one if the configuration no
    /// longer has it).
    fn route_of(&self, category: &str) -> Route {
        self.config.route(category).cloned().unwrap_or_else(|| Route::default_for(category))
    }

    /// One alert event (`gridsight.alert` JSON).
    pub fn handle_alert(&self, payload: &[u8], now: i64) -> Result<AlertOutcome, DispatchError> {
        let alert = match AlertIn::parse(payload) {
            Ok(a) => a,
            Err(reason) => return Ok(AlertOutcome::Refused(reason)),
        };
        self.commit(|tx, out| {
            let seen: Option<i64> =
                tx.query_row("SELECT 1 FROM seen_alerts WHERE id = ?1", [&alert.id], |r| r.get(0)).optional()?;
            if seen.is_some() {
                return Ok(AlertOutcome::Duplicate);
            }
            let outcome = self.apply_alert(tx, out, &alert, now)?;
            let order = match &outcome {
                AlertOutcome::Created(o) | AlertOutcome::Attached(o) => Some(o.clone()),
                _ => None,
            };
            tx.execute(
                "INSERT INTO seen_alerts (id, order_id, at_ms) VALUES (?1, ?2, ?3)",
                params![alert.id, order, now],
            )?;
            Ok::<_, DispatchError>(outcome)
        })
    }

    fn apply_alert(
        &self,
        tx: &Transaction,
        out: &mut Vec<Message>,
        a: &AlertIn,
        now: i64,
    ) -> Result<AlertOutcome, DispatchError> {
        let key = format!("{}/{}/{}/{}", a.node, a.camera, a.rule, a.zone.as_deref().unwrap_or("-"));
        if let Some(mut o) = Order::open_for_key(tx, &key)? {
            o.alerts += 1;
            o.last_alert = a.id.clone();
            if a.score > o.score {
                o.score = a.score;
                o.label = a.label.clone();
                if a.snapshot.is_some() {
                    o.snapshot = a.snapshot.clone();
                }
            }
            o.save(tx)?;
            self.announce(
                tx,
                out,
                &o,
                "alert_attached",
                None,
                Some(&format!("alert {} ({})", a.id, a.kind)),
                now,
                &[],
            )?;
            return Ok(AlertOutcome::Attached(o.id));
        }
        if !a.dispatch {
            return Ok(AlertOutcome::Ignored(format!("rule {} does not create orders", a.rule)));
        }
        if a.kind != "new" {
            return Ok(AlertOutcome::Ignored(format!("{} of an incident without an open order", a.kind)));
        }
        let Some(route) = self.config.route(&a.category) else {
            return Ok(AlertOutcome::Ignored(format!("no dispatch route for category {}", a.category)));
        };
        let mut o = Order {
            node: a.node.clone(),
            camera: a.camera.clone(),
            rule: a.rule.clone(),
            zone: a.zone.clone(),
            category: a.category.clone(),
            severity: a.severity.clone(),
            micro_grid: a.micro_grid.clone(),
            grid: a.grid.clone().filter(|g| self.grid.grids.iter().any(|c| &c.id == g)),
            label: a.label.clone(),
            score: a.score,
            snapshot: a.snapshot.clone(),
            clip: a.clip.clone(),
            location: a.location,
            ..Order::new(key, &a.id, route, now)
        };
        self.announce(tx, out, &o, "created", None, None, now, &[])?;
        info!(order = %o.id, camera = %o.camera, category = %o.category, grid = o.grid.as_deref().unwrap_or("-"), "order created");
        self.assign_or_escalate(tx, out, &mut o, route, now, "created")?;
        o.save(tx)?;
        Ok(AlertOutcome::Created(o.id))
    }

    /// Gives the order to the best on-duty inspector of its grid, or escalates when nobody is.
    fn assign_or_escalate(
        &self,
        tx: &Transaction,
        out: &mut Vec<Message>,
        o: &mut Order,
        route: &Route,
        now: i64,
        why: &str,
    ) -> Result<(), DispatchError> {
        match self.pick_inspector(tx, o, now)? {
            Some((who, nearest)) => {
                let event = if why == "created" { "assigned" } else { "reassigned" };
                let why = match nearest {
                    Some(m) if why == "created" => format!("nearest, {m:.0} m"),
                    Some(m) => format!("{why}; nearest, {m:.0} m"),
                    None => why.to_string(),
                };
                let why = why.as_str();
                let previous = o.assign_to(&who, now, route.accept_within);
                if let Some(g) = &o.grid {
                    tx.execute("INSERT OR REPLACE INTO cursors (grid, last) VALUES (?1, ?2)", params![g, who])?;
                }
                info!(order = %o.id, inspector = %who, reason = why, "order {event}");
                let mut notify = vec![who.clone()];
                notify.extend(previous.filter(|p| *p != who));
                self.announce(tx, out, o, event, None, Some(why), now, &notify)?;
                Ok(())
            }
            None => self.escalate(tx, out, o, route, now, &format!("{why}; no inspector of the grid is on duty")),
        }
    }

    /// The inspector for an order, and how far they are when chosen as the nearest: among the
    /// on-duty inspectors of the order's grid not excluded, the nearest with a recent position
    /// and fewer than `nearest_max_open` open orders when the order has a place; otherwise
    /// the one with the fewest open orders, ties round-robin after the last one assigned in
    /// that grid.
    fn pick_inspector(
        &self,
        tx: &Transaction,
        o: &Order,
        now: i64,
    ) -> Result<Option<(String, Option<f64>)>, DispatchError> {
        let Some(grid) = &o.grid else { return Ok(None) };
        let local = (self.calendar)(now);
        let candidates: Vec<&str> = self
            .grid
            .inspectors
            .iter()
            .filter(|i| &i.grid == grid && i.duty.is_active(local.weekday, local.minute))
            .filter(|i| !o.excluded.contains(&i.id))
            .map(|i| i.id.as_str())
            .collect();
        if candidates.is_empty() {
            return Ok(None);
        }
        let mut load = Vec::with_capacity(candidates.len());
        for c in &candidates {
            let n: i64 = tx.query_row(
                "SELECT COUNT(*) FROM orders WHERE closed_ms IS NULL AND (assignee = ?1 OR worker = ?1) AND id != ?2",
                params![c, o.id],
                |r| r.get(0),
            )?;
            load.push(n);
        }
        if let Some([lon, lat]) = o.location
            && self.config.nearest_max_open > 0
        {
            let nearest = candidates
                .iter()
                .zip(&load)
                .filter(|(_, n)| **n < i64::from(self.config.nearest_max_open))
                .filter_map(|(c, _)| {
                    let p = self.position_of(c, now)?;
                    Some((*c, reports::meters((lat, lon), (p.location[1], p.location[0]))))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((who, m)) = nearest {
                return Ok(Some((who.to_string(), Some(m))));
            }
        }
        let least = *load.iter().min().unwrap_or(&0);
        let tied: Vec<&str> = candidates.iter().zip(&load).filter(|(_, n)| **n == least).map(|(c, _)| *c).collect();
        let last: Option<String> =
            tx.query_row("SELECT last FROM cursors WHERE grid = ?1", [grid], |r| r.get(0)).optional()?;
        let order_of = |id: &str| self.grid.inspectors.iter().position(|i| i.id == id).unwrap_or(0);
        let after = last.as_deref().map_or(-1, |l| order_of(l) as i64);
        let next = tied.iter().find(|c| order_of(c) as i64 > after).or_else(|| tied.first());
        Ok(next.map(|s| (s.to_string(), None)))
    }

    /// Moves the order one step up its route's escalation chain (a missing grid leader is
    /// skipped). At the end of the chain it stays with the last target, without a deadline.
    fn escalate(
        &self,
        tx: &Transaction,
        out: &mut Vec<Message>,
        o: &mut Order,
        route: &Route,
        now: i64,
        why: &str,
    ) -> Result<(), DispatchError> {
        let leader = o.grid.as_ref().and_then(|g| self.grid.grids.iter().find(|c| &c.id == g)?.leader.clone());
        let previous = o.assignee.clone();
        loop {
            let Some(step) = route.escalate.get(o.escalation as usize).copied() else {
                // End of the chain: it stays where it is, without a deadline (someone must
                // hold it: the control room when nobody does).
                if o.assignee.is_none() || o.state == State::Assigned {
                    o.assignee = Some(CONTROL_ROOM.into());
                }
                o.deadline_ms = None;
                o.deadline = None;
                break;
            };
            o.escalation += 1;
            match step {
                EscalationStep::Leader => {
                    let Some(l) = leader.clone().filter(|l| !o.excluded.contains(l) && o.worker.as_ref() != Some(l))
                    else {
                        continue;
                    };
                    o.assignee = Some(l);
                    o.deadline_ms = Some(now + route.accept_within.as_millis() as i64);
                    o.deadline = Some(Deadline::Accept);
                }
                EscalationStep::ControlRoom => {
                    o.assignee = Some(CONTROL_ROOM.into());
                    o.deadline_ms = None;
                    o.deadline = None;
                }
            }
            break;
        }
        o.state = State::Escalated;
        o.escalations += 1;
        let to = o.assignee.clone().unwrap_or_default();
        info!(order = %o.id, to = %to, reason = why, "order escalated");
        let mut notify = vec![to];
        notify.extend(previous);
        notify.extend(o.worker.clone());
        self.announce(tx, out, o, "escalated", None, Some(why), now, &notify)?;
        Ok(())
    }

    /// Adds the order event to `out`: on the orders topic, and on the contact topic of each
    /// of `notify` (deduplicated).
    #[allow(clippy::too_many_arguments)]
    fn announce(
        &self,
        tx: &Transaction,
        out: &mut Vec<Message>,
        o: &Order,
        event: &str,
        by: Option<&str>,
        detail: Option<&str>,
        now: i64,
        notify: &[String],
    ) -> rusqlite::Result<()> {
        let Some(kind) = crate::contract::OrderEventKind::from_name(event) else {
            tracing::error!(order = %o.id, event, "not an order event of the contract; not announced");
            return Ok(());
        };
        // The order's history (the reporter's timeline, the control room), in the same
        // transaction as the change it records.
        tx.execute(
            "INSERT INTO order_events (order_id, event, by_who, detail, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![o.id, event, by, detail, now],
        )?;
        let v = crate::contract::OrderEvent {
            schema: crate::contract::Schema::new(),
            version: crate::contract::Version1,
            event: kind,
            by: by.map(str::to_string),
            detail: detail.map(str::to_string),
            at: crate::contract::time::rfc3339_ms(now),
            order: o.view(),
        };
        let payload = serde_json::to_vec(&v).unwrap_or_default();
        out.push(Message { topic: self.orders_topic(), payload: payload.clone(), retain: false, kind: Kind::Order });
        let mut sent: Vec<&str> = Vec::new();
        for who in notify {
            if who.is_empty() || sent.contains(&who.as_str()) {
                continue;
            }
            sent.push(who);
            out.push(Message {
                topic: self.contact_topic(who),
                payload: payload.clone(),
                retain: false,
                kind: Kind::Order,
            });
        }
        Ok(())
    }

    /// One update from `sender` (the last level of the topic it came on). The reply is
    /// stored with the update's id, so a replay gets the same answer and changes nothing.
    pub fn handle_update(&self, sender: &str, payload: &[u8], now: i64) -> Result<Reply, DispatchError> {
        let known_sender = sender == CONTROL_ROOM || self.grid.inspectors.iter().any(|i| i.id == sender);
        let u = match order::parse_update(payload) {
            Ok(u) => u,
            Err((id, reason)) => return Ok(Reply::refused(id, None, reason)),
        };
        if !known_sender {
            return Ok(Reply::refused(Some(u.id), Some(u.order), format!("unknown sender \"{sender}\"")));
        }
        if u.by != sender {
            return Ok(Reply::refused(
                Some(u.id),
                Some(u.order),
                format!("\"by\" is {} but the update came on {sender}'s topic", u.by),
            ));
        }
        self.commit(|tx, out| {
            let stored: Option<String> = tx
                .query_row("SELECT reply FROM updates WHERE sender = ?1 AND id = ?2", params![sender, u.id], |r| {
                    r.get(0)
                })
                .optional()?;
            if let Some(stored) = stored {
                let v: serde_json::Value = serde_json::from_str(&stored).unwrap_or_default();
                let mut r = Reply {
                    ok: v["ok"].as_bool().unwrap_or(false),
                    update: Some(u.id.clone()),
                    order: Some(u.order.clone()),
                    detail: v["detail"].as_str().or(v["reason"].as_str()).unwrap_or("").to_string(),
                    state: None,
                    duplicate: true,
                };
                r.detail = format!("already handled: {}", r.detail);
                return Ok::<_, DispatchError>(r);
            }
            let reply = self.apply_update(tx, out, sender, &u, now)?;
            let stored = serde_json::json!({"ok": reply.ok, "detail": reply.detail}).to_string();
            tx.execute(
                "INSERT INTO updates (sender, id, reply, at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![sender, u.id, stored, now],
            )?;
            Ok(reply)
        })
    }

    fn apply_update(
        &self,
        tx: &Transaction,
        out: &mut Vec<Message>,
        sender: &str,
        u: &Update,
        now: i64,
    ) -> Result<Reply, DispatchError> {
        let refuse = |why: String| Ok(Reply::refused(Some(u.id.clone()), Some(u.order.clone()), why));
        let Some(mut o) = Order::load(tx, &u.order)? else {
            return refuse(format!("unknown order {}", u.order));
        };
        if o.state.is_closed() {
            return refuse(format!("order is {}; no further change", o.state.name()));
        }
        let route = self.route_of(&o.category);
        let is = |who: &Option<String>| who.as_deref() == Some(sender);
        let leader = o.grid.as_ref().and_then(|g| self.grid.grids.iter().find(|c| &c.id == g)?.leader.clone());
        let supervisor = sender == CONTROL_ROOM || leader.as_deref() == Some(sender);
        let state = o.state;
        let not_allowed = |what: &str| format!("{what} is not allowed while the order is {}", state.name());
        let (event, notify): (&str, Vec<String>) = match u.action {
            Action::Accept => {
                if !matches!(state, State::Assigned | State::Escalated) {
                    return refuse(not_allowed("accept"));
                }
                if !is(&o.assignee) || sender == CONTROL_ROOM {
                    return refuse(format!("only the assignee ({}) can accept", o.assignee.as_deref().unwrap_or("-")));
                }
                o.state = State::Accepted;
                o.worker = Some(sender.to_string());
                o.accepted_ms.get_or_insert(now);
                o.deadline_ms = Some(now + route.resolve_within.as_millis() as i64);
                o.deadline = Some(Deadline::Resolve);
                ("accepted", vec![])
            }
            Action::Reject => {
                if !matches!(state, State::Assigned | State::Escalated) {
                    return refuse(not_allowed("reject"));
                }
                if !is(&o.assignee) || sender == CONTROL_ROOM {
                    return refuse(format!("only the assignee ({}) can reject", o.assignee.as_deref().unwrap_or("-")));
                }
                if u.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                    return refuse("reject needs a reason".into());
                }
                o.excluded.push(sender.to_string());
                self.announce(tx, out, &o, "rejected", Some(sender), u.reason.as_deref(), now, &[])?;
                if state == State::Escalated {
                    self.escalate(tx, out, &mut o, &route, now, &format!("rejected by {sender}"))?;
                } else {
                    self.assign_or_escalate(tx, out, &mut o, &route, now, &format!("rejected by {sender}"))?;
                }
                o.note = u.note.clone().or(o.note);
                o.save(tx)?;
                return Ok(self.ok(
                    u,
                    &o,
                    format!("rejected; now {} ({})", o.state.name(), o.assignee.as_deref().unwrap_or("-")),
                ));
            }
            Action::Arrive => {
                let worker_escalated = state == State::Escalated && o.on_site_ms.is_none() && o.worker.is_some();
                if !(state == State::Accepted || worker_escalated) {
                    return refuse(not_allowed("arrive"));
                }
                if !is(&o.worker) {
                    return refuse(format!("only {} can report arriving", o.worker.as_deref().unwrap_or("the worker")));
                }
                o.on_site_ms = Some(now);
                if state == State::Accepted {
                    o.state = State::OnSite;
                }
                ("on_site", vec![])
            }
            Action::Resolve => {
                let allowed = match state {
                    State::Accepted | State::OnSite => is(&o.worker),
                    State::Escalated => is(&o.worker) || (is(&o.assignee) && sender != CONTROL_ROOM) || supervisor,
                    _ => false,
                };
                if !matches!(state, State::Accepted | State::OnSite | State::Escalated) {
                    return refuse(not_allowed("resolve"));
                }
                if !allowed {
                    return refuse(format!(
                        "only the inspector working on it ({}) or a supervisor can resolve",
                        o.worker.as_deref().unwrap_or("-")
                    ));
                }
                o.state = State::Resolved;
                o.resolved_ms = Some(now);
                o.closed_ms = Some(now);
                o.deadline_ms = None;
                o.deadline = None;
                ("resolved", o.assignee.iter().chain(o.worker.iter()).cloned().collect())
            }
            Action::Cancel => {
                if !(is(&o.assignee) || is(&o.worker) || supervisor) {
                    return refuse("only the assignee, the grid leader or the control room can cancel".into());
                }
                let Some(reason) = u.reason.as_deref().filter(|r| !r.trim().is_empty()) else {
                    return refuse("cancel needs a reason (e.g. \"false alarm: shadow\")".into());
                };
                o.state = State::Cancelled;
                o.cancel_reason = Some(reason.to_string());
                o.closed_ms = Some(now);
                o.deadline_ms = None;
                o.deadline = None;
                ("cancelled", o.assignee.iter().chain(o.worker.iter()).cloned().collect())
            }
            Action::Assign => {
                if !supervisor {
                    return refuse("only the grid leader or the control room can assign".into());
                }
                let Some(to) = u.to.as_deref().filter(|t| self.grid.inspectors.iter().any(|i| i.id == *t)) else {
                    return refuse(format!("assign needs \"to\": a known inspector (got {:?})", u.to));
                };
                let previous = o.assign_to(to, now, route.accept_within);
                o.worker = None;
                o.excluded.retain(|e| e != to);
                ("assigned", std::iter::once(to.to_string()).chain(previous).collect())
            }
        };
        if let Some(n) = &u.note {
            o.note = Some(n.clone());
        }
        o.save(tx)?;
        info!(order = %o.id, by = sender, action = u.action.name(), state = o.state.name(), "order updated");
        self.announce(tx, out, &o, event, Some(sender), u.reason.as_deref().or(u.note.as_deref()), now, &notify)?;
        Ok(self.ok(u, &o, event.to_string()))
    }

    fn ok(&self, u: &Update, o: &Order, detail: String) -> Reply {
        Reply {
            ok: true,
            update: Some(u.id.clone()),
            order: Some(o.id.clone()),
            detail,
            state: Some(o.state.contract()),
            duplicate: false,
        }
    }

    /// Fires every stored deadline at or before `now`: an assignee who did not accept loses
    /// the order (reassigned, then escalated); an order not resolved in time is escalated.
    /// Returns how many deadlines fired. Works in batches of 100 orders per transaction, so
    /// a mass of deadlines at once never holds the store (and the MQTT link) for long.
    pub fn tick(&self, now: i64) -> Result<usize, DispatchError> {
        let mut fired = 0;
        loop {
            let n = self.tick_batch(now, 100)?;
            fired += n;
            if n < 100 {
                return Ok(fired);
            }
        }
    }

    fn tick_batch(&self, now: i64, limit: usize) -> Result<usize, DispatchError> {
        self.commit(|tx, out| {
            let due = Order::due(tx, now, limit)?;
            for mut o in due.iter().cloned() {
                let route = self.route_of(&o.category);
                let late = o.assignee.clone().unwrap_or_default();
                match (o.deadline, o.state) {
                    (Some(Deadline::Accept), State::Assigned) => {
                        o.excluded.push(late.clone());
                        if o.reassignments < route.reassign {
                            o.reassignments += 1;
                            self.assign_or_escalate(
                                tx,
                                out,
                                &mut o,
                                &route,
                                now,
                                &format!("{late} did not accept in time"),
                            )?;
                        } else {
                            self.escalate(tx, out, &mut o, &route, now, &format!("{late} did not accept in time"))?;
                        }
                    }
                    (Some(Deadline::Accept), _) => {
                        o.excluded.push(late.clone());
                        self.escalate(tx, out, &mut o, &route, now, &format!("{late} did not take it up in time"))?;
                    }
                    (Some(Deadline::Resolve), _) => {
                        self.escalate(tx, out, &mut o, &route, now, "not resolved in time")?;
                    }
                    (None, _) => {}
                }
                o.save(tx)?;
            }
            Ok::<_, DispatchError>(due.len())
        })
    }

    /// Deletes closed orders, handled alert ids and answered updates older than the
    /// retention, and residents' reports (photo, audio, rating) older than it whose order is
    /// gone with them.
    pub fn prune(&self, now: i64) -> Result<usize, DispatchError> {
        let before = now - self.config.retention.as_millis() as i64;
        self.store.locked().transaction(|tx, _| {
            tx.execute(
                "DELETE FROM order_events WHERE order_id IN \
                 (SELECT id FROM orders WHERE closed_ms IS NOT NULL AND closed_ms < ?1)",
                [before],
            )?;
            let n = tx.execute("DELETE FROM orders WHERE closed_ms IS NOT NULL AND closed_ms < ?1", [before])?;
            tx.execute(
                "DELETE FROM reports WHERE created_ms < ?1 AND (order_id IS NULL OR order_id NOT IN (SELECT id FROM orders))",
                [before],
            )?;
            tx.execute("DELETE FROM seen_alerts WHERE at_ms < ?1", [before])?;
            tx.execute("DELETE FROM updates WHERE at_ms < ?1", [before])?;
            Ok::<_, DispatchError>(n)
        })
    }

    /// Every order, oldest first (status page, tests).
    pub fn orders(&self) -> Result<Vec<Order>, DispatchError> {
        Ok(Order::all(self.store.locked().connection())?)
    }

    /// One order.
    pub fn order(&self, id: &str) -> Result<Option<Order>, DispatchError> {
        Ok(Order::load(self.store.locked().connection(), id)?)
    }

    /// An order's events as announced, oldest first.
    pub fn order_events(&self, id: &str) -> Result<Vec<order::EventRow>, DispatchError> {
        Ok(Order::events(self.store.locked().connection(), id)?)
    }

    /// The orders an inspector holds now (to act on, or accepted), and those they closed
    /// since `closed_since` (ms).
    pub fn orders_of(&self, who: &str, closed_since: i64) -> Result<Vec<Order>, DispatchError> {
        Ok(Order::of(self.store.locked().connection(), who, closed_since)?)
    }

    /// Keeps the photo sent with update `update` of `order` (once per update id).
    pub fn keep_photo(&self, order: &str, update: &str, by: &str, jpeg: &[u8], now: i64) -> Result<(), DispatchError> {
        self.store.locked().connection().execute(
            "INSERT OR IGNORE INTO order_photos (order_id, update_id, by_who, jpeg, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![order, update, by, jpeg, now],
        )?;
        Ok(())
    }

    /// Forgets the photo of an update the dispatcher refused.
    pub fn drop_photo(&self, order: &str, update: &str) -> Result<(), DispatchError> {
        self.store
            .locked()
            .connection()
            .execute("DELETE FROM order_photos WHERE order_id = ?1 AND update_id = ?2", params![order, update])?;
        Ok(())
    }

    /// The newest photo of an order's work (the resolve's).
    pub fn photo(&self, order: &str) -> Result<Option<Vec<u8>>, DispatchError> {
        Ok(self
            .store
            .locked()
            .connection()
            .query_row("SELECT jpeg FROM order_photos WHERE order_id = ?1 ORDER BY at_ms DESC LIMIT 1", [order], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Attaches a voice message recorded by `by` (the control room) to an open order;
    /// returns its number (1, 2, …). The inspector's app plays it when it arrives.
    pub fn add_message(&self, order: &str, by: &str, audio: &[u8], audio_type: &str, now: i64) -> Result<u32, String> {
        let found = self.order(order).map_err(|e| e.to_string())?;
        match found {
            None => return Err(format!("no order {order}")),
            Some(o) if o.state.is_closed() => return Err(format!("order {order} is closed")),
            Some(_) => {}
        }
        self.commit(|tx, _| {
            let seq: u32 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM order_messages WHERE order_id = ?1",
                [order],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO order_messages (order_id, seq, by_who, audio, audio_type, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![order, seq, by, audio, audio_type, now],
            )?;
            Ok::<_, DispatchError>(seq)
        })
        .map_err(|e| e.to_string())
    }

    /// An order's voice messages: (number, by, when in ms), oldest first.
    pub fn messages(&self, order: &str) -> Result<Vec<(u32, String, i64)>, DispatchError> {
        let store = self.store.locked();
        let mut stmt = store
            .connection()
            .prepare_cached("SELECT seq, by_who, at_ms FROM order_messages WHERE order_id = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([order], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// One voice message and its content type.
    pub fn message(&self, order: &str, seq: u32) -> Result<Option<(Vec<u8>, String)>, DispatchError> {
        Ok(self
            .store
            .locked()
            .connection()
            .query_row(
                "SELECT audio, audio_type FROM order_messages WHERE order_id = ?1 AND seq = ?2",
                params![order, seq],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// The inspectors of the grid (ids and names).
    pub fn grid(&self) -> &Grid {
        &self.grid
    }
}

/// The fields of an alert the dispatcher uses, checked.
#[derive(Debug)]
struct AlertIn {
    id: String,
    kind: String,
    node: String,
    camera: String,
    rule: String,
    zone: Option<String>,
    category: String,
    severity: String,
    dispatch: bool,
    label: String,
    score: f64,
    micro_grid: Option<String>,
    grid: Option<String>,
    snapshot: Option<String>,
    clip: Option<String>,
    location: Option<[f64; 2]>,
}

impl AlertIn {
    /// Reads the alert with the type its producer writes (`contract::Alert`), then checks
    /// that the names it keys orders by are short names.
    fn parse(payload: &[u8]) -> Result<Self, String> {
        let a: crate::contract::Alert =
            serde_json::from_slice(payload).map_err(|e| format!("not a gridsight.alert version 1: {e}"))?;
        let fine = |s: &str| (1..=200).contains(&s.len()) && !s.contains('/') && !s.chars().any(char::is_control);
        let name = |k: &str, v: String| if fine(&v) { Ok(v) } else { Err(format!("field {k} is not a short name")) };
        let opt = |v: Option<String>| v.filter(|s| fine(s));
        Ok(Self {
            id: name("id", a.id)?,
            kind: a.kind.name().to_string(),
            node: name("node", a.node)?,
            camera: name("camera", a.camera)?,
            rule: name("rule", a.rule)?,
            zone: opt(a.zone),
            category: name("category", a.category)?,
            severity: serde_json::to_value(a.severity)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            dispatch: a.dispatch,
            label: opt(Some(a.label)).unwrap_or_default(),
            score: a.score,
            micro_grid: opt(a.micro_grid),
            grid: opt(a.grid),
            snapshot: a.snapshot.filter(|s| s.len() <= 300),
            clip: a.clip.filter(|s| s.len() <= 300),
            location: a.location.filter(|[lon, lat]| (-180.0..=180.0).contains(lon) && (-90.0..=90.0).contains(lat)),
        })
    }
}
