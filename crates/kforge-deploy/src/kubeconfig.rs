//! Kubeconfig files: merging the admin kubeconfig Talos hands out into an existing file
//! under a context named after the cluster, extracting one context as a standalone
//! kubeconfig, and writing files with mode 0600.
//!
//! Merge rules: the context named `context` is kforge's and is replaced (its namespace is
//! kept); the cluster and user it uses are replaced only when no other context uses them,
//! otherwise kforge picks fresh names (`<name>-2`, …). Every other context, cluster, user
//! and top-level key is kept as it was. `current-context` is set to the merged context,
//! as `talosctl kubeconfig` and `kind` do.

use std::path::{Path, PathBuf};

use kforge_secret::SecretString;
use kforge_yaml::{Mapping, Value};

/// Problems with kubeconfig text or files. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("{what} is not valid YAML")]
    Yaml {
        what: String,
        #[source]
        source: kforge_yaml::ParseError,
    },
    #[error("{what} is not a kubeconfig: {problem}")]
    Shape { what: String, problem: String },
    #[error("{what} has no context `{context}`; it has: {}", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoContext {
        what: String,
        context: String,
        available: Vec<String>,
    },
    #[error("cannot read the kubeconfig {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the kubeconfig {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn parse(text: &str, what: &str) -> Result<Mapping, KubeconfigError> {
    if text.trim().is_empty() {
        return Ok(Mapping::new());
    }
    let node = kforge_yaml::parse(text).map_err(|source| KubeconfigError::Yaml {
        what: what.to_string(),
        source,
    })?;
    match node.to_value() {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Mapping::new()),
        _ => Err(KubeconfigError::Shape {
            what: what.to_string(),
            problem: "the document is not a mapping".into(),
        }),
    }
}

/// The named entries of a list (`clusters`, `users`, `contexts`); entries must be
/// mappings with a string `name`.
fn named_list(doc: &Mapping, key: &str, what: &str) -> Result<Vec<Mapping>, KubeconfigError> {
    let shape = |problem: String| KubeconfigError::Shape {
        what: what.to_string(),
        problem,
    };
    match doc.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(m) if m.get("name").and_then(Value::as_str).is_some() => {
                    Ok(m.clone())
                }
                _ => Err(shape(format!("`{key}[{i}]` has no name"))),
            })
            .collect(),
        Some(_) => Err(shape(format!("`{key}` is not a list"))),
    }
}

fn name_of(m: &Mapping) -> &str {
    m.get("name").and_then(Value::as_str).unwrap_or_default()
}

fn context_ref<'a>(ctx: &'a Mapping, field: &str) -> Option<&'a str> {
    ctx.get("context")
        .and_then(|c| c.get(field))
        .and_then(Value::as_str)
}

/// The current (or named) context of a kubeconfig, with its cluster and user.
struct Selected {
    context: Mapping,
    cluster: Mapping,
    user: Mapping,
}

fn select(doc: &Mapping, context: Option<&str>, what: &str) -> Result<Selected, KubeconfigError> {
    let contexts = named_list(doc, "contexts", what)?;
    let wanted = match context {
        Some(c) => c.to_string(),
        None => match doc.get("current-context").and_then(Value::as_str) {
            Some(c) if !c.is_empty() => c.to_string(),
            _ if contexts.len() == 1 => name_of(&contexts[0]).to_string(),
            _ => {
                return Err(KubeconfigError::Shape {
                    what: what.to_string(),
                    problem: "there is no current-context and not exactly one context".into(),
                });
            }
        },
    };
    let Some(ctx) = contexts.iter().find(|c| name_of(c) == wanted).cloned() else {
        return Err(KubeconfigError::NoContext {
            what: what.to_string(),
            context: wanted,
            available: contexts.iter().map(|c| name_of(c).to_string()).collect(),
        });
    };
    let find = |list: &str, field: &str| -> Result<Mapping, KubeconfigError> {
        let name = context_ref(&ctx, field).ok_or_else(|| KubeconfigError::Shape {
            what: what.to_string(),
            problem: format!("context `{wanted}` names no {field}"),
        })?;
        named_list(doc, list, what)?
            .into_iter()
            .find(|e| name_of(e) == name)
            .ok_or_else(|| KubeconfigError::Shape {
                what: what.to_string(),
                problem: format!("context `{wanted}` uses {field} `{name}`, which is not defined"),
            })
    };
    Ok(Selected {
        cluster: find("clusters", "cluster")?,
        user: find("users", "user")?,
        context: ctx,
    })
}

