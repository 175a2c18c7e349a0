//! Accepting connections: TLS (rustls) when configured, a bound on the
//! connections open at once, and deadlines for a request's head and body,
//! so that no client can hold the server's connections or memory by
//! sending slowly or not at all.
//!
//! One accept loop serves the API (`writ serve`) and the witness (`writ
//! witness`): hyper's HTTP/1.1 connection with a header read timeout (which
//! also closes a keep-alive connection idle for as long), each request's
//! body under [`Deadline`], graceful shutdown through hyper-util.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::Router;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use writ_identity::x509::PeerCertificate;

use crate::metrics::ConnMetrics;

/// How a server accepts connections.
#[derive(Clone)]
pub struct Listen {
    /// TLS, reloadable; `None`: plain HTTP.
    pub tls: Option<Arc<writ_tls::server::ServerTls>>,
    /// Connections open at once; one more is closed as soon as it is
    /// accepted (and counted), so that it cannot queue behind the others.
    pub max_connections: usize,
    /// A request's head (and a TLS handshake) must arrive within this; a
    /// keep-alive connection idle this long is closed.
    pub header_timeout: Duration,
    /// A request's body must arrive within this of its head.
    pub body_timeout: Duration,
    /// Whether a verified client certificate authenticates a request that
    /// carries no token (`--client-cert-identities`); otherwise it only
    /// secures the transport.
    pub cert_identities: bool,
}

/// Open connections at most, by default.
pub const MAX_CONNECTIONS_DEFAULT: usize = 1024;
/// Seconds a request's head, or its body, may take, by default.
pub const REQUEST_TIMEOUT_SECS_DEFAULT: u64 = 20;

impl Default for Listen {
    fn default() -> Listen {
        Listen {
            tls: None,
            max_connections: MAX_CONNECTIONS_DEFAULT,
            header_timeout: Duration::from_secs(REQUEST_TIMEOUT_SECS_DEFAULT),
            body_timeout: Duration::from_secs(REQUEST_TIMEOUT_SECS_DEFAULT),
            cert_identities: false,
        }
    }
}

/// Accept connections on `listener` and serve `app` on each until
/// `shutdown` resolves; then accept no more and wait for the open ones to
/// finish (the caller bounds that wait).
pub async fn run(
    listener: TcpListener,
    app: Router,
    listen: Listen,
    metrics: ConnMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(listen.max_connections));
    let per_peer = Arc::new(PerPeer::new(per_peer_max(listen.max_connections)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or the peer gave up: wait a
                    // little rather than spin, and go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(peer_slot) = per_peer.take(peer.ip()) else {
            metrics.refused.inc();
            drop(stream);
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let listen = listen.clone();
        let metrics = metrics.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let (_permit, _peer_slot) = (permit, peer_slot);
            metrics.open.inc();
            serve_one(stream, app, &listen, &metrics, watcher).await;
            metrics.open.dec();
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Local callers identified at once on the Unix socket.
const IDENTIFYING_MAX: usize = 4;

/// Accept connections on the Unix socket `listener` and serve `app` on
/// each until `shutdown` resolves, as [`run`] does for TCP. Each
/// connection's peer is what the kernel says (`SO_PEERCRED`: uid, gid,
/// pid; whether it is sandboxed; its executable, hashed when `hash`); it
/// goes with every request on it (the access guard maps it to a principal
/// when there is no token).
pub async fn run_unix(
    listener: tokio::net::UnixListener,
    app: Router,
    listen: Listen,
    metrics: ConnMetrics,
    hash: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(listen.max_connections));
    let cache = Arc::new(writ_identity::peercred::ExeCache::new());
    // Identifying a caller reads /proc (and, for rules that name a digest,
    // hashes its executable): a few at a time, off the async workers.
    let identifying = Arc::new(Semaphore::new(IDENTIFYING_MAX));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed (unix socket)");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.refused.inc();
            drop(stream);
            continue;
        };
        let app = app.clone();
        let listen = listen.clone();
        let metrics = metrics.clone();
        let cache = cache.clone();
        let identifying = identifying.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            metrics.open.inc();
            // Hashing the caller's executable reads a file: off the workers
            // (cached by file identity, so once per binary).
            use std::os::fd::AsFd as _;
            use writ_identity::peercred::{LocalPeer, Peer, PeerError};
            let turn = identifying.acquire_owned().await;
            let peer = match stream.as_fd().try_clone_to_owned() {
                Ok(fd) => tokio::task::spawn_blocking(move || {
                    Peer(LocalPeer::of_socket(fd.as_fd(), &cache, hash))
                })
                .await
                .unwrap_or_else(|e| Peer(Err(PeerError::Identifying(e.to_string())))),
                Err(e) => Peer(Err(PeerError::Identifying(e.to_string()))),
            };
            drop(turn);
            let peer = Some(Arc::new(peer));
            let service = service_for(app, listen.body_timeout, peer);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(listen.header_timeout);
            let stream = WriteDeadline::new(stream, listen.header_timeout);
            let conn = http.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                if e.is_timeout() {
                    metrics.timed_out.inc();
                }
                tracing::debug!(error = %e, "connection ended with an error");
            }
            metrics.open.dec();
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The service of one connection: `app`, each request's body under a
/// deadline, and `peer` (what the connection proved of its caller) in each
/// request's extensions.
fn service_for<P: Clone + Send + Sync + 'static>(
    app: Router,
    body_timeout: Duration,
    peer: Option<P>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let app = app.clone();
        let peer = peer.clone();
        async move {
            let mut req = req.map(|b| axum::body::Body::new(Deadline::new(b, body_timeout)));
            if let Some(p) = peer {
                req.extensions_mut().insert(p);
            }
            app.oneshot(req).await
        }
    })
}

