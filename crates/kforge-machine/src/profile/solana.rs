//! `solana-validator`: the tuning of seeds 000/001 for a Solana validator worker, the way
//! current Talos and Kubernetes want it.
//!
//! - Kubelet (KubeletConfiguration via `machine.kubelet.extraConfig`): static CPU manager,
//!   topology manager, reserved system CPUs, system/kube memory reservations, a hard
//!   eviction threshold.
//! - Kernel arguments: huge pages (size and count), CPU idle states, IOMMU pass-through,
//!   NUMA balancing.
//! - Kernel modules `tcp_bbr` and `sch_fq`; network and memory sysctls.
//! - One UserVolumeConfig per data role (`ledger`, `accounts`, `snapshots`) on the disk the
//!   node's `hardware.disks` names for that role, mounted by Talos at `/var/mnt/<role>`.
//! - After bootstrap: the `solana-critical` PriorityClass and a local StorageClass per role.
//!
//! Checked against `hardware:`: huge pages plus reservations and the eviction threshold must
//! fit in memory, reserved CPUs must exist, every volume needs a declared disk.

use kforge_yaml::{Mapping, Value};
use serde_json::json;

use super::{Expectation, ParamSpec, Profile, ProfileContext, ProfileOutput, resolve_params};
use kforge_spec::Diagnostic;
use kforge_spec::model::IntOrString;
use kforge_spec::validate::parse_bytes;

pub struct SolanaValidator;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "hugepageSize",
        default: "2M",
        doc: "Huge page size: `2M` or `1G`.",
    },
    ParamSpec {
        name: "hugepages",
        default: "50000",
        doc: "Number of huge pages reserved at boot (default 50000 × 2 MiB = 100 GiB).",
    },
    ParamSpec {
        name: "reservedCpus",
        default: "0-3",
        doc: "CPUs kept for the system and kubelet (`reservedSystemCPUs`), as a cpuset.",
    },
    ParamSpec {
        name: "systemReservedMemory",
        default: "16Gi",
        doc: "Memory reserved for the OS (`systemReserved.memory`).",
    },
    ParamSpec {
        name: "kubeReservedMemory",
        default: "16Gi",
        doc: "Memory reserved for Kubernetes daemons (`kubeReserved.memory`).",
    },
    ParamSpec {
        name: "evictionHardMemory",
        default: "32Gi",
        doc: "Hard eviction threshold (`evictionHard: memory.available<…`).",
    },
    ParamSpec {
        name: "cpuManagerPolicy",
        default: "static",
        doc: "`static` (pinned CPUs for Guaranteed pods) or `none`.",
    },
    ParamSpec {
        name: "topologyManagerPolicy",
        default: "single-numa-node",
        doc: "`none`, `best-effort`, `restricted` or `single-numa-node`.",
    },
    ParamSpec {
        name: "topologyManagerScope",
        default: "container",
        doc: "`container` or `pod`.",
    },
    ParamSpec {
        name: "cpuVendor",
        default: "amd",
        doc: "`amd` or `intel`: selects the IOMMU and P-state kernel arguments.",
    },
    ParamSpec {
        name: "limitCStates",
        default: "true",
        doc: "Keep CPUs out of deep idle states (`processor.max_cstate=1`, `intel_idle.max_cstate=0`).",
    },
    ParamSpec {
        name: "numaBalancing",
        default: "true",
        doc: "Automatic NUMA balancing (`numa_balancing=enable|disable`).",
    },
    ParamSpec {
        name: "volumes",
        default: "[ledger, accounts, snapshots]",
        doc: "Data roles that get a volume on `hardware.disks.<role>`.",
    },
    ParamSpec {
        name: "filesystem",
        default: "xfs",
        doc: "Filesystem of the data volumes: `xfs` or `ext4`.",
    },
    ParamSpec {
        name: "priorityClassValue",
        default: "1000000",
        doc: "Value of the `solana-critical` PriorityClass.",
    },
    ParamSpec {
        name: "sysctls",
        default: "{}",
        doc: "Extra sysctls, added to or overriding the profile's.",
    },
];

