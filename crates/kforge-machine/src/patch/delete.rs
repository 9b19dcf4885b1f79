//! `$patch: delete` selectors: what a patch deletes, applied before its merges.

use kforge_yaml::Pos;
use serde_json::Value;

use super::rules::{self, Seg};
use super::{DocumentId, scalar_text};

/// One deletion requested by a patch.
#[derive(Clone, Debug)]
pub(super) struct DeleteSelector {
    pub doc: DocumentId,
    /// Keys from the document root to the deleted key, or to the list an item is deleted from.
    /// Empty with no `item`: the whole document.
    pub path: Vec<String>,
    /// For a list item: the key and value that select it.
    pub item: Option<(String, String)>,
    /// Where the `$patch: delete` is in the patch text.
    pub at: Pos,
}

impl DeleteSelector {
    fn describe(&self) -> String {
        let path = self.path.join(".");
        match (&self.item, path.is_empty()) {
            (None, true) => format!("`$patch: delete` of document {}", self.doc),
            (None, false) => format!("`$patch: delete` of {path} in document {}", self.doc),
            (Some((k, v)), _) => format!(
                "`$patch: delete` of the {path} item with {k}: {v} in document {}",
                self.doc
            ),
        }
    }
}

pub(super) fn apply(config: &mut Vec<Value>, sel: &DeleteSelector) -> Result<(), String> {
    let fail = |why: String| format!("{}: {why}", sel.describe());
    let Some(index) = config.iter().position(|d| DocumentId::of(d) == sel.doc) else {
        return Err(fail("the machine config has no such document".into()));
    };
    if sel.path.is_empty() && sel.item.is_none() {
        if sel.doc.is_v1alpha1() {
            return Err(fail("the v1alpha1 document cannot be deleted".into()));
        }
        config.remove(index);
        return Ok(());
    }

    let kind = sel.doc.kind.clone();
    let (last, parents) = sel
        .path
        .split_last()
        .ok_or_else(|| fail("empty path".into()))?;
    let mut current = &mut config[index];
    let mut walked: Vec<Seg> = Vec::new();
    for key in parents {
        walked.push(Seg::Key(key.clone()));
        current = match current.get_mut(key.as_str()) {
            Some(v) if v.is_object() => v,
            Some(v) if !v.is_null() => {
                return Err(fail(format!(
                    "{} is {}, not a mapping",
                    rules::display(&walked),
                    describe_type(v)
                )));
            }
            _ => {
                return Err(fail(format!(
                    "lookup failed: {} is not set in the machine config",
                    rules::display(&walked)
                )));
            }
        };
    }
    let Value::Object(parent) = current else {
        return Err(fail("lookup failed: the document is not a mapping".into()));
    };

    match &sel.item {
        None => {
            if parent.shift_remove(last).is_none() && rules::is_map_typed(&kind, &walked) {
                walked.push(Seg::Key(last.clone()));
                return Err(fail(format!(
                    "lookup failed: {} is not set in the machine config",
                    rules::display(&walked)
                )));
            }
            Ok(())
        }
        Some((key, value)) => {
            walked.push(Seg::Key(last.clone()));
            let list = match parent.get_mut(last.as_str()) {
                Some(Value::Array(list)) => list,
                Some(other) if !other.is_null() => {
                    return Err(fail(format!(
                        "{} is {}, not a list",
                        rules::display(&walked),
                        describe_type(other)
                    )));
                }
                _ => {
                    return Err(fail(format!(
                        "lookup failed: {} is not set in the machine config",
                        rules::display(&walked)
                    )));
                }
            };
            let found = list.iter().position(|item| {
                item.get(key.as_str()).and_then(scalar_text).as_deref() == Some(value.as_str())
            });
            match found {
                Some(i) => {
                    list.remove(i);
                    Ok(())
                }
                None => Err(fail(format!(
                    "lookup failed: no item of {} has {key}: {value}",
                    rules::display(&walked)
                ))),
            }
        }
    }
}

fn describe_type(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
    }
}
