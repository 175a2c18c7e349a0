//! Reads of the shared store, each one query on a pooled connection.

use tokio_postgres::Row;
use writ_log::merkle::{self, ProofError};
use writ_log::Hash;

use super::sql::{get, get_u64, hash_of, i64_of, stored_node, u64_of, Param};
use super::store::PgStore;
use crate::nodes::node_key;
use crate::roles::{merkle_proofs, LogRead, StateRead};
use crate::types::*;

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

impl LogRead for PgStore {
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

    merkle_proofs!();
}

impl StateRead for PgStore {
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

    fn delegated(&self, jti: &str, principal: &str) -> Result<bool, StoreError> {
        Ok(!self
            .rows(
                "SELECT 1 FROM delegations WHERE jti = $1 AND principal = $2",
                vec![Param::Text(jti.into()), Param::Text(principal.into())],
            )?
            .is_empty())
    }

    fn pin(&self, resource: &str) -> Result<Option<PinRecord>, StoreError> {
        self.rows(
            "SELECT resource, digest, time_ms, log_index, approved FROM pins WHERE resource = $1",
            vec![Param::Text(resource.into())],
        )?
        .first()
        .map(pin_row)
        .transpose()
    }

    fn pins(&self) -> Result<Vec<PinRecord>, StoreError> {
        self.rows(
            "SELECT resource, digest, time_ms, log_index, approved FROM pins ORDER BY resource",
            vec![],
        )?
        .iter()
        .map(pin_row)
        .collect()
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
        .filter_map(|r| key_of(r).transpose())
        .collect()
    }
}

/// A `keys` row, or `None` for a key of a role or status this writ does
/// not know: left out, as in `SqliteStore::keys`.
fn key_of(r: &Row) -> Result<Option<KeyRecord>, StoreError> {
    let role = get::<String>(r, 1)?.parse::<KeyRole>();
    let status = get::<String>(r, 3)?.parse::<KeyStatus>();
    let (Ok(role), Ok(status)) = (role, status) else {
        return Ok(None);
    };
    Ok(Some(KeyRecord {
        kid: get(r, 0)?,
        role,
        public_jwk: get(r, 2)?,
        status,
        created_ms: get_u64(r, 4)?,
        verify_until_ms: get::<Option<i64>>(r, 5)?.map(u64_of).transpose()?,
    }))
}

fn pin_row(r: &Row) -> Result<PinRecord, StoreError> {
    Ok(PinRecord {
        resource: get(r, 0)?,
        digest: get(r, 1)?,
        time_ms: get_u64(r, 2)?,
        log_index: get_u64(r, 3)?,
        approved: get(r, 4)?,
    })
}
