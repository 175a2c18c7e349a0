use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt as _;
use writ_artifact::{Denial, ReasonCode, WritKey};
use writ_authority::*;
use writ_policy::SignedBundle;

use crate::metrics::Metrics;

/// Largest request body accepted (bundles are the largest bodies).
pub const BODY_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Largest body of a decision request.
pub const DECISION_BODY_BYTES_MAX: usize = 256 * 1024;
/// Most entries one `GET /v1/log/entries` returns.
pub const ENTRIES_PAGE_MAX: u64 = 1000;
/// A comment line on every event stream this often, so subscribers can tell
/// a quiet stream from a dead connection.
pub const STREAM_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(5);

/// Persists a freshly generated signing key before it is used.
pub type KeySaver = dyn Fn(&WritKey) -> Result<(), String> + Send + Sync;

/// What every handler shares.
pub struct ServerState {
    pub authority: Arc<Authority>,
    pub metrics: Metrics,
    /// Persists a new writ key on rotation, before it is used; `None`
    /// disables rotation over HTTP.
    pub key_saver: Option<Box<KeySaver>>,
    /// Told the kid of the new key once the rotation committed.
    pub key_activated: Option<Box<KeyActivated>>,
    /// Signs checkpoints; `None` when the server has no log key.
    pub log: Option<Arc<writ_authority::LogPublisher>>,
    /// Witnesses asked to cosign each checkpoint.
    pub witnesses: Vec<crate::log::WitnessTarget>,
    /// The size each witness last cosigned (by URL).
    pub witness_sizes: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// HTTP client for witnesses.
    pub http: reqwest::Client,
    /// This node's name in `GET /v1/mesh` (host and listening address).
    pub node_id: String,
    /// Where this node answers (reported to the mesh).
    pub url: String,
    /// When this node started (unix ms).
    pub started_ms: u64,
    /// Whether this node held the checkpoint leader lock at its last try.
    pub leader: std::sync::atomic::AtomicBool,
    /// Per-principal rate limits on the decision routes.
    pub rate: crate::rate::Limiter,
    /// Where large or slow reads run: low-priority threads, bounded queue.
    pub readers: Arc<writ_console::readers::Readers>,
    /// Event streams each principal holds open, and how many it may.
    pub streams: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    pub streams_per_principal: usize,
    /// How local callers on the Unix socket map to principals
    /// (`peercred.json`); none: they need a token.
    pub peercred: Option<Arc<writ_identity::peercred::Rules>>,
}

/// Notes a committed rotation (e.g. the data dir's `keys/current`).
pub type KeyActivated = dyn Fn(&str) -> Result<(), String> + Send + Sync;

impl ServerState {
    pub fn new(authority: Arc<Authority>) -> ServerState {
        ServerState {
            metrics: Metrics::new(),
            key_saver: None,
            key_activated: None,
            log: None,
            witnesses: Vec::new(),
            witness_sizes: Default::default(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            node_id: "local".into(),
            url: String::new(),
            started_ms: authority.clock().now_unix_ms(),
            leader: std::sync::atomic::AtomicBool::new(false),
            streams: Default::default(),
            streams_per_principal: crate::listen::MAX_CONNECTIONS_DEFAULT / 4,
            peercred: None,
            readers: writ_console::readers::Readers::new(writ_console::readers::default_threads()),
            rate: crate::rate::Limiter::new(
                crate::rate::RATE_LIMIT_DEFAULT,
                2 * crate::rate::RATE_LIMIT_DEFAULT,
            ),
            authority,
        }
    }
}

pub(crate) type Shared = Arc<ServerState>;

/// The JSON body of every error.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonCode>,
    pub message: String,
}

pub(crate) fn error(
    status: StatusCode,
    kind: &str,
    reason: Option<ReasonCode>,
    message: impl Into<String>,
) -> Response {
    (
        status,
        axum::Json(ErrorBody {
            error: kind.into(),
            reason,
            message: message.into(),
        }),
    )
        .into_response()
}

