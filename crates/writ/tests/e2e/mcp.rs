//! `writ mcp-proxy` end to end: the real `@modelcontextprotocol/server-filesystem`
//! (npm) as the server, the real Python `mcp` client (PyPI) and the MCP
//! TypeScript SDK's client as clients, a real `writ serve` as the authority.
//!
//! Needs node, npm and python3. The npm packages are installed into
//! `target/mcp-e2e` and the Python `mcp` package into the venv
//! `target/pyenv-mcp` on first use; a failed install fails the test (there
//! is no skip).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;
use serde_json::{json, Value};

const NPM_PACKAGES: [&str; 2] = [
    "@modelcontextprotocol/server-filesystem",
    "@modelcontextprotocol/sdk",
];

/// `target/mcp-e2e`, with the server and the SDK installed.
pub(crate) fn node_prefix() -> PathBuf {
    let _guard = NPM.lock().unwrap_or_else(|p| p.into_inner());
    let prefix = target_dir().join("mcp-e2e");
    let ready = |p: &Path| {
        NPM_PACKAGES.iter().all(|pkg| {
            p.join("node_modules")
                .join(pkg)
                .join("package.json")
                .is_file()
        })
    };
    if !ready(&prefix) {
        std::fs::create_dir_all(&prefix).unwrap();
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .args(NPM_PACKAGES)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run npm (node and npm are needed for the MCP tests): {e}")
            });
        assert!(
            out.status.success(),
            "npm install {NPM_PACKAGES:?} into {} failed:\n{}\n{}",
            prefix.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            ready(&prefix),
            "npm install did not install {NPM_PACKAGES:?}"
        );
    }
    prefix
}

/// The filesystem server's entry point.
fn server_js() -> PathBuf {
    node_prefix().join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js")
}

/// `target/pyenv-mcp/bin/python` with the `mcp` package.
fn python() -> PathBuf {
    python_venv(
        "pyenv-mcp",
        "mcp",
        "from mcp import ClientSession, StdioServerParameters; from mcp.client.stdio import stdio_client",
    )
}

/// A Python MCP client: launches `job.command job.args` (the proxy), then
/// runs `job.steps` (list_tools, or call_tool with name and arguments) and
/// prints one JSON result per step.
const PY_CLIENT: &str = include_str!("fixtures/mcp_client.py");

/// The same with the TypeScript SDK's Client and StdioClientTransport.
const TS_CLIENT: &str = include_str!("fixtures/mcp_client.mjs");

#[derive(Clone, Copy, Debug)]
enum Lang {
    Python,
    TypeScript,
}

/// Run a client that launches `writ mcp-proxy --name filesystem -- node
/// server.js ROOT` and performs `steps`; its results, one per step.
fn run_client(
    lang: Lang,
    srv: &Server,
    token: &str,
    root: &Path,
    extra_env: &[(&str, &str)],
    steps: &[Value],
) -> Vec<Value> {
    let mut env = json!({
        "WRIT_SERVER": srv.url,
        "WRIT_TOKEN": token,
        "PATH": std::env::var("PATH").unwrap_or_default(),
        "HOME": std::env::var("HOME").unwrap_or_default(),
    });
    for (k, v) in extra_env {
        env[*k] = json!(v);
    }
    let job = json!({
        "command": writ_bin(),
        "args": ["mcp-proxy", "--name", "filesystem", "--", "node", server_js(), root],
        "env": env,
        "steps": steps,
    });
    let mut cmd = match lang {
        Lang::Python => {
            let mut c = Command::new(python());
            c.args(["-c", PY_CLIENT]);
            c
        }
        Lang::TypeScript => {
            let script = node_prefix().join("writ-e2e-client.mjs");
            std::fs::write(&script, TS_CLIENT).unwrap();
            let mut c = Command::new("node");
            c.arg(script);
            c
        }
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the {lang:?} client: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the {lang:?} MCP client failed:\n{stderr}\nserver log:\n{}",
        srv.log()
    );
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{lang:?} client output is not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(v.len(), steps.len(), "{v:?}");
    v
}

fn list() -> Value {
    json!({"op": "list_tools"})
}

