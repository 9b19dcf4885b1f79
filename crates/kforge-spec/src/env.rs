//! Environment for substitution: variables from env files (`talenv.yaml`, `-e FILE`) and the
//! process environment, and the substitution itself.
//!
//! Files are read the way talhelper reads them (godotenv: `KEY=value` or `KEY: value` lines,
//! `export` prefix, quotes, comments, `---` lines ignored); later files override earlier
//! ones and files override the process environment. Unlike talhelper, a malformed line is an
//! error with its `file:line`, not silence.
//!
//! Substitution runs on the raw text (so values can carry YAML, as in talhelper) and accepts
//! the bash forms `$VAR`, `${VAR}`, `${VAR-x}`, `${VAR:-x}`, `${VAR=x}`, `${VAR:=x}`,
//! `${VAR+x}`, `${VAR:+x}`, `${#VAR}`, `${VAR:offset[:length]}`, `${VAR^}`, `${VAR^^}`,
//! `${VAR,}`, `${VAR,,}`, and `$$` for a literal `$`. A variable that is unset or empty
//! where its value is used is an error naming it and its line. `#` comments are left alone.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};

use indexmap::IndexMap;

use crate::diagnostic::{Diagnostic, LineIndex, SourceMap};

/// Where a variable's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    File { path: PathBuf, line: usize },
    Process,
}

/// The variables available for substitution.
#[derive(Clone, Debug, Default)]
pub struct Env {
    files: IndexMap<String, (String, Origin)>,
    process: HashMap<String, String>,
}

impl Env {
    /// An environment backed by a snapshot of the process environment.
    pub fn new(process: HashMap<String, String>) -> Self {
        Env {
            files: IndexMap::new(),
            process,
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.files
            .get(name)
            .map(|(v, _)| v.as_str())
            .or_else(|| self.process.get(name).map(String::as_str))
    }

    pub fn origin(&self, name: &str) -> Option<Origin> {
        self.files
            .get(name)
            .map(|(_, o)| o.clone())
            .or_else(|| self.process.contains_key(name).then_some(Origin::Process))
    }

    /// Variables defined by env files, in the order they were defined.
    pub fn file_vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files
            .iter()
            .map(|(k, (v, _))| (k.as_str(), v.as_str()))
    }

    /// Reads an env file's text; every malformed line is reported.
    pub fn load_file(&mut self, path: &FsPath, text: &str) -> Result<(), Vec<Diagnostic>> {
        let parsed = parse_env_file(path, text)?;
        for (k, v, line) in parsed {
            self.files.insert(
                k,
                (
                    v,
                    Origin::File {
                        path: path.to_path_buf(),
                        line,
                    },
                ),
            );
        }
        Ok(())
    }
}

fn parse_env_file(
    path: &FsPath,
    text: &str,
) -> Result<Vec<(String, String, usize)>, Vec<Diagnostic>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let lines: Vec<&str> = text.split('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let raw = lines[i].trim_end_matches('\r');
        i += 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line == "---" || line == "..." {
            continue;
        }
        let body = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some(sep) = body.find(['=', ':']) else {
            errors.push(env_error(
                path,
                lineno,
                raw,
                "expected `KEY=value` or `KEY: value`",
            ));
            continue;
        };
        let key = body[..sep].trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            errors.push(env_error(
                path,
                lineno,
                raw,
                &format!("`{key}` is not a valid variable name (letters, digits and `_`)"),
            ));
            continue;
        }
        let rest = body[sep + 1..].trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                // A quoted value may span lines until the closing quote.
                let mut acc = rest[1..].to_string();
                let mut closed = None;
                loop {
                    if let Some(end) = find_closing(&acc, q) {
                        closed = Some(end);
                        break;
                    }
                    if i >= lines.len() {
                        break;
                    }
                    acc.push('\n');
                    acc.push_str(lines[i].trim_end_matches('\r'));
                    i += 1;
                }
                let Some(end) = closed else {
                    errors.push(env_error(
                        path,
                        lineno,
                        raw,
                        &format!("unterminated {q}quoted{q} value"),
                    ));
                    continue;
                };
                let inner = &acc[..end];
                if q == '"' {
                    unescape_double(inner)
                } else {
                    inner.to_string()
                }
            }
            _ => {
                let v = match rest.find(" #") {
                    Some(p) => &rest[..p],
                    None => rest,
                };
                v.trim().to_string()
            }
        };
        out.push((key.to_string(), value, lineno));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn find_closing(s: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && q == '"' {
            escaped = true;
        } else if c == q {
            return Some(i);
        }
    }
    None
}

