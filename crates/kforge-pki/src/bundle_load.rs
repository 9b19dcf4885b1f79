//! Strict reading of `secrets.yaml`. Checks everything Talos would trip over later — and
//! reports all of it in one pass, each problem with its YAML path and line:col: missing
//! fields, unknown keys, bad base64, PEM that does not parse, keys of the wrong type, keys
//! that are not the private half of their certificate, CA certificates that are not CAs,
//! malformed tokens and secrets of the wrong length.

use kforge_secret::SecretString;
use kforge_yaml::{Node, Pos};

use crate::bundle::{CaPair, EncryptionSecret, SecretsBundle};
use crate::certificate::{CertInfo, CertParseError};
use crate::error::{BundleError, BundleProblemKind as Kind};
use crate::keys::{KeyAlgorithm, KeyParseError, PrivateKey};
use crate::pem_text;
use crate::random;
use crate::strict_yaml::{Reader, join, scrub_node};

const TOKEN_HINT: &str =
    "expected 6 then 16 characters of a-z and 0-9 joined by a dot, like `abc123.0123456789abcdef`";

pub(crate) fn load(text: &str) -> Result<SecretsBundle, BundleError> {
    let mut doc = kforge_yaml::parse(text).map_err(BundleError::Yaml)?;
    let mut r = Reader::default();
    let bundle = read(&mut r, &doc);
    scrub_node(&mut doc);
    match bundle {
        Some(b) if r.problems.is_empty() => Ok(b),
        _ => {
            if r.problems.is_empty() {
                // Defensive: a field came back empty without a recorded reason.
                r.problem(
                    "(top level)",
                    None,
                    Kind::Missing,
                    "the bundle is incomplete",
                );
            }
            Err(BundleError::Invalid {
                problems: r.problems,
            })
        }
    }
}

fn read(r: &mut Reader, doc: &Node) -> Option<SecretsBundle> {
    let root = r.mapping(doc, "", &["cluster", "secrets", "trustdinfo", "certs"])?;

    let cluster = section(r, root, "cluster", &["id", "secret"]);
    let (cluster_id, cluster_secret) = match cluster {
        Some(c) => (
            read_cluster_id(r, c),
            read_std_secret(r, c, "cluster", "secret", &[16, 24, 32]),
        ),
        None => (None, None),
    };

    let secrets = section(
        r,
        root,
        "secrets",
        &[
            "bootstraptoken",
            "secretboxencryptionsecret",
            "aescbcencryptionsecret",
        ],
    );
    let (bootstrap_token, encryption) = match secrets {
        Some(s) => (
            read_token(r, s, "secrets", "bootstraptoken"),
            read_encryption(r, s),
        ),
        None => (None, None),
    };

    let trustd = section(r, root, "trustdinfo", &["token"]);
    let trustd_token = trustd.and_then(|t| read_token(r, t, "trustdinfo", "token"));

    let certs = section(
        r,
        root,
        "certs",
        &["etcd", "k8s", "k8saggregator", "k8sserviceaccount", "os"],
    );
    let (etcd, k8s, agg, sa, os) = match certs {
        Some(c) => (
            read_ca(r, c, "etcd"),
            read_ca(r, c, "k8s"),
            read_ca(r, c, "k8saggregator"),
            read_service_account_key(r, c),
            read_ca(r, c, "os"),
        ),
        None => (None, None, None, None, None),
    };

    Some(SecretsBundle {
        cluster_id: cluster_id?,
        cluster_secret: cluster_secret?,
        bootstrap_token: bootstrap_token?,
        encryption: encryption?,
        trustd_token: trustd_token?,
        etcd: etcd?,
        k8s: k8s?,
        k8s_aggregator: agg?,
        k8s_service_account_key: sa?,
        os: os?,
    })
}

/// A required top-level section, as a mapping with only `known` keys.
fn section<'n>(r: &mut Reader, root: &'n Node, key: &str, known: &[&str]) -> Option<&'n Node> {
    let node = r.field(root, "", key, true)?;
    r.mapping(node, key, known)
}

