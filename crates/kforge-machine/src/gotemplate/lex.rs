//! Splitting template text into text and actions, and actions into tokens, as Go's
//! `text/template/parse` lexer does (`{{- ` / ` -}}` trim markers, comments, quoted, raw and
//! character literals).

/// A piece of a template: literal text, or an action `{{ … }}`.
#[derive(Debug)]
pub(super) enum Piece {
    Text(String),
    Action(Action),
}

#[derive(Debug)]
pub(super) struct Action {
    /// Byte offsets of `{{` and just past `}}`.
    pub start: usize,
    pub end: usize,
    pub tokens: Vec<Token>,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub kind: Tok,
    /// Byte offset in the template.
    pub pos: usize,
    /// Whether white space separates this token from the one before it.
    pub space_before: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    /// `.Name` (without the dot).
    Field(String),
    Dot,
    /// `$name`, or `$` alone (name empty).
    Var(String),
    Str(String),
    /// A character constant, which Go treats as its code point.
    Char(i64),
    Number(String),
    Bool(bool),
    Nil,
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

/// A lexing error at a byte offset.
#[derive(Debug)]
pub(super) struct LexError {
    pub pos: usize,
    pub message: String,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

pub(super) fn lex(src: &str) -> Result<Vec<Piece>, LexError> {
    let bytes = src.as_bytes();
    let mut pieces = Vec::new();
    let mut i = 0;
    let mut trim_next_text = false;
    while i < bytes.len() {
        let next = src[i..].find("{{").map(|p| i + p);
        let text_end = next.unwrap_or(bytes.len());
        let mut text = &src[i..text_end];
        if trim_next_text {
            text = text.trim_start_matches([' ', '\t', '\r', '\n']);
        }
        let Some(start) = next else {
            if !text.is_empty() {
                pieces.push(Piece::Text(text.to_string()));
            }
            break;
        };
        // Left trim marker: `{{-` followed by white space.
        let left_trim = bytes.get(start + 2) == Some(&b'-')
            && bytes.get(start + 3).is_some_and(|b| is_space(*b));
        if left_trim {
            text = text.trim_end_matches([' ', '\t', '\r', '\n']);
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_string()));
        }
        let mut p = start + 2 + if left_trim { 2 } else { 0 };
        // Comments: `{{/* … */}}`, directly after the delimiter (and trim marker).
        if src[p..].starts_with("/*") {
            let Some(close) = src[p + 2..].find("*/") else {
                return Err(LexError {
                    pos: start,
                    message: "unclosed comment".into(),
                });
            };
            p = p + 2 + close + 2;
            let (end, right_trim) = if src[p..].starts_with("}}") {
                (p + 2, false)
            } else if bytes.get(p).is_some_and(|b| is_space(*b)) && src[p + 1..].starts_with("-}}")
            {
                (p + 4, true)
            } else {
                return Err(LexError {
                    pos: start,
                    message: "comment ends before closing delimiter".into(),
                });
            };
            trim_next_text = right_trim;
            i = end;
            continue;
        }
        let (tokens, end, right_trim) = lex_action(src, start, p)?;
        pieces.push(Piece::Action(Action { start, end, tokens }));
        trim_next_text = right_trim;
        i = end;
    }
    Ok(pieces)
}

/// Tokens of the action opened at `start`, from `p`; returns them with the offset past `}}`
/// and whether the action ends with a right trim marker.
fn lex_action(
    src: &str,
    start: usize,
    mut p: usize,
) -> Result<(Vec<Token>, usize, bool), LexError> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut space_before = true;
    let mut paren_depth = 0usize;
    loop {
        let ws_start = p;
        while p < bytes.len() && is_space(bytes[p]) {
            p += 1;
        }
        if p > ws_start {
            space_before = true;
        }
        if p >= bytes.len() {
            return Err(LexError {
                pos: start,
                message: "unclosed action: `{{` without a matching `}}`".into(),
            });
        }
        let rest = &src[p..];
        if p > ws_start && rest.starts_with("-}}") {
            return Ok((tokens, p + 3, true));
        }
        if rest.starts_with("}}") {
            if paren_depth > 0 {
                return Err(LexError {
                    pos: p,
                    message: "unclosed left paren".into(),
                });
            }
            return Ok((tokens, p + 2, false));
        }
        let tok_pos = p;
        let c = rest.chars().next().unwrap_or(' ');
        let kind = match c {
            '|' => {
                p += 1;
                Tok::Pipe
            }
            '(' => {
                p += 1;
                paren_depth += 1;
                Tok::LParen
            }
            ')' => {
                if paren_depth == 0 {
                    return Err(LexError {
                        pos: p,
                        message: "unexpected right paren".into(),
                    });
                }
                paren_depth -= 1;
                p += 1;
                Tok::RParen
            }
            ',' => {
                p += 1;
                Tok::Comma
            }
            ':' => {
                if !rest.starts_with(":=") {
                    return Err(LexError {
                        pos: p,
                        message: "expected :=".into(),
                    });
                }
                p += 2;
                Tok::Declare
            }
            '=' => {
                p += 1;
                Tok::Assign
            }
            '"' => {
                let (s, len) = quoted(rest).map_err(|m| LexError { pos: p, message: m })?;
                p += len;
                Tok::Str(s)
            }
            '`' => {
                let Some(close) = rest[1..].find('`') else {
                    return Err(LexError {
                        pos: p,
                        message: "unterminated raw quoted string".into(),
                    });
                };
                p += close + 2;
                Tok::Str(rest[1..1 + close].to_string())
            }
            '\'' => {
                let (v, len) = char_constant(rest).map_err(|m| LexError { pos: p, message: m })?;
                p += len;
                Tok::Char(v)
            }
            '$' => {
                let len = rest[1..]
                    .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                    .unwrap_or(rest.len() - 1);
                p += 1 + len;
                Tok::Var(rest[1..1 + len].to_string())
            }
            '.' => {
                let after = rest[1..].chars().next();
                match after {
                    Some(d) if d.is_ascii_digit() => {
                        let len = number_len(rest);
                        p += len;
                        Tok::Number(rest[..len].to_string())
                    }
                    Some(a) if a.is_alphanumeric() || a == '_' => {
                        let len = rest[1..]
                            .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                            .unwrap_or(rest.len() - 1);
                        p += 1 + len;
                        Tok::Field(rest[1..1 + len].to_string())
                    }
                    _ => {
                        p += 1;
                        Tok::Dot
                    }
                }
            }
            '+' | '-' if rest[1..].starts_with(|ch: char| ch.is_ascii_digit() || ch == '.') => {
                let len = number_len(rest);
                p += len;
                Tok::Number(rest[..len].to_string())
            }
            d if d.is_ascii_digit() => {
                let len = number_len(rest);
                p += len;
                Tok::Number(rest[..len].to_string())
            }
            a if a.is_alphabetic() || a == '_' => {
                let len = rest
                    .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                    .unwrap_or(rest.len());
                p += len;
                match &rest[..len] {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "nil" => Tok::Nil,
                    word => Tok::Ident(word.to_string()),
                }
            }
            other => {
                return Err(LexError {
                    pos: p,
                    message: format!("unexpected {other:?} in action"),
                });
            }
        };
        tokens.push(Token {
            kind,
            pos: tok_pos,
            space_before,
        });
        space_before = false;
    }
}

