//! The simulated node: its lifecycle (boot → maintenance mode or a configured node →
//! reboot/reset/power-off), the listeners it serves on, its etcd member (bootstrap, join
//! as learner and promote, restart with existing data, leave on graceful reset), its
//! Kubernetes parts (the API server and controllers of a control-plane node once etcd
//! runs, the VIP campaign, the kubelet), the service table, and the faults that make it
//! misbehave.
//!
//! Everything one boot starts (the boot sequence, etcd join and health loops) belongs to a
//! *generation*; going down (reboot, reset, shutdown) aborts the generation's tasks,
//! closes the listeners and stops etcd before the next boot begins.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use kforge_talos_api::proto::common::Data;
use kforge_talos_api::proto::machine as pb;
use kforge_talos_api::proto::machine::machine_service_client::MachineServiceClient;
use kforge_talos_api::proto::machine::machine_service_server::MachineServiceServer;
use rustls::ClientConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::transport::Channel;

use crate::SimError;
use crate::etcd::{EtcdClient, EtcdLaunch, EtcdProcess};
use crate::k8s::apiserver::{ApiServer, ApiServerConfig};
use crate::k8s::{controllers, kubelet, registry};
use crate::kernel;
use crate::layout::Layout;
use crate::machine_config::{self, MachineConfig, MachineType};
use crate::pki::{self, ApidIdentity, EtcdPki};
use crate::proto::securityapi::security_service_server::SecurityServiceServer;
use crate::services::{ServiceState, ServiceTable};
use crate::settings::{Faults, SimSettings};
use crate::transport::{self, Listener};
use crate::trustd::{self, TrustdAuthority, TrustdService};

mod kubernetes;
use kubernetes::NodeVip;

/// Where the node's log lines go (the binary writes them to stderr).
pub type Logger = Arc<dyn Fn(&str) + Send + Sync>;

/// How long after answering an RPC that takes the node down it actually goes down, so
/// the answer reaches the client first.
const ANSWER_GRACE: Duration = Duration::from_millis(150);
/// etcd gets this long to stop on SIGTERM.
const ETCD_STOP_GRACE: Duration = Duration::from_secs(10);
/// A failed etcd is restarted after this long (Talos' restart backoff, shortened).
const ETCD_RESTART_DELAY: Duration = Duration::from_secs(1);
/// How often a node looks for an etcd cluster to join, checks etcd's health, retries
/// trustd.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Exit status of a simulated crash.
pub const CRASH_EXIT_CODE: i32 = 137;
/// How often the control plane's Kubernetes parts are reconciled (API server listeners,
/// the VIP listener).
const KUBE_RECONCILE_INTERVAL: Duration = Duration::from_millis(250);
/// How often the API server's health is checked and the controllers run.
const KUBE_CONTROL_INTERVAL: Duration = Duration::from_secs(1);

/// Where the node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Firmware and kernel: nothing listens.
    Booting,
    /// No config: the maintenance API listens.
    Maintenance,
    /// Configured and apid is up; `ready` once machined finished booting.
    Running { ready: bool },
    /// Halted after a reset without reboot; `power-on` (control socket) boots it.
    PoweredOff,
}

/// What a configured node knows for as long as it runs with one config.
pub struct Applied {
    pub config: MachineConfig,
    pub hostname: String,
    pub identity: ApidIdentity,
    pub etcd_pki: Option<EtcdPki>,
    etcd_tls: Option<Arc<ClientConfig>>,
    pub version_tag: String,
    proxies: Mutex<HashMap<String, MachineServiceClient<Channel>>>,
}

impl Applied {
    pub fn machine_type(&self) -> MachineType {
        self.config.machine_type
    }

    pub fn is_control_plane(&self) -> bool {
        self.config.machine_type.is_control_plane()
    }

    /// The same node with another config (applied without a reboot).
    fn with_config(&self, config: MachineConfig) -> Applied {
        Applied {
            hostname: self.hostname.clone(),
            identity: self.identity.clone(),
            etcd_pki: self.etcd_pki.clone(),
            etcd_tls: self.etcd_tls.clone(),
            version_tag: self.version_tag.clone(),
            proxies: Mutex::new(HashMap::new()),
            config,
        }
    }
}

struct State {
    phase: Phase,
    generation: u64,
    boot_delay: Duration,
    ready_delay: Duration,
    faults: Faults,
    applied: Option<Arc<Applied>>,
    services: ServiceTable,
    /// Whether etcd should be running (bootstrapped or joined, not stopped by request).
    etcd_wanted: bool,
    etcd: Option<EtcdProcess>,
    apid: Option<Listener>,
    trustd: Option<Listener>,
    tasks: Vec<JoinHandle<()>>,
    try_revert: Option<JoinHandle<()>>,
    kube: KubeState,
}

/// The control plane's Kubernetes parts during one boot.
struct KubeState {
    /// The kube-apiserver service should run (ServiceStop clears it).
    wanted: bool,
    /// etcd has been started during this boot (the API server waits for it).
    etcd_started: bool,
    /// The system namespaces exist.
    namespaces_ready: bool,
    server: Option<ApiServer>,
    tls: Option<Arc<rustls::ServerConfig>>,
    listener: Option<Listener>,
    vip_listener: Option<Listener>,
    /// This node holds the VIP (elected).
    vip_held: bool,
}

impl Default for KubeState {
    fn default() -> Self {
        KubeState {
            wanted: true,
            etcd_started: false,
            namespaces_ready: false,
            server: None,
            tls: None,
            listener: None,
            vip_listener: None,
            vip_held: false,
        }
    }
}

impl KubeState {
    fn take_listeners(&mut self) -> Vec<Option<Listener>> {
        vec![self.listener.take(), self.vip_listener.take()]
    }
}

struct Inner {
    settings: SimSettings,
    layout: Layout,
    log: Logger,
    state: Mutex<State>,
    /// Serialises operations that change what the node is (apply, bootstrap, etcd join,
    /// reboot, reset).
    lifecycle: tokio::sync::Mutex<()>,
    /// Serialises starting and stopping the API server (reconcile loop, ServiceStart).
    kube_ops: tokio::sync::Mutex<()>,
    exit: watch::Sender<Option<i32>>,
}

/// A handle on the node; cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

/// What `status` on the control socket reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeStatus {
    pub address: IpAddr,
    pub phase: Phase,
    pub faults: Faults,
    pub machine_type: Option<MachineType>,
    pub hostname: Option<String>,
    pub etcd_pid: Option<i32>,
    /// The kube-apiserver listens.
    pub kube_apiserver: bool,
    /// This node holds the VIP.
    pub vip_held: bool,
    pub boot_delay_ms: u128,
    pub ready_delay_ms: u128,
}

