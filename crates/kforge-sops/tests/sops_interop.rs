//! Interoperability with the real `sops` binary (3.11): files kforge encrypts decrypt with
//! sops to exactly what sops' own round trip gives, files sops encrypts decrypt with kforge
//! to exactly what `sops decrypt` prints, and kforge's encrypted layout equals sops' once
//! the random parts (ciphertexts, IVs, tags, wrapped keys, timestamps) are masked.

mod common;

use common::{KeyPair, Sandbox, config, file_name, identities, keypair};
use kforge_sops::{Format, PartialEncryption, decrypt, encrypt, file_info, is_sops_file};
use regex::Regex;

const YAML: &str = r#"db:
    password: hunter2
    port: 5432
    ratio: 1.0
    half: 0.5
    big: 1e6
    tiny: 0.00001
    negative: -17
    enabled: true
    disabled: false
    empty: ""
    nothing: null
    tilde: ~
    octal: 0o644
    date: 2024-01-01
    stamp: 2024-01-01T10:00:00.5+02:00
    quoted_date: "2024-01-01"
    multi: |
        line1
        line2
    folded: >-
        a
        b
    unicode: "héllo wörld ✓"
    special: "a: b # c"
    lead_space: " lead"
    tabbed: "tab\there"
    apostrophe: "it's: x"
    control: "bell\a"
    yes_string: "yes"
    numeric_string: "0644"
    token_unencrypted: visible
    ratio_unencrypted: 1.0
    when_unencrypted: 2024-05-06
    x_plain: plain
    public_key: pk
    api_secret: s
    group_secret:
        a: 1
        b: [x, y]
    data:
        inner: x
list:
    - a
    - 1
    - b: x
      c: [1, 2]
      password: p2
    - []
    - {}
    - - nested
      - 2.5
"123": numkey
token: tok
pub_cert: cert
---
second: doc
password: p3
---
third:
    data: [1, 2]
    token_unencrypted: [a, {b: c}]
"#;

const JSON: &str = r#"{"password": "hunter2", "port": 5432, "ratio": 1.5, "big": 1e21, "small": 1e-7,
 "neg": -0, "enabled": true, "nothing": null, "empty": "",
 "html": "<a href=\"x\">&amp;</a>", "unicode": "é\u2028😀\u0001",
 "list": [1, "two", {"token": "t", "data": [3]}, [], {}],
 "nested": {"pub_key": "k", "token_unencrypted": "v", "api_secret": "s", "x_plain": 2}}
"#;

const DOTENV: &str = "# leading comment\nPASSWORD=hunter2\nPORT=5432\nURL=https://x/?a=b&c=d\nMULTI=line1\\nline2\nEMPTY=\nTOKEN_unencrypted=visible\npub_KEY=pk\napi_secret=s\nX_plain=p\nQUOTED=\"q\"\n# trailing comment\n";

fn rules() -> Vec<PartialEncryption> {
    vec![
        PartialEncryption::default(),
        PartialEncryption::UnencryptedSuffix("_plain".into()),
        PartialEncryption::EncryptedSuffix("_secret".into()),
        PartialEncryption::UnencryptedRegex("^pub".into()),
        PartialEncryption::EncryptedRegex("^(password|token|data|PASSWORD|TOKEN)$".into()),
    ]
}

