//! `kforge gensecret`: a fresh secrets bundle in `talosctl gen secrets` format.

use std::io::Write;
use std::time::SystemTime;

use anyhow::{Context, Result};
use kforge_pki::SecretsBundle;

use crate::Outcome;
use crate::cli::GensecretArgs;

pub fn run(args: &GensecretArgs) -> Result<Outcome> {
    let bundle =
        SecretsBundle::generate(SystemTime::now()).context("cannot generate the secrets bundle")?;
    let yaml = bundle.to_yaml();
    match &args.output {
        Some(path) => {
            kforge_secret::write_private(path, yaml.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote secrets bundle to {} (mode 0600)", path.display());
        }
        None => {
            // stdout is the data channel: the user asked for the bundle there.
            std::io::stdout()
                .write_all(yaml.as_bytes())
                .context("cannot write to stdout")?;
        }
    }
    Ok(Outcome::Success)
}
