//! Executions: verification, start, renewal and finish of a writ's run.

use super::*;

impl Authority {
    /// The record of writ `jti`, if `who` may start, renew or finish its
    /// execution ([`may_act_on`]); `unknown` says how a writ never issued
    /// is refused.
    pub(super) fn owned_writ(
        &self,
        who: &Principal,
        jti: &str,
        unknown: Unknown,
    ) -> Result<WritRecord, CallError> {
        let rec = self.store.writ(jti)?.ok_or_else(|| {
            let m = format!("no writ {jti} was issued");
            match unknown {
                Unknown::MissingArtifact => {
                    CallError::Denied(Denial::new(ReasonCode::MissingArtifact, m))
                }
                Unknown::NotFound => CallError::NotFound(m),
            }
        })?;
        may_act_on(who, &rec)?;
        Ok(rec)
    }

    /// Online verification (`POST /v1/verify`): signature, window, audience,
    /// accepted policy, request, environment, revocation and spent nonce.
    pub fn verify(&self, req: &VerifyRequest) -> Result<VerifiedWrit, Denial> {
        if let Some(d) = self.stale() {
            return Err(d);
        }
        let state = self.state();
        let mut opts = self.verify_options(
            &state,
            req.request.as_ref(),
            req.environment.as_ref(),
            req.audience.clone(),
            true,
        )?;
        // A verification changes nothing: its proof is checked, not spent
        // (docs/spec/holder.md), so that no unauthenticated caller can
        // fill the ledger that starts, renewals and finishes spend in.
        opts.holder = holder_check(req.pop.as_deref(), PopUse::Verify);
        let oracle = Oracle {
            store: self.store.as_ref(),
            revoked: &state.revoked,
        };
        writ_artifact::verify(&req.writ, &state.ring, &opts, &oracle)
    }

    pub(super) fn verify_options(
        &self,
        state: &State,
        request: Option<&Value>,
        environment: Option<&Map<String, Value>>,
        audience: Option<String>,
        check_spent: bool,
    ) -> Result<VerifyOptions, Denial> {
        let mut accepted = self.config.extra_accepted_policies.clone();
        accepted.insert(state.bundle.hash().to_owned());
        let malformed = |e: String| Denial::new(ReasonCode::MalformedArtifact, e);
        Ok(VerifyOptions {
            now_unix_secs: self.clock.now_unix_secs(),
            skew_secs: self.config.skew_secs,
            audience,
            request_digest: request
                .map(canonical::digest_json)
                .transpose()
                .map_err(|e| malformed(e.to_string()))?,
            environment_digest: environment
                .map(canonical::digest_json)
                .transpose()
                .map_err(|e| malformed(e.to_string()))?,
            accepted_policies: Some(accepted),
            check_spent,
            holder: HolderCheck::None,
        })
    }

    /// Spend the nonce: the first start of a writ wins, every later one is
    /// `replayed`. The caller must be the writ's principal or an admin.
    pub async fn start(
        &self,
        who: &Principal,
        jti: &str,
        req: &StartRequest,
    ) -> Result<ExecutionResponse, CallError> {
        let spent = self.holder_first(who, jti, req.pop.as_deref(), PopUse::Start)?;
        until_queued(|| self.start_once(who, jti, req, spent.as_deref())).await
    }

