//! Go's text forms of numbers and times, as sops produces and reads them: the plaintext
//! bytes behind every encrypted value and MAC input (`strconv.FormatFloat(f, 'f', -1, 64)`,
//! `time.Time.MarshalText`), the way `yaml.v3` writes a `float64` (`'g'` format) and
//! recognises timestamps, the way `encoding/json` writes a `float64`, and RFC 3339 for
//! `lastmodified`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest digits that read back as `f`, never an
/// exponent. This is the plaintext of a sops `float` value and what the MAC hashes.
pub(crate) fn float_plain(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        // Rust's Display prints the shortest round-trip digits without an exponent, like Go.
        format!("{f}")
    }
}

/// Shortest round-trip decimal digits of a finite, non-zero `f` and the position of the
/// decimal point: `f = ±0.d1d2…dn × 10^point`.
fn shortest_digits(f: f64) -> (String, i32) {
    let e = format!("{:e}", f.abs());
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    (digits, exp + 1)
}

/// Go `%e`-style text from shortest digits: `d[.ddd]e±XX` (at least two exponent digits).
fn exponent_form(neg: bool, digits: &str, point: i32) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    let exp = point - 1;
    let _ = write!(
        out,
        "e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.unsigned_abs()
    );
    out
}

/// How `yaml.v3` writes a `float64`: `strconv.FormatFloat(f, 'g', -1, 64)` (`1`, `0.5`,
/// `1e+06`, `1e-05`) with `.inf`, `-.inf` and `.nan` for the non-finite values.
pub(crate) fn float_yaml(f: f64) -> String {
    if f.is_nan() {
        return ".nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let (digits, point) = shortest_digits(f);
    let exp = point - 1;
    // With the shortest precision Go switches to the exponent form from 1e+06 on.
    if !(-4..6).contains(&exp) {
        exponent_form(f < 0.0, &digits, point)
    } else {
        format!("{f}")
    }
}

/// How `encoding/json` writes a `float64`: fixed notation, except an exponent (without a
/// leading zero) below 1e-6 and from 1e21 on. Non-finite values have no JSON form.
pub(crate) fn float_json(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let (digits, point) = shortest_digits(f);
        let mut s = exponent_form(f < 0.0, &digits, point);
        // Go cleans `e-07` up to `e-7` (only for negative exponents).
        if let Some(pos) = s.find("e-0") {
            s.remove(pos + 2);
        }
        Some(s)
    } else {
        Some(format!("{f}"))
    }
}

/// A point in time with its UTC offset, as Go's `time.Time` keeps it for formatting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GoTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    /// Offset from UTC in seconds; 0 prints as `Z`.
    offset: i32,
}

impl GoTime {
    /// `time.RFC3339Nano` (what `MarshalText` and `yaml.v3` write): the fraction without
    /// trailing zeros, `Z` for a zero offset.
    pub(crate) fn rfc3339_nano(&self) -> String {
        let mut out = self.rfc3339_seconds_part();
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
        self.push_offset(&mut out);
        out
    }

    /// `time.RFC3339`: seconds precision (the form of `lastmodified` and of the MAC's AAD).
    pub(crate) fn rfc3339(&self) -> String {
        let mut out = self.rfc3339_seconds_part();
        self.push_offset(&mut out);
        out
    }

