//! The two interfaces the engine drives: [`NodeApi`] (the Talos API of each node) and
//! [`KubeApi`] (the Kubernetes API), plus [`KubeConnector`] which turns a kubeconfig into a
//! [`KubeApi`]. Real implementations: [`crate::talos::TalosApi`] and
//! [`crate::kube_http::HttpKubeApi`]; the `fake` feature has in-process fakes; the
//! simulator (kforge-sim) is reached through the real ones.
//!
//! Every method is one attempt: retries, polling and deadlines belong to the engine, so
//! the same rules apply whichever implementation answers.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use kforge_secret::{SecretBytes, SecretString};
use kforge_yaml::Value;
use serde::Serialize;

pub use kforge_talos_api::{BootstrapOutcome, ServiceAction};

use crate::desired::NodeRef;

/// Why a node call failed, as far as the engine's decisions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApiErrorKind {
    /// No connection (refused, no route, connect timeout, rebooting).
    Unreachable,
    /// Connected, but the service is not available right now.
    Unavailable,
    /// The node says "not yet" (bootstrap not available yet, time not in sync, etcd not
    /// running yet).
    NotReady,
    /// "etcd data directory is not empty" and the like.
    AlreadyExists,
    /// The node rejected kforge's client certificate (or role): wrong talosconfig.
    AuthRejected,
    /// The node's certificate is not issued by this cluster's CA and the node is not in
    /// maintenance mode (another cluster's node?).
    UntrustedNode,
    /// The API is not served in maintenance mode.
    MaintenanceMode,
    NotFound,
    Timeout,
    /// A permanent refusal (invalid config, bootstrap on a worker, …).
    Refused,
    /// kforge-side setup problem (bad certificate PEM, bad endpoint).
    Setup,
    Other,
}

impl ApiErrorKind {
    pub fn describe(self) -> &'static str {
        match self {
            ApiErrorKind::Unreachable => "the node is unreachable",
            ApiErrorKind::Unavailable => "the Talos API is unavailable",
            ApiErrorKind::NotReady => "the node is not ready yet",
            ApiErrorKind::AlreadyExists => "already done",
            ApiErrorKind::AuthRejected => "the node rejected kforge's client certificate",
            ApiErrorKind::UntrustedNode => {
                "the node's certificate is not issued by this cluster's CA"
            }
            ApiErrorKind::MaintenanceMode => "the node is in maintenance mode",
            ApiErrorKind::NotFound => "not found",
            ApiErrorKind::Timeout => "no answer in time",
            ApiErrorKind::Refused => "refused",
            ApiErrorKind::Setup => "client setup failed",
            ApiErrorKind::Other => "failed",
        }
    }

    /// Failures that waiting may cure.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ApiErrorKind::Unreachable
                | ApiErrorKind::Unavailable
                | ApiErrorKind::NotReady
                | ApiErrorKind::Timeout
        )
    }
}

/// A failed node call: which operation, which node, what kind of failure. The transport
/// error, if any, is the `source` (printed as `Caused by:`).
#[derive(Debug, thiserror::Error)]
pub struct ApiError {
    pub operation: &'static str,
    /// `cp-1 (10.0.1.11)`.
    pub node: String,
    pub kind: ApiErrorKind,
    /// Extra detail not carried by `source` (may be empty).
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {}: {}",
            self.operation,
            self.node,
            self.kind.describe()
        )?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if self.kind == ApiErrorKind::AuthRejected {
            f.write_str(
                "; hint: check that the talosconfig belongs to this cluster (same secrets bundle)",
            )?;
        }
        Ok(())
    }
}

impl ApiError {
    pub fn new(
        operation: &'static str,
        node: &NodeRef,
        kind: ApiErrorKind,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            operation,
            node: node.to_string(),
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// One line with the cause chain, for "last seen" texts and reports.
    pub fn chain(&self) -> String {
        error_chain(self)
    }
}

/// `error: cause: cause` on one line.
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

/// What a node is, as far as deployment goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeMode {
    /// No machine config yet: takes an insecure ApplyConfiguration.
    Maintenance,
    /// Configured: answers Version over mutual TLS with this cluster's credentials.
    Configured { version: String },
}

/// How to send a config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyAuth {
    /// Maintenance mode: TLS without client certificate.
    Insecure,
    /// Mutual TLS with the cluster's talosconfig.
    Authenticated,
}

