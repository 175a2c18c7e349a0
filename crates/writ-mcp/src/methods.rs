//! Which MCP requests the proxy decides, and the Cedar request each becomes.
//!
//! Every request a client sends that makes the server act or disclose
//! something is decided, logged and (on allow) a child execution of the
//! session; nothing passes that a policy did not permit. What passes
//! undecided: `initialize`, `ping`, the lists of the specification
//! (`tools/list`, `resources/list`, `resources/templates/list`,
//! `prompts/list`; the first two filtered by probes), `resources/unsubscribe`
//! (it only stops updates) and notifications (`notifications/...`: a
//! message without an id and another method is refused). Requests the server sends the
//! client (sampling, elicitation, roots) are decided the same way, as
//! `Action::"server_request"`, so that each is in the log; only `ping`
//! passes.
//!
//! | method | action | resource |
//! | --- | --- | --- |
//! | `tools/call` | `call_tool` | `Tool::"SERVER/TOOL"` |
//! | `resources/read` | `read_resource` | `Resource::"SERVER/URI"` |
//! | `resources/subscribe` | `subscribe_resource` | `Resource::"SERVER/URI"` |
//! | `prompts/get` | `get_prompt` | `Prompt::"SERVER/NAME"` |
//! | `completion/complete` | `complete` | the `Prompt` or `Resource` it refers to |
//! | `logging/setLevel` | `set_log_level` | `McpServer::"SERVER"` |
//! | any other request | `mcp_request` | `McpMethod::"SERVER/METHOD"` |
//! | a server's request | `server_request` | `McpMethod::"SERVER/METHOD"` |

use serde_json::{json, Map, Value};
use writ_api::NAME_BYTES_MAX;
use writ_artifact::canonical;

/// A request whose params are not what its method needs (a `tools/call`
/// without a tool name, arguments that are not an object, ...): answered
/// with JSON-RPC "invalid params", never forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadCall(pub String);

pub const CALL_TOOL: &str = writ_api::CALL_TOOL_ACTION;
pub const READ_RESOURCE: &str = "Action::\"read_resource\"";
pub const SUBSCRIBE_RESOURCE: &str = "Action::\"subscribe_resource\"";
pub const GET_PROMPT: &str = "Action::\"get_prompt\"";
pub const COMPLETE: &str = "Action::\"complete\"";
pub const SET_LOG_LEVEL: &str = "Action::\"set_log_level\"";
pub const MCP_REQUEST: &str = "Action::\"mcp_request\"";
pub const SERVER_REQUEST: &str = "Action::\"server_request\"";

/// Who sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    Client,
    Server,
}

/// A request the proxy decides: what it asks the authority.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub action: &'static str,
    pub resource: String,
    /// Extra Cedar context (writ adds `request`, `lineage`, ...).
    pub context: Map<String, Value>,
    /// What the writ binds (by digest): the exact call, or the method and
    /// the digest of its params.
    pub request: Value,
    /// A `tools/call`: a denial is answered as a tool error (`isError`),
    /// which the model sees; any other denial is a JSON-RPC error.
    pub tool_call: bool,
}

/// `TYPE::"SERVER/NAME"`.
pub fn uid(entity: &str, server: &str, name: &str) -> String {
    format!(
        "{entity}::{}",
        serde_json::to_string(&format!("{server}/{name}")).unwrap_or_default()
    )
}

fn params_obj(params: Option<&Value>) -> Result<&Map<String, Value>, BadCall> {
    match params {
        Some(Value::Object(m)) => Ok(m),
        _ => Err(BadCall("this request needs params (an object)".into())),
    }
}

fn string_param<'a>(p: &'a Map<String, Value>, key: &str) -> Result<&'a str, BadCall> {
    match p.get(key).and_then(Value::as_str) {
        Some(s) if !s.is_empty() && s.len() <= NAME_BYTES_MAX / 2 => Ok(s),
        Some(_) => Err(BadCall(format!(
            "`{key}` must be 1 to {} bytes",
            NAME_BYTES_MAX / 2
        ))),
        None => Err(BadCall(format!("this request needs a string `{key}`"))),
    }
}

/// `{"method", "params": sha256:...}`: the writ binds the exact params
/// without carrying them (a sampling request can be large).
fn digested(method: &str, params: Option<&Value>) -> Result<Value, BadCall> {
    let d = canonical::digest_value(params.unwrap_or(&Value::Null))
        .map_err(|e| BadCall(format!("params cannot be digested: {e}")))?;
    Ok(json!({"method": method, "params": d}))
}

