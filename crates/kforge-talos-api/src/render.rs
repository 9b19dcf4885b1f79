//! Output of the `kforge talos …` operator commands: plain-text tables laid out like
//! talosctl's, per-node error summaries, and JSON. Pure functions of the replies (the
//! current time is a parameter where ages are shown).

use std::time::SystemTime;

use serde::Serialize;

use crate::reply::code_name;
use crate::table::Table;
use crate::{
    ActorReply, ApplyConfigurationResult, EtcdMemberStatus, EtcdMembers, MemInfo, NodeReply,
    ServiceInfo, ServiceReply, UpgradeReply, Version,
};

/// Replies as a JSON array of `{"node", "reply"}` / `{"node", "error"}` objects.
pub fn to_json<T: Serialize>(replies: &[NodeReply<T>]) -> serde_json::Value {
    // Serializing these types cannot fail: no maps with non-string keys, no custom errors.
    serde_json::to_value(replies).unwrap_or(serde_json::Value::Null)
}

/// [`to_json`], pretty-printed with a trailing newline.
pub fn to_json_string<T: Serialize>(replies: &[NodeReply<T>]) -> String {
    let mut s = serde_json::to_string_pretty(&to_json(replies)).unwrap_or_default();
    s.push('\n');
    s
}

/// The per-node failures, for stderr; `None` when every node succeeded.
pub fn node_errors<T>(replies: &[NodeReply<T>]) -> Option<String> {
    let failures: Vec<_> = replies
        .iter()
        .filter_map(|r| r.result.as_ref().err().map(|e| (&r.node, e)))
        .collect();
    if failures.is_empty() {
        return None;
    }
    let mut out = format!(
        "WARNING: {} error{} occurred:\n",
        failures.len(),
        if failures.len() == 1 { "" } else { "s" }
    );
    for (node, e) in failures {
        match e.code {
            Some(code) => out.push_str(&format!(
                "\t* {node}: {} ({})\n",
                e.message,
                code_name(code)
            )),
            None => out.push_str(&format!("\t* {node}: {}\n", e.message)),
        }
    }
    Some(out)
}

fn ok_rows<T>(replies: &[NodeReply<T>]) -> impl Iterator<Item = (&str, &T)> {
    replies
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|v| (r.node.as_str(), v)))
}

pub fn version_table(replies: &[NodeReply<Version>]) -> String {
    let mut t = Table::new(&[
        "NODE",
        "TAG",
        "SHA",
        "BUILT",
        "GO VERSION",
        "OS/ARCH",
        "PLATFORM",
        "RBAC",
    ]);
    for (node, v) in ok_rows(replies) {
        t.row(vec![
            node.into(),
            v.tag.clone(),
            v.sha.clone(),
            v.built.clone(),
            v.go_version.clone(),
            format!("{}/{}", v.os, v.arch),
            v.platform
                .as_ref()
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            match v.rbac {
                Some(true) => "enabled".into(),
                Some(false) => "disabled".into(),
                None => String::new(),
            },
        ]);
    }
    t.render()
}

pub fn hostname_table(replies: &[NodeReply<String>]) -> String {
    let mut t = Table::new(&["NODE", "HOSTNAME"]);
    for (node, h) in ok_rows(replies) {
        t.row(vec![node.into(), h.clone()]);
    }
    t.render()
}

/// Go's `time.Duration.String()` for whole seconds (`1h2m3s`, `45s`, `0s`).
pub(crate) fn go_duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// Services as talosctl lists them: health `OK`/`Fail`/`?`, age and text of the last event.
pub fn services_table(replies: &[NodeReply<Vec<ServiceInfo>>], now: SystemTime) -> String {
    let mut t = Table::new(&[
        "NODE",
        "SERVICE",
        "STATE",
        "HEALTH",
        "LAST CHANGE",
        "LAST EVENT",
    ]);
    for (node, services) in ok_rows(replies) {
        for s in services {
            let health = if s.health.unknown {
                "?"
            } else if s.health.healthy {
                "OK"
            } else {
                "Fail"
            };
            let last = s.events.last();
            let age = last
                .and_then(|e| e.ts)
                .map(|ts| {
                    let secs = now.duration_since(ts).map(|d| d.as_secs()).unwrap_or(0);
                    format!("{} ago", go_duration(secs))
                })
                .unwrap_or_default();
            t.row(vec![
                node.into(),
                s.id.clone(),
                s.state.clone(),
                health.into(),
                age,
                last.map(|e| e.msg.clone()).unwrap_or_default(),
            ]);
        }
    }
    t.render()
}

