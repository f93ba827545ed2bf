//! `GET /publish`: the publishers' WebSocket (the PHP extension).
//!
//! The API key is checked on the upgrade request (401 before any upgrade).
//! Frames are handled strictly in arrival order on one task, so events sent
//! on one connection to one channel get increasing `seq` in send order. Every
//! `publish` gets exactly one `ack` or `nack`; answers to a pipelined burst
//! are written together and flushed once.
//!
//! Each publish is handed to the engine as it is read, and the connection
//! goes on reading while answers are out (up to `UNANSWERED_MAX`): with an
//! engine that answers later (Redis), every publish that has arrived is on its
//! way to Redis in a pipeline, none waits for an earlier one's round trip.
//! A refusal of one event can therefore come after later events were
//! stored: those are acked (they are stored, once), and the hold for the
//! refused one keeps its retry ahead of everything read after the refusal.
//! Only such a refusal with later events already out (Redis failing between
//! two pipelines) can put a retried event after later ones.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rtet_protocol::frames::parse_publish;
use rtet_protocol::{close, ErrorCode, FrameError, PublishFrame, ServerFrame};
use tokio::time::sleep_until;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::Message;

use crate::connection::{Connection, Incoming};
use crate::engine::hub;
use crate::engine::BoxFuture;
use crate::keepalive::{Keepalive, KeepaliveAction};
use crate::metrics::Role;
use crate::publish::publish_owned;
use crate::state::{KeyId, Relay};
use crate::upgrade::{Refused, Socket, Upgrade};
use futures_util::FutureExt;

/// Frames answered per write at most, when a publisher pipelines without pause.
const FLUSH_EVERY: usize = 64;

/// Publishes of one connection handed to the engine and not answered yet, at
/// most. The connection keeps reading while answers are out (a Redis round
/// trip each, in pipelines), so a publish never waits for an earlier one's
/// round trip; at this many it stops reading until answers come, and TCP
/// holds the publisher back.
const UNANSWERED_MAX: usize = 4096;

/// At shutdown, frames already received that are still answered at most.
const SHUTDOWN_DRAIN_MAX: usize = 100_000;

/// Read buffer for a publisher connection (it grows for larger frames).
const READ_BUFFER: usize = 16 * 1024;

/// The `401` for a missing or unknown key.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "missing or unknown API key\n",
    )
        .into_response()
}

/// `GET /publish`: checks the key, refuses with 503 while the engine is
/// down, then upgrades.
pub async fn upgrade(
    State(relay): State<Arc<Relay>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: Result<Upgrade, Refused>,
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
    if let Err(r) = relay.engine_ready() {
        return r.into_response();
    }
    let guard = match relay.admit(relay.client_ip(peer, &headers), Role::publisher) {
        Ok(g) => g,
        Err(r) => return r.into_response(),
    };
    relay.metrics.accepted(Role::publisher);
    let token = relay.publishers.token();
    let max = relay.config.limits.max_frame_bytes;
    // Frames up to twice the limit are read and answered with a nack; larger ones close 1009.
    let read_max = max.saturating_mul(2).saturating_add(4096);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0) // answers collect in BatchedWrites, whose buffer is freed when written
        .max_message_size(Some(read_max))
        .max_frame_size(Some(read_max));
    // Events up to the frame limit are a publisher's everyday frames, read whole;
    // its read buffer keeps their size (publishers hold an API key and are few).
    ws.accept(config, None, move |socket| async move {
        tracing::debug!(%peer, key = key.index(), "publisher connected");
        serve(Arc::clone(&relay), socket, key).await;
        tracing::debug!(%peer, "publisher gone");
        drop(guard);
        drop(token);
    })
}

/// One publisher connection's state between frames.
struct Publisher {
    relay: Arc<Relay>,
    /// The API key the connection authenticated with.
    key: KeyId,
    /// The (id, channel) of a publish refused with `rate_limited`. Until that
    /// event is sent again, every later publish on this connection is refused
    /// too, so that pipelined events cannot overtake it and a retry keeps the
    /// publisher's order (reconnecting starts afresh).
    held_for: Option<(String, String)>,
    /// Answers not written yet, oldest first: answers are written in the
    /// order the frames came.
    unanswered: VecDeque<Answer>,
}

