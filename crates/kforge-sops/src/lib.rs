//! A native implementation of SOPS for age recipients in one key group, byte-compatible
//! with the `sops` CLI: kforge reads what sops wrote and sops reads what kforge wrote, for
//! YAML (multi-document), JSON and dotenv files.
//!
//! - [`encrypt`] / [`decrypt`] work on file text; [`is_sops_file`] tells whether a text
//!   carries sops metadata, so callers can pass plain files through and insist that sops
//!   files decrypt (never falling back to their raw text).
//! - [`Identities`] finds age identities the way sops does; [`EncryptConfig`] says whom to
//!   encrypt for and which values ([`PartialEncryption`]).
//! - [`config`] reads `.sops.yaml` creation rules and adds rules to one.
//!
//! Format details reproduced from sops 3.11: AES-256-GCM per value with a 32-byte IV and
//! the key path as additional data; a SHA-512 MAC over the plaintext values in document
//! order (encrypted with `lastmodified` as additional data); the data key wrapped to each
//! recipient as an armored age file; `version` always written. Comments in YAML are not
//! kept (they are outside the MAC); dotenv comments are.

mod age_keys;
pub mod config;
mod error;
mod format;
mod go_text;
mod metadata;
mod rules;
mod stores;
mod tree;
mod value_cipher;
mod walk;

use std::time::SystemTime;

use kforge_secret::{Secret, SecretString};
use rand::rngs::{OsRng, StdRng};
use rand::{RngCore, SeedableRng};

pub use age_keys::{DEFAULT_KEYS_PATH, Identities, SOPS_AGE_KEY, SOPS_AGE_KEY_FILE};
pub use error::{Problem, SopsError};
pub use format::Format;
pub use metadata::SOPS_VERSION;
pub use rules::{DEFAULT_UNENCRYPTED_SUFFIX, PartialEncryption};

use crate::go_text::GoTime;
use crate::metadata::{AgeEntry, Metadata};
use crate::stores::Loaded;
use crate::value_cipher::ValueCipher;

/// Whom to encrypt for and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptConfig {
    /// age X25519 public keys (`age1…`); each gets its own copy of the data key.
    pub recipients: Vec<String>,
    /// Which values are encrypted; the default leaves keys ending in `_unencrypted` plain.
    pub rule: PartialEncryption,
    /// Whether the MAC covers only the encrypted values (so plaintext values may be edited).
    pub mac_only_encrypted: bool,
    /// Written as `sops.lastmodified` (UTC, whole seconds); it is also the MAC's additional data.
    pub lastmodified: SystemTime,
}

impl EncryptConfig {
    /// Encrypt every value for `recipients` (sops' defaults).
    pub fn new(recipients: Vec<String>, lastmodified: SystemTime) -> EncryptConfig {
        EncryptConfig {
            recipients,
            rule: PartialEncryption::default(),
            mac_only_encrypted: false,
            lastmodified,
        }
    }
}

/// Encrypts a plaintext file the way `sops encrypt` does, with a fresh data key and IVs.
pub fn encrypt(
    plaintext: &str,
    format: Format,
    config: &EncryptConfig,
) -> Result<String, SopsError> {
    let matcher = config.rule.matcher().map_err(|problem| SopsError::Config {
        file: "the partial-encryption rule".to_string(),
        problems: vec![Problem::new(config.rule.key(), None, problem)],
    })?;
    let recipients = age_keys::parse_recipients(&config.recipients)?;
    let Loaded {
        mut documents,
        metadata_at,
        ..
    } = stores::load(plaintext, format)?;
    if let Some((document, line)) = metadata_at {
        return Err(SopsError::AlreadyEncrypted { document, line });
    }
    if documents.0.is_empty() {
        return Err(SopsError::Input {
            problems: vec![Problem::new(
                "input",
                None,
                "has no YAML document; sops cannot encrypt an empty file",
            )],
        });
    }

    let mut data_key = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut data_key)
        .map_err(|source| SopsError::Random {
            purpose: "the data key",
            source,
        })?;
    let data_key = Secret::new(data_key);
    let mut rng = StdRng::from_rng(OsRng).map_err(|source| SopsError::Random {
        purpose: "the IVs",
        source,
    })?;
    let cipher = ValueCipher::new(data_key.expose());

    let mac = walk::encrypt_documents(
        &mut documents,
        &matcher,
        config.mac_only_encrypted,
        &cipher,
        &mut rng,
    )?;
    let lastmodified = GoTime::from_system_time(config.lastmodified);
    let mac =
        walk::seal_mac(&cipher, &mac, &lastmodified.rfc3339(), &mut rng).ok_or_else(|| {
            SopsError::Input {
                problems: vec![Problem::new("sops.mac", None, "could not be encrypted")],
            }
        })?;
    let age = recipients
        .iter()
        .map(|(recipient, parsed)| {
            Ok(AgeEntry {
                recipient: recipient.clone(),
                enc: age_keys::wrap_data_key(recipient, parsed, &data_key)?,
            })
        })
        .collect::<Result<Vec<_>, SopsError>>()?;
    let metadata = Metadata {
        age,
        lastmodified,
        mac,
        rule: config.rule.clone(),
        mac_only_encrypted: config.mac_only_encrypted,
        version: SOPS_VERSION.to_string(),
    };
    stores::emit(&mut documents, format, Some(&metadata))
}