fn unescape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn env_error(path: &FsPath, line: usize, raw: &str, what: &str) -> Diagnostic {
    let col = raw.len() - raw.trim_start().len() + 1;
    Diagnostic::error(
        "env-file",
        format!("malformed line in env file {}", path.display()),
    )
    .at(Some(crate::diagnostic::Location::in_line(
        path,
        line,
        col,
        raw.trim().chars().count(),
        raw,
    )))
    .label(what.to_string())
    .help("env files hold one `KEY=value` or `KEY: value` per line; `#` starts a comment")
}

/// Text after substitution and how to map its positions back.
#[derive(Clone, Debug)]
pub struct Substituted {
    pub text: String,
    pub map: SourceMap,
}

/// At most this many problems are reported per text; a file with thousands of broken `${`
/// says so once more rather than thousands of times.
const MAX_ERRORS: usize = 100;

/// How deeply `${A:-${B:-…}}` defaults may nest.
const MAX_NESTING: usize = 16;

/// Substitutes variables in `text` (the contents of `file`). Every unset or empty variable
/// and every malformed expression is reported (up to a limit, then a count of the rest).
pub fn substitute(text: &str, file: &FsPath, env: &Env) -> Result<Substituted, Vec<Diagnostic>> {
    substitute_nested(text, file, env, 0)
}

fn substitute_nested(
    text: &str,
    file: &FsPath,
    env: &Env,
    depth: usize,
) -> Result<Substituted, Vec<Diagnostic>> {
    let chars: Vec<char> = text.chars().collect();
    let closing = closing_braces(&chars);
    let mut suppressed = 0usize;
    let mut first_suppressed = None;
    let index = LineIndex::new(text);
    let mut out = String::with_capacity(text.len());
    let mut out_len = 0usize;
    let mut map = SourceMap::default();
    let mut errors = Vec::new();
    let mut i = 0;
    let mut lit_start = 0;
    let mut line_start = true;
    let mut in_quote: Option<char> = None;
    let mut prev = '\n';

    let flush =
        |out: &mut String, out_len: &mut usize, map: &mut SourceMap, from: usize, to: usize| {
            if to > from {
                map.push_literal(*out_len, from, to - from);
                out.extend(&chars[from..to]);
                *out_len += to - from;
            }
        };

    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line_start = true;
            in_quote = None;
            prev = c;
            i += 1;
            continue;
        }
        // Comments: a `#` at the start of a line or after whitespace, outside quotes.
        if c == '#' && in_quote.is_none() && (line_start || prev == ' ' || prev == '\t') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if (c == '"' || c == '\'')
            && in_quote.is_none()
            && matches!(prev, ' ' | '\t' | ':' | '[' | '{' | ',' | '-' | '\n')
        {
            in_quote = Some(c);
        } else if Some(c) == in_quote {
            in_quote = None;
        }
        if !c.is_whitespace() {
            line_start = false;
        }
        if c != '$' {
            prev = c;
            i += 1;
            continue;
        }
        // `$` at i.
        let next = chars.get(i + 1).copied();
        let (consumed, replacement) = match next {
            Some('$') => (2, Ok(Some("$".to_string()))),
            Some('{') => match closing.get(&(i + 1)) {
                None => (1, Err("`${` without a closing `}`".to_string())),
                Some(&close) => {
                    let expr: String = chars[i + 2..close].iter().collect();
                    (close - i + 1, eval_braced(&expr, env, depth).map(Some))
                }
            },
            Some(n) if n == '_' || n.is_ascii_alphabetic() => {
                let len = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .count();
                let name: String = chars[i + 1..i + 1 + len].iter().collect();
                (len + 1, lookup(&name, env).map(Some))
            }
            _ => (1, Ok(None)),
        };
        match replacement {
            Ok(None) => {
                prev = c;
                i += 1;
            }
            Ok(Some(value)) => {
                flush(&mut out, &mut out_len, &mut map, lit_start, i);
                let vlen = value.chars().count();
                map.push_replaced(out_len, i, vlen, consumed);
                out.push_str(&value);
                out_len += vlen;
                i += consumed;
                lit_start = i;
                prev = 'x';
            }
            Err(_) if errors.len() >= MAX_ERRORS => {
                suppressed += 1;
                if first_suppressed.is_none() {
                    first_suppressed = Some(index.location(file, i, i + consumed));
                }
                i += consumed;
                prev = 'x';
            }
            Err(msg) => {
                let mut loc = index.location(file, i, i + consumed);
                loc.len = consumed.min(loc.len.max(consumed));
                let d = Diagnostic::error("env-var", msg.clone()).at(Some(loc));
                errors.push(if msg.contains("not set") || msg.contains("is empty") {
                    d.help("define it in talenv.yaml, a file given with -e/--env-file, or the environment")
                } else {
                    d
                });
                i += consumed;
                prev = 'x';
            }
        }
    }
    flush(&mut out, &mut out_len, &mut map, lit_start, chars.len());
    if suppressed > 0 {
        errors.push(
            Diagnostic::error(
                "env-var",
                format!(
                    "{suppressed} more problem(s) with variables in {} are not shown",
                    file.display()
                ),
            )
            .at(first_suppressed)
            .label("the first of them"),
        );
    }
    if errors.is_empty() {
        Ok(Substituted { text: out, map })
    } else {
        Err(errors)
    }
}

