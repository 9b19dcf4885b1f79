//! The cluster file as written: talhelper's `talconfig.yaml` schema (every top-level, group
//! and node field) plus kforge's extensions (`hardware`, `profiles`). Every field is optional
//! here; required fields are checked by validation, which can point at the file.
//!
//! Field names and nesting follow talhelper (`pkg/config/config.go`, its JSON schema) and,
//! for fields that are Talos types (`networkInterfaces`, `installDiskSelector`, …), Talos's
//! v1alpha1 types, so that an existing file reads unchanged.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A map of strings that keeps the file's order.
pub type StringMap = IndexMap<String, String>;

/// The whole cluster file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(title = "kforge cluster file (talhelper talconfig.yaml)")]
pub struct ClusterFile {
    /// Name of the cluster.
    pub cluster_name: Option<String>,
    /// Talos version to target, e.g. `v1.12.0`; selects the machine-config contract.
    pub talos_version: Option<String>,
    /// Kubernetes version, e.g. `v1.35.0`.
    pub kubernetes_version: Option<String>,
    /// The cluster's control-plane endpoint, e.g. `https://10.0.1.10:6443`.
    pub endpoint: Option<String>,
    /// The domain used by Kubernetes DNS (default `cluster.local`).
    pub domain: Option<String>,
    /// Allow workloads on control-plane nodes.
    pub allow_scheduling_on_masters: Option<bool>,
    /// Alias of `allowSchedulingOnMasters`.
    pub allow_scheduling_on_control_planes: Option<bool>,
    /// Deprecated: use `certSANs` on nodes or groups. Extra SANs for every machine certificate.
    pub additional_machine_cert_sans: Option<Vec<String>>,
    /// Extra SANs for the Kubernetes API server certificate.
    pub additional_api_server_cert_sans: Option<Vec<String>>,
    /// Inline Kubernetes manifests applied at bootstrap.
    pub inline_manifests: Option<Vec<InlineManifest>>,
    /// Pod subnets (default `10.244.0.0/16`).
    pub cluster_pod_nets: Option<Vec<String>>,
    /// Service subnets (default `10.96.0.0/12`).
    pub cluster_svc_nets: Option<Vec<String>>,
    /// The CNI: `flannel` (default), `custom` with `urls`, or `none`.
    pub cni_config: Option<CniConfig>,
    /// Patches applied to every node, after group and node patches.
    pub patches: Option<Vec<String>>,
    /// The nodes.
    pub nodes: Option<Vec<NodeSpec>>,
    /// Image factory settings for schematic-based installer images.
    pub image_factory: Option<ImageFactory>,
    /// Defaults for every control-plane node.
    pub control_plane: Option<NodeGroup>,
    /// Defaults for every worker node.
    pub worker: Option<NodeGroup>,
    /// kforge: the control-plane node (hostname) that bootstraps etcd; default the lowest IP.
    pub bootstrap_node: Option<String>,
}

