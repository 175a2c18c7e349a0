//! Who is calling, and the principal lifecycle.
//!
//! A caller is a registered principal holding its token, or a program
//! holding the credential of the execution it runs under. Authentication
//! refuses a revoked or disabled principal on every route, at once (the
//! change is in effect on this node when its entry is queued) and across a
//! mesh (within the freshness bound: a node that cannot confirm it holds
//! the current principals refuses everyone with `authority_unavailable`).
//!
//! Lifecycle: `add` (a token, shown once), `rotate` (a new token; the old
//! one stops working when the change is queued), `disable` and `enable`
//! (reversible: while disabled, the principal cannot authenticate and its
//! writs do not verify), and revocation (`Authority::revoke`, for good).
//! Each change is a log entry.

use super::*;
use writ_api::{
    PrincipalChangeResponse, PrincipalInfo, PrincipalList, CREDENTIAL_PREFIX, DELEGATES_MAX,
};
use writ_log::PrincipalChangeKind;

/// Bytes of an execution credential's secret (256 bits).
const CREDENTIAL_SECRET_BYTES: usize = 32;

fn unauthenticated(m: impl Into<String>) -> Denial {
    Denial::new(ReasonCode::Unauthenticated, m)
}

/// A new execution credential for `jti`: the string handed to the program
/// (shown once) and the SHA-256 of its secret (stored).
pub(super) fn new_credential(
    entropy: &dyn Entropy,
    jti: &str,
) -> Result<(String, [u8; 32]), writ_artifact::EntropyError> {
    let mut b = [0u8; CREDENTIAL_SECRET_BYTES];
    entropy.fill(&mut b)?;
    let secret = URL_SAFE_NO_PAD.encode(b);
    let hash = token_hash(&secret);
    Ok((format!("{CREDENTIAL_PREFIX}{jti}_{secret}"), hash))
}

impl Authority {
    /// Authenticate a bearer token: a principal's token, or an execution's
    /// credential. The principal of a request comes only from here.
    pub fn authenticate(&self, token: &str) -> Result<Principal, Denial> {
        if token.is_empty() {
            return Err(unauthenticated("a bearer token is required"));
        }
        if token.len() > TOKEN_BYTES_MAX {
            return Err(unauthenticated(format!(
                "the bearer token is not valid (longer than {TOKEN_BYTES_MAX} bytes)"
            )));
        }
        // A node that cannot vouch for its principals and revocations
        // vouches for no caller either.
        if let Some(d) = self.stale() {
            return Err(d);
        }
        let state = self.state();
        if let Some(rest) = token.strip_prefix(CREDENTIAL_PREFIX) {
            return self.authenticate_execution(&state, rest);
        }
        let h = token_hash(token);
        // The map is keyed by SHA-256 of the token, so lookup timing says nothing
        // about the token; the final comparison is constant-time anyway.
        let p = match state.principals.get_key_value(&h) {
            Some((stored, p)) if bool::from(stored.ct_eq(&h)) => p,
            _ => return Err(unauthenticated("the bearer token is not valid")),
        };
        if let Some(why) = state.revoked.principal_barred(&p.uid) {
            return Err(unauthenticated(why));
        }
        Ok(p.clone())
    }

    /// Authenticate the caller of `POST /v1/executions/{jti}/finish`, which
    /// records how an execution ended and grants nothing: as
    /// [`Authority::authenticate`], but a revoked or disabled principal's
    /// token, and the credential of a revoked execution or one whose lease
    /// ended, still authenticate here, without administrative power, so that
    /// the runner a revocation stopped can record why (refusing it would
    /// only lose the record). The caller still finishes only its own
    /// executions (a credential: its execution's children).
    pub fn authenticate_for_finish(&self, token: &str) -> Result<Principal, Denial> {
        let refused = match self.authenticate(token) {
            Ok(p) => return Ok(p),
            Err(d) if matches!(d.reason, ReasonCode::Unauthenticated | ReasonCode::Revoked) => d,
            Err(d) => return Err(d),
        };
        if token.len() > TOKEN_BYTES_MAX {
            return Err(refused);
        }
        if let Some(rest) = token.strip_prefix(CREDENTIAL_PREFIX) {
            return match self.credential_holder(rest) {
                Ok(Some((jti, uid))) => Ok(Principal {
                    uid,
                    admin: false,
                    auditor: false,
                    execution: Some(jti),
                    identity: writ_identity::Identity::of(writ_identity::Method::Credential),
                }),
                Ok(None) => Err(refused),
                Err(d) => Err(d),
            };
        }
        let h = token_hash(token);
        let state = self.state();
        match state.principals.get_key_value(&h) {
            Some((stored, p)) if bool::from(stored.ct_eq(&h)) => {
                Ok(Principal::new(p.uid.clone(), false))
            }
            _ => Err(refused),
        }
    }

