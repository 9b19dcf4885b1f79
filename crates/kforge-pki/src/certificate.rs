//! Building, signing and reading X.509 certificates laid out as Go's `crypto/x509` lays
//! them out for Talos: subject attributes in Go's order with all organizations in one RDN,
//! extensions in Go's order (KeyUsage, ExtKeyUsage, BasicConstraints, SKI, AKI, SAN), the
//! issuer name copied byte for byte from the CA's subject (Go and rustls match issuers by
//! raw bytes), AKI only on issued certificates.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use kforge_secret::SecretString;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::der::asn1::{
    Any, BitString, GeneralizedTime, Ia5String, ObjectIdentifier, OctetString, PrintableStringRef,
    SetOfVec, UtcTime, Utf8StringRef,
};
use x509_cert::der::flagset::FlagSet;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::PkiError;
use crate::keys::{KeyAlgorithm, PrivateKey};
use crate::pem_text;
use crate::random;

const OID_ORGANIZATION: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
const OID_COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_KP_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const OID_KP_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");
const OID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const OID_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const OID_AUTHORITY_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
const OID_SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");

/// What a certificate may be used for (ExtKeyUsage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Usage {
    Server,
    Client,
    ServerAndClient,
}

/// The subject alternative names of a leaf certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectAltNames {
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl SubjectAltNames {
    /// Sorts each host into IP addresses and DNS names (IPv6 may be bracketed).
    pub fn from_hosts<S: AsRef<str>>(hosts: &[S], what: &'static str) -> Result<Self, PkiError> {
        let mut sans = SubjectAltNames::default();
        for h in hosts {
            sans.push_host(h.as_ref(), what)?;
        }
        Ok(sans)
    }

    /// Adds one host unless it is already present.
    pub fn push_host(&mut self, host: &str, what: &'static str) -> Result<(), PkiError> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            if !self.ips.contains(&ip) {
                self.ips.push(ip);
            }
            return Ok(());
        }
        if !is_dns_name(host) {
            return Err(PkiError::InvalidHost {
                value: host.to_string(),
                what,
            });
        }
        if !self.dns_names.iter().any(|d| d == host) {
            self.dns_names.push(host.to_string());
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.dns_names.is_empty() && self.ips.is_empty()
    }
}

/// Host names as certificates carry them: ASCII labels of letters, digits, `-` and `_`,
/// optionally a leading `*.` wildcard.
fn is_dns_name(s: &str) -> bool {
    let body = s.strip_prefix("*.").unwrap_or(s);
    !body.is_empty()
        && s.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

/// Everything about a certificate except who signs it.
pub(crate) struct CertificateSpec<'a> {
    /// Unsigned big-endian serial number.
    pub serial: Vec<u8>,
    pub organizations: Vec<String>,
    pub common_name: Option<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub key_usage: FlagSet<KeyUsages>,
    pub usage: Option<Usage>,
    pub is_ca: bool,
    pub subject_key_id: Option<Vec<u8>>,
    pub sans: &'a SubjectAltNames,
    /// Names the certificate in error messages.
    pub what: &'static str,
}

/// A CA certificate together with its key, ready to issue.
pub(crate) struct CertificateAuthority {
    /// The bundle path of the CA (`certs.os`), for messages.
    pub slot: &'static str,
    pub subject_der: Vec<u8>,
    pub subject_key_id: Option<Vec<u8>>,
    pub key: PrivateKey,
}

impl CertificateAuthority {
    /// Loads a CA from the base64-of-PEM pair a bundle stores.
    pub(crate) fn from_bundle(
        slot: &'static str,
        crt_b64: &str,
        key_b64: &SecretString,
        operation: &'static str,
    ) -> Result<CertificateAuthority, PkiError> {
        let field = |suffix: &str, problem: String| PkiError::BundleField {
            field: format!("{slot}.{suffix}"),
            operation,
            problem,
        };
        let cert_pem = pem_text::base64_to_secret_text(crt_b64).map_err(|p| field("crt", p))?;
        let info =
            CertInfo::from_pem(cert_pem.expose()).map_err(|p| field("crt", p.to_string()))?;
        let key_pem =
            pem_text::base64_to_secret_text(key_b64.expose()).map_err(|p| field("key", p))?;
        let key =
            PrivateKey::from_pem(key_pem.expose()).map_err(|p| field("key", p.to_string()))?;
        if key.public_key() != info.public_key {
            return Err(field(
                "key",
                "is not the private key of the CA certificate".into(),
            ));
        }
        Ok(CertificateAuthority {
            slot,
            subject_der: info.subject_der,
            subject_key_id: info.subject_key_id,
            key,
        })
    }
}

/// Who signs: the subject's own key (a root CA) or an issuing CA.
pub(crate) enum Signer<'a> {
    SelfSigned,
    Ca(&'a CertificateAuthority),
}

