//! fleet: what the district dispatcher knows of every node, for the district status page:
//! the nodes' retained status and availability topics and their cameras' retained status,
//! and the alerts it has seen lately.
//!
//! Input: messages on `<prefix>/+/status`, `<prefix>/+/cameras/+/status` and
//! `<prefix>/+/availability` (the node's Last Will says `offline`), and every alert the
//! dispatcher handles. Output: the district's cameras (a camera of an offline node is shown
//! `offline`), its nodes, and problems in words. Memory only: the retained topics give it all
//! back after a restart.

use crate::Locked;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::problems::{camera_problem, problem};

/// How many alerts the page lists.
const RECENT: usize = 100;

use crate::contract::{Alert, CameraStatus, NodeStatus};

#[derive(Default)]
struct Node {
    online: Option<bool>,
    status: Option<NodeStatus>,
}

#[derive(Default)]
struct Inner {
    nodes: BTreeMap<String, Node>,
    cameras: BTreeMap<(String, String), CameraStatus>,
    /// The newest thumbnail of each camera, and when it came.
    thumbnails: BTreeMap<(String, String), (Vec<u8>, std::time::SystemTime)>,
    alerts: VecDeque<Alert>,
}

pub struct Fleet {
    prefix: String,
    inner: Mutex<Inner>,
}

