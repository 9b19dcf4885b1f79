//! `kforge demo`: the whole job on simulated nodes. The built-in `solana` example (three
//! control planes behind a VIP and a validator worker with huge pages and a static CPU
//! manager) is re-addressed to a free loopback /24, its secrets and configs are generated
//! as `kforge genconfig --new-secrets` does, one simulated Talos node per machine starts in
//! maintenance mode (this binary, as `kforge __sim-node`), and then the real `up`, `health`
//! and `drill failover` commands run against them. Everything lives in one private
//! temporary directory that is removed at the end — also on Ctrl-C — and every node process
//! is stopped and waited for.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use kforge_sim::harness::{ClusterSpec, SimBinary, SimCluster};
use nix::sys::signal::{SigSet, Signal, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use crate::Outcome;
use crate::cli::{ClusterFileArgs, DemoArgs, DrillArgs, GenconfigArgs, HealthArgs, UpArgs};
use crate::files::FsReader;

const EXAMPLE_CLUSTER_FILE: &str = include_str!("../../../../examples/solana/talconfig.yaml");
const EXAMPLE_CP_PATCH: &str =
    include_str!("../../../../examples/solana/patches/controlplane.yaml");
/// The example's addresses are in this /24; the demo swaps it for a loopback one.
const EXAMPLE_SUBNET: &str = "10.0.1.";

/// What the Ctrl-C handler must clean up: node process groups and the work directory.
static CLEANUP: Mutex<Cleanup> = Mutex::new(Cleanup {
    process_groups: Vec::new(),
    work_dir: None,
});

struct Cleanup {
    process_groups: Vec<i32>,
    work_dir: Option<PathBuf>,
}

impl Cleanup {
    fn lock() -> std::sync::MutexGuard<'static, Cleanup> {
        CLEANUP
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub fn run(args: &DemoArgs) -> Result<Outcome> {
    let started = Instant::now();
    handle_interrupts()?;
    // Orphans of the nodes (their etcd, when a node dies first) become our children, so
    // that we can reap them instead of leaving that to init.
    nix::sys::prctl::set_child_subreaper(true).context("cannot become a child subreaper")?;
    let subnet = match &args.subnet {
        Some(s) => parse_subnet(s)?,
        None => free_subnet()?,
    };
    let work = tempfile::Builder::new()
        .prefix("kforge-demo-")
        .tempdir()
        .context("cannot create the demo's temporary directory")?;
    Cleanup::lock().work_dir = Some(work.path().to_path_buf());
    let mut teardown = None;
    let result = run_in(args, subnet, work.path(), started, &mut teardown);
    let stopped = stop_nodes();
    let dir = work.path().to_path_buf();
    let removed = work.close();
    Cleanup::lock().work_dir = None;
    let outcome = result?;
    removed.with_context(|| format!("cannot remove {}", dir.display()))?;
    let stopped = stopped?;
    eprintln!(
        "\ntorn down in {:.1}s: {stopped} node processes (and their etcd) stopped, {} removed",
        teardown.map_or(0.0, |t: Instant| t.elapsed().as_secs_f64()),
        dir.display()
    );
    eprintln!("demo finished in {:.1}s", started.elapsed().as_secs_f64());
    Ok(outcome)
}

/// A stage of the demo and how long it took.
struct Stage {
    name: &'static str,
    took: Duration,
    outcome: &'static str,
}

fn run_in(
    args: &DemoArgs,
    subnet: [u8; 3],
    work: &Path,
    started: Instant,
    teardown: &mut Option<Instant>,
) -> Result<Outcome> {
    let [a, b, c] = subnet;
    let prefix = format!("{a}.{b}.{c}.");
    let cluster_dir = work.join("cluster");
    std::fs::create_dir_all(cluster_dir.join("patches"))
        .with_context(|| format!("cannot create {}", cluster_dir.display()))?;
    let cluster_file = cluster_dir.join("talconfig.yaml");
    write_example(&cluster_file, EXAMPLE_CLUSTER_FILE, &prefix)?;
    write_example(
        &cluster_dir.join("patches/controlplane.yaml"),
        EXAMPLE_CP_PATCH,
        &prefix,
    )?;
    let mut stages = Vec::new();

    eprintln!(
        "==> the `solana` example on {prefix}0/24 (VIP {prefix}10), working in {}",
        work.display()
    );
    let t = Instant::now();
    let generate = GenconfigArgs {
        cluster: ClusterFileArgs {
            config_file: cluster_file.clone(),
            env_file: Vec::new(),
            strict: true,
        },
        out_dir: None,
        secret_file: Vec::new(),
        dry_run: false,
        new_secrets: true,
        no_gitignore: false,
        disable_nodes_section: false,
        crt_ttl: "8760h".into(),
        encrypt: false,
        age: Vec::new(),
        offline_mode: false,
    };
    let reader = FsReader::new();
    let Some(generated) = super::genconfig::generate(&generate, &reader)? else {
        bail!("the built-in example does not validate (see the diagnostics above)");
    };
    super::genconfig::write(&generate, &reader, &generated)?;
    let control_planes = generated
        .rendered
        .iter()
        .filter(|n| n.control_plane)
        .count();
    let workers = generated.rendered.len() - control_planes;
    eprintln!(
        "    secrets and {} machine configs written to {}",
        generated.rendered.len(),
        generated.out_dir.display()
    );
    stages.push(Stage {
        name: "genconfig (new secrets)",
        took: t.elapsed(),
        outcome: "ok",
    });

    let t = Instant::now();
    eprintln!(
        "==> starting {control_planes} control-plane and {workers} worker simulated Talos nodes (maintenance mode)"
    );
    let mut spec = ClusterSpec::new("solana", subnet, control_planes, workers);
    spec.vip = true;
    spec.root = Some(work.join("nodes"));
    // The validator's hardware: the profile's 100 GiB of huge pages must fit, and its
    // reserved CPUs leave the rest to the static CPU manager.
    spec.meminfo_total = "512GiB".into();
    spec.extra_args = vec!["--cpus".into(), "64".into(), "--quiet".into()];
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let binary = SimBinary::with_leading_args(exe, &[crate::SIM_NODE_ARG]);
    // A runtime on this thread: the nodes follow the thread that started them (they stop
    // when it dies), and this one lives until the end of the demo.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let rendered = generated.rendered;
    let cluster = rt
        .block_on(SimCluster::start_rendered(
            spec,
            rendered,
            generated.bundle,
            &binary,
        ))
        .context("cannot start the simulated nodes")?;
    Cleanup::lock().process_groups = cluster
        .nodes()
        .iter()
        .filter_map(|n| n.pid().and_then(|p| i32::try_from(p).ok()))
        .collect();
    stages.push(Stage {
        name: "start simulated nodes",
        took: t.elapsed(),
        outcome: "ok",
    });

    let steps: [(&'static str, &str); 3] = [
        ("kforge up", "up"),
        ("kforge health", "health"),
        ("kforge drill failover", "drill"),
    ];
    let mut outcome = Outcome::Success;
    for (name, step) in steps {
        eprintln!("\n==> {name}");
        let t = Instant::now();
        let health = HealthArgs {
            cluster: generate.cluster.clone(),
            out_dir: None,
            kubeconfig: None,
            wait: "2m".into(),
            output: args.output,
        };
        let result = match step {
            "up" => super::up::up(
                &UpArgs {
                    generate: GenconfigArgs {
                        new_secrets: false,
                        ..generate.clone()
                    },
                    kubeconfig: None,
                    write_kubeconfig: true,
                    output: args.output,
                    talos_port: kforge_sim::settings::DEFAULT_API_PORT,
                    step_timeout: None,
                },
                false,
            ),
            "health" => super::up::health(&health),
            _ => super::up::drill(&DrillArgs { health, node: None }),
        };
        let ok = matches!(result, Ok(Outcome::Success));
        stages.push(Stage {
            name,
            took: t.elapsed(),
            outcome: if ok { "ok" } else { "FAILED" },
        });
        match result {
            Ok(Outcome::Success) => {}
            Ok(Outcome::Failure) => {
                outcome = Outcome::Failure;
                break;
            }
            Err(e) => {
                print_summary(&stages, started);
                print_node_logs(&cluster);
                return Err(e.context(format!("`{name}` failed in the demo")));
            }
        }
    }
    print_summary(&stages, started);
    if matches!(outcome, Outcome::Failure) {
        print_node_logs(&cluster);
    }
    *teardown = Some(Instant::now());
    drop(cluster);
    Ok(outcome)
}

fn print_summary(stages: &[Stage], started: Instant) {
    eprintln!("\nsummary");
    for s in stages {
        eprintln!(
            "  {:<26} {:>6.1}s  {}",
            s.name,
            s.took.as_secs_f64(),
            s.outcome
        );
    }
    eprintln!(
        "  {:<26} {:>6.1}s",
        "total so far",
        started.elapsed().as_secs_f64()
    );
}

/// On failure the nodes' logs are the only record of what they saw; the directory goes away.
fn print_node_logs(cluster: &SimCluster) {
    for n in cluster.nodes() {
        eprintln!(
            "\n--- {} ({}) log tail ---\n{}",
            n.hostname,
            n.address,
            n.log_tail()
        );
    }
}

fn write_example(path: &Path, text: &str, prefix: &str) -> Result<()> {
    std::fs::write(path, text.replace(EXAMPLE_SUBNET, prefix))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn parse_subnet(s: &str) -> Result<[u8; 3]> {
    let parts: Vec<u8> = s
        .split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("--subnet `{s}`: expected three octets like 127.77.3"))?;
    match parts[..] {
        [127, b, c] => Ok([127, b, c]),
        _ => bail!("--subnet `{s}`: expected three octets of a loopback address, like 127.77.3"),
    }
}

/// A 127.77.N /24 where nothing listens on the ports the nodes need, starting at an
/// offset from the PID so that demos running at once pick different ones.
fn free_subnet() -> Result<[u8; 3]> {
    let start = std::process::id() % 200;
    for i in 0..200 {
        let n = u8::try_from(20 + (start + i) % 200).unwrap_or(20);
        let free = [10u8, 11, 12, 13, 20].iter().all(|host| {
            [50000u16, 50001, 6443, 2379, 2380].iter().all(|port| {
                TcpListener::bind(SocketAddrV4::new(Ipv4Addr::new(127, 77, n, *host), *port))
                    .is_ok()
            })
        });
        if free {
            return Ok([127, 77, n]);
        }
    }
    bail!("no free 127.77.N/24 found for the simulated nodes; pass --subnet")
}

/// Kills what is left of the node process groups (their etcd included) and waits until
/// they are gone. Returns how many groups there were.
fn stop_nodes() -> Result<usize> {
    let groups = std::mem::take(&mut Cleanup::lock().process_groups);
    for g in &groups {
        let _ = killpg(Pid::from_raw(*g), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for g in &groups {
        // Zombies keep a group alive: the leader is our child (SimNode reaps it on the
        // normal path; after Ctrl-C nobody else will), and its etcd became ours when the
        // leader died (we are a child subreaper). ESRCH from killpg once the group is gone.
        reap_children();
        while killpg(Pid::from_raw(*g), None).is_ok() {
            reap_children();
            if Instant::now() > deadline {
                bail!("node process group {g} is still running 10s after SIGKILL");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(groups.len())
}

/// Reaps every exited child, without waiting for running ones.
fn reap_children() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
}

/// Ctrl-C or SIGTERM: stop the nodes, remove the work directory, exit 130. The signals are
/// blocked before any other thread exists (threads inherit the mask; child processes get
/// a clean one) and taken by one thread with sigwait.
fn handle_interrupts() -> Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block().context("cannot block SIGINT/SIGTERM")?;
    std::thread::Builder::new()
        .name("demo-interrupt".into())
        .spawn(move || {
            if let Ok(signal) = set.wait() {
                eprintln!("\n{signal}: stopping the simulated nodes and removing the demo's files");
                let _ = stop_nodes();
                if let Some(dir) = Cleanup::lock().work_dir.take() {
                    let _ = std::fs::remove_dir_all(dir);
                }
                std::process::exit(130);
            }
        })
        .context("cannot start the interrupt handler")?;
    Ok(())
}
