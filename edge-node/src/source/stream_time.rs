//! Stream time: a camera's presentation timestamps mapped onto the node's monotonic clock.
//!
//! Tracker, rules, dwell, cooldowns and the motion gate measure time between frames of one
//! camera. The wall clock cannot do that (NTP steps it, an operator sets it), and a frame's
//! arrival time carries network and decoder jitter. The PTS (from the RTP timestamps) says
//! when each picture was taken, relative to the stream's start: anchored once per
//! connection to the monotonic clock, it gives each frame a time that is true to the camera
//! and comparable across reconnections.

use std::time::Duration;

/// PTS further than this from the monotonic clock (a camera whose clock runs fast or
/// slow, a timestamp jump) re-anchors the mapping.
const MAX_DRIFT: Duration = Duration::from_secs(2);

/// One camera's mapping; [`reset`](Self::reset) at every new connection.
#[derive(Debug, Default, Clone)]
pub struct StreamClock {
    /// (monotonic time, PTS) of the frame the mapping starts from.
    anchor: Option<(Duration, Duration)>,
    last: Option<Duration>,
}

impl StreamClock {
    /// A new connection: its PTS start again, its stream times continue after the last one.
    pub fn reset(&mut self) {
        self.anchor = None;
    }

    /// Stream time of a frame with `pts`, arriving at monotonic time `now`. Strictly
    /// increasing for one camera, whatever its timestamps do.
    pub fn map(&mut self, pts: Option<Duration>, now: Duration) -> Duration {
        let mapped = match (pts, self.anchor) {
            (Some(p), Some((m0, p0))) if p >= p0 => Some(m0 + (p - p0)),
            _ => None,
        };
        let t = match mapped {
            Some(t) if t.abs_diff(now) <= MAX_DRIFT => t,
            _ => {
                self.anchor = pts.map(|p| (now, p));
                now
            }
        };
        let t = match self.last {
            Some(last) if t <= last => last + Duration::from_micros(1),
            _ => t,
        };
        self.last = Some(t);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn follows_pts_not_arrival_jitter() {
        let mut c = StreamClock::default();
        // Frames 40 ms apart by PTS, arriving with up to 300 ms of jitter.
        let arrivals = [1000, 1300, 1090, 1120, 1500, 1210];
        let got: Vec<Duration> =
            arrivals.iter().enumerate().map(|(i, a)| c.map(Some(ms(i as u64 * 40)), ms(*a))).collect();
        assert_eq!(got, (0..6).map(|i| ms(1000 + i * 40)).collect::<Vec<_>>());
    }

    #[test]
    fn a_reconnection_continues_after_the_last_time() {
        let mut c = StreamClock::default();
        assert_eq!(c.map(Some(ms(5000)), ms(100)), ms(100));
        assert_eq!(c.map(Some(ms(5040)), ms(140)), ms(140));
        c.reset();
        // The new connection's PTS start at 0 again; it arrives 3 s later.
        assert_eq!(c.map(Some(ms(0)), ms(3140)), ms(3140));
        assert_eq!(c.map(Some(ms(40)), ms(3185)), ms(3180));
    }

    #[test]
    fn jumps_and_missing_pts_never_go_back() {
        let mut c = StreamClock::default();
        let a = c.map(Some(ms(10_000)), ms(50));
        let b = c.map(Some(ms(2_000)), ms(60)); // PTS jumped back: re-anchored
        let d = c.map(None, ms(55)); // no PTS, and the arrival is before the last time
        let e = c.map(Some(ms(90_000)), ms(100)); // far ahead of the clock: re-anchored
        assert!(a < b && b < d && d < e, "{a:?} {b:?} {d:?} {e:?}");
        assert_eq!(e, ms(100));
    }
}