pub(crate) fn denial_status(r: ReasonCode) -> StatusCode {
    match r {
        ReasonCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ReasonCode::AuthorityUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::FORBIDDEN,
    }
}

pub(crate) struct CallErrorResponse(pub(crate) CallError);

impl IntoResponse for CallErrorResponse {
    fn into_response(self) -> Response {
        match self.0 {
            CallError::BadRequest(m) => error(StatusCode::BAD_REQUEST, "bad_request", None, m),
            CallError::Forbidden(m) => error(StatusCode::FORBIDDEN, "forbidden", None, m),
            CallError::NotFound(m) => error(StatusCode::NOT_FOUND, "not_found", None, m),
            CallError::Conflict(m) => error(StatusCode::CONFLICT, "conflict", None, m),
            CallError::Denied(d) => {
                error(denial_status(d.reason), "denied", Some(d.reason), d.message)
            }
            CallError::Unavailable(m) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                Some(ReasonCode::AuthorityUnavailable),
                m,
            ),
        }
    }
}

/// JSON body extractor whose rejections are our error body: 413 over the
/// limit, 400 naming the field for malformed JSON or a key named twice at any
/// depth (parsers disagree on which one wins), 415 without JSON content type.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        if !json_content_type(req.headers()) {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                None,
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    None,
                    "request body is larger than this route accepts",
                ))
            }
            Err(rej) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    None,
                    rej.body_text(),
                ))
            }
        };
        if let Err(e) = writ_artifact::canonical::check_no_duplicate_keys(&bytes) {
            // Malformed JSON is reported by the typed parse below (it names
            // the field); only a duplicate key is reported here.
            if e.starts_with("duplicate key") {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    None,
                    format!("Failed to deserialize the JSON body: {e}"),
                ));
            }
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

/// `application/json` or `application/<anything>+json`, parameters allowed
/// (what axum's own `Json` accepts).
fn json_content_type(h: &HeaderMap) -> bool {
    let Some(ct) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn json_rejection(rej: JsonRejection) -> Response {
    let status = rej.status();
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "bad_request",
    };
    let msg = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            "request body is larger than this route accepts".to_string()
        }
        _ => rej.body_text(),
    };
    error(
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        },
        kind,
        None,
        msg,
    )
}

/// The authenticated caller: the principal the access guard
/// (`access::guard`) authenticated for this route and put in the request's
/// extensions. The guard runs before any body is read.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| {
                error(
                    StatusCode::UNAUTHORIZED,
                    "denied",
                    Some(ReasonCode::Unauthenticated),
                    "a bearer token is required",
                )
            })
    }
}

