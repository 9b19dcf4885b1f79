//! The functions templates can call: Go's `text/template` builtins and the sprig functions
//! talhelper users reach for, with Go's argument type checks.

use super::value::{Elem, Val, format_float, print};

/// Every function name; `and`/`or` are evaluated lazily by the executor.
const NAMES: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "trim",
    "trimAll",
    "trimPrefix",
    "trimSuffix",
    "upper",
    "lower",
    "replace",
    "default",
    "empty",
    "quote",
    "squote",
    "join",
    "split",
    "splitList",
    "toString",
    "first",
    "last",
    "indent",
    "nindent",
    "list",
];

pub(super) fn exists(name: &str) -> bool {
    NAMES.contains(&name)
}

pub(super) fn suggest(name: &str) -> Option<&'static str> {
    super::closest(name, NAMES)
}

fn wrong_type(expected: &str, got: &Val) -> String {
    match got {
        Val::Missing => format!("invalid value; expected {expected}"),
        other => format!(
            "wrong type for value; expected {expected}; got {}",
            other.type_name()
        ),
    }
}

fn string_arg(v: &Val) -> Result<String, String> {
    match v {
        Val::Str(s) => Ok(s.clone()),
        other => Err(wrong_type("string", other)),
    }
}

fn int_arg(v: &Val) -> Result<i64, String> {
    match v {
        Val::Int(i) => Ok(*i),
        other => Err(wrong_type("int", other)),
    }
}

/// An `interface{}` parameter: a missing value arrives as nil.
fn any_arg(v: Val) -> Val {
    match v {
        Val::Missing => Val::Nil(""),
        other => other,
    }
}

fn arity(name: &str, args: &[Val], want: usize) -> Result<(), String> {
    if args.len() == want {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want {want} got {}",
            args.len()
        ))
    }
}

fn at_least(name: &str, args: &[Val], want: usize) -> Result<(), String> {
    if args.len() >= want {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want at least {want} got {}",
            args.len()
        ))
    }
}

/// sprig's `strval`: strings as they are, Stringers through `String()`, others through `%v`.
pub(super) fn strval(v: &Val) -> Result<String, String> {
    match v {
        Val::Str(s) | Val::Url(s) => Ok(s.clone()),
        Val::Missing => Ok("<nil>".into()),
        other => print(other),
    }
}

