//! The real `TalosApi` adapter against a gRPC MachineService on 127.0.0.1 over real TLS:
//! a configured node (mutual TLS with the OS CA), a node in maintenance mode (self-signed
//! certificate, Version refused as in Talos' maintenance server), wrong credentials, a
//! node that is not there, and Bootstrap's answers.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use kforge_deploy::api::{ApiErrorKind, ApplyAuth, BootstrapOutcome, NodeApi, NodeMode};
use kforge_deploy::desired::{NodeRef, Role};
use kforge_deploy::talos::{TalosApi, TalosApiOptions, TalosCredentials};
use kforge_secret::SecretString;
use kforge_talos_api::proto::common::Data;
use kforge_talos_api::proto::machine as pb;
use kforge_talos_api::proto::machine::machine_service_server::{
    MachineService, MachineServiceServer,
};
use kforge_talos_api::server_tls::{
    maintenance_server_config, mutual_tls_server_config, tls_incoming,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519, SanType,
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca() -> Ca {
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::OrganizationName, "talos");
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

fn leaf(ca: Option<&Ca>, server: bool) -> (String, SecretString) {
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    if server {
        p.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    } else {
        p.distinguished_name
            .push(DnType::OrganizationName, "os:admin");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = match ca {
        Some(ca) => p.signed_by(&key, &ca.issuer).unwrap(),
        None => p.self_signed(&key).unwrap(),
    };
    (cert.pem(), SecretString::from(key.serialize_pem()))
}

#[derive(Default)]
struct Node {
    maintenance: bool,
    bootstrap_answers: Mutex<VecDeque<Status>>,
    files: HashMap<String, Vec<u8>>,
    applied_modes: Mutex<Vec<i32>>,
}

type DataStream = Pin<Box<dyn futures::Stream<Item = Result<Data, Status>> + Send + 'static>>;

fn unimplemented<T>() -> Result<T, Status> {
    Err(Status::unimplemented("not in this test"))
}

/// The service handle (tonic needs an owned, cloneable type).
struct Svc(Arc<Node>);

impl std::ops::Deref for Svc {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.0
    }
}

#[tonic::async_trait]
impl MachineService for Svc {
    async fn apply_configuration(
        &self,
        request: Request<pb::ApplyConfigurationRequest>,
    ) -> Result<Response<pb::ApplyConfigurationResponse>, Status> {
        let req = request.into_inner();
        self.applied_modes.lock().unwrap().push(req.mode);
        Ok(Response::new(pb::ApplyConfigurationResponse {
            messages: vec![pb::ApplyConfiguration {
                metadata: None,
                warnings: vec![],
                mode: req.mode,
                mode_details: "applied".into(),
            }],
        }))
    }
    async fn bootstrap(
        &self,
        _request: Request<pb::BootstrapRequest>,
    ) -> Result<Response<pb::BootstrapResponse>, Status> {
        if let Some(s) = self.bootstrap_answers.lock().unwrap().pop_front() {
            return Err(s);
        }
        Ok(Response::new(pb::BootstrapResponse {
            messages: vec![pb::Bootstrap { metadata: None }],
        }))
    }
    async fn etcd_member_list(
        &self,
        _request: Request<pb::EtcdMemberListRequest>,
    ) -> Result<Response<pb::EtcdMemberListResponse>, Status> {
        Ok(Response::new(pb::EtcdMemberListResponse {
            messages: vec![pb::EtcdMembers {
                metadata: None,
                legacy_members: vec![],
                members: vec![pb::EtcdMember {
                    id: 7,
                    hostname: "cp-1".into(),
                    peer_urls: vec![],
                    client_urls: vec![],
                    is_learner: false,
                }],
            }],
        }))
    }
    async fn etcd_status(
        &self,
        _request: Request<()>,
    ) -> Result<Response<pb::EtcdStatusResponse>, Status> {
        unimplemented()
    }
    async fn hostname(
        &self,
        _request: Request<()>,
    ) -> Result<Response<pb::HostnameResponse>, Status> {
        unimplemented()
    }
    type KubeconfigStream = DataStream;
    async fn kubeconfig(
        &self,
        _request: Request<()>,
    ) -> Result<Response<Self::KubeconfigStream>, Status> {
        unimplemented()
    }
    async fn memory(&self, _request: Request<()>) -> Result<Response<pb::MemoryResponse>, Status> {
        unimplemented()
    }
    type ReadStream = DataStream;
    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let path = request.into_inner().path;
        match self.files.get(&path) {
            None => Err(Status::not_found(format!(
                "open {path}: no such file or directory"
            ))),
            Some(bytes) => {
                let chunks: Vec<Result<Data, Status>> = bytes
                    .chunks(7)
                    .map(|c| {
                        Ok(Data {
                            metadata: None,
                            bytes: c.to_vec(),
                        })
                    })
                    .collect();
                Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
            }
        }
    }
    async fn reboot(
        &self,
        _request: Request<pb::RebootRequest>,
    ) -> Result<Response<pb::RebootResponse>, Status> {
        unimplemented()
    }
    async fn reset(
        &self,
        _request: Request<pb::ResetRequest>,
    ) -> Result<Response<pb::ResetResponse>, Status> {
        unimplemented()
    }
    async fn service_list(
        &self,
        _request: Request<()>,
    ) -> Result<Response<pb::ServiceListResponse>, Status> {
        unimplemented()
    }
    async fn service_restart(
        &self,
        _request: Request<pb::ServiceRestartRequest>,
    ) -> Result<Response<pb::ServiceRestartResponse>, Status> {
        unimplemented()
    }
    async fn service_start(
        &self,
        _request: Request<pb::ServiceStartRequest>,
    ) -> Result<Response<pb::ServiceStartResponse>, Status> {
        unimplemented()
    }
    async fn service_stop(
        &self,
        _request: Request<pb::ServiceStopRequest>,
    ) -> Result<Response<pb::ServiceStopResponse>, Status> {
        unimplemented()
    }
    async fn upgrade(
        &self,
        _request: Request<pb::UpgradeRequest>,
    ) -> Result<Response<pb::UpgradeResponse>, Status> {
        unimplemented()
    }
    async fn version(
        &self,
        _request: Request<()>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        if self.maintenance {
            // What Talos' maintenance server answers to a reader-role (insecure) client.
            return Err(Status::unimplemented(
                "API is not implemented in maintenance mode",
            ));
        }
        Ok(Response::new(pb::VersionResponse {
            messages: vec![pb::Version {
                metadata: None,
                version: Some(pb::VersionInfo {
                    tag: "v1.12.0".into(),
                    ..Default::default()
                }),
                platform: None,
                features: None,
            }],
        }))
    }
}

