//! The embedded store: opening it, its read connections, and the queue to
//! its writer.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::conn::{open_conn, unavailable};
use super::writer::{self, Job, WriterHandle, QUEUE_TX_MAX};
use super::{schema, tree};
use crate::roles::{Mesh, Store, Submit};
use crate::types::*;

/// Read connections kept open.
const READERS_MAX: usize = 8;

/// The embedded SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    queue: SyncSender<Job>,
    readers: Mutex<Vec<Connection>>,
    /// The upper levels of the committed tree, shared with the writer.
    pub(super) upper: Arc<tree::Upper>,
    _writer: Arc<WriterHandle>,
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
        schema::migrate(&conn)?;
        let next = schema::dense_log_size(&conn)?;
        let incomplete = |e: writ_log::merkle::ReadError| {
            StoreError::Integrity(format!(
                "the stored Merkle tree of {next} entries is incomplete: {e}"
            ))
        };
        let frontier =
            tree::Frontier::load(&tree::ConnNodes(&conn, None), next).map_err(incomplete)?;
        let upper = Arc::new(tree::Upper::load(&conn, next).map_err(incomplete)?);
        let (queue, writer) = writer::spawn(conn, path, next, frontier, upper.clone())?;
        Ok(SqliteStore {
            path: path.to_owned(),
            queue,
            readers: Mutex::new(Vec::new()),
            upper,
            _writer: Arc::new(writer),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.with_conn(f)?.map_err(unavailable)
    }

    /// Run `f` on a pooled read connection (opening one when none is free).
    pub(super) fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> T) -> Result<T, StoreError> {
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

impl Submit for SqliteStore {
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
}

/// A store of one node: no mesh.
impl Store for SqliteStore {
    fn mesh(&self) -> Option<&dyn Mesh> {
        None
    }
}
