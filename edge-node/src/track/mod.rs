//! track: stable identities for detected objects, per camera.
//!
//! Input: each frame's detections (camera pixels) and the frame's time. Output: the live
//! tracks (id, class, box, velocity, confirmed, stationary, the face of a person) and the
//! ids that ended. Detections arrive at 0.5–5 per second, so objects move far between
//! frames: matching predicts each track forward with its velocity, then gates by the
//! distance of the centres scaled by the box's size and the time elapsed (how far such an
//! object can have gone; farther for a track whose velocity is not known yet), preferring
//! overlap. High-score detections match first, then low-score ones keep existing tracks
//! alive (ByteTrack's idea). A track is confirmed after `min_hits` matches, or by one
//! confident detection when frames come a second or more apart (a cyclist is across the
//! picture before a second look); it ends after `max_age` unmatched. Pure and synchronous:
//! the caller owns the clock.

use std::sync::Arc;
use std::time::Duration;

use crate::inference::nms::{area, intersection, iou};
use crate::types::{Detections, Face};

#[derive(Debug, Clone)]
pub struct TrackerOptions {
    /// Matches needed before a track is confirmed (births of one-frame noise are dropped).
    pub min_hits: u32,
    /// When frames come at least `single_frame_gap` apart, a detection this confident
    /// confirms its track on its own.
    pub confirm_score: f32,
    pub single_frame_gap: Duration,
    /// Unmatched for this long: the track ends.
    pub max_age: Duration,
    /// Detections at or above this score match first; below it (down to `low_score`) they
    /// only extend existing tracks.
    pub high_score: f32,
    pub low_score: f32,
    /// How far a track whose velocity is not known yet may have moved, in box sizes (its
    /// longer side) per second of the time since it was last seen.
    pub max_speed: f32,
    /// The same for a track with a velocity: how far it may stray from where it was
    /// predicted to be.
    pub speed_error: f32,
    /// A track whose centre stays within this fraction of its box height for
    /// `stationary_after` is stationary.
    pub stationary_radius: f32,
    pub stationary_after: Duration,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        Self {
            min_hits: 2,
            confirm_score: 0.6,
            single_frame_gap: Duration::from_millis(800),
            max_age: Duration::from_secs(3),
            high_score: 0.5,
            low_score: 0.1,
            max_speed: 3.0,
            speed_error: 1.0,
            stationary_radius: 0.2,
            stationary_after: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub id: u64,
    pub class_id: usize,
    pub label: Arc<str>,
    /// Latest box, `[x1, y1, x2, y2]` in camera pixels.
    pub bbox: [f32; 4],
    /// The box of the match before the latest (a line crossing is two positions of one
    /// track, whenever the rules start looking at it).
    pub previous: Option<[f32; 4]>,
    pub score: f32,
    pub best_score: f32,
    /// Centre velocity, pixels per second.
    pub velocity: [f32; 2],
    pub first_seen: Duration,
    pub last_seen: Duration,
    pub hits: u32,
    pub confirmed: bool,
    pub stationary: bool,
    /// Where the track has stayed since `anchor_since` (for the stationary flag).
    anchor: [f32; 2],
    anchor_since: Duration,
    /// The face seen on this person in the latest frame, if any.
    pub face: Option<Face>,
}

impl Track {
    pub fn centre(&self) -> [f32; 2] {
        centre(&self.bbox)
    }

    /// The point that decides zone membership: bottom-centre for people and vehicles
    /// (where they stand), centre for anything else.
    pub fn ground_point(&self) -> [f32; 2] {
        self.ground_point_of(&self.bbox)
    }

    /// [`Track::ground_point`] of another box of this track (its previous one).
    pub fn ground_point_of(&self, b: &[f32; 4]) -> [f32; 2] {
        if matches!(self.label.as_ref(), "person" | "bicycle" | "car" | "motorcycle" | "bus" | "truck" | "train") {
            [(b[0] + b[2]) / 2.0, b[3]]
        } else {
            centre(b)
        }
    }