pub(crate) fn bearer(h: &HeaderMap) -> Option<&str> {
    // The scheme name is case-insensitive (RFC 9110 section 11.1).
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub fn router(state: Shared) -> Router {
    // The console reads what the public log routes reveal; it decides nothing.
    let console = writ_console::router(Arc::new(writ_console::Console::new(
        state.authority.clone(),
        state.log.clone(),
        state.witnesses.iter().map(|w| w.key.clone()).collect(),
        state.readers.clone(),
    )));
    let decisions = Router::new()
        .route("/v1/authorize", post(authorize))
        .route(
            "/access/v1/evaluation",
            post(authzen_evaluation).layer(axum::middleware::from_fn(echo_request_id)),
        )
        .route("/v1/verify", post(verify))
        .route("/v1/executions/{jti}/start", post(start))
        .route("/v1/executions/{jti}/renew", post(renew))
        .route("/v1/executions/{jti}/finish", post(finish))
        .route("/v1/revocations", post(revoke).get(list_revocations))
        .route("/v1/principals", post(add_principal).get(list_principals))
        .route("/v1/principals/rotate", post(rotate_principal))
        .route("/v1/principals/disable", post(disable_principal))
        .route("/v1/principals/enable", post(enable_principal))
        .route(
            "/v1/issuers",
            post(crate::issuers::add).get(crate::issuers::list),
        )
        .route("/v1/issuers/remove", post(crate::issuers::remove))
        .layer(DefaultBodyLimit::max(DECISION_BODY_BYTES_MAX));
    Router::new()
        .merge(decisions)
        .route("/v1/revocations/stream", get(revocation_stream))
        .route("/v1/policies", get(list_policies).post(upload_policy))
        .route("/v1/keys/rotate", post(rotate_key))
        .route("/v1/keys/retire", post(retire_key))
        .route("/v1/lineage/{jti}", get(lineage))
        .route("/v1/log/entries", get(crate::log::entries))
        .route("/v1/log/contents", get(crate::log::contents))
        .route("/v1/log/erase", post(crate::log::erase))
        .route(
            "/v1/log/checkpoint",
            get(crate::log::get_checkpoint).post(crate::log::post_checkpoint),
        )
        .route("/v1/log/key", get(crate::log::get_key))
        .route("/v1/log/checkpoints", get(crate::log::list_checkpoints))
        .route("/v1/log/bundles/{hash}", get(crate::log::get_bundle))
        .route("/v1/log/proof/inclusion", get(crate::log::inclusion))
        .route("/v1/log/proof/consistency", get(crate::log::consistency))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .route("/v1/mesh", get(mesh))
        .route("/", get(index))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                None,
                "no such route; see /openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state.clone())
        .merge(console)
        // The Error body OpenAPI promises, instead of an empty 405.
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                None,
                "this route does not take that method; see /openapi.json",
            )
        })
        // Every route's access class, checked before its handler (and its
        // body extractor) runs.
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::access::guard,
        ))
}

async fn authorize(
    State(s): State<Shared>,
    Caller(who): Caller,
    body: Result<Json<AuthorizeRequest>, Response>,
) -> Response {
    let t0 = Instant::now();
    let Json(req) = match body {
        Ok(b) => b,
        Err(r) => return r,
    };
    match s.authority.authorize(&who, req).await {
        Ok(resp) => {
            let reason = resp.reason().map_or("", ReasonCode::as_str);
            s.metrics.record(
                if resp.is_allow() { "allow" } else { "deny" },
                reason,
                t0.elapsed().as_secs_f64(),
            );
            let status = match &resp {
                AuthorizeResponse::Allow { .. } => StatusCode::OK,
                AuthorizeResponse::Deny { reason, .. } => denial_status(*reason),
            };
            (status, axum::Json(resp)).into_response()
        }
        Err(BadRequest(m)) => error(StatusCode::BAD_REQUEST, "bad_request", None, m),
    }
}

pub(crate) fn deny_response(d: &Denial, log_index: Option<u64>) -> Response {
    let body = AuthorizeResponse::Deny {
        reason: d.reason,
        message: d.message.clone(),
        log_index,
    };
    (denial_status(d.reason), axum::Json(body)).into_response()
}

/// OpenID AuthZEN 1.0 access evaluation request.
#[derive(Debug, Deserialize)]
struct AuthzenRequest {
    #[serde(default)]
    subject: Option<AuthzenEntity>,
    action: AuthzenAction,
    resource: AuthzenEntity,
    #[serde(default)]
    context: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize, Serialize)]
struct AuthzenEntity {
    #[serde(rename = "type")]
    type_: String,
    id: String,
    #[serde(default)]
    properties: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize, Serialize)]
struct AuthzenAction {
    name: String,
    #[serde(default)]
    properties: serde_json::Map<String, Value>,
}

