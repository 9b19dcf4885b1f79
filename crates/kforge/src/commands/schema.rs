//! `kforge schema`: the JSON schema of the cluster file, generated from kforge's own types.

use anyhow::Result;

use crate::Outcome;

/// The schema as pretty JSON with a trailing newline (what `schema/` holds).
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(kforge_spec::model::ClusterFile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

pub fn run() -> Result<Outcome> {
    print!("{}", schema_json());
    Ok(Outcome::Success)
}
