//! [`TalosApi`]: [`NodeApi`] over kforge-talos-api. Each node is reached directly on its
//! own apid (`<address>:50000`, or an override such as a simulator's loopback port), with
//! mutual TLS from the talosconfig, or insecure TLS for maintenance mode. Every call is a
//! single attempt (the engine polls and retries with its own deadlines).
//!
//! Maintenance detection: Version over mutual TLS answers on a configured node. A node in
//! maintenance mode presents a self-signed certificate, so mutual TLS fails verification
//! (`UnknownIssuer`); kforge then asks the same node over insecure TLS, where a
//! maintenance-mode node answers Version with `Unimplemented` "… maintenance mode".

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use kforge_pki::Talosconfig;
use kforge_secret::SecretString;
use kforge_talos_api::{
    ApplyMode, ApplyOptions, BootstrapOptions, ConnectionConfig, Error as TalosError, NodeReply,
    RetryPolicy, TalosClient, Targets,
};

use crate::api::{
    ApiError, ApiErrorKind, ApplyAuth, ApplyReport, BootstrapOutcome, EtcdMemberInfo,
    EtcdStatusInfo, MemorySummary, NodeApi, NodeMode, ServiceAction, ServiceState,
};
use crate::desired::NodeRef;

/// How to reach the nodes.
#[derive(Clone, Debug)]
pub struct TalosApiOptions {
    /// apid port (50000).
    pub port: u16,
    /// `address → host:port` for nodes not reachable at `<address>:<port>` (simulators,
    /// port forwards).
    pub endpoint_overrides: BTreeMap<String, String>,
    /// Deadline of one call.
    pub call_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for TalosApiOptions {
    fn default() -> Self {
        TalosApiOptions {
            port: kforge_talos_api::DEFAULT_API_PORT,
            endpoint_overrides: BTreeMap::new(),
            call_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The talosconfig identity used for mutual TLS.
pub struct TalosCredentials {
    pub ca_pem: String,
    pub crt_pem: String,
    pub key_pem: SecretString,
}

/// Why the credentials could not be read from a talosconfig.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("the talosconfig has no context `{context}`")]
    NoContext { context: String },
    #[error("the talosconfig has no current context; hint: pass the context name")]
    NoCurrentContext,
    #[error("the talosconfig context `{context}` is not usable")]
    Pki {
        context: String,
        #[source]
        source: kforge_pki::PkiError,
    },
}

impl TalosCredentials {
    /// From a talosconfig context (default: the current one).
    pub fn from_talosconfig(
        talosconfig: &Talosconfig,
        context: Option<&str>,
    ) -> Result<Self, CredentialsError> {
        let (name, ctx) = match context {
            Some(c) => (
                c.to_string(),
                talosconfig
                    .contexts
                    .get(c)
                    .ok_or_else(|| CredentialsError::NoContext {
                        context: c.to_string(),
                    })?,
            ),
            None => (
                talosconfig.context.clone(),
                talosconfig
                    .current()
                    .ok_or(CredentialsError::NoCurrentContext)?,
            ),
        };
        let pki = |source| CredentialsError::Pki {
            context: name.clone(),
            source,
        };
        Ok(TalosCredentials {
            ca_pem: ctx.ca_pem().map_err(pki)?,
            crt_pem: ctx.crt_pem().map_err(pki)?,
            key_pem: ctx.key_pem().map_err(pki)?,
        })
    }
}

/// The real [`NodeApi`].
pub struct TalosApi {
    credentials: TalosCredentials,
    options: TalosApiOptions,
    clients: Mutex<HashMap<(String, bool), TalosClient>>,
}

/// Which failure an error is, from its gRPC code and text (TLS alerts only show as text).
fn classify(e: &TalosError) -> ApiErrorKind {
    let text = e.to_string();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    // BadSignature: another cluster's CA has the same subject (O=talos), so the node's
    // chain is built and then its signature fails verification here. Found by the CLI E2E
    // (up with another talsecret): it was classified as "unavailable" and retried until
    // the step's deadline (10 minutes) instead of failing at once.
    if has(&[
        "UnknownIssuer",
        "certificate is not signed",
        "BadSignature",
        "InvalidSignatureForPublicKey",
    ]) {
        return ApiErrorKind::UntrustedNode;
    }
    if has(&[
        "UnknownCA",
        "BadCertificate",
        "CertificateRequired",
        "AccessDenied",
        "certificate required",
        // Another cluster's CA has the same subject (O=talos): the chain is built, then its
        // signature fails, and rustls/Go answer with a decrypt_error alert.
        "DecryptError",
    ]) {
        return ApiErrorKind::AuthRejected;
    }
    match e {
        TalosError::InvalidEndpoint { .. }
        | TalosError::NoEndpoints
        | TalosError::InvalidPem { .. }
        | TalosError::TlsSetup { .. }
        | TalosError::InvalidNodeName { .. }
        | TalosError::NeedsOneNode { .. } => return ApiErrorKind::Setup,
        TalosError::DeadlineExceeded { .. } => return ApiErrorKind::Timeout,
        TalosError::RetriesExhausted { last, .. } => return classify(last),
        TalosError::KubeconfigArchive { .. } | TalosError::EmptyReply { .. } => {
            return ApiErrorKind::Other;
        }
        _ => {}
    }
    let message = match e {
        TalosError::Rpc { message, .. } | TalosError::NodeFailed { message, .. } => {
            message.as_str()
        }
        _ => "",
    };
    classify_code(e.code(), message, &text)
}

fn classify_code(code: Option<tonic::Code>, message: &str, text: &str) -> ApiErrorKind {
    use tonic::Code;
    match code {
        Some(Code::Unavailable) => {
            let lower = text.to_ascii_lowercase();
            if [
                "connection refused",
                "no route",
                "unreachable",
                "timed out",
                "connect",
                "broken pipe",
                "reset by peer",
            ]
            .iter()
            .any(|n| lower.contains(n))
            {
                ApiErrorKind::Unreachable
            } else {
                ApiErrorKind::Unavailable
            }
        }
        Some(Code::DeadlineExceeded) => ApiErrorKind::Timeout,
        Some(Code::AlreadyExists) => ApiErrorKind::AlreadyExists,
        Some(Code::Unauthenticated) | Some(Code::PermissionDenied) => ApiErrorKind::AuthRejected,
        Some(Code::NotFound) => ApiErrorKind::NotFound,
        Some(Code::Unimplemented) if message.contains("maintenance mode") => {
            ApiErrorKind::MaintenanceMode
        }
        Some(Code::FailedPrecondition) => {
            let transient = [
                "not available yet",
                "not in sync",
                "etcd is not",
                "not running",
                "not ready",
            ];
            if transient.iter().any(|t| message.contains(t)) {
                ApiErrorKind::NotReady
            } else {
                ApiErrorKind::Refused
            }
        }
        Some(Code::InvalidArgument) => ApiErrorKind::Refused,
        Some(Code::Cancelled) => ApiErrorKind::Timeout,
        _ => ApiErrorKind::Other,
    }
}

impl TalosApi {
    pub fn new(credentials: TalosCredentials, options: TalosApiOptions) -> Self {
        TalosApi {
            credentials,
            options,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn endpoint(&self, node: &NodeRef) -> String {
        match self.options.endpoint_overrides.get(&node.address) {
            Some(e) => e.clone(),
            None if node.address.contains(':') && !node.address.starts_with('[') => {
                format!("[{}]:{}", node.address, self.options.port)
            }
            None => format!("{}:{}", node.address, self.options.port),
        }
    }

    fn error(&self, op: &'static str, node: &NodeRef, e: TalosError) -> ApiError {
        let kind = classify(&e);
        ApiError::new(op, node, kind, "").with_source(e)
    }

    /// A client for the node (cached; connections are lazy).
    async fn client(
        &self,
        op: &'static str,
        node: &NodeRef,
        insecure: bool,
    ) -> Result<TalosClient, ApiError> {
        let key = (node.address.clone(), insecure);
        if let Some(c) = self.clients.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(c);
        }
        let endpoints = [self.endpoint(node)];
        let config = if insecure {
            ConnectionConfig::insecure(&endpoints)
        } else {
            ConnectionConfig::mutual_tls(
                &endpoints,
                &self.credentials.ca_pem,
                &self.credentials.crt_pem,
                &self.credentials.key_pem,
            )
        }
        .map_err(|e| self.error(op, node, e))?
        .with_call_timeout(self.options.call_timeout)
        .with_connect_timeout(self.options.connect_timeout)
        .with_retry(RetryPolicy::none());
        let client = TalosClient::connect(&config)
            .await
            .map_err(|e| self.error(op, node, e))?;
        if let Ok(mut m) = self.clients.lock() {
            m.insert(key, client.clone());
        }
        Ok(client)
    }

    /// The single reply of a one-node call.
    fn one<T>(
        &self,
        op: &'static str,
        node: &NodeRef,
        replies: Result<Vec<NodeReply<T>>, TalosError>,
    ) -> Result<T, ApiError> {
        let replies = replies.map_err(|e| self.error(op, node, e))?;
        let Some(reply) = replies.into_iter().next() else {
            return Err(ApiError::new(op, node, ApiErrorKind::Other, "no reply"));
        };
        reply.result.map_err(|e| {
            let kind = classify_code(e.code, &e.message, &e.message);
            ApiError::new(op, node, kind, e.message)
        })
    }
}

#[async_trait]
impl NodeApi for TalosApi {
    async fn probe(&self, node: &NodeRef) -> Result<NodeMode, ApiError> {
        match self.version(node).await {
            Ok(version) => Ok(NodeMode::Configured { version }),
            Err(e) if e.kind == ApiErrorKind::UntrustedNode => {
                let client = self.client("Version", node, true).await?;
                let r = client.version(&Targets::Endpoint).await;
                match r.map_err(|e| self.error("Version (insecure)", node, e)) {
                    Err(m) if m.kind == ApiErrorKind::MaintenanceMode => Ok(NodeMode::Maintenance),
                    Err(other) if other.kind.is_transient() => Err(other),
                    // Answers insecure Version, or refuses in another way: not maintenance
                    // mode, and not ours.
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn apply_config(
        &self,
        node: &NodeRef,
        config: &SecretString,
        auth: ApplyAuth,
    ) -> Result<ApplyReport, ApiError> {
        const OP: &str = "ApplyConfiguration";
        let client = self.client(OP, node, auth == ApplyAuth::Insecure).await?;
        let r = client
            .apply_configuration(
                &Targets::Endpoint,
                config.as_bytes(),
                ApplyOptions::new(ApplyMode::Auto),
            )
            .await;
        let result = self.one(OP, node, r)?;
        Ok(ApplyReport {
            mode: result.mode.map(|m| m.name().to_string()),
            details: result.mode_details,
            warnings: result.warnings,
        })
    }

    async fn bootstrap(&self, node: &NodeRef) -> Result<BootstrapOutcome, ApiError> {
        let client = self.client("Bootstrap", node, false).await?;
        let options = BootstrapOptions {
            retry: RetryPolicy::none(),
            ..BootstrapOptions::default()
        };
        client
            .bootstrap(&Targets::Endpoint, options)
            .await
            .map_err(|e| self.error("Bootstrap", node, e))
    }

    async fn etcd_members(&self, node: &NodeRef) -> Result<Vec<EtcdMemberInfo>, ApiError> {
        let client = self.client("EtcdMemberList", node, false).await?;
        let r = client.etcd_member_list(&Targets::Endpoint, false).await;
        let members = self.one("EtcdMemberList", node, r)?;
        Ok(members
            .members
            .into_iter()
            .map(|m| EtcdMemberInfo {
                id: m.id,
                hostname: m.hostname,
                is_learner: m.is_learner,
            })
            .collect())
    }

    async fn etcd_status(&self, node: &NodeRef) -> Result<EtcdStatusInfo, ApiError> {
        let client = self.client("EtcdStatus", node, false).await?;
        let r = client.etcd_status(&Targets::Endpoint).await;
        let s = self.one("EtcdStatus", node, r)?;
        Ok(EtcdStatusInfo {
            member_id: s.member_id,
            leader: s.leader,
            raft_index: s.raft_index,
            errors: s.errors,
            is_learner: s.is_learner,
        })
    }

    async fn services(&self, node: &NodeRef) -> Result<Vec<ServiceState>, ApiError> {
        let client = self.client("ServiceList", node, false).await?;
        let r = client.service_list(&Targets::Endpoint).await;
        Ok(self
            .one("ServiceList", node, r)?
            .into_iter()
            .map(|s| ServiceState {
                healthy: (!s.health.unknown).then_some(s.health.healthy),
                message: s.health.last_message,
                id: s.id,
                state: s.state,
            })
            .collect())
    }

    async fn version(&self, node: &NodeRef) -> Result<String, ApiError> {
        let client = self.client("Version", node, false).await?;
        let r = client.version(&Targets::Endpoint).await;
        Ok(self.one("Version", node, r)?.tag)
    }

    async fn memory(&self, node: &NodeRef) -> Result<MemorySummary, ApiError> {
        let client = self.client("Memory", node, false).await?;
        let r = client.memory(&Targets::Endpoint).await;
        let m = self.one("Memory", node, r)?;
        Ok(MemorySummary {
            total_kib: m.memtotal,
            hugepages_total: m.hugepagestotal,
            hugepages_free: m.hugepagesfree,
            hugepage_size_kib: m.hugepagesize,
        })
    }

    async fn read_file(&self, node: &NodeRef, path: &str) -> Result<Vec<u8>, ApiError> {
        let client = self.client("Read", node, false).await?;
        let r = client.read(&Targets::Endpoint, path).await;
        self.one("Read", node, r).map_err(|mut e| {
            e.message = if e.message.is_empty() {
                path.to_string()
            } else {
                format!("{path}: {}", e.message)
            };
            e
        })
    }

    async fn kubeconfig(&self, node: &NodeRef) -> Result<SecretString, ApiError> {
        let client = self.client("Kubeconfig", node, false).await?;
        client
            .kubeconfig(&Targets::Endpoint)
            .await
            .map_err(|e| self.error("Kubeconfig", node, e))
    }

    async fn service_action(
        &self,
        node: &NodeRef,
        service: &str,
        action: ServiceAction,
    ) -> Result<(), ApiError> {
        let op = match action {
            ServiceAction::Start => "ServiceStart",
            ServiceAction::Stop => "ServiceStop",
            ServiceAction::Restart => "ServiceRestart",
        };
        let client = self.client(op, node, false).await?;
        let r = client.service(&Targets::Endpoint, action, service).await;
        self.one(op, node, r).map(|_| ()).map_err(|mut e| {
            e.message = format!(
                "service {service}{}",
                if e.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", e.message)
                }
            );
            e
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(code: tonic::Code, message: &str, detail: &str) -> TalosError {
        TalosError::Rpc {
            operation: "Version",
            endpoint: "10.0.0.1:50000".into(),
            code,
            message: message.into(),
            detail: detail.into(),
            hint: String::new(),
        }
    }

    #[test]
    fn errors_are_classified() {
        use tonic::Code::*;
        assert_eq!(
            classify(&rpc(
                Unavailable,
                "tcp connect error",
                ": Connection refused (os error 111)"
            )),
            ApiErrorKind::Unreachable
        );
        assert_eq!(
            classify(&rpc(
                Unavailable,
                "transport error",
                ": invalid peer certificate: UnknownIssuer"
            )),
            ApiErrorKind::UntrustedNode
        );
        assert_eq!(
            classify(&rpc(
                Unavailable,
                "transport error",
                ": invalid peer certificate: BadSignature"
            )),
            ApiErrorKind::UntrustedNode
        );
        assert_eq!(
            classify(&rpc(
                Unavailable,
                "transport error",
                ": received fatal alert: BadCertificate"
            )),
            ApiErrorKind::AuthRejected
        );
        assert_eq!(
            classify(&rpc(
                FailedPrecondition,
                "bootstrap is not available yet",
                ""
            )),
            ApiErrorKind::NotReady
        );
        assert_eq!(
            classify(&rpc(
                FailedPrecondition,
                "bootstrap is not supported on worker nodes",
                ""
            )),
            ApiErrorKind::Refused
        );
        assert_eq!(
            classify(&rpc(
                Unimplemented,
                "API is not implemented in maintenance mode",
                ""
            )),
            ApiErrorKind::MaintenanceMode
        );
        assert_eq!(
            classify(&rpc(AlreadyExists, "etcd data directory is not empty", "")),
            ApiErrorKind::AlreadyExists
        );
        assert_eq!(
            classify(&rpc(NotFound, "no such file", "")),
            ApiErrorKind::NotFound
        );
    }

    #[test]
    fn endpoints() {
        let mut o = TalosApiOptions::default();
        o.endpoint_overrides
            .insert("10.0.1.12".into(), "127.0.0.1:41000".into());
        let api = TalosApi::new(
            TalosCredentials {
                ca_pem: String::new(),
                crt_pem: String::new(),
                key_pem: SecretString::from(String::new()),
            },
            o,
        );
        let n = |a: &str| NodeRef::new("n", a, crate::desired::Role::Worker);
        assert_eq!(api.endpoint(&n("10.0.1.11")), "10.0.1.11:50000");
        assert_eq!(api.endpoint(&n("10.0.1.12")), "127.0.0.1:41000");
        assert_eq!(api.endpoint(&n("fd00::1")), "[fd00::1]:50000");
    }
}
