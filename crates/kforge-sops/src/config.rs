//! `.sops.yaml`: finding it (walking up from a directory, at most 100 levels, like sops),
//! reading its `creation_rules` (first rule whose `path_regex` matches wins; a rule without
//! one matches everything), and adding rules to an existing file without disturbing what is
//! there (kforge init uses that).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kforge_yaml::{Node as YamlNode, NodeValue};
use regex::Regex;

use crate::EncryptConfig;
use crate::error::{Problem, SopsError};
use crate::rules::{COMMENT_RULE_KEYS, PartialEncryption, RULE_KEYS};

/// The file name sops looks for (`.sops.yml` is ignored by sops, and so here).
pub const CONFIG_FILE_NAME: &str = ".sops.yaml";
/// How many directory levels sops walks up.
const MAX_DEPTH: usize = 100;

/// Finds `.sops.yaml` in `start_dir` or its parents, as sops does for the directory of the
/// file being encrypted. `exists` tells whether a path is an existing file.
pub fn find_config(start_dir: &Path, exists: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    let mut dir = start_dir.to_path_buf();
    for _ in 0..MAX_DEPTH {
        let candidate = dir.join(CONFIG_FILE_NAME);
        if exists(&candidate) {
            return Some(candidate);
        }
        // Relative paths go up through `..` like sops' path.Join(dir, "..").
        dir = if dir.is_absolute() {
            match dir.parent() {
                Some(p) => p.to_path_buf(),
                None => return None,
            }
        } else {
            dir.join("..")
        };
    }
    None
}

/// One creation rule.
#[derive(Clone, Debug)]
pub struct CreationRule {
    /// The `path_regex`, or `None` for a catch-all rule.
    pub path_regex: Option<String>,
    regex: Option<Regex>,
    /// age recipients (from a list or a comma-separated string).
    pub age: Vec<String>,
    /// The partial-encryption rule, when the rule sets one.
    pub partial: Option<PartialEncryption>,
    pub mac_only_encrypted: bool,
    /// Line of the rule in `.sops.yaml`.
    pub line: usize,
    /// Key types or settings of the rule kforge cannot honour (pgp, kms, several key groups…).
    pub unsupported: Vec<String>,
}

impl CreationRule {
    /// Whether the rule applies to `path` (relative to the config file's directory, with `/`).
    pub fn matches(&self, path: &str) -> bool {
        self.regex.as_ref().is_none_or(|r| r.is_match(path))
    }

    /// The encryption settings of this rule.
    pub fn encrypt_config(&self, lastmodified: SystemTime) -> Result<EncryptConfig, SopsError> {
        if !self.unsupported.is_empty() {
            return Err(SopsError::Unsupported {
                what: format!("the creation rule at line {} ({})", self.line, self.unsupported.join(", ")),
                hint: "kforge encrypts only to age recipients in one key group; use the sops CLI for this rule".to_string(),
            });
        }
        if self.age.is_empty() {
            return Err(SopsError::NoRecipients);
        }
        Ok(EncryptConfig {
            recipients: self.age.clone(),
            rule: self.partial.clone().unwrap_or_default(),
            mac_only_encrypted: self.mac_only_encrypted,
            lastmodified,
        })
    }
}

/// The `creation_rules` of a `.sops.yaml`.
#[derive(Clone, Debug, Default)]
pub struct CreationRules {
    pub rules: Vec<CreationRule>,
}

