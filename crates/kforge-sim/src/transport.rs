//! Listening with faults: a [`Listener`] accepts TCP on the node's address, runs TLS and
//! hands the connections to a tonic server. Every connection passes through a [`Gate`]
//! shared by the whole listener:
//!
//! - open: bytes flow;
//! - paused: reads and writes stay pending (the peer sees a node that accepted TCP and
//!   then hung — a blackhole), new connections are accepted and never answered;
//! - closed: every connection fails at once, as when a machine goes down.
//!
//! Closing a listener also stops accepting, so the port refuses connections. Listeners
//! serve either a tonic router (apid, trustd) or plain HTTP/1.1 (the Kubernetes API).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use kforge_talos_api::server_tls::TlsPeer;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::SimError;

/// How long a client gets for the TLS handshake (not counting time the gate is paused).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateState {
    Open = 0,
    Paused = 1,
    Closed = 2,
}

#[derive(Default)]
struct Slot {
    read: Mutex<Option<Waker>>,
    write: Mutex<Option<Waker>>,
}

struct GateShared {
    state: AtomicU8,
    slots: Mutex<Vec<Weak<Slot>>>,
    /// Tasks waiting for the state to change (handshakes held while paused).
    changed: tokio::sync::Notify,
}

/// The switch shared by all connections of one listener.
#[derive(Clone)]
pub struct Gate {
    shared: Arc<GateShared>,
}

impl Gate {
    pub fn new(state: GateState) -> Self {
        Gate {
            shared: Arc::new(GateShared {
                state: AtomicU8::new(state as u8),
                slots: Mutex::new(Vec::new()),
                changed: tokio::sync::Notify::new(),
            }),
        }
    }

    pub fn state(&self) -> GateState {
        match self.shared.state.load(Ordering::SeqCst) {
            0 => GateState::Open,
            1 => GateState::Paused,
            _ => GateState::Closed,
        }
    }

    /// Changes the state and wakes every connection so it notices. Closed is final.
    pub fn set(&self, state: GateState) {
        if self.state() == GateState::Closed {
            return;
        }
        self.shared.state.store(state as u8, Ordering::SeqCst);
        let slots: Vec<Arc<Slot>> = {
            let mut guard = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
            guard.retain(|w| w.strong_count() > 0);
            guard.iter().filter_map(Weak::upgrade).collect()
        };
        for slot in slots {
            for waker in [&slot.read, &slot.write] {
                if let Some(w) = waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    w.wake();
                }
            }
        }
        self.shared.changed.notify_waiters();
    }

    fn register(&self) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        let mut guard = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
        guard.retain(|w| w.strong_count() > 0);
        guard.push(Arc::downgrade(&slot));
        slot
    }

    /// Waits until the gate is open; false if it closed.
    pub async fn wait_open(&self) -> bool {
        loop {
            let notified = self.shared.changed.notified();
            match self.state() {
                GateState::Open => return true,
                GateState::Closed => return false,
                GateState::Paused => notified.await,
            }
        }
    }
}

/// A byte stream that obeys a [`Gate`].
pub struct GatedStream<S> {
    inner: S,
    gate: Gate,
    slot: Arc<Slot>,
}

