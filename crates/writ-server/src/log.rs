//! The log routes (checkpoint, proofs, log key), the checkpoint publisher
//! loop, and the client side of the C2SP `tlog-witness` protocol.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use writ_authority::{LogPublisher, PublishError};
use writ_log::merkle::ProofError;
use writ_log::note::NoteVerifier;
use writ_store::{StoreError, StoreRead};

use crate::state::{
    busy, error, CallErrorResponse, Caller, Json, ServerState, Shared, WitnessTarget,
};

/// Most entries one `GET /v1/log/entries` returns.
pub const ENTRIES_PAGE_MAX: u64 = 1000;

fn no_log() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        Some(writ_artifact::ReasonCode::AuthorityUnavailable),
        "this server has no log key, so it publishes no checkpoints",
    )
}

fn publish_error(e: &PublishError) -> Response {
    use writ_artifact::ReasonCode;
    let (status, reason) = match e {
        PublishError::Inconsistent { .. } | PublishError::BadStored { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            ReasonCode::IntegrityFailure,
        ),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            ReasonCode::AuthorityUnavailable,
        ),
    };
    error(status, "checkpoint", Some(reason), e.to_string())
}

fn note_response(note: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
}

/// `GET /v1/log/checkpoint`: the latest signed checkpoint (`writ serve`
/// signs one before it answers anyone).
pub(crate) async fn get_checkpoint(State(s): State<Shared>) -> Response {
    let Some(log) = &s.log else { return no_log() };
    match log.latest() {
        Ok(Some(p)) => note_response(p.record.note),
        Ok(None) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            Some(writ_artifact::ReasonCode::AuthorityUnavailable),
            "no checkpoint has been signed yet",
        ),
        Err(e) => publish_error(&e),
    }
}

/// `POST /v1/log/checkpoint`: publish now (any authenticated caller).
pub(crate) async fn post_checkpoint(State(s): State<Shared>, Caller(who): Caller) -> Response {
    // Forcing a checkpoint costs a signature, a consistency proof and a
    // round to every witness: an administrator's call.
    if !who.admin || who.execution.is_some() {
        return error(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            None,
            format!("{} is not an administrator", who.uid),
        );
    }
    let Some(log) = &s.log else { return no_log() };
    match publish_and_witness(&s, log).await {
        Ok(note) => note_response(note),
        Err(e) => publish_error(&e),
    }
}

/// `GET /v1/log/key`: the log's C2SP verifier key, the witnesses it asks,
/// and the policy keys that sign bundles (for replay).
pub(crate) async fn get_key(State(s): State<Shared>) -> Response {
    let Some(log) = &s.log else { return no_log() };
    let witnesses: Vec<String> = s.witnesses.iter().map(|w| w.key.vkey()).collect();
    let keys = match s.reads().keys() {
        Ok(k) => k,
        Err(e) => return unavailable(e),
    };
    let policy_keys: Vec<serde_json::Value> = keys
        .iter()
        .filter(|k| k.role == writ_store::KeyRole::Policy)
        .filter_map(|k| serde_json::from_str(&k.public_jwk).ok())
        .collect();
    // Every node of a mesh signs checkpoints with its own key while it leads.
    let log_keys: Vec<String> = match log.log_verifiers() {
        Ok(v) => v.iter().map(NoteVerifier::vkey).collect(),
        Err(e) => return unavailable(e),
    };
    axum::Json(json!({
        "vkey": log.verifier().vkey(),
        "log_keys": log_keys,
        "origin": log.verifier().name,
        "witnesses": witnesses,
        "policy_keys": {"keys": policy_keys},
    }))
    .into_response()
}

#[derive(Deserialize)]
pub(crate) struct CheckpointsQuery {
    from: Option<u64>,
    limit: Option<usize>,
}

/// Checkpoints one page returns at most.
const CHECKPOINTS_PAGE_MAX: usize = 1000;

