//! The runtime governance demo: one scenario of six steps (allow,
//! policy_denied, invalid_signature, replayed, expired, revoked), each with
//! real writs and real log entries, played by `writ demo` against a server
//! over HTTP and by the console against the live authority ([`play`] on a
//! [`Stage`]). The console streams each step to the page as a server-sent
//! event as it ends; the caller must be an administrator (the demo revokes
//! a writ), and the demo acts as that caller.

use std::convert::Infallible;
use std::future::Future;
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
pub const STEPS: usize = 6;

fn bearer(h: &HeaderMap) -> &str {
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, t)| t.trim())
}

/// The `echo` the scenario runs.
pub fn echo_path() -> &'static str {
    if std::path::Path::new("/usr/bin/echo").exists() {
        "/usr/bin/echo"
    } else {
        "/bin/echo"
    }
}

/// Why the scenario stopped: the message the demo ends with.
#[derive(Debug)]
pub struct DemoError(pub String);

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DemoError {}

impl From<String> for DemoError {
    fn from(message: String) -> DemoError {
        DemoError(message)
    }
}

/// How a step ended, for the stage to show.
pub struct Shown<'a> {
    pub title: &'a str,
    pub expected: &'a str,
    pub outcome: &'a str,
    pub detail: String,
    /// The log entry the step made, when the stage knows it.
    pub log_index: Option<u64>,
}

/// The words in which the two stages tell the scenario apart.
pub struct Voice {
    /// What step 1 calls the decision's log entry.
    pub entry: &'static str,
    /// Step 1's title when the allowed action was denied.
    pub allowed_title: &'static str,
    /// Step 2's detail before the index of the logged denial.
    pub denial_entry: &'static str,
    /// Step 2's detail when the destructive command was allowed.
    pub wrongly_allowed: &'static str,
}

/// Where the scenario is played: who asks, how (the authority in process,
/// or a server over HTTP), and how each step is shown.
pub trait Stage: Send {
    const VOICE: Voice;
    /// The principal the demo acts as.
    fn who(&self) -> &str;
    /// Authorize running `argv` (for `lifetime` seconds).
    fn authorize(
        &mut self,
        argv: &[&str],
        lifetime: Option<u64>,
    ) -> impl Future<Output = Result<AuthorizeResponse, DemoError>> + Send;
    /// Verify `writ` for running `argv`: the outcome (`valid` or a reason
    /// code) and its message.
    fn verify(
        &mut self,
        writ: &str,
        argv: &[&str],
    ) -> impl Future<Output = Result<(String, String), DemoError>> + Send;
    /// Start the execution of `jti` (spend its nonce).
    fn start(&mut self, jti: &str) -> impl Future<Output = Result<(), DemoError>> + Send;
    /// Start `jti` a second time: the outcome, its message, the log entry.
    fn start_again(
        &mut self,
        jti: &str,
    ) -> impl Future<Output = Result<(String, String, Option<u64>), DemoError>> + Send;
    /// Record how the execution of `jti` ended.
    fn finish(
        &mut self,
        jti: &str,
        finish: FinishRequest,
    ) -> impl Future<Output = Result<(), DemoError>> + Send;
    /// Revoke `jti` as an administrator; the revocation's log entry.
    fn revoke(&mut self, jti: &str) -> impl Future<Output = Result<Option<u64>, DemoError>> + Send;
    /// Wait until a writ that expires at `exp` has lapsed past the clock
    /// skew; the seconds waited.
    fn wait_for_lapse(&mut self, exp: u64) -> impl Future<Output = u64> + Send;
    /// Show how a step ended.
    fn show(&mut self, step: Shown<'_>) -> impl Future<Output = ()> + Send;
}

/// Play the scenario on `s`.
pub async fn play<S: Stage>(s: &mut S) -> Result<(), DemoError> {
    let echo = echo_path();
    let hello = [echo, "hello from a governed process"];
    let allowed = allowed(s, &hello).await?;
    denied(s).await?;
    if let Some((writ, _)) = &allowed {
        tampered(s, writ, &hello).await?;
    }
    if let Some((_, jti)) = &allowed {
        replayed(s, jti).await?;
    }
    expired(s, &hello).await?;
    revoked(s, &hello).await
}

/// Step 1, allowed: authorize, verify, spend, run, record. The writ and
/// its jti when it was allowed.
async fn allowed<S: Stage>(
    s: &mut S,
    hello: &[&str; 2],
) -> Result<Option<(String, String)>, DemoError> {
    let (writ, jti, log_index) = match s.authorize(hello, None).await? {
        AuthorizeResponse::Allow {
            writ,
            jti,
            log_index,
            ..
        } => (writ, jti, log_index),
        AuthorizeResponse::Deny {
            reason,
            message,
            log_index,
        } => {
            s.show(Shown {
                title: S::VOICE.allowed_title,
                expected: "allow",
                outcome: reason.as_str(),
                detail: message,
                log_index,
            })
            .await;
            return Ok(None);
        }
    };
    let (v, _) = s.verify(&writ, hello).await?;
    s.start(&jti).await?;
    let t0 = std::time::Instant::now();
    let (echo, arg) = (hello[0].to_owned(), hello[1].to_owned());
    let out =
        tokio::task::spawn_blocking(move || std::process::Command::new(echo).arg(arg).output())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("running {}: {e}", hello[0]))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let finish = FinishRequest {
        exit_status: out.status.code().map(i64::from),
        duration_ms: u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
        stdout_digest: Some(writ_artifact::canonical::digest_bytes(&out.stdout)),
        ..FinishRequest::default()
    };
    s.finish(&jti, finish).await?;
    let title = format!("{} runs `{} \"{}\"`", s.who(), hello[0], hello[1]);
    s.show(Shown {
        title: &title,
        expected: "allow",
        outcome: "allow",
        detail: format!(
            "{} {log_index}, writ {v}, started once, printed {stdout:?}",
            S::VOICE.entry
        ),
        log_index: Some(log_index),
    })
    .await;
    Ok(Some((writ, jti)))
}

