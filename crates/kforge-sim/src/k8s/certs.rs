//! Kubernetes certificates: the API server's serving certificate (Kubernetes CA, via
//! kforge-pki), its TLS configuration (client certificates optional but, when sent, they
//! must chain to the Kubernetes CA), kubelet client certificate requests (ECDSA P-256,
//! `CN=system:node:<name>, O=system:nodes`) and their signing as the controller manager's
//! `kubernetes.io/kube-apiserver-client-kubelet` signer does, and client TLS for kubelets.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kforge_pki::{SecretsBundle, SubjectAltNames};
use kforge_secret::SecretString;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::SimError;
use crate::pki::{self, CertKey};

/// Signed kubelet client certificates live a year (the controller manager's default).
pub const KUBELET_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// The signer of kubelet client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The first address of the default service CIDR (the `kubernetes` service).
const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
const BACKDATE: Duration = Duration::from_secs(10);

fn certificate_error(operation: &'static str) -> impl FnOnce(String) -> SimError {
    move |reason| SimError::Certificate { operation, reason }
}

/// The kube-apiserver serving certificate: SANs are the node's address and hostname,
/// the VIP, the endpoint host, the `kubernetes` service names, localhost.
pub fn serving_certificate(
    bundle: &SecretsBundle,
    hostname: &str,
    addresses: &[IpAddr],
    extra_hosts: &[String],
) -> Result<CertKey, SimError> {
    let mut sans = SubjectAltNames::default();
    for ip in addresses {
        if !sans.ips.contains(ip) {
            sans.ips.push(*ip);
        }
    }
    let hosts = [
        hostname,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "127.0.0.1",
        KUBERNETES_SERVICE_IP,
    ];
    for host in hosts
        .iter()
        .copied()
        .chain(extra_hosts.iter().map(String::as_str))
    {
        let duplicate = host
            .parse::<IpAddr>()
            .is_ok_and(|ip| sans.ips.contains(&ip))
            || sans.dns_names.iter().any(|d| d == host);
        if !duplicate {
            sans.push_host(host, "kube-apiserver certificate SANs")
                .map_err(SimError::pki("add a kube-apiserver certificate SAN"))?;
        }
    }
    let issued = kforge_pki::issue_kube_apiserver_cert(
        bundle,
        &sans,
        SystemTime::now() - BACKDATE,
        kforge_pki::KUBERNETES_CERT_DEFAULT_TTL,
    )
    .map_err(SimError::pki("issue the kube-apiserver certificate"))?;
    Ok(CertKey {
        crt_pem: issued.crt_pem,
        key_pem: issued.key_pem,
    })
}

fn roots(what: &'static str, ca_pem: &str) -> Result<RootCertStore, SimError> {
    let mut roots = RootCertStore::empty();
    for cert in pki::parse_certificates(what, ca_pem)? {
        roots
            .add(cert)
            .map_err(|e| certificate_error(what)(e.to_string()))?;
    }
    Ok(roots)
}

/// The API server's TLS: HTTP/1.1; a client certificate is optional (requests without
/// one are anonymous), but one that does not chain to the Kubernetes CA fails the
/// handshake.
pub fn server_tls(serving: &CertKey, k8s_ca_pem: &str) -> Result<Arc<ServerConfig>, SimError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots("load the Kubernetes CA", k8s_ca_pem)?),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| certificate_error("build the client certificate verifier")(e.to_string()))?;
    let chain = pki::parse_certificates("load the kube-apiserver certificate", &serving.crt_pem)?;
    let key = pki::parse_private_key("load the kube-apiserver key", &serving.key_pem)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| certificate_error("configure TLS versions")(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| certificate_error("use the kube-apiserver certificate")(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Client TLS towards an API server verified with the Kubernetes CA, presenting `client`.
pub fn client_tls(
    k8s_ca_pem: &str,
    client: Option<&CertKey>,
) -> Result<Arc<ClientConfig>, SimError> {
    let base = pki::client_config("connect to the Kubernetes API", k8s_ca_pem, client)?;
    let mut config = (*base).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The subject of a DER certificate: (common name, organizations).
pub fn certificate_subject(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let orgs = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some((cn, orgs))
}

/// A kubelet's client certificate request and its key.
pub fn kubelet_csr(node_name: &str) -> Result<(String, SecretString), SimError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| certificate_error("generate the kubelet key")(e.to_string()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("system:node:{node_name}"));
    let csr = params
        .serialize_request(&key)
        .map_err(|e| certificate_error("create the kubelet certificate request")(e.to_string()))?;
    let pem = csr
        .pem()
        .map_err(|e| certificate_error("encode the kubelet certificate request")(e.to_string()))?;
    Ok((pem, SecretString::new(key.serialize_pem())))
}

fn dn_text(v: &DnValue) -> String {
    match v {
        DnValue::Utf8String(s) => s.clone(),
        DnValue::PrintableString(s) => s.as_str().to_string(),
        DnValue::Ia5String(s) => s.as_str().to_string(),
        DnValue::TeletexString(s) => s.as_str().to_string(),
        other => format!("{other:?}"),
    }
}

/// The subject a kubelet client request must have: `CN=system:node:<name>`,
/// `O=system:nodes` and nothing else; returns the node name.
pub fn kubelet_request_node(csr_pem: &str) -> Result<String, String> {
    let request = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| format!("the request does not parse or its signature is wrong: {e}"))?;
    let dn = &request.params.distinguished_name;
    let cn: Vec<String> = dn
        .iter()
        .filter(|(t, _)| **t == DnType::CommonName)
        .map(|(_, v)| dn_text(v))
        .collect();
    let orgs: Vec<String> = dn
        .iter()
        .filter(|(t, _)| **t == DnType::OrganizationName)
        .map(|(_, v)| dn_text(v))
        .collect();
    if orgs != ["system:nodes"] {
        return Err(format!(
            "the subject's organizations are {orgs:?}, expected [\"system:nodes\"]"
        ));
    }
    match cn.as_slice() {
        [one] => one
            .strip_prefix("system:node:")
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("the common name `{one}` is not system:node:<name>")),
        _ => Err("the subject needs exactly one common name".into()),
    }
}

