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
                screen_result: false,
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

/// Send `line` into one side and see it come out of the other, byte for byte.
async fn passes(w: &mut WriteHalf<DuplexStream>, r: &mut LinesOf, line: &str) {
    send(w, line).await;
    assert_eq!(next(r).await, line);
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
    passes(&mut r.client_w, &mut r.server_r, list).await;
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
    passes(&mut r.client_w, &mut r.server_r, ping).await;
}

#[tokio::test]
async fn a_denied_call_is_answered_by_the_proxy_and_never_reaches_the_server() {
    let mut r = rig(true);
    send(&mut r.client_w, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/x"}}}"#).await;
    // A ping sent after the call passes it while the authority thinks: byte
    // for byte. The call named a tool the session has not seen listed: the
    // proxy lists the tools itself (its own id), and the server answers.
    let ping = r#"{"jsonrpc":"2.0","id":"p", "method":"ping"}"#;
    send(&mut r.client_w, ping).await;
    let mut got_ping = false;
    for _ in 0..2 {
        let line = next(&mut r.server_r).await;
        if line == ping {
            got_ping = true;
            continue;
        }
        let own: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(own["method"], "tools/list", "{own}");
        assert!(
            own["id"].as_str().unwrap().starts_with("writ-mcp-proxy/"),
            "{own}"
        );
        let tools = json!({"jsonrpc": "2.0", "id": own["id"], "result": {"tools": [
            {"name": "write_file", "description": "writes", "inputSchema": {"type": "object"}}]}});
        send(&mut r.server_w, &tools.to_string()).await;
    }
    assert!(got_ping);
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
    passes(&mut r.server_w, &mut r.client_r, note).await;
    let ping = r#"{"jsonrpc":"2.0","id":10,"method":"ping"}"#;
    passes(&mut r.server_w, &mut r.client_r, ping).await;
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

/// A server that answers a list twice, or with an id of another type, gets
/// nothing past the filter: only the filtered answer reaches the client.
#[tokio::test]
async fn a_second_or_mistyped_answer_of_the_server_never_reaches_the_client() {
    let mut r = rig(false);
    let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
    passes(&mut r.client_w, &mut r.server_r, list).await;
    let tools =
        r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"ok_read"},{"name":"write_file"}]}}"#;
    let raw_again = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"write_file","description":"raw"}]}}"#;
    let mistyped = r#"{"jsonrpc":"2.0","id":"3","result":{"tools":[{"name":"write_file","description":"raw"}]}}"#;
    send(&mut r.server_w, tools).await;
    send(&mut r.server_w, raw_again).await;
    send(&mut r.server_w, mistyped).await;
    let v: Value = serde_json::from_str(&next(&mut r.client_r).await).unwrap();
    assert_eq!(v["result"]["tools"], json!([{"name": "ok_read"}]), "{v}");
    // Nothing else comes: the next line the client reads is the ping's answer.
    let ping = r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#;
    passes(&mut r.client_w, &mut r.server_r, ping).await;
    passes(
        &mut r.server_w,
        &mut r.client_r,
        r#"{"jsonrpc":"2.0","id":"p","result":{}}"#,
    )
    .await;
}

/// A tool listed twice in one answer (two definitions under one name) is
/// left out: the client would keep one of them, the probe saw the other.
#[tokio::test]
async fn a_tool_listed_twice_is_left_out_of_the_list() {
    let mut r = rig(false);
    let list = r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#;
    passes(&mut r.client_w, &mut r.server_r, list).await;
    send(
        &mut r.server_w,
        r#"{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"ok_a","description":"changed"},{"name":"ok_b"},{"name":"ok_a","description":"pinned"}]}}"#,
    )
    .await;
    let v: Value = serde_json::from_str(&next(&mut r.client_r).await).unwrap();
    assert_eq!(v["result"]["tools"], json!([{"name": "ok_b"}]), "{v}");
}
