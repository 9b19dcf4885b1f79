//! The resource types the simulated API server serves: the built-in kinds of a current
//! Kubernetes (a table below), plus the kinds of every CustomResourceDefinition stored in
//! etcd. Discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`) are
//! rendered from the same information, so what discovery lists is what the server serves.

use serde_json::{Value, json};

/// One resource type (`priorityclasses` in `scheduling.k8s.io/v1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    /// Plural lower-case name, the path segment.
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// Whether it has a `status` subresource (status is written there, not through the
    /// main resource).
    pub status_subresource: bool,
}

impl ResourceType {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `nodes` or `priorityclasses.scheduling.k8s.io` (as Kubernetes names resources in
    /// messages).
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Where objects of this type live in etcd: `/registry/<group>/<plural>/`, the core
    /// group being `core`.
    pub fn storage_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The etcd key of one object.
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/{name}", self.storage_prefix()),
            _ => format!("{}{name}", self.storage_prefix()),
        }
    }

    /// The entries of an APIResourceList for this type (the resource and its status
    /// subresource).
    fn discovery_entries(&self) -> Vec<Value> {
        let mut out = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            "shortNames": self.short_names,
            "storageVersionHash": storage_version_hash(self),
        })];
        if self.short_names.is_empty()
            && let Some(o) = out[0].as_object_mut()
        {
            o.remove("shortNames");
        }
        if self.status_subresource {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }
}

/// A stable short hash of the type (kubectl only compares it).
fn storage_version_hash(r: &ResourceType) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{}/{}/{}", r.group, r.version, r.kind));
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

// group, version, plural, kind, namespaced, short names, status subresource
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    bool,
);

const BUILT_IN: &[Row] = &[
    ("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
    ("", "v1", "endpoints", "Endpoints", true, &["ep"], false),
    ("", "v1", "events", "Event", true, &["ev"], false),
    (
        "",
        "v1",
        "limitranges",
        "LimitRange",
        true,
        &["limits"],
        false,
    ),
    ("", "v1", "namespaces", "Namespace", false, &["ns"], true),
    ("", "v1", "nodes", "Node", false, &["no"], true),
    (
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        true,
    ),
    (
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        false,
        &["pv"],
        true,
    ),
    ("", "v1", "pods", "Pod", true, &["po"], true),
    ("", "v1", "podtemplates", "PodTemplate", true, &[], false),
    (
        "",
        "v1",
        "replicationcontrollers",
        "ReplicationController",
        true,
        &["rc"],
        true,
    ),
    (
        "",
        "v1",
        "resourcequotas",
        "ResourceQuota",
        true,
        &["quota"],
        true,
    ),
    ("", "v1", "secrets", "Secret", true, &[], false),
    (
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        &["sa"],
        false,
    ),
    ("", "v1", "services", "Service", true, &["svc"], true),
    (
        "apps",
        "v1",
        "controllerrevisions",
        "ControllerRevision",
        true,
        &[],
        false,
    ),
    ("apps", "v1", "daemonsets", "DaemonSet", true, &["ds"], true),
    (
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        &["deploy"],
        true,
    ),
    (
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        true,
        &["rs"],
        true,
    ),
    (
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        true,
        &["sts"],
        true,
    ),
    (
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
        true,
    ),
    ("batch", "v1", "cronjobs", "CronJob", true, &["cj"], true),
    ("batch", "v1", "jobs", "Job", true, &[], true),
    (
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "CertificateSigningRequest",
        false,
        &["csr"],
        true,
    ),
    (
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        &[],
        false,
    ),
    (
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
        &[],
        false,
    ),
    (
        "networking.k8s.io",
        "v1",
        "ingressclasses",
        "IngressClass",
        false,
        &[],
        false,
    ),
    (
        "networking.k8s.io",
        "v1",
        "ingresses",
        "Ingress",
        true,
        &["ing"],
        true,
    ),
    (
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        true,
        &["netpol"],
        false,
    ),
    (
        "node.k8s.io",
        "v1",
        "runtimeclasses",
        "RuntimeClass",
        false,
        &[],
        false,
    ),
    (
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        &[],
        false,
    ),
    (
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "PriorityClass",
        false,
        &["pc"],
        false,
    ),
    (
        "storage.k8s.io",
        "v1",
        "csidrivers",
        "CSIDriver",
        false,
        &[],
        false,
    ),
    (
        "storage.k8s.io",
        "v1",
        "csinodes",
        "CSINode",
        false,
        &[],
        false,
    ),
    (
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "StorageClass",
        false,
        &["sc"],
        false,
    ),
    (
        "storage.k8s.io",
        "v1",
        "volumeattachments",
        "VolumeAttachment",
        false,
        &[],
        true,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        false,
        &[],
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        false,
        &[],
        false,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        true,
    ),
];

/// The built-in types.
pub fn built_in() -> Vec<ResourceType> {
    BUILT_IN
        .iter()
        .map(
            |&(group, version, plural, kind, namespaced, short, status)| ResourceType {
                group: group.into(),
                version: version.into(),
                plural: plural.into(),
                singular: kind.to_ascii_lowercase(),
                kind: kind.into(),
                namespaced,
                short_names: short.iter().map(|s| s.to_string()).collect(),
                status_subresource: status,
            },
        )
        .collect()
}

/// The built-in type `plural` of `group`/`version`.
pub fn built_in_type(group: &str, version: &str, plural: &str) -> Option<ResourceType> {
    built_in()
        .into_iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The CustomResourceDefinition type (where CRDs are stored).
pub fn crd_type() -> ResourceType {
    ResourceType {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        plural: "customresourcedefinitions".into(),
        singular: "customresourcedefinition".into(),
        kind: "CustomResourceDefinition".into(),
        namespaced: false,
        short_names: vec!["crd".into(), "crds".into()],
        status_subresource: true,
    }
}

/// The served types a stored CustomResourceDefinition defines (one per served version).
pub fn types_of_crd(crd: &Value) -> Vec<ResourceType> {
    let text = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let group = text("/spec/group");
    let plural = text("/spec/names/plural");
    let kind = text("/spec/names/kind");
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    let singular = match text("/spec/names/singular") {
        "" => kind.to_ascii_lowercase(),
        s => s.to_string(),
    };
    let namespaced = text("/spec/scope") != "Cluster";
    let short_names: Vec<String> = crd
        .pointer("/spec/names/shortNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(true))
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .map(|version| ResourceType {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            singular: singular.clone(),
            kind: kind.to_string(),
            namespaced,
            short_names: short_names.clone(),
            status_subresource: false,
        })
        .collect()
}

/// `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ]
    })
}

