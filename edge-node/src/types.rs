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
    /// Presentation time of the picture in its stream (RTP-derived), if known.
    pub pts: Option<Duration>,
    /// Stream time: the PTS mapped onto the node's monotonic clock (`source::StreamClock`),
    /// strictly increasing per camera. Tracker, rules and the motion gate run on it; `wall`
    /// is only for what people read.
    pub stream: Duration,
    /// When the frame left the decoder.
    pub wall: SystemTime,
    pub width: u32,
    pub height: u32,
    /// The camera's own resolution, to map detections back to camera pixels.
    pub source_width: u32,
    pub source_height: u32,
    pub keyframe: bool,
    /// Where to detect, in frame pixels `[x0, y0, x1, y1]`: the part that moved and the
    /// live tracks (set by the motion gate when that is a small part of the frame);
    /// `None`: the whole frame.
    pub roi: Option<[u32; 4]>,
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

/// An object found by an object model, in the camera's own pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    pub score: f32,
    pub class_id: usize,
    pub label: Arc<str>,
}

/// A face found by a face model, in the camera's own pixels. Detected, never identified.
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    pub score: f32,
    /// Right eye, left eye, nose tip, right and left mouth corners: `[x, y]` each.
    pub landmarks: [[f32; 2]; 5],
}

/// What detection found in one frame.
#[derive(Debug, Clone, Default)]
pub struct Detections {
    pub faces: Vec<Face>,
    pub objects: Vec<Object>,
}
