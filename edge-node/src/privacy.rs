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
//! never cut each other's blocks into finer detail (see [`crate::alert::pixelate_coarser`]).
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
}

impl FaceSearch {
    pub fn new(spec: &ModelSpec) -> Result<Self, OrtError> {
        Ok(Self { model: Model::load(spec, 1)? })
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
    /// ([`crate::alert::pixelate_coarser`]);
    /// the 1x pass again while a round finds a face off every hidden region, at most
    /// [`VERIFY_ROUNDS`] rounds in all. Returns the boxes found.
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
                let more = self.find(bgr, w, h, scale, score)?;
                // A face only 2x finds is small: at level 0 its blocks are about its own
                // size and a detector at 2x can still answer to them (seen on the crowd
                // clip); one level coarser costs nothing of what the picture shows.
                let base = u32::from(scale > 1.0);
                for b in &more {
                    let level = base + known.iter().filter(|k| falls_on(b, k)).count() as u32;
                    crate::alert::pixelate_coarser(bgr, w, h, *b, level);
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
            crate::alert::pixelate(bgr, w, h, *b);
        }
        let more = self.verify(bgr, w, h, &hidden)?;
        hidden.extend(more);
        Ok(hidden)
    }
}

/// Whether box `b`'s centre lies in region `k` (grown as [`crate::alert::pixelate`] grows it).
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
                crate::alert::pixelate(bgr, w, h, *b);
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
}
