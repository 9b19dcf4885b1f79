//! Go templates as talhelper uses them: `nodeLabels`/`nodeAnnotations` values and `@file`
//! patch contents rendered against the node's v1alpha1 document, addressed with the Go field
//! names of Talos's config types (`.MachineConfig.MachineInstall.InstallImage`).
//!
//! A real (small) engine after Go's `text/template`: lexer, parser and evaluator for text and
//! `{{ }}` actions (with `{{-`/`-}}` trimming and comments), pipelines, field chains,
//! literals, parenthesised calls, variables (`$x :=`, `$x =`, `$`), `if`/`else if`/`else`,
//! `with`/`else with`, `range` over lists, maps and integers (with `$i, $e :=`, `break`,
//! `continue`), and the functions listed in `funcs.rs` (Go builtins plus sprig's string and
//! list helpers). Values follow Go: unset fields read as their type's zero value (`""`,
//! `false`, `[]`, `<nil>` for pointers), a field of a nil pointer is an error, a missing map
//! key prints `<no value>`, lists print as `[a b]`, maps as `map[k:v]`.
//!
//! Not supported: named templates (`define`/`template`/`block`), method calls with
//! arguments, printing whole structs (Go prints their memory layout), and sprig functions
//! beyond the listed ones. talhelper renders with `html/template`; [`Escape::Html`]
//! reproduces its escaping of action output for text in an HTML-text context only.

mod exec;
mod funcs;
mod lex;
mod parse;
mod schema;
mod value;

use serde_json::Value;

/// Whether `s` contains template syntax (talhelper's `IsStringATemplate`: `{{` or `}}`).
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("}}")
}

/// What a template is rendered against.
#[derive(Clone, Copy, Debug)]
pub enum Data<'a> {
    /// A v1alpha1 document, addressed with the Go field names of `v1alpha1.Config`.
    TalosConfig(&'a Value),
    /// Plain data: mappings are Go maps addressed by key (`.ClusterName` reads key
    /// `ClusterName`).
    Plain(&'a Value),
}

/// How action output is escaped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Escape {
    /// `text/template`: output as is.
    #[default]
    None,
    /// `html/template` in HTML text: `& ' < > "` become entities, a missing value prints
    /// nothing (talhelper renders with `html/template`).
    Html,
}

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    source: String,
    nodes: Vec<parse::Node>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let pieces =
            lex::lex(source).map_err(|e| TemplateError::parse(source, e.pos, e.message))?;
        let nodes =
            parse::parse(pieces).map_err(|e| TemplateError::parse(source, e.pos, e.message))?;
        Ok(Template {
            source: source.to_string(),
            nodes,
        })
    }

    pub fn render(&self, data: Data<'_>, escape: Escape) -> Result<String, TemplateError> {
        let root = match data {
            Data::TalosConfig(Value::Object(m)) => value::Val::Struct {
                ty: &schema::CONFIG,
                fields: m.clone(),
                pointer: true,
            },
            Data::TalosConfig(_) => value::Val::Nil(schema::CONFIG.name),
            Data::Plain(v) => value::free(v),
        };
        exec::Exec::run(&self.nodes, root, escape == Escape::Html).map_err(|e| {
            let action = self
                .source
                .get(e.action.0..e.action.1)
                .unwrap_or_default()
                .to_string();
            let (line, column) = line_col(&self.source, e.pos);
            TemplateError::Execute {
                offset: e.pos,
                line,
                column,
                action,
                message: e.message,
            }
        })
    }
}

/// Renders `template` against a v1alpha1 document (Go field names, `text/template` output).
pub fn render(template: &str, data: &Value) -> Result<String, TemplateError> {
    Template::parse(template)?.render(Data::TalosConfig(data), Escape::None)
}

/// A template that does not parse or does not execute; positions are in the template text.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template line {line}, column {column}: {message}")]
    Parse {
        offset: usize,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("template line {line}, column {column}: executing `{action}`: {message}")]
    Execute {
        offset: usize,
        line: usize,
        column: usize,
        action: String,
        message: String,
    },
}

impl TemplateError {
    fn parse(source: &str, offset: usize, message: String) -> TemplateError {
        let (line, column) = line_col(source, offset);
        TemplateError::Parse {
            offset,
            line,
            column,
            message,
        }
    }

    /// Byte offset of the error in the template text.
    pub fn offset(&self) -> usize {
        match self {
            TemplateError::Parse { offset, .. } | TemplateError::Execute { offset, .. } => *offset,
        }
    }

    /// 1-based line and column (in characters) of the error.
    pub fn line_col(&self) -> (usize, usize) {
        match self {
            TemplateError::Parse { line, column, .. }
            | TemplateError::Execute { line, column, .. } => (*line, *column),
        }
    }
}

fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset.min(source.len())).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The candidate closest to `word`, when close enough to be a likely typo.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&word.to_lowercase(), &c.to_lowercase()),
                *c,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
