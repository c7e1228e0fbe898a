//! What differs between model families: padding, and how raw outputs become boxes.
//! A new family is one module implementing [`FamilyCodec`] plus one arm in [`codec_for`].

use super::nms::Candidate;
use super::{yolox, yunet};
use crate::config::Family;

/// One output tensor of a run: name, shape and data (all images of the batch).
pub struct Output<'a> {
    pub name: &'a str,
    pub shape: &'a [i64],
    pub data: &'a [f32],
}

/// A decoded box in model-input pixels, before NMS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawDetection {
    pub candidate: Candidate,
    pub landmarks: Option<[[f32; 2]; 5]>,
}

pub trait FamilyCodec: Send + Sync {
    /// Value of the padding around the letterboxed image.
    fn pad(&self) -> f32;
    /// Boxes of image `batch_index` scoring at least `threshold`; `classes` (if not empty)
    /// limits which class ids count. `input` is (width, height) of the model input.
    fn decode(
        &self,
        outputs: &[Output],
        batch_index: usize,
        input: (u32, u32),
        threshold: f32,
        classes: &[usize],
    ) -> Vec<RawDetection>;
}

pub fn codec_for(family: Family) -> &'static dyn FamilyCodec {
    match family {
        Family::Yolox => &yolox::Yolox,
        Family::Yunet => &yunet::Yunet,
    }
}

/// The strides both families use, coarsest last.
pub const STRIDES: [u32; 3] = [8, 16, 32];
