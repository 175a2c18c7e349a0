//! Deciding: one authorization request, from the caller's question to the
//! signed writ (docs/spec/writ.md).
//!
//! # Tuning (The nonce layout)
//!
//! A jti is 48 bits of issue time in milliseconds, then 80 random bits (the
//! layout of a UUIDv7), not 128 random bits. The `writs` and `executions`
//! tables are keyed by jti; a random key dirtied one index page per writ in
//! every group commit (a WAL frame each), which cost a fifth of the governed
//! rate (+25%, 11.7k to 14.7k/s, four pairs, when it changed). 80 random bits
//! per millisecond keep the nonce unique and unguessable; the time in it is
//! the writ's `iat` anyway. Old writs (random jtis) verify as before: the
//! shape is still 32 lowercase hex digits.

use super::*;

/// Why one attempt at a decision did not finish.
pub(super) enum Attempt {
    /// Input that is not a well-formed question.
    Bad(BadRequest),
    /// The state changed before the entry could be queued: decide again.
    StateChanged,
    /// Failed before anything was logged: answer this, unlogged.
    Unlogged(Denial),
}

impl From<BadRequest> for Attempt {
    fn from(e: BadRequest) -> Attempt {
        Attempt::Bad(e)
    }
}

/// Run `attempt` until it is queued against a current state (`Some`), at
/// most [`STATE_CHANGES_MAX`] times; then fail closed.
pub(super) async fn until_queued<T, F, Fut>(attempt: F) -> Result<T, CallError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, CallError>>,
{
    for _ in 0..STATE_CHANGES_MAX {
        if let Some(r) = attempt().await? {
            return Ok(r);
        }
    }
    Err(CallError::Denied(state_kept_changing()))
}

pub(super) fn state_kept_changing() -> Denial {
    unavailable(format!(
        "the authority's state changed under this call {STATE_CHANGES_MAX} times in a row"
    ))
}

impl Authority {
    /// Decide, log, then sign. Returns `Err` only for input that is not a
    /// well-formed question (nothing is logged then).
    pub async fn authorize(
        &self,
        who: &Principal,
        mut req: AuthorizeRequest,
    ) -> Result<AuthorizeResponse, BadRequest> {
        validate_authorize_request(&req)?;
        // A program's request is a child of the execution whose credential
        // it holds, whether or not it says so.
        if let (Some(e), None) = (&who.execution, &req.parent) {
            req.parent = Some(e.clone());
        }
        if req.probe {
            req.lifetime_secs = Some(PROBE_LIFETIME_SECS);
        }
        for _ in 0..STATE_CHANGES_MAX {
            if let Some(d) = self.stale() {
                return Ok(deny_unlogged(d));
            }
            match self.authorize_once(who, &req).await {
                Ok(r) => return Ok(r),
                Err(Attempt::Bad(e)) => return Err(e),
                Err(Attempt::StateChanged) => continue,
                Err(Attempt::Unlogged(d)) => return Ok(deny_unlogged(d)),
            }
        }
        Ok(deny_unlogged(state_kept_changing()))
    }

