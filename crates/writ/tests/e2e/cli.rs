//! The command line and the public HTTP surface: init, key files, policy
//! check/test, demo, principal add, offline verification with a JWKS, the
//! AuthZEN route, metrics and the OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

/// Every file under `dir`: relative path -> (mode, bytes).
fn snapshot(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let meta = e.metadata().unwrap();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if meta.is_dir() {
                out.insert(format!("{rel}/"), (meta.permissions().mode(), Vec::new()));
                stack.push(p);
            } else {
                out.insert(rel, (meta.permissions().mode(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

#[test]
fn init_twice_fails_clearly_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let first = init_dir(&dir);
    assert!(first["policy"].as_str().unwrap().starts_with("sha256:"));
    let before = snapshot(&dir);
    assert!(
        before.contains_key("writ.db") && before.contains_key("config.json"),
        "{:?}",
        before.keys()
    );
    for args in [
        vec!["init"],
        vec!["init", "--json"],
        vec!["init", "--admin", "User::\"eve\""],
    ] {
        let mut full = vec!["--dir", dir.to_str().unwrap()];
        full.extend(args.iter());
        let out = run_writ(&full, &[], None);
        out.expect_code(1, "second writ init");
        assert!(out.stderr.contains("already initialized"), "{out:#?}");
        assert!(
            !out.stdout.contains("writ_"),
            "no new token may be printed: {out:#?}"
        );
        assert_eq!(
            snapshot(&dir),
            before,
            "a refused init changed the data dir"
        );
    }
    // WRIT_DIR is honoured the same way.
    let out = run_writ(&["init"], &[("WRIT_DIR", dir.to_str().unwrap())], None);
    out.expect_code(1, "writ init with WRIT_DIR");
    assert_eq!(snapshot(&dir), before);
    // The human form of a fresh init shows the token once, as an export line.
    let fresh = tmp.path().join("fresh");
    let out = run_writ(&["--dir", fresh.to_str().unwrap(), "init"], &[], None);
    out.expect_code(0, "writ init (text)");
    assert_eq!(
        out.stdout.matches("export WRIT_TOKEN=writ_").count(),
        1,
        "{out:#?}"
    );
}

#[test]
fn key_files_are_private_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let init = init_dir(&dir);
    let keys = dir.join("keys");
    assert_eq!(
        std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let kid = init["writ_kid"].as_str().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "current".to_string(),
            "log.pem".into(),
            "policy.pem".into(),
            format!("writ-{kid}.pem")
        ]
    );
    for n in &names {
        let mode = std::fs::metadata(keys.join(n))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "keys/{n} has mode {mode:o}");
    }
    let pem = std::fs::read_to_string(keys.join(format!("writ-{kid}.pem"))).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
    assert_eq!(
        std::fs::read_to_string(keys.join("current"))
            .unwrap()
            .trim(),
        kid
    );
    // A key that others can read is refused, not used.
    std::fs::set_permissions(
        keys.join(format!("writ-{kid}.pem")),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = run_writ(
        &["--dir", dir.to_str().unwrap(), "verify", "x.y.z"],
        &[],
        None,
    );
    out.expect_code(1, "writ verify with a world-readable key");
    assert!(out.stderr.contains("readable by others"), "{out:#?}");
}

#[test]
fn policy_check_prints_the_bundle_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let init = init_dir(&dir);
    let hash = init["policy"].as_str().unwrap();
    let policy_dir = dir.join("policy");
    let out = run_writ(
        &["policy", "check", policy_dir.to_str().unwrap()],
        &[],
        None,
    );
    out.expect_code(0, "writ policy check");
    assert!(
        out.stdout.starts_with(&format!("ok: {hash} (6 policies)")),
        "{out:#?}"
    );
    let out = run_writ(
        &["policy", "check", policy_dir.to_str().unwrap(), "--json"],
        &[],
        None,
    );
    out.expect_code(0, "writ policy check --json");
    let v = out.json();
    assert_eq!(v["hash"], hash);
    assert_eq!(v["schema"], false);
    assert_eq!(
        v["policies"],
        json!([
            "exec-harmless-commands",
            "exec-no-network",
            "lineage-max-depth-3",
            "mcp-server-requests",
            "mcp-sessions",
            "tools-read-only"
        ])
    );
    // Any edit changes the hash; a broken file is refused with Cedar's diagnostics.
    let copy = tmp.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    let text = std::fs::read_to_string(policy_dir.join("default.cedar")).unwrap();
    std::fs::write(copy.join("default.cedar"), format!("{text}\n// edited\n")).unwrap();
    let v = run_writ(
        &["policy", "check", copy.to_str().unwrap(), "--json"],
        &[],
        None,
    )
    .json();
    assert_ne!(v["hash"], hash);
    std::fs::write(
        copy.join("broken.cedar"),
        "permit (principal, action, resource) when { context.x == };",
    )
    .unwrap();
    let out = run_writ(&["policy", "check", copy.to_str().unwrap()], &[], None);
    out.expect_code(1, "writ policy check of a broken bundle");
    assert!(out.stderr.contains("broken.cedar"), "{out:#?}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run_writ(&["policy", "check", empty.to_str().unwrap()], &[], None);
    out.expect_code(1, "writ policy check of an empty dir");
    assert!(out.stderr.contains("no *.cedar"), "{out:#?}");
}

#[test]
fn policy_test_reports_mismatches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_dir(&dir);
    let bundle = dir.join("policy");
    let ctx = |net: bool| json!({"scope": {"read": [], "write": [], "net": net}, "lineage": {"depth": 0}});
    let good = json!({"cases": [
        {"name": "true is harmless", "principal": "Agent::\"a\"", "action": "Action::\"exec\"", "resource": "Command::\"/usr/bin/true\"",
         "context": ctx(false), "expect": "allow", "policies": ["exec-harmless-commands"]},
        {"name": "rm is not", "principal": "Agent::\"a\"", "action": "Action::\"exec\"", "resource": "Command::\"/usr/bin/rm\"",
         "context": ctx(false), "expect": "deny", "policies": []},
        {"name": "no network", "principal": "Agent::\"a\"", "action": "Action::\"exec\"", "resource": "Command::\"/usr/bin/true\"",
         "context": ctx(true), "expect": "deny", "policies": ["exec-no-network"]},
    ]});
    let good_file = tmp.path().join("good.json");
    std::fs::write(&good_file, good.to_string()).unwrap();
    let out = run_writ(
        &[
            "policy",
            "test",
            good_file.to_str().unwrap(),
            "--bundle",
            bundle.to_str().unwrap(),
        ],
        &[],
        None,
    );
    out.expect_code(0, "writ policy test, all expectations right");
    assert!(out.stdout.contains("3 passed, 0 failed"), "{out:#?}");
    assert!(!out.stdout.contains("MISMATCH"), "{out:#?}");
    // Without --bundle: the data dir's policy/.
    let out = run_writ(
        &["policy", "test", good_file.to_str().unwrap()],
        &[("WRIT_DIR", dir.to_str().unwrap())],
        None,
    );
    out.expect_code(0, "writ policy test on the data dir's bundle");

    let mut bad = good.clone();
    bad["cases"][1]["expect"] = json!("allow");
    bad["cases"][2]["policies"] = json!(["lineage-max-depth-3"]);
    let bad_file = tmp.path().join("bad.json");
    std::fs::write(&bad_file, bad.to_string()).unwrap();
    let out = run_writ(
        &[
            "policy",
            "test",
            bad_file.to_str().unwrap(),
            "--bundle",
            bundle.to_str().unwrap(),
        ],
        &[],
        None,
    );
    out.expect_code(1, "writ policy test with wrong expectations");
    assert!(out.stdout.contains("1 passed, 2 failed"), "{out:#?}");
    assert!(
        out.stdout
            .contains("MISMATCH rm is not: expected allow by [], got deny by []"),
        "{out:#?}"
    );
    assert!(out.stdout.contains("MISMATCH no network"), "{out:#?}");
    assert!(out.stdout.contains("ok       true is harmless"), "{out:#?}");
    let out = run_writ(
        &[
            "policy",
            "test",
            bad_file.to_str().unwrap(),
            "--bundle",
            bundle.to_str().unwrap(),
            "--json",
        ],
        &[],
        None,
    );
    out.expect_code(1, "writ policy test --json with wrong expectations");
    let v = out.json();
    assert_eq!(
        (v["passed"].as_u64(), v["failed"].as_u64()),
        (Some(1), Some(2)),
        "{v}"
    );
    // A file that is not a test file.
    std::fs::write(&bad_file, r#"{"cases": [{"principal": 1}]}"#).unwrap();
    let out = run_writ(
        &[
            "policy",
            "test",
            bad_file.to_str().unwrap(),
            "--bundle",
            bundle.to_str().unwrap(),
        ],
        &[],
        None,
    );
    out.expect_code(1, "writ policy test on a malformed file");
    assert!(out.stderr.contains("not a policy test file"), "{out:#?}");
}

#[test]
fn demo_refuses_the_flags_it_would_ignore() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mine");
    for args in [
        vec!["demo", "--once", "--dir", dir.to_str().unwrap()],
        vec!["demo", "--once", "--server", "http://127.0.0.1:9"],
        vec!["demo", "--token", "writ_x", "--once"],
    ] {
        let out = run_writ(&args, &[], Some(tmp.path()));
        out.expect_code(2, &format!("writ {}", args.join(" ")));
        let flag = args.iter().find(|a| a.starts_with("--") && **a != "--once");
        assert!(
            out.stderr
                .contains(&format!("does not use {}", flag.unwrap())),
            "{out:#?}"
        );
    }
    assert!(!dir.exists(), "a refused demo made its data dir");
}

#[test]
fn demo_once_plays_every_step() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_writ(
        &["demo", "--once", "--listen", "127.0.0.1:0"],
        &[],
        Some(tmp.path()),
    );
    out.expect_code(0, "writ demo --once");
    for word in [
        "allow",
        "policy_denied",
        "invalid_signature",
        "replayed",
        "expired",
        "revoked",
    ] {
        assert!(
            out.stdout.contains(&format!("-> {word}")),
            "demo output lacks the outcome {word}:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("6 steps, 0 unexpected"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("UNEXPECTED"), "{}", out.stdout);
    // The machine-readable form agrees step by step (and an exported
    // WRIT_DIR, which the demo does not use, does not stop it).
    let out = run_writ(
        &["demo", "--once", "--listen", "127.0.0.1:0", "--json"],
        &[("WRIT_DIR", "/nonexistent/writ-dir")],
        Some(tmp.path()),
    );
    out.expect_code(0, "writ demo --once --json");
    let v = out.json();
    assert_eq!(v["failures"], 0, "{v}");
    let outcomes: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "allow",
            "policy_denied",
            "invalid_signature",
            "replayed",
            "expired",
            "revoked"
        ],
        "{v}"
    );
}

