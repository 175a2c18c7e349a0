//! The proxy loop: messages from the client go to the server and back,
//! unchanged, except that
//! - a request that makes the server act or disclose (`methods::ask_of`:
//!   `tools/call`, `resources/read`, `prompts/get`, ... and any request the
//!   proxy does not know) is authorized first ([`Governor::authorize`]); a
//!   denied one is answered by the proxy (a tool error for a tool call, a
//!   JSON-RPC error otherwise) and never reaches the server; an allowed one
//!   is forwarded and its response recorded as the execution's finish;
//! - a request the server sends the client (sampling, elicitation, roots) is
//!   decided and recorded the same way, and a denied one answered with an
//!   error to the server;
//! - `tools/list` and `resources/list` responses are filtered
//!   ([`Governor::filter_list`]: each tool's probe carries its definition,
//!   which the authority pins), and the definitions remembered: a call
//!   carries its tool's, compared with the pin; a call of a tool
//!   the session has not seen listed makes the proxy list the server's
//!   tools itself first ([`learn_tools`]);
//! - a message whose keys another JSON parser would read differently is
//!   refused in either direction (`keys`);
//! - if the server goes away, every request still waiting gets a JSON-RPC
//!   error, and [`run`] returns [`End::ServerExited`].
//!
//! Every request is handled in its own task: a call waiting for the
//! authority blocks no other traffic in either direction.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use writ_artifact::{Denial, ReasonCode};

use crate::framing::{read_message, write_message, FrameError, MESSAGE_BYTES_MAX};
use crate::govern::{Authority, Governor, Listed, Permit};
use crate::message::{
    denied_response, error_response, to_line, tool_denial_response, Kind, Message, INVALID_PARAMS,
    INVALID_REQUEST, SERVER_GONE,
};
use crate::methods::{ask_of, Ask, From};

/// Messages queued towards one side before readers wait (backpressure).
pub const QUEUE_MESSAGES_MAX: usize = 1024;
/// After the client closed its side, how long the server has to answer what
/// is still pending before the proxy stops waiting.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The client closed its input (the normal end of an MCP stdio session).
    ClientClosed,
    /// The server closed its output (exited) first.
    ServerExited { pending: usize },
}

/// What a forwarded request waits for.
enum Pending {
    Plain,
    List(Listed),
    Call(Box<Permit>),
    /// The proxy's own request (its `tools/list`): the answer goes here.
    Own(tokio::sync::oneshot::Sender<Value>),
}

/// How long the proxy waits for the server to answer its own `tools/list`.
pub const OWN_LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pages of its own `tools/list` the proxy reads at most.
pub const OWN_LIST_PAGES_MAX: usize = 20;

/// Requests forwarded to the server and not answered yet, by the JSON text
/// of their id; `closed` once the server is gone. `from_server`: the
/// server's own requests forwarded to the client, allowed, waiting for the
/// client's answer (their finish records).
struct Table {
    waiting: HashMap<String, (Value, Pending)>,
    /// The server's requests forwarded to the client and not answered yet:
    /// the permit of a decided one (its finish record), `None` for a ping.
    /// Only an answer to one of these reaches the server.
    from_server: HashMap<String, Option<Box<Permit>>>,
    closed: bool,
}

type Shared = Arc<Mutex<Table>>;

fn lock(t: &Shared) -> std::sync::MutexGuard<'_, Table> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

fn key(id: &Value) -> String {
    id.to_string()
}

