//! [`TalosClient`]: typed calls to `machine.MachineService` (and `cluster.ClusterService`)
//! through apid, with node targeting, per-node results, deadlines, retries and endpoint
//! failover.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use kforge_secret::{SecretBytes, SecretString};
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;

use crate::proto::cluster::cluster_service_client::ClusterServiceClient;
use crate::proto::cluster::{ClusterInfo, HealthCheckRequest};
use crate::proto::common::{Data, Metadata};
use crate::proto::machine as pb;
use crate::proto::machine::machine_service_client::MachineServiceClient;
use crate::reply::{self, NodeError, NodeReply};
use crate::retry::{self, AttemptFailure};
use crate::types::*;
use crate::{ApiEndpoint, ConnectionConfig, Error, MAX_MESSAGE_SIZE, RetryPolicy};

/// Which nodes a call addresses (apid's gRPC metadata).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Targets {
    /// No node metadata: the node behind the endpoint answers itself.
    Endpoint,
    /// `node: x`: apid proxies the call one-to-one to `x`.
    Node(String),
    /// `nodes: a, b, …` (one metadata value per node): apid fans out and answers with one
    /// message per node. This is what talosctl sends for `--nodes`.
    Nodes(Vec<String>),
}

impl Targets {
    /// `Nodes(nodes)`, or `Endpoint` when `nodes` is empty (talosctl without `--nodes`).
    pub fn nodes<S: AsRef<str>>(nodes: &[S]) -> Self {
        if nodes.is_empty() {
            Targets::Endpoint
        } else {
            Targets::Nodes(nodes.iter().map(|n| n.as_ref().to_string()).collect())
        }
    }

    /// How many nodes answer.
    pub fn count(&self) -> usize {
        match self {
            Targets::Endpoint | Targets::Node(_) => 1,
            Targets::Nodes(n) => n.len(),
        }
    }

    fn single_name(&self) -> Option<&str> {
        match self {
            Targets::Node(n) => Some(n),
            Targets::Nodes(n) if n.len() == 1 => Some(&n[0]),
            _ => None,
        }
    }

    /// The metadata entries, validated once before any attempt.
    fn metadata(&self) -> Result<Vec<(&'static str, AsciiMetadataValue)>, Error> {
        let value = |n: &str| {
            AsciiMetadataValue::try_from(n)
                .ok()
                .filter(|_| !n.is_empty())
                .ok_or_else(|| Error::InvalidNodeName {
                    node: n.to_string(),
                })
        };
        Ok(match self {
            Targets::Endpoint => Vec::new(),
            Targets::Node(n) => vec![("node", value(n)?)],
            Targets::Nodes(nodes) => nodes
                .iter()
                .map(|n| Ok(("nodes", value(n)?)))
                .collect::<Result<_, Error>>()?,
        })
    }
}

/// How a failed call may be retried.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CallKind {
    /// Read-only: retried on `Unavailable` (except TLS failures).
    Read,
    /// Changes state: retried only when the connection could not be made at all, so the
    /// request never reached the node.
    Mutating,
    /// Bootstrap: like `Read`, plus the FailedPrecondition states Talos reports while the
    /// node is not ready, plus deadlines (as talosctl does).
    Bootstrap,
}

#[derive(Clone)]
struct Route {
    endpoint: ApiEndpoint,
    channel: Channel,
}

/// A client of the Talos API. Cheap to clone; connections are made lazily on first use
/// and re-made after failures.
#[derive(Clone)]
pub struct TalosClient {
    routes: Arc<[Route]>,
    call_timeout: Duration,
    retry: RetryPolicy,
}

impl std::fmt::Debug for TalosClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TalosClient")
            .field(
                "endpoints",
                &self
                    .routes
                    .iter()
                    .map(|r| r.endpoint.authority())
                    .collect::<Vec<_>>(),
            )
            .field("call_timeout", &self.call_timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

fn lazy_channel(
    endpoint: &ApiEndpoint,
    tls: Arc<ClientConfig>,
    connect_timeout: Duration,
) -> Result<Channel, Error> {
    // TLS is done by the connector below, so tonic sees a plain `http` URI.
    let uri = format!("http://{}", endpoint.authority());
    let channel_endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| Error::InvalidEndpoint {
            endpoint: endpoint.authority(),
            reason: e.to_string(),
        })?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    let target = endpoint.clone();
    let connector = tower::service_fn(move |_: http::Uri| {
        let tls = tls.clone();
        let target = target.clone();
        async move {
            let tcp = TcpStream::connect((target.host(), target.port())).await?;
            tcp.set_nodelay(true)?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(target.server_name(), tcp)
                .await?;
            Ok::<_, io::Error>(TokioIo::new(stream))
        }
    });
    Ok(channel_endpoint.connect_with_connector_lazy(connector))
}

