//! The status page: one HTML page (`/`, [`PAGE`]) that polls one JSON (`/api/overview`)
//! and draws the camera grid, a problems banner, the live alert list, open orders with
//! their countdown and the dispatch statistics. The same page serves a node (`edge-node
//! run`) and the district (`edge-node dispatch`, from the nodes' retained status topics);
//! the JSON says which (`district`). Plain HTML and JavaScript, no build step.
//!
//! The problems are worked out here, not in the page, so every screen (and a test) sees
//! the same list.

use crate::Locked;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// The page itself.
pub const PAGE: &str = include_str!("page.html");

/// How many open orders the page lists (the oldest deadlines first).
const ORDERS_SHOWN: usize = 200;

/// One line of the problems banner: `level` is `error` or `warn`.
pub fn problem(level: &str, text: impl Into<String>) -> Value {
    json!({"level": level, "text": text.into()})
}

/// The dispatcher's part of the overview: open orders (nearest deadline first) and the
/// latest statistics.
pub fn dispatch_part(
    dispatcher: &crate::dispatch::Dispatcher,
    stats: &Mutex<Vec<crate::dispatch::stats::Group>>,
    window_s: u64,
    at: &str,
    problems: &mut Vec<Value>,
) -> (Value, Value) {
    let mut open: Vec<_> = match dispatcher.orders() {
        Ok(all) => all.into_iter().filter(|o| !o.state.is_closed()).map(|o| o.view()).collect(),
        Err(e) => {
            problems.push(problem("error", format!("cannot read the orders: {e}")));
            Vec::new()
        }
    };
    // Nearest deadline first (RFC 3339 in UTC sorts as text); orders without one last.
    open.sort_by(|a, b| match (&a.deadline, &b.deadline) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.created_at.cmp(&b.created_at),
    });
    let late = open.iter().filter(|o| o.deadline.as_deref().is_some_and(|d| d < at)).count();
    if late > 0 {
        problems.push(problem("warn", format!("{late} open order(s) past their deadline")));
    }
    open.truncate(ORDERS_SHOWN);
    let stats = crate::dispatch::stats::to_json(&stats.locked(), window_s, at);
    (serde_json::to_value(&open).unwrap_or_default(), stats)
}

/// The overview of a district (`edge-node dispatch`): the nodes and cameras from their
/// retained status topics, the alerts the dispatcher saw, every open order.
pub fn district_overview(
    title: &str,
    connected: bool,
    dispatcher: &crate::dispatch::Dispatcher,
    latest: &Mutex<Vec<crate::dispatch::stats::Group>>,
    fleet: &crate::dispatch::fleet::Fleet,
    window_s: u64,
) -> Value {
    let at = crate::contract::time::now();
    let mut problems = Vec::new();
    if !connected {
        problems.push(problem("error", "the dispatcher is not connected to the district broker"));
    }
    let (cameras, nodes, alerts) = fleet.overview(&mut problems);
    let (orders, stats) = dispatch_part(dispatcher, latest, window_s, &at, &mut problems);
    json!({
        "district": true,
        "title": title,
        "at": at,
        "broker_connected": connected,
        "outbox_pending": Value::Null,
        "disk": Value::Null,
        "problems": problems,
        "nodes": nodes,
        "cameras": cameras,
        "alerts": alerts,
        "orders": orders,
        "stats": stats,
    })
}

/// What a camera's status says is wrong, if anything.
pub fn camera_problem(c: &Value) -> Option<Value> {
    let name = match c["node"].as_str() {
        Some(node) if c["district"] == true => format!("{} on {node}", c["camera"].as_str().unwrap_or("?")),
        _ => c["camera"].as_str().unwrap_or("?").to_string(),
    };
    let detail = c["detail"].as_str().unwrap_or("");
    match c["state"].as_str()? {
        "streaming" => None,
        "connecting" => Some(problem("warn", format!("camera {name}: {detail}"))),
        "offline" => Some(problem("error", format!("camera {name}: its node is offline"))),
        _ => {
            // The error is often in the detail already (the reason of a backoff).
            let error = c["last_error"].as_str().filter(|e| !detail.contains(e));
            Some(problem(
                "error",
                format!("camera {name}: {detail}{}", error.map(|e| format!(" ({e})")).unwrap_or_default()),
            ))
        }
    }
}

/// The in-process dispatcher, its latest statistics and their window (seconds).
pub(crate) type InProcess = (Arc<crate::dispatch::Dispatcher>, Arc<Mutex<Vec<crate::dispatch::stats::Group>>>, u64);

/// The overview of a node (`edge-node run`).
pub(crate) struct NodePage {
    pub node: String,
    pub title: String,
    pub sources: Arc<super::node::MetricsSources>,
    pub snapshot: Arc<Mutex<super::node::Snapshot>>,
    pub live: Arc<crate::live::LiveFrames>,
    pub clips: Arc<crate::clips::Clips>,
    /// The in-process dispatcher, when this node dispatches.
    pub dispatch: Option<InProcess>,
}

