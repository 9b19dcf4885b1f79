//! Private keys in the PEM forms Talos reads and writes: `ED25519 PRIVATE KEY` (PKCS#8),
//! `EC PRIVATE KEY` (SEC1), `RSA PRIVATE KEY` (PKCS#1) and generic `PRIVATE KEY` (PKCS#8).
//! Internally every key is held as PKCS#8 DER (what ring signs with) plus its raw public
//! key (the bytes a certificate's SubjectPublicKeyInfo carries), so matching a key to a
//! certificate is a byte comparison.

use std::fmt;

use kforge_secret::SecretString;
use pkcs8::der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use pkcs8::der::{Decode, Encode};
use pkcs8::{AlgorithmIdentifierRef, PrivateKeyInfo};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use rsa::pkcs1::EncodeRsaPrivateKey;
use x509_cert::der::asn1::{Any, BitString};
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use zeroize::Zeroizing;

use crate::error::PkiError;
use crate::pem_text;
use crate::random;

pub(crate) const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
pub(crate) const OID_EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub(crate) const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub(crate) const OID_RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

pub(crate) const PEM_ED25519: &str = "ED25519 PRIVATE KEY";
pub(crate) const PEM_EC: &str = "EC PRIVATE KEY";
pub(crate) const PEM_RSA: &str = "RSA PRIVATE KEY";
pub(crate) const PEM_PKCS8: &str = "PRIVATE KEY";

/// Bits of the RSA service-account key Talos generates (`x509.NewRSAKey`).
pub(crate) const RSA_SERVICE_ACCOUNT_BITS: usize = 4096;

/// The key algorithms Talos bundles use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Ed25519,
    EcdsaP256,
    Rsa,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::Ed25519 => "Ed25519",
            KeyAlgorithm::EcdsaP256 => "ECDSA P-256",
            KeyAlgorithm::Rsa => "RSA",
        })
    }
}

/// Why a PEM text is not a usable private key. Messages never contain key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyParseError {
    /// No PEM block could be read at all.
    NotPem(String),
    /// Proc-Type/DEK-Info headers: a passphrase-protected key.
    Encrypted,
    /// A PEM block whose label is not a private key Talos understands.
    UnsupportedLabel(String),
    /// The label promises one key type and the content holds another (or another format).
    WrongType { label: String, found: String },
    /// The content cannot be decoded in the format its label promises.
    Malformed { label: String, detail: String },
    /// An elliptic curve other than P-256, or an algorithm kforge cannot sign with.
    UnsupportedAlgorithm { label: String, detail: String },
}

impl fmt::Display for KeyParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyParseError::NotPem(detail) => write!(f, "is not PEM text ({detail})"),
            KeyParseError::Encrypted => write!(
                f,
                "is an encrypted (passphrase-protected) PEM key; Talos needs it unencrypted"
            ),
            KeyParseError::UnsupportedLabel(label) => write!(
                f,
                "holds a `{label}` PEM block; expected one of `{PEM_ED25519}`, `{PEM_EC}`, `{PEM_RSA}` or `{PEM_PKCS8}`"
            ),
            KeyParseError::WrongType { label, found } => {
                write!(f, "is labelled `{label}` but holds {found}")
            }
            KeyParseError::Malformed { label, detail } => {
                write!(f, "cannot be decoded as `{label}`: {detail}")
            }
            KeyParseError::UnsupportedAlgorithm { label, detail } => {
                write!(f, "holds a `{label}` kforge cannot use: {detail}")
            }
        }
    }
}

/// A private key ready to sign, with its public half.
pub(crate) struct PrivateKey {
    algorithm: KeyAlgorithm,
    pkcs8: Zeroizing<Vec<u8>>,
    public_key: Vec<u8>,
}

