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

    /// Starts the node's process again (after a kill) and waits until it listens.
    fn restart(&mut self, hostname: &str) {
        let node = self
            .cluster
            .nodes_mut()
            .iter_mut()
            .find(|n| n.hostname == hostname)
            .unwrap_or_else(|| panic!("no node {hostname}"));
        self.rt
            .block_on(node.restart())
            .unwrap_or_else(|e| panic!("restart {hostname}: {e}"));
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
            let etcd_log = kforge_sim::layout::Layout::new(n.state_dir()).etcd_log();
            if let Ok(text) = std::fs::read_to_string(&etcd_log) {
                let mut start = text.len().saturating_sub(3000);
                while !text.is_char_boundary(start) {
                    start += 1;
                }
                let tail = &text[start..];
                s.push_str(&format!("\n--- {} etcd log tail ---\n{tail}", n.hostname));
            }
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
    code: Option<i32>,
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
                code: out.status.code(),
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
                    code: None,
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

/// A running `kforge up --output json` whose events are read as they come.
struct UpProcess {
    child: Child,
    events: mpsc::Receiver<String>,
    err_reader: Option<std::thread::JoinHandle<String>>,
    seen: Vec<String>,
    deadline: Instant,
}

impl UpProcess {
    fn spawn(env: &Env, extra: &[&str]) -> UpProcess {
        let mut child = env
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
        UpProcess {
            child,
            events: rx,
            err_reader: Some(err_reader),
            seen: Vec::new(),
            deadline: Instant::now() + UP_DEADLINE,
        }
    }

    /// The next event, `None` once kforge closed stdout (it exited) or at the deadline.
    fn next_event(&mut self) -> Option<serde_json::Value> {
        loop {
            let line = self
                .events
                .recv_timeout(self.deadline.saturating_duration_since(Instant::now()))
                .ok()?;
            self.seen.push(line.clone());
            if let Ok(e) = serde_json::from_str(&line) {
                return Some(e);
            }
        }
    }

    /// Reads events until one matches `at`; false when kforge ended (or stalled) first.
    fn wait_for(&mut self, at: KillAt) -> bool {
        while let Some(e) = self.next_event() {
            if at.matches(&e) {
                return true;
            }
        }
        false
    }

    /// SIGKILL.
    fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits for the process to end (killing it at the deadline) and returns its output.
    fn finish(mut self) -> Run {
        while self.next_event().is_some() {}
        if Instant::now() >= self.deadline {
            self.kill();
        }
        let status = self.child.wait().unwrap();
        let stderr = self
            .err_reader
            .take()
            .map(|r| r.join().unwrap_or_default())
            .unwrap_or_default();
        Run {
            success: status.success(),
            code: status.code(),
            status: status.to_string(),
            stdout: self.seen.join("\n"),
            stderr,
        }
    }
}

/// Runs `kforge up` and SIGKILLs it at `at`; panics when it ends before.
fn up_killed_at(env: &Env, at: KillAt) {
    let mut up = UpProcess::spawn(env, &[]);
    let reached = up.wait_for(at);
    up.kill();
    let r = up.finish();
    if !reached {
        env.fail(&format!("`kforge up` never reached {at:?}"), &r);
    }
}

fn with_profile(mut s: ClusterSpec) -> ClusterSpec {
    s.worker_extra = Some(kforge_sim::harness::VALIDATOR_WORKER.into());
    s.meminfo_total = "64GiB".into();
    s.extra_args = vec!["--cpus".into(), "16".into()];
    s
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

#[test]
fn solana_like_three_plus_one_with_vip_up_then_failover_drill() {
    let mut s = with_profile(spec("e2e-solana", 2, 3, 1));
    s.vip = true;
    let env = Env::start(s);
    let up = env.up_ok(&[]);
    env.assert_bootstrapped_once(&up);
    if up.count("tuning", "done") == 0 {
        env.fail("tuning is verified on the validator", &up);
    }
    let before = env.rt.block_on(env.cluster.vip_holders());
    assert_eq!(before.len(), 1, "one VIP holder after up: {before:?}");
    let drill = run(
        env.command(&["drill", "failover", "--wait", "2m", "--output", "plain"]),
        UP_DEADLINE,
        &env,
    );
    if !drill.success {
        env.fail("`kforge drill failover` failed", &drill);
    }
    let after = env.rt.block_on(env.cluster.vip_holders());
    assert_eq!(after.len(), 1, "one VIP holder after the drill: {after:?}");
    assert_ne!(
        before, after,
        "the VIP moved to another control plane during the drill:\n{}",
        drill.stderr
    );
    env.assert_bootstrapped_once(&drill);
}

#[test]
fn infra_like_three_plus_three_up_then_health() {
    let env = Env::start(spec("e2e-infra", 3, 3, 3));
    let up = env.up_ok(&[]);
    env.assert_bootstrapped_once(&up);
    if up.count("apply", "done") < 6 {
        env.fail("all six nodes get their config", &up);
    }
    env.health_ok();
}

/// A changed cluster file on a running cluster: the plan shows the one node whose config
/// differs and the difference, `up` applies it over mutual TLS (not in maintenance mode)
/// to that node only, and afterwards the plan is empty again.
#[test]
fn a_changed_node_config_is_planned_with_its_diff_and_applied_to_that_node_only() {
    let env = Env::start(spec("e2e-change", 8, 1, 1));
    let first = env.up_ok(&[]);
    env.assert_bootstrapped_once(&first);

    let file = std::fs::read_to_string(env.cluster_file()).unwrap();
    let worker = "  - hostname: w-1\n";
    assert!(file.contains(worker), "cluster file:\n{file}");
    let changed = file.replace(
        worker,
        &format!("{worker}    nodeLabels:\n      kforge.test/tier: edge\n"),
    );
    std::fs::write(env.cluster_file(), changed).unwrap();

    let plan = run(
        env.command(&["plan", "--write-kubeconfig", "--output", "plain"]),
        UP_DEADLINE,
        &env,
    );
    if !plan.success {
        env.fail("`kforge plan` failed", &plan);
    }
    let w1_row = plan
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("w-1 "))
        .unwrap_or_default();
    if !w1_row.contains("authenticated, mode auto") {
        env.fail("the plan applies w-1 authenticated, in mode auto", &plan);
    }
    let diff_at = plan
        .stdout
        .find("Config changes")
        .unwrap_or_else(|| env.fail("the plan has no config changes section", &plan));
    let diff = &plan.stdout[diff_at..];
    if !diff.contains("kforge.test/tier: edge") || diff.contains("cp-1") {
        env.fail(
            "the plan's diff shows the new label on w-1 and nothing for cp-1",
            &plan,
        );
    }

    let second = env.up_ok(&[]);
    let applied: Vec<String> = second
        .events()
        .iter()
        .filter(|e| e["phase"] == "apply" && e["status"] == "done")
        .map(|e| e["node"].as_str().unwrap_or_default().to_string())
        .collect();
    let messages: Vec<String> = second
        .events()
        .iter()
        .filter(|e| e["phase"] == "apply" && e["status"] == "done")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    if !messages
        .iter()
        .all(|m| m.starts_with("applied config (mode auto"))
    {
        env.fail(
            &format!("w-1 is applied over mutual TLS, mode auto: {messages:?}"),
            &second,
        );
    }
    if applied != ["w-1"] {
        env.fail(
            &format!("only w-1 gets a new config, got {applied:?}"),
            &second,
        );
    }
    if second.count("bootstrap", "started") != 0 {
        env.fail("a config change must not bootstrap", &second);
    }
    env.assert_bootstrapped_once(&second);

    let after = env.up_ok(&[]);
    if !after.stderr.contains("is up to date; nothing changed") {
        env.fail("after the change is applied, `up` is a no-op", &after);
    }
}

/// `kforge up` SIGKILLed at `at` on a fresh 1+1 cluster (a worker with a profile, so that
/// every phase has work), then run again: it completes, etcd bootstrapped exactly once,
/// and a third run changes nothing.
fn killed_then_rerun(subnet: u8, at: KillAt) {
    let env = Env::start(with_profile(spec(
        &format!("e2e-kill-{subnet}"),
        subnet,
        1,
        1,
    )));
    up_killed_at(&env, at);
    let rerun = env.up_ok(&[]);
    env.assert_bootstrapped_once(&rerun);
    let again = env.up_ok(&[]);
    if !again.stderr.contains("is up to date; nothing changed") {
        env.fail(
            &format!("after a kill at {at:?}, a third `up` is not a no-op"),
            &again,
        );
    }
    env.assert_bootstrapped_once(&again);
}

macro_rules! kill_tests {
    ($($name:ident: $subnet:expr, $at:expr;)*) => {$(
        #[test]
        fn $name() {
            killed_then_rerun($subnet, $at);
        }
    )*};
}

kill_tests! {
    killed_at_apply_start: 10, KillAt::Start("apply");
    killed_at_apply_done: 11, KillAt::Done("apply");
    killed_at_apid_start: 12, KillAt::Start("apid");
    killed_at_bootstrap_start: 13, KillAt::Start("bootstrap");
    killed_at_bootstrap_done: 14, KillAt::Done("bootstrap");
    killed_at_etcd_start: 15, KillAt::Start("etcd");
    killed_at_kubeconfig_start: 16, KillAt::Start("kubeconfig");
    killed_at_kubernetes_start: 17, KillAt::Start("kubernetes");
    killed_at_manifests_start: 18, KillAt::Start("manifests");
    killed_at_tuning_start: 19, KillAt::Start("tuning");
    killed_at_tuning_done: 20, KillAt::Done("tuning");
}

#[test]
fn a_worker_that_never_answers_fails_up_quickly_naming_it_and_the_step() {
    let mut env = Env::start(spec("e2e-dead", 4, 1, 2));
    // Nothing listens at w-2's address any more.
    env.node_mut("w-2").kill();
    let started = Instant::now();
    let r = env.run_up(&["--step-timeout", "8s"]);
    let took = started.elapsed();
    eprintln!("`up` with w-2 down ({took:?}):\n{}", r.stderr);
    if r.code != Some(1) {
        env.fail(
            &format!("`up` must fail with status 1, got {}", r.status),
            &r,
        );
    }
    if took > Duration::from_secs(90) {
        env.fail(&format!("`up` took {took:?} with --step-timeout 8s"), &r);
    }
    if !(r.stderr.contains("w-2") && r.stderr.contains("apply")) {
        env.fail("the error names the node (w-2) and the step (apply)", &r);
    }
    if r.stderr.contains("panicked") {
        env.fail("kforge panicked", &r);
    }
    // The other nodes got their configs regardless.
    for n in ["cp-1", "w-1"] {
        let st = env.status(n);
        if st["machine_type"].is_null() {
            env.fail(&format!("{n} did not get its config: {st}"), &r);
        }
    }
    // Back on line: the next run finishes the job, bootstrapping once.
    env.restart("w-2");
    let rerun = env.up_ok(&[]);
    env.assert_bootstrapped_once(&rerun);
}

#[test]
fn a_control_plane_crashing_right_after_bootstrap_then_rerun_bootstraps_once() {
    let mut env = Env::start(spec("e2e-crash", 5, 1, 1));
    let mut up = UpProcess::spawn(&env, &["--step-timeout", "20s"]);
    if !up.wait_for(KillAt::Start("bootstrap")) {
        let r = up.finish();
        env.fail("`up` never reached the bootstrap phase", &r);
    }
    // Crash cp-1 right after a successful Bootstrap call, as soon as etcd has committed
    // its own membership (its first raft entries). Crashing earlier — between the
    // Bootstrap answer and etcd's first durable raft entry, a few milliseconds — loses
    // the bootstrap on the node: on restart etcd has no data (the node waits for a
    // bootstrap) or a WAL without a voter (it never elects a leader). Real Talos and etcd
    // have the same window; kforge, which has recorded the bootstrap as done, then
    // refuses to bootstrap a second time (by design, see kforge_deploy::plan), and the
    // operator must step in.
    let layout = kforge_sim::layout::Layout::new(env.node("cp-1").state_dir());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let bootstrapped = std::fs::read_to_string(env.node("cp-1").log_path())
            .unwrap_or_default()
            .contains("bootstrapped etcd");
        let committed = std::fs::read_to_string(layout.etcd_log())
            .unwrap_or_default()
            .contains("published local member to cluster through raft");
        if bootstrapped && committed {
            break;
        }
        if Instant::now() > deadline {
            up.kill();
            let r = up.finish();
            env.fail(
                "cp-1 was never bootstrapped (or its etcd never started)",
                &r,
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // restart = SIGKILL to the node and its etcd, then start again on the same state.
    env.restart("cp-1");
    // The interrupted run may recover or fail; either way it must end.
    let first = up.finish();
    if first.stderr.contains("panicked") {
        env.fail("kforge panicked", &first);
    }
    let rerun = env.up_ok(&["--step-timeout", "60s"]);
    env.assert_bootstrapped_once(&rerun);
}

#[test]
fn up_with_other_secrets_than_the_nodes_fails_clearly() {
    let env = Env::start(spec("e2e-wrong", 6, 1, 1));
    // The nodes run with the first secrets...
    env.rt
        .block_on(async {
            env.cluster.apply_configs().await?;
            env.cluster.wait_for_apid(Duration::from_secs(60)).await
        })
        .unwrap_or_else(|e| panic!("configure the nodes: {e}"));
    // ...and kforge gets another bundle (another PKI).
    gensecret(env.path(), &env.path().join("talsecret.yaml"));
    // No --step-timeout: a wrong PKI is permanent, so `up` must fail at once rather than
    // wait out a step's deadline (minutes).
    let started = Instant::now();
    let r = env.run_up(&[]);
    let took = started.elapsed();
    if took > Duration::from_secs(60) {
        env.fail(
            &format!("`up` took {took:?} to give up on the wrong PKI"),
            &r,
        );
    }
    eprintln!("`up` with other secrets:\n{}", r.stderr);
    if r.code != Some(1) {
        env.fail(
            &format!("`up` must fail with status 1, got {}", r.status),
            &r,
        );
    }
    if r.stderr.contains("panicked") {
        env.fail("kforge panicked", &r);
    }
    let lower = r.stderr.to_lowercase();
    if !(r.stderr.contains("cp-1")
        && [
            "certificate",
            "tls",
            "authenticat",
            "unknown ca",
            "handshake",
        ]
        .iter()
        .any(|w| lower.contains(w)))
    {
        env.fail("the error names the node and says TLS/authentication", &r);
    }
    assert_eq!(
        env.bootstraps(),
        0,
        "nothing bootstrapped with the wrong PKI"
    );
}

#[test]
fn a_cluster_bootstrapped_by_someone_else_is_not_bootstrapped_again() {
    let env = Env::start(spec("e2e-other", 7, 3, 1));
    env.rt
        .block_on(async {
            env.cluster.apply_configs().await?;
            env.cluster.wait_for_apid(Duration::from_secs(60)).await?;
            env.cluster.bootstrap().await?;
            env.cluster
                // All three: the others join (as learners, then voters) on their own, so
                // waiting for exactly one member would race with them.
                .wait_for_etcd_members(3, Duration::from_secs(90))
                .await
                .map(|_| ())
        })
        .unwrap_or_else(|e| panic!("bootstrap by hand: {e}"));
    assert_eq!(env.bootstraps(), 1);
    let up = env.up_ok(&[]);
    env.assert_bootstrapped_once(&up);
    let skipped_as_existing = up.events().iter().any(|e| {
        e["phase"] == "bootstrap"
            && e["status"] == "skipped"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("already bootstrapped"))
    });
    if up.count("bootstrap", "done") != 0 || !skipped_as_existing {
        env.fail(
            "`up` must record the existing etcd cluster, not bootstrap it",
            &up,
        );
    }
}

#[test]
fn step_timeout_is_documented_and_checked_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let help = kforge(dir.path()).args(["up", "--help"]).output().unwrap();
    let (stdout, _) = text(&help);
    assert!(
        stdout.contains("--step-timeout <DURATION>"),
        "`up --help` documents --step-timeout:\n{stdout}"
    );
    std::fs::write(
        dir.path().join("talconfig.yaml"),
        spec("e2e-flags", 30, 1, 0).cluster_file(),
    )
    .unwrap();
    for (value, expected) in [
        ("5", "invalid --step-timeout `5`"),
        ("0s", "must be more than zero"),
    ] {
        let out = kforge(dir.path())
            .args(["up", "--new-secrets", "--step-timeout", value])
            .args(["-c", "talconfig.yaml"])
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "--step-timeout {value}:\n{stderr}"
        );
        assert!(
            stderr.contains(expected),
            "--step-timeout {value}: expected `{expected}` in:\n{stderr}"
        );
        assert!(
            !dir.path().join("talsecret.yaml").exists()
                && !dir.path().join("clusterconfig").exists(),
            "--step-timeout {value}: nothing is written"
        );
    }
}
