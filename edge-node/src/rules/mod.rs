//! rules: violation rules of one camera, evaluated on its tracks.
//!
//! Input: the confirmed tracks and faces of a frame, the tracks that just ended, the
//! frame's size, a monotonic time and the local weekday and minute (for schedules).
//! Output: [`RuleEvent`]s — `new` when a rule fires, `update` when an incident materially
//! changes, `end` when it stops. Pure: no I/O, no clock of its own, so tests drive it with
//! any times they like. Zone membership uses a track's ground point (bottom-centre for
//! people and vehicles); a point on a zone's border counts as inside.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{Coordinates, Direction, Rule, RuleKind, Severity, StillRule};
use crate::geometry::{Point, Polygon, Polyline};
use crate::still::{Change, Still};
use crate::track::Track;
use crate::types::{Face, Object};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    New,
    Update,
    End,
}

/// A change in an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleEvent {
    pub kind: EventKind,
    /// Unique per camera and engine lifetime; `new`, `update` and `end` of one incident share it.
    pub incident: u64,
    pub rule: String,
    pub category: String,
    pub severity: Severity,
    pub dispatch: bool,
    /// What triggered it: a class label, `face`, or `crowd`.
    pub label: String,
    pub score: f32,
    pub track: Option<u64>,
    /// Zone or line name.
    pub zone: Option<String>,
    /// Objects counted (crowd rules).
    pub count: Option<u32>,
    /// Box of the triggering object, camera pixels.
    pub bbox: Option<[f32; 4]>,
    pub started_at: Duration,
    pub ended_at: Option<Duration>,
    /// When the incident started on the wall clock: computed once, when it opened, so every
    /// event of one incident carries the same start (stream and wall clocks drift apart).
    pub started_wall: SystemTime,
    /// `absence` rules: when somebody watched was last seen in the zone (wall clock).
    pub last_seen: Option<SystemTime>,
}

pub use gridsight_base::localtime::LocalTime;

/// What the engine looks at in one frame.
pub struct Scene<'a> {
    pub tracks: &'a [&'a Track],
    /// The objects detected in this frame, confirmed or not (what explains a still region).
    pub objects: &'a [Object],
    /// The camera's still regions ([`crate::still`]), boxes in camera pixels.
    pub stills: &'a [Still],
    pub faces: &'a [Face],
    /// Tracks that ended since the last frame.
    pub ended: &'a [Track],
    pub frame: (u32, u32),
    pub t: Duration,
    /// The wall-clock time of the frame at `t`.
    pub wall: SystemTime,
    pub local: LocalTime,
}

/// Crowd incidents end after the count stays below the minimum this long.
const CROWD_END_AFTER: Duration = Duration::from_secs(3);
/// Face incidents end after no face is in the zone this long.
const FACE_END_AFTER: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
struct Open {
    incident: u64,
    started: Duration,
    started_wall: SystemTime,
    best: f32,
    count: u32,
}

/// Per-rule memory.
#[derive(Default)]
struct RuleState {
    /// Per track: since when the condition holds (inside / stationary inside).
    since: HashMap<u64, Duration>,
    /// Per track: last side of the line (sign) and last ground point.
    side: HashMap<u64, (f32, Point)>,
    /// Open incidents per track (0 = the rule's single incident: crowd, faces).
    open: HashMap<u64, Open>,
    /// Per track (0 for rule-wide): quiet until.
    quiet_until: HashMap<u64, Duration>,
    /// Crowd: count at or above the minimum since; below since.
    above_since: Option<Duration>,
    below_since: Option<Duration>,
    last_face: Option<Duration>,
    /// Absence: since when nobody has been seen (of active time), and when somebody was.
    absent_since: Option<Duration>,
    last_seen: Option<SystemTime>,
    /// Left and removed objects: the still regions already reported and absorbed (never again).
    absorbed: std::collections::HashSet<u64>,
}

pub struct RuleEngine {
    // Shared so evaluating a frame borrows them cheaply instead of copying them.
    rules: Vec<Arc<Rule>>,
    zones: BTreeMap<String, Arc<Polygon>>,
    lines: BTreeMap<String, Arc<Polyline>>,
    coordinates: Coordinates,
    state: Vec<RuleState>,
    ids: Arc<IncidentIds>,
}

