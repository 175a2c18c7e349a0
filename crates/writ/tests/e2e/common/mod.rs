//! Shared helpers for the integration tests: a real `writ serve` child process
//! on a fresh data dir, a tiny blocking HTTP/1.1 client, and a way to run the
//! CLI against that server.
//!
//! Every test binary compiles this module and uses only part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod pki;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use writ_artifact::{ReasonCode, WritKey};

/// Write an executable `#!/bin/sh` script.
pub fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// The `writ` binary under test, resolved, and its directory: what a
/// governed program that runs `writ` itself must be allowed to read.
pub fn writ_bin_and_dir() -> (PathBuf, String) {
    let bin: PathBuf = Path::new(writ_bin()).canonicalize().unwrap();
    let dir = bin.parent().unwrap().to_str().unwrap().to_owned();
    (bin, dir)
}

/// Poll `f` every 20 ms until it holds; fail the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connections waiting in the accept queue of the TCP listener on `port`
/// (loopback, IPv4 or IPv6), from `/proc/net/tcp*`: a stopped server's
/// clients queue there.
pub fn queued_connections(port: u16) -> u64 {
    let port = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local address, state 0A (LISTEN), then tx_queue:rx_queue,
            // which for a listener is its accept backlog.
            (f.get(1)?.ends_with(&port) && *f.get(3)? == "0A")
                .then(|| u64::from_str_radix(f.get(4)?.split_once(':')?.1, 16).ok())?
        })
        .sum()
}

/// The `writ` binary under test.
pub fn writ_bin() -> &'static str {
    env!("CARGO_BIN_EXE_writ")
}

/// How long a server may take to answer `/healthz` before a test gives up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Output of one CLI run.
#[derive(Debug)]
pub struct CliOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOut {
    /// Panics with the full output unless the command exited with `code`.
    pub fn expect_code(&self, code: i32, what: &str) -> &CliOut {
        assert_eq!(
            self.code, code,
            "{what}: expected exit status {code}\n{self:#?}"
        );
        self
    }

    /// Parse standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self:#?}"))
    }

    /// Assert a CLI denial: the exit status of `code` and `denied: <code>` first on stderr.
    pub fn expect_denied(&self, code: &str, what: &str) {
        let rc = ReasonCode::parse(code).unwrap_or_else(|| panic!("{code} is not a reason code"));
        assert_eq!(
            self.code,
            i32::from(rc.exit_status()),
            "{what}: expected exit status of {code}\n{self:#?}"
        );
        assert!(
            self.stderr.starts_with(&format!("denied: {code}: ")),
            "{what}: stderr must start with `denied: {code}: `\n{self:#?}"
        );
    }
}

/// The writ binary, without the writ variables of the test process itself.
fn writ_command() -> Command {
    let mut cmd = Command::new(writ_bin());
    for v in [
        "WRIT_SERVER",
        "WRIT_TOKEN",
        "WRIT_DIR",
        "WRIT_PARENT",
        "WRIT_LISTEN",
        "WRIT_LOG",
    ] {
        cmd.env_remove(v);
    }
    cmd
}

