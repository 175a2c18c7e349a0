//! What a command prints and the exit status it ends with: JSON answers
//! (`--json`), a server's refusal, a failure as JSON. Each reason code has
//! its own exit status (docs/spec/reason-codes.md).

use anyhow::Result;
use writ_gate::client::Reply;
use writ_gate::{Exit, Global};

pub(crate) use writ_gate::{print_denial, print_json};

/// A server's refusal of a command. With `--json` its error body
/// (`{error, reason?, message}`) goes to standard output as it came; the
/// message goes to standard error either way. The exit status is the reason
/// code's when the refusal has one (docs/spec/reason-codes.md), 1 when it
/// has none.
pub(crate) fn refused(g: &Global, what: &str, reply: &Reply) -> Result<Exit> {
    if g.json {
        print_json(&reply.body)?;
    }
    match reply.reason() {
        Some(r) => {
            print_denial(r, &format!("{what} refused: {}", reply.message()));
            Ok(Exit::Denied(r))
        }
        None => {
            eprintln!(
                "error: {what} refused ({}): {}",
                reply.status,
                reply.message()
            );
            Ok(Exit::Failed)
        }
    }
}

/// With `--json` a failure is an answer too: `{"error", "message"}` on
/// standard output (the text goes to standard error as without it), unless
/// the command printed its answer before it failed. `json_failure` is false
/// for the enforcement points: their standard output is their program's.
pub(crate) fn print_failure(json_failure: bool, result: &Result<Exit>) -> Result<()> {
    if let (true, false, Err(e)) = (json_failure, writ_gate::printed_json(), result) {
        print_json(&serde_json::json!({"error": "failed", "message": format!("{e:#}")}))?;
    }
    Ok(())
}
