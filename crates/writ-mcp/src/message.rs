//! JSON-RPC 2.0 messages as MCP uses them: classification of a parsed line,
//! and the answers the proxy writes itself. Messages the proxy passes on are
//! forwarded as the exact bytes it read, never re-serialized.

use serde_json::{json, Value};
use writ_artifact::Denial;

/// JSON-RPC error codes the proxy answers with.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const INVALID_PARAMS: i64 = -32602;
/// Implementation-defined server error: the MCP server exited (or its pipe
/// closed) before it answered.
pub const SERVER_GONE: i64 = -32000;
/// Implementation-defined server error: writ denied the request (its
/// reason code is in `data["writ/reason"]`).
pub const DENIED: i64 = -32001;

/// The method whose denials are tool errors rather than JSON-RPC errors.
pub const TOOLS_CALL: &str = "tools/call";

/// What a message is.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Has `method` and `id`: expects a response.
    Request { id: Value, method: String },
    /// Has `method`, no `id`.
    Notification { method: String },
    /// Has `id` and `result` or `error`.
    Response { id: Value },
    /// Not JSON, a batch (MCP 2025-06-18 removed batching), or no JSON-RPC
    /// message at all; the text says which.
    Invalid { code: i64, why: String },
}

/// A line read from one side: its exact bytes, its parsed value, its kind.
#[derive(Debug, Clone)]
pub struct Message {
    pub raw: Vec<u8>,
    pub value: Value,
    pub kind: Kind,
}

impl Message {
    pub fn parse(raw: Vec<u8>) -> Message {
        let value: Value = match serde_json::from_slice(&raw) {
            Ok(v) => v,
            Err(e) => {
                return Message {
                    raw,
                    value: Value::Null,
                    kind: Kind::Invalid {
                        code: PARSE_ERROR,
                        why: format!("not JSON: {e}"),
                    },
                }
            }
        };
        let mut kind = classify(&value);
        // A raw carriage return can only be whitespace between JSON tokens
        // (JSON strings escape it), and a server that ends lines at `\r` too
        // (Python's and Node's line readers do) would read the rest of the
        // line as further messages, which the proxy never decided.
        if raw.contains(&b'\r') {
            return Message {
                raw,
                value,
                kind: Kind::Invalid {
                    code: INVALID_REQUEST,
                    why: "a message with a carriage return inside is refused: servers that end \
                          lines at \\r would read more than one message in it"
                        .into(),
                },
            };
        }
        // The proxy decides (or lets pass) on its reading of a message and
        // the other side acts on its own: refuse, whatever the method, what
        // two JSON parsers may read differently (a key named twice, or two
        // keys one under case folding, at any depth; `keys`).
        if let Err(e) = crate::keys::check_one_meaning(&raw) {
            kind = Kind::Invalid {
                code: INVALID_REQUEST,
                why: format!(
                    "a message whose keys another JSON parser reads differently is refused: {e}"
                ),
            };
        }
        Message { raw, value, kind }
    }
}

/// Classify a parsed JSON-RPC message.
pub fn classify(v: &Value) -> Kind {
    let invalid = |why: &str| Kind::Invalid {
        code: INVALID_REQUEST,
        why: why.to_owned(),
    };
    let Some(obj) = v.as_object() else {
        return if v.is_array() {
            invalid("JSON-RPC batches are not part of MCP (removed in 2025-06-18)")
        } else {
            invalid("a JSON-RPC message must be a JSON object")
        };
    };
    let id = obj.get("id").filter(|i| valid_id(i));
    match (obj.get("method"), id) {
        (Some(Value::String(m)), Some(id)) => Kind::Request {
            id: id.clone(),
            method: m.clone(),
        },
        (Some(Value::String(m)), None) if !obj.contains_key("id") => {
            if m.starts_with("notifications/") {
                Kind::Notification { method: m.clone() }
            } else {
                // A request sent as a notification is not answered, so the
                // proxy could not decide it; a server that ran it anyway
                // (some SDKs run a handler for either) would run it
                // ungoverned.
                invalid("a message without an id (a notification) whose method is not notifications/... is refused: writ mcp-proxy forwards only requests it has decided")
            }
        }
        (Some(_), _) => {
            invalid("`method` must be a string and `id` a string or an integer of at most 2^53 - 1")
        }
        (None, Some(id)) if obj.contains_key("result") || obj.contains_key("error") => {
            Kind::Response { id: id.clone() }
        }
        (None, _) => invalid("neither a request, a notification nor a response"),
    }
}

