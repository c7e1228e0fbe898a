//! The config reference, generated from the config file's own types: every field of
//! `raw.rs` with its TOML type and its doc comment, the values of the enums of `model.rs`
//! (and of the contract, for `severity`) with theirs. `edge-node config-reference` prints it; the book's
//! `docs/src/reference/config.md` is it, and a test fails when that page is stale or a
//! field has no doc (`make docs` writes the page).
//!
//! The sources are read as text (they are rustfmt'd: one field per line, doc comments
//! above it), which keeps this free of a Rust parser.

use std::collections::BTreeMap;
use std::fmt::Write;

const RAW: &str = include_str!("raw.rs");
const MODEL: &str = include_str!("model.rs");
/// Enums the config shares with the contract (a rule's `severity`).
const CONTRACT: &str = include_str!("../../../contract/src/lib.rs");

/// A struct or enum of the sources, with its doc comment.
#[derive(Debug, Default)]
struct Item {
    doc: String,
    /// Fields (name, Rust type, doc), or enum variants (TOML value, "", doc).
    members: Vec<(String, String, String)>,
    is_enum: bool,
}

/// The structs and enums of `src`, by name.
fn items(src: &str) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    let mut doc: Vec<&str> = Vec::new();
    let mut open: Option<(String, Item)> = None;
    for line in src.lines() {
        let t = line.trim();
        if let Some(d) = t.strip_prefix("///") {
            doc.push(d.strip_prefix(' ').unwrap_or(d));
            continue;
        }
        if t.starts_with("#[") {
            continue;
        }
        let text = std::mem::take(&mut doc).join(" ").trim().to_string();
        if let Some((_, item)) = open.as_mut() {
            if line == "}" {
                let (name, item) = open.take().expect("open");
                out.insert(name, item);
            } else if item.is_enum {
                let variant = t.trim_end_matches(',');
                if !variant.is_empty() && variant.chars().all(char::is_alphanumeric) {
                    item.members.push((snake_case(variant), String::new(), text));
                }
            } else if let Some((name, ty)) =
                t.strip_prefix("pub ").and_then(|f| f.trim_end_matches(',').split_once(": "))
            {
                item.members.push((name.to_string(), ty.to_string(), text));
            }
            continue;
        }
        for (prefix, is_enum) in [("pub struct ", false), ("pub enum ", true)] {
            if let Some(name) = line.strip_prefix(prefix).and_then(|r| r.strip_suffix(" {")) {
                open = Some((name.to_string(), Item { doc: text.clone(), members: Vec::new(), is_enum }));
            }
        }
    }
    out
}

fn snake_case(camel: &str) -> String {
    let mut s = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            s.push('_');
        }
        s.push(c.to_ascii_lowercase());
    }
    s
}

/// How a field nests: a plain key, a table, an array of tables, or a table of named tables.
enum Shape<'a> {
    Key,
    Table(&'a str),
    Tables(&'a str),
    Named(&'a str),
}

fn shape<'a>(ty: &'a str, structs: &BTreeMap<String, Item>) -> Shape<'a> {
    let inner = ty.strip_prefix("Option<").and_then(|t| t.strip_suffix('>')).unwrap_or(ty);
    let is_struct = |t: &str| structs.get(t).is_some_and(|i| !i.is_enum);
    if is_struct(inner) {
        return Shape::Table(inner);
    }
    if let Some(t) = inner.strip_prefix("Vec<").and_then(|t| t.strip_suffix('>'))
        && is_struct(t)
    {
        return Shape::Tables(t);
    }
    if let Some(t) = inner.strip_prefix("BTreeMap<String, ").and_then(|t| t.strip_suffix('>'))
        && is_struct(t)
    {
        return Shape::Named(t);
    }
    Shape::Key
}

/// A Rust field type as the TOML an operator writes.
fn toml_type(ty: &str, enums: &BTreeMap<String, Item>) -> String {
    if let Some(t) = ty.strip_prefix("Option<").and_then(|t| t.strip_suffix('>')) {
        return toml_type(t, enums);
    }
    if let Some(t) = ty.strip_prefix("Vec<").and_then(|t| t.strip_suffix('>')) {
        return format!("array of {}", toml_type(t, enums));
    }
    if let Some(e) = enums.get(ty).filter(|e| e.is_enum) {
        return e.members.iter().map(|(v, _, _)| format!("`\"{v}\"`")).collect::<Vec<_>>().join(" \\| ");
    }
    match ty {
        "String" => "string".into(),
        "PathBuf" => "path (relative to the config file)".into(),
        "bool" => "boolean".into(),
        "i64" | "u8" | "u16" | "u32" | "u64" | "usize" => "integer".into(),
        "f64" | "f32" => "number".into(),
        "RawPoint" | "[f64; 2]" => "`[x, y]`".into(),
        "[u32; 2]" => "`[width, height]`".into(),
        other => format!("`{other}`"),
    }
}

