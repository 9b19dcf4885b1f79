//! Executing a parsed template against data.

use super::funcs;
use super::parse::{Arg, Command, Node, Pipeline};
use super::schema::GoType;
use super::value::{self, Val, typed};

#[derive(Debug)]
pub(super) struct ExecError {
    pub pos: usize,
    pub action: (usize, usize),
    pub message: String,
}

/// The most text a template may produce. Machine-config templates render labels and patch
/// files; a few MiB is already absurd, and a bound keeps `{{range}}` bombs finite.
pub(super) const MAX_OUTPUT: usize = 16 << 20;
/// The most `{{range}}` iterations one rendering may run, over all loops together.
const MAX_RANGE_STEPS: usize = 1_000_000;

enum Flow {
    Normal,
    Break,
    Continue,
}

pub(super) struct Exec {
    vars: Vec<(String, Val)>,
    out: String,
    html: bool,
    /// The action being executed, for errors.
    action: (usize, usize),
    /// `{{range}}` iterations run so far.
    steps: usize,
}

impl Exec {
    pub fn run(nodes: &[Node], root: Val, html: bool) -> Result<String, ExecError> {
        let mut e = Exec {
            vars: vec![(String::new(), root.clone())],
            out: String::new(),
            html,
            action: (0, 0),
            steps: 0,
        };
        e.walk(nodes, &root)?;
        Ok(e.out)
    }

    fn fail<T>(&self, pos: usize, message: impl Into<String>) -> Result<T, ExecError> {
        Err(ExecError {
            pos,
            action: self.action,
            message: message.into(),
        })
    }

