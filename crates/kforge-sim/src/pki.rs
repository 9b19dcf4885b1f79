//! The node's certificates and TLS configurations:
//!
//! - apid's identity: a server certificate for the node's addresses and an
//!   `os:impersonator` client certificate (used when proxying to other nodes), issued with
//!   the OS CA key on a control-plane node (kforge-pki), or obtained from trustd with CSRs
//!   on a worker, as Talos' `secrets.APIController` does;
//! - the maintenance-mode self-signed certificate;
//! - trustd's signing policy for CSRs;
//! - etcd's server, peer and client certificates from the etcd CA (kforge-pki);
//! - rustls configs, including apid's client verifier that, like apid's
//!   `verifyExtKeyUsage`, accepts a client certificate only if it chains to the OS CA and
//!   its ExtKeyUsage is exactly [ClientAuth].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kforge_pki::{SecretsBundle, SubjectAltNames};
use kforge_secret::SecretString;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ED25519, SanType,
    SerialNumber,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName as TlsName,
    RootCertStore, ServerConfig, SignatureScheme,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::SimError;

/// apid and trustd certificates live 24 h, as in Talos.
pub const NODE_CERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Certificates are back-dated this much to tolerate clock skew.
const BACKDATE: Duration = Duration::from_secs(10);

/// A certificate and its key, both PEM.
#[derive(Clone)]
pub struct CertKey {
    pub crt_pem: String,
    pub key_pem: SecretString,
}

/// apid's certificates.
#[derive(Clone)]
pub struct ApidIdentity {
    /// The OS CA certificate (what clients and peers are verified against).
    pub ca_pem: String,
    pub server: CertKey,
    /// `O=os:impersonator`, ExtKeyUsage ClientAuth: the node's identity towards other
    /// nodes' apid.
    pub client: CertKey,
}

fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_blocks(what: &'static str, text: &str) -> Result<Vec<pem::Pem>, SimError> {
    pem::parse_many(text).map_err(|e| SimError::Certificate {
        operation: what,
        reason: format!("PEM decoding failed: {e}"),
    })
}

pub(crate) fn parse_certificates(
    what: &'static str,
    pem_text: &str,
) -> Result<Vec<CertificateDer<'static>>, SimError> {
    let certs: Vec<CertificateDer<'static>> = pem_blocks(what, pem_text)?
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect();
    if certs.is_empty() {
        return Err(SimError::Certificate {
            operation: what,
            reason: "no `CERTIFICATE` PEM block".into(),
        });
    }
    Ok(certs)
}

/// A private key in any label Talos or kforge-pki writes (`ED25519 PRIVATE KEY` is
/// PKCS#8).
pub(crate) fn parse_private_key(
    what: &'static str,
    pem_text: &SecretString,
) -> Result<PrivateKeyDer<'static>, SimError> {
    for block in pem_blocks(what, pem_text.expose())? {
        let key = match block.tag() {
            "PRIVATE KEY" | "ED25519 PRIVATE KEY" => {
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(block.into_contents()))
            }
            "EC PRIVATE KEY" => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(block.into_contents())),
            "RSA PRIVATE KEY" => {
                PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(block.into_contents()))
            }
            _ => continue,
        };
        return Ok(key);
    }
    Err(SimError::Certificate {
        operation: what,
        reason: "no private key PEM block".into(),
    })
}

