//! Loading a cluster file: read, substitute environment variables, parse with positions,
//! decode (collecting every type error and unknown key), merge group settings into nodes.
//! Validation of the result lives in [`crate::validate`].

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};

use kforge_yaml::Limits;
use serde::Serialize;

use crate::decode::{self, IssueKind};
use crate::diagnostic::{Diagnostic, LineIndex, Location, SourceFile, SourceMap};
use crate::env::{self, Env};
use crate::model::{ClusterFile, InstallDiskSelector, NodeGroup, NodeSpec};
use crate::path::Path;

/// Reads the files a cluster references. The CLI's implementation decrypts SOPS files
/// transparently; tests use an in-memory one.
pub trait SourceReader {
    /// The text of `path`, or a message saying why it cannot be read.
    fn read(&self, path: &FsPath) -> Result<String, String>;
    fn exists(&self, path: &FsPath) -> bool;
}

/// How to load.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Env files given with `-e`; when empty, `talenv.yaml`, `talenv.sops.yaml`, `talenv.yml`
    /// and `talenv.sops.yml` next to the cluster file are read if they exist.
    pub env_files: Vec<PathBuf>,
    /// Skip environment substitution.
    pub no_substitute: bool,
    /// Unknown keys are errors instead of warnings.
    pub strict: bool,
}

/// The default env files, read in this order when present.
pub const DEFAULT_ENV_FILES: &[&str] = &[
    "talenv.yaml",
    "talenv.sops.yaml",
    "talenv.yml",
    "talenv.sops.yml",
];

/// The largest cluster file kforge reads.
pub const MAX_CLUSTER_FILE_BYTES: usize = 16 << 20;

/// A loaded cluster: the file as decoded, where it came from, and its nodes with group
/// settings merged in.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub file: ClusterFile,
    pub source: SourceFile,
    /// Directory of the cluster file; `@file` references are relative to it.
    pub base_dir: PathBuf,
    pub env: Env,
    pub nodes: Vec<ResolvedNode>,
    /// Paths whose values could not be decoded; checks skip them rather than report a
    /// second problem about the default that stands in.
    pub undecodable: Vec<Path>,
}

/// A node after group → node merge.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedNode {
    /// Position in `nodes:`.
    pub index: usize,
    pub hostname: String,
    /// `ipAddress` split at commas.
    pub ip_addresses: Vec<String>,
    pub control_plane: bool,
    pub install_disk: Option<String>,
    pub install_disk_selector: Option<InstallDiskSelector>,
    pub ignore_hostname: bool,
    /// Group settings merged with the node's own.
    pub config: NodeGroup,
}

impl ResolvedNode {
    pub fn role(&self) -> &'static str {
        if self.control_plane {
            "controlplane"
        } else {
            "worker"
        }
    }

    pub fn group_key(&self) -> &'static str {
        if self.control_plane {
            "controlPlane"
        } else {
            "worker"
        }
    }

    pub fn path(&self) -> Path {
        Path::root().key("nodes").index(self.index)
    }
}

impl Cluster {
    /// Where a node's setting was written: on the node if it sets it, else in its group.
    pub fn node_field_path(&self, node: &ResolvedNode, key: &str) -> Path {
        let own = node.path().key(key);
        if self.source.node(&own).is_some() {
            return own;
        }
        let group = Path::root().key(node.group_key()).key(key);
        if self.source.node(&group).is_some() {
            group
        } else {
            own
        }
    }

    /// Where the `i`-th of a node's merged patches was written: group patches come first
    /// (unless the node sets `overridePatches`), then the node's own.
    pub fn node_patch_path(&self, node: &ResolvedNode, i: usize) -> Path {
        let spec = self.file.nodes.as_deref().and_then(|n| n.get(node.index));
        let group = if node.control_plane {
            &self.file.control_plane
        } else {
            &self.file.worker
        };
        let overridden = spec.and_then(|s| s.override_patches).unwrap_or(false);
        let group_count = if overridden {
            0
        } else {
            group
                .as_ref()
                .and_then(|g| g.patches.as_ref())
                .map_or(0, Vec::len)
        };
        if i < group_count {
            Path::root().key(node.group_key()).key("patches").index(i)
        } else {
            node.path().key("patches").index(i - group_count)
        }
    }

    /// Resolves an `@file` reference relative to the cluster file's directory.
    pub fn file_ref(&self, value: &str) -> Option<PathBuf> {
        value
            .strip_prefix('@')
            .map(|p| self.base_dir.join(p.trim()))
    }