    /// One decision against the state current now; `StateChanged` if the
    /// state changed before the allow could be queued for the log.
    pub(super) async fn authorize_once(
        &self,
        who: &Principal,
        req: &AuthorizeRequest,
    ) -> Result<AuthorizeResponse, Attempt> {
        let state = self.state();
        let q = Question::measure(who, req, self.clock.now_unix_ms())?;
        // The partial entry; every path below completes and logs it.
        let mut entry = q.open_entry(state.bundle.hash());
        let mut lifetime = req.lifetime_secs.unwrap_or(WRIT_LIFETIME_SECS_DEFAULT);
        // Lineage: a child must hang from a live, unrevoked, running parent and
        // ask for no more than it holds.
        let explicit = req.lifetime_secs.is_some();
        let parent = match self.check_parent(&state, who, req, q.now(), &mut lifetime, explicit) {
            Ok(l) => l,
            Err(d) => return Ok(self.deny(entry, d).await),
        };
        entry.context = Value::Object(q.context(&state, parent.as_ref()));
        let message = match decide(&state, who, req, &entry.context) {
            Ok(message) => message,
            Err(d) => return Ok(self.deny(entry, d).await),
        };
        let first_use = match self.pin_check(&req.resource, q.definition.as_deref(), req.probe) {
            Ok(f) => f,
            Err(d) => return Ok(self.deny(entry, d).await),
        };
        let jti = match new_jti(self.entropy.as_ref(), q.now_ms) {
            Ok(j) => j,
            Err(e) => return Ok(self.deny(entry, unavailable(e)).await),
        };
        let grant = Granted {
            lineage: match &parent {
                Some(p) => Lineage {
                    parent: Some(p.jti.clone()),
                    root: p.root.clone(),
                    depth: p.depth + 1,
                },
                None => Lineage {
                    parent: None,
                    root: jti.clone(),
                    depth: 0,
                },
            },
            exp: q.now() + lifetime,
            jti,
        };
        entry.decision = Outcome::Allow;
        entry.message = message;
        entry.jti = Some(grant.jti.clone());
        entry.exp = Some(grant.exp);
        let announced = DecisionEvent::of(&entry);
        let Commit {
            mut ops,
            credential,
        } = self.allow_ops(&state, &q, entry, &grant)?;
        let pinning = first_use.is_some();
        if let Some(first) = first_use {
            ops.extend(self.first_use_ops(who, &req.resource, first, q.now_ms)?);
        }
        // INVARIANT: the writ is signed only after this commit returned Ok.
        let Some(ticket) = self.submit_if_current(&state, Tx::new(ops)) else {
            return Err(Attempt::StateChanged);
        };
        let log_index = match ticket.await {
            Ok(indices) => {
                self.note_indices(&indices);
                match indices.first() {
                    Some(i) => *i,
                    None => return Ok(deny_unlogged(unavailable("store returned no log index"))),
                }
            }
            // Another definition was pinned for the resource since it was read.
            Err(writ_store::StoreError::Conflict(m)) if pinning => {
                return Ok(deny_unlogged(Denial::new(ReasonCode::DefinitionChanged, m)))
            }
            Err(e) => return Ok(deny_unlogged(unavailable(e))),
        };
        let claims = self.claims(&state, q, &grant, log_index);
        let writ = match writ_artifact::sign(&state.signer, &claims) {
            Ok(w) => w,
            // The decision is logged as allow but no writ leaves: nothing can run.
            Err(e) => return Ok(deny_unlogged(unavailable(e))),
        };
        let _ = self
            .events
            .send(announced.logged(Some(log_index), Some(grant.jti.clone())));
        Ok(AuthorizeResponse::Allow {
            writ,
            log_index,
            jti: grant.jti,
            exp: grant.exp,
            credential,
            screen_result: req.action == writ_api::CALL_TOOL_ACTION
                && state.bundle.names_action(writ_api::TOOL_RESULT_ACTION),
        })
    }

