//! The CLI under test, run to completion or in the background.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use writ_artifact::ReasonCode;

use super::writ_bin;

/// Output of one CLI run.
#[derive(Debug)]
pub struct CliOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOut {
    /// Panics with the full output unless the command exited with `code`.
    pub fn expect_code(&self, code: i32, what: &str) -> &CliOut {
        assert_eq!(
            self.code, code,
            "{what}: expected exit status {code}\n{self:#?}"
        );
        self
    }

    /// Parse standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self:#?}"))
    }

    /// Assert a CLI denial: the exit status of `code` and `denied: <code>` first on stderr.
    pub fn expect_denied(&self, code: &str, what: &str) {
        let rc = ReasonCode::parse(code).unwrap_or_else(|| panic!("{code} is not a reason code"));
        assert_eq!(
            self.code,
            i32::from(rc.exit_status()),
            "{what}: expected exit status of {code}\n{self:#?}"
        );
        assert!(
            self.stderr.starts_with(&format!("denied: {code}: ")),
            "{what}: stderr must start with `denied: {code}: `\n{self:#?}"
        );
    }
}

/// The writ binary, without the writ variables of the test process itself.
pub(super) fn writ_command() -> Command {
    let mut cmd = Command::new(writ_bin());
    for v in [
        "WRIT_SERVER",
        "WRIT_TOKEN",
        "WRIT_DIR",
        "WRIT_PARENT",
        "WRIT_LISTEN",
        "WRIT_LOG",
    ] {
        cmd.env_remove(v);
    }
    cmd
}

/// Run `writ ARGS` with exactly the given extra environment (the writ
/// variables of the test process itself are removed first).
pub fn run_writ(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> CliOut {
    let mut cmd = writ_command();
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", writ_bin()));
    CliOut {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Start `writ ARGS` in the background (same environment rules as
/// [`run_writ`]), its output captured.
pub fn spawn_writ(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> Child {
    let mut cmd = writ_command();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", writ_bin()))
}

/// Wait for a child started by [`spawn_writ`], at most `limit`.
pub fn wait_writ(mut child: Child, limit: Duration) -> CliOut {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "writ did not exit within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    CliOut {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `writ --dir D init --json` on a fresh directory; returns its JSON answer.
pub fn init_dir(dir: &Path) -> Value {
    let out = run_writ(
        &["--dir", dir.to_str().unwrap(), "init", "--json"],
        &[],
        None,
    );
    out.expect_code(0, "writ init");
    let v = out.json();
    assert!(
        v["admin_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("writ_")),
        "no admin token: {v}"
    );
    v
}
