//! Simulated clusters driven through kforge's own Talos client: maintenance mode and
//! apply, mutual TLS afterwards, bootstrap exactly once, a real three-member etcd with
//! quorum behaviour, apid proxying, kubeconfig, security of the API, restarts and faults.
//! Every test uses its own 127.x.y.0/24 addresses so tests run in parallel; every
//! process a test starts dies with the test's cluster.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use kforge_sim::harness::{ClusterSpec, SimBinary, SimCluster};
use kforge_talos_api::proto::machine as pb;
use kforge_talos_api::{
    ApplyMode, ApplyOptions, BootstrapOptions, BootstrapOutcome, ConnectionConfig, ResetOptions,
    RetryPolicy, ServiceAction, TalosClient, Targets,
};
use x509_parser::prelude::{FromDer, X509Certificate};

mod support;
use support::OrFail;

fn binary() -> SimBinary {
    SimBinary::new(env!("CARGO_BIN_EXE_kforge-sim"))
}

fn spec(name: &str, subnet: [u8; 3], cps: usize, workers: usize) -> ClusterSpec {
    let mut s = ClusterSpec::new(name, subnet, cps, workers);
    s.secrets = Some(support::secrets());
    s
}

async fn client(conn: ConnectionConfig) -> TalosClient {
    TalosClient::connect(
        &conn
            .with_retry(RetryPolicy::none())
            .with_call_timeout(Duration::from_secs(10)),
    )
    .await
    .or_fail("client")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// The raw gRPC status of a failed typed call.
fn code_of(e: &kforge_talos_api::Error) -> Option<tonic::Code> {
    e.code()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_control_planes_and_two_workers() {
    let mut s = spec("sim3", [127, 201, 1], 3, 2);
    s.worker_extra = Some(kforge_sim::harness::VALIDATOR_WORKER.into());
    s.meminfo_total = "64GiB".into();
    s.ready_delay = Duration::from_millis(200);
    let cluster = SimCluster::start(s, &binary())
        .await
        .or_fail("cluster starts");
    let root = cluster.root().to_path_buf();
    let cps: Vec<String> = cluster
        .control_planes()
        .iter()
        .map(|n| n.address.to_string())
        .collect();
    let workers: Vec<String> = cluster
        .workers()
        .iter()
        .map(|n| n.address.to_string())
        .collect();
    let cp1 = cluster.control_planes()[0].endpoint();

    // ---- maintenance mode: insecure TLS, only ApplyConfiguration.
    let maint = client(
        cluster
            .insecure_connection(std::slice::from_ref(&cp1))
            .unwrap(),
    )
    .await;
    let err = maint.version(&Targets::Endpoint).await.unwrap_err();
    assert_eq!(code_of(&err), Some(tonic::Code::Unimplemented), "{err}");
    assert!(
        err.to_string()
            .contains("API is not implemented in maintenance mode"),
        "{err}"
    );
    let err = maint.hostname(&Targets::Endpoint).await.unwrap_err();
    assert_eq!(code_of(&err), Some(tonic::Code::Unimplemented), "{err}");
    let config = cluster
        .machine_config(ip(&cps[0]))
        .unwrap()
        .expose()
        .clone();
    let err = maint
        .apply_configuration(
            &Targets::Endpoint,
            config.as_bytes(),
            ApplyOptions::new(ApplyMode::NoReboot),
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Some(tonic::Code::Unimplemented), "{err}");
    let broken = config
        .replace("type: controlplane", "type: overlord")
        .replace("  token: ", "  tokenn: ");
    let err = maint
        .apply_configuration(
            &Targets::Endpoint,
            broken.as_bytes(),
            ApplyOptions::new(ApplyMode::Auto),
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Some(tonic::Code::InvalidArgument), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("overlord") && text.contains("machine.token is missing"),
        "{text}"
    );
    let mut dry = ApplyOptions::new(ApplyMode::Auto);
    dry.dry_run = true;
    let replies = maint
        .apply_configuration(&Targets::Endpoint, config.as_bytes(), dry)
        .await
        .unwrap();
    assert!(replies[0].result.is_ok());
    // The dry run changed nothing: still maintenance mode.
    assert!(maint.version(&Targets::Endpoint).await.is_err());

    // ---- apply everywhere; afterwards only mutual TLS works.
    cluster.apply_configs().await.or_fail("apply");
    cluster
        .wait_for_apid(Duration::from_secs(30))
        .await
        .or_fail("apid up");
    let err = maint.version(&Targets::Endpoint).await.unwrap_err();
    assert_ne!(
        code_of(&err),
        Some(tonic::Code::Unimplemented),
        "insecure still accepted: {err}"
    );

    let admin = client(
        cluster
            .admin_connection(std::slice::from_ref(&cp1))
            .unwrap(),
    )
    .await;
    let versions = admin
        .version(&Targets::nodes(
            &cluster
                .nodes()
                .iter()
                .map(|n| n.address.to_string())
                .collect::<Vec<_>>(),
        ))
        .await
        .unwrap();
    assert_eq!(versions.len(), 5);
    for v in &versions {
        assert_eq!(
            v.result.as_ref().expect("version").tag,
            "v1.12.0",
            "{}",
            v.node
        );
    }
    let hostnames = admin.hostname(&Targets::nodes(&workers)).await.unwrap();
    assert_eq!(hostnames[0].result.as_ref().unwrap(), "w-1");

    // ---- workers refuse Bootstrap for good; the first control plane bootstraps once.
    let mut raw = admin.machine_service();
    let mut req = tonic::Request::new(pb::BootstrapRequest::default());
    req.metadata_mut()
        .insert("node", workers[0].parse().unwrap());
    let err = raw.bootstrap(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        !err.message().contains("not available yet"),
        "{}",
        err.message()
    );

    let outcome = cluster.bootstrap().await.or_fail("bootstrap");
    assert_eq!(outcome, BootstrapOutcome::Bootstrapped);
    let mut req = tonic::Request::new(pb::BootstrapRequest::default());
    req.metadata_mut().insert("node", cps[0].parse().unwrap());
    let err = raw.bootstrap(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    assert_eq!(err.message(), "etcd data directory is not empty");
    assert_eq!(
        admin
            .bootstrap(&Targets::Endpoint, BootstrapOptions::default())
            .await
            .unwrap(),
        BootstrapOutcome::AlreadyBootstrapped
    );

    // ---- the other control planes join by themselves: three real members.
    let members = cluster
        .wait_for_etcd_members(3, Duration::from_secs(40))
        .await
        .or_fail("3 members");
    let mut names: Vec<String> = members.iter().map(|m| m.hostname.clone()).collect();
    names.sort();
    assert_eq!(names, ["cp-1", "cp-2", "cp-3"]);

    // Fan-out through one node: each reply names its target; all agree.
    let lists = admin
        .etcd_member_list(&Targets::nodes(&cps), false)
        .await
        .unwrap();
    assert_eq!(
        lists.iter().map(|r| r.node.clone()).collect::<Vec<_>>(),
        cps
    );
    let ids = |m: &kforge_talos_api::EtcdMembers| {
        let mut v: Vec<u64> = m.members.iter().map(|x| x.id).collect();
        v.sort();
        v
    };
    let first = ids(lists[0].result.as_ref().expect("members"));
    for l in &lists {
        assert_eq!(
            ids(l.result.as_ref().expect("members")),
            first,
            "{}",
            l.node
        );
    }
    // apid's rewrite, on the wire: metadata.hostname is the target as given.
    let mut req = tonic::Request::new(pb::EtcdMemberListRequest { query_local: false });
    for n in &cps {
        req.metadata_mut().append("nodes", n.parse().unwrap());
    }
    let wire = raw.etcd_member_list(req).await.unwrap().into_inner();
    let hosts: Vec<String> = wire
        .messages
        .iter()
        .map(|m| m.metadata.clone().unwrap_or_default().hostname)
        .collect();
    assert_eq!(hosts, cps);
    // A failing backend becomes metadata.error instead of failing the call.
    let mixed = admin
        .etcd_member_list(
            &Targets::nodes(&[cps[1].clone(), workers[0].clone()]),
            false,
        )
        .await
        .unwrap();
    assert!(mixed[0].result.is_ok());
    let werr = mixed[1].result.as_ref().unwrap_err();
    assert_eq!(werr.code, Some(tonic::Code::FailedPrecondition), "{werr:?}");
    // One-to-one through a worker (its identity came from trustd).
    let via_worker = client(
        cluster
            .admin_connection(&[cluster.workers()[0].endpoint()])
            .unwrap(),
    )
    .await;
    let one = via_worker
        .etcd_member_list(&Targets::Node(cps[2].clone()), false)
        .await
        .unwrap();
    assert_eq!(ids(one[0].result.as_ref().unwrap()), first);

    // ---- tuning on the worker: cmdline and huge pages follow the profile.
    let w1 = &workers[0];
    let cmdline = admin
        .read(&Targets::Node(w1.clone()), "/proc/cmdline")
        .await
        .unwrap();
    let cmdline = String::from_utf8(cmdline[0].result.clone().unwrap()).unwrap();
    assert!(
        cmdline.contains("hugepagesz=2M") && cmdline.contains("hugepages=4096"),
        "{cmdline}"
    );
    let mem = admin
        .memory(&Targets::nodes(std::slice::from_ref(w1)))
        .await
        .unwrap();
    let mem = mem[0].result.as_ref().unwrap();
    assert_eq!((mem.hugepagestotal, mem.hugepagesize), (4096, 2048));
    assert_eq!(mem.memtotal, 64 * 1024 * 1024);
    let meminfo = admin
        .read(&Targets::Node(w1.clone()), "/proc/meminfo")
        .await
        .unwrap();
    let meminfo = String::from_utf8(meminfo[0].result.clone().unwrap()).unwrap();
    assert!(meminfo.contains("HugePages_Total:    4096"), "{meminfo}");
    let cp_mem = admin.memory(&Targets::Node(cps[1].clone())).await.unwrap();
    assert_eq!(cp_mem[0].result.as_ref().unwrap().hugepagestotal, 0);
    let stored = admin
        .read(&Targets::Node(w1.clone()), "/system/state/config.yaml")
        .await
        .unwrap();
    assert_eq!(
        stored[0].result.as_ref().unwrap(),
        cluster.machine_config(ip(w1)).unwrap().expose().as_bytes()
    );
    let missing = admin.read(&Targets::Node(w1.clone()), "/etc/shadow").await;
    let missing_code = match missing {
        Err(e) => code_of(&e),
        Ok(r) => r[0].result.as_ref().err().and_then(|e| e.code),
    };
    assert_eq!(missing_code, Some(tonic::Code::NotFound));

    // A config change without reboot: the sysctl resizes the huge page pool at once.
    let w1_config = cluster.machine_config(ip(w1)).unwrap().expose().clone();
    let fewer = w1_config.replace("vm.nr_hugepages: \"4096\"", "vm.nr_hugepages: \"1024\"");
    assert_ne!(fewer, w1_config, "the profile's sysctl is in the config");
    let applied = admin
        .apply_configuration(
            &Targets::Node(w1.clone()),
            fewer.as_bytes(),
            ApplyOptions::new(ApplyMode::NoReboot),
        )
        .await
        .unwrap();
    assert_eq!(
        applied[0].result.as_ref().unwrap().mode,
        Some(ApplyMode::NoReboot)
    );
    let mem = admin.memory(&Targets::Node(w1.clone())).await.unwrap();
    assert_eq!(mem[0].result.as_ref().unwrap().hugepagestotal, 1024);
    // A worker config cannot turn a control plane into a worker.
    let err = admin
        .apply_configuration(
            &Targets::Node(cps[1].clone()),
            w1_config.as_bytes(),
            ApplyOptions::new(ApplyMode::Auto),
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Some(tonic::Code::InvalidArgument), "{err}");
    // Fan-out of a stream: each node's chunks are labelled with its address.
    let cmdlines = admin
        .read(
            &Targets::nodes(&[w1.clone(), cps[0].clone()]),
            "/proc/cmdline",
        )
        .await
        .unwrap();
    assert_eq!(
        cmdlines.iter().map(|r| r.node.clone()).collect::<Vec<_>>(),
        [w1.clone(), cps[0].clone()]
    );
    let cp_cmdline = String::from_utf8(cmdlines[1].result.clone().unwrap()).unwrap();
    assert!(
        cp_cmdline.contains("talos.platform=metal") && !cp_cmdline.contains("hugepages="),
        "{cp_cmdline}"
    );

    // ---- services.
    let services = admin
        .service_list(&Targets::nodes(&[cps[0].clone(), w1.clone()]))
        .await
        .unwrap();
    let cp_services = services[0].result.as_ref().unwrap();
    let etcd = cp_services
        .iter()
        .find(|s| s.id == "etcd")
        .expect("etcd service");
    assert_eq!(etcd.state, "Running");
    wait_until("etcd healthy on cp-1", Duration::from_secs(10), || async {
        let s = admin
            .service_list(&Targets::Node(cps[0].clone()))
            .await
            .unwrap();
        s[0].result
            .as_ref()
            .unwrap()
            .iter()
            .any(|s| s.id == "etcd" && s.health.healthy)
    })
    .await;
    let w_services = services[1].result.as_ref().unwrap();
    assert!(
        w_services
            .iter()
            .all(|s| s.id != "etcd" && s.id != "trustd")
    );
    assert!(
        w_services
            .iter()
            .any(|s| s.id == "kubelet" && s.state == "Running")
    );

    // ---- kubeconfig: parses, chains to the Kubernetes CA, kubectl reads it.
    let kubeconfig = admin
        .kubeconfig(&Targets::Node(cps[1].clone()))
        .await
        .or_fail("kubeconfig");
    check_kubeconfig(
        &cluster,
        kubeconfig.expose(),
        &format!("https://{}:6443", cps[0]),
    );

    // ---- quorum: one etcd down keeps it, two lose it.
    let etcd1 = cluster.etcd_client(ip(&cps[0])).unwrap();
    etcd1
        .put(b"/kforge/before", b"1")
        .await
        .or_fail("put with three members");
    admin
        .service(&Targets::Node(cps[2].clone()), ServiceAction::Stop, "etcd")
        .await
        .unwrap();
    etcd1
        .put(b"/kforge/one-down", b"1")
        .await
        .or_fail("put with one member down");
    let s = admin
        .service_list(&Targets::Node(cps[2].clone()))
        .await
        .unwrap();
    let etcd3 = s[0]
        .result
        .as_ref()
        .unwrap()
        .iter()
        .find(|s| s.id == "etcd")
        .unwrap()
        .clone();
    assert_eq!(etcd3.state, "Finished");
    admin
        .service(&Targets::Node(cps[1].clone()), ServiceAction::Stop, "etcd")
        .await
        .unwrap();
    let lost = etcd1
        .clone()
        .with_timeout(Duration::from_secs(2))
        .put(b"/kforge/two-down", b"1")
        .await;
    assert!(lost.is_err(), "a put succeeded without quorum");
    // The processes are really gone.
    let pids = pgrep(&format!("{}/{}/ephemeral/etcd", root.display(), cps[1]));
    assert!(pids.is_empty(), "etcd of cp-2 still running: {pids:?}");
    admin
        .service(&Targets::Node(cps[1].clone()), ServiceAction::Start, "etcd")
        .await
        .unwrap();
    admin
        .service(&Targets::Node(cps[2].clone()), ServiceAction::Start, "etcd")
        .await
        .unwrap();
    wait_until("quorum back", Duration::from_secs(15), || async {
        etcd1.put(b"/kforge/back", b"1").await.is_ok()
    })
    .await;
    assert_eq!(
        etcd1.get(b"/kforge/one-down").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );

    // ---- reset a worker: back to maintenance mode.
    let w2 = cluster.workers()[1].endpoint();
    let reset = ResetOptions {
        reboot: true,
        ..ResetOptions::default()
    };
    admin
        .reset(&Targets::Node(workers[1].clone()), &reset)
        .await
        .unwrap();
    let maint2 = client(cluster.insecure_connection(&[w2]).unwrap()).await;
    wait_until("worker back in maintenance mode", Duration::from_secs(15), || async {
        matches!(maint2.version(&Targets::Endpoint).await, Err(e) if e.to_string().contains("maintenance mode"))
    })
    .await;

    // ---- graceful reset of a control plane leaves etcd first; re-applied, it joins again.
    admin
        .reset(&Targets::Node(cps[2].clone()), &reset)
        .await
        .unwrap();
    wait_until("cp-3 to leave etcd", Duration::from_secs(30), || async {
        let Ok(list) = admin
            .etcd_member_list(&Targets::Node(cps[0].clone()), false)
            .await
        else {
            return false;
        };
        let names: Vec<String> = list[0]
            .result
            .as_ref()
            .map(|m| m.members.iter().map(|m| m.hostname.clone()).collect())
            .unwrap_or_default();
        names.len() == 2 && !names.contains(&"cp-3".to_string())
    })
    .await;
    let maint3 = client(
        cluster
            .insecure_connection(&[cluster.control_planes()[2].endpoint()])
            .unwrap(),
    )
    .await;
    let cp3_config = cluster
        .machine_config(ip(&cps[2]))
        .unwrap()
        .expose()
        .clone();
    wait_until(
        "cp-3 in maintenance mode",
        Duration::from_secs(15),
        || async {
            maint3
                .apply_configuration(
                    &Targets::Endpoint,
                    cp3_config.as_bytes(),
                    ApplyOptions::new(ApplyMode::Auto),
                )
                .await
                .is_ok()
        },
    )
    .await;
    cluster
        .wait_for_etcd_members(3, Duration::from_secs(30))
        .await
        .or_fail("cp-3 rejoined");

    // ---- nothing outlives the cluster.
    assert!(!pgrep(&root.display().to_string()).is_empty());
    drop(cluster);
    let left = pgrep(&root.display().to_string());
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// PIDs of processes whose command line mentions `pattern`.
fn pgrep(pattern: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .expect("pgrep (procps) is needed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|p| p.parse::<u32>().ok() != Some(std::process::id()))
        .collect()
}

fn check_kubeconfig(cluster: &SimCluster, text: &str, server: &str) {
    use base64::Engine;
    let doc = kforge_yaml::parse(text)
        .expect("kubeconfig is YAML")
        .to_value();
    assert_eq!(doc["clusters"][0]["cluster"]["server"], server);
    let crt_b64 = doc["users"][0]["user"]["client-certificate-data"]
        .as_str()
        .expect("client cert");
    let crt_pem = base64::engine::general_purpose::STANDARD
        .decode(crt_b64)
        .unwrap();
    let crt_der = pem::parse(&crt_pem).unwrap().into_contents();
    let ca_der = pem::parse(cluster.bundle().k8s_ca_crt_pem().unwrap())
        .unwrap()
        .into_contents();
    let (_, crt) = X509Certificate::from_der(&crt_der).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    assert_eq!(crt.issuer(), ca.subject());
    crt.verify_signature(Some(ca.public_key()))
        .expect("signed by the Kubernetes CA");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kubeconfig");
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new("kubectl")
        .args(["config", "view", "--kubeconfig"])
        .arg(&file)
        .args(["-o", "jsonpath={.clusters[0].cluster.server}"])
        .output()
        .expect("kubectl is needed (install kubectl)");
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), server);
}

/// A certificate signed by `issuer_pem`/`issuer_key` (or a fresh CA when `None`) with the
/// given organization and ExtKeyUsages, as PEM (cert, key).
fn forged_cert(
    ca: Option<(&str, &kforge_secret::SecretString)>,
    org: &str,
    usages: &[rcgen::ExtendedKeyUsagePurpose],
) -> (String, kforge_secret::SecretString) {
    use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ED25519};
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::OrganizationName, org);
    params.extended_key_usages = usages.to_vec();
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let cert = match ca {
        Some((ca_pem, ca_key)) => {
            let der = pem::parse(ca_key.expose()).unwrap().into_contents();
            let ca_key = KeyPair::try_from(der.as_slice()).unwrap();
            let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key).unwrap();
            params.signed_by(&key, &issuer).unwrap()
        }
        None => {
            let ca_key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params
                .distinguished_name
                .push(DnType::OrganizationName, "talos");
            ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let issuer = Issuer::new(ca_params, ca_key);
            params.signed_by(&key, &issuer).unwrap()
        }
    };
    (
        cert.pem(),
        kforge_secret::SecretString::new(key.serialize_pem()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_waits_for_readiness_and_the_api_is_locked_down() {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let mut s = spec("sim-sec", [127, 201, 2], 1, 0);
    s.ready_delay = Duration::from_secs(2);
    let cluster = SimCluster::start(s, &binary())
        .await
        .or_fail("cluster starts");
    let cp = cluster.control_planes()[0].endpoint();
    cluster.apply_configs().await.or_fail("apply");
    cluster
        .wait_for_apid(Duration::from_secs(20))
        .await
        .or_fail("apid up");

    // Still booting: Bootstrap is not available yet (and retryable).
    let admin = client(cluster.admin_connection(std::slice::from_ref(&cp)).unwrap()).await;
    let err = admin
        .machine_service()
        .bootstrap(pb::BootstrapRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(err.message(), "bootstrap is not available yet");
    // kforge's client retries through it.
    assert_eq!(
        admin
            .bootstrap(&Targets::Endpoint, BootstrapOptions::default())
            .await
            .unwrap(),
        BootstrapOutcome::Bootstrapped
    );
    cluster
        .wait_for_etcd_members(1, Duration::from_secs(20))
        .await
        .or_fail("etcd up");

    // A client certificate from another CA.
    let ca_pem = cluster.bundle().os_ca_crt_pem().unwrap();
    let (crt, key) = forged_cert(None, "os:admin", &[ClientAuth]);
    let other_ca = client(
        ConnectionConfig::mutual_tls(std::slice::from_ref(&cp), &ca_pem, &crt, &key).unwrap(),
    )
    .await;
    assert!(
        other_ca.version(&Targets::Endpoint).await.is_err(),
        "foreign CA accepted"
    );
    // From the OS CA but with ServerAuth, alone or next to ClientAuth.
    let (os_ca, os_key) = kforge_sim::pki::os_ca(cluster.bundle()).unwrap();
    for usages in [&[ServerAuth][..], &[ServerAuth, ClientAuth][..]] {
        let (crt, key) = forged_cert(Some((&os_ca, &os_key)), "os:admin", usages);
        let c = client(
            ConnectionConfig::mutual_tls(std::slice::from_ref(&cp), &ca_pem, &crt, &key).unwrap(),
        )
        .await;
        assert!(
            c.version(&Targets::Endpoint).await.is_err(),
            "{usages:?} accepted"
        );
    }
    // The control: a correct ClientAuth-only admin certificate forged the same way works.
    let (crt, key) = forged_cert(Some((&os_ca, &os_key)), "os:admin", &[ClientAuth]);
    let good = client(
        ConnectionConfig::mutual_tls(std::slice::from_ref(&cp), &ca_pem, &crt, &key).unwrap(),
    )
    .await;
    assert!(good.version(&Targets::Endpoint).await.is_ok());

    // os:reader reads, but may not change anything or read files.
    let reader = client(
        cluster
            .connection_with_roles(std::slice::from_ref(&cp), &["os:reader"])
            .unwrap(),
    )
    .await;
    assert!(reader.version(&Targets::Endpoint).await.is_ok());
    assert!(
        reader
            .etcd_member_list(&Targets::Endpoint, false)
            .await
            .is_ok()
    );
    for result in [
        reader
            .bootstrap(
                &Targets::Endpoint,
                BootstrapOptions {
                    retry: RetryPolicy::none(),
                    ..Default::default()
                },
            )
            .await
            .map(|_| ()),
        reader
            .reboot(&Targets::Endpoint, kforge_talos_api::RebootMode::Default)
            .await
            .map(|_| ()),
        reader
            .read(&Targets::Endpoint, "/proc/cmdline")
            .await
            .map(|_| ()),
        reader.kubeconfig(&Targets::Endpoint).await.map(|_| ()),
    ] {
        let err = result.unwrap_err();
        assert_eq!(code_of(&err), Some(tonic::Code::PermissionDenied), "{err}");
    }
    // Plain TCP (no TLS) gets nowhere.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{cp}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect_lazy();
    let mut plain = pb::machine_service_client::MachineServiceClient::new(plain);
    assert!(plain.version(()).await.is_err());
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(&cp).await.unwrap();
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        // Nothing, or a TLS alert record: never an HTTP/2 frame.
        assert!(
            n == 0 || buf[0] == 0x15,
            "plain TCP got an answer: {:?}",
            &buf[..n]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_crashes_and_faults() {
    let s = spec("sim-rst", [127, 201, 3], 1, 0);
    let mut cluster = SimCluster::up(s, &binary()).await.or_fail("cluster up");
    let root = cluster.root().to_path_buf();
    let addr = cluster.control_planes()[0].address;
    let cp = cluster.control_planes()[0].endpoint();
    let data_dir = format!("{}/{addr}/ephemeral/etcd", root.display());
    let admin = client(cluster.admin_connection(std::slice::from_ref(&cp)).unwrap()).await;
    let member_id = || async {
        match admin.etcd_status(&Targets::Endpoint).await {
            Ok(r) => r[0].result.as_ref().ok().map(|s| s.member_id),
            Err(_) => None,
        }
    };
    let id = member_id().await.expect("member id");
    let same_member = async |what: &str| {
        wait_until(what, Duration::from_secs(20), || async {
            member_id().await == Some(id)
        })
        .await;
    };

    // Killed outright (with its etcd) and restarted on the same state: configured, same member.
    let node = cluster.node_mut(addr).unwrap();
    node.kill();
    assert!(pgrep(&data_dir).is_empty());
    node.start().await.or_fail("restart");
    same_member("the same etcd member after a kill").await;
    let insecure = client(
        cluster
            .insecure_connection(std::slice::from_ref(&cp))
            .unwrap(),
    )
    .await;
    assert!(
        insecure.version(&Targets::Endpoint).await.is_err(),
        "maintenance mode after restart"
    );

    // Only the node process dies: its orphaned etcd is found by pidfile and killed.
    let node = cluster.node_mut(addr).unwrap();
    let old_etcd = pgrep(&data_dir);
    assert_eq!(old_etcd.len(), 1, "{old_etcd:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(node.pid().unwrap() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("the node process to die", Duration::from_secs(5), || {
        let running = node.is_running();
        async move { !running }
    })
    .await;
    assert_eq!(
        pgrep(&data_dir),
        old_etcd,
        "etcd should outlive a SIGKILLed node"
    );
    node.start().await.or_fail("restart after SIGKILL");
    same_member("the same etcd member after an orphaned etcd").await;
    let now = pgrep(&data_dir);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, old_etcd, "the orphan was not replaced");

    // Crash through the control socket: exits, takes etcd with it.
    let node = cluster.node_mut(addr).unwrap();
    node.control().send("crash").await.ok();
    wait_until("the crash", Duration::from_secs(5), || {
        let running = node.is_running();
        async move { !running }
    })
    .await;
    assert!(pgrep(&data_dir).is_empty(), "etcd survived a crash");
    node.start().await.or_fail("restart after crash");
    same_member("the same etcd member after a crash").await;

    // Refuse: the port closes; and opens again.
    let node = cluster.node(addr).unwrap();
    node.control().send("refuse on").await.unwrap();
    let refused = tokio::net::TcpStream::connect(&cp).await;
    assert_eq!(
        refused.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    node.control().send("refuse off").await.unwrap();
    wait_until("apid back", Duration::from_secs(10), || async {
        admin.version(&Targets::Endpoint).await.is_ok()
    })
    .await;

    // Pause: TCP is accepted but nothing answers; etcd is frozen too.
    node.control().send("pause on").await.unwrap();
    assert!(tokio::net::TcpStream::connect(&cp).await.is_ok());
    let slow = admin.with_call_timeout(Duration::from_secs(1));
    let err = slow.version(&Targets::Endpoint).await.unwrap_err();
    assert!(
        matches!(err, kforge_talos_api::Error::DeadlineExceeded { .. }),
        "{err}"
    );
    let etcd = cluster
        .etcd_client(addr)
        .unwrap()
        .with_timeout(Duration::from_secs(1));
    assert!(etcd.get(b"x").await.is_err(), "a frozen etcd answered");
    let status = node.control().send("status").await.unwrap();
    assert!(status.contains("\"pause\":true"), "{status}");
    node.control().send("pause off").await.unwrap();
    wait_until("answers after pause", Duration::from_secs(10), || async {
        admin.version(&Targets::Endpoint).await.is_ok()
    })
    .await;
    same_member("etcd after the pause").await;

    // Reboot through the API: the node goes away for the boot delay, then comes back.
    node.control().send("boot-delay 2s").await.unwrap();
    admin
        .reboot(&Targets::Endpoint, kforge_talos_api::RebootMode::Default)
        .await
        .unwrap();
    wait_until("the node to go down", Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(&cp).await.is_err()
    })
    .await;
    node.control().send("boot-delay 300ms").await.unwrap();
    same_member("etcd after a reboot").await;
    // Upgrade: the node reboots into the new version.
    let upgrade = kforge_talos_api::UpgradeOptions::new("ghcr.io/siderolabs/installer:v1.12.7");
    admin.upgrade(&Targets::Endpoint, &upgrade).await.unwrap();
    wait_until("the upgraded version", Duration::from_secs(20), || async {
        matches!(admin.version(&Targets::Endpoint).await, Ok(v) if v[0].result.as_ref().is_ok_and(|v| v.tag == "v1.12.7"))
    })
    .await;

    // Graceful stop (SIGTERM) stops etcd too.
    let node = cluster.node_mut(addr).unwrap();
    node.stop(Duration::from_secs(15)).await;
    assert!(pgrep(&data_dir).is_empty());
}
