//! Parsing lexed pieces into a tree: text, actions with pipelines, `if`/`else if`/`else`,
//! `range` (with `$i, $e :=`), `with`/`else with`, variables, `break`/`continue`. Undefined
//! functions and variables are parse errors, as in Go.

use super::funcs;
use super::lex::{Action, Piece, Tok, Token};

#[derive(Debug)]
pub(super) enum Node {
    Text(String),
    /// An action that prints its pipeline (unless the pipeline declares or assigns).
    Print(Pipeline),
    If {
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Option<Vec<Node>>,
    },
    With {
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Option<Vec<Node>>,
    },
    Range {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Option<Vec<Node>>,
    },
    Break,
    Continue,
}

#[derive(Debug)]
pub(super) struct Pipeline {
    /// The action's `{{`…`}}` byte range, for messages.
    pub action: (usize, usize),
    pub decl: Vec<String>,
    /// `$x = …` rather than `$x := …`.
    pub assign: bool,
    pub cmds: Vec<Command>,
}

#[derive(Debug)]
pub(super) struct Command {
    pub pos: usize,
    pub args: Vec<Arg>,
}

#[derive(Debug)]
pub(super) enum Arg {
    Dot(usize),
    /// `.A.B` from dot.
    Field {
        pos: usize,
        names: Vec<String>,
    },
    /// `$x.A.B`.
    Var {
        pos: usize,
        name: String,
        fields: Vec<String>,
    },
    /// `(pipeline).A.B`.
    Chain {
        pos: usize,
        pipe: Box<Pipeline>,
        fields: Vec<String>,
    },
    /// A function name.
    Ident {
        pos: usize,
        name: String,
    },
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil(usize),
}

