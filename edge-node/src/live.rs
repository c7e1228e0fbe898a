//! live: the newest detected frame of each camera, for the control room "pulling up" a
//! camera (`GET /cameras/<id>/snapshot.jpg`, the MQTT `snapshot` command, the status page's
//! thumbnails).
//!
//! Input: every frame the inference pool finished, with its detections. Output: on request,
//! a JPEG of the newest one with people's faces pixelated: every face the node's face model
//! finds on the whole frame ([`crate::privacy`]), the faces the camera's detection found, and
//! on a camera that does not run the face model, the head of every person box. Nobody's
//! face leaves the node raw by this path, whatever the camera's `privacy.faces` (that
//! setting is for alert evidence). Keeping a frame costs a reference to its pixels, which
//! the pool already holds; the face search runs only when a picture of a frame is asked
//! for, once per frame (its result is kept for the next request and other widths).

use crate::Locked;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::{Config, Family};
use crate::privacy::Privacy;
use crate::types::{Detections, Frame};

/// The newest detected frame per camera.
#[derive(Default)]
pub struct LiveFrames {
    frames: Mutex<HashMap<Arc<str>, Latest>>,
    /// Cameras of this node, and whether each runs a face model.
    cameras: Mutex<HashMap<String, bool>>,
    /// The whole-frame face search every picture goes through.
    privacy: Arc<Privacy>,
}

struct Latest {
    frame: Frame,
    /// Regions to pixelate, in camera pixels.
    hide: Vec<[f32; 4]>,
    /// The frame's pixels once made safe (searched and pixelated), for the next request.
    safe: Option<Arc<Vec<u8>>>,
}

/// A live snapshot.
pub struct Snapshot {
    pub jpeg: Vec<u8>,
    /// When its frame was captured.
    pub wall: SystemTime,
}

#[derive(Debug, PartialEq, Eq)]
pub enum LiveError {
    /// Not a camera this node runs.
    Unknown,
    /// A camera of this node with no detected frame yet (connecting, or offline).
    NoFrame,
    /// The frame could not be made safe (the face search failed) or encoded.
    Encode,
}

impl std::fmt::Display for LiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unknown => "not a camera of this node",
            Self::NoFrame => "no frame yet: the camera is connecting or offline",
            Self::Encode => "the frame could not be searched for faces or encoded",
        })
    }
}

/// The part of a person box a face is in: the top fifth, a little wider than the box's
/// middle (heads are narrower than shoulders, but lean).
pub fn head_of(b: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    [b[0] + w * 0.1, b[1], b[2] - w * 0.1, b[1] + h * 0.22]
}

impl LiveFrames {
    /// Pictures are searched for faces with `privacy` before they leave.
    pub fn new(privacy: Arc<Privacy>) -> Self {
        Self { privacy, ..Self::default() }
    }

    /// Follows the config: the cameras this node runs, and which of them run a face model.
    pub fn configure(&self, config: &Config) {
        let faces: Vec<&str> =
            config.models.iter().filter(|(_, m)| m.family == Family::Yunet).map(|(name, _)| name.as_str()).collect();
        let cameras: HashMap<String, bool> = config
            .cameras
            .iter()
            .filter(|c| c.here && c.enabled)
            .map(|c| (c.id.clone(), c.models.iter().any(|m| faces.contains(&m.as_str()))))
            .collect();
        self.frames.locked().retain(|id, _| cameras.contains_key(&**id));
        *self.cameras.locked() = cameras;
    }

    /// Keeps `frame` as the camera's newest, with what must be hidden in it.
    pub fn update(&self, frame: &Frame, d: &Detections) {
        let Some(runs_faces) = self.cameras.locked().get(&*frame.camera).copied() else { return };
        let mut hide: Vec<[f32; 4]> = d.faces.iter().map(|f| f.bbox).collect();
        if !runs_faces {
            hide.extend(d.objects.iter().filter(|o| &*o.label == "person").map(|o| head_of(o.bbox)));
        }
        let mut frames = self.frames.locked();
        // Frames of a camera come in capture order, one at a time; keep the newest anyway.
        if frames.get(&frame.camera).is_some_and(|l| l.frame.wall > frame.wall) {
            return;
        }
        frames.insert(frame.camera.clone(), Latest { frame: frame.clone(), hide, safe: None });
    }

