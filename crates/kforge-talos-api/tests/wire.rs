//! Wire checks: the bytes kforge puts on the wire (and the bytes it accepts) are compared
//! with hand-written encodings derived from the Talos field numbers, so a renumbered or
//! retyped field in `proto/` cannot go unnoticed.

use std::time::Duration;

use kforge_talos_api::proto::cluster::{ClusterInfo, HealthCheckRequest};
use kforge_talos_api::proto::common::{Data, Metadata};
use kforge_talos_api::proto::google::rpc::Status;
use kforge_talos_api::proto::machine as pb;
use kforge_talos_api::{
    ApplyMode, ApplyOptions, BootstrapOptions, MemInfo, RebootMode, ResetOptions, UpgradeOptions,
    UpgradeRebootMode, WipeMode,
};
use prost::Message;

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn assert_bytes(msg: &impl Message, expected: &[u8]) {
    assert_eq!(hex(&msg.encode_to_vec()), hex(expected));
}

#[test]
fn apply_configuration_auto_is_explicit() {
    let req = ApplyOptions::new(ApplyMode::Auto).to_request(b"x");
    // field 1 bytes "x", field 4 varint 1 (AUTO)
    assert_bytes(&req, &[0x0a, 0x01, 0x78, 0x20, 0x01]);
}

#[test]
fn apply_configuration_every_mode_and_flags() {
    for (mode, value) in [
        (ApplyMode::Auto, 1u8),
        (ApplyMode::NoReboot, 2),
        (ApplyMode::Staged, 3),
    ] {
        let mut o = ApplyOptions::new(mode);
        o.dry_run = true;
        // field 4 = mode, field 5 = dry_run
        assert_bytes(
            &o.to_request(b"x"),
            &[0x0a, 0x01, 0x78, 0x20, value, 0x28, 0x01],
        );
    }
    // TRY carries try_mode_timeout (field 6, Duration{seconds: 90}).
    let mut o = ApplyOptions::new(ApplyMode::Try);
    o.try_timeout = Duration::from_secs(90);
    assert_bytes(
        &o.to_request(b"x"),
        &[0x0a, 0x01, 0x78, 0x20, 0x04, 0x32, 0x02, 0x08, 0x5a],
    );
    // REBOOT is the proto3 zero value: like talosctl, it is encoded by omission.
    assert_bytes(
        &ApplyOptions::new(ApplyMode::Reboot).to_request(b"x"),
        &[0x0a, 0x01, 0x78],
    );
}

#[test]
fn bootstrap_request() {
    let o = BootstrapOptions {
        recover_etcd: true,
        recover_skip_hash_check: true,
        ..BootstrapOptions::default()
    };
    assert_bytes(&o.to_request(), &[0x08, 0x01, 0x10, 0x01]);
    assert_bytes(&BootstrapOptions::default().to_request(), &[]);
}

#[test]
fn small_requests() {
    assert_bytes(
        &pb::EtcdMemberListRequest { query_local: true },
        &[0x08, 0x01],
    );
    let id = |id: &str| {
        let mut v = vec![0x0a, id.len() as u8];
        v.extend_from_slice(id.as_bytes());
        v
    };
    assert_bytes(&pb::ServiceStartRequest { id: "etcd".into() }, &id("etcd"));
    assert_bytes(&pb::ServiceStopRequest { id: "etcd".into() }, &id("etcd"));
    assert_bytes(
        &pb::ServiceRestartRequest {
            id: "kubelet".into(),
        },
        &id("kubelet"),
    );
    assert_bytes(
        &pb::ReadRequest {
            path: "/etc/os-release".into(),
        },
        &id("/etc/os-release"),
    );
}

#[test]
fn reboot_modes() {
    let req = |m: RebootMode| pb::RebootRequest {
        mode: m.to_proto() as i32,
    };
    assert_bytes(&req(RebootMode::Default), &[]);
    assert_bytes(&req(RebootMode::Powercycle), &[0x08, 0x01]);
    assert_bytes(&req(RebootMode::Force), &[0x08, 0x02]);
}

#[test]
fn reset_request() {
    let o = ResetOptions {
        graceful: true,
        reboot: true,
        wipe_mode: WipeMode::SystemDisk,
        system_labels_to_wipe: vec!["EPHEMERAL".into()],
        user_disks_to_wipe: vec!["/dev/sdb".into()],
    };
    let mut expected = vec![0x08, 0x01, 0x10, 0x01];
    // field 3: ResetPartitionSpec{1: label, 2: wipe}
    expected.extend_from_slice(&[0x1a, 0x0d, 0x0a, 0x09]);
    expected.extend_from_slice(b"EPHEMERAL");
    expected.extend_from_slice(&[0x10, 0x01]);
    // field 4: user disk
    expected.extend_from_slice(&[0x22, 0x08]);
    expected.extend_from_slice(b"/dev/sdb");
    // field 5: WipeMode SYSTEM_DISK = 1
    expected.extend_from_slice(&[0x28, 0x01]);
    assert_bytes(&o.to_request(), &expected);
    // Defaults: graceful only (ALL = 0 is omitted).
    assert_bytes(&ResetOptions::default().to_request(), &[0x08, 0x01]);
    let user = ResetOptions {
        graceful: false,
        wipe_mode: WipeMode::UserDisks,
        ..ResetOptions::default()
    };
    assert_bytes(&user.to_request(), &[0x28, 0x02]);
}