impl Arg {
    pub fn pos(&self) -> Option<usize> {
        match self {
            Arg::Dot(p) | Arg::Nil(p) => Some(*p),
            Arg::Field { pos, .. }
            | Arg::Var { pos, .. }
            | Arg::Chain { pos, .. }
            | Arg::Ident { pos, .. } => Some(*pos),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub(super) struct ParseError {
    pub pos: usize,
    pub message: String,
}

fn err<T>(pos: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        pos,
        message: message.into(),
    })
}

/// What ended a list of nodes.
enum Terminator {
    Eof,
    End(usize),
    Else {
        pos: usize,
        rest: Vec<Token>,
        action: (usize, usize),
    },
}

/// How deeply blocks (`if`, `range`, …) and parentheses may nest.
const MAX_NESTING: usize = 100;

pub(super) struct Parser {
    pieces: std::vec::IntoIter<Piece>,
    vars: Vec<String>,
    range_depth: usize,
    /// Blocks and parentheses open around the current position.
    nesting: usize,
}

pub(super) fn parse(pieces: Vec<Piece>) -> Result<Vec<Node>, ParseError> {
    let mut p = Parser {
        pieces: pieces.into_iter(),
        vars: vec![String::new()],
        range_depth: 0,
        nesting: 0,
    };
    let (nodes, end) = p.list()?;
    match end {
        Terminator::Eof => Ok(nodes),
        Terminator::End(pos) => err(pos, "unexpected {{end}}"),
        Terminator::Else { pos, .. } => err(pos, "unexpected {{else}}"),
    }
}

impl Parser {
    fn enter(&mut self, pos: usize) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return err(
                pos,
                format!("blocks and parentheses nest more than {MAX_NESTING} levels deep"),
            );
        }
        Ok(())
    }

    fn list(&mut self) -> Result<(Vec<Node>, Terminator), ParseError> {
        let mut nodes = Vec::new();
        while let Some(piece) = self.pieces.next() {
            match piece {
                Piece::Text(t) => nodes.push(Node::Text(t)),
                Piece::Action(a) => {
                    if let Some(end) = self.action(a, &mut nodes)? {
                        return Ok((nodes, end));
                    }
                }
            }
        }
        Ok((nodes, Terminator::Eof))
    }

    /// Parses one action into `nodes`; returns `Some` when it ends the current list.
    fn action(
        &mut self,
        a: Action,
        nodes: &mut Vec<Node>,
    ) -> Result<Option<Terminator>, ParseError> {
        let span = (a.start, a.end);
        let Some(first) = a.tokens.first() else {
            return err(a.start, "missing value for command: the action is empty");
        };
        let keyword = match &first.kind {
            Tok::Ident(w) => w.as_str(),
            _ => "",
        };
        let rest: Vec<Token> = a.tokens[1..].to_vec();
        match keyword {
            "end" => {
                if !rest.is_empty() {
                    return err(rest[0].pos, "unexpected token in {{end}}");
                }
                return Ok(Some(Terminator::End(first.pos)));
            }
            "else" => {
                return Ok(Some(Terminator::Else {
                    pos: first.pos,
                    rest,
                    action: span,
                }));
            }
            "if" | "with" => {
                self.enter(first.pos)?;
                let node = self.conditional(keyword, first.pos, rest, span)?;
                self.nesting -= 1;
                nodes.push(node);
            }
            "range" => {
                self.enter(first.pos)?;
                let mark = self.vars.len();
                let pipe = self.pipeline(rest, span, true, first.pos)?;
                self.range_depth += 1;
                let (body, end) = self.list()?;
                let otherwise = match end {
                    Terminator::End(_) => None,
                    Terminator::Else { pos, rest, .. } => {
                        if !rest.is_empty() {
                            return err(pos, "{{else}} of a range takes no condition");
                        }
                        let (list, end) = self.list()?;
                        self.expect_end(end, first.pos, "range")?;
                        Some(list)
                    }
                    Terminator::Eof => {
                        return err(
                            first.pos,
                            "unexpected end of template: {{range}} without {{end}}",
                        );
                    }
                };
                self.range_depth -= 1;
                self.nesting -= 1;
                self.vars.truncate(mark);
                nodes.push(Node::Range {
                    pipe,
                    body,
                    otherwise,
                });
            }
            "break" | "continue" => {
                if !rest.is_empty() {
                    return err(
                        rest[0].pos,
                        format!("unexpected token in {{{{{keyword}}}}}"),
                    );
                }
                if self.range_depth == 0 {
                    return err(
                        first.pos,
                        format!("{{{{{keyword}}}}} outside {{{{range}}}}"),
                    );
                }
                nodes.push(if keyword == "break" {
                    Node::Break
                } else {
                    Node::Continue
                });
            }
            "define" | "template" | "block" => {
                return err(
                    first.pos,
                    format!(
                        "{{{{{keyword}}}}} (named templates) is not supported in kforge templates"
                    ),
                );
            }
            _ => {
                let pipe = self.pipeline(a.tokens, span, false, a.start)?;
                nodes.push(Node::Print(pipe));
            }
        }
        Ok(None)
    }

    fn expect_end(&self, end: Terminator, open: usize, what: &str) -> Result<(), ParseError> {
        match end {
            Terminator::End(_) => Ok(()),
            Terminator::Else { pos, .. } => err(
                pos,
                format!("unexpected {{{{else}}}} after the {{{{else}}}} of {{{{{what}}}}}"),
            ),
            Terminator::Eof => err(
                open,
                format!("unexpected end of template: {{{{{what}}}}} without {{{{end}}}}"),
            ),
        }
    }

    /// `if`/`with` with their `else if`/`else with` chains.
    fn conditional(
        &mut self,
        keyword: &str,
        pos: usize,
        tokens: Vec<Token>,
        span: (usize, usize),
    ) -> Result<Node, ParseError> {
        let mark = self.vars.len();
        let mut branches = Vec::new();
        let mut otherwise = None;
        let mut pipe = self.pipeline(tokens, span, false, pos)?;
        loop {
            let (body, end) = self.list()?;
            branches.push((pipe, body));
            match end {
                Terminator::End(_) => break,
                Terminator::Eof => {
                    return err(
                        pos,
                        format!(
                            "unexpected end of template: {{{{{keyword}}}}} without {{{{end}}}}"
                        ),
                    );
                }
                Terminator::Else {
                    pos: else_pos,
                    rest,
                    action,
                } => {
                    if rest.is_empty() {
                        let (list, end) = self.list()?;
                        self.expect_end(end, pos, keyword)?;
                        otherwise = Some(list);
                        break;
                    }
                    match &rest[0].kind {
                        Tok::Ident(w) if w == keyword => {
                            pipe = self.pipeline(rest[1..].to_vec(), action, false, else_pos)?;
                        }
                        _ => {
                            return err(
                                rest[0].pos,
                                format!("expected {{{{else}}}} or {{{{else {keyword} …}}}}"),
                            );
                        }
                    }
                }
            }
        }
        self.vars.truncate(mark);
        Ok(if keyword == "if" {
            Node::If {
                branches,
                otherwise,
            }
        } else {
            Node::With {
                branches,
                otherwise,
            }
        })
    }

    /// A pipeline, with its optional declaration (`$x :=`, `$x =`, and for range `$i, $e :=`).
    fn pipeline(
        &mut self,
        tokens: Vec<Token>,
        action: (usize, usize),
        in_range: bool,
        pos: usize,
    ) -> Result<Pipeline, ParseError> {
        let mut decl = Vec::new();
        let mut assign = false;
        let mut start = 0;
        // `$a :=`, `$a =`, `$a, $b :=`
        if let Some(Tok::Var(first)) = tokens.first().map(|t| &t.kind) {
            match tokens.get(1).map(|t| &t.kind) {
                Some(Tok::Declare) | Some(Tok::Assign) => {
                    assign = tokens[1].kind == Tok::Assign;
                    decl.push(first.clone());
                    start = 2;
                }
                Some(Tok::Comma) if in_range => {
                    if let (Some(Tok::Var(second)), Some(Tok::Declare | Tok::Assign)) = (
                        tokens.get(2).map(|t| &t.kind),
                        tokens.get(3).map(|t| &t.kind),
                    ) {
                        assign = tokens[3].kind == Tok::Assign;
                        decl.push(first.clone());
                        decl.push(second.clone());
                        start = 4;
                    } else {
                        return err(tokens[1].pos, "expected `$index, $element :=` in range");
                    }
                }
                Some(Tok::Comma) => {
                    return err(
                        tokens[1].pos,
                        "too many declarations: only {{range}} takes two variables",
                    );
                }
                _ => {}
            }
        }
        if assign {
            for name in &decl {
                if !self.vars.iter().any(|v| v == name) {
                    return err(tokens[0].pos, format!("undefined variable \"${name}\""));
                }
            }
        }
        let body = &tokens[start..];
        if body.is_empty() {
            return err(pos, "missing value for command");
        }
        let cmds = self.commands(body, action)?;
        if !assign {
            self.vars.extend(decl.iter().cloned());
        }
        Ok(Pipeline {
            action,
            decl,
            assign,
            cmds,
        })
    }

    fn commands(
        &mut self,
        tokens: &[Token],
        action: (usize, usize),
    ) -> Result<Vec<Command>, ParseError> {
        let mut cmds = Vec::new();
        let mut depth = 0usize;
        let mut start = 0;
        for (i, t) in tokens.iter().enumerate() {
            match t.kind {
                Tok::LParen => depth += 1,
                Tok::RParen => depth = depth.saturating_sub(1),
                Tok::Pipe if depth == 0 => {
                    cmds.push(self.command(&tokens[start..i], t.pos, action)?);
                    start = i + 1;
                }
                _ => {}
            }
        }
        let end_pos = tokens.last().map_or(action.0, |t| t.pos);
        cmds.push(self.command(&tokens[start..], end_pos, action)?);
        Ok(cmds)
    }

    fn command(
        &mut self,
        tokens: &[Token],
        pos: usize,
        action: (usize, usize),
    ) -> Result<Command, ParseError> {
        if tokens.is_empty() {
            return err(
                pos,
                "missing command in pipeline (an empty command around `|`)",
            );
        }
        let mut args = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            if !args.is_empty() && !tokens[i].space_before && !matches!(tokens[i].kind, Tok::LParen)
            {
                return err(tokens[i].pos, "missing space between arguments");
            }
            let (arg, used) = self.operand(&tokens[i..], action)?;
            args.push(arg);
            i += used;
        }
        Ok(Command {
            pos: tokens[0].pos,
            args,
        })
    }

    /// One operand (a term and the fields chained to it); returns it and the tokens used.
    fn operand(
        &mut self,
        tokens: &[Token],
        action: (usize, usize),
    ) -> Result<(Arg, usize), ParseError> {
        let t = &tokens[0];
        let mut used = 1;
        let fields_after = |from: usize| -> (Vec<String>, usize) {
            let mut names = Vec::new();
            let mut j = from;
            while let Some(Token {
                kind: Tok::Field(name),
                space_before: false,
                ..
            }) = tokens.get(j)
            {
                names.push(name.clone());
                j += 1;
            }
            (names, j)
        };
        let arg = match &t.kind {
            Tok::Dot => Arg::Dot(t.pos),
            Tok::Field(first) => {
                let (mut rest, j) = fields_after(1);
                used = j;
                let mut names = vec![first.clone()];
                names.append(&mut rest);
                Arg::Field { pos: t.pos, names }
            }
            Tok::Var(name) => {
                if !self.vars.iter().any(|v| v == name) {
                    return err(t.pos, format!("undefined variable \"${name}\""));
                }
                let (fields, j) = fields_after(1);
                used = j;
                Arg::Var {
                    pos: t.pos,
                    name: name.clone(),
                    fields,
                }
            }
            Tok::LParen => {
                let mut depth = 0usize;
                let mut close = None;
                for (j, tok) in tokens.iter().enumerate() {
                    match tok.kind {
                        Tok::LParen => depth += 1,
                        Tok::RParen => {
                            depth -= 1;
                            if depth == 0 {
                                close = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let Some(close) = close else {
                    return err(t.pos, "unclosed left paren");
                };
                if close == 1 {
                    return err(t.pos, "missing value for parenthesized pipeline");
                }
                self.enter(t.pos)?;
                let inner = self.pipeline(tokens[1..close].to_vec(), action, false, t.pos)?;
                self.nesting -= 1;
                let (fields, j) = fields_after(close + 1);
                used = j;
                Arg::Chain {
                    pos: t.pos,
                    pipe: Box::new(inner),
                    fields,
                }
            }
            Tok::Ident(name) => {
                if !funcs::exists(name) {
                    let hint = funcs::suggest(name)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    return err(t.pos, format!("function \"{name}\" not defined{hint}"));
                }
                Arg::Ident {
                    pos: t.pos,
                    name: name.clone(),
                }
            }
            Tok::Str(s) => Arg::Str(s.clone()),
            Tok::Char(c) => Arg::Int(*c),
            Tok::Number(text) => number(text).ok_or_else(|| ParseError {
                pos: t.pos,
                message: format!("bad number syntax: {text:?}"),
            })?,
            Tok::Bool(b) => Arg::Bool(*b),
            Tok::Nil => Arg::Nil(t.pos),
            Tok::Pipe | Tok::RParen | Tok::Declare | Tok::Assign | Tok::Comma => {
                return err(
                    t.pos,
                    format!("unexpected {} in operand", describe(&t.kind)),
                );
            }
        };
        if matches!(
            arg,
            Arg::Str(_)
                | Arg::Int(_)
                | Arg::Float(_)
                | Arg::Bool(_)
                | Arg::Nil(_)
                | Arg::Ident { .. }
        ) && let Some(Token {
            kind: Tok::Field(_),
            space_before: false,
            pos,
        }) = tokens.get(used)
        {
            return err(*pos, "unexpected . after term");
        }
        Ok((arg, used))
    }
}

fn describe(t: &Tok) -> &'static str {
    match t {
        Tok::Pipe => "`|`",
        Tok::RParen => "`)`",
        Tok::Declare => "`:=`",
        Tok::Assign => "`=`",
        Tok::Comma => "`,`",
        _ => "token",
    }
}

/// A Go number constant: an integer when it is one, otherwise a float.
fn number(text: &str) -> Option<Arg> {
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean).to_string()),
    };
    let lower = body.to_ascii_lowercase();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(b) = lower.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.chars().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else if lower.chars().all(|c| c.is_ascii_digit()) {
        lower.parse().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return Some(Arg::Int(if neg { -i } else { i }));
    }
    // Go takes a constant written with `.`, `e` or `p` as a float.
    let f: f64 = lower.parse().ok()?;
    Some(Arg::Float(if neg { -f } else { f }))
}
