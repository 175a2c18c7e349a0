//! Continuous governance of a running execution: the writ is a lease that
//! the runner renews before it ends (each renewal is a fresh decision), and
//! a revocation seen on the authority's stream ends the run at once.
//!
//! [`govern`] returns only when the execution must stop, and why; the caller
//! races it against the process and terminates the process group.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::mpsc;
use writ_api::RenewRequest;
use writ_artifact::pop::PopUse;
use writ_artifact::{Grant, ReasonCode};

use crate::client::Client;
use crate::holder::Holder;

/// A stream that sent nothing (not even a keep-alive comment, which the
/// server sends every 5 s) for this long is taken for dead and reopened.
const STREAM_SILENCE_MAX: Duration = Duration::from_secs(15);
/// Pause between attempts to reach an authority that did not answer.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// The least time an enforcement point gives the authority to answer one
/// request (see [`answer_limit`]).
const ANSWER_LIMIT_MIN: Duration = Duration::from_secs(5);
/// The last renewal before the grace runs out still gets this long.
const LAST_ATTEMPT_MIN: Duration = Duration::from_millis(200);
/// Renewals are never closer together than this.
const RENEW_GAP_MIN: Duration = Duration::from_millis(500);
/// How long a program runs before its runner subscribes to the revocation
/// stream: most governed commands end sooner and never cost the authority a
/// subscription. Nothing is missed meanwhile: the stream opens with `watch`,
/// which reports a revocation already in force, so a revocation in the first
/// moments ends the run this long after its start at the latest.
pub const WATCH_AFTER: Duration = Duration::from_millis(20);

/// How long `writ exec` and `writ mcp-proxy` wait for one answer of the
/// authority: an authority that accepts connections and never answers (a
/// stopped or wedged server) is unreachable too, and must not hold a
/// decision, or a renewal past the grace, forever.
pub fn answer_limit(grace: Duration) -> Duration {
    grace.max(ANSWER_LIMIT_MIN)
}

/// Why a governed execution must stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The writ, an ancestor or a principal on its chain was revoked.
    Revoked(String),
    /// The authority refused to renew the lease (policy changed, parent
    /// gone, lease lapsed, ...).
    RenewalDenied(ReasonCode, String),
    /// Neither renewal nor the revocation stream reached the authority for
    /// longer than the grace.
    Unreachable(String),
}

impl Stop {
    /// The reason code the runner reports (and exits with).
    pub fn reason(&self) -> ReasonCode {
        match self {
            Stop::Revoked(_) => ReasonCode::Revoked,
            Stop::RenewalDenied(r, _) => *r,
            Stop::Unreachable(_) => ReasonCode::AuthorityUnavailable,
        }
    }

    /// What the finish entry's `terminated` records: the reason, and a
    /// revocation's reason (public in its own entry); not the message of a
    /// denied renewal, which can quote the request (the log keeps that
    /// sealed).
    pub fn record(&self) -> String {
        match self {
            Stop::Revoked(m) => format!("revoked: {m}"),
            Stop::RenewalDenied(r, _) => format!("renewal denied: {r}"),
            Stop::Unreachable(_) => "authority unreachable".into(),
        }
    }

    /// One line for standard error.
    pub fn describe(&self) -> String {
        match self {
            Stop::Revoked(m) => format!("revoked: {m}"),
            Stop::RenewalDenied(r, m) => format!("renewal denied: {r}: {m}"),
            Stop::Unreachable(m) => format!("authority unreachable: {m}"),
        }
    }