/// Signs a kubelet client request with the Kubernetes CA (ExtKeyUsage ClientAuth).
pub fn sign_kubelet_request(
    bundle: &SecretsBundle,
    csr_pem: &str,
    now: SystemTime,
) -> Result<String, String> {
    kubelet_request_node(csr_pem)?;
    let mut request = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| format!("the request does not parse: {e}"))?;
    let params = &mut request.params;
    params.is_ca = IsCa::ExplicitNoCa;
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + KUBELET_CERT_TTL).into();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.subject_alt_names = Vec::new();
    let ca_pem = bundle
        .k8s_ca_crt_pem()
        .map_err(|e| format!("the Kubernetes CA certificate: {e}"))?;
    let key_der = bundle
        .k8s_ca_key_pkcs8()
        .map_err(|e| format!("the Kubernetes CA key: {e}"))?;
    let key = KeyPair::try_from(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        key_der.expose().clone(),
    )))
    .map_err(|e| format!("the Kubernetes CA key cannot sign: {e}"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)
        .map_err(|e| format!("the Kubernetes CA certificate cannot be used: {e}"))?;
    let cert = request
        .signed_by(&issuer)
        .map_err(|e| format!("signing failed: {e}"))?;
    Ok(cert.pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> SecretsBundle {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/talsecret.yaml"
        ))
        .unwrap();
        SecretsBundle::from_yaml(&text).unwrap_or_else(|_| panic!("fixture bundle"))
    }

    #[test]
    fn kubelet_requests_are_signed_by_the_kubernetes_ca() {
        let b = bundle();
        let (csr, _key) = kubelet_csr("w-1").unwrap();
        assert_eq!(kubelet_request_node(&csr).unwrap(), "w-1");
        let crt = sign_kubelet_request(&b, &csr, SystemTime::now()).unwrap();
        let der = pem::parse(&crt).unwrap().into_contents();
        assert_eq!(
            certificate_subject(&der).unwrap(),
            (
                "system:node:w-1".to_string(),
                vec!["system:nodes".to_string()]
            )
        );
        let ca_der = pem::parse(b.k8s_ca_crt_pem().unwrap())
            .unwrap()
            .into_contents();
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        let (_, leaf) = X509Certificate::from_der(&der).unwrap();
        assert!(leaf.verify_signature(Some(ca.public_key())).is_ok());
        assert!(pki::is_client_auth_only(&der));
    }

    #[test]
    fn other_subjects_are_refused() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        params.distinguished_name.push(DnType::CommonName, "evil");
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let err = kubelet_request_node(&csr).unwrap_err();
        assert!(err.contains("system:masters"), "{err}");
        assert!(sign_kubelet_request(&bundle(), &csr, SystemTime::now()).is_err());
    }

    #[test]
    fn serving_certificate_names_and_tls() {
        let b = bundle();
        let cert = serving_certificate(
            &b,
            "cp-1",
            &["127.0.9.11".parse().unwrap(), "127.0.9.10".parse().unwrap()],
            &["127.0.9.10".into()],
        )
        .unwrap();
        server_tls(&cert, &b.k8s_ca_crt_pem().unwrap()).unwrap();
        client_tls(&b.k8s_ca_crt_pem().unwrap(), None).unwrap();
    }
}