/// Run one session between a client (`client_in`, `client_out`) and a
/// server (`server_in` is what the server reads, `server_out` what it
/// writes) until either side closes.
pub async fn run<A, CI, CO, SI, SO>(
    gov: Arc<Governor<A>>,
    mut client_in: CI,
    client_out: CO,
    server_in: SI,
    server_out: SO,
) -> End
where
    A: Authority,
    CI: AsyncBufRead + Unpin + Send + 'static,
    CO: AsyncWrite + Unpin + Send + 'static,
    SI: AsyncWrite + Unpin + Send + 'static,
    SO: AsyncBufRead + Unpin + Send + 'static,
{
    let (to_client, client_rx) = mpsc::channel::<Vec<u8>>(QUEUE_MESSAGES_MAX);
    let (to_server, server_rx) = mpsc::channel::<Vec<u8>>(QUEUE_MESSAGES_MAX);
    let client_writer = tokio::spawn(writer(client_out, client_rx));
    let server_writer = tokio::spawn(writer(server_in, server_rx));
    let table: Shared = Arc::new(Mutex::new(Table {
        waiting: HashMap::new(),
        from_server: HashMap::new(),
        closed: false,
    }));
    let mut tasks: JoinSet<()> = JoinSet::new();

    // The server's side, in its own task: its end is the session's end.
    // Weak: the server's input closes when the client's side is done,
    // whatever the server still asks.
    let server_reader = tokio::spawn(read_server(
        Arc::clone(&gov),
        Arc::clone(&table),
        to_client.clone(),
        to_server.downgrade(),
        server_out,
    ));
    tokio::pin!(server_reader);

    let end = loop {
        tokio::select! {
            r = &mut server_reader => break End::ServerExited { pending: r.unwrap_or(0) },
            m = read_message(&mut client_in, MESSAGE_BYTES_MAX) => match m {
                Ok(Some(raw)) => {
                    from_client(&gov, &table, &to_client, &to_server, &mut tasks, raw).await;
                    // Reap what is done: a long session holds no finished tasks.
                    while tasks.try_join_next().is_some() {}
                }
                Ok(None) => {
                    // The client is done: let calls in flight finish, close the
                    // server's input, give it a moment to answer and exit.
                    while tasks.join_next().await.is_some() {}
                    drop(to_server);
                    let _ = server_writer.await;
                    break match tokio::time::timeout(DRAIN_GRACE, &mut server_reader).await {
                        Ok(Ok(0)) | Err(_) => End::ClientClosed,
                        Ok(Ok(n)) => End::ServerExited { pending: n },
                        Ok(Err(_)) => End::ClientClosed,
                    };
                }
                Err(FrameError::TooLarge { limit }) => {
                    let _ = to_client.send(to_line(&error_response(&Value::Null, INVALID_REQUEST,
                        &format!("message of more than {limit} bytes refused by writ mcp-proxy")))).await;
                }
                Err(FrameError::Io(e)) => {
                    tracing::warn!("reading the MCP client: {e}");
                    break End::ClientClosed;
                }
            },
        }
    };
    while tasks.join_next().await.is_some() {}
    // The server's requests the client never answered: their finish records.
    let unanswered: Vec<Box<Permit>> = lock(&table)
        .from_server
        .drain()
        .filter_map(|(_, p)| p)
        .collect();
    for permit in unanswered {
        gov.record_unforwarded(&permit, "the client closed the session before answering")
            .await;
    }
    // A server that has not closed its output by now is not waited for: its
    // reader holds a sender to the client's writer, which must end.
    // (A handle that already gave its output must not be polled again.)
    if !server_reader.is_finished() {
        server_reader.abort();
        let _ = (&mut server_reader).await;
    }
    drop(to_client);
    let _ = client_writer.await;
    end
}

/// The server's side of a session: its messages until it closes its
/// output; then every request still waiting for it gets an error, and the
/// server's requests the client did not answer get their finish records.
/// How many of the client's requests were left waiting.
async fn read_server<A, SO>(
    gov: Arc<Governor<A>>,
    table: Shared,
    to_client: mpsc::Sender<Vec<u8>>,
    to_server: mpsc::WeakSender<Vec<u8>>,
    mut server_out: SO,
) -> usize
where
    A: Authority,
    SO: AsyncBufRead + Unpin,
{
    let mut tasks = JoinSet::new();
    loop {
        match read_message(&mut server_out, MESSAGE_BYTES_MAX).await {
            Ok(Some(raw)) => {
                from_server(&gov, &table, &to_client, &to_server, &mut tasks, raw).await;
                // Reap what is done (finish records, screenings): a long
                // session holds no finished tasks.
                while tasks.try_join_next().is_some() {}
            }
            Ok(None) => break,
            Err(FrameError::TooLarge { limit }) => {
                tracing::warn!("the MCP server sent a message of more than {limit} bytes; dropped");
            }
            Err(FrameError::Io(e)) => {
                tracing::warn!("reading the MCP server: {e}");
                break;
            }
        }
    }
    // Gone: whatever is still waiting gets an error now.
    let (lost, unanswered): (Vec<(Value, Pending)>, Vec<Box<Permit>>) = {
        let mut t = lock(&table);
        t.closed = true;
        (
            t.waiting.drain().map(|(_, v)| v).collect(),
            t.from_server.drain().filter_map(|(_, p)| p).collect(),
        )
    };
    for permit in unanswered {
        gov.record_unforwarded(&permit, "the MCP server exited before the client answered")
            .await;
    }
    // The proxy's own requests are not the client's to hear of.
    let lost: Vec<(Value, Pending)> = lost
        .into_iter()
        .filter(|(_, p)| !matches!(p, Pending::Own(_)))
        .collect();
    let n = lost.len();
    for (id, p) in lost {
        let _ = to_client
            .send(to_line(&error_response(
                &id,
                SERVER_GONE,
                "the MCP server exited before answering (writ mcp-proxy)",
            )))
            .await;
        if let Pending::Call(permit) = p {
            gov.record_lost(&permit).await;
        }
    }
    while tasks.join_next().await.is_some() {}
    n
}

