//! Validation of a machine config the way Talos validates one (`talosctl validate --mode
//! metal|cloud|container`): the v1alpha1 checks, conflicts between legacy fields and the
//! documents that replace them, duplicate documents, and per-document requirements. Used on
//! everything `genconfig` writes and by `kforge validate nodeconfig` for any file.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use kforge_yaml::Value;

use crate::patch::DocumentId;

/// Where the config will run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Metal,
    Cloud,
    Container,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Metal => "metal",
            Mode::Cloud => "cloud",
            Mode::Container => "container",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
}

/// One problem: which document, which field (a dotted path inside the document), what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    /// Index of the document in the file.
    pub document: usize,
    /// Path inside the document, e.g. `machine.install.disk`.
    pub path: String,
    pub message: String,
}

/// Document kinds Talos accepts, by the contract that introduced them (§2 of the reference).
const KINDS: &[(&str, u64)] = &[
    ("UserVolumeConfig", 10),
    ("VolumeConfig", 8),
    ("ExtensionServiceConfig", 7),
    ("PCIDriverRebindConfig", 10),
    ("NetworkDefaultActionConfig", 6),
    ("EthernetConfig", 10),
    ("KubeSpanEndpoints", 7),
    ("NetworkRuleConfig", 6),
    ("EventSinkConfig", 5),
    ("KmsgLogConfig", 5),
    ("WatchdogTimerConfig", 7),
    ("TrustedRootsConfig", 7),
    ("SideroLinkConfig", 5),
    ("ExistingVolumeConfig", 11),
    ("RawVolumeConfig", 11),
    ("SwapVolumeConfig", 11),
    ("ZswapConfig", 11),
    ("RegistryMirrorConfig", 12),
    ("RegistryAuthConfig", 12),
    ("RegistryTLSConfig", 12),
    ("HostnameConfig", 12),
    ("LinkConfig", 12),
    ("LinkAliasConfig", 12),
    ("BondConfig", 12),
    ("VLANConfig", 12),
    ("BridgeConfig", 12),
    ("DummyLinkConfig", 12),
    ("WireguardConfig", 12),
    ("Layer2VIPConfig", 12),
    ("HCloudVIPConfig", 12),
    ("DHCPv4Config", 12),
    ("DHCPv6Config", 12),
    ("ResolverConfig", 12),
    ("TimeSyncConfig", 12),
    ("StaticHostConfig", 12),
    ("OOMConfig", 12),
    ("BlackholeRouteConfig", 13),
    ("ExternalVolumeConfig", 13),
    ("KubeSpanConfig", 13),
    ("RoutingRuleConfig", 13),
    ("TCPProbeConfig", 13),
    ("VRFConfig", 13),
    ("EnvironmentConfig", 13),
];

/// Kinds that are identified by `name`.
const UNNAMED_KINDS: &[&str] = &[
    "NetworkDefaultActionConfig",
    "KubeSpanEndpoints",
    "EventSinkConfig",
    "WatchdogTimerConfig",
    "HostnameConfig",
    "ResolverConfig",
    "TimeSyncConfig",
    "OOMConfig",
    "KubeSpanConfig",
    "EnvironmentConfig",
    "ZswapConfig",
    "SideroLinkConfig",
];

struct Checker {
    out: Vec<Finding>,
    doc: usize,
}

impl Checker {
    fn err(&mut self, path: &str, msg: impl Into<String>) {
        self.out.push(Finding {
            level: Level::Error,
            document: self.doc,
            path: path.into(),
            message: msg.into(),
        });
    }
    fn warn(&mut self, path: &str, msg: impl Into<String>) {
        self.out.push(Finding {
            level: Level::Warning,
            document: self.doc,
            path: path.into(),
            message: msg.into(),
        });
    }
}

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, k| cur.get(k))
}