/// Incident numbers, unique across every camera, reload and restart of a node: the high
/// 32 bits are a run number that only grows (stored by the node, and never below the Unix
/// time in seconds at start, so a lost database does not bring old numbers back), the low
/// 32 bits count within the run.
#[derive(Debug)]
pub struct IncidentIds {
    run: u64,
    next: std::sync::atomic::AtomicU64,
}

impl IncidentIds {
    pub fn new(run: u64) -> Self {
        Self { run, next: std::sync::atomic::AtomicU64::new(1) }
    }

    /// The run number to use after `stored` (the last one used) when the time is `now_secs`.
    pub fn next_run(stored: Option<u64>, now_secs: u64) -> u64 {
        gridsight_base::outbox::next_incident_run(stored, now_secs)
    }

    pub fn run(&self) -> u64 {
        self.run
    }

    pub fn next(&self) -> u64 {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xffff_ffff;
        self.run << 32 | n
    }
}

fn on_segment_dist(p: Point, a: Point, b: Point) -> f64 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 { 0.0 } else { (((p.x - a.x) * dx + (p.y - a.y) * dy) / len2).clamp(0.0, 1.0) };
    let (cx, cy) = (a.x + t * dx, a.y + t * dy);
    ((p.x - cx).powi(2) + (p.y - cy).powi(2)).sqrt()
}

/// Inside, or on the border (within a hair).
fn inside(poly: &Polygon, p: Point) -> bool {
    if poly.contains(p) {
        return true;
    }
    let pts = poly.points();
    (0..pts.len()).any(|i| on_segment_dist(p, pts[i], pts[(i + 1) % pts.len()]) < 1e-6)
}

/// Side of the polyline `p` is on, relative to the segment nearest to it: > 0 right,
/// < 0 left, as seen walking from the first point to the last (image y grows down).
fn side(line: &Polyline, p: Point) -> f32 {
    let pts = line.points();
    let (mut best, mut side) = (f64::MAX, 0.0);
    for w in pts.windows(2) {
        let d = on_segment_dist(p, w[0], w[1]);
        if d < best {
            best = d;
            side = (w[1].x - w[0].x) * (p.y - w[0].y) - (w[1].y - w[0].y) * (p.x - w[0].x);
        }
    }
    // f64::signum(0.0) is 1: a point on the line is on neither side.
    if side.abs() < 1e-9 { 0.0 } else { side.signum() as f32 }
}

/// Whether a rule looks at this track: one of its classes, scored well enough.
fn watches(rule: &Rule, classes: &[String], tr: &Track) -> bool {
    tr.best_score >= rule.min_score && classes.iter().any(|c| c == tr.label.as_ref())
}

/// Whether an object of `classes` detected in the scene (this frame's detections or a
/// confirmed track) covers most of box `b` (camera pixels).
fn explained(b: &[f32; 4], scene: &Scene, classes: &[String], min_score: f32) -> bool {
    let area = ((b[2] - b[0]) * (b[3] - b[1])).max(1e-6);
    let covers = |o: &[f32; 4]| {
        let iw = (b[2].min(o[2]) - b[0].max(o[0])).max(0.0);
        let ih = (b[3].min(o[3]) - b[1].max(o[1])).max(0.0);
        iw * ih >= 0.5 * area
    };
    let wanted = |label: &str| classes.iter().any(|c| c == label);
    scene.objects.iter().any(|o| o.score >= min_score && wanted(&o.label) && covers(&o.bbox))
        || scene.tracks.iter().any(|tr| wanted(&tr.label) && covers(&tr.bbox))
}

/// Whether the move a→b crosses any segment of the line.
fn crosses(line: &Polyline, a: Point, b: Point) -> bool {
    line.points().windows(2).any(|w| crate::geometry::segments_intersect(a, b, w[0], w[1]))
}

