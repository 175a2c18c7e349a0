//! `writ verify`: a writ, offline (data dir or JWKS) or against a server.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value};
use writ_artifact::{
    canonical, Claims, KeyRing, NoStatus, ReasonCode, SystemClock, VerifyOptions, DEFAULT_SKEW_SECS,
};
use writ_authority::VerifyRequest;
use writ_gate::{Exit, Global};

use super::authorize::parse_object;
use crate::datadir::DataDir;
use crate::output::{print_denial, print_json, refused};
use crate::remote::client;

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("policy_choice").args(["policies", "any_policy"])))]
pub struct VerifyArgs {
    /// The writ (compact JWS); `-` or nothing reads standard input.
    pub writ: Option<String>,
    /// The request being executed, as JSON; must match the writ's binding.
    #[arg(long)]
    pub request: Option<String>,
    /// The re-measured environment, as a JSON object.
    #[arg(long = "env")]
    pub environment: Option<String>,
    /// This enforcement point's audience.
    #[arg(long)]
    pub audience: Option<String>,
    /// Ask the server (POST /v1/verify) instead of verifying locally.
    #[arg(long)]
    pub online: bool,
    /// Verify offline against this JWKS file instead of the data dir (no
    /// revocation or nonce state then). Needs --policy or --any-policy: a
    /// JWKS says nothing about which policy bundles to accept.
    #[arg(long, requires = "policy_choice")]
    pub jwks: Option<PathBuf>,
    /// With --jwks: a policy bundle hash to accept (repeatable), as
    /// `writ init` and `writ policy check` print it; another hash is denied
    /// with policy_mismatch.
    #[arg(long = "policy", value_name = "HASH", requires = "jwks")]
    pub policies: Vec<String>,
    /// With --jwks: accept any policy bundle hash (the writ's policy is then
    /// not checked; stderr says so, and --json adds `"policy_checked": false`).
    #[arg(long, requires = "jwks")]
    pub any_policy: bool,
    /// Clock skew tolerated, seconds.
    #[arg(long, default_value_t = DEFAULT_SKEW_SECS)]
    pub skew_secs: u64,
    /// A proof of possession by the writ's holder, made for `verify`
    /// (docs/spec/holder.md); a holder-bound writ without one is denied
    /// with holder_mismatch.
    #[arg(long, value_name = "PROOF")]
    pub pop: Option<String>,
    /// Also check the writ's decision entry is in the log: included under the
    /// latest signed checkpoint (from the server with --online, else the data
    /// dir). Fails with integrity_failure otherwise.
    #[arg(long)]
    pub proof: bool,
    /// With --proof: the log's verifier key (default: the data dir's, or
    /// with --online the key the server presents).
    #[arg(long, requires = "proof")]
    pub log_key: Option<String>,
    /// With --proof: require a cosignature by this witness (repeatable).
    #[arg(long = "witness-key", value_name = "VKEY", requires = "proof")]
    pub witness_keys: Vec<String>,
}

/// A verdict: the writ's claims, or why it is refused.
type Verdict = std::result::Result<Claims, (ReasonCode, String)>;

pub async fn verify(g: &Global, a: VerifyArgs) -> Result<Exit> {
    let req = verify_request(&a)?;
    let verdict = if a.online {
        match online(g, &req).await? {
            Ok(v) => v,
            Err(refusal) => return Ok(refusal),
        }
    } else if let Some(path) = &a.jwks {
        with_jwks(path, &a, &req)?
    } else {
        let dir = DataDir::new(&g.dir);
        let authority = dir.open_authority(a.skew_secs, 8, writ_authority::FRESHNESS_MS_DEFAULT)?;
        authority
            .verify(&req)
            .map(|v| v.claims().clone())
            .map_err(|d| (d.reason, d.message))
    };
    // clap made --jwks need --policy or --any-policy (never both).
    // After the verdict line: a denial's stderr starts with `denied:`.
    let warn_any_policy = !a.online && a.jwks.is_some() && a.any_policy;
    let verdict = match verdict {
        Ok(claims) if a.proof => proved(g, &a, claims).await?,
        other => other,
    };
    print_verdict(g, &a, verdict, warn_any_policy)
}

