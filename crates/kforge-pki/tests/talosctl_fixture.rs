//! The bundle talosctl wrote for Talos' own tests (`pkg/machinery/config/generate/secrets/
//! testdata/secrets.yaml`, a data fixture) loads, writes back byte for byte, and issues
//! certificates that chain to it.

mod common;

use common::*;
use kforge_pki::{
    DEFAULT_TALOS_ROLES, SecretsBundle, TALOS_CLIENT_CERT_DEFAULT_TTL, client_cert_still_valid,
    issue_talos_client_cert,
};

#[test]
fn fixture_loads_with_the_stored_values() {
    let b = fixture();
    assert_eq!(
        b.cluster_id(),
        "cgvhCbucls-WqkESDTRqykFgb4hROI4cBpgB0YJLLtM="
    );
    assert_eq!(
        b.cluster_secret().expose(),
        "Wiu0qx68V3MKhFDr8+OFwGCNOOPBiQCDsLpRa3MdxEQ="
    );
    assert_eq!(b.bootstrap_token().expose(), "2psnp2.lry8e9gycdix3bpa");
    assert_eq!(b.trustd_token().expose(), "oamejv.9tk1nhuwnlc2nghf");
    assert_eq!(
        b.secretbox_encryption_secret().unwrap().expose(),
        "6zWBpno849HlD5jeuTmGToFYP+z8lgkJa0fhHobv7mE="
    );
    assert!(
        b.os_ca_crt()
            .starts_with("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJQekNC")
    );
    assert!(
        b.os_ca_key()
            .expose()
            .starts_with("LS0tLS1CRUdJTiBFRDI1NTE5IFBSSVZBVEUgS0VZLS0tLS0K")
    );
    // This older fixture carries an ECDSA service-account key (contract < 1.7); still valid.
    assert!(
        b64_text(b.k8s_service_account_key().expose())
            .starts_with("-----BEGIN EC PRIVATE KEY-----")
    );
    assert!(
        b.os_ca_crt_pem()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----\n")
    );
}

#[test]
fn fixture_writes_back_byte_for_byte() {
    let b = fixture();
    assert_eq!(
        b.to_yaml().expose(),
        FIXTURE,
        "talosctl layout: 4-space indent, Go field order"
    );
    let again = SecretsBundle::from_yaml(b.to_yaml().expose()).unwrap();
    assert!(again == b);
}

#[test]
fn reordered_or_reindented_input_loads_and_is_normalized() {
    // Same content, 2-space indentation and sections in another order.
    let mut lines = Vec::new();
    for l in FIXTURE.lines() {
        let indent = l.len() - l.trim_start().len();
        lines.push(format!("{}{}", " ".repeat(indent / 2), l.trim_start()));
    }
    let two_space = lines.join("\n");
    let (head, certs) = two_space.split_at(two_space.find("certs:").unwrap());
    let reordered = format!("{certs}\n{head}");
    let b = SecretsBundle::from_yaml(&reordered).unwrap_or_else(|e| panic!("{e}"));
    assert!(b == fixture());
    assert_eq!(b.to_yaml().expose(), FIXTURE);
}

#[test]
fn client_certificate_from_the_fixture_chains_to_its_os_ca() {
    let b = fixture();
    let now = generated_at();
    let cert = issue_talos_client_cert(&b, DEFAULT_TALOS_ROLES, now, TALOS_CLIENT_CERT_DEFAULT_TTL)
        .unwrap();
    let ca_pem = b.os_ca_crt_pem().unwrap();
    // Go and rustls find the issuer by raw bytes: the leaf's issuer must be the CA's subject.
    let ca_subject = with_cert(&ca_pem, |c| c.subject().as_raw().to_vec());
    with_cert(&cert.crt_pem, |c| {
        assert_eq!(c.issuer().as_raw(), ca_subject.as_slice())
    });
    openssl_verify(&ca_pem, &cert.crt_pem, "sslclient", now);
    assert!(client_cert_still_valid(
        &b,
        &cert.crt_pem,
        &cert.key_pem,
        now,
        std::time::Duration::from_secs(3600)
    ));
    // And it does not chain to a different bundle's CA.
    assert!(!client_cert_still_valid(
        generated(),
        &cert.crt_pem,
        &cert.key_pem,
        now,
        std::time::Duration::ZERO
    ));
}
