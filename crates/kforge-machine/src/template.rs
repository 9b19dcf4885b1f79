//! The Go templates talhelper evaluates (node labels and annotations, `@file` patches, file
//! name and installer URL templates), through kforge's Go-template engine.

use kforge_yaml::Value;

/// Renders `template` against `data`; the error says what failed and where in the template.
pub fn render(template: &str, data: &Value) -> Result<String, String> {
    crate::gotemplate::render(template, data).map_err(|e| e.to_string())
}
