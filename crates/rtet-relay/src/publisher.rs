//! `GET /publish`: the publishers' WebSocket (the PHP extension).
//!
//! The API key is checked on the upgrade request (401 before any upgrade).
//! Frames are handled strictly in arrival order on one task, so events sent
//! on one connection to one channel get increasing `seq` in send order. Every
//! `publish` gets exactly one `ack` or `nack`; answers to a pipelined burst
//! are written together and flushed once.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt, SinkExt};
use rtet_protocol::frames::parse_publish;
use rtet_protocol::{close, ErrorCode, FrameError, PublishFrame, ServerFrame};
use tokio::time::sleep_until;

use crate::engine::{EngineError, Published};
use crate::metrics::Role;
use crate::state::{Refusal, Relay};
use crate::ws::{is_too_large, now_millis, Keepalive, KeepaliveAction};

/// Answers flushed together at most, when a publisher pipelines without pause.
const FLUSH_EVERY: usize = 64;

/// At shutdown, frames already received that are still answered at most.
const SHUTDOWN_DRAIN_MAX: usize = 100_000;

/// Read buffer for a publisher connection (it grows for larger frames).
const READ_BUFFER: usize = 16 * 1024;

/// The `401` for a missing or unknown key.
pub fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "missing or unknown API key\n",
    )
        .into_response()
}

/// The answer to a connection refused by a count limit.
pub fn refused(r: Refusal) -> Response {
    match r {
        Refusal::PerIp => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from this address\n",
        )
            .into_response(),
        Refusal::Total => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the relay is at its connection limit\n",
        )
            .into_response(),
    }
}

