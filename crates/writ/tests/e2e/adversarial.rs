//! The adversarial suite: attacks on writs, requests and the API that
//! `reason_codes.rs`, `bad_input.rs` and `exec.rs` do not already make, one
//! test per attack, each against a real `writ serve` and denied with its
//! expected reason code. SECURITY.md's attack table lists every attack of
//! all these suites with its expected code and test; the last test here
//! checks that table against the test sources, so the two cannot drift.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::*;
use serde_json::{json, Value};
use writ_artifact::WritKey;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// POST /v1/verify must deny `body` with `code`.
fn online_denied(srv: &Server, body: &Value, code: &str, what: &str) -> Value {
    let v = srv.verify(body);
    assert_eq!(
        (v["valid"].as_bool(), v["reason"].as_str()),
        (Some(false), Some(code)),
        "{what}: POST /v1/verify: {v}"
    );
    v
}

/// `writ verify` on the data dir (offline, no server) must deny with `code`.
fn offline_denied(srv: &Server, writ: &str, extra: &[&str], code: &str, what: &str) {
    let mut args = vec!["--dir", srv.dir_str(), "verify", writ];
    args.extend_from_slice(extra);
    run_writ(&args, &[], None).expect_denied(code, &format!("{what}: writ verify (data dir)"));
}

/// Both doors.
fn denied(srv: &Server, writ: &str, code: &str, what: &str) {
    online_denied(srv, &json!({"writ": writ}), code, what);
    offline_denied(srv, writ, &[], code, what);
}

/// A server, an agent and one allowed writ (10 minutes) bound to a request
/// and an environment.
struct Fx {
    srv: Server,
    agent: String,
    writ: String,
    jti: String,
}

fn fx() -> Fx {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let (writ, jti, _) = srv.authorize_ok(&agent, &bound_req());
    Fx {
        srv,
        agent,
        writ,
        jti,
    }
}

fn bound_req() -> Value {
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["environment"] = json!({"host": "host-a", "cwd": "/srv"});
    req["lifetime_secs"] = json!(600);
    req
}

/// The writ's claims, edited by `edit`, re-signed by `key` under the
/// writ's own (canonical) header.
fn resign(key: &WritKey, writ: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut c = claims_of(writ);
    edit(&mut c);
    let header = canonical(&json!({"alg": "EdDSA", "kid": key.kid(), "typ": "writ+jwt"}));
    sign_raw(key, &header, &canonical(&c))
}

fn log_len(srv: &Server) -> usize {
    srv.log_entries().len()
}

