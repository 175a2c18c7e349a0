//! `writ mcp-proxy` and `writ policy mcp-schema`: the stdio, process and HTTP
//! wiring around `writ-mcp`, which holds the protocol and the decisions.
//!
//! # Tuning (The MCP proxy's pipes)
//!
//! The proxy reads and writes its client's pipes through the reactor on one
//! thread: tokio's `stdin`/`stdout` hand every read and write over from a
//! blocking thread. Each message and its newline go out in one write.

mod front;
mod remote;
mod schema;
mod server;
mod stdio;
mod upstream;

pub use schema::{mcp_schema, McpSchemaArgs};

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use tokio::io::BufReader;
use writ_api::{AuthorizeRequest, AuthorizeResponse, FinishRequest};
use writ_artifact::pop::PopUse;
use writ_artifact::{
    canonical, Clock, Denial, Grant, Jwks, KeyRing, NoStatus, ReasonCode, SystemClock,
    VerifyOptions,
};
use writ_exec::{Confinement, Enforcement};
use writ_mcp::govern::{
    server_resource, Authority, Governor, Session, Unavailable, SESSION_ACTION,
};
use writ_mcp::proxy::End;

use self::server::{
    scope_of, server_confinement, server_env, session_facts, spawn_server, Asked, ServerProcess,
};
use self::stdio::{client_input, client_output, StdioFlags, UntilStopped, PIPE_BUFFER_BYTES};
use crate::client::Client;
use crate::holder::Holder;
use crate::step::{proceed, Step};
use crate::{print_denial, Exit, Global};

/// Lifetime of a session's writ when not given: it is a lease, renewed
/// before it ends, so this bounds how long a session outlives a proxy that
/// died without finishing it.
const SESSION_LIFETIME_SECS_DEFAULT: u64 = 300;
/// After a signal, how long the server has to exit before it is killed.
const SIGNAL_GRACE: Duration = Duration::from_secs(1);

