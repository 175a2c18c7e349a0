//! `writ principal`: the lifecycle of the callers the authority knows.

use anyhow::Result;
use clap::Subcommand;
use writ_authority::{
    PrincipalChangeResponse, PrincipalList, PrincipalRequest, PrincipalResponse,
    PrincipalUidRequest,
};
use writ_gate::{Exit, Global};

use crate::output::{print_json, refused};
use crate::remote::need_token;

#[derive(Subcommand, Debug)]
#[command(after_long_help = "\
Every change is a log entry and takes effect on every node of a mesh. \
A token that is lost or leaked: `rotate` (the old token stops working at \
once, the principal keeps its name and its writs). A principal to stop \
for now: `disable` (its token and its programs' credentials stop \
authenticating, its writs stop verifying and its runs are ended), then \
`enable`. For good: `writ revoke --principal UID` (every writ it ever got \
is revoked with it; a revoked principal cannot come back).

Examples:
  writ principal add 'Agent::\"planner\"'
  writ principal list
  writ principal rotate 'Agent::\"planner\"'
  writ principal disable 'Agent::\"planner\"'
  writ principal enable 'Agent::\"planner\"'")]
pub enum PrincipalCmd {
    /// Register a principal (a Cedar UID such as 'Agent::"planner"') and print its token once.
    Add {
        /// The principal's Cedar UID, e.g. 'Agent::"planner"'.
        uid: String,
        /// Make it an administrator.
        #[arg(long)]
        admin: bool,
        /// Make it an auditor: it may read what the log's entries commit to
        /// (requests, contexts, environments, arguments) and the console's
        /// views of the log, and nothing more.
        #[arg(long)]
        auditor: bool,
    },
    /// List the registered principals and their status (active, disabled, revoked). Admin only.
    List,
    /// Give a principal a new token (printed once); the old one stops working at once.
    Rotate {
        /// The principal's Cedar UID.
        uid: String,
    },
    /// Disable a principal: its token and its programs' credentials stop
    /// authenticating, its writs stop verifying, its runs are ended.
    Disable {
        /// The principal's Cedar UID.
        uid: String,
    },
    /// Enable a disabled principal again.
    Enable {
        /// The principal's Cedar UID.
        uid: String,
    },
}

pub async fn principal(g: &Global, c: PrincipalCmd) -> Result<Exit> {
    let client = need_token(g)?;
    match c {
        PrincipalCmd::Add {
            uid,
            admin,
            auditor,
        } => {
            let reply = client
                .post(
                    "/v1/principals",
                    &PrincipalRequest {
                        uid,
                        admin,
                        auditor,
                    },
                )
                .await?;
            if !reply.ok() {
                return refused(g, "adding the principal", &reply);
            }
            let r: PrincipalResponse = reply.parse()?;
            if g.json {
                print_json(&r)?;
            } else {
                println!(
                    "added {}{}; its token (shown once):",
                    r.uid,
                    match (r.admin, auditor) {
                        (true, _) => " (admin)",
                        (false, true) => " (auditor)",
                        _ => "",
                    }
                );
                println!("{}", r.token);
            }
        }
        PrincipalCmd::List => {
            let reply = client.get("/v1/principals").await?;
            if !reply.ok() {
                return refused(g, "listing the principals", &reply);
            }
            let r: PrincipalList = reply.parse()?;
            if g.json {
                print_json(&r)?;
            } else {
                let width = r.principals.iter().map(|p| p.uid.len()).max().unwrap_or(0);
                for p in &r.principals {
                    println!(
                        "{:<width$}  {:<8}  {}",
                        p.uid,
                        p.status,
                        if p.admin {
                            "admin"
                        } else if p.auditor {
                            "auditor"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        PrincipalCmd::Rotate { uid } => {
            let reply = client
                .post("/v1/principals/rotate", &PrincipalUidRequest { uid })
                .await?;
            if !reply.ok() {
                return refused(g, "rotating the token", &reply);
            }
            let r: PrincipalResponse = reply.parse()?;
            if g.json {
                print_json(&r)?;
            } else {
                println!(
                    "new token for {} (shown once; the old one no longer works, log entry {}):",
                    r.uid, r.log_index
                );
                println!("{}", r.token);
            }
        }
        PrincipalCmd::Disable { uid } => return change(g, &client, "disable", uid).await,
        PrincipalCmd::Enable { uid } => return change(g, &client, "enable", uid).await,
    }
    Ok(Exit::Ok)
}

async fn change(
    g: &Global,
    client: &writ_gate::client::Client,
    verb: &str,
    uid: String,
) -> Result<Exit> {
    let reply = client
        .post(
            &format!("/v1/principals/{verb}"),
            &PrincipalUidRequest { uid },
        )
        .await?;
    if !reply.ok() {
        return refused(g, &format!("{verb} of the principal"), &reply);
    }
    let r: PrincipalChangeResponse = reply.parse()?;
    if g.json {
        print_json(&r)?;
    } else {
        println!("{} is {} (log entry {})", r.uid, r.status, r.log_index);
    }
    Ok(Exit::Ok)
}