pub fn service_reply_table(replies: &[NodeReply<ServiceReply>]) -> String {
    let mut t = Table::new(&["NODE", "RESPONSE"]);
    for (node, r) in ok_rows(replies) {
        t.row(vec![node.into(), r.resp.clone()]);
    }
    t.render()
}

pub fn etcd_members_table(replies: &[NodeReply<EtcdMembers>]) -> String {
    let mut t = Table::new(&[
        "NODE",
        "ID",
        "HOSTNAME",
        "PEER URLS",
        "CLIENT URLS",
        "LEARNER",
    ]);
    for (node, members) in ok_rows(replies) {
        for m in &members.members {
            t.row(vec![
                node.into(),
                format!("{:016x}", m.id),
                m.hostname.clone(),
                m.peer_urls.join(","),
                m.client_urls.join(","),
                m.is_learner.to_string(),
            ]);
        }
    }
    t.render()
}

/// go-humanize `Bytes`: SI units, one decimal below 10.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let mut exp = 0usize;
    let mut scaled = n as f64;
    while scaled >= 1000.0 && exp + 1 < UNITS.len() {
        scaled /= 1000.0;
        exp += 1;
    }
    let value = (scaled * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exp])
    } else {
        format!("{value:.0} {}", UNITS[exp])
    }
}

pub fn etcd_status_table(replies: &[NodeReply<EtcdMemberStatus>]) -> String {
    let mut t = Table::new(&[
        "NODE",
        "MEMBER",
        "DB SIZE",
        "IN USE",
        "LEADER",
        "RAFT INDEX",
        "RAFT TERM",
        "RAFT APPLIED INDEX",
        "LEARNER",
        "PROTOCOL",
        "STORAGE",
        "ERRORS",
    ]);
    for (node, s) in ok_rows(replies) {
        let size = u64::try_from(s.db_size).unwrap_or(0);
        let in_use = u64::try_from(s.db_size_in_use).unwrap_or(0);
        let percent = if size == 0 {
            0.0
        } else {
            in_use as f64 * 100.0 / size as f64
        };
        t.row(vec![
            node.into(),
            format!("{:016x}", s.member_id),
            human_bytes(size),
            format!("{} ({percent:.2}%)", human_bytes(in_use)),
            format!("{:016x}", s.leader),
            s.raft_index.to_string(),
            s.raft_term.to_string(),
            s.raft_applied_index.to_string(),
            s.is_learner.to_string(),
            s.protocol_version.clone(),
            s.storage_version.clone(),
            s.errors.join(", "),
        ]);
    }
    t.render()
}

/// talosctl's `memory` summary, in MiB (meminfo values are kB).
pub fn memory_table(replies: &[NodeReply<MemInfo>]) -> String {
    let mut t = Table::new(&[
        "NODE",
        "TOTAL",
        "USED",
        "FREE",
        "SHARED",
        "BUFFERS",
        "CACHE",
        "AVAILABLE",
    ]);
    for (node, m) in ok_rows(replies) {
        let used = m
            .memtotal
            .saturating_sub(m.memfree)
            .saturating_sub(m.cached)
            .saturating_sub(m.buffers);
        t.row(vec![
            node.into(),
            (m.memtotal / 1024).to_string(),
            (used / 1024).to_string(),
            (m.memfree / 1024).to_string(),
            (m.shmem / 1024).to_string(),
            (m.buffers / 1024).to_string(),
            (m.cached / 1024).to_string(),
            (m.memavailable / 1024).to_string(),
        ]);
    }
    t.render()
}

/// Every MemInfo field per node, `/proc/meminfo` style (`--verbose`).
pub fn memory_verbose(replies: &[NodeReply<MemInfo>]) -> String {
    let mut out = String::new();
    for (node, m) in ok_rows(replies) {
        out.push_str(&format!("NODE: {node}\n"));
        let mut t = Table::new(&["FIELD", "KB"]);
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(m) {
            for (name, value) in fields {
                t.row(vec![name, value.to_string()]);
            }
        }
        out.push_str(&t.render());
    }
    out
}