fn emit(doc: &Mapping) -> SecretString {
    SecretString::from(kforge_yaml::to_string_with(
        &Value::Object(doc.clone()),
        kforge_yaml::EmitOptions { indent: 2 },
    ))
}

fn renamed(mut entry: Mapping, name: &str) -> Mapping {
    entry.insert("name".into(), Value::String(name.to_string()));
    entry
}

/// A name for a cluster/user entry: `preferred` (or what our old context used) unless
/// another context uses it, then `<preferred>-2`, `-3`, ….
fn free_name(
    preferred: &str,
    previous: Option<&str>,
    used_by_others: &dyn Fn(&str) -> bool,
    exists: &dyn Fn(&str) -> bool,
) -> String {
    if let Some(p) = previous
        && !used_by_others(p)
    {
        return p.to_string();
    }
    if !used_by_others(preferred) {
        return preferred.to_string();
    }
    (2u32..)
        .map(|i| format!("{preferred}-{i}"))
        .find(|n| !used_by_others(n) && !exists(n))
        .unwrap_or_else(|| preferred.to_string())
}

/// Merges the admin kubeconfig `new` (its current context) into `existing` (may be empty)
/// under the context `context`. See the module docs for the rules.
pub fn merge(
    existing: &str,
    new: &SecretString,
    context: &str,
) -> Result<SecretString, KubeconfigError> {
    let what_new = "the kubeconfig from the node";
    let what_old = "the existing kubeconfig";
    let incoming = select(&parse(new.expose(), what_new)?, None, what_new)?;
    let mut doc = parse(existing, what_old)?;
    let mut contexts = named_list(&doc, "contexts", what_old)?;
    let mut clusters = named_list(&doc, "clusters", what_old)?;
    let mut users = named_list(&doc, "users", what_old)?;

    let ours = contexts.iter().find(|c| name_of(c) == context).cloned();
    let others: Vec<&Mapping> = contexts.iter().filter(|c| name_of(c) != context).collect();
    let cluster_used = |n: &str| others.iter().any(|c| context_ref(c, "cluster") == Some(n));
    let user_used = |n: &str| others.iter().any(|c| context_ref(c, "user") == Some(n));
    let cluster_name = free_name(
        context,
        ours.as_ref().and_then(|c| context_ref(c, "cluster")),
        &cluster_used,
        &|n| clusters.iter().any(|c| name_of(c) == n),
    );
    let user_name = free_name(
        &format!("admin@{context}"),
        ours.as_ref().and_then(|c| context_ref(c, "user")),
        &user_used,
        &|n| users.iter().any(|u| name_of(u) == n),
    );

    let mut ctx_body = incoming
        .context
        .get("context")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    ctx_body.insert("cluster".into(), Value::String(cluster_name.clone()));
    ctx_body.insert("user".into(), Value::String(user_name.clone()));
    if let Some(ns) = ours
        .as_ref()
        .and_then(|c| c.get("context"))
        .and_then(|c| c.get("namespace"))
    {
        ctx_body.insert("namespace".into(), ns.clone());
    }
    let mut new_ctx = Mapping::new();
    new_ctx.insert("name".into(), Value::String(context.to_string()));
    new_ctx.insert("context".into(), Value::Object(ctx_body));

    upsert(&mut clusters, renamed(incoming.cluster, &cluster_name));
    upsert(&mut users, renamed(incoming.user, &user_name));
    upsert(&mut contexts, new_ctx);

    let list = |v: Vec<Mapping>| Value::Array(v.into_iter().map(Value::Object).collect());
    if !doc.contains_key("apiVersion") {
        doc.insert("apiVersion".into(), Value::String("v1".into()));
    }
    if !doc.contains_key("kind") {
        doc.insert("kind".into(), Value::String("Config".into()));
    }
    doc.insert("clusters".into(), list(clusters));
    doc.insert("users".into(), list(users));
    doc.insert("contexts".into(), list(contexts));
    doc.insert("current-context".into(), Value::String(context.to_string()));
    Ok(emit(&doc))
}