    /// The message of the denial line (`denied: <reason>: <message>`), which
    /// names the reason code already.
    pub fn denial_message(&self) -> String {
        match self {
            Stop::Revoked(m) | Stop::Unreachable(m) => m.clone(),
            Stop::RenewalDenied(_, m) => format!("renewal denied: {m}"),
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Watch and renew the execution of `grant` until it must stop. The lease
/// first ends at the writ's `exp`; `grace` is how long the authority may be
/// unreachable (past the lease's end, for renewals) before the run is ended.
pub async fn govern(client: Client, holder: Holder, grant: Grant, grace: Duration) -> Stop {
    let (jti, lease_exp) = (grant.jti(), grant.exp());
    // The stream asks for an early renewal when something may concern this
    // run without naming it (a principal revoked, events lost).
    let (kick, kicked) = mpsc::channel(1);
    tokio::time::sleep(WATCH_AFTER).await;
    tokio::select! {
        s = watch_revocations(&client, jti, grace, kick) => s,
        s = keep_lease(&client, &holder, jti, lease_exp, grace, kicked) => s,
    }
}

async fn keep_lease(
    client: &Client,
    holder: &Holder,
    jti: &str,
    mut lease_exp: u64,
    grace: Duration,
    mut kicked: mpsc::Receiver<()>,
) -> Stop {
    let path = format!("/v1/executions/{jti}/renew");
    let mut last_error = String::new();
    let mut failing = false;
    loop {
        let remaining = lease_exp as f64 - unix_now();
        let wait = if failing {
            RETRY_PAUSE
        } else {
            Duration::from_secs_f64((remaining / 2.0).max(RENEW_GAP_MIN.as_secs_f64()))
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            Some(()) = kicked.recv() => {}
        }
        // No attempt outlasts the grace: past it, the run ends.
        let left = lease_exp as f64 + grace.as_secs_f64() - unix_now();
        let limit = Duration::from_secs_f64(left.max(0.0)).max(LAST_ATTEMPT_MIN);
        // Each renewal of a holder-bound writ proves the run holds its key.
        let body = RenewRequest {
            pop: holder.proof(jti, PopUse::Renew),
            ..RenewRequest::default()
        };
        let answer = tokio::time::timeout(limit, client.post(&path, &body))
            .await
            .unwrap_or_else(|_| {
                Err(anyhow::anyhow!(
                    "no answer to the renewal within {:.1} s",
                    limit.as_secs_f64()
                ))
            });
        match answer {
            Ok(r) if r.ok() => {
                failing = false;
                match r.body.get("lease_exp").and_then(Value::as_u64) {
                    Some(l) => lease_exp = l,
                    None => {
                        return Stop::RenewalDenied(
                            ReasonCode::IntegrityFailure,
                            format!("the authority's renewal has no lease_exp: {}", r.body),
                        )
                    }
                }
            }
            // The authority answered, and not with a transient failure: it
            // refused (403, 401), or the execution is not running for it (404, 409).
            Ok(r) if matches!(r.status, 401 | 403 | 404 | 409) => {
                let reason = r.reason().unwrap_or(ReasonCode::IntegrityFailure);
                return Stop::RenewalDenied(reason, r.message());
            }
            Ok(r) => {
                failing = true;
                last_error = format!("HTTP {}: {}", r.status, r.message());
            }
            Err(e) => {
                failing = true;
                last_error = e.to_string();
            }
        }
        if failing && unix_now() > lease_exp as f64 + grace.as_secs_f64() {
            return Stop::Unreachable(format!(
                "the lease ended at {lease_exp} and could not be renewed within the {} s grace: {last_error}",
                grace.as_secs()
            ));
        }
    }
}

async fn watch_revocations(
    client: &Client,
    jti: &str,
    grace: Duration,
    kick: mpsc::Sender<()>,
) -> Stop {
    let path = format!("/v1/revocations/stream?watch={jti}");
    let mut down_since: Option<Instant> = None;
    let mut last_error;
    loop {
        match client.open(&path).await {
            Ok(mut resp) if resp.status().is_success() => {
                down_since = None;
                let mut buf: Vec<u8> = Vec::new();
                loop {
                    match tokio::time::timeout(STREAM_SILENCE_MAX, resp.chunk()).await {
                        Ok(Ok(Some(bytes))) => buf.extend_from_slice(&bytes),
                        Ok(Ok(None)) => {
                            last_error = "the server closed the revocation stream".into();
                            break;
                        }
                        Ok(Err(e)) => {
                            last_error = e.to_string();
                            break;
                        }
                        Err(_) => {
                            last_error = format!(
                                "the revocation stream was silent for {} s",
                                STREAM_SILENCE_MAX.as_secs()
                            );
                            break;
                        }
                    }
                    while let Some((event, data)) = next_event(&mut buf) {
                        if let Some(stop) = on_event(jti, &event, &data, &kick) {
                            return stop;
                        }
                    }
                }
                // Events may have been missed while the stream was down.
                let _ = kick.try_send(());
            }
            Ok(resp) => {
                last_error = format!("the revocation stream answered HTTP {}", resp.status());
                let _ = kick.try_send(());
            }
            Err(e) => last_error = e.to_string(),
        }
        let since = *down_since.get_or_insert_with(Instant::now);
        if since.elapsed() > grace {
            return Stop::Unreachable(format!(
                "no revocation stream for {} s: {last_error}",
                grace.as_secs()
            ));
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// What one stream event means for the run `jti`.
fn on_event(jti: &str, event: &str, data: &str, kick: &mpsc::Sender<()>) -> Option<Stop> {
    match event {
        "revocation" => {
            let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            let names_me = v["jtis"]
                .as_array()
                .is_some_and(|a| a.iter().any(|j| j.as_str() == Some(jti)));
            if names_me {
                let why = v["reason"].as_str().unwrap_or("revoked");
                let target = v["target"].as_str().unwrap_or(jti);
                return Some(Stop::Revoked(if v["kind"] == "principal" {
                    format!("principal {target} on the chain of writ {jti}: {why}")
                } else if target == jti {
                    format!("writ {jti}: {why}")
                } else {
                    format!("ancestor {target} of writ {jti}: {why}")
                }));
            }
            // A principal revocation names no writs: let the authority say
            // whether it reaches this run.
            if v["kind"] == "principal" {
                let _ = kick.try_send(());
            }
            None
        }
        "lagged" => {
            let _ = kick.try_send(());
            None
        }
        _ => None,
    }
}

/// Take one complete server-sent event (`event:` and `data:` fields up to a
/// blank line) off the front of `buf`. Comments and other fields are skipped.
fn next_event(buf: &mut Vec<u8>) -> Option<(String, String)> {
    loop {
        let text = std::str::from_utf8(buf).ok()?;
        let end = text
            .find("\n\n")
            .map(|i| (i, 2))
            .or_else(|| text.find("\r\n\r\n").map(|i| (i, 4)))?;
        let block = text[..end.0].to_owned();
        buf.drain(..end.0 + end.1);
        let mut event = String::from("message");
        let mut data: Vec<&str> = Vec::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim_start().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if !data.is_empty() {
            return Some((event, data.join("\n")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_at_blank_lines_and_comments_skipped() {
        let mut buf =
            b": keep-alive\n\nevent: revocation\ndata: {\"jtis\":[\"a\"]}\n\nevent: lag".to_vec();
        assert_eq!(
            next_event(&mut buf),
            Some(("revocation".into(), "{\"jtis\":[\"a\"]}".into()))
        );
        assert_eq!(next_event(&mut buf), None, "an incomplete event waits");
        buf.extend_from_slice(b"ged\ndata: {}\n\n");
        assert_eq!(next_event(&mut buf), Some(("lagged".into(), "{}".into())));
        assert!(buf.is_empty());
    }

    #[test]
    fn only_a_revocation_naming_the_run_stops_it() {
        let (kick, mut kicked) = mpsc::channel(1);
        let other =
            r#"{"type":"revocation","kind":"writ","target":"b","jtis":["b","c"],"reason":"x"}"#;
        assert_eq!(on_event("a", "revocation", other, &kick), None);
        assert!(
            kicked.try_recv().is_err(),
            "another writ's revocation needs no renewal"
        );
        let mine = r#"{"type":"revocation","kind":"writ","target":"p","jtis":["p","a"],"reason":"compromised"}"#;
        assert_eq!(
            on_event("a", "revocation", mine, &kick),
            Some(Stop::Revoked("ancestor p of writ a: compromised".into()))
        );
        let principal = r#"{"type":"revocation","kind":"principal","target":"Agent::\"x\"","jtis":[],"reason":"x"}"#;
        assert_eq!(on_event("a", "revocation", principal, &kick), None);
        assert!(
            kicked.try_recv().is_ok(),
            "a principal revocation asks for a renewal"
        );
    }
}
