//! The executor against the fake cluster, on tokio's paused clock (minutes of cluster life
//! run in milliseconds): the happy path, a kill at every event then a rerun, unreachable
//! nodes, a control-plane node crashing during bootstrap, "already bootstrapped" answers,
//! wrong credentials, and tuning that does not match.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kforge_deploy::event::{CollectEvents, Event, EventSink, Phase, Status};
use kforge_deploy::execute::{DeployError, execute, plan_cluster, up};
use kforge_deploy::fake::FakeCluster;
use kforge_deploy::plan::{BootstrapPlan, NodeAction};
use kforge_deploy::state::{BootstrapEvidence, StateStore};
use support::{CLUSTER, Fakes, Workspace, configured_cluster, desired, fresh_cluster};
use tokio::sync::Notify;

fn assert_fully_deployed(ws: &Workspace, cluster: &FakeCluster) {
    let d = desired();
    let state = ws.state().load(CLUSTER).unwrap();
    for n in d.nodes() {
        assert_eq!(
            state.nodes[&n.node.hostname].fingerprint,
            *n.fingerprint(),
            "{}",
            n.node.hostname
        );
        assert_eq!(
            cluster.running_config(&n.node.hostname).unwrap().expose(),
            n.config().expose()
        );
    }
    assert!(state.bootstrap.completed.is_some());
    assert!(state.kubeconfig.is_some());
    assert!(state.manifests.is_some());
    assert!(state.tuning.contains_key("solana-validator"));
    assert_eq!(cluster.bootstrap_successes(), 1, "exactly one etcd cluster");
    assert_eq!(
        cluster.etcd_members(),
        ["cp-1", "cp-2", "cp-3"],
        "every control-plane node joined"
    );
    let objects = cluster.objects();
    assert!(objects.contains_key("PriorityClass/solana-critical"));
    assert!(objects.contains_key("StorageClass/local-nvme-ledger"));
    assert_eq!(
        objects["PriorityClass/solana-critical"]["metadata"]["managedFields"][0]["manager"],
        "kforge"
    );
    let kubeconfig = support::path_text(&ws.kubeconfig_path());
    assert!(kforge_deploy::kubeconfig::has_context(&kubeconfig, CLUSTER));
}

#[tokio::test(start_paused = true)]
async fn happy_path_3_plus_1_then_rerun_is_a_noop() {
    let ws = Workspace::new();
    let cluster = fresh_cluster();
    let fakes = Fakes::of(&cluster);
    let state = ws.state();
    let events = CollectEvents::new();
    let (plan, report) = up(&desired(), fakes.apis(&state), &events, &ws.up_options())
        .await
        .unwrap();
    assert_eq!(plan.bootstrap.bootstrap_node(), Some("cp-1"));
    assert!(report.changed);
    assert_fully_deployed(&ws, &cluster);
    assert_eq!(
        cluster
            .bootstrap_calls()
            .iter()
            .filter(|n| *n != "cp-1")
            .count(),
        0
    );
    for (h, _, _) in support::NODES {
        assert_eq!(cluster.insecure_applies(h), 1, "{h}");
        assert_eq!(cluster.authenticated_applies(h), 0, "{h}");
    }
    let state_file = ws.state().path().to_path_buf();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for p in [&state_file, &ws.kubeconfig_path()] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }
    // The event stream covers every phase in order, and nothing in it is secret.
    let phases: Vec<Phase> = events
        .events()
        .iter()
        .filter(|e| e.status == Status::Done)
        .map(|e| e.phase)
        .fold(Vec::new(), |mut v, p| {
            if v.last() != Some(&p) {
                v.push(p);
            }
            v
        });
    assert_eq!(
        phases,
        [
            Phase::Observe,
            Phase::Apply,
            Phase::Apid,
            Phase::Bootstrap,
            Phase::Etcd,
            Phase::Kubeconfig,
            Phase::Kubernetes,
            Phase::Manifests,
            Phase::Tuning
        ]
    );
    for e in events.events() {
        let line = e.to_json_line();
        assert!(
            !line.contains("s3cret") && !line.contains("RkFLRSBLRVk"),
            "{line}"
        );
    }
    // The state file holds no secrets either.
    let text = std::fs::read_to_string(&state_file).unwrap();
    assert!(!text.contains("s3cret"));

    // Second run: nothing to do, nothing touched.
    let events = CollectEvents::new();
    let (plan, report) = up(&desired(), fakes.apis(&state), &events, &ws.up_options())
        .await
        .unwrap();
    assert!(plan.is_noop(), "{plan}");
    assert!(!report.changed);
    assert!(plan.to_string().contains("Nothing to do"));
    for (h, _, _) in support::NODES {
        assert_eq!(cluster.insecure_applies(h), 1);
        assert_eq!(cluster.authenticated_applies(h), 0);
    }
    assert_eq!(cluster.bootstrap_successes(), 1);
}

