//! A harness that starts whole simulated clusters, for tests (here and in `kforge up`'s)
//! and `kforge demo`: [`SimCluster::start`] renders real machine configs for N
//! control-plane and M worker nodes with kforge's own crates (kforge-spec, kforge-machine,
//! kforge-pki — as `kforge genconfig` does), starts one `kforge-sim` process per node on
//! its own loopback address, and hands out the talosconfig, connections, the admin
//! kubeconfig and Kubernetes clients. With [`ClusterSpec::vip`] the control planes share
//! a VIP (`<subnet>.10`), which is then the cluster endpoint.
//!
//! Every node process leads its own process group (its etcd is in it), and a
//! [`SimNode`] kills that group when dropped — also when a test panics — so nothing
//! outlives the test. A node also stops by itself when the thread that started it exits
//! (`--parent-pid`, Linux's parent-death signal), which covers a SIGKILLed test or
//! `kforge demo`: start nodes from a thread that lives as long as the cluster.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use kforge_machine::ClusterSecrets;
use kforge_machine::profile::Expectation;
use kforge_pki::{IssuedCertificate, SecretsBundle, Talosconfig};
use kforge_secret::SecretString;
use kforge_spec::load::SourceReader;
use kforge_talos_api::{
    ApplyMode, ApplyOptions, BootstrapOptions, BootstrapOutcome, ConnectionConfig, EtcdMember,
    RetryPolicy, TalosClient, Targets,
};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::SimError;
use crate::control::ControlClient;
use crate::etcd::EtcdClient;
use crate::k8s::client::KubeClient;
use crate::settings::{DEFAULT_API_PORT, DEFAULT_ETCD_CLIENT_PORT, DEFAULT_K8S_PORT};

/// Environment variable naming the `kforge-sim` binary.
pub const BINARY_ENV: &str = "KFORGE_SIM_BIN";

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "the kforge-sim binary was not found (looked at {looked}); build it with `cargo build -p kforge-sim` or point {BINARY_ENV} at it"
    )]
    BinaryMissing { looked: String },

    #[error(
        "`etcd` is not on PATH; control-plane nodes run a real etcd: install the Debian package `etcd-server` (or run scripts/install-test-deps.sh)"
    )]
    EtcdMissing,

    #[error("the simulated cluster's configs cannot be rendered:\n  {}", problems.join("\n  "))]
    Render { problems: Vec<String> },

    #[error("cannot {operation} `{path}`")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot {operation}")]
    Pki {
        operation: &'static str,
        #[source]
        source: kforge_pki::PkiError,
    },

    #[error("cannot start the node at {address}")]
    Spawn {
        address: IpAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("node {address} did not {what} within {timeout:?}; its log ends with:\n{log}")]
    Timeout {
        address: IpAddr,
        what: String,
        timeout: Duration,
        log: String,
    },

    #[error("node {address} exited ({status}); its log ends with:\n{log}")]
    Exited {
        address: IpAddr,
        status: String,
        log: String,
    },

    #[error("{operation} failed")]
    Api {
        operation: &'static str,
        #[source]
        source: Box<kforge_talos_api::Error>,
    },

    #[error("{operation}: node {node} answered: {message}")]
    NodeFailed {
        operation: &'static str,
        node: String,
        message: String,
    },

    #[error("Kubernetes did not {what} within {timeout:?}; last seen: {last}")]
    KubeTimeout {
        what: String,
        timeout: Duration,
        last: String,
    },

    #[error(transparent)]
    Sim(#[from] SimError),
}

/// Where the `kforge-sim` executable is.
#[derive(Clone, Debug)]
pub struct SimBinary {
    path: PathBuf,
    /// Arguments before the node's own, e.g. `__sim-node` when the program is `kforge`.
    leading_args: Vec<String>,
}

