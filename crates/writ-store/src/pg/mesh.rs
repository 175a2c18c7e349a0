//! What a node of a mesh needs from the shared store beyond reads and
//! submits: following the state sequence, the checkpoint leader lock, and
//! the nodes' heartbeats.

use tokio::sync::watch;

use super::conn::{block_on, connect};
use super::sql::{get_u64, i64_of, pg_unavailable, u64_of, unavailable, Param};
use super::store::PgStore;
use crate::roles::Mesh;
use crate::types::*;

/// The advisory lock whose holder signs checkpoints ("writ" in ASCII).
pub const LEADER_LOCK: i64 = 0x7772_6974;

impl Mesh for PgStore {
    /// `writ_head.state_seq`.
    fn state_seq(&self) -> Result<u64, StoreError> {
        let rows = self.rows("SELECT state_seq FROM writ_head WHERE id = 1", vec![])?;
        let r = rows
            .first()
            .ok_or_else(|| StoreError::Integrity("writ_head is missing".into()))?;
        get_u64(r, 0)
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.clone())
    }

    /// Whether this node holds the leader lock, taking it when free.
    fn lead(&self) -> Result<bool, StoreError> {
        let Some(rt) = &self.rt else {
            return Err(unavailable("the store is shut down"));
        };
        let leader = self.leader.clone();
        let dial = self.pool.dial.clone();
        block_on(rt, async move {
            let mut held = leader.lock().await;
            if let Some(c) = held.as_ref() {
                // The lock lives as long as the session: ask the session.
                if !c.is_closed() && c.simple_query("SELECT 1").await.is_ok() {
                    return Ok(true);
                }
                *held = None;
            }
            let c = connect(&dial).await?;
            let got: bool = c
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
                .await
                .map_err(pg_unavailable)?
                .try_get(0)
                .map_err(pg_unavailable)?;
            if got {
                *held = Some(c);
            }
            Ok(got)
        })
    }

    /// Give up the leader lock (shutdown).
    fn resign(&self) {
        if let Ok(mut held) = self.leader.try_lock() {
            *held = None;
        }
    }

    /// Register or refresh this node's row in `mesh_nodes`.
    fn heartbeat(&self, n: &NodeRecord) -> Result<(), StoreError> {
        let params = vec![
            Param::Text(n.id.clone()),
            Param::Text(n.url.clone()),
            Param::Int(i64_of(n.started_ms)?),
            Param::Int(i64_of(n.seen_ms)?),
            Param::Text(n.policy.clone()),
            Param::Int(i64_of(n.revocations)?),
            Param::Int(i64_of(n.log_size)?),
            Param::Int(i64_of(n.state_seq)?),
            Param::Bool(n.leader),
        ];
        self.rows(
            "INSERT INTO mesh_nodes (id, url, started_ms, seen_ms, policy, revocations, log_size, state_seq, leader)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (id) DO UPDATE SET url = excluded.url, started_ms = excluded.started_ms,
               seen_ms = excluded.seen_ms, policy = excluded.policy, revocations = excluded.revocations,
               log_size = excluded.log_size, state_seq = excluded.state_seq, leader = excluded.leader",
            params,
        )?;
        Ok(())
    }

    /// Every node that ever registered, by id.
    fn mesh_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.rows(
            "SELECT id, url, started_ms, seen_ms, policy, revocations, log_size, state_seq, leader FROM mesh_nodes ORDER BY id",
            vec![],
        )?
        .into_iter()
        .map(|r| {
            Ok(NodeRecord {
                id: r.try_get(0).map_err(pg_unavailable)?,
                url: r.try_get(1).map_err(pg_unavailable)?,
                started_ms: u64_of(r.try_get(2).map_err(pg_unavailable)?)?,
                seen_ms: u64_of(r.try_get(3).map_err(pg_unavailable)?)?,
                policy: r.try_get(4).map_err(pg_unavailable)?,
                revocations: u64_of(r.try_get(5).map_err(pg_unavailable)?)?,
                log_size: u64_of(r.try_get(6).map_err(pg_unavailable)?)?,
                state_seq: u64_of(r.try_get(7).map_err(pg_unavailable)?)?,
                leader: r.try_get(8).map_err(pg_unavailable)?,
            })
        })
        .collect()
    }
}
