//! Diagnostics: what is wrong, where (`file:line:col` plus the source line), what was
//! expected and how to fix it. Rendering happens at the edge (the CLI); this module only
//! describes problems and maps positions back to the file the user wrote.

use std::path::{Path as FsPath, PathBuf};

use kforge_yaml::{Node, NodeValue, Span};
use serde::Serialize;

use crate::path::{Path, Seg};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Where a problem is: a file, a 1-based line and column, how many characters to underline,
/// and the text of that line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    /// Characters to underline from `col` (at least 1).
    pub len: usize,
    /// The line, or for a very long line an excerpt around `col` (see `excerpt_start`).
    pub line_text: String,
    /// Characters of the line left out before `line_text`: 0 unless the line was too long
    /// to keep whole (a 16 MB one-line file must not be copied into every diagnostic).
    #[serde(skip_serializing_if = "is_zero")]
    pub excerpt_start: usize,
}

impl Location {
    /// A location in `line` (the full text of line number `line`), keeping an excerpt of
    /// it when it is very long.
    pub fn in_line(file: &FsPath, line: usize, col: usize, len: usize, text: &str) -> Location {
        let col = col.max(1);
        let (line_text, excerpt_start) = excerpt(text, col);
        Location {
            file: file.to_path_buf(),
            line,
            col,
            len: len.max(1),
            line_text,
            excerpt_start,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Lines longer than this many characters are shown as an excerpt around the column.
pub const MAX_LINE_CHARS: usize = 200;
/// Characters of context kept before the column in an excerpt.
const EXCERPT_BEFORE: usize = 60;

/// The part of `line` to show for a problem at 1-based column `col`: the whole line when it
/// is short, else up to [`MAX_LINE_CHARS`] characters starting a little before `col`.
/// Returns the excerpt and how many characters were left out before it.
pub fn excerpt(line: &str, col: usize) -> (String, usize) {
    let total = line.chars().count();
    if total <= MAX_LINE_CHARS {
        return (line.to_string(), 0);
    }
    let start = col
        .saturating_sub(1)
        .saturating_sub(EXCERPT_BEFORE)
        .min(total);
    (
        line.chars().skip(start).take(MAX_LINE_CHARS).collect(),
        start,
    )
}

/// One problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable short name for the kind of problem, e.g. `unknown-key`.
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Text shown under the caret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The nodes (hostnames) a finding applies to, when it comes from rendering nodes: one
    /// group patch that fails on three nodes is one finding for three nodes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            location: None,
            label: None,
            help: None,
            notes: Vec::new(),
            nodes: Vec::new(),
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    pub fn at(mut self, location: Option<Location>) -> Self {
        self.location = location;
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Records that the finding applies to node `hostname`.
    pub fn for_node(mut self, hostname: impl Into<String>) -> Self {
        self.nodes.push(hostname.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Character-indexed line table of a text.
#[derive(Clone, Debug)]
pub struct LineIndex {
    /// Character index at which each line starts.
    starts: Vec<usize>,
    lines: Vec<String>,
    /// For lines longer than [`MAX_LINE_CHARS`]: the byte offset of every
    /// [`MARK_EVERY`]-th character, so an excerpt of a huge line costs the same wherever
    /// it is taken (thousands of findings on one minified line stay linear).
    marks: Vec<Vec<usize>>,
}

const MARK_EVERY: usize = 256;

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        let mut lines = Vec::new();
        let mut marks = Vec::new();
        let mut idx = 0;
        for raw in text.split('\n') {
            let line = raw.trim_end_matches('\r');
            let mut count = 0;
            let mut line_marks = Vec::new();
            for (byte, _) in line.char_indices() {
                if count % MARK_EVERY == 0 {
                    line_marks.push(byte);
                }
                count += 1;
            }
            if count <= MAX_LINE_CHARS {
                line_marks = Vec::new();
            }
            // Positions count every character of the text, a trimmed `\r` included.
            idx += count + (raw.len() - line.len()) + 1;
            starts.push(idx);
            lines.push(line.to_string());
            marks.push(line_marks);
        }
        LineIndex {
            starts,
            lines,
            marks,
        }
    }

    /// 1-based line and column of a character index.
    pub fn line_col(&self, index: usize) -> (usize, usize) {
        let line = match self.starts.binary_search(&index) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let line = line.min(self.lines.len().saturating_sub(1));
        (line + 1, index.saturating_sub(self.starts[line]) + 1)
    }

    pub fn line_text(&self, line: usize) -> &str {
        self.lines
            .get(line.wrapping_sub(1))
            .map_or("", String::as_str)
    }

    /// The location of characters `[start, end)`, underlining at most to the end of the
    /// first line.
    pub fn location(&self, file: &FsPath, start: usize, end: usize) -> Location {
        let (line, col) = self.line_col(start);
        let full = self.line_text(line);
        let (text, excerpt_start) = match self.marks.get(line.wrapping_sub(1)) {
            Some(m) if !m.is_empty() => {
                let first = col.saturating_sub(1).saturating_sub(EXCERPT_BEFORE);
                let from = m.get(first / MARK_EVERY).copied().unwrap_or(full.len());
                let rest = full.get(from..).unwrap_or("");
                let text: String = rest
                    .chars()
                    .skip(first % MARK_EVERY)
                    .take(MAX_LINE_CHARS)
                    .collect();
                (text, first)
            }
            _ => (full.to_string(), 0),
        };
        let shown_after_col = (text.chars().count() + excerpt_start).saturating_sub(col - 1);
        let len = end.saturating_sub(start).min(shown_after_col).max(1);
        Location {
            file: file.to_path_buf(),
            line,
            col,
            len,
            line_text: text,
            excerpt_start,
        }
    }
}

/// Maps character positions in a text produced by substitution back to the text the user
/// wrote. A position inside a substituted value maps to the `${…}` expression it replaced.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    /// (output start, original start, output length, original length), sorted by output start.
    segments: Vec<(usize, usize, usize, usize)>,
}

impl SourceMap {
    pub fn identity() -> Self {
        SourceMap::default()
    }

    pub(crate) fn push_literal(&mut self, out: usize, orig: usize, len: usize) {
        if len == 0 {
            return;
        }
        if let Some(last) = self.segments.last_mut() {
            // Extend a directly preceding literal run.
            if last.0 + last.2 == out && last.1 + last.3 == orig && last.2 == last.3 {
                last.2 += len;
                last.3 += len;
                return;
            }
        }
        self.segments.push((out, orig, len, len));
    }

    pub(crate) fn push_replaced(
        &mut self,
        out: usize,
        orig: usize,
        out_len: usize,
        orig_len: usize,
    ) {
        self.segments.push((out, orig, out_len, orig_len));
    }

    /// The original character index of output index `i`.
    pub fn original(&self, i: usize) -> usize {
        if self.segments.is_empty() {
            return i;
        }
        let pos = match self.segments.binary_search_by(|s| s.0.cmp(&i)) {
            Ok(p) => p,
            Err(0) => return i,
            Err(p) => p - 1,
        };
        let (out, orig, out_len, orig_len) = self.segments[pos];
        let offset = i - out;
        if out_len == orig_len {
            orig + offset
        } else if offset < out_len {
            orig
        } else {
            orig + orig_len + (offset - out_len)
        }
    }
}

/// A file kforge read: its path, the text as written, the mapping from the text that was
/// parsed (after substitution) back to it, and the parsed tree.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub lines: LineIndex,
    pub map: SourceMap,
    pub root: Node,
}

impl SourceFile {
    /// Where a span of the parsed text was written.
    pub fn locate_span(&self, span: Span) -> Location {
        let start = self.map.original(span.start.index);
        let end = self.map.original(span.end.index.max(span.start.index));
        self.lines.location(&self.path, start, end.max(start + 1))
    }

    /// Where the value at `path` was written, or the closest existing ancestor.
    pub fn locate(&self, path: &Path) -> Option<Location> {
        self.find(path).map(|span| self.locate_span(span))
    }

    /// Where the key at the end of `path` was written (for problems with the key itself).
    pub fn locate_key(&self, path: &Path) -> Option<Location> {
        let (last, parent) = path.0.split_last()?;
        let Seg::Key(k) = last else {
            return self.locate(path);
        };
        let parent_node = node_at(&self.root, parent)?;
        let entry = parent_node.entry(k)?;
        Some(self.locate_span(entry.key_span))
    }

    /// The node at `path`, if present.
    pub fn node(&self, path: &Path) -> Option<&Node> {
        node_at(&self.root, &path.0)
    }

    fn find(&self, path: &Path) -> Option<Span> {
        let mut node = &self.root;
        let mut best = None;
        for seg in &path.0 {
            match seg {
                Seg::Key(k) => {
                    let entry = node.entry(k)?;
                    best = Some(if entry.value.is_null() {
                        entry.key_span
                    } else {
                        entry.value.span
                    });
                    node = &entry.value;
                }
                Seg::Index(i) => {
                    let item = node.as_seq()?.get(*i)?;
                    best = Some(item.span);
                    node = item;
                }
            }
        }
        best.or(Some(self.root.span))
    }
}

fn node_at<'a>(root: &'a Node, segs: &[Seg]) -> Option<&'a Node> {
    let mut node = root;
    for seg in segs {
        node = match (seg, &node.value) {
            (Seg::Key(k), NodeValue::Map(_)) => node.get(k)?,
            (Seg::Index(i), NodeValue::Seq(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index() {
        let li = LineIndex::new("ab\ncdé\n\nx");
        assert_eq!(li.line_col(0), (1, 1));
        assert_eq!(li.line_col(3), (2, 1));
        assert_eq!(li.line_col(5), (2, 3));
        assert_eq!(li.line_col(8), (4, 1));
        assert_eq!(li.line_text(2), "cdé");
    }

    #[test]
    fn long_lines_become_excerpts() {
        let line = format!("key: {}", "x".repeat(10_000));
        let li = LineIndex::new(&line);
        let loc = li.location(FsPath::new("f"), 5000, 20_000);
        assert_eq!((loc.line, loc.col), (1, 5001));
        assert_eq!(loc.excerpt_start, 5000 - EXCERPT_BEFORE);
        assert_eq!(loc.line_text.chars().count(), MAX_LINE_CHARS);
        assert_eq!(loc.len, MAX_LINE_CHARS - EXCERPT_BEFORE);
        let short = LineIndex::new("a: b").location(FsPath::new("f"), 3, 4);
        assert_eq!((short.excerpt_start, short.line_text.as_str()), (0, "a: b"));
    }

    #[test]
    fn source_map_through_replacements() {
        // original: "a: ${X}\nb: 1"  -> output "a: hello\nb: 1"
        let mut m = SourceMap::default();
        m.push_literal(0, 0, 3);
        m.push_replaced(3, 3, 5, 4);
        m.push_literal(8, 7, 6);
        assert_eq!(m.original(1), 1);
        assert_eq!(m.original(4), 3);
        assert_eq!(m.original(9), 8);
    }
}
