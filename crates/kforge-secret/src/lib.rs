//! Secret material in kforge lives in [`Secret`], which implements neither `Debug` nor
//! `Display`: a secret cannot reach a log line, an error message or `{:?}` output by
//! accident, because such code does not compile. Reading the value is explicit
//! ([`Secret::expose`]) and greppable. Memory is zeroed on drop.
//!
//! [`write_private`] is the one way secret files reach disk: mode 0600, written to a
//! temporary file in the same directory and renamed into place, so a crash never leaves a
//! half-written secret or a window in which it is world-readable.

use std::io::Write;
use std::path::Path;

use zeroize::Zeroize;

/// A value that must not be printed. Deliberately has no `Debug` or `Display`.
#[derive(Clone, Default)]
pub struct Secret<T: Zeroize>(T);

pub type SecretString = Secret<String>;
pub type SecretBytes = Secret<Vec<u8>>;

impl<T: Zeroize> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret value. Every call site is a place where a secret is used on purpose.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn expose_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize + PartialEq> PartialEq for Secret<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<T: Zeroize + PartialEq> Eq for Secret<T> {}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        Secret(v)
    }
}

impl SecretString {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Writes `contents` to `path` with mode 0600, atomically (temporary file + rename).
/// Creates missing parent directories with mode 0700.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    create_private_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".kforge-tmp-")
        .permissions(private_file_permissions())
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Creates `dir` and its missing parents; the directories created get mode 0700.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn private_file_permissions() -> std::fs::Permissions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::Permissions::from_mode(0o600)
    }
    #[cfg(not(unix))]
    {
        let f = tempfile::tempfile().expect("temporary file");
        f.metadata().expect("metadata").permissions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_in_0700_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/secret.yaml");
        write_private(&path, b"x").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&tmp.path().join("a/b")), 0o700);
            assert_eq!(mode(&tmp.path().join("a")), 0o700);
        }
        write_private(&path, b"yy").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"yy");
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("a/b")).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(SecretString::from("a".to_string()) == SecretString::from("a".to_string()));
    }
}
