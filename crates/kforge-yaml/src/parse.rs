//! Event-driven construction of a spanned tree, with budgets enforced while building so that
//! deep nesting, alias bombs or huge inputs fail fast with a positioned error.

use std::collections::{HashMap, HashSet};
use std::fmt;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, ScanError, SpannedEventReceiver, Tag};

use crate::resolve::{Scalar, resolve_plain};
use crate::span::{Pos, Span};
use crate::{Mapping, Value};

/// Bounds on what a parse may build.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Size of the input in bytes.
    pub max_bytes: usize,
    /// Nesting depth of collections.
    pub max_depth: usize,
    /// Nodes in the resulting trees, counting every alias expansion.
    pub max_nodes: usize,
    /// Nodes created by alias expansion alone (the "billion laughs" budget).
    pub max_alias_nodes: usize,
    /// Text (scalars and keys, in bytes) created by alias expansion: a few aliases of one
    /// huge scalar are as costly as a billion small nodes.
    pub max_alias_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 32 << 20,
            max_depth: 128,
            max_nodes: 4_000_000,
            max_alias_nodes: 100_000,
            max_alias_bytes: 16 << 20,
        }
    }
}

/// A YAML syntax error or a violated limit, with where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub pos: Pos,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.message, self.pos.line, self.pos.col
        )
    }
}

impl std::error::Error for ParseError {}

/// A YAML node and the text it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: NodeValue,
    pub span: Span,
    /// The source text of a non-string scalar (`0644`, `1.30`, `yes`), for readers that
    /// take any scalar as a string the way Go's yaml.v3 does.
    pub raw: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` pair of a mapping. Keys are always scalars, kept as their text.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

impl Node {
    /// The value under `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The text of any scalar as written (strings as their value); `None` for collections.
    pub fn scalar_text(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            NodeValue::Seq(_) | NodeValue::Map(_) => None,
            _ => self.raw.as_deref(),
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            NodeValue::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            NodeValue::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, NodeValue::Null)
    }

    /// A short name of the node's type for messages: "a string", "a mapping", …
    pub fn type_name(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) | NodeValue::UInt(_) => "an integer",
            NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }

    /// The plain value. Non-finite floats have no JSON form and become null.
    pub fn to_value(&self) -> Value {
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::UInt(u) => Value::from(*u),
            NodeValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            NodeValue::Map(entries) => {
                let mut m = Mapping::with_capacity(entries.len());
                for e in entries {
                    m.insert(e.key.clone(), e.value.to_value());
                }
                Value::Object(m)
            }
        }
    }

    /// Number of nodes in this subtree.
    fn count(&self) -> usize {
        1 + match &self.value {
            NodeValue::Seq(items) => items.iter().map(Node::count).sum(),
            NodeValue::Map(entries) => entries.iter().map(|e| e.value.count()).sum(),
            _ => 0,
        }
    }

    /// Bytes of text (scalars as written, keys) in this subtree.
    fn text_bytes(&self) -> usize {
        match &self.value {
            NodeValue::Str(s) => s.len(),
            NodeValue::Seq(items) => items.iter().map(Node::text_bytes).sum(),
            NodeValue::Map(entries) => entries
                .iter()
                .map(|e| e.key.len() + e.value.text_bytes())
                .sum(),
            _ => self.raw.as_ref().map_or(0, String::len),
        }
    }
}

/// Parses a text holding exactly one document (an empty text is a null document).
pub fn parse(src: &str) -> Result<Node, ParseError> {
    let mut docs = parse_all(src)?;
    match docs.len() {
        0 => Ok(Node {
            value: NodeValue::Null,
            span: Span::default(),
            raw: None,
        }),
        1 => Ok(docs.remove(0)),
        n => Err(ParseError {
            message: format!("expected a single YAML document, found {n}"),
            pos: docs[1].span.start,
        }),
    }
}

/// Parses every document of a multi-document text.
pub fn parse_all(src: &str) -> Result<Vec<Node>, ParseError> {
    parse_all_with(src, Limits::default())
}

pub fn parse_all_with(src: &str, limits: Limits) -> Result<Vec<Node>, ParseError> {
    parse_all_impl(src, limits, true)
}

/// Like [`parse_all`], but a `<<` key stays an ordinary key holding its value instead of
/// merging it, as in Go `yaml.v3`'s node API (which sops walks, so its key paths include
/// `<<`).
pub fn parse_all_keeping_merge_keys(src: &str) -> Result<Vec<Node>, ParseError> {
    parse_all_impl(src, Limits::default(), false)
}

