//! The client of a command that asks the server.

use anyhow::{bail, Result};
use writ_gate::client::Client;
use writ_gate::Global;

/// A client of `--server`, with `--token` when given.
pub(crate) fn client(g: &Global) -> Client {
    Client::new(&g.server, g.token.clone())
}

/// [`client`], for a command the server only answers for a principal.
pub(crate) fn need_token(g: &Global) -> Result<Client> {
    if !g.can_authenticate() {
        bail!("this command needs a token: set WRIT_TOKEN (printed by `writ init` or `writ principal add`) or pass --token, or reach a server's Unix socket (WRIT_SERVER=unix:PATH)");
    }
    Ok(client(g))
}
