//! The planner: snapshots of rendered plans for the situations an operator meets, and
//! property tests over arbitrary observed states for the bootstrap rules.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use kforge_deploy::desired::{
    DesiredCluster, DesiredNode, Fingerprint, NodeRef, Role, expectations_fingerprint,
    manifests_fingerprint,
};
use kforge_deploy::observe::{EtcdObservation, NodeObservation, Observation, RunningConfig};
use kforge_deploy::plan::{
    BootstrapPlan, KubeconfigOutput, KubeconfigPlan, ManifestsPlan, NodeAction, Plan, PlanOptions,
    TuningAction, plan,
};
use kforge_deploy::state::{
    AppliedHow, BootstrapEvidence, BootstrapIntent, BootstrapMarker, DeployState, KubeconfigRecord,
    ManifestsRecord, NodeRecord, TuningRecord,
};
use proptest::prelude::*;
use support::{CLUSTER, NODES, config, desired};

fn options() -> PlanOptions {
    PlanOptions {
        kubeconfig: KubeconfigOutput::Merge {
            path: PathBuf::from("/home/op/.kube/config"),
            context: CLUSTER.into(),
        },
    }
}

fn configured(hostname: &str, role: Role, revision: u32, etcd: EtcdObservation) -> NodeObservation {
    NodeObservation::Configured {
        version: "v1.12.0".into(),
        running: RunningConfig::Known(config(hostname, role, revision)),
        etcd: if role == Role::ControlPlane {
            etcd
        } else {
            EtcdObservation::NotApplicable
        },
    }
}

fn observation(f: impl Fn(&str, Role) -> NodeObservation) -> Observation {
    Observation {
        nodes: NODES
            .iter()
            .map(|(h, _, r)| (h.to_string(), f(h, *r)))
            .collect(),
        kubeconfig_present: false,
    }
}

fn members() -> EtcdObservation {
    EtcdObservation::Members(vec!["cp-1".into(), "cp-2".into(), "cp-3".into()])
}

fn not_running() -> EtcdObservation {
    EtcdObservation::Unavailable(
        "EtcdMemberList on cp-x: the node is not ready yet: etcd is not running".into(),
    )
}

fn at(s: &str) -> String {
    format!("2026-01-01T00:{s}Z")
}

fn render(p: &Plan) -> String {
    p.to_string()
}

#[test]
fn fresh_cluster_all_in_maintenance_mode() {
    let d = desired();
    let obs = observation(|_, _| NodeObservation::Maintenance);
    let p = plan(&d, &obs, &DeployState::new(CLUSTER), &options()).unwrap();
    assert_eq!(p.bootstrap.bootstrap_node(), Some("cp-1"));
    assert!(
        p.nodes
            .iter()
            .all(|n| matches!(n.action, NodeAction::ApplyInsecure { .. }))
    );
    insta::assert_snapshot!(render(&p));
    insta::assert_snapshot!("fresh_cluster_json", p.to_json());
}

#[test]
fn half_applied_cluster() {
    let d = desired();
    // cp-1 and cp-2 took their configs (cp-2 an older revision), cp-3 is still in
    // maintenance mode, the worker is switched off.
    let obs = observation(|h, r| {
        match h {
        "cp-1" => configured(h, r, 0, not_running()),
        "cp-2" => configured(h, r, 7, not_running()),
        "cp-3" => NodeObservation::Maintenance,
        _ => NodeObservation::Unreachable("ApplyConfiguration on solana-validator (10.0.1.20): the node is unreachable: connection refused".into()),
    }
    });
    let mut state = DeployState::new(CLUSTER);
    state.nodes.insert(
        "cp-1".into(),
        NodeRecord {
            address: "10.0.1.11".into(),
            fingerprint: d.node("cp-1").unwrap().fingerprint().clone(),
            how: AppliedHow::Maintenance,
            at: at("01:00"),
        },
    );
    let p = plan(&d, &obs, &state, &options()).unwrap();
    let diff = match &p.node("cp-2").unwrap().action {
        NodeAction::ApplyAuthenticated { diff, .. } => diff.clone(),
        other => panic!("cp-2: {other:?}"),
    };
    assert!(
        diff.contains("-    vm.max_map_count: \"1048583\"")
            && diff.contains("+    vm.max_map_count: \"1048576\""),
        "{diff}"
    );
    let text = render(&p);
    for secret in ["s3cret", "LS0tUFJJVkFURS0tLQ=="] {
        assert!(
            !text.contains(secret),
            "secret {secret} in the plan:\n{text}"
        );
        assert!(!p.to_json().contains(secret));
    }
    insta::assert_snapshot!(text);
}

