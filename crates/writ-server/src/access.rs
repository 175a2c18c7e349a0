//! Who may call what: one table, one guard.
//!
//! Every route (the API, AuthZEN, the console's API and pages, metrics) has
//! exactly one [`Class`] in [`TABLE`]; [`guard`], a layer over the whole
//! router, authenticates the bearer token (before the body is read) and
//! refuses a caller below the route's class, and hands handlers the
//! authenticated principal in the request's extensions (`state::Caller`).
//! A route missing from the table is refused (fail closed); a test walks
//! the OpenAPI document and calls every route as each class.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use writ_artifact::{Denial, ReasonCode};
use writ_authority::Principal;

use crate::state::{bearer, denial_status, deny_response, error, ServerState};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Anyone, without a token: what outside verification needs (proofs,
    /// checkpoints, keys, the log's leaves, which carry commitments only),
    /// health, the console's pages.
    Public,
    /// Any registered principal (or a run's credential).
    Principal,
    /// A principal marked auditor, or an administrator: the content the
    /// log commits to and the console's views of it.
    Auditor,
    /// An administrator (never through a run's credential).
    Admin,
}

/// Every route and its class, by method and the route's template.
pub const TABLE: &[(&str, &str, Class)] = &[
    ("GET", "/", Class::Public),
    ("GET", "/healthz", Class::Public),
    ("GET", "/readyz", Class::Public),
    ("GET", "/openapi.json", Class::Public),
    ("GET", "/.well-known/jwks.json", Class::Public),
    ("POST", "/v1/verify", Class::Public),
    ("GET", "/v1/log/entries", Class::Public),
    ("GET", "/v1/log/checkpoint", Class::Public),
    ("GET", "/v1/log/checkpoints", Class::Public),
    ("GET", "/v1/log/key", Class::Public),
    ("GET", "/v1/log/proof/inclusion", Class::Public),
    ("GET", "/v1/log/proof/consistency", Class::Public),
    ("GET", "/console/proof", Class::Public),
    ("GET", "/console/health", Class::Public),
    ("GET", "/console/lineage", Class::Public),
    ("GET", "/console/demo", Class::Public),
    ("GET", "/console/maturity", Class::Public),
    ("GET", "/console/assets/console.css", Class::Public),
    ("GET", "/console/assets/console.js", Class::Public),
    ("POST", "/console/api/proof", Class::Public),
    ("GET", "/console/api/proof", Class::Public),
    ("POST", "/v1/authorize", Class::Principal),
    ("POST", "/access/v1/evaluation", Class::Principal),
    ("POST", "/v1/executions/{jti}/start", Class::Principal),
    ("POST", "/v1/executions/{jti}/renew", Class::Principal),
    ("POST", "/v1/executions/{jti}/finish", Class::Principal),
    ("GET", "/v1/revocations", Class::Principal),
    ("GET", "/v1/revocations/stream", Class::Principal),
    ("GET", "/v1/lineage/{jti}", Class::Principal),
    ("GET", "/v1/policies", Class::Principal),
    ("GET", "/v1/mesh", Class::Principal),
    ("GET", "/metrics", Class::Principal),
    ("GET", "/console/api/health", Class::Principal),
    ("GET", "/v1/log/bundles/{hash}", Class::Auditor),
    ("GET", "/v1/log/contents", Class::Auditor),
    ("GET", "/console/api/entries", Class::Auditor),
    ("GET", "/console/api/stream", Class::Auditor),
    ("GET", "/console/api/policy", Class::Auditor),
    ("GET", "/console/api/revocations", Class::Auditor),
    ("GET", "/console/api/executions", Class::Auditor),
    ("GET", "/console/api/lineage/{jti}", Class::Auditor),
    ("GET", "/console/api/assess", Class::Auditor),
    ("POST", "/v1/revocations", Class::Admin),
    ("POST", "/v1/principals", Class::Admin),
    ("GET", "/v1/principals", Class::Admin),
    ("POST", "/v1/principals/rotate", Class::Admin),
    ("POST", "/v1/principals/disable", Class::Admin),
    ("POST", "/v1/principals/enable", Class::Admin),
    ("POST", "/v1/issuers", Class::Admin),
    ("GET", "/v1/issuers", Class::Admin),
    ("POST", "/v1/issuers/remove", Class::Admin),
    ("POST", "/v1/pins", Class::Admin),
    ("GET", "/v1/pins", Class::Auditor),
    ("POST", "/v1/policies", Class::Admin),
    ("POST", "/v1/keys/rotate", Class::Admin),
    ("POST", "/v1/keys/retire", Class::Admin),
    ("POST", "/v1/log/checkpoint", Class::Admin),
    ("POST", "/v1/log/erase", Class::Admin),
    ("POST", "/console/api/demo", Class::Admin),
];

/// The class of `method` on the route `template`; `None` if the table does
/// not name it (refused). HEAD is GET's.
pub fn class_of(method: &Method, template: &str) -> Option<Class> {
    let m = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    TABLE
        .iter()
        .find(|(tm, tp, _)| *tm == m && *tp == template)
        .map(|(_, _, c)| *c)
}

