//! talosconfig files as talosctl reads and writes them.

mod common;

use std::time::Duration;

use common::*;
use kforge_pki::*;
use kforge_secret::SecretString;

#[test]
fn for_cluster_writes_what_talosctl_writes() {
    let b = fixture();
    let now = generated_at();
    let cert = issue_talos_client_cert(&b, DEFAULT_TALOS_ROLES, now, TALOS_CLIENT_CERT_DEFAULT_TTL)
        .unwrap();
    let cfg = Talosconfig::for_cluster(
        "prod",
        &["10.5.0.2".into(), "10.5.0.3".into()],
        &["10.5.0.2".into()],
        &b,
        &cert.crt_pem,
        &cert.key_pem,
    );
    let expected = format!(
        "context: prod\ncontexts:\n    prod:\n        endpoints:\n            - 10.5.0.2\n            - 10.5.0.3\n        nodes:\n            - 10.5.0.2\n        ca: {}\n        crt: {}\n        key: {}\n",
        b.os_ca_crt(),
        enc(&cert.crt_pem),
        enc(cert.key_pem.expose()),
    );
    assert_eq!(cfg.to_yaml().expose(), &expected);

    // Read back: same value, same text; the stored cert can be kept by genconfig.
    let back = Talosconfig::from_yaml(&expected).unwrap_or_else(|e| panic!("{e}"));
    assert!(back == cfg);
    assert_eq!(back.to_yaml().expose(), &expected);
    let ctx = back.current().unwrap();
    assert_eq!(ctx.ca_pem().unwrap(), b.os_ca_crt_pem().unwrap());
    assert_eq!(ctx.crt_pem().unwrap(), cert.crt_pem);
    assert!(ctx.key_pem().unwrap() == cert.key_pem);
    assert!(client_cert_still_valid(
        &b,
        &ctx.crt_pem().unwrap(),
        &ctx.key_pem().unwrap(),
        now,
        Duration::from_secs(86400)
    ));
}

fn enc(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn gen_config_style_empty_endpoints() {
    let b = fixture();
    let cert = issue_talos_client_cert(
        &b,
        DEFAULT_TALOS_ROLES,
        generated_at(),
        TALOS_CLIENT_CERT_DEFAULT_TTL,
    )
    .unwrap();
    let cfg = Talosconfig::for_cluster("c1", &[], &[], &b, &cert.crt_pem, &cert.key_pem);
    let text = cfg.to_yaml();
    assert!(
        text.expose()
            .starts_with("context: c1\ncontexts:\n    c1:\n        endpoints: []\n        ca: "),
        "{}",
        text.expose()
    );
    assert!(!text.expose().contains("nodes"));
}

/// A multi-context file as talosctl (yaml.v3) lays it out: contexts in yaml.v3 key order,
/// optional fields only when set, auth blocks.
const MULTI: &str = "context: lab-2
contexts:
    Z:
        endpoints: []
    lab-2:
        endpoints:
            - 192.168.1.2
        nodes:
            - 192.168.1.2
            - 192.168.1.3
        ca: Q0E=
        crt: Q1JU
        key: S0VZ
        cluster: lab
    lab-10:
        endpoints:
            - '[fd00::1]:50000'
        auth:
            basic:
                username: admin
                password: hunter2
            siderov1:
                identity: me@example.org
";

#[test]
fn multi_context_file_round_trips_byte_for_byte() {
    let cfg = Talosconfig::from_yaml(MULTI).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.context, "lab-2");
    assert_eq!(cfg.contexts.len(), 3);
    let lab10 = &cfg.contexts["lab-10"];
    assert_eq!(lab10.endpoints, vec!["[fd00::1]:50000"]);
    let basic = lab10.auth.basic.as_ref().unwrap();
    assert_eq!(basic.username, "admin");
    assert_eq!(basic.password.expose(), "hunter2");
    assert_eq!(
        lab10.auth.siderov1.as_ref().unwrap().identity,
        "me@example.org"
    );
    assert_eq!(cfg.current().unwrap().cluster, "lab");
    // yaml.v3 single-quotes a string only the syntax keeps from being plain (a leading `[`),
    // as talosctl writes it: the file comes back byte for byte.
    assert_eq!(cfg.to_yaml().expose(), MULTI);
}

#[test]
fn problems_are_reported_with_paths() {
    let text = "context: a\ncontexts:\n    a:\n        endpoint: [x]\n        nodes: x\n        auth:\n            basic: {user: u}\n    b:\n";
    let err = Talosconfig::from_yaml(text).err().expect("rejected");
    let got: Vec<(String, BundleProblemKind, usize)> = err
        .problems()
        .iter()
        .map(|p| (p.path.clone(), p.kind, p.pos.unwrap().line))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "contexts.a.endpoint".into(),
                BundleProblemKind::UnknownKey,
                4
            ),
            ("contexts.a.nodes".into(), BundleProblemKind::WrongType, 5),
            (
                "contexts.a.auth.basic.user".into(),
                BundleProblemKind::UnknownKey,
                7
            ),
            ("contexts.b".into(), BundleProblemKind::Missing, 8),
        ],
        "{err}"
    );
    assert!(
        err.to_string().contains("did you mean `endpoints`?"),
        "{err}"
    );
    assert!(matches!(
        Talosconfig::from_yaml("context: [\n"),
        Err(TalosconfigError::Yaml(_))
    ));
    assert!(Talosconfig::from_yaml("").unwrap().contexts.is_empty());
}

#[test]
fn undecodable_fields_are_errors_not_panics() {
    let mut ctx = TalosContext {
        crt: "%%%".into(),
        key: SecretString::new("%%%".into()),
        ..Default::default()
    };
    assert!(ctx.crt_pem().is_err());
    assert!(ctx.key_pem().is_err());
    ctx.ca = enc("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
    assert!(
        ctx.ca_pem().is_ok(),
        "decoding base64 does not judge the PEM"
    );
}
