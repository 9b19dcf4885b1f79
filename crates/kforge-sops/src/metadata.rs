//! The `sops` metadata section: reading it from any sops version's layout (key order varies,
//! older files carry empty `kms: []`-style lists, dotenv flattens it into `sops_*` keys) and
//! writing it the way sops 3.11 does.

use std::collections::BTreeMap;

use crate::error::{Problem, SopsError};
use crate::go_text::{self, GoTime};
use crate::rules::{COMMENT_RULE_KEYS, PartialEncryption, RULE_KEYS};
use crate::tree::{Item, Node, Value};

/// The sops version kforge writes into `sops.version`; kforge reproduces sops 3.11.0's
/// format, and sops accepts any valid semantic version there.
pub const SOPS_VERSION: &str = "3.11.0";

/// The key types sops knows besides age; kforge cannot use them.
const OTHER_KEY_TYPES: [&str; 6] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

/// One age recipient and the data key encrypted (armored) to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AgeEntry {
    pub recipient: String,
    pub enc: String,
}

pub(crate) struct Metadata {
    pub age: Vec<AgeEntry>,
    /// `lastmodified` as parsed; its RFC 3339 form is the MAC's additional data.
    pub lastmodified: GoTime,
    pub mac: String,
    pub rule: PartialEncryption,
    pub mac_only_encrypted: bool,
    pub version: String,
}

/// A metadata field value as found in a file.
enum Field<'a> {
    Node(&'a Node),
    /// dotenv keeps every metadata value as text.
    Text(&'a str),
}

impl Field<'_> {
    fn text(&self) -> Option<&str> {
        match self {
            Field::Text(s) => Some(s),
            Field::Node(n) => match &n.value {
                Value::Str(s) | Value::Time(s) => Some(s),
                _ => None,
            },
        }
    }

    fn line(&self) -> Option<usize> {
        match self {
            Field::Node(n) => Some(n.line),
            Field::Text(_) => None,
        }
    }

    fn is_absent_like(&self) -> bool {
        match self {
            Field::Text(s) => s.is_empty(),
            Field::Node(n) => match &n.value {
                Value::Null => true,
                Value::Str(s) => s.is_empty(),
                Value::Seq(items) => items.is_empty(),
                Value::Map(items) => items.is_empty(),
                _ => false,
            },
        }
    }
}

/// Reads the metadata mapping of a YAML or JSON file.
pub(crate) fn from_node(node: &Node) -> Result<Metadata, SopsError> {
    let Value::Map(items) = &node.value else {
        return Err(SopsError::Metadata {
            problems: vec![Problem::new(
                "sops",
                Some(node.line),
                format!("must be a mapping, found {}", node.kind()),
            )],
        });
    };
    let mut fields: BTreeMap<&str, Field<'_>> = BTreeMap::new();
    for item in items {
        if let Item::Pair { key, node } = item {
            fields.insert(key.as_str(), Field::Node(node));
        }
    }
    let mut problems = Vec::new();
    let age = match fields.get("key_groups").filter(|f| !f.is_absent_like()) {
        Some(Field::Node(groups)) => age_from_key_groups(groups, &mut problems)?,
        _ => match fields.get("age") {
            Some(Field::Node(list)) => age_from_list(list, "sops.age", &mut problems),
            _ => Vec::new(),
        },
    };
    let other: Vec<&str> = OTHER_KEY_TYPES
        .iter()
        .copied()
        .filter(|k| fields.get(k).is_some_and(|f| !f.is_absent_like()))
        .collect();
    finish(&fields, age, &other, problems)
}

