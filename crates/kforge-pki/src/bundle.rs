//! The Talos secrets bundle (`talosctl gen secrets` → `secrets.yaml`): generation with OS
//! randomness, the accessors the machine-config renderer reads, and writing it back in
//! talosctl's exact layout (Go `yaml.Marshal`: 4-space indent, fields in struct order).
//! Reading lives in [`crate::bundle_load`].

use std::time::{Duration, SystemTime};

use kforge_secret::{SecretBytes, SecretString};
use kforge_yaml::{EmitOptions, Mapping, Value};
use x509_cert::ext::pkix::KeyUsages;
use zeroize::Zeroize;

use crate::certificate::{
    self, CertificateAuthority, CertificateSpec, Signer, SubjectAltNames, Usage,
};
use crate::error::{BundleError, PkiError};
use crate::keys::{KeyAlgorithm, PrivateKey, RSA_SERVICE_ACCOUNT_BITS};
use crate::pem_text;
use crate::random;

/// Validity of the CAs Talos generates (`secrets.CAValidityTime`, 87600 h = 10 years).
pub const CA_VALIDITY: Duration = Duration::from_secs(87_600 * 3600);

/// Random bytes in `cluster.id` and `cluster.secret` (`constants.DefaultClusterIDSize`,
/// `DefaultClusterSecretSize`) and in the secretbox key.
const SECRET_BYTES: usize = 32;
/// Bytes of the random SubjectKeyId of a generated CA (`x509.NewSubjectKeyID`).
const SUBJECT_KEY_ID_BYTES: usize = 20;

/// A certificate and its key, both as base64 of PEM text, exactly as stored.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CaPair {
    pub(crate) crt: String,
    pub(crate) key: SecretString,
}

/// The etcd encryption-at-rest key of the bundle: `secretboxencryptionsecret` (every
/// bundle talosctl writes for Talos > 1.2) or the legacy `aescbcencryptionsecret`.
#[derive(Clone, PartialEq, Eq)]
pub enum EncryptionSecret {
    Secretbox(SecretString),
    AesCbc(SecretString),
}

/// All cluster secrets Talos machine configs are rendered from. Holds every value as
/// talosctl stores it (certificates and keys as base64 of PEM text). Deliberately has no
/// `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretsBundle {
    pub(crate) cluster_id: String,
    pub(crate) cluster_secret: SecretString,
    pub(crate) bootstrap_token: SecretString,
    pub(crate) encryption: EncryptionSecret,
    pub(crate) trustd_token: SecretString,
    pub(crate) etcd: CaPair,
    pub(crate) k8s: CaPair,
    pub(crate) k8s_aggregator: CaPair,
    pub(crate) k8s_service_account_key: SecretString,
    pub(crate) os: CaPair,
}

impl SecretsBundle {
    /// A new bundle as `talosctl gen secrets` (Talos ≥ 1.7 contract) makes one, with
    /// `now` as the CAs' NotBefore.
    pub fn generate(now: SystemTime) -> Result<SecretsBundle, PkiError> {
        let etcd = generate_ca(now, "etcd", KeyAlgorithm::EcdsaP256)?;
        let k8s = generate_ca(now, "kubernetes", KeyAlgorithm::EcdsaP256)?;
        // NewAggregatorCA passes a CommonName the CA builder ignores: the subject is empty.
        let k8s_aggregator = generate_ca(now, "", KeyAlgorithm::EcdsaP256)?;
        let (_, sa_pem) = PrivateKey::generate_rsa(RSA_SERVICE_ACCOUNT_BITS)?;
        let os = generate_ca(now, "talos", KeyAlgorithm::Ed25519)?;

        let cluster_id = base64_url(&random::bytes(SECRET_BYTES, "generating the cluster id")?);
        let cluster_secret = SecretString::new(pem_text::to_base64(&random::bytes(
            SECRET_BYTES,
            "generating the cluster secret",
        )?));
        let secretbox = SecretString::new(pem_text::to_base64(&random::bytes(
            SECRET_BYTES,
            "generating the secretbox encryption secret",
        )?));
        Ok(SecretsBundle {
            cluster_id,
            cluster_secret,
            bootstrap_token: random::token(6, 16)?,
            encryption: EncryptionSecret::Secretbox(secretbox),
            trustd_token: random::token(6, 16)?,
            etcd,
            k8s,
            k8s_aggregator,
            k8s_service_account_key: pem_text::secret_to_base64(&sa_pem),
            os,
        })
    }