/// Calls `name` with evaluated arguments (the pipeline's value last).
pub(super) fn call(name: &str, args: Vec<Val>) -> Result<Val, String> {
    let s = |i: usize| string_arg(&args[i]);
    Ok(match name {
        "not" => {
            arity(name, &args, 1)?;
            Val::Bool(!args[0].truth())
        }
        "len" => {
            arity(name, &args, 1)?;
            Val::Int(match &args[0] {
                Val::Str(s) => s.len(),
                Val::List(l) => l.len(),
                Val::Map(m, _) => m.len(),
                Val::Missing => return Err("len of untyped nil".into()),
                Val::Nil("") => return Err("len of untyped nil".into()),
                Val::Nil(_) => return Err("len of nil pointer".into()),
                other => return Err(format!("len of type {}", other.type_name())),
            } as i64)
        }
        "index" => {
            at_least(name, &args, 1)?;
            let mut args = args.into_iter();
            let mut item = args.next().unwrap_or(Val::Missing);
            for idx in args {
                item = index(item, &idx)?;
            }
            item
        }
        "print" => Val::Str(sprint(&args, false)?),
        "println" => Val::Str(sprint(&args, true)?),
        "printf" => {
            at_least(name, &args, 1)?;
            let format = s(0)?;
            let rest: Vec<Val> = args.into_iter().skip(1).map(any_arg).collect();
            Val::Str(sprintf(&format, &rest)?)
        }
        "eq" => {
            at_least(name, &args, 2)?;
            let mut args = args.into_iter().map(any_arg);
            let first = args.next().unwrap_or(Val::Nil(""));
            let mut truth = false;
            for other in args {
                if equal(&first, &other)? {
                    truth = true;
                    break;
                }
            }
            Val::Bool(truth)
        }
        "ne" => {
            arity(name, &args, 2)?;
            Val::Bool(!equal(
                &any_arg(args[0].clone()),
                &any_arg(args[1].clone()),
            )?)
        }
        "lt" | "le" | "gt" | "ge" => {
            arity(name, &args, 2)?;
            let ord = order(&args[0], &args[1])?;
            Val::Bool(match name {
                "lt" => ord.is_lt(),
                "le" => ord.is_le(),
                "gt" => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
        "contains" => {
            arity(name, &args, 2)?;
            Val::Bool(s(1)?.contains(&s(0)?))
        }
        "hasPrefix" => {
            arity(name, &args, 2)?;
            Val::Bool(s(1)?.starts_with(&s(0)?))
        }
        "hasSuffix" => {
            arity(name, &args, 2)?;
            Val::Bool(s(1)?.ends_with(&s(0)?))
        }
        "trim" => {
            arity(name, &args, 1)?;
            Val::Str(s(0)?.trim().to_string())
        }
        "trimAll" => {
            arity(name, &args, 2)?;
            let cutset: Vec<char> = s(0)?.chars().collect();
            Val::Str(s(1)?.trim_matches(cutset.as_slice()).to_string())
        }
        "trimPrefix" => {
            arity(name, &args, 2)?;
            let (prefix, text) = (s(0)?, s(1)?);
            Val::Str(
                text.strip_prefix(prefix.as_str())
                    .unwrap_or(&text)
                    .to_string(),
            )
        }
        "trimSuffix" => {
            arity(name, &args, 2)?;
            let (suffix, text) = (s(0)?, s(1)?);
            Val::Str(
                text.strip_suffix(suffix.as_str())
                    .unwrap_or(&text)
                    .to_string(),
            )
        }
        "upper" => {
            arity(name, &args, 1)?;
            Val::Str(s(0)?.to_uppercase())
        }
        "lower" => {
            arity(name, &args, 1)?;
            Val::Str(s(0)?.to_lowercase())
        }
        "replace" => {
            arity(name, &args, 3)?;
            Val::Str(s(2)?.replace(&s(0)?, &s(1)?))
        }
        "default" => {
            at_least(name, &args, 1)?;
            if args.len() > 2 {
                return Err(format!(
                    "wrong number of args for default: want at most 2 got {}",
                    args.len()
                ));
            }
            let mut args = args.into_iter().map(any_arg);
            let fallback = args.next().unwrap_or(Val::Nil(""));
            match args.next() {
                Some(given) if !given.is_empty() => given,
                _ => fallback,
            }
        }
        "empty" => {
            arity(name, &args, 1)?;
            Val::Bool(args[0].is_empty())
        }
        "quote" | "squote" => {
            let mut parts = Vec::new();
            for a in &args {
                if matches!(a, Val::Missing) || matches!(a, Val::Nil(t) if t.is_empty()) {
                    continue;
                }
                let text = strval(a)?;
                parts.push(if name == "quote" {
                    go_quote(&text)
                } else {
                    format!("'{text}'")
                });
            }
            Val::Str(parts.join(" "))
        }
        "join" => {
            arity(name, &args, 2)?;
            Val::Str(strslice(&args[1])?.join(&s(0)?))
        }
        "split" => {
            arity(name, &args, 2)?;
            let parts = go_split(&s(1)?, &s(0)?);
            Val::Map(
                parts
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| (format!("_{i}"), Val::Str(p)))
                    .collect(),
                Elem::Str,
            )
        }
        "splitList" => {
            arity(name, &args, 2)?;
            Val::List(go_split(&s(1)?, &s(0)?).into_iter().map(Val::Str).collect())
        }
        "toString" => {
            arity(name, &args, 1)?;
            Val::Str(strval(&args[0])?)
        }
        "first" | "last" => {
            arity(name, &args, 1)?;
            match &args[0] {
                Val::List(l) => {
                    let item = if name == "first" { l.first() } else { l.last() };
                    item.cloned().unwrap_or(Val::Nil(""))
                }
                Val::Missing => return Err(format!("cannot find {name} of a nil value")),
                other => return Err(format!("cannot find {name} on type {}", other.type_name())),
            }
        }
        "indent" | "nindent" => {
            arity(name, &args, 2)?;
            let width = usize::try_from(int_arg(&args[0])?).unwrap_or(0);
            if width > super::exec::MAX_OUTPUT {
                return Err(format!("indent width {width} is too large"));
            }
            let pad = " ".repeat(width);
            let text = format!("{pad}{}", s(1)?.replace('\n', &format!("\n{pad}")));
            Val::Str(if name == "nindent" {
                format!("\n{text}")
            } else {
                text
            })
        }
        "list" => Val::List(args.into_iter().map(any_arg).collect()),
        other => return Err(format!("function \"{other}\" not defined")),
    })
}

fn index(item: Val, idx: &Val) -> Result<Val, String> {
    match (&item, idx) {
        (Val::List(l), Val::Int(i)) => {
            let i = usize::try_from(*i).map_err(|_| format!("index out of range: {i}"))?;
            l.get(i)
                .cloned()
                .ok_or_else(|| format!("index out of range: {i}"))
        }
        (Val::Str(s), Val::Int(i)) => {
            let b = usize::try_from(*i)
                .ok()
                .and_then(|i| s.as_bytes().get(i))
                .ok_or_else(|| format!("index out of range: {i}"))?;
            Ok(Val::Int(i64::from(*b)))
        }
        (Val::Map(m, elem), Val::Str(k)) => Ok(m.iter().find(|(key, _)| key == k).map_or(
            match elem {
                Elem::Str => Val::Str(String::new()),
                Elem::Any => Val::Nil(""),
            },
            |(_, v)| v.clone(),
        )),
        (Val::List(_) | Val::Str(_), other) => Err(format!(
            "cannot index slice/array with type {}",
            other.type_name()
        )),
        (Val::Map(..), other) => Err(format!(
            "value has type {}; should be string",
            other.type_name()
        )),
        (Val::Missing, _) => Err("index of untyped nil".into()),
        (Val::Nil(_), _) => Err("index of nil pointer".into()),
        (other, _) => Err(format!("can't index item of type {}", other.type_name())),
    }
}

/// Go's `strings.Split`.
fn go_split(s: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        return s.chars().map(String::from).collect();
    }
    s.split(sep).map(String::from).collect()
}

/// sprig's `strslice`.
fn strslice(v: &Val) -> Result<Vec<String>, String> {
    match v {
        Val::List(items) => items
            .iter()
            .filter(|i| !matches!(i, Val::Missing) && !matches!(i, Val::Nil(t) if t.is_empty()))
            .map(strval)
            .collect(),
        Val::Missing => Ok(Vec::new()),
        Val::Nil("") => Ok(Vec::new()),
        other => Ok(vec![strval(other)?]),
    }
}

/// Go's `strconv.Quote`.
pub(super) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(PartialEq)]
enum Kind {
    Nil,
    Bool,
    Int,
    Float,
    Str,
    Complex,
}