/// The node's answer to ApplyConfiguration (always sent with mode AUTO).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// The mode the node used (`reboot`, `no-reboot`, …), if it said.
    pub mode: Option<String>,
    pub details: String,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EtcdMemberInfo {
    pub id: u64,
    /// Talos names members after the node's hostname.
    pub hostname: String,
    pub is_learner: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EtcdStatusInfo {
    pub member_id: u64,
    /// Member id of the leader this member sees; 0 = no leader.
    pub leader: u64,
    pub raft_index: u64,
    pub errors: Vec<String>,
    pub is_learner: bool,
}

/// A Talos service (`etcd`, `kubelet`, `apid`, …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceState {
    pub id: String,
    /// Initialized, Preparing, Waiting, Running, Stopping, Finished, Failed, Skipped, Starting.
    pub state: String,
    /// None when the service has no health check (or it has not run).
    pub healthy: Option<bool>,
    pub message: String,
}

impl ServiceState {
    /// Running, and healthy if it has a health check.
    pub fn is_up(&self) -> bool {
        self.state == "Running" && self.healthy != Some(false)
    }
}

/// The parts of `/proc/meminfo` the engine checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemorySummary {
    pub total_kib: u64,
    pub hugepages_total: u64,
    pub hugepages_free: u64,
    pub hugepage_size_kib: u64,
}

/// Where Talos keeps the applied machine config (read back to compare with the desired one).
pub const RUNNING_CONFIG_PATH: &str = "/system/state/config.yaml";
/// The kernel's table of local addresses, used to find the VIP owner.
pub const FIB_TRIE_PATH: &str = "/proc/net/fib_trie";

/// The Talos API of the cluster's nodes, one call = one attempt on one node.
#[async_trait]
pub trait NodeApi: Send + Sync {
    /// Maintenance mode or configured. Errors: `Unreachable`/`Timeout` when the node does
    /// not answer, `AuthRejected` when it rejects the credentials, `UntrustedNode` when it
    /// is neither in maintenance mode nor trusts/presents this cluster's CA.
    async fn probe(&self, node: &NodeRef) -> Result<NodeMode, ApiError>;

    /// ApplyConfiguration with mode AUTO.
    async fn apply_config(
        &self,
        node: &NodeRef,
        config: &SecretString,
        auth: ApplyAuth,
    ) -> Result<ApplyReport, ApiError>;

    /// One Bootstrap call. `Ok(AlreadyBootstrapped)` (or `Err` of kind `AlreadyExists`) when
    /// the node says "etcd data directory is not empty"; `NotReady` while "bootstrap is not
    /// available yet" / "time is not in sync yet".
    async fn bootstrap(&self, node: &NodeRef) -> Result<BootstrapOutcome, ApiError>;

    /// EtcdMemberList as the node's etcd sees the cluster.
    async fn etcd_members(&self, node: &NodeRef) -> Result<Vec<EtcdMemberInfo>, ApiError>;

    /// EtcdStatus of the node's own member.
    async fn etcd_status(&self, node: &NodeRef) -> Result<EtcdStatusInfo, ApiError>;

    async fn services(&self, node: &NodeRef) -> Result<Vec<ServiceState>, ApiError>;

    /// Version over mutual TLS: the Talos version tag.
    async fn version(&self, node: &NodeRef) -> Result<String, ApiError>;

    async fn memory(&self, node: &NodeRef) -> Result<MemorySummary, ApiError>;

    /// Read: a file's bytes. `NotFound` when it does not exist.
    async fn read_file(&self, node: &NodeRef, path: &str) -> Result<Vec<u8>, ApiError>;

    /// The admin kubeconfig (control-plane nodes).
    async fn kubeconfig(&self, node: &NodeRef) -> Result<SecretString, ApiError>;

    async fn service_action(
        &self,
        node: &NodeRef,
        service: &str,
        action: ServiceAction,
    ) -> Result<(), ApiError>;

    /// The machine config the node runs. Default: [`RUNNING_CONFIG_PATH`] through Read.
    async fn running_config(&self, node: &NodeRef) -> Result<SecretString, ApiError> {
        let bytes = SecretBytes::new(self.read_file(node, RUNNING_CONFIG_PATH).await?);
        match std::str::from_utf8(bytes.expose()) {
            Ok(text) => Ok(SecretString::from(text.to_string())),
            Err(_) => Err(ApiError::new(
                "Read",
                node,
                ApiErrorKind::Other,
                format!("{RUNNING_CONFIG_PATH} is not UTF-8"),
            )),
        }
    }