fn load_key(path: &std::path::Path) -> WritKey {
    WritKey::from_pkcs8_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

// ---------------------------------------------------------------- kid confusion

#[test]
fn policy_key_signature_under_its_own_kid_is_invalid_signature() {
    let f = fx();
    // The policy key is trusted for bundles, never for writs.
    let forged = resign(&f.srv.policy_key(), &f.writ, |_| {});
    assert_ne!(header_of(&forged)["kid"], header_of(&f.writ)["kid"]);
    denied(&f.srv, &forged, "invalid_signature", "policy key, own kid");
}

#[test]
fn log_key_signature_under_its_own_kid_is_invalid_signature() {
    let f = fx();
    let log_key = load_key(&f.srv.dir.join("keys/log.pem"));
    let forged = resign(&log_key, &f.writ, |_| {});
    denied(&f.srv, &forged, "invalid_signature", "log key, own kid");
}

#[test]
fn policy_key_signature_under_the_writ_kid_is_invalid_signature() {
    let f = fx();
    let (h, p, _) = parts(&f.writ);
    let forged = sign_raw(&f.srv.policy_key(), &unb64(&h), &unb64(&p));
    denied(&f.srv, &forged, "invalid_signature", "policy key, writ kid");
}

#[test]
fn path_traversal_kid_is_malformed_artifact() {
    let f = fx();
    let (_, p, _) = parts(&f.writ);
    for kid in ["../keys/policy", "writ/../../policy.pem", "a b", "kid\u{0}"] {
        let header = canonical(&json!({"alg": "EdDSA", "kid": kid, "typ": "writ+jwt"}));
        let forged = sign_raw(&f.srv.writ_key(), &header, &unb64(&p));
        denied(
            &f.srv,
            &forged,
            "malformed_artifact",
            &format!("kid {kid:?}"),
        );
    }
}

#[test]
fn empty_kid_is_invalid_signature() {
    let f = fx();
    let (_, p, _) = parts(&f.writ);
    let header = br#"{"alg":"EdDSA","kid":"","typ":"writ+jwt"}"#;
    let forged = sign_raw(&f.srv.writ_key(), header, &unb64(&p));
    denied(&f.srv, &forged, "invalid_signature", "empty kid");
}

// ---------------------------------------------------------------- duplicate JSON keys

#[test]
fn duplicate_alg_in_the_header_is_malformed_artifact() {
    let f = fx();
    let (_, p, _) = parts(&f.writ);
    let kid = f.srv.init["writ_kid"].as_str().unwrap();
    // A lenient parser keeps the first (EdDSA) or the last (none) alg.
    for header in [
        format!(r#"{{"alg":"EdDSA","alg":"none","kid":"{kid}","typ":"writ+jwt"}}"#),
        format!(r#"{{"alg":"none","alg":"EdDSA","kid":"{kid}","typ":"writ+jwt"}}"#),
    ] {
        let forged = sign_raw(&f.srv.writ_key(), header.as_bytes(), &unb64(&p));
        denied(&f.srv, &forged, "malformed_artifact", &header);
    }
}

#[test]
fn duplicate_keys_in_a_request_body_are_refused_and_not_logged() {
    let f = fx();
    let before = log_len(&f.srv);
    // A top-level field twice, and a key twice deep inside the bound request:
    // the policy would see one argv, a gateway parsing first-wins another.
    for body in [
        r#"{"action":"Action::\"exec\"","action":"Action::\"deploy\"","resource":"Command::\"/usr/bin/true\"","request":{},"audience":"exec@host-a"}"#,
        r#"{"action":"Action::\"exec\"","resource":"Command::\"/usr/bin/true\"","request":{"argv":["/usr/bin/rm","-rf","/"],"argv":["/usr/bin/true"]},"audience":"exec@host-a"}"#,
        r#"{"action":"Action::\"exec\"","resource":"Command::\"/usr/bin/true\"","request":{},"environment":{"host":"host-b","host":"host-a"},"audience":"exec@host-a"}"#,
    ] {
        let auth = format!("Bearer {}", f.agent);
        let r = http(
            &f.srv.addr,
            "POST",
            "/v1/authorize",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["error"], "bad_request", "{}", r.text());
        assert!(r.text().contains("duplicate"), "{}", r.text());
    }
    // The same in a verification body.
    let body = format!(
        r#"{{"writ":"{}","request":{{"argv":["/usr/bin/rm"],"argv":["/usr/bin/true"]}}}}"#,
        f.writ
    );
    let r = http(
        &f.srv.addr,
        "POST",
        "/v1/verify",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("duplicate"), "{}", r.text());
    assert_eq!(log_len(&f.srv), before, "nothing was logged");
}

// ---------------------------------------------------------------- oversized

#[test]
fn oversized_bearer_token_is_unauthenticated() {
    let srv = Server::start();
    let before = log_len(&srv);
    let token = format!("writ_{}", "A".repeat(8 * 1024));
    let r = srv.authorize(&token, &exec_req(&["/usr/bin/true"], AUD));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["reason"], "unauthenticated");
    assert_eq!(log_len(&srv), before);
}

#[test]
fn oversized_writ_at_execution_start_is_malformed_artifact() {
    let f = fx();
    let (h, _, s) = parts(&f.writ);
    let huge = format!("{h}.{}.{s}", "A".repeat(20 * 1024));
    let r = f.srv.post(
        &format!("/v1/executions/{}/start", f.jti),
        Some(&f.agent),
        &json!({"writ": huge}),
    );
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (403, json!("malformed_artifact")),
        "{}",
        r.text()
    );
    // The nonce was not spent.
    assert_eq!(f.srv.start_execution(&f.agent, &f.jti).status, 200);
}

// ---------------------------------------------------------------- non-canonical Ed25519

/// The order of the Ed25519 base point group, little-endian.
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

#[test]
fn signature_with_s_plus_l_is_invalid_signature() {
    let f = fx();
    let (h, p, s) = parts(&f.writ);
    let mut sig = unb64(&s);
    // S' = S + L: the same point equation holds, so a lenient verifier
    // (ed25519 without the S < L check) accepts a second signature.
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(sig[32 + i]) + u16::from(ED25519_L[i]) + carry;
        sig[32 + i] = (v & 0xff) as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
    let forged = format!("{h}.{p}.{}", b64(&sig));
    assert_ne!(forged, f.writ);
    denied(&f.srv, &forged, "invalid_signature", "S + L");
}

#[test]
fn small_order_r_with_zero_s_is_invalid_signature() {
    let f = fx();
    let (h, p, _) = parts(&f.writ);
    // R = the identity point, S = 0: verifies under small-order keys in
    // lenient implementations.
    let mut sig = [0u8; 64];
    sig[0] = 1;
    denied(
        &f.srv,
        &format!("{h}.{p}.{}", b64(&sig)),
        "invalid_signature",
        "identity R, zero S",
    );
    // All zero.
    denied(
        &f.srv,
        &format!("{h}.{p}.{}", b64(&[0u8; 64])),
        "invalid_signature",
        "all-zero signature",
    );
}

// ---------------------------------------------------------------- nbf / exp / skew edges
// The server tolerates 5 s of skew (its default). The edges below read the
// clock just before they are made, and each check keeps a margin of at
// least 3 s (1 s where the clock would have to go back), so a slow test
// machine cannot flip them.

#[test]
fn nbf_beyond_the_skew_is_not_yet_valid() {
    let f = fx();
    let key = f.srv.writ_key();
    let t = now();
    let forged = resign(&key, &f.writ, |c| {
        c["iat"] = json!(t + 60);
        c["nbf"] = json!(t + 60);
        c["exp"] = json!(t + 120);
    });
    denied(&f.srv, &forged, "not_yet_valid", "nbf 60 s ahead");
    // Inside the skew it is accepted (online skew 5 s), outside a 0 s skew
    // it is not (for the 3 s or more until the clock reaches it).
    let t = now();
    let near = resign(&key, &f.writ, |c| {
        c["iat"] = json!(t + 4);
        c["nbf"] = json!(t + 4);
        c["exp"] = json!(t + 120);
    });
    assert_eq!(f.srv.verify(&json!({"writ": near}))["valid"], true);
    offline_denied(
        &f.srv,
        &near,
        &["--skew-secs", "0"],
        "not_yet_valid",
        "nbf 4 s ahead, no skew",
    );
}

#[test]
fn exp_beyond_the_skew_is_expired_and_inside_it_is_accepted() {
    let f = fx();
    let key = f.srv.writ_key();
    let t = now();
    let old = resign(&key, &f.writ, |c| {
        c["iat"] = json!(t - 100);
        c["nbf"] = json!(t - 100);
        c["exp"] = json!(t - 30);
    });
    denied(&f.srv, &old, "expired", "expired 30 s ago");
    // 1 s past exp: online, inside the skew for 4 s more.
    let t = now();
    let just = resign(&key, &f.writ, |c| {
        c["iat"] = json!(t - 100);
        c["nbf"] = json!(t - 100);
        c["exp"] = json!(t - 1);
    });
    assert_eq!(
        f.srv.verify(&json!({"writ": just}))["valid"],
        true,
        "1 s past exp is inside the 5 s skew"
    );
    offline_denied(
        &f.srv,
        &just,
        &["--skew-secs", "0"],
        "expired",
        "1 s past exp, no skew",
    );
}

#[test]
fn a_validity_window_over_one_hour_is_malformed_artifact() {
    let f = fx();
    let t = now();
    let forged = resign(&f.srv.writ_key(), &f.writ, |c| {
        c["iat"] = json!(t);
        c["nbf"] = json!(t);
        c["exp"] = json!(t + 3601);
    });
    denied(&f.srv, &forged, "malformed_artifact", "3601 s window");
}

#[test]
fn inverted_validity_windows_are_malformed_artifact() {
    let f = fx();
    let t = now();
    for (what, iat, nbf, exp) in [
        ("iat after nbf", t + 10, t, t + 60),
        ("exp equal to nbf", t, t, t),
        ("exp before nbf", t, t + 60, t + 30),
    ] {
        let forged = resign(&f.srv.writ_key(), &f.writ, |c| {
            c["iat"] = json!(iat);
            c["nbf"] = json!(nbf);
            c["exp"] = json!(exp);
        });
        denied(&f.srv, &forged, "malformed_artifact", what);
    }
}

// ---------------------------------------------------------------- cross-audience reuse

#[test]
fn an_mcp_writ_reused_at_the_exec_gateway_is_audience_mismatch() {
    let srv = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    // A writ for the MCP filesystem gateway, for the very command run below.
    let (w, _, _) = srv.authorize_ok(
        &srv.admin_token,
        &exec_req(&["/usr/bin/true"], "mcp:filesystem"),
    );
    let file = tmp.path().join("w.jws");
    std::fs::write(&file, &w).unwrap();
    let out = run_writ(
        &[
            "exec",
            "--writ",
            file.to_str().unwrap(),
            "--",
            "/usr/bin/true",
        ],
        &[
            ("WRIT_SERVER", srv.url.as_str()),
            ("WRIT_TOKEN", srv.admin_token.as_str()),
        ],
        Some(tmp.path()),
    );
    out.expect_denied("audience_mismatch", "writ exec with an mcp:filesystem writ");
}

#[test]
fn an_authzen_writ_reused_at_a_gateway_is_audience_mismatch() {
    let f = fx();
    let r = f.srv.post(
        "/access/v1/evaluation",
        Some(&f.agent),
        &json!({"action": {"name": "exec"}, "resource": {"type": "Command", "id": "/usr/bin/true"}}),
    );
    let v = r.json();
    assert_eq!(v["decision"], true, "{v}");
    let w = v["context"]["writ"].as_str().unwrap();
    online_denied(
        &f.srv,
        &json!({"writ": w, "audience": AUD}),
        "audience_mismatch",
        "AuthZEN writ at exec@host-a",
    );
    offline_denied(
        &f.srv,
        w,
        &["--audience", AUD],
        "audience_mismatch",
        "AuthZEN writ",
    );
}

// ---------------------------------------------------------------- request and environment substitution at start

#[test]
fn request_substitution_at_execution_start_is_request_mismatch() {
    let f = fx();
    let before = log_len(&f.srv);
    let r = f.srv.post(
        &format!("/v1/executions/{}/start", f.jti),
        Some(&f.agent),
        &json!({"writ": f.writ, "request": {"argv": ["/usr/bin/rm", "-rf", "/"]}, "audience": AUD}),
    );
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (403, json!("request_mismatch")),
        "{}",
        r.text()
    );
    assert_eq!(log_len(&f.srv), before, "nothing spent or logged");
}

