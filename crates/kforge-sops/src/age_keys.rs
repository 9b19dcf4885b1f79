//! age keys: parsing recipients, finding identities the way sops does (`SOPS_AGE_KEY`,
//! `SOPS_AGE_KEY_FILE`, then `$XDG_CONFIG_HOME/sops/age/keys.txt` or
//! `~/.config/sops/age/keys.txt`, all of them accumulated), and wrapping the data key to each
//! recipient as its own armored age file, which is what sops stores in `enc`.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::armor::ArmoredReader;
use kforge_secret::{Secret, SecretString};
use zeroize::Zeroizing;

use crate::error::{Problem, SopsError};
use crate::metadata::AgeEntry;

/// The environment variable holding identities inline (several allowed, one per line).
pub const SOPS_AGE_KEY: &str = "SOPS_AGE_KEY";
/// The environment variable naming an identities file.
pub const SOPS_AGE_KEY_FILE: &str = "SOPS_AGE_KEY_FILE";
/// The default identities file below the user's configuration directory.
pub const DEFAULT_KEYS_PATH: &str = "sops/age/keys.txt";

/// A data key: 32 random bytes, zeroed on drop.
pub(crate) type DataKey = Secret<[u8; 32]>;

/// Parses `age1…` X25519 recipients (surrounding whitespace ignored), reporting every bad one.
pub(crate) fn parse_recipients(
    list: &[String],
) -> Result<Vec<(String, age::x25519::Recipient)>, SopsError> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for raw in list {
        let r = raw.trim();
        if r.is_empty() {
            continue;
        }
        let message = if r.starts_with("ssh-") {
            Some("SSH recipients are not supported; use an age X25519 key (age1…)")
        } else if r.starts_with("age1")
            && r.matches('1').count() > 1
            && age::x25519::Recipient::from_str(r).is_err()
        {
            Some("age plugin recipients are not supported; use an age X25519 key (age1…)")
        } else {
            None
        };
        match (message, age::x25519::Recipient::from_str(r)) {
            (None, Ok(parsed)) => out.push((r.to_string(), parsed)),
            (Some(m), _) => problems.push(Problem::new(r, None, m)),
            (None, Err(e)) => problems.push(Problem::new(
                r,
                None,
                format!("is not an age X25519 public key ({e}); expected age1…"),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(SopsError::InvalidRecipients { problems });
    }
    if out.is_empty() {
        return Err(SopsError::NoRecipients);
    }
    Ok(out)
}

/// Encrypts the data key to one recipient as an armored age file (sops' `enc`).
pub(crate) fn wrap_data_key(
    recipient: &str,
    parsed: &age::x25519::Recipient,
    key: &DataKey,
) -> Result<String, SopsError> {
    age::encrypt_and_armor(parsed, key.expose()).map_err(|source| SopsError::WrapDataKey {
        recipient: recipient.to_string(),
        source: Box::new(source),
    })
}

/// One loaded identity. The secret key stays in a [`SecretString`].
struct LoadedIdentity {
    secret: SecretString,
    /// The identity's public key, to pick the matching `enc` without trial decryption.
    recipient: String,
}

impl LoadedIdentity {
    fn parse(&self) -> Option<age::x25519::Identity> {
        age::x25519::Identity::from_str(self.secret.expose()).ok()
    }
}

/// The age identities available for decryption, and where they were looked for.
pub struct Identities {
    keys: Vec<LoadedIdentity>,
    searched: Vec<String>,
    problems: Vec<String>,
}

/// Shows public keys and sources only; secret keys never appear.
impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("recipients", &self.recipients())
            .field("searched", &self.searched)
            .field("problems", &self.problems)
            .finish()
    }
}

