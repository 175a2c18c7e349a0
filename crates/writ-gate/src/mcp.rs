//! `writ mcp-proxy` and `writ policy mcp-schema`: the stdio, process and HTTP
//! wiring around `writ-mcp`, which holds the protocol and the decisions.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncWrite, BufReader};
use writ_api::{AuthorizeRequest, AuthorizeResponse, FinishRequest};
use writ_artifact::pop::PopUse;
use writ_artifact::{
    canonical, Clock, Denial, Jwks, KeyRing, NoStatus, ReasonCode, SystemClock, VerifyOptions,
};
use writ_exec::{Confinement, Enforcement};
use writ_mcp::framing::{read_message, write_message, MESSAGE_BYTES_MAX};
use writ_mcp::govern::{
    server_resource, Authority, Governor, Session, Unavailable, SESSION_ACTION,
};
use writ_mcp::proxy::End;

use crate::client::Client;
use crate::holder::Holder;
use crate::{print_denial, Exit, Global};

/// Read buffer of each pipe.
const PIPE_BUFFER_BYTES: usize = 256 * 1024;
/// How long `writ policy mcp-schema` waits for the server's answers.
const SCHEMA_TIMEOUT: Duration = Duration::from_secs(60);
/// Lifetime of a session's writ when not given: it is a lease, renewed
/// before it ends, so this bounds how long a session outlives a proxy that
/// died without finishing it.
const SESSION_LIFETIME_SECS_DEFAULT: u64 = 300;
/// After a signal, how long the server has to exit before it is killed.
const SIGNAL_GRACE: Duration = Duration::from_secs(1);
/// Pages of `tools/list` read at most.
const TOOL_PAGES_MAX: usize = 100;

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