#[test]
fn jti_substitution_at_execution_start_is_request_mismatch() {
    let f = fx();
    // A second writ of the same principal: start jti A presenting writ B.
    let (w2, _, _) = f.srv.authorize_ok(&f.agent, &bound_req());
    let r = f.srv.post(
        &format!("/v1/executions/{}/start", f.jti),
        Some(&f.agent),
        &json!({"writ": w2}),
    );
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (403, json!("request_mismatch")),
        "{}",
        r.text()
    );
}

#[test]
fn environment_substitution_at_execution_start_is_environment_mismatch() {
    let f = fx();
    let r = f.srv.post(
        &format!("/v1/executions/{}/start", f.jti),
        Some(&f.agent),
        &json!({"writ": f.writ, "request": {"argv": ["/usr/bin/true"]}, "audience": AUD,
                "environment": {"host": "host-b", "cwd": "/srv"}}),
    );
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (403, json!("environment_mismatch")),
        "{}",
        r.text()
    );
    // An extra fact is a different environment too.
    let r = f.srv.post(
        &format!("/v1/executions/{}/start", f.jti),
        Some(&f.agent),
        &json!({"writ": f.writ, "environment": {"host": "host-a", "cwd": "/srv", "user": "root"}}),
    );
    assert_eq!(r.json()["reason"], "environment_mismatch", "{}", r.text());
}

