//! What each Talos version contract puts into a generated config. Gate names and thresholds
//! follow Talos's `pkg/machinery/config/contract.go` (a gate "after 1.x" is Talos's strict
//! `Greater(1.x)`).

use kforge_spec::versions::{Contract, Layout};

/// The generation gates for one contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gates {
    pub contract: Contract,
}

impl Gates {
    pub fn new(contract: Contract) -> Self {
        Gates { contract }
    }

    fn after(&self, minor: u64) -> bool {
        self.contract.at_least(minor + 1)
    }

    /// Hostname, network and resolvers as documents (1.12+).
    pub fn multidoc_network(&self) -> bool {
        self.contract.layout == Layout::Multidoc
    }
    /// `features.stableHostname: true` (1.2–1.11; from 1.12 `HostnameConfig auto: stable`).
    pub fn stable_hostname_feature(&self) -> bool {
        self.after(1) && !self.multidoc_network()
    }
    pub fn kubelet_seccomp_default(&self) -> bool {
        self.after(1)
    }
    pub fn kubernetes_discovery_backend_disabled(&self) -> bool {
        self.after(1)
    }
    /// `features.rbac` and `apidCheckExtKeyUsage` are written before 1.12 and always on after.
    pub fn rbac_and_key_usage_fields(&self) -> bool {
        !self.contract.at_least(12)
    }
    pub fn apid_ext_key_usage_check(&self) -> bool {
        self.after(2)
    }
    pub fn audit_policy(&self) -> bool {
        self.after(2)
    }
    pub fn kubelet_manifests_directory_disabled(&self) -> bool {
        self.after(2)
    }
    pub fn secretbox(&self) -> bool {
        self.after(2)
    }
    pub fn disk_quota_support(&self) -> bool {
        self.after(4)
    }
    pub fn kube_prism(&self) -> bool {
        self.after(5)
    }
    pub fn host_dns(&self) -> bool {
        self.after(6)
    }
    pub fn cluster_name_for_workers(&self) -> bool {
        self.after(7)
    }
    pub fn host_dns_forward_kube_dns(&self) -> bool {
        self.after(7)
    }
    pub fn exclude_from_external_lb_label(&self) -> bool {
        self.after(7)
    }
    /// `cluster.apiServer.disablePodSecurityPolicy: true`, hidden from 1.12.
    pub fn disable_psp_field(&self) -> bool {
        !self.contract.at_least(12)
    }
    pub fn grub_use_uki_cmdline(&self) -> bool {
        self.contract.at_least(12)
    }
    /// The endpoint host is added to the API server SANs (up to 1.11).
    pub fn cluster_sans_from_endpoint(&self) -> bool {
        !self.contract.at_least(12)
    }
    /// KubeSpanConfig and EnvironmentConfig replace `machine.network.kubespan` / `machine.env`.
    pub fn kubespan_and_env_documents(&self) -> bool {
        self.contract.at_least(13)
    }
    pub fn network_rule_documents(&self) -> bool {
        self.contract.at_least(6)
    }
    pub fn extension_service_documents(&self) -> bool {
        self.contract.at_least(7)
    }
    pub fn volume_config_documents(&self) -> bool {
        self.contract.at_least(8)
    }
    pub fn user_volume_documents(&self) -> bool {
        self.contract.at_least(10)
    }
    /// `volumeType: disk` for user volumes.
    pub fn user_volume_disk_type(&self) -> bool {
        self.contract.at_least(11)
    }
}
