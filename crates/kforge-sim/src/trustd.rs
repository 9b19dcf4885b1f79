//! trustd: control-plane nodes sign workers' apid CSRs (`securityapi.SecurityService/
//! Certificate`) when the caller presents the machine token in the `token` metadata, as
//! Talos' trustd does on port 50001. The server is TLS with the node's OS-CA-issued
//! certificate and no client certificates; the client verifies it with the OS CA.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use kforge_secret::SecretString;
use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tonic::{Request, Response, Status};

use crate::SimError;
use crate::proto::securityapi::security_service_client::SecurityServiceClient;
use crate::proto::securityapi::security_service_server::SecurityService;
use crate::proto::securityapi::{CertificateRequest, CertificateResponse};

/// What trustd signs with: the OS CA and the token callers must present.
pub struct TrustdAuthority {
    pub os_ca_pem: String,
    pub os_ca_key: SecretString,
    pub token: SecretString,
}

/// The trustd service of a control-plane node.
#[derive(Clone)]
pub struct TrustdService {
    authority: Arc<TrustdAuthority>,
}

impl TrustdService {
    pub fn new(authority: TrustdAuthority) -> Self {
        TrustdService {
            authority: Arc::new(authority),
        }
    }
}

/// Constant-time comparison of the tokens' digests (as Talos compares them).
fn token_matches(presented: &str, expected: &SecretString) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.expose().as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[tonic::async_trait]
impl SecurityService for TrustdService {
    async fn certificate(
        &self,
        request: Request<CertificateRequest>,
    ) -> Result<Response<CertificateResponse>, Status> {
        let token = request
            .metadata()
            .get("token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let Some(token) = token else {
            return Err(Status::unauthenticated("missing token"));
        };
        if !token_matches(&token, &self.authority.token) {
            return Err(Status::unauthenticated("invalid token"));
        }
        let csr = request.into_inner().csr;
        let crt = crate::pki::sign_csr(
            &self.authority.os_ca_pem,
            &self.authority.os_ca_key,
            &csr,
            SystemTime::now(),
        )
        .map_err(|e| Status::invalid_argument(e.0))?;
        Ok(Response::new(CertificateResponse {
            ca: self.authority.os_ca_pem.clone().into_bytes(),
            crt: crt.into_bytes(),
        }))
    }
}

/// Asks trustd at `host:port` to sign `csr_pem`; returns the signed certificate (PEM).
/// The server must present a certificate from `os_ca_pem`.
pub async fn request_certificate(
    host: std::net::IpAddr,
    port: u16,
    os_ca_pem: &str,
    token: &SecretString,
    what: &'static str,
    csr_pem: &str,
) -> Result<String, SimError> {
    let endpoint = format!("{host}:{port}");
    let tls = crate::pki::client_config("verify trustd", os_ca_pem, None)?;
    let fail = |code: tonic::Code, message: String| SimError::Trustd {
        what,
        endpoint: endpoint.clone(),
        code,
        message,
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(|e| fail(tonic::Code::InvalidArgument, e.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let tls = tls.clone();
            async move {
                let tcp = TcpStream::connect((host, port)).await?;
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(ServerName::IpAddress(host.into()), tcp)
                    .await?;
                Ok::<_, io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| fail(tonic::Code::Unavailable, format!("cannot connect: {e}")))?;
    let mut request = Request::new(CertificateRequest {
        csr: csr_pem.as_bytes().to_vec(),
    });
    request.set_timeout(Duration::from_secs(5));
    let value = token.expose().parse().map_err(|_| {
        fail(
            tonic::Code::InvalidArgument,
            "the token is not valid metadata".into(),
        )
    })?;
    request.metadata_mut().insert("token", value);
    let response = SecurityServiceClient::new(channel)
        .certificate(request)
        .await
        .map_err(|s| fail(s.code(), s.message().to_string()))?
        .into_inner();
    String::from_utf8(response.crt).map_err(|_| {
        fail(
            tonic::Code::Internal,
            "the certificate is not PEM text".into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        let t = SecretString::new("abcdef.0123456789abcdef".into());
        assert!(token_matches("abcdef.0123456789abcdef", &t));
        assert!(!token_matches("abcdef.0123456789abcdeg", &t));
        assert!(!token_matches("", &t));
    }
}
