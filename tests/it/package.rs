//! The Debian package (`make deb`, `deploy/deb/build.sh`): it builds, holds its files where
//! the unit expects them, the unit passes `systemd-analyze verify`, and the packaged binary,
//! run from the extracted tree with the packaged library, models and config, streams a
//! simulated camera. Nothing here runs systemd.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

#[test]
fn the_package_builds_installs_its_files_and_runs() {
    let _scenario = crate::common::scenario(module_path!());
    let dir = fresh_dir("deb");
    let out = Command::new("bash")
        .arg(root().join("deploy/deb/build.sh"))
        .args([env!("CARGO_BIN_EXE_edge-node"), dir.to_str().unwrap(), "--fast"])
        .output()
        .unwrap();
    assert!(out.status.success(), "build.sh: {}", String::from_utf8_lossy(&out.stderr));
    let deb = String::from_utf8(out.stdout).unwrap().trim().to_string();

    // Contents.
    let list = Command::new("dpkg-deb").args(["-c", &deb]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for want in [
        "./usr/bin/edge-node",
        "./usr/lib/gridsight/libonnxruntime.so.1.31.1",
        "./usr/share/gridsight/models/manifest.toml",
        "./usr/share/gridsight/models/yolox_nano_dynamic.onnx",
        "./usr/share/gridsight/models/yunet_s_dynamic.onnx",
        "./etc/gridsight/node.toml",
        "./lib/systemd/system/gridsight-edge-node.service",
        "./usr/share/doc/gridsight/site-broker.conf",
        "./usr/share/doc/gridsight/book/reference/config.md",
        "./usr/share/doc/gridsight/book/reference/mqtt.md",
    ] {
        assert!(list.lines().any(|l| l.ends_with(want)), "{want} is not in the package:\n{list}");
    }
    let field = |f: &str| {
        let o = Command::new("dpkg-deb").args(["-f", &deb, f]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(field("Package"), "gridsight");
    assert!(field("Depends").contains("gstreamer1.0-libav"));
    let x = dir.join("root");
    assert!(Command::new("dpkg-deb").args(["-x", &deb, x.to_str().unwrap()]).status().unwrap().success());
    let conffiles = Command::new("dpkg-deb").args(["-I", &deb, "conffiles"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&conffiles.stdout).trim(), "/etc/gridsight/node.toml");

    // The unit: hardened as promised, and valid with its commands where the package puts
    // them (pointed at the extracted tree, since nothing is installed here).
    let unit = std::fs::read_to_string(x.join("lib/systemd/system/gridsight-edge-node.service")).unwrap();
    for want in [
        "User=gridsight",
        "StateDirectory=gridsight",
        "ProtectSystem=strict",
        "Restart=on-failure",
        "Type=notify",
        "WatchdogSec=60s",
        "NoNewPrivileges=yes",
        "ExecStart=/usr/bin/edge-node run --config /etc/gridsight/node.toml",
        "Environment=ORT_DYLIB_PATH=/usr/lib/gridsight/libonnxruntime.so.1.31.1",
    ] {
        assert!(unit.lines().any(|l| l == want), "the unit lacks {want}");
    }
    let local = dir.join("gridsight-edge-node.service");
    std::fs::write(&local, unit.replace("/usr/bin/edge-node", x.join("usr/bin/edge-node").to_str().unwrap())).unwrap();
    let verify = Command::new("systemd-analyze").args(["verify"]).arg(&local).output().unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // The packaged config, binary, library and models: check-config, then a camera streams.
    let sim = simulator(&["s=pattern:ball:4,size=320x240,keyint=1s"]);
    let http = free_port();
    let config = std::fs::read_to_string(x.join("etc/gridsight/node.toml"))
        .unwrap()
        .replace("/var/lib/gridsight", dir.join("state").to_str().unwrap())
        .replace("/usr/share/gridsight/models", x.join("usr/share/gridsight/models").to_str().unwrap())
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{http}"))
        + &format!(
            "[embedded_broker]\nlisten = \"127.0.0.1:{}\"\n[[cameras]]\nid = \"cam\"\nurl = \"{}\"\n",
            free_port(),
            sim.url("s")
        );
    let cfg = dir.join("node.toml");
    std::fs::write(&cfg, config).unwrap();
    let bin = x.join("usr/bin/edge-node");
    let check = Command::new(&bin).arg("check-config").arg(&cfg).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let log = dir.join("node.log");
    // What systemd would hear (Type=notify): READY=1 once set up, WATCHDOG=1, STOPPING=1.
    let notify_path = dir.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let heard = heard.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok(n) = notify.recv(&mut buf) {
                heard.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
    }
    let mut node = KillOnDrop(
        Command::new(&bin)
            .args(["run", "--config"])
            .arg(&cfg)
            .env("ORT_DYLIB_PATH", x.join("usr/lib/gridsight/libonnxruntime.so.1.31.1"))
            .env("NOTIFY_SOCKET", &notify_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let streaming =
        wait_until(Duration::from_secs(30), || http_body(http, "/status").contains("\"state\": \"streaming\""));
    let said = |what: &str| heard.lock().unwrap().iter().any(|m| m.lines().any(|l| l == what));
    assert!(said("READY=1"), "no READY=1 for systemd: {:?}", heard.lock().unwrap());
    assert!(heard.lock().unwrap()[0].contains("STATUS=running 1 cameras"), "{:?}", heard.lock().unwrap());
    // A reload is RELOADING=1 then READY=1 again.
    unsafe { libc::kill(node.0.id() as i32, libc::SIGHUP) };
    assert!(wait_until(Duration::from_secs(60), || said("RELOADING=1")), "{:?}", heard.lock().unwrap());
    assert!(wait_until(Duration::from_secs(60), || heard
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.starts_with("READY=1"))
        .count()
        >= 2));
    assert!(wait_until(Duration::from_secs(45), || said("WATCHDOG=1")), "{:?}", heard.lock().unwrap());
    unsafe { libc::kill(node.0.id() as i32, libc::SIGTERM) };
    let _ = node.0.wait();
    assert!(said("STOPPING=1"), "{:?}", heard.lock().unwrap());
    drop(node);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(streaming, "the packaged node did not stream:\n{text}");
    assert!(
        text.contains("libonnxruntime.so.1.31.1") && text.contains(x.join("usr/lib/gridsight").to_str().unwrap()),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
