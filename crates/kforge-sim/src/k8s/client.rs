//! A small Kubernetes API client for the simulated kubelets (and the harness): HTTPS with
//! the Kubernetes CA, a client certificate or a bearer token, JSON bodies, one
//! connection per request, and failover across several API server addresses (the
//! node's own, the VIP, the other control-plane nodes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use kforge_secret::SecretString;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;

const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    #[error("no API server address to try")]
    NoServer,
    #[error("cannot reach the API server at {server}")]
    Transport {
        server: SocketAddr,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the API server at {server} did not answer within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        timeout: Duration,
    },
    #[error("{method} {path} at {server} answered {status}: {message}")]
    Status {
        method: Method,
        path: String,
        server: SocketAddr,
        status: u16,
        message: String,
    },
}

impl KubeClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            KubeClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client of the API servers at `servers` (tried in turn, starting with the last one
/// that answered).
#[derive(Clone)]
pub struct KubeClient {
    servers: Vec<SocketAddr>,
    tls: Arc<ClientConfig>,
    bearer: Option<SecretString>,
    timeout: Duration,
    preferred: Arc<AtomicUsize>,
}

fn transport(
    server: SocketAddr,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> KubeClientError {
    move |source| KubeClientError::Transport { server, source }
}

impl KubeClient {
    pub fn new(
        servers: Vec<SocketAddr>,
        tls: Arc<ClientConfig>,
        bearer: Option<SecretString>,
    ) -> Self {
        KubeClient {
            servers,
            tls,
            bearer,
            timeout: Duration::from_secs(5),
            preferred: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn once(
        &self,
        server: SocketAddr,
        method: &Method,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<(u16, Bytes), KubeClientError> {
        let work = async {
            let tcp = TcpStream::connect(server)
                .await
                .map_err(|e| transport(server)(Box::new(e)))?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::IpAddress(server.ip().into());
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| transport(server)(Box::new(e)))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| transport(server)(Box::new(e)))?;
            // The connection's error says why a request failed "canceled" (a TLS alert).
            let (conn_error_tx, conn_error) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    let _ = conn_error_tx.send(e);
                }
            });
            let mut builder = http::Request::builder()
                .method(method.clone())
                .uri(path)
                .header(http::header::HOST, server.to_string())
                .header(http::header::ACCEPT, "application/json")
                .header(http::header::USER_AGENT, "kubelet/kforge-sim");
            if let Some(token) = &self.bearer {
                builder = builder.header(
                    http::header::AUTHORIZATION,
                    format!("Bearer {}", token.expose()),
                );
            }
            let payload = match body {
                Some((content_type, bytes)) => {
                    builder = builder.header(http::header::CONTENT_TYPE, content_type);
                    Bytes::copy_from_slice(bytes)
                }
                None => Bytes::new(),
            };
            let request = builder
                .body(Full::new(payload))
                .map_err(|e| transport(server)(Box::new(e)))?;
            let response = match sender.send_request(request).await {
                Ok(r) => r,
                Err(e) => {
                    let cause =
                        match tokio::time::timeout(Duration::from_millis(500), conn_error).await {
                            Ok(Ok(conn_e)) => conn_e,
                            _ => e,
                        };
                    return Err(transport(server)(Box::new(cause)));
                }
            };
            let status = response.status().as_u16();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| transport(server)(e))?
                .to_bytes();
            Ok((status, bytes))
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(KubeClientError::Timeout {
                server,
                timeout: self.timeout,
            }),
        }
    }

    /// Sends a request; non-2xx answers become [`KubeClientError::Status`] with the
    /// `Status` message. Servers that cannot be reached are skipped.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<Value, KubeClientError> {
        if self.servers.is_empty() {
            return Err(KubeClientError::NoServer);
        }
        let start = self.preferred.load(Ordering::Relaxed) % self.servers.len();
        let mut last = KubeClientError::NoServer;
        for i in 0..self.servers.len() {
            let index = (start + i) % self.servers.len();
            let server = self.servers[index];
            match self.once(server, &method, path, body).await {
                Ok((status, bytes)) => {
                    // A server without working storage is as good as unreachable.
                    if status >= 500 && i + 1 < self.servers.len() {
                        last = status_error(&method, path, server, status, &bytes);
                        continue;
                    }
                    self.preferred.store(index, Ordering::Relaxed);
                    if !(200..300).contains(&status) {
                        return Err(status_error(&method, path, server, status, &bytes));
                    }
                    return Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub async fn get(&self, path: &str) -> Result<Value, KubeClientError> {
        self.request(Method::GET, path, None).await
    }
}

fn status_error(
    method: &Method,
    path: &str,
    server: SocketAddr,
    status: u16,
    body: &[u8],
) -> KubeClientError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(300)
                .collect()
        });
    KubeClientError::Status {
        method: method.clone(),
        path: path.to_string(),
        server,
        status,
        message,
    }
}
