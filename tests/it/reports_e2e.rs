//! Residents' reports end to end (real HTTP server, real SQLite, real Mosquitto, YuNet):
//!
//!   POST /api/v1/reports (photo with faces and GPS EXIF) ─► 201 + token ─► an order for the
//!   inspector of the micro-grid the point is in ─► the stored photo: no face YuNet finds, no
//!   EXIF ─► edge-node inspector accept / arrive / resolve ─► GET: timeline and note ─► a rating,
//!   once, in /metrics
//!   a second pothole 20 m away joins the order; the hostile set is refused and leaves nothing;
//!   kill -9 right after a report: after the restart, exactly one order for it

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use edge_node::inference::Detector;

/// (status, body) of a request with an optional bearer token and body.
fn http(port: u16, method: &str, path: &str, token: Option<&str>, ctype: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    http_request(port, method, path, &format!("{auth}Content-Type: {ctype}\r\n"), body)
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap_or_else(|_| serde_json::json!({"raw": String::from_utf8_lossy(b)}))
}

const CT: &str = "multipart/form-data; boundary=gridsight-test";

fn form(fields: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(
            format!("--gridsight-test\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    for (k, ctype, data) in files {
        b.extend_from_slice(
            format!("--gridsight-test\r\nContent-Disposition: form-data; name=\"{k}\"; filename=\"x\"\r\nContent-Type: {ctype}\r\n\r\n")
                .as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"--gridsight-test--\r\n");
    b
}

/// The crosswalk photo with an EXIF segment carrying a GPS position put in after SOI.
fn photo_with_gps() -> Vec<u8> {
    let jpeg = std::fs::read(media_dir().join("deface_city.jpg")).unwrap();
    let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08GPSLatitude=31.2304;GPSLongitude=121.4737".to_vec();
    exif.resize(64, 0);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn resident_orders(db: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row("SELECT count(*) FROM orders WHERE node = 'residents'", [], |r| r.get(0)).unwrap()
}

fn reports(db: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row("SELECT count(*) FROM reports", [], |r| r.get(0)).unwrap()
}

#[test]
fn a_report_becomes_an_order_is_resolved_and_rated() {
    let _scenario = crate::common::scenario(module_path!());
    let dir = fresh_dir("reports");
    let port = free_port();
    let _broker = Mosquitto::start(port);
    let http_port = free_port();
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
attach_within = 50
attach_for = "1h"
per_address = 40
reopen_at_most = 2
per_gateway = 6
[dispatch]
stats_interval = "1s"
[[dispatch.routes]]
category = "*"
accept_within = "1h"
[[grid.communities]]
id = "c1"
[[grid.grids]]
id = "g1"
community = "c1"
[[grid.grids]]
id = "g2"
community = "c1"
[[grid.micro_grids]]
id = "m1"
grid = "g1"
polygon = [[121.470, 31.228], [121.478, 31.228], [121.478, 31.234], [121.470, 31.234]]
[[grid.micro_grids]]
id = "m2"
grid = "g2"
polygon = [[121.480, 31.228], [121.488, 31.228], [121.488, 31.234], [121.480, 31.234]]
[[grid.inspectors]]
id = "insp-a"
name = "Inspector A"
grid = "g1"
[[grid.inspectors]]
id = "insp-b"
name = "Inspector B"
grid = "g2"
"#,
            head = node_toml("district", Broker::Mosquitto(port), http_port, &dir.join("data")),
        ),
    )
    .unwrap();
    let db = dir.join("data/dispatch.db");
    let order_events = subscriber_raw(port, "gridsight/dispatch/orders", "reports-orders");
    let mut dispatcher = edge_node("dispatch", &cfg, &dir.join("dispatch-1.log"));
    let logs = |n: u32| std::fs::read_to_string(dir.join(format!("dispatch-{n}.log"))).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), || http(http_port, "GET", "/readyz", None, "text/plain", b"").0 == 200),
        "{}",
        logs(1)
    );

    // 1. A pothole with a photo of people and a GPS position in its EXIF, inside m1.
    let photo = photo_with_gps();
    let models = edge_node::config::load(&root().join("tests/configs/detect.toml")).unwrap().models;
    let mut detector = Detector::new(&models, 1).unwrap();
    let faces_before = faces_in_jpeg(&mut detector, &photo);
    assert!(faces_before >= 5, "the test photo shows {faces_before} faces");
    eprintln!("the photo shows {faces_before} faces");
    assert!(contains(&photo, b"Exif\0\0") && contains(&photo, b"GPSLatitude"));
    let body = form(
        &[("category", "pothole"), ("text", "A deep pothole by the bus stop"), ("lat", "31.2304"), ("lon", "121.4737")],
        &[("photo", "image/jpeg", &photo)],
    );
    let (code, b) = http(http_port, "POST", "/api/v1/reports", None, CT, &body);
    let r1 = json(&b);
    assert_eq!(code, 201, "{r1}\n{}", logs(1));
    let (id, token, order) = (
        r1["id"].as_str().unwrap().to_string(),
        r1["token"].as_str().unwrap().to_string(),
        r1["order"].as_str().unwrap().to_string(),
    );
    let status = |id: &str, token: &str| {
        json(&http(http_port, "GET", &format!("/api/v1/reports/{id}"), Some(token), "text/plain", b"").1)
    };
    let s = status(&id, &token);
    assert_eq!(s["source"], "resident");
    assert_eq!(s["location"]["micro_grid"], "m1");
    assert_eq!(s["location"]["grid"], "g1");
    assert_eq!(s["state"], "assigned", "{s}");

    // The stored photo: no face YuNet finds, no EXIF, no GPS.
    let (code, stored) =
        http(http_port, "GET", &format!("/api/v1/reports/{id}/photo.jpg"), Some(&token), "text/plain", b"");
    assert_eq!(code, 200);
    assert_eq!(faces_in_jpeg(&mut detector, &stored), 0, "a face is recognisable in the stored photo");
    assert!(!contains(&stored, b"Exif") && !contains(&stored, b"GPS"), "metadata survived");
    assert!(image::load_from_memory(&stored).is_ok());
    // The inspectors see the words, the place and the (pixelated) photo.
    let events = || -> Vec<serde_json::Value> { order_events.lock().unwrap().iter().map(|(_, p)| json(p)).collect() };
    let created = wait_until(Duration::from_secs(60), || {
        let ev = events();
        let mine = |e: &serde_json::Value| e["order"]["id"] == order.as_str();
        ev.iter().any(|v| {
            mine(v)
                && v["event"] == "created"
                && v["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("A deep pothole by the bus stop") && d.contains("(m1)"))
        }) && ev.iter().any(|v| mine(v) && v["event"] == "assigned" && v["order"]["assignee"] == "insp-a")
    });
    assert!(created, "no created event with the report's text and place: {:#?}", events());
    let (code, seen) = http(http_port, "GET", &format!("/reports/{id}/photo.jpg"), None, "text/plain", b"");
    assert_eq!((code, seen.len()), (200, stored.len()), "the inspectors' photo is the stored one");

    // 2. A second pothole 20 m away joins the order; litter at the same spot makes its own.
    let near = form(
        &[
            ("category", "pothole"),
            ("text", "Same hole, seen from the other side"),
            ("lat", "31.23058"),
            ("lon", "121.4737"),
        ],
        &[],
    );
    let r2 = json(&http(http_port, "POST", "/api/v1/reports", None, CT, &near).1);
    assert_eq!(r2["attached"], true, "{r2}");
    eprintln!("first report {r1}\nsecond, 20 m away {r2}");
    assert_eq!(r2["order"], order.as_str());
    let litter = form(&[("category", "litter"), ("text", "Bags left on the kerb"), ("micro_grid", "m2")], &[]);
    let r3 = json(&http(http_port, "POST", "/api/v1/reports", None, CT, &litter).1);
    assert_eq!(r3["attached"], false, "{r3}");
    assert_ne!(r3["order"], order.as_str());
    assert_eq!(status(r3["id"].as_str().unwrap(), r3["token"].as_str().unwrap())["location"]["grid"], "g2");

    // 3. A rating before the order is resolved is refused.
    let rate = |id: &str, token: &str, body: &str| {
        let (c, b) = http(
            http_port,
            "POST",
            &format!("/api/v1/reports/{id}/rating"),
            Some(token),
            "application/json",
            body.as_bytes(),
        );
        (c, json(&b))
    };
    let (c, b) = rate(&id, &token, r#"{"rating": 4}"#);
    assert_eq!(c, 409, "{b}");

    // 4. The inspector of g1 handles it with the helper.
    for (action, extra) in [("accept", vec![]), ("arrive", vec![]), ("resolve", vec!["--note", "filled with asphalt"])]
    {
        let out = Command::new(env!("CARGO_BIN_EXE_edge-node"))
            .args(["inspector", "--config"])
            .arg(&cfg)
            .args(["--id", "insp-a", action, &order])
            .args(&extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{action}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let s = status(&id, &token);
    assert_eq!(s["state"], "resolved", "{s}");
    assert_eq!(s["note"], "filled with asphalt");
    let steps: Vec<&str> = s["timeline"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(steps, ["reported", "assigned", "accepted", "on_site", "resolved"], "{s}");
    // 5. The rating: once, and in the statistics.
    let (c, b) = rate(&id, &token, r#"{"rating": 4, "comment": "quick, thanks"}"#);
    assert_eq!((c, &b["reopened"]), (200, &serde_json::json!(false)), "{b}");
    let (c, b) = rate(&id, &token, r#"{"rating": 5}"#);
    assert_eq!(c, 409, "{b}");
    assert_eq!(status(&id, &token)["rating"], 4);
    // The second reporter is not content (at or below reopen_at_most): the order opens again
    // and goes back to the grid's inspector; both reporters see it.
    let (id2, token2) = (r2["id"].as_str().unwrap(), r2["token"].as_str().unwrap());
    let (c, b) = rate(id2, token2, r#"{"rating": 2, "comment": "still a hole"}"#);
    assert_eq!((c, &b["reopened"]), (200, &serde_json::json!(true)), "{b}");
    let s = status(&id, &token);
    assert_eq!(s["state"], "assigned", "{s}");
    let reopened = s["timeline"].as_array().unwrap().iter().find(|e| e["event"] == "reopened").cloned();
    assert!(
        reopened.as_ref().is_some_and(|e| e["detail"].as_str().unwrap().contains("2/5")),
        "no reopened step in {s}"
    );
    assert!(
        s["timeline"].as_array().unwrap().iter().all(|e| e.get("by").is_none()),
        "inspectors are not named to residents: {s}"
    );
    let reassigned = wait_until(Duration::from_secs(60), || {
        events().iter().any(|v| {
            v["order"]["id"] == order.as_str() && v["event"] == "reassigned" && v["order"]["assignee"] == "insp-a"
        })
    });
    assert!(reassigned, "the reopened order was not given back to g1: {:#?}", events());
    let metrics = || String::from_utf8(http(http_port, "GET", "/metrics", None, "text/plain", b"").1).unwrap();
    let want = [
        r#"gridsight_reports_rating_mean{grid="g1",category="pothole"} 3"#,
        r#"gridsight_reports{grid="g1",category="pothole"} 2"#,
        r#"gridsight_reports_rated{grid="g1",category="pothole"} 2"#,
        r#"gridsight_orders_reopened{grid="g1",category="pothole"} 1"#,
    ];
    assert!(wait_until(Duration::from_secs(60), || want.iter().all(|w| metrics().contains(w))), "{}", metrics());
    promtool_check(&metrics()).unwrap_or_else(|e| panic!("promtool: {e}"));
    let stats = subscriber_raw(port, "gridsight/dispatch/stats", "reports-stats");
    assert!(wait_until(Duration::from_secs(60), || {
        stats.lock().unwrap().iter().any(|(_, p)| {
            json(p)["groups"].as_array().is_some_and(|g| {
                g.iter().any(|g| {
                    g["grid"] == "g1"
                        && g["reports"] == 2
                        && g["rated"] == 2
                        && g["rating_mean"] == 3.0
                        && g["reopened"] == 1
                })
            })
        })
    }));

    // 6. The hostile set: each refused with a reason, nothing stored.
    let before = (reports(&db), resident_orders(&db));
    let ok_fields = [("category", "pothole"), ("text", "x"), ("lat", "31.2304"), ("lon", "121.4737")];
    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (form(&ok_fields, &[("photo", "image/jpeg", b"this is not a picture")]), CT, 400, "not an image"),
        (form(&[("category", "graffiti"), ("text", "x"), ("micro_grid", "m1")], &[]), CT, 400, "unknown category"),
        (form(&[("category", "pothole"), ("text", "x"), ("lat", "95"), ("lon", "121.47")], &[]), CT, 400, "lat"),
        (form(&[("category", "pothole"), ("text", "x"), ("lat", "31.0"), ("lon", "121.0")], &[]), CT, 422, "outside"),
        (form(&[("category", "pothole"), ("micro_grid", "m1")], &[]), CT, 400, "missing field text"),
        (form(&[("category", "pothole"), ("text", "x")], &[]), CT, 400, "missing location"),
        (form(&[("category", "pothole"), ("text", "x"), ("micro_grid", "m9")], &[]), CT, 400, "unknown micro_grid"),
        (form(&ok_fields, &[("audio", "text/plain", b"not audio")]), CT, 400, "not audio"),
        (b"{\"category\": \"pothole\"}".to_vec(), "application/json", 400, "multipart"),
    ];
    for (body, ctype, want, reason) in &cases {
        let (c, b) = http(http_port, "POST", "/api/v1/reports", None, ctype, body);
        let v = json(&b);
        assert_eq!(c, *want, "{reason}: {v}");
        assert!(v["reason"].as_str().unwrap_or("").contains(reason), "{reason}: {v}");
    }
    // Oversized: refused on its Content-Length, before the body is sent.
    {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http_port)).unwrap();
        write!(
            s,
            "POST /api/v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: {CT}\r\nContent-Length: {}\r\n\r\n",
            64 << 20
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = vec![0u8; 512];
        let n = s.read(&mut out).unwrap_or(0);
        assert!(
            String::from_utf8_lossy(&out[..n]).starts_with("HTTP/1.1 413"),
            "{}",
            String::from_utf8_lossy(&out[..n])
        );
    }
    // A wrong token, a bad rating.
    assert_eq!(
        http(
            http_port,
            "GET",
            &format!("/api/v1/reports/{id}"),
            Some("0123456789abcdef0123456789abcdef"),
            "text/plain",
            b""
        )
        .0,
        403
    );
    assert_eq!(http(http_port, "GET", &format!("/api/v1/reports/{id}"), None, "text/plain", b"").0, 403);
    assert_eq!(rate(r3["id"].as_str().unwrap(), r3["token"].as_str().unwrap(), r#"{"rating": 6}"#).0, 400);
    assert_eq!(rate(r3["id"].as_str().unwrap(), r3["token"].as_str().unwrap(), "rating=5").0, 400);
    assert_eq!((reports(&db), resident_orders(&db)), before, "a refused request changed something");
    // A flood from one address: 429 once over per_address (40 a minute).
    let junk = form(&[("category", "graffiti")], &[]);
    let codes: Vec<u16> = (0..40).map(|_| http(http_port, "POST", "/api/v1/reports", None, CT, &junk).0).collect();
    assert!(codes.contains(&429), "{codes:?}");
    let (c, b) = http(http_port, "POST", "/api/v1/reports", None, CT, &junk);
    assert_eq!(c, 429);
    assert!(json(&b)["reason"].as_str().unwrap().contains("too many"));

    // One token polling too fast: 429 beyond per_token (20 a minute).
    let (r3id, r3tok) = (r3["id"].as_str().unwrap().to_string(), r3["token"].as_str().unwrap().to_string());
    let polls: Vec<u16> = (0..25)
        .map(|_| http(http_port, "GET", &format!("/api/v1/reports/{r3id}"), Some(&r3tok), "text/plain", b"").0)
        .collect();
    assert!(polls.contains(&429) && polls[0] == 200, "{polls:?}");

    // 7. An app's gateway reports over MQTT: answered on its reply topic, a repeat changes nothing.
    let replies = subscriber_raw(port, "gridsight/dispatch/reports/replies/app-1", "reports-replies");
    std::thread::sleep(Duration::from_millis(500));
    let mut opts = rumqttc::MqttOptions::new("reports-gateway", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let client = crate::common::publisher(opts, 10);
    let before_mqtt = reports(&db);
    let good = r#"{"id": "q-1", "category": "litter", "text": "Boxes by the gate", "lat": 31.2320, "lon": 121.4720}"#;
    for payload in [good, good, r#"{"id": "q-2", "category": "graffiti", "text": "x", "micro_grid": "m1"}"#, "not json"]
    {
        client.publish("gridsight/dispatch/reports/in/app-1", rumqttc::QoS::AtLeastOnce, false, payload).unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(60), || replies.lock().unwrap().len() >= 4),
        "{} replies",
        replies.lock().unwrap().len()
    );
    let got: Vec<serde_json::Value> = replies.lock().unwrap().iter().map(|(_, p)| json(p)).collect();
    let q1: Vec<&serde_json::Value> = got.iter().filter(|r| r["request"] == "q-1").collect();
    assert_eq!(q1.len(), 2, "{got:?}");
    assert!(q1[0]["ok"] == true && q1[0]["duplicate"] == false, "{got:?}");
    assert!(q1[1]["duplicate"] == true && q1[1]["id"] == q1[0]["id"], "the repeat gets the same answer: {got:?}");
    let q2 = got.iter().find(|r| r["request"] == "q-2").unwrap();
    assert!(q2["ok"] == false && q2["reason"].as_str().unwrap().contains("unknown category"), "{q2}");
    assert!(got.iter().any(|r| r["request"].is_null() && r["ok"] == false), "not JSON is answered too: {got:?}");
    assert_eq!(reports(&db), before_mqtt + 1, "one report for the request, whatever the repeats");
    let s = status(q1[0]["id"].as_str().unwrap(), q1[0]["token"].as_str().unwrap());
    assert_eq!(s["location"]["micro_grid"], "m1", "{s}");
    // A flood through one gateway (per_gateway = 6 a minute; 3 counted so far): the 7th is
    // answered "retry" and stores nothing, not even its answer.
    let flood = |n: u32| format!(r#"{{"id": "f-{n}", "category": "graffiti", "text": "x", "micro_grid": "m1"}}"#);
    for n in 1..=4 {
        client.publish("gridsight/dispatch/reports/in/app-1", rumqttc::QoS::AtLeastOnce, false, flood(n)).unwrap();
    }
    let answer = |id: &str| -> Option<serde_json::Value> {
        replies.lock().unwrap().iter().map(|(_, p)| json(p)).find(|r| r["request"] == id)
    };
    assert!(wait_until(Duration::from_secs(60), || answer("f-4").is_some()), "no answer to f-4");
    assert!(answer("f-3").unwrap()["reason"].as_str().unwrap().contains("unknown category"));
    let f4 = answer("f-4").unwrap();
    assert!(f4["retry"] == true && f4["reason"].as_str().unwrap().contains("too many"), "{f4}");
    let conn = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let kept: i64 = conn.query_row("SELECT count(*) FROM updates WHERE id = 'f-4'", [], |r| r.get(0)).unwrap();
    assert_eq!((kept, reports(&db)), (0, before_mqtt + 1), "a refused flood left something");

    // 8. kill -9 right after a report is accepted: after the restart it has one order.
    let orders_before = resident_orders(&db);
    let late = form(&[("category", "litter"), ("text", "More bags"), ("micro_grid", "m1")], &[]);
    // A fresh address budget: the restart resets the in-memory limits.
    dispatcher.0.kill().unwrap();
    let _ = dispatcher.0.wait();
    dispatcher = edge_node("dispatch", &cfg, &dir.join("dispatch-2.log"));
    assert!(
        wait_until(Duration::from_secs(20), || http(http_port, "GET", "/readyz", None, "text/plain", b"").0 == 200),
        "{}",
        logs(2)
    );
    let (c, b) = http(http_port, "POST", "/api/v1/reports", None, CT, &late);
    assert_eq!(c, 201, "{}", String::from_utf8_lossy(&b));
    let r4 = json(&b);
    dispatcher.0.kill().unwrap();
    let _ = dispatcher.0.wait();
    let _d3 = edge_node("dispatch", &cfg, &dir.join("dispatch-3.log"));
    assert!(
        wait_until(Duration::from_secs(20), || http(http_port, "GET", "/readyz", None, "text/plain", b"").0 == 200),
        "{}",
        logs(3)
    );
    assert_eq!(resident_orders(&db), orders_before + 1, "exactly one order for the report accepted before the crash");
    let s = status(r4["id"].as_str().unwrap(), r4["token"].as_str().unwrap());
    assert_eq!(s["order"], r4["order"], "{s}");
    let _ = std::fs::remove_dir_all(&dir);
}
