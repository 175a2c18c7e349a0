//! The shared store: PostgreSQL, for many writ nodes acting as one authority.
//!
//! Every node runs the same group commit as the embedded store, against one
//! database. A batch takes the row lock on `writ_head` (the log size and the
//! state sequence) for its transaction, so appends from all nodes get one
//! total order and one Merkle tree; subtree hashes are written in the same
//! transaction as the leaves that complete them. Statements of a batch are
//! pipelined on the writer's connection: a batch costs about one round trip
//! plus its commit, however many transactions it holds.
//!
//! Nonces are spent by a primary key (`executions.jti`), so a writ spent on one
//! node is a conflict on every other. Transactions that change what the
//! authority keeps in memory (revocations, activations, principals, keys) bump
//! `writ_head.state_seq` and `NOTIFY writ_state`; nodes listen and reload.
//! Exactly one node holds the session advisory lock [`LEADER_LOCK`] and
//! signs checkpoints; when its session ends the lock passes to the next node
//! that asks.
//!
//! The [`Store`] trait is synchronous for reads; this store runs its own small
//! runtime and a caller's thread waits for the answer (bounded by
//! [`READ_TIMEOUT`]), so it may be called from any thread, async or not.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, Row};

use crate::types::*;
use crate::{node_key, node_of_key, Store};
use writ_log::merkle::{self, Frontier, NodeReader, ProofError, ReadError};
use writ_log::Hash;

/// Most transactions one group commit takes.
const BATCH_TX_MAX: usize = 1024;
/// Most transactions waiting for the writer before submitters are refused.
const QUEUE_TX_MAX: usize = 16 * 1024;
/// How long a read waits for the database.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Idle read connections kept.
const READERS_MAX: usize = 8;
/// The advisory lock whose holder signs checkpoints ("writ" in ASCII).
pub const LEADER_LOCK: i64 = 0x7772_6974;
/// The advisory lock serializing migrations.
const MIGRATE_LOCK: i64 = 0x7772_6974_6d67;
/// Channel notified when a commit changed state the authority caches.
const STATE_CHANNEL: &str = "writ_state";
/// SQLSTATE raised by `writ_expect_one` when an update found no row.
const NO_ROW: &str = "WR001";

/// Schema migrations, applied in order; `writ_schema.version` is how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE writ_head (
    id INT PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL,
    state_seq BIGINT NOT NULL
);
INSERT INTO writ_head (id, size, state_seq) VALUES (1, 0, 0);
CREATE TABLE entries (
    idx BIGINT PRIMARY KEY,
    leaf BYTEA NOT NULL,
    leaf_hash BYTEA NOT NULL
);
CREATE TABLE tree_nodes (
    key BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL
);
CREATE TABLE writs (
    jti TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    audience TEXT NOT NULL,
    parent TEXT,
    root TEXT NOT NULL,
    depth BIGINT NOT NULL,
    scope TEXT NOT NULL,
    policy TEXT NOT NULL,
    iat BIGINT NOT NULL,
    exp BIGINT NOT NULL,
    log_index BIGINT NOT NULL
);
CREATE INDEX writs_parent ON writs(parent) WHERE parent IS NOT NULL;
CREATE TABLE executions (
    jti TEXT PRIMARY KEY,
    started_ms BIGINT NOT NULL,
    finished_ms BIGINT,
    exit_status BIGINT,
    outcome TEXT,
    lease_exp BIGINT
);
CREATE TABLE revocations (
    target TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE principals (
    uid TEXT PRIMARY KEY,
    token_hash BYTEA NOT NULL UNIQUE,
    admin BOOLEAN NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE bundles (
    hash TEXT PRIMARY KEY,
    signed_json TEXT NOT NULL
);
CREATE TABLE activations (
    seq BIGSERIAL PRIMARY KEY,
    hash TEXT NOT NULL REFERENCES bundles(hash),
    time_ms BIGINT NOT NULL,
    by TEXT NOT NULL
);
CREATE TABLE checkpoints (
    size BIGINT PRIMARY KEY,
    note TEXT NOT NULL,
    time_ms BIGINT NOT NULL
);
CREATE TABLE keys (
    kid TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    verify_until_ms BIGINT
);
CREATE TABLE mesh_nodes (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    seen_ms BIGINT NOT NULL,
    policy TEXT NOT NULL,
    revocations BIGINT NOT NULL,
    log_size BIGINT NOT NULL,
    state_seq BIGINT NOT NULL,
    leader BOOLEAN NOT NULL
);
CREATE FUNCTION writ_expect_one(n BIGINT, what TEXT) RETURNS BIGINT AS $$
BEGIN
    IF n <> 1 THEN
        RAISE EXCEPTION '%', what USING ERRCODE = 'WR001';
    END IF;
    RETURN n;
END
$$ LANGUAGE plpgsql;
"#,
    r#"
ALTER TABLE principals ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE principals ADD COLUMN auditor BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE executions ADD COLUMN cred_hash BYTEA;
ALTER TABLE writs ADD COLUMN via TEXT;
CREATE TABLE entry_content (
    idx BIGINT PRIMARY KEY,
    salt BYTEA NOT NULL,
    content BYTEA NOT NULL
);
CREATE TABLE delegations (
    jti TEXT NOT NULL,
    principal TEXT NOT NULL,
    PRIMARY KEY (jti, principal)
);
"#,
    r#"
CREATE TABLE issuers (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
"#,
    r#"
ALTER TABLE writs ADD COLUMN holder TEXT;
"#,
];

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn pg_unavailable(e: tokio_postgres::Error) -> StoreError {
    // The server's own message says more than the client's summary; a
    // connection's error names its cause (refused, a name that does not
    // resolve, TLS) only in its source chain.
    match e.as_db_error() {
        Some(db) => StoreError::Unavailable(format!("postgres: {}", db.message())),
        None => {
            let mut msg = format!("postgres: {e}");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                let text = c.to_string();
                if !msg.contains(&text) {
                    msg.push_str(": ");
                    msg.push_str(&text);
                }
                cause = c.source();
            }
            StoreError::Unavailable(msg)
        }
    }
}

fn i64_of(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Integrity(format!("{v} does not fit a BIGINT")))
}

fn u64_of(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Integrity(format!("stored value {v} is negative")))
}

fn hash_of(v: Vec<u8>) -> Result<Hash, StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Integrity("a stored hash is not 32 bytes".into()))
}

