//! The simulated kubelet of a node: TLS bootstrap (a certificate request made with the
//! bootstrap token, approved and signed by the controller manager), registration of the
//! Node (labels, taints — server-side apply as field manager `kubelet`), and a status
//! heartbeat (conditions, capacity and allocatable with huge pages, addresses, node
//! info) through the status subresource, as long as the `kubelet` service runs. When it
//! stops posting, the node lifecycle controller marks the node `Unknown`.
//!
//! Also the KubeletConfiguration Talos writes to `/etc/kubernetes/kubelet.yaml`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::Method;
use kforge_secret::SecretString;
use serde_json::{Map, Value, json};

use crate::k8s::certs;
use crate::k8s::client::{KubeClient, KubeClientError};
use crate::k8s::meta;
use crate::kernel::HugePages;
use crate::pki::CertKey;

/// Where Talos writes the kubelet's configuration.
pub const KUBELET_CONFIG_PATH: &str = "/etc/kubernetes/kubelet.yaml";
/// Pods a kubelet admits by default.
const MAX_PODS: u64 = 110;
/// How long the kubelet waits for its certificate request to be signed per attempt.
const CSR_WAIT: Duration = Duration::from_secs(10);

/// Everything a kubelet reports about its node.
#[derive(Clone)]
pub struct KubeletSpec {
    pub node_name: String,
    pub address: IpAddr,
    pub control_plane: bool,
    /// `machine.nodeLabels`.
    pub node_labels: Vec<(String, String)>,
    /// `machine.nodeTaints` (key → `value:Effect`).
    pub node_taints: Vec<(String, String)>,
    pub allow_scheduling_on_control_planes: bool,
    pub cpus: u32,
    pub memory_kib: u64,
    pub hugepages: HugePages,
    /// `machine.kubelet.extraConfig`.
    pub extra_config: Value,
    pub kubelet_version: String,
    pub talos_version: String,
}

/// Bytes of a quantity (`16Gi`, `100Mi`, `512`); None if unreadable.
pub fn quantity_bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let mult: u128 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return None,
    };
    if let Ok(n) = num.parse::<u128>() {
        return n.checked_mul(mult);
    }
    let f: f64 = num.parse().ok()?;
    Some((f * mult as f64).round() as u128)
}

/// Bytes as Kubernetes prints a binary quantity: the largest unit that divides evenly.
pub fn format_bytes(bytes: u128) -> String {
    if bytes == 0 {
        return "0".into();
    }
    for (unit, size) in [
        ("Ti", 1u128 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// The number of CPUs in a cpuset (`0-3,8` → 5).
fn cpuset_len(set: &str) -> Option<u32> {
    let mut n = 0u32;
    for part in set.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.parse::<u32>().ok()?;
                n += 1;
            }
        }
    }
    Some(n)
}

/// The capacity key of a huge page size in KiB.
fn hugepages_resource(size_kib: u64) -> String {
    format!("hugepages-{}", format_bytes(u128::from(size_kib) * 1024))
}

impl KubeletSpec {
    /// The node's labels: the kubelet's well-known ones, Talos's control-plane role, then
    /// `machine.nodeLabels`.
    pub fn labels(&self) -> Map<String, Value> {
        let arch = std::env::consts::ARCH
            .replace("x86_64", "amd64")
            .replace("aarch64", "arm64");
        let mut l = Map::new();
        l.insert("beta.kubernetes.io/arch".into(), json!(arch));
        l.insert("beta.kubernetes.io/os".into(), json!("linux"));
        l.insert("kubernetes.io/arch".into(), json!(arch));
        l.insert("kubernetes.io/hostname".into(), json!(self.node_name));
        l.insert("kubernetes.io/os".into(), json!("linux"));
        if self.control_plane {
            l.insert("node-role.kubernetes.io/control-plane".into(), json!(""));
            l.insert(
                "node.kubernetes.io/exclude-from-external-load-balancers".into(),
                json!(""),
            );
        }
        for (k, v) in &self.node_labels {
            l.insert(k.clone(), json!(v));
        }
        l
    }

    /// The node's taints: control planes are `NoSchedule` unless scheduling on them is
    /// allowed; then `machine.nodeTaints`.
    pub fn taints(&self) -> Vec<Value> {
        let mut out = Vec::new();
        if self.control_plane && !self.allow_scheduling_on_control_planes {
            out.push(
                json!({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}),
            );
        }
        for (key, spec) in &self.node_taints {
            let (value, effect) = match spec.rsplit_once(':') {
                Some((v, e)) => (v.to_string(), e.to_string()),
                None => (String::new(), spec.clone()),
            };
            let mut t = json!({"key": key, "effect": effect});
            if !value.is_empty() {
                t["value"] = json!(value);
            }
            out.push(t);
        }
        out
    }

