//! In-process fakes of the Talos nodes and the Kubernetes API (feature `fake`): a small
//! simulated cluster whose behaviour follows Talos closely enough to exercise the engine —
//! maintenance mode, boot and reboot delays, "bootstrap is not available yet", etcd
//! membership growing after bootstrap, quorum, a VIP that moves when its owner's etcd
//! stops, nodes registering and becoming Ready — all in tokio time, so tests on a paused
//! clock run minutes of cluster life in milliseconds.
//!
//! Like real Talos, the fake does not stop a second bootstrap on another node: it starts a
//! second etcd cluster and counts it ([`FakeCluster::bootstrap_successes`]), so tests can
//! prove the engine never does that.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use kforge_secret::SecretString;
use kforge_yaml::Value;
use tokio::time::Instant;

use crate::api::{
    ApiError, ApiErrorKind, ApplyAuth, ApplyReport, BootstrapOutcome, EtcdMemberInfo,
    EtcdStatusInfo, KubeApi, KubeConnector, KubeError, KubeErrorKind, KubeNode, MemorySummary,
    NodeApi, NodeMode, Readyz, ServiceAction, ServiceState,
};
use crate::desired::{NodeRef, Role, address_order};

/// How long things take in the fake cluster.
#[derive(Clone, Copy, Debug)]
pub struct FakeTimings {
    /// Maintenance-mode apply until apid answers (install + reboot).
    pub boot: Duration,
    /// Of `boot`: how long the maintenance API keeps answering after the apply (Talos
    /// installs before it reboots).
    pub install: Duration,
    /// Authenticated apply with changes until apid answers again.
    pub reboot: Duration,
    /// After boot, Bootstrap answers "bootstrap is not available yet" for this long.
    pub bootstrap_ready: Duration,
    /// After bootstrap until the bootstrap node's etcd lists itself.
    pub etcd_start: Duration,
    /// After bootstrap (and the node's boot) until another control-plane node joins.
    pub etcd_join: Duration,
    /// After bootstrap until the Kubernetes API answers.
    pub api_ready: Duration,
    /// After the API is up (and the node booted) until the node registers.
    pub node_register: Duration,
    /// After registering until Ready.
    pub node_ready: Duration,
    /// After the VIP owner's etcd stops until another node takes the VIP.
    pub vip_failover: Duration,
    /// Latency of every call.
    pub latency: Duration,
}

impl Default for FakeTimings {
    fn default() -> Self {
        let s = Duration::from_secs;
        FakeTimings {
            boot: s(60),
            install: Duration::ZERO,
            reboot: s(40),
            bootstrap_ready: s(5),
            etcd_start: s(5),
            etcd_join: s(15),
            api_ready: s(30),
            node_register: s(10),
            node_ready: s(20),
            vip_failover: s(3),
            latency: Duration::from_millis(20),
        }
    }
}

/// How a fake node starts.
pub enum FakeInitial {
    Maintenance,
    /// Already configured and booted with this config.
    Configured(SecretString),
}

/// One fake node.
pub struct FakeNodeSpec {
    pub node: NodeRef,
    pub initial: FakeInitial,
    pub memory_mib: u64,
    pub cmdline: String,
    pub hugepages_total: u64,
    pub hugepage_size_kib: u64,
    /// The kubelet config file the node serves (None: Read answers NotFound).
    pub kubelet_config: Option<String>,
}

impl FakeNodeSpec {
    pub fn new(hostname: &str, address: &str, role: Role) -> Self {
        FakeNodeSpec {
            node: NodeRef::new(hostname, address, role),
            initial: FakeInitial::Maintenance,
            memory_mib: 4096,
            cmdline: "talos.platform=metal console=ttyS0".into(),
            hugepages_total: 0,
            hugepage_size_kib: 2048,
            kubelet_config: Some(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n".into(),
            ),
        }
    }
}

struct NodeSim {
    spec: FakeNodeSpec,
    config: Option<SecretString>,
    /// When apid answers with the current config (None: maintenance mode).
    up_at: Option<Instant>,
    /// Still serving the maintenance API after an insecure apply, until then.
    installing_until: Option<Instant>,
    down_until: Option<Instant>,
    down_forever: bool,
    /// etcd data directory not empty.
    etcd_data: bool,
    stopped: BTreeSet<String>,
    crash_on_bootstrap: Option<Duration>,
    hang_after_bootstrap: bool,
}

