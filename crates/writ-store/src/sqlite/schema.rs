//! The embedded store's schema: its tables, and bringing an older store up
//! to date when it is opened.

use rusqlite::Connection;

use super::conn::unavailable;
use super::tree;
use crate::types::StoreError;

/// 1: entries and state tables. 2: the Merkle tree (`nodes`) and checkpoints.
/// 3: execution leases (`executions.lease_exp`). 4: disabled principals
/// (`principals.disabled`, `principals.auditor`), execution credentials
/// (`executions.cred_hash`), delegations, `writs.via`, and the content of
/// sealed decisions (`entry_content`). 5: external identity issuers
/// (`issuers`). 6: holder-bound writs (`writs.holder`). 7: pinned
/// definitions (`pins`).
const SCHEMA_VERSION: i64 = 7;
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
CREATE TABLE IF NOT EXISTS pins (
    resource TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    approved INTEGER NOT NULL
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
/// Check the schema version of the store at `conn` and migrate an older
/// (or new) store to [`SCHEMA_VERSION`] in one transaction.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
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
                add_missing_columns(conn)?;
            }
            conn.execute_batch(SCHEMA)?;
            if version == 1 {
                let n = tree::rebuild(conn)?;
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
    Ok(())
}

/// The columns later versions added to tables an older store has.
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
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
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    Ok(())
}

/// The number of entries in the log, after checking their indices are dense.
pub(super) fn dense_log_size(conn: &Connection) -> Result<u64, StoreError> {
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
    Ok(next)
}