Example (Claude Desktop, Cursor, ... configuration):
  \"command\": \"writ\", \"args\": [\"mcp-proxy\", \"--name\", \"filesystem\", \"--\",
    \"npx\", \"-y\", \"@modelcontextprotocol/server-filesystem\", \"/data\"]")]
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
    /// A path the confined server may read (repeatable; must exist).
    #[arg(long)]
    pub read: Vec<PathBuf>,
    /// A path the confined server may write (repeatable; must exist).
    #[arg(long)]
    pub write: Vec<PathBuf>,
    /// The confined server may use the network.
    #[arg(long)]
    pub net: bool,
    /// Run a confined server even where the kernel enforces only part of
    /// the scope (see `writ exec --allow-partial-enforcement`).
    #[arg(long)]
    pub allow_partial_enforcement: bool,
    /// The server's command and arguments.
    #[arg(last = true, required = true, value_name = "SERVER_CMD")]
    pub argv: Vec<String>,
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
    let http = Http(client.clone());

    // The session: a root execution (or a child of WRIT_PARENT), started.
    let session_request = json!({"server": a.name, "argv": a.argv});
    // The server's executable, opened once: what runs is what was found
    // now (a file replaced at its path later does not change it).
    let path_var = std::env::var_os("PATH");
    let exe = writ_exec::Executable::open(&a.argv[0], path_var.as_deref())
        .with_context(|| format!("the MCP server {}", a.argv[0]))?;
    let confined = server_confinement(&a)?;
    let required = match &confined {
        None => Enforcement::None,
        Some(c) => {
            let available = c.available();
            if !a.allow_partial_enforcement && available != Enforcement::Full {
                return denied(Denial::new(
                    ReasonCode::IntegrityFailure,
                    format!(
                        "full enforcement of the server's scope is required but this kernel gives {}; \
                         --allow-partial-enforcement runs with what it gives",
                        available.as_str()
                    ),
                ));
            }
            if a.allow_partial_enforcement {
                available
            } else {
                Enforcement::Full
            }
        }
    };
    let parent = crate::parent_from_env();
    let lifetime = match (&parent, a.lifetime) {
        (_, Some(l)) => Some(l),
        (None, None) => Some(SESSION_LIFETIME_SECS_DEFAULT),
        (Some(_), None) => None,
    };
    // The session's holder key: the session's writ and every call's are
    // bound to it (docs/spec/holder.md).
    let holder = Holder::generate(&audience)?;
    let req = AuthorizeRequest {
        action: SESSION_ACTION.into(),
        resource: server_resource(&a.name),
        context: Default::default(),
        request: session_request.clone(),
        environment: session_facts(confined.is_some(), required, a.allow_partial_enforcement),
        scope: confined.as_ref().map(scope_of).unwrap_or_default(),
        audience: audience.clone(),
        parent,
        lifetime_secs: lifetime,
        start: true,
        // The server's own credential: what it asks the authority is a
        // child of the session.
        credential: true,
        delegates: Vec::new(),
        cnf: holder.cnf(),
    };
    let started = Instant::now();
    let (writ, jti, credential) = match http.authorize(req).await {
        Err(Unavailable(m)) => return denied(Denial::new(ReasonCode::AuthorityUnavailable, m)),
        Ok(AuthorizeResponse::Deny {
            reason, message, ..
        }) => return denied(Denial::new(reason, message)),
        Ok(AuthorizeResponse::Allow {
            writ,
            jti,
            credential,
            ..
        }) => (writ, jti, credential),
    };
    let opts = VerifyOptions {
        now_unix_secs: SystemClock.now_unix_secs(),
        skew_secs: writ_mcp::govern::SKEW_SECS,
        audience: Some(audience.clone()),
        request_digest: Some(
            canonical::digest_value(&session_request).map_err(anyhow::Error::msg)?,
        ),
        environment_digest: None,
        accepted_policies: None,
        check_spent: false,
        holder: holder.check(&jti),
    };
    let session = match writ_artifact::verify(&writ, &keys, &opts, &NoStatus) {
        Ok(v) if v.jti() == jti => v,
        Ok(_) | Err(_) => {
            let d = writ_artifact::verify(&writ, &keys, &opts, &NoStatus)
                .err()
                .unwrap_or_else(|| Denial::new(ReasonCode::MalformedArtifact, "jti mismatch"));
            let _ = http
                .finish(
                    &jti,
                    FinishRequest {
                        terminated: Some(format!("not started: {}: {}", d.reason, d.message)),
                        pop: holder.proof(&jti, PopUse::Finish),
                        ..Default::default()
                    },
                )
                .await;
            return denied(d);
        }
    };
    eprintln!("writ mcp-proxy: session {jti} (audience {audience})");

    // From here SIGTERM, SIGINT and SIGHUP end the session in order (an MCP
    // client stops a stdio server with SIGTERM after closing its input)
    // rather than killing the proxy with the session still open.
    let mut signals = crate::signals::Forwarder::new()?;
    let env = server_env(&a, g, &writ, credential);
    // The kernel confines the server to what the session's writ grants.
    let granted = confined.map(|mut c| {
        let scope = &session.claims().writ.scope;
        c.read = scope.read.iter().map(PathBuf::from).collect();
        c.write = scope.write.iter().map(PathBuf::from).collect();
        c.net = scope.net;
        c
    });
    let mut child = match spawn_server(&exe, granted.as_ref(), required, &a.argv, &env) {
        Ok(c) => c,
        Err(e) => {
            let _ = http
                .finish(
                    &jti,
                    FinishRequest {
                        duration_ms: started.elapsed().as_millis() as u64,
                        terminated: Some(format!("not started: cannot run {}: {e}", a.argv[0])),
                        pop: holder.proof(&jti, PopUse::Finish),
                        ..Default::default()
                    },
                )
                .await;
            if matches!(e, writ_exec::ExecError::Confinement(_)) {
                return denied(Denial::new(ReasonCode::IntegrityFailure, e.to_string()));
            }
            bail!("cannot run the MCP server {}: {e}", a.argv[0]);
        }
    };
    drop(exe);
    let (Some(server_in), Some(server_out)) = (child.stdin.take(), child.stdout.take()) else {
        bail!("the MCP server's pipes were not set up");
    };

    let gov = Arc::new(Governor::new(
        http,
        Session {
            server: a.name.clone(),
            audience,
            parent: Some(jti.clone()),
            keys,
            holder: holder.key(),
        },
        Box::new(SystemClock),
    ));
    // The session's lease: renewed, and watched for revocation.
    let lease = {
        let (gov, client, jti, exp) = (
            Arc::clone(&gov),
            client.clone(),
            jti.clone(),
            session.claims().exp,
        );
        let grace = Duration::from_secs(a.unreachable_grace);
        let lease_holder = holder.clone();
        tokio::spawn(async move {
            let stop = crate::lease::govern(client, lease_holder, jti, exp, grace).await;
            eprintln!(
                "writ mcp-proxy: the session's writ ended: {}",
                stop.describe()
            );
            gov.end(Denial::new(stop.reason(), stop.record()));
        })
    };

    // Reading a pipe through the reactor makes it non-blocking, and that
    // flag belongs to the pipe, not to this process: put it back on exit.
    let _stdio_flags = StdioFlags::save();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let run = writ_mcp::proxy::run(
        Arc::clone(&gov),
        UntilStopped::new(
            BufReader::with_capacity(PIPE_BUFFER_BYTES, client_input()),
            stopped,
        ),
        client_output(),
        server_in,
        BufReader::with_capacity(PIPE_BUFFER_BYTES, server_out),
    );
    tokio::pin!(run);
    // A signal reads as the client closing its side (calls in flight are
    // answered, by the server or with an error, and recorded; the server's
    // input is closed), is passed on to the server, and the server is killed
    // if it outlives SIGNAL_GRACE.
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
                pass_on(&child, sig);
            }
            _ = tokio::time::sleep(SIGNAL_GRACE), if received.is_some() && !killed => {
                killed = true;
                child.kill();
            }
        }
    };
    lease.abort();
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
        duration_ms: started.elapsed().as_millis() as u64,
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
    if let Err(e) = gov.finish(&jti, outcome).await {
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

// ------------------------------------------------------------ mcp-schema

#[derive(Args, Debug)]
pub struct McpSchemaArgs {
    /// The server's name (as given to `writ mcp-proxy --name`).
    #[arg(long)]
    pub name: String,
    /// Write the fragment here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Another environment variable the server gets (repeatable; as for
    /// `writ mcp-proxy`, the server gets HOME, LANG, LC_ALL, PATH, TERM, TZ
    /// and USER, and nothing else of this command's environment).
    #[arg(long = "env-allow", value_name = "NAME", value_parser = crate::exec::env_allow_name)]
    pub env_allow: Vec<String>,
    /// The server's command and arguments.
    #[arg(last = true, required = true, value_name = "SERVER_CMD")]
    pub argv: Vec<String>,
}

async fn request<W: AsyncWrite + Unpin, R: AsyncBufRead + Unpin>(
    w: &mut W,
    r: &mut R,
    id: u64,
    method: &str,
    params: Value,
) -> Result<Value> {
    let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    write_message(w, writ_mcp::message::to_line(&msg)).await?;
    loop {
        let Some(raw) = read_message(r, MESSAGE_BYTES_MAX).await? else {
            bail!("the MCP server closed its output before answering {method}");
        };
        let m = writ_mcp::message::Message::parse(raw);
        match m.kind {
            writ_mcp::message::Kind::Response { id: rid } if rid == json!(id) => {
                if let Some(e) = m.value.get("error") {
                    bail!("the MCP server answered {method} with an error: {e}");
                }
                return Ok(m.value.get("result").cloned().unwrap_or(Value::Null));
            }
            writ_mcp::message::Kind::Request { id: rid, .. } => {
                // We offer no client capabilities.
                let e = writ_mcp::message::error_response(&rid, -32601, "method not found");
                write_message(w, writ_mcp::message::to_line(&e)).await?;
            }
            _ => {}
        }
    }
}

async fn list_tools(argv: &[String], env_allow: &[String]) -> Result<Vec<Value>> {
    let mut allow: Vec<&str> = writ_exec::DEFAULT_ENV_ALLOW.to_vec();
    allow.extend(env_allow.iter().map(String::as_str));
    let env = allow
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k, v)));
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run the MCP server {}", argv[0]))?;
    let (Some(mut w), Some(out)) = (child.stdin.take(), child.stdout.take()) else {
        bail!("the MCP server's pipes were not set up");
    };
    let mut r = BufReader::with_capacity(PIPE_BUFFER_BYTES, out);
    let init = request(
        &mut w,
        &mut r,
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "writ", "version": env!("CARGO_PKG_VERSION")}}),
    )
    .await?;
    if init
        .get("capabilities")
        .and_then(|c| c.get("tools"))
        .is_none()
    {
        bail!("the MCP server does not offer tools (no `tools` capability)");
    }
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    write_message(&mut w, writ_mcp::message::to_line(&note)).await?;
    let mut tools = Vec::new();
    let mut cursor: Option<Value> = None;
    for page in 0..TOOL_PAGES_MAX {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let res = request(&mut w, &mut r, 2 + page as u64, "tools/list", params).await?;
        if let Some(t) = res.get("tools").and_then(Value::as_array) {
            tools.extend(t.iter().cloned());
        }
        cursor = res.get("nextCursor").filter(|c| !c.is_null()).cloned();
        if cursor.is_none() {
            break;
        }
    }
    drop(w);
    if tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    Ok(tools)
}