// ---------------------------------------------------------------- replay across restarts

#[test]
fn replay_across_a_restart_is_replayed() {
    let mut f = fx();
    assert_eq!(f.srv.start_execution(&f.agent, &f.jti).status, 200);
    // SIGKILL and start again on the same store (no mesh yet: a second node
    // would be another process on the same store, which is this).
    f.srv.restart();
    let r = f.srv.start_execution(&f.agent, &f.jti);
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (403, json!("replayed")),
        "{}",
        r.text()
    );
    online_denied(
        &f.srv,
        &json!({"writ": f.writ}),
        "replayed",
        "verify after restart",
    );
    // And a second restart, through the CLI.
    f.srv.restart();
    f.srv
        .cli(Some(&f.agent), &["execution", "start", &f.jti])
        .expect_denied("replayed", "start after a second restart");
}

// ---------------------------------------------------------------- lineage

/// Issue and start a writ (a child when `parent` is given); its jti.
/// Only a root asks for a lifetime: a child left to the default is
/// capped at what its parent has left, whereas an explicit 600 s would
/// be refused once the parent's first second has passed.
fn started(srv: &Server, token: &str, parent: Option<&str>, scope: Value) -> (String, String) {
    let mut req = exec_req(&["/usr/bin/ls", "/data"], AUD);
    req["scope"] = scope;
    match parent {
        None => req["lifetime_secs"] = json!(600),
        Some(p) => req["parent"] = json!(p),
    }
    let (w, jti, _) = srv.authorize_ok(token, &req);
    assert_eq!(srv.start_execution(token, &jti).status, 200);
    (w, jti)
}

