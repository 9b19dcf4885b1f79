//! The filesystem edge: reading the files a cluster references (SOPS-encrypted ones are
//! decrypted transparently, and a file that carries sops metadata but cannot be decrypted is
//! an error, never its raw text), encrypting outputs, and writing an output directory
//! atomically (stage everything in a sibling temporary directory, then swap it in with one
//! `renameat2(RENAME_EXCHANGE)`), so an error never leaves a half-written directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use anyhow::{Context, Result};
use kforge_secret::SecretString;
use kforge_sops::{EncryptConfig, Format, Identities};
use kforge_spec::SourceReader;

/// Files larger than this are refused (a cluster never needs them; a 100 MB scalar is an
/// attack or an accident).
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Reads files from disk, decrypting SOPS files with the age identities sops would use.
#[derive(Default)]
pub struct FsReader {
    identities: OnceLock<Identities>,
}

impl FsReader {
    pub fn new() -> Self {
        FsReader::default()
    }

    fn identities(&self) -> &Identities {
        self.identities.get_or_init(discover_identities)
    }

    /// The plaintext of a file: sops files decrypted, others as they are.
    pub fn read_plain(&self, path: &Path) -> Result<SecretString> {
        let text = read_text(path).with_context(|| format!("cannot read {}", path.display()))?;
        decrypt_if_sops(path, text, self.identities())
    }
}

impl SourceReader for FsReader {
    fn read(&self, path: &Path) -> Result<String, String> {
        self.read_plain(path)
            .map(|s| s.expose().clone())
            .map_err(|e| {
                // Flatten the chain into one line for the diagnostic; no secret is in it.
                e.chain()
                    .skip(1)
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(": ")
            })
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// Age identities from `SOPS_AGE_KEY`, `SOPS_AGE_KEY_FILE` and the default keys file.
pub fn discover_identities() -> Identities {
    Identities::discover(&|k| std::env::var(k).ok(), &|p| fs::read_to_string(p))
}

/// Decrypts `text` when it is a sops file; the error names the file and the reason.
pub fn decrypt_if_sops(path: &Path, text: String, identities: &Identities) -> Result<SecretString> {
    let format = Format::from_path(path);
    if !kforge_sops::is_sops_file(&text, format) {
        return Ok(SecretString::from(text));
    }
    kforge_sops::decrypt(&text, format, identities)
        .with_context(|| format!("cannot decrypt sops file {}", path.display()))
}

/// How to encrypt a file that will be written at `path`: recipients from `--age`, else the
/// first matching creation rule of the nearest `.sops.yaml`.
pub fn encrypt_config_for(path: &Path, age: &[String], now: SystemTime) -> Result<EncryptConfig> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let dir = abs.parent().map(Path::to_path_buf).unwrap_or_default();
    let rule_config = match kforge_sops::config::find_config(&dir, &|p| p.exists()) {
        Some(cfg) => {
            let text = read_text(&cfg).with_context(|| format!("cannot read {}", cfg.display()))?;
            let rules = kforge_sops::config::CreationRules::parse(&text)
                .with_context(|| format!("invalid {}", cfg.display()))?;
            let base = cfg.parent().unwrap_or(Path::new("."));
            let rel = abs
                .strip_prefix(base)
                .unwrap_or(&abs)
                .to_string_lossy()
                .into_owned();
            match rules.rule_for(&rel) {
                Some(rule) => Some(
                    rule.encrypt_config(now)
                        .with_context(|| format!("creation rule for {rel} in {}", cfg.display()))?,
                ),
                None => None,
            }
        }
        None => None,
    };
    let mut config = match (rule_config, age.is_empty()) {
        (Some(c), _) => c,
        (None, false) => EncryptConfig::new(age.to_vec(), now),
        (None, true) => {
            return Err(crate::report::Hinted::new(
                format!("no age recipients for {}", path.display()),
                "pass --age age1… or add a creation rule for this path to a .sops.yaml (see `kforge init`)",
            )
            .into());
        }
    };
    if !age.is_empty() {
        config.recipients = age.to_vec();
    }
    Ok(config)
}

/// Encryption for explicit recipients with sops' defaults.
pub fn encrypt_config_for_recipients(age: &[String], now: SystemTime) -> EncryptConfig {
    EncryptConfig::new(age.to_vec(), now)
}

/// Encrypts plaintext for a file at `path`.
pub fn encrypt_for(
    path: &Path,
    plaintext: &SecretString,
    config: &EncryptConfig,
) -> Result<String> {
    kforge_sops::encrypt(plaintext.expose(), Format::from_path(path), config)
        .with_context(|| format!("cannot encrypt {}", path.display()))
}

/// Reads a UTF-8 text file with a size limit; the error names the problem (not the path,
/// which callers add).
pub fn read_text(path: &Path) -> io::Result<String> {
    let meta = fs::metadata(path)?;
    if meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a directory, not a file",
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is {} bytes; kforge reads files up to {} bytes",
                meta.len(),
                MAX_FILE_BYTES
            ),
        ));
    }
    let bytes = fs::read(path)?;
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// An output directory being prepared next to its final place.
pub struct StagedDir {
    target: PathBuf,
    staging: tempfile::TempDir,
}

