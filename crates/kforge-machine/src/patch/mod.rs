//! Machine-config patches: loading patch texts (strategic merge or RFC 6902 JSON patch, detected
//! the way Talos `configpatcher.LoadPatch` does) and applying them in order to a node's documents
//! with Talos's merge semantics.
//!
//! A machine config is a list of documents: the v1alpha1 document (`version: v1alpha1`, no
//! `kind`) and typed documents (`apiVersion: v1alpha1`, `kind: X`, and `name` for named kinds).
//!
//! # Strategic merge rules
//!
//! Facts from siderolabs/talos `pkg/machinery/config/` (v1.12–v1.14), reimplemented on
//! untyped values with the type knowledge written down as path rules:
//!
//! * Documents (`configpatcher/strategic.go`): patch documents are matched to config documents
//!   by (apiVersion, kind, name); a match is merged, anything else is appended. The v1alpha1
//!   patch document merges into the v1alpha1 document.
//! * Values (`merge/merge.go`):
//!   - mappings merge key by key, recursively; a key missing (or null) in the config takes the
//!     patch value;
//!   - scalars replace, except that an empty string and the number 0 never replace an existing
//!     value (Go zero values are "not set"); `false` always replaces;
//!   - null in a patch never changes anything (a nil pointer/slice/map is "not set");
//!   - lists append the patch items to the config items, except where a rule below says
//!     otherwise; an empty list `[]` leaves an existing list alone;
//!   - a list and a mapping (or a scalar) at the same place is a type mismatch error.
//! * Lists replaced instead of appended (`merge:"replace"` struct tags):
//!   - v1alpha1 `cluster.network.podSubnets`, `cluster.network.serviceSubnets`
//!     (`types/v1alpha1/v1alpha1_types.go`, `ClusterNetworkConfig`);
//!   - NetworkRuleConfig `ingress` and `portSelector.ports` (`types/network/rule_config.go`).
//! * Mappings replaced as a whole (`merge:"replace"`): v1alpha1 `cluster.apiServer.auditPolicy`
//!   (`APIServerConfig.AuditPolicyConfig`); KubeAuditPolicyConfig `configuration` (1.14,
//!   `types/k8s`).
//! * Lists merged item by item (custom `Merge` methods); an item that matches an existing
//!   item is merged into it, others are appended:
//!   - v1alpha1 `machine.network.interfaces` (`NetworkDeviceList.Merge`,
//!     `v1alpha1_types.go`): by `interface` when the patch item names one, else by an equal
//!     `deviceSelector`;
//!   - `machine.network.interfaces[].vlans` (`VlanList.Merge`): by `vlanId`;
//!   - `cluster.apiServer.admissionControl` (`AdmissionPluginConfigList.Merge`): by `name`;
//!   - ExtensionServiceConfig `configFiles` (`ConfigFileList.Merge` of the extension service
//!     config type): by `mountPath`.
//! * `extraArgs` mappings (`meta.Args.Merge`, `types/meta/args.go`, Talos ≥ 1.13): each key
//!   of the patch replaces the config's value for that key whole (`maps.Copy`): a list value
//!   replaces a list, an empty string replaces too. (Talos 1.12 merged these
//!   `map[string]string`s key by key with the scalar rule above; the two differ only for
//!   empty-string values.) `extraArgs` lists (flannel) append.
//! * Lists not named above append: `certSANs`, nameservers, routes, addresses, `extraKernelArgs`,
//!   `LinkConfig` addresses and routes, …
//!
//! # `$patch: delete`
//!
//! From `configloader/internal/decoder/delete.go` and `selector.go`. The deletions of a patch
//! run before its merges:
//! * a document whose root mapping has `$patch: delete` deletes the matching document (needs
//!   `apiVersion` and `kind`; the v1alpha1 document cannot be deleted);
//! * `key: {$patch: delete}` deletes `key` (a field or a map entry) from the matching
//!   document; a missing parent is an error ("lookup failed"), and so is a missing entry of
//!   a map-typed field (`nodeLabels`, `extraArgs`, …);
//! * a list item `{k: v, $patch: delete}` deletes the first config item whose `k` equals `v`
//!   (the first key other than `$patch` selects); no match is an error;
//! * a deleted key inside a list item, or a list item inside a list item, is an error;
//! * whatever is left of the patch document is merged as usual; a patch document left with
//!   nothing but `version`/`kind`/`name` is dropped.
//!
//! Not reproduced: Talos's encoder drops fields left empty (`nodeLabels: {}` after deleting
//! the last label stays in the result here), and nulls inside free-form objects are dropped
//! rather than kept.
//!
//! # JSON patches
//!
//! RFC 6902 patches (a list of `{op, path, value, from}`; `configpatcher/json6902.go`) apply
//! only when the config is a single document; otherwise the error shows the equivalent
//! strategic merge patch where one exists.

mod delete;
mod json6902;
mod load;
mod merge;
mod rules;

use std::fmt;

use kforge_yaml::Node;
use serde_json::Value;

/// A loaded patch: where it came from and what it does.
#[derive(Clone, Debug)]
pub struct Patch {
    label: String,
    kind: PatchKind,
}

#[derive(Clone, Debug)]
enum PatchKind {
    Empty,
    Strategic(StrategicPatch),
    Json6902(Vec<json6902::Operation>),
}