    fn rfc3339_seconds_part(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    fn push_offset(&self, out: &mut String) {
        if self.offset == 0 {
            out.push('Z');
        } else {
            let sign = if self.offset < 0 { '-' } else { '+' };
            let abs = self.offset.unsigned_abs();
            let _ = write!(out, "{sign}{:02}:{:02}", abs / 3600, (abs % 3600) / 60);
        }
    }

    /// The UTC time of a `SystemTime`, to whole seconds (sops writes `lastmodified` so).
    pub(crate) fn from_system_time(t: SystemTime) -> GoTime {
        let secs = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
        };
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        GoTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: (rem % 3600) / 60,
            second: rem % 60,
            nanos: 0,
            offset: 0,
        }
    }

    /// The instant as a `SystemTime` (for callers that want to compare timestamps).
    pub(crate) fn to_system_time(self) -> Option<SystemTime> {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86_400 + i64::from(self.hour * 3600 + self.minute * 60 + self.second)
            - i64::from(self.offset);
        let secs = u64::try_from(secs).ok()?;
        Some(UNIX_EPOCH + Duration::new(secs, self.nanos))
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// A byte cursor for the small time grammars below.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    /// Between `min` and `max` decimal digits.
    fn num(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        while self.i < self.s.len() && self.i - start < max && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if self.i - start < min {
            return None;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()
    }

    fn lit(&mut self, c: u8) -> Option<()> {
        (self.s.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn done(&self) -> bool {
        self.i == self.s.len()
    }

    /// An optional `.ddd` (or `,ddd`) fraction of any length, as nanoseconds.
    fn fraction(&mut self) -> u32 {
        let has = matches!(self.peek(), Some(b'.' | b','))
            && self.s.get(self.i + 1).is_some_and(u8::is_ascii_digit);
        if !has {
            return 0;
        }
        self.i += 1;
        let mut nanos = 0u32;
        let mut n = 0;
        while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
            if n < 9 {
                nanos = nanos * 10 + u32::from(c - b'0');
                n += 1;
            }
            self.i += 1;
        }
        nanos * 10u32.pow(9 - n)
    }

    /// `Z` or `±hh:mm`.
    fn zone(&mut self) -> Option<i32> {
        match self.peek()? {
            b'Z' => {
                self.i += 1;
                Some(0)
            }
            sign @ (b'+' | b'-') => {
                self.i += 1;
                let h = self.num(2, 2)?;
                self.lit(b':')?;
                let m = self.num(2, 2)?;
                if h > 24 || m > 59 {
                    return None;
                }
                let off = (h * 3600 + m * 60) as i32;
                Some(if sign == b'-' { -off } else { off })
            }
            _ => None,
        }
    }
}

fn checked(t: GoTime) -> Option<GoTime> {
    let ok = (1..=12).contains(&t.month)
        && t.day >= 1
        && t.day <= days_in_month(t.year, t.month)
        && t.hour < 24
        && t.minute < 60
        && t.second < 60;
    ok.then_some(t)
}

/// A plain YAML scalar that `yaml.v3` reads as a timestamp (sops then encrypts it as
/// `type:time` and writes it back in RFC 3339): `YYYY-M-D`, `YYYY-M-DTh:m:s[.f](Z|±hh:mm)`
/// (also with `t`), or `YYYY-M-D h:m:s[.f]` (UTC).
pub(crate) fn parse_yaml_timestamp(s: &str) -> Option<GoTime> {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return None;
    }
    let mut c = Cursor { s: b, i: 0 };
    let year = i64::from(c.num(4, 4)?);
    c.lit(b'-')?;
    let month = c.num(1, 2)?;
    c.lit(b'-')?;
    let day = c.num(1, 2)?;
    let mut t = GoTime {
        year,
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
        nanos: 0,
        offset: 0,
    };
    if c.done() {
        return checked(t);
    }
    let with_zone = match c.peek()? {
        b'T' | b't' => true,
        b' ' => false,
        _ => return None,
    };
    c.i += 1;
    t.hour = c.num(1, 2)?;
    c.lit(b':')?;
    t.minute = c.num(1, 2)?;
    c.lit(b':')?;
    t.second = c.num(1, 2)?;
    t.nanos = c.fraction();
    if with_zone {
        t.offset = c.zone()?;
    }
    if !c.done() {
        return None;
    }
    checked(t)
}

/// Go `time.Parse(time.RFC3339, s)`: `YYYY-MM-DDThh:mm:ss[.f](Z|±hh:mm)`.
pub(crate) fn parse_rfc3339(s: &str) -> Option<GoTime> {
    let mut c = Cursor {
        s: s.as_bytes(),
        i: 0,
    };
    let year = i64::from(c.num(4, 4)?);
    c.lit(b'-')?;
    let month = c.num(2, 2)?;
    c.lit(b'-')?;
    let day = c.num(2, 2)?;
    c.lit(b'T')?;
    let hour = c.num(2, 2)?;
    c.lit(b':')?;
    let minute = c.num(2, 2)?;
    c.lit(b':')?;
    let second = c.num(2, 2)?;
    let nanos = c.fraction();
    let offset = c.zone()?;
    if !c.done() {
        return None;
    }
    checked(GoTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
        offset,
    })
}

/// Go `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go `strconv.Atoi` (64-bit `int`).
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Go `strconv.ParseFloat(s, 64)` for the decimal forms and the `Inf`/`NaN` spellings.
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return s.to_ascii_lowercase().parse().ok();
    }
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    s.parse().ok()
}

