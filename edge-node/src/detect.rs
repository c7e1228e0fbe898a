//! `edge-node detect`: the detection code path of the daemon, on image files and clips,
//! for operators checking a model, a threshold or a camera's settings.
//!
//! Images are read with the `image` crate; clips are decoded with GStreamer and sampled at
//! the camera's `detect_fps` (or `--fps`). Boxes are in the file's own pixels. With
//! `--annotate DIR`, a PNG per image or sampled frame shows faces (blue) and objects
//! (green, red for people).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use serde_json::{Value, json};

use crate::config::Config;
use crate::inference::{Detector, ImageView, Job};
use crate::types::Detections;

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("unknown camera \"{0}\" (not in the config)")]
    UnknownCamera(String),
    #[error("{path}: {reason}")]
    Input { path: PathBuf, reason: String },
    #[error(transparent)]
    Inference(#[from] crate::inference::OrtError),
    #[error("{0}")]
    Output(String),
}

pub struct DetectOptions {
    pub camera: Option<String>,
    pub fps: Option<f64>,
    pub annotate: Option<PathBuf>,
}

/// One analysed picture: its label (`file` or `file@12.000s`), size and detections.
pub struct Result1 {
    pub key: String,
    pub width: u32,
    pub height: u32,
    pub detections: Detections,
}

/// Runs detection on every file; returns results in order.
pub fn run(config: &Config, files: &[PathBuf], opts: &DetectOptions) -> Result<Vec<Result1>, DetectError> {
    let (models, fps) = match &opts.camera {
        Some(id) => {
            let cam =
                config.cameras.iter().find(|c| &c.id == id).ok_or_else(|| DetectError::UnknownCamera(id.clone()))?;
            (cam.models.clone(), cam.detect_fps)
        }
        None => (config.models.keys().cloned().collect::<Vec<_>>(), 1.0),
    };
    let fps = opts.fps.unwrap_or(fps);
    let mut detector = Detector::on(&config.models, config.inference.threads_per_worker, config.inference.provider)?;
    let mut results = Vec::new();
    for path in files {
        let name =
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string());
        let frames = if is_image(path) { vec![(name, read_image(path)?)] } else { read_clip(path, fps, &name)? };
        for (key, (w, h, bgr)) in frames {
            let job = Job { image: ImageView::packed(&bgr, w, h), source: (w, h), roi: None };
            let detections = detector.detect(&models, &[job])?.pop().unwrap_or_default();
            if let Some(dir) = &opts.annotate {
                annotate(dir, &key, w, h, &bgr, &detections)?;
            }
            results.push(Result1 { key, width: w, height: h, detections });
        }
    }
    Ok(results)
}

fn is_image(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
        Some("png" | "jpg" | "jpeg" | "bmp")
    )
}

type Picture = (u32, u32, Vec<u8>);

fn read_image(path: &Path) -> Result<Picture, DetectError> {
    let img = image::open(path)
        .map_err(|e| DetectError::Input { path: path.to_path_buf(), reason: e.to_string() })?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let mut bgr = img.into_raw();
    for px in bgr.chunks_exact_mut(3) {
        px.swap(0, 2);
    }
    Ok((w, h, bgr))
}

/// Decodes a clip to BGR and keeps one frame per 1/fps seconds of stream time.
fn read_clip(path: &Path, fps: f64, name: &str) -> Result<Vec<(String, Picture)>, DetectError> {
    let fail = |reason: String| DetectError::Input { path: path.to_path_buf(), reason };
    crate::init_gstreamer().map_err(|e| fail(e.to_string()))?;
    if !path.is_file() {
        return Err(fail("no such file".into()));
    }
    let launch = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format=BGR ! appsink name=sink sync=false max-buffers=4",
        path.display().to_string().replace('"', "\\\"")
    );
    let pipeline = gst::parse::launch(&launch).map_err(|e| fail(e.to_string()))?.downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).map_err(|e| fail(e.to_string()))?;
    let bus = pipeline.bus().unwrap();
    let step = (1e9 / fps.max(0.001)) as u64;
    let mut next_due = 0u64;
    let mut out = Vec::new();
    let mut last_progress = std::time::Instant::now();
    let error = loop {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            last_progress = std::time::Instant::now();
            let pts = sample.buffer().and_then(|b| b.pts()).map_or(0, |t| t.nseconds());
            if pts + step / 10 < next_due {
                continue;
            }
            next_due = pts + step;
            let (Some(caps), Some(buffer)) = (sample.caps(), sample.buffer()) else { continue };
            let s = caps.structure(0).unwrap();
            let (w, h) = (s.get::<i32>("width").unwrap_or(0) as u32, s.get::<i32>("height").unwrap_or(0) as u32);
            let map = buffer.map_readable().map_err(|e| fail(e.to_string()))?;
            let (row, stride) = (w as usize * 3, (w as usize * 3 + 3) & !3);
            let mut bgr = Vec::with_capacity(row * h as usize);
            for y in 0..h as usize {
                bgr.extend_from_slice(&map[y * stride..y * stride + row]);
            }
            out.push((format!("{name}@{:.3}s", pts as f64 / 1e9), (w, h, bgr)));
        } else if sink.is_eos() {
            break None;
        } else if last_progress.elapsed() > std::time::Duration::from_secs(20) {
            break Some("no video frames for 20 s (unsupported or broken file)".to_string());
        }
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
            && let gst::MessageView::Error(e) = msg.view()
        {
            break Some(e.error().to_string());
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    match error {
        Some(e) => Err(fail(e)),
        None => Ok(out),
    }
}

