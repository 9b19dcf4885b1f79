//! `machine.MachineService` of a configured node, as apid and machined serve it together:
//! mutual TLS (enforced by the listener), roles per RPC, and apid's routing by gRPC
//! metadata (`internal/app/apid/pkg/director`):
//!
//! - no `node`/`nodes`: this node answers;
//! - `node: x`: one-to-one proxy to `x` (the reply passes through unchanged);
//! - `nodes: a, b, …`: fan-out; each backend's single reply message gets
//!   `metadata.hostname` = the target as given, and a failing backend becomes a message
//!   with `metadata.error` (`rpc error: code = … desc = …`) and `metadata.status` instead
//!   of failing the call.
//!
//! Forwarded calls carry this node's `os:impersonator` identity, the caller's roles in
//! `talos-role`, and `proxyfrom`; `node`/`nodes` are stripped. Targets that name this
//! node (its address, with or without its API port) are answered locally.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kforge_talos_api::proto::common::{Data, Metadata};
use kforge_talos_api::proto::google::rpc::Status as RpcStatus;
use kforge_talos_api::proto::machine as pb;
use kforge_talos_api::proto::machine::machine_service_client::MachineServiceClient;
use kforge_talos_api::proto::machine::machine_service_server::MachineService;
use kforge_talos_api::server_tls::TlsPeer;
use tokio_stream::Stream;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::auth::{self, ROLE_METADATA, Role, Rpc};
use crate::error::go_code_name;
use crate::node::{Applied, Node, ServiceAction, data_chunks};

/// Deadline of a forwarded call when the caller sent none.
const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

type DataStream = Pin<Box<dyn Stream<Item = Result<Data, Status>> + Send + 'static>>;
type Client = MachineServiceClient<Channel>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// How a call is forwarded to another node's apid.
type Forward<Req, Resp> = fn(Client, Request<Req>) -> BoxFuture<Result<Resp, Status>>;

/// A reply message with the per-node envelope in field 1.
pub trait NodeMessage: Default + Send + 'static {
    fn metadata_mut(&mut self) -> &mut Option<Metadata>;
}

/// A unary reply `{ repeated Msg messages = 1; }`.
pub trait Reply: Send + 'static {
    type Msg: NodeMessage;
    fn into_messages(self) -> Vec<Self::Msg>;
    fn from_messages(messages: Vec<Self::Msg>) -> Self;
}

macro_rules! replies {
    ($($resp:ident => $msg:ident),* $(,)?) => {$(
        impl NodeMessage for pb::$msg {
            fn metadata_mut(&mut self) -> &mut Option<Metadata> {
                &mut self.metadata
            }
        }
        impl Reply for pb::$resp {
            type Msg = pb::$msg;
            fn into_messages(self) -> Vec<pb::$msg> {
                self.messages
            }
            fn from_messages(messages: Vec<pb::$msg>) -> Self {
                pb::$resp { messages }
            }
        }
    )*};
}

replies!(
    ApplyConfigurationResponse => ApplyConfiguration,
    BootstrapResponse => Bootstrap,
    VersionResponse => Version,
    HostnameResponse => Hostname,
    ServiceListResponse => ServiceList,
    ServiceStartResponse => ServiceStart,
    ServiceStopResponse => ServiceStop,
    ServiceRestartResponse => ServiceRestart,
    EtcdMemberListResponse => EtcdMembers,
    EtcdStatusResponse => EtcdStatus,
    MemoryResponse => Memory,
    RebootResponse => Reboot,
    ResetResponse => Reset,
    UpgradeResponse => Upgrade,
);

impl NodeMessage for Data {
    fn metadata_mut(&mut self) -> &mut Option<Metadata> {
        &mut self.metadata
    }
}

/// apid's `metadata.error` / `metadata.status` for a failed backend.
fn error_metadata(target: &str, status: &Status) -> Metadata {
    Metadata {
        hostname: target.to_string(),
        error: format!(
            "rpc error: code = {} desc = {}",
            go_code_name(status.code()),
            status.message()
        ),
        status: Some(RpcStatus {
            code: status.code() as i32,
            message: status.message().to_string(),
            details: Vec::new(),
        }),
    }
}