pub async fn mcp_schema(g: &Global, a: McpSchemaArgs) -> Result<Exit> {
    let tools = tokio::time::timeout(SCHEMA_TIMEOUT, list_tools(&a.argv, &a.env_allow))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the MCP server did not answer initialize and tools/list within {SCHEMA_TIMEOUT:?}"
            )
        })??;
    let f = writ_mcp::schema::fragment(&a.name, &tools);
    for w in &f.warnings {
        eprintln!("warning: {w}");
    }
    match &a.out {
        Some(p) => {
            std::fs::write(p, &f.text).with_context(|| format!("cannot write {}", p.display()))?
        }
        None if g.json => crate::print_json(
            &json!({"schema": f.text, "tools": tools.len(), "warnings": f.warnings}),
        )?,
        None => print!("{}", f.text),
    }
    Ok(Exit::Ok)
}

/// The file status flags of standard input and output as they were, put
/// back when dropped. `O_NONBLOCK` is a flag of the open file, shared with
/// every process that holds it (the shell that started the proxy, a command
/// that reads the same pipe after it).
struct StdioFlags([Option<rustix::fs::OFlags>; 2]);

impl StdioFlags {
    fn save() -> StdioFlags {
        StdioFlags([
            rustix::fs::fcntl_getfl(std::io::stdin()).ok(),
            rustix::fs::fcntl_getfl(std::io::stdout()).ok(),
        ])
    }
}