fn text<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    get(v, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn truthy(v: &Value, path: &str) -> bool {
    get(v, path).and_then(Value::as_bool).unwrap_or(false)
}

/// Validates the documents of one machine config for `mode`. `talos_minor` (e.g. 12) enables
/// the per-version kind check when known. With `strict`, warnings become errors.
pub fn validate(
    docs: &[Value],
    mode: Mode,
    talos_minor: Option<u64>,
    strict: bool,
) -> Vec<Finding> {
    let mut c = Checker {
        out: Vec::new(),
        doc: 0,
    };
    let mut ids: Vec<DocumentId> = Vec::new();
    let mut v1: Option<(usize, &Value)> = None;
    for (i, d) in docs.iter().enumerate() {
        c.doc = i;
        if !d.is_object() {
            c.err("", "a machine-config document must be a mapping");
            continue;
        }
        let id = DocumentId::of(d);
        if id.is_v1alpha1() {
            if v1.is_some() {
                c.err(
                    "",
                    "a second v1alpha1 document; a machine config has exactly one",
                );
            } else {
                v1 = Some((i, d));
            }
        } else {
            if ids.contains(&id) {
                c.err("kind", format!("duplicate document {id}"));
            }
            document(&mut c, d, &id, talos_minor);
        }
        ids.push(id);
    }
    match v1 {
        None => {
            c.doc = 0;
            c.err(
                "",
                "no v1alpha1 document (with `version: v1alpha1`, `machine:` and `cluster:`)",
            );
        }
        Some((i, v)) => {
            c.doc = i;
            v1alpha1(&mut c, v, mode, docs);
        }
    }
    if strict {
        for f in &mut c.out {
            f.level = Level::Error;
        }
    }
    c.out
}

fn v1alpha1(c: &mut Checker, v: &Value, mode: Mode, docs: &[Value]) {
    match text(v, "version") {
        Some("v1alpha1") => {}
        other => c.err(
            "version",
            format!(
                "`version` must be v1alpha1, found {}",
                other.unwrap_or("nothing")
            ),
        ),
    }
    if get(v, "persist").and_then(Value::as_bool) == Some(false) {
        c.err("persist", "`persist` must be true");
    }
    let Some(m) = get(v, "machine").filter(|m| m.is_object()) else {
        c.err("machine", "the `machine` section is required");
        return;
    };
    let ty = text(m, "type").unwrap_or("");
    let control_plane = match ty {
        "controlplane" | "init" => true,
        "worker" => false,
        "join" => {
            c.warn(
                "machine.type",
                "machine type `join` is the legacy name of `worker`",
            );
            false
        }
        other => {
            c.err(
                "machine.type",
                format!("unknown machine type `{other}`; expected controlplane or worker"),
            );
            false
        }
    };
    if text(m, "ca.crt").is_none()
        && get(m, "acceptedCAs")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
    {
        c.err("machine.ca", "`machine.ca` is required (the Talos API CA)");
    }
    let has_key = |path: &str| text(v, path).is_some();
    if control_plane {
        if !has_key("machine.ca.key") {
            c.err("machine.ca.key", "a control-plane node needs the OS CA key");
        }
    } else {
        for (path, what) in [
            ("machine.ca.key", "the OS CA key"),
            ("cluster.ca.key", "the Kubernetes CA key"),
            ("cluster.aggregatorCA.key", "the aggregator CA key"),
            ("cluster.serviceAccount.key", "the service-account key"),
            ("cluster.etcd.ca.key", "the etcd CA key"),
            (
                "cluster.secretboxEncryptionSecret",
                "the secrets encryption key",
            ),
            (
                "cluster.aescbcEncryptionSecret",
                "the secrets encryption key",
            ),
        ] {
            if has_key(path) {
                c.err(path, format!("a worker must not carry {what}"));
            }
        }
        if get(v, "cluster.etcd").is_some_and(|e| e.as_object().is_some_and(|o| !o.is_empty())) {
            c.err(
                "cluster.etcd",
                "etcd settings belong on control-plane nodes only",
            );
        }
    }

    // Install.
    let install = get(m, "install");
    if mode == Mode::Metal {
        match install {
            None => c.err(
                "machine.install",
                "metal nodes need `machine.install` with a disk",
            ),
            Some(i) => {
                if text(i, "disk").is_none()
                    && get(i, "diskSelector")
                        .is_none_or(|s| s.as_object().is_none_or(|o| o.is_empty()))
                {
                    c.err(
                        "machine.install",
                        "metal nodes need `install.disk` or `install.diskSelector`",
                    );
                }
            }
        }
    }
    if let Some(i) = install {
        let args = get(i, "extraKernelArgs")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if args && truthy(i, "grubUseUKICmdline") {
            c.err("machine.install.extraKernelArgs", "`install.extraKernelArgs` and `install.grubUseUKICmdline: true` are mutually exclusive; put kernel arguments in the image (schematic) or set grubUseUKICmdline to false");
        }
    }
    if mode == Mode::Container
        && !(truthy(m, "features.hostDNS.enabled")
            && truthy(m, "features.hostDNS.forwardKubeDNSToHost"))
    {
        let via_doc = docs.iter().any(|d| {
            text(d, "kind") == Some("ResolverConfig")
                && truthy(d, "hostDNS.enabled")
                && truthy(d, "hostDNS.forwardKubeDNSToHost")
        });
        if !via_doc {
            c.err("machine.features.hostDNS", "container mode needs `features.hostDNS.enabled: true` and `forwardKubeDNSToHost: true`");
        }
    }

    // VIPs only on control-plane nodes.
    if !control_plane {
        if docs.iter().any(|d| {
            text(d, "kind") == Some("Layer2VIPConfig") || text(d, "kind") == Some("HCloudVIPConfig")
        }) {
            c.err(
                "machine.type",
                "a VIP (Layer2VIPConfig) is only allowed on control-plane nodes",
            );
        }
        for (i, dev) in get(m, "network.interfaces")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if get(dev, "vip").is_some()
                || get(dev, "vlans")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|vl| get(vl, "vip").is_some())
            {
                c.err(
                    &format!("machine.network.interfaces[{i}].vip"),
                    "a VIP is only allowed on control-plane nodes",
                );
            }
        }
    }

    // Labels and taints.
    for (key, what) in [
        ("nodeLabels", "label"),
        ("nodeAnnotations", "annotation"),
        ("nodeTaints", "taint"),
    ] {
        for (k, val) in get(m, key).and_then(Value::as_object).into_iter().flatten() {
            if !qualified_name(k) {
                c.err(
                    &format!("machine.{key}.{k}"),
                    format!("`{k}` is not a valid {what} key"),
                );
            }
            if key == "nodeLabels" && !val.as_str().is_some_and(label_value) {
                c.err(
                    &format!("machine.{key}.{k}"),
                    format!(
                        "`{}` is not a valid label value",
                        val.as_str().unwrap_or("?")
                    ),
                );
            }
            if key == "nodeTaints" {
                let effect = val
                    .as_str()
                    .and_then(|s| s.rsplit_once(':'))
                    .map(|(_, e)| e);
                if let Some(e) = effect
                    && !matches!(e, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
                {
                    c.err(
                        &format!("machine.{key}.{k}"),
                        format!("unknown taint effect `{e}`"),
                    );
                }
            }
        }
    }

    // Cluster.
    let Some(cl) = get(v, "cluster").filter(|x| x.is_object()) else {
        c.err("cluster", "the `cluster` section is required");
        return;
    };
    match text(cl, "controlPlane.endpoint") {
        None => c.err(
            "cluster.controlPlane.endpoint",
            "`cluster.controlPlane.endpoint` is required",
        ),
        Some(e) => {
            if let Err((msg, _)) = kforge_spec::validate::parse_endpoint(e) {
                c.err(
                    "cluster.controlPlane.endpoint",
                    format!("invalid endpoint `{e}`: {msg}"),
                );
            }
        }
    }
    if let Some(d) = text(cl, "network.dnsDomain")
        && !kforge_spec::validate::is_dns_name(d)
    {
        c.err(
            "cluster.network.dnsDomain",
            format!("`{d}` is not a valid DNS domain"),
        );
    }
    if let Some(cni) = get(cl, "network.cni") {
        let name = text(cni, "name").unwrap_or("flannel");
        let urls = get(cni, "urls")
            .and_then(Value::as_array)
            .is_some_and(|u| !u.is_empty());
        match name {
            "flannel" | "none" if urls => c.err(
                "cluster.network.cni.urls",
                format!("CNI `{name}` takes no urls"),
            ),
            "custom" if !urls => c.err("cluster.network.cni.urls", "CNI `custom` needs urls"),
            "flannel" | "none" | "custom" => {}
            other => c.err(
                "cluster.network.cni.name",
                format!("unknown CNI `{other}`; expected flannel, custom or none"),
            ),
        }
    }
    let mut names = HashSet::new();
    for (i, im) in get(cl, "inlineManifests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match text(im, "name") {
            None => c.err(
                &format!("cluster.inlineManifests[{i}].name"),
                "inline manifest needs a name",
            ),
            Some(n) if !names.insert(n.to_string()) => c.err(
                &format!("cluster.inlineManifests[{i}].name"),
                format!("inline manifest `{n}` is defined twice"),
            ),
            _ => {}
        }
    }
    if truthy(cl, "discovery.enabled") && (text(cl, "id").is_none() || text(cl, "secret").is_none())
    {
        c.err(
            "cluster.discovery",
            "cluster discovery needs `cluster.id` and `cluster.secret`",
        );
    }

    // Legacy fields beside the documents that replace them.
    let has_kind = |k: &str| docs.iter().any(|d| text(d, "kind") == Some(k));
    let conflicts: &[(&str, &str, &str)] = &[
        (
            "HostnameConfig",
            "network.hostname",
            "static hostname is already set in v1alpha1 config",
        ),
        (
            "HostnameConfig",
            "features.stableHostname",
            "stable hostname is already set in v1alpha1 config",
        ),
        (
            "ResolverConfig",
            "network.nameservers",
            "nameservers are already set in v1alpha1 config",
        ),
        (
            "ResolverConfig",
            "network.searchDomains",
            "search domains are already set in v1alpha1 config",
        ),
        (
            "ResolverConfig",
            "network.disableSearchDomain",
            "disableSearchDomain is already set in v1alpha1 config",
        ),
        (
            "TimeSyncConfig",
            "time",
            "time settings are already set in v1alpha1 config",
        ),
        (
            "VolumeConfig",
            "systemDiskEncryption",
            "system disk encryption is already set in v1alpha1 config",
        ),
        (
            "KubeSpanConfig",
            "network.kubespan",
            "KubeSpan is already configured in v1alpha1 config",
        ),
        (
            "EnvironmentConfig",
            "env",
            "environment is already set in v1alpha1 config",
        ),
    ];
    for (kind, field, msg) in conflicts {
        if has_kind(kind) && get(m, field).is_some_and(|x| !x.is_null() && x != &Value::Bool(false))
        {
            c.err(
                &format!("machine.{field}"),
                format!("{kind}: {msg}; remove `machine.{field}` or the {kind} document"),
            );
        }
    }
    if (has_kind("LinkConfig") || has_kind("BondConfig") || has_kind("VLANConfig"))
        && get(m, "network.interfaces")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    {
        c.warn("machine.network.interfaces", "legacy `machine.network.interfaces` beside network documents; move them into LinkConfig/BondConfig/VLANConfig documents");
    }
}