/// Replaces the entry with the same name in place, or appends it.
fn upsert(list: &mut Vec<Mapping>, entry: Mapping) {
    match list.iter_mut().find(|e| name_of(e) == name_of(&entry)) {
        Some(slot) => *slot = entry,
        None => list.push(entry),
    }
}

/// One context (default: the current one) as a standalone kubeconfig.
pub fn extract(
    text: &SecretString,
    context: Option<&str>,
) -> Result<SecretString, KubeconfigError> {
    let what = "the kubeconfig";
    let doc = parse(text.expose(), what)?;
    let s = select(&doc, context, what)?;
    let name = name_of(&s.context).to_string();
    let mut out = Mapping::new();
    out.insert("apiVersion".into(), Value::String("v1".into()));
    out.insert("kind".into(), Value::String("Config".into()));
    out.insert(
        "clusters".into(),
        Value::Array(vec![Value::Object(s.cluster)]),
    );
    out.insert("users".into(), Value::Array(vec![Value::Object(s.user)]));
    out.insert(
        "contexts".into(),
        Value::Array(vec![Value::Object(s.context)]),
    );
    out.insert("current-context".into(), Value::String(name));
    Ok(emit(&out))
}

/// Whether `text` is a kubeconfig with a complete context `context`.
pub fn has_context(text: &str, context: &str) -> bool {
    parse(text, "kubeconfig")
        .ok()
        .is_some_and(|doc| select(&doc, Some(context), "kubeconfig").is_ok())
}

fn read_optional(path: &Path) -> Result<Option<String>, KubeconfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KubeconfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether the file at `path` holds `context` (or, with None, any usable kubeconfig).
pub fn file_has_context(path: &Path, context: Option<&str>) -> bool {
    let Ok(Some(text)) = read_optional(path) else {
        return false;
    };
    match context {
        Some(c) => has_context(&text, c),
        None => extract(&SecretString::from(text), None).is_ok(),
    }
}

/// Merges `new` into the file at `path` (created if missing) under `context`; mode 0600,
/// atomic. A file that is not a kubeconfig is left untouched and reported.
pub fn merge_into_file(
    path: &Path,
    new: &SecretString,
    context: &str,
) -> Result<(), KubeconfigError> {
    let existing = SecretString::from(read_optional(path)?.unwrap_or_default());
    let merged = merge(existing.expose(), new, context).map_err(|e| match e {
        KubeconfigError::Yaml { source, .. } => KubeconfigError::Yaml {
            what: path.display().to_string(),
            source,
        },
        KubeconfigError::Shape { problem, what } if what.contains("existing") => {
            KubeconfigError::Shape {
                what: path.display().to_string(),
                problem,
            }
        }
        other => other,
    })?;
    write_file(path, &merged)
}

