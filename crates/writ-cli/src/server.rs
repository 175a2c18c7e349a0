//! `writ serve`, and starting a server in-process (demo, bench).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use std::time::Duration;
use writ_artifact::DEFAULT_SKEW_SECS;
use writ_authority::Authority;
use writ_gate::{Exit, Global};
use writ_server::ServerState;

use crate::datadir::{is_postgres_url, redact_url, DataDir};

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WRIT_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// Clock skew tolerated when verifying writs, in seconds.
    #[arg(long, default_value_t = DEFAULT_SKEW_SECS)]
    pub skew_secs: u64,
    /// Deepest lineage allowed (a root is depth 0).
    #[arg(long, default_value_t = 8)]
    pub lineage_depth_max: u32,
    /// How often a signed checkpoint is published while the log grows, in
    /// milliseconds (`POST /v1/log/checkpoint` publishes on demand).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    pub checkpoint_interval_ms: u64,
    /// A witness to ask for a cosignature of every checkpoint, as
    /// `URL=VKEY` (the witness's submission URL and its cosigner key, as
    /// `writ witness` prints it). Repeatable.
    #[arg(long = "witness", value_name = "URL=VKEY")]
    pub witnesses: Vec<String>,
    /// Serve as a node of the mesh on this shared PostgreSQL store
    /// (`postgres://user@host:port/db`, initialized once by `writ init
    /// --store`). A data dir that does not exist yet joins it as a new node.
    /// Default: the store named by the data dir's config.
    #[arg(long, env = "WRIT_STORE")]
    pub store: Option<String>,
    /// On a shared store: deny with `authority_unavailable` (and report not
    /// ready) once this node has gone this long without confirming it holds
    /// the current policy and revocations, in milliseconds.
    #[arg(long, default_value_t = writ_authority::FRESHNESS_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(40..))]
    pub freshness_ms: u64,
    /// Decision requests (authorize, AuthZEN evaluation, execution start and
    /// renewal) each principal may make a second; over it, 429 with
    /// Retry-After (enforcement points deny `authority_unavailable`). 0: no
    /// limit.
    #[arg(long, value_name = "N", default_value_t = writ_server::rate::RATE_LIMIT_DEFAULT)]
    pub rate_limit: u32,
    /// Requests a principal may make at once above `--rate-limit` (default:
    /// twice it).
    #[arg(long, value_name = "N")]
    pub rate_burst: Option<u32>,
    /// Also listen on a Unix socket (default: DATA_DIR/writ.sock). A
    /// caller there needs no token: the kernel names it (uid, gid, pid,
    /// and the executable behind the pid, measured), and the data dir's
    /// peercred.json maps it to a principal, e.g. {"rules": [{"uid": 1000,
    /// "principal": "User::\"alice\""}]}. A program writ governs is
    /// never taken for its user (docs/spec/identity.md). Clients reach it
    /// as WRIT_SERVER=unix:PATH; `writ exec` and `writ mcp-proxy` use
    /// DATA_DIR/writ.sock on their own when neither a server nor a token
    /// is set.
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    pub unix: Option<Option<PathBuf>>,
    /// Permissions of the Unix socket (octal): who may connect at all
    /// (the owner only by default; 660 for a group).
    #[arg(long, value_name = "MODE", default_value = "600", value_parser = parse_mode)]
    pub unix_mode: u32,
    #[command(flatten)]
    pub net: crate::listen::ListenArgs,
}

impl ServeArgs {
    /// [`ServeArgs::defaults`] without rate limits: benchmarks measure the
    /// authority, not the limiter.
    pub fn unlimited() -> ServeArgs {
        ServeArgs {
            rate_limit: 0,
            ..ServeArgs::defaults()
        }
    }

    /// The settings `writ serve` uses when none are given (demo, bench, tests).
    pub fn defaults() -> ServeArgs {
        ServeArgs {
            listen: "127.0.0.1:0".into(),
            skew_secs: DEFAULT_SKEW_SECS,
            lineage_depth_max: 8,
            checkpoint_interval_ms: 1000,
            witnesses: Vec::new(),
            store: None,
            freshness_ms: writ_authority::FRESHNESS_MS_DEFAULT,
            rate_limit: writ_server::rate::RATE_LIMIT_DEFAULT,
            rate_burst: None,
            unix: None,
            unix_mode: 0o600,
            net: crate::listen::ListenArgs {
                max_connections: writ_server::listen::MAX_CONNECTIONS_DEFAULT,
                request_timeout_secs: writ_server::listen::REQUEST_TIMEOUT_SECS_DEFAULT,
                ..Default::default()
            },
        }
    }
}

fn parse_witness(s: &str) -> Result<writ_server::WitnessTarget> {
    let (url, vkey) = s
        .split_once('=')
        .with_context(|| format!("--witness {s:?}: expected URL=VKEY"))?;
    let key = writ_log::note::NoteVerifier::parse(vkey)
        .map_err(|e| anyhow::anyhow!("--witness {s:?}: {e}"))?;
    if key.alg != writ_log::note::ALG_COSIGNATURE_V1 {
        anyhow::bail!("--witness {s:?}: the key is not a cosigner (cosignature/v1) key");
    }
    Ok(writ_server::WitnessTarget {
        url: url.to_owned(),
        key,
    })
}

