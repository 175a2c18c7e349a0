//! Callers proven by identity systems writ did not mint: external issuers'
//! JWTs, mutual-TLS client certificates and local peers' credentials (docs/spec/identity.md), and the
//! issuer registry (`writ issuer add | list | remove`; each change a log
//! entry, shared by a mesh through the store).
//!
//! An external identity is never an administrator or an auditor (roles
//! come with writ's own tokens), and a revoked or disabled principal is
//! refused whatever proof it brings.

use super::*;
use writ_api::{IssuerInfo, IssuerList, IssuerRequest, IssuerResponse};
use writ_identity::issuer::{IssuerSpec, JwksSource, ISSUERS_MAX};
use writ_identity::x509::PeerCertificate;
use writ_log::IssuerChangeKind;
use writ_store::IssuerRecord;

fn unauthenticated(m: impl Into<String>) -> Denial {
    Denial::new(ReasonCode::Unauthenticated, m)
}

/// The registered issuers, as stored.
pub(super) fn load_issuers(store: &dyn Store) -> Result<Vec<IssuerSpec>, String> {
    store
        .issuers()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|r: IssuerRecord| {
            serde_json::from_str(&r.spec).map_err(|e| format!("stored issuer {}: {e}", r.name))
        })
        .collect()
}

fn info(s: &IssuerSpec) -> IssuerInfo {
    IssuerInfo {
        name: s.name.clone(),
        issuer: s.issuer.clone(),
        audience: s.audience.clone(),
        jwks: s.jwks_summary(),
        principal_type: s.principal_type.clone(),
        claim: s.claim.clone(),
        maps_to: s.maps_to(),
        trust_domain: s.trust_domain.clone(),
    }
}

impl Authority {
    /// Authenticate a JWT of a registered issuer (an OIDC token, a SPIFFE
    /// JWT-SVID, a Kubernetes service-account token).
    pub async fn authenticate_jwt(&self, token: &str) -> Result<Principal, Denial> {
        if let Some(d) = self.stale() {
            return Err(d);
        }
        let state = self.state();
        if state.issuers.is_empty() {
            return Err(unauthenticated(
                "the bearer token is a JWT, and no issuer is registered (`writ issuer add`)",
            ));
        }
        let now = self.clock.now_unix_secs();
        let v = self
            .verifier
            .verify(&state.issuers, token, now, self.config.skew_secs)
            .await
            .map_err(|e| unauthenticated(format!("the JWT is not accepted: {e}")))?;
        self.external(v.uid, v.identity)
    }

    /// Authenticate the caller of a mutual-TLS connection by its client
    /// certificate (already verified against `--client-ca`).
    pub fn authenticate_certificate(&self, cert: &PeerCertificate) -> Result<Principal, Denial> {
        self.authenticate_proven(
            cert.mapped
                .clone()
                .map_err(|e| unauthenticated(e.to_string())),
        )
    }

    /// Authenticate a caller its connection proved (a client certificate,
    /// the kernel's credentials of a local peer), mapped to a principal.
    pub fn authenticate_proven(
        &self,
        mapped: Result<(String, writ_identity::Identity), Denial>,
    ) -> Result<Principal, Denial> {
        if let Some(d) = self.stale() {
            return Err(d);
        }
        let (uid, identity) = mapped?;
        self.external(uid, identity)
    }

    /// A principal proven outside writ: a valid Cedar UID, not revoked or
    /// disabled, without roles.
    fn external(
        &self,
        uid: String,
        identity: writ_identity::Identity,
    ) -> Result<Principal, Denial> {
        cedar_uid_check(&uid).map_err(|e| {
            unauthenticated(format!("the identity maps to no valid principal: {e}"))
        })?;
        if let Some(why) = self.state().revoked.principal_barred(&uid) {
            return Err(unauthenticated(why));
        }
        Ok(Principal {
            uid,
            admin: false,
            auditor: false,
            execution: None,
            identity,
        })
    }

