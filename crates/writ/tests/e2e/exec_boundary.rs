//! What a governed program must not be able to do from inside its run, with
//! real processes and a real pseudo-terminal: type into the caller's
//! terminal (TIOCSTI), outlive or kill its runner, or run at all where the
//! kernel cannot confine it (unless the caller says so, on the record).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

const ALLOW_ALL: &str =
    "@id(\"exec-anything\")\npermit (principal, action == Action::\"exec\", resource);\n";

/// Runs in a fresh pseudo-terminal (it is the session's controlling
/// terminal, as a user's shell has): `writ exec` of a program that pushes
/// `echo INJECTED` into the terminal's input queue with TIOCSTI (with the
/// plain request and with high bits set, which the kernel ignores), then
/// reads what is waiting in the queue, as the caller's shell would next.
/// With `--bare`, the same program runs without writ (the baseline that
/// shows the attack works on this host).
const PTY_HARNESS: &str = include_str!("fixtures/exec_boundary_pty_harness.py");

fn in_a_terminal(srv: &Server, mode: &str) -> (Value, String) {
    let out = Command::new("python3")
        .args([
            "-c",
            PTY_HARNESS,
            writ_bin(),
            &srv.url,
            &srv.admin_token,
            mode,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "no result from the terminal: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (serde_json::from_str(line).unwrap(), text)
}

/// A governed program with the caller's terminal on its standard input
/// pushed a command into the caller's shell with TIOCSTI, to run after the
/// governed run, ungoverned (Landlock does not cover an inherited
/// descriptor). The kernel now refuses the ioctl (EPERM) to the program
/// and everything it starts: nothing reaches the terminal's input.
#[test]
fn a_governed_program_cannot_type_into_the_callers_terminal() {
    let srv = Server::start();
    activate_policy(&srv, "all", ALLOW_ALL);
    let legacy = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").unwrap_or_default();
    if legacy.trim() == "1" {
        // The baseline: on this host the attack works outside writ.
        let (bare, text) = in_a_terminal(&srv, "--bare");
        assert_eq!(bare["queued"], "echo INJECTED\n", "{text}");
    } else {
        eprintln!("dev.tty.legacy_tiocsti is {legacy:?}: the kernel refuses TIOCSTI itself; checking writ's refusal only");
    }
    let (governed, text) = in_a_terminal(&srv, "--governed");
    assert_eq!(governed["rc"], 0, "{text}\n{}", srv.log());
    assert_eq!(
        governed["queued"], "",
        "the program typed into the terminal: {text}"
    );
    assert!(
        text.contains("ERRNOS [1, 1]"),
        "both requests must fail with EPERM: {text}"
    );
    assert!(!text.contains("INJECTED\r\n"), "{text}");
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                .flat_map(|s| {
                    s.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

/// Run as a governed program: tries signal 0 on every thread of its parent
/// (the runner), reads each thread's environ, and tries to clear its own
/// parent-death signal; writes what worked to OUT.
const PROBE_RUNNER: &str = include_str!("fixtures/exec_boundary_probe_runner.py");

/// A runner killed with SIGKILL left its program running, no longer
/// renewed or watched. The kernel now kills the program with it (the
/// parent-death signal the program asks for before it executes), and the
/// program cannot kill its runner first (Landlock's signal scope).
#[test]
fn a_program_dies_with_its_killed_runner_and_cannot_kill_it() {
    let srv = Server::start();
    activate_policy(&srv, "all", ALLOW_ALL);
    let tmp = tempfile::tempdir().unwrap();
    let env = [
        ("WRIT_SERVER", srv.url.as_str()),
        ("WRIT_TOKEN", srv.admin_token.as_str()),
    ];
    let mut runner = spawn_writ(
        &["exec", "--lifetime", "600", "--", "/usr/bin/sleep", "600"],
        &env,
        Some(tmp.path()),
    );
    let rpid = runner.id();
    let mut program = 0;
    wait_for("the program to start", Duration::from_secs(30), || {
        program = children(rpid).first().copied().unwrap_or(0);
        program != 0
            && std::fs::read(format!("/proc/{program}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"/usr/bin/sleep\0"))
    });
    runner.kill().unwrap();
    runner.wait().unwrap();
    wait_for(
        "the program to die with its runner",
        Duration::from_secs(5),
        || !alive(program),
    );

    // Nor any thread of it (the one that started the program waits for it
    // and was in the program's Landlock domain before the program got a
    // layer of its own), nor read the runner's environment, where the
    // caller's token is: each thread is probed with signal 0 (tgkill) and
    // its /proc environ opened.
    let t = tmp.path().canonicalize().unwrap();
    // As an unprivileged user, as a governed program runs: a program run
    // as root reads a same-user process's /proc environ on this kernel even
    // without CAP_SYS_PTRACE (SECURITY.md, after the attack table).
    let probe = PROBE_RUNNER.replace("OUT", &t.join("probe.json").to_string_lossy());
    std::fs::set_permissions(&t, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let mut argv: Vec<&str> = Vec::new();
    if root {
        argv.extend([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]);
    }
    argv.extend([
        writ_bin(),
        "exec",
        "--write",
        t.to_str().unwrap(),
        "--",
        "/usr/bin/python3",
        "-c",
        &probe,
    ]);
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .env("WRIT_SERVER", &srv.url)
        .env("WRIT_TOKEN", &srv.admin_token)
        .env("HOME", &t)
        .current_dir(&t)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value =
        serde_json::from_str(&std::fs::read_to_string(t.join("probe.json")).unwrap()).unwrap();
    assert!(seen["threads"].as_u64().unwrap() >= 2, "{seen}");
    assert_eq!(
        (
            &seen["signalled"],
            &seen["environ"],
            &seen["pdeathsig_cleared"]
        ),
        (&json!(0), &json!(0), &json!(false)),
        "{seen}"
    );

    // The program cannot kill its runner: kill fails (EPERM), the runner
    // records the run.
    let out = run_writ(
        &[
            "exec",
            "--write",
            t.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            &format!(
                "kill -9 $PPID 2> {}/kill.err; echo $? > {}/kill.rc",
                t.display(),
                t.display()
            ),
        ],
        &env,
        Some(&t),
    );
    out.expect_code(0, "a program that tries to kill its runner");
    assert_ne!(
        std::fs::read_to_string(t.join("kill.rc")).unwrap().trim(),
        "0"
    );
    let err = std::fs::read_to_string(t.join("kill.err")).unwrap();
    assert!(err.contains("not permitted"), "{err}");
}

/// A C program that makes Landlock's system calls fail with ENOSYS, then
/// executes its arguments: the kernel as an older one, or one with Landlock
/// off, would be for what it runs.
const NO_LANDLOCK_C: &str = include_str!("fixtures/exec_boundary_no_landlock.c");

fn no_landlock_helper(dir: &Path) -> PathBuf {
    let src = dir.join("no_landlock.c");
    let bin = dir.join("no_landlock");
    std::fs::write(&src, NO_LANDLOCK_C).unwrap();
    let st = Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("gcc is needed for this test: {e}"));
    assert!(st.success(), "gcc failed");
    bin
}

/// Where the kernel could not confine the program, it ran anyway with
/// whatever the kernel gave, recorded but not refused. Without the scope
/// enforced in full nothing runs now, unless the caller says
/// `--allow-partial-enforcement`, which the writ binds and the policy sees.
#[test]
fn no_confinement_means_no_run_unless_the_caller_accepts_it_on_the_record() {
    let srv = Server::start();
    activate_policy(&srv, "all", ALLOW_ALL);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().canonicalize().unwrap();
    let helper = no_landlock_helper(&t);
    let marker = t.join("ran");
    let argv = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            helper.to_str().unwrap().into(),
            writ_bin().into(),
            "exec".into(),
        ];
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v.extend(
            [
                "--write",
                t.to_str().unwrap(),
                "--",
                "/usr/bin/touch",
                marker.to_str().unwrap(),
            ]
            .map(String::from),
        );
        v
    };
    let run = |args: Vec<String>| {
        let out = Command::new(&args[0])
            .args(&args[1..])
            .env("WRIT_SERVER", &srv.url)
            .env("WRIT_TOKEN", &srv.admin_token)
            .current_dir(&t)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let decisions = || {
        srv.log_entries()
            .iter()
            .filter(|e| e["entry"]["type"] == "decision")
            .count()
    };
    let before = decisions();
    let (code, err) = run(argv(&[]));
    assert_eq!(code, 26, "{err}");
    assert!(
        err.starts_with("denied: integrity_failure: full enforcement is required"),
        "{err}"
    );
    assert!(!marker.exists(), "the program ran without confinement");
    assert_eq!(decisions(), before, "nothing was asked");

    let (code, err) = run(argv(&["--allow-partial-enforcement"]));
    assert_eq!(code, 0, "{err}");
    assert!(marker.exists());
    let entries = srv.log_entries();
    let d = entries
        .iter()
        .map(|e| &e["entry"])
        .rfind(|e| e["type"] == "decision" && e["decision"] == "allow")
        .unwrap();
    let facts = &d["context"]["environment"];
    assert_eq!(
        (&facts["enforcement"], &facts["allow_partial_enforcement"]),
        (&json!("none"), &json!(true)),
        "{d}"
    );
    let finish = entries
        .iter()
        .map(|e| &e["entry"])
        .rfind(|e| e["type"] == "execution_finish")
        .unwrap();
    assert_eq!(finish["enforcement"], "none", "{finish}");
    // And a policy can refuse it.
    activate_policy(
        &srv,
        "no-partial",
        &format!("{ALLOW_ALL}@id(\"no-partial\")\nforbid (principal, action, resource) when {{ context.environment has allow_partial_enforcement }};\n"),
    );
    std::fs::remove_file(&marker).unwrap();
    let (code, err) = run(argv(&["--allow-partial-enforcement"]));
    assert_eq!(code, 10, "{err}");
    assert!(!marker.exists());
}
