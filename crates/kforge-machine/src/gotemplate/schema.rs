//! The Go view of the v1alpha1 document that talhelper templates address: struct and field
//! names from siderolabs/talos `pkg/machinery/config/types/v1alpha1/v1alpha1_types.go`
//! (`Config`, `MachineConfig`, `ClusterConfig`, …) mapped to the YAML keys they decode from,
//! with the Go type of each field so that unset fields read as Go's zero values.

/// A Go type as far as templates can observe it.
#[derive(Debug)]
pub(super) enum GoType {
    Str,
    Bool,
    Int,
    /// `*bool`: nil when unset, and a set `false` is still "true" in `if`.
    PtrBool,
    /// `*uint32` and friends.
    PtrInt,
    /// `time.Duration`, printed as Go prints durations (`1h0m0s`).
    Duration,
    /// `v1alpha1.FileMode`, printed as `0o644`.
    FileMode,
    /// `*v1alpha1.Endpoint` (a `*url.URL`).
    Endpoint,
    StrList,
    List(&'static GoType),
    /// `map[string]string`.
    StrMap,
    /// `map[string]*T`.
    MapOf(&'static GoType),
    /// `*T`: nil when unset.
    Ptr(&'static StructType),
    /// `T`: a zero struct when unset.
    Struct(&'static StructType),
    /// Free-form data (`Unstructured`, `meta.Args`): maps, lists and scalars as decoded.
    Free,
    /// A field kforge does not hand to templates, with the reason.
    Unavailable(&'static str),
}

#[derive(Debug)]
pub(super) struct StructType {
    /// Go type name, e.g. `v1alpha1.InstallConfig`.
    pub name: &'static str,
    pub fields: &'static [Field],
}

#[derive(Debug)]
pub(super) struct Field {
    /// Go field name, e.g. `InstallImage`.
    pub go: &'static str,
    /// YAML key, e.g. `image`.
    pub yaml: &'static str,
    pub ty: &'static GoType,
}

impl StructType {
    pub fn field(&self, go_name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.go == go_name)
    }
}

const KEY_MATERIAL: GoType =
    GoType::Unavailable("it holds key material, which kforge keeps out of templates");

static STR: GoType = GoType::Str;
static BOOL: GoType = GoType::Bool;
static INT: GoType = GoType::Int;
static PTR_BOOL: GoType = GoType::PtrBool;
static PTR_INT: GoType = GoType::PtrInt;
static DURATION: GoType = GoType::Duration;
static FILE_MODE: GoType = GoType::FileMode;
static ENDPOINT: GoType = GoType::Endpoint;
static STR_LIST: GoType = GoType::StrList;
static STR_MAP: GoType = GoType::StrMap;
static FREE: GoType = GoType::Free;
static FREE_LIST: GoType = GoType::List(&FREE);
static SECRET: GoType = KEY_MATERIAL;
static DISK_SIZE: GoType =
    GoType::Unavailable("its Go value is a parsed size matcher, not printable text");

macro_rules! go_struct {
    ($static:ident, $name:literal, [$(($go:literal, $yaml:literal, $ty:expr)),* $(,)?]) => {
        pub(super) static $static: StructType = StructType {
            name: $name,
            fields: &[$(Field { go: $go, yaml: $yaml, ty: $ty }),*],
        };
    };
}

macro_rules! ptr {
    ($ptr:ident, $list:ident, $target:ident) => {
        static $ptr: GoType = GoType::Ptr(&$target);
        #[allow(dead_code)]
        static $list: GoType = GoType::List(&$ptr);
    };
}

go_struct!(
    CONFIG,
    "v1alpha1.Config",
    [
        ("ConfigVersion", "version", &STR),
        ("ConfigDebug", "debug", &PTR_BOOL),
        ("ConfigPersist", "persist", &PTR_BOOL),
        ("MachineConfig", "machine", &P_MACHINE),
        ("ClusterConfig", "cluster", &P_CLUSTER),
    ]
);

go_struct!(
    MACHINE,
    "v1alpha1.MachineConfig",
    [
        ("MachineType", "type", &STR),
        ("MachineToken", "token", &SECRET),
        ("MachineCA", "ca", &SECRET),
        ("MachineAcceptedCAs", "acceptedCAs", &SECRET),
        ("MachineCertSANs", "certSANs", &STR_LIST),
        (
            "MachineControlPlane",
            "controlPlane",
            &P_MACHINE_CONTROL_PLANE
        ),
        ("MachineKubelet", "kubelet", &P_KUBELET),
        ("MachinePods", "pods", &FREE_LIST),
        ("MachineNetwork", "network", &P_NETWORK),
        ("MachineDisks", "disks", &L_MACHINE_DISK),
        ("MachineInstall", "install", &P_INSTALL),
        ("MachineFiles", "files", &L_MACHINE_FILE),
        ("MachineEnv", "env", &STR_MAP),
        ("MachineTime", "time", &P_TIME),
        ("MachineSysctls", "sysctls", &STR_MAP),
        ("MachineSysfs", "sysfs", &STR_MAP),
        ("MachineRegistries", "registries", &S_REGISTRIES),
        (
            "MachineSystemDiskEncryption",
            "systemDiskEncryption",
            &SECRET
        ),
        ("MachineFeatures", "features", &P_FEATURES),
        ("MachineUdev", "udev", &P_UDEV),
        ("MachineLogging", "logging", &P_LOGGING),
        ("MachineKernel", "kernel", &P_KERNEL),
        ("MachineSeccompProfiles", "seccompProfiles", &L_SECCOMP),
        (
            "MachineBaseRuntimeSpecOverrides",
            "baseRuntimeSpecOverrides",
            &FREE
        ),
        ("MachineNodeLabels", "nodeLabels", &STR_MAP),
        ("MachineNodeAnnotations", "nodeAnnotations", &STR_MAP),
        ("MachineNodeTaints", "nodeTaints", &STR_MAP),
    ]
);
ptr!(P_MACHINE, L_MACHINE, MACHINE);

go_struct!(
    MACHINE_CONTROL_PLANE,
    "v1alpha1.MachineControlPlaneConfig",
    [
        (
            "MachineControllerManager",
            "controllerManager",
            &P_MACHINE_CONTROLLER_MANAGER
        ),
        ("MachineScheduler", "scheduler", &P_MACHINE_SCHEDULER),
    ]
);
ptr!(
    P_MACHINE_CONTROL_PLANE,
    L_MACHINE_CONTROL_PLANE,
    MACHINE_CONTROL_PLANE
);
go_struct!(
    MACHINE_CONTROLLER_MANAGER,
    "v1alpha1.MachineControllerManagerConfig",
    [("MachineControllerManagerDisabled", "disabled", &PTR_BOOL),]
);
ptr!(
    P_MACHINE_CONTROLLER_MANAGER,
    L_MACHINE_CONTROLLER_MANAGER,
    MACHINE_CONTROLLER_MANAGER
);
go_struct!(
    MACHINE_SCHEDULER,
    "v1alpha1.MachineSchedulerConfig",
    [("MachineSchedulerDisabled", "disabled", &PTR_BOOL)]
);
ptr!(P_MACHINE_SCHEDULER, L_MACHINE_SCHEDULER, MACHINE_SCHEDULER);

go_struct!(
    KUBELET,
    "v1alpha1.KubeletConfig",
    [
        ("KubeletImage", "image", &STR),
        ("KubeletClusterDNS", "clusterDNS", &STR_LIST),
        ("KubeletExtraArgs", "extraArgs", &FREE),
        ("KubeletExtraMounts", "extraMounts", &L_EXTRA_MOUNT),
        ("KubeletExtraConfig", "extraConfig", &FREE),
        (
            "KubeletCredentialProviderConfig",
            "credentialProviderConfig",
            &FREE
        ),
        (
            "KubeletDefaultRuntimeSeccompProfileEnabled",
            "defaultRuntimeSeccompProfileEnabled",
            &PTR_BOOL
        ),
        ("KubeletRegisterWithFQDN", "registerWithFQDN", &PTR_BOOL),
        ("KubeletNodeIP", "nodeIP", &P_KUBELET_NODE_IP),
        (
            "KubeletSkipNodeRegistration",
            "skipNodeRegistration",
            &PTR_BOOL
        ),
        (
            "KubeletDisableManifestsDirectory",
            "disableManifestsDirectory",
            &PTR_BOOL
        ),
    ]
);
ptr!(P_KUBELET, L_KUBELET, KUBELET);
go_struct!(
    KUBELET_NODE_IP,
    "v1alpha1.KubeletNodeIPConfig",
    [("KubeletNodeIPValidSubnets", "validSubnets", &STR_LIST)]
);
ptr!(P_KUBELET_NODE_IP, L_KUBELET_NODE_IP, KUBELET_NODE_IP);
go_struct!(
    EXTRA_MOUNT,
    "v1alpha1.ExtraMount",
    [
        ("Destination", "destination", &STR),
        ("Type", "type", &STR),
        ("Source", "source", &STR),
        ("Options", "options", &STR_LIST),
    ]
);
static S_EXTRA_MOUNT: GoType = GoType::Struct(&EXTRA_MOUNT);
static L_EXTRA_MOUNT: GoType = GoType::List(&S_EXTRA_MOUNT);

go_struct!(
    NETWORK,
    "v1alpha1.NetworkConfig",
    [
        ("NetworkHostname", "hostname", &STR),
        ("NetworkInterfaces", "interfaces", &L_DEVICE),
        ("NameServers", "nameservers", &STR_LIST),
        ("Searches", "searchDomains", &STR_LIST),
        ("ExtraHostEntries", "extraHostEntries", &L_EXTRA_HOST),
        ("NetworkKubeSpan", "kubespan", &P_KUBESPAN),
        (
            "NetworkDisableSearchDomain",
            "disableSearchDomain",
            &PTR_BOOL
        ),
    ]
);
ptr!(P_NETWORK, L_NETWORK, NETWORK);
go_struct!(
    DEVICE,
    "v1alpha1.Device",
    [
        ("DeviceInterface", "interface", &STR),
        ("DeviceSelector", "deviceSelector", &P_DEVICE_SELECTOR),
        ("DeviceAddresses", "addresses", &STR_LIST),
        ("DeviceCIDR", "cidr", &STR),
        ("DeviceRoutes", "routes", &L_ROUTE),
        ("DeviceBond", "bond", &P_BOND),
        ("DeviceBridge", "bridge", &P_BRIDGE),
        ("DeviceBridgePort", "bridgePort", &P_BRIDGE_PORT),
        ("DeviceVlans", "vlans", &L_VLAN),
        ("DeviceMTU", "mtu", &INT),
        ("DeviceDHCP", "dhcp", &PTR_BOOL),
        ("DeviceIgnore", "ignore", &PTR_BOOL),
        ("DeviceDummy", "dummy", &PTR_BOOL),
        ("DeviceDHCPOptions", "dhcpOptions", &P_DHCP_OPTIONS),
        ("DeviceWireguardConfig", "wireguard", &SECRET),
        ("DeviceVIPConfig", "vip", &P_VIP),
    ]
);
ptr!(P_DEVICE, L_DEVICE, DEVICE);
go_struct!(
    DEVICE_SELECTOR,
    "v1alpha1.NetworkDeviceSelector",
    [
        ("NetworkDeviceBus", "busPath", &STR),
        ("NetworkDeviceHardwareAddress", "hardwareAddr", &STR),
        ("NetworkDevicePermanentAddress", "permanentAddr", &STR),
        ("NetworkDevicePCIID", "pciID", &STR),
        ("NetworkDeviceKernelDriver", "driver", &STR),
        ("NetworkDevicePhysical", "physical", &PTR_BOOL),
    ]
);
ptr!(P_DEVICE_SELECTOR, L_DEVICE_SELECTOR_PTR, DEVICE_SELECTOR);
static S_DEVICE_SELECTOR: GoType = GoType::Struct(&DEVICE_SELECTOR);
static L_DEVICE_SELECTOR: GoType = GoType::List(&S_DEVICE_SELECTOR);
go_struct!(
    ROUTE,
    "v1alpha1.Route",
    [
        ("RouteNetwork", "network", &STR),
        ("RouteGateway", "gateway", &STR),
        ("RouteSource", "source", &STR),
        ("RouteMetric", "metric", &INT),
        ("RouteMTU", "mtu", &INT),
    ]
);
ptr!(P_ROUTE, L_ROUTE, ROUTE);
go_struct!(
    VLAN,
    "v1alpha1.Vlan",
    [
        ("VlanAddresses", "addresses", &STR_LIST),
        ("VlanCIDR", "cidr", &STR),
        ("VlanRoutes", "routes", &L_ROUTE),
        ("VlanDHCP", "dhcp", &PTR_BOOL),
        ("VlanID", "vlanId", &INT),
        ("VlanMTU", "mtu", &INT),
        ("VlanVIP", "vip", &P_VIP),
        ("VlanDHCPOptions", "dhcpOptions", &P_DHCP_OPTIONS),
    ]
);
ptr!(P_VLAN, L_VLAN, VLAN);
go_struct!(
    DHCP_OPTIONS,
    "v1alpha1.DHCPOptions",
    [
        ("DHCPRouteMetric", "routeMetric", &INT),
        ("DHCPIPv4", "ipv4", &PTR_BOOL),
        ("DHCPIPv6", "ipv6", &PTR_BOOL),
        ("DHCPDUIDv6", "duidv6", &STR),
    ]
);
ptr!(P_DHCP_OPTIONS, L_DHCP_OPTIONS, DHCP_OPTIONS);
go_struct!(
    VIP,
    "v1alpha1.DeviceVIPConfig",
    [
        ("SharedIP", "ip", &STR),
        ("EquinixMetalConfig", "equinixMetal", &SECRET),
        ("HCloudConfig", "hcloud", &SECRET),
    ]
);
ptr!(P_VIP, L_VIP, VIP);
go_struct!(
    BOND,
    "v1alpha1.Bond",
    [
        ("BondInterfaces", "interfaces", &STR_LIST),
        ("BondDeviceSelectors", "deviceSelectors", &L_DEVICE_SELECTOR),
        ("BondARPIPTarget", "arpIPTarget", &STR_LIST),
        ("BondMode", "mode", &STR),
        ("BondHashPolicy", "xmitHashPolicy", &STR),
        ("BondLACPRate", "lacpRate", &STR),
        ("BondADActorSystem", "adActorSystem", &STR),
        ("BondARPValidate", "arpValidate", &STR),
        ("BondARPAllTargets", "arpAllTargets", &STR),
        ("BondPrimary", "primary", &STR),
        ("BondPrimaryReselect", "primaryReselect", &STR),
        ("BondFailOverMac", "failOverMac", &STR),
        ("BondADSelect", "adSelect", &STR),
        ("BondMIIMon", "miimon", &INT),
        ("BondUpDelay", "updelay", &INT),
        ("BondDownDelay", "downdelay", &INT),
        ("BondARPInterval", "arpInterval", &INT),
        ("BondResendIGMP", "resendIgmp", &INT),
        ("BondMinLinks", "minLinks", &INT),
        ("BondLPInterval", "lpInterval", &INT),
        ("BondPacketsPerSlave", "packetsPerSlave", &INT),
        ("BondNumPeerNotif", "numPeerNotif", &INT),
        ("BondTLBDynamicLB", "tlbDynamicLb", &INT),
        ("BondAllSlavesActive", "allSlavesActive", &INT),
        ("BondUseCarrier", "useCarrier", &PTR_BOOL),
        ("BondADActorSysPrio", "adActorSysPrio", &INT),
        ("BondADUserPortKey", "adUserPortKey", &INT),
        ("BondPeerNotifyDelay", "peerNotifyDelay", &INT),
    ]
);
ptr!(P_BOND, L_BOND, BOND);
go_struct!(
    BRIDGE,
    "v1alpha1.Bridge",
    [
        ("BridgedInterfaces", "interfaces", &STR_LIST),
        ("BridgeSTP", "stp", &P_STP),
        ("BridgeVLAN", "vlan", &P_BRIDGE_VLAN),
    ]
);
ptr!(P_BRIDGE, L_BRIDGE, BRIDGE);
go_struct!(STP, "v1alpha1.STP", [("STPEnabled", "enabled", &PTR_BOOL)]);
ptr!(P_STP, L_STP, STP);
go_struct!(
    BRIDGE_VLAN,
    "v1alpha1.BridgeVLAN",
    [("BridgeVLANFiltering", "vlanFiltering", &PTR_BOOL)]
);
ptr!(P_BRIDGE_VLAN, L_BRIDGE_VLAN, BRIDGE_VLAN);
go_struct!(
    BRIDGE_PORT,
    "v1alpha1.BridgePort",
    [("BridgePortMaster", "master", &STR)]
);
ptr!(P_BRIDGE_PORT, L_BRIDGE_PORT, BRIDGE_PORT);
go_struct!(
    EXTRA_HOST,
    "v1alpha1.ExtraHost",
    [
        ("HostIP", "ip", &STR),
        ("HostAliases", "aliases", &STR_LIST)
    ]
);
ptr!(P_EXTRA_HOST, L_EXTRA_HOST, EXTRA_HOST);
go_struct!(
    KUBESPAN,
    "v1alpha1.NetworkKubeSpan",
    [
        ("KubeSpanEnabled", "enabled", &PTR_BOOL),
        (
            "KubeSpanAdvertiseKubernetesNetworks",
            "advertiseKubernetesNetworks",
            &PTR_BOOL
        ),
        (
            "KubeSpanAllowDownPeerBypass",
            "allowDownPeerBypass",
            &PTR_BOOL
        ),
        (
            "KubeSpanHarvestExtraEndpoints",
            "harvestExtraEndpoints",
            &PTR_BOOL
        ),
        ("KubeSpanMTU", "mtu", &PTR_INT),
        ("KubeSpanFilters", "filters", &P_KUBESPAN_FILTERS),
    ]
);
ptr!(P_KUBESPAN, L_KUBESPAN, KUBESPAN);
go_struct!(
    KUBESPAN_FILTERS,
    "v1alpha1.KubeSpanFilters",
    [("KubeSpanFiltersEndpoints", "endpoints", &STR_LIST)]
);
ptr!(P_KUBESPAN_FILTERS, L_KUBESPAN_FILTERS, KUBESPAN_FILTERS);

go_struct!(
    INSTALL,
    "v1alpha1.InstallConfig",
    [
        ("InstallDisk", "disk", &STR),
        (
            "InstallDiskSelector",
            "diskSelector",
            &P_INSTALL_DISK_SELECTOR
        ),
        ("InstallExtraKernelArgs", "extraKernelArgs", &STR_LIST),
        ("InstallImage", "image", &STR),
        ("InstallExtensions", "extensions", &L_INSTALL_EXTENSION),
        ("InstallBootloader", "bootloader", &PTR_BOOL),
        ("InstallWipe", "wipe", &PTR_BOOL),
        ("InstallLegacyBIOSSupport", "legacyBIOSSupport", &PTR_BOOL),
        ("InstallGrubUseUKICmdline", "grubUseUKICmdline", &PTR_BOOL),
    ]
);
ptr!(P_INSTALL, L_INSTALL, INSTALL);
go_struct!(
    INSTALL_DISK_SELECTOR,
    "v1alpha1.InstallDiskSelector",
    [
        ("Size", "size", &DISK_SIZE),
        ("Name", "name", &STR),
        ("Model", "model", &STR),
        ("Serial", "serial", &STR),
        ("Modalias", "modalias", &STR),
        ("UUID", "uuid", &STR),
        ("WWID", "wwid", &STR),
        ("Type", "type", &STR),
        ("BusPath", "busPath", &STR),
    ]
);
ptr!(
    P_INSTALL_DISK_SELECTOR,
    L_INSTALL_DISK_SELECTOR,
    INSTALL_DISK_SELECTOR
);
go_struct!(
    INSTALL_EXTENSION,
    "v1alpha1.InstallExtensionConfig",
    [("ExtensionImage", "image", &STR)]
);
static S_INSTALL_EXTENSION: GoType = GoType::Struct(&INSTALL_EXTENSION);
static L_INSTALL_EXTENSION: GoType = GoType::List(&S_INSTALL_EXTENSION);

go_struct!(
    MACHINE_DISK,
    "v1alpha1.MachineDisk",
    [
        ("DeviceName", "device", &STR),
        ("DiskPartitions", "partitions", &L_DISK_PARTITION),
    ]
);
ptr!(P_MACHINE_DISK, L_MACHINE_DISK, MACHINE_DISK);
go_struct!(
    DISK_PARTITION,
    "v1alpha1.DiskPartition",
    [
        ("DiskSize", "size", &DISK_SIZE),
        ("DiskMountPoint", "mountpoint", &STR),
    ]
);
ptr!(P_DISK_PARTITION, L_DISK_PARTITION, DISK_PARTITION);
go_struct!(
    MACHINE_FILE,
    "v1alpha1.MachineFile",
    [
        ("FileContent", "content", &STR),
        ("FilePermissions", "permissions", &FILE_MODE),
        ("FilePath", "path", &STR),
        ("FileOp", "op", &STR),
    ]
);
ptr!(P_MACHINE_FILE, L_MACHINE_FILE, MACHINE_FILE);
go_struct!(
    TIME,
    "v1alpha1.TimeConfig",
    [
        ("TimeDisabled", "disabled", &PTR_BOOL),
        ("TimeServers", "servers", &STR_LIST),
        ("TimeBootTimeout", "bootTimeout", &DURATION),
    ]
);
ptr!(P_TIME, L_TIME, TIME);
go_struct!(
    REGISTRIES,
    "v1alpha1.RegistriesConfig",
    [
        ("RegistryMirrors", "mirrors", &M_REGISTRY_MIRROR),
        (
            "RegistryConfig",
            "config",
            &GoType::Unavailable("it holds registry credentials")
        ),
    ]
);
static S_REGISTRIES: GoType = GoType::Struct(&REGISTRIES);
go_struct!(
    REGISTRY_MIRROR,
    "v1alpha1.RegistryMirrorConfig",
    [
        ("MirrorEndpoints", "endpoints", &STR_LIST),
        ("MirrorOverridePath", "overridePath", &PTR_BOOL),
        ("MirrorSkipFallback", "skipFallback", &PTR_BOOL),
    ]
);
ptr!(P_REGISTRY_MIRROR, L_REGISTRY_MIRROR, REGISTRY_MIRROR);
static M_REGISTRY_MIRROR: GoType = GoType::MapOf(&P_REGISTRY_MIRROR);

go_struct!(
    FEATURES,
    "v1alpha1.FeaturesConfig",
    [
        ("RBAC", "rbac", &PTR_BOOL),
        ("StableHostname", "stableHostname", &PTR_BOOL),
        (
            "KubernetesTalosAPIAccessConfig",
            "kubernetesTalosAPIAccess",
            &P_TALOS_API_ACCESS
        ),
        ("ApidCheckExtKeyUsage", "apidCheckExtKeyUsage", &PTR_BOOL),
        ("DiskQuotaSupport", "diskQuotaSupport", &PTR_BOOL),
        ("KubePrismSupport", "kubePrism", &P_KUBE_PRISM),
        ("HostDNSSupport", "hostDNS", &P_HOST_DNS),
        ("ImageCacheSupport", "imageCache", &P_IMAGE_CACHE),
        (
            "FeatureNodeAddressSortAlgorithm",
            "nodeAddressSortAlgorithm",
            &STR
        ),
    ]
);
ptr!(P_FEATURES, L_FEATURES, FEATURES);
go_struct!(
    TALOS_API_ACCESS,
    "v1alpha1.KubernetesTalosAPIAccessConfig",
    [
        ("AccessEnabled", "enabled", &PTR_BOOL),
        ("AccessAllowedRoles", "allowedRoles", &STR_LIST),
        (
            "AccessAllowedKubernetesNamespaces",
            "allowedKubernetesNamespaces",
            &STR_LIST
        ),
    ]
);
ptr!(P_TALOS_API_ACCESS, L_TALOS_API_ACCESS, TALOS_API_ACCESS);
go_struct!(
    KUBE_PRISM,
    "v1alpha1.KubePrism",
    [
        ("ServerEnabled", "enabled", &PTR_BOOL),
        ("ServerPort", "port", &INT)
    ]
);
ptr!(P_KUBE_PRISM, L_KUBE_PRISM, KUBE_PRISM);
go_struct!(
    HOST_DNS,
    "v1alpha1.HostDNSConfig",
    [
        ("HostDNSEnabled", "enabled", &PTR_BOOL),
        (
            "HostDNSForwardKubeDNSToHost",
            "forwardKubeDNSToHost",
            &PTR_BOOL
        ),
        ("HostDNSResolveMemberNames", "resolveMemberNames", &PTR_BOOL),
    ]
);
ptr!(P_HOST_DNS, L_HOST_DNS, HOST_DNS);
go_struct!(
    IMAGE_CACHE,
    "v1alpha1.ImageCacheConfig",
    [("CacheLocalEnabled", "localEnabled", &PTR_BOOL)]
);
ptr!(P_IMAGE_CACHE, L_IMAGE_CACHE, IMAGE_CACHE);
go_struct!(
    UDEV,
    "v1alpha1.UdevConfig",
    [("UdevRules", "rules", &STR_LIST)]
);
ptr!(P_UDEV, L_UDEV, UDEV);
go_struct!(
    LOGGING,
    "v1alpha1.LoggingConfig",
    [(
        "LoggingDestinations",
        "destinations",
        &L_LOGGING_DESTINATION
    )]
);
ptr!(P_LOGGING, L_LOGGING, LOGGING);
go_struct!(
    LOGGING_DESTINATION,
    "v1alpha1.LoggingDestination",
    [
        ("LoggingEndpoint", "endpoint", &ENDPOINT),
        ("LoggingFormat", "format", &STR),
        ("LoggingExtraTags", "extraTags", &STR_MAP),
    ]
);
static S_LOGGING_DESTINATION: GoType = GoType::Struct(&LOGGING_DESTINATION);
static L_LOGGING_DESTINATION: GoType = GoType::List(&S_LOGGING_DESTINATION);
go_struct!(
    KERNEL,
    "v1alpha1.KernelConfig",
    [("KernelModules", "modules", &L_KERNEL_MODULE)]
);
ptr!(P_KERNEL, L_KERNEL, KERNEL);
go_struct!(
    KERNEL_MODULE,
    "v1alpha1.KernelModuleConfig",
    [
        ("ModuleName", "name", &STR),
        ("ModuleParameters", "parameters", &STR_LIST),
    ]
);
ptr!(P_KERNEL_MODULE, L_KERNEL_MODULE, KERNEL_MODULE);
go_struct!(
    SECCOMP,
    "v1alpha1.MachineSeccompProfile",
    [
        ("MachineSeccompProfileName", "name", &STR),
        ("MachineSeccompProfileValue", "value", &FREE),
    ]
);
ptr!(P_SECCOMP, L_SECCOMP, SECCOMP);

go_struct!(
    CLUSTER,
    "v1alpha1.ClusterConfig",
    [
        ("ClusterID", "id", &STR),
        ("ClusterSecret", "secret", &SECRET),
        ("ControlPlane", "controlPlane", &P_CONTROL_PLANE),
        ("ClusterName", "clusterName", &STR),
        ("ClusterNetwork", "network", &P_CLUSTER_NETWORK),
        ("BootstrapToken", "token", &SECRET),
        (
            "ClusterAESCBCEncryptionSecret",
            "aescbcEncryptionSecret",
            &SECRET
        ),
        (
            "ClusterSecretboxEncryptionSecret",
            "secretboxEncryptionSecret",
            &SECRET
        ),
        ("ClusterCA", "ca", &SECRET),
        ("ClusterAcceptedCAs", "acceptedCAs", &SECRET),
        ("ClusterAggregatorCA", "aggregatorCA", &SECRET),
        ("ClusterServiceAccount", "serviceAccount", &SECRET),
        ("APIServerConfig", "apiServer", &P_API_SERVER),
        (
            "ControllerManagerConfig",
            "controllerManager",
            &P_CONTROLLER_MANAGER
        ),
        ("ProxyConfig", "proxy", &P_PROXY),
        ("SchedulerConfig", "scheduler", &P_SCHEDULER),
        ("ClusterDiscoveryConfig", "discovery", &P_DISCOVERY),
        ("EtcdConfig", "etcd", &P_ETCD),
        ("CoreDNSConfig", "coreDNS", &P_COREDNS),
        (
            "ExternalCloudProviderConfig",
            "externalCloudProvider",
            &P_EXTERNAL_CLOUD_PROVIDER
        ),
        ("ExtraManifests", "extraManifests", &STR_LIST),
        ("ExtraManifestHeaders", "extraManifestHeaders", &STR_MAP),
        (
            "ClusterInlineManifests",
            "inlineManifests",
            &L_INLINE_MANIFEST
        ),
        (
            "AdminKubeconfigConfig",
            "adminKubeconfig",
            &P_ADMIN_KUBECONFIG
        ),
        (
            "AllowSchedulingOnMasters",
            "allowSchedulingOnMasters",
            &PTR_BOOL
        ),
        (
            "AllowSchedulingOnControlPlanes",
            "allowSchedulingOnControlPlanes",
            &PTR_BOOL
        ),
    ]
);
ptr!(P_CLUSTER, L_CLUSTER, CLUSTER);
go_struct!(
    CONTROL_PLANE,
    "v1alpha1.ControlPlaneConfig",
    [
        ("Endpoint", "endpoint", &ENDPOINT),
        ("LocalAPIServerPort", "localAPIServerPort", &INT),
    ]
);
ptr!(P_CONTROL_PLANE, L_CONTROL_PLANE, CONTROL_PLANE);
go_struct!(
    CLUSTER_NETWORK,
    "v1alpha1.ClusterNetworkConfig",
    [
        ("CNI", "cni", &P_CNI),
        ("DNSDomain", "dnsDomain", &STR),
        ("PodSubnet", "podSubnets", &STR_LIST),
        ("ServiceSubnet", "serviceSubnets", &STR_LIST),
    ]
);
ptr!(P_CLUSTER_NETWORK, L_CLUSTER_NETWORK, CLUSTER_NETWORK);
go_struct!(
    CNI,
    "v1alpha1.CNIConfig",
    [
        ("CNIName", "name", &STR),
        ("CNIUrls", "urls", &STR_LIST),
        ("CNIFlannel", "flannel", &P_FLANNEL),
    ]
);
ptr!(P_CNI, L_CNI, CNI);
go_struct!(
    FLANNEL,
    "v1alpha1.FlannelCNIConfig",
    [("FlanneldExtraArgs", "extraArgs", &STR_LIST)]
);
ptr!(P_FLANNEL, L_FLANNEL, FLANNEL);
go_struct!(
    API_SERVER,
    "v1alpha1.APIServerConfig",
    [
        ("ContainerImage", "image", &STR),
        ("ExtraArgsConfig", "extraArgs", &FREE),
        ("ExtraVolumesConfig", "extraVolumes", &L_VOLUME_MOUNT),
        ("EnvConfig", "env", &STR_MAP),
        ("CertSANs", "certSANs", &STR_LIST),
        (
            "DisablePodSecurityPolicyConfig",
            "disablePodSecurityPolicy",
            &PTR_BOOL
        ),
        (
            "AdmissionControlConfig",
            "admissionControl",
            &L_ADMISSION_PLUGIN
        ),
        ("AuditPolicyConfig", "auditPolicy", &FREE),
        ("ResourcesConfig", "resources", &P_RESOURCES),
        (
            "AuthorizationConfigConfig",
            "authorizationConfig",
            &L_AUTHORIZER
        ),
    ]
);
ptr!(P_API_SERVER, L_API_SERVER, API_SERVER);
go_struct!(
    ADMISSION_PLUGIN,
    "v1alpha1.AdmissionPluginConfig",
    [
        ("PluginName", "name", &STR),
        ("PluginConfiguration", "configuration", &FREE),
    ]
);
ptr!(P_ADMISSION_PLUGIN, L_ADMISSION_PLUGIN, ADMISSION_PLUGIN);
go_struct!(
    AUTHORIZER,
    "v1alpha1.AuthorizationConfigAuthorizerConfig",
    [
        ("AuthorizerType", "type", &STR),
        ("AuthorizerName", "name", &STR),
        ("AuthorizerWebhook", "webhook", &FREE),
    ]
);
ptr!(P_AUTHORIZER, L_AUTHORIZER, AUTHORIZER);
go_struct!(
    RESOURCES,
    "v1alpha1.ResourcesConfig",
    [("Requests", "requests", &FREE), ("Limits", "limits", &FREE)]
);
ptr!(P_RESOURCES, L_RESOURCES, RESOURCES);
go_struct!(
    VOLUME_MOUNT,
    "v1alpha1.VolumeMountConfig",
    [
        ("VolumeHostPath", "hostPath", &STR),
        ("VolumeMountPath", "mountPath", &STR),
        ("VolumeReadOnly", "readonly", &BOOL),
    ]
);
static S_VOLUME_MOUNT: GoType = GoType::Struct(&VOLUME_MOUNT);
static L_VOLUME_MOUNT: GoType = GoType::List(&S_VOLUME_MOUNT);
go_struct!(
    CONTROLLER_MANAGER,
    "v1alpha1.ControllerManagerConfig",
    [
        ("ContainerImage", "image", &STR),
        ("ExtraArgsConfig", "extraArgs", &FREE),
        ("ExtraVolumesConfig", "extraVolumes", &L_VOLUME_MOUNT),
        ("EnvConfig", "env", &STR_MAP),
        ("ResourcesConfig", "resources", &P_RESOURCES),
    ]
);
ptr!(
    P_CONTROLLER_MANAGER,
    L_CONTROLLER_MANAGER,
    CONTROLLER_MANAGER
);
go_struct!(
    PROXY,
    "v1alpha1.ProxyConfig",
    [
        ("Disabled", "disabled", &PTR_BOOL),
        ("ContainerImage", "image", &STR),
        ("ModeConfig", "mode", &STR),
        ("ExtraArgsConfig", "extraArgs", &FREE),
    ]
);
ptr!(P_PROXY, L_PROXY, PROXY);
go_struct!(
    SCHEDULER,
    "v1alpha1.SchedulerConfig",
    [
        ("ContainerImage", "image", &STR),
        ("ExtraArgsConfig", "extraArgs", &FREE),
        ("ExtraVolumesConfig", "extraVolumes", &L_VOLUME_MOUNT),
        ("EnvConfig", "env", &STR_MAP),
        ("ResourcesConfig", "resources", &P_RESOURCES),
        ("SchedulerConfig", "config", &FREE),
    ]
);
ptr!(P_SCHEDULER, L_SCHEDULER, SCHEDULER);
go_struct!(
    ETCD,
    "v1alpha1.EtcdConfig",
    [
        ("ContainerImage", "image", &STR),
        ("RootCA", "ca", &SECRET),
        ("EtcdExtraArgs", "extraArgs", &FREE),
        ("EtcdSubnet", "subnet", &STR),
        ("EtcdAdvertisedSubnets", "advertisedSubnets", &STR_LIST),
        ("EtcdListenSubnets", "listenSubnets", &STR_LIST),
    ]
);
ptr!(P_ETCD, L_ETCD, ETCD);
go_struct!(
    COREDNS,
    "v1alpha1.CoreDNS",
    [
        ("CoreDNSDisabled", "disabled", &PTR_BOOL),
        ("CoreDNSImage", "image", &STR)
    ]
);
ptr!(P_COREDNS, L_COREDNS, COREDNS);
go_struct!(
    EXTERNAL_CLOUD_PROVIDER,
    "v1alpha1.ExternalCloudProviderConfig",
    [
        ("ExternalEnabled", "enabled", &PTR_BOOL),
        ("ExternalManifests", "manifests", &STR_LIST),
    ]
);
ptr!(
    P_EXTERNAL_CLOUD_PROVIDER,
    L_EXTERNAL_CLOUD_PROVIDER,
    EXTERNAL_CLOUD_PROVIDER
);
go_struct!(
    DISCOVERY,
    "v1alpha1.ClusterDiscoveryConfig",
    [
        ("DiscoveryEnabled", "enabled", &PTR_BOOL),
        ("DiscoveryRegistries", "registries", &S_DISCOVERY_REGISTRIES),
    ]
);
ptr!(P_DISCOVERY, L_DISCOVERY, DISCOVERY);
go_struct!(
    DISCOVERY_REGISTRIES,
    "v1alpha1.DiscoveryRegistriesConfig",
    [
        ("RegistryKubernetes", "kubernetes", &S_REGISTRY_KUBERNETES),
        ("RegistryService", "service", &S_REGISTRY_SERVICE),
    ]
);
static S_DISCOVERY_REGISTRIES: GoType = GoType::Struct(&DISCOVERY_REGISTRIES);
go_struct!(
    REGISTRY_KUBERNETES,
    "v1alpha1.RegistryKubernetesConfig",
    [("RegistryDisabled", "disabled", &PTR_BOOL)]
);
static S_REGISTRY_KUBERNETES: GoType = GoType::Struct(&REGISTRY_KUBERNETES);
go_struct!(
    REGISTRY_SERVICE,
    "v1alpha1.RegistryServiceConfig",
    [
        ("RegistryDisabled", "disabled", &PTR_BOOL),
        ("RegistryEndpoint", "endpoint", &STR),
    ]
);
static S_REGISTRY_SERVICE: GoType = GoType::Struct(&REGISTRY_SERVICE);
go_struct!(
    INLINE_MANIFEST,
    "v1alpha1.ClusterInlineManifest",
    [
        ("InlineManifestName", "name", &STR),
        ("InlineManifestContents", "contents", &STR),
    ]
);
static S_INLINE_MANIFEST: GoType = GoType::Struct(&INLINE_MANIFEST);
static L_INLINE_MANIFEST: GoType = GoType::List(&S_INLINE_MANIFEST);
go_struct!(
    ADMIN_KUBECONFIG,
    "v1alpha1.AdminKubeconfigConfig",
    [("AdminKubeconfigCertLifetime", "certLifetime", &DURATION)]
);
ptr!(P_ADMIN_KUBECONFIG, L_ADMIN_KUBECONFIG, ADMIN_KUBECONFIG);

/// Every struct, for tests and for counting the table.
#[cfg(test)]
pub(super) fn all_structs() -> Vec<&'static StructType> {
    vec![
        &CONFIG,
        &MACHINE,
        &MACHINE_CONTROL_PLANE,
        &MACHINE_CONTROLLER_MANAGER,
        &MACHINE_SCHEDULER,
        &KUBELET,
        &KUBELET_NODE_IP,
        &EXTRA_MOUNT,
        &NETWORK,
        &DEVICE,
        &DEVICE_SELECTOR,
        &ROUTE,
        &VLAN,
        &DHCP_OPTIONS,
        &VIP,
        &BOND,
        &BRIDGE,
        &STP,
        &BRIDGE_VLAN,
        &BRIDGE_PORT,
        &EXTRA_HOST,
        &KUBESPAN,
        &KUBESPAN_FILTERS,
        &INSTALL,
        &INSTALL_DISK_SELECTOR,
        &INSTALL_EXTENSION,
        &MACHINE_DISK,
        &DISK_PARTITION,
        &MACHINE_FILE,
        &TIME,
        &REGISTRIES,
        &REGISTRY_MIRROR,
        &FEATURES,
        &TALOS_API_ACCESS,
        &KUBE_PRISM,
        &HOST_DNS,
        &IMAGE_CACHE,
        &UDEV,
        &LOGGING,
        &LOGGING_DESTINATION,
        &KERNEL,
        &KERNEL_MODULE,
        &SECCOMP,
        &CLUSTER,
        &CONTROL_PLANE,
        &CLUSTER_NETWORK,
        &CNI,
        &FLANNEL,
        &API_SERVER,
        &ADMISSION_PLUGIN,
        &AUTHORIZER,
        &RESOURCES,
        &VOLUME_MOUNT,
        &CONTROLLER_MANAGER,
        &PROXY,
        &SCHEDULER,
        &ETCD,
        &COREDNS,
        &EXTERNAL_CLOUD_PROVIDER,
        &DISCOVERY,
        &DISCOVERY_REGISTRIES,
        &REGISTRY_KUBERNETES,
        &REGISTRY_SERVICE,
        &INLINE_MANIFEST,
        &ADMIN_KUBECONFIG,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_covers_the_fields_talhelper_users_write() {
        let total: usize = all_structs().iter().map(|s| s.fields.len()).sum();
        assert!(total >= 40, "{total} fields");
        let lookup = |path: &[&str]| -> &'static str {
            let mut ty: &StructType = &CONFIG;
            let mut yaml = "";
            for (i, name) in path.iter().enumerate() {
                let f = ty
                    .field(name)
                    .unwrap_or_else(|| panic!("{name} in {}", ty.name));
                yaml = f.yaml;
                if i + 1 < path.len() {
                    ty = match f.ty {
                        GoType::Ptr(s) | GoType::Struct(s) => s,
                        other => panic!("{name} is {other:?}"),
                    };
                }
            }
            yaml
        };
        assert_eq!(
            lookup(&["MachineConfig", "MachineInstall", "InstallImage"]),
            "image"
        );
        assert_eq!(
            lookup(&["MachineConfig", "MachineNetwork", "NetworkHostname"]),
            "hostname"
        );
        assert_eq!(
            lookup(&["ClusterConfig", "ClusterNetwork", "ServiceSubnet"]),
            "serviceSubnets"
        );
        assert_eq!(
            lookup(&["ClusterConfig", "ControlPlane", "Endpoint"]),
            "endpoint"
        );
        assert_eq!(
            lookup(&["MachineConfig", "MachineKubelet", "KubeletImage"]),
            "image"
        );
    }

    #[test]
    fn field_names_are_unique_per_struct() {
        for s in all_structs() {
            for (i, f) in s.fields.iter().enumerate() {
                assert!(
                    s.fields[i + 1..]
                        .iter()
                        .all(|g| g.go != f.go && g.yaml != f.yaml),
                    "{} in {}",
                    f.go,
                    s.name
                );
            }
        }
    }
}
