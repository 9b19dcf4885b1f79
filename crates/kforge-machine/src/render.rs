//! Rendering one node's machine config from the cluster file: the documents `talosctl gen
//! config` produces for the node's role and contract, then talhelper's per-node settings,
//! then performance profiles, then the multi-document settings, then patches (group and node
//! patches first, cluster-wide ones last), then legacy fields moved into their documents.
//! Every problem is collected; nothing is returned half-done.

use std::path::{Path as FsPath, PathBuf};

use kforge_secret::SecretString;
use kforge_spec::env::substitute;
use kforge_spec::model::{ExtensionService, IngressFirewall, UserVolume, Volume};
use kforge_spec::versions::{self, Version};
use kforge_spec::{Cluster, Diagnostic, Location, Path, ResolvedNode, SourceReader};
use kforge_yaml::{EmitOptions, Mapping, Value};
use serde_json::json;

use crate::contract::Gates;
use crate::legacy;
use crate::network;
use crate::nodeconfig;
use crate::patch::{self, Patch};
use crate::profile::{self, Expectation, ProfileOutput};
use crate::schematic::{self, Factory};
use crate::secrets::ClusterSecrets;
use crate::template;

/// One node's rendered machine config. Holds secret material, so it has no `Debug`.
pub struct RenderedNode {
    pub index: usize,
    pub hostname: String,
    pub ip_addresses: Vec<String>,
    pub control_plane: bool,
    /// Output file name (`<cluster>-<hostname>.yaml` unless `filenameTmpl` says otherwise).
    pub filename: String,
    /// The installer image in `machine.install.image`.
    pub installer_image: String,
    docs: Vec<Value>,
    /// Kubernetes objects the node's profiles want applied after bootstrap.
    pub manifests: Vec<Value>,
    /// Facts to verify on the live node.
    pub expectations: Vec<Expectation>,
    /// Warnings and notes produced while rendering.
    pub diagnostics: Vec<Diagnostic>,
}

impl RenderedNode {
    /// The documents of the config, v1alpha1 first.
    pub fn documents(&self) -> &[Value] {
        &self.docs
    }

    /// The config as multi-document YAML (2-space indent, as talhelper writes it).
    pub fn to_yaml(&self) -> SecretString {
        SecretString::from(kforge_yaml::to_string_multi(
            &self.docs,
            EmitOptions { indent: 2 },
        ))
    }
}

/// Renders every node; all problems of all nodes are returned together.
pub fn render_cluster(
    cluster: &Cluster,
    secrets: &ClusterSecrets,
    reader: &dyn SourceReader,
) -> Result<Vec<RenderedNode>, Vec<Diagnostic>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for node in &cluster.nodes {
        match render_node(cluster, node, secrets, reader) {
            Ok(r) => out.push(r),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The Talos version the cluster targets and its contract.
// Called once per run; boxing the diagnostic would buy nothing.
#[allow(clippy::result_large_err)]
pub fn cluster_contract(cluster: &Cluster) -> Result<(String, Gates), Diagnostic> {
    let raw = cluster
        .file
        .talos_version
        .as_deref()
        .unwrap_or(versions::DEFAULT_TALOS_VERSION);
    let loc = cluster.source.locate(&Path::root().key("talosVersion"));
    let v = Version::parse(raw).ok_or_else(|| {
        Diagnostic::error("version", format!("`{raw}` is not a Talos version")).at(loc.clone())
    })?;
    let c = versions::contract_for(&v).map_err(|m| Diagnostic::error("version", m).at(loc))?;
    Ok((
        format!("v{}", raw.trim().trim_start_matches('v')),
        Gates::new(*c),
    ))
}

struct Ctx<'a> {
    cluster: &'a Cluster,
    node: &'a ResolvedNode,
    reader: &'a dyn SourceReader,
    gates: Gates,
    talos_version: String,
    k8s: String,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn at(&self, path: &Path) -> Option<Location> {
        self.cluster.source.locate(path)
    }

    fn field(&self, key: &str) -> Path {
        self.cluster.node_field_path(self.node, key)
    }

    /// Reads an `@file` reference (SOPS-transparent through the reader) and substitutes
    /// environment variables unless told not to.
    fn read_ref(&mut self, value: &str, path: &Path, substitute_env: bool) -> Option<String> {
        let Some(file) = self.cluster.file_ref(value) else {
            return Some(value.to_string());
        };
        match self.reader.read(&file) {
            Err(why) => {
                self.errors.push(
                    Diagnostic::error(
                        "missing-file",
                        format!("cannot read `{}`: {why}", file.display()),
                    )
                    .at(self.at(path)),
                );
                None
            }
            Ok(text) if substitute_env => match substitute(&text, &file, &self.cluster.env) {
                Ok(s) => Some(s.text),
                Err(mut e) => {
                    self.errors.append(&mut e);
                    None
                }
            },
            Ok(text) => Some(text),
        }
    }
}

/// Renders one node.
pub fn render_node(
    cluster: &Cluster,
    node: &ResolvedNode,
    secrets: &ClusterSecrets,
    reader: &dyn SourceReader,
) -> Result<RenderedNode, Vec<Diagnostic>> {
    let (talos_version, gates) = cluster_contract(cluster).map_err(|d| vec![d])?;
    let k8s = cluster
        .file
        .kubernetes_version
        .as_deref()
        .unwrap_or("")
        .trim()
        .trim_start_matches('v')
        .to_string();
    let mut cx = Ctx {
        cluster,
        node,
        reader,
        gates,
        talos_version,
        k8s,
        errors: Vec::new(),
        warnings: Vec::new(),
    };

    let profiles = match profile::apply_all(cluster, node, gates) {
        Ok(p) => p,
        Err(e) => {
            let (warn, err): (Vec<_>, Vec<_>) = e.into_iter().partition(|d| !d.is_error());
            cx.warnings.extend(warn);
            cx.errors.extend(err);
            Vec::new()
        }
    };
    let profile_kernel_args: Vec<String> = profiles
        .iter()
        .flat_map(|p| p.kernel_args.iter().cloned())
        .collect();

    let (installer_image, install_kernel_args, grub_uki) = installer(&mut cx, &profile_kernel_args);
    let mut v1 = base_config(
        &cx,
        secrets,
        &installer_image,
        &install_kernel_args,
        grub_uki,
    );
    node_overrides(&mut cx, &mut v1);
    for p in &profiles {
        apply_profile(&mut v1, p);
    }
    // Templated labels and annotations see the config as generated so far (talhelper's rule).
    render_label_templates(&mut cx, &mut v1);

    let mut docs = vec![v1];
    docs.extend(multidoc(&mut cx));
    for p in &profiles {
        docs.extend(p.documents.iter().cloned());
    }

    let patches = load_patches(&mut cx, &docs[0]);
    // One patch at a time: a failure names its patch, the patches after it are still
    // checked (against the config without it), and the lint below knows which patch
    // turned kube-proxy off.
    let mut proxy_disabled_by = None;
    for (i, loaded) in patches.iter().enumerate() {
        let was_disabled = kube_proxy_disabled(&docs);
        match patch::apply_patch(docs.clone(), &loaded.patch) {
            Ok(d) => docs = d,
            Err(e) => {
                cx.errors.push(patch_error(&cx, loaded, &e));
                continue;
            }
        }
        if !was_disabled && kube_proxy_disabled(&docs) {
            proxy_disabled_by = Some(i);
        }
    }
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    if node.control_plane {
        let by = proxy_disabled_by.map(|i| &patches[i]);
        if let Some(d) = kube_proxy_lint(&cx, &docs, by) {
            cx.warnings.push(d);
        }
    }
    extra_manifests(&mut cx, &mut docs);
    let notes = legacy::move_to_documents(&mut docs, gates);
    if let Some(v1) = docs
        .iter_mut()
        .find(|d| patch::DocumentId::of(d).is_v1alpha1())
    {
        canonical_order(v1);
    }
    for n in notes {
        cx.warnings.push(
            Diagnostic::warning("legacy-field", n)
                .help(format!("Talos {} configures this in its own document; write that document in the patch to keep the config as written", cx.talos_version))
                .for_node(node.hostname.clone()),
        );
    }
    let filename = filename(&mut cx);
    check_generated(&mut cx, &docs);
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }

    Ok(RenderedNode {
        index: node.index,
        hostname: node.hostname.clone(),
        ip_addresses: node.ip_addresses.clone(),
        control_plane: node.control_plane,
        filename,
        installer_image,
        docs,
        manifests: profiles
            .iter()
            .flat_map(|p| p.manifests.iter().cloned())
            .collect(),
        expectations: profiles
            .iter()
            .flat_map(|p| p.expectations.iter().cloned())
            .collect(),
        diagnostics: cx.warnings,
    })
}