    pub fn name(&self) -> &str {
        self.file.cluster_name.as_deref().unwrap_or("")
    }
}

/// The outcome of loading: the cluster when it could be built, and every diagnostic.
#[derive(Debug)]
pub struct Loaded {
    pub cluster: Option<Cluster>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Loads the cluster file at `path`.
pub fn load(
    path: &FsPath,
    opts: &LoadOptions,
    reader: &dyn SourceReader,
    process_env: HashMap<String, String>,
) -> Loaded {
    let mut diagnostics = Vec::new();
    let fail = |d: Vec<Diagnostic>| Loaded {
        cluster: None,
        diagnostics: d,
    };

    let text = match reader.read(path) {
        Ok(t) => t,
        Err(why) => {
            let d = Diagnostic::error(
                "read",
                format!("cannot read cluster file {}: {why}", path.display()),
            );
            return fail(vec![if reader.exists(path) {
                d
            } else {
                d.help("pass the cluster file with -c/--config-file")
            }]);
        }
    };
    if text.len() > MAX_CLUSTER_FILE_BYTES {
        return fail(vec![Diagnostic::error(
            "too-large",
            format!(
                "cluster file {} is {} bytes; kforge reads cluster files up to {} bytes",
                path.display(),
                text.len(),
                MAX_CLUSTER_FILE_BYTES
            ),
        )]);
    }
    // A byte-order mark is not part of the text: editors do not count it as a column.
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    };
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return fail(vec![
            Diagnostic::error(
                "empty",
                format!("the cluster file {} is empty", path.display()),
            )
            .help("a cluster file needs at least `clusterName`, `kubernetesVersion`, `endpoint` and `nodes`; see the examples/ directory"),
        ]);
    }
    let base_dir = path.parent().map(FsPath::to_path_buf).unwrap_or_default();

    // Environment.
    let mut environment = Env::new(process_env);
    let env_files: Vec<(PathBuf, bool)> = if opts.env_files.is_empty() {
        DEFAULT_ENV_FILES
            .iter()
            .map(|f| (base_dir.join(f), false))
            .collect()
    } else {
        opts.env_files.iter().map(|f| (f.clone(), true)).collect()
    };
    if !opts.no_substitute {
        for (file, explicit) in &env_files {
            if !reader.exists(file) {
                if *explicit {
                    diagnostics.push(
                        Diagnostic::error(
                            "env-file",
                            format!("env file {} does not exist", file.display()),
                        )
                        .help("check the path given with -e/--env-file (relative to the current directory)"),
                    );
                }
                continue;
            }
            match reader.read(file) {
                Ok(t) => {
                    if let Err(mut errs) = environment.load_file(file, &t) {
                        diagnostics.append(&mut errs);
                    }
                }
                Err(why) => diagnostics.push(Diagnostic::error(
                    "env-file",
                    format!("cannot read env file {}: {why}", file.display()),
                )),
            }
        }
    }

    let lines = LineIndex::new(&text);
    let (parsed_text, map) = if opts.no_substitute {
        (text.clone(), SourceMap::identity())
    } else {
        match env::substitute(&text, path, &environment) {
            Ok(s) => (s.text, s.map),
            Err(mut errs) => {
                diagnostics.append(&mut errs);
                return fail(diagnostics);
            }
        }
    };
    if diagnostics.iter().any(Diagnostic::is_error) {
        return fail(diagnostics);
    }

    let limits = Limits {
        max_bytes: MAX_CLUSTER_FILE_BYTES * 2,
        ..Limits::default()
    };
    let root = match kforge_yaml::parse_all_with(&parsed_text, limits) {
        Ok(mut docs) if docs.len() <= 1 => docs.pop().unwrap_or(kforge_yaml::Node {
            value: kforge_yaml::NodeValue::Null,
            span: Default::default(),
            raw: None,
        }),
        Ok(docs) => {
            let source = SourceFile {
                path: path.to_path_buf(),
                lines,
                map,
                root: docs[0].clone(),
            };
            let loc = source.locate_span(docs[1].span);
            diagnostics.push(
                Diagnostic::error("yaml", "the cluster file holds more than one YAML document")
                    .at(Some(loc))
                    .help("put the whole cluster in one document; remove the `---` separator"),
            );
            return fail(diagnostics);
        }
        Err(e) => {
            let start = map.original(e.pos.index);
            let loc = lines.location(path, start, start + 1);
            diagnostics.push(match tab_indent_near(&text, loc.line) {
                Some((line, col)) => {
                    Diagnostic::error("yaml", "invalid YAML: a tab indents this line")
                        .at(Some(Location::in_line(
                            path,
                            line,
                            col,
                            1,
                            lines.line_text(line),
                        )))
                        .label("YAML indents with spaces only")
                        .note(format!(
                            "the YAML parser reports: {} (line {})",
                            e.message, loc.line
                        ))
                        .help("replace the tabs at the start of the line with spaces")
                }
                None => {
                    let at_end = start >= text.chars().count().saturating_sub(1);
                    let d = Diagnostic::error("yaml", format!("invalid YAML: {}", e.message))
                        .at(Some(loc));
                    if at_end {
                        d.label("the file ends here")
                            .help("something opened earlier (`[`, `{` or a quote) is never closed")
                    } else {
                        d
                    }
                }
            });
            return fail(diagnostics);
        }
    };
    let source = SourceFile {
        path: path.to_path_buf(),
        lines,
        map,
        root,
    };
    if !matches!(
        source.root.value,
        kforge_yaml::NodeValue::Map(_) | kforge_yaml::NodeValue::Null
    ) {
        diagnostics.push(
            Diagnostic::error(
                "type",
                format!(
                    "the cluster file must be a mapping, found {}",
                    source.root.type_name()
                ),
            )
            .at(Some(source.locate_span(source.root.span))),
        );
        return fail(diagnostics);
    }

    let (file, issues) = decode::decode::<ClusterFile>(&source.root, Path::root());
    let undecodable: Vec<Path> = issues
        .iter()
        .filter(|i| !matches!(i.kind, IssueKind::UnknownKey { .. }))
        .map(|i| i.path.clone())
        .collect();
    for issue in issues {
        let d = match issue.kind {
            IssueKind::Type { expected, found } => {
                Diagnostic::error("type", format!("`{}` must be {expected}", issue.path))
                    .at(Some(source.locate_span(issue.span)))
                    .label(format!("found {found}"))
            }
            IssueKind::UnknownKey { key, suggestion } => {
                let d = if opts.strict {
                    Diagnostic::error("unknown-key", "")
                } else {
                    Diagnostic::warning("unknown-key", "")
                };
                let d = Diagnostic {
                    message: format!("unknown key `{key}` {}", parent_of(&issue.path)),
                    ..d
                }
                .at(Some(source.locate_span(issue.span)))
                .label("not a cluster-file field");
                match suggestion {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None if opts.strict => d.help(
                        "remove it, or check the spelling against the schema (`kforge schema`)",
                    ),
                    None => d.help("kforge ignores it (use --strict to make unknown keys errors)"),
                }
            }
            IssueKind::Other(msg) => {
                Diagnostic::error("decode", msg).at(Some(source.locate_span(issue.span)))
            }
        };
        diagnostics.push(d);
    }

    let nodes = merge_nodes(&file);
    let cluster = Cluster {
        file,
        source,
        base_dir,
        env: environment,
        nodes,
        undecodable,
    };
    Loaded {
        cluster: Some(cluster),
        diagnostics,
    }
}

