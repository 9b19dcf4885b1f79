//! The state directory of a node, laid out like the parts of a Talos disk that matter:
//!
//! - `state/` (Talos' STATE partition): `config.yaml` (the applied machine config),
//!   `staged.yaml` (a config staged for the next boot), `installed-image` (set by Upgrade).
//! - `ephemeral/` (EPHEMERAL, `/var`): `etcd/` (etcd's data directory) and `etcd-pki/`.
//! - `run/` (not wiped by Reset): the control socket, `etcd.pid`, `etcd.log`.
//!
//! Reset wipes `state/` and `ephemeral/`; a restarted process finds everything else.

use std::fs;
use std::path::{Path, PathBuf};

use kforge_secret::SecretString;

use crate::SimError;

#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    pub fn ephemeral_dir(&self) -> PathBuf {
        self.root.join("ephemeral")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    pub fn config(&self) -> PathBuf {
        self.state_dir().join("config.yaml")
    }

    pub fn staged_config(&self) -> PathBuf {
        self.state_dir().join("staged.yaml")
    }

    pub fn installed_image(&self) -> PathBuf {
        self.state_dir().join("installed-image")
    }

    pub fn etcd_data(&self) -> PathBuf {
        self.ephemeral_dir().join("etcd")
    }

    pub fn etcd_pki(&self) -> PathBuf {
        self.ephemeral_dir().join("etcd-pki")
    }

    pub fn etcd_pid(&self) -> PathBuf {
        self.run_dir().join("etcd.pid")
    }

    pub fn etcd_log(&self) -> PathBuf {
        self.run_dir().join("etcd.log")
    }

    pub fn control_socket(&self) -> PathBuf {
        self.run_dir().join("control.sock")
    }

    /// Creates the directories (0700: they hold keys).
    pub fn create(&self) -> Result<(), SimError> {
        for dir in [self.state_dir(), self.ephemeral_dir(), self.run_dir()] {
            create_private_dir(&dir)?;
        }
        Ok(())
    }

    /// Whether etcd's data directory holds anything ("etcd data directory is not empty").
    pub fn etcd_data_present(&self) -> bool {
        fs::read_dir(self.etcd_data())
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false)
    }

    pub fn read_config(&self) -> Result<Option<SecretString>, SimError> {
        read_optional(&self.config())
    }

    pub fn write_config(&self, text: &str) -> Result<(), SimError> {
        write_secret(&self.config(), text)
    }

    pub fn read_staged(&self) -> Result<Option<SecretString>, SimError> {
        read_optional(&self.staged_config())
    }

    pub fn write_staged(&self, text: &str) -> Result<(), SimError> {
        write_secret(&self.staged_config(), text)
    }

    pub fn remove_staged(&self) -> Result<(), SimError> {
        remove_if_exists(&self.staged_config())
    }

    pub fn read_installed_image(&self) -> Option<String> {
        fs::read_to_string(self.installed_image())
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    pub fn write_installed_image(&self, image: &str) -> Result<(), SimError> {
        let path = self.installed_image();
        fs::write(&path, format!("{image}\n")).map_err(SimError::io("write", path))
    }

    /// Reset: wipes STATE and EPHEMERAL.
    pub fn wipe(&self) -> Result<(), SimError> {
        for dir in [self.state_dir(), self.ephemeral_dir()] {
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SimError::io("wipe", dir)(e)),
            }
        }
        self.create()
    }
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), SimError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(SimError::io("create directory", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(SimError::io("set permissions of", dir))
}

fn read_optional(path: &Path) -> Result<Option<SecretString>, SimError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(SecretString::new(text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SimError::io("read", path)(e)),
    }
}

pub(crate) fn write_secret(path: &Path, text: &str) -> Result<(), SimError> {
    kforge_secret::write_private(path, text.as_bytes()).map_err(SimError::io("write", path))
}

fn remove_if_exists(path: &Path) -> Result<(), SimError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SimError::io("remove", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_keeps_run_dir() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.create().unwrap();
        layout.write_config("version: v1alpha1\n").unwrap();
        fs::create_dir_all(layout.etcd_data().join("member")).unwrap();
        fs::write(layout.etcd_log(), "log").unwrap();
        assert!(layout.etcd_data_present());
        layout.wipe().unwrap();
        assert!(layout.read_config().unwrap().is_none());
        assert!(!layout.etcd_data_present());
        assert!(layout.etcd_log().exists());
    }
}
