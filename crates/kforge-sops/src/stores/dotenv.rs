//! dotenv files, as sops' dotenv store handles them: `KEY=value` lines (value taken
//! verbatim after the first `=`, `\n` meaning a newline), `#` comment lines, blank lines
//! dropped; metadata as sorted `sops_*` lines.

use crate::error::SopsError;
use crate::format::Format;
use crate::go_text;
use crate::stores::Loaded;
use crate::tree::{Documents, Item, Node, Value};

const PREFIX: &str = "sops_";

pub(crate) fn load(text: &str) -> Result<Loaded, SopsError> {
    let mut items = Vec::new();
    let mut flat = Vec::new();
    let mut metadata_at = None;
    let mut bad_lines = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let n = i + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            items.push(Item::Comment {
                text: comment.to_string(),
                line: n,
            });
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bad_lines.push(n);
            continue;
        };
        let value = value.replace("\\n", "\n");
        if let Some(meta_key) = key.strip_prefix(PREFIX) {
            metadata_at.get_or_insert((1, n));
            flat.push((meta_key.to_string(), value));
        } else {
            items.push(Item::Pair {
                key: key.to_string(),
                node: Node::new(Value::Str(value), n),
            });
        }
    }
    let documents = Documents(vec![items]);
    if let Some(&first) = bad_lines.first() {
        let lines: Vec<String> = bad_lines.iter().map(usize::to_string).collect();
        return Err(SopsError::Syntax {
            format: Format::Dotenv,
            line: first,
            column: 1,
            message: format!(
                "line(s) {} have no `=`; dotenv lines are KEY=value or #comment",
                lines.join(", ")
            ),
        });
    }
    let metadata_flat = (!flat.is_empty()).then_some(flat);
    Ok(Loaded {
        documents,
        metadata_node: None,
        metadata_flat,
        metadata_at,
    })
}

/// Whether a dotenv text has `sops_*` metadata lines.
pub(crate) fn has_metadata(text: &str) -> bool {
    text.split('\n').any(|l| {
        !l.starts_with('#')
            && l.split_once('=')
                .is_some_and(|(k, v)| k.starts_with(PREFIX) && !v.is_empty())
    })
}

pub(crate) fn emit(
    docs: &Documents,
    metadata: Option<&[(String, String)]>,
) -> Result<String, SopsError> {
    let mut out = String::new();
    for item in docs.0.first().map(Vec::as_slice).unwrap_or_default() {
        match item {
            Item::Comment { text, .. } => {
                out.push('#');
                out.push_str(text);
                out.push('\n');
            }
            Item::Pair { key, node } => {
                let value = value_text(node).ok_or_else(|| SopsError::Emit {
                    format: Format::Dotenv,
                    path: key.clone(),
                    reason: format!("dotenv values must be scalars, found {}", node.kind()),
                })?;
                out.push_str(key);
                out.push('=');
                out.push_str(&value.replace('\n', "\\n"));
                out.push('\n');
            }
        }
    }
    for (key, value) in metadata.unwrap_or_default() {
        out.push_str(PREFIX);
        out.push_str(key);
        out.push('=');
        out.push_str(&value.replace('\n', "\\n"));
        out.push('\n');
    }
    Ok(out)
}

/// sops' `ValueToString` for the scalar types a decrypted value can have.
fn value_text(node: &Node) -> Option<String> {
    Some(match &node.value {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:.6}"),
        Value::Bool(b) => b.to_string(),
        Value::Time(t) => go_text::parse_rfc3339(t).map_or_else(|| t.clone(), |t| t.rfc3339()),
        Value::Null => "<nil>".to_string(),
        Value::Seq(_) | Value::Map(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_like_sops() {
        let text = "# c\nA=1\n\nB=x=y\nC=multi\\nline\nD=\nsops_version=3.11.0\n";
        let loaded = load(text).unwrap();
        assert_eq!(
            loaded.metadata_flat.as_deref(),
            Some(&[("version".to_string(), "3.11.0".to_string())][..])
        );
        assert_eq!(loaded.metadata_at, Some((1, 7)));
        let out = emit(&loaded.documents, None).unwrap();
        assert_eq!(out, "# c\nA=1\nB=x=y\nC=multi\\nline\nD=\n");
        let err = load("A=1\nSECRETVALUE\n").err().unwrap().to_string();
        assert!(
            err.contains("line 2") && !err.contains("SECRETVALUE"),
            "{err}"
        );
        assert!(has_metadata("A=1\nsops_mac=x\n"));
        assert!(!has_metadata("A=1\n#sops_mac=x\n"));
    }
}
