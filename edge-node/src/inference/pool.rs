//! The inference pool shared by all cameras.
//!
//! Input: frames submitted per camera. Output: each frame with its detections, through
//! the callback given at start (called on a worker thread). Queues: each camera has its
//! own queue of `queue_per_camera` frames; a full queue drops its oldest frame, recorded
//! for that camera as [`Dropped::InferenceQueueFull`] (unintended: the pool is behind). Workers take frames
//! round-robin across cameras, one per camera per turn, so a busy camera never starves a
//! quiet one. A worker takes up to `max_batch` frames at once (waiting at most `max_wait`
//! for them) and the detector batches those of equal input size where the model allows.
//! Each worker owns its ONNX Runtime sessions. Shutdown: [`InferencePool::shutdown`]
//! lets workers finish the frame in hand and drops the rest.

use crate::Locked;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, warn};

use super::detector::{Detector, Job};
use super::runtime::OrtError;
use crate::config::{Inference, ModelSpec};
use crate::drops::{Dropped, Drops, Registry};
use crate::types::{Detections, Frame};

/// Receives each processed frame, its detections and the time the detector took.
pub type DetectionCallback = Arc<dyn Fn(&Frame, Detections, Duration) + Send + Sync>;

/// Per-camera pool counters (the drops are read from the camera's [`Drops`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolStats {
    pub submitted: u64,
    pub processed: u64,
    /// Dropped because the camera's queue was full (the pool was behind).
    pub dropped_busy: u64,
    /// Frames whose detection or handling panicked (caught; the worker goes on).
    pub panics: u64,
    /// Frames whose inference failed (ONNX Runtime returned an error; logged).
    pub errors: u64,
    /// Total detector time for this camera's frames.
    pub busy: Duration,
}

struct CameraQueue {
    models: Vec<String>,
    frames: VecDeque<Frame>,
    stats: PoolStats,
    drops: Arc<Drops>,
    /// A worker holds frames of this camera: no other worker takes any until it is done,
    /// so a camera's frames are handled one at a time, in the order they were submitted.
    in_flight: bool,
}

#[derive(Default)]
struct State {
    cameras: BTreeMap<Arc<str>, CameraQueue>,
    /// Round-robin position: the camera after which the next pick starts.
    cursor: Option<Arc<str>>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    drops: Arc<Registry>,
}

pub struct InferencePool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl InferencePool {
    /// Builds every worker's sessions (failing if any model does not load), then starts them.
    /// Frames it drops are recorded in `drops` under their camera.
    pub fn start(
        models: &BTreeMap<String, ModelSpec>,
        opts: &Inference,
        on_result: DetectionCallback,
        drops: Arc<Registry>,
    ) -> Result<Self, OrtError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            capacity: opts.queue_per_camera.max(1),
            drops,
        });
        let detectors = (0..opts.workers.max(1))
            .map(|_| Detector::on(models, opts.threads_per_worker, opts.provider))
            .collect::<Result<Vec<_>, _>>()?;
        let workers = detectors
            .into_iter()
            .enumerate()
            .map(|(i, detector)| {
                let (shared, cb) = (shared.clone(), on_result.clone());
                let (max_batch, max_wait) = (opts.max_batch.max(1), opts.max_wait);
                std::thread::Builder::new()
                    .name(format!("infer-{i}"))
                    .spawn(move || work(detector, &shared, cb, max_batch, max_wait))
                    .expect("spawn inference worker")
            })
            .collect();
        Ok(Self { shared, workers })
    }

    /// Makes a camera known, with the models its frames run through.
    pub fn register(&self, camera: &str, models: Vec<String>) {
        let drops = self.shared.drops.camera(camera);
        let mut st = self.shared.state.locked();
        let q = st.cameras.entry(Arc::from(camera)).or_insert_with(|| CameraQueue {
            models: Vec::new(),
            frames: VecDeque::new(),
            stats: PoolStats::default(),
            drops,
            in_flight: false,
        });
        q.models = models;
    }

    pub fn unregister(&self, camera: &str) {
        self.shared.state.locked().cameras.remove(camera);
    }

    /// Queues a frame; returns false when it displaced an older frame of the same camera
    /// (or the camera is unknown). Never blocks.
    pub fn submit(&self, frame: Frame) -> bool {
        let mut st = self.shared.state.locked();
        let Some(q) = st.cameras.get_mut(&frame.camera) else { return false };
        q.stats.submitted += 1;
        let mut kept_all = true;
        if q.frames.len() >= self.shared.capacity {
            q.frames.pop_front();
            q.drops.record(Dropped::InferenceQueueFull);
            kept_all = false;
        }
        q.frames.push_back(frame);
        drop(st);
        self.shared.ready.notify_one();
        kept_all
    }

    pub fn stats(&self, camera: &str) -> Option<PoolStats> {
        self.shared.state.locked().cameras.get(camera).map(|q| PoolStats {
            dropped_busy: q.drops.count(Dropped::InferenceQueueFull),
            panics: q.drops.count(Dropped::InferencePanic),
            errors: q.drops.count(Dropped::InferenceError),
            ..q.stats.clone()
        })
    }

    pub fn shutdown(mut self, deadline: Duration) -> bool {
        self.stop(deadline)
    }

    fn stop(&mut self, deadline: Duration) -> bool {
        self.shared.state.locked().stop = true;
        self.shared.ready.notify_all();
        let until = Instant::now() + deadline;
        let mut all = true;
        for w in self.workers.drain(..) {
            while !w.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            if w.is_finished() {
                let _ = w.join();
            } else {
                all = false;
                warn!("an inference worker did not stop before the deadline");
            }
        }
        all
    }
}