/// AuthZEN 1.0 (Request Identification): the identifier a caller sends in
/// `X-Request-ID` comes back in the same header of the response, whatever
/// the response is.
async fn echo_request_id(req: Request, next: axum::middleware::Next) -> Response {
    const X_REQUEST_ID: &str = "x-request-id";
    let id = req.headers().get(X_REQUEST_ID).cloned();
    let mut resp = next.run(req).await;
    if let Some(id) = id {
        resp.headers_mut().insert(X_REQUEST_ID, id);
    }
    resp
}

fn cedar_uid(type_: &str, id: &str) -> String {
    format!("{type_}::{}", serde_json::to_string(id).unwrap_or_default())
}

async fn authzen_evaluation(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(req): Json<AuthzenRequest>,
) -> Response {
    let t0 = Instant::now();
    let deny = |code: ReasonCode, message: String, log_index: Option<u64>| {
        axum::Json(json!({"decision": false, "context": {"reason": code, "message": message, "log_index": log_index}}))
            .into_response()
    };
    if let Some(sub) = &req.subject {
        let uid = cedar_uid(&sub.type_, &sub.id);
        if uid != who.uid {
            return deny(
                ReasonCode::Unauthenticated,
                format!(
                    "subject {uid} is not the authenticated principal {}",
                    who.uid
                ),
                None,
            );
        }
    }
    let request = json!({"action": req.action, "resource": req.resource, "context": req.context});
    // A reserved name in the context is refused (400, naming it) by the
    // authority, as on /v1/authorize: writ fills those attributes itself, and
    // dropping the caller's silently would hide that from them.
    let areq = AuthorizeRequest {
        action: cedar_uid("Action", &req.action.name),
        resource: cedar_uid(&req.resource.type_, &req.resource.id),
        context: req.context.clone(),
        request,
        environment: Default::default(),
        scope: Default::default(),
        audience: "authzen".into(),
        parent: None,
        lifetime_secs: None,
        start: false,
        credential: false,
        delegates: Vec::new(),
        cnf: None,
    };
    match s.authority.authorize(&who, areq).await {
        Ok(AuthorizeResponse::Allow {
            writ,
            log_index,
            jti,
            ..
        }) => {
            s.metrics.record("allow", "", t0.elapsed().as_secs_f64());
            axum::Json(json!({"decision": true, "context": {"log_index": log_index, "jti": jti, "writ": writ}})).into_response()
        }
        Ok(AuthorizeResponse::Deny {
            reason,
            message,
            log_index,
        }) => {
            s.metrics
                .record("deny", reason.as_str(), t0.elapsed().as_secs_f64());
            deny(reason, message, log_index)
        }
        Err(BadRequest(m)) => error(StatusCode::BAD_REQUEST, "bad_request", None, m),
    }
}

async fn verify(State(s): State<Shared>, Json(req): Json<VerifyRequest>) -> Response {
    let resp = match s.authority.verify(&req) {
        Ok(v) => VerifyResponse {
            valid: true,
            reason: None,
            message: None,
            claims: Some(v.claims().clone()),
            unverified_claims: None,
        },
        Err(d) => VerifyResponse {
            valid: false,
            reason: Some(d.reason),
            message: Some(d.message),
            claims: None,
            unverified_claims: writ_artifact::decode_unverified(&req.writ)
                .ok()
                .map(|(_, c)| c),
        },
    };
    axum::Json(resp).into_response()
}

/// A JSON body that may be left out (empty: the default), else parsed as
/// [`Json`] does: no duplicate keys, errors naming the field.
fn optional_body<T: DeserializeOwned + Default>(
    body: &axum::body::Bytes,
    what: &str,
) -> Result<T, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    writ_artifact::canonical::check_no_duplicate_keys(body)
        .and_then(|()| {
            axum::Json::from_bytes(body)
                .map(|axum::Json(r)| r)
                .map_err(|e| e.body_text())
        })
        .map_err(|e| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                None,
                format!("invalid {what} body: {e}"),
            ))
        })
}

