//! Request and response shapes of the authority's API: the JSON bodies of its
//! HTTP routes, shared by the server and by the clients (the enforcement
//! points among them), which must not depend on the authority itself.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
pub use writ_artifact::pop::HolderJwk;
use writ_artifact::{Claims, ReasonCode, Scope};

/// `POST /v1/authorize`. The principal is the authenticated caller, never a
/// field of the body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// Cedar UID of the action, e.g. `Action::"exec"`.
    pub action: String,
    /// Cedar UID of the resource, e.g. `Command::"/usr/bin/ls"`.
    pub resource: String,
    /// Extra attributes for the Cedar context (must not use the reserved names
    /// `request`, `environment`, `scope`, `audience`, `lineage`).
    #[serde(default)]
    pub context: Map<String, Value>,
    /// The exact request; the writ binds its RFC 8785 digest.
    pub request: Value,
    /// Environment facts to bind.
    #[serde(default)]
    pub environment: Map<String, Value>,
    #[serde(default)]
    pub scope: Scope,
    /// The enforcement point the writ is for.
    pub audience: String,
    /// `jti` of the parent writ, for a child execution.
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub lifetime_secs: Option<u64>,
    /// Start the execution on issue: on allow, the nonce is spent (an
    /// `execution_start` entry) in the same commit as the decision, for a
    /// gateway that runs at once and would otherwise call `start` right after.
    /// The writ can then never be started elsewhere (`replayed`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub start: bool,
    /// With `start`: also give the execution a credential (returned once, in
    /// the answer's `credential`) for the program it runs. A request
    /// authenticated by it is always a child of this execution, and the
    /// credential stops working when the execution finishes, its lease
    /// ends, or it (or an ancestor, or its principal) is revoked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub credential: bool,
    /// Principals (Cedar UIDs) that may name this writ as their parent,
    /// besides its own principal: an explicit, logged delegation the policy
    /// sees as `context.delegates`. Without it, a parent must belong to the
    /// caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegates: Vec<String>,
    /// Bind the writ to this holder key (RFC 7800 `cnf.jwk`, an Ed25519
    /// OKP JWK): the writ carries its thumbprint, `cnf.jkt`, and every use
    /// of it (start, renew, finish, verify) needs a fresh proof signed by
    /// the key (docs/spec/holder.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<HolderCnf>,
    /// What the enforcement point was told the resource is (for an MCP
    /// tool: the tool as listed, all but `_meta`). Its digest is pinned by
    /// the first allowed probe that carries one; a decision carrying
    /// another is denied `definition_changed` until an administrator
    /// approves it (docs/spec/api.md, "Pinned definitions").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<Value>,
    /// Only ask whether the request would be allowed (an MCP proxy
    /// filtering `tools/list`): logged as a probe, never started, its writ
    /// lives at most [`PROBE_LIFETIME_SECS`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probe: bool,
    /// The enforcement point decides a tool's answer before passing it on
    /// when told to (`screen_result`). A `call_tool` of one that does not say
    /// so is denied `integrity_failure` while a policy names
    /// [`TOOL_RESULT_ACTION`] (docs/spec/api.md, "Screened tool results").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub screens_results: bool,
}

/// Longest life of a probe's writ.
pub const PROBE_LIFETIME_SECS: u64 = 1;

/// The action of an MCP tool call.
pub const CALL_TOOL_ACTION: &str = "Action::\"call_tool\"";
/// The action an MCP enforcement point asks for on a tool's result before
/// passing it on, when a policy names it (docs/spec/api.md, "Screened tool
/// results").
pub const TOOL_RESULT_ACTION: &str = "Action::\"tool_result\"";

/// A request's confirmation key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolderCnf {
    pub jwk: HolderJwk,
}

