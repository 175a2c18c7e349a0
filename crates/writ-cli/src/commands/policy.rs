//! `writ policy check | test | bundle | activate | mcp-schema`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;
use writ_gate::{Exit, Global};
use writ_policy::{Bundle, SignedBundle, TestFile};

use crate::datadir::{read_bundle_dir, write_atomic, DataDir};
use crate::output::{print_json, refused};
use crate::remote::need_token;

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Parse and validate a bundle directory; print its hash and policy ids.
    // The positional is not called `dir`: clap would make it the global
    // `--dir` (the data dir) too.
    Check {
        #[arg(value_name = "DIR")]
        bundle_dir: PathBuf,
    },
    /// Run a JSON file of expected decisions against a bundle directory.
    Test {
        /// The test file: {"cases": [{"name"?, "principal", "action", "resource", "context"?, "expect": "allow"|"deny", "policies"?}]}. The context is what Cedar sees, as given: include the `scope` and `lineage` writ adds to every decision when policies read them (a forbid that cannot be evaluated denies).
        file: PathBuf,
        /// The bundle directory (default: the data dir's policy/).
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Sign a bundle directory with the policy key and write the signed bundle.
    Bundle {
        /// The bundle directory (*.cedar, optional schema.cedarschema and entities.json).
        #[arg(value_name = "DIR")]
        bundle_dir: PathBuf,
        /// Where to write the signed bundle (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Bundle, sign and activate a directory (or upload a signed bundle file).
    Activate {
        /// A bundle directory (signed here with the data dir's policy key) or
        /// a signed bundle file made by `writ policy bundle`.
        path: PathBuf,
    },
    /// Ask an MCP server for its tools (initialize, tools/list) and write a
    /// Cedar schema fragment for `Action::"call_tool"` with the tools'
    /// arguments typed as context attributes.
    McpSchema(writ_gate::mcp::McpSchemaArgs),
}

fn compile_dir(dir: &std::path::Path) -> Result<Bundle> {
    let source = read_bundle_dir(dir)?;
    Bundle::compile(source).map_err(|e| anyhow::anyhow!("bundle {} refused: {e}", dir.display()))
}

pub async fn policy(g: &Global, c: PolicyCmd) -> Result<Exit> {
    match c {
        PolicyCmd::McpSchema(a) => writ_gate::mcp::mcp_schema(g, a).await,
        PolicyCmd::Check { bundle_dir } => {
            let b = compile_dir(&bundle_dir)?;
            if g.json {
                print_json(
                    &json!({"hash": b.hash(), "policies": b.policy_ids(), "schema": b.has_schema()}),
                )?;
            } else {
                println!(
                    "ok: {} ({} policies{})",
                    b.hash(),
                    b.policy_ids().len(),
                    if b.has_schema() {
                        ", validated against schema"
                    } else {
                        ""
                    }
                );
                for id in b.policy_ids() {
                    println!("  {id}");
                }
            }
            Ok(Exit::Ok)
        }
        PolicyCmd::Test { file, bundle } => {
            let dir = bundle.unwrap_or_else(|| DataDir::new(&g.dir).policy_dir());
            let b = compile_dir(&dir)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let tf: TestFile = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a policy test file", file.display()))?;
            let outcomes = writ_policy::run_cases(&b, &tf);
            let failed = outcomes.iter().filter(|o| !o.passed).count();
            if g.json {
                print_json(
                    &json!({"bundle": b.hash(), "passed": outcomes.len() - failed, "failed": failed, "cases": outcomes}),
                )?;
            } else {
                for o in &outcomes {
                    if o.passed {
                        println!("ok       {}: {}", o.name, o.got);
                    } else {
                        println!(
                            "MISMATCH {}: expected {}, got {} ({})",
                            o.name, o.expected, o.got, o.message
                        );
                    }
                }
                println!("{} passed, {} failed", outcomes.len() - failed, failed);
            }
            Ok(if failed == 0 { Exit::Ok } else { Exit::Failed })
        }
        PolicyCmd::Bundle { bundle_dir, out } => {
            let b = compile_dir(&bundle_dir)?;
            let key = DataDir::new(&g.dir).policy_key()?;
            let signed = b.source().clone().sign(&key)?;
            write_atomic(
                &out,
                serde_json::to_string_pretty(&signed)?.as_bytes(),
                0o644,
            )?;
            if g.json {
                print_json(&json!({"hash": signed.hash, "kid": signed.kid, "out": out}))?;
            } else {
                println!("signed bundle {} written to {}", signed.hash, out.display());
            }
            Ok(Exit::Ok)
        }
        PolicyCmd::Activate { path } => {
            let signed: SignedBundle = if path.is_dir() {
                let b = compile_dir(&path)?;
                b.source()
                    .clone()
                    .sign(&DataDir::new(&g.dir).policy_key()?)?
            } else {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a signed bundle", path.display()))?
            };
            let reply = need_token(g)?.post("/v1/policies", &signed).await?;
            if !reply.ok() {
                return refused(g, "activation (the active bundle stays)", &reply);
            }
            if g.json {
                print_json(&reply.body)?;
            } else {
                println!(
                    "active: {} (log entry {})",
                    signed.hash, reply.body["log_index"]
                );
            }
            Ok(Exit::Ok)
        }
    }
}