impl CreationRules {
    /// Reads the creation rules of a `.sops.yaml` text, reporting every problem at once.
    pub fn parse(text: &str) -> Result<CreationRules, SopsError> {
        let err = |problems| SopsError::Config {
            file: CONFIG_FILE_NAME.to_string(),
            problems,
        };
        let doc = kforge_yaml::parse(text).map_err(|e| {
            err(vec![Problem::new(
                "syntax",
                Some(e.pos.line),
                format!("{} (column {})", e.message, e.pos.col),
            )])
        })?;
        let mut problems = Vec::new();
        let rules_node = match &doc.value {
            NodeValue::Null => return Ok(CreationRules::default()),
            NodeValue::Map(_) => doc.get("creation_rules"),
            _ => {
                problems.push(Problem::new(
                    "top level",
                    Some(doc.span.start.line),
                    "must be a mapping",
                ));
                return Err(err(problems));
            }
        };
        let mut rules = Vec::new();
        match rules_node.map(|n| &n.value) {
            None | Some(NodeValue::Null) => {}
            Some(NodeValue::Seq(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(rule) = parse_rule(item, i, &mut problems) {
                        rules.push(rule);
                    }
                }
            }
            Some(_) => problems.push(Problem::new(
                "creation_rules",
                rules_node.map(|n| n.span.start.line),
                "must be a list of rules",
            )),
        }
        if problems.is_empty() {
            Ok(CreationRules { rules })
        } else {
            Err(err(problems))
        }
    }

    /// The first rule matching `path` (relative to the config file's directory, with `/`).
    pub fn rule_for(&self, path: &str) -> Option<&CreationRule> {
        self.rules.iter().find(|r| r.matches(path))
    }
}

fn parse_rule(item: &YamlNode, index: usize, problems: &mut Vec<Problem>) -> Option<CreationRule> {
    let at = format!("creation_rules[{index}]");
    let line = item.span.start.line;
    let NodeValue::Map(entries) = &item.value else {
        problems.push(Problem::new(
            &at,
            Some(line),
            format!("must be a mapping, found {}", item.type_name()),
        ));
        return None;
    };
    let before = problems.len();
    let mut rule = CreationRule {
        path_regex: None,
        regex: None,
        age: Vec::new(),
        partial: None,
        mac_only_encrypted: false,
        line,
        unsupported: Vec::new(),
    };
    let string = |n: &YamlNode, field: &str, problems: &mut Vec<Problem>| -> Option<String> {
        match &n.value {
            NodeValue::Str(s) => Some(s.clone()),
            NodeValue::Null => None,
            _ => {
                problems.push(Problem::new(
                    format!("{at}.{field}"),
                    Some(n.span.start.line),
                    format!("must be a string, found {}", n.type_name()),
                ));
                None
            }
        }
    };
    let mut partial_rules = Vec::new();
    let mut key_groups = None;
    for e in entries {
        let field = e.key.as_str();
        let n = &e.value;
        match field {
            "path_regex" => {
                if let Some(r) = string(n, field, problems).filter(|r| !r.is_empty()) {
                    match Regex::new(&r) {
                        Ok(re) => rule.regex = Some(re),
                        Err(err) => problems.push(Problem::new(
                            format!("{at}.path_regex"),
                            Some(n.span.start.line),
                            format!(
                                "is not a valid regex: {}",
                                crate::rules::regex_error_summary(&err)
                            ),
                        )),
                    }
                    rule.path_regex = Some(r);
                }
            }
            "age" => rule.age = key_list(n, &format!("{at}.age"), problems),
            "mac_only_encrypted" => match n.value {
                NodeValue::Bool(b) => rule.mac_only_encrypted = b,
                NodeValue::Null => {}
                _ => problems.push(Problem::new(
                    format!("{at}.mac_only_encrypted"),
                    Some(n.span.start.line),
                    "must be true or false",
                )),
            },
            "key_groups" => key_groups = Some(n),
            f if RULE_KEYS.contains(&f) || COMMENT_RULE_KEYS.contains(&f) => {
                if let Some(v) = string(n, field, problems).filter(|v| !v.is_empty()) {
                    partial_rules.push((field.to_string(), v, n.span.start.line));
                }
            }
            "pgp" | "kms" | "gcp_kms" | "azure_keyvault" | "hc_vault_transit_uri" | "hckms" => {
                let empty = match &n.value {
                    NodeValue::Null => true,
                    NodeValue::Str(s) => s.trim().is_empty(),
                    NodeValue::Seq(items) => items.is_empty(),
                    _ => false,
                };
                if !empty {
                    rule.unsupported.push(format!("{field} keys"));
                }
            }
            // Settings that do not change what kforge writes.
            "aws_profile" | "shamir_threshold" => {}
            other => problems.push(Problem::new(
                format!("{at}.{other}"),
                Some(e.key_span.start.line),
                "is not a creation rule field sops knows",
            )),
        }
    }
    if let Some(groups) = key_groups {
        // With key_groups, sops ignores the flat key lists.
        rule.age.clear();
        match &groups.value {
            NodeValue::Seq(list) if list.len() == 1 => {
                if let NodeValue::Map(group) = &list[0].value {
                    for g in group {
                        match g.key.as_str() {
                            "age" => {
                                rule.age =
                                    key_list(&g.value, &format!("{at}.key_groups[0].age"), problems)
                            }
                            other => rule.unsupported.push(format!("{other} keys in key_groups")),
                        }
                    }
                }
            }
            NodeValue::Seq(list) if list.is_empty() => {}
            NodeValue::Seq(_) => rule
                .unsupported
                .push("several key groups (Shamir)".to_string()),
            _ => problems.push(Problem::new(
                format!("{at}.key_groups"),
                Some(groups.span.start.line),
                "must be a list",
            )),
        }
    }
    if partial_rules.len() > 1 {
        let names: Vec<&str> = partial_rules.iter().map(|r| r.0.as_str()).collect();
        problems.push(Problem::new(
            &at,
            Some(partial_rules[1].2),
            format!(
                "sets {}; only one partial-encryption rule is allowed per rule",
                names.join(" and ")
            ),
        ));
    } else if let Some((key, value, l)) = partial_rules.pop() {
        match PartialEncryption::from_key(&key, value) {
            Some(p) => match p.matcher() {
                Ok(_) => rule.partial = Some(p),
                Err(m) => problems.push(Problem::new(format!("{at}.{key}"), Some(l), m)),
            },
            None => rule
                .unsupported
                .push(format!("{key} (comment-based rules)")),
        }
    }
    (problems.len() == before).then_some(rule)
}

