//! The client against a fake MachineService behind real TLS on 127.0.0.1 (Ed25519 PKI
//! generated per test): TLS modes, node targeting, per-node errors, retries, deadlines,
//! streams, and the operator command output.

mod support;

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;
use kforge_talos_api::commands::{self, OutputFormat};
use kforge_talos_api::server_tls::{maintenance_server_config, mutual_tls_server_config};
use kforge_talos_api::{
    ApplyMode, ApplyOptions, BootstrapOptions, BootstrapOutcome, ConnectionConfig, Error,
    RebootMode, ResetOptions, RetryPolicy, ServiceAction, TalosClient, Targets, UpgradeOptions,
};
use prost::Message;
use support::*;

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_elapsed: Duration::from_secs(10),
    }
}

async fn mtls_server(pki: &Pki, script: Script) -> (RunningServer, FakeMachine) {
    let tls = mutual_tls_server_config(&pki.ca.cert_pem, &pki.server.cert_pem, &pki.server.key_pem)
        .unwrap();
    let fake = FakeMachine::new(script);
    (start(tls, fake.clone()).await, fake)
}

async fn mtls_client(pki: &Pki, endpoints: &[String]) -> TalosClient {
    let config = ConnectionConfig::mutual_tls(
        endpoints,
        &pki.ca.cert_pem,
        &pki.admin.cert_pem,
        &pki.admin.key_pem,
    )
    .unwrap()
    .with_retry(fast_retry())
    .with_call_timeout(Duration::from_secs(10));
    TalosClient::connect(&config).await.unwrap()
}

