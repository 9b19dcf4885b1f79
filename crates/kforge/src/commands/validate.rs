//! `kforge validate`: every problem in the cluster file, after env substitution and group →
//! node merge, at once.

use anyhow::Result;

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
        if !diags.iter().any(|d| d.is_error()) {
            diags.extend(super::genconfig::render_checks(cluster, &reader));
        }
    }
    print_diagnostics(&diags, args.format);
    if diags.iter().any(|d| d.is_error()) {
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