fn group_versions(types: &[ResourceType]) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, versions)) => {
                if !versions.contains(&t.version) {
                    versions.push(t.version.clone());
                }
            }
            None => groups.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    groups
}

fn api_group(group: &str, versions: &[String]) -> Value {
    let gv = |v: &String| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    json!({
        "name": group,
        "versions": versions.iter().map(gv).collect::<Vec<_>>(),
        "preferredVersion": versions.first().map(gv).unwrap_or(Value::Null),
    })
}

/// `/apis`: every named group of `types`.
pub fn api_group_list(types: &[ResourceType]) -> Value {
    let groups: Vec<Value> = group_versions(types)
        .iter()
        .map(|(g, v)| api_group(g, v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`, when `types` has that group.
pub fn api_group_doc(types: &[ResourceType], group: &str) -> Option<Value> {
    group_versions(types)
        .into_iter()
        .find(|(g, _)| g == group)
        .map(|(g, v)| {
            let mut doc = api_group(&g, &v);
            if let Some(o) = doc.as_object_mut() {
                o.insert("kind".into(), json!("APIGroup"));
                o.insert("apiVersion".into(), json!("v1"));
            }
            doc
        })
}

/// `/api/v1` or `/apis/<group>/<version>`, when `types` has that group version.
pub fn api_resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let matching: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    let first = matching.first()?;
    let resources: Vec<Value> = matching
        .iter()
        .flat_map(|t| t.discovery_entries())
        .collect();
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": first.api_version(),
        "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_names() {
        let node = built_in_type("", "v1", "nodes").unwrap();
        assert_eq!(node.storage_key(None, "w-1"), "/registry/core/nodes/w-1");
        assert_eq!(node.api_version(), "v1");
        let cm = built_in_type("", "v1", "configmaps").unwrap();
        assert_eq!(
            cm.storage_key(Some("default"), "x"),
            "/registry/core/configmaps/default/x"
        );
        let pc = built_in_type("scheduling.k8s.io", "v1", "priorityclasses").unwrap();
        assert_eq!(pc.qualified_plural(), "priorityclasses.scheduling.k8s.io");
        assert_eq!(
            pc.storage_key(None, "solana-critical"),
            "/registry/scheduling.k8s.io/priorityclasses/solana-critical"
        );
    }

    #[test]
    fn discovery_documents() {
        let types = built_in();
        let core = api_resource_list(&types, "", "v1").unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"nodes") && names.contains(&"nodes/status"));
        assert_eq!(core["groupVersion"], "v1");
        let groups = api_group_list(&types);
        assert!(
            groups["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == "scheduling.k8s.io"
                    && g["preferredVersion"]["groupVersion"] == "scheduling.k8s.io/v1")
        );
        assert!(api_resource_list(&types, "nope.io", "v1").is_none());
        assert_eq!(api_group_doc(&types, "apps").unwrap()["kind"], "APIGroup");
    }

    #[test]
    fn crd_types() {
        let crd = json!({
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [{"name": "v1", "served": true}, {"name": "v0", "served": false}]
            }
        });
        let t = types_of_crd(&crd);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].api_version(), "example.com/v1");
        assert_eq!(t[0].singular, "widget");
        assert!(t[0].namespaced);
    }
}
