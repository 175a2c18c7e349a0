//! What each [`Op`] writes to the embedded store, inside the writer's
//! transaction: one named step per op.

use rusqlite::{params, Params};

use super::conn::{conflict_or_unavailable, unavailable};
use super::tree;
use super::writer::Writer;
use crate::types::*;

impl Writer {
    /// Apply the ops of `tx` in order: the log index of each `Append`, or the
    /// first error (the caller rolls the transaction back).
    pub(super) fn apply(&mut self, tx: &Tx) -> TxResult {
        let mut indices = Vec::new();
        for op in &tx.ops {
            let last = indices.last().copied();
            match op {
                Op::Append { leaf } => indices.push(self.append(leaf)?),
                Op::RecordWrit(w) => self.record_writ(w, last)?,
                Op::Spend {
                    jti,
                    time_ms,
                    credential_hash,
                } => self.spend(jti, *time_ms, credential_hash.as_ref())?,
                Op::Lease { jti, lease_exp } => self.lease(jti, *lease_exp)?,
                Op::Finish {
                    jti,
                    time_ms,
                    exit_status,
                    outcome,
                } => self.finish(jti, *time_ms, *exit_status, outcome)?,
                Op::Revoke(r) => self.revoke(r)?,
                Op::PutPrincipal(p) => self.put_principal(p)?,
                Op::UpdatePrincipal {
                    uid,
                    token_hash,
                    disabled,
                } => self.update_principal(uid, token_hash.as_ref(), *disabled)?,
                Op::PutIssuer {
                    name,
                    spec,
                    created_ms,
                } => self.put_issuer(name, spec, *created_ms)?,
                Op::RemoveIssuer { name } => self.remove_issuer(name)?,
                Op::PutContent { salt, content } => self.put_content(last, salt, content)?,
                Op::EraseContent { index, leaf_too } => self.erase_content(*index, *leaf_too)?,
                Op::Delegate { jti, principal } => self.delegate(jti, principal)?,
                Op::PutBundle { hash, signed_json } => self.put_bundle(hash, signed_json)?,
                Op::Activate { hash, time_ms, by } => self.activate(hash, *time_ms, by)?,
                Op::PutKey(k) => self.put_key(k)?,
                Op::PutCheckpoint(c) => self.put_checkpoint(c)?,
                Op::Cosign { size, note } => self.cosign(*size, note)?,
                Op::Pin {
                    resource,
                    digest,
                    time_ms,
                    approved,
                } => self.pin(resource, digest, *time_ms, *approved, last)?,
            }
        }
        Ok(indices)
    }

