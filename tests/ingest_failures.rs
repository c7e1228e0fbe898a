//! Each way a camera can refuse us becomes a reason an operator understands, is retried
//! with backoff, never shows a password, and never disturbs a healthy camera.
//!
//!   sim (digest auth) ─► good: streaming, undisturbed
//!                     ─► wrong path: failed: no such stream (retried)
//!                     ─► wrong password: failed: unauthorized
//!   silent listener   ─► backoff: timeout
//!   closed port       ─► backoff: host unreachable

mod common;

use std::time::Duration;

use common::*;
use edge_node::config::DecodeMode;
use edge_node::sim::{Auth, Simulator, StreamSpec};
use edge_node::source::{CameraState, FailReason, Ingest, IngestOptions};

const PASSWORD: &str = "S3cret-digest-77";
const WRONG: &str = "Wr0ng-pass-99";

#[test]
fn failures_are_named_retried_and_isolated() {
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
    assert!(wait_until(Duration::from_secs(15), || ingest.camera("badpath").unwrap().reconnects >= 3));
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