#[test]
fn a_revoked_grandparent_revokes_the_grandchild() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let (_, root) = started(&srv, &agent, None, json!({"read": ["/data"]}));
    let (_, child) = started(&srv, &agent, Some(&root), json!({"read": ["/data"]}));
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["parent"] = json!(child);
    let (gw, gjti, _) = srv.authorize_ok(&agent, &req);
    assert_eq!(claims_of(&gw)["writ"]["lineage"]["depth"], 2);
    let r = srv.post(
        "/v1/revocations",
        Some(&srv.admin_token),
        &json!({"jti": root}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    online_denied(
        &srv,
        &json!({"writ": gw}),
        "revoked",
        "grandchild of a revoked root",
    );
    let r = srv.start_execution(&agent, &gjti);
    assert_eq!(r.json()["reason"], "revoked", "{}", r.text());
}

#[test]
fn a_forged_writ_naming_an_unknown_parent_is_lineage_broken() {
    let f = fx();
    let forged = resign(&f.srv.writ_key(), &f.writ, |c| {
        c["writ"]["lineage"] =
            json!({"parent": "ab".repeat(16), "root": "cd".repeat(16), "depth": 1});
    });
    online_denied(
        &f.srv,
        &json!({"writ": forged}),
        "lineage_broken",
        "forged unknown parent",
    );
}

#[test]
fn a_parent_from_another_authority_is_lineage_broken() {
    let srv = Server::start();
    let other = Server::start();
    let (_, ojti) = started(&other, &other.admin_token, None, json!({"read": ["/data"]}));
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["parent"] = json!(ojti);
    let r = srv.authorize(&srv.admin_token, &req);
    let v = r.json();
    assert_eq!(
        (r.status, v["reason"].as_str()),
        (403, Some("lineage_broken")),
        "{v}"
    );
}

#[test]
fn lineage_depth_overflow_is_scope_escalation() {
    let srv = Server::start_with(&["--lineage-depth-max", "2"]);
    let t = srv.admin_token.clone();
    let (_, d0) = started(&srv, &t, None, json!({"read": ["/data"]}));
    let (_, d1) = started(&srv, &t, Some(&d0), json!({"read": ["/data"]}));
    let (_, d2) = started(&srv, &t, Some(&d1), json!({"read": ["/data"]}));
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["parent"] = json!(d2);
    let r = srv.authorize(&t, &req);
    let v = r.json();
    assert_eq!(
        (r.status, v["reason"].as_str()),
        (403, Some("scope_escalation")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("depth 3"), "{v}");
    assert!(v["log_index"].is_u64(), "the denial is logged: {v}");
}

#[test]
fn a_grandchild_widening_back_to_the_root_scope_is_scope_escalation() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let (_, root) = started(&srv, &agent, None, json!({"read": ["/data"]}));
    let (_, child) = started(&srv, &agent, Some(&root), json!({"read": ["/data/x"]}));
    // Inside the root's scope, outside the child's.
    let mut req = exec_req(&["/usr/bin/ls", "/data"], AUD);
    req["parent"] = json!(child);
    req["scope"] = json!({"read": ["/data"]});
    let r = srv.authorize(&agent, &req);
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (403, json!("scope_escalation")),
        "{}",
        r.text()
    );
}