/// For every `{` that follows a `$`, the index of the `}` closing it on the same line
/// (nested braces, as in `${A:-${B}}`, pair up inside). One pass over the text, so a line
/// of a million unclosed `${` costs no more than reading it.
fn closing_braces(chars: &[char]) -> HashMap<usize, usize> {
    let mut open: Vec<usize> = Vec::new();
    let mut out = HashMap::new();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '{' => open.push(i),
            '}' => {
                if let Some(o) = open.pop()
                    && o > 0
                    && chars[o - 1] == '$'
                {
                    out.insert(o, i);
                }
            }
            '\n' => open.clear(),
            _ => {}
        }
    }
    out
}

fn lookup(name: &str, env: &Env) -> Result<String, String> {
    match env.get(name) {
        None => Err(format!("variable ${{{name}}} is not set")),
        Some("") => Err(format!("variable ${{{name}}} is empty")),
        Some(v) => Ok(v.to_string()),
    }
}

/// Evaluates the inside of `${…}`.
fn eval_braced(expr: &str, env: &Env, depth: usize) -> Result<String, String> {
    if let Some(name) = expr.strip_prefix('#') {
        check_name(name)?;
        return Ok(env.get(name).unwrap_or("").chars().count().to_string());
    }
    let name_len = expr
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .count();
    let (name, op) = expr.split_at(name_len);
    check_name(name)?;
    let value = env.get(name);
    let set = value.is_some();
    let nonempty = value.is_some_and(|v| !v.is_empty());
    let sub_default = |d: &str| -> Result<String, String> { substitute_inner(d, env, depth + 1) };
    match op {
        "" => lookup(name, env),
        _ if op.starts_with(":-") => {
            if nonempty {
                lookup(name, env)
            } else {
                sub_default(&op[2..])
            }
        }
        _ if op.starts_with(":=") => {
            if nonempty {
                lookup(name, env)
            } else {
                sub_default(&op[2..])
            }
        }
        _ if op.starts_with(":+") => {
            if nonempty {
                sub_default(&op[2..])
            } else {
                Ok(String::new())
            }
        }
        _ if op.starts_with('-') => {
            if set {
                lookup(name, env)
            } else {
                sub_default(&op[1..])
            }
        }
        _ if op.starts_with('=') => {
            if set {
                lookup(name, env)
            } else {
                sub_default(&op[1..])
            }
        }
        _ if op.starts_with('+') => {
            if set {
                sub_default(&op[1..])
            } else {
                Ok(String::new())
            }
        }
        "^" => lookup(name, env).map(|v| change_first(&v, true)),
        "^^" => lookup(name, env).map(|v| v.to_uppercase()),
        "," => lookup(name, env).map(|v| change_first(&v, false)),
        ",," => lookup(name, env).map(|v| v.to_lowercase()),
        _ if op.starts_with(':') => {
            let v: Vec<char> = lookup(name, env)?.chars().collect();
            let mut parts = op[1..].splitn(2, ':');
            let parse = |s: Option<&str>| -> Result<Option<i64>, String> {
                match s.map(str::trim) {
                    None => Ok(None),
                    Some(t) => t
                        .parse::<i64>()
                        .map(Some)
                        .map_err(|_| format!("`${{{expr}}}`: `{t}` is not a number")),
                }
            };
            let off = parse(parts.next())?.unwrap_or(0);
            let len = parse(parts.next())?;
            let n = v.len() as i64;
            let start = if off < 0 {
                (n + off).max(0)
            } else {
                off.min(n)
            } as usize;
            let end = match len {
                None => v.len(),
                Some(l) if l < 0 => ((n + l).max(start as i64)) as usize,
                Some(l) => (start + l as usize).min(v.len()),
            };
            Ok(v[start..end].iter().collect())
        }
        _ => Err(format!("unsupported substitution `${{{expr}}}`")),
    }
}

