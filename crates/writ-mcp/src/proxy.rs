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
//!   ([`Governor::filter_list`]);
//! - a message whose keys another JSON parser would read differently is
//!   refused in either direction (`keys`);
//! - if the server goes away, every request still waiting gets a JSON-RPC
//!   error, and [`run`] returns [`End::ServerExited`].
//!
//! Every request is handled in its own task: a call waiting for the
//! authority blocks no other traffic in either direction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::framing::{read_message, write_message, FrameError, MESSAGE_BYTES_MAX};
use crate::govern::{Authority, Governor, Listed, Permit};
use crate::message::{
    denied_response, error_response, to_line, tool_denial_response, Kind, Message, INVALID_PARAMS,
    INVALID_REQUEST, SERVER_GONE,
};
use crate::methods::{ask_of, From};

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
}

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
    mut server_out: SO,
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
    let server_reader = {
        // Weak: the server's input closes when the client's side is done,
        // whatever the server still asks.
        let (gov, table, to_client, to_server) = (
            Arc::clone(&gov),
            Arc::clone(&table),
            to_client.clone(),
            to_server.downgrade(),
        );
        tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            loop {
                match read_message(&mut server_out, MESSAGE_BYTES_MAX).await {
                    Ok(Some(raw)) => {
                        from_server(&gov, &table, &to_client, &to_server, &mut tasks, raw).await
                    }
                    Ok(None) => break,
                    Err(FrameError::TooLarge { limit }) => {
                        tracing::warn!(
                            "the MCP server sent a message of more than {limit} bytes; dropped"
                        );
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
        })
    };
    tokio::pin!(server_reader);

    let end = loop {
        tokio::select! {
            r = &mut server_reader => break End::ServerExited { pending: r.unwrap_or(0) },
            m = read_message(&mut client_in, MESSAGE_BYTES_MAX) => match m {
                Ok(Some(raw)) => from_client(&gov, &table, &to_client, &to_server, &mut tasks, raw).await,
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
            let (gov, table, to_client, to_server) = (
                Arc::clone(gov),
                Arc::clone(table),
                to_client.clone(),
                to_server.clone(),
            );
            tasks.spawn(async move {
                let tool_call = ask.tool_call;
                match gov.authorize(ask).await {
                    Err(d) => {
                        let answer = if tool_call {
                            tool_denial_response(&id, &d)
                        } else {
                            denied_response(&id, &d)
                        };
                        let _ = to_client.send(to_line(&answer)).await;
                    }
                    Ok(permit) => match wait_for(&table, &id, Pending::Call(Box::new(permit))) {
                        Ok(()) => {
                            if to_server.send(msg.raw).await.is_err() {
                                lost(&gov, &table, &to_client, &id).await;
                            }
                        }
                        Err(NotWaiting::Closed(Pending::Call(permit))) => {
                            gov.record_lost(&permit).await;
                            gone(&to_client, &id).await;
                        }
                        Err(NotWaiting::IdInUse(Pending::Call(permit))) => {
                            gov.record_unforwarded(&permit, "its request id was in use")
                                .await;
                            id_in_use(&to_client, &id).await;
                        }
                        Err(_) => gone(&to_client, &id).await,
                    },
                }
            });
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
                        std::collections::hash_map::Entry::Occupied(_) => false,
                        std::collections::hash_map::Entry::Vacant(v) => {
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
            let (gov, table, to_client, to_server) = (
                Arc::clone(gov),
                Arc::clone(table),
                to_client.clone(),
                to_server.clone(),
            );
            tasks.spawn(async move {
                match gov.authorize(ask).await {
                    Err(d) => {
                        let _ = to_server.send(to_line(&denied_response(&id, &d))).await;
                    }
                    Ok(permit) => {
                        let taken = match lock(&table).from_server.entry(key(&id)) {
                            std::collections::hash_map::Entry::Occupied(_) => Some(permit),
                            std::collections::hash_map::Entry::Vacant(v) => {
                                v.insert(Some(Box::new(permit)));
                                None
                            }
                        };
                        match taken {
                            Some(permit) => {
                                gov.record_unforwarded(&permit, "its request id was in use")
                                    .await;
                                let _ = to_server
                                    .send(to_line(&error_response(
                                        &id,
                                        INVALID_REQUEST,
                                        "request id in use by a request still waiting; refused by writ mcp-proxy",
                                    )))
                                    .await;
                            }
                            None => {
                                let _ = to_client.send(msg.raw).await;
                            }
                        }
                    }
                }
            });
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

/// The server's answer to a waiting request of the client's.
async fn answer_client<A: Authority>(
    gov: &Arc<Governor<A>>,
    to_client: &mpsc::Sender<Vec<u8>>,
    tasks: &mut JoinSet<()>,
    waiting: Option<(Value, Pending)>,
    msg: Message,
) {
    match waiting {
        None | Some((_, Pending::Plain)) => {
            let _ = to_client.send(msg.raw).await;
        }
        Some((_, Pending::List(listed))) => {
            let (gov, to_client) = (Arc::clone(gov), to_client.clone());
            tasks.spawn(async move {
                let filtered = gov.filter_list(msg.value, listed).await;
                let _ = to_client.send(to_line(&filtered)).await;
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
mod tests {
    use super::*;
    use crate::govern::{Session, Unavailable};
    use serde_json::json;
    use tokio::io::{
        duplex, AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines, ReadHalf, WriteHalf,
    };
    use writ_api::{AuthorizeRequest, AuthorizeResponse, FinishRequest};
    use writ_artifact::{FixedClock, KeyRing, ReasonCode};

    /// Denies every call after `delay`; allows probes of tools named `ok*`
    /// (with a writ the proxy never uses: probes are not verified).
    /// An authority that answers each decision once `gate` gives it a
    /// permit (a rig made with `thinking` holds them back until the test
    /// adds some).
    struct Stub {
        gate: Arc<tokio::sync::Semaphore>,
    }

    impl Authority for Stub {
        async fn authorize(&self, req: AuthorizeRequest) -> Result<AuthorizeResponse, Unavailable> {
            // Each decision takes a permit for good.
            self.gate
                .acquire()
                .await
                .map_err(|_| Unavailable("closed".into()))?
                .forget();
            if !req.start && req.resource.starts_with("Tool::\"fs/ok") {
                return Ok(AuthorizeResponse::Allow {
                    writ: "unused".into(),
                    log_index: 0,
                    jti: "j".into(),
                    exp: 0,
                    credential: None,
                });
            }
            Ok(AuthorizeResponse::Deny {
                reason: ReasonCode::PolicyDenied,
                message: "no permit applies".into(),
                log_index: Some(1),
            })
        }
        async fn finish(&self, _jti: &str, _o: FinishRequest) -> Result<(), Unavailable> {
            Ok(())
        }
    }

    type LinesOf = Lines<BufReader<ReadHalf<DuplexStream>>>;

    struct Rig {
        client_w: WriteHalf<DuplexStream>,
        client_r: LinesOf,
        server_w: WriteHalf<DuplexStream>,
        server_r: LinesOf,
        run: tokio::task::JoinHandle<End>,
        /// Permits for the authority's decisions.
        gate: Arc<tokio::sync::Semaphore>,
    }

    /// A proxy between in-memory client and server pipes. With `thinking`,
    /// the authority answers no decision until the test adds permits to
    /// `gate`.
    fn rig(thinking: bool) -> Rig {
        let gate = Arc::new(tokio::sync::Semaphore::new(if thinking {
            0
        } else {
            tokio::sync::Semaphore::MAX_PERMITS
        }));
        let gov = Arc::new(Governor::new(
            Stub { gate: gate.clone() },
            Session {
                server: "fs".into(),
                audience: "mcp:fs".into(),
                parent: Some("p".into()),
                keys: KeyRing::new(),
                holder: None,
            },
            Box::new(FixedClock::new(0)),
        ));
        let (client, proxy_client) = duplex(1 << 16);
        let (proxy_server, server) = duplex(1 << 16);
        let (pc_r, pc_w) = tokio::io::split(proxy_client);
        let (ps_r, ps_w) = tokio::io::split(proxy_server);
        let (c_r, client_w) = tokio::io::split(client);
        let (s_r, server_w) = tokio::io::split(server);
        let run = tokio::spawn(run(
            gov,
            BufReader::new(pc_r),
            pc_w,
            ps_w,
            BufReader::new(ps_r),
        ));
        Rig {
            client_w,
            client_r: BufReader::new(c_r).lines(),
            server_w,
            server_r: BufReader::new(s_r).lines(),
            run,
            gate,
        }
    }

    async fn send(w: &mut WriteHalf<DuplexStream>, line: &str) {
        w.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    }

    async fn next(r: &mut LinesOf) -> String {
        tokio::time::timeout(Duration::from_secs(5), r.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }

    /// A request reusing the id of one still waiting is refused, not
    /// forwarded: else the first one's answer (here a tools/list, filtered)
    /// would be taken for the second's and pass unfiltered.
    #[tokio::test]
    async fn a_request_id_in_use_is_refused_and_the_waiting_one_keeps_its_answer() {
        let mut r = rig(false);
        let list = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#;
        send(&mut r.client_w, list).await;
        assert_eq!(next(&mut r.server_r).await, list);
        send(
            &mut r.client_w,
            r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
        )
        .await;
        let v: Value = serde_json::from_str(&next(&mut r.client_r).await).unwrap();
        assert_eq!(
            (&v["id"], &v["error"]["code"]),
            (&json!(7), &json!(INVALID_REQUEST)),
            "{v}"
        );
        send(
            &mut r.server_w,
            r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"ok_read"},{"name":"write"}]}}"#,
        )
        .await;
        let v: Value = serde_json::from_str(&next(&mut r.client_r).await).unwrap();
        assert_eq!(v["result"], json!({"tools": [{"name": "ok_read"}]}), "{v}");
        // The ping never reached the server: the next line it sees is this one.
        let ping = r#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#;
        send(&mut r.client_w, ping).await;
        assert_eq!(next(&mut r.server_r).await, ping);
    }

    #[tokio::test]
    async fn a_denied_call_is_answered_by_the_proxy_and_never_reaches_the_server() {
        let mut r = rig(true);
        send(&mut r.client_w, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/x"}}}"#).await;
        // A ping sent after the call passes it while the authority thinks: byte for byte.
        let ping = r#"{"jsonrpc":"2.0","id":"p", "method":"ping"}"#;
        send(&mut r.client_w, ping).await;
        assert_eq!(next(&mut r.server_r).await, ping);
        send(&mut r.server_w, r#"{"jsonrpc":"2.0","id":"p","result":{}}"#).await;
        assert_eq!(
            next(&mut r.client_r).await,
            r#"{"jsonrpc":"2.0","id":"p","result":{}}"#
        );
        // Then the authority decides, and the denial comes from the proxy.
        r.gate.add_permits(1);
        let v: Value = serde_json::from_str(&next(&mut r.client_r).await).unwrap();
        assert_eq!(v["id"], 1);
        assert_eq!(v["result"]["isError"], true);
        assert_eq!(
            v["result"]["content"][0]["text"],
            "denied: policy_denied: no permit applies"
        );
        // A server's own request is decided too: denied here, so the server
        // gets the error and the client never sees it; a notification and a
        // ping pass as they are.
        let sampling = r#"{"jsonrpc":"2.0","id":9,"method":"sampling/createMessage","params":{}}"#;
        send(&mut r.server_w, sampling).await;
        r.gate.add_permits(1);
        let v: Value = serde_json::from_str(&next(&mut r.server_r).await).unwrap();
        assert_eq!(
            (
                &v["id"],
                &v["error"]["code"],
                &v["error"]["data"]["writ/reason"]
            ),
            (
                &json!(9),
                &json!(crate::message::DENIED),
                &json!("policy_denied")
            ),
            "{v}"
        );
        let note = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#;
        send(&mut r.server_w, note).await;
        assert_eq!(next(&mut r.client_r).await, note);
        let ping = r#"{"jsonrpc":"2.0","id":10,"method":"ping"}"#;
        send(&mut r.server_w, ping).await;
        assert_eq!(next(&mut r.client_r).await, ping);
        // The client's answer to the denied sampling request (or to any
        // request the server did not send it) never reaches the server; its
        // answer to the ping does.
        send(
            &mut r.client_w,
            r#"{"jsonrpc":"2.0","id":9,"result":{"forged":true}}"#,
        )
        .await;
        send(&mut r.client_w, r#"{"jsonrpc":"2.0","id":10,"result":{}}"#).await;
        assert_eq!(
            next(&mut r.server_r).await,
            r#"{"jsonrpc":"2.0","id":10,"result":{}}"#
        );
        // A read of a resource is decided like a call, and its denial is a
        // JSON-RPC error (not a tool result).
        send(
            &mut r.client_w,
            r#"{"jsonrpc":"2.0","id":11,"method":"resources/read","params":{"uri":"file:///etc/shadow"}}"#,
        )
        .await;
        r.gate.add_permits(1);
        let v: Value = serde_json::from_str(&next(&mut r.client_r).await).unwrap();
        assert_eq!(
            (&v["id"], &v["error"]["code"]),
            (&json!(11), &json!(crate::message::DENIED)),
            "{v}"
        );
        // Keys another parser reads as one are refused, whatever the method.
        send(
            &mut r.client_w,
            r#"{"jsonrpc":"2.0","id":12,"method":"ping","Method":"tools/call","params":{"name":"write_file"}}"#,
        )
        .await;
        let v: Value = serde_json::from_str(&next(&mut r.client_r).await).unwrap();
        assert_eq!(
            (&v["id"], &v["error"]["code"]),
            (&json!(12), &json!(INVALID_REQUEST)),
            "{v}"
        );
        // The client closes: the server saw nothing but the ping.
        r.client_w.shutdown().await.unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(1), r.server_r.next_line())
                .await
                .unwrap()
                .unwrap(),
            None
        );
        drop(r.server_w);
        assert_eq!(r.run.await.unwrap(), End::ClientClosed);
    }

    #[tokio::test]
    async fn tools_list_is_filtered_and_bad_input_answered() {
        let mut r = rig(false);
        send(
            &mut r.client_w,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        )
        .await;
        next(&mut r.server_r).await;
        send(&mut r.server_w, r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"ok_read"},{"name":"write"},{"name":"ok_list"}],"nextCursor":"c"}}"#).await;
        let v: Value = serde_json::from_str(&next(&mut r.client_r).await).unwrap();
        assert_eq!(
            v["result"],
            json!({"tools": [{"name": "ok_read"}, {"name": "ok_list"}], "nextCursor": "c"})
        );
        send(&mut r.client_w, "{not json").await;
        let v: Value = serde_json::from_str(&next(&mut r.client_r).await).unwrap();
        assert_eq!(v["error"]["code"], crate::message::PARSE_ERROR);
        send(
            &mut r.client_w,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"arguments":{}}}"#,
        )
        .await;
        let v: Value = serde_json::from_str(&next(&mut r.client_r).await).unwrap();
        assert_eq!(
            (v["id"].clone(), v["error"]["code"].clone()),
            (json!(3), json!(INVALID_PARAMS))
        );
    }

    #[tokio::test]
    async fn when_the_server_dies_pending_requests_get_errors() {
        let mut r = rig(false);
        send(
            &mut r.client_w,
            r#"{"jsonrpc":"2.0","id":5,"method":"resources/templates/list","params":{}}"#,
        )
        .await;
        next(&mut r.server_r).await;
        drop(r.server_w);
        drop(r.server_r);
        let v: Value = serde_json::from_str(&next(&mut r.client_r).await).unwrap();
        assert_eq!(
            (v["id"].clone(), v["error"]["code"].clone()),
            (json!(5), json!(SERVER_GONE))
        );
        assert_eq!(r.run.await.unwrap(), End::ServerExited { pending: 1 });
    }
}