impl SimBinary {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SimBinary {
            path: path.into(),
            leading_args: Vec::new(),
        }
    }

    /// A program that runs a node when given `leading_args` first (`kforge __sim-node`).
    pub fn with_leading_args(path: impl Into<PathBuf>, leading_args: &[&str]) -> Self {
        SimBinary {
            path: path.into(),
            leading_args: leading_args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// `$KFORGE_SIM_BIN`, else `kforge-sim` in the cargo target directory of the running
    /// test (`target/<profile>/` next to `deps/`).
    pub fn locate() -> Result<Self, HarnessError> {
        let mut looked = Vec::new();
        if let Some(p) = std::env::var_os(BINARY_ENV) {
            let p = PathBuf::from(p);
            if p.is_file() {
                return Ok(SimBinary::new(p));
            }
            looked.push(p.display().to_string());
        }
        if let Ok(exe) = std::env::current_exe() {
            for dir in exe.ancestors().skip(1).take(3) {
                let candidate = dir.join("kforge-sim");
                if candidate.is_file() {
                    return Ok(SimBinary::new(candidate));
                }
                looked.push(candidate.display().to_string());
            }
        }
        Err(HarnessError::BinaryMissing {
            looked: looked.join(", "),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A `worker_extra` for tests and benches: a small machine with the `solana-validator`
/// profile, so the deploy has manifests to apply and tuning (huge pages, CPU manager) to
/// verify.
pub const VALIDATOR_WORKER: &str = "hardware:
  cpus: 16
  memory: 64GiB
  numaNodes: 1
profiles:
  - name: solana-validator
    hugepageSize: 2M
    hugepages: 4096
    reservedCpus: 0-1
    systemReservedMemory: 2Gi
    kubeReservedMemory: 2Gi
    evictionHardMemory: 1Gi
    volumes: []";

/// What cluster to simulate.
#[derive(Clone)]
pub struct ClusterSpec {
    pub name: String,
    /// The first three octets of the node addresses: control-plane nodes get `.11`,
    /// `.12`, …, workers `.21`, `.22`, …. Use a different subnet per concurrent cluster.
    pub subnet: [u8; 3],
    pub control_planes: usize,
    pub workers: usize,
    pub talos_version: String,
    pub kubernetes_version: String,
    pub boot_delay: Duration,
    pub ready_delay: Duration,
    /// `--meminfo-total` of every node.
    pub meminfo_total: String,
    /// YAML lines added to every worker's entry in the generated cluster file (indented
    /// as keys of the node), e.g. a `profiles:` block.
    pub worker_extra: Option<String>,
    /// The secrets bundle; a new one is generated when `None` (RSA key generation takes
    /// a second or two).
    pub secrets: Option<SecretsBundle>,
    /// Extra flags for every node process.
    pub extra_args: Vec<String>,
    /// Directory for the cluster's state; a temporary directory (removed on drop) when
    /// `None`.
    pub root: Option<PathBuf>,
    /// Give the control planes a shared VIP (`<subnet>.10`, a `vip` on their interface in
    /// the cluster file) and make it the endpoint.
    pub vip: bool,
    /// `--vip-ttl` of every node.
    pub vip_ttl: Duration,
    /// `--kubelet-heartbeat` of every node.
    pub kubelet_heartbeat: Duration,
    /// `--node-monitor-grace-period` of every node.
    pub node_monitor_grace: Duration,
}

impl ClusterSpec {
    pub fn new(name: &str, subnet: [u8; 3], control_planes: usize, workers: usize) -> Self {
        ClusterSpec {
            name: name.to_string(),
            subnet,
            control_planes,
            workers,
            talos_version: "v1.12.0".into(),
            kubernetes_version: "v1.35.0".into(),
            boot_delay: Duration::from_millis(300),
            ready_delay: Duration::from_millis(300),
            meminfo_total: "16GiB".into(),
            worker_extra: None,
            secrets: None,
            extra_args: Vec::new(),
            root: None,
            vip: false,
            vip_ttl: Duration::from_secs(3),
            // Faster than Kubernetes' 10 s / 40 s, so that tests see NotReady quickly.
            kubelet_heartbeat: Duration::from_secs(1),
            node_monitor_grace: Duration::from_secs(4),
        }
    }

    /// The VIP, when the spec has one: `<subnet>.10`.
    pub fn vip_address(&self) -> Option<IpAddr> {
        let [a, b, c] = self.subnet;
        self.vip.then_some(IpAddr::V4(Ipv4Addr::new(a, b, c, 10)))
    }

    fn address(&self, control_plane: bool, index: usize) -> IpAddr {
        let [a, b, c] = self.subnet;
        let base = if control_plane { 11 } else { 21 };
        IpAddr::V4(Ipv4Addr::new(a, b, c, base + index as u8))
    }

    /// The talhelper-style cluster file for this spec.
    pub fn cluster_file(&self) -> String {
        let endpoint = self.vip_address().unwrap_or(self.address(true, 0));
        let mut s = format!(
            "clusterName: {}\ntalosVersion: {}\nkubernetesVersion: {}\nendpoint: https://{endpoint}:6443\nnodes:\n",
            self.name, self.talos_version, self.kubernetes_version
        );
        for i in 0..self.control_planes {
            s.push_str(&format!(
                "  - hostname: cp-{}\n    ipAddress: {}\n    controlPlane: true\n    installDisk: /dev/sda\n",
                i + 1,
                self.address(true, i)
            ));
            if let Some(vip) = self.vip_address() {
                s.push_str(&format!(
                    "    networkInterfaces:\n      - interface: eth0\n        dhcp: true\n        vip:\n          ip: {vip}\n"
                ));
            }
        }
        for i in 0..self.workers {
            s.push_str(&format!(
                "  - hostname: w-{}\n    ipAddress: {}\n    installDisk: /dev/sda\n",
                i + 1,
                self.address(false, i)
            ));
            if let Some(extra) = &self.worker_extra {
                for line in extra.lines() {
                    s.push_str("    ");
                    s.push_str(line);
                    s.push('\n');
                }
            }
        }
        s
    }
}

/// The cluster file in memory, for kforge-spec and kforge-machine.
struct MemoryReader {
    files: HashMap<PathBuf, String>,
}

impl SourceReader for MemoryReader {
    fn read(&self, path: &Path) -> Result<String, String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| "no such file".to_string())
    }

    fn exists(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }
}

/// One rendered node config.
pub struct RenderedConfig {
    pub hostname: String,
    pub address: IpAddr,
    pub control_plane: bool,
    pub config: SecretString,
    /// Tuning a profile promises (kernel arguments, huge pages, …).
    pub expectations: Vec<Expectation>,
}

/// Renders `spec`'s cluster file into machine configs, like `kforge genconfig`.
pub fn render_configs(
    spec: &ClusterSpec,
    bundle: &SecretsBundle,
) -> Result<Vec<RenderedConfig>, HarnessError> {
    render_nodes(spec, bundle)?
        .iter()
        .map(rendered_config)
        .collect()
}

fn rendered_config(r: &kforge_machine::RenderedNode) -> Result<RenderedConfig, HarnessError> {
    let address = r
        .ip_addresses
        .first()
        .and_then(|a| a.parse::<IpAddr>().ok())
        .ok_or_else(|| HarnessError::Render {
            problems: vec![format!("node `{}` has no IP address", r.hostname)],
        })?;
    Ok(RenderedConfig {
        config: r.to_yaml(),
        hostname: r.hostname.clone(),
        address,
        control_plane: r.control_plane,
        expectations: r.expectations.clone(),
    })
}

/// Renders `spec`'s cluster file as kforge-machine does for `kforge genconfig` (with the
/// profiles' manifests and expectations, e.g. for `kforge_deploy::DesiredCluster`).
pub fn render_nodes(
    spec: &ClusterSpec,
    bundle: &SecretsBundle,
) -> Result<Vec<kforge_machine::RenderedNode>, HarnessError> {
    let path = PathBuf::from("/kforge-sim/talconfig.yaml");
    let reader = MemoryReader {
        files: HashMap::from([(path.clone(), spec.cluster_file())]),
    };
    let opts = kforge_spec::load::LoadOptions {
        no_substitute: true,
        ..Default::default()
    };
    let describe = |d: &kforge_spec::Diagnostic| match &d.help {
        Some(h) => format!("{} (help: {h})", d.message),
        None => d.message.clone(),
    };
    let loaded = kforge_spec::load(&path, &opts, &reader, HashMap::new());
    let mut problems: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(describe)
        .collect();
    let Some(cluster) = loaded.cluster else {
        return Err(HarnessError::Render { problems });
    };
    problems.extend(
        kforge_spec::validate::validate(&cluster, &reader)
            .iter()
            .filter(|d| d.is_error())
            .map(describe),
    );
    if !problems.is_empty() {
        return Err(HarnessError::Render { problems });
    }
    kforge_machine::render_cluster(&cluster, &ClusterSecrets::from_bundle(bundle), &reader).map_err(
        |d| HarnessError::Render {
            problems: d.iter().map(describe).collect(),
        },
    )
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// Reads up to the last `max` bytes of a log file.
fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return "(no log)".into();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

/// One node process.
pub struct SimNode {
    pub hostname: String,
    pub address: IpAddr,
    pub control_plane: bool,
    /// Kernel arguments the node was started with (`--kernel-args`).
    pub kernel_args: Vec<String>,
    pub expectations: Vec<Expectation>,
    state_dir: PathBuf,
    log_path: PathBuf,
    binary: PathBuf,
    args: Vec<String>,
    boot_timeout: Duration,
    child: Option<Child>,
}

impl SimNode {
    /// `address:50000`.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.address, DEFAULT_API_PORT)
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last few kB of the node's log.
    pub fn log_tail(&self) -> String {
        tail(&self.log_path, 4096)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The node's control socket.
    pub fn control(&self) -> ControlClient {
        ControlClient::new(crate::layout::Layout::new(&self.state_dir).control_socket())
    }

    /// Whether the process is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|source| HarnessError::Io {
                operation: "open the node log",
                path: self.log_path.clone(),
                source,
            })?;
        let mut command = Command::new(&self.binary);
        command
            .args(&self.args)
            // Dies with this process, even a SIGKILLed one: no node outlives a test or demo.
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .process_group(0);
        let child = command.spawn().map_err(|source| HarnessError::Spawn {
            address: self.address,
            source,
        })?;
        self.child = Some(child);
        Ok(())
    }

    /// Starts the process (again) and waits until it listens on its API port.
    pub async fn start(&mut self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Ok(());
        }
        self.spawn()?;
        self.wait_listening(self.boot_timeout).await
    }

    /// Waits until the node accepts TCP connections on its API port.
    pub async fn wait_listening(&mut self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        let addr = (self.address, DEFAULT_API_PORT);
        loop {
            if let Some(c) = &mut self.child
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(HarnessError::Exited {
                    address: self.address,
                    status: status.to_string(),
                    log: self.log_tail(),
                });
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    address: self.address,
                    what: "listen on its API port".into(),
                    timeout,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL to the node's process group (the node and its etcd), then reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = child.wait();
        }
    }

    /// SIGTERM (graceful: etcd is stopped cleanly), SIGKILL to the group after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(child) = &mut self.child else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
    }

    /// Kills the process and starts it again on the same state directory.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill();
        self.start().await
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Root {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Root {
    fn path(&self) -> &Path {
        match self {
            Root::Temporary(t) => t.path(),
            Root::Kept(p) => p,
        }
    }
}

/// A running simulated cluster. Dropping it kills every node (and etcd).
pub struct SimCluster {
    // Declared first: nodes are killed before the directory goes.
    nodes: Vec<SimNode>,
    configs: Vec<SecretString>,
    rendered: Vec<kforge_machine::RenderedNode>,
    bundle: SecretsBundle,
    admin: IssuedCertificate,
    name: String,
    vip: Option<IpAddr>,
    root: Root,
}

impl SimCluster {
    /// Renders the configs and starts every node (in maintenance mode); returns once all
    /// of them listen.
    pub async fn start(spec: ClusterSpec, binary: &SimBinary) -> Result<SimCluster, HarnessError> {
        if !binary.path().is_file() {
            return Err(HarnessError::BinaryMissing {
                looked: binary.path().display().to_string(),
            });
        }
        if spec.control_planes > 0 && find_in_path("etcd").is_none() {
            return Err(HarnessError::EtcdMissing);
        }
        let bundle = match &spec.secrets {
            Some(b) => b.clone(),
            None => {
                SecretsBundle::generate(SystemTime::now()).map_err(|source| HarnessError::Pki {
                    operation: "generate a secrets bundle",
                    source,
                })?
            }
        };
        let rendered_nodes = render_nodes(&spec, &bundle)?;
        SimCluster::start_rendered(spec, rendered_nodes, bundle, binary).await
    }

    /// Starts one node (in maintenance mode) per rendered config — configs rendered
    /// elsewhere, e.g. by `kforge demo` from a real cluster file; `spec` gives the name,
    /// delays, the VIP and the state directory (its node counts and subnet are not used).
    /// Returns once every node listens.
    pub async fn start_rendered(
        spec: ClusterSpec,
        rendered_nodes: Vec<kforge_machine::RenderedNode>,
        bundle: SecretsBundle,
        binary: &SimBinary,
    ) -> Result<SimCluster, HarnessError> {
        if !binary.path().is_file() {
            return Err(HarnessError::BinaryMissing {
                looked: binary.path().display().to_string(),
            });
        }
        if rendered_nodes.iter().any(|n| n.control_plane) && find_in_path("etcd").is_none() {
            return Err(HarnessError::EtcdMissing);
        }
        let rendered = rendered_nodes
            .iter()
            .map(rendered_config)
            .collect::<Result<Vec<_>, _>>()?;
        let root = match &spec.root {
            Some(p) => {
                crate::layout::create_private_dir(p)?;
                Root::Kept(p.clone())
            }
            None => Root::Temporary(
                tempfile::Builder::new()
                    .prefix("kforge-sim-")
                    .tempdir()
                    .map_err(|source| HarnessError::Io {
                        operation: "create a directory for",
                        path: std::env::temp_dir(),
                        source,
                    })?,
            ),
        };
        let admin = kforge_pki::issue_talos_client_cert(
            &bundle,
            kforge_pki::DEFAULT_TALOS_ROLES,
            SystemTime::now() - Duration::from_secs(60),
            kforge_pki::TALOS_CLIENT_CERT_DEFAULT_TTL,
        )
        .map_err(|source| HarnessError::Pki {
            operation: "issue the admin client certificate",
            source,
        })?;
        let cp_addresses: Vec<IpAddr> = rendered
            .iter()
            .filter(|r| r.control_plane)
            .map(|r| r.address)
            .collect();
        let boot_timeout = spec.boot_delay + Duration::from_secs(20);
        let mut nodes = Vec::new();
        let mut configs = Vec::new();
        for r in rendered {
            let state_dir = root.path().join(r.address.to_string());
            crate::layout::create_private_dir(&state_dir)?;
            let kernel_args: Vec<String> = r
                .expectations
                .iter()
                .filter_map(|e| match e {
                    Expectation::KernelArg(a) => Some(a.clone()),
                    _ => None,
                })
                .collect();
            let mut args = vec![
                "--address".to_string(),
                r.address.to_string(),
                "--state-dir".into(),
                state_dir.display().to_string(),
                "--boot-delay".into(),
                format!("{}ms", spec.boot_delay.as_millis()),
                "--ready-delay".into(),
                format!("{}ms", spec.ready_delay.as_millis()),
                "--meminfo-total".into(),
                spec.meminfo_total.clone(),
                "--talos-version".into(),
                spec.talos_version.clone(),
                "--vip-ttl".into(),
                format!("{}ms", spec.vip_ttl.as_millis()),
                "--kubelet-heartbeat".into(),
                format!("{}ms", spec.kubelet_heartbeat.as_millis()),
                "--node-monitor-grace-period".into(),
                format!("{}ms", spec.node_monitor_grace.as_millis()),
            ];
            for peer in cp_addresses.iter().filter(|a| **a != r.address) {
                args.push("--peer".into());
                args.push(peer.to_string());
            }
            if !kernel_args.is_empty() {
                args.push("--kernel-args".into());
                args.push(kernel_args.join(" "));
            }
            args.extend(spec.extra_args.iter().cloned());
            let args = binary
                .leading_args
                .iter()
                .cloned()
                .chain(args)
                .collect::<Vec<_>>();
            nodes.push(SimNode {
                log_path: state_dir.join("sim.log"),
                hostname: r.hostname,
                address: r.address,
                control_plane: r.control_plane,
                kernel_args,
                expectations: r.expectations,
                state_dir,
                binary: binary.path().to_path_buf(),
                args,
                boot_timeout,
                child: None,
            });
            configs.push(r.config);
        }
        let mut cluster = SimCluster {
            nodes,
            configs,
            rendered: rendered_nodes,
            bundle,
            admin,
            name: spec.name.clone(),
            vip: spec.vip_address(),
            root,
        };
        for node in &mut cluster.nodes {
            node.spawn()?;
        }
        for node in &mut cluster.nodes {
            node.wait_listening(boot_timeout).await?;
        }
        Ok(cluster)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Keeps the state directory after the cluster is dropped; returns its path.
    pub fn keep_state(&mut self) -> PathBuf {
        let path = self.root.path().to_path_buf();
        if let Root::Temporary(t) = std::mem::replace(&mut self.root, Root::Kept(path.clone())) {
            let _ = t.keep();
        }
        path
    }

    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    pub fn nodes_mut(&mut self) -> &mut [SimNode] {
        &mut self.nodes
    }

    pub fn node(&self, address: IpAddr) -> Option<&SimNode> {
        self.nodes.iter().find(|n| n.address == address)
    }

    pub fn node_mut(&mut self, address: IpAddr) -> Option<&mut SimNode> {
        self.nodes.iter_mut().find(|n| n.address == address)
    }

    pub fn control_planes(&self) -> Vec<&SimNode> {
        self.nodes.iter().filter(|n| n.control_plane).collect()
    }

    pub fn workers(&self) -> Vec<&SimNode> {
        self.nodes.iter().filter(|n| !n.control_plane).collect()
    }

    /// The machine config generated for the node at `address`.
    pub fn machine_config(&self, address: IpAddr) -> Option<&SecretString> {
        self.nodes
            .iter()
            .position(|n| n.address == address)
            .map(|i| &self.configs[i])
    }

    pub fn bundle(&self) -> &SecretsBundle {
        &self.bundle
    }

    /// kforge-machine's rendering of every node, in cluster-file order (configs, the
    /// profiles' manifests and expectations).
    pub fn rendered_nodes(&self) -> &[kforge_machine::RenderedNode] {
        &self.rendered
    }

    /// The control plane's VIP, when the spec asked for one.
    pub fn vip(&self) -> Option<IpAddr> {
        self.vip
    }

    /// The admin kubeconfig through the Kubeconfig RPC of the first control-plane node
    /// (its server is the cluster endpoint).
    pub async fn fetch_kubeconfig(&self) -> Result<SecretString, HarnessError> {
        let Some(first) = self.control_planes().first().map(|n| n.endpoint()) else {
            return Err(HarnessError::Render {
                problems: vec!["the cluster has no control-plane node".into()],
            });
        };
        let client = TalosClient::connect(&self.admin_connection(&[first])?)
            .await
            .map_err(|source| HarnessError::Api {
                operation: "connect",
                source: Box::new(source),
            })?;
        client
            .kubeconfig(&Targets::Endpoint)
            .await
            .map_err(|source| HarnessError::Api {
                operation: "Kubeconfig",
                source: Box::new(source),
            })
    }

    /// A Kubernetes client with a fresh admin certificate (`O=system:masters`) for the
    /// API servers at `addresses` (port 6443), tried in turn.
    pub fn kube_client(&self, addresses: &[IpAddr]) -> Result<KubeClient, HarnessError> {
        let pki = |operation| move |source| HarnessError::Pki { operation, source };
        let admin = kforge_pki::issue_kube_admin_client_cert(
            &self.bundle,
            SystemTime::now() - Duration::from_secs(60),
            Duration::from_secs(3600),
        )
        .map_err(pki("issue a Kubernetes admin certificate"))?;
        let ca = self
            .bundle
            .k8s_ca_crt_pem()
            .map_err(pki("read the Kubernetes CA"))?;
        let tls = crate::k8s::certs::client_tls(
            &ca,
            Some(&crate::pki::CertKey {
                crt_pem: admin.crt_pem,
                key_pem: admin.key_pem,
            }),
        )?;
        let servers = addresses
            .iter()
            .map(|a| SocketAddr::new(*a, DEFAULT_K8S_PORT))
            .collect();
        Ok(KubeClient::new(servers, tls, None))
    }

    /// Waits until every node is registered with Kubernetes and Ready (asking the
    /// control planes' API servers).
    pub async fn wait_for_kubernetes(&self, timeout: Duration) -> Result<(), HarnessError> {
        let cps: Vec<IpAddr> = self.control_planes().iter().map(|n| n.address).collect();
        let client = self.kube_client(&cps)?.with_timeout(Duration::from_secs(3));
        let want: Vec<&str> = self.nodes.iter().map(|n| n.hostname.as_str()).collect();
        let deadline = Instant::now() + timeout;
        loop {
            let last = match client.get("/api/v1/nodes").await {
                Ok(list) => {
                    let items = list
                        .get("items")
                        .and_then(serde_json::Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let ready = |name: &str| {
                        items.iter().any(|n| {
                            n.pointer("/metadata/name")
                                .and_then(serde_json::Value::as_str)
                                == Some(name)
                                && crate::k8s::controllers::is_ready(n)
                        })
                    };
                    let waiting: Vec<&str> = want.iter().copied().filter(|n| !ready(n)).collect();
                    if waiting.is_empty() {
                        return Ok(());
                    }
                    format!("not Ready: {}", waiting.join(", "))
                }
                Err(e) => crate::error::error_chain(&e),
            };
            if Instant::now() >= deadline {
                return Err(HarnessError::KubeTimeout {
                    what: format!("report all {} nodes Ready", want.len()),
                    timeout,
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The control-plane nodes that hold the VIP now (from their control sockets).
    pub async fn vip_holders(&self) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for n in self.control_planes() {
            if let Ok(text) = n.control().send("status").await
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && v.get("vip_held").and_then(serde_json::Value::as_bool) == Some(true)
            {
                out.push(n.address);
            }
        }
        out
    }

    /// talosctl's client config: endpoints = control-plane nodes, nodes = all nodes.
    pub fn talosconfig(&self) -> Talosconfig {
        let endpoints: Vec<String> = self
            .control_planes()
            .iter()
            .map(|n| n.address.to_string())
            .collect();
        let nodes: Vec<String> = self.nodes.iter().map(|n| n.address.to_string()).collect();
        Talosconfig::for_cluster(
            &self.name,
            &endpoints,
            &nodes,
            &self.bundle,
            &self.admin.crt_pem,
            &self.admin.key_pem,
        )
    }

    /// Mutual TLS as `os:admin` to `endpoints` (`host[:port]`).
    pub fn admin_connection<S: AsRef<str>>(
        &self,
        endpoints: &[S],
    ) -> Result<ConnectionConfig, HarnessError> {
        let ca = self.os_ca_pem()?;
        ConnectionConfig::mutual_tls(endpoints, &ca, &self.admin.crt_pem, &self.admin.key_pem)
            .map_err(|source| HarnessError::Api {
                operation: "build the admin connection",
                source: Box::new(source),
            })
    }

    /// Mutual TLS with a fresh certificate carrying `roles` (e.g. `os:reader`).
    pub fn connection_with_roles<S: AsRef<str>>(
        &self,
        endpoints: &[S],
        roles: &[&str],
    ) -> Result<ConnectionConfig, HarnessError> {
        let cert = kforge_pki::issue_talos_client_cert(
            &self.bundle,
            roles,
            SystemTime::now() - Duration::from_secs(60),
            Duration::from_secs(3600),
        )
        .map_err(|source| HarnessError::Pki {
            operation: "issue a client certificate",
            source,
        })?;
        let ca = self.os_ca_pem()?;
        ConnectionConfig::mutual_tls(endpoints, &ca, &cert.crt_pem, &cert.key_pem).map_err(
            |source| HarnessError::Api {
                operation: "build a connection",
                source: Box::new(source),
            },
        )
    }

    /// Maintenance-mode TLS (no client certificate, server not verified).
    pub fn insecure_connection<S: AsRef<str>>(
        &self,
        endpoints: &[S],
    ) -> Result<ConnectionConfig, HarnessError> {
        ConnectionConfig::insecure(endpoints).map_err(|source| HarnessError::Api {
            operation: "build an insecure connection",
            source: Box::new(source),
        })
    }

    fn os_ca_pem(&self) -> Result<String, HarnessError> {
        self.bundle
            .os_ca_crt_pem()
            .map_err(|source| HarnessError::Pki {
                operation: "read the OS CA",
                source,
            })
    }

    /// An etcd client of the member at `address` (a fresh client certificate from the
    /// etcd CA).
    pub fn etcd_client(&self, address: IpAddr) -> Result<EtcdClient, HarnessError> {
        let now = SystemTime::now() - Duration::from_secs(60);
        let cert = kforge_pki::issue_etcd_client_cert(
            &self.bundle,
            "kforge-sim-harness",
            now,
            Duration::from_secs(3600),
        )
        .map_err(|source| HarnessError::Pki {
            operation: "issue an etcd client certificate",
            source,
        })?;
        let ca = self
            .bundle
            .etcd_ca_crt_pem()
            .map_err(|source| HarnessError::Pki {
                operation: "read the etcd CA",
                source,
            })?;
        let tls = crate::pki::client_config(
            "connect to etcd",
            &ca,
            Some(&crate::pki::CertKey {
                crt_pem: cert.crt_pem,
                key_pem: cert.key_pem,
            }),
        )?;
        Ok(EtcdClient::new(address, DEFAULT_ETCD_CLIENT_PORT, tls)?)
    }

    /// Applies every node's config in maintenance mode (insecure, mode AUTO).
    pub async fn apply_configs(&self) -> Result<(), HarnessError> {
        for (node, config) in self.nodes.iter().zip(&self.configs) {
            let conn = self.insecure_connection(&[node.endpoint()])?;
            let client = TalosClient::connect(&conn)
                .await
                .map_err(|source| HarnessError::Api {
                    operation: "connect in maintenance mode",
                    source: Box::new(source),
                })?;
            let replies = client
                .apply_configuration(
                    &Targets::Endpoint,
                    config.expose().as_bytes(),
                    ApplyOptions::new(ApplyMode::Auto),
                )
                .await
                .map_err(|source| HarnessError::Api {
                    operation: "ApplyConfiguration",
                    source: Box::new(source),
                })?;
            for r in replies {
                if let Err(e) = r.result {
                    return Err(HarnessError::NodeFailed {
                        operation: "ApplyConfiguration",
                        node: node.address.to_string(),
                        message: e.message,
                    });
                }
            }
        }
        Ok(())
    }

    /// Waits until every node answers `Version` over mutual TLS.
    pub async fn wait_for_apid(&self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        for node in &self.nodes {
            let conn = self
                .admin_connection(&[node.endpoint()])?
                .with_retry(RetryPolicy::none())
                .with_call_timeout(Duration::from_secs(2));
            let client = TalosClient::connect(&conn)
                .await
                .map_err(|source| HarnessError::Api {
                    operation: "connect",
                    source: Box::new(source),
                })?;
            loop {
                match client.version(&Targets::Endpoint).await {
                    Ok(replies) if replies.iter().all(|r| r.result.is_ok()) => break,
                    _ if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    _ => {
                        return Err(HarnessError::Timeout {
                            address: node.address,
                            what: "answer Version over mutual TLS".into(),
                            timeout,
                            log: node.log_tail(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Bootstraps etcd on the first control-plane node (retrying while it is not ready).
    pub async fn bootstrap(&self) -> Result<BootstrapOutcome, HarnessError> {
        let Some(first) = self.control_planes().first().map(|n| n.endpoint()) else {
            return Err(HarnessError::Render {
                problems: vec!["the cluster has no control-plane node".into()],
            });
        };
        let client = TalosClient::connect(&self.admin_connection(&[first])?)
            .await
            .map_err(|source| HarnessError::Api {
                operation: "connect",
                source: Box::new(source),
            })?;
        client
            .bootstrap(&Targets::Endpoint, BootstrapOptions::default())
            .await
            .map_err(|source| HarnessError::Api {
                operation: "Bootstrap",
                source: Box::new(source),
            })
    }

    /// Waits until the first control-plane node lists `count` voting etcd members.
    pub async fn wait_for_etcd_members(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<EtcdMember>, HarnessError> {
        let Some(first) = self
            .control_planes()
            .first()
            .map(|n| (n.endpoint(), n.address, n.log_tail()))
        else {
            return Ok(Vec::new());
        };
        let conn = self
            .admin_connection(&[first.0])?
            .with_retry(RetryPolicy::none())
            .with_call_timeout(Duration::from_secs(3));
        let client = TalosClient::connect(&conn)
            .await
            .map_err(|source| HarnessError::Api {
                operation: "connect",
                source: Box::new(source),
            })?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(replies) = client.etcd_member_list(&Targets::Endpoint, false).await
                && let Some(Ok(members)) = replies.into_iter().next().map(|r| r.result)
            {
                let voting = members.members.iter().filter(|m| !m.is_learner).count();
                if voting == count && members.members.len() == count {
                    return Ok(members.members);
                }
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    address: first.1,
                    what: format!("list {count} voting etcd members"),
                    timeout,
                    log: first.2,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Start, apply every config, wait for apid, bootstrap, wait for every control-plane
    /// node to be a voting etcd member and every node to be Ready in Kubernetes: a
    /// cluster ready for `kforge` commands that expect a bootstrapped cluster.
    pub async fn up(spec: ClusterSpec, binary: &SimBinary) -> Result<SimCluster, HarnessError> {
        let cps = spec.control_planes;
        let timeout = spec.boot_delay + spec.ready_delay + Duration::from_secs(30);
        let cluster = SimCluster::start(spec, binary).await?;
        cluster.apply_configs().await?;
        cluster.wait_for_apid(timeout).await?;
        if cps > 0 {
            cluster.bootstrap().await?;
            cluster.wait_for_etcd_members(cps, timeout).await?;
            cluster.wait_for_kubernetes(timeout).await?;
        }
        Ok(cluster)
    }
}