    /// What the kubelet applies to register.
    pub fn registration(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": Value::Object(self.labels())},
            "spec": {"taints": self.taints()},
        })
    }

    fn extra_quantity(&self, pointer: &str) -> u128 {
        self.extra_config
            .pointer(pointer)
            .and_then(Value::as_str)
            .and_then(quantity_bytes)
            .unwrap_or(0)
    }

    /// `status.capacity` and `status.allocatable`.
    pub fn resources(&self) -> (Value, Value) {
        let memory = u128::from(self.memory_kib) * 1024;
        let mut capacity = Map::new();
        capacity.insert("cpu".into(), json!(self.cpus.to_string()));
        capacity.insert("ephemeral-storage".into(), json!("104857600Ki"));
        capacity.insert("memory".into(), json!(format_bytes(memory)));
        capacity.insert("pods".into(), json!(MAX_PODS.to_string()));
        let mut huge_total = 0u128;
        for size in [2048u64, 1 << 20] {
            let pages = self
                .hugepages
                .pools
                .iter()
                .find(|p| p.size_kib == size)
                .map_or(0, |p| p.pages);
            let bytes = u128::from(pages) * u128::from(size) * 1024;
            huge_total += bytes;
            capacity.insert(hugepages_resource(size), json!(format_bytes(bytes)));
        }
        let mut allocatable = capacity.clone();
        let reserved_cpus = self
            .extra_config
            .get("reservedSystemCPUs")
            .and_then(Value::as_str)
            .and_then(cpuset_len)
            .unwrap_or(0);
        allocatable.insert(
            "cpu".into(),
            json!(self.cpus.saturating_sub(reserved_cpus).to_string()),
        );
        let eviction = match self.extra_config.pointer("/evictionHard/memory.available") {
            Some(_) => self.extra_quantity("/evictionHard/memory.available"),
            None => 100 << 20,
        };
        let reserved = self.extra_quantity("/systemReserved/memory")
            + self.extra_quantity("/kubeReserved/memory")
            + eviction
            + huge_total;
        // Kubernetes prints allocatable memory in Ki.
        let left = memory.saturating_sub(reserved) / 1024;
        allocatable.insert("memory".into(), json!(format!("{left}Ki")));
        (Value::Object(capacity), Value::Object(allocatable))
    }

    /// `status` with the Ready condition (`lastTransitionTime` = `since`).
    pub fn status(&self, now: &str, since: &str) -> Value {
        let (capacity, allocatable) = self.resources();
        let condition = |kind: &str, status: &str, reason: &str, message: &str| {
            json!({
                "type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": since,
            })
        };
        let id = {
            use sha2::Digest;
            let d = sha2::Sha256::digest(self.node_name.as_bytes());
            d.iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        json!({
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.address.to_string()},
                {"type": "Hostname", "address": self.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": id,
                "systemUUID": id,
                "bootID": id,
                "kernelVersion": "6.12.62-talos",
                "osImage": format!("Talos ({})", self.talos_version),
                "containerRuntimeVersion": "containerd://2.1.5",
                "kubeletVersion": self.kubelet_version,
                "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
            },
        })
    }
}

/// `/etc/kubernetes/kubelet.yaml`: Talos's KubeletConfiguration with
/// `machine.kubelet.extraConfig` merged over it (`cpuManagerPolicy` stays absent — the
/// kubelet default `none` — unless set).
pub fn kubelet_configuration(extra_config: &Value) -> String {
    let mut config = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "0.0.0.0",
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"cacheTTL": "0s", "enabled": true},
            "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"},
        },
        "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "0s", "cacheUnauthorizedTTL": "0s"}},
        "cgroupRoot": "/",
        "clusterDNS": ["10.96.0.10"],
        "clusterDomain": "cluster.local",
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
        "failSwapOn": false,
        "port": 10250,
        "protectKernelDefaults": true,
        "rotateCertificates": true,
        "serializeImagePulls": false,
        "shutdownGracePeriod": "30s",
        "shutdownGracePeriodCriticalPods": "10s",
        "staticPodPath": "/etc/kubernetes/manifests",
        "systemReserved": {"cpu": "50m", "ephemeral-storage": "256Mi", "memory": "192Mi", "pid": "100"},
        "tlsMinVersion": "VersionTLS13",
    });
    json_patch::merge(&mut config, extra_config);
    kforge_yaml::to_string_with(&config, kforge_yaml::EmitOptions { indent: 4 })
}