async fn serve_one(
    stream: tokio::net::TcpStream,
    app: Router,
    listen: &Listen,
    metrics: &ConnMetrics,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let body_timeout = listen.body_timeout;
    // The client certificate of a mutual-TLS connection, when there is one,
    // goes with every request on it (the access guard maps it to a
    // principal when the request carries no bearer token).
    let service = move |peer: Option<Arc<PeerCertificate>>| service_for(app, body_timeout, peer);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(listen.header_timeout);
    // A client that stops reading what it asked for holds its connection
    // and the answer's memory: a write that cannot go on for as long as a
    // request may take ends the connection.
    let stream = WriteDeadline::new(stream, listen.header_timeout);
    let result = match &listen.tls {
        None => {
            let conn = http.serve_connection(TokioIo::new(stream), service(None));
            watcher.watch(conn).await
        }
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
            let stream =
                match tokio::time::timeout(listen.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        metrics.tls_failed.inc();
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        metrics.timed_out.inc();
                        return;
                    }
                };
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .filter(|_| listen.cert_identities)
                .and_then(|chain| chain.first())
                .map(|leaf| Arc::new(PeerCertificate::from_der(leaf.as_ref())));
            let conn = http.serve_connection(TokioIo::new(stream), service(peer));
            watcher.watch(conn).await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            metrics.timed_out.inc();
        }
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// A request body that must arrive within a deadline from its head: a
/// client that sends its body slowly, or stops half-way, gets an error (the
/// route answers 400 and the connection closes) instead of holding it.
pub struct Deadline<B> {
    inner: B,
    timeout: Duration,
    /// Made on the first poll: a body never read costs no timer.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    started: tokio::time::Instant,
}

impl<B> Deadline<B> {
    pub fn new(inner: B, timeout: Duration) -> Deadline<B> {
        Deadline {
            inner,
            timeout,
            sleep: None,
            started: tokio::time::Instant::now(),
        }
    }
}

impl<B> Body for Deadline<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.started + this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(format!(
                "the request body did not arrive within {} s",
                this.timeout.as_secs()
            )
            .into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Connections one peer address may hold at once: half the limit, so that
/// one address cannot take them all.
fn per_peer_max(max_connections: usize) -> usize {
    (max_connections / 2).max(1)
}

/// Open connections by peer address.
struct PerPeer {
    max: usize,
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One connection of a peer, counted until dropped.
struct PeerSlot {
    peers: Arc<PerPeer>,
    ip: std::net::IpAddr,
}

impl PerPeer {
    fn new(max: usize) -> PerPeer {
        PerPeer {
            max,
            open: Default::default(),
        }
    }

    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let mut open = match self.open.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = match self.peers.open.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A stream whose writes must make progress: a write (or flush) that stays
/// pending for `timeout` fails with `TimedOut`, ending the connection.
pub struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    pending_since: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, timeout: Duration) -> WriteDeadline<S> {
        WriteDeadline {
            inner,
            timeout,
            pending_since: None,
        }
    }

    /// After the inner write returned `r`: arm the deadline on `Pending`,
    /// disarm it on progress, fail once it passed.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self
                    .pending_since
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.pending_since = None;
                ready
            }
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn a_write_the_peer_does_not_read_fails_at_its_deadline() {
        // The peer's end of a 64-byte pipe, never read.
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(ours, Duration::from_millis(200));
        let t = std::time::Instant::now();
        let err = w.write_all(&[0u8; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
        // Progress re-arms it: a reader that keeps up is never cut.
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(ours, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            tokio::io::AsyncReadExt::read_exact(&mut theirs, &mut buf)
                .await
                .unwrap();
        });
        w.write_all(&[0u8; 4096]).await.unwrap();
        reader.await.unwrap();
    }

    #[test]
    fn one_peer_holds_at_most_half_the_connections() {
        let peers = Arc::new(PerPeer::new(per_peer_max(8)));
        let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let b: std::net::IpAddr = "192.0.2.2".parse().unwrap();
        let held: Vec<_> = (0..4).map(|_| peers.take(a).unwrap()).collect();
        assert!(peers.take(a).is_none());
        assert!(peers.take(b).is_some());
        drop(held);
        assert!(peers.take(a).is_some());
    }
}
