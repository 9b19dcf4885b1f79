//! Golden patch cases: every directory under `tests/patch_cases/` holds a `base.yaml`, patches
//! `patch*.yaml`/`patch*.json` applied in name order, and either `expected.yaml` (compared as
//! parsed values, with a diff on mismatch) or `expected-error.txt` (every non-empty line must
//! occur in the error message).

use std::fs;
use std::path::{Path, PathBuf};

use kforge_machine::patch::{Patch, apply_patches};
use serde_json::Value;

fn documents(path: &Path) -> Vec<Value> {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    kforge_yaml::parse_all(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .iter()
        .map(kforge_yaml::Node::to_value)
        .filter(|v| !v.is_null())
        .collect()
}

fn run_case(dir: &Path) -> Result<(), String> {
    let base = documents(&dir.join("base.yaml"));
    let mut patch_files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("patch"))
        })
        .collect();
    patch_files.sort();
    if patch_files.is_empty() {
        return Err("no patch files".into());
    }

    let result = (|| {
        let mut patches = Vec::new();
        for file in &patch_files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let text = fs::read_to_string(file).map_err(|e| e.to_string())?;
            patches.push(Patch::parse(format!("patch @{name}"), &text).map_err(|e| e.to_string())?);
        }
        apply_patches(base, &patches).map_err(|e| e.to_string())
    })();

    let expected_error = dir.join("expected-error.txt");
    if expected_error.exists() {
        let want = fs::read_to_string(&expected_error).map_err(|e| e.to_string())?;
        let got = match result {
            Ok(docs) => {
                return Err(format!(
                    "expected an error, got:\n{}",
                    kforge_yaml::to_string_multi(&docs, Default::default())
                ));
            }
            Err(e) => e,
        };
        for line in want.lines().filter(|l| !l.trim().is_empty()) {
            if !got.contains(line) {
                return Err(format!(
                    "error message lacks line\n  {line}\nfull message:\n{got}"
                ));
            }
        }
        return Ok(());
    }

    let got = result?;
    let want = documents(&dir.join("expected.yaml"));
    if got != want {
        let opts = kforge_yaml::EmitOptions { indent: 2 };
        let (w, g) = (
            kforge_yaml::to_string_multi(&want, opts),
            kforge_yaml::to_string_multi(&got, opts),
        );
        let diff = similar::TextDiff::from_lines(&w, &g)
            .unified_diff()
            .header("expected", "got")
            .to_string();
        return Err(format!("result differs from expected.yaml:\n{diff}"));
    }
    Ok(())
}

#[test]
fn patch_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/patch_cases");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .expect("tests/patch_cases exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 25,
        "expected the full set of golden cases, found {}",
        dirs.len()
    );
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|d| {
            run_case(d).err().map(|e| {
                format!(
                    "--- {}:\n{e}",
                    d.file_name().unwrap_or_default().to_string_lossy()
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}
