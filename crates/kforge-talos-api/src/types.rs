//! Typed replies and request options of the operations kforge performs, converted from
//! the generated protobuf messages. These are what callers and renderers work with; they
//! serialize to stable JSON (timestamps as RFC 3339, etcd ids as 16-digit hex strings so
//! 64-bit values survive JSON consumers that use doubles).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::RetryPolicy;
use crate::proto::machine as pb;

/// `/proc/meminfo` of a node, all 48 fields, values in kB.
pub type MemInfo = pb::MemInfo;

// ---------- Version ----------

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Platform {
    pub name: String,
    pub mode: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Version {
    pub tag: String,
    pub sha: String,
    pub built: String,
    pub go_version: String,
    pub os: String,
    pub arch: String,
    pub platform: Option<Platform>,
    /// `features.rbac`; absent when the node did not report features.
    pub rbac: Option<bool>,
}

impl From<pb::Version> for Version {
    fn from(v: pb::Version) -> Self {
        let info = v.version.unwrap_or_default();
        Version {
            tag: info.tag,
            sha: info.sha,
            built: info.built,
            go_version: info.go_version,
            os: info.os,
            arch: info.arch,
            platform: v.platform.map(|p| Platform {
                name: p.name,
                mode: p.mode,
            }),
            rbac: v.features.map(|f| f.rbac),
        }
    }
}

// ---------- Services ----------

fn serialize_time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&humantime::format_rfc3339_seconds(*t).to_string()),
        None => s.serialize_none(),
    }
}

pub(crate) fn system_time(ts: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    if ts.seconds >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(ts.seconds.unsigned_abs(), nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(ts.seconds.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceEvent {
    pub msg: String,
    pub state: String,
    #[serde(serialize_with = "serialize_time")]
    pub ts: Option<SystemTime>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceHealth {
    /// Health is not known (no health check, or not yet run).
    pub unknown: bool,
    pub healthy: bool,
    pub last_message: String,
    #[serde(serialize_with = "serialize_time")]
    pub last_change: Option<SystemTime>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceInfo {
    pub id: String,
    pub state: String,
    pub health: ServiceHealth,
    /// Oldest first, as the node reports them.
    pub events: Vec<ServiceEvent>,
}

impl From<pb::ServiceInfo> for ServiceInfo {
    fn from(s: pb::ServiceInfo) -> Self {
        let health = s.health.unwrap_or(pb::ServiceHealth {
            unknown: true,
            ..Default::default()
        });
        ServiceInfo {
            id: s.id,
            state: s.state,
            health: ServiceHealth {
                unknown: health.unknown,
                healthy: health.healthy,
                last_message: health.last_message,
                last_change: system_time(health.last_change),
            },
            events: s
                .events
                .map(|e| e.events)
                .unwrap_or_default()
                .into_iter()
                .map(|e| ServiceEvent {
                    msg: e.msg,
                    state: e.state,
                    ts: system_time(e.ts),
                })
                .collect(),
        }
    }
}

/// Which service operation to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceAction {
    Start,
    Stop,
    Restart,
}

impl fmt::Display for ServiceAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceAction::Start => "start",
            ServiceAction::Stop => "stop",
            ServiceAction::Restart => "restart",
        })
    }
}

/// Reply of ServiceStart/Stop/Restart: the node's response text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceReply {
    pub resp: String,
}

// ---------- etcd ----------

fn serialize_hex_id<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{id:016x}"))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EtcdMember {
    #[serde(serialize_with = "serialize_hex_id")]
    pub id: u64,
    pub hostname: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EtcdMembers {
    pub members: Vec<EtcdMember>,
    /// Member host names as very old Talos versions reported them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub legacy_members: Vec<String>,
}