/// `age` as a YAML list or a comma-separated string (sops accepts both).
fn key_list(n: &YamlNode, at: &str, problems: &mut Vec<Problem>) -> Vec<String> {
    match &n.value {
        NodeValue::Null => Vec::new(),
        NodeValue::Str(s) => s
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect(),
        NodeValue::Seq(items) => items
            .iter()
            .filter_map(|i| match &i.value {
                NodeValue::Str(s) => Some(s.trim().to_string()),
                _ => {
                    problems.push(Problem::new(
                        at,
                        Some(i.span.start.line),
                        "list entries must be strings",
                    ));
                    None
                }
            })
            .collect(),
        _ => {
            problems.push(Problem::new(
                at,
                Some(n.span.start.line),
                "must be a string or a list of strings",
            ));
            Vec::new()
        }
    }
}

/// A creation rule to add to a `.sops.yaml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCreationRule {
    pub path_regex: String,
    pub age: Vec<String>,
    pub partial: Option<PartialEncryption>,
    pub mac_only_encrypted: bool,
}

/// The result of [`add_creation_rules`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesUpdate {
    /// The new `.sops.yaml` text.
    pub text: String,
    /// `path_regex` of each rule added.
    pub added: Vec<String>,
    /// `path_regex` of each rule skipped because a rule with an equal `path_regex` exists.
    pub already_present: Vec<String>,
}