async fn start(
    State(s): State<Shared>,
    Caller(who): Caller,
    Path(jti): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    // The body is optional: an empty one starts by jti alone.
    let req: StartRequest = match optional_body(&body, "start") {
        Ok(r) => r,
        Err(e) => return *e,
    };
    match s.authority.start(&who, &jti, &req).await {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => CallErrorResponse(e).into_response(),
    }
}

async fn renew(
    State(s): State<Shared>,
    Caller(who): Caller,
    Path(jti): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    // The body is optional: an empty one renews for the writ's own lifetime.
    let req: RenewRequest = match optional_body(&body, "renew") {
        Ok(r) => r,
        Err(e) => return *e,
    };
    match s.authority.renew(&who, &jti, &req).await {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => CallErrorResponse(e).into_response(),
    }
}

async fn finish(
    State(s): State<Shared>,
    Caller(who): Caller,
    Path(jti): Path<String>,
    Json(req): Json<FinishRequest>,
) -> Response {
    match s.authority.finish(&who, &jti, &req).await {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => CallErrorResponse(e).into_response(),
    }
}

async fn revoke(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(req): Json<RevokeRequest>,
) -> Response {
    match s.authority.revoke(&who, &req).await {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => CallErrorResponse(e).into_response(),
    }
}

/// Revocations one page of `GET /v1/revocations` holds at most (each is
/// under 2 KiB: a page stays under 4 MiB).
pub const REVOCATIONS_PAGE_MAX: usize = 1000;

#[derive(serde::Deserialize)]
struct RevocationsQuery {
    /// The position in the list to start at (default 0).
    from: Option<usize>,
}

/// `GET /v1/revocations?from=N`: revocations in the order they were made,
/// [`REVOCATIONS_PAGE_MAX`] a page; `next` is where the following page
/// starts (`null` after the last).
async fn list_revocations(
    State(s): State<Shared>,
    Caller(_): Caller,
    q: Result<Query<RevocationsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
            "from must be a non-negative integer",
        );
    };
    let from = q.from.unwrap_or(0);
    let store = s.authority.store().clone();
    let page = s
        .readers
        .run(move || -> Result<_, writ_store::StoreError> {
            let all = store.revocations()?;
            let total = all.len();
            let page: Vec<_> = all
                .into_iter()
                .skip(from)
                .take(REVOCATIONS_PAGE_MAX)
                .collect();
            let next = (from + page.len() < total).then_some(from + page.len());
            Ok((page, next, total))
        })
        .await;
    match page {
        Ok(Ok((list, next, total))) => {
            axum::Json(json!({"revocations": list, "next": next, "total": total})).into_response()
        }
        Ok(Err(e)) => CallErrorResponse(e.into()).into_response(),
        Err(b) => busy(b),
    }
}

#[derive(serde::Deserialize)]
struct StreamQuery {
    /// A writ the subscriber runs under: if it (or an ancestor, or a
    /// principal on its chain) is already revoked when the stream opens, the
    /// first event says so, closing the gap between start and subscription.
    watch: Option<String>,
}