/// Runs Talos's own validation on the generated config, in the node's mode: what kforge writes
/// must be a config Talos accepts.
fn check_generated(cx: &mut Ctx<'_>, docs: &[Value]) {
    let mode = match cx
        .node
        .config
        .machine_spec
        .as_ref()
        .and_then(|m| m.mode.as_deref())
        .unwrap_or("metal")
    {
        "metal" => nodeconfig::Mode::Metal,
        "container" => nodeconfig::Mode::Container,
        _ => nodeconfig::Mode::Cloud,
    };
    for f in nodeconfig::validate(docs, mode, Some(cx.gates.contract.minor), false) {
        let what = if f.path.is_empty() {
            String::new()
        } else {
            format!("`{}`: ", f.path)
        };
        let doc = if f.document == 0 {
            String::new()
        } else {
            format!(" (document #{})", f.document + 1)
        };
        let message = format!(
            "node `{}`: the generated machine config is not valid for {mode} mode{doc}: {what}{}",
            cx.node.hostname, f.message
        );
        let d = match f.level {
            nodeconfig::Level::Error => Diagnostic::error("nodeconfig", message),
            nodeconfig::Level::Warning => Diagnostic::warning("nodeconfig", message),
        }
        .at(cx.at(&cx.node.path()))
        .help("this usually comes from a patch; `kforge validate nodeconfig` checks a generated file on its own");
        if d.is_error() {
            cx.errors.push(d);
        } else {
            cx.warnings.push(d);
        }
    }
}

/// The installer image, the kernel arguments for `install.extraKernelArgs`, and whether
/// `grubUseUKICmdline` stays on.
fn installer(cx: &mut Ctx<'_>, profile_args: &[String]) -> (String, Vec<String>, bool) {
    let cfg = &cx.node.config;
    let spec = cfg.machine_spec.clone().unwrap_or_default();
    let mode = spec.mode.clone().unwrap_or_else(|| "metal".into());
    let secureboot = spec.secureboot.unwrap_or(false);
    let use_uki = spec.use_uki.unwrap_or(false);
    let mut schematic = cfg.schematic.clone().unwrap_or_default();
    let schematic_args: Vec<String> = schematic
        .customization
        .as_ref()
        .and_then(|c| c.extra_kernel_args.clone())
        .unwrap_or_default();
    let grub_default = cx.gates.grub_use_uki_cmdline();

    if let Some(url) = &cfg.talos_image_url {
        let image = format!("{url}:{}", cx.talos_version);
        let mut args = Vec::new();
        if !grub_default && !use_uki {
            args.extend(schematic_args);
        }
        if !profile_args.is_empty() {
            args.extend(profile_args.iter().cloned());
            if grub_default {
                cx.warnings.push(
                    Diagnostic::warning(
                        "kernel-args",
                        format!("node `{}` uses `talosImageURL`, so profile kernel arguments go to `install.extraKernelArgs` with `grubUseUKICmdline: false`", cx.node.hostname),
                    )
                    .at(cx.at(&cx.field("talosImageURL")))
                    .help("use a `schematic` instead to carry kernel arguments in the image (needed for UKI / secure boot)"),
                );
                return (image, args, false);
            }
        }
        return (image, args, grub_default);
    }

    let mut install_args = Vec::new();
    if grub_default || use_uki {
        // Talos ≥ 1.12 takes kernel arguments from the image (grubUseUKICmdline); so do UKIs.
        if !profile_args.is_empty() {
            let c = schematic.customization.get_or_insert_with(Default::default);
            let list = c.extra_kernel_args.get_or_insert_with(Vec::new);
            for a in profile_args {
                if !list.contains(a) {
                    list.push(a.clone());
                }
            }
        }
    } else {
        install_args.extend(schematic_args);
        install_args.extend(profile_args.iter().cloned());
    }
    let factory = Factory {
        registry_url: cx
            .cluster
            .file
            .image_factory
            .as_ref()
            .and_then(|f| f.registry_url.clone())
            .unwrap_or_else(|| Factory::default().registry_url),
    };
    let id = schematic::id(&schematic);
    let custom = cx
        .cluster
        .file
        .image_factory
        .as_ref()
        .and_then(|f| f.installer_url_tmpl.clone());
    let image = match custom {
        None => schematic::installer_url(&factory, &mode, secureboot, &id, &cx.talos_version),
        Some(tmpl) => {
            let data = json!({
                "RegistryURL": factory.registry_url, "Mode": mode, "Secureboot": secureboot,
                "ID": id, "Version": cx.talos_version, "UseUKI": use_uki,
            });
            match template::render_plain(&tmpl, &data) {
                Ok(s) => s,
                Err(e) => {
                    let at = cx.at(&Path::root().key("imageFactory").key("installerURLTmpl"));
                    cx.errors.push(
                        Diagnostic::error(
                            "template",
                            format!("`installerURLTmpl` cannot be rendered: {e}"),
                        )
                        .at(at),
                    );
                    String::new()
                }
            }
        }
    };
    (image, install_args, grub_default)
}

