//! A YAML emitter that lays documents out the way Go `yaml.v3` does for a given indent:
//! block style everywhere, sequences indented inside mappings, nested content aligned to
//! the next multiple of the indent (the rule that puts sops' `enc: |` payload two columns
//! under its key), multi-line strings as literal blocks, double quotes when a plain scalar
//! would read back as something else.
//!
//! The emitter lays out any tree that implements [`EmitNode`]; [`Value`] does. Other models
//! implement it when their scalars have their own plain forms (sops trees write Go floats as
//! `1e+06` and timestamps unquoted, as `yaml.v3` does for `float64` and `time.Time`).

use std::borrow::Cow;

use crate::Value;
use crate::resolve::needs_quotes_for_type;

/// How to lay out a document.
#[derive(Clone, Copy, Debug)]
pub struct EmitOptions {
    /// Spaces per nesting level: 2 for machine configs and cluster files, 4 for sops files.
    pub indent: usize,
}

impl Default for EmitOptions {
    fn default() -> Self {
        EmitOptions { indent: 2 }
    }
}

/// What the emitter needs to know about one node of a tree.
pub enum Shape<'a, N> {
    /// A mapping, in order. Empty mappings are written `{}`.
    Map(Vec<(&'a str, &'a N)>),
    /// A sequence. Empty sequences are written `[]`.
    Seq(&'a [N]),
    /// A string: plain when that reads back as the same string, else double-quoted;
    /// multi-line strings as literal blocks.
    Str(&'a str),
    /// A non-string scalar already in its plain form (`42`, `true`, `null`,
    /// `2024-01-01T00:00:00Z`), written as given.
    Plain(Cow<'a, str>),
}

/// A tree the emitter can lay out.
pub trait EmitNode: Sized {
    fn shape(&self) -> Shape<'_, Self>;
}

impl EmitNode for Value {
    fn shape(&self) -> Shape<'_, Self> {
        match self {
            Value::Object(m) => Shape::Map(m.iter().map(|(k, v)| (k.as_str(), v)).collect()),
            Value::Array(a) => Shape::Seq(a),
            Value::String(s) => Shape::Str(s),
            Value::Null => Shape::Plain(Cow::Borrowed("null")),
            Value::Bool(b) => Shape::Plain(Cow::Borrowed(if *b { "true" } else { "false" })),
            Value::Number(n) => Shape::Plain(Cow::Owned(number_str(n))),
        }
    }
}

/// One document with a 2-space indent.
pub fn to_string(v: &Value) -> String {
    to_string_with(v, EmitOptions::default())
}

pub fn to_string_with(v: &Value, opts: EmitOptions) -> String {
    node_to_string(v, opts)
}

/// Several documents separated by `---` lines.
pub fn to_string_multi(docs: &[Value], opts: EmitOptions) -> String {
    nodes_to_string(docs, opts)
}

/// One document of any [`EmitNode`] tree.
pub fn node_to_string<N: EmitNode>(v: &N, opts: EmitOptions) -> String {
    let mut e = Emitter {
        out: String::new(),
        best: opts.indent.max(2),
    };
    e.top(v);
    e.out
}

/// Several documents of any [`EmitNode`] tree, separated by `---` lines.
pub fn nodes_to_string<N: EmitNode>(docs: &[N], opts: EmitOptions) -> String {
    let mut out = String::new();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&node_to_string(d, opts));
    }
    out
}

struct Emitter {
    out: String,
    best: usize,
}

impl Emitter {
    fn child_indent(&self, ind: usize) -> usize {
        self.best * ((ind + self.best) / self.best)
    }

    fn pad(&mut self, n: usize) {
        self.out.extend(std::iter::repeat_n(' ', n));
    }

    fn top<N: EmitNode>(&mut self, v: &N) {
        match v.shape() {
            Shape::Map(m) if !m.is_empty() => self.map(&m, 0, false),
            Shape::Seq(a) if !a.is_empty() => self.seq(a, 0, false),
            Shape::Str(s) if is_multiline(s) && literal_ok(s) => {
                self.out.push('|');
                self.literal(s, self.best);
            }
            other => {
                self.inline(&other);
                self.out.push('\n');
            }
        }
    }

