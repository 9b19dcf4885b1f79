//! The executor: runs a [`Plan`] against the cluster through [`NodeApi`] and [`KubeApi`],
//! emitting [`Event`](crate::event::Event)s and recording progress in the state file.
//!
//! Steps, in order (each waits on a real signal with a deadline; see [`Timeouts`]):
//! 1. **apply** configs to every node, in parallel (bounded); a node that does not answer
//!    is waited for and reported by name, the others are applied regardless;
//! 2. **apid**: wait until every control-plane node answers Version over mutual TLS;
//! 3. **bootstrap**: check etcd members on every control-plane node; record the intent;
//!    call Bootstrap on exactly one node, retrying "not ready" answers with bounded
//!    backoff; "already bootstrapped" counts only once etcd lists members; record the
//!    marker before the step returns;
//! 4. **etcd**: wait until every control-plane node reports all control-plane nodes as
//!    healthy members;
//! 5. **kubeconfig**: fetch it from a control-plane node, merge or write it (0600);
//! 6. **kubernetes**: wait for `/readyz`, then for every node registered and Ready;
//! 7. **manifests**: server-side apply (field manager `kforge`);
//! 8. **tuning**: verify kernel args, huge pages and CPU manager policy on the nodes.
//!
//! Restart semantics: every completed step is in the state file; killing the executor at
//! any point and running `up` again re-plans from what the nodes report plus the state
//! file, redoes nothing that is done, and never bootstraps twice (see [`crate::state`]).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use kforge_secret::SecretString;
use serde::Serialize;

use crate::api::{
    ApiError, ApiErrorKind, ApplyAuth, BootstrapOutcome, KubeApi, KubeConnector, KubeError,
    NodeApi, NodeMode,
};
use crate::desired::{DesiredCluster, DesiredNode, NodeRef, manifests_fingerprint};
use crate::event::{Emitter, EventSink, Phase, Status};
use crate::kubeconfig::{self, KubeconfigError};
use crate::observe::{ObserveOptions, observe};
use crate::plan::{
    BootstrapPlan, KubeconfigOutput, KubeconfigPlan, ManifestsPlan, NodeAction, Plan, PlanError,
    PlanOptions, TuningAction, plan,
};
use crate::redact;
use crate::state::{
    AppliedHow, BootstrapEvidence, BootstrapIntent, BootstrapMarker, DeployState, KubeconfigRecord,
    ManifestsRecord, NodeRecord, StateError, StateStore, TuningRecord, timestamp,
};
use crate::tuning::{self, NodeTuning, Unavailable};
use crate::wait::{Backoff, Check, TimedOut, WaitError, WaitLimits, human, poll_until};

/// Deadlines of the steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// One API call.
    pub call: Duration,
    /// Waiting for a node to take its config (it may still be booting).
    pub apply: Duration,
    /// Waiting for apid on every control-plane node.
    pub apid: Duration,
    /// Retrying Bootstrap while the node is not ready.
    pub bootstrap: Duration,
    /// Waiting for etcd members after "already bootstrapped".
    pub bootstrap_confirm: Duration,
    /// Waiting for every control-plane node to be a healthy etcd member.
    pub etcd: Duration,
    pub kubeconfig: Duration,
    /// Waiting for `/readyz`.
    pub kubernetes_api: Duration,
    /// Waiting for every node to be registered and Ready.
    pub nodes_ready: Duration,
    pub manifests: Duration,
    pub tuning: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(60 * m);
        Timeouts {
            call: Duration::from_secs(30),
            apply: min(10),
            apid: min(10),
            bootstrap: min(5),
            bootstrap_confirm: min(2),
            etcd: min(10),
            kubeconfig: min(2),
            kubernetes_api: min(10),
            nodes_ready: min(15),
            manifests: min(5),
            tuning: min(5),
        }
    }
}

impl Timeouts {
    /// Every deadline (the per-call one included) no longer than `max`: `kforge up
    /// --step-timeout`, so that a node that never answers fails the run quickly.
    #[must_use]
    pub fn capped(self, max: Duration) -> Timeouts {
        let c = |d: Duration| d.min(max);
        Timeouts {
            call: c(self.call),
            apply: c(self.apply),
            apid: c(self.apid),
            bootstrap: c(self.bootstrap),
            bootstrap_confirm: c(self.bootstrap_confirm),
            etcd: c(self.etcd),
            kubeconfig: c(self.kubeconfig),
            kubernetes_api: c(self.kubernetes_api),
            nodes_ready: c(self.nodes_ready),
            manifests: c(self.manifests),
            tuning: c(self.tuning),
        }
    }
}

/// Poll intervals of the waits. Every wait is adaptive (see
/// [`WaitLimits::adaptive`](crate::wait::WaitLimits::adaptive)): it probes every `first`
/// at first, then every 1/20 of the time it has waited, at most every step's interval. A
/// signal is noticed within about 5 % of the time waited for it (the deploy's total is
/// within a few percent of the time the cluster itself needs), while a wait of minutes on
/// a real cluster probes no more often than every 2 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intervals {
    /// The shortest pause between probes, at the start of every wait.
    pub first: Duration,
    pub apply: Duration,
    pub apid: Duration,
    pub etcd: Duration,
    pub kubernetes: Duration,
    pub manifests: Duration,
    pub tuning: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        let s = Duration::from_secs;
        Intervals {
            first: Duration::from_millis(200),
            apply: s(2),
            apid: s(2),
            etcd: s(2),
            kubernetes: s(2),
            manifests: s(2),
            tuning: s(2),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ExecuteOptions {
    /// Nodes worked on in parallel (applies, waits, tuning checks). 32: a 3+50 cluster
    /// is applied and verified in two rounds, and 32 concurrent Talos API calls are no
    /// load worth bounding further (each is one small gRPC call on its own connection).
    pub concurrency: usize,
    pub timeouts: Timeouts,
    pub intervals: Intervals,
    /// Between Bootstrap attempts (talosctl: 100 ms up to about 5 s; kforge caps at 2 s,
    /// like its waits).
    pub bootstrap_backoff: Backoff,
    /// Field manager of server-side apply.
    pub field_manager: String,
    /// Wall clock for the state file's timestamps.
    pub now: fn() -> SystemTime,
}

impl Default for ExecuteOptions {
    fn default() -> Self {
        ExecuteOptions {
            concurrency: 32,
            timeouts: Timeouts::default(),
            intervals: Intervals::default(),
            bootstrap_backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(2),
            },
            field_manager: "kforge".into(),
            now: SystemTime::now,
        }
    }
}

