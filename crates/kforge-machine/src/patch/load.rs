//! Reading a patch text: format detection (as Talos `configpatcher.LoadPatch`: a list of
//! operations is a JSON patch, mappings are strategic merge documents), extraction of
//! `$patch: delete` markers, and structural checks with positions.

use kforge_yaml::{Node, NodeValue, Pos};

use super::delete::DeleteSelector;
use super::rules::Seg;
use super::{DocumentId, PatchDocument, PatchError, PatchKind, Problem, StrategicPatch, json6902};

/// Top-level keys of the v1alpha1 document (`types/v1alpha1` `Config`).
const V1ALPHA1_KEYS: &[&str] = &["version", "debug", "persist", "machine", "cluster"];
/// Keys that make Talos's decoder take a kind-less document for v1alpha1.
const V1ALPHA1_MARKERS: &[&str] = &["machine", "cluster", "debug", "persist"];

pub(super) fn problem(at: Pos, message: impl Into<String>) -> Problem {
    Problem {
        line: at.line,
        column: at.col,
        message: message.into(),
    }
}

pub(super) fn parse(label: &str, text: &str) -> Result<PatchKind, PatchError> {
    if text.trim().is_empty() {
        return Ok(PatchKind::Empty);
    }
    let docs = kforge_yaml::parse_all(text).map_err(|e| PatchError::Invalid {
        label: label.to_string(),
        problems: vec![problem(e.pos, format!("not valid YAML: {}", e.message))],
    })?;
    let docs: Vec<Node> = docs.into_iter().filter(|d| !d.is_null()).collect();
    if docs.is_empty() {
        return Ok(PatchKind::Empty);
    }
    if let Some(list) = docs.iter().find(|d| matches!(d.value, NodeValue::Seq(_))) {
        if docs.len() > 1 {
            return Err(PatchError::Invalid {
                label: label.to_string(),
                problems: vec![problem(
                    list.span.start,
                    "a JSON patch (a list of operations) must be the only document of its patch; \
                     strategic merge patches are mappings",
                )],
            });
        }
        return json6902::parse(label, &docs[0]).map(PatchKind::Json6902);
    }

    let mut problems = Vec::new();
    let mut deletes = Vec::new();
    let mut documents = Vec::new();
    for doc in docs {
        load_document(doc, &mut deletes, &mut documents, &mut problems);
    }
    if problems.is_empty() {
        Ok(PatchKind::Strategic(StrategicPatch { deletes, documents }))
    } else {
        Err(PatchError::Invalid {
            label: label.to_string(),
            problems,
        })
    }
}

/// A `$patch: delete` found in a document, before its document is known.
struct RawDelete {
    path: Vec<String>,
    item: Option<(String, String)>,
    at: Pos,
}