impl RuleEngine {
    pub fn new(
        rules: Vec<Rule>,
        zones: BTreeMap<String, Polygon>,
        lines: BTreeMap<String, Polyline>,
        coordinates: Coordinates,
    ) -> Self {
        let state = rules.iter().map(|_| RuleState::default()).collect();
        Self {
            rules: rules.into_iter().map(Arc::new).collect(),
            zones: zones.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            lines: lines.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            coordinates,
            state,
            ids: Arc::new(IncidentIds::new(0)),
        }
    }

    /// Numbers incidents from `ids` (shared by the node's cameras) instead of from 1.
    pub fn with_ids(mut self, ids: Arc<IncidentIds>) -> Self {
        self.ids = ids;
        self
    }

    /// From a validated camera.
    pub fn for_camera(cam: &crate::config::Camera) -> Self {
        Self::new(cam.rules.clone(), cam.zones.clone(), cam.lines.clone(), cam.coordinates)
    }

    fn point(&self, p: [f32; 2], frame: (u32, u32)) -> Point {
        match self.coordinates {
            Coordinates::Normalized => {
                Point::new(p[0] as f64 / frame.0.max(1) as f64, p[1] as f64 / frame.1.max(1) as f64)
            }
            Coordinates::Pixel => Point::new(p[0] as f64, p[1] as f64),
        }
    }

    pub fn evaluate(&mut self, scene: &Scene) -> Vec<RuleEvent> {
        let mut events = Vec::new();
        for i in 0..self.rules.len() {
            let rule = Arc::clone(&self.rules[i]);
            match &rule.kind {
                RuleKind::ZoneDwell { zone, classes, min_duration, stationary_only } => {
                    self.track_rule(i, &rule, scene, zone, classes, *stationary_only, &mut events, |_, since, t| {
                        t.saturating_sub(since) >= *min_duration
                    });
                }
                RuleKind::ZoneEnter { zone, classes, schedule, .. } => {
                    if !schedule.is_active(scene.local.weekday, scene.local.minute) {
                        self.close_all(i, &rule, scene.t, &mut events);
                        continue;
                    }
                    self.track_rule(i, &rule, scene, zone, classes, false, &mut events, |_, _, _| true);
                }
                RuleKind::LineCross { line, classes, direction, .. } => {
                    self.line_rule(i, &rule, scene, line, classes, *direction, &mut events)
                }
                RuleKind::Crowd { zone, classes, min_count, min_duration } => {
                    self.crowd_rule(i, &rule, scene, zone, classes, *min_count, *min_duration, &mut events)
                }
                RuleKind::FaceInZone { zone, schedule } => {
                    if !schedule.is_active(scene.local.weekday, scene.local.minute) {
                        self.close_all(i, &rule, scene.t, &mut events);
                        continue;
                    }
                    self.face_rule(i, &rule, scene, zone, &mut events);
                }
                RuleKind::Absence { zone, classes, min_duration, schedule } => {
                    let active = schedule.is_active(scene.local.weekday, scene.local.minute);
                    self.absence_rule(i, &rule, scene, zone, classes, *min_duration, active, &mut events);
                }
                RuleKind::LeftObject(still) => self.still_rule(i, &rule, scene, still, Change::Left, &mut events),
                RuleKind::RemovedObject(still) => self.still_rule(i, &rule, scene, still, Change::Removed, &mut events),
            }
        }
        // Cooldowns that have run out are forgotten, so the maps stay as small as the
        // tracks alive (per-track state of ended tracks is dropped as they end).
        for st in &mut self.state {
            st.quiet_until.retain(|_, until| *until > scene.t);
        }
        events
    }

    /// Entries held in per-track and per-incident maps, over all rules (for bounds tests).
    pub fn tracked_entries(&self) -> usize {
        self.state.iter().map(|s| s.since.len() + s.side.len() + s.open.len() + s.quiet_until.len()).sum()
    }

