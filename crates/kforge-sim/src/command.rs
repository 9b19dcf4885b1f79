//! The `kforge-sim` command line: one simulated Talos node per process. Also reachable as
//! `kforge __sim-node …`, so `kforge demo` needs no second binary.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::settings::{self, Faults, SimSettings};
use clap::Parser;
use kforge_machine::nodeconfig::Mode;

/// A simulated Talos node: the Talos API on <address>:<port> (maintenance mode until a
/// config is applied, then apid with mutual TLS), trustd on control-plane nodes, a real
/// etcd once bootstrapped or joined, a Kubernetes API server on <address>:<k8s-port>
/// (and on the VIP while elected) on control-plane nodes, a kubelet registering the
/// node, state kept in --state-dir.
///
/// Runtime faults: send `refuse on|off`, `pause on|off`, `crash`, `power-cycle`,
/// `power-on`, `boot-delay D`, `ready-delay D`, `status` or `exit` (one per line) to the
/// control socket (default <state-dir>/run/control.sock).
#[derive(Parser, Debug)]
#[command(name = "kforge-sim", version)]
struct Args {
    /// The node's address (any 127.x.y.z on loopback); every listener binds to it.
    #[arg(long)]
    address: IpAddr,
    /// Directory holding the node's state (config, etcd data); survives restarts.
    #[arg(long)]
    state_dir: PathBuf,
    /// apid port.
    #[arg(long, default_value_t = settings::DEFAULT_API_PORT)]
    port: u16,
    /// trustd port (control-plane nodes).
    #[arg(long, default_value_t = settings::DEFAULT_TRUSTD_PORT)]
    trustd_port: u16,
    #[arg(long, default_value_t = settings::DEFAULT_ETCD_CLIENT_PORT)]
    etcd_client_port: u16,
    #[arg(long, default_value_t = settings::DEFAULT_ETCD_PEER_PORT)]
    etcd_peer_port: u16,
    /// kube-apiserver port (control-plane nodes, and the VIP while this node holds it).
    #[arg(long, default_value_t = settings::DEFAULT_K8S_PORT)]
    k8s_port: u16,
    /// TTL of the etcd lease behind the VIP (at least 2s): how long a holder that lost
    /// etcd keeps the VIP, and how soon another control plane takes it over.
    #[arg(long, default_value = "3s", value_parser = settings::parse_duration)]
    vip_ttl: Duration,
    /// How often the kubelet posts node status.
    #[arg(long, default_value = "10s", value_parser = settings::parse_duration)]
    kubelet_heartbeat: Duration,
    /// How long without kubelet status before the controller manager marks a node
    /// Unknown (NotReady).
    #[arg(long, default_value = "40s", value_parser = settings::parse_duration)]
    node_monitor_grace_period: Duration,
    /// CPUs the node reports to Kubernetes.
    #[arg(long, default_value_t = settings::DEFAULT_CPUS)]
    cpus: u32,
    /// How long the node is unreachable after start, reboot or apply.
    #[arg(long, default_value = "2s", value_parser = settings::parse_duration)]
    boot_delay: Duration,
    /// How long after apid is up the node keeps booting (Bootstrap: "not available yet").
    #[arg(long, default_value = "1s", value_parser = settings::parse_duration)]
    ready_delay: Duration,
    /// Memory the node reports (MemTotal), e.g. 512GiB.
    #[arg(long, default_value = "16GiB", value_parser = settings::parse_size_kib)]
    meminfo_total: u64,
    /// Talos version before a config names an installer image.
    #[arg(long, default_value = settings::DEFAULT_TALOS_VERSION)]
    talos_version: String,
    /// Platform mode for validating applied configs: metal, cloud or container.
    #[arg(long, default_value = "metal", value_parser = parse_mode)]
    mode: Mode,
    /// Another control-plane node's address (repeatable): where to find etcd to join and
    /// trustd to sign a worker's certificates.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Kernel arguments the installed image carries (space-separated, repeatable), e.g.
    /// a schematic's `hugepagesz=2M hugepages=1024`.
    #[arg(long = "kernel-args")]
    kernel_args: Vec<String>,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    etcd_binary: PathBuf,
    /// Control socket path (default <state-dir>/run/control.sock).
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Start refusing connections.
    #[arg(long)]
    refuse: bool,
    /// Start hung (connections accepted, never answered).
    #[arg(long)]
    pause: bool,
    /// Stop (as on SIGTERM) when the process with this PID, the one that started the node,
    /// exits — even when it is killed.
    #[arg(long)]
    parent_pid: Option<i32>,
    /// No log lines on stderr.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "metal" => Ok(Mode::Metal),
        "cloud" => Ok(Mode::Cloud),
        "container" => Ok(Mode::Container),
        other => Err(format!("`{other}` is not one of metal, cloud, container")),
    }
}

/// Parses `args` (the first is the program name) and runs the node until it is told to stop.
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = Args::parse_from(args);
    if let Some(parent) = args.parent_pid {
        if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM) {
            eprintln!("error: cannot follow the parent process: {e}");
            return ExitCode::FAILURE;
        }
        // The parent may have died before the line above took effect.
        if nix::unistd::getppid().as_raw() != parent {
            return ExitCode::FAILURE;
        }
    }
    let mut s = SimSettings::new(args.address, &args.state_dir);
    s.api_port = args.port;
    s.trustd_port = args.trustd_port;
    s.etcd_client_port = args.etcd_client_port;
    s.etcd_peer_port = args.etcd_peer_port;
    s.k8s_port = args.k8s_port;
    s.vip_ttl = args.vip_ttl;
    s.kubelet_heartbeat = args.kubelet_heartbeat;
    s.node_monitor_grace = args.node_monitor_grace_period;
    s.cpus = args.cpus;
    s.boot_delay = args.boot_delay;
    s.ready_delay = args.ready_delay;
    s.meminfo_total_kib = args.meminfo_total;
    s.talos_version = args.talos_version;
    s.validation_mode = args.mode;
    s.peers = args.peers;
    s.kernel_args = args
        .kernel_args
        .iter()
        .flat_map(|a| a.split_whitespace().map(str::to_string))
        .collect();
    s.etcd_binary = args.etcd_binary;
    s.control_socket = args.control_socket;
    s.faults = Faults {
        refuse: args.refuse,
        pause: args.pause,
    };
    let address = args.address;
    let quiet = args.quiet;
    let log: crate::Logger = Arc::new(move |line: &str| {
        if !quiet {
            let t = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            eprintln!(
                "{}.{:03} kforge-sim[{address}] {line}",
                t.as_secs(),
                t.subsec_millis()
            );
        }
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::run(s, log)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                eprintln!("Caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
