//! Connections to the SQLite file, and the error mapping every part of the
//! store uses.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::types::StoreError;

/// How long a connection waits for a lock before giving up.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// Page cache per connection, KiB.
const CACHE_KIB: i64 = 32 * 1024;

pub(super) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub(super) fn open_conn(path: &Path, create: bool) -> Result<Connection, StoreError> {
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

pub(super) fn conflict_or_unavailable(
    e: rusqlite::Error,
    msg: impl FnOnce() -> String,
) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(msg())
        }
        other => unavailable(other),
    }
}

pub(super) fn hash32(v: Vec<u8>) -> rusqlite::Result<[u8; 32]> {
    v.try_into().map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, "hash".into(), rusqlite::types::Type::Blob)
    })
}
