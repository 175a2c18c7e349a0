//! The data directory (`./.writ` or `$WRIT_DIR`): store, keys, config, the
//! editable policy bundle, and the one way every command opens it (its
//! store, its authority, its log's verifier key) or joins it to a shared
//! store.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use writ_artifact::{OsEntropy, SystemClock, WritKey};
use writ_authority::{Authority, AuthorityConfig};
use writ_log::note::{NoteVerifier, ALG_ED25519};
use writ_store::prelude::*;
use writ_store::PgStore;

/// Settings written by `writ init`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// `iss` of every writ.
    pub issuer: String,
    /// Log origin (first line of every checkpoint).
    pub origin: String,
    /// The shared store (`postgres://...`) this node of a mesh uses; absent:
    /// the embedded store (`writ.db` here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

/// Whether `s` names a PostgreSQL store.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("writ.db")
    }
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub fn policy_dir(&self) -> PathBuf {
        self.root.join("policy")
    }
    fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn is_initialized(&self) -> bool {
        self.config_path().exists()
    }

    pub fn require(&self) -> Result<()> {
        if !self.is_initialized() {
            bail!(
                "{} is not a writ data dir; run `writ init` (or set WRIT_DIR / --dir)",
                self.root.display()
            );
        }
        Ok(())
    }

    pub fn config(&self) -> Result<Config> {
        let text = fs::read_to_string(self.config_path())
            .with_context(|| format!("reading {}", self.config_path().display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", self.config_path().display()))
    }

    /// Make the data dir, readable by its owner only (mode 0700: it holds
    /// the log's content and the private keys).
    pub fn create(&self) -> Result<()> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("creating {}", self.root.display()))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {} to its owner", self.root.display()))
    }

    pub fn write_config(&self, c: &Config) -> Result<()> {
        // Its owner's only (a store URL may carry a password).
        write_atomic(
            &self.config_path(),
            serde_json::to_string_pretty(c)?.as_bytes(),
            0o600,
        )
    }

    /// Open this node's store: the shared PostgreSQL store its config names,
    /// or the embedded one.
    pub fn open_store(&self) -> Result<std::sync::Arc<dyn writ_store::Store>> {
        self.require()?;
        match self.config()?.store {
            Some(url) => Ok(std::sync::Arc::new(
                writ_store::PgStore::connect(&url)
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .with_context(|| format!("opening the shared store {}", redact_url(&url)))?,
            )),
            None => Ok(std::sync::Arc::new(
                writ_store::SqliteStore::open(&self.db()).map_err(|e| anyhow::anyhow!("{e}"))?,
            )),
        }
    }

    /// Open the authority of this data dir: its store, its writ keys, its
    /// config's issuer and log origin; `freshness_ms` bounds how stale a
    /// node of a shared store may be before it denies.
    pub fn open_authority(
        &self,
        skew_secs: u64,
        lineage_depth_max: u32,
        freshness_ms: u64,
    ) -> Result<Arc<Authority>> {
        let cfg = self.config()?;
        let store = self.open_store()?;
        let keys = self.writ_keys()?;
        let config = AuthorityConfig {
            issuer: cfg.issuer,
            log_origin: cfg.origin,
            skew_secs,
            lineage_depth_max,
            freshness_ms,
            ..AuthorityConfig::default()
        };
        let a = Authority::open(
            store,
            Arc::new(SystemClock),
            Arc::new(OsEntropy),
            keys,
            config,
        )
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("opening the authority in {}", self.root.display()))?;
        Ok(Arc::new(a))
    }

    /// Join this data dir (new) to the initialized shared store at `url`
    /// as one more node: its own writ and log keys (private halves stay
    /// here), its writ key recorded as active, the log origin read from the
    /// store. Returns the new writ key's id.
    pub async fn join(&self, url: &str) -> Result<String> {
        if self.is_initialized() {
            bail!("{} is already initialized", self.root.display());
        }
        let store = PgStore::connect(url).map_err(anyhow::Error::msg)?;
        let origin = store
            .latest_checkpoint()
            .map_err(anyhow::Error::msg)?
            .and_then(|c| c.note.lines().next().map(str::to_owned))
            .context(
                "the shared store has no checkpoint yet: run `writ init --store URL` once first",
            )?;
        self.create()?;
        let key = WritKey::generate(&OsEntropy)?;
        self.save_writ_key(&key)?;
        self.mark_current_writ_key(key.kid())?;
        self.log_key()?;
        Authority::join(&store, &SystemClock, &key)
            .await
            .map_err(anyhow::Error::msg)?;
        self.write_config(&Config {
            issuer: "writ".into(),
            origin,
            store: Some(url.to_owned()),
        })?;
        Ok(key.kid().to_owned())
    }

    /// The verifier key of this data dir's log (its origin and public log
    /// key), for checking checkpoints offline.
    pub fn log_verifier(&self) -> Result<NoteVerifier> {
        self.require()?;
        let cfg = self.config()?;
        // Read, never create: a verifier must not make up the key it checks with.
        let key = self
            .load_key("log")
            .context("this data dir has no log key yet (`writ serve` makes one); pass --log-key")?;
        NoteVerifier::new(&cfg.origin, ALG_ED25519, key.verifying_key()).map_err(anyhow::Error::msg)
    }

    /// Store a private key as PKCS#8 PEM, mode 0600.
    pub fn save_key(&self, name: &str, key: &WritKey) -> Result<()> {
        fs::create_dir_all(self.keys())?;
        fs::set_permissions(self.keys(), fs::Permissions::from_mode(0o700))?;
        let pem = key.to_pkcs8_pem().map_err(anyhow::Error::msg)?;
        write_atomic(
            &self.keys().join(format!("{name}.pem")),
            pem.as_bytes(),
            0o600,
        )
    }

    pub fn load_key(&self, name: &str) -> Result<WritKey> {
        let path = self.keys().join(format!("{name}.pem"));
        let meta = fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "{} is readable by others (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
        let pem =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        WritKey::from_pkcs8_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Save a writ signing key (`keys/writ-<kid>.pem`). It signs only once
    /// the store records it as active.
    pub fn save_writ_key(&self, key: &WritKey) -> Result<()> {
        self.save_key(&format!("writ-{}", key.kid()), key)
    }

    /// Note which key signs now (`keys/current`, informational: the store is
    /// the authority on which key is active).
    pub fn mark_current_writ_key(&self, kid: &str) -> Result<()> {
        write_atomic(&self.keys().join("current"), kid.as_bytes(), 0o600)
    }

    /// Every writ private key in `keys/`.
    pub fn writ_keys(&self) -> Result<Vec<WritKey>> {
        let mut keys = Vec::new();
        let dir = fs::read_dir(self.keys())
            .with_context(|| format!("reading {}", self.keys().display()))?;
        for e in dir {
            let name = e?.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name
                .strip_prefix("writ-")
                .and_then(|n| n.strip_suffix(".pem"))
            {
                keys.push(self.load_key(&format!("writ-{stem}"))?);
            }
        }
        Ok(keys)
    }

    pub fn policy_key(&self) -> Result<WritKey> {
        self.load_key("policy")
    }

    /// The key that signs checkpoints (`keys/log.pem`), made on first use for
    /// data dirs created before the log signed checkpoints.
    pub fn log_key(&self) -> Result<WritKey> {
        if !self.keys().join("log.pem").exists() {
            let k = WritKey::generate(&writ_artifact::OsEntropy)?;
            self.save_key("log", &k)?;
        }
        self.load_key("log")
    }
}

