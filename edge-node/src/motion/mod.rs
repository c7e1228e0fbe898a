//! motion: a per-camera gate in front of inference.
//!
//! Input: each frame handed on by the camera (BGR). Output: [`Gate::Run`] (with the
//! regions that moved, normalised to the frame) or [`Gate::Skip`]. Cost: one pass over the
//! frame to build a 64-pixel-wide grey copy, then work on ~2,300 pixels. The background
//! adapts slowly (a running average), so lighting drift does not count as motion. Frames
//! with no motion and no live tracks are skipped (an intended drop), except that a full
//! detection still runs every `full_interval`, so parked vehicles keep being seen.
//! No queue, no threads: the camera's frame callback calls it.

use std::time::Duration;

/// What to do with a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// Run detection. `full` when forced by the interval (or the first frame);
    /// `regions` are `[x1, y1, x2, y2]` in 0–1 frame coordinates.
    Run { full: bool, regions: Vec<[f32; 4]> },
    /// No motion, no live tracks, full detection not due.
    Skip,
}

#[derive(Debug, Clone)]
pub struct MotionOptions {
    /// Width of the grey copy.
    pub width: usize,
    /// Grey-level difference (0–255) that counts as a changed pixel.
    pub threshold: f32,
    /// Fraction of changed pixels that counts as motion.
    pub min_fraction: f32,
    /// Background learning rate per frame.
    pub alpha: f32,
    pub full_interval: Duration,
}

impl Default for MotionOptions {
    fn default() -> Self {
        Self { width: 64, threshold: 18.0, min_fraction: 0.002, alpha: 0.05, full_interval: Duration::from_secs(30) }
    }
}

pub struct MotionGate {
    opts: MotionOptions,
    background: Vec<f32>,
    grey: Vec<f32>,
    /// The grey copy of the frame checked before the latest.
    previous: Vec<f32>,
    /// Whether the latest frame differed from the one checked before it ([`MotionGate::moved`]).
    moved: bool,
    size: (usize, usize),
    last_full: Option<Duration>,
}

/// Cells of the grey copy grouped into regions (8×8 pixels each).
const CELL: usize = 8;

impl MotionGate {
    pub fn new(opts: MotionOptions) -> Self {
        Self {
            opts,
            background: Vec::new(),
            grey: Vec::new(),
            previous: Vec::new(),
            moved: false,
            size: (0, 0),
            last_full: None,
        }
    }

    /// Whether the frame checked last differed from the one checked before it (by the same
    /// measure as motion against the background). Motion against the background lasts while
    /// the background learns a change (dozens of frames after a car parks, a light goes on
    /// or the picture cuts to another scene); this lasts one frame: something is moving
    /// right now. It is what keeps a camera decoding every frame.
    pub fn moved(&self) -> bool {
        self.moved
    }

    /// Decides for one packed BGR frame at stream time `now`.
    pub fn check(&mut self, bgr: &[u8], width: u32, height: u32, live_tracks: bool, now: Duration) -> Gate {
        let (w, h) = (width as usize, height as usize);
        let gw = self.opts.width.min(w).max(1);
        let gh = ((h * gw) as f32 / w as f32).round().max(1.0) as usize;
        std::mem::swap(&mut self.grey, &mut self.previous);
        self.downscale(bgr, w, h, gw, gh);
        let due = self.last_full.is_none_or(|t| now.saturating_sub(t) >= self.opts.full_interval);
        if self.size != (gw, gh) {
            // First frame (or a new resolution): learn the scene, detect everything.
            self.size = (gw, gh);
            self.background = self.grey.clone();
            self.moved = false;
            self.last_full = Some(now);
            return Gate::Run { full: true, regions: vec![[0.0, 0.0, 1.0, 1.0]] };
        }
        let threshold = self.opts.threshold;
        let enough = |n: usize| n as f32 >= self.opts.min_fraction * self.grey.len() as f32;
        let changed: Vec<bool> =
            self.grey.iter().zip(&self.background).map(|(g, b)| (g - b).abs() > threshold).collect();
        self.moved = enough(self.grey.iter().zip(&self.previous).filter(|(g, p)| (*g - *p).abs() > threshold).count());
        let a = self.opts.alpha;
        for (b, g) in self.background.iter_mut().zip(&self.grey) {
            *b += a * (g - *b);
        }
        let moving = enough(changed.iter().filter(|c| **c).count());
        if due {
            self.last_full = Some(now);
            return Gate::Run { full: true, regions: vec![[0.0, 0.0, 1.0, 1.0]] };
        }
        if moving {
            return Gate::Run { full: false, regions: regions(&changed, gw, gh) };
        }
        if live_tracks {
            return Gate::Run { full: false, regions: Vec::new() };
        }
        Gate::Skip
    }

    fn downscale(&mut self, bgr: &[u8], w: usize, h: usize, gw: usize, gh: usize) {
        grey_copy(bgr, w, h, gw, gh, &mut self.grey);
    }
}