/// The largest integer every JSON reader holds exactly (a JavaScript number).
const ID_INTEGER_MAX: i64 = (1 << 53) - 1;

/// An id the proxy and any server read as the same value: a string, or an
/// integer that a JavaScript server does not round (`1.0`, `1e0` or
/// 2^53 + 1 would come back written otherwise, and the answer would match
/// no waiting request: an unfiltered `tools/list`, a call without finish).
pub fn valid_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n
            .as_i64()
            .is_some_and(|i| (-ID_INTEGER_MAX..=ID_INTEGER_MAX).contains(&i)),
        _ => false,
    }
}

/// A JSON-RPC error response.
pub fn error_response(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The text a denied tool call answers with: `denied: <reason>: <message>`,
/// as the CLI prints denials.
pub fn denial_text(d: &Denial) -> String {
    format!("denied: {}: {}", d.reason, d.message)
}

/// A tool result with `isError: true` (a tool execution error in MCP terms,
/// which the client shows to the model) carrying the denial's reason code and
/// message, plus the reason in `_meta` for programs.
pub fn tool_denial_response(id: &Value, d: &Denial) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": {
            "content": [{"type": "text", "text": denial_text(d)}],
            "isError": true,
            "_meta": {"writ/reason": d.reason.as_str(), "writ/message": d.message},
        }
    })
}

/// A JSON-RPC error answering a denied request other than a tool call:
/// code [`DENIED`], the text `denied: <reason>: <message>`, the reason and
/// message in `data`.
pub fn denied_response(id: &Value, d: &Denial) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": DENIED,
            "message": denial_text(d),
            "data": {"writ/reason": d.reason.as_str(), "writ/message": d.message},
        }
    })
}

/// Bytes of a value the proxy writes (one line: serde_json writes no newline).
pub fn to_line(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use writ_artifact::ReasonCode;

    fn check(line: &str, expected: Kind) {
        assert_eq!(
            Message::parse(line.as_bytes().to_vec()).kind,
            expected,
            "{line}"
        );
    }

    #[test]
    fn messages_are_classified() {
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            Kind::Request {
                id: json!(1),
                method: "tools/call".into(),
            },
        );
        check(
            r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#,
            Kind::Request {
                id: json!("a"),
                method: "ping".into(),
            },
        );
        check(
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
            Kind::Notification {
                method: "notifications/cancelled".into(),
            },
        );
        check(
            r#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
            Kind::Response { id: json!(7) },
        );
        check(
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":1,"message":"x"}}"#,
            Kind::Response { id: json!(7) },
        );
        for bad in [
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"}]"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"write_file"}}"#,
            r#"{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"file:///etc/shadow"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_text_file","name":"write_file"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"path":"/p","path":"/etc/shadow"}}}"#,
            "3",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\r{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\"}\r}",
            r#"{"id":null,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1.0,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":9007199254740993,"method":"tools/list"}"#,
            r#"{"id":1}"#,
        ] {
            assert!(
                matches!(
                    Message::parse(bad.as_bytes().to_vec()).kind,
                    Kind::Invalid {
                        code: INVALID_REQUEST,
                        ..
                    }
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            Message::parse(b"{nope".to_vec()).kind,
            Kind::Invalid {
                code: PARSE_ERROR,
                ..
            }
        ));
    }

    #[test]
    fn a_denial_is_a_tool_error_naming_the_reason() {
        let d = Denial::new(ReasonCode::PolicyDenied, "no permit applies");
        let r = tool_denial_response(&json!(4), &d);
        assert_eq!(r["id"], 4);
        assert_eq!(r["result"]["isError"], true);
        assert_eq!(
            r["result"]["content"][0]["text"],
            "denied: policy_denied: no permit applies"
        );
        assert_eq!(r["result"]["_meta"]["writ/reason"], "policy_denied");
    }
}