fn expect_err<T>(r: Result<T, Error>) -> Error {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

/// The error and its whole source chain, as the CLI prints it.
fn chain(e: &Error) -> String {
    let mut out = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        out.push_str(" / caused by: ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[tokio::test]
async fn mutual_tls_with_ed25519_client_cert() {
    let pki = pki();
    let (server, fake) = mtls_server(&pki, Script::default()).await;
    let client = mtls_client(&pki, &[server.endpoint()]).await;

    let replies = client.version(&Targets::Endpoint).await.unwrap();
    assert_eq!(replies.len(), 1);
    // No hostname from a direct (unproxied) reply: the endpoint host names the node.
    assert_eq!(replies[0].node, "127.0.0.1");
    let v = replies[0].result.as_ref().unwrap();
    assert_eq!(v.tag, "v1.12.11");
    assert_eq!(v.rbac, Some(true));

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].client_certificates, 1);
    assert!(calls[0].client_is_os_admin);
    assert!(calls[0].node.is_empty() && calls[0].nodes.is_empty());
    assert!(calls[0].grpc_timeout.is_some(), "per-call deadline is sent");
    assert_eq!(
        fake.recorded.lock().unwrap().paths,
        ["/machine.MachineService/Version"]
    );
}

#[tokio::test]
async fn talos_style_ed25519_private_key_label_is_accepted() {
    let pki = pki();
    let (server, fake) = mtls_server(&pki, Script::default()).await;
    let key = talos_style_ed25519_key(&pki.admin.key_der);
    assert!(
        key.expose()
            .starts_with("-----BEGIN ED25519 PRIVATE KEY-----")
    );
    let config = ConnectionConfig::mutual_tls(
        &[server.endpoint()],
        &pki.ca.cert_pem,
        &pki.admin.cert_pem,
        &key,
    )
    .unwrap();
    let client = TalosClient::connect(&config).await.unwrap();
    let replies = client.hostname(&Targets::Endpoint).await.unwrap();
    assert_eq!(replies[0].result.as_ref().unwrap(), "talos-cp1");
    assert_eq!(fake.calls()[0].client_certificates, 1);
}

#[tokio::test]
async fn mismatched_client_key_is_reported_before_connecting() {
    let pki = pki();
    let other = pki.ca.admin_client_cert();
    let err = ConnectionConfig::mutual_tls(
        &["127.0.0.1"],
        &pki.ca.cert_pem,
        &pki.admin.cert_pem,
        &other.key_pem,
    )
    .unwrap_err();
    assert!(matches!(err, Error::TlsSetup { .. }), "{err}");
    assert!(err.to_string().contains("belong together"), "{err}");
}

#[tokio::test]
async fn insecure_mode_against_self_signed_maintenance_server() {
    let pki = pki();
    let self_signed = self_signed_server();
    let tls = maintenance_server_config(&self_signed.cert_pem, &self_signed.key_pem).unwrap();
    let fake = FakeMachine::new(Script::default());
    let server = start(tls, fake.clone()).await;

    let config = ConnectionConfig::insecure(&[server.endpoint()]).unwrap();
    let client = TalosClient::connect(&config).await.unwrap();
    let replies = client
        .apply_configuration(
            &Targets::Endpoint,
            b"version: v1alpha1\n",
            ApplyOptions::new(ApplyMode::Auto),
        )
        .await
        .unwrap();
    let r = replies[0].result.as_ref().unwrap();
    assert_eq!(r.mode, Some(ApplyMode::Auto));
    assert_eq!(fake.calls()[0].client_certificates, 0);
    let sent = fake.recorded.lock().unwrap().apply_requests[0].encode_to_vec();
    // ... 20 01: field 4 (mode) = AUTO, explicitly on the wire.
    assert!(sent.windows(2).any(|w| w == [0x20, 0x01]), "{sent:02x?}");

    // Verification is only skipped when asked for: the OS CA does not trust this server.
    let verified = mtls_client(&pki, &[server.endpoint()])
        .await
        .with_retry(RetryPolicy::none());
    let err = expect_err(verified.version(&Targets::Endpoint).await);
    let text = chain(&err);
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(
        text.contains("hint: the node's certificate is not signed by the talosconfig CA"),
        "{text}"
    );
    assert_eq!(fake.calls_of("Version"), 0);
}

#[tokio::test]
async fn client_cert_from_another_ca_is_rejected() {
    let pki = pki();
    let (server, fake) = mtls_server(&pki, Script::default()).await;
    let other_ca = Authority::new("other");
    let intruder = other_ca.admin_client_cert();
    let config = ConnectionConfig::mutual_tls(
        &[server.endpoint()],
        &pki.ca.cert_pem,
        &intruder.cert_pem,
        &intruder.key_pem,
    )
    .unwrap()
    .with_retry(fast_retry());
    let client = TalosClient::connect(&config).await.unwrap();
    let started = Instant::now();
    let err = expect_err(client.version(&Targets::Endpoint).await);
    assert!(err.code().is_some(), "{err}");
    let text = err.to_string();
    assert!(text.contains("UnknownCA"), "{text}");
    assert!(
        text.contains("hint: the node rejected the client certificate"),
        "{text}"
    );
    assert!(
        !matches!(err, Error::RetriesExhausted { .. }),
        "a rejected certificate is not retried: {err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn client_without_certificate_is_rejected_by_mutual_tls_server() {
    let pki = pki();
    let (server, fake) = mtls_server(&pki, Script::default()).await;
    let config = ConnectionConfig::insecure(&[server.endpoint()])
        .unwrap()
        .with_retry(RetryPolicy::none());
    let client = TalosClient::connect(&config).await.unwrap();
    let err = expect_err(client.version(&Targets::Endpoint).await);
    assert!(err.to_string().contains("CertificateRequired"), "{err}");
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn plain_tcp_client_is_rejected() {
    let pki = pki();
    let (server, fake) = mtls_server(&pki, Script::default()).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.endpoint()))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let mut raw =
        kforge_talos_api::proto::machine::machine_service_client::MachineServiceClient::new(
            channel,
        );
    let status = raw.version(()).await.unwrap_err();
    assert_ne!(status.code(), tonic::Code::Ok);
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn server_name_must_match_a_san() {
    let pki = pki();
    let (server, fake) = mtls_server(&pki, Script::default()).await;
    // The server certificate has only the IP SAN 127.0.0.1.
    let client = mtls_client(&pki, &[format!("localhost:{}", server.addr.port())])
        .await
        .with_retry(RetryPolicy::none());
    let err = expect_err(client.version(&Targets::Endpoint).await);
    let text = chain(&err);
    assert!(text.contains("not valid for name \"localhost\""), "{text}");
    assert!(
        text.contains("hint: the endpoint address is not in the node's certificate SANs"),
        "{text}"
    );
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn fan_out_sends_nodes_metadata_and_splits_per_node_errors() {
    let pki = pki();
    let script = Script {
        failing_nodes: vec!["10.5.0.3".into()],
        ..Script::default()
    };
    let (server, fake) = mtls_server(&pki, script).await;
    let client = mtls_client(&pki, &[server.endpoint()]).await;
    let targets = Targets::nodes(&["10.5.0.2", "10.5.0.3", "10.5.0.4"]);

    let replies = client.version(&targets).await.unwrap();
    let nodes: Vec<_> = replies.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(nodes, ["10.5.0.2", "10.5.0.3", "10.5.0.4"]);
    assert!(replies[0].result.is_ok() && replies[2].result.is_ok());
    let err = replies[1].result.as_ref().unwrap_err();
    assert_eq!(err.code, Some(tonic::Code::Unavailable));
    assert!(err.message.contains("connection to 10.5.0.3 refused"));

    let call = &fake.calls()[0];
    assert_eq!(call.nodes, ["10.5.0.2", "10.5.0.3", "10.5.0.4"]);
    assert!(call.node.is_empty());

    // The operator command: table rows for the healthy nodes, the failure on stderr.
    let out = commands::version(&client, &targets, OutputFormat::Table)
        .await
        .unwrap();
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout);
    assert!(out.stdout.contains("10.5.0.4   v1.12.11"), "{}", out.stdout);
    assert!(
        out.stderr.contains("* 10.5.0.3: rpc error"),
        "{}",
        out.stderr
    );
    assert_eq!(out.failed_nodes, ["10.5.0.3"]);
    assert!(!out.success());

    let json = commands::version(&client, &targets, OutputFormat::Json)
        .await
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value[0]["reply"]["tag"], "v1.12.11");
    assert_eq!(value[1]["error"]["code"], "Unavailable");
}

#[tokio::test]
async fn single_node_uses_node_metadata() {
    let pki = pki();
    let (server, fake) = mtls_server(&pki, Script::default()).await;
    let client = mtls_client(&pki, &[server.endpoint()]).await;
    let replies = client
        .memory(&Targets::Node("10.5.0.9".into()))
        .await
        .unwrap();
    assert_eq!(replies[0].node, "10.5.0.9");
    assert_eq!(replies[0].result.as_ref().unwrap().directmap1g, 48);
    let call = &fake.calls()[0];
    assert_eq!(call.node, ["10.5.0.9"]);
    assert!(call.nodes.is_empty());
}

#[tokio::test]
async fn unavailable_is_retried_then_succeeds() {
    let pki = pki();
    let script = Script {
        version_unavailable: AtomicU32::new(2),
        ..Script::default()
    };
    let (server, fake) = mtls_server(&pki, script).await;
    let client = mtls_client(&pki, &[server.endpoint()]).await;
    let replies = client.version(&Targets::Endpoint).await.unwrap();
    assert!(replies[0].result.is_ok());
    assert_eq!(fake.calls_of("Version"), 3);
}

#[tokio::test]
async fn retries_are_bounded_and_say_what_they_waited_for() {
    let pki = pki();
    let script = Script {
        version_unavailable: AtomicU32::new(1000),
        ..Script::default()
    };
    let (server, fake) = mtls_server(&pki, script).await;
    let client = mtls_client(&pki, &[server.endpoint()])
        .await
        .with_retry(RetryPolicy {
            max_attempts: 3,
            ..fast_retry()
        });
    let err = expect_err(client.version(&Targets::Endpoint).await);
    match &err {
        Error::RetriesExhausted { attempts, last, .. } => {
            assert_eq!(*attempts, 3);
            assert_eq!(last.code(), Some(tonic::Code::Unavailable));
        }
        other => panic!("unexpected {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("gave up after 3 attempts"), "{text}");
    assert!(
        text.contains("waiting for the Talos API to become available"),
        "{text}"
    );
    assert_eq!(fake.calls_of("Version"), 3);
}

#[tokio::test]
async fn mutating_call_is_not_retried_once_it_reached_the_node() {
    let pki = pki();
    let script = Script {
        reboot_unavailable: AtomicU32::new(1),
        ..Script::default()
    };
    let (server, fake) = mtls_server(&pki, script).await;
    let client = mtls_client(&pki, &[server.endpoint()]).await;
    let err = expect_err(client.reboot(&Targets::Endpoint, RebootMode::Default).await);
    assert!(
        matches!(
            &err,
            Error::Rpc {
                code: tonic::Code::Unavailable,
                operation: "Reboot",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(fake.calls_of("Reboot"), 1);
}

#[tokio::test]
async fn connection_refused_while_booting_is_retried() {
    let pki = pki();
    // Reserve a port, then free it: the "node" is not listening yet.
    let port = free_listener().await.local_addr().unwrap().port();
    let endpoint = format!("127.0.0.1:{port}");
    let client = mtls_client(&pki, std::slice::from_ref(&endpoint))
        .await
        .with_retry(RetryPolicy {
            max_attempts: 40,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
            max_elapsed: Duration::from_secs(15),
        });
    let tls = mutual_tls_server_config(&pki.ca.cert_pem, &pki.server.cert_pem, &pki.server.key_pem)
        .unwrap();
    let fake = FakeMachine::new(Script::default());
    let boot = {
        let fake = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            start_on(listener, tls, fake)
        })
    };
    // Reboot is state-changing; it is still retried because nothing reached the node.
    let replies = client
        .reboot(&Targets::Endpoint, RebootMode::Powercycle)
        .await
        .unwrap();
    let _server = boot.await.unwrap();
    assert_eq!(replies[0].result.as_ref().unwrap().actor_id, "actor-reboot");
    assert_eq!(fake.calls_of("Reboot"), 1);
}

#[tokio::test]
async fn connection_refused_forever_ends_with_a_clear_error() {
    let pki = pki();
    let port = free_listener().await.local_addr().unwrap().port();
    let client = mtls_client(&pki, &[format!("127.0.0.1:{port}")])
        .await
        .with_retry(RetryPolicy {
            max_attempts: 3,
            ..fast_retry()
        });
    let err = expect_err(client.version(&Targets::Endpoint).await);
    let text = err.to_string();
    assert!(text.contains("gave up after 3 attempts"), "{text}");
    assert!(text.contains("to accept connections"), "{text}");
    assert!(
        chain(&err).to_lowercase().contains("refused"),
        "{}",
        chain(&err)
    );
}

#[tokio::test]
async fn fails_over_to_the_next_endpoint() {
    let pki = pki();
    let (server, fake) = mtls_server(&pki, Script::default()).await;
    let dead = free_listener().await.local_addr().unwrap().port();
    let client = mtls_client(&pki, &[format!("127.0.0.1:{dead}"), server.endpoint()])
        .await
        .with_retry(RetryPolicy::none());
    let replies = client.version(&Targets::Endpoint).await.unwrap();
    assert!(replies[0].result.is_ok());
    assert_eq!(fake.calls_of("Version"), 1);
}

#[tokio::test]
async fn deadline_expires_with_a_clear_error() {
    let pki = pki();
    let script = Script {
        version_delay: Duration::from_secs(5),
        ..Script::default()
    };
    let (server, fake) = mtls_server(&pki, script).await;
    let client = mtls_client(&pki, &[server.endpoint()])
        .await
        .with_call_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = expect_err(client.version(&Targets::Endpoint).await);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("Version via 127.0.0.1:"), "{text}");
    assert!(
        text.contains("no reply within the 300ms deadline"),
        "{text}"
    );
    // The deadline travelled as grpc-timeout too, so the node can give up as well.
    let timeout = fake.calls()[0].grpc_timeout.clone().unwrap();
    assert!(timeout.starts_with("300"), "{timeout}");
}

fn kubeconfig_archive(contents: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    let mut header = tar::Header::new_gnu();
    header.set_size(contents.len() as u64);
    header.set_mode(0o600);
    header.set_cksum();
    builder
        .append_data(&mut header, "kubeconfig", contents.as_bytes())
        .unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

#[tokio::test]
async fn kubeconfig_is_reassembled_from_several_chunks() {
    let pki = pki();
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: demo\n  cluster:\n    server: https://10.5.0.2:6443\n# {}\n",
        "x".repeat(5000)
    );
    let archive = kubeconfig_archive(&kubeconfig);
    let mut chunks = Vec::new();
    let mut rest = archive.as_slice();
    for size in [1usize, 7, 100, 33] {
        let (head, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(head.to_vec());
        rest = tail;
    }
    chunks.push(rest.to_vec());
    assert!(chunks.iter().filter(|c| !c.is_empty()).count() >= 4);
    let script = Script {
        kubeconfig_chunks: chunks,
        ..Script::default()
    };
    let (server, fake) = mtls_server(&pki, script).await;
    let client = mtls_client(&pki, &[server.endpoint()]).await;

    let got = commands::kubeconfig(&client, &Targets::nodes(&["10.5.0.2"]))
        .await
        .unwrap();
    assert_eq!(got.expose(), &kubeconfig);
    assert_eq!(fake.calls()[0].nodes, ["10.5.0.2"]);

    let err = expect_err(
        client
            .kubeconfig(&Targets::nodes(&["10.5.0.2", "10.5.0.3"]))
            .await,
    );
    assert!(matches!(err, Error::NeedsOneNode { count: 2, .. }), "{err}");
}

#[tokio::test]
async fn kubeconfig_node_error_is_reported() {
    let pki = pki();
    let script = Script {
        kubeconfig_chunks: vec![vec![1, 2, 3]],
        failing_nodes: vec!["10.5.0.2".into()],
        ..Script::default()
    };
    let (server, _fake) = mtls_server(&pki, script).await;
    let client = mtls_client(&pki, &[server.endpoint()]).await;
    let err = expect_err(client.kubeconfig(&Targets::nodes(&["10.5.0.2"])).await);
    assert!(
        matches!(&err, Error::NodeFailed { node, .. } if node == "10.5.0.2"),
        "{err}"
    );
}

#[tokio::test]
async fn apply_configuration_mode_is_always_explicit_on_the_wire() {
    let pki = pki();
    let (server, fake) = mtls_server(&pki, Script::default()).await;
    let client = mtls_client(&pki, &[server.endpoint()]).await;
    for (mode, value) in [
        (ApplyMode::Auto, 1),
        (ApplyMode::NoReboot, 2),
        (ApplyMode::Staged, 3),
        (ApplyMode::Try, 4),
    ] {
        let mut options = ApplyOptions::new(mode);
        options.dry_run = mode == ApplyMode::Staged;
        let out = commands::apply_config(
            &client,
            &Targets::nodes(&["10.5.0.2"]),
            b"machine: {}\n",
            options,
            OutputFormat::Table,
        )
        .await
        .unwrap();
        assert!(out.stdout.contains(mode.name()), "{}", out.stdout);
        assert!(
            out.stderr
                .contains("WARNING: 10.5.0.2: machine.install.disk")
        );
        let recorded = fake.recorded.lock().unwrap();
        let req = recorded.apply_requests.last().unwrap();
        assert_eq!(req.mode, value);
        assert_eq!(req.dry_run, mode == ApplyMode::Staged);
        assert_eq!(req.try_mode_timeout.is_some(), mode == ApplyMode::Try);
        let bytes = req.encode_to_vec();
        assert!(
            bytes.windows(2).any(|w| w == [0x20, value as u8]),
            "{mode}: {bytes:02x?}"
        );
    }
}

#[tokio::test]
async fn bootstrap_waits_out_transient_refusals() {
    let pki = pki();
    let script = Script {
        bootstrap_errors: std::sync::Mutex::new(
            [
                tonic::Status::failed_precondition("bootstrap is not available yet"),
                tonic::Status::failed_precondition("time is not in sync yet"),
            ]
            .into(),
        ),
        ..Script::default()
    };
    let (server, fake) = mtls_server(&pki, script).await;
    let client = mtls_client(&pki, &[server.endpoint()]).await;
    let options = BootstrapOptions {
        retry: fast_retry(),
        ..BootstrapOptions::default()
    };
    let outcome = client
        .bootstrap(&Targets::Node("10.5.0.2".into()), options)
        .await
        .unwrap();
    assert_eq!(outcome, BootstrapOutcome::Bootstrapped);
    assert_eq!(fake.calls_of("Bootstrap"), 3);
}

#[tokio::test]
async fn bootstrap_is_idempotent_and_does_not_retry_real_refusals() {
    let pki = pki();
    let script = Script {
        bootstrap_errors: std::sync::Mutex::new(
            [
                tonic::Status::already_exists("etcd data directory is not empty"),
                tonic::Status::failed_precondition("bootstrap is not available on worker nodes"),
            ]
            .into(),
        ),
        ..Script::default()
    };
    let (server, fake) = mtls_server(&pki, script).await;
    let client = mtls_client(&pki, &[server.endpoint()]).await;
    let options = BootstrapOptions {
        retry: fast_retry(),
        ..BootstrapOptions::default()
    };
    let out = commands::bootstrap(
        &client,
        &Targets::Node("10.5.0.2".into()),
        options,
        OutputFormat::Table,
    )
    .await
    .unwrap();
    assert!(
        out.stdout.contains("already bootstrapped"),
        "{}",
        out.stdout
    );
    let err = expect_err(
        client
            .bootstrap(&Targets::Node("10.5.0.5".into()), options)
            .await,
    );
    assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition));
    assert_eq!(fake.calls_of("Bootstrap"), 2);
    let err = expect_err(
        client
            .bootstrap(&Targets::nodes(&["a", "b"]), options)
            .await,
    );
    assert!(matches!(err, Error::NeedsOneNode { .. }));
}

#[tokio::test]
async fn bootstrap_gives_up_with_what_it_waited_for() {
    let pki = pki();
    let script = Script {
        bootstrap_errors: std::sync::Mutex::new(
            std::iter::repeat_with(|| {
                tonic::Status::failed_precondition("time is not in sync yet")
            })
            .take(50)
            .collect(),
        ),
        ..Script::default()
    };
    let (server, _fake) = mtls_server(&pki, script).await;
    let client = mtls_client(&pki, &[server.endpoint()]).await;
    let options = BootstrapOptions {
        retry: RetryPolicy {
            max_attempts: 4,
            ..fast_retry()
        },
        ..BootstrapOptions::default()
    };
    let err = expect_err(client.bootstrap(&Targets::Endpoint, options).await);
    let text = err.to_string();
    assert!(text.contains("gave up after 4 attempts"), "{text}");
    assert!(text.contains("the node's clock to be in sync"), "{text}");
}

#[tokio::test]
async fn read_reassembles_files_per_node() {
    let pki = pki();
    let script = Script {
        files: [(
            "/etc/os-release".to_string(),
            b"NAME=Talos\nID=talos\n".to_vec(),
        )]
        .into(),
        ..Script::default()
    };
    let (server, _fake) = mtls_server(&pki, script).await;
    let client = mtls_client(&pki, &[server.endpoint()]).await;
    let replies = client
        .read(&Targets::nodes(&["a", "b"]), "/etc/os-release")
        .await
        .unwrap();
    assert_eq!(replies.len(), 2);
    for r in &replies {
        assert_eq!(r.result.as_ref().unwrap(), b"NAME=Talos\nID=talos\n");
    }
    let out = commands::read(&client, &Targets::Endpoint, "/etc/os-release")
        .await
        .unwrap();
    assert_eq!(out.stdout, b"NAME=Talos\nID=talos\n");
    let err = expect_err(client.read(&Targets::Endpoint, "/nope").await);
    assert_eq!(err.code(), Some(tonic::Code::NotFound));
    assert!(err.to_string().contains("no such file"), "{err}");
}

#[tokio::test]
async fn operator_commands_render_tables_and_json() {
    let pki = pki();
    let (server, fake) = mtls_server(&pki, Script::default()).await;
    let client = mtls_client(&pki, &[server.endpoint()]).await;
    let t = Targets::nodes(&["10.5.0.2"]);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_090);

    let out = commands::services(&client, &t, OutputFormat::Table, now)
        .await
        .unwrap();
    assert_eq!(
        out.stdout,
        "NODE       SERVICE   STATE     HEALTH   LAST CHANGE   LAST EVENT\n\
         10.5.0.2   etcd      Running   OK       1m30s ago     Health check successful\n"
    );

    let out = commands::etcd_members(&client, &t, OutputFormat::Table)
        .await
        .unwrap();
    assert!(
        out.stdout.contains(
            "10.5.0.2   4f3fb4c33808229a   cp1        https://10.5.0.2:2380   https://10.5.0.2:2379   false"
        ),
        "{}",
        out.stdout
    );

    let out = commands::etcd_status(&client, &t, OutputFormat::Table)
        .await
        .unwrap();
    assert!(out.stdout.contains("20 MB"), "{}", out.stdout);
    assert!(out.stdout.contains("10 MB (50.00%)"), "{}", out.stdout);

    let out = commands::memory(&client, &t, OutputFormat::Table, false)
        .await
        .unwrap();
    assert!(
        out.stdout.starts_with("NODE       TOTAL   USED"),
        "{}",
        out.stdout
    );
    let out = commands::memory(&client, &t, OutputFormat::Json, false)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json[0]["reply"]["memtotal"], 8_000_000);
    assert_eq!(json[0]["reply"].as_object().unwrap().len(), 48);

    for action in [
        ServiceAction::Start,
        ServiceAction::Stop,
        ServiceAction::Restart,
    ] {
        let out = commands::service(&client, &t, action, "kubelet", OutputFormat::Table)
            .await
            .unwrap();
        assert!(out.stdout.contains("Service \"kubelet\""), "{}", out.stdout);
    }

    let out = commands::reboot(&client, &t, RebootMode::Default, OutputFormat::Table)
        .await
        .unwrap();
    assert!(out.stdout.contains("actor-reboot"));
    let out = commands::reset(&client, &t, &ResetOptions::default(), OutputFormat::Json)
        .await
        .unwrap();
    assert!(
        out.stdout.contains("\"actor_id\": \"actor-reset\""),
        "{}",
        out.stdout
    );
    let out = commands::upgrade(
        &client,
        &t,
        &UpgradeOptions::new("ghcr.io/siderolabs/installer:v1.12.11"),
        OutputFormat::Table,
    )
    .await
    .unwrap();
    assert!(out.stdout.contains("installer:v1.12.11"), "{}", out.stdout);

    let paths = fake.recorded.lock().unwrap().paths.clone();
    for method in [
        "ServiceList",
        "EtcdMemberList",
        "EtcdStatus",
        "Memory",
        "ServiceStart",
        "ServiceStop",
        "ServiceRestart",
        "Reboot",
        "Reset",
        "Upgrade",
    ] {
        let path = format!("/machine.MachineService/{method}");
        assert!(paths.contains(&path), "{path} not in {paths:?}");
    }
}
