//! Capped exponential backoff with jitter, so a fleet of cameras behind one failed
//! switch does not reconnect in lockstep.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration, seed: u64) -> Self {
        Self { base, max, attempt: 0, rng: seed | 1 }
    }

    /// The next wait: base·2^attempt capped at max, then ±20% jitter.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64: good enough for jitter, no dependency.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng % 10_000) as f64 / 10_000.0; // [0, 1)
        exp.mul_f64(0.8 + 0.4 * unit)
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_jitters() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), 42);
        let d: Vec<f64> = (0..8).map(|_| b.next_delay().as_secs_f64()).collect();
        for (i, want) in [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0].iter().enumerate() {
            assert!(d[i] >= want * 0.8 && d[i] <= want * 1.2, "attempt {i}: {} vs {want}", d[i]);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1200));
        // Two cameras with different seeds do not retry in lockstep.
        let mut a = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), 1);
        let mut c = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), 2);
        assert_ne!(a.next_delay(), c.next_delay());
    }
}