/// `(level, index)` of a stored `tree_nodes.key`.
fn stored_node(key: i64) -> Result<(u8, u64), StoreError> {
    u64_of(key)?;
    Ok(node_of_key(key))
}

type Job = (Tx, oneshot::Sender<TxResult>);

struct Pool {
    dial: Dial,
    idle: Mutex<Vec<Client>>,
}

/// How to open a connection: the parsed URL and its TLS (`tls.rs`).
#[derive(Clone)]
struct Dial {
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl Pool {
    async fn get(&self) -> Result<Client, StoreError> {
        loop {
            let c = self.idle.lock().ok().and_then(|mut v| v.pop());
            match c {
                Some(c) if !c.is_closed() => return Ok(c),
                Some(_) => continue,
                None => return connect(&self.dial).await,
            }
        }
    }

    fn put(&self, c: Client) {
        if c.is_closed() {
            return;
        }
        if let Ok(mut v) = self.idle.lock() {
            if v.len() < READERS_MAX {
                v.push(c);
            }
        }
    }
}

async fn connect(dial: &Dial) -> Result<Client, StoreError> {
    let (client, conn) =
        tokio::time::timeout(CONNECT_TIMEOUT, dial.config.connect(dial.tls.clone()))
            .await
            .map_err(|_| unavailable("postgres: connecting timed out"))?
            .map_err(pg_unavailable)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

/// The shared PostgreSQL store.
pub struct PgStore {
    pool: Arc<Pool>,
    queue: mpsc::Sender<Job>,
    changes: watch::Receiver<u64>,
    leader: Arc<tokio::sync::Mutex<Option<Client>>>,
    /// The runtime running the writer, the listener and every query; shut
    /// down in the background on drop (so dropping from async code is fine).
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl PgStore {
    /// Connect to the database at `url` (`postgres://user@host:port/db`),
    /// apply any schema migrations not yet applied, and start the writer.
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        // libpq's `sslmode` and `sslrootcert`, which tokio-postgres does not
        // read in full, are taken out and applied here.
        let (url, tls) = crate::pgtls::from_url(url)?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Unavailable(format!(
                "bad PostgreSQL URL (postgres://user@host:port/db): {e}"
            ))
        })?;
        config.application_name("writ");
        config.connect_timeout(CONNECT_TIMEOUT);
        config.ssl_mode(tls.mode);
        let dial = Dial {
            config,
            tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls.config),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("writ-pg")
            .enable_all()
            .build()
            .map_err(unavailable)?;
        let pool = Arc::new(Pool {
            dial: dial.clone(),
            idle: Mutex::new(Vec::new()),
        });
        let migrate_pool = pool.clone();
        let first = block_on(&rt, async move {
            let mut c = migrate_pool.get().await?;
            migrate(&mut c).await?;
            migrate_pool.put(c);
            Ok(())
        });
        if let Err(e) = first {
            // A runtime dropped from async code panics (the caller may be
            // on one): shut it down in the background, and report the cause.
            rt.shutdown_background();
            return Err(e);
        }
        let (queue, rx) = mpsc::channel::<Job>(QUEUE_TX_MAX);
        rt.spawn(writer(dial.clone(), rx));
        let (changes_tx, changes) = watch::channel(0u64);
        rt.spawn(listener(dial, changes_tx));
        Ok(PgStore {
            pool,
            queue,
            changes,
            leader: Arc::new(tokio::sync::Mutex::new(None)),
            rt: Some(rt),
        })
    }

    /// Run `f` on the store's runtime with a pooled connection and wait.
    fn read<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = (Client, Result<T, StoreError>)> + Send + 'static,
    {
        let Some(rt) = &self.rt else {
            return Err(unavailable("the store is shut down"));
        };
        let pool = self.pool.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let out = match pool.get().await {
                Ok(c) => {
                    let (c, out) = f(c).await;
                    pool.put(c);
                    out
                }
                Err(e) => Err(e),
            };
            let _ = tx.send(out);
        });
        rx.recv_timeout(READ_TIMEOUT)
            .map_err(|_| unavailable("postgres: no answer within the read timeout"))?
    }

    /// One query's rows.
    fn rows(&self, sql: &'static str, params: Vec<Param>) -> Result<Vec<Row>, StoreError> {
        self.read(move |c| async move {
            let out = query(&c, sql, &params).await.map_err(pg_unavailable);
            (c, out)
        })
    }

    /// Register or refresh this node's row in `mesh_nodes`.
    fn heartbeat_row(&self, n: &NodeRecord) -> Result<(), StoreError> {
        let params = vec![
            Param::Text(n.id.clone()),
            Param::Text(n.url.clone()),
            Param::Int(i64_of(n.started_ms)?),
            Param::Int(i64_of(n.seen_ms)?),
            Param::Text(n.policy.clone()),
            Param::Int(i64_of(n.revocations)?),
            Param::Int(i64_of(n.log_size)?),
            Param::Int(i64_of(n.state_seq)?),
            Param::Bool(n.leader),
        ];
        self.rows(
            "INSERT INTO mesh_nodes (id, url, started_ms, seen_ms, policy, revocations, log_size, state_seq, leader)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (id) DO UPDATE SET url = excluded.url, started_ms = excluded.started_ms,
               seen_ms = excluded.seen_ms, policy = excluded.policy, revocations = excluded.revocations,
               log_size = excluded.log_size, state_seq = excluded.state_seq, leader = excluded.leader",
            params,
        )?;
        Ok(())
    }

    /// Every node that ever registered, by id.
    fn mesh_rows(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.rows(
            "SELECT id, url, started_ms, seen_ms, policy, revocations, log_size, state_seq, leader FROM mesh_nodes ORDER BY id",
            vec![],
        )?
        .into_iter()
        .map(|r| {
            Ok(NodeRecord {
                id: r.try_get(0).map_err(pg_unavailable)?,
                url: r.try_get(1).map_err(pg_unavailable)?,
                started_ms: u64_of(r.try_get(2).map_err(pg_unavailable)?)?,
                seen_ms: u64_of(r.try_get(3).map_err(pg_unavailable)?)?,
                policy: r.try_get(4).map_err(pg_unavailable)?,
                revocations: u64_of(r.try_get(5).map_err(pg_unavailable)?)?,
                log_size: u64_of(r.try_get(6).map_err(pg_unavailable)?)?,
                state_seq: u64_of(r.try_get(7).map_err(pg_unavailable)?)?,
                leader: r.try_get(8).map_err(pg_unavailable)?,
            })
        })
        .collect()
    }

    /// Run a Merkle computation over the stored tree of `size` in two passes:
    /// the first learns which nodes it reads (the shape does not depend on
    /// the hashes), one query fetches them, the second computes.
    fn with_tree<T>(
        &self,
        size: u64,
        f: impl Fn(&dyn NodeReader) -> Result<T, ProofError>,
    ) -> Result<T, ProofError> {
        let log_size = self
            .log_size()
            .map_err(|e| ProofError::Unavailable(e.to_string()))?;
        if size > log_size {
            return Err(ProofError::BeyondLog { size, log_size });
        }
        let wanted = Recording::default();
        // The first pass's result is made of placeholder hashes; only the
        // reads matter.
        let _ = f(&wanted);
        let keys = wanted.0.into_inner().unwrap_or_default();
        let nodes = self
            .fetch_nodes(keys)
            .map_err(|e| ProofError::Unavailable(e.to_string()))?;
        f(&nodes)
    }

    fn fetch_nodes(&self, keys: Vec<(u8, u64)>) -> Result<Fetched, StoreError> {
        self.read(move |c| async move {
            let out = fetch_nodes(&c, &keys).await;
            (c, out)
        })
    }
}

