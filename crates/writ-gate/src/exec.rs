//! `writ exec`: ask for a writ for this exact command, verify it, spend its
//! nonce, run the very file that was measured under the granted scope, and
//! record how it ended.

mod args;
mod ending;
mod run;

pub(crate) use args::scope_path;
pub use args::{env_allow_name, ExecArgs, RUNNER_VARS, UNREACHABLE_GRACE_MAX};
pub use run::exec;
