//! etcd for control-plane nodes: a small v3 client over mutual TLS (membership, status,
//! KV with transactions, leases, watches) and the `etcd` process (arguments, spawning with its output in a log file, a
//! pidfile so a successor process can clean up after a crash, and stopping).
//!
//! The process stays in the node's process group, so whoever kills the group (a test
//! harness, a terminal's Ctrl-C) kills etcd with it.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::SimError;
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::cluster_client::ClusterClient;
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::watch_client::WatchClient;

pub use crate::proto::etcdserverpb::{
    Compare, Event, KeyValue, Member, RangeResponse, RequestOp, ResponseOp, StatusResponse,
    TxnRequest, TxnResponse, WatchResponse,
};

/// Deadline of one etcd call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// `https://host:port`, with brackets for IPv6.
pub fn url(host: IpAddr, port: u16) -> String {
    match host {
        IpAddr::V4(v4) => format!("https://{v4}:{port}"),
        IpAddr::V6(v6) => format!("https://[{v6}]:{port}"),
    }
}

/// A client of one etcd member. Cheap to clone; connects lazily.
#[derive(Clone)]
pub struct EtcdClient {
    endpoint: String,
    channel: Channel,
    timeout: Duration,
}

impl EtcdClient {
    /// A client of the member at `host:port`, verifying it with (and authenticating by)
    /// `tls` (see [`crate::pki::client_config`]).
    pub fn new(host: IpAddr, port: u16, tls: Arc<ClientConfig>) -> Result<Self, SimError> {
        let endpoint = match host {
            IpAddr::V4(v4) => format!("{v4}:{port}"),
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        };
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
            .map_err(|e| SimError::Etcd {
                operation: "connect",
                endpoint: endpoint.clone(),
                code: tonic::Code::InvalidArgument,
                message: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
                let tls = tls.clone();
                async move {
                    let tcp = TcpStream::connect((host, port)).await?;
                    tcp.set_nodelay(true)?;
                    let stream = tokio_rustls::TlsConnector::from(tls)
                        .connect(ServerName::IpAddress(host.into()), tcp)
                        .await?;
                    Ok::<_, io::Error>(TokioIo::new(stream))
                }
            }));
        Ok(EtcdClient {
            endpoint,
            channel,
            timeout: CALL_TIMEOUT,
        })
    }

    /// The same client with another per-call deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.set_timeout(self.timeout);
        r
    }

    async fn run<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, SimError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(SimError::Etcd {
                operation,
                endpoint: self.endpoint.clone(),
                code: status.code(),
                message: describe_status(&status),
            }),
            Err(_) => Err(SimError::Etcd {
                operation,
                endpoint: self.endpoint.clone(),
                code: tonic::Code::DeadlineExceeded,
                message: format!("no answer within {:?}", self.timeout),
            }),
        }
    }

    pub async fn member_list(&self) -> Result<Vec<Member>, SimError> {
        let mut c = ClusterClient::new(self.channel.clone());
        let req = self.request(pb::MemberListRequest {
            linearizable: false,
        });
        Ok(self.run("member list", c.member_list(req)).await?.members)
    }

    /// Adds a learner with `peer_url`; returns it and the members after the change.
    pub async fn member_add_learner(
        &self,
        peer_url: &str,
    ) -> Result<(Member, Vec<Member>), SimError> {
        let mut c = ClusterClient::new(self.channel.clone());
        let req = self.request(pb::MemberAddRequest {
            peer_ur_ls: vec![peer_url.to_string()],
            is_learner: true,
        });
        let resp = self.run("member add", c.member_add(req)).await?;
        let member = resp.member.ok_or_else(|| SimError::Etcd {
            operation: "member add",
            endpoint: self.endpoint.clone(),
            code: tonic::Code::Internal,
            message: "the reply names no member".into(),
        })?;
        Ok((member, resp.members))
    }

    pub async fn member_promote(&self, id: u64) -> Result<(), SimError> {
        let mut c = ClusterClient::new(self.channel.clone());
        let req = self.request(pb::MemberPromoteRequest { id });
        self.run("member promote", c.member_promote(req)).await?;
        Ok(())
    }

    pub async fn member_remove(&self, id: u64) -> Result<(), SimError> {
        let mut c = ClusterClient::new(self.channel.clone());
        let req = self.request(pb::MemberRemoveRequest { id });
        self.run("member remove", c.member_remove(req)).await?;
        Ok(())
    }

    pub async fn status(&self) -> Result<StatusResponse, SimError> {
        let mut c = MaintenanceClient::new(self.channel.clone());
        let req = self.request(pb::StatusRequest {});
        self.run("status", c.status(req)).await
    }

    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), SimError> {
        let mut c = KvClient::new(self.channel.clone());
        let req = self.request(pb::PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease: 0,
            prev_kv: false,
        });
        self.run("put", c.put(req)).await?;
        Ok(())
    }

    /// A linearizable read of `key` (needs quorum).
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, SimError> {
        let mut c = KvClient::new(self.channel.clone());
        let req = self.request(pb::RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        });
        let resp = self.run("get", c.range(req)).await?;
        Ok(resp.kvs.into_iter().next().map(|kv| kv.value))
    }
}

