//! Bad input gets a clear error and changes nothing: size limits, malformed
//! JSON naming the field, reserved context keys, requests that do not fit a
//! schema bundle, and bundles that fail validation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use serde_json::{json, Value};

/// The log must hold exactly `before` entries still.
fn assert_log_unchanged(srv: &Server, before: &[Value], what: &str) {
    let after = srv.log_entries();
    assert_eq!(
        after.len(),
        before.len(),
        "{what}: bad input must not be logged: new entries {:#?}",
        &after[before.len().min(after.len())..]
    );
}

fn raw_post(
    srv: &Server,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Resp {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(ct) = content_type {
        headers.push(("Content-Type", ct));
    }
    http(&srv.addr, "POST", path, &headers, body)
}

#[test]
fn oversized_bodies_are_refused_with_413() {
    let srv = Server::start();
    let before = srv.log_entries();
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["request"] = json!({"argv": ["/usr/bin/true"], "pad": "x".repeat(300 * 1024)});
    let body = serde_json::to_vec(&req).unwrap();
    assert!(body.len() > 256 * 1024);
    for path in [
        "/v1/authorize",
        "/v1/verify",
        "/access/v1/evaluation",
        "/v1/principals",
        "/v1/revocations",
    ] {
        let r = raw_post(
            &srv,
            path,
            &srv.admin_token,
            Some("application/json"),
            &body,
        );
        assert_eq!(r.status, 413, "{path}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"], "too_large", "{path}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains("larger than"),
            "{path}: {v}"
        );
    }
    // A writ longer than any writ may be, inside a body that is within limits.
    let v = srv.verify(&json!({"writ": "a".repeat(20 * 1024)}));
    assert_eq!(v["reason"], "malformed_artifact", "{v}");
    // Just under the limit is heard (and allowed: the default bundle permits /usr/bin/true).
    req["request"]["pad"] = json!("x".repeat(200 * 1024));
    srv.authorize_ok(&srv.admin_token, &req);
    assert_eq!(
        srv.log_entries().len(),
        before.len() + 1,
        "only the in-limit request was logged"
    );
    // The server still works.
    assert_eq!(srv.get("/healthz", None).status, 200);
}

