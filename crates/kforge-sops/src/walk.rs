//! The tree walk at the heart of sops: visit every value in document order, decide from the
//! keys on its path whether it is encrypted, encrypt or decrypt it with the key path
//! (`a:b:`, list indices left out) as additional data, and hash the plaintext of every
//! non-null value (only the encrypted ones with `mac_only_encrypted`) into the SHA-512 MAC.

use std::fmt::Write as _;

use rand::RngCore;
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroize;

use crate::error::{Problem, SopsError};
use crate::go_text;
use crate::rules::KeyMatcher;
use crate::tree::{Documents, Item, Node, Value};
use crate::value_cipher::{self, EncProblem, ValueCipher};

/// Appends `key` to a display path (`db.password`).
pub(crate) fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// Appends a list index to a display path (`hosts[2]`).
pub(crate) fn push_index(path: &mut String, i: usize) {
    let _ = write!(path, "[{i}]");
}

/// The running MAC over plaintext values.
struct Mac(Sha512);

impl Mac {
    fn new(mac_only_encrypted: bool) -> Mac {
        let mut h = Sha512::new();
        if mac_only_encrypted {
            // sops' `MACOnlyEncryptedInitialization`: SHA-256 of "sops", so such a MAC never
            // equals the MAC over all values.
            h.update(Sha256::digest(b"sops"));
        }
        Mac(h)
    }

    fn finish(self) -> String {
        hex::encode_upper(self.0.finalize())
    }
}

enum Mode<'r> {
    Encrypt(&'r mut dyn RngCore),
    Decrypt,
}

struct Walker<'a, 'r> {
    mode: Mode<'r>,
    matcher: &'a KeyMatcher,
    mac_only_encrypted: bool,
    cipher: &'a ValueCipher,
    mac: Mac,
    /// The additional data of the current position: each key followed by `:`.
    aad: String,
    /// The current position for messages: `db.hosts[2].password`.
    path: String,
    problems: Vec<Problem>,
}

/// Encrypts every value the rule selects, in place, and returns the MAC (uppercase hex).
pub(crate) fn encrypt_documents(
    docs: &mut Documents,
    matcher: &KeyMatcher,
    mac_only_encrypted: bool,
    cipher: &ValueCipher,
    rng: &mut dyn RngCore,
) -> Result<String, SopsError> {
    let mut w = Walker::new(Mode::Encrypt(rng), matcher, mac_only_encrypted, cipher);
    for doc in &mut docs.0 {
        w.items(doc, false);
    }
    w.finish().map_err(|problems| SopsError::Input { problems })
}

/// Decrypts every value the rule selects, in place, and returns the MAC computed over the
/// plaintext (uppercase hex), to compare with the stored one.
pub(crate) fn decrypt_documents(
    docs: &mut Documents,
    matcher: &KeyMatcher,
    mac_only_encrypted: bool,
    cipher: &ValueCipher,
) -> Result<String, SopsError> {
    let mut w = Walker::new(Mode::Decrypt, matcher, mac_only_encrypted, cipher);
    for doc in &mut docs.0 {
        w.items(doc, false);
    }
    w.finish()
        .map_err(|problems| SopsError::Values { problems })
}

impl<'a, 'r> Walker<'a, 'r> {
    fn new(
        mode: Mode<'r>,
        matcher: &'a KeyMatcher,
        mac_only_encrypted: bool,
        cipher: &'a ValueCipher,
    ) -> Self {
        Walker {
            mode,
            matcher,
            mac_only_encrypted,
            cipher,
            mac: Mac::new(mac_only_encrypted),
            aad: String::new(),
            path: String::new(),
            problems: Vec::new(),
        }
    }

    fn finish(self) -> Result<String, Vec<Problem>> {
        if self.problems.is_empty() {
            Ok(self.mac.finish())
        } else {
            Err(self.problems)
        }
    }