/// One table cell: a doc on one line, `|` escaped.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The reference page, and every field or table that has no doc comment (as its TOML path).
pub fn generate() -> (String, Vec<String>) {
    let mut all = items(CONTRACT);
    all.extend(items(MODEL));
    all.extend(items(RAW));
    let mut page = String::from(
        "# Config reference\n\n\
         <!-- Generated by `edge-node config-reference` from the doc comments of \
         crates/base/src/config/raw.rs and model.rs; `make docs` rewrites it, a test keeps it current. -->\n\n\
         Every field of a node's config file (`version = 1`, TOML), section by section. A field \
         left out takes its default; an unknown field is an error that names the nearest known \
         one. Durations are strings (`\"500ms\"`, `\"30s\"`, `\"5m\"`, `\"1h30m\"`, `\"7d\"`), sizes \
         too (`\"512MiB\"`); weekly windows read `\"mon-fri 08:00-18:00\"`. \
         `edge-node check-config FILE` checks a file.\n\n",
    );
    let mut missing = Vec::new();
    section(&all, "RawConfig", ("", ""), "", &mut page, &mut missing);
    (page, missing)
}

/// Writes the table `path` (of struct `name`, introduced by `intro`) and then its subtables.
fn section(
    all: &BTreeMap<String, Item>,
    name: &str,
    (header, path): (&str, &str),
    intro: &str,
    page: &mut String,
    missing: &mut Vec<String>,
) {
    let item = &all[name];
    let mut keys = Vec::new();
    let mut tables = Vec::new();
    for (field, ty, doc) in &item.members {
        match shape(ty, all) {
            Shape::Key => keys.push((field, ty, doc)),
            Shape::Table(t) => tables.push((format!("[{}]", join(path, field)), join(path, field), t, doc)),
            Shape::Tables(t) => tables.push((format!("[[{}]]", join(path, field)), join(path, field), t, doc)),
            Shape::Named(t) => {
                let p = format!("{}.<name>", join(path, field));
                tables.push((format!("[{p}]"), p, t, doc))
            }
        }
    }
    if !path.is_empty() {
        let _ = writeln!(page, "\n## `{header}`\n");
    }
    let own = own_doc(&item.doc);
    let about: Vec<&str> = [intro, own.as_str()].into_iter().filter(|s| !s.is_empty()).collect();
    if about.is_empty() && !path.is_empty() {
        missing.push(format!("[{path}]"));
    }
    if !about.is_empty() {
        let _ = writeln!(page, "{}\n", about.join(" "));
    }
    if !keys.is_empty() {
        page.push_str("| field | type | what |\n|---|---|---|\n");
        for (field, ty, doc) in keys {
            if doc.is_empty() {
                missing.push(join(path, field));
            }
            let mut what = cell(doc);
            let inner = ty.trim_start_matches("Option<").trim_start_matches("Vec<").trim_end_matches('>');
            if let Some(e) = all.get(inner).filter(|e| e.is_enum) {
                for (v, _, d) in e.members.iter().filter(|(_, _, d)| !d.is_empty()) {
                    let _ = write!(what, "<br>`\"{v}\"`: {}", cell(d));
                }
            }
            let _ = writeln!(page, "| `{field}` | {} | {what} |", toml_type(ty, all));
        }
    }
    for (h, p, t, doc) in tables {
        section(all, t, (&h, &p), doc, page, missing);
    }
}

/// A struct's doc without the "`[table]`: " it starts with in the source (the page's heading
/// says it), capitalised.
fn own_doc(doc: &str) -> String {
    let rest = doc.strip_prefix('`').and_then(|d| d.split_once("`: ")).map_or(doc, |(_, r)| r);
    let mut c = rest.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_string() } else { format!("{path}.{field}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The book's page is what the types say, and every field has a doc comment.
    #[test]
    fn the_book_page_is_current_and_every_field_documented() {
        let (page, missing) = generate();
        assert!(missing.is_empty(), "config fields without a doc comment in config/raw.rs: {missing:#?}");
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/src/reference/config.md");
        let on_disk = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            on_disk == page,
            "{} is stale: run `make docs` (or `edge-node config-reference > {}`)",
            file.display(),
            file.display()
        );
    }

    #[test]
    fn every_section_and_key_is_there() {
        let (page, _) = generate();
        for want in [
            "## `[node]`",
            "## `[[cameras]]`",
            "## `[[cameras.rules]]`",
            "## `[cameras.zones.<name>]`",
            "## `[models.<name>]`",
            "## `[defaults.privacy]`",
            "## `[[dispatch.routes]]`",
            "| `detect_fps` |",
            "`\"keyframes\"` \\| `\"all\"`",
        ] {
            assert!(page.contains(want), "{want} missing from\n{page}");
        }
        for field in RAW.lines().filter_map(|l| l.strip_prefix("    pub ")?.split_once(": ")) {
            let key = format!("| `{}` |", field.0);
            let table = [
                format!(".{}]`", field.0),
                format!(".{}.<name>]`", field.0),
                format!("[{}]`", field.0),
                format!("{}]]`", field.0),
            ];
            assert!(
                page.contains(&key) || table.iter().any(|t| page.contains(t.as_str())),
                "{} is neither a key nor a table",
                field.0
            );
        }
    }
}