impl Drop for StdioFlags {
    fn drop(&mut self) {
        if let Some(f) = self.0[0] {
            let _ = rustix::fs::fcntl_setfl(std::io::stdin(), f);
        }
        if let Some(f) = self.0[1] {
            let _ = rustix::fs::fcntl_setfl(std::io::stdout(), f);
        }
    }
}

/// Pass `sig` on to the server (it runs in a process group of its own, and
/// a supervisor's SIGTERM is sent to the proxy alone).
fn pass_on(child: &ServerProcess, sig: i32) {
    let _ = writ_exec::signal_group(child.pid, sig);
}

/// The MCP server, started by [`spawn_server`].
struct ServerProcess {
    pid: u32,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: Option<tokio::process::ChildStdout>,
    exited: tokio::sync::oneshot::Receiver<std::io::Result<std::process::ExitStatus>>,
}

impl ServerProcess {
    /// SIGKILL to the server's process group.
    fn kill(&self) {
        let _ = writ_exec::signal_group(self.pid, 9);
    }
}

/// The confinement asked for the server, if any (`--confine`, `--read`,
/// `--write`): the paths as `writ exec` takes them, the default read-only
/// system trees.
fn server_confinement(a: &McpProxyArgs) -> Result<Option<Confinement>> {
    if !(a.confine || !a.read.is_empty() || !a.write.is_empty()) {
        if a.net {
            bail!("--net applies to a confined server: give --confine (or --read/--write) too");
        }
        return Ok(None);
    }
    let abs = |v: &[PathBuf]| -> Result<Vec<PathBuf>> {
        v.iter()
            .map(|p| {
                crate::exec::scope_path(p)
                    .with_context(|| format!("--read/--write {}", p.display()))
            })
            .collect()
    };
    let c = Confinement {
        read: abs(&a.read)?,
        write: abs(&a.write)?,
        net: a.net,
        system_read: writ_exec::DEFAULT_SYSTEM_READ
            .iter()
            .map(PathBuf::from)
            .collect(),
        system_write: writ_exec::DEFAULT_SYSTEM_WRITE
            .iter()
            .map(PathBuf::from)
            .collect(),
    };
    c.check_paths().map_err(anyhow::Error::msg)?;
    Ok(Some(c))
}

/// What the session's writ binds of the server's confinement: nothing for
/// an unconfined server; else the level the kernel enforces, and whether
/// less than full was accepted (a policy can refuse either).
fn session_facts(
    confined: bool,
    level: Enforcement,
    partial: bool,
) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    if confined {
        m.insert("enforcement".into(), json!(level.as_str()));
        if partial {
            m.insert("allow_partial_enforcement".into(), json!(true));
        }
    }
    m
}

fn scope_of(c: &Confinement) -> writ_artifact::Scope {
    let strings = |v: &[PathBuf]| v.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    writ_artifact::Scope {
        read: strings(&c.read),
        write: strings(&c.write),
        net: c.net,
    }
}

