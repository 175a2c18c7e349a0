//! `writ mcp-proxy --listen ADDR --upstream URL`: MCP clients reach the
//! proxy over the Streamable HTTP transport at `/mcp`.
//!
//! - **Sessions.** A POST of `initialize` with a bearer token and no
//!   `Mcp-Session-Id` opens a session: a session writ asked for *with the
//!   client's token* (the caller is the principal; a denial is answered 403
//!   with its reason), a session of the proxy's own with the upstream, and
//!   one proxy loop between them. The answer names the session
//!   (`Mcp-Session-Id`, 128 random bits). Every later request must carry
//!   the session id *and the same token*: an unknown id, or a known one
//!   with another token, is 404, as the transport says for a session the
//!   server does not know. DELETE ends it, and so do `--session-idle`
//!   seconds without a request, the session writ's end (a revocation) and
//!   the upstream's end.
//! - **Messages.** A posted request is answered on an event stream of its
//!   own (or as one JSON body when the client accepts no event stream)
//!   carrying its response; the server's own requests and notifications go
//!   on the standalone stream a GET opens. A posted notification or
//!   response is answered 202.
//! - **Resumability.** Every stream starts with a priming event (an id,
//!   empty data) and numbers its events (`STREAM-N`); a client whose
//!   connection broke resumes with a GET carrying `Last-Event-ID` and gets
//!   what follows ([`writ_mcp::streamable::Streams`]).
//! - **Limits.** Bodies up to the proxy's message limit, read within 30 s;
//!   headers within 20 s; at most `CONNECTIONS_MAX` connections,
//!   `--sessions-max` sessions (`SESSIONS_PER_TOKEN_MAX` per token) and
//!   `STREAMS_MAX` request streams per session; a session holding more than
//!   `SESSION_EVENT_BYTES_MAX` bytes of unsent events is ended.
//! - **Origin.** A request with an `Origin` header not given with
//!   `--allow-origin` is refused 403 (DNS rebinding).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use writ_artifact::{Entropy as _, OsEntropy};
use writ_mcp::framing::{read_message, MESSAGE_BYTES_MAX};
use writ_mcp::message::{classify, Kind, INVALID_REQUEST, PARSE_ERROR};
use writ_mcp::sse;
use writ_mcp::streamable::{to_line, Cursor, Next, Streams, STANDALONE};

mod oauth;
mod wire;

use self::wire::{
    accepts, bearer, denial, header, read_body, refused, respond, rpc_error, unauthenticated, Body,
};
use super::remote::{open, Live};
use super::stdio::UntilStopped;
use super::upstream::Upstream;
use super::McpProxyArgs;
use crate::{Exit, Global};

/// The endpoint.
pub(crate) const PATH: &str = "/mcp";
/// Connections served at once.
const CONNECTIONS_MAX: usize = 1024;
/// How long a client may take to send a request's headers, and its body.
const HEADER_TIMEOUT: Duration = Duration::from_secs(20);
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Unsent events a session may hold (a client that stopped reading).
pub(crate) const SESSION_EVENT_BYTES_MAX: usize = 2 * MESSAGE_BYTES_MAX;
/// Between two writes on an idle event stream, a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The longest body of a request without a session (an `initialize`):
/// nothing larger is read before a session and its token matched.
const SESSIONLESS_BODY_BYTES_MAX: usize = 64 * 1024;
/// The longest bearer token taken.
const TOKEN_BYTES_MAX: usize = 16 * 1024;
/// Sessions one token may hold at once (so one caller cannot take every
/// slot of --sessions-max).
const SESSIONS_PER_TOKEN_MAX: usize = 16;
/// Protocol versions a client may name in `MCP-Protocol-Version`.
const VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// How long a shutdown waits for sessions being opened.
const OPENING_WAIT: Duration = Duration::from_secs(30);
/// Bytes buffered between the HTTP side and the proxy loop.
const PIPE_BYTES: usize = 256 * 1024;