    /// One attempt; `None` if the state changed before the start was queued.
    pub(super) async fn start_once(
        &self,
        who: &Principal,
        jti: &str,
        req: &StartRequest,
        spent: Option<&str>,
    ) -> Result<Option<ExecutionResponse>, CallError> {
        if let Some(d) = self.stale() {
            return Err(CallError::Unavailable(d.message));
        }
        let state = self.state();
        let rec = self.owned_writ(who, jti, Unknown::MissingArtifact)?;
        if req.credential && rec.principal != who.uid {
            // A credential speaks as the writ's principal: only that
            // principal may take one (an administrator would otherwise act
            // as anyone).
            return Err(CallError::Forbidden(format!(
                "only {} may take a credential for the run of writ {jti}",
                rec.principal
            )));
        }
        if let Some(why) = state.revoked.principal_barred(&who.uid) {
            return Err(CallError::Denied(Denial::new(ReasonCode::Revoked, why)));
        }
        if let Some(token) = &req.writ {
            // Full re-check of what is about to run, when the gateway sends
            // it (the holder's proof among it).
            let mut opts = self
                .verify_options(
                    &state,
                    req.request.as_ref(),
                    req.environment.as_ref(),
                    req.audience.clone(),
                    false,
                )
                .map_err(CallError::Denied)?;
            opts.holder = holder_check(req.pop.as_deref(), PopUse::Start);
            let oracle = holder::WithProofs {
                oracle: Oracle {
                    store: self.store.as_ref(),
                    revoked: &state.revoked,
                },
                spent,
            };
            let v = writ_artifact::verify(token, &state.ring, &opts, &oracle)
                .map_err(CallError::Denied)?;
            if v.jti() != jti {
                return Err(CallError::Denied(Denial::new(
                    ReasonCode::RequestMismatch,
                    "the writ is for another jti",
                )));
            }
        }
        let now_ms = self.clock.now_unix_ms();
        if now_ms / 1000 >= rec.exp + self.config.skew_secs {
            return Err(CallError::Denied(Denial::new(
                ReasonCode::Expired,
                format!("writ {jti} expired at {}", rec.exp),
            )));
        }
        let oracle = Oracle {
            store: self.store.as_ref(),
            revoked: &state.revoked,
        };
        if let Some(why) = oracle
            .revoked_chain(&rec.jti, &rec.principal, rec.parent.as_deref())
            .map_err(CallError::Denied)?
        {
            return Err(CallError::Denied(Denial::new(ReasonCode::Revoked, why)));
        }
        let leaf = Entry::ExecutionStart {
            time_ms: now_ms,
            jti: jti.into(),
            principal: rec.principal.clone(),
        }
        .to_leaf()
        .map_err(CallError::from)?;
        let (credential, credential_hash) = if req.credential {
            let (c, h) = principals::new_credential(self.entropy.as_ref(), jti)
                .map_err(|e| CallError::Unavailable(e.to_string()))?;
            (Some(c), Some(h))
        } else {
            (None, None)
        };
        let tx = Tx::new(vec![
            Op::Spend {
                jti: jti.into(),
                time_ms: now_ms,
                credential_hash,
            },
            Op::Lease {
                jti: jti.into(),
                lease_exp: rec.exp,
            },
            Op::Append { leaf },
        ]);
        let Some(ticket) = self.submit_if_current(&state, tx) else {
            return Ok(None);
        };
        match ticket.await {
            Ok(indices) => {
                self.note_indices(&indices);
                Ok(Some(ExecutionResponse {
                    jti: jti.into(),
                    log_index: indices.first().copied().unwrap_or_default(),
                    revoked: None,
                    credential,
                }))
            }
            Err(writ_store::StoreError::Conflict(m)) => {
                Err(CallError::Denied(Denial::new(ReasonCode::Replayed, m)))
            }
            Err(e) => Err(CallError::Denied(unavailable(e))),
        }
    }

    /// Extend the lease of a running execution (`POST /v1/executions/{jti}/renew`).
    ///
    /// A renewal is a new decision: the lease must not have lapsed, neither the
    /// writ nor an ancestor nor a principal on the chain may be revoked, the
    /// parent must still be running (the new lease ends no later than the
    /// parent's), and the active bundle must still allow the original request
    /// (re-evaluated from the decision entry in the log). Granted or denied, the
    /// renewal is logged; a denial is `Err(Denied)` and the runner must stop
    /// the execution.
    pub async fn renew(
        &self,
        who: &Principal,
        jti: &str,
        req: &RenewRequest,
    ) -> Result<RenewResponse, CallError> {
        self.holder_first(who, jti, req.pop.as_deref(), PopUse::Renew)?;
        until_queued(|| self.renew_once(who, jti, req)).await
    }

