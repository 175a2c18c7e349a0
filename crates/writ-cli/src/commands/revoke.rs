//! `writ revoke`: a writ and its subtree, or a principal, for good.

use anyhow::Result;
use clap::Args;
use writ_gate::{Exit, Global};

use crate::output::{print_json, refused};
use crate::remote::need_token;

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["jti", "principal"])))]
pub struct RevokeArgs {
    /// Revoke this writ and every descendant.
    #[arg(long)]
    pub jti: Option<String>,
    /// Revoke every writ of this principal, now and later.
    #[arg(long)]
    pub principal: Option<String>,
    /// Why (recorded in the log).
    #[arg(long)]
    pub reason: Option<String>,
}

pub async fn revoke(g: &Global, a: RevokeArgs) -> Result<Exit> {
    let body = writ_authority::RevokeRequest {
        jti: a.jti,
        principal: a.principal,
        reason: a.reason,
    };
    let reply = need_token(g)?.post("/v1/revocations", &body).await?;
    if !reply.ok() {
        return refused(g, "revocation", &reply);
    }
    let r: writ_authority::RevokeResponse = reply.parse()?;
    if g.json {
        print_json(&r)?;
    } else {
        println!(
            "revoked {} (log entry {})",
            r.revoked.join(", "),
            r.log_index
        );
    }
    Ok(Exit::Ok)
}
