//! The audit log end to end, against a real `writ serve`: signed checkpoints,
//! proofs, `writ verify --proof`, `writ log verify` (offline, remote, replay)
//! catching tampered bytes with their entry index, refusal to sign an
//! inconsistent checkpoint, evidence bundles, and a witness.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

/// A server with a few allowed and denied decisions and a checkpoint over them.
fn busy_server(extra: &[&str]) -> Server {
    let s = Server::start_with(extra);
    for i in 0..6 {
        let argv: &[&str] = if i % 3 == 2 {
            &["/usr/bin/rm", "-rf", "/"]
        } else {
            &["/usr/bin/true"]
        };
        s.authorize(&s.admin_token, &exec_req(argv, "exec@host-a"));
    }
    checkpoint(&s);
    s
}

/// `POST /v1/log/checkpoint`; the note.
fn checkpoint(s: &Server) -> String {
    let r = s.post("/v1/log/checkpoint", Some(&s.admin_token), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

fn db(s: &Server) -> rusqlite::Connection {
    rusqlite::Connection::open(s.db_path()).unwrap()
}

#[test]
fn checkpoints_and_proofs_are_served_and_a_writ_proves_its_decision_is_logged() {
    // No periodic checkpoint: one could cover the entry below before the
    // check that none does yet.
    let s = busy_server(&["--checkpoint-interval-ms", "3600000"]);
    // Needs no token; is a C2SP signed note whose origin is the writ's log origin.
    let r = s.get("/v1/log/checkpoint", None);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let note = r.text();
    let origin = s.init["origin"].as_str().unwrap();
    assert!(note.starts_with(&format!("{origin}\n")), "{note}");
    assert!(note.contains("\n\n\u{2014} "), "{note}");
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    assert!(size >= 11, "init entries plus six decisions: {size}");

    // Publishing needs a token.
    assert_eq!(s.post("/v1/log/checkpoint", None, &json!({})).status, 401);

    let (writ, _jti, body) =
        s.authorize_ok(&s.admin_token, &exec_req(&["/usr/bin/true"], "exec@host-a"));
    let index = body["log_index"].as_u64().unwrap();
    // Before a checkpoint covers it, --proof says so and fails closed.
    let early = s.cli(None, &["verify", "--proof", &writ]);
    early.expect_denied("integrity_failure", "no checkpoint covers the entry yet");
    assert!(
        early.stderr.contains("not under the latest checkpoint"),
        "{early:?}"
    );
    checkpoint(&s);
    let out = s.cli(None, &["verify", "--proof", &writ]);
    out.expect_code(0, "verify --proof (data dir)");
    assert!(
        out.stdout
            .contains(&format!("logged: entry {index} (allow")),
        "{out:?}"
    );
    let vkey = s.get("/v1/log/key", None).json()["vkey"]
        .as_str()
        .unwrap()
        .to_owned();
    s.cli(
        None,
        &["verify", "--online", "--proof", "--log-key", &vkey, &writ],
    )
    .expect_code(0, "verify --online --proof with a pinned key");
    // A log key that is not this log's: the checkpoint does not verify.
    let other = run_writ(
        &[
            "witness",
            "--witness-dir",
            s.tmp.path().join("w").to_str().unwrap(),
            "--print-key",
            "--name",
            origin,
        ],
        &[],
        None,
    );
    let foreign = other.stdout.trim().to_owned();
    let bad = s.cli(None, &["verify", "--proof", "--log-key", &foreign, &writ]);
    assert_ne!(bad.code, 0, "a cosigner key is not a log key: {bad:?}");

    // Inclusion and consistency proofs from the routes and the CLI agree.
    let inc = s
        .get(&format!("/v1/log/proof/inclusion?index={index}"), None)
        .json();
    assert_eq!(inc["index"], index);
    let cli = s
        .cli(
            None,
            &["--json", "log", "proof", "--index", &index.to_string()],
        )
        .json();
    assert_eq!(cli, inc);
    let cons = s.get("/v1/log/proof/consistency?first=3", None).json();
    let cli = s
        .cli(
            None,
            &["--json", "log", "proof", "--remote", "--first", "3"],
        )
        .json();
    assert_eq!(cli, cons);
    assert!(!cons["hashes"].as_array().unwrap().is_empty());
    // Out of range is a 400 naming the sizes.
    let r = s.get("/v1/log/proof/inclusion?index=0&size=100000", None);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("beyond the log"), "{}", r.text());
}

#[test]
fn log_verify_replays_every_decision_offline_and_remotely() {
    let s = busy_server(&[]);
    for args in [
        &["log", "verify", "--replay"][..],
        &["log", "verify", "--replay", "--remote"],
    ] {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        // Replay needs the bundles, an auditor's to read.
        let out = s.cli(Some(&s.admin_token), &a);
        out.expect_code(0, "log verify");
        let r = &out.json()["report"];
        assert_eq!(r["problems"], json!([]));
        assert_eq!(r["decisions_replayed"], 6, "{r}");
        assert!(r["checkpoints"].as_u64().unwrap() >= 1, "{r}");
    }
}

#[test]
fn a_changed_byte_is_found_with_its_entry_index() {
    let s = busy_server(&[]);
    let c = db(&s);
    // Change one byte of entry 7's leaf, leaving its stored hash.
    let leaf: Vec<u8> = c
        .query_row("SELECT leaf FROM entries WHERE idx = 7", [], |r| r.get(0))
        .unwrap();
    let text = String::from_utf8(leaf)
        .unwrap()
        .replacen("/usr/bin/", "/usr/bin!", 1);
    c.execute(
        "UPDATE entries SET leaf = ?1 WHERE idx = 7",
        [text.as_bytes()],
    )
    .unwrap();
    let out = s.cli(None, &["log", "verify"]);
    out.expect_denied("integrity_failure", "tampered leaf");
    assert!(out.stderr.contains("problem at entry 7:"), "{out:?}");
}

/// Rewrite entry `idx` with new bytes and make every stored hash agree
/// (leaf hash and all subtree hashes), as a careful attacker would.
fn rewrite_consistently(c: &rusqlite::Connection, idx: u64, new_leaf: &[u8]) {
    c.execute(
        "UPDATE entries SET leaf = ?1, leaf_hash = ?2 WHERE idx = ?3",
        rusqlite::params![new_leaf, &writ_log::leaf_hash(new_leaf)[..], idx],
    )
    .unwrap();
    c.execute("DELETE FROM nodes", []).unwrap();
    let hashes: Vec<Vec<u8>> = c
        .prepare("SELECT leaf_hash FROM entries ORDER BY idx")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut f = writ_log::merkle::Frontier::default();
    for h in hashes {
        let mut nodes = Vec::new();
        f.push(h.try_into().unwrap(), |l, i, h| nodes.push((l, i, *h)));
        for (l, i, h) in nodes {
            let key = ((((i + 1) << l) - 1) as i64) * 64 + i64::from(l);
            c.execute(
                "INSERT INTO nodes (key, hash) VALUES (?1, ?2)",
                rusqlite::params![key, &h[..]],
            )
            .unwrap();
        }
    }
}

#[test]
fn a_consistently_rewritten_log_fails_its_checkpoints_and_the_log_refuses_to_sign() {
    let s = busy_server(&[]);
    let before = s.get("/v1/log/checkpoint", None).text();
    let c = db(&s);
    // Entry 7 is the first denial (rm -rf /); turn it into an allow.
    let leaf: Vec<u8> = c
        .query_row("SELECT leaf FROM entries WHERE idx = 7", [], |r| r.get(0))
        .unwrap();
    let text = String::from_utf8(leaf).unwrap();
    let forged = text.replacen("\"decision\":\"deny\"", "\"decision\":\"allow\"", 1);
    assert_ne!(forged, text, "entry 7 is a denial: {text}");
    rewrite_consistently(&c, 7, forged.as_bytes());
    let out = s.cli(None, &["log", "verify"]);
    out.expect_denied("integrity_failure", "rewritten log");
    assert!(
        out.stderr.contains("does not match the recomputed tree"),
        "{out:?}"
    );
    // The log will not sign a checkpoint that is not consistent with the last.
    s.authorize(&s.admin_token, &exec_req(&["/usr/bin/true"], "exec@host-a"));
    let r = s.post("/v1/log/checkpoint", Some(&s.admin_token), &json!({}));
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["reason"], "integrity_failure");
    assert!(r.text().contains("REFUSING TO SIGN"), "{}", r.text());
    assert_eq!(
        s.get("/v1/log/checkpoint", None).text(),
        before,
        "the last good checkpoint stays"
    );
    assert!(
        s.log().contains("checkpoint refused"),
        "said loudly in the server log"
    );
}