impl Fleet {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.trim_end_matches('/').to_string(), inner: Mutex::default() }
    }

    /// The topic filters to subscribe to.
    pub fn filters(&self) -> Vec<String> {
        ["+/status", "+/cameras/+/status", "+/cameras/+/thumbnail", "+/availability"]
            .iter()
            .map(|f| format!("{}/{f}", self.prefix))
            .collect()
    }

    /// Takes a message if it is on one of [`Self::filters`]; `false` for other topics.
    /// A payload that is not what the contract says is ignored (a node's status is shown,
    /// not acted on).
    pub fn take(&self, topic: &str, payload: &[u8]) -> bool {
        let Some(rest) = topic.strip_prefix(&self.prefix).and_then(|r| r.strip_prefix('/')) else { return false };
        let parts: Vec<&str> = rest.split('/').collect();
        let mut inner = self.inner.locked();
        match parts.as_slice() {
            ["dispatch" | "inspectors" | "bridges", ..] => false,
            [node, "availability"] => {
                let online = match payload {
                    b"online" => Some(true),
                    b"offline" => Some(false),
                    _ => None,
                };
                inner.nodes.entry(node.to_string()).or_default().online = online;
                true
            }
            [node, "status"] => {
                match serde_json::from_slice::<NodeStatus>(payload) {
                    Ok(v) => inner.nodes.entry(node.to_string()).or_default().status = Some(v),
                    Err(e) => tracing::debug!(node, "a node status not of the contract: {e}"),
                }
                true
            }
            [node, "cameras", camera, "thumbnail"] => {
                let key = (node.to_string(), camera.to_string());
                if payload.starts_with(&[0xff, 0xd8]) && payload.len() < 256 << 10 {
                    inner.thumbnails.insert(key, (payload.to_vec(), std::time::SystemTime::now()));
                } else if payload.is_empty() {
                    inner.thumbnails.remove(&key);
                }
                true
            }
            [node, "cameras", camera, "status"] => {
                let key = (node.to_string(), camera.to_string());
                match serde_json::from_slice::<CameraStatus>(payload) {
                    Ok(v) => {
                        inner.cameras.insert(key, v);
                    }
                    // An empty retained message clears the camera (it was removed).
                    _ if payload.is_empty() => {
                        inner.cameras.remove(&key);
                    }
                    Err(e) => tracing::debug!(node, camera, "a camera status not of the contract: {e}"),
                }
                inner.nodes.entry(node.to_string()).or_default();
                true
            }
            _ => false,
        }
    }

    /// The newest thumbnail a node published for a camera.
    pub fn thumbnail(&self, node: &str, camera: &str) -> Option<Vec<u8>> {
        self.inner.locked().thumbnails.get(&(node.to_string(), camera.to_string())).map(|t| t.0.clone())
    }

    /// Remembers an alert the dispatcher handled (shown newest first).
    pub fn alert(&self, payload: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Alert>(payload) else { return };
        let mut inner = self.inner.locked();
        if inner.alerts.iter().any(|a| a.id == v.id) {
            return;
        }
        if inner.alerts.len() == RECENT {
            inner.alerts.pop_front();
        }
        inner.alerts.push_back(v);
    }

    /// (cameras, nodes, alerts) for the page, and the problems they show.
    pub fn overview(&self, problems: &mut Vec<Value>) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
        let inner = self.inner.locked();
        let mut nodes = Vec::new();
        for (id, n) in &inner.nodes {
            let s = n.status.as_ref().and_then(|s| serde_json::to_value(s).ok());
            let field = |f: &str| s.as_ref().map_or(Value::Null, |s| s[f].clone());
            let state = match n.online {
                Some(true) => "online",
                Some(false) => "offline",
                None => "unknown",
            };
            if n.online == Some(false) {
                problems.push(problem("error", format!("node {id} is offline (its cameras are not watched)")));
            }
            if let Some(p) = field("outbox_pending").as_u64()
                && p > 100
                && n.online == Some(true)
            {
                problems.push(problem("warn", format!("node {id}: {p} messages wait in its outbox")));
            }
            match field("disk")["state"].as_str() {
                Some("low") => problems.push(problem("warn", format!("node {id}: disk low"))),
                Some("full") => problems.push(problem("error", format!("node {id}: disk full, alerts at risk"))),
                _ => {}
            }
            nodes.push(json!({
                "node": id, "state": state, "name": field("name"), "cameras": field("cameras"),
                "streaming": field("streaming"), "outbox_pending": field("outbox_pending"),
                "disk": field("disk"), "shard": field("shard"), "at": field("at"),
            }));
        }
        let mut cameras = Vec::new();
        for ((node, _), c) in &inner.cameras {
            let mut c = serde_json::to_value(c).unwrap_or_default();
            if inner.nodes.get(node).is_some_and(|n| n.online == Some(false)) {
                c["state"] = "offline".into();
            }
            c["district"] = true.into();
            let camera = c["camera"].as_str().unwrap_or("").to_string();
            // Live video stays on the node: its wall, one tile, where the node says it is
            // reached (its own credentials decide what the viewer sees).
            let public = inner.nodes.get(node).and_then(|n| n.status.as_ref()).and_then(|s| s.http.clone());
            c["live_url"] = public.map(|u| format!("{u}/wall?layout=1x1&cameras={camera}")).into();
            match inner.thumbnails.get(&(node.clone(), camera.clone())) {
                Some((_, at)) => {
                    c["thumbnail"] = format!("cameras/{node}/{camera}/thumbnail.jpg").into();
                    c["snapshot_at"] = crate::contract::time::rfc3339(*at).into();
                }
                None => {
                    c["thumbnail"] = Value::Null;
                    c["snapshot_at"] = Value::Null;
                }
            }
            if c["state"] != "offline" {
                problems.extend(camera_problem(&c));
            }
            cameras.push(c);
        }
        // A camera of an offline node is one problem with its node, not one per camera.
        let alerts = inner.alerts.iter().rev().filter_map(|a| serde_json::to_value(a).ok()).collect();
        (cameras, nodes, alerts)
    }
}

