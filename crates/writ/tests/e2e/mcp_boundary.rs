//! The MCP proxy's boundary, attacked through a real `writ mcp-proxy` in
//! front of a server that records every byte it receives: messages another
//! JSON parser reads differently, methods other than `tools/call`, requests
//! of the server to the client, the server's environment and confinement.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

/// An MCP server over stdio that appends every line it receives to
/// `argv[1]`, writes its environment (and what it could read of
/// `argv[3]`, if given) to `argv[2]`, answers requests, and on a call of the
/// tool `ask_client` sends the client a sampling request.
const RECORDER: &str = include_str!("fixtures/mcp_boundary_recorder.py");

struct Proxy {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    dir: PathBuf,
}

impl Proxy {
    /// `writ mcp-proxy --name rec [extra] -- /usr/bin/python3 recorder.py
    /// seen facts.json [probe...]` in a fresh directory, as `token`, with
    /// `env` added.
    fn start(
        srv: &Server,
        token: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        probes: &[&str],
    ) -> Proxy {
        let dir = tempfile::tempdir().unwrap().keep().canonicalize().unwrap();
        Proxy::start_in(srv, token, extra, env, probes, &dir)
    }

    /// As [`Proxy::start`], with the recorder's files in `dir` (which a
    /// confined server must be allowed to write).
    fn start_in(
        srv: &Server,
        token: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        probes: &[&str],
        dir: &Path,
    ) -> Proxy {
        let script = dir.join("recorder.py");
        std::fs::write(&script, RECORDER).unwrap();
        let mut args: Vec<String> = vec!["mcp-proxy".into(), "--name".into(), "rec".into()];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args.extend([
            "--".into(),
            "/usr/bin/python3".into(),
            script.to_str().unwrap().into(),
            dir.join("seen").to_str().unwrap().into(),
            dir.join("facts.json").to_str().unwrap().into(),
        ]);
        args.extend(probes.iter().map(|s| (*s).to_owned()));
        let mut cmd = Command::new(writ_bin());
        cmd.args(&args)
            .env("WRIT_SERVER", &srv.url)
            .env("WRIT_TOKEN", token)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Proxy {
            child,
            stdin,
            lines,
            dir: dir.to_path_buf(),
        }
    }

    fn send(&mut self, line: &str) {
        let w = self.stdin.as_mut().unwrap();
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
        w.flush().unwrap();
    }

    /// The next message from the proxy.
    fn next(&self) -> Value {
        let l = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("no message from the proxy within 30 s");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"))
    }

    /// Messages until each id of `ids` has been answered; by id.
    fn answers(&self, ids: &[Value]) -> BTreeMap<String, Value> {
        let mut got = BTreeMap::new();
        while ids.iter().any(|i| !got.contains_key(&i.to_string())) {
            let v = self.next();
            got.insert(v["id"].to_string(), v);
        }
        got
    }

    /// Close the client's side and wait for the proxy to exit.
    fn close(mut self) -> (std::process::ExitStatus, PathBuf) {
        drop(self.stdin.take());
        let (tx, rx) = mpsc::channel();
        let mut child = self.child;
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let st = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the proxy did not exit")
            .unwrap();
        (st, self.dir)
    }

    fn seen(dir: &Path) -> Vec<Value> {
        std::fs::read_to_string(dir.join("seen"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or(json!(l)))
            .collect()
    }
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}}"#;