async fn revocation_stream(
    State(s): State<Shared>,
    Caller(_): Caller,
    Query(q): Query<StreamQuery>,
) -> Response {
    // Subscribe first, then look: a revocation is either seen now or sent later.
    let rx = s.authority.subscribe();
    let already = q
        .watch
        .as_deref()
        .and_then(|jti| s.authority.revoked_status(jti))
        .map(|ev| {
            Ok::<_, Infallible>(
                SseEvent::default()
                    .event("revocation")
                    .data(serde_json::to_string(&ev).unwrap_or_default()),
            )
        });
    // A revocation names its target only (a writ's descendants are revoked
    // through it): the stream of a watched writ names the writ in every
    // revocation that reaches it, through an ancestor or a principal on its
    // chain, so that its runner stops.
    // A chain that cannot be read fails the stream (the runner reconnects,
    // and renews meanwhile) rather than leaving it deaf to its ancestors.
    let chain = match q
        .watch
        .as_deref()
        .map(|jti| (jti, s.authority.chain_of(jti)))
    {
        None => None,
        Some((jti, Ok(c))) => c.map(|(jtis, principals)| (jti.to_owned(), jtis, principals)),
        Some((jti, Err(e))) => {
            tracing::warn!(jti, error = %e, "the lineage of a watched writ could not be read");
            return CallErrorResponse(e).into_response();
        }
    };
    let live = BroadcastStream::new(rx).filter_map(move |ev| match ev {
        Ok(Event::Revocation {
            time_ms,
            target,
            kind,
            mut jtis,
            reason,
            log_index,
        }) => {
            if let Some((watch, chain_jtis, chain_principals)) = &chain {
                let reaches = match kind.as_str() {
                    "writ" => chain_jtis.contains(&target),
                    _ => chain_principals.contains(&target),
                };
                if reaches && !jtis.contains(watch) {
                    jtis.push(watch.clone());
                }
            }
            let ev = Event::Revocation {
                time_ms,
                target,
                kind,
                jtis,
                reason,
                log_index,
            };
            Some(Ok(SseEvent::default()
                .event("revocation")
                .data(serde_json::to_string(&ev).unwrap_or_default())))
        }
        Ok(_) => None,
        // A lagging subscriber must resynchronize: tell it rather than skip silently.
        Err(_) => Some(Ok(SseEvent::default().event("lagged").data("{}"))),
    });
    let stream = tokio_stream::iter(already).chain(live);
    Sse::new(stream)
        .keep_alive(KeepAlive::default().interval(STREAM_KEEP_ALIVE))
        .into_response()
}

async fn add_principal(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(req): Json<PrincipalRequest>,
) -> Response {
    match s.authority.add_principal(&who, &req).await {
        Ok(r) => (StatusCode::CREATED, axum::Json(r)).into_response(),
        Err(e) => CallErrorResponse(e).into_response(),
    }
}

async fn list_principals(State(s): State<Shared>, Caller(who): Caller) -> Response {
    match s.authority.list_principals(&who) {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => CallErrorResponse(e).into_response(),
    }
}

async fn rotate_principal(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(req): Json<PrincipalUidRequest>,
) -> Response {
    match s.authority.rotate_principal(&who, &req.uid).await {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => CallErrorResponse(e).into_response(),
    }
}

async fn disable_principal(
    s: State<Shared>,
    who: Caller,
    req: Json<PrincipalUidRequest>,
) -> Response {
    set_disabled(s, who, req, true).await
}

async fn enable_principal(
    s: State<Shared>,
    who: Caller,
    req: Json<PrincipalUidRequest>,
) -> Response {
    set_disabled(s, who, req, false).await
}

async fn set_disabled(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(req): Json<PrincipalUidRequest>,
    disabled: bool,
) -> Response {
    match s
        .authority
        .set_principal_disabled(&who, &req.uid, disabled)
        .await
    {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => CallErrorResponse(e).into_response(),
    }
}

async fn list_policies(State(s): State<Shared>, Caller(_): Caller) -> Response {
    let store = s.authority.store();
    let activations = match store.activations() {
        Ok(a) => a,
        Err(e) => return CallErrorResponse(e.into()).into_response(),
    };
    let bundle = s.authority.active_bundle();
    axum::Json(json!({
        "active": bundle.hash(),
        "policy_ids": bundle.policy_ids(),
        "source": bundle.source(),
        "activations": activations,
    }))
    .into_response()
}

async fn upload_policy(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(bundle): Json<SignedBundle>,
) -> Response {
    let hash = bundle.hash.clone();
    match s.authority.activate(&who, bundle).await {
        Ok(log_index) => {
            axum::Json(json!({"active": hash, "log_index": log_index})).into_response()
        }
        Err(e) => CallErrorResponse(e).into_response(),
    }
}