    /// The execution and principal of a credential whose secret matches and
    /// whose execution has not finished (revocation and lease not checked).
    fn credential_holder(&self, rest: &str) -> Result<Option<(String, String)>, Denial> {
        let Some((jti, secret)) = rest.split_once('_') else {
            return Ok(None);
        };
        if jti.len() != 32 || !jti.bytes().all(|b| b.is_ascii_hexdigit()) || secret.is_empty() {
            return Ok(None);
        }
        let Some(exec) = self.store.execution(jti).map_err(unavailable)? else {
            return Ok(None);
        };
        let matches = exec
            .credential_hash
            .is_some_and(|stored| bool::from(stored.ct_eq(&token_hash(secret))));
        if !matches || exec.finished_ms.is_some() || self.finishing.contains(jti) {
            return Ok(None);
        }
        Ok(self
            .store
            .writ(jti)
            .map_err(unavailable)?
            .map(|r| (jti.to_owned(), r.principal)))
    }

    /// An execution credential (`writx_<jti>_<secret>`, after the prefix):
    /// valid while its execution runs, its lease lasts, and neither it, an
    /// ancestor nor a principal on its chain is revoked or disabled.
    fn authenticate_execution(&self, state: &State, rest: &str) -> Result<Principal, Denial> {
        let bad = || unauthenticated("the execution credential is not valid");
        let (jti, secret) = rest.split_once('_').ok_or_else(bad)?;
        if jti.len() != 32 || !jti.bytes().all(|b| b.is_ascii_hexdigit()) || secret.is_empty() {
            return Err(bad());
        }
        let exec = self
            .store
            .execution(jti)
            .map_err(unavailable)?
            .ok_or_else(bad)?;
        let stored = exec.credential_hash.ok_or_else(bad)?;
        if !bool::from(stored.ct_eq(&token_hash(secret))) {
            return Err(bad());
        }
        // A finish answered before its commit counts already.
        if exec.finished_ms.is_some() || self.finishing.contains(jti) {
            return Err(unauthenticated(format!(
                "execution {jti} has finished: its credential no longer works"
            )));
        }
        let rec = self.store.writ(jti).map_err(unavailable)?.ok_or_else(bad)?;
        let lease_exp = exec.lease_exp.unwrap_or(rec.exp);
        if self.clock.now_unix_secs() >= lease_exp {
            return Err(unauthenticated(format!(
                "the lease of execution {jti} ended at {lease_exp}: its credential no longer works"
            )));
        }
        let oracle = Oracle {
            store: self.store.as_ref(),
            revoked: &state.revoked,
        };
        if let Some(why) = oracle.revoked_chain(jti, &rec.principal, rec.parent.as_deref())? {
            // The credential is genuine; what it speaks for is revoked (the
            // runner that holds it reports that, not a bad token).
            return Err(Denial::new(
                ReasonCode::Revoked,
                format!("the credential of execution {jti} no longer works: {why}"),
            ));
        }
        Ok(Principal {
            uid: rec.principal,
            admin: false,
            auditor: false,
            execution: Some(jti.to_owned()),
            identity: writ_identity::Identity::of(writ_identity::Method::Credential),
        })
    }

