//! Integrity: the talhelper oracle file (written by sops 3.8.1) decrypts with its MAC
//! verified, and every kind of tampering, a wrong key or broken metadata makes decryption
//! fail with an error that says what and where (and sops agrees where it applies).

mod common;

use std::io;
use std::path::Path;

use common::{Sandbox, config, enc_on_line, flip_part, identities, keypair};
use kforge_sops::{
    Format, Identities, PartialEncryption, SopsError, decrypt, encrypt, is_sops_file,
};

const PLAIN: &str = "db:\n    user: admin\n    password: hunter2\n    port: 5432\nhosts:\n    - a\n    - b\nnote_unencrypted: hello\n";

fn fixture() -> (common::KeyPair, String) {
    let key = keypair();
    let enc = encrypt(
        PLAIN,
        Format::Yaml,
        &config(&[&key], PartialEncryption::default(), false),
    )
    .unwrap();
    (key, enc)
}

#[test]
fn talhelper_oracle_decrypts_and_matches_sops() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text = std::fs::read_to_string(dir.join("talhelper-talenv.sops.yaml")).unwrap();
    let keys = std::fs::read_to_string(dir.join("talhelper-key.txt")).unwrap();
    assert!(is_sops_file(&text, Format::Yaml));
    let ids = Identities::from_keys_text(&keys).unwrap();
    let plain = decrypt(&text, Format::Yaml, &ids).unwrap();
    let doc = kforge_yaml::parse(plain.expose()).unwrap();
    for k in ["udp", "myDomainName", "tsAuth"] {
        assert!(
            doc.get(k)
                .and_then(|v| v.as_str())
                .is_some_and(|s| !s.is_empty()),
            "{k}"
        );
    }
    let info = kforge_sops::file_info(&text, Format::Yaml).unwrap();
    assert_eq!(info.version, "3.8.1");
    assert_eq!(
        info.recipients,
        vec!["age10k9mjx3wcfzd7dwx3uqs68v7dzlwvwpzp8jyjpysjhy9mdwzhghqy2vhvn".to_string()]
    );

    // sops prints the same plaintext.
    let sb = Sandbox::new();
    sb.write("key.txt", &keys);
    sb.write("talenv.yaml", &text);
    let out = std::process::Command::new(common::sops_binary())
        .args(["decrypt", "talenv.yaml"])
        .current_dir(sb.dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", sb.dir.path())
        .env("SOPS_AGE_KEY_FILE", sb.path("key.txt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(plain.expose().as_bytes(), &out.stdout[..]);

    // And its MAC really is checked: change one value's ciphertext order.
    let swapped = text
        .replacen("udp:", "tmp:", 1)
        .replacen("tsAuth:", "udp:", 1)
        .replacen("tmp:", "tsAuth:", 1);
    assert!(decrypt(&swapped, Format::Yaml, &ids).is_err());
}

fn values_error(result: Result<kforge_secret::SecretString, SopsError>) -> String {
    match result {
        Err(e @ SopsError::Values { .. }) => e.to_string(),
        Err(e) => panic!("expected a value error, got: {e}"),
        Ok(_) => panic!("tampered file decrypted"),
    }
}

#[test]
fn flipped_data_iv_or_tag_fail_with_path_and_line() {
    let (key, enc) = fixture();
    let value = enc_on_line(&enc, "password:");
    for part in ["data", "iv", "tag"] {
        let tampered = enc.replace(value, &flip_part(value, part));
        let msg = values_error(decrypt(&tampered, Format::Yaml, &identities(&key)));
        assert!(msg.contains("db.password (line 3)"), "{part}: {msg}");
        assert!(msg.contains("failed authentication"), "{part}: {msg}");
        // sops rejects it too.
        let sb = Sandbox::new();
        assert!(
            sb.sops_decrypt("t.yaml", &tampered, &key).is_err(),
            "{part}"
        );
    }
}

#[test]
fn moved_values_and_reordered_lists_are_caught() {
    let (key, enc) = fixture();
    // A value moved to another key fails its additional-data check.
    let user = enc_on_line(&enc, "user:").to_string();
    let password = enc_on_line(&enc, "password:").to_string();
    let moved = enc
        .replace(&user, "USER")
        .replace(&password, &user)
        .replace("USER", &password);
    let msg = values_error(decrypt(&moved, Format::Yaml, &identities(&key)));
    assert!(
        msg.contains("db.user") && msg.contains("db.password"),
        "{msg}"
    );

    // List items share one key path, so swapping them decrypts, but the MAC differs.
    let a = enc_on_line(&enc, "- ENC").to_string();
    let lines: Vec<&str> = enc.lines().collect();
    let b_line = lines
        .iter()
        .position(|l| l.trim_start().starts_with("- ENC"))
        .unwrap()
        + 1;
    let b = lines[b_line]
        .trim_start()
        .trim_start_matches("- ")
        .to_string();
    let swapped = enc
        .replace(&a, "FIRST")
        .replace(&b, &a)
        .replace("FIRST", &b);
    let err = decrypt(&swapped, Format::Yaml, &identities(&key))
        .err()
        .unwrap();
    assert!(matches!(err, SopsError::MacMismatch), "{err}");
}

#[test]
fn editing_a_plaintext_value_breaks_the_mac_unless_mac_only_encrypted() {
    let (key, enc) = fixture();
    let edited = enc.replace("note_unencrypted: hello", "note_unencrypted: hellO");
    let err = decrypt(&edited, Format::Yaml, &identities(&key))
        .err()
        .unwrap();
    assert!(matches!(err, SopsError::MacMismatch), "{err}");
    assert!(
        Sandbox::new()
            .sops_decrypt("t.yaml", &edited, &key)
            .unwrap_err()
            .contains("MAC mismatch")
    );

    let removed = enc.replace("note_unencrypted: hello\n", "");
    assert!(matches!(
        decrypt(&removed, Format::Yaml, &identities(&key)),
        Err(SopsError::MacMismatch)
    ));

    let mac_only = encrypt(
        PLAIN,
        Format::Yaml,
        &config(&[&key], PartialEncryption::default(), true),
    )
    .unwrap();
    let edited = mac_only.replace("note_unencrypted: hello", "note_unencrypted: changed");
    let plain = decrypt(&edited, Format::Yaml, &identities(&key)).unwrap();
    assert!(plain.expose().contains("note_unencrypted: changed"));
    assert!(
        Sandbox::new()
            .sops_decrypt("t.yaml", &edited, &key)
            .unwrap()
            .contains("changed")
    );
}

#[test]
fn changing_lastmodified_is_caught() {
    let (key, enc) = fixture();
    let line = enc.lines().find(|l| l.contains("lastmodified:")).unwrap();
    let tampered = enc.replace(line, "    lastmodified: \"2001-02-03T04:05:06Z\"");
    let err = decrypt(&tampered, Format::Yaml, &identities(&key))
        .err()
        .unwrap();
    assert!(matches!(err, SopsError::MacUnreadable { .. }), "{err}");
    assert!(err.to_string().contains("2001-02-03T04:05:06Z"));
    assert!(
        Sandbox::new()
            .sops_decrypt("t.yaml", &tampered, &key)
            .is_err()
    );
}

#[test]
fn removing_the_recipient_or_using_a_wrong_key_names_the_recipients() {
    let key = keypair();
    let other = keypair();
    let enc = encrypt(
        PLAIN,
        Format::Yaml,
        &config(&[&key, &other], PartialEncryption::default(), false),
    )
    .unwrap();
    // Drop `key`'s entry (recipient line, enc line and the armored block).
    let mut out = Vec::new();
    let mut skipping = false;
    for line in enc.lines() {
        if line.contains(&key.recipient) {
            skipping = true;
            continue;
        }
        if skipping {
            if line.contains("END AGE ENCRYPTED FILE") {
                skipping = false;
            }
            continue;
        }
        out.push(line);
    }
    let without = out.join("\n") + "\n";
    let err = decrypt(&without, Format::Yaml, &identities(&key))
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, SopsError::NoMatchingIdentity { .. }), "{msg}");
    assert!(
        msg.contains(&other.recipient) && !msg.contains(&format!("for: {}", key.recipient)),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("Identities available: {}", key.recipient)),
        "{msg}"
    );
    // The other key still opens it.
    assert!(decrypt(&without, Format::Yaml, &identities(&other)).is_ok());

    // Wrong key entirely, found through the environment like sops would.
    let wrong = keypair();
    let env = |k: &str| match k {
        "SOPS_AGE_KEY" => Some(wrong.secret.clone()),
        "HOME" => Some("/home/tester".to_string()),
        _ => None,
    };
    let ids = Identities::discover(&env, &|_: &Path| {
        Err(io::Error::from(io::ErrorKind::NotFound))
    });
    let msg = decrypt(&enc, Format::Yaml, &ids).err().unwrap().to_string();
    assert!(
        msg.contains(&key.recipient) && msg.contains(&other.recipient),
        "{msg}"
    );
    assert!(msg.contains("SOPS_AGE_KEY (1 identity)"), "{msg}");
    assert!(msg.contains("SOPS_AGE_KEY_FILE (not set)"), "{msg}");
    assert!(
        msg.contains("/home/tester/.config/sops/age/keys.txt (not found)"),
        "{msg}"
    );

    // No key at all.
    let msg = decrypt(&enc, Format::Yaml, &Identities::none())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("Identities available: none") && msg.contains(&key.recipient),
        "{msg}"
    );
}