#[derive(Clone, Debug)]
struct StrategicPatch {
    deletes: Vec<delete::DeleteSelector>,
    documents: Vec<PatchDocument>,
}

#[derive(Clone, Debug)]
struct PatchDocument {
    id: DocumentId,
    node: Node,
}

/// The format a patch text was detected as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchFormat {
    /// Whitespace, comments or empty documents only: applying it changes nothing.
    Empty,
    /// Strategic merge patch, one or more documents.
    StrategicMerge,
    /// RFC 6902 JSON patch.
    Json6902,
}

impl Patch {
    /// Loads a patch text. `label` names the patch in every error (e.g. `patch @patches/a.yaml`
    /// or `inline patch #2 of node cp1`); positions in errors are lines and columns of `text`.
    pub fn parse(label: impl Into<String>, text: &str) -> Result<Patch, PatchError> {
        let label = label.into();
        let kind = load::parse(&label, text)?;
        Ok(Patch { label, kind })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn format(&self) -> PatchFormat {
        match self.kind {
            PatchKind::Empty => PatchFormat::Empty,
            PatchKind::Strategic(_) => PatchFormat::StrategicMerge,
            PatchKind::Json6902(_) => PatchFormat::Json6902,
        }
    }
}

/// Applies `patches` in order to the documents of a machine config.
pub fn apply_patches(config: Vec<Value>, patches: &[Patch]) -> Result<Vec<Value>, PatchError> {
    patches.iter().try_fold(config, apply_patch)
}

/// Applies one patch to the documents of a machine config.
pub fn apply_patch(mut config: Vec<Value>, patch: &Patch) -> Result<Vec<Value>, PatchError> {
    match &patch.kind {
        PatchKind::Empty => Ok(config),
        PatchKind::Json6902(ops) => json6902::apply(&patch.label, config, ops),
        PatchKind::Strategic(smp) => {
            for sel in &smp.deletes {
                delete::apply(&mut config, sel).map_err(|message| PatchError::Apply {
                    label: patch.label.clone(),
                    line: sel.at.line,
                    column: sel.at.col,
                    message,
                })?;
            }
            for doc in &smp.documents {
                match config.iter().position(|d| DocumentId::of(d) == doc.id) {
                    Some(i) => merge::merge_document(&mut config[i], &doc.node, &doc.id.kind)
                        .map_err(|e| PatchError::Apply {
                            label: patch.label.clone(),
                            line: e.at.line,
                            column: e.at.col,
                            message: format!("document {}: {}", doc.id, e.message),
                        })?,
                    None => config.push(merge::insert_value(&doc.node)),
                }
            }
            Ok(config)
        }
    }
}

/// What identifies a document for matching: (apiVersion, kind, name). The v1alpha1 document
/// has an empty apiVersion and the kind `v1alpha1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentId {
    pub api_version: String,
    pub kind: String,
    pub name: Option<String>,
}

impl DocumentId {
    /// The identity of a config document.
    pub fn of(doc: &Value) -> DocumentId {
        let text = |k: &str| doc.get(k).and_then(scalar_text);
        match text("kind") {
            Some(kind) => DocumentId {
                api_version: text("apiVersion").unwrap_or_default(),
                kind,
                name: text("name"),
            },
            None => DocumentId::v1alpha1(),
        }
    }

    pub fn v1alpha1() -> DocumentId {
        DocumentId {
            api_version: String::new(),
            kind: "v1alpha1".into(),
            name: None,
        }
    }

    pub fn is_v1alpha1(&self) -> bool {
        self.api_version.is_empty() && self.kind == "v1alpha1"
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_v1alpha1() {
            return f.write_str("v1alpha1");
        }
        write!(f, "{}/{}", self.api_version, self.kind)?;
        if let Some(name) = &self.name {
            write!(f, " {name:?}")?;
        }
        Ok(())
    }
}

/// The text of a scalar as Go would compare it (`fmt` of the decoded value).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One problem found in a patch text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} problems:", many.len())?;
                for p in many {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

/// A patch that cannot be loaded or applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch text is not a valid patch; every problem found is listed.
    #[error("{label}: {}", Problems(problems))]
    Invalid {
        label: String,
        problems: Vec<Problem>,
    },
    /// A JSON patch given for a config of several documents.
    #[error(
        "{label}: JSON6902 patches are not supported for multi-document machine configuration \
         (this config has {documents} documents)\n{hint}"
    )]
    Json6902MultiDocument {
        label: String,
        documents: usize,
        hint: String,
    },
    /// A JSON patch operation that does not apply.
    #[error(
        "{label}: operation #{index} `{op} {path}` (line {line}, column {column}) failed: {reason}"
    )]
    Json6902Operation {
        label: String,
        index: usize,
        op: String,
        path: String,
        line: usize,
        column: usize,
        reason: String,
    },
    /// A strategic merge patch that does not apply to this config (type mismatch, nothing to
    /// delete, …).
    #[error("{label}: line {line}, column {column}: {message}")]
    Apply {
        label: String,
        line: usize,
        column: usize,
        message: String,
    },
}

impl PatchError {
    /// The label of the patch the error is about.
    pub fn label(&self) -> &str {
        match self {
            PatchError::Invalid { label, .. }
            | PatchError::Json6902MultiDocument { label, .. }
            | PatchError::Json6902Operation { label, .. }
            | PatchError::Apply { label, .. } => label,
        }
    }
}
