//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use edge_node::config::{DecodeMode, HwDecode, RtspClient, Secret, Transport};
use edge_node::source::{CameraSpec, FrameCallback};
use edge_node::types::Frame;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn media_dir() -> PathBuf {
    std::env::var_os("GRIDSIGHT_MEDIA").map(PathBuf::from).unwrap_or_else(|| root().join(".cache/media"))
}

/// Where a scenario's node sends its alerts.
pub enum Broker {
    /// The node's own embedded broker, listening on this port of 127.0.0.1.
    Embedded(u16),
    /// A broker of the test's (Mosquitto) on this port of 127.0.0.1.
    Mosquitto(u16),
}

/// Keys a scenario adds to the head's `[node]` and `[http]` ([`node_toml_with`]): lines of
/// TOML, "" for none.
#[derive(Default)]
pub struct More<'a> {
    pub node: &'a str,
    pub http: &'a str,
}

/// The head of a scenario's node file, the part every scenario shares: `version`, the
/// node's id, its broker, its HTTP port, its data folder and the project's models. It ends
/// inside `[storage]`: the scenario's own text follows (its first keys, if it starts with
/// keys, are more of `[storage]`).
pub fn node_toml(id: &str, broker: Broker, http: u16, data: &Path) -> String {
    node_toml_with(id, broker, http, data, More::default())
}

/// [`node_toml`] with more keys of `[node]` and of `[http]`.
pub fn node_toml_with(id: &str, broker: Broker, http: u16, data: &Path, more: More) -> String {
    let broker = match broker {
        Broker::Embedded(port) => format!("[embedded_broker]\nlisten = \"127.0.0.1:{port}\"\n"),
        Broker::Mosquitto(port) => format!("[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\n"),
    };
    let lines = |keys: &str| if keys.is_empty() { String::new() } else { format!("{keys}\n") };
    format!(
        "version = 1\n[node]\nid = \"{id}\"\n{node}{broker}[http]\nlisten = \"127.0.0.1:{http}\"\n{http_keys}[storage]\ndata_dir = \"{data}\"\nmodels_dir = \"{models}\"\n",
        node = lines(more.node),
        http_keys = lines(more.http),
        data = data.display(),
        models = root().join("models").display()
    )
}

/// An empty folder of this test run: `<tmp>/gridsight-<name>-<pid>`.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gridsight-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The camera simulator on a free port of 127.0.0.1, without authentication, serving
/// `specs` (`name=clip-or-pattern,options`, media from [`media_dir`]).
pub fn simulator(specs: &[&str]) -> edge_node::sim::Simulator {
    let media = media_dir();
    let specs: Vec<_> = specs.iter().map(|s| edge_node::sim::StreamSpec::parse(s, &media).unwrap()).collect();
    edge_node::sim::Simulator::start("127.0.0.1", 0, &specs, edge_node::sim::Auth::None).unwrap()
}

/// The faces the detector's `faces` model finds in a packed BGR image.
pub fn faces_bgr(
    detector: &mut edge_node::inference::Detector,
    w: u32,
    h: u32,
    bgr: &[u8],
) -> Vec<edge_node::types::Face> {
    use edge_node::inference::{ImageView, Job};
    detector
        .detect(&["faces".to_string()], &[Job { image: ImageView::packed(bgr, w, h), source: (w, h), roi: None }])
        .unwrap()
        .pop()
        .unwrap()
        .faces
}

/// How many faces the detector's `faces` model finds in a JPEG (or PNG).
pub fn faces_in_jpeg(detector: &mut edge_node::inference::Detector, jpeg: &[u8]) -> usize {
    let img = image::load_from_memory(jpeg).expect("a JPEG").to_rgb8();
    let (w, h) = img.dimensions();
    let bgr: Vec<u8> = img.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect();
    faces_bgr(detector, w, h, &bgr).len()
}

/// One community, grid `g1` with micro-grid `m1` and inspector `insp-a` on duty always.
pub const ONE_GRID: &str = r#"
[[grid.communities]]
id = "c1"
[[grid.grids]]
id = "g1"
community = "c1"
[[grid.micro_grids]]
id = "m1"
grid = "g1"
polygon = [[121.470, 31.228], [121.478, 31.228], [121.478, 31.234], [121.470, 31.234]]
[[grid.inspectors]]
id = "insp-a"
name = "Inspector A"
grid = "g1"
"#;

