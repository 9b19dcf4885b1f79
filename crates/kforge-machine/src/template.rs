//! The Go templates talhelper evaluates, through kforge's Go-template engine: node labels
//! and annotations, `@file` patches and `extraManifests` see the node's v1alpha1 document
//! (Go field names such as `.MachineConfig.MachineInstall.InstallImage`); file-name and
//! installer-URL templates see plain data (`.ClusterName`, `.ID`, …).
//!
//! Output is plain text. talhelper renders with Go's `html/template`, which would turn `'`,
//! `"`, `&`, `<`, `>` into HTML entities inside YAML; kforge deliberately does not.

use kforge_yaml::Value;

use crate::gotemplate::{Data, Escape, Template};

/// Renders against a v1alpha1 document addressed with Go field names.
pub fn render(template: &str, config: &Value) -> Result<String, String> {
    Template::parse(template)
        .and_then(|t| t.render(Data::TalosConfig(config), Escape::None))
        .map_err(|e| e.to_string())
}

/// Renders against plain data whose keys are used as written.
pub fn render_plain(template: &str, data: &Value) -> Result<String, String> {
    Template::parse(template)
        .and_then(|t| t.render(Data::Plain(data), Escape::None))
        .map_err(|e| e.to_string())
}