    /// What an allow commits: its sealed decision entry and content, the
    /// writ's record and delegations, and for `start` the spent nonce, the
    /// lease and the start entry, so that all are durable or none is.
    fn allow_ops(
        &self,
        state: &State,
        q: &Question<'_>,
        mut entry: DecisionEntry,
        grant: &Granted,
    ) -> Result<Commit, Attempt> {
        let (req, jti) = (q.req, &grant.jti);
        let record = WritRecord {
            jti: jti.clone(),
            principal: q.who.uid.clone(),
            action: req.action.clone(),
            resource: req.resource.clone(),
            audience: req.audience.clone(),
            parent: grant.lineage.parent.clone(),
            root: grant.lineage.root.clone(),
            depth: grant.lineage.depth,
            scope: serde_json::to_string(&req.scope).map_err(|e| BadRequest(e.to_string()))?,
            policy: state.bundle.hash().to_owned(),
            iat: q.now(),
            exp: grant.exp,
            log_index: 0, // filled in by the store from this transaction's append
            via: q.who.execution.clone(),
            holder: q.holder.clone(),
        };
        // The leaf commits to what was asked; the values go beside it.
        let content = match self.seal(&mut entry) {
            Ok(c) => c,
            Err(d) => return Err(Attempt::Unlogged(d)),
        };
        // A leaf that cannot be encoded (too large) is refused before anything
        // is logged; the request never was a question the log can hold.
        let leaf = Entry::Decision(Box::new(entry))
            .to_leaf()
            .map_err(|e| BadRequest(e.to_string()))?;
        let mut ops = vec![
            Op::Append { leaf },
            Op::PutContent {
                salt: content.salt,
                content: content.bytes,
            },
        ];
        // A probe's writ is not kept: it can never be started, renewed or
        // named as a parent.
        if req.probe {
            return Ok(Commit {
                ops,
                credential: None,
            });
        }
        ops.push(Op::RecordWrit(record));
        ops.extend(req.delegates.iter().map(|d| Op::Delegate {
            jti: jti.clone(),
            principal: d.clone(),
        }));
        if !req.start {
            return Ok(Commit {
                ops,
                credential: None,
            });
        }
        // Spent on issue: the start entry follows the decision in the
        // same transaction, so both are durable or neither is.
        let start = Entry::ExecutionStart {
            time_ms: q.now_ms,
            jti: jti.clone(),
            principal: q.who.uid.clone(),
        }
        .to_leaf()
        .map_err(|e| BadRequest(e.to_string()))?;
        let (credential, credential_hash) = if req.credential {
            match principals::new_credential(self.entropy.as_ref(), jti) {
                Ok((c, h)) => (Some(c), Some(h)),
                Err(e) => return Err(Attempt::Unlogged(unavailable(e))),
            }
        } else {
            (None, None)
        };
        ops.extend([
            Op::Spend {
                jti: jti.clone(),
                time_ms: q.now_ms,
                credential_hash,
            },
            Op::Lease {
                jti: jti.clone(),
                lease_exp: grant.exp,
            },
            Op::Append { leaf: start },
        ]);
        Ok(Commit { ops, credential })
    }

    /// The claims of the writ an allow logged at `log_index` issues.
    fn claims(&self, state: &State, q: Question<'_>, grant: &Granted, log_index: u64) -> Claims {
        let (req, now) = (q.req, q.now());
        Claims {
            iss: self.config.issuer.clone(),
            sub: q.who.uid.clone(),
            aud: req.audience.clone(),
            cnf: q.holder.map(|jkt| Confirmation { jkt }),
            iat: now,
            nbf: now,
            exp: grant.exp,
            jti: grant.jti.clone(),
            writ: WritBody {
                action: req.action.clone(),
                resource: req.resource.clone(),
                request: q.request_digest,
                environment: q.environment,
                scope: req.scope.clone(),
                policy: state.bundle.hash().to_owned(),
                lineage: grant.lineage.clone(),
                log: LogPointer {
                    origin: self.config.log_origin.clone(),
                    index: log_index,
                },
            },
        }
    }