fn machine(channel: Channel) -> MachineServiceClient<Channel> {
    MachineServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

fn cluster(channel: Channel) -> ClusterServiceClient<Channel> {
    ClusterServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// Collects a server stream into a Vec (the stream ends with the status).
async fn drain<M>(
    response: Result<tonic::Response<tonic::Streaming<M>>, tonic::Status>,
) -> Result<Vec<M>, tonic::Status> {
    let mut stream = response?.into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await? {
        out.push(m);
    }
    Ok(out)
}

/// What the cause chain of a failed call says about the connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// TCP could not be established (refused, unreachable, connect timeout): nothing sent.
    NoConnection,
    /// TLS failed (certificate rejected, handshake failure): retrying will not help.
    Tls,
    Other,
}

fn inspect_cause(status: &tonic::Status) -> (Cause, String) {
    use std::error::Error as _;
    let mut cause = Cause::Other;
    let mut texts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = status.source();
    while let Some(err) = current {
        let text = err.to_string();
        // Skip tonic's generic wrapper and text the status message already carries.
        if !text.is_empty()
            && text != "transport error"
            && !status.message().contains(&text)
            && texts.last().is_none_or(|last| !last.contains(&text))
        {
            texts.push(text);
        }
        if err.downcast_ref::<rustls::Error>().is_some() {
            cause = Cause::Tls;
        }
        if let Some(io_err) = err.downcast_ref::<io::Error>() {
            use io::ErrorKind::*;
            if cause == Cause::Other
                && matches!(
                    io_err.kind(),
                    ConnectionRefused
                        | AddrNotAvailable
                        | HostUnreachable
                        | NetworkUnreachable
                        | TimedOut
                        | NotConnected
                )
            {
                cause = Cause::NoConnection;
            }
            // io::Error::source skips the wrapped error itself; look at it directly.
            if let Some(inner) = io_err.get_ref() {
                current = Some(inner);
                continue;
            }
        }
        current = err.source();
    }
    let detail = if texts.is_empty() {
        String::new()
    } else {
        format!(": {}", texts.join(": "))
    };
    (cause, detail)
}

const WAIT_CONNECT: &str = "the Talos API to accept connections (is the node still booting?)";
const WAIT_AVAILABLE: &str = "the Talos API to become available";
const WAIT_BOOTSTRAP_READY: &str = "the node to be ready for bootstrap";
const WAIT_TIME_SYNC: &str = "the node's clock to be in sync";
const WAIT_BOOTSTRAP_ANSWER: &str = "the node to answer Bootstrap";

/// Bootstrap's transient refusals, recognised by code and message as Talos words them.
fn bootstrap_waiting_for(code: tonic::Code, message: &str) -> Option<&'static str> {
    if code != tonic::Code::FailedPrecondition {
        return None;
    }
    if message.contains("bootstrap is not available yet") {
        Some(WAIT_BOOTSTRAP_READY)
    } else if message.contains("time is not in sync yet") {
        Some(WAIT_TIME_SYNC)
    } else {
        None
    }
}

/// Suggestions for failures whose cause is usually a setup mistake.
fn hint_for(code: tonic::Code, text: &str) -> Option<&'static str> {
    if [
        "UnknownCA",
        "BadCertificate",
        "CertificateRequired",
        "AccessDenied",
    ]
    .iter()
    .any(|alert| text.contains(alert))
    {
        Some(
            "the node rejected the client certificate; check that the talosconfig belongs to \
             this cluster, or use insecure (maintenance) mode for a node without a config",
        )
    } else if text.contains("UnknownIssuer") {
        Some(
            "the node's certificate is not signed by the talosconfig CA; a node in maintenance \
             mode presents a self-signed certificate and needs insecure mode",
        )
    } else if text.contains("not valid for name") {
        Some(
            "the endpoint address is not in the node's certificate SANs; connect through a \
             listed address or add it to machine.certSANs",
        )
    } else if code == tonic::Code::Unimplemented && text.contains("maintenance mode") {
        Some("the node is in maintenance mode; apply a machine config first (insecure mode)")
    } else {
        None
    }
}