/// `GET /publish`: checks the key, then upgrades.
pub async fn upgrade(
    State(relay): State<Arc<Relay>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(key) = relay.bearer_key(&headers) else {
        relay.metrics.auth_failure(Role::publisher);
        tracing::info!(%peer, "publisher refused: missing or unknown API key");
        return unauthorized();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let guard = match relay.admit(relay.client_ip(peer, &headers), Role::publisher) {
        Ok(g) => g,
        Err(r) => return refused(r),
    };
    relay.metrics.accepted(Role::publisher);
    let token = relay.publishers.token();
    let max = relay.config.limits.max_frame_bytes;
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(16 * 1024)
        // Frames up to twice the limit are read and answered with a nack; larger ones close 1009.
        .max_message_size(max.saturating_mul(2).saturating_add(4096))
        .max_frame_size(max.saturating_mul(2).saturating_add(4096))
        .on_upgrade(move |socket| async move {
            tracing::debug!(%peer, key, "publisher connected");
            serve(Arc::clone(&relay), socket, key).await;
            tracing::debug!(%peer, "publisher gone");
            drop(guard);
            drop(token);
        })
}

/// What to do after one incoming message.
enum Step {
    Reply(ServerFrame),
    Nothing,
    Close(u16, &'static str),
    End,
}

/// One publisher connection's state between frames.
struct Conn {
    /// The API key number the connection authenticated with.
    key: usize,
    /// The (id, channel) of a publish refused with `rate_limited`. Until that
    /// event is sent again, every later publish on this connection is refused
    /// too, so that pipelined events cannot overtake it and a retry keeps the
    /// publisher's order (reconnecting starts afresh).
    held_for: Option<(String, String)>,
}

async fn handle(relay: &Relay, conn: &mut Conn, msg: Option<Result<Message, axum::Error>>) -> Step {
    match msg {
        None => Step::End,
        Some(Err(e)) => {
            if is_too_large(e) {
                Step::Close(close::TOO_LARGE, "frame too large")
            } else {
                Step::End
            }
        }
        Some(Ok(Message::Text(text))) => Step::Reply(answer(relay, conn, text.as_str()).await),
        Some(Ok(Message::Binary(_))) => {
            relay.metrics.nack(ErrorCode::Invalid);
            Step::Reply(ServerFrame::Error {
                code: ErrorCode::Invalid,
                channel: None,
                message: "binary frames are not accepted; send JSON text frames".into(),
            })
        }
        Some(Ok(Message::Close(_))) => Step::End,
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Step::Nothing,
    }
}

/// The `ack` or `nack` for one publish frame.
async fn answer(relay: &Relay, conn: &mut Conn, text: &str) -> ServerFrame {
    let max = relay.config.limits.max_frame_bytes;
    let result = match parse_publish(text) {
        Ok(frame) if text.len() > max => Err(too_large(&frame, text.len(), max)),
        Ok(frame) => match &conn.held_for {
            Some((id, channel)) if (id, channel) != (&frame.id, &frame.channel) => {
                Err(FrameError {
                    code: ErrorCode::RateLimited,
                    message: format!(
                        "held back to keep order: event {id} on channel {channel} was refused \
                     rate_limited; send it again first, or reconnect"
                    ),
                    id: Some(frame.id.clone()),
                    channel: Some(frame.channel.clone()),
                })
            }
            _ => {
                let r = publish(relay, conn.key, &frame).await;
                conn.held_for = match &r {
                    Err(e) if e.code == ErrorCode::RateLimited => {
                        Some((frame.id.clone(), frame.channel.clone()))
                    }
                    _ => None,
                };
                r.map(|p| (p, frame.id, frame.channel))
            }
        },
        Err(e) if text.len() > max => Err(FrameError {
            code: ErrorCode::TooLarge,
            message: format!("frame is {} bytes; the limit is {max}", text.len()),
            ..e
        }),
        Err(e) => Err(e),
    };
    match result {
        Ok((p, id, channel)) => ServerFrame::Ack {
            id,
            channel,
            seq: p.seq,
        },
        Err(e) => {
            relay.metrics.nack(e.code);
            if is_publish(text) {
                ServerFrame::nack_from_error(&e)
            } else {
                // Not a publish at all (not JSON, not an object, another type):
                // the protocol answers such frames with `error`, as on /ws.
                ServerFrame::from_error(&e)
            }
        }
    }
}

/// Whether a refused frame was meant as a publish (a JSON object with `"type":"publish"`).
fn is_publish(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_str::<Kind>(text)
        .map(|k| k.kind.as_deref() == Some("publish"))
        .unwrap_or(false)
}

fn too_large(frame: &PublishFrame, len: usize, max: usize) -> FrameError {
    let data = frame.data.get().len();
    let message = if data > max {
        format!("data is {data} bytes; the limit is {max}")
    } else {
        format!("frame is {len} bytes; the limit is {max}")
    };
    FrameError {
        code: ErrorCode::TooLarge,
        message,
        id: Some(frame.id.clone()),
        channel: Some(frame.channel.clone()),
    }
}

/// Publishes one checked event for API key number `key`: rate limit, then
/// the engine. Shared by the WebSocket and HTTP endpoints.
pub async fn publish(
    relay: &Relay,
    key: usize,
    frame: &PublishFrame,
) -> Result<Published, FrameError> {
    let fail = |code, message: String, frame: &PublishFrame| FrameError {
        code,
        message,
        id: Some(frame.id.clone()),
        channel: Some(frame.channel.clone()),
    };
    if frame.data.get().len() > relay.config.limits.max_frame_bytes {
        let max = relay.config.limits.max_frame_bytes;
        return Err(fail(
            ErrorCode::TooLarge,
            format!(
                "data is {} bytes; the limit is {max}",
                frame.data.get().len()
            ),
            frame,
        ));
    }
    if !relay.take_publish(key) {
        return Err(fail(
            ErrorCode::RateLimited,
            format!(
                "more than {} publishes per second for this key",
                relay.config.limits.publishes_per_sec_per_key
            ),
            frame,
        ));
    }
    let ts = frame.ts.unwrap_or_else(now_millis);
    match relay.engine.publish(frame, ts).await {
        Ok(p) => {
            if p.duplicate {
                relay.metrics.duplicates.inc();
            } else {
                relay.metrics.events_published.inc();
                relay.metrics.deliveries.inc_by(p.delivered as u64);
                relay.metrics.slow_consumers.inc_by(p.overflowed as u64);
            }
            Ok(p)
        }
        Err(e) => Err(fail(engine_error_code(&e), e.to_string(), frame)),
    }
}

/// The protocol code for an engine refusal: a count limit is `forbidden`; a
/// store that is down is `rate_limited` ("try again later"; HTTP 429).
pub fn engine_error_code(e: &EngineError) -> ErrorCode {
    match e {
        EngineError::TooManyChannels { .. } => ErrorCode::Forbidden,
        EngineError::Unavailable(_) => ErrorCode::RateLimited,
    }
}

/// Serves one publisher connection until it closes or the relay shuts down.
pub async fn serve(relay: Arc<Relay>, mut socket: WebSocket, key: usize) {
    let mut conn = Conn {
        key,
        held_for: None,
    };
    let limits = relay.config.limits.clone();
    let mut keepalive = Keepalive::new(limits.ping_interval, limits.dead_peer_timeout);
    let timer = sleep_until(keepalive.deadline());
    tokio::pin!(timer);
    let stop = relay.stop_publishers.clone();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                // Answer every publish that already arrived (bounded, in case the peer never
                // pauses), then say goodbye.
                let mut answered = 0;
                while let Some(msg) = socket.recv().now_or_never() {
                    answered += 1;
                    if answered > SHUTDOWN_DRAIN_MAX {
                        break;
                    }
                    match handle(&relay, &mut conn, msg).await {
                        Step::Reply(f) => {
                            if socket.feed(Message::Text(f.encode().into())).await.is_err() {
                                return;
                            }
                        }
                        Step::Nothing => {}
                        Step::Close(..) | Step::End => break,
                    }
                }
                let _ = socket.flush().await;
                crate::ws::close(&mut socket, close::GOING_AWAY, "relay shutting down").await;
                return;
            }
            msg = socket.recv() => {
                keepalive.seen();
                let mut step = handle(&relay, &mut conn, msg).await;
                let mut pending = 0;
                loop {
                    match step {
                        Step::Reply(f) => {
                            if socket.feed(Message::Text(f.encode().into())).await.is_err() {
                                return;
                            }
                            pending += 1;
                        }
                        Step::Nothing => {}
                        Step::Close(code, reason) => {
                            let _ = socket.flush().await;
                            crate::ws::close(&mut socket, code, reason).await;
                            return;
                        }
                        Step::End => {
                            let _ = socket.flush().await;
                            return;
                        }
                    }
                    if pending >= FLUSH_EVERY {
                        break;
                    }
                    match socket.recv().now_or_never() {
                        Some(msg) => step = handle(&relay, &mut conn, msg).await,
                        None => break,
                    }
                }
                if socket.flush().await.is_err() {
                    return;
                }
            }
            _ = &mut timer => {
                match keepalive.fire() {
                    KeepaliveAction::Dead => {
                        tracing::debug!("publisher answered no ping; closing");
                        crate::ws::close(&mut socket, close::GOING_AWAY, "no answer to pings").await;
                        return;
                    }
                    KeepaliveAction::Ping => {
                        if socket.send(Message::Ping(Default::default())).await.is_err() {
                            return;
                        }
                    }
                    KeepaliveAction::Wait => {}
                }
                timer.as_mut().reset(keepalive.deadline());
            }
        }
    }
}
