//! The facts a node takes from its machine config: machine type, hostname, cluster name
//! and endpoint, the OS CA and trustd token, installer image, kernel arguments, sysctls,
//! certificate SANs, what the kubelet needs (Kubernetes CA, bootstrap token, node labels
//! and taints, `kubelet.extraConfig`, Kubernetes version), the VIP (`Layer2VIPConfig`, or
//! `machine.network.interfaces[].vip` before Talos 1.12) — and, on a control-plane node,
//! every CA key, reassembled into a [`SecretsBundle`] so that kforge-pki can issue the
//! node's certificates.
//!
//! Kernel arguments: `machine.install.extraKernelArgs`, then the space-separated
//! `kforge.dev/kernel-args` entry of `machine.nodeAnnotations` when present (where a
//! profile's arguments can be recorded for Talos ≥ 1.12, whose arguments live in the
//! installer image's schematic), then whatever the node was started with
//! (`--kernel-args`, standing in for the schematic).

use std::net::IpAddr;

use kforge_machine::nodeconfig::{self, Level, Mode};
use kforge_pki::SecretsBundle;
use kforge_secret::SecretString;
use kforge_yaml::{EmitOptions, Mapping, Value};

/// The annotation that may carry profile kernel arguments.
pub const KERNEL_ARGS_ANNOTATION: &str = "kforge.dev/kernel-args";
/// The Kubernetes version when the config names no kubelet or API server image.
pub const DEFAULT_KUBERNETES_VERSION: &str = "v1.35.0";

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineType {
    ControlPlane,
    Worker,
}

impl MachineType {
    pub fn is_control_plane(self) -> bool {
        self == MachineType::ControlPlane
    }
}

/// A parsed, validated machine config.
#[derive(Clone)]
pub struct MachineConfig {
    /// The config exactly as applied (what `/system/state/config.yaml` serves).
    pub text: SecretString,
    pub machine_type: MachineType,
    pub hostname: Option<String>,
    pub cluster_name: String,
    /// `cluster.controlPlane.endpoint`, e.g. `https://10.0.1.10:6443`.
    pub endpoint: String,
    pub os_ca_pem: String,
    pub trustd_token: SecretString,
    pub install_image: Option<String>,
    pub kernel_args: Vec<String>,
    pub sysctls: Vec<(String, String)>,
    pub cert_sans: Vec<String>,
    /// Every CA with its key; control-plane nodes only.
    pub bundle: Option<SecretsBundle>,
    /// `cluster.ca.crt`: the Kubernetes CA the kubelet trusts.
    pub k8s_ca_pem: Option<String>,
    /// `cluster.token`: the kubelet's bootstrap token (`<id>.<secret>`).
    pub bootstrap_token: Option<SecretString>,
    /// `machine.nodeLabels`.
    pub node_labels: Vec<(String, String)>,
    /// `machine.nodeTaints`: key → `value:Effect` (or `Effect`).
    pub node_taints: Vec<(String, String)>,
    /// `machine.kubelet.extraConfig` (an object, possibly empty).
    pub kubelet_extra_config: Value,
    /// `cluster.allowSchedulingOnControlPlanes`.
    pub allow_scheduling_on_control_planes: bool,
    /// From the kubelet (or API server) image tag, e.g. `v1.35.0`.
    pub kubernetes_version: String,
    /// The shared VIP of the control plane.
    pub vip: Option<IpAddr>,
    /// Validation warnings (reported by ApplyConfiguration).
    pub warnings: Vec<String>,
}

/// Why a config was refused; `Display` lists every problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_problems(.problems))]
pub struct ConfigRejected {
    pub problems: Vec<String>,
}

fn render_problems(problems: &[String]) -> String {
    let mut s = format!(
        "{} error{} occurred:",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        s.push_str("\n\t* ");
        s.push_str(p);
    }
    s
}

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, k| cur.get(k))
}

