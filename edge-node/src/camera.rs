//! camera: the per-camera core between ingest and alerts — motion gate, tracker, rule
//! engine — one plain type with no I/O, and the set of them that a config diff updates.
//!
//! Input: each frame before inference ([`CameraCore::admit`]: does it go to detection?),
//! then its detections ([`CameraCore::observe`]), in capture order: the inference pool
//! never holds two frames of one camera at once, and a frame older than the last one
//! observed is dropped and counted, never fed to the tracker. Output: rule events.
//! Time: [`Frame::stream`] for every interval (dwell, cooldowns, track ages, the gate's
//! full-detection interval); [`Frame::wall`] only for schedules (people's local time) and
//! the times alerts show, so a wall-clock step changes neither when rules fire nor how often.
//! Reload: [`Cameras::apply`] keeps the cores of cameras whose detection setup is
//! unchanged (tracks, open incidents, cooldowns), and ends the open incidents of cameras
//! that changed or went away.

use crate::{Locked, RwLocked};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crate::config::{self, Config, FacePolicy};
use crate::drops::Dropped;
use crate::localtime::local_time;
use crate::motion::{Gate, MotionGate, MotionOptions};
use crate::rules::{IncidentIds, RuleEngine, RuleEvent, Scene};
use crate::source::{Demand, FRUITLESS_FOR};
use crate::still::{Still, StillModel};
use crate::track::{Track, Tracker, TrackerOptions};
use crate::types::{Detections, Frame};

/// Where a camera belongs and how its snapshots treat faces (what alerts carry).
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub micro_grid: Option<String>,
    pub grid: Option<String>,
    pub faces: FacePolicy,
    /// The camera's `[longitude, latitude]`.
    pub location: Option<[f64; 2]>,
}

/// One camera's gate, tracker and rules.
pub struct CameraCore {
    pub id: Arc<str>,
    pub placement: Placement,
    config: Arc<config::Camera>,
    setup: String,
    ids: Arc<IncidentIds>,
    gate: Option<MotionGate>,
    tracker: Tracker,
    rules: RuleEngine,
    last: Option<Duration>,
    /// Tells ingest when this camera's rules want every frame (`decode = "adaptive"`).
    demand: Demand,
    /// Whether any rule needs more than key frames.
    wants_deltas: bool,
    /// A rule names its `shortest_visit` ([`crate::source::looks_always`]).
    looks_always: bool,
    /// The dual background, when a `left_object` or `removed_object` rule needs it.
    still: Option<StillModel>,
    /// Since when (stream time) the looks have seen motion while nothing moving was in
    /// view (wind, rain, a panning view, the scenery past a car's window): after
    /// [`FRUITLESS_FOR`] motion alone no longer wants every frame.
    fruitless_since: Option<Duration>,
    /// Whether the latest look found a face that no tracked person holds (a camera that
    /// runs only the face model, or a person the object model missed): something moving.
    loose_face: bool,
    /// The frames after this look are decoded only until its verdict is in (a key frame
    /// that shows motion the looks had found fruitless): off in `observe` when it found
    /// nothing moving either.
    provisional: bool,
    /// How many looks each confirmed track that ended at the latest `observe` was matched at.
    ended_looks: Vec<u32>,
}

/// Motion covering at most this share of the frame (with the live tracks) is detected on a
/// crop around it.
pub const ROI_MAX_SHARE: f32 = 0.5;

/// What decides a core's behaviour: when it changes, the core starts afresh.
fn setup_of(cam: &config::Camera, placement: &Placement) -> String {
    format!(
        "{:?}|{:?}|{:?}|{:?}|{}|{:?}|{:?}",
        cam.rules, cam.zones, cam.lines, cam.coordinates, cam.motion_gate, cam.full_detect_interval, placement
    )
}

impl CameraCore {
    pub fn new(cam: Arc<config::Camera>, grid: Option<String>, ids: Arc<IncidentIds>) -> Self {
        let placement =
            Placement { micro_grid: cam.micro_grid.clone(), grid, faces: cam.faces, location: cam.location };
        let setup = setup_of(&cam, &placement);
        let wants_deltas = !crate::source::delta_rules(&cam).is_empty();
        let looks_always = crate::source::looks_always(&cam);
        let gate = cam.motion_gate.then(|| {
            MotionGate::new(MotionOptions { full_interval: cam.full_detect_interval, ..MotionOptions::default() })
        });
        // One model for the camera's still rules; it absorbs at the longest `absorb_after`.
        let still = cam
            .rules
            .iter()
            .filter_map(|r| match &r.kind {
                config::RuleKind::LeftObject(s) | config::RuleKind::RemovedObject(s) => Some(s.absorb_after),
                _ => None,
            })
            .max()
            .map(StillModel::new);
        Self {
            id: Arc::from(cam.id.as_str()),
            placement,
            setup,
            gate,
            tracker: Tracker::new(TrackerOptions::default()),
            rules: RuleEngine::for_camera(&cam).with_ids(ids.clone()),
            ids,
            config: cam,
            last: None,
            wants_deltas,
            looks_always,
            demand: Demand::default(),
            still,
            fruitless_since: None,
            loose_face: false,
            provisional: false,
            ended_looks: Vec::new(),
        }
    }

