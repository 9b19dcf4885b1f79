//! Whole-cluster validation after env substitution and group → node merge: every check
//! talhelper's validator runs, plus checks across nodes that talhelper does not have
//! (duplicate hostnames and addresses, VIP placement, control-plane count, overlapping
//! subnets, MTU consistency, Kubernetes/Talos compatibility). Every problem is reported with
//! where it was written; nothing stops at the first one.
//!
//! Checks that need the rendered machine config (patches that do not apply, profiles against
//! hardware, kube-proxy vs CNI) live in `kforge-machine`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::diagnostic::{Diagnostic, Location};
use crate::load::{Cluster, ResolvedNode, SourceReader};
use crate::model::{Device, IntOrString};
use crate::path::Path;
use crate::versions::{self, Version};

/// Runs every check; `reader` is used to check that referenced files exist.
pub fn validate(cluster: &Cluster, reader: &dyn SourceReader) -> Vec<Diagnostic> {
    let mut v = Validator {
        c: cluster,
        reader,
        out: Vec::new(),
        discarded: Diagnostic::error("discarded", ""),
    };
    v.top_level();
    for node in &cluster.nodes {
        v.node(node);
    }
    v.across_nodes();
    v.out
}

struct Validator<'a> {
    c: &'a Cluster,
    reader: &'a dyn SourceReader,
    out: Vec<Diagnostic>,
    /// Where dropped findings go (see `push_unless_undecodable`).
    discarded: Diagnostic,
}

/// A finding just recorded, to which a label, help or note can still be added.
struct Found<'a>(&'a mut Diagnostic);

impl Found<'_> {
    fn label(self, s: impl Into<String>) -> Self {
        self.0.label = Some(s.into());
        self
    }
    fn help(self, s: impl Into<String>) -> Self {
        self.0.help = Some(s.into());
        self
    }
    fn note(self, s: impl Into<String>) -> Self {
        self.0.notes.push(s.into());
        self
    }
}

