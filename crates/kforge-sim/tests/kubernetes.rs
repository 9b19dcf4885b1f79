//! The Kubernetes side of simulated clusters, through the clients kforge really uses:
//! the deploy engine's `HttpKubeApi` and `TalosApi`, `kubectl`, and finally the engine
//! itself (`up`, `health`, `drill failover`) from maintenance mode to a failover.
//! Every test uses its own 127.x.y.0/24 addresses; every process dies with its cluster.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use kforge_deploy::api::{KubeApi, KubeErrorKind, NodeApi, ServiceAction};
use kforge_deploy::desired::{DesiredCluster, NodeRef, Role};
use kforge_deploy::execute::{Apis, ExecuteOptions, Intervals, Timeouts, UpOptions};
use kforge_deploy::kube_http::{HttpKubeApi, HttpKubeConnector, HttpKubeOptions};
use kforge_deploy::plan::{KubeconfigOutput, PlanOptions};
use kforge_deploy::talos::{TalosApi, TalosApiOptions, TalosCredentials};
use kforge_deploy::{DrillOptions, FileStateStore, HealthOptions};
use kforge_secret::SecretString;
use kforge_sim::harness::{ClusterSpec, SimBinary, SimCluster};
use serde_json::{Value, json};

mod support;
use support::OrFail;

fn binary() -> SimBinary {
    SimBinary::new(env!("CARGO_BIN_EXE_kforge-sim"))
}

fn spec(name: &str, subnet: [u8; 3]) -> ClusterSpec {
    let mut s = ClusterSpec::new(name, subnet, 3, 1);
    s.secrets = Some(support::secrets());
    s.vip = true;
    s.worker_extra = Some(kforge_sim::harness::VALIDATOR_WORKER.into());
    s.meminfo_total = "64GiB".into();
    s.extra_args = vec!["--cpus".into(), "16".into()];
    // Debugging aid: keep the nodes' state directories and logs under this directory.
    if let Some(root) = std::env::var_os("KFORGE_SIM_DEBUG_ROOT") {
        s.root = Some(std::path::PathBuf::from(root).join(name));
    }
    s
}

fn node_refs(cluster: &SimCluster) -> Vec<NodeRef> {
    cluster
        .nodes()
        .iter()
        .map(|n| {
            NodeRef::new(
                n.hostname.clone(),
                n.address.to_string(),
                if n.control_plane {
                    Role::ControlPlane
                } else {
                    Role::Worker
                },
            )
        })
        .collect()
}

fn talos_api(cluster: &SimCluster) -> TalosApi {
    let credentials =
        TalosCredentials::from_talosconfig(&cluster.talosconfig(), None).or_fail("credentials");
    TalosApi::new(
        credentials,
        TalosApiOptions {
            call_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            ..TalosApiOptions::default()
        },
    )
}

