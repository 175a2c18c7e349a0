//! TLS on every hop, with certificates made by `openssl` from test CAs:
//! `writ serve` over HTTPS (the walkthrough's commands, a governed run),
//! mutual TLS, a certificate from another CA refused with an error that
//! says so, a reload on SIGHUP, plain HTTP refused off loopback, and a mesh
//! on a PostgreSQL with `ssl=on` reached with `sslmode=verify-full`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::pki::Pki;
use crate::common::*;
use crate::pg;
use serde_json::Value;

/// A `writ serve` child over TLS.
struct Tls {
    child: Child,
    url: String,
    dir: PathBuf,
    log: PathBuf,
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tls {
    /// `writ serve --json` on `dir` with `args`; its URL from the JSON line.
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Tls {
        let log = dir.with_extension("log");
        let mut cmd = Command::new(writ_bin());
        cmd.args([
            "--dir",
            dir.to_str().unwrap(),
            "--json",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .env_remove("WRIT_TOKEN")
        .env_remove("WRIT_SERVER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "writ serve printed no JSON line ({e}): {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        Tls {
            child,
            url: v["url"].as_str().unwrap().to_owned(),
            dir: dir.to_owned(),
            log,
        }
    }

    /// The CLI against this server with `env` (WRIT_CA, ...) and `token`.
    fn cli(&self, env: &[(&str, &str)], token: Option<&str>, args: &[&str]) -> CliOut {
        let mut all_env = vec![
            ("WRIT_SERVER", self.url.as_str()),
            ("WRIT_DIR", self.dir.to_str().unwrap()),
        ];
        all_env.extend_from_slice(env);
        if let Some(t) = token {
            all_env.push(("WRIT_TOKEN", t));
        }
        run_writ(args, &all_env, None)
    }
}

/// `curl` (a real TLS client of its own) with these arguments; (status, body).
fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_walkthrough_runs_over_https_and_a_certificate_that_does_not_verify_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Pki::new(tmp.path(), "good");
    let other = Pki::new(tmp.path(), "other");
    let (cert, key) = ca.server("server", "IP:127.0.0.1,DNS:localhost");
    let dir = tmp.path().join("d");
    let admin = init_dir(&dir)["admin_token"].as_str().unwrap().to_owned();
    let srv = Tls::start(&dir, &["--tls-cert", s(&cert), "--tls-key", s(&key)], &[]);
    assert!(srv.url.starts_with("https://127.0.0.1:"), "{}", srv.url);
    let ca_path = ca.ca();
    let ca_env = [("WRIT_CA", s(&ca_path))];

    // The walkthrough, over HTTPS.
    let out = srv.cli(
        &ca_env,
        Some(&admin),
        &["--json", "principal", "add", "Agent::\"planner\""],
    );
    out.expect_code(0, "principal add over https");
    let agent = out.json()["token"].as_str().unwrap().to_owned();
    srv.cli(&ca_env, Some(&admin), &["principal", "list"])
        .expect_code(0, "principal list");
    let out = srv.cli(
        &ca_env,
        Some(&agent),
        &[
            "authorize",
            "--resource",
            "Command::\"/usr/bin/ls\"",
            "--request",
            "{\"argv\":[\"/usr/bin/ls\",\"/tmp\"]}",
            "--audience",
            "exec@laptop",
            "--lifetime",
            "600",
        ],
    );
    out.expect_code(0, "authorize over https");
    let writ = out.stdout.trim().to_owned();
    srv.cli(
        &ca_env,
        None,
        &[
            "verify",
            &writ,
            "--audience",
            "exec@laptop",
            "--request",
            "{\"argv\":[\"/usr/bin/ls\",\"/tmp\"]}",
        ],
    )
    .expect_code(0, "verify");
    srv.cli(
        &ca_env,
        Some(&agent),
        &[
            "authorize",
            "--resource",
            "Command::\"/usr/bin/rm\"",
            "--request",
            "{\"argv\":[\"/usr/bin/rm\",\"-rf\",\"/\"]}",
        ],
    )
    .expect_denied("policy_denied", "a denial over https");
    // A governed run: the enforcement point speaks HTTPS to the authority.
    let out = srv.cli(&ca_env, Some(&agent), &["exec", "--", "/usr/bin/true"]);
    out.expect_code(0, "writ exec over https");
    srv.cli(&ca_env, Some(&admin), &["log", "checkpoint"])
        .expect_code(0, "checkpoint");
    srv.cli(
        &ca_env,
        Some(&admin),
        &["log", "verify", "--remote", "--replay"],
    )
    .expect_code(0, "log verify --remote --replay over https");
    srv.cli(&ca_env, None, &["verify", "--proof", &writ])
        .expect_code(0, "verify --proof over https");
    let ev = tmp.path().join("ev.json");
    let out = srv.cli(
        &ca_env,
        None,
        &["log", "export", "--remote", "--from", "0", "--out", s(&ev)],
    );
    assert!(out.stderr.contains("an auditor's token"), "{out:#?}");
    srv.cli(
        &ca_env,
        Some(&admin),
        &["log", "export", "--remote", "--from", "0", "--out", s(&ev)],
    )
    .expect_code(0, "export over https");
    // curl, a client of its own, with the CA; the console's page too.
    let (code, body) = curl(&["--cacert", s(&ca.ca()), &format!("{}/healthz", srv.url)]);
    assert_eq!(code, 0, "{body}");
    let (code, _) = curl(&[
        "--cacert",
        s(&ca.ca()),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{}/", srv.url),
    ]);
    assert_eq!(code, 0);

    // Without the CA, or with another one: refused, and the error says why.
    for env in [vec![], vec![("WRIT_CA", s(&other.ca()))]] {
        let out = srv.cli(&env, Some(&admin), &["principal", "list"]);
        assert_ne!(out.code, 0, "{out:#?}");
        assert!(
            out.stderr.contains("certificate") && out.stderr.contains("WRIT_CA"),
            "{out:#?}"
        );
        // An enforcement point fails closed.
        let out = srv.cli(&env, Some(&agent), &["exec", "--", "/usr/bin/true"]);
        out.expect_denied("authority_unavailable", "writ exec without the CA");
    }
    let (code, body) = curl(&[&format!("{}/healthz", srv.url)]);
    assert_ne!(code, 0, "curl trusted a test CA: {body}");
    // Plain HTTP to the TLS port is not served.
    let plain = srv.url.replace("https://", "http://");
    let (code, body) = curl(&[&format!("{plain}/healthz")]);
    assert!(code != 0 || !body.contains("ok"), "{body}");
    // A WRIT_CA that is not a certificate file is an error, not a downgrade.
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let out = srv.cli(
        &[("WRIT_CA", s(&junk))],
        Some(&admin),
        &["principal", "list"],
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("junk.pem"), "{out:#?}");
    let log = std::fs::read_to_string(&srv.log).unwrap_or_default();
    assert!(
        !log.contains(&admin),
        "the admin token is in the server's log"
    );
}

#[test]
fn mutual_tls_requires_a_certificate_from_the_client_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Pki::new(tmp.path(), "good");
    let other = Pki::new(tmp.path(), "other");
    let (cert, key) = ca.server("server", "IP:127.0.0.1");
    let (ccert, ckey) = ca.client("client");
    let (ocert, okey) = other.client("client");
    let dir = tmp.path().join("d");
    let admin = init_dir(&dir)["admin_token"].as_str().unwrap().to_owned();
    let srv = Tls::start(
        &dir,
        &[
            "--tls-cert",
            s(&cert),
            "--tls-key",
            s(&key),
            "--client-ca",
            s(&ca.ca()),
        ],
        &[],
    );
    let ca_path = ca.ca();
    let ca_env = ("WRIT_CA", s(&ca_path));
    // No client certificate: the handshake fails.
    let out = srv.cli(&[ca_env], Some(&admin), &["principal", "list"]);
    assert_ne!(out.code, 0, "{out:#?}");
    // One from another CA: refused too.
    let out = srv.cli(
        &[
            ca_env,
            ("WRIT_CLIENT_CERT", s(&ocert)),
            ("WRIT_CLIENT_KEY", s(&okey)),
        ],
        Some(&admin),
        &["principal", "list"],
    );
    assert_ne!(out.code, 0, "{out:#?}");
    // A certificate without its key is a setting error.
    let out = srv.cli(
        &[ca_env, ("WRIT_CLIENT_CERT", s(&ccert))],
        Some(&admin),
        &["principal", "list"],
    );
    assert!(out.stderr.contains("WRIT_CLIENT_KEY"), "{out:#?}");
    // The right one: served; the token still decides who the caller is.
    let mtls = [
        ca_env,
        ("WRIT_CLIENT_CERT", s(&ccert)),
        ("WRIT_CLIENT_KEY", s(&ckey)),
    ];
    srv.cli(&mtls, Some(&admin), &["principal", "list"])
        .expect_code(0, "principal list with a client certificate");
    // Without `--client-cert-identities` a certificate is not a token.
    let (code, body) = curl(&[
        "--cacert",
        s(&ca.ca()),
        "--cert",
        s(&ccert),
        "--key",
        s(&ckey),
        &format!("{}/v1/principals", srv.url),
    ]);
    assert_eq!(code, 0, "{body}");
    assert!(body.contains("\"unauthenticated\""), "{body}");
    let out = srv.cli(&mtls, Some(&admin), &["exec", "--", "/usr/bin/true"]);
    out.expect_code(0, "writ exec with a client certificate");
    let (code, body) = curl(&[
        "--cacert",
        s(&ca.ca()),
        "--cert",
        s(&ccert),
        "--key",
        s(&ckey),
        "-H",
        &format!("Authorization: Bearer {admin}"),
        &format!("{}/metrics", srv.url),
    ]);
    assert_eq!(code, 0, "{body}");
    let failed: f64 = body
        .lines()
        .find(|l| l.starts_with("writ_tls_handshakes_failed_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no handshake metric: {body}"));
    assert!(failed >= 2.0, "{failed}");
}

#[test]
fn a_renewed_certificate_is_served_after_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Pki::new(tmp.path(), "first");
    let second = Pki::new(tmp.path(), "second");
    let (c1, k1) = first.server("server", "IP:127.0.0.1");
    let (c2, k2) = second.server("server", "IP:127.0.0.1");
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::copy(&c1, &cert).unwrap();
    std::fs::copy(&k1, &key).unwrap();
    let dir = tmp.path().join("d");
    init_dir(&dir);
    let srv = Tls::start(&dir, &["--tls-cert", s(&cert), "--tls-key", s(&key)], &[]);
    let healthz = |ca: &Path| curl(&["--cacert", s(ca), &format!("{}/healthz", srv.url)]).0;
    assert_eq!(healthz(&first.ca()), 0);
    std::fs::copy(&c2, &cert).unwrap();
    std::fs::copy(&k2, &key).unwrap();
    let pid = srv.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("the new certificate", Duration::from_secs(5), || {
        healthz(&second.ca()) == 0
    });
    assert_ne!(healthz(&first.ca()), 0);
    // A broken file on reload: the certificate in use stays.
    std::fs::write(&key, "garbage").unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(healthz(&second.ca()), 0);
    let log = std::fs::read_to_string(&srv.log).unwrap();
    assert!(log.contains("TLS reload failed"), "{log}");
}

#[test]
fn plain_http_is_for_loopback_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_dir(&dir);
    let out = run_writ(
        &["--dir", s(&dir), "serve", "--listen", "0.0.0.0:0"],
        &[],
        None,
    );
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("--tls-cert"), "{out:#?}");
    // Clients do not send a token in cleartext off this machine either.
    let out = run_writ(
        &["principal", "list"],
        &[
            ("WRIT_SERVER", "http://192.0.2.7:7070"),
            ("WRIT_TOKEN", "writ_x"),
        ],
        None,
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("cleartext"), "{out:#?}");
    // Nor to a proxy: plain HTTP to loopback never goes through HTTP_PROXY
    // (which would see the token).
    let srv = Server::start();
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let out = run_writ(
        &["principal", "list"],
        &[
            ("WRIT_SERVER", srv.url.as_str()),
            ("WRIT_TOKEN", srv.admin_token.as_str()),
            ("HTTP_PROXY", proxy_url.as_str()),
            ("http_proxy", proxy_url.as_str()),
            ("ALL_PROXY", proxy_url.as_str()),
        ],
        None,
    );
    out.expect_code(0, "principal list with a proxy set");
    assert!(proxy.accept().is_err(), "the proxy was asked");
    // Unless told to, in so many words.
    let mut srv = spawn_writ(
        &[
            "--dir",
            s(&dir),
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--insecure-plain-http",
        ],
        &[],
        None,
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        srv.try_wait().unwrap().is_none(),
        "--insecure-plain-http did not serve"
    );
    let _ = srv.kill();
    let _ = srv.wait();
}