/// The first line within one line of `line` whose indentation holds a tab, and the column
/// of that tab. The YAML parser often reports such a line at the end of the line before.
fn tab_indent_near(text: &str, line: usize) -> Option<(usize, usize)> {
    text.split('\n')
        .enumerate()
        .skip(line.saturating_sub(2))
        .take(3)
        .find_map(|(i, l)| {
            let indent: String = l.chars().take_while(|c| *c == ' ' || *c == '\t').collect();
            let rest = &l[indent.len()..];
            let has_content = !rest.trim().is_empty() && !rest.starts_with('#');
            let tab = indent.find('\t')?;
            has_content.then_some((i + 1, tab + 1))
        })
}

/// "in `nodes[0]`", or "at the top level".
fn parent_of(path: &Path) -> String {
    let mut p = path.clone();
    p.0.pop();
    if p.0.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in `{p}`")
    }
}

/// talhelper's group → node merge (`pkg/config/nodeconfigs.go`): `patches` are the group's
/// followed by the node's (unless `overridePatches`); `extraManifests` and `certSANs` are the
/// node's followed by the group's (unless overridden); every other field is the node's value
/// when it is set and not a zero value (Go semantics: `false`, `""`, empty), else the group's.
pub fn merge_nodes(file: &ClusterFile) -> Vec<ResolvedNode> {
    let empty = NodeGroup::default();
    file.nodes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let control_plane = node.control_plane.unwrap_or(false);
            let group = if control_plane {
                file.control_plane.as_ref()
            } else {
                file.worker.as_ref()
            }
            .unwrap_or(&empty);
            ResolvedNode {
                index,
                hostname: node.hostname.clone().unwrap_or_default(),
                ip_addresses: split_ips(node.ip_address.as_deref().unwrap_or("")),
                control_plane,
                install_disk: node.install_disk.clone().filter(|s| !s.is_empty()),
                install_disk_selector: node.install_disk_selector.clone(),
                ignore_hostname: node.ignore_hostname.unwrap_or(false),
                config: merge_configs(node, group),
            }
        })
        .collect()
}

