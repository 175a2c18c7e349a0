//! A small HTTP client for the writ API.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// How long a connection to the server may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Set to `1` to let a client send its token to a server that is not on
/// this machine over plain HTTP (refused otherwise).
pub const INSECURE_PLAIN_HTTP_ENV: &str = "WRIT_INSECURE_PLAIN_HTTP";

#[derive(Clone)]
pub struct Client {
    /// `Err`: why no request can be sent (a TLS setting that cannot be
    /// used, a cleartext URL off this machine): every request fails with it.
    http: std::result::Result<reqwest::Client, String>,
    /// The server as named (`https://...`, `http://...`, `unix:PATH`).
    base: String,
    /// The URL requests are sent to (`http://localhost` over a Unix socket).
    url: String,
    token: Option<String>,
    /// How long an answer may take (for a stream: its headers); none by
    /// default. The enforcement points set one: a server that accepts the
    /// connection and never answers must not hold a decision forever.
    answer_within: Option<Duration>,
}

/// A response: status plus JSON body.
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.body.clone())
            .with_context(|| format!("unexpected answer from server: {}", self.body))
    }
    /// The error message of a non-2xx reply.
    pub fn message(&self) -> String {
        self.body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| self.body.to_string())
    }
    pub fn reason(&self) -> Option<writ_artifact::ReasonCode> {
        self.body
            .get("reason")
            .and_then(Value::as_str)
            .and_then(writ_artifact::ReasonCode::parse)
    }
}

impl Client {
    /// A client of the server at `base`. An `https://` server is checked
    /// against the system's roots and `WRIT_CA`, and `WRIT_CLIENT_CERT` /
    /// `WRIT_CLIENT_KEY` are presented when set (`writ_tls::client`);
    /// `http://` is for this machine only, unless `WRIT_INSECURE_PLAIN_HTTP=1`.
    /// `unix:PATH` is the server's Unix socket (`writ serve --unix PATH`),
    /// where the kernel names the caller and no token is needed.
    pub fn new(base: &str, token: Option<String>) -> Client {
        let base = base.trim_end_matches('/').to_owned();
        let (http, url) = match base.strip_prefix(UNIX_SCHEME) {
            Some(path) => (
                http_builder()
                    .unix_socket(path)
                    .no_proxy()
                    .build()
                    .map_err(|e| format!("building the HTTP client: {e}")),
                "http://localhost".to_owned(),
            ),
            None => (http_for(&base), base.clone()),
        };
        Client {
            http,
            base,
            url,
            token,
            answer_within: None,
        }
    }

    /// The same client, failing every request not answered within `limit`.
    pub fn answering_within(mut self, limit: Duration) -> Client {
        self.answer_within = Some(limit);
        self
    }

    /// `f`, bounded by the client's answer limit.
    async fn bounded<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        match self.answer_within {
            None => f.await,
            Some(limit) => tokio::time::timeout(limit, f).await.map_err(|_| {
                anyhow!(
                    "the writ server at {} did not answer within {} s",
                    self.base,
                    limit.as_secs_f64()
                )
            })?,
        }
    }

    fn req(&self, m: reqwest::Method, path: &str) -> Result<reqwest::RequestBuilder> {
        let http = self.http.as_ref().map_err(|e| anyhow!("{e}"))?;
        let r = http.request(m, format!("{}{path}", self.url));
        Ok(match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        })
    }

    async fn send(&self, r: Result<reqwest::RequestBuilder>) -> Result<Reply> {
        self.bounded(self.send_unbounded(r?)).await
    }

    async fn send_unbounded(&self, r: reqwest::RequestBuilder) -> Result<Reply> {
        let resp = r.send().await.map_err(|e| {
            let cause = with_root_cause(&e);
            anyhow!(
                "cannot reach the writ server at {}: {cause} {}",
                self.base,
                unreachable_hint(&cause)
            )
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Reply { status, body })
    }

    pub async fn post<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<Reply> {
        self.send(self.req(reqwest::Method::POST, path).map(|r| r.json(body)))
            .await
    }

    pub async fn get(&self, path: &str) -> Result<Reply> {
        self.send(self.req(reqwest::Method::GET, path)).await
    }

    /// A GET whose body is read by the caller as it arrives (event streams).
    pub async fn open(&self, path: &str) -> Result<reqwest::Response> {
        let r = self
            .req(reqwest::Method::GET, path)?
            .header("accept", "text/event-stream");
        self.bounded(async {
            r.send().await.map_err(|e| {
                anyhow!(
                    "cannot reach the writ server at {}: {}",
                    self.base,
                    with_root_cause(&e)
                )
            })
        })
        .await
    }
}

