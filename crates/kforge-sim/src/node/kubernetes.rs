//! The Kubernetes parts of a node during one boot: on a control-plane node the API server
//! (started once etcd runs; its listener on the node address and, while this node holds
//! the VIP, on the VIP), its health, the controllers and the VIP campaign; on every node
//! the kubelet.

use super::*;

use crate::k8s::certs;
use crate::k8s::store::Store;

/// The VIP campaign's view of its node.
pub(super) struct NodeVip {
    pub(super) node: Node,
    pub(super) generation: u64,
}

impl crate::vip::VipHost for NodeVip {
    fn local_etcd(&self) -> Option<EtcdClient> {
        let applied = {
            let st = self.node.st();
            if st.generation != self.generation || st.etcd.is_none() {
                return None;
            }
            st.applied.clone()?
        };
        self.node.local_etcd(&applied)
    }

    fn set_holding(&self, holding: bool, reason: &str) {
        let listener = {
            let mut st = self.node.st();
            if st.generation != self.generation {
                return;
            }
            st.kube.vip_held = holding;
            if holding {
                None
            } else {
                st.kube.vip_listener.take()
            }
        };
        self.node.log(&format!(
            "VIP {}: {reason}",
            if holding { "acquired" } else { "released" }
        ));
        if let Some(l) = listener {
            tokio::spawn(l.close());
        }
    }

    fn alive(&self) -> bool {
        self.node.is_current(self.generation)
    }
}

impl Node {
    /// The API servers a kubelet tries: its own (control plane), the VIP, the endpoint
    /// host, the other control-plane nodes.
    fn kubelet_servers(&self, applied: &Applied) -> Vec<SocketAddr> {
        let s = &self.inner.settings;
        let mut out: Vec<SocketAddr> = Vec::new();
        let mut push = |ip: IpAddr| {
            let a = SocketAddr::new(ip, s.k8s_port);
            if !out.contains(&a) {
                out.push(a);
            }
        };
        if applied.is_control_plane() {
            push(s.address);
        }
        if let Some(vip) = applied.config.vip {
            push(vip);
        }
        for ip in self.peer_addresses(&applied.config) {
            push(ip);
        }
        out
    }

    pub(super) fn spawn_kubelet(&self, applied: &Arc<Applied>, generation: u64) {
        let config = &applied.config;
        let (Some(ca), Some(token)) = (&config.k8s_ca_pem, &config.bootstrap_token) else {
            self.log("kubelet: the config has no cluster.ca.crt or cluster.token; not registering");
            return;
        };
        let spec = kubelet::KubeletSpec {
            node_name: applied.hostname.clone(),
            address: self.inner.settings.address,
            control_plane: applied.is_control_plane(),
            node_labels: config.node_labels.clone(),
            node_taints: config.node_taints.clone(),
            allow_scheduling_on_control_planes: config.allow_scheduling_on_control_planes,
            cpus: self.inner.settings.cpus,
            memory_kib: self.inner.settings.meminfo_total_kib,
            hugepages: self.hugepages(applied),
            extra_config: config.kubelet_extra_config.clone(),
            kubelet_version: config.kubernetes_version.clone(),
            talos_version: applied.version_tag.clone(),
        };
        let conn = kubelet::KubeletConnection {
            servers: self.kubelet_servers(applied),
            k8s_ca_pem: ca.clone(),
            bootstrap_token: token.clone(),
        };
        let node = self.clone();
        let running: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(move || {
            let st = node.st();
            st.generation == generation
                && !st.faults.pause
                && st.services.state("kubelet") == Some(ServiceState::Running)
        });
        let node = self.clone();
        let log: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(move |line| node.log(line));
        let task = tokio::spawn(kubelet::run(
            spec,
            conn,
            self.inner.settings.kubelet_heartbeat,
            kubelet::KubeletHooks { running, log },
        ));
        self.add_task(generation, task);
    }

