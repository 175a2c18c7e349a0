//! What every handler shares: the server's state, the extractors (the
//! JSON body, the authenticated caller) and the error bodies (`docs/spec/api.md`).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use writ_artifact::{Denial, ReasonCode, WritKey};
use writ_authority::*;
use writ_log::note::NoteVerifier;
use writ_store::StoreRead;

use crate::metrics::Metrics;

/// Persists a freshly generated signing key before it is used.
pub type KeySaver = dyn Fn(&WritKey) -> std::io::Result<()> + Send + Sync;

/// A witness the log asks for cosignatures.
#[derive(Debug, Clone)]
pub struct WitnessTarget {
    /// The witness's submission prefix (`POST {url}/add-checkpoint`).
    pub url: String,
    /// Its cosigner key.
    pub key: NoteVerifier,
}

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
    pub witnesses: Vec<WitnessTarget>,
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
pub type KeyActivated = dyn Fn(&str) -> std::io::Result<()> + Send + Sync;

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

impl ServerState {
    /// The store, to read: handlers that only read are given this view.
    pub(crate) fn reads(&self) -> Arc<dyn StoreRead> {
        self.authority.reads()
    }

    /// [`ServerState::reads`], to move to a reader thread.
    pub(crate) fn reads_owned(&self) -> Arc<dyn StoreRead> {
        self.authority.reads()
    }

    /// The console over this server's authority and log.
    pub(crate) fn console(&self) -> writ_console::Console {
        writ_console::Console::new(
            self.authority.clone(),
            self.log.clone(),
            self.witnesses.iter().map(|w| w.key.clone()).collect(),
            self.readers.clone(),
        )
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
            if matches!(e, writ_artifact::canonical::CanonicalError::DuplicateKey(_)) {
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

pub(crate) fn deny_response(d: &Denial, log_index: Option<u64>) -> Response {
    let body = AuthorizeResponse::Deny {
        reason: d.reason,
        message: d.message.clone(),
        log_index,
    };
    (denial_status(d.reason), axum::Json(body)).into_response()
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

/// A call's result as its JSON (200), or its error body.
pub(crate) fn json_or_error<T: Serialize>(r: Result<T, CallError>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => CallErrorResponse(e).into_response(),
    }
}

/// A call that made something: its JSON with 201 Created, or its error body.
pub(crate) fn created_or_error<T: Serialize>(r: Result<T, CallError>) -> Response {
    match r {
        Ok(v) => (StatusCode::CREATED, axum::Json(v)).into_response(),
        Err(e) => CallErrorResponse(e).into_response(),
    }
}