fn sec(s: &SecretString) -> Value {
    Value::from(s.expose().as_str())
}

fn crt_key(crt: &str, key: Option<&SecretString>) -> Value {
    json!({"crt": crt, "key": key.map_or("", |k| k.expose().as_str())})
}

/// The config `talosctl gen config` writes for this node's role and contract.
fn base_config(
    cx: &Ctx<'_>,
    s: &ClusterSecrets,
    image: &str,
    kernel_args: &[String],
    grub_uki: bool,
) -> Value {
    let g = cx.gates;
    let cp = cx.node.control_plane;
    let f = &cx.cluster.file;
    let k8s = &cx.k8s;

    let mut machine = Mapping::new();
    machine.insert(
        "type".into(),
        Value::from(if cp { "controlplane" } else { "worker" }),
    );
    machine.insert("token".into(), sec(&s.trustd_token));
    machine.insert("ca".into(), crt_key(&s.os.crt, cp.then_some(&s.os.key)));
    let mut sans: Vec<String> = f.additional_machine_cert_sans.clone().unwrap_or_default();
    for san in cx.node.config.cert_sans.iter().flatten() {
        if !sans.contains(san) {
            sans.push(san.clone());
        }
    }
    machine.insert("certSANs".into(), json!(sans));
    let mut kubelet = Mapping::new();
    kubelet.insert(
        "image".into(),
        Value::from(format!("ghcr.io/siderolabs/kubelet:v{k8s}")),
    );
    if g.kubelet_seccomp_default() {
        kubelet.insert(
            "defaultRuntimeSeccompProfileEnabled".into(),
            Value::Bool(true),
        );
    }
    if g.kubelet_manifests_directory_disabled() {
        kubelet.insert("disableManifestsDirectory".into(), Value::Bool(true));
    }
    machine.insert("kubelet".into(), Value::Object(kubelet));
    let mut install = Mapping::new();
    if let Some(d) = &cx.node.install_disk {
        install.insert("disk".into(), Value::from(d.as_str()));
    }
    if let Some(sel) = &cx.node.install_disk_selector
        && let Ok(v) = serde_json::to_value(sel)
    {
        install.insert("diskSelector".into(), strip_nulls(v));
    }
    if !kernel_args.is_empty() {
        install.insert("extraKernelArgs".into(), json!(kernel_args));
    }
    install.insert("image".into(), Value::from(image));
    install.insert("wipe".into(), Value::Bool(false));
    if g.grub_use_uki_cmdline() {
        install.insert("grubUseUKICmdline".into(), Value::Bool(grub_uki));
    }
    machine.insert("install".into(), Value::Object(install));
    let mut features = Mapping::new();
    if g.rbac_and_key_usage_fields() {
        features.insert("rbac".into(), Value::Bool(true));
    }
    if g.stable_hostname_feature() {
        features.insert("stableHostname".into(), Value::Bool(true));
    }
    if g.rbac_and_key_usage_fields() && g.apid_ext_key_usage_check() {
        features.insert("apidCheckExtKeyUsage".into(), Value::Bool(true));
    }
    if g.disk_quota_support() {
        features.insert("diskQuotaSupport".into(), Value::Bool(true));
    }
    if g.kube_prism() {
        features.insert("kubePrism".into(), json!({"enabled": true, "port": 7445}));
    }
    if g.host_dns() {
        let mut h = Mapping::new();
        h.insert("enabled".into(), Value::Bool(true));
        if g.host_dns_forward_kube_dns() {
            h.insert("forwardKubeDNSToHost".into(), Value::Bool(true));
        }
        features.insert("hostDNS".into(), Value::Object(h));
    }
    machine.insert("features".into(), Value::Object(features));
    if cp && g.exclude_from_external_lb_label() {
        machine.insert(
            "nodeLabels".into(),
            json!({"node.kubernetes.io/exclude-from-external-load-balancers": ""}),
        );
    }

    let endpoint = f.endpoint.clone().unwrap_or_default();
    let mut cluster = Mapping::new();
    cluster.insert("id".into(), sec(&s.cluster_id));
    cluster.insert("secret".into(), sec(&s.cluster_secret));
    cluster.insert("controlPlane".into(), json!({"endpoint": endpoint}));
    if cp || g.cluster_name_for_workers() {
        cluster.insert(
            "clusterName".into(),
            Value::from(f.cluster_name.clone().unwrap_or_default()),
        );
    }
    let mut net = Mapping::new();
    if let Some(cni) = &f.cni_config
        && let Ok(v) = serde_json::to_value(cni)
    {
        net.insert("cni".into(), strip_nulls(v));
    }
    net.insert(
        "dnsDomain".into(),
        Value::from(f.domain.clone().unwrap_or_else(|| "cluster.local".into())),
    );
    net.insert(
        "podSubnets".into(),
        json!(
            f.cluster_pod_nets
                .clone()
                .unwrap_or_else(|| vec!["10.244.0.0/16".into()])
        ),
    );
    net.insert(
        "serviceSubnets".into(),
        json!(
            f.cluster_svc_nets
                .clone()
                .unwrap_or_else(|| vec!["10.96.0.0/12".into()])
        ),
    );
    cluster.insert("network".into(), Value::Object(net));
    cluster.insert("token".into(), sec(&s.bootstrap_token));
    if cp {
        match (&s.secretbox_encryption_secret, &s.aescbc_encryption_secret) {
            (Some(sb), _) if g.secretbox() => {
                cluster.insert("secretboxEncryptionSecret".into(), sec(sb));
            }
            (_, Some(aes)) => {
                cluster.insert("aescbcEncryptionSecret".into(), sec(aes));
            }
            (Some(sb), None) => {
                cluster.insert("secretboxEncryptionSecret".into(), sec(sb));
            }
            (None, None) => {}
        }
    }
    cluster.insert("ca".into(), crt_key(&s.k8s.crt, cp.then_some(&s.k8s.key)));
    if cp {
        cluster.insert(
            "aggregatorCA".into(),
            crt_key(&s.k8s_aggregator.crt, Some(&s.k8s_aggregator.key)),
        );
        cluster.insert(
            "serviceAccount".into(),
            json!({"key": s.k8s_service_account_key.expose()}),
        );
        let mut api = Mapping::new();
        api.insert(
            "image".into(),
            Value::from(format!("registry.k8s.io/kube-apiserver:v{k8s}")),
        );
        let mut api_sans: Vec<String> = Vec::new();
        if g.cluster_sans_from_endpoint()
            && let Ok((host, _)) = kforge_spec::validate::parse_endpoint(&endpoint)
        {
            api_sans.push(host);
        }
        for san in f.additional_api_server_cert_sans.iter().flatten() {
            if !api_sans.contains(san) {
                api_sans.push(san.clone());
            }
        }
        if !api_sans.is_empty() {
            api.insert("certSANs".into(), json!(api_sans));
        }
        if g.disable_psp_field() {
            api.insert("disablePodSecurityPolicy".into(), Value::Bool(true));
        }
        api.insert(
            "admissionControl".into(),
            json!([{
                "name": "PodSecurity",
                "configuration": {
                    "apiVersion": "pod-security.admission.config.k8s.io/v1alpha1",
                    "defaults": {
                        "audit": "restricted", "audit-version": "latest",
                        "enforce": "baseline", "enforce-version": "latest",
                        "warn": "restricted", "warn-version": "latest",
                    },
                    "exemptions": {"namespaces": ["kube-system"], "runtimeClasses": [], "usernames": []},
                    "kind": "PodSecurityConfiguration",
                },
            }]),
        );
        if g.audit_policy() {
            api.insert("auditPolicy".into(), json!({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]}));
        }
        cluster.insert("apiServer".into(), Value::Object(api));
        cluster.insert(
            "controllerManager".into(),
            json!({"image": format!("registry.k8s.io/kube-controller-manager:v{k8s}")}),
        );
        cluster.insert(
            "proxy".into(),
            json!({"image": format!("registry.k8s.io/kube-proxy:v{k8s}")}),
        );
        cluster.insert(
            "scheduler".into(),
            json!({"image": format!("registry.k8s.io/kube-scheduler:v{k8s}")}),
        );
    }
    let mut discovery = Mapping::new();
    discovery.insert("enabled".into(), Value::Bool(true));
    let mut registries = Mapping::new();
    if g.kubernetes_discovery_backend_disabled() {
        registries.insert("kubernetes".into(), json!({"disabled": true}));
    }
    registries.insert("service".into(), json!({}));
    discovery.insert("registries".into(), Value::Object(registries));
    cluster.insert("discovery".into(), Value::Object(discovery));
    if cp {
        cluster.insert(
            "etcd".into(),
            json!({"ca": crt_key(&s.etcd.crt, Some(&s.etcd.key))}),
        );
        cluster.insert("extraManifests".into(), json!([]));
        cluster.insert("inlineManifests".into(), json!([]));
        if f.allow_scheduling_on_masters == Some(true)
            || f.allow_scheduling_on_control_planes == Some(true)
        {
            cluster.insert("allowSchedulingOnControlPlanes".into(), Value::Bool(true));
        }
    }

    let mut root = Mapping::new();
    root.insert("version".into(), Value::from("v1alpha1"));
    root.insert("debug".into(), Value::Bool(false));
    root.insert("persist".into(), Value::Bool(true));
    root.insert("machine".into(), Value::Object(machine));
    root.insert("cluster".into(), Value::Object(cluster));
    Value::Object(root)
}

