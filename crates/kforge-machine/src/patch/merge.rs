//! Strategic merge of one patch document into one config document.

use kforge_yaml::{Node, NodeValue, Pos};
use serde_json::{Map, Value};

use super::rules::{self, ItemKey, ListRule, MapRule, Seg};

/// Where a merge failed (in the patch text) and why.
#[derive(Debug)]
pub(super) struct MergeError {
    pub at: Pos,
    pub message: String,
}

pub(super) fn merge_document(left: &mut Value, right: &Node, kind: &str) -> Result<(), MergeError> {
    let mut path = Vec::new();
    merge_at(left, right, kind, &mut path)
}

/// The value a patch node contributes where the config has nothing: nulls inside mappings
/// are dropped, as decoding into Talos's types leaves them unset.
pub(super) fn insert_value(node: &Node) -> Value {
    match &node.value {
        NodeValue::Map(entries) => {
            let mut m = Map::with_capacity(entries.len());
            for e in entries {
                if !e.value.is_null() {
                    m.insert(e.key.clone(), insert_value(&e.value));
                }
            }
            Value::Object(m)
        }
        NodeValue::Seq(items) => Value::Array(items.iter().map(insert_value).collect()),
        _ => node.to_value(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn mismatch(left: &Value, right: &Node, path: &[Seg]) -> MergeError {
    let mut message = format!(
        "type mismatch at {}: the machine config has {} there, the patch has {}",
        rules::display(path),
        type_name(left),
        right.type_name()
    );
    match (left, &right.value) {
        (Value::Array(_), NodeValue::Map(_)) => {
            message.push_str(" (hint: write list items with `- `)")
        }
        (Value::Object(_), NodeValue::Seq(_)) => {
            message.push_str(" (hint: a mapping takes `key: value` lines, not `- ` items)")
        }
        _ => {}
    }
    MergeError {
        at: right.span.start,
        message,
    }
}

/// Go's zero values: a patch holding one of these leaves an existing value alone.
fn is_zero_scalar(node: &Node) -> bool {
    match &node.value {
        NodeValue::Str(s) => s.is_empty(),
        NodeValue::Int(i) => *i == 0,
        NodeValue::UInt(u) => *u == 0,
        NodeValue::Float(f) => *f == 0.0,
        _ => false,
    }
}

fn merge_at(
    left: &mut Value,
    right: &Node,
    kind: &str,
    path: &mut Vec<Seg>,
) -> Result<(), MergeError> {
    match &right.value {
        NodeValue::Null => Ok(()),
        NodeValue::Map(entries) => {
            let rule = rules::map_rule(kind, path);
            if left.is_null() || rule == MapRule::Replace {
                *left = insert_value(right);
                return Ok(());
            }
            let Value::Object(obj) = left else {
                return Err(mismatch(left, right, path));
            };
            for entry in entries {
                if entry.value.is_null() {
                    continue;
                }
                if rule == MapRule::ReplaceEntries {
                    obj.insert(entry.key.clone(), insert_value(&entry.value));
                    continue;
                }
                match obj.get_mut(&entry.key) {
                    Some(existing) if !existing.is_null() => {
                        path.push(Seg::Key(entry.key.clone()));
                        merge_at(existing, &entry.value, kind, path)?;
                        path.pop();
                    }
                    _ => {
                        obj.insert(entry.key.clone(), insert_value(&entry.value));
                    }
                }
            }
            Ok(())
        }
        NodeValue::Seq(items) => {
            let rule = rules::list_rule(kind, path);
            if left.is_null() || rule == ListRule::Replace {
                *left = insert_value(right);
                return Ok(());
            }
            let Value::Array(list) = left else {
                return Err(mismatch(left, right, path));
            };
            match rule {
                ListRule::Replace => unreachable!("handled above"),
                ListRule::Append => list.extend(items.iter().map(insert_value)),
                ListRule::MergeBy(key) => {
                    for item in items {
                        if !matches!(item.value, NodeValue::Map(_)) {
                            return Err(MergeError {
                                at: item.span.start,
                                message: format!(
                                    "{}: list items must be mappings, this one is {}",
                                    rules::display(path),
                                    item.type_name()
                                ),
                            });
                        }
                        match find_item(list, item, key) {
                            Some(i) => {
                                path.push(Seg::Index(i));
                                merge_at(&mut list[i], item, kind, path)?;
                                path.pop();
                            }
                            None => list.push(insert_value(item)),
                        }
                    }
                }
            }
            Ok(())
        }
        _ => {
            if matches!(left, Value::Array(_) | Value::Object(_)) {
                return Err(mismatch(left, right, path));
            }
            if left.is_null() || !is_zero_scalar(right) {
                *left = right.to_value();
            }
            Ok(())
        }
    }
}

/// The config item a patch item merges into, per the item key rule.
fn find_item(list: &[Value], item: &Node, key: ItemKey) -> Option<usize> {
    let patch_value = |k: &str| item.get(k).map(Node::to_value);
    match key {
        ItemKey::NetworkDevice => {
            if let Some(Value::String(name)) =
                patch_value("interface").filter(|v| v.as_str() != Some(""))
            {
                return list.iter().position(|d| {
                    d.get("interface").and_then(Value::as_str) == Some(name.as_str())
                });
            }
            match patch_value("deviceSelector") {
                Some(sel @ Value::Object(_)) => {
                    let want = normalized(&sel);
                    list.iter().position(|d| {
                        d.get("deviceSelector")
                            .is_some_and(|s| s.is_object() && normalized(s) == want)
                    })
                }
                _ => None,
            }
        }
        ItemKey::VlanId => {
            let id = |v: Option<Value>| v.as_ref().and_then(Value::as_u64).unwrap_or(0);
            let want = id(patch_value("vlanId"));
            list.iter()
                .position(|v| id(v.get("vlanId").cloned()) == want)
        }
        ItemKey::Name | ItemKey::MountPath => {
            let field = if key == ItemKey::Name {
                "name"
            } else {
                "mountPath"
            };
            let text = |v: Option<Value>| match v {
                Some(Value::String(s)) => s,
                _ => String::new(),
            };
            let want = text(patch_value(field));
            list.iter()
                .position(|v| text(v.get(field).cloned()) == want)
        }
    }
}

/// A device selector as Go compares it (struct equality): unset and zero fields are equal.
fn normalized(v: &Value) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = v
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| !matches!(v, Value::Null) && v.as_str() != Some(""))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn merged(left: Value, patch: &str) -> Result<Value, MergeError> {
        let mut left = left;
        let node = kforge_yaml::parse(patch).expect("test patch parses");
        merge_document(&mut left, &node, "v1alpha1")?;
        Ok(left)
    }

    #[test]
    fn zero_scalars_do_not_replace_but_false_does() {
        let out = merged(
            json!({"machine": {"install": {"disk": "/dev/sda", "wipe": true}, "kubelet": {"image": "k"}}}),
            "machine:\n  install:\n    disk: ''\n    wipe: false\n  kubelet:\n    image: null\n",
        )
        .expect("merges");
        assert_eq!(
            out,
            json!({"machine": {"install": {"disk": "/dev/sda", "wipe": false}, "kubelet": {"image": "k"}}})
        );
    }

    #[test]
    fn device_selector_matching_ignores_unset_fields() {
        let out = merged(
            json!({"machine": {"network": {"interfaces": [{"deviceSelector": {"driver": "virtio", "busPath": ""}, "mtu": 1500}]}}}),
            "machine:\n  network:\n    interfaces:\n      - deviceSelector:\n          driver: virtio\n        dhcp: true\n",
        )
        .expect("merges");
        assert_eq!(
            out["machine"]["network"]["interfaces"],
            json!([{"deviceSelector": {"driver": "virtio", "busPath": ""}, "mtu": 1500, "dhcp": true}])
        );
    }

    #[test]
    fn type_mismatch_points_at_the_patch_value() {
        let err = merged(
            json!({"machine": {"certSANs": ["a"]}}),
            "machine:\n  certSANs:\n    x: 1\n",
        )
        .expect_err("mismatch");
        assert_eq!(err.at.line, 3);
        assert!(err.message.contains("machine.certSANs"), "{}", err.message);
        assert!(
            err.message.contains("hint: write list items with `- `"),
            "{}",
            err.message
        );
    }
}
