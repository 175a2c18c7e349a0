//! The HTTP side of the front: response bodies, answers, and what is read
//! from a request's headers and body, bounded.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use writ_artifact::Denial;
use writ_mcp::message::INVALID_REQUEST;

use super::{BODY_TIMEOUT, TOKEN_BYTES_MAX};

/// A response body: whole, or events as they come.
pub(crate) enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    // A whole body's length goes out as its Content-Length.
    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Body::Full(b) => {
                http_body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            Body::Stream(_) => http_body::SizeHint::default(),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }
}

pub(super) fn respond(status: StatusCode, headers: &[(&str, &str)], body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

/// A JSON-RPC error as an HTTP answer.
pub(super) fn rpc_error(
    status: StatusCode,
    id: &Value,
    code: i64,
    message: &str,
) -> Response<Body> {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    respond(
        status,
        &[("content-type", "application/json")],
        Body::Full(Some(Bytes::from(body.to_string()))),
    )
}

pub(super) fn refused(status: StatusCode, message: &str) -> Response<Body> {
    rpc_error(status, &Value::Null, INVALID_REQUEST, message)
}

pub(super) fn header<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The bearer token, if well formed.
pub(super) fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = header(h, "authorization")?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && token.len() <= TOKEN_BYTES_MAX
        && token.bytes().all(|b| b.is_ascii_graphic()))
    .then_some(token)
}

/// `WWW-Authenticate` of a 401 without protected-resource metadata.
const CHALLENGE: &str = "Bearer realm=\"writ mcp-proxy\"";

/// 401 for a request without a bearer token; `challenge` names the
/// protected-resource metadata when there is some.
pub(super) fn unauthenticated(challenge: Option<&HeaderValue>) -> Response<Body> {
    let mut r = refused(
        StatusCode::UNAUTHORIZED,
        "a bearer token is required (Authorization: Bearer ...): the principal's token writ authorizes the session with",
    );
    r.headers_mut().insert(
        "www-authenticate",
        challenge
            .cloned()
            .unwrap_or(HeaderValue::from_static(CHALLENGE)),
    );
    r
}

pub(super) fn accepts(h: &HeaderMap, what: &str) -> bool {
    h.get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.split(';').next().unwrap_or_default().trim();
            t.eq_ignore_ascii_case(what) || t == "*/*"
        })
}

/// The request's body, bounded in size and time.
pub(super) async fn read_body(
    body: Incoming,
    limit: usize,
) -> Result<Vec<u8>, Box<Response<Body>>> {
    let read = async {
        let mut body = body;
        let mut out = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.map_err(|e| {
                Box::new(refused(StatusCode::BAD_REQUEST, &format!("the body: {e}")))
            })?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > limit {
                    return Err(Box::new(refused(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("a message of more than {limit} bytes (here)"),
                    )));
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(Box::new(refused(
                StatusCode::REQUEST_TIMEOUT,
                "the body came too slowly",
            )))
        })
}

/// A denied session, with the reason code: `unauthenticated` is 401 with `challenge`
/// (or the plain one), anything else 403.
pub(super) fn denial(d: &Denial, challenge: Option<&HeaderValue>) -> Response<Body> {
    let status = if d.reason == writ_artifact::ReasonCode::Unauthenticated {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    let body = json!({
        "jsonrpc": "2.0", "id": null,
        "error": {"code": writ_mcp::message::DENIED,
                  "message": format!("denied: {}: {}", d.reason, d.message),
                  "data": {"writ/reason": d.reason.as_str()}},
    });
    let mut r = respond(
        status,
        &[("content-type", "application/json")],
        Body::Full(Some(Bytes::from(body.to_string()))),
    );
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            "www-authenticate",
            challenge
                .cloned()
                .unwrap_or(HeaderValue::from_static(CHALLENGE)),
        );
    }
    r
}