/// Step 2, denied by policy.
async fn denied<S: Stage>(s: &mut S) -> Result<(), DemoError> {
    let rm = ["/usr/bin/rm", "-rf", "/srv/important"];
    match s.authorize(&rm, None).await? {
        AuthorizeResponse::Deny {
            reason,
            message,
            log_index,
        } => {
            let title = format!("{} asks to run `rm -rf /srv/important`", s.who());
            s.show(Shown {
                title: &title,
                expected: "policy_denied",
                outcome: reason.as_str(),
                detail: format!(
                    "{message} ({} {})",
                    S::VOICE.denial_entry,
                    log_index.map_or("-".into(), |i| i.to_string())
                ),
                log_index,
            })
            .await;
        }
        AuthorizeResponse::Allow { log_index, .. } => {
            s.show(Shown {
                title: "rm -rf",
                expected: "policy_denied",
                outcome: "allow",
                detail: S::VOICE.wrongly_allowed.into(),
                log_index: Some(log_index),
            })
            .await;
        }
    }
    Ok(())
}

/// Step 3, tampered: change the resource in the claims, keep the signature.
async fn tampered<S: Stage>(s: &mut S, writ: &str, hello: &[&str; 2]) -> Result<(), DemoError> {
    let parts: Vec<&str> = writ.split('.').collect();
    let payload = URL_SAFE_NO_PAD
        .decode(parts.get(1).copied().unwrap_or(""))
        .map_err(|e| e.to_string())?;
    let mut claims: Value = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
    claims["writ"]["resource"] = json!("Command::\"/usr/bin/rm\"");
    let forged = format!(
        "{}.{}.{}",
        parts.first().copied().unwrap_or(""),
        URL_SAFE_NO_PAD
            .encode(writ_artifact::canonical::to_canonical_bytes(&claims).map_err(String::from)?),
        parts.get(2).copied().unwrap_or("")
    );
    let (v, m) = s.verify(&forged, hello).await?;
    s.show(Shown {
        title: "someone edits the writ's resource to /usr/bin/rm",
        expected: "invalid_signature",
        outcome: &v,
        detail: m,
        log_index: None,
    })
    .await;
    Ok(())
}

/// Step 4, replay: start the spent writ again.
async fn replayed<S: Stage>(s: &mut S, jti: &str) -> Result<(), DemoError> {
    let (got, m, idx) = s.start_again(jti).await?;
    s.show(Shown {
        title: "the same writ is presented a second time",
        expected: "replayed",
        outcome: &got,
        detail: m,
        log_index: idx,
    })
    .await;
    Ok(())
}

/// Step 5, expired: a 1-second writ, checked once it lapsed (past the skew).
async fn expired<S: Stage>(s: &mut S, hello: &[&str; 2]) -> Result<(), DemoError> {
    if let AuthorizeResponse::Allow {
        writ,
        exp,
        log_index,
        ..
    } = s.authorize(hello, Some(1)).await?
    {
        let wait = s.wait_for_lapse(exp).await;
        let (v, m) = s.verify(&writ, hello).await?;
        s.show(Shown {
            title: &format!("a 1-second writ is used {wait} seconds later"),
            expected: "expired",
            outcome: &v,
            detail: m,
            log_index: Some(log_index),
        })
        .await;
    }
    Ok(())
}