impl Drop for InferencePool {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Takes up to `n` frames, one per camera per turn, starting after the cursor, from
/// cameras no other worker holds; marks the cameras taken from as held.
fn take(st: &mut State, n: usize) -> Vec<Frame> {
    let out = take_free(st, n);
    for f in &out {
        if let Some(q) = st.cameras.get_mut(&f.camera) {
            q.in_flight = true;
        }
    }
    out
}

fn take_free(st: &mut State, n: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    while out.len() < n {
        let ids: Vec<Arc<str>> = st.cameras.keys().cloned().collect();
        if ids.is_empty() {
            break;
        }
        let start = st.cursor.as_ref().and_then(|c| ids.iter().position(|i| i > c)).unwrap_or(0);
        let mut took = false;
        for k in 0..ids.len() {
            let id = &ids[(start + k) % ids.len()];
            if let Some(frame) = st.cameras.get_mut(id).filter(|q| !q.in_flight).and_then(|q| q.frames.pop_front()) {
                out.push(frame);
                st.cursor = Some(id.clone());
                took = true;
                if out.len() == n {
                    break;
                }
            }
        }
        if !took {
            break;
        }
    }
    out
}

fn work(mut detector: Detector, shared: &Shared, on_result: DetectionCallback, max_batch: usize, max_wait: Duration) {
    loop {
        let batch = {
            let mut st = shared.state.locked();
            loop {
                if st.stop {
                    return;
                }
                let mut batch = take(&mut st, max_batch);
                if !batch.is_empty() && batch.len() < max_batch && !max_wait.is_zero() {
                    // Give other cameras a moment to fill the batch.
                    let (guard, _) = shared.ready.wait_timeout(st, max_wait).unwrap();
                    st = guard;
                    batch.extend(take(&mut st, max_batch - batch.len()));
                }
                if !batch.is_empty() {
                    let models: Vec<Vec<String>> = batch
                        .iter()
                        .map(|f| st.cameras.get(&f.camera).map(|q| q.models.clone()).unwrap_or_default())
                        .collect();
                    break batch.into_iter().zip(models).collect::<Vec<_>>();
                }
                st = shared.ready.wait(st).unwrap();
            }
        };
        let held: Vec<Arc<str>> = batch.iter().map(|(f, _)| f.camera.clone()).collect();
        // A panic in detection or in the callback costs that group its frames, never the
        // worker (counted per camera, logged); the cameras are released either way.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_batch(&mut detector, shared, &on_result, batch)
        }));
        let mut st = shared.state.locked();
        for id in &held {
            if let Some(q) = st.cameras.get_mut(id) {
                q.in_flight = false;
                if outcome.is_err() {
                    q.drops.record(Dropped::InferencePanic);
                }
            }
        }
        drop(st);
        shared.ready.notify_all();
        if outcome.is_err() {
            error!(cameras = ?held, "a panic while handling these cameras' frames was caught; their frames were dropped");
        }
    }
}

