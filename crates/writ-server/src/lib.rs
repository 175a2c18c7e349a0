//! The HTTP API of the authority (SPEC "HTTP API"), on axum.
//!
//! **API boundary:** handlers parse, authenticate and translate; every
//! decision is made by [`writ_authority::Authority`]. Size limits and JSON
//! errors are handled here: oversized bodies get 413, malformed JSON 400 with
//! the offending field named.
#![forbid(unsafe_code)]

mod log;
mod metrics;
mod routes;
mod witness;

pub use log::{publish_and_witness, run_publisher, WitnessTarget};
pub use metrics::Metrics;
pub use routes::{
    router, run_heartbeat, ServerState, BODY_BYTES_MAX, HEARTBEAT_MS, MESH_NODE_LIVE_MS,
};
pub use witness::{serve_witness, witness_router, StateSaver, Witness};
pub use writ_console::Console;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// Serve `state` on `listener` until `shutdown` resolves.
pub async fn serve(
    state: Arc<ServerState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
