//! Mutual TLS to a real Mosquitto that requires client certificates.
//!
//!   openssl: a CA, a server certificate for 127.0.0.1, a client certificate
//!   Mosquitto: TLS listener (require_certificate) + a plain listener for the test's subscriber
//!   1. link with CA + client certificate/key ⇒ every message delivered
//!   2. link with the CA only ⇒ the broker refuses it; messages stay in the outbox
//!   3. a key that is not a key ⇒ the set-up error names the config fields
//!
//! And user name + password, on a plain listener without anonymous access: the right
//! password delivers, a wrong one is refused and nothing leaves the outbox.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use edge_node::mqtt::{LinkOptions, MqttLink, TlsFiles};
use edge_node::outbox::{Kind, Message, Outbox};

fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed by `make setup`");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=gridsight test CA",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    for (name, ext) in [("server", true), ("client", false)] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        openssl(
            dir,
            &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &format!("/CN={name}")],
        );
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
        ];
        if ext {
            args.extend(["-extfile", "san.ext"]);
        }
        openssl(dir, &args);
    }
    // Mosquitto drops root for its own user: it must read these.
    for e in std::fs::read_dir(dir).unwrap() {
        std::fs::set_permissions(e.unwrap().path(), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

fn link(port: u16, tls: TlsFiles, db: &Path) -> (MqttLink, Arc<Mutex<Outbox>>, tokio::runtime::Runtime) {
    let _ = std::fs::remove_file(db);
    let outbox = Arc::new(Mutex::new(Outbox::open(db, 1 << 20).unwrap()));
    for i in 0..5 {
        outbox
            .lock()
            .unwrap()
            .push(&Message {
                topic: "tls/alerts".into(),
                payload: format!("a{i}").into_bytes(),
                retain: false,
                kind: Kind::Alert,
            })
            .unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let opts = LinkOptions {
        tls: Some(tls),
        backoff_max: Duration::from_secs(1),
        ..LinkOptions::new("127.0.0.1", port, &format!("tls-{}", db.display().to_string().len()), "tls/availability")
    };
    let link = {
        let _e = rt.enter();
        MqttLink::start(opts, outbox.clone(), Arc::new(|_| {}))
    };
    (link, outbox, rt)
}

#[test]
fn mutual_tls_with_client_certificate() {
    let _scenario = crate::common::scenario(module_path!());
    let dir = fresh_dir("tls");
    make_certs(&dir);
    let (tls_port, plain_port) = (free_port(), free_port());
    let d = dir.display();
    let conf = format!(
        "per_listener_settings false\nallow_anonymous true\n\
         listener {tls_port} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\nrequire_certificate true\n\
         listener {plain_port} 127.0.0.1\n"
    );
    let _broker = mosquitto_with(&dir, &conf, plain_port);
    let (got, subscribed) = subscriber_with_state(plain_port, "tls/alerts", "tls");
    assert!(wait_until(Duration::from_secs(30), || subscribed.load(std::sync::atomic::Ordering::SeqCst)));

    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    // 1. With the client certificate: delivered.
    let full = TlsFiles { ca: Some(read("ca.crt")), identity: Some((read("client.crt"), read("client.key"))) };
    let (l1, outbox, _rt1) = link(tls_port, full, &dir.join("with-cert.db"));
    assert!(
        wait_until(Duration::from_secs(60), || got.lock().unwrap().len() >= 5),
        "not delivered over mutual TLS; broker log:\n{}",
        std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default()
    );
    assert!(wait_until(Duration::from_secs(60), || outbox.lock().unwrap().len().unwrap() == 0));
    assert!(l1.stats.connects.load(std::sync::atomic::Ordering::SeqCst) >= 1);

    // 2. Without one: refused by the broker, nothing leaves the outbox.
    let ca_only = TlsFiles { ca: Some(read("ca.crt")), identity: None };
    let (l2, outbox2, _rt2) = link(tls_port, ca_only, &dir.join("without-cert.db"));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(l2.stats.acked.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(outbox2.lock().unwrap().len().unwrap(), 5);
    assert_eq!(got.lock().unwrap().len(), 5, "nothing more arrived");

    // 3. A broken key is reported with the fields to fix.
    let e = TlsFiles { ca: Some(read("ca.crt")), identity: Some((read("client.crt"), b"not a key".to_vec())) }
        .connector()
        .unwrap_err();
    assert!(e.contains("client_cert_file") && e.contains("client_key_file"), "{e}");
    let e = TlsFiles { ca: Some(b"junk".to_vec()), identity: None }.connector().unwrap_err();
    assert!(e.contains("ca_file"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `username` + `password` against a Mosquitto that allows no anonymous clients: the right
/// password delivers, a wrong one is refused and nothing leaves the outbox.
#[test]
fn username_and_password() {
    let _scenario = crate::common::scenario(module_path!());
    let dir = fresh_dir("auth");
    let passwords = dir.join("passwords");
    let ok = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwords)
        .args(["node-1", "s3cret-pass"])
        .status()
        .expect("mosquitto_passwd comes with mosquitto");
    assert!(ok.success());
    for p in [&dir, &passwords] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let (port, plain_port) = (free_port(), free_port());
    let conf = format!(
        "per_listener_settings true\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n\
         listener {plain_port} 127.0.0.1\nallow_anonymous true\n",
        passwords.display()
    );
    let _broker = mosquitto_with(&dir, &conf, plain_port);
    let (got, subscribed) = subscriber_with_state(plain_port, "tls/alerts", "auth");
    assert!(wait_until(Duration::from_secs(30), || subscribed.load(std::sync::atomic::Ordering::SeqCst)));

    let start = |password: &str, db: &str| {
        let _ = std::fs::remove_file(dir.join(db));
        let outbox = Arc::new(Mutex::new(Outbox::open(&dir.join(db), 1 << 20).unwrap()));
        outbox
            .lock()
            .unwrap()
            .push(&Message {
                topic: "tls/alerts".into(),
                payload: db.as_bytes().to_vec(),
                retain: false,
                kind: Kind::Alert,
            })
            .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let opts = LinkOptions {
            credentials: Some(("node-1".into(), Some(edge_node::config::Secret::new(password)))),
            backoff_max: Duration::from_secs(1),
            ..LinkOptions::new("127.0.0.1", port, db, "tls/availability")
        };
        let link = {
            let _e = rt.enter();
            MqttLink::start(opts, outbox.clone(), Arc::new(|_| {}))
        };
        (link, outbox, rt)
    };
    let (_good, good_box, _rt1) = start("s3cret-pass", "good");
    assert!(wait_until(Duration::from_secs(60), || got.lock().unwrap().iter().any(|(_, p)| p == b"good")));
    assert!(wait_until(Duration::from_secs(60), || good_box.lock().unwrap().len().unwrap() == 0));
    let (bad, bad_box, _rt2) = start("wrong", "bad");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(bad.stats.acked.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(bad_box.lock().unwrap().len().unwrap(), 1);
    assert!(!got.lock().unwrap().iter().any(|(_, p)| p == b"bad"));
    let _ = std::fs::remove_dir_all(&dir);
}
