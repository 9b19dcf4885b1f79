//! JSON files, as sops' JSON store handles them: one top-level object, every number a Go
//! `float64` (so integers are encrypted as `type:float`), written back with tab indentation
//! and Go's `encoding/json` escaping.

use crate::error::SopsError;
use crate::format::Format;
use crate::go_text;
use crate::stores::Loaded;
use crate::tree::{Documents, Item, Node, Value};

pub(crate) fn load(text: &str) -> Result<Loaded, SopsError> {
    let mut parsed: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        let message = match message.rfind(" at line ") {
            Some(pos) => message[..pos].to_string(),
            None => message,
        };
        SopsError::Syntax {
            format: Format::Json,
            line: e.line(),
            column: e.column(),
            message,
        }
    })?;
    let mut lines = LineFinder {
        text,
        cursor: 0,
        line: 1,
    };
    let result = match &parsed {
        serde_json::Value::Object(map) => {
            let mut items = Vec::with_capacity(map.len());
            let mut metadata = None;
            for (key, value) in map {
                let node = convert(value, &mut lines);
                if key == "sops" {
                    metadata = Some(node);
                } else {
                    items.push(Item::Pair {
                        key: key.clone(),
                        node,
                    });
                }
            }
            let metadata_at = metadata
                .as_ref()
                .map(|_| (1, text_line_of_key(text, "\"sops\"")));
            Ok(Loaded {
                documents: Documents(vec![items]),
                metadata_node: metadata,
                metadata_flat: None,
                metadata_at,
            })
        }
        other => Err(SopsError::NotAMapping {
            format: Format::Json,
            document: 1,
            line: 1,
            found: json_kind(other),
        }),
    };
    zeroize_json(&mut parsed);
    result
}

fn zeroize_json(v: &mut serde_json::Value) {
    use zeroize::Zeroize;
    match v {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(zeroize_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(zeroize_json),
        _ => {}
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn text_line_of_key(text: &str, needle: &str) -> usize {
    text.find(needle)
        .map_or(0, |pos| 1 + text[..pos].matches('\n').count())
}

/// Finds the lines of encrypted values, which appear verbatim and in order in the text
/// (serde_json keeps no positions).
struct LineFinder<'a> {
    text: &'a str,
    cursor: usize,
    line: usize,
}

impl LineFinder<'_> {
    fn line_of(&mut self, s: &str) -> usize {
        match self.text[self.cursor..].find(s) {
            Some(pos) => {
                let end = self.cursor + pos;
                self.line += self.text[self.cursor..end].matches('\n').count();
                self.cursor = end;
                self.line
            }
            None => 0,
        }
    }
}

fn convert(v: &serde_json::Value, lines: &mut LineFinder<'_>) -> Node {
    let value = match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        // Go decodes every JSON number into a float64.
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => {
            let line = if s.starts_with("ENC[") {
                lines.line_of(s)
            } else {
                0
            };
            return Node::new(Value::Str(s.clone()), line);
        }
        serde_json::Value::Array(items) => {
            Value::Seq(items.iter().map(|i| convert(i, lines)).collect())
        }
        serde_json::Value::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| Item::Pair {
                    key: k.clone(),
                    node: convert(v, lines),
                })
                .collect(),
        ),
    };
    Node::new(value, 0)
}

/// Writes the document (with the metadata appended) like sops: tab-indented, `": "`
/// separators, Go's escaping, a final newline.
pub(crate) fn emit(docs: &Documents, metadata: Option<&Node>) -> Result<String, SopsError> {
    let mut out = String::new();
    let empty = Vec::new();
    let items = docs.0.first().unwrap_or(&empty);
    let mut entries: Vec<(&str, &Node)> = items
        .iter()
        .filter_map(|it| match it {
            Item::Pair { key, node } => Some((key.as_str(), node)),
            Item::Comment { .. } => None,
        })
        .collect();
    if let Some(meta) = metadata {
        entries.push(("sops", meta));
    }
    let mut path = String::new();
    write_map(&mut out, &entries, 0, &mut path)?;
    out.push('\n');
    Ok(out)
}

fn indent(out: &mut String, depth: usize) {
    out.extend(std::iter::repeat_n('\t', depth));
}

fn write_map(
    out: &mut String,
    entries: &[(&str, &Node)],
    depth: usize,
    path: &mut String,
) -> Result<(), SopsError> {
    if entries.is_empty() {
        out.push_str("{}");
        return Ok(());
    }
    out.push_str("{\n");
    for (i, (key, node)) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        indent(out, depth + 1);
        write_string(out, key);
        out.push_str(": ");
        let len = path.len();
        crate::walk::push_key(path, key);
        write_node(out, node, depth + 1, path)?;
        path.truncate(len);
    }
    out.push('\n');
    indent(out, depth);
    out.push('}');
    Ok(())
}

fn write_node(
    out: &mut String,
    node: &Node,
    depth: usize,
    path: &mut String,
) -> Result<(), SopsError> {
    match &node.value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => match go_text::float_json(*f) {
            Some(s) => out.push_str(&s),
            None => {
                return Err(SopsError::Emit {
                    format: Format::Json,
                    path: path.clone(),
                    reason: "the number is infinite or NaN, which JSON cannot represent"
                        .to_string(),
                });
            }
        },
        Value::Str(s) | Value::Time(s) => write_string(out, s),
        Value::Seq(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                indent(out, depth + 1);
                let len = path.len();
                crate::walk::push_index(path, i);
                write_node(out, item, depth + 1, path)?;
                path.truncate(len);
            }
            out.push('\n');
            indent(out, depth);
            out.push(']');
        }
        Value::Map(items) => {
            let entries: Vec<(&str, &Node)> = items
                .iter()
                .filter_map(|it| match it {
                    Item::Pair { key, node } => Some((key.as_str(), node)),
                    Item::Comment { .. } => None,
                })
                .collect();
            write_map(out, &entries, depth, path)?;
        }
    }
    Ok(())
}

/// A JSON string as Go's `encoding/json` writes it (HTML-safe escaping).
fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\u{0}'..='\u{1f}' => {
                let n = c as u32;
                out.push_str("\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[((n >> shift) & 0xf) as usize] as char);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        let mut out = String::new();
        write_string(&mut out, "x<y>&z\u{2028}é\u{8}\u{c}\u{1}\"\\\n");
        assert_eq!(out, r#""x\u003cy\u003e\u0026z\u2028é\b\f\u0001\"\\\n""#);
    }

    #[test]
    fn layout_like_sops() {
        let loaded = load(r#"{"a": 1, "g": [1, {"h": "i"}, []], "n": {}, "e": null}"#).unwrap();
        let text = emit(&loaded.documents, None).unwrap();
        assert_eq!(
            text,
            "{\n\t\"a\": 1,\n\t\"g\": [\n\t\t1,\n\t\t{\n\t\t\t\"h\": \"i\"\n\t\t},\n\t\t[]\n\t],\n\t\"n\": {},\n\t\"e\": null\n}\n"
        );
        assert!(matches!(load("[1]"), Err(SopsError::NotAMapping { .. })));
        assert!(matches!(
            load("{\"a\": }"),
            Err(SopsError::Syntax { line: 1, .. })
        ));
    }
}