#[test]
fn malformed_json_is_400_naming_the_field() {
    let srv = Server::start();
    let before = srv.log_entries();
    let good = exec_req(&["/usr/bin/true"], AUD);
    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    let without = |k: &str| {
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove(k);
        v
    };
    let with = |k: &str, x: Value| {
        let mut v = good.clone();
        v[k] = x;
        v
    };
    cases.push(("missing audience", without("audience"), "audience"));
    cases.push(("missing action", without("action"), "action"));
    cases.push(("missing resource", without("resource"), "resource"));
    cases.push(("missing request", without("request"), "request"));
    cases.push(("action is a number", with("action", json!(5)), "action"));
    cases.push((
        "resource is an object",
        with("resource", json!({"type": "Command"})),
        "resource",
    ));
    cases.push((
        "scope.net is a string",
        with("scope", json!({"net": "yes"})),
        "net",
    ));
    cases.push((
        "lifetime is negative",
        with("lifetime_secs", json!(-1)),
        "lifetime_secs",
    ));
    cases.push((
        "unknown field: a self-asserted principal",
        with("principal", json!("User::\"admin\"")),
        "principal",
    ));
    cases.push((
        "unknown scope field",
        with("scope", json!({"exec": ["/"]})),
        "exec",
    ));
    cases.push((
        "context is an array",
        with("context", json!([1])),
        "context",
    ));
    cases.push((
        "environment is a string",
        with("environment", json!("host-a")),
        "environment",
    ));
    cases.push(("body is an array", json!([good.clone()]), ""));
    for (what, body, field) in cases {
        let r = srv.authorize(&srv.admin_token, &body);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"], "bad_request", "{what}: {v}");
        let m = v["message"].as_str().unwrap();
        assert!(
            m.contains(field),
            "{what}: message {m:?} should name {field:?}"
        );
        assert!(
            v.get("decision").is_none(),
            "{what}: no decision was made: {v}"
        );
    }
    // Not JSON at all, and not declared as JSON.
    let r = raw_post(
        &srv,
        "/v1/authorize",
        &srv.admin_token,
        Some("application/json"),
        b"{\"action\": ",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["message"].as_str().unwrap().contains("EOF"),
        "{}",
        r.text()
    );
    let r = raw_post(
        &srv,
        "/v1/authorize",
        &srv.admin_token,
        None,
        &serde_json::to_vec(&good).unwrap(),
    );
    assert_eq!(r.status, 415, "{}", r.text());
    assert_eq!(r.json()["error"], "unsupported_media_type");
    // Verify, revocation and principal bodies are strict too.
    let r = srv.post(
        "/v1/verify",
        None,
        &json!({"writ": "x", "audiences": ["a"]}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["message"].as_str().unwrap().contains("audiences"),
        "{}",
        r.text()
    );
    // A check asked for with null is refused, not skipped (left out, a
    // field is not checked): a gateway that meant to send it must know.
    for field in ["request", "environment", "audience"] {
        let r = srv.post("/v1/verify", None, &json!({"writ": "x", field: null}));
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        let m = r.json()["message"].as_str().unwrap().to_owned();
        assert!(m.contains(field) && m.contains("null"), "{field}: {m}");
    }
    // The same at an execution start, where the nonce is spent.
    for field in ["writ", "request", "environment", "audience"] {
        let r = srv.post(
            &format!("/v1/executions/{}/start", "ab".repeat(16)),
            Some(&srv.admin_token),
            &json!({ field: null }),
        );
        assert_eq!(r.status, 400, "start {field}: {}", r.text());
        let m = r.json()["message"].as_str().unwrap().to_owned();
        assert!(
            m.contains(field) && m.contains("null"),
            "start {field}: {m}"
        );
    }
    let r = srv.post("/v1/principals", Some(&srv.admin_token), &json!({"uid": 7}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["message"].as_str().unwrap().contains("uid"),
        "{}",
        r.text()
    );
    // A method a route does not take: 405 with the Error body.
    let r = srv.request("DELETE", "/v1/authorize", Some(&srv.admin_token), None);
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.json()["error"], "method_not_allowed", "{}", r.text());
    assert_log_unchanged(&srv, &before, "malformed JSON");
}

#[test]
fn invalid_values_are_400_and_not_logged() {
    let srv = Server::start();
    let before = srv.log_entries();
    let good = exec_req(&["/usr/bin/true"], AUD);
    let with = |k: &str, x: Value| {
        let mut v = good.clone();
        v[k] = x;
        v
    };
    let mut cases: Vec<(String, Value, String)> = Vec::new();
    for key in ["request", "environment", "scope", "audience", "lineage"] {
        cases.push((
            format!("reserved context key {key}"),
            with("context", json!({key: {"depth": 0}})),
            format!("context.{key}"),
        ));
    }
    cases.push((
        "empty action".into(),
        with("action", json!("")),
        "action".into(),
    ));
    cases.push((
        "empty audience".into(),
        with("audience", json!("")),
        "audience".into(),
    ));
    cases.push((
        "huge resource".into(),
        with(
            "resource",
            json!(format!("Command::\"{}\"", "a".repeat(2000))),
        ),
        "resource".into(),
    ));
    cases.push((
        "lifetime 0".into(),
        with("lifetime_secs", json!(0)),
        "lifetime_secs".into(),
    ));
    cases.push((
        "lifetime over an hour".into(),
        with("lifetime_secs", json!(3601)),
        "lifetime_secs".into(),
    ));
    cases.push((
        "parent not a jti".into(),
        with("parent", json!("../../etc")),
        "parent".into(),
    ));
    cases.push((
        "parent too short".into(),
        with("parent", json!("0123")),
        "parent".into(),
    ));
    for bad in ["data", "/data/../etc", "/data/", "/a//b", "/a/./b", ""] {
        cases.push((
            format!("scope path {bad:?}"),
            with("scope", json!({"read": [bad]})),
            "scope".into(),
        ));
    }
    let many: Vec<String> = (0..65).map(|i| format!("/p{i}")).collect();
    cases.push((
        "65 scope paths".into(),
        with("scope", json!({"write": many})),
        "scope".into(),
    ));
    for (what, body, field) in cases {
        let r = srv.authorize(&srv.admin_token, &body);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"], "bad_request", "{what}: {v}");
        let m = v["message"].as_str().unwrap();
        assert!(
            m.contains(&field),
            "{what}: message {m:?} should name {field:?}"
        );
    }
    // The CLI says so and exits 1 (an operating error, not a denial).
    let out = srv.cli(
        Some(&srv.admin_token),
        &[
            "authorize",
            "--resource",
            "Command::\"/usr/bin/true\"",
            "--context",
            r#"{"scope": {}}"#,
        ],
    );
    out.expect_code(1, "writ authorize with a reserved context key");
    assert!(
        out.stderr.contains("400") && out.stderr.contains("context.scope"),
        "{out:#?}"
    );
    // A flag out of range is named as the flag, before anything is sent.
    let out = srv.cli(
        Some(&srv.admin_token),
        &[
            "authorize",
            "--resource",
            "Command::\"/usr/bin/true\"",
            "--lifetime",
            "99999",
        ],
    );
    out.expect_code(2, "writ authorize --lifetime 99999");
    assert!(out.stderr.contains("--lifetime"), "{out:#?}");
    // AuthZEN refuses them too, rather than dropping them unseen.
    for key in ["request", "environment", "scope", "audience", "lineage"] {
        let r = srv.post(
            "/access/v1/evaluation",
            Some(&srv.admin_token),
            &json!({"action": {"name": "exec"},
                    "resource": {"type": "Command", "id": "/usr/bin/true"},
                    "context": {key: {"depth": 0}}}),
        );
        assert_eq!(r.status, 400, "AuthZEN context.{key}: {}", r.text());
        let m = r.json()["message"].as_str().unwrap().to_owned();
        assert!(m.contains(&format!("context.{key}")), "{m}");
    }
    // Administrative bodies.
    let r = srv.post(
        "/v1/principals",
        Some(&srv.admin_token),
        &json!({"uid": "alice"}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("Cedar entity UID"),
        "{}",
        r.text()
    );
    let r = srv.post(
        "/v1/revocations",
        Some(&srv.admin_token),
        &json!({"jti": "ab".repeat(16), "principal": "User::\"x\""}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = srv.post("/v1/revocations", Some(&srv.admin_token), &json!({}));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = srv.post(
        "/v1/revocations",
        Some(&srv.admin_token),
        &json!({"jti": "ab".repeat(16)}),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = srv.post(
        &format!("/v1/executions/{}/start", "ab".repeat(16)),
        Some(&srv.admin_token),
        &json!({"writ": 5}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_log_unchanged(&srv, &before, "invalid values");
    assert_eq!(srv.allow_count(), 0);
}

// ---------------------------------------------------------------- schema bundles

const SCHEMA: &str = r#"
entity User;
entity Agent;
entity Command;
type Scope = { read: Set<String>, write: Set<String>, net: Bool };
action "exec" appliesTo {
  principal: [User, Agent],
  resource: [Command],
  context: {
    request: { argv?: Set<String> },
    environment: {},
    scope: Scope,
    audience: String,
    lineage: { depth: Long, root_principal: String, parent_action: String },
  }
};
"#;

const POLICY: &str = r#"
@id("exec-true")
permit (principal, action == Action::"exec", resource == Command::"/usr/bin/true")
when { !context.scope.net && context.lineage.depth == 0 };
"#;

fn write_bundle(dir: &std::path::Path, schema: Option<&str>, policies: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    if let Some(s) = schema {
        std::fs::write(dir.join("schema.cedarschema"), s).unwrap();
    }
    for (name, text) in policies {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[test]
fn requests_that_do_not_fit_the_schema_are_policy_denied() {
    let srv = Server::start();
    let bundle = srv.tmp.path().join("schema-bundle");
    write_bundle(&bundle, Some(SCHEMA), &[("p.cedar", POLICY)]);
    let out = srv.cli(None, &["policy", "check", bundle.to_str().unwrap()]);
    out.expect_code(0, "writ policy check on a schema bundle");
    assert!(out.stdout.contains("validated against schema"), "{out:#?}");
    let out = srv.cli(
        Some(&srv.admin_token),
        &["policy", "activate", bundle.to_str().unwrap()],
    );
    out.expect_code(0, "writ policy activate a schema bundle");
    let active = srv.active_policy();
    assert!(out.stdout.contains(&active), "{out:#?}");

    // It fits: allowed.
    srv.authorize_ok(&srv.admin_token, &exec_req(&["/usr/bin/true"], AUD));
    let allows = srv.allow_count();
    let before = srv.log_entries();

    let with = |k: &str, x: Value| {
        let mut v = exec_req(&["/usr/bin/true"], AUD);
        v[k] = x;
        v
    };
    let cases = [
        (
            "unknown resource type",
            with("resource", json!("Plane::\"x\"")),
            "Plane",
        ),
        (
            "unknown action",
            with("action", json!("Action::\"fly\"")),
            "fly",
        ),
        (
            "an undeclared context attribute",
            with("context", json!({"force": true})),
            "force",
        ),
        (
            "a request field of the wrong type",
            with("request", json!({"argv": "rm -rf /"})),
            "context does not fit the schema",
        ),
        (
            "not a Cedar UID",
            with("resource", json!("/usr/bin/true")),
            "not a Cedar entity UID",
        ),
    ];
    for (what, body, msg) in cases {
        let r = srv.authorize(&srv.admin_token, &body);
        let v = r.json();
        assert_eq!(
            (r.status, v["decision"].as_str(), v["reason"].as_str()),
            (403, Some("deny"), Some("policy_denied")),
            "{what}: {v}"
        );
        let m = v["message"].as_str().unwrap();
        assert!(
            m.contains(msg),
            "{what}: message {m:?} should contain {msg:?}"
        );
        assert!(v["log_index"].is_u64(), "{what}: the denial is logged: {v}");
    }
    // A principal type the schema does not know.
    let robot = srv.add_principal("Robot::\"r2\"");
    let r = srv.authorize(&robot, &exec_req(&["/usr/bin/true"], AUD));
    let v = r.json();
    assert_eq!(
        (r.status, v["reason"].as_str()),
        (403, Some("policy_denied")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("Robot"), "{v}");
    // Denials only: no new allow.
    let after = srv.log_entries();
    assert!(after.len() > before.len());
    assert!(
        after[before.len()..]
            .iter()
            .all(|e| e["entry"]["decision"] != "allow"),
        "{:#?}",
        &after[before.len()..]
    );
    assert_eq!(srv.allow_count(), allows);
}

#[test]
fn a_bundle_that_fails_validation_is_refused_and_the_active_one_stays() {
    let srv = Server::start();
    let active = srv.active_policy();
    let before = srv.log_entries();
    let bad_policy = "@id(\"ill-typed\")\npermit (principal, action == Action::\"exec\", resource) when { context.scope.net == 3 };\n";
    let bundle = srv.tmp.path().join("bad-bundle");
    write_bundle(&bundle, Some(SCHEMA), &[("p.cedar", bad_policy)]);

    // Locally: check and activate both refuse, with Cedar's diagnostics.
    let out = srv.cli(None, &["policy", "check", bundle.to_str().unwrap()]);
    out.expect_code(1, "writ policy check of an ill-typed bundle");
    assert!(
        out.stderr.contains("do not validate against schema") && out.stderr.contains("ill-typed"),
        "{out:#?}"
    );
    // With --json the failure is an answer on stdout too, diagnostics included.
    let out = srv.cli(
        None,
        &["policy", "check", bundle.to_str().unwrap(), "--json"],
    );
    out.expect_code(1, "writ policy check --json of an ill-typed bundle");
    let v = out.json();
    assert_eq!(v["error"], "failed", "{out:#?}");
    assert!(
        v["message"].as_str().unwrap().contains("ill-typed"),
        "{out:#?}"
    );
    let out = srv.cli(
        Some(&srv.admin_token),
        &["policy", "activate", bundle.to_str().unwrap()],
    );
    out.expect_code(1, "writ policy activate of an ill-typed bundle");
    assert!(
        out.stderr.contains("refused") && out.stderr.contains("ill-typed"),
        "{out:#?}"
    );

    // At the server: a correctly signed but ill-typed bundle.
    let policy_key = srv.policy_key();
    let mut source = writ_policy::BundleSource::default();
    source.policies.insert("p.cedar".into(), bad_policy.into());
    source.schema = Some(SCHEMA.into());
    let signed = source.clone().sign(&policy_key).unwrap();
    let r = srv.post(
        "/v1/policies",
        Some(&srv.admin_token),
        &serde_json::to_value(&signed).unwrap(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let m = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        m.contains("do not validate against schema") && m.contains("ill-typed"),
        "{m}"
    );
    // A schema that does not parse.
    let mut s2 = writ_policy::BundleSource::default();
    s2.policies.insert("p.cedar".into(), POLICY.into());
    s2.schema = Some(
        "entity User; action \"exec\" appliesTo { principal: [Nope], resource: [User] };".into(),
    );
    let r = srv.post(
        "/v1/policies",
        Some(&srv.admin_token),
        &serde_json::to_value(s2.sign(&policy_key).unwrap()).unwrap(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("schema.cedarschema"), "{}", r.text());
    // A policy that does not parse.
    let mut s3 = writ_policy::BundleSource::default();
    s3.policies.insert(
        "broken.cedar".into(),
        "permit (principal, action, resource) when { context.x == };".into(),
    );
    let r = srv.post(
        "/v1/policies",
        Some(&srv.admin_token),
        &serde_json::to_value(s3.sign(&policy_key).unwrap()).unwrap(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("broken.cedar"), "{}", r.text());
    // A good bundle signed by an untrusted key, and one whose hash was edited.
    let mut good = writ_policy::BundleSource::default();
    good.policies.insert(
        "p.cedar".into(),
        "permit (principal, action, resource);".into(),
    );
    let stranger = writ_artifact::WritKey::generate(&writ_artifact::OsEntropy).unwrap();
    let r = srv.post(
        "/v1/policies",
        Some(&srv.admin_token),
        &serde_json::to_value(good.clone().sign(&stranger).unwrap()).unwrap(),
    );
    // A bundle that fails its own verification is an integrity failure
    // (docs/spec/reason-codes.md), not a malformed request.
    let integrity_failure = |r: &Resp, says: &str| {
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(r.json()["reason"], "integrity_failure", "{}", r.text());
        assert!(r.text().contains(says), "{}", r.text());
    };
    integrity_failure(&r, "not trusted");
    let mut tampered = serde_json::to_value(good.clone().sign(&policy_key).unwrap()).unwrap();
    tampered["source"]["policies"]["p.cedar"] =
        json!("permit (principal, action, resource); // more");
    let r = srv.post("/v1/policies", Some(&srv.admin_token), &tampered);
    integrity_failure(&r, "does not match");
    let mut forged = serde_json::to_value(good.clone().sign(&policy_key).unwrap()).unwrap();
    let sig = forged["signature"].as_str().unwrap().to_owned();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    forged["signature"] = json!(format!("{flipped}{}", &sig[1..]));
    let r = srv.post("/v1/policies", Some(&srv.admin_token), &forged);
    integrity_failure(&r, "does not verify");
    // `writ policy activate` says the same, with its reason code's exit
    // status and, with --json, the server's answer on stdout.
    let file = srv.tmp.path().join("tampered-bundle.json");
    std::fs::write(&file, tampered.to_string()).unwrap();
    let out = srv.cli(
        Some(&srv.admin_token),
        &["policy", "activate", file.to_str().unwrap(), "--json"],
    );
    out.expect_denied(
        "integrity_failure",
        "writ policy activate of a tampered bundle",
    );
    assert_eq!(out.json()["reason"], "integrity_failure", "{out:#?}");
    // A non-admin may not activate even a good bundle.
    let agent = srv.add_principal("Agent::\"a\"");
    let before = {
        let mut b = before;
        b.push(srv.log_entries().last().unwrap().clone());
        b
    };
    let r = srv.post(
        "/v1/policies",
        Some(&agent),
        &serde_json::to_value(good.sign(&policy_key).unwrap()).unwrap(),
    );
    assert_eq!(r.status, 403, "{}", r.text());

    // The active bundle stayed, nothing was logged, and it still decides as before.
    assert_eq!(srv.active_policy(), active);
    let r = srv.get("/v1/policies", Some(&srv.admin_token)).json();
    assert_eq!(r["activations"].as_array().unwrap().len(), 1, "{r}");
    assert_log_unchanged(&srv, &before, "refused bundles");
    let r = srv.authorize(&agent, &exec_req(&["/usr/bin/rm"], AUD));
    assert_eq!(r.json()["reason"], "policy_denied", "{}", r.text());
}

// ---------------------------------------------------------------- limits that must agree (regression guards)

/// Regression guard (a bug found in review): the authority signs writs longer than `WRIT_BYTES_MAX` (16 KiB), which
/// every verifier (its own included) refuses as `malformed_artifact`. A request
/// within the body limit whose environment facts or scope are large gets an
/// allow, a log entry and a writ that can never be used.
#[test]
fn an_allowed_writ_is_always_verifiable() {
    let srv = Server::start();
    let mut req = exec_req(&["/usr/bin/true"], AUD);
    req["environment"] = json!({"note": "e".repeat(20 * 1024)});
    let r = srv.authorize(&srv.admin_token, &req);
    let v = r.json();
    if v["decision"] == "allow" {
        let writ = v["writ"].as_str().unwrap();
        let check = srv.verify(&json!({"writ": writ}));
        assert_eq!(
            check["valid"],
            true,
            "the authority issued a writ its own verifier refuses ({} bytes): {check}",
            writ.len()
        );
    } else {
        // Refusing up front (400, nothing logged) is the other acceptable answer.
        assert_eq!(r.status, 400, "{v}");
    }
}

/// Regression guard (a bug found in review): `Entry::to_leaf` does not enforce `LEAF_BYTES_MAX`, but
/// `Entry::from_leaf` does. A request within the 256 KiB body limit whose
/// scope is large (the scope is stored twice in a decision entry, once in
/// `scope` and once in `context.scope`) is decided, logged and acknowledged,
/// yet its entry can no longer be parsed: GET /v1/log/entries shows
/// `"entry": null` for it, and a strict auditor refuses the log.
#[test]
fn every_acknowledged_entry_can_be_read_back() {
    let srv = Server::start();
    let mut req = exec_req(&["/usr/bin/rm"], AUD);
    let paths: Vec<String> = (0..60)
        .map(|i| format!("/data/{i}/{}", "p".repeat(3900)))
        .collect();
    req["scope"] = json!({"read": paths});
    let body = serde_json::to_vec(&req).unwrap();
    assert!(body.len() < 256 * 1024, "within the body limit");
    let r = srv.authorize(&srv.admin_token, &req);
    let v = r.json();
    match v["log_index"].as_u64() {
        Some(i) => {
            let e = srv
                .get(&format!("/v1/log/entries?start={i}&end={}", i + 1), None)
                .json();
            assert!(
                e[0]["entry"].is_object(),
                "entry {i} was acknowledged but cannot be parsed back: leaf of {} base64 chars",
                e[0]["leaf"].as_str().unwrap().len()
            );
        }
        // Refusing up front (400, nothing logged) is the other acceptable answer.
        None => assert_eq!(r.status, 400, "{v}"),
    }
}

/// Regression guard (issue 8, found by schemathesis): a `from` past
/// i64::MAX in `GET /v1/log/checkpoints` failed the SQLite read and was
/// answered 503 `authority_unavailable`; it is past every tree size, so
/// the answer is an empty page.
#[test]
fn a_checkpoint_page_past_every_size_is_empty() {
    let srv = Server::start();
    for from in [
        "9223372036854775807",
        "9223372036854775808",
        "14010285145602265088",
        "18446744073709551615",
    ] {
        let r = srv.get(&format!("/v1/log/checkpoints?from={from}&limit=5"), None);
        assert_eq!(r.status, 200, "from={from}: {}", r.text());
        assert_eq!(r.json(), json!([]), "from={from}");
    }
    let r = srv.get("/v1/log/checkpoints?from=18446744073709551616", None);
    assert_eq!(r.status, 400, "past u64: {}", r.text());
}

#[test]
fn a_finish_names_a_bad_digest_and_the_cli_sends_digests() {
    let srv = Server::start();
    let (_, jti, _) = srv.authorize_ok(&srv.admin_token, &exec_req(&["/usr/bin/true"], AUD));
    assert_eq!(srv.start_execution(&srv.admin_token, &jti).status, 200);
    let before = srv.log_entries();
    let path = format!("/v1/executions/{jti}/finish");
    for field in ["stdout_digest", "stderr_digest"] {
        let mut body = json!({"exit_status": 0});
        body[field] = json!("sha256:zz");
        let r = srv.post(&path, Some(&srv.admin_token), &body);
        assert_eq!(r.status, 400, "{}", r.text());
        let m = r.json()["message"].as_str().unwrap().to_owned();
        assert!(m.contains(&format!("`{field}`")), "{field}: {m}");
    }
    assert_log_unchanged(&srv, &before, "finishes with bad digests");

    let (out_digest, err_digest) = (
        format!("sha256:{}", "a".repeat(64)),
        format!("sha256:{}", "b".repeat(64)),
    );
    let out = srv.cli(
        Some(&srv.admin_token),
        &[
            "execution",
            "finish",
            &jti,
            "--exit-status",
            "3",
            "--stdout-digest",
            &out_digest,
            "--stderr-digest",
            &err_digest,
            "--json",
        ],
    );
    out.expect_code(0, "writ execution finish with digests");
    let idx = out.json()["log_index"].as_u64().expect("log_index");
    let e = &srv.log_entries()[idx as usize]["entry"];
    assert_eq!(
        (
            e["type"].as_str(),
            e["exit_status"].as_i64(),
            e["stdout_digest"].as_str(),
            e["stderr_digest"].as_str()
        ),
        (
            Some("execution_finish"),
            Some(3),
            Some(out_digest.as_str()),
            Some(err_digest.as_str())
        ),
        "{e}"
    );
}