    /// Whether `vip` is currently assigned to one of the node's interfaces.
    ///
    /// Contract: exactly one healthy control-plane node answers `true` while the VIP is
    /// held; during a failover none may. Default: Read [`FIB_TRIE_PATH`] and look for the
    /// VIP as a `/32 host LOCAL` entry, as the Linux kernel lists local addresses. A
    /// simulator serves that file with the VIP entry on the owner only, e.g.
    ///
    /// ```text
    /// Local:
    ///   +-- 0.0.0.0/0 3 0 5
    ///      |-- 10.0.1.10
    ///         /32 host LOCAL
    /// ```
    async fn holds_vip(&self, node: &NodeRef, vip: &str) -> Result<bool, ApiError> {
        let bytes = self.read_file(node, FIB_TRIE_PATH).await?;
        Ok(fib_trie_has_local(&String::from_utf8_lossy(&bytes), vip))
    }
}

/// Whether `/proc/net/fib_trie` text lists `address` as a local host address.
pub fn fib_trie_has_local(text: &str, address: &str) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    lines.iter().enumerate().any(|(i, line)| {
        line.trim().strip_prefix("|-- ").map(str::trim) == Some(address)
            && lines[i + 1..]
                .iter()
                .take_while(|l| l.trim_start().starts_with('/'))
                .any(|l| l.contains("host LOCAL"))
    })
}

// ---------------------------------------------------------------- Kubernetes

/// Why a Kubernetes call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KubeErrorKind {
    Unreachable,
    Tls,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    /// 422 / 400: the object is invalid.
    Invalid,
    /// 5xx.
    Server,
    Timeout,
    /// The kubeconfig is unusable.
    Kubeconfig,
    /// The kind is not served by the API (discovery found no such resource).
    UnknownKind,
    Other,
}