fn kind(v: &Val) -> Kind {
    match v {
        Val::Missing | Val::Nil(_) => Kind::Nil,
        Val::Bool(_) => Kind::Bool,
        Val::Int(_) | Val::Duration(_) | Val::FileMode(_) => Kind::Int,
        Val::Float(_) => Kind::Float,
        Val::Str(_) | Val::Url(_) => Kind::Str,
        Val::List(_) | Val::Map(..) | Val::Struct { .. } => Kind::Complex,
    }
}

fn int_of(v: &Val) -> i64 {
    match v {
        Val::Int(i) | Val::Duration(i) => *i,
        Val::FileMode(m) => i64::from(*m),
        _ => 0,
    }
}

/// Go template `eq` for one pair.
fn equal(a: &Val, b: &Val) -> Result<bool, String> {
    let (ka, kb) = (kind(a), kind(b));
    if ka == Kind::Nil || kb == Kind::Nil {
        return Ok(ka == kb);
    }
    if ka == Kind::Complex || kb == Kind::Complex {
        let complex = if ka == Kind::Complex { a } else { b };
        return Err(format!("non-comparable type {}", complex.type_name()));
    }
    if ka != kb {
        return Err(format!(
            "incompatible types for comparison ({} and {})",
            a.type_name(),
            b.type_name()
        ));
    }
    Ok(match (a, b) {
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Float(x), Val::Float(y)) => x == y,
        (Val::Str(x) | Val::Url(x), Val::Str(y) | Val::Url(y)) => x == y,
        _ => int_of(a) == int_of(b),
    })
}

/// Go template `lt` and friends.
fn order(a: &Val, b: &Val) -> Result<std::cmp::Ordering, String> {
    let (ka, kb) = (kind(a), kind(b));
    if ka != kb {
        return Err(format!(
            "incompatible types for comparison ({} and {})",
            a.type_name(),
            b.type_name()
        ));
    }
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(y).ok_or_else(|| "cannot order NaN".into()),
        _ if ka == Kind::Int => Ok(int_of(a).cmp(&int_of(b))),
        _ => Err(format!("invalid type for comparison: {}", a.type_name())),
    }
}

