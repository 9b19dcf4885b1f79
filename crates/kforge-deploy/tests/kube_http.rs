//! The HTTPS Kubernetes client against a small API server on 127.0.0.1 that requires a
//! client certificate (rustls, like kube-apiserver), with a PKI made by rcgen (ECDSA P-256,
//! as Talos' Kubernetes CA).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use kforge_deploy::api::{KubeApi, KubeErrorKind};
use kforge_deploy::kube_http::{HttpKubeApi, HttpKubeOptions};
use kforge_secret::SecretString;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

fn leaf(ca: &Ca, server: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    if server {
        p.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    } else {
        p.distinguished_name.push(DnType::CommonName, "admin");
        p.distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    content_type: String,
    body: String,
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn respond(status: u16, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        _ => "Other",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn route(method: &str, target: &str, body: &str) -> Vec<u8> {
    match (method, target) {
        ("GET", "/readyz") => respond(200, "ok"),
        ("GET", "/api/v1") => respond(
            200,
            r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[
                {"name":"nodes","kind":"Node","namespaced":false},
                {"name":"nodes/status","kind":"Node","namespaced":false},
                {"name":"configmaps","kind":"ConfigMap","namespaced":true},
                {"name":"pods","kind":"Pod","namespaced":true}]}"#,
        ),
        ("GET", "/apis/scheduling.k8s.io/v1") => respond(
            200,
            r#"{"kind":"APIResourceList","resources":[{"name":"priorityclasses","kind":"PriorityClass","namespaced":false}]}"#,
        ),
        ("GET", "/api/v1/nodes") => respond(
            200,
            r#"{"kind":"NodeList","items":[{"metadata":{"name":"w","labels":{"x":"y"}},
                "status":{"conditions":[{"type":"Ready","status":"True"}],
                          "capacity":{"hugepages-2Mi":"100Gi"}}}]}"#,
        ),
        ("PATCH", t)
            if t.starts_with("/apis/scheduling.k8s.io/v1/priorityclasses/solana-critical?") =>
        {
            respond(200, body)
        }
        ("PATCH", t) if t.starts_with("/api/v1/namespaces/default/configmaps/bad?") => respond(
            422,
            r#"{"kind":"Status","status":"Failure","message":"ConfigMap \"bad\" is invalid: data: Invalid value","code":422}"#,
        ),
        ("GET", "/api/v1/namespaces/kube-system/pods?labelSelector=tier%3Dcontrol-plane") => {
            respond(
                200,
                r#"{"kind":"PodList","items":[{"metadata":{"name":"kube-apiserver-cp-1"}}]}"#,
            )
        }
        _ => respond(404, r#"{"kind":"Status","message":"not found","code":404}"#),
    }
}

async fn serve(ca_pem: &str, cert: &str, key: &str, delay: Duration) -> Server {
    let config = kforge_talos_api::server_tls::mutual_tls_server_config(
        ca_pem,
        cert,
        &SecretString::from(key.to_string()),
    )
    .unwrap();
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.lines();
                let mut first = lines.next().unwrap_or_default().split(' ');
                let method = first.next().unwrap_or_default().to_string();
                let target = first.next().unwrap_or_default().to_string();
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                        })
                        .unwrap_or_default()
                };
                let len: usize = header("content-length").parse().unwrap_or(0);
                while buf.len() < head_end + len {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
                log.lock().unwrap().push(Seen {
                    method: method.clone(),
                    target: target.clone(),
                    content_type: header("content-type"),
                    body: body.clone(),
                });
                tokio::time::sleep(delay).await;
                let _ = tls.write_all(&route(&method, &target, &body)).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server { addr, seen, task }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn kubeconfig(addr: SocketAddr, ca_pem: &str, crt: &str, key: &str) -> SecretString {
    SecretString::from(format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: https://{addr}\n    certificate-authority-data: {}\nusers:\n- name: admin@t\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: admin@t\n  context:\n    cluster: t\n    user: admin@t\ncurrent-context: admin@t\n",
        b64(ca_pem),
        b64(crt),
        b64(key)
    ))
}

