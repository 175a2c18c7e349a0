//! `writ mcp-proxy --upstream URL`: a remote MCP server over Streamable
//! HTTP, governed as a stdio server is. Without `--listen` the MCP client
//! speaks stdio to the proxy (the bridge); with it, HTTP (`front`). Either
//! way each client session is one session writ (`Action::"mcp_session"` on
//! `McpServer::"NAME"`, request `{"server", "upstream"}`), and every
//! message goes through the same proxy loop and governor as on stdio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use tokio::io::BufReader;
use writ_api::FinishRequest;
use writ_artifact::{Denial, ReasonCode, SystemClock};
use writ_exec::Enforcement;
use writ_mcp::govern::{Governor, Session};
use writ_mcp::proxy::End;

use super::stdio::{client_input, client_output, StdioFlags, UntilStopped, PIPE_BUFFER_BYTES};
use super::upstream::Upstream;
use super::{denied, keyring, Http, McpProxyArgs, Proxy};
use crate::client::Client;
use crate::holder::Holder;
use crate::{Exit, Global};

/// The longest upstream token file read.
const TOKEN_FILE_BYTES_MAX: u64 = 16 * 1024;

pub(super) async fn mcp_remote(g: &Global, a: McpProxyArgs) -> Result<Exit> {
    let g = g.local_default();
    writ_exec::guard::undumpable()?;
    let Some(url) = a.remote.upstream.clone() else {
        bail!("--upstream is required here");
    };
    let token = match &a.remote.upstream_token_file {
        Some(p) => Some(read_token_file(p)?),
        None => None,
    };
    let upstream = Upstream::new(&url, a.remote.upstream_ca.as_deref(), token)?;
    let a = Arc::new(a);
    if let Some(addr) = a.remote.listen {
        return super::front::serve(g, a, upstream, addr).await;
    }
    if !g.can_authenticate() {
        bail!(
            "writ mcp-proxy needs the agent's token (WRIT_TOKEN or --token), or a server on the \
             data dir's Unix socket (writ serve --unix)"
        );
    }
    let live = match open(&g, &a, g.token.clone(), crate::parent_from_env()).await? {
        Ok(l) => l,
        Err(d) => return denied(d),
    };
    eprintln!(
        "writ mcp-proxy: session {} (audience {}) for {url}",
        live.jti, live.proxy.audience
    );
    let mut signals = crate::signals::Forwarder::new()?;
    let (server_in, server_out, link) = upstream.connect();
    let _stdio_flags = StdioFlags::save();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let run = writ_mcp::proxy::run(
        Arc::clone(&live.gov),
        UntilStopped::new(
            BufReader::with_capacity(PIPE_BUFFER_BYTES, client_input()),
            stopped,
        ),
        client_output(),
        server_in,
        server_out,
    );
    tokio::pin!(run);
    let mut stop = Some(stop);
    let mut received = None;
    let end = loop {
        tokio::select! {
            end = &mut run => break end,
            sig = signals.recv(), if received.is_none() => {
                eprintln!("writ mcp-proxy: {} received: ending the session", crate::signals::name(sig));
                received = Some(sig);
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
            }
        }
    };
    super::upstream::settle(link).await;
    live.finish(&end, received).await;
    Ok(match (received, end) {
        (Some(sig), _) => Exit::Code(128u8.saturating_add(sig as u8)),
        (None, End::ClientClosed) => Exit::Ok,
        (None, End::ServerExited { pending }) => {
            eprintln!(
                "writ mcp-proxy: the upstream MCP server ended the session before the client did; {pending} pending requests were answered with errors"
            );
            Exit::Failed
        }
    })
}

/// The bearer token in `path`: its first line, from a file only its owner
/// can read.
fn read_token_file(path: &std::path::Path) -> Result<String> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let f = std::fs::File::open(path)
        .with_context(|| format!("--upstream-token-file {}", path.display()))?;
    let mode = f.metadata()?.mode();
    if mode & 0o077 != 0 {
        bail!(
            "--upstream-token-file {}: readable by others (mode {:o}); chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    let mut text = String::new();
    f.take(TOKEN_FILE_BYTES_MAX).read_to_string(&mut text)?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!(
            "--upstream-token-file {}: no token on its first line (visible ASCII)",
            path.display()
        );
    }
    Ok(token)
}

/// A governed session with a remote server, opened: its governor, the
/// lease keeping its writ, and what its finish needs.
pub(super) struct Live {
    pub proxy: Proxy,
    pub gov: Arc<Governor<Http>>,
    pub jti: String,
    /// Ends when the session's writ does (a revocation, a refused renewal).
    pub lease: tokio::task::JoinHandle<()>,
}

/// Open a session for the caller whose `token` is given (none: the Unix
/// socket's peer): its writ, verified offline, and its lease.
pub(super) async fn open(
    g: &Global,
    a: &Arc<McpProxyArgs>,
    token: Option<String>,
    parent: Option<String>,
) -> Result<Result<Live, Denial>> {
    let client = Client::new(&g.server, token).answering_within(crate::lease::answer_limit(
        Duration::from_secs(a.unreachable_grace),
    ));
    let keys = match keyring(&client).await {
        Ok(k) => k,
        Err(e) => return Ok(Err(Denial::new(ReasonCode::AuthorityUnavailable, e))),
    };
    let audience = format!("mcp:{}", a.name);
    let holder = Holder::generate(&audience)?;
    let proxy = Proxy {
        request: json!({"server": a.name, "upstream": a.remote.upstream}),
        parent,
        credential: false,
        a: Arc::clone(a),
        http: Http(client.clone()),
        client,
        audience,
        holder,
        asked: None,
        required: Enforcement::None,
        started: Instant::now(),
    };
    let session = match proxy.open_session(&keys).await? {
        Ok(s) => s,
        Err(d) => return Ok(Err(d)),
    };
    let jti = session.grant.jti().to_owned();
    let gov = Arc::new(Governor::new(
        Http(proxy.client.clone()),
        Session {
            server: a.name.clone(),
            audience: proxy.audience.clone(),
            parent: Some(jti.clone()),
            keys,
            holder: proxy.holder.key(),
        },
        Box::new(SystemClock),
    ));
    let lease = proxy.keep_lease(&gov, &session.grant);
    Ok(Ok(Live {
        proxy,
        gov,
        jti,
        lease,
    }))
}

impl Live {
    /// Record the session's finish: how it ended.
    pub async fn finish(self, end: &End, signal: Option<i32>) {
        self.lease.abort();
        let outcome = FinishRequest {
            duration_ms: self.proxy.started.elapsed().as_millis() as u64,
            terminated: match (end, signal) {
                (_, Some(sig)) => Some(format!(
                    "writ mcp-proxy received {}",
                    crate::signals::name(sig)
                )),
                (End::ClientClosed, None) => None,
                (End::ServerExited { pending }, None) => Some(format!(
                    "the upstream MCP server ended the session with {pending} requests pending"
                )),
            },
            ..Default::default()
        };
        if let Err(e) = self.gov.finish(&self.jti, outcome).await {
            eprintln!(
                "writ: warning: the finish of session {} was not recorded: {e}",
                self.jti
            );
        }
    }
}