/// Generates the node struct and the group struct from one list of shared fields, so that the
/// two cannot drift apart and the merge covers every shared field.
macro_rules! node_configs {
    (
        node: { $( $(#[$nm:meta])* $nf:ident : $nt:ty ),* $(,)? }
        shared: { $( $(#[$sm:meta])* $sf:ident : $st:ty ),* $(,)? }
    ) => {
        /// One node: node-only fields plus every field a group can set.
        #[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
        #[serde(rename_all = "camelCase", default)]
        pub struct NodeSpec {
            $( $(#[$nm])* pub $nf: $nt, )*
            $( $(#[$sm])* pub $sf: $st, )*
        }

        /// Settings shared by a group of nodes (`controlPlane:` / `worker:`).
        #[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
        #[serde(rename_all = "camelCase", default)]
        pub struct NodeGroup {
            $( $(#[$sm])* pub $sf: $st, )*
        }

        impl NodeSpec {
            /// The group-settable part of this node.
            pub fn configs(&self) -> NodeGroup {
                NodeGroup { $( $sf: self.$sf.clone(), )* }
            }
        }

        impl NodeGroup {
            /// Fields set here and not in `node` are taken from `group` (talhelper's rule:
            /// a node value replaces the group value as a whole). Returns the names of the
            /// fields that came from the group.
            pub fn inherit(&mut self, group: &NodeGroup) -> Vec<&'static str> {
                let mut inherited = Vec::new();
                $(
                    if self.$sf.is_none() && group.$sf.is_some() {
                        self.$sf = group.$sf.clone();
                        inherited.push(stringify!($sf));
                    }
                )*
                inherited
            }
        }
    };
}

node_configs! {
    node: {
        /// Hostname of the node (required).
        hostname: Option<String>,
        /// Where the node is reached: an IP or DNS name; several separated by commas.
        ip_address: Option<String>,
        /// Whether the node is a control-plane node (default: worker).
        control_plane: Option<bool>,
        /// The install disk, e.g. `/dev/nvme0n1`.
        install_disk: Option<String>,
        /// Select the install disk by properties instead of a path.
        install_disk_selector: Option<InstallDiskSelector>,
        /// Do not set a hostname (Talos ≥ 1.12: `HostnameConfig` with `auto: stable`).
        ignore_hostname: Option<bool>,
        /// Node `patches` replace the group's instead of following them.
        override_patches: Option<bool>,
        /// Node `extraManifests` replace the group's.
        override_extra_manifests: Option<bool>,
        /// Node `certSANs` replace the group's.
        #[serde(rename = "overrideMachineCertSANs")]
        override_machine_cert_sans: Option<bool>,
    }
    shared: {
        /// Installer image without tag; wins over `schematic`.
        #[serde(rename = "talosImageURL")]
        talos_image_url: Option<String>,
        /// Image-factory schematic for the installer image.
        schematic: Option<Schematic>,
        /// Image-factory schematic for boot media (`genurl image`).
        image_schematic: Option<Schematic>,
        /// Skip validating schematic extensions and overlays.
        no_schematic_validate: Option<bool>,
        /// Machine specification (mode, arch, secure boot, UKI, boot method).
        machine_spec: Option<MachineSpec>,
        /// Kubernetes node labels (values may be Go templates).
        node_labels: Option<StringMap>,
        /// Kubernetes node annotations (values may be Go templates).
        node_annotations: Option<StringMap>,
        /// Kubernetes node taints, `key: value:Effect`.
        node_taints: Option<StringMap>,
        /// Deprecated: use `userVolumes`.
        machine_disks: Option<Vec<MachineDisk>>,
        /// Files written on the node.
        machine_files: Option<Vec<MachineFile>>,
        /// Disable the default search domain.
        disable_search_domain: Option<bool>,
        /// Kernel modules to load.
        kernel_modules: Option<Vec<KernelModule>>,
        /// Nameservers.
        nameservers: Option<Vec<String>>,
        /// Network interfaces (Talos v1alpha1 `Device`); translated to network documents from
        /// Talos 1.12 on.
        network_interfaces: Option<Vec<Device>>,
        /// Deprecated: manifest files appended as extra documents.
        extra_manifests: Option<Vec<String>>,
        /// Extra SANs for the machine certificate.
        #[serde(rename = "certSANs")]
        cert_sans: Option<Vec<String>>,
        /// Patches: inline YAML or `@path` relative to the cluster file.
        patches: Option<Vec<String>>,
        /// Ingress firewall (NetworkDefaultActionConfig + NetworkRuleConfig documents).
        ingress_firewall: Option<IngressFirewall>,
        /// Extension service configurations.
        extension_services: Option<Vec<ExtensionService>>,
        /// System volume configurations (VolumeConfig documents).
        volumes: Option<Vec<Volume>>,
        /// User volumes (UserVolumeConfig documents).
        user_volumes: Option<Vec<UserVolume>>,
        /// Output file name template (default `{{.ClusterName}}-{{.Hostname}}.yaml`).
        filename_tmpl: Option<String>,
        /// kforge: what the machine has; profiles are checked against it.
        hardware: Option<Hardware>,
        /// kforge: performance profiles, each `{name: …}` plus its parameters.
        profiles: Option<Vec<ProfileRef>>,
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct InlineManifest {
    pub name: Option<String>,
    /// The manifest, or `@path` to read it from a file.
    pub contents: Option<String>,
    /// Do not substitute environment variables in `@file` contents.
    pub skip_envsubst: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct CniConfig {
    /// `flannel`, `custom` or `none`.
    pub name: Option<String>,
    pub urls: Option<Vec<String>>,
    pub flannel: Option<FlannelConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct FlannelConfig {
    pub extra_args: Option<Vec<String>>,
    pub kube_network_policies_enabled: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct ImageFactory {
    #[serde(rename = "registryURL")]
    pub registry_url: Option<String>,
    #[serde(rename = "schematicEndpoint")]
    pub schematic_endpoint: Option<String>,
    pub protocol: Option<String>,
    #[serde(rename = "installerURLTmpl")]
    pub installer_url_tmpl: Option<String>,
    #[serde(rename = "ISOURLTmpl")]
    pub iso_url_tmpl: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct InstallDiskSelector {
    /// Size match such as `4GB` or `>= 1TB`.
    pub size: Option<String>,
    pub name: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub modalias: Option<String>,
    pub uuid: Option<String>,
    pub wwid: Option<String>,
    /// `ssd`, `hdd`, `nvme` or `sd`.
    #[serde(rename = "type")]
    pub disk_type: Option<String>,
    pub bus_path: Option<String>,
}

/// An image-factory schematic. Field order matters: the schematic ID is the SHA-256 of this
/// structure serialised in this order.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Schematic {
    pub overlay: Option<Overlay>,
    pub customization: Option<Customization>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Overlay {
    pub image: Option<String>,
    pub name: Option<String>,
    pub options: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Customization {
    pub extra_kernel_args: Option<Vec<String>>,
    pub meta: Option<Vec<MetaValue>>,
    pub system_extensions: Option<SystemExtensions>,
    pub secureboot: Option<SecureBootCustomization>,
    pub bootloader: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct MetaValue {
    pub key: Option<u8>,
    pub value: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SystemExtensions {
    pub official_extensions: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SecureBootCustomization {
    pub include_well_known_certificates: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct MachineSpec {
    /// `metal` (default), or a cloud platform such as `aws`, `gcp`, `container`…
    pub mode: Option<String>,
    /// `amd64` (default) or `arm64`.
    pub arch: Option<String>,
    pub secureboot: Option<bool>,
    #[serde(rename = "useUKI")]
    pub use_uki: Option<bool>,
    /// `iso` (default), `disk-image` or `pxe`.
    pub boot_method: Option<String>,
    pub image_suffix: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct MachineDisk {
    pub device: Option<String>,
    pub partitions: Option<Vec<DiskPartition>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct DiskPartition {
    /// Bytes, or a human-readable size such as `100GB`.
    pub size: Option<IntOrString>,
    pub mountpoint: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct MachineFile {
    /// File contents, or `@path` to read them from a file.
    pub content: Option<String>,
    /// Octal permissions, e.g. `0o644`.
    pub permissions: Option<u32>,
    pub path: Option<String>,
    /// `create`, `append` or `overwrite`.
    pub op: Option<String>,
    pub skip_envsubst: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct KernelModule {
    pub name: Option<String>,
    pub parameters: Option<Vec<String>>,
}

/// Talos v1alpha1 network `Device`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Device {
    pub interface: Option<String>,
    pub device_selector: Option<DeviceSelector>,
    pub addresses: Option<Vec<String>>,
    pub cidr: Option<String>,
    pub routes: Option<Vec<Route>>,
    pub bond: Option<Bond>,
    pub bridge: Option<Bridge>,
    pub bridge_port: Option<BridgePort>,
    pub vlans: Option<Vec<Vlan>>,
    pub mtu: Option<u32>,
    pub dhcp: Option<bool>,
    pub ignore: Option<bool>,
    pub dummy: Option<bool>,
    pub dhcp_options: Option<DhcpOptions>,
    pub wireguard: Option<Wireguard>,
    pub vip: Option<Vip>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct DeviceSelector {
    pub bus_path: Option<String>,
    pub hardware_addr: Option<String>,
    pub permanent_addr: Option<String>,
    #[serde(rename = "pciID")]
    pub pci_id: Option<String>,
    pub driver: Option<String>,
    pub physical: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Route {
    pub network: Option<String>,
    pub gateway: Option<String>,
    pub source: Option<String>,
    pub metric: Option<u32>,
    pub mtu: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Bond {
    pub interfaces: Option<Vec<String>>,
    pub device_selectors: Option<Vec<DeviceSelector>>,
    #[serde(rename = "arpIPTarget")]
    pub arp_ip_target: Option<Vec<String>>,
    pub mode: Option<String>,
    pub xmit_hash_policy: Option<String>,
    pub lacp_rate: Option<String>,
    pub ad_actor_system: Option<String>,
    pub arp_validate: Option<String>,
    pub arp_all_targets: Option<String>,
    pub primary: Option<String>,
    pub primary_reselect: Option<String>,
    pub fail_over_mac: Option<String>,
    pub ad_select: Option<String>,
    pub miimon: Option<u32>,
    pub updelay: Option<u32>,
    pub downdelay: Option<u32>,
    pub arp_interval: Option<u32>,
    pub resend_igmp: Option<u32>,
    pub min_links: Option<u32>,
    pub lp_interval: Option<u32>,
    pub packets_per_slave: Option<u32>,
    pub num_peer_notif: Option<u8>,
    pub tlb_dynamic_lb: Option<u8>,
    pub all_slaves_active: Option<u8>,
    pub use_carrier: Option<bool>,
    pub ad_actor_sys_prio: Option<u16>,
    pub ad_user_port_key: Option<u16>,
    pub peer_notify_delay: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Bridge {
    pub interfaces: Option<Vec<String>>,
    pub stp: Option<Stp>,
    pub vlan: Option<BridgeVlan>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Stp {
    pub enabled: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct BridgeVlan {
    pub vlan_filtering: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct BridgePort {
    pub master: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Vlan {
    pub addresses: Option<Vec<String>>,
    pub cidr: Option<String>,
    pub routes: Option<Vec<Route>>,
    pub dhcp: Option<bool>,
    pub vlan_id: Option<u16>,
    pub mtu: Option<u32>,
    pub vip: Option<Vip>,
    pub dhcp_options: Option<DhcpOptions>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct DhcpOptions {
    pub route_metric: Option<u32>,
    pub ipv4: Option<bool>,
    pub ipv6: Option<bool>,
    pub duidv6: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Wireguard {
    pub private_key: Option<String>,
    pub listen_port: Option<u32>,
    pub firewall_mark: Option<u32>,
    pub peers: Option<Vec<WireguardPeer>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct WireguardPeer {
    pub public_key: Option<String>,
    pub endpoint: Option<String>,
    /// A Go duration such as `25s`.
    pub persistent_keepalive_interval: Option<IntOrString>,
    #[serde(rename = "allowedIPs")]
    pub allowed_ips: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Vip {
    pub ip: Option<String>,
    pub equinix_metal: Option<VipToken>,
    pub hcloud: Option<VipToken>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VipToken {
    pub api_token: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct IngressFirewall {
    /// `accept` or `block` (default `block`).
    pub default_action: Option<String>,
    pub rules: Option<Vec<FirewallRule>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct FirewallRule {
    pub name: Option<String>,
    pub port_selector: Option<PortSelector>,
    pub ingress: Option<Vec<IngressSubnet>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct PortSelector {
    /// Ports (`443`) or ranges (`"30000-32767"`).
    pub ports: Option<Vec<IntOrString>>,
    /// `tcp` or `udp`.
    pub protocol: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct IngressSubnet {
    pub subnet: Option<String>,
    pub except: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtensionService {
    pub name: Option<String>,
    pub config_files: Option<Vec<ExtensionConfigFile>>,
    pub environment: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtensionConfigFile {
    pub content: Option<String>,
    pub mount_path: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Volume {
    pub name: Option<String>,
    pub provisioning: Option<Provisioning>,
    pub encryption: Option<Encryption>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct UserVolume {
    pub name: Option<String>,
    /// `partition` (default), `directory` or `disk`.
    pub volume_type: Option<String>,
    pub provisioning: Option<Provisioning>,
    pub filesystem: Option<Filesystem>,
    pub encryption: Option<Encryption>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Provisioning {
    pub disk_selector: Option<DiskSelector>,
    pub grow: Option<bool>,
    pub min_size: Option<IntOrString>,
    pub max_size: Option<IntOrString>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct DiskSelector {
    /// A CEL expression, e.g. `disk.transport == "nvme"`.
    #[serde(rename = "match")]
    pub match_expr: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Filesystem {
    /// `xfs` (default) or `ext4`.
    #[serde(rename = "type")]
    pub fs_type: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Encryption {
    /// `luks2`.
    pub provider: Option<String>,
    pub keys: Option<Vec<EncryptionKey>>,
    pub cipher: Option<String>,
    pub key_size: Option<u32>,
    pub block_size: Option<u64>,
    pub options: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct EncryptionKey {
    pub slot: Option<u32>,
    #[serde(rename = "static")]
    pub static_key: Option<StaticKey>,
    #[serde(rename = "nodeID")]
    pub node_id: Option<Value>,
    pub kms: Option<KmsKey>,
    pub tpm: Option<Value>,
    pub lock_to_state: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct StaticKey {
    pub passphrase: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct KmsKey {
    pub endpoint: Option<String>,
}

/// kforge extension: what a machine has. Profiles are checked against it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Hardware {
    /// Logical CPUs.
    pub cpus: Option<u32>,
    /// Memory, e.g. `512GiB` (or bytes).
    pub memory: Option<IntOrString>,
    /// NUMA nodes.
    pub numa_nodes: Option<u32>,
    /// Disks by role, e.g. `ledger: /dev/nvme1n1`.
    pub disks: Option<StringMap>,
}

/// kforge extension: a performance profile applied to a node: `{name: …}` plus the profile's
/// parameters, each of which has a default.
#[derive(Clone, Debug, Default, Serialize, JsonSchema, PartialEq)]
pub struct ProfileRef {
    /// The profile, e.g. `solana-validator`.
    pub name: Option<String>,
    /// The profile's parameters.
    #[serde(flatten)]
    pub params: IndexMap<String, Value>,
}

impl<'de> Deserialize<'de> for ProfileRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut params: IndexMap<String, Value> = IndexMap::deserialize(d)?;
        let name = match params.shift_remove("name") {
            Some(Value::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
            None => None,
        };
        Ok(ProfileRef { name, params })
    }
}

/// A value written either as a number or as a string (`443` or `"30000-32767"`, `100GB`).
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum IntOrString {
    Int(u64),
    Str(String),
}

impl std::fmt::Display for IntOrString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::Str(s) => f.write_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_u64<E>(self, v: u64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<IntOrString, E> {
                Ok(u64::try_from(v)
                    .map_or_else(|_| IntOrString::Str(v.to_string()), IntOrString::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<IntOrString, E> {
                Ok(IntOrString::Str(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::Str(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<IntOrString, E> {
                Ok(IntOrString::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