/// The profile's sysctls (seed 001), before `sysctls` overrides.
const SYSCTLS: &[(&str, &str)] = &[
    ("vm.max_map_count", "1048576"),
    ("vm.dirty_ratio", "50"),
    ("vm.dirty_background_ratio", "5"),
    ("vm.swappiness", "1"),
    ("net.core.rmem_max", "268435456"),
    ("net.core.wmem_max", "268435456"),
    ("net.core.netdev_max_backlog", "30000"),
    ("net.core.default_qdisc", "fq"),
    ("net.ipv4.tcp_rmem", "4096 131072 268435456"),
    ("net.ipv4.tcp_wmem", "4096 65536 268435456"),
    ("net.ipv4.tcp_congestion_control", "bbr"),
    ("net.ipv4.tcp_slow_start_after_idle", "0"),
    ("net.ipv4.tcp_mtu_probing", "1"),
];

impl Profile for SolanaValidator {
    fn name(&self) -> &'static str {
        "solana-validator"
    }

    fn description(&self) -> &'static str {
        "Solana validator worker: huge pages, static CPU manager with NUMA alignment, low-latency kernel and network tuning, NVMe data volumes"
    }

    fn parameters(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn apply(&self, ctx: &ProfileContext<'_>) -> Result<ProfileOutput, Vec<Diagnostic>> {
        let p = resolve_params(self, ctx)?;
        let mut errors = Vec::new();
        let at = |k: &str| ctx.path.key(k);
        let node = &ctx.node.hostname;

        let text = |k: &str| -> String {
            match &p[k] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }
        };
        let one_of = |k: &str, allowed: &[&str], errors: &mut Vec<Diagnostic>| -> String {
            let v = text(k);
            if !allowed.contains(&v.as_str()) {
                errors.push(ctx.error(
                    "profile-param",
                    &at(k),
                    format!("`{k}` must be one of {}, not `{v}`", allowed.join(", ")),
                ));
            }
            v
        };
        let bytes = |k: &str, errors: &mut Vec<Diagnostic>| -> u64 {
            let v = text(k);
            match parse_bytes(&IntOrString::Str(v.clone())) {
                Some(b) => b,
                None => {
                    errors.push(ctx.error(
                        "profile-param",
                        &at(k),
                        format!("`{k}` must be an amount of memory like `16Gi`, not `{v}`"),
                    ));
                    0
                }
            }
        };

        let page_size = one_of("hugepageSize", &["2M", "1G"], &mut errors);
        let pages = match p["hugepages"].as_u64() {
            Some(n) => n,
            None => {
                errors.push(ctx.error(
                    "profile-param",
                    &at("hugepages"),
                    "`hugepages` must be a whole number of pages",
                ));
                0
            }
        };
        let cpu_policy = one_of("cpuManagerPolicy", &["static", "none"], &mut errors);
        let topo = one_of(
            "topologyManagerPolicy",
            &["none", "best-effort", "restricted", "single-numa-node"],
            &mut errors,
        );
        let scope = one_of("topologyManagerScope", &["container", "pod"], &mut errors);
        let vendor = one_of("cpuVendor", &["amd", "intel"], &mut errors);
        let fs = one_of("filesystem", &["xfs", "ext4"], &mut errors);
        let sys_mem = bytes("systemReservedMemory", &mut errors);
        let kube_mem = bytes("kubeReservedMemory", &mut errors);
        let evict_mem = bytes("evictionHardMemory", &mut errors);
        let reserved = text("reservedCpus");
        let reserved_set = match parse_cpuset(&reserved) {
            Some(s) if !s.is_empty() => s,
            _ => {
                errors.push(ctx.error("profile-param", &at("reservedCpus"), format!("`reservedCpus` must be a CPU list like `0-3` or `0,2,4-7`, not `{reserved}`")));
                Vec::new()
            }
        };
        let flag = |k: &str, errors: &mut Vec<Diagnostic>| match p[k].as_bool() {
            Some(b) => b,
            None => {
                errors.push(ctx.error(
                    "profile-param",
                    &at(k),
                    format!("`{k}` must be true or false"),
                ));
                false
            }
        };
        let limit_cstates = flag("limitCStates", &mut errors);
        let numa_balancing = flag("numaBalancing", &mut errors);
        let roles: Vec<String> = match p["volumes"].as_array() {
            Some(a) if a.iter().all(Value::is_string) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => {
                errors.push(ctx.error(
                    "profile-param",
                    &at("volumes"),
                    "`volumes` must be a list of disk roles",
                ));
                Vec::new()
            }
        };
        let priority = p["priorityClassValue"].as_i64().unwrap_or_else(|| {
            errors.push(ctx.error(
                "profile-param",
                &at("priorityClassValue"),
                "`priorityClassValue` must be an integer",
            ));
            0
        });
        let extra_sysctls: Vec<(String, String)> = match &p["sysctls"] {
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), String::from),
                    )
                })
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                errors.push(ctx.error(
                    "profile-param",
                    &at("sysctls"),
                    "`sysctls` must be a mapping of sysctl name to value",
                ));
                Vec::new()
            }
        };

        // Checks against the declared hardware.
        let page_bytes: u64 = if page_size == "1G" { 1 << 30 } else { 2 << 20 };
        let huge_bytes = pages.saturating_mul(page_bytes);
        let hw = ctx.hardware();
        match hw.and_then(|h| h.memory.as_ref()).and_then(parse_bytes) {
            Some(mem) => {
                let needed = huge_bytes.saturating_add(sys_mem).saturating_add(kube_mem).saturating_add(evict_mem);
                if needed > mem {
                    errors.push(
                        ctx.error(
                            "profile-hardware",
                            &ctx.hardware_path("memory"),
                            format!(
                                "node `{node}`: huge pages ({}) + system reserved ({}) + kube reserved ({}) + eviction threshold ({}) = {} exceed its {} of memory",
                                gib(huge_bytes),
                                gib(sys_mem),
                                gib(kube_mem),
                                gib(evict_mem),
                                gib(needed),
                                gib(mem)
                            ),
                        )
                        .help("lower `hugepages` or the reservations in the profile, or correct `hardware.memory`"),
                    );
                }
            }
            None => errors.push(
                ctx.warning("profile-hardware", &ctx.path, format!("node `{node}` declares no `hardware.memory`; huge pages are not checked against memory"))
                    .help("add `hardware: {memory: 512GiB, cpus: 64}` to the node"),
            ),
        }
        if let Some(cpus) = hw.and_then(|h| h.cpus) {
            if let Some(bad) = reserved_set.iter().find(|c| **c >= cpus) {
                errors.push(ctx.error(
                    "profile-hardware",
                    &at("reservedCpus"),
                    format!("node `{node}`: reserved CPU {bad} does not exist; `hardware.cpus` is {cpus} (CPUs 0-{})", cpus.saturating_sub(1)),
                ));
            } else if reserved_set.len() as u32 >= cpus {
                errors.push(ctx.error(
                    "profile-hardware",
                    &at("reservedCpus"),
                    format!(
                        "node `{node}`: reserving {} of {cpus} CPUs leaves none for workloads",
                        reserved_set.len()
                    ),
                ));
            }
        }
        let disks = hw.and_then(|h| h.disks.as_ref());
        let mut volume_disks = Vec::new();
        let disks_path = if hw.is_some() {
            ctx.hardware_path("disks")
        } else {
            ctx.path.clone()
        };
        for role in &roles {
            match disks.and_then(|d| d.get(role)) {
                Some(dev) => volume_disks.push((role.clone(), dev.clone())),
                None => errors.push(
                    ctx.error(
                        "profile-hardware",
                        &disks_path,
                        format!("node `{node}`: the `{role}` volume needs a disk, but `hardware.disks.{role}` is not declared"),
                    )
                    .help(format!("declare it, e.g. `hardware: {{disks: {{{role}: /dev/nvme1n1}}}}`, or remove `{role}` from the profile's `volumes`")),
                ),
            }
        }
        if !roles.is_empty() && !ctx.gates.user_volume_documents() {
            errors.push(ctx.error(
                "profile-contract",
                &at("volumes"),
                format!("data volumes need UserVolumeConfig (Talos ≥ 1.10); this cluster targets Talos {}", ctx.gates.contract),
            ));
        }
        if errors.iter().any(Diagnostic::is_error) {
            return Err(errors);
        }

        // Kernel arguments.
        let mut kernel_args = vec![
            format!("default_hugepagesz={page_size}"),
            format!("hugepagesz={page_size}"),
            format!("hugepages={pages}"),
        ];
        if limit_cstates {
            kernel_args.push("processor.max_cstate=1".into());
            kernel_args.push("intel_idle.max_cstate=0".into());
        }
        match vendor.as_str() {
            "amd" => {
                kernel_args.push("amd_pstate=active".into());
                kernel_args.push("amd_iommu=on".into());
            }
            _ => kernel_args.push("intel_iommu=on".into()),
        }
        kernel_args.push("iommu=pt".into());
        kernel_args.push(format!(
            "numa_balancing={}",
            if numa_balancing { "enable" } else { "disable" }
        ));

        let mut sysctls: Vec<(String, String)> = SYSCTLS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if page_size == "2M" {
            // 2 MiB pages can also be (re)allocated at runtime; keep the pool at the target.
            sysctls.push(("vm.nr_hugepages".into(), pages.to_string()));
        }
        for (k, v) in extra_sysctls {
            match sysctls.iter_mut().find(|(x, _)| *x == k) {
                Some(slot) => slot.1 = v,
                None => sysctls.push((k, v)),
            }
        }

        let mut kubelet = Mapping::new();
        kubelet.insert("cpuManagerPolicy".into(), Value::from(cpu_policy.clone()));
        kubelet.insert("topologyManagerPolicy".into(), Value::from(topo));
        kubelet.insert("topologyManagerScope".into(), Value::from(scope));
        kubelet.insert("reservedSystemCPUs".into(), Value::from(reserved.clone()));
        kubelet.insert(
            "systemReserved".into(),
            json!({"memory": text("systemReservedMemory")}),
        );
        kubelet.insert(
            "kubeReserved".into(),
            json!({"memory": text("kubeReservedMemory")}),
        );
        kubelet.insert(
            "evictionHard".into(),
            json!({"memory.available": text("evictionHardMemory")}),
        );

        let mut documents = Vec::new();
        let mut manifests = vec![json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "solana-critical"},
            "value": priority,
            "globalDefault": false,
            "description": "Critical priority for Solana validator pods",
        })];
        for (role, dev) in &volume_disks {
            let mut doc = Mapping::new();
            doc.insert("apiVersion".into(), Value::from("v1alpha1"));
            doc.insert("kind".into(), Value::from("UserVolumeConfig"));
            doc.insert("name".into(), Value::from(role.as_str()));
            if ctx.gates.user_volume_disk_type() {
                doc.insert("volumeType".into(), Value::from("disk"));
                doc.insert("provisioning".into(), json!({"diskSelector": {"match": format!("disk.dev_path == {}", serde_json::to_string(dev).unwrap_or_default())}}));
            } else {
                doc.insert(
                    "provisioning".into(),
                    json!({"diskSelector": {"match": format!("disk.dev_path == {}", serde_json::to_string(dev).unwrap_or_default())}, "grow": true, "minSize": "1GiB"}),
                );
            }
            doc.insert("filesystem".into(), json!({"type": fs}));
            documents.push(Value::Object(doc));
            manifests.push(json!({
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": format!("local-nvme-{role}")},
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "WaitForFirstConsumer",
                "reclaimPolicy": "Retain",
            }));
        }

        let mut expectations: Vec<Expectation> = kernel_args
            .iter()
            .cloned()
            .map(Expectation::KernelArg)
            .collect();
        expectations.push(Expectation::HugePagesTotal(pages));
        expectations.push(Expectation::CpuManagerPolicy(cpu_policy));

        Ok(ProfileOutput {
            kernel_args,
            sysctls,
            kernel_modules: vec!["tcp_bbr".into(), "sch_fq".into()],
            kubelet_config: kubelet,
            node_labels: vec![("kforge.dev/profile".into(), self.name().into())],
            documents,
            manifests,
            expectations,
        })
    }
}

fn gib(b: u64) -> String {
    let g = b as f64 / (1u64 << 30) as f64;
    if (g - g.round()).abs() < 1e-9 {
        format!("{} GiB", g.round() as u64)
    } else {
        format!("{g:.1} GiB")
    }
}

/// The most CPUs a cpuset may name (far beyond any machine; bounds hostile input such as
/// `0-99999,0-99999,…`).
const MAX_CPUSET: usize = 100_000;

/// `0-3,8,10-11` → sorted CPU numbers.
pub fn parse_cpuset(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b || (b - a) as usize >= MAX_CPUSET - out.len().min(MAX_CPUSET) {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpusets() {
        assert_eq!(parse_cpuset("0-3").unwrap(), [0, 1, 2, 3]);
        assert_eq!(parse_cpuset("0,2,4-5").unwrap(), [0, 2, 4, 5]);
        assert!(parse_cpuset("3-1").is_none());
        assert!(parse_cpuset("x").is_none());
        assert!(parse_cpuset(&vec!["0-99998"; 1000].join(",")).is_none());
        assert_eq!(parse_cpuset("0-99998").unwrap().len(), 99_999);
        assert_eq!(gib(100 << 30), "100 GiB");
    }
}
