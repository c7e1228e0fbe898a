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

/// A frame to detect on: the picture, and the camera's own resolution to map boxes to.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    pub image: ImageView<'a>,
    pub source: (u32, u32),
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

    /// Detects on frames that share one input size; boxes in each job's source pixels.
    pub fn detect(&mut self, jobs: &[Job], out: &mut [Detections]) -> Result<(), OrtError> {
        let Some(first) = jobs.first() else { return Ok(()) };
        let input = self.input_size(first.image.width, first.image.height);
        let chunk = if self.batchable { jobs.len() } else { 1 };
        for (ci, group) in jobs.chunks(chunk).enumerate() {
            let images: Vec<ImageView> = group.iter().map(|j| j.image).collect();
            let boxes = self.prepare(&images, input);
            let found = self.infer(group.len(), input)?;
            for (k, (job, dets)) in group.iter().zip(found).enumerate() {
                let lb = boxes[k];
                let (fw, fh) = (job.image.width, job.image.height);
                let (sx, sy) = (job.source.0 as f32 / fw as f32, job.source.1 as f32 / fh as f32);
                let to_source = |b: [f32; 4]| {
                    let f = lb.to_frame(b, fw, fh);
                    [f[0] * sx, f[1] * sy, f[2] * sx, f[3] * sy]
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
                                .map(|[x, y]| [x / lb.scale * sx, y / lb.scale * sy]),
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
    /// model allows it.
    pub fn detect(&mut self, models: &[String], jobs: &[Job]) -> Result<Vec<Detections>, OrtError> {
        let mut out = vec![Detections::default(); jobs.len()];
        for name in models {
            let Some(model) = self.models.get_mut(name) else { continue };
            // Group jobs by input size, keeping their positions.
            let mut groups: BTreeMap<(u32, u32), Vec<usize>> = BTreeMap::new();
            for (i, j) in jobs.iter().enumerate() {
                groups.entry(model.input_size(j.image.width, j.image.height)).or_default().push(i);
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
