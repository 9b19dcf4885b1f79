//! `kforge gensecret`: a fresh secrets bundle in `talosctl gen secrets` format, optionally
//! SOPS-encrypted in memory so the plaintext never reaches disk.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result};
use kforge_pki::SecretsBundle;

use crate::Outcome;
use crate::cli::GensecretArgs;
use crate::files;

pub fn run(args: &GensecretArgs) -> Result<Outcome> {
    let bundle =
        SecretsBundle::generate(SystemTime::now()).context("cannot generate the secrets bundle")?;
    let yaml = bundle.to_yaml();
    let output = match (&args.output, args.encrypt) {
        (Some(p), _) => Some(p.clone()),
        (None, true) if !args.age.is_empty() => None,
        (None, true) => Some(PathBuf::from("talsecret.sops.yaml")),
        (None, false) => None,
    };
    let bytes: Vec<u8> = if args.encrypt {
        let target = output
            .clone()
            .unwrap_or_else(|| PathBuf::from("talsecret.sops.yaml"));
        let config = files::encrypt_config_for(&target, &args.age, SystemTime::now())?;
        files::encrypt_for(&target, &yaml, &config)?.into_bytes()
    } else {
        yaml.as_bytes().to_vec()
    };
    match output {
        Some(path) => {
            kforge_secret::write_private(&path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            let how = if args.encrypt {
                "encrypted secrets bundle"
            } else {
                "secrets bundle"
            };
            eprintln!("wrote {how} to {} (mode 0600)", path.display());
        }
        None => {
            // stdout is the data channel: the user asked for the bundle there.
            std::io::stdout()
                .write_all(&bytes)
                .context("cannot write to stdout")?;
        }
    }
    Ok(Outcome::Success)
}
