//! Python venvs for the interop tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether `WRIT_SKIP_PY` asks to skip the Python interop tests (saying so).
pub fn skip_python(what: &str) -> bool {
    if std::env::var_os("WRIT_SKIP_PY").is_some() {
        eprintln!("WRIT_SKIP_PY is set: skipping {what}");
        return true;
    }
    false
}

/// Serializes venv creation between the tests (they share pip's cache).
static PYENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `target/<venv>/bin/python`, in which the Python snippet `ready` succeeds;
/// when it does not, the venv is made and `pip install <requirement>` run. A
/// failed install fails the test (set `WRIT_SKIP_PY=1` to skip instead).
pub fn python_venv(venv: &str, requirement: &str, ready: &str) -> PathBuf {
    let _guard = PYENV.lock().unwrap_or_else(|p| p.into_inner());
    let venv = super::target_dir().join(venv);
    let py = venv.join("bin/python");
    let is_ready = |py: &Path| {
        Command::new(py)
            .args(["-c", ready])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if is_ready(&py) {
        return py;
    }
    let st = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status();
    assert!(
        st.as_ref().is_ok_and(|s| s.success()),
        "python3 -m venv {} failed: {st:?} (set WRIT_SKIP_PY=1 to skip)",
        venv.display()
    );
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", requirement])
        .output();
    match &out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "pip install {requirement} into {} failed (set WRIT_SKIP_PY=1 to skip):\n{}\n{}",
            venv.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run pip for {requirement} (set WRIT_SKIP_PY=1 to skip): {e}"),
    }
    assert!(
        is_ready(&py),
        "{requirement} is still not importable from {}",
        py.display()
    );
    py
}

/// Run `py -c script` with `job` as JSON on its standard input, to the end.
pub fn run_script(py: &Path, script: &str, job: &serde_json::Value) -> std::process::Output {
    use std::io::Write as _;
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", py.display()));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(job.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("writing the job to {}: {e}", py.display()));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {}: {e}", py.display()))
}