    /// Whether the camera runs a face model (`None`: not a camera of this node).
    pub fn runs_faces(&self, camera: &str) -> Option<bool> {
        self.cameras.locked().get(camera).copied()
    }

    /// When the camera's newest frame was captured.
    pub fn at(&self, camera: &str) -> Option<SystemTime> {
        self.frames.locked().get(camera).map(|l| l.frame.wall)
    }

    /// The newest frame as a JPEG at most `max_width` wide, faces pixelated.
    pub fn snapshot(&self, camera: &str, max_width: u32) -> Result<Snapshot, LiveError> {
        if !self.cameras.locked().contains_key(camera) {
            return Err(LiveError::Unknown);
        }
        let (frame, hide, safe) = {
            let frames = self.frames.locked();
            let l = frames.get(camera).ok_or(LiveError::NoFrame)?;
            (l.frame.clone(), l.hide.clone(), l.safe.clone())
        };
        // Searched and encoded outside the lock: the pool's workers never wait on them.
        // A picture smaller than the frame (a thumbnail) with no full-size search at hand is
        // searched at its own size: what it can show is what is searched, at a fraction of
        // the cost (a face too small to find at twice the thumbnail's size is a few pixels).
        if safe.is_none() && max_width < frame.width {
            let small = downscaled(&frame, max_width).ok_or(LiveError::Encode)?;
            let safe = crate::alert::safe_pixels(&small, &hide, Some(&self.privacy)).ok_or(LiveError::Encode)?;
            let jpeg = crate::alert::jpeg_of(&safe, &small, None, max_width).ok_or(LiveError::Encode)?;
            return Ok(Snapshot { jpeg, wall: frame.wall });
        }
        let safe = match safe {
            Some(s) => s,
            None => {
                let s =
                    Arc::new(crate::alert::safe_pixels(&frame, &hide, Some(&self.privacy)).ok_or(LiveError::Encode)?);
                if let Some(l) = self.frames.locked().get_mut(camera).filter(|l| l.frame.seq == frame.seq) {
                    l.safe = Some(s.clone());
                }
                s
            }
        };
        let jpeg = crate::alert::jpeg_of(&safe, &frame, None, max_width).ok_or(LiveError::Encode)?;
        Ok(Snapshot { jpeg, wall: frame.wall })
    }
}

/// The frame scaled to `width` (aspect kept), boxes in camera pixels still valid for it.
fn downscaled(frame: &Frame, width: u32) -> Option<Frame> {
    let height = ((frame.height as f32 * width as f32 / frame.width as f32).round() as u32).max(1);
    // Channel order does not matter to a resize: BGR goes through as if it were RGB.
    let img = image::RgbImage::from_raw(frame.width, frame.height, frame.data.to_vec())?;
    let small = image::imageops::resize(&img, width, height, image::imageops::FilterType::Triangle);
    Some(Frame {
        width,
        height,
        source_width: frame.source_width.max(frame.width),
        source_height: frame.source_height.max(frame.height),
        data: Arc::from(small.into_raw()),
        ..frame.clone()
    })
}