/// The mesh over TLS: PostgreSQL with `ssl=on`, reached with
/// `sslmode=verify-full`; two nodes serving HTTPS; a writ from one verifies
/// on the other. A store whose certificate does not verify is a clear error.
#[test]
fn a_mesh_over_tls_on_a_postgres_with_verify_full() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Pki::new(tmp.path(), "good");
    let other = Pki::new(tmp.path(), "other");
    let (pgcert, pgkey) = ca.server("pg", "IP:127.0.0.1,DNS:localhost");
    let (cert, key) = ca.server("server", "IP:127.0.0.1");
    let cluster = pg::Cluster::start_tls(&pgcert, &pgkey);
    let db = cluster.database();
    let store = format!("{db}?sslmode=verify-full&sslrootcert={}", s(&ca.ca()));
    // The wrong CA: refused, named, no panic.
    let bad = format!("{db}?sslmode=verify-full&sslrootcert={}", s(&other.ca()));
    let out = run_writ(
        &["--dir", s(&tmp.path().join("bad")), "init", "--store", &bad],
        &[],
        None,
    );
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("certificate"), "{out:#?}");
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
    let out = run_writ(
        &[
            "--dir",
            s(&tmp.path().join("a")),
            "--json",
            "init",
            "--store",
            &store,
        ],
        &[],
        None,
    );
    out.expect_code(0, "writ init --store with verify-full");
    let admin = out.json()["admin_token"].as_str().unwrap().to_owned();
    let args = [
        "--tls-cert",
        s(&cert),
        "--tls-key",
        s(&key),
        "--store",
        store.as_str(),
    ];
    let a = Tls::start(&tmp.path().join("a"), &args, &[]);
    let b = Tls::start(&tmp.path().join("b"), &args, &[]);
    let ca_path = ca.ca();
    let env = [("WRIT_CA", s(&ca_path))];
    let out = a.cli(
        &env,
        Some(&admin),
        &[
            "authorize",
            "--resource",
            "Command::\"/usr/bin/true\"",
            "--request",
            "[\"/usr/bin/true\"]",
        ],
    );
    out.expect_code(0, "authorize on node a");
    let writ = out.stdout.trim().to_owned();
    b.cli(&env, None, &["verify", &writ, "--online"])
        .expect_code(0, "the writ verifies on node b");
    b.cli(&env, Some(&admin), &["log", "verify", "--remote"])
        .expect_code(0, "log verify on node b");
    // Every connection of the nodes to the store is TLS (the server's view),
    // and there are some.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tls_sessions, plain_sessions): (i64, i64) = rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(
            &format!("{}/postgres", cluster.base()),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let row = c
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'writ'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    });
    assert!(tls_sessions >= 2, "{tls_sessions} TLS sessions of writ");
    assert_eq!(plain_sessions, 0);
}