// ---------------------------------------------------------------- policy hash

#[test]
fn policy_hash_of_an_unknown_bundle_is_policy_mismatch() {
    let f = fx();
    let forged = resign(&f.srv.writ_key(), &f.writ, |c| {
        c["writ"]["policy"] = json!(format!("sha256:{}", "7".repeat(64)));
    });
    denied(&f.srv, &forged, "policy_mismatch", "unknown bundle hash");
}

// ---------------------------------------------------------------- look-alike Unicode

const DEPLOY_POLICY: &str = "@id(\"planner-deploys\")\npermit (principal == Agent::\"planner\", action == Action::\"exec\", resource == Command::\"/usr/local/bin/deploy\");\n\
@id(\"cafe-deploys\")\npermit (principal == Agent::\"caf\u{e9}\", action == Action::\"exec\", resource == Command::\"/usr/local/bin/deploy\");\n";

fn deploy(token: &str, srv: &Server, resource: &str) -> Resp {
    srv.authorize(
        token,
        &json!({
            "action": "Action::\"exec\"",
            "resource": format!("Command::{}", serde_json::to_string(resource).unwrap()),
            "request": {"argv": [resource]},
            "audience": AUD,
        }),
    )
}

#[test]
fn a_look_alike_principal_is_policy_denied() {
    let srv = Server::start();
    activate_policy(&srv, "deploy", DEPLOY_POLICY);
    let planner = srv.add_principal("Agent::\"planner\"");
    assert_eq!(deploy(&planner, &srv, "/usr/local/bin/deploy").status, 200);
    // A zero-width space is not in Cedar's normal form of a UID: such a
    // principal is refused at registration (it could never be decided for).
    let r = srv.post(
        "/v1/principals",
        Some(&srv.admin_token),
        &json!({"uid": "Agent::\"planner\u{200b}\""}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // Cyrillic a (U+0430) for a Latin letter; a full-width letter.
    for uid in ["Agent::\"pl\u{430}nner\"", "Agent::\"\u{ff50}lanner\""] {
        let t = srv.add_principal(uid);
        let r = deploy(&t, &srv, "/usr/local/bin/deploy");
        assert_eq!(
            (r.status, r.json()["reason"].clone()),
            (403, json!("policy_denied")),
            "{uid}: {}",
            r.text()
        );
        let idx = r.json()["log_index"].as_u64().unwrap();
        assert_eq!(
            srv.log_entries()[idx as usize]["entry"]["principal"],
            uid,
            "the log names the look-alike, not the planner"
        );
    }
}

#[test]
fn a_look_alike_resource_is_policy_denied() {
    let srv = Server::start();
    activate_policy(&srv, "deploy", DEPLOY_POLICY);
    let planner = srv.add_principal("Agent::\"planner\"");
    for res in [
        "/usr/local/bin/d\u{435}ploy",
        "/usr/local/bin/deploy\u{0}",
        "/usr/local/bin//deploy",
    ] {
        let r = deploy(&planner, &srv, res);
        assert_eq!(
            (r.status, r.json()["reason"].clone()),
            (403, json!("policy_denied")),
            "{res:?}: {}",
            r.text()
        );
    }
}

/// Without a schema the caller chooses the types in its context. A value of
/// another type makes an argument-aware forbid err, and Cedar skips a policy
/// that errs: the forbid must deny instead (the README's example policy).
#[test]
fn a_value_of_another_type_does_not_slip_past_a_forbid() {
    let srv = Server::start();
    activate_policy(
        &srv,
        "tools",
        "@id(\"all-tools\")\npermit (principal, action == Action::\"call_tool\", resource);\n\
         @id(\"read-public-only\")\nforbid (principal, action == Action::\"call_tool\", resource == Tool::\"fs/read_text_file\")\n\
         when { context.arguments has path && !(context.arguments.path like \"/data/public/*\") };\n",
    );
    let call = |path: Value| {
        srv.authorize(
            &srv.admin_token,
            &json!({
                "action": "Action::\"call_tool\"",
                "resource": "Tool::\"fs/read_text_file\"",
                "context": {"arguments": {"path": path.clone()}},
                "request": {"name": "read_text_file", "arguments": {"path": path}},
                "audience": "mcp:fs",
            }),
        )
    };
    assert_eq!(call(json!("/data/public/a")).status, 200);
    for path in [
        json!("/etc/shadow"),
        json!(["/etc/shadow"]),
        json!({"p": "/etc/shadow"}),
        json!(1),
        json!(true),
    ] {
        let r = call(path.clone());
        assert_eq!(
            (r.status, r.json()["reason"].clone()),
            (403, json!("policy_denied")),
            "{path}: {}",
            r.text()
        );
        let idx = r.json()["log_index"].as_u64().unwrap();
        assert_eq!(
            srv.log_entries()[idx as usize]["entry"]["decision"],
            "deny",
            "{path}: the log holds the deny"
        );
    }
}

#[test]
fn unicode_normalization_variants_are_distinct_principals() {
    let srv = Server::start();
    activate_policy(&srv, "deploy", DEPLOY_POLICY);
    // The policy names the NFC form (U+00E9); the NFD form is e + U+0301.
    let nfc = srv.add_principal("Agent::\"caf\u{e9}\"");
    assert_eq!(deploy(&nfc, &srv, "/usr/local/bin/deploy").status, 200);
    let nfd = srv.add_principal("Agent::\"cafe\u{301}\"");
    let r = deploy(&nfd, &srv, "/usr/local/bin/deploy");
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (403, json!("policy_denied")),
        "{}",
        r.text()
    );
}

// ---------------------------------------------------------------- principal impersonation

#[test]
fn a_principal_field_in_the_authorize_body_is_refused() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let before = log_len(&srv);
    for field in ["principal", "sub", "subject"] {
        let mut req = exec_req(&["/usr/bin/true"], AUD);
        req[field] = json!("User::\"admin\"");
        let r = srv.authorize(&agent, &req);
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        assert!(r.text().contains(field), "names the field: {}", r.text());
    }
    assert_eq!(log_len(&srv), before, "nothing logged");
}