/// Length of the number literal at the start of `s` (sign, digits, `.`, exponent, base prefix,
/// `_` separators); validity is checked when the number is parsed.
fn number_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    while i < b.len() {
        let c = b[i];
        let exp_sign =
            matches!(c, b'+' | b'-') && i > 0 && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P');
        if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || exp_sign {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// A Go interpreted string literal at the start of `s`: its value and length.
fn quoted(s: &str) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\n' => return Err("unterminated quoted string".into()),
            '\\' => {
                let (_, e) = chars.next().ok_or("unterminated quoted string")?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => return Err("unknown escape sequence: \\'".into()),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n)
                            .filter_map(|_| chars.next().map(|(_, h)| h))
                            .collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .map_err(|_| format!("invalid escape \\{e}{hex}"))?;
                        out.push(
                            char::from_u32(code)
                                .ok_or_else(|| format!("invalid code point \\{e}{hex}"))?,
                        );
                    }
                    '0'..='7' => {
                        let mut oct = String::from(e);
                        for _ in 0..2 {
                            oct.push(
                                chars
                                    .next()
                                    .map(|(_, o)| o)
                                    .ok_or("unterminated quoted string")?,
                            );
                        }
                        let code = u32::from_str_radix(&oct, 8)
                            .map_err(|_| format!("invalid escape \\{oct}"))?;
                        out.push(
                            char::from_u32(code)
                                .ok_or_else(|| format!("invalid escape \\{oct}"))?,
                        );
                    }
                    other => return Err(format!("unknown escape sequence: \\{other}")),
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".into())
}

/// A Go character constant at the start of `s`: its code point and length.
fn char_constant(s: &str) -> Result<(i64, usize), String> {
    let close = s[1..].find('\'').ok_or("unterminated character constant")? + 1;
    let inner = &s[1..close];
    let value = if let Some(esc) = inner.strip_prefix('\\') {
        match esc {
            "n" => '\n',
            "t" => '\t',
            "r" => '\r',
            "\\" => '\\',
            "'" => '\'',
            "0" => '\0',
            _ => return Err(format!("unsupported character escape {inner:?}")),
        }
    } else {
        let mut cs = inner.chars();
        match (cs.next(), cs.next()) {
            (Some(c), None) => c,
            _ => return Err(format!("malformed character constant '{inner}'")),
        }
    };
    Ok((i64::from(u32::from(value)), close + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        match lex(src).expect("lexes").into_iter().next() {
            Some(Piece::Action(a)) => a.tokens.into_iter().map(|t| t.kind).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tokens_of_an_action() {
        assert_eq!(
            kinds(r#"{{ .A.B | contains "x\ty" | eq $v 3 (len .) 'a' -1.5 }}"#),
            vec![
                Tok::Field("A".into()),
                Tok::Field("B".into()),
                Tok::Pipe,
                Tok::Ident("contains".into()),
                Tok::Str("x\ty".into()),
                Tok::Pipe,
                Tok::Ident("eq".into()),
                Tok::Var("v".into()),
                Tok::Number("3".into()),
                Tok::LParen,
                Tok::Ident("len".into()),
                Tok::Dot,
                Tok::RParen,
                Tok::Char(97),
                Tok::Number("-1.5".into()),
            ]
        );
    }

    #[test]
    fn trim_markers_and_comments() {
        let pieces = lex("a  \n {{- 1 -}} \n b {{/* c */}}x{{- /* d */ -}}  y").expect("lexes");
        let texts: Vec<String> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Text(t) => Some(t.clone()),
                Piece::Action(_) => None,
            })
            .collect();
        assert_eq!(texts, vec!["a", "b ", "x", "y"]);
    }

    #[test]
    fn unclosed_action_points_at_its_start() {
        let err = lex("ok {{ .A ").expect_err("unclosed");
        assert_eq!(err.pos, 3);
    }
}
