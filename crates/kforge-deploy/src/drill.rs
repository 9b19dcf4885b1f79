//! `kforge drill failover`: take one control-plane node's etcd and API server down on
//! purpose and prove the cluster keeps working, then bring it back and prove it rejoins.
//!
//! 1. **precheck** (refuses when the cluster could lose quorum): at least 3 control-plane
//!    nodes, every one a healthy etcd member with a leader, every control-plane node in
//!    the member list, `/readyz` ok; the target is `--node` or the current VIP owner
//!    ([`NodeApi::holds_vip`]).
//! 2. **stop** the services on the target (default `kube-apiserver`, then `etcd`) and wait
//!    until the node reports them stopped.
//! 3. **failover**: the other members keep a leader (EtcdStatus, all agreeing, leader not
//!    the target); the VIP moves to another control-plane node; `/readyz` through the
//!    cluster endpoint answers ok.
//! 4. **write**: server-side apply of ConfigMap `default/kforge-drill` through the
//!    endpoint, read back.
//! 5. **restore**: start the services again (reverse order), wait until Running.
//! 6. **rejoin**: the target's etcd member is healthy (EtcdStatus without errors, a
//!    leader, listed as a voting member by another node) and its API server answers
//!    `/readyz` on the node's own address.
//!
//! Every phase has a deadline; the report has each phase's duration. If anything fails
//! after the services were stopped, kforge starts them again before returning the error.
//!
//! On real Talos the API server is a static pod, not a Talos service, so `kube-apiserver`
//! cannot be stopped through ServiceStop; pass `services: ["etcd"]` there (the API server
//! then fails its readiness on that node, which the drill observes the same way).

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

use crate::api::{KubeApi, NodeApi, ServiceAction};
use crate::desired::{NodeRef, Role};
use crate::event::{Emitter, EventSink, Phase, Status};
use crate::wait::{Check, WaitError, WaitLimits, human, poll_until};

#[derive(Clone, Debug)]
pub struct DrillOptions {
    /// The control-plane node to take down (hostname); default: the VIP owner.
    pub node: Option<String>,
    /// The shared VIP (e.g. from `endpoint: https://10.0.1.10:6443`); used to pick the
    /// target and to prove the VIP moves.
    pub vip: Option<String>,
    /// Services stopped in this order and started in reverse.
    pub services: Vec<String>,
    /// Deadline of each phase.
    pub phase_timeout: Duration,
    /// Deadline of the rejoin phase (etcd catching up can take longer).
    pub rejoin_timeout: Duration,
    /// The longest pause between probes (the first ones come after 200 ms).
    pub interval: Duration,
    pub call_timeout: Duration,
    pub field_manager: String,
    pub now: fn() -> SystemTime,
}

impl Default for DrillOptions {
    fn default() -> Self {
        DrillOptions {
            node: None,
            vip: None,
            services: vec!["kube-apiserver".into(), "etcd".into()],
            phase_timeout: Duration::from_secs(120),
            rejoin_timeout: Duration::from_secs(300),
            interval: Duration::from_secs(2),
            call_timeout: Duration::from_secs(10),
            field_manager: "kforge".into(),
            now: SystemTime::now,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DrillPhase {
    pub name: &'static str,
    #[serde(rename = "duration_ms", serialize_with = "ms")]
    pub duration: Duration,
    pub detail: String,
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DrillReport {
    pub target: String,
    pub vip_owner_before: Option<String>,
    pub vip_owner_after: Option<String>,
    pub phases: Vec<DrillPhase>,
    #[serde(rename = "duration_ms", serialize_with = "ms")]
    pub duration: Duration,
}

impl fmt::Display for DrillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Failover drill on {}", self.target)?;
        if let (Some(b), Some(a)) = (&self.vip_owner_before, &self.vip_owner_after) {
            writeln!(f, "VIP moved from {b} to {a}")?;
        }
        let w = self
            .phases
            .iter()
            .map(|p| p.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(f, "{:<w$}  {:>8}  DETAIL", "PHASE", "TIME")?;
        for p in &self.phases {
            writeln!(
                f,
                "{:<w$}  {:>8}  {}",
                p.name,
                format!("{:.1}s", p.duration.as_secs_f64()),
                p.detail
            )?;
        }
        write!(f, "passed in {:.1}s", self.duration.as_secs_f64())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("refusing the failover drill: {}", .reasons.join("; "))]
    Refused { reasons: Vec<String> },
    #[error(
        "the failover drill failed in phase `{phase}`: {message}{}",
        match .restored {
            Some(true) => "; the stopped services were started again",
            Some(false) => "; starting the stopped services again FAILED, check the node",
            None => "",
        }
    )]
    Failed {
        phase: &'static str,
        message: String,
        /// Whether the services were restarted (None: they were never stopped).
        restored: Option<bool>,
        /// Phases completed before the failure.
        phases: Vec<DrillPhase>,
    },
}

struct Drill<'a> {
    nodes: &'a [NodeRef],
    api: &'a dyn NodeApi,
    kube: &'a dyn KubeApi,
    opts: &'a DrillOptions,
    emit: Emitter<'a>,
}

