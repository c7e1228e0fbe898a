//! config: the node's one TOML file, parsed, then validated, then used.
//!
//! Input: the file's text. Output: a [`Config`] whose every value is checked and whose
//! cameras carry their merged defaults, or every problem at once as [`Diagnostic`]s that
//! name the TOML path, line and column and say what would be valid. `check-config` and
//! `run` share this code. Passwords are held in [`Secret`] and never printed.

mod manifest;
mod model;
mod raw;
pub mod reference;
mod secret;
pub mod shard;
mod span;
mod units;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use manifest::{Dim, Manifest, ManifestModel, Tensor};
pub use model::*;
pub use secret::Secret;
pub use units::{Schedule, Window, parse_bytes, parse_duration};
pub use validate::{UrlError, parse_rtsp_url};

use span::SpanIndex;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// TOML path such as `cameras[3].zones.loading_bay.polygon`; empty for syntax errors.
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}:{}: {}", self.line, self.column, self.message)
        } else {
            write!(f, "{}:{}: {}: {}", self.line, self.column, self.path, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} has {} problem(s):\n{}", path.display(), diagnostics.len(), render(path, diagnostics))]
    Invalid { path: PathBuf, diagnostics: Vec<Diagnostic> },
}

fn render(path: &Path, diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("  {}:{d}", path.display())).collect::<Vec<_>>().join("\n")
}

/// Reads and validates a config file. Relative paths inside it resolve against its folder.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let text =
        decode_utf8(&bytes).map_err(|d| ConfigError::Invalid { path: path.to_path_buf(), diagnostics: vec![d] })?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parse(text, base).map_err(|diagnostics| ConfigError::Invalid { path: path.to_path_buf(), diagnostics })
}

/// The file's text, or where its first byte that is not UTF-8 is (TOML files are UTF-8).
fn decode_utf8(bytes: &[u8]) -> Result<&str, Diagnostic> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let (line, column) = span::line_col(std::str::from_utf8(good).unwrap_or_default(), good.len());
        let bad = &bytes[e.valid_up_to()..(e.valid_up_to() + e.error_len().unwrap_or(1)).min(bytes.len())];
        let hex: Vec<String> = bad.iter().map(|b| format!("0x{b:02x}")).collect();
        Diagnostic {
            path: String::new(),
            line,
            column,
            message: format!(
                "not UTF-8: byte {} ({}) is not valid UTF-8; save the file as UTF-8",
                e.valid_up_to(),
                hex.join(" ")
            ),
        }
    })
}

/// Parses and validates config text; `base` is the folder relative paths resolve against.
pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<Diagnostic>> {
    let doc = match toml::de::DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let (line, column) = span::line_col(text, e.span().map_or(0, |s| s.start));
            return Err(vec![Diagnostic {
                path: String::new(),
                line,
                column,
                message: format!("not valid TOML: {}", e.message().trim()),
            }]);
        }
    };
    let index = SpanIndex::new(text, doc.clone());
    let raw: raw::RawConfig = match serde_path_to_error::deserialize(toml::de::Deserializer::from(doc)) {
        Ok(raw) => raw,
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let inner = e.into_inner();
            // A type error in a secret field would echo the value: never say it.
            let message = if path.ends_with("password") {
                "must be a string (value not shown)".to_string()
            } else {
                with_suggestion(inner.message().trim())
            };
            let at = inner
                .span()
                .filter(|s| s.start > 0 || path.is_empty())
                .map_or_else(|| index.span_of(&path).start, |s| s.start);
            let (line, column) = span::line_col(text, at);
            return Err(vec![Diagnostic { path, line, column, message }]);
        }
    };
    validate::validate(raw, base).map_err(|problems| {
        let mut diagnostics: Vec<Diagnostic> = problems
            .into_iter()
            .map(|(path, message, offset)| {
                let (line, column) = match offset {
                    Some(offset) => index.locate_in_string(&path, offset),
                    None => index.locate(&path),
                };
                Diagnostic { path, line, column, message }
            })
            .collect();
        diagnostics.sort_by_key(|d| (d.line, d.column));
        diagnostics
    })
}

/// Adds "did you mean `x`?" to serde's unknown field/variant messages when one of the
/// expected names is a likely typo of the given one.
fn with_suggestion(message: &str) -> String {
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let is_unknown = message.starts_with("unknown field") || message.starts_with("unknown variant");
    let (Some(given), true) = (quoted.first(), is_unknown) else { return message.to_string() };
    let best =
        quoted[1..].iter().map(|c| (crate::spelling::edit_distance(given, c), *c)).filter(|(d, _)| *d <= 2).min();
    match best {
        Some((_, name)) => format!("{message}; did you mean `{name}`?"),
        None => message.to_string(),
    }
}