impl AuthorizeRequest {
    /// A request for `action` on `resource`, binding `request`, for the
    /// enforcement point `audience`, and nothing else: no context,
    /// environment or scope, a root writ of the default lifetime, not
    /// started, with no credential, delegates or holder key. Callers set
    /// the rest with struct update syntax
    /// (`AuthorizeRequest { scope, ..AuthorizeRequest::new(..) }`).
    pub fn new(
        action: impl Into<String>,
        resource: impl Into<String>,
        request: Value,
        audience: impl Into<String>,
    ) -> AuthorizeRequest {
        AuthorizeRequest {
            action: action.into(),
            resource: resource.into(),
            context: Map::new(),
            request,
            environment: Map::new(),
            scope: Scope::default(),
            audience: audience.into(),
            parent: None,
            lifetime_secs: None,
            start: false,
            credential: false,
            delegates: Vec::new(),
            cnf: None,
            definition: None,
            probe: false,
            screens_results: false,
        }
    }

    /// The plainest request to run a command: action `exec`, resource
    /// `Command::"<argv[0]>"`, the argv as the request, no environment, no
    /// scope (what the demos ask for; `writ exec` binds much more).
    pub fn command(argv: &[&str], audience: &str, lifetime_secs: Option<u64>) -> AuthorizeRequest {
        AuthorizeRequest {
            lifetime_secs,
            ..AuthorizeRequest::new(
                "Action::\"exec\"",
                format!(
                    "Command::{}",
                    serde_json::to_string(argv.first().copied().unwrap_or("")).unwrap_or_default()
                ),
                serde_json::json!({ "argv": argv }),
                audience,
            )
        }
    }
}

/// Context attribute names writ fills itself.
pub const RESERVED_CONTEXT: [&str; 7] = [
    "request",
    "environment",
    "scope",
    "audience",
    "lineage",
    "delegates",
    "identity",
];
/// Most principals one writ may be delegated to.
pub const DELEGATES_MAX: usize = 16;
/// How an execution credential begins: `writx_<jti>_<secret>`. A bearer
/// token that begins so is an execution credential, never a principal's
/// token (those begin `writ_`).
pub const CREDENTIAL_PREFIX: &str = "writx_";
/// Longest entity UID, audience or jti accepted.
pub const NAME_BYTES_MAX: usize = 1024;

/// The authority's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum AuthorizeResponse {
    Allow {
        writ: String,
        log_index: u64,
        jti: String,
        exp: u64,
        /// The execution's credential, when `start` and `credential` were
        /// asked for: shown once, only its hash is stored.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential: Option<String>,
        /// A `tools/call` whose result the enforcement point must have
        /// decided (`Action::"tool_result"`) before the client sees it: some
        /// policy of the active bundle names that action (docs/spec/api.md,
        /// "Screened tool results").
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        screen_result: bool,
    },
    Deny {
        reason: ReasonCode,
        message: String,
        /// The entry recording the denial; absent when the denial could not be
        /// logged (`authority_unavailable`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_index: Option<u64>,
    },
}

impl AuthorizeResponse {
    pub fn is_allow(&self) -> bool {
        matches!(self, AuthorizeResponse::Allow { .. })
    }
    pub fn reason(&self) -> Option<ReasonCode> {
        match self {
            AuthorizeResponse::Allow { .. } => None,
            AuthorizeResponse::Deny { reason, .. } => Some(*reason),
        }
    }
}

/// Input that is not a question at all: refused with 400, nothing logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// Declares a request struct that may ask for the checks of a writ a
/// gateway makes before it runs one: the fields given before `..checks`,
/// then `request`, `environment` and `audience`, then the fields after it,
/// in that (wire) order. Each check, when present, is compared with what
/// the writ binds; left out, it is not checked; `null` is refused (a
/// gateway that meant to send one must not have the check skipped).
macro_rules! checked_request {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$before_meta:meta])* pub $before:ident: $before_ty:ty,)*
            ..checks,
            $($(#[$after_meta:meta])* pub $after:ident: $after_ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$before_meta])* pub $before: $before_ty,)*
            /// The request being executed; compared by its RFC 8785 digest.
            #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
            pub request: Option<Value>,
            /// The re-measured environment facts; compared by digest.
            #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
            pub environment: Option<Map<String, Value>>,
            /// The enforcement point it runs at; compared with the writ's `aud`.
            #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
            pub audience: Option<String>,
            $($(#[$after_meta])* pub $after: $after_ty,)*
        }
    };
}

checked_request! {
    /// `POST /v1/verify`.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct VerifyRequest {
        #[serde(default)]
        pub writ: String,
        ..checks,
        /// A proof of possession of the writ's holder key (docs/spec/holder.md),
        /// required when the writ is holder-bound (`cnf`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pop: Option<String>,
    }
}