#[derive(Args, Debug)]
#[command(after_long_help = "\
An MCP client launches writ mcp-proxy in place of a stdio MCP server: in \
the client's configuration, put `writ mcp-proxy --name NAME --` before the \
server's command. WRIT_TOKEN (the agent's token) and WRIT_SERVER name the \
authority; writs are issued for the audience mcp:NAME.

At start-up the proxy asks for the session's writ (action \
Action::\"mcp_session\", resource McpServer::\"NAME\", started on issue) and \
keeps it alive as a lease (renewed before it ends, ended by a revocation); \
a denied session exits with the reason's status before the server starts.

Every tools/call becomes a child of the session: action \
Action::\"call_tool\", resource Tool::\"NAME/TOOL\", the arguments in \
context.arguments (and context.request.arguments), started on issue, \
verified offline, forwarded, and its outcome recorded (result digest, \
isError). A denied call is answered with a tool error `denied: <reason>: \
<message>` and never reaches the server; an authority that cannot be \
reached denies with authority_unavailable. Every other request that makes \
the server act or disclose is decided the same way (resources/read and \
subscribe: read_resource, subscribe_resource on Resource::\"NAME/URI\"; \
prompts/get: get_prompt; completion/complete: complete; logging/setLevel: \
set_log_level; any other method: mcp_request on McpMethod::\"NAME/METHOD\"), \
a denial being a JSON-RPC error -32001; so is every request the server \
sends the client (server_request), but ping. tools/list and resources/list \
are filtered to what a probe (the same request, not started) allows. \
initialize, ping, the four lists, resources/unsubscribe and notifications \
pass unchanged; a message whose keys another JSON parser reads \
differently (two keys equal under Unicode case folding) is refused.

The server gets HOME, LANG, LC_ALL, PATH, TERM, TZ, USER and --env-allow \
variables, the session's writ (WRIT_PARENT), WRIT_SERVER and a credential \
of the session (WRIT_TOKEN): never the agent's token. With --read, \
--write or --confine it runs confined by Landlock to that scope, which the \
session's writ binds.

SIGTERM, SIGINT and SIGHUP end the session as the client closing its \
input would (a call still waiting gets the server's answer, or an error \
if the server exits first, and a finish record), are passed on to the \
server, and the server is killed if it has not exited 1 s later; the \
session's finish records the signal.

Exit status: 0 when the client closed the session; 1 when the server \
exited first (pending requests got JSON-RPC errors) or on an operating \
error; 128 + N after signal N (143 for SIGTERM); a reason code's status \
when the session was denied.

A remote server (the Streamable HTTP transport): --upstream URL in place \
of the command. Without --listen the client speaks stdio to the proxy (a \
bridge, with the agent's token as above); with --listen ADDR the proxy \
serves MCP clients over Streamable HTTP at http(s)://ADDR/mcp, and each \
client session is a session writ of its own, asked for with the client's \
bearer token (the caller is the principal; a session is a root \
execution). The client's token goes to the authority only; the upstream \
gets --upstream-token-file's, or none. Sessions, event streams and their \
resumption (Last-Event-ID) are the proxy's on each side.

Example (Claude Desktop, Cursor, ... configuration):
  \"command\": \"writ\", \"args\": [\"mcp-proxy\", \"--name\", \"filesystem\", \"--\",
    \"npx\", \"-y\", \"@modelcontextprotocol/server-filesystem\", \"/data\"]

Example (a remote server, served to HTTP clients over TLS):
  writ mcp-proxy --name docs --upstream https://mcp.example.com/mcp \\
    --upstream-token-file /etc/writ/docs.token --listen 127.0.0.1:8443 \\
    --tls-cert front.pem --tls-key front.key")]
pub struct McpProxyArgs {
    /// The server's name in resources (`Tool::"NAME/TOOL"`) and the audience
    /// (`mcp:NAME`).
    #[arg(long)]
    pub name: String,
    /// Lifetime of the session's writ (a lease, renewed before it ends), in
    /// seconds; at most 3600. Default 300, or what the parent has left when
    /// run under a writ (WRIT_PARENT).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=writ_artifact::WRIT_LIFETIME_SECS_MAX))]
    pub lifetime: Option<u64>,
    /// How long the authority may be unreachable before the session's writ
    /// is taken for lost (every later call is then denied). A request waits
    /// for the authority's answer this long (at least 5 s); a call whose
    /// decision does not come by then is denied with authority_unavailable.
    /// At most 300.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=crate::exec::UNREACHABLE_GRACE_MAX))]
    pub unreachable_grace: u64,
    /// Another environment variable the server gets (repeatable; HOME,
    /// LANG, LC_ALL, PATH, TERM, TZ and USER always). Nothing else of the
    /// proxy's environment reaches it: WRIT_TOKEN, WRIT_SERVER and
    /// WRIT_PARENT are the proxy's own, and the server gets the session's
    /// writ, the authority's address and a credential of the session in
    /// them, never the agent's token.
    #[arg(long = "env-allow", value_name = "NAME", value_parser = crate::exec::env_allow_name)]
    pub env_allow: Vec<String>,
    /// Confine the server with Landlock to the paths of --read and --write
    /// (and the read-only system trees), with no TCP unless --net. Implied
    /// by --read and --write. The session's writ binds the scope.
    #[arg(long)]
    pub confine: bool,
    #[command(flatten)]
    pub scope: crate::exec::ScopeFlags,
    /// Run a confined server even where the kernel enforces only part of
    /// the scope (see `writ exec --allow-partial-enforcement`).
    #[arg(long)]
    pub allow_partial_enforcement: bool,
    /// The server's command and arguments (a stdio server), unless
    /// --upstream names a remote one.
    #[arg(
        last = true,
        required_unless_present = "upstream",
        value_name = "SERVER_CMD"
    )]
    pub argv: Vec<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// A remote MCP server over Streamable HTTP, and the proxy's own HTTP side.
#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// The URL of a remote MCP server (the Streamable HTTP transport), in
    /// place of a command: `https://...` (or `http://` on this machine).
    /// Without --listen the client speaks stdio to the proxy (a bridge).
    #[arg(long, value_name = "URL",
          conflicts_with_all = ["argv", "confine", "read", "write", "net", "allow_partial_enforcement", "env_allow"])]
    pub upstream: Option<String>,
    /// Certificate authorities (PEM) to trust for --upstream besides the
    /// system's.
    #[arg(long, value_name = "FILE", requires = "upstream")]
    pub upstream_ca: Option<std::path::PathBuf>,
    /// A file holding the bearer token the proxy presents to --upstream
    /// (its own credential there; the MCP client's token is never passed
    /// on).
    #[arg(long, value_name = "FILE", requires = "upstream")]
    pub upstream_token_file: Option<std::path::PathBuf>,
    /// Serve MCP clients over Streamable HTTP at ADDR (`127.0.0.1:8080`),
    /// endpoint /mcp, in front of --upstream. Each client session is a
    /// session of its own, authorized with the client's bearer token.
    #[arg(long, value_name = "ADDR", requires = "upstream")]
    pub listen: Option<std::net::SocketAddr>,
    /// The certificate chain (PEM) --listen serves HTTPS with.
    #[arg(long, value_name = "FILE", requires_all = ["listen", "tls_key"])]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires_all = ["listen", "tls_cert"])]
    pub tls_key: Option<std::path::PathBuf>,
    /// An Origin a browser-based client may call --listen from
    /// (repeatable). A request with any other Origin header is refused
    /// (DNS rebinding); one without is taken.
    #[arg(long = "allow-origin", value_name = "ORIGIN", requires = "listen")]
    pub allow_origin: Vec<String>,
    /// The URL MCP clients reach --listen at (`https://mcp.example.com/mcp`):
    /// the front then serves its OAuth protected-resource metadata (RFC
    /// 9728) and names it in every 401, so clients find where to get a
    /// token. Register the token issuer with `writ issuer add --audience URL`.
    #[arg(long, value_name = "URL", requires = "listen")]
    pub resource_url: Option<String>,
    /// An OAuth authorization server (its issuer URL) whose tokens the
    /// authority takes for --resource-url (repeatable), named in the
    /// metadata.
    #[arg(
        long = "authorization-server",
        value_name = "URL",
        requires = "resource_url"
    )]
    pub authorization_servers: Vec<String>,
    /// Client sessions --listen holds at once; more are refused (503).
    #[arg(long, value_name = "N", default_value_t = 64, requires = "listen",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub sessions_max: u64,
    /// A client session with no request for this long is ended, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600, requires = "listen",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub session_idle: u64,
}

