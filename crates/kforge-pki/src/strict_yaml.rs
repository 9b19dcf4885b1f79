//! Reading a fixed YAML shape strictly over `kforge_yaml` spans: every missing field,
//! unknown key and wrongly typed value becomes a [`BundleProblem`] with its dotted path and
//! line:col, and reading goes on so one pass reports everything.

use kforge_yaml::{Node, NodeValue, Pos};
use zeroize::Zeroize;

use crate::error::{BundleProblem, BundleProblemKind};

/// Collects problems while walking a document.
#[derive(Default)]
pub(crate) struct Reader {
    pub(crate) problems: Vec<BundleProblem>,
}

/// `parent.key`, or `key` at the top.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Reader {
    pub(crate) fn problem(
        &mut self,
        path: impl Into<String>,
        pos: Option<Pos>,
        kind: BundleProblemKind,
        message: impl Into<String>,
    ) {
        self.problems.push(BundleProblem {
            path: path.into(),
            pos,
            kind,
            message: message.into(),
        });
    }

    /// `node` as a mapping with only `known` keys; unknown keys are reported (with the
    /// closest known key as a hint) and the mapping is still returned.
    pub(crate) fn mapping<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        known: &[&str],
    ) -> Option<&'n Node> {
        let shown = if path.is_empty() { "(top level)" } else { path };
        match &node.value {
            NodeValue::Map(entries) => {
                for e in entries {
                    if !known.contains(&e.key.as_str()) {
                        let hint = closest(&e.key, known)
                            .map(|k| format!("; did you mean `{k}`?"))
                            .unwrap_or_else(|| format!("; expected one of: {}", known.join(", ")));
                        self.problem(
                            join(path, &e.key),
                            Some(e.key_span.start),
                            BundleProblemKind::UnknownKey,
                            format!("unknown key `{}`{hint}", e.key),
                        );
                    }
                }
                Some(node)
            }
            NodeValue::Null => {
                self.problem(
                    shown,
                    Some(node.span.start),
                    BundleProblemKind::Missing,
                    "is empty; expected a mapping",
                );
                None
            }
            _ => {
                self.problem(
                    shown,
                    Some(node.span.start),
                    BundleProblemKind::WrongType,
                    format!("is {}; expected a mapping", node.type_name()),
                );
                None
            }
        }
    }

    /// The value under `key` of the mapping `parent`; a missing required key is reported at
    /// the parent's position.
    pub(crate) fn field<'n>(
        &mut self,
        parent: &'n Node,
        parent_path: &str,
        key: &str,
        required: bool,
    ) -> Option<&'n Node> {
        match parent.get(key) {
            Some(v) => Some(v),
            None => {
                if required {
                    self.problem(
                        join(parent_path, key),
                        Some(parent.span.start),
                        BundleProblemKind::Missing,
                        "is missing",
                    );
                }
                None
            }
        }
    }

    /// A non-empty string under `key`. Absent optional keys give `None` silently.
    pub(crate) fn string(
        &mut self,
        parent: &Node,
        parent_path: &str,
        key: &str,
        required: bool,
    ) -> Option<(String, Pos)> {
        let node = self.field(parent, parent_path, key, required)?;
        let path = join(parent_path, key);
        match &node.value {
            NodeValue::Str(s) if !s.is_empty() => Some((s.clone(), node.span.start)),
            NodeValue::Str(_) | NodeValue::Null => {
                if required {
                    self.problem(
                        path,
                        Some(node.span.start),
                        BundleProblemKind::Missing,
                        "is empty",
                    );
                }
                None
            }
            _ => {
                self.problem(
                    path,
                    Some(node.span.start),
                    BundleProblemKind::WrongType,
                    format!("is {}; expected a string", node.type_name()),
                );
                None
            }
        }
    }

    /// A list of strings under `key` (absent or null: empty).
    pub(crate) fn string_list(
        &mut self,
        parent: &Node,
        parent_path: &str,
        key: &str,
    ) -> Vec<String> {
        let Some(node) = parent.get(key) else {
            return Vec::new();
        };
        let path = join(parent_path, key);
        match &node.value {
            NodeValue::Null => Vec::new(),
            NodeValue::Seq(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match &item.value {
                        NodeValue::Str(s) => out.push(s.clone()),
                        _ => self.problem(
                            format!("{path}[{i}]"),
                            Some(item.span.start),
                            BundleProblemKind::WrongType,
                            format!("is {}; expected a string", item.type_name()),
                        ),
                    }
                }
                out
            }
            _ => {
                self.problem(
                    path,
                    Some(node.span.start),
                    BundleProblemKind::WrongType,
                    format!("is {}; expected a list of strings", node.type_name()),
                );
                Vec::new()
            }
        }
    }
}

/// The known key closest to a misspelt one, if it is close enough to be a likely typo.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::levenshtein(&lower, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Zeroes every string of a parsed document that held secrets.
pub(crate) fn scrub_node(node: &mut Node) {
    match &mut node.value {
        NodeValue::Str(s) => s.zeroize(),
        NodeValue::Seq(items) => items.iter_mut().for_each(scrub_node),
        NodeValue::Map(entries) => entries.iter_mut().for_each(|e| scrub_node(&mut e.value)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_get_hints() {
        let doc = kforge_yaml::parse("clustr: 1\nzzz: 2\n").unwrap();
        let mut r = Reader::default();
        r.mapping(&doc, "", &["cluster", "secrets"]);
        assert_eq!(r.problems.len(), 2);
        assert!(
            r.problems[0].message.contains("did you mean `cluster`"),
            "{}",
            r.problems[0]
        );
        assert!(
            r.problems[1].message.contains("expected one of"),
            "{}",
            r.problems[1]
        );
        assert_eq!(r.problems[1].pos.map(|p| p.line), Some(2));
    }

    #[test]
    fn missing_and_mistyped_fields() {
        let doc = kforge_yaml::parse("a:\n  b: [1]\n  c: ''\n").unwrap();
        let mut r = Reader::default();
        let a = doc.get("a").unwrap();
        assert!(r.string(a, "a", "b", true).is_none());
        assert!(r.string(a, "a", "c", true).is_none());
        assert!(r.string(a, "a", "d", true).is_none());
        assert!(r.string(a, "a", "e", false).is_none());
        let kinds: Vec<_> = r
            .problems
            .iter()
            .map(|p| (p.path.as_str(), p.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("a.b", BundleProblemKind::WrongType),
                ("a.c", BundleProblemKind::Missing),
                ("a.d", BundleProblemKind::Missing)
            ]
        );
    }
}