fn kube_via(kubeconfig: &SecretString, server: Option<IpAddr>) -> HttpKubeApi {
    HttpKubeApi::from_kubeconfig(
        kubeconfig,
        HttpKubeOptions {
            server_override: server.map(|a| format!("https://{a}:6443")),
            request_timeout: Duration::from_secs(5),
            ..HttpKubeOptions::default()
        },
    )
    .or_fail("kube client")
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Which control planes say (in /proc/net/fib_trie, through the Talos API) they hold the
/// VIP.
async fn fib_holders(api: &TalosApi, cps: &[NodeRef], vip: &str) -> Vec<String> {
    let mut out = Vec::new();
    for cp in cps {
        if let Ok(true) = api.holds_vip(cp, vip).await {
            out.push(cp.hostname.clone());
        }
    }
    out
}

fn kubectl(kubeconfig: &std::path::Path, cache: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--request-timeout=10s")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run kubectl ({e}); install it (e.g. the Debian package `kubernetes-client`)"
            )
        });
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_kubelets_and_vip() {
    let t0 = Instant::now();
    let cluster = SimCluster::up(spec("k8s", [127, 202, 1]), &binary())
        .await
        .or_fail("cluster up");
    eprintln!("cluster up in {:?}", t0.elapsed());
    let vip = cluster.vip().expect("vip");
    let cps: Vec<IpAddr> = cluster.control_planes().iter().map(|n| n.address).collect();
    let refs = node_refs(&cluster);
    let cp_refs: Vec<NodeRef> = refs
        .iter()
        .filter(|n| n.is_control_plane())
        .cloned()
        .collect();
    let worker = refs.iter().find(|n| !n.is_control_plane()).unwrap().clone();
    let talos = talos_api(&cluster);

    // ---- the admin kubeconfig from the Kubeconfig RPC names the VIP and works there and
    // on every control plane.
    let kubeconfig = cluster.fetch_kubeconfig().await.or_fail("kubeconfig");
    assert!(
        kubeconfig
            .expose()
            .contains(&format!("server: https://{vip}:6443")),
        "the kubeconfig's server is the VIP"
    );
    let via_vip = kube_via(&kubeconfig, None);
    let r = via_vip.readyz().await.or_fail("readyz via the VIP");
    assert!(r.ok, "{r:?}");
    for cp in &cps {
        let r = via_vip
            .readyz_via(&cp.to_string())
            .await
            .or_fail("readyz via a node");
        assert!(r.ok, "{cp}: {r:?}");
    }

    // ---- nodes: registered by the kubelets, Ready, with labels, taints, huge pages.
    let nodes = via_vip.nodes().await.or_fail("nodes");
    assert_eq!(nodes.len(), 4, "{nodes:?}");
    for n in &nodes {
        assert_eq!(n.ready, Some(true), "{n:?}");
        assert_eq!(n.labels["kubernetes.io/hostname"], n.name);
        let cp = n.name.starts_with("cp-");
        assert_eq!(
            n.labels
                .contains_key("node-role.kubernetes.io/control-plane"),
            cp,
            "{n:?}"
        );
        assert_eq!(
            n.taints
                .iter()
                .any(|t| t.key == "node-role.kubernetes.io/control-plane"
                    && t.effect == "NoSchedule"),
            cp,
            "{n:?}"
        );
        assert_eq!(
            n.addresses[0],
            cluster
                .nodes()
                .iter()
                .find(|x| x.hostname == n.name)
                .unwrap()
                .address
                .to_string()
        );
    }
    let w = nodes
        .iter()
        .find(|n| n.name == "w-1")
        .expect("worker registered");
    assert_eq!(w.labels["kforge.dev/profile"], "solana-validator");
    assert_eq!(w.capacity["hugepages-2Mi"], "8Gi", "4096 × 2 MiB");
    assert_eq!(w.capacity["cpu"], "16");
    assert_eq!(w.capacity["memory"], "64Gi");

    // ---- server-side apply through one control plane, read back through another: the
    // objects live in etcd.
    let cp1 = kube_via(&kubeconfig, Some(cps[0]));
    let cp2 = kube_via(&kubeconfig, Some(cps[1]));
    let pc = json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "solana-critical"}, "value": 1000000, "globalDefault": false,
        "description": "Critical priority for Solana validator pods",
    });
    let sc = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local-nvme-ledger"}, "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Retain",
    });
    let stored = cp1
        .server_side_apply(&pc, "kforge")
        .await
        .or_fail("apply PriorityClass");
    assert_eq!(stored["value"], 1000000);
    assert!(
        stored["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    assert!(
        stored["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .is_ok()
    );
    assert_eq!(stored["metadata"]["managedFields"][0]["manager"], "kforge");
    assert_eq!(stored["metadata"]["managedFields"][0]["operation"], "Apply");
    cp1.server_side_apply(&sc, "kforge")
        .await
        .or_fail("apply StorageClass");
    let got = cp2
        .get(
            "scheduling.k8s.io/v1",
            "PriorityClass",
            None,
            "solana-critical",
        )
        .await
        .or_fail("get PriorityClass")
        .expect("stored");
    assert_eq!(got["metadata"]["uid"], stored["metadata"]["uid"]);
    assert_eq!(got["description"], pc["description"]);
    let classes = cp2
        .list("storage.k8s.io/v1", "StorageClass", None, None)
        .await
        .or_fail("list StorageClass");
    assert_eq!(classes.len(), 1);
    assert_eq!(classes[0]["provisioner"], "kubernetes.io/no-provisioner");
    assert!(
        cp2.get("scheduling.k8s.io/v1", "PriorityClass", None, "missing")
            .await
            .or_fail("get missing")
            .is_none()
    );
    // Re-applying the same object changes nothing.
    let again = cp2
        .server_side_apply(&pc, "kforge")
        .await
        .or_fail("re-apply");
    assert_eq!(
        again["metadata"]["resourceVersion"],
        stored["metadata"]["resourceVersion"]
    );

    // ---- raw API: Status objects, conflicts, label selectors, authentication.
    let admin = cluster.kube_client(&cps).or_fail("admin client");
    let err = admin
        .get("/apis/scheduling.k8s.io/v1/priorityclasses/missing")
        .await
        .expect_err("404");
    assert_eq!(err.status(), Some(404));
    assert!(
        err.to_string()
            .contains("priorityclasses.scheduling.k8s.io \"missing\" not found"),
        "{err}"
    );
    let other = serde_json::to_vec(&json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "solana-critical"}, "value": 5,
    }))
    .unwrap();
    let err = admin
        .request(
            http::Method::PATCH,
            "/apis/scheduling.k8s.io/v1/priorityclasses/solana-critical?fieldManager=someone-else",
            Some(("application/apply-patch+yaml", &other)),
        )
        .await
        .expect_err("conflict");
    assert_eq!(err.status(), Some(409));
    assert!(
        err.to_string()
            .contains("Apply failed with 1 conflict: conflict with \"kforge\""),
        "{err}"
    );
    let mut stale = got.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    stale["description"] = json!("changed");
    let err = admin
        .request(
            http::Method::PUT,
            "/apis/scheduling.k8s.io/v1/priorityclasses/solana-critical",
            Some(("application/json", &serde_json::to_vec(&stale).unwrap())),
        )
        .await
        .expect_err("stale update");
    assert_eq!(err.status(), Some(409));
    assert!(
        err.to_string().contains("the object has been modified"),
        "{err}"
    );
    let workers = admin
        .get("/api/v1/nodes?labelSelector=%21node-role.kubernetes.io%2Fcontrol-plane")
        .await
        .or_fail("selector");
    assert_eq!(workers["items"].as_array().unwrap().len(), 1);
    assert_eq!(workers["kind"], "NodeList");

    // A client certificate from another CA fails the TLS handshake; no certificate at all
    // reaches only the health endpoints.
    let foreign = foreign_kubeconfig(&kubeconfig);
    let err = kube_via(&foreign, None)
        .nodes()
        .await
        .expect_err("foreign CA");
    assert_eq!(
        err.kind,
        KubeErrorKind::Unauthorized,
        "{}",
        kforge_deploy::api::error_chain(&err)
    );
    let anonymous = anonymous_client(&cluster, &cps);
    assert!(anonymous.get("/readyz").await.is_ok(), "health is public");
    let err = anonymous.get("/api/v1/nodes").await.expect_err("anonymous");
    assert_eq!(err.status(), Some(401), "{err}");

    // ---- kubectl: discovery, JSON, tables, watch.
    let dir = tempfile::tempdir().unwrap();
    let kc_path = dir.path().join("kubeconfig");
    std::fs::write(&kc_path, kubeconfig.expose()).unwrap();
    let cache = dir.path().join("cache");
    let json_nodes: Value =
        serde_json::from_str(&kubectl(&kc_path, &cache, &["get", "nodes", "-o", "json"])).unwrap();
    assert_eq!(json_nodes["items"].as_array().unwrap().len(), 4);
    let table = kubectl(&kc_path, &cache, &["get", "nodes"]);
    assert!(
        table.contains("w-1") && table.contains("Ready") && table.contains("control-plane"),
        "{table}"
    );
    let pcs = kubectl(&kc_path, &cache, &["get", "priorityclasses"]);
    assert!(pcs.contains("solana-critical"), "{pcs}");
    let watched = kubectl(
        &kc_path,
        &cache,
        &["get", "--raw", "/api/v1/nodes?watch=1&timeoutSeconds=2"],
    );
    let events: Vec<Value> = watched
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events.iter().filter(|e| e["type"] == "ADDED").count() >= 4,
        "{watched}"
    );
    assert!(
        events.iter().any(|e| e["type"] == "MODIFIED"),
        "heartbeats are seen: {watched}"
    );
    // From a resourceVersion: only what changed after it.
    let rv = admin.get("/api/v1/nodes").await.or_fail("list")["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let watched = kubectl(
        &kc_path,
        &cache,
        &[
            "get",
            "--raw",
            &format!("/api/v1/nodes?watch=true&resourceVersion={rv}&timeoutSeconds=2"),
        ],
    );
    let events: Vec<Value> = watched
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        !events.is_empty() && events.iter().all(|e| e["type"] == "MODIFIED"),
        "{watched}"
    );
    assert!(events.iter().all(|e| {
        e["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > rv.parse::<i64>().unwrap()
    }));
    eprintln!("api checks done at {:?}", t0.elapsed());

    // ---- the VIP: exactly one holder, as the control sockets and fib_trie agree.
    let vip_text = vip.to_string();
    let holders = cluster.vip_holders().await;
    assert_eq!(holders.len(), 1, "{holders:?}");
    let fib = fib_holders(&talos, &cp_refs, &vip_text).await;
    assert_eq!(fib.len(), 1, "{fib:?}");
    let owner = cp_refs
        .iter()
        .find(|c| c.hostname == fib[0])
        .unwrap()
        .clone();
    assert_eq!(owner.address, holders[0].to_string());

    // Stopping etcd on the owner: its API server turns unready, the VIP moves within the
    // lease TTL, never held twice, and the API keeps answering through the VIP.
    let stopped_at = Instant::now();
    talos
        .service_action(&owner, "etcd", ServiceAction::Stop)
        .await
        .or_fail("stop etcd");
    let mut new_owner = None;
    while stopped_at.elapsed() < Duration::from_secs(15) {
        let h = fib_holders(&talos, &cp_refs, &vip_text).await;
        assert!(h.len() <= 1, "the VIP is held twice: {h:?}");
        if let [one] = h.as_slice()
            && *one != owner.hostname
        {
            new_owner = Some(one.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moved_after = stopped_at.elapsed();
    let new_owner = new_owner.expect("the VIP moved");
    assert!(
        moved_after < Duration::from_secs(3 + 5),
        "moved after {moved_after:?}"
    );
    eprintln!(
        "VIP moved from {} to {new_owner} in {moved_after:?}",
        owner.hostname
    );
    wait_until(
        "the API through the VIP",
        Duration::from_secs(10),
        || async { via_vip.readyz().await.is_ok_and(|r| r.ok) },
    )
    .await;
    let r = via_vip
        .readyz_via(&owner.address)
        .await
        .or_fail("readyz on the stopped node");
    assert!(!r.ok && r.detail.contains("[-]etcd failed"), "{r:?}");
    talos
        .service_action(&owner, "etcd", ServiceAction::Start)
        .await
        .or_fail("start etcd");
    wait_until(
        "the old owner's API to be ready again",
        Duration::from_secs(30),
        || async { via_vip.readyz_via(&owner.address).await.is_ok_and(|r| r.ok) },
    )
    .await;
    assert_eq!(
        fib_holders(&talos, &cp_refs, &vip_text).await,
        std::slice::from_ref(&new_owner)
    );

    // ---- ServiceStop kube-apiserver closes its port; ServiceStart opens it again.
    let target = cp_refs
        .iter()
        .find(|c| c.hostname != new_owner)
        .unwrap()
        .clone();
    let port = (target.address.parse::<IpAddr>().unwrap(), 6443);
    talos
        .service_action(&target, "kube-apiserver", ServiceAction::Stop)
        .await
        .or_fail("stop kube-apiserver");
    assert!(
        tokio::net::TcpStream::connect(port).await.is_err(),
        "the port is closed"
    );
    let services = talos.services(&target).await.or_fail("services");
    let api = services.iter().find(|s| s.id == "kube-apiserver").unwrap();
    assert_eq!(api.state, "Finished");
    talos
        .service_action(&target, "kube-apiserver", ServiceAction::Start)
        .await
        .or_fail("start kube-apiserver");
    wait_until(
        "the API port to open again",
        Duration::from_secs(10),
        || async { tokio::net::TcpStream::connect(port).await.is_ok() },
    )
    .await;

    // ---- kubelet stopped on the worker: the node goes NotReady (Unknown), then back.
    talos
        .service_action(&worker, "kubelet", ServiceAction::Stop)
        .await
        .or_fail("stop kubelet");
    let not_ready_since = Instant::now();
    wait_until(
        "the worker to be NotReady",
        Duration::from_secs(15),
        || async {
            via_vip
                .nodes()
                .await
                // The condition and the taint are two writes (as in Kubernetes, where
                // the taint manager follows the status update): wait for both.
                .is_ok_and(|ns| {
                    ns.iter().any(|n| {
                        n.name == "w-1"
                            && n.ready == Some(false)
                            && n.taints
                                .iter()
                                .any(|t| t.key == "node.kubernetes.io/unreachable")
                    })
                })
        },
    )
    .await;
    eprintln!("worker NotReady after {:?}", not_ready_since.elapsed());
    let w = via_vip
        .nodes()
        .await
        .or_fail("nodes")
        .into_iter()
        .find(|n| n.name == "w-1")
        .unwrap();
    assert!(w.ready_message.contains("NodeStatusUnknown"), "{w:?}");
    assert!(
        w.taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable"),
        "{w:?}"
    );
    talos
        .service_action(&worker, "kubelet", ServiceAction::Start)
        .await
        .or_fail("start kubelet");
    wait_until(
        "the worker to be Ready again",
        Duration::from_secs(15),
        || async {
            via_vip.nodes().await.is_ok_and(|ns| {
                ns.iter().any(|n| {
                    n.name == "w-1"
                        && n.ready == Some(true)
                        && !n
                            .taints
                            .iter()
                            .any(|t| t.key == "node.kubernetes.io/unreachable")
                })
            })
        },
    )
    .await;

    // ---- quorum lost: the last control plane's API is unready and nobody holds the VIP.
    let others: Vec<&NodeRef> = cp_refs.iter().filter(|c| c.hostname != new_owner).collect();
    let holder = cp_refs.iter().find(|c| c.hostname == new_owner).unwrap();
    for o in &others {
        talos
            .service_action(o, "etcd", ServiceAction::Stop)
            .await
            .or_fail("stop etcd");
    }
    wait_until(
        "the last API server to lose etcd",
        Duration::from_secs(15),
        || async {
            via_vip
                .readyz_via(&holder.address)
                .await
                .is_ok_and(|r| !r.ok && r.detail.contains("[-]etcd failed"))
        },
    )
    .await;
    wait_until(
        "the VIP to be released",
        Duration::from_secs(10),
        || async { fib_holders(&talos, &cp_refs, &vip_text).await.is_empty() },
    )
    .await;
    for o in &others {
        talos
            .service_action(o, "etcd", ServiceAction::Start)
            .await
            .or_fail("start etcd");
    }
    wait_until(
        "a VIP holder and a ready API again",
        Duration::from_secs(30),
        || async {
            fib_holders(&talos, &cp_refs, &vip_text).await.len() == 1
                && via_vip.readyz().await.is_ok_and(|r| r.ok)
        },
    )
    .await;
    eprintln!("test done in {:?}", t0.elapsed());
}

/// The same kubeconfig with a client certificate from a CA the cluster does not know.
fn foreign_kubeconfig(kubeconfig: &SecretString) -> SecretString {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubernetes");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:masters");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "admin");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let _ = ca;
    let doc = kforge_yaml::parse(kubeconfig.expose()).unwrap().to_value();
    let mut doc = doc;
    doc["users"][0]["user"]["client-certificate-data"] = json!(b64(&cert.pem()));
    doc["users"][0]["user"]["client-key-data"] = json!(b64(&key.serialize_pem()));
    SecretString::from(serde_json::to_string(&doc).unwrap())
}

/// A client without a certificate (verifying the server with the Kubernetes CA).
fn anonymous_client(cluster: &SimCluster, cps: &[IpAddr]) -> kforge_sim::k8s::client::KubeClient {
    let ca = cluster.bundle().k8s_ca_crt_pem().unwrap();
    let tls = kforge_sim::k8s::certs::client_tls(&ca, None).unwrap();
    kforge_sim::k8s::client::KubeClient::new(
        cps.iter()
            .map(|a| std::net::SocketAddr::new(*a, 6443))
            .collect(),
        tls,
        None,
    )
}

/// The deploy engine against a simulated cluster, from maintenance mode: `up` (apply,
/// bootstrap once, etcd, kubeconfig, Kubernetes, manifests, tuning), `up` again (nothing
/// to do), `health`, and the failover drill on the VIP owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kforge_up_health_and_failover_drill() {
    let t0 = Instant::now();
    let cluster = SimCluster::start(spec("e2e", [127, 202, 2]), &binary())
        .await
        .or_fail("cluster starts");
    let vip = cluster.vip().expect("vip");
    let desired = DesiredCluster::from_rendered(cluster.name(), cluster.rendered_nodes(), None)
        .or_fail("desired cluster");
    assert_eq!(desired.manifests.len(), 1, "the profile's PriorityClass");
    let api = talos_api(&cluster);
    let connector = HttpKubeConnector {
        options: HttpKubeOptions {
            request_timeout: Duration::from_secs(5),
            ..HttpKubeOptions::default()
        },
    };
    let dir = tempfile::tempdir().unwrap();
    let state = FileStateStore::in_dir(dir.path());
    let kubeconfig_path = dir.path().join("kubeconfig");
    let fast = Duration::from_millis(500);
    let options = UpOptions {
        plan: PlanOptions {
            kubeconfig: KubeconfigOutput::Write {
                path: kubeconfig_path.clone(),
            },
        },
        observe: Default::default(),
        execute: ExecuteOptions {
            timeouts: Timeouts {
                call: Duration::from_secs(10),
                ..Timeouts::default()
            },
            intervals: Intervals {
                first: fast,
                apply: fast,
                apid: fast,
                etcd: fast,
                kubernetes: fast,
                manifests: fast,
                tuning: fast,
            },
            ..ExecuteOptions::default()
        },
    };
    let sink = kforge_deploy::LineSink::new(std::io::stderr(), kforge_deploy::LineFormat::Plain);
    let apis = Apis {
        nodes: &api,
        kube: &connector,
        state: &state,
    };

    let (plan, report) = kforge_deploy::execute::up(&desired, apis, &sink, &options)
        .await
        .or_fail("kforge up");
    eprintln!("up in {:?} (total {:?})", report.duration, t0.elapsed());
    assert!(!plan.is_noop() && report.changed);
    assert!(kubeconfig_path.exists());
    let worker_tuning = report
        .tuning
        .iter()
        .find(|t| t.node == "w-1")
        .expect("the worker's tuning was verified");
    assert!(worker_tuning.passed(), "{worker_tuning:?}");
    let sources: Vec<&str> = worker_tuning
        .checks
        .iter()
        .map(|c| c.source.as_str())
        .collect();
    assert!(
        sources.contains(&"/etc/kubernetes/kubelet.yaml"),
        "{sources:?}"
    );
    assert!(
        sources.contains(&"Kubernetes node status.capacity"),
        "{sources:?}"
    );
    let bootstraps = cluster
        .nodes()
        .iter()
        .map(|n| std::fs::read_to_string(n.log_path()).unwrap_or_default())
        .filter(|log| log.contains("bootstrapped etcd"))
        .count();
    assert_eq!(bootstraps, 1, "etcd is bootstrapped exactly once");

    let (plan, report) = kforge_deploy::execute::up(&desired, apis, &sink, &options)
        .await
        .or_fail("kforge up again");
    assert!(plan.is_noop(), "{plan}");
    assert!(!report.changed);

    let kubeconfig = SecretString::from(std::fs::read_to_string(&kubeconfig_path).unwrap());
    let kube = HttpKubeApi::from_kubeconfig(&kubeconfig, HttpKubeOptions::default())
        .or_fail("kube from the written kubeconfig");
    assert_eq!(kube.server_url(), format!("https://{vip}:6443"));
    let nodes = node_refs(&cluster);
    let health = kforge_deploy::health(
        &nodes,
        &api,
        &kube,
        &sink,
        &HealthOptions {
            wait: Duration::from_secs(120),
            call_timeout: Duration::from_secs(5),
            time_scale: 0.1,
        },
    )
    .await
    .or_fail("kforge health");
    eprintln!("{health}");
    assert!(health.healthy());

    let drill = kforge_deploy::drill_failover(
        &nodes,
        &api,
        &kube,
        &sink,
        &DrillOptions {
            vip: Some(vip.to_string()),
            phase_timeout: Duration::from_secs(60),
            rejoin_timeout: Duration::from_secs(90),
            interval: fast,
            call_timeout: Duration::from_secs(5),
            ..DrillOptions::default()
        },
    )
    .await
    .or_fail("kforge drill failover");
    eprintln!("{drill}");
    let (before, after) = (
        drill.vip_owner_before.clone().expect("owner before"),
        drill.vip_owner_after.clone().expect("owner after"),
    );
    assert_ne!(before, after, "the VIP moved");
    assert!(drill.target.starts_with(&before));
    let cm = kube
        .get("v1", "ConfigMap", Some("default"), "kforge-drill")
        .await
        .or_fail("drill ConfigMap")
        .expect("written during the drill");
    assert_eq!(cm["data"]["stoppedNode"], before);
    eprintln!("test done in {:?}", t0.elapsed());
}
