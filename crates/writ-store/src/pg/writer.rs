//! The shared store's writer: group commit against PostgreSQL. One batch
//! is one database transaction holding the row lock on `writ_head`; each
//! of its transactions runs in its own savepoint, pipelined.
//!
//! # Tuning (PostgreSQL group commit)
//!
//! `PgStore` runs on a small tokio runtime of its own; its reads are
//! synchronous for callers (they wait on a channel). The writer's group
//! commit per batch: `BEGIN`; `SELECT ... FROM writ_head FOR UPDATE` (the one
//! row holding the log size and the state sequence: this lock orders appends
//! from every node); every transaction's statements pipelined inside its own
//! savepoint (`query_typed`: one round trip per statement, no prepare); leaves
//! and subtree hashes inserted with `UNNEST`; the head moved; `NOTIFY
//! writ_state` when cached state changed; `COMMIT`. A conflicting transaction
//! is rolled back to its savepoint and the ones after it are sent again.
//! Proofs read their nodes in one query (a first pass over a recording
//! `NodeReader` learns which). The row lock bounds a mesh at one group commit
//! at a time; that is what keeps one total order (BENCHMARKS.md, the mesh).

use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row};
use writ_log::merkle::Frontier;

use super::conn::{connect, Dial};
use super::listen::STATE_CHANNEL;
use super::plan::{plan, Staged, Stmt};
use super::sql::{i64_of, pg_unavailable, query, u64_of, Param};
use super::tree::load_frontier;
use crate::types::*;

/// Most transactions one group commit takes.
const BATCH_TX_MAX: usize = 1024;
/// Most transactions waiting for the writer before submitters are refused.
pub(super) const QUEUE_TX_MAX: usize = 16 * 1024;
/// SQLSTATE raised by `writ_expect_one` when an update found no row.
const NO_ROW: &str = "WR001";

pub(super) type Job = (Tx, oneshot::Sender<TxResult>);

pub(super) async fn writer(dial: Dial, mut rx: mpsc::Receiver<Job>) {
    let mut client: Option<Client> = None;
    // The right edge of the tree as this writer last committed it; used when
    // no other node appended since.
    let mut cache: Option<Frontier> = None;
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH_TX_MAX);
    while let Some(job) = rx.recv().await {
        batch.push(job);
        while batch.len() < BATCH_TX_MAX {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = connect(&dial).await.ok();
        }
        let results: Vec<TxResult> = match &client {
            None => {
                let e = StoreError::Unavailable("postgres: cannot connect".into());
                batch.iter().map(|_| Err(e.clone())).collect()
            }
            Some(c) => match commit_batch(c, &batch, &mut cache).await {
                Ok(r) => r,
                Err(e) => {
                    // Nothing of the batch is acknowledged.
                    let _ = c.batch_execute("ROLLBACK").await;
                    cache = None;
                    tracing::error!(error = %e, txs = batch.len(), "group commit failed; every transaction in it is refused");
                    batch.iter().map(|_| Err(e.clone())).collect()
                }
            },
        };
        for ((_, reply), r) in batch.drain(..).zip(results) {
            let _ = reply.send(r);
        }
    }
}

/// Whether a failed statement broke a constraint (the transaction's fault)
/// rather than the database (everyone's).
fn is_conflict(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::FOREIGN_KEY_VIOLATION
            || c.code() == NO_ROW
    })
}

/// One group commit: lock the head, run every transaction inside its own
/// savepoint (pipelined), append the leaves and tree nodes, move the head,
/// commit. A transaction that conflicts is rolled back to its savepoint and
/// the ones after it are sent again.
async fn commit_batch(
    c: &Client,
    batch: &[Job],
    cache: &mut Option<Frontier>,
) -> Result<Vec<TxResult>, StoreError> {
    let mut staged = begin(c, cache).await?;
    let mut results: Vec<Option<TxResult>> = batch.iter().map(|_| None).collect();
    let mut from = 0;
    while from < batch.len() {
        // Plan every remaining transaction from the state after the last
        // accepted one.
        let planned = plan_from(batch, from, &mut staged, &mut results);
        let failed = pipeline(c, &planned).await?;
        let accepted = failed.as_ref().map_or(planned.len(), |f| f.0);
        if let Some((p, e)) = failed {
            // Every statement after the failing one was refused
            // (in_failed_sql_transaction); undo the failing transaction only.
            c.batch_execute("ROLLBACK TO SAVEPOINT tx; RELEASE SAVEPOINT tx")
                .await
                .map_err(pg_unavailable)?;
            results[planned[p].at] = Some(Err(e));
            staged.truncate_to(&planned[p].before);
            from = planned[p].at + 1;
        } else {
            from = batch.len();
        }
        for t in planned.into_iter().take(accepted) {
            results[t.at] = Some(Ok(t.indices));
        }
    }
    let head = write_log_and_head(c, &mut staged).await?;
    if staged.state_changes > 0 {
        notify_state(c, &head).await?;
    }
    c.batch_execute("COMMIT").await.map_err(pg_unavailable)?;
    *cache = Some(staged.frontier);
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StoreError::Unavailable("not planned".into()))))
        .collect())
}

