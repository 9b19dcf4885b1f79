//! Errors of this crate. None of them carries secret material: problems name the YAML path
//! and what is wrong, never the value.

use std::fmt;

use kforge_yaml::Pos;

/// A failure to generate or issue key material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("the operating system's random number generator failed while {operation}")]
    Random { operation: &'static str },

    #[error("cannot generate {what}: {detail}")]
    KeyGeneration { what: &'static str, detail: String },

    #[error("{what} was rejected by the signing library: {detail}")]
    KeyRejected { what: &'static str, detail: String },

    #[error("cannot DER-encode {what}")]
    Encoding {
        what: &'static str,
        #[source]
        source: x509_cert::der::Error,
    },

    /// A bundle field that cannot serve the requested operation (for example a CA whose
    /// subject name cannot be reproduced byte for byte as an issuer name).
    #[error("{field} of the secrets bundle cannot be used to {operation}: {problem}")]
    BundleField {
        field: String,
        operation: &'static str,
        problem: String,
    },

    #[error(
        "`{value}` is neither an IP address nor a DNS name, so it cannot be a subject alternative name of the {what}"
    )]
    InvalidHost { value: String, what: &'static str },

    #[error("invalid Talos roles for the client certificate: {detail} (hint: use [\"os:admin\"])")]
    InvalidRoles { detail: String },

    #[error("invalid validity for the {what}: {detail}")]
    Validity { what: &'static str, detail: String },

    #[error("invalid {what}: {detail}")]
    InvalidInput { what: &'static str, detail: String },
}

impl PkiError {
    pub(crate) fn encoding(what: &'static str, source: x509_cert::der::Error) -> Self {
        PkiError::Encoding { what, source }
    }
}

/// What is wrong with one field of a secrets bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleProblemKind {
    /// A required field is absent, null or empty.
    Missing,
    /// A key that the bundle format does not have (talosctl would not write it).
    UnknownKey,
    /// A mapping where a string belongs, or the reverse.
    WrongType,
    /// Not valid base64.
    BadBase64,
    /// Base64 that does not hold a PEM block of the expected kind.
    BadPem,
    /// A certificate PEM whose DER cannot be parsed, or that is not a CA.
    BadCertificate,
    /// A key PEM whose content cannot be decoded or is rejected.
    BadKey,
    /// A key PEM of a type this slot cannot hold (label/content disagree, unknown label,
    /// unsupported algorithm or curve).
    WrongKeyType,
    /// The key is not the private half of the certificate next to it.
    KeyMismatch,
    /// A token that is not `[a-z0-9]{6}.[a-z0-9]{16}`.
    BadToken,
    /// A base64 secret of the wrong length.
    BadLength,
    /// Fields that exclude each other are both set.
    Conflict,
}

/// One problem in a secrets bundle, located by its YAML path and source position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleProblem {
    /// Dotted YAML path, e.g. `certs.os.key`.
    pub path: String,
    /// Where in the text (line:col), when the field or its parent exists.
    pub pos: Option<Pos>,
    pub kind: BundleProblemKind,
    /// What is wrong and what was expected; never the value itself.
    pub message: String,
}

impl fmt::Display for BundleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(pos) => write!(f, "{} (at {pos}): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Why a secrets bundle could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the secrets bundle is not readable YAML")]
    Yaml(#[source] kforge_yaml::ParseError),

    #[error("{}", problem_list("the secrets bundle", .problems))]
    Invalid { problems: Vec<BundleProblem> },
}

impl BundleError {
    /// Every problem found (empty for a YAML syntax error).
    pub fn problems(&self) -> &[BundleProblem] {
        match self {
            BundleError::Yaml(_) => &[],
            BundleError::Invalid { problems } => problems,
        }
    }
}

/// Why a talosconfig could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TalosconfigError {
    #[error("the talosconfig is not readable YAML")]
    Yaml(#[source] kforge_yaml::ParseError),

    #[error("{}", problem_list("the talosconfig", .problems))]
    Invalid { problems: Vec<BundleProblem> },
}

impl TalosconfigError {
    pub fn problems(&self) -> &[BundleProblem] {
        match self {
            TalosconfigError::Yaml(_) => &[],
            TalosconfigError::Invalid { problems } => problems,
        }
    }
}

fn problem_list(what: &str, problems: &[BundleProblem]) -> String {
    let mut out = format!(
        "{what} has {} problem{}:",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str("\n  - ");
        out.push_str(&p.to_string());
    }
    out
}
