//! The proxy's server side over the MCP Streamable HTTP transport: a remote
//! MCP server at one URL, seen by the proxy loop as the two byte streams a
//! stdio server would be (one message per line).
//!
//! Each message the proxy forwards is POSTed (`Accept: application/json,
//! text/event-stream`). The answer is `202` (a notification or response
//! taken), one JSON message, or an event stream carrying the server's
//! messages and, last, the response. The session id the server gives with
//! its `initialize` answer (`Mcp-Session-Id`) and the protocol version it
//! chose (`MCP-Protocol-Version`) go with every later request; after
//! `notifications/initialized` a GET opens the standalone stream for the
//! server's own requests and notifications. A stream that breaks after an
//! event id is resumed with a GET carrying `Last-Event-ID`; a request whose
//! stream ends without its response, or whose POST fails, gets a JSON-RPC
//! error from the proxy. A session the server no longer knows (`404`) ends
//! the proxy's session as a server that exited would. On the end, the
//! session is closed with a DELETE.
//!
//! The upstream's credential (`--upstream-token-file`) is the only one sent
//! to it: the MCP client's token goes to the authority only (the MCP
//! authorization specification forbids passing it through).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use writ_mcp::framing::{read_message, MESSAGE_BYTES_MAX};
use writ_mcp::message::{error_response, SERVER_GONE};
use writ_mcp::sse::Parser;
use writ_mcp::streamable::to_line;

/// Bytes buffered in each direction between the proxy loop and this side.
const PIPE_BYTES: usize = 256 * 1024;
/// How many times a broken event stream is resumed before its request is
/// answered with an error.
pub(crate) const RESUME_ATTEMPTS_MAX: u32 = 5;
/// Wait before a resume when the server asked for none (`retry:`).
const RESUME_WAIT_DEFAULT: Duration = Duration::from_millis(100);
/// The longest wait before a resume a server can ask for.
const RESUME_WAIT_MAX: Duration = Duration::from_secs(5);
/// How long the end of a stream is waited for after its response.
const DRAIN_AFTER_RESPONSE: Duration = Duration::from_secs(1);
/// Messages posted to the upstream at once; more wait (and the proxy loop
/// with them), so a client cannot pile up requests a slow upstream holds.
pub(crate) const POSTS_IN_FLIGHT_MAX: usize = 32;
/// How long `initialize` and the first `notifications/initialized`, posted
/// in order, may take before the session is given up.
const IN_ORDER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the closing DELETE may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The protocol version assumed until the server's `initialize` answer
/// names one.
const PROTOCOL_VERSION_DEFAULT: &str = "2025-03-26";

/// A remote MCP server.
#[derive(Clone)]
pub(crate) struct Upstream {
    pub url: reqwest::Url,
    pub http: reqwest::Client,
    /// The bearer token writ mcp-proxy presents to it, if any.
    pub token: Option<Arc<str>>,
}

impl Upstream {
    /// The client for `url`: HTTPS checked against the system's roots plus
    /// `ca`; plain HTTP only on this machine unless
    /// `WRIT_INSECURE_PLAIN_HTTP=1`; never a redirect, never a proxy.
    pub fn new(url: &str, ca: Option<&std::path::Path>, token: Option<String>) -> Result<Upstream> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("--upstream {url:?}"))?;
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .tcp_keepalive(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(15));
        let http = match parsed.scheme() {
            "https" => {
                let tls = writ_tls::client::ClientTls {
                    ca: ca.map(std::path::Path::to_path_buf),
                    ..Default::default()
                };
                builder
                    .use_preconfigured_tls(tls.config().map_err(|e| anyhow!("--upstream-ca: {e}"))?)
                    .build()?
            }
            "http"
                if crate::client::is_loopback(&parsed)
                    || std::env::var(crate::client::INSECURE_PLAIN_HTTP_ENV)
                        .is_ok_and(|v| v == "1") =>
            {
                builder.build()?
            }
            "http" => bail!(
                "refusing an upstream off this machine over plain HTTP ({url}): use https://, or set {}=1",
                crate::client::INSECURE_PLAIN_HTTP_ENV
            ),
            other => bail!("--upstream {url:?}: scheme {other}:// is neither https nor http"),
        };
        Ok(Upstream {
            url: parsed,
            http,
            token: token.map(Arc::from),
        })
    }

    /// Connect the proxy loop to this server: what the loop writes to
    /// (the server's input) and reads from (its output), and the task
    /// carrying messages between them and the server.
    pub fn connect(
        &self,
    ) -> (
        DuplexStream,
        BufReader<DuplexStream>,
        tokio::task::JoinHandle<()>,
    ) {
        let (server_in, from_proxy) = tokio::io::duplex(PIPE_BYTES);
        let (to_proxy, server_out) = tokio::io::duplex(PIPE_BYTES);
        let (tx, rx) = mpsc::channel::<Vec<u8>>(writ_mcp::proxy::QUEUE_MESSAGES_MAX);
        let link = Link {
            up: self.clone(),
            state: Arc::new(Mutex::new(State {
                session: None,
                version: PROTOCOL_VERSION_DEFAULT.to_owned(),
            })),
            to_proxy: tx,
            gone: Arc::new(tokio::sync::Notify::new()),
        };
        let gone = Arc::clone(&link.gone);
        let task = tokio::spawn(async move {
            let writer = tokio::spawn(write_lines(to_proxy, rx, gone));
            link.run(BufReader::with_capacity(PIPE_BYTES, from_proxy))
                .await;
            let _ = writer.await;
        });
        (
            server_in,
            BufReader::with_capacity(PIPE_BYTES, server_out),
            task,
        )
    }
}

