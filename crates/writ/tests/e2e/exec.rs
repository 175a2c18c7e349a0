//! `writ exec` with real processes against a real server: exit status and
//! output passed through, denials before anything starts, the writ bound to
//! the exact argv and the measured file, single use, revocation, and the
//! scope enforced by the kernel (Landlock).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use crate::common::*;

/// Allow every command (the default bundle allows a few harmless ones).
fn permissive(srv: &Server) {
    let dir = srv.tmp.path().join("exec-policy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("policy.cedar"),
        "@id(\"exec-anything\")\npermit (principal, action == Action::\"exec\", resource);\n\
         @id(\"exec-no-network\")\nforbid (principal, action == Action::\"exec\", resource) when { context.scope.net };\n",
    )
    .unwrap();
    srv.cli(
        Some(&srv.admin_token),
        &["policy", "activate", dir.to_str().unwrap()],
    )
    .expect_code(0, "activating the test policy");
}

fn exec(srv: &Server, cwd: &Path, args: &[&str]) -> CliOut {
    let mut all = vec!["exec"];
    all.extend_from_slice(args);
    run_writ(
        &all,
        &[
            ("WRIT_SERVER", srv.url.as_str()),
            ("WRIT_TOKEN", srv.admin_token.as_str()),
        ],
        Some(cwd),
    )
}

#[test]
fn an_allowed_run_passes_output_and_exit_status_through_and_is_logged() {
    let srv = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let out = exec(&srv, tmp.path(), &["--", "/bin/echo", "hello", "world"]);
    out.expect_code(0, "echo under the default policy");
    assert_eq!(out.stdout, "hello world\n");
    permissive(&srv);
    let out = exec(
        &srv,
        tmp.path(),
        &["--", "sh", "-c", "echo out; echo err >&2; exit 7"],
    );
    out.expect_code(7, "the program's own status");
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\n", "err\n")
    );
    // Start and finish are in the log, with the exit status.
    let entries = srv.log_entries();
    let finish = entries
        .iter()
        .rev()
        .find(|e| e["entry"]["type"] == "execution_finish")
        .expect("a finish entry");
    assert_eq!(finish["entry"]["exit_status"], 7, "{finish}");
    assert!(entries
        .iter()
        .any(|e| e["entry"]["type"] == "execution_start"
            && e["entry"]["jti"] == finish["entry"]["jti"]));
}

