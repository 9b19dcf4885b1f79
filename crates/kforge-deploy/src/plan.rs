//! The plan: what `kforge up` will do, computed before anything changes, from the desired
//! cluster, the observed nodes and the state file. Pure and deterministic (the same inputs
//! give the same plan whatever the order of the cluster file), printable ([`Display`],
//! stable) and serializable (JSON), so `kforge plan` and `--dry-run` cost nothing.
//!
//! Bootstrap rules (the heart of it):
//! - etcd is bootstrapped on exactly one control-plane node: `bootstrapNode` from the
//!   cluster file, else the one with the lowest address;
//! - never when the state file has a bootstrap marker;
//! - never when any reachable control-plane node reports etcd members (someone else
//!   bootstrapped: the plan records that instead);
//! - after a crash between "intent recorded" and "marker written", only on the node of the
//!   intent (the executor checks members again first);
//! - never on a worker (by construction: only control-plane nodes are candidates).
//!
//! [`Display`]: std::fmt::Display

use std::fmt::{self, Write as _};
use std::path::PathBuf;

use serde::Serialize;

use crate::desired::{
    DesiredCluster, DesiredNode, Fingerprint, Role, TuningExpectation, address_order,
    expectations_fingerprint, manifests_fingerprint,
};
use crate::observe::{EtcdObservation, NodeObservation, Observation, RunningConfig};
use crate::redact;
use crate::state::DeployState;

/// Where the admin kubeconfig goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum KubeconfigOutput {
    /// Merged into a kubeconfig file (e.g. `~/.kube/config`) under `context`; other
    /// contexts, users and clusters are kept.
    Merge { path: PathBuf, context: String },
    /// Written as a file of its own.
    Write { path: PathBuf },
}

impl KubeconfigOutput {
    pub fn path(&self) -> &PathBuf {
        match self {
            KubeconfigOutput::Merge { path, .. } | KubeconfigOutput::Write { path } => path,
        }
    }

    pub fn context(&self) -> Option<&str> {
        match self {
            KubeconfigOutput::Merge { context, .. } => Some(context),
            KubeconfigOutput::Write { .. } => None,
        }
    }
}

impl fmt::Display for KubeconfigOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KubeconfigOutput::Merge { path, context } => {
                write!(f, "merge into {} as context `{context}`", path.display())
            }
            KubeconfigOutput::Write { path } => write!(f, "write to {}", path.display()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    pub kubeconfig: KubeconfigOutput,
}

/// Why a node's config is considered applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnchangedBasis {
    /// The node's running config equals the desired one.
    RunningConfig,
    /// The running config could not be read; the state file records this config as applied.
    StateFile,
}

/// What happens to one node's config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum NodeAction {
    /// Insecure ApplyConfiguration to a node in maintenance mode.
    ApplyInsecure { fingerprint: Fingerprint },
    /// Authenticated ApplyConfiguration (mode AUTO); `diff` is redacted (empty when the
    /// running config could not be read).
    ApplyAuthenticated {
        fingerprint: Fingerprint,
        running: Option<Fingerprint>,
        diff: String,
    },
    /// Unreachable now: the executor waits for it (bounded) and then applies the way the
    /// node's mode requires.
    ApplyWhenReachable {
        fingerprint: Fingerprint,
        reason: String,
    },
    Unchanged {
        fingerprint: Fingerprint,
        basis: UnchangedBasis,
    },
    /// Cannot proceed (credentials rejected, foreign node).
    Blocked { reason: String },
}

impl NodeAction {
    pub fn is_change(&self) -> bool {
        !matches!(self, NodeAction::Unchanged { .. })
    }