impl KubeErrorKind {
    pub fn describe(self) -> &'static str {
        match self {
            KubeErrorKind::Unreachable => "the API server is unreachable",
            KubeErrorKind::Tls => "TLS with the API server failed",
            KubeErrorKind::Unauthorized => "the API server rejected the credentials",
            KubeErrorKind::Forbidden => "forbidden",
            KubeErrorKind::NotFound => "not found",
            KubeErrorKind::Conflict => "conflict",
            KubeErrorKind::Invalid => "the object is invalid",
            KubeErrorKind::Server => "the API server failed",
            KubeErrorKind::Timeout => "no answer in time",
            KubeErrorKind::Kubeconfig => "the kubeconfig is not usable",
            KubeErrorKind::UnknownKind => "the API server does not serve this kind",
            KubeErrorKind::Other => "failed",
        }
    }

    pub fn is_transient(self) -> bool {
        matches!(
            self,
            KubeErrorKind::Unreachable | KubeErrorKind::Server | KubeErrorKind::Timeout
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub struct KubeError {
    /// `GET /readyz`, `server-side apply PriorityClass/solana-critical`, …
    pub operation: String,
    /// The API server URL the call went to.
    pub server: String,
    pub kind: KubeErrorKind,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The API server's message (Status.message) or other detail.
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl fmt::Display for KubeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} via {}: {}",
            self.operation,
            self.server,
            self.kind.describe()
        )?;
        if let Some(s) = self.status {
            write!(f, " (HTTP {s})")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl KubeError {
    pub fn new(
        operation: impl Into<String>,
        server: impl Into<String>,
        kind: KubeErrorKind,
        message: impl Into<String>,
    ) -> Self {
        KubeError {
            operation: operation.into(),
            server: server.into(),
            kind,
            status: None,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

/// The answer of `/readyz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Readyz {
    pub ok: bool,
    /// The body (trimmed), e.g. which checks failed.
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

/// What the engine reads from a Kubernetes Node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KubeNode {
    pub name: String,
    /// The `Ready` condition: Some(true) = True, Some(false) = False/Unknown, None = absent.
    pub ready: Option<bool>,
    /// Reason and message of the Ready condition.
    pub ready_message: String,
    pub unschedulable: bool,
    pub labels: std::collections::BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// `status.capacity` (cpu, memory, pods, hugepages-2Mi, hugepages-1Gi, …).
    pub capacity: std::collections::BTreeMap<String, String>,
    /// `status.addresses[].address`.
    pub addresses: Vec<String>,
}

impl KubeNode {
    /// Reads a Node object; absent fields become empty.
    pub fn from_object(object: &Value) -> Self {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        let map = |v: Option<&Value>| -> std::collections::BTreeMap<String, String> {
            v.and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let s = match v {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            (k.clone(), s)
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let ready_condition = object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
            });
        let ready =
            ready_condition.map(|c| c.get("status").and_then(Value::as_str) == Some("True"));
        let ready_message = ready_condition
            .map(|c| {
                let reason = text(c.get("reason"));
                let message = text(c.get("message"));
                match (reason.is_empty(), message.is_empty()) {
                    (false, false) => format!("{reason}: {message}"),
                    (false, true) => reason,
                    _ => message,
                }
            })
            .unwrap_or_default();
        KubeNode {
            name: text(object.pointer("/metadata/name")),
            ready,
            ready_message,
            unschedulable: object
                .pointer("/spec/unschedulable")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            labels: map(object.pointer("/metadata/labels")),
            taints: object
                .pointer("/spec/taints")
                .and_then(Value::as_array)
                .map(|ts| {
                    ts.iter()
                        .map(|t| Taint {
                            key: text(t.get("key")),
                            value: text(t.get("value")),
                            effect: text(t.get("effect")),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            capacity: map(object.pointer("/status/capacity")),
            addresses: object
                .pointer("/status/addresses")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|x| text(x.get("address"))).collect())
                .unwrap_or_default(),
        }
    }
}

/// The Kubernetes API as the engine uses it; one call = one attempt.
#[async_trait]
pub trait KubeApi: Send + Sync {
    /// `GET /readyz` on the kubeconfig's server (the cluster endpoint, e.g. the VIP).
    async fn readyz(&self) -> Result<Readyz, KubeError>;

    /// `GET /readyz` on the API server at `address` (a control-plane node), same port and
    /// credentials as the kubeconfig's server.
    async fn readyz_via(&self, address: &str) -> Result<Readyz, KubeError>;

    /// All nodes.
    async fn nodes(&self) -> Result<Vec<KubeNode>, KubeError>;

    /// Server-side apply (`PATCH … application/apply-patch+yaml`, `force=true`) of any
    /// object; returns the object as stored.
    async fn server_side_apply(
        &self,
        object: &Value,
        field_manager: &str,
    ) -> Result<Value, KubeError>;

    /// One object, or None when it does not exist.
    async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, KubeError>;

    /// Objects of a kind (in a namespace, or all), optionally filtered by a label selector.
    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<Value>, KubeError>;
}

/// Makes a [`KubeApi`] from an admin kubeconfig (fetched from a node).
pub trait KubeConnector: Send + Sync {
    fn connect(&self, kubeconfig: &SecretString) -> Result<Arc<dyn KubeApi>, KubeError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fib_trie_local_addresses() {
        let text = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.0.1.10\n        /32 link UNICAST\n     |-- 10.0.1.11\n        /32 host LOCAL\nLocal:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.0.1.10\n        /24 link UNICAST\n        /32 host LOCAL\n";
        assert!(fib_trie_has_local(text, "10.0.1.10"));
        assert!(fib_trie_has_local(text, "10.0.1.11"));
        assert!(!fib_trie_has_local(text, "10.0.1.12"));
        assert!(!fib_trie_has_local(
            "     |-- 10.0.1.10\n        /32 link UNICAST\n",
            "10.0.1.10"
        ));
    }

    #[test]
    fn kube_node_from_object() {
        let n = KubeNode::from_object(&serde_json::json!({
            "metadata": {"name": "w", "labels": {"a": "b"}},
            "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}], "unschedulable": true},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "cni not ready"}
                ],
                "capacity": {"hugepages-2Mi": "100Gi", "pods": "110"},
                "addresses": [{"type": "InternalIP", "address": "10.0.1.20"}]
            }
        }));
        assert_eq!(n.name, "w");
        assert_eq!(n.ready, Some(false));
        assert_eq!(n.ready_message, "KubeletNotReady: cni not ready");
        assert!(n.unschedulable);
        assert_eq!(n.capacity["hugepages-2Mi"], "100Gi");
        assert_eq!(n.taints[0].effect, "NoSchedule");
        assert_eq!(n.addresses, ["10.0.1.20"]);
        assert_eq!(KubeNode::from_object(&serde_json::json!({})).ready, None);
    }

    #[test]
    fn api_error_display_names_operation_node_and_hint() {
        let node = NodeRef::new("cp-1", "10.0.1.11", crate::desired::Role::ControlPlane);
        let e = ApiError::new("Version", &node, ApiErrorKind::AuthRejected, "");
        assert_eq!(
            e.to_string(),
            "Version on cp-1 (10.0.1.11): the node rejected kforge's client certificate; hint: \
             check that the talosconfig belongs to this cluster (same secrets bundle)"
        );
    }
}
