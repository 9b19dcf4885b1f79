//! Field ownership: server-side apply and the `managedFields` of every write.
//!
//! An applied configuration owns its leaf fields: map entries are followed down, while
//! scalars, lists and empty maps are leaves (every list is treated as atomic — Kubernetes
//! merges lists with merge keys, such as containers by name, element by element). Applying
//! sets those fields, removes the fields the same manager applied before and no longer
//! applies (unless another manager owns them too), and fails with conflicts when another
//! manager owns a field with a different value — unless `force`, which takes the field
//! over. Other writes (create, update, merge patch) are recorded as `Update` operations
//! owning the fields they changed. Ownership is stored as `fieldsV1` (`f:<name>` keys).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field: the keys from the object's root.
pub type FieldPath = Vec<String>;

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole object (spec, metadata…; also status when the type has no status
    /// subresource).
    Object { status_separate: bool },
    /// Only `.status` (the status subresource).
    Status,
}

impl Scope {
    fn includes(self, path: &[String]) -> bool {
        if is_identity(path) {
            return false;
        }
        let is_status = path.first().is_some_and(|k| k == "status");
        match self {
            Scope::Object { status_separate } => !(status_separate && is_status),
            Scope::Status => is_status,
        }
    }

    fn subresource(self) -> Option<&'static str> {
        match self {
            Scope::Object { .. } => None,
            Scope::Status => Some("status"),
        }
    }
}

/// Fields nobody owns: the object's identity and server-maintained metadata.
fn is_identity(path: &[String]) -> bool {
    match path {
        [k] => k == "apiVersion" || k == "kind" || k == "metadata",
        [m, k, ..] if m == "metadata" => matches!(
            k.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "creationTimestamp"
                | "generation"
                | "managedFields"
                | "selfLink"
                | "deletionTimestamp"
                | "generateName"
        ),
        _ => false,
    }
}

/// The leaf fields of `v` in `scope`.
pub fn leaves(v: &Value, scope: Scope) -> BTreeSet<FieldPath> {
    fn walk(v: &Value, path: &mut Vec<String>, scope: Scope, out: &mut BTreeSet<FieldPath>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    walk(child, path, scope, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() && scope.includes(path) {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), scope, &mut out);
    out
}

/// The value at `path`.
pub fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

/// Sets `path` to `value`, creating (or replacing non-map) parents.
pub fn set_path(v: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *v = value;
        return;
    };
    let mut cur = v;
    for k in parents {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        cur = map
            .entry(k.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    if let Some(map) = cur.as_object_mut() {
        map.insert(last.clone(), value);
    }
}

/// Removes `path` (nothing when absent).
pub fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for k in parents {
        match cur.get_mut(k) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(map) = cur.as_object_mut() {
        map.remove(last);
    }
}

/// Whether one path is the other or lies beneath it.
fn overlaps(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: BTreeSet<FieldPath>,
}

impl ManagedEntry {
    fn owns_overlapping(&self, path: &[String]) -> Vec<FieldPath> {
        self.fields
            .iter()
            .filter(|f| overlaps(f, path))
            .cloned()
            .collect()
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode_fields(&self.fields),
        });
        if let (Some(s), Some(o)) = (&self.subresource, v.as_object_mut()) {
            o.insert("subresource".into(), json!(s));
        }
        v
    }

    fn from_json(v: &Value) -> Option<ManagedEntry> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(ManagedEntry {
            manager: text("manager")?,
            operation: text("operation").unwrap_or_else(|| "Update".into()),
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time").unwrap_or_default(),
            subresource: text("subresource"),
            fields: v.get("fieldsV1").map(decode_fields).unwrap_or_default(),
        })
    }
}

/// `fieldsV1`: `{"f:metadata": {"f:labels": {"f:a": {}}}, "f:value": {}}`.
pub fn encode_fields(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = Value::Object(Map::new());
    for path in fields {
        let keys: Vec<String> = path.iter().map(|k| format!("f:{k}")).collect();
        let mut cur = &mut root;
        for k in &keys {
            let Some(map) = cur.as_object_mut() else {
                break;
            };
            cur = map.entry(k.clone()).or_insert_with(|| json!({}));
        }
    }
    root
}

/// The leaves of a `fieldsV1` value. Entries other than `f:` (list element keys `k:`/`v:`
/// written by real API servers, `.`) end the path: the list is owned as a whole.
pub fn decode_fields(v: &Value) -> BTreeSet<FieldPath> {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut BTreeSet<FieldPath>) {
        let children: Vec<(&String, &Value)> = v
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| k.starts_with("f:")).collect())
            .unwrap_or_default();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (k, child) in children {
            path.push(k[2..].to_string());
            walk(child, path, out);
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// The entries of an object's `metadata.managedFields`.
pub fn managed_entries(object: &Value) -> Vec<ManagedEntry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(ManagedEntry::from_json).collect())
        .unwrap_or_default()
}