impl From<pb::EtcdMembers> for EtcdMembers {
    fn from(m: pb::EtcdMembers) -> Self {
        EtcdMembers {
            members: m
                .members
                .into_iter()
                .map(|m| EtcdMember {
                    id: m.id,
                    hostname: m.hostname,
                    peer_urls: m.peer_urls,
                    client_urls: m.client_urls,
                    is_learner: m.is_learner,
                })
                .collect(),
            legacy_members: m.legacy_members,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EtcdMemberStatus {
    #[serde(serialize_with = "serialize_hex_id")]
    pub member_id: u64,
    pub protocol_version: String,
    pub storage_version: String,
    pub db_size: i64,
    pub db_size_in_use: i64,
    #[serde(serialize_with = "serialize_hex_id")]
    pub leader: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub raft_applied_index: u64,
    pub errors: Vec<String>,
    pub is_learner: bool,
}

impl From<pb::EtcdMemberStatus> for EtcdMemberStatus {
    fn from(s: pb::EtcdMemberStatus) -> Self {
        EtcdMemberStatus {
            member_id: s.member_id,
            protocol_version: s.protocol_version,
            storage_version: s.storage_version,
            db_size: s.db_size,
            db_size_in_use: s.db_size_in_use,
            leader: s.leader,
            raft_index: s.raft_index,
            raft_term: s.raft_term,
            raft_applied_index: s.raft_applied_index,
            errors: s.errors,
            is_learner: s.is_learner,
        }
    }
}

// ---------- ApplyConfiguration ----------

/// How a node applies a new machine config. There is deliberately no `Default`: the wire
/// default (0) is REBOOT, so every caller states the mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyMode {
    Reboot,
    Auto,
    NoReboot,
    Staged,
    Try,
}

impl ApplyMode {
    pub const ALL: [ApplyMode; 5] = [
        ApplyMode::Auto,
        ApplyMode::NoReboot,
        ApplyMode::Reboot,
        ApplyMode::Staged,
        ApplyMode::Try,
    ];

    /// The talosctl `--mode` spelling.
    pub fn name(self) -> &'static str {
        match self {
            ApplyMode::Reboot => "reboot",
            ApplyMode::Auto => "auto",
            ApplyMode::NoReboot => "no-reboot",
            ApplyMode::Staged => "staged",
            ApplyMode::Try => "try",
        }
    }

    pub fn to_proto(self) -> pb::apply_configuration_request::Mode {
        use pb::apply_configuration_request::Mode;
        match self {
            ApplyMode::Reboot => Mode::Reboot,
            ApplyMode::Auto => Mode::Auto,
            ApplyMode::NoReboot => Mode::NoReboot,
            ApplyMode::Staged => Mode::Staged,
            ApplyMode::Try => Mode::Try,
        }
    }

    pub fn from_proto(value: i32) -> Option<Self> {
        use pb::apply_configuration_request::Mode;
        Some(match Mode::try_from(value).ok()? {
            Mode::Reboot => ApplyMode::Reboot,
            Mode::Auto => ApplyMode::Auto,
            Mode::NoReboot => ApplyMode::NoReboot,
            Mode::Staged => ApplyMode::Staged,
            Mode::Try => ApplyMode::Try,
        })
    }
}

impl fmt::Display for ApplyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ApplyMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ApplyMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown apply mode {s:?}; expected one of auto, no-reboot, reboot, staged, try"
                )
            })
    }
}

/// Options of ApplyConfiguration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyOptions {
    pub mode: ApplyMode,
    /// Validate and report what would happen, change nothing.
    pub dry_run: bool,
    /// Rollback delay for [`ApplyMode::Try`]; sent only in that mode.
    pub try_timeout: Duration,
}

impl ApplyOptions {
    /// talosctl's default try timeout.
    pub const DEFAULT_TRY_TIMEOUT: Duration = Duration::from_secs(60);

    pub fn new(mode: ApplyMode) -> Self {
        ApplyOptions {
            mode,
            dry_run: false,
            try_timeout: Self::DEFAULT_TRY_TIMEOUT,
        }
    }

    /// The request kforge sends (public so wire tests and simulators can inspect it).
    pub fn to_request(self, config: &[u8]) -> pb::ApplyConfigurationRequest {
        pb::ApplyConfigurationRequest {
            data: config.to_vec(),
            mode: self.mode.to_proto() as i32,
            dry_run: self.dry_run,
            try_mode_timeout: (self.mode == ApplyMode::Try).then(|| prost_types::Duration {
                seconds: i64::try_from(self.try_timeout.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(self.try_timeout.subsec_nanos()).unwrap_or(0),
            }),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApplyConfigurationResult {
    /// The mode the node actually used (None: a mode value this client does not know).
    pub mode: Option<ApplyMode>,
    pub mode_details: String,
    pub warnings: Vec<String>,
}

impl From<pb::ApplyConfiguration> for ApplyConfigurationResult {
    fn from(a: pb::ApplyConfiguration) -> Self {
        ApplyConfigurationResult {
            mode: ApplyMode::from_proto(a.mode),
            mode_details: a.mode_details,
            warnings: a.warnings,
        }
    }
}

// ---------- Bootstrap ----------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootstrapOptions {
    /// Recover etcd from a snapshot uploaded with EtcdRecover.
    pub recover_etcd: bool,
    pub recover_skip_hash_check: bool,
    /// How long to keep asking while the node is not ready; default
    /// [`RetryPolicy::bootstrap`] (about 2 minutes, like talosctl).
    pub retry: RetryPolicy,
}

impl BootstrapOptions {
    /// The request kforge sends.
    pub fn to_request(&self) -> pb::BootstrapRequest {
        pb::BootstrapRequest {
            recover_etcd: self.recover_etcd,
            recover_skip_hash_check: self.recover_skip_hash_check,
        }
    }
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        BootstrapOptions {
            recover_etcd: false,
            recover_skip_hash_check: false,
            retry: RetryPolicy::bootstrap(),
        }
    }
}

/// Bootstrap is idempotent in kforge: "etcd data directory is not empty" (AlreadyExists)
/// means an earlier bootstrap already happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootstrapOutcome {
    Bootstrapped,
    AlreadyBootstrapped,
}

// ---------- Reboot / Reset / Upgrade ----------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RebootMode {
    #[default]
    Default,
    Powercycle,
    Force,
}