/// Detects on a batch, grouped by model list, and hands each frame's detections on.
fn run_batch(
    detector: &mut Detector,
    shared: &Shared,
    on_result: &DetectionCallback,
    batch: Vec<(Frame, Vec<String>)>,
) {
    {
        // Frames with the same model list run together.
        let mut groups: BTreeMap<Vec<String>, Vec<Frame>> = BTreeMap::new();
        for (frame, models) in batch {
            groups.entry(models).or_default().push(frame);
        }
        for (models, frames) in groups {
            let jobs: Vec<Job> = frames.iter().map(Job::of_frame).collect();
            let started = Instant::now();
            let result = detector.detect(&models, &jobs);
            let took = started.elapsed();
            match result {
                Ok(found) => {
                    let share = took / frames.len() as u32;
                    {
                        let mut st = shared.state.locked();
                        for f in &frames {
                            if let Some(q) = st.cameras.get_mut(&f.camera) {
                                q.stats.processed += 1;
                                q.stats.busy += share;
                            }
                        }
                    }
                    for (frame, dets) in frames.iter().zip(found) {
                        on_result(frame, dets, share);
                    }
                }
                Err(e) => {
                    let mut st = shared.state.locked();
                    for f in &frames {
                        if let Some(q) = st.cameras.get_mut(&f.camera) {
                            q.drops.record(Dropped::InferenceError);
                        }
                    }
                    error!(cameras = frames.len(), "inference failed: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn frame(camera: &str, seq: u64) -> Frame {
        Frame {
            camera: Arc::from(camera),
            seq,
            pts: None,
            stream: std::time::Duration::ZERO,
            wall: SystemTime::now(),
            width: 2,
            height: 2,
            source_width: 2,
            source_height: 2,
            keyframe: true,
            roi: None,
            data: Arc::from(vec![0u8; 12]),
        }
    }

    fn state(cams: &[&str]) -> State {
        let mut st = State::default();
        for c in cams {
            st.cameras.insert(
                Arc::from(*c),
                CameraQueue {
                    models: vec![],
                    frames: VecDeque::new(),
                    stats: PoolStats::default(),
                    drops: Arc::new(Drops::new(c)),
                    in_flight: false,
                },
            );
        }
        st
    }

    #[test]
    fn takes_round_robin_across_cameras() {
        let mut st = state(&["a", "b", "c"]);
        for i in 0..4 {
            st.cameras.get_mut("a").unwrap().frames.push_back(frame("a", i));
        }
        st.cameras.get_mut("c").unwrap().frames.push_back(frame("c", 0));
        // One worker, finishing each frame before it takes the next.
        let take_and_finish = |st: &mut State, n| {
            let got = take(st, n);
            st.cameras.values_mut().for_each(|q| q.in_flight = false);
            got
        };
        let order: Vec<String> =
            (0..3).flat_map(|_| take_and_finish(&mut st, 1)).map(|f| format!("{}{}", f.camera, f.seq)).collect();
        // The busy camera "a" does not get two turns before "c" gets one.
        assert_eq!(order, ["a0", "c0", "a1"]);
        let batch: Vec<String> = take_and_finish(&mut st, 4).iter().map(|f| format!("{}{}", f.camera, f.seq)).collect();

        assert_eq!(batch, ["a2", "a3"]);
    }

    /// A camera a worker holds is skipped by the others until it is released.
    #[test]
    fn a_held_camera_is_not_taken_twice() {
        let mut st = state(&["a", "b"]);
        for i in 0..3 {
            st.cameras.get_mut("a").unwrap().frames.push_back(frame("a", i));
        }
        st.cameras.get_mut("b").unwrap().frames.push_back(frame("b", 0));
        let first: Vec<String> = take(&mut st, 1).iter().map(|f| format!("{}{}", f.camera, f.seq)).collect();
        assert_eq!(first, ["a0"]);
        // A second worker: "a" is held, so it gets "b", then nothing.
        let second: Vec<String> = take(&mut st, 4).iter().map(|f| format!("{}{}", f.camera, f.seq)).collect();
        assert_eq!(second, ["b0"]);
        assert!(take(&mut st, 4).is_empty());
        st.cameras.get_mut("a").unwrap().in_flight = false;
        let third: Vec<String> = take(&mut st, 4).iter().map(|f| format!("{}{}", f.camera, f.seq)).collect();
        assert_eq!(third, ["a1", "a2"], "released: the next frames, in order");
    }
}
