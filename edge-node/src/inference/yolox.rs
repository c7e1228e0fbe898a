//! YOLOX (COCO objects). Output `[B, A, 85]`: anchors in stride order 8, 16, 32, row-major
//! (x fastest): `[dx, dy, log w, log h, obj, 80 class scores]`, sigmoids already applied.
//! cx = (dx + gx)·s, cy = (dy + gy)·s, w = e^(log w)·s, h = e^(log h)·s, score = obj × class.

use super::family::{FamilyCodec, Output, RawDetection, STRIDES};
use super::nms::Candidate;

pub struct Yolox;

impl FamilyCodec for Yolox {
    fn pad(&self) -> f32 {
        114.0
    }

    fn decode(
        &self,
        outputs: &[Output],
        b: usize,
        (w, h): (u32, u32),
        threshold: f32,
        classes: &[usize],
    ) -> Vec<RawDetection> {
        let Some(out) = outputs.first() else { return Vec::new() };
        let width = *out.shape.last().unwrap_or(&85) as usize;
        let anchors: usize = STRIDES.iter().map(|s| ((w / s) * (h / s)) as usize).sum();
        let rows = &out.data[b * anchors * width..(b + 1) * anchors * width];
        let mut found = Vec::new();
        let mut index = 0;
        for s in STRIDES {
            let (gw, gh) = (w / s, h / s);
            for gy in 0..gh {
                for gx in 0..gw {
                    let r = &rows[index * width..(index + 1) * width];
                    let obj = r[4];
                    if obj >= threshold {
                        let best = r[5..]
                            .iter()
                            .enumerate()
                            .filter(|(c, _)| classes.is_empty() || classes.contains(c))
                            .max_by(|a, b| a.1.total_cmp(b.1));
                        if let Some((class, p)) = best
                            && obj * p >= threshold
                        {
                            let sf = s as f32;
                            let (cx, cy) = ((r[0] + gx as f32) * sf, (r[1] + gy as f32) * sf);
                            let (bw, bh) = (r[2].exp() * sf, r[3].exp() * sf);
                            found.push(RawDetection {
                                candidate: Candidate {
                                    bbox: [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0],
                                    score: obj * p,
                                    class,
                                    index,
                                },
                                landmarks: None,
                            });
                        }
                    }
                    index += 1;
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_hand_made_anchor() {
        // A 64x32 input: stride 8 → 8x4 cells, 16 → 4x2, 32 → 2x1: 32 + 8 + 2 = 42 anchors.
        let mut data = vec![0.0f32; 42 * 85];
        // Anchor 32 + 5 is stride 16, cell (gx 1, gy 1).
        let row = &mut data[37 * 85..38 * 85];
        row[..5].copy_from_slice(&[0.5, 0.25, 0.0, (2.0f32).ln(), 0.9]);
        row[5 + 2] = 0.8; // car
        row[5] = 0.5; // person (class 0), lower
        let outputs = [Output { name: "output", shape: &[1, 42, 85], data: &data }];
        let found = Yolox.decode(&outputs, 0, (64, 32), 0.3, &[]);
        assert_eq!(found.len(), 1);
        let c = found[0].candidate;
        // cx = (0.5 + 1)·16 = 24, cy = (0.25 + 1)·16 = 20, w = 16, h = 32.
        assert_eq!(c.bbox, [16.0, 4.0, 32.0, 36.0]);
        assert_eq!(c.class, 2);
        assert!((c.score - 0.72).abs() < 1e-6);
        // A class filter without cars picks the person, whose score 0.45 still passes.
        let found = Yolox.decode(&outputs, 0, (64, 32), 0.3, &[0]);
        assert_eq!(found[0].candidate.class, 0);
        assert!(Yolox.decode(&outputs, 0, (64, 32), 0.5, &[0]).is_empty());
    }
}
