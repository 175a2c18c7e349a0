//! Callers proven by identity systems writ did not mint (issue "Workload
//! identity"): JWTs of registered issuers, made by PyJWT with keys the test
//! generates, their keys served over HTTPS (a certificate from an `openssl`
//! CA) or registered from a file; an OIDC-shaped token and a SPIFFE
//! JWT-SVID authenticate and their claims reach the policy; expired, wrong
//! audience, wrong issuer, unknown key id, `alg: none`, HMAC keyed with the
//! public key, a swapped algorithm and a bad signature are each
//! `unauthenticated` with a message that names what failed; a key the
//! issuer publishes later is fetched once, and unknown key ids do not make
//! writ fetch on every request; a revoked principal stays refused; removing
//! the issuer ends its tokens.
//!
//! Needs python3; a venv with `pyjwt[crypto]` is made at `target/pyenv`
//! when missing (`WRIT_SKIP_PY=1` skips).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::pki::Pki;
use crate::common::*;
use serde_json::Value;

/// An HTTPS JWKS endpoint and the tokens of two issuers, made by PyJWT.
const IDP: &str = include_str!("fixtures/identity_idp.py");

const POLICY: &str = r#"
@id("oidc-infra")
permit(principal, action == Action::"exec", resource)
when {
  context has identity && context.identity.method == "oidc" &&
  context.identity has claims && context.identity.claims has team &&
  context.identity.claims.team == "infra"
};
@id("workloads-of-example-org")
permit(principal is Workload, action == Action::"exec", resource)
when {
  context has identity && context.identity has trust_domain &&
  context.identity.trust_domain == "example.org"
};
"#;

struct Idp {
    child: Child,
    port: u16,
    tokens: Value,
    ca: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    fn token(&self, name: &str) -> String {
        self.tokens[name].as_str().unwrap().to_owned()
    }

    /// GET on the IdP (over its TLS, trusting its CA), as JSON.
    fn get(&self, path: &str) -> Value {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert", &self.ca])
            .arg(format!("https://127.0.0.1:{}{path}", self.port))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&out.stderr)))
    }

    fn fetches(&self) -> u64 {
        self.get("/count")["fetches"].as_u64().unwrap()
    }
}

/// The IdP's expected refusal: 401, `unauthenticated`, a message naming `what`.
fn refused(srv: &Server, token: &str, what: &str) {
    let r = srv.authorize(token, &exec_req(&["/bin/true"], "exec@host-a"));
    let v = r.json();
    assert_eq!(r.status, 401, "{what}: {v}");
    assert_eq!(v["reason"], "unauthenticated", "{what}: {v}");
    assert!(
        v["message"].as_str().unwrap_or_default().contains(what),
        "the refusal should say {what:?}: {v}"
    );
}

fn allowed_as(srv: &Server, token: &str, principal: &str) -> String {
    let (writ, jti, _) = srv.authorize_ok(token, &exec_req(&["/bin/true"], "exec@host-a"));
    assert_eq!(claims_of(&writ)["sub"], principal);
    jti
}

