//! The embedded store: SQLite, WAL, synchronous commits, one writer thread
//! doing group commit, and a small pool of read connections.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::oneshot;

use crate::types::*;
use crate::Store;
use writ_log::merkle::{self, NodeReader, ProofError};
use writ_log::Hash;

mod pace;
mod tree;

/// Most transactions one group commit takes.
pub const BATCH_TX_MAX: usize = 2048;
/// Most transactions waiting for the writer; past this, submitters are told the
/// store is unavailable rather than queueing without bound.
pub const QUEUE_TX_MAX: usize = 16 * 1024;
/// Read connections kept open.
const READERS_MAX: usize = 8;
/// How long a connection waits for a lock before giving up.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// Page cache per connection, KiB.
const CACHE_KIB: i64 = 32 * 1024;

/// 1: entries and state tables. 2: the Merkle tree (`nodes`) and checkpoints.
/// 3: execution leases (`executions.lease_exp`). 4: disabled principals
/// (`principals.disabled`, `principals.auditor`), execution credentials
/// (`executions.cred_hash`), delegations, `writs.via`, and the content of
/// sealed decisions (`entry_content`). 5: external identity issuers
/// (`issuers`). 6: holder-bound writs (`writs.holder`).
const SCHEMA_VERSION: i64 = 6;
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,
    leaf BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS writs (
    jti TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    audience TEXT NOT NULL,
    parent TEXT,
    root TEXT NOT NULL,
    depth INTEGER NOT NULL,
    scope TEXT NOT NULL,
    policy TEXT NOT NULL,
    iat INTEGER NOT NULL,
    exp INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    via TEXT,
    holder TEXT
);
-- Partial: roots (most writs) add no index entry on the hot path.
CREATE INDEX IF NOT EXISTS writs_parent ON writs(parent) WHERE parent IS NOT NULL;
CREATE TABLE IF NOT EXISTS executions (
    jti TEXT PRIMARY KEY,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    exit_status INTEGER,
    outcome TEXT,
    lease_exp INTEGER,
    cred_hash BLOB
);
CREATE TABLE IF NOT EXISTS revocations (
    target TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS principals (
    uid TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    admin INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    auditor INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS issuers (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entry_content (
    idx INTEGER PRIMARY KEY,
    salt BLOB NOT NULL,
    content BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS delegations (
    jti TEXT NOT NULL,
    principal TEXT NOT NULL,
    PRIMARY KEY (jti, principal)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bundles (
    hash TEXT PRIMARY KEY,
    signed_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS activations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    hash TEXT NOT NULL REFERENCES bundles(hash),
    time_ms INTEGER NOT NULL,
    by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    key INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL,
    time_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    kid TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    verify_until_ms INTEGER
);
"#;

type Job = (Tx, oneshot::Sender<TxResult>);

/// How many batches were applied a second time, with savepoints.
#[cfg(test)]
static CAREFUL_RETRIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Why an attempt at a group commit ended without committing.
enum Attempt {
    /// A transaction failed (a conflict, a statement that erred): retry
    /// the batch with savepoints.
    Conflict,
    /// The store failed: every transaction of the batch is refused.
    Failed(StoreError),
}

/// The embedded SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    queue: SyncSender<Job>,
    readers: Mutex<Vec<Connection>>,
    /// The upper levels of the committed tree, shared with the writer.
    upper: Arc<tree::Upper>,
    _writer: Arc<WriterHandle>,
}

/// The writer thread and the checkpointer thread it feeds.
struct WriterHandle(Vec<std::thread::JoinHandle<()>>);

impl Drop for WriterHandle {
    fn drop(&mut self) {
        // The queue's sender is dropped before this handle (field order), so the
        // writer sees a closed channel, finishes its batch, and exits; its end
        // of the checkpointer's channel goes with it, which ends that thread.
        for h in self.0.drain(..) {
            let _ = h.join();
        }
    }
}

/// Least time between two passive checkpoints of the checkpointer thread.
const CHECKPOINT_INTERVAL_MS: u64 = 10;
/// WAL frames (about 1 MiB) the writer adds between two pokes of the
/// checkpointer: a lightly loaded store is not checkpointed after every
/// commit, whose fsyncs of the database file would then compete with the
/// next commit's.
const CHECKPOINT_FRAMES: i32 = 256;
/// WAL frames after which the writer completes a checkpoint itself, so that
/// its next transaction starts the WAL over (SQLite's own default
/// autocheckpoint is 1000 frames).
const WAL_RESTART_FRAMES: i32 = 1000;

/// WAL frames whose space the writer allocates when it starts (a little
/// more than the WAL holds before it starts over): appending to the WAL
/// file would change its size with every commit, and an fdatasync that
/// must also write the file's size took 0.44 ms here where one that
/// overwrites allocated space took 0.31 ms.
const WAL_PREALLOCATED_FRAMES: u64 = WAL_RESTART_FRAMES as u64 + 64;

thread_local! {
    /// Frames in the WAL after the writer's last commit (its WAL hook).
    static WAL_FRAMES: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

fn record_wal_frames(_: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(frames));
    Ok(())
}

/// Copies committed WAL frames into the database file (passive
/// checkpoints) on its own connection, so that the copying and its fsyncs
/// are not part of any group commit. The writer pokes it each time the WAL
/// has grown by [`CHECKPOINT_FRAMES`].
/// A passive checkpoint never catches up with a writer that keeps
/// committing, so the writer finishes the job itself now and then
/// ([`WAL_RESTART_FRAMES`]): with the frames already copied that is quick,
/// and SQLite starts the WAL over at the next transaction.
fn run_checkpointer(conn: Connection, poke: Receiver<()>) {
    while poke.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            // The frames stay in the WAL (durable, and read from there); the
            // next poke tries again.
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
        std::thread::sleep(Duration::from_millis(CHECKPOINT_INTERVAL_MS));
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn open_conn(path: &Path, create: bool) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(unavailable)?;
    // WAL with synchronous=FULL: every commit is fsynced before it returns.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(unavailable)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(unavailable)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(unavailable)?;
    // Random-key indexes (writ and execution jtis) stay hot in a larger cache
    // instead of being re-read from the OS on every insert.
    conn.pragma_update(None, "cache_size", -CACHE_KIB)
        .map_err(unavailable)?;
    Ok(conn)
}

impl SqliteStore {
    /// Open (creating if needed) the store at `path` and start its writer.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        // A new store is its owner's only (mode 0600; SQLite gives its WAL
        // and shared-memory files the same mode): it holds the log.
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| unavailable(format!("cannot create {}: {e}", path.display())))?;
        }
        let conn = open_conn(path, true)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(unavailable)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Integrity(format!(
                "store schema version {version} is newer than this writ ({SCHEMA_VERSION}); upgrade writ"
            )));
        }
        if version < SCHEMA_VERSION {
            // Only a new or older store is written here, so opening a store that
            // a server is using (for offline verification) takes no write lock.
            // Version 1 stores get their tree built from the leaves they hold.
            conn.execute_batch("BEGIN IMMEDIATE").map_err(unavailable)?;
            let migrated = (|| {
                if (1..SCHEMA_VERSION).contains(&version) {
                    for (table, column, decl) in [
                        ("executions", "lease_exp", "INTEGER"),
                        ("writs", "via", "TEXT"),
                        ("writs", "holder", "TEXT"),
                        ("executions", "cred_hash", "BLOB"),
                        ("principals", "disabled", "INTEGER NOT NULL DEFAULT 0"),
                        ("principals", "auditor", "INTEGER NOT NULL DEFAULT 0"),
                    ] {
                        let has: bool = conn.query_row(
                            "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
                            [table, column],
                            |r| r.get(0),
                        )?;
                        if !has {
                            conn.execute_batch(&format!(
                                "ALTER TABLE {table} ADD COLUMN {column} {decl}"
                            ))?;
                        }
                    }
                }
                conn.execute_batch(SCHEMA)?;
                if version == 1 {
                    let n = tree::rebuild(&conn)?;
                    tracing::info!(entries = n, "built the Merkle tree of a version 1 store");
                }
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
                conn.execute_batch("COMMIT")
            })();
            if let Err(e) = migrated {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(unavailable(format!("cannot migrate the store: {e}")));
            }
        }
        let next: u64 = conn
            .query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries", [], |r| {
                r.get(0)
            })
            .map_err(unavailable)?;
        let count: u64 = conn
            .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
            .map_err(unavailable)?;
        if count != next {
            return Err(StoreError::Integrity(format!(
                "log has {count} entries but its highest index is {}; indices must be dense",
                next.saturating_sub(1)
            )));
        }
        let incomplete = |e: writ_log::merkle::ReadError| {
            StoreError::Integrity(format!(
                "the stored Merkle tree of {next} entries is incomplete: {e}"
            ))
        };
        let frontier =
            tree::Frontier::load(&tree::ConnNodes(&conn, None), next).map_err(incomplete)?;
        let upper = Arc::new(tree::Upper::load(&conn, next).map_err(incomplete)?);
        let (tx, rx) = sync_channel::<Job>(QUEUE_TX_MAX);
        // Checkpoints are the checkpointer's and the writer's own
        // (`Writer::finish_checkpoint`), never part of a commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(unavailable)?;
        conn.wal_hook(Some(record_wal_frames));
        let (poke, poked) = sync_channel::<()>(1);
        let checkpointer_conn = open_conn(path, false)?;
        let checkpointer = std::thread::Builder::new()
            .name("writ-store-checkpointer".into())
            .spawn(move || run_checkpointer(checkpointer_conn, poked))
            .map_err(unavailable)?;
        let writer_upper = upper.clone();
        let db_path = path.to_owned();
        let writer = std::thread::Builder::new()
            .name("writ-store-writer".into())
            .spawn(move || {
                Writer {
                    conn,
                    next,
                    frontier,
                    upper: writer_upper,
                    new_upper: Vec::new(),
                    checkpointer: poke,
                    poked_at: 0,
                }
                .start(&db_path, rx)
            })
            .map_err(unavailable)?;
        Ok(SqliteStore {
            path: path.to_owned(),
            queue: tx,
            readers: Mutex::new(Vec::new()),
            upper,
            _writer: Arc::new(WriterHandle(vec![writer, checkpointer])),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        self.with_conn(f)?.map_err(unavailable)
    }

    /// Run `f` on a pooled read connection (opening one when none is free).
    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> T) -> Result<T, StoreError> {
        let conn = match self.readers.lock().ok().and_then(|mut v| v.pop()) {
            Some(c) => c,
            None => open_conn(&self.path, false)?,
        };
        let out = f(&conn);
        if let Ok(mut pool) = self.readers.lock() {
            if pool.len() < READERS_MAX {
                pool.push(conn);
            }
        }
        Ok(out)
    }
}

