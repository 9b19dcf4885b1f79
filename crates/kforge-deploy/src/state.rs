//! The deploy state file (`<output dir>/kforge-state.json`): what `kforge up` has done, so a
//! rerun after a crash or Ctrl-C finishes the job without redoing it and never bootstraps
//! twice. JSON, mode 0600, written atomically (temporary file + rename) after every step.
//!
//! Restart semantics: the bootstrap *intent* (which node, when) is saved before the
//! Bootstrap call and the *marker* right after it succeeds, before the bootstrap step
//! returns. A crash between the two leaves the intent; the next run checks etcd members
//! first and resumes on the same node only, so the worst case is an "already bootstrapped"
//! answer, never a second cluster.
//!
//! The file holds fingerprints, names and times only: no configs, no keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::desired::Fingerprint;

/// Current format version.
pub const STATE_VERSION: u32 = 1;

/// The conventional file name inside the output directory.
pub const STATE_FILE_NAME: &str = "kforge-state.json";

/// Everything recorded about one cluster's deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployState {
    pub version: u32,
    pub cluster: String,
    /// Per node (by hostname): the config last applied by kforge.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeRecord>,
    #[serde(default)]
    pub bootstrap: BootstrapRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<KubeconfigRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<ManifestsRecord>,
    /// Per node (by hostname): the tuning expectations last verified.
    #[serde(default)]
    pub tuning: BTreeMap<String, TuningRecord>,
}

impl DeployState {
    pub fn new(cluster: impl Into<String>) -> Self {
        DeployState {
            version: STATE_VERSION,
            cluster: cluster.into(),
            ..Default::default()
        }
    }

    /// Whether the state says etcd was bootstrapped.
    pub fn bootstrapped(&self) -> bool {
        self.bootstrap.completed.is_some()
    }
}

/// How a config reached a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppliedHow {
    /// Insecure apply to a node in maintenance mode.
    Maintenance,
    /// Authenticated apply (mode AUTO) to a configured node.
    Authenticated,
    /// The node already ran this config.
    AlreadyRunning,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub address: String,
    pub fingerprint: Fingerprint,
    pub how: AppliedHow,
    /// RFC 3339.
    pub at: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapRecord {
    /// Saved before the Bootstrap call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<BootstrapIntent>,
    /// Saved once etcd is known to be bootstrapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<BootstrapMarker>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapIntent {
    pub node: String,
    pub address: String,
    pub at: String,
}

/// How kforge knows etcd is bootstrapped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BootstrapEvidence {
    /// kforge's Bootstrap call succeeded.
    Bootstrapped,
    /// The node answered "etcd data directory is not empty" and etcd lists members.
    AlreadyBootstrapped,
    /// A control-plane node reported etcd members before kforge called Bootstrap.
    MembersObserved {
        reported_by: String,
        members: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapMarker {
    /// The node etcd was bootstrapped on (or the node that reported members).
    pub node: String,
    pub at: String,
    pub evidence: BootstrapEvidence,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeconfigRecord {
    pub path: PathBuf,
    /// The context it was merged under; None when written as a standalone file.
    pub context: Option<String>,
    pub at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestsRecord {
    pub fingerprint: Fingerprint,
    pub objects: Vec<String>,
    pub at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TuningRecord {
    pub fingerprint: Fingerprint,
    pub at: String,
}

/// Problems reading or writing the state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the deploy state file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the deploy state file {} is not valid; hint: it is written by kforge only; if it was \
         edited by hand, fix it or move it away (kforge then re-checks every node; it never \
         bootstraps a cluster whose etcd already has members)",
        path.display()
    )]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the deploy state file {} has format version {found}; this kforge understands version \
         {STATE_VERSION}; hint: use a newer kforge",
        path.display()
    )]
    Version { path: PathBuf, found: u32 },
    #[error(
        "the deploy state file {} belongs to cluster `{found}`, not `{expected}`; hint: each \
         cluster needs its own output directory",
        path.display()
    )]
    OtherCluster {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("cannot write the deploy state file {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the state lives.
pub trait StateStore: Send + Sync {
    /// The state of `cluster`; a fresh state when none was saved yet.
    fn load(&self, cluster: &str) -> Result<DeployState, StateError>;
    /// Saves atomically; either the old or the new state survives a crash.
    fn save(&self, state: &DeployState) -> Result<(), StateError>;
}

/// The state file on disk (JSON, 0600, atomic rename).
pub struct FileStateStore {
    path: PathBuf,
}

impl FileStateStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStateStore { path: path.into() }
    }

    /// `<dir>/kforge-state.json`.
    pub fn in_dir(dir: &Path) -> Self {
        Self::new(dir.join(STATE_FILE_NAME))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl StateStore for FileStateStore {
    fn load(&self, cluster: &str) -> Result<DeployState, StateError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DeployState::new(cluster));
            }
            Err(source) => {
                return Err(StateError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let state: DeployState =
            serde_json::from_str(&text).map_err(|source| StateError::Parse {
                path: self.path.clone(),
                source,
            })?;
        if state.version != STATE_VERSION {
            return Err(StateError::Version {
                path: self.path.clone(),
                found: state.version,
            });
        }
        if state.cluster != cluster {
            return Err(StateError::OtherCluster {
                path: self.path.clone(),
                found: state.cluster,
                expected: cluster.to_string(),
            });
        }
        Ok(state)
    }

    fn save(&self, state: &DeployState) -> Result<(), StateError> {
        let mut text = serde_json::to_string_pretty(state).unwrap_or_default();
        text.push('\n');
        kforge_secret::write_private(&self.path, text.as_bytes()).map_err(|source| {
            StateError::Write {
                path: self.path.clone(),
                source,
            }
        })
    }
}

/// State kept in memory (plans without an output directory, tests).
#[derive(Default)]
pub struct MemoryStateStore {
    state: Mutex<Option<DeployState>>,
}

impl MemoryStateStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> Option<DeployState> {
        self.state.lock().ok().and_then(|s| s.clone())
    }
}