#[test]
fn upgrade_request() {
    let o = UpgradeOptions {
        image: "img".into(),
        preserve: true,
        stage: true,
        force: true,
        reboot_mode: UpgradeRebootMode::Powercycle,
    };
    assert_bytes(
        &o.to_request(),
        &[
            0x0a, 0x03, b'i', b'm', b'g', 0x10, 0x01, 0x18, 0x01, 0x20, 0x01, 0x28, 0x01,
        ],
    );
}

#[test]
fn health_check_request() {
    let req = HealthCheckRequest {
        wait_timeout: Some(prost_types::Duration {
            seconds: 20,
            nanos: 0,
        }),
        cluster_info: Some(ClusterInfo {
            control_plane_nodes: vec!["a".into()],
            worker_nodes: vec!["b".into()],
            force_endpoint: "e".into(),
        }),
    };
    assert_bytes(
        &req,
        &[
            0x0a, 0x02, 0x08, 0x14, 0x12, 0x09, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', 0x1a, 0x01,
            b'e',
        ],
    );
}

#[test]
fn metadata_fields() {
    // hostname = 1, error = 2, status = 3 {code = 1, message = 2}
    let md = Metadata {
        hostname: "n".into(),
        error: "boom".into(),
        status: Some(Status {
            code: 9,
            message: "m".into(),
            details: vec![],
        }),
    };
    assert_bytes(
        &md,
        &[
            0x0a, 0x01, b'n', 0x12, 0x04, b'b', b'o', b'o', b'm', 0x1a, 0x05, 0x08, 0x09, 0x12,
            0x01, b'm',
        ],
    );
}

#[test]
fn apid_fan_out_rewrite_merges_hostname() {
    // apid appends a serialized Metadata{hostname} as field 1 to each backend message; the
    // protobuf merge must fill metadata.hostname while keeping the other fields.
    let mut version = Vec::new();
    // field 2 VersionInfo{tag: "v1"}
    version.extend_from_slice(&[0x12, 0x04, 0x0a, 0x02, b'v', b'1']);
    // appended field 1 Metadata{hostname: "10.0.0.1"}
    version.extend_from_slice(&[0x0a, 0x0a, 0x0a, 0x08]);
    version.extend_from_slice(b"10.0.0.1");
    let mut response = vec![0x0a, version.len() as u8];
    response.extend_from_slice(&version);
    let decoded = pb::VersionResponse::decode(response.as_slice()).unwrap();
    let m = &decoded.messages[0];
    assert_eq!(m.metadata.as_ref().unwrap().hostname, "10.0.0.1");
    assert_eq!(m.version.as_ref().unwrap().tag, "v1");
}

