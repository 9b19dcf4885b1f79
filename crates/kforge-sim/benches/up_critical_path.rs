//! Benchmark (not a timed test) of `kforge up` against simulated nodes: how close the
//! deploy engine comes to the time the cluster itself needs.
//!
//! Run: `cargo bench -p kforge-sim --bench up_critical_path` (release build; a few
//! minutes). It starts a simulated 3+1 cluster, runs `up` end to end from maintenance mode
//! (observe, plan, apply, apid, bootstrap, etcd, kubeconfig, Kubernetes, manifests,
//! tuning), then the same for 3+50, and prints for each: wall time of `up`, the critical
//! path, their ratio; and the 3+50/3+1 wall-time ratio. Targets (issue 6): ratio ≤ 1.10
//! for 3+1, 3+50 wall ≤ 1.2 × 3+1 wall. The bench reports whether they are met; it does
//! not fail on a miss.
//!
//! # The critical path
//!
//! The waits no orchestrator can avoid, taken from what the simulated nodes log with
//! millisecond Unix timestamps (`<secs>.<ms> kforge-sim[<addr>] <line>` in each node's
//! `sim.log`), not from the engine's own observations. Per node `i`:
//!
//! - `apply_i`: "machine config applied in maintenance mode" (the node took its config);
//! - `ready_i`: "ready" (rebooted into the config: `boot_delay`, apid up, then the node's
//!   `ready_delay`; Bootstrap is refused before that);
//! - `boot`: "bootstrapped etcd" on the bootstrap node `b`;
//! - `etcd_i`: on control-plane node `i`, "etcd: promoted member" (a joiner, which finds
//!   the cluster by its own polling, joins as a learner and is promoted) or "etcd started"
//!   (the bootstrap node); the moments etcd then needs to report healthy are *not*
//!   counted, so the critical path is slightly underestimated — the ratio errs high;
//! - `api`: "kube-apiserver: serving the VIP" (first node; the kubeconfig names the VIP;
//!   `/readyz` answers ok as soon as the server listens and its etcd answers);
//! - `reg_i`: "kubelet: registered node" (the kubelet posts its Ready status in the same
//!   round).
//!
//! From these, inherent durations (the system's own work, no orchestrator in them):
//! `R_i = ready_i − apply_i` (reboot into the config), `E = max_i etcd_i − boot` (etcd
//! members up after Bootstrap), `A = api − boot` (API ready after Bootstrap),
//! `N_i = reg_i − max(ready_i, api)` (kubelet TLS bootstrap and registration once both its
//! node and the API are up). An ideal orchestrator applies every config at `t = 0` at no
//! cost, calls Bootstrap the instant node `b` is ready and notices every signal at once:
//!
//! ```text
//! critical = max( R_b + E,  R_b + A,  max_i( max(R_i, R_b + A) + N_i ) )
//! ```
//!
//! i.e. the chain apply → boot delay → ready → bootstrap → etcd / API → every kubelet
//! registered Ready. Observing, planning, the apply RPCs themselves, fetching the
//! kubeconfig, server-side apply of the manifests and the tuning checks count as
//! orchestrator time (they wait for nothing), as does every poll's overshoot. So
//! `wall / critical − 1` is the orchestrator's whole overhead.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use kforge_deploy::FileStateStore;
use kforge_deploy::desired::DesiredCluster;
use kforge_deploy::event::{Event, EventSink, Status};
use kforge_deploy::execute::{Apis, ExecuteOptions, UpOptions};
use kforge_deploy::kube_http::{HttpKubeConnector, HttpKubeOptions};
use kforge_deploy::plan::{KubeconfigOutput, PlanOptions};
use kforge_deploy::talos::{TalosApi, TalosApiOptions, TalosCredentials};
use kforge_sim::harness::{ClusterSpec, SimBinary, SimCluster};

#[path = "../tests/support/mod.rs"]
mod support;
use support::OrFail;

/// The fixed simulated reboot after an apply.
const BOOT_DELAY: Duration = Duration::from_secs(3);