fn merge_configs(node: &NodeSpec, group: &NodeGroup) -> NodeGroup {
    let mut merged = node.configs();
    // Zero values count as unset, as in Go.
    clear_zero_values(&mut merged);
    let own_patches = merged.patches.take();
    let own_manifests = merged.extra_manifests.take();
    let own_sans = merged.cert_sans.take();
    merged.inherit(group);
    merged.patches = if node.override_patches.unwrap_or(false) {
        own_patches
    } else {
        concat(group.patches.as_ref(), own_patches.as_ref())
    };
    merged.extra_manifests = if node.override_extra_manifests.unwrap_or(false) {
        own_manifests
    } else {
        concat(own_manifests.as_ref(), group.extra_manifests.as_ref())
    };
    merged.cert_sans = if node.override_machine_cert_sans.unwrap_or(false) {
        own_sans
    } else {
        concat(own_sans.as_ref(), group.cert_sans.as_ref())
    };
    merged
}

fn concat(first: Option<&Vec<String>>, second: Option<&Vec<String>>) -> Option<Vec<String>> {
    let v: Vec<String> = first
        .into_iter()
        .flatten()
        .chain(second.into_iter().flatten())
        .cloned()
        .collect();
    (!v.is_empty()).then_some(v)
}

/// Sets every field whose value is a Go zero value (`false`, `""`, `0`, an empty list or map,
/// a struct with no field set) to `None`.
fn clear_zero_values(cfg: &mut NodeGroup) {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&*cfg) else {
        return;
    };
    let zero: Vec<String> = map
        .iter()
        .filter(|(_, v)| is_zero(v))
        .map(|(k, _)| k.clone())
        .collect();
    if zero.is_empty() {
        return;
    }
    let mut map = map;
    for k in zero {
        map.insert(k, serde_json::Value::Null);
    }
    if let Ok(cleared) = serde_json::from_value::<NodeGroup>(serde_json::Value::Object(map)) {
        *cfg = cleared;
    }
}

fn is_zero(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        // A map with entries is never zero in Go; a struct is zero when no field is set.
        Value::Object(o) => o.values().all(Value::is_null),
    }
}