/// A program allowed and started but that the kernel will not execute (its
/// interpreter is missing): denied as `integrity_failure`, as JSON with
/// `--json` (the program never had standard output), and its finish says
/// it never started.
#[test]
fn a_program_that_cannot_be_executed_is_denied_and_recorded() {
    let srv = Server::start();
    activate_policy(
        &srv,
        "all",
        "permit (principal, action == Action::\"exec\", resource);\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let tool = tmp.path().join("tool");
    std::fs::write(&tool, "#!/nonexistent/interpreter\necho ran\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = exec(&srv, tmp.path(), &["--json", "--", tool.to_str().unwrap()]);
    out.expect_denied("integrity_failure", "a missing interpreter");
    let v = out.json();
    assert_eq!(
        (v["decision"].as_str(), v["reason"].as_str()),
        (Some("deny"), Some("integrity_failure")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("cannot execute"),
        "{v}"
    );
    let finish = srv
        .log_entries()
        .into_iter()
        .rev()
        .find(|e| e["entry"]["type"] == "execution_finish")
        .expect("a finish entry");
    assert!(
        finish["entry"]["terminated"]
            .as_str()
            .is_some_and(|t| t.starts_with("not started")),
        "{finish}"
    );
}

#[test]
fn a_denied_command_never_starts() {
    let srv = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("ran");
    let tool = tmp.path().join("tool");
    script(&tool, &format!("touch {}", marker.display()));
    let out = exec(&srv, tmp.path(), &["--", tool.to_str().unwrap()]);
    out.expect_denied(
        "policy_denied",
        "a command the default policy does not permit",
    );
    assert!(!marker.exists(), "the denied program ran");
    // With --json the denial is on standard output as JSON too.
    let out = exec(&srv, tmp.path(), &["--json", "--", tool.to_str().unwrap()]);
    out.expect_denied("policy_denied", "the same, with --json");
    let v = out.json();
    assert_eq!(
        (v["decision"].as_str(), v["reason"].as_str()),
        (Some("deny"), Some("policy_denied")),
        "{v}"
    );
    assert!(!marker.exists(), "the denied program ran");
    // --authorize-only --json: the authority's answer, as `writ authorize --json`.
    let out = exec(
        &srv,
        tmp.path(),
        &["--json", "--authorize-only", "--", "/usr/bin/true"],
    );
    out.expect_code(0, "--authorize-only --json");
    let v = out.json();
    assert_eq!(v["decision"], "allow", "{v}");
    let writ = v["writ"].as_str().unwrap();
    assert_eq!(claims_of(writ)["jti"], v["jti"], "{v}");
    assert!(v["log_index"].is_u64() && v["exp"].is_u64(), "{v}");
    // No authority to ask: denied (authority_unavailable), never started.
    let out = run_writ(
        &["exec", "--", tool.to_str().unwrap()],
        &[
            ("WRIT_SERVER", "http://127.0.0.1:9"),
            ("WRIT_TOKEN", srv.admin_token.as_str()),
        ],
        Some(tmp.path()),
    );
    out.expect_denied("authority_unavailable", "an unreachable authority");
    assert!(!marker.exists(), "the program ran without an authority");
}

/// `--system-read` widens what the kernel lets the program read: the writ
/// binds it (a writ obtained without it does not run with it) and the
/// decision shows it to the policy.
#[test]
fn system_read_trees_are_bound_by_the_writ_and_seen_by_the_policy() {
    let srv = Server::start();
    permissive(&srv);
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret.txt");
    std::fs::write(&secret, "TOPSECRET").unwrap();
    let s = secret.to_str().unwrap();
    let out = exec(
        &srv,
        tmp.path(),
        &["--authorize-only", "--", "/usr/bin/cat", s],
    );
    out.expect_code(0, "writ exec --authorize-only");
    let w = tmp.path().join("w.jws");
    std::fs::write(&w, out.stdout.trim()).unwrap();
    let widened = exec(
        &srv,
        tmp.path(),
        &[
            "--writ",
            w.to_str().unwrap(),
            "--system-read",
            "/",
            "--",
            "/usr/bin/cat",
            s,
        ],
    );
    widened.expect_denied(
        "environment_mismatch",
        "--system-read added after authorization",
    );
    assert!(!widened.stdout.contains("TOPSECRET"), "{}", widened.stdout);
    // Asked for with it, the decision carries it.
    let out = exec(
        &srv,
        tmp.path(),
        &["--system-read", "/", "--", "/usr/bin/cat", s],
    );
    out.expect_code(0, "a writ asked for with --system-read /");
    let last = srv
        .log_entries()
        .into_iter()
        .rev()
        .find(|e| e["entry"]["type"] == "decision")
        .unwrap();
    assert_eq!(
        last["entry"]["context"]["environment"]["system_read"],
        serde_json::json!(["/"]),
        "{last}"
    );
}

/// The file `writ exec` hashed is the file it runs, but that file can be
/// written to in place (same inode) while the authority decides: such a run
/// is denied with environment_mismatch and never starts. The authority is
/// stopped for the rewrite, so the window is certain to be open.
#[test]
fn an_executable_rewritten_in_place_while_the_authority_decides_never_runs() {
    let srv = Server::start();
    permissive(&srv);
    let tmp = tempfile::tempdir().unwrap();
    let tool = tmp.path().join("tool");
    std::fs::copy("/usr/bin/true", &tool).unwrap();
    srv.signal("-STOP");
    let child = spawn_writ(
        &["exec", "--", tool.to_str().unwrap()],
        &[
            ("WRIT_SERVER", srv.url.as_str()),
            ("WRIT_TOKEN", srv.admin_token.as_str()),
        ],
        Some(tmp.path()),
    );
    // The runner hashes the file before it connects to the authority: once
    // its connection waits in the stopped server's accept queue, the hash
    // is taken and the runner waits for the decision.
    let port: u16 = srv.url.rsplit_once(':').unwrap().1.parse().unwrap();
    wait_for(
        "the runner's connection to the stopped server",
        std::time::Duration::from_secs(30),
        || queued_connections(port) > 0,
    );
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&tool).unwrap());
    std::fs::write(&tool, std::fs::read("/usr/bin/id").unwrap()).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&tool).unwrap()),
        ino,
        "rewritten in place"
    );
    srv.signal("-CONT");
    let out = wait_writ(child, std::time::Duration::from_secs(60));
    out.expect_denied("environment_mismatch", "the executable rewritten in place");
    assert!(
        !out.stdout.contains("uid="),
        "the rewritten file ran: {}",
        out.stdout
    );
    let finish = srv
        .log_entries()
        .into_iter()
        .rev()
        .find(|e| e["entry"]["type"] == "execution_finish")
        .expect("a finish entry");
    assert!(
        finish["entry"]["terminated"]
            .as_str()
            .is_some_and(|t| t.starts_with("not started") && t.contains("written to")),
        "{finish}"
    );
}