struct StatusFailure {
    failure: AttemptFailure,
    /// Try the next endpoint: the request did not reach this one.
    failover: bool,
}

fn classify(
    kind: CallKind,
    status: &tonic::Status,
    operation: &'static str,
    endpoint: &ApiEndpoint,
    deadline: Duration,
    deadline_passed: bool,
) -> StatusFailure {
    let code = status.code();
    // tonic enforces `grpc-timeout` on the client too and reports it as Cancelled.
    if code == tonic::Code::DeadlineExceeded || (code == tonic::Code::Cancelled && deadline_passed)
    {
        return StatusFailure {
            failure: AttemptFailure {
                error: Error::DeadlineExceeded {
                    operation,
                    endpoint: endpoint.authority(),
                    deadline,
                },
                waiting_for: (kind == CallKind::Bootstrap).then_some(WAIT_BOOTSTRAP_ANSWER),
            },
            failover: false,
        };
    }
    let (cause, detail) = inspect_cause(status);
    let waiting_for = match (code, cause, kind) {
        (tonic::Code::Unavailable, Cause::NoConnection, _) => Some(WAIT_CONNECT),
        (tonic::Code::Unavailable, Cause::Other, CallKind::Read | CallKind::Bootstrap) => {
            Some(WAIT_AVAILABLE)
        }
        (_, _, CallKind::Bootstrap) => bootstrap_waiting_for(code, status.message()),
        _ => None,
    };
    let hint = hint_for(code, &format!("{}{detail}", status.message()))
        .map(|h| format!("; hint: {h}"))
        .unwrap_or_default();
    StatusFailure {
        failure: AttemptFailure {
            error: Error::Rpc {
                operation,
                endpoint: endpoint.authority(),
                code,
                message: status.message().to_string(),
                detail,
                hint,
            },
            waiting_for,
        },
        failover: code == tonic::Code::Unavailable && cause == Cause::NoConnection,
    }
}

macro_rules! node_messages {
    ($($t:ty),* $(,)?) => {$(
        impl NodeMessage for $t {
            fn metadata(&self) -> Option<&Metadata> {
                self.metadata.as_ref()
            }
        }
    )*};
}

trait NodeMessage {
    fn metadata(&self) -> Option<&Metadata>;
}

node_messages!(
    pb::Version,
    pb::Hostname,
    pb::ServiceList,
    pb::ServiceStart,
    pb::ServiceStop,
    pb::ServiceRestart,
    pb::EtcdMembers,
    pb::EtcdStatus,
    pb::Memory,
    pb::ApplyConfiguration,
    pb::Bootstrap,
    pb::Reboot,
    pb::Reset,
    pb::Upgrade,
    Data,
    crate::proto::cluster::HealthCheckProgress,
);

/// The node name used when apid did not fill `metadata.hostname`.
fn fallback_node(targets: &Targets, endpoint: &ApiEndpoint) -> String {
    targets
        .single_name()
        .map(str::to_string)
        .unwrap_or_else(|| endpoint.host().to_string())
}

