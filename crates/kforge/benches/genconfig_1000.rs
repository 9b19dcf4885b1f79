//! Bench binary: `kforge genconfig` on a generated 1,000-node cluster with a given secrets
//! bundle, measured end to end on the release binary (wall time and the child's peak RSS from
//! `getrusage(RUSAGE_CHILDREN)`). Target: ≤ 0.5 s and ≤ 100 MiB for all 1,000 files written.
//!
//! Run: `cargo bench -p kforge --bench genconfig_1000`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn cluster_file(nodes: usize) -> String {
    let mut s = String::from(
        "clusterName: big\ntalosVersion: v1.12.0\nkubernetesVersion: v1.35.0\nendpoint: https://10.0.0.10:6443\nclusterPodNets: [10.244.0.0/16]\nclusterSvcNets: [10.96.0.0/12]\nnodes:\n",
    );
    for i in 0..nodes {
        let cp = i < 3;
        let ip = format!("10.{}.{}.{}", 1 + i / 62500, (i / 250) % 250, 11 + i % 250);
        let _ = write!(
            s,
            "  - hostname: node-{i}\n    ipAddress: {ip}\n    controlPlane: {cp}\n    installDisk: /dev/nvme0n1\n    nodeLabels:\n      rack: r{}\n    networkInterfaces:\n      - interface: eth0\n        dhcp: true\n        mtu: 9000\n",
            i % 40
        );
        if cp {
            s.push_str("        vip: {ip: 10.0.0.10}\n");
        }
    }
    s.push_str("worker:\n  nameservers: [1.1.1.1]\n  kernelModules:\n    - name: br_netfilter\n  patches:\n    - |-\n      machine:\n        sysctls:\n          vm.max_map_count: \"262144\"\n");
    s
}

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
    std::fs::write(dir.path().join("talconfig.yaml"), cluster_file(1000)).unwrap();
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
