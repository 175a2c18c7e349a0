//! `writ demo`: a throwaway data dir, a real server, the scripted scenario
//! the console plays too ([`writ_console::demo::play`]), here over HTTP.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use writ_artifact::ReasonCode;
use writ_authority::{
    AuthorizeRequest, AuthorizeResponse, FinishRequest, VerifyRequest, VerifyResponse,
};
use writ_console::demo::{DemoError, Shown, Stage, Voice, STEPS};

use writ_gate::client::Client;
use writ_gate::{Exit, Global};

use super::init::init_quiet;
use crate::datadir::DataDir;
use crate::output::print_json;
use crate::server::Running;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Exit after the scenario instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Address for the demo server (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,
}

/// The principal the demo's agent is.
const PLANNER: &str = "Agent::\"planner\"";

/// `writ demo`'s stage: the agent and the administrator as clients of the
/// demo server, each step printed (or kept for `--json`).
struct Http<'a> {
    agent: &'a Client,
    admin: &'a Client,
    json: bool,
    n: usize,
    failures: usize,
    results: Vec<Value>,
}

/// An error of the demo's HTTP calls, as the demo ends with it.
fn msg(e: anyhow::Error) -> DemoError {
    DemoError(format!("{e:#}"))
}

impl Stage for Http<'_> {
    const VOICE: Voice = Voice {
        entry: "log entry",
        allowed_title: "allowed action",
        denial_entry: "denial logged as entry",
        wrongly_allowed: "the default bundle should deny this",
    };

    fn who(&self) -> &str {
        PLANNER
    }

    async fn authorize(
        &mut self,
        argv: &[&str],
        lifetime: Option<u64>,
    ) -> Result<AuthorizeResponse, DemoError> {
        let req = exec_request(argv, lifetime);
        let reply = self.agent.post("/v1/authorize", &req).await.map_err(msg)?;
        reply.parse().map_err(msg)
    }

    async fn verify(&mut self, writ: &str, argv: &[&str]) -> Result<(String, String), DemoError> {
        let req = VerifyRequest {
            writ: writ.into(),
            request: Some(json!({"argv": argv})),
            environment: None,
            audience: Some("demo@localhost".into()),
            pop: None,
        };
        let reply = self.agent.post("/v1/verify", &req).await.map_err(msg)?;
        let v: VerifyResponse = reply.parse().map_err(msg)?;
        Ok((outcome_of_verify(&v), v.message.unwrap_or_default()))
    }

    async fn start(&mut self, jti: &str) -> Result<(), DemoError> {
        let start = self
            .agent
            .post(&format!("/v1/executions/{jti}/start"), &json!({}))
            .await
            .map_err(msg)?;
        if !start.ok() {
            return Err(DemoError(format!("start failed: {}", start.message())));
        }
        Ok(())
    }

    async fn start_again(&mut self, jti: &str) -> Result<(String, String, Option<u64>), DemoError> {
        let again = self
            .agent
            .post(&format!("/v1/executions/{jti}/start"), &json!({}))
            .await
            .map_err(msg)?;
        let got = again.reason().map_or_else(
            || format!("HTTP {}", again.status),
            |r| r.as_str().to_string(),
        );
        Ok((got, again.message(), None))
    }

    async fn finish(&mut self, jti: &str, finish: FinishRequest) -> Result<(), DemoError> {
        self.agent
            .post(&format!("/v1/executions/{jti}/finish"), &finish)
            .await
            .map(|_| ())
            .map_err(msg)
    }

    async fn revoke(&mut self, jti: &str) -> Result<Option<u64>, DemoError> {
        let rv = self
            .admin
            .post(
                "/v1/revocations",
                &json!({"jti": jti, "reason": "demo: operator pulled it"}),
            )
            .await
            .map_err(msg)?;
        if !rv.ok() {
            return Err(DemoError(format!("revocation failed: {}", rv.message())));
        }
        Ok(None)
    }

    async fn wait_for_lapse(&mut self, _exp: u64) -> u64 {
        // The demo server tolerates 1 s of skew: 3 s is past it.
        if !self.json {
            println!("      (waiting 3 s for a 1-second writ to lapse)");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        3
    }

    async fn show(&mut self, step: Shown<'_>) {
        let Shown {
            title,
            expected,
            outcome: got,
            detail,
            ..
        } = step;
        let ok = expected == got;
        if !ok {
            self.failures += 1;
        }
        self.n += 1;
        if !self.json {
            println!(
                "[{}/{}] {title}\n      -> {got}{}{}",
                self.n,
                STEPS,
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                },
                if ok {
                    String::new()
                } else {
                    format!("   (UNEXPECTED: wanted {expected})")
                }
            );
        }
        self.results.push(json!({"step": self.n, "title": title, "expected": expected, "outcome": got, "detail": detail}));
    }
}