/// The authority over HTTP.
struct Http(Client);

impl Authority for Http {
    async fn authorize(&self, req: AuthorizeRequest) -> Result<AuthorizeResponse, Unavailable> {
        let reply = self
            .0
            .post("/v1/authorize", &req)
            .await
            .map_err(|e| Unavailable(format!("{e:#}")))?;
        match reply.parse::<AuthorizeResponse>() {
            Ok(r) => Ok(r),
            // 400, 401, 413, 5xx: a denial all the same (fail closed).
            Err(_) => Ok(AuthorizeResponse::Deny {
                reason: reply.reason().unwrap_or(ReasonCode::AuthorityUnavailable),
                message: format!(
                    "the authority answered {}: {}",
                    reply.status,
                    reply.message()
                ),
                log_index: None,
            }),
        }
    }

    async fn finish(&self, jti: &str, outcome: FinishRequest) -> Result<(), Unavailable> {
        let reply = self
            .0
            .post(&format!("/v1/executions/{jti}/finish"), &outcome)
            .await
            .map_err(|e| Unavailable(format!("{e:#}")))?;
        if reply.ok() {
            Ok(())
        } else {
            Err(Unavailable(reply.message()))
        }
    }
}

fn denied(d: Denial) -> Result<Exit> {
    print_denial(d.reason, &d.message);
    Ok(Exit::Denied(d.reason))
}

async fn keyring(client: &Client) -> Result<KeyRing, String> {
    let r = client
        .get("/.well-known/jwks.json")
        .await
        .map_err(|e| format!("{e:#}"))?;
    if !r.ok() {
        return Err(r.message());
    }
    let jwks: Jwks = r.parse().map_err(|e| e.to_string())?;
    KeyRing::from_jwks(&jwks).map_err(|e| format!("the authority's keys: {e}"))
}