struct Writer {
    conn: Connection,
    /// Index the next appended leaf gets.
    next: u64,
    /// The right edge of the committed-or-pending tree (size == next).
    frontier: tree::Frontier,
    /// Where readers find the upper levels; extended after each commit.
    upper: Arc<tree::Upper>,
    /// Upper-level nodes of the batch being written, not yet committed.
    new_upper: Vec<(u8, u64, Hash)>,
    /// Told when [`CHECKPOINT_FRAMES`] more are in the WAL than at the last
    /// poke that there are frames to copy.
    checkpointer: SyncSender<()>,
    /// WAL frames at the last poke.
    poked_at: i32,
}

impl Writer {
    /// Extend the WAL file with zeros to [`WAL_PREALLOCATED_FRAMES`], under
    /// the write lock (no one appends a frame meanwhile). Safe for SQLite:
    /// frames are written at offsets it computes, and recovery stops at
    /// the first frame that does not check (a zeroed one never does).
    /// A WAL already that long (a store a server is using) is left alone
    /// without taking the lock. Best effort: a WAL that cannot be extended
    /// is only slower.
    fn preallocate_wal(&self, db: &Path) {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let want = || -> std::io::Result<u64> {
            let page: u64 = self
                .conn
                .pragma_query_value(None, "page_size", |r| r.get(0))
                .map_err(std::io::Error::other)?;
            Ok(32 + WAL_PREALLOCATED_FRAMES * (24 + page))
        };
        let short = |want: u64| std::fs::metadata(&wal).is_ok_and(|m| m.len() < want);
        match want() {
            Ok(w) if short(w) => {}
            _ => return,
        }
        if self.conn.execute_batch("BEGIN IMMEDIATE").is_err() {
            return;
        }
        let extended = (|| -> std::io::Result<()> {
            use std::os::unix::fs::FileExt;
            let want = want()?;
            let f = std::fs::OpenOptions::new().write(true).open(&wal)?;
            let mut at = f.metadata()?.len();
            if at >= want {
                return Ok(());
            }
            // Written a page at a time: the page cache then holds the WAL in
            // 4 KiB folios. Large writes make large folios, and every later
            // frame write into one walked all its buffer heads
            // (`ext4_block_write_begin`, `block_commit_write`: 3-6% of all
            // CPU samples of a governed run, 0.3% this way).
            let zeros = [0u8; 4096];
            while at < want {
                let n = zeros.len().min((want - at) as usize);
                f.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            f.sync_data()
        })();
        let _ = self.conn.execute_batch("COMMIT");
        if let Err(e) = extended {
            tracing::warn!(error = %e, "cannot preallocate the WAL");
        }
    }

    fn start(self, db: &Path, rx: Receiver<Job>) {
        self.preallocate_wal(db);
        self.run(rx)
    }

    fn run(mut self, rx: Receiver<Job>) {
        let mut batch: Vec<Job> = Vec::with_capacity(BATCH_TX_MAX);
        let mut pacer = pace::Pacer::new();
        let mut last_batch = 0;
        loop {
            match rx.recv_timeout(Duration::from_secs(3600)) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // Under saturation, gather more before committing (see `pace`).
            let hold = pacer.hold(last_batch);
            if !hold.is_zero() {
                std::thread::sleep(hold);
            }
            while batch.len() < BATCH_TX_MAX {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            last_batch = batch.len();
            self.commit_batch(&mut batch);
        }
    }

    /// Commit `batch` as one transaction with one fsync. The first attempt
    /// applies the transactions one after the other with no savepoints
    /// (subjournalling every page a savepoint touches was a third of the
    /// writer's time); conflicts are rare (a replayed nonce, a principal that
    /// exists), and when one turns up the attempt is rolled back whole and the
    /// batch is applied again with each transaction in its own savepoint, so
    /// only the failing one is refused.
    fn commit_batch(&mut self, batch: &mut Vec<Job>) {
        let start_next = self.next;
        let start_frontier = self.frontier.clone();
        let outcome = match self.attempt(batch, false) {
            Err(Attempt::Conflict) => {
                #[cfg(test)]
                CAREFUL_RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.restore(start_next, &start_frontier);
                self.attempt(batch, true)
            }
            other => other,
        };
        let results = match outcome {
            Ok(results) => {
                self.upper.extend(&self.new_upper);
                self.new_upper.clear();
                let frames = WAL_FRAMES.with(|f| f.get());
                if frames < self.poked_at {
                    // The WAL started over.
                    self.poked_at = 0;
                }
                if frames - self.poked_at >= CHECKPOINT_FRAMES {
                    self.poked_at = frames;
                    // Full means a poke is already waiting.
                    let _ = self.checkpointer.try_send(());
                }
                results
            }
            Err(failed) => {
                // Nothing of this batch is acknowledged: roll back and fail them all.
                self.restore(start_next, &start_frontier);
                let e = match failed {
                    Attempt::Failed(e) => e,
                    // With savepoints a conflict is one transaction's result;
                    // `attempt` never returns it then.
                    Attempt::Conflict => unavailable("a conflict escaped its savepoint"),
                };
                tracing::error!(error = %e, txs = batch.len(), "group commit failed; every transaction in it is refused");
                batch.iter().map(|_| Err(e.clone())).collect()
            }
        };
        for ((_, reply), result) in batch.drain(..).zip(results) {
            let _ = reply.send(result);
        }
        self.finish_checkpoint();
    }

    /// After the replies: once the WAL holds [`WAL_RESTART_FRAMES`], copy
    /// what the checkpointer has not yet, so the next transaction restarts
    /// the WAL instead of growing it.
    fn finish_checkpoint(&self) {
        if WAL_FRAMES.with(|f| f.get()) < WAL_RESTART_FRAMES {
            return;
        }
        WAL_FRAMES.with(|f| f.set(0));
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }

    /// Undo the in-memory effects of a rolled-back attempt.
    fn restore(&mut self, next: u64, frontier: &tree::Frontier) {
        let _ = self.conn.execute_batch("ROLLBACK");
        self.next = next;
        self.frontier = frontier.clone();
        self.new_upper.clear();
    }

    /// One attempt at committing `batch`. Without `savepoints`, any failing
    /// transaction ends the attempt (the caller rolls back and retries with
    /// them); with them, a failing transaction is rolled back alone.
    fn attempt(&mut self, batch: &[Job], savepoints: bool) -> Result<Vec<TxResult>, Attempt> {
        let mut results: Vec<TxResult> = Vec::with_capacity(batch.len());
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| Attempt::Failed(unavailable(e)))?;
        for (tx, _) in batch.iter() {
            if !savepoints {
                // Any error, a conflict or one statement failing, is retried
                // with savepoints, where it is that transaction's alone.
                match self.apply(tx) {
                    Ok(indices) => results.push(Ok(indices)),
                    Err(_) => return Err(Attempt::Conflict),
                }
                continue;
            }
            self.exec_cached("SAVEPOINT tx").map_err(Attempt::Failed)?;
            let before = self.next;
            let before_frontier = self.frontier.clone();
            let before_upper = self.new_upper.len();
            match self.apply(tx) {
                Ok(indices) => {
                    self.exec_cached("RELEASE tx").map_err(Attempt::Failed)?;
                    results.push(Ok(indices));
                }
                Err(e) => {
                    self.exec_cached("ROLLBACK TO tx")
                        .map_err(Attempt::Failed)?;
                    self.exec_cached("RELEASE tx").map_err(Attempt::Failed)?;
                    self.next = before;
                    self.frontier = before_frontier;
                    self.new_upper.truncate(before_upper);
                    results.push(Err(e));
                }
            }
        }
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| Attempt::Failed(unavailable(e)))?;
        Ok(results)
    }