struct Front {
    g: Global,
    a: Arc<McpProxyArgs>,
    upstream: Upstream,
    /// The protected-resource metadata of --resource-url.
    oauth: Option<oauth::ResourceMetadata>,
    sessions: Mutex<HashMap<String, Arc<Sess>>>,
    /// Sessions being opened, by token digest (for the per-token bound).
    opening: Mutex<HashMap<String, usize>>,
    /// Sessions open or being opened (bounded by --sessions-max).
    slots: Arc<Semaphore>,
    /// Set on a signal: no session opens after it.
    closing: std::sync::atomic::AtomicBool,
}

/// One client session.
struct Sess {
    /// `sha256:` of the bearer token that opened it.
    token: String,
    /// Lines to the proxy loop (the client's side).
    input: mpsc::Sender<Vec<u8>>,
    streams: Mutex<Streams>,
    /// The stream of each request waiting for its response, by id.
    waiting: Mutex<HashMap<String, u64>>,
    touched: Mutex<Instant>,
    /// Ends the client's side (DELETE, idle, shutdown).
    stop: Mutex<Option<oneshot::Sender<()>>>,
    /// True once the session ended.
    ended: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sess {
    fn stop(&self) {
        if let Some(s) = lock(&self.stop).take() {
            let _ = s.send(());
        }
    }
}

/// Serve MCP clients at `addr` until SIGTERM, SIGINT or SIGHUP; then end
/// every session (each gets its finish record) and exit.
pub(super) async fn serve(
    g: Global,
    a: Arc<McpProxyArgs>,
    upstream: Upstream,
    addr: SocketAddr,
) -> Result<Exit> {
    let tls = match (&a.remote.tls_cert, &a.remote.tls_key) {
        (Some(cert), Some(key)) => Some(tokio_rustls::TlsAcceptor::from(
            writ_tls::server::ServerTls::load(writ_tls::server::ServerFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: None,
            })
            .map_err(|e| anyhow::anyhow!("--tls-cert/--tls-key: {e}"))?
            .config(),
        )),
        _ => None,
    };
    let oauth = oauth::ResourceMetadata::new(
        &a.name,
        a.remote.resource_url.as_deref(),
        &a.remote.authorization_servers,
    )?;
    if tls.is_none() && !addr.ip().is_loopback() && !crate::client::insecure_allowed() {
        anyhow::bail!(
            "--listen {addr} without --tls-cert would take bearer tokens in cleartext off this machine: \
             give --tls-cert and --tls-key, or set {}=1",
            crate::client::INSECURE_PLAIN_HTTP_ENV
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--listen {addr}"))?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!(
        "writ mcp-proxy: serving MCP at {scheme}://{local}{PATH} for {}",
        upstream.url
    );
    let front = Arc::new(Front {
        slots: Arc::new(Semaphore::new(a.remote.sessions_max as usize)),
        g,
        a,
        upstream,
        oauth,
        sessions: Mutex::new(HashMap::new()),
        opening: Mutex::new(HashMap::new()),
        closing: std::sync::atomic::AtomicBool::new(false),
    });
    let conns = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut signals = crate::signals::Forwarder::new()?;
    let reaper = tokio::spawn(reap_idle(Arc::clone(&front)));
    let sig = loop {
        tokio::select! {
            sig = signals.recv() => break sig,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let Ok(permit) = Arc::clone(&conns).try_acquire_owned() else { continue };
                let _ = tcp.set_nodelay(true);
                let (front, tls) = (Arc::clone(&front), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => connection(front, tcp).await,
                        Some(acc) => {
                            if let Ok(Ok(s)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acc.accept(tcp)).await {
                                connection(front, s).await;
                            }
                        }
                    }
                    drop(permit);
                });
            }
        }
    };
    eprintln!(
        "writ mcp-proxy: {} received: ending every session",
        crate::signals::name(sig)
    );
    reaper.abort();
    // A session still being opened may already be a started writ: let its
    // opening end (no other begins now), so that it is ended, and finished,
    // with the rest.
    front
        .closing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let waited = Instant::now();
    while !lock(&front.opening).is_empty() && waited.elapsed() < OPENING_WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sessions: Vec<Arc<Sess>> = lock(&front.sessions).values().cloned().collect();
    for s in &sessions {
        s.stop();
    }
    for s in sessions {
        let mut ended = s.ended.subscribe();
        let _ =
            tokio::time::timeout(writ_mcp::proxy::DRAIN_GRACE * 2, ended.wait_for(|e| *e)).await;
    }
    Ok(Exit::Code(128u8.saturating_add(sig as u8)))
}

