//! `kforge validate nodeconfig`: machine config files checked the way Talos checks them.

use std::path::Path;

use anyhow::Result;
use kforge_machine::nodeconfig::{self, Level, Mode};
use kforge_spec::diagnostic::LineIndex;
use kforge_spec::{Diagnostic, Location};
use kforge_yaml::{Node, NodeValue};

use crate::Outcome;
use crate::cli::{ModeArg, NodeconfigArgs};
use crate::files::FsReader;
use crate::report::{Format, print_diagnostics};

pub fn run(args: &NodeconfigArgs) -> Result<Outcome> {
    let mode = match args.mode {
        ModeArg::Metal => Mode::Metal,
        ModeArg::Container => Mode::Container,
        ModeArg::Cloud => Mode::Cloud,
    };
    let reader = FsReader::new();
    let mut diags = Vec::new();
    let mut valid = Vec::new();
    for file in &args.files {
        let text = match reader.read_plain(file) {
            Ok(t) => t,
            Err(e) => {
                diags.push(Diagnostic::error("read", format!("{e:#}")));
                continue;
            }
        };
        let lines = LineIndex::new(text.expose());
        let nodes = match kforge_yaml::parse_all(text.expose()) {
            Ok(n) => n,
            Err(e) => {
                diags.push(
                    Diagnostic::error("yaml", format!("invalid YAML: {}", e.message))
                        .at(Some(location(file, &lines, e.pos.index, e.pos.index + 1))),
                );
                continue;
            }
        };
        let docs: Vec<kforge_yaml::Value> = nodes.iter().map(Node::to_value).collect();
        let findings = nodeconfig::validate(&docs, mode, None, args.strict);
        let errors = findings.iter().filter(|f| f.level == Level::Error).count();
        for f in findings {
            let loc = nodes.get(f.document).map(|n| {
                let span = find(n, &f.path);
                location(file, &lines, span.start.index, span.end.index)
            });
            let msg = if f.path.is_empty() {
                f.message.clone()
            } else {
                format!("{}: {}", f.path, f.message)
            };
            let d = match f.level {
                Level::Error => Diagnostic::error("nodeconfig", msg),
                Level::Warning => Diagnostic::warning("nodeconfig", msg),
            };
            diags.push(d.at(loc));
        }
        if errors == 0 {
            valid.push(file);
        }
    }
    print_diagnostics(&diags, args.format);
    if args.format == Format::Human {
        for f in &valid {
            eprintln!("{} is valid for {mode} mode", f.display());
        }
    }
    Ok(if diags.iter().any(Diagnostic::is_error) {
        Outcome::Failure
    } else {
        Outcome::Success
    })
}

fn location(file: &Path, lines: &LineIndex, start: usize, end: usize) -> Location {
    lines.location(file, start, end.max(start + 1))
}

/// The span of the deepest node along a dotted path (`machine.install.disk`, `a[2].b`).
fn find(root: &Node, path: &str) -> kforge_yaml::Span {
    let mut node = root;
    let mut span = root.span;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some(entry) = node.entry(key) else { break };
        span = entry.key_span;
        node = &entry.value;
        if !node.is_null() {
            span = node.span;
        }
        if let (Some(i), NodeValue::Seq(items)) = (index, &node.value) {
            match items.get(i) {
                Some(item) => {
                    node = item;
                    span = item.span;
                }
                None => break,
            }
        }
    }
    span
}