async fn rotate_key(State(s): State<Shared>, Caller(who): Caller) -> Response {
    if !who.admin {
        return CallErrorResponse(CallError::Forbidden(format!(
            "{} is not an administrator",
            who.uid
        )))
        .into_response();
    }
    let Some(save) = &s.key_saver else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported",
            None,
            "this server cannot store new keys",
        );
    };
    let key = match WritKey::generate(&writ_artifact::OsEntropy) {
        Ok(k) => k,
        Err(e) => return CallErrorResponse(CallError::Unavailable(e.to_string())).into_response(),
    };
    if let Err(e) = save(&key) {
        return CallErrorResponse(CallError::Unavailable(e)).into_response();
    }
    let kid = key.kid().to_owned();
    match s.authority.rotate_key(&who, key).await {
        Ok(log_index) => {
            if let Some(note) = &s.key_activated {
                if let Err(e) = note(&kid) {
                    tracing::warn!(error = %e, "rotation committed but keys/current could not be updated");
                }
            }
            axum::Json(json!({"kid": kid, "log_index": log_index})).into_response()
        }
        Err(e) => CallErrorResponse(e).into_response(),
    }
}

async fn retire_key(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(req): Json<KeyRetireRequest>,
) -> Response {
    match s.authority.retire_key(&who, &req.kid).await {
        Ok(log_index) => {
            axum::Json(json!({"kid": req.kid, "status": "retired", "log_index": log_index}))
                .into_response()
        }
        Err(e) => CallErrorResponse(e).into_response(),
    }
}

async fn lineage(State(s): State<Shared>, Caller(_): Caller, Path(jti): Path<String>) -> Response {
    let authority = s.authority.clone();
    match s.readers.run(move || authority.lineage(&jti)).await {
        Ok(Ok(r)) => axum::Json(r).into_response(),
        Ok(Err(e)) => CallErrorResponse(e).into_response(),
        Err(b) => busy(b),
    }
}

/// 503 with `Retry-After`: the reader queue is full.
pub(crate) fn busy(b: writ_console::readers::Busy) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "busy", None, b.to_string());
    r.headers_mut().insert(
        header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    r
}

async fn jwks(State(s): State<Shared>) -> Response {
    (
        [(header::CACHE_CONTROL, "max-age=60")],
        axum::Json(s.authority.jwks()),
    )
        .into_response()
}