fn document(c: &mut Checker, d: &Value, id: &DocumentId, talos_minor: Option<u64>) {
    if id.api_version != "v1alpha1" {
        c.err(
            "apiVersion",
            format!("unknown apiVersion `{}` for {}", id.api_version, id.kind),
        );
        return;
    }
    match KINDS.iter().find(|(k, _)| *k == id.kind) {
        None => {
            c.err("kind", format!("unknown document kind `{}`", id.kind));
            return;
        }
        Some((_, since)) => {
            if let Some(minor) = talos_minor
                && minor < *since
            {
                c.err(
                    "kind",
                    format!(
                        "{} needs Talos ≥ 1.{since}; this config targets Talos 1.{minor}",
                        id.kind
                    ),
                );
            }
        }
    }
    if !UNNAMED_KINDS.contains(&id.kind.as_str())
        && id.name.as_deref().is_none_or(str::is_empty)
        && id.kind != "VolumeConfig"
    {
        c.err("name", format!("{} needs a `name`", id.kind));
    }
    let need = |c: &mut Checker, field: &str| {
        if get(d, field).is_none_or(Value::is_null) {
            c.err(field, format!("{} needs `{field}`", id.kind));
        }
    };
    match id.kind.as_str() {
        "BondConfig" => {
            need(c, "links");
            need(c, "bondMode");
        }
        "VLANConfig" => {
            need(c, "parent");
            need(c, "vlanID");
        }
        "BridgeConfig" => need(c, "links"),
        "WireguardConfig" => need(c, "privateKey"),
        "Layer2VIPConfig" => {
            if id
                .name
                .as_deref()
                .is_some_and(|n| n.parse::<IpAddr>().is_err())
            {
                c.err(
                    "name",
                    format!(
                        "Layer2VIPConfig name must be the VIP address, found `{}`",
                        id.name.as_deref().unwrap_or("")
                    ),
                );
            }
            need(c, "link");
        }
        "HostnameConfig" => {
            let auto = text(d, "auto");
            if let Some(a) = auto
                && !matches!(a, "stable" | "off")
            {
                c.err(
                    "auto",
                    format!("HostnameConfig `auto` must be stable or off, found `{a}`"),
                );
            }
            if auto == Some("stable") && text(d, "hostname").is_some() {
                c.err("hostname", "HostnameConfig sets both `hostname` and `auto: stable`; set `auto: off` with a static hostname");
            }
        }
        "StaticHostConfig"
            if id
                .name
                .as_deref()
                .is_some_and(|n| n.parse::<IpAddr>().is_err()) =>
        {
            c.err("name", "StaticHostConfig name must be an IP address");
        }
        _ => {}
    }
}