/// Builds and signs a certificate; returns its DER.
pub(crate) fn issue(
    spec: &CertificateSpec<'_>,
    subject_key: &PrivateKey,
    signer: Signer<'_>,
) -> Result<Vec<u8>, PkiError> {
    let subject = go_subject(&spec.organizations, spec.common_name.as_deref())?;
    let (issuer, signing_key, authority_key_id) = match signer {
        Signer::SelfSigned => (subject.clone(), subject_key, None),
        Signer::Ca(ca) => {
            let issuer = Name::from_der(&ca.subject_der).map_err(|e| PkiError::BundleField {
                field: format!("{}.crt", ca.slot),
                operation: "issue certificates",
                problem: format!("its subject name cannot be decoded ({e})"),
            })?;
            let reencoded = issuer
                .to_der()
                .map_err(|e| PkiError::encoding("an issuer name", e))?;
            if reencoded != ca.subject_der {
                return Err(PkiError::BundleField {
                    field: format!("{}.crt", ca.slot),
                    operation: "issue certificates",
                    problem: "its subject name is not canonical DER, so it cannot be reproduced as an issuer name".into(),
                });
            }
            (issuer, &ca.key, ca.subject_key_id.clone())
        }
    };

    let mut extensions = Vec::new();
    if !spec.key_usage.is_empty() {
        extensions.push(extension(OID_KEY_USAGE, true, &KeyUsage(spec.key_usage))?);
    }
    if let Some(usage) = spec.usage {
        let oids = match usage {
            Usage::Server => vec![OID_KP_SERVER_AUTH],
            Usage::Client => vec![OID_KP_CLIENT_AUTH],
            Usage::ServerAndClient => vec![OID_KP_SERVER_AUTH, OID_KP_CLIENT_AUTH],
        };
        extensions.push(extension(
            OID_EXT_KEY_USAGE,
            false,
            &ExtendedKeyUsage(oids),
        )?);
    }
    if spec.is_ca {
        let bc = BasicConstraints {
            ca: true,
            path_len_constraint: None,
        };
        extensions.push(extension(OID_BASIC_CONSTRAINTS, true, &bc)?);
    }
    if let Some(ski) = &spec.subject_key_id {
        let ski = SubjectKeyIdentifier(octets(ski)?);
        extensions.push(extension(OID_SUBJECT_KEY_ID, false, &ski)?);
    }
    if let Some(aki) = authority_key_id {
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(octets(&aki)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        };
        extensions.push(extension(OID_AUTHORITY_KEY_ID, false, &aki)?);
    }
    if !spec.sans.is_empty() {
        let mut names = Vec::new();
        for dns in &spec.sans.dns_names {
            let ia5 = Ia5String::new(dns).map_err(|e| PkiError::encoding("a DNS name", e))?;
            names.push(GeneralName::DnsName(ia5));
        }
        for ip in &spec.sans.ips {
            let bytes = match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            names.push(GeneralName::IpAddress(octets(&bytes)?));
        }
        // Go marks the SAN critical only when the subject is empty (RFC 5280 4.2.1.6).
        let critical = subject.0.is_empty();
        extensions.push(extension(
            OID_SUBJECT_ALT_NAME,
            critical,
            &SubjectAltName(names),
        )?);
    }

    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&spec.serial)
            .map_err(|e| PkiError::encoding("a serial number", e))?,
        signature: signing_key.signature_algorithm(),
        issuer,
        validity: Validity {
            not_before: x509_time(spec.not_before, spec.what)?,
            not_after: x509_time(spec.not_after, spec.what)?,
        },
        subject,
        subject_public_key_info: subject_key.subject_public_key_info()?,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let tbs_der = tbs
        .to_der()
        .map_err(|e| PkiError::encoding("a certificate", e))?;
    let signature = signing_key.sign(&tbs_der)?;
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: signing_key.signature_algorithm(),
        signature: BitString::from_bytes(&signature)
            .map_err(|e| PkiError::encoding("a signature", e))?,
    };
    cert.to_der()
        .map_err(|e| PkiError::encoding("a certificate", e))
}

fn extension<T: Encode>(
    oid: ObjectIdentifier,
    critical: bool,
    value: &T,
) -> Result<Extension, PkiError> {
    let der = value
        .to_der()
        .map_err(|e| PkiError::encoding("a certificate extension", e))?;
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: octets(&der)?,
    })
}

fn octets(bytes: &[u8]) -> Result<OctetString, PkiError> {
    OctetString::new(bytes).map_err(|e| PkiError::encoding("an octet string", e))
}

