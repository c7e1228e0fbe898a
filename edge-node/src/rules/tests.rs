//! Table-driven rule tests on a 100x100 pixel frame with pixel coordinates.
//! Zone "bay": the square 20..80 × 20..80. Line "gate": vertical x = 50, from y 0 to 100
//! (walking down the screen, left is +x... see `side`: right of a downward walk is -x).

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::config::{Coordinates, Direction, Rule, RuleKind, Schedule, Severity};
use crate::geometry::{Point, Polygon, Polyline};
use crate::track::Track;
use crate::types::Face;

fn sec(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The wall clock of the frame at stream time `t`: a clock that runs 1 % fast against the
/// stream's, as cameras' do a little.
fn wall(t: Duration) -> std::time::SystemTime {
    std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + t + t / 100
}

fn rule(kind: RuleKind, cooldown: f64) -> Rule {
    Rule {
        id: "r".into(),
        category: "cat".into(),
        severity: Severity::Medium,
        min_score: 0.5,
        cooldown: sec(cooldown),
        dispatch: true,
        kind,
    }
}

fn engine(r: Rule) -> RuleEngine {
    let mut zones = BTreeMap::new();
    zones.insert(
        "bay".to_string(),
        Polygon::new(vec![Point::new(20., 20.), Point::new(80., 20.), Point::new(80., 80.), Point::new(20., 80.)])
            .unwrap(),
    );
    let mut lines = BTreeMap::new();
    lines.insert("gate".to_string(), Polyline::new(vec![Point::new(50., 0.), Point::new(50., 100.)]).unwrap());
    RuleEngine::new(vec![r], zones, lines, Coordinates::Pixel)
}

/// A person or car standing with its feet (bottom-centre) at (x, y).
fn at(id: u64, label: &str, x: f32, y: f32, stationary: bool) -> Track {
    Track::at(id, label, [x - 5.0, y - 20.0, x + 5.0, y], 0.9, stationary, Duration::ZERO)
}

const NOON: LocalTime = LocalTime { weekday: 2, minute: 12 * 60 };

/// An empty scene at `t` seconds, noon, on the 100x100 frame: tests fill in what they see.
fn scene_at<'a>(t: f64) -> Scene<'a> {
    Scene {
        tracks: &[],
        objects: &[],
        stills: &[],
        faces: &[],
        ended: &[],
        frame: (100, 100),
        t: sec(t),
        wall: wall(sec(t)),
        local: NOON,
    }
}

/// Runs frames of (time, tracks, ended, local time); returns the events as "t:kind:track".
fn run(engine: &mut RuleEngine, frames: &[(f64, Vec<Track>, Vec<Track>, LocalTime)]) -> Vec<String> {
    let mut out = Vec::new();
    for (t, tracks, ended, local) in frames {
        let refs: Vec<&Track> = tracks.iter().collect();
        let scene = Scene {
            tracks: &refs,
            objects: &[],
            stills: &[],
            faces: &[],
            ended,
            frame: (100, 100),
            t: sec(*t),
            wall: wall(sec(*t)),
            local: *local,
        };
        for e in engine.evaluate(&scene) {
            out.push(format!("{t}:{:?}:{}", e.kind, e.track.map_or("-".into(), |t| t.to_string())));
        }
    }
    out
}

fn dwell(stationary_only: bool, min: f64) -> RuleKind {
    RuleKind::ZoneDwell { zone: "bay".into(), classes: vec!["car".into()], min_duration: sec(min), stationary_only }
}

#[test]
fn zone_dwell_table() {
    struct Case {
        name: &'static str,
        kind: RuleKind,
        frames: Vec<(f64, Vec<Track>, Vec<Track>, LocalTime)>,
        want: Vec<&'static str>,
    }
    let car = |x, y, st| vec![at(1, "car", x, y, st)];
    let cases = vec![
        Case {
            name: "parked past the minimum, then leaves",
            kind: dwell(false, 10.0),
            frames: vec![
                (0.0, car(50., 50., false), vec![], NOON),
                (9.0, car(50., 50., true), vec![], NOON),
                (10.0, car(50., 50., true), vec![], NOON),
                (12.0, car(95., 50., false), vec![], NOON),
            ],
            want: vec!["10:New:1", "12:End:1"],
        },
        Case {
            name: "on the border counts as inside",
            kind: dwell(false, 1.0),
            frames: vec![(0.0, car(20., 50., true), vec![], NOON), (1.0, car(20., 50., true), vec![], NOON)],
            want: vec!["1:New:1"],
        },
        Case {
            name: "just outside never fires",
            kind: dwell(false, 1.0),
            frames: vec![(0.0, car(19.9, 50., true), vec![], NOON), (5.0, car(19.9, 50., true), vec![], NOON)],
            want: vec![],
        },
        Case {
            name: "stationary_only: a car that keeps moving in the zone never fires",
            kind: dwell(true, 2.0),
            frames: vec![
                (0.0, car(30., 50., false), vec![], NOON),
                (2.0, car(50., 50., false), vec![], NOON),
                (4.0, car(70., 50., false), vec![], NOON),
            ],
            want: vec![],
        },
        Case {
            name: "stationary_only: counts from when it stopped",
            kind: dwell(true, 2.0),
            frames: vec![
                (0.0, car(30., 50., false), vec![], NOON),
                (5.0, car(50., 50., true), vec![], NOON),
                (6.0, car(50., 50., true), vec![], NOON),
                (7.0, car(50., 50., true), vec![], NOON),
            ],
            want: vec!["7:New:1"],
        },
        Case {
            name: "the track ends inside: incident ends",
            kind: dwell(false, 1.0),
            frames: vec![
                (0.0, car(50., 50., true), vec![], NOON),
                (1.0, car(50., 50., true), vec![], NOON),
                (5.0, vec![], car(50., 50., true), NOON),
            ],
            want: vec!["1:New:1", "5:End:1"],
        },
    ];
    for c in cases {
        let got = run(&mut engine(rule(c.kind, 60.0)), &c.frames);
        assert_eq!(got, c.want, "{}", c.name);
    }
}

#[test]
fn zone_enter_cooldown_and_midnight_schedule() {
    let enter = |sched: &[&str]| RuleKind::ZoneEnter {
        zone: "bay".into(),
        classes: vec!["person".into()],
        schedule: Schedule::parse(&sched.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap(),
        shortest_visit: None,
    };
    let p = |x| vec![at(7, "person", x, 50., false)];
    // Enter, leave, re-enter within the 30 s cooldown (quiet), again after it (fires).
    let mut e = engine(rule(enter(&[]), 30.0));
    let got = run(
        &mut e,
        &[
            (0.0, p(10.), vec![], NOON),
            (1.0, p(50.), vec![], NOON),
            (2.0, p(90.), vec![], NOON),
            (10.0, p(50.), vec![], NOON),
            (11.0, p(90.), vec![], NOON),
            (40.0, p(50.), vec![], NOON),
        ],
    );
    assert_eq!(got, ["1:New:7", "2:End:7", "40:New:7"]);

    // Night-only rule across midnight: Tuesday 23:59 fires, Wednesday 05:59 still open,
    // 06:00 closes it; a new entry at 06:01 does not fire.
    let t = |weekday, h: u16, m: u16| LocalTime { weekday, minute: h * 60 + m };
    let mut e = engine(rule(enter(&["daily 22:00-06:00"]), 1.0));
    let got = run(
        &mut e,
        &[
            (0.0, p(50.), vec![], t(1, 21, 59)),
            (1.0, p(50.), vec![], t(1, 23, 59)),
            (2.0, p(50.), vec![], t(2, 5, 59)),
            (3.0, p(50.), vec![], t(2, 6, 0)),
            (4.0, p(90.), vec![], t(2, 6, 1)),
            (5.0, p(50.), vec![], t(2, 6, 1)),
        ],
    );
    assert_eq!(got, ["1:New:7", "3:End:7"]);
}

#[test]
fn line_cross_directions_and_back_and_forth() {
    let cross = |d| RuleKind::LineCross {
        line: "gate".into(),
        classes: vec!["person".into()],
        direction: d,
        shortest_visit: None,
    };
    let walk = |xs: &[f32]| -> Vec<(f64, Vec<Track>, Vec<Track>, LocalTime)> {
        xs.iter().enumerate().map(|(i, x)| (i as f64, vec![at(3, "person", *x, 50., false)], vec![], NOON)).collect()
    };
    // Walking the line from (50,0) down to (50,100): +x is the walker's left on screen.
    // x 40 → 60 is right-to-left for this line.
    assert_eq!(run(&mut engine(rule(cross(Direction::RightToLeft), 0.001)), &walk(&[40., 60.])), ["1:New:3"]);
    assert_eq!(run(&mut engine(rule(cross(Direction::LeftToRight), 0.001)), &walk(&[40., 60.])), Vec::<String>::new());
    assert_eq!(run(&mut engine(rule(cross(Direction::LeftToRight), 0.001)), &walk(&[60., 40.])), ["1:New:3"]);
    // Back and forth: every crossing counts with `either` and no cooldown to speak of ...
    assert_eq!(
        run(&mut engine(rule(cross(Direction::Either), 0.001)), &walk(&[40., 60., 40., 60.])),
        ["1:New:3", "2:New:3", "3:New:3"]
    );
    // ... and only the first within a cooldown.
    assert_eq!(run(&mut engine(rule(cross(Direction::Either), 10.0)), &walk(&[40., 60., 40., 60.])), ["1:New:3"]);
    // Standing on the line, then stepping off, is not a crossing.
    assert_eq!(run(&mut engine(rule(cross(Direction::Either), 0.001)), &walk(&[50., 60.])), Vec::<String>::new());
    // Passing beside the line's end (its extension) is not a crossing.
    let beyond: Vec<_> = [40f32, 60.]
        .iter()
        .enumerate()
        .map(|(i, x)| (i as f64, vec![at(3, "person", *x, 150., false)], vec![], NOON))
        .collect();
    assert_eq!(run(&mut engine(rule(cross(Direction::Either), 0.001)), &beyond), Vec::<String>::new());
}

/// A track the rules first see on the far side of the line (confirmed on its second frame,
/// one second after the first) crosses on the move from its previous box: two positions of
/// one track, whichever frames they came from.
#[test]
fn line_cross_counts_the_move_from_the_box_before_the_rules_saw_the_track() {
    let cross = RuleKind::LineCross {
        line: "gate".into(),
        classes: vec!["bicycle".into()],
        direction: Direction::Either,
        shortest_visit: None,
    };
    let mut seen = at(4, "bicycle", 70., 50., false);
    seen.previous = Some([25.0, 30.0, 35.0, 50.0]);
    assert_eq!(run(&mut engine(rule(cross.clone(), 5.0)), &[(1.0, vec![seen.clone()], vec![], NOON)]), ["1:New:4"]);
    // Its previous box on the same side: no crossing.
    seen.previous = Some([55.0, 30.0, 65.0, 50.0]);
    assert_eq!(run(&mut engine(rule(cross, 5.0)), &[(1.0, vec![seen], vec![], NOON)]), Vec::<String>::new());
}

#[test]
fn crowd_builds_updates_and_ends() {
    let kind =
        RuleKind::Crowd { zone: "bay".into(), classes: vec!["person".into()], min_count: 3, min_duration: sec(5.0) };
    let people = |n: u64| (0..n).map(|i| at(i + 1, "person", 30. + i as f32 * 5., 50., false)).collect::<Vec<_>>();
    let frames = vec![
        (0.0, people(3), vec![], NOON),
        (4.0, people(3), vec![], NOON),
        (5.0, people(3), vec![], NOON), // 5 s at 3: fires
        (6.0, people(4), vec![], NOON), // +1: not material
        (7.0, people(6), vec![], NOON), // +3 from 3: update
        (8.0, people(2), vec![], NOON), // below: end only after 3 s
        (10.0, people(2), vec![], NOON),
        (11.0, people(2), vec![], NOON),
    ];
    let got = run(&mut engine(rule(kind, 60.0)), &frames);
    assert_eq!(got, ["5:New:-", "7:Update:-", "11:End:-"]);
}

#[test]
fn face_in_zone_fires_once_then_ends() {
    let kind = RuleKind::FaceInZone { zone: "bay".into(), schedule: Schedule::always() };
    let mut e = engine(rule(kind, 30.0));
    let face = Face { bbox: [40., 40., 50., 52.], score: 0.9, landmarks: [[0.0; 2]; 5] };
    let mut kinds = Vec::new();
    for (t, faces) in
        [(0.0, vec![face.clone()]), (1.0, vec![face.clone()]), (3.0, vec![]), (7.0, vec![]), (8.0, vec![face.clone()])]
    {
        let scene = Scene { faces: &faces, ..scene_at(t) };
        for ev in e.evaluate(&scene) {
            kinds.push(format!("{t}:{:?}:{}", ev.kind, ev.label));
        }
    }
    // Gone 5 s after the last sighting (t = 6, seen at t = 7): ends; t = 8 is within the cooldown.
    assert_eq!(kinds, ["0:New:face", "7:End:face"]);
}

#[test]
fn events_carry_rule_data_and_one_incident_id() {
    let mut e = engine(rule(dwell(false, 1.0), 60.0));
    let car = vec![at(1, "car", 50., 50., true)];
    let refs: Vec<&Track> = car.iter().collect();
    let mut all = Vec::new();
    for t in [0.0, 1.0] {
        all.extend(e.evaluate(&Scene { tracks: &refs, ..scene_at(t) }));
    }
    all.extend(e.evaluate(&Scene { ended: &car, ..scene_at(3.0) }));
    assert_eq!(all.len(), 2);
    let (new, end) = (&all[0], &all[1]);
    assert_eq!((new.kind, end.kind), (EventKind::New, EventKind::End));
    assert_eq!(new.incident, end.incident);
    assert_eq!((new.category.as_str(), new.label.as_str(), new.zone.as_deref()), ("cat", "car", Some("bay")));
    assert_eq!(new.started_at, sec(0.0));
    assert_eq!(end.ended_at, Some(sec(3.0)));
    assert!(new.bbox.is_some());
    // One start on the wall clock for the whole incident, computed when it opened (at t = 1,
    // one stream second after it started), however the clocks drift afterwards.
    assert_eq!(new.started_wall, wall(sec(1.0)) - sec(1.0));
    assert_eq!(end.started_wall, new.started_wall);
}

/// Thousands of tracks pass through over hours: per-track maps (cooldowns included) stay
/// as small as the tracks alive at once.
#[test]
fn per_track_state_stays_bounded() {
    let mut cross = engine(rule(
        RuleKind::LineCross {
            line: "gate".into(),
            classes: vec!["car".into()],
            direction: Direction::Either,
            shortest_visit: None,
        },
        30.0,
    ));
    let mut dwell = engine(rule(dwell(false, 1.0), 30.0));
    let mut peak = 0;
    for n in 0..5_000u64 {
        // Each car crosses the gate and dwells in the bay for 2 s, then ends.
        let t0 = n as f64 * 3.0;
        for (dt, x) in [(0.0, 40.0), (1.0, 60.0), (2.0, 60.0)] {
            let car = vec![at(n, "car", x, 50., true)];
            run(&mut cross, &[(t0 + dt, car.clone(), vec![], NOON)]);
            run(&mut dwell, &[(t0 + dt, car, vec![], NOON)]);
        }
        let gone = vec![at(n, "car", 60., 50., true)];
        run(&mut cross, &[(t0 + 2.5, vec![], gone.clone(), NOON)]);
        run(&mut dwell, &[(t0 + 2.5, vec![], gone, NOON)]);
        peak = peak.max(cross.tracked_entries() + dwell.tracked_entries());
    }
    // A 30 s cooldown covers about 10 cars at a time; nothing grows with the 5,000.
    assert!(peak <= 30, "peak entries {peak}");
}

/// Incident numbers come from the node's allocator: unique across engines (cameras,
/// reloads) and across restarts (a run number that only grows, never below the time).
#[test]
fn incident_numbers_are_unique_across_engines_and_runs() {
    let mut seen = std::collections::HashSet::new();
    let mut stored = None;
    let mut now = 1_800_000_000;
    for restart in 0..3 {
        let run = IncidentIds::next_run(stored, now);
        stored = Some(run);
        // The clock steps back an hour at the second restart: numbers still do not repeat.
        now -= if restart == 1 { 3600 } else { 0 };
        let ids = Arc::new(IncidentIds::new(run));
        for _reload in 0..2 {
            let mut e = engine(rule(dwell(false, 0.0), 0.0)).with_ids(ids.clone());
            for k in 0..20u64 {
                let car = vec![at(k, "car", 50., 50., true)];
                let t = k as f64 * 2.0;
                for ev in e.evaluate(&Scene { tracks: &car.iter().collect::<Vec<_>>(), ..scene_at(t) }) {
                    if ev.kind == EventKind::New {
                        assert!(seen.insert(ev.incident), "incident {} repeated", ev.incident);
                    }
                }
                e.evaluate(&Scene { ended: &car, ..scene_at(t + 1.0) });
            }
        }
    }
    assert_eq!(seen.len(), 3 * 2 * 20);
}

/// A camera that changes or goes away ends its open incidents with `end` events.
#[test]
fn end_all_closes_every_open_incident() {
    let mut e = engine(rule(dwell(false, 0.0), 0.0));
    let cars = [at(1, "car", 50., 50., true), at(2, "car", 40., 40., true)];
    let refs: Vec<&Track> = cars.iter().collect();
    let opened = e.evaluate(&Scene { tracks: &refs, ..scene_at(1.0) });
    assert_eq!(opened.len(), 2);
    let mut ended = e.end_all(sec(5.0));
    ended.sort_by_key(|ev| ev.track);
    assert!(
        ended
            .iter()
            .all(|ev| ev.kind == EventKind::End && ev.ended_at == Some(sec(5.0)) && ev.zone.as_deref() == Some("bay"))
    );
    let mut want: Vec<u64> = opened.iter().map(|ev| ev.incident).collect();
    want.sort();
    let mut got: Vec<u64> = ended.iter().map(|ev| ev.incident).collect();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(e.open_incidents(), 0);
}

/// A burst near a line: a watched class within its box size (plus half a second of its
/// speed) of the line; not farther, not another class, not a stationary track.
#[test]
fn tracks_near_a_watched_line_ask_for_a_burst() {
    let cross = RuleKind::LineCross {
        line: "gate".into(),
        classes: vec!["person".into()],
        direction: Direction::Either,
        shortest_visit: None,
    };
    let e = engine(rule(cross, 5.0));
    // Boxes 10 x 20: the reach is 20 pixels from the line at x = 50.
    assert!(e.near_line(&[at(1, "person", 35., 50., false)], (100, 100)));
    assert!(!e.near_line(&[at(1, "person", 25., 50., false)], (100, 100)));
    let mut fast = at(1, "person", 25., 50., false);
    fast.velocity = [40.0, 0.0];
    assert!(e.near_line(&[fast], (100, 100)), "20 px a half-second away");
    assert!(!e.near_line(&[at(1, "car", 45., 50., false)], (100, 100)), "not a class the rule watches");
    assert!(!engine(rule(dwell(false, 1.0), 0.0)).near_line(&[at(1, "car", 50., 50., false)], (100, 100)));
    // Standing on the line: followed look to look, no burst.
    assert!(!e.near_line(&[at(1, "person", 50., 50., true)], (100, 100)));
}

#[test]
fn absence_fires_once_when_nobody_is_seen_and_ends_when_somebody_is() {
    let kind = RuleKind::Absence {
        zone: "bay".into(),
        classes: vec!["person".into()],
        min_duration: sec(20.0),
        schedule: Schedule::always(),
    };
    let person = || vec![at(1, "person", 50., 50., false)];
    let outside = || vec![at(2, "person", 90., 90., false)];
    let frames = vec![
        (0.0, person(), vec![], NOON),   // seen
        (5.0, vec![], vec![], NOON),     // the clock starts
        (15.0, outside(), vec![], NOON), // outside the zone: nobody in it
        (24.0, vec![], vec![], NOON),    // 19 s
        (25.0, vec![], vec![], NOON),    // 20 s: fires, once
        (40.0, vec![], vec![], NOON),
        (60.0, person(), vec![], NOON), // somebody: it ends
    ];
    let mut e = engine(rule(kind, 0.0));
    assert_eq!(run(&mut e, &frames), ["25:New:-", "60:End:1"]);
    // The alert says when somebody was last seen.
    let mut e2 = engine(rule(
        RuleKind::Absence {
            zone: "bay".into(),
            classes: vec!["person".into()],
            min_duration: sec(20.0),
            schedule: Schedule::always(),
        },
        0.0,
    ));
    let mut events = Vec::new();
    for (t, tracks) in [(0.0, person()), (1.0, vec![]), (21.0, vec![])] {
        let refs: Vec<&Track> = tracks.iter().collect();
        let scene = Scene { tracks: &refs, ..scene_at(t) };
        events.extend(e2.evaluate(&scene));
    }
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].last_seen, Some(wall(sec(0.0))));
    assert_eq!(events[0].started_at, sec(1.0));
}