async fn writer<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(m) = rx.recv().await {
        if let Err(e) = write_message(&mut w, m).await {
            tracing::debug!("writing a message: {e}");
            // Keep draining so senders never wait on a dead pipe.
            while rx.recv().await.is_some() {}
            return;
        }
    }
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut w).await;
}

/// Why a request was not recorded as waiting (and must not be forwarded).
enum NotWaiting {
    /// The server is gone.
    Closed(Pending),
    /// Another request with this id is still waiting: its answer could not
    /// be told from this one's.
    IdInUse(Pending),
}

/// Record `id` as waiting, unless the server is already gone or the id is
/// taken.
fn wait_for(table: &Shared, id: &Value, p: Pending) -> Result<(), NotWaiting> {
    let mut t = lock(table);
    if t.closed {
        return Err(NotWaiting::Closed(p));
    }
    let k = key(id);
    if t.waiting.contains_key(&k) {
        return Err(NotWaiting::IdInUse(p));
    }
    t.waiting.insert(k, (id.clone(), p));
    Ok(())
}

async fn id_in_use(to_client: &mpsc::Sender<Vec<u8>>, id: &Value) {
    let _ = to_client
        .send(to_line(&error_response(
            id,
            INVALID_REQUEST,
            &format!(
                "request id {id} is in use by a request still waiting; refused by writ mcp-proxy"
            ),
        )))
        .await;
}

async fn gone(to_client: &mpsc::Sender<Vec<u8>>, id: &Value) {
    let _ = to_client
        .send(to_line(&error_response(
            id,
            SERVER_GONE,
            "the MCP server has exited (writ mcp-proxy)",
        )))
        .await;
}

async fn from_client<A: Authority>(
    gov: &Arc<Governor<A>>,
    table: &Shared,
    to_client: &mpsc::Sender<Vec<u8>>,
    to_server: &mpsc::Sender<Vec<u8>>,
    tasks: &mut JoinSet<()>,
    raw: Vec<u8>,
) {
    let msg = Message::parse(raw);
    match msg.kind {
        Kind::Request { id, method } => {
            let ask = match ask_of(
                &gov.session().server,
                &method,
                msg.value.get("params"),
                From::Client,
            ) {
                Ok(a) => a,
                Err(e) => {
                    let _ = to_client
                        .send(to_line(&error_response(&id, INVALID_PARAMS, &e.0)))
                        .await;
                    return;
                }
            };
            let Some(ask) = ask else {
                let p = match method.as_str() {
                    "tools/list" => Pending::List(Listed::Tools),
                    "resources/list" => Pending::List(Listed::Resources),
                    _ => Pending::Plain,
                };
                match wait_for(table, &id, p) {
                    Ok(()) => {
                        if to_server.send(msg.raw).await.is_err() {
                            lost(gov, table, to_client, &id).await;
                        }
                    }
                    Err(NotWaiting::Closed(_)) => gone(to_client, &id).await,
                    Err(NotWaiting::IdInUse(_)) => id_in_use(to_client, &id).await,
                }
                return;
            };
            let to = Queues {
                to_client: to_client.clone(),
                to_server: to_server.clone(),
            };
            let (gov, table) = (Arc::clone(gov), Arc::clone(table));
            tasks.spawn(decide(gov, table, to, id, ask, msg.raw, From::Client));
        }
        Kind::Response { id } => {
            // The client's answer to a request of the server's that was
            // forwarded (and decided): its finish. An answer to anything else
            // (a request still being decided, or denied) is dropped: the
            // server would take it for its request's answer.
            let answered = lock(table).from_server.remove(&key(&id));
            match answered {
                Some(permit) => {
                    if let Some(permit) = permit {
                        let gov = Arc::clone(gov);
                        let value = msg.value.clone();
                        tasks.spawn(async move { gov.record_finish(&permit, &value).await });
                    }
                    let _ = to_server.send(msg.raw).await;
                }
                None => tracing::warn!(
                    "the MCP client answered {id}, which no forwarded request of the server's has; dropped"
                ),
            }
        }
        Kind::Notification { .. } => {
            let _ = to_server.send(msg.raw).await;
        }
        Kind::Invalid { code, why } => {
            let id = msg
                .value
                .get("id")
                .filter(|i| crate::message::valid_id(i))
                .cloned()
                .unwrap_or(Value::Null);
            let _ = to_client
                .send(to_line(&error_response(&id, code, &why)))
                .await;
        }
    }
}

