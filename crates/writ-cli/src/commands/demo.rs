//! `writ demo`: a throwaway data dir, a real server, a scripted scenario.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use clap::Args;
use serde_json::{json, Value};
use writ_artifact::ReasonCode;
use writ_authority::{AuthorizeRequest, AuthorizeResponse, VerifyRequest, VerifyResponse};

use writ_gate::client::Client;
use writ_gate::{Exit, Global};

use super::init::init_quiet;
use crate::datadir::DataDir;
use crate::output::print_json;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Exit after the scenario instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Address for the demo server (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,
}

struct Step<'a> {
    n: usize,
    total: usize,
    client: &'a Client,
    failures: usize,
    json: bool,
    results: Vec<Value>,
}

impl Step<'_> {
    fn show(&mut self, title: &str, expected: &str, got: &str, detail: &str) {
        let ok = expected == got;
        if !ok {
            self.failures += 1;
        }
        self.n += 1;
        if !self.json {
            println!(
                "[{}/{}] {title}\n      -> {got}{}{}",
                self.n,
                self.total,
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

    async fn authorize(&self, argv: &[&str], lifetime: Option<u64>) -> Result<AuthorizeResponse> {
        let req = exec_request(argv, lifetime);
        self.client.post("/v1/authorize", &req).await?.parse()
    }

    async fn verify(&self, writ: &str, argv: &[&str]) -> Result<VerifyResponse> {
        let req = VerifyRequest {
            writ: writ.into(),
            request: Some(json!({"argv": argv})),
            environment: None,
            audience: Some("demo@localhost".into()),
            pop: None,
        };
        self.client.post("/v1/verify", &req).await?.parse()
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

fn echo_path() -> &'static str {
    if std::path::Path::new("/usr/bin/echo").exists() {
        "/usr/bin/echo"
    } else {
        "/bin/echo"
    }
}

pub async fn demo(g: &Global, a: DemoArgs) -> Result<Exit> {
    let tmp = std::env::temp_dir().join(format!("writ-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let dir = DataDir::new(&tmp);
    let init_global = Global {
        dir: tmp.clone(),
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
    let url = running.url();
    let admin = Client::new(&url, Some(token.clone()));
    if !g.json {
        println!("writ demo: data dir {}, server {url}", tmp.display());
        println!("policy {}\n", running.authority.active_policy());
    }
    let reply = admin
        .post("/v1/principals", &json!({"uid": "Agent::\"planner\""}))
        .await?;
    let agent_token = reply.body["token"]
        .as_str()
        .context("no token for the demo agent")?
        .to_owned();
    let agent = Client::new(&url, Some(agent_token));
    let mut s = Step {
        n: 0,
        total: 6,
        client: &agent,
        failures: 0,
        json: g.json,
        results: Vec::new(),
    };
    let echo = echo_path();
    let hello = [echo, "hello from a governed process"];

    // 1. Allowed: authorize, verify, spend, run, record.
    let r = s.authorize(&hello, None).await?;
    let allowed = match &r {
        AuthorizeResponse::Allow {
            writ,
            jti,
            log_index,
            ..
        } => {
            let v = s.verify(writ, &hello).await?;
            let start = agent
                .post(&format!("/v1/executions/{jti}/start"), &json!({}))
                .await?;
            if !start.ok() {
                bail!("start failed: {}", start.message());
            }
            let t0 = std::time::Instant::now();
            let out = std::process::Command::new(echo)
                .arg(hello[1])
                .output()
                .context("running echo")?;
            let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let finish = json!({
                "exit_status": out.status.code(), "duration_ms": t0.elapsed().as_millis() as u64,
                "stdout_digest": writ_artifact::canonical::digest_bytes(&out.stdout),
            });
            agent
                .post(&format!("/v1/executions/{jti}/finish"), &finish)
                .await?;
            s.show(
                &format!("Agent::\"planner\" runs `{} \"{}\"`", hello[0], hello[1]),
                "allow",
                "allow",
                &format!(
                    "log entry {log_index}, writ {}, started once, printed {stdout:?}",
                    outcome_of_verify(&v)
                ),
            );
            Some((writ.clone(), jti.clone()))
        }
        AuthorizeResponse::Deny {
            reason, message, ..
        } => {
            s.show("allowed action", "allow", reason.as_str(), message);
            None
        }
    };

    // 2. Denied by policy.
    let rm = ["/usr/bin/rm", "-rf", "/srv/important"];
    match s.authorize(&rm, None).await? {
        AuthorizeResponse::Deny {
            reason,
            message,
            log_index,
        } => s.show(
            "Agent::\"planner\" asks to run `rm -rf /srv/important`",
            "policy_denied",
            reason.as_str(),
            &format!(
                "{message} (denial logged as entry {})",
                log_index.map_or("-".into(), |i| i.to_string())
            ),
        ),
        AuthorizeResponse::Allow { .. } => s.show(
            "rm -rf",
            "policy_denied",
            "allow",
            "the default bundle should deny this",
        ),
    }

    // 3. Tampered writ: change the resource in the claims, keep the signature.
    if let Some((writ, _)) = &allowed {
        let parts: Vec<&str> = writ.split('.').collect();
        let mut claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.get(1).copied().unwrap_or(""))?)?;
        claims["writ"]["resource"] = json!("Command::\"/usr/bin/rm\"");
        let forged = format!(
            "{}.{}.{}",
            parts.first().copied().unwrap_or(""),
            URL_SAFE_NO_PAD.encode(
                writ_artifact::canonical::to_canonical_bytes(&claims)
                    .map_err(anyhow::Error::msg)?
            ),
            parts.get(2).copied().unwrap_or("")
        );
        let v = s.verify(&forged, &hello).await?;
        s.show(
            "someone edits the writ's resource to /usr/bin/rm",
            "invalid_signature",
            &outcome_of_verify(&v),
            v.message.as_deref().unwrap_or(""),
        );
    }

    // 4. Replay: start the spent writ again.
    if let Some((_, jti)) = &allowed {
        let again = agent
            .post(&format!("/v1/executions/{jti}/start"), &json!({}))
            .await?;
        let got = again.reason().map_or_else(
            || format!("HTTP {}", again.status),
            |r| r.as_str().to_string(),
        );
        s.show(
            "the same writ is presented a second time",
            "replayed",
            &got,
            &again.message(),
        );
    }

    // 5. Expired: a 1-second writ, checked after it lapsed (skew 1 s).
    if let AuthorizeResponse::Allow { writ, .. } = s.authorize(&hello, Some(1)).await? {
        if !g.json {
            println!("      (waiting 3 s for a 1-second writ to lapse)");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let v = s.verify(&writ, &hello).await?;
        s.show(
            "a 1-second writ is used 3 seconds later",
            "expired",
            &outcome_of_verify(&v),
            v.message.as_deref().unwrap_or(""),
        );
    }

    // 6. Revoked.
    if let AuthorizeResponse::Allow { writ, jti, .. } = s.authorize(&hello, Some(600)).await? {
        let rv = admin
            .post(
                "/v1/revocations",
                &json!({"jti": jti, "reason": "demo: operator pulled it"}),
            )
            .await?;
        if !rv.ok() {
            bail!("revocation failed: {}", rv.message());
        }
        let v = s.verify(&writ, &hello).await?;
        s.show(
            "an administrator revokes a live writ",
            "revoked",
            &outcome_of_verify(&v),
            v.message.as_deref().unwrap_or(""),
        );
    }

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

fn demo_serve_args(listen: &str) -> crate::server::ServeArgs {
    crate::server::ServeArgs {
        listen: listen.to_owned(),
        skew_secs: 1,
        ..crate::server::ServeArgs::defaults()
    }
}