/// Run `writ ARGS` with exactly the given extra environment (the writ
/// variables of the test process itself are removed first).
pub fn run_writ(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> CliOut {
    let mut cmd = writ_command();
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", writ_bin()));
    CliOut {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Start `writ ARGS` in the background (same environment rules as
/// [`run_writ`]), its output captured.
pub fn spawn_writ(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> Child {
    let mut cmd = writ_command();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", writ_bin()))
}

/// Wait for a child started by [`spawn_writ`], at most `limit`.
pub fn wait_writ(mut child: Child, limit: Duration) -> CliOut {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "writ did not exit within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    CliOut {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Activate a bundle of one policy file with this text.
pub fn activate_policy(srv: &Server, name: &str, cedar: &str) {
    let dir = srv.tmp.path().join(format!("policy-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("policy.cedar"), cedar).unwrap();
    srv.cli(
        Some(&srv.admin_token),
        &["policy", "activate", dir.to_str().unwrap()],
    )
    .expect_code(0, "activating a test policy");
}

/// `writ --dir D init --json` on a fresh directory; returns its JSON answer.
pub fn init_dir(dir: &Path) -> Value {
    let out = run_writ(
        &["--dir", dir.to_str().unwrap(), "init", "--json"],
        &[],
        None,
    );
    out.expect_code(0, "writ init");
    let v = out.json();
    assert!(
        v["admin_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("writ_")),
        "no admin token: {v}"
    );
    v
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------- HTTP

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A blocking HTTP/1.1 request over a fresh connection (`Connection: close`).
/// The body is written from a second thread while the response is read, so a
/// server that answers before reading the whole body (413) is still heard.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    try_http(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{e}"))
}

/// [`http`], with a failure (no connection, a connection closed before a
/// whole response) as an error instead of a panic.
pub fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Resp, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut failed = None;
    std::thread::scope(|s| {
        s.spawn(move || {
            // The server may close early (e.g. 413): a failed write is not an error here.
            let _ = writer
                .write_all(head.as_bytes())
                .and_then(|()| writer.write_all(body));
        });
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if !raw.is_empty() => {
                    eprintln!("note: read ended with {e} after {} bytes", raw.len());
                    break;
                }
                Err(e) => {
                    failed = Some(format!("{method} {path}: reading the response: {e}"));
                    break;
                }
            }
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
    });
    if let Some(e) = failed {
        return Err(e);
    }
    parse_response(&raw).ok_or_else(|| {
        format!(
            "{method} {path}: not an HTTP response: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse_response(raw: &[u8]) -> Option<Resp> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------- server

/// A `writ serve` child process on its own fresh data dir. Killed on drop.
pub struct Server {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub admin_token: String,
    /// What `writ init --json` answered.
    pub init: Value,
    child: Child,
    log_path: PathBuf,
    serve_args: Vec<String>,
    serve_env: Vec<(String, String)>,
}

fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

fn serve_command(
    dir: &Path,
    addr: &str,
    serve_args: &[String],
    env: &[(String, String)],
) -> Command {
    let mut cmd = writ_command();
    cmd.args(["--dir", dir.to_str().unwrap(), "serve", "--listen", addr])
        .args(serve_args)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Serve `dir` and wait until it answers; `(child, addr)`.
fn spawn_serve(
    dir: &Path,
    log_path: &Path,
    serve_args: &[String],
    env: &[(String, String)],
) -> (Child, String) {
    // A port picked this way can be taken by someone else before the child
    // binds it; try a few.
    let mut last_log = String::new();
    for _attempt in 0..3 {
        let addr = free_addr();
        let log = std::fs::File::create(log_path).unwrap();
        let mut child = serve_command(dir, &addr, serve_args, env)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start writ serve: {e}"));
        match wait_healthy(&mut child, &addr) {
            Ok(()) => return (child, addr),
            Err(exited) => {
                let _ = child.kill();
                let _ = child.wait();
                last_log = std::fs::read_to_string(log_path).unwrap_or_default();
                assert!(exited, "writ serve did not answer GET /healthz within {STARTUP_TIMEOUT:?}; its log:\n{last_log}");
                // It exited (the port was taken?): try another port.
            }
        }
    }
    panic!("writ serve could not start; its log:\n{last_log}");
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Whether the `writ serve` child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Init a data dir and serve it with default settings.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Init a data dir and serve it with extra `writ serve` arguments.
    pub fn start_with(serve_args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        Server::start_full(tmp, dir, serve_args, &[])
    }

    /// Init `dir` (which must not exist yet; e.g. on a filesystem of its
    /// own) and serve it with extra arguments and environment variables;
    /// the server's own log and scratch files go to a fresh temporary dir.
    pub fn start_at(dir: &Path, serve_args: &[&str], env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        Server::start_full(tmp, dir.to_path_buf(), serve_args, env)
    }

    fn start_full(
        tmp: tempfile::TempDir,
        dir: PathBuf,
        serve_args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let init = init_dir(&dir);
        let admin_token = init["admin_token"].as_str().unwrap().to_owned();
        let log_path = tmp.path().join("serve.log");
        let serve_args: Vec<String> = serve_args.iter().map(|a| (*a).to_owned()).collect();
        let serve_env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (child, addr) = spawn_serve(&dir, &log_path, &serve_args, &serve_env);
        Server {
            tmp,
            dir,
            url: format!("http://{addr}"),
            addr,
            admin_token,
            init,
            child,
            log_path,
            serve_args,
            serve_env,
        }
    }

    /// SIGTERM the server (a clean shutdown) and wait up to `limit` for it
    /// to exit; `None` if it is still running then.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL the server (no chance to flush or clean up) and reap it.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start the server again on the same data dir and arguments (after
    /// [`Server::kill_hard`]); it may listen on a new port.
    pub fn restart(&mut self) {
        self.kill_hard();
        let (child, addr) =
            spawn_serve(&self.dir, &self.log_path, &self.serve_args, &self.serve_env);
        self.child = child;
        self.url = format!("http://{addr}");
        self.addr = addr;
    }

    /// Restart the server on the same data dir with other `writ serve` arguments.
    pub fn restart_with(&mut self, serve_args: &[&str]) {
        self.serve_args = serve_args.iter().map(|a| (*a).to_owned()).collect();
        self.restart();
    }

    /// Start the server again and SIGKILL it `after` its spawn, ready or not.
    pub fn spawn_and_kill_after(&mut self, after: Duration) {
        self.kill_hard();
        let log = std::fs::File::create(&self.log_path).unwrap();
        let mut child = serve_command(&self.dir, &free_addr(), &self.serve_args, &self.serve_env)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send the server a signal by `kill`'s name for it (`-STOP`, `-CONT`).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill {sig}");
    }

    /// The server's own log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn dir_str(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.join("writ.db")
    }

    /// Any request; `token` becomes a bearer token, `body` is sent as JSON.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        let bytes = match body {
            Some(b) => {
                headers.push(("Content-Type", "application/json"));
                serde_json::to_vec(b).unwrap()
            }
            None => Vec::new(),
        };
        http(&self.addr, method, path, &headers, &bytes)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.request("GET", path, token, None)
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        self.request("POST", path, token, Some(body))
    }

    /// Register a principal with the admin token; returns its bearer token.
    pub fn add_principal(&self, uid: &str) -> String {
        let r = self.post(
            "/v1/principals",
            Some(&self.admin_token),
            &json!({"uid": uid}),
        );
        assert_eq!(r.status, 201, "adding {uid}: {}", r.text());
        let v = r.json();
        assert_eq!(v["uid"], uid);
        v["token"].as_str().unwrap().to_owned()
    }

    /// `POST /v1/authorize`.
    pub fn authorize(&self, token: &str, req: &Value) -> Resp {
        self.post("/v1/authorize", Some(token), req)
    }

    /// `POST /v1/authorize` that must allow; returns `(writ, jti, body)`.
    pub fn authorize_ok(&self, token: &str, req: &Value) -> (String, String, Value) {
        let r = self.authorize(token, req);
        let v = r.json();
        assert_eq!(
            (r.status, v["decision"].as_str()),
            (200, Some("allow")),
            "authorize must allow: {v}"
        );
        (
            v["writ"].as_str().unwrap().to_owned(),
            v["jti"].as_str().unwrap().to_owned(),
            v,
        )
    }

    /// `POST /v1/verify` (needs no token).
    pub fn verify(&self, body: &Value) -> Value {
        let r = self.post("/v1/verify", None, body);
        assert_eq!(
            r.status,
            200,
            "/v1/verify answers 200 with {{valid, reason}}: {}",
            r.text()
        );
        r.json()
    }

    /// `POST /v1/executions/{jti}/start`.
    pub fn start_execution(&self, token: &str, jti: &str) -> Resp {
        self.post(
            &format!("/v1/executions/{jti}/start"),
            Some(token),
            &json!({}),
        )
    }

    /// Every log entry, in order, as the public reads them: a decision
    /// carries a commitment to its request, not the request.
    pub fn public_log_entries(&self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let r = self.get(&format!("/v1/log/entries?start={}", out.len()), None);
            assert_eq!(r.status, 200, "{}", r.text());
            let page = r.json().as_array().cloned().unwrap();
            if page.is_empty() {
                return out;
            }
            out.extend(page);
        }
    }

    /// Every log entry, in order, each sealed decision opened with what it
    /// commits to (`GET /v1/log/contents`, as the administrator): its
    /// `entry` has `context`, `request` and `environment` again.
    pub fn log_entries(&self) -> Vec<Value> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = self.public_log_entries();
        let mut at = 0;
        while at < out.len() {
            let r = self.get(
                &format!("/v1/log/contents?start={at}&end={}", out.len()),
                Some(&self.admin_token),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            let page = r.json();
            for c in page["contents"].as_array().unwrap() {
                let i = c["index"].as_u64().unwrap() as usize;
                let Some(content) = c["content"].as_str() else {
                    continue;
                };
                let opened: Value = serde_json::from_slice(&b64.decode(content).unwrap()).unwrap();
                for k in ["context", "request", "environment"] {
                    out[i]["entry"][k] = opened[k].clone();
                }
            }
            at = page["next"].as_u64().unwrap() as usize;
        }
        out
    }

    /// Log entries that are allow decisions.
    pub fn allow_count(&self) -> usize {
        self.log_entries()
            .iter()
            .filter(|e| e["entry"]["type"] == "decision" && e["entry"]["decision"] == "allow")
            .count()
    }

    /// Run the CLI against this server: `WRIT_SERVER`, `WRIT_DIR` and (if
    /// given) `WRIT_TOKEN` are set.
    pub fn cli(&self, token: Option<&str>, args: &[&str]) -> CliOut {
        let mut env = vec![
            ("WRIT_SERVER", self.url.as_str()),
            ("WRIT_DIR", self.dir_str()),
        ];
        if let Some(t) = token {
            env.push(("WRIT_TOKEN", t));
        }
        run_writ(args, &env, None)
    }

    /// The server's current writ signing key, read from the data dir.
    pub fn writ_key(&self) -> WritKey {
        let kid = std::fs::read_to_string(self.dir.join("keys/current")).unwrap();
        let pem = std::fs::read_to_string(self.dir.join(format!("keys/writ-{}.pem", kid.trim())))
            .unwrap();
        WritKey::from_pkcs8_pem(&pem).unwrap()
    }

    /// The data dir's policy signing key.
    pub fn policy_key(&self) -> WritKey {
        let pem = std::fs::read_to_string(self.dir.join("keys/policy.pem")).unwrap();
        WritKey::from_pkcs8_pem(&pem).unwrap()
    }

    /// The active policy bundle hash (GET /v1/policies).
    pub fn active_policy(&self) -> String {
        let r = self.get("/v1/policies", Some(&self.admin_token));
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["active"].as_str().unwrap().to_owned()
    }
}

/// `Ok` once `/healthz` answers 200; `Err(true)` if the child exited,
/// `Err(false)` on timeout.
fn wait_healthy(child: &mut Child, addr: &str) -> Result<(), bool> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(true);
        }
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut raw = Vec::new();
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_to_end(&mut raw).is_ok()
                && parse_response(&raw).is_some_and(|r| r.status == 200)
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(false)
}

// ---------------------------------------------------------------- requests and writs

/// An authorize body for `Action::"exec"` of `argv[0]`, bound to `argv`.
pub fn exec_req(argv: &[&str], audience: &str) -> Value {
    json!({
        "action": "Action::\"exec\"",
        "resource": format!("Command::{}", serde_json::to_string(argv[0]).unwrap()),
        "request": {"argv": argv},
        "audience": audience,
    })
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s)
        .unwrap_or_else(|e| panic!("{s:?} is not base64url: {e}"))
}

/// The three parts of a compact JWS.
pub fn parts(writ: &str) -> (String, String, String) {
    let v: Vec<&str> = writ.split('.').collect();
    assert_eq!(v.len(), 3, "not a compact JWS: {writ}");
    (v[0].to_owned(), v[1].to_owned(), v[2].to_owned())
}

pub fn header_of(writ: &str) -> Value {
    serde_json::from_slice(&unb64(&parts(writ).0)).unwrap()
}

pub fn claims_of(writ: &str) -> Value {
    serde_json::from_slice(&unb64(&parts(writ).1)).unwrap()
}

/// RFC 8785 bytes of `v`.
pub fn canonical(v: &Value) -> Vec<u8> {
    writ_artifact::canonical::to_canonical_bytes(v).unwrap()
}

/// A compact JWS over exactly these header and payload bytes, signed by `key`.
pub fn sign_raw(key: &WritKey, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// Whether `WRIT_SKIP_PY` asks to skip the Python interop tests (saying so).
pub fn skip_python(what: &str) -> bool {
    if std::env::var_os("WRIT_SKIP_PY").is_some() {
        eprintln!("WRIT_SKIP_PY is set: skipping {what}");
        return true;
    }
    false
}

/// Serializes venv creation between the tests of one test binary.
static PYENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `target/<venv>/bin/python`, in which the Python snippet `ready` succeeds;
/// when it does not, the venv is made and `pip install <requirement>` run. A
/// failed install fails the test (set `WRIT_SKIP_PY=1` to skip instead).
pub fn python_venv(venv: &str, requirement: &str, ready: &str) -> PathBuf {
    let _guard = PYENV.lock().unwrap_or_else(|p| p.into_inner());
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target")
        .join(venv);
    let py = venv.join("bin/python");
    let is_ready = |py: &Path| {
        Command::new(py)
            .args(["-c", ready])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if is_ready(&py) {
        return py;
    }
    let st = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status();
    assert!(
        st.as_ref().is_ok_and(|s| s.success()),
        "python3 -m venv {} failed: {st:?} (set WRIT_SKIP_PY=1 to skip)",
        venv.display()
    );
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", requirement])
        .output();
    match &out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "pip install {requirement} into {} failed (set WRIT_SKIP_PY=1 to skip):\n{}\n{}",
            venv.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run pip for {requirement} (set WRIT_SKIP_PY=1 to skip): {e}"),
    }
    assert!(
        is_ready(&py),
        "{requirement} is still not importable from {}",
        py.display()
    );
    py
}
