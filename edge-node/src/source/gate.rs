//! Which frames reach the decoder and which decoded frames are handed on: the pure logic
//! behind the pipeline's pad probes, testable without GStreamer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::DecodeMode;

/// Whether a camera's rules want every frame right now (something moves from look to
/// look and detection has not found it fruitless, or a confirmed track moves in view), and
/// whether they want a burst (a track near a line: [`BURST_FPS`] instead of `detect_fps`):
/// set by detection, read by the camera's gates at each frame. Not a setting: two demands
/// always compare equal, so it never makes a camera restart.
#[derive(Clone, Default)]
pub struct Demand(Arc<Wants>);

#[derive(Default)]
struct Wants {
    every_frame: AtomicBool,
    burst: AtomicBool,
}

/// Detections per second while a track is near a line: a crossing is two positions of one
/// track on either side, and a cyclist is across a line in well under a second.
pub const BURST_FPS: f64 = 5.0;

/// How long motion keeps a camera decoding every frame while detection finds nothing moving
/// there; then it goes back to key frames (each one that shows motion is still looked at)
/// until a look finds something moving, or sees the scene quiet. Longer than the gaps in
/// which the detector loses a person on a busy street (about a second at 5 looks a second).
pub const FRUITLESS_FOR: std::time::Duration = std::time::Duration::from_secs(3);