/// A forwarded request could not be written to the server.
async fn lost<A: Authority>(
    gov: &Arc<Governor<A>>,
    table: &Shared,
    to_client: &mpsc::Sender<Vec<u8>>,
    id: &Value,
) {
    let p = lock(table).waiting.remove(&key(id));
    if let Some((_, p)) = p {
        if let Pending::Call(permit) = p {
            gov.record_lost(&permit).await;
        }
        gone(to_client, id).await;
    }
}

async fn from_server<A: Authority>(
    gov: &Arc<Governor<A>>,
    table: &Shared,
    to_client: &mpsc::Sender<Vec<u8>>,
    to_server: &mpsc::WeakSender<Vec<u8>>,
    tasks: &mut JoinSet<()>,
    raw: Vec<u8>,
) {
    let msg = Message::parse(raw);
    match &msg.kind {
        Kind::Response { id } => {
            let waiting = lock(table).waiting.remove(&key(id));
            answer_client(gov, to_client, tasks, waiting, msg).await;
        }
        Kind::Request { id, method } => {
            let id = id.clone();
            let ask = ask_of(
                &gov.session().server,
                method,
                msg.value.get("params"),
                From::Server,
            );
            let ask = match ask {
                Ok(Some(a)) => a,
                Ok(None) => {
                    // A ping: its answer may pass.
                    let free = match lock(table).from_server.entry(key(&id)) {
                        Entry::Occupied(_) => false,
                        Entry::Vacant(v) => {
                            v.insert(None);
                            true
                        }
                    };
                    if free {
                        let _ = to_client.send(msg.raw).await;
                    }
                    return;
                }
                Err(e) => {
                    if let Some(to_server) = to_server.upgrade() {
                        let _ = to_server
                            .send(to_line(&error_response(&id, INVALID_PARAMS, &e.0)))
                            .await;
                    }
                    return;
                }
            };
            let Some(to_server) = to_server.upgrade() else {
                // The client is gone and the server's input closed: nobody
                // would answer it.
                return;
            };
            let to = Queues {
                to_client: to_client.clone(),
                to_server,
            };
            let (gov, table) = (Arc::clone(gov), Arc::clone(table));
            tasks.spawn(decide(gov, table, to, id, ask, msg.raw, From::Server));
        }
        // Notifications (progress, logging, list changes) pass as they are.
        Kind::Notification { .. } => {
            let _ = to_client.send(msg.raw).await;
        }
        Kind::Invalid { why, .. } => {
            tracing::warn!("the MCP server sent a message writ mcp-proxy refuses: {why}");
            // An answer the client waits for must not be lost: it gets an
            // error in its place.
            let id = msg.value.get("id").filter(|i| crate::message::valid_id(i));
            let waiting = id.and_then(|id| lock(table).waiting.remove(&key(id)));
            if let (Some(id), Some((_, p))) = (id, waiting) {
                if let Pending::Own(_) = p {
                    // The proxy's own list: dropped, the call goes on without it.
                    return;
                }
                if let Pending::Call(permit) = p {
                    gov.record_unforwarded(
                        &permit,
                        &format!("the server's answer was refused: {why}"),
                    )
                    .await;
                }
                let _ = to_client
                    .send(to_line(&error_response(
                        id,
                        SERVER_GONE,
                        &format!("the MCP server's answer was refused by writ mcp-proxy: {why}"),
                    )))
                    .await;
            }
        }
    }
}