fn call(name: &str, arguments: Value) -> Value {
    json!({"op": "call", "name": name, "arguments": arguments})
}

/// Decision entries of the log about tool `tool`.
fn decisions(srv: &Server, tool: &str) -> Vec<Value> {
    let resource = format!("Tool::\"filesystem/{tool}\"");
    srv.log_entries()
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["type"] == "decision" && e["resource"] == resource)
        .collect()
}

/// The acceptance scenario, with either client, under the default bundle.
fn scenario(lang: Lang) {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    std::fs::write(root_path.join("hello.txt"), "hello from the tool\n").unwrap();
    let target = root_path.join("created.txt");
    let out = run_client(
        lang,
        &srv,
        &agent,
        &root_path,
        &[],
        &[
            list(),
            call(
                "read_text_file",
                json!({"path": root_path.join("hello.txt")}),
            ),
            call(
                "write_file",
                json!({"path": target, "content": "should never be written"}),
            ),
        ],
    );
    // Listed: the read-only tools of the default bundle, not write_file.
    let tools: Vec<String> = serde_json::from_value(out[0]["tools"].clone()).unwrap();
    assert!(tools.contains(&"read_text_file".to_owned()), "{tools:?}");
    assert!(tools.contains(&"list_directory".to_owned()), "{tools:?}");
    for hidden in ["write_file", "edit_file", "move_file", "create_directory"] {
        assert!(
            !tools.contains(&hidden.to_owned()),
            "{hidden} must be filtered out: {tools:?}"
        );
    }
    // The permitted read returns the file's content.
    assert_eq!(out[1]["isError"], false, "{:?}", out[1]);
    assert!(
        out[1]["text"]
            .as_str()
            .unwrap()
            .contains("hello from the tool"),
        "{:?}",
        out[1]
    );
    // The denied write is a tool error naming policy_denied; nothing written.
    assert_eq!(out[2]["isError"], true, "{:?}", out[2]);
    assert!(
        out[2]["text"]
            .as_str()
            .unwrap()
            .starts_with("denied: policy_denied: "),
        "{:?}",
        out[2]
    );
    assert!(!target.exists(), "the denied write reached the server");

    // The log holds both decisions (plus the tools/list probes, not started).
    let reads = decisions(&srv, "read_text_file");
    let writes = decisions(&srv, "write_file");
    assert!(
        reads.iter().any(|d| d["decision"] == "allow"
            && d["context"]["arguments"]["path"] == json!(root_path.join("hello.txt"))),
        "{reads:?}"
    );
    let denied: Vec<&Value> = writes
        .iter()
        .filter(|d| d["decision"] == "deny" && d["context"]["arguments"]["path"] == json!(target))
        .collect();
    assert_eq!(denied.len(), 1, "{writes:?}");
    assert_eq!(denied[0]["reason"], "policy_denied");
    assert_eq!(denied[0]["audience"], "mcp:filesystem");

    // Lineage: the session is the root, the read is its child, started and finished.
    let entries = srv.log_entries();
    let session = entries
        .iter()
        .map(|e| &e["entry"])
        .find(|e| {
            e["type"] == "decision"
                && e["action"] == "Action::\"mcp_session\""
                && e["decision"] == "allow"
        })
        .expect("a session decision");
    let sjti = session["jti"].as_str().unwrap();
    let call_jti = reads
        .iter()
        .find(|d| {
            d["decision"] == "allow" && !d["context"]["arguments"].as_object().unwrap().is_empty()
        })
        .unwrap()["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reads.iter().all(|d| d["parent"] == sjti), "{reads:?}");
    let lin = srv.cli(Some(&agent), &["lineage", sjti, "--json"]);
    lin.expect_code(0, "writ lineage SESSION");
    let tree = lin.json()["tree"].clone();
    assert_eq!(tree["action"], "Action::\"mcp_session\"");
    let child = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["jti"] == call_jti.as_str())
        .unwrap_or_else(|| panic!("the call is not a child of the session: {tree}"));
    assert_eq!(child["resource"], "Tool::\"filesystem/read_text_file\"");
    assert_eq!(child["depth"], 1);
    // The call's finish records the result's digest and isError = false.
    let fin = entries
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["type"] == "execution_finish" && e["jti"] == call_jti.as_str())
        .unwrap_or_else(|| panic!("no finish for {call_jti}"));
    assert_eq!(fin["exit_status"], 0, "{fin}");
    // The session's writ and the call's are bound to the proxy's own
    // holder key (one per run): their finishes above carried its proofs.
    let db = rusqlite::Connection::open(srv.db_path()).unwrap();
    let holders: Vec<Option<String>> = [sjti, call_jti.as_str()]
        .iter()
        .map(|j| {
            db.query_row("SELECT holder FROM writs WHERE jti = ?1", [j], |r| r.get(0))
                .unwrap()
        })
        .collect();
    assert!(
        holders[0].is_some() && holders[0] == holders[1],
        "{holders:?}"
    );
    assert!(
        fin["stdout_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{fin}"
    );
}

