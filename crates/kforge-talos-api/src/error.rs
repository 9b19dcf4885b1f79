//! The error type of the Talos API client. Every variant names the operation and the
//! endpoint or input involved; secrets (keys, kubeconfig contents) never appear in it.

use std::time::Duration;

/// Errors of connecting to and calling the Talos API.
///
/// Per-node failures inside a successful fan-out reply are not errors of this type; they
/// are [`crate::NodeError`]s inside [`crate::NodeReply`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "Talos API endpoint {endpoint:?} is invalid: {reason}; expected `host` or `host:port` \
         (IPv6 as `[addr]:port`), the port defaults to 50000"
    )]
    InvalidEndpoint { endpoint: String, reason: String },

    #[error("no Talos API endpoints given; hint: set `endpoints` in the talosconfig context")]
    NoEndpoints,

    #[error("{what} is not usable: {reason}")]
    InvalidPem { what: &'static str, reason: String },

    #[error("TLS setup with {what} failed")]
    TlsSetup {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },

    #[error(
        "node name {node:?} cannot be sent as gRPC metadata: only visible ASCII characters are allowed"
    )]
    InvalidNodeName { node: String },

    #[error("{operation} needs exactly one target node, got {count}; hint: pass a single node")]
    NeedsOneNode {
        operation: &'static str,
        count: usize,
    },

    /// The gRPC call failed as a whole (no per-node reply). `detail` holds the transport
    /// cause chain (e.g. ": connection refused"), `hint` a suggestion ("; hint: …") or "".
    #[error(
        "{operation} via {endpoint} failed ({}): {message}{detail}{hint}",
        crate::reply::code_label(.code)
    )]
    Rpc {
        operation: &'static str,
        endpoint: String,
        code: tonic::Code,
        message: String,
        detail: String,
        hint: String,
    },

    #[error(
        "{operation} via {endpoint}: no reply within the {deadline:?} deadline; hint: the node \
         may be overloaded or unreachable, or raise the call timeout"
    )]
    DeadlineExceeded {
        operation: &'static str,
        endpoint: String,
        deadline: Duration,
    },

    #[error(
        "{operation} via {endpoint}: gave up after {attempts} attempts over {elapsed:?} waiting \
         for {waiting_for}"
    )]
    RetriesExhausted {
        operation: &'static str,
        endpoint: String,
        attempts: u32,
        elapsed: Duration,
        waiting_for: &'static str,
        #[source]
        last: Box<Error>,
    },

    /// A single-node operation (e.g. Kubeconfig) whose only node reported an error.
    #[error("{operation} on node {node} failed: {message}")]
    NodeFailed {
        operation: &'static str,
        node: String,
        code: Option<tonic::Code>,
        message: String,
    },

    #[error("{operation} via {endpoint}: the reply carried no per-node messages")]
    EmptyReply {
        operation: &'static str,
        endpoint: String,
    },

    #[error("kubeconfig archive from node {node} is not usable: {reason}")]
    KubeconfigArchive {
        node: String,
        reason: String,
        #[source]
        source: Option<std::io::Error>,
    },
}

impl Error {
    /// The gRPC status code behind this error, if it came from a gRPC status.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Rpc { code, .. } => Some(*code),
            Error::NodeFailed { code, .. } => *code,
            Error::DeadlineExceeded { .. } => Some(tonic::Code::DeadlineExceeded),
            Error::RetriesExhausted { last, .. } => last.code(),
            _ => None,
        }
    }
}
