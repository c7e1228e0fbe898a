//! Published pictures hide every face a whole-frame detector finds, not only the faces the
//! node's own detection found.
//!
//!   crosswalk / astronaut photo ─► YuNet: faces ─► alert::snapshot (blur) ─► JPEG ─► YuNet: no face
//!                                                 └► (raw policy) ─► JPEG ─► YuNet: faces still there
//!   crowd photo ─► the crop path (faces only around the people YOLOX found) ─► snapshot
//!     without the whole-frame search: faces left; with it (privacy): none at 1x or 2x
//!   a camera on a still of the crowd photo ─► edge-node run ─► alert
//!     ─► its snapshot, its blurred clip, its live snapshot: none at 1x or 2x

use std::time::Duration;

use crate::common::*;
use edge_node::alert::snapshot;
use edge_node::config::FacePolicy;
use edge_node::inference::{Detector, ImageView, Job};
use edge_node::types::Frame;

fn frame(file: &str) -> Frame {
    photo_frame(file, u32::MAX)
}

/// Faces a whole-frame detector finds at 1x and at 2x in a picture (packed BGR).
fn left(w: u32, h: u32, bgr: &[u8]) -> (usize, usize) {
    (faces_at_scale(w, h, bgr, 1.0).len(), faces_at_scale(w, h, bgr, 2.0).len())
}

/// How much detail a region of a picture holds: the mean absolute difference between
/// neighbouring grey pixels inside `b` (picture pixels).
fn detail(w: u32, h: u32, bgr: &[u8], b: [f32; 4]) -> f64 {
    let grey = |x: u32, y: u32| {
        let i = (y * w + x) as usize * 3;
        (bgr[i] as f64 + 2.0 * bgr[i + 1] as f64 + bgr[i + 2] as f64) / 4.0
    };
    let (x0, y0) = (b[0].max(0.0) as u32, b[1].max(0.0) as u32);
    let (x1, y1) = ((b[2].max(0.0) as u32).min(w - 1), (b[3].max(0.0) as u32).min(h - 1));
    let (mut sum, mut n) = (0.0, 0u32);
    for y in y0..y1 {
        for x in x0..x1 {
            sum += (grey(x + 1, y) - grey(x, y)).abs() + (grey(x, y + 1) - grey(x, y)).abs();
            n += 2;
        }
    }
    sum / n.max(1) as f64
}

/// The faces YuNet finds (at 1x and 2x) in a published frame that are still recognisable:
/// whose region keeps at least half the detail it has in the original picture `raw` (same
/// size). A pixelated face has a small fraction of it; YuNet sometimes still answers to the
/// mosaic of a head (a skin-coloured block under a dark one), which hides nobody.
fn recognisable(frame: (u32, u32, &[u8]), raw: (u32, u32, &[u8])) -> Vec<(f32, [f32; 4], f64)> {
    let (w, h, bgr) = frame;
    let mut out = Vec::new();
    for scale in [1.0, 2.0] {
        for f in faces_at_scale(w, h, bgr, scale) {
            let kept = detail(w, h, bgr, f.bbox) / detail(raw.0, raw.1, raw.2, f.bbox).max(1e-6);
            if kept >= 0.5 {
                out.push((scale, f.bbox, kept));
            }
        }
    }
    out
}

