//! ONNX Runtime loads through `ort` (load-dynamic) and runs every model in the manifest on
//! a real photo; declared and produced shapes match the manifest's contract.
//!
//!   skimage_astronaut.png ─► BGR f32 NCHW ─► each model ─► output shapes == manifest

use std::path::{Path, PathBuf};

use edge_node::config::{Dim, Family, Manifest};
use edge_node::inference;
use ndarray::Array4;
use ort::value::Tensor;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn media(file: &str) -> PathBuf {
    let dir = std::env::var_os("GRIDSIGHT_MEDIA").map(PathBuf::from).unwrap_or_else(|| root().join(".cache/media"));
    let path = dir.join(file);
    assert!(path.is_file(), "{} is missing: run `make setup`", path.display());
    path
}

/// The photo resized to `w`×`h`, BGR, 0–255, NCHW (no letterbox: shapes are what is tested).
fn input(w: u32, h: u32) -> Array4<f32> {
    let img = image::open(media("skimage_astronaut.png")).unwrap().to_rgb8();
    let img = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
    Array4::from_shape_fn((1, 3, h as usize, w as usize), |(_, c, y, x)| {
        img.get_pixel(x as u32, y as u32)[2 - c] as f32
    })
}

#[test]
fn a_provider_the_library_lacks_falls_back_to_cpu() {
    let _scenario = crate::common::scenario(module_path!());
    use edge_node::config::Provider;
    // The PyPI wheel is CPU only: CUDA is reported missing and the session still loads.
    assert!(inference::runtime::provider_available(Provider::Cpu));
    assert!(!inference::runtime::provider_available(Provider::Cuda));
    let model = root().join("models/face_detection_yunet_2023mar.onnx");
    let session = inference::runtime::load_session_with(&model, 1, Provider::Cuda).expect("falls back to CPU");
    assert_eq!(session.inputs()[0].name(), "input");
}

fn matches(declared: &[i64], contract: &[Dim]) -> bool {
    declared.len() == contract.len()
        && declared.iter().zip(contract).all(|(d, c)| match c {
            Dim::Fixed(n) => d == n,
            Dim::Named(_) => *d == -1,
        })
}

#[test]
fn runtime_loads_and_every_model_meets_its_contract() {
    let _scenario = crate::common::scenario(module_path!());
    let (lib, _) = inference::init_runtime().expect("ONNX Runtime loads");
    assert!(lib.ends_with(inference::runtime::LIBRARY_FILE));
    let models = root().join("models");
    let manifest = Manifest::load(&models.join("manifest.toml")).unwrap();
    assert_eq!(manifest.models.len(), 4);

    for m in &manifest.models {
        let mut session = inference::load_session(&models.join(&m.file), 1).unwrap();
        let declared_in = session.inputs()[0].dtype().tensor_shape().unwrap().to_vec();
        assert_eq!(session.inputs()[0].name(), m.input.name, "{}", m.file);
        assert!(matches(&declared_in, &m.input.shape), "{}: input {declared_in:?} vs {:?}", m.file, m.input.shape);
        let names: Vec<String> = session.outputs().iter().map(|o| o.name().to_string()).collect();
        let want: Vec<String> = m.outputs.iter().map(|o| o.name.clone()).collect();
        assert_eq!(names, want, "{}", m.file);
        for (o, c) in session.outputs().iter().zip(&m.outputs) {
            let d = o.dtype().tensor_shape().unwrap().to_vec();
            assert!(matches(&d, &c.shape), "{}: output {} {d:?} vs {:?}", m.file, c.name, c.shape);
        }

        let (w, h) = m.input.fixed_size().unwrap_or((640, 384));
        let cells = |s: u32| ((w / s) * (h / s)) as i64;
        let tensor = Tensor::from_array(input(w, h)).unwrap();
        let outputs = session.run(ort::inputs![m.input.name.as_str() => tensor]).unwrap();
        let mut best = 0f32;
        for c in &m.outputs {
            let (shape, data) = outputs[c.name.as_str()].try_extract_tensor::<f32>().unwrap();
            let expected: Vec<i64> = match m.family {
                Family::Yolox => vec![1, cells(8) + cells(16) + cells(32), 85],
                Family::Yunet => {
                    let stride: u32 = c.name.rsplit('_').next().unwrap().parse().unwrap();
                    vec![1, cells(stride), *shape.last().unwrap()]
                }
            };
            assert_eq!(shape.to_vec(), expected, "{} {}", m.file, c.name);
            if let Dim::Fixed(k) = c.shape[2] {
                assert_eq!(shape[2], k);
            }
            assert!(data.iter().all(|v| v.is_finite()), "{} {} has non-finite values", m.file, c.name);
            // The photo holds one person and one face: a working model scores them high.
            match m.family {
                Family::Yolox => best = best.max(data.chunks(85).map(|r| r[4] * r[5]).fold(0.0, f32::max)),
                Family::Yunet if c.name.starts_with("cls") => best = best.max(data.iter().copied().fold(0.0, f32::max)),
                Family::Yunet => {}
            }
        }
        assert!(best > 0.5, "{}: best person/face score {best} on the astronaut photo", m.file);
    }
}