/// `GET /cameras/<node>/<camera>/thumbnail.jpg`: a camera's newest thumbnail, as its node
/// published it (the district page).
pub fn routes(fleet: Arc<Fleet>) -> axum::Router {
    use crate::http::{Get, Reply, get};
    axum::Router::new().route(
        "/cameras/:node/:camera/thumbnail.jpg",
        get(move |g: &Get| match fleet.thumbnail(g.param("node"), g.param("camera")) {
            Some(jpeg) => Reply::new(200, "image/jpeg", jpeg),
            None => Reply::new(404, "text/plain", "no thumbnail of that camera yet\n"),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_and_cameras_from_retained_topics() {
        let f = Fleet::new("gridsight");
        // What a node publishes, as the contract writes it.
        let cam = |state: &str| {
            serde_json::to_vec(&json!({"schema": "gridsight.camera_status", "version": 1, "node": "edge-0",
                "camera": "gate", "state": state, "detail": "x", "fps_in": 25.0, "fps_decoded": 25.0, "fps_out": 2.0,
                "decode": "keyframes", "cadence": "key frames", "received": 10, "decoded": 1, "handed_on": 1,
                "reconnects": 0, "stalls": 0, "last_error": null, "at": "2026-12-05T10:00:00.000Z"}))
            .unwrap()
        };
        let node = br#"{"schema": "gridsight.node_status", "version": 1, "node": "edge-0", "name": "Edge 0",
            "cameras": 1, "streaming": 1, "outbox_pending": 500, "outbox_dropped_snapshots": 0,
            "disk": {"state": "ok", "free_bytes": 1000000000, "reserve_bytes": 67108864},
            "at": "2026-12-05T10:00:00.000Z"}"#;
        assert!(f.take("gridsight/edge-0/availability", b"online"));
        assert!(f.take("gridsight/edge-0/cameras/gate/status", &cam("streaming")));
        assert!(f.take("gridsight/edge-0/status", node));
        // Not of the contract: taken (ours) but not kept.
        assert!(f.take("gridsight/edge-0/status", br#"{"node":"edge-0","outbox_pending":9}"#));
        assert!(!f.take("gridsight/dispatch/orders", b"{}"));
        assert!(!f.take("gridsight/edge-0/alerts", b"{}"));
        assert!(!f.take("other/edge-0/status", b"{}"));
        assert!(f.take("gridsight/edge-0/cameras/gate/status", b"garbage"), "ignored, but ours");
        let mut p = Vec::new();
        let (cams, nodes, _) = f.overview(&mut p);
        assert_eq!(cams[0]["state"], "streaming");
        assert_eq!(nodes[0]["state"], "online");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0]["text"].as_str().unwrap().contains("500 messages"));

        f.take("gridsight/edge-0/availability", b"offline");
        let mut p = Vec::new();
        let (cams, _, _) = f.overview(&mut p);
        assert_eq!(cams[0]["state"], "offline");
        assert_eq!(p.len(), 1, "one problem for the node, none per camera: {p:?}");
        assert_eq!(p[0]["text"], "node edge-0 is offline (its cameras are not watched)");

        assert!(f.take("gridsight/edge-0/cameras/gate/thumbnail", &[0xff, 0xd8, 0xff, 0xe0]));
        assert_eq!(f.thumbnail("edge-0", "gate").unwrap().len(), 4);
        let (cams, _, _) = f.overview(&mut Vec::new());
        assert_eq!(cams[0]["thumbnail"], "cameras/edge-0/gate/thumbnail.jpg");
        f.take("gridsight/edge-0/cameras/gate/status", b"");
        assert!(f.overview(&mut Vec::new()).0.is_empty(), "an empty retained message removes the camera");

        let alert = |id: &str| {
            serde_json::to_vec(&json!({"schema": "gridsight.alert", "version": 1, "id": id, "type": "new",
                "incident": "edge-0/gate/r/1", "node": "edge-0", "camera": "gate", "rule": "r", "category": "c",
                "severity": "medium", "dispatch": true, "label": "person", "score": 0.9, "track": 1, "zone": null,
                "count": null, "box": null, "micro_grid": null, "grid": null,
                "started_at": "2026-12-05T10:00:00.000Z", "ended_at": null, "snapshot": null}))
            .unwrap()
        };
        for i in 0..150 {
            f.alert(&alert(&format!("a{i}")));
        }
        f.alert(&alert("a149"));
        f.alert(br#"{"id":"not-an-alert"}"#);
        let (_, _, alerts) = f.overview(&mut Vec::new());
        assert_eq!(alerts.len(), RECENT);
        assert_eq!(alerts[0]["id"], "a149");
    }
}
