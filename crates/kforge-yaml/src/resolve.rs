//! Plain-scalar resolution following Go `yaml.v3` (`resolve.go`), which is what talhelper,
//! Talos and sops use. Matching it matters: sops hashes the plaintext of every value into
//! its MAC, so `0o644` must become the integer 420 here exactly as it does there.

/// The type a scalar resolves to.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str,
}

/// Resolves an untagged plain scalar.
pub fn resolve_plain(s: &str) -> Scalar {
    let hint = s.as_bytes().first().copied();
    match hint {
        None => return Scalar::Null,
        Some(b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~') => {
            return lookup(s).unwrap_or(Scalar::Str);
        }
        Some(b'.') => {
            if let Some(v) = lookup(s) {
                return v;
            }
            return parse_go_float(s).map_or(Scalar::Str, Scalar::Float);
        }
        Some(b'+' | b'-' | b'0'..=b'9') => {
            if let Some(v) = lookup(s) {
                return v;
            }
        }
        _ => return Scalar::Str,
    }
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    if let Some(v) = parse_go_int(&plain) {
        if let Ok(i) = i64::try_from(v) {
            return Scalar::Int(i);
        }
        if let Ok(u) = u64::try_from(v) {
            return Scalar::UInt(u);
        }
    }
    if is_yaml_style_float(&plain)
        && let Some(f) = parse_go_float(&plain)
    {
        return Scalar::Float(f);
    }
    Scalar::Str
}

fn lookup(s: &str) -> Option<Scalar> {
    Some(match s {
        "~" | "null" | "Null" | "NULL" => Scalar::Null,
        "true" | "True" | "TRUE" => Scalar::Bool(true),
        "false" | "False" | "FALSE" => Scalar::Bool(false),
        ".nan" | ".NaN" | ".NAN" => Scalar::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Scalar::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Scalar::Float(f64::NEG_INFINITY),
        _ => return None,
    })
}

/// Go's `strconv.ParseInt(s, 0, 64)` grammar (sign, `0x`/`0o`/`0b` prefixes, a leading `0`
/// meaning octal), widened so the caller can pick signed or unsigned.
fn parse_go_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let lower = body.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16, &body[2..]),
        Some("0o") => (8, &body[2..]),
        Some("0b") => (2, &body[2..]),
        _ if body.len() > 1 && body.starts_with('0') => (8, &body[1..]),
        _ => (10, body),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) || digits.len() > 70 {
        return None;
    }
    let magnitude = u128::from_str_radix(digits, radix).ok()?;
    if magnitude > u128::from(u64::MAX) {
        return None;
    }
    let v = i128::try_from(magnitude).ok()?;
    Some(if neg { -v } else { v })
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

fn parse_go_float(s: &str) -> Option<f64> {
    // Rust accepts "inf"/"nan" spellings that the regex above already excludes for the
    // digit-led path; for the '.'-led path Go would accept only decimal forms as well.
    if s.chars()
        .any(|c| c.is_ascii_alphabetic() && !matches!(c, 'e' | 'E'))
    {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Whether a string must be quoted so that it reads back as the same string.
pub(crate) fn needs_quotes_for_type(s: &str) -> bool {
    if resolve_plain(s) != Scalar::Str {
        return true;
    }
    // yaml.v3 also quotes YAML 1.1 booleans, base-60 floats and timestamp look-alikes.
    if matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    ) {
        return true;
    }
    looks_like_timestamp(s) || looks_like_base60(s)
}

fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[5].is_ascii_digit()
}

fn looks_like_base60(s: &str) -> bool {
    // e.g. 190:20:30 — YAML 1.1 sexagesimal.
    let t = s.trim_start_matches(['-', '+']);
    t.contains(':')
        && t.split(':')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_yaml_v3() {
        assert_eq!(resolve_plain(""), Scalar::Null);
        assert_eq!(resolve_plain("~"), Scalar::Null);
        assert_eq!(resolve_plain("True"), Scalar::Bool(true));
        assert_eq!(resolve_plain("yes"), Scalar::Str);
        assert_eq!(resolve_plain("0o644"), Scalar::Int(420));
        assert_eq!(resolve_plain("0644"), Scalar::Int(420));
        assert_eq!(resolve_plain("0x1F"), Scalar::Int(31));
        assert_eq!(resolve_plain("0b101"), Scalar::Int(5));
        assert_eq!(resolve_plain("1_000"), Scalar::Int(1000));
        assert_eq!(resolve_plain("-12"), Scalar::Int(-12));
        assert_eq!(resolve_plain("+12"), Scalar::Int(12));
        assert_eq!(
            resolve_plain("18446744073709551615"),
            Scalar::UInt(u64::MAX)
        );
        assert_eq!(resolve_plain("09"), Scalar::Float(9.0));
        assert_eq!(resolve_plain("1.5"), Scalar::Float(1.5));
        assert_eq!(resolve_plain(".5"), Scalar::Float(0.5));
        assert_eq!(resolve_plain("1e3"), Scalar::Float(1000.0));
        assert_eq!(resolve_plain("1."), Scalar::Float(1.0));
        assert_eq!(resolve_plain("10.0.1.10"), Scalar::Str);
        assert_eq!(resolve_plain("-"), Scalar::Str);
        assert_eq!(resolve_plain("inf"), Scalar::Str);
        assert_eq!(resolve_plain("nan"), Scalar::Str);
        assert_eq!(resolve_plain("1Gi"), Scalar::Str);
        assert_eq!(resolve_plain("v1.12.0"), Scalar::Str);
        assert!(matches!(resolve_plain(".inf"), Scalar::Float(f) if f.is_infinite()));
    }

    #[test]
    fn quoting_decisions() {
        assert!(needs_quotes_for_type("true"));
        assert!(needs_quotes_for_type("on"));
        assert!(needs_quotes_for_type("0644"));
        assert!(needs_quotes_for_type("2001-12-14"));
        assert!(needs_quotes_for_type("1:20"));
        assert!(!needs_quotes_for_type("10.0.1.10"));
        assert!(!needs_quotes_for_type("hello"));
    }
}