/// Step 6, revoked.
async fn revoked<S: Stage>(s: &mut S, hello: &[&str; 2]) -> Result<(), DemoError> {
    if let AuthorizeResponse::Allow { writ, jti, .. } = s.authorize(hello, Some(600)).await? {
        let log_index = s.revoke(&jti).await?;
        let (v, m) = s.verify(&writ, hello).await?;
        s.show(Shown {
            title: "an administrator revokes a live writ",
            expected: "revoked",
            outcome: &v,
            detail: m,
            log_index,
        })
        .await;
    }
    Ok(())
}

fn exec_request(argv: &[&str], lifetime: Option<u64>) -> AuthorizeRequest {
    AuthorizeRequest::command(argv, AUDIENCE, lifetime)
}

/// The console's stage: the live authority in process, each step sent to
/// the page.
struct Run {
    c: Shared,
    who: Principal,
    tx: tokio::sync::mpsc::Sender<Value>,
    n: usize,
}

impl Stage for Run {
    const VOICE: Voice = Voice {
        entry: "decision entry",
        allowed_title: "an allowed action",
        denial_entry: "the denial is entry",
        wrongly_allowed: "the active bundle allowed it",
    };

    fn who(&self) -> &str {
        &self.who.uid
    }

    async fn authorize(
        &mut self,
        argv: &[&str],
        lifetime: Option<u64>,
    ) -> Result<AuthorizeResponse, DemoError> {
        self.c
            .authority
            .authorize(&self.who, exec_request(argv, lifetime))
            .await
            .map_err(|e| DemoError(e.to_string()))
    }

    async fn verify(&mut self, writ: &str, argv: &[&str]) -> Result<(String, String), DemoError> {
        let req = VerifyRequest {
            writ: writ.into(),
            request: Some(json!({"argv": argv})),
            environment: None,
            audience: Some(AUDIENCE.into()),
            pop: None,
        };
        Ok(match self.c.authority.verify(&req) {
            Ok(_) => ("valid".into(), "the writ verifies".into()),
            Err(d) => (d.reason.as_str().into(), d.message),
        })
    }

    async fn start(&mut self, jti: &str) -> Result<(), DemoError> {
        self.c
            .authority
            .start(&self.who, jti, &StartRequest::default())
            .await
            .map(|_| ())
            .map_err(|e| DemoError(format!("start failed: {e}")))
    }

    async fn start_again(&mut self, jti: &str) -> Result<(String, String, Option<u64>), DemoError> {
        Ok(
            match self
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
            },
        )
    }

    async fn finish(&mut self, jti: &str, finish: FinishRequest) -> Result<(), DemoError> {
        self.c
            .authority
            .finish(&self.who, jti, &finish)
            .await
            .map(|_| ())
            .map_err(|e| DemoError(format!("finish failed: {e}")))
    }

    async fn revoke(&mut self, jti: &str) -> Result<Option<u64>, DemoError> {
        let r = self
            .c
            .authority
            .revoke(
                &self.who,
                &RevokeRequest {
                    jti: Some(jti.to_owned()),
                    principal: None,
                    reason: Some("console demo: operator pulled it".into()),
                },
            )
            .await
            .map_err(|e| format!("revocation failed: {e}"))?;
        Ok(Some(r.log_index))
    }

    async fn wait_for_lapse(&mut self, exp: u64) -> u64 {
        let skew = self.c.authority.config().skew_secs;
        let now = self.c.authority.clock().now_unix_secs();
        let wait = (exp + skew + 1).saturating_sub(now);
        let note = format!("waiting {wait} s for a 1-second writ to lapse (clock skew {skew} s)");
        let _ = self.tx.send(json!({ "note": note })).await;
        tokio::time::sleep(Duration::from_secs(wait)).await;
        wait
    }

    async fn show(&mut self, step: Shown<'_>) {
        self.n += 1;
        let _ = self
            .tx
            .send(json!({
                "step": self.n, "total": STEPS, "title": step.title, "expected": step.expected,
                "outcome": step.outcome, "ok": step.expected == step.outcome, "detail": step.detail,
                "log_index": step.log_index,
            }))
            .await;
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
        let end = match play(&mut run).await {
            Ok(()) => json!({"done": true, "steps": run.n}),
            Err(e) => json!({"error": e.0}),
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