#[test]
fn already_bootstrapped_by_someone_else() {
    let d = desired();
    let obs = observation(|h, r| {
        configured(
            h,
            r,
            0,
            if h == "cp-2" {
                members()
            } else {
                not_running()
            },
        )
    });
    let p = plan(&d, &obs, &DeployState::new(CLUSTER), &options()).unwrap();
    assert_eq!(
        p.bootstrap,
        BootstrapPlan::RecordExisting {
            reported_by: "cp-2".into(),
            members: vec!["cp-1".into(), "cp-2".into(), "cp-3".into()]
        }
    );
    insta::assert_snapshot!(render(&p));
}

#[test]
fn crash_after_bootstrap_intent_recorded() {
    let d = desired();
    let obs = observation(|h, r| configured(h, r, 0, not_running()));
    let mut state = DeployState::new(CLUSTER);
    for (h, a, _) in NODES {
        state.nodes.insert(
            h.to_string(),
            NodeRecord {
                address: a.to_string(),
                fingerprint: d.node(h).unwrap().fingerprint().clone(),
                how: AppliedHow::Maintenance,
                at: at("01:00"),
            },
        );
    }
    // The intent names cp-2 although cp-1 has the lowest address: resume there only.
    state.bootstrap.intent = Some(BootstrapIntent {
        node: "cp-2".into(),
        address: "10.0.1.12".into(),
        at: at("03:00"),
    });
    let p = plan(&d, &obs, &state, &options()).unwrap();
    assert!(
        matches!(&p.bootstrap, BootstrapPlan::Bootstrap { node, resume: true, .. } if node == "cp-2")
    );
    insta::assert_snapshot!(render(&p));
}

fn complete_state(d: &DesiredCluster) -> DeployState {
    let mut state = DeployState::new(CLUSTER);
    for n in d.nodes() {
        state.nodes.insert(
            n.node.hostname.clone(),
            NodeRecord {
                address: n.node.address.clone(),
                fingerprint: n.fingerprint().clone(),
                how: AppliedHow::Maintenance,
                at: at("01:00"),
            },
        );
        if !n.expectations.is_empty() {
            state.tuning.insert(
                n.node.hostname.clone(),
                TuningRecord {
                    fingerprint: expectations_fingerprint(&n.expectations),
                    at: at("09:00"),
                },
            );
        }
    }
    state.bootstrap.intent = Some(BootstrapIntent {
        node: "cp-1".into(),
        address: "10.0.1.11".into(),
        at: at("03:00"),
    });
    state.bootstrap.completed = Some(BootstrapMarker {
        node: "cp-1".into(),
        at: at("03:01"),
        evidence: BootstrapEvidence::Bootstrapped,
    });
    state.kubeconfig = Some(KubeconfigRecord {
        path: PathBuf::from("/home/op/.kube/config"),
        context: Some(CLUSTER.into()),
        at: at("05:00"),
    });
    state.manifests = Some(ManifestsRecord {
        fingerprint: manifests_fingerprint(&d.manifests),
        objects: d.manifests.iter().map(|m| m.id()).collect(),
        at: at("08:00"),
    });
    state
}

#[test]
fn healthy_cluster_is_all_noops() {
    let d = desired();
    let mut obs = observation(|h, r| configured(h, r, 0, members()));
    obs.kubeconfig_present = true;
    let p = plan(&d, &obs, &complete_state(&d), &options()).unwrap();
    assert!(p.is_noop(), "{p}");
    insta::assert_snapshot!(render(&p));

    // Same cluster, but the kubeconfig context was deleted: only that is redone.
    obs.kubeconfig_present = false;
    let p = plan(&d, &obs, &complete_state(&d), &options()).unwrap();
    assert!(!p.is_noop());
    assert!(matches!(p.kubeconfig, KubeconfigPlan::Fetch { .. }));
    assert!(p.nodes.iter().all(|n| !n.action.is_change()));
    assert!(matches!(p.bootstrap, BootstrapPlan::Done { .. }));
}

