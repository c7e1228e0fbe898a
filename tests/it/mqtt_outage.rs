//! A broker outage delays alerts but never loses them.
//!
//!   outbox ─► MqttLink ─► Mosquitto ─► subscriber
//!   20 alerts delivered; broker stopped; 30 alerts written during the outage (they wait
//!   in the outbox); broker back 15 s later ─► all 30 arrive, none lost; the outbox empties.
//!   A clean stop while connected delivers the rows committed just before it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use edge_node::mqtt::{LinkOptions, MqttLink};
use edge_node::outbox::{Kind, Message, Outbox};

fn alert(i: usize) -> Message {
    Message {
        topic: "gridsight/test/alerts".into(),
        payload: format!("alert-{i:03}").into_bytes(),
        retain: false,
        kind: Kind::Alert,
    }
}

#[test]
fn alerts_written_during_an_outage_arrive_afterwards() {
    let _scenario = crate::common::scenario(module_path!());
    let port = free_port();
    let mut broker = Mosquitto::start(port);
    let got = subscriber(port, "gridsight/test/alerts");
    std::thread::sleep(Duration::from_millis(800));

    let db = std::env::temp_dir().join(format!("gridsight-outage-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let outbox = Arc::new(Mutex::new(Outbox::open(&db, 64 << 20).unwrap()));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let opts = LinkOptions {
        keep_alive: Duration::from_secs(5),
        max_inflight: 10,
        backoff_max: Duration::from_secs(2),
        ..LinkOptions::new("127.0.0.1", port, "gridsight-test-node", "gridsight/test/availability")
    };
    let acked = Arc::new(Mutex::new(0usize));
    let a2 = acked.clone();
    let link = {
        let _rt = rt.enter();
        MqttLink::start(opts, outbox.clone(), Arc::new(move |_| *a2.lock().unwrap() += 1))
    };
    let push = |range: std::ops::Range<usize>| {
        for i in range {
            outbox.lock().unwrap().push(&alert(i)).unwrap();
            link.notify();
        }
    };

    push(0..20);
    assert!(
        wait_until(Duration::from_secs(60), || got.lock().unwrap().len() >= 20),
        "before the outage: {:?}",
        got.lock().unwrap().len()
    );

    broker.stop();
    std::thread::sleep(Duration::from_millis(500));
    push(20..50);
    std::thread::sleep(Duration::from_secs(15));
    assert_eq!(outbox.lock().unwrap().len().unwrap(), 30, "the outage's alerts wait in the outbox");
    assert!(!link.stats.connected.load(std::sync::atomic::Ordering::SeqCst));

    broker.restart();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let g = got.lock().unwrap();
            (0..50).all(|i| g.contains(&format!("alert-{i:03}")))
        }),
        "missing after the outage: {:?}",
        (0..50).filter(|i| !got.lock().unwrap().contains(&format!("alert-{i:03}"))).collect::<Vec<_>>()
    );
    assert!(
        wait_until(Duration::from_secs(60), || outbox.lock().unwrap().is_empty().unwrap()),
        "the outbox did not empty"
    );
    let received = got.lock().unwrap().clone();
    let unique: std::collections::BTreeSet<&String> = received.iter().collect();
    assert_eq!(unique.len(), 50);
    eprintln!("received {} messages for 50 alerts ({} duplicates)", received.len(), received.len() - unique.len());
    // The row leaves the outbox just before the ack callback runs: wait for the callback.
    assert!(wait_until(Duration::from_secs(60), || *acked.lock().unwrap() == 50), "acked {}", acked.lock().unwrap());
    rt.block_on(link.shutdown(Duration::from_secs(3)));
    let _ = std::fs::remove_file(&db);
}

/// A clean stop while connected delivers what was committed just before it (the alerts a
/// pool stores while it drains at SIGTERM) instead of leaving them for the next start.
#[test]
fn a_clean_stop_delivers_the_rows_committed_before_it() {
    let _scenario = crate::common::scenario(module_path!());
    let port = free_port();
    let _broker = Mosquitto::start(port);
    let got = subscriber(port, "gridsight/test/alerts");
    std::thread::sleep(Duration::from_millis(800));

    let db = std::env::temp_dir().join(format!("gridsight-stop-drain-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let outbox = Arc::new(Mutex::new(Outbox::open(&db, 64 << 20).unwrap()));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let opts = LinkOptions {
        max_inflight: 10,
        ..LinkOptions::new("127.0.0.1", port, "gridsight-test-stop", "gridsight/test/availability-stop")
    };
    let link = {
        let _rt = rt.enter();
        MqttLink::start(opts, outbox.clone(), Arc::new(|_| {}))
    };
    assert!(
        wait_until(Duration::from_secs(60), || link.stats.connected.load(std::sync::atomic::Ordering::SeqCst)),
        "the link did not connect"
    );
    for i in 0..40 {
        outbox.lock().unwrap().push(&alert(i)).unwrap();
    }
    link.notify();
    rt.block_on(link.shutdown(Duration::from_secs(3)));
    assert_eq!(outbox.lock().unwrap().len().unwrap(), 0, "rows left in the outbox after a clean stop");
    assert!(
        wait_until(Duration::from_secs(30), || {
            let g = got.lock().unwrap();
            (0..40).all(|i| g.contains(&format!("alert-{i:03}")))
        }),
        "missing after the stop: {:?}",
        (0..40).filter(|i| !got.lock().unwrap().contains(&format!("alert-{i:03}"))).collect::<Vec<_>>()
    );
    let _ = std::fs::remove_file(&db);
}
