//! The talosconfig client certificate: what it contains, that issuance is deterministic,
//! and when an existing one may be kept.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use kforge_pki::{
    DEFAULT_TALOS_ROLES, PkiError, TALOS_CLIENT_CERT_DEFAULT_TTL, client_cert_still_valid,
    issue_talos_client_cert,
};

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn certificate_has_talos_admin_fields() {
    let b = generated();
    let now = generated_at();
    let c = issue_talos_client_cert(b, DEFAULT_TALOS_ROLES, now, TALOS_CLIENT_CERT_DEFAULT_TTL)
        .unwrap();
    with_cert(&c.crt_pem, |x| {
        assert_eq!(
            x.signature_algorithm.algorithm.to_id_string(),
            "1.3.101.112",
            "signed by the Ed25519 OS CA"
        );
        assert_eq!(
            x.public_key().algorithm.algorithm.to_id_string(),
            "1.3.101.112",
            "Ed25519 key"
        );
        assert_eq!(subject_orgs(x), vec!["os:admin"]);
        assert!(subject_cns(x).is_empty(), "no CN");
        assert_eq!(x.validity().not_before.timestamp(), unix(now));
        assert_eq!(
            x.validity().not_after.timestamp() - unix(now),
            365 * 24 * 3600,
            "one year, as TalosAPIDefaultCertificateValidityDuration"
        );
        let ku = x.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.flags.count_ones() == 1);
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(
            eku.client_auth && !eku.server_auth && !eku.any && eku.other.is_empty(),
            "ClientAuth only"
        );
        assert!(
            x.basic_constraints().unwrap().is_none(),
            "no BasicConstraints on leaves (as Go)"
        );
        assert!(x.subject_alternative_name().unwrap().is_none());
        let serial = x.raw_serial();
        assert!(serial.len() <= 17 && serial.iter().skip_while(|b| **b == 0).count() <= 16);
    });
    let (label, der) = pem_der(c.key_pem.expose());
    assert_eq!(label, "ED25519 PRIVATE KEY");
    assert_eq!(der.len(), 48);

    let ca = b.os_ca_crt_pem().unwrap();
    openssl_verify(&ca, &c.crt_pem, "sslclient", now);
    let dir = Scratch::new();
    let crt = dir.write("c.pem", &c.crt_pem);
    let text = openssl(&["x509", "-noout", "-text", "-in", s(&crt)]);
    assert!(text.contains("Subject: O = os:admin"), "{text}");
    assert!(
        text.contains("TLS Web Client Authentication") && !text.contains("Server Authentication"),
        "{text}"
    );
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    // The key is the private half of the certificate.
    let key = dir.write("k.der", &der);
    let from_key = openssl(&["pkey", "-inform", "DER", "-pubout", "-in", s(&key)]);
    let from_cert = openssl(&["x509", "-noout", "-pubkey", "-in", s(&crt)]);
    assert_eq!(from_key, from_cert);
}

#[test]
fn several_roles_share_one_organization_rdn() {
    let b = generated();
    let c = issue_talos_client_cert(
        b,
        &["os:reader", "os:etcd:backup", "os:reader"],
        generated_at(),
        HOUR,
    )
    .unwrap();
    with_cert(&c.crt_pem, |x| {
        // Deduplicated; in DER SET OF order (shorter encodings first), as Go writes them.
        assert_eq!(subject_orgs(x), vec!["os:reader", "os:etcd:backup"]);
        assert_eq!(
            x.subject().iter_rdn().count(),
            1,
            "Go puts all organizations in one RDN"
        );
    });
}

#[test]
fn issuance_is_deterministic() {
    let b = generated();
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let a = issue_talos_client_cert(b, &["os:admin"], at, TALOS_CLIENT_CERT_DEFAULT_TTL).unwrap();
    let same = issue_talos_client_cert(
        b,
        &["os:admin"],
        at + Duration::from_millis(700),
        TALOS_CLIENT_CERT_DEFAULT_TTL,
    )
    .unwrap();
    assert_eq!(a.crt_pem, same.crt_pem);
    assert!(a.key_pem == same.key_pem);

    // Any change of input changes certificate and key.
    let later = issue_talos_client_cert(
        b,
        &["os:admin"],
        at + Duration::from_secs(1),
        TALOS_CLIENT_CERT_DEFAULT_TTL,
    )
    .unwrap();
    let shorter = issue_talos_client_cert(b, &["os:admin"], at, HOUR).unwrap();
    let reader =
        issue_talos_client_cert(b, &["os:reader"], at, TALOS_CLIENT_CERT_DEFAULT_TTL).unwrap();
    let other_bundle =
        issue_talos_client_cert(&fixture(), &["os:admin"], at, TALOS_CLIENT_CERT_DEFAULT_TTL)
            .unwrap();
    for other in [&later, &shorter, &reader, &other_bundle] {
        assert_ne!(a.crt_pem, other.crt_pem);
        assert!(a.key_pem != other.key_pem);
    }
    let serial = |p: &str| with_cert(p, |x| x.raw_serial().to_vec());
    assert_ne!(serial(&a.crt_pem), serial(&later.crt_pem));
}

