//! Running the configured models on frames: one [`Model`] per configured model (session,
//! family codec, reusable input buffer), and a [`Detector`] that runs a camera's models on
//! a batch of frames and returns detections in each camera's own pixels.

use std::collections::BTreeMap;
use std::sync::Arc;

use ort::session::Session;
use ort::value::TensorRef;

use super::family::{FamilyCodec, Output, RawDetection, codec_for};
use super::nms::nms;
use super::preprocess::{ImageView, Letterbox, dynamic_input, fill_tensor};
use super::runtime::{OrtError, load_session_with};
use crate::config::{Family, ModelSpec, Provider};
use crate::types::{Detections, Face, Object};

/// One model, owned by one worker.
pub struct Model {
    pub spec: ModelSpec,
    session: Session,
    codec: &'static dyn FamilyCodec,
    input_name: String,
    output_names: Vec<String>,
    /// Whether the file accepts more than one image per run.
    pub batchable: bool,
    labels: Vec<Arc<str>>,
    buffer: Vec<f32>,
    /// Time split of the last [`Model::infer`]: the ONNX Runtime run, and decoding + NMS.
    pub last_run: std::time::Duration,
    pub last_post: std::time::Duration,
}

/// A frame to detect on: the picture, the camera's own resolution to map boxes to, and
/// optionally the part of the picture to look at (frame pixels, [`crate::types::Frame::roi`]).
#[derive(Clone, Copy)]
pub struct Job<'a> {
    pub image: ImageView<'a>,
    pub source: (u32, u32),
    pub roi: Option<[u32; 4]>,
}

impl<'a> Job<'a> {
    /// The whole picture.
    pub fn whole(image: ImageView<'a>, source: (u32, u32)) -> Self {
        Self { image, source, roi: None }
    }

    pub fn of_frame(f: &'a crate::types::Frame) -> Self {
        let (sw, sh) = (f.source_width.max(f.width), f.source_height.max(f.height));
        let roi = f.roi.filter(|r| r[2] <= f.width && r[3] <= f.height && r[2] > r[0] && r[3] > r[1]);
        Self { image: ImageView::packed(&f.data, f.width, f.height), source: (sw, sh), roi }
    }
}

impl Model {
    pub fn load(spec: &ModelSpec, threads: usize) -> Result<Self, OrtError> {
        Self::load_on(spec, threads, Provider::Cpu)
    }

    /// Loads the model on an execution provider (CPU when the library lacks it).
    pub fn load_on(spec: &ModelSpec, threads: usize, provider: Provider) -> Result<Self, OrtError> {
        let session = load_session_with(&spec.path, threads, provider)?;
        let input = &session.inputs()[0];
        let batchable = input.dtype().tensor_shape().is_some_and(|s| s.first() == Some(&-1));
        Ok(Self {
            input_name: input.name().to_string(),
            output_names: session.outputs().iter().map(|o| o.name().to_string()).collect(),
            batchable,
            codec: codec_for(spec.family),
            labels: spec.labels.iter().map(|l| Arc::from(l.as_str())).collect(),
            spec: spec.clone(),
            session,
            buffer: Vec::new(),
            last_run: Default::default(),
            last_post: Default::default(),
        })
    }

    /// The input size this model uses for a `w`×`h` frame.
    pub fn input_size(&self, w: u32, h: u32) -> (u32, u32) {
        if self.spec.dynamic { dynamic_input(w, h, self.spec.input_size) } else { self.spec.input_size }
    }

