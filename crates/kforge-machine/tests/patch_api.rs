//! The patch API beyond the golden cases: format detection, labels, and the structure of
//! errors (every problem of a patch text with its position).

use kforge_machine::patch::{DocumentId, Patch, PatchError, PatchFormat, apply_patch};
use serde_json::json;

#[test]
fn formats_are_detected_like_talos_load_patch() {
    let cases = [
        ("machine:\n  type: worker\n", PatchFormat::StrategicMerge),
        (
            "apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: a\n",
            PatchFormat::StrategicMerge,
        ),
        (
            "- op: add\n  path: /machine/type\n  value: worker\n",
            PatchFormat::Json6902,
        ),
        (
            r#"[{"op": "remove", "path": "/machine/type"}]"#,
            PatchFormat::Json6902,
        ),
        ("[]", PatchFormat::Json6902),
        ("  \n\t\n", PatchFormat::Empty),
        ("# comment only\n", PatchFormat::Empty),
        ("---\n---\n", PatchFormat::Empty),
        ("version: v1alpha1\n", PatchFormat::StrategicMerge),
    ];
    for (text, want) in cases {
        let patch = Patch::parse("p", text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(patch.format(), want, "{text:?}");
        assert_eq!(patch.label(), "p");
    }
}

#[test]
fn every_problem_of_a_patch_is_reported_with_its_position() {
    let text = "machine:\n  type: worker\nmachin: {}\n---\napiVersion: v1alpha1\nkind: LinkConfig\nname: eth0\nmtu:\n  $patch: merge\n";
    let Err(PatchError::Invalid { label, problems }) =
        Patch::parse("inline patch #1 of node cp1", text)
    else {
        panic!("expected an invalid patch");
    };
    assert_eq!(label, "inline patch #1 of node cp1");
    let positions: Vec<(usize, usize)> = problems.iter().map(|p| (p.line, p.column)).collect();
    assert_eq!(positions, vec![(3, 1), (9, 11)], "{problems:?}");
    assert!(
        problems[0].message.contains("did you mean `machine`?"),
        "{}",
        problems[0].message
    );
}

#[test]
fn an_empty_list_json_patch_still_needs_a_single_document() {
    let patch = Patch::parse("p", "[]").expect("loads");
    let single =
        apply_patch(vec![json!({"version": "v1alpha1"})], &patch).expect("single document");
    assert_eq!(single, vec![json!({"version": "v1alpha1"})]);
    let multi = apply_patch(
        vec![
            json!({"version": "v1alpha1"}),
            json!({"apiVersion": "v1alpha1", "kind": "HostnameConfig"}),
        ],
        &patch,
    );
    assert!(
        matches!(
            multi,
            Err(PatchError::Json6902MultiDocument { documents: 2, .. })
        ),
        "{multi:?}"
    );
}

#[test]
fn document_ids() {
    assert_eq!(
        DocumentId::of(&json!({"version": "v1alpha1", "machine": {}})),
        DocumentId::v1alpha1()
    );
    let id = DocumentId::of(
        &json!({"apiVersion": "v1alpha1", "kind": "UserVolumeConfig", "name": "data"}),
    );
    assert_eq!(id.to_string(), "v1alpha1/UserVolumeConfig \"data\"");
    assert!(!id.is_v1alpha1());
}

#[test]
fn patches_apply_in_order_and_later_wins() {
    let a = Patch::parse("a", "machine:\n  install:\n    disk: /dev/sda\n").expect("a");
    let b = Patch::parse("b", "machine:\n  install:\n    disk: /dev/nvme0n1\n").expect("b");
    let out = kforge_machine::patch::apply_patches(vec![json!({"version": "v1alpha1"})], &[a, b])
        .expect("applies");
    assert_eq!(out[0]["machine"]["install"]["disk"], json!("/dev/nvme0n1"));
}
