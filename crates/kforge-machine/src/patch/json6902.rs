//! RFC 6902 JSON patches: loading with positions, applying to single-document configs, and
//! the strategic-merge equivalent shown when the config has several documents.

use kforge_yaml::{EmitOptions, Node, NodeValue, Pos};
use serde_json::{Map, Value, json};

use super::load::{closest, problem};
use super::{PatchError, rules};

const OPS: &[&str] = &["add", "remove", "replace", "move", "copy", "test"];
const KEYS: &[&str] = &["op", "path", "value", "from"];

#[derive(Clone, Debug)]
pub(super) struct Operation {
    /// 1-based position in the patch.
    index: usize,
    op: String,
    path: String,
    from: Option<String>,
    value: Option<Value>,
    at: Pos,
    operation: json_patch::PatchOperation,
}

fn valid_pointer(p: &str) -> bool {
    p.is_empty() || p.starts_with('/')
}

pub(super) fn parse(label: &str, doc: &Node) -> Result<Vec<Operation>, PatchError> {
    let NodeValue::Seq(items) = &doc.value else {
        unreachable!("called for list documents only")
    };
    let mut problems = Vec::new();
    let mut ops = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let index = i + 1;
        let NodeValue::Map(entries) = &item.value else {
            problems.push(problem(
                item.span.start,
                format!(
                    "JSON patch operation #{index} must be a mapping {{op, path, value}}, found {}",
                    item.type_name()
                ),
            ));
            continue;
        };
        for e in entries {
            if !KEYS.contains(&e.key.as_str()) {
                let hint = closest(&e.key, KEYS)
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                problems.push(problem(
                    e.key_span.start,
                    format!("unknown key `{}` in JSON patch operation #{index}{hint}; expected op, path, value, from", e.key),
                ));
            }
        }
        let text = |key: &str, problems: &mut Vec<_>| -> Option<String> {
            let node = item.get(key)?;
            match &node.value {
                NodeValue::Str(s) => Some(s.clone()),
                _ => {
                    problems.push(problem(
                        node.span.start,
                        format!(
                            "`{key}` of operation #{index} must be a string, found {}",
                            node.type_name()
                        ),
                    ));
                    None
                }
            }
        };
        let op = text("op", &mut problems);
        let path = text("path", &mut problems);
        let from = text("from", &mut problems);
        let value = item.get("value").map(Node::to_value);
        let Some(op) = op else {
            if item.get("op").is_none() {
                problems.push(problem(
                    item.span.start,
                    format!("operation #{index} has no `op` (one of {})", OPS.join(", ")),
                ));
            }
            continue;
        };
        if !OPS.contains(&op.as_str()) {
            let node = item.get("op").map_or(item.span.start, |n| n.span.start);
            let hint = closest(&op, OPS)
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            problems.push(problem(
                node,
                format!(
                    "unknown op `{op}` in operation #{index}{hint}; expected one of {}",
                    OPS.join(", ")
                ),
            ));
            continue;
        }
        let Some(path) = path else {
            if item.get("path").is_none() {
                problems.push(problem(
                    item.span.start,
                    format!("operation #{index} (`{op}`) has no `path`"),
                ));
            }
            continue;
        };
        let mut ok = true;
        if !valid_pointer(&path) {
            let at = item.get("path").map_or(item.span.start, |n| n.span.start);
            problems.push(problem(at, format!("`path` of operation #{index} must be a JSON pointer starting with `/`, found {path:?}")));
            ok = false;
        }
        if matches!(op.as_str(), "add" | "replace" | "test") && value.is_none() {
            problems.push(problem(
                item.span.start,
                format!("operation #{index} (`{op} {path}`) needs a `value`"),
            ));
            ok = false;
        }
        if matches!(op.as_str(), "move" | "copy") {
            match &from {
                None => {
                    problems.push(problem(
                        item.span.start,
                        format!("operation #{index} (`{op} {path}`) needs a `from` path"),
                    ));
                    ok = false;
                }
                Some(f) if !valid_pointer(f) => {
                    let at = item.get("from").map_or(item.span.start, |n| n.span.start);
                    problems.push(problem(at, format!("`from` of operation #{index} must be a JSON pointer starting with `/`, found {f:?}")));
                    ok = false;
                }
                Some(_) => {}
            }
        }
        if !ok {
            continue;
        }
        let mut raw = json!({"op": op, "path": path});
        if let Some(v) = &value {
            raw["value"] = v.clone();
        }
        if let Some(f) = &from {
            raw["from"] = Value::String(f.clone());
        }
        match serde_json::from_value::<json_patch::PatchOperation>(raw) {
            Ok(operation) => ops.push(Operation {
                index,
                op,
                path,
                from,
                value,
                at: item.span.start,
                operation,
            }),
            Err(e) => problems.push(problem(
                item.span.start,
                format!("operation #{index} is not a valid JSON patch operation: {e}"),
            )),
        }
    }
    if problems.is_empty() {
        Ok(ops)
    } else {
        Err(PatchError::Invalid {
            label: label.to_string(),
            problems,
        })
    }
}

