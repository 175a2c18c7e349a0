//! Shared helpers for the end-to-end tests: a real `writ serve` child process
//! on a fresh data dir (`server`), a tiny blocking HTTP/1.1 client (`http`),
//! a way to run the CLI against that server (`cli`), writs taken apart and
//! forged (`writs`), Python venvs for the interop tests (`python`) and test
//! certificates (`pki`).
//!
//! Each module of the e2e binary uses only part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod http;
pub mod pki;
mod python;
mod server;
mod writs;

pub use cli::*;
pub use http::*;
pub use python::*;
pub use server::*;
pub use writs::*;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Write an executable `#!/bin/sh` script.
pub fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// The `writ` binary under test, resolved, and its directory: what a
/// governed program that runs `writ` itself must be allowed to read.
pub fn writ_bin_and_dir() -> (PathBuf, String) {
    let bin: PathBuf = Path::new(writ_bin()).canonicalize().unwrap();
    let dir = bin.parent().unwrap().to_str().unwrap().to_owned();
    (bin, dir)
}

/// Poll `f` every 20 ms until it holds; fail the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connections waiting in the accept queue of the TCP listener on `port`
/// (loopback, IPv4 or IPv6), from `/proc/net/tcp*`: a stopped server's
/// clients queue there.
pub fn queued_connections(port: u16) -> u64 {
    let port = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local address, state 0A (LISTEN), then tx_queue:rx_queue,
            // which for a listener is its accept backlog.
            (f.get(1)?.ends_with(&port) && *f.get(3)? == "0A")
                .then(|| u64::from_str_radix(f.get(4)?.split_once(':')?.1, 16).ok())?
        })
        .sum()
}

/// The `writ` binary under test.
pub fn writ_bin() -> &'static str {
    env!("CARGO_BIN_EXE_writ")
}

/// The workspace's `target/`, where the tests keep what they install
/// (Python venvs, npm packages) between runs.
pub fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// Serializes the npm installs of the e2e tests (the console's
/// playwright-core, the MCP servers and SDK): they share npm's cache.
pub static NPM: std::sync::Mutex<()> = std::sync::Mutex::new(());