impl Demand {
    pub fn set(&self, on: bool) {
        self.0.every_frame.store(on, Ordering::Relaxed);
        if !on {
            self.0.burst.store(false, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> bool {
        self.0.every_frame.load(Ordering::Relaxed)
    }

    pub fn set_burst(&self, on: bool) {
        self.0.burst.store(on, Ordering::Relaxed);
    }

    pub fn burst(&self) -> bool {
        self.0.burst.load(Ordering::Relaxed)
    }
}

impl PartialEq for Demand {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Demand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Demand({})", self.get())
    }
}

/// Decides per access unit whether it goes to the decoder.
///
/// `keyframes`: only key frames. `all`: everything. `auto`: measures the key-frame
/// interval and decodes key frames only while `detect_fps` ≤ the key-frame rate; until
/// the interval is known, everything is decoded. Switching between the two happens only
/// at a key frame, so the decoder never sees a delta frame whose reference it lacks.
///
/// `adaptive` with a [`Demand`] (the camera has a rule that needs more than key frames):
/// key frames only, except that while the demand is on, the delta frames after a key
/// frame are decoded too, from the first one after it (the decoder holds the key frame:
/// no wait for the next one), until the demand goes off; once one delta frame of a GOP
/// was not decoded, the rest of that GOP is not either. Without a demand, `adaptive` is
/// `keyframes`. And the rest of a GOP is not decoded once no look can fall due before the
/// next key frame (see [`Gates::unit`]): at 1 look a second and a key frame every 2 s, the
/// decoder stops at the look in the middle of the GOP, half the decoding.
#[derive(Debug, Clone)]
pub struct KeyframeGate {
    mode: DecodeMode,
    detect_fps: f64,
    last_key_ns: Option<u64>,
    /// Smoothed key-frame interval in seconds.
    interval_s: Option<f64>,
    /// The latest two key-frame intervals, seconds, the latest first (an extra key frame
    /// sooner than half a GOP restarts the GOP and is not counted).
    intervals_s: [Option<f64>; 2],
    /// The stream's GOP, seconds: the latest two intervals that agreed (within a tenth).
    gop_s: Option<f64>,
    passing_deltas: bool,
    demand: Option<Demand>,
    /// Every frame since the last key frame reached the decoder (a delta frame may follow).
    chain: bool,
}

impl KeyframeGate {
    pub fn new(mode: DecodeMode, detect_fps: f64) -> Self {
        let passing_deltas = matches!(mode, DecodeMode::All | DecodeMode::Auto);
        Self {
            mode,
            detect_fps,
            last_key_ns: None,
            interval_s: None,
            intervals_s: [None, None],
            gop_s: None,
            passing_deltas,
            demand: None,
            chain: false,
        }
    }

    /// `adaptive` follows `demand` (see above).
    pub fn with_demand(mut self, demand: Demand) -> Self {
        self.demand = Some(demand);
        self
    }

    /// No more delta frames until the next key frame (the key frame just admitted was not
    /// decoded after all, over the rate, or the GOP's last look was).
    pub fn skip_rest_of_gop(&mut self) {
        self.chain = false;
        if self.mode == DecodeMode::Adaptive {
            self.passing_deltas = false;
        }
    }

    /// When the next key frame is due: one GOP after the last, once two intervals in a row
    /// agreed on the GOP, while the latest is that GOP or shorter (an extra key frame: a
    /// scene cut, a looped clip's start, another client's request, after which the encoder
    /// starts a GOP of its usual length). After a longer one (a key frame lost, or the GOP
    /// changed), not until two agree again.
    pub fn next_key_ns(&self) -> Option<u64> {
        let (last, Some(gop), Some(latest)) = (self.last_key_ns?, self.gop_s, self.intervals_s[0]) else {
            return None;
        };
        (latest <= 1.1 * gop).then(|| last + (gop * 1e9) as u64)
    }

    /// Returns whether the unit should be decoded.
    pub fn admit(&mut self, pts_ns: Option<u64>, keyframe: bool) -> bool {
        if keyframe {
            if let (Some(now), Some(last)) = (pts_ns, self.last_key_ns)
                && now > last
            {
                let dt = (now - last) as f64 / 1e9;
                // A key frame sooner than half a GOP is an extra one (a scene cut, a looped
                // clip's start): the GOP restarts from it, at its usual length.
                if self.intervals_s[0].is_none_or(|latest| dt >= 0.5 * latest) {
                    self.intervals_s = [Some(dt), self.intervals_s[0]];
                    if let [Some(latest), Some(before)] = self.intervals_s
                        && (latest - before).abs() <= 0.1 * before
                    {
                        self.gop_s = Some(latest);
                    }
                }
                self.interval_s = Some(match self.interval_s {
                    Some(s) => 0.7 * s + 0.3 * dt,
                    None => dt,
                });
            }
            if pts_ns.is_some() {
                self.last_key_ns = pts_ns;
            }
            match self.mode {
                DecodeMode::Auto => {
                    self.passing_deltas = match self.keyframe_rate() {
                        Some(rate) => self.detect_fps > rate * 1.05,
                        None => true,
                    };
                }
                // In a burst the key frame is rate-limited after the decoder with the
                // delta frames, so it is never dropped from under them.
                DecodeMode::Adaptive => self.passing_deltas = self.demand.as_ref().is_some_and(Demand::get),
                _ => {}
            }
            self.chain = true;
            return true;
        }
        if self.mode == DecodeMode::Adaptive {
            let pass = self.chain && self.demand.as_ref().is_some_and(Demand::get);
            self.chain = pass;
            self.passing_deltas = pass;
            return pass;
        }
        self.passing_deltas
    }

    /// Whether delta frames are being decoded right now.
    pub fn decoding_all(&self) -> bool {
        self.passing_deltas
    }

    /// Key frames per second, once measured.
    pub fn keyframe_rate(&self) -> Option<f64> {
        self.interval_s.filter(|s| *s > 0.0).map(|s| 1.0 / s)
    }
}

/// What becomes of an access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Decode,
    /// A delta frame nothing needs (key-frame cadence, a quiet scene, or the GOP's last look
    /// was decoded).
    Delta,
    /// A key frame beyond `detect_fps` in key-frame cadence.
    OverRate,
}

/// One camera's cadence: which access units reach the decoder ([`Gates::unit`]) and which
/// decoded frames are handed on ([`Gates::decoded`]).
pub struct Gates {
    keyframes: KeyframeGate,
    rate: RateLimiter,
    /// While the demand asks for a burst (adaptive cameras with a track near a line).
    burst: RateLimiter,
    demand: Demand,
    /// The rest of the current GOP is not decoded: its next key frame is the next look.
    skipped_rest: bool,
    /// That key frame (its PTS), handed on whatever the schedule says.
    key_look: Option<u64>,
}

impl Gates {
    pub fn new(mode: DecodeMode, detect_fps: f64, demand: Demand) -> Self {
        Self {
            keyframes: KeyframeGate::new(mode, detect_fps).with_demand(demand.clone()),
            rate: RateLimiter::new(detect_fps),
            burst: RateLimiter::new(detect_fps.max(BURST_FPS)),
            demand,
            skipped_rest: false,
            key_look: None,
        }
    }

