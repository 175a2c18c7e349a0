//! What the public log tells: a decision's leaf carries a salted commitment
//! to its request, not the request; an auditor reads the request beside the
//! log and replays it; an administrator erases it, and every proof stays
//! valid (docs/log-formats.md, "Sealed decisions").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

const SECRET: &str = "sk_live_51HxQ9pLOGPRIVACYx";
const PROJECT: &str = "/srv/acquisition-of-initech";

const POLICY: &str = "@id(\"exec\")\npermit (principal, action == Action::\"exec\", resource);\n\
@id(\"no-rm\")\nforbid (principal, action, resource == Command::\"/usr/bin/rm\");\n";

fn auditor(srv: &Server) -> String {
    let r = srv.post(
        "/v1/principals",
        Some(&srv.admin_token),
        &json!({"uid": "User::\"auditor\"", "auditor": true}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_owned()
}

/// An allowed and a denied request, each carrying the secret in its argv
/// and the project in its environment; the allowed writ's jti and index.
fn secret_requests(srv: &Server, agent: &str) -> (String, u64, u64) {
    let mut req = exec_req(&["/usr/bin/true", &format!("--api-key={SECRET}")], AUD);
    req["environment"] = json!({"cwd": PROJECT});
    req["lifetime_secs"] = json!(600);
    let (_, jti, v) = srv.authorize_ok(agent, &req);
    let mut denied = exec_req(&["/usr/bin/rm", "-rf", &format!("{PROJECT}/{SECRET}")], AUD);
    denied["environment"] = json!({"cwd": PROJECT});
    let d = srv.authorize(agent, &denied).json();
    assert_eq!(d["reason"], "policy_denied", "{d}");
    // Cedar's errors quote the values they could not use: the message is
    // sealed too.
    let mut quoted = exec_req(&["/usr/bin/true"], AUD);
    quoted["context"] = json!({"x": {"__entity": {"type": "Bad Type", "id": SECRET}}});
    let q = srv.authorize(agent, &quoted);
    assert!(
        q.text().contains(SECRET),
        "the caller is told: {}",
        q.text()
    );
    assert!(q.json()["log_index"].is_u64(), "logged: {}", q.text());
    (
        jti,
        v["log_index"].as_u64().unwrap(),
        d["log_index"].as_u64().unwrap(),
    )
}

fn contents(srv: &Server, token: Option<&str>, start: u64, end: u64) -> (u16, Value) {
    let r = srv.get(&format!("/v1/log/contents?start={start}&end={end}"), token);
    let status = r.status;
    (status, if status == 200 { r.json() } else { Value::Null })
}

#[test]
fn the_public_log_commits_to_requests_and_an_auditor_replays_them() {
    let srv = Server::start();
    activate_policy(&srv, "p", POLICY);
    let agent = srv.add_principal("Agent::\"planner\"");
    let auditor = auditor(&srv);
    let (_, allowed, denied) = secret_requests(&srv, &agent);

    // Anonymous: every page, every proof and checkpoint, and no trace of
    // the request.
    let size = srv.public_log_entries().len() as u64;
    let page = srv.get(&format!("/v1/log/entries?start=0&end={size}"), None);
    assert_eq!(page.status, 200);
    let text = page.text();
    let decoded: String = page
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["leaf"].as_str())
        .map(|l| String::from_utf8(STANDARD.decode(l).unwrap()).unwrap())
        .collect();
    for secret in [SECRET, PROJECT, "--api-key", "acquisition"] {
        assert!(!text.contains(secret), "{secret} in the public page");
        assert!(!decoded.contains(secret), "{secret} in a public leaf");
    }
    for i in [allowed, denied] {
        let e = &page.json()[i as usize]["entry"];
        assert!(e["content"].as_str().unwrap().starts_with("sha256:"), "{e}");
        assert!(
            e.get("context").is_none() && e.get("request").is_none(),
            "{e}"
        );
        // The writ's owner and what it may do stay public.
        assert_eq!(e["principal"], "Agent::\"planner\"");
    }

    // A principal may not read contents; an auditor may, and finds the
    // request there.
    assert_eq!(contents(&srv, None, 0, size).0, 401);
    assert_eq!(contents(&srv, Some(&agent), 0, size).0, 403);
    let (status, c) = contents(&srv, Some(&auditor), 0, size);
    assert_eq!(status, 200);
    let opened: Vec<u64> = c["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert!(opened.contains(&allowed) && opened.contains(&denied), "{c}");
    let allowed_content = c["contents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["index"] == allowed)
        .unwrap()["content"]
        .as_str()
        .map(|s| String::from_utf8(STANDARD.decode(s).unwrap()).unwrap())
        .unwrap();
    assert!(allowed_content.contains(SECRET) && allowed_content.contains(PROJECT));

    // Replay: an auditor's token opens every sealed decision.
    let out = srv.cli(
        Some(&auditor),
        &["--json", "log", "verify", "--remote", "--replay"],
    );
    out.expect_code(0, "writ log verify --remote --replay (auditor)");
    let r = &out.json()["report"];
    assert!(r["decisions_replayed"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(r["decisions_content_unavailable"], 0, "{r}");
    // Anonymous: the tree verifies; the decisions are reported as not
    // replayed, by index.
    let out = srv.cli(None, &["--json", "log", "verify", "--remote", "--replay"]);
    out.expect_code(0, "writ log verify --remote --replay (anonymous)");
    let r = &out.json()["report"];
    let unavailable: Vec<u64> = serde_json::from_value(r["content_unavailable"].clone()).unwrap();
    assert!(unavailable.contains(&allowed), "{r}");
    // A principal's token is refused clearly, not silently degraded.
    let out = srv.cli(Some(&agent), &["log", "verify", "--remote", "--replay"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("auditor"), "{out:#?}");
}

#[test]
fn erasing_a_request_keeps_every_proof_and_ends_its_replay_and_renewal() {
    let srv = Server::start();
    activate_policy(&srv, "p", POLICY);
    let agent = srv.add_principal("Agent::\"planner\"");
    let (jti, allowed, denied) = secret_requests(&srv, &agent);
    assert_eq!(srv.start_execution(&agent, &jti).status, 200);
    let before = srv.public_log_entries();
    let renew = |srv: &Server| {
        srv.post(
            &format!("/v1/executions/{jti}/renew"),
            Some(&agent),
            &json!({}),
        )
    };
    let r = renew(&srv);
    assert_eq!(r.status, 200, "{}", r.text());

    // A principal may not erase; the administrator erases with a reason.
    let r = srv.post(
        "/v1/log/erase",
        Some(&agent),
        &json!({"index": allowed, "reason": "x"}),
    );
    assert_eq!(r.status, 403);
    for (body, status) in [
        (json!({"index": allowed, "reason": " "}), 400),
        (json!({"index": 0, "reason": "not a decision"}), 400),
        (json!({"index": 1_000_000, "reason": "past the end"}), 404),
        (
            json!({"index": allowed, "reason": "x", "leaf_too": true}),
            400,
        ),
    ] {
        let r = srv.post("/v1/log/erase", Some(&srv.admin_token), &body);
        assert_eq!(r.status, status, "{body}: {}", r.text());
    }
    let out = srv.cli(
        Some(&srv.admin_token),
        &[
            "log",
            "erase",
            "--entry",
            &allowed.to_string(),
            "--reason",
            "data subject request 42",
        ],
    );
    out.expect_code(0, "writ log erase");
    // Twice is a conflict.
    let r = srv.post(
        "/v1/log/erase",
        Some(&srv.admin_token),
        &json!({"index": allowed, "reason": "again"}),
    );
    assert_eq!(r.status, 409, "{}", r.text());

    // The leaf and its hash are as they were; the erasure is itself logged.
    let after = srv.public_log_entries();
    assert_eq!(after[allowed as usize], before[allowed as usize]);
    let note = after
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["type"] == "content_erased")
        .unwrap();
    assert_eq!(
        (note["index"].as_u64(), note["reason"].as_str()),
        (Some(allowed), Some("data subject request 42"))
    );
    let (_, c) = contents(&srv, Some(&srv.admin_token), 0, after.len() as u64);
    let left: Vec<u64> = c["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert!(!left.contains(&allowed) && left.contains(&denied), "{c}");

    // Every check of the tree passes, locally and remotely; the replay
    // names the entry it could not replay.
    srv.cli(None, &["log", "verify", "--remote"])
        .expect_code(0, "verify --remote");
    let out = srv.cli(None, &["log", "verify", "--replay"]);
    out.expect_code(0, "verify --replay (data dir)");
    assert!(
        out.stdout
            .contains(&format!("entry {allowed}: content not available")),
        "{out:#?}"
    );
    // Renewal needs the question again: it is gone, so the run is denied.
    let r = renew(&srv);
    assert_ne!(r.status, 200);
    assert_eq!(r.json()["reason"], "integrity_failure", "{}", r.text());

    // Evidence with content: the erased entry travels as its leaf; the
    // other one opens, and altering its content is caught.
    let file = srv.tmp.path().join("ev.json");
    srv.cli(Some(&srv.admin_token), &["log", "checkpoint"])
        .expect_code(0, "checkpoint");
    srv.cli(
        None,
        &[
            "log",
            "export",
            "--from",
            &allowed.to_string(),
            "--to",
            &(denied + 1).to_string(),
            "--with-content",
            "--out",
            file.to_str().unwrap(),
        ],
    )
    .expect_code(0, "export --with-content");
    let out = srv.cli(
        None,
        &[
            "--json",
            "log",
            "verify",
            "--bundle",
            file.to_str().unwrap(),
            "--replay",
        ],
    );
    out.expect_code(0, "verify --bundle --replay");
    let r = &out.json()["report"];
    assert_eq!(r["content_unavailable"], json!([allowed]), "{r}");
    assert!(r["decisions_replayed"].as_u64().unwrap() >= 1, "{r}");
    let mut ev: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let k = (denied - allowed) as usize;
    let content = STANDARD
        .decode(ev["entries"][k]["content"].as_str().unwrap())
        .unwrap();
    let altered = String::from_utf8(content).unwrap().replace("-rf", "-ri");
    ev["entries"][k]["content"] = json!(STANDARD.encode(altered));
    std::fs::write(&file, serde_json::to_vec(&ev).unwrap()).unwrap();
    let out = srv.cli(None, &["log", "verify", "--bundle", file.to_str().unwrap()]);
    assert_eq!(out.code, 26, "{out:#?}");
    assert!(
        out.stderr.contains("denied: integrity_failure")
            && out
                .stderr
                .contains("does not match the decision's commitment"),
        "{out:#?}"
    );
}

/// A decision logged before sealing holds its request in the leaf: the
/// public gets its hash only, an auditor the leaf; erasing it blanks the
/// leaf's bytes, and the tree still verifies.
#[test]
fn an_older_decision_leaf_is_withheld_and_erased_by_its_bytes() {
    let mut srv = Server::start();
    srv.kill_hard();
    let legacy = writ_log::Entry::Decision(Box::new(writ_log::DecisionEntry {
        time_ms: 1,
        principal: "Agent::\"old\"".into(),
        action: "Action::\"exec\"".into(),
        resource: "Command::\"/usr/bin/true\"".into(),
        context: json!({"request": {"argv": ["/usr/bin/true", format!("--api-key={SECRET}")]}}),
        request: format!("sha256:{}", "a".repeat(64)),
        environment: format!("sha256:{}", "b".repeat(64)),
        content: None,
        audience: AUD.into(),
        scope: Default::default(),
        policy: String::new(),
        decision: writ_log::Outcome::Deny,
        delegates: vec![],
        reason: Some(writ_artifact::ReasonCode::AuthorityUnavailable),
        message: "logged by an older writ".into(),
        jti: None,
        parent: None,
        exp: None,
        probe: false,
    }))
    .to_leaf()
    .unwrap();
    assert!(String::from_utf8_lossy(&legacy).contains("\"v\":1"));
    let store = writ_store::SqliteStore::open(&srv.dir.join("writ.db")).unwrap();
    let index = writ_store::Submit::submit(
        &store,
        writ_store::Tx::new(vec![writ_store::Op::Append {
            leaf: legacy.clone(),
        }]),
    )
    .wait()
    .unwrap()[0];
    drop(store);
    srv.restart();

    let public = srv.public_log_entries();
    let e = &public[index as usize];
    assert_eq!(e["withheld"], "content", "{e}");
    assert!(
        e.get("leaf").is_none() && !e.to_string().contains(SECRET),
        "{e}"
    );
    let (_, c) = contents(&srv, Some(&srv.admin_token), index, index + 1);
    assert_eq!(
        c["contents"][0]["leaf"]
            .as_str()
            .map(|l| STANDARD.decode(l).unwrap()),
        Some(legacy),
        "{c}"
    );
    // A withheld leaf is a finding for the public (a server could withhold
    // any entry), unless accepted by its hash; an auditor reads its bytes.
    let out = srv.cli(None, &["log", "verify", "--remote"]);
    assert_eq!(out.code, 26, "{out:#?}");
    assert!(out.stderr.contains("withheld"), "{out:#?}");
    srv.cli(None, &["log", "verify", "--remote", "--accept-withheld"])
        .expect_code(0, "verify --remote --accept-withheld");
    srv.cli(Some(&srv.admin_token), &["log", "verify", "--remote"])
        .expect_code(0, "verify --remote as an auditor");
    // The console's proof page is public too: it shows no values of it.
    let proof = srv.get(&format!("/console/api/proof?index={index}"), None);
    assert_eq!(proof.status, 200);
    assert!(!proof.text().contains(SECRET), "{}", proof.text());
    assert!(proof.json()["log"]["raw"].is_null());
    let r = srv.post(
        "/v1/log/erase",
        Some(&srv.admin_token),
        &json!({"index": index, "reason": "old request"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let e = &srv.public_log_entries()[index as usize];
    assert_eq!(e["erased"], true, "{e}");
    let (_, c) = contents(&srv, Some(&srv.admin_token), index, index + 1);
    assert_eq!(c["contents"], json!([]), "{c}");
    let proof = srv
        .get(&format!("/console/api/proof?index={index}"), None)
        .json();
    assert!(
        proof["log"]["checks"].to_string().contains("was erased"),
        "{proof}"
    );
    let out = srv.cli(None, &["--json", "log", "verify"]);
    out.expect_code(0, "verify (data dir) with an erased leaf");
    assert_eq!(out.json()["report"]["leaves_without_bytes"], 1);
    srv.cli(None, &["log", "verify", "--remote"])
        .expect_code(0, "verify --remote with an erased leaf");

    // A leaf blanked in the store with no erasure naming it (someone with
    // the database hiding a policy activation) is a finding, by index.
    let activation = srv
        .public_log_entries()
        .iter()
        .find(|e| e["entry"]["type"] == "policy_activation")
        .map(|e| e["index"].as_u64().unwrap())
        .unwrap();
    srv.kill_hard();
    rusqlite::Connection::open(srv.dir.join("writ.db"))
        .unwrap()
        .execute(
            "UPDATE entries SET leaf = x'' WHERE idx = ?1",
            [activation as i64],
        )
        .unwrap();
    srv.restart();
    for args in [&["log", "verify"][..], &["log", "verify", "--remote"]] {
        let out = srv.cli(Some(&srv.admin_token), args);
        assert_eq!(out.code, 26, "{args:?}: {out:#?}");
        assert!(
            out.stderr.contains(&format!(
                "entry {activation} has no bytes, and no content_erased"
            )),
            "{out:#?}"
        );
    }
}
