//! The embedded broker, and commands over MQTT, including hostile ones.
//!
//!   edge-node run (no [mqtt]: embedded rumqttd on a free port) ◄─► test client
//!   1. availability `online` (retained), node status published
//!   2. hostile payloads on `<prefix>/<node>/commands` (bad JSON, wrong types, 1 MiB,
//!      binary, deep nesting, unknown command, a flood of 3000) ⇒ refused with a logged
//!      reason and a reply (rate-limited), each counted exactly once in the log's
//!      `suppressed=` counts; the node keeps answering (`ping` right after the flood);
//!      a burst of 300 pings ⇒ 300 replies (pong, or busy: try again)
//!   3. `status` ⇒ fresh status; `reload` with a broken file ⇒ refused, running config kept
//!   4. SIGTERM ⇒ exit 0, availability `offline`

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

fn config(dir: &std::path::Path, port: u16, http: u16, extra: &str) -> String {
    format!(
        r#"{head}{extra}
"#,
        head = node_toml_with(
            "ctl",
            Broker::Embedded(port),
            http,
            &dir.join("data"),
            More { node: "time_zone = \"UTC+08:00\"", ..More::default() }
        ),
    )
}

fn replies(got: &Received) -> Vec<serde_json::Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| t == "gridsight/ctl/commands/reply")
        .filter_map(|(_, p)| serde_json::from_slice(p).ok())
        .collect()
}

fn reply_to(got: &Received, id: &str) -> Option<serde_json::Value> {
    replies(got).into_iter().find(|r| r["id"] == id)
}