#[test]
fn tokens_of_registered_issuers_authenticate_and_every_bad_one_is_refused_by_name() {
    if skip_python("the external issuer test") {
        return;
    }
    let py = python_venv(
        "pyenv",
        "pyjwt[crypto]",
        "import jwt, cryptography; assert jwt.__version__ >= '2'",
    );
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path(), "idp");
    let (cert, key) = pki.server("jwks", "IP:127.0.0.1");
    let spire_jwks = tmp.path().join("spire-jwks.json");
    let mut child = Command::new(&py)
        .args(["-c", IDP])
        .arg(&cert)
        .arg(&key)
        .arg(&spire_jwks)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let idp = Idp {
        child,
        port: u16::try_from(v["port"].as_u64().unwrap()).unwrap(),
        tokens: v["tokens"].clone(),
        ca: pki.ca().to_str().unwrap().to_owned(),
    };

    let srv = Server::start();
    activate_policy(&srv, "identity", POLICY);
    let admin = Some(srv.admin_token.as_str());
    // Before any issuer is registered, a JWT is nobody.
    refused(&srv, &idp.token("es256"), "no issuer is registered");

    let jwks_url = format!("https://127.0.0.1:{}/jwks", idp.port);
    // Keys over plain http are refused at registration.
    let out = srv.cli(
        admin,
        &[
            "issuer",
            "add",
            "plain",
            "--issuer",
            "https://plain.test",
            "--audience",
            "writ",
            "--jwks",
            "http://127.0.0.1:1/jwks",
        ],
    );
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("not https"), "{out:#?}");
    srv.cli(
        admin,
        &[
            "issuer",
            "add",
            "idp",
            "--issuer",
            "https://idp.test",
            "--audience",
            "writ",
            "--jwks",
            &jwks_url,
            "--jwks-ca",
            &idp.ca,
        ],
    )
    .expect_code(0, "issuer add idp");
    srv.cli(
        admin,
        &[
            "issuer",
            "add",
            "spire",
            "--issuer",
            "https://spire.test",
            "--audience",
            "writ",
            "--jwks",
            spire_jwks.to_str().unwrap(),
            "--principal-type",
            "Workload",
            "--trust-domain",
            "example.org",
        ],
    )
    .expect_code(0, "issuer add spire");
    let list = srv.cli(admin, &["--json", "issuer", "list"]).json();
    let names: Vec<&str> = list["issuers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["idp", "spire"]);
    assert_eq!(list["issuers"][1]["maps_to"], "Workload::\"<sub>\"");
    assert_eq!(list["issuers"][1]["trust_domain"], "example.org");

    // Each allowed algorithm; the claims reach the policy.
    let first_fetch = Instant::now();
    for t in ["es256", "rs256", "eddsa"] {
        allowed_as(&srv, &idp.token(t), "Agent::\"planner\"");
    }
    assert_eq!(idp.fetches(), 1, "the keys are fetched once and cached");
    let r = srv.authorize(
        &idp.token("other_team"),
        &exec_req(&["/bin/true"], "exec@host-a"),
    );
    assert_eq!(r.json()["reason"], "policy_denied", "{}", r.text());
    // A SPIFFE JWT-SVID (aud as an array) of the trust domain the policy names.
    allowed_as(
        &srv,
        &idp.token("svid"),
        "Workload::\"spiffe://example.org/ns/prod/sa/planner\"",
    );
    // The issuer speaks for example.org only: an SVID of another trust
    // domain it signed is no one.
    let r = srv.authorize(
        &idp.token("svid_elsewhere"),
        &exec_req(&["/bin/true"], "exec@host-a"),
    );
    assert_eq!(r.json()["reason"], "unauthenticated", "{}", r.text());
    assert!(
        r.text().contains("speaks for trust domain example.org"),
        "{}",
        r.text()
    );

    // Every bad token, refused with its cause.
    for (t, what) in [
        ("expired", "expired at"),
        ("not_yet", "not valid before"),
        ("no_exp", "no `exp` claim"),
        ("wrong_aud", "`aud` does not hold"),
        (
            "wrong_iss",
            "no registered issuer has `iss` \"https://evil.test\"",
        ),
        (
            "unknown_kid",
            "key id \"stranger\" is not in issuer idp's key set",
        ),
        ("wrong_key", "signature does not verify"),
        ("tampered", "signature does not verify"),
        ("alg_swap", "does not fit issuer idp's key"),
        ("alg_none", "algorithm `none` is not allowed"),
        ("hmac_pubkey", "algorithm `HS256` is not allowed"),
        ("later", "key id \"later\" is not in issuer idp's key set"),
    ] {
        refused(&srv, &idp.token(t), what);
    }
    // Unknown key ids do not make writ fetch on every request.
    for _ in 0..20 {
        refused(
            &srv,
            &idp.token("unknown_kid"),
            "not in issuer idp's key set",
        );
    }
    assert!(idp.fetches() <= 2, "fetches: {}", idp.fetches());

    // The issuer publishes a new key: a token naming it makes writ fetch
    // again (once the refresh interval since the last fetch has passed).
    idp.get("/rotate");
    let wait = Duration::from_secs(11).saturating_sub(first_fetch.elapsed());
    std::thread::sleep(wait);
    allowed_as(&srv, &idp.token("later"), "Agent::\"planner\"");
    let fetched = idp.fetches();
    assert!((2..=3).contains(&fetched), "fetches: {fetched}");

    // An external identity holds no role.
    let r = srv.get("/v1/principals", Some(&idp.token("es256")));
    assert_eq!(r.status, 403, "{}", r.text());

    // A revoked principal stays refused, whatever token it brings.
    srv.cli(
        admin,
        &[
            "revoke",
            "--principal",
            "Agent::\"planner\"",
            "--reason",
            "left the team",
        ],
    )
    .expect_code(0, "revoke the principal");
    refused(&srv, &idp.token("es256"), "is revoked");

    // Removing an issuer ends its tokens at once.
    srv.cli(admin, &["issuer", "remove", "spire"])
        .expect_code(0, "issuer remove");
    refused(
        &srv,
        &idp.token("svid"),
        "no registered issuer has `iss` \"https://spire.test\"",
    );

    // Each change is in the public log.
    let entries = srv.log_entries();
    let changes: Vec<&Value> = entries
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "issuer_change")
        .collect();
    assert_eq!(changes.len(), 3, "{changes:#?}");
    assert_eq!(changes[0]["name"], "idp");
    assert_eq!(changes[0]["jwks"], jwks_url);
    assert_eq!(changes[2]["change"], "removed");
    // The decisions logged how their callers authenticated, in the sealed
    // content an auditor reads: the identity the policy saw.
    let seen = entries
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["type"] == "decision" && e["principal"] == "Agent::\"planner\"")
        .unwrap();
    assert_eq!(seen["context"]["identity"]["method"], "oidc", "{seen}");
    assert_eq!(seen["context"]["identity"]["issuer"], "https://idp.test");
    assert_eq!(seen["context"]["identity"]["claims"]["team"], "infra");
}

