//! Revocations: making them (admin), listing them, and the stream that
//! tells enforcement points (`docs/spec/api.md`).

use std::convert::Infallible;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt as _;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use writ_authority::*;

use crate::state::{busy, error, json_or_error, CallErrorResponse, Caller, Json, Shared};
/// A comment line on every event stream this often, so subscribers can tell
/// a quiet stream from a dead connection.
pub const STREAM_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) async fn revoke(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(req): Json<RevokeRequest>,
) -> Response {
    json_or_error(s.authority.revoke(&who, &req).await)
}

/// Revocations one page of `GET /v1/revocations` holds at most (each is
/// under 2 KiB: a page stays under 4 MiB).
pub const REVOCATIONS_PAGE_MAX: usize = 1000;

#[derive(serde::Deserialize)]
pub(crate) struct RevocationsQuery {
    /// The position in the list to start at (default 0).
    from: Option<usize>,
}

/// `GET /v1/revocations?from=N`: revocations in the order they were made,
/// [`REVOCATIONS_PAGE_MAX`] a page; `next` is where the following page
/// starts (`null` after the last).
pub(crate) async fn list_revocations(
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
    let store = s.reads_owned();
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
pub(crate) struct StreamQuery {
    /// A writ the subscriber runs under: if it (or an ancestor, or a
    /// principal on its chain) is already revoked when the stream opens, the
    /// first event says so, closing the gap between start and subscription.
    watch: Option<String>,
}

pub(crate) async fn revocation_stream(
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