pub(super) fn apply(
    label: &str,
    mut config: Vec<Value>,
    ops: &[Operation],
) -> Result<Vec<Value>, PatchError> {
    if config.len() != 1 {
        return Err(PatchError::Json6902MultiDocument {
            label: label.to_string(),
            documents: config.len(),
            hint: hint(ops),
        });
    }
    let doc = &mut config[0];
    for op in ops {
        if json_patch::patch(doc, std::slice::from_ref(&op.operation)).is_err() {
            return Err(PatchError::Json6902Operation {
                label: label.to_string(),
                index: op.index,
                op: op.op.clone(),
                path: op.path.clone(),
                line: op.at.line,
                column: op.at.col,
                reason: diagnose(doc, op),
            });
        }
    }
    Ok(config)
}

fn tokens(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer[1..]
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn pointer_of(tokens: &[String]) -> String {
    if tokens.is_empty() {
        return "the document root".into();
    }
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Follows `tokens` from `doc`, explaining the first step that fails.
fn walk<'a>(doc: &'a Value, tokens: &[String]) -> Result<&'a Value, String> {
    let mut cur = doc;
    for (i, t) in tokens.iter().enumerate() {
        let here = pointer_of(&tokens[..i]);
        cur = match cur {
            Value::Object(m) => m.get(t).ok_or_else(|| {
                let keys: Vec<&str> = m.keys().map(String::as_str).collect();
                let hint = closest(t, &keys)
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                format!("{here} has no key `{t}`{hint}")
            })?,
            Value::Array(a) => {
                let idx: usize = t
                    .parse()
                    .map_err(|_| format!("{here} is a list, and `{t}` is not an index"))?;
                a.get(idx).ok_or_else(|| {
                    format!(
                        "index {idx} is out of range: {here} has {} item(s)",
                        a.len()
                    )
                })?
            }
            other => return Err(format!("{here} is {}, it has no `{t}`", kind_of(other))),
        };
    }
    Ok(cur)
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "?".into())
}

/// Why an operation that the json-patch crate refused does not apply to `doc`.
fn diagnose(doc: &Value, op: &Operation) -> String {
    let path = tokens(&op.path);
    let check_parent_then_last = || -> String {
        let Some((last, parent)) = path.split_last() else {
            return "the whole document cannot be the target".into();
        };
        match walk(doc, parent) {
            Err(e) => e,
            Ok(Value::Array(a)) => match last.parse::<usize>() {
                Ok(i) if i <= a.len() => "the operation does not apply here".into(),
                Ok(i) => format!(
                    "index {i} is out of range: {} has {} item(s)",
                    pointer_of(parent),
                    a.len()
                ),
                Err(_) if last == "-" => "the operation does not apply here".into(),
                Err(_) => format!(
                    "{} is a list, and `{last}` is not an index (or `-` for the end)",
                    pointer_of(parent)
                ),
            },
            Ok(Value::Object(_)) => "the operation does not apply here".into(),
            Ok(other) => format!(
                "{} is {}, it cannot hold `{last}`",
                pointer_of(parent),
                kind_of(other)
            ),
        }
    };
    match op.op.as_str() {
        "add" => check_parent_then_last(),
        "remove" | "replace" => walk(doc, &path)
            .err()
            .unwrap_or_else(|| "the operation does not apply here".into()),
        "test" => match walk(doc, &path) {
            Err(e) => e,
            Ok(actual) => format!(
                "the value is {}, not {}",
                compact(actual),
                op.value.as_ref().map_or_else(|| "null".into(), compact)
            ),
        },
        _ => {
            let from = tokens(op.from.as_deref().unwrap_or(""));
            if let Err(e) = walk(doc, &from) {
                return e;
            }
            if op.op == "move" && path.starts_with(&from) {
                return "a value cannot be moved inside itself".into();
            }
            check_parent_then_last()
        }
    }
}