struct Running {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn serve(node: Arc<Node>, tls: Arc<rustls::ServerConfig>) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(MachineServiceServer::new(Svc(node)))
            .serve_with_incoming_shutdown(tls_incoming(listener, tls), async {
                let _ = rx.await;
            })
            .await;
    });
    Running {
        port,
        stop: Some(tx),
    }
}

fn api(os_ca: &Ca, client: (String, SecretString), port: u16) -> (TalosApi, NodeRef) {
    let node = NodeRef::new("cp-1", "10.0.1.11", Role::ControlPlane);
    let mut options = TalosApiOptions::default();
    options
        .endpoint_overrides
        .insert(node.address.clone(), format!("127.0.0.1:{port}"));
    let api = TalosApi::new(
        TalosCredentials {
            ca_pem: os_ca.pem.clone(),
            crt_pem: client.0,
            key_pem: client.1,
        },
        options,
    );
    (api, node)
}

#[tokio::test]
async fn configured_node_over_mutual_tls() {
    let os = ca();
    let (crt, key) = leaf(Some(&os), true);
    let node = Arc::new(Node {
        files: HashMap::from([(
            "/system/state/config.yaml".to_string(),
            b"version: v1alpha1\nmachine:\n  type: controlplane\n".to_vec(),
        )]),
        bootstrap_answers: Mutex::new(VecDeque::from([
            Status::failed_precondition("bootstrap is not available yet"),
            Status::already_exists("etcd data directory is not empty"),
        ])),
        ..Node::default()
    });
    let server = serve(
        node.clone(),
        mutual_tls_server_config(&os.pem, &crt, &key).unwrap(),
    )
    .await;
    let (api, n) = api(&os, leaf(Some(&os), false), server.port);

    assert_eq!(
        api.probe(&n).await.unwrap(),
        NodeMode::Configured {
            version: "v1.12.0".into()
        }
    );
    let running = api.running_config(&n).await.unwrap();
    assert!(running.expose().contains("type: controlplane"));
    let missing = api
        .read_file(&n, "/etc/kubernetes/kubelet.yaml")
        .await
        .unwrap_err();
    assert_eq!(missing.kind, ApiErrorKind::NotFound);
    assert_eq!(api.etcd_members(&n).await.unwrap()[0].hostname, "cp-1");

    let r = api
        .apply_config(
            &n,
            &SecretString::from("x: 1\n".to_string()),
            ApplyAuth::Authenticated,
        )
        .await
        .unwrap();
    assert_eq!(r.mode.as_deref(), Some("auto"));
    // AUTO on the wire (1), never the REBOOT default (0).
    assert_eq!(*node.applied_modes.lock().unwrap(), [1]);

    let not_yet = api.bootstrap(&n).await.unwrap_err();
    assert_eq!(not_yet.kind, ApiErrorKind::NotReady, "{}", not_yet.chain());
    assert_eq!(
        api.bootstrap(&n).await.unwrap(),
        BootstrapOutcome::AlreadyBootstrapped
    );
    assert_eq!(
        api.bootstrap(&n).await.unwrap(),
        BootstrapOutcome::Bootstrapped
    );
}