    /// Shares the camera's demand with ingest (kept across rebuilds of the core).
    pub fn with_demand(mut self, demand: Demand) -> Self {
        if !self.wants_deltas {
            demand.set(false);
        }
        self.demand = demand;
        self
    }

    /// Before inference: whether this frame should go to detection (live tracks keep
    /// detection running even when little moves).
    ///
    /// For a rule that needs every frame, the demand follows: on while something moved
    /// since the look before ([`MotionGate::moved`]) or a confirmed track that is not
    /// stationary is in view (matched at one of the latest looks, see
    /// [`crate::track::Tracker::recent`]; always, without a motion gate), off when the scene
    /// is quiet. Motion in which detection finds nothing moving for [`FRUITLESS_FOR`] (wind
    /// in trees, rain, a panning view, the scenery past a seated person) no longer counts
    /// until a look finds a track that moves (or a face no tracked person holds) or sees
    /// the scene quiet: the key frames that show motion are still looked at, and the frames
    /// after such a key frame are decoded until its look's verdict is in, so that what
    /// enters is found at the next key frame and followed from there. And a burst
    /// (detection at [`crate::source::BURST_FPS`]) while a track, confirmed or not and not
    /// stationary, is within reach of a line a rule watches for its class. A track that
    /// went unseen for a few looks lives on until `max_age` (it may come back), but the
    /// camera goes back to key frames meanwhile: a key frame that sees it again, or motion,
    /// turns every frame back on. A camera whose rule names its `shortest_visit` wants every
    /// frame all the time (ingest decodes up to each look at `detect_fps`, one per shortest
    /// visit of a zone, two per shortest time in view at a line): a visit or a crossing that
    /// starts after a quiet key frame and ends before the next one is seen only so.
    ///
    /// With still rules, the frame also feeds the camera's dual background (at most once a
    /// second), and while it holds a still region (or one just went) the frame goes to a
    /// full detection: the rules look at regions only on frames they see, and need the
    /// objects over a region to tell a parked car or a person standing from a thing left.
    pub fn admit(&mut self, frame: &Frame) -> Gate {
        let live = self.tracker.has_live();
        let mut gate = match self.gate.as_mut() {
            Some(gate) => gate.check(&frame.data, frame.width, frame.height, live, frame.stream),
            None => Gate::Run { full: true, regions: Vec::new() },
        };
        if let Some(still) = self.still.as_mut() {
            let had = !still.stills().is_empty();
            if still.update(&frame.data, frame.width, frame.height, frame.stream)
                && (had || !still.stills().is_empty())
                && !matches!(gate, Gate::Run { full: true, .. })
            {
                gate = Gate::Run { full: true, regions: vec![[0.0, 0.0, 1.0, 1.0]] };
            }
        }
        if self.wants_deltas {
            // A full detection forced by the interval (or a first frame) is not motion, nor is
            // a change that stopped (the background still learning it): only what changed
            // since the look before.
            let moving = matches!(&gate, Gate::Run { full: false, regions } if !regions.is_empty())
                && self.gate.as_ref().is_some_and(MotionGate::moved);
            let found = self.moving_in_view();
            self.fruitless_since = (moving && !found).then(|| self.fruitless_since.unwrap_or(frame.stream));
            let searching =
                moving && self.fruitless_since.is_none_or(|since| frame.stream.saturating_sub(since) < FRUITLESS_FOR);
            let in_view = self.tracker.recent().any(|t| t.confirmed && !t.stationary);
            // A key frame that shows fruitless motion: the frames after it are decoded until
            // this look's verdict is in, so that what it finds is followed from here, not
            // from the next key frame.
            self.provisional = !self.looks_always && moving && !searching && !in_view && frame.keyframe;
            self.demand.set(self.gate.is_none() || self.looks_always || searching || in_view || self.provisional);
            let size = (frame.source_width.max(frame.width), frame.source_height.max(frame.height));
            self.demand.set_burst(self.rules.near_line(self.tracker.tracks(), size));
        }
        gate
    }

    /// Whether something that moves is in view: a track, tentative or not, that is not
    /// stationary (matched at one of the latest looks), or a face no tracked person holds.
    fn moving_in_view(&self) -> bool {
        self.loose_face || self.tracker.recent().any(|t| !t.stationary)
    }