fn exec_request(argv: &[&str], lifetime: Option<u64>) -> AuthorizeRequest {
    AuthorizeRequest::command(argv, "demo@localhost", lifetime)
}

fn outcome_of_verify(v: &VerifyResponse) -> String {
    if v.valid {
        "valid".into()
    } else {
        v.reason.map_or("invalid", ReasonCode::as_str).to_string()
    }
}

pub async fn demo(g: &Global, a: DemoArgs) -> Result<Exit> {
    let tmp = std::env::temp_dir().join(format!("writ-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (token, running) = start_demo(g, &a, &tmp).await?;
    let url = running.url();
    let admin = Client::new(&url, Some(token.clone()));
    if !g.json {
        println!("writ demo: data dir {}, server {url}", tmp.display());
        println!("policy {}\n", running.authority.active_policy());
    }
    let reply = admin
        .post("/v1/principals", &json!({"uid": PLANNER}))
        .await?;
    let agent_token = reply.body["token"]
        .as_str()
        .context("no token for the demo agent")?
        .to_owned();
    let agent = Client::new(&url, Some(agent_token));
    let mut s = Http {
        agent: &agent,
        admin: &admin,
        json: g.json,
        n: 0,
        failures: 0,
        results: Vec::new(),
    };
    writ_console::demo::play(&mut s)
        .await
        .map_err(|e| anyhow::Error::msg(e.0))?;

    let size = running.authority.log_size();
    let failures = s.failures;
    if g.json {
        print_json(
            &json!({"server": url, "dir": tmp, "log_size": size, "steps": s.results, "failures": failures}),
        )?;
    } else {
        println!(
            "\n{} steps, {} unexpected; the log now holds {size} entries.",
            s.n, failures
        );
        println!("Entries: {url}/v1/log/entries   JWKS: {url}/.well-known/jwks.json   Metrics: {url}/metrics");
    }
    if !a.once {
        if !g.json {
            println!("\nServing {url} until Ctrl-C (admin token: {token})");
        }
        crate::server::wait_for_signal().await;
    }
    let _ = running.shutdown.send(());
    let _ = running.task.await;
    let _ = std::fs::remove_dir_all(&tmp);
    if failures > 0 {
        bail!("{failures} demo steps did not end as expected");
    }
    Ok(Exit::Ok)
}

/// `writ init` in `tmp`, quietly, and its server on `a.listen` (a free
/// port when that one is taken); the admin token and the server.
async fn start_demo(g: &Global, a: &DemoArgs, tmp: &std::path::Path) -> Result<(String, Running)> {
    let dir = DataDir::new(tmp);
    let init_global = Global {
        dir: tmp.to_owned(),
        json: true,
        ..g.clone()
    };
    // `writ init` itself, quietly.
    let token = init_quiet(&init_global).await?;
    let running = match crate::server::start(&dir, &demo_serve_args(&a.listen)).await {
        Ok(r) => r,
        Err(_) if a.listen != "127.0.0.1:0" => {
            crate::server::start(&dir, &demo_serve_args("127.0.0.1:0")).await?
        }
        Err(e) => return Err(e),
    };
    Ok((token, running))
}

fn demo_serve_args(listen: &str) -> crate::server::ServeArgs {
    crate::server::ServeArgs {
        listen: listen.to_owned(),
        skew_secs: 1,
        ..crate::server::ServeArgs::defaults()
    }
}