async fn connection<I>(front: Arc<Front>, io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let front = Arc::clone(&front);
        async move { Ok::<_, Infallible>(handle(front, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

/// Ends sessions without a request for `--session-idle` seconds.
async fn reap_idle(front: Arc<Front>) {
    let idle = Duration::from_secs(front.a.remote.session_idle);
    loop {
        tokio::time::sleep(idle.min(Duration::from_secs(30))).await;
        let stale: Vec<Arc<Sess>> = lock(&front.sessions)
            .values()
            .filter(|s| lock(&s.touched).elapsed() >= idle)
            .cloned()
            .collect();
        for s in stale {
            s.stop();
        }
    }
}

async fn handle(front: Arc<Front>, req: Request<Incoming>) -> Response<Body> {
    if let Some(m) = front
        .oauth
        .as_ref()
        .filter(|m| req.method() == Method::GET && m.serves(req.uri().path()))
    {
        return m.response();
    }
    if req.uri().path() != PATH {
        return refused(StatusCode::NOT_FOUND, "the MCP endpoint is /mcp");
    }
    if let Some(origin) = header(req.headers(), "origin") {
        if !front.a.remote.allow_origin.iter().any(|o| o == origin) {
            return refused(
                StatusCode::FORBIDDEN,
                "this Origin is not allowed (writ mcp-proxy --allow-origin)",
            );
        }
    }
    if let Some(v) = header(req.headers(), "mcp-protocol-version") {
        if !VERSIONS.contains(&v) {
            return refused(
                StatusCode::BAD_REQUEST,
                &format!("unsupported MCP-Protocol-Version {v:?}"),
            );
        }
    }
    let Some(token) = bearer(req.headers()).map(str::to_owned) else {
        return unauthenticated(front.oauth.as_ref().map(|m| m.challenge(false)));
    };
    let digest = writ_artifact::canonical::digest_bytes(token.as_bytes());
    let session = match header(req.headers(), "mcp-session-id") {
        None => None,
        Some(id) => match lock(&front.sessions).get(id) {
            // Another caller's session is not told apart from none.
            Some(s) if s.token == digest => Some((id.to_owned(), Arc::clone(s))),
            _ => return refused(StatusCode::NOT_FOUND, "no such session"),
        },
    };
    if let Some((_, s)) = &session {
        *lock(&s.touched) = Instant::now();
    }
    match *req.method() {
        Method::POST => post(front, req, token, digest, session).await,
        Method::GET => match session {
            Some((_, s)) => get(s, req.headers()),
            None => refused(StatusCode::BAD_REQUEST, "Mcp-Session-Id is required"),
        },
        Method::DELETE => match session {
            Some((_, s)) => {
                s.stop();
                respond(StatusCode::OK, &[], Body::Full(None))
            }
            None => refused(StatusCode::BAD_REQUEST, "Mcp-Session-Id is required"),
        },
        _ => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            &[("allow", "GET, POST, DELETE")],
            Body::Full(None),
        ),
    }
}

async fn post(
    front: Arc<Front>,
    req: Request<Incoming>,
    token: String,
    digest: String,
    session: Option<(String, Arc<Sess>)>,
) -> Response<Body> {
    let json_type = header(req.headers(), "content-type").is_some_and(|c| {
        c.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("application/json")
    });
    if !json_type {
        return refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let events = accepts(req.headers(), "text/event-stream");
    if !events && !accepts(req.headers(), "application/json") {
        return refused(
            StatusCode::NOT_ACCEPTABLE,
            "Accept must name application/json or text/event-stream",
        );
    }
    let limit = match session {
        Some(_) => MESSAGE_BYTES_MAX,
        None => SESSIONLESS_BODY_BYTES_MAX,
    };
    let body = match read_body(req.into_body(), limit).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let line = match to_line(&body, MESSAGE_BYTES_MAX) {
        Ok(l) => l,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                PARSE_ERROR,
                &e.to_string(),
            )
        }
    };
    let value: Value = serde_json::from_slice(&line).unwrap_or(Value::Null);
    let kind = classify(&value);
    let (id, sess) = match (&kind, session) {
        (Kind::Invalid { code, why }, _) => {
            return rpc_error(StatusCode::BAD_REQUEST, &Value::Null, *code, why)
        }
        (Kind::Request { method, id }, None) if method == "initialize" => {
            match start(&front, token, digest).await {
                Ok((sid, s)) => (Some((id.clone(), sid)), s),
                Err(r) => return *r,
            }
        }
        (_, None) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "Mcp-Session-Id is required (a session starts with initialize)",
            )
        }
        (Kind::Request { method, .. }, Some(_)) if method == "initialize" => {
            return refused(StatusCode::BAD_REQUEST, "this session is initialized")
        }
        (Kind::Request { id, .. }, Some((sid, s))) => (Some((id.clone(), sid)), s),
        (_, Some((_, s))) => (None, s),
    };
    let Some((id, sid)) = id else {
        // A notification or a response: taken.
        return match sess.input.send(line).await {
            Ok(()) => respond(StatusCode::ACCEPTED, &[], Body::Full(None)),
            Err(_) => refused(StatusCode::NOT_FOUND, "the session ended"),
        };
    };
    let key = id.to_string();
    let n = {
        let mut waiting = lock(&sess.waiting);
        if waiting.contains_key(&key) {
            return rpc_error(StatusCode::OK, &id, INVALID_REQUEST, "request id in use");
        }
        let Some(n) = lock(&sess.streams).open() else {
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many requests of this session are waiting for their answers",
            );
        };
        waiting.insert(key, n);
        n
    };
    if sess.input.send(line).await.is_err() {
        return refused(StatusCode::NOT_FOUND, "the session ended");
    }
    if events {
        stream_response(
            sess,
            Cursor {
                stream: n,
                after: 0,
            },
            &[("mcp-session-id", &sid)],
            true,
        )
    } else {
        json_response(sess, n, &sid).await
    }
}