fn set_hostname(meta: &mut Option<Metadata>, target: &str) {
    meta.get_or_insert_with(Metadata::default).hostname = target.to_string();
}

/// Where a call goes.
enum Route {
    Local,
    One(String),
    Many(Vec<String>),
}

fn route(metadata: &MetadataMap) -> Route {
    let values = |key: &str| -> Vec<String> {
        metadata
            .get_all(key)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let nodes = values("nodes");
    if !nodes.is_empty() {
        return Route::Many(nodes);
    }
    match values("node").into_iter().next() {
        Some(n) => Route::One(n),
        None => Route::Local,
    }
}

/// `grpc-timeout` (e.g. `30S`, `500m`) as a Duration.
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let v = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The machine service of a configured node.
#[derive(Clone)]
pub struct ApidService {
    node: Node,
}

/// What a call needs after its metadata was read.
struct CallContext {
    roles: Vec<Role>,
    route: Route,
    timeout: Duration,
    /// Metadata to forward (everything but routing and role headers).
    forward: MetadataMap,
}

impl ApidService {
    pub fn new(node: Node) -> Self {
        ApidService { node }
    }

    fn context<T>(&self, rpc: Rpc, request: &Request<T>) -> Result<CallContext, Status> {
        let roles = auth::caller_roles(request.extensions().get::<TlsPeer>(), request.metadata());
        auth::authorize(rpc, &roles)?;
        let mut forward = MetadataMap::new();
        for kv in request.metadata().iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(k, v) = kv {
                let key = k.as_str();
                if matches!(
                    key,
                    "node"
                        | "nodes"
                        | "grpc-timeout"
                        | "proxyfrom"
                        | "content-type"
                        | "te"
                        | "user-agent"
                ) || key == ROLE_METADATA
                {
                    continue;
                }
                forward.append(k.clone(), v.clone());
            }
        }
        Ok(CallContext {
            roles,
            route: route(request.metadata()),
            timeout: grpc_timeout(request.metadata()).unwrap_or(DEFAULT_FORWARD_TIMEOUT),
            forward,
        })
    }

    /// `host` or `host:port` → the authority to dial, or None when it is this node.
    fn target_authority(&self, target: &str) -> Option<String> {
        let s = self.node.settings();
        if let Ok(addr) = target.parse::<SocketAddr>() {
            if addr.ip() == s.address && addr.port() == s.api_port {
                return None;
            }
            return Some(addr.to_string());
        }
        if let Ok(ip) = target.parse::<IpAddr>() {
            if ip == s.address {
                return None;
            }
            return Some(SocketAddr::new(ip, s.api_port).to_string());
        }
        Some(if target.contains(':') {
            target.to_string()
        } else {
            format!("{target}:{}", s.api_port)
        })
    }

    fn forward_request<Req>(&self, ctx: &CallContext, message: Req) -> Request<Req> {
        let mut req = Request::new(message);
        *req.metadata_mut() = ctx.forward.clone();
        for role in &ctx.roles {
            if let Ok(v) = AsciiMetadataValue::try_from(role.as_str()) {
                req.metadata_mut().append(ROLE_METADATA, v);
            }
        }
        if let Ok(v) = AsciiMetadataValue::try_from(self.node.address().to_string()) {
            req.metadata_mut().insert("proxyfrom", v);
        }
        req.set_timeout(ctx.timeout);
        req
    }

    /// One call to `target` (local or forwarded).
    async fn call_target<Req, Resp>(
        &self,
        ctx: &CallContext,
        target: &str,
        message: Req,
        forward: Forward<Req, Resp>,
        local: &(dyn Fn(Node, Arc<Applied>, Req) -> BoxFuture<Result<Resp, Status>> + Send + Sync),
    ) -> Result<Resp, Status>
    where
        Req: Send + 'static,
    {
        let applied = self.node.applied()?;
        match self.target_authority(target) {
            None => local(self.node.clone(), applied, message).await,
            Some(authority) => {
                let client = self.node.proxy_client(&applied, &authority).await?;
                let req = self.forward_request(ctx, message);
                match tokio::time::timeout(ctx.timeout, forward(client, req)).await {
                    Ok(r) => r,
                    Err(_) => Err(Status::deadline_exceeded(format!(
                        "{authority} did not answer within {:?}",
                        ctx.timeout
                    ))),
                }
            }
        }
    }

    /// A unary RPC: authorise, route, rewrite fan-out replies.
    async fn unary<Req, Resp>(
        &self,
        rpc: Rpc,
        request: Request<Req>,
        forward: Forward<Req, Resp>,
        local: impl Fn(Node, Arc<Applied>, Req) -> BoxFuture<Result<Resp, Status>> + Send + Sync,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Clone + Send + 'static,
        Resp: Reply,
    {
        let ctx = self.context(rpc, &request)?;
        let message = request.into_inner();
        match &ctx.route {
            Route::Local => {
                let applied = self.node.applied()?;
                local(self.node.clone(), applied, message)
                    .await
                    .map(Response::new)
            }
            Route::One(target) => self
                .call_target(&ctx, target, message, forward, &local)
                .await
                .map(Response::new),
            Route::Many(targets) => {
                let calls = targets.iter().map(|t| {
                    let message = message.clone();
                    let ctx = &ctx;
                    let local = &local;
                    async move {
                        (
                            t.clone(),
                            self.call_target(ctx, t, message, forward, local).await,
                        )
                    }
                });
                let results = futures_join_all(calls).await;
                let mut messages = Vec::new();
                for (target, result) in results {
                    match result {
                        Ok(resp) => {
                            let msgs = resp.into_messages();
                            if msgs.is_empty() {
                                let mut m = Resp::Msg::default();
                                set_hostname(m.metadata_mut(), &target);
                                messages.push(m);
                            }
                            for mut m in msgs {
                                set_hostname(m.metadata_mut(), &target);
                                messages.push(m);
                            }
                        }
                        Err(status) => {
                            let mut m = Resp::Msg::default();
                            *m.metadata_mut() = Some(error_metadata(&target, &status));
                            messages.push(m);
                        }
                    }
                }
                Ok(Response::new(Resp::from_messages(messages)))
            }
        }
    }

    /// A streaming RPC of `common.Data` (Read, Kubeconfig); streams are collected per
    /// backend and re-emitted.
    async fn data_stream<Req>(
        &self,
        rpc: Rpc,
        request: Request<Req>,
        forward: Forward<Req, Vec<Data>>,
        local: impl Fn(Node, Arc<Applied>, Req) -> BoxFuture<Result<Vec<Data>, Status>> + Send + Sync,
    ) -> Result<Response<DataStream>, Status>
    where
        Req: Clone + Send + 'static,
    {
        let ctx = self.context(rpc, &request)?;
        let message = request.into_inner();
        let chunks: Vec<Data> = match &ctx.route {
            Route::Local => {
                let applied = self.node.applied()?;
                local(self.node.clone(), applied, message).await?
            }
            Route::One(target) => {
                self.call_target(&ctx, target, message, forward, &local)
                    .await?
            }
            Route::Many(targets) => {
                let calls = targets.iter().map(|t| {
                    let message = message.clone();
                    let ctx = &ctx;
                    let local = &local;
                    async move {
                        (
                            t.clone(),
                            self.call_target(ctx, t, message, forward, local).await,
                        )
                    }
                });
                let mut out = Vec::new();
                for (target, result) in futures_join_all(calls).await {
                    match result {
                        Ok(chunks) => out.extend(chunks.into_iter().map(|mut c| {
                            set_hostname(&mut c.metadata, &target);
                            c
                        })),
                        Err(status) => out.push(Data {
                            metadata: Some(error_metadata(&target, &status)),
                            bytes: Vec::new(),
                        }),
                    }
                }
                out
            }
        };
        let stream = tokio_stream::iter(chunks.into_iter().map(Ok));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Runs futures concurrently, keeping their order.
async fn futures_join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().flatten().collect()
}

async fn drain(
    stream: Result<Response<tonic::Streaming<Data>>, Status>,
) -> Result<Vec<Data>, Status> {
    let mut s = stream?.into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await? {
        out.push(m);
    }
    Ok(out)
}

fn one<M>(message: M) -> Vec<M> {
    vec![message]
}

#[tonic::async_trait]
impl MachineService for ApidService {
    async fn apply_configuration(
        &self,
        request: Request<pb::ApplyConfigurationRequest>,
    ) -> Result<Response<pb::ApplyConfigurationResponse>, Status> {
        self.unary(
            Rpc::ApplyConfiguration,
            request,
            |mut c, r| Box::pin(async move { Ok(c.apply_configuration(r).await?.into_inner()) }),
            |node, applied, req| {
                Box::pin(async move {
                    let m = node.local_apply(&applied, &req).await?;
                    Ok(pb::ApplyConfigurationResponse { messages: one(m) })
                })
            },
        )
        .await
    }

    async fn bootstrap(
        &self,
        request: Request<pb::BootstrapRequest>,
    ) -> Result<Response<pb::BootstrapResponse>, Status> {
        self.unary(
            Rpc::Bootstrap,
            request,
            |mut c, r| Box::pin(async move { Ok(c.bootstrap(r).await?.into_inner()) }),
            |node, applied, req: pb::BootstrapRequest| {
                Box::pin(async move {
                    if req.recover_etcd {
                        return Err(Status::unimplemented(
                            "etcd recovery from a snapshot is not supported by the simulator",
                        ));
                    }
                    node.local_bootstrap(&applied).await?;
                    Ok(pb::BootstrapResponse {
                        messages: one(pb::Bootstrap { metadata: None }),
                    })
                })
            },
        )
        .await
    }

    async fn etcd_member_list(
        &self,
        request: Request<pb::EtcdMemberListRequest>,
    ) -> Result<Response<pb::EtcdMemberListResponse>, Status> {
        self.unary(
            Rpc::EtcdMemberList,
            request,
            |mut c, r| Box::pin(async move { Ok(c.etcd_member_list(r).await?.into_inner()) }),
            |node, applied, _req| {
                Box::pin(async move {
                    let m = node.local_etcd_members(&applied).await?;
                    Ok(pb::EtcdMemberListResponse { messages: one(m) })
                })
            },
        )
        .await
    }

    async fn etcd_status(
        &self,
        request: Request<()>,
    ) -> Result<Response<pb::EtcdStatusResponse>, Status> {
        self.unary(
            Rpc::EtcdStatus,
            request,
            |mut c, r| Box::pin(async move { Ok(c.etcd_status(r).await?.into_inner()) }),
            |node, applied, _req| {
                Box::pin(async move {
                    let s = node.local_etcd_status(&applied).await?;
                    Ok(pb::EtcdStatusResponse {
                        messages: one(pb::EtcdStatus {
                            metadata: None,
                            member_status: Some(s),
                        }),
                    })
                })
            },
        )
        .await
    }

    async fn hostname(
        &self,
        request: Request<()>,
    ) -> Result<Response<pb::HostnameResponse>, Status> {
        self.unary(
            Rpc::Hostname,
            request,
            |mut c, r| Box::pin(async move { Ok(c.hostname(r).await?.into_inner()) }),
            |_node, applied, _req| {
                Box::pin(async move {
                    Ok(pb::HostnameResponse {
                        messages: one(pb::Hostname {
                            metadata: None,
                            hostname: applied.hostname.clone(),
                        }),
                    })
                })
            },
        )
        .await
    }

    type KubeconfigStream = DataStream;

    async fn kubeconfig(&self, request: Request<()>) -> Result<Response<DataStream>, Status> {
        self.data_stream(
            Rpc::Kubeconfig,
            request,
            |mut c, r| Box::pin(async move { drain(c.kubeconfig(r).await).await }),
            |node, applied, _req| {
                Box::pin(async move { Ok(data_chunks(&node.local_kubeconfig(&applied)?)) })
            },
        )
        .await
    }

    async fn memory(&self, request: Request<()>) -> Result<Response<pb::MemoryResponse>, Status> {
        self.unary(
            Rpc::Memory,
            request,
            |mut c, r| Box::pin(async move { Ok(c.memory(r).await?.into_inner()) }),
            |node, applied, _req| {
                Box::pin(async move {
                    Ok(pb::MemoryResponse {
                        messages: one(pb::Memory {
                            metadata: None,
                            meminfo: Some(node.local_meminfo(&applied)),
                        }),
                    })
                })
            },
        )
        .await
    }

    type ReadStream = DataStream;

    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<DataStream>, Status> {
        self.data_stream(
            Rpc::Read,
            request,
            |mut c, r| Box::pin(async move { drain(c.read(r).await).await }),
            |node, applied, req: pb::ReadRequest| {
                Box::pin(async move { Ok(data_chunks(&node.local_read(&applied, &req.path)?)) })
            },
        )
        .await
    }

    async fn reboot(
        &self,
        request: Request<pb::RebootRequest>,
    ) -> Result<Response<pb::RebootResponse>, Status> {
        self.unary(
            Rpc::Reboot,
            request,
            |mut c, r| Box::pin(async move { Ok(c.reboot(r).await?.into_inner()) }),
            |node, _applied, _req| {
                Box::pin(async move {
                    node.schedule_reboot();
                    Ok(pb::RebootResponse {
                        messages: one(pb::Reboot {
                            metadata: None,
                            actor_id: actor_id(),
                        }),
                    })
                })
            },
        )
        .await
    }

    async fn reset(
        &self,
        request: Request<pb::ResetRequest>,
    ) -> Result<Response<pb::ResetResponse>, Status> {
        self.unary(
            Rpc::Reset,
            request,
            |mut c, r| Box::pin(async move { Ok(c.reset(r).await?.into_inner()) }),
            |node, applied, req: pb::ResetRequest| {
                Box::pin(async move {
                    node.local_reset(&applied, &req).await?;
                    Ok(pb::ResetResponse {
                        messages: one(pb::Reset {
                            metadata: None,
                            actor_id: actor_id(),
                        }),
                    })
                })
            },
        )
        .await
    }

    async fn service_list(
        &self,
        request: Request<()>,
    ) -> Result<Response<pb::ServiceListResponse>, Status> {
        self.unary(
            Rpc::ServiceList,
            request,
            |mut c, r| Box::pin(async move { Ok(c.service_list(r).await?.into_inner()) }),
            |node, _applied, _req| {
                Box::pin(async move {
                    Ok(pb::ServiceListResponse {
                        messages: one(pb::ServiceList {
                            metadata: None,
                            services: node.local_services(),
                        }),
                    })
                })
            },
        )
        .await
    }

    async fn service_restart(
        &self,
        request: Request<pb::ServiceRestartRequest>,
    ) -> Result<Response<pb::ServiceRestartResponse>, Status> {
        self.unary(
            Rpc::ServiceRestart,
            request,
            |mut c, r| Box::pin(async move { Ok(c.service_restart(r).await?.into_inner()) }),
            |node, _applied, req: pb::ServiceRestartRequest| {
                Box::pin(async move {
                    let resp = node.local_service(ServiceAction::Restart, &req.id).await?;
                    Ok(pb::ServiceRestartResponse {
                        messages: one(pb::ServiceRestart {
                            metadata: None,
                            resp,
                        }),
                    })
                })
            },
        )
        .await
    }

    async fn service_start(
        &self,
        request: Request<pb::ServiceStartRequest>,
    ) -> Result<Response<pb::ServiceStartResponse>, Status> {
        self.unary(
            Rpc::ServiceStart,
            request,
            |mut c, r| Box::pin(async move { Ok(c.service_start(r).await?.into_inner()) }),
            |node, _applied, req: pb::ServiceStartRequest| {
                Box::pin(async move {
                    let resp = node.local_service(ServiceAction::Start, &req.id).await?;
                    Ok(pb::ServiceStartResponse {
                        messages: one(pb::ServiceStart {
                            metadata: None,
                            resp,
                        }),
                    })
                })
            },
        )
        .await
    }

    async fn service_stop(
        &self,
        request: Request<pb::ServiceStopRequest>,
    ) -> Result<Response<pb::ServiceStopResponse>, Status> {
        self.unary(
            Rpc::ServiceStop,
            request,
            |mut c, r| Box::pin(async move { Ok(c.service_stop(r).await?.into_inner()) }),
            |node, _applied, req: pb::ServiceStopRequest| {
                Box::pin(async move {
                    let resp = node.local_service(ServiceAction::Stop, &req.id).await?;
                    Ok(pb::ServiceStopResponse {
                        messages: one(pb::ServiceStop {
                            metadata: None,
                            resp,
                        }),
                    })
                })
            },
        )
        .await
    }

    async fn upgrade(
        &self,
        request: Request<pb::UpgradeRequest>,
    ) -> Result<Response<pb::UpgradeResponse>, Status> {
        self.unary(
            Rpc::Upgrade,
            request,
            |mut c, r| Box::pin(async move { Ok(c.upgrade(r).await?.into_inner()) }),
            |node, _applied, req: pb::UpgradeRequest| {
                Box::pin(async move {
                    node.local_upgrade(&req.image)?;
                    Ok(pb::UpgradeResponse {
                        messages: one(pb::Upgrade {
                            metadata: None,
                            ack: "Upgrade request received".into(),
                            actor_id: actor_id(),
                        }),
                    })
                })
            },
        )
        .await
    }

    async fn version(&self, request: Request<()>) -> Result<Response<pb::VersionResponse>, Status> {
        self.unary(
            Rpc::Version,
            request,
            |mut c, r| Box::pin(async move { Ok(c.version(r).await?.into_inner()) }),
            |node, applied, _req| {
                Box::pin(async move {
                    Ok(pb::VersionResponse {
                        messages: one(node.local_version(&applied)),
                    })
                })
            },
        )
        .await
    }
}

/// An id for the actor of a lifecycle action (Talos returns a UUID).
fn actor_id() -> String {
    crate::k8s::meta::random_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_metadata() {
        let mut md = MetadataMap::new();
        assert!(matches!(route(&md), Route::Local));
        md.insert("node", "10.0.0.2".parse().unwrap());
        assert!(matches!(route(&md), Route::One(n) if n == "10.0.0.2"));
        md.append("nodes", "10.0.0.3".parse().unwrap());
        md.append("nodes", "10.0.0.4, 10.0.0.5".parse().unwrap());
        match route(&md) {
            Route::Many(n) => assert_eq!(n, ["10.0.0.3", "10.0.0.4", "10.0.0.5"]),
            _ => panic!("expected fan-out"),
        }
    }

    #[test]
    fn timeouts_and_errors() {
        let mut md = MetadataMap::new();
        md.insert("grpc-timeout", "1500m".parse().unwrap());
        assert_eq!(grpc_timeout(&md), Some(Duration::from_millis(1500)));
        md.insert("grpc-timeout", "2S".parse().unwrap());
        assert_eq!(grpc_timeout(&md), Some(Duration::from_secs(2)));
        let m = error_metadata("10.0.0.9", &Status::unavailable("connection refused"));
        assert_eq!(
            m.error,
            "rpc error: code = Unavailable desc = connection refused"
        );
        assert_eq!(m.status.unwrap().code, 14);
        assert_eq!(actor_id().len(), 36);
    }
}