impl Validator<'_> {
    fn push(&mut self, d: Diagnostic) -> Found<'_> {
        self.out.push(d);
        Found(self.out.last_mut().expect("just pushed"))
    }

    fn err(&mut self, code: &'static str, path: &Path, message: impl Into<String>) -> Found<'_> {
        let d = Diagnostic::error(code, message).at(self.c.source.locate(path));
        self.push_unless_undecodable(path, d)
    }

    fn warn(&mut self, code: &'static str, path: &Path, message: impl Into<String>) -> Found<'_> {
        let d = Diagnostic::warning(code, message).at(self.c.source.locate(path));
        self.push_unless_undecodable(path, d)
    }

    /// A finding about a value that already failed to decode is a consequence of that
    /// failure (a default stands in), not a second problem: it is dropped.
    fn push_unless_undecodable(&mut self, path: &Path, d: Diagnostic) -> Found<'_> {
        if self.c.undecodable.iter().any(|u| path.0.starts_with(&u.0)) {
            self.discarded = d;
            return Found(&mut self.discarded);
        }
        self.push(d)
    }

    /// A required `key` missing from the mapping at `parent`: points at where that mapping
    /// starts (one character, so it does not read as a complaint about the first field).
    fn missing(&mut self, parent: &Path, key: &str, message: impl Into<String>) -> Found<'_> {
        let mut loc = self.c.source.locate(parent);
        if let Some(l) = &mut loc {
            l.len = 1;
        }
        let where_ = if parent.0.is_empty() {
            "the top level".to_string()
        } else {
            format!("`{parent}`")
        };
        let d = Diagnostic::error("required", message)
            .at(loc)
            .label(format!("{where_} has no `{key}`"));
        self.push(d)
    }

    /// Where `item` was written inside the scalar at `path` (one entry of a comma list such
    /// as `ipAddress: "10.0.1.1, 10.0.1.2"`), or the whole value when it cannot be found.
    fn within(&self, path: &Path, item: &str) -> Option<Location> {
        let mut loc = self.c.source.locate(path)?;
        let skip = loc.col.saturating_sub(1).saturating_sub(loc.excerpt_start);
        let Some(byte_skip) = loc.line_text.char_indices().nth(skip).map(|(b, _)| b) else {
            return Some(loc);
        };
        let value = &loc.line_text[byte_skip..];
        let end = value
            .char_indices()
            .nth(loc.len)
            .map_or(value.len(), |(b, _)| b);
        if let Some(found) = value[..end].find(item) {
            loc.col += value[..found].chars().count();
            loc.len = item.chars().count().max(1);
        }
        Some(loc)
    }

    /// Whether a value was written at `path` but could not be read: it was reported as a
    /// type error already, so "missing" would be a misleading second finding.
    fn unreadable(&self, path: &Path) -> bool {
        self.c.source.node(path).is_some_and(|n| !n.is_null())
    }

    fn top_level(&mut self) {
        let f = &self.c.file;
        let root = Path::root();
        if f.cluster_name.as_deref().unwrap_or("").is_empty()
            && !(f.cluster_name.is_none() && self.unreadable(&root.key("clusterName")))
        {
            self.missing(&root, "clusterName", "`clusterName` is required")
                .help("add `clusterName: <name>` at the top of the file");
        }

        let talos = f
            .talos_version
            .as_deref()
            .unwrap_or(versions::DEFAULT_TALOS_VERSION);
        let contract = match Version::parse(talos) {
            None => {
                self.err(
                    "version",
                    &root.key("talosVersion"),
                    format!("`{talos}` is not a Talos version"),
                )
                .help("write it like `v1.12.0`");
                None
            }
            Some(v) => match versions::contract_for(&v) {
                Ok(c) => Some(c),
                Err(msg) => {
                    self.err("version", &root.key("talosVersion"), msg)
                        .label("no machine-config contract known for this version")
                        .help(format!(
                            "set `talosVersion` to a supported release, e.g. `{}`",
                            versions::DEFAULT_TALOS_VERSION
                        ));
                    None
                }
            },
        };
        match f.kubernetes_version.as_deref() {
            None if self.unreadable(&root.key("kubernetesVersion")) => {}
            None | Some("") => {
                self.missing(
                    &root,
                    "kubernetesVersion",
                    "`kubernetesVersion` is required",
                )
                .help("add e.g. `kubernetesVersion: v1.35.0` (talhelper requires it too)");
            }
            Some(k) => match Version::parse(k) {
                None => {
                    self.err(
                        "version",
                        &root.key("kubernetesVersion"),
                        format!("`{k}` is not a Kubernetes version"),
                    )
                    .help("write it like `v1.35.0`");
                }
                Some(kv) => {
                    if let Some(c) = contract
                        && !c.supports_kubernetes(&kv)
                    {
                        self.err(
                            "k8s-compat",
                            &root.key("kubernetesVersion"),
                            format!("Kubernetes {kv} is not supported by Talos {talos}"),
                        )
                        .label(format!(
                            "Talos {c} supports Kubernetes {}",
                            c.kubernetes_range()
                        ));
                    }
                }
            },
        }

        match f.endpoint.as_deref() {
            None if self.unreadable(&root.key("endpoint")) => {}
            None | Some("") => {
                self.missing(&root, "endpoint", "`endpoint` is required")
                    .help("add e.g. `endpoint: https://10.0.1.10:6443` (the VIP or load balancer of the control plane)");
            }
            Some(e) => {
                if let Err((msg, help)) = parse_endpoint(e) {
                    let d = self
                        .err(
                            "endpoint",
                            &root.key("endpoint"),
                            format!("invalid endpoint `{e}`"),
                        )
                        .label(msg);
                    if let Some(h) = help {
                        d.help(h);
                    }
                }
            }
        }
        if let Some(d) = &f.domain
            && !is_dns_name(d)
        {
            self.err(
                "domain",
                &root.key("domain"),
                format!("`{d}` is not a valid DNS domain"),
            );
        }
        for (key, nets) in [
            ("clusterPodNets", &f.cluster_pod_nets),
            ("clusterSvcNets", &f.cluster_svc_nets),
        ] {
            for (i, n) in nets.iter().flatten().enumerate() {
                if n.parse::<IpNet>().is_err() {
                    self.err(
                        "cidr",
                        &root.key(key).index(i),
                        format!("`{n}` is not a CIDR"),
                    )
                    .help("write a network like `10.244.0.0/16`");
                }
            }
        }
        if let Some(cni) = &f.cni_config {
            let p = root.key("cniConfig");
            let name = cni.name.as_deref().unwrap_or("flannel");
            let urls = cni.urls.as_deref().unwrap_or_default();
            match name {
                "flannel" | "none" if !urls.is_empty() => {
                    self.err(
                        "cni",
                        &p.key("urls"),
                        format!("CNI `{name}` takes no `urls`"),
                    )
                    .help("use `name: custom` to install a CNI from URLs");
                }
                "custom" if urls.is_empty() => {
                    self.err(
                        "cni",
                        &p.key("name"),
                        "CNI `custom` needs `urls` with the manifests to apply",
                    );
                }
                "flannel" | "none" | "custom" => {}
                other => {
                    self.err("cni", &p.key("name"), format!("unknown CNI `{other}`"))
                        .label("expected flannel, custom or none");
                }
            }
        }
        let mut manifest_names = HashSet::new();
        for (i, m) in f.inline_manifests.iter().flatten().enumerate() {
            let p = root.key("inlineManifests").index(i);
            match m.name.as_deref() {
                None if self.unreadable(&p.key("name")) => {}
                None | Some("") => {
                    self.err("manifest", &p, "inline manifest needs a `name`");
                }
                Some(n) if !manifest_names.insert(n.to_string()) => {
                    self.err(
                        "manifest",
                        &p.key("name"),
                        format!("inline manifest name `{n}` is used twice"),
                    );
                }
                _ => {}
            }
            match m.contents.as_deref() {
                None if self.unreadable(&p.key("contents")) => {}
                None | Some("") => {
                    self.err("manifest", &p, "inline manifest needs `contents`");
                }
                Some(c) => self.check_file_ref(&p.key("contents"), c),
            }
        }
        for (i, patch) in f.patches.iter().flatten().enumerate() {
            self.check_file_ref(&root.key("patches").index(i), patch);
        }
        if f.additional_machine_cert_sans.is_some() {
            self.warn(
                "deprecated",
                &root.key("additionalMachineCertSans"),
                "`additionalMachineCertSans` is deprecated",
            )
            .help("set `certSANs` on the nodes or on `controlPlane:`/`worker:` instead");
        }
        match f.nodes.as_deref() {
            None if self.unreadable(&root.key("nodes")) => {}
            None => {
                self.missing(
                    &root,
                    "nodes",
                    "`nodes` is required and must list at least one node",
                )
                .help("add `nodes:` with one `- hostname: …` entry per machine");
            }
            Some([]) => {
                self.err(
                    "required",
                    &root.key("nodes"),
                    "`nodes` must list at least one node",
                )
                .label("empty list");
            }
            Some(_) => {}
        }
        if let Some(b) = &f.bootstrap_node {
            match self.c.nodes.iter().find(|n| &n.hostname == b) {
                None => {
                    self.err(
                        "bootstrap-node",
                        &root.key("bootstrapNode"),
                        format!("no node has hostname `{b}`"),
                    );
                }
                Some(n) if !n.control_plane => {
                    self.err(
                        "bootstrap-node",
                        &root.key("bootstrapNode"),
                        format!("`{b}` is not a control-plane node"),
                    )
                    .help("etcd is bootstrapped on a control-plane node");
                }
                _ => {}
            }
        }
    }

    fn check_file_ref(&mut self, path: &Path, value: &str) {
        if let Some(file) = self.c.file_ref(value)
            && !self.reader.exists(&file)
        {
            self.err(
                "missing-file",
                path,
                format!("file `{}` does not exist", file.display()),
            )
            .help("`@` paths are relative to the cluster file's directory");
        }
    }

    /// Whether `nodes[i]` was written as something other than a mapping (a type error
    /// already): nothing more can be said about it.
    fn node_unreadable(&self, i: usize) -> bool {
        self.c
            .source
            .node(&Path::root().key("nodes").index(i))
            .is_some_and(|n| {
                !matches!(
                    n.value,
                    kforge_yaml::NodeValue::Map(_) | kforge_yaml::NodeValue::Null
                )
            })
    }

    fn node(&mut self, n: &ResolvedNode) {
        if self.node_unreadable(n.index) {
            return;
        }
        let np = n.path();
        let field = |key: &str| self.c.node_field_path(n, key);
        let spec = self
            .c
            .file
            .nodes
            .as_deref()
            .and_then(|nodes| nodes.get(n.index));
        let unset = |get: fn(&crate::model::NodeSpec) -> bool| spec.is_none_or(get);
        if n.hostname.is_empty() {
            if !(unset(|s| s.hostname.is_none()) && self.unreadable(&np.key("hostname"))) {
                self.missing(
                    &np,
                    "hostname",
                    format!("node #{} needs a `hostname`", n.index + 1),
                );
            }
        } else if let Some(why) = dns_name_problem(&n.hostname) {
            self.err(
                "hostname",
                &np.key("hostname"),
                format!("`{}` is not a valid hostname", n.hostname),
            )
            .label(why)
            .help("hostnames follow RFC 1123: labels of lower-case letters, digits and `-`, joined by `.`");
        }
        if n.ip_addresses.is_empty()
            && !(unset(|s| s.ip_address.is_none()) && self.unreadable(&np.key("ipAddress")))
        {
            self.missing(
                &np,
                "ipAddress",
                format!("{} needs an `ipAddress`", node_name(n)),
            )
            .help("the address kforge and talosctl reach the node at, e.g. `ipAddress: 10.0.1.11`");
        }
        for ip in &n.ip_addresses {
            if ip.parse::<IpAddr>().is_ok() {
                continue;
            }
            let at = self.within(&np.key("ipAddress"), ip);
            if numeric_tld(ip) {
                self.push(
                    Diagnostic::error("ip", format!("`{ip}` is not a valid IP address"))
                        .at(at)
                        .label("an IPv4 address has four parts, each 0 to 255"),
                );
            } else if let Some(why) = dns_name_problem(ip) {
                self.push(
                    Diagnostic::error("ip", format!("`{ip}` is not an IP address or a DNS name"))
                        .at(at)
                        .label(why),
                );
            }
        }
        let mode = n
            .config
            .machine_spec
            .as_ref()
            .and_then(|m| m.mode.as_deref())
            .unwrap_or("metal");
        let disk_unreadable = (unset(|s| s.install_disk.is_none())
            && self.unreadable(&np.key("installDisk")))
            || (unset(|s| s.install_disk_selector.is_none())
                && self.unreadable(&np.key("installDiskSelector")));
        if mode == "metal"
            && n.install_disk.is_none()
            && n.install_disk_selector.is_none()
            && !disk_unreadable
        {
            let mut loc = self.c.source.locate(&np);
            if let Some(l) = &mut loc {
                l.len = 1;
            }
            self.push(
                Diagnostic::error(
                    "install-disk",
                    format!("{} has no install disk", node_name(n)),
                )
                .at(loc)
                .label("neither `installDisk` nor `installDiskSelector` is set")
                .help("metal nodes need `installDisk: /dev/…` or `installDiskSelector:` (or `machineSpec: {mode: cloud}` for cloud images)"),
            );
        }
        if n.install_disk.is_some() && n.install_disk_selector.is_some() {
            self.err(
                "install-disk",
                &np.key("installDiskSelector"),
                "set either `installDisk` or `installDiskSelector`, not both",
            );
        }
        if let Some(sel) = &n.install_disk_selector {
            if let Some(size) = &sel.size
                && parse_size_match(size).is_none()
            {
                self.err(
                    "size",
                    &np.key("installDiskSelector").key("size"),
                    format!("`{size}` is not a disk size"),
                )
                .help("write e.g. `4GB`, `>= 1TB` or `<= 2TiB`");
            }
            if let Some(t) = &sel.disk_type
                && !matches!(t.as_str(), "ssd" | "hdd" | "nvme" | "sd")
            {
                self.err(
                    "disk-type",
                    &np.key("installDiskSelector").key("type"),
                    format!("unknown disk type `{t}`"),
                )
                .label("expected ssd, hdd, nvme or sd");
            }
        }
        let cfg = &n.config;
        if let Some(url) = &cfg.talos_image_url {
            let last = url.rsplit('/').next().unwrap_or("");
            if url.contains('@') || last.contains(':') {
                self.err(
                    "image",
                    &field("talosImageURL"),
                    format!("`talosImageURL` must not carry a tag or digest: `{url}`"),
                )
                .help("kforge appends `:<talosVersion>`; remove the tag");
            }
        }
        for (key, map) in [
            ("nodeLabels", &cfg.node_labels),
            ("nodeAnnotations", &cfg.node_annotations),
        ] {
            for (k, val) in map.iter().flatten() {
                let p = field(key).key(k.clone());
                if !is_qualified_name(k) {
                    self.err("label", &p, format!("`{k}` is not a valid {} key", if key == "nodeLabels" { "label" } else { "annotation" }))
                        .help("keys are `[prefix/]name`: a DNS prefix and a name of at most 63 letters, digits, `-`, `_`, `.`");
                }
                if key == "nodeLabels" && !val.contains("{{") && !is_label_value(val) {
                    self.err("label", &p, format!("`{val}` is not a valid label value"))
                        .label("at most 63 letters, digits, `-`, `_`, `.`, starting and ending alphanumeric");
                }
            }
        }
        for (k, val) in cfg.node_taints.iter().flatten() {
            let p = field("nodeTaints").key(k.clone());
            if !is_qualified_name(k) {
                self.err("taint", &p, format!("`{k}` is not a valid taint key"));
            }
            let (value, effect) = match val.rsplit_once(':') {
                Some((v, e)) => (v, Some(e)),
                None => (val.as_str(), None),
            };
            if let Some(e) = effect
                && !matches!(e, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
            {
                self.err("taint", &p, format!("unknown taint effect `{e}`"))
                    .label("expected NoSchedule, PreferNoSchedule or NoExecute");
            }
            if !value.is_empty() && !is_label_value(value) {
                self.err("taint", &p, format!("`{value}` is not a valid taint value"));
            }
        }
        if cfg.machine_disks.is_some() {
            self.warn(
                "deprecated",
                &field("machineDisks"),
                "`machineDisks` is deprecated",
            )
            .help("use `userVolumes`");
        }
        if cfg.extra_manifests.is_some() {
            self.warn(
                "deprecated",
                &field("extraManifests"),
                "`extraManifests` is deprecated",
            )
            .help("use `patches` with typed documents");
            for (i, m) in cfg.extra_manifests.iter().flatten().enumerate() {
                let file = self.c.base_dir.join(m.trim_start_matches('@'));
                if !self.reader.exists(&file) {
                    self.err(
                        "missing-file",
                        &field("extraManifests").index(i),
                        format!("file `{}` does not exist", file.display()),
                    );
                }
            }
        }
        for (i, mf) in cfg.machine_files.iter().flatten().enumerate() {
            let p = field("machineFiles").index(i);
            match mf.op.as_deref() {
                Some("create" | "append" | "overwrite") => {}
                Some(op) => {
                    self.err(
                        "machine-file",
                        &p.key("op"),
                        format!("unknown file operation `{op}`"),
                    )
                    .label("expected create, append or overwrite");
                }
                None if self.unreadable(&p.key("op")) => {}
                None => {
                    self.err(
                        "machine-file",
                        &p,
                        "machine file needs `op` (create, append or overwrite)",
                    );
                }
            }
            match mf.path.as_deref() {
                Some(path) if path.starts_with('/') => {}
                Some(path) => {
                    self.err(
                        "machine-file",
                        &p.key("path"),
                        format!("machine file path `{path}` must be absolute"),
                    );
                }
                None if self.unreadable(&p.key("path")) => {}
                None => {
                    self.err("machine-file", &p, "machine file needs a `path`");
                }
            }
            if let Some(perm) = mf.permissions
                && perm > 0o7777
            {
                self.err(
                    "machine-file",
                    &p.key("permissions"),
                    format!("permissions {perm:#o} are not a file mode"),
                )
                .help("write e.g. `0o644`");
            }
            if let Some(content) = &mf.content {
                self.check_file_ref(&p.key("content"), content);
            }
        }
        for (i, ns) in cfg.nameservers.iter().flatten().enumerate() {
            if ns.parse::<IpAddr>().is_err() {
                self.err(
                    "ip",
                    &field("nameservers").index(i),
                    format!("nameserver `{ns}` is not an IP address"),
                );
            }
        }
        for (i, patch) in cfg.patches.iter().flatten().enumerate() {
            // Patches merge from the group and the node; point at whichever wrote it.
            let p = self.c.node_patch_path(n, i);
            self.check_file_ref(&p, patch);
        }
        self.network(n);
        self.firewall(n);
        self.volumes(n);
        self.schematic(n);
        self.machine_spec(n);
        self.hardware(n);
    }

    fn network(&mut self, n: &ResolvedNode) {
        let base = self.c.node_field_path(n, "networkInterfaces");
        let devices = n.config.network_interfaces.as_deref().unwrap_or_default();
        let mut bonded: HashMap<String, usize> = HashMap::new();
        let mut names = HashSet::new();
        for (i, d) in devices.iter().enumerate() {
            let p = base.index(i);
            match (&d.interface, &d.device_selector) {
                (None, None)
                    if self.unreadable(&p.key("interface"))
                        || self.unreadable(&p.key("deviceSelector")) => {}
                (None, None) => {
                    self.err(
                        "network",
                        &p,
                        "network interface needs `interface` or `deviceSelector`",
                    );
                }
                (Some(_), Some(_)) => {
                    self.err(
                        "network",
                        &p.key("deviceSelector"),
                        "set either `interface` or `deviceSelector`, not both",
                    );
                }
                (Some(name), None) if !names.insert(name.clone()) => {
                    self.err(
                        "network",
                        &p.key("interface"),
                        format!(
                            "interface `{name}` is configured twice on node `{}`",
                            n.hostname
                        ),
                    );
                }
                _ => {}
            }
            for (j, a) in d.addresses.iter().flatten().enumerate() {
                if parse_addr(a).is_none() {
                    self.err(
                        "ip",
                        &p.key("addresses").index(j),
                        format!("`{a}` is not an IP address or CIDR"),
                    );
                }
            }
            self.routes(&p.key("routes"), d.routes.as_deref().unwrap_or_default());
            if let Some(mtu) = d.mtu
                && !(68..=65535).contains(&mtu)
            {
                self.err("mtu", &p.key("mtu"), format!("MTU {mtu} is out of range"))
                    .label("expected 68 to 65535");
            }
            if let Some(vip) = d.vip.as_ref().and_then(|v| v.ip.as_ref()) {
                if vip.parse::<IpAddr>().is_err() {
                    self.err(
                        "ip",
                        &p.key("vip").key("ip"),
                        format!("VIP `{vip}` is not an IP address"),
                    );
                }
                if !n.control_plane {
                    self.err(
                        "vip",
                        &p.key("vip"),
                        format!(
                            "node `{}` is a worker; a VIP belongs on control-plane nodes",
                            n.hostname
                        ),
                    );
                }
            }
            if let Some(bond) = &d.bond {
                if d.bridge.is_some() {
                    self.err(
                        "network",
                        &p.key("bridge"),
                        "an interface is either a bond or a bridge, not both",
                    );
                }
                let ifs = bond.interfaces.as_deref().unwrap_or_default();
                let sels = bond.device_selectors.as_deref().unwrap_or_default();
                if !ifs.is_empty() && !sels.is_empty() {
                    self.err(
                        "network",
                        &p.key("bond").key("deviceSelectors"),
                        "set either bond `interfaces` or `deviceSelectors`, not both",
                    );
                }
                for (j, member) in ifs.iter().enumerate() {
                    if let Some(prev) = bonded.insert(member.clone(), i)
                        && prev != i
                    {
                        self.err(
                            "network",
                            &p.key("bond").key("interfaces").index(j),
                            format!("`{member}` is already a member of another bond"),
                        );
                    }
                    // A member configured as its own device must agree with the bond's MTU.
                    if let (Some(bond_mtu), Some(member_dev)) = (
                        d.mtu,
                        devices
                            .iter()
                            .position(|x| x.interface.as_deref() == Some(member)),
                    ) && let Some(m) = devices[member_dev].mtu
                        && m != bond_mtu
                    {
                        self.err(
                            "mtu",
                            &base.index(member_dev).key("mtu"),
                            format!(
                                "bond member `{member}` has MTU {m} but its bond has MTU {bond_mtu}"
                            ),
                        )
                        .help("members of a bond carry the bond's MTU; make them equal");
                    }
                }
                let links = ifs.len() + sels.len();
                if bond.mode.as_deref() == Some("802.3ad") && links < 2 {
                    self.warn(
                        "bond",
                        &p.key("bond"),
                        format!(
                            "LACP (802.3ad) bond on node `{}` has {links} link(s)",
                            n.hostname
                        ),
                    )
                    .help("LACP gives redundancy only with at least two links");
                }
            }
            let mut vlan_ids = HashSet::new();
            for (j, vlan) in d.vlans.iter().flatten().enumerate() {
                let vp = p.key("vlans").index(j);
                match vlan.vlan_id {
                    Some(id) if (1..=4094).contains(&id) => {
                        if !vlan_ids.insert(id) {
                            self.err(
                                "vlan",
                                &vp.key("vlanId"),
                                format!("VLAN {id} is configured twice on this interface"),
                            );
                        }
                    }
                    Some(id) => {
                        self.err(
                            "vlan",
                            &vp.key("vlanId"),
                            format!("VLAN id {id} is out of range"),
                        )
                        .label("expected 1 to 4094");
                    }
                    None if self.unreadable(&vp.key("vlanId")) => {}
                    None => {
                        self.err("vlan", &vp, "VLAN needs a `vlanId`");
                    }
                }
                if let (Some(vm), Some(pm)) = (vlan.mtu, d.mtu)
                    && vm > pm
                {
                    self.err(
                        "mtu",
                        &vp.key("mtu"),
                        format!("VLAN MTU {vm} is larger than its parent interface's MTU {pm}"),
                    )
                    .help("a VLAN cannot carry frames larger than its parent link");
                }
                for (k, a) in vlan.addresses.iter().flatten().enumerate() {
                    if parse_addr(a).is_none() {
                        self.err(
                            "ip",
                            &vp.key("addresses").index(k),
                            format!("`{a}` is not an IP address or CIDR"),
                        );
                    }
                }
                self.routes(
                    &vp.key("routes"),
                    vlan.routes.as_deref().unwrap_or_default(),
                );
            }
        }
    }

    fn routes(&mut self, base: &Path, routes: &[crate::model::Route]) {
        for (i, r) in routes.iter().enumerate() {
            let p = base.index(i);
            if let Some(net) = &r.network
                && !net.is_empty()
                && net.parse::<IpNet>().is_err()
            {
                self.err(
                    "route",
                    &p.key("network"),
                    format!("route network `{net}` is not a CIDR"),
                );
            }
            if let Some(gw) = &r.gateway
                && !gw.is_empty()
                && gw.parse::<IpAddr>().is_err()
            {
                self.err(
                    "route",
                    &p.key("gateway"),
                    format!("gateway `{gw}` is not an IP address"),
                );
            }
        }
    }

    fn firewall(&mut self, n: &ResolvedNode) {
        let Some(fw) = &n.config.ingress_firewall else {
            return;
        };
        let p = self.c.node_field_path(n, "ingressFirewall");
        if let Some(a) = &fw.default_action
            && !matches!(a.as_str(), "accept" | "block")
        {
            self.err(
                "firewall",
                &p.key("defaultAction"),
                format!("unknown default action `{a}`"),
            )
            .label("expected accept or block");
        }
        let mut names = HashSet::new();
        for (i, r) in fw.rules.iter().flatten().enumerate() {
            let rp = p.key("rules").index(i);
            match r.name.as_deref() {
                None if self.unreadable(&rp.key("name")) => {}
                None | Some("") => {
                    self.err("firewall", &rp, "firewall rule needs a `name`");
                }
                Some(nm) if !names.insert(nm.to_string()) => {
                    self.err(
                        "firewall",
                        &rp.key("name"),
                        format!("firewall rule `{nm}` is defined twice"),
                    );
                }
                _ => {}
            }
            match &r.port_selector {
                None if self.unreadable(&rp.key("portSelector")) => {}
                None => {
                    self.err("firewall", &rp, "firewall rule needs a `portSelector`");
                }
                Some(ps) => {
                    for (j, port) in ps.ports.iter().flatten().enumerate() {
                        if parse_port_range(port).is_none() {
                            self.err(
                                "firewall",
                                &rp.key("portSelector").key("ports").index(j),
                                format!("`{port}` is not a port or port range"),
                            )
                            .label("expected 1-65535 or `low-high`");
                        }
                    }
                    match ps.protocol.as_deref() {
                        Some("tcp" | "udp") => {}
                        Some(other) => {
                            self.err(
                                "firewall",
                                &rp.key("portSelector").key("protocol"),
                                format!("unknown protocol `{other}`"),
                            )
                            .label("expected tcp or udp");
                        }
                        None if self.unreadable(&rp.key("portSelector").key("protocol")) => {}
                        None => {
                            self.err(
                                "firewall",
                                &rp.key("portSelector"),
                                "port selector needs a `protocol` (tcp or udp)",
                            );
                        }
                    }
                }
            }
            for (j, ing) in r.ingress.iter().flatten().enumerate() {
                for (key, val) in [("subnet", &ing.subnet), ("except", &ing.except)] {
                    if let Some(s) = val
                        && parse_addr(s).is_none()
                    {
                        self.err(
                            "firewall",
                            &rp.key("ingress").index(j).key(key),
                            format!("`{s}` is not a subnet"),
                        );
                    }
                }
            }
        }
    }

    fn volumes(&mut self, n: &ResolvedNode) {
        for (key, names) in [
            (
                "volumes",
                n.config
                    .volumes
                    .iter()
                    .flatten()
                    .map(|v| v.name.clone())
                    .collect::<Vec<_>>(),
            ),
            (
                "userVolumes",
                n.config
                    .user_volumes
                    .iter()
                    .flatten()
                    .map(|v| v.name.clone())
                    .collect::<Vec<_>>(),
            ),
        ] {
            let base = self.c.node_field_path(n, key);
            let mut seen = HashSet::new();
            for (i, name) in names.iter().enumerate() {
                match name.as_deref() {
                    None if self.unreadable(&base.index(i).key("name")) => {}
                    None | Some("") => {
                        self.err("volume", &base.index(i), "volume needs a `name`");
                    }
                    Some(nm) if !seen.insert(nm.to_string()) => {
                        self.err(
                            "volume",
                            &base.index(i).key("name"),
                            format!("volume `{nm}` is defined twice on node `{}`", n.hostname),
                        );
                    }
                    _ => {}
                }
            }
        }
    }

    fn schematic(&mut self, n: &ResolvedNode) {
        for key in ["schematic", "imageSchematic"] {
            let s = if key == "schematic" {
                &n.config.schematic
            } else {
                &n.config.image_schematic
            };
            let Some(s) = s else { continue };
            let base = self.c.node_field_path(n, key);
            let exts = s
                .customization
                .as_ref()
                .and_then(|c| c.system_extensions.as_ref())
                .and_then(|e| e.official_extensions.as_ref());
            let mut seen = HashSet::new();
            for (i, e) in exts.into_iter().flatten().enumerate() {
                let p = base
                    .key("customization")
                    .key("systemExtensions")
                    .key("officialExtensions")
                    .index(i);
                if !e.contains('/') || e.starts_with('/') || e.ends_with('/') {
                    self.err("extension", &p, format!("`{e}` is not an extension name"))
                        .help("official extensions look like `siderolabs/intel-ucode`");
                } else if !seen.insert(e.clone()) {
                    self.err("extension", &p, format!("extension `{e}` is listed twice"));
                }
            }
            if let Some(o) = &s.overlay
                && o.image.as_deref().unwrap_or("").is_empty()
                    != o.name.as_deref().unwrap_or("").is_empty()
            {
                self.err(
                    "overlay",
                    &base.key("overlay"),
                    "an overlay needs both `image` and `name`",
                );
            }
        }
    }

    fn machine_spec(&mut self, n: &ResolvedNode) {
        let Some(ms) = &n.config.machine_spec else {
            return;
        };
        let p = self.c.node_field_path(n, "machineSpec");
        if let Some(a) = &ms.arch
            && !matches!(a.as_str(), "amd64" | "arm64")
        {
            self.err(
                "machine-spec",
                &p.key("arch"),
                format!("unknown architecture `{a}`"),
            )
            .label("expected amd64 or arm64");
        }
        if let Some(b) = &ms.boot_method
            && !matches!(b.as_str(), "iso" | "disk-image" | "pxe")
        {
            self.err(
                "machine-spec",
                &p.key("bootMethod"),
                format!("unknown boot method `{b}`"),
            )
            .label("expected iso, disk-image or pxe");
        }
        if ms.use_uki == Some(true) && ms.secureboot != Some(true) {
            self.warn(
                "machine-spec",
                &p.key("useUKI"),
                "`useUKI` only takes effect with `secureboot: true`",
            );
        }
    }

    fn hardware(&mut self, n: &ResolvedNode) {
        let Some(hw) = &n.config.hardware else { return };
        let p = self.c.node_field_path(n, "hardware");
        if let Some(m) = &hw.memory
            && parse_bytes(m).is_none()
        {
            self.err(
                "hardware",
                &p.key("memory"),
                format!("`{m}` is not an amount of memory"),
            )
            .help("write e.g. `512GiB`");
        }
        if hw.cpus == Some(0) {
            self.err("hardware", &p.key("cpus"), "a machine has at least one CPU");
        }
        if let (Some(numa), Some(cpus)) = (hw.numa_nodes, hw.cpus)
            && (numa == 0 || numa > cpus)
        {
            self.err(
                "hardware",
                &p.key("numaNodes"),
                format!("{numa} NUMA nodes do not fit {cpus} CPUs"),
            );
        }
        for (role, dev) in hw.disks.iter().flatten() {
            if !dev.starts_with("/dev/") {
                self.err(
                    "hardware",
                    &p.key("disks").key(role.clone()),
                    format!("disk `{dev}` for role `{role}` is not a device path"),
                )
                .help("write e.g. `/dev/nvme1n1`");
            }
        }
    }

    fn across_nodes(&mut self) {
        let nodes = &self.c.nodes;
        // Duplicate hostnames.
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        for n in nodes {
            if n.hostname.is_empty() {
                continue;
            }
            if let Some(&first) = by_name.get(n.hostname.as_str()) {
                self.err(
                    "duplicate-hostname",
                    &n.path().key("hostname"),
                    format!("hostname `{}` is used by two nodes", n.hostname),
                )
                .note(format!(
                    "first used by node #{} (`nodes[{first}]`)",
                    first + 1
                ));
            } else {
                by_name.insert(&n.hostname, n.index);
            }
        }

        // Every address the cluster claims, with where it is claimed.
        let mut claims: Vec<(IpAddr, Path, String)> = Vec::new();
        for n in nodes {
            for ip in &n.ip_addresses {
                if let Ok(a) = ip.parse::<IpAddr>() {
                    claims.push((
                        a,
                        n.path().key("ipAddress"),
                        format!("node `{}` (nodes[{}])", n.hostname, n.index),
                    ));
                }
            }
        }
        let vips = self.vips();
        let mut seen: HashMap<IpAddr, String> = HashMap::new();
        for (a, path, who) in &claims {
            if let Some(first) = seen.get(a) {
                self.err(
                    "duplicate-ip",
                    path,
                    format!("address {a} is used by {who} and by {first}"),
                );
            } else {
                seen.insert(*a, who.clone());
            }
        }
        let cp_ips: Vec<IpAddr> = nodes
            .iter()
            .filter(|n| n.control_plane)
            .flat_map(|n| n.ip_addresses.iter().filter_map(|i| i.parse().ok()))
            .collect();
        let cp_nets: Vec<IpNet> = nodes
            .iter()
            .filter(|n| n.control_plane)
            .flat_map(|n| {
                n.config
                    .network_interfaces
                    .iter()
                    .flatten()
                    .flat_map(device_networks)
            })
            .collect();
        let mut vip_set: HashSet<IpAddr> = HashSet::new();
        for (vip, path, node) in &vips {
            vip_set.insert(*vip);
            if let Some(owner) = seen.get(vip) {
                self.err(
                    "vip",
                    path,
                    format!("VIP {vip} is also the address of {owner}"),
                )
                .help("a VIP must be a free address that moves between control-plane nodes");
            }
            if !cp_nets.is_empty() && !cp_nets.iter().any(|net| net.contains(vip)) {
                self.err(
                    "vip",
                    path,
                    format!("VIP {vip} on node `{node}` is outside every control-plane subnet"),
                )
                .note(format!(
                    "control-plane subnets: {}",
                    unique(cp_nets.iter().map(|n| n.trunc().to_string())).join(", ")
                ));
            } else if cp_nets.is_empty()
                && !cp_ips.is_empty()
                && !cp_ips.iter().any(|ip| same_24(ip, vip))
            {
                self.err("vip", path, format!("VIP {vip} on node `{node}` is not near any control-plane address"))
                    .note("no interface addresses are declared, so kforge compared against each control-plane IP's /24 (/64 for IPv6)");
            }
        }

        // The endpoint.
        if let Some(Ok((host, _))) = self.c.file.endpoint.as_deref().map(parse_endpoint) {
            let p = Path::root().key("endpoint");
            if let Ok(ip) = host.parse::<IpAddr>() {
                if vip_set.contains(&ip) {
                    // The VIP: highly available.
                } else if cp_ips.contains(&ip) {
                    if cp_ips.len() > 1 {
                        self.warn("endpoint", &p, format!("the endpoint {ip} is a single control-plane node"))
                            .label("the API is unreachable when this node is down")
                            .help("point the endpoint at a VIP (networkInterfaces[].vip) or a load balancer name");
                    }
                } else if let Some(owner) = seen.get(&ip) {
                    let target = match vips.first() {
                        Some((vip, _, _)) => format!("the VIP {vip}"),
                        None => "a control-plane node, a VIP or a load balancer".to_string(),
                    };
                    self.err(
                        "endpoint",
                        &p,
                        format!("the endpoint {ip} is {owner}, which is not a control-plane node"),
                    )
                    .label("workers do not serve the Kubernetes API")
                    .help(format!("point the endpoint at {target}"));
                } else if !vip_set.is_empty() {
                    self.err(
                        "endpoint",
                        &p,
                        format!("the endpoint {ip} is neither the VIP nor a control-plane address"),
                    )
                    .note(format!(
                        "VIPs declared: {}",
                        vips.iter()
                            .map(|(ip, _, _)| ip.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .help("point the endpoint at the VIP");
                } else {
                    self.warn("endpoint", &p, format!("the endpoint {ip} is not a control-plane address or a VIP declared in this file"))
                        .label("kforge assumes an external load balancer or VIP answers here")
                        .help("declare the VIP on the control-plane interfaces (networkInterfaces[].vip) so kforge can check it");
                }
            }
        }

        // Control-plane count; not when some node's `controlPlane` could not be read.
        let cps = nodes.iter().filter(|n| n.control_plane).count();
        let nodes_path = Path::root().key("nodes");
        let roles_known = self
            .c
            .file
            .nodes
            .iter()
            .flatten()
            .enumerate()
            .all(|(i, s)| {
                !self.node_unreadable(i)
                    && (s.control_plane.is_some()
                        || !self.unreadable(&nodes_path.index(i).key("controlPlane")))
            });
        if !nodes.is_empty() && roles_known {
            match cps {
                0 => {
                    self.err(
                        "control-plane",
                        &nodes_path,
                        "no node is a control-plane node",
                    )
                    .help("set `controlPlane: true` on one or three nodes");
                }
                1 => {
                    self.warn(
                        "control-plane",
                        &nodes_path,
                        "only one control-plane node: the cluster is not highly available",
                    )
                    .help("three control-plane nodes tolerate the loss of one");
                }
                n if n % 2 == 0 => {
                    self.warn(
                        "control-plane",
                        &nodes_path,
                        format!(
                            "{n} control-plane nodes: an even count does not improve etcd quorum"
                        ),
                    )
                    .note(format!(
                        "etcd with {n} members tolerates {} failure(s), the same as {}",
                        (n - 1) / 2,
                        n - 1
                    ));
                }
                _ => {}
            }
        }

        // Pod and service subnets against each other and node subnets.
        let f = &self.c.file;
        let pod: Vec<(IpNet, Path)> = nets_with_paths(
            f.cluster_pod_nets.as_deref(),
            "clusterPodNets",
            "10.244.0.0/16",
        );
        let svc: Vec<(IpNet, Path)> = nets_with_paths(
            f.cluster_svc_nets.as_deref(),
            "clusterSvcNets",
            "10.96.0.0/12",
        );
        for (p, pp) in &pod {
            for (s, _) in &svc {
                if overlaps(p, s) {
                    self.err(
                        "subnet-overlap",
                        pp,
                        format!("pod subnet {p} overlaps service subnet {s}"),
                    );
                }
            }
        }
        for (net, np, kind) in pod
            .iter()
            .map(|(n, p)| (n, p, "pod"))
            .chain(svc.iter().map(|(n, p)| (n, p, "service")))
        {
            // One finding per subnet and kind of clash, listing what it clashes with.
            let mut subnets: Vec<String> = Vec::new();
            let mut seen_nets = HashSet::new();
            let mut addresses: Vec<String> = Vec::new();
            let mut seen_ips = HashSet::new();
            for n in nodes {
                for node_net in n
                    .config
                    .network_interfaces
                    .iter()
                    .flatten()
                    .flat_map(device_networks)
                {
                    if overlaps(net, &node_net) && seen_nets.insert(node_net.trunc()) {
                        subnets.push(format!("{} (`{}`)", node_net.trunc(), n.hostname));
                    }
                }
                for ip in n
                    .ip_addresses
                    .iter()
                    .filter_map(|i| i.parse::<IpAddr>().ok())
                {
                    if net.contains(&ip) && seen_ips.insert(ip) {
                        addresses.push(format!("{ip} (`{}`)", n.hostname));
                    }
                }
            }
            if !subnets.is_empty() {
                self.err(
                    "subnet-overlap",
                    np,
                    format!(
                        "{kind} subnet {net} overlaps {} node subnet(s)",
                        subnets.len()
                    ),
                )
                .note(format!("node subnets: {}", list_some(&subnets)))
                .help(format!("pick a {kind} subnet no node network uses"));
            }
            if !addresses.is_empty() {
                self.err(
                    "subnet-overlap",
                    np,
                    format!(
                        "{kind} subnet {net} contains the address(es) of {} node(s)",
                        addresses.len()
                    ),
                )
                .note(format!("node addresses: {}", list_some(&addresses)));
            }
        }
    }

    /// Every VIP declared on a node interface or VLAN: (address, where, node hostname).
    fn vips(&self) -> Vec<(IpAddr, Path, String)> {
        let mut out = Vec::new();
        for n in &self.c.nodes {
            let base = self.c.node_field_path(n, "networkInterfaces");
            for (i, d) in n.config.network_interfaces.iter().flatten().enumerate() {
                if let Some(ip) = d
                    .vip
                    .as_ref()
                    .and_then(|v| v.ip.as_deref())
                    .and_then(|s| s.parse().ok())
                {
                    out.push((ip, base.index(i).key("vip").key("ip"), n.hostname.clone()));
                }
                for (j, v) in d.vlans.iter().flatten().enumerate() {
                    if let Some(ip) = v
                        .vip
                        .as_ref()
                        .and_then(|v| v.ip.as_deref())
                        .and_then(|s| s.parse().ok())
                    {
                        out.push((
                            ip,
                            base.index(i).key("vlans").index(j).key("vip").key("ip"),
                            n.hostname.clone(),
                        ));
                    }
                }
            }
        }
        // One VIP is shared by all control-plane nodes: report each address once.
        let mut seen = HashSet::new();
        out.retain(|(ip, _, _)| seen.insert(*ip));
        out
    }
}

/// "node `cp1`", or "node #3" when it has no hostname.
fn node_name(n: &ResolvedNode) -> String {
    if n.hostname.is_empty() {
        format!("node #{}", n.index + 1)
    } else {
        format!("node `{}`", n.hostname)
    }
}

/// The first ten items, then how many more.
fn list_some(items: &[String]) -> String {
    const SHOWN: usize = 10;
    let head = items[..items.len().min(SHOWN)].join(", ");
    if items.len() > SHOWN {
        format!("{head} and {} more", items.len() - SHOWN)
    } else {
        head
    }
}

fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    items.filter(|s| seen.insert(s.clone())).collect()
}

fn same_24(a: &IpAddr, b: &IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(x), IpAddr::V4(y)) => x.octets()[..3] == y.octets()[..3],
        (IpAddr::V6(x), IpAddr::V6(y)) => x.segments()[..4] == y.segments()[..4],
        _ => false,
    }
}

