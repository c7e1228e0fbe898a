//! The dispatcher driven with a paused clock: every scenario of the lifecycle, restarts in
//! every state, and hostile updates.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::config::{Community, GridCell, Inspector, Priority, Schedule};

/// Monday 2026-11-30 10:00 UTC.
const T0: i64 = 1_796_032_800_000;
const MIN: i64 = 60_000;

fn utc_calendar() -> Calendar {
    Arc::new(|ms: i64| {
        let day = ms.div_euclid(86_400_000);
        LocalTime { weekday: ((day + 3).rem_euclid(7)) as u8, minute: (ms.rem_euclid(86_400_000) / MIN) as u16 }
    })
}

fn inspector(id: &str, grid: &str, duty: &[&str]) -> Inspector {
    let duty: Vec<String> = duty.iter().map(|s| s.to_string()).collect();
    Inspector {
        id: id.into(),
        name: id.into(),
        grid: grid.into(),
        contact_topic: None,
        duty: Schedule::parse(&duty).unwrap(),
    }
}

/// g1: a1 and a2 always on duty, `lead` its leader (on duty on Sundays only); g2: b1 on
/// duty on Saturdays only, no leader.
fn grid() -> Grid {
    Grid {
        communities: vec![Community { id: "c1".into(), name: "c1".into() }],
        grids: vec![
            GridCell { id: "g1".into(), name: "g1".into(), community: "c1".into(), leader: Some("lead".into()) },
            GridCell { id: "g2".into(), name: "g2".into(), community: "c1".into(), leader: None },
        ],
        micro_grids: vec![],
        inspectors: vec![
            inspector("a1", "g1", &[]),
            inspector("a2", "g1", &[]),
            inspector("lead", "g1", &["sun 08:00-18:00"]),
            inspector("b1", "g2", &["sat 08:00-18:00"]),
        ],
    }
}

fn routes() -> Dispatch {
    let mut parking = Route::default_for("illegal_parking");
    parking.priority = Priority::High;
    Dispatch {
        enabled: true,
        stats_interval: Duration::from_secs(60),
        retention: Duration::from_secs(86_400 * 30),
        routes: vec![parking, Route::default_for("*")],
        nearest_max_open: 3,
        position_max_age: Duration::from_secs(120),
    }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gridsight-dispatch-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("dispatch.db")
}

fn open(path: &Path) -> Dispatcher {
    let store = Arc::new(Mutex::new(Outbox::open(path, 64 << 20).unwrap()));
    Dispatcher::new(store, grid(), routes(), "gs", utc_calendar()).unwrap()
}

fn alert(id: &str, camera: &str, kind: &str, grid: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schema": "gridsight.alert", "version": 1, "id": id, "type": kind, "incident": format!("n1/{camera}/r1/1"),
        "node": "n1", "camera": camera, "rule": "r1", "category": "illegal_parking", "severity": "medium",
        "dispatch": true, "label": "car", "score": 0.8, "track": 1, "zone": "kerb", "count": null,
        "micro_grid": "m1", "grid": grid, "started_at": "2026-11-30T10:00:00.000Z", "ended_at": null,
        "snapshot": format!("gs/n1/snapshots/{id}"),
    }))
    .unwrap()
}

fn update(id: &str, order: &str, action: &str, by: &str, extra: serde_json::Value) -> Vec<u8> {
    let mut v = serde_json::json!({"id": id, "order": order, "action": action, "by": by});
    for (k, x) in extra.as_object().cloned().unwrap_or_default() {
        v[k] = x;
    }
    serde_json::to_vec(&v).unwrap()
}

fn created(d: &Dispatcher, id: &str, camera: &str, grid: &str, now: i64) -> String {
    match d.handle_alert(&alert(id, camera, "new", grid), now).unwrap() {
        AlertOutcome::Created(o) => o,
        other => panic!("{other:?}"),
    }
}

fn order(d: &Dispatcher, id: &str) -> Order {
    d.orders().unwrap().into_iter().find(|o| o.id == id).unwrap()
}

fn act(d: &Dispatcher, sender: &str, u: &[u8], now: i64) -> Reply {
    d.handle_update(sender, u, now).unwrap()
}

