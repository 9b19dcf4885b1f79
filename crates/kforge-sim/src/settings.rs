//! What a simulated node is told when it starts: its address and ports, where its state
//! lives, how long it takes to boot, how much memory it pretends to have, which other
//! control-plane nodes it can find etcd and trustd on, and faults to start with.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use kforge_machine::nodeconfig::Mode;

use crate::SimError;

/// apid's port (`constants.ApidPort`).
pub const DEFAULT_API_PORT: u16 = 50000;
/// trustd's port (`constants.TrustdPort`).
pub const DEFAULT_TRUSTD_PORT: u16 = 50001;
pub const DEFAULT_ETCD_CLIENT_PORT: u16 = 2379;
pub const DEFAULT_ETCD_PEER_PORT: u16 = 2380;
/// The kube-apiserver's port.
pub const DEFAULT_K8S_PORT: u16 = 6443;
/// The VIP lease (Talos campaigns with a short etcd session too).
pub const DEFAULT_VIP_TTL: Duration = Duration::from_secs(3);
/// How often a kubelet posts its node status (the kubelet's `nodeStatusUpdateFrequency`).
pub const DEFAULT_KUBELET_HEARTBEAT: Duration = Duration::from_secs(10);
/// How long without status before a node is `Unknown` (the controller manager's
/// `--node-monitor-grace-period`).
pub const DEFAULT_NODE_MONITOR_GRACE: Duration = Duration::from_secs(40);
/// CPUs a node reports unless told otherwise.
pub const DEFAULT_CPUS: u32 = 4;
/// Memory a node reports unless told otherwise.
pub const DEFAULT_MEMINFO_TOTAL_KIB: u64 = 16 * 1024 * 1024;
/// The Talos version of the "ISO" a node boots into maintenance mode with.
pub const DEFAULT_TALOS_VERSION: &str = "v1.12.0";

/// Faults that change how the node answers (see [`crate::control`] to toggle them at run
/// time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Faults {
    /// apid and trustd stop listening: connections are refused.
    pub refuse: bool,
    /// The node hangs: TCP connections are accepted but never answered, existing
    /// connections stall, and etcd is frozen (SIGSTOP).
    pub pause: bool,
}

/// Settings of one node process.
#[derive(Clone, Debug)]
pub struct SimSettings {
    /// The node's own address; every listener binds to it.
    pub address: IpAddr,
    /// Where the node keeps its state (survives restarts of the process).
    pub state_dir: PathBuf,
    pub api_port: u16,
    pub trustd_port: u16,
    pub etcd_client_port: u16,
    pub etcd_peer_port: u16,
    /// The kube-apiserver's port (control-plane nodes; also on the VIP).
    pub k8s_port: u16,
    /// TTL of the etcd lease behind the VIP: how long a holder that lost etcd may keep
    /// it, and how long until another control plane takes over (at least 2 s).
    pub vip_ttl: Duration,
    /// Kubelet status interval.
    pub kubelet_heartbeat: Duration,
    /// Node monitor grace period of the controller manager.
    pub node_monitor_grace: Duration,
    /// CPUs the node reports to Kubernetes.
    pub cpus: u32,
    /// How long the node is unreachable after start, reboot or apply (firmware, kernel).
    pub boot_delay: Duration,
    /// How long after apid comes up the node keeps booting (Bootstrap answers
    /// "bootstrap is not available yet", etcd is not started).
    pub ready_delay: Duration,
    pub meminfo_total_kib: u64,
    /// Version reported before a config names an installer image.
    pub talos_version: String,
    /// Platform mode used to validate applied configs.
    pub validation_mode: Mode,
    /// Other control-plane nodes (address or address:port of their apid); used to find an
    /// etcd cluster to join and a trustd to sign worker certificates. The cluster
    /// endpoint's host is tried too.
    pub peers: Vec<String>,
    /// Kernel arguments the installed image carries (for Talos ≥ 1.12 they live in the
    /// image's schematic, which cannot be resolved offline).
    pub kernel_args: Vec<String>,
    pub etcd_binary: PathBuf,
    /// The control socket; default `<state-dir>/run/control.sock`.
    pub control_socket: Option<PathBuf>,
    pub faults: Faults,
}