/// A key the proxy reads one way and Go's `encoding/json` (the Go MCP
/// SDKs) another: case-insensitive matching, the last key winning, with
/// Unicode's folding (`ſ` is `s`, the Kelvin sign is `k`). Forwarded byte
/// for byte, such a message was a `ping` to the proxy and a `tools/call` of
/// `write_file` to the server. Now every message with keys equal under case
/// folding, at any depth, whatever its method, is refused and never
/// reaches the server; checked against every case-folding class Python's
/// Unicode database knows.
#[test]
fn messages_another_json_parser_reads_differently_never_reach_the_server() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let mut p = Proxy::start(&srv, &agent, &[], &[], &[]);
    let attacks = [
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call","params":{"name":"write_file","arguments":{"path":"/tmp/x","content":"x"}}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_text_file","Name":"write_file","arguments":{"path":"/data/public/a"}}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"/data/public/a"},"argumentſ":{"path":"/etc/shadow"}}}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"resources/list","params":{"kind":1,"Kind":2}}"#,
        r#"{"jsonrpc":"2.0","id":5,"method":"ping","params":{"_meta":{"progressToken":1,"PROGRESSTOKEN":2}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized","METHOD":"tools/call","params":{"name":"write_file"}}"#,
    ];
    for a in attacks {
        p.send(a);
    }
    let answers = p.answers(&[
        json!(1),
        json!(2),
        json!(3),
        json!(4),
        json!(5),
        Value::Null,
    ]);
    for (id, a) in &answers {
        assert_eq!(a["error"]["code"], -32600, "{id}: {a}");
        assert!(
            a["error"]["message"]
                .as_str()
                .unwrap()
                .contains("another JSON parser"),
            "{a}"
        );
    }
    // Every class of characters Unicode case folding (Python's, from its
    // own Unicode database) makes one.
    let classes = Command::new("python3")
        .args([
            "-c",
            "import json, collections\n\
             g = collections.defaultdict(set)\n\
             for cp in range(0x110000):\n    \
                 if 0xD800 <= cp <= 0xDFFF: continue\n    \
                 c = chr(cp); g[c.casefold()].add(c)\n\
             print(json.dumps([sorted(v) for v in g.values() if len(v) > 1]))",
        ])
        .output()
        .unwrap();
    let classes: Vec<Vec<String>> = serde_json::from_slice(&classes.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&classes.stderr)));
    assert!(classes.len() > 1000, "{} classes", classes.len());
    for (n, class) in classes.iter().enumerate() {
        let key = |c: &String| serde_json::to_string(&format!("x{c}")).unwrap();
        p.send(&format!(
            r#"{{"jsonrpc":"2.0","id":"c{n}","method":"ping","params":{{{}:1,{}:2}}}}"#,
            key(&class[0]),
            key(&class[class.len() - 1])
        ));
    }
    let ids: Vec<Value> = (0..classes.len()).map(|n| json!(format!("c{n}"))).collect();
    let answers = p.answers(&ids);
    for (n, class) in classes.iter().enumerate() {
        let a = &answers[&json!(format!("c{n}")).to_string()];
        assert_eq!(
            a["error"]["code"], -32600,
            "class {class:?} was not refused: {a}"
        );
    }
    // A clean ping still passes.
    p.send(r#"{"jsonrpc":"2.0","id":"clean","method":"ping"}"#);
    p.answers(&[json!("clean")]);
    let (_, dir) = p.close();
    let seen = Proxy::seen(&dir);
    assert_eq!(
        seen,
        vec![json!({"jsonrpc":"2.0","id":"clean","method":"ping"})],
        "the server saw more"
    );
}

fn decisions_about(srv: &Server, action: &str) -> Vec<Value> {
    srv.log_entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["type"] == "decision" && e["action"] == action)
        .collect()
}

const POLICY: &str = r#"
@id("sessions") permit (principal, action == Action::"mcp_session", resource);
@id("ask") permit (principal, action == Action::"call_tool", resource == Tool::"rec/ask_client");
@id("public-resource") permit (principal, action == Action::"read_resource", resource == Resource::"rec/file:///data/public.txt");
@id("server-requests") permit (principal, action == Action::"server_request", resource);
"#;

