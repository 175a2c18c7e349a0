//! The trust boundary of the authority, attacked end to end against a real
//! `writ serve`: authority that can be taken back (a revoked or disabled
//! administrator can do nothing, a token can be rotated), lineage that
//! cannot be hijacked (a parent belongs to its caller unless delegated) and
//! whose revocation does not depend on its size, and governed programs that
//! hold a credential of their own run instead of the caller's token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

const ALLOW_ALL: &str =
    "@id(\"exec-anything\")\npermit (principal, action == Action::\"exec\", resource);\n";

fn add(srv: &Server, uid: &str, admin: bool) -> String {
    let r = srv.post(
        "/v1/principals",
        Some(&srv.admin_token),
        &json!({"uid": uid, "admin": admin}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_owned()
}

fn entries_of_type(srv: &Server, kind: &str) -> Vec<Value> {
    srv.log_entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["type"] == kind)
        .collect()
}

/// Every route an administrator or a principal may call, each with a body it
/// would accept; `jti` is a running writ of `User::"admin"`'s.
fn every_authenticated_call(srv: &Server, jti: &str) -> Vec<(&'static str, String, Option<Value>)> {
    let bundle_dir = srv.tmp.path().join("bundle-for-calls");
    std::fs::create_dir_all(&bundle_dir).unwrap();
    std::fs::write(bundle_dir.join("p.cedar"), ALLOW_ALL).unwrap();
    let signed = srv.tmp.path().join("bundle-for-calls.json");
    srv.cli(
        None,
        &[
            "policy",
            "bundle",
            bundle_dir.to_str().unwrap(),
            "--out",
            signed.to_str().unwrap(),
        ],
    )
    .expect_code(0, "writ policy bundle");
    let bundle: Value = serde_json::from_str(&std::fs::read_to_string(&signed).unwrap()).unwrap();
    vec![
        (
            "POST",
            "/v1/principals".into(),
            Some(json!({"uid": "Agent::\"minted\"", "admin": true})),
        ),
        ("GET", "/v1/principals".into(), None),
        (
            "POST",
            "/v1/principals/rotate".into(),
            Some(json!({"uid": "User::\"admin\""})),
        ),
        (
            "POST",
            "/v1/principals/disable".into(),
            Some(json!({"uid": "Agent::\"bystander\""})),
        ),
        (
            "POST",
            "/v1/principals/enable".into(),
            Some(json!({"uid": "Agent::\"bystander\""})),
        ),
        ("POST", "/v1/revocations".into(), Some(json!({"jti": jti}))),
        ("GET", "/v1/revocations".into(), None),
        ("POST", "/v1/keys/rotate".into(), Some(json!({}))),
        ("POST", "/v1/policies".into(), Some(bundle)),
        ("GET", "/v1/policies".into(), None),
        (
            "POST",
            "/v1/authorize".into(),
            Some(exec_req(&["/usr/bin/true"], "exec@x")),
        ),
        (
            "POST",
            format!("/v1/executions/{jti}/renew"),
            Some(json!({})),
        ),
        (
            "POST",
            format!("/v1/executions/{jti}/finish"),
            Some(json!({"exit_status": 0})),
        ),
        ("GET", format!("/v1/lineage/{jti}"), None),
        ("GET", "/v1/revocations/stream".into(), None),
        ("POST", "/v1/log/checkpoint".into(), Some(json!({}))),
        (
            "POST",
            "/access/v1/evaluation".into(),
            Some(
                json!({"action": {"name": "exec"}, "resource": {"type": "Command", "id": "/usr/bin/true"}}),
            ),
        ),
    ]
}

/// A revoked administrator kept every administrative power (adding admins,
/// revoking, rotating keys): authentication itself now refuses a revoked or
/// disabled principal's token, on every route, and nothing changes.
#[test]
fn a_revoked_or_disabled_admin_has_no_power_on_any_route() {
    let srv = Server::start();
    activate_policy(&srv, "all", ALLOW_ALL);
    add(&srv, "Agent::\"bystander\"", false);
    let (_, jti, _) = srv.authorize_ok(
        &srv.admin_token,
        &json!({"action": "Action::\"exec\"", "resource": "Command::\"/usr/bin/sleep\"",
                "request": {"argv": ["/usr/bin/sleep", "60"]}, "audience": "exec@x", "start": true}),
    );
    for how in ["revoke", "disable"] {
        let uid = format!("User::\"second-admin-{how}\"");
        let leaked = add(&srv, &uid, true);
        // The leaked token works until it is taken back.
        assert_eq!(srv.get("/v1/principals", Some(&leaked)).status, 200);
        let r = match how {
            "revoke" => srv.post(
                "/v1/revocations",
                Some(&srv.admin_token),
                &json!({"principal": uid, "reason": "token leaked"}),
            ),
            _ => srv.post(
                "/v1/principals/disable",
                Some(&srv.admin_token),
                &json!({"uid": uid}),
            ),
        };
        assert_eq!(r.status, 200, "{how}: {}", r.text());
        let size = srv.log_entries().len();
        let jwks = srv.get("/.well-known/jwks.json", None).text();
        for (method, path, body) in every_authenticated_call(&srv, &jti) {
            let r = srv.request(method, &path, Some(&leaked), body.as_ref());
            if path.ends_with("/finish") {
                // A finish grants nothing, so a stopped runner of a revoked
                // principal may still record how its own run ended; but
                // never with an administrator's power over another's.
                assert_eq!(r.status, 403, "{how}: {method} {path}: {}", r.text());
                continue;
            }
            assert_eq!(
                r.status,
                401,
                "{how}: {method} {path} with the {how}d admin's token: {}",
                r.text()
            );
            let v: Value = serde_json::from_str(&r.text()).unwrap_or(Value::Null);
            let reason = v["reason"].as_str().unwrap_or_default();
            assert_eq!(reason, "unauthenticated", "{how}: {method} {path}: {v}");
            let msg = v["message"].as_str().unwrap_or_default();
            assert!(
                msg.contains(&format!("is {how}d")),
                "{how}: {method} {path}: {msg}"
            );
        }
        // Nothing happened: no entry, no new key, the writ still runs.
        assert_eq!(srv.log_entries().len(), size, "{how}: the log grew");
        assert_eq!(srv.get("/.well-known/jwks.json", None).text(), jwks);
        assert!(srv
            .cli(Some(&srv.admin_token), &["lineage", &jti, "--json"])
            .stdout
            .contains("\"running\""));
    }
    // The real administrator is untouched, and cannot disable or revoke
    // itself while it is the last one that can act.
    let r = srv.post(
        "/v1/principals/disable",
        Some(&srv.admin_token),
        &json!({"uid": "User::\"admin\""}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    let r = srv.post(
        "/v1/revocations",
        Some(&srv.admin_token),
        &json!({"principal": "User::\"admin\""}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        srv.get("/v1/principals", Some(&srv.admin_token)).status,
        200
    );
}

/// A lost token no longer costs the principal its name: `rotate` gives a
/// new one and the old one dies at once; `disable` suspends a principal
/// (its token, its writs and its running programs) and `enable` brings it
/// back; `list` shows each one's status; every change is a log entry.
#[test]
fn principals_rotate_disable_enable_and_list_each_logged() {
    let srv = Server::start();
    activate_policy(&srv, "all", ALLOW_ALL);
    let old = add(&srv, "Agent::\"planner\"", false);
    let admin = Some(srv.admin_token.as_str());
    let ok = |token: &str| srv.get("/v1/revocations", Some(token)).status;
    assert_eq!(ok(&old), 200);

    // Rotate (through the CLI): the old token stops, the new one works.
    let out = srv.cli(
        admin,
        &["principal", "rotate", "Agent::\"planner\"", "--json"],
    );
    out.expect_code(0, "writ principal rotate");
    let new = out.json()["token"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(ok(&old), 401);
    assert_eq!(ok(&new), 200);
    // A principal that holds no admin role cannot rotate anyone.
    let r = srv.post(
        "/v1/principals/rotate",
        Some(&new),
        &json!({"uid": "User::\"admin\""}),
    );
    assert_eq!(r.status, 403, "{}", r.text());

    // A running program of the principal, and a writ it holds unstarted.
    let tmp = tempfile::tempdir().unwrap();
    let run = spawn_writ(
        &["exec", "--lifetime", "600", "--", "/usr/bin/sleep", "600"],
        &[("WRIT_SERVER", &srv.url), ("WRIT_TOKEN", &new)],
        Some(tmp.path()),
    );
    let mut running = String::new();
    wait_for("the run to start", Duration::from_secs(30), || {
        running = entries_of_type(&srv, "execution_start")
            .last()
            .and_then(|e| e["jti"].as_str().map(str::to_owned))
            .unwrap_or_default();
        !running.is_empty()
    });
    let (held, _, _) = srv.authorize_ok(&new, &exec_req(&["/usr/bin/true"], "exec@x"));

    // Disable: the token, the held writ and the running program all stop.
    let t0 = Instant::now();
    let out = srv.cli(admin, &["principal", "disable", "Agent::\"planner\""]);
    out.expect_code(0, "writ principal disable");
    assert_eq!(ok(&new), 401);
    let v = srv.verify(&json!({"writ": held}));
    assert_eq!(
        (v["valid"].as_bool(), v["reason"].as_str()),
        (Some(false), Some("revoked")),
        "{v}"
    );
    // The runner hears it on its revocation stream (`revoked`), or, if it
    // had not opened the stream yet, from its renewal (`unauthenticated`).
    let out = wait_writ(run, Duration::from_secs(20));
    assert!(
        (out.code == 21 && out.stderr.starts_with("denied: revoked: "))
            || (out.code == 24 && out.stderr.starts_with("denied: unauthenticated: ")),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains("is disabled") || out.stderr.contains("was disabled"),
        "{out:#?}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the run ended {:?} after the principal was disabled",
        t0.elapsed()
    );
    let list = srv.cli(admin, &["principal", "list", "--json"]);
    list.expect_code(0, "writ principal list");
    let status_of = |list: &Value, uid: &str| {
        list["principals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["uid"] == uid)
            .map(|p| p["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        status_of(&list.json(), "Agent::\"planner\"").as_deref(),
        Some("disabled")
    );
    assert!(!list.stdout.contains("token"), "{}", list.stdout);

    // Enable: the token works again, and so does the unexpired writ.
    srv.cli(admin, &["principal", "enable", "Agent::\"planner\""])
        .expect_code(0, "writ principal enable");
    assert_eq!(ok(&new), 200);
    let v = srv.verify(&json!({"writ": held}));
    assert_eq!(v["valid"], true, "{v}");

    // Revocation is for good: the name cannot be rotated back to life.
    srv.cli(admin, &["revoke", "--principal", "Agent::\"planner\""])
        .expect_code(0, "writ revoke --principal");
    let r = srv.post(
        "/v1/principals/rotate",
        admin,
        &json!({"uid": "Agent::\"planner\""}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    let list = srv.cli(admin, &["principal", "list", "--json"]);
    assert_eq!(
        status_of(&list.json(), "Agent::\"planner\"").as_deref(),
        Some("revoked")
    );

    // Each change is in the log, in order, by the administrator.
    let changes: Vec<(String, String)> = entries_of_type(&srv, "principal_change")
        .iter()
        .map(|e| {
            assert_eq!(e["by"], "User::\"admin\"");
            (
                e["uid"].as_str().unwrap().to_owned(),
                e["change"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let planner = "Agent::\"planner\"".to_owned();
    assert_eq!(
        changes,
        vec![
            (planner.clone(), "token_rotated".into()),
            (planner.clone(), "disabled".into()),
            (planner, "enabled".into()),
        ]
    );
    // The log verifies offline with these entries in it.
    run_writ(&["--dir", srv.dir_str(), "log", "verify"], &[], None)
        .expect_code(0, "writ log verify");
}

/// Bob named Alice's running writ as his parent (jtis are public) and was
/// allowed, then hung enough children on it to block its revocation. A
/// parent now belongs to its caller, or to a principal it was delegated to
/// when it was issued (logged, and seen by the policy).
#[test]
fn another_principals_writ_cannot_be_a_parent_unless_delegated() {
    let srv = Server::start();
    activate_policy(
        &srv,
        "all",
        &format!(
            "{ALLOW_ALL}@id(\"no-delegating-to-mallory\")\nforbid (principal, action, resource) when {{ context has delegates && context.delegates.contains(\"Agent::\\\"mallory\\\"\") }};\n"
        ),
    );
    let alice = add(&srv, "Agent::\"alice\"", false);
    let bob = add(&srv, "Agent::\"bob\"", false);
    let run = |parent: &str| {
        json!({"action": "Action::\"exec\"", "resource": "Command::\"/usr/bin/true\"",
               "request": {"argv": ["/usr/bin/true"]}, "audience": "exec@x", "parent": parent})
    };
    let mut root = exec_req(&["/usr/bin/sleep", "60"], "exec@x");
    root["start"] = json!(true);
    let (_, alices, _) = srv.authorize_ok(&alice, &root);
    // Bob's children of Alice's writ: each denied and logged, none recorded.
    for _ in 0..20 {
        let r = srv.authorize(&bob, &run(&alices));
        let v = r.json();
        assert_eq!(
            (r.status, v["reason"].as_str()),
            (403, Some("lineage_broken")),
            "{v}"
        );
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("belongs to Agent::\"alice\""),
            "{v}"
        );
    }
    let lineage = srv
        .get(&format!("/v1/lineage/{alices}"), Some(&alice))
        .json();
    assert_eq!(lineage["tree"]["children"], json!([]), "{lineage}");
    // Even an administrator cannot adopt another principal's writ.
    let r = srv.authorize(&srv.admin_token, &run(&alices));
    assert_eq!(r.json()["reason"], "lineage_broken", "{}", r.text());

    // Delegated when issued: Bob may hang children on it, the policy sees
    // both principals, and the decision entry records the delegation.
    let mut delegated = root.clone();
    delegated["delegates"] = json!(["Agent::\"bob\""]);
    let (_, shared, _) = srv.authorize_ok(&alice, &delegated);
    let (child, _, _) = srv.authorize_ok(&bob, &run(&shared));
    let c = claims_of(&child);
    assert_eq!(c["sub"], "Agent::\"bob\"");
    assert_eq!(c["writ"]["lineage"]["parent"], shared);
    let entries = srv.log_entries();
    let issued = entries
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["jti"] == shared && e["type"] == "decision")
        .unwrap();
    assert_eq!(issued["delegates"], json!(["Agent::\"bob\""]));
    assert_eq!(issued["context"]["delegates"], json!(["Agent::\"bob\""]));
    let child_entry = entries
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["parent"] == shared && e["decision"] == "allow")
        .unwrap();
    assert_eq!(
        child_entry["context"]["lineage"]["root_principal"],
        "Agent::\"alice\""
    );
    // Delegated to Bob is not delegated to anyone else.
    let carol = add(&srv, "Agent::\"carol\"", false);
    assert_eq!(
        srv.authorize(&carol, &run(&shared)).json()["reason"],
        "lineage_broken"
    );
    // And a delegation is a decision: a policy can refuse it.
    let mut to_mallory = root.clone();
    to_mallory["delegates"] = json!(["Agent::\"mallory\""]);
    let r = srv.authorize(&alice, &to_mallory);
    assert_eq!(r.json()["reason"], "policy_denied", "{}", r.text());
    // A delegate that is not a Cedar UID is not a question at all.
    to_mallory["delegates"] = json!(["mallory"]);
    assert_eq!(srv.authorize(&alice, &to_mallory).status, 400);
}

fn bulk_descendants(db: &Path, root: &str, principal: &str, n: usize) -> Vec<String> {
    let mut c = rusqlite::Connection::open(db).unwrap();
    let (log_index, exp, policy): (i64, i64, String) = c
        .query_row(
            "SELECT log_index, exp, policy FROM writs WHERE jti = ?1",
            [root],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let tx = c.transaction().unwrap();
    let mut out = Vec::with_capacity(n);
    {
        let mut ins = tx
            .prepare(
                "INSERT INTO writs (jti, principal, action, resource, audience, parent, root, depth, scope, policy, iat, exp, log_index)
                 VALUES (?1, ?2, 'Action::\"exec\"', 'Command::\"/usr/bin/true\"', 'exec@x', ?3, ?4, ?5, '{\"net\":false,\"read\":[],\"write\":[]}', ?6, 0, ?7, ?8)",
            )
            .unwrap();
        // A wide tree: 1,000 children of the root, and under each 99
        // grandchildren.
        let mut next = 0u64;
        let mut jti = || {
            next += 1;
            format!("{:016x}{:016x}", 0xfeed_0000_u64, next)
        };
        while out.len() < n {
            let child = jti();
            ins.execute(rusqlite::params![
                child, principal, root, root, 1, policy, exp, log_index
            ])
            .unwrap();
            out.push(child.clone());
            for _ in 0..99 {
                if out.len() >= n {
                    break;
                }
                let g = jti();
                ins.execute(rusqlite::params![
                    g, principal, child, root, 2, policy, exp, log_index
                ])
                .unwrap();
                out.push(g);
            }
        }
    }
    tx.commit().unwrap();
    out
}

/// A revocation used to walk and mark the whole subtree and refused one of
/// more than 100,000 writs ("subtree exceeds 100000 writs"), so a large
/// enough subtree made its root unrevocable. Now only the target is marked
/// and every descendant is revoked through it: one call, one row, one
/// entry, whatever the subtree's size.
#[test]
fn a_writ_with_100000_descendants_is_revoked_in_one_call_within_a_second() {
    let mut srv = Server::start();
    activate_policy(&srv, "all", ALLOW_ALL);
    let alice = add(&srv, "Agent::\"alice\"", false);
    let mut root = exec_req(&["/usr/bin/sleep", "600"], "exec@x");
    root["start"] = json!(true);
    root["lifetime_secs"] = json!(600);
    let (_, rj, _) = srv.authorize_ok(&alice, &root);
    // Real descendants, two levels deep, one left unstarted.
    let mut child = root.clone();
    child["parent"] = json!(rj);
    let (_, cj, _) = srv.authorize_ok(&alice, &child);
    let mut grandchild = exec_req(&["/usr/bin/true"], "exec@x");
    grandchild["parent"] = json!(cj);
    let (gw, gj, _) = srv.authorize_ok(&alice, &grandchild);
    // And 100,001 more, written into the store with the server stopped:
    // the path under test (revoke, then verify and start) reads them as it
    // would read writs issued over the API.
    srv.kill_hard();
    let bulk = bulk_descendants(&srv.db_path(), &rj, "Agent::\"alice\"", 100_001);
    srv.restart();
    let t0 = Instant::now();
    let r = srv.post(
        "/v1/revocations",
        Some(&srv.admin_token),
        &json!({"jti": rj, "reason": "subtree too big to matter"}),
    );
    let took = t0.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["revoked"], json!([rj]));
    assert!(
        took < Duration::from_secs(1),
        "the revocation took {took:?}"
    );
    eprintln!(
        "revoked a writ with {} descendants in {took:?}",
        bulk.len() + 2
    );
    // Its lineage is bounded: the first 10,000 nodes, said to be cut, read
    // off the decision path (`/v1/lineage` and the console's).
    for path in [
        format!("/v1/lineage/{rj}"),
        format!("/console/api/lineage/{rj}"),
    ] {
        let l = srv.get(&path, Some(&srv.admin_token));
        assert_eq!(l.status, 200, "{path}: {}", l.text());
        let v = l.json();
        assert_eq!(v["truncated"], true, "{path}");
        fn count(n: &Value) -> usize {
            1 + n["children"]
                .as_array()
                .map_or(0, |c| c.iter().map(count).sum())
        }
        assert_eq!(count(&v["tree"]), 10_000, "{path}");
    }
    // One row, one entry.
    let revocations = srv.get("/v1/revocations", Some(&srv.admin_token)).json();
    assert_eq!(
        revocations["revocations"].as_array().unwrap().len(),
        1,
        "{revocations}"
    );
    assert_eq!(entries_of_type(&srv, "revocation").len(), 1);
    // Every descendant is revoked: a real grandchild at verification, a
    // bulk one, the deepest and the last, at its start.
    let v = srv.verify(&json!({"writ": gw}));
    assert_eq!(v["reason"], "revoked", "{v}");
    assert!(v["message"].as_str().unwrap().contains(&rj), "{v}");
    for j in [&gj, &bulk[1], bulk.last().unwrap()] {
        let r = srv.start_execution(&alice, j);
        assert_eq!(
            (r.status, r.json()["reason"].as_str()),
            (403, Some("revoked")),
            "start of {j}: {}",
            r.text()
        );
    }
    // And nothing new hangs from it.
    let mut late = exec_req(&["/usr/bin/true"], "exec@x");
    late["parent"] = json!(cj);
    assert_eq!(
        srv.authorize(&alice, &late).json()["reason"],
        "lineage_broken"
    );
}

/// A governed program used to need the caller's own token to nest (and so
/// could always ask without a parent). It now gets a credential of its own
/// run in WRIT_TOKEN: everything it asks is a child of its run, within its
/// scope; it has no administrative power, cannot act on other executions,
/// cannot name another parent; and the credential dies with the run. The
/// caller's token cannot be passed to it at all.
#[test]
fn a_governed_program_holds_a_credential_that_asks_only_for_its_own_children() {
    let srv = Server::start();
    activate_policy(&srv, "all", ALLOW_ALL);
    let agent = add(&srv, "Agent::\"planner\"", false);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().canonicalize().unwrap();
    let ts = t.to_str().unwrap();
    let (bin, bin_dir) = writ_bin_and_dir();
    let w = bin.to_str().unwrap();
    let env = [
        ("WRIT_SERVER", srv.url.as_str()),
        ("WRIT_TOKEN", agent.as_str()),
    ];

    // The caller's token cannot be handed down.
    for name in ["WRIT_TOKEN", "WRIT_SERVER", "WRIT_PARENT"] {
        let out = run_writ(
            &["exec", "--env-allow", name, "--", "/usr/bin/true"],
            &env,
            Some(&t),
        );
        out.expect_code(2, "--env-allow of a runner variable");
        assert!(
            out.stderr.contains("set by writ exec itself"),
            "{}",
            out.stderr
        );
    }
    // Another running writ of the same principal: not the program's to use.
    let mut other = exec_req(&["/usr/bin/sleep", "60"], "exec@x");
    other["start"] = json!(true);
    let (_, other_jti, _) = srv.authorize_ok(&agent, &other);

    script(
        &t.join("p.sh"),
        &format!(
            "env > {ts}/env.txt\n\
             echo \"$WRIT_TOKEN\" > {ts}/cred\n\
             echo \"$WRIT_PARENT\" > {ts}/p.writ\n\
             WRIT_PARENT= {w} authorize --resource 'Command::\"/usr/bin/true\"' --request '{{}}' --audience a --json > {ts}/orphan.json\n\
             {w} exec --write / -- /usr/bin/true 2> {ts}/escalation.err\n\
             WRIT_PARENT={other_jti} {w} authorize --parent {other_jti} --resource 'Command::\"/usr/bin/true\"' --request '{{}}' --audience a 2> {ts}/adopt.err\n\
             {w} principal add 'Agent::\"minted\"' --admin 2> {ts}/admin.err\n\
             {w} execution finish \"$(cat {ts}/p.jti)\" --exit-status 0 2> {ts}/finish.err\n\
             {w} exec -- /usr/bin/true && echo nested-ok > {ts}/nested\n"
        ),
    );
    // The run's jti, for the script: the writ is obtained first.
    let auth = run_writ(
        &[
            "exec",
            "--authorize-only",
            "--net",
            "--read",
            ts,
            "--read",
            &bin_dir,
            "--write",
            ts,
            "--",
            &format!("{ts}/p.sh"),
        ],
        &env,
        Some(&t),
    );
    auth.expect_code(0, "writ exec --authorize-only");
    let writ = auth.stdout.trim().to_owned();
    let jti = claims_of(&writ)["jti"].as_str().unwrap().to_owned();
    std::fs::write(t.join("p.jti"), &jti).unwrap();
    std::fs::write(t.join("w.jws"), &writ).unwrap();
    let out = run_writ(
        &[
            "exec",
            "--writ",
            &format!("{ts}/w.jws"),
            "--net",
            "--read",
            ts,
            "--read",
            &bin_dir,
            "--write",
            ts,
            "--",
            &format!("{ts}/p.sh"),
        ],
        &env,
        Some(&t),
    );
    out.expect_code(0, "the governed script");
    let read = |f: &str| std::fs::read_to_string(t.join(f)).unwrap_or_default();

    // It held a credential of its own run, never the caller's token.
    let cred = read("cred").trim().to_owned();
    assert!(cred.starts_with(&format!("writx_{jti}_")), "{cred}");
    let env_text = read("env.txt");
    assert!(
        !env_text.contains(&agent),
        "the agent's token reached the program"
    );
    assert!(
        env_text.contains(&format!("WRIT_SERVER={}", srv.url)),
        "{env_text}"
    );
    // Asking without a parent still made a child of the run.
    let orphan: Value = serde_json::from_str(&read("orphan.json")).unwrap();
    let oc = claims_of(orphan["writ"].as_str().unwrap());
    assert_eq!(oc["writ"]["lineage"]["parent"], jti, "{oc}");
    assert_eq!(oc["sub"], "Agent::\"planner\"");
    assert!(
        read("escalation.err").starts_with("denied: scope_escalation"),
        "{}",
        read("escalation.err")
    );
    let adopt = read("adopt.err");
    assert!(
        adopt.starts_with("denied: lineage_broken") && adopt.contains("must be its child"),
        "{adopt}"
    );
    assert!(
        read("admin.err").contains("holds no such role"),
        "{}",
        read("admin.err")
    );
    assert!(
        read("finish.err").contains("acts only on the children it asked for"),
        "{}",
        read("finish.err")
    );
    assert_eq!(read("nested").trim(), "nested-ok");
    // The credential died with the run.
    let r = srv.get("/v1/revocations", Some(&cred));
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("has finished"), "{}", r.text());
    // An administrator cannot take a credential for another principal's
    // run (it would then ask as that principal).
    let (_, unstarted, _) = srv.authorize_ok(&agent, &exec_req(&["/usr/bin/true"], "exec@x"));
    let r = srv.post(
        &format!("/v1/executions/{unstarted}/start"),
        Some(&srv.admin_token),
        &json!({"credential": true}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    // A made-up credential for a real execution is refused too.
    let forged = format!("writx_{jti}_{}", "A".repeat(43));
    assert_eq!(srv.get("/v1/revocations", Some(&forged)).status, 401);
}