/// Reads the flattened `sops_*` entries of a dotenv file (keys without the prefix).
pub(crate) fn from_flat(entries: &[(String, String)]) -> Result<Metadata, SopsError> {
    let mut fields: BTreeMap<&str, Field<'_>> = BTreeMap::new();
    let mut age: BTreeMap<usize, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut other = Vec::new();
    let mut problems = Vec::new();
    for (key, value) in entries {
        if let Some(rest) = key.strip_prefix("age__list_") {
            let parsed = rest
                .split_once("__map_")
                .and_then(|(i, f)| Some((i.parse::<usize>().ok()?, f)));
            match parsed {
                Some((i, "recipient")) => age.entry(i).or_default().0 = Some(value.clone()),
                Some((i, "enc")) => age.entry(i).or_default().1 = Some(value.clone()),
                _ => problems.push(Problem::new(
                    format!("sops_{key}"),
                    None,
                    "is not a known age metadata key",
                )),
            }
        } else if key.starts_with("key_groups") {
            return Err(unsupported_key_groups());
        } else if let Some(t) = OTHER_KEY_TYPES
            .iter()
            .find(|t| key.starts_with(&format!("{t}__list_")))
        {
            if !other.contains(t) {
                other.push(*t);
            }
        } else {
            fields.insert(key.as_str(), Field::Text(value));
        }
    }
    let mut entries_out = Vec::new();
    for (i, (recipient, enc)) in age {
        match (recipient, enc) {
            (Some(recipient), Some(enc)) => entries_out.push(AgeEntry { recipient, enc }),
            _ => problems.push(Problem::new(
                format!("sops_age__list_{i}"),
                None,
                "needs both `recipient` and `enc`",
            )),
        }
    }
    finish(&fields, entries_out, &other, problems)
}

fn unsupported_key_groups() -> SopsError {
    SopsError::Unsupported {
        what: "a file with several key groups (Shamir secret sharing)".to_string(),
        hint: "decrypt it with the sops CLI, or re-encrypt it with one key group".to_string(),
    }
}

fn age_from_key_groups(
    groups: &Node,
    problems: &mut Vec<Problem>,
) -> Result<Vec<AgeEntry>, SopsError> {
    let Value::Seq(list) = &groups.value else {
        problems.push(Problem::new(
            "sops.key_groups",
            Some(groups.line),
            "must be a list",
        ));
        return Ok(Vec::new());
    };
    if list.len() > 1 {
        return Err(unsupported_key_groups());
    }
    Ok(match list.first().map(|g| &g.value) {
        Some(Value::Map(items)) => match crate::tree::get(items, "age") {
            Some(node) => age_from_list(node, "sops.key_groups[0].age", problems),
            None => Vec::new(),
        },
        _ => Vec::new(),
    })
}

