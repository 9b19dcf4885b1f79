//! Performance profiles: named bundles of node tuning that a node or group asks for with
//! `profiles: [{name: …, <param>: …}]`. A profile declares its parameters (each with a
//! default), checks them and the node's declared `hardware:`, and returns what it adds to
//! the machine config plus any Kubernetes manifests to apply after bootstrap.
//!
//! Adding a profile: implement [`Profile`] in a module of this directory, add it to
//! [`REGISTRY`], document its parameters, and add a case under `tests/`. Nothing else in
//! kforge needs to change: rendering, validation, the JSON schema hint and `kforge up`'s
//! tuning checks all read profiles through this trait.

mod solana;

use indexmap::IndexMap;
use kforge_spec::model::Hardware;
use kforge_spec::{Cluster, Diagnostic, Path, ResolvedNode};
use kforge_yaml::{Mapping, Value};

use crate::contract::Gates;

pub use solana::SolanaValidator;

/// Every profile kforge knows.
pub static REGISTRY: &[&dyn Profile] = &[&SolanaValidator];

/// Looks a profile up by name.
pub fn find(name: &str) -> Option<&'static dyn Profile> {
    REGISTRY.iter().copied().find(|p| p.name() == name)
}

/// A parameter a profile accepts.
#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    /// The default, as YAML text.
    pub default: &'static str,
    pub doc: &'static str,
}

/// What a profile needs to know about the node it applies to.
pub struct ProfileContext<'a> {
    pub cluster: &'a Cluster,
    pub node: &'a ResolvedNode,
    pub gates: Gates,
    /// The parameters as written, without `name`.
    pub params: &'a IndexMap<String, Value>,
    /// Where this profile entry was written (`nodes[3].profiles[0]` or the group's).
    pub path: Path,
}

impl ProfileContext<'_> {
    pub fn hardware(&self) -> Option<&Hardware> {
        self.node.config.hardware.as_ref()
    }

    /// Where the node's `hardware:` (or one of its fields) was written.
    pub fn hardware_path(&self, field: &str) -> Path {
        let base = self.cluster.node_field_path(self.node, "hardware");
        if field.is_empty() {
            base
        } else {
            base.key(field)
        }
    }

    pub fn error(&self, code: &'static str, path: &Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(code, message).at(self.cluster.source.locate(path))
    }

    pub fn warning(
        &self,
        code: &'static str,
        path: &Path,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::warning(code, message).at(self.cluster.source.locate(path))
    }
}

/// What a profile adds to a node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProfileOutput {
    /// Kernel command-line arguments (through the schematic or `install.extraKernelArgs`,
    /// whichever the contract allows).
    pub kernel_args: Vec<String>,
    pub sysctls: Vec<(String, String)>,
    pub kernel_modules: Vec<String>,
    /// Merged into `machine.kubelet.extraConfig` (KubeletConfiguration fields).
    pub kubelet_config: Mapping,
    pub node_labels: Vec<(String, String)>,
    /// Extra machine-config documents (e.g. UserVolumeConfig).
    pub documents: Vec<Value>,
    /// Kubernetes objects to apply once the cluster is up (server-side apply).
    pub manifests: Vec<Value>,
    /// What `kforge up` checks on the live node to prove the tuning took.
    pub expectations: Vec<Expectation>,
}

/// A fact about a running node that a profile's tuning implies.
#[derive(Clone, Debug, PartialEq)]
pub enum Expectation {
    /// `/proc/cmdline` contains this argument.
    KernelArg(String),
    /// `HugePages_Total` in `/proc/meminfo`, for the default huge page size.
    HugePagesTotal(u64),
    /// The kubelet runs with this CPU manager policy.
    CpuManagerPolicy(String),
}

/// A performance profile.
pub trait Profile: Sync {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    fn parameters(&self) -> &'static [ParamSpec];
    /// Checks parameters and hardware, and computes the additions. Every problem is returned.
    fn apply(&self, ctx: &ProfileContext<'_>) -> Result<ProfileOutput, Vec<Diagnostic>>;
}

/// Reads a profile's parameters: every key must be declared (unknown ones get a suggestion),
/// and missing ones take their defaults.
pub fn resolve_params(
    profile: &dyn Profile,
    ctx: &ProfileContext<'_>,
) -> Result<Mapping, Vec<Diagnostic>> {
    let specs = profile.parameters();
    let mut errors = Vec::new();
    for key in ctx.params.keys() {
        if !specs.iter().any(|s| s.name == key) {
            // Point at the key: it is the key that is wrong, not its value.
            let mut d = Diagnostic::error(
                "profile-param",
                format!("profile `{}` has no parameter `{key}`", profile.name()),
            )
            .at(ctx.cluster.source.locate_key(&ctx.path.key(key.clone())))
            .label("unknown parameter");
            d = match kforge_spec::decode::suggest(key, specs.iter().map(|s| s.name)) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!(
                    "its parameters are {}",
                    specs
                        .iter()
                        .map(|s| format!("`{}`", s.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            };
            errors.push(d);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut out = Mapping::new();
    for s in specs {
        let v = match ctx.params.get(s.name) {
            Some(v) => v.clone(),
            None => kforge_yaml::parse(s.default)
                .map(|n| n.to_value())
                .unwrap_or(Value::Null),
        };
        out.insert(s.name.to_string(), v);
    }
    Ok(out)
}

/// Runs every profile a node asks for, collecting all problems.
pub fn apply_all(
    cluster: &Cluster,
    node: &ResolvedNode,
    gates: Gates,
) -> Result<Vec<ProfileOutput>, Vec<Diagnostic>> {
    let mut outputs = Vec::new();
    let mut errors = Vec::new();
    let base = cluster.node_field_path(node, "profiles");
    for (i, p) in node.config.profiles.iter().flatten().enumerate() {
        let path = base.index(i);
        let Some(name) = p.name.as_deref() else {
            errors.push(
                Diagnostic::error("profile", "profile entry needs a `name`")
                    .at(cluster.source.locate(&path)),
            );
            continue;
        };
        let Some(profile) = find(name) else {
            let known: Vec<&str> = REGISTRY.iter().map(|p| p.name()).collect();
            let mut d = Diagnostic::error("profile", format!("unknown profile `{name}`"))
                .at(cluster.source.locate(&path.key("name")));
            d = match kforge_spec::decode::suggest(name, known.iter().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!("known profiles: {}", known.join(", "))),
            };
            errors.push(d);
            continue;
        };
        let ctx = ProfileContext {
            cluster,
            node,
            gates,
            params: &p.params,
            path,
        };
        match profile.apply(&ctx) {
            Ok(o) => outputs.push(o),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(outputs)
    } else {
        Err(errors)
    }
}
