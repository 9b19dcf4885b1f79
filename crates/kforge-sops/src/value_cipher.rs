//! sops' per-value encryption: AES-256-GCM with a 32-byte random IV (not the usual 12),
//! the key path as additional data, written as
//! `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<t>]`.

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::{U12, U32};
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use zeroize::Zeroizing;

/// AES-256-GCM with sops' 32-byte nonce.
type Aes256Gcm32 = AesGcm<Aes256, U32>;
/// The standard 12-byte nonce, accepted when reading (sops sizes the nonce from the IV).
type Aes256Gcm12 = AesGcm<Aes256, U12>;

const PREFIX: &str = "ENC[AES256_GCM,data:";
const IV_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// Why an `ENC[...]` value could not be decrypted. Carries no plaintext.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EncProblem {
    /// Not in the `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` form.
    Malformed(String),
    /// GCM authentication failed: data, IV, tag or key path changed, or another data key.
    Authentication,
}

/// The parts of an `ENC[...]` value.
pub(crate) struct EncValue<'a> {
    data: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
    pub type_tag: &'a str,
}

pub(crate) fn is_enc_value(s: &str) -> bool {
    s.starts_with("ENC[")
}

pub(crate) fn parse(s: &str) -> Result<EncValue<'_>, EncProblem> {
    let malformed = |m: &str| EncProblem::Malformed(m.to_string());
    let body = s
        .strip_prefix(PREFIX)
        .ok_or_else(|| malformed("does not start with `ENC[AES256_GCM,data:`"))?;
    let body = body
        .trim_end()
        .strip_suffix(']')
        .ok_or_else(|| malformed("does not end with `]`"))?;
    let (data, rest) = body
        .split_once(",iv:")
        .ok_or_else(|| malformed("has no `iv:` part"))?;
    let (iv, rest) = rest
        .split_once(",tag:")
        .ok_or_else(|| malformed("has no `tag:` part"))?;
    let (tag, type_tag) = rest
        .split_once(",type:")
        .ok_or_else(|| malformed("has no `type:` part"))?;
    let decode = |part: &str, what: &str| {
        B64.decode(part)
            .map_err(|e| EncProblem::Malformed(format!("its {what} is not valid base64 ({e})")))
    };
    let value = EncValue {
        data: decode(data, "data")?,
        iv: decode(iv, "iv")?,
        tag: decode(tag, "tag")?,
        type_tag,
    };
    if value.iv.len() != IV_LEN && value.iv.len() != 12 {
        return Err(EncProblem::Malformed(format!(
            "its iv is {} bytes; sops uses 32",
            value.iv.len()
        )));
    }
    if value.tag.len() != TAG_LEN {
        return Err(EncProblem::Malformed(format!(
            "its tag is {} bytes; AES-GCM tags are 16",
            value.tag.len()
        )));
    }
    Ok(value)
}

/// Encrypts and decrypts values with one data key.
pub(crate) struct ValueCipher {
    aead: Aes256Gcm32,
    aead12: Aes256Gcm12,
}

impl ValueCipher {
    pub fn new(data_key: &[u8; 32]) -> ValueCipher {
        let key = GenericArray::from_slice(data_key);
        ValueCipher {
            aead: Aes256Gcm32::new(key),
            aead12: Aes256Gcm12::new(key),
        }
    }

    /// `ENC[...]` for `plaintext` under `aad`, with a fresh IV from `rng`. `None` only for
    /// plaintexts beyond GCM's size limit (64 GiB).
    pub fn encrypt(
        &self,
        plaintext: &[u8],
        aad: &[u8],
        type_tag: &str,
        rng: &mut dyn RngCore,
    ) -> Option<String> {
        let mut iv = [0u8; IV_LEN];
        rng.fill_bytes(&mut iv);
        let mut buf = Zeroizing::new(plaintext.to_vec());
        let tag = self
            .aead
            .encrypt_in_place_detached(GenericArray::from_slice(&iv), aad, &mut buf)
            .ok()?;
        let mut out = String::with_capacity(PREFIX.len() + buf.len() * 4 / 3 + 110);
        out.push_str(PREFIX);
        B64.encode_string(&buf, &mut out);
        out.push_str(",iv:");
        B64.encode_string(iv, &mut out);
        out.push_str(",tag:");
        B64.encode_string(tag, &mut out);
        out.push_str(",type:");
        out.push_str(type_tag);
        out.push(']');
        Some(out)
    }

    /// The plaintext bytes and type tag of an `ENC[...]` value.
    pub fn decrypt<'a>(
        &self,
        enc: &'a str,
        aad: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, &'a str), EncProblem> {
        let v = parse(enc)?;
        let mut buf = Zeroizing::new(v.data);
        let tag = GenericArray::from_slice(&v.tag);
        let result = if v.iv.len() == IV_LEN {
            self.aead
                .decrypt_in_place_detached(GenericArray::from_slice(&v.iv), aad, &mut buf, tag)
        } else {
            self.aead12.decrypt_in_place_detached(
                GenericArray::from_slice(&v.iv),
                aad,
                &mut buf,
                tag,
            )
        };
        result.map_err(|_| EncProblem::Authentication)?;
        Ok((buf, v.type_tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let c = ValueCipher::new(&[7u8; 32]);
        let mut rng = rand::thread_rng();
        let enc = c
            .encrypt(b"hunter2", b"db:password:", "str", &mut rng)
            .unwrap();
        assert!(enc.starts_with("ENC[AES256_GCM,data:"));
        assert!(enc.ends_with(",type:str]"));
        let iv = enc.split(",iv:").nth(1).unwrap().split(',').next().unwrap();
        assert_eq!(B64.decode(iv).unwrap().len(), 32);
        let (pt, ty) = c.decrypt(&enc, b"db:password:").unwrap();
        assert_eq!(&pt[..], b"hunter2");
        assert_eq!(ty, "str");
        assert_eq!(
            c.decrypt(&enc, b"db:other:").unwrap_err(),
            EncProblem::Authentication
        );
        let other = ValueCipher::new(&[8u8; 32]);
        assert_eq!(
            other.decrypt(&enc, b"db:password:").unwrap_err(),
            EncProblem::Authentication
        );
        assert!(matches!(
            c.decrypt("ENC[AES256_GCM,data:abc", b""),
            Err(EncProblem::Malformed(_))
        ));
        assert!(matches!(
            c.decrypt("ENC[AES256_GCM,data:!!,iv:AA==,tag:AA==,type:str]", b""),
            Err(EncProblem::Malformed(_))
        ));
    }

    #[test]
    fn twelve_byte_ivs_are_read_too() {
        let key = [1u8; 32];
        let aead = Aes256Gcm12::new(GenericArray::from_slice(&key));
        let mut buf = b"x".to_vec();
        let tag = aead
            .encrypt_in_place_detached(GenericArray::from_slice(&[2u8; 12]), b"k:", &mut buf)
            .unwrap();
        let enc = format!(
            "ENC[AES256_GCM,data:{},iv:{},tag:{},type:str]",
            B64.encode(&buf),
            B64.encode([2u8; 12]),
            B64.encode(tag)
        );
        assert_eq!(
            &ValueCipher::new(&key).decrypt(&enc, b"k:").unwrap().0[..],
            b"x"
        );
    }
}