    /// One attempt; `None` if the state changed before the renewal was queued.
    pub(super) async fn renew_once(
        &self,
        who: &Principal,
        jti: &str,
        req: &RenewRequest,
    ) -> Result<Option<RenewResponse>, CallError> {
        let state = self.state();
        let rec = self.owned_writ(who, jti, Unknown::NotFound)?;
        if let Some(n) = req.lifetime_secs {
            if n == 0 || n > WRIT_LIFETIME_SECS_MAX {
                return Err(CallError::BadRequest(format!(
                    "field `lifetime_secs` is {n}; it must be 1 to {WRIT_LIFETIME_SECS_MAX}"
                )));
            }
        }
        let lease_exp = match self.store.execution(jti)? {
            None => {
                return Err(CallError::Conflict(format!(
                    "execution {jti} was never started"
                )))
            }
            Some(e) if e.finished_ms.is_some() => {
                return Err(CallError::Conflict(format!("execution {jti} has finished")))
            }
            Some(e) => e.lease_exp.unwrap_or(rec.exp),
        };
        let now_ms = self.clock.now_unix_ms();
        let lifetime = req
            .lifetime_secs
            .unwrap_or_else(|| rec.exp.saturating_sub(rec.iat).max(1));
        let decided = match self.stale() {
            Some(d) => Err(d),
            None => self.renewal_decision(&state, &rec, lease_exp, now_ms / 1000, lifetime),
        };
        let policy = state.bundle.hash().to_owned();
        let (decision, reason, message, new_lease) = match &decided {
            Ok((lease, msg)) => (Outcome::Allow, None, msg.clone(), Some(*lease)),
            // Cedar's error quotes the values of the (sealed) question: the
            // log says only that it could not be evaluated; the caller is
            // told why, and an auditor can replay the question.
            Err(d) if d.message.starts_with(CANNOT_EVALUATE) => (
                Outcome::Deny,
                Some(d.reason),
                CANNOT_EVALUATE.to_owned(),
                None,
            ),
            Err(d) => (Outcome::Deny, Some(d.reason), d.message.clone(), None),
        };
        let leaf = Entry::ExecutionRenew {
            time_ms: now_ms,
            jti: jti.into(),
            principal: rec.principal.clone(),
            policy: policy.clone(),
            decision,
            reason,
            message,
            lease_exp: new_lease,
        }
        .to_leaf()
        .map_err(CallError::from)?;
        let mut ops = vec![Op::Append { leaf }];
        if let Some(lease_exp) = new_lease {
            ops.push(Op::Lease {
                jti: jti.into(),
                lease_exp,
            });
        }
        let Some(ticket) = self.submit_if_current(&state, Tx::new(ops)) else {
            return Ok(None);
        };
        let indices = match ticket.await {
            Ok(i) => i,
            Err(writ_store::StoreError::Conflict(m)) => return Err(CallError::Conflict(m)),
            Err(e) => return Err(CallError::Denied(unavailable(e))),
        };
        self.note_indices(&indices);
        let log_index = indices.first().copied().unwrap_or_default();
        match decided {
            Ok((lease_exp, _)) => Ok(Some(RenewResponse {
                jti: jti.into(),
                lease_exp,
                policy,
                log_index,
            })),
            Err(d) => Err(CallError::Denied(Denial::new(
                d.reason,
                format!("{} (renewal denied, log index {log_index})", d.message),
            ))),
        }
    }

    /// The new lease end and the policy's message, or why not.
    pub(super) fn renewal_decision(
        &self,
        state: &State,
        rec: &WritRecord,
        lease_exp: u64,
        now: u64,
        lifetime: u64,
    ) -> Result<(u64, String), Denial> {
        let jti = &rec.jti;
        if now >= lease_exp + self.config.skew_secs {
            return Err(Denial::new(
                ReasonCode::Expired,
                format!("the lease of {jti} ended at {lease_exp}; renew before it does"),
            ));
        }
        let oracle = Oracle {
            store: self.store.as_ref(),
            revoked: &state.revoked,
        };
        if let Some(why) = oracle.revoked_chain(jti, &rec.principal, rec.parent.as_deref())? {
            return Err(Denial::new(ReasonCode::Revoked, why));
        }
        let mut until = now + lifetime;
        if let Some(parent) = &rec.parent {
            let broken = |m: String| Denial::new(ReasonCode::LineageBroken, m);
            let prec = self
                .store
                .writ(parent)
                .map_err(unavailable)?
                .ok_or_else(|| broken(format!("parent writ {parent} is unknown")))?;
            let parent_lease = match self.store.execution(parent).map_err(unavailable)? {
                Some(e) if e.finished_ms.is_none() => e.lease_exp.unwrap_or(prec.exp),
                Some(_) => return Err(broken(format!("parent execution {parent} has finished"))),
                None => return Err(broken(format!("parent writ {parent} was never started"))),
            };
            if now >= parent_lease {
                return Err(broken(format!(
                    "the lease of parent {parent} ended at {parent_lease}"
                )));
            }
            until = until.min(parent_lease);
        }
        // The original question, exactly as the policy saw it, put to the
        // bundle active now.
        let leaf = self
            .store
            .entries(rec.log_index, rec.log_index + 1)
            .map_err(unavailable)?
            .pop()
            .ok_or_else(|| unavailable(format!("log entry {} is missing", rec.log_index)))?;
        let mut entry = match Entry::from_leaf(&leaf.leaf) {
            Ok(Entry::Decision(d)) if d.jti.as_deref() == Some(jti.as_str()) => d,
            _ => {
                return Err(Denial::new(
                    ReasonCode::IntegrityFailure,
                    format!(
                        "log entry {} is not the decision that issued {jti} (or its content was erased)",
                        rec.log_index
                    ),
                ))
            }
        };
        if !entry.is_open() {
            // A sealed decision: the question is kept beside the log.
            let stored = self
                .store
                .contents(rec.log_index, rec.log_index + 1)
                .map_err(unavailable)?
                .pop()
                .ok_or_else(|| {
                    Denial::new(
                        ReasonCode::IntegrityFailure,
                        format!(
                            "the content of decision entry {} was erased: the decision cannot be made again",
                            rec.log_index
                        ),
                    )
                })?;
            entry
                .open(&writ_log::content::Content {
                    salt: stored.salt,
                    bytes: stored.content,
                })
                .map_err(|e| {
                    Denial::new(
                        ReasonCode::IntegrityFailure,
                        format!("decision entry {}: {e}", rec.log_index),
                    )
                })?;
        }
        let decision = state
            .bundle
            .decide(DecisionInput {
                principal: &entry.principal,
                action: &entry.action,
                resource: &entry.resource,
                context: &entry.context,
            })
            .map_err(|e| {
                Denial::new(
                    ReasonCode::PolicyDenied,
                    format!("{CANNOT_EVALUATE}: {}", e.0),
                )
            })?;
        if !decision.allow {
            return Err(Denial::new(ReasonCode::PolicyDenied, decision.message()));
        }
        if let Some(d) = enforcement_shortfall(&decision, entry.context.get("environment")) {
            return Err(d);
        }
        Ok((until, decision.message()))
    }