#[test]
fn absence_counts_only_the_schedule_and_checks_when_the_window_closes() {
    // "No one came out between 07:00 and 11:00."
    let schedule = Schedule::parse(&["daily 07:00-11:00".to_string()]).unwrap();
    let kind = RuleKind::Absence {
        zone: "bay".into(),
        classes: vec!["person".into()],
        min_duration: sec(4.0 * 3600.0),
        schedule,
    };
    let local = |h: u16, m: u16| LocalTime { weekday: 2, minute: h * 60 + m };
    let h = |x: f64| x * 3600.0;
    // Frames every half hour from 05:00 to 12:00; nobody all morning.
    let frames: Vec<(f64, Vec<Track>, Vec<Track>, LocalTime)> = (10u16..=24)
        .map(|k| {
            let minutes = k * 30;
            (h(minutes as f64 / 60.0), vec![], vec![], local(minutes / 60, minutes % 60))
        })
        .collect();
    let got = run(&mut engine(rule(kind.clone(), 0.0)), &frames);
    assert_eq!(got, ["39600:New:-"], "fires at 11:00, the first frame after the window");
    // Somebody at 09:00: nothing that morning.
    let mut with_visit = frames.clone();
    with_visit[8].1 = vec![at(1, "person", 50., 50., false)];
    assert_eq!(with_visit[8].3, local(9, 0));
    assert!(run(&mut engine(rule(kind, 0.0)), &with_visit).is_empty());
}

