//! `writ witness`: the HTTP side of a C2SP `tlog-witness`. The decision is
//! [`writ_log::witness::add_checkpoint`]; this module serializes requests
//! and persists the new state before answering.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use writ_log::note::{NoteSigner, NoteVerifier};
use writ_log::witness::{add_checkpoint, WitnessState};

/// Persists the witness state; must be durable when it returns `Ok`.
pub type StateSaver = dyn Fn(&WitnessState) -> std::io::Result<()> + Send + Sync;

pub struct Witness {
    pub logs: Vec<NoteVerifier>,
    pub signer: NoteSigner,
    pub state: tokio::sync::Mutex<WitnessState>,
    pub save: Box<StateSaver>,
    pub clock: Arc<dyn writ_artifact::Clock>,
}

/// Bodies above this are refused (a checkpoint plus 63 proof lines is ~4 KiB).
const BODY_MAX: usize = 64 * 1024;

pub fn witness_router(w: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add))
        .route("/", get(info))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_MAX))
        .with_state(w)
}

async fn info(State(w): State<Arc<Witness>>) -> Response {
    let logs: Vec<String> = w.logs.iter().map(NoteVerifier::vkey).collect();
    let state = w.state.lock().await.clone();
    axum::Json(serde_json::json!({
        "vkey": w.signer.verifier.vkey(),
        "logs": logs,
        "state": state,
    }))
    .into_response()
}

async fn add(State(w): State<Arc<Witness>>, body: String) -> Response {
    // Check and persist atomically (the spec's rollback race).
    let mut state = w.state.lock().await;
    match add_checkpoint(&state, &w.logs, &w.signer, &body, w.clock.now_unix_secs()) {
        Ok((line, next)) => {
            if let Err(e) = (w.save)(&next) {
                tracing::error!(error = %e, "cannot persist witness state; not cosigning");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot persist state: {e}\n"),
                )
                    .into_response();
            }
            *state = next;
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], line).into_response()
        }
        Err(r) => {
            if r.status == 422 || r.body.contains("forked") {
                tracing::error!(status = r.status, message = %r.body.trim(), "refused an inconsistent checkpoint");
            }
            (
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
                [(header::CONTENT_TYPE, r.content_type)],
                r.body,
            )
                .into_response()
        }
    }
}

/// Serve a witness on `listener` as `listen` says (TLS, limits) until
/// `shutdown` resolves.
pub async fn serve_witness(
    w: Arc<Witness>,
    listener: tokio::net::TcpListener,
    listen: crate::Listen,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::listen::run(
        listener,
        witness_router(w),
        listen,
        crate::ConnMetrics::default(),
        shutdown,
    )
    .await
}