/// Whether the connection goes on after a burst of frames.
enum Flow {
    Open,
    /// End it, with this close frame (none when the peer is gone).
    End(Option<(u16, &'static str)>),
}

/// Serves one publisher connection until it closes or the relay shuts down.
pub async fn serve(relay: Arc<Relay>, socket: Socket, key: KeyId) {
    let mut conn = Connection::new(socket);
    let limits = &relay.config.limits;
    let mut keepalive = Keepalive::new(limits.ping_interval, limits.dead_peer_timeout);
    let timer = sleep_until(keepalive.deadline());
    tokio::pin!(timer);
    let stop = relay.stop_publishers.clone();
    let mut publisher = Publisher {
        relay: Arc::clone(&relay),
        key,
        held_for: None,
        unanswered: VecDeque::new(),
    };
    let end = loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                // Answer every publish that already arrived (bounded, in case the peer never
                // pauses), then say goodbye.
                let _ = publisher.read_burst(&mut conn, None, SHUTDOWN_DRAIN_MAX);
                let _ = publisher.finish(&mut conn).await;
                break Some((close::GOING_AWAY, "relay shutting down"));
            }
            () = publisher.oldest_answered() => {
                if publisher.write_answered(&mut conn).await.is_err() {
                    break None;
                }
            }
            incoming = conn.read(), if publisher.unanswered.len() < UNANSWERED_MAX => {
                keepalive.seen();
                if let Flow::End(end) = publisher.read_burst(&mut conn, Some(incoming), FLUSH_EVERY) {
                    let _ = publisher.finish(&mut conn).await;
                    break end;
                }
                if publisher.write_answered(&mut conn).await.is_err() {
                    break None;
                }
            }
            _ = &mut timer => {
                match keepalive.fire() {
                    KeepaliveAction::Dead => {
                        tracing::debug!("publisher answered no ping; closing");
                        break Some((close::GOING_AWAY, "no answer to pings"));
                    }
                    KeepaliveAction::Ping => {
                        conn.queue(Message::Ping(Default::default()));
                        if conn.write().await.is_err() {
                            break None;
                        }
                    }
                    KeepaliveAction::Wait => {}
                }
                timer.as_mut().reset(keepalive.deadline());
            }
        }
    };
    if let Some((code, reason)) = end {
        conn.close(code, reason).await;
    }
}

impl Publisher {
    /// Reads `first` (when given) and then every frame that has already
    /// arrived, up to `max` frames, handing each publish to the engine as it
    /// is read, in order, so an engine with a round trip (Redis) takes the
    /// whole burst as one pipeline. Answers wait in `unanswered`.
    fn read_burst(&mut self, conn: &mut Connection, first: Option<Incoming>, max: usize) -> Flow {
        // Local subscribers get the whole burst in one write each.
        hub::burst(|| self.hand_over_burst(conn, first, max))
    }

    fn hand_over_burst(
        &mut self,
        conn: &mut Connection,
        first: Option<Incoming>,
        max: usize,
    ) -> Flow {
        let mut next = first.or_else(|| conn.read_ready());
        let mut handled = 0;
        while let Some(incoming) = next {
            match incoming {
                Incoming::Text(text) => {
                    let answer = self.begin(text.as_str());
                    self.unanswered.push_back(answer);
                }
                Incoming::Binary => {
                    self.relay.metrics.nack(ErrorCode::Invalid);
                    self.unanswered.push_back(Answer::Ready(ServerFrame::Error {
                        code: ErrorCode::Invalid,
                        channel: None,
                        message: "binary frames are not accepted; send JSON text frames".into(),
                    }));
                }
                Incoming::Control => {}
                Incoming::TooLarge | Incoming::InvalidUtf8 => return Flow::End(incoming.ending()),
                Incoming::Gone => return Flow::End(None),
            }
            handled += 1;
            if handled >= max {
                break;
            }
            next = conn.read_ready();
        }
        Flow::Open
    }

