//! The client and local commands.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use writ_artifact::{
    canonical, KeyRing, NoStatus, OsEntropy, ReasonCode, Scope, SystemClock, VerifyOptions, WritKey,
};
use writ_authority::{Authority, AuthorizeRequest, AuthorizeResponse, VerifyRequest};
use writ_policy::{Bundle, SignedBundle, TestFile};
use writ_store::{PgStore, SqliteStore, Store};

use crate::client::Client;
use crate::datadir::{read_bundle_dir, write_atomic, Config};
use crate::{print_denial, DataDir, Exit, Global};
pub(crate) use writ_gate::{parent_from_env, print_json};

/// A server's refusal of a command. With `--json` its error body
/// (`{error, reason?, message}`) goes to standard output as it came; the
/// message goes to standard error either way. The exit status is the reason
/// code's when the refusal has one (SPEC), 1 when it has none.
pub(crate) fn refused(g: &Global, what: &str, reply: &crate::client::Reply) -> Result<Exit> {
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

fn client(g: &Global) -> Client {
    Client::new(&g.server, g.token.clone())
}

pub(crate) fn need_token(g: &Global) -> Result<Client> {
    if !g.can_authenticate() {
        bail!("this command needs a token: set WRIT_TOKEN (printed by `writ init` or `writ principal add`) or pass --token, or reach a server's Unix socket (WRIT_SERVER=unix:PATH)");
    }
    Ok(client(g))
}

fn parse_object(what: &str, s: &Option<String>) -> Result<Map<String, Value>> {
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

// ---------------------------------------------------------------- init

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Cedar UID of the first administrator.
    #[arg(long, default_value = "User::\"admin\"")]
    pub admin: String,
    /// Log origin (checkpoint first line); defaults to a name unique to this data dir.
    #[arg(long)]
    pub origin: Option<String>,
    /// A shared PostgreSQL store (`postgres://user@host:port/db`) for a mesh
    /// of nodes. The first `init` against it initializes it (schema, policy,
    /// first administrator); a later one joins this data dir to it as a new
    /// node (its own keys; nothing else shared). Default: the embedded SQLite
    /// store in the data dir.
    #[arg(long, env = "WRIT_STORE")]
    pub store: Option<String>,
}

/// What a fresh data dir holds that the caller may print.
pub(crate) struct Initialized {
    pub admin_token: String,
    pub policy_hash: String,
    pub writ_kid: String,
    pub policy_kid: String,
    pub origin: String,
}

/// Make a data dir: keys (0600), the editable default bundle, the store with
/// the keys, the activated bundle and the first admin recorded, the config.
pub(crate) async fn init_data_dir(
    dir: &DataDir,
    admin: &str,
    origin: Option<String>,
) -> Result<Initialized> {
    init_data_dir_with(dir, admin, origin, None).await
}

/// [`init_data_dir`] on the shared store `store_url` when given.
pub(crate) async fn init_data_dir_with(
    dir: &DataDir,
    admin: &str,
    origin: Option<String>,
    store_url: Option<String>,
) -> Result<Initialized> {
    // Refused before anything is written: a data dir made with either would
    // not serve (the origin names the log's key) or not decide (the admin).
    writ_policy::check_entity_uid(admin).map_err(|e| anyhow::anyhow!("--admin: {e}"))?;
    if let Some(o) = &origin {
        if writ_log::note::check_name(o).is_err() {
            bail!("--origin {o:?}: a log origin is non-empty, without spaces or '+' (it names the log's key in signed checkpoints)");
        }
    }
    if dir.is_initialized() || dir.db().exists() {
        bail!(
            "{} is already initialized; use another --dir or remove it",
            dir.root.display()
        );
    }
    dir.create()?;
    let origin = match origin {
        Some(o) => o,
        None => {
            let mut b = [0u8; 4];
            writ_artifact::Entropy::fill(&OsEntropy, &mut b)?;
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_else(|_| "localhost".into());
            format!(
                "{}/writ/{}",
                host.trim(),
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            )
        }
    };
    let writ_key = WritKey::generate(&OsEntropy)?;
    let policy_key = WritKey::generate(&OsEntropy)?;
    dir.save_writ_key(&writ_key)?;
    dir.mark_current_writ_key(writ_key.kid())?;
    dir.save_key("policy", &policy_key)?;
    dir.log_key()?;
    let source = writ_policy::default_bundle();
    std::fs::create_dir_all(dir.policy_dir())?;
    for (name, text) in &source.policies {
        write_atomic(&dir.policy_dir().join(name), text.as_bytes(), 0o644)?;
    }
    let signed = source.sign(&policy_key)?;
    let store: Arc<dyn Store> = match &store_url {
        Some(url) => Arc::new(PgStore::connect(url).map_err(anyhow::Error::msg)?),
        None => Arc::new(SqliteStore::open(&dir.db()).map_err(anyhow::Error::msg)?),
    };
    let out = Authority::bootstrap(
        store.clone(),
        &SystemClock,
        &OsEntropy,
        &writ_key,
        &policy_key,
        signed,
        admin,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    if store_url.is_some() {
        // Nodes joining later learn the log's origin from its checkpoints:
        // sign the first one now.
        let log = writ_authority::LogPublisher::new(
            store.clone(),
            Arc::new(SystemClock),
            &origin,
            dir.log_key()?,
        )
        .map_err(|e| anyhow::anyhow!("log origin {origin:?}: {e}"))?;
        log.publish().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    dir.write_config(&Config {
        issuer: "writ".into(),
        origin: origin.clone(),
        store: store_url,
    })?;
    Ok(Initialized {
        admin_token: out.admin_token,
        policy_hash: out.policy_hash,
        writ_kid: writ_key.kid().to_owned(),
        policy_kid: policy_key.kid().to_owned(),
        origin,
    })
}

/// Join the data dir `dir` (new) to the initialized shared store at `url`
/// as one more node: its own writ and log keys (private halves stay here),
/// its writ key recorded as active, the log origin read from the store.
pub(crate) async fn join_store(dir: &DataDir, url: &str) -> Result<String> {
    if dir.is_initialized() {
        bail!("{} is already initialized", dir.root.display());
    }
    let store = PgStore::connect(url).map_err(anyhow::Error::msg)?;
    let origin = store
        .latest_checkpoint()
        .map_err(anyhow::Error::msg)?
        .and_then(|c| c.note.lines().next().map(str::to_owned))
        .context(
            "the shared store has no checkpoint yet: run `writ init --store URL` once first",
        )?;
    dir.create()?;
    let key = WritKey::generate(&OsEntropy)?;
    dir.save_writ_key(&key)?;
    dir.mark_current_writ_key(key.kid())?;
    dir.log_key()?;
    Authority::join(&store, &SystemClock, &key)
        .await
        .map_err(anyhow::Error::msg)?;
    dir.write_config(&Config {
        issuer: "writ".into(),
        origin,
        store: Some(url.to_owned()),
    })?;
    Ok(key.kid().to_owned())
}

pub async fn init(g: &Global, a: InitArgs) -> Result<Exit> {
    let dir = DataDir::new(&g.dir);
    if let Some(url) = &a.store {
        if !crate::datadir::is_postgres_url(url) {
            bail!("--store {url:?}: expected a postgres://user@host:port/db URL");
        }
        let initialized = !PgStore::connect(url)
            .map_err(anyhow::Error::msg)?
            .activations()
            .map_err(anyhow::Error::msg)?
            .is_empty();
        if initialized {
            let kid = join_store(&dir, url).await?;
            if g.json {
                print_json(
                    &json!({"dir": dir.root, "joined": crate::datadir::redact_url(url), "writ_kid": kid}),
                )?;
            } else {
                println!(
                    "joined {} to the shared store {} as a new node",
                    dir.root.display(),
                    crate::datadir::redact_url(url)
                );
                println!("  writ key     {kid} (keys/, mode 0600; never stored in the database)");
                println!("Use the administrator's existing token with this node.");
            }
            return Ok(Exit::Ok);
        }
    }
    let i = init_data_dir_with(&dir, &a.admin, a.origin, a.store.clone()).await?;
    if g.json {
        print_json(&json!({
            "dir": dir.root, "admin": a.admin, "admin_token": i.admin_token,
            "policy": i.policy_hash, "writ_kid": i.writ_kid, "policy_kid": i.policy_kid, "origin": i.origin,
        }))?;
    } else {
        println!("initialized {}", dir.root.display());
        println!("  log origin   {}", i.origin);
        println!("  writ key     {} (keys/, mode 0600)", i.writ_kid);
        println!("  policy key   {}", i.policy_kid);
        println!(
            "  policy       {} (edit {}/, then `writ policy activate`)",
            i.policy_hash,
            dir.policy_dir().display()
        );
        println!("  admin        {}", a.admin);
        println!();
        println!("The admin token is shown once; keep it:");
        println!("export WRIT_TOKEN={}", i.admin_token);
    }
    Ok(Exit::Ok)
}

// ---------------------------------------------------------------- authorize

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

// ---------------------------------------------------------------- verify

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
    #[arg(long, default_value_t = 5)]
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

pub async fn verify(g: &Global, a: VerifyArgs) -> Result<Exit> {
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
    let req = VerifyRequest {
        writ,
        request,
        environment,
        audience: a.audience,
        pop: a.pop,
    };
    let mut warn_any_policy = false;
    let result: Result<writ_artifact::Claims, (ReasonCode, String)> = if a.online {
        let reply = client(g).post("/v1/verify", &req).await?;
        if !reply.ok() {
            // Not a verdict (those are 200s): the request itself was refused.
            return refused(g, "verification", &reply);
        }
        let v: writ_authority::VerifyResponse = reply.parse()?;
        match (v.valid, v.claims) {
            (true, Some(c)) => Ok(c),
            _ => Err((
                v.reason.unwrap_or(ReasonCode::MalformedArtifact),
                v.message.unwrap_or_default(),
            )),
        }
    } else if let Some(path) = &a.jwks {
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
        // clap made --jwks need --policy or --any-policy (never both).
        // After the verdict line: a denial's stderr starts with `denied:`.
        warn_any_policy = a.any_policy;
        writ_artifact::verify(&req.writ, &ring, &opts, &NoStatus)
            .map(|v| v.claims().clone())
            .map_err(|d| (d.reason, d.message))
    } else {
        let dir = DataDir::new(&g.dir);
        let authority = crate::server::open_authority(&dir, a.skew_secs, 8)?;
        authority
            .verify(&req)
            .map(|v| v.claims().clone())
            .map_err(|d| (d.reason, d.message))
    };
    let result = match result {
        Ok(claims) if a.proof => {
            match crate::logcmd::prove_writ(g, &claims, a.online, &a.log_key, &a.witness_keys)
                .await?
            {
                Ok(line) => {
                    if !g.json {
                        println!("{line}");
                    }
                    Ok(claims)
                }
                Err(m) => Err((ReasonCode::IntegrityFailure, m)),
            }
        }
        other => other,
    };
    match result {
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

// ---------------------------------------------------------------- revoke

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

// ---------------------------------------------------------------- policy

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Parse and validate a bundle directory; print its hash and policy ids.
    // The positional is not called `dir`: clap would make it the global
    // `--dir` (the data dir) too.
    Check {
        #[arg(value_name = "DIR")]
        bundle_dir: PathBuf,
    },
    /// Run a JSON file of expected decisions against a bundle directory.
    Test {
        /// The test file: {"cases": [{"name"?, "principal", "action", "resource", "context"?, "expect": "allow"|"deny", "policies"?}]}. The context is what Cedar sees, as given: include the `scope` and `lineage` writ adds to every decision when policies read them (a forbid that cannot be evaluated denies).
        file: PathBuf,
        /// The bundle directory (default: the data dir's policy/).
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Sign a bundle directory with the policy key and write the signed bundle.
    Bundle {
        /// The bundle directory (*.cedar, optional schema.cedarschema and entities.json).
        #[arg(value_name = "DIR")]
        bundle_dir: PathBuf,
        /// Where to write the signed bundle (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Bundle, sign and activate a directory (or upload a signed bundle file).
    Activate {
        /// A bundle directory (signed here with the data dir's policy key) or
        /// a signed bundle file made by `writ policy bundle`.
        path: PathBuf,
    },
    /// Ask an MCP server for its tools (initialize, tools/list) and write a
    /// Cedar schema fragment for `Action::"call_tool"` with the tools'
    /// arguments typed as context attributes.
    McpSchema(crate::mcp::McpSchemaArgs),
}

fn compile_dir(dir: &std::path::Path) -> Result<Bundle> {
    let source = read_bundle_dir(dir)?;
    Bundle::compile(source).map_err(|e| anyhow::anyhow!("bundle {} refused: {e}", dir.display()))
}

pub async fn policy(g: &Global, c: PolicyCmd) -> Result<Exit> {
    match c {
        PolicyCmd::McpSchema(a) => crate::mcp::mcp_schema(g, a).await,
        PolicyCmd::Check { bundle_dir } => {
            let b = compile_dir(&bundle_dir)?;
            if g.json {
                print_json(
                    &json!({"hash": b.hash(), "policies": b.policy_ids(), "schema": b.has_schema()}),
                )?;
            } else {
                println!(
                    "ok: {} ({} policies{})",
                    b.hash(),
                    b.policy_ids().len(),
                    if b.has_schema() {
                        ", validated against schema"
                    } else {
                        ""
                    }
                );
                for id in b.policy_ids() {
                    println!("  {id}");
                }
            }
            Ok(Exit::Ok)
        }
        PolicyCmd::Test { file, bundle } => {
            let dir = bundle.unwrap_or_else(|| DataDir::new(&g.dir).policy_dir());
            let b = compile_dir(&dir)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let tf: TestFile = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a policy test file", file.display()))?;
            let outcomes = writ_policy::run_cases(&b, &tf);
            let failed = outcomes.iter().filter(|o| !o.passed).count();
            if g.json {
                print_json(
                    &json!({"bundle": b.hash(), "passed": outcomes.len() - failed, "failed": failed, "cases": outcomes}),
                )?;
            } else {
                for o in &outcomes {
                    if o.passed {
                        println!("ok       {}: {}", o.name, o.got);
                    } else {
                        println!(
                            "MISMATCH {}: expected {}, got {} ({})",
                            o.name, o.expected, o.got, o.message
                        );
                    }
                }
                println!("{} passed, {} failed", outcomes.len() - failed, failed);
            }
            Ok(if failed == 0 { Exit::Ok } else { Exit::Failed })
        }
        PolicyCmd::Bundle { bundle_dir, out } => {
            let b = compile_dir(&bundle_dir)?;
            let key = DataDir::new(&g.dir).policy_key()?;
            let signed = b.source().clone().sign(&key)?;
            write_atomic(
                &out,
                serde_json::to_string_pretty(&signed)?.as_bytes(),
                0o644,
            )?;
            if g.json {
                print_json(&json!({"hash": signed.hash, "kid": signed.kid, "out": out}))?;
            } else {
                println!("signed bundle {} written to {}", signed.hash, out.display());
            }
            Ok(Exit::Ok)
        }
        PolicyCmd::Activate { path } => {
            let signed: SignedBundle = if path.is_dir() {
                let b = compile_dir(&path)?;
                b.source()
                    .clone()
                    .sign(&DataDir::new(&g.dir).policy_key()?)?
            } else {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a signed bundle", path.display()))?
            };
            let reply = need_token(g)?.post("/v1/policies", &signed).await?;
            if !reply.ok() {
                return refused(g, "activation (the active bundle stays)", &reply);
            }
            if g.json {
                print_json(&reply.body)?;
            } else {
                println!(
                    "active: {} (log entry {})",
                    signed.hash, reply.body["log_index"]
                );
            }
            Ok(Exit::Ok)
        }
    }
}

// ---------------------------------------------------------------- principal, key

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

// ---------------------------------------------------------------- execution, lineage

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
