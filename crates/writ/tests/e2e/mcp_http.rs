//! `writ mcp-proxy` over the MCP Streamable HTTP transport: a remote MCP
//! server made with the TypeScript SDK (`McpServer` behind
//! `StreamableHTTPServerTransport`, with its event store for resumability),
//! the TypeScript SDK's `StreamableHTTPClientTransport` and the Python SDK's
//! `streamable_http_client` as clients, a real `writ serve` as the
//! authority, certificates from `openssl`, and TCP relays the tests cut to
//! break event streams mid-call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::pki::Pki;
use crate::common::*;
use serde_json::{json, Value};

const SERVER: &str = include_str!("fixtures/mcp_http_server.mjs");
const TS_CLIENT: &str = include_str!("fixtures/mcp_http_client.mjs");
const PY_CLIENT: &str = include_str!("fixtures/mcp_http_client.py");
const PY_STDIO_CLIENT: &str = include_str!("fixtures/mcp_client.py");
/// The credential the proxy presents upstream.
const UPSTREAM_TOKEN: &str = "upstream-credential-of-the-proxy";

const POLICY: &str = r#"@id("sessions")
permit (principal, action == Action::"mcp_session", resource);
@id("tools")
permit (principal, action == Action::"call_tool", resource)
when { resource in [Tool::"remote/echo", Tool::"remote/slow"] };
@id("no-secrets")
forbid (principal, action == Action::"call_tool", resource)
when { context.arguments has text && context.arguments.text like "*secret*" };
"#;

fn python() -> PathBuf {
    python_venv(
        "pyenv-mcp",
        "mcp",
        "from mcp import ClientSession, StdioServerParameters; from mcp.client.stdio import stdio_client",
    )
}

/// A child killed on drop.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The remote MCP server; `tls`: its certificate and key.
pub(crate) struct Upstream {
    _proc: Proc,
    port: u16,
    auth_log: PathBuf,
    slow_mark: PathBuf,
    https: bool,
}

