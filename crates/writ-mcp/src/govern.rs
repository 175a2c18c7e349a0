//! The governance decisions of the proxy, as functions over [`Authority`] so
//! they can be tested without a network: the authorize request of a
//! `tools/call`, offline verification of the writ the authority returns
//! (into the [`Permit`] a request is forwarded with), the finish record of a
//! call, and the filtering of `tools/list`.
//!
//! Fail closed: an authority that cannot be reached, an answer that is not a
//! writ, a writ that does not verify: each is a denial with a reason code,
//! and the call is not forwarded.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Map, Value};
use writ_api::HolderCnf;
use writ_api::{AuthorizeRequest, AuthorizeResponse, FinishRequest};
use writ_artifact::pop::{HolderKey, PopUse};
use writ_artifact::{
    canonical, Clock, Denial, Grant, HolderCheck, KeyRing, NoStatus, ReasonCode, VerifyOptions,
};

pub use crate::methods::{call_of, BadCall};
use crate::methods::{resource_read, tool_call, Ask};

/// The action every governed tool call asks for.
pub const CALL_TOOL_ACTION: &str = crate::methods::CALL_TOOL;
/// The action of the session writ (the root of a session's lineage).
pub const SESSION_ACTION: &str = "Action::\"mcp_session\"";
/// Lifetime of a `tools/list` probe's writ, which is never started.
pub const PROBE_LIFETIME_SECS: u64 = writ_api::PROBE_LIFETIME_SECS;
/// Most tool definitions a session remembers (a server listing more has
/// the rest called with their bare names, which a pinned tool denies).
pub const DEFINITIONS_MAX: usize = 10_000;
/// How many `tools/list` probes are in flight at once.
pub const PROBES_IN_FLIGHT_MAX: usize = 16;

/// The authority could not be reached or gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// What the proxy needs from the writ authority (over HTTP in the CLI).
pub trait Authority: Send + Sync + 'static {
    /// `POST /v1/authorize` as the proxy's principal.
    fn authorize(
        &self,
        req: AuthorizeRequest,
    ) -> impl Future<Output = Result<AuthorizeResponse, Unavailable>> + Send;
    /// `POST /v1/executions/{jti}/finish`.
    fn finish(
        &self,
        jti: &str,
        outcome: FinishRequest,
    ) -> impl Future<Output = Result<(), Unavailable>> + Send;
}

/// `Tool::"SERVER/TOOL"`.
pub fn tool_resource(server: &str, tool: &str) -> String {
    format!(
        "Tool::{}",
        serde_json::to_string(&format!("{server}/{tool}")).unwrap_or_default()
    )
}

/// `McpServer::"SERVER"`.
pub fn server_resource(server: &str) -> String {
    format!(
        "McpServer::{}",
        serde_json::to_string(server).unwrap_or_default()
    )
}

/// A governed request that may be forwarded: the [`Grant`] of its verified
/// writ, which only [`Governor::authorize`] gets (by verifying the writ the
/// authority issued), and when it was asked for. The proxy forwards a
/// decided request only with its permit, and records its finish with it.
#[derive(Debug)]
pub struct Permit {
    grant: Grant,
    started: Instant,
    /// The tool (and the call's arguments) whose result must be decided
    /// before the client sees it, when the authority asked for that
    /// ([`Governor::screen`]).
    screen: Option<(String, Value)>,
}

impl Permit {
    /// What the verified writ grants.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The writ's nonce, which names the request's execution.
    pub fn jti(&self) -> &str {
        self.grant.jti()
    }

    /// When the request was asked for.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Whether the answer to this call is decided before it is passed on.
    pub fn screens(&self) -> bool {
        self.screen.is_some()
    }
}

/// The session's fixed facts.
pub struct Session {
    /// The server name given with `--name` (`Tool::"NAME/TOOL"`).
    pub server: String,
    /// `mcp:NAME`.
    pub audience: String,
    /// The session writ's jti: the parent of every call.
    pub parent: Option<String>,
    /// The authority's public keys, for offline verification.
    pub keys: KeyRing,
    /// The proxy's holder key: every writ asked for is bound to it, and
    /// each use of one is proved with it (docs/spec/holder.md).
    pub holder: Option<Arc<HolderKey>>,
}

