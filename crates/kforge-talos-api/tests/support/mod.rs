//! Test support: an Ed25519 PKI shaped like Talos' (rcgen), and a fake MachineService that
//! behaves like apid (node/nodes metadata, per-node `metadata.error`) behind real TLS on
//! 127.0.0.1. Servers stop when their guard is dropped, also when a test fails.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kforge_secret::SecretString;
use kforge_talos_api::proto::common::{Data, Metadata};
use kforge_talos_api::proto::google::rpc::Status as RpcStatus;
use kforge_talos_api::proto::machine as pb;
use kforge_talos_api::proto::machine::machine_service_server::{
    MachineService, MachineServiceServer,
};
use kforge_talos_api::server_tls::{TlsPeer, tls_incoming};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519, SanType,
};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

// ---------------------------------------------------------------- PKI

pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: SecretString,
    pub key_der: Vec<u8>,
}

pub struct Authority {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    /// An Ed25519 CA like Talos' OS CA (`O=talos`).
    pub fn new(org: &str) -> Authority {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        Authority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// apid's server certificate: Ed25519, IP SAN, ServerAuth.
    pub fn server_cert(&self, ip: IpAddr) -> CertAndKey {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "talos-node");
        params.subject_alt_names = vec![SanType::IpAddress(ip)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        cert_and_key(cert.pem(), &key)
    }

    /// talosctl's admin certificate: Ed25519, ExtKeyUsage ClientAuth only, `O=os:admin`.
    pub fn admin_client_cert(&self) -> CertAndKey {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "os:admin");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        cert_and_key(cert.pem(), &key)
    }
}

fn cert_and_key(cert_pem: String, key: &KeyPair) -> CertAndKey {
    CertAndKey {
        cert_pem,
        key_pem: SecretString::new(key.serialize_pem()),
        key_der: key.serialize_der(),
    }
}