fn status_error(e: SimError) -> Status {
    match &e {
        SimError::Etcd { code, .. } if *code == tonic::Code::DeadlineExceeded => {
            Status::deadline_exceeded(e.to_string())
        }
        SimError::Etcd { .. } => Status::unavailable(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

impl Node {
    /// Prepares the state directory, cleans up after a crashed predecessor and starts
    /// booting.
    pub async fn start(settings: SimSettings, log: Logger) -> Result<Node, SimError> {
        settings.validate()?;
        let layout = Layout::new(&settings.state_dir);
        layout.create()?;
        if let Some(pid) = crate::etcd::kill_stale(&layout.etcd_pid(), &layout.etcd_data()) {
            log(&format!(
                "killed etcd (pid {pid}) left behind by a crashed predecessor"
            ));
        }
        let (exit, _) = watch::channel(None);
        let node = Node {
            inner: Arc::new(Inner {
                layout,
                log,
                state: Mutex::new(State {
                    phase: Phase::Booting,
                    generation: 0,
                    boot_delay: settings.boot_delay,
                    ready_delay: settings.ready_delay,
                    faults: settings.faults,
                    applied: None,
                    services: ServiceTable::default(),
                    etcd_wanted: false,
                    etcd: None,
                    apid: None,
                    trustd: None,
                    tasks: Vec::new(),
                    try_revert: None,
                    kube: KubeState::default(),
                }),
                lifecycle: tokio::sync::Mutex::new(()),
                kube_ops: tokio::sync::Mutex::new(()),
                exit,
                settings,
            }),
        };
        node.spawn_boot();
        Ok(node)
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self, line: &str) {
        (self.inner.log)(line);
    }

    pub fn settings(&self) -> &SimSettings {
        &self.inner.settings
    }

    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    pub fn phase(&self) -> Phase {
        self.st().phase
    }

    pub fn status(&self) -> NodeStatus {
        let st = self.st();
        NodeStatus {
            address: self.inner.settings.address,
            phase: st.phase,
            faults: st.faults,
            machine_type: st.applied.as_ref().map(|a| a.machine_type()),
            hostname: st.applied.as_ref().map(|a| a.hostname.clone()),
            etcd_pid: st.etcd.as_ref().map(|p| p.pid),
            kube_apiserver: st.kube.listener.is_some(),
            vip_held: st.kube.vip_held,
            boot_delay_ms: st.boot_delay.as_millis(),
            ready_delay_ms: st.ready_delay.as_millis(),
        }
    }

    /// Resolves when the node asked the process to exit, with the exit status.
    pub async fn exit_requested(&self) -> i32 {
        let mut rx = self.inner.exit.subscribe();
        loop {
            if let Some(code) = *rx.borrow_and_update() {
                return code;
            }
            if rx.changed().await.is_err() {
                return 1;
            }
        }
    }

    fn is_current(&self, generation: u64) -> bool {
        self.st().generation == generation
    }

    fn add_task(&self, generation: u64, task: JoinHandle<()>) {
        let mut st = self.st();
        if st.generation == generation {
            st.tasks.push(task);
        } else {
            task.abort();
        }
    }

    fn spawn_boot(&self) {
        let generation = self.st().generation;
        let node = self.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = node.boot(generation).await {
                node.log(&format!("boot failed: {e}"));
            }
        });
        self.add_task(generation, task);
    }

    // ---------------------------------------------------------------- boot

    async fn boot(&self, generation: u64) -> Result<(), SimError> {
        let delay = self.st().boot_delay;
        tokio::time::sleep(delay).await;
        if !self.is_current(generation) {
            return Ok(());
        }
        let layout = &self.inner.layout;
        if let Some(staged) = layout.read_staged()? {
            layout.write_config(staged.expose())?;
            layout.remove_staged()?;
            self.log("applied the staged configuration");
        }
        let Some(text) = layout.read_config()? else {
            return self.enter_maintenance(generation).await;
        };
        let config = match self.parse_config(text.expose()) {
            Ok(c) => c,
            Err(e) => {
                self.log(&format!(
                    "the stored config is unusable, staying in maintenance mode: {e}"
                ));
                return self.enter_maintenance(generation).await;
            }
        };
        let applied = match self.build_applied(config, generation).await? {
            Some(a) => Arc::new(a),
            None => return Ok(()),
        };
        let control_plane = applied.is_control_plane();
        {
            let mut st = self.st();
            if st.generation != generation {
                return Ok(());
            }
            let mut services = ServiceTable::for_node(control_plane);
            for id in services.ids() {
                services.set(&id, ServiceState::Preparing, "Running pre state");
            }
            services.set(
                "machined",
                ServiceState::Running,
                "Service started as goroutine",
            );
            services.set_health("machined", true, "");
            st.services = services;
            st.applied = Some(applied.clone());
            st.phase = Phase::Running { ready: false };
        }
        self.open_listeners(generation).await?;
        {
            let mut st = self.st();
            st.services
                .set("apid", ServiceState::Running, "Health check successful");
            st.services.set_health("apid", true, "");
            if control_plane {
                st.services
                    .set("trustd", ServiceState::Running, "Health check successful");
                st.services.set_health("trustd", true, "");
            }
        }
        self.log(&format!(
            "booted as {} `{}` (Talos {})",
            if control_plane {
                "control-plane node"
            } else {
                "worker"
            },
            applied.hostname,
            applied.version_tag
        ));

        let ready_delay = self.st().ready_delay;
        tokio::time::sleep(ready_delay).await;
        {
            let mut st = self.st();
            if st.generation != generation {
                return Ok(());
            }
            st.phase = Phase::Running { ready: true };
            for id in [
                "auditd",
                "containerd",
                "cri",
                "dashboard",
                "kubelet",
                "syslogd",
                "udevd",
            ] {
                st.services
                    .set(id, ServiceState::Running, "Service started as goroutine");
                st.services.set_health(id, true, "");
            }
        }
        self.log("ready");
        self.spawn_kubelet(&applied, generation);
        if control_plane {
            let node = self.clone();
            let kube = tokio::spawn(async move { node.kube_loop(generation).await });
            self.add_task(generation, kube);
            if let Some(vip) = applied.config.vip {
                let host: Arc<dyn crate::vip::VipHost> = Arc::new(NodeVip {
                    node: self.clone(),
                    generation,
                });
                let campaign = tokio::spawn(crate::vip::run(
                    host,
                    vip,
                    applied.hostname.clone(),
                    self.settings().vip_ttl,
                ));
                self.add_task(generation, campaign);
            }
            if self.inner.layout.etcd_data_present() {
                let _guard = self.inner.lifecycle.lock().await;
                if !self.is_current(generation) {
                    return Ok(());
                }
                self.st().etcd_wanted = true;
                self.start_etcd(
                    &applied,
                    generation,
                    self_cluster(&applied, self.settings()),
                    "existing",
                )?;
            } else {
                self.st().services.set(
                    "etcd",
                    ServiceState::Preparing,
                    "Running pre state: waiting for the cluster to be bootstrapped or for an etcd member to join",
                );
            }
            let node = self.clone();
            let join = tokio::spawn(async move { node.etcd_loop(generation).await });
            self.add_task(generation, join);
        }
        Ok(())
    }

    fn parse_config(&self, text: &str) -> Result<MachineConfig, machine_config::ConfigRejected> {
        let s = &self.inner.settings;
        MachineConfig::parse(
            text,
            s.validation_mode,
            machine_config::talos_minor(&s.talos_version),
            &s.kernel_args,
        )
    }

    fn version_tag(&self, config: &MachineConfig) -> String {
        self.inner
            .layout
            .read_installed_image()
            .as_deref()
            .and_then(machine_config::image_tag)
            .or_else(|| {
                config
                    .install_image
                    .as_deref()
                    .and_then(machine_config::image_tag)
            })
            .unwrap_or_else(|| self.inner.settings.talos_version.clone())
    }

    /// The node's identity for `config`: issued locally on a control-plane node, from
    /// trustd on a worker (retried until a control-plane node answers or the generation
    /// ends; `None` then).
    async fn build_applied(
        &self,
        config: MachineConfig,
        generation: u64,
    ) -> Result<Option<Applied>, SimError> {
        let s = &self.inner.settings;
        let hostname = config
            .hostname
            .clone()
            .unwrap_or_else(|| default_hostname(s.address));
        let sans = pki::node_sans(s.address, &hostname, &config.cert_sans)?;
        let now = SystemTime::now();
        let (identity, etcd_pki) = match &config.bundle {
            Some(bundle) => {
                let identity = pki::control_plane_identity(bundle, &hostname, &sans, now)?;
                let etcd = EtcdPki::issue(bundle, &hostname, s.address, now)?;
                (identity, Some(etcd))
            }
            None => {
                let mut attempt = 0u32;
                loop {
                    if !self.is_current(generation) {
                        return Ok(None);
                    }
                    match self.identity_from_trustd(&config, &hostname, &sans).await {
                        Ok(id) => break (id, None),
                        Err(e) => {
                            attempt += 1;
                            if attempt == 1 || attempt.is_multiple_of(20) {
                                self.log(&format!("waiting for trustd: {e}"));
                            }
                            tokio::time::sleep(POLL_INTERVAL).await;
                        }
                    }
                }
            }
        };
        let etcd_tls = match &etcd_pki {
            Some(p) => Some(pki::client_config(
                "connect to etcd",
                &p.ca_pem,
                Some(&p.client),
            )?),
            None => None,
        };
        Ok(Some(Applied {
            version_tag: self.version_tag(&config),
            hostname,
            identity,
            etcd_pki,
            etcd_tls,
            proxies: Mutex::new(HashMap::new()),
            config,
        }))
    }

    /// Control-plane addresses to ask for trustd and etcd: `--peer`s and the cluster
    /// endpoint's host, without this node.
    fn peer_addresses(&self, config: &MachineConfig) -> Vec<IpAddr> {
        let s = &self.inner.settings;
        let mut out: Vec<IpAddr> = Vec::new();
        let candidates = s.peers.iter().cloned().chain(config.endpoint_host());
        for c in candidates {
            let ip = c
                .parse::<IpAddr>()
                .ok()
                .or_else(|| c.parse::<SocketAddr>().ok().map(|a| a.ip()));
            if let Some(ip) = ip
                && ip != s.address
                && !out.contains(&ip)
            {
                out.push(ip);
            }
        }
        out
    }

    async fn identity_from_trustd(
        &self,
        config: &MachineConfig,
        hostname: &str,
        sans: &kforge_pki::SubjectAltNames,
    ) -> Result<ApidIdentity, SimError> {
        let s = &self.inner.settings;
        let peers = self.peer_addresses(config);
        let mut last = SimError::Setting {
            setting: "--peer",
            reason: "no control-plane address is known: give --peer or a cluster endpoint with an IP address".into(),
        };
        for peer in peers {
            let server_csr = pki::new_csr(hostname, None, sans)?;
            let client_csr = pki::new_csr(hostname, Some("os:impersonator"), &Default::default())?;
            let token = &config.trustd_token;
            let ca = &config.os_ca_pem;
            let signed = async {
                let server = trustd::request_certificate(
                    peer,
                    s.trustd_port,
                    ca,
                    token,
                    "apid server",
                    &server_csr.csr_pem,
                )
                .await?;
                let client = trustd::request_certificate(
                    peer,
                    s.trustd_port,
                    ca,
                    token,
                    "apid client",
                    &client_csr.csr_pem,
                )
                .await?;
                Ok::<_, SimError>((server, client))
            };
            match signed.await {
                Ok((server, client)) => {
                    return Ok(ApidIdentity {
                        ca_pem: config.os_ca_pem.clone(),
                        server: pki::CertKey {
                            crt_pem: server,
                            key_pem: server_csr.key_pem,
                        },
                        client: pki::CertKey {
                            crt_pem: client,
                            key_pem: client_csr.key_pem,
                        },
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn enter_maintenance(&self, generation: u64) -> Result<(), SimError> {
        {
            let mut st = self.st();
            if st.generation != generation {
                return Ok(());
            }
            st.phase = Phase::Maintenance;
            st.applied = None;
            st.services = ServiceTable::default();
        }
        self.open_listeners(generation).await?;
        self.log("maintenance mode: waiting for a machine config");
        Ok(())
    }

    /// Opens the listeners the phase calls for (unless connections are being refused).
    async fn open_listeners(&self, generation: u64) -> Result<(), SimError> {
        let s = &self.inner.settings;
        let (phase, applied, faults) = {
            let st = self.st();
            (st.phase, st.applied.clone(), st.faults)
        };
        if faults.refuse {
            return Ok(());
        }
        let apid_addr = SocketAddr::new(s.address, s.api_port);
        let (apid, trustd) = match (phase, applied) {
            (Phase::Maintenance, _) => {
                let cert = pki::maintenance_certificate(s.address, SystemTime::now())?;
                let tls = pki::server_only_config(&cert)?;
                let routes = tonic::service::Routes::new(
                    MachineServiceServer::new(crate::maintenance::MaintenanceService::new(
                        self.clone(),
                    ))
                    .max_decoding_message_size(kforge_talos_api::MAX_MESSAGE_SIZE),
                );
                let listener = transport::bind("the maintenance API", apid_addr).await?;
                (
                    Some(Listener::serve(listener, tls, routes, faults.pause)),
                    None,
                )
            }
            (Phase::Running { .. }, Some(applied)) => {
                let tls = pki::apid_server_config(&applied.identity)?;
                let routes = tonic::service::Routes::new(
                    MachineServiceServer::new(crate::apid::ApidService::new(self.clone()))
                        .max_decoding_message_size(kforge_talos_api::MAX_MESSAGE_SIZE)
                        .max_encoding_message_size(kforge_talos_api::MAX_MESSAGE_SIZE),
                );
                let listener = transport::bind("apid", apid_addr).await?;
                let apid = Listener::serve(listener, tls, routes, faults.pause);
                let trustd = match &applied.config.bundle {
                    Some(bundle) => {
                        let (os_ca_pem, os_ca_key) = pki::os_ca(bundle)?;
                        let service = TrustdService::new(TrustdAuthority {
                            os_ca_pem,
                            os_ca_key,
                            token: applied.config.trustd_token.clone(),
                        });
                        let tls = pki::server_only_config(&applied.identity.server)?;
                        let routes =
                            tonic::service::Routes::new(SecurityServiceServer::new(service));
                        let listener =
                            transport::bind("trustd", SocketAddr::new(s.address, s.trustd_port))
                                .await?;
                        Some(Listener::serve(listener, tls, routes, faults.pause))
                    }
                    None => None,
                };
                (Some(apid), trustd)
            }
            _ => (None, None),
        };
        let old = {
            let mut st = self.st();
            if st.generation != generation || st.faults.refuse {
                // The node went down (or started refusing) meanwhile.
                vec![apid, trustd]
            } else {
                let old = Self::take_listeners(&mut st);
                st.apid = apid;
                st.trustd = trustd;
                old
            }
        };
        for l in old.into_iter().flatten() {
            l.close().await;
        }
        Ok(())
    }

    fn take_listeners(st: &mut State) -> Vec<Option<Listener>> {
        vec![st.apid.take(), st.trustd.take()]
    }

    async fn close_all(listeners: Vec<Option<Listener>>) {
        for l in listeners.into_iter().flatten() {
            l.close().await;
        }
    }

    // ---------------------------------------------------------------- going down

    /// Ends the current generation: aborts its tasks, closes the listeners, stops etcd
    /// (gracefully unless `hard`). The node is `Booting` afterwards.
    async fn go_down(&self, hard: bool) {
        let (etcd, tasks, listeners) = {
            let mut st = self.st();
            st.generation += 1;
            st.phase = Phase::Booting;
            let listeners = Self::take_listeners(&mut st);
            if let Some(t) = st.try_revert.take() {
                t.abort();
            }
            st.applied = None;
            st.services = ServiceTable::default();
            st.etcd_wanted = false;
            let mut listeners = listeners;
            listeners.extend(std::mem::take(&mut st.kube).take_listeners());
            (st.etcd.take(), std::mem::take(&mut st.tasks), listeners)
        };
        for t in tasks {
            t.abort();
        }
        Self::close_all(listeners).await;
        if let Some(p) = etcd {
            if hard {
                p.kill_now();
                p.stop(Duration::from_secs(1)).await;
            } else {
                p.stop(ETCD_STOP_GRACE).await;
            }
        }
    }

    /// Reboots: down, then the boot sequence (with the boot delay) again.
    pub async fn reboot(&self) {
        let _guard = self.inner.lifecycle.lock().await;
        self.log("rebooting");
        self.go_down(false).await;
        self.spawn_boot();
    }

    /// A power cycle: etcd is killed, no graceful anything.
    pub async fn power_cycle(&self) {
        let _guard = self.inner.lifecycle.lock().await;
        self.log("power cycle");
        self.go_down(true).await;
        self.spawn_boot();
    }

    /// Boots a powered-off node.
    pub async fn power_on(&self) -> Result<(), String> {
        let _guard = self.inner.lifecycle.lock().await;
        if self.phase() != Phase::PoweredOff {
            return Err(format!(
                "the node is not powered off (it is {:?})",
                self.phase()
            ));
        }
        self.log("power on");
        self.go_down(true).await;
        self.spawn_boot();
        Ok(())
    }

    /// Graceful shutdown of the process (SIGTERM/SIGINT): etcd is stopped cleanly.
    pub async fn shutdown(&self) {
        let _guard = self.inner.lifecycle.lock().await;
        self.log("shutting down");
        self.go_down(false).await;
    }

    /// Exits the process at once, like a machine losing power: etcd is killed, nothing
    /// is cleaned up.
    pub fn crash(&self) -> ! {
        if let Some(p) = self.st().etcd.as_ref() {
            p.kill_now();
        }
        (self.inner.log)("crash");
        let _ = std::io::stderr().flush();
        std::process::exit(CRASH_EXIT_CODE)
    }

    pub fn request_exit(&self, code: i32) {
        let _ = self.inner.exit.send(Some(code));
    }

    // ---------------------------------------------------------------- faults

    pub async fn set_refuse(&self, refuse: bool) {
        let (generation, listeners) = {
            let mut st = self.st();
            st.faults.refuse = refuse;
            let listeners = if refuse {
                let mut l = Self::take_listeners(&mut st);
                l.extend(st.kube.take_listeners());
                l
            } else {
                Vec::new()
            };
            (st.generation, listeners)
        };
        Self::close_all(listeners).await;
        self.log(&format!("fault refuse={refuse}"));
        if !refuse {
            let phase = self.phase();
            if matches!(phase, Phase::Maintenance | Phase::Running { .. })
                && let Err(e) = self.open_listeners(generation).await
            {
                self.log(&format!("cannot listen again: {e}"));
            }
        }
    }

    pub fn set_pause(&self, pause: bool) {
        {
            let mut guard = self.st();
            let st = &mut *guard;
            st.faults.pause = pause;
            for l in [
                &st.apid,
                &st.trustd,
                &st.kube.listener,
                &st.kube.vip_listener,
            ]
            .into_iter()
            .flatten()
            {
                l.set_paused(pause);
            }
            if let Some(p) = &st.etcd {
                p.signal(if pause {
                    nix::sys::signal::Signal::SIGSTOP
                } else {
                    nix::sys::signal::Signal::SIGCONT
                });
            }
        }
        self.log(&format!("fault pause={pause}"));
    }

    pub fn set_boot_delay(&self, d: Duration) {
        self.st().boot_delay = d;
    }

    pub fn set_ready_delay(&self, d: Duration) {
        self.st().ready_delay = d;
    }

    fn paused(&self) -> bool {
        self.st().faults.pause
    }

    // ---------------------------------------------------------------- etcd

    fn etcd_launch(
        &self,
        applied: &Applied,
        initial_cluster: String,
        state: &'static str,
    ) -> EtcdLaunch {
        let s = &self.inner.settings;
        let l = &self.inner.layout;
        EtcdLaunch {
            binary: s.etcd_binary.clone(),
            name: applied.hostname.clone(),
            data_dir: l.etcd_data(),
            pki_dir: l.etcd_pki(),
            address: s.address,
            client_port: s.etcd_client_port,
            peer_port: s.etcd_peer_port,
            initial_cluster,
            initial_cluster_state: state,
            cluster_token: applied.config.cluster_name.clone(),
            log_file: l.etcd_log(),
            pid_file: l.etcd_pid(),
        }
    }

    /// Starts etcd (the caller holds the lifecycle lock and has set `etcd_wanted`).
    fn start_etcd(
        &self,
        applied: &Applied,
        generation: u64,
        initial_cluster: String,
        state: &'static str,
    ) -> Result<(), SimError> {
        let Some(pki) = &applied.etcd_pki else {
            return Ok(());
        };
        crate::etcd::write_pki(&self.inner.layout.etcd_pki(), pki)?;
        let launch = self.etcd_launch(applied, initial_cluster, state);
        let process = EtcdProcess::spawn(&launch)?;
        let pid = process.pid;
        let mut exited = process.exited.clone();
        {
            let mut st = self.st();
            if st.generation != generation {
                drop(st);
                process.kill_now();
                return Ok(());
            }
            if st.faults.pause {
                process.signal(nix::sys::signal::Signal::SIGSTOP);
            }
            st.etcd = Some(process);
            st.kube.etcd_started = true;
            st.services.set(
                "etcd",
                ServiceState::Running,
                format!("Started task etcd (PID {pid}) for container etcd"),
            );
        }
        self.log(&format!(
            "etcd started (pid {pid}, initial cluster state {state})"
        ));
        let node = self.clone();
        let watcher = tokio::spawn(async move {
            let _ = exited.wait_for(Option::is_some).await;
            let outcome = exited.borrow().clone().unwrap_or_default();
            node.etcd_exited(generation, pid, outcome).await;
        });
        self.add_task(generation, watcher);
        Ok(())
    }

    async fn etcd_exited(&self, generation: u64, pid: i32, outcome: String) {
        let restart = {
            let mut st = self.st();
            if st.generation != generation || st.etcd.as_ref().map(|p| p.pid) != Some(pid) {
                return;
            }
            st.etcd = None;
            if st.etcd_wanted {
                st.services.set(
                    "etcd",
                    ServiceState::Failed,
                    format!("Error running Containerd(etcd), going to restart forever: task \"etcd\" failed: {outcome}"),
                );
                true
            } else {
                false
            }
        };
        self.log(&format!("etcd (pid {pid}) exited: {outcome}"));
        if !restart {
            return;
        }
        tokio::time::sleep(ETCD_RESTART_DELAY).await;
        let _guard = self.inner.lifecycle.lock().await;
        let applied = {
            let mut st = self.st();
            if st.generation != generation || !st.etcd_wanted || st.etcd.is_some() {
                return;
            }
            st.services
                .set("etcd", ServiceState::Waiting, "Restarting service");
            st.applied.clone()
        };
        if let Some(applied) = applied {
            let cluster = self_cluster(&applied, self.settings());
            if let Err(e) = self.start_etcd(&applied, generation, cluster, "existing") {
                self.log(&format!("cannot restart etcd: {e}"));
            }
        }
    }

    /// Stops etcd on request (ServiceStop, Reset).
    async fn stop_etcd(&self) {
        let process = {
            let mut st = self.st();
            st.etcd_wanted = false;
            st.etcd.take()
        };
        if let Some(p) = process {
            self.st()
                .services
                .set("etcd", ServiceState::Stopping, "Stopping service");
            p.stop(ETCD_STOP_GRACE).await;
            self.log("etcd stopped");
        }
        self.st().services.set(
            "etcd",
            ServiceState::Finished,
            "Service finished successfully",
        );
    }

    fn local_etcd(&self, applied: &Applied) -> Option<EtcdClient> {
        let tls = applied.etcd_tls.clone()?;
        EtcdClient::new(
            self.inner.settings.address,
            self.inner.settings.etcd_client_port,
            tls,
        )
        .ok()
    }

    /// Background work of a control-plane node: join an existing cluster while etcd has
    /// no data; check etcd's health and promote this member once it is a learner.
    async fn etcd_loop(&self, generation: u64) {
        let mut logged_wait = false;
        let mut last_error = String::new();
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            if !self.is_current(generation) {
                return;
            }
            if self.paused() {
                continue;
            }
            let (applied, running, wanted) = {
                let st = self.st();
                (st.applied.clone(), st.etcd.is_some(), st.etcd_wanted)
            };
            let Some(applied) = applied else { return };
            if running {
                self.check_etcd(&applied).await;
            } else if !wanted && !self.inner.layout.etcd_data_present() {
                match self.try_join(&applied, generation).await {
                    Ok(true) => {}
                    Ok(false) => {
                        if !logged_wait {
                            self.log("etcd: no cluster to join yet (waiting for bootstrap)");
                            logged_wait = true;
                        }
                    }
                    Err(e) => {
                        let text = e.to_string();
                        if text != last_error {
                            self.log(&format!("etcd: joining failed, will retry: {text}"));
                            last_error = text;
                        }
                    }
                }
            }
        }
    }

    async fn check_etcd(&self, applied: &Applied) {
        let Some(client) = self.local_etcd(applied) else {
            return;
        };
        let client = client.with_timeout(Duration::from_secs(2));
        let verdict = match client.status().await {
            Ok(status) if status.is_learner => {
                let id = status.header.as_ref().map(|h| h.member_id).unwrap_or(0);
                self.promote(applied, id).await;
                Err("the member is a learner, not yet promoted".to_string())
            }
            Ok(_) => client
                .get(b"health")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let mut st = self.st();
        if st.etcd.is_none() {
            return;
        }
        match verdict {
            Ok(()) => st.services.set_health("etcd", true, ""),
            Err(message) => st.services.set_health("etcd", false, message),
        }
    }

    /// Promotes learner `id` through a voting member (a learner serves no such calls);
    /// etcd refuses until the learner has caught up, so this is retried by the caller.
    async fn promote(&self, applied: &Applied, id: u64) {
        let Some(tls) = applied.etcd_tls.clone() else {
            return;
        };
        let port = self.inner.settings.etcd_client_port;
        for peer in self.peer_addresses(&applied.config) {
            let Ok(client) = EtcdClient::new(peer, port, tls.clone()) else {
                continue;
            };
            match client
                .with_timeout(Duration::from_secs(2))
                .member_promote(id)
                .await
            {
                Ok(()) => {
                    self.log(&format!(
                        "etcd: promoted member {id:x} from learner to voting member"
                    ));
                    return;
                }
                Err(SimError::Etcd { message, .. }) if message.contains("not in sync") => return,
                Err(_) => continue,
            }
        }
    }

    /// Looks for a running etcd cluster among the peers and joins it as a learner.
    /// Ok(false): nobody to join yet.
    async fn try_join(&self, applied: &Applied, generation: u64) -> Result<bool, SimError> {
        let Some(tls) = applied.etcd_tls.clone() else {
            return Ok(false);
        };
        let s = &self.inner.settings;
        for peer in self.peer_addresses(&applied.config) {
            let client = EtcdClient::new(peer, s.etcd_client_port, tls.clone())?
                .with_timeout(Duration::from_secs(2));
            let Ok(members) = client.member_list().await else {
                continue;
            };
            let _guard = self.inner.lifecycle.lock().await;
            {
                let st = self.st();
                if st.generation != generation || st.etcd.is_some() || st.etcd_wanted {
                    return Ok(true);
                }
            }
            if self.inner.layout.etcd_data_present() {
                return Ok(true);
            }
            let my_peer_url = crate::etcd::url(s.address, s.etcd_peer_port);
            let existing = members
                .iter()
                .find(|m| m.peer_ur_ls.iter().any(|u| u == &my_peer_url))
                .cloned();
            let (me, members) = match existing {
                // Added by an earlier attempt that did not get to start etcd.
                Some(m) if m.name.is_empty() => (m, members),
                Some(m) => {
                    // A member with our address that has run before: our data is gone
                    // (reset without leaving), so replace it.
                    self.log(&format!(
                        "etcd: removing stale member {:x} with this node's address",
                        m.id
                    ));
                    client.member_remove(m.id).await?;
                    client.member_add_learner(&my_peer_url).await?
                }
                None => client.member_add_learner(&my_peer_url).await?,
            };
            let initial_cluster = members
                .iter()
                .flat_map(|m| {
                    let name = if m.id == me.id {
                        applied.hostname.clone()
                    } else {
                        m.name.clone()
                    };
                    m.peer_ur_ls.iter().map(move |u| format!("{name}={u}"))
                })
                .collect::<Vec<_>>()
                .join(",");
            self.log(&format!(
                "etcd: joining the cluster through {peer} as learner {:x}",
                me.id
            ));
            self.st().etcd_wanted = true;
            if let Err(e) = self.start_etcd(applied, generation, initial_cluster, "existing") {
                self.st().etcd_wanted = false;
                return Err(e);
            }
            return Ok(true);
        }
        Ok(false)
    }

    // ---------------------------------------------------------------- local RPCs

    /// The configured node, or Unavailable while it is not running with a config.
    pub(crate) fn applied(&self) -> Result<Arc<Applied>, Status> {
        let st = self.st();
        match (&st.phase, &st.applied) {
            (Phase::Running { .. }, Some(a)) => Ok(a.clone()),
            _ => Err(Status::unavailable("the node is not running")),
        }
    }

    pub(crate) fn ready(&self) -> bool {
        matches!(self.st().phase, Phase::Running { ready: true })
    }

    pub(crate) fn address(&self) -> IpAddr {
        self.inner.settings.address
    }

    /// A MachineService client of another node's apid, with this node's identity.
    pub(crate) async fn proxy_client(
        &self,
        applied: &Applied,
        authority: &str,
    ) -> Result<MachineServiceClient<Channel>, Status> {
        if let Some(c) = applied
            .proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(authority)
        {
            return Ok(c.clone());
        }
        let id = &applied.identity;
        let config = kforge_talos_api::ConnectionConfig::mutual_tls(
            &[authority],
            &id.ca_pem,
            &id.client.crt_pem,
            &id.client.key_pem,
        )
        .map_err(|e| Status::internal(format!("cannot connect to {authority}: {e}")))?
        .with_connect_timeout(Duration::from_secs(3));
        let client = kforge_talos_api::TalosClient::connect(&config)
            .await
            .map_err(|e| Status::unavailable(format!("cannot connect to {authority}: {e}")))?
            .machine_service();
        applied
            .proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(authority.to_string(), client.clone());
        Ok(client)
    }

    pub(crate) fn local_version(&self, applied: &Applied) -> pb::Version {
        pb::Version {
            metadata: None,
            version: Some(pb::VersionInfo {
                tag: applied.version_tag.clone(),
                sha: format!("kforge-sim-{}", env!("CARGO_PKG_VERSION")),
                built: String::new(),
                go_version: "go1.25.5".into(),
                os: "linux".into(),
                arch: std::env::consts::ARCH
                    .replace("x86_64", "amd64")
                    .replace("aarch64", "arm64"),
            }),
            platform: Some(pb::PlatformInfo {
                name: self.inner.settings.validation_mode.to_string(),
                mode: self.inner.settings.validation_mode.to_string(),
            }),
            features: Some(pb::FeaturesInfo { rbac: true }),
        }
    }

    pub(crate) fn local_services(&self) -> Vec<pb::ServiceInfo> {
        self.st().services.to_proto()
    }

    fn hugepages(&self, applied: &Applied) -> kernel::HugePages {
        let args: Vec<&str> = applied
            .config
            .kernel_args
            .iter()
            .map(String::as_str)
            .collect();
        kernel::hugepages(
            &args,
            &applied.config.sysctls,
            self.inner.settings.meminfo_total_kib,
        )
    }

    pub(crate) fn local_meminfo(&self, applied: &Applied) -> pb::MemInfo {
        kernel::meminfo(
            self.inner.settings.meminfo_total_kib,
            &self.hugepages(applied),
        )
    }

    pub(crate) fn local_cmdline(&self, applied: &Applied) -> String {
        let platform = self.inner.settings.validation_mode.to_string();
        format!(
            "{}\n",
            kernel::cmdline(&platform, &applied.config.kernel_args)
        )
    }

    /// `Read`: the files the simulator has.
    pub(crate) fn local_read(&self, applied: &Applied, path: &str) -> Result<Vec<u8>, Status> {
        match path {
            "/proc/cmdline" => Ok(self.local_cmdline(applied).into_bytes()),
            "/proc/meminfo" => {
                let huge = self.hugepages(applied);
                let m = kernel::meminfo(self.inner.settings.meminfo_total_kib, &huge);
                Ok(kernel::meminfo_text(&m, &huge).into_bytes())
            }
            "/system/state/config.yaml" => Ok(applied.config.text.expose().as_bytes().to_vec()),
            crate::k8s::kubelet::KUBELET_CONFIG_PATH => Ok(kubelet::kubelet_configuration(
                &applied.config.kubelet_extra_config,
            )
            .into_bytes()),
            "/proc/net/fib_trie" => {
                let vip = applied.config.vip.filter(|_| self.st().kube.vip_held);
                Ok(kernel::fib_trie(self.inner.settings.address, vip).into_bytes())
            }
            _ => Err(Status::not_found(format!(
                "open {path}: no such file or directory"
            ))),
        }
    }

    /// `Kubeconfig`: the admin kubeconfig packed as Talos packs it.
    pub(crate) fn local_kubeconfig(&self, applied: &Applied) -> Result<Vec<u8>, Status> {
        let Some(bundle) = &applied.config.bundle else {
            return Err(Status::failed_precondition(
                "kubeconfig is only available on control plane nodes",
            ));
        };
        let kubeconfig = kforge_pki::admin_kubeconfig(
            &applied.config.cluster_name,
            &applied.config.endpoint,
            bundle,
            SystemTime::now(),
            kforge_pki::ADMIN_KUBECONFIG_DEFAULT_TTL,
        )
        .map_err(|e| Status::internal(format!("cannot generate the kubeconfig: {e}")))?;
        pack_kubeconfig(kubeconfig.expose().as_bytes())
            .map_err(|e| Status::internal(format!("cannot pack the kubeconfig: {e}")))
    }

    pub(crate) async fn local_etcd_members(
        &self,
        applied: &Applied,
    ) -> Result<pb::EtcdMembers, Status> {
        let client = self.etcd_for_rpc(applied)?;
        let members = client.member_list().await.map_err(status_error)?;
        Ok(pb::EtcdMembers {
            metadata: None,
            legacy_members: members.iter().map(|m| m.name.clone()).collect(),
            members: members
                .into_iter()
                .map(|m| pb::EtcdMember {
                    id: m.id,
                    hostname: m.name,
                    peer_urls: m.peer_ur_ls,
                    client_urls: m.client_ur_ls,
                    is_learner: m.is_learner,
                })
                .collect(),
        })
    }

    pub(crate) async fn local_etcd_status(
        &self,
        applied: &Applied,
    ) -> Result<pb::EtcdMemberStatus, Status> {
        let client = self.etcd_for_rpc(applied)?;
        let s = client.status().await.map_err(status_error)?;
        Ok(pb::EtcdMemberStatus {
            protocol_version: s.version,
            db_size: s.db_size,
            db_size_in_use: s.db_size_in_use,
            leader: s.leader,
            raft_index: s.raft_index,
            raft_term: s.raft_term,
            raft_applied_index: s.raft_applied_index,
            errors: s.errors,
            is_learner: s.is_learner,
            member_id: s.header.map(|h| h.member_id).unwrap_or(0),
            storage_version: s.storage_version,
        })
    }

    fn etcd_for_rpc(&self, applied: &Applied) -> Result<EtcdClient, Status> {
        if !applied.is_control_plane() {
            return Err(Status::failed_precondition(
                "etcd is only available on control plane nodes",
            ));
        }
        if self.st().etcd.is_none() {
            return Err(Status::unavailable("etcd is not running"));
        }
        self.local_etcd(applied)
            .ok_or_else(|| Status::internal("no etcd client identity"))
    }

    pub(crate) async fn local_bootstrap(&self, applied: &Applied) -> Result<(), Status> {
        if !applied.is_control_plane() {
            return Err(Status::failed_precondition(
                "bootstrap can only be performed on a control plane node",
            ));
        }
        if !self.ready() {
            return Err(Status::failed_precondition(
                "bootstrap is not available yet",
            ));
        }
        let _guard = self.inner.lifecycle.lock().await;
        let generation = {
            let st = self.st();
            if st.etcd.is_some() || st.etcd_wanted || self.inner.layout.etcd_data_present() {
                return Err(Status::already_exists("etcd data directory is not empty"));
            }
            st.generation
        };
        let applied = self.applied()?;
        self.st().etcd_wanted = true;
        let cluster = self_cluster(&applied, self.settings());
        if let Err(e) = self.start_etcd(&applied, generation, cluster, "new") {
            self.st().etcd_wanted = false;
            return Err(Status::internal(format!("cannot start etcd: {e}")));
        }
        self.log("bootstrapped etcd");
        Ok(())
    }

    pub(crate) async fn local_service(
        &self,
        action: ServiceAction,
        id: &str,
    ) -> Result<String, Status> {
        let applied = self.applied()?;
        if !self.st().services.contains(id) {
            return Err(Status::not_found(format!("service {id:?} not defined")));
        }
        if matches!(id, "apid" | "machined" | "trustd") && action != ServiceAction::Start {
            return Err(Status::failed_precondition(format!(
                "service {id:?} is part of the node's API and cannot be stopped"
            )));
        }
        if id == "kube-apiserver" {
            match action {
                ServiceAction::Stop => self.stop_apiserver_on_request().await,
                ServiceAction::Start => self.start_apiserver_on_request().await,
                ServiceAction::Restart => {
                    self.stop_apiserver_on_request().await;
                    self.start_apiserver_on_request().await;
                }
            }
        } else if id == "etcd" {
            match action {
                ServiceAction::Stop => self.stop_etcd().await,
                ServiceAction::Start => self.start_etcd_on_request(&applied).await?,
                ServiceAction::Restart => {
                    self.stop_etcd().await;
                    self.start_etcd_on_request(&applied).await?;
                }
            }
        } else {
            let mut st = self.st();
            match action {
                ServiceAction::Stop => {
                    st.services
                        .set(id, ServiceState::Finished, "Service finished successfully")
                }
                ServiceAction::Start | ServiceAction::Restart => {
                    st.services
                        .set(id, ServiceState::Running, "Service started as goroutine");
                    st.services.set_health(id, true, "");
                }
            }
        }
        Ok(match action {
            ServiceAction::Start => format!("Service {id:?} started"),
            ServiceAction::Stop => format!("Service {id:?} stopped"),
            ServiceAction::Restart => format!("Service {id:?} restarted"),
        })
    }

    async fn start_etcd_on_request(&self, applied: &Applied) -> Result<(), Status> {
        let _guard = self.inner.lifecycle.lock().await;
        let generation = {
            let st = self.st();
            if st.etcd.is_some() {
                return Ok(());
            }
            st.generation
        };
        if !self.inner.layout.etcd_data_present() {
            // Not bootstrapped or joined yet: the join loop takes over again.
            self.st()
                .services
                .set("etcd", ServiceState::Preparing, "Running pre state");
            return Ok(());
        }
        self.st().etcd_wanted = true;
        self.start_etcd(
            applied,
            generation,
            self_cluster(applied, self.settings()),
            "existing",
        )
        .map_err(|e| Status::internal(format!("cannot start etcd: {e}")))
    }

    /// Reboot: answered first, then the node goes down.
    pub(crate) fn schedule_reboot(&self) {
        let node = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ANSWER_GRACE).await;
            node.reboot().await;
        });
    }

    /// Reset: answered at once (Talos runs the reset sequence in the background). A
    /// graceful reset of a control-plane node first leaves etcd — refused up front when
    /// etcd cannot be asked; retried while etcd calls the cluster unhealthy; the reset is
    /// abandoned if leaving keeps failing. Then the node wipes STATE and EPHEMERAL and
    /// reboots into maintenance mode, or halts (`reboot: false`).
    pub(crate) async fn local_reset(
        &self,
        applied: &Applied,
        req: &pb::ResetRequest,
    ) -> Result<(), Status> {
        let leave = if req.graceful && applied.is_control_plane() && self.st().etcd.is_some() {
            let client = self.etcd_for_rpc(applied)?;
            let status = client
                .status()
                .await
                .map_err(|e| Status::failed_precondition(format!("failed to leave etcd: {e}")))?;
            Some((client, status.header.map(|h| h.member_id).unwrap_or(0)))
        } else {
            None
        };
        let node = self.clone();
        let reboot = req.reboot;
        tokio::spawn(async move {
            tokio::time::sleep(ANSWER_GRACE).await;
            if let Some((client, id)) = leave
                && let Err(e) = node.leave_etcd(&client, id).await
            {
                node.log(&format!("reset abandoned: cannot leave etcd: {e}"));
                return;
            }
            let _guard = node.inner.lifecycle.lock().await;
            node.log(if reboot {
                "reset: wiping and rebooting"
            } else {
                "reset: wiping and halting"
            });
            node.go_down(false).await;
            if let Err(e) = node.inner.layout.wipe() {
                node.log(&format!("reset: wipe failed: {e}"));
            }
            if reboot {
                node.spawn_boot();
            } else {
                node.st().phase = Phase::PoweredOff;
            }
        });
        Ok(())
    }

    /// Removes member `id` (this node) from etcd, then stops etcd. The last member just
    /// stops.
    async fn leave_etcd(&self, client: &EtcdClient, id: u64) -> Result<(), SimError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let members = client.member_list().await?;
            if members.len() <= 1 {
                break;
            }
            match client.member_remove(id).await {
                Ok(()) => {
                    self.log(&format!("etcd: left the cluster (member {id:x} removed)"));
                    break;
                }
                // etcd refuses membership changes until every member has been connected
                // for a while (strict reconfiguration check); that passes.
                Err(SimError::Etcd { message, .. })
                    if message.contains("unhealthy cluster")
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Err(e) => return Err(e),
            }
        }
        self.stop_etcd().await;
        Ok(())
    }

    /// Upgrade: the image is "installed" and the node reboots into it.
    pub(crate) fn local_upgrade(&self, image: &str) -> Result<(), Status> {
        if image.trim().is_empty() {
            return Err(Status::invalid_argument("an image is required"));
        }
        self.inner
            .layout
            .write_installed_image(image.trim())
            .map_err(|e| Status::internal(e.to_string()))?;
        self.schedule_reboot();
        Ok(())
    }

    /// ApplyConfiguration on a configured node.
    pub(crate) async fn local_apply(
        &self,
        applied: &Applied,
        req: &pb::ApplyConfigurationRequest,
    ) -> Result<pb::ApplyConfiguration, Status> {
        use pb::apply_configuration_request::Mode as ApplyMode;
        let mode = ApplyMode::try_from(req.mode)
            .map_err(|_| Status::invalid_argument(format!("unknown apply mode {}", req.mode)))?;
        let text = std::str::from_utf8(&req.data)
            .map_err(|_| Status::invalid_argument("the config is not UTF-8 text"))?;
        let config = self.parse_config(text).map_err(|e| {
            Status::invalid_argument(format!("configuration validation failed: {e}"))
        })?;
        if config.machine_type != applied.machine_type() {
            return Err(Status::invalid_argument(
                "machine type can't be changed: reset the node first",
            ));
        }
        let warnings = config.warnings.clone();
        let reply = |used: ApplyMode, details: String| pb::ApplyConfiguration {
            metadata: None,
            warnings: warnings.clone(),
            mode: used as i32,
            mode_details: details,
        };
        if req.dry_run {
            return Ok(reply(
                mode,
                "Dry run: the configuration is valid and would be applied".into(),
            ));
        }
        let _guard = self.inner.lifecycle.lock().await;
        let layout = &self.inner.layout;
        let io = |e: SimError| Status::internal(e.to_string());
        match mode {
            ApplyMode::Reboot => {
                layout.write_config(text).map_err(io)?;
                self.schedule_reboot();
                Ok(reply(
                    ApplyMode::Reboot,
                    "Applied configuration with a reboot".into(),
                ))
            }
            ApplyMode::Staged => {
                layout.write_staged(text).map_err(io)?;
                Ok(reply(
                    ApplyMode::Staged,
                    "Staged configuration to be applied after a reboot".into(),
                ))
            }
            ApplyMode::Auto | ApplyMode::NoReboot | ApplyMode::Try => {
                let previous = applied.config.text.clone();
                layout.write_config(text).map_err(io)?;
                {
                    let mut st = self.st();
                    if let Some(a) = &st.applied {
                        st.applied = Some(Arc::new(a.with_config(config)));
                    }
                    if let Some(t) = st.try_revert.take() {
                        t.abort();
                    }
                }
                if mode == ApplyMode::Try {
                    let timeout = req
                        .try_mode_timeout
                        .as_ref()
                        .map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32))
                        .filter(|d| !d.is_zero())
                        .unwrap_or(Duration::from_secs(60));
                    let node = self.clone();
                    let revert = tokio::spawn(async move {
                        tokio::time::sleep(timeout).await;
                        node.revert_config(previous).await;
                    });
                    self.st().try_revert = Some(revert);
                    return Ok(reply(
                        ApplyMode::Try,
                        format!(
                            "Applied configuration without a reboot (will be rolled back in {})",
                            humantime::format_duration(timeout)
                        ),
                    ));
                }
                Ok(reply(
                    ApplyMode::NoReboot,
                    "Applied configuration without a reboot".into(),
                ))
            }
        }
    }

    async fn revert_config(&self, previous: kforge_secret::SecretString) {
        let _guard = self.inner.lifecycle.lock().await;
        if let Err(e) = self.inner.layout.write_config(previous.expose()) {
            self.log(&format!("try mode: cannot roll back: {e}"));
            return;
        }
        if let Ok(config) = self.parse_config(previous.expose()) {
            let mut st = self.st();
            if let Some(a) = &st.applied {
                st.applied = Some(Arc::new(a.with_config(config)));
            }
            st.try_revert = None;
        }
        self.log("try mode: configuration rolled back");
    }

    /// ApplyConfiguration in maintenance mode (AUTO, REBOOT and TRY only).
    pub(crate) async fn maintenance_apply(
        &self,
        req: &pb::ApplyConfigurationRequest,
    ) -> Result<pb::ApplyConfiguration, Status> {
        use pb::apply_configuration_request::Mode as ApplyMode;
        let mode = ApplyMode::try_from(req.mode).unwrap_or(ApplyMode::NoReboot);
        if !matches!(mode, ApplyMode::Auto | ApplyMode::Reboot | ApplyMode::Try) {
            return Err(Status::unimplemented(format!(
                "apply configuration mode {:?} is not supported in maintenance mode",
                mode.as_str_name()
            )));
        }
        let text = std::str::from_utf8(&req.data)
            .map_err(|_| Status::invalid_argument("the config is not UTF-8 text"))?;
        let config = self.parse_config(text).map_err(|e| {
            Status::invalid_argument(format!("configuration validation failed: {e}"))
        })?;
        let reply = pb::ApplyConfiguration {
            metadata: None,
            warnings: config.warnings.clone(),
            mode: mode as i32,
            mode_details: if req.dry_run {
                "Dry run: the configuration is valid; the node would install and boot with it"
                    .into()
            } else {
                "Applied configuration: the node installs and boots with it".into()
            },
        };
        if req.dry_run {
            return Ok(reply);
        }
        let _guard = self.inner.lifecycle.lock().await;
        if self.phase() != Phase::Maintenance {
            return Err(Status::failed_precondition(
                "the node is no longer in maintenance mode",
            ));
        }
        self.inner
            .layout
            .write_config(text)
            .map_err(|e| Status::internal(e.to_string()))?;
        self.log("machine config applied in maintenance mode");
        self.schedule_reboot();
        Ok(reply)
    }
}