#[test]
fn python_client_through_the_proxy_filtered_list_permitted_read_denied_write() {
    scenario(Lang::Python);
}

#[test]
fn typescript_sdk_client_through_the_proxy_filtered_list_permitted_read_denied_write() {
    scenario(Lang::TypeScript);
}

/// The policies of the README: reads only under public/, writes only at
/// lineage depth 1 (a session at the top), plus sessions and the read tool.
fn argument_policies(public: &Path) -> String {
    format!(
        r#"@id("mcp-sessions")
permit (principal, action == Action::"mcp_session", resource);

@id("read-and-write")
permit (principal, action == Action::"call_tool", resource)
when {{ resource in [Tool::"filesystem/read_text_file", Tool::"filesystem/write_file"] }};

@id("read-public-only")
forbid (principal, action == Action::"call_tool", resource == Tool::"filesystem/read_text_file")
when {{ context.arguments has path &&
       (!(context.arguments.path like "{}/*") ||
        context.arguments.path like "*/../*" || context.arguments.path like "*/..") }};

@id("write-file-depth-1")
forbid (principal, action == Action::"call_tool", resource == Tool::"filesystem/write_file")
when {{ context.lineage.depth > 1 }};
"#,
        public.display()
    )
}

#[test]
fn argument_aware_policies_path_prefix_and_lineage_depth() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    let public = root_path.join("public");
    std::fs::create_dir_all(&public).unwrap();
    std::fs::write(public.join("a.txt"), "public text").unwrap();
    std::fs::write(root_path.join("secret.txt"), "secret text").unwrap();
    let exec_true = "\n@id(\"exec-true\")\npermit (principal, action == Action::\"exec\", resource == Command::\"/usr/bin/true\");\n";
    activate_policy(
        &srv,
        "mcp-args",
        &format!("{}{exec_true}", argument_policies(&public)),
    );

    // A session at the top: calls at depth 1.
    let top = root_path.join("top.txt");
    let out = run_client(
        Lang::Python,
        &srv,
        &agent,
        &root_path,
        &[],
        &[
            call("read_text_file", json!({"path": public.join("a.txt")})),
            call(
                "read_text_file",
                json!({"path": root_path.join("secret.txt")}),
            ),
            call(
                "write_file",
                json!({"path": top, "content": "from depth 1"}),
            ),
            // The prefix matches, the file is outside it: `..` is refused.
            call(
                "read_text_file",
                json!({"path": format!("{}/../secret.txt", public.display())}),
            ),
        ],
    );
    assert_eq!(out[0]["isError"], false, "{:?}", out[0]);
    assert!(out[0]["text"].as_str().unwrap().contains("public text"));
    for denied in [&out[1], &out[3]] {
        assert_eq!(denied["isError"], true, "{denied:?}");
        let t = denied["text"].as_str().unwrap();
        assert!(
            t.starts_with("denied: policy_denied: ") && t.contains("read-public-only"),
            "{t}"
        );
        assert!(!t.contains("secret text"));
    }
    assert_eq!(out[2]["isError"], false, "{:?}", out[2]);
    assert_eq!(std::fs::read_to_string(&top).unwrap(), "from depth 1");

    // The same proxy under a running parent execution: calls at depth 2.
    let mut req = exec_req(&["/usr/bin/true"], "exec@host-a");
    req["start"] = json!(true);
    let (parent, _, _) = srv.authorize_ok(&agent, &req);
    let deep = root_path.join("deep.txt");
    let out = run_client(
        Lang::Python,
        &srv,
        &agent,
        &root_path,
        &[("WRIT_PARENT", parent.as_str())],
        &[call(
            "write_file",
            json!({"path": deep, "content": "from depth 2"}),
        )],
    );
    assert_eq!(out[0]["isError"], true, "{:?}", out[0]);
    let t = out[0]["text"].as_str().unwrap();
    assert!(
        t.starts_with("denied: policy_denied: ") && t.contains("write-file-depth-1"),
        "{t}"
    );
    assert!(!deep.exists());
    let deep_decision = decisions(&srv, "write_file")
        .into_iter()
        .find(|d| d["context"]["arguments"]["path"] == json!(deep))
        .unwrap();
    assert_eq!(deep_decision["context"]["lineage"]["depth"], 2);
}