/// `200` with the stream from `cursor` on, as events.
fn stream_response(
    sess: Arc<Sess>,
    cursor: Cursor,
    headers: &[(&str, &str)],
    prime: bool,
) -> Response<Body> {
    let Some(reader) = lock(&sess.streams).attach(cursor.stream) else {
        return refused(StatusCode::NOT_FOUND, "no such event stream");
    };
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(send_events(sess, cursor, reader, tx, prime));
    let mut all = vec![
        ("content-type", "text/event-stream"),
        ("cache-control", "no-cache"),
    ];
    all.extend_from_slice(headers);
    respond(StatusCode::OK, &all, Body::Stream(rx))
}

async fn send_events(
    sess: Arc<Sess>,
    mut cursor: Cursor,
    reader: u64,
    tx: mpsc::Sender<Bytes>,
    prime: bool,
) {
    if prime {
        // The priming event names where the client is: a resumed stream
        // that breaks again resumes from here, not from its start.
        let id = format!("{}-{}", cursor.stream, cursor.after);
        if tx.send(Bytes::from(sse::event(&id, ""))).await.is_err() {
            return;
        }
    }
    let mut ended = sess.ended.subscribe();
    loop {
        let next = lock(&sess.streams).next(cursor, reader);
        match next {
            Next::Events(evs) => {
                for (id, data) in evs {
                    if tx.send(Bytes::from(sse::event(&id, &data))).await.is_err() {
                        return;
                    }
                    cursor.after += 1;
                }
                lock(&sess.streams).mark_sent(cursor.stream, cursor.after);
            }
            Next::Wait(mut tick) => {
                if *ended.borrow() {
                    return;
                }
                tokio::select! {
                    _ = tick.changed() => {}
                    _ = ended.changed() => {}
                    _ = tokio::time::sleep(KEEP_ALIVE) => {
                        if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                            return;
                        }
                    }
                }
            }
            Next::End | Next::Gone => return,
        }
    }
}

