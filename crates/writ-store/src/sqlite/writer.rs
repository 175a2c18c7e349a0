//! The writer thread: group commit, with one fsync per batch, and the WAL
//! upkeep around it (the checkpointer thread, a preallocated WAL). What each
//! op writes is in `apply.rs`.
//!
//! # Tuning (SQLite group commit)
//!
//! - **One writer thread, one fdatasync per batch.** Every waiting
//!   transaction is applied and committed together (WAL, `synchronous=FULL`);
//!   a ticket resolves only after its batch's commit returned.
//! - **No savepoint per transaction.** A batch is applied plainly; if any of
//!   its transactions fails (a conflict, a statement error), the batch is
//!   rolled back and applied again with each transaction in its own
//!   savepoint, so only that one is refused. Savepoints made SQLite copy
//!   every page they touched into a subjournal on every commit.
//! - **fdatasync, not fsync.** SQLite is built with `HAVE_FDATASYNC`
//!   (`.cargo/config.toml`): on Linux it writes the data and, when it changed,
//!   the size, not the timestamps.
//! - **The WAL is preallocated** (`WAL_PREALLOCATED_FRAMES`), a page per
//!   write, so a commit overwrites allocated space instead of growing the
//!   file: an fdatasync that must also write the size took 0.44 ms where one
//!   that overwrites took 0.31 ms. Writing the preallocation in 4 KB pieces
//!   (small page-cache folios) took `ext4_block_write_begin` out of the
//!   writer's profile; it changed no rate that could be measured.
//! - **Checkpoints are never part of a commit.** A checkpointer thread runs a
//!   passive checkpoint each time the WAL has grown by `CHECKPOINT_FRAMES`
//!   (256 frames, about 1 MiB); every `WAL_RESTART_FRAMES` (1,000) the writer,
//!   after its replies, copies what is left so the WAL starts over. Restarting
//!   every 8,000 frames instead was measured and not kept: each restart then
//!   copies 8x as much, and the open loop's p99 did not move.
//! - **The upper tree levels are in memory** (`sqlite/tree.rs`, `tree::Upper`):
//!   committed subtree hashes of level 8 and above (1/128 of the tree, 2.5 MB
//!   at ten million entries), loaded on open and extended by the writer after
//!   each commit, so a proof reads at most eight neighbouring rows. They only
//!   receive nodes of a committed batch. With leaf reads overlapping hashing
//!   in `verify_log`, proofs at 10M went from 104 to 58 us and verification
//!   from 513k to 685k entries/s.
//! - **Tried and dropped** (each measured, none faster beyond noise): a
//!   smaller page cache; the fdatasync on a syncer thread (batches got smaller
//!   and the rate fell); `synchronous=NORMAL` or `OFF` as an upper bound (no
//!   faster: the flush is not what holds the callers); pages of 1-8 KB;
//!   `writs` as `WITHOUT ROWID`; a commit delay waiting for a batch of 16-64;
//!   the writer at nice -10, nice -15 or `SCHED_FIFO` (fewer stalls, lower
//!   rate); `SQLITE_FCNTL_CHUNK_SIZE` (also `unsafe`).

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::conn::{open_conn, unavailable};
use super::{pace, tree};
use crate::types::*;
use writ_log::Hash;

/// Most transactions one group commit takes.
pub const BATCH_TX_MAX: usize = 2048;
/// Most transactions waiting for the writer; past this, submitters are told the
/// store is unavailable rather than queueing without bound.
pub const QUEUE_TX_MAX: usize = 16 * 1024;

pub(super) type Job = (Tx, oneshot::Sender<TxResult>);

/// How many batches were applied a second time, with savepoints.
#[cfg(test)]
pub(super) static CAREFUL_RETRIES: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// Why an attempt at a group commit ended without committing.
enum Attempt {
    /// A transaction failed (a conflict, a statement that erred): retry
    /// the batch with savepoints.
    Conflict,
    /// The store failed: every transaction of the batch is refused.
    Failed(StoreError),
}

/// The writer thread and the checkpointer thread it feeds.
pub(super) struct WriterHandle(Vec<std::thread::JoinHandle<()>>);

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
pub(super) const WAL_RESTART_FRAMES: i32 = 1000;

/// WAL frames whose space the writer allocates when it starts (a little
/// more than the WAL holds before it starts over): appending to the WAL
/// file would change its size with every commit, and an fdatasync that
/// must also write the file's size took 0.44 ms here where one that
/// overwrites allocated space took 0.31 ms.
pub(super) const WAL_PREALLOCATED_FRAMES: u64 = WAL_RESTART_FRAMES as u64 + 64;

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

/// Start the writer on `conn` (the store at `path`, holding `next` entries
/// whose tree's right edge is `frontier`) and the checkpointer it feeds.
/// Returns the writer's queue and the handle that joins both threads.
pub(super) fn spawn(
    conn: Connection,
    path: &Path,
    next: u64,
    frontier: tree::Frontier,
    upper: Arc<tree::Upper>,
) -> Result<(SyncSender<Job>, WriterHandle), StoreError> {
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
    let db_path = path.to_owned();
    let writer = std::thread::Builder::new()
        .name("writ-store-writer".into())
        .spawn(move || {
            Writer {
                conn,
                next,
                frontier,
                upper,
                new_upper: Vec::new(),
                checkpointer: poke,
                poked_at: 0,
            }
            .start(&db_path, rx)
        })
        .map_err(unavailable)?;
    Ok((tx, WriterHandle(vec![writer, checkpointer])))
}

pub(super) struct Writer {
    pub(super) conn: Connection,
    /// Index the next appended leaf gets.
    pub(super) next: u64,
    /// The right edge of the committed-or-pending tree (size == next).
    pub(super) frontier: tree::Frontier,
    /// Where readers find the upper levels; extended after each commit.
    upper: Arc<tree::Upper>,
    /// Upper-level nodes of the batch being written, not yet committed.
    pub(super) new_upper: Vec<(u8, u64, Hash)>,
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
                self.committed();
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

    /// After a commit: publish its upper-level nodes to readers, and poke
    /// the checkpointer once [`CHECKPOINT_FRAMES`] more are in the WAL.
    fn committed(&mut self) {
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
            results.push(self.apply_in_savepoint(tx)?);
        }
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| Attempt::Failed(unavailable(e)))?;
        Ok(results)
    }

    /// Apply `tx` inside its own savepoint: when it fails, it alone is
    /// rolled back (in the database and in memory) and its error returned.
    fn apply_in_savepoint(&mut self, tx: &Tx) -> Result<TxResult, Attempt> {
        self.exec_cached("SAVEPOINT tx").map_err(Attempt::Failed)?;
        let before = self.next;
        let before_frontier = self.frontier.clone();
        let before_upper = self.new_upper.len();
        match self.apply(tx) {
            Ok(indices) => {
                self.exec_cached("RELEASE tx").map_err(Attempt::Failed)?;
                Ok(Ok(indices))
            }
            Err(e) => {
                self.exec_cached("ROLLBACK TO tx")
                    .map_err(Attempt::Failed)?;
                self.exec_cached("RELEASE tx").map_err(Attempt::Failed)?;
                self.next = before;
                self.frontier = before_frontier;
                self.new_upper.truncate(before_upper);
                Ok(Err(e))
            }
        }
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
}
