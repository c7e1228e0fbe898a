//! Broken configs, one defect each (and one with five): `edge-node check-config` must
//! report exactly the (line, TOML path) pairs each file's `# expect:` header lists, exit
//! 64, and never print a password. `edge-node run` must refuse the same files the same way.
//!
//!   tests/configs/bad/NN-*.toml ──► edge-node check-config ──► exit 64 + "FILE:LINE:COL: PATH: why"

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const SECRETS: [&str; 3] = ["Pa55-not-shown-1", "990077335511", "not-shown"];

fn bad_configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/configs/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/configs/bad exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// `# expect: LINE PATH` lines; PATH `-` means a syntax error with no path.
fn expectations(file: &Path) -> BTreeSet<(usize, String)> {
    String::from_utf8_lossy(&std::fs::read(file).unwrap())
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|l| {
            let (line, path) = l.split_once(' ').unwrap();
            (line.parse().unwrap(), if path == "-" { String::new() } else { path.to_string() })
        })
        .collect()
}

/// Parses "  FILE:LINE:COL: PATH: message" lines of the report.
fn reported(file: &Path, stderr: &str) -> BTreeSet<(usize, String)> {
    let prefix = format!("{}:", file.display());
    stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(&prefix))
        .map(|rest| {
            let mut parts = rest.splitn(3, ':');
            let line: usize = parts.next().unwrap().parse().unwrap();
            let _col: usize = parts.next().unwrap().parse().unwrap();
            let tail = parts.next().unwrap().trim_start();
            let path = tail.split_once(": ").map(|(p, _)| p).filter(|p| !p.contains(' ')).unwrap_or("");
            (line, path.to_string())
        })
        .collect()
}

fn edge_node(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edge-node")).args(args).env("ORT_DYLIB_PATH", "/nonexistent").output().unwrap()
}

#[test]
fn suite_is_large_enough() {
    let _scenario = crate::common::scenario(module_path!());
    let files = bad_configs();
    assert!(files.len() >= 16, "want at least 15 single-defect files and one multi-defect file, got {}", files.len());
    let five = files.iter().find(|f| f.to_string_lossy().contains("five-defects")).expect("a five-defect file");
    assert_eq!(expectations(five).len(), 5);
}

#[test]
fn check_config_reports_exact_path_and_line() {
    let _scenario = crate::common::scenario(module_path!());
    let mut failures = Vec::new();
    for file in bad_configs() {
        let want = expectations(&file);
        assert!(!want.is_empty(), "{} has no # expect: lines", file.display());
        let out = edge_node(&["check-config", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.code() != Some(64) {
            failures.push(format!("{}: exit {:?}, want 64\n{stderr}", file.display(), out.status.code()));
            continue;
        }
        let got = reported(&file, &stderr);
        if got != want {
            failures.push(format!("{}:\n  want {want:?}\n  got  {got:?}\n{stderr}", file.display()));
        }
        for secret in SECRETS {
            if stderr.contains(secret) || stdout.contains(secret) {
                failures.push(format!("{}: printed a password:\n{stderr}", file.display()));
            }
        }
        // Every message says what is wrong, not just where.
        for line in stderr.lines().skip(1) {
            assert!(line.len() > file.as_os_str().len() + 30, "terse message: {line}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn run_refuses_an_invalid_config_the_same_way() {
    let _scenario = crate::common::scenario(module_path!());
    let file = bad_configs().into_iter().find(|f| f.to_string_lossy().contains("five-defects")).unwrap();
    let out = edge_node(&["run", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(reported(&file, &stderr), expectations(&file));
    assert!(!stderr.contains("Pa55-not-shown-1"));
}

#[test]
fn missing_file_is_not_a_config_error() {
    let _scenario = crate::common::scenario(module_path!());
    let out = edge_node(&["check-config", "/nonexistent/node.toml"]);
    assert_eq!(out.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config /nonexistent/node.toml"));
}

/// Valid but probably unwanted: a node that publishes pictures of cameras whose faces are to
/// be blurred, with no face model to find them. `check-config` passes (exit 0) and says why
/// the pictures are at risk and what to add; with a face model it says nothing.
#[test]
fn a_node_without_a_face_model_is_warned() {
    let _scenario = crate::common::scenario(module_path!());
    let dir = crate::common::fresh_dir("advice");
    let write = |faces: &str| {
        let file = dir.join("node.toml");
        std::fs::write(
            &file,
            format!(
                "version = 1\n[node]\nid = \"n\"\n[storage]\nmodels_dir = \"{}\"\n[models.objects]\nfile = \"yolox_nano_dynamic.onnx\"\n{faces}[[cameras]]\nid = \"gate\"\nurl = \"rtsp://10.0.0.7/s\"\nmodels = [\"objects\"]\n",
                crate::common::root().join("models").display()
            ),
        )
        .unwrap();
        file
    };
    let out = edge_node(&["check-config", write("").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: no face model") && stderr.contains("(gate)") && stderr.contains("[models.faces]"),
        "{stderr}"
    );
    let out =
        edge_node(&["check-config", write("[models.faces]\nfile = \"yunet_s_dynamic.onnx\"\n").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The problem is pointed at exactly: the column of the bad character, not just the line.
#[test]
fn columns_point_at_the_bad_character() {
    let _scenario = crate::common::scenario(module_path!());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/configs/bad");
    let cases = [
        // `url = "rtsp://admin:…@[127…`: the '[' is at column 38 of line 18.
        ("27-malformed-url.toml", ":18:38: cameras[0].url: the IPv6 address has no closing ']'"),
        // `# caf\xff`: line 6, column 6, byte offset 259 of the file.
        ("28-invalid-utf8.toml", ":6:6: not UTF-8: byte 259 (0xff)"),
    ];
    for (name, want) in cases {
        let file = dir.join(name);
        let out = edge_node(&["check-config", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name}: {stderr}");
        assert!(stderr.contains(want), "{name}: want {want:?} in\n{stderr}");
        assert!(!stderr.contains("Pa55-not-shown-1"), "{stderr}");
    }
}

/// `--help` documents the exit codes an operator's scripts see.
#[test]
fn help_names_the_exit_codes() {
    let _scenario = crate::common::scenario(module_path!());
    let out = edge_node(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for want in ["64", "66", "bad config", "cannot be read"] {
        assert!(text.contains(want), "--help lacks {want:?}:\n{text}");
    }
}