/// `GET /v1/log/checkpoints?from=&limit=`: stored checkpoints by size.
pub(crate) async fn list_checkpoints(
    State(s): State<Shared>,
    q: Result<Query<CheckpointsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return bad_query("from and limit must be non-negative integers");
    };
    let limit = q
        .limit
        .unwrap_or(CHECKPOINTS_PAGE_MAX)
        .min(CHECKPOINTS_PAGE_MAX);
    on_reader(&s, move |s| {
        match s.reads().checkpoints(q.from.unwrap_or(0), limit) {
            Ok(v) => axum::Json(json!(v
                .into_iter()
                .map(|c| json!({"size": c.size, "note": c.note, "time_ms": c.time_ms}))
                .collect::<Vec<_>>()))
            .into_response(),
            Err(e) => unavailable(e),
        }
    })
    .await
}

/// Run a handler's store reads on a reader thread (`writ_console::readers`):
/// public routes too must not hold the workers that decide (on a shared
/// store every read is a query). A full queue is 503.
async fn on_reader(
    s: &Shared,
    f: impl FnOnce(&ServerState) -> Response + Send + 'static,
) -> Response {
    let s2 = s.clone();
    match s.readers.run(move || f(&s2)).await {
        Ok(r) => r,
        Err(b) => busy(b),
    }
}

/// `GET /v1/log/bundles/{hash}`: a signed policy bundle a decision names.
pub(crate) async fn get_bundle(
    State(s): State<Shared>,
    axum::extract::Path(hash): axum::extract::Path<String>,
) -> Response {
    match s.reads().bundle(&hash) {
        Ok(Some(json)) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            None,
            format!("no bundle {hash}"),
        ),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct InclusionQuery {
    index: u64,
    size: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct ConsistencyQuery {
    first: u64,
    second: Option<u64>,
}

fn proof_error(e: ProofError) -> Response {
    match e {
        ProofError::Read(r) => unavailable(r),
        ProofError::Unavailable(m) => unavailable(m),
        other => error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
            other.to_string(),
        ),
    }
}

fn bad_query(m: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", None, m.to_owned())
}

fn b64(hs: &[writ_log::Hash]) -> Vec<String> {
    hs.iter().map(|h| STANDARD.encode(h)).collect()
}

/// `GET /v1/log/proof/inclusion?index=&size=` (size defaults to the latest
/// checkpoint's).
pub(crate) async fn inclusion(
    State(s): State<Shared>,
    q: Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return bad_query("index (and optional size) must be non-negative integers");
    };
    on_reader(&s, move |s| inclusion_now(s, &q)).await
}

fn inclusion_now(s: &ServerState, q: &InclusionQuery) -> Response {
    let size = match q.size {
        Some(n) => n,
        None => match latest_size(s) {
            Ok(n) => n,
            Err(r) => return *r,
        },
    };
    let store = s.reads();
    let proof = match store.inclusion_proof(q.index, size) {
        Ok(p) => p,
        Err(e) => return proof_error(e),
    };
    let leaf_hash = match store.entries(q.index, q.index.saturating_add(1)) {
        Ok(mut v) if v.len() == 1 => v.remove(0).leaf_hash,
        Ok(_) => return bad_query("no such entry"),
        Err(e) => return unavailable(e),
    };
    axum::Json(json!({
        "index": q.index,
        "size": size,
        "leaf_hash": STANDARD.encode(leaf_hash),
        "hashes": b64(&proof),
    }))
    .into_response()
}

/// `GET /v1/log/proof/consistency?first=&second=` (second defaults to the
/// latest checkpoint's size).
pub(crate) async fn consistency(
    State(s): State<Shared>,
    q: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return bad_query("first (and optional second) must be non-negative integers");
    };
    on_reader(&s, move |s| consistency_now(s, &q)).await
}

fn consistency_now(s: &ServerState, q: &ConsistencyQuery) -> Response {
    let second = match q.second {
        Some(n) => n,
        None => match latest_size(s) {
            Ok(n) => n,
            Err(r) => return *r,
        },
    };
    match s.reads().consistency_proof(q.first, second) {
        Ok(p) => axum::Json(json!({"first": q.first, "second": second, "hashes": b64(&p)}))
            .into_response(),
        Err(e) => proof_error(e),
    }
}