fn age_from_list(list: &Node, at: &str, problems: &mut Vec<Problem>) -> Vec<AgeEntry> {
    let items = match &list.value {
        Value::Null => return Vec::new(),
        Value::Seq(items) => items,
        _ => {
            problems.push(Problem::new(
                at,
                Some(list.line),
                format!("must be a list, found {}", list.kind()),
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, entry) in items.iter().enumerate() {
        let field = |name: &str| match &entry.value {
            Value::Map(m) => match crate::tree::get(m, name).map(|n| &n.value) {
                Some(Value::Str(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            },
            _ => None,
        };
        match (field("recipient"), field("enc")) {
            (Some(recipient), Some(enc)) => out.push(AgeEntry { recipient, enc }),
            _ => problems.push(Problem::new(
                format!("{at}[{i}]"),
                Some(entry.line),
                "needs a `recipient` and an `enc` string",
            )),
        }
    }
    out
}

fn finish(
    fields: &BTreeMap<&str, Field<'_>>,
    age: Vec<AgeEntry>,
    other_key_types: &[&str],
    mut problems: Vec<Problem>,
) -> Result<Metadata, SopsError> {
    for key in COMMENT_RULE_KEYS {
        if fields.get(key).is_some_and(|f| !f.is_absent_like()) {
            return Err(SopsError::Unsupported {
                what: format!("the `{key}` rule"),
                hint: "kforge decides encryption by key names; decrypt this file with the sops CLI"
                    .to_string(),
            });
        }
    }
    if age.is_empty() && !other_key_types.is_empty() {
        return Err(SopsError::Unsupported {
            what: format!(
                "a file encrypted only for {} keys",
                other_key_types.join(", ")
            ),
            hint: "add an age recipient with `sops updatekeys` or decrypt it with the sops CLI"
                .to_string(),
        });
    }
    if age.is_empty() {
        problems.push(Problem::new(
            "sops.age",
            None,
            "lists no age recipients, so no key can decrypt the data key",
        ));
    }

    let text_field = |key: &str, problems: &mut Vec<Problem>| -> Option<(String, Option<usize>)> {
        match fields.get(key) {
            None => None,
            Some(f) if f.is_absent_like() => None,
            Some(f) => match f.text() {
                Some(t) => Some((t.to_string(), f.line())),
                None => {
                    problems.push(Problem::new(
                        format!("sops.{key}"),
                        f.line(),
                        "must be a string",
                    ));
                    None
                }
            },
        }
    };

    let lastmodified = match text_field("lastmodified", &mut problems) {
        Some((t, line)) => match go_text::parse_rfc3339(&t) {
            Some(time) => Some(time),
            None => {
                problems.push(Problem::new(
                    "sops.lastmodified",
                    line,
                    format!("`{t}` is not an RFC 3339 timestamp"),
                ));
                None
            }
        },
        None => {
            problems.push(Problem::new("sops.lastmodified", None, "is missing"));
            None
        }
    };
    let mac = text_field("mac", &mut problems).map(|(t, _)| t);
    if mac.is_none() {
        problems.push(Problem::new(
            "sops.mac",
            None,
            "is missing, so the file's integrity cannot be checked",
        ));
    }

    let mut rules = Vec::new();
    for key in RULE_KEYS {
        if let Some((value, line)) = text_field(key, &mut problems) {
            rules.push((key, value, line));
        }
    }
    if rules.len() > 1 {
        let names: Vec<&str> = rules.iter().map(|r| r.0).collect();
        problems.push(Problem::new(
            "sops",
            rules[1].2,
            format!(
                "sets {}; sops allows only one partial-encryption rule",
                names.join(" and ")
            ),
        ));
    }
    let rule = rules
        .into_iter()
        .next()
        .and_then(|(key, value, _)| PartialEncryption::from_key(key, value))
        .unwrap_or_default();

    let mac_only_encrypted = match fields.get("mac_only_encrypted") {
        None => false,
        Some(Field::Text(t)) => *t == "true",
        Some(Field::Node(n)) => match n.value {
            Value::Bool(b) => b,
            Value::Null => false,
            _ => {
                problems.push(Problem::new(
                    "sops.mac_only_encrypted",
                    Some(n.line),
                    "must be true or false",
                ));
                false
            }
        },
    };

    let version = match text_field("version", &mut problems) {
        Some((v, _)) if go_text::is_semver(&v) => Some(v),
        Some((v, line)) => {
            problems.push(Problem::new(
                "sops.version",
                line,
                format!(
                    "`{v}` is not a valid version (expected MAJOR.MINOR.PATCH like {SOPS_VERSION})"
                ),
            ));
            None
        }
        None => {
            problems.push(Problem::new(
                "sops.version",
                None,
                format!(
                    "is missing or empty; sops refuses such files (\"Version string empty\"); write e.g. `version: {SOPS_VERSION}`"
                ),
            ));
            None
        }
    };

    match (lastmodified, mac, version) {
        (Some(lastmodified), Some(mac), Some(version)) if problems.is_empty() => Ok(Metadata {
            age,
            lastmodified,
            mac,
            rule,
            mac_only_encrypted,
            version,
        }),
        _ => Err(SopsError::Metadata { problems }),
    }
}

impl Metadata {
    /// The metadata as sops 3.11 writes it into YAML and JSON files, in its field order.
    pub(crate) fn to_items(&self) -> Vec<Item> {
        let pair = |key: &str, value: Value| Item::Pair {
            key: key.to_string(),
            node: Node::new(value, 0),
        };
        let age = self
            .age
            .iter()
            .map(|e| {
                Node::new(
                    Value::Map(vec![
                        pair("recipient", Value::Str(e.recipient.clone())),
                        pair("enc", Value::Str(e.enc.clone())),
                    ]),
                    0,
                )
            })
            .collect();
        let mut items = vec![
            pair("age", Value::Seq(age)),
            pair("lastmodified", Value::Str(self.lastmodified.rfc3339())),
            pair("mac", Value::Str(self.mac.clone())),
            pair(self.rule.key(), Value::Str(self.rule.value().to_string())),
        ];
        if self.mac_only_encrypted {
            items.push(pair("mac_only_encrypted", Value::Bool(true)));
        }
        items.push(pair("version", Value::Str(self.version.clone())));
        items
    }

    /// The metadata as sops writes it into dotenv files: flattened keys, sorted.
    pub(crate) fn to_flat(&self) -> Vec<(String, String)> {
        let mut flat = Vec::new();
        for (i, e) in self.age.iter().enumerate() {
            flat.push((format!("age__list_{i}__map_enc"), e.enc.clone()));
            flat.push((format!("age__list_{i}__map_recipient"), e.recipient.clone()));
        }
        flat.push(("lastmodified".to_string(), self.lastmodified.rfc3339()));
        flat.push(("mac".to_string(), self.mac.clone()));
        flat.push((self.rule.key().to_string(), self.rule.value().to_string()));
        if self.mac_only_encrypted {
            flat.push(("mac_only_encrypted".to_string(), "true".to_string()));
        }
        flat.push(("version".to_string(), self.version.clone()));
        flat.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(yaml: &str) -> Result<Metadata, SopsError> {
        let loaded = crate::stores::yaml::load(yaml).unwrap();
        from_node(loaded.metadata_node.as_ref().unwrap())
    }

    const AGE: &str = "    age:\n        - recipient: age1x\n          enc: ENCRYPTED\n";
    const TAIL: &str =
        "    lastmodified: \"2026-01-02T03:04:05Z\"\n    mac: ENC[x]\n    version: 3.11.0\n";

    #[test]
    fn reads_any_key_order_and_old_layouts() {
        let m = meta(&format!("a: 1\nsops:\n    version: 3.8.1\n    kms: []\n    pgp: []\n{AGE}    lastmodified: 2026-01-02T03:04:05Z\n    mac: ENC[x]\n")).unwrap();
        assert_eq!(
            m.age,
            vec![AgeEntry {
                recipient: "age1x".into(),
                enc: "ENCRYPTED".into()
            }]
        );
        assert_eq!(m.lastmodified.rfc3339(), "2026-01-02T03:04:05Z");
        assert_eq!(m.rule, PartialEncryption::default());
        let groups = "    key_groups:\n        - age:\n            - recipient: age1x\n              enc: ENCRYPTED\n";
        assert_eq!(
            meta(&format!("sops:\n{groups}{TAIL}")).unwrap().age.len(),
            1
        );
    }

    #[test]
    fn refuses_what_kforge_cannot_do() {
        let two_groups = "    key_groups:\n        - age: []\n        - age: []\n";
        assert!(matches!(
            meta(&format!("sops:\n{two_groups}{TAIL}")),
            Err(SopsError::Unsupported { .. })
        ));
        let pgp_only = "    pgp:\n        - fp: ABC\n          enc: x\n";
        assert!(matches!(
            meta(&format!("sops:\n{pgp_only}{TAIL}")),
            Err(SopsError::Unsupported { .. })
        ));
        let comments = "    encrypted_comment_regex: sops\n";
        assert!(matches!(
            meta(&format!("sops:\n{AGE}{comments}{TAIL}")),
            Err(SopsError::Unsupported { .. })
        ));
        let two_rules = "    encrypted_regex: a\n    unencrypted_suffix: b\n";
        let err = meta(&format!("sops:\n{AGE}{two_rules}{TAIL}"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("unencrypted_suffix and encrypted_regex"),
            "{err}"
        );
        let err = meta("sops:\n    mac: 5\n").err().unwrap().to_string();
        for field in ["sops.age", "sops.lastmodified", "sops.mac", "sops.version"] {
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn flat_dotenv_metadata() {
        let flat: Vec<(String, String)> = [
            ("age__list_0__map_enc", "E0"),
            ("age__list_0__map_recipient", "age1a"),
            ("age__list_1__map_recipient", "age1b"),
            ("age__list_1__map_enc", "E1"),
            ("lastmodified", "2026-01-02T03:04:05Z"),
            ("mac", "ENC[x]"),
            ("mac_only_encrypted", "true"),
            ("encrypted_suffix", "_s"),
            ("version", "3.11.0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let m = from_flat(&flat).unwrap();
        assert_eq!(m.age.len(), 2);
        assert_eq!(m.age[1].recipient, "age1b");
        assert!(m.mac_only_encrypted);
        assert_eq!(m.rule, PartialEncryption::EncryptedSuffix("_s".into()));
        let mut sorted = flat.clone();
        sorted.sort();
        assert_eq!(m.to_flat(), sorted);
    }
}
