//! Planning a transaction for the shared store: its appends are staged (the
//! batch writes every leaf and tree node at once), each other op becomes a
//! statement, one named step per op.

use writ_log::merkle::Frontier;

use super::sql::{i64_of, Param};
use crate::nodes::node_key;
use crate::types::*;

/// One statement of a transaction, and what a constraint failure means.
pub(super) struct Stmt {
    pub(super) sql: &'static str,
    pub(super) params: Vec<Param>,
    pub(super) conflict: Option<String>,
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
    /// A statement that must change exactly one row: `sql` ends in
    /// `writ_expect_one(count(*), $n)`, where `$n` (the last parameter) is
    /// `msg`, also the conflict it is reported as.
    fn expect_one(sql: &'static str, mut params: Vec<Param>, msg: String) -> Stmt {
        params.push(Param::Text(msg.clone()));
        Stmt::new(sql, params).or_conflict(msg)
    }
}

/// What a batch adds to the tree and the head, beyond its statements.
#[derive(Clone)]
pub(super) struct Staged {
    pub(super) next: u64,
    pub(super) frontier: Frontier,
    pub(super) entries: Vec<(i64, Vec<u8>, Vec<u8>)>,
    pub(super) nodes: Vec<(i64, Vec<u8>)>,
    pub(super) state_changes: i64,
}

impl Staged {
    /// Nothing staged yet on a log of `size` entries whose right edge is
    /// `frontier`.
    pub(super) fn new(size: u64, frontier: Frontier) -> Staged {
        Staged {
            next: size,
            frontier,
            entries: Vec::new(),
            nodes: Vec::new(),
            state_changes: 0,
        }
    }

    pub(super) fn truncate_to(&mut self, at: &Staged) {
        self.next = at.next;
        self.frontier = at.frontier.clone();
        self.entries.truncate(at.entries.len());
        self.nodes.truncate(at.nodes.len());
        self.state_changes = at.state_changes;
    }

    /// Stage a leaf and the subtree hashes it completes: its index.
    fn append(&mut self, leaf: &[u8]) -> Result<u64, StoreError> {
        let hash = writ_log::leaf_hash(leaf);
        let index = self.next;
        self.entries
            .push((i64_of(index)?, leaf.to_vec(), hash.to_vec()));
        let nodes = &mut self.nodes;
        self.frontier
            .push(hash, |l, i, h| nodes.push((node_key(l, i), h.to_vec())));
        self.next += 1;
        Ok(index)
    }
}

/// Plan `tx`: its appends go into `staged`, its other ops become statements.
pub(super) fn plan(tx: &Tx, staged: &mut Staged) -> Result<(Vec<u64>, Vec<Stmt>), StoreError> {
    let mut indices = Vec::new();
    let mut stmts = Vec::new();
    for op in &tx.ops {
        if let Op::Append { leaf } = op {
            indices.push(staged.append(leaf)?);
            continue;
        }
        if changes_state(op) {
            staged.state_changes += 1;
        }
        statements(op, indices.last().copied(), &mut stmts)?;
    }
    Ok((indices, stmts))
}

/// Whether `op` changes state the authority keeps in memory: its commit
/// moves `writ_head.state_seq` and notifies the other nodes.
fn changes_state(op: &Op) -> bool {
    matches!(
        op,
        Op::Revoke(_)
            | Op::PutPrincipal(_)
            | Op::UpdatePrincipal { .. }
            | Op::PutIssuer { .. }
            | Op::RemoveIssuer { .. }
            | Op::Activate { .. }
            | Op::PutKey(_)
    )
}