fn store_entries(object: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(ManagedEntry::to_json)
        .collect();
    if list.is_empty() {
        remove_path(object, &["metadata".into(), "managedFields".into()]);
    } else {
        set_path(
            object,
            &["metadata".into(), "managedFields".into()],
            Value::Array(list),
        );
    }
}

/// A field another manager owns with a different value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// `.spec.value`.
    pub field: String,
}

/// `.a.b`.
pub fn dotted(path: &[String]) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}

/// What an apply needs besides the objects.
pub struct ApplyRequest<'a> {
    pub manager: &'a str,
    pub force: bool,
    pub api_version: &'a str,
    pub now: &'a str,
    pub scope: Scope,
}

/// Applies `applied` to `existing` (None: the object is created): returns the new object
/// with its `managedFields`, or the conflicts.
pub fn apply(
    existing: Option<&Value>,
    applied: &Value,
    req: &ApplyRequest<'_>,
) -> Result<Value, Vec<Conflict>> {
    let mut object = existing.cloned().unwrap_or_else(|| json!({}));
    let mut entries = managed_entries(&object);
    let subresource = req.scope.subresource().map(str::to_string);
    let mine = |e: &ManagedEntry| {
        e.manager == req.manager && e.operation == "Apply" && e.subresource == subresource
    };
    let applied_set = leaves(applied, req.scope);

    // Conflicts with other managers' fields whose values differ.
    let mut conflicts = Vec::new();
    let mut taken: Vec<(usize, FieldPath)> = Vec::new();
    for path in &applied_set {
        for (i, e) in entries.iter().enumerate() {
            if mine(e) {
                continue;
            }
            for owned in e.owns_overlapping(path) {
                let shorter: &[String] = if owned.len() < path.len() {
                    &owned
                } else {
                    path
                };
                let differs = if owned.len() < path.len() {
                    // The other manager owns a parent as a whole: compare the parent.
                    let mut merged = get_path(&object, shorter).cloned().unwrap_or(Value::Null);
                    if let Some(v) = get_path(applied, path) {
                        set_path(&mut merged, &path[shorter.len()..], v.clone());
                    }
                    get_path(&object, shorter) != Some(&merged)
                } else {
                    get_path(&object, shorter) != get_path(applied, shorter)
                };
                if differs {
                    conflicts.push(Conflict {
                        manager: e.manager.clone(),
                        field: dotted(&owned),
                    });
                    taken.push((i, owned));
                }
            }
        }
    }
    if !conflicts.is_empty() && !req.force {
        conflicts.sort_by(|a, b| (&a.field, &a.manager).cmp(&(&b.field, &b.manager)));
        conflicts.dedup();
        return Err(conflicts);
    }
    for (i, path) in taken {
        entries[i].fields.remove(&path);
    }

    // Fields this manager applied before and no longer applies.
    let previous: BTreeSet<FieldPath> = entries
        .iter()
        .filter(|e| mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    for path in previous.difference(&applied_set) {
        let shared = entries
            .iter()
            .any(|e| !mine(e) && !e.owns_overlapping(path).is_empty());
        if !shared {
            remove_path(&mut object, path);
        }
    }

    for path in &applied_set {
        if let Some(v) = get_path(applied, path) {
            set_path(&mut object, path, v.clone());
        }
    }

    entries.retain(|e| !mine(e));
    entries.push(ManagedEntry {
        manager: req.manager.to_string(),
        operation: "Apply".into(),
        api_version: req.api_version.to_string(),
        time: req.now.to_string(),
        subresource,
        fields: applied_set,
    });
    store_entries(&mut object, &entries);
    Ok(object)
}

/// Records a non-apply write (`old` → `new`) by `manager`: it owns the fields it changed,
/// taking them from other managers; fields it removed are owned by nobody. `new` gets the
/// resulting `managedFields`.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
    scope: Scope,
) {
    let mut entries = old.map(managed_entries).unwrap_or_default();
    let subresource = scope.subresource().map(str::to_string);
    let new_leaves = leaves(new, scope);
    let old_leaves = old.map(|o| leaves(o, scope)).unwrap_or_default();
    let changed: BTreeSet<FieldPath> = new_leaves
        .iter()
        .filter(|p| old.and_then(|o| get_path(o, p)) != get_path(new, p))
        .cloned()
        .collect();
    let removed: Vec<&FieldPath> = old_leaves.difference(&new_leaves).collect();
    for e in &mut entries {
        e.fields.retain(|f| {
            !changed.iter().any(|c| overlaps(c, f)) && !removed.iter().any(|r| overlaps(r, f))
        });
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| {
            e.manager == manager && e.operation == "Update" && e.subresource == subresource
        }) {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.to_string();
                e.api_version = api_version.to_string();
            }
            None => entries.push(ManagedEntry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource,
                fields: changed,
            }),
        }
    }
    store_entries(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(manager: &'a str, force: bool) -> ApplyRequest<'a> {
        ApplyRequest {
            manager,
            force,
            api_version: "v1",
            now: "2025-01-01T00:00:00Z",
            scope: Scope::Object {
                status_separate: false,
            },
        }
    }

    fn p(s: &str) -> FieldPath {
        s.split('.').map(str::to_string).collect()
    }

    #[test]
    fn leaves_skip_identity_and_status_when_separate() {
        let o = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n", "labels": {"a": "b"}, "managedFields": []},
            "spec": {"taints": [{"key": "k"}], "podCIDR": "x", "empty": {}},
            "status": {"phase": "Running"}
        });
        let l = leaves(
            &o,
            Scope::Object {
                status_separate: true,
            },
        );
        let want: BTreeSet<FieldPath> = [
            p("metadata.labels.a"),
            p("spec.taints"),
            p("spec.podCIDR"),
            p("spec.empty"),
        ]
        .into_iter()
        .collect();
        assert_eq!(l, want);
        assert_eq!(leaves(&o, Scope::Status), [p("status.phase")].into());
    }

    #[test]
    fn fields_v1_round_trip() {
        let set: BTreeSet<FieldPath> = [p("data.x"), p("data.y"), p("metadata.labels.a")].into();
        let v = encode_fields(&set);
        assert_eq!(
            v,
            json!({"f:data": {"f:x": {}, "f:y": {}}, "f:metadata": {"f:labels": {"f:a": {}}}})
        );
        assert_eq!(decode_fields(&v), set);
        // Real servers' list keys end the path.
        let real = json!({"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}}}}});
        assert_eq!(decode_fields(&real), [p("spec.containers")].into());
    }

    #[test]
    fn apply_creates_updates_and_prunes() {
        let first = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"x": "1", "y": "2"}});
        let o = apply(None, &first, &req("kforge", false)).unwrap();
        assert_eq!(o["data"], json!({"x": "1", "y": "2"}));
        let e = managed_entries(&o);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].operation, "Apply");
        assert!(e[0].fields.contains(&p("data.y")));
        // Re-applying without `y` removes it.
        let second = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"x": "3"}});
        let o = apply(Some(&o), &second, &req("kforge", false)).unwrap();
        assert_eq!(o["data"], json!({"x": "3"}));
    }

    #[test]
    fn conflicts_and_force() {
        let mine = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"x": "1", "z": "0"}});
        let o = apply(None, &mine, &req("a", false)).unwrap();
        // The same value shares ownership without a conflict.
        let same = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"x": "1"}});
        let o = apply(Some(&o), &same, &req("b", false)).unwrap();
        // A different value conflicts…
        let other = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"x": "2"}});
        let err = apply(Some(&o), &other, &req("c", false)).unwrap_err();
        assert_eq!(
            err,
            vec![
                Conflict {
                    manager: "a".into(),
                    field: ".data.x".into()
                },
                Conflict {
                    manager: "b".into(),
                    field: ".data.x".into()
                }
            ]
        );
        // …unless forced: the field changes hands.
        let o = apply(Some(&o), &other, &req("c", true)).unwrap();
        assert_eq!(o["data"]["x"], "2");
        let e = managed_entries(&o);
        let a = e.iter().find(|e| e.manager == "a").unwrap();
        assert!(!a.fields.contains(&p("data.x")) && a.fields.contains(&p("data.z")));
        assert!(e.iter().all(|e| e.manager != "b"), "b owned nothing else");
    }

    #[test]
    fn updates_take_the_fields_they_change() {
        let applied = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"x": "1"}});
        let old = apply(None, &applied, &req("a", false)).unwrap();
        let mut new = old.clone();
        new["data"]["x"] = json!("9");
        new["data"]["w"] = json!("new");
        record_update(
            Some(&old),
            &mut new,
            "kubectl-edit",
            "v1",
            "t",
            Scope::Object {
                status_separate: false,
            },
        );
        let e = managed_entries(&new);
        assert!(e.iter().all(|e| e.manager != "a"), "a lost its only field");
        let edit = e.iter().find(|e| e.manager == "kubectl-edit").unwrap();
        assert_eq!(edit.operation, "Update");
        assert_eq!(edit.fields, [p("data.w"), p("data.x")].into());
    }
}
