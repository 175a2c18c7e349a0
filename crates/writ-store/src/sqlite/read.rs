//! Reads of the embedded store, each on a pooled read connection.

use rusqlite::{params, OptionalExtension};
use writ_log::merkle::{self, NodeReader, ProofError};
use writ_log::Hash;

use super::conn::hash32;
use super::store::SqliteStore;
use super::tree;
use crate::roles::{merkle_proofs, LogRead, StateRead};
use crate::types::*;

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

impl LogRead for SqliteStore {
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
                let (level, index) = crate::nodes::node_of_key(r.get(0)?);
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

    merkle_proofs!();
}

impl StateRead for SqliteStore {
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

    fn pin(&self, resource: &str) -> Result<Option<PinRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT resource, digest, time_ms, log_index, approved FROM pins WHERE resource = ?1",
            )?
            .query_row([resource], pin_row)
            .optional()
        })
    }

    fn pins(&self) -> Result<Vec<PinRecord>, StoreError> {
        self.read(|c| {
            let mut s = c.prepare_cached(
                "SELECT resource, digest, time_ms, log_index, approved FROM pins ORDER BY resource",
            )?;
            let rows = s.query_map([], pin_row)?;
            rows.collect()
        })
    }

    fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        // A key of a role or status this writ does not know (one a newer
        // writ recorded) signs and verifies nothing here: it is left out,
        // as every reader of keys ignored it when they were strings.
        let rows = self.read(|c| {
            let mut s = c.prepare_cached(
                "SELECT kid, role, public_jwk, status, created_ms, verify_until_ms FROM keys ORDER BY created_ms, kid",
            )?;
            let rows = s.query_map([], |r| {
                let role = r.get::<_, String>(1)?.parse::<KeyRole>();
                let status = r.get::<_, String>(3)?.parse::<KeyStatus>();
                let (Ok(role), Ok(status)) = (role, status) else {
                    return Ok(None);
                };
                Ok(Some(KeyRecord {
                    kid: r.get(0)?,
                    role,
                    public_jwk: r.get(2)?,
                    status,
                    created_ms: r.get(4)?,
                    verify_until_ms: r.get(5)?,
                }))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(rows.into_iter().flatten().collect())
    }
}

fn pin_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PinRecord> {
    Ok(PinRecord {
        resource: r.get(0)?,
        digest: r.get(1)?,
        time_ms: r.get(2)?,
        log_index: r.get(3)?,
        approved: r.get(4)?,
    })
}