    /// The parent a child request names, checked: live, unrevoked, running,
    /// the caller's or delegated to it, deep enough to take a child, and
    /// holding the scope and time asked for (`lifetime` is cut to the
    /// parent's lease unless it was asked for explicitly).
    pub(super) fn check_parent(
        &self,
        state: &State,
        who: &Principal,
        req: &AuthorizeRequest,
        now: u64,
        lifetime: &mut u64,
        lifetime_explicit: bool,
    ) -> Result<Option<ParentInfo>, Denial> {
        let broken = |m: String| Denial::new(ReasonCode::LineageBroken, m);
        // A program's credential asks only for children of its execution.
        if let Some(e) = &who.execution {
            if req.parent.as_deref() != Some(e.as_str()) {
                return Err(broken(format!(
                    "a request authenticated by the credential of execution {e} must be its child, not {}",
                    req.parent
                        .as_deref()
                        .map_or("a root".to_owned(), |p| format!("a child of {p}"))
                )));
            }
        }
        let Some(parent) = &req.parent else {
            return Ok(None);
        };
        let rec = self
            .store
            .writ(parent)
            .map_err(unavailable)?
            .ok_or_else(|| broken(format!("parent writ {parent} is unknown to this authority")))?;
        // Only the parent's own principal, or one it delegated the writ to
        // when it was issued, may hang children on it: jtis are public.
        if rec.principal != who.uid
            && !self
                .store
                .delegated(parent, &who.uid)
                .map_err(unavailable)?
        {
            return Err(broken(format!(
                "parent writ {parent} belongs to {}, not {}; a writ takes children of another principal only if it was delegated to them when issued (`delegates`)",
                rec.principal, who.uid
            )));
        }
        let oracle = Oracle {
            store: self.store.as_ref(),
            revoked: &state.revoked,
        };
        if let Some(why) = oracle.revoked_chain(&rec.jti, &rec.principal, rec.parent.as_deref())? {
            return Err(broken(format!("parent is revoked: {why}")));
        }
        // A running parent lives as long as its lease (its writ's `exp`, moved
        // on by each renewal).
        let lease_exp = match self.store.execution(parent).map_err(unavailable)? {
            Some(e) if e.finished_ms.is_none() => e.lease_exp.unwrap_or(rec.exp),
            Some(_) => return Err(broken(format!("parent execution {parent} has finished"))),
            None => return Err(broken(format!("parent writ {parent} was never started"))),
        };
        if now >= lease_exp {
            return Err(broken(format!(
                "the lease of parent {parent} expired at {lease_exp}"
            )));
        }
        let depth = rec.depth + 1;
        if depth > self.config.lineage_depth_max.min(LINEAGE_DEPTH_MAX) {
            return Err(Denial::new(
                ReasonCode::ScopeEscalation,
                format!(
                    "depth {depth} exceeds the maximum lineage depth {}",
                    self.config.lineage_depth_max
                ),
            ));
        }
        let parent_scope: Scope = serde_json::from_str(&rec.scope)
            .map_err(|e| unavailable(format!("stored scope: {e}")))?;
        if !req.scope.is_within(&parent_scope) {
            return Err(Denial::new(
                ReasonCode::ScopeEscalation,
                format!(
                    "child scope {} is not inside parent scope {}",
                    serde_json::to_string(&req.scope).unwrap_or_default(),
                    rec.scope
                ),
            ));
        }
        let remaining = lease_exp - now;
        if *lifetime > remaining {
            if lifetime_explicit {
                return Err(Denial::new(
                    ReasonCode::ScopeEscalation,
                    format!("child asks for {lifetime} s but its parent has {remaining} s left"),
                ));
            }
            *lifetime = remaining;
        }
        let root_principal = match &rec.parent {
            None => rec.principal.clone(),
            Some(_) => self
                .store
                .writ(&rec.root)
                .map_err(unavailable)?
                .map(|r| r.principal)
                .ok_or_else(|| {
                    broken(format!(
                        "root writ {} of parent {parent} is unknown",
                        rec.root
                    ))
                })?,
        };
        Ok(Some(ParentInfo {
            jti: rec.jti,
            root: rec.root,
            depth: rec.depth,
            action: rec.action,
            root_principal,
        }))
    }

    /// Seal a decision entry with a fresh salt (its leaf will carry the
    /// commitment); the content to keep beside it.
    pub(super) fn seal(
        &self,
        entry: &mut DecisionEntry,
    ) -> Result<writ_log::content::Content, Denial> {
        let mut salt = [0u8; writ_log::content::SALT_BYTES];
        self.entropy.fill(&mut salt).map_err(unavailable)?;
        entry.seal(salt).map_err(unavailable)
    }

    /// Log a denial and answer it. If even the denial cannot be logged, the
    /// answer is `authority_unavailable`.
    pub(super) async fn deny(&self, mut entry: DecisionEntry, d: Denial) -> AuthorizeResponse {
        entry.decision = Outcome::Deny;
        entry.reason = Some(d.reason);
        entry.message = d.message.clone();
        if entry.context.is_null() {
            entry.context = Value::Object(Map::new());
        }
        let announced = DecisionEvent::of(&entry);
        let content = match self.seal(&mut entry) {
            Ok(c) => c,
            Err(d) => return deny_unlogged(d),
        };
        let leaf = match Entry::Decision(Box::new(entry)).to_leaf() {
            Ok(l) => l,
            Err(e) => return deny_unlogged(unavailable(e)),
        };
        let ops = vec![
            Op::Append { leaf },
            Op::PutContent {
                salt: content.salt,
                content: content.bytes,
            },
        ];
        match self.store.submit(Tx::new(ops)).await {
            Ok(indices) => {
                self.note_indices(&indices);
                let log_index = indices.first().copied();
                let _ = self.events.send(announced.logged(log_index, None));
                AuthorizeResponse::Deny {
                    reason: d.reason,
                    message: d.message,
                    log_index,
                }
            }
            Err(e) => deny_unlogged(unavailable(format!(
                "{e} (while logging a {} denial)",
                d.reason
            ))),
        }
    }
}

