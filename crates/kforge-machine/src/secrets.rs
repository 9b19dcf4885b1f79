//! The secret values a machine config embeds, as the renderer needs them: base64 PEM text
//! and tokens exactly as they stand in the secrets bundle. `kforge-pki` owns the bundle and
//! produces this; keeping it a plain input here keeps rendering independent of how secrets
//! are generated or stored.

use kforge_secret::SecretString;

/// A certificate (public, base64 PEM) and its key (secret, base64 PEM).
#[derive(Clone)]
pub struct CertAndKey {
    pub crt: String,
    pub key: SecretString,
}

/// Everything secret or cluster-identifying that goes into machine configs.
#[derive(Clone)]
pub struct ClusterSecrets {
    pub cluster_id: SecretString,
    pub cluster_secret: SecretString,
    pub bootstrap_token: SecretString,
    /// Kubernetes secrets-at-rest encryption (secretbox; contracts after 1.2).
    pub secretbox_encryption_secret: Option<SecretString>,
    /// Legacy AES-CBC encryption secret (old bundles).
    pub aescbc_encryption_secret: Option<SecretString>,
    pub trustd_token: SecretString,
    /// Talos API CA (`machine.ca`).
    pub os: CertAndKey,
    /// Kubernetes CA (`cluster.ca`).
    pub k8s: CertAndKey,
    pub k8s_aggregator: CertAndKey,
    pub k8s_service_account_key: SecretString,
    pub etcd: CertAndKey,
}

/// Paths in a rendered config that hold secret values, for redacting diffs and logs.
pub const SECRET_PATHS: &[&[&str]] = &[
    &["machine", "token"],
    &["machine", "ca", "key"],
    &["cluster", "id"],
    &["cluster", "secret"],
    &["cluster", "token"],
    &["cluster", "secretboxEncryptionSecret"],
    &["cluster", "aescbcEncryptionSecret"],
    &["cluster", "ca", "key"],
    &["cluster", "aggregatorCA", "key"],
    &["cluster", "serviceAccount", "key"],
    &["cluster", "etcd", "ca", "key"],
];