/// One node's verified tuning and the mismatches found on it.
type NodeTuningOutcome = (NodeTuning, Vec<String>);

/// What the executor works with.
#[derive(Clone, Copy)]
pub struct Apis<'a> {
    pub nodes: &'a dyn NodeApi,
    pub kube: &'a dyn KubeConnector,
    pub state: &'a dyn StateStore,
}

/// A node that failed its step, with the whole cause chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeFailure {
    pub node: String,
    pub error: String,
}

fn list_failures(f: &[NodeFailure]) -> String {
    f.iter()
        .map(|f| format!("{}: {}", f.node, f.error))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a deployment stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("the plan cannot run: {}", .blockers.join("; "))]
    Blocked { blockers: Vec<String> },
    #[error("the plan does not match the desired cluster ({detail}); hint: plan again")]
    StalePlan { detail: String },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "applying machine configs failed on {} of {total} nodes (the others were applied; run \
         again to continue): {}",
        .failures.len(),
        list_failures(.failures)
    )]
    Apply {
        failures: Vec<NodeFailure>,
        total: usize,
    },
    #[error("{} of {total} control-plane nodes did not come up: {}", .failures.len(), list_failures(.failures))]
    Nodes {
        step: &'static str,
        failures: Vec<NodeFailure>,
        total: usize,
    },
    #[error(transparent)]
    TimedOut(#[from] TimedOut),
    #[error("the {step} step failed")]
    Node {
        step: &'static str,
        #[source]
        source: ApiError,
    },
    #[error(
        "{node} answered that etcd is already bootstrapped, but etcd listed no members within \
         {}; hint: look at the etcd service on the node (`kforge health`); kforge does not \
         bootstrap again",
        human(*.waited)
    )]
    BootstrapUnconfirmed { node: String, waited: Duration },
    #[error("the {step} step failed")]
    Kube {
        step: &'static str,
        #[source]
        source: KubeError,
    },
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    #[error(
        "server-side apply failed for {} of {total} manifests: {}",
        .failures.len(),
        .failures.join("; ")
    )]
    Manifests { failures: Vec<String>, total: usize },
    #[error("tuning on the live nodes is not what the profiles set: {}", .mismatches.join("; "))]
    Tuning {
        mismatches: Vec<String>,
        results: Vec<NodeTuning>,
    },
}

/// One finished step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepOutcome {
    pub phase: Phase,
    pub node: Option<String>,
    pub outcome: String,
    #[serde(rename = "duration_ms", serialize_with = "ms")]
    pub duration: Duration,
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExecuteReport {
    /// Whether anything on the cluster or in the state file changed.
    pub changed: bool,
    pub steps: Vec<StepOutcome>,
    pub tuning: Vec<NodeTuning>,
    #[serde(rename = "duration_ms", serialize_with = "ms")]
    pub duration: Duration,
}

struct Run<'a> {
    plan: &'a Plan,
    desired: &'a DesiredCluster,
    apis: Apis<'a>,
    opts: &'a ExecuteOptions,
    emit: Emitter<'a>,
    state: Mutex<DeployState>,
    steps: Mutex<Vec<StepOutcome>>,
}

/// Runs `plan`. `desired` must be the cluster the plan was made for (its configs are sent;
/// the plan holds only fingerprints). A plan with blockers is refused; a no-op plan
/// returns at once with `changed: false`.
pub async fn execute(
    plan: &Plan,
    desired: &DesiredCluster,
    apis: Apis<'_>,
    sink: &dyn EventSink,
    opts: &ExecuteOptions,
) -> Result<ExecuteReport, DeployError> {
    if !plan.blockers.is_empty() {
        return Err(DeployError::Blocked {
            blockers: plan.blockers.clone(),
        });
    }
    check_plan_matches(plan, desired)?;
    let emit = Emitter::new(sink);
    if plan.is_noop() {
        emit.emit(
            Phase::Observe,
            None,
            Status::Skipped,
            "nothing to do: the cluster matches the desired state",
        );
        return Ok(ExecuteReport {
            changed: false,
            steps: Vec::new(),
            tuning: Vec::new(),
            duration: emit.elapsed(),
        });
    }
    let state = apis.state.load(&desired.name)?;
    let run = Run {
        plan,
        desired,
        apis,
        opts,
        emit,
        state: Mutex::new(state),
        steps: Mutex::new(Vec::new()),
    };
    run.apply_all().await?;
    run.wait_apid().await?;
    run.bootstrap().await?;
    run.wait_etcd().await?;
    let kubeconfig = run.kubeconfig().await?;
    let kube = run.kubernetes(&kubeconfig).await?;
    run.manifests(kube.as_ref()).await?;
    let tuning = run.tuning(kube.as_ref()).await?;
    Ok(ExecuteReport {
        changed: true,
        steps: run.steps.lock().map(|s| s.clone()).unwrap_or_default(),
        tuning,
        duration: run.emit.elapsed(),
    })
}

