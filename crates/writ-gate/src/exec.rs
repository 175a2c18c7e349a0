//! `writ exec`: ask for a writ for this exact command, verify it, spend its
//! nonce, run the very file that was measured under the granted scope, and
//! record how it ended.
//!
//! # Tuning (The runner)
//!
//! - exec lines are parsed by a parser of exec's arguments only
//!   (`GateCli`): clap's whole command tree cost 0.33 ms of every start.
//! - The Landlock ruleset of the scope asked for is built on the launch thread
//!   while the authority decides (`Launcher::prepare`); the launch uses it
//!   when the verified scope is equal.
//! - The launching thread waits for the program itself; no thread is started
//!   for the wait.
//! - The executable is hashed through a buffer sized to the file, not a
//!   zeroed 256 KiB one (48 fewer page faults per run).
//! - A run waits for one durable commit (the start with its decision). The
//!   finish is sent with `"durable": false` and answered once queued
//!   (docs/spec/api.md, "Finishing before the commit"): 13.3 / 14.1 ms
//!   added against 16.5 / 16.6 ms for the build before, alternated on
//!   2026-12-07 on a loaded machine (BENCHMARKS.md, `writ bench exec`).

mod args;
mod ending;
mod run;

pub(crate) use args::scope_path;
pub use args::{
    env_allow_name, EnvAllowError, ExecArgs, ScopeFlags, RUNNER_VARS, UNREACHABLE_GRACE_MAX,
};
pub use run::exec;