#[test]
fn rejected_credentials_block_the_plan() {
    let d = desired();
    let obs = observation(|h, _| {
        NodeObservation::Rejected(format!(
            "Version on {h}: the node rejected kforge's client certificate"
        ))
    });
    let p = plan(&d, &obs, &DeployState::new(CLUSTER), &options()).unwrap();
    assert_eq!(p.blockers.len(), 5, "{p}");
    assert!(matches!(p.bootstrap, BootstrapPlan::Blocked { .. }));
    insta::assert_snapshot!(render(&p));
}

#[test]
fn bootstrap_node_from_the_cluster_file() {
    let d = support::desired_with(NODES, Some("cp-3"));
    let obs = observation(|_, _| NodeObservation::Maintenance);
    let p = plan(&d, &obs, &DeployState::new(CLUSTER), &options()).unwrap();
    assert!(
        matches!(&p.bootstrap, BootstrapPlan::Bootstrap { node, reason, .. } if node == "cp-3" && reason.contains("bootstrapNode"))
    );
    assert!(matches!(&p.kubeconfig, KubeconfigPlan::Fetch { from, .. } if from == "cp-3"));
}

#[test]
fn lowest_address_is_numeric_not_textual() {
    let d = support::desired_with(
        &[
            ("a", "10.0.1.100", Role::ControlPlane),
            ("b", "10.0.1.9", Role::ControlPlane),
            ("w", "10.0.1.2", Role::Worker),
        ],
        None,
    );
    let obs = Observation {
        nodes: ["a", "b", "w"]
            .iter()
            .map(|h| (h.to_string(), NodeObservation::Maintenance))
            .collect(),
        kubeconfig_present: false,
    };
    let p = plan(&d, &obs, &DeployState::new(CLUSTER), &options()).unwrap();
    assert_eq!(
        p.bootstrap.bootstrap_node(),
        Some("b"),
        "a worker is never chosen, and 9 < 100"
    );
}

#[test]
fn state_of_another_cluster_is_refused() {
    let d = desired();
    let obs = observation(|_, _| NodeObservation::Maintenance);
    let e = plan(&d, &obs, &DeployState::new("other"), &options()).unwrap_err();
    assert!(e.to_string().contains("belongs to cluster `other`"));
}

// ---------------------------------------------------------------- properties

#[derive(Clone, Debug)]
enum Obs {
    Unreachable,
    Rejected,
    Maintenance,
    /// Running config: 0 = the desired one, other = another revision, None = unreadable.
    Configured(Option<u32>, EtcdObs),
}

#[derive(Clone, Debug)]
enum EtcdObs {
    NoMembers,
    Members(Vec<usize>),
    Unavailable,
}

#[derive(Clone, Debug)]
struct Case {
    cps: usize,
    workers: usize,
    bootstrap_node: Option<usize>,
    obs: Vec<Obs>,
    marker: bool,
    intent: Option<usize>,
    permutation_seed: u64,
}

fn obs_strategy() -> impl Strategy<Value = Obs> {
    prop_oneof![
        Just(Obs::Unreachable),
        Just(Obs::Rejected),
        Just(Obs::Maintenance),
        (
            prop_oneof![Just(Some(0u32)), (1u32..3).prop_map(Some), Just(None)],
            prop_oneof![
                Just(EtcdObs::NoMembers),
                proptest::collection::vec(0usize..5, 1..4).prop_map(EtcdObs::Members),
                Just(EtcdObs::Unavailable)
            ]
        )
            .prop_map(|(c, e)| Obs::Configured(c, e)),
    ]
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (1usize..6, 0usize..4).prop_flat_map(|(cps, workers)| {
        let n = cps + workers;
        (
            Just(cps),
            Just(workers),
            proptest::option::of(0..cps),
            proptest::collection::vec(obs_strategy(), n),
            any::<bool>(),
            proptest::option::of(0..n + 1),
            any::<u64>(),
        )
            .prop_map(
                |(cps, workers, bootstrap_node, obs, marker, intent, permutation_seed)| Case {
                    cps,
                    workers,
                    bootstrap_node,
                    obs,
                    marker,
                    intent,
                    permutation_seed,
                },
            )
    })
}

fn hostname(i: usize, cps: usize) -> String {
    if i < cps {
        format!("cp-{i}")
    } else {
        format!("w-{}", i - cps)
    }
}

struct Built {
    desired: DesiredCluster,
    observation: Observation,
    state: DeployState,
}