impl TalosClient {
    /// A client for `config`. No connection is made yet (a booting node is waited for by
    /// the retry policy of each call); must be called inside a tokio runtime.
    pub async fn connect(config: &ConnectionConfig) -> Result<Self, Error> {
        if config.endpoints.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let routes = config
            .endpoints
            .iter()
            .map(|e| {
                Ok(Route {
                    endpoint: e.clone(),
                    channel: lazy_channel(e, config.tls.clone(), config.connect_timeout)?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(TalosClient {
            routes: routes.into(),
            call_timeout: config.call_timeout,
            retry: config.retry,
        })
    }

    /// The same client with another per-attempt deadline.
    pub fn with_call_timeout(&self, timeout: Duration) -> Self {
        TalosClient {
            call_timeout: timeout,
            ..self.clone()
        }
    }

    /// The same client with another retry policy.
    pub fn with_retry(&self, retry: RetryPolicy) -> Self {
        TalosClient {
            retry,
            ..self.clone()
        }
    }

    pub fn endpoints(&self) -> Vec<ApiEndpoint> {
        self.routes.iter().map(|r| r.endpoint.clone()).collect()
    }

    /// Raw generated client on the first endpoint, for RPCs this type does not wrap.
    pub fn machine_service(&self) -> MachineServiceClient<Channel> {
        machine(self.routes[0].channel.clone())
    }

    /// Raw generated `cluster.ClusterService` client on the first endpoint.
    pub fn cluster_service(&self) -> ClusterServiceClient<Channel> {
        cluster(self.routes[0].channel.clone())
    }

    /// One call with deadline, retries and endpoint failover. `call` gets a channel and a
    /// request carrying the node metadata and the `grpc-timeout`, and returns the decoded
    /// reply. Returns the reply and the endpoint that produced it.
    async fn call<Req, T, F, Fut>(
        &self,
        operation: &'static str,
        kind: CallKind,
        targets: &Targets,
        retry: RetryPolicy,
        request: Req,
        call: F,
    ) -> Result<(T, ApiEndpoint), Error>
    where
        Req: Clone,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let metadata = targets.metadata()?;
        let deadline = self.call_timeout;
        let last_endpoint = std::sync::Mutex::new(self.routes[0].endpoint.authority());
        let set_last = |e: &ApiEndpoint| {
            if let Ok(mut last) = last_endpoint.lock() {
                *last = e.authority();
            }
        };
        retry::run(
            retry,
            operation,
            || last_endpoint.lock().map(|l| l.clone()).unwrap_or_default(),
            || async {
                let mut failure = None;
                for (i, route) in self.routes.iter().enumerate() {
                    set_last(&route.endpoint);
                    let mut req = tonic::Request::new(request.clone());
                    req.set_timeout(deadline);
                    apply_metadata(req.metadata_mut(), &metadata);
                    let started = std::time::Instant::now();
                    let outcome =
                        tokio::time::timeout(deadline, call(route.channel.clone(), req)).await;
                    let status = match outcome {
                        Ok(Ok(v)) => return Ok((v, route.endpoint.clone())),
                        Ok(Err(status)) => status,
                        Err(_elapsed) => {
                            return Err(AttemptFailure {
                                error: Error::DeadlineExceeded {
                                    operation,
                                    endpoint: route.endpoint.authority(),
                                    deadline,
                                },
                                waiting_for: (kind == CallKind::Bootstrap)
                                    .then_some(WAIT_BOOTSTRAP_ANSWER),
                            });
                        }
                    };
                    let classified = classify(
                        kind,
                        &status,
                        operation,
                        &route.endpoint,
                        deadline,
                        started.elapsed() >= deadline,
                    );
                    let more = i + 1 < self.routes.len();
                    if !(classified.failover && more) {
                        return Err(classified.failure);
                    }
                    failure = Some(classified.failure);
                }
                Err(failure.unwrap_or_else(|| AttemptFailure::fatal(Error::NoEndpoints)))
            },
        )
        .await
    }

    /// A unary call whose reply is `messages: Vec<M>`, turned into per-node replies.
    async fn unary_nodes<Req, M, T, F, Fut>(
        &self,
        operation: &'static str,
        kind: CallKind,
        targets: &Targets,
        request: Req,
        call: F,
        convert: impl Fn(M) -> T,
    ) -> Result<Vec<NodeReply<T>>, Error>
    where
        Req: Clone,
        M: NodeMessage,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<Vec<M>, tonic::Status>>,
    {
        let (messages, endpoint) = self
            .call(operation, kind, targets, self.retry, request, call)
            .await?;
        if messages.is_empty() {
            return Err(Error::EmptyReply {
                operation,
                endpoint: endpoint.authority(),
            });
        }
        let fallback = fallback_node(targets, &endpoint);
        let mut replies = reply::collect(messages, &fallback, M::metadata, convert);
        note_missing_nodes(targets, &mut replies);
        Ok(replies)
    }

    /// A server-streaming call of `common.Data`, reassembled per node.
    async fn data_stream<Req, F, Fut>(
        &self,
        operation: &'static str,
        targets: &Targets,
        request: Req,
        call: F,
    ) -> Result<(Vec<Data>, String), Error>
    where
        Req: Clone,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<Vec<Data>, tonic::Status>>,
    {
        let (chunks, endpoint) = self
            .call(
                operation,
                CallKind::Read,
                targets,
                self.retry,
                request,
                call,
            )
            .await?;
        Ok((chunks, fallback_node(targets, &endpoint)))
    }

    // ---------------- read-only calls ----------------

    pub async fn version(&self, targets: &Targets) -> Result<Vec<NodeReply<Version>>, Error> {
        self.unary_nodes(
            "Version",
            CallKind::Read,
            targets,
            (),
            |ch, req| async move { Ok(machine(ch).version(req).await?.into_inner().messages) },
            Version::from,
        )
        .await
    }

    pub async fn hostname(&self, targets: &Targets) -> Result<Vec<NodeReply<String>>, Error> {
        self.unary_nodes(
            "Hostname",
            CallKind::Read,
            targets,
            (),
            |ch, req| async move { Ok(machine(ch).hostname(req).await?.into_inner().messages) },
            |m: pb::Hostname| m.hostname,
        )
        .await
    }

    pub async fn service_list(
        &self,
        targets: &Targets,
    ) -> Result<Vec<NodeReply<Vec<ServiceInfo>>>, Error> {
        self.unary_nodes(
            "ServiceList",
            CallKind::Read,
            targets,
            (),
            |ch, req| async move { Ok(machine(ch).service_list(req).await?.into_inner().messages) },
            |m: pb::ServiceList| m.services.into_iter().map(ServiceInfo::from).collect(),
        )
        .await
    }

    /// EtcdMemberList; `query_local` asks the node's local etcd instead of the cluster.
    pub async fn etcd_member_list(
        &self,
        targets: &Targets,
        query_local: bool,
    ) -> Result<Vec<NodeReply<EtcdMembers>>, Error> {
        self.unary_nodes(
            "EtcdMemberList",
            CallKind::Read,
            targets,
            pb::EtcdMemberListRequest { query_local },
            |ch, req| async move {
                Ok(machine(ch)
                    .etcd_member_list(req)
                    .await?
                    .into_inner()
                    .messages)
            },
            EtcdMembers::from,
        )
        .await
    }

    pub async fn etcd_status(
        &self,
        targets: &Targets,
    ) -> Result<Vec<NodeReply<EtcdMemberStatus>>, Error> {
        self.unary_nodes(
            "EtcdStatus",
            CallKind::Read,
            targets,
            (),
            |ch, req| async move { Ok(machine(ch).etcd_status(req).await?.into_inner().messages) },
            |m: pb::EtcdStatus| EtcdMemberStatus::from(m.member_status.unwrap_or_default()),
        )
        .await
    }

    pub async fn memory(&self, targets: &Targets) -> Result<Vec<NodeReply<MemInfo>>, Error> {
        self.unary_nodes(
            "Memory",
            CallKind::Read,
            targets,
            (),
            |ch, req| async move { Ok(machine(ch).memory(req).await?.into_inner().messages) },
            |m: pb::Memory| m.meminfo.unwrap_or_default(),
        )
        .await
    }

    /// Read: the file at `path` on each node, reassembled from the Data stream.
    pub async fn read(
        &self,
        targets: &Targets,
        path: &str,
    ) -> Result<Vec<NodeReply<Vec<u8>>>, Error> {
        let (chunks, fallback) = self
            .data_stream(
                "Read",
                targets,
                pb::ReadRequest {
                    path: path.to_string(),
                },
                |ch, req| async move { drain(machine(ch).read(req).await).await },
            )
            .await?;
        Ok(group_chunks(chunks, targets, &fallback))
    }

    /// Kubeconfig: the admin kubeconfig of exactly one control-plane node, unpacked from
    /// the `.tar.gz` stream.
    pub async fn kubeconfig(&self, targets: &Targets) -> Result<SecretString, Error> {
        const OP: &str = "Kubeconfig";
        if targets.count() != 1 {
            return Err(Error::NeedsOneNode {
                operation: OP,
                count: targets.count(),
            });
        }
        let (chunks, fallback) = self
            .data_stream(OP, targets, (), |ch, req| async move {
                drain(machine(ch).kubeconfig(req).await).await
            })
            .await?;
        let mut node = fallback;
        let mut total = 0usize;
        for chunk in &chunks {
            node = reply::node_name(chunk.metadata.as_ref(), &node);
            if let Some(err) = reply::metadata_error(chunk.metadata.as_ref()) {
                return Err(Error::NodeFailed {
                    operation: OP,
                    node,
                    code: err.code,
                    message: err.message,
                });
            }
            total += chunk.bytes.len();
        }
        // Reassemble into one exactly-sized buffer and zero every chunk: the archive holds
        // the cluster admin credentials.
        let mut archive = SecretBytes::new(Vec::with_capacity(total));
        for mut chunk in chunks {
            archive.expose_mut().extend_from_slice(&chunk.bytes);
            drop(SecretBytes::new(std::mem::take(&mut chunk.bytes)));
        }
        crate::extract_kubeconfig(&node, &archive)
    }

    /// `cluster.ClusterService/HealthCheck`: the node runs the Talos health checks and
    /// streams progress lines, collected per node. The call deadline is raised to
    /// `wait_timeout` plus the client's call timeout.
    pub async fn health_check(
        &self,
        targets: &Targets,
        wait_timeout: Duration,
        control_plane_nodes: &[String],
        worker_nodes: &[String],
    ) -> Result<Vec<NodeReply<Vec<String>>>, Error> {
        let request = HealthCheckRequest {
            wait_timeout: Some(prost_types::Duration {
                seconds: i64::try_from(wait_timeout.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(wait_timeout.subsec_nanos()).unwrap_or(0),
            }),
            cluster_info: Some(ClusterInfo {
                control_plane_nodes: control_plane_nodes.to_vec(),
                worker_nodes: worker_nodes.to_vec(),
                force_endpoint: String::new(),
            }),
        };
        let client = self.with_call_timeout(self.call_timeout + wait_timeout);
        let (progress, endpoint) = client
            .call(
                "HealthCheck",
                CallKind::Read,
                targets,
                RetryPolicy::none(),
                request,
                |ch, req| async move { drain(cluster(ch).health_check(req).await).await },
            )
            .await?;
        let fallback = fallback_node(targets, &endpoint);
        let mut out: Vec<NodeReply<Vec<String>>> = seed_nodes(targets, &fallback);
        for p in progress {
            let node = reply::node_name(p.metadata.as_ref(), &fallback);
            let entry = entry_for(&mut out, node);
            match reply::metadata_error(p.metadata.as_ref()) {
                Some(e) => {
                    if entry.result.is_ok() {
                        entry.result = Err(e);
                    }
                }
                None => {
                    if let Ok(lines) = &mut entry.result {
                        lines.push(p.message);
                    }
                }
            }
        }
        Ok(out)
    }

    // ---------------- state-changing calls ----------------

    /// ApplyConfiguration with an explicit mode (see [`ApplyMode`]).
    pub async fn apply_configuration(
        &self,
        targets: &Targets,
        config: &[u8],
        options: ApplyOptions,
    ) -> Result<Vec<NodeReply<ApplyConfigurationResult>>, Error> {
        self.unary_nodes(
            "ApplyConfiguration",
            CallKind::Mutating,
            targets,
            options.to_request(config),
            |ch, req| async move {
                Ok(machine(ch)
                    .apply_configuration(req)
                    .await?
                    .into_inner()
                    .messages)
            },
            ApplyConfigurationResult::from,
        )
        .await
    }

    /// Bootstrap etcd on exactly one control-plane node. Retries (per
    /// `options.retry`) while the node says bootstrap is not available yet or its time is
    /// not in sync, while it refuses connections, and on deadlines; "etcd data directory
    /// is not empty" (AlreadyExists) is reported as [`BootstrapOutcome::AlreadyBootstrapped`].
    pub async fn bootstrap(
        &self,
        targets: &Targets,
        options: BootstrapOptions,
    ) -> Result<BootstrapOutcome, Error> {
        const OP: &str = "Bootstrap";
        if targets.count() != 1 {
            return Err(Error::NeedsOneNode {
                operation: OP,
                count: targets.count(),
            });
        }
        let request = options.to_request();
        let result = self
            .call(
                OP,
                CallKind::Bootstrap,
                targets,
                options.retry,
                request,
                |ch, req| async move {
                    let messages = machine(ch).bootstrap(req).await?.into_inner().messages;
                    // In fan-out mode the node's failure arrives inside the message; turn it
                    // into a status so the same retry rules apply as for a direct call.
                    match messages
                        .iter()
                        .find_map(|m| reply::metadata_error(m.metadata.as_ref()))
                    {
                        Some(err) => Err(tonic::Status::new(
                            err.code.unwrap_or(tonic::Code::Unknown),
                            err.message,
                        )),
                        None => Ok(()),
                    }
                },
            )
            .await;
        match result {
            Ok(_) => Ok(BootstrapOutcome::Bootstrapped),
            Err(e) if already_bootstrapped(&e) => Ok(BootstrapOutcome::AlreadyBootstrapped),
            Err(e) => Err(e),
        }
    }

    pub async fn reboot(
        &self,
        targets: &Targets,
        mode: RebootMode,
    ) -> Result<Vec<NodeReply<ActorReply>>, Error> {
        self.unary_nodes(
            "Reboot",
            CallKind::Mutating,
            targets,
            pb::RebootRequest {
                mode: mode.to_proto() as i32,
            },
            |ch, req| async move { Ok(machine(ch).reboot(req).await?.into_inner().messages) },
            |m: pb::Reboot| ActorReply {
                actor_id: m.actor_id,
            },
        )
        .await
    }

    pub async fn reset(
        &self,
        targets: &Targets,
        options: &ResetOptions,
    ) -> Result<Vec<NodeReply<ActorReply>>, Error> {
        self.unary_nodes(
            "Reset",
            CallKind::Mutating,
            targets,
            options.to_request(),
            |ch, req| async move { Ok(machine(ch).reset(req).await?.into_inner().messages) },
            |m: pb::Reset| ActorReply {
                actor_id: m.actor_id,
            },
        )
        .await
    }

    /// The MachineService Upgrade RPC (deprecated upstream in 1.13 in favour of
    /// LifecycleService, still served through 1.17).
    pub async fn upgrade(
        &self,
        targets: &Targets,
        options: &UpgradeOptions,
    ) -> Result<Vec<NodeReply<UpgradeReply>>, Error> {
        self.unary_nodes(
            "Upgrade",
            CallKind::Mutating,
            targets,
            options.to_request(),
            |ch, req| async move { Ok(machine(ch).upgrade(req).await?.into_inner().messages) },
            |m: pb::Upgrade| UpgradeReply {
                ack: m.ack,
                actor_id: m.actor_id,
            },
        )
        .await
    }

    /// ServiceStart / ServiceStop / ServiceRestart of service `id`.
    pub async fn service(
        &self,
        targets: &Targets,
        action: ServiceAction,
        id: &str,
    ) -> Result<Vec<NodeReply<ServiceReply>>, Error> {
        let id = id.to_string();
        match action {
            ServiceAction::Start => {
                self.unary_nodes(
                    "ServiceStart",
                    CallKind::Mutating,
                    targets,
                    pb::ServiceStartRequest { id },
                    |ch, req| async move {
                        Ok(machine(ch).service_start(req).await?.into_inner().messages)
                    },
                    |m: pb::ServiceStart| ServiceReply { resp: m.resp },
                )
                .await
            }
            ServiceAction::Stop => {
                self.unary_nodes(
                    "ServiceStop",
                    CallKind::Mutating,
                    targets,
                    pb::ServiceStopRequest { id },
                    |ch, req| async move {
                        Ok(machine(ch).service_stop(req).await?.into_inner().messages)
                    },
                    |m: pb::ServiceStop| ServiceReply { resp: m.resp },
                )
                .await
            }
            ServiceAction::Restart => {
                self.unary_nodes(
                    "ServiceRestart",
                    CallKind::Mutating,
                    targets,
                    pb::ServiceRestartRequest { id },
                    |ch, req| async move {
                        Ok(machine(ch)
                            .service_restart(req)
                            .await?
                            .into_inner()
                            .messages)
                    },
                    |m: pb::ServiceRestart| ServiceReply { resp: m.resp },
                )
                .await
            }
        }
    }
}

fn apply_metadata(map: &mut MetadataMap, entries: &[(&'static str, AsciiMetadataValue)]) {
    for (key, value) in entries {
        // `append`, not `insert`: `nodes` is one header per node, as grpc-go sends it.
        map.append(*key, value.clone());
    }
}

fn already_bootstrapped(e: &Error) -> bool {
    match e {
        Error::Rpc { code, message, .. } => {
            *code == tonic::Code::AlreadyExists
                && message.contains("etcd data directory is not empty")
        }
        _ => false,
    }
}

/// In fan-out mode apid answers for every requested node; name any it left out rather
/// than dropping them silently.
fn note_missing_nodes<T>(targets: &Targets, replies: &mut Vec<NodeReply<T>>) {
    let Targets::Nodes(nodes) = targets else {
        return;
    };
    if nodes.len() < 2 {
        return;
    }
    for node in nodes {
        if !replies.iter().any(|r| &r.node == node) {
            replies.push(NodeReply {
                node: node.clone(),
                result: Err(NodeError {
                    code: None,
                    message: "apid returned no reply for this node".into(),
                }),
            });
        }
    }
}

fn seed_nodes<T: Default>(targets: &Targets, fallback: &str) -> Vec<NodeReply<T>> {
    match targets {
        Targets::Nodes(nodes) if nodes.len() > 1 => nodes
            .iter()
            .map(|n| NodeReply::ok(n.clone(), T::default()))
            .collect(),
        _ => vec![NodeReply::ok(fallback, T::default())],
    }
}

fn entry_for<T: Default>(out: &mut Vec<NodeReply<T>>, node: String) -> &mut NodeReply<T> {
    let index = match out.iter().position(|r| r.node == node) {
        Some(i) => i,
        None => {
            out.push(NodeReply::ok(node, T::default()));
            out.len() - 1
        }
    };
    &mut out[index]
}

/// Reassembles Data chunks per node (in fan-out mode chunks of several nodes interleave);
/// a chunk with `metadata.error` fails its node.
fn group_chunks(chunks: Vec<Data>, targets: &Targets, fallback: &str) -> Vec<NodeReply<Vec<u8>>> {
    let mut out: Vec<NodeReply<Vec<u8>>> = seed_nodes(targets, fallback);
    for chunk in chunks {
        let node = reply::node_name(chunk.metadata.as_ref(), fallback);
        let entry = entry_for(&mut out, node);
        match reply::metadata_error(chunk.metadata.as_ref()) {
            Some(e) => {
                if entry.result.is_ok() {
                    entry.result = Err(e);
                }
            }
            None => {
                if let Ok(bytes) = &mut entry.result {
                    bytes.extend_from_slice(&chunk.bytes);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(host: &str, bytes: &[u8], error: &str) -> Data {
        Data {
            metadata: Some(Metadata {
                hostname: host.into(),
                error: error.into(),
                status: None,
            }),
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn interleaved_chunks_are_grouped_per_node() {
        let targets = Targets::Nodes(vec!["a".into(), "b".into(), "c".into()]);
        let got = group_chunks(
            vec![
                chunk("a", b"he", ""),
                chunk("b", b"wo", ""),
                chunk("a", b"llo", ""),
                chunk("c", b"", "open /x: no such file"),
                chunk("b", b"rld", ""),
            ],
            &targets,
            "endpoint",
        );
        assert_eq!(got[0], NodeReply::ok("a", b"hello".to_vec()));
        assert_eq!(got[1], NodeReply::ok("b", b"world".to_vec()));
        assert_eq!(
            got[2].result.as_ref().unwrap_err().message,
            "open /x: no such file"
        );
    }

    #[test]
    fn single_target_chunks_without_hostname_use_the_target() {
        let got = group_chunks(
            vec![
                Data {
                    metadata: None,
                    bytes: b"ab".to_vec(),
                },
                Data {
                    metadata: None,
                    bytes: b"c".to_vec(),
                },
            ],
            &Targets::Node("10.0.0.5".into()),
            "10.0.0.5",
        );
        assert_eq!(got, vec![NodeReply::ok("10.0.0.5", b"abc".to_vec())]);
    }

    #[test]
    fn node_metadata_is_validated() {
        assert!(Targets::Node("a\nb".into()).metadata().is_err());
        assert!(
            Targets::Nodes(vec!["ok".into(), "".into()])
                .metadata()
                .is_err()
        );
        let md = Targets::nodes(&["a", "b"]).metadata().unwrap();
        assert_eq!(md.len(), 2);
        assert!(md.iter().all(|(k, _)| *k == "nodes"));
        assert_eq!(Targets::nodes::<&str>(&[]), Targets::Endpoint);
    }

    #[test]
    fn bootstrap_transient_messages_are_recognised() {
        use tonic::Code::*;
        assert_eq!(
            bootstrap_waiting_for(FailedPrecondition, "bootstrap is not available yet"),
            Some(WAIT_BOOTSTRAP_READY)
        );
        assert_eq!(
            bootstrap_waiting_for(FailedPrecondition, "time is not in sync yet"),
            Some(WAIT_TIME_SYNC)
        );
        // A worker node refuses bootstrap for good.
        assert_eq!(
            bootstrap_waiting_for(FailedPrecondition, "bootstrap is not supported on workers"),
            None
        );
        assert_eq!(
            bootstrap_waiting_for(Unavailable, "bootstrap is not available yet"),
            None
        );
    }

    #[test]
    fn missing_fan_out_nodes_are_reported() {
        let mut replies = vec![NodeReply::ok("a", 1)];
        note_missing_nodes(&Targets::nodes(&["a", "b"]), &mut replies);
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[1].node, "b");
        assert!(replies[1].result.is_err());
    }
}
