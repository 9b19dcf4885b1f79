//! The server side of apid's TLS, for the node simulator and tests: rustls server configs
//! (mutual TLS against the OS CA, or maintenance mode without client certificates) and a
//! TLS listener that feeds tonic's `Server::serve_with_incoming*`.
//!
//! Handshakes run in their own tasks so a slow or failing client never blocks others;
//! failed handshakes are dropped (the client sees the TLS alert). The peer's certificate
//! chain is exposed through [`TlsPeer`] (`request.extensions().get::<TlsPeer>()`), so a
//! server can apply Talos' own checks (ExtKeyUsage exactly ClientAuth, role from O).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use kforge_secret::SecretString;
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::Error;
use crate::tls::{ALPN_H2, crypto_provider, parse_certificates, parse_private_key, root_store};

/// How long a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// apid in normal mode: client certificates required and verified against `ca_pem`.
pub fn mutual_tls_server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &SecretString,
) -> Result<Arc<ServerConfig>, Error> {
    let roots = root_store("the client CA certificate", ca_pem)?;
    let provider = crypto_provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::InvalidPem {
            what: "the client CA certificate",
            reason: e.to_string(),
        })?;
    let chain = parse_certificates("the server certificate", cert_pem)?;
    let key = parse_private_key("the server key", key_pem)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::TlsSetup {
            what: "the ring crypto provider",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| Error::TlsSetup {
            what: "the server certificate and key",
            source,
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// apid in maintenance mode: a (self-signed) server certificate, no client certificates.
pub fn maintenance_server_config(
    cert_pem: &str,
    key_pem: &SecretString,
) -> Result<Arc<ServerConfig>, Error> {
    let chain = parse_certificates("the server certificate", cert_pem)?;
    let key = parse_private_key("the server key", key_pem)?;
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::TlsSetup {
            what: "the ring crypto provider",
            source,
        })?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|source| Error::TlsSetup {
            what: "the server certificate and key",
            source,
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Connection facts a tonic handler can read from the request extensions.
#[derive(Clone, Debug)]
pub struct TlsPeer {
    pub remote_addr: Option<SocketAddr>,
    /// The client's certificate chain, leaf first; empty without a client certificate.
    pub client_certificates: Vec<CertificateDer<'static>>,
}

/// A server-side TLS connection, usable as tonic's incoming IO.
pub struct TlsServerStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
}

impl Connected for TlsServerStream {
    type ConnectInfo = TlsPeer;

    fn connect_info(&self) -> TlsPeer {
        let (tcp, session) = self.inner.get_ref();
        TlsPeer {
            remote_addr: tcp.peer_addr().ok(),
            client_certificates: session
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
        }
    }
}

impl AsyncRead for TlsServerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsServerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts TCP connections on `listener` and yields the ones whose TLS handshake with
/// `config` succeeds. The accept task ends when the returned stream is dropped (e.g. when
/// the tonic server shuts down), releasing the listener.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> ReceiverStream<Result<TlsServerStream, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => break,
                accepted = listener.accept() => accepted,
            };
            let Ok((tcp, _addr)) = accepted else {
                // Transient accept errors (e.g. EMFILE): keep serving.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(Ok(stream)) =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    let _ = tx.send(Ok(TlsServerStream { inner: stream })).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