/// A `gw`×`gh` grey copy of a packed BGR frame into `out`: a 2x2 grid of samples inside
/// each target pixel, averaged (enough to average noise, cheap). Also used by [`crate::still`].
pub fn grey_copy(bgr: &[u8], w: usize, h: usize, gw: usize, gh: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(gw * gh, 0.0);
    for gy in 0..gh {
        for gx in 0..gw {
            let mut sum = 0.0;
            for (fy, fx) in [(0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)] {
                let x = (((gx as f32 + fx) * w as f32 / gw as f32) as usize).min(w - 1);
                let y = (((gy as f32 + fy) * h as f32 / gh as f32) as usize).min(h - 1);
                let p = &bgr[(y * w + x) * 3..(y * w + x) * 3 + 3];
                sum += (p[0] as f32 + 2.0 * p[1] as f32 + p[2] as f32) / 4.0;
            }
            out[gy * gw + gx] = sum / 4.0;
        }
    }
}

/// Bounding boxes of 4-connected groups of cells holding changed pixels.
fn regions(changed: &[bool], gw: usize, gh: usize) -> Vec<[f32; 4]> {
    let (cw, ch) = (gw.div_ceil(CELL), gh.div_ceil(CELL));
    let mut cell = vec![false; cw * ch];
    for y in 0..gh {
        for x in 0..gw {
            if changed[y * gw + x] {
                cell[(y / CELL) * cw + x / CELL] = true;
            }
        }
    }
    let mut seen = vec![false; cw * ch];
    let mut out = Vec::new();
    for start in 0..cell.len() {
        if !cell[start] || seen[start] {
            continue;
        }
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        let mut stack = vec![start];
        seen[start] = true;
        while let Some(i) = stack.pop() {
            let (x, y) = (i % cw, i / cw);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            let mut push = |j: usize| {
                if cell[j] && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                push(i - 1);
            }
            if x + 1 < cw {
                push(i + 1);
            }
            if y > 0 {
                push(i - cw);
            }
            if y + 1 < ch {
                push(i + cw);
            }
        }
        out.push([
            (x0 * CELL) as f32 / gw as f32,
            (y0 * CELL) as f32 / gh as f32,
            (((x1 + 1) * CELL).min(gw)) as f32 / gw as f32,
            (((y1 + 1) * CELL).min(gh)) as f32 / gh as f32,
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: usize, h: usize, square: Option<(usize, usize)>) -> Vec<u8> {
        let mut f = vec![60u8; w * h * 3];
        if let Some((sx, sy)) = square {
            for y in sy..sy + 32 {
                for x in sx..sx + 32 {
                    f[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[230, 230, 230]);
                }
            }
        }
        f
    }

    fn at(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn still_scene_is_skipped_until_a_full_detection_is_due() {
        let mut g = MotionGate::new(MotionOptions { full_interval: Duration::from_secs(30), ..Default::default() });
        let still = frame(256, 128, None);
        assert!(matches!(g.check(&still, 256, 128, false, at(0)), Gate::Run { full: true, .. }));
        for s in 1..30 {
            assert_eq!(g.check(&still, 256, 128, false, at(s)), Gate::Skip, "second {s}");
        }
        assert!(matches!(g.check(&still, 256, 128, false, at(30)), Gate::Run { full: true, .. }));
        // Live tracks keep detection running.
        assert!(matches!(g.check(&still, 256, 128, true, at(31)), Gate::Run { full: false, .. }));
    }

    #[test]
    fn motion_runs_detection_and_locates_it() {
        let mut g = MotionGate::new(MotionOptions::default());
        g.check(&frame(256, 128, None), 256, 128, false, at(0));
        let Gate::Run { full, regions } = g.check(&frame(256, 128, Some((192, 64))), 256, 128, false, at(1)) else {
            panic!("motion not seen")
        };
        assert!(!full);
        assert_eq!(regions.len(), 1);
        let r = regions[0];
        // The square covers x 0.75–0.875, y 0.5–0.75 of the frame.
        assert!(r[0] <= 0.75 && r[2] >= 0.87 && r[1] <= 0.5 && r[3] >= 0.74, "{r:?}");
        assert!(r[2] - r[0] < 0.5, "region too wide: {r:?}");
    }

    /// A change that stopped (a car that parked, a picture that cut to another scene and
    /// froze) stays motion against the background while it learns the change, but it moved
    /// only on the frame it happened.
    #[test]
    fn a_change_that_stopped_moved_once() {
        let mut g = MotionGate::new(MotionOptions { full_interval: Duration::from_secs(3600), ..Default::default() });
        g.check(&frame(256, 128, None), 256, 128, false, at(0));
        assert!(!g.moved(), "the first frame");
        let parked = frame(256, 128, Some((64, 32)));
        assert!(matches!(g.check(&parked, 256, 128, false, at(1)), Gate::Run { full: false, .. }));
        assert!(g.moved());
        for s in 2..6 {
            assert!(
                matches!(g.check(&parked, 256, 128, false, at(s)), Gate::Run { full: false, .. }),
                "second {s}: the background is still learning it"
            );
            assert!(!g.moved(), "second {s}: nothing changed since the frame before");
        }
        // It moves on: moved again.
        g.check(&frame(256, 128, Some((160, 64))), 256, 128, false, at(6));
        assert!(g.moved());
    }

    #[test]
    fn slow_lighting_drift_is_not_motion() {
        let mut g = MotionGate::new(MotionOptions { full_interval: Duration::from_secs(3600), ..Default::default() });
        // Half a grey level per frame: minutes of dusk at 1-2 frames per second.
        for s in 0..40u8 {
            let f = vec![60 + s / 2; 128 * 64 * 3];
            let gate = g.check(&f, 128, 64, false, at(s as u64));
            if s > 0 {
                assert_eq!(gate, Gate::Skip, "brightness +{s}");
            }
        }
    }
}
