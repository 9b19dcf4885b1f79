//! Typed reading of a spanned YAML tree that never stops at the first problem.
//!
//! serde's derived code asks for the type it wants; this deserializer answers from the
//! [`Node`] it stands on. When the node does not fit (a list where a string was expected),
//! it records an [`Issue`] with the node's path and span and hands serde an empty value of
//! the wanted type, so decoding carries on and every problem in the file is found in one
//! pass. Unknown mapping keys are recorded (with a "did you mean" suggestion) and skipped.
//! Scalars are read as strings the way Go's yaml.v3 does (any scalar's source text), and
//! booleans accept YAML 1.1 spellings (`yes`, `on`) as yaml.v3 does for typed bools.

use std::cell::RefCell;
use std::fmt;

use kforge_yaml::{Entry, Node, NodeValue, Span};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use crate::path::{Path, Seg};

/// A problem found while decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    pub path: Path,
    pub span: Span,
    pub kind: IssueKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum IssueKind {
    /// The value has the wrong type.
    Type { expected: String, found: String },
    /// A key the schema does not know.
    UnknownKey {
        key: String,
        suggestion: Option<String>,
    },
    /// Anything else serde reported.
    Other(String),
}

/// Decodes `node` into `T`, returning the value and every issue found.
///
/// A value that cannot be read is left out of the result (the field is unset), as if it
/// had not been written: checks that run on the result then see "missing", not a
/// substitute such as `0` or `false` that would raise misleading follow-on findings. This
/// takes a second decode of a copy of the tree with those values removed, and one more
/// per value that a hand-written `Deserialize` rejects outright (bounded).
pub fn decode<T: DeserializeOwned + Default>(node: &Node, root: Path) -> (T, Vec<Issue>) {
    /// Rejections handled by removing the value and decoding again, at most.
    const MAX_RETRIES: usize = 64;
    let mut issues: Vec<Issue> = Vec::new();
    let mut tree: Option<Node> = None;
    for _ in 0..=MAX_RETRIES {
        let current = tree.as_ref().unwrap_or(node);
        let (result, mut found) = decode_once::<T>(current, &root);
        match result {
            Ok(value) => {
                let unreadable: Vec<Path> = found
                    .iter()
                    .filter(|i| !matches!(i.kind, IssueKind::UnknownKey { .. }))
                    .map(|i| i.path.clone())
                    .collect();
                issues.append(&mut found);
                if unreadable.is_empty() {
                    return (value, issues);
                }
                let mut cleaned = tree.unwrap_or_else(|| node.clone());
                for p in &unreadable {
                    remove_at(&mut cleaned, &root, p);
                }
                // Issues of the cleaned tree are a subset of those already found.
                let value = decode_once::<T>(&cleaned, &root).0.unwrap_or_default();
                return (value, issues);
            }
            Err(e) => {
                let (path, span) = e.at.unwrap_or_else(|| (root.clone(), node.span));
                let removable = path != root;
                let mut cleaned = tree.take().unwrap_or_else(|| node.clone());
                if removable {
                    remove_at(&mut cleaned, &root, &path);
                }
                issues.push(Issue {
                    path: path.clone(),
                    span,
                    kind: rejection(&e.message),
                });
                if !removable {
                    return (T::default(), issues);
                }
                tree = Some(cleaned);
            }
        }
    }
    (T::default(), issues)
}

fn decode_once<T: DeserializeOwned>(
    node: &Node,
    root: &Path,
) -> (Result<T, DecodeError>, Vec<Issue>) {
    let issues = RefCell::new(Vec::new());
    let de = NodeDe {
        node,
        path: root.clone(),
        issues: &issues,
    };
    let r = T::deserialize(de);
    (r, issues.into_inner())
}

/// A serde rejection as an issue: `invalid type: map, expected X` becomes a type issue.
fn rejection(message: &str) -> IssueKind {
    if let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    {
        let found = match found {
            "map" => "a mapping".to_string(),
            "sequence" => "a list".to_string(),
            other => other.to_string(),
        };
        return IssueKind::Type {
            expected: expected.to_string(),
            found,
        };
    }
    IssueKind::Other(message.to_string())
}