    /// What this model looks at for `job`: the picture (its region of interest, for a
    /// dynamic file: at the scale the whole frame would run at, so a crop costs its share of
    /// the pixels and finds what the whole frame finds there), where that starts in frame
    /// pixels, and the input size.
    pub fn view<'a>(&self, job: &Job<'a>) -> (ImageView<'a>, [u32; 2], (u32, u32)) {
        let img = job.image;
        let whole = self.input_size(img.width, img.height);
        match job.roi {
            Some([x0, y0, x1, y1]) if self.spec.dynamic => {
                let scale = Letterbox::fit(img.width, img.height, whole.0, whole.1).scale;
                let (cw, ch) = (x1 - x0, y1 - y0);
                let up = |v: u32, max: u32| (((v as f32 * scale).round().max(1.0) as u32).div_ceil(32) * 32).min(max);
                let crop = ImageView {
                    data: &img.data[y0 as usize * img.stride + x0 as usize * 3..],
                    width: cw,
                    height: ch,
                    stride: img.stride,
                };
                (crop, [x0, y0], (up(cw, whole.0), up(ch, whole.1)))
            }
            _ => (img, [0, 0], whole),
        }
    }

    /// Fills the input tensor for the images (all of one input size).
    pub fn prepare(&mut self, images: &[ImageView], input: (u32, u32)) -> Vec<Letterbox> {
        let plane = 3 * (input.0 * input.1) as usize;
        self.buffer.resize(plane * images.len(), 0.0);
        images
            .iter()
            .enumerate()
            .map(|(i, img)| {
                let lb = Letterbox::fit(img.width, img.height, input.0, input.1);
                fill_tensor(img, &lb, self.codec.pad(), &mut self.buffer[i * plane..(i + 1) * plane]);
                lb
            })
            .collect()
    }

    /// Runs the prepared tensor (`n` images) and decodes each image's boxes, after NMS, in
    /// model-input pixels.
    pub fn infer(&mut self, n: usize, input: (u32, u32)) -> Result<Vec<Vec<RawDetection>>, OrtError> {
        let fail = |e: ort::Error| OrtError::Model { path: self.spec.path.clone(), reason: e.to_string() };
        let shape = vec![n as i64, 3, input.1 as i64, input.0 as i64];
        let tensor = TensorRef::from_array_view((shape, &self.buffer[..])).map_err(fail)?;
        let started = std::time::Instant::now();
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(|e| OrtError::Model { path: self.spec.path.clone(), reason: e.to_string() })?;
        let ran = std::time::Instant::now();
        self.last_run = ran - started;
        let mut views = Vec::with_capacity(self.output_names.len());
        for name in &self.output_names {
            let (shape, data) = outputs[name.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(|e| OrtError::Model { path: self.spec.path.clone(), reason: e.to_string() })?;
            views.push(Output { name, shape, data });
        }
        let found = (0..n)
            .map(|b| {
                let raw = self.codec.decode(&views, b, input, self.spec.score_threshold, &self.spec.classes);
                let kept = nms(raw.iter().map(|r| r.candidate).collect(), self.spec.nms_iou);
                kept.into_iter()
                    .map(|c| RawDetection {
                        candidate: c,
                        landmarks: raw.iter().find(|r| r.candidate.index == c.index).and_then(|r| r.landmarks),
                    })
                    .collect()
            })
            .collect();
        self.last_post = ran.elapsed();
        Ok(found)
    }

    /// Detects on frames that share one input size ([`Model::view`]); boxes in each job's
    /// source pixels.
    pub fn detect(&mut self, jobs: &[Job], out: &mut [Detections]) -> Result<(), OrtError> {
        let Some(first) = jobs.first() else { return Ok(()) };
        let input = self.view(first).2;
        let chunk = if self.batchable { jobs.len() } else { 1 };
        for (ci, group) in jobs.chunks(chunk).enumerate() {
            let views: Vec<(ImageView, [u32; 2], (u32, u32))> = group.iter().map(|j| self.view(j)).collect();
            let images: Vec<ImageView> = views.iter().map(|v| v.0).collect();
            let boxes = self.prepare(&images, input);
            let found = self.infer(group.len(), input)?;
            for (k, (job, dets)) in group.iter().zip(found).enumerate() {
                let lb = boxes[k];
                let (view, [ox, oy], _) = views[k];
                let (fw, fh) = (job.image.width, job.image.height);
                let (sx, sy) = (job.source.0 as f32 / fw as f32, job.source.1 as f32 / fh as f32);
                let (ox, oy) = (ox as f32, oy as f32);
                let to_source = |b: [f32; 4]| {
                    let f = lb.to_frame(b, view.width, view.height);
                    [(f[0] + ox) * sx, (f[1] + oy) * sy, (f[2] + ox) * sx, (f[3] + oy) * sy]
                };
                let target = &mut out[ci * chunk + k];
                for d in dets {
                    let c = d.candidate;
                    match self.spec.family {
                        Family::Yunet => target.faces.push(Face {
                            bbox: to_source(c.bbox),
                            score: c.score,
                            landmarks: d
                                .landmarks
                                .unwrap_or_default()
                                .map(|[x, y]| [(x / lb.scale + ox) * sx, (y / lb.scale + oy) * sy]),
                        }),
                        Family::Yolox => target.objects.push(Object {
                            bbox: to_source(c.bbox),
                            score: c.score,
                            class_id: c.class,
                            label: self
                                .labels
                                .get(c.class)
                                .cloned()
                                .unwrap_or_else(|| Arc::from(format!("class{}", c.class))),
                        }),
                    }
                }
            }
        }
        Ok(())
    }
}

