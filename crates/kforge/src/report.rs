//! The one place that turns problems into text for the user: rustc-style diagnostics
//! (`error:`/`warning:`, `--> file:line:col`, the source line, a caret, `= help:`), JSON
//! diagnostics for CI, and error chains (`error:`, `Caused by:`, `hint:`).

use std::fmt::Write as _;
use std::io::IsTerminal;

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

/// Renders one diagnostic as rustc would.
pub fn render_diagnostic(d: &Diagnostic, color: bool) -> String {
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
        let shown: String = l.line_text.replace('\t', "    ");
        let _ = writeln!(
            out,
            "{} {bar} {shown}",
            s.paint("1;34", &l.line.to_string())
        );
        let lead: usize = l
            .line_text
            .chars()
            .take(l.col.saturating_sub(1))
            .map(|c| if c == '\t' { 4 } else { 1 })
            .sum();
        let carets = "^".repeat(l.len.max(1));
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
    } else if let Some(label) = &d.label {
        let _ = writeln!(out, "{pad} = {label}");
    }
    for n in &d.notes {
        let _ = writeln!(
            out,
            "{pad} {} {}: {n}",
            s.paint("1;34", "="),
            s.paint("1", "note")
        );
    }
    if let Some(h) = &d.help {
        let _ = writeln!(
            out,
            "{pad} {} {}: {h}",
            s.paint("1;34", "="),
            s.paint("1", "help")
        );
    }
    out
}

/// Prints diagnostics to stderr (human) or stdout (JSON) and a summary line.
pub fn print_diagnostics(diags: &[Diagnostic], format: Format) {
    match format {
        Format::Human => {
            let style = Style::stderr();
            for d in diags {
                eprintln!("{}", render_diagnostic(d, style.color));
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