impl SimSettings {
    /// Defaults for a node at `address` keeping state in `state_dir`.
    pub fn new(address: IpAddr, state_dir: impl Into<PathBuf>) -> Self {
        SimSettings {
            address,
            state_dir: state_dir.into(),
            api_port: DEFAULT_API_PORT,
            trustd_port: DEFAULT_TRUSTD_PORT,
            etcd_client_port: DEFAULT_ETCD_CLIENT_PORT,
            etcd_peer_port: DEFAULT_ETCD_PEER_PORT,
            k8s_port: DEFAULT_K8S_PORT,
            vip_ttl: DEFAULT_VIP_TTL,
            kubelet_heartbeat: DEFAULT_KUBELET_HEARTBEAT,
            node_monitor_grace: DEFAULT_NODE_MONITOR_GRACE,
            cpus: DEFAULT_CPUS,
            boot_delay: Duration::from_secs(2),
            ready_delay: Duration::from_secs(1),
            meminfo_total_kib: DEFAULT_MEMINFO_TOTAL_KIB,
            talos_version: DEFAULT_TALOS_VERSION.to_string(),
            validation_mode: Mode::Metal,
            peers: Vec::new(),
            kernel_args: Vec::new(),
            etcd_binary: PathBuf::from("etcd"),
            control_socket: None,
            faults: Faults::default(),
        }
    }

    /// Checks what cannot be checked by types alone, reporting every problem.
    pub fn validate(&self) -> Result<(), SimError> {
        let mut problems = Vec::new();
        let ports = [
            ("--port", self.api_port),
            ("--trustd-port", self.trustd_port),
            ("--etcd-client-port", self.etcd_client_port),
            ("--etcd-peer-port", self.etcd_peer_port),
            ("--k8s-port", self.k8s_port),
        ];
        for (i, (name, port)) in ports.iter().enumerate() {
            if *port == 0 {
                problems.push(format!("{name} must not be 0"));
            }
            for (other, other_port) in &ports[i + 1..] {
                if port == other_port {
                    problems.push(format!("{name} and {other} are both {port}"));
                }
            }
        }
        if self.address.is_unspecified() {
            problems.push(format!(
                "--address {} is unspecified; give the node's own address (e.g. 127.0.0.11)",
                self.address
            ));
        }
        if self.vip_ttl < crate::vip::MIN_TTL {
            problems.push(format!(
                "--vip-ttl must be at least {:?} (etcd's smallest lease)",
                crate::vip::MIN_TTL
            ));
        }
        if self.kubelet_heartbeat.is_zero() {
            problems.push("--kubelet-heartbeat must not be 0".into());
        }
        if self.node_monitor_grace <= self.kubelet_heartbeat {
            problems.push(format!(
                "--node-monitor-grace-period ({:?}) must be longer than --kubelet-heartbeat ({:?})",
                self.node_monitor_grace, self.kubelet_heartbeat
            ));
        }
        if self.cpus == 0 {
            problems.push("--cpus must be at least 1".into());
        }
        if self.meminfo_total_kib < 1024 {
            problems.push("--meminfo-total must be at least 1MiB".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SimError::Setting {
                setting: "settings",
                reason: problems.join("; "),
            })
        }
    }
}

/// Parses a memory size such as `512GiB`, `16G`, `2048MiB`, `1048576KiB` or `1048576kB`
/// (all binary multiples, as /proc/meminfo's kB are KiB) into KiB.
pub fn parse_size_kib(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(format!("`{text}` does not start with a number"));
    }
    let number: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("`{text}` is too large"))?;
    let multiplier: u64 = match s[digits..].trim() {
        "" | "B" => return Ok(number / 1024),
        "k" | "K" | "kB" | "KB" | "KiB" => 1,
        "M" | "MB" | "MiB" => 1024,
        "G" | "GB" | "GiB" => 1024 * 1024,
        "T" | "TB" | "TiB" => 1024 * 1024 * 1024,
        unit => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}` (expected KiB, MiB, GiB or TiB)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses a duration such as `2s`, `500ms` or `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size_kib("512GiB").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_size_kib("16G").unwrap(), 16 * 1024 * 1024);
        assert_eq!(parse_size_kib("2048MiB").unwrap(), 2 * 1024 * 1024);
        assert_eq!(parse_size_kib("1000 kB").unwrap(), 1000);
        assert!(parse_size_kib("12XB").unwrap_err().contains("unknown unit"));
        assert!(parse_size_kib("GiB").is_err());
    }

    #[test]
    fn settings_problems_are_all_reported() {
        let mut s = SimSettings::new("0.0.0.0".parse().unwrap(), "/tmp/x");
        s.trustd_port = s.api_port;
        s.etcd_peer_port = 0;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("--port and --trustd-port"), "{err}");
        assert!(err.contains("--etcd-peer-port must not be 0"), "{err}");
        assert!(err.contains("unspecified"), "{err}");
    }
}