fn build(c: &Case) -> Built {
    let n = c.cps + c.workers;
    // Addresses deliberately not in hostname order.
    let address = |i: usize| format!("10.0.{}.{}", (i * 7) % 5, 200 - i);
    let role = |i: usize| {
        if i < c.cps {
            Role::ControlPlane
        } else {
            Role::Worker
        }
    };
    let mut order: Vec<usize> = (0..n).collect();
    // A seeded shuffle: the cluster file's order must not matter.
    let mut seed = c.permutation_seed;
    for i in (1..n).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.swap(i, (seed >> 33) as usize % (i + 1));
    }
    let nodes = order
        .iter()
        .map(|&i| {
            let h = hostname(i, c.cps);
            DesiredNode::new(
                NodeRef::new(h.clone(), address(i), role(i)),
                config(&h, role(i), 0),
                vec![],
            )
        })
        .collect();
    let desired = DesiredCluster::new(
        CLUSTER,
        nodes,
        c.bootstrap_node.map(|b| hostname(b, c.cps)),
        support::manifests(),
    )
    .unwrap();
    let mut nodes = BTreeMap::new();
    for i in 0..n {
        let h = hostname(i, c.cps);
        let o = match &c.obs[i] {
            Obs::Unreachable => NodeObservation::Unreachable("down".into()),
            Obs::Rejected => NodeObservation::Rejected("bad certificate".into()),
            Obs::Maintenance => NodeObservation::Maintenance,
            Obs::Configured(rev, etcd) => NodeObservation::Configured {
                version: "v1.12.0".into(),
                running: match rev {
                    Some(r) => RunningConfig::Known(config(&h, role(i), *r)),
                    None => RunningConfig::Unreadable("Read failed".into()),
                },
                etcd: if i >= c.cps {
                    EtcdObservation::NotApplicable
                } else {
                    match etcd {
                        EtcdObs::NoMembers => EtcdObservation::Members(vec![]),
                        EtcdObs::Members(m) => {
                            EtcdObservation::Members(m.iter().map(|j| format!("cp-{j}")).collect())
                        }
                        EtcdObs::Unavailable => EtcdObservation::Unavailable("not running".into()),
                    }
                },
            },
        };
        nodes.insert(h, o);
    }
    let mut state = DeployState::new(CLUSTER);
    if let Some(i) = c.intent {
        // An index past the last node names a node that is not in the cluster.
        let h = if i < n {
            hostname(i, c.cps)
        } else {
            "gone".into()
        };
        state.bootstrap.intent = Some(BootstrapIntent {
            node: h,
            address: "x".into(),
            at: at("00:00"),
        });
    }
    if c.marker {
        state.bootstrap.completed = Some(BootstrapMarker {
            node: "cp-0".into(),
            at: at("00:01"),
            evidence: BootstrapEvidence::Bootstrapped,
        });
    }
    Built {
        desired,
        observation: Observation {
            nodes,
            kubeconfig_present: false,
        },
        state,
    }
}

