//! Leaf certificates for the simulated node and deploy, and the admin kubeconfig: fields,
//! chains (x509-parser and `openssl verify`), and key type following the CA.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use kforge_pki::*;

fn sans() -> SubjectAltNames {
    SubjectAltNames::from_hosts(
        &[
            "10.5.0.2",
            "fd00::2",
            "talos-cp-1",
            "talos-cp-1.example.org",
        ],
        "test",
    )
    .unwrap()
}

fn ips(x: &x509_parser::prelude::X509Certificate<'_>) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Some(san) = x.subject_alternative_name().unwrap() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => dns.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => ips.push(match b.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()),
                    _ => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()),
                }),
                other => panic!("unexpected SAN {other:?}"),
            }
        }
    }
    (dns, ips)
}

struct Expect<'a> {
    key_alg: &'a str,
    orgs: &'a [&'a str],
    cn: Option<&'a str>,
    server: bool,
    client: bool,
    key_encipherment: bool,
    ttl: Duration,
}

fn check(ca_pem: &str, leaf: &IssuedCertificate, e: Expect<'_>) {
    let ca_subject = with_cert(ca_pem, |c| c.subject().as_raw().to_vec());
    let ca_ski = with_cert(ca_pem, |c| {
        c.iter_extensions()
            .find_map(|x| match x.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            })
            .unwrap()
    });
    let (_, ca_der) = pem_der(ca_pem);
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    with_cert(&leaf.crt_pem, |x| {
        assert_eq!(
            x.issuer().as_raw(),
            ca_subject.as_slice(),
            "issuer is the CA subject, byte for byte"
        );
        x.verify_signature(Some(ca.public_key()))
            .expect("signed by the CA");
        assert_eq!(x.public_key().algorithm.algorithm.to_id_string(), e.key_alg);
        assert_eq!(subject_orgs(x), e.orgs);
        assert_eq!(
            subject_cns(x),
            e.cn.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        );
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert_eq!((eku.server_auth, eku.client_auth), (e.server, e.client));
        let ku = x.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature());
        assert_eq!(ku.key_encipherment(), e.key_encipherment);
        assert!(!ku.key_cert_sign());
        assert!(x.basic_constraints().unwrap().is_none());
        let aki = x
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            });
        assert_eq!(
            aki,
            Some(ca_ski.clone()),
            "AKI = CA SubjectKeyId, as Go sets it"
        );
        let v = x.validity();
        assert_eq!(
            (v.not_after.timestamp() - v.not_before.timestamp()) as u64,
            e.ttl.as_secs()
        );
    });
    // The private key is the certificate's.
    let dir = Scratch::new();
    let crt = dir.write("c.pem", &leaf.crt_pem);
    let (label, der) = pem_der(leaf.key_pem.expose());
    let key = dir.write("k.der", &der);
    let form_key = match label.as_str() {
        "EC PRIVATE KEY" => openssl(&["ec", "-inform", "DER", "-pubout", "-in", s(&key)]),
        _ => openssl(&["pkey", "-inform", "DER", "-pubout", "-in", s(&key)]),
    };
    assert_eq!(
        form_key
            .lines()
            .filter(|l| !l.contains("read EC key") && !l.contains("writing EC key"))
            .collect::<Vec<_>>()
            .join("\n")
            .trim(),
        openssl(&["x509", "-noout", "-pubkey", "-in", s(&crt)]).trim()
    );
    openssl(&["x509", "-noout", "-text", "-in", s(&crt)]);
}

#[test]
fn apid_server_certificate() {
    let b = generated();
    let now = generated_at();
    let leaf =
        issue_apid_server_cert(b, "talos-cp-1", &sans(), now, APID_CERT_DEFAULT_TTL).unwrap();
    let ca = b.os_ca_crt_pem().unwrap();
    check(
        &ca,
        &leaf,
        Expect {
            key_alg: "1.3.101.112",
            orgs: &[],
            cn: Some("talos-cp-1"),
            server: true,
            client: true,
            key_encipherment: false,
            ttl: Duration::from_secs(24 * 3600),
        },
    );
    with_cert(&leaf.crt_pem, |x| {
        let (dns, ips) = ips(x);
        assert_eq!(dns, vec!["talos-cp-1", "talos-cp-1.example.org"]);
        assert_eq!(
            ips,
            vec![
                "10.5.0.2".parse::<IpAddr>().unwrap(),
                "fd00::2".parse().unwrap()
            ]
        );
    });
    openssl_verify(&ca, &leaf.crt_pem, "sslserver", now);
    let (label, _) = pem_der(leaf.key_pem.expose());
    assert_eq!(label, "ED25519 PRIVATE KEY");
}