impl StateStore for MemoryStateStore {
    fn load(&self, cluster: &str) -> Result<DeployState, StateError> {
        Ok(self
            .snapshot()
            .filter(|s| s.cluster == cluster)
            .unwrap_or_else(|| DeployState::new(cluster)))
    }

    fn save(&self, state: &DeployState) -> Result<(), StateError> {
        if let Ok(mut s) = self.state.lock() {
            *s = Some(state.clone());
        }
        Ok(())
    }
}

/// RFC 3339 (seconds) of `t`.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DeployState {
        let mut s = DeployState::new("solana");
        s.nodes.insert(
            "cp-1".into(),
            NodeRecord {
                address: "10.0.1.11".into(),
                fingerprint: Fingerprint::of(b"x"),
                how: AppliedHow::Maintenance,
                at: "2026-01-01T00:00:00Z".into(),
            },
        );
        s.bootstrap.intent = Some(BootstrapIntent {
            node: "cp-1".into(),
            address: "10.0.1.11".into(),
            at: "2026-01-01T00:01:00Z".into(),
        });
        s.bootstrap.completed = Some(BootstrapMarker {
            node: "cp-1".into(),
            at: "2026-01-01T00:01:05Z".into(),
            evidence: BootstrapEvidence::Bootstrapped,
        });
        s
    }

    #[test]
    fn file_round_trip_is_0600_and_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::in_dir(dir.path());
        assert_eq!(store.load("solana").unwrap(), DeployState::new("solana"));
        store.save(&sample()).unwrap();
        assert_eq!(store.load("solana").unwrap(), sample());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temporary files left behind");
    }

    #[test]
    fn other_cluster_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::in_dir(dir.path());
        store.save(&sample()).unwrap();
        let e = store.load("other").unwrap_err();
        assert!(
            e.to_string()
                .contains("belongs to cluster `solana`, not `other`")
        );
        std::fs::write(store.path(), "{not json").unwrap();
        assert!(matches!(
            store.load("solana").unwrap_err(),
            StateError::Parse { .. }
        ));
        let mut s = sample();
        s.version = 99;
        std::fs::write(store.path(), serde_json::to_string(&s).unwrap()).unwrap();
        assert!(matches!(
            store.load("solana").unwrap_err(),
            StateError::Version { found: 99, .. }
        ));
    }

    #[test]
    fn format_is_stable() {
        insta::assert_snapshot!(serde_json::to_string_pretty(&sample()).unwrap());
    }
}