/// Removes null members so optional fields that were not set are not written.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// Inserts `key` into a mapping at `v[section]`, creating the section, keeping Go struct
/// order for the sections kforge writes.
fn section<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Mapping {
    let mut cur = v;
    for p in path {
        let m = match cur {
            Value::Object(m) => m,
            other => {
                *other = Value::Object(Mapping::new());
                match other {
                    Value::Object(m) => m,
                    _ => unreachable!("just set to an object"),
                }
            }
        };
        if !m.contains_key(*p) {
            insert_ordered(m, p, Value::Object(Mapping::new()));
        }
        cur = m.get_mut(*p).expect("just inserted");
        if !cur.is_object() {
            *cur = Value::Object(Mapping::new());
        }
    }
    cur.as_object_mut().expect("ensured above")
}

/// Go struct field order of the v1alpha1 `machine` section.
const MACHINE_ORDER: &[&str] = &[
    "type",
    "token",
    "ca",
    "acceptedCAs",
    "certSANs",
    "controlPlane",
    "kubelet",
    "pods",
    "network",
    "disks",
    "install",
    "files",
    "env",
    "time",
    "sysctls",
    "sysfs",
    "registries",
    "systemDiskEncryption",
    "features",
    "udev",
    "logging",
    "kernel",
    "seccompProfiles",
    "baseRuntimeSpecOverrides",
    "nodeLabels",
    "nodeAnnotations",
    "nodeTaints",
];

/// Go struct field order of the v1alpha1 `cluster` section.
const CLUSTER_ORDER: &[&str] = &[
    "id",
    "secret",
    "controlPlane",
    "clusterName",
    "network",
    "token",
    "aescbcEncryptionSecret",
    "secretboxEncryptionSecret",
    "ca",
    "acceptedCAs",
    "aggregatorCA",
    "serviceAccount",
    "apiServer",
    "controllerManager",
    "proxy",
    "scheduler",
    "discovery",
    "etcd",
    "coreDNS",
    "externalCloudProvider",
    "extraManifests",
    "extraManifestHeaders",
    "inlineManifests",
    "adminKubeconfig",
    "allowSchedulingOnMasters",
    "allowSchedulingOnControlPlanes",
];

/// Puts the v1alpha1 document's top-level, `machine` and `cluster` keys in Go struct order,
/// as talhelper's final re-encode does; keys Talos does not know stay last, in their order.
fn canonical_order(v1: &mut Value) {
    let sort = |m: &mut Mapping, order: &[&str]| {
        let mut entries: Vec<(String, Value)> = std::mem::take(m).into_iter().collect();
        entries.sort_by_key(|(k, _)| order.iter().position(|x| x == k).unwrap_or(usize::MAX));
        m.extend(entries);
    };
    if let Value::Object(root) = v1 {
        sort(root, &["version", "debug", "persist", "machine", "cluster"]);
        if let Some(Value::Object(m)) = root.get_mut("machine") {
            sort(m, MACHINE_ORDER);
        }
        if let Some(Value::Object(c)) = root.get_mut("cluster") {
            sort(c, CLUSTER_ORDER);
        }
    }
}

fn insert_ordered(m: &mut Mapping, key: &str, value: Value) {
    let Some(rank) = MACHINE_ORDER.iter().position(|k| *k == key) else {
        m.insert(key.to_string(), value);
        return;
    };
    let pos = m
        .keys()
        .position(|k| {
            MACHINE_ORDER
                .iter()
                .position(|x| x == k)
                .is_some_and(|r| r > rank)
        })
        .unwrap_or(m.len());
    m.shift_insert(pos, key.to_string(), value);
}