/// How the kubelet reaches the API.
pub struct KubeletConnection {
    /// API servers to try (own address first on a control plane, then the VIP or
    /// endpoint, then the other control planes).
    pub servers: Vec<SocketAddr>,
    pub k8s_ca_pem: String,
    pub bootstrap_token: SecretString,
}

/// What drives a kubelet: whether its service runs, whether its boot is still current,
/// where to log.
pub struct KubeletHooks {
    pub running: Arc<dyn Fn() -> bool + Send + Sync>,
    pub log: Arc<dyn Fn(&str) + Send + Sync>,
}

/// Obtains a client certificate: a CSR with the bootstrap token, then waits for the
/// controller manager to sign it.
async fn bootstrap(spec: &KubeletSpec, conn: &KubeletConnection) -> Result<CertKey, String> {
    let tls = certs::client_tls(&conn.k8s_ca_pem, None).map_err(|e| e.to_string())?;
    let client = KubeClient::new(
        conn.servers.clone(),
        tls,
        Some(conn.bootstrap_token.clone()),
    );
    let (csr_pem, key_pem) = certs::kubelet_csr(&spec.node_name).map_err(|e| e.to_string())?;
    let name = format!("node-csr-{}", meta::random_suffix(10));
    let body = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(csr_pem.as_bytes()),
            "signerName": certs::KUBELET_CLIENT_SIGNER,
            "usages": ["digital signature", "client auth"],
        },
    });
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    client
        .request(Method::POST, path, Some(("application/json", &bytes)))
        .await
        .map_err(|e| error_text(&e))?;
    let deadline = tokio::time::Instant::now() + CSR_WAIT;
    loop {
        let csr = client
            .get(&format!("{path}/{name}"))
            .await
            .map_err(|e| error_text(&e))?;
        if let Some(cert) = csr.pointer("/status/certificate").and_then(Value::as_str) {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(cert)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or("the signed certificate is not base64 PEM")?;
            return Ok(CertKey {
                crt_pem: pem,
                key_pem,
            });
        }
        let refused = csr
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| {
                matches!(
                    c.get("type").and_then(Value::as_str),
                    Some("Denied" | "Failed")
                )
            });
        if let Some(c) = refused {
            return Err(format!(
                "certificate request {name} was refused: {}",
                c.get("message").and_then(Value::as_str).unwrap_or_default()
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "certificate request {name} was not signed within {CSR_WAIT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn error_text(e: &KubeClientError) -> String {
    crate::error::error_chain(e)
}

/// Runs a kubelet until the task is aborted: bootstraps, registers, heartbeats every
/// `heartbeat` while `hooks.running()`.
pub async fn run(
    spec: KubeletSpec,
    conn: KubeletConnection,
    heartbeat: Duration,
    hooks: KubeletHooks,
) {
    let mut client: Option<KubeClient> = None;
    let mut registered = false;
    let mut ready_since: Option<String> = None;
    let mut last_error = String::new();
    // Until a status post succeeds, retry sooner than the heartbeat (as the kubelet's
    // registration backoff does).
    let retry = heartbeat.min(Duration::from_secs(1));
    let mut pause = Duration::ZERO;
    loop {
        tokio::time::sleep(pause).await;
        pause = retry;
        if !(hooks.running)() {
            // A stopped kubelet posts nothing; its next start is a new Ready transition.
            ready_since = None;
            continue;
        }
        let result = async {
            if client.is_none() {
                let identity = bootstrap(&spec, &conn).await?;
                let tls = certs::client_tls(&conn.k8s_ca_pem, Some(&identity))
                    .map_err(|e| e.to_string())?;
                client = Some(KubeClient::new(conn.servers.clone(), tls, None));
                (hooks.log)("kubelet: client certificate signed (TLS bootstrap)");
            }
            let Some(c) = &client else {
                return Err("no client".to_string());
            };
            let node_path = format!("/api/v1/nodes/{}", spec.node_name);
            if !registered {
                let body = serde_json::to_vec(&spec.registration()).unwrap_or_default();
                c.request(
                    Method::PATCH,
                    &format!("{node_path}?fieldManager=kubelet&force=true"),
                    Some(("application/apply-patch+yaml", &body)),
                )
                .await
                .map_err(|e| error_text(&e))?;
                registered = true;
                (hooks.log)(&format!("kubelet: registered node {}", spec.node_name));
            }
            let now = meta::now();
            let since = ready_since.get_or_insert_with(|| now.clone()).clone();
            let patch = json!({"status": spec.status(&now, &since)});
            let body = serde_json::to_vec(&patch).unwrap_or_default();
            match c
                .request(
                    Method::PATCH,
                    &format!("{node_path}/status?fieldManager=kubelet"),
                    Some(("application/merge-patch+json", &body)),
                )
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.status() == Some(404) => {
                    // Deleted: register again next time.
                    registered = false;
                    Err(error_text(&e))
                }
                Err(e) => Err(error_text(&e)),
            }
        }
        .await;
        match result {
            Ok(()) => {
                last_error.clear();
                pause = heartbeat;
            }
            Err(e) => {
                if e != last_error {
                    (hooks.log)(&format!("kubelet: {e}"));
                    last_error = e;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::HugePagePool;

    fn spec(control_plane: bool) -> KubeletSpec {
        KubeletSpec {
            node_name: "w-1".into(),
            address: "127.0.5.21".parse().unwrap(),
            control_plane,
            node_labels: vec![("kforge.dev/profile".into(), "solana-validator".into())],
            node_taints: vec![
                ("dedicated".into(), "solana:NoSchedule".into()),
                ("gpu".into(), "NoExecute".into()),
            ],
            allow_scheduling_on_control_planes: false,
            cpus: 16,
            memory_kib: 64 << 20,
            hugepages: HugePages {
                default_size_kib: 2048,
                pools: vec![HugePagePool {
                    size_kib: 2048,
                    pages: 4096,
                }],
            },
            extra_config: json!({
                "cpuManagerPolicy": "static",
                "reservedSystemCPUs": "0-1",
                "systemReserved": {"memory": "2Gi"},
                "kubeReserved": {"memory": "2Gi"},
                "evictionHard": {"memory.available": "1Gi"},
            }),
            kubelet_version: "v1.35.0".into(),
            talos_version: "v1.12.0".into(),
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("2Gi"), Some(2 << 30));
        assert_eq!(quantity_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(format_bytes(4096 * 2048 * 1024), "8Gi");
        assert_eq!(format_bytes(50000 * 2048 * 1024), "100000Mi");
        assert_eq!(format_bytes(0), "0");
        assert_eq!(cpuset_len("0-3,8"), Some(5));
        assert_eq!(cpuset_len("x"), None);
    }

    #[test]
    fn labels_taints_and_resources() {
        let w = spec(false);
        let reg = w.registration();
        assert_eq!(reg["metadata"]["labels"]["kubernetes.io/hostname"], "w-1");
        assert_eq!(
            reg["metadata"]["labels"]["kforge.dev/profile"],
            "solana-validator"
        );
        assert!(
            reg["metadata"]["labels"]
                .get("node-role.kubernetes.io/control-plane")
                .is_none()
        );
        assert_eq!(
            reg["spec"]["taints"],
            json!([
                {"key": "dedicated", "value": "solana", "effect": "NoSchedule"},
                {"key": "gpu", "effect": "NoExecute"}
            ])
        );
        let (cap, alloc) = w.resources();
        assert_eq!(cap["hugepages-2Mi"], "8Gi");
        assert_eq!(cap["hugepages-1Gi"], "0");
        assert_eq!(cap["memory"], "64Gi");
        assert_eq!(alloc["cpu"], "14");
        // 64Gi − 8Gi huge pages − 2Gi − 2Gi − 1Gi eviction = 51Gi.
        assert_eq!(alloc["memory"], format!("{}Ki", 51u64 << 20));
        let cp = spec(true);
        let t = cp.taints();
        assert_eq!(t[0]["key"], "node-role.kubernetes.io/control-plane");
        assert_eq!(cp.labels()["node-role.kubernetes.io/control-plane"], "");
        let status = w.status("2025-01-01T00:00:10Z", "2025-01-01T00:00:00Z");
        assert_eq!(status["conditions"][3]["type"], "Ready");
        assert_eq!(status["conditions"][3]["status"], "True");
        assert_eq!(status["addresses"][0]["address"], "127.0.5.21");
    }

    #[test]
    fn kubelet_configuration_carries_extra_config() {
        let text = kubelet_configuration(&json!({"cpuManagerPolicy": "static"}));
        let v = kforge_yaml::parse(&text).unwrap().to_value();
        assert_eq!(v["kind"], "KubeletConfiguration");
        assert_eq!(v["cpuManagerPolicy"], "static");
        let plain = kforge_yaml::parse(&kubelet_configuration(&json!({})))
            .unwrap()
            .to_value();
        assert!(plain.get("cpuManagerPolicy").is_none());
    }
}