#[test]
fn principal_add_returns_a_token_that_authenticates() {
    let srv = Server::start();
    let out = srv.cli(
        Some(&srv.admin_token),
        &["principal", "add", "Agent::\"x\"", "--json"],
    );
    out.expect_code(0, "writ principal add --json");
    let v = out.json();
    assert_eq!(
        (v["uid"].as_str(), v["admin"].as_bool()),
        (Some("Agent::\"x\""), Some(false)),
        "{v}"
    );
    let token = v["token"].as_str().unwrap();
    assert!(
        token.starts_with("writ_") && token.len() >= 43 + 5,
        "256-bit token: {token}"
    );
    let (writ, _, _) = srv.authorize_ok(token, &exec_req(&["/usr/bin/true"], AUD));
    assert_eq!(claims_of(&writ)["sub"], "Agent::\"x\"");
    let out = srv.cli(
        Some(token),
        &[
            "authorize",
            "--resource",
            "Command::\"/usr/bin/true\"",
            "--audience",
            AUD,
        ],
    );
    out.expect_code(0, "writ authorize with the new token");
    assert_eq!(claims_of(out.stdout.trim())["sub"], "Agent::\"x\"");
    // The text form prints the token once too.
    let out = srv.cli(
        Some(&srv.admin_token),
        &["principal", "add", "Agent::\"y\""],
    );
    out.expect_code(0, "writ principal add");
    let t2 = out.stdout.lines().last().unwrap().trim();
    srv.authorize_ok(t2, &exec_req(&["/usr/bin/true"], AUD));
    // Refusals.
    let out = srv.cli(
        Some(&srv.admin_token),
        &["principal", "add", "Agent::\"x\""],
    );
    out.expect_code(1, "adding a principal twice");
    assert!(out.stderr.contains("already exists"), "{out:#?}");
    let out = srv.cli(Some(token), &["principal", "add", "Agent::\"z\""]);
    out.expect_code(1, "a non-admin adding a principal");
    assert!(out.stderr.contains("not an administrator"), "{out:#?}");
    let out = srv.cli(None, &["principal", "add", "Agent::\"z\""]);
    out.expect_code(1, "no token");
    assert!(out.stderr.contains("needs a token"), "{out:#?}");
    // An admin principal may add others.
    let out = srv.cli(
        Some(&srv.admin_token),
        &["principal", "add", "User::\"ops\"", "--admin", "--json"],
    );
    out.expect_code(0, "writ principal add --admin");
    let ops = out.json()["token"].as_str().unwrap().to_owned();
    srv.cli(Some(&ops), &["principal", "add", "Agent::\"z\""])
        .expect_code(0, "an added admin adds a principal");
}