fn secret_string(
    r: &mut Reader,
    parent: &Node,
    parent_path: &str,
    key: &str,
) -> Option<(SecretString, Pos)> {
    r.string(parent, parent_path, key, true)
        .map(|(s, pos)| (SecretString::new(s), pos))
}

fn read_cluster_id(r: &mut Reader, cluster: &Node) -> Option<String> {
    let (id, pos) = r.string(cluster, "cluster", "id", true)?;
    if pem_text::from_base64_url(&id).is_err() {
        r.problem(
            "cluster.id",
            Some(pos),
            Kind::BadBase64,
            "is not URL-safe base64 with padding (talosctl writes 32 random bytes as 44 characters)",
        );
        return None;
    }
    Some(id)
}

/// A standard-base64 secret whose decoded length must be one of `lengths`.
fn read_std_secret(
    r: &mut Reader,
    parent: &Node,
    parent_path: &str,
    key: &str,
    lengths: &[usize],
) -> Option<SecretString> {
    let (value, pos) = secret_string(r, parent, parent_path, key)?;
    let path = join(parent_path, key);
    match pem_text::from_base64(value.expose()) {
        Err(_) => {
            r.problem(
                path,
                Some(pos),
                Kind::BadBase64,
                "is not valid standard base64",
            );
            None
        }
        Ok(bytes) if !lengths.contains(&bytes.len()) => {
            let want: Vec<String> = lengths.iter().map(|l| l.to_string()).collect();
            r.problem(
                path,
                Some(pos),
                Kind::BadLength,
                format!(
                    "decodes to {} bytes; expected {} bytes (talosctl writes 32 random bytes)",
                    bytes.len(),
                    want.join(" or ")
                ),
            );
            None
        }
        Ok(_) => Some(value),
    }
}

fn read_token(r: &mut Reader, parent: &Node, parent_path: &str, key: &str) -> Option<SecretString> {
    let (value, pos) = secret_string(r, parent, parent_path, key)?;
    if !random::is_token(value.expose(), 6, 16) {
        r.problem(
            join(parent_path, key),
            Some(pos),
            Kind::BadToken,
            format!("is not a token: {TOKEN_HINT}"),
        );
        return None;
    }
    Some(value)
}

fn read_encryption(r: &mut Reader, secrets: &Node) -> Option<EncryptionSecret> {
    let has_secretbox = secrets.get("secretboxencryptionsecret").is_some();
    let has_aescbc = secrets.get("aescbcencryptionsecret").is_some();
    match (has_secretbox, has_aescbc) {
        (true, true) => {
            let pos = secrets
                .entry("aescbcencryptionsecret")
                .map(|e| e.key_span.start);
            r.problem(
                "secrets.aescbcencryptionsecret",
                pos,
                Kind::Conflict,
                "only one of secretboxencryptionsecret and aescbcencryptionsecret may be set",
            );
            None
        }
        (false, false) => {
            r.problem(
                "secrets.secretboxencryptionsecret",
                Some(secrets.span.start),
                Kind::Missing,
                "is missing (one of secretboxencryptionsecret or the legacy aescbcencryptionsecret is required)",
            );
            None
        }
        (true, false) => read_std_secret(r, secrets, "secrets", "secretboxencryptionsecret", &[32])
            .map(EncryptionSecret::Secretbox),
        (false, true) => read_std_secret(
            r,
            secrets,
            "secrets",
            "aescbcencryptionsecret",
            &[16, 24, 32],
        )
        .map(EncryptionSecret::AesCbc),
    }
}

