//! privacy: the faces of every picture that leaves the node, searched on the whole picture.
//!
//! Rules and counting may look for faces only around the people the object model found
//! (`inference::Detector`'s crop path: cheap, and enough for them). What is published must
//! not depend on that: the people an object model misses in a crowd are small and half
//! hidden, exactly the faces a crowd shows. So every published picture (alert snapshots,
//! event clips, live snapshots and thumbnails, residents' photos) goes through [`FaceSearch`]:
//!
//! ```text
//! picture (packed BGR) ─► search: the face model on the whole picture at 1x, score ≥ 0.3
//!   ─► pixelate what it found and the faces already known
//!   ─► verify: the face model on the pixelated picture at 2x, score ≥ 0.3 (the small faces
//!      1x misses, and anything pixelation left face-like) ─► pixelate those too, in blocks
//!      twice as large (a small face's own-sized blocks still answer a detector at 2x)
//!   ─► and at 1x, score ≥ 0.3: a face next to pixelated ones can stand out at 1x once its
//!      neighbours are blocks (seen once in a crowd's live snapshot) ─► pixelate those too,
//!      coarser where a face is found again on a region already pixelated
//!   ─► the 1x pass again while a round finds a face outside what was hidden (3 rounds at most)
//! ```
//!
//! Pixelation uses power-of-two blocks on one lattice, so passes over overlapping regions
//! never cut each other's blocks into finer detail (see [`pixelate_coarser`]).
//!
//! A low score costs only a few harmless pixelated patches; a missed face is a privacy
//! breach. Inputs are capped at [`MAX_INPUT_PIXELS`] (a 1080p picture is verified at about
//! 1x). The face model must be a dynamic one (YuNet with a free input size) to run at these
//! scales; a fixed-size file runs at its size (said once in the log). Faces are detected,
//! never identified.

use crate::Locked;
use std::sync::{Arc, Mutex};

use crate::config::{Config, Family, ModelSpec};
use crate::inference::{ImageView, Job, Model, OrtError};
use crate::types::Detections;

/// Score kept by the search pass.
pub const SEARCH_SCORE: f32 = 0.3;
/// Score kept by the verify pass at 2x: as low as the search's. A small face (10 pixels)
/// scores either side of 0.5 from one frame to the next, and its score moves by 0.2 when
/// the picture is encoded (seen on the crowd clip: missed at 0.5 on the frame, found at 0.7
/// in the published clip).
pub const VERIFY_SCORE: f32 = 0.3;
/// The verify pass's scale.
pub const VERIFY_SCALE: f32 = 2.0;
/// Most rounds of the verify passes (a round runs only when the one before found a face
/// outside the regions already hidden).
pub const VERIFY_ROUNDS: usize = 3;
/// Largest model input of either pass, in pixels (1920 × 1088).
pub const MAX_INPUT_PIXELS: f32 = 1920.0 * 1088.0;

/// One face model session that hides faces in pictures (one thread at a time).
pub struct FaceSearch {
    model: Model,
    /// Model runs so far (each pass at each scale is one).
    passes: u64,
}

impl FaceSearch {
    pub fn new(spec: &ModelSpec) -> Result<Self, OrtError> {
        Ok(Self { model: Model::load(spec, 1)?, passes: 0 })
    }

    /// How many times the face model ran (a search is one run; a verify two or more).
    pub fn passes(&self) -> u64 {
        self.passes
    }

    /// The faces of a packed BGR picture at `scale` (capped), with scores of at least `score`;
    /// boxes in picture pixels.
    pub fn find(&mut self, bgr: &[u8], w: u32, h: u32, scale: f32, score: f32) -> Result<Vec<[f32; 4]>, OrtError> {
        if w == 0 || h == 0 {
            return Ok(Vec::new());
        }
        if self.model.spec.dynamic {
            let cap = (MAX_INPUT_PIXELS / (w as f32 * h as f32)).sqrt();
            let s = scale.min(cap);
            let up = |v: u32| ((v as f32 * s).round().max(32.0) as u32).div_ceil(32) * 32;
            self.model.spec.input_size = (up(w), up(h));
        }
        self.model.spec.score_threshold = score;
        let job = Job::whole(ImageView::packed(bgr, w, h), (w, h));
        let mut out = [Detections::default()];
        self.passes += 1;
        self.model.detect(&[job], &mut out)?;
        let [found] = out;
        Ok(found.faces.into_iter().map(|f| f.bbox).collect())
    }

