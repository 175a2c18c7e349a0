//! Screened tool results (docs/spec/api.md, "Screened tool results"): when
//! some policy names `Action::"tool_result"`, the authority says so in the
//! allow of each `tools/call`, and the proxy decides the server's answer
//! before the client sees it. A denied result is withheld: the client gets a
//! tool error naming the reason instead.
//!
//! What a policy sees is `context.result`: `text`, every key and every
//! string or number of the answer (its `result` and `error` whole, in
//! document order: text content, `structuredContent`, resource links,
//! `_meta`, fields of any name or case, and the UTF-8 text of base64
//! `blob`s), one per line; and `is_error`. The client gets the answer the
//! policy saw, byte for byte, so nothing in it escapes the screen. An
//! answer whose text is longer than [`RESULT_TEXT_MAX`] is withheld
//! unscreened: a forbid that cannot see the whole text cannot be evaluated,
//! and a tail past a bound is where a result would hide what it carries.
//! Also `context.arguments`, the call's, as for the call.

use serde_json::{json, Map, Value};
use writ_artifact::{canonical, Denial, ReasonCode};

use crate::methods::{uid, Ask};

/// The longest text a screened result may carry, in bytes (UTF-8).
pub const RESULT_TEXT_MAX: usize = 64 * 1024;
/// The longest screened text once escaped as JSON: the authorize request
/// that carries it must stay under the authority's 256 KiB decision body.
const RESULT_JSON_MAX: usize = 192 * 1024;

/// The text of an answer, or `Err(length so far)` once past
/// [`RESULT_TEXT_MAX`] (collection stops there).
struct Text {
    lines: Vec<String>,
    len: usize,
}

impl Text {
    fn push(&mut self, s: String) -> Result<(), usize> {
        self.len += s.len() + usize::from(!self.lines.is_empty());
        if self.len > RESULT_TEXT_MAX {
            return Err(self.len);
        }
        self.lines.push(s);
        Ok(())
    }

    /// Every key and string or number under `v`; a `blob` that is base64 of
    /// UTF-8 also as its text.
    fn walk(&mut self, v: &Value) -> Result<(), usize> {
        match v {
            Value::String(s) => self.push(s.clone()),
            Value::Number(n) => self.push(n.to_string()),
            Value::Array(a) => a.iter().try_for_each(|x| self.walk(x)),
            Value::Object(m) => {
                for (k, x) in m {
                    self.push(k.clone())?;
                    self.walk(x)?;
                    if k == "blob" {
                        if let Some(text) = x.as_str().and_then(blob_text) {
                            self.push(text)?;
                        }
                    }
                }
                Ok(())
            }
            Value::Bool(_) | Value::Null => Ok(()),
        }
    }
}

/// The UTF-8 text a base64 blob holds, if it is text.
fn blob_text(b64: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

/// Every key and string or number of a JSON-RPC answer but its `jsonrpc`
/// and `id`, one per line; `Err(length)` past [`RESULT_TEXT_MAX`].
pub fn result_text(response: &Value) -> Result<String, usize> {
    let mut t = Text {
        lines: Vec::new(),
        len: 0,
    };
    if let Some(m) = response.as_object() {
        for (k, v) in m.iter().filter(|(k, _)| *k != "jsonrpc" && *k != "id") {
            t.push(k.clone())?;
            t.walk(v)?;
        }
    }
    Ok(t.lines.join("\n"))
}

fn too_long(what: &str, len: usize, max: usize) -> Denial {
    Denial::new(
        ReasonCode::PolicyDenied,
        format!(
            "the tool's result was withheld: its text is longer ({what} {len} bytes) than the \
             {max} bytes a policy on tool results is given"
        ),
    )
}

/// The decision a result of `tool` (called under writ `call` with
/// `arguments`) asks for: action `tool_result`, the call's resource,
/// `context.result` and `context.arguments`, and as the request the call's
/// jti with the digest of the answer, so that the log binds the exact
/// result decided. `Err`: a result that cannot be screened (withheld).
pub fn result_ask(
    server: &str,
    tool: &str,
    arguments: &Value,
    call: &str,
    response: &Value,
) -> Result<Ask, Denial> {
    let text = result_text(response).map_err(|len| too_long("over", len, RESULT_TEXT_MAX))?;
    let escaped = serde_json::to_string(&text).map_or(usize::MAX, |j| j.len());
    if escaped > RESULT_JSON_MAX {
        return Err(too_long("as JSON", escaped, RESULT_JSON_MAX));
    }
    let is_error = response
        .get("result")
        .is_none_or(|r| r.get("isError").and_then(Value::as_bool) == Some(true));
    let digest = canonical::digest_value(response)
        .map_err(|e| Denial::new(ReasonCode::MalformedArtifact, e))?;
    let mut context = Map::new();
    context.insert("server".into(), json!(server));
    context.insert("tool".into(), json!(tool));
    context.insert("arguments".into(), arguments.clone());
    context.insert("result".into(), json!({"text": text, "is_error": is_error}));
    Ok(Ask {
        action: writ_api::TOOL_RESULT_ACTION,
        resource: uid("Tool", server, tool),
        context,
        request: json!({"call": call, "result_digest": digest}),
        tool_call: true,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn every_key_and_value_of_an_answer_is_screened() {
        let r = json!({"jsonrpc": "2.0", "id": 1, "result": {
            "content": [
                {"type": "text", "text": "one"},
                {"type": "resource", "resource": {"uri": "file:///a", "blob": "dHdv"}},
                {"type": "resource_link", "name": "three"}
            ],
            "Content": [{"Text": "four"}],
            "structuredContent": {"k": "five", "n": 6},
            "_meta": {"m": "seven"}
        }, "error": {"code": -1, "message": "eight", "data": "nine"}});
        let t = result_text(&r).unwrap();
        for w in [
            "one", "two", "three", "four", "five", "6", "seven", "eight", "nine", "k", "Text",
        ] {
            assert!(t.lines().any(|l| l == w), "{w} not in {t:?}");
        }
        assert!(!t.lines().any(|l| l == "2.0"), "{t:?}");
        let ask = result_ask("fs", "read", &json!({"path": "/a"}), "j1", &r).unwrap();
        assert_eq!(ask.context["result"]["is_error"], false);
        assert_eq!(ask.context["arguments"]["path"], "/a");
        assert_eq!(ask.resource, "Tool::\"fs/read\"");
        assert_eq!(ask.request["call"], "j1");
        let e = json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "x"}});
        let ask = result_ask("fs", "read", &json!({}), "j1", &e).unwrap();
        assert_eq!(ask.context["result"]["is_error"], true);
    }

    #[test]
    fn a_result_too_long_to_screen_is_withheld() {
        let long = "x".repeat(RESULT_TEXT_MAX);
        let r = json!({"result": {"content": [{"type": "text", "text": long}]}});
        let d = result_ask("fs", "read", &json!({}), "j", &r).unwrap_err();
        assert_eq!(d.reason, ReasonCode::PolicyDenied);
        let fits = json!({"result": {"content": [{"text": "x".repeat(RESULT_TEXT_MAX - 40)}]}});
        assert!(result_ask("fs", "read", &json!({}), "j", &fits).is_ok());
        // Control characters escape to six bytes each: bounded as JSON too.
        let escapes = json!({"result": {"content": [{"text": "\u{1}".repeat(40_000)}]}});
        let d = result_ask("fs", "read", &json!({}), "j", &escapes).unwrap_err();
        assert!(d.message.contains("as JSON"), "{}", d.message);
    }
}