/// Every configured model, for one worker thread.
pub struct Detector {
    pub models: BTreeMap<String, Model>,
}

impl Detector {
    pub fn new(specs: &BTreeMap<String, ModelSpec>, threads: usize) -> Result<Self, OrtError> {
        Self::on(specs, threads, Provider::Cpu)
    }

    /// Every model on an execution provider (CPU when the library lacks it).
    pub fn on(specs: &BTreeMap<String, ModelSpec>, threads: usize, provider: Provider) -> Result<Self, OrtError> {
        let models = specs
            .iter()
            .map(|(name, spec)| Ok((name.clone(), Model::load_on(spec, threads, provider)?)))
            .collect::<Result<_, OrtError>>()?;
        Ok(Self { models })
    }

    /// Runs `models` on every job; frames with equal input sizes share a batch where the
    /// model allows it. Object models run first; a face model then runs only where people
    /// are (see [`Detector::faces_on_people`]) when an object model of the same list finds
    /// people, else on the whole frame.
    pub fn detect(&mut self, models: &[String], jobs: &[Job]) -> Result<Vec<Detections>, OrtError> {
        let mut out = vec![Detections::default(); jobs.len()];
        let family = |d: &Self, name: &String| d.models.get(name).map(|m| m.spec.family);
        let mut ordered: Vec<&String> = models.iter().collect();
        ordered.sort_by_key(|n| family(self, n) != Some(Family::Yolox));
        let people = models
            .iter()
            .any(|n| self.models.get(n).is_some_and(|m| m.spec.family == Family::Yolox && m.finds_people()));
        for name in ordered {
            let Some(model) = self.models.get_mut(name) else { continue };
            if people && model.spec.family == Family::Yunet {
                for (job, found) in jobs.iter().zip(out.iter_mut()) {
                    let faces = faces_on_people(model, job, &found.objects)?;
                    found.faces.extend(faces);
                }
                continue;
            }
            // Group jobs by input size, keeping their positions.
            let mut groups: BTreeMap<(u32, u32), Vec<usize>> = BTreeMap::new();
            for (i, j) in jobs.iter().enumerate() {
                groups.entry(model.view(j).2).or_default().push(i);
            }
            for idx in groups.values() {
                let group: Vec<Job> = idx.iter().map(|&i| jobs[i]).collect();
                let mut found = vec![Detections::default(); group.len()];
                model.detect(&group, &mut found)?;
                for (&i, d) in idx.iter().zip(found) {
                    out[i].faces.extend(d.faces);
                    out[i].objects.extend(d.objects);
                }
            }
        }
        Ok(out)
    }
}

