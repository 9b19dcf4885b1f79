//! Machine configs in plans: secret values replaced by short fingerprints, so a diff shows
//! that a secret changed without showing it, and configs compared by meaning (a node may
//! store the config re-serialized).

use kforge_machine::secrets::SECRET_PATHS;
use kforge_yaml::Value;
use sha2::{Digest, Sha256};

/// The config with every secret value (the machine-config secret paths, and any
/// `key`/`token`/`secret` field anywhere) replaced by `<secret sha256:…>`. Text that is not
/// YAML is not shown at all.
pub fn redact_config(text: &str) -> String {
    let Ok(nodes) = kforge_yaml::parse_all(text) else {
        return "<not YAML; not shown>\n".into();
    };
    let mut docs: Vec<Value> = nodes.iter().map(kforge_yaml::Node::to_value).collect();
    for d in &mut docs {
        for path in SECRET_PATHS {
            redact_at(d, path);
        }
        redact_secret_named_fields(d);
    }
    kforge_yaml::to_string_multi(&docs, kforge_yaml::EmitOptions { indent: 2 })
}

/// Whether two configs mean the same: equal bytes, or equal YAML documents.
pub fn same_config(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (kforge_yaml::parse_all(a), kforge_yaml::parse_all(b)) {
        (Ok(x), Ok(y)) => {
            let x: Vec<Value> = x.iter().map(kforge_yaml::Node::to_value).collect();
            let y: Vec<Value> = y.iter().map(kforge_yaml::Node::to_value).collect();
            x == y
        }
        _ => false,
    }
}

/// A unified diff of two configs, both redacted; empty when they mean the same.
pub fn config_diff(old: &str, new: &str, old_label: &str, new_label: &str) -> String {
    let old = redact_config(old);
    let new = redact_config(new);
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(old_label, new_label)
        .to_string()
}

fn fingerprint(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    format!("<secret sha256:{}>", hex::encode(&digest[..6]))
}

fn redact_at(v: &mut Value, path: &[&str]) {
    let mut cur = v;
    for p in path {
        match cur.get_mut(*p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Value::String(s) = cur
        && !s.is_empty()
        && !s.starts_with("<secret sha256:")
    {
        *s = fingerprint(s);
    }
}

/// Field names that hold secrets in Talos documents beyond the fixed paths (e.g. the
/// `key` of any certificate pair, WireGuard `privateKey`, tokens in extra documents).
fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "key"
        || lower.ends_with("privatekey")
        || lower.ends_with("token")
        || lower.ends_with("secret")
        || lower == "password"
}

fn redact_secret_named_fields(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if is_secret_name(k)
                    && let Value::String(s) = child
                {
                    if !s.is_empty() && !s.starts_with("<secret sha256:") {
                        *s = fingerprint(s);
                    }
                    continue;
                }
                redact_secret_named_fields(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_secret_named_fields),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "version: v1alpha1\nmachine:\n  type: controlplane\n  token: abc.def\n  ca:\n    crt: PUBLIC\n    key: PRIVATE\ncluster:\n  secret: s3cret\n  id: theid\n---\napiVersion: v1alpha1\nkind: WireguardConfig\nprivateKey: wgkey\n";

    #[test]
    fn secrets_are_fingerprinted_public_values_kept() {
        let r = redact_config(A);
        for secret in ["abc.def", "PRIVATE", "s3cret", "theid", "wgkey"] {
            assert!(!r.contains(secret), "{secret} leaked:\n{r}");
        }
        assert!(r.contains("PUBLIC") && r.contains("controlplane"));
        assert_eq!(r.matches("<secret sha256:").count(), 5);
    }

    #[test]
    fn diffs_show_changed_secrets_without_values() {
        let b = A
            .replace("s3cret", "other")
            .replace("controlplane", "worker");
        let d = config_diff(A, &b, "running", "desired");
        assert!(d.contains("-  type: controlplane") && d.contains("+  type: worker"));
        assert!(d.contains("-  secret: <secret sha256:"));
        assert!(!d.contains("s3cret") && !d.contains("other"));
        assert_eq!(config_diff(A, A, "a", "b"), "");
    }

    #[test]
    fn reserialized_configs_are_the_same() {
        assert!(same_config(A, A));
        let reflowed = "machine: {type: controlplane, token: abc.def, ca: {crt: PUBLIC, key: PRIVATE}}\nversion: v1alpha1\ncluster: {secret: s3cret, id: theid}\n---\n{apiVersion: v1alpha1, kind: WireguardConfig, privateKey: wgkey}\n";
        // serde_json maps (IndexMap) compare regardless of key order.
        assert!(same_config(A, reflowed));
        assert!(!same_config(A, "machine: {}\n"));
    }
}
