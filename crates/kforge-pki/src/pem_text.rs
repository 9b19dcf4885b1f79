//! PEM the way Go's `encoding/pem` writes it (64-column base64, LF line ends) and reads it
//! (the first block counts, text around it is ignored), plus the base64-of-PEM wrapping
//! Talos uses for every certificate and key in YAML.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use kforge_secret::SecretString;
use zeroize::Zeroizing;

/// Go's `base64.StdEncoding` decoder: padding required, non-zero trailing bits tolerated.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Go's `base64.URLEncoding` decoder (the cluster id encoding).
const GO_URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// One decoded PEM block.
pub(crate) struct PemBlock {
    pub(crate) label: String,
    pub(crate) contents: Zeroizing<Vec<u8>>,
    /// RFC 1421 `Proc-Type: 4,ENCRYPTED` (a passphrase-protected key).
    pub(crate) encrypted: bool,
}

/// The first PEM block in `text`.
pub(crate) fn first_block(text: &str) -> Result<PemBlock, String> {
    let parsed = pem::parse(text).map_err(|e| match e {
        pem::PemError::MalformedFraming => {
            "no `-----BEGIN ...-----` / `-----END ...-----` block found".to_string()
        }
        pem::PemError::MismatchedTags(begin, end) => {
            format!("the BEGIN label `{begin}` does not match the END label `{end}`")
        }
        pem::PemError::InvalidData(_) => {
            "the body between BEGIN and END is not valid base64".to_string()
        }
        other => other.to_string(),
    })?;
    let encrypted = parsed
        .headers()
        .get("Proc-Type")
        .is_some_and(|v| v.contains("ENCRYPTED"));
    let label = parsed.tag().to_string();
    Ok(PemBlock {
        label,
        contents: Zeroizing::new(parsed.into_contents()),
        encrypted,
    })
}

/// PEM text for public material (certificates).
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// PEM text for a private key.
pub(crate) fn encode_secret(label: &str, der: &[u8]) -> SecretString {
    SecretString::new(encode(label, der))
}

/// Standard base64, as Talos stores PEM text in YAML.
pub(crate) fn to_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn secret_to_base64(secret: &SecretString) -> SecretString {
    SecretString::new(to_base64(secret.as_bytes()))
}

/// Decodes standard base64 like Go's `StdEncoding.DecodeString` (which skips CR and LF).
pub(crate) fn from_base64(text: &str) -> Result<Zeroizing<Vec<u8>>, base64::DecodeError> {
    let cleaned: Zeroizing<String> =
        Zeroizing::new(text.chars().filter(|c| *c != '\n' && *c != '\r').collect());
    GO_STD.decode(cleaned.as_bytes()).map(Zeroizing::new)
}

pub(crate) fn from_base64_url(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let cleaned: String = text.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    GO_URL.decode(cleaned.as_bytes())
}

/// Decodes base64 that must hold UTF-8 (PEM) text, keeping the text secret.
pub(crate) fn base64_to_secret_text(text: &str) -> Result<SecretString, String> {
    let bytes = from_base64(text)
        .map_err(|e| format!("is not valid base64 ({})", describe_base64_error(&e)))?;
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(SecretString::new(s.to_string())),
        Err(_) => Err("decodes to bytes that are not text, so not PEM".to_string()),
    }
}

/// A base64 error without the offending character (it may be part of a secret).
pub(crate) fn describe_base64_error(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(offset, _) => {
            format!("character {} is outside the base64 alphabet", offset + 1)
        }
        base64::DecodeError::InvalidLength(_) => "the length is not a multiple of 4".into(),
        base64::DecodeError::InvalidLastSymbol(offset, _) => {
            format!("the last character (at {}) is invalid", offset + 1)
        }
        base64::DecodeError::InvalidPadding => "the `=` padding is wrong".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_matches_go_layout() {
        let der: Vec<u8> = (0u8..=99).collect();
        let text = encode("TEST", &der);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN TEST-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last(), Some(&"-----END TEST-----"));
        assert!(text.ends_with("-----\n") && !text.contains('\r'));
        let block = first_block(&format!("junk before\n{text}trailing")).unwrap();
        assert_eq!(block.label, "TEST");
        assert_eq!(&block.contents[..], &der[..]);
    }

    #[test]
    fn base64_like_go() {
        assert_eq!(&from_base64("aGk=").unwrap()[..], b"hi");
        assert_eq!(&from_base64("aG\nk=").unwrap()[..], b"hi");
        assert!(from_base64("aGk").is_err());
        assert!(from_base64("a*k=").is_err());
        assert_eq!(from_base64_url("_-8=").unwrap(), vec![0xff, 0xef]);
        assert!(from_base64_url("/+8=").is_err());
    }
}