#[test]
fn still_valid_checks_chain_key_and_remaining_lifetime() {
    let b = generated();
    let now = generated_at();
    let c = issue_talos_client_cert(b, DEFAULT_TALOS_ROLES, now, 30 * 24 * HOUR).unwrap();
    assert!(client_cert_still_valid(
        b,
        &c.crt_pem,
        &c.key_pem,
        now,
        24 * HOUR
    ));
    assert!(client_cert_still_valid(
        b,
        &c.crt_pem,
        &c.key_pem,
        now + 29 * 24 * HOUR,
        24 * HOUR
    ));
    assert!(
        !client_cert_still_valid(b, &c.crt_pem, &c.key_pem, now + 29 * 24 * HOUR, 25 * HOUR),
        "expiring soon"
    );
    assert!(
        !client_cert_still_valid(
            b,
            &c.crt_pem,
            &c.key_pem,
            now + 31 * 24 * HOUR,
            Duration::ZERO
        ),
        "expired"
    );
    assert!(
        !client_cert_still_valid(b, &c.crt_pem, &c.key_pem, now - HOUR, Duration::ZERO),
        "not yet valid"
    );

    // Another key, another CA, garbage.
    let other = issue_talos_client_cert(b, &["os:reader"], now, 30 * 24 * HOUR).unwrap();
    assert!(!client_cert_still_valid(
        b,
        &c.crt_pem,
        &other.key_pem,
        now,
        Duration::ZERO
    ));
    assert!(!client_cert_still_valid(
        &fixture(),
        &c.crt_pem,
        &c.key_pem,
        now,
        Duration::ZERO
    ));
    assert!(!client_cert_still_valid(
        b,
        "not a cert",
        &c.key_pem,
        now,
        Duration::ZERO
    ));
    assert!(!client_cert_still_valid(
        b,
        &c.crt_pem,
        &kforge_secret::SecretString::new("x".into()),
        now,
        Duration::ZERO
    ));

    // A server certificate from the same CA is not an acceptable client certificate.
    let sans = kforge_pki::SubjectAltNames::from_hosts(&["10.5.0.2"], "apid").unwrap();
    let server = kforge_pki::issue_apid_server_cert(b, "node", &sans, now, 24 * HOUR).unwrap();
    assert!(!client_cert_still_valid(
        b,
        &server.crt_pem,
        &server.key_pem,
        now,
        Duration::ZERO
    ));

    // A certificate signed by a look-alike CA (same subject O=talos, other key) is refused.
    let twin = kforge_pki::SecretsBundle::generate(now).unwrap();
    let forged = issue_talos_client_cert(&twin, DEFAULT_TALOS_ROLES, now, HOUR).unwrap();
    assert!(!client_cert_still_valid(
        b,
        &forged.crt_pem,
        &forged.key_pem,
        now,
        Duration::ZERO
    ));
}

#[test]
fn bad_requests_are_errors() {
    let b = generated();
    let now = generated_at();
    assert!(matches!(
        issue_talos_client_cert(b, &[], now, HOUR),
        Err(PkiError::InvalidRoles { .. })
    ));
    assert!(matches!(
        issue_talos_client_cert(b, &["os admin"], now, HOUR),
        Err(PkiError::InvalidRoles { .. })
    ));
    assert!(matches!(
        issue_talos_client_cert(b, DEFAULT_TALOS_ROLES, now, Duration::ZERO),
        Err(PkiError::Validity { .. })
    ));
    let before_epoch = SystemTime::UNIX_EPOCH - HOUR;
    assert!(matches!(
        issue_talos_client_cert(b, DEFAULT_TALOS_ROLES, before_epoch, HOUR),
        Err(PkiError::Validity { .. })
    ));
    // Beyond 2049 the validity switches to GeneralizedTime and still verifies.
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(2_600_000_000);
    let c = issue_talos_client_cert(b, DEFAULT_TALOS_ROLES, far, HOUR).unwrap();
    with_cert(&c.crt_pem, |x| {
        assert_eq!(x.validity().not_before.timestamp(), 2_600_000_000)
    });
}