/// A field that, when present, must not be `null` (absent is `None`).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(d)? {
        Some(v) => Ok(Some(v)),
        None => Err(serde::de::Error::custom(
            "null: leave the field out to skip this check",
        )),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyResponse {
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The verified claims; present only when `valid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Claims>,
    /// When not valid: what the writ *says*, decoded without trusting it (for
    /// display only), if it could be decoded at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified_claims: Option<Claims>,
}

checked_request! {
    /// `POST /v1/executions/{jti}/start`: optional re-check of what is run.
    /// Each check, when present (never `null`), is checked against the writ
    /// before its nonce is spent, as `POST /v1/verify` does.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct StartRequest {
        /// Left out: the writ the authority issued under this jti is started.
        #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
        pub writ: Option<String>,
        ..checks,
        /// Give the execution a credential for its program (see
        /// [`AuthorizeRequest::credential`]).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub credential: bool,
        /// A proof of possession of the writ's holder key (docs/spec/holder.md),
        /// required when the writ is holder-bound (`cnf`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pop: Option<String>,
    }
}

/// `POST /v1/executions/{jti}/finish`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishRequest {
    #[serde(default)]
    pub exit_status: Option<i64>,
    #[serde(default)]
    pub duration_ms: u64,
    #[serde(default)]
    pub stdout_digest: Option<String>,
    #[serde(default)]
    pub stderr_digest: Option<String>,
    #[serde(default)]
    pub terminated: Option<String>,
    /// How much of the scope the kernel enforced: `full`, `partial` or `none`.
    #[serde(default)]
    pub enforcement: Option<String>,
    /// A proof of possession of the writ's holder key (docs/spec/holder.md),
    /// required when the writ is holder-bound (`cnf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pop: Option<String>,
    /// `false`: answer as soon as the finish is queued for the log, before
    /// its commit (a [`FinishQueued`]), so that the caller's exit waits for
    /// no disk; the loss window is in docs/spec/api.md, "Finishing before
    /// the commit". Absent or `true`: answer once it is durable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable: Option<bool>,
}

/// The answer to a finish sent with `"durable": false`: queued for the
/// log, not yet committed, so it has no log index yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinishQueued {
    pub jti: String,
    /// As in [`ExecutionResponse::revoked`]: decided when the finish was
    /// queued, which fixes its place in the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
    /// Always `false`: the commit had not returned when this was sent.
    pub durable: bool,
}

/// `POST /v1/executions/{jti}/renew`: extend the lease of a running execution.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// Seconds from now (default: the writ's own lifetime; at most 3600, and
    /// never beyond the parent's lease).
    #[serde(default)]
    pub lifetime_secs: Option<u64>,
    /// A proof of possession of the writ's holder key (docs/spec/holder.md),
    /// required when the writ is holder-bound (`cnf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pop: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewResponse {
    pub jti: String,
    /// The new end of the lease, unix seconds.
    pub lease_exp: u64,
    /// The bundle that re-authorized it.
    pub policy: String,
    pub log_index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutionResponse {
    pub jti: String,
    pub log_index: u64,
    /// On a finish: why the writ (or an ancestor, or its principal) was
    /// already revoked when the finish was recorded, if it was. The finish
    /// entry says so too, unless the caller's own `terminated` already
    /// names a revocation (a signal it reports is kept beside the reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
    /// On a start that asked for one: the execution's credential, shown once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// `POST /v1/revocations`: exactly one of `jti` and `principal`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub principal: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/pins`: an administrator approves a new definition of a
/// resource (docs/spec/api.md, "Pinned definitions").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// The resource, a Cedar UID (`Tool::"SERVER/TOOL"`).
    pub resource: String,
    /// `sha256:` of the definition approved, as a `definition_changed`
    /// denial names it.
    pub digest: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinResponse {
    pub resource: String,
    pub digest: String,
    /// The `pin` entry of the approval.
    pub log_index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeResponse {
    /// What was revoked: the writ (every descendant of it is revoked
    /// through it: verification walks a writ's ancestors), or the principal.
    pub revoked: Vec<String>,
    pub log_index: u64,
}

/// `POST /v1/principals`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalRequest {
    pub uid: String,
    #[serde(default)]
    pub admin: bool,
    /// May read the content the log commits to (requests, contexts,
    /// environments, arguments) and the console's views of it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auditor: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrincipalResponse {
    pub uid: String,
    pub admin: bool,
    /// Shown once; only its hash is stored.
    pub token: String,
    pub log_index: u64,
}

/// `POST /v1/keys/retire`: a writ key to stop verifying for good.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRetireRequest {
    pub kid: String,
}

