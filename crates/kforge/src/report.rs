//! The one place that turns problems into text for the user: rustc-style diagnostics
//! (`error:`/`warning:`, `--> file:line:col`, the source line, a caret, `= help:`), JSON
//! diagnostics for CI, and error chains (`error:`, `Caused by:`, `hint:`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;

use kforge_spec::diagnostic::{MAX_LINE_CHARS, excerpt};
use kforge_spec::{Diagnostic, Severity};
use serde::Serialize;

/// How to print diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// Human-readable, like rustc.
    #[default]
    Human,
    /// One JSON document on stdout.
    Json,
}

#[derive(Clone, Copy)]
struct Style {
    color: bool,
}

impl Style {
    fn stderr() -> Self {
        Style {
            color: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Merges findings that are the same problem at the same place (a group patch that fails on
/// every node of the group, a group setting checked once per node): one finding listing
/// every node. Order is that of first occurrence.
pub fn merge_duplicates(diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::with_capacity(diags.len());
    let mut index: HashMap<String, usize> = HashMap::new();
    for d in diags {
        let key = format!(
            "{:?}",
            (
                d.severity,
                d.code,
                &d.message,
                &d.location,
                &d.label,
                &d.help,
                &d.notes
            )
        );
        match index.get(&key) {
            Some(&i) => {
                for n in d.nodes {
                    if !out[i].nodes.contains(&n) {
                        out[i].nodes.push(n);
                    }
                }
            }
            None => {
                index.insert(key, out.len());
                out.push(d);
            }
        }
    }
    out
}

/// "node `a`", "nodes `a`, `b` and `c`", "nodes `a`, `b`, `c`, `d`, `e` and 995 more".
fn node_list(nodes: &[String]) -> String {
    const SHOWN: usize = 5;
    let quoted: Vec<String> = nodes.iter().take(SHOWN).map(|n| format!("`{n}`")).collect();
    match nodes.len() {
        1 => format!("node {}", quoted[0]),
        n if n <= SHOWN => format!("nodes {} and {}", quoted[..n - 1].join(", "), quoted[n - 1]),
        n => format!("nodes {} and {} more", quoted.join(", "), n - SHOWN),
    }
}

/// Continuation lines of a multi-line note or help, aligned under its first line.
fn indent_continuation(text: &str, width: usize) -> String {
    let pad = " ".repeat(width);
    text.split('\n')
        .enumerate()
        .map(|(i, l)| {
            if i == 0 || l.is_empty() {
                l.to_string()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Text from the cluster file made safe for a terminal: control characters (a cluster file
/// may carry `ESC[…` sequences) are shown as their Unicode control pictures, one column
/// each, so nothing in a file can restyle or rewrite the terminal. Newlines are kept.
fn visible(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => '\n',
            '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('?'),
            '\u{7f}' => '\u{2421}',
            '\u{80}'..='\u{9f}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// Renders one diagnostic as rustc would.
pub fn render_diagnostic(d: &Diagnostic, color: bool) -> String {
    let d = &Diagnostic {
        message: visible(&d.message),
        label: d.label.as_deref().map(visible),
        help: d.help.as_deref().map(visible),
        notes: d.notes.iter().map(|n| visible(n)).collect(),
        nodes: d.nodes.iter().map(|n| visible(n)).collect(),
        ..d.clone()
    };
    let s = Style { color };
    let mut out = String::new();
    let head = match d.severity {
        Severity::Error => s.paint("1;31", "error"),
        Severity::Warning => s.paint("1;33", "warning"),
    };
    let _ = writeln!(
        out,
        "{head}{} {}",
        s.paint("1", ":"),
        s.paint("1", &d.message)
    );
    let gutter = d.location.as_ref().map_or(1, |l| l.line.to_string().len());
    let pad = " ".repeat(gutter);
    let bar = s.paint("1;34", "|");
    if let Some(l) = &d.location {
        let _ = writeln!(
            out,
            "{pad}{} {}:{}:{}",
            s.paint("1;34", "-->"),
            l.file.display(),
            l.line,
            l.col
        );
        let _ = writeln!(out, "{pad} {bar}");
        // Very long lines (minified or generated files) are shown around the column.
        let (text, start) = if l.excerpt_start > 0 {
            (l.line_text.clone(), l.excerpt_start)
        } else {
            let rel_col = l.col;
            excerpt(&l.line_text, rel_col)
        };
        let text_chars = text.chars().count();
        let cut_before = start > 0;
        let cut_after =
            (start > 0 || text_chars < l.line_text.chars().count()) && text_chars >= MAX_LINE_CHARS;
        let shown = format!(
            "{}{}{}",
            if cut_before { "…" } else { "" },
            visible(&text.replace('\t', "    ")),
            if cut_after { "…" } else { "" }
        );
        let _ = writeln!(
            out,
            "{} {bar} {shown}",
            s.paint("1;34", &l.line.to_string())
        );
        let col_in_text = l.col.saturating_sub(1).saturating_sub(start);
        let lead: usize = usize::from(cut_before)
            + text
                .chars()
                .take(col_in_text)
                .map(|c| if c == '\t' { 4 } else { 1 })
                .sum::<usize>();
        let room = text_chars.saturating_sub(col_in_text).max(1);
        let carets = "^".repeat(l.len.clamp(1, room));
        let caret_style = if d.severity == Severity::Error {
            "1;31"
        } else {
            "1;33"
        };
        let label = d
            .label
            .as_deref()
            .map(|t| format!(" {t}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{pad} {bar} {}{}",
            " ".repeat(lead),
            s.paint(caret_style, &format!("{carets}{label}"))
        );
        if d.help.is_some() || !d.notes.is_empty() {
            let _ = writeln!(out, "{pad} {bar}");
        }
        if d.help.is_none() && d.notes.is_empty() && !d.nodes.is_empty() {
            let _ = writeln!(out, "{pad} {bar}");
        }
    } else if let Some(label) = &d.label {
        let _ = writeln!(out, "{pad} = {label}");
    }
    let mut notes: Vec<String> = d.notes.clone();
    if !d.nodes.is_empty() {
        notes.push(format!("on {}", node_list(&d.nodes)));
    }
    for n in &notes {
        let _ = writeln!(
            out,
            "{pad} {} {}: {}",
            s.paint("1;34", "="),
            s.paint("1", "note"),
            indent_continuation(n, pad.len() + 9)
        );
    }
    if let Some(h) = &d.help {
        let _ = writeln!(
            out,
            "{pad} {} {}: {}",
            s.paint("1;34", "="),
            s.paint("1", "help"),
            indent_continuation(h, pad.len() + 9)
        );
    }
    out
}

/// Findings printed in the human format; past this a file is broken wholesale (or hostile)
/// and more text helps nobody.
const MAX_SHOWN: usize = 500;

/// Prints diagnostics to stderr (human) or stdout (JSON) and a summary line; the same
/// problem found on several nodes is printed once.
pub fn print_diagnostics(diags: &[Diagnostic], format: Format) {
    let merged = merge_duplicates(diags.to_vec());
    let diags = merged.as_slice();
    match format {
        Format::Human => {
            let style = Style::stderr();
            for d in diags.iter().take(MAX_SHOWN) {
                eprintln!("{}", render_diagnostic(d, style.color));
            }
            if diags.len() > MAX_SHOWN {
                eprintln!(
                    "{}: {} more finding(s) not shown; `--format json` lists every one\n",
                    style.paint("1", "note"),
                    diags.len() - MAX_SHOWN
                );
            }
            let errors = diags.iter().filter(|d| d.is_error()).count();
            let warnings = diags.len() - errors;
            if errors > 0 || warnings > 0 {
                let mut parts = Vec::new();
                if errors > 0 {
                    parts.push(format!(
                        "{errors} error{}",
                        if errors == 1 { "" } else { "s" }
                    ));
                }
                if warnings > 0 {
                    parts.push(format!(
                        "{warnings} warning{}",
                        if warnings == 1 { "" } else { "s" }
                    ));
                }
                let head = if errors > 0 {
                    style.paint("1;31", "error")
                } else {
                    style.paint("1;33", "warning")
                };
                eprintln!("{head}: {}", parts.join(", "));
            }
        }
        Format::Json => {
            #[derive(Serialize)]
            struct Report<'a> {
                errors: usize,
                warnings: usize,
                diagnostics: &'a [Diagnostic],
            }
            let errors = diags.iter().filter(|d| d.is_error()).count();
            let report = Report {
                errors,
                warnings: diags.len() - errors,
                diagnostics: diags,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        }
    }
}

/// A failure with a hint, for errors that are not about a position in a file.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Hinted {
    pub message: String,
    pub hint: Option<String>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Hinted {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Hinted {
            message: message.into(),
            hint: Some(hint.into()),
            source: None,
        }
    }
}

/// Renders an error chain: the error, each cause on its own `Caused by:` line, then the hint.
pub fn render_error(err: &anyhow::Error, hint: Option<&str>) -> String {
    let s = Style::stderr();
    let mut out = format!("{}: {err}\n", s.paint("1;31", "error"));
    let causes: Vec<String> = err.chain().skip(1).map(|c| c.to_string()).collect();
    if !causes.is_empty() {
        out.push_str(&s.paint("1", "Caused by:"));
        out.push('\n');
        for c in causes {
            let _ = writeln!(out, "  {c}");
        }
    }
    if let Some(h) = hint {
        let _ = writeln!(out, "\n{}: {h}", s.paint("1;36", "hint"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kforge_spec::Location;
    use std::path::PathBuf;

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        let d = Diagnostic::error("hostname", "`cp\u{1b}[31m-1` is not a valid hostname").at(Some(
            Location::in_line(
                &PathBuf::from("c.yaml"),
                1,
                11,
                3,
                "hostname: \"cp\u{1b}[31m-1\"\u{0}",
            ),
        ));
        let out = render_diagnostic(&d, false);
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(out.contains("cp\u{241b}[31m-1"), "{out}");
    }

    #[test]
    fn rustc_style() {
        let d = Diagnostic::error("unknown-key", "unknown key `ipAdress` in `nodes[0]`")
            .at(Some(Location::in_line(
                &PathBuf::from("c.yaml"),
                14,
                5,
                8,
                "    ipAdress: 1.2.3.4",
            )))
            .label("not a cluster-file field")
            .help("did you mean `ipAddress`?");
        assert_eq!(
            render_diagnostic(&d, false),
            "error: unknown key `ipAdress` in `nodes[0]`\n  --> c.yaml:14:5\n   |\n14 |     ipAdress: 1.2.3.4\n   |     ^^^^^^^^ not a cluster-file field\n   |\n   = help: did you mean `ipAddress`?\n"
        );
    }
}
