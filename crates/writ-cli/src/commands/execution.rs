//! `writ execution start | renew | finish` (what gateways call) and
//! `writ lineage`.

use anyhow::Result;
use clap::{Args, Subcommand};
use writ_gate::{Exit, Global};

use crate::output::{print_json, refused};
use crate::remote::need_token;

#[derive(Subcommand, Debug)]
pub enum ExecutionCmd {
    /// Spend a writ's nonce (a second start is `replayed`).
    Start {
        /// The writ's `jti` (its nonce).
        jti: String,
        /// The writ, to re-verify at start.
        #[arg(long)]
        writ: Option<String>,
        /// A proof of possession by a holder-bound writ's holder, made for
        /// `start` (docs/spec/holder.md).
        #[arg(long, value_name = "PROOF")]
        pop: Option<String>,
    },
    /// Renew the lease of a running execution: the active policy, revocation
    /// and lineage are checked again, and the renewal is logged.
    Renew {
        /// The `jti` of the running execution's writ.
        jti: String,
        /// Seconds from now (default: the writ's own lifetime; at most 3600).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=writ_artifact::WRIT_LIFETIME_SECS_MAX))]
        lifetime: Option<u64>,
        /// A proof of possession made for `renew`.
        #[arg(long, value_name = "PROOF")]
        pop: Option<String>,
    },
    /// Record how an execution ended.
    Finish {
        /// The `jti` of the execution's writ.
        jti: String,
        /// The program's exit status (left out: it did not exit normally).
        #[arg(long)]
        exit_status: Option<i64>,
        /// How long it ran, in milliseconds.
        #[arg(long, default_value_t = 0)]
        duration_ms: u64,
        /// Digest of what it wrote to standard output (`sha256:` and 64 hex
        /// digits), for the log.
        #[arg(long, value_name = "DIGEST")]
        stdout_digest: Option<String>,
        /// Digest of what it wrote to standard error.
        #[arg(long, value_name = "DIGEST")]
        stderr_digest: Option<String>,
        /// A proof of possession made for `finish`.
        #[arg(long, value_name = "PROOF")]
        pop: Option<String>,
    },
}

pub async fn execution(g: &Global, c: ExecutionCmd) -> Result<Exit> {
    let cl = need_token(g)?;
    let reply = match &c {
        ExecutionCmd::Start { jti, writ, pop } => {
            cl.post(
                &format!("/v1/executions/{jti}/start"),
                &writ_authority::StartRequest {
                    writ: writ.clone(),
                    pop: pop.clone(),
                    ..Default::default()
                },
            )
            .await?
        }
        ExecutionCmd::Renew { jti, lifetime, pop } => {
            cl.post(
                &format!("/v1/executions/{jti}/renew"),
                &writ_authority::RenewRequest {
                    lifetime_secs: *lifetime,
                    pop: pop.clone(),
                },
            )
            .await?
        }
        ExecutionCmd::Finish {
            jti,
            exit_status,
            duration_ms,
            stdout_digest,
            stderr_digest,
            pop,
        } => {
            let body = writ_authority::FinishRequest {
                exit_status: *exit_status,
                duration_ms: *duration_ms,
                stdout_digest: stdout_digest.clone(),
                stderr_digest: stderr_digest.clone(),
                pop: pop.clone(),
                ..Default::default()
            };
            cl.post(&format!("/v1/executions/{jti}/finish"), &body)
                .await?
        }
    };
    if reply.ok() {
        if g.json {
            print_json(&reply.body)?;
        } else {
            match reply.body.get("lease_exp") {
                Some(l) => println!(
                    "ok: leased until {l} (log entry {})",
                    reply.body["log_index"]
                ),
                None => println!("ok (log entry {})", reply.body["log_index"]),
            }
        }
        return Ok(Exit::Ok);
    }
    refused(g, "the execution call", &reply)
}

#[derive(Args, Debug)]
pub struct LineageArgs {
    /// The `jti` of any writ in the lineage.
    pub jti: String,
}

pub async fn lineage(g: &Global, a: LineageArgs) -> Result<Exit> {
    let reply = need_token(g)?
        .get(&format!("/v1/lineage/{}", a.jti))
        .await?;
    if !reply.ok() {
        return refused(g, "the lineage query", &reply);
    }
    if g.json {
        print_json(&reply.body)?;
        return Ok(Exit::Ok);
    }
    let r: writ_authority::LineageResponse = reply.parse()?;
    for (i, a) in r.ancestors.iter().enumerate() {
        println!("{}{a} (ancestor)", "  ".repeat(i));
    }
    fn walk(n: &writ_authority::LineageNode, indent: usize) {
        println!(
            "{}{} {} {} on {} [{}] log #{}",
            "  ".repeat(indent),
            n.jti,
            n.principal,
            n.action,
            n.resource,
            n.status,
            n.log_index
        );
        for c in &n.children {
            walk(c, indent + 1);
        }
    }
    walk(&r.tree, r.ancestors.len());
    Ok(Exit::Ok)
}