#[test]
fn published_snapshots_have_no_recognisable_face() {
    let _scenario = crate::common::scenario(module_path!());
    let config = edge_node::config::load(&root().join("tests/configs/detect.toml")).unwrap();
    let mut detector = Detector::new(&config.models, 1).unwrap();
    for file in ["skimage_astronaut.png", "deface_city.jpg"] {
        let f = frame(file);
        let faces = faces_bgr(&mut detector, f.width, f.height, &f.data);
        assert!(!faces.is_empty(), "{file}: no face in the original");

        let blurred = snapshot(&f, Some([10.0, 10.0, 100.0, 100.0]), &faces, FacePolicy::Blur, None).unwrap();
        let (w, h, bgr) = decode_image(&blurred);
        assert!(w <= 640);
        let left = faces_bgr(&mut detector, w, h, &bgr);
        assert!(
            left.is_empty(),
            "{file}: {} face(s) still found in the blurred snapshot: {:?}\noriginal: {:?}",
            left.len(),
            left,
            faces.iter().map(|f| (f.bbox, f.score)).collect::<Vec<_>>()
        );

        // The raw policy (explicit opt-in) keeps them: the test above is not vacuous.
        let raw = snapshot(&f, None, &faces, FacePolicy::Raw, None).unwrap();
        let (w, h, bgr) = decode_image(&raw);
        assert!(!faces_bgr(&mut detector, w, h, &bgr).is_empty(), "{file}: raw snapshot lost its faces");
    }
}

/// The crowd photo at the node's frame size: the faces found around YOLOX's people are not
/// enough; the whole-frame search leaves no face for a detector at 1x or 2x.
#[test]
fn a_crowd_snapshot_is_searched_on_the_whole_frame() {
    let _scenario = crate::common::scenario(module_path!());
    let config = edge_node::config::load(&root().join("tests/configs/detect.toml")).unwrap();
    let mut detector = Detector::new(&config.models, 1).unwrap();
    let privacy = edge_node::privacy::Privacy::from_config(&config);
    assert!(privacy.enabled());
    let f = photo_frame("deface_city.jpg", 640);
    let (w, h) = (f.width, f.height);
    // What the camera's detection gives the snapshot: faces on crops around people.
    let job = Job { image: ImageView::packed(&f.data, w, h), source: (w, h), roi: None };
    let crop = detector.detect(&["objects".to_string(), "faces".to_string()], &[job]).unwrap().pop().unwrap();
    let people = crop.objects.iter().filter(|o| &*o.label == "person").count();
    let whole = left(w, h, &f.data);
    println!(
        "{w}x{h}: {people} people, {} faces on their crops; whole frame: {whole:?} faces at 1x, 2x",
        crop.faces.len()
    );

    let (sw, sh, only_crops) = decode_image(&snapshot(&f, None, &crop.faces, FacePolicy::Blur, None).unwrap());
    let without = left(sw, sh, &only_crops);
    let (sw, sh, searched) = decode_image(&snapshot(&f, None, &crop.faces, FacePolicy::Blur, Some(&privacy)).unwrap());
    let with = left(sw, sh, &searched);
    // The faces a whole-frame detector at 2x sees that no crop found (centre outside every
    // crop face): what the crop path alone would publish unless its blocks happen to cover them.
    let missed = faces_at_scale(w, h, &f.data, 2.0)
        .iter()
        .filter(|m| {
            let (cx, cy) = ((m.bbox[0] + m.bbox[2]) / 2.0, (m.bbox[1] + m.bbox[3]) / 2.0);
            !crop.faces.iter().any(|c| cx >= c.bbox[0] && cx <= c.bbox[2] && cy >= c.bbox[1] && cy <= c.bbox[3])
        })
        .count();
    println!("{missed} faces no crop found; faces left at 1x, 2x: crops only {without:?}, whole-frame search {with:?}");
    assert!(missed > 0, "the crop path alone should miss faces in this crowd (the test would be vacuous)");
    assert_eq!(with, (0, 0), "faces left in the published snapshot");
}