#[test]
fn verify_offline_with_a_jwks_file() {
    let srv = Server::start();
    let (writ, _, _) = srv.authorize_ok(&srv.admin_token, &exec_req(&["/usr/bin/true"], AUD));
    let jwks = srv.tmp.path().join("jwks.json");
    std::fs::write(&jwks, srv.get("/.well-known/jwks.json", None).body).unwrap();
    let policy = srv.init["policy"].as_str().unwrap();
    let j = jwks.to_str().unwrap();
    // No data dir and no server: only the JWKS.
    let out = run_writ(
        &[
            "verify",
            &writ,
            "--jwks",
            j,
            "--policy",
            policy,
            "--audience",
            AUD,
        ],
        &[("WRIT_SERVER", "http://127.0.0.1:9")],
        None,
    );
    out.expect_code(0, "writ verify --jwks");
    assert!(
        out.stdout.starts_with(
            "valid: User::\"admin\" may Action::\"exec\" on Command::\"/usr/bin/true\""
        ),
        "{out:#?}"
    );
    // A JWKS alone does not say which bundles to accept: --jwks without
    // --policy or --any-policy is a usage error, not an accept-anything.
    let out = run_writ(&["verify", &writ, "--jwks", j], &[], None);
    out.expect_code(2, "writ verify --jwks without --policy");
    assert!(
        out.stderr.contains("--policy") && out.stderr.contains("--any-policy"),
        "{out:#?}"
    );
    assert!(out.stdout.is_empty(), "{out:#?}");
    for (args, what) in [
        (
            vec![
                "verify",
                &writ,
                "--jwks",
                j,
                "--policy",
                policy,
                "--any-policy",
            ],
            "--policy with --any-policy",
        ),
        (
            vec!["verify", &writ, "--any-policy"],
            "--any-policy without --jwks",
        ),
        (
            vec!["verify", &writ, "--policy", policy],
            "--policy without --jwks",
        ),
    ] {
        run_writ(&args, &[], None).expect_code(2, what);
    }
    let out = run_writ(&["verify", &writ, "--jwks", j, "--any-policy"], &[], None);
    out.expect_code(0, "writ verify --jwks --any-policy");
    assert!(
        out.stderr.contains("any policy bundle hash was accepted"),
        "{out:#?}"
    );
    let out = run_writ(
        &["verify", &writ, "--jwks", j, "--any-policy", "--json"],
        &[],
        None,
    );
    out.expect_code(0, "writ verify --jwks --any-policy --json");
    assert_eq!(out.json()["policy_checked"], false, "{out:#?}");
    let out = run_writ(
        &["verify", &writ, "--jwks", j, "--json", "--policy", policy],
        &[],
        None,
    );
    out.expect_code(0, "writ verify --jwks --json --policy");
    assert!(out.json().get("policy_checked").is_none(), "{out:#?}");
    let other = format!("sha256:{}", "0".repeat(64));
    run_writ(
        &["verify", &writ, "--jwks", j, "--policy", &other],
        &[],
        None,
    )
    .expect_denied("policy_mismatch", "--jwks with another policy");
    run_writ(
        &[
            "verify",
            &writ,
            "--jwks",
            j,
            "--policy",
            policy,
            "--audience",
            "x",
        ],
        &[],
        None,
    )
    .expect_denied("audience_mismatch", "--jwks, other audience");
    let (h, p, s) = parts(&writ);
    let mut c = claims_of(&writ);
    c["sub"] = json!("User::\"mallory\"");
    let forged = format!("{h}.{}.{s}", b64(&canonical(&c)));
    run_writ(
        &["verify", &forged, "--jwks", j, "--policy", policy],
        &[],
        None,
    )
    .expect_denied("invalid_signature", "--jwks, edited claims");
    run_writ(
        &[
            "verify",
            &format!("{h}.{p}"),
            "--jwks",
            j,
            "--policy",
            policy,
        ],
        &[],
        None,
    )
    .expect_denied("malformed_artifact", "--jwks, two parts");
    // The writ on standard input.
    let mut child = std::process::Command::new(writ_bin())
        .args(["verify", "--jwks", j, "--policy", policy, "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        format!("{writ}\n").as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["claims"]["jti"], claims_of(&writ)["jti"]);
}

#[test]
fn authzen_evaluation() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let ask = |body: Value| {
        let r = srv.post("/access/v1/evaluation", Some(&agent), &body);
        assert_eq!(
            r.status,
            200,
            "AuthZEN answers decisions with 200: {}",
            r.text()
        );
        r.json()
    };
    let allowed =
        json!({"action": {"name": "exec"}, "resource": {"type": "Command", "id": "/usr/bin/true"}});
    let v = ask(allowed.clone());
    assert_eq!(v["decision"], true, "{v}");
    let writ = v["context"]["writ"].as_str().unwrap();
    let claims = claims_of(writ);
    assert_eq!(
        (claims["sub"].as_str(), claims["aud"].as_str()),
        (Some("Agent::\"planner\""), Some("authzen")),
        "{claims}"
    );
    assert_eq!(claims["jti"], v["context"]["jti"]);
    assert_eq!(claims["writ"]["resource"], "Command::\"/usr/bin/true\"");
    let check = srv.verify(&json!({"writ": writ, "audience": "authzen"}));
    assert_eq!(check["valid"], true, "{check}");
    let idx = v["context"]["log_index"].as_u64().unwrap();
    let e = &srv.log_entries()[idx as usize]["entry"];
    assert_eq!(
        (e["decision"].as_str(), e["audience"].as_str()),
        (Some("allow"), Some("authzen")),
        "{e}"
    );

    // The subject, when given, must be the caller.
    let mut own = allowed.clone();
    own["subject"] = json!({"type": "Agent", "id": "planner"});
    assert_eq!(ask(own)["decision"], true);
    let mut other = allowed.clone();
    other["subject"] = json!({"type": "User", "id": "admin"});
    let v = ask(other);
    assert_eq!(v["decision"], false, "{v}");
    assert_eq!(v["context"]["reason"], "unauthenticated", "{v}");

    // Denied by policy.
    let v = ask(
        json!({"action": {"name": "exec"}, "resource": {"type": "Command", "id": "/usr/bin/rm"}}),
    );
    assert_eq!(v["decision"], false, "{v}");
    assert_eq!(v["context"]["reason"], "policy_denied", "{v}");
    assert_eq!(v["context"]["message"], "no policy permits this request");
    assert!(v["context"].get("writ").is_none(), "{v}");
    // Tool calls map to Tool entities.
    let v = ask(
        json!({"action": {"name": "call_tool"}, "resource": {"type": "Tool", "id": "filesystem/read_text_file"}}),
    );
    assert_eq!(v["decision"], true, "{v}");
    let v = ask(
        json!({"action": {"name": "call_tool"}, "resource": {"type": "Tool", "id": "filesystem/write_file"}}),
    );
    assert_eq!(v["decision"], false, "{v}");
    // Reserved context keys cannot be smuggled in through AuthZEN: refused
    // as on /v1/authorize (each key: bad_input.rs).
    let mut smuggle = allowed.clone();
    smuggle["context"] = json!({"scope": {"net": true}});
    let r = srv.post("/access/v1/evaluation", Some(&agent), &smuggle);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("context.scope"), "{}", r.text());
    // No token: 401.
    let r = srv.post("/access/v1/evaluation", None, &allowed);
    assert_eq!(r.status, 401, "{}", r.text());
    // Malformed: 400.
    let r = srv.post(
        "/access/v1/evaluation",
        Some(&agent),
        &json!({"action": "exec"}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // A request identifier comes back (AuthZEN 1.0), on an answer and on a refusal.
    let bearer = format!("Bearer {agent}");
    for (body, status) in [(allowed.to_string(), 200), ("{".to_owned(), 400)] {
        let r = http(
            &srv.addr,
            "POST",
            "/access/v1/evaluation",
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
                ("X-Request-ID", "req-42"),
            ],
            body.as_bytes(),
        );
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.header("x-request-id"), Some("req-42"), "{:?}", r.headers);
    }
}