/// Decides for one proxy session.
pub struct Governor<A> {
    authority: A,
    session: Session,
    clock: Box<dyn Clock>,
    /// Set when the session's own writ stops being valid (revoked, renewal
    /// denied, authority unreachable past the grace): every later call is
    /// denied with this.
    ended: Mutex<Option<Denial>>,
    /// Each tool's definition as the server last listed it (name →
    /// [`tool_definition`]): sent with its calls, which the authority
    /// compares with the tool's pin (docs/spec/api.md, "Pinned
    /// definitions").
    definitions: Mutex<HashMap<String, Value>>,
}

/// The tool a `tools/call` ask names.
fn called_tool(ask: &Ask) -> Option<&str> {
    if ask.action != CALL_TOOL_ACTION {
        return None;
    }
    ask.request.get("name")?.as_str()
}

/// What a tool's definition is, for pinning: the tool as the server listed
/// it (name, title, description, input and output schemas, annotations
/// such as `destructiveHint`, ...), all but `_meta`, which the
/// specification leaves to implementations.
pub fn tool_definition(tool: &Value) -> Option<(String, Value)> {
    let name = tool.get("name")?.as_str()?.to_owned();
    let mut d = tool.as_object()?.clone();
    d.remove("_meta");
    Some((name, Value::Object(d)))
}

