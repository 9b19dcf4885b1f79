//! Reading and writing each file format sops stores. A store turns text into
//! [`Documents`](crate::tree::Documents) plus the raw metadata, and back.

pub(crate) mod dotenv;
pub(crate) mod json;
pub(crate) mod yaml;

use crate::error::SopsError;
use crate::format::Format;
use crate::metadata::Metadata;
use crate::tree::{Documents, Node, Value};

/// A parsed file: its documents (without the metadata) and the metadata as found.
pub(crate) struct Loaded {
    pub documents: Documents,
    /// YAML/JSON: the value of the first document's top-level `sops` key.
    pub metadata_node: Option<Node>,
    /// dotenv: the `sops_*` entries, prefix removed.
    pub metadata_flat: Option<Vec<(String, String)>>,
    /// Where a `sops` key was found first: (document, line).
    pub metadata_at: Option<(usize, usize)>,
}

pub(crate) fn load(text: &str, format: Format) -> Result<Loaded, SopsError> {
    match format {
        Format::Yaml => yaml::load(text),
        Format::Json => json::load(text),
        Format::Dotenv => dotenv::load(text),
    }
}

/// Writes the documents, with the metadata when encrypting.
pub(crate) fn emit(
    docs: &mut Documents,
    format: Format,
    metadata: Option<&Metadata>,
) -> Result<String, SopsError> {
    let node = metadata.map(|m| Node::new(Value::Map(m.to_items()), 0));
    match format {
        Format::Yaml => Ok(yaml::emit(docs, node.as_ref())),
        Format::Json => json::emit(docs, node.as_ref()),
        Format::Dotenv => dotenv::emit(docs, metadata.map(Metadata::to_flat).as_deref()),
    }
}
