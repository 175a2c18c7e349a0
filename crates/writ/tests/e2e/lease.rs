//! Continuous governance with real processes: a running program's writ is a
//! lease that `writ exec` renews (each renewal a logged, fresh decision); a
//! revocation, a denied renewal or an unreachable authority ends the
//! program's process group; nested `writ exec` runs are children in the
//! lineage, checked by the authority, and die with their ancestors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};
use writ_artifact::ReasonCode;

const ALLOW_ALL: &str =
    "@id(\"exec-anything\")\npermit (principal, action == Action::\"exec\", resource);\n";

fn exec_env(srv: &Server) -> Vec<(&str, &str)> {
    vec![
        ("WRIT_SERVER", srv.url.as_str()),
        ("WRIT_TOKEN", srv.admin_token.as_str()),
    ]
}

fn entries_of(srv: &Server, kind: &str, jti: &str) -> Vec<Value> {
    srv.log_entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["type"] == kind && e["jti"] == jti)
        .collect()
}

/// The jti of the one execution started so far.
fn started_jti(srv: &Server) -> Option<String> {
    srv.log_entries()
        .iter()
        .find(|e| e["entry"]["type"] == "execution_start")
        .map(|e| e["entry"]["jti"].as_str().unwrap().to_owned())
}

fn alive(pid: u32) -> bool {
    // A zombie has no /proc/PID/exe target; count only running processes.
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

#[test]
fn renewal_is_a_new_decision_and_is_logged() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let mut req = exec_req(&["/usr/bin/sleep", "1000"], "exec@test");
    req["lifetime_secs"] = json!(30);
    let (_, jti, body) = srv.authorize_ok(&agent, &req);
    let renew = |token: &str, body: Value| {
        srv.post(&format!("/v1/executions/{jti}/renew"), Some(token), &body)
    };

    let r = renew(&agent, json!({}));
    assert_eq!(r.status, 409, "not started yet: {}", r.text());
    assert_eq!(srv.start_execution(&agent, &jti).status, 200);
    let other = srv.add_principal("Agent::\"other\"");
    assert_eq!(
        renew(&other, json!({})).status,
        403,
        "another principal's lease"
    );
    assert_eq!(renew(&agent, json!({"lifetime_secs": 0})).status, 400);
    assert_eq!(renew(&agent, json!({"lifetime_secs": 3601})).status, 400);

    // Granted: a longer lease, logged with the bundle that decided.
    let r = renew(&agent, json!({"lifetime_secs": 120}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let lease = v["lease_exp"].as_u64().unwrap();
    assert!(lease > body["exp"].as_u64().unwrap(), "{v}");
    assert_eq!(v["policy"], srv.active_policy().as_str());
    let logged = entries_of(&srv, "execution_renew", &jti);
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["decision"], "allow");
    assert_eq!(logged[0]["lease_exp"], lease);

    // A child may now live as long as the renewed lease (beyond the writ's exp).
    let mut child = exec_req(&["/usr/bin/true"], "exec@test");
    child["parent"] = json!(jti);
    child["lifetime_secs"] = json!(90);
    srv.authorize_ok(&agent, &child);

    // The policy changes: the same request is no longer permitted.
    activate_policy(
        &srv,
        "no-sleep",
        "@id(\"only-true\")\npermit (principal, action == Action::\"exec\", resource == Command::\"/usr/bin/true\");\n",
    );
    let r = renew(&agent, json!({}));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["reason"], "policy_denied", "{}", r.text());
    let logged = entries_of(&srv, "execution_renew", &jti);
    assert_eq!(logged.len(), 2);
    assert_eq!(
        (logged[1]["decision"].as_str(), logged[1]["reason"].as_str()),
        (Some("deny"), Some("policy_denied"))
    );
    assert!(logged[1]["lease_exp"].is_null());

    // Revoked: renewal says so. Finished: nothing to renew.
    srv.cli(Some(&srv.admin_token), &["revoke", "--jti", &jti])
        .expect_code(0, "writ revoke");
    let r = renew(&agent, json!({}));
    assert_eq!(r.json()["reason"], "revoked", "{}", r.text());
    let out = srv.cli(Some(&agent), &["execution", "renew", &jti]);
    out.expect_denied("revoked", "writ execution renew of a revoked writ");
    let r = srv.post(
        &format!("/v1/executions/{jti}/finish"),
        Some(&agent),
        &json!({"exit_status": 0, "enforcement": "full"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(renew(&agent, json!({})).status, 409);
    let r = srv.post(
        &format!("/v1/executions/{jti}/finish"),
        Some(&agent),
        &json!({"enforcement": "most"}),
    );
    assert_eq!(r.status, 400, "an unknown enforcement level: {}", r.text());
}

#[test]
fn a_running_program_keeps_its_lease_and_the_finish_records_enforcement() {
    let srv = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    // A 2-second writ for a 4.5-second program: it needs renewals.
    let out = run_writ(
        &["exec", "--lifetime", "2", "--", "/usr/bin/sleep", "4.5"],
        &exec_env(&srv),
        Some(tmp.path()),
    );
    out.expect_code(0, "sleep 4.5 under a 2 s lease");
    let jti = started_jti(&srv).unwrap();
    let renewals = entries_of(&srv, "execution_renew", &jti);
    // About every second (half the lease): 3 or 4 in 4.5 s, at least 2
    // on a loaded machine whose renewals take long.
    assert!(
        renewals.len() >= 2,
        "renewed about every second: {renewals:#?}"
    );
    assert!(
        renewals.iter().all(|r| r["decision"] == "allow"),
        "{renewals:#?}"
    );
    let finish = &entries_of(&srv, "execution_finish", &jti)[0];
    assert_eq!(finish["exit_status"], 0);
    assert!(finish["terminated"].is_null(), "{finish}");
    // Landlock ABI >= 4 here: filesystem and TCP rules are both enforced.
    assert_eq!(finish["enforcement"], "full", "{finish}");
}

#[test]
fn a_denied_renewal_ends_the_run() {
    let srv = Server::start();
    activate_policy(&srv, "all", ALLOW_ALL);
    let tmp = tempfile::tempdir().unwrap();
    let child = spawn_writ(
        &[
            "exec",
            "--lifetime",
            "2",
            "--kill-grace",
            "1",
            "--",
            "/usr/bin/sleep",
            "60",
        ],
        &exec_env(&srv),
        Some(tmp.path()),
    );
    wait_for("the run to start", Duration::from_secs(20), || {
        started_jti(&srv).is_some()
    });
    let jti = started_jti(&srv).unwrap();
    activate_policy(
        &srv,
        "only-true",
        "@id(\"only-true\")\npermit (principal, action == Action::\"exec\", resource == Command::\"/usr/bin/true\");\n",
    );
    let t0 = Instant::now();
    let out = wait_writ(child, Duration::from_secs(20));
    out.expect_denied("policy_denied", "the renewal after the policy changed");
    assert!(out.stderr.contains("renewal denied"), "{out:#?}");
    // The next renewal comes within a second; the rest is a round trip,
    // the kill grace and the finish, with room for a slow machine.
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "ended within a few seconds: {:?}",
        t0.elapsed()
    );
    let finish = &entries_of(&srv, "execution_finish", &jti)[0];
    assert!(
        finish["terminated"]
            .as_str()
            .unwrap()
            .starts_with("renewal denied: policy_denied"),
        "{finish}"
    );
    assert_eq!(
        finish["exit_status"],
        128 + 15,
        "ended by SIGTERM: {finish}"
    );
}

/// The pid a governed script wrote to `file`, once it has.
fn pid_in(file: &Path) -> u32 {
    let mut pid = 0;
    wait_for("a pid in its file", Duration::from_secs(20), || {
        pid = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        pid != 0
    });
    pid
}

/// A process the program detaches (a session of its own, so not in the
/// process group the runner signals) still dies with a revocation.
#[test]
fn a_revocation_ends_what_the_program_detached() {
    let srv = Server::start();
    activate_policy(&srv, "all", ALLOW_ALL);
    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("pid");
    let child = spawn_writ(
        &[
            "exec",
            "--kill-grace",
            "1",
            "--write",
            tmp.path().to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            &format!(
                "setsid sleep 301 >/dev/null 2>&1 & echo $! > {}; exec sleep 100",
                pid_file.display()
            ),
        ],
        &exec_env(&srv),
        Some(tmp.path()),
    );
    let detached = pid_in(&pid_file);
    assert!(alive(detached));
    let jti = started_jti(&srv).unwrap();
    srv.cli(Some(&srv.admin_token), &["revoke", "--jti", &jti])
        .expect_code(0, "writ revoke");
    wait_writ(child, Duration::from_secs(30)).expect_denied("revoked", "the revoked run");
    wait_for(
        "the detached process to die",
        Duration::from_secs(5),
        || !alive(detached),
    );
}

/// What the program leaves running when it exits would run on ungoverned:
/// it is ended, and the finish says so.
#[test]
fn what_the_program_leaves_running_is_ended_when_it_exits() {
    let srv = Server::start();
    activate_policy(&srv, "all", ALLOW_ALL);
    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("pid");
    let out = run_writ(
        &[
            "exec",
            "--kill-grace",
            "1",
            "--write",
            tmp.path().to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            &format!(
                "sleep 303 >/dev/null 2>&1 & echo $! > {}; exit 3",
                pid_file.display()
            ),
        ],
        &exec_env(&srv),
        Some(tmp.path()),
    );
    out.expect_code(3, "the program's own status");
    let left = pid_in(&pid_file);
    assert!(!alive(left), "the background sleep outlived the run");
    let jti = started_jti(&srv).unwrap();
    let finish = &entries_of(&srv, "execution_finish", &jti)[0];
    assert_eq!(finish["exit_status"], 3, "{finish}");
    assert!(
        finish["terminated"]
            .as_str()
            .is_some_and(|t| t.contains("1 processes it left running were ended")),
        "{finish}"
    );
}

/// Start a governed `sleep` (lease 2 s, grace 2 s), cut the authority off
/// with `cut`, and check that the run ends with authority_unavailable after
/// the grace, its program dead.
fn an_unreachable_authority_ends_the_run(srv: &mut Server, cut: impl FnOnce(&mut Server)) {
    activate_policy(srv, "all", ALLOW_ALL);
    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("pid");
    let child = spawn_writ(
        &[
            "exec",
            "--lifetime",
            "2",
            "--unreachable-grace",
            "2",
            "--kill-grace",
            "1",
            "--write",
            tmp.path().to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            &format!("echo $$ > {}; exec sleep 60", pid_file.display()),
        ],
        &[
            ("WRIT_SERVER", srv.url.as_str()),
            ("WRIT_TOKEN", srv.admin_token.as_str()),
        ],
        Some(tmp.path()),
    );
    let mut pid = 0;
    wait_for("the program's pid", Duration::from_secs(20), || {
        pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        pid != 0
    });
    assert!(alive(pid));
    // Before the cut: the runner can notice it before this thread reads
    // the clock.
    let t0 = Instant::now();
    cut(srv);
    let out = wait_writ(child, Duration::from_secs(30));
    out.expect_denied(
        "authority_unavailable",
        "the authority gone for longer than the grace",
    );
    let took = t0.elapsed();
    // Lease end (<= 2 s) + grace 2 s + kill grace, and for a hung server
    // up to the answer limit of the finish, with room for a slow machine.
    assert!(
        took >= Duration::from_secs(2),
        "not before the grace: {took:?}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(!alive(pid), "the program outlived its runner");
}

#[test]
fn an_unreachable_authority_ends_the_run_after_the_grace() {
    let mut srv = Server::start();
    an_unreachable_authority_ends_the_run(&mut srv, Server::kill_hard);
}

/// A stopped server still accepts connections (the kernel queues them) and
/// never answers: that is unreachable too, not a reason to wait forever.
#[test]
fn a_hung_authority_ends_the_run_after_the_grace() {
    let mut srv = Server::start();
    an_unreachable_authority_ends_the_run(&mut srv, |s| s.signal("-STOP"));
    srv.signal("-CONT");
}

/// `writ exec` inside a governed program is a child in the lineage: the
/// authority checks it against its parent (lineage_broken, scope_escalation),
/// and revoking the root ends every descendant still running.
#[test]
fn nested_runs_are_children_and_revoking_a_parent_terminates_a_running_grandchild() {
    let srv = Server::start();
    activate_policy(&srv, "all", ALLOW_ALL);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().canonicalize().unwrap();
    let ts = t.to_str().unwrap();
    let (bin, bin_dir) = writ_bin_and_dir();
    let w = bin.to_str().unwrap();
    let env = exec_env(&srv);

    // A parent that was never started cannot have children.
    let unstarted = run_writ(
        &["exec", "--authorize-only", "--", "/usr/bin/true"],
        &env,
        Some(&t),
    );
    unstarted.expect_code(0, "writ exec --authorize-only");
    let mut env_unstarted = env.clone();
    env_unstarted.push(("WRIT_PARENT", unstarted.stdout.trim()));
    run_writ(&["exec", "--", "/usr/bin/true"], &env_unstarted, Some(&t))
        .expect_denied("lineage_broken", "a child of a writ never started");

    script(
        &t.join("p.sh"),
        &format!(
            "echo \"$WRIT_PARENT\" > {ts}/p.writ\n\
             exec {w} exec --net --read {ts} --read {bin_dir} --write {ts} --kill-grace 1 -- {ts}/c.sh"
        ),
    );
    script(
        &t.join("c.sh"),
        &format!(
            "echo \"$WRIT_PARENT\" > {ts}/c.writ\n\
             {w} exec --write / -- /usr/bin/true 2> {ts}/escalation.err\n\
             exec {w} exec --write {ts} --kill-grace 1 -- {ts}/g.sh"
        ),
    );
    script(
        &t.join("g.sh"),
        &format!("echo \"$WRIT_PARENT\" > {ts}/g.writ\necho $$ > {ts}/g.pid\nexec sleep 300"),
    );
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
        Some(&t),
    );
    let gpid_file = t.join("g.pid");
    let mut gpid = 0u32;
    wait_for("the grandchild to run", Duration::from_secs(30), || {
        gpid = std::fs::read_to_string(&gpid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        gpid != 0
    });
    let read = |f: &str| std::fs::read_to_string(t.join(f)).unwrap();
    let (p, c, g) = (read("p.writ"), read("c.writ"), read("g.writ"));
    let (pj, cj, gj) = (jti_of(&p), jti_of(&c), jti_of(&g));
    assert_eq!(
        claims_of(c.trim())["writ"]["lineage"],
        json!({"parent": pj, "root": pj, "depth": 1})
    );
    assert_eq!(
        claims_of(g.trim())["writ"]["lineage"],
        json!({"parent": cj, "root": pj, "depth": 2})
    );
    // The child asked for more than it holds.
    let esc = read("escalation.err");
    assert!(esc.starts_with("denied: scope_escalation: "), "{esc}");
    // The tree as the authority records it.
    let tree = srv.cli(Some(&srv.admin_token), &["lineage", &pj, "--json"]);
    tree.expect_code(0, "writ lineage");
    let text = tree.stdout.clone();
    assert!(text.contains(&cj) && text.contains(&gj), "{text}");

    assert!(alive(gpid));
    srv.cli(Some(&srv.admin_token), &["revoke", "--jti", &pj])
        .expect_code(0, "revoking the root");
    wait_for("the grandchild to die", Duration::from_secs(10), || {
        !alive(gpid)
    });
    let out = wait_writ(top, Duration::from_secs(20));
    out.expect_denied("revoked", "the root runner after its revocation");
    // Each level's runner recorded why it ended.
    wait_for("three finish entries", Duration::from_secs(10), || {
        [&pj, &cj, &gj]
            .iter()
            .all(|j| !entries_of(&srv, "execution_finish", j).is_empty())
    });
    let finishes: Vec<Value> = [&pj, &cj, &gj]
        .iter()
        .map(|j| entries_of(&srv, "execution_finish", j)[0].clone())
        .collect();
    for f in &finishes {
        let why = f["terminated"].as_str().unwrap_or_default();
        assert!(why.starts_with("revoked: "), "{finishes:#?}");
    }
}

/// SIGTERM stops `writ serve` even while an enforcement point listens to its
/// revocation stream: the stream ends (the listener sees the authority go,
/// not keep-alives from a server that no longer decides) and the process
/// exits instead of waiting for the stream's client to give up.
#[test]
fn shutdown_ends_revocation_streams_and_the_server_exits() {
    use std::io::{Read, Write};
    let mut srv = Server::start();
    let mut stream = std::net::TcpStream::connect(&srv.addr).unwrap();
    write!(
        stream,
        "GET /v1/revocations/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        srv.admin_token
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut head = [0u8; 512];
    let n = stream.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_string();
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("text/event-stream"),
        "{head}"
    );
    let t0 = Instant::now();
    let status = srv.terminate(Duration::from_secs(15));
    assert!(
        status.is_some(),
        "writ serve still runs 15 s after SIGTERM with a stream open"
    );
    // The stream was ended by the server (the chunked body's last chunk),
    // not cut by the read timeout, nor by the process exiting once the
    // drain of requests in flight gave up (5 s: SHUTDOWN_DRAIN_MAX).
    let mut rest = Vec::new();
    let end = stream.read_to_end(&mut rest);
    assert!(end.is_ok(), "the stream did not end: {end:?}");
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "the stream was cut, not ended: {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "shutdown took {:?}, as long as the drain's limit",
        t0.elapsed()
    );
}

/// A script that runs a nested `writ exec` and then exits 0 by itself: when
/// the script's writ is revoked, the nested runner may hear it first, end
/// its program, and the script exits cleanly before the outer runner's
/// governor has read the same event. The outer finish must still say the
/// run was revoked (it said `exit_status: 0` about 1 run in 9).
#[test]
fn a_script_that_outlives_its_revoked_child_is_recorded_as_revoked() {
    let srv = Server::start();
    activate_policy(&srv, "all", ALLOW_ALL);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().canonicalize().unwrap();
    let ts = t.to_str().unwrap();
    let (bin, bin_dir) = writ_bin_and_dir();
    let w = bin.to_str().unwrap();
    let env = exec_env(&srv);
    script(
        &t.join("s.sh"),
        &format!("{w} exec --kill-grace 1 -- /usr/bin/sleep 600\necho after-child\nexit 0"),
    );
    for round in 0..3 {
        let before = srv
            .log_entries()
            .iter()
            .filter(|e| e["entry"]["type"] == "execution_start")
            .count();
        let top = spawn_writ(
            &[
                "exec",
                "--net",
                "--read",
                ts,
                "--read",
                &bin_dir,
                "--lifetime",
                "600",
                "--kill-grace",
                "1",
                "--",
                &format!("{ts}/s.sh"),
            ],
            &env,
            Some(&t),
        );
        let mut starts = Vec::new();
        wait_for("the nested run to start", Duration::from_secs(30), || {
            starts = srv
                .log_entries()
                .into_iter()
                .filter(|e| e["entry"]["type"] == "execution_start")
                .skip(before)
                .collect();
            starts.len() == 2
        });
        let outer = starts[0]["entry"]["jti"].as_str().unwrap().to_owned();
        srv.cli(Some(&srv.admin_token), &["revoke", "--jti", &outer])
            .expect_code(0, "revoking the script's writ");
        let out = wait_writ(top, Duration::from_secs(20));
        out.expect_denied("revoked", &format!("round {round}: the outer runner"));
        let finish = &entries_of(&srv, "execution_finish", &outer)[0];
        assert!(
            finish["terminated"]
                .as_str()
                .is_some_and(|t| t.starts_with("revoked")),
            "round {round}: {finish}"
        );
    }
}

/// An MCP session that a governed program opens is a child of the run:
/// revoking the run ends the session, and the session's finish says it was
/// revoked, though the proxy itself saw only the SIGTERM its runner sent to
/// the program's process group.
#[test]
fn an_mcp_session_under_a_revoked_run_is_recorded_as_revoked() {
    let srv = Server::start();
    activate_policy(
        &srv,
        "exec-and-mcp",
        "@id(\"exec-anything\")\npermit (principal, action == Action::\"exec\", resource);\n\
         @id(\"any-session\")\npermit (principal, action == Action::\"mcp_session\", resource);\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().canonicalize().unwrap();
    let (bin, bin_dir) = writ_bin_and_dir();
    // The proxy's client input stays open as long as `sleep` runs; `cat`
    // stands in for the MCP server (no call is made).
    let top = spawn_writ(
        &[
            "exec",
            "--net",
            "--read",
            &bin_dir,
            "--kill-grace",
            "2",
            "--",
            "/bin/sh",
            "-c",
            &format!(
                "/usr/bin/sleep 300 | {} mcp-proxy --name cat -- /bin/cat",
                bin.display()
            ),
        ],
        &exec_env(&srv),
        Some(&t),
    );
    let session_start = || {
        let entries = srv.log_entries();
        entries
            .iter()
            .find(|e| {
                e["entry"]["type"] == "decision"
                    && e["entry"]["action"] == "Action::\"mcp_session\""
                    && e["entry"]["decision"] == "allow"
            })
            .map(|e| e["entry"]["jti"].as_str().unwrap().to_owned())
            .filter(|j| !entries_of(&srv, "execution_start", j).is_empty())
    };
    let mut session = None;
    wait_for("the MCP session to start", Duration::from_secs(30), || {
        session = session_start();
        session.is_some()
    });
    let session = session.unwrap();
    let run = started_jti(&srv).unwrap();
    assert_ne!(run, session);
    srv.cli(Some(&srv.admin_token), &["revoke", "--jti", &run])
        .expect_code(0, "revoking the run");
    let out = wait_writ(top, Duration::from_secs(30));
    // The runner's denial line follows what the proxy wrote on the same
    // standard error.
    out.expect_code(
        ReasonCode::Revoked.exit_status().into(),
        "the run after its revocation",
    );
    assert!(
        out.stderr
            .contains(&format!("\ndenied: revoked: writ {run}: ")),
        "{out:#?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while entries_of(&srv, "execution_finish", &session).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no finish of the session {session}: {out:#?}\n{:#?}",
            srv.log_entries()
                .iter()
                .map(|e| e["entry"].clone())
                .filter(|e| e["type"] != "decision")
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let finish = &entries_of(&srv, "execution_finish", &session)[0];
    let why = finish["terminated"].as_str().unwrap_or_default();
    // Typically `revoked: writ SESSION is revoked (the run ended: writ
    // mcp-proxy received SIGTERM)` (the run's revocation names its whole
    // subtree); the proxy's own lease watch may also have heard it first.
    assert!(why.starts_with("revoked: "), "{finish}\n{out:#?}");
}

/// A `writ exec` inside a run that was not given `--net` cannot reach the
/// authority (Landlock refuses TCP): it denies with authority_unavailable
/// and says that the run needs `--net`, and why the connection failed.
#[test]
fn a_nested_run_without_net_says_it_needs_net() {
    let srv = Server::start();
    activate_policy(&srv, "all", ALLOW_ALL);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().canonicalize().unwrap();
    let (bin, bin_dir) = writ_bin_and_dir();
    let out = run_writ(
        &[
            "exec",
            "--read",
            &bin_dir,
            "--",
            bin.to_str().unwrap(),
            "exec",
            "--",
            "/usr/bin/true",
        ],
        &exec_env(&srv),
        Some(&t),
    );
    // The outer run passes the inner one's status through.
    out.expect_code(
        ReasonCode::AuthorityUnavailable.exit_status().into(),
        "the nested run without --net",
    );
    assert!(
        out.stderr
            .contains("denied: authority_unavailable: cannot reach the writ server")
            && out.stderr.contains("its run needs `--net`")
            && out.stderr.contains("Permission denied"),
        "{out:#?}"
    );
}
