//! Template values with Go's semantics: typed zero values for unset fields, truth, and
//! `fmt`'s `%v` printing (`[a b]`, `map[k:v]`, `<nil>`, `<no value>`).

use std::fmt::Write as _;

use serde_json::Value;

use super::schema::{GoType, StructType};

/// A value during template execution.
#[derive(Clone, Debug)]
pub(super) enum Val {
    /// Go's invalid `reflect.Value` (a missing map key): prints `<no value>`.
    Missing,
    /// A nil pointer, with the Go type it points to (`v1alpha1.NetworkConfig`), or `""` for an
    /// untyped nil.
    Nil(&'static str),
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Val>),
    /// A Go map with string keys; `Elem` says what a missing key reads as through `index`.
    Map(Vec<(String, Val)>, Elem),
    /// A typed struct backed by the document's mapping; `pointer` is whether Go holds it by
    /// pointer (for messages).
    Struct {
        ty: &'static StructType,
        fields: serde_json::Map<String, Value>,
        pointer: bool,
    },
    /// `time.Duration` in nanoseconds.
    Duration(i64),
    FileMode(u32),
    /// A URL (`*v1alpha1.Endpoint`).
    Url(String),
}

/// The element type of a map, for the zero value of a missing key.
#[derive(Clone, Copy, Debug)]
pub(super) enum Elem {
    Str,
    Any,
}

impl Val {
    /// Go's `%T`-like name of the value's type, for messages.
    pub fn type_name(&self) -> String {
        match self {
            Val::Missing => "<no value>".into(),
            Val::Nil("") => "<nil>".into(),
            Val::Nil(t) => format!("*{t}"),
            Val::Bool(_) => "bool".into(),
            Val::Int(_) => "int".into(),
            Val::Float(_) => "float64".into(),
            Val::Str(_) => "string".into(),
            Val::List(items) => {
                if !items.is_empty() && items.iter().all(|i| matches!(i, Val::Str(_))) {
                    "[]string".into()
                } else {
                    "[]interface {}".into()
                }
            }
            Val::Map(_, Elem::Str) => "map[string]string".into(),
            Val::Map(_, Elem::Any) => "map[string]interface {}".into(),
            Val::Struct { ty, pointer, .. } => {
                format!("{}{}", if *pointer { "*" } else { "" }, ty.name)
            }
            Val::Duration(_) => "time.Duration".into(),
            Val::FileMode(_) => "v1alpha1.FileMode".into(),
            Val::Url(_) => "*v1alpha1.Endpoint".into(),
        }
    }

    /// Go template truth (`text/template` `isTrue`).
    pub fn truth(&self) -> bool {
        match self {
            Val::Missing | Val::Nil(_) => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::List(l) => !l.is_empty(),
            Val::Map(m, _) => !m.is_empty(),
            Val::Struct { .. } | Val::Url(_) => true,
            Val::Duration(d) => *d != 0,
            Val::FileMode(m) => *m != 0,
        }
    }

    /// sprig's `empty` (used by `default`).
    pub fn is_empty(&self) -> bool {
        match self {
            Val::Struct { .. } => false,
            Val::Url(u) => u.is_empty(),
            other => !other.truth(),
        }
    }
}