impl Identities {
    /// Loads identities the way sops does, from every source present: `SOPS_AGE_KEY`
    /// (inline), the file named by `SOPS_AGE_KEY_FILE`, and the default file
    /// `$XDG_CONFIG_HOME/sops/age/keys.txt` (or `$HOME/.config/sops/age/keys.txt`). Sources
    /// that are missing or broken are recorded (see [`Identities::searched`] and
    /// [`Identities::problems`]) and reported if decryption then fails; they do not stop the
    /// others. SSH keys, plugin identities and `SOPS_AGE_KEY_CMD` are not used.
    pub fn discover(
        env: &dyn Fn(&str) -> Option<String>,
        read_file: &dyn Fn(&Path) -> io::Result<String>,
    ) -> Identities {
        let mut ids = Identities {
            keys: Vec::new(),
            searched: Vec::new(),
            problems: Vec::new(),
        };

        match env(SOPS_AGE_KEY) {
            Some(text) => {
                let text = SecretString::new(text);
                ids.load_text(SOPS_AGE_KEY, text.expose());
            }
            None => ids.searched.push(format!("{SOPS_AGE_KEY} (not set)")),
        }

        match env(SOPS_AGE_KEY_FILE) {
            Some(path) => {
                let name = format!("{SOPS_AGE_KEY_FILE}={path}");
                match read_file(Path::new(&path)) {
                    Ok(text) => {
                        let text = SecretString::new(text);
                        ids.load_text(&name, text.expose());
                    }
                    Err(e) => {
                        ids.searched.push(format!("{name} (unreadable)"));
                        ids.problems.push(format!(
                            "cannot read {path} named by {SOPS_AGE_KEY_FILE}: {e}"
                        ));
                    }
                }
            }
            None => ids.searched.push(format!("{SOPS_AGE_KEY_FILE} (not set)")),
        }

        if env("SOPS_AGE_KEY_CMD").is_some() {
            ids.problems
                .push("SOPS_AGE_KEY_CMD is set, but kforge does not run key commands".to_string());
        }

        match default_keys_file(env) {
            Ok(path) => {
                let name = path.display().to_string();
                match read_file(&path) {
                    Ok(text) => {
                        let text = SecretString::new(text);
                        ids.load_text(&name, text.expose());
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        ids.searched.push(format!("{name} (not found)"))
                    }
                    Err(e) => {
                        ids.searched.push(format!("{name} (unreadable)"));
                        ids.problems.push(format!("cannot read {name}: {e}"));
                    }
                }
            }
            Err(why) => ids.problems.push(why),
        }
        ids
    }

    /// Identities from the text of a keys file (`AGE-SECRET-KEY-1…` lines; blank lines and
    /// `#` comments ignored). Every line that is not an identity is reported.
    pub fn from_keys_text(text: &str) -> Result<Identities, SopsError> {
        let mut ids = Identities {
            keys: Vec::new(),
            searched: Vec::new(),
            problems: Vec::new(),
        };
        let problems = ids.parse_text(text);
        ids.searched.push(format!(
            "the given keys ({})",
            count_identities(ids.keys.len())
        ));
        if !problems.is_empty() {
            return Err(SopsError::Identities {
                source_name: "the given keys".to_string(),
                problems,
            });
        }
        if ids.keys.is_empty() {
            return Err(SopsError::Identities {
                source_name: "the given keys".to_string(),
                problems: vec![Problem::new(
                    "keys",
                    None,
                    "contain no AGE-SECRET-KEY-1… line",
                )],
            });
        }
        Ok(ids)
    }

    /// An empty set (decryption will fail, naming the file's recipients).
    pub fn none() -> Identities {
        Identities {
            keys: Vec::new(),
            searched: Vec::new(),
            problems: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The public keys (`age1…`) of the loaded identities.
    pub fn recipients(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.recipient.clone()).collect()
    }

    /// Where identities were looked for, e.g. `SOPS_AGE_KEY (not set)`.
    pub fn searched(&self) -> &[String] {
        &self.searched
    }

    /// Sources that could not be used and why.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    fn load_text(&mut self, source: &str, text: &str) {
        let before = self.keys.len();
        let problems = self.parse_text(text);
        let count = self.keys.len() - before;
        self.searched
            .push(format!("{source} ({})", count_identities(count)));
        for p in problems {
            self.problems.push(format!("{source}: {p}"));
        }
    }