    fn items(&mut self, items: &mut [Item], matched: bool) {
        for item in items {
            match item {
                Item::Comment { text, line } => self.comment(text, *line, matched),
                Item::Pair { key, node } => {
                    let (aad_len, path_len) = (self.aad.len(), self.path.len());
                    self.aad.push_str(key);
                    self.aad.push(':');
                    push_key(&mut self.path, key);
                    let matched = matched || self.matcher.matches(key);
                    if self.node(node, matched) {
                        self.problems.push(Problem::new(
                            self.path.clone(),
                            Some(node.line),
                            "holds an encrypted comment where a value belongs",
                        ));
                    }
                    self.aad.truncate(aad_len);
                    self.path.truncate(path_len);
                }
            }
        }
    }

    /// Walks one node; true when it decrypted to a comment, which its list then drops.
    fn node(&mut self, node: &mut Node, matched: bool) -> bool {
        match &mut node.value {
            Value::Map(items) => self.items(items, matched),
            Value::Seq(items) => {
                let mut comments = Vec::new();
                for (i, item) in items.iter_mut().enumerate() {
                    let len = self.path.len();
                    push_index(&mut self.path, i);
                    if self.node(item, matched) {
                        comments.push(i);
                    }
                    self.path.truncate(len);
                }
                // sops writes comments inside lists as list items of type `comment`.
                for i in comments.into_iter().rev() {
                    items.remove(i);
                }
            }
            // Nulls are neither encrypted nor hashed.
            Value::Null => {}
            _ => match self.mode {
                Mode::Encrypt(_) => self.encrypt_leaf(node, matched),
                Mode::Decrypt => return self.decrypt_leaf(node, matched),
            },
        }
        false
    }

    /// Comments (dotenv) are encrypted like values but never hashed; one that does not
    /// decrypt is kept as it is, as sops does for files from versions that left them plain.
    fn comment(&mut self, text: &mut String, line: usize, matched: bool) {
        if !self.matcher.encrypted(matched) || text.is_empty() {
            return;
        }
        let aad = if self.aad.is_empty() {
            ":"
        } else {
            self.aad.as_str()
        };
        match &mut self.mode {
            Mode::Encrypt(rng) => {
                match self
                    .cipher
                    .encrypt(text.as_bytes(), aad.as_bytes(), "comment", &mut **rng)
                {
                    Some(enc) => {
                        text.zeroize();
                        *text = enc;
                    }
                    None => self.problems.push(Problem::new(
                        "comment",
                        Some(line),
                        "is too large to encrypt",
                    )),
                }
            }
            Mode::Decrypt => {
                if let Ok((plain, "comment")) = self.cipher.decrypt(text, aad.as_bytes())
                    && let Ok(s) = String::from_utf8(plain.to_vec())
                {
                    *text = s;
                }
            }
        }
    }

    fn encrypt_leaf(&mut self, node: &mut Node, matched: bool) {
        let encrypted = self.matcher.encrypted(matched);
        let Some(plain) = node.value.plaintext() else {
            return;
        };
        if !self.mac_only_encrypted || encrypted {
            self.mac.0.update(plain.as_bytes());
        }
        if !encrypted || matches!(&node.value, Value::Str(s) if s.is_empty()) {
            return;
        }
        let Some(type_tag) = node.type_tag() else {
            return;
        };
        let Mode::Encrypt(rng) = &mut self.mode else {
            return;
        };
        let enc = self
            .cipher
            .encrypt(plain.as_bytes(), self.aad.as_bytes(), type_tag, &mut **rng);
        drop(plain);
        match enc {
            Some(enc) => {
                node.value.zeroize();
                node.value = Value::Str(enc);
            }
            None => self.problems.push(Problem::new(
                self.path.clone(),
                Some(node.line),
                "is too large to encrypt",
            )),
        }
    }

    /// Decrypts a leaf and hashes it; true when it is an encrypted comment (not hashed).
    fn decrypt_leaf(&mut self, node: &mut Node, matched: bool) -> bool {
        let encrypted = self.matcher.encrypted(matched);
        if encrypted {
            match &node.value {
                Value::Str(s) if s.is_empty() => {}
                Value::Str(s) if value_cipher::is_enc_value(s) => match self.decrypt_value(s) {
                    Ok(Some(v)) => node.value = v,
                    Ok(None) => {
                        node.value.zeroize();
                        node.value = Value::Null;
                        return true;
                    }
                    Err(message) => {
                        self.problems.push(Problem::new(
                            self.path.clone(),
                            Some(node.line),
                            message,
                        ));
                        return false;
                    }
                },
                other => {
                    let kind = other.kind();
                    self.problems.push(Problem::new(
                        self.path.clone(),
                        Some(node.line),
                        format!(
                            "should be encrypted under this file's partial-encryption rule but is {kind} in plain text, not ENC[...]; was it edited after encryption?"
                        ),
                    ));
                    return false;
                }
            }
        } else if self.mac_only_encrypted {
            return false;
        }
        if let Some(plain) = node.value.plaintext() {
            self.mac.0.update(plain.as_bytes());
        }
        false
    }