    fn map<N: EmitNode>(&mut self, m: &[(&str, &N)], ind: usize, first_inline: bool) {
        for (i, (k, v)) in m.iter().enumerate() {
            if i > 0 || !first_inline {
                self.pad(ind);
            }
            self.out.push_str(&scalar_str(k));
            self.out.push(':');
            match v.shape() {
                Shape::Map(cm) if !cm.is_empty() => {
                    self.out.push('\n');
                    let ci = self.child_indent(ind);
                    self.map(&cm, ci, false);
                }
                Shape::Seq(ca) if !ca.is_empty() => {
                    self.out.push('\n');
                    let ci = self.child_indent(ind);
                    self.seq(ca, ci, false);
                }
                Shape::Str(s) if is_multiline(s) && literal_ok(s) => {
                    self.out.push_str(" |");
                    let ci = self.child_indent(ind);
                    self.literal(s, ci);
                }
                other => {
                    self.out.push(' ');
                    self.inline(&other);
                    self.out.push('\n');
                }
            }
        }
    }

    fn seq<N: EmitNode>(&mut self, a: &[N], ind: usize, first_inline: bool) {
        for (i, v) in a.iter().enumerate() {
            if i > 0 || !first_inline {
                self.pad(ind);
            }
            self.out.push('-');
            match v.shape() {
                Shape::Map(cm) if !cm.is_empty() => {
                    self.out.push(' ');
                    self.map(&cm, ind + 2, true);
                }
                Shape::Seq(ca) if !ca.is_empty() => {
                    self.out.push(' ');
                    self.seq(ca, ind + 2, true);
                }
                Shape::Str(s) if is_multiline(s) && literal_ok(s) => {
                    self.out.push_str(" |");
                    self.literal(s, ind + 2);
                }
                other => {
                    self.out.push(' ');
                    self.inline(&other);
                    self.out.push('\n');
                }
            }
        }
    }

    /// A scalar or an empty collection on the current line.
    fn inline<N>(&mut self, shape: &Shape<'_, N>) {
        match shape {
            Shape::Map(_) => self.out.push_str("{}"),
            Shape::Seq(_) => self.out.push_str("[]"),
            Shape::Str(s) => self.out.push_str(&scalar_str(s)),
            Shape::Plain(p) => self.out.push_str(p),
        }
    }

    /// Writes the chomping indicator and the indented body of a literal block.
    fn literal(&mut self, s: &str, ind: usize) {
        let trailing = s.len() - s.trim_end_matches('\n').len();
        let body = s.trim_end_matches('\n');
        self.out.push_str(match trailing {
            0 => "-\n",
            1 => "\n",
            _ => "+\n",
        });
        for line in body.split('\n') {
            if !line.is_empty() {
                self.pad(ind);
                self.out.push_str(line);
            }
            self.out.push('\n');
        }
        for _ in 1..trailing {
            self.out.push('\n');
        }
    }
}

fn is_multiline(s: &str) -> bool {
    s.contains('\n')
}

/// Literal blocks cannot carry trailing spaces, a leading space (without an indentation
/// indicator), carriage returns or non-printable characters; those strings get quotes.
fn literal_ok(s: &str) -> bool {
    !s.starts_with(' ')
        && !s.starts_with('\n')
        && s.split('\n')
            .all(|l| !l.ends_with(' ') && !l.ends_with('\t'))
        && s.chars().all(|c| c == '\n' || c == '\t' || is_printable(c))
}

fn number_str(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        float_str(n.as_f64().unwrap_or(0.0))
    }
}

fn float_str(f: f64) -> String {
    if f.is_nan() {
        ".nan".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        }
    } else {
        // Debug keeps a `.0` or an exponent, so the text reads back as a float.
        format!("{f:?}")
    }
}

/// A string as `yaml.v3` writes it: double quotes when a plain scalar would read back as
/// another type, plain when the syntax allows, else single quotes, else double quotes.
fn scalar_str(s: &str) -> String {
    if s == "<<" {
        // yaml.v3 tags the merge-key string explicitly.
        "!!merge <<".to_string()
    } else if needs_quotes_for_type(s) {
        double_quoted(s)
    } else if plain_ok(s) {
        s.to_string()
    } else if single_quote_ok(s) {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        double_quoted(s)
    }
}