    /// Ends every open incident of every rule (the camera changed or was removed).
    pub fn end_all(&mut self, t: Duration) -> Vec<RuleEvent> {
        let mut events = Vec::new();
        for i in 0..self.rules.len() {
            let rule = Arc::clone(&self.rules[i]);
            self.close_all(i, &rule, t, &mut events);
        }
        events
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        kind: EventKind,
        rule: &Rule,
        open: &Open,
        label: &str,
        track: Option<u64>,
        zone: &str,
        bbox: Option<[f32; 4]>,
        t: Duration,
    ) -> RuleEvent {
        RuleEvent {
            kind,
            incident: open.incident,
            rule: rule.id.clone(),
            category: rule.category.clone(),
            severity: rule.severity,
            dispatch: rule.dispatch,
            label: label.to_string(),
            score: open.best,
            track,
            zone: Some(zone.to_string()),
            count: (open.count > 0).then_some(open.count),
            bbox,
            started_at: open.started,
            ended_at: (kind == EventKind::End).then_some(t),
            started_wall: open.started_wall,
            last_seen: None,
        }
    }

    /// A new incident that started at stream time `started`, seen in `scene`.
    fn open_incident(&mut self, scene: &Scene, started: Duration, best: f32, count: u32) -> Open {
        let started_wall = scene.wall.checked_sub(scene.t.saturating_sub(started)).unwrap_or(scene.wall);
        Open { incident: self.ids.next(), started, started_wall, best, count }
    }