    /// Decrypts one `ENC[...]` value into its typed plaintext (`None` for a comment).
    /// Errors say what is wrong without the plaintext.
    fn decrypt_value(&self, enc: &str) -> Result<Option<Value>, String> {
        let (plain, type_tag) = self.cipher.decrypt(enc, self.aad.as_bytes()).map_err(|e| match e {
            EncProblem::Malformed(m) => format!("is not a valid sops encrypted value: it {m}"),
            EncProblem::Authentication => "failed authentication: its data, iv or tag was changed, it was moved here from another key, or it belongs to another file".to_string(),
        })?;
        let text = std::str::from_utf8(&plain).map_err(|_| {
            format!(
                "decrypts to bytes that are not UTF-8 text (type `{}`)",
                short(type_tag)
            )
        })?;
        let bad = |what: &str| {
            format!(
                "decrypts to text that is not a valid {what} (type `{}`)",
                short(type_tag)
            )
        };
        Ok(Some(match type_tag {
            "comment" => return Ok(None),
            "str" | "bytes" => Value::Str(text.to_string()),
            "int" | "int64" => Value::Int(go_text::parse_int(text).ok_or_else(|| bad("integer"))?),
            "float" => Value::Float(go_text::parse_float(text).ok_or_else(|| bad("number"))?),
            "bool" => Value::Bool(go_text::parse_bool(text).ok_or_else(|| bad("boolean"))?),
            "time" => Value::Time(
                go_text::parse_rfc3339(text)
                    .ok_or_else(|| bad("RFC 3339 timestamp"))?
                    .rfc3339_nano(),
            ),
            other => return Err(format!("has an unknown type `{}`", short(other))),
        }))
    }
}

/// Type tags come from the file; keep messages short if one is garbage.
fn short(s: &str) -> String {
    s.chars().take(16).collect()
}

/// Decrypts the stored MAC (AAD = `lastmodified` in RFC 3339) and compares it in constant
/// time with the computed one.
pub(crate) fn verify_mac(
    cipher: &ValueCipher,
    stored: &str,
    lastmodified: &str,
    computed: &str,
) -> Result<(), SopsError> {
    let unreadable = || SopsError::MacUnreadable {
        lastmodified: lastmodified.to_string(),
    };
    let (plain, _) = cipher
        .decrypt(stored, lastmodified.as_bytes())
        .map_err(|_| unreadable())?;
    use subtle::ConstantTimeEq;
    let equal =
        plain.len() == computed.len() && bool::from(plain.as_slice().ct_eq(computed.as_bytes()));
    if equal {
        Ok(())
    } else {
        Err(SopsError::MacMismatch)
    }
}

/// Encrypts the MAC for storage.
pub(crate) fn seal_mac(
    cipher: &ValueCipher,
    mac: &str,
    lastmodified: &str,
    rng: &mut dyn RngCore,
) -> Option<String> {
    cipher.encrypt(mac.as_bytes(), lastmodified.as_bytes(), "str", rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_only_encrypted_initialization_matches_sops() {
        // sops.go MACOnlyEncryptedInitialization
        let expected: [u8; 32] = [
            0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47,
            0xbe, 0x0b, 0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81,
            0x76, 0xf2, 0x7d, 0x69,
        ];
        assert_eq!(Sha256::digest(b"sops").as_slice(), &expected);
    }

    #[test]
    fn paths_render_for_messages() {
        let mut p = String::new();
        push_key(&mut p, "db");
        push_index(&mut p, 2);
        push_key(&mut p, "pw");
        assert_eq!(p, "db[2].pw");
    }
}