    fn describe(&self) -> String {
        match self {
            NodeAction::ApplyInsecure { fingerprint } => {
                format!("apply {} (insecure, maintenance mode)", fingerprint.short())
            }
            NodeAction::ApplyAuthenticated {
                fingerprint,
                running,
                ..
            } => match running {
                Some(r) => format!(
                    "apply {} (authenticated, mode auto; running {})",
                    fingerprint.short(),
                    r.short()
                ),
                None => format!(
                    "apply {} (authenticated, mode auto; running config unreadable)",
                    fingerprint.short()
                ),
            },
            NodeAction::ApplyWhenReachable { fingerprint, .. } => {
                format!("wait for the node, then apply {}", fingerprint.short())
            }
            NodeAction::Unchanged { basis, .. } => match basis {
                UnchangedBasis::RunningConfig => "unchanged (runs the desired config)".into(),
                UnchangedBasis::StateFile => "unchanged (per the state file)".into(),
            },
            NodeAction::Blocked { reason } => format!("blocked: {reason}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodePlan {
    pub hostname: String,
    pub address: String,
    pub role: Role,
    /// What was observed, in a few words.
    pub observed: String,
    #[serde(flatten)]
    pub action: NodeAction,
}

/// The bootstrap decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum BootstrapPlan {
    /// Bootstrap etcd on this control-plane node (after checking members once more).
    Bootstrap {
        node: String,
        address: String,
        reason: String,
        /// Resuming after a crash: the state file has an intent but no marker.
        resume: bool,
    },
    /// etcd already has members (bootstrapped by someone else, or the marker was lost):
    /// record the marker, do not call Bootstrap.
    RecordExisting {
        reported_by: String,
        members: Vec<String>,
    },
    /// The state file says it is done.
    Done { node: String, at: String },
    /// Cannot decide safely.
    Blocked { reason: String },
}

impl BootstrapPlan {
    pub fn bootstrap_node(&self) -> Option<&str> {
        match self {
            BootstrapPlan::Bootstrap { node, .. } => Some(node),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum KubeconfigPlan {
    /// Fetch the admin kubeconfig from this control-plane node and write it.
    Fetch {
        from: String,
        output: KubeconfigOutput,
    },
    Unchanged {
        output: KubeconfigOutput,
        at: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum ManifestsPlan {
    /// Server-side apply (field manager `kforge`) of these objects.
    Apply {
        objects: Vec<String>,
        fingerprint: Fingerprint,
    },
    Unchanged {
        objects: Vec<String>,
        at: String,
    },
    /// No profile wants objects.
    None,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TuningAction {
    Verify,
    Unchanged,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TuningPlan {
    pub node: String,
    pub checks: Vec<TuningExpectation>,
    pub action: TuningAction,
    pub fingerprint: Fingerprint,
}

/// What `kforge up` will do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub cluster: String,
    pub nodes: Vec<NodePlan>,
    pub bootstrap: BootstrapPlan,
    pub kubeconfig: KubeconfigPlan,
    pub manifests: ManifestsPlan,
    pub tuning: Vec<TuningPlan>,
    /// Things worth knowing that do not stop the plan.
    pub warnings: Vec<String>,
    /// Problems that stop it; the executor refuses a plan with blockers.
    pub blockers: Vec<String>,
}

impl Plan {
    /// Nothing to change and nothing to record: the cluster matches.
    pub fn is_noop(&self) -> bool {
        self.blockers.is_empty()
            && self.nodes.iter().all(|n| !n.action.is_change())
            && matches!(self.bootstrap, BootstrapPlan::Done { .. })
            && matches!(self.kubeconfig, KubeconfigPlan::Unchanged { .. })
            && matches!(
                self.manifests,
                ManifestsPlan::Unchanged { .. } | ManifestsPlan::None
            )
            && self
                .tuning
                .iter()
                .all(|t| t.action == TuningAction::Unchanged)
    }

    pub fn node(&self, hostname: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.hostname == hostname)
    }

    /// The plan as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Why no plan could be made at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the observation is for another cluster: it lacks node `{hostname}`; hint: observe the \
         nodes of the desired cluster"
    )]
    MissingObservation { hostname: String },
    #[error(
        "the state file belongs to cluster `{found}`, not `{expected}`; hint: each cluster \
         needs its own output directory"
    )]
    OtherCluster { found: String, expected: String },
}

/// Computes the plan. Pure: no I/O, no clock.
pub fn plan(
    desired: &DesiredCluster,
    observed: &Observation,
    state: &DeployState,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    if !state.cluster.is_empty() && state.cluster != desired.name {
        return Err(PlanError::OtherCluster {
            found: state.cluster.clone(),
            expected: desired.name.clone(),
        });
    }
    let mut warnings = Vec::new();
    let mut blockers = Vec::new();
    let mut nodes = Vec::new();
    for d in desired.nodes() {
        let obs =
            observed
                .nodes
                .get(&d.node.hostname)
                .ok_or_else(|| PlanError::MissingObservation {
                    hostname: d.node.hostname.clone(),
                })?;
        let action = node_action(d, obs, state);
        if let NodeAction::Blocked { reason } = &action {
            blockers.push(format!("{}: {reason}", d.node));
        }
        if let NodeAction::ApplyWhenReachable { reason, .. } = &action {
            warnings.push(format!(
                "{} is unreachable ({reason}); kforge will wait for it before applying",
                d.node
            ));
        }
        nodes.push(NodePlan {
            hostname: d.node.hostname.clone(),
            address: d.node.address.clone(),
            role: d.node.role,
            observed: obs.summary(),
            action,
        });
    }

    let bootstrap = bootstrap_decision(desired, observed, state, &mut warnings);
    if let BootstrapPlan::Blocked { reason } = &bootstrap {
        blockers.push(reason.clone());
    }
    let cluster_exists = matches!(
        bootstrap,
        BootstrapPlan::Done { .. } | BootstrapPlan::RecordExisting { .. }
    );

    let kubeconfig = match &state.kubeconfig {
        Some(rec)
            if cluster_exists
                && observed.kubeconfig_present
                && &rec.path == options.kubeconfig.path()
                && rec.context.as_deref() == options.kubeconfig.context() =>
        {
            KubeconfigPlan::Unchanged {
                output: options.kubeconfig.clone(),
                at: rec.at.clone(),
            }
        }
        _ => KubeconfigPlan::Fetch {
            from: kubeconfig_source(desired, observed, state, &bootstrap),
            output: options.kubeconfig.clone(),
        },
    };

    let objects: Vec<String> = desired.manifests.iter().map(|m| m.id()).collect();
    let manifests = if desired.manifests.is_empty() {
        ManifestsPlan::None
    } else {
        let fingerprint = manifests_fingerprint(&desired.manifests);
        match &state.manifests {
            Some(rec) if rec.fingerprint == fingerprint && cluster_exists => {
                ManifestsPlan::Unchanged {
                    objects,
                    at: rec.at.clone(),
                }
            }
            _ => ManifestsPlan::Apply {
                objects,
                fingerprint,
            },
        }
    };

    let tuning = desired
        .nodes()
        .iter()
        .filter(|d| !d.expectations.is_empty())
        .map(|d| {
            let fingerprint = expectations_fingerprint(&d.expectations);
            let config_unchanged = nodes
                .iter()
                .any(|n| n.hostname == d.node.hostname && !n.action.is_change());
            let verified = state
                .tuning
                .get(&d.node.hostname)
                .is_some_and(|t| t.fingerprint == fingerprint);
            TuningPlan {
                node: d.node.hostname.clone(),
                checks: d.expectations.clone(),
                action: if verified && config_unchanged {
                    TuningAction::Unchanged
                } else {
                    TuningAction::Verify
                },
                fingerprint,
            }
        })
        .collect();

    Ok(Plan {
        cluster: desired.name.clone(),
        nodes,
        bootstrap,
        kubeconfig,
        manifests,
        tuning,
        warnings,
        blockers,
    })
}

fn node_action(d: &DesiredNode, obs: &NodeObservation, state: &DeployState) -> NodeAction {
    let fingerprint = d.fingerprint().clone();
    match obs {
        NodeObservation::Unreachable(reason) => NodeAction::ApplyWhenReachable {
            fingerprint,
            reason: reason.clone(),
        },
        NodeObservation::Rejected(reason) => NodeAction::Blocked {
            reason: reason.clone(),
        },
        NodeObservation::Maintenance => NodeAction::ApplyInsecure { fingerprint },
        NodeObservation::Configured { running, .. } => match running {
            RunningConfig::Known(text) => {
                if redact::same_config(text.expose(), d.config().expose()) {
                    NodeAction::Unchanged {
                        fingerprint,
                        basis: UnchangedBasis::RunningConfig,
                    }
                } else {
                    NodeAction::ApplyAuthenticated {
                        running: Some(Fingerprint::of(text.as_bytes())),
                        diff: redact::config_diff(
                            text.expose(),
                            d.config().expose(),
                            &format!("{} (running)", d.node.hostname),
                            &format!("{} (desired)", d.node.hostname),
                        ),
                        fingerprint,
                    }
                }
            }
            RunningConfig::Unreadable(_) => {
                let recorded = state
                    .nodes
                    .get(&d.node.hostname)
                    .is_some_and(|r| r.fingerprint == fingerprint);
                if recorded {
                    NodeAction::Unchanged {
                        fingerprint,
                        basis: UnchangedBasis::StateFile,
                    }
                } else {
                    NodeAction::ApplyAuthenticated {
                        fingerprint,
                        running: None,
                        diff: String::new(),
                    }
                }
            }
        },
    }
}

fn bootstrap_decision(
    desired: &DesiredCluster,
    observed: &Observation,
    state: &DeployState,
    warnings: &mut Vec<String>,
) -> BootstrapPlan {
    let reports: Vec<(&DesiredNode, &Vec<String>)> = desired
        .control_planes()
        .filter_map(|cp| match observed.nodes.get(&cp.node.hostname) {
            Some(NodeObservation::Configured {
                etcd: EtcdObservation::Members(m),
                ..
            }) if !m.is_empty() => Some((cp, m)),
            _ => None,
        })
        .collect();

    if let Some(marker) = &state.bootstrap.completed {
        let any_reachable_cp = desired.control_planes().any(|cp| {
            matches!(
                observed.nodes.get(&cp.node.hostname),
                Some(NodeObservation::Configured { .. })
            )
        });
        if reports.is_empty() && any_reachable_cp {
            warnings.push(format!(
                "the state file says etcd was bootstrapped on {} at {}, but no control-plane \
                 node reports etcd members now; kforge will not bootstrap again (if the \
                 cluster was reset on purpose, remove the state file)",
                marker.node, marker.at
            ));
        }
        return BootstrapPlan::Done {
            node: marker.node.clone(),
            at: marker.at.clone(),
        };
    }

    if let Some((cp, members)) = reports.first() {
        return BootstrapPlan::RecordExisting {
            reported_by: cp.node.hostname.clone(),
            members: (*members).clone(),
        };
    }

    let rejected: Vec<String> = desired
        .control_planes()
        .filter(|cp| {
            matches!(
                observed.nodes.get(&cp.node.hostname),
                Some(NodeObservation::Rejected(_))
            )
        })
        .map(|cp| cp.node.to_string())
        .collect();
    if !rejected.is_empty() {
        return BootstrapPlan::Blocked {
            reason: format!(
                "cannot tell whether etcd is already bootstrapped: {} rejected kforge's \
                 credentials",
                rejected.join(", ")
            ),
        };
    }

    for cp in desired.control_planes() {
        match observed.nodes.get(&cp.node.hostname) {
            Some(NodeObservation::Unreachable(_)) => warnings.push(format!(
                "{} is unreachable, so its etcd membership is unknown; members are checked on \
                 every reachable control-plane node again right before bootstrapping",
                cp.node
            )),
            Some(NodeObservation::Configured {
                etcd: EtcdObservation::Unavailable(_),
                ..
            })
            | Some(NodeObservation::Maintenance)
            | Some(NodeObservation::Configured { .. })
            | Some(NodeObservation::Rejected(_))
            | None => {}
        }
    }

    if let Some(intent) = &state.bootstrap.intent {
        return match desired.node(&intent.node) {
            Some(n) if n.node.is_control_plane() => BootstrapPlan::Bootstrap {
                node: n.node.hostname.clone(),
                address: n.node.address.clone(),
                reason: format!(
                    "the bootstrap started at {} was interrupted before its outcome was recorded",
                    intent.at
                ),
                resume: true,
            },
            _ => BootstrapPlan::Blocked {
                reason: format!(
                    "the state file records a bootstrap started on `{}`, which is not a \
                     control-plane node of this cluster; hint: check the state file and the \
                     cluster file belong together",
                    intent.node
                ),
            },
        };
    }

    let (chosen, reason) = match &desired.bootstrap_node {
        // DesiredCluster guarantees it names a control-plane node.
        Some(b) => (desired.node(b), "bootstrapNode in the cluster file"),
        None => (
            desired
                .control_planes()
                .min_by(|a, b| address_order(&a.node.address, &b.node.address)),
            "lowest control-plane address",
        ),
    };
    match chosen {
        Some(n) if n.node.is_control_plane() => BootstrapPlan::Bootstrap {
            node: n.node.hostname.clone(),
            address: n.node.address.clone(),
            reason: reason.to_string(),
            resume: false,
        },
        _ => BootstrapPlan::Blocked {
            reason: "there is no control-plane node to bootstrap".into(),
        },
    }
}

/// The control-plane node to fetch the kubeconfig from: the bootstrap node, else the
/// marker's node, else the first control-plane node that answers, else the first one.
fn kubeconfig_source(
    desired: &DesiredCluster,
    observed: &Observation,
    state: &DeployState,
    bootstrap: &BootstrapPlan,
) -> String {
    match bootstrap {
        BootstrapPlan::Bootstrap { node, .. } => return node.clone(),
        BootstrapPlan::RecordExisting { reported_by, .. } => return reported_by.clone(),
        BootstrapPlan::Done { .. } | BootstrapPlan::Blocked { .. } => {}
    }
    if let Some(m) = &state.bootstrap.completed
        && desired
            .node(&m.node)
            .is_some_and(|n| n.node.is_control_plane())
    {
        return m.node.clone();
    }
    desired
        .control_planes()
        .find(|cp| {
            matches!(
                observed.nodes.get(&cp.node.hostname),
                Some(NodeObservation::Configured { .. })
            )
        })
        .or_else(|| desired.control_planes().next())
        .map(|cp| cp.node.hostname.clone())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- rendering

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::from("  ");
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Plan for cluster `{}`", self.cluster)?;
        writeln!(f)?;
        writeln!(f, "Nodes")?;
        let mut rows = vec![vec![
            "HOSTNAME".to_string(),
            "ADDRESS".into(),
            "ROLE".into(),
            "OBSERVED".into(),
            "ACTION".into(),
        ]];
        for n in &self.nodes {
            rows.push(vec![
                n.hostname.clone(),
                n.address.clone(),
                n.role.to_string(),
                n.observed.clone(),
                n.action.describe(),
            ]);
        }
        f.write_str(&table(&rows))?;

        writeln!(f)?;
        writeln!(f, "Bootstrap")?;
        match &self.bootstrap {
            BootstrapPlan::Bootstrap {
                node,
                address,
                reason,
                resume,
            } => {
                let verb = if *resume {
                    "resume bootstrapping"
                } else {
                    "bootstrap"
                };
                writeln!(
                    f,
                    "  {verb} etcd on {node} ({address}): {reason}; etcd members are checked on \
                     every control-plane node first"
                )?;
            }
            BootstrapPlan::RecordExisting {
                reported_by,
                members,
            } => writeln!(
                f,
                "  already bootstrapped ({reported_by} reports members {}): record it, do not \
                 bootstrap",
                members.join(", ")
            )?,
            BootstrapPlan::Done { node, at } => {
                writeln!(f, "  done: bootstrapped on {node} at {at} (state file)")?
            }
            BootstrapPlan::Blocked { reason } => writeln!(f, "  blocked: {reason}")?,
        }

        writeln!(f)?;
        writeln!(f, "Kubeconfig")?;
        match &self.kubeconfig {
            KubeconfigPlan::Fetch { from, output } => writeln!(f, "  fetch from {from}, {output}")?,
            KubeconfigPlan::Unchanged { output, at } => {
                writeln!(f, "  unchanged ({output}, done at {at})")?
            }
        }

        writeln!(f)?;
        writeln!(f, "Manifests")?;
        match &self.manifests {
            ManifestsPlan::Apply { objects, .. } => writeln!(
                f,
                "  server-side apply (field manager kforge): {}",
                objects.join(", ")
            )?,
            ManifestsPlan::Unchanged { objects, at } => {
                writeln!(f, "  unchanged: {} (applied at {at})", objects.join(", "))?
            }
            ManifestsPlan::None => writeln!(f, "  none")?,
        }

        writeln!(f)?;
        writeln!(f, "Tuning")?;
        if self.tuning.is_empty() {
            writeln!(f, "  none")?;
        }
        for t in &self.tuning {
            let checks: Vec<String> = t.checks.iter().map(ToString::to_string).collect();
            match t.action {
                TuningAction::Verify => writeln!(f, "  {}: verify {}", t.node, checks.join(", "))?,
                TuningAction::Unchanged => {
                    writeln!(f, "  {}: verified before ({})", t.node, checks.join(", "))?
                }
            }
        }

        if !self.warnings.is_empty() {
            writeln!(f)?;
            writeln!(f, "Warnings")?;
            for w in &self.warnings {
                writeln!(f, "  - {w}")?;
            }
        }
        if !self.blockers.is_empty() {
            writeln!(f)?;
            writeln!(f, "Blockers (nothing will run)")?;
            for b in &self.blockers {
                writeln!(f, "  - {b}")?;
            }
        }

        let diffs: Vec<&str> = self
            .nodes
            .iter()
            .filter_map(|n| match &n.action {
                NodeAction::ApplyAuthenticated { diff, .. } if !diff.is_empty() => {
                    Some(diff.as_str())
                }
                _ => None,
            })
            .collect();
        if !diffs.is_empty() {
            writeln!(f)?;
            writeln!(f, "Config changes (secrets shown as fingerprints)")?;
            for d in diffs {
                f.write_str(d)?;
                if !d.ends_with('\n') {
                    writeln!(f)?;
                }
            }
        }

        writeln!(f)?;
        if !self.blockers.is_empty() {
            writeln!(
                f,
                "Blocked: nothing will run until the {} problem{} above {} fixed.",
                self.blockers.len(),
                if self.blockers.len() == 1 { "" } else { "s" },
                if self.blockers.len() == 1 {
                    "is"
                } else {
                    "are"
                }
            )
        } else if self.is_noop() {
            writeln!(f, "Nothing to do: the cluster matches the desired state.")
        } else {
            let applies = self.nodes.iter().filter(|n| n.action.is_change()).count();
            writeln!(
                f,
                "Summary: {applies} of {} node configs to apply; {}",
                self.nodes.len(),
                match &self.bootstrap {
                    BootstrapPlan::Bootstrap { node, .. } => format!("bootstrap on {node}"),
                    BootstrapPlan::RecordExisting { .. } => "record the existing bootstrap".into(),
                    BootstrapPlan::Done { .. } => "no bootstrap".into(),
                    BootstrapPlan::Blocked { .. } => "bootstrap blocked".into(),
                }
            )
        }
    }
}