#[test]
fn mcp_schema_fragment_validates_argument_policies_and_fits_real_calls() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    let public = root_path.join("public");
    std::fs::create_dir_all(&public).unwrap();
    std::fs::write(public.join("a.txt"), "typed").unwrap();
    let bundle = root_path.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let schema = bundle.join("schema.cedarschema");
    let node = server_js();
    let out = run_writ(
        &[
            "policy",
            "mcp-schema",
            "--name",
            "filesystem",
            "--out",
            schema.to_str().unwrap(),
            "--",
            "node",
            node.to_str().unwrap(),
            root_path.to_str().unwrap(),
        ],
        &[],
        None,
    );
    out.expect_code(0, "writ policy mcp-schema");
    let text = std::fs::read_to_string(&schema).unwrap();
    assert!(text.contains("type read_text_fileInput"), "{text}");
    assert!(text.contains("type write_fileInput"), "{text}");
    assert!(text.contains("\"path\"?: String"), "{text}");
    assert!(text.contains("action \"call_tool\""), "{text}");

    // Argument-aware policies validate against it ...
    std::fs::write(bundle.join("mcp.cedar"), argument_policies(&public)).unwrap();
    let check = run_writ(
        &["policy", "check", bundle.to_str().unwrap(), "--json"],
        &[],
        None,
    );
    check.expect_code(
        0,
        "the argument policies validate against the generated schema",
    );
    assert_eq!(check.json()["schema"], true);
    // ... and a typo in an argument name does not.
    let typo = root_path.join("typo");
    std::fs::create_dir_all(&typo).unwrap();
    std::fs::copy(&schema, typo.join("schema.cedarschema")).unwrap();
    std::fs::write(
        typo.join("p.cedar"),
        "permit (principal, action == Action::\"call_tool\", resource) when { context.arguments has path && context.arguments.pth like \"/x/*\" };",
    )
    .unwrap();
    let bad = run_writ(&["policy", "check", typo.to_str().unwrap()], &[], None);
    assert_ne!(
        bad.code, 0,
        "a policy naming an undeclared argument must be refused: {bad:#?}"
    );

    // Activated, the schema-typed bundle decides real calls through the proxy.
    let act = srv.cli(
        Some(&srv.admin_token),
        &["policy", "activate", bundle.to_str().unwrap()],
    );
    act.expect_code(0, "activate the schema-typed bundle");
    let out = run_client(
        Lang::Python,
        &srv,
        &agent,
        &root_path,
        &[],
        &[
            list(),
            call("read_text_file", json!({"path": public.join("a.txt")})),
            call("read_text_file", json!({"path": schema})),
        ],
    );
    let tools: Vec<String> = serde_json::from_value(out[0]["tools"].clone()).unwrap();
    assert_eq!(
        tools,
        vec!["read_text_file".to_owned(), "write_file".to_owned()]
    );
    assert_eq!(out[1]["isError"], false, "{:?}", out[1]);
    assert!(out[1]["text"].as_str().unwrap().contains("typed"));
    assert_eq!(out[2]["isError"], true, "{:?}", out[2]);
    assert!(
        out[2]["text"]
            .as_str()
            .unwrap()
            .contains("read-public-only"),
        "{:?}",
        out[2]
    );
}

