//! Each way a camera can refuse us becomes a reason an operator understands, is retried
//! with backoff, never shows a password, and never disturbs a healthy camera.
//!
//!   sim (digest auth) ─► good: streaming, undisturbed
//!                     ─► wrong path: failed: no such stream (retried)
//!                     ─► wrong password: failed: unauthorized
//!   silent listener   ─► backoff: timeout
//!   closed port       ─► backoff: host unreachable

use std::time::Duration;

use crate::common::*;
use edge_node::config::DecodeMode;
use edge_node::sim::{Auth, Simulator, StreamSpec};
use edge_node::source::{CameraState, FailReason, Ingest, IngestOptions};

const PASSWORD: &str = "S3cret-digest-77";
const WRONG: &str = "Wr0ng-pass-99";

#[test]
fn failures_are_named_retried_and_isolated() {
    let _scenario = crate::common::scenario(module_path!());
    let _logs = captured_logs();
    let sim = Simulator::start(
        "127.0.0.1",
        0,
        &[StreamSpec::parse("live=pattern:ball:4,size=320x240,keyint=1s", &media_dir()).unwrap()],
        Auth::Digest { user: "viewer".into(), password: PASSWORD.into() },
    )
    .unwrap();
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("rtsp://127.0.0.1:{}/x", silent.local_addr().unwrap().port());
    let closed_url = format!("rtsp://127.0.0.1:{}/x", free_port());
    let base = format!("rtsp://127.0.0.1:{}", sim.port());

    let cams = vec![
        with_credentials(camera("good", &format!("{base}/live"), DecodeMode::Keyframes, 1.0), "viewer", PASSWORD),
        with_credentials(camera("badpath", &format!("{base}/nope"), DecodeMode::Keyframes, 1.0), "viewer", PASSWORD),
        with_credentials(camera("badcreds", &format!("{base}/live"), DecodeMode::Keyframes, 1.0), "viewer", WRONG),
        camera("silent", &silent_url, DecodeMode::Keyframes, 1.0),
        camera("closed", &closed_url, DecodeMode::Keyframes, 1.0),
    ];
    let options = IngestOptions {
        backoff_base: Duration::from_millis(500),
        backoff_max: Duration::from_secs(2),
        ..IngestOptions::default()
    };
    let ingest = Ingest::start(cams, Frames::default().callback(), options).unwrap();
    let reason = |id: &str| match ingest.camera(id).unwrap().state {
        CameraState::Failed { reason, .. } | CameraState::Backoff { reason, .. } => Some(reason),
        _ => None,
    };
    assert!(
        wait_until(Duration::from_secs(30), || {
            ingest.camera("good").unwrap().state == CameraState::Streaming
                && reason("badpath") == Some(FailReason::NoSuchStream)
                && reason("badcreds") == Some(FailReason::Unauthorized)
                && reason("silent") == Some(FailReason::Timeout)
                && reason("closed") == Some(FailReason::HostUnreachable)
        }),
        "{:#?}",
        ingest.status()
    );
    assert_eq!(ingest.camera("badpath").unwrap().state.name(), "failed");
    assert_eq!(ingest.camera("badcreds").unwrap().state.name(), "failed");
    assert_eq!(ingest.camera("silent").unwrap().state.name(), "backoff");
    assert!(ingest.camera("badpath").unwrap().state.to_string().starts_with("failed: no such stream"));

    // Retried with backoff, while the good camera is never disturbed.
    assert!(wait_until(Duration::from_secs(60), || ingest.camera("badpath").unwrap().reconnects >= 3));
    assert!(ingest.camera("badcreds").unwrap().reconnects >= 1);
    let good = ingest.camera("good").unwrap();
    assert_eq!((good.reconnects, good.starts, good.stalls), (0, 1, 0));
    assert!(good.handed_on > 0);

    let status = format!("{:?}", ingest.status());
    let logs = logs_text();
    for secret in [PASSWORD, WRONG] {
        assert!(!status.contains(secret), "a password is in the status");
        assert!(!logs.contains(secret), "a password is in the log");
    }
    assert!(logs.contains("no such stream") && logs.contains("unauthorized"));
    ingest.shutdown(Duration::from_secs(5));
    drop(silent);
}