impl Drill<'_> {
    fn cps(&self) -> Vec<&NodeRef> {
        self.nodes
            .iter()
            .filter(|n| n.role == Role::ControlPlane)
            .collect()
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, crate::api::ApiError>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.opts.call_timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.chain()),
            Err(_) => Err(format!(
                "no answer within {}",
                human(self.opts.call_timeout)
            )),
        }
    }

    async fn kube_bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, crate::api::KubeError>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.opts.call_timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(crate::api::error_chain(&e)),
            Err(_) => Err(format!(
                "no answer within {}",
                human(self.opts.call_timeout)
            )),
        }
    }

    /// The control-plane nodes holding `vip` right now.
    async fn vip_holders(&self, vip: &str) -> Vec<String> {
        let mut out = Vec::new();
        for cp in self.cps() {
            if let Ok(true) = self.bounded(self.api.holds_vip(cp, vip)).await {
                out.push(cp.hostname.clone());
            }
        }
        out
    }

    async fn wait<T>(
        &self,
        what: String,
        timeout: Duration,
        probe: impl AsyncFnMut() -> Check<T, String>,
    ) -> Result<T, String> {
        let r: Result<T, WaitError<String>> = poll_until(
            what,
            // Fast first probes: the drill reports how long failover took, and a fixed
            // interval would add up to a whole interval to every phase.
            WaitLimits::adaptive(timeout, Duration::from_millis(200), self.opts.interval),
            self.opts.call_timeout * 4,
            |seen| {
                self.emit
                    .emit(Phase::Drill, None, Status::Waiting, seen.to_string())
            },
            probe,
        )
        .await;
        match r {
            Ok(v) => Ok(v),
            Err(WaitError::TimedOut(t)) => Err(t.to_string()),
            Err(WaitError::Failed(e)) => Err(e),
        }
    }

    async fn precheck(&self) -> Result<(NodeRef, Option<String>), DrillError> {
        let mut reasons = Vec::new();
        let cps = self.cps();
        if cps.len() < 3 {
            reasons.push(format!(
                "the cluster has {} control-plane node{}; a failover drill needs at least 3, \
                 or losing one loses etcd quorum",
                cps.len(),
                if cps.len() == 1 { "" } else { "s" }
            ));
        }
        let mut members: Option<BTreeSet<String>> = None;
        for cp in &cps {
            match self.bounded(self.api.etcd_status(cp)).await {
                Err(e) => reasons.push(format!("{}: etcd member not healthy: {e}", cp.hostname)),
                Ok(s) if !s.errors.is_empty() => reasons.push(format!(
                    "{}: etcd member reports errors: {}",
                    cp.hostname,
                    s.errors.join("; ")
                )),
                Ok(s) if s.leader == 0 => {
                    reasons.push(format!("{}: etcd member sees no leader", cp.hostname))
                }
                Ok(s) if s.is_learner => {
                    reasons.push(format!("{}: etcd member is still a learner", cp.hostname))
                }
                Ok(_) => {}
            }
            if members.is_none()
                && let Ok(m) = self.bounded(self.api.etcd_members(cp)).await
            {
                members = Some(
                    m.into_iter()
                        .filter(|m| !m.is_learner)
                        .map(|m| m.hostname)
                        .collect(),
                );
            }
        }
        match &members {
            None if !cps.is_empty() => {
                reasons.push("no control-plane node lists the etcd members".into())
            }
            Some(m) => {
                let missing: Vec<&str> = cps
                    .iter()
                    .filter(|c| !m.contains(&c.hostname))
                    .map(|c| c.hostname.as_str())
                    .collect();
                if !missing.is_empty() {
                    reasons.push(format!(
                        "not etcd members: {} (the cluster is not fully formed)",
                        missing.join(", ")
                    ));
                }
            }
            None => {}
        }
        match self.kube_bounded(self.kube.readyz()).await {
            Ok(r) if r.ok => {}
            Ok(r) => reasons.push(format!("the Kubernetes API is not ready: {}", r.detail)),
            Err(e) => reasons.push(format!("the Kubernetes API does not answer: {e}")),
        }

        let vip_owner = match &self.opts.vip {
            Some(vip) => {
                let holders = self.vip_holders(vip).await;
                match holders.as_slice() {
                    [one] => Some(one.clone()),
                    [] => {
                        if self.opts.node.is_none() {
                            reasons.push(format!(
                                "no control-plane node holds the VIP {vip}; hint: pass the node \
                                 to take down"
                            ));
                        }
                        None
                    }
                    many => {
                        reasons.push(format!(
                            "several nodes claim the VIP {vip}: {}",
                            many.join(", ")
                        ));
                        None
                    }
                }
            }
            None => None,
        };
        let target = match (&self.opts.node, &vip_owner) {
            (Some(n), _) => match cps.iter().find(|c| &c.hostname == n) {
                Some(c) => Some((*c).clone()),
                None => {
                    reasons.push(format!(
                        "`{n}` is not a control-plane node; expected one of {}",
                        cps.iter()
                            .map(|c| c.hostname.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    None
                }
            },
            (None, Some(owner)) => cps
                .iter()
                .find(|c| &c.hostname == owner)
                .map(|c| (*c).clone()),
            (None, None) => {
                if self.opts.vip.is_none() {
                    reasons.push(
                        "no target: pass the node to take down or the VIP (its owner is taken \
                         down)"
                            .into(),
                    );
                }
                None
            }
        };
        match (target, reasons.is_empty()) {
            (Some(t), true) => Ok((t, vip_owner)),
            _ => Err(DrillError::Refused { reasons }),
        }
    }

    async fn services_state(&self, node: &NodeRef, running: bool) -> Check<(), String> {
        match self.bounded(self.api.services(node)).await {
            Err(e) => Check::Pending(e),
            Ok(list) => {
                let wrong: Vec<String> = self
                    .opts
                    .services
                    .iter()
                    .filter_map(|id| {
                        let state = list
                            .iter()
                            .find(|s| &s.id == id)
                            .map(|s| s.state.clone())
                            .unwrap_or_else(|| "absent".into());
                        let is_running = state == "Running";
                        (is_running != running).then(|| format!("{id} {state}"))
                    })
                    .collect();
                if wrong.is_empty() {
                    Check::Done(())
                } else {
                    Check::Pending(wrong.join(", "))
                }
            }
        }
    }

    async fn restore(&self, target: &NodeRef) -> Result<(), String> {
        for s in self.opts.services.iter().rev() {
            self.bounded(self.api.service_action(target, s, ServiceAction::Start))
                .await?;
        }
        self.wait(
            format!("{} on {target} to run again", self.opts.services.join(", ")),
            self.opts.phase_timeout,
            async || self.services_state(target, true).await,
        )
        .await
    }
}

/// Runs the drill. `nodes` is every node of the cluster with its role; `kube` talks to the
/// cluster endpoint (the VIP).
pub async fn drill_failover(
    nodes: &[NodeRef],
    api: &dyn NodeApi,
    kube: &dyn KubeApi,
    sink: &dyn EventSink,
    options: &DrillOptions,
) -> Result<DrillReport, DrillError> {
    let d = Drill {
        nodes,
        api,
        kube,
        opts: options,
        emit: Emitter::new(sink),
    };
    let start = Instant::now();
    let mut phases: Vec<DrillPhase> = Vec::new();
    let mut mark = Instant::now();
    let mut done = |name: &'static str, detail: String, phases: &mut Vec<DrillPhase>| {
        let now = Instant::now();
        d.emit.emit(
            Phase::Drill,
            None,
            Status::Done,
            format!("{name}: {detail}"),
        );
        phases.push(DrillPhase {
            name,
            duration: now - mark,
            detail,
        });
        mark = now;
    };

    d.emit.emit(
        Phase::Drill,
        None,
        Status::Started,
        "precheck: is it safe to lose one node?",
    );
    let (target, vip_before) = d.precheck().await?;
    let others: Vec<&NodeRef> = d.cps().into_iter().filter(|c| **c != target).collect();
    done(
        "precheck",
        format!(
            "{} healthy etcd members; target {target}{}",
            others.len() + 1,
            vip_before
                .as_ref()
                .map(|v| format!(" (VIP owner: {v})"))
                .unwrap_or_default()
        ),
        &mut phases,
    );

    // From here on, a failure restarts the services before returning.
    let fail =
        async |phase: &'static str, message: String, phases: Vec<DrillPhase>, stopped: bool| {
            let restored = if stopped {
                d.emit.emit(
                    Phase::Drill,
                    Some(&target.hostname),
                    Status::Failed,
                    format!("{phase}: {message}; starting the services again"),
                );
                Some(d.restore(&target).await.is_ok())
            } else {
                None
            };
            DrillError::Failed {
                phase,
                message,
                restored,
                phases,
            }
        };

    // stop
    d.emit.emit(
        Phase::Drill,
        Some(&target.hostname),
        Status::Started,
        format!("stopping {}", options.services.join(", ")),
    );
    for s in &options.services {
        if let Err(e) = d
            .bounded(api.service_action(&target, s, ServiceAction::Stop))
            .await
        {
            return Err(fail("stop", e, phases, true).await);
        }
    }
    if let Err(e) = d
        .wait(
            format!("{} on {target} to stop", options.services.join(", ")),
            options.phase_timeout,
            async || d.services_state(&target, false).await,
        )
        .await
    {
        return Err(fail("stop", e, phases, true).await);
    }
    done(
        "stop",
        format!(
            "{} stopped on {}",
            options.services.join(", "),
            target.hostname
        ),
        &mut phases,
    );

    // failover: quorum
    let others_ref = &others;
    let target_ref = &target;
    let quorum = d
        .wait(
            format!(
                "the remaining {} etcd members to agree on a leader",
                others.len()
            ),
            options.phase_timeout,
            async || {
                let mut leaders = BTreeSet::new();
                let mut target_id = None;
                for o in others_ref {
                    match d.bounded(api.etcd_status(o)).await {
                        Err(e) => return Check::Pending(format!("{}: {e}", o.hostname)),
                        Ok(s) if !s.errors.is_empty() => {
                            return Check::Pending(format!(
                                "{}: {}",
                                o.hostname,
                                s.errors.join("; ")
                            ));
                        }
                        Ok(s) => {
                            leaders.insert(s.leader);
                        }
                    }
                }
                let Some(first) = others_ref.first() else {
                    return Check::Failed("no other control-plane node".into());
                };
                if let Ok(m) = d.bounded(api.etcd_members(first)).await {
                    target_id = m
                        .iter()
                        .find(|m| m.hostname == target_ref.hostname)
                        .map(|m| m.id);
                }
                match leaders.iter().collect::<Vec<_>>().as_slice() {
                    [0] => Check::Pending("no leader".into()),
                    [l] if Some(**l) == target_id => {
                        Check::Pending("the members still follow the stopped node".into())
                    }
                    [l] => Check::Done(**l),
                    _ => Check::Pending(format!("{} different leaders seen", leaders.len())),
                }
            },
        )
        .await;
    let leader = match quorum {
        Ok(l) => l,
        Err(e) => return Err(fail("failover", e, phases, true).await),
    };
    // failover: VIP
    let mut vip_after = None;
    if let Some(vip) = &options.vip {
        let moved = d
            .wait(
                format!("the VIP {vip} to move to another control-plane node"),
                options.phase_timeout,
                async || {
                    let holders = d.vip_holders(vip).await;
                    match holders.as_slice() {
                        [one] if *one != target_ref.hostname => Check::Done(one.clone()),
                        [] => Check::Pending("no node holds the VIP".into()),
                        other => Check::Pending(format!("held by {}", other.join(", "))),
                    }
                },
            )
            .await;
        match moved {
            Ok(owner) => vip_after = Some(owner),
            Err(e) => return Err(fail("failover", e, phases, true).await),
        }
    }
    // failover: API through the endpoint
    if let Err(e) = d
        .wait(
            "the Kubernetes API to answer through the cluster endpoint".into(),
            options.phase_timeout,
            async || match d.kube_bounded(kube.readyz()).await {
                Ok(r) if r.ok => Check::Done(()),
                Ok(r) => Check::Pending(format!("not ready: {}", r.detail)),
                Err(e) => Check::Pending(e),
            },
        )
        .await
    {
        return Err(fail("failover", e, phases, true).await);
    }
    done(
        "failover",
        format!(
            "etcd leader {leader:016x} among {} members{}; API answers",
            others.len(),
            vip_after
                .as_ref()
                .map(|v| format!("; VIP now on {v}"))
                .unwrap_or_default()
        ),
        &mut phases,
    );

    // write
    let stamp = crate::state::timestamp((options.now)());
    let cm = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kforge-drill", "namespace": "default"},
        "data": {"stoppedNode": target.hostname, "at": stamp},
    });
    let cm_ref = &cm;
    let write = d
        .wait(
            "a write through the Kubernetes API (ConfigMap default/kforge-drill)".into(),
            options.phase_timeout,
            async || {
                if let Err(e) = d
                    .kube_bounded(kube.server_side_apply(cm_ref, &options.field_manager))
                    .await
                {
                    return Check::Pending(e);
                }
                match d
                    .kube_bounded(kube.get("v1", "ConfigMap", Some("default"), "kforge-drill"))
                    .await
                {
                    Ok(Some(v)) if v.get("data") == cm_ref.get("data") => Check::Done(()),
                    Ok(Some(_)) => Check::Pending("read back different data".into()),
                    Ok(None) => Check::Pending("written, but not found when read back".into()),
                    Err(e) => Check::Pending(e),
                }
            },
        )
        .await;
    if let Err(e) = write {
        return Err(fail("write", e, phases, true).await);
    }
    done(
        "write",
        "ConfigMap default/kforge-drill written and read back".into(),
        &mut phases,
    );

    // restore
    if let Err(e) = d.restore(&target).await {
        return Err(DrillError::Failed {
            phase: "restore",
            message: e,
            restored: Some(false),
            phases,
        });
    }
    done(
        "restore",
        format!(
            "{} running on {}",
            options.services.join(", "),
            target.hostname
        ),
        &mut phases,
    );

    // rejoin
    let rejoin = d
        .wait(
            format!("{target} to rejoin etcd and serve the API again"),
            options.rejoin_timeout,
            async || {
                match d.bounded(api.etcd_status(target_ref)).await {
                    Err(e) => return Check::Pending(format!("etcd: {e}")),
                    Ok(s) if !s.errors.is_empty() => {
                        return Check::Pending(format!("etcd: {}", s.errors.join("; ")));
                    }
                    Ok(s) if s.leader == 0 => return Check::Pending("etcd: no leader".into()),
                    Ok(_) => {}
                }
                let Some(first) = others_ref.first() else {
                    return Check::Failed("no other control-plane node".into());
                };
                match d.bounded(api.etcd_members(first)).await {
                    Ok(m)
                        if m.iter()
                            .any(|m| m.hostname == target_ref.hostname && !m.is_learner) => {}
                    Ok(_) => return Check::Pending("not a voting member yet".into()),
                    Err(e) => return Check::Pending(e),
                }
                match d.kube_bounded(kube.readyz_via(&target_ref.address)).await {
                    Ok(r) if r.ok => Check::Done(()),
                    Ok(r) => Check::Pending(format!("API on the node not ready: {}", r.detail)),
                    Err(e) => Check::Pending(format!("API on the node: {e}")),
                }
            },
        )
        .await;
    if let Err(e) = rejoin {
        return Err(DrillError::Failed {
            phase: "rejoin",
            message: e,
            restored: Some(true),
            phases,
        });
    }
    done(
        "rejoin",
        format!(
            "{} is a healthy etcd member and serves the API",
            target.hostname
        ),
        &mut phases,
    );

    Ok(DrillReport {
        target: target.to_string(),
        vip_owner_before: vip_before,
        vip_owner_after: vip_after,
        phases,
        duration: start.elapsed(),
    })
}