/// Adds creation rules to a `.sops.yaml` text (empty for a new file) without touching the
/// existing text: rules whose `path_regex` already exists are skipped; new rules go before
/// the first catch-all rule (a rule without `path_regex`, which would otherwise shadow
/// them), else at the end of `creation_rules`.
pub fn add_creation_rules(
    existing: &str,
    new_rules: &[NewCreationRule],
) -> Result<RulesUpdate, SopsError> {
    let edit_err = |reason: String| SopsError::ConfigEdit {
        file: CONFIG_FILE_NAME.to_string(),
        reason,
    };
    let current = CreationRules::parse(existing)?;
    let mut added = Vec::new();
    let mut already_present = Vec::new();
    let mut to_add = Vec::new();
    for r in new_rules {
        if r.path_regex.is_empty() {
            return Err(edit_err(
                "a new rule needs a non-empty path_regex".to_string(),
            ));
        }
        if let Err(e) = Regex::new(&r.path_regex) {
            return Err(edit_err(format!(
                "path_regex `{}` is not a valid regex: {}",
                r.path_regex,
                crate::rules::regex_error_summary(&e)
            )));
        }
        let exists = current
            .rules
            .iter()
            .any(|c| c.path_regex.as_deref() == Some(r.path_regex.as_str()))
            || to_add
                .iter()
                .any(|a: &&NewCreationRule| a.path_regex == r.path_regex);
        if exists {
            already_present.push(r.path_regex.clone());
        } else {
            added.push(r.path_regex.clone());
            to_add.push(r);
        }
    }
    if to_add.is_empty() {
        return Ok(RulesUpdate {
            text: existing.to_string(),
            added,
            already_present,
        });
    }

    let doc = kforge_yaml::parse(existing).map_err(|e| edit_err(e.to_string()))?;
    let rules_entry = doc.entry("creation_rules");
    let lines: Vec<&str> = existing.split_inclusive('\n').collect();
    let text = match rules_entry.map(|e| (&e.value.value, e)) {
        // No rules yet: append a `creation_rules:` block.
        None | Some((NodeValue::Null, _)) => {
            let mut out = match rules_entry {
                // Replace an empty `creation_rules:` line.
                Some(e) => {
                    let line = e.key_span.start.line;
                    let mut out: String = lines[..line - 1].concat();
                    out.push_str("creation_rules:\n");
                    out.push_str(&render_rules(&to_add, 4, 2));
                    out.push_str(&lines[line..].concat());
                    return Ok(RulesUpdate {
                        text: out,
                        added,
                        already_present,
                    });
                }
                None => existing.to_string(),
            };
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("creation_rules:\n");
            out.push_str(&render_rules(&to_add, 4, 2));
            out
        }
        Some((NodeValue::Seq(items), entry)) if items.is_empty() => {
            // `creation_rules: []` on its own line → a block list in its place.
            let line = entry.key_span.start.line;
            if entry.key_span.start.col != 1 || entry.value.span.start.line != line {
                return Err(edit_err(
                    "`creation_rules` is written in an unusual way; add the rules by hand"
                        .to_string(),
                ));
            }
            let mut out: String = lines[..line - 1].concat();
            out.push_str("creation_rules:\n");
            out.push_str(&render_rules(&to_add, 4, 2));
            out.push_str(&lines[line..].concat());
            out
        }
        Some((NodeValue::Seq(items), _)) => {
            let dash_col = dash_column(&lines, &items[0]).ok_or_else(|| {
                edit_err("`creation_rules` is a flow list (`[...]`); rewrite it as a block list to add rules".to_string())
            })?;
            let dash_indent = dash_col - 1;
            let item_indent = items[0].span.start.col - 1;
            // Before the first catch-all rule (and the comments just above it), else after
            // the last line of the last rule.
            let catch_all = current.rules.iter().position(|r| r.path_regex.is_none());
            let insert_at = match catch_all {
                Some(i) => {
                    let mut at = items[i].span.start.line - 1;
                    while at > 0
                        && is_comment_or_blank(lines[at - 1])
                        && indent_of(lines[at - 1]) >= dash_indent
                    {
                        at -= 1;
                    }
                    at
                }
                None => item_end_line(&lines, items[items.len() - 1].span.start.line, dash_indent),
            };
            let mut out: String = lines[..insert_at].concat();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&render_rules(&to_add, item_indent, dash_indent));
            out.push_str(&lines[insert_at..].concat());
            out
        }
        Some(_) => return Err(edit_err("`creation_rules` is not a list".to_string())),
    };
    // The result must still be a valid config with the new rules in it.
    let check = CreationRules::parse(&text)?;
    for r in &to_add {
        if !check
            .rules
            .iter()
            .any(|c| c.path_regex.as_deref() == Some(r.path_regex.as_str()))
        {
            return Err(edit_err(format!(
                "could not place the rule for `{}`",
                r.path_regex
            )));
        }
    }
    Ok(RulesUpdate {
        text,
        added,
        already_present,
    })
}

