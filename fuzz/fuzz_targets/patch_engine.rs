//! The patch engine: a base machine config (YAML documents) and a patch (strategic merge
//! or RFC 6902), separated by the first NUL byte. Loading and applying must return a value
//! or an error, never panic or hang; a patch that applies must leave YAML that emits.

#![no_main]

use kforge_machine::patch::{Patch, apply_patches};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (base, patch) = text
        .split_once('\0')
        .unwrap_or(("version: v1alpha1\nmachine: {}\ncluster: {}\n", text));
    let Ok(docs) = kforge_yaml::parse_all(base) else {
        return;
    };
    let docs: Vec<serde_json::Value> = docs
        .iter()
        .filter(|d| !d.is_null())
        .map(kforge_yaml::Node::to_value)
        .collect();
    let Ok(p) = Patch::parse("fuzz patch", patch) else {
        return;
    };
    if let Ok(out) = apply_patches(docs, &[p.clone(), p]) {
        let _ = kforge_yaml::to_string_multi(&out, kforge_yaml::EmitOptions { indent: 2 });
    }
});