/// Writes each message as a line to the proxy loop, until every sender is
/// gone or the upstream's session is (`gone`): the loop then reads the end
/// of the server's output.
async fn write_lines(
    mut out: DuplexStream,
    mut rx: mpsc::Receiver<Vec<u8>>,
    gone: Arc<tokio::sync::Notify>,
) {
    loop {
        let mut line = tokio::select! {
            l = rx.recv() => match l {
                Some(l) => l,
                None => break,
            },
            _ = gone.notified() => {
                // What was already queued (the error answers) goes first.
                while let Ok(mut line) = rx.try_recv() {
                    line.push(b'\n');
                    let _ = out.write_all(&line).await;
                }
                break;
            }
        };
        line.push(b'\n');
        if out.write_all(&line).await.is_err() {
            return;
        }
    }
    let _ = out.shutdown().await;
}

struct State {
    /// `Mcp-Session-Id`, once the server gave one.
    session: Option<String>,
    /// `MCP-Protocol-Version`.
    version: String,
}

#[derive(Clone)]
struct Link {
    up: Upstream,
    state: Arc<Mutex<State>>,
    to_proxy: mpsc::Sender<Vec<u8>>,
    /// Notified when the server no longer knows the session.
    gone: Arc<tokio::sync::Notify>,
}

/// What one posted message is.
struct Posted {
    /// Its id, when it is a request (expects a response).
    id: Option<Value>,
    method: Option<String>,
}

impl Posted {
    fn of(line: &[u8]) -> Posted {
        let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
        let method = v.get("method").and_then(Value::as_str).map(str::to_owned);
        let id = match (&method, v.get("id")) {
            (Some(_), Some(id)) => Some(id.clone()),
            _ => None,
        };
        Posted { id, method }
    }
}