/// The server's environment: the allow-listed variables of the proxy's,
/// and the session's writ, the authority's address and the session's
/// credential, never the agent's token.
fn server_env(
    a: &McpProxyArgs,
    g: &Global,
    writ: &str,
    credential: Option<String>,
) -> Vec<(String, String)> {
    let mut allow: Vec<&str> = writ_exec::DEFAULT_ENV_ALLOW.to_vec();
    allow.extend(a.env_allow.iter().map(String::as_str));
    allow.sort_unstable();
    allow.dedup();
    let mut env: Vec<(String, String)> = allow
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect();
    env.push(("WRIT_PARENT".into(), writ.to_owned()));
    env.push(("WRIT_SERVER".into(), g.server.clone()));
    if let Some(c) = credential {
        env.push(("WRIT_TOKEN".into(), c));
    }
    env
}

/// Start the server: the measured executable, with `env` only, in its own
/// process group, with pipes for its standard input and output, under the
/// terminal-injection filter and the parent-death signal, and confined to
/// `confinement` when given.
fn spawn_server(
    exe: &writ_exec::Executable,
    confinement: Option<&Confinement>,
    required: Enforcement,
    argv: &[String],
    env: &[(String, String)],
) -> Result<ServerProcess, writ_exec::ExecError> {
    let launcher = writ_exec::Launcher::prepare(exe, confinement, required)?;
    let (tell, exited) = tokio::sync::oneshot::channel();
    let launched = launcher.launch(exe, confinement, required, argv, env, true, move |s| {
        let _ = tell.send(s);
    })?;
    let io = |e: std::io::Error| writ_exec::ExecError::Io(e.to_string());
    Ok(ServerProcess {
        pid: launched.pid,
        stdin: launched
            .stdin
            .map(tokio::process::ChildStdin::from_std)
            .transpose()
            .map_err(io)?,
        stdout: launched
            .stdout
            .map(tokio::process::ChildStdout::from_std)
            .transpose()
            .map_err(io)?,
        exited,
    })
}

/// The client's input, ended early once `stopped` fires: to the proxy
/// loop, a stop reads as the client closing its side. A stop sender that is
/// dropped unsent never ends it.
struct UntilStopped<R> {
    inner: R,
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
    ended: bool,
}

impl<R> UntilStopped<R> {
    fn new(inner: R, stopped: tokio::sync::oneshot::Receiver<()>) -> UntilStopped<R> {
        UntilStopped {
            inner,
            stopped: Some(stopped),
            ended: false,
        }
    }

    fn ended(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        use std::future::Future as _;
        if let Some(rx) = self.stopped.as_mut() {
            if let std::task::Poll::Ready(r) = std::pin::Pin::new(rx).poll(cx) {
                self.stopped = None;
                self.ended = r.is_ok();
            }
        }
        self.ended
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for UntilStopped<R> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.ended(cx) {
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<R: AsyncBufRead + Unpin> AsyncBufRead for UntilStopped<R> {
    fn poll_fill_buf(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.ended(cx) {
            return std::task::Poll::Ready(Ok(&[]));
        }
        std::pin::Pin::new(&mut this.inner).poll_fill_buf(cx)
    }

    fn consume(self: std::pin::Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        if !this.ended {
            std::pin::Pin::new(&mut this.inner).consume(amt);
        }
    }
}

/// The proxy's standard input. A pipe (what MCP clients give a server) is
/// read through the reactor; anything else through tokio's `stdin`, whose
/// every read is handed over from a blocking thread (that hand-over cost
/// each message tens of microseconds here).
fn client_input() -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    use std::os::fd::AsFd;
    let piped = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| tokio::net::unix::pipe::Receiver::from_file(std::fs::File::from(fd)));
    match piped {
        Ok(p) => Box::new(p),
        Err(_) => Box::new(tokio::io::stdin()),
    }
}

/// The proxy's standard output, written through the reactor when it is a
/// pipe (see [`client_input`]).
fn client_output() -> Box<dyn tokio::io::AsyncWrite + Unpin + Send> {
    use std::os::fd::AsFd;
    let piped = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| tokio::net::unix::pipe::Sender::from_file(std::fs::File::from(fd)));
    match piped {
        Ok(p) => Box::new(p),
        Err(_) => Box::new(tokio::io::stdout()),
    }
}