fn any_cp_reports_members(b: &Built) -> bool {
    b.desired.control_planes().any(|cp| {
        matches!(b.observation.nodes.get(&cp.node.hostname), Some(NodeObservation::Configured { etcd, .. }) if etcd.has_members())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn bootstrap_rules(c in case_strategy()) {
        let b = build(&c);
        let p = plan(&b.desired, &b.observation, &b.state, &options()).unwrap();
        if let BootstrapPlan::Bootstrap { node, .. } = &p.bootstrap {
            // Never a worker, never an unknown node.
            let d = b.desired.node(node);
            prop_assert!(d.is_some_and(|d| d.node.role == Role::ControlPlane), "bootstrap on {node}");
            // Never when the state file says it is done.
            prop_assert!(!b.state.bootstrapped());
            // Never when any reachable control-plane node reports members.
            prop_assert!(!any_cp_reports_members(&b));
            // After a crash: only on the node of the recorded intent.
            if let Some(i) = &b.state.bootstrap.intent {
                prop_assert_eq!(&i.node, node);
            } else if let Some(bn) = &b.desired.bootstrap_node {
                prop_assert_eq!(bn, node);
            } else {
                let lowest = b.desired.control_planes().min_by(|x, y| kforge_deploy::desired::address_order(&x.node.address, &y.node.address)).unwrap();
                prop_assert_eq!(&lowest.node.hostname, node);
            }
        }
        if any_cp_reports_members(&b) && !b.state.bootstrapped() {
            let is_record = matches!(p.bootstrap, BootstrapPlan::RecordExisting { .. });
            prop_assert!(is_record);
        }
        // Blocked nodes are exactly the rejected ones, and they block the plan.
        for n in &p.nodes {
            let rejected = matches!(b.observation.nodes[&n.hostname], NodeObservation::Rejected(_));
            prop_assert_eq!(rejected, matches!(n.action, NodeAction::Blocked { .. }));
            if rejected { prop_assert!(!p.blockers.is_empty()); }
            // A node running the desired config is never re-applied.
            if let NodeObservation::Configured { running: RunningConfig::Known(c), .. } = &b.observation.nodes[&n.hostname] {
                let same = c.expose() == b.desired.node(&n.hostname).unwrap().config().expose();
                prop_assert_eq!(same, !n.action.is_change());
            }
        }
        // Deterministic, and the JSON form round-trips through serde_json::Value.
        let again = plan(&b.desired, &b.observation, &b.state, &options()).unwrap();
        prop_assert_eq!(&again, &p);
        prop_assert_eq!(again.to_string(), p.to_string());
        let json: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        prop_assert_eq!(json["cluster"].as_str(), Some(CLUSTER));
    }

    /// The cluster file's node order does not change the plan.
    #[test]
    fn plan_ignores_node_order(c in case_strategy(), seed in any::<u64>()) {
        let a = build(&c);
        let b = build(&Case { permutation_seed: seed, ..c.clone() });
        let pa = plan(&a.desired, &a.observation, &a.state, &options()).unwrap();
        let pb = plan(&b.desired, &b.observation, &b.state, &options()).unwrap();
        prop_assert_eq!(pa, pb);
    }

    /// Once a bootstrap was planned and recorded, no later plan bootstraps again,
    /// whatever the nodes report afterwards.
    #[test]
    fn never_plans_a_second_bootstrap(c in case_strategy(), later in case_strategy()) {
        let b = build(&c);
        let p = plan(&b.desired, &b.observation, &b.state, &options()).unwrap();
        let mut state = b.state.clone();
        match &p.bootstrap {
            BootstrapPlan::Bootstrap { node, .. } => {
                state.bootstrap.intent = Some(BootstrapIntent { node: node.clone(), address: "x".into(), at: at("00:00") });
                state.bootstrap.completed = Some(BootstrapMarker { node: node.clone(), at: at("00:01"), evidence: BootstrapEvidence::Bootstrapped });
            }
            _ => return Ok(()),
        }
        // Later observations of the same cluster (same shape, anything observed).
        let mut later = later;
        later.cps = c.cps;
        later.workers = c.workers;
        later.bootstrap_node = c.bootstrap_node;
        later.obs.resize(c.cps + c.workers, Obs::Maintenance);
        let lb = build(&later);
        let p2 = plan(&b.desired, &lb.observation, &state, &options()).unwrap();
        let done = matches!(p2.bootstrap, BootstrapPlan::Done { .. });
        prop_assert!(done);
    }
}

#[test]
fn unreadable_running_config_falls_back_to_the_state_file() {
    let d = desired();
    let obs = observation(|_, r| NodeObservation::Configured {
        version: "v1.12.0".into(),
        running: RunningConfig::Unreadable("Read failed".into()),
        etcd: if r == Role::ControlPlane {
            members()
        } else {
            EtcdObservation::NotApplicable
        },
    });
    let mut state = complete_state(&d);
    let p = plan(&d, &obs, &state, &options()).unwrap();
    assert!(
        p.nodes
            .iter()
            .all(|n| matches!(n.action, NodeAction::Unchanged { .. }))
    );
    state.nodes.get_mut("cp-2").unwrap().fingerprint = Fingerprint::of(b"older");
    let p = plan(&d, &obs, &state, &options()).unwrap();
    assert!(matches!(
        p.node("cp-2").unwrap().action,
        NodeAction::ApplyAuthenticated { running: None, .. }
    ));
    // Only the worker has tuning, and its config is unchanged: still verified.
    assert!(p.tuning.iter().all(|t| t.action == TuningAction::Unchanged));
    assert!(matches!(p.manifests, ManifestsPlan::Unchanged { .. }));
}