fn check_plan_matches(plan: &Plan, desired: &DesiredCluster) -> Result<(), DeployError> {
    let stale = |detail: String| Err(DeployError::StalePlan { detail });
    if plan.cluster != desired.name {
        return stale(format!(
            "plan for `{}`, cluster `{}`",
            plan.cluster, desired.name
        ));
    }
    if plan.nodes.len() != desired.nodes().len() {
        return stale("different nodes".into());
    }
    for n in &plan.nodes {
        let Some(d) = desired.node(&n.hostname) else {
            return stale(format!("node `{}` is not in the cluster", n.hostname));
        };
        let planned = match &n.action {
            NodeAction::ApplyInsecure { fingerprint }
            | NodeAction::ApplyAuthenticated { fingerprint, .. }
            | NodeAction::ApplyWhenReachable { fingerprint, .. }
            | NodeAction::Unchanged { fingerprint, .. } => Some(fingerprint),
            NodeAction::Blocked { .. } => None,
        };
        if planned.is_some_and(|f| f != d.fingerprint()) {
            return stale(format!("the config of `{}` changed", n.hostname));
        }
    }
    Ok(())
}

/// Everything kforge needs to run `up`: observe, plan, execute.
#[derive(Clone, Debug)]
pub struct UpOptions {
    pub plan: PlanOptions,
    pub observe: ObserveOptions,
    pub execute: ExecuteOptions,
}

/// `kforge up`: observes the nodes, plans, and executes the plan. Returns the plan (for
/// display) with the report.
pub async fn up(
    desired: &DesiredCluster,
    apis: Apis<'_>,
    sink: &dyn EventSink,
    options: &UpOptions,
) -> Result<(Plan, ExecuteReport), DeployError> {
    let plan = plan_cluster(desired, apis, sink, &options.plan, &options.observe).await?;
    let report = execute(&plan, desired, apis, sink, &options.execute).await?;
    Ok((plan, report))
}

/// `kforge plan`: observes the nodes and the state file and returns the plan.
pub async fn plan_cluster(
    desired: &DesiredCluster,
    apis: Apis<'_>,
    sink: &dyn EventSink,
    plan_options: &PlanOptions,
    observe_options: &ObserveOptions,
) -> Result<Plan, DeployError> {
    let emit = Emitter::new(sink);
    emit.emit(
        Phase::Observe,
        None,
        Status::Started,
        format!("looking at {} nodes", desired.nodes().len()),
    );
    let state = apis.state.load(&desired.name)?;
    let present = kubeconfig::file_has_context(
        plan_options.kubeconfig.path(),
        plan_options.kubeconfig.context(),
    );
    let observation = observe(desired, apis.nodes, present, observe_options).await;
    for (host, o) in &observation.nodes {
        emit.emit(Phase::Observe, Some(host), Status::Done, o.summary());
    }
    Ok(plan(desired, &observation, &state, plan_options)?)
}

fn is_auth(e: &ApiError) -> bool {
    matches!(
        e.kind,
        ApiErrorKind::AuthRejected | ApiErrorKind::UntrustedNode | ApiErrorKind::Setup
    )
}

