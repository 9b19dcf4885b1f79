//! `kforge health`: Talos's cluster health checks (`talosctl health`, client side), in
//! Talos's order, each with its own deadline and poll interval, within an overall `--wait`.
//! The first check that does not pass within its deadline fails the run; the checks after
//! it are reported as not run. The report renders as a table with timings.
//!
//! Differences from Talos, forced by what the API exposes to kforge:
//! - "disk sizes" and "no diagnostics" need COSI resources kforge's client does not read;
//!   they are not run (listed in [`SKIPPED_TALOS_CHECKS`]).
//! - "boot sequence finished" (Talos watches `MachineStatus`): a node counts as booted when
//!   it answers Version over mutual TLS and its `kubelet` service is Running (and `etcd`
//!   on control-plane nodes), which is where Talos's boot sequence ends.
//! - "control-plane components ready": the static pods `kube-apiserver`,
//!   `kube-controller-manager` and `kube-scheduler` are looked up in `kube-system` (label
//!   `tier=control-plane`, `k8s-app=<component>`, Ready, on each control-plane node). When
//!   the API lists no control-plane pods at all (the simulator, which runs the components
//!   as Talos services), the Talos services with those ids must be Running and healthy.
//!   The check's message says which source was used.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::api::{KubeApi, KubeNode, NodeApi, ServiceState};
use crate::desired::{NodeRef, Role};
use crate::event::{Emitter, EventSink, Phase, Status};
use crate::wait::{Check, WaitError, WaitLimits, human, poll_until};

/// Talos checks kforge does not run, and why.
pub const SKIPPED_TALOS_CHECKS: &[(&str, &str)] = &[
    (
        "all nodes disk sizes",
        "needs the COSI VolumeStatus resource, which kforge's API client does not read",
    ),
    (
        "no diagnostics",
        "needs the COSI runtime.Diagnostic resource, which kforge's API client does not read",
    ),
];

/// Minimum memory (Talos `pkg/minimal`): control plane 1848 MiB, worker 1024 MiB, each
/// less 150 MiB of tolerance, in KiB.
pub const MIN_MEMORY_CONTROL_PLANE_KIB: u64 = (1848 - 150) * 1024;
pub const MIN_MEMORY_WORKER_KIB: u64 = (1024 - 150) * 1024;

/// The control-plane components checked on every control-plane node.
pub const CONTROL_PLANE_COMPONENTS: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

#[derive(Clone, Debug)]
pub struct HealthOptions {
    /// Overall budget (`--wait`); each check gets the smaller of its own deadline and
    /// what is left.
    pub wait: Duration,
    /// One API call.
    pub call_timeout: Duration,
    /// Scales every check's own deadline and poll interval (1.0 = Talos's values).
    pub time_scale: f64,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            wait: Duration::from_secs(20 * 60),
            call_timeout: Duration::from_secs(10),
            time_scale: 1.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    Passed,
    Failed,
    NotRun,
}

impl CheckStatus {
    fn label(self) -> &'static str {
        match self {
            CheckStatus::Passed => "OK",
            CheckStatus::Failed => "FAILED",
            CheckStatus::NotRun => "not run",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub status: CheckStatus,
    #[serde(rename = "duration_ms", serialize_with = "ms")]
    pub duration: Duration,
    pub message: String,
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    pub checks: Vec<CheckResult>,
    #[serde(rename = "duration_ms", serialize_with = "ms")]
    pub duration: Duration,
}

impl HealthReport {
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.status == CheckStatus::Passed)
    }
}

/// `CHECK  STATUS  TIME  DETAIL` table.
impl fmt::Display for HealthReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(f, "{:<w$}  {:<7}  {:>8}  DETAIL", "CHECK", "STATUS", "TIME")?;
        for c in &self.checks {
            let time = if c.status == CheckStatus::NotRun {
                "-".to_string()
            } else {
                format!("{:.1}s", c.duration.as_secs_f64())
            };
            writeln!(
                f,
                "{:<w$}  {:<7}  {:>8}  {}",
                c.name,
                c.status.label(),
                time,
                c.message
            )?;
        }
        write!(
            f,
            "{} in {:.1}s",
            if self.healthy() {
                "healthy"
            } else {
                "UNHEALTHY"
            },
            self.duration.as_secs_f64()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("the cluster is unhealthy: check `{check}` failed: {message}")]
    Unhealthy {
        check: &'static str,
        message: String,
        report: Box<HealthReport>,
    },
    #[error("no nodes to check; hint: the cluster file lists none")]
    NoNodes,
}

