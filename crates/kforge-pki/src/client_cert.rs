//! The talosconfig client certificate: Ed25519, signed by the OS CA, Subject `O=<roles>` and
//! no CN, KeyUsage DigitalSignature, ExtKeyUsage exactly [ClientAuth] (apid rejects
//! anything else). Issuance is deterministic — key and serial come from HKDF-SHA256 over
//! the OS CA key and the request — so re-running genconfig with the same inputs yields the
//! same bytes, and [`client_cert_still_valid`] lets callers keep a cert instead of churning.

use std::time::{Duration, SystemTime};

use kforge_secret::SecretString;
use ring::hkdf;
use x509_cert::ext::pkix::KeyUsages;
use zeroize::Zeroizing;

use crate::bundle::SecretsBundle;
use crate::certificate::{self, CertInfo, CertificateSpec, Signer, SubjectAltNames, Usage};
use crate::error::PkiError;
use crate::keys::PrivateKey;
use crate::pem_text;

/// The role `talosctl gen config` puts in the admin certificate.
pub const DEFAULT_TALOS_ROLES: &[&str] = &["os:admin"];

/// `constants.TalosAPIDefaultCertificateValidityDuration`: one year.
pub const TALOS_CLIENT_CERT_DEFAULT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

const HKDF_SALT: &[u8] = b"kforge-pki talos client certificate";
const DERIVATION_VERSION: &[u8] = b"v1";

/// A certificate and its private key, both PEM text. Deliberately has no `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub crt_pem: String,
    pub key_pem: SecretString,
}

/// Issues the talosconfig client certificate for `roles` (e.g. [`DEFAULT_TALOS_ROLES`]),
/// valid from `not_before` (whole seconds) for `ttl`. The same bundle, roles (in any order),
/// `not_before` second and `ttl` give byte-identical certificate and key when the OS CA is
/// Ed25519 (as Talos makes it; ECDSA CA signatures are randomized).
pub fn issue_talos_client_cert(
    bundle: &SecretsBundle,
    roles: &[&str],
    not_before: SystemTime,
    ttl: Duration,
) -> Result<IssuedCertificate, PkiError> {
    let roles = normalize_roles(roles)?;
    let what = "talosconfig client certificate";
    let nb_secs = not_before
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| PkiError::Validity {
            what,
            detail: "NotBefore lies before 1970".into(),
        })?
        .as_secs();
    let ttl_secs = ttl.as_secs();
    if ttl_secs == 0 {
        return Err(PkiError::Validity {
            what,
            detail: "the lifetime must be at least one second".into(),
        });
    }
    let not_before = SystemTime::UNIX_EPOCH + Duration::from_secs(nb_secs);
    let not_after = certificate::add_duration(not_before, Duration::from_secs(ttl_secs), what)?;

    let ca = bundle.os_ca("issue the talosconfig client certificate")?;

    // The request, unambiguously encoded: version, roles (length-prefixed), times.
    let mut info = Vec::new();
    info.extend_from_slice(DERIVATION_VERSION);
    info.extend_from_slice(&(roles.len() as u64).to_be_bytes());
    for role in &roles {
        info.extend_from_slice(&(role.len() as u64).to_be_bytes());
        info.extend_from_slice(role.as_bytes());
    }
    info.extend_from_slice(&nb_secs.to_be_bytes());
    info.extend_from_slice(&ttl_secs.to_be_bytes());

    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(ca.key.pkcs8_der());
    let mut seed = Zeroizing::new([0u8; 32]);
    expand(&prk, &[&info, b"ed25519 key"], seed.as_mut())?;
    let mut serial = [0u8; 16];
    expand(&prk, &[&info, b"serial"], &mut serial)?;
    // Positive, exactly 16 bytes, below 2^128 like siderolabs/crypto's serials.
    serial[0] = (serial[0] & 0x7f) | 0x40;

    let (key, key_pem) = PrivateKey::ed25519_from_seed(&seed)?;
    let no_sans = SubjectAltNames::default();
    let spec = CertificateSpec {
        serial: serial.to_vec(),
        organizations: roles,
        common_name: None,
        not_before,
        not_after,
        key_usage: KeyUsages::DigitalSignature.into(),
        usage: Some(Usage::Client),
        is_ca: false,
        subject_key_id: None,
        sans: &no_sans,
        what,
    };
    let der = certificate::issue(&spec, &key, Signer::Ca(&ca))?;
    Ok(IssuedCertificate {
        crt_pem: pem_text::encode("CERTIFICATE", &der),
        key_pem,
    })
}

/// Whether an existing client certificate can be kept: it chains to this bundle's OS CA
/// (issuer name and signature), its ExtKeyUsage is exactly ClientAuth, `key_pem` is its
/// private key, it is valid at `now` and stays valid for at least `min_remaining`.
pub fn client_cert_still_valid(
    bundle: &SecretsBundle,
    crt_pem: &str,
    key_pem: &SecretString,
    now: SystemTime,
    min_remaining: Duration,
) -> bool {
    let Ok(ca_pem) = bundle.os_ca_crt_pem() else {
        return false;
    };
    let Ok(ca) = CertInfo::from_pem(&ca_pem) else {
        return false;
    };
    let Ok(cert) = CertInfo::from_pem(crt_pem) else {
        return false;
    };
    let Ok(key) = PrivateKey::from_pem(key_pem.expose()) else {
        return false;
    };
    let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
        return false;
    };
    let (Ok(now), Ok(remaining)) = (
        i64::try_from(now.as_secs()),
        i64::try_from(min_remaining.as_secs()),
    ) else {
        return false;
    };
    cert.is_signed_by(&ca)
        && cert.client_auth_only
        && !cert.is_ca
        && key.public_key() == cert.public_key.as_slice()
        && cert.not_before <= now
        && now
            .checked_add(remaining)
            .is_some_and(|end| end <= cert.not_after)
}

/// Sorted, de-duplicated, non-empty roles (Go's `role.Set.Strings()` is sorted too).
fn normalize_roles(roles: &[&str]) -> Result<Vec<String>, PkiError> {
    if roles.is_empty() {
        return Err(PkiError::InvalidRoles {
            detail: "no role given".into(),
        });
    }
    let mut out: Vec<String> = Vec::new();
    for role in roles {
        if role.is_empty() || role.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(PkiError::InvalidRoles {
                detail: format!("`{}` is not a role name", role.escape_debug()),
            });
        }
        out.push((*role).to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

struct OutputLen(usize);

impl hkdf::KeyType for OutputLen {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(prk: &hkdf::Prk, info: &[&[u8]], out: &mut [u8]) -> Result<(), PkiError> {
    prk.expand(info, OutputLen(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| PkiError::KeyGeneration {
            what: "the talosconfig client key",
            detail: "HKDF expansion failed".into(),
        })
}
