//! Cameras recover by themselves, on both RTSP clients: from the simulator being killed and restarted 10 s
//! later, and from a stream that stalls while its TCP connection stays open.
//!
//!   edge-node sim (child) ──kill -9──(10 s)──restart──►  every camera: backoff … streaming
//!   in-process sim: stall(mount) ─► camera "stalled" ─► reconnect ─► resume ─► streaming

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::*;
use edge_node::config::{DecodeMode, RtspClient};
use edge_node::source::{CameraState, Ingest, IngestOptions};

fn spawn_sim(port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_edge-node"))
        .args(["sim", "--port", &port.to_string()])
        .args([
            "--stream",
            "a=pattern:ball:4,size=320x240,keyint=1s",
            "--stream",
            "b=pattern:smpte:4,size=320x240,keyint=1s",
        ])
        .env("GRIDSIGHT_MEDIA", media_dir())
        .spawn()
        .unwrap()
}

fn options() -> IngestOptions {
    IngestOptions { backoff_max: std::time::Duration::from_secs(4), ..IngestOptions::default() }
}

#[test]
fn cameras_return_after_the_server_is_killed_and_restarted() {
    let _scenario = crate::common::scenario(module_path!());
    let _logs = captured_logs();
    let port = free_port();
    let mut sim = spawn_sim(port);
    let frames = Frames::default();
    let url = |m: &str| format!("rtsp://127.0.0.1:{port}/{m}");
    // Both RTSP clients: a and b on retina (the default), c and d on GStreamer.
    let cams = vec![
        camera("cam-a", &url("a"), DecodeMode::Keyframes, 1.0),
        camera("cam-b", &url("b"), DecodeMode::All, 1.0),
        with_client(camera("cam-c", &url("a"), DecodeMode::Keyframes, 1.0), RtspClient::Gstreamer),
        with_client(camera("cam-d", &url("b"), DecodeMode::All, 1.0), RtspClient::Gstreamer),
    ];
    let ingest = Ingest::start(cams, frames.callback(), options()).unwrap();
    let all_streaming = |ingest: &Ingest| ingest.status().iter().all(|s| s.state == CameraState::Streaming);
    assert!(wait_until(Duration::from_secs(20), || all_streaming(&ingest)), "{:#?}", ingest.status());

    sim.kill().unwrap();
    sim.wait().unwrap();
    let killed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(60), || ingest.status().iter().all(|s| s.state != CameraState::Streaming)),
        "cameras did not notice the server died: {:#?}",
        ingest.status()
    );
    std::thread::sleep(Duration::from_secs(10).saturating_sub(killed.elapsed()));
    let ids = ["cam-a", "cam-b", "cam-c", "cam-d"];
    let counts: Vec<usize> = ids.iter().map(|c| frames.count(c)).collect();
    let mut sim = spawn_sim(port);
    assert!(wait_until(Duration::from_secs(30), || all_streaming(&ingest)), "did not recover: {:#?}", ingest.status());
    assert!(wait_until(Duration::from_secs(60), || ids.iter().zip(&counts).all(|(c, n)| frames.count(c) > *n)));
    for s in ingest.status() {
        assert!(s.reconnects >= 2, "{}: {} reconnects", s.id, s.reconnects);
    }
    let logs = logs_text();
    assert!(logs.contains("will retry") && logs.contains("backoff_ms="), "the log shows no backoff");
    assert!(logs.contains("reconnecting"));
    ingest.shutdown(Duration::from_secs(5));
    let _ = sim.kill();
    let _ = sim.wait();
}

#[test]
fn a_stalled_stream_is_detected_and_reconnected() {
    let _scenario = crate::common::scenario(module_path!());
    let sim = simulator(&["s=pattern:ball:4,size=320x240,keyint=1s"]);
    let frames = Frames::default();
    // One camera per RTSP client, on one stream.
    let ids = ["stally", "stally-gst"];
    let mut cams = vec![
        camera(ids[0], &sim.url("s"), DecodeMode::Keyframes, 1.0),
        with_client(camera(ids[1], &sim.url("s"), DecodeMode::Keyframes, 1.0), RtspClient::Gstreamer),
    ];
    for c in &mut cams {
        c.stall_timeout = Duration::from_secs(2);
    }
    let ingest = Ingest::start(cams, frames.callback(), options()).unwrap();
    let state = |id: &str| ingest.camera(id).unwrap().state;
    assert!(wait_until(Duration::from_secs(60), || ids.iter().all(|id| state(id) == CameraState::Streaming)));

    sim.stall("s");
    for id in ids {
        assert!(
            wait_until(Duration::from_secs(30), || matches!(state(id), CameraState::Stalled { .. })),
            "{id}: stall not detected: {:?}",
            state(id)
        );
        assert_eq!(ingest.camera(id).unwrap().stalls, 1, "{id}");
    }
    sim.resume("s");
    for id in ids {
        assert!(wait_until(Duration::from_secs(60), || state(id) == CameraState::Streaming), "{id}: {:?}", state(id));
        let n = frames.count(id);
        assert!(wait_until(Duration::from_secs(30), || frames.count(id) > n), "{id}: no frames after recovery");
        assert!(ingest.camera(id).unwrap().reconnects >= 1, "{id}");
    }
    ingest.shutdown(Duration::from_secs(5));
}
