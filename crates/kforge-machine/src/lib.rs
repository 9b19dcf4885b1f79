//! Talos machine configuration: the per-version contract, rendering a node's documents,
//! applying patches, performance profiles and node-config validation. Pure: no I/O.

pub mod gotemplate;
pub mod patch;