/// Go's subject layout: one RDN holding every organization, then one for the common name;
/// PrintableString where the characters allow it, else UTF8String.
fn go_subject(organizations: &[String], common_name: Option<&str>) -> Result<Name, PkiError> {
    let mut rdns = Vec::new();
    if !organizations.is_empty() {
        let mut values = Vec::new();
        for o in organizations {
            values.push(AttributeTypeAndValue {
                oid: OID_ORGANIZATION,
                value: go_string(o)?,
            });
        }
        let set =
            SetOfVec::try_from(values).map_err(|e| PkiError::encoding("a subject name", e))?;
        rdns.push(RelativeDistinguishedName(set));
    }
    if let Some(cn) = common_name {
        let value = AttributeTypeAndValue {
            oid: OID_COMMON_NAME,
            value: go_string(cn)?,
        };
        let set =
            SetOfVec::try_from(vec![value]).map_err(|e| PkiError::encoding("a subject name", e))?;
        rdns.push(RelativeDistinguishedName(set));
    }
    Ok(RdnSequence(rdns))
}

fn go_string(s: &str) -> Result<Any, PkiError> {
    let printable = s.bytes().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b' ' | b'\'' | b'(' | b')' | b'+' | b',' | b'-' | b'.' | b'/' | b':' | b'=' | b'?'
            )
    });
    let any = if printable {
        PrintableStringRef::new(s).and_then(|p| Any::encode_from(&p))
    } else {
        Utf8StringRef::new(s).and_then(|u| Any::encode_from(&u))
    };
    any.map_err(|e| PkiError::encoding("a subject name", e))
}

/// Whole seconds since the epoch, as UTCTime until 2049 and GeneralizedTime after (RFC
/// 5280, and what Go does).
fn x509_time(t: SystemTime, what: &'static str) -> Result<Time, PkiError> {
    let since = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| PkiError::Validity {
            what,
            detail: "the time lies before 1970".into(),
        })?;
    let secs = Duration::from_secs(since.as_secs());
    if let Ok(utc) = UtcTime::from_unix_duration(secs) {
        return Ok(Time::UtcTime(utc));
    }
    GeneralizedTime::from_unix_duration(secs)
        .map(Time::GeneralTime)
        .map_err(|_| PkiError::Validity {
            what,
            detail: "the time lies after the year 9999".into(),
        })
}

/// `now + ttl`, failing instead of overflowing.
pub(crate) fn add_duration(
    t: SystemTime,
    d: Duration,
    what: &'static str,
) -> Result<SystemTime, PkiError> {
    t.checked_add(d).ok_or(PkiError::Validity {
        what,
        detail: "the end of validity overflows".into(),
    })
}

/// A random serial below 2^128, as `siderolabs/crypto` `NewSerialNumber` draws it.
pub(crate) fn random_serial() -> Result<Vec<u8>, PkiError> {
    Ok(random::bytes(16, "drawing a certificate serial number")?.to_vec())
}

/// The fields of a parsed certificate that kforge checks.
pub(crate) struct CertInfo {
    pub der: Vec<u8>,
    pub subject_der: Vec<u8>,
    pub issuer_der: Vec<u8>,
    /// The SubjectPublicKeyInfo bit string (compare with [`PrivateKey::public_key`]).
    pub public_key: Vec<u8>,
    pub key_algorithm: Option<KeyAlgorithm>,
    pub is_ca: bool,
    pub subject_key_id: Option<Vec<u8>>,
    pub not_before: i64,
    pub not_after: i64,
    /// ExtKeyUsage is exactly [ClientAuth] (what apid demands of client certificates).
    pub client_auth_only: bool,
}

/// Why a certificate PEM could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CertParseError {
    BadPem(String),
    BadCertificate(String),
}

impl std::fmt::Display for CertParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertParseError::BadPem(d) => write!(f, "does not hold a PEM certificate ({d})"),
            CertParseError::BadCertificate(d) => {
                write!(f, "holds a certificate that cannot be parsed ({d})")
            }
        }
    }
}

impl CertInfo {
    /// Reads the first PEM block, which must be a `CERTIFICATE`.
    pub(crate) fn from_pem(text: &str) -> Result<CertInfo, CertParseError> {
        let block = pem_text::first_block(text).map_err(CertParseError::BadPem)?;
        if block.label != "CERTIFICATE" {
            return Err(CertParseError::BadPem(format!(
                "found a `{}` block, expected `CERTIFICATE`",
                block.label
            )));
        }
        Self::from_der(&block.contents)
    }

