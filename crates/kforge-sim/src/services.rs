//! The service table `ServiceList` reports: Talos' services with their state strings
//! (Initialized, Preparing, Waiting, Running, Stopping, Finished, Failed, Skipped,
//! Starting), event history and health. etcd's entry follows the real etcd process;
//! the others follow the node's boot.

use std::collections::BTreeMap;
use std::time::SystemTime;

use kforge_talos_api::proto::machine as pb;

/// Events kept per service (Talos keeps a bounded history too).
const MAX_EVENTS: usize = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceState {
    Initialized,
    Preparing,
    Waiting,
    Running,
    Stopping,
    Finished,
    Failed,
    Skipped,
    Starting,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Initialized => "Initialized",
            ServiceState::Preparing => "Preparing",
            ServiceState::Waiting => "Waiting",
            ServiceState::Running => "Running",
            ServiceState::Stopping => "Stopping",
            ServiceState::Finished => "Finished",
            ServiceState::Failed => "Failed",
            ServiceState::Skipped => "Skipped",
            ServiceState::Starting => "Starting",
        }
    }
}

#[derive(Clone, Debug)]
struct Event {
    msg: String,
    state: ServiceState,
    ts: SystemTime,
}

#[derive(Clone, Debug)]
struct Health {
    /// No health check has run yet.
    unknown: bool,
    healthy: bool,
    last_message: String,
    last_change: SystemTime,
}

#[derive(Clone, Debug)]
struct Record {
    state: ServiceState,
    events: Vec<Event>,
    health: Health,
    /// Whether the service has a health check (apid, etcd, kubelet… do; udevd does not).
    checked: bool,
}

/// Services of one node, by id.
#[derive(Clone, Debug, Default)]
pub struct ServiceTable {
    services: BTreeMap<String, Record>,
}

/// Services every node runs, and whether they report health.
const COMMON: &[(&str, bool)] = &[
    ("apid", true),
    ("auditd", false),
    ("containerd", true),
    ("cri", true),
    ("dashboard", false),
    ("kubelet", true),
    ("machined", true),
    ("syslogd", false),
    ("udevd", false),
];
/// Services only control-plane nodes run.
/// The API server and its companions are static pods on Talos; the simulator lists them
/// as services so that they can be watched and stopped through the Talos API.
const CONTROL_PLANE: &[(&str, bool)] = &[
    ("etcd", true),
    ("kube-apiserver", true),
    ("kube-controller-manager", true),
    ("kube-scheduler", true),
    ("trustd", true),
];

impl ServiceTable {
    /// The services of a configured node, all `Initialized`.
    pub fn for_node(control_plane: bool) -> Self {
        let now = SystemTime::now();
        let mut services = BTreeMap::new();
        let extra: &[(&str, bool)] = if control_plane { CONTROL_PLANE } else { &[] };
        for (id, checked) in COMMON.iter().chain(extra) {
            services.insert(
                id.to_string(),
                Record {
                    state: ServiceState::Initialized,
                    events: Vec::new(),
                    health: Health {
                        unknown: true,
                        healthy: false,
                        last_message: String::new(),
                        last_change: now,
                    },
                    checked: *checked,
                },
            );
        }
        ServiceTable { services }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.services.contains_key(id)
    }

    pub fn ids(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    pub fn state(&self, id: &str) -> Option<ServiceState> {
        self.services.get(id).map(|r| r.state)
    }

    /// Moves `id` to `state`, recording `msg` as an event (also when the state repeats,
    /// as Talos does for new messages).
    pub fn set(&mut self, id: &str, state: ServiceState, msg: impl Into<String>) {
        let Some(r) = self.services.get_mut(id) else {
            return;
        };
        let msg = msg.into();
        if r.state == state && r.events.last().is_some_and(|e| e.msg == msg) {
            return;
        }
        r.state = state;
        r.events.push(Event {
            msg,
            state,
            ts: SystemTime::now(),
        });
        if r.events.len() > MAX_EVENTS {
            let excess = r.events.len() - MAX_EVENTS;
            r.events.drain(..excess);
        }
        if state != ServiceState::Running {
            // A service that is not running has no health verdict.
            r.health.unknown = true;
            r.health.healthy = false;
        }
    }

    /// Records a health check result; a change of verdict becomes an event too.
    pub fn set_health(&mut self, id: &str, healthy: bool, message: impl Into<String>) {
        let Some(r) = self.services.get_mut(id) else {
            return;
        };
        if !r.checked {
            return;
        }
        let message = message.into();
        let changed = r.health.unknown || r.health.healthy != healthy;
        r.health.unknown = false;
        r.health.healthy = healthy;
        r.health.last_message = message.clone();
        if changed {
            r.health.last_change = SystemTime::now();
            let state = r.state;
            let msg = if healthy {
                "Health check successful".to_string()
            } else {
                format!("Health check failed: {message}")
            };
            r.events.push(Event {
                msg,
                state,
                ts: SystemTime::now(),
            });
        }
    }

    pub fn is_healthy(&self, id: &str) -> bool {
        self.services
            .get(id)
            .is_some_and(|r| !r.health.unknown && r.health.healthy)
    }

    pub fn to_proto(&self) -> Vec<pb::ServiceInfo> {
        self.services
            .iter()
            .map(|(id, r)| pb::ServiceInfo {
                id: id.clone(),
                state: r.state.as_str().to_string(),
                events: Some(pb::ServiceEvents {
                    events: r
                        .events
                        .iter()
                        .map(|e| pb::ServiceEvent {
                            msg: e.msg.clone(),
                            state: e.state.as_str().to_string(),
                            ts: Some(timestamp(e.ts)),
                        })
                        .collect(),
                }),
                health: Some(pb::ServiceHealth {
                    unknown: r.health.unknown,
                    healthy: r.health.healthy,
                    last_message: r.health.last_message.clone(),
                    last_change: Some(timestamp(r.health.last_change)),
                }),
            })
            .collect()
    }
}

pub(crate) fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_decide_services() {
        let cp = ServiceTable::for_node(true);
        assert!(cp.contains("etcd") && cp.contains("trustd") && cp.contains("kubelet"));
        let w = ServiceTable::for_node(false);
        assert!(!w.contains("etcd") && !w.contains("trustd") && w.contains("apid"));
    }

    #[test]
    fn states_events_and_health() {
        let mut t = ServiceTable::for_node(true);
        t.set("etcd", ServiceState::Preparing, "Running pre state");
        t.set(
            "etcd",
            ServiceState::Running,
            "Service started as goroutine",
        );
        t.set_health("etcd", true, "");
        assert!(t.is_healthy("etcd"));
        t.set(
            "etcd",
            ServiceState::Finished,
            "Service finished successfully",
        );
        assert!(!t.is_healthy("etcd"));
        let etcd = t.to_proto().into_iter().find(|s| s.id == "etcd").unwrap();
        assert_eq!(etcd.state, "Finished");
        let events = etcd.events.unwrap().events;
        let states: Vec<&str> = events.iter().map(|e| e.state.as_str()).collect();
        assert_eq!(states, ["Preparing", "Running", "Running", "Finished"]);
        assert_eq!(events[2].msg, "Health check successful");
    }
}