/// The end of the range of every key starting with `prefix` (etcd's "prefix + 1").
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): every key from `prefix` on.
    vec![0]
}

impl EtcdClient {
    fn failure(&self, operation: &'static str, code: tonic::Code, message: String) -> SimError {
        SimError::Etcd {
            operation,
            endpoint: self.endpoint.clone(),
            code,
            message,
        }
    }

    /// A range read: `key` alone, or `[key, range_end)`; at `revision` (0 = newest);
    /// at most `limit` keys (0 = all).
    pub async fn range(
        &self,
        key: &[u8],
        range_end: &[u8],
        revision: i64,
        limit: i64,
    ) -> Result<RangeResponse, SimError> {
        let mut c = KvClient::new(self.channel.clone());
        let req = self.request(pb::RangeRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            revision,
            limit,
            ..Default::default()
        });
        self.run("range", c.range(req)).await
    }

    /// A transaction; the header's revision is the store's revision after it.
    pub async fn txn(&self, txn: TxnRequest) -> Result<TxnResponse, SimError> {
        let mut c = KvClient::new(self.channel.clone());
        let req = self.request(txn);
        self.run("txn", c.txn(req)).await
    }

    /// A lease of `ttl_seconds`; returns its id and the TTL etcd granted (it may raise it
    /// to its minimum).
    pub async fn lease_grant(&self, ttl_seconds: i64) -> Result<(i64, i64), SimError> {
        let mut c = LeaseClient::new(self.channel.clone());
        let req = self.request(pb::LeaseGrantRequest {
            ttl: ttl_seconds,
            id: 0,
        });
        let resp = self.run("lease grant", c.lease_grant(req)).await?;
        if !resp.error.is_empty() {
            return Err(self.failure("lease grant", tonic::Code::Unknown, resp.error));
        }
        Ok((resp.id, resp.ttl))
    }

    /// One keep-alive of lease `id`; returns the TTL it was renewed to (0 or less: the
    /// lease has expired).
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64, SimError> {
        let mut c = LeaseClient::new(self.channel.clone());
        let req = self.request(tokio_stream::iter([pb::LeaseKeepAliveRequest { id }]));
        let call = async {
            let mut stream = c.lease_keep_alive(req).await?.into_inner();
            match stream.message().await? {
                Some(m) => Ok(tonic::Response::new(m)),
                None => Err(tonic::Status::unavailable(
                    "the keep-alive stream ended without an answer",
                )),
            }
        };
        Ok(self.run("lease keep-alive", call).await?.ttl)
    }

    pub async fn lease_revoke(&self, id: i64) -> Result<(), SimError> {
        let mut c = LeaseClient::new(self.channel.clone());
        let req = self.request(pb::LeaseRevokeRequest { id });
        self.run("lease revoke", c.lease_revoke(req)).await?;
        Ok(())
    }

    /// Watches `[key, range_end)` from `start_revision` (0 = from now), with the previous
    /// value of every changed key. The watch lasts until the returned stream is dropped.
    pub async fn watch(
        &self,
        key: &[u8],
        range_end: &[u8],
        start_revision: i64,
    ) -> Result<EtcdWatch, SimError> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: key.to_vec(),
                    range_end: range_end.to_vec(),
                    start_revision,
                    prev_kv: true,
                    ..Default::default()
                },
            )),
        };
        tx.send(create).await.map_err(|_| {
            self.failure(
                "watch",
                tonic::Code::Internal,
                "request stream closed".into(),
            )
        })?;
        let mut c = WatchClient::new(self.channel.clone());
        // No grpc-timeout: it would end the stream; only the start is bounded.
        let call = async {
            let mut stream = c
                .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await?
                .into_inner();
            match stream.message().await? {
                Some(first) if first.created && !first.canceled => Ok(tonic::Response::new(stream)),
                Some(first) => Err(tonic::Status::failed_precondition(
                    if first.cancel_reason.is_empty() {
                        format!(
                            "the watch was canceled (compacted at revision {})",
                            first.compact_revision
                        )
                    } else {
                        first.cancel_reason
                    },
                )),
                None => Err(tonic::Status::unavailable("the watch stream ended at once")),
            }
        };
        let stream = self.run("watch", call).await?;
        Ok(EtcdWatch {
            _requests: tx,
            stream,
            endpoint: self.endpoint.clone(),
        })
    }
}

