//! The console's read-only JSON and SSE routes. Everything here reads the
//! authority and the store; nothing decides or writes.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;
use serde::Deserialize;
use serde_json::{json, Value};
use writ_authority::Authority;
use writ_log::{Entry, Outcome};
use writ_store::{StoreError, StoreRead};

use crate::state::{Console, Shared};
use crate::summary::summaries;

/// Entries one `GET /console/api/entries` returns at most.
pub const ENTRIES_PAGE_MAX: u64 = 500;
/// Entries one stream event batch carries at most.
const STREAM_BATCH_MAX: u64 = 200;
/// How often the entry stream looks for new entries when nothing woke it.
const STREAM_POLL: Duration = Duration::from_millis(500);
/// Most recent entries the lineage routes scan (denied children, recent runs).
pub const LINEAGE_SCAN_ENTRIES_MAX: u64 = 20_000;
/// Recent executions listed at most.
const EXECUTIONS_MAX: usize = 50;

pub(crate) fn fail(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": "console", "message": message.into()})),
    )
        .into_response()
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> Response {
    fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// A JSON body serialized on a reader thread.
pub(crate) fn json_bytes(body: Vec<u8>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// [`read`] a JSON value, serialized on the reader thread too.
pub(crate) async fn read_json(
    c: &Shared,
    f: impl FnOnce(&Console) -> Result<Value, String> + Send + 'static,
) -> Response {
    match read(c, move |c| {
        serde_json::to_vec(&f(c)?).map_err(|e| e.to_string())
    })
    .await
    {
        Ok(body) => json_bytes(body),
        Err(r) => r,
    }
}

/// Run `f` on a reader thread (`crate::readers`): never on the workers that
/// decide. A full reader queue is 503 with `Retry-After`.
pub(crate) async fn read<T: Send + 'static>(
    c: &Shared,
    f: impl FnOnce(&Console) -> Result<T, String> + Send + 'static,
) -> Result<T, Response> {
    let c2 = c.clone();
    match c.readers.run(move || f(&c2)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(busy) => {
            let mut r = fail(StatusCode::SERVICE_UNAVAILABLE, busy.to_string());
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            Err(r)
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct EntriesQuery {
    /// Entries before this index (default: the end of the log).
    before: Option<u64>,
    limit: Option<u64>,
}

/// `GET /console/api/entries?before=&limit=`: the latest entries, newest last.
pub(crate) async fn entries(
    State(c): State<Shared>,
    q: Result<Query<EntriesQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return fail(
            StatusCode::BAD_REQUEST,
            "before and limit must be non-negative integers",
        );
    };
    let (before, limit) = (q.before, q.limit);
    read_json(&c, move |c| {
        let store = c.authority.reads();
        let size = store.log_size().map_err(|e| e.to_string())?;
        let end = before.unwrap_or(size).min(size);
        let start = end.saturating_sub(limit.unwrap_or(ENTRIES_PAGE_MAX).min(ENTRIES_PAGE_MAX));
        Ok(json!({"size": size, "entries": summaries(store.as_ref(), start, end)?}))
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct StreamQuery {
    /// The first index the subscriber has not seen (default: the log's size).
    from: Option<u64>,
}

/// `GET /console/api/stream?from=N`: server-sent events, one `entry` event
/// per new log entry as it is committed, in index order.
pub(crate) async fn stream(
    State(c): State<Shared>,
    q: Result<Query<StreamQuery>, QueryRejection>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let size = c.authority.reads().log_size().unwrap_or(0);
    let from = q.ok().and_then(|Query(q)| q.from).unwrap_or(size).min(size);
    // The authority's events only wake the loop; the store is what is read.
    let wake = c.authority.subscribe();
    let state = (c, from, wake, Vec::<Value>::new());
    let s =
        futures_util::stream::unfold(state, |(c, mut next, mut wake, mut pending)| async move {
            loop {
                if let Some(v) = pending.pop() {
                    let ev = SseEvent::default().event("entry").data(v.to_string());
                    return Some((Ok::<_, Infallible>(ev), (c, next, wake, pending)));
                }
                let size = c.authority.reads().log_size().unwrap_or(next);
                if size > next {
                    let end = size.min(next + STREAM_BATCH_MAX);
                    let from = next;
                    let batch = read(&c, move |c| {
                        summaries(c.authority.reads().as_ref(), from, end)
                    })
                    .await;
                    if let Ok(mut v) = batch {
                        next = end;
                        v.reverse();
                        pending = v;
                        continue;
                    }
                }
                tokio::select! {
                    r = wake.recv() => {
                        if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                            // No more wake-ups: poll.
                            tokio::time::sleep(STREAM_POLL).await;
                        }
                    }
                    _ = tokio::time::sleep(STREAM_POLL) => {}
                }
            }
        });
    Sse::new(s).keep_alive(KeepAlive::default().interval(Duration::from_secs(5)))
}

/// Activations `GET /console/api/policy` lists at most (the latest).
const ACTIVATIONS_MAX: usize = 100;
/// Revocations `GET /console/api/revocations` lists at most (the latest).
const REVOCATIONS_MAX: usize = 1000;

/// The active bundle and its activations, oldest first: all of them, or
/// the latest `latest` and their total (`activations_total`). What
/// `GET /v1/policies` and `GET /console/api/policy` show.
pub fn policy_listing(authority: &Authority, latest: Option<usize>) -> Result<Value, StoreError> {
    let mut activations = authority.reads().activations()?;
    let bundle = authority.active_bundle();
    let mut v = json!({
        "active": bundle.hash(),
        "policy_ids": bundle.policy_ids(),
        "source": bundle.source(),
    });
    let total = activations.len();
    if let Some(latest) = latest {
        activations.drain(..total.saturating_sub(latest));
    }
    v["activations"] = json!(activations);
    if latest.is_some() {
        v["activations_total"] = json!(total);
    }
    Ok(v)
}

/// `GET /console/api/policy`: the active bundle and the latest activations.
pub(crate) async fn policy(State(c): State<Shared>) -> Response {
    read_json(&c, |c| {
        policy_listing(&c.authority, Some(ACTIVATIONS_MAX)).map_err(|e| e.to_string())
    })
    .await
}

/// `GET /console/api/revocations`: the latest revocations.
pub(crate) async fn revocations(State(c): State<Shared>) -> Response {
    read_json(&c, |c| {
        let mut list = c
            .authority
            .reads()
            .revocations()
            .map_err(|e| e.to_string())?;
        let total = list.len();
        list.drain(..list.len().saturating_sub(REVOCATIONS_MAX));
        Ok(json!({"revocations": list, "total": total}))
    })
    .await
}

fn recent_entries(store: &dyn StoreRead) -> Result<Vec<(u64, Entry)>, String> {
    let size = store.log_size().map_err(|e| e.to_string())?;
    let start = size.saturating_sub(LINEAGE_SCAN_ENTRIES_MAX);
    Ok(store
        .entries(start, size)
        .map_err(|e| e.to_string())?
        .iter()
        .filter_map(|l| Entry::from_leaf(&l.leaf).ok().map(|e| (l.index, e)))
        .collect())
}

/// `GET /console/api/executions`: recent execution starts with their roots,
/// newest first (the lineage explorer's picker).
pub(crate) async fn executions(State(c): State<Shared>) -> Response {
    read_json(&c, |c| {
        Ok(json!({"executions": recent_executions(c.authority.reads().as_ref())?}))
    })
    .await
}

fn recent_executions(store: &dyn StoreRead) -> Result<Vec<Value>, String> {
    let recent = recent_entries(store)?;
    let mut out = Vec::new();
    for (index, e) in recent.iter().rev() {
        if out.len() >= EXECUTIONS_MAX {
            break;
        }
        if let Entry::ExecutionStart {
            time_ms,
            jti,
            principal,
        } = e
        {
            let rec = store.writ(jti).map_err(|e| e.to_string())?;
            out.push(json!({
                "index": index, "time_ms": time_ms, "jti": jti, "principal": principal,
                "resource": rec.as_ref().map(|r| r.resource.clone()),
                "root": rec.as_ref().map(|r| r.root.clone()),
                "depth": rec.as_ref().map(|r| r.depth),
            }));
        }
    }
    Ok(out)
}

fn collect_jtis(node: &Value, out: &mut HashSet<String>) {
    if let Some(j) = node["jti"].as_str() {
        out.insert(j.to_owned());
    }
    for c in node["children"].as_array().into_iter().flatten() {
        collect_jtis(c, out);
    }
}

fn add_denied(node: &mut Value, denied: &HashMap<String, Vec<Value>>) {
    let jti = node["jti"].as_str().map(str::to_owned);
    if let Some(children) = node.get_mut("children").and_then(Value::as_array_mut) {
        for c in children.iter_mut() {
            add_denied(c, denied);
        }
        if let Some(d) = jti.and_then(|j| denied.get(&j)) {
            children.extend(d.iter().cloned());
        }
    }
}

/// `GET /console/api/lineage/{jti}`: the authority's lineage tree, plus the
/// children it refused (denied decisions naming a node as parent, among the
/// latest [`LINEAGE_SCAN_ENTRIES_MAX`] entries), as nodes of status `denied`.
pub(crate) async fn lineage(State(c): State<Shared>, Path(jti): Path<String>) -> Response {
    let c2 = c.clone();
    match c.readers.run(move || lineage_with_denied(&c2, &jti)).await {
        Ok(Ok(body)) => json_bytes(body),
        Ok(Err((status, m))) => fail(status, m),
        Err(busy) => unavailable(busy),
    }
}

fn lineage_with_denied(c: &Console, jti: &str) -> Result<Vec<u8>, (StatusCode, String)> {
    let r = match c.authority.lineage(jti) {
        Ok(r) => r,
        Err(writ_authority::CallError::NotFound(m)) => return Err((StatusCode::NOT_FOUND, m)),
        Err(e) => return Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    };
    let mut v =
        serde_json::to_value(&r).map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let mut jtis = HashSet::new();
    collect_jtis(&v["tree"], &mut jtis);
    let recent = recent_entries(c.authority.reads().as_ref())
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let mut denied: HashMap<String, Vec<Value>> = HashMap::new();
    for (index, e) in &recent {
        if let Entry::Decision(d) = e {
            if let (Outcome::Deny, Some(p)) = (d.decision, &d.parent) {
                if jtis.contains(p) {
                    denied.entry(p.clone()).or_default().push(json!({
                        "jti": null, "principal": d.principal, "action": d.action,
                        "resource": d.resource, "status": "denied", "reason": d.reason,
                        "message": d.message, "log_index": index, "children": [],
                    }));
                }
            }
        }
    }
    add_denied(&mut v["tree"], &denied);
    serde_json::to_vec(&v).map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

/// This node, as `GET /v1/mesh` and the health dashboard show it.
pub fn node_status(c: &Console, node_id: &str) -> Result<Value, StoreError> {
    let store = c.authority.reads();
    let now_ms = c.authority.clock().now_unix_ms();
    let log_size = store.log_size()?;
    let active = c.authority.active_policy();
    let activations = store.activations()?;
    let latest = activations.last();
    let revocations = store.revocations()?;
    let checkpoint = store.latest_checkpoint()?;
    Ok(json!({
        "id": node_id,
        "self": true,
        "policy": active,
        // Fresh: the bundle this node enforces is the store's latest activation.
        "policy_fresh": latest.is_some_and(|a| a.hash == active),
        "policy_activated_ms": latest.map(|a| a.time_ms),
        "revocation_hwm": revocations.len(),
        "revocation_latest_ms": revocations.iter().map(|r| r.time_ms).max(),
        "log_size": log_size,
        "checkpoint_size": checkpoint.as_ref().map(|c| c.size),
        "checkpoint_time_ms": checkpoint.as_ref().map(|c| c.time_ms),
        "checkpoint_age_ms": checkpoint.as_ref().map(|c| now_ms.saturating_sub(c.time_ms)),
        "witnesses": c.witnesses.iter().map(|w| w.vkey()).collect::<Vec<_>>(),
        "now_ms": now_ms,
    }))
}

/// `GET /console/api/health`: this node (the mesh route lists the same).
pub(crate) async fn health(State(c): State<Shared>) -> Response {
    match read(&c, |c| {
        node_status(c, "this node").map_err(|e| e.to_string())
    })
    .await
    {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}
