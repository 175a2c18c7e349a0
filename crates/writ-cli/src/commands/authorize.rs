//! `writ authorize`: ask the authority for a writ.

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{Map, Value};
use writ_artifact::Scope;
use writ_authority::{AuthorizeRequest, AuthorizeResponse};
use writ_gate::{parent_from_env, Exit, Global};

use crate::output::{print_denial, print_json};
use crate::remote::need_token;

/// The JSON object a flag (`--{what}`) holds; none is an empty one.
pub(crate) fn parse_object(what: &str, s: &Option<String>) -> Result<Map<String, Value>> {
    match s {
        None => Ok(Map::new()),
        Some(s) => {
            match serde_json::from_str(s).with_context(|| format!("--{what} is not JSON"))? {
                Value::Object(m) => Ok(m),
                _ => bail!("--{what} must be a JSON object"),
            }
        }
    }
}

#[derive(Args, Debug)]
pub struct AuthorizeArgs {
    /// Cedar UID of the action.
    #[arg(long, default_value = "Action::\"exec\"")]
    pub action: String,
    /// Cedar UID of the resource, e.g. 'Command::"/usr/bin/ls"'.
    #[arg(long)]
    pub resource: String,
    /// The exact request, as JSON (the writ binds its RFC 8785 digest).
    #[arg(long, default_value = "{}")]
    pub request: String,
    /// Environment facts to bind, as a JSON object.
    #[arg(long = "env")]
    pub environment: Option<String>,
    /// Extra Cedar context attributes, as a JSON object.
    #[arg(long)]
    pub context: Option<String>,
    /// A path the action may read (repeatable).
    #[arg(long)]
    pub read: Vec<String>,
    /// A path the action may write (repeatable).
    #[arg(long)]
    pub write: Vec<String>,
    /// The action may use the network.
    #[arg(long)]
    pub net: bool,
    /// Enforcement point the writ is for.
    #[arg(long, default_value = "cli")]
    pub audience: String,
    /// Parent writ's jti (defaults to the jti of $WRIT_PARENT inside a governed process).
    #[arg(long)]
    pub parent: Option<String>,
    /// Lifetime in seconds (default 60, at most 3600).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=writ_artifact::WRIT_LIFETIME_SECS_MAX))]
    pub lifetime: Option<u64>,
    /// Also start the execution (spend the nonce) in the decision's commit,
    /// for a gateway that runs at once; the writ then cannot be started again.
    #[arg(long)]
    pub start: bool,
    /// Let another principal (a Cedar UID) name this writ as its parent
    /// (repeatable, at most 16). Logged, and seen by the policy as
    /// `context.delegates`; without it only this writ's own principal may.
    #[arg(long = "delegate", value_name = "UID")]
    pub delegates: Vec<String>,
    /// Bind the writ to this holder's public key, an Ed25519 JWK
    /// (`{"kty":"OKP","crv":"Ed25519","x":"..."}`): every use of the writ
    /// then needs a fresh proof signed by the key (docs/spec/holder.md).
    #[arg(long, value_name = "JWK")]
    pub holder_jwk: Option<String>,
}

pub async fn authorize(g: &Global, a: AuthorizeArgs) -> Result<Exit> {
    let request: Value = serde_json::from_str(&a.request).context("--request is not JSON")?;
    let req = AuthorizeRequest {
        action: a.action,
        resource: a.resource,
        context: parse_object("context", &a.context)?,
        request,
        environment: parse_object("env", &a.environment)?,
        scope: Scope {
            read: a.read,
            write: a.write,
            net: a.net,
        },
        audience: a.audience,
        parent: a.parent.or_else(parent_from_env),
        lifetime_secs: a.lifetime,
        start: a.start,
        credential: false,
        delegates: a.delegates,
        cnf: a
            .holder_jwk
            .as_deref()
            .map(|j| {
                serde_json::from_str(j)
                    .map(|jwk| writ_authority::HolderCnf { jwk })
                    .context("--holder-jwk is not an Ed25519 JWK {kty, crv, x}")
            })
            .transpose()?,
        ..Default::default()
    };
    let reply = need_token(g)?.post("/v1/authorize", &req).await?;
    if reply.status == 400 || reply.status == 413 || reply.status == 401 && reply.reason().is_none()
    {
        bail!(
            "server refused the request ({}): {}",
            reply.status,
            reply.message()
        );
    }
    let resp: AuthorizeResponse = reply.parse()?;
    if g.json {
        print_json(&resp)?;
    }
    match resp {
        AuthorizeResponse::Allow {
            writ,
            log_index,
            jti,
            exp,
            ..
        } => {
            if !g.json {
                println!("{writ}");
                eprintln!("allow: jti {jti}, log entry {log_index}, expires {exp}");
            }
            Ok(Exit::Ok)
        }
        AuthorizeResponse::Deny {
            reason, message, ..
        } => {
            print_denial(reason, &message);
            Ok(Exit::Denied(reason))
        }
    }
}
