//! The secret values a machine config embeds, as the renderer needs them: base64 PEM text
//! and tokens exactly as they stand in the secrets bundle. `kforge-pki` owns the bundle;
//! [`ClusterSecrets::from_bundle`] is the one conversion. Rendering takes this plain input,
//! so it stays independent of how secrets are generated or stored (tests and the fuzzer
//! pass placeholders).

use kforge_pki::SecretsBundle;
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

impl ClusterSecrets {
    /// The values machine configs embed, from the bundle.
    pub fn from_bundle(b: &SecretsBundle) -> ClusterSecrets {
        let pair = |crt: &str, key: &SecretString| CertAndKey {
            crt: crt.to_string(),
            key: key.clone(),
        };
        ClusterSecrets {
            cluster_id: SecretString::from(b.cluster_id().to_string()),
            cluster_secret: b.cluster_secret().clone(),
            bootstrap_token: b.bootstrap_token().clone(),
            secretbox_encryption_secret: b.secretbox_encryption_secret().cloned(),
            aescbc_encryption_secret: b.aescbc_encryption_secret().cloned(),
            trustd_token: b.trustd_token().clone(),
            os: pair(b.os_ca_crt(), b.os_ca_key()),
            k8s: pair(b.k8s_ca_crt(), b.k8s_ca_key()),
            k8s_aggregator: pair(b.k8s_aggregator_ca_crt(), b.k8s_aggregator_ca_key()),
            k8s_service_account_key: b.k8s_service_account_key().clone(),
            etcd: pair(b.etcd_ca_crt(), b.etcd_ca_key()),
        }
    }
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
