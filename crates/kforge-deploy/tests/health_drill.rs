//! Health checks and the failover drill against a deployed fake cluster.

mod support;

use std::time::Duration;

use kforge_deploy::drill::{DrillError, DrillOptions, drill_failover};
use kforge_deploy::event::CollectEvents;
use kforge_deploy::execute::up;
use kforge_deploy::fake::FakeCluster;
use kforge_deploy::health::{CheckStatus, HealthError, HealthOptions, check_names, health};
use kforge_deploy::{KubeApi, NodeApi};
use support::{Fakes, Workspace, desired, fresh_cluster};

/// A fully deployed fake cluster.
async fn deployed() -> (Workspace, FakeCluster) {
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
    (ws, cluster)
}

fn health_options() -> HealthOptions {
    HealthOptions {
        wait: Duration::from_secs(600),
        ..HealthOptions::default()
    }
}

#[tokio::test(start_paused = true)]
async fn healthy_cluster_report() {
    let (_ws, cluster) = deployed().await;
    let nodes = cluster.node_api();
    let kube = cluster.kube();
    let events = CollectEvents::new();
    let report = health(
        &desired().node_refs(),
        &nodes,
        kube.as_ref(),
        &events,
        &health_options(),
    )
    .await
    .unwrap();
    assert!(report.healthy());
    let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, check_names());
    insta::assert_snapshot!(report.to_string());
    insta::assert_json_snapshot!(report);
}

#[tokio::test(start_paused = true)]
async fn too_little_memory_fails_at_once_and_later_checks_are_not_run() {
    let (_ws, cluster) = deployed().await;
    cluster.set_memory_mib("cp-2", 1024);
    let err = health(
        &desired().node_refs(),
        &cluster.node_api(),
        cluster.kube().as_ref(),
        &CollectEvents::new(),
        &health_options(),
    )
    .await
    .unwrap_err();
    let HealthError::Unhealthy { check, report, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*check, "all nodes memory sizes");
    assert_eq!(
        err.to_string(),
        "the cluster is unhealthy: check `all nodes memory sizes` failed: cp-2: 1024 MiB, at \
         least 1698 MiB needed for a control-plane node"
    );
    let statuses: Vec<CheckStatus> = report.checks.iter().map(|c| c.status).collect();
    assert_eq!(&statuses[..4], &[CheckStatus::Passed; 4]);
    assert_eq!(statuses[4], CheckStatus::Failed);
    assert!(statuses[5..].iter().all(|s| *s == CheckStatus::NotRun));
    insta::assert_snapshot!(report.to_string());
}

