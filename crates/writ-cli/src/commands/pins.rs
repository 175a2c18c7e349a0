//! `writ mcp`: the pinned definitions of MCP tools (docs/spec/api.md,
//! "Pinned definitions").

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;
use writ_authority::{PinRequest, PinResponse};
use writ_gate::{Exit, Global};

use crate::output::{print_json, refused};
use crate::remote::need_token;

#[derive(Subcommand, Debug)]
#[command(after_long_help = "\
`writ mcp-proxy` tells the authority what each tool is (the tool as the \
server lists it: name, title, description, schemas, annotations). The \
first allowed probe of a listed tool pins that definition's digest, in a \
`pin` log entry. If the server later \
describes the tool otherwise (a changed description can carry instructions \
to the model), calls of it are denied `definition_changed` and it is left \
out of `tools/list`, until an administrator reads the new definition and \
approves it. The denial names the new digest, and the decision's sealed \
context holds the new description (an auditor reads it from \
`GET /v1/log/contents`); the rest of the definition (schemas, \
annotations) is read from the server itself before approving.

Examples:
  writ mcp pins
  writ mcp approve filesystem write_file sha256:3f2a... --reason 'reviewed the new description'")]
pub enum McpCmd {
    /// Approve a new definition of a tool: calls carrying it are decided by
    /// policy again. Admin only; logged.
    Approve {
        /// The server's name (as given to `writ mcp-proxy --name`).
        #[arg(value_name = "SERVER")]
        mcp_server: String,
        /// The tool's name.
        tool: String,
        /// The new definition's digest, as the denial names it.
        digest: String,
        /// Why (recorded in the log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// List the pinned definitions. Auditor or admin.
    Pins,
}

pub async fn mcp(g: &Global, c: McpCmd) -> Result<Exit> {
    match c {
        McpCmd::Approve {
            mcp_server: server,
            tool,
            digest,
            reason,
        } => {
            let body = PinRequest {
                resource: writ_mcp::govern::tool_resource(&server, &tool),
                digest,
                reason,
            };
            let reply = need_token(g)?.post("/v1/pins", &body).await?;
            if !reply.ok() {
                return refused(g, "approval", &reply);
            }
            let r: PinResponse = reply.parse()?;
            if g.json {
                print_json(&r)?;
            } else {
                println!(
                    "approved {} for {} (log entry {})",
                    r.digest, r.resource, r.log_index
                );
            }
        }
        McpCmd::Pins => {
            let reply = need_token(g)?.get("/v1/pins").await?;
            if !reply.ok() {
                return refused(g, "listing pins", &reply);
            }
            if g.json {
                print_json(&reply.body)?;
                return Ok(Exit::Ok);
            }
            let pins = reply.body["pins"].as_array().cloned().unwrap_or_default();
            if pins.is_empty() {
                println!("no definition is pinned yet");
            }
            for p in pins {
                let how = if p["approved"] == Value::Bool(true) {
                    "approved"
                } else {
                    "first use"
                };
                println!(
                    "{}  {}  ({how}, log entry {})",
                    p["resource"].as_str().unwrap_or(""),
                    p["digest"].as_str().unwrap_or(""),
                    p["log_index"]
                );
            }
        }
    }
    Ok(Exit::Ok)
}
