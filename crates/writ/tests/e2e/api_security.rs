//! The API itself: no route changes state without the right token, and no
//! secret (bearer tokens, private keys) ever shows in the server's log (at
//! debug level), its metrics or its pages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::*;
use base64::Engine as _;
use serde_json::{json, Value};

/// Everything an unauthorized call could have changed.
fn state(srv: &Server) -> Value {
    let entries = srv.log_entries().len();
    let revocations = srv.get("/v1/revocations", Some(&srv.admin_token)).json();
    let policies = srv.get("/v1/policies", Some(&srv.admin_token)).json();
    let jwks = srv.get("/.well-known/jwks.json", None).json();
    let checkpoints = srv
        .get("/v1/log/checkpoints?from=0&limit=1000", None)
        .json();
    let kid = std::fs::read_to_string(srv.dir.join("keys/current")).unwrap();
    let principals = srv.get("/v1/principals", Some(&srv.admin_token)).json();
    let issuers = srv.get("/v1/issuers", Some(&srv.admin_token)).json();
    json!({"entries": entries, "revocations": revocations, "policies": policies,
           "jwks": jwks, "checkpoints": checkpoints.as_array().map(Vec::len), "kid": kid,
           "principals": principals, "issuers": issuers})
}

/// Who may call each POST route.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Need {
    /// No token (and it changes nothing).
    Nobody,
    /// Any registered principal (the execution routes: the writ's owner).
    Principal,
    Admin,
}

fn need(path: &str) -> Need {
    match path {
        // The console's proof page checks a pasted writ; it changes nothing.
        "/v1/verify" | "/console/api/proof" => Need::Nobody,
        "/v1/authorize"
        | "/access/v1/evaluation"
        | "/v1/executions/{jti}/start"
        | "/v1/executions/{jti}/renew"
        | "/v1/executions/{jti}/finish" => Need::Principal,
        // The console's demo plays a scenario that revokes a writ.
        "/v1/revocations"
        | "/v1/log/checkpoint"
        | "/v1/principals"
        | "/v1/principals/rotate"
        | "/v1/principals/disable"
        | "/v1/principals/enable"
        | "/v1/policies"
        | "/v1/keys/rotate"
        | "/v1/keys/retire"
        | "/v1/log/erase"
        | "/v1/issuers"
        | "/v1/issuers/remove"
        | "/v1/pins"
        | "/console/api/demo" => Need::Admin,
        other => panic!("POST {other} is not classified in api_security.rs: who may call it?"),
    }
}

