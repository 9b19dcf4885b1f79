//! A broken bundle reports every defect at once, each with its YAML path and line:col,
//! and no message leaks a secret value.

mod common;

use base64::Engine;
use common::*;
use kforge_pki::{BundleError, BundleProblemKind as Kind, SecretsBundle};

fn enc(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The line index of `key:` inside `certs.<ca>` (or a top-level section when `ca` is "").
fn line_of(text: &str, ca: &str, key: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let start = if ca.is_empty() {
        0
    } else {
        lines
            .iter()
            .position(|l| *l == format!("    {ca}:"))
            .expect("section")
    };
    let indent = if ca.is_empty() { "    " } else { "        " };
    start
        + lines[start..]
            .iter()
            .position(|l| l.starts_with(&format!("{indent}{key}: ")))
            .expect("key")
}

fn value_at(text: &str, ca: &str, key: &str) -> String {
    let line = text.lines().nth(line_of(text, ca, key)).unwrap();
    line.split_once(": ").unwrap().1.to_string()
}

fn set(text: &str, ca: &str, key: &str, value: &str) -> String {
    let at = line_of(text, ca, key);
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            if i == at {
                format!("{}: {value}", l.split_once(": ").unwrap().0)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn problems(text: &str) -> Vec<kforge_pki::BundleProblem> {
    match SecretsBundle::from_yaml(text) {
        Ok(_) => panic!("the bundle should have been rejected"),
        Err(e) => e.problems().to_vec(),
    }
}

#[test]
fn every_defect_is_reported_with_path_and_position() {
    let f = FIXTURE;
    let agg_key = value_at(f, "k8saggregator", "key");
    let etcd_key_pem = b64_text(&value_at(f, "etcd", "key"));
    let sec1_body = etcd_key_pem.replace("EC PRIVATE KEY", "ED25519 PRIVATE KEY");

    let mut t = f.replace("2psnp2.lry8e9gycdix3bpa", "ABCDEF.0123456789abcdef");
    t = t.replace("Wiu0qx68V3MKhFDr8+OFwGCNOOPBiQCDsLpRa3MdxEQ=", "not*base64");
    t = t.replace(
        "trustdinfo:\n    token: oamejv.9tk1nhuwnlc2nghf\n",
        "trustdinfo:\n    tokn: oamejv.9tk1nhuwnlc2nghf\n",
    );
    t = set(&t, "etcd", "crt", &enc("hello, not PEM"));
    t = set(&t, "k8s", "key", &agg_key);
    t = set(
        &t,
        "k8saggregator",
        "crt",
        &enc("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
    );
    t = set(&t, "os", "key", &enc(&sec1_body));
    t = set(&t, "k8sserviceaccount", "key", "'%%%'");
    t = t.replace(
        "6zWBpno849HlD5jeuTmGToFYP+z8lgkJa0fhHobv7mE=",
        &enc("too short"),
    );
    t.push_str("        extra: 1\n");

    let err = SecretsBundle::from_yaml(&t).err().expect("rejected");
    let found: Vec<(String, Kind)> = err
        .problems()
        .iter()
        .map(|p| (p.path.clone(), p.kind))
        .collect();
    let expected = vec![
        ("cluster.secret", Kind::BadBase64),
        ("secrets.bootstraptoken", Kind::BadToken),
        ("secrets.secretboxencryptionsecret", Kind::BadLength),
        ("trustdinfo.tokn", Kind::UnknownKey),
        ("trustdinfo.token", Kind::Missing),
        ("certs.os.extra", Kind::UnknownKey),
        ("certs.etcd.crt", Kind::BadPem),
        ("certs.k8s.key", Kind::KeyMismatch),
        ("certs.k8saggregator.crt", Kind::BadCertificate),
        ("certs.k8sserviceaccount.key", Kind::BadBase64),
        ("certs.os.key", Kind::WrongKeyType),
    ];
    for (path, kind) in &expected {
        assert!(
            found.iter().any(|(p, k)| p == path && k == kind),
            "missing {path} {kind:?} in:\n{err}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{err}");

    // Positions point at the offending lines.
    let line = |path: &str| {
        err.problems()
            .iter()
            .find(|p| p.path == path)
            .unwrap()
            .pos
            .unwrap()
            .line
    };
    assert_eq!(line("secrets.bootstraptoken"), 5);
    assert_eq!(line("trustdinfo.tokn"), 8);
    assert_eq!(
        line("trustdinfo.token"),
        8,
        "missing fields point at their parent mapping"
    );
    assert_eq!(line("certs.etcd.crt"), line_of(&t, "etcd", "crt") + 1);
    assert_eq!(line("certs.os.key"), line_of(&t, "os", "key") + 1);
    assert_eq!(line("certs.os.extra"), t.lines().count());

    let text = err.to_string();
    assert!(
        text.starts_with("the secrets bundle has 11 problems:"),
        "{text}"
    );
    let k8s_key_line = line_of(&t, "k8s", "key") + 1;
    assert!(
        text.contains(&format!("certs.k8s.key (at {k8s_key_line}:14): is not the private key of certificate certs.k8s.crt")),
        "{text}"
    );
    assert!(
        !text.contains("symbol"),
        "base64 errors must not echo characters: {text}"
    );
    assert!(text.contains("did you mean `token`?"), "{text}");
    for secret in [
        "ABCDEF.0123456789abcdef",
        "not*base64",
        &agg_key[..40],
        "oamejv.9tk1nhuwnlc2nghf",
    ] {
        assert!(!text.contains(secret), "a secret leaked into: {text}");
    }
}

#[test]
fn structural_problems() {
    assert!(matches!(
        SecretsBundle::from_yaml("cluster: [\n"),
        Err(BundleError::Yaml(_))
    ));
    let p = problems("");
    assert_eq!(
        (p[0].path.as_str(), p[0].kind),
        ("(top level)", Kind::Missing)
    );
    let p = problems("- a\n");
    assert_eq!(p[0].kind, Kind::WrongType);
    let p = problems("cluster: {}\nsecrets: x\n");
    let paths: Vec<&str> = p.iter().map(|x| x.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "cluster.id",
            "cluster.secret",
            "secrets",
            "trustdinfo",
            "certs"
        ],
        "{p:?}"
    );
    assert_eq!(p[2].kind, Kind::WrongType);
}

#[test]
fn encryption_secret_rules() {
    let both = FIXTURE.replace(
        "    secretboxencryptionsecret:",
        "    aescbcencryptionsecret: 6zWBpno849HlD5jeuTmGToFYP+z8lgkJa0fhHobv7mE=\n    secretboxencryptionsecret:",
    );
    let p = problems(&both);
    assert_eq!(
        (p[0].path.as_str(), p[0].kind),
        ("secrets.aescbcencryptionsecret", Kind::Conflict)
    );

    let neither: String = FIXTURE
        .lines()
        .filter(|l| !l.contains("secretboxencryptionsecret"))
        .map(|l| format!("{l}\n"))
        .collect();
    let p = problems(&neither);
    assert_eq!(
        (p[0].path.as_str(), p[0].kind),
        ("secrets.secretboxencryptionsecret", Kind::Missing)
    );

    // A legacy bundle with only aescbcencryptionsecret loads and writes back unchanged.
    let legacy = FIXTURE.replace("secretboxencryptionsecret", "aescbcencryptionsecret");
    let b = SecretsBundle::from_yaml(&legacy).unwrap();
    assert!(b.secretbox_encryption_secret().is_none());
    assert_eq!(
        b.aescbc_encryption_secret().unwrap().expose(),
        "6zWBpno849HlD5jeuTmGToFYP+z8lgkJa0fhHobv7mE="
    );
    assert_eq!(b.to_yaml().expose(), &legacy);
}

#[test]
fn key_and_certificate_slot_rules() {
    // A non-CA certificate in a CA slot.
    let b = generated();
    let leaf = kforge_pki::issue_talos_client_cert(
        b,
        &["os:reader"],
        generated_at(),
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    let t = set(FIXTURE, "etcd", "crt", &enc(&leaf.crt_pem));
    let p = problems(&t);
    assert_eq!(
        (p[0].path.as_str(), p[0].kind),
        ("certs.etcd.crt", Kind::BadCertificate),
        "{p:?}"
    );
    assert!(p[0].message.contains("not a CA"));

    // An Ed25519 service-account key: Kubernetes cannot sign tokens with it.
    let t = set(
        FIXTURE,
        "k8sserviceaccount",
        "key",
        &value_at(FIXTURE, "os", "key"),
    );
    let p = problems(&t);
    assert_eq!(
        (p[0].path.as_str(), p[0].kind),
        ("certs.k8sserviceaccount.key", Kind::WrongKeyType)
    );

    // `EC PRIVATE KEY` must be SEC1; PKCS#8 content under that label is the wrong type.
    let os_pkcs8 =
        b64_text(&value_at(FIXTURE, "os", "key")).replace("ED25519 PRIVATE KEY", "EC PRIVATE KEY");
    let t = set(FIXTURE, "etcd", "key", &enc(&os_pkcs8));
    let p = problems(&t);
    assert_eq!(
        (p[0].path.as_str(), p[0].kind),
        ("certs.etcd.key", Kind::WrongKeyType),
        "{p:?}"
    );

    // A certificate where a key belongs.
    let t = set(FIXTURE, "etcd", "key", &value_at(FIXTURE, "etcd", "crt"));
    let p = problems(&t);
    assert_eq!(
        (p[0].path.as_str(), p[0].kind),
        ("certs.etcd.key", Kind::WrongKeyType)
    );

    // Generic PKCS#8 (`PRIVATE KEY`) is accepted, as Talos accepts it.
    let generic =
        b64_text(&value_at(FIXTURE, "os", "key")).replace("ED25519 PRIVATE KEY", "PRIVATE KEY");
    SecretsBundle::from_yaml(&set(FIXTURE, "os", "key", &enc(&generic)))
        .unwrap_or_else(|e| panic!("{e}"));

    // An empty key and a mapping where a string belongs.
    let t = set(FIXTURE, "os", "key", "''");
    let t = set(&t, "etcd", "crt", "{a: b}");
    let p = problems(&t);
    let got: Vec<(&str, Kind)> = p.iter().map(|x| (x.path.as_str(), x.kind)).collect();
    assert_eq!(
        got,
        vec![
            ("certs.etcd.crt", Kind::WrongType),
            ("certs.os.key", Kind::Missing)
        ]
    );
}

#[test]
fn cluster_id_must_be_url_safe() {
    let t = FIXTURE.replace(
        "cgvhCbucls-WqkESDTRqykFgb4hROI4cBpgB0YJLLtM=",
        "cgvhCbucls+WqkESDTRqykFgb4hROI4cBpgB0YJLLtM=",
    );
    let p = problems(&t);
    assert_eq!(
        (p[0].path.as_str(), p[0].kind),
        ("cluster.id", Kind::BadBase64)
    );
    assert_eq!(p[0].pos.unwrap().line, 2);
}
