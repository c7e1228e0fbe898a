//! The daemon starts on the demo config, keeps running, and exits 0 promptly on SIGINT
//! or SIGTERM; without ONNX Runtime it says exactly what to run.
//!
//!   edge-node run --config deploy/demo.toml ─► "running" ─► SIGINT ─► exit 0 (< 5 s)
//!   (and a signal during start-up also ends in a clean exit)

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The demo config, with its embedded broker and HTTP listener on ports of this test's own
/// (tests run in parallel), a data folder of its own, and its relative paths made absolute.
fn demo_config() -> std::path::PathBuf {
    demo_config_with(None, free_port())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// As [`demo_config`], with a given data folder (shared between two nodes) and HTTP port.
fn demo_config_with(data: Option<&Path>, http: u16) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let text = std::fs::read_to_string(deploy.join("demo.toml"))
        .unwrap()
        .replace("127.0.0.1:18830", &format!("127.0.0.1:{}", free_port()))
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{http}"))
        .replace("\"../", &format!("\"{}/../", deploy.display()));
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let data = data.map_or_else(
        || std::env::temp_dir().join(format!("gridsight-daemon-{}-{n}", std::process::id())),
        Path::to_path_buf,
    );
    let text = text.replace(&format!("\"{}/../var/demo\"", deploy.display()), &format!("\"{}\"", data.display()));
    let path = std::env::temp_dir().join(format!("gridsight-daemon-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn stops_cleanly_on(signal: &str) {
    let (mut child, rx, mut log) = start_node(&demo_config());
    assert_eq!(log.iter().filter(|l| l.contains("model ready")).count(), 2, "{}", log.join("\n"));
    // Still running a moment later.
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "daemon exited early:\n{}", log.join("\n"));

    let sent = Instant::now();
    Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(sent.elapsed() < Duration::from_secs(5), "daemon did not stop within 5 s of {signal}");
        std::thread::sleep(Duration::from_millis(20));
    };
    log.extend(rx.try_iter());
    assert!(status.success(), "exit {status:?}\n{}", log.join("\n"));
    assert!(log.iter().any(|l| l.contains("shutting down")), "{}", log.join("\n"));
}

#[test]
fn demo_runs_until_sigint_then_exits_zero() {
    let _scenario = crate::common::scenario(module_path!());
    stops_cleanly_on("-INT");
}

#[test]
fn demo_runs_until_sigterm_then_exits_zero() {
    let _scenario = crate::common::scenario(module_path!());
    stops_cleanly_on("-TERM");
}

#[test]
fn a_signal_during_start_up_still_exits_cleanly() {
    let _scenario = crate::common::scenario(module_path!());
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-node"))
        .args(["run", "--config"])
        .arg(demo_config())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Signals are installed before the models load; give the process a moment to exist.
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no exit after SIGTERM during start-up");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn missing_onnx_runtime_names_the_fix() {
    let _scenario = crate::common::scenario(module_path!());
    let out = Command::new(env!("CARGO_BIN_EXE_edge-node"))
        .args(["run", "--config"])
        .arg(demo_config())
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.31.1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("make setup") && stderr.contains("/nonexistent/libonnxruntime.so.1.31.1"), "{stderr}");
}

/// Runs `edge-node run` on `config` and waits for its " running " line; returns the child,
/// its further log lines as they come, and the lines so far.
fn start_node(config: &Path) -> (std::process::Child, mpsc::Receiver<String>, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-node"))
        .args(["run", "--config"])
        .arg(config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains(" running ")) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => log.push(line),
            Err(_) => panic!("the node did not run within 60 s:\n{}", log.join("\n")),
        }
    }
    (child, rx, log)
}

/// A second node on the same data_dir stops at once, naming the first one's pid; a node
/// whose HTTP port is taken stops with the address instead of running without health checks.
///
///   node A (data D, http P) running ─► node B (data D)  ─► exit 73 "in use … (pid A)"
///                                   └► node C (data E, http P) ─► exit 73 "http.listen … P"
#[test]
fn a_second_node_on_one_data_dir_or_port_is_refused() {
    let _scenario = crate::common::scenario(module_path!());
    let data = std::env::temp_dir().join(format!("gridsight-daemon-shared-{}", std::process::id()));
    let http = free_port();
    let (mut first, _rx, _log) = start_node(&demo_config_with(Some(&data), http));

    let second = Command::new(env!("CARGO_BIN_EXE_edge-node"))
        .args(["run", "--config"])
        .arg(demo_config_with(Some(&data), free_port()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(73), "{stderr}");
    assert!(stderr.contains(&format!("in use by another edge-node (pid {})", first.id())), "{stderr}");
    assert!(!stderr.contains(" running "), "the second node must not start:\n{stderr}");

    let third = Command::new(env!("CARGO_BIN_EXE_edge-node"))
        .args(["run", "--config"])
        .arg(demo_config_with(None, http))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert_eq!(third.status.code(), Some(73), "{stderr}");
    assert!(stderr.contains(&format!("http.listen 127.0.0.1:{http}: cannot listen")), "{stderr}");

    // The first node was not disturbed; once it stops, the data_dir is free again.
    assert!(first.try_wait().unwrap().is_none(), "the first node stopped");
    Command::new("kill").args(["-TERM", &first.id().to_string()]).status().unwrap();
    assert!(first.wait().unwrap().success());
    let (mut again, _rx2, _log2) = start_node(&demo_config_with(Some(&data), free_port()));
    Command::new("kill").args(["-KILL", &again.id().to_string()]).status().unwrap();
    let _ = again.wait();
}
