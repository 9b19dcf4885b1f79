//! The desired cluster: every node's machine config (secret), role and address, the
//! Kubernetes objects the profiles want applied after bootstrap, and the tuning to verify
//! on the live nodes. Built from kforge-machine's rendered nodes or by hand (tests, the
//! simulator). Validation reports every problem at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use kforge_machine::RenderedNode;
use kforge_machine::profile::Expectation;
use kforge_secret::SecretString;
use kforge_yaml::Value;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A node's role in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    Worker,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A node as the deploy engine addresses it: by hostname in messages and the state file,
/// by address on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeRef {
    pub hostname: String,
    /// IP address or DNS name of the node's Talos API (without port).
    pub address: String,
    pub role: Role,
}

impl NodeRef {
    pub fn new(hostname: impl Into<String>, address: impl Into<String>, role: Role) -> Self {
        NodeRef {
            hostname: hostname.into(),
            address: address.into(),
            role,
        }
    }

    pub fn is_control_plane(&self) -> bool {
        self.role == Role::ControlPlane
    }
}

/// `cp-1 (10.0.1.11)`.
impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.hostname, self.address)
    }
}

/// Orders addresses the way people expect: IPs numerically (v4 before v6), then names.
pub fn address_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// `sha256:<hex>` of some bytes; what the plan and the state file record instead of
/// configs (which hold secrets).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of(bytes: &[u8]) -> Self {
        Fingerprint(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `sha256:` and the first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        let end = "sha256:".len() + 12;
        self.0.get(..end).unwrap_or(&self.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fact to verify on a live node after deployment.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "check", content = "value", rename_all = "kebab-case")]
pub enum TuningExpectation {
    /// `/proc/cmdline` contains this argument (as a whole word).
    KernelArg(String),
    /// `HugePages_Total` (default huge page size) equals this.
    HugePagesTotal(u64),
    /// The kubelet runs with this CPU manager policy.
    CpuManagerPolicy(String),
}

impl From<&Expectation> for TuningExpectation {
    fn from(e: &Expectation) -> Self {
        match e {
            Expectation::KernelArg(a) => TuningExpectation::KernelArg(a.clone()),
            Expectation::HugePagesTotal(n) => TuningExpectation::HugePagesTotal(*n),
            Expectation::CpuManagerPolicy(p) => TuningExpectation::CpuManagerPolicy(p.clone()),
        }
    }
}

impl fmt::Display for TuningExpectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TuningExpectation::KernelArg(a) => write!(f, "kernel arg {a}"),
            TuningExpectation::HugePagesTotal(n) => write!(f, "HugePages_Total = {n}"),
            TuningExpectation::CpuManagerPolicy(p) => write!(f, "CPU manager policy {p}"),
        }
    }
}

/// Fingerprint of a list of expectations (the state file records it once verified).
pub fn expectations_fingerprint(expectations: &[TuningExpectation]) -> Fingerprint {
    Fingerprint::of(
        serde_json::to_string(expectations)
            .unwrap_or_default()
            .as_bytes(),
    )
}

/// A Kubernetes object to apply after bootstrap.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Manifest {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub object: Value,
}

impl Manifest {
    /// Reads the identity of `object`; every missing field is reported.
    pub fn from_value(object: Value) -> Result<Self, Vec<String>> {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let api_version = text(object.get("apiVersion"));
        let kind = text(object.get("kind"));
        let metadata = object.get("metadata");
        let name = text(metadata.and_then(|m| m.get("name")));
        let namespace = text(metadata.and_then(|m| m.get("namespace")));
        let mut missing = Vec::new();
        if api_version.is_none() {
            missing.push("apiVersion".to_string());
        }
        if kind.is_none() {
            missing.push("kind".to_string());
        }
        if name.is_none() {
            missing.push("metadata.name".to_string());
        }
        match (api_version, kind, name) {
            (Some(api_version), Some(kind), Some(name)) => Ok(Manifest {
                api_version,
                kind,
                namespace,
                name,
                object,
            }),
            _ => Err(missing),
        }
    }