impl HealthError {
    /// The report, when the checks ran.
    pub fn report(&self) -> Option<&HealthReport> {
        match self {
            HealthError::Unhealthy { report, .. } => Some(report),
            HealthError::NoNodes => None,
        }
    }
}

type Outcome = Check<String, String>;

struct Ctx<'a> {
    nodes: &'a [NodeRef],
    api: &'a dyn NodeApi,
    kube: &'a dyn KubeApi,
    call: Duration,
}

impl Ctx<'_> {
    fn cps(&self) -> impl Iterator<Item = &NodeRef> {
        self.nodes.iter().filter(|n| n.role == Role::ControlPlane)
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, crate::api::ApiError>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.call, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.chain()),
            Err(_) => Err(format!("no answer within {}", human(self.call))),
        }
    }

    async fn kube_nodes(&self) -> Result<Vec<KubeNode>, String> {
        match tokio::time::timeout(self.call, self.kube.nodes()).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}", human(self.call))),
        }
    }

    async fn services(&self, n: &NodeRef) -> Result<Vec<ServiceState>, String> {
        self.bounded(self.api.services(n)).await
    }

    async fn etcd_healthy(&self) -> Outcome {
        let mut bad = Vec::new();
        let mut count = 0;
        for cp in self.cps() {
            count += 1;
            match self.services(cp).await {
                Err(e) => bad.push(format!("{}: {e}", cp.hostname)),
                Ok(s) => match s.iter().find(|s| s.id == "etcd") {
                    None => bad.push(format!("{}: no etcd service", cp.hostname)),
                    Some(e) if e.is_up() && e.healthy == Some(true) => {}
                    Some(e) => bad.push(format!(
                        "{}: etcd {}{}",
                        cp.hostname,
                        e.state,
                        match e.healthy {
                            Some(false) => ", unhealthy",
                            None => ", health unknown",
                            Some(true) => "",
                        }
                    )),
                },
            }
        }
        if count == 0 {
            return Check::Pending("no control-plane nodes are known".into());
        }
        if bad.is_empty() {
            Check::Done(format!(
                "etcd Running and healthy on {count} control-plane nodes"
            ))
        } else {
            Check::Pending(bad.join("; "))
        }
    }

    /// Member lists per control-plane node: (hostname, sorted (id, name) list).
    async fn member_lists(&self) -> Result<Vec<(String, Vec<(u64, String)>)>, String> {
        let mut out = Vec::new();
        for cp in self.cps() {
            let mut m: Vec<(u64, String)> = self
                .bounded(self.api.etcd_members(cp))
                .await
                .map_err(|e| format!("{}: {e}", cp.hostname))?
                .into_iter()
                .map(|m| (m.id, m.hostname))
                .collect();
            m.sort();
            out.push((cp.hostname.clone(), m));
        }
        Ok(out)
    }

    async fn members_consistent(&self) -> Outcome {
        let lists = match self.member_lists().await {
            Ok(l) => l,
            Err(e) => return Check::Pending(e),
        };
        let Some((first_node, first)) = lists.first() else {
            return Check::Pending("no control-plane nodes are known".into());
        };
        for (node, list) in &lists[1..] {
            if list != first {
                let names = |l: &[(u64, String)]| {
                    l.iter()
                        .map(|(_, n)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Check::Pending(format!(
                    "{first_node} lists [{}], {node} lists [{}]",
                    names(first),
                    names(list)
                ));
            }
        }
        Check::Done(format!(
            "{} control-plane nodes agree on {} members",
            lists.len(),
            first.len()
        ))
    }

    async fn members_are_control_planes(&self) -> Outcome {
        let lists = match self.member_lists().await {
            Ok(l) => l,
            Err(e) => return Check::Pending(e),
        };
        let Some((_, list)) = lists.first() else {
            return Check::Pending("no control-plane nodes are known".into());
        };
        let members: BTreeSet<&str> = list.iter().map(|(_, n)| n.as_str()).collect();
        let cps: BTreeSet<&str> = self.cps().map(|n| n.hostname.as_str()).collect();
        if members == cps {
            Check::Done(format!("members = control-plane nodes ({})", members.len()))
        } else {
            let extra: Vec<&str> = members.difference(&cps).copied().collect();
            let missing: Vec<&str> = cps.difference(&members).copied().collect();
            Check::Pending(format!(
                "members not control-plane nodes: [{}]; control-plane nodes not members: [{}]",
                extra.join(", "),
                missing.join(", ")
            ))
        }
    }

    async fn apid_ready(&self) -> Outcome {
        let mut bad = Vec::new();
        for n in self.nodes {
            if let Err(e) = self.bounded(self.api.version(n)).await {
                bad.push(format!("{}: {e}", n.hostname));
            }
        }
        if bad.is_empty() {
            Check::Done(format!("apid answers on {} nodes", self.nodes.len()))
        } else {
            Check::Pending(bad.join("; "))
        }
    }

    async fn memory_sizes(&self) -> Outcome {
        let mut bad = Vec::new();
        for n in self.nodes {
            let min = match n.role {
                Role::ControlPlane => MIN_MEMORY_CONTROL_PLANE_KIB,
                Role::Worker => MIN_MEMORY_WORKER_KIB,
            };
            match self.bounded(self.api.memory(n)).await {
                Err(e) => return Check::Pending(format!("{}: {e}", n.hostname)),
                Ok(m) if m.total_kib < min => bad.push(format!(
                    "{}: {} MiB, at least {} MiB needed for a {} node",
                    n.hostname,
                    m.total_kib / 1024,
                    min / 1024,
                    n.role
                )),
                Ok(_) => {}
            }
        }
        if bad.is_empty() {
            Check::Done("every node has enough memory".into())
        } else {
            // Memory does not grow by waiting.
            Check::Failed(bad.join("; "))
        }
    }

    async fn services_healthy(&self) -> Outcome {
        let mut bad = Vec::new();
        let mut total = 0;
        for n in self.nodes {
            match self.services(n).await {
                Err(e) => bad.push(format!("{}: {e}", n.hostname)),
                Ok(list) => {
                    for s in list {
                        total += 1;
                        let ok = match s.state.as_str() {
                            "Running" => s.healthy != Some(false),
                            "Finished" | "Skipped" => true,
                            _ => false,
                        };
                        if !ok {
                            let health = match s.healthy {
                                Some(false) if s.message.is_empty() => ", unhealthy".to_string(),
                                Some(false) => format!(", unhealthy: {}", s.message),
                                _ => String::new(),
                            };
                            bad.push(format!("{}: {} {}{health}", n.hostname, s.id, s.state));
                        }
                    }
                }
            }
        }
        if bad.is_empty() {
            Check::Done(format!("{total} services healthy"))
        } else {
            Check::Pending(bad.join("; "))
        }
    }

    async fn boot_finished(&self) -> Outcome {
        let mut bad = Vec::new();
        for n in self.nodes {
            if let Err(e) = self.bounded(self.api.version(n)).await {
                bad.push(format!("{}: {e}", n.hostname));
                continue;
            }
            let needed: &[&str] = match n.role {
                Role::ControlPlane => &["etcd", "kubelet"],
                Role::Worker => &["kubelet"],
            };
            match self.services(n).await {
                Err(e) => bad.push(format!("{}: {e}", n.hostname)),
                Ok(list) => {
                    for id in needed {
                        match list.iter().find(|s| &s.id == id) {
                            Some(s) if s.state == "Running" => {}
                            Some(s) => bad.push(format!("{}: {id} {}", n.hostname, s.state)),
                            None => bad.push(format!("{}: no {id} service yet", n.hostname)),
                        }
                    }
                }
            }
        }
        if bad.is_empty() {
            Check::Done("every node finished booting (apid answers, kubelet running)".into())
        } else {
            Check::Pending(bad.join("; "))
        }
    }

    async fn k8s_nodes_report(&self) -> Outcome {
        let nodes = match self.kube_nodes().await {
            Ok(n) => n,
            Err(e) => return Check::Pending(e),
        };
        let missing: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| !nodes.iter().any(|k| k.name == n.hostname))
            .map(|n| n.hostname.as_str())
            .collect();
        if missing.is_empty() {
            Check::Done(format!("{} nodes registered", self.nodes.len()))
        } else {
            Check::Pending(format!("not registered: {}", missing.join(", ")))
        }
    }

    async fn control_plane_components(&self) -> Outcome {
        let pods = match tokio::time::timeout(
            self.call,
            self.kube
                .list("v1", "Pod", Some("kube-system"), Some("tier=control-plane")),
        )
        .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Check::Pending(e.to_string()),
            Err(_) => return Check::Pending(format!("no answer within {}", human(self.call))),
        };
        let mut bad = Vec::new();
        let source;
        if pods.is_empty() {
            source = "Talos services; the API lists no control-plane pods";
            for cp in self.cps() {
                match self.services(cp).await {
                    Err(e) => bad.push(format!("{}: {e}", cp.hostname)),
                    Ok(list) => {
                        for c in CONTROL_PLANE_COMPONENTS {
                            match list.iter().find(|s| &s.id == c) {
                                Some(s) if s.is_up() => {}
                                Some(s) => bad.push(format!("{}: {c} {}", cp.hostname, s.state)),
                                None => bad.push(format!("{}: no {c}", cp.hostname)),
                            }
                        }
                    }
                }
            }
        } else {
            source = "static pods in kube-system";
            for cp in self.cps() {
                for c in CONTROL_PLANE_COMPONENTS {
                    let pod = pods.iter().find(|p| {
                        p.pointer("/spec/nodeName").and_then(|v| v.as_str())
                            == Some(cp.hostname.as_str())
                            && p.pointer("/metadata/labels/k8s-app")
                                .and_then(|v| v.as_str())
                                == Some(c)
                    });
                    let ready = pod.is_some_and(|p| {
                        p.pointer("/status/conditions")
                            .and_then(|c| c.as_array())
                            .is_some_and(|cs| {
                                cs.iter().any(|c| {
                                    c.get("type").and_then(|t| t.as_str()) == Some("Ready")
                                        && c.get("status").and_then(|s| s.as_str()) == Some("True")
                                })
                            })
                    });
                    if pod.is_none() {
                        bad.push(format!("{}: no {c} pod", cp.hostname));
                    } else if !ready {
                        bad.push(format!("{}: {c} not Ready", cp.hostname));
                    }
                }
            }
        }
        if bad.is_empty() {
            Check::Done(format!(
                "{} ready on every control-plane node (from {source})",
                CONTROL_PLANE_COMPONENTS.join(", ")
            ))
        } else {
            Check::Pending(format!("{} (from {source})", bad.join("; ")))
        }
    }

    async fn k8s_nodes_ready(&self) -> Outcome {
        let nodes = match self.kube_nodes().await {
            Ok(n) => n,
            Err(e) => return Check::Pending(e),
        };
        let mut bad = Vec::new();
        for n in self.nodes {
            match nodes.iter().find(|k| k.name == n.hostname) {
                None => bad.push(format!("{}: not registered", n.hostname)),
                Some(k) if k.ready == Some(true) => {}
                Some(k) => bad.push(format!(
                    "{}: not Ready{}",
                    n.hostname,
                    if k.ready_message.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", k.ready_message)
                    }
                )),
            }
        }
        if bad.is_empty() {
            Check::Done(format!("{} nodes Ready", self.nodes.len()))
        } else {
            Check::Pending(bad.join("; "))
        }
    }

    async fn k8s_nodes_schedulable(&self) -> Outcome {
        let nodes = match self.kube_nodes().await {
            Ok(n) => n,
            Err(e) => return Check::Pending(e),
        };
        let cordoned: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| {
                nodes
                    .iter()
                    .any(|k| k.name == n.hostname && k.unschedulable)
            })
            .map(|n| n.hostname.as_str())
            .collect();
        if cordoned.is_empty() {
            Check::Done("no node is cordoned".into())
        } else {
            Check::Pending(format!("cordoned: {}", cordoned.join(", ")))
        }
    }
}

