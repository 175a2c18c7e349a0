//! `writ init`: a new data dir, or a new node of a shared store.

use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;
use writ_artifact::{OsEntropy, SystemClock, WritKey};
use writ_authority::Authority;
use writ_gate::{Exit, Global};
use writ_store::prelude::*;
use writ_store::{PgStore, SqliteStore, Store};

use crate::datadir::{is_postgres_url, redact_url, write_atomic, Config, DataDir};
use crate::output::print_json;

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

pub async fn init(g: &Global, a: InitArgs) -> Result<Exit> {
    let dir = DataDir::new(&g.dir);
    if let Some(url) = &a.store {
        if !is_postgres_url(url) {
            bail!("--store {url:?}: expected a postgres://user@host:port/db URL");
        }
        let initialized = !PgStore::connect(url)
            .map_err(anyhow::Error::msg)?
            .activations()
            .map_err(anyhow::Error::msg)?
            .is_empty();
        if initialized {
            let kid = dir.join(url).await?;
            if g.json {
                print_json(&json!({"dir": dir.root, "joined": redact_url(url), "writ_kid": kid}))?;
            } else {
                println!(
                    "joined {} to the shared store {} as a new node",
                    dir.root.display(),
                    redact_url(url)
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

/// A throwaway data dir with the default bundle, as `writ init` makes it
/// (demo, bench); returns the admin token.
pub async fn init_quiet(g: &Global) -> Result<String> {
    let dir = DataDir::new(&g.dir);
    let i = init_data_dir(&dir, "User::\"admin\"", Some("demo.writ.local/log".into())).await?;
    Ok(i.admin_token)
}
