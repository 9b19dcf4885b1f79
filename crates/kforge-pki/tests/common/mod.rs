//! Helpers shared by the integration tests: one generated bundle per test binary (RSA-4096
//! generation is the slow part), the real `openssl` binary, and certificate parsing.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use base64::Engine;
use kforge_pki::SecretsBundle;
use x509_parser::prelude::{FromDer, X509Certificate};

pub const FIXTURE: &str = include_str!("../fixtures/talosctl-secrets.yaml");

/// A fixed "now" (whole seconds) for the shared bundle.
pub fn generated_at() -> SystemTime {
    static AT: OnceLock<SystemTime> = OnceLock::new();
    *AT.get_or_init(|| {
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    })
}

pub fn generated() -> &'static SecretsBundle {
    static BUNDLE: OnceLock<SecretsBundle> = OnceLock::new();
    BUNDLE.get_or_init(|| SecretsBundle::generate(generated_at()).expect("generate a bundle"))
}

pub fn fixture() -> SecretsBundle {
    SecretsBundle::from_yaml(FIXTURE).unwrap_or_else(|e| panic!("fixture must load: {e}"))
}

pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64
}

pub fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("standard base64")
}

pub fn b64_text(s: &str) -> String {
    String::from_utf8(b64(s)).expect("utf-8 PEM")
}

/// The DER of the first PEM block, with its label.
pub fn pem_der(text: &str) -> (String, Vec<u8>) {
    let p = pem::parse(text).expect("PEM");
    (p.tag().to_string(), p.into_contents())
}

/// Parses a PEM certificate and runs `f` on it.
pub fn with_cert<R>(pem_text: &str, f: impl FnOnce(&X509Certificate<'_>) -> R) -> R {
    let (label, der) = pem_der(pem_text);
    assert_eq!(label, "CERTIFICATE");
    let (rest, cert) = X509Certificate::from_der(&der).expect("x509-parser parses the certificate");
    assert!(rest.is_empty());
    f(&cert)
}

pub fn subject_orgs(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject()
        .iter_organization()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

pub fn subject_cns(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// The real `openssl`; a missing binary fails the test with an install hint.
pub fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `openssl` ({e}); install it (Debian: `apt-get install openssl`, or run scripts/install-test-deps.sh)"
        )
    });
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout + &stderr
}

pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).expect("write scratch file");
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `openssl verify` of `leaf_pem` against `ca_pem` at time `at`, for `purpose`
/// (sslclient / sslserver / any).
pub fn openssl_verify(ca_pem: &str, leaf_pem: &str, purpose: &str, at: SystemTime) {
    let dir = Scratch::new();
    let ca = dir.write("ca.pem", ca_pem);
    let leaf = dir.write("leaf.pem", leaf_pem);
    let at = unix(at).to_string();
    let out = openssl(&[
        "verify",
        "-x509_strict",
        "-purpose",
        purpose,
        "-attime",
        &at,
        "-CAfile",
        s(&ca),
        s(&leaf),
    ]);
    assert!(out.contains(": OK"), "{out}");
}