/// `e`, and the innermost error under it when that says more (reqwest's own
/// text, "error sending request", does not say that the kernel refused the
/// connection, for example).
fn with_root_cause(e: &reqwest::Error) -> String {
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let (top, root) = (e.to_string(), root.to_string());
    if top.contains(&root) {
        top
    } else {
        format!("{top}: {root}")
    }
}

/// What to try when the authority cannot be reached. A certificate that
/// does not verify says so. Inside a governed program (`WRIT_PARENT` is
/// set) the usual cause is the run's own scope: Landlock refuses TCP to a
/// run without `--net`.
fn unreachable_hint(cause: &str) -> &'static str {
    if cause.contains("certificate") {
        "(the server's TLS certificate does not verify: set WRIT_CA to a PEM file of the CA that issued it)"
    } else if std::env::var_os("WRIT_PARENT").is_some() {
        "(inside a governed program: its run needs `--net` to reach the authority)"
    } else {
        "(start it with `writ serve`, or set WRIT_SERVER)"
    }
}

/// The data dir's Unix socket (`writ serve --unix` with no path).
pub const LOCAL_SOCKET: &str = "writ.sock";

/// How a Unix socket is named as a server (`unix:/run/writ/writ.sock`).
pub const UNIX_SCHEME: &str = "unix:";

/// The socket a local enforcement point uses when neither a server nor a
/// token is set: the data dir's `writ.sock`, if a server listens there.
///
/// The server behind it is trusted only if the kernel says it runs as this
/// user (or root) and is not sandboxed: a program writ governs (which has
/// this user's uid, and may write where the data dir is) could otherwise
/// put a socket of its own there, answer with writs and keys of its own,
/// and have a later run skip the real authority.
pub fn local_socket(dir: &std::path::Path) -> Option<String> {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::FileTypeExt as _;
    // Absolute: the programs a runner starts get it as WRIT_SERVER.
    let path = std::fs::canonicalize(dir).ok()?.join(LOCAL_SOCKET);
    if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
        return None;
    }
    let stream = std::os::unix::net::UnixStream::connect(&path).ok()?;
    let me = rustix::process::geteuid().as_raw();
    match writ_exec::peer::PeerProcess::of(stream.as_fd()) {
        Ok(p) if !p.sandboxed && (p.uid == me || p.uid == 0) => {
            Some(format!("{UNIX_SCHEME}{}", path.display()))
        }
        Ok(p) => {
            eprintln!(
                "writ: warning: not using {}: the process serving it (pid {}, uid {}) {}",
                path.display(),
                p.pid,
                p.uid,
                if p.sandboxed {
                    "runs sandboxed, as a program writ governs does"
                } else {
                    "runs as another user"
                }
            );
            None
        }
        Err(e) => {
            eprintln!("writ: warning: not using {}: {e}", path.display());
            None
        }
    }
}

fn http_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        // A redirect could carry the token elsewhere (or from https to http):
        // the API never redirects, so none is followed.
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(256)
        // Below the server's header timeout (20 s), which closes idle
        // connections: the client lets go of them first.
        .pool_idle_timeout(Duration::from_secs(15))
        .connect_timeout(CONNECT_TIMEOUT)
}

/// The HTTP client for `base`, or why there is none.
fn http_for(base: &str) -> std::result::Result<reqwest::Client, String> {
    let builder = http_builder();
    let url = reqwest::Url::parse(base).map_err(|e| format!("WRIT_SERVER {base:?}: {e}"))?;
    match url.scheme() {
        "https" => writ_tls::client::http_client(builder)
            .map_err(|e| format!("TLS for {base}: {e}")),
        // Never through a proxy (HTTP_PROXY would get the token in
        // cleartext): plain HTTP is for this machine.
        "http" if is_loopback(&url) || insecure_allowed() => builder
            .no_proxy()
            .build()
            .map_err(|e| format!("building the HTTP client: {e}")),
        "http" => Err(format!(
            "refusing to send a token to {base} in cleartext: use https:// (writ serve --tls-cert), or set {INSECURE_PLAIN_HTTP_ENV}=1"
        )),
        other => Err(format!("WRIT_SERVER {base:?}: scheme {other}:// is neither https nor http")),
    }
}

/// `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(|h| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        h.eq_ignore_ascii_case("localhost")
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

pub(crate) fn insecure_allowed() -> bool {
    std::env::var(INSECURE_PLAIN_HTTP_ENV).is_ok_and(|v| v == "1")
}