    /// Whether delta frames are being decoded right now.
    pub fn decoding_all(&self) -> bool {
        self.keyframes.decoding_all()
    }

    /// An access unit arrived: whether it goes to the decoder. On an `adaptive` camera
    /// decoding delta frames, the rest of a GOP is skipped once its last look was decoded
    /// (see `rest_unneeded`), and the next key frame is then handed on as the next look.
    pub fn unit(&mut self, pts_ns: Option<u64>, keyframe: bool) -> Unit {
        if !self.keyframes.admit(pts_ns, keyframe) {
            return Unit::Delta;
        }
        if keyframe {
            let after_skip = std::mem::take(&mut self.skipped_rest);
            if self.keyframes.decoding_all() {
                // Rate-limited after the decoder with the delta frames (never dropped from
                // under them); after a skipped GOP end it is the look that was put off.
                self.key_look = if after_skip { pts_ns } else { None };
            } else if after_skip {
                self.handed_on(pts_ns);
            } else if !self.rate.admit(pts_ns) {
                // Key frames only: each decodes alone, so surplus ones go before decoding.
                self.keyframes.skip_rest_of_gop();
                return Unit::OverRate;
            }
            return Unit::Decode;
        }
        if self.rest_unneeded(pts_ns) {
            self.keyframes.skip_rest_of_gop();
            self.skipped_rest = true;
            return Unit::Delta;
        }
        Unit::Decode
    }

    /// Whether the delta frame at `pts_ns` and the rest of its GOP need no decoding on an
    /// `adaptive` camera decoding delta frames: the next key frame is foreseen, no look can
    /// fall due before it (the rate's schedule and window), no burst wants every frame,
    /// and [`GOP_GRACE_NS`] passed since the last look (its burst verdict is in by then).
    fn rest_unneeded(&self, pts_ns: Option<u64>) -> bool {
        let (Some(t), Some(next_key), Some(earliest), Some(last)) =
            (pts_ns, self.keyframes.next_key_ns(), self.rate.earliest(), self.rate.last())
        else {
            return false;
        };
        self.keyframes.mode == DecodeMode::Adaptive
            && !self.demand.burst()
            && t >= last + GOP_GRACE_NS
            && earliest + self.rate.slack() >= next_key
    }

    /// A frame came out of the decoder: whether it is handed on. In key-frame cadence the
    /// rate was applied before the decoder; decoding every frame, here: a burst only raises
    /// the rate (on a camera detecting at [`BURST_FPS`] or more it changes nothing), and a
    /// frame handed on through either limiter counts in both.
    pub fn decoded(&mut self, pts_ns: Option<u64>) -> bool {
        // Delta frames still on their way to the decoder when the rest of their GOP was
        // skipped are rate-limited as before.
        if !self.keyframes.decoding_all() && !self.skipped_rest {
            return true;
        }
        if pts_ns.is_some() && self.key_look == pts_ns {
            self.key_look = None;
            self.handed_on(pts_ns);
            return true;
        }
        let burst = self.demand.burst() && self.burst.faster_than(&self.rate);
        let (by, other) = if burst { (&mut self.burst, &mut self.rate) } else { (&mut self.rate, &mut self.burst) };
        let pass = by.admit(pts_ns);
        if pass {
            other.note(pts_ns);
        }
        pass
    }

    /// A frame handed on outside the limiters' own say: both count it.
    fn handed_on(&mut self, pts_ns: Option<u64>) {
        self.rate.note(pts_ns);
        self.burst.note(pts_ns);
    }
}

/// How long after a look an `adaptive` camera keeps decoding the delta frames of its GOP
/// even when no other look falls due before the next key frame: the look's burst verdict
/// is set when the frame is handed on, on the streaming thread, a frame or two later.
pub const GOP_GRACE_NS: u64 = 80_000_000;

/// Hands on at most `fps` frames per second of stream time: never more than ⌈fps⌉ frames
/// in any one-second span (any 1/fps span below 1 fps), evenly spaced when frames are dense.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    interval_ns: u64,
    window_ns: u64,
    cap: usize,
    next_due: Option<u64>,
    recent: std::collections::VecDeque<u64>,
}