    /// The search pass alone: faces at 1x.
    pub fn search(&mut self, bgr: &[u8], w: u32, h: u32) -> Result<Vec<[f32; 4]>, OrtError> {
        self.find(bgr, w, h, 1.0, SEARCH_SCORE)
    }

    /// The verify passes on a picture whose `hidden` regions are already pixelated: what is
    /// still found at 2x (score 0.3; small faces, one level coarser) or at 1x (the search's
    /// score) is pixelated too, one level coarser again for each hidden region it falls on
    /// ([`pixelate_coarser`]);
    /// the 1x pass again while a round finds a face off every hidden region, at most
    /// [`VERIFY_ROUNDS`] rounds in all. Returns the boxes found.
    ///
    /// `bgr` is the picture the search pass ([`FaceSearch::search`]) ran on, with `hidden`
    /// pixelated. So when nothing is hidden and the 2x pass finds nothing, the picture is
    /// the one searched, pixel for pixel, and the first 1x pass (same scale, same score)
    /// would find what the search found: nothing. It is skipped then (a sixth of the work
    /// on a picture without faces: most frames of most clips).
    pub fn verify(&mut self, bgr: &mut [u8], w: u32, h: u32, hidden: &[[f32; 4]]) -> Result<Vec<[f32; 4]>, OrtError> {
        let mut known = hidden.to_vec();
        let mut found = Vec::new();
        for n in 0..VERIFY_ROUNDS {
            let mut round = Vec::new();
            // The 2x pass (four times the 1x pass's cost) once: it is for the small faces of
            // the picture itself; a face that stands out once its neighbours are blocks is
            // as large as they are.
            let passes: &[(f32, f32)] =
                if n == 0 { &[(VERIFY_SCALE, VERIFY_SCORE), (1.0, SEARCH_SCORE)] } else { &[(1.0, SEARCH_SCORE)] };
            for &(scale, score) in passes {
                if n == 0 && scale == 1.0 && known.is_empty() && round.is_empty() {
                    // Unchanged since the search, which found nothing.
                    continue;
                }
                let more = self.find(bgr, w, h, scale, score)?;
                // A face only 2x finds is small: at level 0 its blocks are about its own
                // size and a detector at 2x can still answer to them (seen on the crowd
                // clip); one level coarser costs nothing of what the picture shows.
                let base = u32::from(scale > 1.0);
                for b in &more {
                    let level = base + known.iter().filter(|k| falls_on(b, k)).count() as u32;
                    pixelate_coarser(bgr, w, h, *b, level);
                }
                round.extend(more);
            }
            // A face found again on a hidden region is now coarser; only a new one can have
            // uncovered another (a neighbour that stood out once it was gone).
            let new = round.iter().any(|b| !known.iter().any(|k| falls_on(b, k)));
            known.extend_from_slice(&round);
            found.extend(round);
            if !new {
                break;
            }
        }
        Ok(found)
    }

    /// Both passes: pixelates in `bgr` the faces found and the `known` regions (picture
    /// pixels); returns every region pixelated.
    pub fn hide(&mut self, bgr: &mut [u8], w: u32, h: u32, known: &[[f32; 4]]) -> Result<Vec<[f32; 4]>, OrtError> {
        let mut hidden = self.search(bgr, w, h)?;
        hidden.extend_from_slice(known);
        for b in &hidden {
            pixelate(bgr, w, h, *b);
        }
        let more = self.verify(bgr, w, h, &hidden)?;
        hidden.extend(more);
        Ok(hidden)
    }
}

/// Whether box `b`'s centre lies in region `k` (grown as [`pixelate`] grows it).
fn falls_on(b: &[f32; 4], k: &[f32; 4]) -> bool {
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let (gw, gh) = ((k[2] - k[0]) * 0.25, (k[3] - k[1]) * 0.25);
    cx >= k[0] - gw && cx <= k[2] + gw && cy >= k[1] - gh && cy <= k[3] + gh
}