/// The exact call a writ binds: `{name, arguments}` (arguments default to
/// `{}`); the `request` of a `tools/call`'s authorize request.
pub fn call_of(params: Option<&Value>) -> Result<(String, Map<String, Value>), BadCall> {
    let p = params
        .and_then(Value::as_object)
        .ok_or_else(|| BadCall("tools/call needs params {name, arguments}".into()))?;
    let name = p
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| BadCall("tools/call params need a string `name`".into()))?;
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(BadCall(format!(
            "a tool name must be 1 to {NAME_BYTES_MAX} bytes"
        )));
    }
    let args = match p.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(BadCall("tools/call `arguments` must be an object".into())),
    };
    Ok((name.to_owned(), args))
}

/// The decision a `tools/call` of `tool` with `arguments` asks for.
pub fn tool_call(server: &str, tool: &str, arguments: Map<String, Value>) -> Ask {
    let mut context = Map::new();
    context.insert("server".into(), json!(server));
    context.insert("tool".into(), json!(tool));
    context.insert("arguments".into(), Value::Object(arguments.clone()));
    Ask {
        action: CALL_TOOL,
        resource: uid("Tool", server, tool),
        context,
        request: json!({"name": tool, "arguments": arguments}),
        tool_call: true,
    }
}

/// The decision a `resources/read` of `uri` asks for (also a probe of a
/// listed resource).
pub fn resource_read(server: &str, uri: &str) -> Ask {
    on_resource(server, READ_RESOURCE, "resources/read", uri)
}

fn on_resource(server: &str, action: &'static str, method: &str, uri: &str) -> Ask {
    let mut context = Map::new();
    context.insert("server".into(), json!(server));
    context.insert("uri".into(), json!(uri));
    Ask {
        action,
        resource: uid("Resource", server, uri),
        context,
        request: json!({"method": method, "uri": uri}),
        tool_call: false,
    }
}

/// `Ok(None)`: the request passes undecided. `Err`: its params are not what
/// the method needs; it is answered with "invalid params" and not forwarded.
pub fn ask_of(
    server: &str,
    method: &str,
    params: Option<&Value>,
    from: From,
) -> Result<Option<Ask>, BadCall> {
    let mut context = Map::new();
    context.insert("server".into(), json!(server));
    if from == From::Server {
        if method == "ping" {
            return Ok(None);
        }
        context.insert("method".into(), json!(method));
        return Ok(Some(Ask {
            action: SERVER_REQUEST,
            resource: uid("McpMethod", server, method),
            context,
            request: digested(method, params)?,
            tool_call: false,
        }));
    }
    if method.len() > NAME_BYTES_MAX / 2 {
        return Err(BadCall(format!(
            "a method name is at most {} bytes",
            NAME_BYTES_MAX / 2
        )));
    }
    let ask = match method {
        "initialize" | "ping" | "resources/unsubscribe" => return Ok(None),
        // The lists of the specification, no others: a server's own
        // `secrets/list` is decided like any other method.
        "tools/list" | "resources/list" | "resources/templates/list" | "prompts/list" => {
            return Ok(None)
        }
        "tools/call" => {
            let (tool, args) = call_of(params)?;
            tool_call(server, &tool, args)
        }
        "resources/read" => resource_read(server, string_param(params_obj(params)?, "uri")?),
        "resources/subscribe" => on_resource(
            server,
            SUBSCRIBE_RESOURCE,
            method,
            string_param(params_obj(params)?, "uri")?,
        ),
        "prompts/get" => prompt_get(server, params_obj(params)?, context)?,
        "completion/complete" => completion(server, params, context)?,
        "logging/setLevel" => {
            let level = string_param(params_obj(params)?, "level")?;
            context.insert("level".into(), json!(level));
            Ask {
                action: SET_LOG_LEVEL,
                resource: format!(
                    "McpServer::{}",
                    serde_json::to_string(server).unwrap_or_default()
                ),
                context,
                request: json!({"method": method, "level": level}),
                tool_call: false,
            }
        }
        other => {
            context.insert("method".into(), json!(other));
            Ask {
                action: MCP_REQUEST,
                resource: uid("McpMethod", server, other),
                context,
                request: digested(other, params)?,
                tool_call: false,
            }
        }
    };
    Ok(Some(ask))
}

/// The decision a `prompts/get` with params `p` asks for: the prompt, its
/// arguments.
fn prompt_get(
    server: &str,
    p: &Map<String, Value>,
    mut context: Map<String, Value>,
) -> Result<Ask, BadCall> {
    let name = string_param(p, "name")?;
    let arguments = match p.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(BadCall("prompts/get `arguments` must be an object".into())),
    };
    context.insert("prompt".into(), json!(name));
    context.insert("arguments".into(), Value::Object(arguments.clone()));
    Ok(Ask {
        action: GET_PROMPT,
        resource: uid("Prompt", server, name),
        context,
        request: json!({"method": "prompts/get", "name": name, "arguments": arguments}),
        tool_call: false,
    })
}