    fn parse_text(&mut self, text: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("line {}", i + 1);
            if line.starts_with("AGE-PLUGIN-") {
                problems.push(Problem::new(
                    at,
                    None,
                    "age plugin identities are not supported",
                ));
                continue;
            }
            match age::x25519::Identity::from_str(line) {
                Ok(identity) => {
                    let recipient = identity.to_public().to_string();
                    if !self.keys.iter().any(|k| k.recipient == recipient) {
                        self.keys.push(LoadedIdentity {
                            secret: SecretString::new(line.to_string()),
                            recipient,
                        });
                    }
                }
                Err(_) => problems.push(Problem::new(
                    at,
                    None,
                    "is not an age identity (expected AGE-SECRET-KEY-1…); its content is not shown",
                )),
            }
        }
        problems
    }
}

fn count_identities(n: usize) -> String {
    format!("{n} {}", if n == 1 { "identity" } else { "identities" })
}

/// sops' default identities file: `os.UserConfigDir()` + `sops/age/keys.txt`.
fn default_keys_file(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
    match env("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(dir) if Path::new(&dir).is_absolute() => Ok(Path::new(&dir).join(DEFAULT_KEYS_PATH)),
        Some(dir) => Err(format!(
            "XDG_CONFIG_HOME ({dir}) is a relative path, so the default keys file was not read"
        )),
        None => match env("HOME").filter(|d| !d.is_empty()) {
            Some(home) => Ok(Path::new(&home).join(".config").join(DEFAULT_KEYS_PATH)),
            None => Err(
                "neither XDG_CONFIG_HOME nor HOME is set, so the default keys file was not read"
                    .to_string(),
            ),
        },
    }
}

/// Decrypts the data key with the first identity that can: identities whose public key is
/// an entry's recipient first, then every identity against every entry.
pub(crate) fn unwrap_data_key(
    entries: &[AgeEntry],
    ids: &Identities,
) -> Result<DataKey, SopsError> {
    let parsed: Vec<(&LoadedIdentity, age::x25519::Identity)> = ids
        .keys
        .iter()
        .filter_map(|k| k.parse().map(|p| (k, p)))
        .collect();
    let mut damaged: Option<SopsError> = None;
    for entry in entries {
        let recipient = entry.recipient.trim();
        for (_, identity) in parsed.iter().filter(|(k, _)| k.recipient == recipient) {
            match decrypt_entry(entry, identity) {
                Ok(key) => return Ok(key),
                Err(problem) => {
                    damaged.get_or_insert(SopsError::DataKey {
                        recipient: recipient.to_string(),
                        problem,
                    });
                }
            }
        }
    }
    for entry in entries {
        for (_, identity) in &parsed {
            if let Ok(key) = decrypt_entry(entry, identity) {
                return Ok(key);
            }
        }
    }
    if let Some(e) = damaged {
        return Err(e);
    }
    Err(SopsError::NoMatchingIdentity {
        recipients: entries
            .iter()
            .map(|e| e.recipient.trim().to_string())
            .collect(),
        available: ids.recipients(),
        searched: ids.searched.clone(),
        problems: ids.problems.clone(),
    })
}