/// Order events in the outbox, as (topic, event, order id, assignee).
fn events(d: &Dispatcher) -> Vec<(String, String, String, String)> {
    d.store()
        .lock()
        .unwrap()
        .pending(0, 10_000)
        .unwrap()
        .into_iter()
        .filter(|r| r.message.kind == Kind::Order)
        .filter_map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.message.payload).ok()?;
            Some((
                r.message.topic,
                v["event"].as_str()?.to_string(),
                v["order"]["id"].as_str()?.to_string(),
                v["order"]["assignee"].as_str().unwrap_or("-").to_string(),
            ))
        })
        .collect()
}

#[test]
fn alert_to_assigned_accepted_on_site_resolved() {
    let d = open(&temp("lifecycle"));
    let o = created(&d, "al-1", "cam1", "g1", T0);
    assert_eq!(o, "o-al-1");
    let got = order(&d, &o);
    assert_eq!((got.state, got.assignee.as_deref(), got.priority.as_str()), (State::Assigned, Some("a1"), "high"));
    assert_eq!(got.deadline_ms, Some(T0 + 10 * MIN));
    let ev = events(&d);
    assert!(ev.contains(&("gs/dispatch/orders".into(), "created".into(), o.clone(), "-".into())), "{ev:?}");
    assert!(ev.contains(&("gs/dispatch/orders".into(), "assigned".into(), o.clone(), "a1".into())));
    assert!(ev.contains(&("gs/dispatch/inspectors/a1".into(), "assigned".into(), o.clone(), "a1".into())));

    let r = act(&d, "a1", &update("u1", &o, "accept", "a1", serde_json::json!({})), T0 + 2 * MIN);
    assert!(r.ok, "{r:?}");
    assert_eq!(r.state, Some(crate::contract::OrderState::Accepted));
    assert_eq!(order(&d, &o).deadline_ms, Some(T0 + 2 * MIN + 2 * 60 * MIN));
    assert!(act(&d, "a1", &update("u2", &o, "arrive", "a1", serde_json::json!({})), T0 + 9 * MIN).ok);
    assert_eq!(order(&d, &o).state, State::OnSite);
    let r = act(&d, "a1", &update("u3", &o, "resolve", "a1", serde_json::json!({"note": "car moved"})), T0 + 30 * MIN);
    assert!(r.ok, "{r:?}");
    let got = order(&d, &o);
    assert_eq!(got.state, State::Resolved);
    assert_eq!(
        (got.accepted_ms, got.on_site_ms, got.resolved_ms),
        (Some(T0 + 2 * MIN), Some(T0 + 9 * MIN), Some(T0 + 30 * MIN))
    );
    assert_eq!(got.deadline_ms, None);
    assert_eq!(got.note.as_deref(), Some("car moved"));
    // No timer fires for a closed order.
    assert_eq!(d.tick(T0 + 1000 * MIN).unwrap(), 0);

    let s = stats::compute(d.store().lock().unwrap().connection(), 0).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(
        (s[0].grid.as_str(), s[0].category.as_str(), s[0].created, s[0].resolved),
        ("g1", "illegal_parking", 1, 1)
    );
    assert_eq!(s[0].handled_rate(), 1.0);
    assert_eq!(stats::percentile(&s[0].to_accept, 0.5), Some(120.0));
    assert_eq!(stats::percentile(&s[0].to_resolve, 0.9), Some(1800.0));
    assert!(stats::metrics_text(&s).contains("gridsight_orders_resolved{grid=\"g1\",category=\"illegal_parking\"} 1"));
}

#[test]
fn fewest_open_orders_first_round_robin_on_ties() {
    let d = open(&temp("rr"));
    let who = |o: &str| order(&d, o).assignee.unwrap();
    let o1 = created(&d, "al-1", "cam1", "g1", T0);
    let o2 = created(&d, "al-2", "cam2", "g1", T0 + 1);
    let o3 = created(&d, "al-3", "cam3", "g1", T0 + 2);
    assert_eq!((who(&o1), who(&o2), who(&o3)), ("a1".into(), "a2".into(), "a1".into()));
    // a1 has 2 open, a2 has 1: a2 next, whatever the round-robin position.
    let o4 = created(&d, "al-4", "cam4", "g1", T0 + 3);
    assert_eq!(who(&o4), "a2");
    // 2 each: round-robin continues after a2 (the last assigned) with a1.
    let o5 = created(&d, "al-5", "cam5", "g1", T0 + 4);
    assert_eq!(who(&o5), "a1");
    // The leader is not on duty on Mondays and never got one.
    assert!(d.orders().unwrap().iter().all(|o| o.assignee.as_deref() != Some("lead")));
}

