//! Every error path, driven with a known secret in the input: the secret never appears in
//! any error message or its source chain.

mod common;

use common::{
    config, data_key_of, enc_on_line, flip_part, forge_value, full_chain, identities, keypair,
};
use kforge_sops::{
    Format, Identities, PartialEncryption, SopsError, config as sops_config, decrypt, encrypt,
};

const SECRET: &str = "S3cr3t-Plaintext-XYZ";

fn assert_clean(what: &str, err: &SopsError, seen: &mut Vec<String>) {
    let chain = full_chain(err);
    assert!(!chain.contains(SECRET), "{what} leaks the secret:\n{chain}");
    assert!(
        !chain.contains("S3cr3t"),
        "{what} leaks part of the secret:\n{chain}"
    );
    seen.push(format!("{what}: {chain}"));
}

#[test]
fn no_error_contains_the_plaintext() {
    let key = keypair();
    let ids = identities(&key);
    let cfg = config(&[&key], PartialEncryption::default(), false);
    let mut seen = Vec::new();
    let mut expect_err = |what: &str, r: Result<String, SopsError>| match r {
        Err(e) => assert_clean(what, &e, &mut seen),
        Ok(_) => panic!("{what}: expected an error"),
    };

    // --- encrypting bad input ---
    let enc = |text: &str, format| encrypt(text, format, &cfg);
    expect_err(
        "yaml syntax",
        enc(&format!("a: {SECRET}\n b: [\n"), Format::Yaml),
    );
    expect_err(
        "yaml bad tag",
        enc(&format!("a: !!int {SECRET}\n"), Format::Yaml),
    );
    expect_err(
        "yaml bad float tag",
        enc(&format!("a: !!float \"{SECRET}\"\n"), Format::Yaml),
    );
    expect_err(
        "yaml duplicate key",
        enc(&format!("a: {SECRET}\na: {SECRET}\n"), Format::Yaml),
    );
    expect_err(
        "yaml top-level list",
        enc(&format!("- {SECRET}\n"), Format::Yaml),
    );
    expect_err(
        "yaml non-string key",
        enc(&format!("1: {SECRET}\n"), Format::Yaml),
    );
    expect_err(
        "yaml huge integer",
        enc("a: 18446744073709551615\n", Format::Yaml),
    );
    expect_err(
        "yaml bad binary",
        enc(&format!("a: !!binary {SECRET}\n"), Format::Yaml),
    );
    expect_err(
        "yaml already encrypted",
        enc(
            &format!("a: {SECRET}\nsops: {{version: 1}}\n"),
            Format::Yaml,
        ),
    );
    expect_err("yaml empty", enc("", Format::Yaml));
    expect_err(
        "json syntax",
        enc(&format!("{{\"a\": \"{SECRET}\" \"b\"}}"), Format::Json),
    );
    expect_err("json array", enc(&format!("[\"{SECRET}\"]"), Format::Json));
    expect_err(
        "json bad escape",
        enc(&format!("{{\"a\": \"{SECRET}\\q\"}}"), Format::Json),
    );
    expect_err(
        "dotenv no equals",
        enc(&format!("A=1\n{SECRET}\n"), Format::Dotenv),
    );
    let mut bad_cfg = cfg.clone();
    bad_cfg.recipients = vec!["age1notakey".to_string()];
    expect_err(
        "bad recipient",
        encrypt(&format!("a: {SECRET}\n"), Format::Yaml, &bad_cfg),
    );
    let mut bad_rule = cfg.clone();
    bad_rule.rule = PartialEncryption::EncryptedRegex("(".into());
    expect_err(
        "bad rule regex",
        encrypt(&format!("a: {SECRET}\n"), Format::Yaml, &bad_rule),
    );

    // --- decrypting damaged files ---
    let plain = format!(
        "db:\n    password: {SECRET}\n    port: 1\n    n_unencrypted: {SECRET}\nlist:\n    - {SECRET}\n    - x\n"
    );
    let file = encrypt(&plain, Format::Yaml, &cfg).unwrap();
    let dec = |text: &str| decrypt(text, Format::Yaml, &ids).map(|s| s.expose().clone());
    let value = enc_on_line(&file, "password:");
    for part in ["data", "iv", "tag"] {
        expect_err(
            &format!("flipped {part}"),
            dec(&file.replace(value, &flip_part(value, part))),
        );
    }
    expect_err("truncated value", dec(&file.replace(value, &value[..20])));
    expect_err(
        "plain value where encrypted",
        dec(&file.replace(value, SECRET)),
    );
    expect_err(
        "edited unencrypted value",
        dec(&file.replace(
            &format!("n_unencrypted: {SECRET}"),
            &format!("n_unencrypted: {SECRET}!"),
        )),
    );
    let item = enc_on_line(&file, "- ENC");
    expect_err(
        "reordered list",
        dec(&file
            .replace(item, "x2")
            .replacen("- x\n", &format!("- {item}\n"), 1)),
    );
    let lm = file.lines().find(|l| l.contains("lastmodified")).unwrap();
    expect_err(
        "lastmodified",
        dec(&file.replace(lm, "    lastmodified: \"2000-01-01T00:00:00Z\"")),
    );
    expect_err(
        "no version",
        dec(&file.replace("    version: 3.11.0\n", "")),
    );
    expect_err(
        "wrong key",
        decrypt(&file, Format::Yaml, &identities(&keypair())).map(|s| s.expose().clone()),
    );
    expect_err(
        "no key",
        decrypt(&file, Format::Yaml, &Identities::none()).map(|s| s.expose().clone()),
    );
    expect_err("no metadata", dec(&plain));

    // Forged values with the right data key: types that do not parse, bad UTF-8, unknown types.
    let dk = data_key_of(&file, &key);
    for (what, bytes, ty) in [
        ("int that is the secret", SECRET.as_bytes().to_vec(), "int"),
        (
            "float that is the secret",
            SECRET.as_bytes().to_vec(),
            "float",
        ),
        (
            "bool that is the secret",
            SECRET.as_bytes().to_vec(),
            "bool",
        ),
        (
            "time that is the secret",
            SECRET.as_bytes().to_vec(),
            "time",
        ),
        ("unknown type", SECRET.as_bytes().to_vec(), "weird"),
        (
            "not utf-8",
            [SECRET.as_bytes(), &[0xff, 0xfe]].concat(),
            "str",
        ),
    ] {
        let forged = forge_value(&dk, &bytes, "db:password:", ty);
        expect_err(what, dec(&file.replace(value, &forged)));
    }
    // A forged value with an infinite float cannot be written as JSON.
    let json = encrypt(&format!("{{\"a\": \"{SECRET}\"}}"), Format::Json, &cfg).unwrap();
    let jv = enc_on_line(&json, "\"a\":");
    let forged = forge_value(&data_key_of(&json, &key), b"+Inf", "a:", "float");
    let jerr = decrypt(&json.replace(jv, &forged), Format::Json, &ids).map(|s| s.expose().clone());
    // The MAC differs too, but whichever error comes first must be clean.
    expect_err("json infinite float", jerr);

    // dotenv damage
    let env = encrypt(&format!("A={SECRET}\nB=2\n"), Format::Dotenv, &cfg).unwrap();
    let ev = enc_on_line(&env, "A=");
    expect_err(
        "dotenv flipped",
        decrypt(
            &env.replace(ev, &flip_part(ev, "data")),
            Format::Dotenv,
            &ids,
        )
        .map(|s| s.expose().clone()),
    );
    expect_err(
        "dotenv plain value",
        decrypt(&env.replace(ev, SECRET), Format::Dotenv, &ids).map(|s| s.expose().clone()),
    );

    // --- identities and config ---
    match Identities::from_keys_text(&format!("AGE-SECRET-KEY-1{SECRET}\n{SECRET}\n")) {
        Err(e) => assert_clean("bad identities", &e, &mut seen),
        Ok(_) => panic!("bad identities accepted"),
    }
    let discovered = Identities::discover(
        &|k| (k == "SOPS_AGE_KEY").then(|| format!("{SECRET}\n")),
        &|_| Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
    );
    for p in discovered.problems() {
        assert!(!p.contains("S3cr3t"), "discover problem leaks: {p}");
    }
    let e = decrypt(&file, Format::Yaml, &discovered).err().unwrap();
    assert_clean("discovered bad identities", &e, &mut seen);
    match sops_config::CreationRules::parse("creation_rules:\n  - path_regex: (\n") {
        Err(e) => assert_clean("config", &e, &mut seen),
        Ok(_) => panic!("bad config accepted"),
    }

    // Print what users would see, for review with --nocapture.
    for s in &seen {
        println!("{s}\n");
    }
    assert!(
        seen.len() >= 40,
        "only {} error paths exercised",
        seen.len()
    );
}
