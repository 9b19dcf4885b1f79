//! Talos gRPC API client for kforge, wire-compatible with talosctl.
//!
//! - [`proto`]: prost messages plus tonic clients *and servers* generated from kforge's own
//!   tabulation of the Talos protos (`proto/`), so a simulated node can implement
//!   [`proto::machine::machine_service_server::MachineService`].
//! - [`ConnectionConfig`] / [`TalosClient`]: mutual TLS with the OS CA (Ed25519 client
//!   certs, `ED25519 PRIVATE KEY` PEM label), or insecure maintenance-mode TLS; node
//!   targeting through apid's `node`/`nodes` metadata; per-node results ([`NodeReply`]);
//!   per-call deadlines and bounded retries where Talos expects transient failures.
//! - [`render`] and [`commands`]: plain-text tables and JSON for the `kforge talos …`
//!   operator commands.
//! - [`server_tls`]: rustls server configs and a TLS listener for tonic, shared by tests and
//!   the node simulator.

mod client;
pub mod commands;
mod connection;
mod endpoint;
mod error;
mod kubeconfig;
pub mod proto;
pub mod render;
mod reply;
mod retry;
pub mod server_tls;
mod table;
mod tls;
mod types;

pub use client::{TalosClient, Targets};
pub use connection::{ConnectionConfig, SecurityMode};
pub use endpoint::{ApiEndpoint, DEFAULT_API_PORT};
pub use error::Error;
pub use kubeconfig::extract_kubeconfig;
pub use reply::{NodeError, NodeReply};
pub use retry::RetryPolicy;
pub use types::{
    ActorReply, ApplyConfigurationResult, ApplyMode, ApplyOptions, BootstrapOptions,
    BootstrapOutcome, EtcdMember, EtcdMemberStatus, EtcdMembers, MemInfo, Platform, RebootMode,
    ResetOptions, ServiceAction, ServiceEvent, ServiceHealth, ServiceInfo, ServiceReply,
    UpgradeOptions, UpgradeRebootMode, UpgradeReply, Version, WipeMode,
};

/// Largest gRPC message apid accepts or sends (32 MiB); tonic's default is 4 MiB.
pub const MAX_MESSAGE_SIZE: usize = 32 * 1024 * 1024;