impl Model {
    /// Whether this object model reports people.
    fn finds_people(&self) -> bool {
        let person = self.labels.iter().position(|l| &**l == "person");
        person.is_some_and(|p| self.spec.classes.is_empty() || self.spec.classes.contains(&p))
    }
}

/// Where faces can be, in frame pixels: the upper part of each person box with a margin,
/// overlapping regions merged.
pub fn face_regions(people: &[[f32; 4]], w: u32, h: u32) -> Vec<[u32; 4]> {
    let mut regions: Vec<[f32; 4]> = people
        .iter()
        .map(|b| {
            let (bw, bh) = (b[2] - b[0], b[3] - b[1]);
            let m = 0.15 * bw.max(bh * 0.4);
            [b[0] - m, b[1] - m, b[2] + m, b[1] + 0.6 * bh + m]
        })
        .collect();
    // Merge until no two overlap.
    let mut merged = true;
    while merged {
        merged = false;
        'outer: for i in 0..regions.len() {
            for j in i + 1..regions.len() {
                let (a, b) = (regions[i], regions[j]);
                if a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3] {
                    regions[i] = [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])];
                    regions.swap_remove(j);
                    merged = true;
                    break 'outer;
                }
            }
        }
    }
    regions
        .into_iter()
        .map(|r| {
            let x0 = r[0].max(0.0) as u32;
            let y0 = r[1].max(0.0) as u32;
            let x1 = (r[2].ceil().max(0.0) as u32).min(w);
            let y1 = (r[3].ceil().max(0.0) as u32).min(h);
            [x0, y0, x1, y1]
        })
        .filter(|r| r[2] > r[0] + 8 && r[3] > r[1] + 8)
        .collect()
}

/// Faces of one frame, found on crops around its people at the scale the whole-frame pass
/// would use (so a crop finds what the whole frame finds there, at a fraction of the
/// pixels). No people: no faces, no face inference. Boxes in the job's source pixels.
fn faces_on_people(model: &mut Model, job: &Job, objects: &[Object]) -> Result<Vec<Face>, OrtError> {
    let img = job.image;
    let (fw, fh) = (img.width, img.height);
    let (sx, sy) = (job.source.0 as f32 / fw as f32, job.source.1 as f32 / fh as f32);
    let people: Vec<[f32; 4]> = objects
        .iter()
        .filter(|o| &*o.label == "person")
        .map(|o| [o.bbox[0] / sx, o.bbox[1] / sy, o.bbox[2] / sx, o.bbox[3] / sy])
        .collect();
    if people.is_empty() {
        return Ok(Vec::new());
    }
    // The scale of the whole-frame pass.
    let full = model.input_size(fw, fh);
    let scale = Letterbox::fit(fw, fh, full.0, full.1).scale;
    let mut faces = Vec::new();
    for [x0, y0, x1, y1] in face_regions(&people, fw, fh) {
        let (cw, ch) = (x1 - x0, y1 - y0);
        let offset = y0 as usize * img.stride + x0 as usize * 3;
        let crop = ImageView { data: &img.data[offset..], width: cw, height: ch, stride: img.stride };
        let up = |v: u32| ((v as f32 * scale).round().max(1.0) as u32).div_ceil(32) * 32;
        let input = (up(cw), up(ch));
        let lb = model.prepare(&[crop], input)[0];
        for d in model.infer(1, input)?.into_iter().next().unwrap_or_default() {
            let b = lb.to_frame(d.candidate.bbox, cw, ch);
            let to_source = |x: f32, y: f32| [(x + x0 as f32) * sx, (y + y0 as f32) * sy];
            let [a, b0] = to_source(b[0], b[1]);
            let [c, d0] = to_source(b[2], b[3]);
            faces.push(Face {
                bbox: [a, b0, c, d0],
                score: d.candidate.score,
                landmarks: d.landmarks.unwrap_or_default().map(|[x, y]| to_source(x / lb.scale, y / lb.scale)),
            });
        }
    }
    Ok(faces)
}