/// Masks what differs between two encryptions of the same plaintext.
fn mask(text: &str) -> String {
    let enc = Regex::new(r"data:[A-Za-z0-9+/=]*,iv:[A-Za-z0-9+/=]+,tag:[A-Za-z0-9+/=]+,").unwrap();
    let armor =
        Regex::new(r"-----BEGIN AGE ENCRYPTED FILE-----[\s\S]*?-----END AGE ENCRYPTED FILE-----")
            .unwrap();
    let when =
        Regex::new(r#"(lastmodified"?[:=] ?"?)[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z"#).unwrap();
    let t = enc.replace_all(text, "data:D,iv:I,tag:T,");
    let t = armor.replace_all(&t, "AGE");
    when.replace_all(&t, "${1}WHEN").into_owned()
}

fn check_case(format: Format, plaintext: &str, rule: &PartialEncryption, mac_only_encrypted: bool) {
    let key = keypair();
    let sb = Sandbox::new();
    sb.sops_config(&[&key], rule, mac_only_encrypted);
    let name = file_name(format);
    let what = format!("{format} with {rule:?}, mac_only_encrypted={mac_only_encrypted}");

    // sops' own round trip is the reference for what "the original" prints as.
    let by_sops = sb.sops_encrypt(name, plaintext);
    let reference = sb
        .sops_decrypt(name, &by_sops, &key)
        .unwrap_or_else(|e| panic!("{what}: sops decrypt: {e}"));

    // sops → kforge
    assert!(is_sops_file(&by_sops, format), "{what}");
    let ours = decrypt(&by_sops, format, &identities(&key))
        .unwrap_or_else(|e| panic!("{what}: kforge decrypt: {e}"));
    assert_eq!(
        ours.expose(),
        &reference,
        "{what}: kforge decrypt of sops output"
    );

    // kforge → sops
    let cfg = config(&[&key], rule.clone(), mac_only_encrypted);
    let by_kforge =
        encrypt(plaintext, format, &cfg).unwrap_or_else(|e| panic!("{what}: kforge encrypt: {e}"));
    let theirs = sb
        .sops_decrypt(name, &by_kforge, &key)
        .unwrap_or_else(|e| panic!("{what}: sops decrypt of kforge output: {e}\n{by_kforge}"));
    assert_eq!(theirs, reference, "{what}: sops decrypt of kforge output");
    let back = decrypt(&by_kforge, format, &identities(&key)).unwrap();
    assert_eq!(back.expose(), &reference, "{what}: kforge round trip");

    // Same layout, metadata and type tags as sops.
    assert_eq!(mask(&by_kforge), mask(&by_sops), "{what}: encrypted layout");
    let info = file_info(&by_kforge, format).unwrap();
    assert_eq!(info.recipients, vec![key.recipient.clone()]);
    assert_eq!(&info.rule, rule);
    assert_eq!(info.version, "3.11.0");
}

#[test]
fn yaml_matrix_matches_sops() {
    for rule in rules() {
        for mac_only in [false, true] {
            check_case(Format::Yaml, YAML, &rule, mac_only);
        }
    }
}

#[test]
fn json_matrix_matches_sops() {
    for rule in rules() {
        for mac_only in [false, true] {
            check_case(Format::Json, JSON, &rule, mac_only);
        }
    }
}

#[test]
fn dotenv_matrix_matches_sops() {
    for rule in rules() {
        for mac_only in [false, true] {
            check_case(Format::Dotenv, DOTENV, &rule, mac_only);
        }
    }
}

#[test]
fn yaml_values_survive_unchanged_where_sops_keeps_them() {
    // Plain kforge round trip: decrypting what kforge encrypted gives the values back.
    let key = keypair();
    let enc = encrypt(
        YAML,
        Format::Yaml,
        &config(&[&key], PartialEncryption::default(), false),
    )
    .unwrap();
    let dec = decrypt(&enc, Format::Yaml, &identities(&key)).unwrap();
    let original = kforge_yaml::parse_all(YAML).unwrap();
    let back = kforge_yaml::parse_all(dec.expose()).unwrap();
    assert_eq!(original.len(), back.len());
    let get =
        |docs: &[kforge_yaml::Node], k: &str| docs[0].get("db").unwrap().get(k).unwrap().to_value();
    for k in [
        "password",
        "port",
        "half",
        "enabled",
        "empty",
        "nothing",
        "multi",
        "unicode",
        "special",
        "yes_string",
        "numeric_string",
    ] {
        assert_eq!(get(&original, k), get(&back, k), "{k}");
    }
    assert_eq!(original[1].to_value(), back[1].to_value());
    // Like sops: a timestamp comes back in RFC 3339, 1.0 comes back as 1.
    assert_eq!(
        get(&back, "date"),
        serde_json::json!("2024-01-01T00:00:00Z")
    );
    assert!(dec.expose().contains("    ratio: 1\n"));
    // Encrypted values carry sops' type tags.
    for tag in [
        "type:str]",
        "type:int]",
        "type:float]",
        "type:bool]",
        "type:time]",
    ] {
        assert!(enc.contains(tag), "{tag}");
    }
    assert!(enc.contains("    empty: \"\"\n") && enc.contains("    nothing: null\n"));
}

fn several(format: Format, plaintext: &str) {
    let keys = [keypair(), keypair(), keypair()];
    let refs: Vec<&KeyPair> = keys.iter().collect();
    let sb = Sandbox::new();
    sb.sops_config(&refs, &PartialEncryption::default(), false);
    let name = file_name(format);
    let by_sops = sb.sops_encrypt(name, plaintext);
    let reference = sb.sops_decrypt(name, &by_sops, &keys[0]).unwrap();
    let by_kforge = encrypt(
        plaintext,
        format,
        &config(&refs, PartialEncryption::default(), false),
    )
    .unwrap();
    assert_eq!(
        file_info(&by_kforge, format).unwrap().recipients,
        keys.iter().map(|k| k.recipient.clone()).collect::<Vec<_>>()
    );
    for key in &keys {
        assert_eq!(
            sb.sops_decrypt(name, &by_kforge, key).unwrap(),
            reference,
            "sops with {}",
            key.recipient
        );
        assert_eq!(
            decrypt(&by_kforge, format, &identities(key))
                .unwrap()
                .expose(),
            &reference
        );
        assert_eq!(
            decrypt(&by_sops, format, &identities(key))
                .unwrap()
                .expose(),
            &reference
        );
    }
}

#[test]
fn several_recipients_each_decrypt() {
    several(Format::Yaml, YAML);
    several(Format::Json, JSON);
    several(Format::Dotenv, DOTENV);
}

#[test]
fn sops_config_rules_give_the_same_settings() {
    // The .sops.yaml the sandbox writes for sops, read by kforge, gives the same config.
    let key = keypair();
    let sb = Sandbox::new();
    let rule = PartialEncryption::EncryptedRegex("^(password|token)$".into());
    sb.sops_config(&[&key], &rule, true);
    let text = std::fs::read_to_string(sb.path(".sops.yaml")).unwrap();
    let rules = kforge_sops::config::CreationRules::parse(&text).unwrap();
    let cfg = rules
        .rule_for("secret.yaml")
        .unwrap()
        .encrypt_config(std::time::SystemTime::now())
        .unwrap();
    assert_eq!(cfg.rule, rule);
    assert!(cfg.mac_only_encrypted);
    assert_eq!(cfg.recipients, vec![key.recipient.clone()]);
    // A .sops.yaml that kforge extended is read by sops.
    let added = kforge_sops::config::add_creation_rules(
        &text,
        &[kforge_sops::config::NewCreationRule {
            path_regex: r"other\.yaml$".into(),
            age: vec![key.recipient.clone()],
            partial: Some(PartialEncryption::EncryptedSuffix("_secret".into())),
            mac_only_encrypted: false,
        }],
    )
    .unwrap();
    sb.write(".sops.yaml", &added.text);
    let enc = sb.sops_encrypt("other.yaml", "a_secret: 1\nb: 2\n");
    assert!(enc.contains("encrypted_suffix: _secret"), "{enc}");
    assert!(enc.contains("b: 2\n"));
}

#[test]
fn anchors_merge_keys_and_comments_like_sops() {
    // Anchors, aliases (also to a timestamp) and merge keys: sops keeps `<<` as a key.
    let merged =
        "base: &b\n    x: 1\n    pw: s3\nother:\n    <<: *b\n    y: 2\nt: &t 2024-01-01\nu: *t\n";
    for rule in [
        PartialEncryption::default(),
        PartialEncryption::EncryptedRegex("^(pw|x)$".into()),
    ] {
        check_case(Format::Yaml, merged, &rule, false);
    }

    // Comments: sops encrypts and keeps them; kforge reads such files and drops them.
    let key = keypair();
    let sb = Sandbox::new();
    sb.sops_config(&[&key], &PartialEncryption::default(), false);
    let commented = "# top\ndb:\n    # the password\n    password: x # inline\n    list:\n        # item\n        - a\n";
    let by_sops = sb.sops_encrypt("c.yaml", commented);
    assert!(by_sops.contains("#ENC["), "{by_sops}");
    let reference = sb.sops_decrypt("c.yaml", &by_sops, &key).unwrap();
    let ours = decrypt(&by_sops, Format::Yaml, &identities(&key)).unwrap();
    let uncommented: String = reference
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(ours.expose(), &uncommented);
}