/// `200` with the response alone, as JSON (a client that takes no events).
async fn json_response(sess: Arc<Sess>, n: u64, sid: &str) -> Response<Body> {
    let Some(reader) = lock(&sess.streams).attach(n) else {
        return refused(StatusCode::NOT_FOUND, "the session ended");
    };
    let mut ended = sess.ended.subscribe();
    let cursor = Cursor {
        stream: n,
        after: 0,
    };
    loop {
        let next = lock(&sess.streams).next(cursor, reader);
        match next {
            Next::Events(evs) => {
                let data = evs.into_iter().next().map(|(_, d)| d).unwrap_or_default();
                // Taken: the stream is sent whole (and released in time).
                let mut streams = lock(&sess.streams);
                streams.mark_sent(n, 1);
                let _ = streams.next(
                    Cursor {
                        stream: n,
                        after: 1,
                    },
                    reader,
                );
                drop(streams);
                return respond(
                    StatusCode::OK,
                    &[
                        ("content-type", "application/json"),
                        ("mcp-session-id", sid),
                    ],
                    Body::Full(Some(Bytes::from(data.as_bytes().to_vec()))),
                );
            }
            Next::Wait(mut tick) => {
                if *ended.borrow() {
                    return refused(StatusCode::NOT_FOUND, "the session ended");
                }
                tokio::select! {
                    _ = tick.changed() => {}
                    _ = ended.changed() => {}
                }
            }
            Next::End | Next::Gone => return refused(StatusCode::NOT_FOUND, "the session ended"),
        }
    }
}

/// GET: the standalone stream, or a broken stream resumed (`Last-Event-ID`).
fn get(sess: Arc<Sess>, h: &HeaderMap) -> Response<Body> {
    if !accepts(h, "text/event-stream") {
        return refused(
            StatusCode::NOT_ACCEPTABLE,
            "Accept must name text/event-stream",
        );
    }
    let cursor = match header(h, "last-event-id") {
        Some(last) => match Cursor::parse(last) {
            Some(c) if lock(&sess.streams).has(c.stream) => c,
            _ => return refused(StatusCode::NOT_FOUND, "no such event to resume after"),
        },
        None => Cursor {
            stream: STANDALONE,
            after: lock(&sess.streams).sent(STANDALONE),
        },
    };
    if cursor.after > lock(&sess.streams).last(cursor.stream) {
        return refused(StatusCode::NOT_FOUND, "no such event to resume after");
    }
    stream_response(sess, cursor, &[], true)
}

/// Open a session for the caller with `token`: its writ, its upstream
/// session, its proxy loop. A denial is answered 403 with its reason.
async fn start(
    front: &Arc<Front>,
    token: String,
    digest: String,
) -> Result<(String, Arc<Sess>), Box<Response<Body>>> {
    let opening = Opening::claim(front, &digest);
    // Claimed first, then checked: a shutdown either sees this opening and
    // waits for it, or this sees the shutdown.
    if front.closing.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(Box::new(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "writ mcp-proxy is shutting down",
        )));
    }
    let mine = lock(&front.sessions)
        .values()
        .filter(|s| s.token == digest)
        .count()
        + opening.others();
    if mine >= SESSIONS_PER_TOKEN_MAX {
        return Err(Box::new(refused(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("a caller holds at most {SESSIONS_PER_TOKEN_MAX} sessions at once: end one (DELETE)"),
        )));
    }
    let Ok(slot) = Arc::clone(&front.slots).try_acquire_owned() else {
        return Err(Box::new(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "writ mcp-proxy holds as many sessions as --sessions-max allows",
        )));
    };
    let live = match open(&front.g, &front.a, Some(token), None).await {
        Ok(Ok(l)) => l,
        Ok(Err(d)) => {
            return Err(Box::new(denial(
                &d,
                front.oauth.as_ref().map(|m| m.challenge(true)),
            )))
        }
        Err(e) => {
            return Err(Box::new(refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("opening the session: {e:#}"),
            )))
        }
    };
    let mut raw = [0u8; 16];
    if OsEntropy.fill(&mut raw).is_err() {
        live.finish(&writ_mcp::proxy::End::ClientClosed, None).await;
        return Err(Box::new(refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no randomness for a session id",
        )));
    }
    let sid: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let (input, input_rx) = mpsc::channel::<Vec<u8>>(writ_mcp::proxy::QUEUE_MESSAGES_MAX);
    let (stop, stopped) = oneshot::channel();
    let sess = Arc::new(Sess {
        token: digest,
        input,
        streams: Mutex::new(Streams::new(SESSION_EVENT_BYTES_MAX)),
        waiting: Mutex::new(HashMap::new()),
        touched: Mutex::new(Instant::now()),
        stop: Mutex::new(Some(stop)),
        ended: watch::channel(false).0,
    });
    lock(&front.sessions).insert(sid.clone(), Arc::clone(&sess));
    eprintln!(
        "writ mcp-proxy: session {} (audience {})",
        live.jti, live.proxy.audience
    );
    tokio::spawn(run_session(
        Arc::clone(front),
        sid.clone(),
        Arc::clone(&sess),
        live,
        input_rx,
        stopped,
        slot,
    ));
    Ok((sid, sess))
}