struct Sim {
    cluster: String,
    vip: Option<String>,
    timings: FakeTimings,
    nodes: Vec<NodeSim>,
    bootstrapped_at: Option<Instant>,
    bootstrap_node: Option<String>,
    bootstrap_calls: Vec<String>,
    bootstrap_successes: u32,
    insecure_applies: BTreeMap<String, u32>,
    authenticated_applies: BTreeMap<String, u32>,
    credentials_ok: bool,
    objects: BTreeMap<String, Value>,
    vip_owner: Option<String>,
    vip_lost_at: Option<Instant>,
}

const VERSION: &str = "v1.12.0";

fn member_id(hostname: &str) -> u64 {
    // FNV-1a: stable, non-zero ids.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in hostname.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}

impl Sim {
    fn idx(&self, address: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.spec.node.address == address)
    }

    fn reachable(&self, i: usize, t: Instant) -> bool {
        let n = &self.nodes[i];
        !n.down_forever && n.down_until.is_none_or(|u| u <= t)
    }

    /// Configured, booted and reachable.
    fn up(&self, i: usize, t: Instant) -> bool {
        self.reachable(i, t) && self.nodes[i].up_at.is_some_and(|u| u <= t)
    }

    fn member_since(&self, i: usize) -> Option<Instant> {
        let n = &self.nodes[i];
        if n.spec.node.role != Role::ControlPlane {
            return None;
        }
        let at = self.bootstrapped_at?;
        if self.bootstrap_node.as_deref() == Some(n.spec.node.hostname.as_str()) {
            return Some(at + self.timings.etcd_start);
        }
        let up = n.up_at?;
        Some(at.max(up) + self.timings.etcd_join)
    }

    fn members(&self, t: Instant) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.member_since(i).is_some_and(|s| s <= t))
            .collect()
    }

    fn etcd_running(&self, i: usize, t: Instant) -> bool {
        self.up(i, t)
            && self.member_since(i).is_some_and(|s| s <= t)
            && !self.nodes[i].stopped.contains("etcd")
    }

    fn quorum(&self, t: Instant) -> bool {
        let members = self.members(t);
        let running = members.iter().filter(|&&i| self.etcd_running(i, t)).count();
        !members.is_empty() && running * 2 > members.len()
    }

    fn apiserver_running(&self, i: usize, t: Instant) -> bool {
        self.etcd_running(i, t)
            && !self.nodes[i].stopped.contains("kube-apiserver")
            && self
                .bootstrapped_at
                .is_some_and(|b| t >= b + self.timings.api_ready)
    }

    fn api_ready_at(&self) -> Option<Instant> {
        self.bootstrapped_at.map(|b| b + self.timings.api_ready)
    }

    fn vip_owner(&mut self, t: Instant) -> Option<String> {
        self.vip.as_ref()?;
        if let Some(o) = &self.vip_owner {
            let i = self.nodes.iter().position(|n| &n.spec.node.hostname == o)?;
            if self.etcd_running(i, t) {
                return Some(o.clone());
            }
            let lost = *self.vip_lost_at.get_or_insert(t);
            if t < lost + self.timings.vip_failover {
                return None;
            }
        }
        if !self.quorum(t) {
            return None;
        }
        let mut candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.etcd_running(i, t))
            .collect();
        candidates.sort_by(|&a, &b| {
            address_order(
                &self.nodes[a].spec.node.address,
                &self.nodes[b].spec.node.address,
            )
        });
        let new = candidates
            .first()
            .map(|&i| self.nodes[i].spec.node.hostname.clone());
        self.vip_owner = new.clone();
        self.vip_lost_at = None;
        new
    }

    fn services(&self, i: usize, t: Instant) -> Vec<ServiceState> {
        let n = &self.nodes[i];
        let svc = |id: &str, state: &str, healthy: Option<bool>| ServiceState {
            id: id.into(),
            state: state.into(),
            healthy,
            message: String::new(),
        };
        let mut out = vec![
            svc("apid", "Running", Some(true)),
            svc("containerd", "Running", Some(true)),
            svc("kubelet", "Running", Some(true)),
            svc("machined", "Running", Some(true)),
        ];
        if n.spec.node.role == Role::ControlPlane {
            out.push(svc("trustd", "Running", Some(true)));
            let etcd = if n.stopped.contains("etcd") {
                svc("etcd", "Finished", None)
            } else if self.etcd_running(i, t) {
                svc("etcd", "Running", Some(self.quorum(t)))
            } else {
                svc("etcd", "Preparing", None)
            };
            out.push(etcd);
            for c in crate::health::CONTROL_PLANE_COMPONENTS {
                let s = if n.stopped.contains(*c) {
                    svc(c, "Finished", None)
                } else if self.apiserver_running(i, t) {
                    svc(c, "Running", Some(true))
                } else {
                    svc(c, "Waiting", None)
                };
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn kube_nodes(&self, t: Instant) -> Vec<KubeNode> {
        let Some(api_at) = self.api_ready_at() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(up) = n.up_at else { continue };
            let registered_at = api_at.max(up) + self.timings.node_register;
            if t < registered_at {
                continue;
            }
            let ready = t >= registered_at + self.timings.node_ready && self.up(i, t);
            let mut labels = BTreeMap::new();
            labels.insert(
                "kubernetes.io/hostname".to_string(),
                n.spec.node.hostname.clone(),
            );
            let mut taints = Vec::new();
            if n.spec.node.role == Role::ControlPlane {
                labels.insert(
                    "node-role.kubernetes.io/control-plane".into(),
                    String::new(),
                );
                taints.push(crate::api::Taint {
                    key: "node-role.kubernetes.io/control-plane".into(),
                    value: String::new(),
                    effect: "NoSchedule".into(),
                });
            }
            let mut capacity = BTreeMap::new();
            capacity.insert("memory".into(), format!("{}Ki", n.spec.memory_mib * 1024));
            capacity.insert(
                crate::tuning::hugepages_resource(n.spec.hugepage_size_kib),
                format!("{}Ki", n.spec.hugepages_total * n.spec.hugepage_size_kib),
            );
            out.push(KubeNode {
                name: n.spec.node.hostname.clone(),
                ready: Some(ready),
                ready_message: if ready {
                    "KubeletReady: kubelet is posting ready status".into()
                } else {
                    "KubeletNotReady: container runtime network not ready".into()
                },
                unschedulable: false,
                labels,
                taints,
                capacity,
                addresses: vec![n.spec.node.address.clone()],
            });
        }
        out
    }

    fn endpoint_api_up(&mut self, t: Instant) -> bool {
        if self.vip.is_some() {
            match self.vip_owner(t) {
                Some(o) => self
                    .nodes
                    .iter()
                    .position(|n| n.spec.node.hostname == o)
                    .is_some_and(|i| self.apiserver_running(i, t)),
                None => false,
            }
        } else {
            (0..self.nodes.len()).any(|i| self.apiserver_running(i, t))
        }
    }
}

/// The simulated cluster; hand out [`FakeCluster::node_api`] and
/// [`FakeCluster::kube_connector`] to the engine, and inspect or disturb it from the test.
#[derive(Clone)]
pub struct FakeCluster {
    sim: Arc<Mutex<Sim>>,
}

impl FakeCluster {
    pub fn new(
        cluster: &str,
        vip: Option<&str>,
        nodes: Vec<FakeNodeSpec>,
        timings: FakeTimings,
    ) -> Self {
        let now = Instant::now();
        let nodes = nodes
            .into_iter()
            .map(|spec| {
                let (config, up_at) = match &spec.initial {
                    FakeInitial::Maintenance => (None, None),
                    FakeInitial::Configured(c) => (Some(c.clone()), Some(now)),
                };
                NodeSim {
                    spec,
                    config,
                    up_at,
                    installing_until: None,
                    down_until: None,
                    down_forever: false,
                    etcd_data: false,
                    stopped: BTreeSet::new(),
                    crash_on_bootstrap: None,
                    hang_after_bootstrap: false,
                }
            })
            .collect();
        FakeCluster {
            sim: Arc::new(Mutex::new(Sim {
                cluster: cluster.to_string(),
                vip: vip.map(str::to_string),
                timings,
                nodes,
                bootstrapped_at: None,
                bootstrap_node: None,
                bootstrap_calls: Vec::new(),
                bootstrap_successes: 0,
                insecure_applies: BTreeMap::new(),
                authenticated_applies: BTreeMap::new(),
                credentials_ok: true,
                objects: BTreeMap::new(),
                vip_owner: None,
                vip_lost_at: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Sim> {
        match self.sim.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn with_node<R>(&self, hostname: &str, f: impl FnOnce(&mut NodeSim) -> R) -> R {
        let mut sim = self.lock();
        let Some(n) = sim
            .nodes
            .iter_mut()
            .find(|n| n.spec.node.hostname == hostname)
        else {
            panic!("fake cluster has no node {hostname}");
        };
        f(n)
    }

    pub fn node_api(&self) -> FakeNodeApi {
        FakeNodeApi {
            cluster: self.clone(),
        }
    }

    pub fn kube_connector(&self) -> FakeKubeConnector {
        FakeKubeConnector {
            cluster: self.clone(),
        }
    }

    pub fn kube(&self) -> Arc<FakeKube> {
        Arc::new(FakeKube {
            cluster: self.clone(),
        })
    }

    /// etcd bootstrapped by someone else, now (on a configured control-plane node).
    pub fn bootstrap_externally(&self, hostname: &str) {
        let now = Instant::now();
        let mut sim = self.lock();
        let t = sim.timings;
        // Back-date so the cluster is already fully formed.
        let past = now
            .checked_sub(t.etcd_join + t.api_ready + t.node_register + t.node_ready)
            .unwrap_or(now);
        sim.bootstrapped_at = Some(past);
        sim.bootstrap_node = Some(hostname.to_string());
        for n in &mut sim.nodes {
            if n.spec.node.hostname == hostname {
                n.etcd_data = true;
            }
            if n.up_at.is_some() {
                n.up_at = Some(past);
            }
        }
    }

    /// The node's etcd data directory is not empty (left over from an earlier cluster),
    /// without any etcd running: Bootstrap answers "already bootstrapped" but no member
    /// ever shows up.
    pub fn set_etcd_data(&self, hostname: &str) {
        self.with_node(hostname, |n| n.etcd_data = true);
    }

    /// The node does not answer for `duration` (None: ever again).
    pub fn take_down(&self, hostname: &str, duration: Option<Duration>) {
        let now = Instant::now();
        self.with_node(hostname, |n| match duration {
            Some(d) => n.down_until = Some(now + d),
            None => n.down_forever = true,
        });
    }

    /// The node performs the next Bootstrap and then goes down for `downtime` before
    /// answering (the client sees the connection drop).
    pub fn crash_on_bootstrap(&self, hostname: &str, downtime: Duration) {
        self.with_node(hostname, |n| n.crash_on_bootstrap = Some(downtime));
    }

    /// The node performs the next Bootstrap and never answers the call.
    pub fn hang_after_bootstrap(&self, hostname: &str) {
        self.with_node(hostname, |n| n.hang_after_bootstrap = true);
    }

    /// Whether kforge's client certificate is accepted.
    pub fn set_credentials_ok(&self, ok: bool) {
        self.lock().credentials_ok = ok;
    }

    /// Nodes Bootstrap was called on, in order.
    pub fn bootstrap_calls(&self) -> Vec<String> {
        self.lock().bootstrap_calls.clone()
    }

    /// Number of etcd clusters started by Bootstrap calls (must never exceed 1).
    pub fn bootstrap_successes(&self) -> u32 {
        self.lock().bootstrap_successes
    }

    pub fn insecure_applies(&self, hostname: &str) -> u32 {
        self.lock()
            .insecure_applies
            .get(hostname)
            .copied()
            .unwrap_or(0)
    }

    pub fn authenticated_applies(&self, hostname: &str) -> u32 {
        self.lock()
            .authenticated_applies
            .get(hostname)
            .copied()
            .unwrap_or(0)
    }

    /// The config the node runs.
    pub fn running_config(&self, hostname: &str) -> Option<SecretString> {
        self.with_node(hostname, |n| n.config.clone())
    }

    /// Objects stored through server-side apply, by `Kind/ns/name`.
    pub fn objects(&self) -> BTreeMap<String, Value> {
        self.lock().objects.clone()
    }

    pub fn etcd_members(&self) -> Vec<String> {
        let now = Instant::now();
        let sim = self.lock();
        sim.members(now)
            .into_iter()
            .map(|i| sim.nodes[i].spec.node.hostname.clone())
            .collect()
    }

    pub fn vip_owner(&self) -> Option<String> {
        let now = Instant::now();
        self.lock().vip_owner(now)
    }

    pub fn stopped_services(&self, hostname: &str) -> Vec<String> {
        self.with_node(hostname, |n| n.stopped.iter().cloned().collect())
    }

    /// Sets the node's memory (MiB).
    pub fn set_memory_mib(&self, hostname: &str, mib: u64) {
        self.with_node(hostname, |n| n.spec.memory_mib = mib);
    }

    /// Stops or starts a service behind the engine's back.
    pub fn set_service_stopped(&self, hostname: &str, service: &str, stopped: bool) {
        self.with_node(hostname, |n| {
            if stopped {
                n.stopped.insert(service.to_string());
            } else {
                n.stopped.remove(service);
            }
        });
    }
}

/// The fake nodes' Talos API.
#[derive(Clone)]
pub struct FakeNodeApi {
    cluster: FakeCluster,
}

impl FakeNodeApi {
    async fn enter(&self) -> Instant {
        let latency = self.cluster.lock().timings.latency;
        tokio::time::sleep(latency).await;
        Instant::now()
    }
}

fn err(op: &'static str, node: &NodeRef, kind: ApiErrorKind, msg: &str) -> ApiError {
    ApiError::new(op, node, kind, msg)
}

/// Index of a node that answers over mutual TLS with kforge's credentials.
fn authenticated(
    sim: &Sim,
    op: &'static str,
    node: &NodeRef,
    t: Instant,
) -> Result<usize, ApiError> {
    let Some(i) = sim.idx(&node.address) else {
        return Err(err(op, node, ApiErrorKind::Unreachable, "no such host"));
    };
    if !sim.reachable(i, t) {
        return Err(err(
            op,
            node,
            ApiErrorKind::Unreachable,
            "connection refused",
        ));
    }
    let installing = sim.nodes[i].installing_until.is_some_and(|u| u > t);
    match sim.nodes[i].up_at {
        _ if installing => {
            return Err(err(
                op,
                node,
                ApiErrorKind::UntrustedNode,
                "invalid peer certificate: UnknownIssuer",
            ));
        }
        None => {
            return Err(err(
                op,
                node,
                ApiErrorKind::UntrustedNode,
                "invalid peer certificate: UnknownIssuer",
            ));
        }
        Some(u) if u > t => {
            return Err(err(
                op,
                node,
                ApiErrorKind::Unreachable,
                "connection refused (rebooting)",
            ));
        }
        _ => {}
    }
    if !sim.credentials_ok {
        return Err(err(
            op,
            node,
            ApiErrorKind::AuthRejected,
            "received fatal alert: BadCertificate",
        ));
    }
    Ok(i)
}

#[async_trait]
impl NodeApi for FakeNodeApi {
    async fn probe(&self, node: &NodeRef) -> Result<NodeMode, ApiError> {
        let t = self.enter().await;
        let sim = self.cluster.lock();
        let Some(i) = sim.idx(&node.address) else {
            return Err(err(
                "Version",
                node,
                ApiErrorKind::Unreachable,
                "no such host",
            ));
        };
        let installing = sim.nodes[i].installing_until.is_some_and(|u| u > t);
        if sim.reachable(i, t) && (sim.nodes[i].up_at.is_none() || installing) {
            return Ok(NodeMode::Maintenance);
        }
        authenticated(&sim, "Version", node, t)?;
        Ok(NodeMode::Configured {
            version: VERSION.into(),
        })
    }

    async fn apply_config(
        &self,
        node: &NodeRef,
        config: &SecretString,
        auth: ApplyAuth,
    ) -> Result<ApplyReport, ApiError> {
        const OP: &str = "ApplyConfiguration";
        let t = self.enter().await;
        let mut sim = self.cluster.lock();
        let timings = sim.timings;
        match auth {
            ApplyAuth::Insecure => {
                let Some(i) = sim.idx(&node.address) else {
                    return Err(err(OP, node, ApiErrorKind::Unreachable, "no such host"));
                };
                if !sim.reachable(i, t) {
                    return Err(err(
                        OP,
                        node,
                        ApiErrorKind::Unreachable,
                        "connection refused",
                    ));
                }
                if sim.nodes[i].up_at.is_some() {
                    return Err(err(
                        OP,
                        node,
                        ApiErrorKind::AuthRejected,
                        "tls: certificate required (the node is not in maintenance mode)",
                    ));
                }
                let n = &mut sim.nodes[i];
                n.config = Some(config.clone());
                n.up_at = Some(t + timings.boot);
                n.installing_until = Some(t + timings.install);
                let host = node.hostname.clone();
                *sim.insecure_applies.entry(host).or_default() += 1;
                Ok(ApplyReport {
                    mode: Some("reboot".into()),
                    details: "installing and rebooting".into(),
                    warnings: vec![],
                })
            }
            ApplyAuth::Authenticated => {
                let i = authenticated(&sim, OP, node, t)?;
                let same = sim.nodes[i]
                    .config
                    .as_ref()
                    .is_some_and(|c| c.expose() == config.expose());
                let n = &mut sim.nodes[i];
                n.config = Some(config.clone());
                if !same {
                    n.up_at = Some(t + timings.reboot);
                }
                let host = node.hostname.clone();
                *sim.authenticated_applies.entry(host).or_default() += 1;
                Ok(ApplyReport {
                    mode: Some(if same { "no-reboot" } else { "reboot" }.into()),
                    details: String::new(),
                    warnings: vec![],
                })
            }
        }
    }

    async fn bootstrap(&self, node: &NodeRef) -> Result<BootstrapOutcome, ApiError> {
        const OP: &str = "Bootstrap";
        let t = self.enter().await;
        let hang = {
            let mut sim = self.cluster.lock();
            let i = authenticated(&sim, OP, node, t)?;
            sim.bootstrap_calls.push(node.hostname.clone());
            if sim.nodes[i].spec.node.role != Role::ControlPlane {
                return Err(err(
                    OP,
                    node,
                    ApiErrorKind::Refused,
                    "bootstrap is not supported on worker nodes",
                ));
            }
            if sim.nodes[i].etcd_data {
                return Ok(BootstrapOutcome::AlreadyBootstrapped);
            }
            let up = sim.nodes[i].up_at.unwrap_or(t);
            if t < up + sim.timings.bootstrap_ready {
                return Err(err(
                    OP,
                    node,
                    ApiErrorKind::NotReady,
                    "bootstrap is not available yet",
                ));
            }
            sim.nodes[i].etcd_data = true;
            sim.bootstrapped_at = Some(t);
            sim.bootstrap_node = Some(node.hostname.clone());
            sim.bootstrap_successes += 1;
            if let Some(down) = sim.nodes[i].crash_on_bootstrap.take() {
                sim.nodes[i].down_until = Some(t + down);
                return Err(err(
                    OP,
                    node,
                    ApiErrorKind::Unreachable,
                    "connection reset by peer",
                ));
            }
            std::mem::take(&mut sim.nodes[i].hang_after_bootstrap)
        };
        if hang {
            std::future::pending::<()>().await;
        }
        Ok(BootstrapOutcome::Bootstrapped)
    }

    async fn etcd_members(&self, node: &NodeRef) -> Result<Vec<EtcdMemberInfo>, ApiError> {
        const OP: &str = "EtcdMemberList";
        let t = self.enter().await;
        let sim = self.cluster.lock();
        let i = authenticated(&sim, OP, node, t)?;
        if sim.nodes[i].spec.node.role != Role::ControlPlane {
            return Err(err(
                OP,
                node,
                ApiErrorKind::Refused,
                "etcd runs on control-plane nodes only",
            ));
        }
        if !sim.etcd_running(i, t) {
            return Err(err(OP, node, ApiErrorKind::NotReady, "etcd is not running"));
        }
        if !sim.quorum(t) {
            return Err(err(
                OP,
                node,
                ApiErrorKind::Unavailable,
                "etcdserver: no leader",
            ));
        }
        Ok(sim
            .members(t)
            .into_iter()
            .map(|m| {
                let h = &sim.nodes[m].spec.node.hostname;
                EtcdMemberInfo {
                    id: member_id(h),
                    hostname: h.clone(),
                    is_learner: false,
                }
            })
            .collect())
    }

    async fn etcd_status(&self, node: &NodeRef) -> Result<EtcdStatusInfo, ApiError> {
        const OP: &str = "EtcdStatus";
        let t = self.enter().await;
        let sim = self.cluster.lock();
        let i = authenticated(&sim, OP, node, t)?;
        if !sim.etcd_running(i, t) {
            return Err(err(
                OP,
                node,
                ApiErrorKind::Unavailable,
                "etcd is not running",
            ));
        }
        let mut running: Vec<usize> = sim
            .members(t)
            .into_iter()
            .filter(|&m| sim.etcd_running(m, t))
            .collect();
        running.sort_by(|&a, &b| {
            address_order(
                &sim.nodes[a].spec.node.address,
                &sim.nodes[b].spec.node.address,
            )
        });
        let quorum = sim.quorum(t);
        Ok(EtcdStatusInfo {
            member_id: member_id(&node.hostname),
            leader: if quorum {
                running
                    .first()
                    .map(|&l| member_id(&sim.nodes[l].spec.node.hostname))
                    .unwrap_or(0)
            } else {
                0
            },
            raft_index: 1000,
            errors: if quorum {
                vec![]
            } else {
                vec!["etcdserver: no leader".into()]
            },
            is_learner: false,
        })
    }

    async fn services(&self, node: &NodeRef) -> Result<Vec<ServiceState>, ApiError> {
        let t = self.enter().await;
        let sim = self.cluster.lock();
        let i = authenticated(&sim, "ServiceList", node, t)?;
        Ok(sim.services(i, t))
    }

    async fn version(&self, node: &NodeRef) -> Result<String, ApiError> {
        let t = self.enter().await;
        let sim = self.cluster.lock();
        authenticated(&sim, "Version", node, t)?;
        Ok(VERSION.into())
    }

    async fn memory(&self, node: &NodeRef) -> Result<MemorySummary, ApiError> {
        let t = self.enter().await;
        let sim = self.cluster.lock();
        let i = authenticated(&sim, "Memory", node, t)?;
        let s = &sim.nodes[i].spec;
        Ok(MemorySummary {
            total_kib: s.memory_mib * 1024,
            hugepages_total: s.hugepages_total,
            hugepages_free: s.hugepages_total,
            hugepage_size_kib: s.hugepage_size_kib,
        })
    }

    async fn read_file(&self, node: &NodeRef, path: &str) -> Result<Vec<u8>, ApiError> {
        const OP: &str = "Read";
        let t = self.enter().await;
        let mut sim = self.cluster.lock();
        let i = authenticated(&sim, OP, node, t)?;
        let not_found = || {
            err(
                OP,
                node,
                ApiErrorKind::NotFound,
                &format!("{path}: no such file"),
            )
        };
        match path {
            "/proc/cmdline" => Ok(format!("{}\n", sim.nodes[i].spec.cmdline).into_bytes()),
            crate::api::RUNNING_CONFIG_PATH => sim.nodes[i]
                .config
                .as_ref()
                .map(|c| c.as_bytes().to_vec())
                .ok_or_else(not_found),
            crate::tuning::KUBELET_CONFIG_PATH => sim.nodes[i]
                .spec
                .kubelet_config
                .as_ref()
                .map(|c| c.as_bytes().to_vec())
                .ok_or_else(not_found),
            crate::api::FIB_TRIE_PATH => {
                let host = sim.nodes[i].spec.node.hostname.clone();
                let addr = sim.nodes[i].spec.node.address.clone();
                let mut text = format!(
                    "Local:\n  +-- 0.0.0.0/0 3 0 5\n     |-- {addr}\n        /32 host LOCAL\n"
                );
                if sim.vip_owner(t).as_deref() == Some(host.as_str())
                    && let Some(vip) = &sim.vip
                {
                    text.push_str(&format!("     |-- {vip}\n        /32 host LOCAL\n"));
                }
                Ok(text.into_bytes())
            }
            _ => Err(not_found()),
        }
    }

    async fn kubeconfig(&self, node: &NodeRef) -> Result<SecretString, ApiError> {
        const OP: &str = "Kubeconfig";
        let t = self.enter().await;
        let sim = self.cluster.lock();
        let i = authenticated(&sim, OP, node, t)?;
        if sim.nodes[i].spec.node.role != Role::ControlPlane {
            return Err(err(
                OP,
                node,
                ApiErrorKind::Refused,
                "kubeconfig is served by control-plane nodes",
            ));
        }
        let server = sim
            .vip
            .clone()
            .unwrap_or_else(|| sim.nodes[i].spec.node.address.clone());
        Ok(SecretString::from(format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {c}\n  cluster:\n    server: https://{server}:6443\n    certificate-authority-data: RkFLRSBDQQ==\nusers:\n- name: admin@{c}\n  user:\n    client-certificate-data: RkFLRSBDUlQ=\n    client-key-data: RkFLRSBLRVk=\ncontexts:\n- context:\n    cluster: {c}\n    namespace: default\n    user: admin@{c}\n  name: admin@{c}\ncurrent-context: admin@{c}\n",
            c = sim.cluster
        )))
    }

    async fn service_action(
        &self,
        node: &NodeRef,
        service: &str,
        action: ServiceAction,
    ) -> Result<(), ApiError> {
        let t = self.enter().await;
        let mut sim = self.cluster.lock();
        let i = authenticated(&sim, "ServiceStop", node, t)?;
        let owner = sim.vip_owner(t);
        let n = &mut sim.nodes[i];
        match action {
            ServiceAction::Stop => {
                n.stopped.insert(service.to_string());
            }
            ServiceAction::Start => {
                n.stopped.remove(service);
            }
            ServiceAction::Restart => {}
        }
        if action == ServiceAction::Stop
            && service == "etcd"
            && owner.as_deref() == Some(node.hostname.as_str())
        {
            sim.vip_lost_at = Some(t);
        }
        Ok(())
    }
}

/// The fake Kubernetes API, reached through the cluster endpoint (the VIP when set).
pub struct FakeKube {
    cluster: FakeCluster,
}

impl FakeKube {
    async fn enter(&self) -> Instant {
        let latency = self.cluster.lock().timings.latency;
        tokio::time::sleep(latency).await;
        Instant::now()
    }

    fn server(&self) -> String {
        let sim = self.cluster.lock();
        format!(
            "https://{}:6443",
            sim.vip.clone().unwrap_or_else(|| "endpoint".into())
        )
    }

    /// The API answers and etcd has quorum.
    fn available(&self, op: &str, t: Instant) -> Result<(), KubeError> {
        let mut sim = self.cluster.lock();
        if !sim.endpoint_api_up(t) {
            return Err(self_unreachable(op, &sim));
        }
        if !sim.quorum(t) {
            let mut e = KubeError::new(
                op,
                server_of(&sim),
                KubeErrorKind::Server,
                "etcdserver: request timed out",
            );
            e.status = Some(500);
            return Err(e);
        }
        Ok(())
    }
}

fn server_of(sim: &Sim) -> String {
    format!(
        "https://{}:6443",
        sim.vip.clone().unwrap_or_else(|| "endpoint".into())
    )
}

fn self_unreachable(op: &str, sim: &Sim) -> KubeError {
    KubeError::new(
        op,
        server_of(sim),
        KubeErrorKind::Unreachable,
        "connection refused",
    )
}

fn object_id(v: &Value) -> Option<String> {
    let kind = v.get("kind")?.as_str()?;
    let name = v.pointer("/metadata/name")?.as_str()?;
    Some(
        match v.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(ns) => format!("{kind}/{ns}/{name}"),
            None => format!("{kind}/{name}"),
        },
    )
}

#[async_trait]
impl KubeApi for FakeKube {
    async fn readyz(&self) -> Result<Readyz, KubeError> {
        let t = self.enter().await;
        let mut sim = self.cluster.lock();
        if !sim.endpoint_api_up(t) {
            return Err(self_unreachable("GET /readyz", &sim));
        }
        Ok(if sim.quorum(t) {
            Readyz {
                ok: true,
                detail: "ok".into(),
            }
        } else {
            Readyz {
                ok: false,
                detail: "[-]etcd failed: reason withheld".into(),
            }
        })
    }

    async fn readyz_via(&self, address: &str) -> Result<Readyz, KubeError> {
        let t = self.enter().await;
        let sim = self.cluster.lock();
        let Some(i) = sim.idx(address) else {
            return Err(self_unreachable("GET /readyz", &sim));
        };
        if !sim.apiserver_running(i, t) {
            return Err(KubeError::new(
                "GET /readyz",
                format!("https://{address}:6443"),
                KubeErrorKind::Unreachable,
                "connection refused",
            ));
        }
        Ok(Readyz {
            ok: sim.quorum(t),
            detail: "ok".into(),
        })
    }

    async fn nodes(&self) -> Result<Vec<KubeNode>, KubeError> {
        let t = self.enter().await;
        self.available("list Node", t)?;
        Ok(self.cluster.lock().kube_nodes(t))
    }

    async fn server_side_apply(
        &self,
        object: &Value,
        field_manager: &str,
    ) -> Result<Value, KubeError> {
        let t = self.enter().await;
        let op = "server-side apply";
        self.available(op, t)?;
        let Some(id) = object_id(object) else {
            return Err(KubeError::new(
                op,
                self.server(),
                KubeErrorKind::Invalid,
                "no kind or name",
            ));
        };
        let mut stored = object.clone();
        if let Some(meta) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert(
                "managedFields".into(),
                serde_json::json!([{"manager": field_manager, "operation": "Apply"}]),
            );
        }
        self.cluster.lock().objects.insert(id, stored.clone());
        Ok(stored)
    }

    async fn get(
        &self,
        _api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, KubeError> {
        let t = self.enter().await;
        self.available("get", t)?;
        let id = match namespace {
            Some(ns) => format!("{kind}/{ns}/{name}"),
            None => format!("{kind}/{name}"),
        };
        Ok(self.cluster.lock().objects.get(&id).cloned())
    }

    async fn list(
        &self,
        _api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        _label_selector: Option<&str>,
    ) -> Result<Vec<Value>, KubeError> {
        let t = self.enter().await;
        self.available("list", t)?;
        let prefix = match namespace {
            Some(ns) => format!("{kind}/{ns}/"),
            None => format!("{kind}/"),
        };
        Ok(self
            .cluster
            .lock()
            .objects
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect())
    }
}

/// Connects to the fake API; rejects kubeconfigs that are not the fake cluster's.
#[derive(Clone)]
pub struct FakeKubeConnector {
    cluster: FakeCluster,
}

impl KubeConnector for FakeKubeConnector {
    fn connect(&self, kubeconfig: &SecretString) -> Result<Arc<dyn KubeApi>, KubeError> {
        let standalone = crate::kubeconfig::extract(kubeconfig, None).map_err(|e| {
            KubeError::new(
                "load kubeconfig",
                "-",
                KubeErrorKind::Kubeconfig,
                crate::api::error_chain(&e),
            )
        })?;
        let name = self.cluster.lock().cluster.clone();
        if !standalone.expose().contains(&format!("name: {name}\n")) {
            return Err(KubeError::new(
                "load kubeconfig",
                "-",
                KubeErrorKind::Kubeconfig,
                format!("not a kubeconfig of cluster {name}"),
            ));
        }
        Ok(self.cluster.kube())
    }
}