#[test]
fn nobody_on_duty_escalates_at_once() {
    let d = open(&temp("nobody"));
    // g2 has no leader: straight to the control room.
    let o = created(&d, "al-1", "cam9", "g2", T0);
    let got = order(&d, &o);
    assert_eq!((got.state, got.assignee.as_deref(), got.deadline_ms), (State::Escalated, Some(CONTROL_ROOM), None));
    let ev = events(&d);
    assert!(
        ev.contains(&("gs/dispatch/control_room".into(), "escalated".into(), o.clone(), CONTROL_ROOM.into())),
        "{ev:?}"
    );
    // On Saturday b1 is on duty and gets the next one.
    let saturday = T0 + 5 * 86_400_000;
    let o2 = created(&d, "al-2", "cam8", "g2", saturday);
    assert_eq!(order(&d, &o2).assignee.as_deref(), Some("b1"));
    // A camera without a grid: control room.
    let o3 = created(&d, "al-3", "cam7", "nowhere", T0);
    assert_eq!(order(&d, &o3).assignee.as_deref(), Some(CONTROL_ROOM));
}

#[test]
fn accept_timeout_reassigns_then_escalates_to_leader_then_control_room() {
    let d = open(&temp("timeouts"));
    let o = created(&d, "al-1", "cam1", "g1", T0);
    assert_eq!(d.tick(T0 + 10 * MIN - 1).unwrap(), 0, "nothing before the deadline");
    assert_eq!(order(&d, &o).assignee.as_deref(), Some("a1"));
    assert_eq!(d.tick(T0 + 10 * MIN).unwrap(), 1);
    let got = order(&d, &o);
    assert_eq!((got.state, got.assignee.as_deref(), got.reassignments), (State::Assigned, Some("a2"), 1));
    assert_eq!(got.deadline_ms, Some(T0 + 20 * MIN));
    // a2 lets it time out too: reassign allowance (1) used up, so the leader.
    assert_eq!(d.tick(T0 + 20 * MIN).unwrap(), 1);
    let got = order(&d, &o);
    assert_eq!((got.state, got.assignee.as_deref()), (State::Escalated, Some("lead")));
    assert_eq!(got.deadline_ms, Some(T0 + 30 * MIN));
    // The leader does nothing either: the control room, without a further deadline.
    assert_eq!(d.tick(T0 + 30 * MIN).unwrap(), 1);
    let got = order(&d, &o);
    assert_eq!((got.state, got.assignee.as_deref(), got.deadline_ms), (State::Escalated, Some(CONTROL_ROOM), None));
    assert_eq!(got.escalations, 2);
    assert_eq!(d.tick(T0 + 10_000 * MIN).unwrap(), 0);
    // The control room hands it to a1 again.
    let r = act(
        &d,
        CONTROL_ROOM,
        &update("c1", &o, "assign", CONTROL_ROOM, serde_json::json!({"to": "a1"})),
        T0 + 40 * MIN,
    );
    assert!(r.ok, "{r:?}");
    assert_eq!(order(&d, &o).assignee.as_deref(), Some("a1"));
    let names: Vec<String> = events(&d).into_iter().filter(|e| e.0 == "gs/dispatch/orders").map(|e| e.1).collect();
    assert_eq!(names, ["created", "assigned", "reassigned", "escalated", "escalated", "assigned"]);
}

#[test]
fn not_resolved_in_time_escalates_and_the_worker_can_still_finish() {
    let d = open(&temp("resolve-timeout"));
    let o = created(&d, "al-1", "cam1", "g1", T0);
    assert!(act(&d, "a1", &update("u1", &o, "accept", "a1", serde_json::json!({})), T0 + MIN).ok);
    assert_eq!(d.tick(T0 + MIN + 120 * MIN - 1).unwrap(), 0);
    assert_eq!(d.tick(T0 + MIN + 120 * MIN).unwrap(), 1);
    let got = order(&d, &o);
    assert_eq!(
        (got.state, got.assignee.as_deref(), got.worker.as_deref()),
        (State::Escalated, Some("lead"), Some("a1"))
    );
    assert!(act(&d, "a1", &update("u2", &o, "arrive", "a1", serde_json::json!({})), T0 + 125 * MIN).ok);
    assert!(act(&d, "a1", &update("u3", &o, "resolve", "a1", serde_json::json!({})), T0 + 130 * MIN).ok);
    assert_eq!(order(&d, &o).state, State::Resolved);
}