impl Run<'_> {
    fn now(&self) -> String {
        timestamp((self.opts.now)())
    }

    fn record(&self, change: impl FnOnce(&mut DeployState)) -> Result<(), DeployError> {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        change(&mut state);
        self.apis.state.save(&state)?;
        Ok(())
    }

    fn state_snapshot(&self) -> DeployState {
        match self.state.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn step(&self, phase: Phase, node: Option<&str>, outcome: impl Into<String>, since: Duration) {
        let outcome = outcome.into();
        let duration = self.emit.elapsed().saturating_sub(since);
        if let Ok(mut steps) = self.steps.lock() {
            steps.push(StepOutcome {
                phase,
                node: node.map(str::to_string),
                outcome,
                duration,
            });
        }
    }

    fn limits(&self, timeout: Duration, interval: Duration) -> WaitLimits {
        WaitLimits::adaptive(timeout, self.opts.intervals.first, interval)
    }

    async fn call<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.opts.timeouts.call, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.chain()),
            Err(_) => Err(format!(
                "no answer within {}",
                human(self.opts.timeouts.call)
            )),
        }
    }

    // ------------------------------------------------------------ 1. apply

    async fn apply_all(&self) -> Result<(), DeployError> {
        let total = self.plan.nodes.len();
        let failures: Vec<NodeFailure> = futures::stream::iter(&self.plan.nodes)
            .map(|np| async move {
                let d = self.desired.node(&np.hostname)?;
                match self.apply_node(d, &np.action).await {
                    Ok(()) => None,
                    Err(error) => {
                        self.emit.emit(
                            Phase::Apply,
                            Some(&d.node.hostname),
                            Status::Failed,
                            error.clone(),
                        );
                        Some(NodeFailure {
                            node: d.node.to_string(),
                            error,
                        })
                    }
                }
            })
            .buffer_unordered(self.opts.concurrency.max(1))
            .filter_map(|f| async move { f })
            .collect()
            .await;
        if failures.is_empty() {
            Ok(())
        } else {
            let mut failures = failures;
            failures.sort_by(|a, b| a.node.cmp(&b.node));
            Err(DeployError::Apply { failures, total })
        }
    }

    async fn apply_node(&self, d: &DesiredNode, action: &NodeAction) -> Result<(), String> {
        let node = &d.node;
        let host = Some(node.hostname.as_str());
        let since = self.emit.elapsed();
        if let NodeAction::Unchanged { basis, .. } = action {
            self.emit.emit(
                Phase::Apply,
                host,
                Status::Skipped,
                format!("config unchanged ({})", d.fingerprint().short()),
            );
            let recorded = self
                .state_snapshot()
                .nodes
                .get(&node.hostname)
                .is_some_and(|r| &r.fingerprint == d.fingerprint());
            if !recorded && *basis == crate::plan::UnchangedBasis::RunningConfig {
                self.record_applied(d, AppliedHow::AlreadyRunning)
                    .map_err(|e| e.to_string())?;
            }
            return Ok(());
        }
        self.emit.emit(
            Phase::Apply,
            host,
            Status::Started,
            format!("applying config {}", d.fingerprint().short()),
        );
        let api = self.apis.nodes;
        let what = format!("{node} to accept its machine config");
        let outcome = poll_until(
            what,
            self.limits(self.opts.timeouts.apply, self.opts.intervals.apply),
            self.opts.timeouts.call * 3,
            |seen| {
                self.emit
                    .emit(Phase::Apply, host, Status::Waiting, seen.to_string())
            },
            || async move {
                let mode = match api.probe(node).await {
                    Ok(m) => m,
                    Err(e) if is_auth(&e) => return Check::Failed(e),
                    Err(e) => return Check::Pending(e.chain()),
                };
                let auth = match mode {
                    NodeMode::Maintenance => ApplyAuth::Insecure,
                    NodeMode::Configured { .. } => {
                        // Maybe applied by an earlier, interrupted run.
                        if let Ok(running) = api.running_config(node).await
                            && redact::same_config(running.expose(), d.config().expose())
                        {
                            return Check::Done((AppliedHow::AlreadyRunning, None));
                        }
                        ApplyAuth::Authenticated
                    }
                };
                match api.apply_config(node, d.config(), auth).await {
                    Ok(report) => {
                        let how = match auth {
                            ApplyAuth::Insecure => AppliedHow::Maintenance,
                            ApplyAuth::Authenticated => AppliedHow::Authenticated,
                        };
                        Check::Done((how, Some(report)))
                    }
                    Err(e) if e.kind.is_transient() => Check::Pending(e.chain()),
                    Err(e) => Check::Failed(e),
                }
            },
        )
        .await;
        let (how, report) = match outcome {
            Ok(v) => v,
            Err(WaitError::TimedOut(t)) => return Err(t.to_string()),
            Err(WaitError::Failed(e)) => return Err(e.chain()),
        };
        self.record_applied(d, how).map_err(|e| e.to_string())?;
        let text = match how {
            AppliedHow::Maintenance => "applied config (insecure, maintenance mode)".to_string(),
            AppliedHow::Authenticated => format!(
                "applied config (mode auto{})",
                report
                    .and_then(|r| r.mode)
                    .map(|m| format!(", node chose {m}"))
                    .unwrap_or_default()
            ),
            AppliedHow::AlreadyRunning => "the node already runs this config".to_string(),
        };
        self.emit
            .emit(Phase::Apply, host, Status::Done, text.clone());
        self.step(Phase::Apply, host, text, since);
        Ok(())
    }

    fn record_applied(&self, d: &DesiredNode, how: AppliedHow) -> Result<(), DeployError> {
        let at = self.now();
        self.record(|s| {
            s.nodes.insert(
                d.node.hostname.clone(),
                NodeRecord {
                    address: d.node.address.clone(),
                    fingerprint: d.fingerprint().clone(),
                    how,
                    at,
                },
            );
        })
    }

    // ------------------------------------------------------------ 2. apid

    async fn wait_apid(&self) -> Result<(), DeployError> {
        let since = self.emit.elapsed();
        let cps: Vec<&DesiredNode> = self.desired.control_planes().collect();
        self.emit.emit(
            Phase::Apid,
            None,
            Status::Started,
            format!(
                "waiting for the Talos API on {} control-plane nodes",
                cps.len()
            ),
        );
        let total = cps.len();
        let failures: Vec<NodeFailure> = futures::stream::iter(cps)
            .map(|d| async move {
                let node = &d.node;
                let host = Some(node.hostname.as_str());
                let r = poll_until(
                    format!("apid on {node} to answer over mutual TLS"),
                    self.limits(self.opts.timeouts.apid, self.opts.intervals.apid),
                    self.opts.timeouts.call,
                    |seen| {
                        self.emit
                            .emit(Phase::Apid, host, Status::Waiting, seen.to_string())
                    },
                    || async move {
                        match self.apis.nodes.version(node).await {
                            Ok(v) => Check::Done(v),
                            // Right after an insecure apply the node still serves the
                            // maintenance API (with its self-signed certificate) until it
                            // has installed the config and rebooted.
                            Err(e) if e.kind == ApiErrorKind::UntrustedNode => {
                                match self.apis.nodes.probe(node).await {
                                    Ok(NodeMode::Maintenance) => Check::Pending(
                                        "still in maintenance mode (installing the config and \
                                         rebooting)"
                                            .into(),
                                    ),
                                    _ => Check::Failed(e),
                                }
                            }
                            Err(e) if is_auth(&e) => Check::Failed(e),
                            Err(e) => Check::Pending(e.chain()),
                        }
                    },
                )
                .await;
                match r {
                    Ok(v) => {
                        self.emit
                            .emit(Phase::Apid, host, Status::Done, format!("Talos {v}"));
                        None
                    }
                    Err(WaitError::TimedOut(t)) => Some(NodeFailure {
                        node: node.to_string(),
                        error: t.to_string(),
                    }),
                    Err(WaitError::Failed(e)) => Some(NodeFailure {
                        node: node.to_string(),
                        error: e.chain(),
                    }),
                }
            })
            .buffer_unordered(self.opts.concurrency.max(1))
            .filter_map(|f| async move { f })
            .collect()
            .await;
        if !failures.is_empty() {
            for f in &failures {
                self.emit
                    .emit(Phase::Apid, Some(&f.node), Status::Failed, f.error.clone());
            }
            return Err(DeployError::Nodes {
                step: "apid",
                failures,
                total,
            });
        }
        self.step(
            Phase::Apid,
            None,
            "apid answers on every control-plane node",
            since,
        );
        Ok(())
    }

    // ------------------------------------------------------------ 3. bootstrap

    async fn bootstrap(&self) -> Result<(), DeployError> {
        let since = self.emit.elapsed();
        match &self.plan.bootstrap {
            BootstrapPlan::Done { node, at } => {
                self.emit.emit(
                    Phase::Bootstrap,
                    None,
                    Status::Skipped,
                    format!("already bootstrapped on {node} at {at}"),
                );
                Ok(())
            }
            BootstrapPlan::Blocked { reason } => Err(DeployError::Blocked {
                blockers: vec![reason.clone()],
            }),
            BootstrapPlan::RecordExisting {
                reported_by,
                members,
            } => {
                self.record_marker(
                    reported_by,
                    BootstrapEvidence::MembersObserved {
                        reported_by: reported_by.clone(),
                        members: members.clone(),
                    },
                )?;
                let text = format!(
                    "etcd is already bootstrapped ({reported_by} reports {}); recorded, not \
                     bootstrapping",
                    members.join(", ")
                );
                self.emit
                    .emit(Phase::Bootstrap, None, Status::Skipped, text.clone());
                self.step(Phase::Bootstrap, None, text, since);
                Ok(())
            }
            BootstrapPlan::Bootstrap { node, .. } => {
                let Some(d) = self
                    .desired
                    .node(node)
                    .filter(|d| d.node.is_control_plane())
                else {
                    return Err(DeployError::StalePlan {
                        detail: format!("bootstrap node `{node}` is not a control-plane node"),
                    });
                };
                self.bootstrap_on(&d.node, since).await
            }
        }
    }

    fn record_marker(&self, node: &str, evidence: BootstrapEvidence) -> Result<(), DeployError> {
        let at = self.now();
        self.record(|s| {
            s.bootstrap.completed = Some(BootstrapMarker {
                node: node.to_string(),
                at,
                evidence,
            });
        })
    }

    /// Member hostnames reported by any control-plane node, with the reporter.
    async fn existing_members(&self) -> Option<(String, Vec<String>)> {
        let reports: Vec<Option<(String, Vec<String>)>> =
            futures::stream::iter(self.desired.control_planes())
                .map(|cp| async move {
                    match self.call(self.apis.nodes.etcd_members(&cp.node)).await {
                        Ok(m) if !m.is_empty() => {
                            let mut names: Vec<String> =
                                m.into_iter().map(|m| m.hostname).collect();
                            names.sort();
                            Some((cp.node.hostname.clone(), names))
                        }
                        _ => None,
                    }
                })
                .buffered(self.opts.concurrency.max(1))
                .collect()
                .await;
        reports.into_iter().flatten().next()
    }

    async fn bootstrap_on(&self, node: &NodeRef, since: Duration) -> Result<(), DeployError> {
        let host = Some(node.hostname.as_str());
        self.emit.emit(
            Phase::Bootstrap,
            host,
            Status::Started,
            "checking etcd members on every control-plane node",
        );
        if let Some((reporter, members)) = self.existing_members().await {
            self.record_marker(
                &reporter,
                BootstrapEvidence::MembersObserved {
                    reported_by: reporter.clone(),
                    members: members.clone(),
                },
            )?;
            let text = format!(
                "etcd already has members ({reporter} reports {}); recorded, not bootstrapping",
                members.join(", ")
            );
            self.emit
                .emit(Phase::Bootstrap, host, Status::Skipped, text.clone());
            self.step(Phase::Bootstrap, host, text, since);
            return Ok(());
        }
        // The intent is on disk before the call: a crash after the call leaves a trace
        // that makes the next run resume on this node only.
        let at = self.now();
        self.record(|s| {
            let same = s
                .bootstrap
                .intent
                .as_ref()
                .is_some_and(|i| i.node == node.hostname);
            if !same {
                s.bootstrap.intent = Some(BootstrapIntent {
                    node: node.hostname.clone(),
                    address: node.address.clone(),
                    at,
                });
            }
        })?;
        self.emit.emit(
            Phase::Bootstrap,
            host,
            Status::Started,
            format!("bootstrapping etcd on {node}"),
        );

        let start = tokio::time::Instant::now();
        let deadline = start + self.opts.timeouts.bootstrap;
        let mut attempt = 0u32;
        let outcome = loop {
            attempt += 1;
            let result =
                tokio::time::timeout(self.opts.timeouts.call, self.apis.nodes.bootstrap(node))
                    .await;
            let last = match result {
                Ok(Ok(o)) => break o,
                Ok(Err(e)) if e.kind == ApiErrorKind::AlreadyExists => {
                    break BootstrapOutcome::AlreadyBootstrapped;
                }
                Ok(Err(e)) if e.kind.is_transient() => e.chain(),
                Ok(Err(e)) => {
                    self.emit
                        .emit(Phase::Bootstrap, host, Status::Failed, e.chain());
                    return Err(DeployError::Node {
                        step: "bootstrap",
                        source: e,
                    });
                }
                Err(_) => format!("no answer within {}", human(self.opts.timeouts.call)),
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                let t = TimedOut {
                    what: format!("{node} to accept Bootstrap (after {attempt} attempts)"),
                    waited: now - start,
                    last_seen: last,
                };
                self.emit
                    .emit(Phase::Bootstrap, host, Status::Failed, t.to_string());
                return Err(t.into());
            }
            self.emit.emit(
                Phase::Bootstrap,
                host,
                Status::Waiting,
                format!("attempt {attempt}: {last}"),
            );
            let pause = self
                .opts
                .bootstrap_backoff
                .pause(attempt)
                .min(deadline - now);
            tokio::time::sleep(pause).await;
        };

        let evidence = match outcome {
            BootstrapOutcome::Bootstrapped => BootstrapEvidence::Bootstrapped,
            BootstrapOutcome::AlreadyBootstrapped => {
                self.emit.emit(
                    Phase::Bootstrap,
                    host,
                    Status::Waiting,
                    "the node says etcd is already bootstrapped; confirming with the member list",
                );
                self.confirm_members(node).await?;
                BootstrapEvidence::AlreadyBootstrapped
            }
        };
        self.record_marker(&node.hostname, evidence.clone())?;
        let text = match evidence {
            BootstrapEvidence::Bootstrapped => format!("bootstrapped etcd on {node}"),
            _ => format!("etcd on {node} was already bootstrapped (members confirmed)"),
        };
        self.emit
            .emit(Phase::Bootstrap, host, Status::Done, text.clone());
        self.step(Phase::Bootstrap, host, text, since);
        Ok(())
    }

    async fn confirm_members(&self, node: &NodeRef) -> Result<(), DeployError> {
        let limits = self.limits(
            self.opts.timeouts.bootstrap_confirm,
            self.opts.intervals.etcd,
        );
        let r: Result<(), WaitError<ApiError>> = poll_until(
            format!("etcd on {node} to list members"),
            limits,
            self.opts.timeouts.call,
            |_| {},
            || async move {
                match self.apis.nodes.etcd_members(node).await {
                    Ok(m) if !m.is_empty() => Check::Done(()),
                    Ok(_) => Check::Pending("no members".into()),
                    Err(e) if is_auth(&e) => Check::Failed(e),
                    Err(e) => Check::Pending(e.chain()),
                }
            },
        )
        .await;
        match r {
            Ok(()) => Ok(()),
            Err(WaitError::TimedOut(t)) => Err(DeployError::BootstrapUnconfirmed {
                node: node.to_string(),
                waited: t.waited,
            }),
            Err(WaitError::Failed(e)) => Err(DeployError::Node {
                step: "bootstrap",
                source: e,
            }),
        }
    }

    // ------------------------------------------------------------ 4. etcd

    async fn wait_etcd(&self) -> Result<(), DeployError> {
        let since = self.emit.elapsed();
        let cps: Vec<&DesiredNode> = self.desired.control_planes().collect();
        let want: BTreeSet<&str> = cps.iter().map(|c| c.node.hostname.as_str()).collect();
        let want = &want;
        let n = want.len();
        self.emit.emit(
            Phase::Etcd,
            None,
            Status::Started,
            format!("waiting for {n} healthy etcd members"),
        );
        let results: Vec<Result<(), DeployError>> = futures::stream::iter(cps)
            .map(|d| async move {
                let node = &d.node;
                let host = Some(node.hostname.as_str());
                let r = poll_until(
                    format!("etcd on {node} to report {n} healthy members"),
                    self.limits(self.opts.timeouts.etcd, self.opts.intervals.etcd),
                    self.opts.timeouts.call,
                    |seen| {
                        self.emit
                            .emit(Phase::Etcd, host, Status::Waiting, seen.to_string())
                    },
                    || async move {
                        let members = match self.apis.nodes.etcd_members(node).await {
                            Ok(m) => m,
                            Err(e) if is_auth(&e) => return Check::Failed(e),
                            Err(e) => return Check::Pending(e.chain()),
                        };
                        let mut names: Vec<&str> = members
                            .iter()
                            .filter(|m| !m.is_learner)
                            .map(|m| m.hostname.as_str())
                            .collect();
                        names.sort();
                        let have: BTreeSet<&str> = names.iter().copied().collect();
                        if !want.is_subset(&have) {
                            let missing: Vec<&str> = want.difference(&have).copied().collect();
                            return Check::Pending(format!(
                                "{} members ({}); missing {}",
                                names.len(),
                                names.join(", "),
                                missing.join(", ")
                            ));
                        }
                        match self.apis.nodes.etcd_status(node).await {
                            Ok(s) if s.errors.is_empty() && s.leader != 0 => Check::Done(()),
                            Ok(s) if s.leader == 0 => {
                                Check::Pending(format!("{} members, no leader", names.len()))
                            }
                            Ok(s) => Check::Pending(format!(
                                "{} members, errors: {}",
                                names.len(),
                                s.errors.join("; ")
                            )),
                            Err(e) => Check::Pending(e.chain()),
                        }
                    },
                )
                .await;
                match r {
                    Ok(()) => {
                        self.emit.emit(
                            Phase::Etcd,
                            host,
                            Status::Done,
                            format!("{n} healthy members"),
                        );
                        Ok(())
                    }
                    Err(WaitError::TimedOut(t)) => {
                        self.emit
                            .emit(Phase::Etcd, host, Status::Failed, t.to_string());
                        Err(t.into())
                    }
                    Err(WaitError::Failed(e)) => Err(DeployError::Node {
                        step: "etcd",
                        source: e,
                    }),
                }
            })
            .buffered(self.opts.concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        self.step(
            Phase::Etcd,
            None,
            format!("{n} healthy etcd members"),
            since,
        );
        Ok(())
    }

    // ------------------------------------------------------------ 5. kubeconfig

    async fn fetch_kubeconfig(&self, preferred: &str) -> Result<SecretString, DeployError> {
        let mut order: Vec<&NodeRef> = self
            .desired
            .control_planes()
            .map(|d| &d.node)
            .filter(|n| n.hostname == preferred)
            .collect();
        order.extend(
            self.desired
                .control_planes()
                .map(|d| &d.node)
                .filter(|n| n.hostname != preferred),
        );
        let order = &order;
        let r = poll_until(
            "a control-plane node to hand out the admin kubeconfig",
            self.limits(self.opts.timeouts.kubeconfig, self.opts.intervals.apid),
            self.opts.timeouts.call * u32::try_from(order.len().max(1)).unwrap_or(1),
            |seen| {
                self.emit
                    .emit(Phase::Kubeconfig, None, Status::Waiting, seen.to_string())
            },
            || async move {
                let mut last = Vec::new();
                for n in order {
                    match self.apis.nodes.kubeconfig(n).await {
                        Ok(k) => return Check::Done(k),
                        Err(e) if is_auth(&e) => return Check::Failed(e),
                        Err(e) => last.push(e.chain()),
                    }
                }
                Check::Pending(last.join("; "))
            },
        )
        .await;
        match r {
            Ok(k) => Ok(k),
            Err(WaitError::TimedOut(t)) => Err(t.into()),
            Err(WaitError::Failed(e)) => Err(DeployError::Node {
                step: "kubeconfig",
                source: e,
            }),
        }
    }

    async fn kubeconfig(&self) -> Result<SecretString, DeployError> {
        let since = self.emit.elapsed();
        match &self.plan.kubeconfig {
            KubeconfigPlan::Unchanged { output, .. } => {
                self.emit.emit(
                    Phase::Kubeconfig,
                    None,
                    Status::Skipped,
                    format!("already written ({output}); fetching a copy for the next steps"),
                );
                let preferred = self
                    .state_snapshot()
                    .bootstrap
                    .completed
                    .map(|m| m.node)
                    .unwrap_or_default();
                self.fetch_kubeconfig(&preferred).await
            }
            KubeconfigPlan::Fetch { from, output } => {
                self.emit.emit(
                    Phase::Kubeconfig,
                    Some(from),
                    Status::Started,
                    "fetching the admin kubeconfig",
                );
                let k = self.fetch_kubeconfig(from).await?;
                match output {
                    KubeconfigOutput::Merge { path, context } => {
                        kubeconfig::merge_into_file(path, &k, context)?
                    }
                    KubeconfigOutput::Write { path } => kubeconfig::write_file(path, &k)?,
                }
                let at = self.now();
                self.record(|s| {
                    s.kubeconfig = Some(KubeconfigRecord {
                        path: output.path().clone(),
                        context: output.context().map(str::to_string),
                        at,
                    });
                })?;
                let text = format!("kubeconfig: {output} (mode 0600)");
                self.emit
                    .emit(Phase::Kubeconfig, None, Status::Done, text.clone());
                self.step(Phase::Kubeconfig, None, text, since);
                Ok(k)
            }
        }
    }

    // ------------------------------------------------------------ 6. kubernetes

    async fn kubernetes(
        &self,
        kubeconfig: &SecretString,
    ) -> Result<std::sync::Arc<dyn KubeApi>, DeployError> {
        let since = self.emit.elapsed();
        let kube = self
            .apis
            .kube
            .connect(kubeconfig)
            .map_err(|source| DeployError::Kube {
                step: "kubernetes",
                source,
            })?;
        let api = kube.as_ref();
        self.emit.emit(
            Phase::Kubernetes,
            None,
            Status::Started,
            "waiting for the Kubernetes API (/readyz)",
        );
        let r = poll_until(
            "the Kubernetes API to answer /readyz with ok",
            self.limits(
                self.opts.timeouts.kubernetes_api,
                self.opts.intervals.kubernetes,
            ),
            self.opts.timeouts.call,
            |seen| {
                self.emit
                    .emit(Phase::Kubernetes, None, Status::Waiting, seen.to_string())
            },
            || async move {
                match api.readyz().await {
                    Ok(r) if r.ok => Check::Done(()),
                    Ok(r) => Check::Pending(format!("not ready: {}", r.detail)),
                    Err(e) if e.kind.is_transient() => Check::Pending(e.to_string()),
                    Err(e) => Check::Failed(e),
                }
            },
        )
        .await;
        self.kube_wait_result(r)?;
        self.emit
            .emit(Phase::Kubernetes, None, Status::Done, "the API is ready");

        let want: Vec<&str> = self
            .desired
            .nodes()
            .iter()
            .map(|d| d.node.hostname.as_str())
            .collect();
        let want = &want;
        let total = want.len();
        let r = poll_until(
            format!("all {total} nodes to register with Kubernetes and be Ready"),
            self.limits(
                self.opts.timeouts.nodes_ready,
                self.opts.intervals.kubernetes,
            ),
            self.opts.timeouts.call,
            |seen| {
                self.emit
                    .emit(Phase::Kubernetes, None, Status::Waiting, seen.to_string())
            },
            || async move {
                let nodes = match api.nodes().await {
                    Ok(n) => n,
                    Err(e) if e.kind.is_transient() => return Check::Pending(e.to_string()),
                    Err(e) => return Check::Failed(e),
                };
                let mut not_ready = Vec::new();
                for h in want {
                    match nodes.iter().find(|n| n.name == *h) {
                        None => not_ready.push(format!("{h} (not registered)")),
                        Some(n) if n.ready == Some(true) => {}
                        Some(n) => not_ready.push(format!(
                            "{h} ({})",
                            if n.ready_message.is_empty() {
                                "not Ready".to_string()
                            } else {
                                n.ready_message.clone()
                            }
                        )),
                    }
                }
                if not_ready.is_empty() {
                    Check::Done(())
                } else {
                    Check::Pending(format!(
                        "{} of {total} nodes Ready; waiting for {}",
                        total - not_ready.len(),
                        not_ready.join(", ")
                    ))
                }
            },
        )
        .await;
        self.kube_wait_result(r)?;
        let text = format!("all {total} nodes registered and Ready");
        self.emit
            .emit(Phase::Kubernetes, None, Status::Done, text.clone());
        self.step(Phase::Kubernetes, None, text, since);
        Ok(kube)
    }

    fn kube_wait_result(&self, r: Result<(), WaitError<KubeError>>) -> Result<(), DeployError> {
        match r {
            Ok(()) => Ok(()),
            Err(WaitError::TimedOut(t)) => {
                self.emit
                    .emit(Phase::Kubernetes, None, Status::Failed, t.to_string());
                Err(t.into())
            }
            Err(WaitError::Failed(source)) => Err(DeployError::Kube {
                step: "kubernetes",
                source,
            }),
        }
    }

    // ------------------------------------------------------------ 7. manifests

    async fn manifests(&self, kube: &dyn KubeApi) -> Result<(), DeployError> {
        let since = self.emit.elapsed();
        match &self.plan.manifests {
            ManifestsPlan::None => return Ok(()),
            ManifestsPlan::Unchanged { objects, .. } => {
                self.emit.emit(
                    Phase::Manifests,
                    None,
                    Status::Skipped,
                    format!("already applied: {}", objects.join(", ")),
                );
                return Ok(());
            }
            ManifestsPlan::Apply { .. } => {}
        }
        let total = self.desired.manifests.len();
        let mut failures = Vec::new();
        for m in &self.desired.manifests {
            let id = m.id();
            let manager = self.opts.field_manager.as_str();
            let r = poll_until(
                format!("server-side apply of {id} to succeed"),
                self.limits(self.opts.timeouts.manifests, self.opts.intervals.manifests),
                self.opts.timeouts.call,
                |seen| {
                    self.emit
                        .emit(Phase::Manifests, None, Status::Waiting, seen.to_string())
                },
                || async move {
                    match kube.server_side_apply(&m.object, manager).await {
                        Ok(_) => Check::Done(()),
                        Err(e) if e.kind.is_transient() => Check::Pending(e.to_string()),
                        Err(e) => Check::Failed(e),
                    }
                },
            )
            .await;
            match r {
                Ok(()) => self.emit.emit(
                    Phase::Manifests,
                    None,
                    Status::Done,
                    format!("applied {id}"),
                ),
                Err(WaitError::TimedOut(t)) => failures.push(t.to_string()),
                Err(WaitError::Failed(e)) => {
                    failures.push(crate::api::error_chain(&e));
                }
            }
        }
        if !failures.is_empty() {
            return Err(DeployError::Manifests { failures, total });
        }
        let at = self.now();
        let objects: Vec<String> = self.desired.manifests.iter().map(|m| m.id()).collect();
        let fingerprint = manifests_fingerprint(&self.desired.manifests);
        self.record(|s| {
            s.manifests = Some(ManifestsRecord {
                fingerprint,
                objects,
                at,
            });
        })?;
        self.step(
            Phase::Manifests,
            None,
            format!("applied {total} objects"),
            since,
        );
        Ok(())
    }

    // ------------------------------------------------------------ 8. tuning

    /// Verifies the nodes' tuning, `concurrency` nodes at a time; reports in plan order.
    async fn tuning(&self, kube: &dyn KubeApi) -> Result<Vec<NodeTuning>, DeployError> {
        let outcomes: Vec<Result<Option<NodeTuningOutcome>, DeployError>> =
            futures::stream::iter(&self.plan.tuning)
                .map(|t| self.tune_node(t, kube))
                .buffered(self.opts.concurrency.max(1))
                .collect()
                .await;
        let mut results = Vec::new();
        let mut mismatches = Vec::new();
        for o in outcomes {
            if let Some((result, m)) = o? {
                results.push(result);
                mismatches.extend(m);
            }
        }
        if !mismatches.is_empty() {
            return Err(DeployError::Tuning {
                mismatches,
                results,
            });
        }
        Ok(results)
    }

    /// One node's tuning: the result and its mismatches, `None` when there is nothing to
    /// verify.
    async fn tune_node(
        &self,
        t: &crate::plan::TuningPlan,
        kube: &dyn KubeApi,
    ) -> Result<Option<NodeTuningOutcome>, DeployError> {
        let host = Some(t.node.as_str());
        if t.action == TuningAction::Unchanged {
            self.emit
                .emit(Phase::Tuning, host, Status::Skipped, "verified before");
            return Ok(None);
        }
        let Some(d) = self.desired.node(&t.node) else {
            return Ok(None);
        };
        let since = self.emit.elapsed();
        let node = &d.node;
        let checks = &t.checks;
        let r = poll_until(
            format!("{node} to serve what the tuning checks read"),
            self.limits(self.opts.timeouts.tuning, self.opts.intervals.tuning),
            self.opts.timeouts.call * 3,
            |seen| {
                self.emit
                    .emit(Phase::Tuning, host, Status::Waiting, seen.to_string())
            },
            || async move {
                match tuning::verify_node(self.apis.nodes, node, checks, Some(kube)).await {
                    Ok(r) => Check::Done(r),
                    Err(Unavailable::Transient(s)) => Check::Pending(s),
                    Err(Unavailable::Fatal(e)) => Check::Failed(e),
                }
            },
        )
        .await;
        let result = match r {
            Ok(r) => r,
            Err(WaitError::TimedOut(t)) => return Err(t.into()),
            Err(WaitError::Failed(e)) => {
                return Err(DeployError::Node {
                    step: "tuning",
                    source: e,
                });
            }
        };
        let mut mismatches = Vec::new();
        if result.passed() {
            let at = self.now();
            let fingerprint = t.fingerprint.clone();
            self.record(|s| {
                s.tuning
                    .insert(t.node.clone(), TuningRecord { fingerprint, at });
            })?;
            let text = format!("{} checks passed", result.checks.len());
            self.emit
                .emit(Phase::Tuning, host, Status::Done, text.clone());
            self.step(Phase::Tuning, host, text, since);
        } else {
            for c in result.checks.iter().filter(|c| !c.passed) {
                let text = format!("{}: {c}", t.node);
                self.emit
                    .emit(Phase::Tuning, host, Status::Failed, text.clone());
                mismatches.push(text);
            }
        }
        Ok(Some((result, mismatches)))
    }
}