pub(super) struct ParentInfo {
    pub(super) jti: String,
    pub(super) root: String,
    pub(super) depth: u32,
    pub(super) action: String,
    pub(super) root_principal: String,
}

/// `integrity_failure` if a permitting policy demands (`@enforcement`) more
/// kernel enforcement than the enforcement point reports in its environment
/// facts (`enforcement`: `full`, `partial` or `none`; absent counts as none).
pub(super) fn enforcement_shortfall(
    decision: &writ_policy::Decision,
    environment: Option<&Value>,
) -> Option<Denial> {
    let (demanded, policy) = decision.enforcement.as_ref()?;
    let reported = environment
        .and_then(|e| e.get("enforcement"))
        .and_then(Value::as_str)
        .unwrap_or("none");
    let rank = |l: &str| writ_policy::enforcement_rank(l).unwrap_or(0);
    // The runner's word is quoted only when it is a level: the message is
    // logged, and a caller's string is not the log's to publish.
    let reported = if writ_policy::enforcement_rank(reported).is_some() {
        reported
    } else {
        "an unknown level"
    };
    (rank(reported) < rank(demanded)).then(|| {
        Denial::new(
            ReasonCode::IntegrityFailure,
            format!(
                "policy {policy} demands {demanded} enforcement but the enforcement point reports {reported}"
            ),
        )
    })
}

pub(super) fn deny_unlogged(d: Denial) -> AuthorizeResponse {
    AuthorizeResponse::Deny {
        reason: d.reason,
        message: d.message,
        log_index: None,
    }
}

/// A writ's nonce: 128 bits, as 32 lowercase hex digits. The first 48 bits
/// are the issue time in milliseconds and the other 80 are random, the
/// layout of a UUIDv7. A nonce has to be unique and unguessable, which 80
/// random bits per millisecond are by far; the time in front makes every
/// index keyed by jti (`writs`, `executions`) grow at its right edge
/// instead of dirtying one random page per writ in each group commit,
/// which cost a fifth of the governed rate (this module's tuning notes).
pub(super) fn new_jti(
    entropy: &dyn Entropy,
    now_ms: u64,
) -> Result<String, writ_artifact::EntropyError> {
    let mut b = [0u8; 16];
    entropy.fill(&mut b[6..])?;
    b[..6].copy_from_slice(&now_ms.to_be_bytes()[2..]);
    Ok(hex::encode(b))
}

/// One authorization request, measured once: its digests and holder key
/// are what the entry logs and the writ binds.
pub(super) struct Question<'a> {
    who: &'a Principal,
    req: &'a AuthorizeRequest,
    now_ms: u64,
    request_digest: String,
    environment: EnvironmentBinding,
    /// The RFC 7638 thumbprint of `cnf.jwk` (docs/spec/holder.md).
    holder: Option<String>,
    /// `sha256:` of the resource's definition, when the request carries one.
    definition: Option<String>,
}