/// Go's `fmt.Sprint` (`spaced` false) or `fmt.Sprintln`.
fn sprint(args: &[Val], line: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut prev_string = false;
    for (i, a) in args.iter().enumerate() {
        let a = any_arg(a.clone());
        let is_string = matches!(a, Val::Str(_));
        if i > 0 && (line || (!is_string && !prev_string)) {
            out.push(' ');
        }
        out.push_str(&print(&a)?);
        prev_string = is_string;
    }
    if line {
        out.push('\n');
    }
    Ok(out)
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %q %t %f %e %g %x %X %%`, with
/// flags `-`, `0`, `+`, width and precision; bad verbs, missing and extra arguments are
/// written the way Go writes them (`%!d(string=x)`, `%!s(MISSING)`, `%!(EXTRA …)`).
pub(super) fn sprintf(format: &str, args: &[Val]) -> Result<String, String> {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut zero, mut plus) = (false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        // Go's `parsenum`: a number growing past 1e6 is "crazy long"; the rest of the
        // format is dropped and `%!(NOVERB)` written.
        let number = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| -> Option<usize> {
            let mut n = 0usize;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                if n > 1_000_000 {
                    return None;
                }
                n = n * 10 + d as usize;
                chars.next();
            }
            Some(n)
        };
        let Some(width) = number(&mut chars) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let Some(p) = number(&mut chars) else {
                out.push_str("%!(NOVERB)");
                break;
            };
            precision = Some(p);
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        let text = format_verb(arg, verb, precision, plus)?;
        let len = text.chars().count();
        if len < width {
            let pad = width - len;
            if minus {
                out.push_str(&text);
                out.push_str(&" ".repeat(pad));
            } else if zero && matches!(verb, 'd' | 'f' | 'e' | 'g' | 'x' | 'X') {
                let (sign, digits) = match text.strip_prefix('-') {
                    Some(d) => ("-", d),
                    None => ("", text.as_str()),
                };
                out.push_str(sign);
                out.push_str(&"0".repeat(pad));
                out.push_str(digits);
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(&text);
            }
        } else {
            out.push_str(&text);
        }
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Result<Vec<String>, String> = args[next..]
            .iter()
            .map(|a| Ok(format!("{}={}", a.type_name(), print(a)?)))
            .collect();
        out.push_str(&extra?.join(", "));
        out.push(')');
    }
    Ok(out)
}

fn bad_verb(verb: char, arg: &Val) -> Result<String, String> {
    Ok(match arg {
        Val::Nil("") => format!("%!{verb}(<nil>)"),
        Val::Missing => format!("%!{verb}(<nil>)"),
        other => format!("%!{verb}({}={})", other.type_name(), print(other)?),
    })
}

fn format_verb(
    arg: &Val,
    verb: char,
    precision: Option<usize>,
    plus: bool,
) -> Result<String, String> {
    if let Val::List(items) = arg
        && verb != 'v'
    {
        let parts: Result<Vec<String>, String> = items
            .iter()
            .map(|i| format_verb(i, verb, precision, plus))
            .collect();
        return Ok(format!("[{}]", parts?.join(" ")));
    }
    match (verb, arg) {
        ('v', Val::Float(f)) if precision.is_some() => {
            Ok(format!("{f:.*}", precision.unwrap_or(6)))
        }
        ('v', Val::Int(i)) if plus => Ok(format!("{i:+}")),
        ('v', other) => print(other),
        ('s', Val::Str(s) | Val::Url(s)) => Ok(match precision {
            Some(p) => s.chars().take(p).collect(),
            None => s.clone(),
        }),
        ('s', Val::Duration(_) | Val::FileMode(_) | Val::Map(..)) => print(arg),
        ('d', Val::Int(_) | Val::Duration(_) | Val::FileMode(_)) => {
            let i = int_of(arg);
            Ok(if plus {
                format!("{i:+}")
            } else {
                i.to_string()
            })
        }
        ('q', Val::Str(s) | Val::Url(s)) => Ok(go_quote(s)),
        ('q', Val::Int(i)) => Ok(char::from_u32(u32::try_from(*i).unwrap_or(0xFFFD))
            .map_or_else(|| "'\u{FFFD}'".into(), |c| format!("'{c}'"))),
        ('t', Val::Bool(b)) => Ok(b.to_string()),
        ('f' | 'F', Val::Float(f)) => Ok(format!("{f:.*}", precision.unwrap_or(6))),
        ('e', Val::Float(f)) => {
            let s = format!("{f:.*e}", precision.unwrap_or(6));
            let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
            let e: i32 = e.parse().unwrap_or(0);
            Ok(format!(
                "{m}e{}{:02}",
                if e < 0 { '-' } else { '+' },
                e.abs()
            ))
        }
        ('g', Val::Float(f)) => Ok(format_float(*f)),
        ('x', Val::Int(i)) => Ok(format!("{i:x}")),
        ('X', Val::Int(i)) => Ok(format!("{i:X}")),
        ('x', Val::Str(s)) => Ok(s.bytes().map(|b| format!("{b:02x}")).collect()),
        ('X', Val::Str(s)) => Ok(s.bytes().map(|b| format!("{b:02X}")).collect()),
        _ => bad_verb(verb, arg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str(s: &str) -> Val {
        Val::Str(s.into())
    }

    #[test]
    fn printf_matches_go() {
        assert_eq!(
            sprintf(
                "%s-%d-%v",
                &[str("a"), Val::Int(3), Val::List(vec![str("x"), str("y")])]
            )
            .ok(),
            Some("a-3-[x y]".into())
        );
        assert_eq!(
            sprintf("%d", &[str("a")]).ok(),
            Some("%!d(string=a)".into())
        );
        assert_eq!(
            sprintf("%s %s", &[str("a")]).ok(),
            Some("a %!s(MISSING)".into())
        );
        assert_eq!(
            sprintf("%s", &[str("a"), Val::Int(1)]).ok(),
            Some("a%!(EXTRA int=1)".into())
        );
        assert_eq!(
            sprintf("%05d|%-3s|%q|%%", &[Val::Int(42), str("a"), str("b\"c")]).ok(),
            Some("00042|a  |\"b\\\"c\"|%".into())
        );
        assert_eq!(
            sprintf("%.2f %t", &[Val::Float(1.005), Val::Bool(true)]).ok(),
            Some("1.00 true".into())
        );
    }

    #[test]
    fn sprig_string_functions_take_the_subject_last() {
        assert!(matches!(
            call(
                "contains",
                vec![str("secureboot"), str("installer-secureboot:v1")]
            ),
            Ok(Val::Bool(true))
        ));
        assert!(matches!(
            call("hasPrefix", vec![str("ghcr"), str("ghcr.io/x")]),
            Ok(Val::Bool(true))
        ));
        assert!(
            matches!(call("replace", vec![str("."), str("-"), str("a.b.c")]), Ok(Val::Str(s)) if s == "a-b-c")
        );
        assert!(
            matches!(call("trimSuffix", vec![str(".yaml"), str("a.yaml")]), Ok(Val::Str(s)) if s == "a")
        );
        let err = call("upper", vec![Val::Int(1)]).err().unwrap_or_default();
        assert_eq!(err, "wrong type for value; expected string; got int");
    }

    #[test]
    fn default_and_empty_follow_sprig() {
        assert!(matches!(call("default", vec![str("x"), str("")]), Ok(Val::Str(s)) if s == "x"));
        assert!(
            matches!(call("default", vec![str("x"), Val::Missing]), Ok(Val::Str(s)) if s == "x")
        );
        assert!(
            matches!(call("default", vec![str("x"), Val::Bool(false)]), Ok(Val::Str(s)) if s == "x")
        );
        assert!(matches!(call("default", vec![str("x"), str("y")]), Ok(Val::Str(s)) if s == "y"));
    }

    #[test]
    fn eq_compares_like_go() {
        assert!(matches!(
            call("eq", vec![str("a"), str("b"), str("a")]),
            Ok(Val::Bool(true))
        ));
        assert!(call("eq", vec![str("a"), Val::Int(1)]).is_err());
        assert!(matches!(
            call("eq", vec![Val::Missing, str("a")]),
            Ok(Val::Bool(false))
        ));
        assert!(call("eq", vec![Val::List(vec![]), Val::List(vec![])]).is_err());
    }

    #[test]
    fn split_returns_a_map_and_split_list_a_list() {
        let m = call("split", vec![str("."), str("a.b")])
            .ok()
            .map(|v| print(&v));
        assert_eq!(m, Some(Ok("map[_0:a _1:b]".into())));
        let l = call("splitList", vec![str("."), str("a.b")])
            .ok()
            .map(|v| print(&v));
        assert_eq!(l, Some(Ok("[a b]".into())));
        let q = call("quote", vec![str("a"), Val::Missing, Val::Int(2)])
            .ok()
            .map(|v| print(&v));
        assert_eq!(q, Some(Ok("\"a\" \"2\"".into())));
    }
}