fn still_rule(absorb_after: f64, ignore: &[&str]) -> RuleKind {
    RuleKind::LeftObject(crate::config::StillRule {
        zone: "bay".into(),
        min_area: 0.01,
        min_duration: sec(20.0),
        absorb_after: sec(absorb_after),
        ignore_classes: ignore.iter().map(|s| s.to_string()).collect(),
    })
}

/// A still region with its box (camera pixels), first seen `since` seconds in.
fn still(id: u64, b: [f32; 4], since: f64, change: crate::still::Change) -> crate::still::Still {
    crate::still::Still { id, bbox: b, area: 0.02, change, since: sec(since), stable: 3, seen: sec(since) }
}

/// Runs frames of (time, stills, detected objects); returns the events as "t:kind:label".
fn run_stills(
    engine: &mut RuleEngine,
    frames: &[(f64, Vec<crate::still::Still>, Vec<crate::types::Object>)],
) -> Vec<String> {
    let mut out = Vec::new();
    for (t, stills, objects) in frames {
        let scene = Scene {
            tracks: &[],
            objects,
            stills,
            faces: &[],
            ended: &[],
            frame: (100, 100),
            t: sec(*t),
            wall: wall(sec(*t)),
            local: NOON,
        };
        for e in engine.evaluate(&scene) {
            assert_eq!(e.started_at, stills.first().map_or(e.started_at, |s| s.since), "starts when it appeared");
            out.push(format!("{t}:{:?}:{}", e.kind, e.label));
        }
    }
    out
}

