//! Holder-bound writs at the authority (docs/spec/holder.md): the proof a
//! start, renew, finish or verify of such a writ must bring, each proof
//! spent once on this node.

use std::collections::HashMap;
use std::sync::Mutex;

use writ_artifact::pop::{self, Bound, PopUse, ProvenHolder};
use writ_artifact::{Claims, Denial, ReasonCode, StatusOracle};
use writ_store::WritRecord;

use super::Authority;
use crate::api::CallError;
use crate::status::Oracle;

/// Most proofs remembered at once. Each is remembered for its window (35 s
/// with the default skew), so this bounds the proofs one node accepts in
/// that time; past it, proofs are refused until older ones age out.
const PROOFS_REMEMBERED_MAX: usize = 262_144;

/// The proofs this node accepted and that are still inside their window.
#[derive(Default)]
pub(crate) struct ProofLedger {
    seen: Mutex<HashMap<String, u64>>,
}

impl ProofLedger {
    /// Spend `p` at `now`: `Ok(false)` if it was spent before.
    pub(crate) fn spend(&self, p: &ProvenHolder, now: u64) -> Result<bool, Denial> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= PROOFS_REMEMBERED_MAX {
            seen.retain(|_, until| *until >= now);
            if seen.len() >= PROOFS_REMEMBERED_MAX {
                return Err(Denial::new(
                    ReasonCode::AuthorityUnavailable,
                    "too many proofs of possession in the last minute; try again",
                ));
            }
        }
        // Per writ: one holder cannot spend ids another holder will use.
        let key = format!("{}/{}", p.writ(), p.proof_jti());
        if seen.contains_key(&key) {
            return Ok(false);
        }
        seen.insert(key, p.until());
        Ok(true)
    }
}

/// The authority's oracle for a start that re-verifies its writ: the proof
/// was spent already, by [`Authority::holder_first`], before the attempt.
pub(crate) struct WithProofs<'a> {
    pub(crate) oracle: Oracle<'a>,
    /// The proof jti spent for this call, if the writ is holder-bound.
    pub(crate) spent: Option<&'a str>,
}

impl StatusOracle for WithProofs<'_> {
    fn revoked(&self, c: &Claims) -> Result<Option<String>, Denial> {
        self.oracle.revoked(c)
    }
    fn spent(&self, jti: &str) -> Result<bool, Denial> {
        self.oracle.spent(jti)
    }
    fn spend_proof(&self, p: &ProvenHolder) -> Result<bool, Denial> {
        Ok(self.spent == Some(p.proof_jti()))
    }
}

impl Authority {
    /// Before a start, renewal or finish of writ `jti` is attempted (and
    /// attempted again when the state changes under it): if the writ is
    /// holder-bound, check the caller may act on it, then check and spend
    /// the holder's proof, once for the call. The proof's jti, if any.
    pub(super) fn holder_first(
        &self,
        who: &crate::Principal,
        jti: &str,
        proof: Option<&str>,
        purpose: PopUse,
    ) -> Result<Option<String>, CallError> {
        match self.store.writ(jti)? {
            // Unknown: the attempt says so, with its own reason.
            None => Ok(None),
            Some(rec) => {
                super::may_act_on(who, &rec)?;
                self.check_holder(&rec, proof, purpose)
            }
        }
    }

    /// For a holder-bound writ, check and spend the proof of its holder
    /// (`holder_mismatch` when missing or wrong); nothing for any other.
    fn check_holder(
        &self,
        rec: &WritRecord,
        proof: Option<&str>,
        purpose: PopUse,
    ) -> Result<Option<String>, CallError> {
        let Some(jkt) = &rec.holder else {
            return Ok(None);
        };
        let now = self.clock.now_unix_secs();
        let bound = Bound {
            jti: &rec.jti,
            aud: &rec.audience,
            jkt,
        };
        let proven = pop::check(
            proof.unwrap_or_default(),
            bound,
            purpose,
            now,
            self.config.skew_secs,
        )
        .map_err(CallError::Denied)?;
        if !self.proofs.spend(&proven, now).map_err(CallError::Denied)? {
            return Err(CallError::Denied(Denial::new(
                ReasonCode::HolderMismatch,
                format!(
                    "proof {} was already used; each use of writ {} needs a fresh one",
                    proven.proof_jti(),
                    rec.jti
                ),
            )));
        }
        Ok(Some(proven.proof_jti().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use writ_artifact::pop::HolderKey;
    use writ_artifact::OsEntropy;

    #[test]
    fn a_proof_is_spent_once_and_forgotten_after_its_window() {
        let k = HolderKey::generate(std::sync::Arc::new(OsEntropy)).unwrap();
        let jkt = k.jkt();
        let jti = "0123456789abcdef0123456789abcdef";
        let bound = Bound {
            jti,
            aud: "a",
            jkt: &jkt,
        };
        let ledger = ProofLedger::default();
        let p = k.prove(jti, "a", PopUse::Renew, 1000).unwrap();
        let proven = pop::check(&p, bound, PopUse::Renew, 1000, 5).unwrap();
        assert!(ledger.spend(&proven, 1000).unwrap());
        assert!(!ledger.spend(&proven, 1001).unwrap());
        assert_eq!(ledger.seen.lock().unwrap().len(), 1);
    }
}