/// A sops `version` value: semantic version `MAJOR.MINOR.PATCH[-pre][+build]`, as sops
/// checks it with `blang/semver` before decrypting.
pub(crate) fn is_semver(v: &str) -> bool {
    let (core, _build) = v.split_once('+').unwrap_or((v, ""));
    let (core, pre) = match core.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (core, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = |p: &str| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'))
    };
    parts.len() == 3
        && parts.iter().all(|p| numeric(p))
        && pre.is_none_or(|p| {
            !p.is_empty()
                && p.split('.').all(|id| {
                    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_go() {
        assert_eq!(float_plain(1.0), "1");
        assert_eq!(float_plain(1e300).len(), 301);
        assert_eq!(float_plain(1.5e-7), "0.00000015");
        assert_eq!(float_plain(-0.0), "-0");
        assert_eq!(float_plain(f64::INFINITY), "+Inf");
        assert_eq!(float_plain(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float_plain(f64::NAN), "NaN");

        for (f, s) in [
            (1.0, "1"),
            (0.5, "0.5"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-0.0, "-0"),
            (1.5e-7, "1.5e-07"),
            (1e300, "1e+300"),
            (-2.5e10, "-2.5e+10"),
            (f64::INFINITY, ".inf"),
            (f64::NEG_INFINITY, "-.inf"),
        ] {
            assert_eq!(float_yaml(f), s, "{f}");
        }
        assert_eq!(float_yaml(f64::NAN), ".nan");

        for (f, s) in [
            (1.0, "1"),
            (1.5, "1.5"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1e-7, "1e-7"),
            (0.000001, "0.000001"),
            (12345678901234567890.0, "12345678901234567000"),
            (-0.0, "-0"),
            (-1.25e-10, "-1.25e-10"),
        ] {
            assert_eq!(float_json(f).as_deref(), Some(s), "{f}");
        }
        assert_eq!(float_json(f64::NAN), None);
    }

    #[test]
    fn yaml_timestamps_like_yaml_v3() {
        let t = |s: &str| parse_yaml_timestamp(s).map(|t| t.rfc3339_nano());
        assert_eq!(t("2024-01-01").as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(t("2024-1-2 3:4:5").as_deref(), Some("2024-01-02T03:04:05Z"));
        assert_eq!(
            t("2024-01-01T00:00:00.500Z").as_deref(),
            Some("2024-01-01T00:00:00.5Z")
        );
        assert_eq!(
            t("2024-01-01T10:00:00+02:00").as_deref(),
            Some("2024-01-01T10:00:00+02:00")
        );
        assert_eq!(
            t("2024-01-01T10:00:00+00:00").as_deref(),
            Some("2024-01-01T10:00:00Z")
        );
        assert_eq!(
            t("2024-01-01t01:02:03Z").as_deref(),
            Some("2024-01-01T01:02:03Z")
        );
        assert_eq!(t("2024-01-01T01:02:03"), None);
        assert_eq!(t("2024-02-30"), None);
        assert_eq!(t("2024-02-29").as_deref(), Some("2024-02-29T00:00:00Z"));
        assert_eq!(t("2024-01-01x"), None);
        assert_eq!(t("10.0.0.1"), None);
        assert_eq!(t("2024-13-01"), None);
    }

    #[test]
    fn rfc3339_round_trips() {
        let t = parse_rfc3339("2026-11-21T19:22:25Z").unwrap();
        assert_eq!(t.rfc3339(), "2026-11-21T19:22:25Z");
        let t = parse_rfc3339("2026-11-21T19:22:25.123+01:30").unwrap();
        assert_eq!(t.rfc3339(), "2026-11-21T19:22:25+01:30");
        assert_eq!(t.rfc3339_nano(), "2026-11-21T19:22:25.123+01:30");
        assert!(parse_rfc3339("2026-11-21 19:22:25Z").is_none());
        assert!(parse_rfc3339("2026-11-21T19:22:25").is_none());

        let st = UNIX_EPOCH + Duration::from_secs(1_795_288_945);
        let g = GoTime::from_system_time(st);
        assert_eq!(g.rfc3339(), "2026-11-21T19:22:25Z");
        assert_eq!(g.to_system_time(), Some(st));
        assert_eq!(
            GoTime::from_system_time(UNIX_EPOCH).rfc3339(),
            "1970-01-01T00:00:00Z"
        );
        let leap = parse_rfc3339("2000-02-29T23:59:59Z").unwrap();
        assert_eq!(
            GoTime::from_system_time(leap.to_system_time().unwrap()),
            leap
        );
    }

    #[test]
    fn scalar_parsers() {
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("f"), Some(false));
        assert_eq!(parse_bool("yes"), None);
        assert_eq!(parse_int("-42"), Some(-42));
        assert_eq!(parse_int("+7"), Some(7));
        assert_eq!(parse_int("1_000"), None);
        assert_eq!(parse_int("9223372036854775808"), None);
        assert_eq!(parse_float("1e+21"), Some(1e21));
        assert_eq!(parse_float("+Inf"), Some(f64::INFINITY));
        assert!(parse_float("NaN").unwrap().is_nan());
        assert_eq!(parse_float("0x10"), None);
        assert!(is_semver("3.11.0"));
        assert!(is_semver("3.8.1"));
        assert!(is_semver("3.9.0-rc.1+abc"));
        assert!(!is_semver(""));
        assert!(!is_semver("3.11"));
        assert!(!is_semver("v3.11.0"));
        assert!(!is_semver("03.1.0"));
    }
}
