//! The console in a real browser: a real `writ serve` (with a witness), real
//! decisions and a governed `writ exec` tree, then headless Chromium driven
//! by Playwright (`playwright-core`, Debian's `/usr/bin/chromium`) through
//! every area from the front page's navigation: `tests/e2e/fixtures/console.cjs`.
//! Also `writ assess` and `GET /v1/mesh` without a browser.
//!
//! First use installs what the browser test needs: `playwright-core` from
//! npm into `target/console-e2e/`, and Debian's `chromium` with apt-get when
//! `/usr/bin/chromium` is missing. A failed install fails the test; it is
//! never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Every command allowed except `rm` (so the policy still says no).
const POLICY: &str = "@id(\"exec-anything\")\npermit (principal, action == Action::\"exec\", resource);\n\
                      @id(\"never-rm\")\nforbid (principal, action, resource == Command::\"/usr/bin/rm\");\n";

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Debian's chromium, installed with apt-get when missing (CI runs as root).
fn ensure_chromium() {
    if Path::new(CHROMIUM).exists() {
        return;
    }
    eprintln!("{CHROMIUM} is missing: installing Debian's chromium with apt-get");
    run_ok(
        Command::new("apt-get").args(["update", "-q"]),
        "apt-get update",
    );
    run_ok(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install chromium",
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "apt-get installed no {CHROMIUM}"
    );
}

/// `target/console-e2e/node_modules/playwright-core`, installed on first use.
fn ensure_playwright() -> PathBuf {
    let _guard = NPM.lock().unwrap_or_else(|p| p.into_inner());
    let prefix = target_dir().join("console-e2e");
    let module = prefix.join("node_modules/playwright-core");
    if !module.join("package.json").exists() {
        std::fs::create_dir_all(&prefix).unwrap();
        run_ok(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&prefix)
                .arg("playwright-core@1"),
            "npm install playwright-core@1",
        );
    }
    assert!(
        module.join("package.json").exists(),
        "no playwright-core in {}",
        module.display()
    );
    module.canonicalize().unwrap()
}