    /// Run a parameterless statement through the statement cache (these run
    /// several times per transaction).
    fn exec_cached(&self, sql: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map(|_| ())
            .map_err(unavailable)
    }

    fn apply(&mut self, tx: &Tx) -> TxResult {
        let mut indices = Vec::new();
        for op in &tx.ops {
            match op {
                Op::Append { leaf } => {
                    let hash = writ_log::leaf_hash(leaf);
                    self.conn
                        .prepare_cached(
                            "INSERT INTO entries (idx, leaf, leaf_hash) VALUES (?1, ?2, ?3)",
                        )
                        .and_then(|mut s| s.execute(params![self.next, leaf, &hash[..]]))
                        .map_err(unavailable)?;
                    let conn = &self.conn;
                    let new_upper = &mut self.new_upper;
                    let mut failed = None;
                    self.frontier.push(hash, |level, index, h| {
                        if failed.is_none() {
                            failed = tree::insert_node(conn, level, index, h).err();
                        }
                        if level >= tree::UPPER_LEVEL {
                            new_upper.push((level, index, *h));
                        }
                    });
                    if let Some(e) = failed {
                        return Err(unavailable(e));
                    }
                    indices.push(self.next);
                    self.next += 1;
                }
                Op::RecordWrit(w) => {
                    self.conn
                        .prepare_cached(
                            "INSERT INTO writs (jti, principal, action, resource, audience, parent, root, depth, scope, policy, iat, exp, log_index, via, holder)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                        )
                        .and_then(|mut s| {
                            s.execute(params![
                                w.jti, w.principal, w.action, w.resource, w.audience, w.parent, w.root, w.depth,
                                w.scope, w.policy, w.iat, w.exp, indices.last().copied().unwrap_or(w.log_index), w.via, w.holder
                            ])
                        })
                        .map_err(|e| conflict_or_unavailable(e, || format!("writ {} already recorded", w.jti)))?;
                }
                Op::Spend {
                    jti,
                    time_ms,
                    credential_hash,
                } => {
                    let cred = credential_hash.as_ref().map(|h| &h[..]);
                    self.conn
                        .prepare_cached("INSERT INTO executions (jti, started_ms, cred_hash) VALUES (?1, ?2, ?3)")
                        .and_then(|mut s| s.execute(params![jti, time_ms, cred]))
                        .map_err(|e| {
                            conflict_or_unavailable(e, || format!("writ {jti} was already spent"))
                        })?;
                }
                Op::Lease { jti, lease_exp } => {
                    let n = self
                        .conn
                        .prepare_cached(
                            "UPDATE executions SET lease_exp = ?2 WHERE jti = ?1 AND finished_ms IS NULL",
                        )
                        .and_then(|mut s| s.execute(params![jti, lease_exp]))
                        .map_err(unavailable)?;
                    if n != 1 {
                        return Err(StoreError::Conflict(format!(
                            "execution {jti} is not running"
                        )));
                    }
                }
                Op::Finish {
                    jti,
                    time_ms,
                    exit_status,
                    outcome,
                } => {
                    let n = self
                        .conn
                        .prepare_cached(
                            "UPDATE executions SET finished_ms = ?2, exit_status = ?3, outcome = ?4
                             WHERE jti = ?1 AND finished_ms IS NULL",
                        )
                        .and_then(|mut s| s.execute(params![jti, time_ms, exit_status, outcome]))
                        .map_err(unavailable)?;
                    if n != 1 {
                        return Err(StoreError::Conflict(format!(
                            "execution {jti} was never started or has already finished"
                        )));
                    }
                }
                Op::Revoke(r) => {
                    self.conn
                        .prepare_cached(
                            "INSERT OR IGNORE INTO revocations (target, kind, time_ms, by, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
                        )
                        .and_then(|mut s| s.execute(params![r.target, r.kind, r.time_ms, r.by, r.reason]))
                        .map_err(unavailable)?;
                }
                Op::PutPrincipal(p) => {
                    self.conn
                        .prepare_cached("INSERT INTO principals (uid, token_hash, admin, created_ms, disabled, auditor) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                        .and_then(|mut s| s.execute(params![p.uid, &p.token_hash[..], p.admin, p.created_ms, p.disabled, p.auditor]))
                        .map_err(|e| conflict_or_unavailable(e, || format!("principal {} already exists", p.uid)))?;
                }
                Op::UpdatePrincipal {
                    uid,
                    token_hash,
                    disabled,
                } => {
                    let n = self
                        .conn
                        .prepare_cached(
                            "UPDATE principals SET token_hash = COALESCE(?2, token_hash),
                                                   disabled = COALESCE(?3, disabled) WHERE uid = ?1",
                        )
                        .and_then(|mut s| {
                            s.execute(params![uid, token_hash.as_ref().map(|h| &h[..]), disabled])
                        })
                        .map_err(unavailable)?;
                    if n != 1 {
                        return Err(StoreError::Conflict(format!("no principal {uid}")));
                    }
                }
                Op::PutIssuer {
                    name,
                    spec,
                    created_ms,
                } => {
                    self.conn
                        .prepare_cached(
                            "INSERT INTO issuers (name, spec, created_ms) VALUES (?1, ?2, ?3)",
                        )
                        .and_then(|mut s| s.execute(params![name, spec, created_ms]))
                        .map_err(|e| {
                            conflict_or_unavailable(e, || format!("issuer {name} already exists"))
                        })?;
                }
                Op::RemoveIssuer { name } => {
                    let n = self
                        .conn
                        .prepare_cached("DELETE FROM issuers WHERE name = ?1")
                        .and_then(|mut s| s.execute(params![name]))
                        .map_err(unavailable)?;
                    if n != 1 {
                        return Err(StoreError::Conflict(format!("no issuer {name}")));
                    }
                }
                Op::PutContent { salt, content } => {
                    let Some(index) = indices.last().copied() else {
                        return Err(StoreError::Integrity(
                            "content without an entry in its transaction".into(),
                        ));
                    };
                    self.conn
                        .prepare_cached(
                            "INSERT INTO entry_content (idx, salt, content) VALUES (?1, ?2, ?3)",
                        )
                        .and_then(|mut s| s.execute(params![index, &salt[..], content]))
                        .map_err(unavailable)?;
                }
                Op::EraseContent { index, leaf_too } => {
                    self.conn
                        .prepare_cached("DELETE FROM entry_content WHERE idx = ?1")
                        .and_then(|mut s| s.execute(params![index]))
                        .map_err(unavailable)?;
                    if *leaf_too {
                        self.conn
                            .prepare_cached("UPDATE entries SET leaf = x'' WHERE idx = ?1")
                            .and_then(|mut s| s.execute(params![index]))
                            .map_err(unavailable)?;
                    }
                }
                Op::Delegate { jti, principal } => {
                    self.conn
                        .prepare_cached(
                            "INSERT OR IGNORE INTO delegations (jti, principal) VALUES (?1, ?2)",
                        )
                        .and_then(|mut s| s.execute(params![jti, principal]))
                        .map_err(unavailable)?;
                }
                Op::PutBundle { hash, signed_json } => {
                    self.conn
                        .prepare_cached(
                            "INSERT OR IGNORE INTO bundles (hash, signed_json) VALUES (?1, ?2)",
                        )
                        .and_then(|mut s| s.execute(params![hash, signed_json]))
                        .map_err(unavailable)?;
                }
                Op::Activate { hash, time_ms, by } => {
                    self.conn
                        .prepare_cached(
                            "INSERT INTO activations (hash, time_ms, by) VALUES (?1, ?2, ?3)",
                        )
                        .and_then(|mut s| s.execute(params![hash, time_ms, by]))
                        .map_err(|e| {
                            conflict_or_unavailable(e, || format!("bundle {hash} is not stored"))
                        })?;
                }
                Op::PutKey(k) => {
                    self.conn
                        .prepare_cached(
                            "INSERT INTO keys (kid, role, public_jwk, status, created_ms, verify_until_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                             ON CONFLICT(kid) DO UPDATE SET status = excluded.status, verify_until_ms = excluded.verify_until_ms",
                        )
                        .and_then(|mut s| {
                            s.execute(params![k.kid, k.role, k.public_jwk, k.status, k.created_ms, k.verify_until_ms])
                        })
                        .map_err(unavailable)?;
                }
                Op::PutCheckpoint(c) => {
                    self.conn
                        .prepare_cached(
                            "INSERT INTO checkpoints (size, note, time_ms) VALUES (?1, ?2, ?3)",
                        )
                        .and_then(|mut s| s.execute(params![c.size, c.note, c.time_ms]))
                        .map_err(|e| {
                            conflict_or_unavailable(e, || {
                                format!("a checkpoint of size {} exists", c.size)
                            })
                        })?;
                }
                Op::Cosign { size, note } => {
                    let n = self
                        .conn
                        .prepare_cached("UPDATE checkpoints SET note = ?2 WHERE size = ?1")
                        .and_then(|mut s| s.execute(params![size, note]))
                        .map_err(unavailable)?;
                    if n != 1 {
                        return Err(StoreError::Conflict(format!(
                            "no checkpoint of size {size}"
                        )));
                    }
                }
            }
        }
        Ok(indices)
    }
}

fn conflict_or_unavailable(e: rusqlite::Error, msg: impl FnOnce() -> String) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(msg())
        }
        other => unavailable(other),
    }
}

