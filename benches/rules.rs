//! Tracking + rules + alert building for 200 cameras at 2 detections/s each.
//! Run: `cargo bench --bench rules` (every part), or `-- cpu` / `-- latency` / `-- stages`.
//!
//! cpu: each camera sees 6 objects moving through a zone with every rule kind configured;
//! events become alert JSON, no I/O. Reports CPU per camera (target: under 0.1% of a core).
//!
//! latency: the same 200 cameras in real time (a tick every 500 ms), now through the
//! whole alert path of the daemon: tracker → rules → `AlertSink::emit` (snapshot JPEG of a
//! real 640x360 picture with faces blurred, alert + snapshot committed to the SQLite
//! outbox) → `MqttLink` → a Debian Mosquitto of its own on 127.0.0.1. Reports the
//! frame-to-PUBACK latency of each alert, p50/p99/max: from the moment a frame's
//! detections reach the tracker to the broker's PUBACK for the alert.
//!
//! stages: the same cameras and load through the node's own graph (`Graph::on_detections`,
//! called as an inference worker calls it, then whatever stages the graph has: the camera
//! stage's and the alert stage's queues and threads, or the callback doing it all), cores
//! built from a config, the same snapshot, outbox, link and Mosquitto. The latency of an
//! alert runs from the tick at which its camera's newest frame was captured (all 200 at
//! once, a burst every 2 s, handed to the graph by two threads as the pool's two workers
//! would) to its PUBACK; an alert is matched to the newest tick before its PUBACK, so a
//! latency over 2 s would read short (the maximum printed shows whether any came near). The same source builds against an older edge-node (a git worktree) for a
//! before/after comparison.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use edge_node::alert::{AlertSink, CameraInfo, alert_for};
use edge_node::config::{Coordinates, Direction, FacePolicy, Rule, RuleKind, Schedule, Severity};
use edge_node::geometry::{Point, Polygon, Polyline};
use edge_node::mqtt::{LinkOptions, MqttLink};
use edge_node::outbox::{DiskGuard, Kind, Outbox};

use edge_node::rules::{LocalTime, RuleEngine, Scene};
use edge_node::track::{Track, Tracker, TrackerOptions};
use edge_node::types::{Detections, Face, Frame, Object};

fn rules() -> Vec<Rule> {
    let r = |id: &str, kind| Rule {
        id: id.into(),
        category: "c".into(),
        severity: Severity::Medium,
        min_score: 0.5,
        cooldown: Duration::from_secs(30),
        dispatch: true,
        kind,
    };
    let cls = || vec!["person".to_string(), "car".to_string()];
    vec![
        r(
            "dwell",
            RuleKind::ZoneDwell {
                zone: "z".into(),
                classes: cls(),
                min_duration: Duration::from_secs(5),
                stationary_only: false,
            },
        ),
        r(
            "enter",
            RuleKind::ZoneEnter {
                zone: "z".into(),
                classes: cls(),
                schedule: Schedule::always(),
                shortest_visit: None,
            },
        ),
        r(
            "cross",
            RuleKind::LineCross {
                line: "l".into(),
                classes: cls(),
                direction: Direction::Either,
                shortest_visit: None,
            },
        ),
        r(
            "crowd",
            RuleKind::Crowd { zone: "z".into(), classes: cls(), min_count: 3, min_duration: Duration::from_secs(3) },
        ),
        r("faces", RuleKind::FaceInZone { zone: "z".into(), schedule: Schedule::always() }),
    ]
}

const CAMERAS: usize = 200;
const FPS: u64 = 2;

fn engines() -> Vec<(Tracker, RuleEngine)> {
    let mut zones = BTreeMap::new();
    zones.insert(
        "z".to_string(),
        Polygon::new(vec![Point::new(0.2, 0.3), Point::new(0.8, 0.3), Point::new(0.8, 0.9), Point::new(0.2, 0.9)])
            .unwrap(),
    );
    let mut lines = BTreeMap::new();
    lines.insert("l".to_string(), Polyline::new(vec![Point::new(0.5, 0.0), Point::new(0.5, 1.0)]).unwrap());
    (0..CAMERAS)
        .map(|_| {
            (
                Tracker::new(TrackerOptions::default()),
                RuleEngine::new(rules(), zones.clone(), lines.clone(), Coordinates::Normalized),
            )
        })
        .collect()
}