#[tokio::test]
async fn maintenance_mode_is_detected_and_takes_an_insecure_apply() {
    let os = ca();
    let (crt, key) = leaf(None, true); // self-signed, as a node in maintenance mode
    let node = Arc::new(Node {
        maintenance: true,
        ..Node::default()
    });
    let server = serve(node.clone(), maintenance_server_config(&crt, &key).unwrap()).await;
    let (api, n) = api(&os, leaf(Some(&os), false), server.port);

    assert_eq!(api.probe(&n).await.unwrap(), NodeMode::Maintenance);
    // Authenticated calls do not trust the node's certificate.
    let e = api.version(&n).await.unwrap_err();
    assert_eq!(e.kind, ApiErrorKind::UntrustedNode, "{}", e.chain());
    api.apply_config(
        &n,
        &SecretString::from("x: 1\n".to_string()),
        ApplyAuth::Insecure,
    )
    .await
    .unwrap();
    assert_eq!(*node.applied_modes.lock().unwrap(), [1]);
}

#[tokio::test]
async fn wrong_credentials_are_rejected_not_mistaken_for_maintenance() {
    let os = ca();
    let other = ca();
    let (crt, key) = leaf(Some(&os), true);
    let server = serve(
        Arc::new(Node::default()),
        mutual_tls_server_config(&os.pem, &crt, &key).unwrap(),
    )
    .await;
    // A client certificate from another cluster's CA.
    let (api, n) = api(&os, leaf(Some(&other), false), server.port);
    let e = api.probe(&n).await.unwrap_err();
    assert_eq!(e.kind, ApiErrorKind::AuthRejected, "{}", e.chain());
    assert!(
        e.to_string()
            .contains("hint: check that the talosconfig belongs to this cluster")
    );
}

#[tokio::test]
async fn a_node_that_is_not_there_is_unreachable() {
    let os = ca();
    // Bind and drop to get a port nobody listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let (api, n) = api(&os, leaf(Some(&os), false), port);
    let e = api.probe(&n).await.unwrap_err();
    assert_eq!(e.kind, ApiErrorKind::Unreachable, "{}", e.chain());
    assert!(e.kind.is_transient());
}
