//! The decision routes: `POST /v1/authorize`, AuthZEN's access
//! evaluation, `POST /v1/verify`, and starting, renewing and finishing
//! executions (`docs/spec/api.md`).

use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use writ_artifact::ReasonCode;
use writ_authority::*;

use crate::state::{denial_status, error, json_or_error, Caller, Json, Shared};
pub(crate) async fn authorize(
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

/// OpenID AuthZEN 1.0 access evaluation request.
#[derive(Debug, Deserialize)]
pub(crate) struct AuthzenRequest {
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
pub(crate) async fn echo_request_id(req: Request, next: axum::middleware::Next) -> Response {
    const X_REQUEST_ID: &str = "x-request-id";
    let id = req.headers().get(X_REQUEST_ID).cloned();
    let mut resp = next.run(req).await;
    if let Some(id) = id {
        resp.headers_mut().insert(X_REQUEST_ID, id);
    }
    resp
}

pub(crate) fn cedar_uid(type_: &str, id: &str) -> String {
    format!("{type_}::{}", serde_json::to_string(id).unwrap_or_default())
}

pub(crate) async fn authzen_evaluation(
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
        context: req.context.clone(),
        ..AuthorizeRequest::new(
            cedar_uid("Action", &req.action.name),
            cedar_uid(&req.resource.type_, &req.resource.id),
            request,
            "authzen",
        )
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

pub(crate) async fn verify(State(s): State<Shared>, Json(req): Json<VerifyRequest>) -> Response {
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
pub(crate) fn optional_body<T: DeserializeOwned + Default>(
    body: &axum::body::Bytes,
    what: &str,
) -> Result<T, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    writ_artifact::canonical::check_no_duplicate_keys(body)
        .map_err(|e| e.to_string())
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

pub(crate) async fn start(
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
    json_or_error(s.authority.start(&who, &jti, &req).await)
}

pub(crate) async fn renew(
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
    json_or_error(s.authority.renew(&who, &jti, &req).await)
}

pub(crate) async fn finish(
    State(s): State<Shared>,
    Caller(who): Caller,
    Path(jti): Path<String>,
    Json(req): Json<FinishRequest>,
) -> Response {
    if req.durable != Some(false) {
        return json_or_error(s.authority.finish(&who, &jti, &req).await);
    }
    // Answered once queued; the commit is waited for on a task of its own
    // (docs/spec/api.md, "Finishing before the commit").
    match s.authority.finish_queued(&who, &jti, &req).await {
        Ok((answer, pending)) => {
            let authority = s.authority.clone();
            tokio::spawn(async move { pending.settle(&authority).await });
            axum::Json(answer).into_response()
        }
        Err(e) => json_or_error::<FinishQueued>(Err(e)),
    }
}