#[test]
fn commands_and_hostile_input_over_the_embedded_broker() {
    let _scenario = crate::common::scenario(module_path!());
    let dir = fresh_dir("ctl");
    let port = free_port();
    let path = dir.join("node.toml");
    let http = free_port();
    std::fs::write(&path, config(&dir, port, http, "")).unwrap();
    let log_path = dir.join("node.log");
    let mut child = edge_node("run", &path, &log_path);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let (got, subscribed) = subscriber_with_state(port, "gridsight/ctl/#", "ctl");
    assert!(
        wait_until(Duration::from_secs(30), || subscribed.load(std::sync::atomic::Ordering::SeqCst)),
        "embedded broker did not start:\n{}",
        log()
    );
    let seen = |topic: &str, payload: &str| {
        got.lock().unwrap().iter().any(|(t, p)| t == topic && (payload.is_empty() || p == payload.as_bytes()))
    };
    assert!(wait_until(Duration::from_secs(20), || seen("gridsight/ctl/availability", "online")), "{}", log());

    // A client of the test's own, to send commands.
    let mut opts = rumqttc::MqttOptions::new("test-sender", "127.0.0.1", port);
    opts.set_max_packet_size(4 << 20, 4 << 20);
    let client = crate::common::publisher(opts, 4000);
    let send =
        |payload: Vec<u8>| client.publish("gridsight/ctl/commands", rumqttc::QoS::AtLeastOnce, false, payload).unwrap();

    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("bad json", br#"{"id":"h1","command":"#.to_vec()),
        ("wrong type", br#"{"id":"h2","command":42}"#.to_vec()),
        ("unknown command", br#"{"id":"h3","command":"rm -rf /"}"#.to_vec()),
        ("unknown field", br#"{"id":"h4","command":"ping","as_root":true}"#.to_vec()),
        ("binary", vec![0xff, 0x00, 0xfe, 0x13, 0x37]),
        ("deep nesting", "[".repeat(50_000).into_bytes()),
        ("1 MiB", vec![b'{'; 1 << 20]),
    ];
    for (_, p) in &hostile {
        send(p.clone());
    }
    // h1 is cut short, so its id cannot be read; the others are echoed. 6 replies: the
    // 1 MiB payload is refused by the link before parsing and not answered.
    assert!(wait_until(Duration::from_secs(60), || replies(&got).len() >= 6), "{:?}\n{}", replies(&got), log());
    for i in 2..=4 {
        let r = reply_to(&got, &format!("h{i}")).unwrap();
        assert_eq!(r["ok"], false, "{r}");
        assert!(r["reason"].as_str().is_some_and(|s| s.len() > 10), "{r}");
    }
    // The 1 MiB one was sent last and is not answered: wait for its log line.
    assert!(
        wait_until(Duration::from_secs(60), || log().contains("over the 65536 byte limit")),
        "the 1 MiB payload is refused by size:\n{}",
        log()
    );
    assert!(log().contains("inbound message refused"));

    // A flood of garbage, then a ping: still answered promptly.
    for i in 0..3000 {
        send(format!("garbage {i}").into_bytes());
    }
    send(br#"{"id":"p1","command":"ping"}"#.to_vec());
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || reply_to(&got, "p1").is_some()),
        "no pong after the flood:\n{}",
        log()
    );
    println!("pong {} ms after the flood", t0.elapsed().as_millis());
    assert_eq!(reply_to(&got, "p1").unwrap()["detail"], "pong");
    // Refusal replies are rate-limited: far fewer than 3000.
    let refused = replies(&got).iter().filter(|r| r["ok"] == false).count();
    assert!(refused < 200, "{refused} refusal replies");
    // ... but every refusal is counted exactly once: the logged lines plus their
    // `suppressed=` counts (the remainder is logged within ~10 s) make 6 hostile + 3000.
    let counted = || {
        log()
            .lines()
            .filter(|l| l.contains("inbound message") && !l.contains("byte limit"))
            .map(|l| {
                let n = l.split("suppressed=").nth(1).and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok());
                u64::from(l.contains("inbound message refused:")) + n.unwrap_or(0)
            })
            .sum::<u64>()
    };
    assert!(wait_until(Duration::from_secs(60), || counted() >= 3006), "counted {}:\n{}", counted(), log());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(counted(), 3006, "refusals logged + suppressed");

    // A burst of valid commands: every one gets a reply with its id (pong, or busy).
    for i in 0..300 {
        send(format!(r#"{{"id":"burst-{i}","command":"ping"}}"#).into_bytes());
    }
    let answered = || (0..300).filter(|i| reply_to(&got, &format!("burst-{i}")).is_some()).count();
    assert!(wait_until(Duration::from_secs(30), || answered() == 300), "{} of 300 answered:\n{}", answered(), log());
    let pongs = (0..300).filter(|i| reply_to(&got, &format!("burst-{i}")).unwrap()["detail"] == "pong").count();
    for i in 0..300 {
        let r = reply_to(&got, &format!("burst-{i}")).unwrap();
        assert!(r["detail"] == "pong" || r["reason"].as_str().is_some_and(|s| s.starts_with("busy")), "{r}");
    }
    println!("burst of 300 pings: {pongs} pong, {} busy", 300 - pongs);
    assert!(pongs >= 64, "at least a queue's worth is served: {pongs}");

    // status: a fresh node status; reload of a broken file: refused, nothing changes.
    got.lock().unwrap().retain(|(t, _)| !t.ends_with("/status"));
    send(br#"{"id":"s1","command":"status"}"#.to_vec());
    assert!(wait_until(Duration::from_secs(60), || reply_to(&got, "s1").is_some() && seen("gridsight/ctl/status", "")));
    std::fs::write(&path, config(&dir, port, http, "[[cameras]]\nid = \"Bad Id\"\n")).unwrap();
    send(br#"{"id":"r1","command":"reload"}"#.to_vec());
    assert!(wait_until(Duration::from_secs(60), || reply_to(&got, "r1").is_some()));
    let r = reply_to(&got, "r1").unwrap();
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["reason"].as_str().unwrap().contains("cameras[0]"), "{r}");
    assert!(child.0.try_wait().unwrap().is_none(), "the node died:\n{}", log());

    // The HTTP endpoints.
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(get("/healthz").starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").starts_with("HTTP/1.1 200"), "connected to its broker");
    let metrics = get("/metrics");
    assert!(
        metrics.contains("gridsight_mqtt_connected 1") && metrics.contains("gridsight_outbox_pending"),
        "{metrics}"
    );
    assert!(get("/status").contains("\"node\": \"ctl\""));
    // The exposition is valid for Prometheus: promtool finds nothing to say about it.
    let body = metrics.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    promtool_check(body).unwrap_or_else(|e| panic!("promtool: {e}\n{body}"));

    Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{}", log());
    assert!(log().contains("time_zone=<+0800>-08:00"), "{}", log());
}
