//! The holder key of one run (docs/spec/holder.md). `writ exec` and `writ
//! mcp-proxy` make one per run, in memory only: every writ they ask for is
//! bound to it (`cnf`), and every use of one (start, renew, finish, their
//! own offline check) carries a fresh proof signed by it. A writ copied out
//! of the run (from the program's environment, a log, a core file) is
//! useless to anyone else.

use std::sync::Arc;

use writ_api::HolderCnf;
use writ_artifact::pop::{HolderKey, PopUse};
use writ_artifact::{Clock, HolderCheck, OsEntropy, SystemClock};

#[derive(Clone)]
pub struct Holder {
    key: Option<Arc<HolderKey>>,
    /// The audience of every writ the run asks for.
    aud: String,
}

impl Holder {
    /// A fresh key for a run whose writs are for `aud`.
    pub fn generate(aud: &str) -> anyhow::Result<Holder> {
        let key = HolderKey::generate(Arc::new(OsEntropy))
            .map_err(|e| anyhow::anyhow!("cannot make the run's holder key: {e}"))?;
        Ok(Holder {
            key: Some(Arc::new(key)),
            aud: aud.to_owned(),
        })
    }

    /// No key: the writs asked for are bearer writs (`--authorize-only`,
    /// whose writ is for another process to run).
    pub fn none(aud: &str) -> Holder {
        Holder {
            key: None,
            aud: aud.to_owned(),
        }
    }

    pub fn key(&self) -> Option<Arc<HolderKey>> {
        self.key.clone()
    }

    /// The request's `cnf`.
    pub fn cnf(&self) -> Option<HolderCnf> {
        self.key.as_ref().map(|k| HolderCnf { jwk: k.jwk() })
    }

    /// A proof for `purpose` of writ `jti`, made now. `None` without a key,
    /// or if no randomness could be had (the authority then refuses a
    /// holder-bound writ's use: fail closed).
    pub fn proof(&self, jti: &str, purpose: PopUse) -> Option<String> {
        let key = self.key.as_ref()?;
        key.prove(jti, &self.aud, purpose, SystemClock.now_unix_secs())
            .ok()
    }

    /// What an offline check of writ `jti` by this run brings.
    pub fn check(&self, jti: &str) -> HolderCheck {
        match self.proof(jti, PopUse::Verify) {
            Some(proof) => HolderCheck::Proof {
                proof,
                purpose: PopUse::Verify,
            },
            None => HolderCheck::None,
        }
    }
}
