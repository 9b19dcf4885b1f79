//! Kubernetes object conventions the API server and the simulated kubelets share:
//! timestamps (RFC 3339, seconds), UIDs, `Status` objects for errors, label and field
//! selectors, object names.

use std::time::SystemTime;

use serde_json::{Value, json};

/// `2025-01-02T03:04:05Z`, as `metav1.Time` serialises.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn now() -> String {
    timestamp(SystemTime::now())
}

/// A `metav1.Time` back as a SystemTime.
pub fn parse_timestamp(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim()).ok()
}

/// A random (version 4) UUID.
pub fn random_uuid() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Lower-case letters and digits, for generated names.
pub fn random_suffix(len: usize) -> String {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = vec![0u8; len];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b.iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect()
}

/// A failure as the API server reports it: HTTP status, `reason`, message, details.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiStatus {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiStatus {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiStatus {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// `nodes "x" not found`.
    pub fn not_found(qualified_plural: &str, name: &str) -> Self {
        let kind = qualified_plural
            .split('.')
            .next()
            .unwrap_or(qualified_plural);
        let group = qualified_plural
            .split_once('.')
            .map(|(_, g)| g)
            .unwrap_or("");
        ApiStatus::new(
            404,
            "NotFound",
            format!("{qualified_plural} \"{name}\" not found"),
        )
        .with_details(json!({"name": name, "group": group, "kind": kind}))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiStatus::new(400, "BadRequest", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiStatus::new(500, "InternalError", message)
    }

    /// etcd did not answer.
    pub fn storage_unavailable(message: impl Into<String>) -> Self {
        ApiStatus::new(
            500,
            "InternalError",
            format!(
                "Internal error occurred: resource storage is unavailable: {}",
                message.into()
            ),
        )
    }

    pub fn unauthorized() -> Self {
        ApiStatus::new(401, "Unauthorized", "Unauthorized")
    }

    /// `metav1.Status` JSON.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let (Some(d), Some(o)) = (&self.details, v.as_object_mut()) {
            o.insert("details".into(), d.clone());
        }
        v
    }
}

/// Whether `name` is a DNS-1123 subdomain (what most object names must be).
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

// ---------------------------------------------------------------- selectors

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A label selector (`a=b,c!=d,e in (f,g),h notin (i),j,!k`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Splits at commas that are not inside parentheses.
fn split_requirements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.push(current);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn set_values(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_requirements(text) {
            let r = if let Some(key) = part.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Requirement::NotIn(
                    k.trim().into(),
                    set_values(v)
                        .ok_or_else(|| format!("unable to parse requirement: `{part}`"))?,
                )
            } else if let Some((k, v)) = part.split_once(" in ") {
                Requirement::In(
                    k.trim().into(),
                    set_values(v)
                        .ok_or_else(|| format!("unable to parse requirement: `{part}`"))?,
                )
            } else if part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Requirement::Exists(part.clone())
            } else {
                return Err(format!("unable to parse requirement: `{part}`"));
            };
            requirements.push(r);
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether an object with `labels` (its `metadata.labels`, may be absent) matches.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }
}

/// A field selector; only `metadata.name` and `metadata.namespace` are supported (what
/// every resource supports).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                ));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace") {
                return Err(format!("field label not supported: {field}"));
            }
            requirements.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector { requirements })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|(field, equal, value)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let found = object
                .pointer(&pointer)
                .and_then(Value::as_str)
                .unwrap_or_default();
            (found == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors() {
        let labels = json!({"tier": "control-plane", "k8s-app": "kube-apiserver"});
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&labels));
        assert!(m("tier=control-plane"));
        assert!(m("tier==control-plane,k8s-app"));
        assert!(!m("tier!=control-plane"));
        assert!(m("k8s-app in (kube-apiserver, kube-scheduler)"));
        assert!(!m("k8s-app notin (kube-apiserver)"));
        assert!(m("!missing"));
        assert!(!m("missing"));
        assert!(m(""));
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(!LabelSelector::parse("a=b").unwrap().matches(None));
    }

    #[test]
    fn field_selectors() {
        let o = json!({"metadata": {"name": "x", "namespace": "default"}});
        assert!(FieldSelector::parse("metadata.name=x").unwrap().matches(&o));
        assert!(
            !FieldSelector::parse("metadata.namespace!=default")
                .unwrap()
                .matches(&o)
        );
        assert!(
            FieldSelector::parse("spec.nodeName=x")
                .unwrap_err()
                .contains("not supported")
        );
    }

    #[test]
    fn statuses_names_and_times() {
        let s = ApiStatus::not_found("priorityclasses.scheduling.k8s.io", "x").to_json();
        assert_eq!(
            s["message"],
            "priorityclasses.scheduling.k8s.io \"x\" not found"
        );
        assert_eq!(s["details"]["group"], "scheduling.k8s.io");
        assert_eq!(s["details"]["kind"], "priorityclasses");
        assert_eq!(s["code"], 404);
        assert!(is_dns_subdomain("solana-critical"));
        assert!(is_dns_subdomain("a.b-c"));
        assert!(!is_dns_subdomain("Upper"));
        assert!(!is_dns_subdomain("-x"));
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20Z");
        assert_eq!(parse_timestamp("2023-11-14T22:13:20Z"), Some(t));
        assert_eq!(random_uuid().len(), 36);
    }
}
