//! `writ key rotate | retire`.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use writ_gate::{Exit, Global};

use crate::output::{print_json, refused};
use crate::remote::need_token;

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Make a new writ signing key; the old one keeps verifying the writs it signed until they expire.
    Rotate,
    /// Retire another node's writ key for good (compromised, or the node is
    /// gone): it and the writs it signed stop verifying at once, on every
    /// node; that node denies until it joins again with a new key.
    Retire {
        /// The key's id (`kid`, as in the JWKS and `GET /v1/mesh`).
        kid: String,
    },
}

pub async fn key(g: &Global, c: KeyCmd) -> Result<Exit> {
    if let KeyCmd::Retire { kid } = c {
        let reply = need_token(g)?
            .post("/v1/keys/retire", &writ_authority::KeyRetireRequest { kid })
            .await?;
        if !reply.ok() {
            return refused(g, "key retirement", &reply);
        }
        if g.json {
            print_json(&reply.body)?;
        } else {
            println!(
                "retired {} (log entry {})",
                reply.body["kid"].as_str().unwrap_or_default(),
                reply.body["log_index"]
            );
        }
        return Ok(Exit::Ok);
    }
    let reply = need_token(g)?.post("/v1/keys/rotate", &json!({})).await?;
    if !reply.ok() {
        return refused(g, "key rotation", &reply);
    }
    if g.json {
        print_json(&reply.body)?;
    } else {
        println!(
            "signing key is now {}",
            reply.body["kid"].as_str().unwrap_or("?")
        );
    }
    Ok(Exit::Ok)
}
