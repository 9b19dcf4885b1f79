//! Leaf certificates a Talos node issues from the bundle's CAs, as Talos' controllers issue
//! them (`internal/app/machined/pkg/controllers/secrets`, `internal/pkg/etcd/certs.go`):
//! the apid server certificate from the OS CA, etcd peer/server/client certificates from
//! the etcd CA, the kube-apiserver serving certificate and the admin client certificate
//! from the Kubernetes CA, and the admin kubeconfig Talos hands out. The leaf key follows
//! the CA's algorithm, as `siderolabs/crypto` `NewKeyPair` does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use kforge_secret::SecretString;
use x509_cert::der::flagset::FlagSet;
use x509_cert::ext::pkix::KeyUsages;

use crate::bundle::SecretsBundle;
use crate::certificate::{
    self, CertificateAuthority, CertificateSpec, Signer, SubjectAltNames, Usage,
};
use crate::client_cert::IssuedCertificate;
use crate::error::PkiError;
use crate::keys::{KeyAlgorithm, PrivateKey};
use crate::pem_text;

/// apid server certificates live 24 h and are rotated every 12 h.
pub const APID_CERT_DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Talos issues etcd certificates for 87600 h.
pub const ETCD_CERT_DEFAULT_TTL: Duration = Duration::from_secs(87_600 * 3600);
/// Kubernetes serving/client certificates: one year.
pub const KUBERNETES_CERT_DEFAULT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// `cluster.adminKubeconfig.certLifetime` default: one year.
pub const ADMIN_KUBECONFIG_DEFAULT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Talos back-dates the admin kubeconfig certificate to tolerate clock skew.
const KUBECONFIG_ALLOWED_SKEW: Duration = Duration::from_secs(10);
/// RSA leaf keys (only for imported RSA CAs) get Go's default size.
const RSA_LEAF_BITS: usize = 4096;

struct Leaf<'a> {
    organizations: &'a [&'a str],
    common_name: Option<&'a str>,
    key_usage: FlagSet<KeyUsages>,
    usage: Usage,
    sans: &'a SubjectAltNames,
    not_before: SystemTime,
    ttl: Duration,
    what: &'static str,
}

fn issue_leaf(ca: &CertificateAuthority, leaf: Leaf<'_>) -> Result<IssuedCertificate, PkiError> {
    let algorithm: KeyAlgorithm = ca.key.algorithm();
    let (key, key_pem) = PrivateKey::generate(algorithm, RSA_LEAF_BITS)?;
    let spec = CertificateSpec {
        serial: certificate::random_serial()?,
        organizations: leaf.organizations.iter().map(|s| s.to_string()).collect(),
        common_name: leaf.common_name.map(str::to_string),
        not_before: leaf.not_before,
        not_after: certificate::add_duration(leaf.not_before, leaf.ttl, leaf.what)?,
        key_usage: leaf.key_usage,
        usage: Some(leaf.usage),
        is_ca: false,
        subject_key_id: None,
        sans: leaf.sans,
        what: leaf.what,
    };
    let der = certificate::issue(&spec, &key, Signer::Ca(ca))?;
    Ok(IssuedCertificate {
        crt_pem: pem_text::encode("CERTIFICATE", &der),
        key_pem,
    })
}

/// The apid (Talos API, port 50000) server certificate: OS CA, CN = the node's name,
/// SANs = its IPs and DNS names, KeyUsage DigitalSignature, ExtKeyUsage ServerAuth and
/// ClientAuth (the `siderolabs/crypto` defaults apid's controller keeps).
pub fn issue_apid_server_cert(
    bundle: &SecretsBundle,
    common_name: &str,
    sans: &SubjectAltNames,
    not_before: SystemTime,
    ttl: Duration,
) -> Result<IssuedCertificate, PkiError> {
    let ca = bundle.os_ca("issue the apid server certificate")?;
    issue_leaf(
        &ca,
        Leaf {
            organizations: &[],
            common_name: Some(common_name),
            key_usage: KeyUsages::DigitalSignature.into(),
            usage: Usage::ServerAndClient,
            sans,
            not_before,
            ttl,
            what: "apid server certificate",
        },
    )
}

/// The etcd peer certificate: etcd CA, CN = hostname, the node's addresses as SANs,
/// KeyUsage DigitalSignature|KeyEncipherment, ExtKeyUsage ServerAuth+ClientAuth.
pub fn issue_etcd_peer_cert(
    bundle: &SecretsBundle,
    hostname: &str,
    sans: &SubjectAltNames,
    not_before: SystemTime,
    ttl: Duration,
) -> Result<IssuedCertificate, PkiError> {
    let ca = bundle.etcd_ca("issue the etcd peer certificate")?;
    issue_leaf(
        &ca,
        Leaf {
            organizations: &[],
            common_name: Some(hostname),
            key_usage: KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment,
            usage: Usage::ServerAndClient,
            sans,
            not_before,
            ttl,
            what: "etcd peer certificate",
        },
    )
}