    /// Rules about single tracks in a zone (dwell, enter). `fires` decides, given how long
    /// the track has been inside, whether the incident is on.
    #[allow(clippy::too_many_arguments)]
    fn track_rule(
        &mut self,
        i: usize,
        rule: &Rule,
        scene: &Scene,
        zone: &str,
        classes: &[String],
        reset_when_moving: bool,
        events: &mut Vec<RuleEvent>,
        fires: impl Fn(&Track, Duration, Duration) -> bool,
    ) {
        let Some(poly) = self.zones.get(zone).cloned() else { return };
        let t = scene.t;
        let mut present = Vec::new();
        for tr in scene.tracks {
            if !watches(rule, classes, tr) {
                continue;
            }
            let p = self.point(tr.ground_point(), scene.frame);
            let st = &mut self.state[i];
            if !inside(&poly, p) {
                st.since.remove(&tr.id);
                continue;
            }
            present.push(tr.id);
            // Illegal parking counts time spent stationary, not time in the zone.
            let since = if reset_when_moving && !tr.stationary {
                st.since.remove(&tr.id);
                None
            } else {
                Some(*st.since.entry(tr.id).or_insert(t))
            };
            let on = since.is_some_and(|since| fires(tr, since, t));
            let since = since.unwrap_or(t);
            let quiet = st.quiet_until.get(&tr.id).is_some_and(|q| t < *q);
            if let Some(open) = st.open.get_mut(&tr.id) {
                if tr.score > open.best + 0.1 {
                    open.best = tr.score;
                    let open = Open { best: open.best, count: 0, ..*open };
                    let e = self.event(EventKind::Update, rule, &open, &tr.label, Some(tr.id), zone, Some(tr.bbox), t);
                    events.push(e);
                }
            } else if on && !quiet {
                let open = self.open_incident(scene, since, tr.best_score, 0);
                events.push(self.event(EventKind::New, rule, &open, &tr.label, Some(tr.id), zone, Some(tr.bbox), t));
                self.state[i].open.insert(tr.id, open);
            }
        }
        // Incidents whose track left the zone or ended.
        let gone: Vec<u64> = self.state[i].open.keys().filter(|id| !present.contains(id)).copied().collect();
        for id in gone {
            let open = self.state[i].open.remove(&id).unwrap();
            let label = scene
                .ended
                .iter()
                .chain(scene.tracks.iter().copied())
                .find(|t| t.id == id)
                .map_or("object".to_string(), |t| t.label.to_string());
            events.push(self.event(EventKind::End, rule, &open, &label, Some(id), zone, None, t));
            self.state[i].quiet_until.insert(id, t + rule.cooldown);
        }
        for tr in scene.ended {
            self.state[i].since.remove(&tr.id);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn line_rule(
        &mut self,
        i: usize,
        rule: &Rule,
        scene: &Scene,
        line: &str,
        classes: &[String],
        direction: Direction,
        events: &mut Vec<RuleEvent>,
    ) {
        let Some(pl) = self.lines.get(line).cloned() else { return };
        let t = scene.t;
        for tr in scene.tracks {
            if !watches(rule, classes, tr) {
                continue;
            }
            let p = self.point(tr.ground_point(), scene.frame);
            let now = side(&pl, p);
            // Where the track was before: as the rule last saw it, or, the first time the rule
            // sees it (it was just confirmed), its previous box.
            let earlier = tr.previous.map(|b| self.point(tr.ground_point_of(&b), scene.frame));
            let st = &mut self.state[i];
            let Some((before, prev)) = st.side.insert(tr.id, (now, p)).or_else(|| earlier.map(|e| (side(&pl, e), e)))
            else {
                continue;
            };
            // The move itself must cut the line (not just its extension).
            if before == now || now == 0.0 || before == 0.0 || !crosses(&pl, prev, p) {
                continue;
            }
            let wanted = match direction {
                Direction::Either => true,
                Direction::LeftToRight => before < 0.0 && now > 0.0,
                Direction::RightToLeft => before > 0.0 && now < 0.0,
            };
            if !wanted || st.quiet_until.get(&tr.id).is_some_and(|q| t < *q) {
                continue;
            }
            st.quiet_until.insert(tr.id, t + rule.cooldown);
            let open = self.open_incident(scene, t, tr.best_score, 0);
            let mut e = self.event(EventKind::New, rule, &open, &tr.label, Some(tr.id), line, Some(tr.bbox), t);
            e.ended_at = Some(t);
            events.push(e);
        }
        for tr in scene.ended {
            self.state[i].side.remove(&tr.id);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn crowd_rule(
        &mut self,
        i: usize,
        rule: &Rule,
        scene: &Scene,
        zone: &str,
        classes: &[String],
        min_count: u32,
        min_duration: Duration,
        events: &mut Vec<RuleEvent>,
    ) {
        let Some(poly) = self.zones.get(zone).cloned() else { return };
        let t = scene.t;
        let members: Vec<&&Track> = scene
            .tracks
            .iter()
            .filter(|tr| watches(rule, classes, tr))
            .filter(|tr| inside(&poly, self.point(tr.ground_point(), scene.frame)))
            .collect();
        let count = members.len() as u32;
        let best = members.iter().map(|m| m.best_score).fold(0.0, f32::max);
        let label = classes.join("+");
        let st = &mut self.state[i];
        if count >= min_count {
            st.below_since = None;
            let since = *st.above_since.get_or_insert(t);
            let quiet = st.quiet_until.get(&0).is_some_and(|q| t < *q);
            if let Some(open) = st.open.get_mut(&0) {
                // Material change: at least 2 more or fewer, and at least 20%.
                let diff = count.abs_diff(open.count);
                if diff >= 2 && diff * 5 >= open.count {
                    open.count = count;
                    open.best = open.best.max(best);
                    let snapshot = Open { count, ..*open };
                    let e = self.event(EventKind::Update, rule, &snapshot, &label, None, zone, None, t);
                    events.push(e);
                }
            } else if t.saturating_sub(since) >= min_duration && !quiet {
                let open = self.open_incident(scene, since, best, count);
                events.push(self.event(EventKind::New, rule, &open, &label, None, zone, None, t));
                self.state[i].open.insert(0, open);
            }
        } else {
            st.above_since = None;
            let below = *st.below_since.get_or_insert(t);
            if st.open.contains_key(&0) && t.saturating_sub(below) >= CROWD_END_AFTER {
                let open = st.open.remove(&0).unwrap();
                st.quiet_until.insert(0, t + rule.cooldown);
                events.push(self.event(EventKind::End, rule, &open, &label, None, zone, None, t));
            }
        }
    }

    fn face_rule(&mut self, i: usize, rule: &Rule, scene: &Scene, zone: &str, events: &mut Vec<RuleEvent>) {
        let Some(poly) = self.zones.get(zone).cloned() else { return };
        let t = scene.t;
        let seen: Vec<&Face> = scene
            .faces
            .iter()
            .filter(|f| f.score >= rule.min_score)
            .filter(|f| {
                inside(&poly, self.point([(f.bbox[0] + f.bbox[2]) / 2.0, (f.bbox[1] + f.bbox[3]) / 2.0], scene.frame))
            })
            .collect();
        let best = seen.iter().map(|f| f.score).fold(0.0, f32::max);
        let st = &mut self.state[i];
        if let Some(f) = seen.iter().max_by(|a, b| a.score.total_cmp(&b.score)) {
            st.last_face = Some(t);
            let quiet = st.quiet_until.get(&0).is_some_and(|q| t < *q);
            if !st.open.contains_key(&0) && !quiet {
                let bbox = f.bbox;
                let open = self.open_incident(scene, t, best, seen.len() as u32);
                events.push(self.event(EventKind::New, rule, &open, "face", None, zone, Some(bbox), t));
                self.state[i].open.insert(0, open);
            }
        } else if st.open.contains_key(&0) && st.last_face.is_none_or(|l| t.saturating_sub(l) >= FACE_END_AFTER) {
            let open = st.open.remove(&0).unwrap();
            st.quiet_until.insert(0, t + rule.cooldown);
            events.push(self.event(EventKind::End, rule, &open, "face", None, zone, None, t));
        }
    }

    /// Nobody of `classes` in the zone for `min_duration` of active time: one incident, which
    /// ends when somebody is seen there (not when the schedule closes: they are still not
    /// seen). The clock counts only while the schedule is active, and is checked once more
    /// on the first frame after a window closed, so `07:00-11:00` with `4h` fires at 11:00
    /// when nobody came out.
    #[allow(clippy::too_many_arguments)]
    fn absence_rule(
        &mut self,
        i: usize,
        rule: &Rule,
        scene: &Scene,
        zone: &str,
        classes: &[String],
        min_duration: Duration,
        active: bool,
        events: &mut Vec<RuleEvent>,
    ) {
        let Some(poly) = self.zones.get(zone).cloned() else { return };
        let t = scene.t;
        let seen = scene
            .tracks
            .iter()
            .filter(|tr| watches(rule, classes, tr))
            .find(|tr| inside(&poly, self.point(tr.ground_point(), scene.frame)));
        let label = classes.join("+");
        let st = &mut self.state[i];
        if let Some(tr) = seen {
            st.last_seen = Some(scene.wall);
            st.absent_since = None;
            if let Some(open) = st.open.remove(&0) {
                st.quiet_until.insert(0, t + rule.cooldown);
                let mut e = self.event(EventKind::End, rule, &open, &tr.label, Some(tr.id), zone, Some(tr.bbox), t);
                e.last_seen = self.state[i].last_seen;
                events.push(e);
            }
            return;
        }
        let Some(since) = st.absent_since else {
            if active {
                st.absent_since = Some(t);
            }
            return;
        };
        let quiet = st.quiet_until.get(&0).is_some_and(|q| t < *q);
        if !st.open.contains_key(&0) && !quiet && t.saturating_sub(since) >= min_duration {
            let last_seen = st.last_seen;
            let open = self.open_incident(scene, since, 1.0, 0);
            let mut e = self.event(EventKind::New, rule, &open, &label, None, zone, None, t);
            e.last_seen = last_seen;
            events.push(e);
            self.state[i].open.insert(0, open);
        }
        if !active {
            // The window closed: the next one starts its own count.
            self.state[i].absent_since = None;
        }
    }

    /// Something new stays (`Change::Left`) or something stays gone (`Removed`) in the zone:
    /// a still region of that change whose centre is in the zone, at least `min_area` of the
    /// frame, with a stable shape, there for `min_duration` since it appeared, and not
    /// explained by an object of `ignore_classes` detected over it (most of it under the
    /// object's box). One incident per region; it ends when the region goes (taken away, put
    /// back), or when it is absorbed into the background after `absorb_after` (then never again).
    fn still_rule(
        &mut self,
        i: usize,
        rule: &Rule,
        scene: &Scene,
        r: &StillRule,
        change: Change,
        events: &mut Vec<RuleEvent>,
    ) {
        let Some(poly) = self.zones.get(&r.zone).cloned() else { return };
        let t = scene.t;
        let label = match change {
            Change::Left => "left_object",
            Change::Removed => "removed_object",
        };
        let mut present = Vec::new();
        for s in scene.stills.iter().filter(|s| s.change == change && s.stable >= 2 && s.area >= r.min_area) {
            let b = s.bbox;
            if !inside(&poly, self.point([(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0], scene.frame)) {
                continue;
            }
            let st = &mut self.state[i];
            if t.saturating_sub(s.since) >= r.absorb_after {
                st.absorbed.insert(s.id);
            }
            if st.absorbed.contains(&s.id) {
                continue;
            }
            present.push(s.id);
            if st.open.contains_key(&s.id)
                || t.saturating_sub(s.since) < r.min_duration
                || st.quiet_until.get(&s.id).is_some_and(|q| t < *q)
                || explained(&b, scene, &r.ignore_classes, rule.min_score)
            {
                continue;
            }
            let open = self.open_incident(scene, s.since, 1.0, 0);
            events.push(self.event(EventKind::New, rule, &open, label, None, &r.zone, Some(b), t));
            self.state[i].open.insert(s.id, open);
        }
        let st = &mut self.state[i];
        let gone: Vec<u64> = st.open.keys().filter(|id| !present.contains(id)).copied().collect();
        for id in gone {
            let open = self.state[i].open.remove(&id).unwrap();
            events.push(self.event(EventKind::End, rule, &open, label, None, &r.zone, None, t));
            self.state[i].quiet_until.insert(id, t + rule.cooldown);
        }
        // Regions the model no longer has are forgotten.
        self.state[i].absorbed.retain(|id| scene.stills.iter().any(|s| s.id == *id));
    }

    /// Ends every open incident of a rule (its schedule closed).
    fn close_all(&mut self, i: usize, rule: &Rule, t: Duration, events: &mut Vec<RuleEvent>) {
        let zone = match &rule.kind {
            RuleKind::ZoneEnter { zone, .. }
            | RuleKind::FaceInZone { zone, .. }
            | RuleKind::ZoneDwell { zone, .. }
            | RuleKind::Crowd { zone, .. }
            | RuleKind::Absence { zone, .. } => zone.clone(),
            RuleKind::LeftObject(s) | RuleKind::RemovedObject(s) => s.zone.clone(),
            RuleKind::LineCross { line, .. } => line.clone(),
        };

        let open: Vec<(u64, Open)> = self.state[i].open.drain().collect();
        for (id, o) in open {
            let track = (id != 0).then_some(id);
            events.push(self.event(EventKind::End, rule, &o, "object", track, &zone, None, t));
        }
        self.state[i].since.clear();
    }

    /// Whether any of `tracks` (camera pixels, in a frame of `frame` size) is within reach of
    /// a line that a rule watches for its class: closer than its box's longer side plus
    /// where its velocity takes it in half a second. Such a track may cross before the next
    /// look at the usual cadence. A stationary track (a car parked by the line, a person
    /// sitting across it) is not: it is followed from look to look until it moves, and the
    /// look that sees it move ends its stationary state.
    pub fn near_line(&self, tracks: &[Track], frame: (u32, u32)) -> bool {
        self.rules.iter().any(|rule| {
            let RuleKind::LineCross { line, classes, .. } = &rule.kind else { return false };
            let Some(pl) = self.lines.get(line) else { return false };
            // Distances in pixels whatever the coordinates: scale the line's points.
            let (sx, sy) = match self.coordinates {
                Coordinates::Normalized => (frame.0 as f64, frame.1 as f64),
                Coordinates::Pixel => (1.0, 1.0),
            };
            let px = |p: &Point| Point::new(p.x * sx, p.y * sy);
            tracks.iter().filter(|tr| !tr.stationary && classes.iter().any(|c| c == tr.label.as_ref())).any(|tr| {
                let g = tr.ground_point();
                let p = Point::new(g[0] as f64, g[1] as f64);
                let b = tr.bbox;
                let reach = (b[2] - b[0]).max(b[3] - b[1]) as f64 + 0.5 * (tr.velocity[0].hypot(tr.velocity[1])) as f64;
                pl.points().windows(2).any(|w| on_segment_dist(p, px(&w[0]), px(&w[1])) <= reach)
            })
        })
    }

    /// Incidents currently open, for status.
    pub fn open_incidents(&self) -> usize {
        self.state.iter().map(|s| s.open.len()).sum()
    }
}

#[cfg(test)]
mod tests;