#[test]
fn authority_unreachable_denies_calls_with_authority_unavailable() {
    a_call_after_the_authority_is_cut_off(SIGKILL);
}

/// A stopped authority accepts the connection and never answers: the call
/// is denied all the same once the proxy's answer limit (5 s) passes.
#[test]
fn a_hung_authority_denies_calls_with_authority_unavailable() {
    a_call_after_the_authority_is_cut_off(SIGSTOP);
}

const SIGKILL: i32 = 9;
const SIGSTOP: i32 = 19;

/// A Python MCP client's first call comes after the authority got `signal`
/// (its number): it must be a tool error naming `authority_unavailable`.
fn a_call_after_the_authority_is_cut_off(signal: i32) {
    let mut srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    std::fs::write(root_path.join("x.txt"), "x").unwrap();
    // A client whose first call comes after the authority died.
    let script = include_str!("fixtures/mcp_cut_off_client.py");
    let job = json!({
        "command": writ_bin(),
        "args": ["mcp-proxy", "--name", "filesystem", "--unreachable-grace", "1", "--", "node", server_js(), root_path],
        "env": {"WRIT_SERVER": srv.url, "WRIT_TOKEN": agent, "PATH": std::env::var("PATH").unwrap_or_default()},
        "authority_pid": srv.pid(),
        "signal": signal,
        "path": root_path.join("x.txt"),
    });
    let out = run_script(&python(), script, &job);
    srv.kill_hard();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["isError"], true, "{v}");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .starts_with("denied: authority_unavailable: "),
        "{v}"
    );
}

/// Whether `O_NONBLOCK` is set on the open file behind `fd` of this process.
fn nonblocking(fd: &impl std::os::fd::AsRawFd) -> bool {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .unwrap()
        .trim();
    u32::from_str_radix(flags, 8).unwrap() & 0o4000 != 0
}

#[test]
fn when_the_server_dies_the_pending_request_gets_an_error_and_the_proxy_exits_1() {
    use std::io::{BufRead as _, BufReader, Read as _};
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    // The client's pipes, with a second handle on the very ends the proxy
    // holds: the flags of those open files are what a shell sharing them
    // would see after the proxy.
    let (stdin_r, mut stdin) = std::io::pipe().unwrap();
    let (stdout_r, stdout_w) = std::io::pipe().unwrap();
    let (stdin_seen, stdout_seen) = (stdin_r.try_clone().unwrap(), stdout_w.try_clone().unwrap());
    // A "server" that reads one request and exits without answering.
    let mut child = Command::new(writ_bin())
        .args([
            "mcp-proxy",
            "--name",
            "dying",
            "--",
            "sh",
            "-c",
            "head -n 1 >/dev/null; exit 3",
        ])
        .env("WRIT_SERVER", &srv.url)
        .env("WRIT_TOKEN", &agent)
        .stdin(stdin_r)
        .stdout(stdout_w)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}\n")
        .unwrap();
    // Read on threads: this test holds a write end of the proxy's stdout, so
    // that pipe never ends, and stderr must drain while the proxy runs.
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout_r).read_line(&mut line);
        let _ = line_tx.send(line);
    });
    let mut proxy_stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = proxy_stderr.read_to_string(&mut s);
        s
    });
    let line = line_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the proxy answered nothing within 60 s");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(v["id"], 1, "{v}");
    assert_eq!(v["error"]["code"], -32000, "{v}");
    drop(stdin);
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the MCP server exited (status 3)"),
        "{stderr}"
    );
    assert!(
        !nonblocking(&stdin_seen) && !nonblocking(&stdout_seen),
        "the proxy left its standard input or output non-blocking"
    );
}

/// The pids of the children of process `pid` (any of its threads').
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let f = t.unwrap().path().join("children");
        let text = std::fs::read_to_string(f).unwrap_or_default();
        out.extend(text.split_whitespace().map(|p| p.parse::<u32>().unwrap()));
    }
    out
}

