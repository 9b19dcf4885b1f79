//! rustls client configurations for apid (ring provider only), and the PEM decoding they
//! share with [`crate::server_tls`].
//!
//! Normal mode is mutual TLS: the server chain is verified against the OS CA only (no
//! public roots) and the client presents the admin certificate. Maintenance mode is TLS
//! without a client certificate and without verifying the server, used only on request.

use std::sync::Arc;

use kforge_secret::SecretString;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    ServerName, UnixTime,
};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::Error;

/// HTTP/2 over TLS; grpc-go servers (apid) refuse TLS connections without this ALPN.
pub(crate) const ALPN_H2: &[u8] = b"h2";

pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// All `CERTIFICATE` blocks of `pem_text`; at least one is required.
pub(crate) fn parse_certificates(
    what: &'static str,
    pem_text: &str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let blocks = pem::parse_many(pem_text).map_err(|e| Error::InvalidPem {
        what,
        reason: format!("PEM decoding failed: {e}"),
    })?;
    let mut certs = Vec::new();
    let mut other_labels = Vec::new();
    for block in blocks {
        if block.tag() == "CERTIFICATE" {
            certs.push(CertificateDer::from(block.into_contents()));
        } else {
            other_labels.push(block.tag().to_string());
        }
    }
    if certs.is_empty() {
        let found = if other_labels.is_empty() {
            "no PEM blocks".to_string()
        } else {
            format!("only {}", other_labels.join(", "))
        };
        return Err(Error::InvalidPem {
            what,
            reason: format!("expected a `CERTIFICATE` PEM block, found {found}"),
        });
    }
    Ok(certs)
}

/// The private key in `pem_text`. Talos writes Ed25519 keys as PKCS#8 under the label
/// `ED25519 PRIVATE KEY`; `PRIVATE KEY`, `EC PRIVATE KEY` and `RSA PRIVATE KEY` are also
/// accepted. Error messages never contain key material.
pub(crate) fn parse_private_key(
    what: &'static str,
    pem_text: &SecretString,
) -> Result<PrivateKeyDer<'static>, Error> {
    let blocks = pem::parse_many(pem_text.expose()).map_err(|e| Error::InvalidPem {
        what,
        reason: format!("PEM decoding failed: {e}"),
    })?;
    let mut labels = Vec::new();
    for block in blocks {
        let key = match block.tag() {
            "PRIVATE KEY" | "ED25519 PRIVATE KEY" => {
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(block.into_contents()))
            }
            "EC PRIVATE KEY" => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(block.into_contents())),
            "RSA PRIVATE KEY" => {
                PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(block.into_contents()))
            }
            other => {
                labels.push(other.to_string());
                continue;
            }
        };
        return Ok(key);
    }
    let found = if labels.is_empty() {
        "no PEM blocks".to_string()
    } else {
        format!("only {}", labels.join(", "))
    };
    Err(Error::InvalidPem {
        what,
        reason: format!(
            "expected a private key PEM block (`ED25519 PRIVATE KEY`, `PRIVATE KEY`, \
             `EC PRIVATE KEY` or `RSA PRIVATE KEY`), found {found}"
        ),
    })
}

/// A root store holding exactly the certificates of `ca_pem`.
pub(crate) fn root_store(what: &'static str, ca_pem: &str) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    let mut problems = Vec::new();
    for (i, cert) in parse_certificates(what, ca_pem)?.into_iter().enumerate() {
        if let Err(e) = roots.add(cert) {
            problems.push(format!("certificate #{}: {e}", i + 1));
        }
    }
    if !problems.is_empty() {
        return Err(Error::InvalidPem {
            what,
            reason: problems.join("; "),
        });
    }
    Ok(roots)
}

/// Mutual TLS: verify the server against `ca_pem` only; authenticate with the client
/// certificate chain and key.
pub(crate) fn mutual_tls_client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &SecretString,
) -> Result<Arc<ClientConfig>, Error> {
    let roots = root_store("the Talos OS CA certificate (`ca`)", ca_pem)?;
    let chain = parse_certificates("the client certificate (`crt`)", cert_pem)?;
    let key = parse_private_key("the client key (`key`)", key_pem)?;
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::TlsSetup {
            what: "the ring crypto provider",
            source,
        })?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|source| Error::TlsSetup {
            what: "the client certificate and key (do they belong together?)",
            source,
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Maintenance mode: TLS without a client certificate, accepting any server certificate
/// (a node in maintenance mode presents a self-signed one). Handshake signatures are still
/// checked, so the peer must hold the key of the certificate it presents.
pub(crate) fn insecure_client_config() -> Result<Arc<ClientConfig>, Error> {
    let provider = crypto_provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::TlsSetup {
            what: "the ring crypto provider",
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCertificate { provider }))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct AcceptAnyServerCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_name_what_was_found() {
        let err = parse_certificates("the CA", "").unwrap_err().to_string();
        assert!(
            err.contains("the CA") && err.contains("no PEM blocks"),
            "{err}"
        );
        let only_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = parse_certificates("the CA", only_key)
            .unwrap_err()
            .to_string();
        assert!(err.contains("only PRIVATE KEY"), "{err}");
    }

    #[test]
    fn key_labels_map_to_formats() {
        let wrap = |label: &str| {
            SecretString::from(format!(
                "-----BEGIN {label}-----\nAAECAw==\n-----END {label}-----\n"
            ))
        };
        assert!(matches!(
            parse_private_key("k", &wrap("ED25519 PRIVATE KEY")).unwrap(),
            PrivateKeyDer::Pkcs8(_)
        ));
        assert!(matches!(
            parse_private_key("k", &wrap("PRIVATE KEY")).unwrap(),
            PrivateKeyDer::Pkcs8(_)
        ));
        assert!(matches!(
            parse_private_key("k", &wrap("EC PRIVATE KEY")).unwrap(),
            PrivateKeyDer::Sec1(_)
        ));
        assert!(matches!(
            parse_private_key("k", &wrap("RSA PRIVATE KEY")).unwrap(),
            PrivateKeyDer::Pkcs1(_)
        ));
        let err = parse_private_key("k", &wrap("CERTIFICATE"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("only CERTIFICATE"), "{err}");
        // The key bytes never show up in errors.
        assert!(!err.contains("AAECAw"), "{err}");
    }
}