/// The client test cameras use unless a test says otherwise: the default one.
pub const RTSP_CLIENT: RtspClient = RtspClient::Retina;

pub fn camera(id: &str, url: &str, decode: DecodeMode, detect_fps: f64) -> CameraSpec {
    CameraSpec {
        id: id.to_string(),
        location: url.to_string(),
        credentials: None,
        transport: Transport::Tcp,
        decode,
        hw_decode: HwDecode::None,
        rtsp_client: RTSP_CLIENT,
        detect_fps,
        fit: (640, 384),
        stall_timeout: Duration::from_secs(3),
        delta_rules: Vec::new(),
        looks_always: false,
        demand: Default::default(),
        place: None,
        micro_grid: None,
    }
}

/// The same camera received by another RTSP client.
#[allow(dead_code)]
pub fn with_client(spec: CameraSpec, rtsp_client: RtspClient) -> CameraSpec {
    CameraSpec { rtsp_client, ..spec }
}

pub fn with_credentials(mut spec: CameraSpec, user: &str, password: &str) -> CameraSpec {
    spec.credentials = Some((user.to_string(), Secret::new(password)));
    spec
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// Collects the frames each camera hands on.
#[derive(Clone, Default)]
pub struct Frames(pub Arc<Mutex<HashMap<String, Vec<Frame>>>>);

impl Frames {
    pub fn callback(&self) -> FrameCallback {
        let store = self.0.clone();
        Arc::new(move |f: Frame| store.lock().unwrap().entry(f.camera.to_string()).or_default().push(f))
    }

    pub fn count(&self, camera: &str) -> usize {
        self.0.lock().unwrap().get(camera).map_or(0, Vec::len)
    }

    pub fn of(&self, camera: &str) -> Vec<Frame> {
        self.0.lock().unwrap().get(camera).cloned().unwrap_or_default()
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Everything the test binary logs through `tracing`, for assertions on log lines.
pub fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let make = move || LogWriter(writer.clone());
        let _ = tracing::subscriber::set_global_default(
            tracing_subscriber::fmt().with_writer(make).with_ansi(false).with_max_level(tracing::Level::INFO).finish(),
        );
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn logs_text() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

/// A Mosquitto broker of the test's own, on 127.0.0.1, persistent across its restarts.
pub struct Mosquitto {
    child: Option<std::process::Child>,
    pub port: u16,
    dir: PathBuf,
}

impl Mosquitto {
    pub fn start(port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("gridsight-mosquitto-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Started as root, Mosquitto drops to its own user: it must be able to save its
        // sessions here, or a restart forgets the subscriber's queue.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let mut m = Self { child: None, port, dir };
        m.restart();
        m
    }

    pub fn restart(&mut self) {
        let conf = self.dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nmax_queued_messages 10000\n",
                self.port,
                self.dir.display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto is installed by `make setup`");
        self.child = Some(child);
        assert!(
            wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()),
            "mosquitto did not start"
        );
    }

    /// Stops the broker the way an operator would (SIGTERM: it saves its sessions).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::process::Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Subscribes (QoS 1, persistent session) and records every payload received, as text.
pub fn subscriber(port: u16, topic: &str) -> Arc<Mutex<Vec<String>>> {
    let raw = subscriber_raw(port, topic, "text");
    let got = Arc::new(Mutex::new(Vec::new()));
    let out = got.clone();
    std::thread::spawn(move || {
        let mut seen = 0;
        // Until the test lets go of what it reads (then `raw`'s thread stops too).
        while Arc::strong_count(&out) > 1 {
            {
                let r = raw.lock().unwrap();
                let mut o = out.lock().unwrap();
                for (_, p) in &r[seen..] {
                    o.push(String::from_utf8_lossy(p).into_owned());
                }
                seen = r.len();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    got
}

/// Every (topic, payload) a subscriber received, in order.
pub type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Subscribes (QoS 1, persistent session named after `name`) and records (topic, payload).
pub fn subscriber_raw(port: u16, topic: &str, name: &str) -> Received {
    subscriber_with_state(port, topic, name).0
}

/// As [`subscriber_raw`], with a flag that is true while the subscription is in place
/// (set on SUBACK, cleared on a connection error).
pub fn subscriber_with_state(port: u16, topic: &str, name: &str) -> (Received, Arc<std::sync::atomic::AtomicBool>) {
    let subscribed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = subscribed.clone();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let mut opts = rumqttc::MqttOptions::new(format!("test-sub-{name}-{}", std::process::id()), "127.0.0.1", port);
    opts.set_clean_session(false);
    opts.set_max_packet_size(8 << 20, 8 << 20);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = rumqttc::Client::new(opts, 100);
    let topic = topic.to_string();
    // The thread ends once the test has let go of what it records: in the one test binary
    // a subscriber that outlived its test (and its broker) reconnected for the rest of the
    // run, and a handful of them kept both cores busy.
    std::thread::spawn(move || {
        for event in connection.iter() {
            if Arc::strong_count(&sink) == 1 {
                let _ = client.try_disconnect();
                return;
            }
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::ConnAck(_))) => {
                    let _ = client.try_subscribe(topic.clone(), rumqttc::QoS::AtLeastOnce);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p))) => {
                    sink.lock().unwrap().push((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::SubAck(_))) => {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst)
                }
                Ok(_) => {}
                Err(_) => {
                    flag.store(false, std::sync::atomic::Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    });
    (got, subscribed)
}

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `edge-node COMMAND --config CONFIG` with its stderr written to `log`.
pub fn edge_node(command: &str, config: &Path, log: &Path) -> KillOnDrop {
    KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_edge-node"))
            .args([command, "--config"])
            .arg(config)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// A Mosquitto on a config of the test's own (written to `<dir>/mosquitto.conf`, its log
/// beside it); returns once `port` accepts connections.
pub fn mosquitto_with(dir: &Path, conf: &str, port: u16) -> KillOnDrop {
    std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
    let child = KillOnDrop(
        std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("mosquitto.log")).unwrap())
            .spawn()
            .expect("mosquitto is installed by `make setup`"),
    );
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "mosquitto did not start"
    );
    child
}

/// `promtool check metrics` on a `/metrics` body (Prometheus text format): `Err` with what
/// it says when it finds a problem. promtool comes with Debian's `prometheus` (`make setup`).
#[allow(dead_code)]
pub fn promtool_check(metrics: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("promtool (Debian package prometheus, installed by `make setup`): {e}"))?;
    child.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// A photo of the shared media as a camera frame (BGR, as ingest delivers it), no wider
/// than `max_width` (aspect kept).
#[allow(dead_code)]
pub fn photo_frame(file: &str, max_width: u32) -> edge_node::types::Frame {
    let img = image::open(media_dir().join(file)).unwrap();
    let img = if img.width() > max_width {
        img.resize(max_width, u32::MAX, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let img = img.to_rgb8();
    let (w, h) = img.dimensions();
    edge_node::types::Frame {
        camera: Arc::from("cam"),
        seq: 0,
        pts: None,
        stream: Duration::ZERO,
        wall: std::time::SystemTime::now(),
        width: w,
        height: h,
        source_width: w,
        source_height: h,
        keyframe: true,
        roi: None,
        data: Arc::from(img.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect::<Vec<u8>>()),
    }
}

/// The body of `GET path` from a server on 127.0.0.1 (empty if it does not answer).
#[allow(dead_code)]
pub fn http_body(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// (status, body) of one HTTP/1.1 request to 127.0.0.1:`port`; `headers` are extra header
/// lines, each ending in CRLF. (0, empty) when nothing answers.
#[allow(dead_code)]
pub fn http_request(port: u16, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return (0, vec![]) };
    let length = if method == "GET" { String::new() } else { format!("Content-Length: {}\r\n", body.len()) };
    let _ = write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}{length}Connection: close\r\n\r\n");
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let Some(split) = out.windows(4).position(|w| w == b"\r\n\r\n") else { return (0, vec![]) };
    let status = String::from_utf8_lossy(&out[..split]).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out[split + 4..].to_vec())
}

/// The faces an independent whole-frame detector finds in a packed BGR picture: YuNet (the
/// detection tests' face model, at its own threshold) on the whole picture at `scale` (1.0:
/// the picture's own size; 2.0: twice it, where small faces show).
pub fn faces_at_scale(w: u32, h: u32, bgr: &[u8], scale: f32) -> Vec<edge_node::types::Face> {
    let mut models = edge_node::config::load(&root().join("tests/configs/detect.toml")).unwrap().models;
    models.retain(|_, m| m.family == edge_node::config::Family::Yunet);
    for m in models.values_mut() {
        let up = |v: u32| ((v as f32 * scale).round() as u32).div_ceil(32) * 32;
        m.input_size = (up(w), up(h));
    }
    let mut detector = edge_node::inference::Detector::new(&models, 2).unwrap();
    faces_bgr(&mut detector, w, h, bgr)
}

/// A JPEG (or PNG) as packed BGR: (width, height, pixels).
pub fn decode_image(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let img = image::load_from_memory(bytes).expect("an image").to_rgb8();
    let (w, h) = img.dimensions();
    (w, h, img.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect())
}

/// Decodes a clip (MP4, MPEG, what decodebin plays) with GStreamer: its duration (as the
/// demuxer says) and every frame (BGR).
pub fn decode_mp4(path: &std::path::Path) -> (Duration, Vec<(u32, u32, Vec<u8>)>) {
    use gstreamer::prelude::*;
    gstreamer::init().unwrap();
    let p = gstreamer::parse::launch(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format=BGR ! appsink name=sink sync=false",
        path.display()
    ))
    .unwrap()
    .downcast::<gstreamer::Pipeline>()
    .unwrap();
    let sink = p.by_name("sink").unwrap().downcast::<gstreamer_app::AppSink>().unwrap();
    p.set_state(gstreamer::State::Playing).unwrap();
    let mut frames = Vec::new();
    let mut duration = None;
    while let Ok(s) = sink.pull_sample() {
        if duration.is_none() {
            duration = p.query_duration::<gstreamer::ClockTime>();
        }
        let st = s.caps().unwrap().structure(0).unwrap().to_owned();
        let (w, h) = (st.get::<i32>("width").unwrap() as u32, st.get::<i32>("height").unwrap() as u32);
        let map = s.buffer().unwrap().map_readable().unwrap();
        let stride = map.len() / h as usize;
        let mut bgr = Vec::new();
        for row in map.chunks(stride).take(h as usize) {
            bgr.extend_from_slice(&row[..(w * 3) as usize]);
        }
        frames.push((w, h, bgr));
    }
    let _ = p.set_state(gstreamer::State::Null);
    (Duration::from_nanos(duration.map(|d| d.nseconds()).unwrap_or(0)), frames)
}

/// Who is in the room: the scenario (module) running now, and how many of its tests.
static ROOM: Mutex<(Option<&'static str>, usize)> = Mutex::new((None, 0));
static ROOM_FREED: std::sync::Condvar = std::sync::Condvar::new();

/// One scenario at a time: the tests of one module run together (in parallel, as they
/// always did), a test of another module waits until they are done. Each scenario sizes
/// its deadlines for itself and the nodes it starts, not for another scenario's Chromium
/// or nodes on the same two cores (a blurred clip is made at nice 19, and waits while
/// other processes keep both cores busy). The guard leaves the room when dropped, also
/// when the test panics.
pub fn scenario(module: &'static str) -> Scenario {
    let mut room = ROOM.lock().unwrap_or_else(|e| e.into_inner());
    while room.0.is_some_and(|m| m != module) {
        room = ROOM_FREED.wait(room).unwrap_or_else(|e| e.into_inner());
    }
    room.0 = Some(module);
    room.1 += 1;
    Scenario
}

pub struct Scenario;

impl Drop for Scenario {
    fn drop(&mut self) {
        let mut room = ROOM.lock().unwrap_or_else(|e| e.into_inner());
        room.1 -= 1;
        if room.1 == 0 {
            room.0 = None;
            ROOM_FREED.notify_all();
        }
    }
}

/// A test's own MQTT client for publishing: its connection is driven on a thread that
/// waits between failed attempts and ends when the `Publisher` is dropped (one test
/// binary: a driver thread that outlived its test and broker reconnected in a tight loop
/// for the rest of the run).
pub struct Publisher {
    client: rumqttc::Client,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

pub fn publisher(opts: rumqttc::MqttOptions, cap: usize) -> Publisher {
    let (client, mut connection) = rumqttc::Client::new(opts, cap);
    let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let driving = alive.clone();
    std::thread::spawn(move || {
        for event in connection.iter() {
            if !driving.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            if event.is_err() {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    });
    Publisher { client, alive }
}

impl std::ops::Deref for Publisher {
    type Target = rumqttc::Client;
    fn deref(&self) -> &rumqttc::Client {
        &self.client
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.alive.store(false, std::sync::atomic::Ordering::SeqCst);
        let _ = self.client.try_disconnect();
    }
}