impl Link {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(self, mut from_proxy: BufReader<DuplexStream>) {
        let mut posts: JoinSet<()> = JoinSet::new();
        let mut standalone: Option<tokio::task::JoinHandle<()>> = None;
        let slots = Arc::new(tokio::sync::Semaphore::new(POSTS_IN_FLIGHT_MAX));
        loop {
            let line = match read_message(&mut from_proxy, MESSAGE_BYTES_MAX).await {
                Ok(Some(l)) => l,
                Ok(None) | Err(_) => break,
            };
            let posted = Posted::of(&line);
            let initialize = posted.method.as_deref() == Some("initialize");
            let initialized = standalone.is_none()
                && posted.method.as_deref() == Some("notifications/initialized");
            if initialize || initialized {
                // In order: the session id comes with the answer to
                // `initialize`, and every later message carries it.
                if tokio::time::timeout(IN_ORDER_TIMEOUT, self.post(line, posted))
                    .await
                    .is_err()
                {
                    eprintln!(
                        "writ mcp-proxy: upstream: no answer to the session's set-up within 30 s"
                    );
                    self.gone.notify_one();
                    break;
                }
                if initialized && standalone.is_none() && self.lock().session.is_some() {
                    standalone = Some(tokio::spawn(self.clone().standalone()));
                }
            } else {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                let link = self.clone();
                posts.spawn(async move {
                    link.post(line, posted).await;
                    drop(slot);
                });
            }
            // Reap what is done, so a long session holds no finished tasks.
            while posts.try_join_next().is_some() {}
        }
        while posts.join_next().await.is_some() {}
        if let Some(s) = standalone {
            s.abort();
        }
        self.close().await;
    }

    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let st = self.lock();
        let mut r = self.up.http.request(method, self.up.url.clone());
        if let Some(s) = &st.session {
            r = r.header("mcp-session-id", s);
        }
        r = r.header("mcp-protocol-version", &st.version);
        if let Some(t) = &self.up.token {
            r = r.bearer_auth(t);
        }
        r
    }

    /// Send one message to the proxy loop (as a line).
    async fn emit(&self, data: &[u8]) {
        match to_line(data, MESSAGE_BYTES_MAX) {
            Ok(line) => {
                let _ = self.to_proxy.send(line).await;
            }
            Err(e) => tracing::warn!("the upstream MCP server sent a message that is {e}: dropped"),
        }
    }

    /// Answer a request the server did not answer.
    async fn fail(&self, posted: &Posted, why: String) {
        eprintln!("writ mcp-proxy: upstream: {why}");
        if let Some(id) = &posted.id {
            let v = error_response(id, SERVER_GONE, &format!("the upstream MCP server: {why}"));
            let _ = self.to_proxy.send(v.to_string().into_bytes()).await;
        }
    }

    async fn post(&self, line: Vec<u8>, posted: Posted) {
        let r = self
            .request(reqwest::Method::POST)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(line);
        let resp = match r.send().await {
            Ok(r) => r,
            Err(e) => return self.fail(&posted, format!("cannot reach it: {e}")).await,
        };
        let status = resp.status();
        if posted.method.as_deref() == Some("initialize") && status.is_success() {
            if let Some(s) = resp
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
            {
                self.lock().session = Some(s.to_owned());
            }
        }
        if status == reqwest::StatusCode::ACCEPTED {
            if posted.id.is_some() {
                self.fail(
                    &posted,
                    "it answered a request with 202 (no response)".into(),
                )
                .await;
            }
            return;
        }
        if status == reqwest::StatusCode::NOT_FOUND && self.lock().session.is_some() {
            self.fail(&posted, "it no longer knows the session (404)".into())
                .await;
            // The session is gone: end the proxy's side as a server that
            // exited would.
            self.gone.notify_one();
            return;
        }
        if !status.is_success() {
            let body = read_bounded(resp, 4096).await.unwrap_or_default();
            return self
                .fail(
                    &posted,
                    format!(
                        "it answered {status}: {}",
                        String::from_utf8_lossy(&body).trim()
                    ),
                )
                .await;
        }
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        if !sse {
            match read_bounded(resp, MESSAGE_BYTES_MAX).await {
                Ok(body) => {
                    self.learn_version(&posted, &body);
                    let text = String::from_utf8_lossy(&body);
                    let answered = posted
                        .id
                        .as_ref()
                        .is_some_and(|id| is_response_to(&text, id));
                    if !body.is_empty() {
                        self.emit(&body).await;
                    }
                    if posted.id.is_some() && !answered {
                        self.fail(&posted, "its answer was not the response".into())
                            .await;
                    }
                }
                Err(e) => self.fail(&posted, e.to_string()).await,
            }
            return;
        }
        let mut parser = Parser::new(MESSAGE_BYTES_MAX);
        let mut resp = resp;
        let mut attempts = 0;
        loop {
            match self.read_stream(resp, &mut parser, &posted).await {
                Ok(true) => return,
                Ok(false) | Err(_) if posted.id.is_none() => return,
                Ok(false) | Err(_) => {}
            }
            let Some(last) = parser.last_id().map(str::to_owned) else {
                return self
                    .fail(&posted, "its event stream ended before the response".into())
                    .await;
            };
            attempts += 1;
            if attempts > RESUME_ATTEMPTS_MAX {
                return self
                    .fail(&posted, format!("its event stream broke {attempts} times"))
                    .await;
            }
            parser.reset_partial();
            resp = match self.resume(&last, parser.retry_ms()).await {
                Ok(r) => r,
                Err(e) => {
                    return self
                        .fail(&posted, format!("resuming its event stream: {e}"))
                        .await
                }
            };
        }
    }

    /// Read an event stream until it ends; `Ok(true)` once it carried the
    /// response to `posted`.
    async fn read_stream(
        &self,
        mut resp: reqwest::Response,
        parser: &mut Parser,
        posted: &Posted,
    ) -> Result<bool> {
        loop {
            let Some(chunk) = resp.chunk().await? else {
                return Ok(false);
            };
            for ev in parser.push(&chunk)? {
                if ev.data.is_empty() || ev.kind != "message" {
                    continue;
                }
                let answered = posted
                    .id
                    .as_ref()
                    .is_some_and(|id| is_response_to(&ev.data, id));
                if answered {
                    self.learn_version(posted, ev.data.as_bytes());
                }
                self.emit(ev.data.as_bytes()).await;
                if answered {
                    // The rest of the stream (its end) is read, so that the
                    // connection goes back to the pool: a response dropped
                    // unread closes it, and the next message would pay for a
                    // new connection.
                    let _ = tokio::time::timeout(DRAIN_AFTER_RESPONSE, async {
                        while let Ok(Some(_)) = resp.chunk().await {}
                    })
                    .await;
                    return Ok(true);
                }
            }
        }
    }

    /// GET with `Last-Event-ID`, after the wait the server asked for.
    async fn resume(&self, last: &str, retry_ms: Option<u64>) -> Result<reqwest::Response> {
        let wait = retry_ms.map_or(RESUME_WAIT_DEFAULT, Duration::from_millis);
        tokio::time::sleep(wait.min(RESUME_WAIT_MAX)).await;
        let resp = self
            .request(reqwest::Method::GET)
            .header("accept", "text/event-stream")
            .header("last-event-id", last)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("the server answered {}", resp.status());
        }
        Ok(resp)
    }

    /// The protocol version the server chose, from its `initialize` answer.
    fn learn_version(&self, posted: &Posted, body: &[u8]) {
        if posted.method.as_deref() != Some("initialize") {
            return;
        }
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if let Some(version) = v.pointer("/result/protocolVersion").and_then(Value::as_str) {
            // A header value: visible ASCII only.
            if version.len() <= 64 && version.bytes().all(|b| b.is_ascii_graphic()) {
                self.lock().version = version.to_owned();
            }
        }
    }

    /// The standalone stream: the server's own requests and notifications,
    /// resumed when it breaks; a server without one answers 405.
    async fn standalone(self) {
        let mut parser = Parser::new(MESSAGE_BYTES_MAX);
        let none = Posted {
            id: None,
            method: None,
        };
        let mut failures = 0;
        loop {
            let mut r = self
                .request(reqwest::Method::GET)
                .header("accept", "text/event-stream");
            parser.reset_partial();
            if let Some(last) = parser.last_id() {
                r = r.header("last-event-id", last.to_owned());
            }
            match r.send().await {
                Ok(resp) if resp.status().is_success() => {
                    let before = parser.last_id().map(str::to_owned);
                    let _ = self.read_stream(resp, &mut parser, &none).await;
                    // A stream that ends at once, again and again, is a
                    // failure too: it is not reopened forever.
                    if parser.last_id().map(str::to_owned) == before {
                        failures += 1;
                    } else {
                        failures = 0;
                    }
                }
                Ok(resp) if resp.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED => return,
                Ok(_) | Err(_) => failures += 1,
            }
            if failures > RESUME_ATTEMPTS_MAX || self.to_proxy.is_closed() {
                return;
            }
            let wait = parser
                .retry_ms()
                .map_or(RESUME_WAIT_DEFAULT, Duration::from_millis);
            tokio::time::sleep(wait.min(RESUME_WAIT_MAX) * (failures + 1)).await;
        }
    }

    /// End the server's session (DELETE), if it gave one.
    async fn close(&self) {
        if self.lock().session.is_none() {
            return;
        }
        let r = self.request(reqwest::Method::DELETE).send();
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, r).await;
    }
}

/// Whether `data` is a response (no method) with id `id`.
fn is_response_to(data: &str, id: &Value) -> bool {
    let v: Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(_) => return false,
    };
    v.get("method").is_none()
        && v.get("id") == Some(id)
        && (v.get("result").is_some() || v.get("error").is_some())
}

/// A response's body, refused past `limit` bytes.
async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > limit {
            bail!("an answer of more than {limit} bytes");
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Wait for the link of a session that ended to close the upstream's
/// session, for at most the proxy's drain grace; then stop it.
pub(crate) async fn settle(mut link: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(writ_mcp::proxy::DRAIN_GRACE, &mut link)
        .await
        .is_err()
    {
        link.abort();
    }
}