#[tokio::test(start_paused = true)]
async fn stopped_etcd_times_out_within_the_overall_wait() {
    let (_ws, cluster) = deployed().await;
    cluster.set_service_stopped("cp-3", "etcd", true);
    let options = HealthOptions {
        wait: Duration::from_secs(90),
        ..HealthOptions::default()
    };
    let started = tokio::time::Instant::now();
    let err = health(
        &desired().node_refs(),
        &cluster.node_api(),
        cluster.kube().as_ref(),
        &CollectEvents::new(),
        &options,
    )
    .await
    .unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(90) && waited < Duration::from_secs(100),
        "{waited:?}"
    );
    assert!(
        err.to_string().starts_with(
            "the cluster is unhealthy: check `etcd to be healthy` failed: timed out after 1m \
             30s; last seen: cp-3: etcd Finished"
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------- drill

fn drill_options() -> DrillOptions {
    DrillOptions {
        vip: Some(support::VIP.into()),
        now: support::fixed_now,
        ..DrillOptions::default()
    }
}

#[tokio::test(start_paused = true)]
async fn failover_drill_on_the_vip_owner() {
    let (_ws, cluster) = deployed().await;
    let owner = cluster.vip_owner().unwrap();
    assert_eq!(owner, "cp-1");
    let nodes = cluster.node_api();
    let kube = cluster.kube();
    let events = CollectEvents::new();
    let report = drill_failover(
        &desired().node_refs(),
        &nodes,
        kube.as_ref(),
        &events,
        &drill_options(),
    )
    .await
    .unwrap();
    assert_eq!(report.target, "cp-1 (10.0.1.11)");
    assert_eq!(report.vip_owner_before.as_deref(), Some("cp-1"));
    assert_eq!(report.vip_owner_after.as_deref(), Some("cp-2"));
    let phases: Vec<&str> = report.phases.iter().map(|p| p.name).collect();
    assert_eq!(
        phases,
        ["precheck", "stop", "failover", "write", "restore", "rejoin"]
    );
    // The VIP needs vip_failover (3 s) to move: the failover phase took at least that.
    assert!(report.phases[2].duration >= Duration::from_secs(3));
    assert!(cluster.stopped_services("cp-1").is_empty(), "restored");
    let cm = &cluster.objects()["ConfigMap/default/kforge-drill"];
    assert_eq!(cm["data"]["stoppedNode"], "cp-1");
    insta::assert_snapshot!(report.to_string());
    // Still healthy afterwards.
    health(
        &desired().node_refs(),
        &nodes,
        kube.as_ref(),
        &CollectEvents::new(),
        &health_options(),
    )
    .await
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn drill_on_a_named_node() {
    let (_ws, cluster) = deployed().await;
    let options = DrillOptions {
        node: Some("cp-3".into()),
        ..drill_options()
    };
    let report = drill_failover(
        &desired().node_refs(),
        &cluster.node_api(),
        cluster.kube().as_ref(),
        &CollectEvents::new(),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(report.target, "cp-3 (10.0.1.13)");
    // cp-3 did not hold the VIP, so it stays where it was.
    assert_eq!(report.vip_owner_after.as_deref(), Some("cp-1"));
}

async fn refusal(
    cluster: &FakeCluster,
    nodes: &[kforge_deploy::NodeRef],
    options: &DrillOptions,
) -> Vec<String> {
    let api: &dyn NodeApi = &cluster.node_api();
    let kube = cluster.kube();
    let k: &dyn KubeApi = kube.as_ref();
    match drill_failover(nodes, api, k, &CollectEvents::new(), options).await {
        Err(DrillError::Refused { reasons }) => reasons,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn drill_refuses_when_quorum_could_be_lost() {
    let (_ws, cluster) = deployed().await;
    let all = desired().node_refs();

    // A member already down.
    cluster.set_service_stopped("cp-2", "etcd", true);
    let reasons = refusal(&cluster, &all, &drill_options()).await;
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("cp-2: etcd member not healthy")),
        "{reasons:?}"
    );
    cluster.set_service_stopped("cp-2", "etcd", false);

    // Fewer than three control-plane nodes (as the operator described the cluster).
    let two: Vec<_> = all
        .iter()
        .filter(|n| n.hostname != "cp-3")
        .cloned()
        .collect();
    let reasons = refusal(&cluster, &two, &drill_options()).await;
    assert!(
        reasons[0].starts_with(
            "the cluster has 2 control-plane nodes; a failover drill needs at least 3"
        ),
        "{reasons:?}"
    );

    // A worker as target.
    let options = DrillOptions {
        node: Some("solana-validator".into()),
        ..drill_options()
    };
    let reasons = refusal(&cluster, &all, &options).await;
    assert_eq!(
        reasons,
        ["`solana-validator` is not a control-plane node; expected one of cp-1, cp-2, cp-3"]
    );

    // Nothing to pick the target from.
    let options = DrillOptions {
        vip: None,
        ..drill_options()
    };
    let reasons = refusal(&cluster, &all, &options).await;
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].starts_with("no target"));

    // Nothing was stopped by any refused drill.
    for h in ["cp-1", "cp-2", "cp-3"] {
        assert!(cluster.stopped_services(h).is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn drill_failure_after_stop_restores_the_services() {
    let (_ws, cluster) = deployed().await;
    // The only other node that could take over loses etcd as soon as the drill starts:
    // take cp-2 down for good after the precheck by making it unreachable.
    let nodes = cluster.node_api();
    let kube = cluster.kube();
    let options = DrillOptions {
        phase_timeout: Duration::from_secs(30),
        ..drill_options()
    };
    let c2 = cluster.clone();
    let disturb = async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c2.take_down("cp-2", None);
    };
    let all = desired().node_refs();
    let events = CollectEvents::new();
    let drill = drill_failover(&all, &nodes, kube.as_ref(), &events, &options);
    let (result, ()) = tokio::join!(drill, disturb);
    let err = result.unwrap_err();
    let DrillError::Failed {
        phase, restored, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*phase, "failover");
    assert_eq!(*restored, Some(true), "{err}");
    assert!(
        err.to_string()
            .contains("the stopped services were started again"),
        "{err}"
    );
    assert!(cluster.stopped_services("cp-1").is_empty());
}