/// How to write `ops` as a strategic merge patch, for the multi-document error.
fn hint(ops: &[Operation]) -> String {
    let mut docs: Vec<Value> = Vec::new();
    let mut deletes = Map::new();
    let mut sets = Map::new();
    let mut notes = Vec::new();
    for op in ops {
        let path = tokens(&op.path);
        let label = format!("operation #{} (`{} {}`)", op.index, op.op, op.path);
        if !matches!(op.op.as_str(), "add" | "replace" | "remove") {
            notes.push(format!("{label}: `{}` has no strategic merge form", op.op));
            continue;
        }
        if !matches!(
            path.first().map(String::as_str),
            Some("machine" | "cluster")
        ) {
            notes.push(format!(
                "{label}: only paths under /machine and /cluster are converted"
            ));
            continue;
        }
        if path.iter().any(|t| t == "-" || t.parse::<usize>().is_ok()) {
            notes.push(format!(
                "{label}: list items cannot be addressed by position in a strategic merge patch; list items are \
                 appended, or merged by key (network interfaces by `interface`, VLANs by `vlanId`, admission \
                 plugins by `name`), and `- key: value` items with `$patch: delete` delete them"
            ));
            continue;
        }
        let value = op.value.clone().unwrap_or(Value::Null);
        if op.op == "remove" {
            set_path(&mut deletes, &path, json!({"$patch": "delete"}));
            continue;
        }
        let segs: Vec<rules::Seg> = path.iter().map(|t| rules::Seg::Key(t.clone())).collect();
        if value.is_array() && rules::list_rule("v1alpha1", &segs) == rules::ListRule::Append {
            // Lists append in a strategic merge, so replacing one takes a deletion first
            // (deletions of a patch run before its merges).
            set_path(&mut deletes, &path, json!({"$patch": "delete"}));
        }
        set_path(&mut sets, &path, value);
    }
    if !deletes.is_empty() {
        docs.push(Value::Object(deletes));
    }
    if !sets.is_empty() {
        docs.push(Value::Object(sets));
    }
    let mut out = String::from(
        "hint: rewrite it as a strategic merge patch (a partial machine config document)",
    );
    if docs.is_empty() {
        out.push('.');
    } else {
        out.push_str("; these operations are equivalent to:\n\n");
        let yaml = kforge_yaml::to_string_multi(&docs, EmitOptions { indent: 2 });
        for line in yaml.lines() {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
    }
    for note in notes {
        out.push_str("\nnote: ");
        out.push_str(&note);
    }
    out.trim_end().to_string()
}

fn set_path(root: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = root;
    for key in parents {
        let slot = cur
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else { return };
        cur = next;
    }
    cur.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::{Patch, apply_patches};

    /// The strategic merge patch offered in the hint does what the JSON patch does.
    #[test]
    fn hint_is_equivalent_to_the_operations() {
        let base = kforge_yaml::parse(
            "version: v1alpha1\nmachine:\n  certSANs: [a, b]\n  network:\n    hostname: old\n    nameservers: [1.1.1.1]\n  nodeLabels:\n    x/y: z\n",
        )
        .expect("base parses")
        .to_value();
        let json = r#"[
            {"op": "replace", "path": "/machine/certSANs", "value": ["c"]},
            {"op": "remove", "path": "/machine/network/hostname"},
            {"op": "add", "path": "/machine/nodeLabels/a~1b", "value": "v"},
            {"op": "add", "path": "/machine/install", "value": {"disk": "/dev/sda"}},
            {"op": "replace", "path": "/machine/network/nameservers", "value": ["9.9.9.9"]}
        ]"#;
        let node = kforge_yaml::parse(json).expect("ops parse");
        let ops = parse("ops", &node).expect("valid ops");
        let via_json = apply("ops", vec![base.clone()], &ops).expect("json patch applies");

        let text = hint(&ops);
        let yaml: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("    "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(!yaml.is_empty(), "hint has a patch:\n{text}");
        let smp = Patch::parse("hint", &yaml).expect("hint parses");
        let via_smp = apply_patches(vec![base], &[smp]).expect("hint applies");
        assert_eq!(via_smp, via_json, "hint:\n{text}");
    }

    #[test]
    fn operations_that_have_no_strategic_form_are_named() {
        let node = kforge_yaml::parse(r#"[{"op": "copy", "from": "/a", "path": "/b"}, {"op": "add", "path": "/debug", "value": true}]"#)
            .expect("ops parse");
        let text = hint(&parse("ops", &node).expect("valid ops"));
        assert!(
            text.contains("operation #1 (`copy /b`): `copy` has no strategic merge form"),
            "{text}"
        );
        assert!(
            text.contains("operation #2 (`add /debug`): only paths under /machine and /cluster"),
            "{text}"
        );
    }
}