/// `POST /v1/principals/rotate`, `.../disable`, `.../enable`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalUidRequest {
    pub uid: String,
}

/// One principal in `GET /v1/principals` (never its token or its hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrincipalInfo {
    pub uid: String,
    pub admin: bool,
    #[serde(default)]
    pub auditor: bool,
    pub created_ms: u64,
    /// `active`, `disabled` (reversible: `enable`) or `revoked` (for good).
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrincipalList {
    pub principals: Vec<PrincipalInfo>,
}

/// `POST /v1/issuers`: register an external identity issuer whose JWTs
/// authenticate callers as `TYPE::"<claim>"` (docs/spec/identity.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerRequest {
    pub name: String,
    /// The `iss` of its tokens.
    pub issuer: String,
    /// The `aud` its tokens must hold.
    pub audience: String,
    /// Where its keys are fetched (https), or ...
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// ... its key set itself.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// PEM CA certificates trusted for `jwks_url` besides the system's.
    #[serde(default)]
    pub jwks_ca: Option<String>,
    /// Cedar entity type of its principals (default `Agent`).
    #[serde(default)]
    pub principal_type: Option<String>,
    /// The claim that names the principal (default `sub`).
    #[serde(default)]
    pub claim: Option<String>,
    /// The SPIFFE trust domain it speaks for: its tokens' `sub` must be a
    /// SPIFFE ID in it, and only then does policy see `trust_domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
}

/// A registered issuer, as listed (no keys, no CA).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuerInfo {
    pub name: String,
    pub issuer: String,
    pub audience: String,
    /// The JWKS URL, or `sha256:` of the registered key set.
    pub jwks: String,
    pub principal_type: String,
    pub claim: String,
    /// `TYPE::"<claim>"`.
    pub maps_to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuerResponse {
    pub issuer: IssuerInfo,
    pub log_index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuerList {
    pub issuers: Vec<IssuerInfo>,
}

/// `POST /v1/principals/{uid}/disable` and `.../enable`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrincipalChangeResponse {
    pub uid: String,
    /// `disabled` or `enabled`.
    pub status: String,
    pub log_index: u64,
}

/// A node of a lineage tree (`GET /v1/lineage/{jti}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LineageNode {
    pub jti: String,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub depth: u32,
    pub status: String,
    pub log_index: u64,
    pub children: Vec<LineageNode>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LineageResponse {
    /// jtis from the root down to (excluding) the asked-for writ.
    pub ancestors: Vec<String>,
    pub tree: LineageNode,
    /// The tree has more than [`LINEAGE_NODES_MAX`] nodes: the first ones
    /// (depth first) are given.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// Nodes one lineage answer holds at most.
pub const LINEAGE_NODES_MAX: usize = 10_000;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_command_request_holds_only_what_it_names() {
        let r = AuthorizeRequest::command(&["/bin/echo", "hi"], "exec@h", Some(5));
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({
                "action": "Action::\"exec\"",
                "resource": "Command::\"/bin/echo\"",
                "context": {},
                "request": {"argv": ["/bin/echo", "hi"]},
                "environment": {},
                "scope": {"net": false, "read": [], "write": []},
                "audience": "exec@h",
                "parent": null,
                "lifetime_secs": 5
            })
        );
    }
}
