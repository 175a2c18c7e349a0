//! Lineage: a writ's ancestors, descendants and revocation status.

use super::*;

impl Authority {
    /// The writ `jti`, its ancestors and the principals of all of them:
    /// what a revocation must name to reach it. `None` if no such writ was
    /// issued; an error if the chain cannot be read.
    pub fn chain_of(&self, jti: &str) -> Result<Option<Chain>, CallError> {
        let Some(rec) = self.store.writ(jti)? else {
            return Ok(None);
        };
        let mut jtis = vec![rec.jti];
        let mut principals = vec![rec.principal];
        let mut next = rec.parent;
        while let Some(p) = next {
            if jtis.len() > LINEAGE_DEPTH_MAX as usize {
                break;
            }
            let Some(r) = self.store.writ(&p)? else {
                break;
            };
            jtis.push(r.jti);
            if !principals.contains(&r.principal) {
                principals.push(r.principal);
            }
            next = r.parent;
        }
        Ok(Some((jtis, principals)))
    }

    /// A revocation event for `jti` if it, an ancestor, or a principal on its
    /// chain is revoked now; `None` if not (or if that cannot be told: the
    /// subscriber renews its lease anyway, and renewal fails closed).
    pub fn revoked_status(&self, jti: &str) -> Option<Event> {
        let state = self.state();
        let rec = self.store.writ(jti).ok()??;
        let oracle = Oracle {
            store: self.store.as_ref(),
            revoked: &state.revoked,
        };
        let why = oracle
            .revoked_chain(&rec.jti, &rec.principal, rec.parent.as_deref())
            .ok()??;
        Some(Event::Revocation {
            time_ms: self.clock.now_unix_ms(),
            target: rec.jti.clone(),
            kind: RevocationKind::Writ,
            jtis: vec![rec.jti],
            reason: why,
            log_index: None,
        })
    }
    /// Ancestry and descendants of a writ.
    pub fn lineage(&self, jti: &str) -> Result<LineageResponse, CallError> {
        let rec = self
            .store
            .writ(jti)?
            .ok_or_else(|| CallError::NotFound(format!("no writ {jti} was issued")))?;
        let state = self.state();
        let mut ancestors = Vec::new();
        // Revoked through an ancestor (the writ or its principal), as the
        // authority decides (`Oracle::revoked_chain`).
        let mut inherited = false;
        let mut next = rec.parent.clone();
        while let Some(p) = next {
            if ancestors.len() > LINEAGE_DEPTH_MAX as usize {
                break;
            }
            ancestors.push(p.clone());
            let parent = self.store.writ(&p)?;
            inherited |= state.revoked.writs.contains(&p)
                || parent
                    .as_ref()
                    .is_some_and(|r| state.revoked.principal_barred(&r.principal).is_some());
            next = parent.and_then(|r| r.parent);
        }
        ancestors.reverse();
        let mut budget = Budget {
            left: LINEAGE_NODES_MAX,
            cut: false,
        };
        let tree = self.lineage_node(&state, rec, 0, inherited, &mut budget)?;
        Ok(LineageResponse {
            ancestors,
            tree,
            truncated: budget.cut,
        })
    }

    /// One node and, while `budget` lasts, its subtree (depth first).
    pub(super) fn lineage_node(
        &self,
        state: &State,
        rec: WritRecord,
        level: u32,
        inherited: bool,
        budget: &mut Budget,
    ) -> Result<LineageNode, CallError> {
        budget.left = budget.left.saturating_sub(1);
        let now = self.clock.now_unix_secs();
        let exec = self.store.execution(&rec.jti)?;
        let revoked = inherited
            || state.revoked.writs.contains(&rec.jti)
            || state.revoked.principal_barred(&rec.principal).is_some();
        let status = if revoked {
            "revoked".to_string()
        } else {
            match exec {
                Some(e) if e.finished_ms.is_none() => "running".into(),
                Some(e) => e.outcome.unwrap_or_else(|| "finished".into()),
                None if now >= rec.exp => "expired".into(),
                None => "issued".into(),
            }
        };
        let mut children = Vec::new();
        if level < LINEAGE_DEPTH_MAX {
            for c in self.store.children(&rec.jti)? {
                if budget.left == 0 {
                    budget.cut = true;
                    break;
                }
                children.push(self.lineage_node(state, c, level + 1, revoked, budget)?);
            }
        }
        Ok(LineageNode {
            jti: rec.jti,
            principal: rec.principal,
            action: rec.action,
            resource: rec.resource,
            depth: rec.depth,
            status,
            log_index: rec.log_index,
            children,
        })
    }
}

/// Lineage nodes still to give, and whether some were left out.
pub(super) struct Budget {
    pub(super) left: usize,
    pub(super) cut: bool,
}

/// A writ's chain: its jti and its ancestors' (nearest first), and the
/// principals of all of them.
pub type Chain = (Vec<String>, Vec<String>);
