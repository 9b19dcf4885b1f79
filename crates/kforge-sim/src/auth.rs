//! Talos RBAC: roles come from the Organization of the client certificate (`os:admin`,
//! `os:operator`, `os:reader`, `os:etcd:backup`, `os:impersonator`); a peer with the
//! impersonator role (another node's apid forwarding a call) may state the caller's roles
//! in the `talos-role` metadata, as apid does when it proxies. Each RPC admits the roles
//! listed in machined's table; anything else is PermissionDenied "not authorized".

use kforge_talos_api::server_tls::TlsPeer;
use tonic::metadata::MetadataMap;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The metadata key apid uses to forward the caller's roles.
pub const ROLE_METADATA: &str = "talos-role";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Operator,
    Reader,
    EtcdBackup,
    Impersonator,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        Some(match text.trim() {
            "os:admin" => Role::Admin,
            "os:operator" => Role::Operator,
            "os:reader" => Role::Reader,
            "os:etcd:backup" => Role::EtcdBackup,
            "os:impersonator" => Role::Impersonator,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "os:admin",
            Role::Operator => "os:operator",
            Role::Reader => "os:reader",
            Role::EtcdBackup => "os:etcd:backup",
            Role::Impersonator => "os:impersonator",
        }
    }
}

/// The MachineService RPCs the simulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc {
    ApplyConfiguration,
    Bootstrap,
    Version,
    ServiceList,
    ServiceStart,
    ServiceStop,
    ServiceRestart,
    EtcdMemberList,
    EtcdStatus,
    Kubeconfig,
    Reboot,
    Reset,
    Upgrade,
    Read,
    Memory,
    Hostname,
}

impl Rpc {
    pub fn name(self) -> &'static str {
        match self {
            Rpc::ApplyConfiguration => "ApplyConfiguration",
            Rpc::Bootstrap => "Bootstrap",
            Rpc::Version => "Version",
            Rpc::ServiceList => "ServiceList",
            Rpc::ServiceStart => "ServiceStart",
            Rpc::ServiceStop => "ServiceStop",
            Rpc::ServiceRestart => "ServiceRestart",
            Rpc::EtcdMemberList => "EtcdMemberList",
            Rpc::EtcdStatus => "EtcdStatus",
            Rpc::Kubeconfig => "Kubeconfig",
            Rpc::Reboot => "Reboot",
            Rpc::Reset => "Reset",
            Rpc::Upgrade => "Upgrade",
            Rpc::Read => "Read",
            Rpc::Memory => "Memory",
            Rpc::Hostname => "Hostname",
        }
    }

    /// Roles admitted (machined's role table).
    pub fn allowed(self) -> &'static [Role] {
        use Role::*;
        match self {
            Rpc::ApplyConfiguration
            | Rpc::Bootstrap
            | Rpc::Kubeconfig
            | Rpc::Reset
            | Rpc::Upgrade
            | Rpc::Read => &[Admin],
            Rpc::Version | Rpc::ServiceList | Rpc::Memory | Rpc::Hostname => {
                &[Admin, Operator, Reader]
            }
            Rpc::ServiceStart | Rpc::ServiceStop | Rpc::ServiceRestart | Rpc::Reboot => {
                &[Admin, Operator]
            }
            Rpc::EtcdMemberList | Rpc::EtcdStatus => &[Admin, Operator, Reader, EtcdBackup],
        }
    }
}

/// The Organization values of a DER certificate's subject.
pub fn certificate_organizations(der: &[u8]) -> Vec<String> {
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => cert
            .subject()
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn parse_roles<'a>(values: impl Iterator<Item = &'a str>) -> Vec<Role> {
    let mut roles = Vec::new();
    for v in values {
        for part in v.split(',') {
            if let Some(r) = Role::parse(part)
                && !roles.contains(&r)
            {
                roles.push(r);
            }
        }
    }
    roles
}

/// The caller's roles: from the client certificate, or — for an impersonator that sent
/// them — from `talos-role` metadata.
pub fn caller_roles(peer: Option<&TlsPeer>, metadata: &MetadataMap) -> Vec<Role> {
    let orgs = peer
        .and_then(|p| p.client_certificates.first())
        .map(|c| certificate_organizations(c))
        .unwrap_or_default();
    let roles = parse_roles(orgs.iter().map(String::as_str));
    if roles.contains(&Role::Impersonator) {
        let forwarded: Vec<&str> = metadata
            .get_all(ROLE_METADATA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !forwarded.is_empty() {
            return parse_roles(forwarded.into_iter());
        }
    }
    roles
}

/// PermissionDenied unless one of `roles` is admitted to `rpc`.
pub fn authorize(rpc: Rpc, roles: &[Role]) -> Result<(), tonic::Status> {
    if roles.iter().any(|r| rpc.allowed().contains(r)) {
        Ok(())
    } else {
        Err(tonic::Status::permission_denied("not authorized"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_table() {
        assert!(authorize(Rpc::Version, &[Role::Reader]).is_ok());
        assert!(authorize(Rpc::Bootstrap, &[Role::Reader]).is_err());
        assert!(authorize(Rpc::Reboot, &[Role::Operator]).is_ok());
        assert!(authorize(Rpc::Read, &[Role::Operator]).is_err());
        assert!(authorize(Rpc::EtcdStatus, &[Role::EtcdBackup]).is_ok());
        assert!(authorize(Rpc::Version, &[Role::EtcdBackup]).is_err());
        assert!(authorize(Rpc::Version, &[Role::Impersonator]).is_err());
        assert!(authorize(Rpc::Version, &[]).is_err());
        assert_eq!(
            authorize(Rpc::Reset, &[Role::Reader]).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn forwarded_roles_only_count_for_impersonators() {
        let mut md = MetadataMap::new();
        md.append(ROLE_METADATA, "os:admin".parse().unwrap());
        // Without a certificate there are no roles, metadata or not.
        assert!(caller_roles(None, &md).is_empty());
        assert_eq!(
            parse_roles(["os:reader, os:bogus", "os:admin"].into_iter()),
            vec![Role::Reader, Role::Admin]
        );
    }
}