/// talhelper's per-node settings on top of the generated config.
fn node_overrides(cx: &mut Ctx<'_>, v1: &mut Value) {
    let cfg = cx.node.config.clone();
    let g = cx.gates;
    if let Some(disks) = &cfg.machine_disks
        && let Ok(val) = serde_json::to_value(disks)
    {
        section(v1, &["machine"]).insert("disks".into(), strip_nulls(val));
        let m = section(v1, &["machine"]);
        reorder(m);
    }
    if let Some(mods) = cfg.kernel_modules.as_ref().filter(|m| !m.is_empty())
        && let Ok(val) = serde_json::to_value(mods)
    {
        section(v1, &["machine", "kernel"]).insert("modules".into(), strip_nulls(val));
    }
    for (key, map) in [
        ("nodeLabels", &cfg.node_labels),
        ("nodeAnnotations", &cfg.node_annotations),
        ("nodeTaints", &cfg.node_taints),
    ] {
        if let Some(map) = map.as_ref().filter(|m| !m.is_empty()) {
            let target = section(v1, &["machine", key]);
            for (k, val) in map {
                target.insert(k.clone(), Value::from(val.as_str()));
            }
        }
    }
    if let Some(files) = cfg.machine_files.as_ref().filter(|f| !f.is_empty()) {
        let base = cx.field("machineFiles");
        let mut out = Vec::new();
        for (i, mf) in files.iter().enumerate() {
            let content = mf.content.clone().unwrap_or_default();
            let content = cx
                .read_ref(
                    &content,
                    &base.index(i).key("content"),
                    !mf.skip_envsubst.unwrap_or(false),
                )
                .unwrap_or_default();
            let mut m = Mapping::new();
            m.insert("content".into(), Value::from(content));
            m.insert(
                "permissions".into(),
                Value::from(mf.permissions.unwrap_or(0)),
            );
            m.insert(
                "path".into(),
                Value::from(mf.path.clone().unwrap_or_default()),
            );
            m.insert("op".into(), Value::from(mf.op.clone().unwrap_or_default()));
            out.push(Value::Object(m));
        }
        section(v1, &["machine"]).insert("files".into(), Value::Array(out));
        reorder(section(v1, &["machine"]));
    }
    if !g.multidoc_network() {
        let mut net = Mapping::new();
        if !cx.node.ignore_hostname && !cx.node.hostname.is_empty() {
            net.insert("hostname".into(), Value::from(cx.node.hostname.as_str()));
        }
        if let Some(ifs) = cfg.network_interfaces.as_ref().filter(|d| !d.is_empty())
            && let Ok(val) = serde_json::to_value(ifs)
        {
            net.insert("interfaces".into(), strip_nulls(val));
        }
        if let Some(ns) = cfg.nameservers.as_ref().filter(|n| !n.is_empty()) {
            net.insert("nameservers".into(), json!(ns));
        }
        if cfg.disable_search_domain == Some(true) {
            net.insert("disableSearchDomain".into(), Value::Bool(true));
        }
        if !net.is_empty() {
            section(v1, &["machine"]).insert("network".into(), Value::Object(net));
            reorder(section(v1, &["machine"]));
        }
    }
    if cx.node.control_plane {
        let mut manifests = Vec::new();
        let base = Path::root().key("inlineManifests");
        for (i, m) in cx
            .cluster
            .file
            .inline_manifests
            .clone()
            .iter()
            .flatten()
            .enumerate()
        {
            let contents = m.contents.clone().unwrap_or_default();
            let contents = cx
                .read_ref(
                    &contents,
                    &base.index(i).key("contents"),
                    !m.skip_envsubst.unwrap_or(false),
                )
                .unwrap_or_default();
            manifests
                .push(json!({"name": m.name.clone().unwrap_or_default(), "contents": contents}));
        }
        if !manifests.is_empty() {
            section(v1, &["cluster"]).insert("inlineManifests".into(), Value::Array(manifests));
        }
    }
}

fn reorder(m: &mut Mapping) {
    let mut entries: Vec<(String, Value)> = std::mem::take(m).into_iter().collect();
    entries.sort_by_key(|(k, _)| {
        MACHINE_ORDER
            .iter()
            .position(|x| x == k)
            .unwrap_or(usize::MAX)
    });
    m.extend(entries);
}

fn apply_profile(v1: &mut Value, p: &ProfileOutput) {
    if !p.sysctls.is_empty() {
        let s = section(v1, &["machine", "sysctls"]);
        for (k, val) in &p.sysctls {
            s.insert(k.clone(), Value::from(val.as_str()));
        }
        reorder(section(v1, &["machine"]));
    }
    if !p.kernel_modules.is_empty() {
        let kernel = section(v1, &["machine", "kernel"]);
        let list = kernel.entry("modules").or_insert_with(|| json!([]));
        if let Value::Array(a) = list {
            for m in &p.kernel_modules {
                if !a
                    .iter()
                    .any(|x| x.get("name").and_then(Value::as_str) == Some(m))
                {
                    a.push(json!({"name": m}));
                }
            }
        }
        reorder(section(v1, &["machine"]));
    }
    if !p.kubelet_config.is_empty() {
        let extra = section(v1, &["machine", "kubelet", "extraConfig"]);
        for (k, val) in &p.kubelet_config {
            extra.insert(k.clone(), val.clone());
        }
    }
    if !p.node_labels.is_empty() {
        let labels = section(v1, &["machine", "nodeLabels"]);
        for (k, val) in &p.node_labels {
            labels
                .entry(k.clone())
                .or_insert_with(|| Value::from(val.as_str()));
        }
        reorder(section(v1, &["machine"]));
    }
}

fn render_label_templates(cx: &mut Ctx<'_>, v1: &mut Value) {
    let data = v1.clone();
    for key in ["nodeLabels", "nodeAnnotations"] {
        let Some(Value::Object(map)) = v1.get_mut("machine").and_then(|m| m.get_mut(key)) else {
            continue;
        };
        for (k, val) in map.iter_mut() {
            let Some(text) = val.as_str().filter(|t| t.contains("{{")) else {
                continue;
            };
            match template::render(text, &data) {
                Ok(s) => *val = Value::from(s.trim().to_string()),
                Err(e) => {
                    let at = cx.at(&cx.field(key).key(k.clone()));
                    cx.errors.push(
                        Diagnostic::error(
                            "template",
                            format!("cannot render the template of {key} `{k}`: {e}"),
                        )
                        .at(at),
                    );
                }
            }
        }
    }
}

