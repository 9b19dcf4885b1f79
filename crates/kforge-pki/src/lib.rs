//! Talos PKI for kforge, pure apart from OS randomness (no files, no network, no clock:
//! callers pass the time in).
//!
//! - [`SecretsBundle`]: `talosctl gen secrets` bundles — generated ([`SecretsBundle::generate`]),
//!   read strictly with every defect reported by YAML path and line:col
//!   ([`SecretsBundle::from_yaml`]), written byte-compatible with talosctl
//!   ([`SecretsBundle::to_yaml`]).
//! - [`issue_talos_client_cert`] / [`client_cert_still_valid`]: the talosconfig admin
//!   certificate, issued deterministically from the OS CA.
//! - [`Talosconfig`]: the talosctl client config file.
//! - Leaf certificates a Talos node issues (apid, etcd, kube-apiserver, admin) and
//!   [`admin_kubeconfig`].
//!
//! Certificates are laid out as Go's `crypto/x509` lays them out for Talos (subject and
//! extension order, issuer copied byte for byte from the CA subject), signed with ring.
//! Secrets live in [`kforge_secret::Secret`] and none of the public types with secrets
//! implements `Debug` or `Display`.

mod bundle;
mod bundle_load;
mod certificate;
mod client_cert;
mod error;
mod keys;
mod leaf;
mod pem_text;
mod random;
mod strict_yaml;
mod talosconfig;

pub use bundle::{CA_VALIDITY, EncryptionSecret, SecretsBundle};
pub use certificate::SubjectAltNames;
pub use client_cert::{
    DEFAULT_TALOS_ROLES, IssuedCertificate, TALOS_CLIENT_CERT_DEFAULT_TTL, client_cert_still_valid,
    issue_talos_client_cert,
};
pub use error::{BundleError, BundleProblem, BundleProblemKind, PkiError, TalosconfigError};
pub use keys::KeyAlgorithm;
pub use leaf::{
    ADMIN_KUBECONFIG_DEFAULT_TTL, APID_CERT_DEFAULT_TTL, ETCD_CERT_DEFAULT_TTL,
    KUBERNETES_CERT_DEFAULT_TTL, admin_kubeconfig, issue_apid_server_cert, issue_etcd_client_cert,
    issue_etcd_peer_cert, issue_etcd_server_cert, issue_kube_admin_client_cert,
    issue_kube_apiserver_cert,
};
pub use talosconfig::{BasicAuth, SideroV1Auth, TalosAuth, TalosContext, Talosconfig};