/// Sink that fires `kill` after the `at`-th event.
struct KillAfter {
    at: usize,
    seen: AtomicUsize,
    kill: Arc<Notify>,
}

impl EventSink for KillAfter {
    fn emit(&self, _event: Event) {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.at {
            self.kill.notify_one();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn killed_after_any_event_the_rerun_completes_with_one_bootstrap() {
    // How many events a full run emits.
    let total = {
        let ws = Workspace::new();
        let cluster = fresh_cluster();
        let fakes = Fakes::of(&cluster);
        let state = ws.state();
        let events = CollectEvents::new();
        up(&desired(), fakes.apis(&state), &events, &ws.up_options())
            .await
            .unwrap();
        events.events().len()
    };
    assert!(total > 30, "{total} events");
    eprintln!("a full run emits {total} events; killing after each of them");
    for at in 1..=total {
        let ws = Workspace::new();
        let cluster = fresh_cluster();
        let fakes = Fakes::of(&cluster);
        let state = ws.state();
        let kill = Arc::new(Notify::new());
        let sink = KillAfter {
            at,
            seen: AtomicUsize::new(0),
            kill: kill.clone(),
        };
        let options = ws.up_options();
        let d = desired();
        let first = up(&d, fakes.apis(&state), &sink, &options);
        tokio::select! {
            r = first => { r.unwrap(); }
            _ = kill.notified() => {}
        }
        // Time passes while nobody watches (the nodes keep booting).
        tokio::time::sleep(Duration::from_secs(7)).await;
        let events = CollectEvents::new();
        let rerun = up(&desired(), fakes.apis(&state), &events, &options).await;
        if let Err(e) = &rerun {
            panic!("rerun after a kill at event {at} failed: {e}");
        }
        assert_fully_deployed(&ws, &cluster);
        let calls = cluster.bootstrap_calls();
        assert!(
            calls.iter().all(|c| c == "cp-1"),
            "kill at {at}: bootstrap calls {calls:?}"
        );
        // And a third run changes nothing.
        let (plan, report) = up(
            &desired(),
            fakes.apis(&state),
            &CollectEvents::new(),
            &options,
        )
        .await
        .unwrap();
        assert!(plan.is_noop() && !report.changed, "kill at {at}: {plan}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_that_never_answers_is_named_and_the_others_are_applied() {
    let ws = Workspace::new();
    let cluster = fresh_cluster();
    cluster.take_down("solana-validator", None);
    let fakes = Fakes::of(&cluster);
    let state = ws.state();
    let events = CollectEvents::new();
    let err = up(&desired(), fakes.apis(&state), &events, &ws.up_options())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, DeployError::Apply { ref failures, total: 4 } if failures.len() == 1),
        "{text}"
    );
    assert!(
        text.contains(
            "solana-validator (10.0.1.20): timed out after 10m waiting for solana-validator \
             (10.0.1.20) to accept its machine config; last seen: ApplyConfiguration"
        ) || text.contains("timed out after 10m waiting for solana-validator (10.0.1.20) to accept its machine config; last seen: Version on solana-validator (10.0.1.20): the node is unreachable"),
        "{text}"
    );
    for h in ["cp-1", "cp-2", "cp-3"] {
        assert_eq!(cluster.insecure_applies(h), 1, "{h} applied regardless");
    }
    assert!(
        cluster.bootstrap_calls().is_empty(),
        "no bootstrap after a failed apply"
    );
    let failed: Vec<Event> = events
        .events()
        .into_iter()
        .filter(|e| e.status == Status::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].node.as_deref(), Some("solana-validator"));
    // The state remembers the three applied nodes.
    let s = ws.state().load(CLUSTER).unwrap();
    assert_eq!(s.nodes.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_node_that_comes_back_late_is_waited_for() {
    let ws = Workspace::new();
    let cluster = fresh_cluster();
    cluster.take_down("cp-3", Some(Duration::from_secs(240)));
    let fakes = Fakes::of(&cluster);
    let state = ws.state();
    let (plan, _) = up(
        &desired(),
        fakes.apis(&state),
        &CollectEvents::new(),
        &ws.up_options(),
    )
    .await
    .unwrap();
    assert!(matches!(
        plan.node("cp-3").unwrap().action,
        NodeAction::ApplyWhenReachable { .. }
    ));
    assert_fully_deployed(&ws, &cluster);
}

#[tokio::test(start_paused = true)]
async fn control_plane_node_crashing_during_bootstrap() {
    let ws = Workspace::new();
    let cluster = fresh_cluster();
    // cp-1 starts etcd, then drops the connection and is gone for a minute.
    cluster.crash_on_bootstrap("cp-1", Duration::from_secs(60));
    let fakes = Fakes::of(&cluster);
    let state = ws.state();
    let events = CollectEvents::new();
    up(&desired(), fakes.apis(&state), &events, &ws.up_options())
        .await
        .unwrap();
    assert_fully_deployed(&ws, &cluster);
    let calls = cluster.bootstrap_calls();
    assert!(
        calls.len() >= 2 && calls.iter().all(|c| c == "cp-1"),
        "{calls:?}"
    );
    let marker = ws
        .state()
        .load(CLUSTER)
        .unwrap()
        .bootstrap
        .completed
        .unwrap();
    assert_eq!(marker.node, "cp-1");
    assert_eq!(marker.evidence, BootstrapEvidence::AlreadyBootstrapped);
    assert!(events.events().iter().any(|e| e.phase == Phase::Bootstrap
        && e.status == Status::Waiting
        && e.message.contains("unreachable")));
}

#[tokio::test(start_paused = true)]
async fn bootstrap_reply_lost_and_process_killed_resumes_on_the_same_node() {
    let ws = Workspace::new();
    let cluster = fresh_cluster();
    cluster.hang_after_bootstrap("cp-1");
    let fakes = Fakes::of(&cluster);
    let state = ws.state();
    // Kill the run while it waits for the Bootstrap reply (Ctrl-C).
    let d = desired();
    let sink = CollectEvents::new();
    let options = ws.up_options();
    let run = up(&d, fakes.apis(&state), &sink, &options);
    let killed = tokio::time::timeout(Duration::from_secs(600), async {
        tokio::select! {
            r = run => Some(r),
            _ = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if cluster.bootstrap_successes() == 1 { break; }
                }
            } => None,
        }
    })
    .await
    .unwrap();
    assert!(killed.is_none(), "the run was killed mid-bootstrap");
    let s = ws.state().load(CLUSTER).unwrap();
    assert_eq!(s.bootstrap.intent.as_ref().unwrap().node, "cp-1");
    assert!(
        s.bootstrap.completed.is_none(),
        "the marker was not written yet"
    );

    let (plan, _) = up(
        &desired(),
        fakes.apis(&state),
        &CollectEvents::new(),
        &ws.up_options(),
    )
    .await
    .unwrap();
    // Either etcd already listed members when planning (recorded), or the resume found them.
    assert!(
        matches!(
            plan.bootstrap,
            BootstrapPlan::RecordExisting { .. } | BootstrapPlan::Bootstrap { resume: true, .. }
        ),
        "{plan}"
    );
    assert_fully_deployed(&ws, &cluster);
}

#[tokio::test(start_paused = true)]
async fn already_bootstrapped_cluster_is_recorded_not_bootstrapped() {
    let ws = Workspace::new();
    let cluster = configured_cluster();
    cluster.bootstrap_externally("cp-2");
    let fakes = Fakes::of(&cluster);
    let state = ws.state();
    let (plan, _) = up(
        &desired(),
        fakes.apis(&state),
        &CollectEvents::new(),
        &ws.up_options(),
    )
    .await
    .unwrap();
    assert!(
        matches!(plan.bootstrap, BootstrapPlan::RecordExisting { .. }),
        "{plan}"
    );
    assert!(cluster.bootstrap_calls().is_empty());
    assert_eq!(cluster.bootstrap_successes(), 0);
    let marker = ws
        .state()
        .load(CLUSTER)
        .unwrap()
        .bootstrap
        .completed
        .unwrap();
    assert!(matches!(
        marker.evidence,
        BootstrapEvidence::MembersObserved { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn members_appearing_after_planning_stop_the_bootstrap() {
    let ws = Workspace::new();
    let cluster = configured_cluster();
    let fakes = Fakes::of(&cluster);
    let state = ws.state();
    let options = ws.up_options();
    let plan = plan_cluster(
        &desired(),
        fakes.apis(&state),
        &CollectEvents::new(),
        &options.plan,
        &options.observe,
    )
    .await
    .unwrap();
    assert_eq!(plan.bootstrap.bootstrap_node(), Some("cp-1"));
    // Someone bootstraps between `kforge plan` and `kforge up --plan`.
    cluster.bootstrap_externally("cp-3");
    execute(
        &plan,
        &desired(),
        fakes.apis(&state),
        &CollectEvents::new(),
        &options.execute,
    )
    .await
    .unwrap();
    assert!(
        cluster.bootstrap_calls().is_empty(),
        "the member check ran first"
    );
    assert_eq!(cluster.bootstrap_successes(), 0);
}

#[tokio::test(start_paused = true)]
async fn already_exists_counts_only_with_members() {
    let ws = Workspace::new();
    let cluster = configured_cluster();
    // A stale etcd data directory on cp-1 but no etcd cluster anywhere.
    cluster.set_etcd_data("cp-1");
    let fakes = Fakes::of(&cluster);
    let state = ws.state();
    let err = up(
        &desired(),
        fakes.apis(&state),
        &CollectEvents::new(),
        &ws.up_options(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, DeployError::BootstrapUnconfirmed { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "cp-1 (10.0.1.11) answered that etcd is already bootstrapped, but etcd listed no \
         members within 2m; hint: look at the etcd service on the node (`kforge health`); \
         kforge does not bootstrap again"
    );
    let s = ws.state().load(CLUSTER).unwrap();
    assert!(s.bootstrap.completed.is_none(), "no marker without members");
    assert_eq!(cluster.bootstrap_calls(), ["cp-1"]);
}

#[tokio::test(start_paused = true)]
async fn wrong_credentials_on_a_configured_cluster_block_everything() {
    let ws = Workspace::new();
    let cluster = configured_cluster();
    cluster.set_credentials_ok(false);
    let fakes = Fakes::of(&cluster);
    let state = ws.state();
    let err = up(
        &desired(),
        fakes.apis(&state),
        &CollectEvents::new(),
        &ws.up_options(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DeployError::Blocked { .. }), "{text}");
    assert!(
        text.contains("rejected kforge's client certificate"),
        "{text}"
    );
    assert!(
        text.contains("hint: check that the talosconfig belongs to this cluster"),
        "{text}"
    );
    assert!(cluster.bootstrap_calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn wrong_credentials_after_maintenance_apply_stop_before_bootstrap() {
    let ws = Workspace::new();
    let cluster = fresh_cluster();
    cluster.set_credentials_ok(false);
    let fakes = Fakes::of(&cluster);
    let state = ws.state();
    let err = up(
        &desired(),
        fakes.apis(&state),
        &CollectEvents::new(),
        &ws.up_options(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, DeployError::Nodes { step: "apid", .. }),
        "{text}"
    );
    assert!(text.starts_with("3 of 3 control-plane nodes did not come up: cp-1 (10.0.1.11): Version on cp-1 (10.0.1.11): the node rejected kforge's client certificate"), "{text}");
    assert!(cluster.bootstrap_calls().is_empty());
    // It failed fast: no ten-minute wait on a rejected certificate.
    assert!(tokio::time::Instant::now().elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn nodes_still_installing_after_the_insecure_apply_are_waited_for() {
    // Talos keeps serving the maintenance API (self-signed) while it installs: the apid
    // step must wait, not take the certificate for another cluster's.
    let ws = Workspace::new();
    let mut t = support::timings();
    t.install = Duration::from_secs(20);
    let cluster = FakeCluster::new(
        support::CLUSTER,
        Some(support::VIP),
        support::NODES
            .iter()
            .map(|(h, a, r)| support::fake_spec(h, a, *r))
            .collect(),
        t,
    );
    let fakes = Fakes::of(&cluster);
    let state = ws.state();
    let events = CollectEvents::new();
    up(&desired(), fakes.apis(&state), &events, &ws.up_options())
        .await
        .unwrap();
    assert_fully_deployed(&ws, &cluster);
    assert!(events.events().iter().any(|e| e.phase == Phase::Apid
        && e.status == Status::Waiting
        && e.message.contains("still in maintenance mode")));
}

#[tokio::test(start_paused = true)]
async fn a_changed_config_is_applied_authenticated_with_mode_auto() {
    let ws = Workspace::new();
    let cluster = fresh_cluster();
    let fakes = Fakes::of(&cluster);
    let state = ws.state();
    up(
        &desired(),
        fakes.apis(&state),
        &CollectEvents::new(),
        &ws.up_options(),
    )
    .await
    .unwrap();
    // The operator changes cp-2's config.
    let nodes = support::NODES
        .iter()
        .map(|(h, a, r)| {
            kforge_deploy::DesiredNode::new(
                kforge_deploy::NodeRef::new(*h, *a, *r),
                support::config(h, *r, if *h == "cp-2" { 9 } else { 0 }),
                if *r == kforge_deploy::Role::Worker {
                    support::worker_expectations()
                } else {
                    vec![]
                },
            )
        })
        .collect();
    let changed =
        kforge_deploy::DesiredCluster::new(CLUSTER, nodes, None, support::manifests()).unwrap();
    let (plan, report) = up(
        &changed,
        fakes.apis(&state),
        &CollectEvents::new(),
        &ws.up_options(),
    )
    .await
    .unwrap();
    assert!(report.changed);
    assert!(matches!(
        plan.node("cp-2").unwrap().action,
        NodeAction::ApplyAuthenticated { .. }
    ));
    assert!(matches!(plan.bootstrap, BootstrapPlan::Done { .. }));
    assert_eq!(cluster.authenticated_applies("cp-2"), 1);
    assert_eq!(cluster.authenticated_applies("cp-1"), 0);
    assert_eq!(cluster.bootstrap_successes(), 1);
    assert_eq!(
        cluster.running_config("cp-2").unwrap().expose(),
        changed.node("cp-2").unwrap().config().expose()
    );
}

#[tokio::test(start_paused = true)]
async fn tuning_mismatches_are_all_reported() {
    let ws = Workspace::new();
    let mut specs: Vec<_> = support::NODES
        .iter()
        .map(|(h, a, r)| support::fake_spec(h, a, *r))
        .collect();
    specs[3].cmdline = "talos.platform=metal hugepagesz=1G hugepages=50000".into();
    specs[3].hugepages_total = 100;
    specs[3].kubelet_config = None; // falls back to the machine config: no cpuManagerPolicy
    let cluster = FakeCluster::new(CLUSTER, Some(support::VIP), specs, support::timings());
    let fakes = Fakes::of(&cluster);
    let state = ws.state();
    let err = up(
        &desired(),
        fakes.apis(&state),
        &CollectEvents::new(),
        &ws.up_options(),
    )
    .await
    .unwrap_err();
    let DeployError::Tuning {
        mismatches,
        results,
    } = &err
    else {
        panic!("{err}")
    };
    insta::assert_snapshot!(mismatches.join("\n"));
    assert_eq!(results.len(), 1);
    assert!(
        !ws.state()
            .load(CLUSTER)
            .unwrap()
            .tuning
            .contains_key("solana-validator")
    );
}