    /// Where detection should look on a frame the gate let through: around what moved and
    /// every live track (with a margin of a tenth of the frame, at least 32 pixels), when
    /// that is at most [`ROI_MAX_SHARE`] of the frame; `None` (the whole frame) otherwise,
    /// and for full detections (forced by the interval, or without a motion gate).
    pub fn roi(&self, gate: &Gate, frame: &Frame) -> Option<[u32; 4]> {
        let Gate::Run { full: false, regions } = gate else { return None };
        if regions.is_empty() {
            return None;
        }
        let (w, h) = (frame.width as f32, frame.height as f32);
        let sx = frame.source_width.max(frame.width) as f32 / w;
        let sy = frame.source_height.max(frame.height) as f32 / h;
        let mut r = [f32::MAX, f32::MAX, 0.0f32, 0.0f32];
        let mut add = |b: [f32; 4]| {
            r = [r[0].min(b[0]), r[1].min(b[1]), r[2].max(b[2]), r[3].max(b[3])];
        };
        for g in regions {
            add([g[0] * w, g[1] * h, g[2] * w, g[3] * h]);
        }
        for t in self.tracker.tracks() {
            let b = t.bbox;
            add([b[0] / sx, b[1] / sy, b[2] / sx, b[3] / sy]);
        }
        let m = (0.1 * w.max(h)).max(32.0);
        let r = [(r[0] - m).max(0.0), (r[1] - m).max(0.0), (r[2] + m).min(w), (r[3] + m).min(h)];
        if (r[2] - r[0]) * (r[3] - r[1]) > ROI_MAX_SHARE * w * h {
            return None;
        }
        Some([r[0] as u32, r[1] as u32, r[2].ceil() as u32, r[3].ceil() as u32])
    }

    /// After inference, in capture order: the tracker and the rules on stream time. A frame
    /// older than one already observed goes no further ([`Dropped::OutOfOrder`]).
    pub fn observe(&mut self, frame: &Frame, d: &Detections) -> Result<Vec<RuleEvent>, Dropped> {
        let t = frame.stream;
        if self.last.is_some_and(|last| t <= last) {
            return Err(Dropped::OutOfOrder);
        }
        self.last = Some(t);
        let update = self.tracker.update(d, t);
        self.ended_looks.clear();
        self.ended_looks.extend(update.ended.iter().map(|tr| tr.hits));
        self.loose_face = d.faces.len() > self.tracker.tracks().iter().filter(|tr| tr.face.is_some()).count();
        if std::mem::take(&mut self.provisional) && !self.moving_in_view() {
            self.demand.set(false);
        }
        let refs: Vec<&Track> = self.tracker.confirmed().collect();
        let size = (frame.source_width.max(frame.width), frame.source_height.max(frame.height));
        let stills: Vec<Still> = self.still.as_ref().map_or_else(Vec::new, |m| {
            let (w, h) = (size.0 as f32, size.1 as f32);
            m.stills()
                .iter()
                .map(|s| Still { bbox: [s.bbox[0] * w, s.bbox[1] * h, s.bbox[2] * w, s.bbox[3] * h], ..s.clone() })
                .collect()
        });
        let scene = Scene {
            tracks: &refs,
            objects: &d.objects,
            stills: &stills,
            faces: &d.faces,
            ended: &update.ended,
            frame: size,
            t,
            wall: frame.wall,
            local: local_time(frame.wall),
        };
        Ok(self.rules.evaluate(&scene))
    }

    /// Ends every open incident (the camera changed or went away), at the last stream time.
    pub fn end_all(&mut self) -> Vec<RuleEvent> {
        let t = self.last.unwrap_or_default();
        self.rules.end_all(t)
    }

    /// Starts afresh (after a panic while handling one of its frames): a new tracker and
    /// rule engine; incident numbers continue.
    pub fn reset(&mut self) {
        let last = self.last;
        let demand = self.demand.clone();
        *self = Self::new(self.config.clone(), self.placement.grid.clone(), self.ids.clone()).with_demand(demand);
        self.last = last;
    }

    /// Whether `cam` (placed in `grid`) would build the same core.
    pub fn same_setup(&self, cam: &config::Camera, grid: Option<&str>) -> bool {
        let placement = Placement {
            micro_grid: cam.micro_grid.clone(),
            grid: grid.map(str::to_string),
            faces: cam.faces,
            location: cam.location,
        };
        setup_of(cam, &placement) == self.setup
    }

    pub fn open_incidents(&self) -> usize {
        self.rules.open_incidents()
    }

    /// The still model's regions (0–1 frame coordinates) and bytes, when the camera has one.
    pub fn still(&self) -> Option<&StillModel> {
        self.still.as_ref()
    }