/// Decrypts a sops file and verifies its MAC; the plaintext is laid out as `sops decrypt`
/// writes it. Fails if no identity fits, a value was tampered with, or the MAC differs.
pub fn decrypt(
    ciphertext: &str,
    format: Format,
    identities: &Identities,
) -> Result<SecretString, SopsError> {
    let mut loaded = stores::load(ciphertext, format)?;
    let metadata = read_metadata(&loaded, format)?;
    let matcher = metadata
        .rule
        .matcher()
        .map_err(|problem| SopsError::Metadata {
            problems: vec![Problem::new(
                format!("sops.{}", metadata.rule.key()),
                None,
                problem,
            )],
        })?;
    let data_key = age_keys::unwrap_data_key(&metadata.age, identities)?;
    let cipher = ValueCipher::new(data_key.expose());
    let computed = walk::decrypt_documents(
        &mut loaded.documents,
        &matcher,
        metadata.mac_only_encrypted,
        &cipher,
    )?;
    walk::verify_mac(
        &cipher,
        &metadata.mac,
        &metadata.lastmodified.rfc3339(),
        &computed,
    )?;
    Ok(SecretString::new(stores::emit(
        &mut loaded.documents,
        format,
        None,
    )?))
}

/// Whether `text` carries sops metadata (a non-empty top-level `sops` section; `sops_*`
/// lines in dotenv). Text that does not parse counts as a sops file when it contains an
/// encrypted value, so that a damaged sops file is reported rather than used as plaintext.
pub fn is_sops_file(text: &str, format: Format) -> bool {
    let damaged_guess = || text.contains("ENC[AES256_GCM,");
    match format {
        Format::Dotenv => stores::dotenv::has_metadata(text),
        Format::Json => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => map.get("sops").is_some_and(|v| match v {
                serde_json::Value::Null => false,
                serde_json::Value::Object(m) => !m.is_empty(),
                _ => true,
            }),
            Ok(_) => false,
            Err(_) => damaged_guess(),
        },
        Format::Yaml => match kforge_yaml::parse_all_keeping_merge_keys(text) {
            Ok(docs) => docs.iter().any(|d| {
                d.get("sops").is_some_and(|v| match &v.value {
                    kforge_yaml::NodeValue::Null => false,
                    kforge_yaml::NodeValue::Map(entries) => !entries.is_empty(),
                    _ => true,
                })
            }),
            Err(_) => damaged_guess(),
        },
    }
}

/// What a sops file's metadata says, read without decrypting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SopsFileInfo {
    /// The age recipients the data key is encrypted for.
    pub recipients: Vec<String>,
    /// `sops.lastmodified` (`None` if it lies before 1970).
    pub lastmodified: Option<SystemTime>,
    /// `sops.version`.
    pub version: String,
    pub rule: PartialEncryption,
    pub mac_only_encrypted: bool,
}

/// Reads a sops file's metadata (recipients, rule, …) without decrypting it.
pub fn file_info(text: &str, format: Format) -> Result<SopsFileInfo, SopsError> {
    let loaded = stores::load(text, format)?;
    let m = read_metadata(&loaded, format)?;
    Ok(SopsFileInfo {
        recipients: m.age.into_iter().map(|e| e.recipient).collect(),
        lastmodified: m.lastmodified.to_system_time(),
        version: m.version,
        rule: m.rule,
        mac_only_encrypted: m.mac_only_encrypted,
    })
}

fn read_metadata(loaded: &Loaded, format: Format) -> Result<Metadata, SopsError> {
    match (format, &loaded.metadata_node, &loaded.metadata_flat) {
        (Format::Dotenv, _, Some(flat)) => metadata::from_flat(flat),
        (Format::Dotenv, _, None) => Err(SopsError::NoMetadata {
            format,
            key: "sops_*",
        }),
        (_, Some(node), _) => metadata::from_node(node),
        (_, None, _) => Err(SopsError::NoMetadata {
            format,
            key: "sops",
        }),
    }
}