impl PrivateKey {
    pub(crate) fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The public key as a certificate's SubjectPublicKeyInfo carries it: 32 bytes for
    /// Ed25519, the uncompressed point for P-256, the PKCS#1 `RSAPublicKey` DER for RSA.
    pub(crate) fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// The PKCS#8 DER; input key material for derivations.
    pub(crate) fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// A fresh Ed25519 key, PEM-encoded the way Talos writes it.
    pub(crate) fn generate_ed25519() -> Result<(PrivateKey, SecretString), PkiError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        random::fill(seed.as_mut(), "generating an Ed25519 key")?;
        Self::ed25519_from_seed(&seed)
    }

    /// The Ed25519 key for a 32-byte seed, and its PEM (`ED25519 PRIVATE KEY`, PKCS#8 v1
    /// without the public key, as Go's `x509.MarshalPKCS8PrivateKey` writes it).
    pub(crate) fn ed25519_from_seed(
        seed: &[u8; 32],
    ) -> Result<(PrivateKey, SecretString), PkiError> {
        let inner = Zeroizing::new(
            OctetStringRef::new(seed)
                .and_then(|o| o.to_der())
                .map_err(|e| PkiError::encoding("an Ed25519 private key", e))?,
        );
        let info = PrivateKeyInfo {
            algorithm: AlgorithmIdentifierRef {
                oid: OID_ED25519,
                parameters: None,
            },
            private_key: &inner,
            public_key: None,
        };
        let der = Zeroizing::new(
            info.to_der()
                .map_err(|e| PkiError::encoding("an Ed25519 private key", e))?,
        );
        let key = Self::from_pkcs8(KeyAlgorithm::Ed25519, der.to_vec()).map_err(|detail| {
            PkiError::KeyRejected {
                what: "a generated Ed25519 key",
                detail,
            }
        })?;
        let pem = pem_text::encode_secret(PEM_ED25519, &der);
        Ok((key, pem))
    }

    /// A fresh ECDSA P-256 key and its PEM (`EC PRIVATE KEY`, SEC1 with the named curve and
    /// the public key, as Go's `x509.MarshalECPrivateKey` writes it).
    pub(crate) fn generate_p256() -> Result<(PrivateKey, SecretString), PkiError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| PkiError::Random {
                operation: "generating an ECDSA P-256 key",
            })?;
        let pkcs8 = Zeroizing::new(doc.as_ref().to_vec());
        let key = Self::from_pkcs8(KeyAlgorithm::EcdsaP256, pkcs8.to_vec()).map_err(|detail| {
            PkiError::KeyRejected {
                what: "a generated P-256 key",
                detail,
            }
        })?;
        let sec1 = pkcs8_to_sec1_with_curve(&pkcs8)
            .map_err(|e| PkiError::encoding("an ECDSA P-256 private key", e))?;
        let pem = pem_text::encode_secret(PEM_EC, &sec1);
        Ok((key, pem))
    }

    /// A fresh RSA key and its PEM (`RSA PRIVATE KEY`, PKCS#1).
    pub(crate) fn generate_rsa(bits: usize) -> Result<(PrivateKey, SecretString), PkiError> {
        let mut rng = rand::rngs::OsRng;
        let rsa_key =
            rsa::RsaPrivateKey::new(&mut rng, bits).map_err(|e| PkiError::KeyGeneration {
                what: "an RSA key",
                detail: e.to_string(),
            })?;
        let pkcs1 = rsa_key
            .to_pkcs1_der()
            .map_err(|e| PkiError::KeyGeneration {
                what: "an RSA key",
                detail: e.to_string(),
            })?;
        let pkcs8 = rsa_pkcs1_to_pkcs8(pkcs1.as_bytes())
            .map_err(|e| PkiError::encoding("an RSA private key", e))?;
        let key = Self::from_pkcs8(KeyAlgorithm::Rsa, pkcs8.to_vec()).map_err(|detail| {
            PkiError::KeyRejected {
                what: "a generated RSA key",
                detail,
            }
        })?;
        let pem = pem_text::encode_secret(PEM_RSA, pkcs1.as_bytes());
        Ok((key, pem))
    }

    /// A fresh key of the given algorithm (RSA keys get `rsa_bits`).
    pub(crate) fn generate(
        algorithm: KeyAlgorithm,
        rsa_bits: usize,
    ) -> Result<(PrivateKey, SecretString), PkiError> {
        match algorithm {
            KeyAlgorithm::Ed25519 => Self::generate_ed25519(),
            KeyAlgorithm::EcdsaP256 => Self::generate_p256(),
            KeyAlgorithm::Rsa => Self::generate_rsa(rsa_bits),
        }
    }

    /// Reads the first PEM block of `text` the way Talos (`siderolabs/crypto`) does: the
    /// label decides the format, and the content must be that format.
    pub(crate) fn from_pem(text: &str) -> Result<PrivateKey, KeyParseError> {
        let block = pem_text::first_block(text).map_err(KeyParseError::NotPem)?;
        if block.encrypted {
            return Err(KeyParseError::Encrypted);
        }
        let label = block.label.clone();
        let der = block.contents;
        match label.as_str() {
            PEM_ED25519 => {
                let (alg, pkcs8) = classify_pkcs8(&label, &der)?;
                if alg != KeyAlgorithm::Ed25519 {
                    return Err(KeyParseError::WrongType {
                        label,
                        found: format!("a PKCS#8 {alg} key"),
                    });
                }
                Self::from_pkcs8(alg, pkcs8)
                    .map_err(|detail| KeyParseError::Malformed { label, detail })
            }
            PEM_PKCS8 => {
                let (alg, pkcs8) = classify_pkcs8(&label, &der)?;
                Self::from_pkcs8(alg, pkcs8)
                    .map_err(|detail| KeyParseError::Malformed { label, detail })
            }
            PEM_EC => {
                let pkcs8 = sec1_to_pkcs8(&label, &der)?;
                Self::from_pkcs8(KeyAlgorithm::EcdsaP256, pkcs8.to_vec())
                    .map_err(|detail| KeyParseError::Malformed { label, detail })
            }
            PEM_RSA => {
                if let Err(e) = rsa::pkcs1::RsaPrivateKey::from_der(&der) {
                    return Err(match PrivateKeyInfo::from_der(&der) {
                        Ok(_) => KeyParseError::WrongType {
                            label,
                            found: "a PKCS#8 key (expected PKCS#1)".into(),
                        },
                        Err(_) => KeyParseError::Malformed {
                            label,
                            detail: e.to_string(),
                        },
                    });
                }
                let pkcs8 = rsa_pkcs1_to_pkcs8(&der).map_err(|e| KeyParseError::Malformed {
                    label: label.clone(),
                    detail: e.to_string(),
                })?;
                Self::from_pkcs8(KeyAlgorithm::Rsa, pkcs8.to_vec())
                    .map_err(|detail| KeyParseError::Malformed { label, detail })
            }
            _ => Err(KeyParseError::UnsupportedLabel(label)),
        }
    }

    /// Loads PKCS#8 DER into ring once, to validate it and learn the public key.
    fn from_pkcs8(algorithm: KeyAlgorithm, pkcs8: Vec<u8>) -> Result<PrivateKey, String> {
        let pkcs8 = Zeroizing::new(pkcs8);
        let public_key = match algorithm {
            KeyAlgorithm::Ed25519 => Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
                .map_err(|e| e.to_string())?
                .public_key()
                .as_ref()
                .to_vec(),
            KeyAlgorithm::EcdsaP256 => EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &pkcs8,
                &SystemRandom::new(),
            )
            .map_err(|e| e.to_string())?
            .public_key()
            .as_ref()
            .to_vec(),
            KeyAlgorithm::Rsa => RsaKeyPair::from_pkcs8(&pkcs8)
                .map_err(|e| e.to_string())?
                .public_key()
                .as_ref()
                .to_vec(),
        };
        Ok(PrivateKey {
            algorithm,
            pkcs8,
            public_key,
        })
    }

    pub(crate) fn subject_public_key_info(&self) -> Result<SubjectPublicKeyInfoOwned, PkiError> {
        let algorithm = match self.algorithm {
            KeyAlgorithm::Ed25519 => AlgorithmIdentifierOwned {
                oid: OID_ED25519,
                parameters: None,
            },
            KeyAlgorithm::EcdsaP256 => AlgorithmIdentifierOwned {
                oid: OID_EC_PUBLIC_KEY,
                parameters: Some(
                    Any::encode_from(&OID_P256)
                        .map_err(|e| PkiError::encoding("a public key", e))?,
                ),
            },
            KeyAlgorithm::Rsa => AlgorithmIdentifierOwned {
                oid: OID_RSA_ENCRYPTION,
                parameters: Some(Any::from(AnyRef::NULL)),
            },
        };
        let subject_public_key = BitString::from_bytes(&self.public_key)
            .map_err(|e| PkiError::encoding("a public key", e))?;
        Ok(SubjectPublicKeyInfoOwned {
            algorithm,
            subject_public_key,
        })
    }

    /// The algorithm identifier of signatures this key makes (what Go picks for it).
    pub(crate) fn signature_algorithm(&self) -> AlgorithmIdentifierOwned {
        match self.algorithm {
            KeyAlgorithm::Ed25519 => AlgorithmIdentifierOwned {
                oid: OID_ED25519,
                parameters: None,
            },
            KeyAlgorithm::EcdsaP256 => AlgorithmIdentifierOwned {
                oid: OID_ECDSA_WITH_SHA256,
                parameters: None,
            },
            KeyAlgorithm::Rsa => AlgorithmIdentifierOwned {
                oid: OID_SHA256_WITH_RSA,
                parameters: Some(Any::from(AnyRef::NULL)),
            },
        }
    }

    /// Signs `message`. Ed25519 signatures are deterministic; ECDSA and RSA go through ring.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        let rng = SystemRandom::new();
        let rejected = |detail: String| PkiError::KeyRejected {
            what: "a signing key",
            detail,
        };
        match self.algorithm {
            KeyAlgorithm::Ed25519 => {
                let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.pkcs8)
                    .map_err(|e| rejected(e.to_string()))?;
                Ok(kp.sign(message).as_ref().to_vec())
            }
            KeyAlgorithm::EcdsaP256 => {
                let kp = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &self.pkcs8,
                    &rng,
                )
                .map_err(|e| rejected(e.to_string()))?;
                let sig = kp.sign(&rng, message).map_err(|_| PkiError::Random {
                    operation: "making an ECDSA signature",
                })?;
                Ok(sig.as_ref().to_vec())
            }
            KeyAlgorithm::Rsa => {
                let kp =
                    RsaKeyPair::from_pkcs8(&self.pkcs8).map_err(|e| rejected(e.to_string()))?;
                let mut sig = vec![0u8; kp.public().modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| PkiError::Random {
                        operation: "making an RSA signature",
                    })?;
                Ok(sig)
            }
        }
    }
}