fn block_on<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    f: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv_timeout(READ_TIMEOUT * 2)
        .map_err(|_| unavailable("postgres: no answer in time"))?
}

async fn migrate(c: &mut Client) -> Result<(), StoreError> {
    let t = c.transaction().await.map_err(pg_unavailable)?;
    t.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(pg_unavailable)?;
    t.batch_execute("CREATE TABLE IF NOT EXISTS writ_schema (version INT NOT NULL)")
        .await
        .map_err(pg_unavailable)?;
    let version: i32 = match t
        .query_opt("SELECT version FROM writ_schema", &[])
        .await
        .map_err(pg_unavailable)?
    {
        Some(r) => r.try_get(0).map_err(pg_unavailable)?,
        None => {
            t.execute("INSERT INTO writ_schema (version) VALUES (0)", &[])
                .await
                .map_err(pg_unavailable)?;
            0
        }
    };
    let known = MIGRATIONS.len() as i32;
    if version > known {
        return Err(StoreError::Integrity(format!(
            "store schema version {version} is newer than this writ ({known}); upgrade writ"
        )));
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        t.batch_execute(m)
            .await
            .map_err(|e| unavailable(format!("migration {}: {}", i + 1, pg_unavailable(e))))?;
        tracing::info!(version = i + 1, "applied a store migration");
    }
    t.execute("UPDATE writ_schema SET version = $1", &[&known])
        .await
        .map_err(pg_unavailable)?;
    t.commit().await.map_err(pg_unavailable)
}

/// Owned query parameters with their PostgreSQL types.
#[derive(Debug, Clone)]
enum Param {
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
    Bytes(Vec<u8>),
    OptBytes(Option<Vec<u8>>),
    Bool(bool),
    OptBool(Option<bool>),
    Ints(Vec<i64>),
    Bytess(Vec<Vec<u8>>),
}

impl Param {
    fn typed(&self) -> (&(dyn ToSql + Sync), Type) {
        match self {
            Param::Int(v) => (v, Type::INT8),
            Param::OptInt(v) => (v, Type::INT8),
            Param::Text(v) => (v, Type::TEXT),
            Param::OptText(v) => (v, Type::TEXT),
            Param::Bytes(v) => (v, Type::BYTEA),
            Param::OptBytes(v) => (v, Type::BYTEA),
            Param::Bool(v) => (v, Type::BOOL),
            Param::OptBool(v) => (v, Type::BOOL),
            Param::Ints(v) => (v, Type::INT8_ARRAY),
            Param::Bytess(v) => (v, Type::BYTEA_ARRAY),
        }
    }
}

/// One statement in one round trip (no separate prepare).
async fn query(c: &Client, sql: &str, params: &[Param]) -> Result<Vec<Row>, tokio_postgres::Error> {
    let typed: Vec<(&(dyn ToSql + Sync), Type)> = params.iter().map(Param::typed).collect();
    c.query_typed(sql, &typed).await
}

/// Nodes fetched for one computation; a node not fetched is a read error.
struct Fetched(HashMap<(u8, u64), Hash>);

impl NodeReader for Fetched {
    fn node(&self, level: u8, index: u64) -> Result<Hash, ReadError> {
        self.0.get(&(level, index)).copied().ok_or(ReadError {
            level,
            index,
            message: "not stored".into(),
        })
    }
}

#[derive(Default)]
struct Recording(Mutex<Vec<(u8, u64)>>);

impl NodeReader for Recording {
    fn node(&self, level: u8, index: u64) -> Result<Hash, ReadError> {
        if let Ok(mut v) = self.0.lock() {
            v.push((level, index));
        }
        Ok([0; 32])
    }
}

async fn fetch_nodes(c: &Client, keys: &[(u8, u64)]) -> Result<Fetched, StoreError> {
    let mut leaves = Vec::new();
    let mut inner = Vec::new();
    for &(l, i) in keys {
        if l == 0 {
            leaves.push(i64_of(i)?);
        } else {
            inner.push(node_key(l, i));
        }
    }
    let mut out = HashMap::new();
    if !leaves.is_empty() {
        for r in query(
            c,
            "SELECT idx, leaf_hash FROM entries WHERE idx = ANY($1)",
            &[Param::Ints(leaves)],
        )
        .await
        .map_err(pg_unavailable)?
        {
            let idx: i64 = r.try_get(0).map_err(pg_unavailable)?;
            out.insert(
                (0, u64_of(idx)?),
                hash_of(r.try_get(1).map_err(pg_unavailable)?)?,
            );
        }
    }
    if !inner.is_empty() {
        for r in query(
            c,
            "SELECT key, hash FROM tree_nodes WHERE key = ANY($1)",
            &[Param::Ints(inner)],
        )
        .await
        .map_err(pg_unavailable)?
        {
            out.insert(
                stored_node(r.try_get(0).map_err(pg_unavailable)?)?,
                hash_of(r.try_get(1).map_err(pg_unavailable)?)?,
            );
        }
    }
    Ok(Fetched(out))
}

