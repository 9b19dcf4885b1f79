//! The file formats sops stores, chosen from the file name as sops does.

use std::fmt;
use std::path::Path;

/// A sops store format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `.yaml` / `.yml`, and sops' fallback for unknown extensions.
    Yaml,
    /// `.json`.
    Json,
    /// `.env`: `KEY=value` lines.
    Dotenv,
}

impl Format {
    /// The format sops picks for a file name (by suffix, so `.env` itself is dotenv):
    /// `.json` → JSON, `.env` → dotenv, anything else (including `.yaml`/`.yml`) → YAML.
    pub fn from_path(path: &Path) -> Format {
        let name = path.to_string_lossy();
        if name.ends_with(".json") {
            Format::Json
        } else if name.ends_with(".env") {
            Format::Dotenv
        } else {
            Format::Yaml
        }
    }

    /// The names accepted by `--input-type`/`--output-type` style options.
    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            "dotenv" | "env" => Some(Format::Dotenv),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
            Format::Dotenv => "dotenv",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_format_like_sops() {
        assert_eq!(Format::from_path(Path::new("a/talenv.yaml")), Format::Yaml);
        assert_eq!(Format::from_path(Path::new("x.yml")), Format::Yaml);
        assert_eq!(Format::from_path(Path::new("x.json")), Format::Json);
        assert_eq!(Format::from_path(Path::new("x.env")), Format::Dotenv);
        assert_eq!(Format::from_path(Path::new("x.txt")), Format::Yaml);
        assert_eq!(Format::from_path(Path::new(".env")), Format::Dotenv);
        assert_eq!(Format::from_name("dotenv"), Some(Format::Dotenv));
        assert_eq!(Format::from_name("ini"), None);
    }
}