pub async fn mcp_proxy(g: &Global, a: McpProxyArgs) -> Result<Exit> {
    if a.remote.upstream.is_some() {
        return remote::mcp_remote(g, a).await;
    }
    let g = &g.local_default();
    // The agent's token is in this process: the server it starts (same
    // user) must not read it from /proc.
    writ_exec::guard::undumpable()?;
    if !g.can_authenticate() {
        bail!(
            "writ mcp-proxy needs the agent's token (WRIT_TOKEN or --token), or a server on the \
             data dir's Unix socket (writ serve --unix)"
        );
    }
    let client = Client::new(&g.server, g.token.clone()).answering_within(
        crate::lease::answer_limit(Duration::from_secs(a.unreachable_grace)),
    );
    let audience = format!("mcp:{}", a.name);
    let keys = match keyring(&client).await {
        Ok(k) => k,
        Err(e) => return denied(Denial::new(ReasonCode::AuthorityUnavailable, e)),
    };
    // The server's executable, opened once: what runs is what was found
    // now (a file replaced at its path later does not change it).
    let path_var = std::env::var_os("PATH");
    let exe = writ_exec::Executable::open(&a.argv[0], path_var.as_deref())
        .with_context(|| format!("the MCP server {}", a.argv[0]))?;
    let asked = server_confinement(Asked {
        confine: a.confine,
        read: &a.scope.read,
        write: &a.scope.write,
        net: a.scope.net,
    })?;
    let required = proceed!(required_enforcement(&a, asked.as_ref()));
    // The session's holder key: the session's writ and every call's are
    // bound to it (docs/spec/holder.md).
    let holder = Holder::generate(&audience)?;
    let proxy = Proxy {
        request: json!({"server": a.name, "argv": a.argv}),
        parent: crate::parent_from_env(),
        credential: true,
        a: Arc::new(a),
        http: Http(client.clone()),
        client,
        audience,
        holder,
        asked,
        required,
        started: Instant::now(),
    };
    let session = match proxy.open_session(&keys).await? {
        Ok(s) => s,
        Err(d) => return denied(d),
    };
    let jti = session.grant.jti();
    eprintln!(
        "writ mcp-proxy: session {jti} (audience {})",
        proxy.audience
    );
    // From here SIGTERM, SIGINT and SIGHUP end the session in order (an MCP
    // client stops a stdio server with SIGTERM after closing its input)
    // rather than killing the proxy with the session still open.
    let mut signals = crate::signals::Forwarder::new()?;
    let env = server_env(
        &proxy.a.env_allow,
        &g.server,
        &session.writ,
        session.credential,
    );
    let mut child = proceed!(proxy.start_server(exe, &session.grant, &env).await);
    let (Some(server_in), Some(server_out)) = (child.stdin.take(), child.stdout.take()) else {
        bail!("the MCP server's pipes were not set up");
    };
    let gov = Arc::new(Governor::new(
        Http(proxy.client.clone()),
        Session {
            server: proxy.a.name.clone(),
            audience: proxy.audience.clone(),
            parent: Some(jti.to_owned()),
            keys,
            holder: proxy.holder.key(),
        },
        Box::new(SystemClock),
    ));
    let lease = proxy.keep_lease(&gov, &session.grant);
    // Reading a pipe through the reactor makes it non-blocking, and that
    // flag belongs to the pipe, not to this process: put it back on exit.
    let _stdio_flags = StdioFlags::save();
    let (end, received) = serve(&gov, server_in, server_out, &mut signals, &child).await;
    lease.abort();
    proxy.finish(&gov, jti, &mut child, end, received).await
}

/// Whether the kernel must confine the server, and how far: not at all for
/// an unconfined server; else fully, or what this kernel gives with
/// `--allow-partial-enforcement`.
fn required_enforcement(a: &McpProxyArgs, asked: Option<&Confinement>) -> Step<Enforcement> {
    let Some(c) = asked else {
        return Ok(Ok(Enforcement::None));
    };
    let available = c.available();
    if !a.allow_partial_enforcement && available != Enforcement::Full {
        return denied(Denial::new(
            ReasonCode::IntegrityFailure,
            format!(
                "full enforcement of the server's scope is required but this kernel gives {}; \
                 --allow-partial-enforcement runs with what it gives",
                available.as_str()
            ),
        ))
        .map(Err);
    }
    Ok(Ok(if a.allow_partial_enforcement {
        available
    } else {
        Enforcement::Full
    }))
}

/// One proxy session's fixed parts, shared by its steps.
struct Proxy {
    a: Arc<McpProxyArgs>,
    /// What the session's writ binds as its request.
    request: serde_json::Value,
    /// The session's parent execution (none: a root).
    parent: Option<String>,
    /// Whether the session's writ comes with a credential for the server.
    credential: bool,
    http: Http,
    client: Client,
    /// `mcp:NAME`.
    audience: String,
    holder: Holder,
    /// The confinement asked for the server, if any.
    asked: Option<Confinement>,
    required: Enforcement,
    started: Instant,
}