async fn load_frontier(c: &Client, size: u64) -> Result<Frontier, StoreError> {
    let wanted = Recording::default();
    let _ = Frontier::load(&wanted, size);
    let keys = wanted.0.into_inner().unwrap_or_default();
    let nodes = fetch_nodes(c, &keys).await?;
    Frontier::load(&nodes, size).map_err(|e| {
        StoreError::Integrity(format!(
            "the stored Merkle tree of {size} entries is incomplete: {e}"
        ))
    })
}

/// Follow `NOTIFY writ_state` on a connection of its own, reconnecting when
/// it drops; each notification (and each reconnection, which may have missed
/// some) bumps the watch.
async fn listener(dial: Dial, changes: watch::Sender<u64>) {
    let mut bumps: u64 = 0;
    loop {
        match dial.config.connect(dial.tls.clone()).await {
            Ok((client, mut conn)) => {
                let (note_tx, mut note_rx) = mpsc::unbounded_channel::<()>();
                let driver = tokio::spawn(async move {
                    let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                    use futures_util::StreamExt;
                    while let Some(m) = stream.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(_)) => {
                                if note_tx.send(()).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {STATE_CHANNEL}"))
                    .await
                    .is_ok()
                {
                    bumps += 1;
                    let _ = changes.send(bumps);
                    while note_rx.recv().await.is_some() {
                        bumps += 1;
                        if changes.send(bumps).is_err() {
                            driver.abort();
                            return;
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::debug!(error = %e, "cannot reach postgres to listen"),
        }
        if changes.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn writer(dial: Dial, mut rx: mpsc::Receiver<Job>) {
    let mut client: Option<Client> = None;
    // The right edge of the tree as this writer last committed it; used when
    // no other node appended since.
    let mut cache: Option<Frontier> = None;
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH_TX_MAX);
    while let Some(job) = rx.recv().await {
        batch.push(job);
        while batch.len() < BATCH_TX_MAX {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = connect(&dial).await.ok();
        }
        let results: Vec<TxResult> = match &client {
            None => {
                let e = StoreError::Unavailable("postgres: cannot connect".into());
                batch.iter().map(|_| Err(e.clone())).collect()
            }
            Some(c) => match commit_batch(c, &batch, &mut cache).await {
                Ok(r) => r,
                Err(e) => {
                    // Nothing of the batch is acknowledged.
                    let _ = c.batch_execute("ROLLBACK").await;
                    cache = None;
                    tracing::error!(error = %e, txs = batch.len(), "group commit failed; every transaction in it is refused");
                    batch.iter().map(|_| Err(e.clone())).collect()
                }
            },
        };
        for ((_, reply), r) in batch.drain(..).zip(results) {
            let _ = reply.send(r);
        }
    }
}

/// One statement of a transaction, and what a constraint failure means.
struct Stmt {
    sql: &'static str,
    params: Vec<Param>,
    conflict: Option<String>,
}

impl Stmt {
    fn new(sql: &'static str, params: Vec<Param>) -> Stmt {
        Stmt {
            sql,
            params,
            conflict: None,
        }
    }
    fn or_conflict(mut self, msg: String) -> Stmt {
        self.conflict = Some(msg);
        self
    }
}

/// What a batch adds to the tree and the head, beyond its statements.
#[derive(Clone)]
struct Staged {
    next: u64,
    frontier: Frontier,
    entries: Vec<(i64, Vec<u8>, Vec<u8>)>,
    nodes: Vec<(i64, Vec<u8>)>,
    state_changes: i64,
}

impl Staged {
    fn truncate_to(&mut self, at: &Staged) {
        self.next = at.next;
        self.frontier = at.frontier.clone();
        self.entries.truncate(at.entries.len());
        self.nodes.truncate(at.nodes.len());
        self.state_changes = at.state_changes;
    }
}

/// Plan `tx`: its appends go into `staged`, its other ops become statements.
fn plan(tx: &Tx, staged: &mut Staged) -> Result<(Vec<u64>, Vec<Stmt>), StoreError> {
    let mut indices = Vec::new();
    let mut stmts = Vec::new();
    for op in &tx.ops {
        match op {
            Op::Append { leaf } => {
                let hash = writ_log::leaf_hash(leaf);
                let index = staged.next;
                staged.entries.push((i64_of(index)?, leaf.clone(), hash.to_vec()));
                let nodes = &mut staged.nodes;
                staged
                    .frontier
                    .push(hash, |l, i, h| nodes.push((node_key(l, i), h.to_vec())));
                indices.push(index);
                staged.next += 1;
            }
            Op::RecordWrit(w) => stmts.push(
                Stmt::new(
                    "INSERT INTO writs (jti, principal, action, resource, audience, parent, root, depth, scope, policy, iat, exp, log_index, via, holder)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                    vec![
                        Param::Text(w.jti.clone()),
                        Param::Text(w.principal.clone()),
                        Param::Text(w.action.clone()),
                        Param::Text(w.resource.clone()),
                        Param::Text(w.audience.clone()),
                        Param::OptText(w.parent.clone()),
                        Param::Text(w.root.clone()),
                        Param::Int(i64::from(w.depth)),
                        Param::Text(w.scope.clone()),
                        Param::Text(w.policy.clone()),
                        Param::Int(i64_of(w.iat)?),
                        Param::Int(i64_of(w.exp)?),
                        Param::Int(i64_of(indices.last().copied().unwrap_or(w.log_index))?),
                        Param::OptText(w.via.clone()),
                        Param::OptText(w.holder.clone()),
                    ],
                )
                .or_conflict(format!("writ {} already recorded", w.jti)),
            ),
            Op::Spend {
                jti,
                time_ms,
                credential_hash,
            } => stmts.push(
                Stmt::new(
                    "INSERT INTO executions (jti, started_ms, cred_hash) VALUES ($1, $2, $3)",
                    vec![
                        Param::Text(jti.clone()),
                        Param::Int(i64_of(*time_ms)?),
                        Param::OptBytes(credential_hash.map(|h| h.to_vec())),
                    ],
                )
                .or_conflict(format!("writ {jti} was already spent")),
            ),
            Op::Lease { jti, lease_exp } => {
                let msg = format!("execution {jti} is not running");
                stmts.push(
                    Stmt::new(
                        "WITH u AS (UPDATE executions SET lease_exp = $2 WHERE jti = $1 AND finished_ms IS NULL RETURNING 1)
                         SELECT writ_expect_one(count(*), $3) FROM u",
                        vec![
                            Param::Text(jti.clone()),
                            Param::Int(i64_of(*lease_exp)?),
                            Param::Text(msg.clone()),
                        ],
                    )
                    .or_conflict(msg),
                )
            }
            Op::Finish {
                jti,
                time_ms,
                exit_status,
                outcome,
            } => {
                let msg = format!("execution {jti} was never started or has already finished");
                stmts.push(
                    Stmt::new(
                        "WITH u AS (UPDATE executions SET finished_ms = $2, exit_status = $3, outcome = $4
                                    WHERE jti = $1 AND finished_ms IS NULL RETURNING 1)
                         SELECT writ_expect_one(count(*), $5) FROM u",
                        vec![
                            Param::Text(jti.clone()),
                            Param::Int(i64_of(*time_ms)?),
                            Param::OptInt(*exit_status),
                            Param::Text(outcome.clone()),
                            Param::Text(msg.clone()),
                        ],
                    )
                    .or_conflict(msg),
                )
            }
            Op::Revoke(r) => {
                staged.state_changes += 1;
                stmts.push(Stmt::new(
                    "INSERT INTO revocations (target, kind, time_ms, by, reason) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (target) DO NOTHING",
                    vec![
                        Param::Text(r.target.clone()),
                        Param::Text(r.kind.clone()),
                        Param::Int(i64_of(r.time_ms)?),
                        Param::Text(r.by.clone()),
                        Param::Text(r.reason.clone()),
                    ],
                ))
            }
            Op::PutPrincipal(p) => {
                staged.state_changes += 1;
                stmts.push(
                    Stmt::new(
                        "INSERT INTO principals (uid, token_hash, admin, created_ms, disabled, auditor) VALUES ($1, $2, $3, $4, $5, $6)",
                        vec![
                            Param::Text(p.uid.clone()),
                            Param::Bytes(p.token_hash.to_vec()),
                            Param::Bool(p.admin),
                            Param::Int(i64_of(p.created_ms)?),
                            Param::Bool(p.disabled),
                            Param::Bool(p.auditor),
                        ],
                    )
                    .or_conflict(format!("principal {} already exists", p.uid)),
                )
            }
            Op::UpdatePrincipal {
                uid,
                token_hash,
                disabled,
            } => {
                staged.state_changes += 1;
                let msg = format!("no principal {uid}");
                stmts.push(
                    Stmt::new(
                        "WITH u AS (UPDATE principals SET token_hash = COALESCE($2, token_hash),
                                                         disabled = COALESCE($3, disabled)
                                    WHERE uid = $1 RETURNING 1)
                         SELECT writ_expect_one(count(*), $4) FROM u",
                        vec![
                            Param::Text(uid.clone()),
                            Param::OptBytes(token_hash.map(|h| h.to_vec())),
                            Param::OptBool(*disabled),
                            Param::Text(msg.clone()),
                        ],
                    )
                    .or_conflict(msg),
                )
            }
            Op::PutIssuer {
                name,
                spec,
                created_ms,
            } => {
                staged.state_changes += 1;
                stmts.push(
                    Stmt::new(
                        "INSERT INTO issuers (name, spec, created_ms) VALUES ($1, $2, $3)",
                        vec![
                            Param::Text(name.clone()),
                            Param::Text(spec.clone()),
                            Param::Int(i64_of(*created_ms)?),
                        ],
                    )
                    .or_conflict(format!("issuer {name} already exists")),
                )
            }
            Op::RemoveIssuer { name } => {
                staged.state_changes += 1;
                let msg = format!("no issuer {name}");
                stmts.push(
                    Stmt::new(
                        "WITH d AS (DELETE FROM issuers WHERE name = $1 RETURNING 1)
                         SELECT writ_expect_one(count(*), $2) FROM d",
                        vec![Param::Text(name.clone()), Param::Text(msg.clone())],
                    )
                    .or_conflict(msg),
                )
            }
            Op::PutContent { salt, content } => {
                let Some(index) = indices.last().copied() else {
                    return Err(StoreError::Integrity(
                        "content without an entry in its transaction".into(),
                    ));
                };
                stmts.push(Stmt::new(
                    "INSERT INTO entry_content (idx, salt, content) VALUES ($1, $2, $3)",
                    vec![
                        Param::Int(i64_of(index)?),
                        Param::Bytes(salt.to_vec()),
                        Param::Bytes(content.clone()),
                    ],
                ))
            }
            Op::EraseContent { index, leaf_too } => {
                stmts.push(Stmt::new(
                    "DELETE FROM entry_content WHERE idx = $1",
                    vec![Param::Int(i64_of(*index)?)],
                ));
                if *leaf_too {
                    stmts.push(Stmt::new(
                        "UPDATE entries SET leaf = ''::bytea WHERE idx = $1",
                        vec![Param::Int(i64_of(*index)?)],
                    ));
                }
            }
            Op::Delegate { jti, principal } => stmts.push(Stmt::new(
                "INSERT INTO delegations (jti, principal) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                vec![Param::Text(jti.clone()), Param::Text(principal.clone())],
            )),
            Op::PutBundle { hash, signed_json } => stmts.push(Stmt::new(
                "INSERT INTO bundles (hash, signed_json) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
                vec![Param::Text(hash.clone()), Param::Text(signed_json.clone())],
            )),
            Op::Activate { hash, time_ms, by } => {
                staged.state_changes += 1;
                stmts.push(
                    Stmt::new(
                        "INSERT INTO activations (hash, time_ms, by) VALUES ($1, $2, $3)",
                        vec![
                            Param::Text(hash.clone()),
                            Param::Int(i64_of(*time_ms)?),
                            Param::Text(by.clone()),
                        ],
                    )
                    .or_conflict(format!("bundle {hash} is not stored")),
                )
            }
            Op::PutKey(k) => {
                staged.state_changes += 1;
                stmts.push(Stmt::new(
                    "INSERT INTO keys (kid, role, public_jwk, status, created_ms, verify_until_ms) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (kid) DO UPDATE SET status = excluded.status, verify_until_ms = excluded.verify_until_ms",
                    vec![
                        Param::Text(k.kid.clone()),
                        Param::Text(k.role.clone()),
                        Param::Text(k.public_jwk.clone()),
                        Param::Text(k.status.clone()),
                        Param::Int(i64_of(k.created_ms)?),
                        Param::OptInt(k.verify_until_ms.map(i64_of).transpose()?),
                    ],
                ))
            }
            Op::PutCheckpoint(c) => stmts.push(
                Stmt::new(
                    "INSERT INTO checkpoints (size, note, time_ms) VALUES ($1, $2, $3)",
                    vec![
                        Param::Int(i64_of(c.size)?),
                        Param::Text(c.note.clone()),
                        Param::Int(i64_of(c.time_ms)?),
                    ],
                )
                .or_conflict(format!("a checkpoint of size {} exists", c.size)),
            ),
            Op::Cosign { size, note } => {
                let msg = format!("no checkpoint of size {size}");
                stmts.push(
                    Stmt::new(
                        "WITH u AS (UPDATE checkpoints SET note = $2 WHERE size = $1 RETURNING 1)
                         SELECT writ_expect_one(count(*), $3) FROM u",
                        vec![
                            Param::Int(i64_of(*size)?),
                            Param::Text(note.clone()),
                            Param::Text(msg.clone()),
                        ],
                    )
                    .or_conflict(msg),
                )
            }
        }
    }
    Ok((indices, stmts))
}

/// Whether a failed statement broke a constraint (the transaction's fault)
/// rather than the database (everyone's).
fn is_conflict(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::FOREIGN_KEY_VIOLATION
            || c.code() == NO_ROW
    })
}

/// One group commit: lock the head, run every transaction inside its own
/// savepoint (pipelined), append the leaves and tree nodes, move the head,
/// commit. A transaction that conflicts is rolled back to its savepoint and
/// the ones after it are sent again.
async fn commit_batch(
    c: &Client,
    batch: &[Job],
    cache: &mut Option<Frontier>,
) -> Result<Vec<TxResult>, StoreError> {
    let (begun, head) = tokio::join!(
        c.batch_execute("BEGIN"),
        query(
            c,
            "SELECT size, state_seq FROM writ_head WHERE id = 1 FOR UPDATE",
            &[]
        )
    );
    begun.map_err(pg_unavailable)?;
    let head = head.map_err(pg_unavailable)?;
    let row = head
        .first()
        .ok_or_else(|| StoreError::Integrity("writ_head is missing".into()))?;
    let size = u64_of(row.try_get(0).map_err(pg_unavailable)?)?;
    let frontier = match cache.take() {
        Some(f) if f.size == size => f,
        _ => load_frontier(c, size).await?,
    };
    let mut staged = Staged {
        next: size,
        frontier,
        entries: Vec::new(),
        nodes: Vec::new(),
        state_changes: 0,
    };
    let mut results: Vec<Option<TxResult>> = batch.iter().map(|_| None).collect();
    let mut from = 0;
    while from < batch.len() {
        // Plan every remaining transaction from the state after the last
        // accepted one.
        struct Planned {
            at: usize,
            before: Staged,
            indices: Vec<u64>,
            stmts: Vec<Stmt>,
        }
        let mut planned: Vec<Planned> = Vec::new();
        for (at, job) in batch.iter().enumerate().skip(from) {
            if results[at].is_some() {
                continue;
            }
            let before = staged.clone();
            match plan(&job.0, &mut staged) {
                Ok((indices, stmts)) => planned.push(Planned {
                    at,
                    before,
                    indices,
                    stmts,
                }),
                Err(e) => {
                    // A value that cannot be stored: this transaction alone fails.
                    staged.truncate_to(&before);
                    results[at] = Some(Err(e));
                }
            }
        }
        // Pipeline SAVEPOINT, the statements and RELEASE of each transaction.
        let mut calls = Vec::new();
        // For each call: (plan position, statement number within it, or None
        // for the savepoint commands).
        let mut owner: Vec<(usize, Option<usize>)> = Vec::new();
        for (p, t) in planned.iter().enumerate() {
            if t.stmts.is_empty() {
                continue;
            }
            calls.push(query(c, "SAVEPOINT tx", &[]));
            owner.push((p, None));
            for (n, st) in t.stmts.iter().enumerate() {
                calls.push(query(c, st.sql, &st.params));
                owner.push((p, Some(n)));
            }
            calls.push(query(c, "RELEASE SAVEPOINT tx", &[]));
            owner.push((p, None));
        }
        let outs = join_all(calls).await;
        let mut failed: Option<(usize, StoreError)> = None;
        for (&(p, n), out) in owner.iter().zip(outs) {
            if let Err(e) = out {
                match n {
                    Some(n) if is_conflict(&e) => {
                        let msg = planned[p].stmts[n]
                            .conflict
                            .clone()
                            .unwrap_or_else(|| e.to_string());
                        failed = Some((p, StoreError::Conflict(msg)));
                    }
                    _ => return Err(pg_unavailable(e)),
                }
                break;
            }
        }
        let accepted = failed.as_ref().map_or(planned.len(), |f| f.0);
        if let Some((p, e)) = failed {
            // Every statement after the failing one was refused
            // (in_failed_sql_transaction); undo the failing transaction only.
            c.batch_execute("ROLLBACK TO SAVEPOINT tx; RELEASE SAVEPOINT tx")
                .await
                .map_err(pg_unavailable)?;
            results[planned[p].at] = Some(Err(e));
            staged.truncate_to(&planned[p].before);
            from = planned[p].at + 1;
        } else {
            from = batch.len();
        }
        for t in planned.into_iter().take(accepted) {
            results[t.at] = Some(Ok(t.indices));
        }
    }
    let (ids, leaves, hashes): (Vec<i64>, Vec<Vec<u8>>, Vec<Vec<u8>>) = {
        let mut a = (Vec::new(), Vec::new(), Vec::new());
        for (i, l, h) in staged.entries {
            a.0.push(i);
            a.1.push(l);
            a.2.push(h);
        }
        a
    };
    let (keys, node_hashes): (Vec<i64>, Vec<Vec<u8>>) = staged.nodes.into_iter().unzip();
    let new_size = i64_of(staged.next)?;
    let seq_params = [Param::Int(new_size), Param::Int(staged.state_changes)];
    let entry_params = [
        Param::Ints(ids),
        Param::Bytess(leaves),
        Param::Bytess(hashes),
    ];
    let node_params = [Param::Ints(keys), Param::Bytess(node_hashes)];
    let (e, n, h) = tokio::join!(
        query(
            c,
            "INSERT INTO entries (idx, leaf, leaf_hash) SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[], $3::BYTEA[])",
            &entry_params
        ),
        query(
            c,
            "INSERT INTO tree_nodes (key, hash) SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[])",
            &node_params
        ),
        query(
            c,
            "UPDATE writ_head SET size = $1, state_seq = state_seq + $2 WHERE id = 1 RETURNING state_seq",
            &seq_params
        ),
    );
    e.map_err(pg_unavailable)?;
    n.map_err(pg_unavailable)?;
    let h = h.map_err(pg_unavailable)?;
    if staged.state_changes > 0 {
        let seq: i64 = h
            .first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(pg_unavailable)?
            .unwrap_or_default();
        query(
            c,
            "SELECT pg_notify($1, $2)",
            &[
                Param::Text(STATE_CHANNEL.into()),
                Param::Text(seq.to_string()),
            ],
        )
        .await
        .map_err(pg_unavailable)?;
    }
    c.batch_execute("COMMIT").await.map_err(pg_unavailable)?;
    *cache = Some(staged.frontier);
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StoreError::Unavailable("not planned".into()))))
        .collect())
}