/// The store could not be read: fail closed.
fn unavailable(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        Some(writ_artifact::ReasonCode::AuthorityUnavailable),
        e.to_string(),
    )
}

fn latest_size(s: &ServerState) -> Result<u64, Box<Response>> {
    let Some(log) = &s.log else {
        return Err(Box::new(no_log()));
    };
    match log.latest() {
        Ok(Some(p)) => Ok(p.record.size),
        Ok(None) => Err(Box::new(bad_query(
            "no checkpoint yet: give the size explicitly",
        ))),
        Err(e) => Err(Box::new(publish_error(&e))),
    }
}

/// Publish a checkpoint and collect cosignatures from every witness; returns
/// the stored note (with whatever cosignatures were obtained).
pub async fn publish_and_witness(
    s: &ServerState,
    log: &LogPublisher,
) -> Result<String, PublishError> {
    // In a mesh exactly one node signs: the holder of the store's leader lock.
    // The others answer with the latest checkpoint it signed.
    let authority = s.authority.clone();
    // A store of one node always leads.
    let leads = tokio::task::spawn_blocking(move || authority.lead())
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let leads = match leads {
        Ok(l) => l,
        Err(e) => {
            s.leader.store(false, Ordering::Relaxed);
            return Err(e.into());
        }
    };
    if s.leader.swap(leads, Ordering::Relaxed) != leads {
        tracing::info!(
            node = %s.node_id,
            leader = leads,
            "checkpoint leadership changed"
        );
    }
    if !leads {
        return match log.latest()? {
            Some(p) => Ok(p.record.note),
            None => Err(StoreError::Unavailable(
                "no checkpoint yet, and this node is not the checkpoint leader".into(),
            )
            .into()),
        };
    }
    let published = log.publish().await?;
    let size = published.record.size;
    let mut note = published.record.note;
    for w in &s.witnesses {
        if note_has(&note, &w.key) {
            continue;
        }
        match ask_witness(s, w, &note, size).await {
            Ok(lines) => match log
                .add_cosignatures(size, &lines, std::slice::from_ref(&w.key))
                .await
            {
                Ok(0) => {
                    tracing::warn!(witness = %w.url, "witness answered without a valid cosignature")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(witness = %w.url, error = %e, "cannot store cosignature"),
            },
            Err(e) => tracing::warn!(witness = %w.url, error = %e, "witness did not cosign"),
        }
    }
    if !s.witnesses.is_empty() {
        if let Ok(Some(p)) = log.latest() {
            if p.record.size == size {
                note = p.record.note;
            }
        }
    }
    Ok(note)
}

fn note_has(note: &str, key: &NoteVerifier) -> bool {
    writ_log::note::Note::parse(note).is_ok_and(|n| n.is_signed_by(key))
}

/// One `add-checkpoint` exchange, retrying once from the witness's size on
/// 409 Conflict.
async fn ask_witness(
    s: &ServerState,
    w: &WitnessTarget,
    note: &str,
    size: u64,
) -> Result<String, String> {
    // The size this witness last cosigned; unknown after a restart, when the
    // witness's 409 answer tells it.
    let mut old = s
        .witness_sizes
        .lock()
        .ok()
        .and_then(|m| m.get(&w.url).copied())
        .unwrap_or(0);
    for _ in 0..2 {
        let proof = if old == 0 {
            vec![]
        } else {
            s.reads()
                .consistency_proof(old, size)
                .map_err(|e| e.to_string())?
        };
        let mut body = format!("old {old}\n");
        for h in &proof {
            body.push_str(&STANDARD.encode(h));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(note);
        let resp = s
            .http
            .post(format!("{}/add-checkpoint", w.url.trim_end_matches('/')))
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            if let Ok(mut m) = s.witness_sizes.lock() {
                m.insert(w.url.clone(), size);
            }
            return Ok(text);
        }
        if status.as_u16() == 409 {
            if let Ok(n) = text.trim().parse::<u64>() {
                if n <= size && n != old {
                    old = n;
                    continue;
                }
            }
        }
        return Err(format!("{status}: {}", text.trim()));
    }
    Err("witness kept answering 409 Conflict".into())
}

/// Publish a checkpoint every `interval` while the log grows.
pub async fn run_publisher(state: Shared, interval: Duration) {
    let Some(log) = state.log.clone() else { return };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = publish_and_witness(&state, &log).await {
            // Inconsistency is already logged loudly by the publisher.
            tracing::warn!(error = %e, "no checkpoint this interval");
        }
    }
}