fn parse_all_impl(src: &str, limits: Limits, merge_keys: bool) -> Result<Vec<Node>, ParseError> {
    if src.len() > limits.max_bytes {
        return Err(ParseError {
            message: format!(
                "input is {} bytes, more than the {} bytes kforge reads as YAML",
                src.len(),
                limits.max_bytes
            ),
            pos: Pos {
                index: 0,
                line: 1,
                col: 1,
            },
        });
    }
    let mut builder = Builder::new(limits);
    builder.merge_keys = merge_keys;
    let mut parser = Parser::new_from_str(src);
    let scan = parser.load(&mut builder, true);
    if let Some(err) = builder.error.take() {
        return Err(err);
    }
    scan.map_err(scan_error)?;
    Ok(builder.docs)
}

fn scan_error(e: ScanError) -> ParseError {
    let message = match e.info() {
        "recursion limit exceeded" => {
            "nesting is too deep (the parser's recursion limit is exceeded)".to_string()
        }
        other => other.to_string(),
    };
    ParseError {
        message,
        pos: pos(*e.marker()),
    }
}

fn pos(m: Marker) -> Pos {
    Pos {
        index: m.index(),
        line: m.line(),
        col: m.col() + 1,
    }
}

fn span(s: saphyr_parser::Span) -> Span {
    Span::new(pos(s.start), pos(s.end))
}

enum Frame {
    Seq {
        items: Vec<Node>,
        start: Span,
        anchor: usize,
    },
    Map {
        entries: Vec<Entry>,
        /// Keys of `entries`, so duplicate checks stay O(1) in wide mappings.
        keys: HashSet<String>,
        key: Option<(Node, bool)>,
        merges: Vec<Node>,
        start: Span,
        anchor: usize,
    },
}

struct Builder {
    limits: Limits,
    docs: Vec<Node>,
    stack: Vec<Frame>,
    /// Anchored nodes with their node count and text size.
    anchors: HashMap<usize, (Node, usize, usize)>,
    nodes: usize,
    alias_nodes: usize,
    alias_bytes: usize,
    /// Whether the node being finished is a plain (unquoted) scalar; only a plain `<<` merges.
    plain: bool,
    /// Whether plain `<<` keys merge (YAML merge keys) or stay ordinary keys.
    merge_keys: bool,
    error: Option<ParseError>,
}

impl Builder {
    fn new(limits: Limits) -> Self {
        Builder {
            limits,
            docs: Vec::new(),
            stack: Vec::new(),
            anchors: HashMap::new(),
            nodes: 0,
            alias_nodes: 0,
            alias_bytes: 0,
            plain: false,
            merge_keys: true,
            error: None,
        }
    }

    fn fail(&mut self, message: impl Into<String>, at: Pos) {
        if self.error.is_none() {
            self.error = Some(ParseError {
                message: message.into(),
                pos: at,
            });
        }
    }

    fn count(&mut self, n: usize, at: Pos) -> bool {
        self.nodes += n;
        if self.nodes > self.limits.max_nodes {
            self.fail(
                format!("document has more than {} nodes", self.limits.max_nodes),
                at,
            );
            return false;
        }
        true
    }

