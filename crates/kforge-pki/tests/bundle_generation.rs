//! A generated bundle has exactly the shape `talosctl gen secrets` gives one.

mod common;

use std::time::Duration;

use common::*;
use kforge_pki::{CA_VALIDITY, SecretsBundle};
use x509_parser::prelude::X509Certificate;

fn is_token(s: &str) -> bool {
    let Some((a, b)) = s.split_once('.') else {
        return false;
    };
    let ok = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    };
    ok(a, 6) && ok(b, 16)
}

/// Checks the fields `NewSelfSignedCertificateAuthority` sets.
fn check_ca(crt_b64: &str, orgs: &[&str], sig_oid: &str, key_oid: &str) {
    let pem = b64_text(crt_b64);
    with_cert(&pem, |c: &X509Certificate<'_>| {
        assert_eq!(c.signature_algorithm.algorithm.to_id_string(), sig_oid);
        assert_eq!(c.public_key().algorithm.algorithm.to_id_string(), key_oid);
        assert_eq!(subject_orgs(c), orgs);
        assert!(subject_cns(c).is_empty());
        assert_eq!(c.subject().as_raw(), c.issuer().as_raw(), "self-signed");
        assert_eq!(c.version().0, 2, "X.509 v3");
        c.verify_signature(None).expect("self-signature verifies");

        assert_eq!(c.validity().not_before.timestamp(), unix(generated_at()));
        assert_eq!(
            c.validity().not_after.timestamp() - c.validity().not_before.timestamp(),
            CA_VALIDITY.as_secs() as i64
        );
        assert_eq!(CA_VALIDITY, Duration::from_secs(87_600 * 3600));

        let serial = c.raw_serial();
        let significant = serial.iter().skip_while(|b| **b == 0).count();
        assert!(significant <= 16, "serial below 2^128");

        let bc = c.basic_constraints().unwrap().expect("BasicConstraints");
        assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint.is_none());
        let ku = c.key_usage().unwrap().expect("KeyUsage");
        assert!(ku.critical);
        assert!(ku.value.digital_signature() && ku.value.key_cert_sign());
        assert_eq!(
            ku.value.flags.count_ones(),
            2,
            "only CertSign|DigitalSignature"
        );
        let eku = c.extended_key_usage().unwrap().expect("ExtKeyUsage");
        assert!(
            eku.value.server_auth
                && eku.value.client_auth
                && !eku.value.any
                && eku.value.other.is_empty()
        );
        let ski = c
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.len())
                }
                _ => None,
            })
            .expect("SubjectKeyId");
        assert_eq!(ski, 20);
        assert!(
            c.get_extension_unique(
                &x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER
            )
            .unwrap()
            .is_none()
        );
    });
}

#[test]
fn cas_have_talos_algorithms_subjects_and_fields() {
    let b = generated();
    let ecdsa = "1.2.840.10045.4.3.2";
    let ec_key = "1.2.840.10045.2.1";
    check_ca(b.etcd_ca_crt(), &["etcd"], ecdsa, ec_key);
    check_ca(b.k8s_ca_crt(), &["kubernetes"], ecdsa, ec_key);
    check_ca(b.k8s_aggregator_ca_crt(), &[], ecdsa, ec_key);
    check_ca(b.os_ca_crt(), &["talos"], "1.3.101.112", "1.3.101.112");
    // The aggregator CA has an empty subject, as Talos makes it.
    with_cert(&b64_text(b.k8s_aggregator_ca_crt()), |c| {
        assert_eq!(c.subject().as_raw(), &[0x30, 0x00])
    });
}

#[test]
fn keys_use_talos_pem_types() {
    let b = generated();
    for key in [b.etcd_ca_key(), b.k8s_ca_key(), b.k8s_aggregator_ca_key()] {
        let (label, der) = pem_der(&b64_text(key.expose()));
        assert_eq!(label, "EC PRIVATE KEY");
        // SEC1 with the [0] named-curve parameter (prime256v1) and [1] public key, as Go writes.
        let text = openssl(&[
            "asn1parse",
            "-inform",
            "DER",
            "-in",
            s(&Scratch::new().write("k.der", &der)),
        ]);
        assert!(text.contains("prime256v1"), "{text}");
    }
    let (label, der) = pem_der(&b64_text(b.os_ca_key().expose()));
    assert_eq!(label, "ED25519 PRIVATE KEY");
    assert_eq!(der.len(), 48, "PKCS#8 v1, as Go's MarshalPKCS8PrivateKey");
    let (label, _) = pem_der(&b64_text(b.k8s_service_account_key().expose()));
    assert_eq!(label, "RSA PRIVATE KEY");
}