    /// Register a principal and return its token, once. Admin only.
    pub async fn add_principal(
        &self,
        who: &Principal,
        req: &PrincipalRequest,
    ) -> Result<PrincipalResponse, CallError> {
        let _serial = self.lifecycle.lock().await;
        self.require_admin_now(who)?;
        cedar_uid_check(&req.uid).map_err(CallError::BadRequest)?;
        let token =
            new_token(self.entropy.as_ref()).map_err(|e| CallError::Unavailable(e.to_string()))?;
        let now_ms = self.clock.now_unix_ms();
        let hash = token_hash(&token);
        let leaf = Entry::PrincipalAdded {
            time_ms: now_ms,
            by: who.uid.clone(),
            uid: req.uid.clone(),
            admin: req.admin,
            auditor: req.auditor,
        }
        .to_leaf()
        .map_err(CallError::from)?;
        let ops = vec![
            Op::PutPrincipal(PrincipalRecord {
                uid: req.uid.clone(),
                token_hash: hash,
                admin: req.admin,
                auditor: req.auditor,
                created_ms: now_ms,
                disabled: false,
            }),
            Op::Append { leaf },
        ];
        let indices = self.store.submit(Tx::new(ops)).await?;
        self.note_indices(&indices);
        let mut p = Principal::new(req.uid.clone(), req.admin);
        p.auditor = req.auditor;
        self.swap_state(|s| {
            let mut principals = s.principals.clone();
            principals.insert(hash, p);
            s.with_principals(principals)
        });
        Ok(PrincipalResponse {
            uid: req.uid.clone(),
            admin: req.admin,
            token,
            log_index: indices.first().copied().unwrap_or_default(),
        })
    }

    /// The registered principal `uid` (its token hash and record), or 404.
    fn registered(&self, state: &State, uid: &str) -> Result<([u8; 32], Principal), CallError> {
        cedar_uid_check(uid).map_err(CallError::BadRequest)?;
        state
            .principals
            .iter()
            .find(|(_, p)| p.uid == uid)
            .map(|(h, p)| (*h, p.clone()))
            .ok_or_else(|| CallError::NotFound(format!("no principal {uid} is registered")))
    }

    /// Refuse a change that would leave no administrator able to act.
    pub(super) fn keep_an_admin(&self, state: &State, uid: &str) -> Result<(), CallError> {
        let target_admin = state.principals.values().any(|p| p.uid == uid && p.admin);
        let others = state
            .principals
            .values()
            .filter(|p| p.admin && p.uid != uid && state.revoked.principal_barred(&p.uid).is_none())
            .count();
        if target_admin && others == 0 {
            return Err(CallError::Conflict(format!(
                "{uid} is the last administrator that can act; add another first \
                 (`writ principal add UID --admin`)"
            )));
        }
        Ok(())
    }

    fn principal_change_leaf(
        who: &Principal,
        uid: &str,
        change: PrincipalChangeKind,
        now_ms: u64,
    ) -> Result<Op, CallError> {
        Entry::PrincipalChange {
            time_ms: now_ms,
            by: who.uid.clone(),
            uid: uid.to_owned(),
            change,
        }
        .to_leaf()
        .map(|leaf| Op::Append { leaf })
        .map_err(CallError::from)
    }

    /// Give `uid` a new token and return it, once. The old token stops
    /// working when the change is queued, before its commit returns. A
    /// revoked principal keeps its revocation (it is for good). Admin only.
    pub async fn rotate_principal(
        &self,
        who: &Principal,
        uid: &str,
    ) -> Result<PrincipalResponse, CallError> {
        let _serial = self.lifecycle.lock().await;
        self.require_admin_now(who)?;
        let state = self.state();
        let (old, p) = self.registered(&state, uid)?;
        if state.revoked.principals.contains(uid) {
            return Err(CallError::Conflict(format!(
                "principal {uid} is revoked, for good; register a new principal instead"
            )));
        }
        let token =
            new_token(self.entropy.as_ref()).map_err(|e| CallError::Unavailable(e.to_string()))?;
        let hash = token_hash(&token);
        let now_ms = self.clock.now_unix_ms();
        let tx = Tx::new(vec![
            Op::UpdatePrincipal {
                uid: uid.to_owned(),
                token_hash: Some(hash),
                disabled: None,
            },
            Self::principal_change_leaf(who, uid, PrincipalChangeKind::TokenRotated, now_ms)?,
        ]);
        let indices = self
            .change_state(
                |cur| {
                    let mut principals = cur.principals.clone();
                    principals.remove(&old);
                    principals.insert(hash, p.clone());
                    cur.with_principals(principals)
                },
                tx,
            )
            .await?;
        self.note_indices(&indices);
        Ok(PrincipalResponse {
            uid: uid.to_owned(),
            admin: p.admin,
            token,
            log_index: indices.first().copied().unwrap_or_default(),
        })
    }

