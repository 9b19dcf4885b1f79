//! Verifying the profiles' tuning on live nodes: kernel arguments in `/proc/cmdline`,
//! `HugePages_Total` from the Memory API (and the matching `hugepages-<size>` capacity the
//! node reports to Kubernetes), and the kubelet's CPU manager policy.
//!
//! CPU manager policy source: the kubelet configuration file Talos writes,
//! [`KUBELET_CONFIG_PATH`] (`cpuManagerPolicy`, absent = `none`, the kubelet default). If
//! the node cannot serve that file (Read answers NotFound), the applied machine config's
//! `machine.kubelet.extraConfig.cpuManagerPolicy` is used instead. The result says which
//! source was used.

use std::fmt;

use kforge_yaml::Value;
use serde::Serialize;

use crate::api::{ApiError, ApiErrorKind, KubeApi, KubeNode, NodeApi};
use crate::desired::{NodeRef, TuningExpectation};

/// Where Talos writes the kubelet configuration.
pub const KUBELET_CONFIG_PATH: &str = "/etc/kubernetes/kubelet.yaml";

/// The result of one check on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TuningCheck {
    pub expectation: TuningExpectation,
    pub passed: bool,
    /// What was found, e.g. `HugePages_Total = 50000`.
    pub observed: String,
    /// Where it was read, e.g. `/proc/cmdline`.
    pub source: String,
}

impl fmt::Display for TuningCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (found {}, from {})",
            self.expectation,
            if self.passed { "ok" } else { "MISMATCH" },
            self.observed,
            self.source
        )
    }
}

/// One node's results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeTuning {
    pub node: String,
    pub checks: Vec<TuningCheck>,
}