fn nets_with_paths(nets: Option<&[String]>, key: &str, default: &str) -> Vec<(IpNet, Path)> {
    match nets {
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.parse().ok().map(|n| (n, Path::root().key(key).index(i))))
            .collect(),
        None => vec![(
            default.parse().expect("default subnet parses"),
            Path::root(),
        )],
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The subnets a device's static addresses live in.
fn device_networks(d: &Device) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = d
        .addresses
        .iter()
        .flatten()
        .filter_map(|a| a.parse::<IpNet>().ok())
        .collect();
    for v in d.vlans.iter().flatten() {
        out.extend(
            v.addresses
                .iter()
                .flatten()
                .filter_map(|a| a.parse::<IpNet>().ok()),
        );
    }
    out
}

/// An address with or without prefix length.
pub fn parse_addr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// `https://host:port` → (host, port). Errors carry a label and an optional hint.
pub fn parse_endpoint(e: &str) -> Result<(String, u16), (String, Option<String>)> {
    let Some(rest) = e.strip_prefix("https://") else {
        // Suggest the https form of what was written, keeping its host and port.
        let bare = e
            .split_once("://")
            .map_or(e, |(_, r)| r)
            .split(['/', '?'])
            .next()
            .unwrap_or("");
        let has_port = bare.rsplit_once(':').is_some_and(|(h, p)| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':')
        }) || bare.contains("]:");
        let suggestion = if has_port {
            format!("https://{bare}")
        } else {
            format!("https://{bare}:6443")
        };
        return Err((
            "expected an https:// URL".into(),
            Some(format!("write `{suggestion}`")),
        ));
    };
    let rest = rest.trim_end_matches('/');
    if let Some((authority, _)) = rest.split_once(['/', '?']) {
        return Err((
            "the endpoint must not have a path".into(),
            Some(format!(
                "write `https://{authority}` (the Kubernetes API is served at the root)"
            )),
        ));
    }
    let (host, port) = if let Some(stripped) = rest.strip_prefix('[') {
        let Some((h, after)) = stripped.split_once(']') else {
            return Err(("unterminated IPv6 literal".into(), None));
        };
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if host.parse::<IpAddr>().is_err() {
        if numeric_tld(&host) {
            return Err((format!("`{host}` is not a valid IP address"), None));
        }
        if let Some(why) = dns_name_problem(&host) {
            return Err((format!("`{host}` is not a host name: {why}"), None));
        }
    }
    let Some(port) = port else {
        return Err((
            "the endpoint needs a port".into(),
            Some(format!("write `https://{rest}:6443`")),
        ));
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host, p)),
        _ => Err((format!("`{port}` is not a port"), None)),
    }
}