/// The key as Talos writes it: Go's `x509.MarshalPKCS8PrivateKey` (PKCS#8 v1, seed only)
/// under the PEM label `ED25519 PRIVATE KEY`.
pub fn talos_style_ed25519_key(key_der: &[u8]) -> SecretString {
    // ring's PKCS#8 v2 document: SEQUENCE header, version 1, the Ed25519 OID, the 32-byte
    // seed as an OCTET STRING in an OCTET STRING, then the public key.
    const V2_AFTER_HEADER: [u8; 14] = [
        0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    assert_eq!(key_der[0], 0x30);
    assert_eq!(
        key_der[2..16],
        V2_AFTER_HEADER,
        "unexpected Ed25519 PKCS#8 layout"
    );
    let seed = &key_der[16..48];
    let mut v1 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    v1.extend_from_slice(seed);
    SecretString::new(pem::encode(&pem::Pem::new("ED25519 PRIVATE KEY", v1)))
}

/// A self-signed server certificate, like a node in maintenance mode presents.
pub fn self_signed_server() -> CertAndKey {
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    let cert = params.self_signed(&key).unwrap();
    cert_and_key(cert.pem(), &key)
}

pub struct Pki {
    pub ca: Authority,
    pub server: CertAndKey,
    pub admin: CertAndKey,
}

pub fn pki() -> Pki {
    let ca = Authority::new("talos");
    let server = ca.server_cert(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let admin = ca.admin_client_cert();
    Pki { ca, server, admin }
}

// ---------------------------------------------------------------- fake apid

#[derive(Clone, Debug)]
pub struct Call {
    pub method: &'static str,
    pub node: Vec<String>,
    pub nodes: Vec<String>,
    pub grpc_timeout: Option<String>,
    pub client_certificates: usize,
    pub client_is_os_admin: bool,
}

#[derive(Default)]
pub struct Recorded {
    pub calls: Vec<Call>,
    pub apply_requests: Vec<pb::ApplyConfigurationRequest>,
    pub paths: Vec<String>,
}

/// What the fake node does.
#[derive(Default)]
pub struct Script {
    /// Version answers Unavailable this many times before succeeding.
    pub version_unavailable: AtomicU32,
    /// Version sleeps this long before answering.
    pub version_delay: Duration,
    /// Reboot answers Unavailable this many times before succeeding.
    pub reboot_unavailable: AtomicU32,
    /// Nodes (as targeted through `nodes`) whose reply carries `metadata.error`.
    pub failing_nodes: Vec<String>,
    /// The Kubeconfig stream, chunk by chunk.
    pub kubeconfig_chunks: Vec<Vec<u8>>,
    /// Statuses Bootstrap returns, in order, before succeeding.
    pub bootstrap_errors: Mutex<VecDeque<Status>>,
    /// Files for Read, per path.
    pub files: HashMap<String, Vec<u8>>,
}

#[derive(Clone)]
pub struct FakeMachine {
    pub recorded: Arc<Mutex<Recorded>>,
    pub script: Arc<Script>,
}

impl FakeMachine {
    pub fn new(script: Script) -> Self {
        FakeMachine {
            recorded: Arc::default(),
            script: Arc::new(script),
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.recorded.lock().unwrap().calls.clone()
    }

    pub fn calls_of(&self, method: &str) -> usize {
        self.calls().iter().filter(|c| c.method == method).count()
    }

    fn record<T>(&self, method: &'static str, req: &Request<T>) -> Vec<Option<String>> {
        let md = req.metadata();
        let values = |key: &str| -> Vec<String> {
            md.get_all(key)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect()
        };
        let peer = req.extensions().get::<TlsPeer>();
        let certs = peer.map(|p| p.client_certificates.len()).unwrap_or(0);
        let os_admin = peer
            .and_then(|p| p.client_certificates.first())
            .is_some_and(|c| c.windows(8).any(|w| w == b"os:admin"));
        let call = Call {
            method,
            node: values("node"),
            nodes: values("nodes"),
            grpc_timeout: md
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            client_certificates: certs,
            client_is_os_admin: os_admin,
        };
        // apid: `nodes` fans out with hostnames; `node` or nothing answers without one.
        let targets = if call.nodes.is_empty() {
            vec![None]
        } else {
            call.nodes.iter().cloned().map(Some).collect()
        };
        self.recorded.lock().unwrap().calls.push(call);
        targets
    }

    fn metadata(&self, target: &Option<String>) -> Option<Metadata> {
        let host = target.as_ref()?;
        if self.script.failing_nodes.contains(host) {
            let message =
                format!("rpc error: code = Unavailable desc = connection to {host} refused");
            return Some(Metadata {
                hostname: host.clone(),
                error: message.clone(),
                status: Some(RpcStatus {
                    code: 14,
                    message,
                    details: vec![],
                }),
            });
        }
        Some(Metadata {
            hostname: host.clone(),
            ..Default::default()
        })
    }
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

type DataStream = Pin<Box<dyn Stream<Item = Result<Data, Status>> + Send + 'static>>;

pub fn meminfo() -> pb::MemInfo {
    pb::MemInfo {
        memtotal: 8_000_000,
        memfree: 4_000_000,
        memavailable: 6_000_000,
        buffers: 100_000,
        cached: 1_000_000,
        directmap1g: 48,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl MachineService for FakeMachine {
    async fn apply_configuration(
        &self,
        request: Request<pb::ApplyConfigurationRequest>,
    ) -> Result<Response<pb::ApplyConfigurationResponse>, Status> {
        let targets = self.record("ApplyConfiguration", &request);
        let req = request.into_inner();
        let mode = req.mode;
        self.recorded.lock().unwrap().apply_requests.push(req);
        Ok(Response::new(pb::ApplyConfigurationResponse {
            messages: targets
                .iter()
                .map(|t| pb::ApplyConfiguration {
                    metadata: self.metadata(t),
                    warnings: vec!["machine.install.disk is unused in container mode".into()],
                    mode,
                    mode_details: "Applied configuration without a reboot".into(),
                })
                .collect(),
        }))
    }

    async fn bootstrap(
        &self,
        request: Request<pb::BootstrapRequest>,
    ) -> Result<Response<pb::BootstrapResponse>, Status> {
        let targets = self.record("Bootstrap", &request);
        if let Some(status) = self.script.bootstrap_errors.lock().unwrap().pop_front() {
            return Err(status);
        }
        Ok(Response::new(pb::BootstrapResponse {
            messages: targets
                .iter()
                .map(|t| pb::Bootstrap {
                    metadata: self.metadata(t),
                })
                .collect(),
        }))
    }

    async fn etcd_member_list(
        &self,
        request: Request<pb::EtcdMemberListRequest>,
    ) -> Result<Response<pb::EtcdMemberListResponse>, Status> {
        let targets = self.record("EtcdMemberList", &request);
        Ok(Response::new(pb::EtcdMemberListResponse {
            messages: targets
                .iter()
                .map(|t| pb::EtcdMembers {
                    metadata: self.metadata(t),
                    legacy_members: vec![],
                    members: vec![pb::EtcdMember {
                        id: 0x4f3f_b4c3_3808_229a,
                        hostname: "cp1".into(),
                        peer_urls: vec!["https://10.5.0.2:2380".into()],
                        client_urls: vec!["https://10.5.0.2:2379".into()],
                        is_learner: false,
                    }],
                })
                .collect(),
        }))
    }

    async fn etcd_status(
        &self,
        request: Request<()>,
    ) -> Result<Response<pb::EtcdStatusResponse>, Status> {
        let targets = self.record("EtcdStatus", &request);
        Ok(Response::new(pb::EtcdStatusResponse {
            messages: targets
                .iter()
                .map(|t| pb::EtcdStatus {
                    metadata: self.metadata(t),
                    member_status: Some(pb::EtcdMemberStatus {
                        member_id: 0x4f3f_b4c3_3808_229a,
                        protocol_version: "3.6.0".into(),
                        storage_version: "3.6.0".into(),
                        db_size: 20_480_000,
                        db_size_in_use: 10_240_000,
                        leader: 0x4f3f_b4c3_3808_229a,
                        raft_index: 100,
                        raft_term: 2,
                        raft_applied_index: 100,
                        errors: vec![],
                        is_learner: false,
                    }),
                })
                .collect(),
        }))
    }

    async fn hostname(
        &self,
        request: Request<()>,
    ) -> Result<Response<pb::HostnameResponse>, Status> {
        let targets = self.record("Hostname", &request);
        Ok(Response::new(pb::HostnameResponse {
            messages: targets
                .iter()
                .map(|t| pb::Hostname {
                    metadata: self.metadata(t),
                    hostname: "talos-cp1".into(),
                })
                .collect(),
        }))
    }

    type KubeconfigStream = DataStream;

    async fn kubeconfig(
        &self,
        request: Request<()>,
    ) -> Result<Response<Self::KubeconfigStream>, Status> {
        let targets = self.record("Kubeconfig", &request);
        let mut chunks = Vec::new();
        for t in &targets {
            for c in &self.script.kubeconfig_chunks {
                chunks.push(Ok(Data {
                    metadata: self.metadata(t),
                    bytes: c.clone(),
                }));
            }
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn memory(&self, request: Request<()>) -> Result<Response<pb::MemoryResponse>, Status> {
        let targets = self.record("Memory", &request);
        Ok(Response::new(pb::MemoryResponse {
            messages: targets
                .iter()
                .map(|t| pb::Memory {
                    metadata: self.metadata(t),
                    meminfo: Some(meminfo()),
                })
                .collect(),
        }))
    }

    type ReadStream = DataStream;

    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let targets = self.record("Read", &request);
        let path = request.into_inner().path;
        let Some(contents) = self.script.files.get(&path) else {
            return Err(Status::not_found(format!(
                "open {path}: no such file or directory"
            )));
        };
        // Interleave the nodes' chunks (3 bytes each) as a fan-out stream would.
        let pieces: Vec<&[u8]> = contents.chunks(3).collect();
        let mut chunks = Vec::new();
        for piece in pieces {
            for t in &targets {
                chunks.push(Ok(Data {
                    metadata: self.metadata(t),
                    bytes: piece.to_vec(),
                }));
            }
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn reboot(
        &self,
        request: Request<pb::RebootRequest>,
    ) -> Result<Response<pb::RebootResponse>, Status> {
        let targets = self.record("Reboot", &request);
        if take_one(&self.script.reboot_unavailable) {
            return Err(Status::unavailable("shutting down"));
        }
        Ok(Response::new(pb::RebootResponse {
            messages: targets
                .iter()
                .map(|t| pb::Reboot {
                    metadata: self.metadata(t),
                    actor_id: "actor-reboot".into(),
                })
                .collect(),
        }))
    }

    async fn reset(
        &self,
        request: Request<pb::ResetRequest>,
    ) -> Result<Response<pb::ResetResponse>, Status> {
        let targets = self.record("Reset", &request);
        Ok(Response::new(pb::ResetResponse {
            messages: targets
                .iter()
                .map(|t| pb::Reset {
                    metadata: self.metadata(t),
                    actor_id: "actor-reset".into(),
                })
                .collect(),
        }))
    }

    async fn service_list(
        &self,
        request: Request<()>,
    ) -> Result<Response<pb::ServiceListResponse>, Status> {
        let targets = self.record("ServiceList", &request);
        Ok(Response::new(pb::ServiceListResponse {
            messages: targets
                .iter()
                .map(|t| pb::ServiceList {
                    metadata: self.metadata(t),
                    services: vec![pb::ServiceInfo {
                        id: "etcd".into(),
                        state: "Running".into(),
                        events: Some(pb::ServiceEvents {
                            events: vec![pb::ServiceEvent {
                                msg: "Health check successful".into(),
                                state: "Running".into(),
                                ts: Some(prost_types::Timestamp {
                                    seconds: 1_700_000_000,
                                    nanos: 0,
                                }),
                            }],
                        }),
                        health: Some(pb::ServiceHealth {
                            unknown: false,
                            healthy: true,
                            last_message: String::new(),
                            last_change: None,
                        }),
                    }],
                })
                .collect(),
        }))
    }

    async fn service_restart(
        &self,
        request: Request<pb::ServiceRestartRequest>,
    ) -> Result<Response<pb::ServiceRestartResponse>, Status> {
        let targets = self.record("ServiceRestart", &request);
        let id = request.into_inner().id;
        Ok(Response::new(pb::ServiceRestartResponse {
            messages: targets
                .iter()
                .map(|t| pb::ServiceRestart {
                    metadata: self.metadata(t),
                    resp: format!("Service {id:?} restarted"),
                })
                .collect(),
        }))
    }

    async fn service_start(
        &self,
        request: Request<pb::ServiceStartRequest>,
    ) -> Result<Response<pb::ServiceStartResponse>, Status> {
        let targets = self.record("ServiceStart", &request);
        let id = request.into_inner().id;
        Ok(Response::new(pb::ServiceStartResponse {
            messages: targets
                .iter()
                .map(|t| pb::ServiceStart {
                    metadata: self.metadata(t),
                    resp: format!("Service {id:?} started"),
                })
                .collect(),
        }))
    }

    async fn service_stop(
        &self,
        request: Request<pb::ServiceStopRequest>,
    ) -> Result<Response<pb::ServiceStopResponse>, Status> {
        let targets = self.record("ServiceStop", &request);
        let id = request.into_inner().id;
        Ok(Response::new(pb::ServiceStopResponse {
            messages: targets
                .iter()
                .map(|t| pb::ServiceStop {
                    metadata: self.metadata(t),
                    resp: format!("Service {id:?} stopped"),
                })
                .collect(),
        }))
    }

    async fn upgrade(
        &self,
        request: Request<pb::UpgradeRequest>,
    ) -> Result<Response<pb::UpgradeResponse>, Status> {
        let targets = self.record("Upgrade", &request);
        let image = request.into_inner().image;
        Ok(Response::new(pb::UpgradeResponse {
            messages: targets
                .iter()
                .map(|t| pb::Upgrade {
                    metadata: self.metadata(t),
                    ack: format!("Upgrade request received for {image}"),
                    actor_id: "actor-upgrade".into(),
                })
                .collect(),
        }))
    }

    async fn version(&self, request: Request<()>) -> Result<Response<pb::VersionResponse>, Status> {
        let targets = self.record("Version", &request);
        if !self.script.version_delay.is_zero() {
            tokio::time::sleep(self.script.version_delay).await;
        }
        if take_one(&self.script.version_unavailable) {
            return Err(Status::unavailable("apid is starting"));
        }
        Ok(Response::new(pb::VersionResponse {
            messages: targets
                .iter()
                .map(|t| pb::Version {
                    metadata: self.metadata(t),
                    version: Some(pb::VersionInfo {
                        tag: "v1.12.11".into(),
                        sha: "2e80771b".into(),
                        built: String::new(),
                        go_version: "go1.25.5".into(),
                        os: "linux".into(),
                        arch: "amd64".into(),
                    }),
                    platform: Some(pb::PlatformInfo {
                        name: "container".into(),
                        mode: "container".into(),
                    }),
                    features: Some(pb::FeaturesInfo { rbac: true }),
                })
                .collect(),
        }))
    }
}

// ---------------------------------------------------------------- server lifecycle

/// A running fake server; dropping it shuts the server down and aborts its task.
pub struct RunningServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

impl RunningServer {
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.abort();
    }
}

pub async fn free_listener() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap()
}

pub async fn start(tls: Arc<ServerConfig>, fake: FakeMachine) -> RunningServer {
    start_on(free_listener().await, tls, fake)
}

pub fn start_on(listener: TcpListener, tls: Arc<ServerConfig>, fake: FakeMachine) -> RunningServer {
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let recorded = fake.recorded.clone();
    let record_path = tower::util::MapRequestLayer::new(move |req: http::Request<_>| {
        recorded
            .lock()
            .unwrap()
            .paths
            .push(req.uri().path().to_string());
        req
    });
    let handle = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .layer(record_path)
            .add_service(MachineServiceServer::new(fake))
            .serve_with_incoming_shutdown(tls_incoming(listener, tls), async {
                let _ = rx.await;
            })
            .await;
    });
    RunningServer {
        addr,
        shutdown: Some(tx),
        handle,
    }
}