/// Decodes PKCS#8 and tells which of the supported algorithms it holds.
fn classify_pkcs8(label: &str, der: &[u8]) -> Result<(KeyAlgorithm, Vec<u8>), KeyParseError> {
    let info = PrivateKeyInfo::from_der(der).map_err(|e| {
        if sec1::EcPrivateKey::from_der(der).is_ok() {
            KeyParseError::WrongType {
                label: label.to_string(),
                found: "a SEC1 EC key (expected PKCS#8)".into(),
            }
        } else if rsa::pkcs1::RsaPrivateKey::from_der(der).is_ok() {
            KeyParseError::WrongType {
                label: label.to_string(),
                found: "a PKCS#1 RSA key (expected PKCS#8)".into(),
            }
        } else {
            KeyParseError::Malformed {
                label: label.to_string(),
                detail: e.to_string(),
            }
        }
    })?;
    let alg = if info.algorithm.oid == OID_ED25519 {
        KeyAlgorithm::Ed25519
    } else if info.algorithm.oid == OID_RSA_ENCRYPTION {
        KeyAlgorithm::Rsa
    } else if info.algorithm.oid == OID_EC_PUBLIC_KEY {
        let curve = info
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if curve != Some(OID_P256) {
            return Err(KeyParseError::UnsupportedAlgorithm {
                label: label.to_string(),
                detail: match curve {
                    Some(c) => format!("an EC key on curve {c}; only P-256 is supported"),
                    None => "an EC key without a named curve".into(),
                },
            });
        }
        KeyAlgorithm::EcdsaP256
    } else {
        return Err(KeyParseError::UnsupportedAlgorithm {
            label: label.to_string(),
            detail: format!("a key of algorithm {}", info.algorithm.oid),
        });
    };
    Ok((alg, der.to_vec()))
}