/// Writes a kubeconfig file, mode 0600, atomically.
pub fn write_file(path: &Path, text: &SecretString) -> Result<(), KubeconfigError> {
    kforge_secret::write_private(path, text.as_bytes()).map_err(|source| KubeconfigError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn talos_kubeconfig(cluster: &str, key: &str) -> SecretString {
        SecretString::from(format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: https://10.0.1.10:6443\n    certificate-authority-data: Q0E=\nusers:\n- name: admin@{cluster}\n  user:\n    client-certificate-data: Q1JU\n    client-key-data: {key}\ncontexts:\n- context:\n    cluster: {cluster}\n    namespace: default\n    user: admin@{cluster}\n  name: admin@{cluster}\ncurrent-context: admin@{cluster}\n"
        ))
    }

    const EXISTING: &str = "apiVersion: v1\nkind: Config\npreferences: {}\nclusters:\n- name: prod\n  cluster:\n    server: https://prod:6443\n- name: solana\n  cluster:\n    server: https://someone-elses:6443\nusers:\n- name: alice\n  user:\n    token: t0ken\ncontexts:\n- name: prod\n  context:\n    cluster: prod\n    user: alice\n- name: theirs\n  context:\n    cluster: solana\n    user: alice\ncurrent-context: prod\n";

    #[test]
    fn merge_keeps_other_contexts_users_and_clusters() {
        let merged = merge(EXISTING, &talos_kubeconfig("solana", "S0VZ"), "solana").unwrap();
        let doc = parse(merged.expose(), "m").unwrap();
        let old = parse(EXISTING, "o").unwrap();
        // Everything that was there is still there, unchanged.
        for list in ["clusters", "users", "contexts"] {
            for entry in named_list(&old, list, "o").unwrap() {
                assert!(
                    named_list(&doc, list, "m").unwrap().contains(&entry),
                    "{list} entry {} changed",
                    name_of(&entry)
                );
            }
        }
        assert_eq!(doc["preferences"], serde_json::json!({}));
        // The cluster name `solana` is used by context `theirs`: ours gets a fresh name.
        let s = select(&doc, Some("solana"), "m").unwrap();
        assert_eq!(name_of(&s.cluster), "solana-2");
        assert_eq!(name_of(&s.user), "admin@solana");
        assert_eq!(s.cluster["cluster"]["server"], "https://10.0.1.10:6443");
        assert_eq!(s.user["user"]["client-key-data"], "S0VZ");
        assert_eq!(doc["current-context"], "solana");
        insta::assert_snapshot!(merged.expose());
    }

    #[test]
    fn remerge_is_idempotent_and_updates_credentials() {
        let once = merge(EXISTING, &talos_kubeconfig("solana", "S0VZ"), "solana").unwrap();
        let twice = merge(once.expose(), &talos_kubeconfig("solana", "S0VZ"), "solana").unwrap();
        assert_eq!(once.expose(), twice.expose());
        let rotated = merge(once.expose(), &talos_kubeconfig("solana", "TkVX"), "solana").unwrap();
        let doc = parse(rotated.expose(), "r").unwrap();
        assert_eq!(named_list(&doc, "users", "r").unwrap().len(), 2);
        assert_eq!(named_list(&doc, "clusters", "r").unwrap().len(), 3);
        let s = select(&doc, Some("solana"), "r").unwrap();
        assert_eq!(s.user["user"]["client-key-data"], "TkVX");
        assert_eq!(
            name_of(&s.cluster),
            "solana-2",
            "the name chosen first is kept"
        );
    }

    #[test]
    fn merge_into_empty_and_namespace_kept() {
        let m = merge("", &talos_kubeconfig("c", "K"), "c").unwrap();
        assert!(has_context(m.expose(), "c"));
        let with_ns = m.expose().replace("namespace: default", "namespace: apps");
        let again = merge(&with_ns, &talos_kubeconfig("c", "K"), "c").unwrap();
        assert!(again.expose().contains("namespace: apps"));
    }

    #[test]
    fn broken_existing_file_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "clusters: 3\n").unwrap();
        let e = merge_into_file(&path, &talos_kubeconfig("c", "SECRETKEY"), "c").unwrap_err();
        assert!(e.to_string().contains("`clusters` is not a list"), "{e}");
        assert!(!e.to_string().contains("SECRETKEY"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "clusters: 3\n");
    }

    #[test]
    fn files_are_0600_and_extract_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kube/config");
        merge_into_file(&path, &talos_kubeconfig("c", "K"), "c").unwrap();
        merge_into_file(&path, &talos_kubeconfig("d", "L"), "d").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(file_has_context(&path, Some("c")) && file_has_context(&path, Some("d")));
        assert!(!file_has_context(&path, Some("e")));
        let text = SecretString::from(std::fs::read_to_string(&path).unwrap());
        let c = extract(&text, Some("c")).unwrap();
        assert!(c.expose().contains("client-key-data: K\n"));
        assert!(!c.expose().contains("client-key-data: L"));
        let e = extract(&text, Some("x")).err().unwrap();
        assert_eq!(
            e.to_string(),
            "the kubeconfig has no context `x`; it has: c, d"
        );
    }
}