    fn walk(&mut self, nodes: &[Node], dot: &Val) -> Result<Flow, ExecError> {
        for node in nodes {
            let flow = match node {
                Node::Text(t) => {
                    self.out.push_str(t);
                    self.check_output()?;
                    Flow::Normal
                }
                Node::Print(pipe) => {
                    let v = self.pipeline(dot, pipe)?;
                    if pipe.decl.is_empty() {
                        self.emit(&v, pipe)?;
                    }
                    Flow::Normal
                }
                Node::If {
                    branches,
                    otherwise,
                }
                | Node::With {
                    branches,
                    otherwise,
                } => {
                    let with = matches!(node, Node::With { .. });
                    let mark = self.vars.len();
                    let mut flow = None;
                    for (pipe, body) in branches {
                        let v = self.pipeline(dot, pipe)?;
                        if v.truth() {
                            flow = Some(if with {
                                self.walk(body, &v)?
                            } else {
                                self.walk(body, dot)?
                            });
                            break;
                        }
                    }
                    let flow = match (flow, otherwise) {
                        (Some(f), _) => f,
                        (None, Some(list)) => self.walk(list, dot)?,
                        (None, None) => Flow::Normal,
                    };
                    self.vars.truncate(mark);
                    flow
                }
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                } => self.range(dot, pipe, body, otherwise.as_deref())?,
                Node::Break => Flow::Break,
                Node::Continue => Flow::Continue,
            };
            if !matches!(flow, Flow::Normal) {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn check_output(&self) -> Result<(), ExecError> {
        if self.out.len() > MAX_OUTPUT {
            return self.fail(
                self.action.0,
                format!("the template produces more than {MAX_OUTPUT} bytes"),
            );
        }
        Ok(())
    }

    fn emit(&mut self, v: &Val, pipe: &Pipeline) -> Result<(), ExecError> {
        if self.html && matches!(v, Val::Missing) {
            return Ok(());
        }
        let text = match value::print(v) {
            Ok(t) => t,
            Err(m) => return self.fail(pipe.action.0, m),
        };
        if self.html {
            for c in text.chars() {
                match c {
                    '&' => self.out.push_str("&amp;"),
                    '\'' => self.out.push_str("&#39;"),
                    '<' => self.out.push_str("&lt;"),
                    '>' => self.out.push_str("&gt;"),
                    '"' => self.out.push_str("&#34;"),
                    '\0' => self.out.push('\u{FFFD}'),
                    c => self.out.push(c),
                }
            }
        } else {
            self.out.push_str(&text);
        }
        self.check_output()
    }

    fn range(
        &mut self,
        dot: &Val,
        pipe: &Pipeline,
        body: &[Node],
        otherwise: Option<&[Node]>,
    ) -> Result<Flow, ExecError> {
        self.action = pipe.action;
        let v = self.commands(dot, &pipe.cmds)?;
        let mark = self.vars.len();
        let items: Vec<(Val, Val)> = match v {
            Val::List(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, e)| (Val::Int(i as i64), e))
                .collect(),
            Val::Map(mut entries, _) => {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                entries.into_iter().map(|(k, v)| (Val::Str(k), v)).collect()
            }
            Val::Int(n) => {
                if usize::try_from(n).is_ok_and(|n| n > MAX_RANGE_STEPS - self.steps) {
                    return self.fail(
                        pipe.action.0,
                        format!("range over {n} exceeds the {MAX_RANGE_STEPS} iterations a template may run"),
                    );
                }
                (0..n.max(0)).map(|i| (Val::Int(i), Val::Int(i))).collect()
            }
            Val::Missing | Val::Nil(_) => Vec::new(),
            other => {
                return self.fail(
                    pipe.action.0,
                    format!("range can't iterate over {}", other.type_name()),
                );
            }
        };
        if items.is_empty() {
            return match otherwise {
                Some(list) => self.walk(list, dot),
                None => Ok(Flow::Normal),
            };
        }
        for (key, elem) in items {
            self.steps += 1;
            if self.steps > MAX_RANGE_STEPS {
                return self.fail(
                    pipe.action.0,
                    format!("the template runs more than {MAX_RANGE_STEPS} range iterations"),
                );
            }
            match pipe.decl.as_slice() {
                [] => {}
                [e] => self.bind(e, elem.clone(), pipe.assign),
                [k, e, ..] => {
                    self.bind(k, key, pipe.assign);
                    self.bind(e, elem.clone(), pipe.assign);
                }
            }
            let flow = self.walk(body, &elem)?;
            if !pipe.assign {
                self.vars.truncate(mark);
            }
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        Ok(Flow::Normal)
    }

    fn bind(&mut self, name: &str, v: Val, assign: bool) {
        if assign {
            if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                slot.1 = v;
            }
        } else {
            self.vars.push((name.to_string(), v));
        }
    }

    fn pipeline(&mut self, dot: &Val, pipe: &Pipeline) -> Result<Val, ExecError> {
        let saved = self.action;
        self.action = pipe.action;
        let v = self.commands(dot, &pipe.cmds)?;
        for name in &pipe.decl {
            self.bind(name, v.clone(), pipe.assign);
        }
        self.action = saved;
        Ok(v)
    }

    fn commands(&mut self, dot: &Val, cmds: &[Command]) -> Result<Val, ExecError> {
        let mut value = None;
        for cmd in cmds {
            value = Some(self.command(dot, cmd, value.take())?);
        }
        Ok(value.unwrap_or(Val::Missing))
    }

    fn command(&mut self, dot: &Val, cmd: &Command, last: Option<Val>) -> Result<Val, ExecError> {
        let first = &cmd.args[0];
        let has_args = cmd.args.len() > 1 || last.is_some();
        match first {
            Arg::Ident { pos, name } => self.call(dot, *pos, name, &cmd.args[1..], last),
            Arg::Field { pos, names } => {
                if has_args {
                    return self.fail(
                        *pos,
                        format!(
                            "{} has arguments but cannot be invoked as function",
                            names.join(".")
                        ),
                    );
                }
                self.fields(dot.clone(), names, *pos, ".")
            }
            Arg::Var { pos, name, fields } if !fields.is_empty() => {
                if has_args {
                    return self.fail(
                        *pos,
                        format!(
                            "{} has arguments but cannot be invoked as function",
                            fields.join(".")
                        ),
                    );
                }
                let v = self.var(name);
                self.fields(v, fields, *pos, &format!("${name}"))
            }
            Arg::Chain { pos, pipe, fields } if !fields.is_empty() => {
                if has_args {
                    return self.fail(
                        *pos,
                        format!(
                            "{} has arguments but cannot be invoked as function",
                            fields.join(".")
                        ),
                    );
                }
                let v = self.pipeline(dot, pipe)?;
                self.fields(v, fields, *pos, "(…)")
            }
            other => {
                if has_args {
                    let pos = other.pos().unwrap_or(cmd.pos);
                    return self.fail(
                        pos,
                        "can't give argument to non-function (only functions take arguments)",
                    );
                }
                self.arg(dot, other)
            }
        }
    }

    fn var(&self, name: &str) -> Val {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map_or(Val::Missing, |(_, v)| v.clone())
    }

    fn arg(&mut self, dot: &Val, arg: &Arg) -> Result<Val, ExecError> {
        Ok(match arg {
            Arg::Dot(_) => dot.clone(),
            Arg::Field { pos, names } => self.fields(dot.clone(), names, *pos, ".")?,
            Arg::Var { pos, name, fields } => {
                let v = self.var(name);
                self.fields(v, fields, *pos, &format!("${name}"))?
            }
            Arg::Chain { pos, pipe, fields } => {
                let v = self.pipeline(dot, pipe)?;
                self.fields(v, fields, *pos, "(…)")?
            }
            Arg::Ident { pos, name } => self.call(dot, *pos, name, &[], None)?,
            Arg::Str(s) => Val::Str(s.clone()),
            Arg::Int(i) => Val::Int(*i),
            Arg::Float(f) => Val::Float(*f),
            Arg::Bool(b) => Val::Bool(*b),
            Arg::Nil(pos) => return self.fail(*pos, "nil is not a command"),
        })
    }

    fn call(
        &mut self,
        dot: &Val,
        pos: usize,
        name: &str,
        args: &[Arg],
        last: Option<Val>,
    ) -> Result<Val, ExecError> {
        if name == "and" || name == "or" {
            if args.is_empty() && last.is_none() {
                return self.fail(
                    pos,
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                );
            }
            let mut result = Val::Missing;
            for a in args {
                result = self.arg(dot, a)?;
                if result.truth() != (name == "and") {
                    return Ok(result);
                }
            }
            if let Some(v) = last {
                result = v;
            }
            return Ok(result);
        }
        let mut values = Vec::with_capacity(args.len() + 1);
        for a in args {
            if let Arg::Nil(_) = a {
                values.push(Val::Nil(""));
                continue;
            }
            values.push(self.arg(dot, a)?);
        }
        values.extend(last);
        let v = funcs::call(name, values)
            .or_else(|m| self.fail(pos, format!("error calling {name}: {m}")))?;
        if matches!(&v, Val::Str(t) if t.len() > MAX_OUTPUT) {
            return self.fail(pos, format!("{name} produces more than {MAX_OUTPUT} bytes"));
        }
        Ok(v)
    }

    /// Follows `.A.B` from `v`; `from` describes `v` for messages (`.`, `$x`).
    fn fields(
        &self,
        mut v: Val,
        names: &[String],
        pos: usize,
        from: &str,
    ) -> Result<Val, ExecError> {
        let mut walked = if from == "." {
            String::new()
        } else {
            from.to_string()
        };
        for name in names {
            v = match v {
                Val::Struct { ty, fields, .. } => {
                    match ty.field(name) {
                        Some(f) => {
                            match typed(fields.get(f.yaml), f.ty) {
                                Ok(next) => next,
                                Err(why) => {
                                    return self.fail(pos, format!("field {name} of {} is not available to templates: {why}", ty.name));
                                }
                            }
                        }
                        None => return self.fail(pos, unknown_field(name, ty)),
                    }
                }
                Val::Map(entries, _) => entries
                    .into_iter()
                    .find(|(k, _)| k == name)
                    .map_or(Val::Missing, |(_, v)| v),
                Val::Missing => Val::Missing,
                Val::Nil(t) => {
                    let ty = if t.is_empty() {
                        "interface {}".to_string()
                    } else {
                        format!("*{t}")
                    };
                    let hint = if walked.is_empty() {
                        String::new()
                    } else {
                        format!(" (hint: {walked} is not set in this machine config)")
                    };
                    return self.fail(pos, format!("nil pointer evaluating {ty}.{name}{hint}"));
                }
                Val::Url(u) => match url_part(&u, name) {
                    Some(part) => part,
                    None => {
                        return self.fail(
                            pos,
                            format!("can't evaluate field {name} in type *v1alpha1.Endpoint"),
                        );
                    }
                },
                other => {
                    return self.fail(
                        pos,
                        format!("can't evaluate field {name} in type {}", other.type_name()),
                    );
                }
            };
            walked.push('.');
            walked.push_str(name);
        }
        Ok(v)
    }
}

fn unknown_field(name: &str, ty: &super::schema::StructType) -> String {
    let mut message = format!("can't evaluate field {name} in type *{}", ty.name);
    if let Some(f) = ty.fields.iter().find(|f| f.yaml.eq_ignore_ascii_case(name)) {
        message.push_str(&format!(
            " (templates use Go field names: `{}` is the YAML key of {}; did you mean {}?)",
            f.yaml, f.go, f.go
        ));
        return message;
    }
    let names: Vec<&str> = ty.fields.iter().map(|f| f.go).collect();
    match super::closest(name, &names) {
        Some(s) => message.push_str(&format!(" (did you mean {s}?)")),
        None => {
            let listed: Vec<&str> = ty
                .fields
                .iter()
                .filter(|f| !matches!(f.ty, GoType::Unavailable(_)))
                .map(|f| f.go)
                .collect();
            message.push_str(&format!(" (its fields: {})", listed.join(", ")));
        }
    }
    message
}

/// Fields and methods of a `*url.URL`.
fn url_part(u: &str, name: &str) -> Option<Val> {
    let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (hostname, port) = match host.rsplit_once(':') {
        Some((h, p))
            if !h.is_empty()
                && p.chars().all(|c| c.is_ascii_digit())
                && (!h.contains(':') || h.ends_with(']')) =>
        {
            (h, p)
        }
        _ => (host, ""),
    };
    let hostname = hostname.trim_start_matches('[').trim_end_matches(']');
    Some(Val::Str(
        match name {
            "Scheme" => scheme,
            "Host" => host,
            "Path" => path,
            "RawQuery" => query,
            "Fragment" => fragment,
            "Hostname" => hostname,
            "Port" => port,
            "String" => u,
            _ => return None,
        }
        .to_string(),
    ))
}
