//! Which frames reach the decoder and which decoded frames are handed on: the pure logic
//! behind the pipeline's pad probes, testable without GStreamer.

use crate::config::DecodeMode;

/// Decides per access unit whether it goes to the decoder.
///
/// `keyframes`: only key frames. `all`: everything. `auto`: measures the key-frame
/// interval and decodes key frames only while `detect_fps` ≤ the key-frame rate; until
/// the interval is known, everything is decoded. Switching between the two happens only
/// at a key frame, so the decoder never sees a delta frame whose reference it lacks.
#[derive(Debug, Clone)]
pub struct KeyframeGate {
    mode: DecodeMode,
    detect_fps: f64,
    last_key_ns: Option<u64>,
    /// Smoothed key-frame interval in seconds.
    interval_s: Option<f64>,
    passing_deltas: bool,
}

impl KeyframeGate {
    pub fn new(mode: DecodeMode, detect_fps: f64) -> Self {
        Self { mode, detect_fps, last_key_ns: None, interval_s: None, passing_deltas: mode != DecodeMode::Keyframes }
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
            if self.mode == DecodeMode::Auto {
                self.passing_deltas = match self.keyframe_rate() {
                    Some(rate) => self.detect_fps > rate * 1.05,
                    None => true,
                };
            }
            return true;
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
}
