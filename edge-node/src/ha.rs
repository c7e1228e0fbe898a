//! ha: Home Assistant MQTT discovery (`[home_assistant] enabled = true`; off by default).
//!
//! The node is one device (`gridsight_<node>`: connectivity from its Last Will, outbox
//! backlog); each camera is a device `via_device` the node's, with a `state` and an `fps`
//! sensor (from the camera's retained status), an `event` entity for its rules' violations
//! (`<prefix>/<node>/cameras/<camera>/event`, one message per `new` alert, `event_type` =
//! the alert's category) and an `image` entity for the last snapshot
//! (`<prefix>/<node>/cameras/<camera>/snapshot`: the alert snapshots, retained, and the
//! `snapshot` command's). Every entity is available while the node's availability topic says
//! `online`. Configs are retained; they go out at start, after a reload (a removed camera's
//! are deleted with an empty retained message) and whenever Home Assistant's birth message
//! (`online` on `birth_topic`) arrives.

use serde_json::{Value, json};

use crate::config::{Config, HomeAssistant};
use crate::contract::Topics;
use crate::outbox::{Kind, Message};

/// The discovery config topics of a config (to delete those no longer in it).
pub fn config_topics(config: &Config, ha: &HomeAssistant) -> Vec<String> {
    configs(config, ha, &crate::mqtt::topics_of(config)).into_iter().map(|(t, _)| t).collect()
}

fn entity(ha: &HomeAssistant, component: &str, node: &str, object: &str) -> String {
    format!("{}/{component}/gridsight_{node}/{object}/config", ha.discovery_prefix)
}

/// (topic, payload) of every discovery config of this node.
pub fn configs(config: &Config, ha: &HomeAssistant, topics: &Topics) -> Vec<(String, Value)> {
    let node = &config.node.id;
    let node_device = format!("gridsight_{node}");
    let availability = json!([{
        "topic": topics.availability(node), "payload_available": "online", "payload_not_available": "offline",
    }]);
    let origin = json!({"name": "gridsight", "sw": env!("CARGO_PKG_VERSION")});
    let mut out = Vec::new();
    let device = json!({
        "identifiers": [node_device], "name": config.node.name, "manufacturer": "gridsight",
        "model": "edge-node", "sw_version": env!("CARGO_PKG_VERSION"),
    });
    out.push((
        entity(ha, "binary_sensor", node, "connectivity"),
        json!({
            "name": "Connected", "unique_id": format!("{node_device}_connectivity"), "device_class": "connectivity",
            "state_topic": topics.availability(node), "payload_on": "online", "payload_off": "offline",
            "device": device, "origin": origin,
        }),
    ));
    out.push((
        entity(ha, "sensor", node, "outbox"),
        json!({
            "name": "Outbox backlog", "unique_id": format!("{node_device}_outbox"), "icon": "mdi:tray-full",
            "state_topic": topics.node_status(node), "value_template": "{{ value_json.outbox_pending }}",
            "state_class": "measurement", "availability": availability, "device": device, "origin": origin,
        }),
    ));
    for cam in config.cameras.iter().filter(|c| c.here && c.enabled) {
        let id = format!("{node_device}_{}", cam.id);
        let device = json!({
            "identifiers": [id], "name": cam.name, "manufacturer": "gridsight", "model": "camera",
            "via_device": node_device,
        });
        let status = topics.camera_status(node, &cam.id);
        let common = |name: &str, what: &str| {
            json!({"name": name, "unique_id": format!("{id}_{what}"), "availability": availability,
                   "device": device, "origin": origin})
        };
        let mut state = common("State", "state");
        state["state_topic"] = status.clone().into();
        state["value_template"] = "{{ value_json.state }}".into();
        state["icon"] = "mdi:cctv".into();
        out.push((entity(ha, "sensor", node, &format!("{}_state", cam.id)), state));
        let mut fps = common("Frames per second", "fps");
        fps["state_topic"] = status.into();
        fps["value_template"] = "{{ value_json.fps_in }}".into();
        fps["unit_of_measurement"] = "fps".into();
        fps["state_class"] = "measurement".into();
        out.push((entity(ha, "sensor", node, &format!("{}_fps", cam.id)), fps));
        let mut image = common("Last snapshot", "snapshot");
        image["image_topic"] = topics.camera_snapshot(node, &cam.id).into();
        image["content_type"] = "image/jpeg".into();
        out.push((entity(ha, "image", node, &format!("{}_snapshot", cam.id)), image));
        let mut kinds: Vec<&str> = cam.rules.iter().map(|r| r.category.as_str()).collect();
        kinds.sort();
        kinds.dedup();
        if !kinds.is_empty() {
            let mut event = common("Violation", "violation");
            event["state_topic"] = camera_event_topic(topics, node, &cam.id).into();
            event["event_types"] = kinds.into();
            out.push((entity(ha, "event", node, &format!("{}_violation", cam.id)), event));
        }
    }
    out
}

