//! The Kubernetes side of a simulated cluster:
//!
//! - [`apiserver`]: a kube-apiserver per control-plane node (TLS from the Kubernetes CA,
//!   client-certificate and bootstrap-token authentication, discovery, health endpoints,
//!   REST for every built-in kind and for custom resources), storing objects in the
//!   node's real etcd through [`store`] with the semantics in [`registry`] and
//!   server-side apply in [`apply`];
//! - [`controllers`]: the parts of kube-controller-manager clients notice (node lifecycle,
//!   kubelet certificate approval and signing);
//! - [`kubelet`]: every node's kubelet (TLS bootstrap, registration, status heartbeat)
//!   and the KubeletConfiguration file, using the small [`client`];
//! - [`resources`] (kinds and discovery), [`meta`] (times, UIDs, Status, selectors),
//!   [`certs`] (serving and kubelet certificates).

pub mod apiserver;
pub mod apply;
pub mod certs;
pub mod client;
pub mod controllers;
pub mod kubelet;
pub mod meta;
pub mod registry;
pub mod resources;
pub mod store;
