//! Frame rates from monotonic counters, over windows long enough to hold several frames,
//! so a camera sending one key frame every few seconds never reads 0.0 while it streams.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Samples of a camera's counters (received, decoded, handed on), one a second at most,
/// kept for [`Rates::HORIZON`].
#[derive(Debug, Default, Clone)]
pub struct Rates {
    samples: VecDeque<(Instant, [u64; 3])>,
}

impl Rates {
    /// The normal window.
    pub const WINDOW: Duration = Duration::from_secs(10);
    /// How far back a rate may reach when the normal window holds too few frames.
    pub const HORIZON: Duration = Duration::from_secs(60);
    /// Frames a window should hold before its rate is trusted.
    const ENOUGH: u64 = 4;

    /// Adds a sample (ignored when less than a second after the last one); returns whether
    /// it was taken.
    pub fn push(&mut self, now: Instant, counts: [u64; 3]) -> bool {
        if self.samples.back().is_some_and(|(t, _)| now.duration_since(*t) < Duration::from_secs(1)) {
            return false;
        }
        self.samples.push_back((now, counts));
        // Keep one sample at or beyond the horizon, so the longest window is a full one.
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= Self::HORIZON {
            self.samples.pop_front();
        }
        true
    }

    /// Forget everything (the camera stopped streaming: its rates start again from zero).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// Per-second rates of the three counters: over the newest [`WINDOW`](Self::WINDOW)
    /// (or what exists of it), widened up to the horizon for a counter with fewer than
    /// four frames in it. Zero until two samples a second apart exist.
    pub fn rates(&self) -> [f64; 3] {
        let Some(&(t_new, new)) = self.samples.back() else { return [0.0; 3] };
        let window_start = self
            .samples
            .iter()
            .rev()
            .find(|(t, _)| t_new.duration_since(*t) >= Self::WINDOW)
            .or(self.samples.front())
            .copied();
        let oldest = self.samples.front().copied();
        let rate = |(t, c): (Instant, [u64; 3]), k: usize| {
            let dt = t_new.duration_since(t).as_secs_f64();
            if dt < 1.0 { None } else { Some((new[k].saturating_sub(c[k]), dt)) }
        };
        std::array::from_fn(|k| {
            let normal = window_start.and_then(|s| rate(s, k));
            let widest = oldest.and_then(|s| rate(s, k));
            match (normal, widest) {
                (Some((n, _)), Some((w, dt))) if n < Self::ENOUGH => w as f64 / dt,
                (Some((n, dt)), _) => n as f64 / dt,
                _ => 0.0,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `fps` frames per second for `seconds`, sampling every 100 ms as the supervisor
    /// does; returns the rates read at each sample after `settle` seconds.
    fn run(fps: f64, seconds: u64, settle: u64) -> Vec<f64> {
        let t0 = Instant::now();
        let mut r = Rates::default();
        let mut out = Vec::new();
        for tick in 0..seconds * 10 {
            let now = t0 + Duration::from_millis(tick * 100);
            let frames = (tick as f64 / 10.0 * fps).floor() as u64;
            r.push(now, [frames * 50, frames, frames]);
            if tick >= settle * 10 {
                out.push(r.rates()[1]);
            }
        }
        out
    }

    #[test]
    fn a_half_fps_camera_never_reads_zero() {
        let rates = run(0.5, 120, 3);
        assert!(rates.iter().all(|&r| r > 0.0), "{rates:?}");
        let settled = &rates[200..];
        assert!(settled.iter().all(|&r| (0.35..=0.65).contains(&r)), "{settled:?}");
    }

    #[test]
    fn a_key_frame_every_ten_seconds_reads_about_a_tenth() {
        let rates = run(0.1, 180, 25);
        assert!(rates.iter().all(|&r| r > 0.0), "{:?}", &rates[..20]);
        assert!(rates[400..].iter().all(|&r| (0.07..=0.13).contains(&r)), "{:?}", &rates[400..420]);
    }

    #[test]
    fn fast_counters_use_the_ten_second_window() {
        let t0 = Instant::now();
        let mut r = Rates::default();
        for s in 0..=30u64 {
            // 25 fps for 20 s, then 5 fps.
            let n = if s <= 20 { s * 25 } else { 500 + (s - 20) * 5 };
            r.push(t0 + Duration::from_secs(s), [n, n, n]);
        }
        assert!((r.rates()[0] - 5.0).abs() < 0.01, "{:?}", r.rates());
    }

    #[test]
    fn nothing_yet_reads_zero_and_samples_stay_bounded() {
        let t0 = Instant::now();
        let mut r = Rates::default();
        assert_eq!(r.rates(), [0.0; 3]);
        assert!(r.push(t0, [0; 3]));
        assert!(!r.push(t0 + Duration::from_millis(500), [1; 3]), "less than a second apart");
        for s in 1..1000 {
            r.push(t0 + Duration::from_secs(s), [s; 3]);
        }
        assert!(r.samples.len() <= 62, "{}", r.samples.len());
        r.clear();
        assert_eq!(r.rates(), [0.0; 3]);
    }
}
