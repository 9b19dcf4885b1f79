//! YAML as kforge needs it: every node keeps its source span (for `file:line:col`
//! diagnostics), parsing is bounded (depth, node count, alias expansion, size) so hostile
//! input cannot exhaust memory, scalars resolve the way Go's `yaml.v3` resolves them (so
//! values agree with talhelper, Talos and sops), and the emitter writes the same layout as
//! `yaml.v3` for a chosen indent (2 for machine configs, 4 for sops files).
//!
//! The plain data model is [`serde_json::Value`] with insertion order preserved; the spanned
//! model is [`Node`]. Convert with [`Node::to_value`].

mod emit;
mod parse;
mod resolve;
mod span;

pub use emit::{
    EmitNode, EmitOptions, Shape, node_to_string, nodes_to_string, to_string, to_string_multi,
    to_string_with,
};
pub use parse::{
    Entry, Limits, Node, NodeValue, ParseError, parse, parse_all, parse_all_keeping_merge_keys,
    parse_all_with,
};
pub use resolve::{Scalar, resolve_plain};
pub use span::{Pos, Span};

/// The plain, order-preserving YAML value.
pub type Value = serde_json::Value;
/// An order-preserving mapping.
pub type Mapping = serde_json::Map<String, Value>;
