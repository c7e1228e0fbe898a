//! The shipped configs stay valid: the documented example (every field) and the demo.
//!
//!   deploy/edge-node.example.toml ─┐
//!   deploy/demo.toml ──────────────┴─► edge-node check-config ─► exit 0, one-line summary

use std::path::Path;
use std::process::Command;

fn deploy(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(file)
}

#[test]
fn example_and_demo_pass_check_config() {
    let _scenario = crate::common::scenario(module_path!());
    for file in ["edge-node.example.toml", "demo.toml"] {
        let out = Command::new(env!("CARGO_BIN_EXE_edge-node")).arg("check-config").arg(deploy(file)).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(stdout.contains(": ok: node "), "{stdout}");
    }
}

#[test]
fn example_merges_defaults_and_hides_passwords() {
    let _scenario = crate::common::scenario(module_path!());
    let cfg = edge_node::config::load(&deploy("edge-node.example.toml")).unwrap();
    let gate = cfg.cameras.iter().find(|c| c.id == "gate-north").unwrap();
    let street = cfg.cameras.iter().find(|c| c.id == "street-7").unwrap();
    // Camera values win over [defaults]; the rest comes from [defaults].
    assert_eq!(gate.detect_fps, 2.0);
    assert_eq!(street.detect_fps, 1.0);
    assert_eq!(street.transport, edge_node::config::Transport::Udp);
    assert_eq!(gate.transport, edge_node::config::Transport::Tcp);
    assert_eq!(street.rules.len(), 6);
    // The urban-management rules: a thing left on the pavement (its ignore_classes as
    // written), a stall of any COCO class.
    let left = street.rules.iter().find(|r| r.id == "left-on-pavement").unwrap();
    let edge_node::config::RuleKind::LeftObject(still) = &left.kind else { panic!("{:?}", left.kind) };
    assert_eq!((still.min_duration.as_secs(), still.absorb_after.as_secs(), still.min_area), (600, 7200, 0.002));
    assert_eq!(still.ignore_classes, ["person", "car", "truck", "bicycle", "motorcycle"]);
    assert_eq!(cfg.grid_of(street), Some("c1-g1"));
    // The password file was read, and no debug output shows it.
    assert_eq!(gate.credentials.as_ref().unwrap().password.expose(), "change-me-too");
    assert_eq!(cfg.mqtt.as_ref().unwrap().password.as_ref().unwrap().expose(), "change-me");
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("change-me"), "a password leaked into Debug output");
}