async fn metrics(State(s): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(s.authority.log_size()),
    )
        .into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(s): State<Shared>) -> Response {
    if let Some(d) = s.authority.stale() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"ready": false, "reason": d.reason, "message": d.message})),
        )
            .into_response();
    }
    // Off the async workers: on a shared store this is a query.
    let store = s.authority.store().clone();
    let size = tokio::task::spawn_blocking(move || store.log_size())
        .await
        .unwrap_or_else(|e| Err(writ_store::StoreError::Unavailable(e.to_string())));
    match size {
        Ok(n) => {
            axum::Json(json!({"ready": true, "log_size": n, "policy": s.authority.active_policy()}))
                .into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"ready": false, "message": e.to_string()})),
        )
            .into_response(),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The OpenAPI document; a test checks every route of [`router`] is in it.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /v1/mesh`: the nodes of the governance mesh. This node first, as it
/// sees itself now (policy hash and whether it is the store's latest
/// activation, revocation high-water mark, log size, latest checkpoint,
/// freshness, leadership); then, on a shared store, every other node as it
/// last reported itself (heartbeat), with its lag behind the log.
async fn mesh(State(s): State<Shared>) -> Response {
    let console = writ_console::Console::new(
        s.authority.clone(),
        s.log.clone(),
        s.witnesses.iter().map(|w| w.key.clone()).collect(),
        s.readers.clone(),
    );
    let shared = s.authority.store().shared();
    let leader = !shared || s.leader.load(std::sync::atomic::Ordering::Relaxed);
    let state = s.clone();
    let out = s
        .readers
        .run(move || {
            let mut me = writ_console::node_status(&console, &state.node_id)?;
            me["url"] = json!(state.url);
            me["leader"] = json!(leader);
            me["fresh"] = json!(state.authority.stale().is_none());
            me["state_seq"] = json!(state.authority.state_seq());
            me["lag"] = json!(0);
            // One log: the checkpoint and the latest activation are the mesh's.
            let shared_fields = [
                "policy_activated_ms",
                "checkpoint_size",
                "checkpoint_time_ms",
                "checkpoint_age_ms",
                "now_ms",
            ]
            .map(|k| (k, me[k].clone()));
            let mut nodes = vec![me];
            if shared {
                let store = state.authority.store();
                let size = store.log_size().map_err(|e| e.to_string())?;
                let now = state.authority.clock().now_unix_ms();
                let activations = store.activations().map_err(|e| e.to_string())?;
                let latest_policy = activations.last().map(|a| a.hash.as_str());
                let others = store.mesh().map_or(Ok(Vec::new()), |m| m.mesh_nodes());
                for n in others.map_err(|e| e.to_string())? {
                    if n.id == state.node_id {
                        continue;
                    }
                    let age = now.saturating_sub(n.seen_ms);
                    let mut row = json!({
                        "id": n.id,
                        "self": false,
                        "url": n.url,
                        "policy": n.policy,
                        "revocation_hwm": n.revocations,
                        "log_size": n.log_size,
                        "lag": size.saturating_sub(n.log_size),
                        "state_seq": n.state_seq,
                        "leader": n.leader && age <= MESH_NODE_LIVE_MS,
                        "seen_ms": n.seen_ms,
                        "seen_age_ms": age,
                        "alive": age <= MESH_NODE_LIVE_MS,
                        "started_ms": n.started_ms,
                        "policy_fresh": latest_policy == Some(n.policy.as_str()),
                    });
                    for (k, v) in &shared_fields {
                        row[*k] = v.clone();
                    }
                    nodes.push(row);
                }
            }
            Ok::<_, String>(nodes)
        })
        .await;
    match out {
        Ok(Ok(nodes)) => axum::Json(json!({"shared": shared, "nodes": nodes})).into_response(),
        Ok(Err(e)) => CallErrorResponse(CallError::Unavailable(e)).into_response(),
        Err(e) => CallErrorResponse(CallError::Unavailable(e.to_string())).into_response(),
    }
}

/// A node whose last heartbeat is older than this is shown as not alive.
pub const MESH_NODE_LIVE_MS: u64 = 3_000;
/// How often a node reports itself to a shared store.
pub const HEARTBEAT_MS: u64 = 1_000;

/// Report this node to a shared store every [`HEARTBEAT_MS`] (for the
/// other nodes' `GET /v1/mesh`). Returns at once for a store of one node.
pub async fn run_heartbeat(s: Shared) {
    if !s.authority.store().shared() {
        return;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(HEARTBEAT_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let a = &s.authority;
        let rec = writ_store::NodeRecord {
            id: s.node_id.clone(),
            url: s.url.clone(),
            started_ms: s.started_ms,
            seen_ms: a.clock().now_unix_ms(),
            policy: a.active_policy(),
            revocations: a.revocation_count(),
            log_size: a.log_size(),
            state_seq: a.state_seq(),
            leader: s.leader.load(std::sync::atomic::Ordering::Relaxed),
        };
        let store = a.store().clone();
        let beat = move || store.mesh().map_or(Ok(()), |m| m.heartbeat(&rec));
        match tokio::task::spawn_blocking(beat).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "heartbeat not recorded"),
            Err(_) => return,
        }
    }
}

/// `GET /`: the console's front page (the governance console).
async fn index(State(s): State<Shared>) -> Response {
    writ_console::index(&s.authority)
}