#[test]
fn removed_entries_are_reported() {
    let s = busy_server(&[]);
    let c = db(&s);
    let n: i64 = c
        .query_row("SELECT MAX(idx) FROM entries", [], |r| r.get(0))
        .unwrap();
    c.execute("DELETE FROM entries WHERE idx = ?1", [n])
        .unwrap();
    let out = s.cli(None, &["log", "verify"]);
    out.expect_denied("integrity_failure", "truncated log");
    assert!(
        out.stderr.contains("entries were removed") || out.stderr.contains("beyond the log"),
        "{out:?}"
    );
}

#[test]
fn an_evidence_bundle_verifies_alone_and_any_change_is_caught() {
    let s = busy_server(&[]);
    let file = s.tmp.path().join("evidence.json");
    let f = file.to_str().unwrap();
    s.cli(
        None,
        &["log", "export", "--from", "2", "--with-content", "--out", f],
    )
    .expect_code(0, "export");
    // `--out -` writes the bundle to standard output, not to a file named `-`.
    let to_stdout = s.cli(None, &["log", "export", "--from", "2", "--out", "-"]);
    to_stdout.expect_code(0, "export to stdout");
    let piped: Value = serde_json::from_str(&to_stdout.stdout).unwrap();
    assert_eq!(piped["format"], "writ.evidence.v1");
    assert!(
        !std::path::Path::new("-").exists(),
        "a file named - was written"
    );
    // `| head`: the reader is gone before the process has even started; it
    // ends quietly with 141, as SIGPIPE would (lines printed: cli.rs).
    let mut child = spawn_writ(
        &["log", "export", "--from", "2", "--out", "-"],
        &[("WRIT_DIR", s.dir_str())],
        None,
    );
    drop(child.stdout.take());
    let out = wait_writ(child, std::time::Duration::from_secs(60));
    assert_eq!(out.code, 141, "{out:?}");
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let vkey = s.get("/v1/log/key", None).json()["vkey"]
        .as_str()
        .unwrap()
        .to_owned();
    // No server, no data dir: a clean environment.
    let alone = |extra: &[&str]| {
        let mut a = vec![
            "--dir",
            "/nonexistent",
            "--server",
            "http://127.0.0.1:9",
            "--json",
            "log",
            "verify",
            "--bundle",
            f,
        ];
        a.extend_from_slice(extra);
        run_writ(&a, &[], None)
    };
    let ok = alone(&["--replay", "--log-key", &vkey]);
    ok.expect_code(0, "evidence verifies");
    assert_eq!(ok.json()["report"]["decisions_replayed"], 6);

    let ev: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(ev["format"], "writ.evidence.v1");
    // Change one byte of one entry's leaf: caught, with that entry's index.
    let mut bad = ev.clone();
    use base64::Engine as _;
    let mut leaf = base64::engine::general_purpose::STANDARD
        .decode(bad["entries"][3]["leaf"].as_str().unwrap())
        .unwrap();
    leaf[10] ^= 1;
    bad["entries"][3]["leaf"] = json!(base64::engine::general_purpose::STANDARD.encode(&leaf));
    std::fs::write(&file, serde_json::to_vec(&bad).unwrap()).unwrap();
    let out = alone(&[]);
    out.expect_denied("integrity_failure", "altered evidence");
    let idx = ev["entries"][3]["index"].as_u64().unwrap();
    assert_eq!(out.json()["report"]["problems"][0]["index"], idx, "{out:?}");
    // The policy bundles are evidence too, checked without --replay: a
    // policy text edited under its hash, or the bundles left out, is caught.
    std::fs::write(&file, serde_json::to_vec(&ev).unwrap()).unwrap();
    let out = alone(&[]);
    out.expect_code(0, "untouched evidence");
    let n = ev["bundles"].as_object().unwrap().len();
    assert!(n >= 1, "{ev}");
    assert_eq!(out.json()["report"]["policy_bundles_checked"], n);
    let mut forged = ev.clone();
    let (hash, _) = ev["bundles"].as_object().unwrap().iter().next().unwrap();
    let policies = forged["bundles"][hash]["source"]["policies"]
        .as_object_mut()
        .unwrap();
    let first = policies.keys().next().unwrap().clone();
    let text = policies[&first].as_str().unwrap().to_owned();
    policies.insert(
        first,
        json!(format!("{text}\npermit (principal, action, resource);")),
    );
    std::fs::write(&file, serde_json::to_vec(&forged).unwrap()).unwrap();
    let out = alone(&[]);
    out.expect_denied("integrity_failure", "a forged policy text");
    assert!(
        out.json()["report"]["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("does not match the content"),
        "{out:?}"
    );
    let mut emptied = ev.clone();
    emptied["bundles"] = json!({});
    std::fs::write(&file, serde_json::to_vec(&emptied).unwrap()).unwrap();
    let out = alone(&[]);
    out.expect_denied("integrity_failure", "policy bundles left out");
    assert!(out.stdout.contains("is not in the evidence"), "{out:?}");
    // A different log key pinned: refused.
    std::fs::write(&file, serde_json::to_vec(&ev).unwrap()).unwrap();
    let other_dir = s.tmp.path().join("other");
    init_dir(&other_dir);
    let other = run_writ(
        &[
            "--dir",
            other_dir.to_str().unwrap(),
            "log",
            "export",
            "--from",
            "0",
            "--to",
            "1",
            "--out",
            "/dev/null",
        ],
        &[],
        None,
    );
    assert_ne!(other.code, 0, "no checkpoint in a fresh dir: {other:?}");
    let out = alone(&["--log-key", &vkey.replacen('+', "x+", 1)]);
    assert_ne!(out.code, 0, "a malformed pinned key is refused: {out:?}");
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

fn start_witness(dir: &std::path::Path, log_vkey: &str, addr: Option<&str>) -> Witness {
    let vkey = run_writ(
        &[
            "witness",
            "--witness-dir",
            dir.to_str().unwrap(),
            "--print-key",
        ],
        &[],
        None,
    )
    .stdout
    .trim()
    .to_owned();
    let addr = addr.map(str::to_owned).unwrap_or_else(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("127.0.0.1:{port}")
    });
    let child = Command::new(writ_bin())
        .args([
            "witness",
            "--witness-dir",
            dir.to_str().unwrap(),
            "--listen",
            &addr,
            "--log-key",
            log_vkey,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the witness to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    Witness {
        child,
        url: format!("http://{addr}"),
        vkey,
    }
}

#[test]
fn a_witness_cosigns_remembers_across_restarts_and_verifiers_can_require_it() {
    // The log key is made by `writ init`; learn it from a first server run.
    let probe = Server::start();
    let log_vkey = probe.get("/v1/log/key", None).json()["vkey"]
        .as_str()
        .unwrap()
        .to_owned();
    let keep = tempfile::tempdir().unwrap();
    let wdir = keep.path().join("witness");
    let w = start_witness(&wdir, &log_vkey, None);
    // Serve the same data dir again, now with the witness.
    let dir = probe.dir.clone();
    let token = probe.admin_token.clone();
    let moved = keep.path().join("data");
    std::fs::rename(&dir, &moved).unwrap();
    drop(probe);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let witness_arg = format!("{}={}", w.url, w.vkey);
    let serve_log = keep.path().join("serve.log");
    let mut serve = Command::new(writ_bin())
        .args([
            "--dir",
            moved.to_str().unwrap(),
            "serve",
            "--listen",
            &addr,
            "--witness",
            &witness_arg,
        ])
        .env("WRIT_LOG", "writ=debug,writ_server=debug,warn")
        .stdout(std::fs::File::create(&serve_log).unwrap())
        .stderr(std::fs::File::create(keep.path().join("serve.err")).unwrap())
        .spawn()
        .unwrap();
    wait_for("the server to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    let env = [
        ("WRIT_SERVER", format!("http://{addr}")),
        ("WRIT_DIR", moved.to_str().unwrap().to_owned()),
        ("WRIT_TOKEN", token),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let note = run_writ(&["log", "checkpoint"], &env, None);
    note.expect_code(0, "publish");
    assert_eq!(
        note.stdout.matches('\u{2014}').count(),
        2,
        "log signature and cosignature: {}\nserver: {}",
        note.stdout,
        std::fs::read_to_string(keep.path().join("serve.err")).unwrap_or_default()
    );
    run_writ(&["log", "verify", "--witness-key", &w.vkey], &env, None).expect_code(0, "witnessed");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(wdir.join("state.json")).unwrap()).unwrap();
    let size = note.stdout.lines().nth(1).unwrap().parse::<u64>().unwrap();
    assert_eq!(
        state["logs"].as_object().unwrap().values().next().unwrap()["size"],
        size
    );
    // Restart the witness: it still knows the size it cosigned, and cosigns
    // the next checkpoint after a consistency proof from there.
    let w_addr = w.url.trim_start_matches("http://").to_owned();
    drop(w);
    let w = start_witness(&wdir, &log_vkey, Some(&w_addr));
    let info: Value =
        serde_json::from_str(&http(&w.url[7..], "GET", "/", &[], b"").text()).unwrap();
    assert_eq!(
        info["state"]["logs"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()["size"],
        size
    );
    run_writ(
        &[
            "authorize",
            "--resource",
            "Command::\"/usr/bin/true\"",
            "--request",
            "[\"/usr/bin/true\"]",
        ],
        &env,
        None,
    );
    let note = run_writ(&["log", "checkpoint"], &env, None);
    assert_eq!(
        note.stdout.matches('\u{2014}').count(),
        2,
        "{}\nserver: {}",
        note.stdout,
        std::fs::read_to_string(keep.path().join("serve.err")).unwrap_or_default()
    );
    // A witness that never cosigned: required, so verification fails.
    let stranger = run_writ(
        &[
            "witness",
            "--witness-dir",
            keep.path().join("w2").to_str().unwrap(),
            "--print-key",
        ],
        &[],
        None,
    );
    run_writ(
        &["log", "verify", "--witness-key", stranger.stdout.trim()],
        &env,
        None,
    )
    .expect_denied("integrity_failure", "missing cosignature");
    let _ = serve.kill();
    let _ = serve.wait();
}