    /// A track as the tracker would report it, for rule tests and tools.
    pub fn at(id: u64, label: &str, bbox: [f32; 4], score: f32, stationary: bool, t: Duration) -> Self {
        let c = centre(&bbox);
        Self {
            id,
            class_id: 0,
            label: Arc::from(label),
            bbox,
            previous: None,
            score,
            best_score: score,
            velocity: [0.0, 0.0],
            first_seen: t,
            last_seen: t,
            hits: 2,
            confirmed: true,
            stationary,
            anchor: c,
            anchor_since: t,
            face: None,
        }
    }

    fn predicted(&self, t: Duration) -> [f32; 4] {
        let dt = t.saturating_sub(self.last_seen).as_secs_f32();
        let (dx, dy) = (self.velocity[0] * dt, self.velocity[1] * dt);
        [self.bbox[0] + dx, self.bbox[1] + dy, self.bbox[2] + dx, self.bbox[3] + dy]
    }
}

fn centre(b: &[f32; 4]) -> [f32; 2] {
    [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0]
}

/// The share of a box inside a larger box of its class above which it is taken for a part of
/// that object.
const NESTED: f32 = 0.7;

/// The longer side of a box.
fn size(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]).max(b[3] - b[1]).max(1.0)
}

/// How well a detection fits a track predicted to `pred` after `dt` seconds unseen: 0 when
/// it cannot be the same object (its centre beyond the gate, or a size off by more than
/// half or double), else in (0, 0.5) by closeness of centres within the gate, and
/// 0.5–1 when the boxes overlap. The gate's radius is half a box plus `speed` box sizes per
/// second elapsed.
fn affinity(pred: &[f32; 4], det: &[f32; 4], dt: f32, speed: f32) -> f32 {
    let ratio = size(det) / size(pred);
    if !(0.5..=2.0).contains(&ratio) {
        return 0.0;
    }
    let overlap = iou(pred, det);
    if overlap > 0.0 {
        return 0.5 + 0.5 * overlap;
    }
    let (a, b) = (centre(pred), centre(det));
    let d = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
    let radius = size(pred) * (0.5 + speed * dt);
    (0.5 * (1.0 - d / radius)).max(0.0)
}

pub struct Tracker {
    opts: TrackerOptions,
    next_id: u64,
    tracks: Vec<Track>,
    /// Times of the latest [`RECENT_LOOKS`] updates, the oldest first (the gap since the
    /// latest decides whether one look confirms).
    looks: std::collections::VecDeque<Duration>,
}

/// How many looks in a row a track may go unmatched and still count as in view
/// ([`Tracker::recent`]): one miss is the detector's noise, three are an object that left or
/// is hidden (it lives on until `max_age`, in case it comes back).
pub const RECENT_LOOKS: usize = 3;

/// What one update changed.
#[derive(Debug, Default)]
pub struct Update {
    /// Tracks that ended in this update (confirmed ones only).
    pub ended: Vec<Track>,
}

impl Tracker {
    pub fn new(opts: TrackerOptions) -> Self {
        Self { opts, next_id: 1, tracks: Vec::new(), looks: Default::default() }
    }

    /// Live tracks, confirmed or not.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Confirmed live tracks.
    pub fn confirmed(&self) -> impl Iterator<Item = &Track> {
        self.tracks.iter().filter(|t| t.confirmed)
    }

    /// Whether any confirmed track is alive (keeps the motion gate open).
    pub fn has_live(&self) -> bool {
        self.tracks.iter().any(|t| t.confirmed)
    }

    /// Live tracks, confirmed or not, matched at one of the latest [`RECENT_LOOKS`] updates:
    /// the ones still in view. What keeps a camera decoding every frame: looking at every
    /// frame for the rest of a vanished track's `max_age` finds nothing.
    pub fn recent(&self) -> impl Iterator<Item = &Track> {
        let since = self.looks.front().copied().unwrap_or_default();
        self.tracks.iter().filter(move |t| t.last_seen >= since)
    }