#[test]
fn a_principal_in_the_context_does_not_change_the_principal() {
    let srv = Server::start();
    activate_policy(
        &srv,
        "admin-only",
        "@id(\"admin-only\")\npermit (principal == User::\"admin\", action, resource);\n",
    );
    let agent = srv.add_principal("Agent::\"planner\"");
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["context"] = json!({"principal": "User::\"admin\"", "sub": "User::\"admin\""});
    let r = srv.authorize(&agent, &req);
    let v = r.json();
    assert_eq!(
        (r.status, v["reason"].as_str()),
        (403, Some("policy_denied")),
        "{v}"
    );
    let e = &srv.log_entries()[v["log_index"].as_u64().unwrap() as usize]["entry"];
    assert_eq!(e["principal"], "Agent::\"planner\"", "{e}");
}

#[test]
fn an_authzen_subject_other_than_the_caller_is_unauthenticated() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let before = log_len(&srv);
    for (ty, id) in [("User", "admin"), ("Agent", "pl\u{430}nner")] {
        let r = srv.post(
            "/access/v1/evaluation",
            Some(&agent),
            &json!({"subject": {"type": ty, "id": id}, "action": {"name": "exec"},
                    "resource": {"type": "Command", "id": "/usr/bin/true"}}),
        );
        let v = r.json();
        assert_eq!(v["decision"], false, "{v}");
        assert_eq!(v["context"]["reason"], "unauthenticated", "{v}");
    }
    assert_eq!(log_len(&srv), before);
}