/// Camera `c` at `step`: six objects walking across a 1280x720 frame at different
/// speeds, two of them with a face.
fn detections(step: u64, c: usize, label: &Arc<str>) -> Detections {
    let objects: Vec<Object> = (0..6)
        .map(|k| {
            let x = ((step as f32 * (4.0 + k as f32 + c as f32 % 3.0)) % 1200.0) + 20.0;
            let y = 250.0 + 60.0 * k as f32;
            Object { bbox: [x, y, x + 40.0, y + 100.0], score: 0.8, class_id: 0, label: label.clone() }
        })
        .collect();
    let faces: Vec<Face> = objects
        .iter()
        .take(2)
        .map(|o| Face {
            bbox: [o.bbox[0] + 10.0, o.bbox[1] + 5.0, o.bbox[0] + 30.0, o.bbox[1] + 30.0],
            score: 0.9,
            landmarks: [[0.0; 2]; 5],
        })
        .collect();
    Detections { faces, objects }
}

/// One camera's frame through the tracker and the rule engine, as the node does it.
fn track_and_evaluate(
    tracker: &mut Tracker,
    engine: &mut RuleEngine,
    d: &Detections,
    t: Duration,
    local: LocalTime,
) -> Vec<edge_node::rules::RuleEvent> {
    let update = tracker.update(d, t);
    let tracks: Vec<&Track> = tracker.confirmed().collect();
    let wall = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + t;
    engine.evaluate(&Scene {
        tracks: &tracks,
        objects: &[],
        stills: &[],
        faces: &d.faces,
        ended: &update.ended,
        frame: (1280, 720),
        t,
        wall,
        local,
    })
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wants = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if wants("cpu") {
        cpu();
    }
    let seconds = || {
        Duration::from_secs(std::env::var("GRIDSIGHT_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60))
    };
    if wants("latency") {
        latency(seconds());
    }
    if wants("stages") {
        stages(seconds());
    }
}

fn cpu() {
    let seconds = 120u64;
    let mut cams = engines();
    let sink = AlertSink::new("bench", "gridsight", None);
    let info = CameraInfo {
        id: "cam",
        micro_grid: Some("m"),
        grid: Some("g"),
        faces: FacePolicy::Blur,
        clip: None,
        location: None,
    };
    let label: Arc<str> = Arc::from("person");
    let (mut events, mut bytes) = (0usize, 0usize);
    let local = LocalTime { weekday: 2, minute: 600 };
    let started = Instant::now();
    for step in 0..seconds * FPS {
        let t = Duration::from_millis(step * 1000 / FPS);
        for (c, (tracker, engine)) in cams.iter_mut().enumerate() {
            let d = detections(step, c, &label);
            let evs = track_and_evaluate(tracker, engine, &d, t, local);
            for e in &evs {
                let v = alert_for(&sink.next_id(), "bench", &info, e, SystemTime::now(), None);
                bytes += serde_json::to_vec(&v).unwrap().len();
            }
            events += evs.len();
        }
    }
    let cpu = started.elapsed().as_secs_f64();
    let per_camera_core = cpu / seconds as f64 / CAMERAS as f64 * 100.0;
    println!(
        "rules cpu: {CAMERAS} cameras x {seconds} s at {FPS} detections/s: {cpu:.2} s of CPU, {per_camera_core:.4}% of a core per camera (target < 0.1%); {events} events, {:.0} bytes per alert",
        bytes as f64 / events.max(1) as f64
    );
}

/// A real picture (the city street photo) as the 640x360 BGR frame every camera "sees".
fn street_frame() -> Frame {
    let media = std::env::var("GRIDSIGHT_MEDIA").unwrap_or_else(|_| ".cache/media".into());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(media).join("deface_city.jpg");
    let img = image::open(&path).unwrap_or_else(|e| panic!("{}: {e} (run `make setup`)", path.display()));
    let rgb = image::imageops::resize(&img.to_rgb8(), 640, 360, image::imageops::FilterType::Triangle);
    let data: Vec<u8> = rgb.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect();
    Frame {
        camera: Arc::from("cam"),
        seq: 0,
        pts: None,
        stream: std::time::Duration::ZERO,
        wall: SystemTime::now(),
        width: 640,
        height: 360,
        source_width: 1280,
        source_height: 720,
        keyframe: true,
        roi: None,
        data: Arc::from(data),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A Mosquitto of its own on 127.0.0.1 in a fresh folder, for the part `name`: (folder,
/// port, process); `None` (said) when Debian's mosquitto is not installed.
fn broker(name: &str) -> Option<(std::path::PathBuf, u16, std::process::Child)> {
    let dir = std::env::temp_dir().join(format!("gridsight-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(dir.join("mosquitto.conf"), format!("listener {port} 127.0.0.1\nallow_anonymous true\n")).unwrap();
    let Ok(broker) = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        println!("rules {name}: skipped, mosquitto is not installed (run `make setup`)");
        return None;
    };
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((dir, port, broker))
}

fn latency(duration: Duration) {
    let Some((dir, port, mut broker)) = broker("latency") else { return };

    let frame = street_frame();
    // As the daemon opens it: bounded by the disk's free space less the alert reserve.
    let outbox = Arc::new(Mutex::new(
        Outbox::open(&dir.join("outbox.db"), 512 << 20).unwrap().with_disk(DiskGuard::new(&dir, 64 << 20)),
    ));
    // Alert id → when its frame's detections reached the tracker, and → when its PUBACK came.
    let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let acks = acked.clone();
    let link = {
        let _e = rt.enter();
        MqttLink::start(
            LinkOptions::new("127.0.0.1", port, "bench-latency", "gridsight/bench/availability"),
            outbox.clone(),
            Arc::new(move |m| {
                if m.kind != Kind::Alert {
                    return;
                }
                let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                acks.lock().unwrap().insert(v["id"].as_str().unwrap().to_string(), Instant::now());
            }),
        )
    };
    while link.stats.connects.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut cams = engines();
    let sink = AlertSink::new("bench", "gridsight", Some(dir.join("snapshots")));
    let label: Arc<str> = Arc::from("person");
    let local = LocalTime { weekday: 2, minute: 600 };
    let steps = duration.as_secs() * FPS;
    let (mut alerts, mut snapshots) = (0usize, 0usize);
    let cpu0 = process_cpu();
    let begin = Instant::now();
    for step in 0..steps {
        let tick = begin + Duration::from_millis(step * 1000 / FPS);
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
        let t = Duration::from_millis(step * 1000 / FPS);
        for (c, (tracker, engine)) in cams.iter_mut().enumerate() {
            let d = detections(step, c, &label);
            let t0 = Instant::now();
            let evs = track_and_evaluate(tracker, engine, &d, t, local);
            if evs.is_empty() {
                continue;
            }
            let cam_id = format!("cam-{c:03}");
            let info = CameraInfo {
                id: &cam_id,
                micro_grid: Some("m"),
                grid: Some("g"),
                faces: FacePolicy::Blur,
                clip: None,
                location: None,
            };
            for e in &evs {
                let a = sink.emit(&outbox, &info, e, Some(&frame), &d.faces, SystemTime::now()).unwrap();
                started.lock().unwrap().insert(a.id.clone(), t0);
                alerts += 1;
                snapshots += usize::from(a.snapshot.is_some());
            }
            link.notify();
        }
    }
    // Let the last ones arrive.
    let wait = Instant::now();
    while acked.lock().unwrap().len() < alerts && wait.elapsed() < Duration::from_secs(10) {
        link.notify();
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu = process_cpu() - cpu0;
    let wall = begin.elapsed().as_secs_f64();
    let acked = acked.lock().unwrap();
    let mut l: Vec<f64> = started
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(id, t0)| acked.get(id).map(|t1| t1.duration_since(*t0).as_secs_f64() * 1000.0))
        .collect();
    l.sort_by(f64::total_cmp);
    let lost = alerts - l.len();
    println!(
        "rules latency: {CAMERAS} cameras x {} s at {FPS} detections/s in real time, Mosquitto on 127.0.0.1: {alerts} alerts ({:.1}/s, {snapshots} with a snapshot), frame-to-PUBACK p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {lost} unacknowledged; whole alert path {:.1}% of a core ({:.3}% per camera)",
        duration.as_secs(),
        alerts as f64 / wall,
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or(0.0),
        cpu / wall * 100.0,
        cpu / wall * 100.0 / CAMERAS as f64,
    );
    rt.block_on(link.shutdown(Duration::from_secs(2)));
    let _ = broker.kill();
    let _ = broker.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// CPU seconds used by this process so far (user + system).
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|x| x.parse::<f64>().ok()).sum());
    ticks / 100.0
}

/// A config of `CAMERAS` cameras with the rules of [`rules`], in normalised coordinates.
fn stages_config(dir: &std::path::Path, cameras: usize) -> edge_node::config::Config {
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut text = format!(
        r#"version = 1
[node]
id = "bench"
[storage]
data_dir = "{data}"
models_dir = "{models}"
[models.objects]
file = "yolox_nano_dynamic.onnx"
classes = ["person", "car"]
[models.faces]
file = "yunet_s_dynamic.onnx"
"#,
        data = dir.join("data").display(),
        models = models.display()
    );
    for c in 0..cameras {
        text += &format!(
            r#"
[[cameras]]
id = "cam-{c:03}"
url = "rtsp://127.0.0.1/cam-{c:03}"
[cameras.zones.z]
polygon = [[0.2, 0.3], [0.8, 0.3], [0.8, 0.9], [0.2, 0.9]]
[cameras.lines.l]
points = [[0.5, 0.0], [0.5, 1.0]]
[[cameras.rules]]
id = "dwell"
kind = "zone_dwell"
category = "c"
zone = "z"
classes = ["person", "car"]
min_duration = "5s"
cooldown = "30s"
[[cameras.rules]]
id = "enter"
kind = "zone_enter"
category = "c"
zone = "z"
classes = ["person", "car"]
cooldown = "30s"
[[cameras.rules]]
id = "cross"
kind = "line_cross"
category = "c"
line = "l"
classes = ["person", "car"]
cooldown = "30s"
[[cameras.rules]]
id = "crowd"
kind = "crowd"
category = "c"
zone = "z"
classes = ["person", "car"]
min_count = 3
min_duration = "3s"
cooldown = "30s"
[[cameras.rules]]
id = "faces"
kind = "face_in_zone"
category = "c"
zone = "z"
cooldown = "30s"
"#
        );
    }
    edge_node::config::parse(&text, dir).unwrap_or_else(|e| panic!("bench config: {e:?}"))
}

/// Inference workers handing frames to the graph in the stages bench.
const WORKERS: usize = 2;
/// The stages bench's tick on the wall clock: every camera's next frame at once, this often
/// (the stream time still advances 1/FPS a step, so the tracks and alerts are those of the
/// latency part). Longer than any latency measured, so each PUBACK belongs to the newest
/// tick before it.
const STAGES_TICK_MS: u64 = 2000;

fn stages(duration: Duration) {
    use edge_node::graph::{Emitter, Graph};
    use edge_node::rules::IncidentIds;
    use edge_node::telemetry::CameraRegistry;

    let Some((dir, port, mut broker)) = broker("stages") else { return };
    // GRIDSIGHT_BENCH_CAMERAS: fewer cameras, fewer alerts per tick (200 saturate the
    // outbox's synchronous commits on a 2-core VM: latencies then run into the tick).
    let cameras: usize = std::env::var("GRIDSIGHT_BENCH_CAMERAS").ok().and_then(|s| s.parse().ok()).unwrap_or(CAMERAS);
    let config = stages_config(&dir, cameras);
    let frame = street_frame();
    let outbox = Arc::new(Mutex::new(
        Outbox::open(&dir.join("outbox.db"), 512 << 20).unwrap().with_disk(DiskGuard::new(&dir, 64 << 20)),
    ));
    // Per camera: when each of its frames was handed to the graph; per alert: its camera and
    // when its PUBACK came.
    let handed: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let acks = acked.clone();
    let link = Arc::new({
        let _e = rt.enter();
        MqttLink::start(
            LinkOptions::new("127.0.0.1", port, "bench-stages", "gridsight/bench/availability"),
            outbox.clone(),
            Arc::new(move |m| {
                if m.kind != Kind::Alert {
                    return;
                }
                let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                acks.lock().unwrap().push((v["camera"].as_str().unwrap().to_string(), Instant::now()));
            }),
        )
    });
    while link.stats.connects.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let notify = {
        let link = link.clone();
        Arc::new(move || link.notify())
    };
    let emitter = Emitter {
        node: "bench".into(),
        alerts: Arc::new(AlertSink::new("bench", "gridsight", Some(dir.join("snapshots")))),
        outbox: outbox.clone(),
        registry: Arc::new(CameraRegistry::default()),
        notify,
        clips: None,
        home_assistant: None,
    };
    let graph = Graph::new(Arc::new(IncidentIds::new(1)), emitter);
    graph.cameras.apply(&config, &graph.ids);
    let on_detections = graph.on_detections();
    let ids: Vec<Arc<str>> = (0..cameras).map(|c| Arc::from(format!("cam-{c:03}").as_str())).collect();
    let label: Arc<str> = Arc::from("person");
    let steps = duration.as_millis() as u64 / STAGES_TICK_MS;
    let cpu0 = process_cpu();
    let begin = Instant::now();
    for step in 0..steps {
        let tick = begin + Duration::from_millis(step * STAGES_TICK_MS);
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
        let t = Duration::from_millis(step * 1000 / FPS);
        // From the tick: every camera's frame of this step was captured then, and waits for
        // the ones handled before it, whatever the stages.
        for id in &ids {
            handed.lock().unwrap().entry(id.to_string()).or_default().push(tick);
        }
        // Two workers, as the inference pool has on this machine, each with its cameras.
        std::thread::scope(|s| {
            for worker in 0..WORKERS {
                let (ids, frame, label, on_detections) = (&ids, &frame, &label, &on_detections);
                s.spawn(move || {
                    for (c, id) in ids.iter().enumerate().filter(|(c, _)| c % WORKERS == worker) {
                        let d = detections(step, c, label);
                        let mut f = frame.clone();
                        f.camera = id.clone();
                        f.seq = step;
                        f.stream = t;
                        f.wall = SystemTime::now();
                        on_detections(&f, d, Duration::ZERO);
                    }
                });
            }
        });
    }
    // Let the last ones arrive: until no PUBACK came for a second.
    let mut last = (0, Instant::now());
    while last.1.elapsed() < Duration::from_secs(1) {
        link.notify();
        std::thread::sleep(Duration::from_millis(20));
        let n = acked.lock().unwrap().len();
        if n != last.0 {
            last = (n, Instant::now());
        }
    }
    let cpu = process_cpu() - cpu0;
    let wall = begin.elapsed().as_secs_f64();
    let handed = handed.lock().unwrap();
    let acked = acked.lock().unwrap();
    let mut l: Vec<f64> = acked
        .iter()
        .filter_map(|(camera, at)| {
            let t0 = handed.get(camera)?.iter().rev().find(|t0| *t0 <= at)?;
            Some(at.duration_since(*t0).as_secs_f64() * 1000.0)
        })
        .collect();
    l.sort_by(f64::total_cmp);
    let stored: u64 = (0..cameras)
        .map(|c| {
            graph
                .emitter
                .registry
                .camera(&format!("cam-{c:03}"))
                .alerts_stored
                .load(std::sync::atomic::Ordering::SeqCst)
        })
        .sum();
    println!(
        "rules stages: {cameras} cameras x {} s, a burst of frames every {STAGES_TICK_MS} ms (stream time {FPS} detections/s) through the node's graph, Mosquitto on 127.0.0.1: {stored} alerts stored, {} acknowledged ({:.1}/s), frame-to-PUBACK p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; process {:.1}% of a core",
        duration.as_secs(),
        l.len(),
        l.len() as f64 / wall,
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or(0.0),
        cpu / wall * 100.0,
    );
    let _ = broker.kill();
    let _ = broker.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
