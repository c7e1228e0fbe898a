//! The one clock: what time it is for the parts that decide by time (the camera
//! supervisor's retries and stall checks, the dispatcher's deadlines, escalations,
//! statistics and pruning, the report limits). Production passes [`SystemClock`]; tests
//! pass a [`ManualClock`], which stands still until told to move, so a test of "an order
//! not accepted within an hour escalates" takes a second instead of an hour.
//!
//! Durations of work (how long a stage took, a benchmark, a wait for a thread to end) are
//! measured with `Instant::now()` directly: they are not decisions a test steps through.
//! Frames carry their own time (stream time and the wall time they were received), which is
//! what tracking and the rules go by.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Locked;

/// Time as a part of the node or the dispatcher sees it.
pub trait Clock: Send + Sync {
    /// Monotonic time, for intervals and deadlines within this process.
    fn now(&self) -> Instant;
    /// Calendar time, for what is stored or sent (order deadlines, timestamps).
    fn wall(&self) -> SystemTime;
    /// [`Clock::wall`] as milliseconds since the Unix epoch (as the dispatcher stores it).
    fn unix_ms(&self) -> i64 {
        self.wall().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }
}

/// The machine's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The machine's clocks, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A paused clock: both its monotonic and its calendar time stand still from when it was
/// made until [`ManualClock::advance`] moves them together.
pub struct ManualClock {
    base: Instant,
    wall: SystemTime,
    offset: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::at(SystemTime::now())
    }
}

impl ManualClock {
    /// Paused at calendar time `wall`.
    pub fn at(wall: SystemTime) -> Self {
        Self { base: Instant::now(), wall, offset: Mutex::new(Duration::ZERO) }
    }

    pub fn advance(&self, by: Duration) {
        *self.offset.locked() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.locked()
    }
    fn wall(&self) -> SystemTime {
        self.wall + *self.offset.locked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_advanced_and_moves_both_times() {
        let c = ManualClock::at(UNIX_EPOCH + Duration::from_secs(1_000));
        let (t0, w0) = (c.now(), c.unix_ms());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!((c.now(), c.unix_ms()), (t0, w0), "paused");
        c.advance(Duration::from_secs(90));
        assert_eq!(c.now() - t0, Duration::from_secs(90));
        assert_eq!(c.unix_ms() - w0, 90_000);
        assert_eq!(w0, 1_000_000);
    }

    #[test]
    fn the_system_clock_moves() {
        let c = SystemClock;
        let (t0, w0) = (c.now(), c.wall());
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.now() > t0 && c.wall() > w0);
    }
}