/// The documents that follow the v1alpha1 document, in talhelper's order.
fn multidoc(cx: &mut Ctx<'_>) -> Vec<Value> {
    let cfg = cx.node.config.clone();
    let g = cx.gates;
    let mut docs = Vec::new();
    if g.multidoc_network() {
        if let Some(r) = network::resolver(
            cfg.nameservers.as_deref().unwrap_or_default(),
            cfg.disable_search_domain == Some(true),
        ) {
            docs.push(r);
        }
        let name = (!cx.node.ignore_hostname && !cx.node.hostname.is_empty())
            .then_some(cx.node.hostname.as_str());
        docs.push(network::hostname(name));
    }
    if let Some(fw) = &cfg.ingress_firewall
        && require(cx, g.network_rule_documents(), "ingressFirewall", "1.6")
    {
        docs.extend(firewall_docs(fw));
    }
    if let Some(services) = cfg.extension_services.as_ref().filter(|s| !s.is_empty())
        && require(
            cx,
            g.extension_service_documents(),
            "extensionServices",
            "1.7",
        )
    {
        docs.extend(services.iter().map(extension_doc));
    }
    if let Some(vols) = cfg.volumes.as_ref().filter(|v| !v.is_empty())
        && require(cx, g.volume_config_documents(), "volumes", "1.8")
    {
        docs.extend(vols.iter().map(volume_doc));
    }
    if let Some(vols) = cfg.user_volumes.as_ref().filter(|v| !v.is_empty())
        && require(cx, g.user_volume_documents(), "userVolumes", "1.10")
    {
        docs.extend(vols.iter().map(user_volume_doc));
    }
    if g.multidoc_network() {
        docs.extend(network::links(
            cfg.network_interfaces.as_deref().unwrap_or_default(),
        ));
    }
    docs
}

fn require(cx: &mut Ctx<'_>, ok: bool, key: &str, since: &str) -> bool {
    if !ok {
        let at = cx.at(&cx.field(key));
        cx.errors.push(
            Diagnostic::error(
                "contract",
                format!(
                    "`{key}` needs Talos ≥ {since}; this cluster targets Talos {}",
                    cx.talos_version
                ),
            )
            .at(at),
        );
    }
    ok
}

fn typed(kind: &str) -> Mapping {
    let mut m = Mapping::new();
    m.insert("apiVersion".into(), Value::from("v1alpha1"));
    m.insert("kind".into(), Value::from(kind));
    m
}

fn firewall_docs(fw: &IngressFirewall) -> Vec<Value> {
    let mut out = Vec::new();
    let mut d = typed("NetworkDefaultActionConfig");
    d.insert(
        "ingress".into(),
        Value::from(fw.default_action.clone().unwrap_or_else(|| "block".into())),
    );
    out.push(Value::Object(d));
    for r in fw.rules.iter().flatten() {
        let mut m = typed("NetworkRuleConfig");
        m.insert(
            "name".into(),
            Value::from(r.name.clone().unwrap_or_default()),
        );
        if let Some(ps) = &r.port_selector
            && let Ok(v) = serde_json::to_value(ps)
        {
            m.insert("portSelector".into(), strip_nulls(v));
        }
        if let Some(ing) = &r.ingress
            && let Ok(v) = serde_json::to_value(ing)
        {
            m.insert("ingress".into(), strip_nulls(v));
        }
        out.push(Value::Object(m));
    }
    out
}

fn extension_doc(s: &ExtensionService) -> Value {
    let mut m = typed("ExtensionServiceConfig");
    m.insert(
        "name".into(),
        Value::from(s.name.clone().unwrap_or_default()),
    );
    if let Some(files) = s.config_files.as_ref().filter(|f| !f.is_empty())
        && let Ok(v) = serde_json::to_value(files)
    {
        m.insert("configFiles".into(), strip_nulls(v));
    }
    if let Some(env) = s.environment.as_ref().filter(|e| !e.is_empty()) {
        m.insert("environment".into(), json!(env));
    }
    Value::Object(m)
}

fn volume_doc(v: &Volume) -> Value {
    let mut m = typed("VolumeConfig");
    m.insert(
        "name".into(),
        Value::from(v.name.clone().unwrap_or_default()),
    );
    if let Some(p) = &v.provisioning
        && let Ok(val) = serde_json::to_value(p)
    {
        m.insert("provisioning".into(), strip_nulls(val));
    }
    if let Some(e) = &v.encryption
        && let Ok(val) = serde_json::to_value(e)
    {
        m.insert("encryption".into(), strip_nulls(val));
    }
    Value::Object(m)
}

fn user_volume_doc(v: &UserVolume) -> Value {
    let mut m = typed("UserVolumeConfig");
    m.insert(
        "name".into(),
        Value::from(v.name.clone().unwrap_or_default()),
    );
    if let Some(t) = &v.volume_type {
        m.insert("volumeType".into(), Value::from(t.as_str()));
    }
    for (k, val) in [
        ("provisioning", serde_json::to_value(&v.provisioning).ok()),
        ("filesystem", serde_json::to_value(&v.filesystem).ok()),
        ("encryption", serde_json::to_value(&v.encryption).ok()),
    ] {
        if let Some(val) = val.filter(|x| !x.is_null()) {
            m.insert(k.into(), strip_nulls(val));
        }
    }
    Value::Object(m)
}

/// A patch ready to apply, with where it was written.
struct LoadedPatch {
    patch: Patch,
    /// The patch entry in the cluster file (`controlPlane.patches[1]`).
    path: Path,
    /// The file an `@file` patch was read from, and its text as read.
    file: Option<(PathBuf, String)>,
}

