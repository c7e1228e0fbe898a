use super::*;

const W: usize = 320;
const H: usize = 180;

/// A textured street-like background (a deterministic pattern with some noise).
fn background(seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut out = Vec::with_capacity(W * H * 3);
    for y in 0..H {
        for x in 0..W {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let noise = ((s >> 33) % 7) as i32 - 3;
            let v = 90 + ((x / 12 + y / 9) % 3) as i32 * 25 + ((x * 7 + y * 3) % 11) as i32 + noise;
            let v = v.clamp(0, 255) as u8;
            out.extend_from_slice(&[v, v, v]);
        }
    }
    out
}

/// `frame` with a checkered box (an object with edges of its own) at `b` (pixels).
fn with_box(mut frame: Vec<u8>, b: [usize; 4]) -> Vec<u8> {
    for y in b[1]..b[3] {
        for x in b[0]..b[2] {
            let v = if (x / 4 + y / 4) % 2 == 0 { 20 } else { 235 };
            frame[(y * W + x) * 3..(y * W + x) * 3 + 3].copy_from_slice(&[v, v / 2, v]);
        }
    }
    frame
}

fn scaled(frame: &[u8], f: f32) -> Vec<u8> {
    frame.iter().map(|v| (*v as f32 * f).round().clamp(0.0, 255.0) as u8).collect()
}

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

const BOX: [usize; 4] = [120, 100, 160, 140];

/// The box as 0–1 frame coordinates.
fn unit(b: [usize; 4]) -> [f32; 4] {
    [b[0] as f32 / W as f32, b[1] as f32 / H as f32, b[2] as f32 / W as f32, b[3] as f32 / H as f32]
}

#[test]
fn a_thing_left_is_still_from_when_it_appeared_until_it_is_taken_away() {
    let mut m = StillModel::new(s(3600));
    let bg = background(1);
    for t in (0..20).step_by(2) {
        assert!(m.update(&background(t + 1), W as u32, H as u32, s(t)));
        assert!(m.stills().is_empty(), "nothing left yet at {t} s: {:?}", m.stills());
    }
    let left = with_box(bg.clone(), BOX);
    let mut first = None;
    for t in (20..80).step_by(2) {
        m.update(&left, W as u32, H as u32, s(t));
        if let Some(st) = m.stills().iter().find(|st| st.stable >= 2) {
            first.get_or_insert((t, st.clone()));
        }
    }
    let (t, st) = first.expect("the box became still");
    assert!(t <= 32, "still after {t} s");
    assert_eq!(st.change, Change::Left);
    assert_eq!(st.since, s(20), "since it appeared");
    assert!(iou(&st.bbox, &unit(BOX)) >= 0.6, "{:?} against {:?}", st.bbox, unit(BOX));
    assert_eq!(m.stills().len(), 1, "{:?}", m.stills());
    let id = m.stills()[0].id;
    // Taken away: the region goes (after the grace of a hidden region).
    for t in (80..100).step_by(2) {
        m.update(&bg, W as u32, H as u32, s(t));
    }
    assert!(m.stills().iter().all(|st| st.id != id), "{:?}", m.stills());
}

#[test]
fn a_thing_taken_away_is_a_removed_still() {
    let mut m = StillModel::new(s(3600));
    let with = with_box(background(1), BOX);
    for t in (0..20).step_by(2) {
        m.update(&with, W as u32, H as u32, s(t));
    }
    let bg = background(1);
    for t in (20..40).step_by(2) {
        m.update(&bg, W as u32, H as u32, s(t));
    }
    let st = m.stills().iter().find(|st| st.stable >= 2).expect("a removed region");
    assert_eq!(st.change, Change::Removed);
    assert_eq!(st.since, s(20));
    assert!(iou(&st.bbox, &unit(BOX)) >= 0.6, "{:?}", st.bbox);
}

#[test]
fn what_stays_past_absorb_after_becomes_background_for_good() {
    let mut m = StillModel::new(s(60));
    let bg = background(1);
    for t in (0..30).step_by(2) {
        m.update(&bg, W as u32, H as u32, s(t));
    }
    let left = with_box(bg, BOX);
    let mut seen_at = Vec::new();
    for t in (30..240).step_by(2) {
        m.update(&left, W as u32, H as u32, s(t));
        if !m.stills().is_empty() {
            seen_at.push(t);
        }
    }
    let last = *seen_at.last().expect("seen");
    assert!((90..=110).contains(&last), "absorbed about 60 s after it came: last seen at {last} s");
    assert!(seen_at.windows(2).all(|w| w[1] - w[0] == 2), "one stretch, never back: {seen_at:?}");
}