/// A camera that refuses the configured transport (`461 Unsupported Transport`) is named
/// as such, not as a codec problem, and is tried once over the other transport, which
/// then stays in use.
///
///   sim /udponly (UDP only) ◄─ camera "tcp-cfg" (transport tcp) ─► 461 ─► udp ─► streaming
///   sim /tcponly (TCP only) ◄─ camera "udp-cfg" (transport udp) ─► 461 ─► tcp ─► streaming
#[test]
fn a_refused_transport_is_named_and_the_other_one_tried() {
    let _scenario = crate::common::scenario(module_path!());
    let logs = captured_logs();
    let media = media_dir();
    let sim = Simulator::start(
        "127.0.0.1",
        0,
        &[
            StreamSpec::parse("udponly=pattern:ball:4,size=320x240,keyint=1s,transport=udp", &media).unwrap(),
            StreamSpec::parse("tcponly=pattern:ball:4,size=320x240,keyint=1s,transport=tcp", &media).unwrap(),
        ],
        Auth::None,
    )
    .unwrap();
    let mut udp_cfg = camera("udp-cfg", &sim.url("tcponly"), DecodeMode::Keyframes, 1.0);
    udp_cfg.transport = edge_node::config::Transport::Udp;
    let cams = vec![camera("tcp-cfg", &sim.url("udponly"), DecodeMode::Keyframes, 1.0), udp_cfg];
    let frames = Frames::default();
    let ingest = Ingest::start(cams, frames.callback(), IngestOptions::default()).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || frames.count("tcp-cfg") >= 2 && frames.count("udp-cfg") >= 2),
        "{:#?}\n{}",
        ingest.status(),
        logs_text()
    );
    for (id, refused, advice) in [("tcp-cfg", "tcp", "udp"), ("udp-cfg", "udp", "tcp")] {
        let s = ingest.camera(id).unwrap();
        assert_eq!(s.state, CameraState::Streaming, "{s:#?}");
        let want = format!(
            "transport refused by the server (461 Unsupported Transport over {refused}): try transport = \"{advice}\""
        );
        assert_eq!(s.last_error.as_deref(), Some(want.as_str()), "{s:#?}");
    }
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    // The other transport is tried at once, not after a backoff: the camera's next line after
    // the refusal connects over the other transport. (Counting reconnects would also count
    // the simulator's own race: its shared media can answer 503 to a DESCRIBE that comes
    // while the refused session is still being torn down, a separate failure with its own
    // backoff.)
    for (id, other) in [("tcp-cfg", "transport=Udp"), ("udp-cfg", "transport=Tcp")] {
        let mine: Vec<&str> = text.lines().filter(|l| l.contains(&format!("camera={id} "))).collect();
        let refused = mine.iter().position(|l| l.contains("trying the other one once")).expect("a refusal logged");
        let next = mine.get(refused + 1).copied().unwrap_or("");
        assert!(
            next.contains("connecting") && next.contains(other),
            "{id}: after the refusal came {next:?}\n{}",
            mine.join("\n")
        );
    }
    // One test binary: other scenarios log to the same buffer, so only these cameras' lines count.
    let ours: String = text
        .lines()
        .filter(|l| l.contains("camera=tcp-cfg ") || l.contains("camera=udp-cfg "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!ours.contains("unsupported codec"), "{ours}");
    assert!(ours.contains("trying the other one once"), "{ours}");
    assert!(ours.contains("streaming over the transport the camera accepts"), "{ours}");
    ingest.shutdown(Duration::from_secs(5));
}
