//! Messages that cross stages.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A decoded picture handed from a camera source to detection: packed BGR, 8 bits per
/// channel, `width * 3` bytes per row, already scaled to fit the camera's detection size.
#[derive(Clone)]
pub struct Frame {
    pub camera: Arc<str>,
    /// Sequence number of this frame among those the camera handed on.
    pub seq: u64,
    /// Stream time of the picture (RTP-derived), if known.
    pub pts: Option<Duration>,
    /// When the frame left the decoder.
    pub wall: SystemTime,
    pub width: u32,
    pub height: u32,
    /// The camera's own resolution, to map detections back to camera pixels.
    pub source_width: u32,
    pub source_height: u32,
    pub keyframe: bool,
    pub data: Arc<[u8]>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("camera", &self.camera)
            .field("seq", &self.seq)
            .field("pts", &self.pts)
            .field("size", &(self.width, self.height))
            .field("source_size", &(self.source_width, self.source_height))
            .field("keyframe", &self.keyframe)
            .finish()
    }
}