pub fn apply_config_table(replies: &[NodeReply<ApplyConfigurationResult>]) -> String {
    let mut t = Table::new(&["NODE", "MODE", "DETAILS"]);
    for (node, r) in ok_rows(replies) {
        t.row(vec![
            node.into(),
            r.mode
                .map(|m| m.name().to_string())
                .unwrap_or_else(|| "unknown".into()),
            r.mode_details.replace('\n', " "),
        ]);
    }
    t.render()
}

/// Config validation warnings the nodes returned, one line each, for stderr.
pub fn apply_config_warnings(replies: &[NodeReply<ApplyConfigurationResult>]) -> String {
    let mut out = String::new();
    for (node, r) in ok_rows(replies) {
        for w in &r.warnings {
            out.push_str(&format!("WARNING: {node}: {w}\n"));
        }
    }
    out
}

/// Reboot and Reset replies.
pub fn actor_table(replies: &[NodeReply<ActorReply>]) -> String {
    let mut t = Table::new(&["NODE", "ACTOR ID"]);
    for (node, r) in ok_rows(replies) {
        t.row(vec![node.into(), r.actor_id.clone()]);
    }
    t.render()
}

pub fn upgrade_table(replies: &[NodeReply<UpgradeReply>]) -> String {
    let mut t = Table::new(&["NODE", "ACK", "ACTOR ID"]);
    for (node, r) in ok_rows(replies) {
        t.row(vec![node.into(), r.ack.clone(), r.actor_id.clone()]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeError, ServiceEvent, ServiceHealth};
    use std::time::Duration;

    #[test]
    fn humanized_sizes_match_go_humanize() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(9), "9 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(20_480_000), "20 MB");
        assert_eq!(human_bytes(4_915_200), "4.9 MB");
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(59), "59s");
        assert_eq!(go_duration(61), "1m1s");
        assert_eq!(go_duration(3600), "1h0m0s");
    }

    #[test]
    fn services_table_shows_health_and_last_event() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let svc = |id: &str, unknown, healthy| ServiceInfo {
            id: id.into(),
            state: "Running".into(),
            health: ServiceHealth {
                unknown,
                healthy,
                last_message: String::new(),
                last_change: None,
            },
            events: vec![
                ServiceEvent {
                    msg: "Starting".into(),
                    state: "Starting".into(),
                    ts: Some(t0),
                },
                ServiceEvent {
                    msg: "Health check successful".into(),
                    state: "Running".into(),
                    ts: Some(t0 + Duration::from_secs(10)),
                },
            ],
        };
        let replies = vec![
            NodeReply::ok(
                "10.5.0.2",
                vec![svc("apid", false, true), svc("etcd", false, false)],
            ),
            NodeReply {
                node: "10.5.0.3".into(),
                result: Err(NodeError {
                    code: Some(tonic::Code::Unavailable),
                    message: "connection refused".into(),
                }),
            },
        ];
        let out = services_table(&replies, t0 + Duration::from_secs(100));
        assert_eq!(
            out,
            "NODE       SERVICE   STATE     HEALTH   LAST CHANGE   LAST EVENT\n\
             10.5.0.2   apid      Running   OK       1m30s ago     Health check successful\n\
             10.5.0.2   etcd      Running   Fail     1m30s ago     Health check successful\n"
        );
        assert_eq!(
            node_errors(&replies).unwrap(),
            "WARNING: 1 error occurred:\n\t* 10.5.0.3: connection refused (Unavailable)\n"
        );
        let json = to_json(&replies);
        assert_eq!(json[0]["reply"][0]["health"]["healthy"], true);
        assert_eq!(json[1]["error"]["code"], "Unavailable");
    }

    #[test]
    fn memory_summary_in_mib() {
        let m = MemInfo {
            memtotal: 4_096_000,
            memfree: 1_024_000,
            cached: 1_024_000,
            buffers: 102_400,
            shmem: 10_240,
            memavailable: 2_048_000,
            ..Default::default()
        };
        let out = memory_table(&[NodeReply::ok("n1", m)]);
        assert_eq!(
            out.lines().nth(1).unwrap(),
            "n1     4000    1900   1000   10       100       1000    2000"
        );
        let verbose = memory_verbose(&[NodeReply::ok("n1", m)]);
        assert!(verbose.contains("memtotal            4096000"), "{verbose}");
        assert!(verbose.contains("directmap1g         0"), "{verbose}");
        assert_eq!(verbose.lines().count(), 1 + 1 + 48);
    }
}