/// One data dir, one server: a second `writ serve` on the same store would
/// append under the first one's feet (each writer holds the next log index
/// in memory), so the first takes an exclusive lock on `serve.lock` in the
/// data dir, released when its process ends, however it ends.
fn lock_data_dir(dir: &DataDir) -> Result<Option<std::fs::File>> {
    if !dir.root.is_dir() {
        // Not initialized: opening the authority says so.
        return Ok(None);
    }
    let path = dir.root.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => anyhow::bail!(
            "another writ serve is serving {} (it holds {}); one data dir has one server \
             (for a mesh of nodes, give each node its own --dir on a shared --store)",
            dir.root.display(),
            path.display()
        ),
        Err(e) => Err(anyhow::anyhow!("cannot lock {}: {e}", path.display())),
    }
}

/// A running in-process server.
pub struct Running {
    pub authority: Arc<Authority>,
    pub addr: SocketAddr,
    /// `https` or `http`.
    pub scheme: &'static str,
    pub shutdown: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }
}

/// Bind `a.listen` and serve `dir` in a background task, publishing
/// checkpoints every `a.checkpoint_interval_ms`.
pub async fn start(dir: &DataDir, a: &ServeArgs) -> Result<Running> {
    join_or_check_store(dir, a).await?;
    let lock = lock_data_dir(dir)?;
    let authority = dir.open_authority(a.skew_secs, a.lineage_depth_max, a.freshness_ms)?;
    let witnesses = a
        .witnesses
        .iter()
        .map(|w| parse_witness(w))
        .collect::<Result<Vec<_>>>()?;
    // What this server's own requests (to witnesses) trust and present: a
    // setting that cannot be used stops it here, not at the first call.
    let http =
        writ_tls::client::http_client(reqwest::Client::builder().timeout(Duration::from_secs(10)))
            .context("WRIT_CA / WRIT_CLIENT_CERT / WRIT_CLIENT_KEY")?;
    let bound = bind(dir, a).await?;
    let mut state = ServerState::new(authority.clone());
    state.http = http;
    state.witnesses = witnesses;
    configure(&mut state, dir, a, &bound)?;
    // Record the log key and sign a first checkpoint before answering
    // anyone, so the log does not change under a client's first reads (in
    // a mesh only the checkpoint leader signs).
    if let Some(log) = &state.log {
        if let Err(e) = writ_server::publish_and_witness(&state, log).await {
            tracing::error!(error = %e, "no checkpoint at start");
        }
    }
    save_keys_in(&mut state, dir);
    let (addr, scheme) = (bound.addr, bound.scheme);
    let (shutdown, task) = spawn(Arc::new(state), bound, lock, a.checkpoint_interval_ms);
    Ok(Running {
        authority,
        addr,
        scheme,
        shutdown,
        task,
    })
}

/// With `--store`: a data dir that does not exist yet joins the shared
/// store as a new node; an existing one must be a node of that store.
async fn join_or_check_store(dir: &DataDir, a: &ServeArgs) -> Result<()> {
    let Some(url) = &a.store else {
        return Ok(());
    };
    if !is_postgres_url(url) {
        anyhow::bail!("--store {url:?}: expected a postgres://user@host:port/db URL");
    }
    if !dir.is_initialized() {
        let kid = dir.join(url).await?;
        eprintln!(
            "joined the shared store {} as a new node (data dir {}, writ key {kid})",
            redact_url(url),
            dir.root.display()
        );
    } else if dir.config()?.store.as_deref() != Some(url.as_str()) {
        anyhow::bail!(
            "{} is a data dir of another store; give a new --dir to join {}",
            dir.root.display(),
            redact_url(url)
        );
    }
    Ok(())
}

/// The sockets a server listens on, bound.
struct Bound {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    unix: Option<tokio::net::UnixListener>,
    listen: writ_server::Listen,
    scheme: &'static str,
}

/// Bind `a.listen` (and the Unix socket with `--unix`); TLS settings are
/// read here and reloaded on SIGHUP.
async fn bind(dir: &DataDir, a: &ServeArgs) -> Result<Bound> {
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let addr = listener.local_addr()?;
    let unix = match &a.unix {
        Some(p) => {
            let path = p
                .clone()
                .unwrap_or_else(|| dir.root.join(writ_gate::client::LOCAL_SOCKET));
            Some(bind_unix(&path, a.unix_mode)?)
        }
        None => None,
    };
    let listen = a.net.listen(addr)?;
    let scheme = crate::listen::scheme(&listen);
    crate::listen::reload_on_sighup(&listen);
    Ok(Bound {
        listener,
        addr,
        unix,
        listen,
        scheme,
    })
}