impl StagedDir {
    /// Starts staging `target`: a private sibling directory holding a copy of the files in
    /// `target` that are not in `managed` (those kforge is about to write), so files kforge
    /// does not manage survive the swap.
    pub fn new(target: &Path, managed: &[String]) -> Result<StagedDir> {
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        kforge_secret::create_private_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let staging = tempfile::Builder::new()
            .prefix(".kforge-staging-")
            .tempdir_in(&parent)
            .with_context(|| {
                format!("cannot create a staging directory in {}", parent.display())
            })?;
        set_mode(staging.path(), 0o700)?;
        if target.is_dir() {
            copy_tree(target, staging.path(), managed).with_context(|| {
                format!(
                    "cannot copy {} into the staging directory",
                    target.display()
                )
            })?;
        }
        Ok(StagedDir {
            target: target.to_path_buf(),
            staging,
        })
    }

    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// Writes a file (mode 0600) into the staging directory. No temporary file and no fsync
    /// per file: the whole directory is flushed once and swapped in atomically on commit.
    pub fn write(&self, name: &str, contents: &[u8]) -> Result<()> {
        let path = self.staging.path().join(name);
        // Unchanged since the last run: link the existing file instead of writing a new one
        // (no new inode, no data to flush; re-runs on large clusters stay cheap).
        let current = self.target.join(name);
        if fs::metadata(&current).is_ok_and(|m| m.is_file() && m.len() == contents.len() as u64)
            && fs::read(&current).is_ok_and(|old| old == contents)
            && private(&current)
            && fs::hard_link(&current, &path).is_ok()
        {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            kforge_secret::create_private_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        io::Write::write_all(&mut file, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        // A copied file kept its mode; the contents written here are always private.
        set_mode(&path, 0o600)
    }

    /// Swaps the staged directory into place (mode 0700). The previous contents are removed.
    pub fn commit(self) -> Result<()> {
        let staged = self.staging.keep();
        set_mode(&staged, 0o700)?;
        // One flush of the filesystem instead of one fsync per file: the data is on disk
        // before the new directory becomes visible.
        let dir =
            fs::File::open(&staged).with_context(|| format!("cannot open {}", staged.display()))?;
        nix::unistd::syncfs(&dir)
            .map_err(io::Error::from)
            .with_context(|| format!("cannot flush {}", staged.display()))?;
        if self.target.exists() {
            match nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &staged,
                nix::fcntl::AT_FDCWD,
                &self.target,
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            ) {
                Ok(()) => {}
                Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => {
                    // Filesystems without RENAME_EXCHANGE: two renames, old copy kept until the end.
                    let old = staged.with_extension("old");
                    fs::rename(&self.target, &old)
                        .with_context(|| format!("cannot move {} aside", self.target.display()))?;
                    fs::rename(&staged, &self.target).with_context(|| {
                        format!("cannot move the new {} into place", self.target.display())
                    })?;
                    fs::remove_dir_all(&old).ok();
                    return Ok(());
                }
                Err(e) => {
                    return Err(io::Error::from(e)).with_context(|| {
                        format!("cannot swap the new {} into place", self.target.display())
                    });
                }
            }
            // `staged` now holds the previous contents.
            fs::remove_dir_all(&staged).with_context(|| {
                format!(
                    "cannot remove the previous contents at {}",
                    staged.display()
                )
            })?;
        } else {
            fs::rename(&staged, &self.target).with_context(|| {
                format!("cannot move the new {} into place", self.target.display())
            })?;
        }
        Ok(())
    }
}

/// Copies a directory tree, leaving out top-level entries named in `skip`.
fn copy_tree(from: &Path, to: &Path, skip: &[String]) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        if skip.iter().any(|s| entry.file_name() == s.as_str()) {
            continue;
        }
        let ty = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if ty.is_dir() {
            fs::create_dir_all(&dest)?;
            copy_tree(&entry.path(), &dest, &[])?;
        } else if ty.is_file() {
            fs::copy(entry.path(), &dest)?;
        } else if ty.is_symlink() {
            let link = fs::read_link(entry.path())?;
            #[cfg(unix)]
            std::os::unix::fs::symlink(link, &dest)?;
        }
    }
    Ok(())
}