/// A document value read as a field of Go type `ty`; `None` is an unset field.
pub(super) fn typed(value: Option<&Value>, ty: &'static GoType) -> Result<Val, &'static str> {
    let value = value.filter(|v| !v.is_null());
    Ok(match ty {
        GoType::Unavailable(why) => return Err(why),
        GoType::Str => match value {
            None => Val::Str(String::new()),
            Some(Value::String(s)) => Val::Str(s.clone()),
            Some(other) => free(other),
        },
        GoType::Bool => match value {
            None => Val::Bool(false),
            Some(v) => free(v),
        },
        GoType::Int => match value {
            None => Val::Int(0),
            Some(v) => free(v),
        },
        GoType::PtrBool | GoType::PtrInt => match value {
            None => Val::Nil(if matches!(ty, GoType::PtrBool) {
                "bool"
            } else {
                "uint32"
            }),
            Some(v) => free(v),
        },
        GoType::Duration => match value {
            None => Val::Duration(0),
            Some(Value::String(s)) => {
                parse_duration(s).map_or_else(|| Val::Str(s.clone()), Val::Duration)
            }
            Some(Value::Number(n)) => n
                .as_i64()
                .map_or_else(|| free(&Value::Number(n.clone())), Val::Duration),
            Some(other) => free(other),
        },
        GoType::FileMode => match value {
            None => Val::FileMode(0),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|m| u32::try_from(m).ok())
                .map_or_else(|| Val::Int(0), Val::FileMode),
            Some(other) => free(other),
        },
        GoType::Endpoint => match value {
            None => Val::Nil("v1alpha1.Endpoint"),
            Some(Value::String(s)) => Val::Url(s.clone()),
            Some(other) => free(other),
        },
        GoType::StrList => match value {
            None => Val::List(Vec::new()),
            Some(Value::Array(items)) => Val::List(
                items
                    .iter()
                    .map(|i| typed(Some(i), &STR_TYPE).unwrap_or(Val::Missing))
                    .collect(),
            ),
            Some(other) => free(other),
        },
        GoType::List(elem) => match value {
            None => Val::List(Vec::new()),
            Some(Value::Array(items)) => Val::List(
                items
                    .iter()
                    .map(|i| typed(Some(i), elem))
                    .collect::<Result<_, _>>()?,
            ),
            Some(other) => free(other),
        },
        GoType::StrMap => match value {
            None => Val::Map(Vec::new(), Elem::Str),
            Some(Value::Object(m)) => Val::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), typed(Some(v), &STR_TYPE).unwrap_or(Val::Missing)))
                    .collect(),
                Elem::Str,
            ),
            Some(other) => free(other),
        },
        GoType::MapOf(elem) => match value {
            None => Val::Map(Vec::new(), Elem::Any),
            Some(Value::Object(m)) => Val::Map(
                m.iter()
                    .map(|(k, v)| Ok((k.clone(), typed(Some(v), elem)?)))
                    .collect::<Result<_, _>>()?,
                Elem::Any,
            ),
            Some(other) => free(other),
        },
        GoType::Ptr(s) => match value {
            None => Val::Nil(s.name),
            Some(Value::Object(m)) => Val::Struct {
                ty: s,
                fields: m.clone(),
                pointer: true,
            },
            Some(other) => free(other),
        },
        GoType::Struct(s) => match value {
            None => Val::Struct {
                ty: s,
                fields: serde_json::Map::new(),
                pointer: false,
            },
            Some(Value::Object(m)) => Val::Struct {
                ty: s,
                fields: m.clone(),
                pointer: false,
            },
            Some(other) => free(other),
        },
        GoType::Free => match value {
            None => Val::Map(Vec::new(), Elem::Any),
            Some(v) => free(v),
        },
    })
}

static STR_TYPE: GoType = GoType::Str;

/// Untyped data (a map[string]interface{} tree) as decoded from YAML.
pub(super) fn free(v: &Value) -> Val {
    match v {
        Value::Null => Val::Nil(""),
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(i),
            None => Val::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Val::Str(s.clone()),
        Value::Array(items) => Val::List(items.iter().map(free).collect()),
        Value::Object(m) => Val::Map(
            m.iter().map(|(k, v)| (k.clone(), free(v))).collect(),
            Elem::Any,
        ),
    }
}

/// Go `fmt` `%v` of a value; `Err` names a value Go would print in a form kforge cannot
/// reproduce (whole structs).
pub(super) fn print(v: &Val) -> Result<String, String> {
    let mut out = String::new();
    print_into(&mut out, v, true)?;
    Ok(out)
}

