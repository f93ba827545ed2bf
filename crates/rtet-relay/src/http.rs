//! Plain HTTP endpoints: `GET /healthz`, `GET /metrics` and
//! `POST /api/send-event` (publishing without the extension).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rtet_protocol::frames::{HttpPublishReply, HttpPublishRequest};
use rtet_protocol::ErrorCode;

use crate::metrics::Role;
use crate::state::Relay;

/// `GET /healthz`: `200 ok` once the relay accepts connections.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /metrics`: every `rtet_*` metric in the text exposition format.
pub async fn metrics(State(relay): State<Arc<Relay>>) -> Response {
    let body = relay.metrics.render(relay.engine.stats());
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

/// `POST /api/send-event`: the key as a Bearer header or as `apiKey` in the
/// body; answers 200, 400 (invalid), 401, 403 (forbidden), 413 (too large), 429.
pub async fn send_event(
    State(relay): State<Arc<Relay>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let max = relay.config.limits.max_frame_bytes;
    let header_key = relay.bearer_key(&headers);
    let body: Bytes = match axum::body::to_bytes(body, max).await {
        Ok(b) => b,
        Err(_) => {
            if header_key.is_some() {
                relay.metrics.nack(ErrorCode::TooLarge);
            }
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
                format!("request body is larger than the limit of {max} bytes"),
            );
        }
    };
    let key = header_key.or_else(|| {
        let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
        relay.keys.find(value.get("apiKey")?.as_str()?)
    });
    let Some(key) = key else {
        relay.metrics.auth_failure(Role::publisher);
        return reply(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing or unknown API key",
        );
    };
    let frame = match HttpPublishRequest::parse(&body).and_then(|r| r.into_publish()) {
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