/// Whether a file is readable by its owner only.
fn private(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 == 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set permissions of {}", path.display()))?;
    }
    Ok(())
}

/// Adds `entries` to a `.gitignore` text unless a line already covers them; never removes
/// or reorders lines. Returns the new text, or `None` when nothing changes.
pub fn gitignore_with(existing: &str, entries: &[String]) -> Option<String> {
    let patterns: Vec<&str> = existing
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut out = existing.to_string();
    let mut changed = false;
    for e in entries {
        if patterns.iter().any(|p| gitignore_matches(p, e)) || out.lines().any(|l| l.trim() == e) {
            continue;
        }
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(e);
        out.push('\n');
        changed = true;
    }
    changed.then_some(out)
}

/// Whether a gitignore pattern (no negation, simple `*`/`?` globs) matches a file name.
fn gitignore_matches(pattern: &str, name: &str) -> bool {
    if pattern.starts_with('!') {
        return false;
    }
    let p = pattern.trim_start_matches('/');
    glob_match(p.as_bytes(), name.as_bytes())
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_match(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && glob_match(p, &s[1..]))
        }
        (Some(b'?'), Some(c)) if *c != b'/' => glob_match(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob_match(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_is_append_only_and_idempotent() {
        let first = gitignore_with("", &["a.yaml".into(), "talosconfig".into()]).unwrap();
        assert_eq!(first, "a.yaml\ntalosconfig\n");
        assert!(gitignore_with(&first, &["a.yaml".into(), "talosconfig".into()]).is_none());
        assert!(gitignore_with("*.yaml\n", &["a.yaml".into()]).is_none());
        assert_eq!(
            gitignore_with("# keep\nx", &["b".into()]).unwrap(),
            "# keep\nx\nb\n"
        );
    }

    #[test]
    fn staged_dir_swaps_atomically_and_keeps_foreign_files() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("keep.txt"), "mine").unwrap();
        fs::write(out.join("a.yaml"), "old").unwrap();
        let staged = StagedDir::new(&out, &["a.yaml".to_string()]).unwrap();
        staged.write("a.yaml", b"new").unwrap();
        assert_eq!(fs::read_to_string(out.join("a.yaml")).unwrap(), "old");
        staged.commit().unwrap();
        assert_eq!(fs::read_to_string(out.join("a.yaml")).unwrap(), "new");
        assert_eq!(fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
        let leftovers: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("out")]);

        // Dropping a staged dir without committing leaves the target untouched.
        let staged = StagedDir::new(&out, &[]).unwrap();
        staged.write("a.yaml", b"never").unwrap();
        drop(staged);
        assert_eq!(fs::read_to_string(out.join("a.yaml")).unwrap(), "new");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
