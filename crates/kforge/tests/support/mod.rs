//! Shared helpers for the CLI tests: run the real binary in a scratch directory, find the
//! repository and `../shared`, and compare directories with expected files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// `../shared` beside the repository.
pub fn shared() -> PathBuf {
    repo().join("../shared")
}

/// Fixed time for reproducible certificates (2026-01-01T00:00:00Z).
pub const EPOCH: &str = "1767225600";

/// The kforge binary with a clean, reproducible environment.
pub fn kforge(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kforge"));
    c.current_dir(dir)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("NO_COLOR", "1")
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE");
    c
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Replaces the scratch directory in output with `[TMP]`.
pub fn scrub(s: &str, tmp: &Path) -> String {
    s.replace(&tmp.display().to_string(), "[TMP]")
}

/// How a file is stored among expected files: a `.gitignore` would make git ignore the
/// expected files beside it, so it is kept as `dot-gitignore`.
fn stored_name(name: &str) -> String {
    if name == ".gitignore" {
        "dot-gitignore".into()
    } else {
        name.to_string()
    }
}

/// Compares `actual` with `expected` file by file; with `KFORGE_BLESS=1` rewrites `expected`.
pub fn assert_dir_matches(actual: &Path, expected: &Path) {
    let bless = std::env::var_os("KFORGE_BLESS").is_some();
    let mut names: Vec<String> = std::fs::read_dir(actual)
        .unwrap()
        .map(|e| stored_name(&e.unwrap().file_name().into_string().unwrap()))
        .collect();
    names.sort();
    if bless {
        let _ = std::fs::remove_dir_all(expected);
        std::fs::create_dir_all(expected).unwrap();
        for n in &names {
            let real = if n == "dot-gitignore" {
                ".gitignore"
            } else {
                n.as_str()
            };
            std::fs::copy(actual.join(real), expected.join(n)).unwrap();
        }
        return;
    }
    let mut want: Vec<String> = std::fs::read_dir(expected)
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing; run with KFORGE_BLESS=1 to create it",
                expected.display()
            )
        })
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    want.sort();
    assert_eq!(names, want, "files in {}", actual.display());
    for n in &names {
        let real = if n == "dot-gitignore" {
            ".gitignore"
        } else {
            n.as_str()
        };
        let a = std::fs::read_to_string(actual.join(real)).unwrap();
        let b = std::fs::read_to_string(expected.join(n)).unwrap();
        if a != b {
            let diff = similar::TextDiff::from_lines(&b, &a);
            panic!(
                "{n} differs from {}:\n{}",
                expected.display(),
                diff.unified_diff().header("expected", "actual")
            );
        }
    }
}