#[derive(Clone, Copy)]
enum Which {
    EtcdHealthy,
    MembersConsistent,
    MembersControlPlanes,
    Apid,
    Memory,
    Services,
    Boot,
    K8sReport,
    Components,
    K8sReady,
    Schedulable,
}

/// The pause before a check's second probe; later pauses grow with the time waited up
/// to the check's own interval.
const FIRST_PROBE_PAUSE: Duration = Duration::from_millis(200);

/// Name, own deadline, longest poll interval — in Talos's order.
const CHECKS: &[(&str, Which, u64, u64)] = &[
    ("etcd to be healthy", Which::EtcdHealthy, 300, 5),
    (
        "etcd members to be consistent across nodes",
        Which::MembersConsistent,
        300,
        5,
    ),
    (
        "etcd members to be control plane nodes",
        Which::MembersControlPlanes,
        300,
        5,
    ),
    ("apid to be ready", Which::Apid, 300, 5),
    ("all nodes memory sizes", Which::Memory, 300, 5),
    ("all nodes services to be healthy", Which::Services, 300, 5),
    ("all nodes to finish boot sequence", Which::Boot, 300, 5),
    ("all k8s nodes to report", Which::K8sReport, 300, 30),
    (
        "all control plane components to be ready",
        Which::Components,
        300,
        5,
    ),
    ("all k8s nodes to report ready", Which::K8sReady, 600, 5),
    (
        "all k8s nodes to report schedulable",
        Which::Schedulable,
        300,
        5,
    ),
];