/// The decision a `completion/complete` asks for: on the prompt or
/// resource it refers to, the argument it completes in the context.
fn completion(
    server: &str,
    params: Option<&Value>,
    mut context: Map<String, Value>,
) -> Result<Ask, BadCall> {
    let p = params_obj(params)?;
    let r = p
        .get("ref")
        .and_then(Value::as_object)
        .ok_or_else(|| BadCall("completion/complete needs a `ref` object".into()))?;
    let resource = match r.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => uid("Prompt", server, string_param(r, "name")?),
        Some("ref/resource") => uid("Resource", server, string_param(r, "uri")?),
        _ => {
            return Err(BadCall(
                "`ref.type` must be ref/prompt or ref/resource".into(),
            ))
        }
    };
    if let Some(name) = p
        .get("argument")
        .and_then(|a| a.get("name"))
        .and_then(Value::as_str)
    {
        context.insert("argument".into(), json!(name));
    }
    Ok(Ask {
        action: COMPLETE,
        resource,
        context,
        request: digested("completion/complete", params)?,
        tool_call: false,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ask(method: &str, params: Value) -> Option<Ask> {
        ask_of("fs", method, Some(&params), From::Client).unwrap()
    }

    #[test]
    fn every_request_that_acts_or_discloses_is_decided() {
        for pass in [
            "initialize",
            "ping",
            "tools/list",
            "resources/list",
            "resources/templates/list",
            "prompts/list",
            "resources/unsubscribe",
        ] {
            assert_eq!(ask(pass, json!({})), None, "{pass}");
        }
        let a = ask("resources/read", json!({"uri": "file:///etc/shadow"})).unwrap();
        assert_eq!(
            (a.action, a.resource.as_str()),
            (READ_RESOURCE, "Resource::\"fs/file:///etc/shadow\"")
        );
        assert_eq!(a.context["uri"], "file:///etc/shadow");
        let a = ask("prompts/get", json!({"name": "p", "arguments": {"x": "1"}})).unwrap();
        assert_eq!(
            (a.action, a.resource.as_str()),
            (GET_PROMPT, "Prompt::\"fs/p\"")
        );
        let a = ask(
            "completion/complete",
            json!({"ref": {"type": "ref/resource", "uri": "file:///{x}"}, "argument": {"name": "x", "value": "a"}}),
        )
        .unwrap();
        assert_eq!(
            (a.action, a.resource.as_str()),
            (COMPLETE, "Resource::\"fs/file:///{x}\"")
        );
        let a = ask("logging/setLevel", json!({"level": "debug"})).unwrap();
        assert_eq!(
            (a.action, a.resource.as_str()),
            (SET_LOG_LEVEL, "McpServer::\"fs\"")
        );
        // What the proxy does not know is decided too (denied unless
        // permitted), a list of the server's own among it.
        let a = ask("secrets/list", json!({})).unwrap();
        assert_eq!(a.action, MCP_REQUEST);
        let a = ask("tasks/result", json!({"taskId": "t"})).unwrap();
        assert_eq!(
            (a.action, a.resource.as_str()),
            (MCP_REQUEST, "McpMethod::\"fs/tasks/result\"")
        );
        assert!(a.request["params"].as_str().unwrap().starts_with("sha256:"));
        let a = ask("tools/call", json!({"name": "t", "arguments": {"a": 1}})).unwrap();
        assert!(a.tool_call);
        assert_eq!(a.request, json!({"name": "t", "arguments": {"a": 1}}));
        // A server's requests are recorded as decisions; its pings pass.
        let s = ask_of(
            "fs",
            "sampling/createMessage",
            Some(&json!({})),
            From::Server,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.action, s.resource.as_str()),
            (SERVER_REQUEST, "McpMethod::\"fs/sampling/createMessage\"")
        );
        assert_eq!(ask_of("fs", "ping", None, From::Server).unwrap(), None);
        for (m, bad) in [
            ("resources/read", json!({})),
            ("resources/read", json!({"uri": 3})),
            ("prompts/get", json!({"name": "p", "arguments": [1]})),
            ("completion/complete", json!({"ref": {"type": "ref/x"}})),
            ("tools/call", json!({"arguments": {}})),
        ] {
            assert!(
                ask_of("fs", m, Some(&bad), From::Client).is_err(),
                "{m} {bad}"
            );
        }
    }
}
