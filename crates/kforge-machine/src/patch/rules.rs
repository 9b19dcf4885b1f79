//! Where Talos's typed merge departs from "maps merge, lists append": the `merge:"replace"`
//! tags and custom `Merge` methods of the config types, written as path rules on untyped
//! documents. Upstream sources are listed in the module docs of [`super`].

/// One step of a path inside a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// `machine.network.interfaces[0].vlans`
pub(super) fn display(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        "the document root".into()
    } else {
        out
    }
}

/// How a list in the patch combines with the list in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ListRule {
    Append,
    Replace,
    MergeBy(ItemKey),
}

/// What identifies a list item for item-by-item merging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ItemKey {
    /// `interface`, else an equal `deviceSelector` (`NetworkDeviceList.Merge`).
    NetworkDevice,
    /// `vlanId` (`VlanList.Merge`).
    VlanId,
    /// `name` (`AdmissionPluginConfigList.Merge`).
    Name,
    /// `mountPath` (`ConfigFileList.Merge`).
    MountPath,
}

/// How a mapping in the patch combines with the mapping in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MapRule {
    Merge,
    Replace,
    /// Each patch entry replaces the config entry whole (`maps.Copy`).
    ReplaceEntries,
}

/// The path as keys, list positions as `*`.
fn shape(path: &[Seg]) -> Vec<&str> {
    path.iter()
        .map(|s| match s {
            Seg::Key(k) => k.as_str(),
            Seg::Index(_) => "*",
        })
        .collect()
}

pub(super) fn list_rule(kind: &str, path: &[Seg]) -> ListRule {
    let p = shape(path);
    match (kind, p.as_slice()) {
        ("v1alpha1", ["machine", "network", "interfaces"]) => {
            ListRule::MergeBy(ItemKey::NetworkDevice)
        }
        ("v1alpha1", ["machine", "network", "interfaces", "*", "vlans"]) => {
            ListRule::MergeBy(ItemKey::VlanId)
        }
        ("v1alpha1", ["cluster", "apiServer", "admissionControl"]) => {
            ListRule::MergeBy(ItemKey::Name)
        }
        ("v1alpha1", ["cluster", "network", "podSubnets" | "serviceSubnets"]) => ListRule::Replace,
        ("ExtensionServiceConfig", ["configFiles"]) => ListRule::MergeBy(ItemKey::MountPath),
        ("NetworkRuleConfig", ["ingress"] | ["portSelector", "ports"]) => ListRule::Replace,
        _ => ListRule::Append,
    }
}

pub(super) fn map_rule(kind: &str, path: &[Seg]) -> MapRule {
    let p = shape(path);
    match (kind, p.as_slice()) {
        ("v1alpha1", ["cluster", "apiServer", "auditPolicy"]) => MapRule::Replace,
        ("KubeAuditPolicyConfig", ["configuration"]) => MapRule::Replace,
        (_, [.., "extraArgs"]) => MapRule::ReplaceEntries,
        _ => MapRule::Merge,
    }
}

/// Whether the mapping at `path` is a Go map (or free-form object) rather than a struct: a
/// missing key there is a failed lookup for `$patch: delete`, while a missing struct field is
/// simply already unset.
pub(super) fn is_map_typed(kind: &str, path: &[Seg]) -> bool {
    if kind != "v1alpha1" {
        return false;
    }
    let p = shape(path);
    const MAPS: &[&[&str]] = &[
        &["machine", "nodeLabels"],
        &["machine", "nodeAnnotations"],
        &["machine", "nodeTaints"],
        &["machine", "sysctls"],
        &["machine", "sysfs"],
        &["machine", "env"],
        &["machine", "kubelet", "extraArgs"],
        &["machine", "registries", "mirrors"],
        &["machine", "registries", "config"],
        &["cluster", "extraManifestHeaders"],
    ];
    // Free-form objects (Talos `Unstructured`): every mapping inside them is a Go map.
    const FREE_FORM: &[&[&str]] = &[
        &["machine", "kubelet", "extraConfig"],
        &["machine", "kubelet", "credentialProviderConfig"],
        &["machine", "baseRuntimeSpecOverrides"],
        &["cluster", "apiServer", "auditPolicy"],
        &["cluster", "scheduler", "config"],
    ];
    if MAPS.contains(&p.as_slice()) || FREE_FORM.iter().any(|m| p.starts_with(m)) {
        return true;
    }
    matches!(p.as_slice(), ["cluster", _, "extraArgs" | "env"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Vec<Seg> {
        s.split('.')
            .map(|k| match k.parse::<usize>() {
                Ok(i) => Seg::Index(i),
                Err(_) => Seg::Key(k.to_string()),
            })
            .collect()
    }

    #[test]
    fn list_rules_follow_the_talos_types() {
        assert_eq!(
            list_rule("v1alpha1", &path("machine.network.interfaces")),
            ListRule::MergeBy(ItemKey::NetworkDevice)
        );
        assert_eq!(
            list_rule("v1alpha1", &path("machine.network.interfaces.3.vlans")),
            ListRule::MergeBy(ItemKey::VlanId)
        );
        assert_eq!(
            list_rule("v1alpha1", &path("cluster.network.podSubnets")),
            ListRule::Replace
        );
        assert_eq!(
            list_rule("v1alpha1", &path("machine.certSANs")),
            ListRule::Append
        );
        assert_eq!(
            list_rule("LinkConfig", &path("addresses")),
            ListRule::Append
        );
        assert_eq!(
            list_rule("NetworkRuleConfig", &path("portSelector.ports")),
            ListRule::Replace
        );
        assert_eq!(
            list_rule("UserVolumeConfig", &path("ingress")),
            ListRule::Append
        );
    }

    #[test]
    fn map_rules() {
        assert_eq!(
            map_rule("v1alpha1", &path("cluster.apiServer.auditPolicy")),
            MapRule::Replace
        );
        assert_eq!(
            map_rule("v1alpha1", &path("machine.kubelet.extraArgs")),
            MapRule::ReplaceEntries
        );
        assert_eq!(
            map_rule("v1alpha1", &path("machine.kubelet")),
            MapRule::Merge
        );
        assert!(is_map_typed("v1alpha1", &path("machine.nodeLabels")));
        assert!(is_map_typed(
            "v1alpha1",
            &path("cluster.apiServer.extraArgs")
        ));
        assert!(is_map_typed(
            "v1alpha1",
            &path("machine.kubelet.extraConfig.featureGates")
        ));
        assert!(!is_map_typed("v1alpha1", &path("machine.network")));
    }

    #[test]
    fn paths_display_like_yaml_paths() {
        assert_eq!(
            display(&path("machine.network.interfaces.0.vlans")),
            "machine.network.interfaces[0].vlans"
        );
        assert_eq!(display(&[]), "the document root");
    }
}
