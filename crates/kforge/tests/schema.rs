//! The editor schema: the checked-in copy is what `kforge schema` prints (regenerate with
//! `cargo run -p kforge -- schema > schema/kforge.schema.json`), and every example and talhelper
//! input validates against it, while a typo does not.

mod support;

use support::*;

fn schema() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(repo().join("schema/kforge.schema.json")).unwrap(),
    )
    .unwrap()
}

#[test]
fn checked_in_schema_is_up_to_date() {
    let out = kforge(&repo()).arg("schema").output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let stored = std::fs::read_to_string(repo().join("schema/kforge.schema.json")).unwrap();
    assert!(
        printed == stored,
        "schema/kforge.schema.json is out of date; run `cargo run -p kforge -- schema > schema/kforge.schema.json`"
    );
}

fn validate(path: &std::path::Path) -> Vec<String> {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let doc = kforge_yaml::parse(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .to_value();
    validator
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

#[test]
fn examples_and_talhelper_inputs_validate() {
    for ex in ["solana", "infra", "local"] {
        let errs = validate(&repo().join("examples").join(ex).join("talconfig.yaml"));
        assert!(errs.is_empty(), "{ex}: {errs:#?}");
    }
    for f in [
        "01-repo-example/talconfig.yaml",
        "02-loader-testdata/talconfig.yaml",
        "04-docs-multi-ip/talconfig.yaml",
    ] {
        let errs = validate(&shared().join("oracle/talhelper").join(f));
        assert!(errs.is_empty(), "{f}: {errs:#?}");
    }
}

#[test]
fn typos_are_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("t.yaml");
    std::fs::write(&f, "clusterName: a\nnodes:\n  - hostname: a\n    ipAdress: 1.2.3.4\n    profiles:\n      - name: solana-validator\n        hugepagez: 2\n").unwrap();
    let errs = validate(&f);
    assert_eq!(errs.len(), 2, "{errs:#?}");
}
