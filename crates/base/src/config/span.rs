//! Finds where a config path (`cameras[3].zones.loading_bay.polygon`) is written in the
//! file, so every error can name its line and column.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The parsed document with spans, kept beside the typed config for error reporting.
pub struct SpanIndex<'a> {
    text: &'a str,
    root: Spanned<DeTable<'a>>,
}

enum Segment<'p> {
    Key(&'p str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some((n, tail)) = rest.split_once(']') {
            if let Ok(i) = n.parse() {
                out.push(Segment::Index(i));
            }
            rest = tail.strip_prefix('[').unwrap_or(tail);
        }
    }
    out
}

impl<'a> SpanIndex<'a> {
    pub fn new(text: &'a str, root: Spanned<DeTable<'a>>) -> Self {
        Self { text, root }
    }

    /// Byte range of the deepest part of `path` present in the file: the key of a field,
    /// the element of an array, or the nearest enclosing table when the field is missing.
    pub fn span_of(&self, path: &str) -> Range<usize> {
        self.spans_of(path).0
    }

    /// The key's span (as [`span_of`](Self::span_of)) and, when the whole path was found,
    /// the span of its value.
    fn spans_of(&self, path: &str) -> (Range<usize>, Option<Range<usize>>) {
        let mut span = 0..0;
        let mut value_span = None;
        let mut found = 0;
        let segs = segments(path);
        let wanted = segs.len();
        let mut value: Option<&DeValue<'_>> = None;
        let mut table: Option<&DeTable<'_>> = Some(self.root.get_ref());
        for seg in segs {
            match seg {
                Segment::Key(k) => {
                    let Some(t) = table else { break };
                    let Some((key, v)) = t.iter().find(|(key, _)| key.get_ref().as_ref() == k) else { break };
                    span = key.span();
                    value_span = Some(v.span());
                    value = Some(v.get_ref());
                }
                Segment::Index(i) => {
                    let Some(DeValue::Array(items)) = value else { break };
                    let Some(item) = items.get(i) else { break };
                    span = item.span();
                    value_span = Some(item.span());
                    value = Some(item.get_ref());
                }
            }
            found += 1;
            table = match value {
                Some(DeValue::Table(t)) => Some(t),
                _ => None,
            };
        }
        (span, value_span.filter(|_| found == wanted))
    }

    pub fn locate(&self, path: &str) -> (usize, usize) {
        line_col(self.text, self.span_of(path).start)
    }

    /// Line and column of byte `offset` inside the string value at `path`, when the value is
    /// written as a quoted string without escapes before that point; else as [`locate`](Self::locate).
    pub fn locate_in_string(&self, path: &str, offset: usize) -> (usize, usize) {
        let (_, value) = self.spans_of(path);
        let Some(v) = value else { return self.locate(path) };
        let written = self.text.get(v.start..v.end).unwrap_or("");
        let plain = match written.chars().next() {
            Some('\'') => true,
            Some('"') => written.get(1..(1 + offset).min(written.len())).is_some_and(|s| !s.contains('\\')),
            _ => false,
        };
        if plain && !written.starts_with("\"\"\"") && !written.starts_with("'''") {
            line_col(self.text, v.start + 1 + offset)
        } else {
            self.locate(path)
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |nl| nl + 1);
    (line, before[start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "version = 1\n[node]\nid = \"a\"\n\n[[cameras]]\nid = \"c0\"\n\n[[cameras]]\nid = \"c1\"\n[cameras.zones.bay]\npolygon = [[0, 0], [1, 0]]\n";

    fn index() -> SpanIndex<'static> {
        SpanIndex::new(DOC, DeTable::parse(DOC).unwrap())
    }

    #[test]
    fn finds_keys_elements_and_nearest_parent() {
        let ix = index();
        assert_eq!(ix.locate("version"), (1, 1));
        assert_eq!(ix.locate("node.id"), (3, 1));
        assert_eq!(ix.locate("cameras[1].id"), (9, 1));
        assert_eq!(ix.locate("cameras[1].zones.bay.polygon"), (11, 1));
        assert_eq!(ix.locate("cameras[1].zones.bay.polygon[1]").0, 11);
        // A missing field points at its table.
        assert_eq!(ix.locate("cameras[0].url").0, ix.locate("cameras[0]").0);
    }

    #[test]
    fn points_inside_a_string_value() {
        let doc = "[[cameras]]\nid = \"c0\"\nurl = \"rtsp://[::1\"\nname = \"a\\tb\"\n";
        let ix = SpanIndex::new(doc, DeTable::parse(doc).unwrap());
        // Offset 7 of the url is the '['; the value starts at column 7 with its quote.
        assert_eq!(ix.locate_in_string("cameras[0].url", 7), (3, 15));
        // An escape before the offset: the value's position, not a wrong column.
        assert_eq!(ix.locate_in_string("cameras[0].name", 3), ix.locate("cameras[0].name"));
        // A missing field: its table.
        assert_eq!(ix.locate_in_string("cameras[0].nope", 3), ix.locate("cameras[0].nope"));
    }
}