/// Loads the node's patches in application order: group and node patches, then the
/// cluster-wide ones. File patches are read, template-rendered and env-substituted;
/// inline patches are template-rendered (env substitution already happened at load).
fn load_patches(cx: &mut Ctx<'_>, v1: &Value) -> Vec<LoadedPatch> {
    let mut out = Vec::new();
    let node_patches: Vec<String> = cx.node.config.patches.clone().unwrap_or_default();
    let global: Vec<String> = cx.cluster.file.patches.clone().unwrap_or_default();
    let entries: Vec<(String, Path)> = node_patches
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p, cx.cluster.node_patch_path(cx.node, i)))
        .chain(
            global
                .into_iter()
                .enumerate()
                .map(|(i, p)| (p, Path::root().key("patches").index(i))),
        )
        .collect();
    for (text, path) in entries {
        let (label, body, file) = match cx.cluster.file_ref(&text) {
            Some(file) => {
                let raw = match cx.reader.read(&file) {
                    Ok(t) => t,
                    Err(why) => {
                        cx.errors.push(
                            Diagnostic::error(
                                "missing-file",
                                format!("cannot read patch `{}`: {why}", file.display()),
                            )
                            .at(cx.at(&path)),
                        );
                        continue;
                    }
                };
                if raw.trim().is_empty() {
                    continue;
                }
                (format!("patch {}", file.display()), raw, Some(file))
            }
            None => (format!("inline patch at {path}"), text.clone(), None),
        };
        let rendered = if body.contains("{{") {
            match crate::gotemplate::Template::parse(&body).and_then(|t| {
                t.render(
                    crate::gotemplate::Data::TalosConfig(v1),
                    crate::gotemplate::Escape::None,
                )
            }) {
                Ok(r) => r,
                Err(e) => {
                    let (line, col) = e.line_col();
                    let loc = match &file {
                        Some(f) => Some(file_location(f, &body, line, col)),
                        None => inline_location(cx, &path, &body, line, col),
                    };
                    cx.errors.push(
                        Diagnostic::error("template", format!("the template in {label} fails"))
                            .at(loc)
                            .note(e.to_string()),
                    );
                    continue;
                }
            }
        } else {
            body.clone()
        };
        let rendered = match &file {
            Some(f) => match substitute(&rendered, f, &cx.cluster.env) {
                Ok(s) => s.text,
                Err(mut e) => {
                    cx.errors.append(&mut e);
                    continue;
                }
            },
            None => rendered,
        };
        match Patch::parse(label.clone(), &rendered) {
            Ok(patch) => out.push(LoadedPatch {
                patch,
                path,
                file: file.map(|f| (f, body)),
            }),
            Err(e) => {
                // The first problem is shown at its place, the others as notes.
                let problems: Vec<patch::Problem> = match &e {
                    patch::PatchError::Invalid { problems, .. } => problems.clone(),
                    other => vec![patch::Problem {
                        line: 1,
                        column: 1,
                        message: patch_reason(other),
                    }],
                };
                let (first, rest) = problems
                    .split_first()
                    .map_or((None, &[][..]), |(f, r)| (Some(f), r));
                let (line, col) = first.map_or((1, 1), |p| (p.line, p.column));
                let loc = match &file {
                    Some(f) => Some(file_location(f, &rendered, line, col)),
                    None => inline_location(cx, &path, &rendered, line, col),
                };
                let mut d = Diagnostic::error("patch", format!("{label} is not a valid patch"))
                    .at(loc)
                    .for_node(cx.node.hostname.clone());
                if let Some(p) = first {
                    d = d.label(p.message.clone());
                }
                for p in rest {
                    d = d.note(p.to_string());
                }
                cx.errors.push(d);
            }
        }
    }
    out
}

/// What went wrong with a patch, without the patch's label (the location names it).
fn patch_reason(e: &patch::PatchError) -> String {
    match e {
        patch::PatchError::Invalid { problems, .. } => problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; "),
        patch::PatchError::Apply { message, .. } => message.clone(),
        patch::PatchError::Json6902Operation {
            index,
            op,
            path,
            reason,
            ..
        } => format!("operation #{index} `{op} {path}` failed: {reason}"),
        patch::PatchError::Json6902MultiDocument { .. } => e.to_string(),
    }
}

/// A patch that does not apply, pointed at the line of the patch that fails.
fn patch_error(cx: &Ctx<'_>, loaded: &LoadedPatch, e: &patch::PatchError) -> Diagnostic {
    let (line, col) = match e {
        patch::PatchError::Apply { line, column, .. }
        | patch::PatchError::Json6902Operation { line, column, .. } => (*line, *column),
        _ => (1, 1),
    };
    let loc = match &loaded.file {
        Some((f, text)) => Some(file_location(f, text, line, col)),
        None => {
            let text = cx
                .cluster
                .source
                .node(&loaded.path)
                .and_then(|n| n.as_str())
                .unwrap_or("");
            inline_location(cx, &loaded.path, text, line, col)
        }
    };
    let hostname = cx.node.hostname.clone();
    match e {
        patch::PatchError::Json6902MultiDocument { hint, .. } => Diagnostic::error(
            "patch",
            "a JSON patch (RFC 6902) cannot apply to a multi-document machine config",
        )
        .at(loc)
        .label("a list of operations is a JSON patch")
        .note(format!(
            "from Talos 1.12 on every machine config has several documents (this cluster targets {})",
            cx.talos_version
        ))
        .help(hint.trim().trim_start_matches("hint:").trim_start().to_string())
        .for_node(hostname),
        _ => {
            // "… (hint: …)" from the patch engine: the hint becomes the help line.
            let reason = patch_reason(e);
            let (what, hint) = match reason.strip_suffix(')').and_then(|r| r.split_once(" (hint: ")) {
                Some((what, hint)) => (what.to_string(), Some(hint.to_string())),
                None => (reason, None),
            };
            let d = Diagnostic::error("patch", "a patch does not apply")
                .at(loc)
                .label(what)
                .for_node(hostname);
            match hint {
                Some(h) => d.help(h),
                None => d,
            }
        }
    }
}

/// Where line `line`, column `col` of an inline patch was written in the cluster file.
/// Exact for block scalars (`|`) and single-line values written as is; otherwise (escapes,
/// folding, substituted variables) the start of the patch value.
fn inline_location(
    cx: &Ctx<'_>,
    path: &Path,
    text: &str,
    line: usize,
    col: usize,
) -> Option<Location> {
    let source = &cx.cluster.source;
    let start = source.locate(path)?;
    let wanted = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    if wanted.trim().is_empty() {
        return Some(start);
    }
    let file = source.path.as_path();
    // A plain or quoted value holds its first line on the line it starts; a block scalar
    // (`|`) may be located at its indicator, one line above its text.
    for src_line in [start.line + line - 1, start.line + line] {
        let src = source.lines.line_text(src_line);
        let from = if src_line == start.line {
            start.col - 1
        } else {
            0
        };
        let Some(byte_from) = src.char_indices().nth(from).map(|(b, _)| b) else {
            continue;
        };
        if let Some(found) = src[byte_from..].find(wanted) {
            let prefix = &src[..byte_from + found];
            if src_line == start.line || prefix.trim().is_empty() {
                return Some(Location::in_line(
                    file,
                    src_line,
                    prefix.chars().count() + col,
                    1,
                    src,
                ));
            }
        }
    }
    Some(start)
}