impl Upstream {
    pub(crate) fn start(dir: &Path, tls: Option<(&Path, &Path)>) -> Upstream {
        let prefix = crate::mcp::node_prefix();
        let script = prefix.join("writ-e2e-http-server.mjs");
        std::fs::write(&script, SERVER).unwrap();
        let auth_log = dir.join("upstream-auth.log");
        let slow_mark = dir.join("slow-started");
        let mut c = Command::new("node");
        c.arg(&script)
            .env("AUTH_LOG", &auth_log)
            .env("SLOW_MARK", &slow_mark)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some((cert, key)) = tls {
            c.env("TLS_CERT", cert).env("TLS_KEY", key);
        }
        let mut child = c.spawn().expect("node runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("port: {line:?}"));
        Upstream {
            _proc: Proc(child),
            port,
            auth_log,
            slow_mark,
            https: tls.is_some(),
        }
    }

    fn url_via(&self, port: u16) -> String {
        let (scheme, host) = if self.https {
            ("https", "localhost")
        } else {
            ("http", "127.0.0.1")
        };
        format!("{scheme}://{host}:{port}/mcp")
    }

    pub(crate) fn url(&self) -> String {
        self.url_via(self.port)
    }

    /// Every Authorization header the server was sent.
    fn auth_seen(&self) -> Vec<String> {
        std::fs::read_to_string(&self.auth_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn token_file(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let p = dir.join("upstream-token");
    std::fs::write(&p, format!("{UPSTREAM_TOKEN}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// `writ mcp-proxy --listen` in front of `upstream_url`; its address.
fn front(srv: &Server, dir: &Path, upstream_url: &str, extra: &[&str]) -> (Proc, String) {
    front_on(&srv.url, dir, upstream_url, free_port(), extra)
}

/// [`front`] on `port`, asking the authority at `authority` (a URL).
pub(crate) fn front_on(
    authority: &str,
    dir: &Path,
    upstream_url: &str,
    port: u16,
    extra: &[&str],
) -> (Proc, String) {
    let addr = format!("127.0.0.1:{port}");
    let tokens = token_file(dir);
    let mut args = vec![
        "mcp-proxy",
        "--name",
        "remote",
        "--listen",
        &addr,
        "--upstream",
        upstream_url,
        "--upstream-token-file",
        tokens.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let child = Command::new(writ_bin())
        .args(&args)
        .env("WRIT_SERVER", authority)
        .env_remove("WRIT_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_for("the proxy listening", Duration::from_secs(15), || {
        TcpStream::connect(&addr).is_ok()
    });
    (p, addr)
}

/// Run the Node script `source` (as `name`, where the MCP SDK resolves)
/// with `job` on its standard input.
pub(crate) fn node_json(name: &str, source: &str, job: &Value) -> std::process::Output {
    let script = crate::mcp::node_prefix().join(name);
    std::fs::write(&script, source).unwrap();
    let mut c = Command::new("node")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    c.wait_with_output().unwrap()
}

/// Run an HTTP client (`ts` or `py`) against `url` with `token`.
pub(crate) fn client(
    lang: &str,
    url: &str,
    token: &str,
    ca: Option<&Path>,
    steps: &[Value],
) -> Vec<Value> {
    let job = json!({"url": url, "token": token, "steps": steps, "ca": ca});
    let out = if lang == "ts" {
        node_json("writ-e2e-http-client.mjs", TS_CLIENT, &job)
    } else {
        run_script(&python(), PY_CLIENT, &job)
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the {lang} client failed:\n{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{lang} client output ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

pub(crate) fn list() -> Value {
    json!({"op": "list_tools"})
}

pub(crate) fn echo(text: &str) -> Value {
    json!({"op": "call", "name": "echo", "arguments": {"text": text}})
}

fn entries(srv: &Server) -> Vec<Value> {
    srv.log_entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .collect()
}

/// The allowed session decisions of the log.
pub(crate) fn sessions(srv: &Server) -> Vec<Value> {
    entries(srv)
        .into_iter()
        .filter(|e| {
            e["type"] == "decision"
                && e["action"] == "Action::\"mcp_session\""
                && e["decision"] == "allow"
        })
        .collect()
}

pub(crate) fn finished(srv: &Server, jti: &str) -> bool {
    entries(srv)
        .iter()
        .any(|e| e["type"] == "execution_finish" && e["jti"] == jti)
}

pub(crate) fn setup() -> (Server, String, tempfile::TempDir) {
    let srv = Server::start();
    activate_policy(&srv, "remote", POLICY);
    let agent = srv.add_principal("Agent::\"planner\"");
    (srv, agent, tempfile::tempdir().unwrap())
}

/// What both clients see and what the log and the upstream hold.
fn governed_session(lang: &str) {
    let (srv, agent, dir) = setup();
    let up = Upstream::start(dir.path(), None);
    let (_proxy, addr) = front(&srv, dir.path(), &up.url(), &[]);
    let out = client(
        lang,
        &format!("http://{addr}/mcp"),
        &agent,
        None,
        &[list(), echo("hello"), echo("a secret")],
    );
    assert_eq!(out[0]["tools"], json!(["echo", "slow"]), "{out:?}");
    assert_eq!(
        out[1],
        json!({"isError": false, "text": "hello"}),
        "{out:?}"
    );
    assert_eq!(out[2]["isError"], true, "{out:?}");
    assert!(
        out[2]["text"]
            .as_str()
            .unwrap()
            .starts_with("denied: policy_denied: "),
        "{out:?}"
    );
    // The session is a root execution of the caller; the calls its children.
    let s = sessions(&srv);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0]["principal"], "Agent::\"planner\"");
    assert!(s[0]["parent"].is_null(), "{:?}", s[0]);
    assert_eq!(
        s[0]["context"]["request"]["upstream"],
        json!(up.url()),
        "{:?}",
        s[0]
    );
    let sjti = s[0]["jti"].as_str().unwrap().to_owned();
    let calls: Vec<Value> = entries(&srv)
        .into_iter()
        .filter(|e| e["type"] == "decision" && e["resource"] == "Tool::\"remote/echo\"")
        .filter(|e| e["probe"] != true)
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls.iter().all(|c| c["parent"] == sjti.as_str()),
        "{calls:?}"
    );
    assert_eq!(calls[0]["decision"], "allow");
    assert_eq!(calls[1]["reason"], "policy_denied");
    assert!(finished(&srv, calls[0]["jti"].as_str().unwrap()));
    // The client ended its session (DELETE): the session's finish.
    wait_for("the session's finish", Duration::from_secs(15), || {
        finished(&srv, &sjti)
    });
    // The upstream saw the proxy's credential only, never the agent's token.
    let seen = up.auth_seen();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|a| a == &format!("Bearer {UPSTREAM_TOKEN}")),
        "{seen:?}"
    );
}

#[test]
fn typescript_sdk_client_over_streamable_http_is_governed() {
    governed_session("ts");
}

#[test]
fn python_client_over_streamable_http_is_governed() {
    governed_session("py");
}

pub(crate) fn post(addr: &str, headers: &[(&str, &str)], body: &Value) -> Resp {
    let mut h = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    h.extend_from_slice(headers);
    http(addr, "POST", "/mcp", &h, body.to_string().as_bytes())
}

pub(crate) fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})
}

#[test]
fn the_http_front_refuses_strangers_other_callers_and_two_meanings() {
    let (srv, agent, dir) = setup();
    let other = srv.add_principal("Agent::\"other\"");
    let up = Upstream::start(dir.path(), None);
    let (_proxy, addr) = front(&srv, dir.path(), &up.url(), &[]);
    let bearer = |t: &str| format!("Bearer {t}");
    // No token: 401 with a challenge, and nothing reaches the upstream.
    let r = post(&addr, &[], &initialize());
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    // A token the authority does not know: 401, with the reason.
    let r = post(
        &addr,
        &[("authorization", "Bearer writ_nobody")],
        &initialize(),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("unauthenticated"), "{}", r.text());
    // An Origin not allowed (DNS rebinding): 403.
    let a = bearer(&agent);
    let r = post(
        &addr,
        &[("authorization", &a), ("origin", "http://evil.example")],
        &initialize(),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    // No session, not initialize: 400.
    let r = post(
        &addr,
        &[("authorization", &a)],
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(up.auth_seen().is_empty(), "{:?}", up.auth_seen());

    // A session of the agent.
    let r = post(&addr, &[("authorization", &a)], &initialize());
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"protocolVersion\""), "{}", r.text());
    let sid = r.header("mcp-session-id").unwrap().to_owned();
    assert_eq!(sid.len(), 32, "{sid}");
    // Another caller with the agent's session id: as if there were none.
    let o = bearer(&other);
    let r = post(
        &addr,
        &[("authorization", &o), ("mcp-session-id", &sid)],
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = http(
        &addr,
        "DELETE",
        "/mcp",
        &[("authorization", &o), ("mcp-session-id", &sid)],
        b"",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    // Two keys one under case folding: refused by the proxy, whatever the
    // upstream's parser would make of it; a pretty-printed body is one
    // message all the same.
    let body = "{\n \"jsonrpc\": \"2.0\", \"id\": 4, \"method\": \"tools/call\",\n \"params\": {\"name\": \"echo\", \"Name\": \"slow\", \"arguments\": {\"text\": \"x\", \"ms\": 1}}\n}";
    let r = http(
        &addr,
        "POST",
        "/mcp",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("authorization", &a),
            ("mcp-session-id", &sid),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("-32600"), "{}", r.text());
    assert!(!up.slow_mark.exists(), "the call reached the upstream");
    // Not JSON: 400 before anything else.
    let r = http(
        &addr,
        "POST",
        "/mcp",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("authorization", &a),
            ("mcp-session-id", &sid),
        ],
        b"{\"a\":",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // The agent ends its session: its finish is recorded, the id is gone.
    let r = http(
        &addr,
        "DELETE",
        "/mcp",
        &[("authorization", &a), ("mcp-session-id", &sid)],
        b"",
    );
    assert_eq!(r.status, 200);
    let sjti = sessions(&srv)[0]["jti"].as_str().unwrap().to_owned();
    wait_for("the session's finish", Duration::from_secs(15), || {
        finished(&srv, &sjti)
    });
    let r = post(
        &addr,
        &[("authorization", &a), ("mcp-session-id", &sid)],
        &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}),
    );
    assert_eq!(r.status, 404, "{}", r.text());

    // A revoked session writ ends the session: its finish, then 404, even
    // for a client that keeps pinging.
    let r = post(&addr, &[("authorization", &a)], &initialize());
    let sid2 = r.header("mcp-session-id").unwrap().to_owned();
    let jti2 = sessions(&srv)
        .iter()
        .map(|s| s["jti"].as_str().unwrap().to_owned())
        .find(|j| *j != sjti)
        .unwrap();
    srv.cli(Some(&srv.admin_token), &["revoke", "--jti", &jti2])
        .expect_code(0, "revoking the session");
    wait_for(
        "the revoked session's finish",
        Duration::from_secs(15),
        || {
            let _ = try_http(
                &addr,
                "POST",
                "/mcp",
                &[
                    ("content-type", "application/json"),
                    ("accept", "application/json"),
                    ("authorization", &a),
                    ("mcp-session-id", &sid2),
                ],
                br#"{"jsonrpc":"2.0","method":"notifications/x"}"#,
            );
            finished(&srv, &jti2)
        },
    );
    let r = post(
        &addr,
        &[("authorization", &a), ("mcp-session-id", &sid2)],
        &json!({"jsonrpc": "2.0", "id": 6, "method": "ping"}),
    );
    assert_eq!(r.status, 404, "{}", r.text());

    // Before a session, no large body is read: 413.
    let big = json!({"jsonrpc": "2.0", "id": 7, "method": "initialize",
                     "params": {"pad": "x".repeat(100_000)}});
    let r = post(&addr, &[("authorization", &a)], &big);
    assert_eq!(r.status, 413, "{}", r.text());
    // A cleartext front off this machine is refused at start-up.
    let up_url = up.url();
    let out = run_writ(
        &[
            "mcp-proxy",
            "--name",
            "remote",
            "--listen",
            "0.0.0.0:0",
            "--upstream",
            &up_url,
        ],
        &[("WRIT_SERVER", srv.url.as_str())],
        None,
    );
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("cleartext"), "{}", out.stderr);
}

/// A TCP relay to `to` whose connections can be cut at once.
struct Relay {
    port: u16,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(to: u16) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let c = Arc::clone(&conns);
        std::thread::spawn(move || {
            for inbound in l.incoming() {
                let Ok(inbound) = inbound else { return };
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                c.lock().unwrap().push(inbound.try_clone().unwrap());
                c.lock().unwrap().push(outbound.try_clone().unwrap());
                for (mut from, mut to) in [
                    (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                    (outbound, inbound),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, conns }
    }

    /// Break every connection open now.
    fn cut(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Run `steps` with the TypeScript client in a thread; cut `relay` once the
/// upstream's slow tool has started; the client's results.
fn cut_during_slow_call(url: String, token: String, up: &Upstream, relay: &Relay) -> Vec<Value> {
    let _ = std::fs::remove_file(&up.slow_mark);
    let steps = [
        json!({"op": "call", "name": "slow", "arguments": {"ms": 1500}}),
        echo("after"),
    ];
    let t = std::thread::spawn(move || client("ts", &url, &token, None, &steps));
    wait_for("the slow call in flight", Duration::from_secs(30), || {
        up.slow_mark.exists()
    });
    std::thread::sleep(Duration::from_millis(200));
    relay.cut();
    t.join().unwrap()
}

#[test]
fn broken_event_streams_resume_on_both_sides() {
    let (srv, agent, dir) = setup();
    let up = Upstream::start(dir.path(), None);
    // The client's stream breaks: the SDK resumes it (GET, Last-Event-ID)
    // and the proxy sends what followed, the response among it.
    let (_proxy, addr) = front(&srv, dir.path(), &up.url(), &[]);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let client_side = Relay::start(port);
    let out = cut_during_slow_call(
        format!("http://127.0.0.1:{}/mcp", client_side.port),
        agent.clone(),
        &up,
        &client_side,
    );
    assert_eq!(out[0], json!({"isError": false, "text": "done"}), "{out:?}");
    assert_eq!(
        out[1],
        json!({"isError": false, "text": "after"}),
        "{out:?}"
    );
    // The upstream's stream breaks: the proxy resumes it the same way.
    let upstream_side = Relay::start(up.port);
    let (_proxy2, addr2) = front(&srv, dir.path(), &up.url_via(upstream_side.port), &[]);
    let out = cut_during_slow_call(format!("http://{addr2}/mcp"), agent, &up, &upstream_side);
    assert_eq!(out[0], json!({"isError": false, "text": "done"}), "{out:?}");
    // Each slow call was decided once and finished once.
    let slow: Vec<Value> = entries(&srv)
        .into_iter()
        .filter(|e| {
            e["type"] == "decision"
                && e["resource"] == "Tool::\"remote/slow\""
                && e["probe"] != true
        })
        .collect();
    assert_eq!(slow.len(), 2, "{slow:?}");
    for d in &slow {
        assert!(finished(&srv, d["jti"].as_str().unwrap()), "{d}");
    }
}

#[test]
fn tls_on_both_sides_and_a_stdio_client_bridged_to_a_remote_server() {
    let (srv, agent, dir) = setup();
    let pki = Pki::new(dir.path(), "mcp");
    let (cert, key) = pki.server("upstream", "DNS:localhost,IP:127.0.0.1");
    let up = Upstream::start(dir.path(), Some((&cert, &key)));
    let ca = pki.ca();
    // An HTTPS front before an HTTPS upstream.
    let (fcert, fkey) = pki.server("front", "DNS:localhost,IP:127.0.0.1");
    let (_proxy, addr) = front(
        &srv,
        dir.path(),
        &up.url(),
        &[
            "--upstream-ca",
            ca.to_str().unwrap(),
            "--tls-cert",
            fcert.to_str().unwrap(),
            "--tls-key",
            fkey.to_str().unwrap(),
        ],
    );
    let out = client(
        "py",
        &format!("https://localhost:{}/mcp", addr.rsplit(':').next().unwrap()),
        &agent,
        Some(&ca),
        &[echo("over tls")],
    );
    assert_eq!(
        out[0],
        json!({"isError": false, "text": "over tls"}),
        "{out:?}"
    );
    // An upstream whose certificate is not trusted: the call fails, the
    // session too, and nothing is sent in the clear.
    let (_p2, addr2) = front(&srv, dir.path(), &up.url(), &[]);
    let r = post(
        &addr2,
        &[("authorization", &format!("Bearer {agent}"))],
        &initialize(),
    );
    assert!(
        r.text().contains("upstream MCP server") && r.text().contains("-32000"),
        "{} {}",
        r.status,
        r.text()
    );

    // The bridge: a stdio client (the Python SDK's) to the remote server.
    let tokens = token_file(dir.path());
    let job = json!({
        "command": writ_bin(),
        "args": ["mcp-proxy", "--name", "remote", "--upstream", up.url(),
                 "--upstream-ca", ca, "--upstream-token-file", tokens],
        "env": {"WRIT_SERVER": srv.url, "WRIT_TOKEN": agent,
                "PATH": std::env::var("PATH").unwrap_or_default()},
        "steps": [list(), echo("bridged"), echo("secret")],
    });
    let out = run_script(&python(), PY_STDIO_CLIENT, &job);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let out: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out[0]["tools"], json!(["echo", "slow"]), "{out:?}");
    assert_eq!(
        out[1],
        json!({"isError": false, "text": "bridged"}),
        "{out:?}"
    );
    assert!(out[2]["text"]
        .as_str()
        .unwrap()
        .starts_with("denied: policy_denied"));
    let seen = up.auth_seen();
    assert!(
        seen.iter()
            .all(|a| a == &format!("Bearer {UPSTREAM_TOKEN}")),
        "{seen:?}"
    );
}
