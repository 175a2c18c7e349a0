//! The router: every route and the layers over them.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

use crate::state::{error, Shared};
use crate::{access, admin, decide, health, issuers, log, revocations};

/// Largest request body accepted (bundles are the largest bodies).
pub const BODY_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Largest body of a decision request.
pub const DECISION_BODY_BYTES_MAX: usize = 256 * 1024;

pub fn router(state: Shared) -> Router {
    // The console reads what the public log routes reveal; it decides nothing.
    let console = writ_console::router(Arc::new(state.console()));
    let decisions = Router::new()
        .route("/v1/authorize", post(decide::authorize))
        .route(
            "/access/v1/evaluation",
            post(decide::authzen_evaluation)
                .layer(axum::middleware::from_fn(decide::echo_request_id)),
        )
        .route("/v1/verify", post(decide::verify))
        .route("/v1/executions/{jti}/start", post(decide::start))
        .route("/v1/executions/{jti}/renew", post(decide::renew))
        .route("/v1/executions/{jti}/finish", post(decide::finish))
        .route(
            "/v1/revocations",
            post(revocations::revoke).get(revocations::list_revocations),
        )
        .route(
            "/v1/principals",
            post(admin::add_principal).get(admin::list_principals),
        )
        .route("/v1/principals/rotate", post(admin::rotate_principal))
        .route("/v1/principals/disable", post(admin::disable_principal))
        .route("/v1/principals/enable", post(admin::enable_principal))
        .route("/v1/issuers", post(issuers::add).get(issuers::list))
        .route("/v1/issuers/remove", post(issuers::remove))
        .route(
            "/v1/pins",
            post(admin::approve_definition).get(admin::list_pins),
        )
        .layer(DefaultBodyLimit::max(DECISION_BODY_BYTES_MAX));
    Router::new()
        .merge(decisions)
        .route(
            "/v1/revocations/stream",
            get(revocations::revocation_stream),
        )
        .route(
            "/v1/policies",
            get(admin::list_policies).post(admin::upload_policy),
        )
        .route("/v1/keys/rotate", post(admin::rotate_key))
        .route("/v1/keys/retire", post(admin::retire_key))
        .route("/v1/lineage/{jti}", get(health::lineage))
        .route("/v1/log/entries", get(log::entries))
        .route("/v1/log/contents", get(log::contents))
        .route("/v1/log/erase", post(log::erase))
        .route(
            "/v1/log/checkpoint",
            get(log::get_checkpoint).post(log::post_checkpoint),
        )
        .route("/v1/log/key", get(log::get_key))
        .route("/v1/log/checkpoints", get(log::list_checkpoints))
        .route("/v1/log/bundles/{hash}", get(log::get_bundle))
        .route("/v1/log/proof/inclusion", get(log::inclusion))
        .route("/v1/log/proof/consistency", get(log::consistency))
        .route("/.well-known/jwks.json", get(health::jwks))
        .route("/metrics", get(health::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(health::openapi))
        .route("/v1/mesh", get(health::mesh))
        .route("/", get(health::index))
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
        .route_layer(axum::middleware::from_fn_with_state(state, access::guard))
}