#[test]
fn the_writ_binds_argv_and_the_measured_file_and_is_single_use() {
    let srv = Server::start();
    permissive(&srv);
    let tmp = tempfile::tempdir().unwrap();
    let tool = tmp.path().join("tool");
    let marker = tmp.path().join("ran");
    script(&tool, &format!("echo v1 >> {}", marker.display()));
    let t = tool.to_str().unwrap();
    let obtain = |args: &[&str]| {
        let scratch = tmp.path().to_str().unwrap();
        let mut a = vec!["--authorize-only", "--write", scratch, "--"];
        a.extend_from_slice(args);
        let out = exec(&srv, tmp.path(), &a);
        out.expect_code(0, "writ exec --authorize-only");
        let f = tmp.path().join(format!("w{}", rand_suffix()));
        std::fs::write(&f, out.stdout.trim()).unwrap();
        f
    };
    // Runs once with its writ; the second use is a replay.
    let w = obtain(&[t]);
    exec(&srv, tmp.path(), &["--writ", w.to_str().unwrap(), "--", t]).expect_code(0, "first use");
    exec(&srv, tmp.path(), &["--writ", w.to_str().unwrap(), "--", t])
        .expect_denied("replayed", "second use of one writ");
    // Another argv than the one bound.
    let w = obtain(&[t]);
    exec(
        &srv,
        tmp.path(),
        &["--writ", w.to_str().unwrap(), "--", t, "extra"],
    )
    .expect_denied("request_mismatch", "an argument added after authorization");
    // The file replaced between authorization and execution.
    let w = obtain(&[t]);
    script(&tool, &format!("echo v2 >> {}", marker.display()));
    exec(&srv, tmp.path(), &["--writ", w.to_str().unwrap(), "--", t])
        .expect_denied("environment_mismatch", "the executable replaced");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "v1\n",
        "only the first run ran"
    );
    // A revoked writ does not start.
    let w = obtain(&[t]);
    let jti = claims_of(std::fs::read_to_string(&w).unwrap().trim())["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    srv.cli(Some(&srv.admin_token), &["revoke", "--jti", &jti])
        .expect_code(0, "writ revoke");
    exec(&srv, tmp.path(), &["--writ", w.to_str().unwrap(), "--", t])
        .expect_denied("revoked", "a revoked writ");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "v1\n");
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn the_kernel_confines_writes_and_network_to_the_scope() {
    let srv = Server::start();
    permissive(&srv);
    let tmp = tempfile::tempdir().unwrap();
    let inside = tmp.path().join("out");
    std::fs::create_dir(&inside).unwrap();
    let outside = tmp.path().join("outside");
    let out = exec(
        &srv,
        tmp.path(),
        &[
            "--write",
            inside.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &format!(
                "echo in > {}/a && echo wrote-inside; echo x > {} || echo refused-outside",
                inside.display(),
                outside.display()
            ),
        ],
    );
    out.expect_code(0, "a confined shell");
    assert_eq!(out.stdout, "wrote-inside\nrefused-outside\n", "{out:#?}");
    assert!(out.stderr.contains("Permission denied"), "{out:#?}");
    assert_eq!(std::fs::read_to_string(inside.join("a")).unwrap(), "in\n");
    assert!(!outside.exists(), "a write outside the scope went through");
    // A relative scope path is taken from the current directory, and the
    // writ binds it absolute and normal (no `..`, no trailing slash).
    let up = format!("../{}/", inside.file_name().unwrap().to_str().unwrap());
    let out = exec(
        &srv,
        &inside,
        &[
            "--write",
            ".",
            "--read",
            &up,
            "--",
            "sh",
            "-c",
            &format!(
                "echo rel > b && echo wrote-here; echo x > {} || echo refused-outside",
                outside.display()
            ),
        ],
    );
    out.expect_code(0, "--write .");
    assert_eq!(out.stdout, "wrote-here\nrefused-outside\n", "{out:#?}");
    assert_eq!(std::fs::read_to_string(inside.join("b")).unwrap(), "rel\n");
    assert!(!outside.exists(), "a write outside the scope went through");
    let last = srv
        .log_entries()
        .into_iter()
        .rev()
        .find(|e| e["entry"]["type"] == "decision")
        .unwrap();
    let write = last["entry"]["scope"]["write"].as_array().unwrap().clone();
    assert_eq!(write.len(), 1, "{last}");
    let bound = std::path::PathBuf::from(write[0].as_str().unwrap());
    assert!(bound.is_absolute(), "{last}");
    assert_eq!(
        bound.canonicalize().unwrap(),
        inside.canonicalize().unwrap(),
        "{last}"
    );
    assert_eq!(
        last["entry"]["scope"]["read"],
        serde_json::json!([inside.canonicalize().unwrap()]),
        "{last}"
    );
    // No --net: a TCP connect (to the writ server itself) is refused.
    let script_path = tmp.path().join("connect.py");
    std::fs::write(
        &script_path,
        format!(
            "import socket,sys\ntry:\n    socket.create_connection(('127.0.0.1', {}), timeout=5)\n    print('connected')\nexcept OSError as e:\n    print('refused', e.errno)\n",
            srv.addr.rsplit(':').next().unwrap()
        ),
    )
    .unwrap();
    let out = exec(
        &srv,
        tmp.path(),
        &[
            "--read",
            tmp.path().to_str().unwrap(),
            "--",
            "/usr/bin/python3",
            script_path.to_str().unwrap(),
        ],
    );
    out.expect_code(0, "python without --net");
    assert!(out.stdout.starts_with("refused"), "{out:#?}");
}