    /// Keeps the control plane's Kubernetes parts as they should be, until the boot ends.
    pub(super) async fn kube_loop(&self, generation: u64) {
        let mut last_control = tokio::time::Instant::now() - KUBE_CONTROL_INTERVAL;
        loop {
            tokio::time::sleep(KUBE_RECONCILE_INTERVAL).await;
            if !self.is_current(generation) {
                return;
            }
            self.reconcile_apiserver(generation).await;
            if last_control.elapsed() >= KUBE_CONTROL_INTERVAL {
                last_control = tokio::time::Instant::now();
                self.control_round().await;
            }
        }
    }

    /// Starts or stops the API server's listeners as the state says.
    async fn reconcile_apiserver(&self, generation: u64) {
        let _ops = self.inner.kube_ops.lock().await;
        let (applied, desired, running, vip_wanted, vip_running, paused) = {
            let st = self.st();
            if st.generation != generation {
                return;
            }
            let Some(applied) = st.applied.clone() else {
                return;
            };
            let desired = st.kube.wanted && st.kube.etcd_started && !st.faults.refuse;
            let running = st.kube.listener.is_some();
            (
                applied,
                desired,
                running,
                st.kube.vip_held && running,
                st.kube.vip_listener.is_some(),
                st.faults.pause,
            )
        };
        if desired && !running {
            if let Err(e) = self.start_apiserver(&applied, generation, paused).await {
                self.log(&format!("kube-apiserver: cannot start: {e}"));
            }
        } else if !desired && running {
            let listeners = self.st().kube.take_listeners();
            Self::close_all(listeners).await;
            self.log("kube-apiserver: stopped listening");
        }
        if vip_wanted && !vip_running {
            self.open_vip_listener(&applied, generation, paused).await;
        } else if !vip_wanted && vip_running {
            let l = self.st().kube.vip_listener.take();
            Self::close_all(vec![l]).await;
        }
    }

    fn kube_tls(&self, applied: &Applied) -> Result<Arc<rustls::ServerConfig>, SimError> {
        if let Some(tls) = self.st().kube.tls.clone() {
            return Ok(tls);
        }
        let bundle = applied.config.bundle.as_ref().ok_or(SimError::Setting {
            setting: "machine config",
            reason: "a control-plane node needs the cluster CAs".into(),
        })?;
        let s = &self.inner.settings;
        let mut addresses = vec![s.address];
        addresses.extend(applied.config.vip);
        let mut hosts: Vec<String> = applied.config.cert_sans.clone();
        hosts.extend(applied.config.endpoint_host());
        let cert = certs::serving_certificate(bundle, &applied.hostname, &addresses, &hosts)?;
        let ca = bundle
            .k8s_ca_crt_pem()
            .map_err(SimError::pki("read the Kubernetes CA certificate"))?;
        let tls = certs::server_tls(&cert, &ca)?;
        self.st().kube.tls = Some(tls.clone());
        Ok(tls)
    }

    async fn start_apiserver(
        &self,
        applied: &Applied,
        generation: u64,
        paused: bool,
    ) -> Result<(), SimError> {
        let s = &self.inner.settings;
        let tls = self.kube_tls(applied)?;
        let etcd = self.local_etcd(applied).ok_or(SimError::Setting {
            setting: "machine config",
            reason: "no etcd client identity".into(),
        })?;
        let existing = self.st().kube.server.clone();
        let server = match existing {
            Some(server) => server,
            None => ApiServer::new(
                ApiServerConfig {
                    advertise: SocketAddr::new(s.address, s.k8s_port).to_string(),
                    kubernetes_version: applied.config.kubernetes_version.clone(),
                    bootstrap_token: applied.config.bootstrap_token.clone(),
                },
                Store::new(etcd),
                self.inner.log.clone(),
            ),
        };
        let address = SocketAddr::new(s.address, s.k8s_port);
        let socket = transport::bind("the Kubernetes API", address).await?;
        let listener = Listener::serve_http(socket, tls, server.handler(), paused);
        let stale = {
            let mut st = self.st();
            if st.generation != generation || !st.kube.wanted {
                Some(listener)
            } else {
                st.kube.server = Some(server);
                st.kube.listener = Some(listener);
                st.services.set(
                    "kube-apiserver",
                    ServiceState::Running,
                    "Started task kube-apiserver for static pod kube-apiserver",
                );
                for id in ["kube-controller-manager", "kube-scheduler"] {
                    if matches!(
                        st.services.state(id),
                        Some(
                            ServiceState::Initialized
                                | ServiceState::Preparing
                                | ServiceState::Waiting
                        )
                    ) {
                        st.services.set(
                            id,
                            ServiceState::Running,
                            format!("Started task {id} for static pod {id}"),
                        );
                        st.services.set_health(id, true, "");
                    }
                }
                None
            }
        };
        match stale {
            Some(l) => l.close().await,
            None => self.log(&format!("kube-apiserver: listening on {address}")),
        }
        Ok(())
    }

