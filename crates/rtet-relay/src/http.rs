//! Plain HTTP endpoints: `GET /healthz`, `GET /metrics` and
//! `POST /api/send-event` (publishing without the extension).
//!
//! A publish over HTTP counts against the per-IP and total connection limits
//! while it runs, as WebSocket connections do. `POST /api/send-event` checks the key
//! in the `Authorization` header before it reads a body, and reads the body
//! into one buffer no larger than the limit, within a deadline: a client
//! without a key can make the relay hold at most [`BODY_KEY_MAX_BYTES`] for
//! at most the deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use rtet_protocol::frames::{HttpPublishReply, HttpPublishRequest};
use rtet_protocol::ErrorCode;
use subtle::ConstantTimeEq;

use crate::metrics::Role;
use crate::state::{KeyId, Relay};

/// The largest body read from a request without a key in its `Authorization`
/// header, to find an `apiKey` in it (the original blog recipe's format).
/// Larger events need the key in the header.
pub const BODY_KEY_MAX_BYTES: usize = 8 * 1024;

/// Counts an HTTP publish in the connection limits while it runs (refused
/// with 429 or 503 like a WebSocket upgrade).
pub async fn admit(
    State(relay): State<Arc<Relay>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let guard = match relay.admit(relay.client_ip(peer, request.headers()), Role::http) {
        Ok(g) => g,
        Err(r) => return r.into_response(),
    };
    let response = next.run(request).await;
    drop(guard);
    response
}

/// `GET /healthz`: `200 ok` once the relay accepts connections, `503` while
/// its engine cannot deliver (the backing store is unreachable), so a load
/// balancer sends clients to another node.
pub async fn healthz(State(relay): State<Arc<Relay>>) -> Response {
    if relay.engine.is_up() {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "engine unavailable\n").into_response()
    }
}

/// `GET /metrics` on the main port: with `--metrics-listen` it is served
/// there instead (404 here); with `--metrics-token` it needs that token;
/// otherwise only loopback clients that did not come through a proxy get it.
pub async fn guarded_metrics(
    State(relay): State<Arc<Relay>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if relay.config.metrics_listen.is_some() {
        return StatusCode::NOT_FOUND.into_response();
    }
    match &relay.config.metrics_token {
        Some(token) => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim().as_bytes());
            let ok = presented.is_some_and(|p| bool::from(p.ct_eq(token.as_bytes())));
            if !ok {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    "/metrics needs the metrics token\n",
                )
                    .into_response();
            }
        }
        None => {
            let proxied = ["forwarded", "x-forwarded-for", "x-real-ip"]
                .iter()
                .any(|h| headers.contains_key(*h));
            if !peer.ip().is_loopback() || proxied {
                return (
                    StatusCode::FORBIDDEN,
                    "/metrics answers only local clients; set --metrics-token or --metrics-listen\n",
                )
                    .into_response();
            }
        }
    }
    metrics(State(relay)).await
}

/// `GET /metrics`: every `rtet_*` metric in the text exposition format.
pub async fn metrics(State(relay): State<Arc<Relay>>) -> Response {
    let body = relay
        .metrics
        .render(relay.engine.stats(), relay.presence.stats());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn reply(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(HttpPublishReply::Err {
            ok: false,
            code,
            message: message.into(),
        }),
    )
        .into_response()
}

fn unauthorized(relay: &Relay, message: impl Into<String>) -> Response {
    relay.metrics.auth_failure(Role::publisher);
    reply(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
}

/// Why a request body could not be read.
enum BodyError {
    /// Longer than the cap.
    TooLarge,
    /// Not complete within the deadline.
    Timeout,
    /// The connection failed or the body was malformed.
    Failed,
}

/// Reads `body` into one buffer of at most `cap` bytes, within `deadline`.
/// Copying each chunk (however small) into that buffer keeps the memory a
/// request holds at its size, whatever the chunking.
async fn read_body(body: Body, cap: usize, deadline: Duration) -> Result<Vec<u8>, BodyError> {
    let read = async {
        let mut buffer = Vec::new();
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|_| BodyError::Failed)?;
            if buffer.len() + chunk.len() > cap {
                return Err(BodyError::TooLarge);
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(buffer)
    };
    tokio::time::timeout(deadline, read)
        .await
        .unwrap_or(Err(BodyError::Timeout))
}

/// `POST /api/send-event`: the key as a Bearer header or as `apiKey` in the
/// body; answers 200, 400 (invalid), 401, 403 (forbidden), 408 (body too
/// slow), 413 (too large), 429.
pub async fn send_event(
    State(relay): State<Arc<Relay>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let max = relay.config.limits.max_frame_bytes;
    let header_key = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(_) => match relay.bearer_key(&headers) {
            Some(key) => Some(key),
            None => return unauthorized(&relay, "missing or unknown API key"),
        },
    };
    let cap = match header_key {
        Some(_) => max,
        None => BODY_KEY_MAX_BYTES.min(max),
    };
    let too_large = || match header_key {
        Some(_) => {
            relay.metrics.nack(ErrorCode::TooLarge);
            reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
                format!("request body is larger than the limit of {max} bytes"),
            )
        }
        None => unauthorized(
            &relay,
            format!(
                "missing API key: send it as Authorization: Bearer (a key in the body is \
                 read only from bodies of at most {cap} bytes)"
            ),
        ),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > cap as u64) {
        return too_large();
    }
    let timeout = relay.config.http_body_timeout;
    let body = match read_body(body, cap, timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return too_large(),
        Err(BodyError::Timeout) => {
            return reply(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::Invalid,
                format!(
                    "request body not received within {}",
                    humantime::format_duration(timeout)
                ),
            )
        }
        Err(BodyError::Failed) => {
            return reply(
                StatusCode::BAD_REQUEST,
                ErrorCode::Invalid,
                "request body could not be read",
            )
        }
    };
    let request = HttpPublishRequest::parse(&body);
    let key = match header_key {
        Some(key) => key,
        None => match body_key(&relay, &request, &body) {
            Some(key) => key,
            None => return unauthorized(&relay, "missing or unknown API key"),
        },
    };
    let frame = match request.and_then(|r| r.into_publish()) {
        Ok(f) => f,
        Err(e) => {
            relay.metrics.nack(e.code);
            return reply(StatusCode::BAD_REQUEST, e.code, e.message);
        }
    };
    match crate::publish::publish(&relay, key, &frame).await {
        Ok(p) => axum::Json(HttpPublishReply::Ok {
            ok: true,
            id: frame.id,
            channel: frame.channel,
            seq: p.seq,
        })
        .into_response(),
        Err(e) => {
            relay.metrics.nack(e.code);
            let status = match e.code {
                ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::Forbidden => StatusCode::FORBIDDEN,
                ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
                ErrorCode::Invalid => StatusCode::BAD_REQUEST,
            };
            reply(status, e.code, e.message)
        }
    }
}

/// The key given as `apiKey` in the body. A body that is not a valid request
/// may still carry a good key (then the answer is 400, not 401), so only then
/// is it read as plain JSON.
fn body_key(
    relay: &Relay,
    request: &Result<HttpPublishRequest, rtet_protocol::FrameError>,
    body: &[u8],
) -> Option<KeyId> {
    match request {
        Ok(r) => relay.keys.find(r.api_key.as_deref()?),
        Err(_) => {
            let value: serde_json::Value = serde_json::from_slice(body).ok()?;
            relay.keys.find(value.get("apiKey")?.as_str()?)
        }
    }
}