#[test]
fn another_principal_cannot_start_a_stolen_writ() {
    let f = fx();
    let mallory = f.srv.add_principal("Agent::\"mallory\"");
    let r = f.srv.post(
        &format!("/v1/executions/{}/start", f.jti),
        Some(&mallory),
        &json!({"writ": f.writ}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"], "forbidden", "{}", r.text());
    // Not spent: the owner still can.
    assert_eq!(f.srv.start_execution(&f.agent, &f.jti).status, 200);
}

// ---------------------------------------------------------------- the table in SECURITY.md

/// Every row of SECURITY.md's attack table names a test that exists, and
/// every test of this suite is in the table.
#[test]
fn security_md_attack_table_matches_the_tests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("SECURITY.md")).unwrap();
    let table: Vec<&str> = doc
        .split("<!-- attack-table -->")
        .nth(1)
        .expect("SECURITY.md has an <!-- attack-table --> marker")
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .collect();
    let mut attacks = std::collections::BTreeSet::new();
    let mut named = std::collections::BTreeSet::new();
    for row in &table {
        let cols: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cols.len(), 4, "row {row:?}: | # | attack | code | test |");
        assert!(attacks.insert(cols[1]), "attack listed twice: {row}");
        let code = cols[2].trim_matches('`');
        assert!(
            writ_artifact::ReasonCode::parse(code).is_some()
                || ["400", "403", "413", "usage", "EPERM", "EACCES", "EBADF", "SIGKILL", "withheld", "error", "closed", "paged", "429", "404", "resumed"]
                    .contains(&code),
            "row {row:?}: {code} is neither a reason code nor 400, 403, 404, 413, usage, EPERM, EACCES, EBADF, SIGKILL, withheld, error, closed, paged, resumed or 429"
        );
        let test = cols[3].trim_matches('`');
        let (file, func) = test
            .split_once("::")
            .unwrap_or_else(|| panic!("row {row:?}: test is FILE::FUNCTION"));
        let src = std::fs::read_to_string(root.join(format!("crates/writ/tests/e2e/{file}.rs")))
            .unwrap_or_else(|e| panic!("row {row:?}: no test file {file}.rs: {e}"));
        assert!(
            src.contains(&format!("#[test]\nfn {func}()")),
            "row {row:?}: no #[test] fn {func} in {file}.rs"
        );
        named.insert(test.to_owned());
    }
    assert!(
        attacks.len() >= 40,
        "the issue asks for at least 40 attacks; the table has {}",
        attacks.len()
    );
    let me = std::fs::read_to_string(root.join("crates/writ/tests/e2e/adversarial.rs")).unwrap();
    for func in me
        .split("#[test]\nfn ")
        .skip(1)
        .filter_map(|s| s.split('(').next())
    {
        if func == "security_md_attack_table_matches_the_tests" {
            continue;
        }
        assert!(
            named.contains(&format!("adversarial::{func}")),
            "adversarial::{func} is not in SECURITY.md's attack table"
        );
    }
}