impl<S> GatedStream<S> {
    pub fn new(inner: S, gate: Gate) -> Self {
        let slot = gate.register();
        GatedStream { inner, gate, slot }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Ready(Ok) when open, Ready(Err) when closed, Pending (waker kept) when paused.
    fn check(&self, cx: &mut Context<'_>, write: bool) -> Poll<io::Result<()>> {
        let slot = if write {
            &self.slot.write
        } else {
            &self.slot.read
        };
        {
            let mut w = slot.lock().unwrap_or_else(|e| e.into_inner());
            match w.as_ref() {
                Some(existing) if existing.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
        }
        match self.gate.state() {
            GateState::Open => Poll::Ready(Ok(())),
            GateState::Paused => Poll::Pending,
            GateState::Closed => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the node went down",
            ))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GatedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.check(cx, false) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_read(cx, buf),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GatedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.check(cx, true) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_write(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.check(cx, true) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.gate.state() {
            GateState::Closed => Poll::Ready(Ok(())),
            _ => match self.check(cx, true) {
                Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_shutdown(cx),
                other => other,
            },
        }
    }
}

/// A gated TLS connection, as tonic's incoming IO; exposes [`TlsPeer`] to handlers.
pub struct TlsConnection {
    inner: tokio_rustls::server::TlsStream<GatedStream<TcpStream>>,
}

impl Connected for TlsConnection {
    type ConnectInfo = TlsPeer;

    fn connect_info(&self) -> TlsPeer {
        let (io, session) = self.inner.get_ref();
        TlsPeer {
            remote_addr: io.get_ref().peer_addr().ok(),
            client_certificates: session
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
        }
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Binds `address`, with a clear error when the port is taken.
pub async fn bind(what: &'static str, address: SocketAddr) -> Result<TcpListener, SimError> {
    // Retried briefly: a port released by the previous listener of this node (reboot)
    // may linger for a moment.
    let mut last = None;
    for _ in 0..20 {
        match TcpListener::bind(address).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(source) => {
                return Err(SimError::Listen {
                    what,
                    address: address.to_string(),
                    source,
                });
            }
        }
    }
    Err(SimError::Listen {
        what,
        address: address.to_string(),
        source: last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)),
    })
}

/// Accepts connections, gates them, runs the TLS handshake; yields established
/// connections. Ends (dropping the listener) when the gate closes.
fn incoming(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    gate: Gate,
) -> (
    ReceiverStream<Result<TlsConnection, io::Error>>,
    JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let task = tokio::spawn(async move {
        let mut handshakes = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => break,
                () = gate.wait_closed() => break,
                Some(_) = handshakes.join_next(), if !handshakes.is_empty() => continue,
                accepted = listener.accept() => accepted,
            };
            let Ok((tcp, _)) = accepted else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let stream = GatedStream::new(tcp, gate.clone());
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let gate = gate.clone();
            handshakes.spawn(async move {
                let mut handshake = Box::pin(acceptor.accept(stream).into_fallible());
                loop {
                    if !gate.wait_open().await {
                        return;
                    }
                    tokio::select! {
                        result = &mut handshake => {
                            match result {
                                Ok(inner) => {
                                    let _ = tx.send(Ok(TlsConnection { inner })).await;
                                }
                                Err((_, io)) => linger(io).await,
                            }
                            return;
                        }
                        _ = tokio::time::sleep(HANDSHAKE_TIMEOUT) => {
                            // Time spent paused does not count.
                            if gate.state() == GateState::Open {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (ReceiverStream::new(rx), task)
}

/// After a failed handshake (the alert is already written): closes this side and reads
/// what the peer still sends, so that it gets the alert. Closing with unread data would
/// make the kernel reset the connection, and a TLS 1.3 client that has already sent its
/// first request would see a reset instead of the reason (e.g. an unknown CA).
async fn linger(mut io: GatedStream<TcpStream>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(Duration::from_secs(1), async move {
        let _ = io.shutdown().await;
        let mut buf = [0u8; 4096];
        while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}

impl Gate {
    async fn wait_closed(&self) {
        loop {
            let notified = self.shared.changed.notified();
            if self.state() == GateState::Closed {
                return;
            }
            notified.await;
        }
    }
}

/// The body of an HTTP response the plain HTTP listeners send (whole or streamed).
pub type HttpBody = http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>;

/// Answers one HTTP request; gets the TLS peer (client certificates) of its connection.
pub type HttpHandler = Arc<
    dyn Fn(
            TlsPeer,
            http::Request<hyper::body::Incoming>,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = http::Response<HttpBody>> + Send>>
        + Send
        + Sync,
>;

/// One listening endpoint serving a tonic router or an HTTP/1.1 handler.
pub struct Listener {
    gate: Gate,
    shutdown: Option<oneshot::Sender<()>>,
    accept_task: Option<JoinHandle<()>>,
    server_task: JoinHandle<()>,
}

impl Listener {
    /// Serves `router` on `listener` with `tls`; starts paused when `paused`.
    pub fn serve(
        listener: TcpListener,
        tls: Arc<ServerConfig>,
        router: tonic::service::Routes,
        paused: bool,
    ) -> Listener {
        Self::start(listener, tls, paused, |incoming, shutdown_rx| async move {
            let _ = tonic::transport::Server::builder()
                .add_routes(router)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = shutdown_rx.await;
                })
                .await;
        })
    }

    /// Serves HTTP/1.1 with `handler` on `listener` with `tls`.
    pub fn serve_http(
        listener: TcpListener,
        tls: Arc<ServerConfig>,
        handler: HttpHandler,
        paused: bool,
    ) -> Listener {
        use tokio_stream::StreamExt as _;
        Self::start(
            listener,
            tls,
            paused,
            |mut incoming, mut shutdown_rx| async move {
                let mut connections = JoinSet::new();
                loop {
                    let next = tokio::select! {
                        _ = &mut shutdown_rx => break,
                        Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                        next = incoming.next() => next,
                    };
                    let Some(Ok(conn)) = next else {
                        if next.is_none() {
                            break;
                        }
                        continue;
                    };
                    let peer = conn.connect_info();
                    let handler = handler.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let fut = handler(peer.clone(), req);
                            async move { Ok::<_, std::convert::Infallible>(fut.await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(hyper_util::rt::TokioIo::new(conn), service)
                            .await;
                    });
                }
                // Dropping the set aborts every connection (and its watches).
                connections.shutdown().await;
            },
        )
    }

    fn start<F, Fut>(
        listener: TcpListener,
        tls: Arc<ServerConfig>,
        paused: bool,
        server: F,
    ) -> Listener
    where
        F: FnOnce(ReceiverStream<Result<TlsConnection, io::Error>>, oneshot::Receiver<()>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let gate = Gate::new(if paused {
            GateState::Paused
        } else {
            GateState::Open
        });
        let (incoming, accept_task) = incoming(listener, tls, gate.clone());
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let server_task = tokio::spawn(server(incoming, shutdown_rx));
        Listener {
            gate,
            shutdown: Some(shutdown_tx),
            accept_task: Some(accept_task),
            server_task,
        }
    }

    pub fn set_paused(&self, paused: bool) {
        self.gate.set(if paused {
            GateState::Paused
        } else {
            GateState::Open
        });
    }

    /// Stops listening and breaks every connection; resolves once the port is closed.
    pub async fn close(mut self) {
        self.shutdown_now();
        if let Some(accept) = self.accept_task.take() {
            let _ = accept.await;
        }
    }

    fn shutdown_now(&mut self) {
        self.gate.set(GateState::Closed);
        if let Some(accept) = &self.accept_task {
            accept.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let server = self.server_task.abort_handle();
        // Give the server a moment to notice its connections failed, then make sure.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            server.abort();
        });
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if self.shutdown.is_some() {
            self.shutdown_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn gate_pauses_and_breaks_streams() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"ping").await.unwrap();
            s
        });
        let (server, _) = listener.accept().await.unwrap();
        let _client = client.await.unwrap();
        let gate = Gate::new(GateState::Paused);
        let mut gated = GatedStream::new(server, gate.clone());
        let mut buf = [0u8; 4];
        // Paused: the read does not complete.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), gated.read_exact(&mut buf))
                .await
                .is_err()
        );
        gate.set(GateState::Open);
        gated.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        // A pending read fails as soon as the gate closes.
        let reader = tokio::spawn(async move { gated.read(&mut buf).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.set(GateState::Closed);
        let err = tokio::time::timeout(Duration::from_secs(1), reader)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        // Closed is final.
        gate.set(GateState::Open);
        assert_eq!(gate.state(), GateState::Closed);
    }
}
