//! Bench binary: `kforge validate` on the generated 1,000-node cluster file (the one
//! `genconfig_1000` uses), end to end on the release binary: load, whole-cluster checks and
//! rendering every node with placeholder secrets. Median of several runs; target < 0.3 s.
//! A second file with a problem on every node checks that reporting stays linear too.
//!
//! Run: `cargo bench -p kforge --bench validate_1000`.

#[path = "cluster_gen.rs"]
mod cluster_gen;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const RUNS: usize = 9;

/// Median wall time of `kforge validate` on `file` in `dir`, and the last run's exit code
/// and stderr.
fn time_validate(bin: &Path, dir: &Path) -> (f64, f64, f64, i32, String) {
    let mut walls = Vec::new();
    let mut last = (0, String::new());
    for _ in 0..RUNS {
        let start = Instant::now();
        let out = Command::new(bin)
            .args(["validate", "-c", "talconfig.yaml"])
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .output()
            .expect("run kforge");
        walls.push(start.elapsed().as_secs_f64());
        last = (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
    }
    walls.sort_by(f64::total_cmp);
    (
        walls[walls.len() / 2],
        walls[0],
        walls[walls.len() - 1],
        last.0,
        last.1,
    )
}

fn main() {
    // Criterion-style filters arrive as arguments; this binary runs fixed scenarios.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = Command::new("cargo")
        .args(["build", "--release", "-q", "-p", "kforge"])
        .current_dir(&root)
        .status()
        .expect("cargo");
    assert!(status.success(), "release build failed");
    let bin = root.join("target/release/kforge");

    let clean = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        clean.path().join("talconfig.yaml"),
        cluster_gen::cluster_file(1000),
    )
    .expect("write cluster file");
    let (median, min, max, code, stderr) = time_validate(&bin, clean.path());
    assert_eq!(code, 0, "the generated cluster must validate:\n{stderr}");
    println!("validate, 1000 nodes, valid file");
    println!("  wall: median {median:.3} s, min {min:.3} s, max {max:.3} s ({RUNS} runs)");
    println!("  target: median < 0.3 s: {}", median < 0.3);

    // Every node with an unknown key and a duplicate address: 2,000 findings to place.
    let broken = tempfile::tempdir().expect("tempdir");
    let text = cluster_gen::cluster_file(1000)
        .replace(
            "    installDisk: /dev/nvme0n1\n",
            "    installDisk: /dev/nvme0n1\n    instalDisk: /dev/nvme0n1\n",
        )
        .replace("ipAddress: 10.1.0.11\n", "ipAddress: 10.1.0.12\n");
    std::fs::write(broken.path().join("talconfig.yaml"), text).expect("write cluster file");
    let (median, min, max, code, stderr) = time_validate(&bin, broken.path());
    assert_eq!(code, 1, "the broken cluster must fail:\n{stderr}");
    let summary = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or("");
    println!("validate, 1000 nodes, a finding on every node ({summary})");
    println!("  wall: median {median:.3} s, min {min:.3} s, max {max:.3} s ({RUNS} runs)");
}