/// The verify passes skip a run only where it would repeat the search on the same pixels: a
/// picture without a face costs two model runs (the search at 1x, the verify at 2x), and a
/// run at 1x on it would have found nothing; a crowd gets every pass.
#[test]
fn a_picture_without_faces_is_verified_in_one_run() {
    let _scenario = crate::common::scenario(module_path!());
    let config = edge_node::config::load(&root().join("tests/configs/detect.toml")).unwrap();
    let spec = edge_node::privacy::face_model(&config).unwrap();
    let mut search = edge_node::privacy::FaceSearch::new(&spec).unwrap();
    let (w, h) = (640u32, 360u32);
    let empty: Vec<u8> = (0..w * h).flat_map(|i| [(i % w * 255 / w) as u8, (i / w * 255 / h) as u8, 90]).collect();
    let found = search.search(&empty, w, h).unwrap();
    let mut verified = empty.clone();
    let more = search.verify(&mut verified, w, h, &found).unwrap();
    assert!(found.is_empty() && more.is_empty(), "{found:?} {more:?}");
    assert_eq!(search.passes(), 2, "the search and the 2x pass");
    assert_eq!(verified, empty);
    assert!(search.find(&verified, w, h, 1.0, edge_node::privacy::SEARCH_SCORE).unwrap().is_empty());

    let crowd = photo_frame("deface_city.jpg", 640);
    let before = search.passes();
    let found = search.search(&crowd.data, crowd.width, crowd.height).unwrap();
    let mut safe = crowd.data.to_vec();
    for b in &found {
        edge_node::privacy::pixelate(&mut safe, crowd.width, crowd.height, *b);
    }
    search.verify(&mut safe, crowd.width, crowd.height, &found).unwrap();
    assert!(!found.is_empty());
    assert!(search.passes() - before >= 3, "the search, then 2x and 1x: {}", search.passes() - before);
}