    /// Resolves when the oldest unanswered frame has its answer (never while
    /// there is none).
    fn oldest_answered(&mut self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let Some(front) = self.unanswered.front_mut() else {
                return Poll::Pending;
            };
            let Answer::Pending(publishing) = front else {
                return Poll::Ready(());
            };
            let (frame, result) = std::task::ready!(publishing.poll_unpin(cx));
            *front = Answer::Done(frame, result);
            Poll::Ready(())
        })
    }

    /// Writes the answers that are in, oldest first, up to the first still
    /// out, without waiting for it.
    async fn write_answered(&mut self, conn: &mut Connection) -> Result<(), tungstenite::Error> {
        let mut queued = false;
        while let Some(answer) = self.unanswered.pop_front() {
            let frame = match answer {
                Answer::Ready(frame) => frame,
                Answer::Done(frame, result) => self.conclude(frame, result),
                Answer::Pending(mut publishing) => match (&mut publishing).now_or_never() {
                    Some((frame, result)) => self.conclude(frame, result),
                    None => {
                        self.unanswered.push_front(Answer::Pending(publishing));
                        break;
                    }
                },
            };
            conn.queue_frame(&frame);
            queued = true;
        }
        if queued {
            conn.write().await?;
        }
        Ok(())
    }

    /// Waits for every unanswered frame's answer and writes them all.
    async fn finish(&mut self, conn: &mut Connection) -> Result<(), tungstenite::Error> {
        while !self.unanswered.is_empty() {
            self.oldest_answered().await;
            self.write_answered(conn).await?;
        }
        Ok(())
    }

    /// Starts answering one frame: a refusal at once, or a publish handed to
    /// the engine (answered at once too when the engine needs no round trip).
    fn begin(&mut self, text: &str) -> Answer {
        let max = self.relay.config.limits.max_frame_bytes;
        let parsed = parse_publish(text);
        let frame = match parsed {
            _ if text.len() > max => {
                return Answer::Ready(self.refusal(too_large(&parsed, text.len(), max), text))
            }
            Ok(frame) => frame,
            Err(e) => return Answer::Ready(self.refusal(e, text)),
        };
        if let Some((id, channel)) = &self.held_for {
            if (id, channel) != (&frame.id, &frame.channel) {
                let e = FrameError {
                    code: ErrorCode::RateLimited,
                    message: format!(
                        "held back to keep order: event {id} on channel {channel} was refused \
                         rate_limited; send it again first, or reconnect"
                    ),
                    id: Some(frame.id),
                    channel: Some(frame.channel),
                };
                return Answer::Ready(self.refusal(e, text));
            }
        }
        let mut publishing = publish_owned(Arc::clone(&self.relay), self.key, frame);
        match (&mut publishing).now_or_never() {
            Some((frame, result)) => Answer::Ready(self.conclude(frame, result)),
            None => Answer::Pending(publishing),
        }
    }

    /// The `ack` or `nack` for a publish the engine answered; holds for it
    /// if it was refused `rate_limited`, so later events cannot overtake its retry.
    /// A hold for an earlier event of the same burst stays until that event
    /// itself is sent again: events behind it were already in the engine.
    fn conclude(
        &mut self,
        frame: PublishFrame,
        result: Result<crate::engine::Published, FrameError>,
    ) -> ServerFrame {
        let holds_another = self
            .held_for
            .as_ref()
            .is_some_and(|(id, channel)| (id, channel) != (&frame.id, &frame.channel));
        if !holds_another {
            self.held_for = match &result {
                Err(e) if e.code == ErrorCode::RateLimited => {
                    Some((frame.id.clone(), frame.channel.clone()))
                }
                _ => None,
            };
        }
        match result {
            Ok(p) => ServerFrame::Ack {
                id: frame.id,
                channel: frame.channel,
                seq: p.seq,
            },
            Err(e) => {
                self.relay.metrics.nack(e.code);
                ServerFrame::nack_from_error(&e)
            }
        }
    }

    /// The answer to a frame refused before it reached the engine.
    fn refusal(&self, e: FrameError, text: &str) -> ServerFrame {
        self.relay.metrics.nack(e.code);
        if is_publish(text) {
            ServerFrame::nack_from_error(&e)
        } else {
            // Not a publish at all (not JSON, not an object, another type):
            // the protocol answers such frames with `error`, as on /ws.
            ServerFrame::from_error(&e)
        }
    }
}

/// One frame's answer in a burst: known at once, or a publish still in the engine.
enum Answer {
    Ready(ServerFrame),
    Pending(BoxFuture<'static, (PublishFrame, Result<crate::engine::Published, FrameError>)>),
    /// The engine's answer, not yet turned into an `ack` or `nack`.
    Done(PublishFrame, Result<crate::engine::Published, FrameError>),
}

/// Whether a refused frame was meant as a publish (a JSON object with
/// `"type":"publish"`): only refusals look at this, to choose `nack` or `error`.
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

/// The refusal of a frame over the size limit, with the frame's id and
/// channel when it has them, naming the data when it is the data that is too large.
fn too_large(parsed: &Result<PublishFrame, FrameError>, len: usize, max: usize) -> FrameError {
    let (id, channel, data) = match parsed {
        Ok(f) => (
            Some(f.id.clone()),
            Some(f.channel.clone()),
            f.data.get().len(),
        ),
        Err(e) => (e.id.clone(), e.channel.clone(), 0),
    };
    let message = if data > max {
        format!("data is {data} bytes; the limit is {max}")
    } else {
        format!("frame is {len} bytes; the limit is {max}")
    };
    FrameError {
        code: ErrorCode::TooLarge,
        message,
        id,
        channel,
    }
}
