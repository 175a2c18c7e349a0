//! API fuzzing with schemathesis (PyPI), an independent property-based
//! tester, against the served `/openapi.json` of a real `writ serve`: no
//! response is a 5xx (other than a documented 503 fail-closed answer), every
//! status code is documented, and every body and content type matches the
//! document.
//!
//! Needs python3; a venv with schemathesis is made at
//! `target/pyenv-schemathesis` when missing. `WRIT_SKIP_PY=1` skips it.
//! `WRIT_SCHEMATHESIS_EXAMPLES` sets the examples per operation (CI: 25;
//! SECURITY.md records a longer run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use crate::common::*;

const SCHEMATHESIS: &str = "schemathesis==4.32.5";

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_mismatch() {
    if skip_python("the schemathesis API fuzzing test") {
        return;
    }
    let py = python_venv(
        "pyenv-schemathesis",
        SCHEMATHESIS,
        "import schemathesis, sys; sys.exit(schemathesis.__version__ != '4.32.5')",
    );
    let srv = Server::start();
    let agent = srv.add_principal("Agent::\"fuzzer\"");
    // A writ and a started execution, so path parameters can hit real ones
    // through the examples in the document as well as random ones.
    let (_, jti, _) = srv.authorize_ok(&agent, &exec_req(&["/usr/bin/true"], "exec@fuzz"));
    assert_eq!(srv.start_execution(&agent, &jti).status, 200);
    let examples = std::env::var("WRIT_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".into());
    let report = srv.tmp.path().join("junit.xml");
    let st = py.with_file_name("schemathesis");
    let mut runs = Vec::new();
    // Once as the administrator (every route reachable) and once as a plain
    // principal (the 403 answers).
    for (who, token) in [("admin", srv.admin_token.clone()), ("principal", agent)] {
        let out = Command::new(&st)
            .arg("run")
            .arg(format!("{}/openapi.json", srv.url))
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--header",
                &format!("Authorization: Bearer {token}"),
                "--max-examples",
                &examples,
                "--seed",
                "8",
                "--workers",
                "1",
                "--request-timeout",
                "20",
                // Event streams that stay open, and the console's demo,
                // which plays a whole scenario per call.
                "--exclude-path",
                "/v1/revocations/stream",
                "--exclude-path",
                "/console/api/stream",
                "--exclude-path",
                "/console/api/demo",
                "--generation-database",
                "none",
                "--no-color",
                "--report",
                "junit",
                "--report-junit-path",
            ])
            .arg(&report)
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("schemathesis as {who}:\n{stdout}\n{stderr}");
        assert!(
            out.status.success(),
            "schemathesis as {who} found problems (exit {:?}); the server's log:\n{}",
            out.status.code(),
            srv.log()
        );
        // The summary names how many cases ran; a run of none tests nothing.
        let cases = test_cases(&stdout)
            .unwrap_or_else(|| panic!("no test-case count in schemathesis' summary:\n{stdout}"));
        assert!(cases >= 100, "only {cases} test cases as {who}");
        runs.push((who, cases));
    }
    eprintln!("schemathesis test cases: {runs:?}");
    assert!(
        srv.get("/healthz", None).status == 200,
        "the server is still up"
    );
}

/// `N` of the summary line "Test cases: N generated, ...".
fn test_cases(stdout: &str) -> Option<u64> {
    let mut lines = stdout.lines();
    while let Some(l) = lines.next() {
        if let Some(rest) = l.trim().strip_prefix("Test cases:") {
            let rest = if rest.trim().is_empty() {
                lines.next()?.trim().to_owned()
            } else {
                rest.trim().to_owned()
            };
            return rest.split_whitespace().next()?.parse().ok();
        }
    }
    None
}
