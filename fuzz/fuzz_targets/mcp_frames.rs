//! MCP stdio frames as `writ mcp-proxy` reads them from a client or a
//! server: the bytes are cut into messages by `framing::read_message` (with a
//! limit taken from the first byte, so the oversized path is reached), each
//! message is classified, a `tools/call` has its `{name, arguments}` taken
//! out, and a `tools/list` result is turned into a Cedar schema fragment,
//! which must always be a schema Cedar accepts (tool names and argument
//! names come from an untrusted server). Nothing panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use writ_mcp::framing::{read_message, FrameError};
use writ_mcp::govern::call_of;
use writ_mcp::message::{Kind, Message};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let limit = 16 + usize::from(first) * 64;
    let mut reader = stream;
    runtime().block_on(async {
        loop {
            match read_message(&mut reader, limit).await {
                Ok(Some(raw)) => {
                    assert!(raw.len() <= limit, "a message longer than the limit");
                    assert!(!raw.contains(&b'\n'), "a message holding a line end");
                    check(Message::parse(raw));
                }
                Ok(None) => break,
                Err(FrameError::TooLarge { .. }) => continue,
                Err(FrameError::Io(e)) => panic!("reading a byte slice failed: {e}"),
            }
        }
    });
});

fn check(m: Message) {
    match &m.kind {
        Kind::Request { method, .. } if method == "tools/call" => {
            if let Ok((name, _)) = call_of(m.value.get("params")) {
                assert!(!name.is_empty());
            }
        }
        Kind::Response { .. } => {
            if let Some(tools) = m
                .value
                .get("result")
                .and_then(|r| r.get("tools"))
                .and_then(|t| t.as_array())
            {
                let f = writ_mcp::schema::fragment("fuzz", tools);
                if let Err(e) = cedar_policy::SchemaFragment::from_cedarschema_str(&f.text) {
                    panic!("the fragment is not a Cedar schema: {e}\n{}", f.text);
                }
            }
        }
        _ => {}
    }
}
