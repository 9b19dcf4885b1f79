//! A cluster file, as a user could write it, through everything `kforge validate` does:
//! load (env files, substitution, parse, decode, merge), whole-cluster validation, and
//! rendering every node with placeholder secrets (patches, profiles, templates).
//!
//! Input: up to three texts separated by NUL bytes: the cluster file, a patch file it may
//! reference as `@p.yaml`, and `talenv.yaml`.

#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use kforge_machine::{CertAndKey, ClusterSecrets};
use kforge_secret::SecretString;
use kforge_spec::{LoadOptions, SourceReader};
use libfuzzer_sys::fuzz_target;

struct MemReader(BTreeMap<PathBuf, String>);

impl SourceReader for MemReader {
    fn read(&self, path: &Path) -> Result<String, String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| "no such file".to_string())
    }
    fn exists(&self, path: &Path) -> bool {
        self.0.contains_key(path)
    }
}

fn placeholder_secrets() -> ClusterSecrets {
    let p = || SecretString::from("placeholder".to_string());
    let cert = || CertAndKey {
        crt: "placeholder".into(),
        key: p(),
    };
    ClusterSecrets {
        cluster_id: p(),
        cluster_secret: p(),
        bootstrap_token: p(),
        secretbox_encryption_secret: Some(p()),
        aescbc_encryption_secret: None,
        trustd_token: p(),
        os: cert(),
        k8s: cert(),
        k8s_aggregator: cert(),
        k8s_service_account_key: p(),
        etcd: cert(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let cluster = parts.next().unwrap_or("");
    let mut files = BTreeMap::new();
    files.insert(PathBuf::from("c/talconfig.yaml"), cluster.to_string());
    if let Some(p) = parts.next() {
        files.insert(PathBuf::from("c/p.yaml"), p.to_string());
    }
    if let Some(e) = parts.next() {
        files.insert(PathBuf::from("c/talenv.yaml"), e.to_string());
    }
    let reader = MemReader(files);
    let env = HashMap::from([
        ("NAME".to_string(), "lab".to_string()),
        ("EMPTY".to_string(), String::new()),
    ]);
    let opts = LoadOptions {
        strict: data.len() % 2 == 0,
        ..LoadOptions::default()
    };
    let loaded = kforge_spec::load(Path::new("c/talconfig.yaml"), &opts, &reader, env);
    for d in &loaded.diagnostics {
        if let Some(l) = &d.location {
            assert!(
                l.line >= 1 && l.col >= 1 && l.len >= 1,
                "bad location {l:?}"
            );
        }
    }
    let Some(cluster) = loaded.cluster else {
        return;
    };
    let found = kforge_spec::validate::validate(&cluster, &reader);
    for d in &found {
        if let Some(l) = &d.location {
            assert!(
                l.line >= 1 && l.col >= 1 && l.len >= 1,
                "bad location {l:?}"
            );
        }
    }
    let secrets = placeholder_secrets();
    for node in &cluster.nodes {
        if let Ok(rendered) = kforge_machine::render_node(&cluster, node, &secrets, &reader) {
            // The rendered config must be emittable.
            let _ = rendered.to_yaml();
        }
    }
});