/// Where a camera's violations go for its `event` entity.
pub fn camera_event_topic(topics: &Topics, node: &str, camera: &str) -> String {
    format!("{}/{node}/cameras/{camera}/event", topics.prefix())
}

/// The discovery messages to publish now: every config, and an empty retained message for
/// each topic of `before` that is no longer one (a removed camera's entities).
pub fn messages(config: &Config, ha: &HomeAssistant, before: &[String]) -> Vec<Message> {
    let topics = crate::mqtt::topics_of(config);
    let now = configs(config, ha, &topics);
    let mut out: Vec<Message> = before
        .iter()
        .filter(|t| !now.iter().any(|(n, _)| n == *t))
        .map(|t| Message { topic: t.clone(), payload: Vec::new(), retain: true, kind: Kind::Status })
        .collect();
    out.extend(now.into_iter().map(|(topic, v)| Message {
        topic,
        payload: serde_json::to_vec(&v).unwrap_or_default(),
        retain: true,
        kind: Kind::Status,
    }));
    out
}

/// For a stored `new` alert: its violation event, and its snapshot as the camera's last one.
pub fn alert_messages(topics: &Topics, alert: &crate::contract::Alert, jpeg: Option<Vec<u8>>) -> Vec<Message> {
    let (node, camera) = (alert.node.as_str(), alert.camera.as_str());
    if alert.kind != crate::contract::AlertType::New {
        return Vec::new();
    }
    let event = json!({
        "event_type": alert.category, "alert": alert.id, "rule": alert.rule, "zone": alert.zone,
        "label": alert.label, "severity": alert.severity, "clip": alert.clip,
    });
    let mut out = vec![Message {
        topic: camera_event_topic(topics, node, camera),
        payload: serde_json::to_vec(&event).unwrap_or_default(),
        retain: false,
        kind: Kind::Status,
    }];
    if let Some(jpeg) = jpeg {
        out.push(Message {
            topic: topics.camera_snapshot(node, camera),
            payload: jpeg,
            retain: true,
            kind: Kind::Snapshot,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_on_when_asked() {
        let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");
        let text = format!(
            "version = 1\n[node]\nid = \"n\"\n[storage]\nmodels_dir = \"{models}\"\n[models.objects]\nfile = \"yolox_nano.onnx\"\n[[cameras]]\nid = \"gate\"\nurl = \"rtsp://h/a\"\n[cameras.zones.z]\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\n[[cameras.rules]]\nid = \"r\"\nkind = \"zone_enter\"\ncategory = \"intrusion\"\nzone = \"z\"\nclasses = [\"person\"]\n"
        );
        let off = crate::config::parse(&text, std::path::Path::new(".")).unwrap();
        assert!(off.home_assistant.is_none());
        let on = crate::config::parse(&format!("{text}[home_assistant]\nenabled = true\n"), std::path::Path::new("."))
            .unwrap();
        let ha = on.home_assistant.clone().unwrap();
        assert_eq!(ha.birth_topic, "homeassistant/status");
        let m = messages(&on, &ha, &["homeassistant/sensor/gridsight_n/old_state/config".into()]);
        assert!(m[0].payload.is_empty() && m[0].retain, "a removed entity is deleted first");
        let topics: Vec<&str> = m.iter().map(|m| m.topic.as_str()).collect();
        for want in [
            "homeassistant/binary_sensor/gridsight_n/connectivity/config",
            "homeassistant/sensor/gridsight_n/gate_state/config",
            "homeassistant/sensor/gridsight_n/gate_fps/config",
            "homeassistant/image/gridsight_n/gate_snapshot/config",
            "homeassistant/event/gridsight_n/gate_violation/config",
        ] {
            assert!(topics.contains(&want), "{want} not in {topics:?}");
        }
        let event: Value =
            serde_json::from_slice(&m.iter().find(|m| m.topic.contains("violation")).unwrap().payload).unwrap();
        assert_eq!(event["event_types"], json!(["intrusion"]));
        assert_eq!(event["device"]["via_device"], "gridsight_n");
        let bad = crate::config::parse(
            &format!("{text}[home_assistant]\nenabled = true\ndiscovery_prefix = \"ha/#\"\n"),
            std::path::Path::new("."),
        );
        assert!(bad.is_err());
    }
}
