//! still: what appeared in a camera's view and stays, or vanished and stays gone — the
//! camera's dual background, for `left_object` and `removed_object` rules.
//!
//! Input: frames the camera hands on (packed BGR), used at most once a second (key frames
//! are enough: these are slow events). Output: the [`Still`] regions of the view. Cost: one
//! pass over the frame for a 160-pixel-wide grey copy, then work on ~14,000 pixels; 16 bytes
//! a pixel, 230 KB per camera at 16:9. No model, no queue, no thread: [`crate::camera::CameraCore::admit`]
//! calls it.
//!
//! The method is the dual background of Porikli, Ivanov and Haga (2008, "Robust abandoned
//! object detection using dual foregrounds"): a short-term background that follows the
//! picture within seconds, and a long-term background that follows it only where nothing
//! differs from it (and slowly). A pixel that differs from the long-term background but
//! agrees with the short-term one is *still*: something changed there and stayed. Moving
//! things differ from both; the background agrees with both.
//!
//! What keeps it quiet where nothing was left:
//! - **Global brightness** (dusk, clouds, the camera's exposure): the long-term background
//!   is compared after scaling by the ratio of the picture's mean to its own.
//! - **Lighting and shadows** keep the texture of what they fall on: a still region whose
//!   picture correlates with the long-term background (normalised cross-correlation ≥ 0.75)
//!   is a change of light, not an object, and is left out. Whether something appeared or
//!   vanished is told by edges: an object brings edges the background lacks, a removed one
//!   takes its edges away (Tian, Feris and Hampapur 2005).
//! - **A stable shape**: a region counts once it was seen twice with boxes that overlap by
//!   half (IoU ≥ 0.5); a region hidden for a moment (someone walks past) is kept a few
//!   seconds.
//! - **A sudden change of most of the view** (the camera was moved or knocked, a looping
//!   test clip jumps, lights switched): over half the pixels differ from the long-term
//!   background, or the picture matches the background clearly better shifted by a few
//!   pixels than as it is (a pan, a tilt, a knock), and the model starts again from this
//!   picture instead of reporting it.
//! - **A warm-up** of [`WARM_UP`] after a start: the long-term background takes each pixel
//!   whenever it is steady, so a car passing through the first pictures is not a thing removed.
//! - **Absorption**: what stays longer than `absorb_after` becomes background, so a thing
//!   left for good is reported once.
//!
//! Time is the frame's stream time ([`crate::types::Frame::stream`]); a region's `since` is
//! when its pixels first differed from the long-term background (not when the short-term
//! one took it in), so a rule's `min_duration` counts from the moment the thing appeared.

use std::time::Duration;

use crate::inference::nms::iou;

/// Width of the grey copy the model works on.
pub const WIDTH: usize = 160;
/// The model takes a picture at most this often.
pub const MIN_STEP: Duration = Duration::from_secs(1);
/// Grey-level difference (0–255) that counts as different.
const THRESHOLD: f32 = 22.0;
/// Time constant of the short-term background: a thing that stays is taken in after about
/// this long (once its difference falls under the threshold).
const SHORT: Duration = Duration::from_secs(4);
/// Time constant of the long-term background where nothing differs (slow drift).
const LONG: Duration = Duration::from_secs(60);
/// After a start (or a start again) the long-term background takes every steady pixel
/// this long, and nothing is reported: what was passing through the first picture is not
/// taken for a thing that was there and left.
pub const WARM_UP: Duration = Duration::from_secs(20);
/// Share of the view that, differing at once, means the view itself changed.
const RESET_SHARE: f32 = 0.5;
/// A pixel's `since` when it does not differ.
const NEVER: u32 = u32::MAX;
/// The farthest view shift looked for, in pixels of the grey copy (16 pixels of a 640-wide frame).
const SHIFT_REACH: usize = 4;
/// The view is searched for a shift when at least this share of it differs.
const SHIFT_SHARE: f32 = 0.03;
/// A shifted view that matches the long-term background this much better than the unshifted
/// one means the camera moved.
const SHIFT_GAIN: f32 = 0.8;
/// A region hidden for up to this long (a passer-by) keeps its identity.
const HIDDEN_GRACE: Duration = Duration::from_secs(6);
/// Correlation with the long-term background at or above which a region is a change of light.
const LIGHT_NCC: f32 = 0.75;
/// Smallest region, in pixels of the grey copy (a 16×16 patch of a 640-wide frame).
const MIN_PIXELS: usize = 16;