impl<A: Authority> Governor<A> {
    pub fn new(authority: A, session: Session, clock: Box<dyn Clock>) -> Governor<A> {
        Governor {
            authority,
            session,
            clock,
            ended: Mutex::new(None),
            definitions: Mutex::new(HashMap::new()),
        }
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn authority(&self) -> &A {
        &self.authority
    }

    /// The session's writ is no longer valid: deny every later call with `d`.
    pub fn end(&self, d: Denial) {
        let mut e = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        e.get_or_insert(d);
    }

    fn ended(&self) -> Option<Denial> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the session knows the definition of the tool `ask` calls.
    pub fn knows_definition(&self, ask: &Ask) -> bool {
        self.definition_of(ask).is_some()
    }

    /// Remember the definitions of the tools a `tools/list` answer holds.
    pub fn learn_tools(&self, tools: &[Value]) {
        let mut defs = self.definitions.lock().unwrap_or_else(|p| p.into_inner());
        for (name, d) in tools.iter().filter_map(tool_definition) {
            if defs.len() < DEFINITIONS_MAX || defs.contains_key(&name) {
                defs.insert(name, d);
            }
        }
    }

    /// The definition of the tool a `tools/call` ask names, if it was listed.
    fn definition_of(&self, ask: &Ask) -> Option<Value> {
        let name = called_tool(ask)?;
        let defs = self.definitions.lock().unwrap_or_else(|p| p.into_inner());
        defs.get(name).cloned()
    }

    /// The authorize request of `ask`: a child of the session, started on
    /// issue unless it is a probe (`start` false). A tool call carries the
    /// tool's definition (and the policy sees its `description`).
    pub fn request_for(&self, ask: &Ask, start: bool) -> AuthorizeRequest {
        // A tool the server did not list (or whose listing never came) is
        // sent as its bare name: held to its pin like any other definition
        // (never pinned: only a probe pins), so a server cannot skip the
        // check by not answering a list.
        let definition = self
            .definition_of(ask)
            .or_else(|| called_tool(ask).map(|name| serde_json::json!({ "name": name })));
        self.request_with(ask, start, definition)
    }

    /// [`Governor::request_for`] with this `definition`.
    fn request_with(&self, ask: &Ask, start: bool, definition: Option<Value>) -> AuthorizeRequest {
        let mut context = ask.context.clone();
        if let Some(d) = definition.as_ref().and_then(|d| d.get("description")) {
            if d.is_string() {
                context.insert("description".into(), d.clone());
            }
        }
        AuthorizeRequest {
            context,
            parent: self.session.parent.clone(),
            start,
            cnf: self
                .session
                .holder
                .as_ref()
                .map(|h| HolderCnf { jwk: h.jwk() }),
            definition,
            probe: !start,
            // This proxy decides a call's answer when told to (`screen`).
            screens_results: ask.action == crate::methods::CALL_TOOL,
            ..AuthorizeRequest::new(
                ask.action,
                ask.resource.clone(),
                ask.request.clone(),
                self.session.audience.clone(),
            )
        }
    }

    /// The proof for `purpose` of writ `jti`, when the session binds its
    /// writs to a holder key.
    fn proof(&self, jti: &str, purpose: PopUse) -> Result<Option<String>, Denial> {
        self.session
            .holder
            .as_ref()
            .map(|h| {
                h.prove(
                    jti,
                    &self.session.audience,
                    purpose,
                    self.clock.now_unix_secs(),
                )
                .map_err(|e| Denial::new(ReasonCode::AuthorityUnavailable, e.to_string()))
            })
            .transpose()
    }

    /// `POST /v1/executions/{jti}/finish` of a writ of this session (its
    /// own among them), with the holder's proof.
    pub async fn finish(&self, jti: &str, mut outcome: FinishRequest) -> Result<(), Unavailable> {
        outcome.pop = self
            .proof(jti, PopUse::Finish)
            .map_err(|d| Unavailable(d.message))?;
        self.authority.finish(jti, outcome).await
    }

    /// The authorize request of a call of `tool` with `arguments`: action
    /// `call_tool`, resource `Tool::"SERVER/TOOL"`, the arguments as typed
    /// context values (`context.arguments.path`), the exact call
    /// `{name, arguments}` as `request`, a child of the session, started on
    /// issue.
    pub fn call_request(&self, tool: &str, arguments: Map<String, Value>) -> AuthorizeRequest {
        self.request_for(&tool_call(&self.session.server, tool, arguments), true)
    }

    /// Authorize a call of `tool` (see [`Governor::authorize`]).
    pub async fn authorize_call(
        &self,
        tool: &str,
        arguments: Map<String, Value>,
    ) -> Result<Permit, Denial> {
        self.authorize(tool_call(&self.session.server, tool, arguments))
            .await
    }

    /// Authorize a request: ask, then verify the writ offline against the
    /// session's keys, bound to this exact request and this audience. `Err`
    /// is the denial to answer with; the request must then not be forwarded.
    pub async fn authorize(&self, ask: Ask) -> Result<Permit, Denial> {
        if let Some(d) = self.ended() {
            return Err(d);
        }
        let started = Instant::now();
        let req = self.request_for(&ask, true);
        let screen;
        let digest = canonical::digest_value(&req.request)
            .map_err(|e| Denial::new(ReasonCode::MalformedArtifact, e))?;
        let writ = match self.authority.authorize(req).await {
            Err(Unavailable(m)) => return Err(Denial::new(ReasonCode::AuthorityUnavailable, m)),
            Ok(AuthorizeResponse::Deny {
                reason, message, ..
            }) => return Err(Denial::new(reason, message)),
            Ok(AuthorizeResponse::Allow {
                writ,
                jti,
                screen_result,
                ..
            }) => {
                screen = screen_result
                    .then(|| ask.context.get("tool").and_then(Value::as_str))
                    .flatten()
                    .filter(|_| ask.action == crate::methods::CALL_TOOL)
                    .map(|tool| {
                        let arguments = ask.context.get("arguments").cloned();
                        (
                            tool.to_owned(),
                            arguments.unwrap_or_else(|| Value::Object(Map::new())),
                        )
                    });
                (writ, jti)
            }
        };
        let holder = match self.proof(&writ.1, PopUse::Verify) {
            Ok(Some(proof)) => HolderCheck::Proof {
                proof,
                purpose: PopUse::Verify,
            },
            Ok(None) => HolderCheck::None,
            Err(d) => {
                self.record_not_started(&writ.1, started, &d).await;
                return Err(d);
            }
        };
        let opts = VerifyOptions::enforcing(
            self.clock.now_unix_secs(),
            self.session.audience.clone(),
            digest,
            holder,
        );
        match writ_artifact::verify(&writ.0, &self.session.keys, &opts, &NoStatus) {
            Ok(v) if v.jti() == writ.1 => match v.grant() {
                Ok(grant) => Ok(Permit {
                    grant,
                    started,
                    screen,
                }),
                Err(d) => {
                    self.record_not_started(&writ.1, started, &d).await;
                    Err(d)
                }
            },
            Ok(v) => {
                let d = Denial::new(
                    ReasonCode::MalformedArtifact,
                    format!(
                        "the writ's jti {} is not the one the authority named",
                        v.jti()
                    ),
                );
                self.record_not_started(&writ.1, started, &d).await;
                Err(d)
            }
            Err(d) => {
                // The nonce was spent on issue: say in the log why it never ran.
                self.record_not_started(&writ.1, started, &d).await;
                Err(d)
            }
        }
    }

    async fn record_not_started(&self, jti: &str, started: Instant, d: &Denial) {
        self.record_not_forwarded(jti, started, &format!("{}: {}", d.reason, d.message))
            .await;
    }

    /// Record, as the finish of `jti`, that its call was never forwarded.
    async fn record_not_forwarded(&self, jti: &str, started: Instant, why: &str) {
        let outcome = FinishRequest {
            duration_ms: elapsed_ms(started),
            terminated: Some(format!("not forwarded: {why}")),
            ..Default::default()
        };
        if let Err(e) = self.finish(jti, outcome).await {
            tracing::warn!("the finish of {jti} was not recorded: {e}");
        }
    }

    /// Decide the server's answer to a call whose permit screens its result
    /// (`Action::"tool_result"`, a probe: logged, never started). `Err`: the
    /// result must be withheld, for the denial's reason; an authority that
    /// cannot be asked withholds it too (fail closed).
    pub async fn screen(&self, permit: &Permit, response: &Value) -> Result<(), Denial> {
        let Some((tool, arguments)) = &permit.screen else {
            return Ok(());
        };
        if let Some(d) = self.ended() {
            return Err(d);
        }
        let ask = crate::screen::result_ask(
            &self.session.server,
            tool,
            arguments,
            permit.jti(),
            response,
        )?;
        let mut req = self.request_with(&ask, false, None);
        req.lifetime_secs = Some(PROBE_LIFETIME_SECS);
        let digest = canonical::digest_value(&req.request)
            .map_err(|e| Denial::new(ReasonCode::MalformedArtifact, e))?;
        match self.authority.authorize(req).await {
            // Only a writ of this decision lets the result through, as only
            // a writ lets a call through.
            Ok(AuthorizeResponse::Allow { writ, jti, .. }) => {
                self.verify_probe(&writ, &jti, digest).map_err(|d| {
                    Denial::new(
                        d.reason,
                        format!("the tool's result was withheld: {}", d.message),
                    )
                })
            }
            Ok(AuthorizeResponse::Deny {
                reason, message, ..
            }) => Err(Denial::new(
                reason,
                format!("the tool's result was withheld: {message}"),
            )),
            Err(Unavailable(m)) => Err(Denial::new(
                ReasonCode::AuthorityUnavailable,
                format!("the tool's result was withheld: it could not be decided: {m}"),
            )),
        }
    }

    /// Verify a probe's writ offline: this session's keys, audience and
    /// holder, and the request `digest`.
    fn verify_probe(&self, writ: &str, jti: &str, digest: String) -> Result<(), Denial> {
        let holder = match self.proof(jti, PopUse::Verify)? {
            Some(proof) => HolderCheck::Proof {
                proof,
                purpose: PopUse::Verify,
            },
            None => HolderCheck::None,
        };
        let opts = VerifyOptions::enforcing(
            self.clock.now_unix_secs(),
            self.session.audience.clone(),
            digest,
            holder,
        );
        let v = writ_artifact::verify(writ, &self.session.keys, &opts, &NoStatus)?;
        if v.jti() != jti {
            return Err(Denial::new(
                ReasonCode::MalformedArtifact,
                format!(
                    "the writ's jti {} is not the one the authority named",
                    v.jti()
                ),
            ));
        }
        Ok(())
    }

    /// Record how a forwarded call ended: the server's JSON-RPC response.
    pub async fn record_finish(&self, permit: &Permit, response: &Value) {
        let outcome = finish_of(response, elapsed_ms(permit.started()));
        if let Err(e) = self.finish(permit.jti(), outcome).await {
            tracing::warn!("the finish of {} was not recorded: {e}", permit.jti());
        }
    }

    /// Record how a forwarded call ended whose result was withheld: the
    /// server's answer (its digest) and why the client did not get it.
    pub async fn record_withheld(&self, permit: &Permit, response: &Value, d: &Denial) {
        let mut outcome = finish_of(response, elapsed_ms(permit.started()));
        outcome.terminated = Some(format!("result withheld: {}: {}", d.reason, d.message));
        if let Err(e) = self.finish(permit.jti(), outcome).await {
            tracing::warn!("the finish of {} was not recorded: {e}", permit.jti());
        }
    }

    /// Record that an allowed call was not forwarded after all, and why.
    pub async fn record_unforwarded(&self, permit: &Permit, why: &str) {
        self.record_not_forwarded(permit.jti(), permit.started(), why)
            .await;
    }

    /// Record that the server went away before answering a forwarded call.
    pub async fn record_lost(&self, permit: &Permit) {
        let outcome = FinishRequest {
            duration_ms: elapsed_ms(permit.started()),
            terminated: Some("the MCP server exited before answering".into()),
            ..Default::default()
        };
        let _ = self.finish(permit.jti(), outcome).await;
    }

    /// May the principal call `tool` at all? A probe (see [`Governor::may`])
    /// of a call with empty arguments.
    pub async fn may_call(&self, tool: &str) -> bool {
        self.may(tool_call(&self.session.server, tool, Map::new()))
            .await
    }

    /// Would `ask` be allowed? A probe: the same request, not started,
    /// lifetime 1 s; its writ is dropped here. Any failure is a no (fail
    /// closed).
    pub async fn may(&self, ask: Ask) -> bool {
        let definition = self.definition_of(&ask);
        self.may_with(ask, definition).await
    }

    /// [`Governor::may`] of a listed item, with the definition it was
    /// listed with (not the session's, which another list may have changed
    /// meanwhile).
    async fn may_with(&self, ask: Ask, definition: Option<Value>) -> bool {
        if self.ended().is_some() {
            return false;
        }
        let mut req = self.request_with(&ask, false, definition);
        req.lifetime_secs = Some(PROBE_LIFETIME_SECS);
        matches!(
            self.authority.authorize(req).await,
            Ok(AuthorizeResponse::Allow { .. })
        )
    }

    /// Filter a `tools/list` response to the tools [`Governor::may_call`]
    /// allows; everything else in the response is kept as it was.
    pub async fn filter_tools(self: &Arc<Self>, response: Value) -> Value {
        self.filter_list(response, Listed::Tools).await
    }

    /// Filter a `tools/list` or `resources/list` response to the items a
    /// probe allows (a call of the tool with empty arguments, a read of the
    /// resource); an item the probe cannot be made for is dropped, and
    /// everything else in the response is kept as it was.
    pub async fn filter_list(self: &Arc<Self>, mut response: Value, listed: Listed) -> Value {
        let field = listed.field();
        let Some(items) = response
            .get_mut("result")
            .and_then(|r| r.get_mut(field))
            .and_then(Value::as_array_mut)
        else {
            return response;
        };
        let items = std::mem::take(items);
        // A tool listed twice in one answer (two definitions under one
        // name) is left out: which one the client keeps is its own choice.
        let mut named: HashMap<&str, usize> = HashMap::new();
        if listed == Listed::Tools {
            self.learn_tools(&items);
            for n in items.iter().filter_map(|t| t.get("name")?.as_str()) {
                *named.entry(n).or_default() += 1;
            }
        }
        let mut keep = vec![false; items.len()];
        let mut set = tokio::task::JoinSet::new();
        for (i, item) in items.iter().enumerate() {
            let server = &self.session.server;
            let (ask, definition) = match listed {
                Listed::Tools => match tool_definition(item) {
                    Some((n, d)) if named.get(n.as_str()) == Some(&1) => {
                        (Some(tool_call(server, &n, Map::new())), Some(d))
                    }
                    _ => (None, None),
                },
                Listed::Resources => (
                    item.get("uri")
                        .and_then(Value::as_str)
                        .map(|u| resource_read(server, u)),
                    None,
                ),
            };
            let Some(ask) = ask else { continue };
            if set.len() >= PROBES_IN_FLIGHT_MAX {
                if let Some(Ok((j, ok))) = set.join_next().await {
                    set_keep(&mut keep, j, ok);
                }
            }
            let g = Arc::clone(self);
            set.spawn(async move { (i, g.may_with(ask, definition).await) });
        }
        while let Some(r) = set.join_next().await {
            if let Ok((j, ok)) = r {
                set_keep(&mut keep, j, ok);
            }
        }
        let kept: Vec<Value> = items
            .into_iter()
            .zip(keep)
            .filter_map(|(t, k)| k.then_some(t))
            .collect();
        if let Some(items) = response.get_mut("result").and_then(|r| r.get_mut(field)) {
            *items = Value::Array(kept);
        }
        response
    }
}

/// A list response the proxy filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    Tools,
    Resources,
}

