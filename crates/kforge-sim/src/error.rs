//! Errors of the node simulator. Every variant names what was being done and on what;
//! none carries key material.

use std::path::PathBuf;

/// A failure of the simulated node (not of a single RPC: those become gRPC statuses).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot {operation} `{path}`")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot listen on {address} for {what}")]
    Listen {
        what: &'static str,
        address: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot start `{program}` ({what})")]
    Spawn {
        what: &'static str,
        program: String,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid setting `{setting}`: {reason}")]
    Setting {
        setting: &'static str,
        reason: String,
    },

    #[error("the machine config cannot be used: {}", problems.join("; "))]
    MachineConfig { problems: Vec<String> },

    #[error("cannot {operation}")]
    Pki {
        operation: &'static str,
        #[source]
        source: kforge_pki::PkiError,
    },

    #[error("cannot {operation}: {reason}")]
    Certificate {
        operation: &'static str,
        reason: String,
    },

    #[error("TLS setup for {what} failed")]
    Tls {
        what: &'static str,
        #[source]
        source: Box<kforge_talos_api::Error>,
    },

    #[error("etcd {operation} on {endpoint} failed: {message}")]
    Etcd {
        operation: &'static str,
        endpoint: String,
        code: tonic::Code,
        message: String,
    },

    #[error("trustd at {endpoint} refused to sign the {what} certificate: {message}")]
    Trustd {
        what: &'static str,
        endpoint: String,
        code: tonic::Code,
        message: String,
    },

    #[error("the control socket `{path}` failed: {reason}")]
    Control { path: PathBuf, reason: String },
}

impl SimError {
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| SimError::Io {
            operation,
            path,
            source,
        }
    }

    pub(crate) fn pki(operation: &'static str) -> impl FnOnce(kforge_pki::PkiError) -> Self {
        move |source| SimError::Pki { operation, source }
    }
}

/// `error: cause: cause` on one line (for log lines).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// grpc-go's names of status codes, as apid writes them into `metadata.error`
/// (`rpc error: code = Unavailable desc = …`).
pub fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}