impl<'a> Question<'a> {
    fn measure(
        who: &'a Principal,
        req: &'a AuthorizeRequest,
        now_ms: u64,
    ) -> Result<Question<'a>, BadRequest> {
        let request_digest =
            canonical::digest_value(&req.request).map_err(|e| BadRequest(e.to_string()))?;
        let environment = EnvironmentBinding::bind(req.environment.clone())
            .map_err(|e| BadRequest(e.to_string()))?;
        let holder = req
            .cnf
            .as_ref()
            .map(|c| c.jwk.thumbprint())
            .transpose()
            .map_err(|e| BadRequest(format!("field `cnf.jwk`: {e}")))?;
        let definition = req
            .definition
            .as_ref()
            .map(canonical::digest_value)
            .transpose()
            .map_err(|e| BadRequest(format!("field `definition`: {e}")))?;
        Ok(Question {
            who,
            req,
            now_ms,
            request_digest,
            environment,
            holder,
            definition,
        })
    }

    fn now(&self) -> u64 {
        self.now_ms / 1000
    }

    /// The decision entry as far as it is known before deciding: a deny
    /// with no reason yet.
    fn open_entry(&self, policy: &str) -> DecisionEntry {
        let req = self.req;
        DecisionEntry {
            time_ms: self.now_ms,
            principal: self.who.uid.clone(),
            action: req.action.clone(),
            resource: req.resource.clone(),
            context: Value::Null,
            request: self.request_digest.clone(),
            environment: self.environment.digest.clone(),
            audience: req.audience.clone(),
            scope: req.scope.clone(),
            policy: policy.to_owned(),
            decision: Outcome::Deny,
            delegates: req.delegates.clone(),
            reason: None,
            message: String::new(),
            jti: None,
            parent: req.parent.clone(),
            exp: None,
            probe: req.probe,
            content: None,
        }
    }

    /// The Cedar context: the caller's own, and what writ fills in
    /// (`RESERVED_CONTEXT`, docs/spec/api.md).
    fn context(&self, state: &State, parent: Option<&ParentInfo>) -> Map<String, Value> {
        let (who, req) = (self.who, self.req);
        let (depth, root_principal, parent_action) = match parent {
            Some(p) => (p.depth + 1, p.root_principal.clone(), p.action.clone()),
            None => (0, who.uid.clone(), String::new()),
        };
        let mut context = req.context.clone();
        context.insert("request".into(), req.request.clone());
        context.insert("environment".into(), Value::Object(req.environment.clone()));
        context.insert(
            "scope".into(),
            json!({"read": req.scope.read, "write": req.scope.write, "net": req.scope.net}),
        );
        context.insert("audience".into(), Value::String(req.audience.clone()));
        context.insert(
            "lineage".into(),
            json!({"depth": depth, "root_principal": root_principal, "parent_action": parent_action}),
        );
        // Only when there are some: a schema written before delegation
        // existed still validates every other request.
        if !req.delegates.is_empty() {
            context.insert("delegates".into(), json!(req.delegates));
        }
        if let Some(identity) =
            state
                .bundle
                .fit_to_context(&req.action, "identity", who.identity.to_context())
        {
            context.insert("identity".into(), identity);
        }
        context
    }
}

/// Put the question to the policy: the allow's message, or why not (a
/// barred principal, Cedar's deny or error, too little enforcement).
fn decide(
    state: &State,
    who: &Principal,
    req: &AuthorizeRequest,
    context: &Value,
) -> Result<String, Denial> {
    if let Some(why) = state.revoked.principal_barred(&who.uid) {
        return Err(Denial::new(ReasonCode::Revoked, why));
    }
    let decision = state
        .bundle
        .decide(DecisionInput {
            principal: &who.uid,
            action: &req.action,
            resource: &req.resource,
            context,
        })
        .map_err(|e| Denial::new(ReasonCode::PolicyDenied, e.0))?;
    if !decision.allow {
        return Err(Denial::new(ReasonCode::PolicyDenied, decision.message()));
    }
    if let Some(d) = enforcement_shortfall(&decision, context.get("environment")) {
        return Err(d);
    }
    // A policy on tool results binds only an enforcement point that decides
    // them: one that cannot would pass every answer unseen.
    if req.action == writ_api::CALL_TOOL_ACTION
        && !req.screens_results
        && state.bundle.names_action(writ_api::TOOL_RESULT_ACTION)
    {
        return Err(Denial::new(
            ReasonCode::IntegrityFailure,
            "a policy decides tool results (Action::\"tool_result\") but this enforcement point \
             does not say it screens them (screens_results)",
        ));
    }
    Ok(decision.message())
}

/// What an allow's transaction holds, and the execution's credential (if
/// one was asked for), which goes back to the caller only.
pub(super) struct Commit {
    ops: Vec<Op>,
    credential: Option<String>,
}

/// What an allow grants: the writ's nonce, lineage and end.
pub(super) struct Granted {
    jti: String,
    lineage: Lineage,
    exp: u64,
}