/// Whether the v1alpha1 document turns kube-proxy off (`cluster.proxy.disabled: true`).
fn kube_proxy_disabled(docs: &[Value]) -> bool {
    docs.iter()
        .find(|d| patch::DocumentId::of(d).is_v1alpha1())
        .and_then(|d| d.pointer("/cluster/proxy/disabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// kube-proxy against the CNI, on the rendered control-plane config (patches included):
/// disabling kube-proxy needs a CNI that replaces it (flannel does not), and with `none`
/// (a CNI installed after bootstrap, typically Cilium) kube-proxy left on is usually an
/// oversight.
fn kube_proxy_lint(
    cx: &Ctx<'_>,
    docs: &[Value],
    disabled_by: Option<&LoadedPatch>,
) -> Option<Diagnostic> {
    let v1 = docs
        .iter()
        .find(|d| patch::DocumentId::of(d).is_v1alpha1())?;
    let cni = v1
        .pointer("/cluster/network/cni/name")
        .and_then(Value::as_str)
        .unwrap_or("flannel");
    let disabled = kube_proxy_disabled(docs);
    let cni_path = Path::root().key("cniConfig");
    let cni_at = [cni_path.key("name"), cni_path.clone()]
        .into_iter()
        .find(|p| cx.cluster.source.node(p).is_some());
    let hostname = cx.node.hostname.clone();
    match (cni, disabled) {
        ("flannel", true) => {
            // Point at the patch line that disabled it, else at the CNI setting.
            let loc = match disabled_by {
                Some(p) => match &p.file {
                    Some((f, text)) => {
                        let line = text
                            .lines()
                            .position(|l| l.trim_start().starts_with("disabled:"))
                            .map_or(1, |i| i + 1);
                        let col = text
                            .lines()
                            .nth(line - 1)
                            .map_or(1, |l| l.len() - l.trim_start().len() + 1);
                        let mut l = file_location(f, text, line, col);
                        l.len = "disabled: true".len();
                        Some(l)
                    }
                    None => {
                        let text = cx
                            .cluster
                            .source
                            .node(&p.path)
                            .and_then(|n| n.as_str())
                            .unwrap_or("");
                        match text
                            .lines()
                            .position(|l| l.trim_start().starts_with("disabled:"))
                        {
                            Some(i) => {
                                let l = text.lines().nth(i).unwrap_or("");
                                let col = l.len() - l.trim_start().len() + 1;
                                inline_location(cx, &p.path, text, i + 1, col).map(|mut l| {
                                    l.len = "disabled: true".len();
                                    l
                                })
                            }
                            None => cx.at(&p.path),
                        }
                    }
                },
                None => cni_at.as_ref().and_then(|p| cx.at(p)),
            };
            Some(
                Diagnostic::warning(
                    "kube-proxy",
                    "kube-proxy is disabled, but the CNI is flannel, which does not replace it",
                )
                .at(loc)
                .label("kube-proxy disabled here")
                .note("without kube-proxy or a CNI that implements Services, Service IPs (including the API server's `kubernetes` Service) do not work")
                .help("keep kube-proxy, or set `cniConfig: {name: none}` and install a CNI that replaces it (e.g. Cilium with kubeProxyReplacement)")
                .for_node(hostname),
            )
        }
        ("none", false) => Some(
            Diagnostic::warning("kube-proxy", "CNI `none` with kube-proxy enabled")
                .at(cni_at.as_ref().and_then(|p| cx.at(p)))
                .label("the CNI is installed after bootstrap")
                .note("kube-proxy stays on unless a patch sets `cluster.proxy.disabled: true`")
                .help("if the CNI you install replaces kube-proxy (Cilium with kubeProxyReplacement), add a control-plane patch `cluster: {proxy: {disabled: true}}`; otherwise ignore this warning")
                .for_node(hostname),
        ),
        _ => None,
    }
}

fn file_location(file: &FsPath, text: &str, line: usize, col: usize) -> Location {
    let line_text = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    Location::in_line(file, line.max(1), col, 1, line_text)
}

/// Deprecated `extraManifests`: each file's documents are appended to the config.
fn extra_manifests(cx: &mut Ctx<'_>, docs: &mut Vec<Value>) {
    let list = cx.node.config.extra_manifests.clone().unwrap_or_default();
    let base = cx.field("extraManifests");
    for (i, m) in list.iter().enumerate() {
        let path: PathBuf = cx.cluster.base_dir.join(m.trim_start_matches('@'));
        let text = match cx.reader.read(&path) {
            Ok(t) => t,
            Err(why) => {
                cx.errors.push(
                    Diagnostic::error(
                        "missing-file",
                        format!("cannot read `{}`: {why}", path.display()),
                    )
                    .at(cx.at(&base.index(i))),
                );
                continue;
            }
        };
        let text = if text.contains("{{") {
            match template::render(&text, &docs[0]) {
                Ok(t) => t,
                Err(e) => {
                    cx.errors.push(
                        Diagnostic::error("template", format!("`{}`: {e}", path.display()))
                            .at(cx.at(&base.index(i))),
                    );
                    continue;
                }
            }
        } else {
            text
        };
        match kforge_yaml::parse_all(&text) {
            Ok(nodes) => docs.extend(
                nodes
                    .iter()
                    .filter(|n| !n.is_null())
                    .map(kforge_yaml::Node::to_value),
            ),
            Err(e) => cx.errors.push(
                Diagnostic::error(
                    "yaml",
                    format!("invalid YAML in `{}`: {}", path.display(), e.message),
                )
                .at(Some(file_location(&path, &text, e.pos.line, e.pos.col))),
            ),
        }
    }
}

fn filename(cx: &mut Ctx<'_>) -> String {
    let cluster_name = cx.cluster.name();
    match &cx.node.config.filename_tmpl {
        None => format!("{cluster_name}-{}.yaml", cx.node.hostname),
        Some(t) => {
            let data = json!({
                "ClusterName": cluster_name,
                "Hostname": cx.node.hostname,
                "IPAddress": cx.cluster.file.nodes.as_deref().unwrap_or_default()[cx.node.index].ip_address.clone().unwrap_or_default(),
                "Role": cx.node.role(),
            });
            match template::render_plain(t, &data) {
                Ok(name) if !name.trim().is_empty() && !name.contains('/') => {
                    name.trim().to_string()
                }
                Ok(name) => {
                    cx.errors.push(
                        Diagnostic::error(
                            "template",
                            format!("`filenameTmpl` gives `{name}`, which is not a file name"),
                        )
                        .at(cx.at(&cx.field("filenameTmpl"))),
                    );
                    String::new()
                }
                Err(e) => {
                    cx.errors.push(
                        Diagnostic::error(
                            "template",
                            format!("`filenameTmpl` cannot be rendered: {e}"),
                        )
                        .at(cx.at(&cx.field("filenameTmpl"))),
                    );
                    String::new()
                }
            }
        }
    }
}