    fn on(&mut self, ev: Event<'_>, sp: Span) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                if !self.count(1, sp.start) {
                    return;
                }
                let value = match scalar_value(&text, style, tag.as_deref()) {
                    Ok(v) => v,
                    Err(msg) => return self.fail(msg, sp.start),
                };
                let raw = (!matches!(value, NodeValue::Str(_))).then(|| text.to_string());
                let node = Node {
                    value,
                    span: sp,
                    raw,
                };
                self.plain = style == ScalarStyle::Plain;
                self.finish(node, anchor);
                self.plain = false;
            }
            Event::Alias(id) => {
                let Some((size, bytes)) = self.anchors.get(&id).map(|a| (a.1, a.2)) else {
                    return self.fail("alias refers to an unknown anchor", sp.start);
                };
                self.alias_nodes += size;
                if self.alias_nodes > self.limits.max_alias_nodes {
                    return self.fail(
                        format!(
                            "aliases expand to more than {} nodes (is this an alias bomb?)",
                            self.limits.max_alias_nodes
                        ),
                        sp.start,
                    );
                }
                self.alias_bytes += bytes;
                if self.alias_bytes > self.limits.max_alias_bytes {
                    return self.fail(
                        format!(
                            "aliases expand to more than {} bytes of text (is this an alias bomb?)",
                            self.limits.max_alias_bytes
                        ),
                        sp.start,
                    );
                }
                if !self.count(size, sp.start) {
                    return;
                }
                // Cloned only once the budgets allow it.
                let Some(node) = self.anchors.get(&id).map(|a| a.0.clone()) else {
                    return;
                };
                // The copy points at the alias for errors about the value as a whole.
                let mut copy = node;
                copy.span = sp;
                self.finish(copy, 0);
            }
            Event::SequenceStart(anchor, _) => {
                if self.push_depth(sp.start) {
                    self.stack.push(Frame::Seq {
                        items: Vec::new(),
                        start: sp,
                        anchor,
                    });
                }
            }
            Event::MappingStart(anchor, _) => {
                if self.push_depth(sp.start) {
                    self.stack.push(Frame::Map {
                        entries: Vec::new(),
                        keys: HashSet::new(),
                        key: None,
                        merges: Vec::new(),
                        start: sp,
                        anchor,
                    });
                }
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    items,
                    start,
                    anchor,
                }) = self.stack.pop()
                {
                    let node = Node {
                        value: NodeValue::Seq(items),
                        span: start.join(sp),
                        raw: None,
                    };
                    if self.count(1, sp.start) {
                        self.finish(node, anchor);
                    }
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    mut entries,
                    mut keys,
                    merges,
                    start,
                    anchor,
                    ..
                }) = self.stack.pop()
                {
                    for merge in merges {
                        if let Err((msg, at)) = apply_merge(&mut entries, &mut keys, merge) {
                            return self.fail(msg, at);
                        }
                    }
                    let node = Node {
                        value: NodeValue::Map(entries),
                        span: start.join(sp),
                        raw: None,
                    };
                    if self.count(1, sp.start) {
                        self.finish(node, anchor);
                    }
                }
            }
            Event::DocumentStart(_) => {
                self.anchors.clear();
            }
            Event::DocumentEnd | Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
    }

    fn push_depth(&mut self, at: Pos) -> bool {
        if self.stack.len() >= self.limits.max_depth {
            self.fail(
                format!("nesting is deeper than {} levels", self.limits.max_depth),
                at,
            );
            return false;
        }
        true
    }

    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            // Keeping a copy of an anchored node costs as much as the node: count it, so
            // anchors on every ancestor of a large subtree cannot multiply it.
            let size = node.count();
            if !self.count(size, node.span.start) {
                return;
            }
            let bytes = node.text_bytes();
            self.anchors.insert(anchor, (node.clone(), size, bytes));
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                keys,
                key,
                merges,
                ..
            }) => match key.take() {
                None => {
                    if matches!(node.value, NodeValue::Seq(_) | NodeValue::Map(_)) {
                        let at = node.span.start;
                        self.fail("a mapping key must be a scalar, not a list or mapping", at);
                    } else {
                        *key = Some((node, self.plain));
                    }
                }
                Some((k, plain)) => {
                    let name = key_text(&k);
                    if name == "<<" && plain && self.merge_keys {
                        merges.push(node);
                        return;
                    }
                    if !keys.insert(name.clone()) {
                        let Some(prev) = entries.iter().find(|e| e.key == name) else {
                            return;
                        };
                        let msg = format!(
                            "mapping key `{name}` already defined at line {}",
                            prev.key_span.start.line
                        );
                        let at = k.span.start;
                        self.fail(msg, at);
                        return;
                    }
                    entries.push(Entry {
                        key: name,
                        key_span: k.span,
                        value: node,
                    });
                }
            },
        }
    }
}

fn apply_merge(
    entries: &mut Vec<Entry>,
    keys: &mut HashSet<String>,
    merge: Node,
) -> Result<(), (String, Pos)> {
    let sources: Vec<Node> = match merge.value {
        NodeValue::Map(_) => vec![merge],
        NodeValue::Seq(items) => items,
        _ => {
            return Err((
                "a merge key `<<` needs a mapping or a list of mappings".into(),
                merge.span.start,
            ));
        }
    };
    for source in sources {
        let NodeValue::Map(src_entries) = source.value else {
            return Err((
                "a merge key `<<` needs a mapping or a list of mappings".into(),
                source.span.start,
            ));
        };
        for e in src_entries {
            if keys.insert(e.key.clone()) {
                entries.push(e);
            }
        }
    }
    Ok(())
}

fn key_text(k: &Node) -> String {
    match &k.value {
        NodeValue::Null => String::new(),
        NodeValue::Bool(b) => b.to_string(),
        NodeValue::Int(i) => i.to_string(),
        NodeValue::UInt(u) => u.to_string(),
        NodeValue::Float(f) => f.to_string(),
        NodeValue::Str(s) => s.clone(),
        NodeValue::Seq(_) | NodeValue::Map(_) => String::new(),
    }
}

