//! Bench binary: `kforge genconfig` on a generated 1,000-node cluster with a given secrets
//! bundle, measured end to end on the release binary (wall time and the child's peak RSS from
//! `getrusage(RUSAGE_CHILDREN)`). Target: ≤ 0.5 s and ≤ 100 MiB for all 1,000 files written.
//!
//! Run: `cargo bench -p kforge --bench genconfig_1000`.

#[path = "cluster_gen.rs"]
mod cluster_gen;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn main() {
    // Criterion-style filters arrive as arguments; this binary runs one fixed scenario.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = Command::new("cargo")
        .args(["build", "--release", "-q", "-p", "kforge"])
        .current_dir(&root)
        .status()
        .expect("cargo");
    assert!(status.success(), "release build failed");
    let bin = root.join("target/release/kforge");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("talconfig.yaml"),
        cluster_gen::cluster_file(1000),
    )
    .unwrap();
    let secrets = root.join("crates/kforge/tests/fixtures/talsecret.yaml");
    std::fs::copy(&secrets, dir.path().join("talsecret.yaml")).unwrap();

    let mut walls = Vec::new();
    for _ in 0..7 {
        let _ = std::fs::remove_dir_all(dir.path().join("clusterconfig"));
        let start = Instant::now();
        let out = Command::new(&bin)
            .args(["genconfig", "-c", "talconfig.yaml"])
            .current_dir(dir.path())
            .output()
            .expect("run kforge");
        walls.push(start.elapsed().as_secs_f64());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let files = std::fs::read_dir(dir.path().join("clusterconfig"))
        .unwrap()
        .count();
    let rss_kib = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|u| u.max_rss())
        .unwrap_or(0);
    walls.sort_by(f64::total_cmp);
    let median = walls[walls.len() / 2];
    println!("genconfig, 1000 nodes, {files} files written");
    println!(
        "  wall: median {:.3} s, min {:.3} s, max {:.3} s (7 runs)",
        median,
        walls[0],
        walls[walls.len() - 1]
    );
    println!("  peak RSS of kforge: {:.1} MiB", rss_kib as f64 / 1024.0);
    println!(
        "  targets: wall <= 0.5 s: {}; memory <= 100 MiB: {}",
        median <= 0.5,
        rss_kib as f64 / 1024.0 <= 100.0
    );
}