/// The session's writ, verified.
struct Opened {
    writ: String,
    grant: Grant,
    /// The server's own credential, for what it asks the authority.
    credential: Option<String>,
}

impl Proxy {
    /// Ask for the session's writ (a root execution, or a child of
    /// WRIT_PARENT, started on issue) and verify it offline.
    async fn open_session(&self, keys: &KeyRing) -> Result<Result<Opened, Denial>> {
        let a = &self.a;
        let session_request = &self.request;
        let parent = self.parent.clone();
        let lifetime = match (&parent, a.lifetime) {
            (_, Some(l)) => Some(l),
            (None, None) => Some(SESSION_LIFETIME_SECS_DEFAULT),
            (Some(_), None) => None,
        };
        let req = AuthorizeRequest {
            environment: session_facts(
                self.asked.is_some(),
                self.required,
                a.allow_partial_enforcement,
            ),
            scope: self.asked.as_ref().map(scope_of).unwrap_or_default(),
            parent,
            lifetime_secs: lifetime,
            start: true,
            // The server's own credential: what it asks the authority is a
            // child of the session.
            credential: self.credential,
            cnf: self.holder.cnf(),
            ..AuthorizeRequest::new(
                SESSION_ACTION,
                server_resource(&a.name),
                session_request.clone(),
                self.audience.clone(),
            )
        };
        let (writ, jti, credential) = match self.http.authorize(req).await {
            Err(Unavailable(m)) => {
                return Ok(Err(Denial::new(ReasonCode::AuthorityUnavailable, m)))
            }
            Ok(AuthorizeResponse::Deny {
                reason, message, ..
            }) => return Ok(Err(Denial::new(reason, message))),
            Ok(AuthorizeResponse::Allow {
                writ,
                jti,
                credential,
                ..
            }) => (writ, jti, credential),
        };
        let opts = VerifyOptions::enforcing(
            SystemClock.now_unix_secs(),
            self.audience.clone(),
            canonical::digest_value(session_request).map_err(anyhow::Error::msg)?,
            self.holder.check(&jti),
        );
        let grant = match writ_artifact::verify(&writ, keys, &opts, &NoStatus) {
            Ok(v) if v.jti() == jti => v.grant(),
            Ok(_) => Err(Denial::new(ReasonCode::MalformedArtifact, "jti mismatch")),
            Err(d) => Err(d),
        };
        let grant = match grant {
            Ok(g) => g,
            Err(d) => {
                self.not_started(&jti, None, format!("{}: {}", d.reason, d.message))
                    .await;
                return Ok(Err(d));
            }
        };
        Ok(Ok(Opened {
            writ,
            grant,
            credential,
        }))
    }

    /// Record, as the session's finish, that its server never started.
    async fn not_started(&self, jti: &str, duration_ms: Option<u64>, why: String) {
        let _ = self
            .http
            .finish(
                jti,
                FinishRequest {
                    duration_ms: duration_ms.unwrap_or_default(),
                    terminated: Some(format!("not started: {why}")),
                    pop: self.holder.proof(jti, PopUse::Finish),
                    ..Default::default()
                },
            )
            .await;
    }

    /// Start the server, confined to what the session's `grant` grants.
    async fn start_server(
        &self,
        exe: writ_exec::Executable,
        grant: &Grant,
        env: &[(String, String)],
    ) -> Step<ServerProcess> {
        let argv = &self.a.argv;
        match spawn_server(&exe, grant, self.asked.as_ref(), self.required, argv, env) {
            Ok(c) => Ok(Ok(c)),
            Err(e) => {
                let ms = self.started.elapsed().as_millis() as u64;
                self.not_started(
                    grant.jti(),
                    Some(ms),
                    format!("cannot run {}: {e}", argv[0]),
                )
                .await;
                if matches!(e, writ_exec::ExecError::Confinement(_)) {
                    return denied(Denial::new(ReasonCode::IntegrityFailure, e.to_string()))
                        .map(Err);
                }
                bail!("cannot run the MCP server {}: {e}", argv[0]);
            }
        }
    }

