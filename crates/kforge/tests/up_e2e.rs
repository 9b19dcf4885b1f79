//! End-to-end tests of the real `kforge up` (and `health`, `drill failover`) command line
//! against simulated Talos nodes (`kforge __sim-node`, see kforge-sim): fresh clusters,
//! no-op reruns, `up` killed at every phase boundary and run again, nodes that never
//! answer, crash during bootstrap, wrong credentials, a cluster bootstrapped by someone
//! else. The invariant checked everywhere: etcd is bootstrapped exactly once, counted
//! from the nodes' own logs ("bootstrapped etcd" is logged by the simulator on every
//! successful Bootstrap call).
//!
//! Each test has its own loopback /24 (127.78.N) so that they can run in parallel. Needs
//! `etcd` on PATH (scripts/install-test-deps.sh installs it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kforge_pki::SecretsBundle;
use kforge_sim::harness::{ClusterSpec, SimBinary, SimCluster};

/// How long one `kforge up` may take on a loaded 2-core machine before a test gives up.
const UP_DEADLINE: Duration = Duration::from_secs(180);

/// A scratch directory with a cluster file and its secrets, and the simulated nodes.
struct Env {
    dir: tempfile::TempDir,
    cluster: SimCluster,
    rt: tokio::runtime::Runtime,
}

/// The kforge binary with real time (the nodes check certificates against now; the
/// fixed `SOURCE_DATE_EPOCH` of the other CLI tests would make them expire), a private
/// HOME and no KUBECONFIG, so that nothing outside the scratch directory is touched.
fn kforge(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kforge"));
    c.current_dir(dir)
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KUBECONFIG")
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE");
    c
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A new secrets bundle written by `kforge gensecret` to `path`.
fn gensecret(dir: &Path, path: &Path) -> SecretsBundle {
    let out = kforge(dir)
        .args(["gensecret", "-o"])
        .arg(path)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "gensecret failed:\n{stderr}\n{stdout}"
    );
    let yaml = std::fs::read_to_string(path).unwrap();
    SecretsBundle::from_yaml(&yaml).unwrap_or_else(|e| panic!("the new talsecret: {e}"))
}

impl Env {
    /// Writes the spec's cluster file and new secrets to a scratch directory and starts
    /// one simulated node per machine, in maintenance mode.
    fn start(mut spec: ClusterSpec) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("kforge-up-e2e-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("talconfig.yaml"), spec.cluster_file()).unwrap();
        spec.secrets = Some(gensecret(dir.path(), &dir.path().join("talsecret.yaml")));
        spec.root = Some(dir.path().join("nodes"));
        let binary = SimBinary::with_leading_args(env!("CARGO_BIN_EXE_kforge"), &["__sim-node"]);
        // A runtime on the test's thread: the nodes die with the thread that started them.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cluster = rt
            .block_on(SimCluster::start(spec, &binary))
            .unwrap_or_else(|e| panic!("cannot start the simulated nodes: {e}"));
        Env { dir, cluster, rt }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cluster_file(&self) -> PathBuf {
        self.path().join("talconfig.yaml")
    }

    /// `kforge <command> -c talconfig.yaml` (and `--output json` for up).
    fn command(&self, args: &[&str]) -> Command {
        let mut c = kforge(self.path());
        c.args(args).arg("-c").arg(self.cluster_file());
        c
    }

    fn up_command(&self, extra: &[&str]) -> Command {
        let mut c = self.command(&["up", "--write-kubeconfig", "--output", "json"]);
        c.args(extra);
        c
    }

    /// Runs `kforge up` to the end (with a deadline) and returns its output.
    fn run_up(&self, extra: &[&str]) -> Run {
        run(self.up_command(extra), UP_DEADLINE, self)
    }

    /// `kforge up` that must succeed.
    fn up_ok(&self, extra: &[&str]) -> Run {
        let r = self.run_up(extra);
        if !r.success {
            self.fail(&format!("`kforge up` failed (status {})", r.status), &r);
        }
        r
    }

    fn health_ok(&self) {
        let r = run(
            self.command(&["health", "--wait", "2m", "--output", "plain"]),
            UP_DEADLINE,
            self,
        );
        if !r.success {
            self.fail("`kforge health` failed", &r);
        }
    }

    /// Successful Bootstrap calls, from every node's log (logs survive restarts).
    fn bootstraps(&self) -> usize {
        self.cluster
            .nodes()
            .iter()
            .map(|n| {
                std::fs::read_to_string(n.log_path())
                    .unwrap_or_default()
                    .matches("bootstrapped etcd")
                    .count()
            })
            .sum()
    }

    fn assert_bootstrapped_once(&self, r: &Run) {
        let n = self.bootstraps();
        if n != 1 {
            self.fail(&format!("etcd bootstrapped {n} times, expected once"), r);
        }
    }

    /// What the node's control socket says (`status`).
    fn status(&self, hostname: &str) -> serde_json::Value {
        let node = self.node(hostname);
        let answer = self
            .rt
            .block_on(node.control().send("status"))
            .unwrap_or_else(|e| panic!("status of {hostname}: {e}"));
        serde_json::from_str(&answer).unwrap()
    }

    fn node(&self, hostname: &str) -> &kforge_sim::harness::SimNode {
        self.cluster
            .nodes()
            .iter()
            .find(|n| n.hostname == hostname)
            .unwrap_or_else(|| panic!("no node {hostname}"))
    }

    fn node_mut(&mut self, hostname: &str) -> &mut kforge_sim::harness::SimNode {
        self.cluster
            .nodes_mut()
            .iter_mut()
            .find(|n| n.hostname == hostname)
            .unwrap_or_else(|| panic!("no node {hostname}"))
    }

    fn node_logs(&self) -> String {
        let mut s = String::new();
        for n in self.cluster.nodes() {
            s.push_str(&format!(
                "\n--- {} ({}) log tail ---\n{}",
                n.hostname,
                n.address,
                n.log_tail()
            ));
        }
        s
    }

    /// Panics with `what`, kforge's output and the nodes' log tails.
    fn fail(&self, what: &str, r: &Run) -> ! {
        panic!(
            "{what}\n--- kforge stderr\n{}\n--- kforge stdout (events)\n{}{}",
            r.stderr,
            r.stdout,
            self.node_logs()
        );
    }
}

/// The end of one kforge run.
struct Run {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The JSON events on stdout.
    fn events(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("event `{l}`: {e}")))
            .collect()
    }

    /// Events of `phase` with `status`.
    fn count(&self, phase: &str, status: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e["phase"] == phase && e["status"] == status)
            .count()
    }
}