#[test]
fn a_policy_can_demand_full_enforcement() {
    let srv = Server::start();
    activate_policy(
        &srv,
        "full",
        "@id(\"exec-fully-enforced\")\n@enforcement(\"full\")\npermit (principal, action == Action::\"exec\", resource);\n",
    );
    let ask = |level: Option<&str>| {
        let mut req = exec_req(&["/usr/bin/true"], "exec@test");
        if let Some(l) = level {
            req["environment"] = serde_json::json!({"enforcement": l});
        }
        srv.authorize(&srv.admin_token, &req)
    };
    for level in [Some("partial"), Some("none"), None] {
        let r = ask(level);
        let v = r.json();
        assert_eq!(
            (r.status, v["reason"].as_str()),
            (403, Some("integrity_failure")),
            "{level:?}: {v}"
        );
        let m = v["message"].as_str().unwrap();
        assert!(
            m.contains("exec-fully-enforced") && m.contains("demands full"),
            "{m}"
        );
        assert!(v["log_index"].is_u64(), "the denial is logged: {v}");
    }
    assert_eq!(ask(Some("full")).status, 200);
    // This kernel (Landlock ABI >= 4) gives full enforcement: writ exec runs.
    let tmp = tempfile::tempdir().unwrap();
    exec(&srv, tmp.path(), &["--", "/usr/bin/true"]).expect_code(0, "fully enforced run");
    // A demand the runner cannot understand is refused with the bundle.
    let dir = srv.tmp.path().join("bad-level");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p.cedar"),
        "@enforcement(\"strong\")\npermit (principal, action, resource);\n",
    )
    .unwrap();
    let out = srv.cli(None, &["policy", "check", dir.to_str().unwrap()]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("@enforcement"), "{out:#?}");
}