impl RateLimiter {
    pub fn new(fps: f64) -> Self {
        let interval_ns = (1e9 / fps) as u64;
        let window_ns = interval_ns.max(1_000_000_000);
        let cap = ((fps * window_ns as f64 / 1e9) - 1e-9).ceil().max(1.0) as usize;
        Self { interval_ns, window_ns, cap, next_due: None, recent: Default::default() }
    }

    /// The latest frame handed on (stream time, ns).
    pub fn last(&self) -> Option<u64> {
        self.recent.back().copied()
    }

    /// The earliest stream time at which a frame would be handed on (by the schedule and
    /// the window), once one was.
    pub fn earliest(&self) -> Option<u64> {
        let due = self.next_due?.saturating_sub(self.slack());
        let window =
            (self.recent.len() >= self.cap).then(|| self.recent[self.recent.len() - self.cap] + self.window_ns);
        Some(window.map_or(due, |w| w.max(due)))
    }

    /// The jitter the schedule tolerates: a frame this early is on time.
    pub fn slack(&self) -> u64 {
        self.interval_ns / 10
    }

    /// Whether this limiter lets more frames through than `other`.
    pub fn faster_than(&self, other: &RateLimiter) -> bool {
        self.interval_ns < other.interval_ns
    }

    pub fn admit(&mut self, pts_ns: Option<u64>) -> bool {
        let Some(t) = pts_ns else { return true };
        // The schedule tolerates a little jitter so a stream at exactly the target rate is
        // not halved; the window below keeps the hard limit.
        let slack = self.slack();
        if let Some(due) = self.next_due
            && t + slack < due
        {
            return false;
        }
        while self.recent.front().is_some_and(|&r| r + self.window_ns <= t) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.cap {
            return false;
        }
        self.recent.push_back(t);
        self.next_due = Some(match self.next_due {
            // Fell behind (a gap in the stream): restart the schedule from now.
            Some(due) if t <= due + self.interval_ns => due + self.interval_ns,
            _ => t + self.interval_ns,
        });
        true
    }

