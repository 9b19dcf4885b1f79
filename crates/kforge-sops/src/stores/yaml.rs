//! YAML files: read with `kforge_yaml` (scalars resolved like Go `yaml.v3`), plus the few
//! things sops' node-level decoding sees differently from a generic decode: plain scalars
//! that look like timestamps become `time.Time`, `!!binary` scalars are decoded, and keys
//! must be strings. Written back with the `yaml.v3` layout at indent 4; every document gets
//! its own copy of the metadata.

use std::collections::HashMap;

use kforge_yaml::{EmitOptions, NodeValue, Pos, Scalar};
use zeroize::Zeroize;

use crate::error::{Problem, SopsError};
use crate::format::Format;
use crate::go_text;
use crate::stores::Loaded;
use crate::tree::{Documents, Item, Node, Value};

pub(crate) fn load(text: &str) -> Result<Loaded, SopsError> {
    let mut parsed =
        kforge_yaml::parse_all_keeping_merge_keys(text).map_err(|e| SopsError::Syntax {
            format: Format::Yaml,
            line: e.pos.line,
            column: e.pos.col,
            message: redact_parse_message(&e.message),
        })?;
    let source = Source::new(text);
    let mut conv = Converter {
        source: &source,
        problems: Vec::new(),
        anchors: HashMap::new(),
        path: String::new(),
    };
    let mut docs = Vec::with_capacity(parsed.len());
    let mut metadata = None;
    let mut metadata_at = None;
    for (i, doc) in parsed.iter().enumerate() {
        let mut items = match &doc.value {
            NodeValue::Null => Vec::new(),
            NodeValue::Map(entries) => conv.map(entries),
            _ => {
                return Err(SopsError::NotAMapping {
                    format: Format::Yaml,
                    document: i + 1,
                    line: doc.span.start.line,
                    found: doc.type_name(),
                });
            }
        };
        if let Some(pos) = items
            .iter()
            .position(|it| matches!(it, Item::Pair { key, .. } if key == "sops"))
        {
            let removed = items.remove(pos);
            if let Item::Pair { node, .. } = removed {
                metadata_at.get_or_insert((i + 1, node.line));
                if metadata.is_none() && i == 0 {
                    metadata = Some(node);
                }
            }
        }
        docs.push(items);
    }
    for doc in &mut parsed {
        zeroize_node(doc);
    }
    let documents = Documents(docs);
    if !conv.problems.is_empty() {
        return Err(SopsError::Input {
            problems: conv.problems,
        });
    }
    Ok(Loaded {
        documents,
        metadata_node: metadata,
        metadata_flat: None,
        metadata_at,
    })
}

/// `kforge_yaml` quotes the offending text in one message; plaintext must not reach errors.
fn redact_parse_message(message: &str) -> String {
    match message.strip_prefix("cannot read `") {
        Some(rest) => match rest.rsplit_once("` as ") {
            Some((_, kind)) => format!("cannot read a tagged value as {kind}"),
            None => "cannot read a tagged value".to_string(),
        },
        None => message.to_string(),
    }
}

fn zeroize_node(node: &mut kforge_yaml::Node) {
    match &mut node.value {
        NodeValue::Str(s) => s.zeroize(),
        NodeValue::Seq(items) => items.iter_mut().for_each(zeroize_node),
        NodeValue::Map(entries) => entries.iter_mut().for_each(|e| zeroize_node(&mut e.value)),
        _ => {}
    }
}

/// The source text, to look at how a scalar was written (quoted, tagged, block, alias).
struct Source<'a> {
    text: &'a str,
    /// Byte offset of each character, only when the text is not ASCII.
    offsets: Option<Vec<usize>>,
}

