//! Lineage, keys, health, metrics, the OpenAPI document, the mesh's view
//! of its nodes (and this node's heartbeat to it), and the console's page.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use writ_authority::*;

use crate::state::{busy, CallErrorResponse, Caller, Shared};
pub(crate) async fn lineage(
    State(s): State<Shared>,
    Caller(_): Caller,
    Path(jti): Path<String>,
) -> Response {
    let authority = s.authority.clone();
    match s.readers.run(move || authority.lineage(&jti)).await {
        Ok(Ok(r)) => axum::Json(r).into_response(),
        Ok(Err(e)) => CallErrorResponse(e).into_response(),
        Err(b) => busy(b),
    }
}

pub(crate) async fn jwks(State(s): State<Shared>) -> Response {
    (
        [(header::CACHE_CONTROL, "max-age=60")],
        axum::Json(s.authority.jwks()),
    )
        .into_response()
}

pub(crate) async fn metrics(State(s): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(s.authority.log_size()),
    )
        .into_response()
}

pub(crate) async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

pub(crate) async fn readyz(State(s): State<Shared>) -> Response {
    if let Some(d) = s.authority.stale() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"ready": false, "reason": d.reason, "message": d.message})),
        )
            .into_response();
    }
    // Off the async workers: on a shared store this is a query.
    let store = s.reads_owned();
    let size = tokio::task::spawn_blocking(move || store.log_size())
        .await
        .unwrap_or_else(|e| Err(writ_store::StoreError::Unavailable(e.to_string())));
    match size {
        Ok(n) => {
            axum::Json(json!({"ready": true, "log_size": n, "policy": s.authority.active_policy()}))
                .into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"ready": false, "message": e.to_string()})),
        )
            .into_response(),
    }
}

pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The OpenAPI document; a test checks every route of [`router`] is in it.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /v1/mesh`: the nodes of the governance mesh. This node first, as it
/// sees itself now (policy hash and whether it is the store's latest
/// activation, revocation high-water mark, log size, latest checkpoint,
/// freshness, leadership); then, on a shared store, every other node as it
/// last reported itself (heartbeat), with its lag behind the log.
pub(crate) async fn mesh(State(s): State<Shared>) -> Response {
    let console = s.console();
    let shared = s.authority.shared();
    let leader = !shared || s.leader.load(std::sync::atomic::Ordering::Relaxed);
    let state = s.clone();
    let out = s
        .readers
        .run(move || {
            let mut me =
                writ_console::node_status(&console, &state.node_id).map_err(|e| e.to_string())?;
            me["url"] = json!(state.url);
            me["leader"] = json!(leader);
            me["fresh"] = json!(state.authority.stale().is_none());
            me["state_seq"] = json!(state.authority.state_seq());
            me["lag"] = json!(0);
            // One log: the checkpoint and the latest activation are the mesh's.
            let shared_fields = [
                "policy_activated_ms",
                "checkpoint_size",
                "checkpoint_time_ms",
                "checkpoint_age_ms",
                "now_ms",
            ]
            .map(|k| (k, me[k].clone()));
            let mut nodes = vec![me];
            if shared {
                let store = state.authority.reads();
                let size = store.log_size().map_err(|e| e.to_string())?;
                let now = state.authority.clock().now_unix_ms();
                let activations = store.activations().map_err(|e| e.to_string())?;
                let latest_policy = activations.last().map(|a| a.hash.as_str());
                let others = state.authority.mesh_nodes();
                for n in others.map_err(|e| e.to_string())? {
                    if n.id == state.node_id {
                        continue;
                    }
                    let age = now.saturating_sub(n.seen_ms);
                    let mut row = json!({
                        "id": n.id,
                        "self": false,
                        "url": n.url,
                        "policy": n.policy,
                        "revocation_hwm": n.revocations,
                        "log_size": n.log_size,
                        "lag": size.saturating_sub(n.log_size),
                        "state_seq": n.state_seq,
                        "leader": n.leader && age <= MESH_NODE_LIVE_MS,
                        "seen_ms": n.seen_ms,
                        "seen_age_ms": age,
                        "alive": age <= MESH_NODE_LIVE_MS,
                        "started_ms": n.started_ms,
                        "policy_fresh": latest_policy == Some(n.policy.as_str()),
                    });
                    for (k, v) in &shared_fields {
                        row[*k] = v.clone();
                    }
                    nodes.push(row);
                }
            }
            Ok::<_, String>(nodes)
        })
        .await;
    match out {
        Ok(Ok(nodes)) => axum::Json(json!({"shared": shared, "nodes": nodes})).into_response(),
        Ok(Err(e)) => CallErrorResponse(CallError::Unavailable(e)).into_response(),
        Err(e) => CallErrorResponse(CallError::Unavailable(e.to_string())).into_response(),
    }
}

/// A node whose last heartbeat is older than this is shown as not alive.
pub const MESH_NODE_LIVE_MS: u64 = 3_000;
/// How often a node reports itself to a shared store.
pub const HEARTBEAT_MS: u64 = 1_000;

/// Report this node to a shared store every [`HEARTBEAT_MS`] (for the
/// other nodes' `GET /v1/mesh`). Returns at once for a store of one node.
pub async fn run_heartbeat(s: Shared) {
    if !s.authority.shared() {
        return;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(HEARTBEAT_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let a = &s.authority;
        let rec = writ_store::NodeRecord {
            id: s.node_id.clone(),
            url: s.url.clone(),
            started_ms: s.started_ms,
            seen_ms: a.clock().now_unix_ms(),
            policy: a.active_policy(),
            revocations: a.revocation_count(),
            log_size: a.log_size(),
            state_seq: a.state_seq(),
            leader: s.leader.load(std::sync::atomic::Ordering::Relaxed),
        };
        let a = a.clone();
        let beat = move || a.heartbeat(&rec);
        match tokio::task::spawn_blocking(beat).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "heartbeat not recorded"),
            Err(_) => return,
        }
    }
}

/// `GET /`: the console's front page (the governance console).
pub(crate) async fn index(State(s): State<Shared>) -> Response {
    writ_console::index(&s.authority)
}