#[test]
fn rejected_goes_to_the_next_inspector_then_up() {
    let d = open(&temp("reject"));
    let o = created(&d, "al-1", "cam1", "g1", T0);
    let r = act(&d, "a1", &update("u1", &o, "reject", "a1", serde_json::json!({})), T0 + MIN);
    assert!(!r.ok && r.detail.contains("reason"), "{r:?}");
    assert_eq!(order(&d, &o).assignee.as_deref(), Some("a1"), "refused: nothing changed");
    assert!(act(&d, "a1", &update("u2", &o, "reject", "a1", serde_json::json!({"reason": "off sick"})), T0 + MIN).ok);
    assert_eq!(order(&d, &o).assignee.as_deref(), Some("a2"));
    assert!(act(&d, "a2", &update("u3", &o, "reject", "a2", serde_json::json!({"reason": "other job"})), T0 + MIN).ok);
    let got = order(&d, &o);
    assert_eq!((got.state, got.assignee.as_deref()), (State::Escalated, Some("lead")));
    // The leader takes it on.
    assert!(act(&d, "lead", &update("u4", &o, "accept", "lead", serde_json::json!({})), T0 + 2 * MIN).ok);
    assert_eq!(order(&d, &o).worker.as_deref(), Some("lead"));
}

#[test]
fn one_order_per_incident_and_replays_change_nothing() {
    let path = temp("dedupe");
    let d = open(&path);
    let o = created(&d, "al-1", "cam1", "g1", T0);
    assert_eq!(
        d.handle_alert(&alert("al-2", "cam1", "update", "g1"), T0 + 1).unwrap(),
        AlertOutcome::Attached(o.clone())
    );
    assert_eq!(d.handle_alert(&alert("al-3", "cam1", "new", "g1"), T0 + 2).unwrap(), AlertOutcome::Attached(o.clone()));
    assert_eq!(d.handle_alert(&alert("al-4", "cam1", "end", "g1"), T0 + 3).unwrap(), AlertOutcome::Attached(o.clone()));
    // Replayed (at-least-once delivery, or after a restart): nothing changes.
    assert_eq!(d.handle_alert(&alert("al-1", "cam1", "new", "g1"), T0 + 4).unwrap(), AlertOutcome::Duplicate);
    assert_eq!(d.handle_alert(&alert("al-3", "cam1", "new", "g1"), T0 + 4).unwrap(), AlertOutcome::Duplicate);
    drop(d);
    let d = open(&path);
    assert_eq!(d.handle_alert(&alert("al-1", "cam1", "new", "g1"), T0 + 5).unwrap(), AlertOutcome::Duplicate);
    assert_eq!(d.orders().unwrap().len(), 1);
    let got = order(&d, &o);
    assert_eq!((got.alerts, got.last_alert.as_str()), (4, "al-4"));
    // Another camera is another incident; an update without an open order makes none.
    assert!(matches!(d.handle_alert(&alert("al-5", "cam2", "new", "g1"), T0 + 6).unwrap(), AlertOutcome::Created(_)));
    assert!(matches!(
        d.handle_alert(&alert("al-6", "cam3", "update", "g1"), T0 + 6).unwrap(),
        AlertOutcome::Ignored(_)
    ));
    // Once closed, a new alert of the same camera/rule/zone opens a new order.
    assert!(
        act(&d, "a1", &update("u1", &o, "cancel", "a1", serde_json::json!({"reason": "false alarm: shadow"})), T0 + 7)
            .ok
    );
    assert_eq!(order(&d, &o).cancel_reason.as_deref(), Some("false alarm: shadow"));
    assert!(
        matches!(d.handle_alert(&alert("al-7", "cam1", "new", "g1"), T0 + 8).unwrap(), AlertOutcome::Created(n) if n == "o-al-7")
    );
    // A rule that does not dispatch, and garbage, make no order.
    let mut quiet: serde_json::Value = serde_json::from_slice(&alert("al-8", "cam4", "new", "g1")).unwrap();
    quiet["dispatch"] = false.into();
    assert!(matches!(d.handle_alert(&serde_json::to_vec(&quiet).unwrap(), T0).unwrap(), AlertOutcome::Ignored(_)));
    for bad in [&b"{"[..], b"[]", br#"{"schema":"gridsight.alert","version":1}"#, b"\xff"] {
        assert!(matches!(d.handle_alert(bad, T0).unwrap(), AlertOutcome::Refused(_)));
    }
    assert_eq!(d.orders().unwrap().len(), 3);
}