    /// Run one statement through the statement cache: the rows it changed.
    fn exec(&self, sql: &str, p: impl Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql).and_then(|mut s| s.execute(p))
    }

    /// Append a leaf and the subtree hashes it completes: its index.
    fn append(&mut self, leaf: &[u8]) -> Result<u64, StoreError> {
        let hash = writ_log::leaf_hash(leaf);
        self.exec(
            "INSERT INTO entries (idx, leaf, leaf_hash) VALUES (?1, ?2, ?3)",
            params![self.next, leaf, &hash[..]],
        )
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
        let index = self.next;
        self.next += 1;
        Ok(index)
    }

    fn record_writ(&self, w: &WritRecord, last: Option<u64>) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO writs (jti, principal, action, resource, audience, parent, root, depth, scope, policy, iat, exp, log_index, via, holder)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            params![
                w.jti, w.principal, w.action, w.resource, w.audience, w.parent, w.root, w.depth,
                w.scope, w.policy, w.iat, w.exp, last.unwrap_or(w.log_index), w.via, w.holder
            ],
        )
        .map_err(|e| conflict_or_unavailable(e, || format!("writ {} already recorded", w.jti)))?;
        Ok(())
    }

    fn spend(&self, jti: &str, time_ms: u64, cred: Option<&[u8; 32]>) -> Result<(), StoreError> {
        let cred = cred.map(|h| &h[..]);
        self.exec(
            "INSERT INTO executions (jti, started_ms, cred_hash) VALUES (?1, ?2, ?3)",
            params![jti, time_ms, cred],
        )
        .map_err(|e| conflict_or_unavailable(e, || format!("writ {jti} was already spent")))?;
        Ok(())
    }

    fn lease(&self, jti: &str, lease_exp: u64) -> Result<(), StoreError> {
        let n = self
            .exec(
                "UPDATE executions SET lease_exp = ?2 WHERE jti = ?1 AND finished_ms IS NULL",
                params![jti, lease_exp],
            )
            .map_err(unavailable)?;
        if n != 1 {
            return Err(StoreError::Conflict(format!(
                "execution {jti} is not running"
            )));
        }
        Ok(())
    }

    fn finish(
        &self,
        jti: &str,
        time_ms: u64,
        exit_status: Option<i64>,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let n = self
            .exec(
                "UPDATE executions SET finished_ms = ?2, exit_status = ?3, outcome = ?4
                             WHERE jti = ?1 AND finished_ms IS NULL",
                params![jti, time_ms, exit_status, outcome],
            )
            .map_err(unavailable)?;
        if n != 1 {
            return Err(StoreError::Conflict(format!(
                "execution {jti} was never started or has already finished"
            )));
        }
        Ok(())
    }

    fn revoke(&self, r: &RevocationRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR IGNORE INTO revocations (target, kind, time_ms, by, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![r.target, r.kind, r.time_ms, r.by, r.reason],
        )
        .map_err(unavailable)?;
        Ok(())
    }

    fn put_principal(&self, p: &PrincipalRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO principals (uid, token_hash, admin, created_ms, disabled, auditor) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![p.uid, &p.token_hash[..], p.admin, p.created_ms, p.disabled, p.auditor],
        )
        .map_err(|e| conflict_or_unavailable(e, || format!("principal {} already exists", p.uid)))?;
        Ok(())
    }

    fn update_principal(
        &self,
        uid: &str,
        token_hash: Option<&[u8; 32]>,
        disabled: Option<bool>,
    ) -> Result<(), StoreError> {
        let n = self
            .exec(
                "UPDATE principals SET token_hash = COALESCE(?2, token_hash),
                                                   disabled = COALESCE(?3, disabled) WHERE uid = ?1",
                params![uid, token_hash.map(|h| &h[..]), disabled],
            )
            .map_err(unavailable)?;
        if n != 1 {
            return Err(StoreError::Conflict(format!("no principal {uid}")));
        }
        Ok(())
    }

    fn put_issuer(&self, name: &str, spec: &str, created_ms: u64) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO issuers (name, spec, created_ms) VALUES (?1, ?2, ?3)",
            params![name, spec, created_ms],
        )
        .map_err(|e| conflict_or_unavailable(e, || format!("issuer {name} already exists")))?;
        Ok(())
    }

    fn remove_issuer(&self, name: &str) -> Result<(), StoreError> {
        let n = self
            .exec("DELETE FROM issuers WHERE name = ?1", params![name])
            .map_err(unavailable)?;
        if n != 1 {
            return Err(StoreError::Conflict(format!("no issuer {name}")));
        }
        Ok(())
    }

    /// Keep `content` beside the entry appended last in the transaction.
    fn put_content(
        &self,
        last: Option<u64>,
        salt: &[u8; 32],
        content: &[u8],
    ) -> Result<(), StoreError> {
        let Some(index) = last else {
            return Err(StoreError::Integrity(
                "content without an entry in its transaction".into(),
            ));
        };
        self.exec(
            "INSERT INTO entry_content (idx, salt, content) VALUES (?1, ?2, ?3)",
            params![index, &salt[..], content],
        )
        .map_err(unavailable)?;
        Ok(())
    }

    fn erase_content(&self, index: u64, leaf_too: bool) -> Result<(), StoreError> {
        self.exec("DELETE FROM entry_content WHERE idx = ?1", params![index])
            .map_err(unavailable)?;
        if leaf_too {
            self.exec(
                "UPDATE entries SET leaf = x'' WHERE idx = ?1",
                params![index],
            )
            .map_err(unavailable)?;
        }
        Ok(())
    }

    fn delegate(&self, jti: &str, principal: &str) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR IGNORE INTO delegations (jti, principal) VALUES (?1, ?2)",
            params![jti, principal],
        )
        .map_err(unavailable)?;
        Ok(())
    }

    /// Pin `resource` to `digest` (see [`Op::Pin`]).
    fn pin(
        &self,
        resource: &str,
        digest: &str,
        time_ms: u64,
        approved: bool,
        last: Option<u64>,
    ) -> Result<(), StoreError> {
        let log_index = last.ok_or_else(|| unavailable("a pin must follow its log entry"))?;
        if approved {
            self.exec(
                "INSERT INTO pins (resource, digest, time_ms, log_index, approved) VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT (resource) DO UPDATE SET digest = excluded.digest, time_ms = excluded.time_ms,
                 log_index = excluded.log_index, approved = 1",
                params![resource, digest, time_ms, log_index],
            )
            .map_err(unavailable)?;
            return Ok(());
        }
        self.exec(
            "INSERT OR IGNORE INTO pins (resource, digest, time_ms, log_index, approved) VALUES (?1, ?2, ?3, ?4, 0)",
            params![resource, digest, time_ms, log_index],
        )
        .map_err(unavailable)?;
        let pinned: String = self
            .conn
            .prepare_cached("SELECT digest FROM pins WHERE resource = ?1")
            .and_then(|mut s| s.query_row(params![resource], |r| r.get(0)))
            .map_err(unavailable)?;
        if pinned != digest {
            return Err(StoreError::Conflict(format!(
                "the definition of {resource} is pinned to {pinned}, not {digest}"
            )));
        }
        Ok(())
    }

    fn put_bundle(&self, hash: &str, signed_json: &str) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR IGNORE INTO bundles (hash, signed_json) VALUES (?1, ?2)",
            params![hash, signed_json],
        )
        .map_err(unavailable)?;
        Ok(())
    }

    fn activate(&self, hash: &str, time_ms: u64, by: &str) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO activations (hash, time_ms, by) VALUES (?1, ?2, ?3)",
            params![hash, time_ms, by],
        )
        .map_err(|e| conflict_or_unavailable(e, || format!("bundle {hash} is not stored")))?;
        Ok(())
    }

    fn put_key(&self, k: &KeyRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO keys (kid, role, public_jwk, status, created_ms, verify_until_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                             ON CONFLICT(kid) DO UPDATE SET status = excluded.status, verify_until_ms = excluded.verify_until_ms",
            params![
                k.kid,
                k.role.as_str(),
                k.public_jwk,
                k.status.as_str(),
                k.created_ms,
                k.verify_until_ms
            ],
        )
        .map_err(unavailable)?;
        Ok(())
    }

    fn put_checkpoint(&self, c: &CheckpointRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO checkpoints (size, note, time_ms) VALUES (?1, ?2, ?3)",
            params![c.size, c.note, c.time_ms],
        )
        .map_err(|e| {
            conflict_or_unavailable(e, || format!("a checkpoint of size {} exists", c.size))
        })?;
        Ok(())
    }

    fn cosign(&self, size: u64, note: &str) -> Result<(), StoreError> {
        let n = self
            .exec(
                "UPDATE checkpoints SET note = ?2 WHERE size = ?1",
                params![size, note],
            )
            .map_err(unavailable)?;
        if n != 1 {
            return Err(StoreError::Conflict(format!(
                "no checkpoint of size {size}"
            )));
        }
        Ok(())
    }
}