/// Makes the value at `path` null (an unset field, an empty list item), keeping its span.
fn remove_at(node: &mut Node, root: &Path, path: &Path) {
    let Some(segs) = path.0.get(root.0.len()..) else {
        return;
    };
    let mut cur = node;
    for seg in segs {
        let next = match (seg, &mut cur.value) {
            (Seg::Key(k), NodeValue::Map(entries)) => entries
                .iter_mut()
                .find(|e| &e.key == k)
                .map(|e| &mut e.value),
            (Seg::Index(i), NodeValue::Seq(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    cur.value = NodeValue::Null;
    cur.raw = None;
}

/// The closest of `candidates` to `key`, if it is close enough to be a likely typo.
pub fn suggest<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let lower = key.to_ascii_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        if c.to_ascii_lowercase() == lower {
            return Some(c.to_string());
        }
        let score = strsim::jaro_winkler(&lower, &c.to_ascii_lowercase());
        if score > best.map_or(0.0, |b| b.0) {
            best = Some((score, c));
        }
    }
    best.filter(|(score, _)| *score >= 0.85)
        .map(|(_, c)| c.to_string())
}

/// A rejection by serde or a hand-written `Deserialize`, with the value it was about once
/// known.
#[derive(Debug)]
pub struct DecodeError {
    message: String,
    at: Option<(Path, Span)>,
}

impl DecodeError {
    fn new(message: impl Into<String>) -> Self {
        DecodeError {
            message: message.into(),
            at: None,
        }
    }

    /// Attributes the error to `node` unless a value further down already claimed it.
    fn located(mut self, path: &Path, node: &Node) -> Self {
        if self.at.is_none() {
            self.at = Some((path.clone(), node.span));
        }
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError::new(msg.to_string())
    }
}

struct NodeDe<'a> {
    node: &'a Node,
    path: Path,
    issues: &'a RefCell<Vec<Issue>>,
}

fn found(node: &Node) -> String {
    match &node.value {
        NodeValue::Str(s) if s.chars().count() <= 40 => format!("the string `{s}`"),
        NodeValue::Int(_) | NodeValue::UInt(_) | NodeValue::Float(_) | NodeValue::Bool(_) => {
            format!(
                "{} `{}`",
                node.type_name(),
                node.raw.as_deref().unwrap_or("")
            )
        }
        _ => node.type_name().to_string(),
    }
}

impl<'a> NodeDe<'a> {
    fn mismatch(&self, expected: &str) {
        self.issues.borrow_mut().push(Issue {
            path: self.path.clone(),
            span: self.node.span,
            kind: IssueKind::Type {
                expected: expected.to_string(),
                found: found(self.node),
            },
        });
    }

    fn int<V: Visitor<'a>>(
        self,
        visitor: V,
        min: i128,
        max: i128,
        expected: &str,
    ) -> Result<V::Value, DecodeError> {
        let v: Option<i128> = match self.node.value {
            NodeValue::Int(i) => Some(i.into()),
            NodeValue::UInt(u) => Some(u.into()),
            _ => None,
        };
        match v {
            Some(v) if v >= min && v <= max => {
                if v < 0 {
                    visitor.visit_i64(v as i64)
                } else {
                    visitor.visit_u64(v as u64)
                }
            }
            Some(_) => {
                self.mismatch(&format!("{expected} between {min} and {max}"));
                visitor.visit_u64(0)
            }
            None if self.node.is_null() => visitor.visit_u64(0),
            None => {
                self.mismatch(expected);
                visitor.visit_u64(0)
            }
        }
    }

    fn child(&self, node: &'a Node, path: Path) -> NodeDe<'a> {
        NodeDe {
            node,
            path,
            issues: self.issues,
        }
    }
}

macro_rules! ints {
    ($($name:ident, $t:ty, $what:expr;)*) => {$(
        fn $name<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
            self.int(visitor, <$t>::MIN as i128, <$t>::MAX as i128, $what)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let (path, node) = (self.path.clone(), self.node);
        self.any(visitor).map_err(|e| e.located(&path, node))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match &self.node.value {
            NodeValue::Bool(b) => visitor.visit_bool(*b),
            NodeValue::Null => visitor.visit_bool(false),
            NodeValue::Str(s) => match s.as_str() {
                "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => visitor.visit_bool(true),
                "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => visitor.visit_bool(false),
                _ => {
                    self.mismatch("a boolean (true or false)");
                    visitor.visit_bool(false)
                }
            },
            _ => {
                self.mismatch("a boolean (true or false)");
                visitor.visit_bool(false)
            }
        }
    }

    ints! {
        deserialize_i8, i8, "an integer";
        deserialize_i16, i16, "an integer";
        deserialize_i32, i32, "an integer";
        deserialize_i64, i64, "an integer";
        deserialize_u8, u8, "a non-negative integer";
        deserialize_u16, u16, "a non-negative integer";
        deserialize_u32, u32, "a non-negative integer";
        deserialize_u64, u64, "a non-negative integer";
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.node.value {
            NodeValue::Float(f) => visitor.visit_f64(f),
            NodeValue::Int(i) => visitor.visit_f64(i as f64),
            NodeValue::UInt(u) => visitor.visit_f64(u as f64),
            _ => {
                self.mismatch("a number");
                visitor.visit_f64(0.0)
            }
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.node.scalar_text() {
            Some(text) if !self.node.is_null() => visitor.visit_str(text),
            _ if self.node.is_null() => visitor.visit_str(""),
            _ => {
                self.mismatch("a string");
                visitor.visit_str("")
            }
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        if self.node.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match &self.node.value {
            NodeValue::Seq(items) => visitor.visit_seq(SeqAccess {
                de: &self,
                items: items.iter(),
                index: 0,
            }),
            NodeValue::Null => visitor.visit_seq(SeqAccess {
                de: &self,
                items: [].iter(),
                index: 0,
            }),
            _ => {
                self.mismatch("a list");
                visitor.visit_seq(SeqAccess {
                    de: &self,
                    items: [].iter(),
                    index: 0,
                })
            }
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.structure(visitor, None)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.structure(visitor, Some(fields))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        match self.node.scalar_text() {
            Some(text) if variants.contains(&text) => visitor.visit_enum(text.into_deserializer()),
            _ => {
                self.mismatch(&format!("one of {}", variants.join(", ")));
                match variants.first() {
                    Some(first) => visitor.visit_enum((*first).into_deserializer()),
                    None => Err(DecodeError::new("enum without variants")),
                }
            }
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }
}

impl<'de> NodeDe<'de> {
    fn any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match &self.node.value {
            NodeValue::Null => visitor.visit_unit(),
            NodeValue::Bool(b) => visitor.visit_bool(*b),
            NodeValue::Int(i) => visitor.visit_i64(*i),
            NodeValue::UInt(u) => visitor.visit_u64(*u),
            NodeValue::Float(f) => visitor.visit_f64(*f),
            NodeValue::Str(s) => visitor.visit_str(s),
            NodeValue::Seq(items) => visitor.visit_seq(SeqAccess {
                de: &self,
                items: items.iter(),
                index: 0,
            }),
            NodeValue::Map(entries) => visitor.visit_map(MapAccess {
                de: &self,
                entries: entries.iter(),
                fields: None,
                pending: None,
            }),
        }
    }

    fn structure<V: Visitor<'de>>(
        self,
        visitor: V,
        fields: Option<&'static [&'static str]>,
    ) -> Result<V::Value, DecodeError> {
        let entries: &'de [Entry] = match &self.node.value {
            NodeValue::Map(entries) => entries,
            NodeValue::Null => &[],
            _ => {
                self.mismatch("a mapping");
                &[]
            }
        };
        visitor.visit_map(MapAccess {
            de: &self,
            entries: entries.iter(),
            fields,
            pending: None,
        })
    }
}

struct SeqAccess<'a, 'de> {
    de: &'a NodeDe<'de>,
    items: std::slice::Iter<'de, Node>,
    index: usize,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_, 'de> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let path = self.de.path.index(self.index);
        self.index += 1;
        seed.deserialize(self.de.child(item, path)).map(Some)
    }
}

struct MapAccess<'a, 'de> {
    de: &'a NodeDe<'de>,
    entries: std::slice::Iter<'de, Entry>,
    fields: Option<&'static [&'static str]>,
    pending: Option<&'de Entry>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_, 'de> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        for entry in self.entries.by_ref() {
            if let Some(fields) = self.fields
                && !fields.contains(&entry.key.as_str())
            {
                self.de.issues.borrow_mut().push(Issue {
                    path: self.de.path.key(entry.key.clone()),
                    span: entry.key_span,
                    kind: IssueKind::UnknownKey {
                        key: entry.key.clone(),
                        suggestion: suggest(&entry.key, fields.iter().copied()),
                    },
                });
                continue;
            }
            self.pending = Some(entry);
            let key: de::value::StrDeserializer<'_, DecodeError> =
                entry.key.as_str().into_deserializer();
            return seed.deserialize(key).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let entry = self
            .pending
            .take()
            .ok_or_else(|| DecodeError::new("value without a key"))?;
        let path = self.de.path.key(entry.key.clone());
        seed.deserialize(self.de.child(&entry.value, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClusterFile;

    fn run(src: &str) -> (ClusterFile, Vec<Issue>) {
        decode(&kforge_yaml::parse(src).unwrap(), Path::root())
    }

    #[test]
    fn collects_every_problem() {
        let (cf, issues) = run(
            "clusterName: [a]\nnodes:\n  - hostname: n1\n    ipAdress: 1.2.3.4\n    controlPlane: maybe\n    installDisk: {}\n  - hostname: n2\n    nodeLabels: [x]\ntalosVersion: 1.12\n",
        );
        assert_eq!(cf.talos_version.as_deref(), Some("1.12"));
        let msgs: Vec<String> = issues
            .iter()
            .map(|i| format!("{} {:?}", i.path, i.kind))
            .collect();
        assert_eq!(issues.len(), 5, "{msgs:#?}");
        assert!(msgs[0].starts_with("clusterName Type"));
        assert!(
            msgs[1].contains("ipAdress") && msgs[1].contains("Some(\"ipAddress\")"),
            "{}",
            msgs[1]
        );
        assert!(msgs[2].starts_with("nodes[0].controlPlane"));
        assert!(msgs[3].starts_with("nodes[0].installDisk"));
        assert!(msgs[4].starts_with("nodes[1].nodeLabels"));
        assert_eq!(issues[1].span.start.line, 4);
    }

    #[test]
    fn unreadable_values_are_left_unset() {
        let (cf, issues) = run(
            "clusterName: c\nnodes:\n  - hostname: n1\n    controlPlane: ture\n    hardware: {cpus: many, memory: {a: 1}}\n    networkInterfaces:\n      - interface: eth0\n        mtu: 99999999999\n",
        );
        let msgs: Vec<String> = issues
            .iter()
            .map(|i| format!("{} {:?}", i.path, i.kind))
            .collect();
        assert_eq!(issues.len(), 4, "{msgs:#?}");
        // A rejection by a hand-written Deserialize (IntOrString) is located and does not
        // throw away the rest of the file.
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("nodes[0].hardware.memory Type") && m.contains("a mapping")),
            "{msgs:#?}"
        );
        assert_eq!(cf.cluster_name.as_deref(), Some("c"));
        let n = &cf.nodes.as_ref().unwrap()[0];
        assert_eq!(n.hostname.as_deref(), Some("n1"));
        assert_eq!(n.control_plane, None);
        let hw = n.hardware.as_ref().unwrap();
        assert_eq!((hw.cpus, hw.memory.is_none()), (None, true));
        assert_eq!(n.network_interfaces.as_ref().unwrap()[0].mtu, None);
        assert_eq!(
            n.network_interfaces.as_ref().unwrap()[0]
                .interface
                .as_deref(),
            Some("eth0")
        );
    }

    #[test]
    fn scalars_read_as_strings_like_yaml_v3() {
        let (cf, issues) =
            run("kubernetesVersion: 1.30\nclusterName: 0644\nallowSchedulingOnMasters: yes\n");
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(cf.kubernetes_version.as_deref(), Some("1.30"));
        assert_eq!(cf.cluster_name.as_deref(), Some("0644"));
        assert_eq!(cf.allow_scheduling_on_masters, Some(true));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("ipadress", ["ipAddress", "hostname"]).as_deref(),
            Some("ipAddress")
        );
        assert_eq!(
            suggest("installdisk", ["installDisk"]).as_deref(),
            Some("installDisk")
        );
        assert_eq!(suggest("zzz", ["ipAddress", "hostname"]), None);
    }
}