/// A running etcd watch.
pub struct EtcdWatch {
    /// Kept open: etcd ends a watch whose request stream closes.
    _requests: tokio::sync::mpsc::Sender<pb::WatchRequest>,
    stream: tonic::Streaming<WatchResponse>,
    endpoint: String,
}

impl EtcdWatch {
    /// The next batch of events; `Ok(None)` when etcd ended the watch.
    pub async fn next(&mut self) -> Result<Option<WatchResponse>, SimError> {
        match self.stream.message().await {
            Ok(Some(r)) if r.canceled => Err(SimError::Etcd {
                operation: "watch",
                endpoint: self.endpoint.clone(),
                code: tonic::Code::Aborted,
                message: if r.cancel_reason.is_empty() {
                    format!("canceled (compacted at revision {})", r.compact_revision)
                } else {
                    r.cancel_reason
                },
            }),
            Ok(other) => Ok(other),
            Err(status) => Err(SimError::Etcd {
                operation: "watch",
                endpoint: self.endpoint.clone(),
                code: status.code(),
                message: describe_status(&status),
            }),
        }
    }
}

/// The status message plus the transport cause, if any (e.g. "connection refused").
fn describe_status(status: &tonic::Status) -> String {
    use std::error::Error as _;
    let mut text = status.message().to_string();
    let mut cause = status.source();
    while let Some(err) = cause {
        let s = err.to_string();
        if !s.is_empty() && !text.contains(&s) && s != "transport error" {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = match err.downcast_ref::<io::Error>().and_then(|e| e.get_ref()) {
            Some(inner) => Some(inner),
            None => err.source(),
        };
    }
    text
}

// ---------------------------------------------------------------- the process

/// Where an etcd member keeps its files and how it is reached.
#[derive(Clone, Debug)]
pub struct EtcdLaunch {
    pub binary: PathBuf,
    pub name: String,
    pub data_dir: PathBuf,
    pub pki_dir: PathBuf,
    pub address: IpAddr,
    pub client_port: u16,
    pub peer_port: u16,
    /// `name=peerURL,…`
    pub initial_cluster: String,
    /// `new` or `existing`.
    pub initial_cluster_state: &'static str,
    pub cluster_token: String,
    pub log_file: PathBuf,
    pub pid_file: PathBuf,
}

impl EtcdLaunch {
    pub fn peer_url(&self) -> String {
        url(self.address, self.peer_port)
    }

    pub fn client_url(&self) -> String {
        url(self.address, self.client_port)
    }

    /// etcd 3.4+ flags, as Talos runs it (TLS with client-cert auth for clients and
    /// peers).
    pub fn args(&self) -> Vec<String> {
        let pki = |f: &str| self.pki_dir.join(f).display().to_string();
        let mut args = vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", self.data_dir.display()),
            format!("--listen-client-urls={}", self.client_url()),
            format!("--advertise-client-urls={}", self.client_url()),
            format!("--listen-peer-urls={}", self.peer_url()),
            format!("--initial-advertise-peer-urls={}", self.peer_url()),
            format!("--initial-cluster={}", self.initial_cluster),
            format!("--initial-cluster-state={}", self.initial_cluster_state),
            format!("--initial-cluster-token={}", self.cluster_token),
            format!("--cert-file={}", pki("server.crt")),
            format!("--key-file={}", pki("server.key")),
            format!("--trusted-ca-file={}", pki("ca.crt")),
            "--client-cert-auth=true".into(),
            format!("--peer-cert-file={}", pki("peer.crt")),
            format!("--peer-key-file={}", pki("peer.key")),
            format!("--peer-trusted-ca-file={}", pki("ca.crt")),
            "--peer-client-cert-auth=true".into(),
            "--logger=zap".into(),
            "--log-outputs=stderr".into(),
        ];
        // Faster failure detection than the defaults keeps failover drills short.
        args.push("--heartbeat-interval=100".into());
        args.push("--election-timeout=1000".into());
        args
    }
}