#[test]
fn metrics_count_decisions_by_outcome() {
    let srv = Server::start();
    srv.authorize_ok(&srv.admin_token, &exec_req(&["/usr/bin/true"], AUD));
    srv.authorize_ok(&srv.admin_token, &exec_req(&["/usr/bin/true"], AUD));
    assert_eq!(
        srv.authorize(&srv.admin_token, &exec_req(&["/usr/bin/rm"], AUD))
            .status,
        403
    );
    assert_eq!(
        srv.post("/v1/authorize", None, &exec_req(&["/usr/bin/true"], AUD))
            .status,
        401
    );
    // Metrics are a principal's to read (SECURITY.md: the permission table).
    assert_eq!(srv.get("/metrics", None).status, 401);
    let r = srv.get("/metrics", Some(&srv.admin_token));
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .contains("openmetrics-text"),
        "{:?}",
        r.headers
    );
    let text = r.text();
    let lines: BTreeSet<&str> = text.lines().collect();
    for want in [
        "writ_decisions_total{outcome=\"allow\",reason=\"\"} 2",
        "writ_decisions_total{outcome=\"deny\",reason=\"policy_denied\"} 1",
        "writ_decisions_total{outcome=\"deny\",reason=\"unauthenticated\"} 1",
        "# TYPE writ_decisions counter",
        "writ_decision_latency_seconds_count 4",
    ] {
        assert!(lines.contains(want), "/metrics lacks {want:?}:\n{text}");
    }
    let size = srv.log_entries().len();
    assert!(
        lines.contains(format!("writ_log_entries {size}").as_str()),
        "log size {size}:\n{text}"
    );
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
}

