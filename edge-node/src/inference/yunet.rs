//! YuNet (faces with 5 landmarks). For each stride s in 8, 16, 32 the outputs `cls_s`,
//! `obj_s` `[B, N, 1]`, `bbox_s` `[B, N, 4]`, `kps_s` `[B, N, 10]`, N = (H/s)(W/s), cell
//! i at row i / cols, column i % cols. score = sqrt(clamp(cls)·clamp(obj));
//! cx = (c + b0)·s, cy = (r + b1)·s, w = e^b2·s, h = e^b3·s; landmark j = ((k[2j] + c)·s, (k[2j+1] + r)·s).

use super::family::{FamilyCodec, Output, RawDetection, STRIDES};
use super::nms::Candidate;

pub struct Yunet;

fn find<'a>(outputs: &'a [Output], name: &str) -> Option<&'a Output<'a>> {
    outputs.iter().find(|o| o.name == name)
}

impl FamilyCodec for Yunet {
    fn pad(&self) -> f32 {
        0.0
    }

    fn decode(
        &self,
        outputs: &[Output],
        b: usize,
        (w, h): (u32, u32),
        threshold: f32,
        _classes: &[usize],
    ) -> Vec<RawDetection> {
        let mut found = Vec::new();
        let mut index = 0;
        for s in STRIDES {
            let (cols, rows) = ((w / s) as usize, (h / s) as usize);
            let n = cols * rows;
            let (Some(cls), Some(obj), Some(bbox), Some(kps)) = (
                find(outputs, &format!("cls_{s}")),
                find(outputs, &format!("obj_{s}")),
                find(outputs, &format!("bbox_{s}")),
                find(outputs, &format!("kps_{s}")),
            ) else {
                continue;
            };
            let (cls, obj) = (&cls.data[b * n..(b + 1) * n], &obj.data[b * n..(b + 1) * n]);
            let (bbox, kps) = (&bbox.data[b * n * 4..(b + 1) * n * 4], &kps.data[b * n * 10..(b + 1) * n * 10]);
            let sf = s as f32;
            for i in 0..n {
                let score = (cls[i].clamp(0.0, 1.0) * obj[i].clamp(0.0, 1.0)).sqrt();
                if score >= threshold {
                    let (r, c) = ((i / cols) as f32, (i % cols) as f32);
                    let bb = &bbox[i * 4..i * 4 + 4];
                    let (cx, cy) = ((c + bb[0]) * sf, (r + bb[1]) * sf);
                    let (bw, bh) = (bb[2].exp() * sf, bb[3].exp() * sf);
                    let k = &kps[i * 10..i * 10 + 10];
                    let landmarks = std::array::from_fn(|j| [(k[2 * j] + c) * sf, (k[2 * j + 1] + r) * sf]);
                    found.push(RawDetection {
                        candidate: Candidate {
                            bbox: [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0],
                            score,
                            class: 0,
                            index: index + i,
                        },
                        landmarks: Some(landmarks),
                    });
                }
            }
            index += n;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_hand_made_cell() {
        // 64x32 input: stride 8 → 8 cols x 4 rows = 32 cells; 16 → 4x2 = 8; 32 → 2x1 = 2.
        let (n8, n16, n32) = (32, 8, 2);
        let mut cls8 = vec![0.0; n8];
        let mut obj8 = vec![0.0; n8];
        let mut bbox8 = vec![0.0; n8 * 4];
        let mut kps8 = vec![0.0; n8 * 10];
        // Cell 10: row 1, col 2.
        cls8[10] = 0.81;
        obj8[10] = 1.2; // clamped to 1
        bbox8[40..44].copy_from_slice(&[0.5, 0.5, 0.0, (2.0f32).ln()]);
        kps8[100] = 0.25;
        kps8[101] = 0.75;
        let z = |n| vec![0.0f32; n];
        let (c16, o16, b16, k16, c32, o32, b32, k32) =
            (z(n16), z(n16), z(n16 * 4), z(n16 * 10), z(n32), z(n32), z(n32 * 4), z(n32 * 10));
        let out = |name: &'static str, data: &'static [f32]| Output { name, shape: &[], data };
        let leak = |v: Vec<f32>| -> &'static [f32] { Box::leak(v.into_boxed_slice()) };
        let outputs = vec![
            out("cls_8", leak(cls8)),
            out("obj_8", leak(obj8)),
            out("bbox_8", leak(bbox8)),
            out("kps_8", leak(kps8)),
            out("cls_16", leak(c16)),
            out("obj_16", leak(o16)),
            out("bbox_16", leak(b16)),
            out("kps_16", leak(k16)),
            out("cls_32", leak(c32)),
            out("obj_32", leak(o32)),
            out("bbox_32", leak(b32)),
            out("kps_32", leak(k32)),
        ];
        let found = Yunet.decode(&outputs, 0, (64, 32), 0.6, &[]);
        assert_eq!(found.len(), 1);
        let d = found[0];
        assert!((d.candidate.score - 0.9).abs() < 1e-6);
        // cx = (2 + 0.5)·8 = 20, cy = (1 + 0.5)·8 = 12, w = 8, h = 16.
        assert_eq!(d.candidate.bbox, [16.0, 4.0, 24.0, 20.0]);
        assert_eq!(d.landmarks.unwrap()[0], [18.0, 14.0]);
    }
}