/// The writ `writ exec` asks for is bound to a key only that runner holds:
/// a copy taken out of the run (the program has one, in WRIT_PARENT) is
/// refused by another runner, by the same command in the same place, and
/// by every verifier without a proof.
#[test]
fn a_writ_copied_out_of_a_run_is_useless_to_anyone_but_its_runner() {
    let srv = Server::start();
    permissive(&srv);
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tmp.path().to_str().unwrap();
    let stolen = tmp.path().join("stolen");
    let copy = format!("printf %s \"$WRIT_PARENT\" > {}", stolen.display());
    exec(
        &srv,
        tmp.path(),
        &["--write", scratch, "--", "sh", "-c", &copy],
    )
    .expect_code(0, "the run that leaks its writ");
    let writ = std::fs::read_to_string(&stolen).unwrap();
    let jkt = claims_of(&writ)["cnf"]["jkt"].as_str().unwrap().to_owned();
    assert_eq!(jkt.len(), 43, "an RFC 7638 thumbprint: {jkt}");
    let w = stolen.to_str().unwrap();
    exec(
        &srv,
        tmp.path(),
        &["--writ", w, "--write", scratch, "--", "sh", "-c", &copy],
    )
    .expect_denied("holder_mismatch", "the copied writ in another runner");
    let v = srv.verify(&serde_json::json!({"writ": writ}));
    assert_eq!(v["reason"], "holder_mismatch", "{v}");
    // The run itself was started, renewed if need be, and finished with
    // its proofs: the log has its finish.
    let jti = claims_of(&writ)["jti"].as_str().unwrap().to_owned();
    assert!(
        srv.log_entries()
            .iter()
            .any(|e| e["entry"]["type"] == "execution_finish" && e["entry"]["jti"] == jti.as_str()),
        "the holder's finish is recorded"
    );
}

/// A descriptor the runner inherited (a connection its caller opened to
/// the authority's Unix socket, named as the caller) never reaches the
/// program: only stdin, stdout and stderr do.
#[test]
fn a_program_inherits_no_descriptor_but_its_standard_three() {
    let srv = Server::start();
    permissive(&srv);
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "inherited\n").unwrap();
    // A binary, and a script (whose interpreter still reads the script
    // itself through the descriptor writ exec starts it from).
    let tool = tmp.path().join("tool.sh");
    script(&tool, "cat <&7 && echo read || echo closed");
    for program in [
        "sh -c 'cat <&7 && echo read || echo closed'".to_owned(),
        tool.display().to_string(),
    ] {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec 7<{}; exec \"$WRIT\" exec --read {} -- {program}",
                secret.display(),
                tmp.path().display()
            ))
            .env("WRIT", writ_bin())
            .env("WRIT_SERVER", &srv.url)
            .env("WRIT_TOKEN", &srv.admin_token)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.trim(), "closed", "{program}: {out:?}");
    }
}