    /// Record how an execution ended; answered once it is durable.
    pub async fn finish(
        &self,
        who: &Principal,
        jti: &str,
        req: &FinishRequest,
    ) -> Result<ExecutionResponse, CallError> {
        self.holder_first(who, jti, req.pop.as_deref(), PopUse::Finish)?;
        if self.finishing.contains(jti) {
            return Err(already_finished(jti));
        }
        let (revoked, ticket) = until_queued(|| self.queue_finish(who, jti, req)).await?;
        let indices = ticket.await?;
        self.note_indices(&indices);
        Ok(ExecutionResponse {
            jti: jti.into(),
            log_index: indices.first().copied().unwrap_or_default(),
            revoked,
            credential: None,
        })
    }

    /// Record how an execution ended, answering once the record is queued
    /// for the log (`"durable": false`, docs/spec/api.md): the answer says
    /// whether the writ was revoked by then, exactly as a durable finish
    /// would, and [`PendingFinish::settle`] waits for the commit. Until it
    /// returns the execution counts as finished on this node: its
    /// credential is refused and a second finish is a conflict.
    pub async fn finish_queued(
        &self,
        who: &Principal,
        jti: &str,
        req: &FinishRequest,
    ) -> Result<(FinishQueued, PendingFinish), CallError> {
        self.holder_first(who, jti, req.pop.as_deref(), PopUse::Finish)?;
        // A finish that would conflict at its commit is refused now: its
        // caller would otherwise be told it was recorded.
        let reservation = self
            .finishing
            .reserve(jti)
            .ok_or_else(|| already_finished(jti))?;
        match self.store.execution(jti)? {
            Some(e) if e.finished_ms.is_none() => {}
            Some(_) => return Err(already_finished(jti)),
            None => {
                return Err(CallError::Conflict(format!(
                    "execution {jti} was never started"
                )))
            }
        }
        let (revoked, ticket) = until_queued(|| self.queue_finish(who, jti, req)).await?;
        Ok((
            FinishQueued {
                jti: jti.into(),
                revoked,
                durable: false,
            },
            PendingFinish {
                jti: jti.into(),
                ticket,
                reservation,
            },
        ))
    }

