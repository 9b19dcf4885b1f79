//! [`ConnectionConfig`]: how to reach apid (endpoints, TLS mode, deadlines, retries), built
//! from raw values so that the talosconfig type (in `kforge-pki`) only needs a thin adapter.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kforge_secret::SecretString;
use rustls::ClientConfig;

use crate::{ApiEndpoint, Error, RetryPolicy, tls};

/// How the client authenticates and verifies the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityMode {
    /// Mutual TLS: server verified against the OS CA, client certificate presented.
    MutualTls,
    /// Maintenance mode (`--insecure`): TLS without client certificate, server not verified.
    InsecureMaintenance,
}

/// Everything needed to talk to apid. Certificates and keys are parsed when the config is
/// built, so a bad PEM is reported before any network traffic.
#[derive(Clone)]
pub struct ConnectionConfig {
    pub(crate) endpoints: Vec<ApiEndpoint>,
    pub(crate) tls: Arc<ClientConfig>,
    pub(crate) mode: SecurityMode,
    pub(crate) call_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) retry: RetryPolicy,
}

impl fmt::Debug for ConnectionConfig {
    // The TLS config holds the client key; show only what is safe.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionConfig")
            .field("endpoints", &self.endpoints)
            .field("mode", &self.mode)
            .field("call_timeout", &self.call_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Default deadline of one call attempt (a whole stream for streaming calls).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default TCP + TLS connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn parse_endpoints<S: AsRef<str>>(endpoints: &[S]) -> Result<Vec<ApiEndpoint>, Error> {
    if endpoints.is_empty() {
        return Err(Error::NoEndpoints);
    }
    endpoints
        .iter()
        .map(|e| ApiEndpoint::parse(e.as_ref()))
        .collect()
}

impl ConnectionConfig {
    /// Normal mode: mutual TLS with the OS CA (`ca_pem`), the client certificate
    /// (`cert_pem`) and its key (`key_pem`, `ED25519 PRIVATE KEY` or `PRIVATE KEY` etc.).
    /// Endpoints are `host[:port]`; the port defaults to 50000. Calls go to the first
    /// endpoint and fail over to the next one when a connection cannot be made.
    pub fn mutual_tls<S: AsRef<str>>(
        endpoints: &[S],
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &SecretString,
    ) -> Result<Self, Error> {
        let endpoints = parse_endpoints(endpoints)?;
        let tls = tls::mutual_tls_client_config(ca_pem, cert_pem, key_pem)?;
        Ok(Self::with_tls(endpoints, tls, SecurityMode::MutualTls))
    }

    /// Maintenance mode (`--insecure`): TLS without a client certificate and without
    /// verifying the server. Only for nodes that have no machine config yet.
    pub fn insecure<S: AsRef<str>>(endpoints: &[S]) -> Result<Self, Error> {
        let endpoints = parse_endpoints(endpoints)?;
        let tls = tls::insecure_client_config()?;
        Ok(Self::with_tls(
            endpoints,
            tls,
            SecurityMode::InsecureMaintenance,
        ))
    }

    fn with_tls(endpoints: Vec<ApiEndpoint>, tls: Arc<ClientConfig>, mode: SecurityMode) -> Self {
        ConnectionConfig {
            endpoints,
            tls,
            mode,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }

    /// Deadline of one call attempt (the whole stream for streaming calls).
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Retry policy for transient failures (see [`RetryPolicy`]).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn endpoints(&self) -> &[ApiEndpoint] {
        &self.endpoints
    }

    pub fn mode(&self) -> SecurityMode {
        self.mode
    }
}
