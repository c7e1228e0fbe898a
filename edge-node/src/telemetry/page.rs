//! The node's status page: [`gridsight_dispatch::page`]'s page and problems, with the
//! node's own overview (its cameras, link, disk and, when it dispatches in-process, the
//! orders).

use crate::Locked;
use std::sync::{Arc, Mutex};

use gridsight_dispatch::page::{PAGE, camera_problem, dispatch_part, problem};
use serde_json::{Value, json};

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
    /// Cameras shown around an alert (`http.nearby_cameras`).
    pub nearby: u32,
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
            let mut v = super::node::camera_status_json(&self.node, &c, &at, &s.counters);
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
            "map": gridsight_dispatch::page::map_part(self.dispatch.as_ref().map(|d| d.0.as_ref())),
            "nearby_cameras": self.nearby,
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
            .merge(gridsight_dispatch::page::player_route())
    }
}
