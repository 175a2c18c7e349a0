//! `/v1/issuers`: the external identity issuers whose JWTs authenticate
//! callers (docs/spec/identity.md). Administrators only (`access::TABLE`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use writ_authority::IssuerRequest;

use crate::routes::{CallErrorResponse, Caller, Json, Shared};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssuerName {
    name: String,
}

pub(crate) async fn add(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(req): Json<IssuerRequest>,
) -> Response {
    match s.authority.add_issuer(&who, &req).await {
        Ok(r) => (StatusCode::CREATED, axum::Json(r)).into_response(),
        Err(e) => CallErrorResponse(e).into_response(),
    }
}

pub(crate) async fn list(State(s): State<Shared>, Caller(who): Caller) -> Response {
    match s.authority.list_issuers(&who) {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => CallErrorResponse(e).into_response(),
    }
}

pub(crate) async fn remove(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(req): Json<IssuerName>,
) -> Response {
    match s.authority.remove_issuer(&who, &req.name).await {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => CallErrorResponse(e).into_response(),
    }
}