/// A log asks its witness over HTTPS: `writ witness --tls-cert`, and `writ
/// serve --witness https://...` trusting the witness's CA through WRIT_CA.
#[test]
fn a_log_asks_its_witness_over_https() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Pki::new(tmp.path(), "good");
    let (cert, key) = ca.server("server", "IP:127.0.0.1");
    let dir = tmp.path().join("d");
    let admin = init_dir(&dir)["admin_token"].as_str().unwrap().to_owned();
    let ca_path = ca.ca();
    let env = [("WRIT_CA", s(&ca_path))];
    // The log's key, from a first start.
    let log_vkey = {
        let srv = Tls::start(&dir, &["--tls-cert", s(&cert), "--tls-key", s(&key)], &[]);
        let (code, body) = curl(&["--cacert", s(&ca_path), &format!("{}/v1/log/key", srv.url)]);
        assert_eq!(code, 0, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["vkey"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let wdir = tmp.path().join("w");
    let mut witness = Command::new(writ_bin())
        .args([
            "--json",
            "witness",
            "--witness-dir",
            s(&wdir),
            "--listen",
            "127.0.0.1:0",
        ])
        .args([
            "--log-key",
            &log_vkey,
            "--tls-cert",
            s(&cert),
            "--tls-key",
            s(&key),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(witness.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let w: Value = serde_json::from_str(&line).unwrap();
    let (wurl, wkey) = (w["url"].as_str().unwrap(), w["vkey"].as_str().unwrap());
    assert!(wurl.starts_with("https://"), "{wurl}");
    let witness_arg = format!("{wurl}={wkey}");
    let srv = Tls::start(
        &dir,
        &[
            "--tls-cert",
            s(&cert),
            "--tls-key",
            s(&key),
            "--witness",
            &witness_arg,
        ],
        &env,
    );
    let out = srv.cli(&env, Some(&admin), &["log", "checkpoint"]);
    out.expect_code(0, "checkpoint");
    let name = wkey.split('+').next().unwrap();
    assert!(
        out.stdout.contains(&format!("— {name} ")),
        "not cosigned: {}",
        out.stdout
    );
    srv.cli(
        &env,
        None,
        &["log", "verify", "--remote", "--witness-key", wkey],
    )
    .expect_code(0, "log verify requiring the witness");
    let _ = witness.kill();
    let _ = witness.wait();
}

/// `POST /v1/authorize` over mutual TLS with no bearer token; (status, body).
fn authorize_by_certificate(url: &str, ca: &Path, cert: &Path, key: &Path) -> (u16, Value) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(ca)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["-H", "Content-Type: application/json", "--data"])
        .arg(exec_req(&["/bin/true"], "exec@host-a").to_string())
        .arg(format!("{url}/v1/authorize"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or_else(|| panic!("{text}"));
    (
        code.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

#[test]
fn a_spiffe_x509_svid_is_enough_to_call_writ_and_policy_sees_its_trust_domain() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Pki::new(tmp.path(), "spire");
    let (cert, key) = ca.server("server", "IP:127.0.0.1");
    // X.509-SVIDs of two trust domains, a certificate with a subject only,
    // and one with two URI SANs (no X.509-SVID has more than one).
    let (svid, svid_key) = ca.client_with(
        "svid",
        "planner",
        Some("URI:spiffe://example.org/ns/prod/sa/planner"),
    );
    let (evil, evil_key) = ca.client_with(
        "evil",
        "planner",
        Some("URI:spiffe://evil.org/ns/prod/sa/planner"),
    );
    let (plain, plain_key) = ca.client_with("plain", "batch-runner", None);
    let (two, two_key) = ca.client_with(
        "two",
        "two",
        Some("URI:spiffe://example.org/a,URI:spiffe://example.org/b"),
    );
    let dir = tmp.path().join("d");
    let admin = init_dir(&dir)["admin_token"].as_str().unwrap().to_owned();
    let srv = Tls::start(
        &dir,
        &[
            "--tls-cert",
            s(&cert),
            "--tls-key",
            s(&key),
            "--client-ca",
            s(&ca.ca()),
            "--client-cert-identities",
        ],
        &[],
    );
    let policy = tmp.path().join("policy");
    std::fs::create_dir_all(&policy).unwrap();
    std::fs::write(
        policy.join("policy.cedar"),
        r#"
@id("workloads-of-example-org")
permit(principal is Workload, action == Action::"exec", resource)
when { context.identity.method == "mtls" && context.identity has trust_domain &&
       context.identity.trust_domain == "example.org" };
@id("the-batch-runner")
permit(principal == Workload::"CN=batch-runner", action == Action::"exec", resource)
when { context.identity.method == "mtls" };
"#,
    )
    .unwrap();
    let ca_path = ca.ca();
    let mtls = [
        ("WRIT_CA", s(&ca_path)),
        ("WRIT_CLIENT_CERT", s(&svid)),
        ("WRIT_CLIENT_KEY", s(&svid_key)),
    ];
    srv.cli(&mtls, Some(&admin), &["policy", "activate", s(&policy)])
        .expect_code(0, "policy activate");

    let (code, v) = authorize_by_certificate(&srv.url, &ca_path, &svid, &svid_key);
    assert_eq!((code, v["decision"].as_str()), (200, Some("allow")), "{v}");
    let claims = claims_of(v["writ"].as_str().unwrap());
    assert_eq!(
        claims["sub"],
        "Workload::\"spiffe://example.org/ns/prod/sa/planner\""
    );
    let (code, v) = authorize_by_certificate(&srv.url, &ca_path, &evil, &evil_key);
    assert_eq!(
        (code, v["reason"].as_str()),
        (403, Some("policy_denied")),
        "{v}"
    );
    let (code, v) = authorize_by_certificate(&srv.url, &ca_path, &plain, &plain_key);
    assert_eq!((code, v["decision"].as_str()), (200, Some("allow")), "{v}");
    assert_eq!(
        claims_of(v["writ"].as_str().unwrap())["sub"],
        "Workload::\"CN=batch-runner\""
    );
    let (code, v) = authorize_by_certificate(&srv.url, &ca_path, &two, &two_key);
    assert_eq!(
        (code, v["reason"].as_str()),
        (401, Some("unauthenticated")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("more than one URI SAN"),
        "{v}"
    );

    // A workload holds no administrator's role.
    let (code, body) = curl(&[
        "--cacert",
        s(&ca_path),
        "--cert",
        s(&svid),
        "--key",
        s(&svid_key),
        &format!("{}/v1/principals", srv.url),
    ]);
    assert_eq!(code, 0, "{body}");
    assert!(
        body.contains(
            "Workload::\\\"spiffe://example.org/ns/prod/sa/planner\\\" is not an administrator"
        ),
        "{body}"
    );

    // A workload disabled or revoked is refused, certificate or not.
    srv.cli(
        &mtls,
        Some(&admin),
        &[
            "revoke",
            "--principal",
            "Workload::\"spiffe://example.org/ns/prod/sa/planner\"",
            "--reason",
            "key compromised",
        ],
    )
    .expect_code(0, "revoke the workload");
    let (code, v) = authorize_by_certificate(&srv.url, &ca_path, &svid, &svid_key);
    assert_eq!(
        (code, v["reason"].as_str()),
        (401, Some("unauthenticated")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("revoked"), "{v}");
}