/// Why `s` is not an RFC 1123 host name, or `None` when it is one.
pub fn dns_name_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("it is empty".into());
    }
    if s.len() > 253 {
        return Some(format!(
            "it has {} characters; at most 253 are allowed",
            s.len()
        ));
    }
    for label in s.split('.') {
        if label.is_empty() {
            return Some("it has an empty label (`..`, or a leading or trailing `.`)".into());
        }
        if label.len() > 63 {
            return Some(format!(
                "the label `{}…` has {} characters; at most 63 are allowed",
                label.chars().take(12).collect::<String>(),
                label.len()
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Some(if c.is_ascii_uppercase() {
                format!("`{c}`: upper-case letters are not allowed (use lower case)")
            } else {
                format!("`{c}` is not allowed (only lower-case letters, digits, `-` and `.`)")
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("the label `{label}` starts or ends with `-`"));
        }
    }
    None
}

/// RFC 1123 host names (dots allowed, at most 253 characters, labels at most 63).
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && !s
            .rsplit('.')
            .next()
            .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()))
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Whether the last label is all digits: such a name is a mistyped IPv4 address, never a
/// host name (top-level domains are not numeric, RFC 3696 §2).
fn numeric_tld(s: &str) -> bool {
    s.rsplit('.')
        .next()
        .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
}