/// The etcd server (client-facing) certificate: like the peer certificate plus
/// `localhost`, 127.0.0.1 and, when the node has IPv6 addresses, ::1.
pub fn issue_etcd_server_cert(
    bundle: &SecretsBundle,
    hostname: &str,
    sans: &SubjectAltNames,
    not_before: SystemTime,
    ttl: Duration,
) -> Result<IssuedCertificate, PkiError> {
    let mut with_local = sans.clone();
    let has_v6 = sans.ips.iter().any(IpAddr::is_ipv6);
    let mut add_ip = |ip: IpAddr| {
        if !with_local.ips.contains(&ip) {
            with_local.ips.push(ip);
        }
    };
    add_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    if has_v6 {
        add_ip(IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
    with_local.push_host("localhost", "etcd server certificate")?;
    let ca = bundle.etcd_ca("issue the etcd server certificate")?;
    issue_leaf(
        &ca,
        Leaf {
            organizations: &[],
            common_name: Some(hostname),
            key_usage: KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment,
            usage: Usage::ServerAndClient,
            sans: &with_local,
            not_before,
            ttl,
            what: "etcd server certificate",
        },
    )
}

/// An etcd client certificate (kube-apiserver, talosctl etcd access): etcd CA, CN given,
/// no SANs, ExtKeyUsage ClientAuth.
pub fn issue_etcd_client_cert(
    bundle: &SecretsBundle,
    common_name: &str,
    not_before: SystemTime,
    ttl: Duration,
) -> Result<IssuedCertificate, PkiError> {
    let ca = bundle.etcd_ca("issue an etcd client certificate")?;
    issue_leaf(
        &ca,
        Leaf {
            organizations: &[],
            common_name: Some(common_name),
            key_usage: KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment,
            usage: Usage::Client,
            sans: &SubjectAltNames::default(),
            not_before,
            ttl,
            what: "etcd client certificate",
        },
    )
}

/// The kube-apiserver serving certificate: Kubernetes CA, CN kube-apiserver,
/// O kube-master, the API server's SANs, ExtKeyUsage ServerAuth.
pub fn issue_kube_apiserver_cert(
    bundle: &SecretsBundle,
    sans: &SubjectAltNames,
    not_before: SystemTime,
    ttl: Duration,
) -> Result<IssuedCertificate, PkiError> {
    let ca = bundle.k8s_ca("issue the kube-apiserver certificate")?;
    issue_leaf(
        &ca,
        Leaf {
            organizations: &["kube-master"],
            common_name: Some("kube-apiserver"),
            key_usage: KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment,
            usage: Usage::Server,
            sans,
            not_before,
            ttl,
            what: "kube-apiserver certificate",
        },
    )
}

/// The Kubernetes admin client certificate: Kubernetes CA, CN admin, O system:masters,
/// ExtKeyUsage ClientAuth.
pub fn issue_kube_admin_client_cert(
    bundle: &SecretsBundle,
    not_before: SystemTime,
    ttl: Duration,
) -> Result<IssuedCertificate, PkiError> {
    let ca = bundle.k8s_ca("issue the Kubernetes admin certificate")?;
    issue_leaf(
        &ca,
        Leaf {
            organizations: &["system:masters"],
            common_name: Some("admin"),
            key_usage: KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment,
            usage: Usage::Client,
            sans: &SubjectAltNames::default(),
            not_before,
            ttl,
            what: "Kubernetes admin certificate",
        },
    )
}

/// The admin kubeconfig as Talos' `Kubeconfig` API returns it (`pkg/kubeconfig` template):
/// cluster `<cluster_name>`, user and context `admin@<cluster_name>`, namespace default,
/// a fresh admin certificate valid from `now - 10s` to `now + ttl`.
pub fn admin_kubeconfig(
    cluster_name: &str,
    server_url: &str,
    bundle: &SecretsBundle,
    now: SystemTime,
    ttl: Duration,
) -> Result<SecretString, PkiError> {
    if cluster_name.is_empty()
        || cluster_name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(PkiError::InvalidInput {
            what: "cluster name",
            detail: format!(
                "`{}` is empty or contains spaces or control characters",
                cluster_name.escape_debug()
            ),
        });
    }
    if server_url.is_empty()
        || server_url
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(PkiError::InvalidInput {
            what: "Kubernetes API server URL",
            detail: format!(
                "`{}` is empty or contains spaces or control characters",
                server_url.escape_debug()
            ),
        });
    }
    let not_before = now.checked_sub(KUBECONFIG_ALLOWED_SKEW).unwrap_or(now);
    let what = "Kubernetes admin certificate";
    let not_after = certificate::add_duration(now, ttl, what)?;
    let lifetime = not_after
        .duration_since(not_before)
        .map_err(|_| PkiError::Validity {
            what,
            detail: "the lifetime is negative".into(),
        })?;
    let admin = issue_kube_admin_client_cert(bundle, not_before, lifetime)?;
    let crt_b64 = pem_text::to_base64(admin.crt_pem.as_bytes());
    let key_b64 = pem_text::secret_to_base64(&admin.key_pem);
    let text = format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {cluster}\n  \
           cluster:\n    \
             server: {server}\n    \
             certificate-authority-data: {ca}\n\
         users:\n\
         - name: admin@{cluster}\n  \
           user:\n    \
             client-certificate-data: {crt}\n    \
             client-key-data: {key}\n\
         contexts:\n\
         - context:\n    \
             cluster: {cluster}\n    \
             namespace: default\n    \
             user: admin@{cluster}\n  \
           name: admin@{cluster}\n\
         current-context: admin@{cluster}\n",
        cluster = cluster_name,
        server = server_url,
        ca = bundle.k8s_ca_crt(),
        crt = crt_b64,
        key = key_b64.expose(),
    );
    Ok(SecretString::new(text))
}