#[test]
fn health_readiness_and_console() {
    let srv = Server::start();
    assert_eq!(srv.get("/healthz", None).json(), json!({"status": "ok"}));
    let v = srv.get("/readyz", None).json();
    assert_eq!(v["ready"], true);
    assert_eq!(v["policy"], srv.init["policy"]);
    assert_eq!(
        v["log_size"].as_u64().unwrap() as usize,
        srv.log_entries().len()
    );
    let r = srv.get("/", None);
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains(srv.init["policy"].as_str().unwrap()),
        "{}",
        r.text()
    );
    let r = srv.get("/no/such/route", None);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (404, json!("not_found"))
    );
}

/// `(path, methods)` of every `.route(...)` in the server's routes.rs, and
/// of the console's JSON routes (`/console/api/`; its pages and assets are
/// not API) merged into the same router (rustfmt may split a call over
/// several lines, so whitespace is dropped first).
fn registered_routes() -> Vec<(String, Vec<String>)> {
    const ROUTES: &str = include_str!("../../../writ-server/src/routes.rs");
    const CONSOLE: &str = include_str!("../../../writ-console/src/lib.rs");
    let mut out = routes_in(ROUTES);
    let console: Vec<_> = routes_in(CONSOLE)
        .into_iter()
        .filter(|(p, _)| p.starts_with("/console/api/"))
        .collect();
    assert!(console.len() >= 9, "the console's routes: {console:?}");
    out.extend(console);
    out
}

fn routes_in(source: &str) -> Vec<(String, Vec<String>)> {
    let compact: String = source.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    for call in compact.split(".route(\"").skip(1) {
        let end = call.find('"').unwrap();
        let path = call[..end].to_owned();
        // The handlers run up to the next chained call or the end of the builder.
        let handlers = &call[end..];
        let stop = [".layer(", ".merge(", ".fallback(", ";"]
            .iter()
            .filter_map(|m| handlers.find(m))
            .min()
            .unwrap_or(handlers.len());
        let handlers = &handlers[..stop];
        let methods: Vec<String> = ["get", "post", "put", "delete", "patch"]
            .iter()
            .filter(|m| handlers.contains(&format!("{m}(")))
            .map(|m| (*m).to_owned())
            .collect();
        assert!(
            !methods.is_empty(),
            "no method found for {path} in {call:?}"
        );
        out.push((path, methods));
    }
    out
}

