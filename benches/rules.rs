//! Tracking + rules + alert building for 200 cameras at 2 detections/s each.
//! Run: `cargo bench --bench rules`. Reports CPU per camera (target: under 0.1% of a core).
//!
//! Each camera sees 6 objects moving through a zone with every rule kind configured;
//! events are turned into alert JSON (no I/O: the outbox write is measured by the e2e path).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use edge_node::alert::{AlertSink, CameraInfo, alert_json};
use edge_node::config::{Coordinates, Direction, FacePolicy, Rule, RuleKind, Schedule, Severity};
use edge_node::geometry::{Point, Polygon, Polyline};
use edge_node::rules::{LocalTime, RuleEngine, Scene};
use edge_node::track::{Track, Tracker, TrackerOptions};
use edge_node::types::{Detections, Face, Object};

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
        r("enter", RuleKind::ZoneEnter { zone: "z".into(), classes: cls(), schedule: Schedule::always() }),
        r("cross", RuleKind::LineCross { line: "l".into(), classes: cls(), direction: Direction::Either }),
        r(
            "crowd",
            RuleKind::Crowd { zone: "z".into(), classes: cls(), min_count: 3, min_duration: Duration::from_secs(3) },
        ),
        r("faces", RuleKind::FaceInZone { zone: "z".into(), schedule: Schedule::always() }),
    ]
}

fn main() {
    let cameras = 200;
    let seconds = 120u64;
    let fps = 2u64;
    let mut zones = BTreeMap::new();
    zones.insert(
        "z".to_string(),
        Polygon::new(vec![Point::new(0.2, 0.3), Point::new(0.8, 0.3), Point::new(0.8, 0.9), Point::new(0.2, 0.9)])
            .unwrap(),
    );
    let mut lines = BTreeMap::new();
    lines.insert("l".to_string(), Polyline::new(vec![Point::new(0.5, 0.0), Point::new(0.5, 1.0)]).unwrap());
    let mut cams: Vec<(Tracker, RuleEngine)> = (0..cameras)
        .map(|_| {
            (
                Tracker::new(TrackerOptions::default()),
                RuleEngine::new(rules(), zones.clone(), lines.clone(), Coordinates::Normalized),
            )
        })
        .collect();
    let sink = AlertSink::new("bench", "gridsight", None);
    let info = CameraInfo { id: "cam", micro_grid: Some("m"), grid: Some("g"), faces: FacePolicy::Blur };
    let label: Arc<str> = Arc::from("person");
    let (mut events, mut bytes) = (0usize, 0usize);
    let local = LocalTime { weekday: 2, minute: 600 };
    let started = Instant::now();
    for step in 0..seconds * fps {
        let t = Duration::from_millis(step * 1000 / fps);
        for (c, (tracker, engine)) in cams.iter_mut().enumerate() {
            // Six objects walking across a 1280x720 frame at different speeds.
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
            let d = Detections { faces, objects };
            let update = tracker.update(&d, t);
            let tracks: Vec<&Track> = tracker.confirmed().collect();
            let evs = engine.evaluate(&Scene {
                tracks: &tracks,
                faces: &d.faces,
                ended: &update.ended,
                frame: (1280, 720),
                t,
                local,
            });
            for e in &evs {
                let v = alert_json(&sink.next_id(), "bench", &info, e, SystemTime::now(), None);
                bytes += serde_json::to_vec(&v).unwrap().len();
            }
            events += evs.len();
        }
    }
    let cpu = started.elapsed().as_secs_f64();
    let per_camera_core = cpu / seconds as f64 / cameras as f64 * 100.0;
    println!(
        "rules: {cameras} cameras x {seconds} s at {fps} detections/s: {cpu:.2} s of CPU, {per_camera_core:.4}% of a core per camera (target < 0.1%); {events} events, {:.0} bytes per alert",
        bytes as f64 / events.max(1) as f64
    );
}