#[test]
fn reply_field_numbers() {
    // EtcdMember: id is field 2 (there is no field 1), hostname 3, peer 4, client 5, learner 6.
    let member = pb::EtcdMember::decode(
        &[
            0x10, 0x2a, 0x1a, 0x02, b'c', b'p', 0x22, 0x01, b'p', 0x2a, 0x01, b'c', 0x30, 0x01,
        ][..],
    )
    .unwrap();
    assert_eq!(member.id, 42);
    assert_eq!(member.hostname, "cp");
    assert_eq!(member.peer_urls, ["p"]);
    assert_eq!(member.client_urls, ["c"]);
    assert!(member.is_learner);

    // EtcdMemberStatus: member_id 10, storage_version 11, db_size 2, errors 8.
    let status = pb::EtcdMemberStatus::decode(
        &[
            0x50, 0x07, 0x5a, 0x03, b'3', b'.', b'6', 0x10, 0x05, 0x42, 0x01, b'e',
        ][..],
    )
    .unwrap();
    assert_eq!(status.member_id, 7);
    assert_eq!(status.storage_version, "3.6");
    assert_eq!(status.db_size, 5);
    assert_eq!(status.errors, ["e"]);

    // ApplyConfiguration reply: warnings 2, mode 3, mode_details 4.
    let apply =
        pb::ApplyConfiguration::decode(&[0x12, 0x01, b'w', 0x18, 0x02, 0x22, 0x01, b'd'][..])
            .unwrap();
    assert_eq!(apply.warnings, ["w"]);
    assert_eq!(ApplyMode::from_proto(apply.mode), Some(ApplyMode::NoReboot));
    assert_eq!(apply.mode_details, "d");

    // ServiceInfo: id 1, state 2, events 3 {events 1 {msg 1}}, health 4 {healthy 2}.
    let svc = pb::ServiceInfo::decode(
        &[
            0x0a, 0x01, b'x', 0x12, 0x01, b'R', 0x1a, 0x05, 0x0a, 0x03, 0x0a, 0x01, b'm', 0x22,
            0x02, 0x10, 0x01,
        ][..],
    )
    .unwrap();
    assert_eq!(svc.id, "x");
    assert_eq!(svc.state, "R");
    assert_eq!(svc.events.unwrap().events[0].msg, "m");
    assert!(svc.health.unwrap().healthy);

    // Data: metadata 1, bytes 2.
    let data = Data::decode(&[0x0a, 0x03, 0x12, 0x01, b'x', 0x12, 0x02, 0xab, 0xcd][..]).unwrap();
    assert_eq!(data.metadata.unwrap().error, "x");
    assert_eq!(data.bytes, [0xab, 0xcd]);

    // Version: version 2 {tag 1, arch 6}, platform 3 {name 1}, features 4 {rbac 1}.
    let v = pb::Version::decode(
        &[
            0x12, 0x06, 0x0a, 0x01, b't', 0x32, 0x01, b'a', 0x1a, 0x03, 0x0a, 0x01, b'p', 0x22,
            0x02, 0x08, 0x01,
        ][..],
    )
    .unwrap();
    let info = v.version.unwrap();
    assert_eq!((info.tag.as_str(), info.arch.as_str()), ("t", "a"));
    assert_eq!(v.platform.unwrap().name, "p");
    assert!(v.features.unwrap().rbac);

    // Reboot/Reset actor_id 2, Upgrade ack 2 and actor_id 3, Hostname 2, ServiceStart resp 2.
    assert_eq!(
        pb::Reboot::decode(&[0x12, 0x01, b'a'][..])
            .unwrap()
            .actor_id,
        "a"
    );
    assert_eq!(
        pb::Reset::decode(&[0x12, 0x01, b'a'][..]).unwrap().actor_id,
        "a"
    );
    let up = pb::Upgrade::decode(&[0x12, 0x01, b'k', 0x1a, 0x01, b'a'][..]).unwrap();
    assert_eq!((up.ack.as_str(), up.actor_id.as_str()), ("k", "a"));
    assert_eq!(
        pb::Hostname::decode(&[0x12, 0x01, b'h'][..])
            .unwrap()
            .hostname,
        "h"
    );
    assert_eq!(
        pb::ServiceStart::decode(&[0x12, 0x01, b'r'][..])
            .unwrap()
            .resp,
        "r"
    );
}

/// /proc/meminfo order, as numbered 1..48 in the Talos API.
const MEMINFO_FIELDS: [&str; 48] = [
    "memtotal",
    "memfree",
    "memavailable",
    "buffers",
    "cached",
    "swapcached",
    "active",
    "inactive",
    "activeanon",
    "inactiveanon",
    "activefile",
    "inactivefile",
    "unevictable",
    "mlocked",
    "swaptotal",
    "swapfree",
    "dirty",
    "writeback",
    "anonpages",
    "mapped",
    "shmem",
    "slab",
    "sreclaimable",
    "sunreclaim",
    "kernelstack",
    "pagetables",
    "nfsunstable",
    "bounce",
    "writebacktmp",
    "commitlimit",
    "committedas",
    "vmalloctotal",
    "vmallocused",
    "vmallocchunk",
    "hardwarecorrupted",
    "anonhugepages",
    "shmemhugepages",
    "shmempmdmapped",
    "cmatotal",
    "cmafree",
    "hugepagestotal",
    "hugepagesfree",
    "hugepagesrsvd",
    "hugepagessurp",
    "hugepagesize",
    "directmap4k",
    "directmap2m",
    "directmap1g",
];

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[test]
fn meminfo_all_48_field_numbers() {
    // Hand-encode field n with value 1000 + n, for every n.
    let mut bytes = Vec::new();
    for n in 1..=48u64 {
        varint(n << 3, &mut bytes);
        varint(1000 + n, &mut bytes);
    }
    let m = MemInfo::decode(bytes.as_slice()).unwrap();
    let json = serde_json::to_value(m).unwrap();
    let obj = json.as_object().unwrap();
    assert_eq!(obj.len(), 48);
    for (i, name) in MEMINFO_FIELDS.iter().enumerate() {
        assert_eq!(obj[*name], 1000 + i as u64 + 1, "field {name} = {}", i + 1);
    }
    // Spot checks of the encoder: 1 → tag 08, 16 → 80 01, 45 → e8 02, 48 → 80 03.
    let m = MemInfo {
        memtotal: 1,
        swapfree: 2,
        hugepagesize: 4,
        directmap1g: 3,
        ..Default::default()
    };
    assert_bytes(
        &m,
        &[
            0x08, 0x01, 0x80, 0x01, 0x02, 0xe8, 0x02, 0x04, 0x80, 0x03, 0x03,
        ],
    );
}

#[test]
fn grpc_service_names() {
    use kforge_talos_api::proto::cluster::cluster_service_server;
    use kforge_talos_api::proto::machine::machine_service_server;
    assert_eq!(
        machine_service_server::SERVICE_NAME,
        "machine.MachineService"
    );
    assert_eq!(
        cluster_service_server::SERVICE_NAME,
        "cluster.ClusterService"
    );
}