#[test]
fn damaged_wrapped_key_for_the_matching_recipient_is_reported() {
    let (key, enc) = fixture();
    let lines: Vec<&str> = enc.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains("BEGIN AGE ENCRYPTED FILE"))
        .unwrap()
        + 2;
    let damaged_line = lines[i].replacen(|c: char| c.is_ascii_alphanumeric(), "Z", 3);
    let damaged = enc.replace(lines[i], &damaged_line);
    let err = decrypt(&damaged, Format::Yaml, &identities(&key))
        .err()
        .unwrap();
    assert!(matches!(err, SopsError::DataKey { .. }), "{err}");
    assert!(err.to_string().contains(&key.recipient));
}

#[test]
fn missing_or_invalid_version_is_refused_like_sops() {
    let (key, enc) = fixture();
    let without = enc.replace("    version: 3.11.0\n", "");
    let err = decrypt(&without, Format::Yaml, &identities(&key))
        .err()
        .unwrap();
    assert!(matches!(err, SopsError::Metadata { .. }), "{err}");
    assert!(err.to_string().contains("sops.version"), "{err}");
    assert!(
        Sandbox::new()
            .sops_decrypt("t.yaml", &without, &key)
            .is_err(),
        "sops also refuses"
    );

    let bad = enc.replace("version: 3.11.0", "version: three");
    let msg = decrypt(&bad, Format::Yaml, &identities(&key))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("`three` is not a valid version"), "{msg}");

    let no_mac = enc.replace(enc.lines().find(|l| l.contains("mac: ENC")).unwrap(), "");
    let msg = decrypt(&no_mac, Format::Yaml, &identities(&key))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("sops.mac"), "{msg}");
}

