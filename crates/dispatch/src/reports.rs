//! reports: residents' reports, the second source of dispatch orders.
//!
//! Input: a report (category, text, a point or a micro-grid, an optional photo and audio
//! clip), already checked and with its photo made safe by the intake (`intake.rs`). Output:
//! the report stored with a reporter token (only its SHA-256 is kept), and an order through
//! the same lifecycle, deadlines and escalation as camera alerts (`node = "residents"`,
//! `source` in the report's status) — or the report attached to an open order of the same
//! category within `attach_within` meters and `attach_for`. Report and order commit in one
//! transaction: a crash leaves either both or neither.

use crate::Locked;
use rusqlite::{OptionalExtension, params};
use sha2::Digest;
use std::sync::Arc;

use super::{DispatchError, Dispatcher, Order, State};

/// The reports table (dispatch schema step 2).
pub const SCHEMA_2: &str = "
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    category TEXT NOT NULL,
    text TEXT NOT NULL,
    lat REAL, lon REAL,
    micro_grid TEXT, grid TEXT,
    photo BLOB,
    audio BLOB, audio_type TEXT,
    order_id TEXT,
    created_ms INTEGER NOT NULL,
    rating INTEGER, rating_comment TEXT, rated_ms INTEGER
);
CREATE INDEX IF NOT EXISTS reports_order ON reports(order_id);
";

/// The node name of resident orders (their `source`).
pub const RESIDENTS: &str = "residents";

/// A checked report, ready to store.
#[derive(Debug, Clone)]
pub struct NewReport {
    pub category: String,
    pub text: String,
    /// (latitude, longitude), when given as a point.
    pub point: Option<(f64, f64)>,
    pub micro_grid: Option<String>,
    pub grid: Option<String>,
    /// JPEG, faces pixelated, no metadata.
    pub photo: Option<Vec<u8>>,
    pub audio: Option<(Vec<u8>, String)>,
}

/// What became of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub id: String,
    /// Give this to the reporter; it is the only way to read the report or rate it.
    pub token: String,
    pub order: Option<String>,
    pub attached: bool,
}

