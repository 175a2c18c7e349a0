//! The runtime governance demo, run against the live authority: the six
//! steps of `writ demo` (allow, policy_denied, invalid_signature, replayed,
//! expired, revoked), each with real writs and real log entries, streamed to
//! the page as server-sent events as each step ends. The caller must be an
//! administrator (the demo revokes a writ); the demo acts as that caller.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;
use writ_authority::{
    AuthorizeRequest, AuthorizeResponse, CallError, FinishRequest, Principal, RevokeRequest,
    StartRequest, VerifyRequest,
};

use crate::api::fail;
use crate::Console;

type Shared = Arc<Console>;

/// The demo's audience (its "gateway" is the console itself).
const AUDIENCE: &str = "console-demo@localhost";
/// Steps of the scenario.
const STEPS: usize = 6;

fn bearer(h: &HeaderMap) -> &str {
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, t)| t.trim())
}

fn echo_path() -> &'static str {
    if std::path::Path::new("/usr/bin/echo").exists() {
        "/usr/bin/echo"
    } else {
        "/bin/echo"
    }
}

fn exec_request(argv: &[&str], lifetime: Option<u64>) -> AuthorizeRequest {
    AuthorizeRequest::command(argv, AUDIENCE, lifetime)
}

struct Run {
    c: Shared,
    who: Principal,
    tx: tokio::sync::mpsc::Sender<Value>,
    n: usize,
}

impl Run {
    async fn show(
        &mut self,
        title: &str,
        expected: &str,
        outcome: &str,
        detail: String,
        log_index: Option<u64>,
    ) {
        self.n += 1;
        let _ = self
            .tx
            .send(json!({
                "step": self.n, "total": STEPS, "title": title, "expected": expected,
                "outcome": outcome, "ok": expected == outcome, "detail": detail, "log_index": log_index,
            }))
            .await;
    }

    async fn note(&self, text: &str) {
        let _ = self.tx.send(json!({"note": text})).await;
    }

    async fn authorize(
        &self,
        argv: &[&str],
        lifetime: Option<u64>,
    ) -> Result<AuthorizeResponse, String> {
        self.c
            .authority
            .authorize(&self.who, exec_request(argv, lifetime))
            .await
            .map_err(|e| e.to_string())
    }

    fn verify(&self, writ: &str, argv: &[&str]) -> (String, String) {
        let req = VerifyRequest {
            writ: writ.into(),
            request: Some(json!({"argv": argv})),
            environment: None,
            audience: Some(AUDIENCE.into()),
            pop: None,
        };
        match self.c.authority.verify(&req) {
            Ok(_) => ("valid".into(), "the writ verifies".into()),
            Err(d) => (d.reason.as_str().into(), d.message),
        }
    }