    async fn open_vip_listener(&self, applied: &Applied, generation: u64, paused: bool) {
        let Some(vip) = applied.config.vip else {
            return;
        };
        let server = self.st().kube.server.clone();
        let (Some(server), Ok(tls)) = (server, self.kube_tls(applied)) else {
            return;
        };
        let address = SocketAddr::new(vip, self.inner.settings.k8s_port);
        // The previous holder may still be closing its socket: the next round retries.
        let Ok(socket) = transport::bind("the Kubernetes API on the VIP", address).await else {
            return;
        };
        let listener = Listener::serve_http(socket, tls, server.handler(), paused);
        let stale = {
            let mut st = self.st();
            if st.generation != generation || !st.kube.vip_held || st.kube.listener.is_none() {
                Some(listener)
            } else {
                st.kube.vip_listener = Some(listener);
                None
            }
        };
        match stale {
            Some(l) => l.close().await,
            None => self.log(&format!("kube-apiserver: serving the VIP {address}")),
        }
    }

    pub(super) async fn stop_apiserver_on_request(&self) {
        let _ops = self.inner.kube_ops.lock().await;
        let listeners = {
            let mut st = self.st();
            st.kube.wanted = false;
            st.services
                .set("kube-apiserver", ServiceState::Stopping, "Stopping service");
            st.kube.take_listeners()
        };
        Self::close_all(listeners).await;
        self.st().services.set(
            "kube-apiserver",
            ServiceState::Finished,
            "Service finished successfully",
        );
        self.log("kube-apiserver: stopped on request");
    }

    pub(super) async fn start_apiserver_on_request(&self) {
        let generation = {
            let mut st = self.st();
            st.kube.wanted = true;
            if !st.kube.etcd_started {
                st.services.set(
                    "kube-apiserver",
                    ServiceState::Waiting,
                    "Waiting for etcd to be running",
                );
            }
            st.generation
        };
        self.reconcile_apiserver(generation).await;
    }

    /// Health of the API server, system namespaces, controllers.
    async fn control_round(&self) {
        let (server, applied, controllers) = {
            let st = self.st();
            (
                st.kube
                    .server
                    .clone()
                    .filter(|_| st.kube.listener.is_some()),
                st.applied.clone(),
                st.services.state("kube-controller-manager") == Some(ServiceState::Running)
                    && st.etcd.is_some()
                    && !st.faults.pause,
            )
        };
        let (Some(server), Some(applied)) = (server, applied) else {
            return;
        };
        let readiness = server.readiness().await;
        {
            let mut st = self.st();
            if st.kube.listener.is_some() {
                st.services
                    .set_health("kube-apiserver", readiness.ok(), readiness.failures());
            }
        }
        if !readiness.ok() {
            return;
        }
        let store = server.store().clone();
        if !self.st().kube.namespaces_ready {
            match registry::ensure_system_namespaces(&store).await {
                Ok(()) => self.st().kube.namespaces_ready = true,
                Err(e) => self.log(&format!("kube-apiserver: system namespaces: {}", e.message)),
            }
        }
        if !controllers {
            return;
        }
        if let Err(e) =
            controllers::node_lifecycle_pass(&store, self.inner.settings.node_monitor_grace).await
        {
            self.log(&format!(
                "kube-controller-manager: node lifecycle: {}",
                e.message
            ));
        }
        if let Some(bundle) = &applied.config.bundle
            && let Err(e) = controllers::csr_pass(&store, bundle).await
        {
            self.log(&format!(
                "kube-controller-manager: certificates: {}",
                e.message
            ));
        }
    }
}
