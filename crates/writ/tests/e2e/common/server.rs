//! A `writ serve` child process on its own fresh data dir.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use writ_artifact::WritKey;

use super::cli::{init_dir, run_writ, writ_command, CliOut};
use super::http::{http, parse_response, Resp};

/// How long a server may take to answer `/healthz` before a test gives up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

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