/// Most bytes one page of `GET /v1/log/entries` or `/v1/log/contents`
/// returns, or one item if that alone is larger (a leaf is at most 1 MiB).
pub const PAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

#[derive(Deserialize)]
pub(crate) struct Range {
    start: Option<u64>,
    end: Option<u64>,
}

/// `start..end` of a page: within the log, at most
/// [`ENTRIES_PAGE_MAX`] entries.
fn page(
    s: &ServerState,
    q: Result<Query<Range>, axum::extract::rejection::QueryRejection>,
) -> Result<(u64, u64), Box<Response>> {
    let Ok(Query(q)) = q else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
            "start and end must be non-negative integers",
        )));
    };
    // The store's size: the checkpoint publisher appends too (key changes).
    let size = s
        .reads()
        .log_size()
        .map_err(|e| Box::new(CallErrorResponse(e.into()).into_response()))?;
    let start = q.start.unwrap_or(0);
    let end = q
        .end
        .unwrap_or(size)
        .min(size)
        .min(start.saturating_add(ENTRIES_PAGE_MAX));
    if start > end {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
            format!("start {start} is past end {end}"),
        )));
    }
    Ok((start, end))
}

/// Run a store read on a reader thread (`writ_console::readers`): off the
/// workers that decide, at the lowest priority; a full queue is 503.
async fn blocking<T: Send + 'static>(
    s: &ServerState,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response> {
    match s.readers.run(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CallErrorResponse(e.into()).into_response()),
        Err(b) => Err(busy(b)),
    }
}

/// Entries read from the store at a time while a page is built: a page
/// stops at [`PAGE_BYTES_MAX`] without reading the rest of its range (a
/// leaf or a content can be hundreds of KiB).
const READ_CHUNK: u64 = 8;

