//! `edge-node dispatch` with a real Mosquitto, fake nodes publishing alerts, and the
//! `edge-node inspector` helper acting as inspectors' apps.
//!
//!   nodes n1, n2 ─► alerts ─► Mosquitto ─► edge-node dispatch ─► orders ─► subscriber
//!                                ▲                              │
//!   edge-node inspector a1 ──────┘ accept / arrive / resolve ◄──┘ replies
//!   1. two incidents (one alerted twice) ⇒ two orders, assigned; a1 closes one with the
//!      helper; a2 trying to accept a1's order is refused with a reason
//!   2. the dispatcher is killed (SIGKILL) and stays down a minute while the nodes publish 20
//!      more alerts; restarted, it makes every one an order, and no order twice

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn config(dir: &std::path::Path, port: u16, http: u16) -> std::path::PathBuf {
    let text = format!(
        r#"{head}[dispatch]
stats_interval = "2s"
[[dispatch.routes]]
category = "illegal_parking"
priority = "high"
accept_within = "1h"
[[grid.communities]]
id = "c1"
[[grid.grids]]
id = "g1"
community = "c1"
leader = "lead"
[[grid.micro_grids]]
id = "m1"
grid = "g1"
[[grid.inspectors]]
id = "a1"
name = "Inspector One"
grid = "g1"
[[grid.inspectors]]
id = "a2"
name = "Inspector Two"
grid = "g1"
[[grid.inspectors]]
id = "lead"
name = "Grid Leader"
grid = "g1"
duty = ["sun 03:00-03:01"]
"#,
        head = node_toml("district", Broker::Mosquitto(port), http, &dir.join("data")),
    );
    let path = dir.join("dispatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn dispatcher(config: &std::path::Path, n: u32) -> KillOnDrop {
    edge_node("dispatch", config, &config.with_file_name(format!("dispatch-{n}.log")))
}

fn log(config: &std::path::Path, n: u32) -> String {
    std::fs::read_to_string(config.with_file_name(format!("dispatch-{n}.log"))).unwrap_or_default()
}

fn inspector(config: &std::path::Path, id: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-node"))
        .args(["inspector", "--config"])
        .arg(config)
        .args(["--id", id])
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), v)
}

fn alert(node: &str, n: usize, camera: &str) -> Vec<u8> {
    let id = format!("{node}-alert-{n:03}");
    serde_json::to_vec(&serde_json::json!({
        "schema": "gridsight.alert", "version": 1, "id": id, "type": "new", "incident": format!("{node}/{camera}/park/1"),
        "node": node, "camera": camera, "rule": "park", "category": "illegal_parking", "severity": "medium",
        "dispatch": true, "label": "car", "score": 0.9, "track": 3, "zone": "kerb", "count": null,
        "micro_grid": "m1", "grid": "g1", "started_at": "2026-11-30T10:00:00.000Z", "ended_at": null, "snapshot": null,
    }))
    .unwrap()
}

/// Order events seen on the orders topic: (event, order id).
fn order_events(got: &Received) -> Vec<(String, String)> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| t == "gridsight/dispatch/orders")
        .filter_map(|(_, p)| {
            let v: serde_json::Value = serde_json::from_slice(p).ok()?;
            Some((v["event"].as_str()?.to_string(), v["order"]["id"].as_str()?.to_string()))
        })
        .collect()
}

fn created(got: &Received) -> Vec<String> {
    order_events(got).into_iter().filter(|(e, _)| e == "created").map(|(_, o)| o).collect()
}