fn decrypt_entry(entry: &AgeEntry, identity: &age::x25519::Identity) -> Result<DataKey, String> {
    let decryptor = age::Decryptor::new_buffered(ArmoredReader::new(entry.enc.as_bytes()))
        .map_err(|e| format!("its `enc` is not a valid armored age file ({e})"))?;
    let mut reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| format!("age decryption failed ({e})"))?;
    let mut plain = Zeroizing::new(Vec::with_capacity(32));
    reader
        .read_to_end(&mut plain)
        .map_err(|e| format!("age decryption failed ({e})"))?;
    let key: [u8; 32] = plain.as_slice().try_into().map_err(|_| {
        format!(
            "it holds {} bytes instead of a 32-byte data key",
            plain.len()
        )
    })?;
    Ok(Secret::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn key_pair() -> (String, String) {
        let id = age::x25519::Identity::generate();
        (
            id.to_string().expose_secret_for_test(),
            id.to_public().to_string(),
        )
    }

    trait ExposeForTest {
        fn expose_secret_for_test(&self) -> String;
    }

    impl ExposeForTest for age::secrecy::SecretString {
        fn expose_secret_for_test(&self) -> String {
            use age::secrecy::ExposeSecret;
            self.expose_secret().to_string()
        }
    }

    #[test]
    fn discovers_all_sources_like_sops() {
        let (k1, r1) = key_pair();
        let (k2, r2) = key_pair();
        let (k3, r3) = key_pair();
        let env: HashMap<&str, String> = HashMap::from([
            (SOPS_AGE_KEY, format!("# comment\n{k1}\n\n")),
            (SOPS_AGE_KEY_FILE, "/keys/a.txt".to_string()),
            ("HOME", "/home/u".to_string()),
        ]);
        let files: HashMap<PathBuf, String> = HashMap::from([
            (PathBuf::from("/keys/a.txt"), format!("{k2}\n")),
            (
                PathBuf::from("/home/u/.config/sops/age/keys.txt"),
                format!("{k3}\nAGE-SECRET-KEY-1NOPE\n"),
            ),
        ]);
        let ids = Identities::discover(&|k| env.get(k).cloned(), &|p| {
            files
                .get(p)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        });
        assert_eq!(ids.recipients(), vec![r1, r2, r3]);
        assert_eq!(ids.searched().len(), 3, "{:?}", ids.searched());
        assert_eq!(ids.problems().len(), 1, "{:?}", ids.problems());
        assert!(!ids.problems()[0].contains("NOPE"));

        let env: HashMap<&str, String> = HashMap::from([
            ("XDG_CONFIG_HOME", "/xdg".to_string()),
            (SOPS_AGE_KEY_FILE, "/missing".to_string()),
        ]);
        let ids = Identities::discover(&|k| env.get(k).cloned(), &|_| {
            Err(io::Error::from(io::ErrorKind::NotFound))
        });
        assert!(ids.is_empty());
        assert!(
            ids.searched()
                .iter()
                .any(|s| s == "/xdg/sops/age/keys.txt (not found)"),
            "{:?}",
            ids.searched()
        );
        assert!(ids.problems().iter().any(|p| p.contains("/missing")));
    }

    #[test]
    fn keys_text_reports_bad_lines_without_content() {
        let (k1, _) = key_pair();
        let err =
            Identities::from_keys_text(&format!("{k1}\nAGE-SECRET-KEY-1SECRETISH\n")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 2"), "{msg}");
        assert!(!msg.contains("SECRETISH"), "{msg}");
        assert!(Identities::from_keys_text("# nothing\n").is_err());
    }

    #[test]
    fn wraps_and_unwraps_the_data_key() {
        let (k1, r1) = key_pair();
        let (_, r2) = key_pair();
        let parsed = parse_recipients(&[r1.clone(), format!(" {r2} ")]).unwrap();
        let key: DataKey = Secret::new([9u8; 32]);
        let entries: Vec<AgeEntry> = parsed
            .iter()
            .map(|(r, p)| AgeEntry {
                recipient: r.clone(),
                enc: wrap_data_key(r, p, &key).unwrap(),
            })
            .collect();
        assert!(
            entries[0]
                .enc
                .starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n")
        );
        assert!(
            entries[0]
                .enc
                .ends_with("-----END AGE ENCRYPTED FILE-----\n")
        );
        let ids = Identities::from_keys_text(&k1).unwrap();
        assert_eq!(
            unwrap_data_key(&entries, &ids).unwrap().expose(),
            &[9u8; 32]
        );
        let err = unwrap_data_key(&entries[1..], &ids).err().unwrap();
        assert!(matches!(err, SopsError::NoMatchingIdentity { .. }));
        assert!(err.to_string().contains(&r2));
        assert!(matches!(
            parse_recipients(&["ssh-ed25519 AAAA".into()]),
            Err(SopsError::InvalidRecipients { .. })
        ));
        assert!(matches!(
            parse_recipients(&["  ".into()]),
            Err(SopsError::NoRecipients)
        ));
    }
}