    async fn scenario(&mut self) -> Result<(), String> {
        let echo = echo_path();
        let hello = [echo, "hello from a governed process"];
        // 1. Allowed: authorize, verify, spend, run, record.
        let allowed = match self.authorize(&hello, None).await? {
            AuthorizeResponse::Allow {
                writ,
                jti,
                log_index,
                ..
            } => {
                let (v, _) = self.verify(&writ, &hello);
                self.c
                    .authority
                    .start(&self.who, &jti, &StartRequest::default())
                    .await
                    .map_err(|e| format!("start failed: {e}"))?;
                let t0 = std::time::Instant::now();
                let arg = hello[1].to_owned();
                let out = tokio::task::spawn_blocking(move || {
                    std::process::Command::new(echo).arg(arg).output()
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("running {echo}: {e}"))?;
                let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                let finish = FinishRequest {
                    exit_status: out.status.code().map(i64::from),
                    duration_ms: u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
                    stdout_digest: Some(writ_artifact::canonical::digest_bytes(&out.stdout)),
                    ..FinishRequest::default()
                };
                self.c
                    .authority
                    .finish(&self.who, &jti, &finish)
                    .await
                    .map_err(|e| format!("finish failed: {e}"))?;
                self.show(
                    &format!("{} runs `{} \"{}\"`", self.who.uid, hello[0], hello[1]),
                    "allow",
                    "allow",
                    format!(
                        "decision entry {log_index}, writ {v}, started once, printed {stdout:?}"
                    ),
                    Some(log_index),
                )
                .await;
                Some((writ, jti))
            }
            AuthorizeResponse::Deny {
                reason,
                message,
                log_index,
            } => {
                self.show(
                    "an allowed action",
                    "allow",
                    reason.as_str(),
                    message,
                    log_index,
                )
                .await;
                None
            }
        };
        // 2. Denied by policy.
        let rm = ["/usr/bin/rm", "-rf", "/srv/important"];
        match self.authorize(&rm, None).await? {
            AuthorizeResponse::Deny {
                reason,
                message,
                log_index,
            } => {
                self.show(
                    &format!("{} asks to run `rm -rf /srv/important`", self.who.uid),
                    "policy_denied",
                    reason.as_str(),
                    format!(
                        "{message} (the denial is entry {})",
                        log_index.map_or("-".into(), |i| i.to_string())
                    ),
                    log_index,
                )
                .await;
            }
            AuthorizeResponse::Allow { log_index, .. } => {
                self.show(
                    "rm -rf",
                    "policy_denied",
                    "allow",
                    "the active bundle allowed it".into(),
                    Some(log_index),
                )
                .await;
            }
        }
        // 3. Tampered: change the resource in the claims, keep the signature.
        if let Some((writ, _)) = &allowed {
            let parts: Vec<&str> = writ.split('.').collect();
            let payload = URL_SAFE_NO_PAD
                .decode(parts.get(1).copied().unwrap_or(""))
                .map_err(|e| e.to_string())?;
            let mut claims: Value = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
            claims["writ"]["resource"] = json!("Command::\"/usr/bin/rm\"");
            let forged = format!(
                "{}.{}.{}",
                parts.first().copied().unwrap_or(""),
                URL_SAFE_NO_PAD.encode(writ_artifact::canonical::to_canonical_bytes(&claims)?),
                parts.get(2).copied().unwrap_or("")
            );
            let (v, m) = self.verify(&forged, &hello);
            self.show(
                "someone edits the writ's resource to /usr/bin/rm",
                "invalid_signature",
                &v,
                m,
                None,
            )
            .await;
        }
        // 4. Replay: start the spent writ again.
        if let Some((_, jti)) = &allowed {
            let (got, m, idx) = match self
                .c
                .authority
                .start(&self.who, jti, &StartRequest::default())
                .await
            {
                Ok(r) => (
                    "started".to_owned(),
                    "a second start was accepted".to_owned(),
                    Some(r.log_index),
                ),
                Err(CallError::Denied(d)) => (d.reason.as_str().to_owned(), d.message, None),
                Err(e) => (format!("error: {e}"), String::new(), None),
            };
            self.show(
                "the same writ is presented a second time",
                "replayed",
                &got,
                m,
                idx,
            )
            .await;
        }
        // 5. Expired: a 1-second writ, checked once it lapsed (past the skew).
        if let AuthorizeResponse::Allow {
            writ,
            exp,
            log_index,
            ..
        } = self.authorize(&hello, Some(1)).await?
        {
            let skew = self.c.authority.config().skew_secs;
            let now = self.c.authority.clock().now_unix_secs();
            let wait = (exp + skew + 1).saturating_sub(now);
            self.note(&format!(
                "waiting {wait} s for a 1-second writ to lapse (clock skew {skew} s)"
            ))
            .await;
            tokio::time::sleep(Duration::from_secs(wait)).await;
            let (v, m) = self.verify(&writ, &hello);
            self.show(
                &format!("a 1-second writ is used {wait} seconds later"),
                "expired",
                &v,
                m,
                Some(log_index),
            )
            .await;
        }
        // 6. Revoked.
        if let AuthorizeResponse::Allow { writ, jti, .. } =
            self.authorize(&hello, Some(600)).await?
        {
            let r = self
                .c
                .authority
                .revoke(
                    &self.who,
                    &RevokeRequest {
                        jti: Some(jti),
                        principal: None,
                        reason: Some("console demo: operator pulled it".into()),
                    },
                )
                .await
                .map_err(|e| format!("revocation failed: {e}"))?;
            let (v, m) = self.verify(&writ, &hello);
            self.show(
                "an administrator revokes a live writ",
                "revoked",
                &v,
                m,
                Some(r.log_index),
            )
            .await;
        }
        Ok(())
    }
}

/// `POST /console/api/demo` (admin bearer token): run the scenario, one SSE
/// `step` event per step, then `done` (or `error`).
pub(crate) async fn run(
    axum::extract::State(c): axum::extract::State<Shared>,
    headers: HeaderMap,
) -> Response {
    let who = match c.authority.authenticate(bearer(&headers)) {
        Ok(p) => p,
        // The server's own shape for a denial: its reason code stands apart.
        Err(d) => {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "denied", "reason": d.reason, "message": d.message})),
            )
                .into_response()
        }
    };
    if !who.admin {
        return fail(
            StatusCode::FORBIDDEN,
            format!(
                "{} is not an administrator (the demo revokes a writ)",
                who.uid
            ),
        );
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Value>(16);
    tokio::spawn(async move {
        let mut run = Run {
            c,
            who,
            tx: tx.clone(),
            n: 0,
        };
        let end = match run.scenario().await {
            Ok(()) => json!({"done": true, "steps": run.n}),
            Err(e) => json!({"error": e}),
        };
        let _ = tx.send(end).await;
    });
    let stream = ReceiverStream::new(rx).map(|v| {
        let kind = if v.get("step").is_some() {
            "step"
        } else if v.get("note").is_some() {
            "note"
        } else if v.get("error").is_some() {
            "error"
        } else {
            "done"
        };
        Ok::<_, Infallible>(SseEvent::default().event(kind).data(v.to_string()))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default().interval(Duration::from_secs(5)))
        .into_response()
}