/// A JSON body already serialized (on a reader thread).
fn json_bytes(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /v1/log/entries` (public): the leaves `start..end`, at most
/// [`PAGE_BYTES_MAX`] of them. A sealed decision's leaf carries only a
/// commitment to the request; a decision logged before sealing carries
/// the request's values, so its bytes are withheld (its leaf hash, which
/// proofs need, is given); an erased leaf is its hash alone. Read, built
/// and serialized on a reader thread.
pub(crate) async fn entries(
    State(s): State<Shared>,
    q: Result<Query<Range>, axum::extract::rejection::QueryRejection>,
) -> Response {
    serve_page(&s, q, entries_page).await
}

fn entries_page(store: &dyn StoreRead, start: u64, end: u64) -> Result<Vec<u8>, StoreError> {
    let mut page = Page::default();
    let mut at = start;
    'chunks: while at < end {
        let chunk_end = (at + READ_CHUNK).min(end);
        for l in store.entries(at, chunk_end)? {
            if page.full() {
                break 'chunks;
            }
            let hash = STANDARD.encode(l.leaf_hash);
            if l.leaf.is_empty() {
                page.push(&json!({"index": l.index, "leaf_hash": hash, "erased": true}))?;
                continue;
            }
            // Bytes are published only when they are an entry the public may
            // read: not an unsealed decision, and not bytes this writ cannot
            // read (from another version, or damaged), which could be one.
            let entry = match writ_log::Entry::from_leaf(&l.leaf) {
                Ok(writ_log::Entry::Decision(d)) if d.content.is_none() => None,
                Ok(e) => Some(e),
                Err(_) => None,
            };
            let Some(entry) = entry else {
                page.push(&json!({"index": l.index, "leaf_hash": hash, "withheld": "content"}))?;
                continue;
            };
            page.push(&json!({
                "index": l.index,
                "leaf": STANDARD.encode(&l.leaf),
                "leaf_hash": hash,
                "entry": serde_json::to_value(entry).unwrap_or(serde_json::Value::Null),
            }))?;
        }
        at = chunk_end;
    }
    Ok(page.finish(b"[", b"]"))
}

/// A JSON array built item by item, so that its size is known as it grows.
#[derive(Default)]
struct Page {
    body: Vec<u8>,
    items: usize,
}

impl Page {
    /// Holds [`PAGE_BYTES_MAX`] already (and at least one item).
    fn full(&self) -> bool {
        self.items > 0 && self.body.len() >= PAGE_BYTES_MAX
    }
    fn push(&mut self, item: &serde_json::Value) -> Result<(), StoreError> {
        if self.items > 0 {
            self.body.push(b',');
        }
        serde_json::to_writer(&mut self.body, item)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        self.items += 1;
        Ok(())
    }
    fn finish(self, open: &[u8], close: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + open.len() + close.len());
        out.extend_from_slice(open);
        out.extend_from_slice(&self.body);
        out.extend_from_slice(close);
        out
    }
}

/// `GET /v1/log/contents` (auditor): what entries `start..end` commit to:
/// a sealed decision's `salt` and `content` (standard base64 of its bytes),
/// and the whole `leaf` of a decision logged before sealing. At most
/// [`PAGE_BYTES_MAX`] a page; `next` is where the following page starts.
pub(crate) async fn contents(
    State(s): State<Shared>,
    Caller(_): Caller,
    q: Result<Query<Range>, axum::extract::rejection::QueryRejection>,
) -> Response {
    serve_page(&s, q, contents_page).await
}

/// Builds one page of a range of the log, as JSON bytes.
type BuildPage = fn(&dyn StoreRead, u64, u64) -> Result<Vec<u8>, StoreError>;

/// The range `q` asks for, built by `build` on a reader thread.
async fn serve_page(
    s: &Shared,
    q: Result<Query<Range>, axum::extract::rejection::QueryRejection>,
    build: BuildPage,
) -> Response {
    let (start, end) = match page(s, q) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let store = s.reads_owned();
    match blocking(s, move || build(store.as_ref(), start, end)).await {
        Ok(body) => json_bytes(body),
        Err(r) => r,
    }
}

fn contents_page(store: &dyn StoreRead, start: u64, end: u64) -> Result<Vec<u8>, StoreError> {
    let mut page = Page::default();
    let mut next = end;
    let mut at = start;
    'chunks: while at < end {
        let chunk_end = (at + READ_CHUNK).min(end);
        let mut sealed = store.contents(at, chunk_end)?.into_iter().peekable();
        for l in store.entries(at, chunk_end)? {
            if page.full() {
                next = l.index;
                break 'chunks;
            }
            if let Some(c) = sealed.next_if(|c| c.index == l.index) {
                page.push(&json!({"index": c.index, "salt": STANDARD.encode(c.salt), "content": STANDARD.encode(&c.content)}))?;
            } else if matches!(writ_log::Entry::from_leaf(&l.leaf), Ok(writ_log::Entry::Decision(d)) if d.content.is_none())
            {
                page.push(&json!({"index": l.index, "leaf": STANDARD.encode(&l.leaf)}))?;
            }
        }
        at = chunk_end;
    }
    Ok(page.finish(
        b"{\"contents\":[",
        format!("],\"next\":{next}}}").as_bytes(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EraseRequest {
    index: u64,
    reason: String,
}

/// `POST /v1/log/erase` (admin): erase what entry `index` holds of a
/// request (`Authority::erase_content`).
pub(crate) async fn erase(
    State(s): State<Shared>,
    Caller(who): Caller,
    Json(req): Json<EraseRequest>,
) -> Response {
    match s
        .authority
        .erase_content(&who, req.index, &req.reason)
        .await
    {
        Ok(log_index) => {
            axum::Json(json!({"erased": req.index, "log_index": log_index})).into_response()
        }
        Err(e) => CallErrorResponse(e).into_response(),
    }
}