/// Whether `who` holds `class`.
fn holds(who: &Principal, class: Class) -> bool {
    match class {
        Class::Public | Class::Principal => true,
        Class::Auditor => (who.auditor || who.admin) && who.execution.is_none(),
        Class::Admin => who.admin && who.execution.is_none(),
    }
}

/// The longest a read waits for finishes answered before their commit.
const SETTLE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// The guard: the route's class from [`TABLE`]; for anything above
/// [`Class::Public`], the bearer token authenticated (before any body is
/// read; the finish record takes `authenticate_for_finish`) and the
/// caller's class checked; then the decision routes' rate limit and the
/// event streams' count. The principal goes into the request's
/// extensions. A read (GET, HEAD) first waits, at most
/// [`SETTLE_WAIT_MAX`], for the finishes answered before their commit.
pub async fn guard(
    State(s): State<Arc<ServerState>>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(template) = matched.as_ref().map(MatchedPath::as_str) else {
        // No route matched: the router's fallbacks answer (404, 405).
        return next.run(req).await;
    };
    let Some(class) = class_of(req.method(), template) else {
        // The route takes other methods: its own answer (405) says which.
        if TABLE.iter().any(|(_, p, _)| *p == template) {
            return next.run(req).await;
        }
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            None,
            "this route has no access class; refused",
        );
    };
    if req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD {
        // A read sees every finish answered before it arrived, also one
        // answered before its commit (docs/spec/api.md, "Finishing before
        // the commit"); past the bound it reads what is committed.
        let _ = tokio::time::timeout(SETTLE_WAIT_MAX, s.authority.settled()).await;
    }
    if class == Class::Public {
        return next.run(req).await;
    }
    let who = match authenticate(&s, Credentials::of(&req), template).await {
        Ok(p) => p,
        Err(d) => return refused(&s, template, &d),
    };
    if let Some(r) = below_class(&who, class) {
        return r;
    }
    if let Some(r) = over_rate(&s, &req, template, &who) {
        return r;
    }
    let stream = if is_stream_route(template) {
        match StreamPermit::take(&s, &who.uid) {
            Some(p) => Some(p),
            None => return too_many_streams(&s, &who.uid),
        }
    } else {
        None
    };
    req.extensions_mut().insert(who);
    let res = next.run(req).await.into_response();
    match stream {
        None => res,
        Some(permit) => held_while_streaming(res, permit),
    }
}

/// What a request offers to say who calls.
struct Credentials {
    /// The bearer token (empty without one).
    token: String,
    /// The mutual-TLS client certificate.
    peer: Option<Arc<writ_identity::x509::PeerCertificate>>,
    /// The Unix socket's peer.
    local: Option<Arc<writ_identity::peercred::Peer>>,
}

impl Credentials {
    fn of(req: &Request) -> Credentials {
        Credentials {
            token: bearer(req.headers()).unwrap_or_default().to_owned(),
            peer: req
                .extensions()
                .get::<Arc<writ_identity::x509::PeerCertificate>>()
                .cloned(),
            local: req
                .extensions()
                .get::<Arc<writ_identity::peercred::Peer>>()
                .cloned(),
        }
    }
}

/// Who calls: the bearer token (a run's credential, an external issuer's
/// JWT, or a principal's token) or, with none, the mutual-TLS client
/// certificate or the Unix socket's peer.
async fn authenticate(
    s: &Arc<ServerState>,
    c: Credentials,
    template: &str,
) -> Result<Principal, Denial> {
    let Credentials { token, peer, local } = c;
    let finish = template == "/v1/executions/{jti}/finish";
    let authenticate = {
        let s = s.clone();
        move |token: &str| {
            if finish {
                s.authority.authenticate_for_finish(token)
            } else {
                s.authority.authenticate(token)
            }
        }
    };
    // An execution's credential is looked up in the store (a query on a
    // shared one): off the async workers. A JWT is checked against its
    // issuer's keys (fetched when missing). A principal's token is checked
    // against the cached registry. No token on a mutual-TLS connection: the
    // client certificate says who calls; on the Unix socket, the kernel.
    if token.starts_with("writx_") {
        match tokio::task::spawn_blocking(move || authenticate(&token)).await {
            Ok(r) => r,
            Err(e) => Err(Denial::new(ReasonCode::AuthorityUnavailable, e.to_string())),
        }
    } else if writ_identity::issuer::looks_like_jwt(&token) {
        s.authority.authenticate_jwt(&token).await
    } else if let (true, Some(peer)) = (token.is_empty(), &peer) {
        s.authority.authenticate_certificate(peer)
    } else if let (true, Some(local)) = (token.is_empty(), &local) {
        let mapped = match &s.peercred {
            Some(rules) => rules.map(local).map_err(|e| e.to_string()),
            None => Err(format!(
                "a local caller needs a token: no {} in the data dir maps local callers",
                writ_identity::peercred::RULES_FILE
            )),
        };
        s.authority
            .authenticate_proven(mapped.map_err(|m| Denial::new(ReasonCode::Unauthenticated, m)))
    } else {
        authenticate(&token)
    }
}