struct Witness {
    child: Child,
    url: String,
    vkey: String,
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_witness(dir: &Path, log_vkey: &str) -> Witness {
    let dir_s = dir.to_str().unwrap();
    let out = run_writ(
        &["witness", "--witness-dir", dir_s, "--print-key"],
        &[],
        None,
    );
    out.expect_code(0, "writ witness --print-key");
    let vkey = out.stdout.trim().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(writ_bin())
        .args([
            "witness",
            "--witness-dir",
            dir_s,
            "--listen",
            &addr,
            "--log-key",
            log_vkey,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the witness to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    Witness {
        child,
        url: format!("http://{addr}"),
        vkey,
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// A server with a witness, a policy that still denies `rm`, and decisions
/// of every kind: allows, a policy_denied, a spent nonce, a revocation.
fn busy_server(tmp: &Path) -> (Server, Witness) {
    let mut srv = Server::start_with(&["--skew-secs", "1"]);
    let log_vkey = srv.get("/v1/log/key", None).json()["vkey"]
        .as_str()
        .unwrap()
        .to_owned();
    let w = start_witness(&tmp.join("witness"), &log_vkey);
    let witness_arg = format!("{}={}", w.url, w.vkey);
    srv.restart_with(&["--skew-secs", "1", "--witness", &witness_arg]);
    activate_policy(&srv, "console", POLICY);
    let agent = srv.add_principal("Agent::\"planner\"");
    let (_, jti, _) = srv.authorize_ok(&agent, &exec_req(&["/usr/bin/true"], "exec@console"));
    assert_eq!(srv.start_execution(&agent, &jti).status, 200);
    let r = srv.authorize(
        &agent,
        &exec_req(&["/usr/bin/rm", "-rf", "/srv"], "exec@console"),
    );
    assert_eq!(r.json()["reason"], "policy_denied", "{}", r.text());
    let (_, revoked, _) = srv.authorize_ok(&agent, &exec_req(&["/usr/bin/ls"], "exec@console"));
    let r = srv.post(
        "/v1/revocations",
        Some(&srv.admin_token),
        &json!({"jti": revoked, "reason": "test"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    (srv, w)
}

/// A governed tree: `writ exec` runs p.sh, which runs `writ exec` of c.sh,
/// which becomes `sleep 300`. Returns the runner, the root jti and the
/// sleeping grandchild's pid.
fn governed_tree(srv: &Server, t: &Path) -> (Child, String, String, u32) {
    let ts = t.to_str().unwrap();
    let bin: PathBuf = Path::new(writ_bin()).canonicalize().unwrap();
    let bin_dir = bin.parent().unwrap().to_str().unwrap().to_owned();
    let w = bin.to_str().unwrap();
    script(
        &t.join("p.sh"),
        &format!(
            "echo \"$WRIT_PARENT\" > {ts}/p.writ\n\
             exec {w} exec --write {ts} --kill-grace 1 -- {ts}/c.sh"
        ),
    );
    script(
        &t.join("c.sh"),
        &format!("echo \"$WRIT_PARENT\" > {ts}/c.writ\necho $$ > {ts}/c.pid\nexec sleep 300"),
    );
    let env = [
        ("WRIT_SERVER", srv.url.as_str()),
        ("WRIT_TOKEN", srv.admin_token.as_str()),
    ];
    let top = spawn_writ(
        &[
            "exec",
            "--net",
            "--read",
            ts,
            "--read",
            &bin_dir,
            "--write",
            ts,
            "--lifetime",
            "600",
            "--kill-grace",
            "1",
            "--",
            &format!("{ts}/p.sh"),
        ],
        &env,
        Some(t),
    );
    let mut pid = 0u32;
    wait_for(
        "the governed grandchild to run",
        Duration::from_secs(30),
        || {
            pid = std::fs::read_to_string(t.join("c.pid"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            pid != 0
        },
    );
    let read = |f: &str| std::fs::read_to_string(t.join(f)).unwrap();
    (top, jti_of(&read("p.writ")), jti_of(&read("c.writ")), pid)
}

#[test]
fn the_console_in_headless_chromium() {
    let t0 = Instant::now();
    ensure_chromium();
    let playwright = ensure_playwright();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().canonicalize().unwrap();
    let (srv, _witness) = busy_server(&t);
    let (top, root, child, pid) = governed_tree(&srv, &t);
    assert!(alive(pid));
    let shots = target_dir().join("console-e2e/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let e2e = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/fixtures/console.cjs");
    let setup = t0.elapsed();
    let t1 = Instant::now();
    let out = Command::new("node")
        .arg(&e2e)
        .env("PLAYWRIGHT_CORE", &playwright)
        .env("CHROMIUM", CHROMIUM)
        .env("WRIT_URL", &srv.url)
        .env("WRIT_ADMIN_TOKEN", &srv.admin_token)
        .env("ROOT_JTI", &root)
        .env("CHILD_JTI", &child)
        .env("CHILD_PID", pid.to_string())
        .env("SHOTS", &shots)
        .env("PROFILE", t.join("chromium-profile"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run node {}: {e}", e2e.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}\nserver log:\n{}",
        out.status,
        srv.log()
    );
    assert!(stdout.contains("console e2e: all areas passed"), "{stdout}");
    // What the browser saw, the processes confirm: the revoke from the
    // lineage explorer ended the governed tree.
    assert!(!alive(pid), "the governed sleep outlived its revocation");
    let out = wait_writ(top, Duration::from_secs(20));
    out.expect_denied(
        "revoked",
        "the root runner after the revoke from the console",
    );
    for name in [
        "governance",
        "proof",
        "health",
        "lineage",
        "demo",
        "maturity",
    ] {
        for size in ["1280", "390"] {
            let f = shots.join(format!("{name}-{size}.png"));
            assert!(
                std::fs::metadata(&f).is_ok_and(|m| m.len() > 1000),
                "no screenshot {}",
                f.display()
            );
        }
    }
    // The CLI agrees with the maturity page.
    let a = srv.cli(
        Some(&srv.admin_token),
        &["assess", "--json", "--require", "5"],
    );
    a.expect_code(0, "writ assess --require 5 after the browser run");
    assert_eq!(a.json()["level"], 5, "{}", a.stdout);
    eprintln!(
        "console e2e timing: set-up {:.1}s, browser {:.1}s",
        setup.as_secs_f64(),
        t1.elapsed().as_secs_f64()
    );
}

fn assess(srv: &Server) -> Value {
    let out = srv.cli(Some(&srv.admin_token), &["assess", "--json"]);
    out.expect_code(0, "writ assess --json");
    out.json()
}

fn criterion<'a>(a: &'a Value, name: &str) -> &'a Value {
    a["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with(name))
        .unwrap_or_else(|| panic!("no criterion {name}: {a:#}"))
}

#[test]
fn writ_assess_reports_the_level_the_log_demonstrates() {
    let srv = Server::start();
    // A fresh deployment has logged no execution activity.
    let a = assess(&srv);
    assert_eq!(a["level"], 0, "{a:#}");
    assert_eq!(criterion(&a, "execution activity is logged")["met"], false);
    let out = srv.cli(Some(&srv.admin_token), &["assess", "--require", "1"]);
    out.expect_code(1, "writ assess --require 1 on a fresh deployment");
    assert!(
        out.stdout.starts_with("EGMM level 0: Untrusted Execution"),
        "{out:?}"
    );

    // Decisions, a policy denial, a start, a revocation: governed (level 4),
    // but no lineage and no witness, so not level 5.
    let agent = srv.add_principal("Agent::\"a\"");
    let (_, jti, _) = srv.authorize_ok(&agent, &exec_req(&["/usr/bin/true"], "exec@t"));
    assert_eq!(srv.start_execution(&agent, &jti).status, 200);
    let r = srv.authorize(&agent, &exec_req(&["/usr/bin/rm", "/x"], "exec@t"));
    assert_eq!(r.json()["reason"], "policy_denied");
    srv.cli(Some(&srv.admin_token), &["revoke", "--jti", &jti])
        .expect_code(0, "writ revoke");
    srv.cli(Some(&srv.admin_token), &["log", "checkpoint"])
        .expect_code(0, "writ log checkpoint");
    let a = assess(&srv);
    assert_eq!(a["level"], 4, "{a:#}");
    assert_eq!(a["name"], "Governed Execution");
    let logged = criterion(&a, "the log recomputes");
    assert_eq!(logged["met"], true, "{logged}");
    assert!(
        logged["evidence"].as_str().unwrap().contains("0 problems"),
        "{logged}"
    );
    assert_eq!(criterion(&a, "decisions replay identically")["met"], true);
    assert_eq!(criterion(&a, "lineage links")["met"], false);
    assert_eq!(criterion(&a, "witnesses cosign")["met"], false);
    let ev = &a["evidence"]["tally"];
    assert_eq!(
        (
            ev["execution_starts"].as_u64(),
            ev["policy_denied"].as_u64(),
            ev["revocations"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{ev}"
    );
    srv.cli(None, &["assess", "--require", "5"])
        .expect_code(1, "writ assess --require 5 without lineage or witness");
}

#[test]
fn the_mesh_lists_this_node() {
    let srv = Server::start();
    let r = srv.get("/v1/mesh", Some(&srv.admin_token));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{v}");
    let n = &nodes[0];
    assert!(n["id"].as_str().unwrap().ends_with(&srv.addr), "{n}");
    assert_eq!(n["policy"], srv.active_policy().as_str());
    assert_eq!(n["policy_fresh"], true);
    assert_eq!(n["revocation_hwm"], 0);
    assert_eq!(n["log_size"], srv.get("/readyz", None).json()["log_size"]);
    let (_, jti, _) = srv.authorize_ok(&srv.admin_token, &exec_req(&["/usr/bin/true"], "exec@t"));
    srv.post(
        "/v1/revocations",
        Some(&srv.admin_token),
        &json!({"jti": jti}),
    );
    assert_eq!(
        srv.get("/v1/mesh", Some(&srv.admin_token)).json()["nodes"][0]["revocation_hwm"],
        1
    );
}

#[test]
fn console_pages_are_served_with_a_strict_content_security_policy() {
    let srv = Server::start();
    for path in [
        "/",
        "/console/proof",
        "/console/health",
        "/console/lineage",
        "/console/demo",
        "/console/maturity",
    ] {
        let r = srv.get(path, None);
        assert_eq!(r.status, 200, "{path}");
        let csp = r
            .header("content-security-policy")
            .unwrap_or_default()
            .to_owned();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        let html = r.text();
        assert!(html.contains("/console/assets/console.js"), "{path}");
        // The admin token is never part of a page.
        assert!(!html.contains(&srv.admin_token), "{path}");
    }
    // The demo acts only for an administrator.
    let r = srv.post("/console/api/demo", None, &json!({}));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["reason"], "unauthenticated", "{}", r.text());
    let agent = srv.add_principal("Agent::\"a\"");
    let r = srv.post("/console/api/demo", Some(&agent), &json!({}));
    assert_eq!(r.status, 403, "{}", r.text());
}