fn get<T>(r: &Row, i: usize) -> Result<T, StoreError>
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    r.try_get(i).map_err(pg_unavailable)
}

fn get_u64(r: &Row, i: usize) -> Result<u64, StoreError> {
    u64_of(get(r, i)?)
}

fn writ_row(r: &Row) -> Result<WritRecord, StoreError> {
    Ok(WritRecord {
        jti: get(r, 0)?,
        principal: get(r, 1)?,
        action: get(r, 2)?,
        resource: get(r, 3)?,
        audience: get(r, 4)?,
        parent: get(r, 5)?,
        root: get(r, 6)?,
        depth: u32::try_from(get::<i64>(r, 7)?)
            .map_err(|_| StoreError::Integrity("stored depth out of range".into()))?,
        scope: get(r, 8)?,
        policy: get(r, 9)?,
        iat: get_u64(r, 10)?,
        exp: get_u64(r, 11)?,
        log_index: get_u64(r, 12)?,
        via: get(r, 13)?,
        holder: get(r, 14)?,
    })
}

fn checkpoint_row(r: &Row) -> Result<CheckpointRecord, StoreError> {
    Ok(CheckpointRecord {
        size: get_u64(r, 0)?,
        note: get(r, 1)?,
        time_ms: get_u64(r, 2)?,
    })
}

