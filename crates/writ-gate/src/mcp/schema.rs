//! `writ policy mcp-schema`: start an MCP server, list its tools, and print
//! the Cedar schema fragment `writ-mcp` makes of them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncWrite, BufReader};
use writ_mcp::framing::{read_message, write_message, MESSAGE_BYTES_MAX};

use super::stdio::PIPE_BUFFER_BYTES;
use crate::{Exit, Global};

/// How long `writ policy mcp-schema` waits for the server's answers.
const SCHEMA_TIMEOUT: Duration = Duration::from_secs(60);
/// Pages of `tools/list` read at most.
const TOOL_PAGES_MAX: usize = 100;

#[derive(Args, Debug)]
pub struct McpSchemaArgs {
    /// The server's name (as given to `writ mcp-proxy --name`).
    #[arg(long)]
    pub name: String,
    /// Write the fragment here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Another environment variable the server gets (repeatable; as for
    /// `writ mcp-proxy`, the server gets HOME, LANG, LC_ALL, PATH, TERM, TZ
    /// and USER, and nothing else of this command's environment).
    #[arg(long = "env-allow", value_name = "NAME", value_parser = crate::exec::env_allow_name)]
    pub env_allow: Vec<String>,
    /// The server's command and arguments.
    #[arg(last = true, required = true, value_name = "SERVER_CMD")]
    pub argv: Vec<String>,
}

async fn request<W: AsyncWrite + Unpin, R: AsyncBufRead + Unpin>(
    w: &mut W,
    r: &mut R,
    id: u64,
    method: &str,
    params: Value,
) -> Result<Value> {
    let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    write_message(w, writ_mcp::message::to_line(&msg)).await?;
    loop {
        let Some(raw) = read_message(r, MESSAGE_BYTES_MAX).await? else {
            bail!("the MCP server closed its output before answering {method}");
        };
        let m = writ_mcp::message::Message::parse(raw);
        match m.kind {
            writ_mcp::message::Kind::Response { id: rid } if rid == json!(id) => {
                if let Some(e) = m.value.get("error") {
                    bail!("the MCP server answered {method} with an error: {e}");
                }
                return Ok(m.value.get("result").cloned().unwrap_or(Value::Null));
            }
            writ_mcp::message::Kind::Request { id: rid, .. } => {
                // We offer no client capabilities.
                let e = writ_mcp::message::error_response(&rid, -32601, "method not found");
                write_message(w, writ_mcp::message::to_line(&e)).await?;
            }
            _ => {}
        }
    }
}

async fn list_tools(argv: &[String], env_allow: &[String]) -> Result<Vec<Value>> {
    let mut allow: Vec<&str> = writ_exec::DEFAULT_ENV_ALLOW.to_vec();
    allow.extend(env_allow.iter().map(String::as_str));
    let env = allow
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k, v)));
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run the MCP server {}", argv[0]))?;
    let (Some(mut w), Some(out)) = (child.stdin.take(), child.stdout.take()) else {
        bail!("the MCP server's pipes were not set up");
    };
    let mut r = BufReader::with_capacity(PIPE_BUFFER_BYTES, out);
    let init = request(
        &mut w,
        &mut r,
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "writ", "version": env!("CARGO_PKG_VERSION")}}),
    )
    .await?;
    if init
        .get("capabilities")
        .and_then(|c| c.get("tools"))
        .is_none()
    {
        bail!("the MCP server does not offer tools (no `tools` capability)");
    }
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    write_message(&mut w, writ_mcp::message::to_line(&note)).await?;
    let mut tools = Vec::new();
    let mut cursor: Option<Value> = None;
    for page in 0..TOOL_PAGES_MAX {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let res = request(&mut w, &mut r, 2 + page as u64, "tools/list", params).await?;
        if let Some(t) = res.get("tools").and_then(Value::as_array) {
            tools.extend(t.iter().cloned());
        }
        cursor = res.get("nextCursor").filter(|c| !c.is_null()).cloned();
        if cursor.is_none() {
            break;
        }
    }
    drop(w);
    if tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    Ok(tools)
}

pub async fn mcp_schema(g: &Global, a: McpSchemaArgs) -> Result<Exit> {
    let tools = tokio::time::timeout(SCHEMA_TIMEOUT, list_tools(&a.argv, &a.env_allow))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the MCP server did not answer initialize and tools/list within {SCHEMA_TIMEOUT:?}"
            )
        })??;
    let f = writ_mcp::schema::fragment(&a.name, &tools);
    for w in &f.warnings {
        eprintln!("warning: {w}");
    }
    match &a.out {
        Some(p) => {
            std::fs::write(p, &f.text).with_context(|| format!("cannot write {}", p.display()))?
        }
        None if g.json => crate::print_json(
            &json!({"schema": f.text, "tools": tools.len(), "warnings": f.warnings}),
        )?,
        None => print!("{}", f.text),
    }
    Ok(Exit::Ok)
}