#[derive(Debug, PartialEq)]
enum Style<'a> {
    Plain,
    Quoted,
    Block,
    Tagged(&'a str),
    Alias(&'a str),
}

impl<'a> Source<'a> {
    fn new(text: &'a str) -> Source<'a> {
        let offsets = (!text.is_ascii()).then(|| text.char_indices().map(|(i, _)| i).collect());
        Source { text, offsets }
    }

    fn byte(&self, pos: Pos) -> usize {
        match &self.offsets {
            None => pos.index,
            Some(o) => o.get(pos.index).copied().unwrap_or(self.text.len()),
        }
    }

    /// How the node starting at `pos` was written, and the anchor it defines.
    fn style(&self, pos: Pos) -> (Style<'a>, Option<&'a str>) {
        let bytes = self.text.as_bytes();
        let start = self.byte(pos).min(bytes.len());
        let mut i = start;
        let mut anchor = None;
        let token_end = |mut j: usize| {
            while j < bytes.len() && !bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            j
        };
        let skip_space = |mut j: usize| {
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            j
        };
        loop {
            match bytes.get(i) {
                Some(b'&') => {
                    let end = token_end(i);
                    anchor = self.text.get(i + 1..end);
                    i = skip_space(end);
                }
                Some(b'!') => {
                    let end = token_end(i);
                    return (Style::Tagged(self.text.get(i..end).unwrap_or("")), anchor);
                }
                Some(b'*') => {
                    return (
                        Style::Alias(self.text.get(i + 1..token_end(i)).unwrap_or("")),
                        anchor,
                    );
                }
                Some(b'"' | b'\'') => return (Style::Quoted, anchor),
                _ => break,
            }
        }
        // Block scalar content starts on the line after its `|`/`>` header.
        let mut j = start;
        while j > 0 && bytes[j - 1].is_ascii_whitespace() {
            j -= 1;
        }
        let mut k = j;
        while k > 0
            && (bytes[k - 1] == b'+' || bytes[k - 1] == b'-' || bytes[k - 1].is_ascii_digit())
            && j - k < 3
        {
            k -= 1;
        }
        if k > 0 && matches!(bytes[k - 1], b'|' | b'>') {
            return (Style::Block, anchor);
        }
        (Style::Plain, anchor)
    }
}

struct Converter<'s, 'a> {
    source: &'s Source<'a>,
    problems: Vec<Problem>,
    /// Anchors on timestamp scalars, so aliases to them are timestamps too.
    anchors: HashMap<String, bool>,
    /// The key path of the node being converted, for messages.
    path: String,
}

impl Converter<'_, '_> {
    fn map(&mut self, entries: &[kforge_yaml::Entry]) -> Vec<Item> {
        entries
            .iter()
            .map(|e| {
                let len = self.path.len();
                crate::walk::push_key(&mut self.path, &e.key);
                self.check_key(e);
                let node = self.node(&e.value);
                self.path.truncate(len);
                Item::Pair {
                    key: e.key.clone(),
                    node,
                }
            })
            .collect()
    }

    fn check_key(&mut self, e: &kforge_yaml::Entry) {
        let (style, _) = self.source.style(e.key_span.start);
        if style != Style::Plain {
            return;
        }
        let kind = match kforge_yaml::resolve_plain(&e.key) {
            Scalar::Str if go_text::parse_yaml_timestamp(&e.key).is_some() => "a timestamp",
            Scalar::Str => return,
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Int(_) | Scalar::UInt(_) => "an integer",
            Scalar::Float(_) => "a number",
        };
        self.problems.push(Problem::new(
            self.path.clone(),
            Some(e.key_span.start.line),
            format!("the key is {kind}, but sops supports only string keys; quote it"),
        ));
    }

    fn node(&mut self, n: &kforge_yaml::Node) -> Node {
        let line = n.span.start.line;
        let value = match &n.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::Int(*i),
            NodeValue::UInt(_) => {
                self.problems.push(Problem::new(
                    self.path.clone(),
                    Some(line),
                    "is an integer above 9223372036854775807, which sops cannot encrypt; quote it",
                ));
                Value::Null
            }
            NodeValue::Float(f) => Value::Float(*f),
            NodeValue::Str(s) => self.string(s, n.span.start, line),
            NodeValue::Seq(items) => Value::Seq(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let len = self.path.len();
                        crate::walk::push_index(&mut self.path, i);
                        let node = self.node(item);
                        self.path.truncate(len);
                        node
                    })
                    .collect(),
            ),
            NodeValue::Map(entries) => Value::Map(self.map(entries)),
        };
        Node::new(value, line)
    }

    fn string(&mut self, s: &str, pos: Pos, line: usize) -> Value {
        let looks_like_time = s.len() >= 8 && s.as_bytes()[4] == b'-';
        if !looks_like_time
            && !self
                .source
                .text
                .as_bytes()
                .get(self.source.byte(pos))
                .is_some_and(|b| *b == b'!' || *b == b'&')
        {
            return Value::Str(s.to_string());
        }
        let (style, anchor) = self.source.style(pos);
        let time = match style {
            Style::Plain => go_text::parse_yaml_timestamp(s),
            Style::Alias(name) if self.anchors.get(name).copied().unwrap_or(false) => {
                go_text::parse_yaml_timestamp(s)
            }
            Style::Tagged("!!timestamp") => go_text::parse_yaml_timestamp(s),
            Style::Tagged("!!binary") => return self.binary(s, line),
            _ => None,
        };
        if let Some(name) = anchor {
            self.anchors.insert(name.to_string(), time.is_some());
        }
        match time {
            Some(t) => Value::Time(t.rfc3339_nano()),
            None => Value::Str(s.to_string()),
        }
    }

    /// `yaml.v3` decodes `!!binary` into the string of its bytes.
    fn binary(&mut self, s: &str, line: usize) -> Value {
        use base64::Engine as _;
        let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        match base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map(String::from_utf8)
        {
            Ok(Ok(text)) => Value::Str(text),
            _ => {
                self.problems.push(Problem::new(
                    self.path.clone(),
                    Some(line),
                    "is a !!binary value that is not base64 of UTF-8 text, which kforge cannot encrypt",
                ));
                Value::Null
            }
        }
    }
}

/// Writes documents with the metadata appended to each (when given). The documents are
/// borrowed mutably only to wrap each one into a root node without copying its values.
pub(crate) fn emit(docs: &mut Documents, metadata: Option<&Node>) -> String {
    let opts = EmitOptions { indent: 4 };
    let mut out = String::new();
    for (i, doc) in docs.0.iter_mut().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let mut root = Node::new(Value::Map(std::mem::take(doc)), 0);
        if let (Some(meta), Value::Map(items)) = (metadata, &mut root.value) {
            items.push(Item::Pair {
                key: "sops".to_string(),
                node: meta.clone_tree(),
            });
        }
        out.push_str(&kforge_yaml::node_to_string(&root, opts));
        if let Value::Map(mut items) = std::mem::replace(&mut root.value, Value::Null) {
            if metadata.is_some() {
                items.pop();
            }
            *doc = items;
        }
    }
    out
}