#[test]
fn etcd_certificates() {
    let b = generated();
    let now = generated_at();
    let ca = b.etcd_ca_crt_pem().unwrap();
    let ec = "1.2.840.10045.2.1";

    let peer = issue_etcd_peer_cert(b, "talos-cp-1", &sans(), now, ETCD_CERT_DEFAULT_TTL).unwrap();
    check(
        &ca,
        &peer,
        Expect {
            key_alg: ec,
            orgs: &[],
            cn: Some("talos-cp-1"),
            server: true,
            client: true,
            key_encipherment: true,
            ttl: ETCD_CERT_DEFAULT_TTL,
        },
    );
    openssl_verify(&ca, &peer.crt_pem, "sslserver", now);
    openssl_verify(&ca, &peer.crt_pem, "sslclient", now);

    let server =
        issue_etcd_server_cert(b, "talos-cp-1", &sans(), now, ETCD_CERT_DEFAULT_TTL).unwrap();
    check(
        &ca,
        &server,
        Expect {
            key_alg: ec,
            orgs: &[],
            cn: Some("talos-cp-1"),
            server: true,
            client: true,
            key_encipherment: true,
            ttl: ETCD_CERT_DEFAULT_TTL,
        },
    );
    with_cert(&server.crt_pem, |x| {
        let (dns, ips) = ips(x);
        assert!(dns.contains(&"localhost".to_string()));
        assert!(ips.contains(&"127.0.0.1".parse().unwrap()));
        assert!(
            ips.contains(&"::1".parse().unwrap()),
            "the node has IPv6, so ::1 too"
        );
    });
    openssl_verify(&ca, &server.crt_pem, "sslserver", now);
    let v4_only = SubjectAltNames::from_hosts(&["10.5.0.2"], "test").unwrap();
    let server4 = issue_etcd_server_cert(b, "n", &v4_only, now, ETCD_CERT_DEFAULT_TTL).unwrap();
    with_cert(&server4.crt_pem, |x| {
        assert!(!ips(x).1.contains(&"::1".parse().unwrap()))
    });

    let client = issue_etcd_client_cert(b, "kube-apiserver", now, ETCD_CERT_DEFAULT_TTL).unwrap();
    check(
        &ca,
        &client,
        Expect {
            key_alg: ec,
            orgs: &[],
            cn: Some("kube-apiserver"),
            server: false,
            client: true,
            key_encipherment: true,
            ttl: ETCD_CERT_DEFAULT_TTL,
        },
    );
    openssl_verify(&ca, &client.crt_pem, "sslclient", now);
    let (label, _) = pem_der(client.key_pem.expose());
    assert_eq!(label, "EC PRIVATE KEY");
}

#[test]
fn kubernetes_certificates() {
    let b = generated();
    let now = generated_at();
    let ca = b.k8s_ca_crt_pem().unwrap();
    let ec = "1.2.840.10045.2.1";
    let api_sans = SubjectAltNames::from_hosts(
        &[
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "10.96.0.1",
            "127.0.0.1",
            "10.5.0.2",
        ],
        "kube-apiserver",
    )
    .unwrap();
    let api = issue_kube_apiserver_cert(b, &api_sans, now, KUBERNETES_CERT_DEFAULT_TTL).unwrap();
    check(
        &ca,
        &api,
        Expect {
            key_alg: ec,
            orgs: &["kube-master"],
            cn: Some("kube-apiserver"),
            server: true,
            client: false,
            key_encipherment: true,
            ttl: KUBERNETES_CERT_DEFAULT_TTL,
        },
    );
    openssl_verify(&ca, &api.crt_pem, "sslserver", now);

    let admin = issue_kube_admin_client_cert(b, now, KUBERNETES_CERT_DEFAULT_TTL).unwrap();
    check(
        &ca,
        &admin,
        Expect {
            key_alg: ec,
            orgs: &["system:masters"],
            cn: Some("admin"),
            server: false,
            client: true,
            key_encipherment: true,
            ttl: KUBERNETES_CERT_DEFAULT_TTL,
        },
    );
    openssl_verify(&ca, &admin.crt_pem, "sslclient", now);
}