fn root_store(what: &'static str, ca_pem: &str) -> Result<RootCertStore, SimError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certificates(what, ca_pem)? {
        roots.add(cert).map_err(|e| SimError::Certificate {
            operation: what,
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn tls_error(what: &'static str) -> impl FnOnce(rustls::Error) -> SimError {
    move |e| SimError::Certificate {
        operation: what,
        reason: e.to_string(),
    }
}

fn base64_pem(what: &'static str, value: &str) -> Result<String, SimError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| SimError::Certificate {
            operation: what,
            reason: "not base64 of PEM text".into(),
        })
}

/// The SANs of a node certificate: its address, the config's certSANs and its hostname.
pub fn node_sans(
    address: IpAddr,
    hostname: &str,
    cert_sans: &[String],
) -> Result<SubjectAltNames, SimError> {
    let mut sans = SubjectAltNames::default();
    sans.ips.push(address);
    for host in cert_sans.iter().map(String::as_str).chain([hostname]) {
        sans.push_host(host, "node certificate SANs")
            .map_err(SimError::pki("add a certificate SAN"))?;
    }
    Ok(sans)
}

/// A control-plane node issues apid's certificates itself.
pub fn control_plane_identity(
    bundle: &SecretsBundle,
    hostname: &str,
    sans: &SubjectAltNames,
    now: SystemTime,
) -> Result<ApidIdentity, SimError> {
    let not_before = now - BACKDATE;
    let server =
        kforge_pki::issue_apid_server_cert(bundle, hostname, sans, not_before, NODE_CERT_TTL)
            .map_err(SimError::pki("issue the apid server certificate"))?;
    let client = kforge_pki::issue_talos_client_cert(
        bundle,
        &["os:impersonator"],
        not_before,
        NODE_CERT_TTL,
    )
    .map_err(SimError::pki("issue the apid client certificate"))?;
    Ok(ApidIdentity {
        ca_pem: bundle
            .os_ca_crt_pem()
            .map_err(SimError::pki("read the OS CA certificate"))?,
        server: CertKey {
            crt_pem: server.crt_pem,
            key_pem: server.key_pem,
        },
        client: CertKey {
            crt_pem: client.crt_pem,
            key_pem: client.key_pem,
        },
    })
}

fn rcgen_error(operation: &'static str) -> impl FnOnce(rcgen::Error) -> SimError {
    move |e| SimError::Certificate {
        operation,
        reason: e.to_string(),
    }
}

fn rcgen_sans(sans: &SubjectAltNames) -> Result<Vec<SanType>, SimError> {
    let mut out: Vec<SanType> = sans.ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
    for dns in &sans.dns_names {
        out.push(SanType::DnsName(dns.clone().try_into().map_err(
            |e: rcgen::Error| SimError::Certificate {
                operation: "build certificate SANs",
                reason: e.to_string(),
            },
        )?));
    }
    Ok(out)
}

/// The self-signed certificate a node presents in maintenance mode.
pub fn maintenance_certificate(address: IpAddr, now: SystemTime) -> Result<CertKey, SimError> {
    let key = KeyPair::generate_for(&PKCS_ED25519).map_err(rcgen_error("generate a key"))?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::IpAddress(address)];
    params.distinguished_name = DistinguishedName::new();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + NODE_CERT_TTL).into();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.serial_number = Some(random_serial()?);
    let cert = params
        .self_signed(&key)
        .map_err(rcgen_error("self-sign the maintenance certificate"))?;
    Ok(CertKey {
        crt_pem: cert.pem(),
        key_pem: SecretString::new(key.serialize_pem()),
    })
}

fn random_serial() -> Result<SerialNumber, SimError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SimError::Certificate {
            operation: "generate a serial number",
            reason: "the system random generator failed".into(),
        })?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// A certificate signing request and the key it was made with.
pub struct Csr {
    pub csr_pem: String,
    pub key_pem: SecretString,
}

