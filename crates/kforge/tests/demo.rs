//! `kforge demo`: the whole job on simulated nodes, and nothing left behind — after a full
//! run and after Ctrl-C in the middle of `up`. Needs `etcd` on PATH (scripts/test.sh
//! installs it).

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The demo with its temporary files under `tmp` (so leftovers are easy to see) and real
/// time (its certificates must be valid now).
fn demo(tmp: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kforge"));
    c.arg("demo")
        .arg("--output")
        .arg("plain")
        .env("TMPDIR", tmp)
        .env("NO_COLOR", "1")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KUBECONFIG");
    c
}

/// Processes whose command line mentions `dir` (simulated nodes and their etcd do).
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!("{}: {cmdline}", e.file_name().to_string_lossy()));
        }
    }
    found
}

fn leftovers(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect()
}

#[test]
fn demo_runs_up_health_and_the_drill_then_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let out = demo(tmp.path()).output().unwrap();
    let (stdout, stderr) = support::text(&out);
    assert!(
        out.status.success(),
        "demo failed:\n{stderr}\n--- stdout\n{stdout}"
    );
    // Every stage ran and passed.
    for stage in [
        "genconfig (new secrets)",
        "start simulated nodes",
        "kforge up",
        "kforge health",
        "kforge drill failover",
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.trim_start().starts_with(stage) && l.trim_end().ends_with("ok")),
            "no passed `{stage}` in the summary:\n{stderr}"
        );
    }
    assert!(stderr.contains("cluster `solana` is up"), "{stderr}");
    assert!(
        stderr.contains("tuning verified on solana-validator: 12/12 checks passed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("all 4 nodes registered and Ready"),
        "{stderr}"
    );
    // health's table and the drill's report go to stdout.
    assert!(stdout.contains("all k8s nodes to report ready"), "{stdout}");
    assert!(stdout.contains("VIP moved from cp-"), "{stdout}");
    assert!(stdout.contains("rejoin"), "{stdout}");
    assert!(
        stderr.contains(": 4 node processes (and their etcd) stopped"),
        "{stderr}"
    );
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
    assert_eq!(processes_under(tmp.path()), Vec::<String>::new());
}

#[test]
fn interrupting_the_demo_stops_every_node_and_removes_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = demo(tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    let mut interrupted = false;
    // Interrupt once etcd has been bootstrapped: nodes, etcd and files all exist then.
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if !interrupted && line.contains("bootstrapped etcd on") {
            assert!(
                !processes_under(tmp.path()).is_empty(),
                "no node processes while the demo runs"
            );
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            )
            .unwrap();
            interrupted = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(interrupted, "the demo never bootstrapped etcd:\n{seen}");
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(seen.contains("stopping the simulated nodes"), "{seen}");
    // The nodes' etcd may take a moment to be reaped by init after its group is killed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_under(tmp.path()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(processes_under(tmp.path()), Vec::<String>::new());
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}