#[test]
fn malformed_and_plaintext_values_are_listed_with_paths_and_lines() {
    let (key, enc) = fixture();
    let user = enc_on_line(&enc, "user:");
    let truncated = &user[..user.len() - 10];
    let port = enc_on_line(&enc, "port:");
    let tampered = enc.replace(user, truncated).replace(port, "5432");
    let msg = values_error(decrypt(&tampered, Format::Yaml, &identities(&key)));
    assert!(msg.starts_with("2 value(s) cannot be decrypted"), "{msg}");
    assert!(
        msg.contains(
            "db.user (line 2): is not a valid sops encrypted value: it does not end with `]`"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("db.port (line 4): should be encrypted"),
        "{msg}"
    );
}

#[test]
fn json_and_dotenv_tampering_is_caught() {
    let key = keypair();
    let cfg = config(&[&key], PartialEncryption::default(), false);
    let json = encrypt("{\"a\": \"x\",\n \"b\": [1, 2]}", Format::Json, &cfg).unwrap();
    let value = enc_on_line(&json, "\"a\":");
    let msg = values_error(decrypt(
        &json.replace(value, &flip_part(value, "tag")),
        Format::Json,
        &identities(&key),
    ));
    assert!(msg.contains("a (line 2)"), "{msg}");

    let env = encrypt("# c\nA=x\nB=y\n", Format::Dotenv, &cfg).unwrap();
    let value = enc_on_line(&env, "B=");
    let msg = values_error(decrypt(
        &env.replace(value, &flip_part(value, "data")),
        Format::Dotenv,
        &identities(&key),
    ));
    assert!(msg.contains("B (line 3)"), "{msg}");
    let edited = env.replacen("A=ENC", "A=XENC", 1);
    assert!(decrypt(&edited, Format::Dotenv, &identities(&key)).is_err());
}

#[test]
fn transparency_helpers() {
    let (_, enc) = fixture();
    assert!(is_sops_file(&enc, Format::Yaml));
    assert!(!is_sops_file(PLAIN, Format::Yaml));
    assert!(!is_sops_file("sops: null\na: 1\n", Format::Yaml));
    assert!(is_sops_file("a: 1\nsops:\n    version: x\n", Format::Yaml));
    // Damaged sops text must not be taken for plaintext.
    assert!(is_sops_file(
        "a: ENC[AES256_GCM,data:x\n  b: [",
        Format::Yaml
    ));
    assert!(!is_sops_file("{\"a\": 1}", Format::Json));
    assert!(!is_sops_file("A=1\n", Format::Dotenv));
    // A plain file given to decrypt fails clearly instead of passing through.
    let err = decrypt(PLAIN, Format::Yaml, &Identities::none())
        .err()
        .unwrap();
    assert!(matches!(err, SopsError::NoMetadata { .. }), "{err}");
    // Encrypting an encrypted file is refused.
    let key = keypair();
    let err = encrypt(
        &enc,
        Format::Yaml,
        &config(&[&key], PartialEncryption::default(), false),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, SopsError::AlreadyEncrypted { document: 1, .. }),
        "{err}"
    );
}
