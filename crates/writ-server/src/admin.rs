//! Administration: principals, policy bundles and writ signing keys
//! (`docs/spec/api.md`).

use writ_policy::SignedBundle;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use writ_artifact::WritKey;
use writ_authority::*;

use crate::state::{
    created_or_error, error, json_or_error, CallErrorResponse, Caller, Json, Shared,
};
pub(crate) async fn add_principal(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(req): Json<PrincipalRequest>,
) -> Response {
    created_or_error(s.authority.add_principal(&who, &req).await)
}

pub(crate) async fn list_principals(State(s): State<Shared>, Caller(who): Caller) -> Response {
    json_or_error(s.authority.list_principals(&who))
}

pub(crate) async fn rotate_principal(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(req): Json<PrincipalUidRequest>,
) -> Response {
    json_or_error(s.authority.rotate_principal(&who, &req.uid).await)
}

pub(crate) async fn disable_principal(
    s: State<Shared>,
    who: Caller,
    req: Json<PrincipalUidRequest>,
) -> Response {
    set_disabled(s, who, req, true).await
}

pub(crate) async fn enable_principal(
    s: State<Shared>,
    who: Caller,
    req: Json<PrincipalUidRequest>,
) -> Response {
    set_disabled(s, who, req, false).await
}

pub(crate) async fn set_disabled(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(req): Json<PrincipalUidRequest>,
    disabled: bool,
) -> Response {
    json_or_error(
        s.authority
            .set_principal_disabled(&who, &req.uid, disabled)
            .await,
    )
}

pub(crate) async fn list_policies(State(s): State<Shared>, Caller(_): Caller) -> Response {
    match writ_console::policy_listing(&s.authority, None) {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => CallErrorResponse(e.into()).into_response(),
    }
}

pub(crate) async fn upload_policy(
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

pub(crate) async fn rotate_key(State(s): State<Shared>, Caller(who): Caller) -> Response {
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
        return CallErrorResponse(CallError::Unavailable(e.to_string())).into_response();
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

pub(crate) async fn retire_key(
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

/// `POST /v1/pins`: approve a new definition of a resource (admin).
pub(crate) async fn approve_definition(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(req): Json<PinRequest>,
) -> Response {
    json_or_error(s.authority.approve_definition(&who, &req).await)
}

/// `GET /v1/pins`: every pinned definition (auditor).
pub(crate) async fn list_pins(State(s): State<Shared>, Caller(_): Caller) -> Response {
    let store = s.reads_owned();
    match s.readers.run(move || store.pins()).await {
        Ok(Ok(pins)) => axum::Json(json!({ "pins": pins })).into_response(),
        Ok(Err(e)) => CallErrorResponse(e.into()).into_response(),
        Err(b) => crate::state::busy(b),
    }
}