    /// `PriorityClass/solana-critical`, `ConfigMap/default/x`.
    pub fn id(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.kind, ns, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

/// Fingerprint of a set of manifests (identity and content).
pub fn manifests_fingerprint(manifests: &[Manifest]) -> Fingerprint {
    let all: Vec<&Value> = manifests.iter().map(|m| &m.object).collect();
    Fingerprint::of(serde_json::to_string(&all).unwrap_or_default().as_bytes())
}

/// One node of the desired cluster.
pub struct DesiredNode {
    pub node: NodeRef,
    config: SecretString,
    fingerprint: Fingerprint,
    pub expectations: Vec<TuningExpectation>,
}

impl DesiredNode {
    pub fn new(node: NodeRef, config: SecretString, expectations: Vec<TuningExpectation>) -> Self {
        let fingerprint = Fingerprint::of(config.as_bytes());
        DesiredNode {
            node,
            config,
            fingerprint,
            expectations,
        }
    }

    /// The machine config (multi-document YAML; holds secrets).
    pub fn config(&self) -> &SecretString {
        &self.config
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }
}

/// What is wrong with the desired cluster; every problem is listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the desired cluster `{cluster}` is not deployable: {}", .problems.join("; "))]
pub struct DesiredError {
    pub cluster: String,
    pub problems: Vec<String>,
}

/// The whole desired cluster. Nodes are kept in a canonical order (control plane first,
/// then by address) so plans do not depend on the order of the cluster file.
pub struct DesiredCluster {
    pub name: String,
    nodes: Vec<DesiredNode>,
    /// `bootstrapNode` from the cluster file (a control-plane hostname).
    pub bootstrap_node: Option<String>,
    pub manifests: Vec<Manifest>,
}

impl DesiredCluster {
    /// Checks and orders the nodes. Problems: no nodes, no control-plane node, duplicate
    /// hostnames or addresses, empty addresses, a `bootstrap_node` that is unknown or a
    /// worker, manifests with the same identity but different content.
    pub fn new(
        name: impl Into<String>,
        mut nodes: Vec<DesiredNode>,
        bootstrap_node: Option<String>,
        manifests: Vec<Manifest>,
    ) -> Result<Self, DesiredError> {
        let name = name.into();
        let mut problems = Vec::new();
        if name.is_empty() {
            problems.push("the cluster name is empty".to_string());
        }
        if nodes.is_empty() {
            problems.push("there are no nodes".to_string());
        } else if !nodes.iter().any(|n| n.node.is_control_plane()) {
            problems.push(
                "there is no control-plane node (etcd is bootstrapped on one; set \
                 `controlPlane: true` on at least one node)"
                    .to_string(),
            );
        }
        let mut hostnames = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        for n in &nodes {
            if n.node.hostname.is_empty() {
                problems.push(format!("the node at {} has no hostname", n.node.address));
            } else if !hostnames.insert(n.node.hostname.clone()) {
                problems.push(format!("hostname `{}` is used twice", n.node.hostname));
            }
            if n.node.address.is_empty() {
                problems.push(format!("node `{}` has no address", n.node.hostname));
            } else if !addresses.insert(n.node.address.clone()) {
                problems.push(format!("address {} is used twice", n.node.address));
            }
        }
        if let Some(b) = &bootstrap_node {
            match nodes.iter().find(|n| &n.node.hostname == b) {
                None => problems.push(format!(
                    "bootstrapNode `{b}` is not a node of the cluster; expected one of the \
                     control-plane hostnames"
                )),
                Some(n) if !n.node.is_control_plane() => problems.push(format!(
                    "bootstrapNode `{b}` is a worker; etcd can only be bootstrapped on a \
                     control-plane node"
                )),
                Some(_) => {}
            }
        }
        let mut by_id: BTreeMap<String, &Manifest> = BTreeMap::new();
        for m in &manifests {
            if let Some(prev) = by_id.insert(m.id(), m)
                && prev.object != m.object
            {
                problems.push(format!(
                    "two different manifests are both named {}; they would overwrite each other",
                    m.id()
                ));
            }
        }
        if !problems.is_empty() {
            return Err(DesiredError {
                cluster: name,
                problems,
            });
        }
        // Identical manifests (several nodes with one profile) are applied once.
        let mut seen = BTreeSet::new();
        let manifests = manifests
            .into_iter()
            .filter(|m| seen.insert(m.id()))
            .collect();
        nodes.sort_by(|a, b| {
            a.node
                .role
                .cmp(&b.node.role)
                .then_with(|| address_order(&a.node.address, &b.node.address))
                .then_with(|| a.node.hostname.cmp(&b.node.hostname))
        });
        Ok(DesiredCluster {
            name,
            nodes,
            bootstrap_node,
            manifests,
        })
    }

    /// From kforge-machine's rendering: the first address of each node is where kforge
    /// reaches it; the profiles' manifests are merged (identical ones applied once).
    pub fn from_rendered(
        name: impl Into<String>,
        rendered: &[RenderedNode],
        bootstrap_node: Option<String>,
    ) -> Result<Self, DesiredError> {
        let name = name.into();
        let mut problems = Vec::new();
        let mut nodes = Vec::new();
        let mut manifests = Vec::new();
        for r in rendered {
            let role = if r.control_plane {
                Role::ControlPlane
            } else {
                Role::Worker
            };
            let address = r.ip_addresses.first().cloned().unwrap_or_default();
            let expectations = r.expectations.iter().map(TuningExpectation::from).collect();
            nodes.push(DesiredNode::new(
                NodeRef::new(r.hostname.clone(), address, role),
                r.to_yaml(),
                expectations,
            ));
            for m in &r.manifests {
                match Manifest::from_value(m.clone()) {
                    Ok(m) => manifests.push(m),
                    Err(missing) => problems.push(format!(
                        "a manifest of node `{}` lacks {}",
                        r.hostname,
                        missing.join(", ")
                    )),
                }
            }
        }
        if !problems.is_empty() {
            return Err(DesiredError {
                cluster: name,
                problems,
            });
        }
        DesiredCluster::new(name, nodes, bootstrap_node, manifests)
    }

    /// Control-plane nodes first, then workers, each by address.
    pub fn nodes(&self) -> &[DesiredNode] {
        &self.nodes
    }

    pub fn node(&self, hostname: &str) -> Option<&DesiredNode> {
        self.nodes.iter().find(|n| n.node.hostname == hostname)
    }

    pub fn control_planes(&self) -> impl Iterator<Item = &DesiredNode> {
        self.nodes.iter().filter(|n| n.node.is_control_plane())
    }

    pub fn node_refs(&self) -> Vec<NodeRef> {
        self.nodes.iter().map(|n| n.node.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(h: &str, a: &str, role: Role) -> DesiredNode {
        DesiredNode::new(
            NodeRef::new(h, a, role),
            SecretString::from(format!("machine:\n  type: {role}\n")),
            vec![],
        )
    }

    #[test]
    fn nodes_are_ordered_control_plane_first_by_ip() {
        let c = DesiredCluster::new(
            "c",
            vec![
                node("w", "10.0.1.20", Role::Worker),
                node("cp-10", "10.0.1.100", Role::ControlPlane),
                node("cp-2", "10.0.1.9", Role::ControlPlane),
            ],
            None,
            vec![],
        )
        .unwrap();
        let names: Vec<_> = c.nodes().iter().map(|n| n.node.hostname.as_str()).collect();
        assert_eq!(names, ["cp-2", "cp-10", "w"]);
    }

    #[test]
    fn every_problem_is_reported() {
        let m = |v: u32| {
            Manifest::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "x", "namespace": "default"}, "data": {"v": v.to_string()}
            }))
            .unwrap()
        };
        let e = DesiredCluster::new(
            "c",
            vec![
                node("w", "10.0.1.20", Role::Worker),
                node("w", "10.0.1.20", Role::Worker),
            ],
            Some("w".into()),
            vec![m(1), m(2)],
        )
        .err()
        .unwrap();
        assert_eq!(e.problems.len(), 5, "{e}");
        assert!(e.to_string().contains("bootstrapNode `w` is a worker"));
    }

