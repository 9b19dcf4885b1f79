//! `kforge schema`: the JSON schema of the cluster file, generated from kforge's own types,
//! for editors (`# yaml-language-server: $schema=…`). Objects reject unknown keys so editors
//! flag typos; profile entries list the known profiles and their parameters.

use anyhow::Result;
use serde_json::{Value, json};

use crate::Outcome;

/// The schema as pretty JSON with a trailing newline (what `schema/kforge.schema.json` holds).
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(kforge_spec::model::ClusterFile);
    let mut value = serde_json::to_value(&schema).unwrap_or(Value::Null);
    close_objects(&mut value);
    describe_profiles(&mut value);
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// Every object schema with listed properties and no rule for others gets
/// `additionalProperties: false`.
fn close_objects(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (_, child) in m.iter_mut() {
                close_objects(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// Lists the known profiles in `ProfileRef.name` and describes their parameters.
fn describe_profiles(v: &mut Value) {
    let Some(profile) = v.pointer_mut("/$defs/ProfileRef") else {
        return;
    };
    let names: Vec<&str> = kforge_machine::profile::REGISTRY
        .iter()
        .map(|p| p.name())
        .collect();
    let mut props = serde_json::Map::new();
    props.insert(
        "name".into(),
        json!({"type": "string", "enum": names, "description": "The profile."}),
    );
    for p in kforge_machine::profile::REGISTRY {
        for param in p.parameters() {
            props.insert(param.name.into(), json!({"description": format!("{} ({}; default `{}`)", param.doc, p.name(), param.default)}));
        }
    }
    if let Value::Object(m) = profile {
        m.insert("type".into(), json!("object"));
        m.insert("properties".into(), Value::Object(props));
        m.insert("required".into(), json!(["name"]));
        m.insert("additionalProperties".into(), Value::Bool(false));
    }
}

pub fn run() -> Result<Outcome> {
    print!("{}", schema_json());
    Ok(Outcome::Success)
}