fn hash32(v: Vec<u8>) -> rusqlite::Result<[u8; 32]> {
    v.try_into().map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, "hash".into(), rusqlite::types::Type::Blob)
    })
}

fn writ_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WritRecord> {
    Ok(WritRecord {
        jti: r.get(0)?,
        principal: r.get(1)?,
        action: r.get(2)?,
        resource: r.get(3)?,
        audience: r.get(4)?,
        parent: r.get(5)?,
        root: r.get(6)?,
        depth: r.get(7)?,
        scope: r.get(8)?,
        policy: r.get(9)?,
        iat: r.get(10)?,
        exp: r.get(11)?,
        log_index: r.get(12)?,
        via: r.get(13)?,
        holder: r.get(14)?,
    })
}

const WRIT_COLUMNS: &str =
    "jti, principal, action, resource, audience, parent, root, depth, scope, policy, iat, exp, log_index, via, holder";

fn checkpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CheckpointRecord> {
    Ok(CheckpointRecord {
        size: r.get(0)?,
        note: r.get(1)?,
        time_ms: r.get(2)?,
    })
}

impl SqliteStore {
    /// Run `f` over the stored tree after checking `size` is within the log.
    fn with_tree<T>(
        &self,
        size: u64,
        f: impl FnOnce(&dyn NodeReader) -> Result<T, ProofError>,
    ) -> Result<T, ProofError> {
        self.with_conn(|conn| {
            let log_size: u64 = conn
                .prepare_cached("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(|e| ProofError::Unavailable(e.to_string()))?;
            if size > log_size {
                return Err(ProofError::BeyondLog { size, log_size });
            }
            f(&tree::ConnNodes(conn, Some(&self.upper)))
        })
        .map_err(|e| ProofError::Unavailable(e.to_string()))?
    }
}

impl Store for SqliteStore {
    fn submit(&self, tx: Tx) -> Ticket {
        let (reply, rx) = oneshot::channel();
        match self.queue.try_send((tx, reply)) {
            Ok(()) => Ticket::pending(rx),
            Err(TrySendError::Full(_)) => Ticket::ready(Err(StoreError::Unavailable(format!(
                "more than {QUEUE_TX_MAX} transactions are waiting for the disk"
            )))),
            Err(TrySendError::Disconnected(_)) => Ticket::ready(Err(StoreError::Unavailable(
                "the store's writer has stopped".into(),
            ))),
        }
    }