/// Runs `command` to the end, killing it after `deadline` (a hung kforge fails the test
/// instead of hanging it).
fn run(mut command: Command, deadline: Duration, env: &Env) -> Run {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(out) => {
            let out = out.unwrap();
            let (stdout, stderr) = text(&out);
            Run {
                success: out.status.success(),
                status: out.status.to_string(),
                stdout,
                stderr,
            }
        }
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let out = rx.recv().unwrap().unwrap();
            let (stdout, stderr) = text(&out);
            env.fail(
                &format!("kforge did not finish within {deadline:?}"),
                &Run {
                    success: false,
                    status: "killed".into(),
                    stdout,
                    stderr,
                },
            );
        }
    }
}

/// When to kill a running `kforge up`.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// At its first event of the phase.
    Start(&'static str),
    /// At its first `done` event of the phase.
    Done(&'static str),
}

impl KillAt {
    fn matches(self, event: &serde_json::Value) -> bool {
        match self {
            KillAt::Start(p) => event["phase"] == p,
            KillAt::Done(p) => event["phase"] == p && event["status"] == "done",
        }
    }
}

/// Starts `kforge up --output json`, reads its events as they come and SIGKILLs it at
/// `at`. Returns the events seen. Panics when `up` ends or stalls before reaching `at`.
fn up_killed_at(env: &Env, at: KillAt, extra: &[&str]) -> Vec<String> {
    let mut child: Child = env
        .up_command(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + UP_DEADLINE;
    let mut seen = Vec::new();
    let mut killed = false;
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let hit = serde_json::from_str::<serde_json::Value>(&line)
            .map(|e| at.matches(&e))
            .unwrap_or(false);
        seen.push(line);
        if hit {
            child.kill().unwrap();
            killed = true;
            break;
        }
    }
    if !killed {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let stderr = err_reader.join().unwrap_or_default();
    if !killed {
        env.fail(
            &format!("`kforge up` never reached {at:?} (status {status})"),
            &Run {
                success: false,
                status: status.to_string(),
                stdout: seen.join("\n"),
                stderr,
            },
        );
    }
    seen
}

fn spec(name: &str, subnet: u8, control_planes: usize, workers: usize) -> ClusterSpec {
    ClusterSpec::new(name, [127, 78, subnet], control_planes, workers)
}

// ---------------------------------------------------------------------------------------

#[test]
fn one_plus_one_up_then_noop_rerun_then_health() {
    let env = Env::start(spec("e2e-one", 1, 1, 1));
    let first = env.up_ok(&[]);
    assert!(
        first.count("apply", "done") >= 2,
        "both nodes get their config:\n{}",
        first.stdout
    );
    env.assert_bootstrapped_once(&first);
    assert!(
        env.path().join("clusterconfig/kubeconfig").is_file(),
        "--write-kubeconfig writes clusterconfig/kubeconfig"
    );
    assert!(
        !env.path().join(".kube").exists(),
        "up must not touch ~/.kube with --write-kubeconfig"
    );

    let again = env.up_ok(&[]);
    if !again
        .stderr
        .contains("cluster `e2e-one` is up to date; nothing changed")
    {
        env.fail("the second `up` is not a no-op", &again);
    }
    for phase in ["apply", "bootstrap"] {
        for status in ["started", "done", "waiting", "failed"] {
            if again.count(phase, status) != 0 {
                env.fail(
                    &format!("the second `up` has `{phase}` `{status}` events"),
                    &again,
                );
            }
        }
    }
    env.assert_bootstrapped_once(&again);
    env.health_ok();
}