#[test]
fn openapi_lists_every_registered_route() {
    let srv = Server::start();
    let r = srv.get("/openapi.json", None);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    let routes = registered_routes();
    assert!(routes.len() >= 15, "the route parser found only {routes:?}");
    for (path, methods) in &routes {
        let item = paths.get(path).unwrap_or_else(|| {
            panic!(
                "{path} is served but not in /openapi.json (paths: {:?})",
                paths.keys()
            )
        });
        for m in methods {
            assert!(
                item.get(m).is_some(),
                "{} {path} is served but not documented",
                m.to_uppercase()
            );
        }
    }
    // And the document names no route that is not served.
    let served: BTreeSet<&str> = routes.iter().map(|(p, _)| p.as_str()).collect();
    for p in paths.keys() {
        assert!(
            served.contains(p.as_str()),
            "{p} is documented but not served"
        );
    }
}

/// The routes docs/spec/api.md (the HTTP API) fixes that every deployment
/// must serve.
#[test]
fn every_spec_route_is_served() {
    let srv = Server::start();
    let (_, jti, _) = srv.authorize_ok(&srv.admin_token, &exec_req(&["/usr/bin/true"], AUD));
    assert_eq!(srv.start_execution(&srv.admin_token, &jti).status, 200);
    let mut missing = Vec::new();
    for (method, path) in [
        ("GET", "/v1/log/checkpoint".to_string()),
        ("GET", "/v1/log/proof/inclusion?index=0&size=2".into()),
        ("GET", "/v1/log/proof/consistency?first=1&second=2".into()),
        ("POST", format!("/v1/executions/{jti}/renew")),
    ] {
        let body = (method == "POST").then(|| json!({}));
        let r = srv.request(method, &path, Some(&srv.admin_token), body.as_ref());
        if r.status == 404 || r.status == 405 {
            missing.push(format!("{method} {path} -> {}", r.status));
        }
    }
    assert!(
        missing.is_empty(),
        "routes of docs/spec/api.md not served: {missing:#?}"
    );
}

#[test]
fn the_mesh_route_is_served() {
    let srv = Server::start();
    assert_eq!(srv.request("GET", "/v1/mesh", None, None).status, 401);
    let r = srv.request("GET", "/v1/mesh", Some(&srv.admin_token), None);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn key_rotation_keeps_issued_writs_valid() {
    let srv = Server::start();
    let old_kid = srv.init["writ_kid"].as_str().unwrap().to_owned();
    let (w1, _, _) = srv.authorize_ok(&srv.admin_token, &exec_req(&["/usr/bin/true"], AUD));
    let agent = srv.add_principal("Agent::\"a\"");
    let out = srv.cli(Some(&agent), &["key", "rotate"]);
    out.expect_code(1, "a non-admin rotating the key");
    assert!(out.stderr.contains("not an administrator"), "{out:#?}");
    let out = srv.cli(Some(&srv.admin_token), &["key", "rotate", "--json"]);
    out.expect_code(0, "writ key rotate");
    let new_kid = out.json()["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(
        std::fs::read_to_string(srv.dir.join("keys/current"))
            .unwrap()
            .trim(),
        new_kid
    );
    let mode = std::fs::metadata(srv.dir.join(format!("keys/writ-{new_kid}.pem")))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let kids: BTreeSet<String> = srv.get("/.well-known/jwks.json", None).json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, BTreeSet::from([old_kid.clone(), new_kid.clone()]));
    let (w2, _, _) = srv.authorize_ok(&srv.admin_token, &exec_req(&["/usr/bin/true"], AUD));
    assert_eq!(header_of(&w2)["kid"], new_kid.as_str());
    for w in [&w1, &w2] {
        assert_eq!(srv.verify(&json!({"writ": w}))["valid"], true);
        srv.cli(None, &["verify", w])
            .expect_code(0, "local verify after rotation");
    }
}

/// Regression guard: the HTTP authentication scheme is case-insensitive (RFC 9110
/// section 11.1), but routes.rs `bearer` only strips the exact prefix
/// "Bearer ", so `Authorization: bearer <token>` is unauthenticated.
#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let srv = Server::start();
    let body = serde_json::to_vec(&exec_req(&["/usr/bin/true"], AUD)).unwrap();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let auth = format!("{scheme} {}", srv.admin_token);
        let r = http(
            &srv.addr,
            "POST",
            "/v1/authorize",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            &body,
        );
        assert_eq!(r.status, 200, "scheme {scheme:?}: {}", r.text());
    }
}

/// Regression guard (issue 8, found by the API token test): the positional
/// bundle directory of `writ policy bundle` was named like the global
/// `--dir`, so clap used it as the data dir too and the command looked for
/// `DIR/keys/policy.pem`; it could sign nothing.
#[test]
fn policy_bundle_signs_with_the_data_dirs_policy_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let init = init_dir(&dir);
    let out_file = tmp.path().join("signed.json");
    let policy_dir = dir.join("policy");
    let out = run_writ(
        &[
            "--dir",
            dir.to_str().unwrap(),
            "policy",
            "bundle",
            policy_dir.to_str().unwrap(),
            "--out",
            out_file.to_str().unwrap(),
            "--json",
        ],
        &[],
        None,
    );
    out.expect_code(0, "writ policy bundle");
    let v = out.json();
    assert_eq!(v["hash"], init["policy"], "{v}");
    let signed: Value = serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(signed["hash"], init["policy"]);
    assert_eq!(signed["kid"], v["kid"]);
}

