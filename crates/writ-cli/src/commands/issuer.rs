//! `writ issuer`: external identity issuers whose JWTs authenticate callers
//! (docs/spec/identity.md).

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use writ_authority::{IssuerList, IssuerRequest, IssuerResponse};
use writ_gate::{Exit, Global};

use crate::output::{print_json, refused};
use crate::remote::need_token;

/// Largest key set or CA file read (bytes).
const FILE_BYTES_MAX: u64 = 256 * 1024;

#[derive(Subcommand, Debug)]
#[command(after_long_help = "\
A JWT from a registered issuer, sent as the bearer token, authenticates \
its caller as TYPE::\"<claim>\" (default Agent::\"<sub>\"): an OIDC \
provider's ID or access token, a SPIFFE JWT-SVID, a Kubernetes projected \
service-account token. Its signature is checked against the issuer's keys \
(EdDSA, ES256 or RS256 only), and so are `iss`, `aud`, `exp` and `nbf`; \
its claims are in the policy's `context.identity.claims`. Such a caller \
is never an administrator or an auditor. Each change is a log entry and \
takes effect on every node of a mesh.

Examples:
  # an OIDC provider (keys fetched over https, cached, refreshed on an unknown kid)
  writ issuer add corp --issuer https://login.example.com --audience writ \\
      --jwks https://login.example.com/.well-known/jwks.json
  # SPIRE's JWT-SVIDs: the principal is Workload::\"spiffe://example.org/...\"
  writ issuer add spire --issuer https://oidc.spire.example.org --audience writ \\
      --jwks https://oidc.spire.example.org/keys --principal-type Workload
  # a Kubernetes cluster's service-account tokens, its keys from a file
  kubectl get --raw /openid/v1/jwks > cluster-jwks.json
  writ issuer add prod-cluster --issuer https://kubernetes.default.svc.cluster.local \\
      --audience writ --jwks cluster-jwks.json --principal-type ServiceAccount
  writ issuer list
  writ issuer remove corp")]
pub enum IssuerCmd {
    /// Register an issuer whose tokens authenticate callers. Admin only.
    Add {
        /// The name writ knows it by (letters, digits, `-`, `_`, `.`).
        name: String,
        /// The `iss` its tokens carry.
        #[arg(long)]
        issuer: String,
        /// The `aud` its tokens must hold (the audience writ is for them).
        #[arg(long)]
        audience: String,
        /// Its keys: an https URL (fetched and cached), or a JWKS file
        /// (registered with it, shared by every node of a mesh).
        #[arg(long, value_name = "URL_OR_FILE")]
        jwks: String,
        /// PEM CA certificates to trust for the JWKS URL besides the
        /// system's (a private provider, an in-cluster API server).
        #[arg(long, value_name = "FILE")]
        jwks_ca: Option<PathBuf>,
        /// Cedar entity type of its principals.
        #[arg(long, default_value = "Agent")]
        principal_type: String,
        /// The claim that names the principal.
        #[arg(long, default_value = "sub")]
        claim: String,
        /// The SPIFFE trust domain it speaks for (a SPIRE server's OIDC
        /// discovery provider): its tokens' `sub` must be a SPIFFE ID in
        /// it, and only then do policies see `context.identity.trust_domain`.
        #[arg(long, value_name = "DOMAIN")]
        trust_domain: Option<String>,
    },
    /// List the registered issuers. Admin only.
    List,
    /// Remove an issuer: its tokens stop authenticating at once. Admin only.
    Remove {
        /// The issuer's name.
        name: String,
    },
}

fn read_small(path: &std::path::Path, what: &str) -> Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("{what} {}", path.display()))?;
    if meta.len() > FILE_BYTES_MAX {
        bail!(
            "{what} {} is larger than {FILE_BYTES_MAX} bytes",
            path.display()
        );
    }
    std::fs::read_to_string(path).with_context(|| format!("{what} {}", path.display()))
}

pub async fn issuer(g: &Global, c: IssuerCmd) -> Result<Exit> {
    let client = need_token(g)?;
    match c {
        IssuerCmd::Add {
            name,
            issuer,
            audience,
            jwks,
            jwks_ca,
            principal_type,
            claim,
            trust_domain,
        } => {
            let (jwks_url, keys) = if jwks.contains("://") {
                (Some(jwks), None)
            } else {
                let text = read_small(std::path::Path::new(&jwks), "JWKS file")?;
                let v: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("JWKS file {jwks} is not JSON"))?;
                (None, Some(v))
            };
            let jwks_ca = match jwks_ca {
                Some(p) => Some(read_small(&p, "CA file")?),
                None => None,
            };
            let req = IssuerRequest {
                name,
                issuer,
                audience,
                jwks_url,
                jwks: keys,
                jwks_ca,
                principal_type: Some(principal_type),
                claim: Some(claim),
                trust_domain,
            };
            let reply = client.post("/v1/issuers", &req).await?;
            if !reply.ok() {
                return refused(g, "adding the issuer", &reply);
            }
            let r: IssuerResponse = reply.parse()?;
            if g.json {
                print_json(&r)?;
            } else {
                println!(
                    "added issuer {} (log entry {}): tokens with iss {} and aud {} authenticate as {}",
                    r.issuer.name, r.log_index, r.issuer.issuer, r.issuer.audience, r.issuer.maps_to
                );
            }
        }
        IssuerCmd::List => {
            let reply = client.get("/v1/issuers").await?;
            if !reply.ok() {
                return refused(g, "listing the issuers", &reply);
            }
            let r: IssuerList = reply.parse()?;
            if g.json {
                print_json(&r)?;
            } else if r.issuers.is_empty() {
                println!("no issuer is registered (`writ issuer add --help`)");
            } else {
                for i in &r.issuers {
                    println!(
                        "{}  iss {}  aud {}  keys {}  as {}",
                        i.name, i.issuer, i.audience, i.jwks, i.maps_to
                    );
                }
            }
        }
        IssuerCmd::Remove { name } => {
            let reply = client
                .post("/v1/issuers/remove", &serde_json::json!({ "name": name }))
                .await?;
            if !reply.ok() {
                return refused(g, "removing the issuer", &reply);
            }
            let r: IssuerResponse = reply.parse()?;
            if g.json {
                print_json(&r)?;
            } else {
                println!(
                    "removed issuer {} (log entry {}): its tokens no longer authenticate",
                    r.issuer.name, r.log_index
                );
            }
        }
    }
    Ok(Exit::Ok)
}
