//! The HTTP API of the authority (`docs/spec/api.md`), on axum.
//!
//! **API boundary:** handlers parse, authenticate and translate; every
//! decision is made by [`writ_authority::Authority`]. Size limits and JSON
//! errors are handled here: oversized bodies get 413, malformed JSON 400 with
//! the offending field named.
#![forbid(unsafe_code)]

pub mod access;
mod admin;
mod decide;
mod health;
mod issuers;
pub mod listen;
mod log;
mod metrics;
pub mod rate;
mod revocations;
mod routes;
mod state;
mod witness;

pub use health::{run_heartbeat, HEARTBEAT_MS, MESH_NODE_LIVE_MS};
pub use listen::Listen;
pub use log::{publish_and_witness, run_publisher};
pub use metrics::{ConnMetrics, Metrics};
pub use routes::{router, BODY_BYTES_MAX};
pub use state::{ServerState, WitnessTarget};
pub use witness::{serve_witness, witness_router, StateSaver, Witness};
pub use writ_console::Console;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt as _;
use tokio::sync::watch;

/// How long a shutdown waits for requests in flight before the server
/// returns anyway.
pub const SHUTDOWN_DRAIN_MAX: Duration = Duration::from_secs(5);

/// Serve `state` on `listener` with the default [`Listen`] settings (plain
/// HTTP) until `shutdown` resolves; see [`serve_with`].
pub async fn serve(
    state: Arc<ServerState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(state, listener, Listen::default(), shutdown).await
}

/// Serve `state` on `listener` as `listen` says until `shutdown` resolves.
/// Then the server takes no new connection, ends every event stream at
/// once (the revocation stream, the console's), so that enforcement points
/// see the authority go rather than keep-alives from one that no longer
/// decides, and waits at most [`SHUTDOWN_DRAIN_MAX`] for the requests in
/// flight.
pub async fn serve_with(
    state: Arc<ServerState>,
    listener: tokio::net::TcpListener,
    listen: Listen,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(state, listener, None, listen, shutdown).await
}

/// [`serve_with`], also on the Unix socket `unix` when given (local
/// callers identified by the kernel; `docs/spec/identity.md`).
pub async fn serve_on(
    state: Arc<ServerState>,
    listener: tokio::net::TcpListener,
    unix: Option<tokio::net::UnixListener>,
    listen: Listen,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (closing, closed) = watch::channel(false);
    let mut drain = closing.subscribe();
    let metrics = state.metrics.connections.clone();
    let hash = state.peercred.as_ref().is_some_and(|r| r.want_digest());
    let app = router(state).layer(axum::middleware::from_fn_with_state(
        closed,
        end_streams_on_close,
    ));
    let local = unix.map(|u| {
        let mut stop = closing.subscribe();
        tokio::spawn(listen::run_unix(
            u,
            app.clone(),
            listen.clone(),
            metrics.clone(),
            hash,
            async move {
                let _ = stop.wait_for(|c| *c).await;
            },
        ))
    });
    let server = listen::run(listener, app, listen, metrics, async move {
        shutdown.await;
        let _ = closing.send(true);
    });
    let server = async move {
        let r = server.await;
        if let Some(l) = local {
            let _ = l.await;
        }
        r
    };
    tokio::select! {
        r = server => r,
        () = async {
            if drain.wait_for(|c| *c).await.is_err() {
                // The server ended first and took the sender with it.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(SHUTDOWN_DRAIN_MAX).await;
        } => {
            tracing::warn!("requests still in flight {} s after shutdown; stopping anyway", SHUTDOWN_DRAIN_MAX.as_secs());
            Ok(())
        }
    }
}

/// Server-sent event streams never end on their own: cut them when the
/// server shuts down.
async fn end_streams_on_close(
    State(mut closed): State<watch::Receiver<bool>>,
    req: Request,
    next: Next,
) -> Response {
    let res = next.run(req).await;
    let is_stream = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !is_stream {
        return res;
    }
    let (parts, body) = res.into_parts();
    let until_closed = async move {
        // A dropped sender means the server is gone: end the stream too.
        let _ = closed.wait_for(|c| *c).await;
    };
    let body = axum::body::Body::from_stream(body.into_data_stream().take_until(until_closed));
    Response::from_parts(parts, body)
}
