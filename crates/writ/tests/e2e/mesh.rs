//! The governance mesh: three `writ serve` nodes on loopback sharing one
//! throwaway PostgreSQL, acting as one authority with one log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::pg;
use serde_json::{json, Value};

const ALLOW_ALL: &str = "@id(\"all\")\npermit (principal, action, resource);\n";

struct Node {
    /// A token the node accepts, for its routes that need one (`/v1/mesh`).
    token: String,
    dir: PathBuf,
    addr: String,
    url: String,
    child: Child,
    log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", l.local_addr().unwrap().port())
}

impl Node {
    /// `writ serve --store URL` on `dir` (joining the mesh when `dir` is new).
    fn start(dir: &Path, store: &str) -> Node {
        let addr = free_addr();
        let log = dir.with_extension("log");
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new(writ_bin())
            .args(["--dir", dir.to_str().unwrap(), "serve", "--listen", &addr])
            .args(["--store", store, "--checkpoint-interval-ms", "200"])
            .env_remove("WRIT_DIR")
            .env_remove("WRIT_TOKEN")
            .env_remove("WRIT_SERVER")
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        let n = Node {
            token: String::new(),
            dir: dir.to_owned(),
            url: format!("http://{addr}"),
            addr,
            child,
            log,
        };
        wait_for(
            "the node to answer /healthz",
            Duration::from_secs(30),
            || try_http(&n.addr, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200),
        );
        n
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> Resp {
        http(&self.addr, "GET", path, &[], b"")
    }

    fn post(&self, path: &str, token: &str, body: &Value) -> Resp {
        let auth = format!("Bearer {token}");
        http(
            &self.addr,
            "POST",
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    }

    /// The size in the latest signed checkpoint (a C2SP note: origin, size, root).
    fn checkpoint_size(&self) -> u64 {
        let r = self.get("/v1/log/checkpoint");
        if r.status != 200 {
            return 0;
        }
        r.text()
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .unwrap_or(0)
    }

    fn mesh(&self) -> Value {
        let auth = format!("Bearer {}", self.token);
        http(
            &self.addr,
            "GET",
            "/v1/mesh",
            &[("Authorization", &auth)],
            b"",
        )
        .json()
    }

    fn leads(&self) -> bool {
        self.mesh()["nodes"][0]["leader"] == true
    }

    fn policy(&self) -> String {
        self.get("/readyz").json()["policy"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn cli(&self, token: &str, args: &[&str]) -> CliOut {
        let mut all = vec!["--dir", self.dir.to_str().unwrap()];
        all.extend_from_slice(args);
        run_writ(
            &all,
            &[("WRIT_SERVER", &self.url), ("WRIT_TOKEN", token)],
            None,
        )
    }
}

/// A mesh of `n` nodes on a new database; the admin token.
fn mesh(pg: &pg::Cluster, tmp: &Path, n: usize) -> (Vec<Node>, String) {
    let url = pg.database();
    let d1 = tmp.join("node1");
    let out = run_writ(
        &[
            "--dir",
            d1.to_str().unwrap(),
            "init",
            "--store",
            &url,
            "--json",
        ],
        &[],
        None,
    );
    out.expect_code(0, "writ init --store");
    let token = out.json()["admin_token"].as_str().unwrap().to_owned();
    let nodes: Vec<Node> = (1..=n)
        .map(|i| {
            let mut node = Node::start(&tmp.join(format!("node{i}")), &url);
            node.token = token.clone();
            node
        })
        .collect();
    // A policy activated through node 1 reaches every node.
    let pdir = tmp.join("policy-all");
    std::fs::create_dir_all(&pdir).unwrap();
    std::fs::write(pdir.join("policy.cedar"), ALLOW_ALL).unwrap();
    nodes[0]
        .cli(&token, &["policy", "activate", pdir.to_str().unwrap()])
        .expect_code(0, "writ policy activate through node 1");
    let hash = nodes[0].policy();
    for node in &nodes[1..] {
        wait_for(
            "the activation to reach every node",
            Duration::from_secs(5),
            || node.policy() == hash,
        );
    }
    (nodes, token)
}

fn authorize(node: &Node, token: &str, argv: &[&str]) -> Value {
    let r = node.post("/v1/authorize", token, &exec_req(argv, "mesh-test"));
    r.json()
}

#[test]
fn three_nodes_on_one_postgres_are_one_authority_with_one_log() {
    let pg = pg::Cluster::start();
    let tmp = tempfile::tempdir().unwrap();
    let (mut nodes, token) = mesh(&pg, tmp.path(), 3);

    // Every node's public key is in the JWKS every node serves.
    let kids: Vec<Value> = nodes
        .iter()
        .map(|n| n.get("/.well-known/jwks.json").json()["keys"].clone())
        .collect();
    assert_eq!(kids[0].as_array().unwrap().len(), 3, "{}", kids[0]);
    assert!(kids.iter().all(|k| k == &kids[0]), "{kids:?}");

    // Concurrent decisions on all three nodes.
    let allowed: Vec<(usize, Value)> = std::thread::scope(|s| {
        let hs: Vec<_> = nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| {
                let token = &token;
                (0..4).map(move |t| {
                    s.spawn(move || {
                        (0..10)
                            .map(|k| {
                                let v =
                                    authorize(n, token, &["/usr/bin/true", &format!("{t}-{k}")]);
                                assert_eq!(v["decision"], "allow", "node {i}: {v}");
                                (i, v)
                            })
                            .collect::<Vec<_>>()
                    })
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(allowed.len(), 120);
    let mut indices: Vec<u64> = allowed
        .iter()
        .map(|(_, v)| v["log_index"].as_u64().unwrap())
        .collect();
    indices.sort();
    indices.dedup();
    assert_eq!(indices.len(), 120, "every decision has its own log index");

    // A writ issued and spent on node 1 is replayed on nodes 2 and 3.
    let v = authorize(&nodes[0], &token, &["/usr/bin/true", "replay"]);
    let jti = v["jti"].as_str().unwrap();
    let path = format!("/v1/executions/{jti}/start");
    assert_eq!(nodes[0].post(&path, &token, &json!({})).status, 200);
    for n in &nodes[1..] {
        let r = n.post(&path, &token, &json!({}));
        assert_eq!(
            (r.status, r.json()["reason"].clone()),
            (403, json!("replayed")),
            "{}",
            r.text()
        );
    }

    // A revocation on node 1 ends a `writ exec` attached to node 3.
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let t0 = Instant::now();
    let runner = spawn_writ(
        &["exec", "--kill-grace", "1", "--", "/bin/sleep", "60"],
        &[("WRIT_SERVER", &nodes[2].url), ("WRIT_TOKEN", &token)],
        Some(&work),
    );
    let mut started = None;
    wait_for(
        "the governed sleep to start",
        Duration::from_secs(20),
        || {
            let entries = nodes[2]
                .get("/v1/log/entries?start=0")
                .json()
                .as_array()
                .cloned()
                .unwrap_or_default();
            started = entries
                .iter()
                .filter(|e| e["entry"]["type"] == "execution_start")
                .filter_map(|e| e["entry"]["jti"].as_str().map(str::to_owned))
                .find(|j| j != jti);
            started.is_some()
        },
    );
    let run_jti = started.unwrap();
    let revoked_at = Instant::now();
    nodes[0]
        .cli(&token, &["revoke", "--jti", &run_jti])
        .expect_code(0, "writ revoke through node 1");
    let out = wait_writ(runner, Duration::from_secs(20));
    out.expect_denied("revoked", "the runner attached to node 3");
    eprintln!(
        "revocation on node 1 ended the run on node 3 in {:?} (run started after {:?})",
        revoked_at.elapsed(),
        revoked_at - t0
    );

    // A principal disabled, enabled and revoked on node 1 is refused and
    // accepted again on node 3 within the freshness bound (1 s).
    let r = nodes[0].post(
        "/v1/principals",
        &token,
        &json!({"uid": "User::\"ops\"", "admin": true}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let ops = r.json()["token"].as_str().unwrap().to_owned();
    let on_node3 = |t: &str| {
        let auth = format!("Bearer {t}");
        http(
            &nodes[2].addr,
            "GET",
            "/v1/principals",
            &[("Authorization", &auth)],
            b"",
        )
        .status
    };
    wait_for(
        "node 3 to know the new admin",
        Duration::from_secs(5),
        || on_node3(&ops) == 200,
    );
    for (verb, want) in [("disable", 401), ("enable", 200)] {
        let r = nodes[0].post(
            &format!("/v1/principals/{verb}"),
            &token,
            &json!({"uid": "User::\"ops\""}),
        );
        assert_eq!(r.status, 200, "{verb}: {}", r.text());
        let t0 = Instant::now();
        wait_for(
            &format!("node 3 after {verb}"),
            Duration::from_secs(2),
            || on_node3(&ops) == want,
        );
        eprintln!(
            "{verb} on node 1 took effect on node 3 in {:?}",
            t0.elapsed()
        );
    }
    let r = nodes[0].post(
        "/v1/revocations",
        &token,
        &json!({"principal": "User::\"ops\"", "reason": "leaked"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait_for(
        "node 3 to refuse the revoked admin",
        Duration::from_secs(2),
        || on_node3(&ops) == 401,
    );
    let r = {
        let auth = format!("Bearer {ops}");
        http(
            &nodes[2].addr,
            "POST",
            "/v1/principals",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            br#"{"uid":"User::\"minted\"","admin":true}"#,
        )
    };
    assert_eq!(
        r.status,
        401,
        "the revoked admin minted an admin on node 3: {}",
        r.text()
    );

    // Exactly one leader; when it stops, another node takes over signing.
    wait_for("a checkpoint leader", Duration::from_secs(5), || {
        nodes.iter().filter(|n| n.leads()).count() == 1
    });
    let leader = nodes.iter().position(Node::leads).unwrap();
    let before = nodes[(leader + 1) % 3].checkpoint_size();
    // Every node sees the whole mesh: three live nodes on the current policy.
    let viewer = &nodes[(leader + 1) % 3];
    wait_for(
        "every node reported in /v1/mesh",
        Duration::from_secs(5),
        || {
            let v = viewer.mesh();
            let rows = v["nodes"].as_array().cloned().unwrap_or_default();
            rows.len() == 3
                && rows
                    .iter()
                    .all(|n| n["policy_fresh"] == true && n["alive"] != false)
                && rows.iter().filter(|n| n["leader"] == true).count() == 1
        },
    );
    let mut gone = nodes.remove(leader);
    let _ = gone.child.kill();
    let _ = gone.child.wait();
    for k in 0..5 {
        authorize(&nodes[0], &token, &["/usr/bin/true", &format!("after-{k}")]);
    }
    wait_for(
        "another node to lead and sign",
        Duration::from_secs(15),
        || nodes.iter().any(Node::leads) && nodes[0].checkpoint_size() > before,
    );
    drop(gone);

    // One log, checkpoints by several leaders, consistent throughout: each
    // surviving node's data dir verifies it offline.
    for n in &nodes {
        let out = run_writ(
            &["--dir", n.dir.to_str().unwrap(), "log", "verify", "--json"],
            &[],
            None,
        );
        out.expect_code(
            0,
            &format!("writ log verify from {}: {}", n.dir.display(), n.log_text()),
        );
        let r = out.json();
        assert_eq!(r["ok"], true, "{r}");
        assert!(r["report"]["entries"].as_u64().unwrap() >= 120, "{r}");
        assert!(r["report"]["checkpoints"].as_u64().unwrap() >= 2, "{r}");
        // And through the node's public log routes, as an outside verifier.
        let out = run_writ(
            &["log", "verify", "--remote", "--json"],
            &[("WRIT_SERVER", &n.url)],
            None,
        );
        out.expect_code(0, &format!("writ log verify --remote against {}", n.url));
        assert_eq!(out.json()["ok"], true);
    }

    // A compromised node's key, retired from another node: the writs it
    // signed stop verifying everywhere, and that node denies (it can sign
    // nothing any more) until it joins again with a new key.
    let (a, b) = (&nodes[0], &nodes[1]);
    let v = authorize(b, &token, &["/usr/bin/true", "by-b"]);
    let writ = v["writ"].as_str().unwrap().to_owned();
    let kid = claims_of_header(&writ);
    a.cli(&token, &["key", "retire", &kid])
        .expect_code(0, "writ key retire through another node");
    let verify =
        |n: &Node| n.post("/v1/verify", &token, &json!({"writ": writ})).json()["reason"].clone();
    assert_eq!(verify(a), "invalid_signature");
    // The retired node itself cannot load a state without its own key: it
    // goes stale and denies everything, this writ among it.
    wait_for(
        "the retired node to refuse the writ",
        Duration::from_secs(5),
        || verify(b) == "authority_unavailable",
    );
    wait_for("the retired node to deny", Duration::from_secs(5), || {
        authorize(b, &token, &["/usr/bin/true", "after"])["reason"] == "authority_unavailable"
    });
    assert_eq!(
        authorize(a, &token, &["/usr/bin/true", "still"])["decision"],
        "allow"
    );
}

/// The `kid` of a writ's header.
fn claims_of_header(writ: &str) -> String {
    header_of(writ)["kid"].as_str().unwrap().to_owned()
}

#[test]
fn with_postgres_down_every_node_denies_and_recovers_after() {
    let pg = pg::Cluster::start();
    if !pg.owned() {
        eprintln!("WRIT_TEST_DATABASE_URL is set: this test needs a cluster it can stop; skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (nodes, token) = mesh(&pg, tmp.path(), 3);
    let mut acked: Vec<(String, u64)> = Vec::new();
    for n in &nodes {
        let v = authorize(n, &token, &["/usr/bin/true", "before"]);
        assert_eq!(v["decision"], "allow", "{v}");
        acked.push((
            v["jti"].as_str().unwrap().into(),
            v["log_index"].as_u64().unwrap(),
        ));
    }
    pg.stop();
    for n in &nodes {
        let v = authorize(n, &token, &["/usr/bin/true", "down"]);
        assert_eq!(
            (v["decision"].as_str(), v["reason"].as_str()),
            (Some("deny"), Some("authority_unavailable")),
            "{v}"
        );
    }
    for n in &nodes {
        wait_for("readyz to report not ready", Duration::from_secs(5), || {
            n.get("/readyz").status == 503
        });
    }
    pg.restart();
    for n in &nodes {
        let mut v = Value::Null;
        wait_for("the node to decide again", Duration::from_secs(20), || {
            v = authorize(n, &token, &["/usr/bin/true", "after"]);
            v["decision"] == "allow"
        });
        acked.push((
            v["jti"].as_str().unwrap().into(),
            v["log_index"].as_u64().unwrap(),
        ));
        wait_for("readyz to report ready", Duration::from_secs(5), || {
            n.get("/readyz").status == 200
        });
    }
    // Nothing acknowledged was lost, nothing duplicated: each acknowledged
    // decision is at its index, and the log verifies.
    let entries = nodes[0].get("/v1/log/entries?start=0").json();
    let entries = entries.as_array().unwrap();
    for (jti, index) in &acked {
        assert_eq!(
            entries[*index as usize]["entry"]["jti"],
            json!(jti),
            "entry {index}"
        );
        let copies = entries
            .iter()
            .filter(|e| e["entry"]["type"] == "decision" && e["entry"]["jti"] == json!(jti))
            .count();
        assert_eq!(copies, 1, "decision {jti} logged once");
    }
    run_writ(
        &["--dir", nodes[1].dir.to_str().unwrap(), "log", "verify"],
        &[],
        None,
    )
    .expect_code(0, "writ log verify after the outage");
}

#[test]
fn an_issuer_added_through_one_node_authenticates_on_every_node() {
    let pg = pg::Cluster::start();
    let tmp = tempfile::tempdir().unwrap();
    let (nodes, token) = mesh(&pg, tmp.path(), 2);
    let a = &nodes[0];
    // An issuer registered through one node authenticates its callers on
    // the others; removed through another, its tokens stop everywhere.
    let idp = writ_artifact::WritKey::generate(&writ_artifact::OsEntropy).unwrap();
    let jwks = tmp.path().join("idp-jwks.json");
    std::fs::write(&jwks, json!({"keys": [idp.jwk()]}).to_string()).unwrap();
    a.cli(
        &token,
        &[
            "issuer",
            "add",
            "mesh-idp",
            "--issuer",
            "https://mesh-idp.test",
            "--audience",
            "writ",
            "--jwks",
            jwks.to_str().unwrap(),
        ],
    )
    .expect_code(0, "writ issuer add through node 1");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let jwt = sign_raw(
        &idp,
        json!({"alg": "EdDSA", "kid": idp.kid()})
            .to_string()
            .as_bytes(),
        json!({"iss": "https://mesh-idp.test", "aud": "writ", "sub": "svc", "exp": now + 600})
            .to_string()
            .as_bytes(),
    );
    for n in &nodes {
        wait_for(
            "the issuer to reach every node",
            Duration::from_secs(5),
            || authorize(n, &jwt, &["/usr/bin/true", "svc"])["decision"] == "allow",
        );
    }
    nodes[1]
        .cli(&token, &["issuer", "remove", "mesh-idp"])
        .expect_code(0, "writ issuer remove through node 2");
    for n in &nodes {
        wait_for(
            "the removal to reach every node",
            Duration::from_secs(5),
            || authorize(n, &jwt, &["/usr/bin/true", "svc"])["reason"] == "unauthenticated",
        );
    }
}