/// Kubernetes qualified names: `[dns-prefix/]name`.
fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_name) && !name.is_empty() && is_label_value(name)
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric()))
}

/// `443` or `"30000-32767"`.
pub fn parse_port_range(p: &IntOrString) -> Option<(u16, u16)> {
    let s = p.to_string();
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?),
        None => {
            let v = s.trim().parse::<u16>().ok()?;
            (v, v)
        }
    };
    (lo >= 1 && lo <= hi).then_some((lo, hi))
}

/// Bytes from `512GiB`, `4GB`, `100M`, `1.5TiB` or a plain number (Go humanize rules: SI
/// units without `i`, binary with).
pub fn parse_bytes(v: &IntOrString) -> Option<u64> {
    let s = match v {
        IntOrString::Int(i) => return Some(*i),
        IntOrString::Str(s) => s.trim(),
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024f64.powi(4),
        "pi" | "pib" => 1024f64.powi(5),
        _ => return None,
    };
    let bytes = num * mult;
    (bytes.is_finite() && (0.0..1.8e19).contains(&bytes)).then_some(bytes as u64)
}

/// A disk-size match: optional comparison operator and a size.
fn parse_size_match(s: &str) -> Option<u64> {
    let t = s.trim().trim_start_matches(['<', '>', '=']).trim();
    parse_bytes(&IntOrString::Str(t.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::tests::mem;
    use crate::load::{LoadOptions, load};
    use std::path::Path as FsPath;

    fn diags(src: &str) -> Vec<String> {
        let reader = mem(&[("t.yaml", src)]);
        let loaded = load(
            FsPath::new("t.yaml"),
            &LoadOptions::default(),
            &reader,
            Default::default(),
        );
        let mut all: Vec<Diagnostic> = loaded.diagnostics;
        if let Some(c) = &loaded.cluster {
            all.extend(validate(c, &reader));
        }
        all.iter()
            .map(|d| {
                let l = d
                    .location
                    .as_ref()
                    .map_or("-".into(), |l| format!("{}:{}", l.line, l.col));
                format!("{:?} {} {} {}", d.severity, d.code, l, d.message)
            })
            .collect()
    }

    const GOOD: &str = "clusterName: c\ntalosVersion: v1.12.0\nkubernetesVersion: v1.35.0\nendpoint: https://10.0.1.10:6443\nnodes:\n  - hostname: cp1\n    ipAddress: 10.0.1.11\n    controlPlane: true\n    installDisk: /dev/sda\n    networkInterfaces:\n      - interface: eth0\n        addresses: [10.0.1.11/24]\n        vip: {ip: 10.0.1.10}\n  - hostname: cp2\n    ipAddress: 10.0.1.12\n    controlPlane: true\n    installDisk: /dev/sda\n  - hostname: cp3\n    ipAddress: 10.0.1.13\n    controlPlane: true\n    installDisk: /dev/sda\n";

    #[test]
    fn a_good_cluster_has_no_findings() {
        assert_eq!(diags(GOOD), Vec::<String>::new());
    }

    #[test]
    fn cross_node_findings() {
        let src = GOOD
            .replace("ipAddress: 10.0.1.13", "ipAddress: 10.0.1.12")
            .replace("hostname: cp3", "hostname: cp2")
            .replace("vip: {ip: 10.0.1.10}", "vip: {ip: 10.0.2.10}");
        let d = diags(&src);
        assert!(
            d.iter().any(|x| x.contains("duplicate-hostname 18:15")),
            "{d:#?}"
        );
        assert!(d.iter().any(|x| x.contains("duplicate-ip 19:16")), "{d:#?}");
        assert!(
            d.iter().any(
                |x| x.contains("vip 13:19") && x.contains("outside every control-plane subnet")
            ),
            "{d:#?}"
        );
        assert!(
            d.iter()
                .any(|x| x.contains("endpoint") && x.contains("neither the VIP")),
            "{d:#?}"
        );
    }

    #[test]
    fn version_and_count_findings() {
        let src = GOOD.replace("v1.35.0", "v1.36.0").replace("  - hostname: cp3\n    ipAddress: 10.0.1.13\n    controlPlane: true\n    installDisk: /dev/sda\n", "");
        let d = diags(&src);
        assert!(
            d.iter().any(|x| x.starts_with(
                "Error k8s-compat 3:20 Kubernetes v1.36.0 is not supported by Talos v1.12.0"
            )),
            "{d:#?}"
        );
        assert!(
            d.iter()
                .any(|x| x.starts_with("Warning control-plane") && x.contains("even count")),
            "{d:#?}"
        );
    }

    #[test]
    fn host_names_say_what_is_wrong() {
        assert_eq!(dns_name_problem("cp-1.lab"), None);
        assert!(dns_name_problem("CP1").unwrap().contains("upper-case"));
        assert!(dns_name_problem("a..b").unwrap().contains("empty label"));
        assert!(
            dns_name_problem("-a")
                .unwrap()
                .contains("starts or ends with `-`")
        );
        assert!(
            dns_name_problem(&"x".repeat(64))
                .unwrap()
                .contains("64 characters")
        );
        assert!(
            dns_name_problem("a_b")
                .unwrap()
                .contains("`_` is not allowed")
        );
        // A numeric last label is a mistyped IPv4 address, not a name.
        assert!(numeric_tld("10.0.1.300") && !numeric_tld("node1.lab"));
        let d = diags(&GOOD.replace(
            "ipAddress: 10.0.1.13",
            "ipAddress: \"10.0.1.13, 10.0.1.300\"",
        ));
        assert!(
            d.iter()
                .any(|x| x.starts_with("Error ip 19:28 `10.0.1.300` is not a valid IP address")),
            "{d:#?}"
        );
    }

    #[test]
    fn unreadable_values_raise_no_follow_on_findings() {
        let src = GOOD
            .replace(
                "installDisk: /dev/sda\n  - hostname: cp3",
                "installDisk: [/dev/sda]\n  - hostname: cp3",
            )
            .replace("hostname: cp3", "hostname: {name: cp3}")
            .replace(
                "10.0.1.12\n    controlPlane: true",
                "10.0.1.12\n    controlPlane: ture",
            );
        let d = diags(&src);
        // Only the type errors: no "needs a hostname", no "no install disk", no CP count.
        assert!(d.iter().all(|x| x.contains(" type ")), "{d:#?}");
        assert_eq!(d.len(), 3, "{d:#?}");
    }

    #[test]
    fn sizes_and_ports() {
        assert_eq!(
            parse_bytes(&IntOrString::Str("512GiB".into())),
            Some(512 << 30)
        );
        assert_eq!(
            parse_bytes(&IntOrString::Str("4GB".into())),
            Some(4_000_000_000)
        );
        assert_eq!(parse_bytes(&IntOrString::Str("lots".into())), None);
        assert_eq!(
            parse_port_range(&IntOrString::Str("30000-32767".into())),
            Some((30000, 32767))
        );
        assert_eq!(parse_port_range(&IntOrString::Int(0)), None);
        assert!(parse_endpoint("https://10.0.1.10").is_err());
        let help = |e: &str| parse_endpoint(e).unwrap_err().1.unwrap();
        assert_eq!(
            help("http://10.0.1.10:6443"),
            "write `https://10.0.1.10:6443`"
        );
        assert_eq!(help("10.0.1.10"), "write `https://10.0.1.10:6443`");
        assert_eq!(
            help("tcp://[fd00::1]:6443/x"),
            "write `https://[fd00::1]:6443`"
        );
        assert!(help("https://a.example:6443/api").starts_with("write `https://a.example:6443`"));
        assert_eq!(
            parse_endpoint("https://[fd00::1]:6443").unwrap().0,
            "fd00::1"
        );
    }
}
