//! The console's read-only JSON and SSE routes. Everything here reads the
//! authority and the store; nothing decides or writes.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;
use serde::Deserialize;
use serde_json::{json, Value};
use writ_authority::logsource::StoreSource;
use writ_log::{Entry, Outcome};
use writ_store::Store;

use crate::Console;

type Shared = Arc<Console>;

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

/// The fields every list shows, for any kind of entry.
pub fn summarize(index: u64, e: &Entry) -> Value {
    let outcome = |o: Outcome| match o {
        Outcome::Allow => "allow",
        Outcome::Deny => "deny",
    };
    match e {
        Entry::Decision(d) => json!({
            "index": index, "type": "decision", "time_ms": d.time_ms,
            "principal": d.principal, "action": d.action, "resource": d.resource,
            "outcome": outcome(d.decision), "reason": d.reason, "message": d.message,
            "jti": d.jti, "parent": d.parent, "policy": d.policy, "audience": d.audience,
        }),
        Entry::ExecutionStart {
            time_ms,
            jti,
            principal,
        } => json!({
            "index": index, "type": "execution_start", "time_ms": time_ms,
            "principal": principal, "action": "start", "resource": jti,
            "outcome": "started", "jti": jti,
        }),
        Entry::ExecutionFinish {
            time_ms,
            jti,
            principal,
            exit_status,
            terminated,
            duration_ms,
            ..
        } => json!({
            "index": index, "type": "execution_finish", "time_ms": time_ms,
            "principal": principal, "action": "finish", "resource": jti,
            "outcome": if terminated.is_some() { "terminated" } else { "finished" },
            "message": terminated.clone().unwrap_or_else(|| format!("exit status {}, {duration_ms} ms", exit_status.map_or("none".into(), |s| s.to_string()))),
            "jti": jti,
        }),
        Entry::ExecutionRenew {
            time_ms,
            jti,
            principal,
            decision,
            reason,
            message,
            ..
        } => json!({
            "index": index, "type": "execution_renew", "time_ms": time_ms,
            "principal": principal, "action": "renew", "resource": jti,
            "outcome": outcome(*decision), "reason": reason, "message": message, "jti": jti,
        }),
        Entry::Revocation {
            time_ms,
            by,
            target,
            kind,
            reason,
        } => json!({
            "index": index, "type": "revocation", "time_ms": time_ms,
            "principal": by, "action": "revoke", "resource": target,
            "outcome": "revoked", "message": reason, "kind": kind,
        }),
        Entry::PolicyActivation {
            time_ms, by, hash, ..
        } => json!({
            "index": index, "type": "policy_activation", "time_ms": time_ms,
            "principal": by, "action": "activate", "resource": hash, "outcome": "activated",
        }),
        Entry::KeyChange {
            time_ms,
            by,
            kid,
            role,
            status,
        } => json!({
            "index": index, "type": "key_change", "time_ms": time_ms,
            "principal": by, "action": format!("{role} key"), "resource": kid, "outcome": status,
        }),
        Entry::PrincipalAdded {
            time_ms,
            by,
            uid,
            admin,
            auditor,
        } => json!({
            "index": index, "type": "principal_added", "time_ms": time_ms,
            "principal": by, "action": "add principal", "resource": uid,
            "outcome": match (*admin, *auditor) {
                (true, _) => "admin",
                (false, true) => "auditor",
                _ => "added",
            },
        }),
        Entry::ContentErased {
            time_ms,
            by,
            index: erased,
            reason,
        } => json!({
            "index": index, "type": "content_erased", "time_ms": time_ms,
            "principal": by, "action": "erase content", "resource": format!("entry {erased}"),
            "outcome": "erased", "message": reason,
        }),
        Entry::PrincipalChange {
            time_ms,
            by,
            uid,
            change,
        } => json!({
            "index": index, "type": "principal_change", "time_ms": time_ms,
            "principal": by, "action": "change principal", "resource": uid,
            "outcome": change.as_str(),
        }),
        Entry::IssuerChange {
            time_ms,
            by,
            name,
            change,
            issuer,
            ..
        } => json!({
            "index": index, "type": "issuer_change", "time_ms": time_ms,
            "principal": by, "action": "change issuer", "resource": name,
            "outcome": match change {
                writ_log::IssuerChangeKind::Added => "added",
                writ_log::IssuerChangeKind::Removed => "removed",
            },
            "message": issuer,
        }),
    }
}

