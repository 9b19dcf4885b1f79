//! Talos versions kforge generates configs for, and which Kubernetes versions each supports.
//! This table is the one place to extend when a Talos release lands.
//!
//! Kubernetes ranges come from Talos's `pkg/machinery/compatibility/talos1NN` packages
//! (minimum inclusive; maximum `1.X.99`, exclusive at the patch level as Talos compares).

use std::fmt;

/// How a contract lays out machine configs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Before 1.12: hostname, network, resolvers in the v1alpha1 document.
    Legacy,
    /// 1.12 and later: hostname and network settings as their own documents.
    Multidoc,
}

/// One supported Talos minor version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contract {
    pub major: u64,
    pub minor: u64,
    /// Oldest supported Kubernetes `(major, minor, patch)`.
    pub kubernetes_min: (u64, u64, u64),
    /// Newest supported Kubernetes minor `(major, minor)`.
    pub kubernetes_max: (u64, u64),
    pub layout: Layout,
    /// Whether kforge checks generated documents against Talos's JSON schema for it.
    pub schema_checked: bool,
}

const fn c(minor: u64, kmin: u64, kmax: u64, layout: Layout, schema_checked: bool) -> Contract {
    Contract {
        major: 1,
        minor,
        kubernetes_min: (1, kmin, 0),
        kubernetes_max: (1, kmax),
        layout,
        schema_checked,
    }
}

/// Every Talos minor version kforge generates configs for, oldest first.
pub const CONTRACTS: &[Contract] = &[
    c(5, 26, 28, Layout::Legacy, false),
    c(6, 27, 29, Layout::Legacy, false),
    c(7, 25, 30, Layout::Legacy, false),
    c(8, 26, 31, Layout::Legacy, false),
    c(9, 27, 32, Layout::Legacy, false),
    c(10, 28, 33, Layout::Legacy, false),
    c(11, 29, 34, Layout::Legacy, false),
    c(12, 30, 35, Layout::Multidoc, true),
    c(13, 31, 36, Layout::Multidoc, true),
];

/// The Talos version used when the cluster file names none.
pub const DEFAULT_TALOS_VERSION: &str = "v1.12.11";

impl Contract {
    /// At least Talos `1.minor`.
    pub fn at_least(&self, minor: u64) -> bool {
        self.major > 1 || self.minor >= minor
    }

    pub fn supports_kubernetes(&self, k: &Version) -> bool {
        (k.major, k.minor, k.patch) >= self.kubernetes_min
            && (k.major, k.minor) <= self.kubernetes_max
    }

    pub fn kubernetes_range(&self) -> String {
        let (a, b, _) = self.kubernetes_min;
        format!(
            "{a}.{b} to {}.{}",
            self.kubernetes_max.0, self.kubernetes_max.1
        )
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}", self.major, self.minor)
    }
}

/// A `vMAJOR.MINOR.PATCH[-pre]` version (the `v` and the patch are optional).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Option<String>,
}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) if !p.is_empty() => (c, Some(p.to_string())),
            Some(_) => return None,
            None => (s, None),
        };
        let mut parts = core.split('.');
        let num = |p: Option<&str>| {
            p.and_then(|x| {
                (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| x.parse().ok())
                    .flatten()
            })
        };
        let major = num(parts.next())?;
        let minor = num(parts.next())?;
        let patch = match parts.next() {
            None => 0,
            p => num(p)?,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Version {
            major,
            minor,
            patch,
            pre,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(p) = &self.pre {
            write!(f, "-{p}")?;
        }
        Ok(())
    }
}

/// The contract for a Talos version, or a message listing what is supported.
pub fn contract_for(v: &Version) -> Result<&'static Contract, String> {
    CONTRACTS
        .iter()
        .find(|c| c.major == v.major && c.minor == v.minor)
        .ok_or_else(|| {
            format!(
                "Talos {v} is not supported; kforge generates configs for {}",
                supported_list()
            )
        })
}

/// "v1.5.x, v1.6.x, …, v1.13.x".
pub fn supported_list() -> String {
    CONTRACTS
        .iter()
        .map(|c| format!("{c}.x"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_and_lookup() {
        let v = Version::parse("v1.12.0").unwrap();
        assert_eq!(contract_for(&v).unwrap().layout, Layout::Multidoc);
        assert_eq!(Version::parse("1.13").unwrap().patch, 0);
        assert_eq!(
            Version::parse("v1.14.0-rc.1").unwrap().pre.as_deref(),
            Some("rc.1")
        );
        assert!(Version::parse("v1.x").is_none());
        let err = contract_for(&Version::parse("v1.14.0").unwrap()).unwrap_err();
        assert!(err.contains("v1.12.x, v1.13.x"), "{err}");
    }

    #[test]
    fn kubernetes_ranges() {
        let c12 = contract_for(&Version::parse("v1.12.0").unwrap()).unwrap();
        assert!(c12.supports_kubernetes(&Version::parse("v1.35.0").unwrap()));
        assert!(c12.supports_kubernetes(&Version::parse("1.30.0").unwrap()));
        assert!(!c12.supports_kubernetes(&Version::parse("v1.36.0").unwrap()));
        assert!(!c12.supports_kubernetes(&Version::parse("v1.29.9").unwrap()));
    }
}
