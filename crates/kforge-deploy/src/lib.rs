//! kforge-deploy: the engine behind `kforge up`, `kforge plan`, `kforge health` and
//! `kforge drill failover`.
//!
//! - [`desired`]: the cluster to build (configs, roles, manifests, tuning expectations).
//! - [`observe`] + [`plan`]: look at the nodes, then compute a [`plan::Plan`] — a pure,
//!   deterministic, printable and serializable value.
//! - [`execute`]: run a plan through the [`api::NodeApi`] / [`api::KubeApi`] traits with
//!   bounded waits, recording progress in the [`state`] file so a rerun resumes.
//! - [`health`]: Talos's health checks in Talos's order, with a report.
//! - [`drill`]: the control-plane failover drill.
//! - [`talos`] and [`kube_http`]: the real implementations of the traits; `fake` (feature
//!   `fake`): in-process fakes for tests.
//! - [`event`]: typed progress events; [`kubeconfig`]: merging kubeconfig files.
//!
//! Architecture invariants: planning does no I/O; every wait has a deadline and names the
//! node and step when it gives up; etcd is bootstrapped at most once per cluster (state
//! marker + member checks); configs and keys never reach events, errors or the state file.

pub mod api;
pub mod desired;
pub mod drill;
pub mod event;
pub mod execute;
#[cfg(feature = "fake")]
pub mod fake;
pub mod health;
pub mod kube_http;
pub mod kubeconfig;
pub mod observe;
pub mod plan;
pub mod redact;
pub mod state;
pub mod talos;
pub mod tuning;
pub mod wait;

pub use api::{KubeApi, KubeConnector, NodeApi};
pub use desired::{DesiredCluster, DesiredNode, NodeRef, Role};
pub use drill::{DrillError, DrillOptions, DrillReport, drill_failover};
pub use event::{Event, EventSink, LineFormat, LineSink, Phase, Status};
pub use execute::{
    Apis, DeployError, ExecuteOptions, ExecuteReport, UpOptions, execute, plan_cluster, up,
};
pub use health::{HealthError, HealthOptions, HealthReport, health};
pub use plan::{KubeconfigOutput, Plan, PlanOptions, plan};
pub use state::{DeployState, FileStateStore, StateStore};