#[test]
fn dusk_moving_things_and_a_patch_of_light_are_not_still() {
    let mut m = StillModel::new(s(3600));
    let bg = background(1);
    // Ten minutes of dusk: the whole picture darkens to 30 %.
    for t in (0..600).step_by(2) {
        let f = 1.0 - 0.7 * t as f32 / 600.0;
        // Something passing through: a box that moves 30 pixels each frame.
        let x = (t as usize * 15) % (W - 40);
        let frame = scaled(&with_box(bg.clone(), [x, 20, x + 30, 50]), f);
        m.update(&frame, W as u32, H as u32, s(t));
        assert!(m.stills().iter().all(|st| st.stable < 2), "at {t} s: {:?}", m.stills());
    }
    assert_eq!(m.resets, 0);
    // A lamp switched on over one part: the same texture, brighter.
    let mut lit = scaled(&bg, 0.3);
    for y in 60..140 {
        for x in 180..280 {
            for c in 0..3 {
                let i = (y * W + x) * 3 + c;
                lit[i] = (lit[i] as f32 * 1.8) as u8;
            }
        }
    }
    for t in (600..640).step_by(2) {
        m.update(&lit, W as u32, H as u32, s(t));
    }
    assert!(m.stills().iter().all(|st| st.stable < 2), "{:?}", m.stills());
}

#[test]
fn a_view_that_changes_as_a_whole_starts_the_model_again() {
    let mut m = StillModel::new(s(3600));
    for t in (0..20).step_by(2) {
        m.update(&background(1), W as u32, H as u32, s(t));
    }
    // The camera was turned: another scene.
    let other = with_box(background(1), [0, 0, W, H]);
    for t in (20..60).step_by(2) {
        m.update(&other, W as u32, H as u32, s(t));
        assert!(m.stills().is_empty(), "at {t} s: {:?}", m.stills());
    }
    assert_eq!(m.resets, 1);
}

#[test]
fn what_passes_through_the_first_pictures_is_not_a_thing_removed() {
    let mut m = StillModel::new(s(3600));
    let bg = background(1);
    for t in (0..60).step_by(2) {
        // A box in the first pictures that then goes away.
        let frame = if t < 6 { with_box(bg.clone(), BOX) } else { bg.clone() };
        m.update(&frame, W as u32, H as u32, s(t));
        assert!(m.stills().is_empty(), "at {t} s: {:?}", m.stills());
    }
}

#[test]
fn frames_closer_than_a_second_are_not_taken() {
    let mut m = StillModel::new(s(3600));
    let bg = background(1);
    assert!(m.update(&bg, W as u32, H as u32, Duration::from_millis(0)));
    assert!(!m.update(&bg, W as u32, H as u32, Duration::from_millis(400)));
    assert!(m.update(&bg, W as u32, H as u32, Duration::from_millis(1000)));
    assert!(m.bytes() > 0);
}

#[test]
fn a_camera_that_pans_starts_the_model_again_and_reports_nothing() {
    let mut m = StillModel::new(s(3600));
    let bg = background(1);
    // A picture shifted left by `dx` pixels (what a slow pan shows).
    let shifted = |dx: usize| -> Vec<u8> {
        let mut out = bg.clone();
        for y in 0..H {
            for x in 0..W {
                let sx = (x + dx).min(W - 1);
                out[(y * W + x) * 3..(y * W + x) * 3 + 3].copy_from_slice(&bg[(y * W + sx) * 3..(y * W + sx) * 3 + 3]);
            }
        }
        out
    };
    for t in (0..30).step_by(2) {
        m.update(&bg, W as u32, H as u32, s(t));
    }
    for (k, t) in (30..120).step_by(2).enumerate() {
        m.update(&shifted(4 + 2 * k % 8), W as u32, H as u32, s(t));
        assert!(m.stills().iter().all(|st| st.stable < 2), "at {t} s: {:?}", m.stills());
    }
    assert!(m.resets >= 1);
}
