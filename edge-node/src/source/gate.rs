//! Which frames reach the decoder and which decoded frames are handed on: the pure logic
//! behind the pipeline's pad probes, testable without GStreamer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::DecodeMode;

/// Whether a camera's rules want every frame right now (something moves, or a track is
/// live), and whether they want a burst (a track near a line: [`BURST_FPS`] instead of
/// `detect_fps`): set by detection, read by the camera's gates at each frame. Not a
/// setting: two demands always compare equal, so it never makes a camera restart.
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
/// `keyframes`.
#[derive(Debug, Clone)]
pub struct KeyframeGate {
    mode: DecodeMode,
    detect_fps: f64,
    last_key_ns: Option<u64>,
    /// Smoothed key-frame interval in seconds.
    interval_s: Option<f64>,
    passing_deltas: bool,
    demand: Option<Demand>,
    /// Every frame since the last key frame reached the decoder (a delta frame may follow).
    chain: bool,
}

impl KeyframeGate {
    pub fn new(mode: DecodeMode, detect_fps: f64) -> Self {
        let passing_deltas = matches!(mode, DecodeMode::All | DecodeMode::Auto);
        Self { mode, detect_fps, last_key_ns: None, interval_s: None, passing_deltas, demand: None, chain: false }
    }

    /// `adaptive` follows `demand` (see above).
    pub fn with_demand(mut self, demand: Demand) -> Self {
        self.demand = Some(demand);
        self
    }

    /// The key frame just admitted was not decoded after all (over the rate): no delta
    /// frame of its GOP can be.
    pub fn key_frame_dropped(&mut self) {
        self.chain = false;
        if self.mode == DecodeMode::Adaptive {
            self.passing_deltas = false;
        }
    }

    /// Returns whether the unit should be decoded.
    pub fn admit(&mut self, pts_ns: Option<u64>, keyframe: bool) -> bool {
        if keyframe {
            if let (Some(now), Some(last)) = (pts_ns, self.last_key_ns)
                && now > last
            {
                let dt = (now - last) as f64 / 1e9;
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

    /// Whether this limiter lets more frames through than `other`.
    pub fn faster_than(&self, other: &RateLimiter) -> bool {
        self.interval_ns < other.interval_ns
    }

    pub fn admit(&mut self, pts_ns: Option<u64>) -> bool {
        let Some(t) = pts_ns else { return true };
        // The schedule tolerates a little jitter so a stream at exactly the target rate is
        // not halved; the window below keeps the hard limit.
        let slack = self.interval_ns / 10;
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
        g.key_frame_dropped();
        assert!(!g.admit(at(101), false));
        // Without a demand, adaptive is keyframes.
        let mut plain = KeyframeGate::new(DecodeMode::Adaptive, 1.0);
        assert_eq!(run(&mut plain, 50, 500).iter().filter(|a| **a).count(), 10);
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