impl Store for PgStore {
    fn submit(&self, tx: Tx) -> Ticket {
        let (reply, rx) = oneshot::channel();
        match self.queue.try_send((tx, reply)) {
            Ok(()) => Ticket::pending(rx),
            Err(mpsc::error::TrySendError::Full(_)) => Ticket::ready(Err(StoreError::Unavailable(
                format!("more than {QUEUE_TX_MAX} transactions are waiting for the database"),
            ))),
            Err(mpsc::error::TrySendError::Closed(_)) => Ticket::ready(Err(
                StoreError::Unavailable("the store's writer has stopped".into()),
            )),
        }
    }

    fn log_size(&self) -> Result<u64, StoreError> {
        let rows = self.rows("SELECT size FROM writ_head WHERE id = 1", vec![])?;
        let r = rows
            .first()
            .ok_or_else(|| StoreError::Integrity("writ_head is missing".into()))?;
        get_u64(r, 0)
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<StoredLeaf>, StoreError> {
        // Indices past i64::MAX are past every log.
        let start = i64::try_from(start).unwrap_or(i64::MAX);
        let end = i64::try_from(end).unwrap_or(i64::MAX);
        self.rows(
            "SELECT idx, leaf, leaf_hash FROM entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            vec![Param::Int(start), Param::Int(end)],
        )?
        .iter()
        .map(|r| {
            Ok(StoredLeaf {
                index: get_u64(r, 0)?,
                leaf: get(r, 1)?,
                leaf_hash: hash_of(get(r, 2)?)?,
            })
        })
        .collect()
    }

    fn principals(&self) -> Result<Vec<PrincipalRecord>, StoreError> {
        self.rows(
            "SELECT uid, token_hash, admin, created_ms, disabled, auditor FROM principals ORDER BY uid",
            vec![],
        )?
        .iter()
        .map(|r| {
            Ok(PrincipalRecord {
                uid: get(r, 0)?,
                token_hash: hash_of(get(r, 1)?)?,
                admin: get(r, 2)?,
                created_ms: get_u64(r, 3)?,
                disabled: get(r, 4)?,
                auditor: get(r, 5)?,
            })
        })
        .collect()
    }

    fn issuers(&self) -> Result<Vec<IssuerRecord>, StoreError> {
        self.rows(
            "SELECT name, spec, created_ms FROM issuers ORDER BY name",
            vec![],
        )?
        .iter()
        .map(|r| {
            Ok(IssuerRecord {
                name: get(r, 0)?,
                spec: get(r, 1)?,
                created_ms: get_u64(r, 2)?,
            })
        })
        .collect()
    }

    fn writ(&self, jti: &str) -> Result<Option<WritRecord>, StoreError> {
        const SQL: &str = "SELECT jti, principal, action, resource, audience, parent, root, depth, scope, policy, iat, exp, log_index, via, holder FROM writs WHERE jti = $1";
        self.rows(SQL, vec![Param::Text(jti.into())])?
            .first()
            .map(writ_row)
            .transpose()
    }

    fn children(&self, jti: &str) -> Result<Vec<WritRecord>, StoreError> {
        const SQL: &str = "SELECT jti, principal, action, resource, audience, parent, root, depth, scope, policy, iat, exp, log_index, via, holder FROM writs WHERE parent = $1 ORDER BY log_index";
        self.rows(SQL, vec![Param::Text(jti.into())])?
            .iter()
            .map(writ_row)
            .collect()
    }

    fn execution(&self, jti: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        self.rows(
            "SELECT jti, started_ms, finished_ms, exit_status, outcome, lease_exp, cred_hash FROM executions WHERE jti = $1",
            vec![Param::Text(jti.into())],
        )?
        .first()
        .map(|r| {
            Ok(ExecutionRecord {
                jti: get(r, 0)?,
                started_ms: get_u64(r, 1)?,
                finished_ms: get::<Option<i64>>(r, 2)?.map(u64_of).transpose()?,
                exit_status: get(r, 3)?,
                outcome: get(r, 4)?,
                lease_exp: get::<Option<i64>>(r, 5)?.map(u64_of).transpose()?,
                credential_hash: get::<Option<Vec<u8>>>(r, 6)?.map(hash_of).transpose()?,
            })
        })
        .transpose()
    }

    fn contents(&self, start: u64, end: u64) -> Result<Vec<StoredContent>, StoreError> {
        self.rows(
            "SELECT idx, salt, content FROM entry_content WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            vec![Param::Int(i64_of(start)?), Param::Int(i64_of(end)?)],
        )?
        .iter()
        .map(|r| {
            Ok(StoredContent {
                index: get_u64(r, 0)?,
                salt: hash_of(get(r, 1)?)?,
                content: get(r, 2)?,
            })
        })
        .collect()
    }

    fn delegated(&self, jti: &str, principal: &str) -> Result<bool, StoreError> {
        Ok(!self
            .rows(
                "SELECT 1 FROM delegations WHERE jti = $1 AND principal = $2",
                vec![Param::Text(jti.into()), Param::Text(principal.into())],
            )?
            .is_empty())
    }

    fn revocations(&self) -> Result<Vec<RevocationRecord>, StoreError> {
        self.rows(
            "SELECT target, kind, time_ms, by, reason FROM revocations ORDER BY time_ms, target",
            vec![],
        )?
        .iter()
        .map(|r| {
            Ok(RevocationRecord {
                target: get(r, 0)?,
                kind: get(r, 1)?,
                time_ms: get_u64(r, 2)?,
                by: get(r, 3)?,
                reason: get(r, 4)?,
            })
        })
        .collect()
    }

    fn bundle(&self, hash: &str) -> Result<Option<String>, StoreError> {
        self.rows(
            "SELECT signed_json FROM bundles WHERE hash = $1",
            vec![Param::Text(hash.into())],
        )?
        .first()
        .map(|r| get(r, 0))
        .transpose()
    }

    fn activations(&self) -> Result<Vec<ActivationRecord>, StoreError> {
        self.rows(
            "SELECT seq, hash, time_ms, by FROM activations ORDER BY seq",
            vec![],
        )?
        .iter()
        .map(|r| {
            Ok(ActivationRecord {
                seq: get_u64(r, 0)?,
                hash: get(r, 1)?,
                time_ms: get_u64(r, 2)?,
                by: get(r, 3)?,
            })
        })
        .collect()
    }

    fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.rows(
            "SELECT kid, role, public_jwk, status, created_ms, verify_until_ms FROM keys ORDER BY created_ms, kid",
            vec![],
        )?
        .iter()
        .map(|r| {
            Ok(KeyRecord {
                kid: get(r, 0)?,
                role: get(r, 1)?,
                public_jwk: get(r, 2)?,
                status: get(r, 3)?,
                created_ms: get_u64(r, 4)?,
                verify_until_ms: get::<Option<i64>>(r, 5)?.map(u64_of).transpose()?,
            })
        })
        .collect()
    }

