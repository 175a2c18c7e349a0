//! `writ`: the enforcement points (`writ exec`, `writ mcp-proxy`) run here,
//! in a binary without Cedar, the store or the server, because a governed
//! run pays for starting this process before its program starts
//! (ARCHITECTURE.md, "Two binaries"). Every other line goes to `writ-full`,
//! the whole command line, which `cargo build` puts beside this one.
//!
//! The allocator is the system's: mimalloc, which the authority's decisions
//! gain from, costs a short-lived runner more first-touch page faults than
//! it saves.
//!
//! # Tuning (Two binaries and the allocator)
//!
//! Every governed run starts a `writ` process before its program. One binary
//! holding everything cost about 490 page faults at start: the dynamic loader
//! writing 545 KB of relocated pointers (`.data.rel.ro`: Cedar, SQLite, the
//! server, `EnvFilter`'s regular expressions) and mimalloc touching its first
//! pages, up to 16 us a fault on this VM. `writ` is the enforcement points
//! alone (96 KB of relocations, the system allocator): about 230 faults,
//! and `writ exec` added 1.7 ms less in the same window. Log filtering uses
//! tracing-subscriber's `Targets`, not `EnvFilter`, whose regular expressions
//! were 200 KB of the relocations.
//!
//! `writ-full` uses mimalloc v2 with transparent huge pages off (`Cargo.toml`
//! features `no_thp`, `v2`): it cut a governed decision's CPU by about a fifth
//! against glibc's malloc. v3 with huge pages added up to 0.5 ms to every
//! process start. A `writ` built with mimalloc was slower per run. Not taken:
//! a non-PIE binary (no relocations, but no ASLR for the enforcement point),
//! fat LTO and packed relative relocations (no difference measured).

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
