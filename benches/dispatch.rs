//! The dispatcher at district scale, without MQTT: how fast alerts become orders (each a
//! SQLite transaction with `synchronous = FULL`, the order and its events committed
//! together), how long a timer pass takes with thousands of open orders, and statistics.
//! Run: `cargo bench --bench dispatch`.
//!
//! 1,090 cameras in 40 grids of 6 inspectors; 10,000 alerts: every camera's first alert
//! opens an order, later ones attach to it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_node::config::{Community, Dispatch, Grid, GridCell, Inspector, Route, Schedule};
use edge_node::dispatch::{AlertOutcome, Dispatcher, stats};
use edge_node::outbox::Outbox;
use edge_node::rules::LocalTime;

const CAMERAS: usize = 1090;
const GRIDS: usize = 40;
const ALERTS: usize = 10_000;

fn grid() -> Grid {
    let mut g = Grid { communities: vec![Community { id: "c".into(), name: "c".into() }], ..Grid::default() };
    for i in 0..GRIDS {
        g.grids.push(GridCell {
            id: format!("g{i}"),
            name: format!("g{i}"),
            community: "c".into(),
            leader: Some(format!("g{i}-i0")),
        });
        for k in 0..6 {
            g.inspectors.push(Inspector {
                id: format!("g{i}-i{k}"),
                name: "x".into(),
                grid: format!("g{i}"),
                contact_topic: None,
                duty: Schedule::always(),
            });
        }
    }
    g
}

fn alert(n: usize) -> Vec<u8> {
    let cam = n % CAMERAS;
    serde_json::to_vec(&serde_json::json!({
        "schema": "gridsight.alert", "version": 1, "id": format!("bench-{n:06}"), "type": "new",
        "node": format!("node{}", cam / 100), "camera": format!("cam{cam:04}"), "rule": "park",
        "category": "illegal_parking", "severity": "medium", "dispatch": true, "label": "car", "score": 0.8,
        "zone": "kerb", "micro_grid": "m", "grid": format!("g{}", cam % GRIDS), "snapshot": null,
    }))
    .unwrap()
}

fn main() {
    let dir = std::env::temp_dir().join(format!("gridsight-bench-dispatch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(Mutex::new(Outbox::open(&dir.join("dispatch.db"), 4 << 30).unwrap()));
    let config = Dispatch {
        enabled: true,
        stats_interval: Duration::from_secs(60),
        retention: Duration::from_secs(90 * 86_400),
        routes: vec![Route::default_for("*")],
        nearest_max_open: 3,
        position_max_age: Duration::from_secs(120),
    };
    let calendar = Arc::new(|_| LocalTime { weekday: 0, minute: 600 });
    let d = Dispatcher::new(store.clone(), grid(), config, "gridsight", calendar).unwrap();
    let t0 = 1_796_032_800_000i64;

    let started = Instant::now();
    let (mut created, mut attached) = (0, 0);
    let mut worst = Duration::ZERO;
    for n in 0..ALERTS {
        let one = Instant::now();
        match d.handle_alert(&alert(n), t0 + n as i64).unwrap() {
            AlertOutcome::Created(_) => created += 1,
            AlertOutcome::Attached(_) => attached += 1,
            other => panic!("{other:?}"),
        }
        worst = worst.max(one.elapsed());
    }
    let took = started.elapsed();
    println!(
        "dispatch alerts: {ALERTS} alerts from {CAMERAS} cameras ({created} orders, {attached} attached) in {:.2} s: {:.0} alerts/s, {:.2} ms each on average, worst {:.1} ms",
        took.as_secs_f64(),
        ALERTS as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / ALERTS as f64,
        worst.as_secs_f64() * 1000.0
    );

    let started = Instant::now();
    let idle = d.tick(t0 + 60_000).unwrap();
    let idle_took = started.elapsed();
    let started = Instant::now();
    let fired = d.tick(t0 + 11 * 60_000).unwrap();
    let fired_took = started.elapsed();
    println!(
        "dispatch timers: a pass with {created} open orders and none due: {:.2} ms; {fired} accept deadlines due at once (reassignments): {:.0} ms ({idle} fired in the first pass)",
        idle_took.as_secs_f64() * 1000.0,
        fired_took.as_secs_f64() * 1000.0
    );
    let started = Instant::now();
    let groups = stats::compute(store.lock().unwrap().connection(), 0).unwrap();
    println!(
        "dispatch stats: {} grid/category groups over {created} orders in {:.1} ms",
        groups.len(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