/// One data dir, one server: a second `writ serve` on a dir that is being
/// served is refused at once, and the first keeps deciding (two writers on
/// one store broke the first for good: each holds the next log index).
#[test]
fn a_second_server_on_a_served_data_dir_is_refused() {
    let srv = Server::start();
    let dir = srv.dir.to_str().unwrap().to_owned();
    let serve = ["--dir", &dir, "serve", "--listen", "127.0.0.1:0"];
    let second = spawn_writ(&serve, &[], None);
    let out = wait_writ(second, Duration::from_secs(30));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("another writ serve is serving"),
        "{}",
        out.stderr
    );
    let (_, _, claims) = srv.authorize_ok(&srv.admin_token, &exec_req(&["/usr/bin/true"], AUD));
    assert!(claims["jti"].is_string());
    // Once the first server is gone, the dir can be served again.
    let mut srv = srv;
    assert!(srv.terminate(Duration::from_secs(15)).is_some());
    let again = spawn_writ(&serve, &[], None);
    std::thread::sleep(Duration::from_millis(1500));
    let mut again = again;
    let still_running = again.try_wait().unwrap().is_none();
    let _ = again.kill();
    let out = again.wait_with_output().unwrap();
    assert!(
        still_running,
        "the dir could not be served after the first server stopped: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A principal or administrator that is not a Cedar entity UID, or a log
/// origin that cannot name a key, is refused before anything is written
/// (each made a principal that could never be decided for, or a data dir
/// that would not serve).
#[test]
fn malformed_uids_and_origins_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    for (flag, value, says) in [
        ("--admin", "notauid", "--admin"),
        ("--admin", "Agent::\"a\"::\"b\"", "--admin"),
        ("--origin", "my log", "--origin"),
        ("--origin", "", "--origin"),
        ("--origin", "a\nb", "--origin"),
    ] {
        let dir = tmp.path().join("d");
        let out = run_writ(
            &["--dir", dir.to_str().unwrap(), "init", flag, value],
            &[],
            None,
        );
        assert_eq!(out.code, 1, "{flag} {value:?}: {out:?}");
        assert!(
            out.stderr.contains(says),
            "{flag} {value:?}: {}",
            out.stderr
        );
        assert!(!dir.exists(), "{flag} {value:?} left {}", dir.display());
    }
    let srv = Server::start();
    for uid in [
        "Agent::\"a\"::\"b\"",
        "Agent::\"a\u{0}b",
        "notauid",
        "Agent::",
    ] {
        let r = srv.post(
            "/v1/principals",
            Some(&srv.admin_token),
            &json!({"uid": uid}),
        );
        assert_eq!(r.status, 400, "{uid:?}: {}", r.text());
    }
    let added = srv
        .log_entries()
        .into_iter()
        .filter(|e| e["entry"]["type"] == "principal_added")
        .count();
    assert_eq!(added, 1, "only the first administrator was added");
}

