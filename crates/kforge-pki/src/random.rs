//! Randomness from the operating system, and the random strings a bundle holds: kubeadm
//! style tokens and base64 secrets.

use kforge_secret::SecretString;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::PkiError;

const TOKEN_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// 256 mod 36 = 4: bytes at or above 252 would favour the first four characters.
const TOKEN_BYTE_LIMIT: u8 = 252;

/// Fills `buf` from the OS random number generator.
pub(crate) fn fill(buf: &mut [u8], operation: &'static str) -> Result<(), PkiError> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| PkiError::Random { operation })
}

/// `n` random bytes.
pub(crate) fn bytes(n: usize, operation: &'static str) -> Result<Zeroizing<Vec<u8>>, PkiError> {
    let mut buf = Zeroizing::new(vec![0u8; n]);
    fill(&mut buf, operation)?;
    Ok(buf)
}

/// A token `[a-z0-9]{first}.[a-z0-9]{second}`, drawn by rejection sampling.
pub(crate) fn token(first: usize, second: usize) -> Result<SecretString, PkiError> {
    let mut out = String::with_capacity(first + second + 1);
    token_part(first, &mut out)?;
    out.push('.');
    token_part(second, &mut out)?;
    Ok(SecretString::new(out))
}

fn token_part(len: usize, out: &mut String) -> Result<(), PkiError> {
    let mut produced = 0;
    let mut pool = Zeroizing::new([0u8; 64]);
    while produced < len {
        fill(pool.as_mut(), "generating a token")?;
        for &b in pool.iter() {
            if produced == len {
                break;
            }
            if b < TOKEN_BYTE_LIMIT {
                out.push(TOKEN_ALPHABET[usize::from(b) % TOKEN_ALPHABET.len()] as char);
                produced += 1;
            }
        }
    }
    Ok(())
}

/// Whether `s` has the `[a-z0-9]{first}\.[a-z0-9]{second}` token shape.
pub(crate) fn is_token(s: &str, first: usize, second: usize) -> bool {
    let Some((a, b)) = s.split_once('.') else {
        return false;
    };
    let ok = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    };
    ok(a, first) && ok(b, second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_kubeadm_shape() {
        for _ in 0..200 {
            let t = token(6, 16).unwrap();
            assert!(is_token(t.expose(), 6, 16));
        }
        assert!(!is_token("abcdef.0123456789abcdeF", 6, 16));
        assert!(!is_token("abcdef0123456789abcdef", 6, 16));
        assert!(!is_token("abcde.0123456789abcdef0", 6, 16));
        assert!(!is_token("abcdef.0123456789abcde.", 6, 16));
    }

    #[test]
    fn token_characters_cover_the_alphabet() {
        let mut seen = [false; 36];
        for _ in 0..300 {
            for c in token(6, 16)
                .unwrap()
                .expose()
                .bytes()
                .filter(|c| *c != b'.')
            {
                let i = TOKEN_ALPHABET.iter().position(|a| *a == c).unwrap();
                seen[i] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
    }
}