/// Single quotes cannot carry line breaks, tabs or non-printable characters.
fn single_quote_ok(s: &str) -> bool {
    s.chars()
        .all(|c| c != '\t' && !is_break(c) && is_printable(c))
}

fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if needs_quotes_for_type(s) || s == "<<" {
        return false;
    }
    if first == ' ' || s.ends_with(' ') {
        return false;
    }
    let second_is_space = s.chars().nth(1).is_none_or(char::is_whitespace);
    match first {
        '-' | '?' | ':' if second_is_space => return false,
        ',' | '[' | ']' | '{' | '}' | '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%'
        | '@' | '`' => return false,
        _ => {}
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    s.chars()
        .all(|c| c != '\t' && c != '\n' && c != '\r' && is_printable(c))
}

fn is_printable(c: char) -> bool {
    match c {
        '\u{20}'..='\u{7e}' => true,
        '\u{85}' => false,
        '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}' => {
            c != '\u{feff}' && c != '\u{2028}' && c != '\u{2029}'
        }
        _ => false,
    }
}

/// Double quotes with `yaml.v3`'s escapes.
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if is_printable(c) => out.push(c),
            c if (c as u32) <= 0xff => out.push_str(&format!("\\x{:02X}", c as u32)),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use serde_json::json;

    fn roundtrip(v: &Value, indent: usize) {
        let text = to_string_with(v, EmitOptions { indent });
        let back = parse(&text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .to_value();
        assert_eq!(&back, v, "\n{text}");
    }

    #[test]
    fn layout_matches_yaml_v3_with_indent_4() {
        let v = json!({
            "sops": {
                "age": [{"recipient": "age1xyz", "enc": "-----BEGIN AGE-----\nabc\n-----END AGE-----\n"}],
                "lastmodified": "2026-11-21T19:22:25Z",
                "version": "3.11.0"
            }
        });
        let text = to_string_with(&v, EmitOptions { indent: 4 });
        assert_eq!(
            text,
            "sops:\n    age:\n        - recipient: age1xyz\n          enc: |\n            -----BEGIN AGE-----\n            abc\n            -----END AGE-----\n    lastmodified: \"2026-11-21T19:22:25Z\"\n    version: 3.11.0\n"
        );
        roundtrip(&v, 4);
    }

    #[test]
    fn layout_with_indent_2() {
        let v = json!({"machine": {"certSANs": ["a", "b"], "files": [{"path": "/x", "op": "create"}], "empty": {}, "list": []}});
        assert_eq!(
            to_string(&v),
            "machine:\n  certSANs:\n    - a\n    - b\n  files:\n    - path: /x\n      op: create\n  empty: {}\n  list: []\n"
        );
    }

    #[test]
    fn quoting() {
        for s in [
            "true",
            "on",
            "0644",
            "1.5",
            "",
            " lead",
            "trail ",
            "a: b",
            "a #b",
            "#c",
            "- x",
            "*x",
            "null",
            "~",
            "2026-01-01",
            "tab\there",
            "back\\slash \"q\"",
            "\u{7}",
            "{x}",
            "x:",
            "12:30",
            "-",
            "@at",
        ] {
            roundtrip(&json!({ "k": s, s: 1 }), 2);
        }
        assert_eq!(to_string(&json!({"k": "10.0.1.10"})), "k: 10.0.1.10\n");
        assert_eq!(to_string(&json!({"k": "-foo"})), "k: -foo\n");
        assert_eq!(to_string(&json!({"k": "true"})), "k: \"true\"\n");
    }

    #[test]
    fn quote_styles_like_yaml_v3() {
        // Outputs of Go yaml.v3 (through sops 3.11) for these strings.
        for (s, want) in [
            (" lead", "' lead'"),
            ("trail ", "'trail '"),
            ("a: b", "'a: b'"),
            ("#c", "'#c'"),
            ("- x", "'- x'"),
            ("*x", "'*x'"),
            ("{x}", "'{x}'"),
            ("x:", "'x:'"),
            ("it's: x", "'it''s: x'"),
            ("é: ü", "'é: ü'"),
            ("-", "'-'"),
            ("a #b", "'a #b'"),
            (":x", ":x"),
            ("x\u{a0}", "x\u{a0}"),
            ("yes", "\"yes\""),
            ("", "\"\""),
            ("tab\there", "\"tab\\there\""),
            ("x\ry", "\"x\\ry\""),
            ("a\u{7}b", "\"a\\ab\""),
            (
                "x\u{85}y\u{2028}z\u{feff}\u{1b}\u{b}\u{a0}",
                "\"x\\Ny\\Lz\\uFEFF\\e\\v\u{a0}\"",
            ),
        ] {
            assert_eq!(
                to_string(&json!({ "k": s })),
                format!("k: {want}\n"),
                "{s:?}"
            );
        }
        assert_eq!(to_string(&json!({ "k: y": 1 })), "'k: y': 1\n");
        // The merge-key string, as yaml.v3 writes it; it reads back as the string `<<`.
        assert_eq!(to_string(&json!({ "k": "<<" })), "k: !!merge <<\n");
        roundtrip(&json!({ "k": "<<" }), 2);
    }

    #[test]
    fn multiline_strings() {
        for s in [
            "a\nb\n",
            "a\nb",
            "a\n\nb\n\n",
            "  lead\nx\n",
            "trail \nx\n",
            "x\r\ny\n",
            "\nx\n",
        ] {
            roundtrip(&json!({ "k": s, "l": [s, {"m": s}] }), 2);
            roundtrip(&json!({ "k": s, "l": [s, {"m": s}] }), 4);
        }
        assert_eq!(to_string(&json!({"k": "a\nb\n"})), "k: |\n  a\n  b\n");
        assert_eq!(to_string(&json!({"k": "a\nb"})), "k: |-\n  a\n  b\n");
    }

    /// A tree with its own plain scalar forms, as sops writes Go `float64` and `time.Time`.
    enum Custom {
        Map(Vec<(String, Custom)>),
        Seq(Vec<Custom>),
        Str(String),
        Plain(String),
    }

    impl EmitNode for Custom {
        fn shape(&self) -> Shape<'_, Self> {
            match self {
                Custom::Map(m) => Shape::Map(m.iter().map(|(k, v)| (k.as_str(), v)).collect()),
                Custom::Seq(a) => Shape::Seq(a),
                Custom::Str(s) => Shape::Str(s),
                Custom::Plain(p) => Shape::Plain(Cow::Borrowed(p)),
            }
        }
    }

    #[test]
    fn custom_trees_write_plain_scalars_as_given() {
        let m = |v: Vec<(&str, Custom)>| {
            Custom::Map(v.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        };
        let doc = m(vec![
            ("f", Custom::Plain("1e+06".into())),
            ("t", Custom::Plain("2024-01-01T00:00:00Z".into())),
            ("s", Custom::Str("2024-01-01T00:00:00Z".into())),
            (
                "l",
                Custom::Seq(vec![
                    Custom::Plain(".inf".into()),
                    m(vec![("k", Custom::Str("a\nb\n".into()))]),
                ]),
            ),
            ("e", Custom::Seq(vec![])),
            ("o", m(vec![])),
        ]);
        let text = nodes_to_string(
            &[doc, m(vec![("x", Custom::Plain("1".into()))])],
            EmitOptions { indent: 4 },
        );
        assert_eq!(
            text,
            "f: 1e+06\nt: 2024-01-01T00:00:00Z\ns: \"2024-01-01T00:00:00Z\"\nl:\n    - .inf\n    - k: |\n        a\n        b\ne: []\no: {}\n---\nx: 1\n"
        );
    }

    #[test]
    fn numbers_and_nesting() {
        roundtrip(
            &json!({"i": -5, "u": u64::MAX, "f": 1.0, "g": 0.1, "h": 1e300, "n": null, "b": false}),
            2,
        );
        roundtrip(&json!([[1, [2, 3]], {"a": [{"b": {"c": [1]}}]}, []]), 2);
        roundtrip(&json!([[1, [2, 3]], {"a": [{"b": {"c": [1]}}]}, []]), 4);
        assert_eq!(to_string(&json!({"f": 1.0})), "f: 1.0\n");
    }
}