#[test]
fn left_object_fires_after_min_duration_from_its_appearance_and_ends_when_taken() {
    use crate::still::Change::{Left, Removed};
    let mut e = engine(rule(still_rule(600.0, &["person"]), 0.0));
    let bag = |t: f64| (t, vec![still(7, [40., 50., 50., 60.], 10.0, Left)], vec![]);
    let frames = vec![
        bag(12.0),
        bag(28.0),
        bag(30.0), // 20 s after it appeared
        bag(32.0),
        // A removed region, outside the zone, and one too small: not this rule's.
        (34.0, vec![still(7, [40., 50., 50., 60.], 10.0, Left), still(8, [40., 50., 50., 60.], 0.0, Removed)], vec![]),
        (36.0, vec![still(7, [40., 50., 50., 60.], 10.0, Left), still(9, [85., 85., 95., 95.], 0.0, Left)], vec![]),
        (38.0, vec![], vec![]),
    ];
    assert_eq!(run_stills(&mut e, &frames), ["30:New:left_object", "38:End:left_object"]);
}

#[test]
fn left_object_skips_what_an_ignored_class_explains_and_what_is_absorbed() {
    use crate::still::Change::Left;
    let person = crate::types::Object { bbox: [35., 30., 55., 62.], score: 0.8, class_id: 0, label: "person".into() };
    let mut e = engine(rule(still_rule(60.0, &["person"]), 0.0));
    let r = |t: f64, objects: Vec<crate::types::Object>| (t, vec![still(7, [40., 50., 50., 60.], 0.0, Left)], objects);
    // A person standing there: explained while they are detected over it; then they go,
    // and what stays is a thing left (fires); after 60 s it is background (ends, never again).
    let frames = vec![
        r(20.0, vec![person.clone()]),
        r(30.0, vec![person]),
        r(40.0, vec![]),
        r(50.0, vec![]),
        r(60.0, vec![]),
        r(70.0, vec![]),
    ];
    assert_eq!(run_stills(&mut e, &frames), ["40:New:left_object", "60:End:left_object"]);
    // A rule without ignore_classes fires at once.
    let mut e = engine(rule(still_rule(600.0, &[]), 0.0));
    assert_eq!(run_stills(&mut e, &[r(20.0, vec![])]), ["20:New:left_object"]);
}