/// An Ed25519 CSR, as a worker sends trustd (`x509.NewEd25519CSRAndIdentity`).
pub fn new_csr(
    common_name: &str,
    organization: Option<&str>,
    sans: &SubjectAltNames,
) -> Result<Csr, SimError> {
    let key = KeyPair::generate_for(&PKCS_ED25519).map_err(rcgen_error("generate a key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        params.distinguished_name.push(DnType::OrganizationName, o);
    }
    params.subject_alt_names = rcgen_sans(sans)?;
    let csr = params
        .serialize_request(&key)
        .map_err(rcgen_error("create a certificate signing request"))?;
    Ok(Csr {
        csr_pem: csr.pem().map_err(rcgen_error("encode the CSR"))?,
        key_pem: SecretString::new(key.serialize_pem()),
    })
}

/// Why trustd refused a CSR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CsrRejected(pub String);

/// trustd's signing: the CSR's signature must verify; its subject may carry no
/// Organization (an apid server certificate: ExtKeyUsage ServerAuth+ClientAuth) or
/// exactly `os:impersonator` (apid's client identity: ClientAuth only). Anything else —
/// in particular admin roles — is refused, so the token cannot mint administrators.
pub fn sign_csr(
    os_ca_pem: &str,
    os_ca_key: &SecretString,
    csr_pem: &[u8],
    now: SystemTime,
) -> Result<String, CsrRejected> {
    let text =
        std::str::from_utf8(csr_pem).map_err(|_| CsrRejected("the CSR is not PEM text".into()))?;
    let mut request = CertificateSigningRequestParams::from_pem(text)
        .map_err(|e| CsrRejected(format!("failed verifying CSR: {e}")))?;
    let orgs: Vec<String> = request
        .params
        .distinguished_name
        .iter()
        .filter(|(t, _)| **t == DnType::OrganizationName)
        .map(|(_, v)| dn_text(v))
        .collect();
    let client_identity = match orgs.as_slice() {
        [] => false,
        [o] if o == "os:impersonator" => true,
        other => {
            return Err(CsrRejected(format!(
                "the CSR asks for organization {other:?}; trustd signs only apid server certificates and os:impersonator client certificates"
            )));
        }
    };
    if request.params.is_ca != IsCa::NoCa && request.params.is_ca != IsCa::ExplicitNoCa {
        return Err(CsrRejected("the CSR asks for a CA certificate".into()));
    }
    let params = &mut request.params;
    params.is_ca = IsCa::NoCa;
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + NODE_CERT_TTL).into();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = if client_identity {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    };
    params.serial_number = Some(random_serial().map_err(|e| CsrRejected(e.to_string()))?);
    let key = ca_key_pair(os_ca_key).map_err(|e| CsrRejected(e.to_string()))?;
    let issuer = Issuer::from_ca_cert_pem(os_ca_pem, key)
        .map_err(|e| CsrRejected(format!("the OS CA certificate cannot be used: {e}")))?;
    let cert = request
        .signed_by(&issuer)
        .map_err(|e| CsrRejected(format!("signing failed: {e}")))?;
    Ok(cert.pem())
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

/// The OS CA key (PEM text) as an rcgen signing key.
fn ca_key_pair(key_pem: &SecretString) -> Result<KeyPair, SimError> {
    let der = parse_private_key("read the OS CA key", key_pem)?;
    KeyPair::try_from(&der).map_err(rcgen_error("load the OS CA key"))
}

/// The OS CA certificate and key of a control-plane config, as PEM.
pub fn os_ca(bundle: &SecretsBundle) -> Result<(String, SecretString), SimError> {
    let crt = bundle
        .os_ca_crt_pem()
        .map_err(SimError::pki("read the OS CA certificate"))?;
    let key = SecretString::new(base64_pem(
        "read the OS CA key",
        bundle.os_ca_key().expose(),
    )?);
    Ok((crt, key))
}

/// etcd's certificates for one member.
#[derive(Clone)]
pub struct EtcdPki {
    pub ca_pem: String,
    pub server: CertKey,
    pub peer: CertKey,
    /// The node's own client identity towards etcd (membership calls, health checks).
    pub client: CertKey,
}

impl EtcdPki {
    /// Issued from the etcd CA like Talos' `secrets.EtcdController`. The peer certificate
    /// also names 127.0.0.1: on loopback the kernel picks 127.0.0.1 as the source address
    /// of peer connections, and etcd checks it against the client certificate's SANs.
    pub fn issue(
        bundle: &SecretsBundle,
        hostname: &str,
        address: IpAddr,
        now: SystemTime,
    ) -> Result<EtcdPki, SimError> {
        let not_before = now - BACKDATE;
        let ttl = kforge_pki::ETCD_CERT_DEFAULT_TTL;
        let mut sans = SubjectAltNames::default();
        sans.ips.push(address);
        let server = kforge_pki::issue_etcd_server_cert(bundle, hostname, &sans, not_before, ttl)
            .map_err(SimError::pki("issue the etcd server certificate"))?;
        let mut peer_sans = sans.clone();
        if address.is_loopback() {
            peer_sans
                .push_host("127.0.0.1", "etcd peer certificate")
                .map_err(SimError::pki("add a certificate SAN"))?;
        }
        let peer = kforge_pki::issue_etcd_peer_cert(bundle, hostname, &peer_sans, not_before, ttl)
            .map_err(SimError::pki("issue the etcd peer certificate"))?;
        let client = kforge_pki::issue_etcd_client_cert(bundle, hostname, not_before, ttl)
            .map_err(SimError::pki("issue the etcd client certificate"))?;
        let pair = |c: kforge_pki::IssuedCertificate| CertKey {
            crt_pem: c.crt_pem,
            key_pem: c.key_pem,
        };
        Ok(EtcdPki {
            ca_pem: bundle
                .etcd_ca_crt_pem()
                .map_err(SimError::pki("read the etcd CA certificate"))?,
            server: pair(server),
            peer: pair(peer),
            client: pair(client),
        })
    }
}

// ---------------------------------------------------------------- rustls configs

/// apid in normal mode: client certificates are required, must chain to the OS CA and
/// must have ExtKeyUsage exactly [ClientAuth].
pub fn apid_server_config(identity: &ApidIdentity) -> Result<Arc<ServerConfig>, SimError> {
    let provider = crypto_provider();
    let roots = root_store("load the OS CA", &identity.ca_pem)?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| SimError::Certificate {
            operation: "build the client certificate verifier",
            reason: e.to_string(),
        })?;
    let verifier = Arc::new(ClientAuthOnlyVerifier { inner });
    let chain = parse_certificates("load the apid certificate", &identity.server.crt_pem)?;
    let key = parse_private_key("load the apid key", &identity.server.key_pem)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error("configure TLS versions"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_error("use the apid certificate"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// TLS without client certificates (maintenance mode, trustd).
pub fn server_only_config(cert: &CertKey) -> Result<Arc<ServerConfig>, SimError> {
    kforge_talos_api::server_tls::maintenance_server_config(&cert.crt_pem, &cert.key_pem).map_err(
        |source| SimError::Tls {
            what: "a server without client certificates",
            source: Box::new(source),
        },
    )
}

/// A client that verifies the server against `ca_pem` and, when given, presents
/// `client`.
pub fn client_config(
    what: &'static str,
    ca_pem: &str,
    client: Option<&CertKey>,
) -> Result<Arc<ClientConfig>, SimError> {
    let roots = root_store(what, ca_pem)?;
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error("configure TLS versions"))?
        .with_root_certificates(roots);
    let mut config = match client {
        Some(c) => builder
            .with_client_auth_cert(
                parse_certificates(what, &c.crt_pem)?,
                parse_private_key(what, &c.key_pem)?,
            )
            .map_err(tls_error(what))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Whether a DER certificate's ExtKeyUsage is exactly [ClientAuth].
pub fn is_client_auth_only(der: &[u8]) -> bool {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return false;
    };
    match cert.extended_key_usage() {
        Ok(Some(eku)) => {
            let e = eku.value;
            e.client_auth
                && !e.any
                && !e.server_auth
                && !e.code_signing
                && !e.email_protection
                && !e.time_stamping
                && !e.ocsp_signing
                && e.other.is_empty()
        }
        _ => false,
    }
}

/// webpki's chain verification plus apid's `verifyExtKeyUsage`.
#[derive(Debug)]
struct ClientAuthOnlyVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for ClientAuthOnlyVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[TlsName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if !is_client_auth_only(end_entity) {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose,
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
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

    fn der(pem_text: &str) -> Vec<u8> {
        pem::parse(pem_text).unwrap().into_contents()
    }

    #[test]
    fn control_plane_identity_has_client_only_impersonator() {
        let b = bundle();
        let sans = node_sans("127.0.0.5".parse().unwrap(), "cp-1", &[]).unwrap();
        let id = control_plane_identity(&b, "cp-1", &sans, SystemTime::now()).unwrap();
        let client = der(&id.client.crt_pem);
        assert!(is_client_auth_only(&client));
        assert_eq!(
            crate::auth::certificate_organizations(&client),
            vec!["os:impersonator".to_string()]
        );
        // The server certificate also carries ServerAuth: not acceptable as a client.
        assert!(!is_client_auth_only(&der(&id.server.crt_pem)));
        apid_server_config(&id).unwrap();
    }

    #[test]
    fn trustd_signs_server_and_impersonator_csrs_only() {
        let b = bundle();
        let (ca, key) = os_ca(&b).unwrap();
        let sans = node_sans("127.0.0.6".parse().unwrap(), "w-1", &[]).unwrap();
        let now = SystemTime::now();

        let client = new_csr("w-1", Some("os:impersonator"), &SubjectAltNames::default()).unwrap();
        let crt = sign_csr(&ca, &key, client.csr_pem.as_bytes(), now).unwrap();
        assert!(is_client_auth_only(&der(&crt)));

        let server = new_csr("w-1", None, &sans).unwrap();
        let crt = sign_csr(&ca, &key, server.csr_pem.as_bytes(), now).unwrap();
        let crt_der = der(&crt);
        let (_, cert) = X509Certificate::from_der(&crt_der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        // Chains to the OS CA.
        let ca_der = der(&ca);
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        assert!(cert.verify_signature(Some(ca_cert.public_key())).is_ok());

        let admin = new_csr("evil", Some("os:admin"), &SubjectAltNames::default()).unwrap();
        let err = sign_csr(&ca, &key, admin.csr_pem.as_bytes(), now).unwrap_err();
        assert!(err.0.contains("os:admin"), "{err}");
        assert!(sign_csr(&ca, &key, b"garbage", now).is_err());
    }

    #[test]
    fn etcd_certificates() {
        let b = bundle();
        let pki =
            EtcdPki::issue(&b, "cp-1", "127.0.3.4".parse().unwrap(), SystemTime::now()).unwrap();
        client_config("etcd client", &pki.ca_pem, Some(&pki.client)).unwrap();
        let maint =
            maintenance_certificate("127.0.3.4".parse().unwrap(), SystemTime::now()).unwrap();
        server_only_config(&maint).unwrap();
    }
}