/// A camera looking at a still of the crowd photo: its alert's snapshot, its blurred clip
/// and its live snapshot show no face to a whole-frame detector at 1x or 2x.
#[test]
fn a_crowd_camera_publishes_no_face() {
    let _scenario = crate::common::scenario(module_path!());
    let sim = simulator(&["crowd=still:deface_city.jpg:10,keyint=2s"]);
    let dir = fresh_dir("crowd-privacy");
    let (http, mqtt) = (free_port(), free_port());
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"{head}[models.objects]
file = "yolox_nano_dynamic.onnx"
classes = ["person"]
[models.faces]
file = "yunet_s_dynamic.onnx"
input_size = [640, 384]
[[cameras]]
id = "crossing"
url = "{url}"
detect_fps = 2.0
motion_gate = false
[cameras.zones.all]
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "walk"
kind = "zone_enter"
category = "intrusion"
zone = "all"
classes = ["person"]
cooldown = "10m"
"#,
            head = node_toml("crowd", Broker::Embedded(mqtt), http, &dir.join("data")),
            url = sim.url("crowd"),
        ),
    )
    .unwrap();
    let alerts = subscriber_raw(mqtt, "gridsight/crowd/alerts", "crowd-alerts");
    let ready = subscriber_raw(mqtt, "gridsight/crowd/clips/+", "crowd-clips");
    let log = dir.join("node.log");
    let _node = edge_node("run", &config, &log);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let json = |p: &[u8]| serde_json::from_slice::<serde_json::Value>(p).unwrap_or_default();

    // The first alert with a clip, and that clip ready (post-capture, then the blurring).
    let first_new =
        || alerts.lock().unwrap().iter().map(|(_, p)| json(p)).find(|a| a["type"] == "new" && a["clip"].is_string());
    assert!(wait_until(Duration::from_secs(120), || first_new().is_some()), "no alert\n{}", logs());
    let alert = first_new().unwrap();
    let clip_ready = || ready.lock().unwrap().iter().map(|(_, p)| json(p)).any(|c| c["alert"] == alert["id"]);
    assert!(wait_until(Duration::from_secs(240), clip_ready), "no clip\n{}", logs());

    // The people of the crowd are found together: their `new` alerts share one clip, and
    // each alert gets its own `gridsight.clip` message pointing at it.
    let news: Vec<serde_json::Value> =
        alerts.lock().unwrap().iter().map(|(_, p)| json(p)).filter(|a| a["type"] == "new").collect();
    let sharing: Vec<&serde_json::Value> = news.iter().filter(|a| a["clip"] == alert["clip"]).collect();
    let messages: Vec<serde_json::Value> = ready.lock().unwrap().iter().map(|(_, p)| json(p)).collect();
    println!("{} new alerts, {} of them share the first clip", news.len(), sharing.len());
    assert!(sharing.len() >= 2, "the alerts of one moment did not share a clip: {news:#?}");
    assert!(
        wait_until(Duration::from_secs(30), || {
            let messages: Vec<serde_json::Value> = ready.lock().unwrap().iter().map(|(_, p)| json(p)).collect();
            sharing.iter().all(|a| messages.iter().any(|m| m["alert"] == a["id"] && m["url"] == alert["clip"]))
        }),
        "a clip message per alert: {messages:#?}"
    );
    let clip_files = std::fs::read_dir(dir.join("data/clips")).unwrap().flatten().count();
    let distinct: std::collections::BTreeSet<&str> = news.iter().filter_map(|a| a["clip"].as_str()).collect();
    assert!(
        clip_files <= distinct.len() && distinct.len() < news.len(),
        "{clip_files} files for {} clips",
        distinct.len()
    );

    let id = alert["id"].as_str().unwrap();
    let (code, jpeg) = http_request(http, "GET", &format!("/alerts/{id}.jpg"), "", b"");
    assert_eq!(code, 200, "the alert's snapshot");
    let (w, h, bgr) = decode_image(&jpeg);
    assert_eq!(left(w, h, &bgr), (0, 0), "faces in the alert's snapshot ({w}x{h})");

    let (code, live) = http_request(http, "GET", "/cameras/crossing/snapshot.jpg", "", b"");
    assert_eq!(code, 200, "the live snapshot");
    let (w, h, bgr) = decode_image(&live);
    assert_eq!(left(w, h, &bgr), (0, 0), "faces in the live snapshot ({w}x{h})");

    let (code, mp4) = http_request(http, "GET", alert["clip"].as_str().unwrap(), "", b"");
    assert_eq!(code, 200, "the clip");
    let file = dir.join("clip.mp4");
    std::fs::write(&file, &mp4).unwrap();
    let (_, frames) = decode_mp4(&file);
    assert!(frames.len() >= 10, "{} frames", frames.len());
    // Ten frames across the clip (a still: the frames differ only by the encoder's noise).
    // Whatever YuNet finds in them must be pixelated: YuNet now and then answers to the
    // mosaic of a head, and such a "face" keeps under a third of the original's detail.
    let raw = decode_image(&std::fs::read(media_dir().join("deface_city.jpg")).unwrap());
    let step = frames.len() / 10;
    let per_frame: Vec<(usize, usize)> = frames.iter().step_by(step).map(|(w, h, bgr)| left(*w, *h, bgr)).collect();
    let (w, h, _) = &frames[0];
    println!("clip {w}x{h}, {} frames; YuNet's answers per sampled frame at 1x, 2x: {per_frame:?}", frames.len());
    assert_eq!((*w, *h), (raw.0, raw.1), "the clip keeps the picture's size");
    assert!(recognisable((raw.0, raw.1, &raw.2), (raw.0, raw.1, &raw.2)).len() >= 10, "the check sees the crowd");
    let unblurred: Vec<_> = frames
        .iter()
        .step_by(step)
        .flat_map(|(w, h, bgr)| recognisable((*w, *h, bgr), (raw.0, raw.1, &raw.2)))
        .collect();
    assert!(unblurred.is_empty(), "recognisable faces in the blurred clip (scale, box, detail kept): {unblurred:?}");
    assert!(
        per_frame.iter().filter(|&&l| l != (0, 0)).count() <= 2,
        "YuNet answers in most sampled frames of the blurred clip: {per_frame:?}"
    );
    for line in logs().lines().filter(|l| l.contains("clip ready")) {
        println!("{}", line.split_once("INFO ").map_or(line, |(_, r)| r));
    }
}