/// Begin the batch's transaction with the row lock on `writ_head`: nothing
/// staged yet, on the tree as it stands (`cache` when no other node
/// appended since this writer's last commit).
async fn begin(c: &Client, cache: &mut Option<Frontier>) -> Result<Staged, StoreError> {
    let (begun, head) = tokio::join!(
        c.batch_execute("BEGIN"),
        query(
            c,
            "SELECT size, state_seq FROM writ_head WHERE id = 1 FOR UPDATE",
            &[]
        )
    );
    begun.map_err(pg_unavailable)?;
    let head = head.map_err(pg_unavailable)?;
    let row = head
        .first()
        .ok_or_else(|| StoreError::Integrity("writ_head is missing".into()))?;
    let size = u64_of(row.try_get(0).map_err(pg_unavailable)?)?;
    let frontier = match cache.take() {
        Some(f) if f.size == size => f,
        _ => load_frontier(c, size).await?,
    };
    Ok(Staged::new(size, frontier))
}

/// A transaction of the batch, planned.
struct Planned {
    /// Its position in the batch.
    at: usize,
    /// What was staged before it (restored should it fail).
    before: Staged,
    indices: Vec<u64>,
    stmts: Vec<Stmt>,
}

/// Plan the transactions of `batch` from `from` on that have no result yet.
/// One whose values cannot be stored fails alone, here.
fn plan_from(
    batch: &[Job],
    from: usize,
    staged: &mut Staged,
    results: &mut [Option<TxResult>],
) -> Vec<Planned> {
    let mut planned: Vec<Planned> = Vec::new();
    for (at, job) in batch.iter().enumerate().skip(from) {
        if results[at].is_some() {
            continue;
        }
        let before = staged.clone();
        match plan(&job.0, staged) {
            Ok((indices, stmts)) => planned.push(Planned {
                at,
                before,
                indices,
                stmts,
            }),
            Err(e) => {
                // A value that cannot be stored: this transaction alone fails.
                staged.truncate_to(&before);
                results[at] = Some(Err(e));
            }
        }
    }
    planned
}

/// Send SAVEPOINT, the statements and RELEASE of each planned transaction
/// in one pipeline. The first that conflicts, as `(plan position, error)`;
/// any other failure fails the batch.
async fn pipeline(
    c: &Client,
    planned: &[Planned],
) -> Result<Option<(usize, StoreError)>, StoreError> {
    let mut calls = Vec::new();
    // For each call: (plan position, statement number within it, or None
    // for the savepoint commands).
    let mut owner: Vec<(usize, Option<usize>)> = Vec::new();
    for (p, t) in planned.iter().enumerate() {
        if t.stmts.is_empty() {
            continue;
        }
        calls.push(query(c, "SAVEPOINT tx", &[]));
        owner.push((p, None));
        for (n, st) in t.stmts.iter().enumerate() {
            calls.push(query(c, st.sql, &st.params));
            owner.push((p, Some(n)));
        }
        calls.push(query(c, "RELEASE SAVEPOINT tx", &[]));
        owner.push((p, None));
    }
    let outs = join_all(calls).await;
    for (&(p, n), out) in owner.iter().zip(outs) {
        if let Err(e) = out {
            return match n {
                Some(n) if is_conflict(&e) => {
                    let msg = planned[p].stmts[n]
                        .conflict
                        .clone()
                        .unwrap_or_else(|| e.to_string());
                    Ok(Some((p, StoreError::Conflict(msg))))
                }
                _ => Err(pg_unavailable(e)),
            };
        }
    }
    Ok(None)
}

/// Write the staged leaves and tree nodes and move the head: the head's
/// row, holding the new state sequence.
async fn write_log_and_head(c: &Client, staged: &mut Staged) -> Result<Vec<Row>, StoreError> {
    let (ids, leaves, hashes): (Vec<i64>, Vec<Vec<u8>>, Vec<Vec<u8>>) = {
        let mut a = (Vec::new(), Vec::new(), Vec::new());
        for (i, l, h) in std::mem::take(&mut staged.entries) {
            a.0.push(i);
            a.1.push(l);
            a.2.push(h);
        }
        a
    };
    let (keys, node_hashes): (Vec<i64>, Vec<Vec<u8>>) =
        std::mem::take(&mut staged.nodes).into_iter().unzip();
    let new_size = i64_of(staged.next)?;
    let seq_params = [Param::Int(new_size), Param::Int(staged.state_changes)];
    let entry_params = [
        Param::Ints(ids),
        Param::Bytess(leaves),
        Param::Bytess(hashes),
    ];
    let node_params = [Param::Ints(keys), Param::Bytess(node_hashes)];
    let (e, n, h) = tokio::join!(
        query(
            c,
            "INSERT INTO entries (idx, leaf, leaf_hash) SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[], $3::BYTEA[])",
            &entry_params
        ),
        query(
            c,
            "INSERT INTO tree_nodes (key, hash) SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[])",
            &node_params
        ),
        query(
            c,
            "UPDATE writ_head SET size = $1, state_seq = state_seq + $2 WHERE id = 1 RETURNING state_seq",
            &seq_params
        ),
    );
    e.map_err(pg_unavailable)?;
    n.map_err(pg_unavailable)?;
    h.map_err(pg_unavailable)
}

/// Tell the other nodes (`NOTIFY writ_state`) that the state they keep
/// changed, with the new state sequence from `head`.
async fn notify_state(c: &Client, head: &[Row]) -> Result<(), StoreError> {
    let seq: i64 = head
        .first()
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(pg_unavailable)?
        .unwrap_or_default();
    query(
        c,
        "SELECT pg_notify($1, $2)",
        &[
            Param::Text(STATE_CHANNEL.into()),
            Param::Text(seq.to_string()),
        ],
    )
    .await
    .map_err(pg_unavailable)?;
    Ok(())
}