    #[test]
    fn identical_manifests_are_applied_once() {
        let pc = || {
            Manifest::from_value(serde_json::json!({
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": "solana-critical"}, "value": 1000000
            }))
            .unwrap()
        };
        let c = DesiredCluster::new(
            "c",
            vec![node("cp", "10.0.0.1", Role::ControlPlane)],
            None,
            vec![pc(), pc()],
        )
        .unwrap();
        assert_eq!(c.manifests.len(), 1);
        assert_eq!(c.manifests[0].id(), "PriorityClass/solana-critical");
    }

    #[test]
    fn manifest_identity_is_required() {
        let missing = Manifest::from_value(serde_json::json!({"kind": "X"})).unwrap_err();
        assert_eq!(missing, ["apiVersion", "metadata.name"]);
    }

    #[test]
    fn fingerprints() {
        let f = Fingerprint::of(b"abc");
        assert_eq!(
            f.as_str(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(f.short(), "sha256:ba7816bf8f01");
    }

    #[test]
    fn addresses_order_numerically() {
        let mut v = vec!["10.0.0.10", "host", "10.0.0.9", "::1"];
        v.sort_by(|a, b| address_order(a, b));
        assert_eq!(v, ["10.0.0.9", "10.0.0.10", "::1", "host"]);
    }
}