    pub(crate) fn from_der(der: &[u8]) -> Result<CertInfo, CertParseError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| CertParseError::BadCertificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertParseError::BadCertificate(
                "trailing bytes after the certificate".into(),
            ));
        }
        let spki = cert.public_key();
        let alg = spki.algorithm.algorithm.to_id_string();
        let key_algorithm = match alg.as_str() {
            "1.3.101.112" => Some(KeyAlgorithm::Ed25519),
            "1.2.840.113549.1.1.1" => Some(KeyAlgorithm::Rsa),
            "1.2.840.10045.2.1" => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string());
                (curve.as_deref() == Some("1.2.840.10045.3.1.7")).then_some(KeyAlgorithm::EcdsaP256)
            }
            _ => None,
        };
        let is_ca = cert
            .basic_constraints()
            .map_err(|e| CertParseError::BadCertificate(e.to_string()))?
            .is_some_and(|bc| bc.value.ca);
        let subject_key_id = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(kid) => {
                    Some(kid.0.to_vec())
                }
                _ => None,
            });
        let client_auth_only = cert
            .extended_key_usage()
            .map_err(|e| CertParseError::BadCertificate(e.to_string()))?
            .is_some_and(|eku| {
                let e = eku.value;
                e.client_auth
                    && !e.any
                    && !e.server_auth
                    && !e.code_signing
                    && !e.email_protection
                    && !e.time_stamping
                    && !e.ocsp_signing
                    && e.other.is_empty()
            });
        Ok(CertInfo {
            der: der.to_vec(),
            subject_der: cert.subject().as_raw().to_vec(),
            issuer_der: cert.issuer().as_raw().to_vec(),
            public_key: spki.subject_public_key.data.to_vec(),
            key_algorithm,
            is_ca,
            subject_key_id,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            client_auth_only,
        })
    }

    /// Whether `issuer` signed this certificate (names match byte for byte and the
    /// signature verifies with the issuer's public key).
    pub(crate) fn is_signed_by(&self, issuer: &CertInfo) -> bool {
        if self.issuer_der != issuer.subject_der {
            return false;
        }
        let (Ok((_, cert)), Ok((_, ca))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&issuer.der),
        ) else {
            return false;
        };
        cert.verify_signature(Some(ca.public_key())).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_sort_into_ips_and_names() {
        let sans = SubjectAltNames::from_hosts(
            &[
                "10.0.0.1",
                "[fd00::1]",
                "node-1.example",
                "10.0.0.1",
                "*.svc",
            ],
            "test",
        )
        .unwrap();
        assert_eq!(sans.ips.len(), 2);
        assert_eq!(sans.dns_names, vec!["node-1.example", "*.svc"]);
        assert!(SubjectAltNames::from_hosts(&["bad name"], "test").is_err());
        assert!(SubjectAltNames::from_hosts(&["a..b"], "test").is_err());
        assert!(SubjectAltNames::from_hosts(&["ünicode.example"], "test").is_err());
    }

    #[test]
    fn key_usage_bits_match_go() {
        // Go encodes CertSign|DigitalSignature as BIT STRING 03 02 02 84.
        let ku = KeyUsage(KeyUsages::DigitalSignature | KeyUsages::KeyCertSign);
        assert_eq!(ku.to_der().unwrap(), vec![0x03, 0x02, 0x02, 0x84]);
        let ku = KeyUsage(KeyUsages::DigitalSignature.into());
        assert_eq!(ku.to_der().unwrap(), vec![0x03, 0x02, 0x07, 0x80]);
        let ku = KeyUsage(KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment);
        assert_eq!(ku.to_der().unwrap(), vec![0x03, 0x02, 0x05, 0xa0]);
    }

    #[test]
    fn subject_puts_all_organizations_in_one_rdn() {
        let name = go_subject(&["os:reader".into(), "os:admin".into()], Some("x")).unwrap();
        assert_eq!(name.0.len(), 2);
        assert_eq!(name.0[0].0.len(), 2);
        // "talos" is a PrintableString, "ü" needs UTF8String.
        let printable = go_subject(&["talos".into()], None)
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(
            printable,
            vec![
                0x30, 0x10, 0x31, 0x0e, 0x30, 0x0c, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x13, 0x05, b't',
                b'a', b'l', b'o', b's'
            ]
        );
        let utf8 = go_subject(&["ü".into()], None).unwrap().to_der().unwrap();
        assert_eq!(utf8[11], 0x0c);
        assert_eq!(
            go_subject(&[], None).unwrap().to_der().unwrap(),
            vec![0x30, 0x00]
        );
    }

    #[test]
    fn times_switch_to_generalized_in_2050() {
        let t2049 = SystemTime::UNIX_EPOCH + Duration::from_secs(2_524_607_999);
        assert!(matches!(x509_time(t2049, "t").unwrap(), Time::UtcTime(_)));
        let t2050 = SystemTime::UNIX_EPOCH + Duration::from_secs(2_524_608_000);
        assert!(matches!(
            x509_time(t2050, "t").unwrap(),
            Time::GeneralTime(_)
        ));
        assert!(x509_time(SystemTime::UNIX_EPOCH - Duration::from_secs(1), "t").is_err());
    }
}