/// Only `tools/call` was decided: `resources/read file:///etc/shadow`
/// reached the server undecided, and so did prompts, completions and
/// every other method. Now each request that makes the server act or
/// disclose is decided, logged, and denied unless a policy permits it;
/// `resources/list` is filtered like `tools/list`; a request the server
/// sends the client (sampling) is decided and logged too.
#[test]
fn every_mcp_request_that_acts_or_discloses_is_decided_and_logged() {
    let srv = Server::start();
    activate_policy(&srv, "mcp", POLICY);
    let agent = srv.add_principal("Agent::\"planner\"");
    let mut p = Proxy::start(&srv, &agent, &[], &[], &[]);
    p.send(INIT);
    p.answers(&[json!("init")]);
    let requests = [
        (
            1,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/shadow"}}"#,
        ),
        (
            2,
            r#"{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"secrets","arguments":{}}}"#,
        ),
        (
            3,
            r#"{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"secrets"},"argument":{"name":"a","value":"b"}}}"#,
        ),
        (
            4,
            r#"{"jsonrpc":"2.0","id":4,"method":"logging/setLevel","params":{"level":"debug"}}"#,
        ),
        (
            5,
            r#"{"jsonrpc":"2.0","id":5,"method":"tasks/result","params":{"taskId":"t"}}"#,
        ),
        (
            6,
            r#"{"jsonrpc":"2.0","id":6,"method":"resources/subscribe","params":{"uri":"file:///etc/shadow"}}"#,
        ),
    ];
    for (_, r) in requests {
        p.send(r);
    }
    let ids: Vec<Value> = requests.iter().map(|(i, _)| json!(i)).collect();
    for (id, a) in p.answers(&ids) {
        assert_eq!(
            (&a["error"]["code"], &a["error"]["data"]["writ/reason"]),
            (&json!(-32001), &json!("policy_denied")),
            "{id}: {a}"
        );
    }
    // Permitted: a read of the public resource, the list filtered to it.
    p.send(r#"{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"file:///data/public.txt"}}"#);
    p.send(r#"{"jsonrpc":"2.0","id":8,"method":"resources/list","params":{}}"#);
    let a = p.answers(&[json!(7), json!(8)]);
    assert_eq!(
        a["7"]["result"]["contents"][0]["text"], "content of file:///data/public.txt",
        "{}",
        a["7"]
    );
    assert_eq!(
        a["8"]["result"]["resources"],
        json!([{"uri": "file:///data/public.txt", "name": "public"}])
    );
    // A call that makes the server ask the client for a completion: the
    // server's request is decided, forwarded, and answered by the client.
    p.send(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"ask_client","arguments":{}}}"#);
    let mut got = BTreeMap::new();
    while got.len() < 2 {
        let v = p.next();
        got.insert(v["id"].to_string(), v);
    }
    assert_eq!(got["9"]["result"]["content"][0]["text"], "called");
    let sampling = &got["\"s1\""];
    assert_eq!(sampling["method"], "sampling/createMessage", "{sampling}");
    p.send(r#"{"jsonrpc":"2.0","id":"s1","result":{"role":"assistant","content":{"type":"text","text":"ok"},"model":"m"}}"#);
    p.send(r#"{"jsonrpc":"2.0","id":"last","method":"ping"}"#);
    p.answers(&[json!("last")]);
    let (status, dir) = p.close();
    assert!(status.success(), "{status:?}");

    // The server saw none of the denied requests, and the client's answer.
    let seen = Proxy::seen(&dir);
    // (A list passes while a read waits for its decision: order by method.)
    let mut methods: Vec<String> = seen
        .iter()
        .filter_map(|m| m["method"].as_str().map(str::to_owned))
        .collect();
    methods.sort();
    assert_eq!(
        methods,
        [
            "initialize",
            "ping",
            "resources/list",
            "resources/read",
            "tools/call",
            // The proxy's own: the call named a tool it had not seen listed.
            "tools/list"
        ],
        "{seen:#?}"
    );
    let read = seen
        .iter()
        .find(|m| m["method"] == "resources/read")
        .unwrap();
    assert_eq!(read["params"]["uri"], "file:///data/public.txt");
    assert!(
        seen.iter()
            .any(|m| m["id"] == "s1" && m["result"]["model"] == "m"),
        "{seen:#?}"
    );

    // Each one is in the log: denials, the allowed read, the list's probes
    // and the server's request with its finish.
    let reads = decisions_about(&srv, "Action::\"read_resource\"");
    let outcome = |uri: &str| -> Vec<&str> {
        reads
            .iter()
            .filter(|d| d["resource"] == format!("Resource::\"rec/{uri}\""))
            .map(|d| d["decision"].as_str().unwrap())
            .collect()
    };
    assert!(
        outcome("file:///etc/shadow").iter().all(|d| *d == "deny"),
        "{reads:#?}"
    );
    assert!(
        outcome("file:///data/public.txt").contains(&"allow"),
        "{reads:#?}"
    );
    for action in [
        "get_prompt",
        "complete",
        "set_log_level",
        "mcp_request",
        "subscribe_resource",
    ] {
        let d = decisions_about(&srv, &format!("Action::\"{action}\""));
        assert_eq!(d.len(), 1, "{action}: {d:#?}");
        assert_eq!(
            (d[0]["decision"].as_str(), d[0]["reason"].as_str()),
            (Some("deny"), Some("policy_denied"))
        );
    }
    let asked = decisions_about(&srv, "Action::\"server_request\"");
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(
        asked[0]["resource"],
        "McpMethod::\"rec/sampling/createMessage\""
    );
    let jti = asked[0]["jti"].as_str().unwrap();
    let finished = srv.log_entries().into_iter().any(|e| {
        e["entry"]["type"] == "execution_finish"
            && e["entry"]["jti"] == jti
            && e["entry"]["exit_status"] == 0
    });
    assert!(
        finished,
        "the client's answer is the finish of the server's request"
    );
}

/// The server inherited the proxy's whole environment, the agent's token
/// among it, and ran unconfined. It now gets the allow-listed variables,
/// the session's writ and a credential of the session (whose requests are
/// children of the session), and runs confined where asked.
#[test]
fn the_mcp_server_gets_no_agent_token_and_runs_confined_where_asked() {
    let srv = Server::start();
    activate_policy(
        &srv,
        "mcp",
        &format!(
            "{POLICY}\n@id(\"exec\") permit (principal, action == Action::\"exec\", resource);\n"
        ),
    );
    let agent = srv.add_principal("Agent::\"planner\"");
    let outside = tempfile::tempdir().unwrap();
    let secret_file = outside.path().join("secret.txt");
    std::fs::write(&secret_file, "s").unwrap();
    let env = [("PROXY_SECRET_VALUE", "hunter2"), ("PASSED_ON", "yes")];

    // Unconfined, with one variable passed on.
    let mut p = Proxy::start(
        &srv,
        &agent,
        &["--env-allow", "PASSED_ON"],
        &env,
        &[secret_file.to_str().unwrap()],
    );
    p.send(INIT);
    p.answers(&[json!("init")]);
    let facts: Value =
        serde_json::from_str(&std::fs::read_to_string(p.dir.join("facts.json")).unwrap()).unwrap();
    let e = &facts["env"];
    assert_eq!(e["PASSED_ON"], "yes");
    assert!(e.get("PROXY_SECRET_VALUE").is_none(), "{e}");
    assert!(
        !facts.to_string().contains(&agent),
        "the agent's token reached the server"
    );
    let cred = e["WRIT_TOKEN"].as_str().unwrap().to_owned();
    assert!(cred.starts_with("writx_"), "{cred}");
    assert_eq!(facts[secret_file.to_str().unwrap()], "read");
    // The credential asks as a child of the session, never as a root.
    let session = claims_of(e["WRIT_PARENT"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let (w, _, _) = srv.authorize_ok(&cred, &exec_req(&["/usr/bin/true"], "exec@x"));
    assert_eq!(claims_of(&w)["writ"]["lineage"]["parent"], session);
    // It cannot write the record of the proxy's tool calls, children of the
    // same session that it did not ask for.
    p.send(r#"{"jsonrpc":"2.0","id":"call","method":"tools/call","params":{"name":"ask_client","arguments":{}}}"#);
    p.answers(&[json!("call")]);
    let call = decisions_about(&srv, "Action::\"call_tool\"")
        .into_iter()
        .find(|d| d["decision"] == "allow")
        .unwrap();
    let r = srv.post(
        &format!("/v1/executions/{}/finish", call["jti"].as_str().unwrap()),
        Some(&cred),
        &json!({"exit_status": 0, "terminated": "forged by the server"}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let (st, _) = p.close();
    assert!(st.success());
    // It died with the session.
    assert_eq!(srv.get("/v1/revocations", Some(&cred)).status, 401);

    // Confined: it reads what the scope grants and nothing else.
    let granted = tempfile::tempdir().unwrap();
    let inside = granted.path().canonicalize().unwrap().join("inside.txt");
    std::fs::write(&inside, "i").unwrap();
    let dir_of = |p: &Path| p.parent().unwrap().to_str().unwrap().to_owned();
    // The recorder's own directory (its script, its output) must be in scope too.
    let scratch = tempfile::tempdir().unwrap().keep().canonicalize().unwrap();
    let mut p = Proxy::start_in(
        &srv,
        &agent,
        &[
            "--read",
            &dir_of(&inside),
            "--write",
            scratch.to_str().unwrap(),
        ],
        &[],
        &[inside.to_str().unwrap(), secret_file.to_str().unwrap()],
        &scratch,
    );
    p.send(INIT);
    p.answers(&[json!("init")]);
    let facts: Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.join("facts.json")).unwrap())
            .unwrap();
    assert_eq!(facts[inside.to_str().unwrap()], "read", "{facts}");
    assert_eq!(
        facts[secret_file.to_str().unwrap()],
        "PermissionError",
        "{facts}"
    );
    let (st, _) = p.close();
    assert!(st.success());
    // The session's writ binds the scope.
    let sessions = decisions_about(&srv, "Action::\"mcp_session\"");
    let last = sessions.last().unwrap();
    assert_eq!(last["scope"]["read"], json!([dir_of(&inside)]), "{last}");
}

/// While a policy decides tool results (docs/spec/api.md, "Screened tool
/// results"), a call whose answer would come another way is refused: a
/// task-augmented call (`params.task`, in any case another parser folds
/// to it) would have its result fetched by `tasks/result`, never screened.
/// And an enforcement point that does not say it screens results gets no
/// allow of a call at all.
#[test]
fn results_are_screened_or_the_call_is_refused() {
    let srv = Server::start();
    activate_policy(
        &srv,
        "screened",
        r#"
@id("sessions") permit (principal, action == Action::"mcp_session", resource);
@id("ask") permit (principal, action == Action::"call_tool", resource == Tool::"rec/ask_client");
@id("results") permit (principal, action == Action::"tool_result", resource);
"#,
    );
    let agent = srv.add_principal("Agent::\"planner\"");
    let mut p = Proxy::start(&srv, &agent, &[], &[], &[]);
    p.send(INIT);
    p.answers(&[json!("init")]);
    p.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ask_client","arguments":{},"task":{"ttl":60000}}}"#);
    p.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ask_client","arguments":{},"Taſk":{"ttl":60000}}}"#);
    p.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"ask_client","arguments":{}}}"#);
    let got = p.answers(&[json!(1), json!(2), json!(3)]);
    for id in ["1", "2"] {
        let text = got[id]["result"]["content"][0]["text"].as_str().unwrap();
        assert!(
            got[id]["result"]["isError"] == true
                && text.starts_with("denied: policy_denied: a task-augmented call"),
            "{id}: {}",
            got[id]
        );
    }
    assert_eq!(
        got["3"]["result"]["content"][0]["text"], "called",
        "{}",
        got["3"]
    );
    let (_, dir) = p.close();
    let calls: Vec<Value> = Proxy::seen(&dir)
        .into_iter()
        .filter(|m| m["method"] == "tools/call")
        .collect();
    assert_eq!(
        calls.len(),
        1,
        "only the plain call reached the server: {calls:?}"
    );
    // Each result was decided; the refused calls have their finish.
    assert_eq!(decisions_about(&srv, "Action::\"tool_result\"").len(), 1);

    // Without `screens_results`, a call is denied while results are screened.
    let mut req = json!({
        "action": "Action::\"call_tool\"", "resource": "Tool::\"rec/ask_client\"",
        "request": {"name": "ask_client", "arguments": {}}, "audience": "mcp:rec"});
    let r = srv.authorize(&agent, &req);
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (403, Some("integrity_failure")),
        "{}",
        r.text()
    );
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("screens_results"));
    req["screens_results"] = json!(true);
    let r = srv.authorize(&agent, &req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["screen_result"], true);

    // A result rule only in a policy's conditions would never be asked:
    // such a bundle is refused, and the active one stays.
    let dir = srv.tmp.path().join("policy-hidden");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("policy.cedar"),
        r#"@id("sessions") permit (principal, action == Action::"mcp_session", resource);
@id("hidden") forbid (principal, action, resource)
when { action == Action::"tool_result" && context.result.text like "*SECRET*" };"#,
    )
    .unwrap();
    let out = srv.cli(
        Some(&srv.admin_token),
        &["policy", "activate", dir.to_str().unwrap()],
    );
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr
            .contains("policy \"hidden\" mentions Action::\"tool_result\" outside its scope"),
        "{out:#?}"
    );
    assert_eq!(srv.authorize(&agent, &req).status, 200);
}