#[test]
fn cancel_needs_a_reason_and_the_right_person() {
    let d = open(&temp("cancel"));
    let o = created(&d, "al-1", "cam1", "g1", T0);
    assert!(!act(&d, "a1", &update("u1", &o, "cancel", "a1", serde_json::json!({})), T0).ok);
    assert!(!act(&d, "a2", &update("u2", &o, "cancel", "a2", serde_json::json!({"reason": "x"})), T0).ok);
    assert_eq!(order(&d, &o).state, State::Assigned);
    // The longest reason and note allowed, of the characters JSON makes longest.
    let (reason, note) = ("é".repeat(150), "\"".repeat(300));
    assert!(
        act(&d, "lead", &update("u3", &o, "cancel", "lead", serde_json::json!({"reason": reason, "note": note})), T0)
            .ok
    );
    let biggest = d.store().lock().unwrap().pending(0, 1000).unwrap().iter().map(|r| r.message.payload.len()).max();
    assert!(biggest.unwrap() < 4096, "every event stays under 4 KiB: {biggest:?}");
    assert_eq!(order(&d, &o).state, State::Cancelled);
    let r = act(&d, "a1", &update("u4", &o, "accept", "a1", serde_json::json!({})), T0);
    assert!(!r.ok && r.detail.contains("cancelled"), "{r:?}");
}