    /// A frame at `pts_ns` went out through another limiter of the same camera: it counts
    /// here too, so switching between two limiters never hands on more than the faster one
    /// allows.
    pub fn note(&mut self, pts_ns: Option<u64>) {
        let Some(t) = pts_ns else { return };
        while self.recent.front().is_some_and(|&r| r + self.window_ns <= t) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.cap {
            self.recent.pop_front();
        }
        self.recent.push_back(t);
        self.next_due = Some(self.next_due.map_or(t, |due| due.max(t)).max(t + self.interval_ns));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// 25 fps with a key frame every `gop` frames; returns (decoded, keyframes) over `n` frames.
    fn run(gate: &mut KeyframeGate, gop: u64, n: u64) -> Vec<bool> {
        (0..n).map(|i| gate.admit(Some(i * 40 * MS), i % gop == 0)).collect()
    }

    #[test]
    fn keyframes_mode_decodes_key_frames_only() {
        let mut g = KeyframeGate::new(DecodeMode::Keyframes, 1.0);
        let admitted = run(&mut g, 50, 500);
        assert_eq!(admitted.iter().filter(|a| **a).count(), 10);
    }

    #[test]
    fn all_mode_decodes_everything() {
        let mut g = KeyframeGate::new(DecodeMode::All, 1.0);
        assert!(run(&mut g, 50, 200).iter().all(|a| *a));
    }

    #[test]
    fn auto_switches_on_measured_keyframe_rate() {
        // 2 s GOP = 0.5 key frames/s. At 0.5 fps detection, key frames suffice.
        let mut g = KeyframeGate::new(DecodeMode::Auto, 0.5);
        let admitted = run(&mut g, 50, 500);
        // Until two key frames are seen everything is decoded; after, only key frames.
        assert!(admitted[..50].iter().all(|a| *a));
        assert_eq!(admitted[100..].iter().filter(|a| **a).count(), 8);
        assert_eq!(g.keyframe_rate().map(|r| (r * 100.0).round()), Some(50.0));
        // At 2 fps detection, key frames are too rare: decode all.
        let mut g = KeyframeGate::new(DecodeMode::Auto, 2.0);
        assert!(run(&mut g, 50, 500).iter().all(|a| *a));
        assert!(g.decoding_all());
    }

    #[test]
    fn adaptive_decodes_delta_frames_only_while_demanded_and_never_without_their_reference() {
        let demand = Demand::default();
        let mut g = KeyframeGate::new(DecodeMode::Adaptive, 1.0).with_demand(demand.clone());
        let at = |i: u64| Some(i * 40 * MS);
        // Quiet: key frames only.
        let quiet: Vec<bool> = (0..50).map(|i| g.admit(at(i), i % 25 == 0)).collect();
        assert_eq!(quiet.iter().filter(|a| **a).count(), 2);
        assert!(!g.decoding_all());
        // The key frame at 50 shows motion (decided while it is decoded): the delta frames
        // right after it are decoded.
        assert!(g.admit(at(50), true));
        demand.set(true);
        assert!((51..60).all(|i| g.admit(at(i), false)));
        assert!(g.decoding_all());
        // Quiet again mid-GOP: deltas stop, and stay stopped even if motion returns before
        // the next key frame (their references were not decoded).
        demand.set(false);
        assert!(!g.admit(at(60), false));
        demand.set(true);
        assert!((61..75).all(|i| !g.admit(at(i), false)));
        // The next key frame with the demand on: a burst from the start, key frame included.
        assert!(g.admit(at(75), true));
        assert!(g.decoding_all(), "rate-limited after the decoder, not before");
        assert!(g.admit(at(76), false));
        // A key frame dropped over the rate takes its GOP with it.
        assert!(g.admit(at(100), true));
        g.skip_rest_of_gop();
        assert!(!g.admit(at(101), false));
        // Without a demand, adaptive is keyframes.
        let mut plain = KeyframeGate::new(DecodeMode::Adaptive, 1.0);
        assert_eq!(run(&mut plain, 50, 500).iter().filter(|a| **a).count(), 10);
    }

    /// An adaptive camera decoding delta frames (25 fps, 1 look a second, motion all the
    /// time) as the pipeline drives its gates: units in, the decoder `lag` units behind
    /// (retina's decoder runs on its own thread). Returns (decoded, looks) per GOP.
    fn decode_gops(burst: bool, key_at: impl Fn(u64) -> bool, n: u64, lag: u64) -> Vec<(u64, u64)> {
        let demand = Demand::default();
        demand.set(true);
        demand.set_burst(burst);
        let mut g = Gates::new(DecodeMode::Adaptive, 1.0, demand);
        let mut gops: Vec<(u64, u64)> = Vec::new();
        // (arrival, GOP, PTS) of the units sent to the decoder.
        let mut decoding: std::collections::VecDeque<(u64, usize, u64)> = Default::default();
        let decode = |g: &mut Gates, gops: &mut Vec<(u64, u64)>, gop: usize, t: u64| {
            gops[gop].0 += 1;
            if g.decoded(Some(t)) {
                gops[gop].1 += 1;
            }
        };
        for i in 0..n {
            // What arrived `lag` units ago is out of the decoder now.
            while decoding.front().is_some_and(|d| d.0 + lag <= i) {
                let (_, gop, t) = decoding.pop_front().unwrap();
                decode(&mut g, &mut gops, gop, t);
            }
            let (t, key) = (i * 40 * MS, key_at(i));
            if key {
                gops.push((0, 0));
            }
            if g.unit(Some(t), key) == Unit::Decode {
                decoding.push_back((i, gops.len() - 1, t));
            }
        }
        for (_, gop, t) in decoding {
            decode(&mut g, &mut gops, gop, t);
        }
        gops
    }

    #[test]
    fn adaptive_stops_decoding_a_gop_after_its_last_look() {
        let every_2s = |i: u64| i.is_multiple_of(50);
        for lag in [0, 3] {
            let gops = decode_gops(false, every_2s, 500, lag);
            // Until three key frames showed a regular interval, every frame is decoded.
            assert_eq!(gops[..2], [(50, 2), (50, 2)], "lag {lag}");
            // Then the decoder stops after the frame that follows the look in the middle (the
            // grace for its burst verdict): 27 of 50 frames (and the units already on their
            // way to a decoder that lags), and the same two looks, the key frame one of them.
            let most = 27 + lag;
            assert!(
                gops[2..gops.len() - 1].iter().all(|g| g.0 >= 27 && g.0 <= most && g.1 == 2),
                "lag {lag}: {gops:?}"
            );
        }
        // In a burst every frame is decoded, and looked at 5 times a second.
        let gops = decode_gops(true, every_2s, 500, 0);
        assert!(gops.iter().all(|g| *g == (50, 10)), "{gops:?}");
        // Key frames at irregular intervals: the next one cannot be foreseen, all decoded.
        let irregular = |i: u64| [0, 30, 80, 150, 190, 260, 300, 380, 420, 490].contains(&i);
        let gops = decode_gops(false, irregular, 500, 0);
        assert_eq!(gops.iter().map(|g| g.0).sum::<u64>(), 500, "{gops:?}");
        // An extra key frame 40 ms after one (a scene cut, a looped clip's start) keeps the
        // rhythm: the looks at 8, 9 and 10 s, the GOPs cut as before.
        let extra = |i: u64| i.is_multiple_of(50) || i == 201;
        let gops = decode_gops(false, extra, 500, 0);
        assert_eq!((gops[4], gops[5]), ((1, 1), (26, 1)), "{gops:?}");
        assert!(gops[6..].iter().all(|g| *g == (27, 2)), "{gops:?}");
        // A looped clip 7.6 s long with a key frame every 2 s: at each loop's start a key
        // frame 1.6 s after the one before, and a GOP of the usual length from it. The GOPs
        // around it are cut as the others (they were decoded whole until two intervals agreed
        // again).
        let looped = |i: u64| (i % 190).is_multiple_of(50);
        let gops = decode_gops(false, looped, 760, 0);
        assert!(gops[2..].iter().all(|g| *g == (27, 2)), "{gops:?}");
        // A 1 s GOP at 1 look a second: key frames are the looks, no delta frame is needed
        // once the interval is known.
        let gops = decode_gops(false, |i| i.is_multiple_of(25), 500, 0);
        assert!(gops[2..].iter().all(|g| g.0 <= 3 && g.1 == 1), "{gops:?}");
    }

    #[test]
    fn rate_limiter_caps_rate() {
        let mut r = RateLimiter::new(2.0);
        let admitted: Vec<u64> = (0..250).map(|i| i * 40 * MS).filter(|t| r.admit(Some(*t))).collect();
        assert_eq!(admitted.len(), 20, "10 s of 25 fps at 2 fps");
        for (i, t) in admitted.iter().enumerate() {
            assert!(admitted[i..].iter().take_while(|u| **u < t + 1000 * MS).count() <= 2);
        }
        // A stream slower than the limit passes whole.
        let mut r = RateLimiter::new(1.0);
        assert_eq!((0..10).filter(|i| r.admit(Some(i * 1000 * MS))).count(), 10);
        // Below 1 fps: one frame per 1/fps.
        let mut r = RateLimiter::new(0.5);
        assert_eq!((0..100).filter(|i| r.admit(Some(i * 200 * MS))).count(), 10);
    }

    #[test]
    fn switching_between_two_limiters_never_exceeds_the_faster() {
        // A burst toggled on and off every few frames (a track near a line comes
        // and goes): 1 fps normally, 5 fps in a burst, 25 fps coming in for 10 s.
        let (mut rate, mut burst) = (RateLimiter::new(1.0), RateLimiter::new(5.0));
        let mut out = Vec::new();
        for i in 0..250u64 {
            let t = Some(i * 40 * MS);
            let on = (i / 3) % 2 == 0;
            let (by, other) = if on { (&mut burst, &mut rate) } else { (&mut rate, &mut burst) };
            if by.admit(t) {
                other.note(t);
                out.push(i * 40 * MS);
            }
        }
        assert!(out.len() <= 51, "{} frames in 10 s", out.len());
        for (i, t) in out.iter().enumerate() {
            assert!(out[i..].iter().take_while(|u| **u < t + 1000 * MS).count() <= 5, "{out:?}");
        }
        assert!(out.len() >= 25, "the bursts still raise the rate: {}", out.len());
        // Same rate both ways: as one limiter.
        let (mut a, mut b) = (RateLimiter::new(5.0), RateLimiter::new(5.0));
        assert!(!a.faster_than(&b) && !b.faster_than(&a));
        let n = (0..250u64)
            .filter(|i| {
                let t = Some(i * 40 * MS);
                let (by, other) = if i % 2 == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
                let pass = by.admit(t);
                if pass {
                    other.note(t);
                }
                pass
            })
            .count();
        assert!(n <= 51, "{n}");
    }
}