fn field_text(v: &Value, path: &str) -> Option<String> {
    get(v, path)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn decode_b64_pem(value: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The Talos minor version of a version tag (`v1.12.3` → 12).
pub fn talos_minor(tag: &str) -> Option<u64> {
    let t = tag.trim().trim_start_matches('v');
    let mut parts = t.split('.');
    let major: u64 = parts.next()?.parse().ok()?;
    let minor: u64 = parts.next()?.parse().ok()?;
    (major == 1).then_some(minor)
}

/// The tag of an image reference (`ghcr.io/x/installer:v1.12.0` → `v1.12.0`).
pub fn image_tag(image: &str) -> Option<String> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split_once(':')
        .map(|(_, tag)| tag.to_string())
        .filter(|t| !t.is_empty())
}

impl MachineConfig {
    /// Parses and validates `text` as Talos would (`Validate(mode)`), for a node running
    /// Talos `talos_minor`, plus what the simulator itself needs (the OS CA, and every CA
    /// key on a control-plane node). `extra_kernel_args` are the image's arguments.
    pub fn parse(
        text: &str,
        mode: Mode,
        talos_minor: Option<u64>,
        extra_kernel_args: &[String],
    ) -> Result<MachineConfig, ConfigRejected> {
        let reject = |problems: Vec<String>| ConfigRejected { problems };
        let nodes = kforge_yaml::parse_all(text)
            .map_err(|e| reject(vec![format!("the config is not valid YAML: {e}")]))?;
        let docs: Vec<Value> = nodes
            .iter()
            .map(kforge_yaml::Node::to_value)
            .filter(|v| !v.is_null())
            .collect();
        let findings = nodeconfig::validate(&docs, mode, talos_minor, false);
        let describe = |f: &nodeconfig::Finding| {
            if f.path.is_empty() {
                format!("document {}: {}", f.document + 1, f.message)
            } else {
                format!("document {}: {}: {}", f.document + 1, f.path, f.message)
            }
        };
        let mut problems: Vec<String> = findings
            .iter()
            .filter(|f| f.level == Level::Error)
            .map(describe)
            .collect();
        let warnings: Vec<String> = findings
            .iter()
            .filter(|f| f.level == Level::Warning)
            .map(describe)
            .collect();

        let Some(v1) = docs
            .iter()
            .find(|d| d.get("machine").is_some() || d.get("cluster").is_some())
        else {
            if problems.is_empty() {
                problems.push("no v1alpha1 document".into());
            }
            return Err(reject(problems));
        };

        let machine_type = match text_or_empty(v1, "machine.type").as_str() {
            "controlplane" | "init" => MachineType::ControlPlane,
            "worker" => MachineType::Worker,
            other => {
                problems.push(format!(
                    "machine.type `{other}` is not one of controlplane, init, worker"
                ));
                MachineType::Worker
            }
        };

        let os_ca_pem = match field_text(v1, "machine.ca.crt") {
            Some(b64) => match decode_b64_pem(&b64) {
                Some(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => pem,
                _ => {
                    problems.push("machine.ca.crt is not base64 of a PEM certificate".into());
                    String::new()
                }
            },
            None => {
                problems.push("machine.ca.crt is missing (the OS CA apid trusts)".into());
                String::new()
            }
        };
        let trustd_token = match field_text(v1, "machine.token") {
            Some(t) => SecretString::new(t),
            None => {
                problems.push("machine.token is missing (the trustd token)".into());
                SecretString::new(String::new())
            }
        };
        let cluster_name = field_text(v1, "cluster.clusterName").unwrap_or_else(|| "talos".into());
        let endpoint = field_text(v1, "cluster.controlPlane.endpoint").unwrap_or_default();

        let hostname = docs
            .iter()
            .find(|d| d.get("kind").and_then(Value::as_str) == Some("HostnameConfig"))
            .and_then(|d| field_text(d, "hostname"))
            .or_else(|| field_text(v1, "machine.network.hostname"));

        let install_image = field_text(v1, "machine.install.image");
        let mut kernel_args: Vec<String> = get(v1, "machine.install.extraKernelArgs")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(annotated) = get(v1, "machine.nodeAnnotations")
            .and_then(|a| a.get(KERNEL_ARGS_ANNOTATION))
            .and_then(Value::as_str)
        {
            kernel_args.extend(annotated.split_whitespace().map(str::to_string));
        }
        kernel_args.extend(extra_kernel_args.iter().cloned());

        let sysctls: Vec<(String, String)> = get(v1, "machine.sysctls")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let value = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let cert_sans: Vec<String> = get(v1, "machine.certSANs")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();

        let string_pairs = |path: &str| -> Vec<(String, String)> {
            get(v1, path)
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let value = match v {
                                Value::String(s) => s.clone(),
                                Value::Null => String::new(),
                                other => other.to_string(),
                            };
                            (k.clone(), value)
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let node_labels = string_pairs("machine.nodeLabels");
        let node_taints = string_pairs("machine.nodeTaints");
        let kubelet_extra_config = get(v1, "machine.kubelet.extraConfig")
            .filter(|v| v.is_object())
            .cloned()
            .unwrap_or_else(|| Value::Object(Mapping::new()));
        let allow_scheduling_on_control_planes = get(v1, "cluster.allowSchedulingOnControlPlanes")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let kubernetes_version = ["machine.kubelet.image", "cluster.apiServer.image"]
            .iter()
            .filter_map(|p| field_text(v1, p))
            .find_map(|image| image_tag(&image))
            .unwrap_or_else(|| DEFAULT_KUBERNETES_VERSION.to_string());
        let k8s_ca_pem = field_text(v1, "cluster.ca.crt").and_then(|b| decode_b64_pem(&b));
        let bootstrap_token = field_text(v1, "cluster.token").map(SecretString::new);
        let vip = vip_address(&docs, v1);

        let bundle = if machine_type.is_control_plane() {
            match control_plane_bundle(v1) {
                Ok(b) => Some(b),
                Err(mut p) => {
                    problems.append(&mut p);
                    None
                }
            }
        } else {
            None
        };

        if !problems.is_empty() {
            return Err(reject(problems));
        }
        Ok(MachineConfig {
            text: SecretString::new(text.to_string()),
            machine_type,
            hostname,
            cluster_name,
            endpoint,
            os_ca_pem,
            trustd_token,
            install_image,
            kernel_args,
            sysctls,
            cert_sans,
            bundle,
            k8s_ca_pem,
            bootstrap_token,
            node_labels,
            node_taints,
            kubelet_extra_config,
            allow_scheduling_on_control_planes,
            kubernetes_version,
            vip,
            warnings,
        })
    }

    /// The host of the cluster endpoint URL (`https://10.0.1.10:6443` → `10.0.1.10`).
    pub fn endpoint_host(&self) -> Option<String> {
        let rest = self
            .endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or(rest);
        let host = if let Some(inner) = authority.strip_prefix('[') {
            inner.split(']').next().unwrap_or(inner)
        } else {
            authority.rsplit_once(':').map_or(authority, |(h, _)| h)
        };
        (!host.is_empty()).then(|| host.to_string())
    }
}

/// The VIP: the name of a `Layer2VIPConfig` document (Talos ≥ 1.12), else the first
/// `vip.ip` of `machine.network.interfaces` (or of their VLANs).
fn vip_address(docs: &[Value], v1: &Value) -> Option<IpAddr> {
    let from_document = docs
        .iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("Layer2VIPConfig"))
        .find_map(|d| field_text(d, "name"));
    let from_interfaces = || {
        get(v1, "machine.network.interfaces")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|i| {
                let vlans = i
                    .get("vlans")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                std::iter::once(i.clone()).chain(vlans)
            })
            .find_map(|i| field_text(&i, "vip.ip"))
    };
    from_document
        .or_else(from_interfaces)
        .and_then(|ip| ip.parse().ok())
}

fn text_or_empty(v: &Value, path: &str) -> String {
    field_text(v, path).unwrap_or_default()
}

/// The secrets bundle a control-plane config embeds, in `talosctl gen secrets` layout,
/// read back through kforge-pki (which checks every certificate and key).
fn control_plane_bundle(v1: &Value) -> Result<SecretsBundle, Vec<String>> {
    let missing = std::cell::RefCell::new(Vec::new());
    let need = |path: &str| -> Value {
        match field_text(v1, path) {
            Some(s) => Value::String(s),
            None => {
                missing.borrow_mut().push(format!(
                    "{path} is missing (a control-plane node needs it to issue certificates)"
                ));
                Value::String(String::new())
            }
        }
    };
    let pair = |crt: Value, key: Value| {
        let mut m = Mapping::new();
        m.insert("crt".into(), crt);
        m.insert("key".into(), key);
        Value::Object(m)
    };
    let mut cluster = Mapping::new();
    cluster.insert("id".into(), need("cluster.id"));
    cluster.insert("secret".into(), need("cluster.secret"));
    let mut secrets = Mapping::new();
    secrets.insert("bootstraptoken".into(), need("cluster.token"));
    match (
        field_text(v1, "cluster.secretboxEncryptionSecret"),
        field_text(v1, "cluster.aescbcEncryptionSecret"),
    ) {
        (Some(s), _) => {
            secrets.insert("secretboxencryptionsecret".into(), Value::String(s));
        }
        (None, Some(s)) => {
            secrets.insert("aescbcencryptionsecret".into(), Value::String(s));
        }
        (None, None) => missing.borrow_mut().push(
            "cluster.secretboxEncryptionSecret (or aescbcEncryptionSecret) is missing".into(),
        ),
    }
    let mut trustd = Mapping::new();
    trustd.insert("token".into(), need("machine.token"));
    let mut certs = Mapping::new();
    let etcd = pair(need("cluster.etcd.ca.crt"), need("cluster.etcd.ca.key"));
    let k8s = pair(need("cluster.ca.crt"), need("cluster.ca.key"));
    let aggregator = pair(
        need("cluster.aggregatorCA.crt"),
        need("cluster.aggregatorCA.key"),
    );
    let mut sa = Mapping::new();
    sa.insert("key".into(), need("cluster.serviceAccount.key"));
    let os = pair(need("machine.ca.crt"), need("machine.ca.key"));
    certs.insert("etcd".into(), etcd);
    certs.insert("k8s".into(), k8s);
    certs.insert("k8saggregator".into(), aggregator);
    certs.insert("k8sserviceaccount".into(), Value::Object(sa));
    certs.insert("os".into(), os);
    let missing = missing.into_inner();
    if !missing.is_empty() {
        return Err(missing);
    }
    let mut root = Mapping::new();
    root.insert("cluster".into(), Value::Object(cluster));
    root.insert("secrets".into(), Value::Object(secrets));
    root.insert("trustdinfo".into(), Value::Object(trustd));
    root.insert("certs".into(), Value::Object(certs));
    let yaml = SecretString::new(kforge_yaml::to_string_with(
        &Value::Object(root),
        EmitOptions { indent: 4 },
    ));
    SecretsBundle::from_yaml(yaml.expose()).map_err(|e| {
        let problems = e.problems();
        if problems.is_empty() {
            vec![format!(
                "the config's CAs and keys do not form a valid set: {e}"
            )]
        } else {
            problems
                .iter()
                .map(|p| format!("the config's CAs and keys: {p}"))
                .collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_from_documents_and_interfaces() {
        let v1 = serde_json::json!({"machine": {"network": {"interfaces": [
            {"interface": "eth0", "vlans": [{"vlanId": 5, "vip": {"ip": "10.0.5.1"}}]}
        ]}}});
        assert_eq!(vip_address(&[], &v1), Some("10.0.5.1".parse().unwrap()));
        let doc = serde_json::json!({"apiVersion": "v1alpha1", "kind": "Layer2VIPConfig", "name": "10.0.1.10", "link": "eth0"});
        assert_eq!(vip_address(&[doc], &v1), Some("10.0.1.10".parse().unwrap()));
        assert_eq!(vip_address(&[], &serde_json::json!({})), None);
    }

    #[test]
    fn image_tags_and_minor_versions() {
        assert_eq!(
            image_tag("factory.talos.dev/metal-installer/abc:v1.12.0").as_deref(),
            Some("v1.12.0")
        );
        assert_eq!(image_tag("localhost:5000/installer").as_deref(), None);
        assert_eq!(
            image_tag("ghcr.io/siderolabs/installer:v1.13.9@sha256:00").as_deref(),
            Some("v1.13.9")
        );
        assert_eq!(talos_minor("v1.12.0"), Some(12));
        assert_eq!(talos_minor("garbage"), None);
    }

    #[test]
    fn garbage_is_rejected_with_every_problem() {
        let Err(err) = MachineConfig::parse(
            "version: v1alpha1\nmachine:\n  type: nonsense\ncluster: {}\n",
            Mode::Metal,
            Some(12),
            &[],
        ) else {
            panic!("accepted");
        };
        let text = err.to_string();
        assert!(text.contains("errors occurred:"), "{text}");
        assert!(text.contains("machine.type `nonsense`"), "{text}");
        assert!(text.contains("machine.ca.crt is missing"), "{text}");
        assert!(text.contains("machine.token is missing"), "{text}");
        let Err(err) = MachineConfig::parse("{{{", Mode::Metal, None, &[]) else {
            panic!("accepted");
        };
        assert!(err.to_string().contains("not valid YAML"), "{err}");
    }
}
