//! `machine.MachineService` in maintenance mode (`internal/app/maintenance/server.go`): TLS
//! without client certificates; `ApplyConfiguration` is open to anyone (AUTO, REBOOT and
//! TRY; other modes are Unimplemented), validates the config and honours `dry_run`.
//! `Version`, `Reset` and `Upgrade` need admin, which an insecure client never has, so they
//! answer Unimplemented "API is not implemented in maintenance mode"; every other method
//! is not served at all (grpc-go's "method X not implemented").

use std::pin::Pin;

use kforge_talos_api::proto::common::Data;
use kforge_talos_api::proto::machine as pb;
use kforge_talos_api::proto::machine::machine_service_server::MachineService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::node::Node;

type DataStream = Pin<Box<dyn Stream<Item = Result<Data, Status>> + Send + 'static>>;

#[derive(Clone)]
pub struct MaintenanceService {
    node: Node,
}

impl MaintenanceService {
    pub fn new(node: Node) -> Self {
        MaintenanceService { node }
    }
}

fn admin_only() -> Status {
    Status::unimplemented("API is not implemented in maintenance mode")
}

fn not_served(method: &str) -> Status {
    Status::unimplemented(format!("method {method} not implemented"))
}

#[tonic::async_trait]
impl MachineService for MaintenanceService {
    async fn apply_configuration(
        &self,
        request: Request<pb::ApplyConfigurationRequest>,
    ) -> Result<Response<pb::ApplyConfigurationResponse>, Status> {
        let m = self.node.maintenance_apply(request.get_ref()).await?;
        Ok(Response::new(pb::ApplyConfigurationResponse {
            messages: vec![m],
        }))
    }

    async fn bootstrap(
        &self,
        _: Request<pb::BootstrapRequest>,
    ) -> Result<Response<pb::BootstrapResponse>, Status> {
        Err(not_served("Bootstrap"))
    }

    async fn etcd_member_list(
        &self,
        _: Request<pb::EtcdMemberListRequest>,
    ) -> Result<Response<pb::EtcdMemberListResponse>, Status> {
        Err(not_served("EtcdMemberList"))
    }

    async fn etcd_status(
        &self,
        _: Request<()>,
    ) -> Result<Response<pb::EtcdStatusResponse>, Status> {
        Err(not_served("EtcdStatus"))
    }

    async fn hostname(&self, _: Request<()>) -> Result<Response<pb::HostnameResponse>, Status> {
        Err(not_served("Hostname"))
    }

    type KubeconfigStream = DataStream;

    async fn kubeconfig(&self, _: Request<()>) -> Result<Response<DataStream>, Status> {
        Err(not_served("Kubeconfig"))
    }

    async fn memory(&self, _: Request<()>) -> Result<Response<pb::MemoryResponse>, Status> {
        Err(not_served("Memory"))
    }

    type ReadStream = DataStream;

    async fn read(&self, _: Request<pb::ReadRequest>) -> Result<Response<DataStream>, Status> {
        Err(not_served("Read"))
    }

    async fn reboot(
        &self,
        _: Request<pb::RebootRequest>,
    ) -> Result<Response<pb::RebootResponse>, Status> {
        Err(not_served("Reboot"))
    }

    async fn reset(
        &self,
        _: Request<pb::ResetRequest>,
    ) -> Result<Response<pb::ResetResponse>, Status> {
        Err(admin_only())
    }

    async fn service_list(
        &self,
        _: Request<()>,
    ) -> Result<Response<pb::ServiceListResponse>, Status> {
        Err(not_served("ServiceList"))
    }

    async fn service_restart(
        &self,
        _: Request<pb::ServiceRestartRequest>,
    ) -> Result<Response<pb::ServiceRestartResponse>, Status> {
        Err(not_served("ServiceRestart"))
    }

    async fn service_start(
        &self,
        _: Request<pb::ServiceStartRequest>,
    ) -> Result<Response<pb::ServiceStartResponse>, Status> {
        Err(not_served("ServiceStart"))
    }

    async fn service_stop(
        &self,
        _: Request<pb::ServiceStopRequest>,
    ) -> Result<Response<pb::ServiceStopResponse>, Status> {
        Err(not_served("ServiceStop"))
    }

    async fn upgrade(
        &self,
        _: Request<pb::UpgradeRequest>,
    ) -> Result<Response<pb::UpgradeResponse>, Status> {
        Err(admin_only())
    }

    async fn version(&self, _: Request<()>) -> Result<Response<pb::VersionResponse>, Status> {
        Err(admin_only())
    }
}