/// The queues of messages towards either side.
struct Queues {
    to_client: mpsc::Sender<Vec<u8>>,
    to_server: mpsc::Sender<Vec<u8>>,
}

/// Decide a request `from` one side. Denied, the proxy answers it (the
/// client's as a tool error for a tool call); allowed, it is forwarded to
/// the other side with its permit.
async fn decide<A: Authority>(
    gov: Arc<Governor<A>>,
    table: Shared,
    to: Queues,
    id: Value,
    ask: Ask,
    raw: Vec<u8>,
    from: From,
) {
    let tool_call = ask.tool_call;
    if tool_call && from == From::Client && !gov.knows_definition(&ask) {
        learn_tools(&gov, &table, &to.to_server).await;
    }
    match gov.authorize(ask).await {
        Err(d) => {
            let (answer, side) = match from {
                From::Client if tool_call => (tool_denial_response(&id, &d), &to.to_client),
                From::Client => (denied_response(&id, &d), &to.to_client),
                From::Server => (denied_response(&id, &d), &to.to_server),
            };
            let _ = side.send(to_line(&answer)).await;
        }
        Ok(permit) => forward(&gov, &table, &to, &id, permit, raw, from).await,
    }
}

/// List the server's tools as the proxy itself (ids the client cannot
/// have: they are taken in the table while waiting, and a client request
/// with one is refused as in use), following `nextCursor` for at most
/// [`OWN_LIST_PAGES_MAX`] pages, and remember their definitions. A server
/// that does not answer in [`OWN_LIST_TIMEOUT`], or does not list the tool,
/// leaves the call with the tool's bare name as its definition, which a
/// tool pinned with a listed definition is denied for.
async fn learn_tools<A: Authority>(
    gov: &Arc<Governor<A>>,
    table: &Shared,
    to_server: &mpsc::Sender<Vec<u8>>,
) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut cursor: Option<Value> = None;
    for _ in 0..OWN_LIST_PAGES_MAX {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = Value::String(format!("writ-mcp-proxy/tools/{n}"));
        let (tx, rx) = tokio::sync::oneshot::channel();
        if wait_for(table, &id, Pending::Own(tx)).is_err() {
            return;
        }
        let mut req = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"});
        if let Some(c) = cursor.take() {
            req["params"] = serde_json::json!({ "cursor": c });
        }
        if to_server.send(to_line(&req)).await.is_err() {
            lock(table).waiting.remove(&key(&id));
            return;
        }
        let answer = match tokio::time::timeout(OWN_LIST_TIMEOUT, rx).await {
            Ok(Ok(v)) => v,
            _ => {
                lock(table).waiting.remove(&key(&id));
                tracing::warn!("the MCP server did not answer writ mcp-proxy's tools/list");
                return;
            }
        };
        let result = answer.get("result");
        if let Some(tools) = result
            .and_then(|r| r.get("tools"))
            .and_then(Value::as_array)
        {
            gov.learn_tools(tools);
        }
        match result.and_then(|r| r.get("nextCursor")) {
            Some(c) if c.is_string() => cursor = Some(c.clone()),
            _ => return,
        }
    }
}

/// Whether a request's params name a task (`params.task`, under any case
/// folding a server's parser may apply: see `keys`).
fn task_augmented(raw: &[u8]) -> bool {
    serde_json::from_slice::<Value>(raw).is_ok_and(|v| {
        v.get("params").and_then(Value::as_object).is_some_and(|p| {
            p.keys()
                .any(|k| unicase::UniCase::new(k.as_str()) == unicase::UniCase::new("task"))
        })
    })
}