/// `writ ... | head -1`: a closed standard output ends the command quietly
/// with status 141 (as SIGPIPE would), not with a panic and a backtrace
/// (`writ log export --out -`, which writes its output whole: log.rs).
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_dir(&dir);
    let case = json!({"principal": "User::\"a\"", "action": "Action::\"exec\"",
        "resource": "Command::\"/usr/bin/ls\"",
        "context": {"scope": {"net": false, "read": [], "write": []}, "lineage": {"depth": 0}},
        "expect": "allow"});
    let file = tmp.path().join("cases.json");
    let cases = vec![case; 20_000];
    std::fs::write(&file, json!({ "cases": cases }).to_string()).unwrap();
    let bundle = dir.join("policy");
    let mut child = spawn_writ(
        &[
            "policy",
            "test",
            "--bundle",
            bundle.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
        &[("RUST_BACKTRACE", "1")],
        None,
    );
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("ok"), "{first}");
    // The reader is dropped here: standard output is closed.
    let out = wait_writ(child, Duration::from_secs(60));
    assert_eq!(out.code, 141, "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

/// The two binaries: `writ` holds the enforcement points and sends every
/// other line to `writ-full` beside it. Cedar, SQLite and the server are in
/// `writ-full` only (the runner's start is on the path of every governed
/// run), and without `writ-full` a non-gate line fails with a clear error.
#[test]
fn writ_runs_the_gate_and_sends_the_rest_to_writ_full() {
    // As text, so the search is std's (optimized even in a test build).
    let text = |p: &str| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    let (gate, full) = (text(writ_bin()), text(env!("CARGO_BIN_EXE_writ-full")));
    let has = |bin: &str, needle: &str| bin.contains(needle);
    for marker in [
        "cedar_policy",
        "sqlite3_prepare_v2",
        "writ_server",
        "writ_store",
        "writ_authority",
    ] {
        assert!(
            has(&full, marker),
            "writ-full lacks {marker}: the check below proves nothing"
        );
        assert!(!has(&gate, marker), "the gate binary links {marker}");
    }
    assert!(has(&gate, "writ_gate"));

    // A line that is not a gate line reaches writ-full, with its usage as writ's.
    let out = run_writ(&["--version"], &[], None);
    out.expect_code(0, "writ --version");
    assert!(out.stdout.starts_with("writ "), "{out:#?}");
    let out = run_writ(&["exec", "--help"], &[], None);
    out.expect_code(0, "writ exec --help");
    assert!(out.stdout.contains("Usage: writ exec"), "{out:#?}");
    let out = run_writ(&["lineage", "--bogus"], &[], None);
    out.expect_code(2, "a usage error");
    assert!(out.stderr.contains("Usage: writ lineage"), "{out:#?}");

    // `writ serve` is writ-full in the same process, under the name run.
    let server = Server::start();
    let proc = format!("/proc/{}", server.pid());
    let exe = std::fs::read_link(format!("{proc}/exe")).unwrap();
    assert_eq!(exe.file_name().unwrap(), "writ-full");
    assert_eq!(
        std::fs::read_to_string(format!("{proc}/comm")).unwrap(),
        "writ\n"
    );
    drop(server);

    // Alone, `writ` still runs what it holds and explains what it lacks.
    let alone = tempfile::tempdir().unwrap();
    let copy = alone.path().join("writ");
    std::fs::copy(writ_bin(), &copy).unwrap();
    let out = std::process::Command::new(&copy)
        .arg("--version")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot run {}",
            alone.path().join("writ-full").display()
        )) && stderr.contains("cargo build --release"),
        "{stderr}"
    );
    let out = std::process::Command::new(&copy)
        .args(["exec", "--server", "http://127.0.0.1:9", "--", "/bin/true"])
        .env("WRIT_TOKEN", "t")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(25), "{stderr}");
    assert!(
        stderr.starts_with("denied: authority_unavailable: "),
        "{stderr}"
    );
}

#[test]
fn serve_json_prints_where_it_listens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let init = init_dir(&dir);
    let mut child = spawn_writ(
        &[
            "--dir",
            dir.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--json",
        ],
        &[],
        None,
    );
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(10));
    // Asked while it still serves; checked after it is stopped.
    let health = line.as_ref().ok().and_then(|l| {
        let v: Value = serde_json::from_str(l).ok()?;
        let addr = v["url"].as_str()?.strip_prefix("http://")?.to_owned();
        Some(http(&addr, "GET", "/healthz", &[], b"").status)
    });
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("writ serve --json printed no line within 10 s");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(v["policy"], init["policy"], "{v}");
    let url = v["url"].as_str().unwrap();
    let port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{url}"));
    assert_ne!(port, 0, "the port it bound, not the one asked for: {v}");
    assert_eq!(health, Some(200), "GET /healthz at the printed URL");
}

/// A shared store that cannot be reached (a port nobody listens on, a host
/// name that does not resolve) used to panic ("Cannot drop a runtime in a
/// context where blocking is not allowed", exit 101) without naming the
/// cause. It is an error now, exit 1, naming it, for `init` and `serve`.
#[test]
fn a_store_that_cannot_be_reached_is_a_clear_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    for (url, cause) in [
        ("postgres://writ@127.0.0.1:1/writ", "Connection refused"),
        (
            "postgres://writ@host.invalid/writ?sslmode=disable",
            "lookup",
        ),
        // Another host with no sslmode named: refused before connecting.
        ("postgres://writ@host.invalid/writ", "sslmode=verify-full"),
    ] {
        for cmd in [
            &["init", "--store", url][..],
            &["serve", "--store", url][..],
        ] {
            let dir = tmp.path().join(format!("d{}", rand_dir()));
            let mut args = vec!["--dir", dir.to_str().unwrap()];
            args.extend_from_slice(cmd);
            let out = run_writ(&args, &[], None);
            assert_eq!(out.code, 1, "{cmd:?}: {out:#?}");
            assert!(
                out.stderr.contains(cause) && !out.stderr.contains("panicked"),
                "{cmd:?}: {out:#?}"
            );
        }
    }
}

fn rand_dir() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The data dir holds the log's content and the private keys: `writ init`
/// makes it its owner's only (0700), with the store and config 0600.
#[test]
fn a_new_data_dir_is_its_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    init_dir(&dir);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for f in ["writ.db", "config.json", "keys"] {
        let m = mode(&dir.join(f));
        assert_eq!(m & 0o077, 0, "{f} is {m:o}");
    }
    // Another local user, for real: `nobody` cannot read the store (run as
    // root, as CI does; the modes above hold either way).
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        // The tempdir is made traversable (it is 0700), so that only the data
        // dir's own modes stand in the way.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in ["writ.db", "config.json"] {
            let out = std::process::Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
                .arg(dir.join(f))
                .output()
                .unwrap();
            assert!(!out.status.success(), "nobody read {f}");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
                "{f}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