fn scalar(node: &Node) -> Option<String> {
    match &node.value {
        NodeValue::Str(s) => Some(s.clone()),
        NodeValue::Bool(b) => Some(b.to_string()),
        NodeValue::Int(i) => Some(i.to_string()),
        NodeValue::UInt(u) => Some(u.to_string()),
        NodeValue::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

fn load_document(
    mut doc: Node,
    deletes: &mut Vec<DeleteSelector>,
    documents: &mut Vec<PatchDocument>,
    problems: &mut Vec<Problem>,
) {
    let NodeValue::Map(entries) = &doc.value else {
        let mut message = format!(
            "expected a machine config document (a mapping), found {}",
            doc.type_name()
        );
        if matches!(doc.value, NodeValue::Str(_)) {
            message.push_str(" (hint: a patch read from a file is written `@path/to/file.yaml`)");
        }
        problems.push(problem(doc.span.start, message));
        return;
    };
    let field = |key: &str| -> Option<String> {
        let e = entries.iter().find(|e| e.key == key)?;
        scalar(&e.value)
    };
    for key in ["apiVersion", "kind", "name"] {
        if let Some(e) = entries.iter().find(|e| e.key == key)
            && scalar(&e.value).is_none()
        {
            problems.push(problem(
                e.value.span.start,
                format!("`{key}` must be a string, found {}", e.value.type_name()),
            ));
        }
    }
    let api_version = field("apiVersion");
    let kind = field("kind");
    let name = field("name");
    let has_v1alpha1_keys = entries
        .iter()
        .any(|e| V1ALPHA1_MARKERS.contains(&e.key.as_str()));
    let doc_start = doc.span.start;

    let mut raws = Vec::new();
    let root_deleted = strip(&mut doc, &mut Vec::new(), false, &mut raws, problems);

    for raw in raws {
        let id = if raw.path.is_empty() && raw.item.is_none() {
            match (&api_version, &kind) {
                (Some(api), Some(k)) => DocumentId {
                    api_version: api.clone(),
                    kind: k.clone(),
                    name: name.clone(),
                },
                _ => {
                    problems.push(problem(
                        raw.at,
                        "`$patch: delete` of a whole document needs the document's `apiVersion` and `kind` \
                         (the v1alpha1 document cannot be deleted)",
                    ));
                    continue;
                }
            }
        } else {
            match (&api_version, &kind) {
                (None, None) => DocumentId::v1alpha1(),
                (Some(api), Some(k)) => DocumentId {
                    api_version: api.clone(),
                    kind: k.clone(),
                    name: name.clone(),
                },
                _ => {
                    problems.push(problem(
                        raw.at,
                        format!(
                            "kind and apiVersion must both be set for the document of `$patch: delete` at {}",
                            raw.path.join(".")
                        ),
                    ));
                    continue;
                }
            }
        };
        deletes.push(DeleteSelector {
            doc: id,
            path: raw.path,
            item: raw.item,
            at: raw.at,
        });
    }

    if root_deleted || is_empty_document(&doc) {
        return;
    }
    let NodeValue::Map(entries) = &doc.value else {
        return;
    };

    let legacy =
        kind.is_none() && (api_version.as_deref() == Some("v1alpha1") || has_v1alpha1_keys);
    let id = if legacy {
        for e in entries {
            if !V1ALPHA1_KEYS.contains(&e.key.as_str()) {
                let mut message = format!("unknown key `{}` in the v1alpha1 document", e.key);
                if let Some(s) = closest(&e.key, V1ALPHA1_KEYS) {
                    message.push_str(&format!(" (did you mean `{s}`?)"));
                } else {
                    message
                        .push_str(" (expected one of: version, debug, persist, machine, cluster)");
                }
                problems.push(problem(e.key_span.start, message));
            } else if matches!(e.key.as_str(), "machine" | "cluster")
                && !matches!(e.value.value, NodeValue::Map(_) | NodeValue::Null)
            {
                problems.push(problem(
                    e.value.span.start,
                    format!(
                        "`{}` must be a mapping, found {}",
                        e.key,
                        e.value.type_name()
                    ),
                ));
            }
        }
        DocumentId::v1alpha1()
    } else {
        match (&api_version, &kind) {
            (Some(api), Some(k)) => DocumentId {
                api_version: api.clone(),
                kind: k.clone(),
                name,
            },
            (None, Some(_)) => {
                problems.push(problem(doc_start, "missing apiVersion: a typed document needs `apiVersion: v1alpha1` next to its `kind`"));
                return;
            }
            (_, None) => {
                problems.push(problem(
                    doc_start,
                    "missing kind: this document has neither `kind` nor any v1alpha1 key (machine, cluster, debug, persist); \
                     add `apiVersion`/`kind` for a typed document, or nest the settings under `machine:` or `cluster:`",
                ));
                return;
            }
        }
    };
    documents.push(PatchDocument { id, node: doc });
}

/// Talos `isEmptyDoc`: a document left with only `version`/`kind`/`name` scalars is dropped.
fn is_empty_document(doc: &Node) -> bool {
    match &doc.value {
        NodeValue::Map(entries) => entries.iter().all(|e| {
            matches!(e.key.as_str(), "version" | "kind" | "name")
                && !matches!(e.value.value, NodeValue::Map(_) | NodeValue::Seq(_))
        }),
        _ => false,
    }
}

fn display_path(path: &[Seg]) -> String {
    super::rules::display(path)
}

/// Removes `$patch: delete` markers (and what they mark) from `node`, recording them. Returns
/// whether `node` itself is to be removed from its parent.
fn strip(
    node: &mut Node,
    path: &mut Vec<Seg>,
    in_list: bool,
    raws: &mut Vec<RawDelete>,
    problems: &mut Vec<Problem>,
) -> bool {
    match &mut node.value {
        NodeValue::Map(entries) => {
            if let Some(pos) = entries.iter().position(|e| e.key == "$patch") {
                let marker = &entries[pos];
                let at = marker.key_span.start;
                if marker.value.as_str() != Some("delete") {
                    problems.push(problem(
                        marker.value.span.start,
                        format!(
                            "unsupported `$patch: {}`: Talos supports only `$patch: delete`",
                            scalar(&marker.value)
                                .unwrap_or_else(|| marker.value.type_name().to_string())
                        ),
                    ));
                    entries.remove(pos);
                } else if in_list {
                    record_item_delete(entries, path, at, raws, problems);
                    return true;
                } else {
                    if path.iter().any(|s| matches!(s, Seg::Index(_))) {
                        problems.push(problem(
                            at,
                            format!(
                                "cannot delete a key inside a list item ({}): Talos deletes whole list items only, \
                                 selected by their first key (e.g. `- interface: eth0` with `$patch: delete`)",
                                display_path(path)
                            ),
                        ));
                    } else {
                        raws.push(RawDelete {
                            path: keys(path),
                            item: None,
                            at,
                        });
                    }
                    return true;
                }
            }
            let mut removed = false;
            let mut i = 0;
            while i < entries.len() {
                path.push(Seg::Key(entries[i].key.clone()));
                let gone = strip(&mut entries[i].value, path, false, raws, problems);
                path.pop();
                if gone {
                    entries.remove(i);
                    removed = true;
                } else {
                    i += 1;
                }
            }
            removed && entries.is_empty()
        }
        NodeValue::Seq(items) => {
            let mut removed = false;
            let mut kept = Vec::with_capacity(items.len());
            for (i, mut item) in std::mem::take(items).into_iter().enumerate() {
                path.push(Seg::Index(i));
                let gone = strip(&mut item, path, true, raws, problems);
                path.pop();
                if gone {
                    removed = true;
                } else {
                    kept.push(item);
                }
            }
            *items = kept;
            removed && items.is_empty()
        }
        _ => false,
    }
}

fn keys(path: &[Seg]) -> Vec<String> {
    path.iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.clone()),
            Seg::Index(_) => None,
        })
        .collect()
}

