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

/// Runs kforge once and returns (wall seconds, peak RSS in MiB) of that process alone: the
/// measurement happens in a fresh child of this bench (`--measure`), whose only child is kforge,
/// so `RUSAGE_CHILDREN` is kforge's.
fn measure_once(
    bench: &std::path::Path,
    bin: &std::path::Path,
    dir: &std::path::Path,
) -> (f64, f64) {
    let out = Command::new(bench)
        .arg("--measure")
        .arg(bin)
        .arg(dir)
        .output()
        .expect("run the measuring child");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

fn measure_child(bin: &str, dir: &str) {
    let start = Instant::now();
    let out = Command::new(bin)
        .args(["genconfig", "-c", "talconfig.yaml"])
        .current_dir(dir)
        .output()
        .expect("run kforge");
    let wall = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rss_kib = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|u| u.max_rss())
        .unwrap_or(0);
    println!("{wall} {}", rss_kib as f64 / 1024.0);
}

fn report(label: &str, mut runs: Vec<(f64, f64)>) {
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let median = runs[runs.len() / 2].0;
    let rss = runs.iter().map(|r| r.1).fold(0.0, f64::max);
    println!(
        "  {label}: wall median {median:.3} s (min {:.3}, max {:.3}, {} runs); peak RSS {rss:.1} MiB",
        runs[0].0,
        runs[runs.len() - 1].0,
        runs.len()
    );
    println!(
        "    targets: wall <= 0.5 s: {}; memory <= 100 MiB: {}",
        median <= 0.5,
        rss <= 100.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--measure") {
        measure_child(&args[2], &args[3]);
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = Command::new("cargo")
        .args(["build", "--release", "-q", "-p", "kforge"])
        .current_dir(&root)
        .status()
        .expect("cargo");
    assert!(status.success(), "release build failed");
    let bin = root.join("target/release/kforge").canonicalize().unwrap();
    let bench = std::env::current_exe().unwrap();
    let secrets = root.join("crates/kforge/tests/fixtures/talsecret.yaml");
    // On the project's disk (as a user would run it) and on tmpfs (kforge's own cost, without
    // the filesystem's inode allocation).
    let mut places = vec![(
        "disk",
        tempfile::tempdir_in(root.join("target")).expect("tempdir"),
    )];
    if Path::new("/dev/shm").is_dir() {
        places.push(("tmpfs", tempfile::tempdir_in("/dev/shm").expect("tempdir")));
    }
    println!("genconfig, 1000 nodes, 1002 files written");
    for (label, dir) in &places {
        std::fs::write(
            dir.path().join("talconfig.yaml"),
            cluster_gen::cluster_file(1000),
        )
        .unwrap();
        std::fs::copy(&secrets, dir.path().join("talsecret.yaml")).unwrap();
        let fresh: Vec<(f64, f64)> = (0..7)
            .map(|_| {
                let _ = std::fs::remove_dir_all(dir.path().join("clusterconfig"));
                measure_once(&bench, &bin, dir.path())
            })
            .collect();
        assert_eq!(
            std::fs::read_dir(dir.path().join("clusterconfig"))
                .unwrap()
                .count(),
            1002
        );
        report(&format!("{label}, new output directory"), fresh);
        let rerun: Vec<(f64, f64)> = (0..7)
            .map(|_| measure_once(&bench, &bin, dir.path()))
            .collect();
        report(
            &format!("{label}, re-run over an up-to-date directory"),
            rerun,
        );
    }
}