fn change_first(v: &str, upper: bool) -> String {
    let mut c = v.chars();
    match c.next() {
        None => String::new(),
        Some(f) => {
            let first: String = if upper {
                f.to_uppercase().collect()
            } else {
                f.to_lowercase().collect()
            };
            first + c.as_str()
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid variable name"))
    }
}

/// Substitution inside a default value (no position tracking needed).
fn substitute_inner(text: &str, env: &Env, depth: usize) -> Result<String, String> {
    if depth > MAX_NESTING {
        return Err(format!(
            "substitutions nest more than {MAX_NESTING} levels deep"
        ));
    }
    match substitute_nested(text, FsPath::new(""), env, depth) {
        Ok(s) => Ok(s.text),
        Err(diags) => Err(diags
            .into_iter()
            .next()
            .map_or_else(String::new, |d| d.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn sub(text: &str, e: &Env) -> Result<String, Vec<String>> {
        substitute(text, FsPath::new("t.yaml"), e)
            .map(|s| s.text)
            .map_err(|d| {
                d.into_iter()
                    .map(|d| {
                        format!(
                            "{}:{} {}",
                            d.location.as_ref().unwrap().line,
                            d.location.as_ref().unwrap().col,
                            d.message
                        )
                    })
                    .collect()
            })
    }

    #[test]
    fn bash_forms() {
        let e = env(&[("A", "hello"), ("E", "")]);
        assert_eq!(
            sub("$A ${A} ${B:-d} ${B-d} ${E:-d} ${A:+x} ${B+x} $$A", &e).unwrap(),
            "hello hello d d d x  $A"
        );
        // Set but empty, and the value itself is used: an error, as with talhelper.
        assert!(sub("${E-d}", &e).is_err());
        assert_eq!(
            sub("${#A} ${A:1:3} ${A:-2} ${A^} ${A^^}", &e).unwrap(),
            "5 ell hello Hello HELLO"
        );
        assert_eq!(sub("${B:-${A}}", &e).unwrap(), "hello");
        assert_eq!(sub("cost: 5$ and $1", &e).unwrap(), "cost: 5$ and $1");
    }

    #[test]
    fn unset_and_empty_are_errors_with_positions() {
        let e = env(&[("E", "")]);
        let errs = sub("a: 1\nb: ${MISSING}\nc: $E\nd: ${BAD\n", &e).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(errs[0], "2:4 variable ${MISSING} is not set");
        assert_eq!(errs[1], "3:4 variable ${E} is empty");
        assert!(errs[2].starts_with("4:4"));
    }

    #[test]
    fn hostile_texts_stay_bounded() {
        let e = env(&[("A", "a")]);
        // A long line of unclosed `${`: one error each up to the limit, then a count.
        let errs = sub(&format!("x: {}\n", "${".repeat(50_000)), &e).unwrap_err();
        assert_eq!(errs.len(), MAX_ERRORS + 1);
        assert!(
            errs[MAX_ERRORS]
                .ends_with("49900 more problem(s) with variables in t.yaml are not shown"),
            "{}",
            errs[MAX_ERRORS]
        );
        // Defaults nested thousands deep: an error, not a stack overflow.
        let deep = format!("{}x{}", "${B:-".repeat(5000), "}".repeat(5000));
        let errs = sub(&deep, &e).unwrap_err();
        assert!(errs[0].contains("nest more than 16 levels"), "{errs:?}");
        // Nesting within the limit still works, and braces pair up per line.
        assert_eq!(sub("${B:-${C:-${A}}} {x} ${A}", &e).unwrap(), "a {x} a");
        assert!(sub("${A\n}", &e).is_err());
    }

    #[test]
    fn comments_are_not_substituted() {
        let e = env(&[]);
        assert_eq!(
            sub("# uses ${X}\na: 1 # and $Y\nb: 'x # ${Z:-ok}'\n", &e).unwrap(),
            "# uses ${X}\na: 1 # and $Y\nb: 'x # ok'\n"
        );
    }

    #[test]
    fn positions_map_back() {
        let e = env(&[("LONG", "a-much-longer-value"), ("NL", "x\ny")]);
        let s = substitute("k: ${LONG}\nv: ${NL}\nz: bad", FsPath::new("t"), &e).unwrap();
        let z = s.text.find("bad").unwrap();
        let z = s.text[..z].chars().count();
        let orig = "k: ${LONG}\nv: ${NL}\nz: bad".find("bad").unwrap();
        assert_eq!(s.map.original(z), orig);
    }

    #[test]
    fn env_files() {
        let mut e = env(&[("A", "process"), ("B", "process")]);
        e.load_file(
            FsPath::new("talenv.yaml"),
            "---\n# c\nA: file\nexport C=\"q\\nv\"\nD: 'x y' \nF=plain # comment\n",
        )
        .unwrap();
        assert_eq!(e.get("A"), Some("file"));
        assert_eq!(e.get("B"), Some("process"));
        assert_eq!(e.get("C"), Some("q\nv"));
        assert_eq!(e.get("D"), Some("x y"));
        assert_eq!(e.get("F"), Some("plain"));
        let errs = e
            .load_file(
                FsPath::new("bad.env"),
                "ok=1\nthis is wrong\nx y=2\nQ=\"open\n",
            )
            .unwrap_err();
        assert_eq!(errs.len(), 3);
        assert_eq!(errs[0].location.as_ref().unwrap().line, 2);
    }
}