#[test]
fn alerts_become_orders_inspectors_close_them_and_downtime_loses_nothing() {
    let _scenario = crate::common::scenario(module_path!());
    let dir = fresh_dir("dispatch-e2e");
    let port = free_port();
    let _broker = Mosquitto::start(port);
    let http = free_port();
    let cfg = config(&dir, port, http);
    let (got, subscribed) = subscriber_with_state(port, "gridsight/dispatch/#", "dispatch-e2e");
    assert!(wait_until(Duration::from_secs(30), || subscribed.load(std::sync::atomic::Ordering::SeqCst)));

    let mut d = dispatcher(&cfg, 1);
    assert!(
        wait_until(Duration::from_secs(30), || log(&cfg, 1).contains("mqtt connected")),
        "dispatcher did not connect:\n{}",
        log(&cfg, 1)
    );
    // The nodes: a client that publishes alerts at QoS 1.
    let nodes = crate::common::publisher(rumqttc::MqttOptions::new("fake-nodes", "127.0.0.1", port), 100);
    let publish = |node: &str, n: usize, camera: &str| {
        nodes
            .publish(format!("gridsight/{node}/alerts"), rumqttc::QoS::AtLeastOnce, false, alert(node, n, camera))
            .unwrap()
    };

    // 1. Two incidents, one alerted twice.
    publish("n1", 1, "gate");
    publish("n1", 2, "gate");
    publish("n2", 1, "market");
    assert!(
        wait_until(Duration::from_secs(60), || created(&got).len() == 2),
        "{:?}\n{}",
        order_events(&got),
        log(&cfg, 1)
    );
    assert!(wait_until(Duration::from_secs(60), || order_events(&got).iter().any(|(e, _)| e == "alert_attached")));
    let gate = "o-n1-alert-001";
    assert_eq!(created(&got), [gate, "o-n2-alert-001"]);
    let assigned: Vec<String> = got
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| t.starts_with("gridsight/dispatch/inspectors/"))
        .map(|(t, _)| t.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(assigned, ["a1", "a2"], "each inspector told of their order on their contact topic");

    let (code, reply) = inspector(&cfg, "a2", &["accept", gate]);
    assert_eq!(code, 1, "{reply}");
    assert!(reply["reason"].as_str().unwrap().contains("only the assignee (a1)"), "{reply}");
    for action in ["accept", "arrive", "resolve"] {
        let (code, reply) = inspector(&cfg, "a1", &[action, gate, "--note", "done"]);
        assert_eq!(code, 0, "{action}: {reply}\n{}", log(&cfg, 1));
    }
    let (code, reply) = inspector(&cfg, "a1", &["cancel", "o-n2-alert-001"]);
    assert_eq!(code, 1, "not a1's order, and no reason: {reply}");
    assert!(wait_until(Duration::from_secs(60), || order_events(&got).contains(&("resolved".into(), gate.into()))));
    // Statistics are published (retained) every 2 s.
    assert!(wait_until(Duration::from_secs(60), || got
        .lock()
        .unwrap()
        .iter()
        .any(|(t, p)| t == "gridsight/dispatch/stats"
            && serde_json::from_slice::<serde_json::Value>(p).is_ok_and(|v| v["groups"][0]["resolved"] == 1))));

    // The same figures as Prometheus metrics.
    let metrics = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let m = metrics();
    assert!(m.contains("gridsight_orders_created{grid=\"g1\",category=\"illegal_parking\"} 2"), "{m}");
    assert!(m.contains("gridsight_orders_handled_ratio{grid=\"g1\",category=\"illegal_parking\"} 0.5"), "{m}");
    let body = m.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    promtool_check(body).unwrap_or_else(|e| panic!("promtool: {e}\n{body}"));

    // 2. Killed; the nodes keep alerting for a minute; restarted.
    d.0.kill().unwrap();
    d.0.wait().unwrap();
    for n in 0..20 {
        publish(if n % 2 == 0 { "n1" } else { "n2" }, 100 + n, &format!("cam{n:02}"));
        std::thread::sleep(Duration::from_secs(3));
    }
    assert_eq!(created(&got).len(), 2, "nothing handled while down");
    let _d2 = dispatcher(&cfg, 2);
    assert!(
        wait_until(Duration::from_secs(30), || created(&got).len() == 22),
        "{} orders after restart\n{}",
        created(&got).len(),
        log(&cfg, 2)
    );
    std::thread::sleep(Duration::from_secs(2));
    let ids = created(&got);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "no order created twice: {ids:?}");
    assert_eq!(ids.len(), 22);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The dispatcher's timers go by its clock, not by the machine's: with a paused clock an
/// hour's acceptance deadline passes when the test says so, through the real service
/// (Mosquitto, the outbox, the one-second timer).
#[test]
fn deadlines_fire_by_the_dispatchers_clock() {
    let _scenario = crate::common::scenario(module_path!());
    let dir = fresh_dir("dispatch-clock");
    let port = free_port();
    let _broker = Mosquitto::start(port);
    let config = edge_node::config::load(&config(&dir, port, free_port())).unwrap();
    let (got, subscribed) = subscriber_with_state(port, "gridsight/dispatch/#", "dispatch-clock");
    assert!(wait_until(Duration::from_secs(30), || subscribed.load(std::sync::atomic::Ordering::SeqCst)));

    let clock = std::sync::Arc::new(edge_node::clock::ManualClock::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let service = {
        let _entered = rt.enter();
        edge_node::dispatch::service::DispatchService::start(
            &config,
            &edge_node::mqtt::LinkOptions::new("127.0.0.1", port, "clock-test", "gridsight/district/availability"),
            "gridsight/+/alerts",
            false,
            edge_node::outbox::DiskGuard::new(&config.storage.data_dir, 0),
            None,
            clock.clone(),
        )
        .unwrap()
    };
    let nodes = crate::common::publisher(rumqttc::MqttOptions::new("clock-nodes", "127.0.0.1", port), 10);
    let order = "o-n1-alert-001";
    // Sent again until handled: its first session subscribes just after connecting, and an
    // alert id already handled is not handled twice.
    let mut sent = std::time::Instant::now() - Duration::from_secs(10);
    assert!(
        wait_until(Duration::from_secs(30), || {
            if sent.elapsed() > Duration::from_secs(2) {
                nodes.publish("gridsight/n1/alerts", rumqttc::QoS::AtLeastOnce, false, alert("n1", 1, "gate")).unwrap();
                sent = std::time::Instant::now();
            }
            order_events(&got).contains(&("assigned".into(), order.into()))
        }),
        "{:?}",
        order_events(&got)
    );
    let late = || {
        got.lock().unwrap().iter().any(|(t, p)| {
            t == "gridsight/dispatch/orders" && String::from_utf8_lossy(p).contains("did not accept in time")
        })
    };
    // Three seconds of the machine's time: the paused clock has not moved, nothing is late.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!late(), "{:?}", order_events(&got));
    // Past `accept_within = "1h"` by the clock: the next tick hands it on.
    clock.advance(Duration::from_secs(3601));
    assert!(wait_until(Duration::from_secs(10), late), "{:?}", order_events(&got));
    let o = service.dispatcher.orders().unwrap().into_iter().find(|o| o.id == order).unwrap();
    assert_eq!(o.excluded.first().map(String::as_str), Some("a1"), "{o:?}");
    rt.block_on(service.shutdown(Duration::from_secs(5)));
}