#[test]
fn hostile_updates_are_refused_and_change_nothing() {
    let d = open(&temp("hostile"));
    let o = created(&d, "al-1", "cam1", "g1", T0);
    assert!(act(&d, "a1", &update("ok-1", &o, "accept", "a1", serde_json::json!({})), T0 + MIN).ok);
    let before = d.orders().unwrap();
    let events_before = events(&d).len();
    let long = "x".repeat(2000);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a1", update("h1", "o-nope", "arrive", "a1", serde_json::json!({})), "unknown order"),
        ("a2", update("h2", &o, "arrive", "a2", serde_json::json!({})), "only a1"),
        ("a2", update("h3", &o, "resolve", "a2", serde_json::json!({})), "only the inspector"),
        ("a1", update("h4", &o, "accept", "a1", serde_json::json!({})), "not allowed while the order is accepted"),
        ("a1", update("h5", &o, "assign", "a1", serde_json::json!({"to": "a2"})), "only the grid leader"),
        ("a2", update("h6", &o, "arrive", "a1", serde_json::json!({})), "came on a2's topic"),
        ("mallory", update("h7", &o, "resolve", "mallory", serde_json::json!({})), "unknown sender"),
        ("a1", b"{\"id\": \"h8\", \"order\": ".to_vec(), "not a valid update"),
        ("a1", b"[\"h9\", \"o\", \"accept\", \"a1\"]".to_vec(), "not a JSON object"),
        ("a1", br#"{"id":"h10","order":1,"action":"accept","by":"a1"}"#.to_vec(), "invalid type"),
        ("a1", br#"{"id":"h11","order":"x","action":"explode","by":"a1"}"#.to_vec(), "unknown variant"),
        ("a1", br#"{"id":"h12","order":"x","action":"accept","by":"a1","sudo":true}"#.to_vec(), "unknown field"),
        ("a1", update("h13", &o, "resolve", "a1", serde_json::json!({"note": long})), "300 bytes"),
        ("a1", vec![0xde, 0xad, 0xbe, 0xef], "UTF-8"),
        // A replay of the accept that already succeeded: answered again, no change.
        ("a1", update("ok-1", &o, "accept", "a1", serde_json::json!({})), "already handled"),
    ];
    for (sender, payload, want) in cases {
        let r = act(&d, sender, &payload, T0 + 2 * MIN);
        let replay = want == "already handled";
        assert_eq!(r.ok, replay, "{want}: {r:?}");
        assert!(r.detail.contains(want), "{want}: {r:?}");
        assert_eq!(r.duplicate, replay);
    }
    assert_eq!(d.orders().unwrap(), before, "state unchanged");
    assert_eq!(events(&d).len(), events_before, "nothing announced");
    // A replayed *old* update (accept) after the order moved on is refused the same way.
    assert!(act(&d, "a1", &update("ok-2", &o, "resolve", "a1", serde_json::json!({})), T0 + 3 * MIN).ok);
    let r = act(&d, "a1", &update("ok-x", &o, "accept", "a1", serde_json::json!({})), T0 + 4 * MIN);
    assert!(!r.ok && r.detail.contains("resolved"), "{r:?}");
}

/// Drop the dispatcher in each state, reopen the database, and carry on: the state is as
/// left, the stored deadline fires at its time, a replayed alert makes no second order.
#[test]
fn restart_in_every_state_continues_where_it_was() {
    let path = temp("restart");
    let mut d = open(&path);
    let o = created(&d, "al-1", "cam1", "g1", T0);
    let reopen = |d: Dispatcher| {
        drop(d);
        open(&path)
    };

    // assigned: the accept deadline survives the restart.
    d = reopen(d);
    assert_eq!(order(&d, &o).state, State::Assigned);
    assert_eq!(d.handle_alert(&alert("al-1", "cam1", "new", "g1"), T0 + 1).unwrap(), AlertOutcome::Duplicate);
    assert_eq!(d.tick(T0 + 10 * MIN - 1).unwrap(), 0);
    d = reopen(d);
    assert_eq!(d.tick(T0 + 10 * MIN).unwrap(), 1, "fires at the stored deadline after a restart");
    assert_eq!(order(&d, &o).assignee.as_deref(), Some("a2"));

    // accepted
    assert!(act(&d, "a2", &update("u1", &o, "accept", "a2", serde_json::json!({})), T0 + 11 * MIN).ok);
    d = reopen(d);
    let got = order(&d, &o);
    assert_eq!(
        (got.state, got.worker.as_deref(), got.deadline_ms),
        (State::Accepted, Some("a2"), Some(T0 + 131 * MIN))
    );
    // The replayed accept is still recognised after the restart.
    assert!(act(&d, "a2", &update("u1", &o, "accept", "a2", serde_json::json!({})), T0 + 12 * MIN).duplicate);

    // on site
    assert!(act(&d, "a2", &update("u2", &o, "arrive", "a2", serde_json::json!({})), T0 + 20 * MIN).ok);
    d = reopen(d);
    assert_eq!(order(&d, &o).state, State::OnSite);

    // escalated (not resolved in time), across a restart, then onwards to the control room
    assert_eq!(d.tick(T0 + 131 * MIN).unwrap(), 1);
    d = reopen(d);
    let got = order(&d, &o);
    assert_eq!((got.state, got.assignee.as_deref()), (State::Escalated, Some("lead")));
    assert_eq!(d.tick(T0 + 141 * MIN - 1).unwrap(), 0);
    d = reopen(d);
    assert_eq!(d.tick(T0 + 141 * MIN).unwrap(), 1);
    assert_eq!(order(&d, &o).assignee.as_deref(), Some(CONTROL_ROOM));

    // resolved
    assert!(act(&d, "a2", &update("u3", &o, "resolve", "a2", serde_json::json!({})), T0 + 150 * MIN).ok);
    d = reopen(d);
    assert_eq!(order(&d, &o).state, State::Resolved);
    assert_eq!(d.orders().unwrap().len(), 1, "never a second order");
    // Every change was announced exactly once (the outbox survived the restarts too).
    let names: Vec<String> = events(&d).into_iter().filter(|e| e.0 == "gs/dispatch/orders").map(|e| e.1).collect();
    assert_eq!(
        names,
        ["created", "assigned", "reassigned", "accepted", "on_site", "escalated", "escalated", "resolved"]
    );
}

/// A state this dispatcher does not know (a newer or damaged database) is an error, not
/// silently "assigned".
#[test]
fn an_unknown_stored_state_is_an_error() {
    let path = temp("unknown-state");
    let d = open(&path);
    let o = created(&d, "a1", "cam1", "g1", T0);
    d.store().locked().connection().execute("UPDATE orders SET state = 'reopened' WHERE id = ?1", [&o]).unwrap();
    let e = d.orders().expect_err("an unknown state must not load");
    assert!(e.to_string().contains("unknown stored order state \"reopened\""), "{e}");
}

fn report(text: &str, point: (f64, f64)) -> reports::NewReport {
    reports::NewReport {
        category: "pothole".into(),
        text: text.into(),
        point: Some(point),
        micro_grid: Some("m1".into()),
        grid: Some("g1".into()),
        photo: None,
        audio: None,
    }
}

#[test]
fn a_low_rating_reopens_the_order_and_the_reporters_see_every_step() {
    let d = open(&temp("reopen"));
    let first = d.handle_report(&report("deep hole", (31.2304, 121.4737)), 50.0, 60 * MIN, T0).unwrap();
    let second = d.handle_report(&report("same hole", (31.23058, 121.4737)), 50.0, 60 * MIN, T0 + MIN).unwrap();
    assert!(second.attached && second.order == first.order, "{second:?}");
    let o = first.order.clone().unwrap();
    assert_eq!(order(&d, &o).assignee.as_deref(), Some("a1"));
    assert!(matches!(d.rate_report(&first.id, 4, "", Some(2), T0).unwrap(), Err(reports::RatingRefused::NotYet(_))));
    assert!(act(&d, "a1", &update("u1", &o, "accept", "a1", serde_json::json!({})), T0 + 2 * MIN).ok);
    let r = act(&d, "a1", &update("u2", &o, "resolve", "a1", serde_json::json!({"note": "patched"})), T0 + 30 * MIN);
    assert!(r.ok, "{r:?}");

    // A good rating changes nothing; a second one is refused.
    assert_eq!(d.rate_report(&first.id, 4, "thanks", Some(2), T0 + 40 * MIN).unwrap(), Ok(false));
    assert_eq!(d.rate_report(&first.id, 1, "", Some(2), T0 + 41 * MIN).unwrap(), Err(reports::RatingRefused::Already));
    assert_eq!(order(&d, &o).state, State::Resolved);
    // A rating at the threshold reopens it: back to the grid, deadlines anew, a1 told why.
    assert_eq!(d.rate_report(&second.id, 2, "still there", Some(2), T0 + 50 * MIN).unwrap(), Ok(true));
    let got = order(&d, &o);
    assert_eq!((got.state, got.closed_ms, got.resolved_ms, got.worker.as_deref()), (State::Assigned, None, None, None));
    assert_eq!(got.deadline_ms, Some(T0 + 50 * MIN + 10 * MIN), "a new accept deadline");
    let ev = events(&d);
    assert!(ev.contains(&("gs/dispatch/inspectors/a1".into(), "reopened".into(), o.clone(), "a1".into())), "{ev:?}");
    assert!(ev.iter().any(|e| e.1 == "reassigned" && e.2 == o && e.3 != "-"), "{ev:?}");

    // Each reporter's timeline: every step in time order, the closing note and the reason.
    let s = d.report_status(&second.id).unwrap().unwrap();
    let steps: Vec<&str> = s.timeline.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(steps, ["assigned", "reported", "accepted", "resolved", "reopened", "reassigned"], "{s:?}");
    let tl = &s.timeline;
    assert_eq!(tl[3].detail.as_deref(), Some("patched"));
    assert!(tl[4].detail.as_deref().unwrap().contains("2/5: \u{201c}still there\u{201d}"), "{s:?}");
    // Inspectors are not named to residents: the timeline has no "by".
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["timeline"].as_array().unwrap().iter().all(|e| e.get("by").is_none()), "{json}");
    assert_eq!(d.report_status(&first.id).unwrap().unwrap().state, "assigned");

    // Statistics: two reports, both rated (mean 3), one reopen; the order open again.
    let stats = stats::compute(d.store().lock().unwrap().connection(), 0).unwrap();
    let g = stats.iter().find(|g| g.grid == "g1" && g.category == "pothole").unwrap();
    assert_eq!((g.created, g.open, g.reports, g.rated, g.rating_mean(), g.reopened), (1, 1, 2, 2, Some(3.0), 1));
    let json = stats::to_json(&stats, 60, "now");
    assert_eq!(json["groups"][0]["rating_mean"], 3.0);
    assert!(stats::metrics_text(&stats).contains("gridsight_orders_reopened{grid=\"g1\",category=\"pothole\"} 1"));

    // It can be worked and resolved again; the reporters who rated cannot rate twice.
    let who = order(&d, &o).assignee.unwrap();
    assert!(act(&d, &who, &update("u3", &o, "accept", &who, serde_json::json!({})), T0 + 55 * MIN).ok);
    assert!(act(&d, &who, &update("u4", &o, "resolve", &who, serde_json::json!({})), T0 + 90 * MIN).ok);
    assert_eq!(d.rate_report(&second.id, 5, "", Some(2), T0 + 95 * MIN).unwrap(), Err(reports::RatingRefused::Already));
    // Without a threshold, no rating reopens.
    let third = d.handle_report(&report("again", (31.2304, 121.4737)), 50.0, 60 * MIN, T0 + 100 * MIN).unwrap();
    let o3 = third.order.unwrap();
    assert_ne!(o3, o, "a closed order takes no new report");
    let a = order(&d, &o3).assignee.unwrap();
    assert!(act(&d, &a, &update("u5", &o3, "accept", &a, serde_json::json!({})), T0 + 101 * MIN).ok);
    assert!(act(&d, &a, &update("u6", &o3, "resolve", &a, serde_json::json!({})), T0 + 102 * MIN).ok);
    assert_eq!(d.rate_report(&third.id, 1, "", None, T0 + 103 * MIN).unwrap(), Ok(false));
    assert_eq!(order(&d, &o3).state, State::Resolved);
}

/// An alert of `camera` placed at `[lon, lat]`.
fn alert_at(id: &str, camera: &str, location: [f64; 2]) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&alert(id, camera, "new", "g1")).unwrap();
    v["location"] = serde_json::json!(location);
    serde_json::to_vec(&v).unwrap()
}