#[test]
fn no_state_changing_route_works_without_the_right_token() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let mallory = srv.add_principal("Agent::\"mallory\"");
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["lifetime_secs"] = json!(600);
    let (_, jti, first) = srv.authorize_ok(&agent, &req);
    let first_index = first["log_index"].as_u64().unwrap();
    // A second writ, started, for renew and finish.
    let (_, run, _) = srv.authorize_ok(&agent, &req);
    assert_eq!(srv.start_execution(&agent, &run).status, 200);
    // A real signed bundle, different from the active one.
    let bdir = srv.tmp.path().join("b2");
    std::fs::create_dir_all(&bdir).unwrap();
    std::fs::write(
        bdir.join("p.cedar"),
        "@id(\"all\")\npermit (principal, action, resource);\n",
    )
    .unwrap();
    let bfile = srv.tmp.path().join("b2.json");
    srv.cli(
        None,
        &[
            "policy",
            "bundle",
            bdir.to_str().unwrap(),
            "--out",
            bfile.to_str().unwrap(),
        ],
    )
    .expect_code(0, "writ policy bundle");
    let bundle: Value = serde_json::from_str(&std::fs::read_to_string(&bfile).unwrap()).unwrap();

    // Every POST route of the OpenAPI document, each with a body that the
    // right caller would have had accepted.
    let openapi = srv.get("/openapi.json", None).json();
    let posts: BTreeSet<String> = openapi["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, ops)| ops.get("post").is_some())
        .map(|(p, _)| p.clone())
        .collect();
    assert!(posts.len() >= 11, "{posts:?}");
    let body_for = |path: &str| -> (String, Value) {
        let (path, body) = match path {
            "/v1/authorize" => (path.to_owned(), exec_req(&["/usr/bin/true"], AUD)),
            "/access/v1/evaluation" => (
                path.to_owned(),
                json!({"action": {"name": "exec"}, "resource": {"type": "Command", "id": "/usr/bin/true"}}),
            ),
            "/v1/verify" | "/console/api/proof" => (path.to_owned(), json!({"writ": "x.y.z"})),
            "/console/api/demo" => (path.to_owned(), json!({})),
            "/v1/executions/{jti}/start" => (path.replace("{jti}", &jti), json!({})),
            "/v1/executions/{jti}/renew" => (path.replace("{jti}", &run), json!({})),
            "/v1/executions/{jti}/finish" => {
                (path.replace("{jti}", &run), json!({"exit_status": 0}))
            }
            "/v1/log/checkpoint" => (path.to_owned(), json!({})),
            "/v1/revocations" => (path.to_owned(), json!({"jti": jti, "reason": "x"})),
            "/v1/principals" => (
                path.to_owned(),
                json!({"uid": "Agent::\"eve\"", "admin": true}),
            ),
            "/v1/principals/rotate" | "/v1/principals/disable" | "/v1/principals/enable" => {
                (path.to_owned(), json!({"uid": "Agent::\"mallory\""}))
            }
            "/v1/policies" => (path.to_owned(), bundle.clone()),
            "/v1/keys/rotate" => (path.to_owned(), json!({})),
            "/v1/keys/retire" => (path.to_owned(), json!({"kid": "not-a-key"})),
            "/v1/issuers" => (
                path.to_owned(),
                json!({"name": "evil", "issuer": "https://evil.test", "audience": "writ",
                       "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519",
                                          "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}}),
            ),
            "/v1/issuers/remove" => (path.to_owned(), json!({"name": "evil"})),
            "/v1/pins" => (
                path.to_owned(),
                json!({"resource": "Tool::\"fs/write\"", "digest": format!("sha256:{}", "ab".repeat(32))}),
            ),
            "/v1/log/erase" => (
                path.to_owned(),
                json!({"index": first_index, "reason": "x"}),
            ),
            other => panic!("no body for POST {other}"),
        };
        (path, body)
    };

    // The server checkpoints the log each second once it has grown: let it
    // catch up first, so that only a call could change the count.
    let size = srv.public_log_entries().len() as u64;
    wait_for(
        "a checkpoint of the whole log",
        Duration::from_secs(10),
        || {
            srv.get("/v1/log/checkpoints?from=0&limit=1000", None)
                .json()
                .as_array()
                .and_then(|a| a.last().cloned())
                .and_then(|c| c["size"].as_u64())
                == Some(size)
        },
    );
    let before = state(&srv);
    let mut tried = 0;
    for p in &posts {
        let (path, body) = body_for(p);
        let mut callers: Vec<(&str, Option<&str>, u16)> = vec![];
        match need(p) {
            Need::Nobody => {}
            Need::Principal | Need::Admin => {
                for (what, token) in [
                    ("no token", None),
                    (
                        "an unknown token",
                        Some("writ_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                    ),
                    ("an empty token", Some("")),
                ] {
                    callers.push((what, token, 401));
                }
            }
        }
        if need(p) == Need::Admin {
            callers.push(("a principal's token", Some(agent.as_str()), 403));
        }
        if p.starts_with("/v1/executions/") {
            callers.push(("another principal's token", Some(mallory.as_str()), 403));
        }
        for (what, token, want) in callers {
            let r = srv.post(&path, token, &body);
            assert_eq!(r.status, want, "POST {path} with {what}: {}", r.text());
            let v = r.json();
            if want == 401 {
                assert_eq!(v["reason"], "unauthenticated", "POST {path}, {what}: {v}");
            }
            assert!(v.get("writ").is_none() && v.get("token").is_none(), "{v}");
            tried += 1;
        }
        // The admin token with its last character changed is someone else.
        if need(p) != Need::Nobody {
            let mut t = srv.admin_token.clone();
            let last = t.pop().unwrap();
            t.push(if last == 'A' { 'B' } else { 'A' });
            let r = srv.post(&path, Some(&t), &body);
            assert_eq!(
                r.status,
                401,
                "POST {path} with a near-miss token: {}",
                r.text()
            );
            tried += 1;
        }
        // The public route changes nothing either.
        if need(p) == Need::Nobody {
            assert_eq!(srv.post(&path, None, &body).status, 200);
        }
    }
    assert!(tried >= 30, "only {tried} calls were tried");
    assert_eq!(
        state(&srv),
        before,
        "an unauthorized call changed something"
    );
    // GET routes that reveal state need a token too.
    for path in [
        "/v1/revocations",
        "/v1/policies",
        "/v1/principals",
        &format!("/v1/lineage/{jti}"),
    ] {
        assert_eq!(srv.get(path, None).status, 401, "GET {path}");
    }
    assert_eq!(srv.get("/v1/principals", Some(&agent)).status, 403);

    // The same bodies with the right token do change state: the check above
    // could fail.
    for p in [
        "/v1/revocations",
        "/v1/principals",
        "/v1/policies",
        "/v1/keys/rotate",
        "/v1/principals/disable",
        "/v1/log/erase",
    ] {
        let (path, body) = body_for(p);
        let r = srv.post(&path, Some(&srv.admin_token), &body);
        assert!(
            (200..300).contains(&r.status),
            "POST {path} as admin: {}",
            r.text()
        );
    }
    let after = state(&srv);
    for k in [
        "entries",
        "revocations",
        "policies",
        "jwks",
        "kid",
        "principals",
    ] {
        assert_ne!(
            after[k], before[k],
            "{k} did not change with the admin token"
        );
    }
}

/// The base64 body of a PEM file (the key material itself).
fn pem_body(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

#[test]
fn secrets_never_appear_in_logs_metrics_or_pages() {
    let holder = tempfile::tempdir().unwrap();
    let srv = Server::start_at(
        &holder.path().join("data"),
        &["--checkpoint-interval-ms", "50"],
        &[("WRIT_LOG", "debug")],
    );
    let agent = srv.add_principal("Agent::\"planner\"");
    // Traffic that touches every secret: good and bad tokens, allows,
    // denials, a start, a revocation, a principal, a rotation.
    let (w, jti, _) = srv.authorize_ok(&agent, &exec_req(&["/usr/bin/true"], AUD));
    srv.authorize(&agent, &exec_req(&["/usr/bin/rm"], AUD));
    srv.authorize(&format!("{agent}x"), &exec_req(&["/usr/bin/true"], AUD));
    srv.verify(&json!({"writ": w}));
    srv.start_execution(&agent, &jti);
    srv.post(
        "/v1/revocations",
        Some(&srv.admin_token),
        &json!({"jti": jti}),
    );
    let bob = srv.add_principal("Agent::\"bob\"");
    srv.authorize_ok(&bob, &exec_req(&["/usr/bin/true"], AUD));
    srv.post("/v1/keys/rotate", Some(&srv.admin_token), &json!({}));
    std::thread::sleep(std::time::Duration::from_millis(300));

    let mut secrets: Vec<(String, String)> = vec![
        ("admin token".into(), srv.admin_token.clone()),
        ("agent token".into(), agent.clone()),
        ("bob's token".into(), bob.clone()),
    ];
    // The random part of each token on its own, too.
    for (what, t) in secrets.clone() {
        secrets.push((
            format!("{what} without its prefix"),
            t.trim_start_matches("writ_").to_owned(),
        ));
    }
    for entry in std::fs::read_dir(srv.dir.join("keys")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pem") {
            let body = pem_body(&path);
            let key =
                writ_artifact::WritKey::from_pkcs8_pem(&std::fs::read_to_string(&path).unwrap())
                    .unwrap();
            let der = base64::engine::general_purpose::STANDARD
                .decode(&body)
                .unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // PKCS#8 for Ed25519 (v1 or v2): ... 04 22 04 20 <32-byte seed> [public key].
            assert_eq!(&der[12..16], &[0x04, 0x22, 0x04, 0x20], "{name:?}");
            let seed = &der[16..48];
            secrets.push((format!("{name} PEM"), body.chars().take(40).collect()));
            secrets.push((format!("{name} seed hex"), hex(seed)));
            secrets.push((format!("{name} seed base64url"), b64(seed)));
            secrets.push((
                format!("{name} seed base64"),
                base64::engine::general_purpose::STANDARD.encode(seed),
            ));
            assert!(!key.kid().is_empty());
        }
    }
    assert!(secrets.len() >= 6 + 4 * 3, "{secrets:?}");

    let log = srv.log();
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "the server logged at debug level: {log}"
    );
    let mut places: Vec<(String, String)> = vec![("serve stderr (WRIT_LOG=debug)".into(), log)];
    for path in [
        "/",
        "/metrics",
        "/openapi.json",
        "/healthz",
        "/readyz",
        "/.well-known/jwks.json",
        "/v1/log/key",
        "/v1/log/checkpoint",
        "/v1/log/entries?start=0&end=1000",
    ] {
        places.push((format!("GET {path}"), srv.get(path, None).text()));
    }
    for path in [
        "/v1/policies",
        "/v1/revocations",
        &format!("/v1/lineage/{jti}"),
    ] {
        places.push((
            format!("GET {path} (admin)"),
            srv.get(path, Some(&srv.admin_token)).text(),
        ));
    }
    for (place, text) in &places {
        assert!(!text.is_empty(), "{place} is empty");
        for (what, secret) in &secrets {
            assert!(!text.contains(secret.as_str()), "{what} appears in {place}");
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The status line of one request (the body is not waited for: an event
/// stream never ends).
fn status_of(srv: &Server, method: &str, path: &str, token: Option<&str>, body: &Value) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let bytes = if method == "POST" {
        serde_json::to_vec(body).unwrap()
    } else {
        Vec::new()
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        bytes.len()
    );
    if method == "POST" {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&bytes).unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if s.read(&mut b).unwrap() == 0 {
            break;
        }
        line.push(b[0]);
    }
    let text = String::from_utf8_lossy(&line);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status line: {text:?}"))
}

/// One permission table: every route of the OpenAPI document is called as
/// an anonymous caller, a principal, an auditor and an administrator, and
/// each is let through exactly as its class (`writ_server::access::TABLE`)
/// says: a route a class may not call answers 401 (no token) or 403, one it
/// may call answers anything else.
#[test]
fn every_route_lets_through_exactly_its_class() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let r = srv.post(
        "/v1/principals",
        Some(&srv.admin_token),
        &json!({"uid": "User::\"auditor\"", "auditor": true}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let auditor = r.json()["token"].as_str().unwrap().to_owned();
    srv.add_principal("Agent::\"victim\"");
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["lifetime_secs"] = json!(600);
    let (_, unstarted, _) = srv.authorize_ok(&agent, &req);
    let (_, running, _) = srv.authorize_ok(&agent, &req);
    assert_eq!(srv.start_execution(&agent, &running).status, 200);
    let hash = srv.active_policy();
    let openapi = srv.get("/openapi.json", None).json();
    // The classes this test expects, written out independently of the
    // server's table.
    let class_of = |m: &str, p: &str| -> &'static str {
        match (m, p) {
            ("GET", "/")
            | ("GET", "/healthz")
            | ("GET", "/readyz")
            | ("GET", "/openapi.json")
            | ("GET", "/.well-known/jwks.json")
            | ("POST", "/v1/verify")
            | ("POST", "/console/api/proof")
            | ("GET", "/console/api/proof") => "public",
            ("GET", "/v1/log/bundles/{hash}") | ("GET", "/v1/log/contents") => "auditor",
            ("GET", p) if p.starts_with("/v1/log/") => "public",
            ("GET", p) if p.starts_with("/console/api/") && p != "/console/api/health" => "auditor",
            ("POST", "/v1/revocations")
            | ("POST", "/v1/policies")
            | ("POST", "/v1/keys/rotate")
            | ("POST", "/v1/keys/retire")
            | ("POST", "/v1/log/checkpoint")
            | ("POST", "/v1/log/erase")
            | ("POST", "/console/api/demo")
            | ("GET", "/v1/principals")
            | ("POST", "/v1/pins") => "admin",
            ("GET", "/v1/pins") => "auditor",
            (_, p) if p.starts_with("/v1/principals") || p.starts_with("/v1/issuers") => "admin",
            _ => "principal",
        }
    };
    let body_for = |m: &str, p: &str| -> Value {
        if m != "POST" {
            return json!({});
        }
        match p {
            "/v1/authorize" => exec_req(&["/usr/bin/true"], AUD),
            "/access/v1/evaluation" => {
                json!({"action": {"name": "exec"}, "resource": {"type": "Command", "id": "/usr/bin/true"}})
            }
            "/v1/verify" | "/console/api/proof" => json!({"writ": "x.y.z"}),
            "/v1/revocations" => json!({"principal": "Agent::\"victim\""}),
            "/v1/principals" => json!({"uid": "Agent::\"new\""}),
            "/v1/principals/rotate" | "/v1/principals/disable" | "/v1/principals/enable" => {
                json!({"uid": "Agent::\"victim\""})
            }
            "/v1/keys/retire" => json!({"kid": "none"}),
            "/v1/issuers/remove" => json!({"name": "none"}),
            "/v1/pins" => json!({"resource": "Tool::\"fs/write\"", "digest": "sha256:x"}),
            // Entry 0 is not a decision: refused after the permission check.
            "/v1/log/erase" => json!({"index": 0, "reason": "x"}),
            "/v1/executions/{jti}/finish" => json!({"exit_status": 0}),
            _ => json!({}),
        }
    };
    let mut checked = 0;
    for (path, ops) in openapi["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let m = method.to_ascii_uppercase();
            let class = class_of(&m, path);
            let concrete = path.replace("{hash}", &hash).replace(
                "{jti}",
                if path.ends_with("/start") {
                    &unstarted
                } else {
                    &running
                },
            );
            let concrete = if concrete == "/v1/log/proof/inclusion" {
                "/v1/log/proof/inclusion?index=0&size=1".to_owned()
            } else if concrete == "/v1/log/proof/consistency" {
                "/v1/log/proof/consistency?first=1&second=1".to_owned()
            } else {
                concrete
            };
            let body = body_for(&m, path);
            let execution = path.starts_with("/v1/executions/");
            for (who, token, rank) in [
                ("anonymous", None, 0),
                ("a principal", Some(agent.as_str()), 1),
                ("an auditor", Some(auditor.as_str()), 2),
                ("an administrator", Some(srv.admin_token.as_str()), 3),
            ] {
                // The execution routes are the writ's owner's: only the
                // owner and anonymous are asked (the class is principal).
                if execution && rank >= 2 {
                    continue;
                }
                let need = match class {
                    "public" => 0,
                    "principal" => 1,
                    "auditor" => 2,
                    _ => 3,
                };
                let auditor_passes = class == "auditor" && rank == 3;
                let may = rank >= need || auditor_passes;
                let status = status_of(&srv, &m, &concrete, token, &body);
                if may {
                    assert!(
                        status != 401 && status != 403,
                        "{m} {path} ({class}) as {who}: {status}"
                    );
                } else {
                    let want = if rank == 0 { 401 } else { 403 };
                    assert_eq!(status, want, "{m} {path} ({class}) as {who}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 150, "only {checked} calls were checked");
}
