//! Re-evaluating logged decisions against the bundle each names.

use std::collections::HashMap;
use std::sync::Arc;

use writ_artifact::{KeyRing, ReasonCode};
use writ_log::content::Content;
use writ_log::{DecisionEntry, Outcome};
use writ_policy::{Bundle, DecisionInput, SignedBundle};

use crate::source::SourceError;

/// What replaying one decision found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Cedar gives the logged answer (and, on a policy denial, the same message).
    Same,
    /// Decided before policy evaluation (lineage, authentication, ...): there
    /// is no Cedar answer to compare. The reason says why.
    NotReplayable(String),
    /// A sealed decision whose content is not at hand (erased, or not
    /// given to this verifier): its Cedar answer cannot be checked.
    ContentUnavailable,
    Different(String),
}

/// Why a decision could not be replayed: the bundle it names could not be
/// had or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Reading the bundle failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("bundle {0} is not available")]
    Missing(String),
    #[error("bundle {hash} is not a signed bundle: {error}")]
    NotSigned { hash: String, error: String },
    #[error("bundle stored as {hash} names itself {named}")]
    Misnamed { hash: String, named: String },
    /// Its hash or policy-key signature does not check.
    #[error("bundle {hash}: {error}")]
    Unchecked { hash: String, error: String },
    #[error("bundle {hash} does not compile: {error}")]
    Compile { hash: String, error: String },
}

/// Reads a signed policy bundle (JSON) by hash, as [`crate::source::Source::bundle`].
pub type FetchBundle<'a> = &'a dyn Fn(&str) -> Result<Option<String>, SourceError>;

/// Compiles each bundle once (after checking its hash and policy signature)
/// and replays decisions against it.
pub struct Replayer {
    policy_keys: KeyRing,
    bundles: HashMap<String, Result<Arc<Bundle>, ReplayError>>,
}

impl Replayer {
    pub fn new(policy_keys: KeyRing) -> Replayer {
        Replayer {
            policy_keys,
            bundles: HashMap::new(),
        }
    }

    fn bundle(&mut self, hash: &str, fetch: FetchBundle<'_>) -> Result<Arc<Bundle>, ReplayError> {
        if let Some(b) = self.bundles.get(hash) {
            return b.clone();
        }
        let built = (|| {
            let json = fetch(hash)?.ok_or_else(|| ReplayError::Missing(hash.to_owned()))?;
            let signed: SignedBundle =
                serde_json::from_str(&json).map_err(|e| ReplayError::NotSigned {
                    hash: hash.to_owned(),
                    error: e.to_string(),
                })?;
            if signed.hash != hash {
                return Err(ReplayError::Misnamed {
                    hash: hash.to_owned(),
                    named: signed.hash,
                });
            }
            signed
                .check(&self.policy_keys)
                .map_err(|e| ReplayError::Unchecked {
                    hash: hash.to_owned(),
                    error: e.to_string(),
                })?;
            Bundle::compile(signed.source)
                .map(Arc::new)
                .map_err(|e| ReplayError::Compile {
                    hash: hash.to_owned(),
                    error: e.to_string(),
                })
        })();
        self.bundles.insert(hash.to_owned(), built.clone());
        built
    }

    /// Replay one decision, opening a sealed one with `content` (its
    /// commitment must match); `Err` when its bundle cannot be had or
    /// checked.
    pub fn replay(
        &mut self,
        d: &DecisionEntry,
        content: Option<&Content>,
        fetch: FetchBundle<'_>,
    ) -> Result<ReplayOutcome, ReplayError> {
        if d.decision == Outcome::Deny && d.reason != Some(ReasonCode::PolicyDenied) {
            let why = d.reason.map_or("no reason".to_owned(), |r| r.to_string());
            return Ok(ReplayOutcome::NotReplayable(format!(
                "denied before policy evaluation ({why})"
            )));
        }
        if d.policy.is_empty() {
            return Ok(ReplayOutcome::NotReplayable("no bundle named".into()));
        }
        let opened;
        let d = if d.is_open() {
            d
        } else {
            let Some(c) = content else {
                return Ok(ReplayOutcome::ContentUnavailable);
            };
            let mut o = d.clone();
            if let Err(e) = o.open(c) {
                return Ok(ReplayOutcome::Different(format!(
                    "{e}: what is kept beside the log was altered"
                )));
            }
            opened = o;
            &opened
        };
        let bundle = self.bundle(&d.policy, fetch)?;
        let again = match bundle.decide(DecisionInput {
            principal: &d.principal,
            action: &d.action,
            resource: &d.resource,
            context: &d.context,
        }) {
            Ok(a) => a,
            // The authority denies input the bundle refuses, with its message.
            Err(e) if d.decision == Outcome::Deny && e.0 == d.message => {
                return Ok(ReplayOutcome::Same)
            }
            Err(e) => {
                return Ok(ReplayOutcome::Different(format!(
                    "logged {:?}, the bundle now refuses the input: {}",
                    d.decision, e.0
                )))
            }
        };
        let logged_allow = d.decision == Outcome::Allow;
        if again.allow != logged_allow {
            return Ok(ReplayOutcome::Different(format!(
                "logged {}, the bundle now says {}",
                if logged_allow { "allow" } else { "deny" },
                if again.allow { "allow" } else { "deny" }
            )));
        }
        if !again.allow && again.message() != d.message {
            return Ok(ReplayOutcome::Different(format!(
                "logged message {:?}, replay gives {:?}",
                d.message,
                again.message()
            )));
        }
        Ok(ReplayOutcome::Same)
    }
}
