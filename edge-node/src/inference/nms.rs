//! Class-aware non-maximum suppression.

/// A box before suppression: `[x1, y1, x2, y2]`, score, class, and the index of its row
/// (so families can carry extra data such as landmarks).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub bbox: [f32; 4],
    pub score: f32,
    pub class: usize,
    pub index: usize,
}

/// The area of a box `[x1, y1, x2, y2]`; an empty or inverted box has none.
pub fn area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

/// The area two boxes share.
pub fn intersection(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    area(&[a[0].max(b[0]), a[1].max(b[1]), a[2].min(b[2]), a[3].min(b[3])])
}

/// Intersection over union of two boxes: the one definition of box overlap (suppression,
/// tracking, still objects).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let inter = intersection(a, b);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Keeps the best box of each overlapping group (IoU above `threshold`) within each class,
/// best first.
pub fn nms(mut candidates: Vec<Candidate>, threshold: f32) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        if kept.iter().all(|k| k.class != c.class || iou(&k.bbox, &c.bbox) <= threshold) {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(bbox: [f32; 4], score: f32, class: usize) -> Candidate {
        Candidate { bbox, score, class, index: 0 }
    }

    #[test]
    fn iou_by_hand() {
        // Two 10x10 squares overlapping in a 5x10 strip: 50 / 150.
        assert!((iou(&[0., 0., 10., 10.], &[5., 0., 15., 10.]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0., 0., 1., 1.], &[2., 2., 3., 3.]), 0.0);
    }

    #[test]
    fn suppresses_within_a_class_only() {
        let kept = nms(
            vec![
                c([0., 0., 10., 10.], 0.8, 0),
                c([1., 0., 11., 10.], 0.9, 0), // overlaps the first (IoU 0.82): wins
                c([1., 0., 11., 10.], 0.7, 2), // same place, other class: kept
                c([5., 0., 15., 10.], 0.6, 0), // IoU 0.47 with the winner: kept at 0.5
            ],
            0.5,
        );
        let scores: Vec<f32> = kept.iter().map(|k| k.score).collect();
        assert_eq!(scores, vec![0.9, 0.7, 0.6]);
    }
}