    fn log_size(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries", [], |r| {
                r.get(0)
            })
        })
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<StoredLeaf>, StoreError> {
        self.read(|c| {
            let mut s = c.prepare_cached("SELECT idx, leaf, leaf_hash FROM entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")?;
            let rows = s.query_map(params![start, end], |r| {
                Ok(StoredLeaf { index: r.get(0)?, leaf: r.get(1)?, leaf_hash: hash32(r.get(2)?)? })
            })?;
            rows.collect()
        })
    }

    fn principals(&self) -> Result<Vec<PrincipalRecord>, StoreError> {
        self.read(|c| {
            let mut s = c.prepare_cached(
                "SELECT uid, token_hash, admin, created_ms, disabled, auditor FROM principals ORDER BY uid",
            )?;
            let rows = s.query_map([], |r| {
                Ok(PrincipalRecord {
                    uid: r.get(0)?,
                    token_hash: hash32(r.get(1)?)?,
                    admin: r.get(2)?,
                    created_ms: r.get(3)?,
                    disabled: r.get(4)?,
                    auditor: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    fn issuers(&self) -> Result<Vec<IssuerRecord>, StoreError> {
        self.read(|c| {
            let mut s =
                c.prepare_cached("SELECT name, spec, created_ms FROM issuers ORDER BY name")?;
            let rows = s.query_map([], |r| {
                Ok(IssuerRecord {
                    name: r.get(0)?,
                    spec: r.get(1)?,
                    created_ms: r.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    fn writ(&self, jti: &str) -> Result<Option<WritRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {WRIT_COLUMNS} FROM writs WHERE jti = ?1"))?
                .query_row([jti], writ_row)
                .optional()
        })
    }

    fn children(&self, jti: &str) -> Result<Vec<WritRecord>, StoreError> {
        self.read(|c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {WRIT_COLUMNS} FROM writs WHERE parent = ?1 ORDER BY log_index"
            ))?;
            let rows = s.query_map([jti], writ_row)?;
            rows.collect()
        })
    }

    fn execution(&self, jti: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT jti, started_ms, finished_ms, exit_status, outcome, lease_exp, cred_hash FROM executions WHERE jti = ?1")?
                .query_row([jti], |r| {
                    Ok(ExecutionRecord {
                        jti: r.get(0)?,
                        started_ms: r.get(1)?,
                        finished_ms: r.get(2)?,
                        exit_status: r.get(3)?,
                        outcome: r.get(4)?,
                        lease_exp: r.get(5)?,
                        credential_hash: r.get::<_, Option<Vec<u8>>>(6)?.map(hash32).transpose()?,
                    })
                })
                .optional()
        })
    }

    fn contents(&self, start: u64, end: u64) -> Result<Vec<StoredContent>, StoreError> {
        self.read(|c| {
            let mut s = c.prepare_cached(
                "SELECT idx, salt, content FROM entry_content WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
            )?;
            let rows = s.query_map(params![start, end], |r| {
                Ok(StoredContent {
                    index: r.get(0)?,
                    salt: hash32(r.get(1)?)?,
                    content: r.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    fn delegated(&self, jti: &str, principal: &str) -> Result<bool, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT 1 FROM delegations WHERE jti = ?1 AND principal = ?2")?
                .query_row([jti, principal], |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
        })
    }

    fn revocations(&self) -> Result<Vec<RevocationRecord>, StoreError> {
        self.read(|c| {
            let mut s = c.prepare_cached("SELECT target, kind, time_ms, by, reason FROM revocations ORDER BY time_ms, target")?;
            let rows = s.query_map([], |r| {
                Ok(RevocationRecord { target: r.get(0)?, kind: r.get(1)?, time_ms: r.get(2)?, by: r.get(3)?, reason: r.get(4)? })
            })?;
            rows.collect()
        })
    }

    fn bundle(&self, hash: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT signed_json FROM bundles WHERE hash = ?1")?
                .query_row([hash], |r| r.get(0))
                .optional()
        })
    }

    fn activations(&self) -> Result<Vec<ActivationRecord>, StoreError> {
        self.read(|c| {
            let mut s =
                c.prepare_cached("SELECT seq, hash, time_ms, by FROM activations ORDER BY seq")?;
            let rows = s.query_map([], |r| {
                Ok(ActivationRecord {
                    seq: r.get(0)?,
                    hash: r.get(1)?,
                    time_ms: r.get(2)?,
                    by: r.get(3)?,
                })
            })?;
            rows.collect()
        })
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
        let from = after.map_or(-1, |(l, i)| tree::node_key(l, i));
        self.read(|c| {
            let mut s = c.prepare_cached(
                "SELECT key, hash FROM nodes WHERE key > ?1 ORDER BY key LIMIT ?2",
            )?;
            let rows = s.query_map(params![from, limit as i64], |r| {
                let (level, index) = crate::node_of_key(r.get(0)?);
                Ok((level, index, hash32(r.get(1)?)?))
            })?;
            rows.collect()
        })
    }

    fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<CheckpointRecord>, StoreError> {
        self.read(|c| {
            let mut s = c.prepare_cached(
                "SELECT size, note, time_ms FROM checkpoints WHERE size >= ?1 ORDER BY size LIMIT ?2",
            )?;
            // SQLite integers are i64: a `from` past i64::MAX (a query
            // parameter) is past every tree size, so it matches nothing
            // rather than failing the read (which was answered 503).
            let from = i64::try_from(from).unwrap_or(i64::MAX);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = s.query_map(params![from, limit], checkpoint_row)?;
            rows.collect()
        })
    }

    fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT size, note, time_ms FROM checkpoints ORDER BY size DESC LIMIT 1",
            )?
            .query_row([], checkpoint_row)
            .optional()
        })
    }

    fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.read(|c| {
            let mut s = c.prepare_cached(
                "SELECT kid, role, public_jwk, status, created_ms, verify_until_ms FROM keys ORDER BY created_ms, kid",
            )?;
            let rows = s.query_map([], |r| {
                Ok(KeyRecord {
                    kid: r.get(0)?,
                    role: r.get(1)?,
                    public_jwk: r.get(2)?,
                    status: r.get(3)?,
                    created_ms: r.get(4)?,
                    verify_until_ms: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests;