fn spec(name: &str, subnet: [u8; 3], workers: usize) -> ClusterSpec {
    let mut s = ClusterSpec::new(name, subnet, 3, workers);
    s.secrets = Some(support::secrets());
    s.vip = true;
    s.boot_delay = BOOT_DELAY;
    s.worker_extra = Some(kforge_sim::harness::VALIDATOR_WORKER.into());
    s.meminfo_total = "64GiB".into();
    s.extra_args = vec!["--cpus".into(), "16".into()];
    if let Some(root) = std::env::var_os("KFORGE_SIM_DEBUG_ROOT") {
        s.root = Some(std::path::PathBuf::from(root).join(name));
    }
    s
}

/// When each engine phase last reported Done, relative to the start of `up`.
#[derive(Default)]
struct PhaseTimes(Mutex<BTreeMap<String, Duration>>);

impl EventSink for PhaseTimes {
    fn emit(&self, event: Event) {
        if event.status == Status::Done
            && let Ok(mut m) = self.0.lock()
        {
            m.insert(format!("{:?}", event.phase), event.elapsed);
        }
    }
}

/// Unix time in seconds of the first log line of `log` whose message starts with `what`.
fn first(log: &str, what: &str) -> Option<f64> {
    log.lines().find_map(|l| {
        let (t, rest) = l.split_once(' ')?;
        let (_, msg) = rest.split_once("] ")?;
        msg.starts_with(what).then(|| t.parse().ok())?
    })
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

struct NodeMilestones {
    host: String,
    control_plane: bool,
    apply: f64,
    ready: f64,
    etcd: Option<f64>,
    registered: f64,
}

struct Figures {
    wall: f64,
    critical: f64,
    /// Lines explaining where the time went.
    detail: Vec<String>,
}

async fn run(name: &str, subnet: [u8; 3], workers: usize, binary: &SimBinary) -> Figures {
    let t = Instant::now();
    let cluster = SimCluster::start(spec(name, subnet, workers), binary)
        .await
        .or_fail("cluster starts");
    eprintln!(
        "{name}: {} nodes listening in {:.1}s",
        cluster.nodes().len(),
        t.elapsed().as_secs_f64()
    );
    let desired = DesiredCluster::from_rendered(cluster.name(), cluster.rendered_nodes(), None)
        .or_fail("desired cluster");
    let credentials =
        TalosCredentials::from_talosconfig(&cluster.talosconfig(), None).or_fail("credentials");
    let api = TalosApi::new(credentials, TalosApiOptions::default());
    let connector = HttpKubeConnector {
        options: HttpKubeOptions::default(),
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let state = FileStateStore::in_dir(dir.path());
    let options = UpOptions {
        plan: PlanOptions {
            kubeconfig: KubeconfigOutput::Write {
                path: dir.path().join("kubeconfig"),
            },
        },
        observe: Default::default(),
        // What `kforge up` uses.
        execute: ExecuteOptions::default(),
    };
    let phases = PhaseTimes::default();
    let apis = Apis {
        nodes: &api,
        kube: &connector,
        state: &state,
    };
    let start = SystemTime::now();
    let t0 = Instant::now();
    let (_plan, report) = kforge_deploy::execute::up(&desired, apis, &phases, &options)
        .await
        .or_fail("kforge up");
    let wall = t0.elapsed().as_secs_f64();
    assert!(report.changed);
    let start = unix(start);

    // ---- the nodes' own milestones
    let mut nodes = Vec::new();
    let mut boot = None;
    let mut api_at: Option<f64> = None;
    for n in cluster.nodes() {
        let log = std::fs::read_to_string(n.log_path()).unwrap_or_default();
        let need = |what: &str| {
            first(&log, what)
                .unwrap_or_else(|| panic!("{}: no `{what}` in its log:\n{log}", n.hostname))
        };
        if let Some(b) = first(&log, "bootstrapped etcd") {
            boot = Some((n.hostname.clone(), b));
        }
        if let Some(a) = first(&log, "kube-apiserver: serving the VIP") {
            api_at = Some(api_at.map_or(a, |x: f64| x.min(a)));
        }
        nodes.push(NodeMilestones {
            host: n.hostname.clone(),
            control_plane: n.control_plane,
            apply: need("machine config applied in maintenance mode"),
            ready: need("ready"),
            // A joiner counts once it is a voting member (the engine waits for that).
            etcd: n.control_plane.then(|| {
                first(&log, "etcd: promoted member").unwrap_or_else(|| need("etcd started"))
            }),
            registered: need("kubelet: registered node"),
        });
    }
    let (boot_host, boot) = boot.expect("a node bootstrapped etcd");
    let api_at = api_at.expect("a node served the VIP");
    let b = nodes
        .iter()
        .find(|n| n.host == boot_host)
        .expect("bootstrap node");
    let r_b = b.ready - b.apply;
    let e = nodes.iter().filter_map(|n| n.etcd).fold(0.0, f64::max) - boot;
    let a = api_at - boot;
    let ideal_api = r_b + a;
    let mut ideal_nodes = 0.0f64;
    let mut max_n = 0.0f64;
    for n in &nodes {
        let lat = n.registered - n.ready.max(api_at);
        max_n = max_n.max(lat);
        ideal_nodes = ideal_nodes.max((n.ready - n.apply).max(ideal_api) + lat);
    }
    let critical = (r_b + e).max(ideal_api).max(ideal_nodes);

    let rel = |x: f64| x - start;
    let applies: Vec<f64> = nodes.iter().map(|n| rel(n.apply)).collect();
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let cp_ready = max(&nodes
        .iter()
        .filter(|n| n.control_plane)
        .map(|n| rel(n.ready))
        .collect::<Vec<_>>());
    let regs: Vec<f64> = nodes.iter().map(|n| rel(n.registered)).collect();
    let mut detail = vec![
        format!(
            "inherent: reboot into config R_b {r_b:.2}s, etcd after Bootstrap E {e:.2}s, API \
             after Bootstrap A {a:.2}s, slowest kubelet registration N {max_n:.2}s"
        ),
        format!(
            "nodes (s after up started): applies {:.2}..{:.2}, control planes ready {cp_ready:.2}, \
             Bootstrap {:.2} on {boot_host}, etcd members {:.2}, API {:.2}, kubelets registered \
             {:.2}..{:.2}",
            min(&applies),
            max(&applies),
            rel(boot),
            rel(nodes.iter().filter_map(|n| n.etcd).fold(0.0, f64::max)),
            rel(api_at),
            min(&regs),
            max(&regs),
        ),
    ];
    if let Ok(p) = phases.0.lock() {
        let mut v: Vec<(&String, &Duration)> = p.iter().collect();
        v.sort_by_key(|(_, d)| **d);
        detail.push(format!(
            "engine (last Done per phase; Observe from the start of up, the rest from the start of \
             execute): {}",
            v.iter()
                .map(|(k, d)| format!("{k} {:.2}", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    drop(cluster);
    Figures {
        wall,
        critical,
        detail,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let binary = SimBinary::new(env!("CARGO_BIN_EXE_kforge-sim"));
    let only_small = std::env::args().any(|a| a == "--small");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut results: Vec<(&str, Figures)> = Vec::new();
        results.push(("3+1", run("bench-small", [127, 203, 1], 1, &binary).await));
        if !only_small {
            results.push(("3+50", run("bench-large", [127, 203, 2], 50, &binary).await));
        }
        println!(
            "\nkforge up against simulated nodes (boot delay {}s)",
            BOOT_DELAY.as_secs()
        );
        for (name, f) in &results {
            let ratio = f.wall / f.critical;
            println!(
                "{name:>5}: wall {:.2}s, critical path {:.2}s, ratio {ratio:.3}",
                f.wall, f.critical
            );
            for d in &f.detail {
                println!("       {d}");
            }
        }
        let small = &results[0].1;
        let ratio = small.wall / small.critical;
        println!(
            "target 3+1 ratio ≤ 1.10: {} ({ratio:.3})",
            if ratio <= 1.10 { "met" } else { "MISSED" }
        );
        if let Some((_, large)) = results.get(1) {
            let scale = large.wall / small.wall;
            println!(
                "target 3+50 wall ≤ 1.2 × 3+1 wall: {} ({scale:.3}; 3+50 ratio {:.3})",
                if scale <= 1.2 { "met" } else { "MISSED" },
                large.wall / large.critical
            );
        }
    });
}
