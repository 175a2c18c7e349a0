//! `writ`: the enforcement points (`writ exec`, `writ mcp-proxy`) run here,
//! in a binary without Cedar, the store or the server, because a governed
//! run pays for starting this process before its program starts
//! (ARCHITECTURE.md, "Two binaries"). Every other line goes to `writ-full`,
//! the whole command line, which `cargo build` puts beside this one.
//!
//! The allocator is the system's: mimalloc, which the authority's decisions
//! gain from, costs a short-lived runner more first-touch page faults than
//! it saves.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    if let Some(code) = writ_gate::try_main() {
        return code;
    }
    let full = match std::env::current_exe() {
        Ok(me) => me.with_file_name("writ-full"),
        Err(e) => {
            eprintln!(
                "error: cannot find this program's own path (to run writ-full beside it): {e}"
            );
            return ExitCode::from(1);
        }
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "writ".into());
    // Only returns on failure.
    let e = Command::new(&full).arg0(arg0).args(args).exec();
    eprintln!(
        "error: cannot run {}: {e}; it holds every writ command but exec and mcp-proxy \
         (`cargo build --release` builds it beside writ)",
        full.display()
    );
    ExitCode::from(1)
}