/// The server's limits, its caller rules on the Unix socket, its log
/// publisher and its name in the mesh.
fn configure(state: &mut ServerState, dir: &DataDir, a: &ServeArgs, bound: &Bound) -> Result<()> {
    // A quarter of the connections for one principal's event streams (each
    // `writ exec` holds one): nobody holds them all.
    state.streams_per_principal = (bound.listen.max_connections / 4).max(16);
    state.rate = writ_server::rate::Limiter::new(
        a.rate_limit,
        a.rate_burst.unwrap_or(a.rate_limit.saturating_mul(2)),
    );
    if a.unix.is_some() {
        state.peercred = Some(Arc::new(writ_identity::peercred::Rules::load(&dir.root)?));
    }
    let cfg = dir.config()?;
    state.log = Some(Arc::new(
        state
            .authority
            .log_publisher(&cfg.origin, dir.log_key()?)
            .map_err(|e| anyhow::anyhow!("log origin {:?}: {e}", cfg.origin))?,
    ));
    let addr = bound.addr;
    state.node_id = format!("{}@{addr}", host_name());
    state.url = format!("{}://{addr}", bound.scheme);
    Ok(())
}

/// A writ key the server makes (rotation) is saved in `dir`'s `keys/`, and
/// the one that signs is noted there.
fn save_keys_in(state: &mut ServerState, dir: &DataDir) {
    let keys_dir = DataDir::new(dir.root.clone());
    state.key_saver = Some(Box::new(move |k| {
        keys_dir
            .save_writ_key(k)
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
    }));
    let keys_dir = DataDir::new(dir.root.clone());
    state.key_activated = Some(Box::new(move |kid| {
        keys_dir
            .mark_current_writ_key(kid)
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
    }));
}

/// Serve `state` on `bound` in a task, with the checkpoint publisher, the
/// mesh follower and the heartbeat beside it; the data dir's lock is held
/// until the task ends. Returns the sender that stops it, and the task.
fn spawn(
    state: Arc<ServerState>,
    bound: Bound,
    lock: Option<std::fs::File>,
    checkpoint_interval_ms: u64,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let publisher = tokio::spawn(writ_server::run_publisher(
        state.clone(),
        Duration::from_millis(checkpoint_interval_ms),
    ));
    // On a shared store: follow the other nodes' changes, report to the mesh.
    let follower = tokio::spawn(state.authority.clone().follow());
    let heartbeat = tokio::spawn(writ_server::run_heartbeat(state.clone()));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // Held while this server runs.
        let _lock = lock;
        let authority = state.authority.clone();
        let out = writ_server::serve_on(
            state,
            bound.listener,
            bound.unix,
            bound.listen,
            async move {
                let _ = rx.await;
            },
        )
        .await;
        publisher.abort();
        follower.abort();
        heartbeat.abort();
        authority.resign();
        out
    });
    (tx, task)
}

pub async fn serve(g: &Global, a: ServeArgs) -> Result<Exit> {
    let dir = DataDir::new(&g.dir);
    let running = start(&dir, &a).await?;
    tracing::info!(
        url = %running.url(),
        policy = %running.authority.active_policy(),
        log_size = running.authority.log_size(),
        "writ serving"
    );
    eprintln!(
        "writ serving on {} (data dir {}); Ctrl-C stops",
        running.url(),
        dir.root.display()
    );
    if g.json {
        // One line a script can read the address from (`--listen
        // 127.0.0.1:0` picks a free port).
        let root = std::fs::canonicalize(&dir.root).unwrap_or_else(|_| dir.root.clone());
        writ_gate::print_json_line(&serde_json::json!({
            "url": running.url(),
            "dir": root.display().to_string(),
            "policy": running.authority.active_policy(),
        }))?;
    }
    wait_for_signal().await;
    let _ = running.shutdown.send(());
    let _ = running.task.await;
    Ok(Exit::Ok)
}

fn parse_mode(s: &str) -> std::result::Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal mode (e.g. 600, 660)"))
}

/// Bind the Unix socket at `path` with `mode`. It is bound inside a new
/// directory only this user can enter, given its mode there, and renamed
/// into place, so no one connects before the mode holds. A stale socket
/// file (nothing listens: `ECONNREFUSED`) is replaced; a live one, or one
/// that cannot be tried, is an error.
fn bind_unix(path: &Path, mode: u32) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, PermissionsExt as _};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!("--unix {}: exists and is not a socket", path.display());
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .with_context(|| format!("removing the stale socket {}", path.display()))?;
            }
            Ok(_) => anyhow::bail!(
                "--unix {}: another server is listening on it",
                path.display()
            ),
            Err(e) => anyhow::bail!(
                "--unix {}: cannot tell whether a server listens on it: {e}",
                path.display()
            ),
        }
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = parent.join(format!(".writ-sock-{}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("creating {}", private.display()))?;
    let staged = private.join("s");
    let bound = (|| {
        let listener = tokio::net::UnixListener::bind(&staged)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {mode:o} {}", path.display()))?;
        std::fs::rename(&staged, path)
            .with_context(|| format!("moving the socket to {}", path.display()))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    bound
}

/// The machine's host name (Linux), for this node's id in `GET /v1/mesh`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