/// `certs.<name>` with a CA certificate and its key.
fn read_ca(r: &mut Reader, certs: &Node, name: &str) -> Option<CaPair> {
    let path = join("certs", name);
    let node = r.field(certs, "certs", name, true)?;
    let node = r.mapping(node, &path, &["crt", "key"])?;
    let crt = r.string(node, &path, "crt", true);
    let key = secret_string(r, node, &path, "key");
    let cert = crt
        .as_ref()
        .and_then(|(b64, pos)| check_ca_cert(r, &join(&path, "crt"), b64, *pos));
    let parsed_key = key
        .as_ref()
        .and_then(|(b64, pos)| check_key(r, &join(&path, "key"), b64, *pos));
    if let (Some(cert), Some(k), Some((_, pos))) = (&cert, &parsed_key, &key)
        && k.public_key() != cert.public_key.as_slice()
    {
        let detail = match cert.key_algorithm {
            Some(alg) if alg != k.algorithm() => {
                format!(
                    " (the key is {}, the certificate's key is {alg})",
                    k.algorithm()
                )
            }
            None => format!(
                " (the key is {}, the certificate uses an algorithm kforge does not support)",
                k.algorithm()
            ),
            _ => String::new(),
        };
        r.problem(
            join(&path, "key"),
            Some(*pos),
            Kind::KeyMismatch,
            format!("is not the private key of certificate {path}.crt{detail}"),
        );
        return None;
    }
    let (crt, _) = crt?;
    let (key, _) = key?;
    cert?;
    parsed_key?;
    Some(CaPair { crt, key })
}

fn read_service_account_key(r: &mut Reader, certs: &Node) -> Option<SecretString> {
    let path = "certs.k8sserviceaccount";
    let node = r.field(certs, "certs", "k8sserviceaccount", true)?;
    let node = r.mapping(node, path, &["key"])?;
    let (key, pos) = secret_string(r, node, path, "key")?;
    let parsed = check_key(r, "certs.k8sserviceaccount.key", &key, pos)?;
    if parsed.algorithm() == KeyAlgorithm::Ed25519 {
        r.problem(
            "certs.k8sserviceaccount.key",
            Some(pos),
            Kind::WrongKeyType,
            "is an Ed25519 key; Kubernetes service-account keys must be RSA (what talosctl generates) or ECDSA",
        );
        return None;
    }
    Some(key)
}

/// Decodes base64 → PEM → X.509 and requires a CA certificate.
fn check_ca_cert(r: &mut Reader, path: &str, b64: &str, pos: Pos) -> Option<CertInfo> {
    let pem = match pem_text::base64_to_secret_text(b64) {
        Ok(p) => p,
        Err(problem) => {
            r.problem(path, Some(pos), Kind::BadBase64, problem);
            return None;
        }
    };
    let info = match CertInfo::from_pem(pem.expose()) {
        Ok(info) => info,
        Err(e) => {
            let kind = match e {
                CertParseError::BadPem(_) => Kind::BadPem,
                CertParseError::BadCertificate(_) => Kind::BadCertificate,
            };
            r.problem(path, Some(pos), kind, e.to_string());
            return None;
        }
    };
    if !info.is_ca {
        r.problem(
            path,
            Some(pos),
            Kind::BadCertificate,
            "is not a CA certificate (BasicConstraints CA:TRUE is missing)",
        );
        return None;
    }
    Some(info)
}

/// Decodes base64 → PEM → private key.
fn check_key(r: &mut Reader, path: &str, b64: &SecretString, pos: Pos) -> Option<PrivateKey> {
    let pem = match pem_text::base64_to_secret_text(b64.expose()) {
        Ok(p) => p,
        Err(problem) => {
            r.problem(path, Some(pos), Kind::BadBase64, problem);
            return None;
        }
    };
    match PrivateKey::from_pem(pem.expose()) {
        Ok(k) => Some(k),
        Err(e) => {
            let kind = match e {
                KeyParseError::NotPem(_) => Kind::BadPem,
                KeyParseError::Encrypted | KeyParseError::Malformed { .. } => Kind::BadKey,
                KeyParseError::UnsupportedLabel(_)
                | KeyParseError::WrongType { .. }
                | KeyParseError::UnsupportedAlgorithm { .. } => Kind::WrongKeyType,
            };
            r.problem(path, Some(pos), kind, e.to_string());
            None
        }
    }
}