/// The node's face searchers, shared by the threads that publish pictures: a caller takes
/// one for a picture and gives it back (sessions are made as needed, then reused).
pub struct Privacy {
    spec: Option<ModelSpec>,
    idle: Mutex<Vec<FaceSearch>>,
}

impl Default for Privacy {
    fn default() -> Self {
        Self::none()
    }
}

impl Privacy {
    /// With the first face model (family `yunet`) of the config; `None` without one.
    pub fn from_config(config: &Config) -> Self {
        let spec = face_model(config);
        if let Some(s) = &spec
            && !s.dynamic
        {
            tracing::warn!(
                model = %s.name,
                "the face model has a fixed input size: published pictures are searched at that size only; a dynamic file (yunet_s_dynamic.onnx) finds small faces"
            );
        }
        Self { spec, idle: Mutex::default() }
    }

    /// Without a face model: nothing is searched.
    pub fn none() -> Self {
        Self { spec: None, idle: Mutex::default() }
    }

    /// Whether pictures are searched (the config has a face model).
    pub fn enabled(&self) -> bool {
        self.spec.is_some()
    }

    /// Pixelates the faces of a packed BGR picture and the `known` regions ([`FaceSearch::hide`]).
    /// Without a face model only `known` is pixelated. An error of the model is returned
    /// (the caller must not publish the picture then).
    pub fn hide(&self, bgr: &mut [u8], w: u32, h: u32, known: &[[f32; 4]]) -> Result<Vec<[f32; 4]>, OrtError> {
        let Some(spec) = &self.spec else {
            for b in known {
                pixelate(bgr, w, h, *b);
            }
            return Ok(known.to_vec());
        };
        let taken = self.idle.locked().pop();
        let mut search = match taken {
            Some(s) => s,
            None => FaceSearch::new(spec)?,
        };
        let result = search.hide(bgr, w, h, known);
        self.idle.locked().push(search);
        result
    }
}

/// The dispatcher's face filter for residents' photos: `privacy` when it has a face model.
pub fn face_filter(privacy: &Arc<Privacy>) -> Option<Arc<dyn crate::dispatch::intake::FaceFilter>> {
    privacy.enabled().then(|| privacy.clone() as Arc<dyn crate::dispatch::intake::FaceFilter>)
}

impl crate::dispatch::intake::FaceFilter for Privacy {
    fn hide_faces(&self, bgr: &mut [u8], w: u32, h: u32) -> Result<usize, String> {
        self.hide(bgr, w, h, &[]).map(|faces| faces.len()).map_err(|e| e.to_string())
    }
}

/// The first face model of the config, as the publishing passes use it.
pub fn face_model(config: &Config) -> Option<ModelSpec> {
    config.models.values().find(|m| m.family == Family::Yunet).cloned()
}

/// Replaces a region (grown by 25% each side, so hair line and chin go too) with coarse
/// blocks: about four across the grown region (under three across the face), too few for a
/// face detector, let alone a person, to find a face (tested with YuNet). Same as
/// [`pixelate_coarser`] at level 0.
pub fn pixelate(rgb: &mut [u8], w: u32, h: u32, b: [f32; 4]) {
    pixelate_coarser(rgb, w, h, b, 0);
}