    /// Register an external issuer. Admin only; logged.
    pub async fn add_issuer(
        &self,
        who: &Principal,
        req: &IssuerRequest,
    ) -> Result<IssuerResponse, CallError> {
        let _serial = self.lifecycle.lock().await;
        self.require_admin_now(who)?;
        let jwks =
            match (&req.jwks_url, &req.jwks) {
                (Some(u), None) => JwksSource::Url(u.clone()),
                (None, Some(k)) => JwksSource::Keys(k.clone()),
                _ => return Err(CallError::BadRequest(
                    "give the issuer's keys as `jwks_url` or as `jwks` (a key set), one of them"
                        .into(),
                )),
            };
        let spec = IssuerSpec {
            name: req.name.clone(),
            issuer: req.issuer.clone(),
            audience: req.audience.clone(),
            jwks,
            principal_type: req.principal_type.clone().unwrap_or_else(|| "Agent".into()),
            claim: req.claim.clone().unwrap_or_else(|| "sub".into()),
            jwks_ca: req.jwks_ca.clone(),
            trust_domain: req.trust_domain.clone(),
        };
        spec.validate()
            .map_err(|e| CallError::BadRequest(e.to_string()))?;
        // The type must make valid principals (checked with a sample id).
        cedar_uid_check(&writ_identity::entity_uid(&spec.principal_type, "x"))
            .map_err(CallError::BadRequest)?;
        let state = self.state();
        if state.issuers.len() >= ISSUERS_MAX {
            return Err(CallError::Conflict(format!(
                "{ISSUERS_MAX} issuers are registered; remove one first"
            )));
        }
        if let Some(s) = state.issuers.iter().find(|s| s.name == spec.name) {
            return Err(CallError::Conflict(format!(
                "issuer {} already exists",
                s.name
            )));
        }
        if let Some(s) = state.issuers.iter().find(|s| s.issuer == spec.issuer) {
            return Err(CallError::Conflict(format!(
                "issuer {} already has `iss` {}; one registration per issuer",
                s.name, spec.issuer
            )));
        }
        let now_ms = self.clock.now_unix_ms();
        let spec_json =
            serde_json::to_string(&spec).map_err(|e| CallError::Unavailable(e.to_string()))?;
        let leaf = Entry::IssuerChange {
            time_ms: now_ms,
            by: who.uid.clone(),
            name: spec.name.clone(),
            change: IssuerChangeKind::Added,
            issuer: spec.issuer.clone(),
            audience: spec.audience.clone(),
            jwks: spec.jwks_summary(),
            maps_to: spec.maps_to(),
        }
        .to_leaf()
        .map_err(CallError::from)?;
        let tx = Tx::new(vec![
            Op::PutIssuer {
                name: spec.name.clone(),
                spec: spec_json,
                created_ms: now_ms,
            },
            Op::Append { leaf },
        ]);
        // In effect once committed (adding lets callers in: never before
        // the entry that says so is durable).
        let indices = self.store.submit(tx).await?;
        self.note_indices(&indices);
        let added = info(&spec);
        self.swap_state(|s| {
            let mut issuers = (*s.issuers).clone();
            issuers.retain(|i| i.name != spec.name);
            issuers.push(spec);
            State {
                issuers: Arc::new(issuers),
                ..s.clone_shallow()
            }
        });
        Ok(IssuerResponse {
            issuer: added,
            log_index: indices.first().copied().unwrap_or_default(),
        })
    }

    /// Remove an external issuer: its tokens stop authenticating when the
    /// change is queued. Admin only; logged.
    pub async fn remove_issuer(
        &self,
        who: &Principal,
        name: &str,
    ) -> Result<IssuerResponse, CallError> {
        let _serial = self.lifecycle.lock().await;
        self.require_admin_now(who)?;
        let state = self.state();
        let spec = state
            .issuers
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .ok_or_else(|| CallError::NotFound(format!("no issuer {name} is registered")))?;
        let now_ms = self.clock.now_unix_ms();
        let leaf = Entry::IssuerChange {
            time_ms: now_ms,
            by: who.uid.clone(),
            name: spec.name.clone(),
            change: IssuerChangeKind::Removed,
            issuer: spec.issuer.clone(),
            audience: String::new(),
            jwks: String::new(),
            maps_to: String::new(),
        }
        .to_leaf()
        .map_err(CallError::from)?;
        let tx = Tx::new(vec![
            Op::RemoveIssuer {
                name: spec.name.clone(),
            },
            Op::Append { leaf },
        ]);
        // Withholding: in effect before the commit returns.
        let indices = self
            .change_state(
                |s| {
                    let issuers: Vec<IssuerSpec> = s
                        .issuers
                        .iter()
                        .filter(|i| i.name != spec.name)
                        .cloned()
                        .collect();
                    State {
                        issuers: Arc::new(issuers),
                        ..s.clone_shallow()
                    }
                },
                tx,
            )
            .await?;
        self.note_indices(&indices);
        self.verifier.retain(&self.state().issuers);
        Ok(IssuerResponse {
            issuer: info(&spec),
            log_index: indices.first().copied().unwrap_or_default(),
        })
    }

    /// The registered issuers (no keys, no CA). Admin only.
    pub fn list_issuers(&self, who: &Principal) -> Result<IssuerList, CallError> {
        self.require_admin_now(who)?;
        Ok(IssuerList {
            issuers: self.state().issuers.iter().map(info).collect(),
        })
    }
}