/// Forward a decided request `from` one side to the other. Only a
/// [`Permit`], which carries the grant of the request's verified writ, lets
/// a decided request through: it is kept with the request until the answer
/// comes, for the execution's finish record. A request whose id is in use
/// is refused, and a client's request to a server that is gone answered
/// with an error.
async fn forward<A: Authority>(
    gov: &Arc<Governor<A>>,
    table: &Shared,
    to: &Queues,
    id: &Value,
    permit: Permit,
    raw: Vec<u8>,
    from: From,
) {
    if from == From::Client && permit.screens() && task_augmented(&raw) {
        // Its result would come later, by `tasks/result`, which is not the
        // call's answer and is not screened.
        let d = Denial::new(
            ReasonCode::PolicyDenied,
            "a task-augmented call (params.task) is refused while a policy decides tool results: \
             its result would come by tasks/result, unscreened",
        );
        gov.record_unforwarded(&permit, &d.message).await;
        let _ = to
            .to_client
            .send(to_line(&crate::message::tool_denial_response(id, &d)))
            .await;
        return;
    }
    if from == From::Client {
        match wait_for(table, id, Pending::Call(Box::new(permit))) {
            Ok(()) => {
                if to.to_server.send(raw).await.is_err() {
                    lost(gov, table, &to.to_client, id).await;
                }
            }
            Err(NotWaiting::Closed(Pending::Call(permit))) => {
                gov.record_lost(&permit).await;
                gone(&to.to_client, id).await;
            }
            Err(NotWaiting::IdInUse(Pending::Call(permit))) => {
                gov.record_unforwarded(&permit, "its request id was in use")
                    .await;
                id_in_use(&to.to_client, id).await;
            }
            Err(_) => gone(&to.to_client, id).await,
        }
        return;
    }
    let taken = match lock(table).from_server.entry(key(id)) {
        Entry::Occupied(_) => Some(permit),
        Entry::Vacant(v) => {
            v.insert(Some(Box::new(permit)));
            None
        }
    };
    match taken {
        Some(permit) => {
            gov.record_unforwarded(&permit, "its request id was in use")
                .await;
            let _ = to
                .to_server
                .send(to_line(&error_response(
                    id,
                    INVALID_REQUEST,
                    "request id in use by a request still waiting; refused by writ mcp-proxy",
                )))
                .await;
        }
        None => {
            let _ = to.to_client.send(raw).await;
        }
    }
}

/// The server's answer to a waiting request of the client's.
async fn answer_client<A: Authority>(
    gov: &Arc<Governor<A>>,
    to_client: &mpsc::Sender<Vec<u8>>,
    tasks: &mut JoinSet<()>,
    waiting: Option<(Value, Pending)>,
    msg: Message,
) {
    match waiting {
        // An answer to nothing waiting: a second answer to one request (the
        // first may still be in the filter), an id of another type than the
        // request's (`"3"` for `3`, which some clients match), or a late
        // answer to the proxy's own list. Passed on, it could carry a tool
        // list no probe filtered: dropped.
        None => {
            tracing::warn!(
                "the MCP server answered a request that is not waiting for an answer; dropped"
            );
        }
        Some((_, Pending::Plain)) => {
            let _ = to_client.send(msg.raw).await;
        }
        Some((_, Pending::Own(tx))) => {
            let _ = tx.send(msg.value);
        }
        Some((_, Pending::List(listed))) => {
            let (gov, to_client) = (Arc::clone(gov), to_client.clone());
            tasks.spawn(async move {
                let filtered = gov.filter_list(msg.value, listed).await;
                let _ = to_client.send(to_line(&filtered)).await;
            });
        }
        Some((id, Pending::Call(permit))) if permit.screens() => {
            // The answer is decided before the client sees it; a denied one
            // is withheld, and the client gets the denial as a tool error.
            let (gov, to_client) = (Arc::clone(gov), to_client.clone());
            tasks.spawn(async move {
                match gov.screen(&permit, &msg.value).await {
                    Ok(()) => {
                        let _ = to_client.send(msg.raw).await;
                        gov.record_finish(&permit, &msg.value).await;
                    }
                    Err(d) => {
                        let _ = to_client
                            .send(to_line(&crate::message::tool_denial_response(&id, &d)))
                            .await;
                        gov.record_withheld(&permit, &msg.value, &d).await;
                    }
                }
            });
        }
        Some((_, Pending::Call(permit))) => {
            // The answer first; the log entry of its finish right after.
            let _ = to_client.send(msg.raw).await;
            let gov = Arc::clone(gov);
            tasks.spawn(async move {
                gov.record_finish(&permit, &msg.value).await;
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