    /// Reads a bundle strictly, reporting every problem at once with its YAML path and
    /// line:col: missing fields, unknown keys (talosctl would drop them), bad base64, PEM
    /// that does not parse, keys of the wrong type or not matching their certificate, CA
    /// certificates that are not CAs, malformed tokens, secrets of the wrong length.
    pub fn from_yaml(text: &str) -> Result<SecretsBundle, BundleError> {
        crate::bundle_load::load(text)
    }

    /// The bundle in talosctl's layout: keys in Go struct order, 4-space indentation.
    pub fn to_yaml(&self) -> SecretString {
        let mut cluster = Mapping::new();
        cluster.insert("id".into(), Value::String(self.cluster_id.clone()));
        cluster.insert("secret".into(), secret_value(&self.cluster_secret));
        let mut secrets = Mapping::new();
        secrets.insert("bootstraptoken".into(), secret_value(&self.bootstrap_token));
        match &self.encryption {
            EncryptionSecret::AesCbc(s) => {
                secrets.insert("aescbcencryptionsecret".into(), secret_value(s));
            }
            EncryptionSecret::Secretbox(s) => {
                secrets.insert("secretboxencryptionsecret".into(), secret_value(s));
            }
        }
        let mut trustd = Mapping::new();
        trustd.insert("token".into(), secret_value(&self.trustd_token));
        let pair = |p: &CaPair| {
            let mut m = Mapping::new();
            m.insert("crt".into(), Value::String(p.crt.clone()));
            m.insert("key".into(), secret_value(&p.key));
            Value::Object(m)
        };
        let mut certs = Mapping::new();
        certs.insert("etcd".into(), pair(&self.etcd));
        certs.insert("k8s".into(), pair(&self.k8s));
        certs.insert("k8saggregator".into(), pair(&self.k8s_aggregator));
        let mut sa = Mapping::new();
        sa.insert("key".into(), secret_value(&self.k8s_service_account_key));
        certs.insert("k8sserviceaccount".into(), Value::Object(sa));
        certs.insert("os".into(), pair(&self.os));

        let mut root = Mapping::new();
        root.insert("cluster".into(), Value::Object(cluster));
        root.insert("secrets".into(), Value::Object(secrets));
        root.insert("trustdinfo".into(), Value::Object(trustd));
        root.insert("certs".into(), Value::Object(certs));
        let mut root = Value::Object(root);
        let text = kforge_yaml::to_string_with(&root, EmitOptions { indent: 4 });
        scrub_value(&mut root);
        SecretString::new(text)
    }

    /// `cluster.id`: 32 random bytes, URL-safe base64 with padding.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// `cluster.secret`: 32 random bytes, standard base64.
    pub fn cluster_secret(&self) -> &SecretString {
        &self.cluster_secret
    }

    /// `secrets.bootstraptoken` (`[a-z0-9]{6}.[a-z0-9]{16}`), Talos `cluster.token`.
    pub fn bootstrap_token(&self) -> &SecretString {
        &self.bootstrap_token
    }

    pub fn encryption_secret(&self) -> &EncryptionSecret {
        &self.encryption
    }

    /// `secrets.secretboxencryptionsecret` (Talos `cluster.secretboxEncryptionSecret`);
    /// `None` for a legacy bundle holding `aescbcencryptionsecret`.
    pub fn secretbox_encryption_secret(&self) -> Option<&SecretString> {
        match &self.encryption {
            EncryptionSecret::Secretbox(s) => Some(s),
            EncryptionSecret::AesCbc(_) => None,
        }
    }

    /// `secrets.aescbcencryptionsecret` of a legacy bundle (Talos `cluster.aescbcEncryptionSecret`).
    pub fn aescbc_encryption_secret(&self) -> Option<&SecretString> {
        match &self.encryption {
            EncryptionSecret::AesCbc(s) => Some(s),
            EncryptionSecret::Secretbox(_) => None,
        }
    }