fn annotate(dir: &Path, key: &str, w: u32, h: u32, bgr: &[u8], d: &Detections) -> Result<(), DetectError> {
    std::fs::create_dir_all(dir).map_err(|e| DetectError::Output(format!("{}: {e}", dir.display())))?;
    let mut rgb: Vec<u8> = bgr.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
    for f in &d.faces {
        draw_box(&mut rgb, w, h, f.bbox, [40, 120, 255]);
    }
    for o in &d.objects {
        draw_box(&mut rgb, w, h, o.bbox, if o.class_id == 0 { [255, 40, 40] } else { [40, 220, 40] });
    }
    let file = dir.join(format!("{}.png", key.replace(['/', '@'], "_")));
    image::save_buffer(&file, &rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| DetectError::Output(format!("{}: {e}", file.display())))
}

/// A 2-pixel rectangle outline.
pub fn draw_box(rgb: &mut [u8], w: u32, h: u32, b: [f32; 4], color: [u8; 3]) {
    let (x0, y0) = (b[0].max(0.0) as u32, b[1].max(0.0) as u32);
    let (x1, y1) = ((b[2] as u32).min(w.saturating_sub(1)), (b[3] as u32).min(h.saturating_sub(1)));
    let mut put = |x: u32, y: u32| {
        let i = (y * w + x) as usize * 3;
        rgb[i..i + 3].copy_from_slice(&color);
    };
    for t in 0..2 {
        for x in x0..=x1 {
            put(x, (y0 + t).min(h - 1));
            put(x, y1.saturating_sub(t));
        }
        for y in y0..=y1 {
            put((x0 + t).min(w - 1), y);
            put(x1.saturating_sub(t), y);
        }
    }
}

/// The documented JSON form: `{"<file>": {"faces": [...], "objects": [...]}}`; faces as
/// `[x, y, w, h]`, objects as `[x1, y1, x2, y2]`.
pub fn to_json(results: &[Result1]) -> Value {
    let round = |v: f32| (v * 10.0).round() / 10.0;
    let mut map = serde_json::Map::new();
    for r in results {
        let faces: Vec<Value> = r
            .detections
            .faces
            .iter()
            .map(|f| {
                json!({
                    "box": [round(f.bbox[0]), round(f.bbox[1]), round(f.bbox[2] - f.bbox[0]), round(f.bbox[3] - f.bbox[1])],
                    "score": (f.score * 1000.0).round() / 1000.0,
                    "landmarks": f.landmarks.iter().map(|[x, y]| json!([round(*x), round(*y)])).collect::<Vec<_>>(),
                })
            })
            .collect();
        let objects: Vec<Value> = r
            .detections
            .objects
            .iter()
            .map(|o| {
                json!({
                    "box": o.bbox.map(round),
                    "score": (o.score * 1000.0).round() / 1000.0,
                    "class_id": o.class_id,
                    "label": o.label.as_ref(),
                })
            })
            .collect();
        map.insert(r.key.clone(), json!({"faces": faces, "objects": objects}));
    }
    Value::Object(map)
}

/// One line per picture: counts per class and each box.
pub fn to_text(results: &[Result1]) -> String {
    let mut out = String::new();
    for r in results {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for o in &r.detections.objects {
            *counts.entry(o.label.as_ref()).or_default() += 1;
        }
        let summary: Vec<String> = counts.iter().map(|(l, n)| format!("{n} {l}")).collect();
        out += &format!(
            "{} ({}x{}): {} face(s); {}\n",
            r.key,
            r.width,
            r.height,
            r.detections.faces.len(),
            if summary.is_empty() { "no objects".into() } else { summary.join(", ") }
        );
        for f in &r.detections.faces {
            out += &format!(
                "  face   {:.2}  [{:.0}, {:.0}, {:.0}, {:.0}]\n",
                f.score, f.bbox[0], f.bbox[1], f.bbox[2], f.bbox[3]
            );
        }
        for o in &r.detections.objects {
            out += &format!(
                "  {:<6} {:.2}  [{:.0}, {:.0}, {:.0}, {:.0}]\n",
                o.label, o.score, o.bbox[0], o.bbox[1], o.bbox[2], o.bbox[3]
            );
        }
    }
    out
}
