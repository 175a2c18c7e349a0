//! Screened tool results (docs/spec/api.md, "Screened tool results"): when
//! some policy names `Action::"tool_result"`, the authority says so in the
//! allow of each `tools/call`, and the proxy decides the server's answer
//! before the client sees it. A denied result is withheld: the client gets a
//! tool error naming the reason instead.
//!
//! What a policy sees is `context.result`: `text`, every text the answer
//! carries (text content, embedded text resources, `structuredContent` as
//! JSON, a JSON-RPC error's message), joined by newlines; and `is_error`.
//! An answer whose text is longer than [`RESULT_TEXT_MAX`] is withheld
//! unscreened: a forbid that cannot see the whole text cannot be evaluated,
//! and a tail past a bound is where a result would hide what it carries.

use serde_json::{json, Map, Value};
use writ_artifact::{canonical, Denial, ReasonCode};

use crate::methods::{uid, Ask};

/// The longest text a screened result may carry, in bytes (UTF-8). The
/// authorize request that carries it must stay under the authority's
/// 256 KiB decision body, escapes included.
pub const RESULT_TEXT_MAX: usize = 64 * 1024;

/// Every text of a JSON-RPC answer to `tools/call`, joined by newlines.
pub fn result_text(response: &Value) -> String {
    let mut texts: Vec<String> = Vec::new();
    if let Some(result) = response.get("result") {
        for item in result
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = item.get("text").and_then(Value::as_str) {
                texts.push(t.to_owned());
            }
            if let Some(t) = item
                .get("resource")
                .and_then(|r| r.get("text"))
                .and_then(Value::as_str)
            {
                texts.push(t.to_owned());
            }
        }
        if let Some(s) = result.get("structuredContent") {
            texts.push(s.to_string());
        }
    } else if let Some(m) = response
        .get("error")
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
    {
        texts.push(m.to_owned());
    }
    texts.join("\n")
}

/// The decision a result of `tool` (called under writ `call`) asks for:
/// action `tool_result`, the call's resource, `context.result`, and as the
/// request the call's jti with the digest of the answer, so that the log
/// binds the exact result decided. `Err`: a result that cannot be screened
/// (withheld).
pub fn result_ask(server: &str, tool: &str, call: &str, response: &Value) -> Result<Ask, Denial> {
    let text = result_text(response);
    if text.len() > RESULT_TEXT_MAX {
        return Err(Denial::new(
            ReasonCode::PolicyDenied,
            format!(
                "the tool's result was withheld: its text ({} bytes) is longer than the {} bytes \
                 a policy on tool results is given",
                text.len(),
                RESULT_TEXT_MAX
            ),
        ));
    }
    let is_error = response
        .get("result")
        .is_none_or(|r| r.get("isError").and_then(Value::as_bool) == Some(true));
    let answer = response
        .get("result")
        .or_else(|| response.get("error"))
        .unwrap_or(&Value::Null);
    let digest = canonical::digest_value(answer)
        .map_err(|e| Denial::new(ReasonCode::MalformedArtifact, e))?;
    let mut context = Map::new();
    context.insert("server".into(), json!(server));
    context.insert("tool".into(), json!(tool));
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
    fn every_text_of_a_result_is_screened() {
        let r = json!({"jsonrpc": "2.0", "id": 1, "result": {
            "content": [
                {"type": "text", "text": "one"},
                {"type": "image", "data": "AAAA", "mimeType": "image/png"},
                {"type": "resource", "resource": {"uri": "file:///a", "text": "two"}}
            ],
            "structuredContent": {"k": "three"}
        }});
        assert_eq!(result_text(&r), "one\ntwo\n{\"k\":\"three\"}");
        let e = json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "four"}});
        assert_eq!(result_text(&e), "four");
        let ask = result_ask("fs", "read", "j1", &e).unwrap();
        assert_eq!(ask.context["result"]["is_error"], true);
        assert_eq!(ask.resource, "Tool::\"fs/read\"");
        assert_eq!(ask.request["call"], "j1");
    }

    #[test]
    fn a_result_too_long_to_screen_is_withheld() {
        let long = "x".repeat(RESULT_TEXT_MAX + 1);
        let r = json!({"result": {"content": [{"type": "text", "text": long}]}});
        let d = result_ask("fs", "read", "j", &r).unwrap_err();
        assert_eq!(d.reason, ReasonCode::PolicyDenied);
        let fits =
            json!({"result": {"content": [{"type": "text", "text": "x".repeat(RESULT_TEXT_MAX)}]}});
        let ask = result_ask("fs", "read", "j", &fits).unwrap();
        assert_eq!(ask.context["result"]["is_error"], false);
    }
}