    /// `trustdinfo.token`, Talos `machine.token`.
    pub fn trustd_token(&self) -> &SecretString {
        &self.trustd_token
    }

    /// `certs.os.crt` (base64 PEM), Talos `machine.ca.crt`.
    pub fn os_ca_crt(&self) -> &str {
        &self.os.crt
    }

    /// `certs.os.key` (base64 PEM), Talos `machine.ca.key` on control planes.
    pub fn os_ca_key(&self) -> &SecretString {
        &self.os.key
    }

    /// `certs.k8s.crt`, Talos `cluster.ca.crt`.
    pub fn k8s_ca_crt(&self) -> &str {
        &self.k8s.crt
    }

    /// `certs.k8s.key`, Talos `cluster.ca.key`.
    pub fn k8s_ca_key(&self) -> &SecretString {
        &self.k8s.key
    }

    /// `certs.k8saggregator.crt`, Talos `cluster.aggregatorCA.crt`.
    pub fn k8s_aggregator_ca_crt(&self) -> &str {
        &self.k8s_aggregator.crt
    }

    /// `certs.k8saggregator.key`, Talos `cluster.aggregatorCA.key`.
    pub fn k8s_aggregator_ca_key(&self) -> &SecretString {
        &self.k8s_aggregator.key
    }

    /// `certs.k8sserviceaccount.key`, Talos `cluster.serviceAccount.key`.
    pub fn k8s_service_account_key(&self) -> &SecretString {
        &self.k8s_service_account_key
    }

    /// `certs.etcd.crt`, Talos `cluster.etcd.ca.crt`.
    pub fn etcd_ca_crt(&self) -> &str {
        &self.etcd.crt
    }

    /// `certs.etcd.key`, Talos `cluster.etcd.ca.key`.
    pub fn etcd_ca_key(&self) -> &SecretString {
        &self.etcd.key
    }

    /// The OS CA certificate as PEM text (what a TLS client trusts for apid).
    pub fn os_ca_crt_pem(&self) -> Result<String, PkiError> {
        decode_cert_pem("certs.os.crt", &self.os.crt)
    }

    /// The Kubernetes CA certificate as PEM text.
    pub fn k8s_ca_crt_pem(&self) -> Result<String, PkiError> {
        decode_cert_pem("certs.k8s.crt", &self.k8s.crt)
    }

    /// The etcd CA certificate as PEM text.
    pub fn etcd_ca_crt_pem(&self) -> Result<String, PkiError> {
        decode_cert_pem("certs.etcd.crt", &self.etcd.crt)
    }

    pub(crate) fn os_ca(&self, operation: &'static str) -> Result<CertificateAuthority, PkiError> {
        CertificateAuthority::from_bundle("certs.os", &self.os.crt, &self.os.key, operation)
    }

    /// The Kubernetes CA key as PKCS#8 DER, for code that signs with another library
    /// (the node simulator signs kubelet certificate requests with rcgen).
    pub fn k8s_ca_key_pkcs8(&self) -> Result<SecretBytes, PkiError> {
        let ca = self.k8s_ca("read the Kubernetes CA key")?;
        Ok(SecretBytes::new(ca.key.pkcs8_der().to_vec()))
    }

    pub(crate) fn k8s_ca(&self, operation: &'static str) -> Result<CertificateAuthority, PkiError> {
        CertificateAuthority::from_bundle("certs.k8s", &self.k8s.crt, &self.k8s.key, operation)
    }

    pub(crate) fn etcd_ca(
        &self,
        operation: &'static str,
    ) -> Result<CertificateAuthority, PkiError> {
        CertificateAuthority::from_bundle("certs.etcd", &self.etcd.crt, &self.etcd.key, operation)
    }
}

fn decode_cert_pem(field: &str, b64: &str) -> Result<String, PkiError> {
    pem_text::base64_to_secret_text(b64)
        .map(|s| s.expose().clone())
        .map_err(|problem| PkiError::BundleField {
            field: field.to_string(),
            operation: "read the certificate",
            problem,
        })
}

