//! The Rust decoding agrees with a reference written here from the manifest's formulas,
//! on the same ONNX Runtime output tensors, to within 1 pixel:
//!
//!   photo ─► fill_tensor ─► ORT run ─┬─► library decode (yolox / yunet) ─┐
//!                                    └─► reference decode (below) ───────┴─► boxes within 1 px

use crate::common::*;
use edge_node::config::Family;
use edge_node::inference::family::{Output, codec_for};
use edge_node::inference::load_session;
use edge_node::inference::preprocess::{ImageView, Letterbox, fill_tensor};
use ort::value::TensorRef;

fn bgr(file: &str) -> (u32, u32, Vec<u8>) {
    let img = image::open(media_dir().join(file)).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    (w, h, img.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect())
}

/// Runs `model` on the photo letterboxed into `input`; returns (name, shape, data) per output.
fn run(model: &str, file: &str, input: (u32, u32), pad: f32) -> Vec<(String, Vec<i64>, Vec<f32>)> {
    let (w, h, data) = bgr(file);
    let lb = Letterbox::fit(w, h, input.0, input.1);
    let mut buf = vec![0.0; 3 * (input.0 * input.1) as usize];
    fill_tensor(&ImageView::packed(&data, w, h), &lb, pad, &mut buf);
    let mut session = load_session(&root().join("models").join(model), 1).unwrap();
    let names: Vec<String> = session.outputs().iter().map(|o| o.name().to_string()).collect();
    let input_name = session.inputs()[0].name().to_string();
    let tensor = TensorRef::from_array_view((vec![1i64, 3, input.1 as i64, input.0 as i64], &buf[..])).unwrap();
    let out = session.run(ort::inputs![input_name.as_str() => tensor]).unwrap();
    names
        .iter()
        .map(|n| {
            let (s, d) = out[n.as_str()].try_extract_tensor::<f32>().unwrap();
            (n.clone(), s.to_vec(), d.to_vec())
        })
        .collect()
}

fn sorted(mut v: Vec<([f32; 4], f32)>) -> Vec<([f32; 4], f32)> {
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

fn assert_close(lib: &[([f32; 4], f32)], reference: &[([f32; 4], f32)]) {
    assert_eq!(lib.len(), reference.len(), "box counts differ");
    assert!(!lib.is_empty());
    for (a, b) in lib.iter().zip(reference) {
        for k in 0..4 {
            assert!((a.0[k] - b.0[k]).abs() <= 1.0, "{a:?} vs {b:?}");
        }
        assert!((a.1 - b.1).abs() < 1e-4);
    }
}

#[test]
fn yolox_matches_the_reference() {
    let _scenario = crate::common::scenario(module_path!());
    let (input, thr) = ((416u32, 416u32), 0.3f32);
    let outs = run("yolox_nano.onnx", "deface_city.jpg", input, 114.0);
    let (_, shape, data) = &outs[0];
    assert_eq!(shape, &vec![1, 3549, 85]);
    // Reference, straight from the manifest: anchors in stride order 8, 16, 32, x fastest.
    let mut reference = Vec::new();
    let mut row = 0;
    for s in [8u32, 16, 32] {
        for gy in 0..input.1 / s {
            for gx in 0..input.0 / s {
                let r = &data[row * 85..row * 85 + 85];
                let (best, p) =
                    r[5..].iter().enumerate().fold((0, f32::MIN), |acc, (i, v)| if *v > acc.1 { (i, *v) } else { acc });
                let _ = best;
                let score = r[4] * p;
                if score >= thr {
                    let s = s as f32;
                    let (cx, cy, w, h) =
                        ((r[0] + gx as f32) * s, (r[1] + gy as f32) * s, r[2].exp() * s, r[3].exp() * s);
                    reference.push(([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], score));
                }
                row += 1;
            }
        }
    }
    let views: Vec<Output> = outs.iter().map(|(n, s, d)| Output { name: n, shape: s, data: d }).collect();
    let lib: Vec<_> = codec_for(Family::Yolox)
        .decode(&views, 0, input, thr, &[])
        .into_iter()
        .map(|d| (d.candidate.bbox, d.candidate.score))
        .collect();
    assert!(reference.len() >= 9, "the crosswalk has people: {} boxes", reference.len());
    assert_close(&sorted(lib), &sorted(reference));
}

#[test]
fn yunet_matches_the_reference() {
    let _scenario = crate::common::scenario(module_path!());
    let (input, thr) = ((640u32, 480u32), 0.6f32);
    let outs = run("yunet_s_dynamic.onnx", "deface_city.jpg", input, 0.0);
    let get = |name: String| outs.iter().find(|(n, _, _)| *n == name).map(|(_, _, d)| d.clone()).unwrap();
    let mut reference = Vec::new();
    for s in [8u32, 16, 32] {
        let (cls, obj, bbox) = (get(format!("cls_{s}")), get(format!("obj_{s}")), get(format!("bbox_{s}")));
        let cols = (input.0 / s) as usize;
        for i in 0..cls.len() {
            let score = (cls[i].clamp(0.0, 1.0) * obj[i].clamp(0.0, 1.0)).sqrt();
            if score >= thr {
                let (r, c) = ((i / cols) as f32, (i % cols) as f32);
                let s = s as f32;
                let b = &bbox[i * 4..i * 4 + 4];
                let (cx, cy, w, h) = ((c + b[0]) * s, (r + b[1]) * s, b[2].exp() * s, b[3].exp() * s);
                reference.push(([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], score));
            }
        }
    }
    let views: Vec<Output> = outs.iter().map(|(n, s, d)| Output { name: n, shape: s, data: d }).collect();
    let lib: Vec<_> = codec_for(Family::Yunet)
        .decode(&views, 0, input, thr, &[])
        .into_iter()
        .map(|d| (d.candidate.bbox, d.candidate.score))
        .collect();
    assert!(reference.len() >= 12, "the crosswalk has faces: {} boxes", reference.len());
    assert_close(&sorted(lib), &sorted(reference));
}