/// The column of the `-` introducing a block sequence item, if the item is in a block list.
fn dash_column(lines: &[&str], item: &YamlNode) -> Option<usize> {
    let line = lines.get(item.span.start.line - 1)?;
    let before: String = line.chars().take(item.span.start.col - 1).collect();
    let trimmed = before.trim_end();
    trimmed.ends_with('-').then(|| trimmed.chars().count())
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_comment_or_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// The last content line (1-based) of the block-list item starting on `start_line`: the
/// item goes on while lines are indented deeper than its `-` (blank and comment lines in
/// between included, trailing ones not).
fn item_end_line(lines: &[&str], start_line: usize, dash_indent: usize) -> usize {
    let mut last = start_line;
    for (i, line) in lines.iter().enumerate().skip(start_line) {
        if is_comment_or_blank(line) {
            continue;
        }
        if indent_of(line) <= dash_indent {
            break;
        }
        last = i + 1;
    }
    last
}

/// Rules as block-list items: `- ` at `dash_indent`, fields at `item_indent`.
fn render_rules(rules: &[&NewCreationRule], item_indent: usize, dash_indent: usize) -> String {
    let mut out = String::new();
    for r in rules {
        let mut fields = serde_json::Map::new();
        fields.insert(
            "path_regex".to_string(),
            serde_json::Value::String(r.path_regex.clone()),
        );
        if let Some(p) = &r.partial {
            fields.insert(
                p.key().to_string(),
                serde_json::Value::String(p.value().to_string()),
            );
        }
        if r.mac_only_encrypted {
            fields.insert(
                "mac_only_encrypted".to_string(),
                serde_json::Value::Bool(true),
            );
        }
        fields.insert(
            "age".to_string(),
            serde_json::Value::String(r.age.join(",")),
        );
        let body = kforge_yaml::to_string(&serde_json::Value::Object(fields));
        for (i, line) in body.lines().enumerate() {
            let item_indent = item_indent.max(dash_indent + 2);
            if i == 0 {
                out.push_str(&" ".repeat(dash_indent));
                out.push('-');
                out.push_str(&" ".repeat(item_indent - dash_indent - 1));
            } else {
                out.push_str(&" ".repeat(item_indent));
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "age1se5ghfycr4n8kcwc3qwf234ymvmr2lex2a99wh8gpfx97glwt9hqch4569";

    #[test]
    fn finds_config_walking_up() {
        let found = find_config(Path::new("/r/a/b/c"), &|p| {
            p == Path::new("/r/a/.sops.yaml")
        });
        assert_eq!(found, Some(PathBuf::from("/r/a/.sops.yaml")));
        assert_eq!(find_config(Path::new("/r/a"), &|_| false), None);
        let found = find_config(Path::new("x"), &|p| p == Path::new("x/../../.sops.yaml"));
        assert_eq!(found, Some(PathBuf::from("x/../../.sops.yaml")));
        let calls = std::cell::Cell::new(0);
        let none = find_config(Path::new("rel"), &|_| {
            calls.set(calls.get() + 1);
            false
        });
        assert_eq!(none, None);
        assert_eq!(calls.get(), 100);
    }

    #[test]
    fn parses_rules_like_sops() {
        let text = format!(
            "creation_rules:\n  - path_regex: secrets/.*\\.ya?ml$\n    encrypted_regex: ^(token|password)$\n    age: >-\n      {A},\n      {A}\n  - path_regex: list\\.yaml$\n    mac_only_encrypted: true\n    age: [{A}]\n  - age: {A}\n"
        );
        let rules = CreationRules::parse(&text).unwrap();
        assert_eq!(rules.rules.len(), 3);
        let r = rules.rule_for("clusters/secrets/x.yaml").unwrap();
        assert_eq!(r.age, vec![A.to_string(), A.to_string()]);
        assert_eq!(
            r.partial,
            Some(PartialEncryption::EncryptedRegex(
                "^(token|password)$".into()
            ))
        );
        let r = rules.rule_for("a/list.yaml").unwrap();
        assert!(r.mac_only_encrypted);
        assert_eq!(r.line, 7);
        let r = rules.rule_for("talenv.yaml").unwrap();
        assert_eq!(r.path_regex, None);
        let cfg = r.encrypt_config(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(cfg.rule, PartialEncryption::default());
        assert!(CreationRules::parse("").unwrap().rules.is_empty());
    }

    #[test]
    fn reports_every_problem() {
        let text = "creation_rules:\n  - path_regex: (\n    age: x\n  - encrypted_regex: a\n    unencrypted_suffix: b\n  - kms: arn:x\n    age: 5\n";
        let err = CreationRules::parse(text).unwrap_err().to_string();
        assert!(
            err.contains("creation_rules[0].path_regex (line 2)"),
            "{err}"
        );
        assert!(err.contains("only one partial-encryption rule"), "{err}");
        assert!(err.contains("creation_rules[2].age (line 7)"), "{err}");
        let rules = CreationRules::parse("creation_rules:\n  - kms: arn:x\n    age: a\n").unwrap();
        assert!(matches!(
            rules.rules[0].encrypt_config(SystemTime::UNIX_EPOCH),
            Err(SopsError::Unsupported { .. })
        ));
    }

    fn new_rule(re: &str) -> NewCreationRule {
        NewCreationRule {
            path_regex: re.to_string(),
            age: vec![A.to_string()],
            partial: Some(PartialEncryption::EncryptedRegex(
                "^(data|stringData)$".into(),
            )),
            mac_only_encrypted: false,
        }
    }

    #[test]
    fn adds_rules_to_a_new_file() {
        let up = add_creation_rules("", &[new_rule(r"talsecret\.ya?ml$")]).unwrap();
        assert_eq!(
            up.text,
            format!(
                "creation_rules:\n  - path_regex: talsecret\\.ya?ml$\n    encrypted_regex: ^(data|stringData)$\n    age: {A}\n"
            )
        );
        let rules = CreationRules::parse(&up.text).unwrap();
        assert!(rules.rule_for("talsecret.yaml").is_some());
        assert_eq!(up.added, vec![r"talsecret\.ya?ml$".to_string()]);
    }

    #[test]
    fn adds_rules_without_clobbering() {
        let existing = format!(
            "# my config\ncreation_rules:\n  # secrets first\n  - path_regex: secrets/.*\n    age: {A} # mine\n  - age: {A}\nstores:\n  yaml:\n    indent: 4\n"
        );
        let up =
            add_creation_rules(&existing, &[new_rule("talenv"), new_rule("secrets/.*")]).unwrap();
        assert_eq!(up.already_present, vec!["secrets/.*".to_string()]);
        assert!(up.text.starts_with("# my config\ncreation_rules:\n  # secrets first\n  - path_regex: secrets/.*\n    age:"), "{}", up.text);
        assert!(up.text.contains("# mine"));
        assert!(
            up.text.ends_with("stores:\n  yaml:\n    indent: 4\n"),
            "{}",
            up.text
        );
        let rules = CreationRules::parse(&up.text).unwrap();
        let order: Vec<Option<&str>> = rules
            .rules
            .iter()
            .map(|r| r.path_regex.as_deref())
            .collect();
        assert_eq!(order, vec![Some("secrets/.*"), Some("talenv"), None]);
        // Idempotent.
        let again = add_creation_rules(&up.text, &[new_rule("talenv")]).unwrap();
        assert_eq!(again.text, up.text);
        assert!(again.added.is_empty());

        let flow = add_creation_rules("creation_rules: []\n", &[new_rule("x")]).unwrap();
        assert_eq!(CreationRules::parse(&flow.text).unwrap().rules.len(), 1);
        let appended = add_creation_rules("stores: {}\n", &[new_rule("x")]).unwrap();
        assert!(appended.text.starts_with("stores: {}\ncreation_rules:\n"));
        assert!(
            add_creation_rules(
                &format!("creation_rules: [{{age: {A}}}]\n"),
                &[new_rule("x")]
            )
            .is_err()
        );
    }
}