fn print_into(out: &mut String, v: &Val, top: bool) -> Result<(), String> {
    match v {
        Val::Missing => out.push_str("<no value>"),
        Val::Nil(_) => out.push_str("<nil>"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Val::Float(f) => out.push_str(&format_float(*f)),
        Val::Str(s) => out.push_str(s),
        Val::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_into(out, item, false)?;
            }
            out.push(']');
        }
        Val::Map(entries, _) => {
            let mut sorted: Vec<&(String, Val)> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push_str("map[");
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                print_into(out, v, false)?;
            }
            out.push(']');
        }
        Val::Struct { ty, .. } => {
            let example = ty.fields.first().map(|f| f.go).unwrap_or("Field");
            let _ = top;
            return Err(format!(
                "printing a whole {} is not supported (Go would print its internal layout); print one of its fields, e.g. .{example}",
                ty.name
            ));
        }
        Val::Duration(d) => out.push_str(&format_duration(*d)),
        Val::FileMode(m) => {
            let _ = write!(out, "0o{m:o}");
        }
        Val::Url(u) => out.push_str(u),
    }
    Ok(())
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)` as `%v` uses it.
pub(super) fn format_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Shortest round-trip digits and the decimal exponent, from Rust's `{:e}`; Go switches to
    // the exponent form when the exponent is < -4 or >= 6 (the precision used for the
    // decision when formatting shortest).
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        return go_exponent(mantissa, exp);
    }
    format!("{f}")
}

fn go_exponent(mantissa: &str, exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// Go's `time.ParseDuration`, in nanoseconds.
pub(super) fn parse_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    let ns = total.round() as i64;
    Some(if neg { -ns } else { ns })
}

/// Go's `time.Duration.String`.
pub(super) fn format_duration(d: i64) -> String {
    if d == 0 {
        return "0s".into();
    }
    let neg = d < 0;
    let u = d.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        let (unit, div) = if u < 1_000 {
            ("ns", 1u64)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        out.push_str(&fraction(u, div));
        out.push_str(unit);
    } else {
        let secs_total = u / 1_000_000_000;
        let hours = secs_total / 3600;
        let minutes = (secs_total % 3600) / 60;
        let secs_ns = u % 60_000_000_000;
        if hours > 0 {
            let _ = write!(out, "{hours}h{minutes}m");
        } else if minutes > 0 {
            let _ = write!(out, "{minutes}m");
        }
        out.push_str(&fraction(secs_ns, 1_000_000_000));
        out.push('s');
    }
    if neg { format!("-{out}") } else { out }
}

/// `v / div` with the fraction's trailing zeros dropped.
fn fraction(v: u64, div: u64) -> String {
    let whole = v / div;
    let frac = v % div;
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prints_like_go_fmt() {
        assert_eq!(print(&free(&json!(["a", "b"]))).ok(), Some("[a b]".into()));
        assert_eq!(
            print(&free(&json!({"b": 1, "a": [true]}))).ok(),
            Some("map[a:[true] b:1]".into())
        );
        assert_eq!(print(&Val::Nil("bool")).ok(), Some("<nil>".into()));
        assert_eq!(print(&Val::Missing).ok(), Some("<no value>".into()));
        assert_eq!(print(&Val::FileMode(0o644)).ok(), Some("0o644".into()));
    }

    #[test]
    fn floats_print_like_strconv_g() {
        assert_eq!(format_float(1.5), "1.5");
        assert_eq!(format_float(123456.0), "123456");
        assert_eq!(format_float(1234567.0), "1.234567e+06");
        assert_eq!(format_float(1e6), "1e+06");
        assert_eq!(format_float(0.0001), "0.0001");
        assert_eq!(format_float(0.00001), "1e-05");
        assert_eq!(format_float(100.0), "100");
    }

    #[test]
    fn durations_round_trip_like_go() {
        assert_eq!(
            parse_duration("1h").map(format_duration).as_deref(),
            Some("1h0m0s")
        );
        assert_eq!(
            parse_duration("90m").map(format_duration).as_deref(),
            Some("1h30m0s")
        );
        assert_eq!(
            parse_duration("1.5s").map(format_duration).as_deref(),
            Some("1.5s")
        );
        assert_eq!(
            parse_duration("250ms").map(format_duration).as_deref(),
            Some("250ms")
        );
        assert_eq!(
            parse_duration("8760h").map(format_duration).as_deref(),
            Some("8760h0m0s")
        );
        assert_eq!(parse_duration("nonsense"), None);
    }
}
