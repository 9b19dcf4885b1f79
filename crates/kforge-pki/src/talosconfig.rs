//! The talosctl client configuration (`talosconfig`), read and written as talosctl does
//! (`pkg/machinery/client/config`, Go `yaml.Marshal`): 4-space indentation, contexts in
//! yaml.v3's map-key order, `endpoints` always written (`[]` when empty), the other context
//! fields only when set, a legacy `target` folded into `endpoints` on read.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use kforge_secret::SecretString;
use kforge_yaml::{EmitOptions, Mapping, Node, Value};

use crate::bundle::{SecretsBundle, scrub_value};
use crate::error::{BundleProblemKind, PkiError, TalosconfigError};
use crate::pem_text;
use crate::strict_yaml::{Reader, join, scrub_node};

/// A whole talosconfig. Deliberately has no `Debug` (it holds client keys).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Talosconfig {
    /// The current context's name (may be empty).
    pub context: String,
    pub contexts: BTreeMap<String, TalosContext>,
}

/// Credentials and targets for one cluster.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TalosContext {
    pub endpoints: Vec<String>,
    pub nodes: Vec<String>,
    /// Base64 of the OS CA certificate PEM.
    pub ca: String,
    /// Base64 of the client certificate PEM.
    pub crt: String,
    /// Base64 of the client key PEM.
    pub key: SecretString,
    pub auth: TalosAuth,
    pub cluster: String,
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct TalosAuth {
    pub basic: Option<BasicAuth>,
    pub siderov1: Option<SideroV1Auth>,
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    pub password: SecretString,
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct SideroV1Auth {
    pub identity: String,
}

impl Talosconfig {
    /// A talosconfig with one context `name`, as `talosctl gen config` writes it (with the
    /// given endpoints and nodes): the bundle's OS CA and the given client cert and key
    /// (PEM text, e.g. from [`crate::issue_talos_client_cert`]).
    pub fn for_cluster(
        name: &str,
        endpoints: &[String],
        nodes: &[String],
        bundle: &SecretsBundle,
        crt_pem: &str,
        key_pem: &SecretString,
    ) -> Talosconfig {
        let context = TalosContext {
            endpoints: endpoints.to_vec(),
            nodes: nodes.to_vec(),
            ca: bundle.os_ca_crt().to_string(),
            crt: pem_text::to_base64(crt_pem.as_bytes()),
            key: pem_text::secret_to_base64(key_pem),
            auth: TalosAuth::default(),
            cluster: String::new(),
        };
        Talosconfig {
            context: name.to_string(),
            contexts: BTreeMap::from([(name.to_string(), context)]),
        }
    }

    /// The context named by `context`, if there is one.
    pub fn current(&self) -> Option<&TalosContext> {
        self.contexts.get(&self.context)
    }

    /// Reads a talosconfig. Unknown keys are reported (talosctl would silently drop them on
    /// its next write), as are values of the wrong type, all at once with their paths.
    pub fn from_yaml(text: &str) -> Result<Talosconfig, TalosconfigError> {
        let mut doc = kforge_yaml::parse(text).map_err(TalosconfigError::Yaml)?;
        let mut r = Reader::default();
        let config = read(&mut r, &doc);
        scrub_node(&mut doc);
        if r.problems.is_empty() {
            Ok(config)
        } else {
            Err(TalosconfigError::Invalid {
                problems: r.problems,
            })
        }
    }

    /// The talosconfig exactly as talosctl writes it.
    pub fn to_yaml(&self) -> SecretString {
        let mut names: Vec<&String> = self.contexts.keys().collect();
        names.sort_by(|a, b| yaml_v3_key_order(a, b));
        let mut contexts = Mapping::new();
        for name in names {
            if let Some(ctx) = self.contexts.get(name) {
                contexts.insert(name.clone(), context_value(ctx));
            }
        }
        let mut root = Mapping::new();
        root.insert("context".into(), Value::String(self.context.clone()));
        root.insert("contexts".into(), Value::Object(contexts));
        let mut root = Value::Object(root);
        let text = kforge_yaml::to_string_with(&root, EmitOptions { indent: 4 });
        scrub_value(&mut root);
        SecretString::new(text)
    }
}

impl TalosContext {
    /// The OS CA certificate as PEM text.
    pub fn ca_pem(&self) -> Result<String, PkiError> {
        decode("ca", &self.ca).map(|s| s.expose().clone())
    }

    /// The client certificate as PEM text.
    pub fn crt_pem(&self) -> Result<String, PkiError> {
        decode("crt", &self.crt).map(|s| s.expose().clone())
    }

    /// The client key as PEM text.
    pub fn key_pem(&self) -> Result<SecretString, PkiError> {
        decode("key", self.key.expose())
    }
}

fn decode(field: &str, b64: &str) -> Result<SecretString, PkiError> {
    pem_text::base64_to_secret_text(b64).map_err(|problem| PkiError::BundleField {
        field: format!("talosconfig context field `{field}`"),
        operation: "be decoded",
        problem,
    })
}

fn context_value(ctx: &TalosContext) -> Value {
    let list = |items: &[String]| Value::Array(items.iter().cloned().map(Value::String).collect());
    let mut m = Mapping::new();
    m.insert("endpoints".into(), list(&ctx.endpoints));
    if !ctx.nodes.is_empty() {
        m.insert("nodes".into(), list(&ctx.nodes));
    }
    for (key, value) in [
        ("ca", &ctx.ca),
        ("crt", &ctx.crt),
        ("key", ctx.key.expose()),
    ] {
        if !value.is_empty() {
            m.insert(key.into(), Value::String(value.clone()));
        }
    }
    if ctx.auth.basic.is_some() || ctx.auth.siderov1.is_some() {
        let mut auth = Mapping::new();
        if let Some(basic) = &ctx.auth.basic {
            let mut b = Mapping::new();
            b.insert("username".into(), Value::String(basic.username.clone()));
            b.insert(
                "password".into(),
                Value::String(basic.password.expose().clone()),
            );
            auth.insert("basic".into(), Value::Object(b));
        }
        if let Some(s) = &ctx.auth.siderov1 {
            let mut v = Mapping::new();
            v.insert("identity".into(), Value::String(s.identity.clone()));
            auth.insert("siderov1".into(), Value::Object(v));
        }
        m.insert("auth".into(), Value::Object(auth));
    }
    if !ctx.cluster.is_empty() {
        m.insert("cluster".into(), Value::String(ctx.cluster.clone()));
    }
    Value::Object(m)
}

const CONTEXT_KEYS: &[&str] = &[
    "target",
    "endpoints",
    "nodes",
    "ca",
    "crt",
    "key",
    "auth",
    "cluster",
];

fn read(r: &mut Reader, doc: &Node) -> Talosconfig {
    let mut config = Talosconfig::default();
    if doc.is_null() {
        return config;
    }
    let Some(root) = r.mapping(doc, "", &["context", "contexts"]) else {
        return config;
    };
    config.context = opt_string(r, root, "", "context");
    let Some(contexts) = root.get("contexts") else {
        return config;
    };
    if contexts.is_null() {
        return config;
    }
    let Some(entries) = contexts.as_map() else {
        r.problem(
            "contexts",
            Some(contexts.span.start),
            BundleProblemKind::WrongType,
            format!(
                "is {}; expected a mapping of context names",
                contexts.type_name()
            ),
        );
        return config;
    };
    for entry in entries {
        let path = join("contexts", &entry.key);
        if entry.value.is_null() {
            r.problem(
                path,
                Some(entry.value.span.start),
                BundleProblemKind::Missing,
                "is empty; expected a context mapping",
            );
            continue;
        }
        let Some(node) = r.mapping(&entry.value, &path, CONTEXT_KEYS) else {
            continue;
        };
        let mut ctx = TalosContext {
            endpoints: r.string_list(node, &path, "endpoints"),
            nodes: r.string_list(node, &path, "nodes"),
            ca: opt_string(r, node, &path, "ca"),
            crt: opt_string(r, node, &path, "crt"),
            key: SecretString::new(opt_string(r, node, &path, "key")),
            auth: read_auth(r, node, &path),
            cluster: opt_string(r, node, &path, "cluster"),
        };
        let target = opt_string(r, node, &path, "target");
        if !target.is_empty() {
            ctx.endpoints.push(target);
        }
        config.contexts.insert(entry.key.clone(), ctx);
    }
    config
}

fn read_auth(r: &mut Reader, ctx: &Node, ctx_path: &str) -> TalosAuth {
    let mut auth = TalosAuth::default();
    let path = join(ctx_path, "auth");
    let Some(node) = ctx.get("auth") else {
        return auth;
    };
    if node.is_null() {
        return auth;
    }
    let Some(node) = r.mapping(node, &path, &["basic", "siderov1"]) else {
        return auth;
    };
    if let Some(basic) = node.get("basic").filter(|b| !b.is_null()) {
        let bpath = join(&path, "basic");
        if let Some(b) = r.mapping(basic, &bpath, &["username", "password"]) {
            auth.basic = Some(BasicAuth {
                username: opt_string(r, b, &bpath, "username"),
                password: SecretString::new(opt_string(r, b, &bpath, "password")),
            });
        }
    }
    if let Some(sidero) = node.get("siderov1").filter(|s| !s.is_null()) {
        let spath = join(&path, "siderov1");
        if let Some(s) = r.mapping(sidero, &spath, &["identity"]) {
            auth.siderov1 = Some(SideroV1Auth {
                identity: opt_string(r, s, &spath, "identity"),
            });
        }
    }
    auth
}

fn opt_string(r: &mut Reader, parent: &Node, parent_path: &str, key: &str) -> String {
    r.string(parent, parent_path, key, false)
        .map(|(s, _)| s)
        .unwrap_or_default()
}

/// yaml.v3's map-key order (`sorter.go`): letters compare by code point, a letter sorts
/// after a non-letter unless a digit run precedes it, digit runs compare numerically.
pub(crate) fn yaml_v3_key_order(a: &str, b: &str) -> Ordering {
    if yaml_v3_less(a, b) {
        Ordering::Less
    } else if yaml_v3_less(b, a) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

fn yaml_v3_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut digits = false;
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            digits = ar[i].is_numeric();
            i += 1;
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return if digits { al } else { bl };
        }
        let mut an: i64 = 0;
        let mut bn: i64 = 0;
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_numeric() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an
                .wrapping_mul(10)
                .wrapping_add(i64::from(ar[ai] as u8 - b'0'));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .wrapping_mul(10)
                .wrapping_add(i64::from(br[bi] as u8 - b'0'));
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_matches_yaml_v3() {
        let mut keys = vec!["b", "a10", "a2", "A", "a", "_x", "a-1", "ab", "a1b", "a01"];
        keys.sort_by(|a, b| yaml_v3_key_order(a, b));
        // Non-letters before letters, letters by code point, digit runs by value (a shorter
        // run wins a tie: "a1b" < "a01"), a prefix first.
        assert_eq!(
            keys,
            vec!["_x", "A", "a", "a-1", "a1b", "a01", "a2", "a10", "ab", "b"]
        );
    }

    #[test]
    fn legacy_target_becomes_an_endpoint() {
        let cfg =
            Talosconfig::from_yaml("context: x\ncontexts:\n  x:\n    target: 10.0.0.1\n").unwrap();
        assert_eq!(cfg.current().unwrap().endpoints, vec!["10.0.0.1"]);
        assert_eq!(
            cfg.to_yaml().expose(),
            "context: x\ncontexts:\n    x:\n        endpoints:\n            - 10.0.0.1\n"
        );
    }

    #[test]
    fn empty_endpoints_are_written() {
        let mut cfg = Talosconfig {
            context: "c".into(),
            ..Default::default()
        };
        cfg.contexts.insert(
            "c".into(),
            TalosContext {
                ca: "Q0E=".into(),
                ..Default::default()
            },
        );
        assert_eq!(
            cfg.to_yaml().expose(),
            "context: c\ncontexts:\n    c:\n        endpoints: []\n        ca: Q0E=\n"
        );
        let empty = Talosconfig::default();
        assert_eq!(empty.to_yaml().expose(), "context: \"\"\ncontexts: {}\n");
    }
}