/// `GET /cameras/<id>/snapshot.jpg[?width=N]`: the camera's newest detected frame, faces
/// pixelated, at most `width` (64–1920, default 640) pixels wide.
pub fn routes(live: Arc<LiveFrames>) -> axum::Router {
    use crate::http::{Get, Reply, get};
    axum::Router::new().route(
        "/cameras/:camera/snapshot.jpg",
        get(move |g: &Get| {
            let camera = g.param("camera");
            let width = g.query.split('&').find_map(|kv| kv.strip_prefix("width=")).map(str::parse::<u32>);
            let width = match width {
                None => 640,
                Some(Ok(w)) if (64..=1920).contains(&w) => w,
                Some(_) => return Reply::new(400, "text/plain", "width must be a number of pixels, 64 to 1920\n"),
            };
            match live.snapshot(camera, width) {
                Ok(s) => Reply::new(200, "image/jpeg", s.jpeg),
                Err(e @ LiveError::Unknown) => Reply::new(404, "text/plain", format!("camera {camera}: {e}\n")),
                Err(e) => Reply::new(503, "text/plain", format!("camera {camera}: {e}\n")),
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Face, Object};

    fn frame(camera: &str, secs: u64) -> Frame {
        let (w, h) = (64u32, 48u32);
        Frame {
            camera: Arc::from(camera),
            seq: secs,
            pts: None,
            stream: std::time::Duration::from_secs(secs),
            wall: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs),
            width: w,
            height: h,
            source_width: w * 2,
            source_height: h * 2,
            keyframe: true,
            roi: None,
            // A fine checkerboard: any pixelation flattens it.
            data: Arc::from(
                (0..w * h)
                    .flat_map(|i| if (i % w + i / w) % 2 == 0 { [255u8; 3] } else { [0u8; 3] })
                    .collect::<Vec<u8>>(),
            ),
        }
    }

    fn person(b: [f32; 4]) -> Object {
        Object { bbox: b, score: 0.9, class_id: 0, label: Arc::from("person") }
    }

    fn face(b: [f32; 4]) -> Face {
        Face { bbox: b, score: 0.9, landmarks: [[0.0; 2]; 5] }
    }

    /// Whether the region (in frame pixels) of a decoded JPEG is flat (pixelated) or keeps
    /// the checkerboard.
    fn flat(jpeg: &[u8], r: [u32; 4]) -> bool {
        let img = image::load_from_memory(jpeg).unwrap().to_luma8();
        let px: Vec<i32> = (r[1]..r[3])
            .flat_map(|y| (r[0]..r[2]).map(move |x| (x, y)))
            .map(|(x, y)| img.get_pixel(x, y)[0] as i32)
            .collect();
        let mean = px.iter().sum::<i32>() / px.len() as i32;
        px.iter().all(|p| (p - mean).abs() < 60)
    }

    fn config(models: &str) -> Config {
        let text = format!(
            "version = 1\n[node]\nid = \"n\"\n[storage]\nmodels_dir = \"{}\"\n[models.objects]\nfile = \"yolox_nano.onnx\"\n[models.faces]\nfile = \"yunet_s_dynamic.onnx\"\n[[cameras]]\nid = \"a\"\nurl = \"rtsp://h/a\"\nmodels = {models}\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../models")
        );
        crate::config::parse(&text, std::path::Path::new(".")).unwrap()
    }

    #[test]
    fn faces_are_pixelated_and_heads_too_where_no_face_model_runs() {
        let live = LiveFrames::default();
        live.configure(&config(r#"["objects", "faces"]"#));
        assert_eq!(live.snapshot("a", 640).err(), Some(LiveError::NoFrame));
        assert_eq!(live.snapshot("b", 640).err(), Some(LiveError::Unknown));
        // Camera pixels are twice the frame's: a face at (20..40, 20..40) is (10..20, 10..20) here.
        let d = Detections {
            faces: vec![face([20.0, 20.0, 40.0, 40.0])],
            objects: vec![person([60.0, 10.0, 120.0, 90.0])],
        };
        live.update(&frame("a", 5), &d);
        let s = live.snapshot("a", 640).unwrap();
        assert_eq!(s.wall, SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(5));
        assert!(flat(&s.jpeg, [11, 11, 19, 19]), "the face is pixelated");
        assert!(!flat(&s.jpeg, [33, 6, 57, 9]), "with a face model, a person's head without a face stays");
        // An older frame does not replace a newer one.
        live.update(&frame("a", 3), &Detections::default());
        assert_eq!(live.at("a"), Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(5)));

        live.configure(&config(r#"["objects"]"#));
        live.update(&frame("a", 6), &Detections { faces: vec![], objects: vec![person([60.0, 10.0, 120.0, 90.0])] });
        let s = live.snapshot("a", 640).unwrap();
        assert!(flat(&s.jpeg, [34, 6, 56, 13]), "without a face model, the person's head is pixelated");
        assert!(!flat(&s.jpeg, [34, 30, 56, 44]), "the rest of the person is not");
        assert!(!flat(&s.jpeg, [2, 2, 12, 40]), "nor the background");
        // Thumbnails: at most the width asked for.
        let small = image::load_from_memory(&live.snapshot("a", 32).unwrap().jpeg).unwrap();
        assert_eq!((small.width(), small.height()), (32, 24));
        // A camera removed by a reload has nothing to show.
        live.configure(&crate::config::parse(
            &format!(
                "version = 1\n[node]\nid = \"n\"\n[storage]\nmodels_dir = \"{}\"\n[models.objects]\nfile = \"yolox_nano.onnx\"\n",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../models")
            ),
            std::path::Path::new("."),
        )
        .unwrap());
        assert_eq!(live.snapshot("a", 640).err(), Some(LiveError::Unknown));
    }
}
