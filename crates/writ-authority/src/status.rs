//! Revocation and nonce state, as seen by verification.

use std::collections::HashSet;

use writ_artifact::{Claims, Denial, ReasonCode, StatusOracle};
use writ_store::Store;

/// Revoked writs (by jti) and principals, and disabled principals, held in
/// memory; the store is the source of truth and these sets are loaded from
/// it, and take a new revocation or disabling when it is queued for the log
/// (before its commit returns). Only the revoked writ itself is in `writs`:
/// its descendants are revoked through it (the ancestor walk of
/// [`Oracle::revoked_chain`]), so a revocation costs the same whatever the
/// size of its subtree.
#[derive(Debug, Default, Clone)]
pub struct Revoked {
    pub writs: HashSet<String>,
    pub principals: HashSet<String>,
    /// Disabled principals: refused at authentication, and their writs do
    /// not verify (`revoked`) for as long as they stay disabled.
    pub disabled: HashSet<String>,
}

impl Revoked {
    /// Why `principal` cannot act or vouch for a writ now, if it cannot.
    pub fn principal_barred(&self, principal: &str) -> Option<String> {
        if self.principals.contains(principal) {
            Some(format!("principal {principal} is revoked"))
        } else if self.disabled.contains(principal) {
            Some(format!("principal {principal} is disabled"))
        } else {
            None
        }
    }
}

/// Most ancestors walked when checking revocation (bounded lineage depth).
pub const LINEAGE_DEPTH_MAX: u32 = 32;

pub struct Oracle<'a> {
    pub store: &'a dyn Store,
    pub revoked: &'a Revoked,
}

impl Oracle<'_> {
    /// `Some(message)` if `jti`, one of its ancestors, or `principal` is revoked.
    pub fn revoked_chain(
        &self,
        jti: &str,
        principal: &str,
        parent: Option<&str>,
    ) -> Result<Option<String>, Denial> {
        if let Some(why) = self.revoked.principal_barred(principal) {
            return Ok(Some(why));
        }
        if self.revoked.writs.contains(jti) {
            return Ok(Some(format!("writ {jti} is revoked")));
        }
        let mut next = parent.map(str::to_owned);
        let mut steps = 0;
        while let Some(p) = next {
            steps += 1;
            if steps > LINEAGE_DEPTH_MAX {
                return Err(Denial::new(
                    ReasonCode::LineageBroken,
                    "lineage is deeper than any writ may be",
                ));
            }
            if self.revoked.writs.contains(&p) {
                return Ok(Some(format!("ancestor {p} of writ {jti} is revoked")));
            }
            let rec = self
                .store
                .writ(&p)
                .map_err(|e| Denial::new(ReasonCode::AuthorityUnavailable, e.to_string()))?
                .ok_or_else(|| {
                    Denial::new(
                        ReasonCode::LineageBroken,
                        format!("ancestor {p} is unknown"),
                    )
                })?;
            if let Some(why) = self.revoked.principal_barred(&rec.principal) {
                return Ok(Some(format!("{why} (the principal of ancestor {p})")));
            }
            next = rec.parent;
        }
        Ok(None)
    }
}

impl StatusOracle for Oracle<'_> {
    fn revoked(&self, c: &Claims) -> Result<Option<String>, Denial> {
        self.revoked_chain(&c.jti, &c.sub, c.writ.lineage.parent.as_deref())
    }

    fn spent(&self, jti: &str) -> Result<bool, Denial> {
        self.store
            .execution(jti)
            .map(|e| e.is_some())
            .map_err(|e| Denial::new(ReasonCode::AuthorityUnavailable, e.to_string()))
    }
}
