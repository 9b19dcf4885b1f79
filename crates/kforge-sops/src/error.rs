//! Everything that can go wrong reading, encrypting or decrypting a sops file. No variant
//! ever carries a plaintext value: problems name the key path, the line and what is wrong.

use std::fmt;

use crate::format::Format;

#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    #[error("{format} syntax error at line {line}, column {column}: {message}")]
    Syntax {
        format: Format,
        line: usize,
        column: usize,
        message: String,
    },

    #[error(
        "{format} document {document} (line {line}) is {found}; sops files need a mapping at the top level"
    )]
    NotAMapping {
        format: Format,
        document: usize,
        line: usize,
        found: &'static str,
    },

    #[error(
        "the input already has a top-level `sops` key (document {document}, line {line}): it is encrypted already, or uses the key sops reserves for its metadata"
    )]
    AlreadyEncrypted { document: usize, line: usize },

    #[error("cannot encrypt this input:{}", Bullets(problems))]
    Input { problems: Vec<Problem> },

    #[error(
        "no sops metadata: this {format} input has no top-level `{key}` section, so it is not a sops-encrypted file"
    )]
    NoMetadata { format: Format, key: &'static str },

    #[error("the sops metadata is invalid:{}", Bullets(problems))]
    Metadata { problems: Vec<Problem> },

    #[error("{what} is not supported (kforge handles age recipients in one key group); {hint}")]
    Unsupported { what: String, hint: String },

    #[error("no age recipients to encrypt for; give at least one `age1…` public key")]
    NoRecipients,

    #[error("invalid age recipients:{}", Bullets(problems))]
    InvalidRecipients { problems: Vec<Problem> },

    #[error("could not encrypt the data key for age recipient {recipient}")]
    WrapDataKey {
        recipient: String,
        #[source]
        source: Box<age::EncryptError>,
    },

    #[error(
        "no available age identity can decrypt this file. It is encrypted for: {}. Identities available: {}. Looked for identities in: {}.{}{}",
        list_or_none(recipients),
        list_or_none(available),
        list_or_none(searched),
        if problems.is_empty() { String::new() } else { format!(" Problems while loading identities: {}.", problems.join("; ")) },
        " Hint: put the matching AGE-SECRET-KEY into SOPS_AGE_KEY_FILE, SOPS_AGE_KEY or ~/.config/sops/age/keys.txt."
    )]
    NoMatchingIdentity {
        recipients: Vec<String>,
        available: Vec<String>,
        searched: Vec<String>,
        problems: Vec<String>,
    },

    #[error("the data key stored for age recipient {recipient} cannot be decrypted: {problem}")]
    DataKey { recipient: String, problem: String },

    #[error("{} value(s) cannot be decrypted:{}", problems.len(), Bullets(problems))]
    Values { problems: Vec<Problem> },

    #[error(
        "MAC mismatch: the file's values do not match the MAC computed when it was encrypted; a value (or the order of values) was changed, added or removed after encryption"
    )]
    MacMismatch,

    #[error(
        "the MAC cannot be authenticated: `sops.mac` or `sops.lastmodified` ({lastmodified}) was changed after encryption"
    )]
    MacUnreadable { lastmodified: String },

    #[error("cannot write the value at {path} as {format}: {reason}")]
    Emit {
        format: Format,
        path: String,
        reason: String,
    },

    #[error("invalid age identities in {source_name}:{}", Bullets(problems))]
    Identities {
        source_name: String,
        problems: Vec<Problem>,
    },

    #[error("{file} is invalid:{}", Bullets(problems))]
    Config {
        file: String,
        problems: Vec<Problem>,
    },

    #[error("cannot add creation rules to {file}: {reason}")]
    ConfigEdit { file: String, reason: String },

    #[error("could not generate random bytes for {purpose}")]
    Random {
        purpose: &'static str,
        #[source]
        source: rand::Error,
    },
}

/// One problem at one place of an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where: a key path like `db.password` or `list[2].token`, a field, or a source name.
    pub at: String,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong and, where there is one, a hint. Never a plaintext value.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(
        at: impl Into<String>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Problem {
        Problem {
            at: at.into(),
            line: line.filter(|&l| l > 0),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line}): {}", self.at, self.message),
            None => write!(f, "{}: {}", self.at, self.message),
        }
    }
}

struct Bullets<'a>(&'a [Problem]);

impl fmt::Display for Bullets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}
