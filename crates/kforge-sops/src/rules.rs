//! Which values get encrypted: sops' partial-encryption rules, evaluated against every key on
//! the path from the document root to a value (so a rule on a key covers its whole subtree).

use regex::Regex;

/// The default `unencrypted_suffix` sops applies when no rule is set.
pub const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

/// One partial-encryption rule; a file has exactly one (sops refuses several).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartialEncryption {
    /// Values under a key ending with this suffix stay plaintext (default `_unencrypted`).
    UnencryptedSuffix(String),
    /// Only values under a key ending with this suffix are encrypted.
    EncryptedSuffix(String),
    /// Values under a key matching this (unanchored, RE2-style) regex stay plaintext.
    UnencryptedRegex(String),
    /// Only values under a key matching this (unanchored, RE2-style) regex are encrypted.
    EncryptedRegex(String),
}

impl Default for PartialEncryption {
    fn default() -> Self {
        PartialEncryption::UnencryptedSuffix(DEFAULT_UNENCRYPTED_SUFFIX.to_string())
    }
}

impl PartialEncryption {
    /// The metadata (and `.sops.yaml`) key of this rule.
    pub fn key(&self) -> &'static str {
        match self {
            PartialEncryption::UnencryptedSuffix(_) => "unencrypted_suffix",
            PartialEncryption::EncryptedSuffix(_) => "encrypted_suffix",
            PartialEncryption::UnencryptedRegex(_) => "unencrypted_regex",
            PartialEncryption::EncryptedRegex(_) => "encrypted_regex",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            PartialEncryption::UnencryptedSuffix(v)
            | PartialEncryption::EncryptedSuffix(v)
            | PartialEncryption::UnencryptedRegex(v)
            | PartialEncryption::EncryptedRegex(v) => v,
        }
    }

    /// The rule named by a metadata key, or `None` for other keys.
    pub fn from_key(key: &str, value: String) -> Option<PartialEncryption> {
        Some(match key {
            "unencrypted_suffix" => PartialEncryption::UnencryptedSuffix(value),
            "encrypted_suffix" => PartialEncryption::EncryptedSuffix(value),
            "unencrypted_regex" => PartialEncryption::UnencryptedRegex(value),
            "encrypted_regex" => PartialEncryption::EncryptedRegex(value),
            _ => return None,
        })
    }

    pub(crate) fn matcher(&self) -> Result<KeyMatcher, String> {
        let (test, encrypt_on_match) = match self {
            PartialEncryption::UnencryptedSuffix(s) => (KeyTest::Suffix(non_empty(s)?), false),
            PartialEncryption::EncryptedSuffix(s) => (KeyTest::Suffix(non_empty(s)?), true),
            PartialEncryption::UnencryptedRegex(r) => (KeyTest::Regex(compile(r)?), false),
            PartialEncryption::EncryptedRegex(r) => (KeyTest::Regex(compile(r)?), true),
        };
        Ok(KeyMatcher {
            test,
            encrypt_on_match,
        })
    }
}

/// The metadata keys of the six sops rules; the two comment-based ones are not supported.
pub(crate) const RULE_KEYS: [&str; 4] = [
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
];
pub(crate) const COMMENT_RULE_KEYS: [&str; 2] =
    ["unencrypted_comment_regex", "encrypted_comment_regex"];

fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("the suffix is empty".to_string())
    } else {
        Ok(s.to_string())
    }
}

fn compile(r: &str) -> Result<Regex, String> {
    Regex::new(r).map_err(|e| format!("`{r}` is not a valid regex: {}", regex_error_summary(&e)))
}

/// The regex crate's syntax errors span several lines (pattern, caret, message); keep the message.
pub(crate) fn regex_error_summary(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(s) => s
            .lines()
            .last()
            .unwrap_or(s)
            .trim()
            .trim_start_matches("error: ")
            .to_string(),
        other => other.to_string(),
    }
}

enum KeyTest {
    Suffix(String),
    Regex(Regex),
}

/// A compiled rule.
pub(crate) struct KeyMatcher {
    test: KeyTest,
    encrypt_on_match: bool,
}

impl KeyMatcher {
    /// Whether `key` triggers the rule.
    pub fn matches(&self, key: &str) -> bool {
        match &self.test {
            KeyTest::Suffix(s) => key.ends_with(s.as_str()),
            KeyTest::Regex(r) => r.is_match(key),
        }
    }

    /// Whether a value is encrypted, given whether any key on its path triggered the rule.
    pub fn encrypted(&self, any_key_matched: bool) -> bool {
        any_key_matched == self.encrypt_on_match
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_decide_like_sops() {
        let m = PartialEncryption::default().matcher().unwrap();
        assert!(m.matches("pw_unencrypted"));
        assert!(!m.encrypted(true));
        assert!(m.encrypted(false));
        let m = PartialEncryption::EncryptedRegex("^(data|pw)$".into())
            .matcher()
            .unwrap();
        assert!(m.matches("pw") && !m.matches("pwx"));
        assert!(m.encrypted(true) && !m.encrypted(false));
        let m = PartialEncryption::UnencryptedRegex("pub".into())
            .matcher()
            .unwrap();
        assert!(m.matches("xpubx"), "unanchored like Go regexp.Match");
        assert!(
            PartialEncryption::EncryptedRegex("(".into())
                .matcher()
                .is_err()
        );
        assert!(
            PartialEncryption::EncryptedSuffix(String::new())
                .matcher()
                .is_err()
        );
    }
}