    /// Whether detection `di` confirms its track on its own, at this frame gap: a confident
    /// look when looks are far apart, unless it lies inside a larger confident box of its class
    /// in the same frame (the detector's second box on part of one object: the rear of a car,
    /// a person's upper body, which at 5 looks a second is not seen twice and never confirms).
    fn confirms_alone(&self, dets: &Detections, di: usize, gap: Option<Duration>) -> bool {
        let d = &dets.objects[di];
        d.score >= self.opts.confirm_score
            && gap.is_some_and(|g| g >= self.opts.single_frame_gap)
            && !dets.objects.iter().enumerate().any(|(oi, o)| {
                oi != di
                    && o.class_id == d.class_id
                    && o.score >= self.opts.high_score
                    && area(&o.bbox) > area(&d.bbox)
                    && intersection(&o.bbox, &d.bbox) >= NESTED * area(&d.bbox)
            })
    }

    pub fn update(&mut self, dets: &Detections, t: Duration) -> Update {
        let gap = self.looks.back().map(|last| t.saturating_sub(*last));
        if self.looks.len() == RECENT_LOOKS {
            self.looks.pop_front();
        }
        self.looks.push_back(t);
        let mut matched_track = vec![false; self.tracks.len()];
        let mut used = vec![false; dets.objects.len()];
        // Two passes: confident detections first, then weak ones for leftover tracks.
        for pass in 0..2 {
            let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
            for (ti, tr) in self.tracks.iter().enumerate() {
                if matched_track[ti] {
                    continue;
                }
                let pred = tr.predicted(t);
                let dt = t.saturating_sub(tr.last_seen).as_secs_f32();
                let speed = if tr.hits == 1 { self.opts.max_speed } else { self.opts.speed_error };
                for (di, d) in dets.objects.iter().enumerate() {
                    let strong = d.score >= self.opts.high_score;
                    if used[di] || d.class_id != tr.class_id || (pass == 0) != strong || d.score < self.opts.low_score {
                        continue;
                    }
                    let s = affinity(&pred, &d.bbox, dt, speed);
                    if s > 0.0 {
                        pairs.push((s, ti, di));
                    }
                }
            }
            pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (_, ti, di) in pairs {
                if matched_track[ti] || used[di] {
                    continue;
                }
                matched_track[ti] = true;
                used[di] = true;
                let d = &dets.objects[di];
                let alone = self.confirms_alone(dets, di, gap);
                let tr = &mut self.tracks[ti];
                let dt = t.saturating_sub(tr.last_seen).as_secs_f32();
                if dt > 0.0 {
                    let (c0, c1) = (tr.centre(), centre(&d.bbox));
                    let v = [(c1[0] - c0[0]) / dt, (c1[1] - c0[1]) / dt];
                    tr.velocity = if tr.hits == 1 {
                        v
                    } else {
                        [0.6 * v[0] + 0.4 * tr.velocity[0], 0.6 * v[1] + 0.4 * tr.velocity[1]]
                    };
                }
                tr.previous = Some(tr.bbox);
                tr.bbox = d.bbox;
                tr.score = d.score;
                tr.best_score = tr.best_score.max(d.score);
                tr.last_seen = t;
                tr.hits += 1;
                tr.confirmed |= tr.hits >= self.opts.min_hits || alone;
                let c = tr.centre();
                let radius = self.opts.stationary_radius * (tr.bbox[3] - tr.bbox[1]).max(1.0);
                if ((c[0] - tr.anchor[0]).powi(2) + (c[1] - tr.anchor[1]).powi(2)).sqrt() > radius {
                    tr.anchor = c;
                    tr.anchor_since = t;
                }
                tr.stationary = t.saturating_sub(tr.anchor_since) >= self.opts.stationary_after;
            }
        }

        // End tracks: unconfirmed ones at their first miss, confirmed ones after max_age.
        let mut update = Update::default();
        let max_age = self.opts.max_age;
        let mut kept = Vec::with_capacity(self.tracks.len());
        for (ti, tr) in self.tracks.drain(..).enumerate() {
            let stale = t.saturating_sub(tr.last_seen) > max_age;
            if (!matched_track[ti] && !tr.confirmed) || stale {
                if tr.confirmed {
                    update.ended.push(tr);
                }
            } else {
                kept.push(tr);
            }
        }
        self.tracks = kept;

        // New tracks from confident unmatched detections.
        for (di, d) in dets.objects.iter().enumerate() {
            if used[di] || d.score < self.opts.high_score {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let c = centre(&d.bbox);
            let confirmed = self.opts.min_hits <= 1 || self.confirms_alone(dets, di, gap);
            self.tracks.push(Track {
                id,
                class_id: d.class_id,
                label: d.label.clone(),
                bbox: d.bbox,
                previous: None,
                score: d.score,
                best_score: d.score,
                velocity: [0.0, 0.0],
                first_seen: t,
                last_seen: t,
                hits: 1,
                confirmed,
                stationary: false,
                anchor: c,
                anchor_since: t,
                face: None,
            });
        }

        // Faces belong to the person whose upper half holds the face's centre.
        for tr in &mut self.tracks {
            tr.face = None;
        }
        for f in &dets.faces {
            let c = centre(&f.bbox);
            let owner =
                self.tracks.iter_mut().filter(|tr| tr.last_seen == t && tr.label.as_ref() == "person").find(|tr| {
                    let mid = (tr.bbox[1] + tr.bbox[3]) / 2.0;
                    c[0] >= tr.bbox[0] && c[0] <= tr.bbox[2] && c[1] >= tr.bbox[1] && c[1] <= mid
                });
            if let Some(tr) = owner {
                tr.face = Some(f.clone());
            }
        }
        update
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Object;

    fn obj(label: &str, class_id: usize, bbox: [f32; 4], score: f32) -> Object {
        Object { bbox, score, class_id, label: Arc::from(label) }
    }

    fn dets(objects: Vec<Object>) -> Detections {
        Detections { faces: vec![], objects }
    }

    fn s(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn keeps_ids_for_a_moving_car_at_two_detections_per_second() {
        let mut tr = Tracker::new(TrackerOptions::default());
        // A 60-pixel-wide car moving 50 px per half second: no overlap between some frames
        // once it speeds up, still the same track thanks to the velocity prediction.
        let mut x = 100.0;
        let mut step = 20.0;
        for i in 0..12u64 {
            tr.update(&dets(vec![obj("car", 2, [x, 200.0, x + 60.0, 240.0], 0.8)]), s(i * 500));
            x += step;
            step += 10.0;
        }
        let live: Vec<_> = tr.confirmed().collect();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].id, 1);
        assert!(live[0].velocity[0] > 100.0, "{:?}", live[0].velocity);
    }

    #[test]
    fn a_track_unseen_for_three_looks_is_out_of_view_but_lives_on() {
        let mut tr = Tracker::new(TrackerOptions::default());
        let car = || dets(vec![obj("car", 2, [10.0, 10.0, 70.0, 50.0], 0.9)]);
        tr.update(&car(), s(0));
        tr.update(&car(), s(250));
        assert_eq!(tr.recent().count(), 1);
        // Missed twice: still in view (a detector misses a look now and then).
        tr.update(&dets(vec![]), s(500));
        tr.update(&dets(vec![]), s(750));
        assert_eq!(tr.recent().count(), 1);
        // Missed three looks in a row: out of view, alive until max_age, and back in view
        // when a look finds it again.
        tr.update(&dets(vec![]), s(1000));
        assert_eq!((tr.recent().count(), tr.tracks().len()), (0, 1));
        tr.update(&car(), s(3000));
        assert_eq!(tr.recent().map(|t| t.id).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn birth_needs_two_hits_and_death_waits_for_max_age() {
        let mut tr = Tracker::new(TrackerOptions::default());
        let car = || dets(vec![obj("car", 2, [10.0, 10.0, 70.0, 50.0], 0.9)]);
        tr.update(&car(), s(0));
        assert!(!tr.has_live(), "one frame is not a track yet");
        tr.update(&dets(vec![]), s(500));
        assert!(tr.tracks().is_empty(), "a one-frame blip is dropped");
        tr.update(&car(), s(1000));
        tr.update(&car(), s(1500));
        assert!(tr.has_live());
        // Missed for less than max_age: still alive; beyond: ended and reported.
        assert!(tr.update(&dets(vec![]), s(4000)).ended.is_empty());
        let ended = tr.update(&dets(vec![]), s(4600)).ended;
        assert_eq!(ended.len(), 1);
        assert!(!tr.has_live());
    }

    #[test]
    fn low_score_detections_extend_but_never_start_tracks() {
        let mut tr = Tracker::new(TrackerOptions::default());
        let p = |score| dets(vec![obj("person", 0, [10.0, 10.0, 40.0, 100.0], score)]);
        tr.update(&p(0.3), s(0));
        assert!(tr.tracks().is_empty());
        tr.update(&p(0.9), s(500));
        tr.update(&p(0.9), s(1000));
        tr.update(&p(0.2), s(1500));
        let t = tr.confirmed().next().unwrap();
        assert_eq!((t.id, t.last_seen), (1, s(1500)));
    }

    #[test]
    fn classes_never_swap_and_parked_cars_become_stationary() {
        let mut tr = Tracker::new(TrackerOptions::default());
        for i in 0..14u64 {
            let jitter = (i % 2) as f32 * 2.0;
            tr.update(
                &dets(vec![
                    obj("car", 2, [100.0 + jitter, 100.0, 200.0, 160.0], 0.9),
                    obj("person", 0, [100.0, 90.0, 130.0, 170.0], 0.9),
                ]),
                s(i * 500),
            );
        }
        let mut live: Vec<_> = tr.confirmed().collect();
        live.sort_by_key(|t| t.id);
        assert_eq!(live.len(), 2);
        assert_eq!(live[0].label.as_ref(), "car");
        assert!(live[0].stationary, "parked for 6.5 s");
        // The person box contains the car's centre but is another class: separate tracks.
        assert_eq!(live[1].label.as_ref(), "person");
    }

    /// The busy street at the cheap cadence: a cyclist (80 px box) riding 150 px a second,
    /// seen once a second, never overlaps its last box. It keeps one track, confirmed by its
    /// first confident look, and its previous box is where it was a second before.
    #[test]
    fn a_cyclist_seen_once_a_second_keeps_one_track_confirmed_at_first_sight() {
        let mut tr = Tracker::new(TrackerOptions::default());
        tr.update(&dets(vec![]), s(0));
        for i in 1..5u64 {
            let x = 150.0 * i as f32;
            tr.update(&dets(vec![obj("bicycle", 1, [x, 200.0, x + 80.0, 280.0], 0.75)]), s(i * 1000));
            let live: Vec<_> = tr.confirmed().collect();
            assert_eq!(live.len(), 1, "frame {i}: {:?}", tr.tracks());
            assert_eq!(live[0].id, 1);
            if i > 1 {
                let before = 150.0 * (i - 1) as f32;
                assert_eq!(live[0].previous, Some([before, 200.0, before + 80.0, 280.0]));
            }
        }
        // A weak look (below confirm_score) needs a second one, as at any cadence.
        let mut tr = Tracker::new(TrackerOptions::default());
        tr.update(&dets(vec![]), s(0));
        tr.update(&dets(vec![obj("person", 0, [10.0, 10.0, 40.0, 100.0], 0.55)]), s(1000));
        assert!(!tr.has_live());
    }

    /// The detector's second box on part of an object (the rear of a car inside the whole
    /// car) does not confirm on one look: at 5 looks a second it is not seen twice and never
    /// becomes a track, so at 1 a second it must not alert either. The whole object does.
    #[test]
    fn a_box_inside_a_larger_one_of_its_class_needs_a_second_look() {
        let mut tr = Tracker::new(TrackerOptions::default());
        tr.update(&dets(vec![]), s(0));
        let car = obj("car", 2, [100.0, 100.0, 300.0, 200.0], 0.8);
        let rear = obj("car", 2, [230.0, 120.0, 295.0, 190.0], 0.7);
        tr.update(&dets(vec![car.clone(), rear.clone()]), s(1000));
        let live: Vec<_> = tr.confirmed().map(|t| t.bbox).collect();
        assert_eq!(live, [car.bbox]);
        assert_eq!(tr.tracks().len(), 2, "the part is a tentative track");
        // The same box on its own (nothing larger around it) confirms as before.
        let mut tr = Tracker::new(TrackerOptions::default());
        tr.update(&dets(vec![]), s(0));
        tr.update(&dets(vec![rear.clone()]), s(1000));
        assert_eq!(tr.confirmed().count(), 1);
        // Another class around it (a person on a bicycle) is no reason to wait.
        let mut tr = Tracker::new(TrackerOptions::default());
        tr.update(&dets(vec![]), s(0));
        let bike = obj("bicycle", 1, [100.0, 100.0, 300.0, 200.0], 0.8);
        let rider = obj("person", 0, [150.0, 90.0, 250.0, 180.0], 0.8);
        tr.update(&dets(vec![bike, rider]), s(1000));
        assert_eq!(tr.confirmed().count(), 2);
    }

    /// At 5 frames a second, one look is not enough (a blip of noise would alert), and a
    /// box too far for the time elapsed, or of another size, is another object.
    #[test]
    fn at_five_frames_a_second_tracks_need_two_looks_and_stay_within_reach() {
        let mut tr = Tracker::new(TrackerOptions::default());
        tr.update(&dets(vec![]), s(0));
        tr.update(&dets(vec![obj("person", 0, [100.0, 100.0, 130.0, 180.0], 0.9)]), s(200));
        assert!(!tr.has_live(), "one look at 5 fps");
        // 300 px in 0.2 s for an 80 px person (19 box sizes a second): not the same one.
        tr.update(&dets(vec![obj("person", 0, [400.0, 100.0, 430.0, 180.0], 0.9)]), s(400));
        assert!(!tr.has_live());
        assert_eq!(tr.tracks().len(), 1);
        assert_eq!(tr.tracks()[0].id, 2);
        // Next to it, but a fifth of its size: not the same one either.
        tr.update(&dets(vec![obj("person", 0, [410.0, 100.0, 420.0, 116.0], 0.9)]), s(600));
        assert_eq!(tr.tracks()[0].id, 3);
        // Two looks close in time and place confirm.
        tr.update(&dets(vec![obj("person", 0, [412.0, 100.0, 422.0, 116.0], 0.9)]), s(800));
        assert_eq!(tr.confirmed().map(|t| t.id).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn faces_attach_to_their_person() {
        let mut tr = Tracker::new(TrackerOptions { min_hits: 1, ..Default::default() });
        let face = Face { bbox: [110.0, 95.0, 125.0, 112.0], score: 0.9, landmarks: [[0.0; 2]; 5] };
        let d =
            Detections { faces: vec![face.clone()], objects: vec![obj("person", 0, [100.0, 90.0, 140.0, 200.0], 0.9)] };
        tr.update(&d, s(0));
        assert_eq!(tr.tracks()[0].face, Some(face));
    }
}
