//! The models manifest (`manifest.toml` beside the ONNX files): which files exist, their
//! family and their input/output contract. Config validation and the inference stage
//! both read it.

use std::path::Path;

use serde::Deserialize;

use super::model::Family;

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    #[serde(rename = "model")]
    pub models: Vec<ManifestModel>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ManifestModel {
    pub name: String,
    pub file: String,
    pub sha256: String,
    pub licence: String,
    pub family: Family,
    pub task: String,
    pub source: String,
    pub input: Tensor,
    pub outputs: Vec<Tensor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<Dim>,
    pub channels: Option<String>,
    pub range: Option<String>,
    pub resize: Option<String>,
    pub pad: Option<f64>,
}

/// A fixed size, or the name of a dynamic dimension.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(i64),
    Named(String),
}

impl Tensor {
    /// `(width, height)` when both are fixed (NCHW).
    pub fn fixed_size(&self) -> Option<(u32, u32)> {
        match self.shape.as_slice() {
            [_, _, Dim::Fixed(h), Dim::Fixed(w)] => Some((*w as u32, *h as u32)),
            _ => None,
        }
    }
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{} is not a valid models manifest: {}", path.display(), e.message()))
    }

    pub fn by_file(&self, file: &str) -> Option<&ManifestModel> {
        self.models.iter().find(|m| m.file == file)
    }
}