/// A list item marked `$patch: delete`: its first other key and value select the config item.
fn record_item_delete(
    entries: &[kforge_yaml::Entry],
    path: &[Seg],
    at: Pos,
    raws: &mut Vec<RawDelete>,
    problems: &mut Vec<Problem>,
) {
    let list_path = &path[..path.len().saturating_sub(1)];
    if list_path.iter().any(|s| matches!(s, Seg::Index(_))) {
        problems.push(problem(
            at,
            format!(
                "cannot delete an item of a list inside a list item ({}): Talos does not search nested lists",
                display_path(path)
            ),
        ));
        return;
    }
    let Some(selector) = entries.iter().find(|e| e.key != "$patch") else {
        problems.push(problem(
            at,
            "a list item marked `$patch: delete` needs a key to select the item by (e.g. `interface: eth0`)",
        ));
        return;
    };
    let Some(value) = scalar(&selector.value) else {
        problems.push(problem(
            selector.value.span.start,
            format!(
                "the item to delete is selected by its first key, `{}`, which must have a scalar value (found {}); \
                 put a scalar key first (e.g. `interface: eth0`)",
                selector.key,
                selector.value.type_name()
            ),
        ));
        return;
    };
    raws.push(RawDelete {
        path: keys(list_path),
        item: Some((selector.key.clone(), value)),
        at,
    });
}

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub(super) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&word.to_lowercase(), &c.to_lowercase()),
                *c,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
