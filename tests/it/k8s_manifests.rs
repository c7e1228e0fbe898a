//! The Kubernetes manifests (`deploy/k8s`), offline:
//!
//!   deploy/k8s/check.py ──► every resource and the generated ConfigMap against the pinned
//!                           Kubernetes schema (strict), and the links between them
//!   edge-node check-config ──► district.toml for every pod index, dispatch.toml
//!   the grid of both files is the same; the container file starts what the manifests run

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// A copy of a shipped district file with the paths that exist only in the container (the
/// Secret's mount, the packaged models) pointed at stand-ins here.
fn local_copy(file: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("deploy/k8s/config").join(file)).unwrap();
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    for line in text.lines().filter_map(|l| l.trim().split_once(" = \"/etc/gridsight-secrets/")) {
        std::fs::write(secrets.join(line.1.trim_end_matches('"')), "not-a-real-secret-0123456789\n").unwrap();
    }
    let text = text
        .replace("/etc/gridsight-secrets/", &format!("{}/", secrets.display()))
        .replace("\"/usr/share/gridsight/models\"", &format!("\"{}\"", root().join("models").display()));
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn check_config(path: &Path, pod_index: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-node"));
    cmd.arg("check-config").arg(path).env_remove("POD_INDEX");
    if let Some(i) = pod_index {
        cmd.env("POD_INDEX", i);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn toml_of(file: &str) -> toml::Table {
    std::fs::read_to_string(root().join("deploy/k8s/config").join(file)).unwrap().parse().unwrap()
}

#[test]
fn the_manifests_validate_against_the_pinned_kubernetes_schema() {
    let _scenario = crate::common::scenario(module_path!());
    let python = root().join(".cache/venv/bin/python");
    assert!(python.exists(), "{} is missing: run `make setup` (it installs kubernetes-validate)", python.display());
    let out = Command::new(&python).arg(root().join("deploy/k8s/check.py")).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("ok (Kubernetes 1.31.0, strict)"), "deploy/k8s/check.py:\n{text}");
}

#[test]
fn the_checker_finds_what_is_wrong() {
    let _scenario = crate::common::scenario(module_path!());
    // The checker itself: a copy of the manifests with three mistakes, each reported.
    let dir = std::env::temp_dir().join(format!("gridsight-k8s-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("config")).unwrap();
    for e in std::fs::read_dir(root().join("deploy/k8s")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    for f in ["district.toml", "dispatch.toml"] {
        std::fs::copy(root().join("deploy/k8s/config").join(f), dir.join("config").join(f)).unwrap();
    }
    let edit = |file: &str, from: &str, to: &str| {
        let p = dir.join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{file} has no {from}");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    };
    edit("edge-node-statefulset.yaml", "replicas: 8", "replicas: 9");
    edit("edge-node-statefulset.yaml", "  podManagementPolicy:", "  podManagmentPolicy:");
    edit("dispatcher-deployment.yaml", "type: Recreate", "type: RollingUpdate");
    let python = root().join(".cache/venv/bin/python");
    let out = Command::new(&python).arg(root().join("deploy/k8s/check.py")).arg(&dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{text}");
    for want in [
        "replicas 9 but district.toml has shard.count = 8",
        "'podManagmentPolicy' was unexpected",
        "the dispatcher needs strategy Recreate",
    ] {
        assert!(text.contains(want), "not reported: {want}\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_district_files_are_valid_for_every_pod_and_share_one_grid() {
    let _scenario = crate::common::scenario(module_path!());
    let dir = fresh_dir("k8s");
    let district = local_copy("district.toml", &dir);
    let count = toml_of("district.toml")["shard"]["count"].as_integer().unwrap();
    for i in 0..count {
        let (ok, text) = check_config(&district, Some(&i.to_string()));
        assert!(ok && text.contains(&format!("node edge-node-{i} (shard {i} of {count})")), "POD_INDEX={i}: {text}");
    }
    // A pod name works too (index_env = "HOSTNAME" on clusters without the pod-index label).
    let (ok, text) = check_config(&district, Some("edge-node-5"));
    assert!(ok && text.contains("node edge-node-5 (shard 5 of"), "{text}");
    // Outside the StatefulSet (no POD_INDEX), the file says what is missing.
    let (ok, text) = check_config(&district, None);
    assert!(!ok && text.contains("$POD_INDEX is not set"), "{text}");
    let (ok, text) = check_config(&district, Some(&count.to_string()));
    assert!(!ok && text.contains(&format!("outside 0..{count}")), "{text}");

    let dispatch = local_copy("dispatch.toml", &dir);
    let (ok, text) = check_config(&dispatch, None);
    assert!(ok, "{text}");
    // Alerts carry the camera's grid from district.toml; the dispatcher routes by dispatch.toml's.
    assert_eq!(toml_of("district.toml")["grid"], toml_of("dispatch.toml")["grid"], "the two files' [grid] differ");
    assert_eq!(
        toml_of("district.toml")["mqtt"]["host"],
        toml_of("dispatch.toml")["mqtt"]["host"],
        "nodes and dispatcher on different brokers"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_container_file_runs_what_the_package_installs() {
    let _scenario = crate::common::scenario(module_path!());
    let file = std::fs::read_to_string(root().join("deploy/container/Containerfile")).unwrap();
    // Built from the package that `make deb` makes (tests/it/package.rs checks its contents).
    assert!(file.contains("COPY gridsight_*_amd64.deb /tmp/"));
    assert!(file.contains("ENTRYPOINT [\"/usr/bin/edge-node\"]"));
    let unit = std::fs::read_to_string(root().join("deploy/deb/gridsight-edge-node.service")).unwrap();
    let ort = unit.lines().find_map(|l| l.strip_prefix("Environment=ORT_DYLIB_PATH=")).unwrap();
    assert!(file.contains(&format!("ORT_DYLIB_PATH={ort}")), "the image and the unit load different ONNX Runtimes");
    // The uid the manifests run as is the image's gridsight user.
    for m in ["edge-node-statefulset.yaml", "dispatcher-deployment.yaml"] {
        let text = std::fs::read_to_string(root().join("deploy/k8s").join(m)).unwrap();
        assert!(text.contains("runAsUser: 10001") && text.contains("image: gridsight/edge-node"), "{m}");
    }
    assert!(file.contains("--uid 10001") && file.contains("USER 10001:10001"));
    // Where the manifests mount data_dir, the image has it.
    assert!(file.contains("/var/lib/gridsight"));
}
