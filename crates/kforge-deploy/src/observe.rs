//! Looking at the nodes before planning: for each node, whether it answers, whether it is
//! in maintenance mode or configured, the config it runs, and (control-plane nodes) the
//! etcd members it reports. The result is a plain value, the planner's input.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use futures::StreamExt;
use kforge_secret::SecretString;

use crate::api::{ApiErrorKind, NodeApi, NodeMode};
use crate::desired::{DesiredCluster, DesiredNode, Fingerprint};

/// The config a configured node runs.
#[derive(Clone)]
pub enum RunningConfig {
    /// Read back from the node.
    Known(SecretString),
    /// Could not be read; the reason.
    Unreadable(String),
}

impl fmt::Debug for RunningConfig {
    // The config holds secrets: show its fingerprint only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunningConfig::Known(c) => {
                write!(f, "Known({})", Fingerprint::of(c.as_bytes()).short())
            }
            RunningConfig::Unreadable(r) => write!(f, "Unreadable({r:?})"),
        }
    }
}

/// What a control-plane node says about etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EtcdObservation {
    /// Not a control-plane node.
    NotApplicable,
    /// The member hostnames etcd lists (empty: etcd answered with no members).
    Members(Vec<String>),
    /// etcd did not answer (not running yet before bootstrap, or down).
    Unavailable(String),
}

impl EtcdObservation {
    /// Non-empty member list.
    pub fn has_members(&self) -> bool {
        matches!(self, EtcdObservation::Members(m) if !m.is_empty())
    }
}

/// One node as seen before planning.
#[derive(Clone, Debug)]
pub enum NodeObservation {
    /// No answer; the reason.
    Unreachable(String),
    /// The node refused kforge's credentials, or does not belong to this cluster.
    Rejected(String),
    /// No config yet.
    Maintenance,
    Configured {
        version: String,
        running: RunningConfig,
        etcd: EtcdObservation,
    },
}

impl NodeObservation {
    /// A short description for the plan.
    pub fn summary(&self) -> String {
        match self {
            NodeObservation::Unreachable(_) => "unreachable".into(),
            NodeObservation::Rejected(_) => "credentials rejected".into(),
            NodeObservation::Maintenance => "maintenance mode".into(),
            NodeObservation::Configured { version, etcd, .. } => {
                let etcd = match etcd {
                    EtcdObservation::NotApplicable => String::new(),
                    EtcdObservation::Members(m) if m.is_empty() => ", etcd: no members".into(),
                    EtcdObservation::Members(m) => format!(", etcd: {} members", m.len()),
                    EtcdObservation::Unavailable(_) => ", etcd: not running".into(),
                };
                if version.is_empty() {
                    format!("configured{etcd}")
                } else {
                    format!("configured ({version}){etcd}")
                }
            }
        }
    }
}

/// The observed cluster: every desired node by hostname, plus whether the kubeconfig
/// output already holds this cluster's context.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    pub nodes: BTreeMap<String, NodeObservation>,
    pub kubeconfig_present: bool,
}

/// Limits of observation.
#[derive(Clone, Copy, Debug)]
pub struct ObserveOptions {
    /// Per call.
    pub call_timeout: Duration,
    /// Nodes looked at in parallel.
    pub concurrency: usize,
}

impl Default for ObserveOptions {
    fn default() -> Self {
        ObserveOptions {
            call_timeout: Duration::from_secs(10),
            concurrency: 32,
        }
    }
}

/// Looks at every node of `desired` (in parallel, bounded). Never fails: what cannot be
/// seen is recorded as such.
pub async fn observe(
    desired: &DesiredCluster,
    api: &dyn NodeApi,
    kubeconfig_present: bool,
    options: &ObserveOptions,
) -> Observation {
    let nodes = futures::stream::iter(desired.nodes())
        .map(|n| async move {
            (
                n.node.hostname.clone(),
                observe_node(n, api, options.call_timeout).await,
            )
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect::<BTreeMap<_, _>>()
        .await;
    Observation {
        nodes,
        kubeconfig_present,
    }
}

async fn bounded<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, crate::api::ApiError>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.chain()),
        Err(_) => Err(format!("no answer within {}", crate::wait::human(timeout))),
    }
}

pub(crate) async fn observe_node(
    n: &DesiredNode,
    api: &dyn NodeApi,
    timeout: Duration,
) -> NodeObservation {
    let node = &n.node;
    let mode = match tokio::time::timeout(timeout, api.probe(node)).await {
        Err(_) => {
            return NodeObservation::Unreachable(format!(
                "no answer within {}",
                crate::wait::human(timeout)
            ));
        }
        Ok(Err(e)) => {
            return match e.kind {
                ApiErrorKind::AuthRejected | ApiErrorKind::UntrustedNode | ApiErrorKind::Setup => {
                    NodeObservation::Rejected(e.chain())
                }
                _ => NodeObservation::Unreachable(e.chain()),
            };
        }
        Ok(Ok(mode)) => mode,
    };
    let version = match mode {
        NodeMode::Maintenance => return NodeObservation::Maintenance,
        NodeMode::Configured { version } => version,
    };
    let running = match bounded(timeout, api.running_config(node)).await {
        Ok(c) => RunningConfig::Known(c),
        Err(reason) => RunningConfig::Unreadable(reason),
    };
    let etcd = if node.is_control_plane() {
        match bounded(timeout, api.etcd_members(node)).await {
            Ok(members) => {
                let mut names: Vec<String> = members.into_iter().map(|m| m.hostname).collect();
                names.sort();
                EtcdObservation::Members(names)
            }
            Err(reason) => EtcdObservation::Unavailable(reason),
        }
    } else {
        EtcdObservation::NotApplicable
    };
    NodeObservation::Configured {
        version,
        running,
        etcd,
    }
}
