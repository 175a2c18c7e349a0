//! `/v1/issuers`: the external identity issuers whose JWTs authenticate
//! callers (docs/spec/identity.md). Administrators only (`access::TABLE`).

use axum::extract::State;
use axum::response::Response;
use writ_authority::IssuerRequest;

use crate::state::{created_or_error, json_or_error, Caller, Json, Shared};

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
    created_or_error(s.authority.add_issuer(&who, &req).await)
}

pub(crate) async fn list(State(s): State<Shared>, Caller(who): Caller) -> Response {
    json_or_error(s.authority.list_issuers(&who))
}

pub(crate) async fn remove(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(req): Json<IssuerName>,
) -> Response {
    json_or_error(s.authority.remove_issuer(&who, &req.name).await)
}