/// The names of the checks, in order.
pub fn check_names() -> Vec<&'static str> {
    CHECKS.iter().map(|c| c.0).collect()
}

/// Runs the checks against `nodes` (every node of the cluster with its role).
pub async fn health(
    nodes: &[NodeRef],
    api: &dyn NodeApi,
    kube: &dyn KubeApi,
    sink: &dyn EventSink,
    options: &HealthOptions,
) -> Result<HealthReport, HealthError> {
    if nodes.is_empty() {
        return Err(HealthError::NoNodes);
    }
    let emit = Emitter::new(sink);
    let ctx = Ctx {
        nodes,
        api,
        kube,
        call: options.call_timeout,
    };
    let start = Instant::now();
    let deadline = start + options.wait;
    let mut results = Vec::new();
    let mut failure: Option<(&'static str, String)> = None;
    for &(name, which, timeout_s, interval_s) in CHECKS {
        if failure.is_some() {
            results.push(CheckResult {
                name,
                status: CheckStatus::NotRun,
                duration: Duration::ZERO,
                message: "not run: an earlier check failed".into(),
            });
            continue;
        }
        let scale = |s: u64| {
            Duration::try_from_secs_f64(s as f64 * options.time_scale)
                .unwrap_or(Duration::from_secs(s))
        };
        let left = deadline.saturating_duration_since(Instant::now());
        // Talos's interval is the longest pause; the first probes come sooner (as in
        // `up`), so a check that is about to pass does not cost a whole interval.
        let limits = WaitLimits::adaptive(
            scale(timeout_s).min(left),
            FIRST_PROBE_PAUSE,
            scale(interval_s),
        );
        emit.emit(Phase::Health, None, Status::Started, name);
        let began = Instant::now();
        let ctx = &ctx;
        let r: Result<String, WaitError<String>> = poll_until(
            name,
            limits,
            options.call_timeout * 4,
            |seen| {
                emit.emit(
                    Phase::Health,
                    None,
                    Status::Waiting,
                    format!("{name}: {seen}"),
                )
            },
            || async move {
                match which {
                    Which::EtcdHealthy => ctx.etcd_healthy().await,
                    Which::MembersConsistent => ctx.members_consistent().await,
                    Which::MembersControlPlanes => ctx.members_are_control_planes().await,
                    Which::Apid => ctx.apid_ready().await,
                    Which::Memory => ctx.memory_sizes().await,
                    Which::Services => ctx.services_healthy().await,
                    Which::Boot => ctx.boot_finished().await,
                    Which::K8sReport => ctx.k8s_nodes_report().await,
                    Which::Components => ctx.control_plane_components().await,
                    Which::K8sReady => ctx.k8s_nodes_ready().await,
                    Which::Schedulable => ctx.k8s_nodes_schedulable().await,
                }
            },
        )
        .await;
        let duration = began.elapsed();
        let (status, message) = match r {
            Ok(m) => (CheckStatus::Passed, m),
            Err(WaitError::Failed(m)) => (CheckStatus::Failed, m),
            Err(WaitError::TimedOut(t)) => (
                CheckStatus::Failed,
                format!(
                    "timed out after {}; last seen: {}",
                    human(t.waited),
                    t.last_seen
                ),
            ),
        };
        emit.emit(
            Phase::Health,
            None,
            if status == CheckStatus::Passed {
                Status::Done
            } else {
                Status::Failed
            },
            format!("{name}: {message}"),
        );
        if status == CheckStatus::Failed {
            failure = Some((name, message.clone()));
        }
        results.push(CheckResult {
            name,
            status,
            duration,
            message,
        });
    }
    let report = HealthReport {
        checks: results,
        duration: start.elapsed(),
    };
    match failure {
        None => Ok(report),
        Some((check, message)) => Err(HealthError::Unhealthy {
            check,
            message,
            report: Box::new(report),
        }),
    }
}