/// What a still region is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Something is there that was not (more edges than the background had).
    Left,
    /// Something that was there is gone (fewer edges).
    Removed,
}

/// A region of the view that changed and stays changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Still {
    /// Unique per camera model.
    pub id: u64,
    /// `[x0, y0, x1, y1]` in 0–1 frame coordinates.
    pub bbox: [f32; 4],
    /// Share of the frame its pixels cover.
    pub area: f32,
    pub change: Change,
    /// When its pixels began to differ from the long-term background (stream time).
    pub since: Duration,
    /// Updates in a row it was seen with a box overlapping the previous one by half.
    pub stable: u32,
    /// When it was last seen (stream time); earlier than the model's last update while hidden.
    pub seen: Duration,
}

/// The dual background of one camera.
pub struct StillModel {
    absorb_after: Duration,
    size: (usize, usize),
    grey: Vec<f32>,
    short: Vec<f32>,
    long: Vec<f32>,
    /// Per pixel: since when (whole seconds of stream time) it differs from the long-term
    /// background; [`NEVER`]: it does not.
    since: Vec<u32>,
    last: Option<Duration>,
    /// Until when the model is warming up ([`WARM_UP`]).
    warm_until: Duration,
    stills: Vec<Still>,
    next_id: u64,
    /// Times the view changed as a whole and the model started again.
    pub resets: u64,
}

impl StillModel {
    /// A model that takes in what stays longer than `absorb_after`.
    pub fn new(absorb_after: Duration) -> Self {
        Self {
            absorb_after,
            size: (0, 0),
            grey: Vec::new(),
            short: Vec::new(),
            long: Vec::new(),
            since: Vec::new(),
            last: None,
            warm_until: Duration::ZERO,
            stills: Vec::new(),
            next_id: 1,
            resets: 0,
        }
    }

    /// The still regions as of the last update.
    pub fn stills(&self) -> &[Still] {
        &self.stills
    }

    /// Bytes the model keeps per camera (the grey copy and both backgrounds, per pixel).
    pub fn bytes(&self) -> usize {
        (self.grey.capacity() + self.short.capacity() + self.long.capacity() + self.since.capacity()) * 4
    }

    /// Takes a packed BGR frame at stream time `now`, at most once per [`MIN_STEP`].
    /// Returns whether the model updated.
    pub fn update(&mut self, bgr: &[u8], width: u32, height: u32, now: Duration) -> bool {
        if width == 0 || height == 0 || self.last.is_some_and(|l| now.saturating_sub(l) < MIN_STEP) {
            return false;
        }
        let (w, h) = (width as usize, height as usize);
        let gw = WIDTH.min(w);
        let gh = ((h * gw) as f32 / w as f32).round().max(1.0) as usize;
        crate::motion::grey_copy(bgr, w, h, gw, gh, &mut self.grey);
        let dt = self.last.map_or(Duration::ZERO, |l| now.saturating_sub(l));
        self.last = Some(now);
        if self.size != (gw, gh) {
            self.size = (gw, gh);
            self.start_again(now);
            return true;
        }
        let a_short = 1.0 - (-dt.as_secs_f32() / SHORT.as_secs_f32()).exp();
        if now < self.warm_until {
            // The long-term background takes each pixel whenever it is steady (agrees with
            // the short-term one), so a thing passing through leaves no trace in it.
            for ((s, l), g) in self.short.iter_mut().zip(self.long.iter_mut()).zip(&self.grey) {
                if (g - *s).abs() <= THRESHOLD {
                    *l = *g;
                }
                *s += a_short * (g - *s);
            }
            return true;
        }
        let n = self.grey.len();
        // Global brightness: the long-term background scaled to the picture's.
        let (sum_g, sum_l): (f32, f32) =
            self.grey.iter().zip(&self.long).fold((0.0, 0.0), |(a, b), (g, l)| (a + g, b + l));
        let gain = if sum_l > 1.0 { (sum_g / sum_l).clamp(0.2, 5.0) } else { 1.0 };
        let differs: Vec<bool> =
            self.grey.iter().zip(&self.long).map(|(g, l)| (g - gain * l).abs() > THRESHOLD).collect();
        // A moved view differs in many places; a quiet one is not searched for a shift.
        let share = differs.iter().filter(|d| **d).count() as f32 / n as f32;
        if share > RESET_SHARE || (share > SHIFT_SHARE && view_shift(&self.grey, &self.long, gain, gw, gh).is_some()) {
            self.resets += 1;
            self.start_again(now);
            return true;
        }
        let a_long = 1.0 - (-dt.as_secs_f32() / LONG.as_secs_f32()).exp();
        let mut still = vec![false; n];
        for i in 0..n {
            let g = self.grey[i];
            if differs[i] {
                if self.since[i] == NEVER {
                    self.since[i] = now.as_secs().min(NEVER as u64 - 1) as u32;
                }
                let since = Duration::from_secs(self.since[i] as u64);
                still[i] = (g - self.short[i]).abs() <= THRESHOLD;
                if still[i] && now.saturating_sub(since) >= self.absorb_after {
                    // Stayed long enough: it is background now.
                    self.long[i] = g / gain;
                    self.since[i] = NEVER;
                    still[i] = false;
                }
            } else {
                self.since[i] = NEVER;
                self.long[i] += a_long * (g / gain - self.long[i]);
            }
            self.short[i] += a_short * (g - self.short[i]);
        }
        self.find(&still, gain, now);
        true
    }