/// [`pixelate`] with blocks `2^level` times larger (level 2 and up: one or two blocks
/// across the region), for a face found again where one was already hidden.
///
/// Blocks are squares of a power-of-two side on a lattice anchored at the picture's
/// origin, and the region grows out to whole blocks. So pixelating twice never makes
/// finer detail: a block of one pass is either inside a block of the other (already one
/// colour) or a union of them (averaged to one colour). Blocks of two sizes laid on
/// different grids would cut each other into slivers that rebuild a face (seen: a small
/// face found by the search and again by the verify pass came out detectable at 0.77).
pub fn pixelate_coarser(rgb: &mut [u8], w: u32, h: u32, b: [f32; 4], level: u32) {
    let (bw, bh) = (b[2] - b[0], b[3] - b[1]);
    let x0 = (b[0] - bw * 0.25).max(0.0) as u32;
    let y0 = (b[1] - bh * 0.25).max(0.0) as u32;
    let x1 = ((b[2] + bw * 0.25).max(0.0) as u32).min(w);
    let y1 = ((b[3] + bh * 0.25).max(0.0) as u32).min(h);
    if x1 <= x0 || y1 <= y0 {
        return;
    }
    let block = (x1 - x0).max(y1 - y0).div_ceil(4).max(4).next_power_of_two() << level.min(8);
    let (x0, y0) = (x0 / block * block, y0 / block * block);
    let (x1, y1) = (x1.div_ceil(block).saturating_mul(block).min(w), y1.div_ceil(block).saturating_mul(block).min(h));
    let mut by = y0;
    while by < y1 {
        let ey = (by + block).min(y1);
        let mut bx = x0;
        while bx < x1 {
            let ex = (bx + block).min(x1);
            let mut sum = [0u64; 3];
            let n = ((ex - bx) * (ey - by)) as u64;
            for y in by..ey {
                for x in bx..ex {
                    let i = ((y * w + x) * 3) as usize;
                    for c in 0..3 {
                        sum[c] += rgb[i + c] as u64;
                    }
                }
            }
            let avg = sum.map(|s| (s / n) as u8);
            for y in by..ey {
                for x in bx..ex {
                    let i = ((y * w + x) * 3) as usize;
                    rgb[i..i + 3].copy_from_slice(&avg);
                }
            }
            bx = ex;
        }
        by = ey;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_face_model_only_the_known_regions_are_hidden() {
        let p = Privacy::none();
        assert!(!p.enabled());
        let (w, h) = (32u32, 32u32);
        let mut bgr: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
        let before = bgr.clone();
        let hidden = p.hide(&mut bgr, w, h, &[[8.0, 8.0, 16.0, 16.0]]).unwrap();
        assert_eq!(hidden, vec![[8.0, 8.0, 16.0, 16.0]]);
        assert_ne!(bgr, before, "the known region is pixelated");
        assert_eq!(bgr[..3], before[..3], "the rest is not");
    }

    #[test]
    fn pixelation_flattens_the_region_only() {
        let (w, h) = (40u32, 20u32);
        let mut rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let before = rgb.clone();
        pixelate(&mut rgb, w, h, [10.0, 5.0, 20.0, 15.0]);
        let px = |rgb: &[u8], x: u32, y: u32| rgb[((y * w + x) * 3) as usize..((y * w + x) * 3 + 3) as usize].to_vec();
        // The region grows to x 7..22, y 2..17, then out to whole 4-pixel blocks of the
        // picture's lattice: x 4..24, y 0..20. Pixels of a block are equal.
        assert_eq!(px(&rgb, 4, 0), px(&rgb, 7, 3));
        assert_eq!(px(&rgb, 8, 4), px(&rgb, 11, 7));
        assert_ne!(px(&rgb, 7, 3), px(&rgb, 8, 3), "two blocks");
        // Outside it nothing changed.
        assert_eq!(px(&rgb, 3, 0), px(&before, 3, 0));
        assert_eq!(px(&rgb, 24, 10), px(&before, 24, 10));
        assert_eq!(px(&rgb, 30, 19), px(&before, 30, 19));
    }

    #[test]
    fn pixelating_again_never_brings_detail_back() {
        // Two overlapping faces of different sizes, pixelated in either order and again:
        // no pass cuts another's blocks into finer pieces.
        let (w, h) = (64u32, 48u32);
        let picture: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let (a, b) = ([10.0, 6.0, 26.0, 26.0], [17.0, 13.0, 45.0, 41.0]);
        let mut once = picture.clone();
        pixelate(&mut once, w, h, a);
        pixelate(&mut once, w, h, b);
        let mut again = once.clone();
        pixelate(&mut again, w, h, a);
        pixelate(&mut again, w, h, b);
        pixelate_coarser(&mut again, w, h, a, 0);
        assert_eq!(again, once, "pixelating the same regions again changes nothing");
        // Coarser on top of finer: every pixel of a coarse block has one colour.
        pixelate_coarser(&mut again, w, h, a, 2);
        let block = 32;
        for y in 0..block.min(h) {
            for x in 0..block {
                let i = ((y * w + x) * 3) as usize;
                assert_eq!(again[i..i + 3], again[..3], "pixel ({x}, {y}) of the first 32-pixel block");
            }
        }
    }
}