/// Write a file so that it is either absent, the old content, or the new
/// content, never half-written: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|s| s.to_str()).unwrap_or("file")
    ));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Read a bundle directory: `*.cedar`, optional `schema.cedarschema`,
/// optional `entities.json`.
pub fn read_bundle_dir(dir: &Path) -> Result<writ_policy::BundleSource> {
    let mut source = writ_policy::BundleSource::default();
    let mut total = 0usize;
    let entries =
        fs::read_dir(dir).with_context(|| format!("reading bundle directory {}", dir.display()))?;
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if !path.is_file() {
            continue;
        }
        let len = e.metadata()?.len() as usize;
        total += len;
        if total > writ_policy::BUNDLE_BYTES_MAX {
            bail!(
                "bundle {} is larger than {} bytes",
                dir.display(),
                writ_policy::BUNDLE_BYTES_MAX
            );
        }
        if name.ends_with(".cedar") {
            source.policies.insert(
                name,
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
            );
        } else if name == "schema.cedarschema" {
            source.schema = Some(fs::read_to_string(&path)?);
        } else if name == "entities.json" {
            let text = fs::read_to_string(&path)?;
            source.entities = Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not JSON", path.display()))?,
            );
        }
    }
    if source.policies.is_empty() {
        bail!("{} holds no *.cedar policy files", dir.display());
    }
    Ok(source)
}

/// `url` with any password replaced by `***` (for messages and logs).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.split_once('@') {
        Some(x) => x,
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}