    /// One attempt at queueing a finish: whether the writ was revoked by
    /// then, and the ticket of its commit; `None` if the state changed
    /// before it was queued.
    pub(super) async fn queue_finish(
        &self,
        who: &Principal,
        jti: &str,
        req: &FinishRequest,
    ) -> Result<Option<(Option<String>, writ_store::Ticket)>, CallError> {
        let rec = self.owned_writ(who, jti, Unknown::NotFound)?;
        for (field, d) in [
            ("stdout_digest", &req.stdout_digest),
            ("stderr_digest", &req.stderr_digest),
        ] {
            if let Some(d) = d.as_deref().filter(|d| !canonical::is_digest(d)) {
                return Err(CallError::BadRequest(format!(
                    "field `{field}`: {d:?} is not a digest (`sha256:` and 64 lowercase hex digits)"
                )));
            }
        }
        if let Some(e) = &req.enforcement {
            if !matches!(e.as_str(), "full" | "partial" | "none") {
                return Err(CallError::BadRequest(format!(
                    "enforcement {e:?} is not one of full, partial, none"
                )));
            }
        }
        // A run can end on its own just after its writ was revoked, before
        // its enforcement point acted on the revocation (a script whose
        // nested runner heard it first): the log says what the authority
        // knew when the run ended.
        let state = self.state();
        let revoked = {
            Oracle {
                store: self.store.as_ref(),
                revoked: &state.revoked,
            }
            .revoked_chain(jti, &rec.principal, rec.parent.as_deref())
            // The finish is recorded regardless: it is what happened.
            .unwrap_or_else(|d| {
                tracing::warn!(jti, error = %d.message, "revocation status unknown at finish");
                None
            })
        };
        let terminated = match (&req.terminated, &revoked) {
            // The enforcement point saw only a signal: an ancestor's runner
            // ending its revoked subtree signals every descendant at once,
            // and this run's program may die of it before its own runner
            // hears of the revocation. The log names both.
            (Some(t), Some(why)) if !t.starts_with("revoked") => {
                Some(format!("revoked: {why} (the run ended: {t})"))
            }
            (Some(t), _) => Some(t.clone()),
            (None, Some(why)) => Some(format!(
                "revoked: {why} (the program ended before it was stopped)"
            )),
            (None, None) => None,
        };
        let now_ms = self.clock.now_unix_ms();
        let outcome = terminated.clone().unwrap_or_else(|| "exited".into());
        let leaf = Entry::ExecutionFinish {
            time_ms: now_ms,
            jti: jti.into(),
            principal: rec.principal,
            exit_status: req.exit_status,
            duration_ms: req.duration_ms,
            stdout_digest: req.stdout_digest.clone(),
            stderr_digest: req.stderr_digest.clone(),
            terminated,
            enforcement: req.enforcement.clone(),
        }
        .to_leaf()
        .map_err(CallError::from)?;
        let ops = vec![
            Op::Finish {
                jti: jti.into(),
                time_ms: now_ms,
                exit_status: req.exit_status,
                outcome,
            },
            Op::Append { leaf },
        ];
        Ok(self
            .submit_if_current(&state, Tx::new(ops))
            .map(|ticket| (revoked, ticket)))
    }
}

/// A finish of an execution that has finished (or whose finish is pending).
fn already_finished(jti: &str) -> CallError {
    CallError::Conflict(format!("execution {jti} has already finished"))
}

/// A renewal the bundle could not evaluate (its error follows in what the
/// caller is told, not in the log).
pub(super) const CANNOT_EVALUATE: &str = "the active bundle cannot evaluate the original request";

/// How a call about a writ no one issued is refused. A start presents the
/// writ to run (a gateway's exit status names the missing artifact,
/// docs/spec/reason-codes.md); a renewal or finish names an execution that
/// does not exist (404).
pub(super) enum Unknown {
    MissingArtifact,
    NotFound,
}

/// What a route's caller brought to prove it holds a holder-bound writ.
pub(super) fn holder_check(pop: Option<&str>, purpose: PopUse) -> HolderCheck {
    match pop {
        Some(p) => HolderCheck::Proof {
            proof: p.to_owned(),
            purpose,
        },
        None => HolderCheck::None,
    }
}

/// May `who` start, renew or finish the execution of `rec`? Its own
/// principal or an administrator may; a program's credential only on the
/// children of its own execution.
pub(super) fn may_act_on(who: &Principal, rec: &WritRecord) -> Result<(), CallError> {
    if let Some(e) = &who.execution {
        // Its own children, asked for with this credential: not the
        // siblings its runner asked for (an MCP server holding its session's
        // credential must not finish the proxy's tool calls).
        if rec.parent.as_deref() != Some(e.as_str()) || rec.via.as_deref() != Some(e.as_str()) {
            return Err(CallError::Forbidden(format!(
                "the credential of execution {e} acts only on the children it asked for; writ {} is not one",
                rec.jti
            )));
        }
    }
    if rec.principal != who.uid && !who.admin {
        return Err(CallError::Forbidden(format!(
            "writ {} belongs to {}, not {}",
            rec.jti, rec.principal, who.uid
        )));
    }
    Ok(())
}
