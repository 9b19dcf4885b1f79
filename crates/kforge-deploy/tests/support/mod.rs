//! Shared test fixtures: the seed 000/001 cluster (3 control-plane nodes on 10.0.1.11–13,
//! VIP 10.0.1.10, one Solana validator worker on 10.0.1.20) as a desired cluster and as a
//! fake cluster, and helpers to run the engine against the fakes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kforge_deploy::desired::{
    DesiredCluster, DesiredNode, Manifest, NodeRef, Role, TuningExpectation,
};
use kforge_deploy::execute::{Apis, ExecuteOptions, UpOptions};
use kforge_deploy::fake::{FakeCluster, FakeInitial, FakeNodeSpec, FakeTimings};
use kforge_deploy::observe::ObserveOptions;
use kforge_deploy::plan::{KubeconfigOutput, PlanOptions};
use kforge_deploy::state::FileStateStore;
use kforge_secret::SecretString;

pub const CLUSTER: &str = "solana";
pub const VIP: &str = "10.0.1.10";

pub const NODES: &[(&str, &str, Role)] = &[
    ("cp-1", "10.0.1.11", Role::ControlPlane),
    ("cp-2", "10.0.1.12", Role::ControlPlane),
    ("cp-3", "10.0.1.13", Role::ControlPlane),
    ("solana-validator", "10.0.1.20", Role::Worker),
];

pub const WORKER_ARGS: &[&str] = &[
    "hugepagesz=2M",
    "hugepages=50000",
    "default_hugepagesz=2M",
    "iommu=pt",
];

/// A machine config with secrets in the usual places; `revision` changes one field.
pub fn config(hostname: &str, role: Role, revision: u32) -> SecretString {
    let ty = match role {
        Role::ControlPlane => "controlplane",
        Role::Worker => "worker",
    };
    SecretString::from(format!(
        "version: v1alpha1\nmachine:\n  type: {ty}\n  token: machine-token-s3cret\n  ca:\n    crt: LS0tUFVCTElDLS0t\n    key: LS0tUFJJVkFURS0tLQ==\n  install:\n    disk: /dev/nvme0n1\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: \"true\"\n  sysctls:\n    vm.max_map_count: \"{}\"\ncluster:\n  id: cluster-id-s3cret\n  secret: cluster-secret-s3cret\n  controlPlane:\n    endpoint: https://10.0.1.10:6443\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: {hostname}\n",
        1048576 + revision
    ))
}

pub fn worker_expectations() -> Vec<TuningExpectation> {
    let mut e: Vec<TuningExpectation> = WORKER_ARGS
        .iter()
        .map(|a| TuningExpectation::KernelArg(a.to_string()))
        .collect();
    e.push(TuningExpectation::HugePagesTotal(50000));
    e.push(TuningExpectation::CpuManagerPolicy("static".into()));
    e
}

pub fn manifests() -> Vec<Manifest> {
    [
        serde_json::json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "solana-critical"}, "value": 1000000, "globalDefault": false
        }),
        serde_json::json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local-nvme-ledger"},
            "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"
        }),
    ]
    .into_iter()
    .map(|v| Manifest::from_value(v).unwrap())
    .collect()
}

pub fn desired_with(nodes: &[(&str, &str, Role)], bootstrap_node: Option<&str>) -> DesiredCluster {
    let nodes = nodes
        .iter()
        .map(|(h, a, r)| {
            DesiredNode::new(
                NodeRef::new(*h, *a, *r),
                config(h, *r, 0),
                if *r == Role::Worker {
                    worker_expectations()
                } else {
                    vec![]
                },
            )
        })
        .collect();
    DesiredCluster::new(
        CLUSTER,
        nodes,
        bootstrap_node.map(str::to_string),
        manifests(),
    )
    .unwrap()
}

pub fn desired() -> DesiredCluster {
    desired_with(NODES, None)
}

/// Fast virtual timings (the engine's waits see the same shapes as with the defaults).
pub fn timings() -> FakeTimings {
    FakeTimings::default()
}

pub fn fake_spec(hostname: &str, address: &str, role: Role) -> FakeNodeSpec {
    let mut s = FakeNodeSpec::new(hostname, address, role);
    if role == Role::Worker {
        s.cmdline = format!("talos.platform=metal {}", WORKER_ARGS.join(" "));
        s.hugepages_total = 50000;
        s.memory_mib = 256 * 1024;
        s.kubelet_config = Some(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncpuManagerPolicy: static\n".into(),
        );
    }
    s
}

/// The fake cluster for [`NODES`], every node in maintenance mode.
pub fn fresh_cluster() -> FakeCluster {
    FakeCluster::new(
        CLUSTER,
        Some(VIP),
        NODES.iter().map(|(h, a, r)| fake_spec(h, a, *r)).collect(),
        timings(),
    )
}

/// Every node configured with its desired config (revision 0), etcd not bootstrapped.
pub fn configured_cluster() -> FakeCluster {
    FakeCluster::new(
        CLUSTER,
        Some(VIP),
        NODES
            .iter()
            .map(|(h, a, r)| {
                let mut s = fake_spec(h, a, *r);
                s.initial = FakeInitial::Configured(config(h, *r, 0));
                s
            })
            .collect(),
        timings(),
    )
}

pub fn fixed_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600) // 2026-01-01T00:00:00Z
}

pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.path().join("kube/config")
    }

    pub fn state(&self) -> FileStateStore {
        FileStateStore::in_dir(&self.dir.path().join("clusterconfig"))
    }

    pub fn up_options(&self) -> UpOptions {
        UpOptions {
            plan: PlanOptions {
                kubeconfig: KubeconfigOutput::Merge {
                    path: self.kubeconfig_path(),
                    context: CLUSTER.into(),
                },
            },
            observe: ObserveOptions::default(),
            execute: ExecuteOptions {
                now: fixed_now,
                ..ExecuteOptions::default()
            },
        }
    }
}

pub fn path_text(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

pub struct Fakes {
    pub nodes: kforge_deploy::fake::FakeNodeApi,
    pub kube: kforge_deploy::fake::FakeKubeConnector,
}

impl Fakes {
    pub fn of(c: &FakeCluster) -> Self {
        Fakes {
            nodes: c.node_api(),
            kube: c.kube_connector(),
        }
    }

    pub fn apis<'a>(&'a self, state: &'a FileStateStore) -> Apis<'a> {
        Apis {
            nodes: &self.nodes,
            kube: &self.kube,
            state,
        }
    }
}