/// Whether `pid` is gone or a zombie.
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[test]
fn sigterm_ends_the_session_in_order_records_why_and_stops_the_server() {
    use std::io::{BufRead as _, BufReader, Read as _};
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    // The client's input stays open: only the signal ends the session.
    let (stdin_r, mut stdin) = std::io::pipe().unwrap();
    let stdin_seen = stdin_r.try_clone().unwrap();
    let mut child = Command::new(writ_bin())
        .args(["mcp-proxy", "--name", "filesystem", "--", "node"])
        .arg(server_js())
        .arg(&root_path)
        .env("WRIT_SERVER", &srv.url)
        .env("WRIT_TOKEN", &agent)
        .stdin(stdin_r)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}\n")
        .unwrap();
    let proxy_stdout = child.stdout.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(proxy_stdout).read_line(&mut line);
        let _ = line_tx.send(line);
    });
    let mut proxy_stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = proxy_stderr.read_to_string(&mut s);
        s
    });
    let line = line_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the proxy answered nothing within 60 s");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(v["id"], 1, "{v}");
    assert!(v["result"]["serverInfo"].is_object(), "{v}");
    let servers = children_of(child.id());
    assert_eq!(servers.len(), 1, "the proxy's children: {servers:?}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy still runs 30 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let stderr = stderr.join().unwrap();
    assert_eq!(status.code(), Some(143), "{status:?}: {stderr}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
    assert!(
        !nonblocking(&stdin_seen),
        "the proxy left its standard input non-blocking"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !dead(servers[0]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the MCP server {} outlived the proxy by 10 s",
            servers[0]
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The session is finished in the log, with the signal as its reason.
    let jti = stderr
        .split("writ mcp-proxy: session ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no session line: {stderr}"));
    let finish = srv
        .log_entries()
        .into_iter()
        .find(|e| e["entry"]["type"] == "execution_finish" && e["entry"]["jti"] == jti)
        .unwrap_or_else(|| panic!("no finish of the session {jti}"));
    assert_eq!(
        finish["entry"]["terminated"], "writ mcp-proxy received SIGTERM",
        "{finish}"
    );
}

/// A tool call the proxy cannot decide as the server would read it (sent as
/// a notification, with duplicate keys, or hidden behind carriage returns in
/// another message) never reaches the server: here a
/// "server" that writes down every line it gets sees only the notification
/// sent after them.
#[test]
fn smuggled_tool_calls_never_reach_the_server() {
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"planner\"");
    let tmp = tempfile::tempdir().unwrap();
    let seen = tmp.path().join("seen");
    let mut child = Command::new(writ_bin())
        .args(["mcp-proxy", "--name", "filesystem", "--", "sh", "-c"])
        .arg(format!("cat > {}", seen.display()))
        .env("WRIT_SERVER", &srv.url)
        .env("WRIT_TOKEN", &agent)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in [
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"write_file","arguments":{"path":"/tmp/x","content":"x"}}}"#,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"/tmp/x"},"name":"write_file"}}"#,
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/tmp/x","path":"/tmp/y","content":"x"}}}"#,
        // A ping that Python's and Node's line readers split at each `\r`
        // into three lines, the middle one a call.
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\r{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"write_file\",\"arguments\":{\"path\":\"/tmp/x\",\"content\":\"x\"}}}\r}",
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    ] {
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
    drop(stdin);
    let out = wait_with_limit(child, std::time::Duration::from_secs(60));
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n"
    );
    // Each refusal is a JSON-RPC error.
    let answers: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 4, "{answers:?}");
    for (a, id) in answers
        .iter()
        .zip([Value::Null, json!(5), json!(6), json!(1)])
    {
        assert_eq!(
            (&a["id"], &a["error"]["code"]),
            (&id, &json!(-32600)),
            "{a}"
        );
    }
    // Nothing was decided: no call_tool decision is in the log.
    assert!(
        decisions(&srv, "write_file").is_empty() && decisions(&srv, "read_text_file").is_empty()
    );
}

/// `child`'s output once it exits, or a panic after `limit`.
fn wait_with_limit(child: std::process::Child, limit: std::time::Duration) -> std::process::Output {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("the proxy did not exit within {limit:?}"))
        .unwrap()
}