    /// How many looks each confirmed track that ended at the latest [`CameraCore::observe`]
    /// was matched at: one is a visit about as short as the time between two looks, or
    /// shorter, seen because a look fell in it.
    pub fn ended_looks(&self) -> &[u32] {
        &self.ended_looks
    }

    pub fn live_tracks(&self) -> usize {
        self.tracker.confirmed().count()
    }

    pub fn models(&self) -> &[String] {
        &self.config.models
    }
}

/// Open incidents a reload ended, for one camera, with where they belonged.
pub struct Ended {
    pub camera: Arc<str>,
    pub placement: Placement,
    pub events: Vec<RuleEvent>,
    pub wall: SystemTime,
}

/// Every enabled camera's core, by id.
#[derive(Default)]
pub struct Cameras {
    cores: RwLock<HashMap<Arc<str>, Arc<Mutex<CameraCore>>>>,
    /// Per camera id, kept while the camera exists (a rebuilt core and a running pipeline
    /// share it).
    demands: Mutex<HashMap<String, Demand>>,
}

impl Cameras {
    /// The camera's demand (see [`Demand`]), for its ingest spec.
    pub fn demand(&self, id: &str) -> Demand {
        self.demands.locked().entry(id.to_string()).or_default().clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Mutex<CameraCore>>> {
        self.cores.read_locked().get(id).cloned()
    }

    pub fn ids(&self) -> Vec<Arc<str>> {
        self.cores.read_locked().keys().cloned().collect()
    }

    /// Brings the set in line with `config`: new cameras get a core, unchanged ones keep
    /// theirs (tracks, open incidents, cooldowns), changed or removed ones end their open
    /// incidents (returned, to be sent as `end` alerts) and changed ones start afresh.
    /// Returns the ids added or rebuilt, and the ended incidents.
    pub fn apply(&self, config: &Config, ids: &Arc<IncidentIds>) -> (Vec<Arc<str>>, Vec<Ended>) {
        let mut cores = self.cores.write_locked();
        let wanted: HashMap<&str, &config::Camera> =
            config.cameras.iter().filter(|c| c.here).map(|c| (c.id.as_str(), c)).collect();
        let mut ended = Vec::new();
        let mut end = |core: &Mutex<CameraCore>| {
            let mut core = core.locked();
            let events = core.end_all();
            if !events.is_empty() {
                ended.push(Ended {
                    camera: core.id.clone(),
                    placement: core.placement.clone(),
                    events,
                    wall: SystemTime::now(),
                });
            }
        };
        cores.retain(|id, core| {
            let keep = wanted.contains_key(id.as_ref());
            if !keep {
                end(core);
            }
            keep
        });
        self.demands.locked().retain(|id, _| wanted.contains_key(id.as_str()));
        let mut built = Vec::new();
        for (id, cam) in wanted {
            let grid = config.grid_of(cam);
            if let Some(core) = cores.get(id) {
                if core.locked().same_setup(cam, grid) {
                    continue;
                }
                end(core);
            }
            let core = CameraCore::new(Arc::new(cam.clone()), grid.map(str::to_string), ids.clone())
                .with_demand(self.demand(id));
            cores.insert(core.id.clone(), Arc::new(Mutex::new(core)));
            built.push(Arc::from(id));
        }
        (built, ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Object;

    const CONFIG: &str = r#"
version = 1
[node]
id = "t"
[storage]
data_dir = "/tmp/gridsight-camera-tests"
models_dir = "MODELS"
[models.objects]
file = "yolox_nano.onnx"
[[cameras]]
id = "yard"
url = "rtsp://127.0.0.1/yard"
motion_gate = false
[cameras.zones.bay]
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "parking"
kind = "zone_dwell"
category = "illegal_parking"
zone = "bay"
classes = ["car"]
min_duration = "30s"
cooldown = "5m"
[[cameras]]
id = "gate"
url = "rtsp://127.0.0.1/gate"
motion_gate = false
[cameras.zones.all]
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "enter"
kind = "zone_enter"
category = "intrusion"
zone = "all"
classes = ["car"]
"#;

    fn config(text: &str) -> Config {
        let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");
        crate::config::parse(&text.replace("MODELS", models), std::path::Path::new("/"))
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn frame(camera: &str, stream: f64, wall: SystemTime) -> Frame {
        Frame {
            camera: Arc::from(camera),
            seq: 0,
            pts: None,
            stream: Duration::from_secs_f64(stream),
            wall,
            width: 100,
            height: 100,
            source_width: 100,
            source_height: 100,
            keyframe: true,
            roi: None,
            data: Arc::from(vec![0u8; 100 * 100 * 3]),
        }
    }

    fn parked_car() -> Detections {
        Detections {
            objects: vec![Object { bbox: [40.0, 40.0, 60.0, 60.0], score: 0.9, class_id: 2, label: Arc::from("car") }],
            faces: vec![],
        }
    }

    /// Camera "gate" of [`CONFIG`] with a line rule (a rule that needs every frame) and its
    /// motion gate on, and the demand it sets.
    fn line_core() -> (CameraCore, Demand) {
        let cfg = config(&CONFIG.replace(
            "[[cameras]]\nid = \"gate\"\nurl = \"rtsp://127.0.0.1/gate\"\nmotion_gate = false",
            "[[cameras]]\nid = \"gate\"\nurl = \"rtsp://127.0.0.1/gate\"\n[cameras.lines.middle]\npoints = [[0.5, 0.0], [0.5, 1.0]]\n\
             [[cameras.rules]]\nid = \"cross\"\nkind = \"line_cross\"\ncategory = \"line_crossing\"\nline = \"middle\"\nclasses = [\"car\"]",
        ));
        let demand = Demand::default();
        (core(&cfg, "gate").with_demand(demand.clone()), demand)
    }

    /// A 100x100 picture, dark, with a bright 20-pixel square at `x` (the picture changes
    /// between two looks when `x` does).
    fn square_at(x: Option<usize>) -> Arc<[u8]> {
        let mut f = vec![60u8; 100 * 100 * 3];
        if let Some(x) = x {
            for y in 40..60 {
                f[(y * 100 + x) * 3..(y * 100 + x + 20) * 3].fill(230);
            }
        }
        Arc::from(f)
    }

    /// One look of camera "gate" at `s` seconds that found `d`: whether the frames after it
    /// are decoded (the demand once the look's verdict is in).
    fn wanted_after(c: &mut CameraCore, demand: &Demand, s: f64, data: &Arc<[u8]>, d: &Detections) -> bool {
        let f = Frame { data: data.clone(), ..frame("gate", s, SystemTime::now()) };
        c.admit(&f);
        c.observe(&f, d).unwrap();
        demand.get()
    }

    fn core(cfg: &Config, id: &str) -> CameraCore {
        let cam = cfg.cameras.iter().find(|c| c.id == id).unwrap();
        CameraCore::new(Arc::new(cam.clone()), None, Arc::new(IncidentIds::new(1)))
    }

    /// At key frames 2 s apart, a car seen at one of them and gone at the next ends (after
    /// `max_age`) as a track of one look; a parked car seen at every look ends with all of
    /// them: what the status counts as tracks seen once.
    #[test]
    fn a_track_that_ends_says_how_many_looks_saw_it() {
        let cfg = config(CONFIG);
        let mut c = core(&cfg, "gate");
        let now = SystemTime::now();
        let none = Detections::default();
        let mut ended = Vec::new();
        let mut look = |s: f64, d: &Detections, ended: &mut Vec<u32>| {
            c.observe(&frame("gate", s, now), d).unwrap();
            ended.extend_from_slice(c.ended_looks());
        };
        look(0.0, &none, &mut ended);
        look(2.0, &parked_car(), &mut ended);
        for s in [4.0, 6.0, 8.0] {
            look(s, &none, &mut ended);
        }
        assert_eq!(ended, [1], "a car seen at one key frame");
        for s in [10.0, 12.0, 14.0] {
            look(s, &parked_car(), &mut ended);
        }
        for s in [16.0, 18.0, 20.0] {
            look(s, &none, &mut ended);
        }
        assert_eq!(ended, [1, 3], "a car seen at three");
        let counters = crate::telemetry::CameraCounters::default();
        ended.iter().for_each(|looks| counters.track_ended(*looks));
        assert_eq!(counters.recent_tracks.get(), (1, 2));
    }

    /// The wall clock steps back an hour in the middle of a 30 s dwell: the alert still
    /// fires at 30 s of stream time, once, and the 5-minute cooldown is not disturbed.
    #[test]
    fn a_wall_clock_step_changes_nothing_but_the_times_shown() {
        let cfg = config(CONFIG);
        let mut c = core(&cfg, "yard");
        let start = SystemTime::now();
        let mut fired = Vec::new();
        for i in 0..120 {
            let s = i as f64 * 0.5;
            // At 12 s of stream time, the wall clock jumps back an hour (NTP, an operator).
            let wall = if s < 12.0 {
                start + Duration::from_secs_f64(s)
            } else {
                start + Duration::from_secs_f64(s) - Duration::from_secs(3600)
            };
            for e in c.observe(&frame("yard", s, wall), &parked_car()).unwrap() {
                fired.push((s, e.kind));
            }
        }
        let news: Vec<f64> =
            fired.iter().filter(|(_, k)| *k == crate::rules::EventKind::New).map(|(s, _)| *s).collect();
        // The tracker confirms the car on its second frame (0.5 s): 30 s later it fires.
        assert_eq!(news.len(), 1, "{fired:?}");
        assert!((30.0..=31.5).contains(&news[0]), "fired at {} s of stream time: {fired:?}", news[0]);
    }

    /// Frames that arrive out of capture order are dropped, counted, never tracked.
    #[test]
    fn detection_looks_where_it_moved_and_at_live_tracks() {
        let cfg = config(CONFIG);
        let core = CameraCore::new(Arc::new(cfg.cameras[0].clone()), None, Arc::new(IncidentIds::new(1)));
        let f = Frame {
            width: 640,
            height: 360,
            source_width: 1280,
            source_height: 720,
            data: Arc::from(vec![0u8; 640 * 360 * 3]),
            ..frame("yard", 1.0, SystemTime::now())
        };
        let (w, h) = (f.width, f.height);
        // A small region: a crop around it with the margin.
        let small = Gate::Run { full: false, regions: vec![[0.45, 0.45, 0.55, 0.55]] };
        let r = core.roi(&small, &f).expect("a crop");
        let m = (0.1 * w.max(h) as f32).max(32.0);
        assert!(r[0] as f32 <= 0.45 * w as f32 - m + 1.0 && r[2] as f32 >= 0.55 * w as f32 + m - 1.0, "{r:?}");
        assert!(r[2] <= w && r[3] <= h);
        // Motion over most of the frame, a forced full detection, no regions: the whole frame.
        assert_eq!(core.roi(&Gate::Run { full: false, regions: vec![[0.0, 0.0, 0.9, 0.9]] }, &f), None);
        assert_eq!(core.roi(&Gate::Run { full: true, regions: vec![[0.45, 0.45, 0.55, 0.55]] }, &f), None);
        assert_eq!(core.roi(&Gate::Run { full: false, regions: vec![] }, &f), None);
    }

    /// A camera whose line rule needs every frame decodes them while something moves from
    /// look to look or a confirmed track is in view; not while the motion gate's background
    /// learns a change that stopped, nor for the rest of a vanished track's `max_age`.
    #[test]
    fn every_frame_is_wanted_while_something_moves_or_a_track_is_in_view() {
        let (mut c, demand) = line_core();
        let look = |c: &mut CameraCore, s: f64, data: &Arc<[u8]>, d: &Detections| wanted_after(c, &demand, s, data, d);
        let none = Detections::default();
        let (empty, car) = (square_at(None), square_at(Some(10)));
        look(&mut c, 0.0, &empty, &none);
        assert!(!look(&mut c, 1.0, &empty, &none), "a quiet scene: key frames");
        // A car drives in and stops: it moved on one look; afterwards the motion gate's
        // background is still learning it, but nothing moves.
        assert!(look(&mut c, 2.0, &car, &none), "it moved");
        assert!(!look(&mut c, 3.0, &car, &none), "it stopped, and nothing is tracked");
        // Tracked: every frame while it is in view, through two missed looks; after three,
        // key frames again though the track lives on (max_age).
        look(&mut c, 4.0, &car, &parked_car());
        look(&mut c, 4.2, &car, &parked_car());
        for s in [4.4, 4.6, 4.8] {
            assert!(look(&mut c, s, &car, &none), "{s}: the car is in view");
        }
        assert!(!look(&mut c, 5.0, &car, &none), "unseen for three looks");
        assert_eq!(c.live_tracks(), 1);
    }

    /// Motion in which detection finds nothing moving (wind, rain, a panning view) wants
    /// every frame for [`FRUITLESS_FOR`], then key frames until a look finds a
    /// moving track or sees the scene quiet; a stationary track (a parked car) keeps no
    /// camera decoding every frame.
    #[test]
    fn fruitless_motion_and_stationary_tracks_go_back_to_key_frames() {
        let (mut c, demand) = line_core();
        let look = |c: &mut CameraCore, s: f64, data: &Arc<[u8]>, d: &Detections| wanted_after(c, &demand, s, data, d);
        let car_at = |x: f32| Detections {
            objects: vec![Object { bbox: [x, 40.0, x + 20.0, 60.0], score: 0.9, class_id: 2, label: Arc::from("car") }],
            faces: vec![],
        };
        let none = Detections::default();
        let (left, right) = (square_at(Some(10)), square_at(Some(60)));
        look(&mut c, 0.0, &square_at(None), &none);
        // Branches swaying: motion at every look, nothing detected.
        let mut s = 1.0;
        for n in 0..6 {
            let wanted = look(&mut c, s, if n % 2 == 0 { &right } else { &left }, &none);
            assert_eq!(wanted, n < 3, "{s} s: every frame for the first 3 s of fruitless motion");
            s += 1.0;
        }
        // Meanwhile each key frame that shows motion is looked at, and the frames after it
        // are decoded until the look's verdict is in.
        let f = Frame { data: right.clone(), ..frame("gate", s, SystemTime::now()) };
        c.admit(&f);
        assert!(demand.get(), "the frames after a moving key frame, until its verdict");
        c.observe(&f, &none).unwrap();
        assert!(!demand.get(), "nothing found: key frames");
        s += 1.0;
        // A car drives in, found at a key frame: every frame from there, and the car
        // confirmed and moving keeps every frame while it is in view.
        assert!(look(&mut c, s, &left, &car_at(0.0)), "a key frame found a car");
        assert!(look(&mut c, s + 1.0, &left, &car_at(30.0)), "a moving car is in view");
        assert!(look(&mut c, s + 2.0, &left, &car_at(60.0)), "it moved, and it is in view");
        // It parks: every frame until it is stationary (5 s in one place), then key frames
        // though it stays confirmed and in view.
        let parked = s + 3.0;
        let mut wanted = Vec::new();
        for k in 0..8 {
            wanted.push(look(&mut c, parked + k as f64, &left, &car_at(62.0)));
        }
        assert!(wanted[..5].iter().all(|w| *w), "moving until it has stood for 5 s: {wanted:?}");
        assert!(!wanted[7], "a parked car: key frames: {wanted:?}");
        assert_eq!(c.live_tracks(), 1);
        // A look that sees the scene quiet ends the fruitless spell: motion is wanted again.
        assert!(look(&mut c, parked + 8.0, &right, &car_at(62.0)), "new motion after a quiet look");
    }

    /// A rule's `shortest_visit` is a promise about visits that start in a quiet scene too:
    /// a 1 s visit between two key frames of a quiet scene is seen only by a look in between,
    /// so the camera keeps its looks going, quiet or fruitless (a zone's once per visit, a
    /// line's twice per time in view).
    #[test]
    fn a_shortest_visit_keeps_the_looks_going_in_a_quiet_scene() {
        let cfg = config(
            &CONFIG
                .replace(
                    "[[cameras]]\nid = \"gate\"\nurl = \"rtsp://127.0.0.1/gate\"\nmotion_gate = false",
                    "[[cameras]]\nid = \"gate\"\nurl = \"rtsp://127.0.0.1/gate\"",
                )
                .replace(
                    "zone = \"all\"\nclasses = [\"car\"]",
                    "zone = \"all\"\nclasses = [\"car\"]\nshortest_visit = \"1s\"",
                ),
        );
        let demand = Demand::default();
        let mut c = core(&cfg, "gate").with_demand(demand.clone());
        let quiet = square_at(None);
        for s in 0..4 {
            assert!(
                wanted_after(&mut c, &demand, s as f64, &quiet, &Detections::default()),
                "{s} s: quiet, still looking"
            );
        }
        // Motion in which detection finds nothing for far longer than `FRUITLESS_FOR`.
        for s in 4..12 {
            let swaying = square_at(Some(if s % 2 == 0 { 10 } else { 60 }));
            assert!(
                wanted_after(&mut c, &demand, s as f64, &swaying, &Detections::default()),
                "{s} s: fruitless, still looking"
            );
        }
        let cam = cfg.cameras.iter().find(|c| c.id == "gate").unwrap();
        assert_eq!(crate::source::detect_fps(cam), 1.0, "a look per shortest visit of a zone");
        let spec = crate::source::CameraSpec::from_config(cam, &cfg);
        assert!(spec.looks_always && spec.cadence().contains("a look every 1 s, quiet or not"), "{}", spec.cadence());
        // Forced to key frames, the camera says what that costs the rule.
        let forced = crate::source::CameraSpec { decode: config::DecodeMode::Keyframes, ..spec };
        assert!(forced.cadence().contains("although enter (zone_enter) needs more"), "{}", forced.cadence());

        // Without `shortest_visit` a line camera goes back to key frames when quiet; with it,
        // it looks twice per that time in view, quiet or not.
        let (mut line, demand) = line_core();
        for s in 0..3 {
            wanted_after(&mut line, &demand, s as f64, &quiet, &Detections::default());
        }
        assert!(!demand.get(), "a quiet line camera waits for a key frame that shows motion");
        let mut runner = line.config.as_ref().clone();
        let cross = runner.rules.iter_mut().find(|r| r.id == "cross").unwrap();
        let config::RuleKind::LineCross { shortest_visit, .. } = &mut cross.kind else { panic!("a line rule") };
        *shortest_visit = Some(Duration::from_millis(1200));
        assert!((crate::source::detect_fps(&runner) - 2.0 / 1.2).abs() < 1e-9, "two looks per shortest time in view");
        let demand = Demand::default();
        let mut line =
            CameraCore::new(Arc::new(runner), None, Arc::new(IncidentIds::new(1))).with_demand(demand.clone());
        for s in 0..3 {
            assert!(wanted_after(&mut line, &demand, s as f64, &quiet, &Detections::default()), "{s} s: still looking");
        }
    }

    /// A face that no tracked person holds (a camera that runs only the face model) is
    /// something moving: motion with faces in it keeps every frame decoded past
    /// [`FRUITLESS_FOR`].
    #[test]
    fn a_face_alone_is_not_fruitless_motion() {
        let (mut c, demand) = line_core();
        let look = |c: &mut CameraCore, s: f64, data: &Arc<[u8]>, d: &Detections| wanted_after(c, &demand, s, data, d);
        let face = Detections {
            objects: vec![],
            faces: vec![crate::types::Face { bbox: [40.0, 40.0, 55.0, 58.0], score: 0.9, landmarks: [[0.0; 2]; 5] }],
        };
        let (left, right) = (square_at(Some(10)), square_at(Some(60)));
        look(&mut c, 0.0, &square_at(None), &face);
        for n in 1..8 {
            let s = n as f64;
            assert!(look(&mut c, s, if n % 2 == 0 { &left } else { &right }, &face), "{s} s: a face moves in view");
        }
    }

    #[test]
    fn out_of_order_frames_never_reach_the_tracker() {
        let cfg = config(CONFIG);
        let mut c = core(&cfg, "yard");
        let now = SystemTime::now();
        assert!(c.observe(&frame("yard", 2.0, now), &parked_car()).is_ok());
        assert_eq!(c.observe(&frame("yard", 1.5, now), &parked_car()), Err(Dropped::OutOfOrder));
        assert_eq!(c.observe(&frame("yard", 2.0, now), &parked_car()), Err(Dropped::OutOfOrder));
    }

    /// Reload: an unchanged camera keeps its tracks and open incident (no second `new`);
    /// a changed one ends its incident with `end` and starts afresh; a removed one ends its.
    #[test]
    fn reload_keeps_unchanged_cameras_and_ends_the_others_incidents() {
        let cfg = config(CONFIG);
        let ids = Arc::new(IncidentIds::new(7));
        let cams = Cameras::default();
        let (built, ended) = cams.apply(&cfg, &ids);
        assert_eq!((built.len(), ended.len()), (2, 0));
        let now = SystemTime::now();
        let mut opened = HashMap::new();
        for i in 0..100 {
            for id in ["yard", "gate"] {
                let core = cams.get(id).unwrap();
                let mut core = core.locked();
                for e in core.observe(&frame(id, 0.5 * i as f64, now), &parked_car()).unwrap() {
                    opened.insert(id, e.incident);
                }
            }
        }
        assert_eq!(opened.len(), 2, "both cameras have an open incident: {opened:?}");

        // The same file again: nothing ends, nothing is rebuilt, the incidents stay open.
        let (built, ended) = cams.apply(&config(CONFIG), &ids);
        assert!(built.is_empty() && ended.is_empty());
        for id in ["yard", "gate"] {
            let core = cams.get(id).unwrap();
            let mut core = core.locked();
            assert_eq!((core.open_incidents(), core.live_tracks()), (1, 1), "{id}");
            let again = core.observe(&frame(id, 50.0, now), &parked_car()).unwrap();

            assert!(again.is_empty(), "{id}: no second new for the same incident: {:?}", again.len());
        }

        // "yard" gets a longer dwell; "gate" is removed.
        let changed = CONFIG.replace("min_duration = \"30s\"", "min_duration = \"45s\"");
        let changed = &changed[..changed.find("[[cameras]]\nid = \"gate\"").unwrap()];
        let (built, ended) = cams.apply(&config(changed), &ids);
        assert_eq!(built.iter().map(|b| b.as_ref()).collect::<Vec<_>>(), ["yard"]);
        let mut ends: Vec<(String, u64)> = ended
            .iter()
            .flat_map(|e| e.events.iter().map(|ev| (e.camera.to_string(), ev.incident, ev.kind)))
            .inspect(|(_, _, k)| assert_eq!(*k, crate::rules::EventKind::End))
            .map(|(c, i, _)| (c, i))
            .collect();
        ends.sort();
        assert_eq!(ends, [("gate".to_string(), opened["gate"]), ("yard".to_string(), opened["yard"])]);
        assert!(cams.get("gate").is_none());
        let yard = cams.get("yard").unwrap();
        assert_eq!(yard.locked().open_incidents(), 0, "the changed camera starts afresh");
    }
}