/// The statements of `op` (any but `Append`); `last` is the index of the
/// transaction's last append before it.
fn statements(op: &Op, last: Option<u64>, out: &mut Vec<Stmt>) -> Result<(), StoreError> {
    let stmt = match op {
        Op::Append { .. } => return Ok(()),
        Op::RecordWrit(w) => record_writ(w, last)?,
        Op::Spend {
            jti,
            time_ms,
            credential_hash,
        } => spend(jti, *time_ms, credential_hash.as_ref())?,
        Op::Lease { jti, lease_exp } => lease(jti, *lease_exp)?,
        Op::Finish {
            jti,
            time_ms,
            exit_status,
            outcome,
        } => finish(jti, *time_ms, *exit_status, outcome)?,
        Op::Revoke(r) => revoke(r)?,
        Op::PutPrincipal(p) => put_principal(p)?,
        Op::UpdatePrincipal {
            uid,
            token_hash,
            disabled,
        } => update_principal(uid, token_hash.as_ref(), *disabled),
        Op::PutIssuer {
            name,
            spec,
            created_ms,
        } => put_issuer(name, spec, *created_ms)?,
        Op::RemoveIssuer { name } => remove_issuer(name),
        Op::PutContent { salt, content } => put_content(last, salt, content)?,
        Op::EraseContent { index, leaf_too } => {
            out.push(Stmt::new(
                "DELETE FROM entry_content WHERE idx = $1",
                vec![Param::Int(i64_of(*index)?)],
            ));
            if !*leaf_too {
                return Ok(());
            }
            Stmt::new(
                "UPDATE entries SET leaf = ''::bytea WHERE idx = $1",
                vec![Param::Int(i64_of(*index)?)],
            )
        }
        Op::Delegate { jti, principal } => Stmt::new(
            "INSERT INTO delegations (jti, principal) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            vec![Param::Text(jti.clone()), Param::Text(principal.clone())],
        ),
        Op::PutBundle { hash, signed_json } => Stmt::new(
            "INSERT INTO bundles (hash, signed_json) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
            vec![Param::Text(hash.clone()), Param::Text(signed_json.clone())],
        ),
        Op::Activate { hash, time_ms, by } => activate(hash, *time_ms, by)?,
        Op::PutKey(k) => put_key(k)?,
        Op::PutCheckpoint(c) => put_checkpoint(c)?,
        Op::Cosign { size, note } => cosign(*size, note)?,
        Op::Pin {
            resource,
            digest,
            time_ms,
            approved,
        } => pin(resource, digest, *time_ms, *approved, last)?,
    };
    out.push(stmt);
    Ok(())
}

fn record_writ(w: &WritRecord, last: Option<u64>) -> Result<Stmt, StoreError> {
    Ok(Stmt::new(
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
            Param::Int(i64_of(last.unwrap_or(w.log_index))?),
            Param::OptText(w.via.clone()),
            Param::OptText(w.holder.clone()),
        ],
    )
    .or_conflict(format!("writ {} already recorded", w.jti)))
}

fn spend(jti: &str, time_ms: u64, cred: Option<&[u8; 32]>) -> Result<Stmt, StoreError> {
    Ok(Stmt::new(
        "INSERT INTO executions (jti, started_ms, cred_hash) VALUES ($1, $2, $3)",
        vec![
            Param::Text(jti.to_owned()),
            Param::Int(i64_of(time_ms)?),
            Param::OptBytes(cred.map(|h| h.to_vec())),
        ],
    )
    .or_conflict(format!("writ {jti} was already spent")))
}

fn lease(jti: &str, lease_exp: u64) -> Result<Stmt, StoreError> {
    Ok(Stmt::expect_one(
        "WITH u AS (UPDATE executions SET lease_exp = $2 WHERE jti = $1 AND finished_ms IS NULL RETURNING 1)
                         SELECT writ_expect_one(count(*), $3) FROM u",
        vec![Param::Text(jti.to_owned()), Param::Int(i64_of(lease_exp)?)],
        format!("execution {jti} is not running"),
    ))
}

fn finish(
    jti: &str,
    time_ms: u64,
    exit_status: Option<i64>,
    outcome: &str,
) -> Result<Stmt, StoreError> {
    Ok(Stmt::expect_one(
        "WITH u AS (UPDATE executions SET finished_ms = $2, exit_status = $3, outcome = $4
                                    WHERE jti = $1 AND finished_ms IS NULL RETURNING 1)
                         SELECT writ_expect_one(count(*), $5) FROM u",
        vec![
            Param::Text(jti.to_owned()),
            Param::Int(i64_of(time_ms)?),
            Param::OptInt(exit_status),
            Param::Text(outcome.to_owned()),
        ],
        format!("execution {jti} was never started or has already finished"),
    ))
}

