//! `kforge sops encrypt|decrypt`: the sops file format natively, for YAML, JSON and dotenv.

use std::io::Write;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow};
use kforge_secret::SecretString;
use kforge_sops::Format;

use crate::Outcome;
use crate::cli::SopsCommand;
use crate::files;

fn format(path: &std::path::Path, name: Option<&str>) -> Result<Format> {
    match name {
        None => Ok(Format::from_path(path)),
        Some(n) => Format::from_name(n)
            .ok_or_else(|| anyhow!("unknown --input-type `{n}`; expected yaml, json or dotenv")),
    }
}

pub fn run(cmd: &SopsCommand) -> Result<Outcome> {
    match cmd {
        SopsCommand::Encrypt(a) => {
            let text = files::read_text(&a.file)
                .with_context(|| format!("cannot read {}", a.file.display()))?;
            let fmt = format(&a.file, a.input_type.as_deref())?;
            if kforge_sops::is_sops_file(&text, fmt) {
                return Err(crate::report::Hinted::new(
                    format!("{} is already encrypted", a.file.display()),
                    "decrypt it first with `kforge sops decrypt`, or edit the plaintext and encrypt that",
                )
                .into());
            }
            let config = files::encrypt_config_for(&a.file, &a.age, SystemTime::now())?;
            let encrypted = kforge_sops::encrypt(&text, fmt, &config)
                .with_context(|| format!("cannot encrypt {}", a.file.display()))?;
            emit(&a.file, a.in_place, encrypted.as_bytes())
        }
        SopsCommand::Decrypt(a) => {
            let text = files::read_text(&a.file)
                .with_context(|| format!("cannot read {}", a.file.display()))?;
            let fmt = format(&a.file, a.input_type.as_deref())?;
            if !kforge_sops::is_sops_file(&text, fmt) {
                return Err(anyhow!(
                    "{} has no sops metadata; it is not encrypted",
                    a.file.display()
                ));
            }
            let identities = files::discover_identities();
            let plain: SecretString = kforge_sops::decrypt(&text, fmt, &identities)
                .with_context(|| format!("cannot decrypt {}", a.file.display()))?;
            emit(&a.file, a.in_place, plain.as_bytes())
        }
    }
}

fn emit(path: &std::path::Path, in_place: bool, bytes: &[u8]) -> Result<Outcome> {
    if in_place {
        kforge_secret::write_private(path, bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
    } else {
        std::io::stdout()
            .write_all(bytes)
            .context("cannot write to stdout")?;
    }
    Ok(Outcome::Success)
}