    /// The session's lease: renewed, and watched for revocation; when it
    /// ends, every later call is denied.
    fn keep_lease(&self, gov: &Arc<Governor<Http>>, grant: &Grant) -> tokio::task::JoinHandle<()> {
        let (gov, client, grant) = (Arc::clone(gov), self.client.clone(), grant.clone());
        let grace = Duration::from_secs(self.a.unreachable_grace);
        let lease_holder = self.holder.clone();
        tokio::spawn(async move {
            let stop = crate::lease::govern(client, lease_holder, grant, grace).await;
            eprintln!(
                "writ mcp-proxy: the session's writ ended: {}",
                stop.describe()
            );
            gov.end(Denial::new(stop.reason(), stop.record()));
        })
    }

    /// Wait for the server to exit, record the session's finish, and exit
    /// as the session ended.
    async fn finish(
        &self,
        gov: &Governor<Http>,
        jti: &str,
        child: &mut ServerProcess,
        end: End,
        received: Option<(i32, Instant)>,
    ) -> Result<Exit> {
        let drain = match received {
            Some((_, at)) => SIGNAL_GRACE.saturating_sub(at.elapsed()),
            None => writ_mcp::proxy::DRAIN_GRACE,
        };
        let status = match tokio::time::timeout(drain, &mut child.exited).await {
            Ok(s) => s.ok().and_then(Result::ok),
            Err(_) => {
                child.kill();
                (&mut child.exited).await.ok().and_then(Result::ok)
            }
        };
        let code = status.and_then(|s| s.code());
        let signal = status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s));
        let outcome = FinishRequest {
            exit_status: code.map(i64::from).or(signal.map(|s| 128 + i64::from(s))),
            duration_ms: self.started.elapsed().as_millis() as u64,
            terminated: match (&end, received) {
                (_, Some((sig, _))) => Some(format!(
                    "writ mcp-proxy received {}",
                    crate::signals::name(sig)
                )),
                (End::ClientClosed, None) => None,
                (End::ServerExited { pending }, None) => Some(format!(
                    "the MCP server exited with {pending} requests pending"
                )),
            },
            ..Default::default()
        };
        if let Err(e) = gov.finish(jti, outcome).await {
            eprintln!("writ: warning: the finish of session {jti} was not recorded: {e}");
        }
        if let Some((sig, _)) = received {
            return Ok(Exit::Code(128u8.saturating_add(sig as u8)));
        }
        match end {
            End::ClientClosed => Ok(Exit::Ok),
            End::ServerExited { pending } => {
                eprintln!(
                    "writ mcp-proxy: the MCP server exited ({}) before the client closed; {pending} pending requests were answered with errors",
                    match (code, signal) {
                        (Some(c), _) => format!("status {c}"),
                        (None, Some(s)) => format!("signal {s}"),
                        _ => "status unknown".into(),
                    }
                );
                Ok(Exit::Failed)
            }
        }
    }
}

/// Run the proxy between this process's standard input and output and the
/// server's pipes until the session ends. A signal reads as the client
/// closing its side (calls in flight are answered, by the server or with
/// an error, and recorded; the server's input is closed), is passed on to
/// the server, and the server is killed if it outlives [`SIGNAL_GRACE`].
/// How the session ended, and the signal received with when, if one was.
async fn serve(
    gov: &Arc<Governor<Http>>,
    server_in: tokio::process::ChildStdin,
    server_out: tokio::process::ChildStdout,
    signals: &mut crate::signals::Forwarder,
    child: &ServerProcess,
) -> (End, Option<(i32, Instant)>) {
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let run = writ_mcp::proxy::run(
        Arc::clone(gov),
        UntilStopped::new(
            BufReader::with_capacity(PIPE_BUFFER_BYTES, client_input()),
            stopped,
        ),
        client_output(),
        server_in,
        BufReader::with_capacity(PIPE_BUFFER_BYTES, server_out),
    );
    tokio::pin!(run);
    let mut stop = Some(stop);
    let mut received: Option<(i32, Instant)> = None;
    let mut killed = false;
    let end = loop {
        tokio::select! {
            end = &mut run => break end,
            sig = signals.recv(), if received.is_none() => {
                eprintln!(
                    "writ mcp-proxy: {} received: ending the session",
                    crate::signals::name(sig)
                );
                received = Some((sig, Instant::now()));
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                child.pass_on(sig);
            }
            _ = tokio::time::sleep(SIGNAL_GRACE), if received.is_some() && !killed => {
                killed = true;
                child.kill();
            }
        }
    };
    (end, received)
}
