//! The shared store's schema: migrations, applied in order under an
//! advisory lock so that nodes starting together apply each once.

use tokio_postgres::Client;

use super::sql::{pg_unavailable, unavailable};
use crate::types::StoreError;

/// The advisory lock serializing migrations.
const MIGRATE_LOCK: i64 = 0x7772_6974_6d67;

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
    r#"
CREATE TABLE pins (
    resource TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    log_index BIGINT NOT NULL,
    approved BOOLEAN NOT NULL
);
"#,
];

pub(super) async fn migrate(c: &mut Client) -> Result<(), StoreError> {
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