/// ServiceStart / ServiceStop / ServiceRestart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceAction {
    Start,
    Stop,
    Restart,
}

/// `initial-cluster` naming only this member (bootstrap, or restart with data).
fn self_cluster(applied: &Applied, s: &SimSettings) -> String {
    format!(
        "{}={}",
        applied.hostname,
        crate::etcd::url(s.address, s.etcd_peer_port)
    )
}

/// Talos picks `talos-<random>` without a configured hostname; the simulator derives one
/// from its address so it is stable.
fn default_hostname(address: IpAddr) -> String {
    format!("talos-{}", address.to_string().replace(['.', ':'], "-"))
}

/// A `.tar.gz` with one regular file `kubeconfig` (mode 0600).
fn pack_kubeconfig(contents: &[u8]) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(contents.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    tar.append_data(&mut header, "kubeconfig", contents)?;
    let gz = tar.into_inner()?;
    gz.finish()
}

/// Splits bytes into `Data` chunks as a stream would carry them.
pub(crate) fn data_chunks(bytes: &[u8]) -> Vec<Data> {
    const CHUNK: usize = 8 * 1024;
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .chunks(CHUNK)
        .map(|c| Data {
            metadata: None,
            bytes: c.to_vec(),
        })
        .collect()
}

/// Runs a node until SIGTERM/SIGINT (graceful: etcd is stopped) or until it exits by
/// itself; returns the process exit status.
pub async fn run(settings: SimSettings, log: Logger) -> Result<i32, SimError> {
    use tokio::signal::unix::{SignalKind, signal};
    let socket = settings
        .control_socket
        .clone()
        .unwrap_or_else(|| Layout::new(&settings.state_dir).control_socket());
    let mut term = signal(SignalKind::terminate())
        .map_err(SimError::io("handle SIGTERM for", &settings.state_dir))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(SimError::io("handle SIGINT for", &settings.state_dir))?;
    let node = Node::start(settings, log.clone()).await?;
    let control = crate::control::serve(node.clone(), &socket)?;
    log(&format!("control socket: {}", socket.display()));
    let code = tokio::select! {
        _ = term.recv() => { node.shutdown().await; 0 }
        _ = int.recv() => { node.shutdown().await; 0 }
        code = node.exit_requested() => { node.shutdown().await; code }
    };
    control.abort();
    let _ = std::fs::remove_file(&socket);
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_archive_holds_one_file() {
        let archive = pack_kubeconfig(b"apiVersion: v1\n").unwrap();
        let extracted =
            kforge_talos_api::extract_kubeconfig("n", &kforge_secret::SecretBytes::new(archive))
                .unwrap_or_else(|_| panic!("not extractable"));
        assert_eq!(extracted.expose(), "apiVersion: v1\n");
    }

    #[test]
    fn chunks_and_hostnames() {
        assert_eq!(data_chunks(&vec![1u8; 20_000]).len(), 3);
        assert!(data_chunks(&[]).is_empty());
        assert_eq!(
            default_hostname("127.0.0.11".parse().unwrap()),
            "talos-127-0-0-11"
        );
    }
}