/// Wraps a SEC1 `ECPrivateKey` (P-256 only) into PKCS#8 for ring.
fn sec1_to_pkcs8(label: &str, der: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyParseError> {
    let ec =
        sec1::EcPrivateKey::from_der(der).map_err(|e| match PrivateKeyInfo::from_der(der) {
            Ok(_) => KeyParseError::WrongType {
                label: label.to_string(),
                found: "a PKCS#8 key (expected SEC1)".into(),
            },
            Err(_) => KeyParseError::Malformed {
                label: label.to_string(),
                detail: e.to_string(),
            },
        })?;
    let curve = ec.parameters.and_then(|p| p.named_curve());
    if curve != Some(OID_P256) {
        return Err(KeyParseError::UnsupportedAlgorithm {
            label: label.to_string(),
            detail: match curve {
                Some(c) => format!("an EC key on curve {c}; only P-256 is supported"),
                None => "an EC key without a named curve".into(),
            },
        });
    }
    if ec.public_key.is_none() {
        return Err(KeyParseError::Malformed {
            label: label.to_string(),
            detail: "the SEC1 key does not carry its public key".into(),
        });
    }
    let info = PrivateKeyInfo {
        algorithm: AlgorithmIdentifierRef {
            oid: OID_EC_PUBLIC_KEY,
            parameters: Some(AnyRef::from(&OID_P256)),
        },
        private_key: der,
        public_key: None,
    };
    info.to_der()
        .map(Zeroizing::new)
        .map_err(|e| KeyParseError::Malformed {
            label: label.to_string(),
            detail: e.to_string(),
        })
}

/// Rewrites ring's PKCS#8 P-256 key as SEC1 with the `[0]` named-curve parameter, the
/// layout Go writes.
fn pkcs8_to_sec1_with_curve(pkcs8: &[u8]) -> Result<Zeroizing<Vec<u8>>, x509_cert::der::Error> {
    let info = PrivateKeyInfo::from_der(pkcs8)?;
    let mut ec = sec1::EcPrivateKey::from_der(info.private_key)?;
    ec.parameters = Some(sec1::EcParameters::NamedCurve(OID_P256));
    ec.to_der().map(Zeroizing::new)
}

fn rsa_pkcs1_to_pkcs8(pkcs1: &[u8]) -> Result<Zeroizing<Vec<u8>>, x509_cert::der::Error> {
    let info = PrivateKeyInfo {
        algorithm: AlgorithmIdentifierRef {
            oid: OID_RSA_ENCRYPTION,
            parameters: Some(AnyRef::NULL),
        },
        private_key: pkcs1,
        public_key: None,
    };
    info.to_der().map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_pem_is_go_pkcs8_v1() {
        let (key, pem) = PrivateKey::ed25519_from_seed(&[7u8; 32]).unwrap();
        let block = pem_text::first_block(pem.expose()).unwrap();
        assert_eq!(block.label, PEM_ED25519);
        // 16-byte header then the seed: exactly what Go's MarshalPKCS8PrivateKey writes.
        assert_eq!(block.contents.len(), 48);
        assert_eq!(
            &block.contents[..16],
            &[
                0x30, 0x2e, 2, 1, 0, 0x30, 5, 6, 3, 0x2b, 0x65, 0x70, 4, 0x22, 4, 0x20
            ]
        );
        assert_eq!(key.public_key().len(), 32);
        let back = PrivateKey::from_pem(pem.expose()).unwrap();
        assert_eq!(back.public_key(), key.public_key());
    }

    #[test]
    fn p256_pem_is_sec1_with_curve_and_reads_back() {
        let (key, pem) = PrivateKey::generate_p256().unwrap();
        let block = pem_text::first_block(pem.expose()).unwrap();
        assert_eq!(block.label, PEM_EC);
        let ec = sec1::EcPrivateKey::from_der(&block.contents).unwrap();
        assert_eq!(ec.parameters.and_then(|p| p.named_curve()), Some(OID_P256));
        assert!(ec.public_key.is_some());
        let back = PrivateKey::from_pem(pem.expose()).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert_eq!(back.algorithm(), KeyAlgorithm::EcdsaP256);
    }

    #[test]
    fn label_and_content_must_agree() {
        let (_, ed) = PrivateKey::generate_ed25519().unwrap();
        let block = pem_text::first_block(ed.expose()).unwrap();
        let relabelled = pem_text::encode_secret(PEM_EC, &block.contents);
        assert!(matches!(
            PrivateKey::from_pem(relabelled.expose()),
            Err(KeyParseError::WrongType { .. })
        ));
        let generic = pem_text::encode_secret(PEM_PKCS8, &block.contents);
        assert_eq!(
            PrivateKey::from_pem(generic.expose()).unwrap().algorithm(),
            KeyAlgorithm::Ed25519
        );
        let cert = pem_text::encode_secret("CERTIFICATE", &block.contents);
        assert!(matches!(
            PrivateKey::from_pem(cert.expose()),
            Err(KeyParseError::UnsupportedLabel(_))
        ));
        assert!(matches!(
            PrivateKey::from_pem("hello"),
            Err(KeyParseError::NotPem(_))
        ));
    }

    #[test]
    fn signatures_verify() {
        for (key, _) in [
            PrivateKey::generate_ed25519().unwrap(),
            PrivateKey::generate_p256().unwrap(),
        ] {
            let sig = key.sign(b"message").unwrap();
            let alg: &dyn signature::VerificationAlgorithm = match key.algorithm() {
                KeyAlgorithm::Ed25519 => &signature::ED25519,
                _ => &signature::ECDSA_P256_SHA256_ASN1,
            };
            signature::UnparsedPublicKey::new(alg, key.public_key())
                .verify(b"message", &sig)
                .unwrap();
        }
    }
}
