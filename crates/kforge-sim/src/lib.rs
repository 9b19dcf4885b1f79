//! A simulated Talos node for kforge's tests and demo: one process per node that speaks the
//! real Talos gRPC API over real TLS, keeps its state in a directory, and runs a real `etcd`
//! on control-plane nodes.
//!
//! - [`settings`]: what a node process is told at start (address, ports, delays, faults).
//! - [`node`]: the node itself — maintenance mode, boot and reboot, apply, bootstrap, etcd
//!   membership, reset, faults — and [`run`] to drive it until SIGTERM/SIGINT.
//! - [`apid`] / [`maintenance`]: the `machine.MachineService` of a configured node (mutual
//!   TLS, roles, apid-style proxying) and of a node in maintenance mode.
//! - [`trustd`]: the token-authenticated CSR signer control-plane nodes run on port 50001,
//!   and the client workers use to obtain their apid certificates.
//! - [`etcd`]: a small etcd v3 client (membership, status, KV, leases, watches) and the
//!   etcd process.
//! - [`k8s`]: a kube-apiserver on every control-plane node (objects in the real etcd),
//!   the controller manager's node lifecycle and kubelet certificate signing, and a
//!   kubelet on every node; [`vip`]: the control plane's VIP, elected through etcd.
//! - [`control`]: the runtime fault-injection socket.
//! - [`harness`]: [`harness::SimCluster`] / [`harness::SimNode`] start whole simulated
//!   clusters (configs rendered by kforge's own crates) for tests and `kforge demo`.

pub mod apid;
pub mod auth;
pub mod command;
pub mod control;
pub mod error;
pub mod etcd;
pub mod harness;
pub mod k8s;
pub mod kernel;
pub mod layout;
pub mod machine_config;
pub mod maintenance;
pub mod node;
pub mod pki;
pub mod services;
pub mod settings;
pub mod transport;
pub mod trustd;
pub mod vip;

pub use error::SimError;
pub use node::{Logger, run};
pub use settings::{Faults, SimSettings};

/// Generated protobuf types and gRPC stubs for etcd's v3 API subset and Talos' trustd API.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    pub mod etcdserverpb {
        include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
    }
    pub mod securityapi {
        include!(concat!(env!("OUT_DIR"), "/securityapi.rs"));
    }
}