impl Listed {
    fn field(self) -> &'static str {
        match self {
            Listed::Tools => "tools",
            Listed::Resources => "resources",
        }
    }
}

fn set_keep(keep: &mut [bool], i: usize, ok: bool) {
    if let Some(k) = keep.get_mut(i) {
        *k = ok;
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The finish record of a call from the server's response: a result is
/// exit status 0, or 1 when `isError` is true, with `stdout_digest` the
/// `sha256:` of the RFC 8785 bytes of the result; a JSON-RPC error has no
/// exit status and says why in `terminated`.
pub fn finish_of(response: &Value, duration_ms: u64) -> FinishRequest {
    if let Some(result) = response.get("result") {
        let is_error = result.get("isError").and_then(Value::as_bool) == Some(true);
        FinishRequest {
            exit_status: Some(i64::from(is_error)),
            duration_ms,
            stdout_digest: canonical::digest_value(result).ok(),
            ..Default::default()
        }
    } else {
        let err = response.get("error");
        let code = err.and_then(|e| e.get("code")).and_then(Value::as_i64);
        let msg = err
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut msg: String = msg.chars().take(200).collect();
        if msg.is_empty() {
            msg = "no message".into();
        }
        FinishRequest {
            duration_ms,
            terminated: Some(format!(
                "json-rpc error {}: {msg}",
                code.map_or("?".into(), |c| c.to_string())
            )),
            ..Default::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_call_is_name_and_arguments() {
        let (n, a) = call_of(Some(
            &json!({"name": "read_text_file", "arguments": {"path": "/x"}}),
        ))
        .unwrap();
        assert_eq!(n, "read_text_file");
        assert_eq!(a["path"], "/x");
        let (_, a) = call_of(Some(&json!({"name": "t"}))).unwrap();
        assert!(a.is_empty());
        for bad in [
            json!(null),
            json!({"arguments": {}}),
            json!({"name": 3}),
            json!({"name": "t", "arguments": [1]}),
            json!({"name": ""}),
        ] {
            assert!(call_of(Some(&bad)).is_err(), "{bad}");
        }
        assert!(call_of(None).is_err());
    }

    #[test]
    fn finish_records_is_error_and_the_result_digest() {
        let ok = finish_of(
            &json!({"id": 1, "result": {"content": [], "isError": false}}),
            3,
        );
        assert_eq!(ok.exit_status, Some(0));
        assert_eq!(ok.duration_ms, 3);
        assert_eq!(
            ok.stdout_digest.as_deref(),
            canonical::digest_value(&json!({"content": [], "isError": false}))
                .ok()
                .as_deref()
        );
        let tool_err = finish_of(
            &json!({"id": 1, "result": {"content": [], "isError": true}}),
            0,
        );
        assert_eq!(tool_err.exit_status, Some(1));
        let rpc_err = finish_of(
            &json!({"id": 1, "error": {"code": -32602, "message": "bad"}}),
            0,
        );
        assert_eq!(rpc_err.exit_status, None);
        assert_eq!(
            rpc_err.terminated.as_deref(),
            Some("json-rpc error -32602: bad")
        );
    }

    #[test]
    fn resources_are_cedar_uids() {
        assert_eq!(tool_resource("fs", "read"), "Tool::\"fs/read\"");
        assert_eq!(tool_resource("f\"s", "r"), "Tool::\"f\\\"s/r\"");
        assert_eq!(server_resource("fs"), "McpServer::\"fs\"");
    }
}