#[test]
fn openssl_reads_every_certificate_and_key() {
    let b = generated();
    let dir = Scratch::new();
    for (name, crt) in [
        ("etcd", b.etcd_ca_crt()),
        ("k8s", b.k8s_ca_crt()),
        ("agg", b.k8s_aggregator_ca_crt()),
        ("os", b.os_ca_crt()),
    ] {
        let path = dir.write(&format!("{name}.crt"), b64(crt));
        let text = openssl(&["x509", "-noout", "-text", "-in", s(&path)]);
        assert!(text.contains("CA:TRUE"), "{text}");
        // A self-signed CA verifies against itself.
        openssl(&["verify", "-x509_strict", "-CAfile", s(&path), s(&path)]);
    }
    for (name, key) in [
        ("etcd", b.etcd_ca_key()),
        ("k8s", b.k8s_ca_key()),
        ("agg", b.k8s_aggregator_ca_key()),
    ] {
        let path = dir.write(&format!("{name}.key"), b64(key.expose()));
        openssl(&["pkey", "-noout", "-in", s(&path)]);
    }
    let sa = dir.write("sa.key", b64(b.k8s_service_account_key().expose()));
    let text = openssl(&["rsa", "-noout", "-text", "-in", s(&sa)]);
    assert!(text.contains("4096 bit"), "{text}");
    openssl(&["rsa", "-check", "-noout", "-in", s(&sa)]);
    // OpenSSL does not know the `ED25519 PRIVATE KEY` label; the content is PKCS#8 DER.
    let (_, os_der) = pem_der(&b64_text(b.os_ca_key().expose()));
    let os = dir.write("os.der", &os_der);
    let text = openssl(&["pkey", "-inform", "DER", "-noout", "-text", "-in", s(&os)]);
    assert!(text.contains("ED25519"), "{text}");
    // Each CA key is the private half of its certificate.
    for (name, crt, key) in [
        ("etcd", b.etcd_ca_crt(), b.etcd_ca_key()),
        ("k8s", b.k8s_ca_crt(), b.k8s_ca_key()),
    ] {
        let c = dir.write(&format!("{name}-m.crt"), b64(crt));
        let k = dir.write(&format!("{name}-m.key"), b64(key.expose()));
        let from_cert = openssl(&["x509", "-noout", "-pubkey", "-in", s(&c)]);
        let from_key = openssl(&["pkey", "-pubout", "-in", s(&k)]);
        assert_eq!(from_cert, from_key);
    }
}

#[test]
fn tokens_and_secrets_have_talos_formats() {
    let b = generated();
    assert!(is_token(b.bootstrap_token().expose()), "bootstrap token");
    assert!(is_token(b.trustd_token().expose()), "trustd token");
    use base64::Engine;
    let id = base64::engine::general_purpose::URL_SAFE
        .decode(b.cluster_id())
        .expect("URL-safe base64");
    assert_eq!(id.len(), 32);
    assert_eq!(b.cluster_id().len(), 44);
    assert_eq!(b64(b.cluster_secret().expose()).len(), 32);
    assert_eq!(
        b64(b.secretbox_encryption_secret().expect("secretbox").expose()).len(),
        32
    );
    assert!(b.aescbc_encryption_secret().is_none());
}

#[test]
fn two_bundles_share_nothing() {
    let a = generated();
    let b = SecretsBundle::generate(generated_at()).unwrap();
    assert_ne!(a.cluster_id(), b.cluster_id());
    assert!(a.cluster_secret() != b.cluster_secret());
    assert!(a.bootstrap_token() != b.bootstrap_token());
    assert!(a.os_ca_key() != b.os_ca_key());
    assert_ne!(a.etcd_ca_crt(), b.etcd_ca_crt());
}

#[test]
fn generated_bundle_round_trips_through_yaml() {
    let b = generated();
    let text = b.to_yaml();
    let back = SecretsBundle::from_yaml(text.expose()).unwrap_or_else(|e| panic!("{e}"));
    assert!(&back == b);
    assert_eq!(back.to_yaml().expose(), text.expose());
    // talosctl's layout: 4-space indentation, sections in struct order.
    let lines: Vec<&str> = text.expose().lines().collect();
    assert_eq!(lines[0], "cluster:");
    assert!(lines[1].starts_with("    id: "));
    let sections: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.starts_with(' '))
        .collect();
    assert_eq!(
        sections,
        vec!["cluster:", "secrets:", "trustdinfo:", "certs:"]
    );
    let certs: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("    ") && !l.starts_with("     ") && l.ends_with(':'))
        .collect();
    assert_eq!(
        certs,
        vec![
            "    etcd:",
            "    k8s:",
            "    k8saggregator:",
            "    k8sserviceaccount:",
            "    os:"
        ]
    );
}

static_assertions::assert_not_impl_any!(kforge_pki::SecretsBundle: std::fmt::Debug, std::fmt::Display);
static_assertions::assert_not_impl_any!(kforge_pki::EncryptionSecret: std::fmt::Debug, std::fmt::Display);
static_assertions::assert_not_impl_any!(kforge_pki::IssuedCertificate: std::fmt::Debug, std::fmt::Display);
static_assertions::assert_not_impl_any!(kforge_pki::Talosconfig: std::fmt::Debug, std::fmt::Display);
static_assertions::assert_not_impl_any!(kforge_pki::TalosContext: std::fmt::Debug, std::fmt::Display);
static_assertions::assert_not_impl_any!(kforge_pki::BasicAuth: std::fmt::Debug, std::fmt::Display);