/// The request to verify: the writ (from standard input for `-` or none),
/// the request and environment it must be bound to.
fn verify_request(a: &VerifyArgs) -> Result<VerifyRequest> {
    let writ = match a.writ.as_deref() {
        Some("-") | None => {
            let mut s = String::new();
            std::io::stdin()
                .take(writ_artifact::WRIT_BYTES_MAX as u64 + 1)
                .read_to_string(&mut s)?;
            s.trim().to_owned()
        }
        Some(w) => w.trim().to_owned(),
    };
    let request = a
        .request
        .as_deref()
        .map(serde_json::from_str::<Value>)
        .transpose()
        .context("--request is not JSON")?;
    let environment = match &a.environment {
        None => None,
        Some(_) => Some(parse_object("env", &a.environment)?),
    };
    Ok(VerifyRequest {
        writ,
        request,
        environment,
        audience: a.audience.clone(),
        pop: a.pop.clone(),
    })
}

/// `--online`: the server's verdict, or (`Err`) the exit status of its
/// refusal of the request itself.
async fn online(g: &Global, req: &VerifyRequest) -> Result<std::result::Result<Verdict, Exit>> {
    let reply = client(g).post("/v1/verify", req).await?;
    if !reply.ok() {
        // Not a verdict (those are 200s): the request itself was refused.
        return refused(g, "verification", &reply).map(Err);
    }
    let v: writ_authority::VerifyResponse = reply.parse()?;
    Ok(Ok(match (v.valid, v.claims) {
        (true, Some(c)) => Ok(c),
        _ => Err((
            v.reason.unwrap_or(ReasonCode::MalformedArtifact),
            v.message.unwrap_or_default(),
        )),
    }))
}

/// `--jwks`: verified offline against the keys of a JWKS file.
fn with_jwks(path: &std::path::Path, a: &VerifyArgs, req: &VerifyRequest) -> Result<Verdict> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let ring = KeyRing::from_jwks(&serde_json::from_str(&text).context("not a JWKS")?)
        .map_err(anyhow::Error::msg)?;
    let opts = VerifyOptions {
        now_unix_secs: writ_artifact::Clock::now_unix_secs(&SystemClock),
        skew_secs: a.skew_secs,
        audience: req.audience.clone(),
        request_digest: req
            .request
            .as_ref()
            .map(canonical::digest_json)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        environment_digest: req
            .environment
            .as_ref()
            .map(canonical::digest_json)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        // None accepts any hash: only on --any-policy. An empty set
        // (unreachable past clap) would deny every writ.
        accepted_policies: (!a.any_policy)
            .then(|| a.policies.iter().cloned().collect::<BTreeSet<_>>()),
        check_spent: false,
        holder: match &req.pop {
            Some(p) => writ_artifact::HolderCheck::Proof {
                proof: p.clone(),
                purpose: writ_artifact::pop::PopUse::Verify,
            },
            None => writ_artifact::HolderCheck::None,
        },
    };
    Ok(writ_artifact::verify(&req.writ, &ring, &opts, &NoStatus)
        .map(|v| v.claims().clone())
        .map_err(|d| (d.reason, d.message)))
}

/// `--proof`: a valid writ whose decision entry is not in the log is
/// refused with integrity_failure.
async fn proved(g: &Global, a: &VerifyArgs, claims: Claims) -> Result<Verdict> {
    match super::log::prove_writ(g, &claims, a.online, &a.log_key, &a.witness_keys).await? {
        Ok(line) => {
            if !g.json {
                println!("{line}");
            }
            Ok(Ok(claims))
        }
        Err(m) => Ok(Err((ReasonCode::IntegrityFailure, m))),
    }
}

fn print_verdict(
    g: &Global,
    a: &VerifyArgs,
    verdict: Verdict,
    warn_any_policy: bool,
) -> Result<Exit> {
    match verdict {
        Ok(claims) => {
            if g.json {
                let mut v = json!({"valid": true, "claims": claims, "logged": a.proof});
                if warn_any_policy {
                    v["policy_checked"] = json!(false);
                }
                print_json(&v)?;
            } else {
                println!(
                    "valid: {} may {} on {} (jti {}, log entry {})",
                    claims.sub,
                    claims.writ.action,
                    claims.writ.resource,
                    claims.jti,
                    claims.writ.log.index
                );
            }
            if warn_any_policy {
                eprintln!("note: --any-policy: any policy bundle hash was accepted");
            }
            Ok(Exit::Ok)
        }
        Err((reason, message)) => {
            if g.json {
                print_json(&json!({"valid": false, "reason": reason, "message": message}))?;
            }
            print_denial(reason, &message);
            Ok(Exit::Denied(reason))
        }
    }
}