fn scalar_value(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<NodeValue, String> {
    let core = tag.and_then(|t| {
        (t.handle == "!!" || t.handle == "tag:yaml.org,2002:").then_some(t.suffix.as_str())
    });
    let resolved = match core {
        Some("str" | "binary" | "timestamp") => return Ok(NodeValue::Str(text.to_string())),
        Some(kind @ ("int" | "float" | "bool" | "null")) => {
            let r = resolve_plain(text);
            let ok = matches!(
                (kind, &r),
                ("int", Scalar::Int(_) | Scalar::UInt(_))
                    | ("float", Scalar::Float(_) | Scalar::Int(_) | Scalar::UInt(_))
                    | ("bool", Scalar::Bool(_))
                    | ("null", Scalar::Null)
            );
            if !ok {
                return Err(format!("cannot read `{text}` as !!{kind}"));
            }
            match (kind, r) {
                ("float", Scalar::Int(i)) => Scalar::Float(i as f64),
                ("float", Scalar::UInt(u)) => Scalar::Float(u as f64),
                (_, r) => r,
            }
        }
        _ if style == ScalarStyle::Plain => resolve_plain(text),
        _ => Scalar::Str,
    };
    Ok(match resolved {
        Scalar::Null => NodeValue::Null,
        Scalar::Bool(b) => NodeValue::Bool(b),
        Scalar::Int(i) => NodeValue::Int(i),
        Scalar::UInt(u) => NodeValue::UInt(u),
        Scalar::Float(f) => NodeValue::Float(f),
        Scalar::Str => NodeValue::Str(text.to_string()),
    })
}

impl<'input> SpannedEventReceiver<'input> for Builder {
    fn on_event(&mut self, ev: Event<'input>, sp: saphyr_parser::Span) {
        self.on(ev, span(sp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_values() {
        let src = "a: 1\nb:\n  - x\n  - 'true'\nc: {d: 0o644}\n";
        let doc = parse(src).unwrap();
        let b = doc.get("b").unwrap();
        assert_eq!(b.as_seq().unwrap()[1].as_str(), Some("true"));
        assert_eq!(b.as_seq().unwrap()[0].span.start.line, 3);
        assert_eq!(b.as_seq().unwrap()[0].span.start.col, 5);
        assert_eq!(
            doc.get("c").unwrap().get("d").unwrap().value,
            NodeValue::Int(420)
        );
        assert_eq!(doc.entry("c").unwrap().key_span.start.line, 5);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("already defined at line 1"), "{err}");
        assert_eq!(err.pos.line, 2);
    }

    #[test]
    fn merge_keys() {
        let doc = parse("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n").unwrap();
        let v = doc.get("other").unwrap().to_value();
        assert_eq!(v, serde_json::json!({"y": 3, "x": 1}));
    }

    #[test]
    fn merge_keys_can_stay_literal() {
        let docs =
            parse_all_keeping_merge_keys("base: &b {x: 1}\nother:\n  <<: *b\n  y: 3\n").unwrap();
        let other = docs[0].get("other").unwrap();
        assert_eq!(
            other.get("<<").unwrap().to_value(),
            serde_json::json!({"x": 1})
        );
        assert!(other.get("x").is_none());
    }

    #[test]
    fn alias_bomb_is_bounded() {
        let mut src = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='k' {
            src.push_str(&format!("{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
            prev = c;
        }
        let err = parse(&src).unwrap_err();
        assert!(err.message.contains("alias"), "{err}");
    }

    #[test]
    fn alias_bomb_of_large_scalars_is_bounded() {
        // Few nodes, but each alias copies a 1 MiB string.
        let mut src = format!("a: &a {}\nb:\n", "x".repeat(1 << 20));
        for _ in 0..100 {
            src.push_str("  - *a\n");
        }
        let err = parse(&src).unwrap_err();
        assert!(err.message.contains("bytes of text"), "{err}");
        assert_eq!(err.pos.line, 19, "{err}");
    }

    #[test]
    fn anchors_on_ancestors_count_their_copies() {
        let limits = Limits {
            max_nodes: 1000,
            ..Limits::default()
        };
        // Each anchor keeps a copy of the 300-item list below it.
        let items = vec!["x"; 300].join(", ");
        let src = format!("a: &a [&b [&c [&d [{items}]]]]\n");
        assert!(parse_all_with(&src, limits).is_err());
        assert!(parse_all_with(&format!("a: [[[[{items}]]]]\n"), limits).is_ok());
    }

    #[test]
    fn wide_mappings_and_merges() {
        let mut src = String::from("base: &b {x: 1}\nwide:\n  <<: *b\n");
        for i in 0..50_000 {
            src.push_str(&format!("  k{i}: {i}\n"));
        }
        let doc = parse(&src).unwrap();
        let wide = doc.get("wide").unwrap().as_map().unwrap();
        assert_eq!(wide.len(), 50_001);
        assert_eq!(wide.last().unwrap().key, "x");
        src.push_str("  k7: again\n");
        let err = parse(&src).unwrap_err();
        assert!(
            err.message.contains("`k7` already defined at line 11"),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let src = "[".repeat(100_000);
        assert!(parse(&src).is_err());
    }

    #[test]
    fn multi_document() {
        let docs = parse_all("a: 1\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
        assert!(parse("").unwrap().is_null());
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1);
        let err = parse("a: 1\n b: 2\n").unwrap_err();
        assert_eq!(err.pos.line, 2, "{err}");
    }
}