/// `writ serve --unix`: a local caller is who the kernel says it is,
/// mapped by the data dir's peercred.json, and needs no token anywhere; a
/// local `writ exec` needs none either. A program that `writ exec` runs has
/// its user's uid but is not taken for its user: without its run's
/// credential it is no one, with it it is a child of its run.
#[test]
fn local_callers_are_named_by_the_kernel_and_governed_programs_are_not_their_user() {
    use std::os::unix::fs::MetadataExt as _;
    let mut srv = Server::start();
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    std::fs::write(
        srv.dir.join("peercred.json"),
        // The first rule names a digest no executable has: executables are
        // hashed (only rules that name a digest make the server hash them).
        format!(
            r#"{{"rules": [{{"uid": {uid}, "exe_sha256": "sha256:{}", "principal": "Agent::\"never\""}},
                           {{"uid": {uid}, "principal": "User::\"local\""}}]}}"#,
            "0".repeat(64)
        ),
    )
    .unwrap();
    activate_policy(
        &srv,
        "local",
        "@id(\"local-exec\")\npermit (principal == User::\"local\", action == Action::\"exec\", resource);\n",
    );
    srv.restart_with(&["--unix"]);
    let sock = srv.dir.join("writ.sock");
    let server = format!("unix:{}", sock.display());
    // A plain CLI call over the socket, no token: the kernel's uid names it.
    let out = run_writ(
        &[
            "authorize",
            "--action",
            "Action::\"exec\"",
            "--resource",
            "Command::\"/bin/true\"",
            "--request",
            r#"{"argv": ["/bin/true"]}"#,
            "--audience",
            "exec@local",
        ],
        &[("WRIT_SERVER", server.as_str())],
        None,
    );
    out.expect_code(0, "writ authorize over the Unix socket without a token");
    assert_eq!(claims_of(out.stdout.trim())["sub"], "User::\"local\"");
    let decision = srv
        .log_entries()
        .into_iter()
        .rev()
        .find(|e| e["entry"]["type"] == "decision")
        .unwrap();
    let identity = &decision["entry"]["context"]["identity"];
    assert_eq!(identity["method"], "peercred", "{decision}");
    assert_eq!(identity["uid"], uid, "{decision}");
    assert_eq!(identity["sandboxed"], false, "{decision}");
    assert!(
        identity["exe_sha256"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{decision}"
    );
    // A local `writ exec` finds the socket in its data dir. Its program
    // asks over the same socket once without its run's credential (no
    // one) and once with it (a child of the run).
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path().display();
    let body = r#"{"action":"Action::\"exec\"","resource":"Command::\"/bin/true\"","request":{"argv":["/bin/true"]},"audience":"exec@local"}"#;
    let ask = |auth: &str, name: &str| {
        format!(
            "curl -s -o {s}/{name} -w '%{{http_code}}' --unix-socket {} {auth} -H 'content-type: application/json' \
             --data-binary '{body}' http://localhost/v1/authorize > {s}/{name}.status",
            sock.display()
        )
    };
    let program = format!(
        "{}; {}",
        ask("", "bare"),
        ask("-H \"authorization: Bearer $WRIT_TOKEN\"", "credential")
    );
    let dir = srv.dir.to_str().unwrap().to_owned();
    let out = run_writ(
        &[
            "exec",
            "--write",
            &s.to_string(),
            "--",
            "sh",
            "-c",
            &program,
        ],
        &[("WRIT_DIR", dir.as_str())],
        Some(scratch.path()),
    );
    out.expect_code(0, "a local writ exec without a token");
    let read = |name: &str| std::fs::read_to_string(scratch.path().join(name)).unwrap();
    assert_eq!(read("bare.status"), "401", "{}", read("bare"));
    assert!(read("bare").contains("runs sandboxed"), "{}", read("bare"));
    assert_eq!(read("credential.status"), "200", "{}", read("credential"));
    let child: Value = serde_json::from_str(&read("credential")).unwrap();
    let claims = claims_of(child["writ"].as_str().unwrap());
    assert_eq!(claims["sub"], "User::\"local\"");
    assert_eq!(claims["writ"]["lineage"]["depth"], 1, "{claims}");
    // A socket a sandboxed process serves in a data dir (what a governed
    // program could plant where it may write) is not used by a local run:
    // with no token it then has nothing to ask.
    let planted = tempfile::tempdir().unwrap();
    let fake = planted.path().join("writ.sock");
    let mut squatter = Command::new("setpriv")
        .args(["--no-new-privs", "python3", "-c"])
        .arg(format!(
            "import socket,time\ns=socket.socket(socket.AF_UNIX)\ns.bind({:?})\ns.listen(8)\ntime.sleep(30)",
            fake.to_str().unwrap()
        ))
        .spawn()
        .unwrap();
    wait_for("the planted socket", Duration::from_secs(10), || {
        fake.exists()
    });
    let out = run_writ(
        &["exec", "--", "/bin/true"],
        &[("WRIT_DIR", planted.path().to_str().unwrap())],
        Some(scratch.path()),
    );
    let _ = squatter.kill();
    let _ = squatter.wait();
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("runs sandboxed"), "{out:#?}");
    assert!(out.stderr.contains("needs a token"), "{out:#?}");
    // No rule for a uid: no one, with the reason.
    std::fs::write(srv.dir.join("peercred.json"), r#"{"rules": []}"#).unwrap();
    srv.restart_with(&["--unix"]);
    let r = Command::new("curl")
        .args([
            "-s",
            "--unix-socket",
            sock.to_str().unwrap(),
            "http://localhost/v1/principals",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(text.contains("mapped to no principal"), "{text}");
}