    fn start_again(&mut self, now: Duration) {
        self.warm_until = now + WARM_UP;
        self.short = self.grey.clone();
        self.long = self.grey.clone();
        self.since = vec![NEVER; self.grey.len()];
        self.stills.clear();
    }

    /// Groups still pixels into regions and matches them to those of the last update.
    fn find(&mut self, still: &[bool], gain: f32, now: Duration) {
        let (gw, gh) = self.size;
        let mask = close(still, gw, gh);
        let mut found: Vec<Still> = Vec::new();
        for pixels in components(&mask, gw, gh) {
            if pixels.len() < MIN_PIXELS {
                continue;
            }
            let (mut x0, mut y0, mut x1, mut y1) = (gw, gh, 0, 0);
            let mut starts: Vec<Duration> = Vec::with_capacity(pixels.len());
            for &i in &pixels {
                let (x, y) = (i % gw, i / gw);
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
                if self.since[i] != NEVER {
                    starts.push(Duration::from_secs(self.since[i] as u64));
                }
            }
            let Some(change) = self.change_in([x0, y0, x1, y1], gain) else { continue };
            starts.sort();
            let since = starts.get(starts.len() / 2).copied().unwrap_or(now);
            found.push(Still {
                id: 0,
                bbox: [x0 as f32 / gw as f32, y0 as f32 / gh as f32, x1 as f32 / gw as f32, y1 as f32 / gh as f32],
                area: pixels.len() as f32 / (gw * gh) as f32,
                change,
                since,
                stable: 1,
                seen: now,
            });
        }
        let mut kept: Vec<Still> = Vec::new();
        let mut matched = vec![false; self.stills.len()];
        for mut s in found {
            let best = self
                .stills
                .iter()
                .enumerate()
                .filter(|(k, o)| !matched[*k] && o.change == s.change)
                .map(|(k, o)| (k, iou(&o.bbox, &s.bbox)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((k, overlap)) if overlap >= 0.3 => {
                    matched[k] = true;
                    let old = &self.stills[k];
                    s.id = old.id;
                    s.since = s.since.min(old.since);
                    s.stable = if overlap >= 0.5 { old.stable + 1 } else { 1 };
                }
                _ => {
                    s.id = self.next_id;
                    self.next_id += 1;
                }
            }
            kept.push(s);
        }
        // Hidden for a moment (a passer-by in front of it): kept a little while.
        for (k, old) in self.stills.iter().enumerate() {
            if !matched[k] && now.saturating_sub(old.seen) < HIDDEN_GRACE {
                kept.push(old.clone());
            }
        }
        self.stills = kept;
    }

    /// Whether the picture in box `b` (grey-copy pixels, grown by 2) shows an object that
    /// appeared, one that vanished, or (`None`) the same texture in another light.
    fn change_in(&self, b: [usize; 4], gain: f32) -> Option<Change> {
        let (gw, gh) = self.size;
        let (x0, y0) = (b[0].saturating_sub(2), b[1].saturating_sub(2));
        let (x1, y1) = ((b[2] + 2).min(gw), (b[3] + 2).min(gh));
        let (mut sg, mut sl, mut sgg, mut sll, mut sgl, mut k) = (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
        let (mut edges_now, mut edges_then) = (0.0f32, 0.0f32);
        for y in y0..y1 {
            for x in x0..x1 {
                let i = y * gw + x;
                let (g, l) = (self.grey[i] as f64, (gain * self.long[i]) as f64);
                (sg, sl, sgg, sll, sgl, k) = (sg + g, sl + l, sgg + g * g, sll + l * l, sgl + g * l, k + 1.0);
                if x + 1 < x1 && y + 1 < y1 {
                    let grad = |v: &[f32], s: f32| (v[i + 1] - v[i]).abs() * s + (v[i + gw] - v[i]).abs() * s;
                    edges_now += grad(&self.grey, 1.0);
                    edges_then += grad(&self.long, gain);
                }
            }
        }
        let var_g = (sgg / k - (sg / k).powi(2)).max(0.0);
        let var_l = (sll / k - (sl / k).powi(2)).max(0.0);
        let cov = sgl / k - (sg / k) * (sl / k);
        // Both flat (an even surface in another light), or the same texture: light.
        if var_g.max(var_l) < 4.0 || cov / (var_g * var_l).sqrt().max(1e-6) >= LIGHT_NCC as f64 {
            return None;
        }
        Some(if edges_now >= edges_then { Change::Left } else { Change::Removed })
    }
}

/// How far the view moved against the long-term background (scaled by `gain`), in pixels
/// of the grey copy, when it did: the camera panned, tilted or was knocked. The shift of up
/// to [`SHIFT_REACH`] pixels that matches best (mean absolute difference over every other
/// pixel of the middle), when it is not zero and matches clearly better than none.
fn view_shift(grey: &[f32], long: &[f32], gain: f32, w: usize, h: usize) -> Option<(i64, i64)> {
    let r = SHIFT_REACH as i64;
    if w as i64 <= 4 * r || h as i64 <= 4 * r {
        return None;
    }
    let cost = |dx: i64, dy: i64| -> f32 {
        let mut sum = 0.0;
        for y in (r..h as i64 - r).step_by(2) {
            for x in (r..w as i64 - r).step_by(2) {
                let g = grey[(y * w as i64 + x) as usize];
                let l = long[((y + dy) * w as i64 + x + dx) as usize];
                sum += (g - gain * l).abs();
            }
        }
        sum
    };
    let still = cost(0, 0);
    let (mut best, mut at) = (still, (0, 0));
    for dy in -r..=r {
        for dx in -r..=r {
            if (dx, dy) != (0, 0) {
                let c = cost(dx, dy);
                if c < best {
                    (best, at) = (c, (dx, dy));
                }
            }
        }
    }
    (at != (0, 0) && best < SHIFT_GAIN * still).then_some(at)
}

/// A one-pixel closing (dilate, then erode) of a mask: joins a region split by a thin line.
fn close(mask: &[bool], w: usize, h: usize) -> Vec<bool> {
    let pass = |m: &[bool], any: bool| -> Vec<bool> {
        let mut out = vec![false; m.len()];
        for y in 0..h {
            for x in 0..w {
                let mut hit = !any;
                for (dx, dy) in [(0i64, 0i64), (-1, 0), (1, 0), (0, -1), (0, 1)] {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    let v = nx >= 0
                        && ny >= 0
                        && (nx as usize) < w
                        && (ny as usize) < h
                        && m[ny as usize * w + nx as usize];
                    if any { hit |= v } else { hit &= v || nx < 0 || ny < 0 || nx as usize >= w || ny as usize >= h }
                }
                out[y * w + x] = hit;
            }
        }
        out
    };
    pass(&pass(mask, true), false)
}

/// The 8-connected groups of set pixels, as pixel indices.
fn components(mask: &[bool], w: usize, h: usize) -> Vec<Vec<usize>> {
    let mut seen = vec![false; mask.len()];
    let mut out = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        let mut group = Vec::new();
        let mut stack = vec![start];
        seen[start] = true;
        while let Some(i) = stack.pop() {
            group.push(i);
            let (x, y) = ((i % w) as i64, (i / w) as i64);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        out.push(group);
    }
    out
}

#[cfg(test)]
mod tests;