impl NodePage {
    pub fn overview(&self) -> Value {
        use std::sync::atomic::Ordering::Relaxed;
        let at = crate::contract::time::now();
        let s = &self.sources;
        let mut problems = Vec::new();
        let connected = s.link.connected.load(std::sync::atomic::Ordering::SeqCst);
        let pending = self.snapshot.locked().outbox_pending;
        if !connected {
            problems.push(problem(
                "error",
                format!("not connected to the MQTT broker: {pending} message(s) wait in the outbox, none is lost"),
            ));
        } else if pending > 100 {
            problems.push(problem("warn", format!("{pending} messages wait in the outbox for the broker")));
        }
        let disk = super::node::disk_json(&s.disk);
        match disk["state"].as_str() {
            Some("low") => {
                problems.push(problem("warn", "disk low: snapshots, clips and thumbnails are not stored; alerts are"))
            }
            Some("full") => problems.push(problem("error", "disk full: alerts are at risk")),
            _ => {}
        }
        let pool = s.pool.upgrade();
        let mut cameras = Vec::new();
        for c in s.cameras.status() {
            let mut v = super::node::camera_status_json(&self.node, &c, &at);
            let shown = self.live.at(&c.id);
            v["snapshot_at"] = shown.map(crate::contract::time::rfc3339).into();
            // Only a camera with a picture gets an image to load (no 503s for the browser).
            v["thumbnail"] = shown.map(|_| format!("cameras/{}/snapshot.jpg?width=320", c.id)).into();
            problems.extend(camera_problem(&v));
            if let Some(st) = pool.as_ref().and_then(|p| p.stats(&c.id))
                && st.dropped_busy > 0
            {
                problems.push(problem(
                    "warn",
                    format!("inference is behind on camera {}: {} frame(s) dropped since start", c.id, st.dropped_busy),
                ));
            }
            let counters = s.counters.camera(&c.id);
            if counters.alerts_failed.load(Relaxed) > 0 {
                problems.push(problem(
                    "error",
                    format!("camera {}: {} alert(s) could not be stored", c.id, counters.alerts_failed.load(Relaxed)),
                ));
            }
            cameras.push(v);
        }
        let alerts: Vec<Value> = s
            .alerts
            .recent()
            .into_iter()
            .map(|alert| {
                let mut a = serde_json::to_value(&alert).unwrap_or_default();
                if alert.snapshot.is_some() {
                    a["snapshot_url"] = format!("alerts/{}.jpg", alert.id).into();
                }
                if self.clips.file(&alert.id).is_some() {
                    a["clip_url"] = format!("clips/{}.mp4", alert.id).into();
                }
                a
            })
            .collect();
        let (orders, stats) = match &self.dispatch {
            Some((d, stats, window)) => {
                let (o, st) = dispatch_part(d, stats, *window, &at, &mut problems);
                (o, st)
            }
            None => (Value::Null, Value::Null),
        };
        json!({
            "district": false,
            "title": self.title,
            "node": self.node,
            "at": at,
            "broker_connected": connected,
            "outbox_pending": pending,
            "disk": disk,
            "problems": problems,
            "cameras": cameras,
            "alerts": alerts,
            "orders": orders,
            "stats": stats,
        })
    }
}

impl NodePage {
    /// `GET /` (the page) and `/api/overview` (what it shows, as JSON).
    pub fn routes(self) -> axum::Router {
        use super::http::{Get, get, json};
        let page = Arc::new(self);
        axum::Router::new()
            .route("/", get(|_: &Get| super::http::Reply::new(200, "text/html; charset=utf-8", PAGE)))
            .route("/api/overview", get(move |_: &Get| json(&page.overview())))
    }
}

/// The district page of `edge-node dispatch`: `GET /` and `/api/overview`.
pub fn district_routes(
    title: String,
    link: Arc<crate::mqtt::LinkStats>,
    dispatcher: Arc<crate::dispatch::Dispatcher>,
    latest: Arc<Mutex<Vec<crate::dispatch::stats::Group>>>,
    fleet: Arc<crate::dispatch::fleet::Fleet>,
    window_s: u64,
) -> axum::Router {
    use super::http::{Get, get, json};
    axum::Router::new().route("/", get(|_: &Get| super::http::Reply::new(200, "text/html; charset=utf-8", PAGE))).route(
        "/api/overview",
        get(move |_: &Get| {
            let up = link.connected.load(std::sync::atomic::Ordering::SeqCst);
            json(&district_overview(&title, up, &dispatcher, &latest, &fleet, window_s))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_problems_name_the_camera_and_the_reason() {
        let c = |state: &str| json!({"camera": "gate", "state": state, "detail": "retrying in 4 s", "last_error": "401 Unauthorized"});
        assert!(camera_problem(&c("streaming")).is_none());
        assert_eq!(camera_problem(&c("connecting")).unwrap()["level"], "warn");
        let p = camera_problem(&c("backoff")).unwrap();
        assert_eq!(p["level"], "error");
        assert_eq!(p["text"], "camera gate: retrying in 4 s (401 Unauthorized)");
        let d = json!({"camera": "gate", "node": "edge-1", "district": true, "state": "offline"});
        assert_eq!(camera_problem(&d).unwrap()["text"], "camera gate on edge-1: its node is offline");
    }

    #[test]
    fn the_page_is_plain_html_with_its_script() {
        assert!(PAGE.starts_with("<!doctype html>"));
        assert!(PAGE.contains("api/overview") && PAGE.contains("</html>"));
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"), "the page loads nothing from elsewhere");
    }
}