impl NodeTuning {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// Why the checks could not be run (yet).
pub(crate) enum Unavailable {
    /// Try again later (node rebooting, kubelet not written yet, node not registered).
    Transient(String),
    Fatal(ApiError),
}

fn classify(e: ApiError) -> Unavailable {
    if e.kind.is_transient() {
        Unavailable::Transient(e.chain())
    } else {
        Unavailable::Fatal(e)
    }
}

/// Bytes of a Kubernetes quantity (`100Gi`, `2048Mi`, `104857600Ki`, `0`, `1e3`); None if
/// it cannot be read.
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
        "Pi" => 1 << 50,
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

/// The capacity key for a huge page size: 2048 kB → `hugepages-2Mi`, 1048576 kB → `hugepages-1Gi`.
pub fn hugepages_resource(size_kib: u64) -> String {
    if size_kib >= 1 << 20 && size_kib.is_multiple_of(1 << 20) {
        format!("hugepages-{}Gi", size_kib >> 20)
    } else if size_kib >= 1 << 10 && size_kib.is_multiple_of(1 << 10) {
        format!("hugepages-{}Mi", size_kib >> 10)
    } else {
        format!("hugepages-{size_kib}Ki")
    }
}

fn cpu_policy_from_kubelet_config(text: &str) -> Option<String> {
    let v = kforge_yaml::parse(text).ok()?.to_value();
    Some(
        v.get("cpuManagerPolicy")
            .and_then(Value::as_str)
            .unwrap_or("none")
            .to_string(),
    )
}

fn cpu_policy_from_machine_config(text: &str) -> Option<String> {
    let docs = kforge_yaml::parse_all(text).ok()?;
    let v1 = docs
        .iter()
        .map(kforge_yaml::Node::to_value)
        .find(|d| d.get("machine").is_some())?;
    Some(
        v1.pointer("/machine/kubelet/extraConfig/cpuManagerPolicy")
            .and_then(Value::as_str)
            .unwrap_or("none")
            .to_string(),
    )
}

/// Reads what the checks need from `node` and evaluates them. `kube_node` (when the node
/// is registered) adds the huge pages capacity check.
pub(crate) async fn verify_node(
    api: &dyn NodeApi,
    node: &NodeRef,
    expectations: &[TuningExpectation],
    kube: Option<&dyn KubeApi>,
) -> Result<NodeTuning, Unavailable> {
    let mut checks = Vec::new();
    let mut cmdline: Option<String> = None;
    for e in expectations {
        match e {
            TuningExpectation::KernelArg(arg) => {
                if cmdline.is_none() {
                    let bytes = api
                        .read_file(node, "/proc/cmdline")
                        .await
                        .map_err(classify)?;
                    cmdline = Some(String::from_utf8_lossy(&bytes).trim().to_string());
                }
                let line = cmdline.as_deref().unwrap_or_default();
                let found = line.split_whitespace().any(|t| t == arg);
                let key = arg.split('=').next().unwrap_or(arg);
                let observed = line
                    .split_whitespace()
                    .filter(|t| t.split('=').next() == Some(key))
                    .collect::<Vec<_>>()
                    .join(" ");
                checks.push(TuningCheck {
                    expectation: e.clone(),
                    passed: found,
                    observed: if observed.is_empty() {
                        format!("no `{key}` argument")
                    } else {
                        observed
                    },
                    source: "/proc/cmdline".into(),
                });
            }
            TuningExpectation::HugePagesTotal(n) => {
                let mem = api.memory(node).await.map_err(classify)?;
                checks.push(TuningCheck {
                    expectation: e.clone(),
                    passed: mem.hugepages_total == *n,
                    observed: format!("HugePages_Total = {}", mem.hugepages_total),
                    source: "Memory API (/proc/meminfo)".into(),
                });
                if let Some(kube) = kube
                    && let Some(check) = hugepages_capacity(kube, node, *n, mem.hugepage_size_kib)
                        .await
                        .map_err(Unavailable::Transient)?
                {
                    checks.push(check);
                }
            }
            TuningExpectation::CpuManagerPolicy(policy) => {
                let (found, source) = match api.read_file(node, KUBELET_CONFIG_PATH).await {
                    Ok(bytes) => (
                        cpu_policy_from_kubelet_config(&String::from_utf8_lossy(&bytes)),
                        KUBELET_CONFIG_PATH.to_string(),
                    ),
                    Err(err) if err.kind == ApiErrorKind::NotFound => {
                        let config = api.running_config(node).await.map_err(classify)?;
                        (
                            cpu_policy_from_machine_config(config.expose()),
                            "machine config machine.kubelet.extraConfig (kubelet config file not \
                             served)"
                                .to_string(),
                        )
                    }
                    Err(err) => return Err(classify(err)),
                };
                let Some(found) = found else {
                    return Err(Unavailable::Transient(format!(
                        "{source} is not valid YAML"
                    )));
                };
                checks.push(TuningCheck {
                    expectation: e.clone(),
                    passed: &found == policy,
                    observed: format!("cpuManagerPolicy {found}"),
                    source,
                });
            }
        }
    }
    Ok(NodeTuning {
        node: node.hostname.clone(),
        checks,
    })
}

/// The node's `hugepages-<size>` capacity against `pages × size`. None when there is no
/// huge page size to compare with; Err (transient) while the node is not registered or
/// does not report the resource yet.
async fn hugepages_capacity(
    kube: &dyn KubeApi,
    node: &NodeRef,
    pages: u64,
    size_kib: u64,
) -> Result<Option<TuningCheck>, String> {
    if size_kib == 0 {
        return Ok(None);
    }
    let nodes = kube.nodes().await.map_err(|e| e.to_string())?;
    let Some(k): Option<&KubeNode> = nodes.iter().find(|k| k.name == node.hostname) else {
        return Err(format!(
            "{} is not registered in Kubernetes yet",
            node.hostname
        ));
    };
    let resource = hugepages_resource(size_kib);
    let expected = u128::from(pages) * u128::from(size_kib) * 1024;
    let observed = match k.capacity.get(&resource) {
        Some(q) => q.clone(),
        None if pages == 0 => "0".into(),
        None => return Err(format!("{} does not report {resource} yet", node.hostname)),
    };
    Ok(Some(TuningCheck {
        expectation: TuningExpectation::HugePagesTotal(pages),
        passed: quantity_bytes(&observed) == Some(expected),
        observed: format!("{resource} capacity {observed}"),
        source: "Kubernetes node status.capacity".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("100Gi"), Some(100 << 30));
        assert_eq!(quantity_bytes("104857600Ki"), Some(100 << 30));
        assert_eq!(quantity_bytes("0"), Some(0));
        assert_eq!(quantity_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(quantity_bytes("12x"), None);
    }

    #[test]
    fn hugepage_resources() {
        assert_eq!(hugepages_resource(2048), "hugepages-2Mi");
        assert_eq!(hugepages_resource(1 << 20), "hugepages-1Gi");
        assert_eq!(hugepages_resource(64), "hugepages-64Ki");
    }

    #[test]
    fn cpu_manager_policy_sources() {
        assert_eq!(
            cpu_policy_from_kubelet_config(
                "apiVersion: kubelet.config.k8s.io/v1beta1\ncpuManagerPolicy: static\n"
            ),
            Some("static".into())
        );
        assert_eq!(
            cpu_policy_from_kubelet_config("kind: KubeletConfiguration\n"),
            Some("none".into())
        );
        assert_eq!(
            cpu_policy_from_machine_config(
                "version: v1alpha1\nmachine:\n  kubelet:\n    extraConfig:\n      cpuManagerPolicy: static\n---\nkind: HostnameConfig\n"
            ),
            Some("static".into())
        );
    }
}