#[tokio::test]
async fn talks_to_an_mtls_api_server() {
    let k8s = ca("kubernetes");
    let (server_crt, server_key) = leaf(&k8s, true);
    let (client_crt, client_key) = leaf(&k8s, false);
    let server = serve(&k8s.pem, &server_crt, &server_key, Duration::ZERO).await;
    let api = HttpKubeApi::from_kubeconfig(
        &kubeconfig(server.addr, &k8s.pem, &client_crt, &client_key),
        HttpKubeOptions::default(),
    )
    .unwrap();

    let r = api.readyz().await.unwrap();
    assert!(r.ok && r.detail == "ok");
    assert!(api.readyz_via("127.0.0.1").await.unwrap().ok);

    let nodes = api.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].ready, Some(true));
    assert_eq!(nodes[0].capacity["hugepages-2Mi"], "100Gi");

    let pc = serde_json::json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "solana-critical"}, "value": 1000000
    });
    let stored = api.server_side_apply(&pc, "kforge").await.unwrap();
    assert_eq!(stored, pc);

    let cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "bad", "namespace": "default"}, "data": {"x": 1}
    });
    let e = api.server_side_apply(&cm, "kforge").await.unwrap_err();
    assert_eq!(e.kind, KubeErrorKind::Invalid);
    assert_eq!(e.status, Some(422));
    assert!(
        e.to_string()
            .ends_with("ConfigMap \"bad\" is invalid: data: Invalid value"),
        "{e}"
    );

    assert!(
        api.get("v1", "ConfigMap", Some("default"), "missing")
            .await
            .unwrap()
            .is_none()
    );
    let pods = api
        .list("v1", "Pod", Some("kube-system"), Some("tier=control-plane"))
        .await
        .unwrap();
    assert_eq!(pods.len(), 1);

    let e = api
        .server_side_apply(
            &serde_json::json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "x"}}),
            "kforge",
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, KubeErrorKind::UnknownKind);

    let seen = server.seen.lock().unwrap().clone();
    let patch = seen
        .iter()
        .find(|s| s.method == "PATCH" && s.target.contains("priorityclasses"))
        .unwrap();
    assert_eq!(
        patch.target,
        "/apis/scheduling.k8s.io/v1/priorityclasses/solana-critical?fieldManager=kforge&force=true"
    );
    assert_eq!(patch.content_type, "application/apply-patch+yaml");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&patch.body).unwrap(),
        pc
    );
    // Discovery is cached: one lookup per group version.
    assert_eq!(seen.iter().filter(|s| s.target == "/api/v1").count(), 1);
}

#[tokio::test]
async fn a_server_from_another_ca_is_not_trusted() {
    let k8s = ca("kubernetes");
    let other = ca("other");
    let (server_crt, server_key) = leaf(&other, true);
    let (client_crt, client_key) = leaf(&k8s, false);
    // The server trusts our client; we must not trust it.
    let server = serve(&k8s.pem, &server_crt, &server_key, Duration::ZERO).await;
    let api = HttpKubeApi::from_kubeconfig(
        &kubeconfig(server.addr, &k8s.pem, &client_crt, &client_key),
        HttpKubeOptions::default(),
    )
    .unwrap();
    let e = api.readyz().await.unwrap_err();
    assert_eq!(e.kind, KubeErrorKind::Tls, "{e}");
    assert!(
        kforge_deploy::api::error_chain(&e).contains("UnknownIssuer"),
        "{}",
        kforge_deploy::api::error_chain(&e)
    );
    assert!(server.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_rejected() {
    let k8s = ca("kubernetes");
    let other = ca("other");
    let (server_crt, server_key) = leaf(&k8s, true);
    let (client_crt, client_key) = leaf(&other, false);
    let server = serve(&k8s.pem, &server_crt, &server_key, Duration::ZERO).await;
    let api = HttpKubeApi::from_kubeconfig(
        &kubeconfig(server.addr, &k8s.pem, &client_crt, &client_key),
        HttpKubeOptions::default(),
    )
    .unwrap();
    let e = api.readyz().await.unwrap_err();
    assert!(
        e.kind == KubeErrorKind::Unauthorized,
        "{}",
        kforge_deploy::api::error_chain(&e)
    );
    assert!(
        server.seen.lock().unwrap().is_empty(),
        "no request got through"
    );
}

#[tokio::test]
async fn slow_servers_hit_the_request_deadline() {
    let k8s = ca("kubernetes");
    let (server_crt, server_key) = leaf(&k8s, true);
    let (client_crt, client_key) = leaf(&k8s, false);
    let server = serve(&k8s.pem, &server_crt, &server_key, Duration::from_secs(30)).await;
    let api = HttpKubeApi::from_kubeconfig(
        &kubeconfig(server.addr, &k8s.pem, &client_crt, &client_key),
        HttpKubeOptions {
            request_timeout: Duration::from_millis(300),
            ..HttpKubeOptions::default()
        },
    )
    .unwrap();
    let started = std::time::Instant::now();
    let e = api.readyz().await.unwrap_err();
    assert_eq!(e.kind, KubeErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn unusable_kubeconfigs_are_explained_without_secrets() {
    let e = HttpKubeApi::from_kubeconfig(
        &SecretString::from(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: https://127.0.0.1:6443\nusers:\n- name: u\n  user:\n    client-key-data: U0VDUkVUS0VZ\ncontexts:\n- name: c\n  context: {cluster: t, user: u}\ncurrent-context: c\n"
                .to_string(),
        ),
        HttpKubeOptions::default(),
    )
    .err()
    .unwrap();
    assert_eq!(e.kind, KubeErrorKind::Kubeconfig);
    assert!(e.to_string().contains("certificate-authority-data"), "{e}");
    assert!(!e.to_string().contains("U0VDUkVUS0VZ"));
}