/// A caller who did not authenticate. The decision route answers a
/// refusal in its own shape, and counts it.
fn refused(s: &ServerState, template: &str, d: &Denial) -> Response {
    if template == "/v1/authorize" {
        s.metrics.record("deny", d.reason.as_str(), 0.0);
        return deny_response(d, None);
    }
    error(
        denial_status(d.reason),
        "denied",
        Some(d.reason),
        d.message.clone(),
    )
}

/// 403 when `who` does not hold `class`.
fn below_class(who: &Principal, class: Class) -> Option<Response> {
    if holds(who, class) {
        return None;
    }
    let what = match class {
        Class::Auditor => "an auditor or an administrator",
        _ => "an administrator",
    };
    let how = match &who.execution {
        Some(e) => format!(" (a credential of execution {e} holds no such role)"),
        None => String::new(),
    };
    Some(error(
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
        format!("{} is not {what}{how}", who.uid),
    ))
}

/// 429 when a decision route's caller is over its rate. One bucket per
/// principal; a governed program's credential has its own (a flooding
/// program must not starve its principal's other runs), and so does each
/// run's renewal (refusing it ends the run).
fn over_rate(s: &ServerState, req: &Request, template: &str, who: &Principal) -> Option<Response> {
    if !is_decision_route(req.method(), template) {
        return None;
    }
    let bucket = match (&who.execution, template) {
        (_, "/v1/executions/{jti}/renew") => format!("{} {}", who.uid, req.uri().path()),
        (Some(e), _) => format!("{} {e}", who.uid),
        (None, _) => who.uid.clone(),
    };
    let wait = s.rate.take(&bucket).err()?;
    s.metrics.rate_limited.inc();
    Some(rate_limited(&who.uid, wait))
}

fn too_many_streams(s: &ServerState, uid: &str) -> Response {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_streams",
        None,
        format!(
            "{uid} holds {} event streams already; close one first",
            s.streams_per_principal
        ),
    )
}

/// `res` with `permit` living as long as its body (the stream).
fn held_while_streaming(res: Response, permit: StreamPermit) -> Response {
    use futures_util::StreamExt as _;
    let (parts, body) = res.into_parts();
    let body = axum::body::Body::from_stream(body.into_data_stream().map(move |f| {
        let _held = &permit;
        f
    }));
    Response::from_parts(parts, body)
}

/// Routes that answer with an event stream (they hold their connection).
fn is_stream_route(template: &str) -> bool {
    matches!(template, "/v1/revocations/stream" | "/console/api/stream")
}

/// One of a principal's event streams, counted until dropped.
struct StreamPermit {
    state: Arc<ServerState>,
    uid: String,
}

impl StreamPermit {
    /// `None` when `uid` holds `streams_per_principal` already.
    fn take(s: &Arc<ServerState>, uid: &str) -> Option<StreamPermit> {
        let mut open = match s.streams.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let n = open.entry(uid.to_owned()).or_insert(0);
        if *n >= s.streams_per_principal {
            return None;
        }
        *n += 1;
        Some(StreamPermit {
            state: s.clone(),
            uid: uid.to_owned(),
        })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = match self.state.streams.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(n) = open.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.uid);
            }
        }
    }
}

/// The routes that ask for a decision (rate-limited per principal). The
/// finish record is not: refusing it would lose what a run did.
fn is_decision_route(method: &Method, template: &str) -> bool {
    method == Method::POST
        && matches!(
            template,
            "/v1/authorize"
                | "/access/v1/evaluation"
                | "/v1/executions/{jti}/start"
                | "/v1/executions/{jti}/renew"
        )
}

/// 429 with `Retry-After`; an enforcement point denies
/// `authority_unavailable`, as for any authority that does not answer.
fn rate_limited(uid: &str, wait: std::time::Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        Some(ReasonCode::AuthorityUnavailable),
        format!("{uid} is over its rate limit; retry in {secs} s"),
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The table and the OpenAPI document name the same routes: a route
    /// added without a class (or a class for a route that went) fails here.
    #[test]
    fn every_documented_route_has_one_class_and_every_class_a_route() {
        let doc: serde_json::Value = serde_json::from_str(crate::health::OPENAPI).unwrap();
        let mut documented = std::collections::BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                let m = method.to_ascii_uppercase();
                assert!(
                    class_of(&Method::from_bytes(m.as_bytes()).unwrap(), path).is_some(),
                    "{m} {path} has no access class"
                );
                documented.insert((m, path.clone()));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (m, p, _) in TABLE {
            assert!(seen.insert((*m, *p)), "{m} {p} is in the table twice");
            let console_page = p.starts_with("/console/") && !p.starts_with("/console/api/");
            assert!(
                console_page || documented.contains(&((*m).to_owned(), (*p).to_owned())),
                "{m} {p} is classified but not in the OpenAPI document"
            );
        }
    }
}
