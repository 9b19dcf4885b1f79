//! Talos machine configuration: the per-version contract, rendering a node's documents,
//! applying patches, performance profiles and node-config validation. Pure: files are read
//! through the caller's `SourceReader`; no other I/O.

pub mod contract;
pub mod gotemplate;
pub mod legacy;
pub mod network;
pub mod nodeconfig;
pub mod patch;
pub mod profile;
pub mod render;
pub mod schematic;
pub mod secrets;
pub mod template;

pub use render::{RenderedNode, render_cluster, render_node};
pub use secrets::{CertAndKey, ClusterSecrets};