/// The session: the proxy loop between the client's messages and the
/// upstream, until the client, the upstream or the session's writ ends it.
async fn run_session(
    front: Arc<Front>,
    sid: String,
    sess: Arc<Sess>,
    mut live: Live,
    mut input_rx: mpsc::Receiver<Vec<u8>>,
    stopped: oneshot::Receiver<()>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let (mut to_loop, client_in) = tokio::io::duplex(PIPE_BYTES);
    let (client_out, from_loop) = tokio::io::duplex(PIPE_BYTES);
    let feed = tokio::spawn(async move {
        while let Some(mut line) = input_rx.recv().await {
            line.push(b'\n');
            if to_loop.write_all(&line).await.is_err() {
                return;
            }
        }
    });
    let router = tokio::spawn(route(Arc::clone(&sess), from_loop));
    let (server_in, server_out, link) = front.upstream.connect();
    let run = writ_mcp::proxy::run(
        Arc::clone(&live.gov),
        UntilStopped::new(BufReader::with_capacity(PIPE_BYTES, client_in), stopped),
        client_out,
        server_in,
        server_out,
    );
    tokio::pin!(run);
    let end = tokio::select! {
        end = &mut run => end,
        _ = &mut live.lease => {
            // The session's writ ended (revoked, renewal refused): so does
            // the session, whatever the client still sends.
            sess.stop();
            run.await
        }
    };
    feed.abort();
    let _ = router.await;
    super::upstream::settle(link).await;
    lock(&front.sessions).remove(&sid);
    lock(&sess.streams).end_all();
    // Ended once its finish is recorded: a shutdown waits for `ended`.
    live.finish(&end, None).await;
    sess.ended.send_replace(true);
}

/// The proxy loop's messages to the client: a response on its request's
/// stream (which then ends), anything else on the standalone stream.
async fn route(sess: Arc<Sess>, from_loop: tokio::io::DuplexStream) {
    let mut r = BufReader::with_capacity(PIPE_BYTES, from_loop);
    while let Ok(Some(line)) = read_message(&mut r, MESSAGE_BYTES_MAX).await {
        let text: Arc<str> = String::from_utf8_lossy(&line).into();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let stream = match classify(&value) {
            Kind::Response { id } => lock(&sess.waiting).remove(&id.to_string()),
            _ => None,
        };
        let mut streams = lock(&sess.streams);
        let within = match stream {
            Some(n) => {
                let ok = streams.push(n, text);
                streams.end(n);
                ok
            }
            None => streams.push(STANDALONE, text),
        };
        drop(streams);
        if !within {
            eprintln!("writ mcp-proxy: a client holds too many unsent events: ending its session");
            sess.stop();
        }
    }
}

/// A session being opened for a token, counted until dropped (so that
/// concurrent `initialize`s of one token cannot all pass the bound).
struct Opening<'f> {
    front: &'f Front,
    digest: String,
}

impl<'f> Opening<'f> {
    fn claim(front: &'f Front, digest: &str) -> Opening<'f> {
        *lock(&front.opening).entry(digest.to_owned()).or_default() += 1;
        Opening {
            front,
            digest: digest.to_owned(),
        }
    }

    /// The token's other sessions being opened.
    fn others(&self) -> usize {
        lock(&self.front.opening)
            .get(&self.digest)
            .map_or(0, |n| n.saturating_sub(1))
    }
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        let mut o = lock(&self.front.opening);
        if let Some(n) = o.get_mut(&self.digest) {
            *n -= 1;
            if *n == 0 {
                o.remove(&self.digest);
            }
        }
    }
}