    /// Disable (`true`) or enable `uid`. Disabling takes effect when it is
    /// queued: the principal's token and its executions' credentials stop
    /// authenticating, its writs stop verifying (`revoked`), and runners
    /// are told on the revocation stream. Enabling takes effect after its
    /// commit. Admin only; the last administrator that can act cannot be
    /// disabled.
    pub async fn set_principal_disabled(
        &self,
        who: &Principal,
        uid: &str,
        disabled: bool,
    ) -> Result<PrincipalChangeResponse, CallError> {
        let _serial = self.lifecycle.lock().await;
        self.require_admin_now(who)?;
        let state = self.state();
        self.registered(&state, uid)?;
        if disabled {
            self.keep_an_admin(&state, uid)?;
        }
        let now_ms = self.clock.now_unix_ms();
        let change = if disabled {
            PrincipalChangeKind::Disabled
        } else {
            PrincipalChangeKind::Enabled
        };
        let tx = Tx::new(vec![
            Op::UpdatePrincipal {
                uid: uid.to_owned(),
                token_hash: None,
                disabled: Some(disabled),
            },
            Self::principal_change_leaf(who, uid, change, now_ms)?,
        ]);
        let set = |cur: &State| {
            let mut revoked = cur.revoked.clone();
            if disabled {
                revoked.disabled.insert(uid.to_owned());
            } else {
                revoked.disabled.remove(uid);
            }
            cur.with_revoked(revoked)
        };
        let indices = if disabled {
            self.change_state(set, tx).await?
        } else {
            let indices = self.store.submit(tx).await?;
            self.swap_state(set);
            indices
        };
        self.note_indices(&indices);
        let log_index = indices.first().copied().unwrap_or_default();
        if disabled {
            let _ = self.events.send(Event::Revocation {
                time_ms: now_ms,
                target: uid.to_owned(),
                kind: RevocationKind::Principal,
                jtis: Vec::new(),
                reason: format!("principal {uid} was disabled by {}", who.uid),
                log_index: Some(log_index),
            });
        }
        Ok(PrincipalChangeResponse {
            uid: uid.to_owned(),
            status: change.as_str().to_owned(),
            log_index,
        })
    }

    /// Every registered principal and its status (never a token or its
    /// hash). Admin only.
    pub fn list_principals(&self, who: &Principal) -> Result<PrincipalList, CallError> {
        self.require_admin_now(who)?;
        let state = self.state();
        let principals = self
            .store
            .principals()?
            .into_iter()
            .map(|p| PrincipalInfo {
                status: if state.revoked.principals.contains(&p.uid) {
                    "revoked"
                } else if p.disabled || state.revoked.disabled.contains(&p.uid) {
                    "disabled"
                } else {
                    "active"
                }
                .into(),
                uid: p.uid,
                admin: p.admin,
                auditor: p.auditor,
                created_ms: p.created_ms,
            })
            .collect();
        Ok(PrincipalList { principals })
    }
}

/// The checks of `delegates` in an authorize request: Cedar UIDs, at most
/// [`DELEGATES_MAX`], none twice.
pub(super) fn check_delegates(delegates: &[String]) -> Result<(), BadRequest> {
    if delegates.len() > DELEGATES_MAX {
        return Err(BadRequest(format!(
            "field `delegates` names {} principals; at most {DELEGATES_MAX}",
            delegates.len()
        )));
    }
    let mut seen = BTreeSet::new();
    for d in delegates {
        cedar_uid_check(d).map_err(|e| BadRequest(format!("field `delegates`: {e}")))?;
        if !seen.insert(d.as_str()) {
            return Err(BadRequest(format!("field `delegates` names {d} twice")));
        }
    }
    Ok(())
}