    fn tree_root(&self, size: u64) -> Result<Hash, ProofError> {
        self.with_tree(size, |r| Ok(merkle::root(r, size)?))
    }

    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.with_tree(size, |r| merkle::inclusion_proof(r, index, size))
    }

    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        self.with_tree(second, |r| merkle::consistency_proof(r, first, second))
    }

    fn nodes_after(
        &self,
        after: Option<(u8, u64)>,
        limit: usize,
    ) -> Result<Vec<(u8, u64, Hash)>, StoreError> {
        let from = after.map_or(-1, |(l, i)| node_key(l, i));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.rows(
            "SELECT key, hash FROM tree_nodes WHERE key > $1 ORDER BY key LIMIT $2",
            vec![Param::Int(from), Param::Int(limit)],
        )?
        .iter()
        .map(|r| {
            let (level, index) = stored_node(get(r, 0)?)?;
            Ok((level, index, hash_of(get(r, 1)?)?))
        })
        .collect()
    }

    fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<CheckpointRecord>, StoreError> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.rows(
            "SELECT size, note, time_ms FROM checkpoints WHERE size >= $1 ORDER BY size LIMIT $2",
            vec![Param::Int(from), Param::Int(limit)],
        )?
        .iter()
        .map(checkpoint_row)
        .collect()
    }

    fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError> {
        self.rows(
            "SELECT size, note, time_ms FROM checkpoints ORDER BY size DESC LIMIT 1",
            vec![],
        )?
        .first()
        .map(checkpoint_row)
        .transpose()
    }

    fn shared(&self) -> bool {
        true
    }

    fn state_seq(&self) -> Result<u64, StoreError> {
        let rows = self.rows("SELECT state_seq FROM writ_head WHERE id = 1", vec![])?;
        let r = rows
            .first()
            .ok_or_else(|| StoreError::Integrity("writ_head is missing".into()))?;
        get_u64(r, 0)
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.clone())
    }

    fn lead(&self) -> Result<bool, StoreError> {
        let Some(rt) = &self.rt else {
            return Err(unavailable("the store is shut down"));
        };
        let leader = self.leader.clone();
        let dial = self.pool.dial.clone();
        block_on(rt, async move {
            let mut held = leader.lock().await;
            if let Some(c) = held.as_ref() {
                // The lock lives as long as the session: ask the session.
                if !c.is_closed() && c.simple_query("SELECT 1").await.is_ok() {
                    return Ok(true);
                }
                *held = None;
            }
            let c = connect(&dial).await?;
            let got: bool = c
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
                .await
                .map_err(pg_unavailable)?
                .try_get(0)
                .map_err(pg_unavailable)?;
            if got {
                *held = Some(c);
            }
            Ok(got)
        })
    }

    fn resign(&self) {
        if let Ok(mut held) = self.leader.try_lock() {
            *held = None;
        }
    }

    fn heartbeat(&self, n: &NodeRecord) -> Result<(), StoreError> {
        self.heartbeat_row(n)
    }

    fn mesh_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.mesh_rows()
    }
}