/// `"a, b,c"` → `["a", "b", "c"]`.
pub fn split_ips(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An in-memory file tree.
    #[derive(Default)]
    pub struct MemReader(pub BTreeMap<PathBuf, String>);

    impl SourceReader for MemReader {
        fn read(&self, path: &FsPath) -> Result<String, String> {
            self.0
                .get(path)
                .cloned()
                .ok_or_else(|| "no such file".to_string())
        }
        fn exists(&self, path: &FsPath) -> bool {
            self.0.contains_key(path)
        }
    }

    pub fn mem(files: &[(&str, &str)]) -> MemReader {
        MemReader(
            files
                .iter()
                .map(|(p, t)| (PathBuf::from(p), t.to_string()))
                .collect(),
        )
    }

    #[test]
    fn loads_talhelper_loader_testdata() {
        let dir = "../../../shared/oracle/talhelper/02-loader-testdata";
        let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
        let reader = mem(&[
            ("c/talconfig.yaml", &read("talconfig.yaml")),
            ("c/env1.yaml", &read("env1.yaml")),
            ("c/env2.yml", &read("env2.yml")),
        ]);
        let opts = LoadOptions {
            env_files: vec!["c/env1.yaml".into(), "c/env2.yml".into()],
            ..Default::default()
        };
        let loaded = load(
            FsPath::new("c/talconfig.yaml"),
            &opts,
            &reader,
            HashMap::new(),
        );
        assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
        let c = loaded.cluster.unwrap();
        let n0 = &c.nodes[0];
        assert_eq!(n0.hostname, "hostname1");
        assert_eq!(n0.ip_addresses, ["192.168.200.10"]);
        assert_eq!(
            n0.config.cert_sans.as_deref().unwrap(),
            ["example.net", "example.com"]
        );
        assert_eq!(n0.config.disable_search_domain, Some(true));
        let exts = n0
            .config
            .schematic
            .as_ref()
            .unwrap()
            .customization
            .as_ref()
            .unwrap()
            .system_extensions
            .as_ref()
            .unwrap();
        assert_eq!(
            exts.official_extensions.as_deref().unwrap(),
            ["siderolabs/tailscale"]
        );
        let n1 = &c.nodes[1];
        assert_eq!(n1.hostname, "hostname2");
        assert!(!n1.control_plane);
        let args = n1
            .config
            .schematic
            .as_ref()
            .unwrap()
            .customization
            .as_ref()
            .unwrap()
            .extra_kernel_args
            .clone()
            .unwrap();
        assert_eq!(args, ["net.ifnames=0"]);

        // Without env2.yml, HOSTNAME2 is missing: an error naming it and its line.
        let opts = LoadOptions {
            env_files: vec!["c/env1.yaml".into()],
            ..Default::default()
        };
        let loaded = load(
            FsPath::new("c/talconfig.yaml"),
            &opts,
            &reader,
            HashMap::new(),
        );
        let d = &loaded.diagnostics[0];
        assert_eq!(d.message, "variable ${HOSTNAME2} is not set");
        assert_eq!(d.location.as_ref().unwrap().line, 19);
    }

    #[test]
    fn patches_and_sans_merge_order() {
        let reader = mem(&[(
            "t.yaml",
            "clusterName: c\nnodes:\n  - hostname: a\n    controlPlane: true\n    patches: [n1]\n    certSANs: [ns]\n    disableSearchDomain: false\n    nodeLabels: {empty: ''}\n  - hostname: b\n    controlPlane: true\n    overridePatches: true\n    patches: [only]\ncontrolPlane:\n  patches: [g1, g2]\n  certSANs: [gs]\n  disableSearchDomain: true\n",
        )]);
        let loaded = load(
            FsPath::new("t.yaml"),
            &LoadOptions::default(),
            &reader,
            HashMap::new(),
        );
        let c = loaded.cluster.unwrap();
        assert_eq!(
            c.nodes[0].config.patches.as_deref().unwrap(),
            ["g1", "g2", "n1"]
        );
        assert_eq!(
            c.nodes[0].config.cert_sans.as_deref().unwrap(),
            ["ns", "gs"]
        );
        // Go zero-value semantics: a node's `false` does not override the group's `true`.
        assert_eq!(c.nodes[0].config.disable_search_domain, Some(true));
        // A map whose values are empty strings is still set.
        assert_eq!(c.nodes[0].config.node_labels.as_ref().unwrap()["empty"], "");
        assert_eq!(c.nodes[1].config.patches.as_deref().unwrap(), ["only"]);
    }

    #[test]
    fn diagnostics_point_at_the_original_text() {
        let reader = mem(&[(
            "t.yaml",
            "clusterName: ${NAME}\nnodes:\n  - hostname: a\n    ipAdress: 1.2.3.4\n",
        )]);
        let env = HashMap::from([("NAME".to_string(), "a-rather-long-name".to_string())]);
        let loaded = load(FsPath::new("t.yaml"), &LoadOptions::default(), &reader, env);
        let d = &loaded.diagnostics[0];
        assert_eq!(d.code, "unknown-key");
        let loc = d.location.as_ref().unwrap();
        assert_eq!((loc.line, loc.col, loc.len), (4, 5, 8));
        assert_eq!(loc.line_text, "    ipAdress: 1.2.3.4");
        assert_eq!(d.help.as_deref(), Some("did you mean `ipAddress`?"));
    }

    #[test]
    fn tab_indentation_is_named() {
        let reader = mem(&[(
            "t.yaml",
            "clusterName: a\nnodes:\n  - hostname: a\n  \tipAddress: x\n",
        )]);
        let loaded = load(
            FsPath::new("t.yaml"),
            &LoadOptions::default(),
            &reader,
            HashMap::new(),
        );
        let d = &loaded.diagnostics[0];
        assert_eq!(d.message, "invalid YAML: a tab indents this line");
        let loc = d.location.as_ref().unwrap();
        assert_eq!((loc.line, loc.col), (4, 3));
    }

    #[test]
    fn yaml_errors_have_positions() {
        let reader = mem(&[("t.yaml", "clusterName: a\nnodes:\n  - hostname: [\n")]);
        let loaded = load(
            FsPath::new("t.yaml"),
            &LoadOptions::default(),
            &reader,
            HashMap::new(),
        );
        assert!(loaded.cluster.is_none());
        assert!(loaded.diagnostics[0].message.starts_with("invalid YAML"));
        assert!(loaded.diagnostics[0].location.is_some());
    }
}