pub fn token_hash(token: &str) -> String {
    sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// 16 random bytes as hex (the kernel's generator).
pub fn random_hex() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Great-circle distance in meters.
pub fn meters(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (a.0.to_radians(), a.1.to_radians(), b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2) + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * h.sqrt().asin()
}

/// A rating refused, and why (the HTTP status it maps to).
#[derive(Debug, PartialEq)]
pub enum RatingRefused {
    NotFound,
    NotYet(String),
    Already,
}

impl Dispatcher {
    /// Stores a report and makes (or joins) its order, in one transaction.
    pub fn handle_report(
        &self,
        r: &NewReport,
        attach_within_m: f64,
        attach_for_ms: i64,
        now: i64,
    ) -> Result<Accepted, DispatchError> {
        self.commit(|tx, out| self.report_in(tx, out, r, attach_within_m, attach_for_ms, now))
    }

    /// A report that came with a request id (over MQTT, from an app's gateway): the same
    /// request again gets the same answer and changes nothing. `answer` makes the reply of a
    /// new report; it is stored with the report, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_report_once(
        &self,
        sender: &str,
        request: &str,
        r: Result<&NewReport, &str>,
        attach_within_m: f64,
        attach_for_ms: i64,
        now: i64,
        answer: &dyn Fn(Result<&Accepted, &str>) -> serde_json::Value,
    ) -> Result<(serde_json::Value, bool), DispatchError> {
        self.commit(|tx, out| {
            let seen: Option<String> = tx
                .query_row("SELECT reply FROM updates WHERE sender = ?1 AND id = ?2", params![sender, request], |r| {
                    r.get(0)
                })
                .optional()?;
            if let Some(reply) = seen {
                return Ok((serde_json::from_str(&reply).unwrap_or_default(), true));
            }
            let reply = match r {
                Ok(r) => answer(Ok(&self.report_in(tx, out, r, attach_within_m, attach_for_ms, now)?)),
                Err(reason) => answer(Err(reason)),
            };
            tx.execute(
                "INSERT INTO updates (sender, id, reply, at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![sender, request, reply.to_string(), now],
            )?;
            Ok::<_, DispatchError>((reply, false))
        })
    }

    fn report_in(
        &self,
        tx: &rusqlite::Transaction,
        out: &mut Vec<crate::outbox::Message>,
        r: &NewReport,
        attach_within_m: f64,
        attach_for_ms: i64,
        now: i64,
    ) -> Result<Accepted, DispatchError> {
        let id = format!("r-{now:013}-{}", &random_hex()[..8]);
        let token = random_hex();
        {
            // An open resident order of the category, near enough and recent enough.
            let mut near: Option<Order> = None;
            if let Some(p) = r.point {
                let mut stmt = tx.prepare(
                    "SELECT o.id, r.lat, r.lon FROM orders o JOIN reports r ON r.order_id = o.id \
                     WHERE o.node = ?1 AND o.category = ?2 AND o.closed_ms IS NULL AND o.created_ms >= ?3 \
                     AND r.lat IS NOT NULL ORDER BY o.created_ms",
                )?;
                let rows: Vec<(String, f64, f64)> = stmt
                    .query_map(params![RESIDENTS, r.category, now - attach_for_ms], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })?
                    .collect::<Result<_, _>>()?;
                if let Some((oid, _, _)) = rows.iter().find(|(_, la, lo)| meters(p, (*la, *lo)) <= attach_within_m) {
                    near = Order::load(tx, oid)?;
                }
            }
            let (order, attached) = match near {
                Some(mut o) => {
                    o.alerts += 1;
                    o.last_alert = id.clone();
                    o.save(tx)?;
                    self.announce(tx, out, &o, "alert_attached", None, Some(&format!("report {id}")), now, &[])?;
                    (Some(o.id), true)
                }
                None => match self.config.route(&r.category) {
                    None => (None, false),
                    Some(route) => {
                        let mut o = Order {
                            node: RESIDENTS.to_string(),
                            camera: "-".to_string(),
                            rule: "report".to_string(),
                            category: r.category.clone(),
                            severity: "medium".to_string(),
                            micro_grid: r.micro_grid.clone(),
                            grid: r.grid.clone(),
                            label: r.category.clone(),
                            score: 1.0,
                            // For inspectors and the control room (the listener's token).
                            snapshot: r.photo.as_ref().map(|_| format!("/reports/{id}/photo.jpg")),
                            location: r.point.map(|(la, lo)| [lo, la]),
                            ..Order::new(format!("{RESIDENTS}/{}/{id}", r.category), &id, route, now)
                        };
                        // What the inspector needs to find and judge it: the words, the place.
                        let place = match (r.point, &r.micro_grid) {
                            (Some((la, lo)), Some(m)) => format!("at {la:.6}, {lo:.6} ({m})"),
                            (Some((la, lo)), None) => format!("at {la:.6}, {lo:.6} (outside every micro-grid)"),
                            (None, Some(m)) => format!("in {m}"),
                            (None, None) => String::new(),
                        };
                        let detail = format!("resident report {id}: \u{201c}{}\u{201d} {place}", r.text);
                        self.announce(tx, out, &o, "created", None, Some(&detail), now, &[])?;
                        tracing::info!(order = %o.id, report = %id, category = %o.category, grid = o.grid.as_deref().unwrap_or("-"), "order created from a resident's report");
                        self.assign_or_escalate(tx, out, &mut o, route, now, "created")?;
                        o.save(tx)?;
                        (Some(o.id), false)
                    }
                },
            };
            tx.execute(
                "INSERT INTO reports (id, token_hash, category, text, lat, lon, micro_grid, grid, photo, audio, \
                 audio_type, order_id, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    id,
                    token_hash(&token),
                    r.category,
                    r.text,
                    r.point.map(|p| p.0),
                    r.point.map(|p| p.1),
                    r.micro_grid,
                    r.grid,
                    r.photo,
                    r.audio.as_ref().map(|a| &a.0),
                    r.audio.as_ref().map(|a| &a.1),
                    order,
                    now
                ],
            )?;
            Ok(Accepted { id: id.clone(), token: token.clone(), order, attached })
        }
    }

    /// Whether `token` is the report's.
    pub fn report_token_ok(&self, id: &str, token: &str) -> Result<bool, DispatchError> {
        let hash: Option<String> = self
            .store
            .locked()
            .connection()
            .query_row("SELECT token_hash FROM reports WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        Ok(hash.is_some_and(|h| crate::http::same(h.as_bytes(), token_hash(token).as_bytes())))
    }

    /// The report's status for its reporter: what was reported, where, the order's state and
    /// timeline, the closing note and the rating.
    pub fn report_status(&self, id: &str) -> Result<Option<crate::contract::ReportStatus>, DispatchError> {
        let store = self.store.locked();
        let conn = store.connection();
        let row = conn
            .query_row(
                "SELECT category, text, lat, lon, micro_grid, grid, photo IS NOT NULL, audio IS NOT NULL, order_id, \
                 created_ms, rating, rating_comment FROM reports WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<f64>>(2)?,
                        r.get::<_, Option<f64>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, bool>(6)?,
                        r.get::<_, bool>(7)?,
                        r.get::<_, Option<String>>(8)?,
                        r.get::<_, i64>(9)?,
                        r.get::<_, Option<i64>>(10)?,
                        r.get::<_, Option<String>>(11)?,
                    ))
                },
            )
            .optional()?;
        let Some((category, text, lat, lon, micro_grid, grid, photo, audio, order_id, created, rating, comment)) = row
        else {
            return Ok(None);
        };
        let order = match &order_id {
            Some(oid) => Order::load(conn, oid)?,
            None => None,
        };
        let at = |ms: i64| crate::contract::time::rfc3339_ms(ms);
        let step = |event: &str, ms: i64, detail: Option<String>| crate::contract::ReportStep {
            event: event.to_string(),
            at: at(ms),
            detail,
        };
        let mut timeline = vec![step("reported", created, None)];
        if let Some(o) = &order {
            let events = Order::events(conn, &o.id)?;
            if events.is_empty() {
                // An order from before the event log: what its timestamps say.
                for (event, ms) in [
                    ("assigned", o.assigned_ms),
                    ("accepted", o.accepted_ms),
                    ("on_site", o.on_site_ms),
                    ("resolved", o.resolved_ms),
                    ("closed", o.closed_ms),
                ] {
                    timeline.extend(ms.map(|ms| step(event, ms, None)));
                }
            }
            // Every state change, without who (inspectors are not named to residents);
            // what an inspector wrote when closing or why it was reopened is shown.
            for (event, _by, detail, ms) in events {
                if event == "alert_attached" || event == "created" {
                    continue;
                }
                let shown = matches!(event.as_str(), "resolved" | "cancelled" | "reopened");
                timeline.push(step(&event, ms, detail.filter(|_| shown)));
            }
            // A report that joined an open order: what happened before it too, in time order.
            timeline.sort_by(|a, b| a.at.cmp(&b.at));
        }
        Ok(Some(crate::contract::ReportStatus {
            schema: crate::contract::Schema::new(),
            version: crate::contract::Version1,
            id: id.to_string(),
            source: "resident".into(),
            category,
            text,
            location: crate::contract::ReportLocation { lat, lon, micro_grid, grid },
            photo: photo.then(|| format!("/api/v1/reports/{id}/photo.jpg")),
            audio,
            order: order_id,
            state: order.as_ref().map_or("not_dispatched", |o| o.state.name()).to_string(),
            timeline,
            note: order.as_ref().and_then(|o| o.note.clone()),
            rating: rating.map(|r| r.clamp(0, 255) as u8),
            rating_comment: comment,
        }))
    }

    /// The stored (pixelated) photo of a report.
    pub fn report_photo(&self, id: &str) -> Result<Option<Vec<u8>>, DispatchError> {
        let store = self.store.locked();
        Ok(store
            .connection()
            .query_row("SELECT photo FROM reports WHERE id = ?1", [id], |r| r.get::<_, Option<Vec<u8>>>(0))
            .optional()?
            .flatten())
    }

    /// The resident's voice note of a report and its content type.
    pub fn report_audio(&self, id: &str) -> Result<Option<(Vec<u8>, String)>, DispatchError> {
        let store = self.store.locked();
        let row = store
            .connection()
            .query_row("SELECT audio, audio_type FROM reports WHERE id = ?1", [id], |r| {
                Ok((r.get::<_, Option<Vec<u8>>>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .optional()?;
        Ok(row.and_then(|(a, t)| Some((a?, t.unwrap_or_else(|| "audio/webm".into())))))
    }

    /// Stores the reporter's rating (1-5): once, and only after the order is resolved. A
    /// rating at or below `reopen_at_most` reopens the order: it goes back to the grid's
    /// inspectors (assignment as for a new order, deadlines anew), and the reporter sees it.
    /// Returns whether it reopened.
    pub fn rate_report(
        &self,
        id: &str,
        rating: u8,
        comment: &str,
        reopen_at_most: Option<u8>,
        now: i64,
    ) -> Result<Result<bool, RatingRefused>, DispatchError> {
        self.commit(|tx, out| {
            let row: Option<(Option<String>, Option<i64>)> = tx
                .query_row("SELECT order_id, rating FROM reports WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((order_id, existing)) = row else { return Ok(Err(RatingRefused::NotFound)) };
            if existing.is_some() {
                return Ok(Err(RatingRefused::Already));
            }
            let order = match &order_id {
                Some(oid) => Order::load(tx, oid)?,
                None => None,
            };
            let mut o = match order {
                Some(o) if o.state == State::Resolved => o,
                other => {
                    let now_state = other.map_or("not dispatched", |o| o.state.name());
                    return Ok(Err(RatingRefused::NotYet(format!(
                        "the order is {now_state}; rate it once it is resolved"
                    ))));
                }
            };
            tx.execute(
                "UPDATE reports SET rating = ?2, rating_comment = ?3, rated_ms = ?4 WHERE id = ?1",
                params![id, rating, comment, now],
            )?;
            let reopen = reopen_at_most.is_some_and(|at_most| rating <= at_most);
            if reopen {
                let why = if comment.is_empty() {
                    format!("reopened: the resident rated it {rating}/5")
                } else {
                    format!("reopened: the resident rated it {rating}/5: \u{201c}{comment}\u{201d}")
                };
                // Open again, from the start of its route; the inspector who resolved it
                // hears why.
                let resolver: Vec<String> = o.worker.iter().cloned().collect();
                o.state = State::Assigned;
                (o.resolved_ms, o.closed_ms, o.on_site_ms, o.worker) = (None, None, None, None);
                o.escalation = 0;
                self.announce(tx, out, &o, "reopened", None, Some(&why), now, &resolver)?;
                tracing::info!(order = %o.id, report = %id, rating, "order reopened after a low rating");
                let route = self.route_of(&o.category);
                self.assign_or_escalate(tx, out, &mut o, &route, now, &why)?;
                o.save(tx)?;
            }
            Ok::<_, DispatchError>(Ok(reopen))
        })
    }
}

/// `GET /reports/<id>/photo.jpg`: a report's photo (faces pixelated), for inspectors and
/// the control room (behind the listener's token, if any).
pub fn routes(dispatcher: Arc<Dispatcher>) -> axum::Router {
    use crate::http::{Get, Reply, get};
    axum::Router::new().route(
        "/reports/:id/photo.jpg",
        get(move |g: &Get| match dispatcher.report_photo(g.param("id")) {
            Ok(Some(jpeg)) => Reply::new(200, "image/jpeg", jpeg),
            _ => Reply::new(404, "text/plain", "no such report photo\n"),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_tokens() {
        // 0.00018° of latitude is about 20 m.
        let d = meters((31.2304, 121.4737), (31.23058, 121.4737));
        assert!((19.0..21.0).contains(&d), "{d}");
        let (a, b) = (random_hex(), random_hex());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_eq!(token_hash("x"), "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881");
    }
}