#[test]
fn leaves_from_the_talosctl_fixture_verify() {
    let b = fixture();
    let now = generated_at();
    let apid = issue_apid_server_cert(&b, "n", &sans(), now, APID_CERT_DEFAULT_TTL).unwrap();
    openssl_verify(&b.os_ca_crt_pem().unwrap(), &apid.crt_pem, "sslserver", now);
    let peer = issue_etcd_peer_cert(&b, "n", &sans(), now, ETCD_CERT_DEFAULT_TTL).unwrap();
    openssl_verify(
        &b.etcd_ca_crt_pem().unwrap(),
        &peer.crt_pem,
        "sslserver",
        now,
    );
    let admin = issue_kube_admin_client_cert(&b, now, KUBERNETES_CERT_DEFAULT_TTL).unwrap();
    openssl_verify(
        &b.k8s_ca_crt_pem().unwrap(),
        &admin.crt_pem,
        "sslclient",
        now,
    );
}

#[test]
fn admin_kubeconfig_is_talos_shaped() {
    let b = generated();
    let now = generated_at();
    let text = admin_kubeconfig(
        "prod",
        "https://10.5.0.2:6443",
        b,
        now,
        ADMIN_KUBECONFIG_DEFAULT_TTL,
    )
    .unwrap();
    let doc = kforge_yaml::parse(text.expose()).unwrap().to_value();
    assert_eq!(doc["apiVersion"], "v1");
    assert_eq!(doc["kind"], "Config");
    assert_eq!(doc["current-context"], "admin@prod");
    assert_eq!(doc["clusters"][0]["name"], "prod");
    assert_eq!(
        doc["clusters"][0]["cluster"]["server"],
        "https://10.5.0.2:6443"
    );
    assert_eq!(
        doc["clusters"][0]["cluster"]["certificate-authority-data"],
        b.k8s_ca_crt()
    );
    assert_eq!(doc["users"][0]["name"], "admin@prod");
    assert_eq!(doc["contexts"][0]["name"], "admin@prod");
    assert_eq!(doc["contexts"][0]["context"]["cluster"], "prod");
    assert_eq!(doc["contexts"][0]["context"]["namespace"], "default");
    assert_eq!(doc["contexts"][0]["context"]["user"], "admin@prod");
    let crt = b64_text(
        doc["users"][0]["user"]["client-certificate-data"]
            .as_str()
            .unwrap(),
    );
    let key = b64_text(doc["users"][0]["user"]["client-key-data"].as_str().unwrap());
    with_cert(&crt, |x| {
        assert_eq!(subject_orgs(x), vec!["system:masters"]);
        assert_eq!(subject_cns(x), vec!["admin"]);
        assert_eq!(
            x.validity().not_before.timestamp(),
            unix(now) - 10,
            "back-dated 10 s for clock skew"
        );
        assert_eq!(
            x.validity().not_after.timestamp(),
            unix(now) + 365 * 24 * 3600
        );
    });
    assert!(key.starts_with("-----BEGIN EC PRIVATE KEY-----"));
    openssl_verify(&b.k8s_ca_crt_pem().unwrap(), &crt, "sslclient", now);
    // Talos' template layout, line by line.
    let shape: Vec<String> = text
        .expose()
        .lines()
        .map(|l| {
            l.split_once(": ")
                .map_or(l.to_string(), |(k, _)| format!("{k}:"))
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            "apiVersion:",
            "kind:",
            "clusters:",
            "- name:",
            "  cluster:",
            "    server:",
            "    certificate-authority-data:",
            "users:",
            "- name:",
            "  user:",
            "    client-certificate-data:",
            "    client-key-data:",
            "contexts:",
            "- context:",
            "    cluster:",
            "    namespace:",
            "    user:",
            "  name:",
            "current-context:",
        ]
    );
    assert!(matches!(
        admin_kubeconfig("", "https://x:6443", b, now, ADMIN_KUBECONFIG_DEFAULT_TTL),
        Err(PkiError::InvalidInput { .. })
    ));
    assert!(matches!(
        admin_kubeconfig(
            "a b",
            "https://x:6443",
            b,
            now,
            ADMIN_KUBECONFIG_DEFAULT_TTL
        ),
        Err(PkiError::InvalidInput { .. })
    ));
    assert!(matches!(
        admin_kubeconfig(
            "a",
            "https://x:6443\nx",
            b,
            now,
            ADMIN_KUBECONFIG_DEFAULT_TTL
        ),
        Err(PkiError::InvalidInput { .. })
    ));
}

#[test]
fn invalid_hosts_are_rejected() {
    let err = SubjectAltNames::from_hosts(&["ok.example", "not a host"], "apid server certificate")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "`not a host` is neither an IP address nor a DNS name, so it cannot be a subject alternative name of the apid server certificate"
    );
}