impl RebootMode {
    pub fn to_proto(self) -> pb::reboot_request::Mode {
        match self {
            RebootMode::Default => pb::reboot_request::Mode::Default,
            RebootMode::Powercycle => pb::reboot_request::Mode::Powercycle,
            RebootMode::Force => pb::reboot_request::Mode::Force,
        }
    }
}

/// Reply of Reboot and Reset: the id of the node-side actor (for event correlation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActorReply {
    pub actor_id: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WipeMode {
    #[default]
    All,
    SystemDisk,
    UserDisks,
}

/// Options of Reset. `Default` matches talosctl's defaults (graceful, halt, wipe all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetOptions {
    /// Leave etcd cleanly (with its safety checks) before wiping.
    pub graceful: bool,
    /// Reboot after the reset instead of halting.
    pub reboot: bool,
    pub wipe_mode: WipeMode,
    /// System partition labels to wipe (e.g. `EPHEMERAL`); empty means all.
    pub system_labels_to_wipe: Vec<String>,
    pub user_disks_to_wipe: Vec<String>,
}

impl Default for ResetOptions {
    fn default() -> Self {
        ResetOptions {
            graceful: true,
            reboot: false,
            wipe_mode: WipeMode::All,
            system_labels_to_wipe: Vec::new(),
            user_disks_to_wipe: Vec::new(),
        }
    }
}

impl ResetOptions {
    /// The request kforge sends.
    pub fn to_request(&self) -> pb::ResetRequest {
        pb::ResetRequest {
            graceful: self.graceful,
            reboot: self.reboot,
            system_partitions_to_wipe: self
                .system_labels_to_wipe
                .iter()
                .map(|label| pb::ResetPartitionSpec {
                    label: label.clone(),
                    wipe: true,
                })
                .collect(),
            user_disks_to_wipe: self.user_disks_to_wipe.clone(),
            mode: match self.wipe_mode {
                WipeMode::All => pb::reset_request::WipeMode::All,
                WipeMode::SystemDisk => pb::reset_request::WipeMode::SystemDisk,
                WipeMode::UserDisks => pb::reset_request::WipeMode::UserDisks,
            } as i32,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpgradeRebootMode {
    #[default]
    Default,
    Powercycle,
}

/// Options of the (legacy, still supported) MachineService Upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeOptions {
    /// Installer image, e.g. `ghcr.io/siderolabs/installer:v1.12.11`.
    pub image: String,
    /// Keep the ephemeral partition (data).
    pub preserve: bool,
    /// Stage the upgrade to run on the next reboot.
    pub stage: bool,
    /// Skip the etcd health checks.
    pub force: bool,
    pub reboot_mode: UpgradeRebootMode,
}

impl UpgradeOptions {
    pub fn new(image: impl Into<String>) -> Self {
        UpgradeOptions {
            image: image.into(),
            preserve: false,
            stage: false,
            force: false,
            reboot_mode: UpgradeRebootMode::Default,
        }
    }

    /// The request kforge sends.
    pub fn to_request(&self) -> pb::UpgradeRequest {
        pb::UpgradeRequest {
            image: self.image.clone(),
            preserve: self.preserve,
            stage: self.stage,
            force: self.force,
            reboot_mode: match self.reboot_mode {
                UpgradeRebootMode::Default => pb::upgrade_request::RebootMode::Default,
                UpgradeRebootMode::Powercycle => pb::upgrade_request::RebootMode::Powercycle,
            } as i32,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpgradeReply {
    pub ack: String,
    pub actor_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_mode_names_round_trip() {
        for m in ApplyMode::ALL {
            assert_eq!(m.name().parse::<ApplyMode>().unwrap(), m);
            assert_eq!(ApplyMode::from_proto(m.to_proto() as i32), Some(m));
        }
        assert!("interactive".parse::<ApplyMode>().is_err());
        assert_eq!(ApplyMode::from_proto(99), None);
    }

    #[test]
    fn try_timeout_only_in_try_mode() {
        let mut o = ApplyOptions::new(ApplyMode::Auto);
        assert!(o.to_request(b"x").try_mode_timeout.is_none());
        o.mode = ApplyMode::Try;
        o.try_timeout = Duration::from_millis(1500);
        let d = o.to_request(b"x").try_mode_timeout.unwrap();
        assert_eq!((d.seconds, d.nanos), (1, 500_000_000));
    }

    #[test]
    fn timestamps_convert_and_serialize() {
        let t = system_time(Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        }));
        let e = ServiceEvent {
            msg: "m".into(),
            state: "Running".into(),
            ts: t,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap()["ts"],
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            system_time(Some(prost_types::Timestamp {
                seconds: 1,
                nanos: -1
            })),
            None
        );
    }

    #[test]
    fn etcd_ids_serialize_as_hex() {
        let m = EtcdMember {
            id: 0x4f3f_b4c3_3808_229a,
            hostname: "cp1".into(),
            peer_urls: vec![],
            client_urls: vec![],
            is_learner: false,
        };
        assert_eq!(serde_json::to_value(&m).unwrap()["id"], "4f3fb4c33808229a");
    }
}