fn qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(kforge_spec::validate::is_dns_name) && !name.is_empty() && label_value(name)
}

fn label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base(ty: &str) -> Value {
        json!({
            "version": "v1alpha1", "persist": true,
            "machine": {"type": ty, "ca": {"crt": "x", "key": if ty == "worker" { "" } else { "k" }}, "install": {"disk": "/dev/sda"},
                        "features": {"hostDNS": {"enabled": true, "forwardKubeDNSToHost": true}}},
            "cluster": {"id": "i", "secret": "s", "controlPlane": {"endpoint": "https://1.2.3.4:6443"}, "network": {"dnsDomain": "cluster.local"}}
        })
    }

    fn msgs(f: &[Finding]) -> Vec<String> {
        f.iter()
            .map(|x| format!("{}:{} {}", x.document, x.path, x.message))
            .collect()
    }

    #[test]
    fn valid_configs_pass() {
        assert!(validate(&[base("controlplane")], Mode::Metal, Some(12), true).is_empty());
        assert!(validate(&[base("worker")], Mode::Container, Some(12), true).is_empty());
    }

    #[test]
    fn finds_problems() {
        let mut w = base("worker");
        w["machine"]["ca"]["key"] = json!("secret");
        w["machine"]["install"] = json!({});
        w["machine"]["network"] = json!({"hostname": "a"});
        let docs = vec![
            w,
            json!({"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "stable"}),
            json!({"apiVersion": "v1alpha1", "kind": "Layer2VIPConfig", "name": "10.0.0.1", "link": "eth0"}),
            json!({"apiVersion": "v1alpha1", "kind": "Layer2VIPConfig", "name": "10.0.0.1", "link": "eth0"}),
            json!({"apiVersion": "v1alpha1", "kind": "KubeSpanConfig"}),
        ];
        let m = msgs(&validate(&docs, Mode::Metal, Some(12), false));
        assert!(
            m.iter().any(|x| x.contains("must not carry the OS CA key")),
            "{m:#?}"
        );
        assert!(m.iter().any(|x| x.contains("install.disk")), "{m:#?}");
        assert!(
            m.iter()
                .any(|x| x.contains("static hostname is already set")),
            "{m:#?}"
        );
        assert!(
            m.iter()
                .any(|x| x.contains("only allowed on control-plane")),
            "{m:#?}"
        );
        assert!(
            m.iter().any(|x| x.starts_with("3:kind duplicate document")),
            "{m:#?}"
        );
        assert!(
            m.iter()
                .any(|x| x.contains("KubeSpanConfig needs Talos ≥ 1.13")),
            "{m:#?}"
        );
    }

    #[test]
    fn container_mode_needs_host_dns() {
        let mut cp = base("controlplane");
        cp["machine"]["features"] = json!({});
        let m = msgs(&validate(&[cp], Mode::Container, None, false));
        assert!(
            m.iter().any(|x| x.contains("container mode needs")),
            "{m:#?}"
        );
    }
}