fn revoke(r: &RevocationRecord) -> Result<Stmt, StoreError> {
    Ok(Stmt::new(
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

fn put_principal(p: &PrincipalRecord) -> Result<Stmt, StoreError> {
    Ok(Stmt::new(
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
    .or_conflict(format!("principal {} already exists", p.uid)))
}

fn update_principal(uid: &str, token_hash: Option<&[u8; 32]>, disabled: Option<bool>) -> Stmt {
    Stmt::expect_one(
        "WITH u AS (UPDATE principals SET token_hash = COALESCE($2, token_hash),
                                                         disabled = COALESCE($3, disabled)
                                    WHERE uid = $1 RETURNING 1)
                         SELECT writ_expect_one(count(*), $4) FROM u",
        vec![
            Param::Text(uid.to_owned()),
            Param::OptBytes(token_hash.map(|h| h.to_vec())),
            Param::OptBool(disabled),
        ],
        format!("no principal {uid}"),
    )
}

fn put_issuer(name: &str, spec: &str, created_ms: u64) -> Result<Stmt, StoreError> {
    Ok(Stmt::new(
        "INSERT INTO issuers (name, spec, created_ms) VALUES ($1, $2, $3)",
        vec![
            Param::Text(name.to_owned()),
            Param::Text(spec.to_owned()),
            Param::Int(i64_of(created_ms)?),
        ],
    )
    .or_conflict(format!("issuer {name} already exists")))
}

fn remove_issuer(name: &str) -> Stmt {
    Stmt::expect_one(
        "WITH d AS (DELETE FROM issuers WHERE name = $1 RETURNING 1)
                         SELECT writ_expect_one(count(*), $2) FROM d",
        vec![Param::Text(name.to_owned())],
        format!("no issuer {name}"),
    )
}

/// Keep `content` beside the entry appended last in the transaction.
fn put_content(last: Option<u64>, salt: &[u8; 32], content: &[u8]) -> Result<Stmt, StoreError> {
    let Some(index) = last else {
        return Err(StoreError::Integrity(
            "content without an entry in its transaction".into(),
        ));
    };
    Ok(Stmt::new(
        "INSERT INTO entry_content (idx, salt, content) VALUES ($1, $2, $3)",
        vec![
            Param::Int(i64_of(index)?),
            Param::Bytes(salt.to_vec()),
            Param::Bytes(content.to_vec()),
        ],
    ))
}

/// Pin `resource` to `digest` (see [`Op::Pin`]). On first use the insert
/// is skipped when a pin exists, and the statement then expects that pin to
/// be of the same digest (the CTE's snapshot does not see the insert, so
/// exactly one of the two counts is 1 when all is well).
fn pin(
    resource: &str,
    digest: &str,
    time_ms: u64,
    approved: bool,
    last: Option<u64>,
) -> Result<Stmt, StoreError> {
    let Some(index) = last else {
        return Err(StoreError::Integrity(
            "a pin without an entry in its transaction".into(),
        ));
    };
    let params = vec![
        Param::Text(resource.to_owned()),
        Param::Text(digest.to_owned()),
        Param::Int(i64_of(time_ms)?),
        Param::Int(i64_of(index)?),
    ];
    if approved {
        return Ok(Stmt::new(
            "INSERT INTO pins (resource, digest, time_ms, log_index, approved) VALUES ($1, $2, $3, $4, true)
             ON CONFLICT (resource) DO UPDATE SET digest = excluded.digest, time_ms = excluded.time_ms,
             log_index = excluded.log_index, approved = true",
            params,
        ));
    }
    Ok(Stmt::expect_one(
        "WITH ins AS (INSERT INTO pins (resource, digest, time_ms, log_index, approved)
                      VALUES ($1, $2, $3, $4, false) ON CONFLICT (resource) DO NOTHING RETURNING 1)
         SELECT writ_expect_one((SELECT count(*) FROM ins)
             + (SELECT count(*) FROM pins WHERE resource = $1 AND digest = $2), $5)",
        params,
        format!("the definition of {resource} is pinned to another digest than {digest}"),
    ))
}

fn activate(hash: &str, time_ms: u64, by: &str) -> Result<Stmt, StoreError> {
    Ok(Stmt::new(
        "INSERT INTO activations (hash, time_ms, by) VALUES ($1, $2, $3)",
        vec![
            Param::Text(hash.to_owned()),
            Param::Int(i64_of(time_ms)?),
            Param::Text(by.to_owned()),
        ],
    )
    .or_conflict(format!("bundle {hash} is not stored")))
}

fn put_key(k: &KeyRecord) -> Result<Stmt, StoreError> {
    Ok(Stmt::new(
        "INSERT INTO keys (kid, role, public_jwk, status, created_ms, verify_until_ms) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (kid) DO UPDATE SET status = excluded.status, verify_until_ms = excluded.verify_until_ms",
        vec![
            Param::Text(k.kid.clone()),
            Param::Text(k.role.as_str().to_owned()),
            Param::Text(k.public_jwk.clone()),
            Param::Text(k.status.as_str().to_owned()),
            Param::Int(i64_of(k.created_ms)?),
            Param::OptInt(k.verify_until_ms.map(i64_of).transpose()?),
        ],
    ))
}

fn put_checkpoint(c: &CheckpointRecord) -> Result<Stmt, StoreError> {
    Ok(Stmt::new(
        "INSERT INTO checkpoints (size, note, time_ms) VALUES ($1, $2, $3)",
        vec![
            Param::Int(i64_of(c.size)?),
            Param::Text(c.note.clone()),
            Param::Int(i64_of(c.time_ms)?),
        ],
    )
    .or_conflict(format!("a checkpoint of size {} exists", c.size)))
}

fn cosign(size: u64, note: &str) -> Result<Stmt, StoreError> {
    Ok(Stmt::expect_one(
        "WITH u AS (UPDATE checkpoints SET note = $2 WHERE size = $1 RETURNING 1)
                         SELECT writ_expect_one(count(*), $3) FROM u",
        vec![Param::Int(i64_of(size)?), Param::Text(note.to_owned())],
        format!("no checkpoint of size {size}"),
    ))
}