fn assigned_detail(d: &Dispatcher, order: &str) -> String {
    d.order_events(order).unwrap().into_iter().find(|e| e.0 == "assigned").and_then(|e| e.2).unwrap_or_default()
}

#[test]
fn the_nearest_on_duty_inspector_with_room_gets_the_order_and_it_says_why() {
    let d = open(&temp("nearest"));
    let camera = [121.4740, 31.2310];
    let at = |lat: f64, t: i64| Some(Position { location: [121.4740, lat], accuracy_m: 10.0, at_ms: t });
    // a1 about 800 m north of the camera, a2 about 150 m: a2, though a1 comes first in turn.
    d.set_position("a1", at(31.2382, T0));
    d.set_position("a2", at(31.23235, T0));
    let AlertOutcome::Created(o1) = d.handle_alert(&alert_at("x1", "cam-1", camera), T0).unwrap() else { panic!() };
    assert_eq!(order(&d, &o1).assignee.as_deref(), Some("a2"));
    assert_eq!(assigned_detail(&d, &o1), "nearest, 150 m");
    assert_eq!(order(&d, &o1).view().location, Some(camera));

    // a2 holds as many open orders as `nearest_max_open`: the next nearest, a1.
    for (i, cam) in ["cam-2", "cam-3"].iter().enumerate() {
        d.set_position("a1", None);
        let AlertOutcome::Created(o) = d.handle_alert(&alert_at(&format!("y{i}"), cam, camera), T0 + 1000).unwrap()
        else {
            panic!()
        };
        assert_eq!(order(&d, &o).assignee.as_deref(), Some("a2"), "a1 shares no position");
    }
    d.set_position("a1", at(31.2382, T0 + 2000));
    let AlertOutcome::Created(o4) = d.handle_alert(&alert_at("z1", "cam-4", camera), T0 + 2000).unwrap() else {
        panic!()
    };
    assert_eq!(order(&d, &o4).assignee.as_deref(), Some("a1"));
    assert!(assigned_detail(&d, &o4).starts_with("nearest, 8"), "{}", assigned_detail(&d, &o4));

    // Positions older than position_max_age (2 min) are not used: the fewest open orders
    // first again (a1 has 1, a2 has 3), and the order says nothing of distance.
    let late = T0 + 2000 + 3 * MIN;
    let AlertOutcome::Created(o5) = d.handle_alert(&alert_at("w1", "cam-5", camera), late).unwrap() else { panic!() };
    assert_eq!(order(&d, &o5).assignee.as_deref(), Some("a1"));
    assert_eq!(assigned_detail(&d, &o5), "created");
    // An alert without a place is assigned as before, whatever the positions.
    d.set_position("a2", at(31.2311, late));
    let o6 = created(&d, "v1", "cam-6", "g1", late);
    assert_eq!(assigned_detail(&d, &o6), "created");
}