/// The summaries of entries `start..end`, sealed decisions opened with
/// their content (the console is an auditor's), so that their messages show.
fn summaries(store: &dyn Store, start: u64, end: u64) -> Result<Vec<Value>, String> {
    let mut contents: HashMap<u64, writ_log::content::Content> =
        writ_authority::logsource::contents(store, start, end)
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
    Ok(store
        .entries(start, end)
        .map_err(|e| e.to_string())?
        .iter()
        .map(|l| match Entry::from_leaf(&l.leaf) {
            _ if l.leaf.is_empty() => {
                json!({"index": l.index, "type": "erased", "message": "the content of this entry was erased; its hash stays in the log"})
            }
            Ok(Entry::Decision(mut d)) => {
                if let Some(c) = contents.remove(&l.index) {
                    // A content that does not open leaves the message empty;
                    // `writ log verify` names the entry.
                    let _ = d.open(&c);
                }
                summarize(l.index, &Entry::Decision(d))
            }
            Ok(e) => summarize(l.index, &e),
            Err(err) => json!({"index": l.index, "type": "unreadable", "message": err.to_string()}),
        })
        .collect())
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
        let store = c.authority.store();
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
    let size = c.authority.store().log_size().unwrap_or(0);
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
                let size = c.authority.store().log_size().unwrap_or(next);
                if size > next {
                    let end = size.min(next + STREAM_BATCH_MAX);
                    let from = next;
                    let batch = read(&c, move |c| {
                        summaries(c.authority.store().as_ref(), from, end)
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

/// `GET /console/api/policy`: the active bundle and the latest activations.
pub(crate) async fn policy(State(c): State<Shared>) -> Response {
    let activations = read(&c, |c| {
        let mut a = c
            .authority
            .store()
            .activations()
            .map_err(|e| e.to_string())?;
        let total = a.len();
        a.drain(..a.len().saturating_sub(ACTIVATIONS_MAX));
        Ok((a, total))
    })
    .await;
    let (activations, total) = match activations {
        Ok(a) => a,
        Err(r) => return r,
    };
    let bundle = c.authority.active_bundle();
    axum::Json(json!({
        "active": bundle.hash(),
        "policy_ids": bundle.policy_ids(),
        "source": bundle.source(),
        "activations": activations,
        "activations_total": total,
    }))
    .into_response()
}

/// `GET /console/api/revocations`: the latest revocations.
pub(crate) async fn revocations(State(c): State<Shared>) -> Response {
    read_json(&c, |c| {
        let mut list = c
            .authority
            .store()
            .revocations()
            .map_err(|e| e.to_string())?;
        let total = list.len();
        list.drain(..list.len().saturating_sub(REVOCATIONS_MAX));
        Ok(json!({"revocations": list, "total": total}))
    })
    .await
}

fn recent_entries(store: &dyn Store) -> Result<Vec<(u64, Entry)>, String> {
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
        Ok(json!({"executions": recent_executions(c.authority.store().as_ref())?}))
    })
    .await
}

fn recent_executions(store: &dyn Store) -> Result<Vec<Value>, String> {
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
    let recent = recent_entries(c.authority.store().as_ref())
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
pub fn node_status(c: &Console, node_id: &str) -> Result<Value, String> {
    let store = c.authority.store();
    let now_ms = c.authority.clock().now_unix_ms();
    let log_size = store.log_size().map_err(|e| e.to_string())?;
    let active = c.authority.active_policy();
    let activations = store.activations().map_err(|e| e.to_string())?;
    let latest = activations.last();
    let revocations = store.revocations().map_err(|e| e.to_string())?;
    let checkpoint = store.latest_checkpoint().map_err(|e| e.to_string())?;
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
    match read(&c, |c| node_status(c, "this node")).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

/// The trusted policy keys, from the store's key records.
pub(crate) fn policy_keys(store: &dyn Store) -> Result<writ_artifact::KeyRing, String> {
    let keys = store
        .keys()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|k| k.role == "policy")
        .map(|k| serde_json::from_str::<writ_artifact::Jwk>(&k.public_jwk))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    writ_artifact::KeyRing::from_jwks(&writ_artifact::Jwks { keys })
}

/// An assessment replays the whole log: it is kept, and made again only
/// when the log has grown and this long has passed.
const ASSESS_FRESH: Duration = Duration::from_secs(30);

/// The last assessment: when, at what log size, what.
pub struct Assessed {
    at: std::time::Instant,
    size: u64,
    value: Value,
}

/// `GET /console/api/assess`: the EGMM level this deployment demonstrates
/// (`writ_assess::gather` over the store, then `writ_assess::assess`), made
/// at most once per [`ASSESS_FRESH`] while the log grows, one at a time, on
/// a reader thread.
pub(crate) async fn assess(State(c): State<Shared>) -> Response {
    let Some(log) = c.log.clone() else {
        return unavailable("this server has no log key, so its checkpoints cannot be assessed");
    };
    // Held while one is made: callers meanwhile wait for it, not redo it.
    let mut kept = c.assessed.lock().await;
    let size = match c.authority.store().log_size() {
        Ok(n) => n,
        Err(e) => return unavailable(e),
    };
    if let Some(a) = kept.as_ref() {
        if a.size == size || a.at.elapsed() < ASSESS_FRESH {
            return axum::Json(a.value.clone()).into_response();
        }
    }
    let witnesses = c.witnesses.clone();
    let evidence = read(&c, move |c| {
        let store = c.authority.store().clone();
        let keys = policy_keys(store.as_ref())?;
        let log_keys = log.log_verifiers().map_err(|e| e.to_string())?;
        writ_assess::gather(&StoreSource(store), log_keys, witnesses, keys)
            .map_err(|e| e.to_string())
    })
    .await;
    match evidence {
        Ok(evidence) => {
            let a = writ_assess::assess(&evidence);
            let value = json!({"assessment": a, "evidence": evidence, "log_size": size});
            *kept = Some(Assessed {
                at: std::time::Instant::now(),
                size,
                value: value.clone(),
            });
            axum::Json(value).into_response()
        }
        Err(r) => r,
    }
}
