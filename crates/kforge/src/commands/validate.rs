//! `kforge validate`: every problem in the cluster file, after env substitution and group →
//! node merge, at once: loading, whole-cluster checks, and the checks only rendering
//! reveals (patches, profiles, kube-proxy against the CNI).

use anyhow::Result;
use kforge_spec::{Diagnostic, Location};

use crate::Outcome;
use crate::cli::ValidateArgs;
use crate::files::FsReader;
use crate::report::print_diagnostics;

pub fn run(args: &ValidateArgs) -> Result<Outcome> {
    let reader = FsReader::new();
    let loaded = super::load_cluster(&args.cluster, args.no_substitute, &reader);
    let mut diags = loaded.diagnostics;
    if let Some(cluster) = &loaded.cluster {
        diags.extend(kforge_spec::validate::validate(cluster, &reader));
        // Rendering runs even when the file has errors, so that a broken patch is reported
        // together with them; what it finds where an error is already reported (a missing
        // patch file, an unsupported Talos version) adds nothing.
        let rendered = super::genconfig::render_checks(cluster, &reader);
        diags.extend(without_repeats(&diags, rendered));
    }
    print_diagnostics(&diags, args.format);
    if diags.iter().any(Diagnostic::is_error) {
        return Ok(Outcome::Failure);
    }
    if args.format == crate::report::Format::Human {
        eprintln!(
            "{} looks good: {} node(s), no errors",
            args.cluster.config_file.display(),
            loaded.cluster.map_or(0, |c| c.nodes.len())
        );
    }
    Ok(Outcome::Success)
}

/// `found` without the findings at a place where `reported` already has an error, and
/// without Talos's checks of the generated configs when the cluster file has errors (they
/// restate those errors from the generated side: a missing endpoint, a bad address).
fn without_repeats(reported: &[Diagnostic], found: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let file_has_errors = reported.iter().any(Diagnostic::is_error);
    let key = |l: &Location| (l.file.clone(), l.line, l.col);
    let taken: std::collections::HashSet<_> = reported
        .iter()
        .filter(|d| d.is_error())
        .filter_map(|d| d.location.as_ref().map(key))
        .collect();
    found
        .into_iter()
        .filter(|d| d.location.as_ref().is_none_or(|l| !taken.contains(&key(l))))
        .filter(|d| !(file_has_errors && d.code == "nodeconfig"))
        .collect()
}