/// Writes etcd's certificates for `launch` (keys 0600).
pub fn write_pki(pki_dir: &Path, pki: &crate::pki::EtcdPki) -> Result<(), SimError> {
    crate::layout::create_private_dir(pki_dir)?;
    let files: [(&str, &str); 5] = [
        ("ca.crt", &pki.ca_pem),
        ("server.crt", &pki.server.crt_pem),
        ("server.key", pki.server.key_pem.expose()),
        ("peer.crt", &pki.peer.crt_pem),
        ("peer.key", pki.peer.key_pem.expose()),
    ];
    for (name, text) in files {
        crate::layout::write_secret(&pki_dir.join(name), text)?;
    }
    Ok(())
}

/// A running etcd process.
pub struct EtcdProcess {
    pub pid: i32,
    /// Becomes `Some(description)` when the process has exited.
    pub exited: watch::Receiver<Option<String>>,
    monitor: tokio::task::JoinHandle<()>,
}

impl EtcdProcess {
    /// Starts etcd with stdout and stderr appended to the log file, records its pid.
    pub fn spawn(launch: &EtcdLaunch) -> Result<EtcdProcess, SimError> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log_file)
            .map_err(SimError::io("open", &launch.log_file))?;
        let log2 = log
            .try_clone()
            .map_err(SimError::io("open", &launch.log_file))?;
        let mut cmd = tokio::process::Command::new(&launch.binary);
        cmd.args(launch.args())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true);
        // etcd reads ETCD_* variables as flags; only the arguments above should count.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(&key);
            }
        }
        let mut child = cmd.spawn().map_err(|source| SimError::Spawn {
            what: "etcd (install the Debian package `etcd-server`, or pass --etcd-binary)",
            program: launch.binary.display().to_string(),
            source,
        })?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| SimError::Spawn {
                what: "etcd",
                program: launch.binary.display().to_string(),
                source: io::Error::other("the process exited immediately"),
            })?;
        fs::write(&launch.pid_file, format!("{pid}\n"))
            .map_err(SimError::io("write", &launch.pid_file))?;
        let (tx, exited) = watch::channel(None);
        let pid_file = launch.pid_file.clone();
        let monitor = tokio::spawn(async move {
            let outcome = match child.wait().await {
                Ok(status) => match status.code() {
                    Some(code) => format!("exit status {code}"),
                    None => {
                        use std::os::unix::process::ExitStatusExt;
                        match status.signal() {
                            Some(sig) => format!("killed by signal {sig}"),
                            None => "exited".into(),
                        }
                    }
                },
                Err(e) => format!("waiting for the process failed: {e}"),
            };
            let _ = fs::remove_file(&pid_file);
            let _ = tx.send(Some(outcome));
        });
        Ok(EtcdProcess {
            pid,
            exited,
            monitor,
        })
    }

    pub fn has_exited(&self) -> bool {
        self.exited.borrow().is_some()
    }

    pub fn signal(&self, signal: Signal) {
        if !self.has_exited() {
            let _ = kill(Pid::from_raw(self.pid), signal);
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(mut self, grace: Duration) {
        // A frozen process cannot handle SIGTERM.
        self.signal(Signal::SIGCONT);
        self.signal(Signal::SIGTERM);
        let mut rx = self.exited.clone();
        let exited_in_time =
            tokio::time::timeout(
                grace,
                async move { rx.wait_for(Option::is_some).await.is_ok() },
            )
            .await
            .is_ok();
        if !exited_in_time {
            self.signal(Signal::SIGKILL);
        }
        let _ = (&mut self.monitor).await;
    }

    /// SIGKILL without waiting (a crash of the machine).
    pub fn kill_now(&self) {
        self.signal(Signal::SIGKILL);
    }
}

/// Kills an etcd left behind by a predecessor that crashed: the pid in `pid_file`, if it
/// is still an etcd using `data_dir`.
pub fn kill_stale(pid_file: &Path, data_dir: &Path) -> Option<i32> {
    let text = fs::read_to_string(pid_file).ok()?;
    let _ = fs::remove_file(pid_file);
    let pid: i32 = text.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    let marker = format!("--data-dir={}", data_dir.display());
    if !cmdline.split('\0').any(|a| a == marker) {
        return None;
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    for _ in 0..100 {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Gone, or a zombie waiting for a parent that no longer exists.
            Err(_) => break,
            Ok(stat) if stat.contains(") Z ") => break,
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    Some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_name_every_tls_file() {
        let launch = EtcdLaunch {
            binary: "etcd".into(),
            name: "cp-1".into(),
            data_dir: "/s/ephemeral/etcd".into(),
            pki_dir: "/s/ephemeral/etcd-pki".into(),
            address: "127.0.0.11".parse().unwrap(),
            client_port: 2379,
            peer_port: 2380,
            initial_cluster: "cp-1=https://127.0.0.11:2380".into(),
            initial_cluster_state: "new",
            cluster_token: "c".into(),
            log_file: "/s/run/etcd.log".into(),
            pid_file: "/s/run/etcd.pid".into(),
        };
        let args = launch.args();
        assert!(args.contains(&"--listen-client-urls=https://127.0.0.11:2379".to_string()));
        assert!(args.contains(&"--peer-client-cert-auth=true".to_string()));
        assert!(args.contains(&"--key-file=/s/ephemeral/etcd-pki/server.key".to_string()));
        assert_eq!(url("::1".parse().unwrap(), 2380), "https://[::1]:2380");
    }

    #[test]
    fn stale_pidfile_of_another_program_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("etcd.pid");
        fs::write(&pidfile, format!("{}\n", std::process::id())).unwrap();
        // Our own pid is not an etcd with that data dir: nothing is killed.
        assert_eq!(kill_stale(&pidfile, &dir.path().join("etcd")), None);
        assert!(!pidfile.exists());
    }
}