/// A self-signed CA as `siderolabs/crypto` `NewSelfSignedCertificateAuthority` makes it.
fn generate_ca(
    now: SystemTime,
    organization: &str,
    algorithm: KeyAlgorithm,
) -> Result<CaPair, PkiError> {
    let (key, key_pem) = PrivateKey::generate(algorithm, RSA_SERVICE_ACCOUNT_BITS)?;
    let ski = random::bytes(SUBJECT_KEY_ID_BYTES, "drawing a subject key identifier")?;
    let no_sans = SubjectAltNames::default();
    let spec = CertificateSpec {
        serial: certificate::random_serial()?,
        organizations: if organization.is_empty() {
            vec![]
        } else {
            vec![organization.to_string()]
        },
        common_name: None,
        not_before: now,
        not_after: certificate::add_duration(now, CA_VALIDITY, "CA certificate")?,
        key_usage: KeyUsages::DigitalSignature | KeyUsages::KeyCertSign,
        usage: Some(Usage::ServerAndClient),
        is_ca: true,
        subject_key_id: Some(ski.to_vec()),
        sans: &no_sans,
        what: "CA certificate",
    };
    let der = certificate::issue(&spec, &key, Signer::SelfSigned)?;
    Ok(CaPair {
        crt: pem_text::to_base64(pem_text::encode("CERTIFICATE", &der).as_bytes()),
        key: pem_text::secret_to_base64(&key_pem),
    })
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

fn secret_value(s: &SecretString) -> Value {
    Value::String(s.expose().clone())
}

/// Zeroes every string of a value that held secrets on its way to the emitter.
pub(crate) fn scrub_value(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(scrub_value),
        Value::Object(m) => m.values_mut().for_each(scrub_value),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::*;
    use crate::certificate::CertInfo;

    const FIXTURE: &str = include_str!("../tests/fixtures/talosctl-secrets.yaml");

    /// Rebuilds a CA of the talosctl fixture from its own serial, validity, SKI and key:
    /// the to-be-signed part must match Go's byte for byte, and for the Ed25519 OS CA
    /// (deterministic signatures) the whole certificate must.
    fn rebuild(pair: &CaPair, organization: &str) -> (Vec<u8>, Vec<u8>) {
        let go_pem = pem_text::base64_to_secret_text(&pair.crt).unwrap();
        let go_der = crate::pem_text::first_block(go_pem.expose())
            .unwrap()
            .contents
            .to_vec();
        let (_, go) = X509Certificate::from_der(&go_der).unwrap();
        let key_pem = pem_text::base64_to_secret_text(pair.key.expose()).unwrap();
        let key = PrivateKey::from_pem(key_pem.expose()).unwrap();
        let info = CertInfo::from_der(&go_der).unwrap();
        let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t as u64);
        let no_sans = SubjectAltNames::default();
        let spec = CertificateSpec {
            serial: go.raw_serial().to_vec(),
            organizations: if organization.is_empty() {
                vec![]
            } else {
                vec![organization.into()]
            },
            common_name: None,
            not_before: at(info.not_before),
            not_after: at(info.not_after),
            key_usage: KeyUsages::DigitalSignature | KeyUsages::KeyCertSign,
            usage: Some(Usage::ServerAndClient),
            is_ca: true,
            subject_key_id: info.subject_key_id.clone(),
            sans: &no_sans,
            what: "test CA",
        };
        let ours = certificate::issue(&spec, &key, Signer::SelfSigned).unwrap();
        (ours, go_der)
    }

    #[test]
    fn certificates_are_laid_out_exactly_like_go() {
        let bundle = SecretsBundle::from_yaml(FIXTURE).unwrap_or_else(|e| panic!("{e}"));
        let (ours, go) = rebuild(&bundle.os, "talos");
        assert_eq!(ours, go, "Ed25519 OS CA: identical DER");
        for (pair, org) in [
            (&bundle.etcd, "etcd"),
            (&bundle.k8s, "kubernetes"),
            (&bundle.k8s_aggregator, ""),
        ] {
            let (ours, go) = rebuild(pair, org);
            let (_, a) = X509Certificate::from_der(&ours).unwrap();
            let (_, b) = X509Certificate::from_der(&go).unwrap();
            assert_eq!(
                a.tbs_certificate.as_ref(),
                b.tbs_certificate.as_ref(),
                "{org}: identical TBS"
            );
            a.verify_signature(None).unwrap();
        }
    }
}
