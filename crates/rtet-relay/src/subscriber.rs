//! `GET /ws`: the subscribers' WebSocket (browsers).
//!
//! One task per connection owns the socket and waits on, in this order of
//! priority: shutdown, its queue overflowing (slow consumer), its timer (first
//! frame, then token expiry, and the ping interval), queued events, and the
//! client's frames; a backlog of more than one batch of events is written a
//! batch at a time, with the client's frames read between batches. While it
//! has written everything and waits, the hub's fan-out writes events straight
//! to its socket without waking it ([`crate::outbox`], [`crate::direct`]):
//! the task *unsettles* the outbox before it answers a client frame or
//! writes, and *settles* it once everything it held is written. Per
//! connection it keeps only what it must: the queue, the token's claims, the
//! channel names and a rate bucket.
//!
//! Each subscription is also a seat in the channel's presence
//! ([`crate::presence`]); the session leaves every channel when it ends,
//! whatever ends it (dropping the session leaves what is left).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::future::Either;
use futures_util::FutureExt;
use rtet_protocol::frames::parse_client_frame;
use rtet_protocol::token::{verify, Claims};
use rtet_protocol::{close, ClientFrame, ErrorCode, ServerFrame, Since};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::Message;

use crate::config::normalize_origin;
use crate::connection::{Connection, Incoming};
use crate::direct::{Direct, SharedTcp};
use crate::engine::SubscriberId;
use crate::keepalive::{Keepalive, KeepaliveAction};
use crate::metrics::Role;
use crate::outbox::Outbox;
use crate::presence::seat_and_view;
use crate::state::{replay_bucket, ConnGuard, Relay, TokenBucket};
use crate::upgrade::{Refused, Upgrade};
use rtet_protocol::clock::unix_ms as now_millis;

/// Read buffer of a subscriber connection, and the most read from the socket
/// at once. tungstenite keeps it allocated for the connection's life, so every
/// idle subscriber pays for it: sized for what browsers send (`subscribe`,
/// pongs). A larger frame, such as an `auth` with a long token, reaches
/// tungstenite in pieces of this size ([`crate::frame_splitter`]), so the
/// buffer does not grow to that frame's size.
pub const READ_BUFFER: usize = 256;
/// Queued events written per batch before the task looks at its other duties.
const BATCH: usize = 256;
/// At shutdown, how long queued events may take to reach a subscriber before the 1001 close.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// Whether a request's `Origin` may connect: no header, an empty allowlist,
/// or a listed origin.
pub fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match headers.get(header::ORIGIN) {
        None => true,
        Some(v) => v
            .to_str()
            .map(|o| allowed.contains(&normalize_origin(o)))
            .unwrap_or(false),
    }
}

/// `GET /ws`: refuses with 503 while the engine is down, counts the
/// connection (429 over the per-IP limit), upgrades, and closes with 1008 at
/// once when the origin is not allowed.
pub async fn upgrade(
    State(relay): State<Arc<Relay>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    direct: Option<Extension<SharedTcp>>,
    headers: HeaderMap,
    ws: Result<Upgrade, Refused>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(r) = relay.engine_ready() {
        return r.into_response();
    }
    let origin_ok = origin_allowed(&relay.config.allowed_origins, &headers);
    let client = relay.client_ip(peer, &headers);
    let guard = match relay.admit(client, Role::subscriber) {
        Ok(g) => g,
        Err(r) => return r.into_response(),
    };
    if origin_ok {
        relay.metrics.accepted(Role::subscriber);
    }
    let tracked = relay.subscribers.token();
    let max = relay.config.limits.max_frame_bytes;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0) // frames collect in BatchedWrites, whose buffer is freed when written
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    ws.accept(config, Some(READ_BUFFER), move |socket| {
        // Built here and moved into the session's future once: every copy a
        // future keeps of its inputs is memory each idle connection pays for.
        let conn = Connection::new(socket);
        let session = Session::new(
            relay,
            client,
            direct.map(|Extension(shared)| shared.0),
            Held {
                _guard: guard,
                _tracked: tracked,
            },
        );
        if origin_ok {
            Either::Left(session.run(conn))
        } else {
            Either::Right(session.refuse_origin(conn, peer))
        }
    })
}

/// What a connection holds until it ends: its place in the connection limits
/// and in the shutdown's wait for subscribers.
struct Held {
    _guard: ConnGuard,
    _tracked: TaskTrackerToken,
}

/// Why a write was cut short.
enum Cut {
    /// The queue overflowed while we were blocked on the socket.
    Overflow,
    /// The relay is shutting down.
    Shutdown,
    /// The socket failed; the peer is gone.
    Failed,
}

/// Writes what `conn` has queued, giving up as soon as the outbox overflows
/// or the relay stops, so a stuck socket never holds the task. Frames the
/// write did not get to stay queued for the goodbye at shutdown. A write that
/// takes longer than the dead-peer timeout means the peer is gone.
async fn write(
    conn: &mut Connection,
    outbox: &Outbox,
    stop: &CancellationToken,
    dead_after: Duration,
) -> Result<(), Cut> {
    tokio::select! {
        biased;
        r = conn.write() => r.map_err(|_| Cut::Failed),
        _ = outbox.overflowed() => Err(Cut::Overflow),
        _ = stop.cancelled() => Err(Cut::Shutdown),
        _ = tokio::time::sleep(dead_after) => Err(Cut::Failed),
    }
}

/// The socket's read side, polled only when it may have something: at first,
/// after it gave a frame, and after the socket woke the task. Its waker is
/// the subscriber's outbox ([`std::task::Wake`]), which notes the wake-up.
/// Without the gate every wake-up for an event polled the read side again
/// (through tungstenite, the frame splitter and hyper's upgraded stream) to
/// learn that nothing had arrived: about 680 instructions a delivery, a
/// sixth of the task's (BENCHMARKS.md, "The subscriber task's own
/// instructions per delivery").
struct GatedRead {
    waker: std::task::Waker,
    /// The last read found nothing, and the socket has not woken the task since.
    idle: bool,
}

impl GatedRead {
    fn new(outbox: &Arc<Outbox>) -> Self {
        GatedRead {
            waker: std::task::Waker::from(Arc::clone(outbox)),
            idle: false,
        }
    }

    fn poll(
        &mut self,
        conn: &mut Connection,
        outbox: &Outbox,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Incoming> {
        if !outbox.socket_woken(cx) && self.idle {
            return std::task::Poll::Pending;
        }
        let incoming = conn.poll_read(&mut std::task::Context::from_waker(&self.waker));
        self.idle = incoming.is_pending();
        incoming
    }
}

fn text(frame: &ServerFrame) -> Message {
    Message::Text(frame.encode().into())
}

/// What the timer is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    FirstFrame,
    Expiry,
    Off,
}

/// The answer to one client frame.
#[derive(Default)]
struct Outcome {
    /// Send the queued events before `replies` (so `unsubscribed` comes after them).
    flush_queue_first: bool,
    replies: Vec<Message>,
    close: Option<(u16, &'static str)>,
}

impl Outcome {
    fn reply(frame: ServerFrame) -> Self {
        Outcome {
            replies: vec![text(&frame)],
            ..Default::default()
        }
    }
}

struct Session {
    relay: Arc<Relay>,
    id: SubscriberId,
    outbox: Arc<Outbox>,
    claims: Option<Box<Claims>>,
    subs: Vec<String>,
    bucket: TokenBucket,
    /// The client's address, whose replay budget this connection shares.
    client: IpAddr,
    /// History bytes this connection may still be replayed.
    replay_budget: TokenBucket,
    warned: bool,
    /// A new token expiry to arm the timer with, set by `auth`.
    new_deadline: Option<Instant>,
    /// Released when the session ends.
    _held: Held,
}

impl Drop for Session {
    /// Leaves the presence of every channel still held: a session that
    /// ended by any path, a panic included, leaves no member behind.
    fn drop(&mut self) {
        for channel in &self.subs {
            self.relay.presence.leave(channel, self.id);
        }
    }
}

impl Session {
    fn new(relay: Arc<Relay>, client: IpAddr, direct: Option<Arc<Direct>>, held: Held) -> Self {
        let l = &relay.config.limits;
        Session {
            client,
            replay_budget: replay_bucket(relay.config.replay_bytes_per_connection),
            id: relay.next_id(),
            outbox: Arc::new(Outbox::with_socket(l.subscriber_queue_frames, direct)),
            claims: None,
            subs: Vec::new(),
            bucket: TokenBucket::new(l.client_frames_per_sec, l.client_frames_burst),
            warned: false,
            new_deadline: None,
            _held: held,
            relay,
        }
    }

    fn error(&self, code: ErrorCode, channel: Option<&str>, message: String) -> Outcome {
        self.relay.metrics.subscriber_error(code);
        Outcome::reply(ServerFrame::Error {
            code,
            channel: channel.map(str::to_owned),
            message,
        })
    }

    /// Closes at once with 1008: the request's origin is not allowed.
    async fn refuse_origin(self, mut conn: Connection, peer: SocketAddr) {
        self.relay.metrics.refused("origin");
        tracing::info!(%peer, "subscriber refused: origin not allowed");
        Box::pin(conn.close(close::POLICY, "origin not allowed")).await;
    }

    /// Serves the connection until it ends. A plain `fn` returning an `async`
    /// block that owns the session and the socket, so the idle connection's
    /// future holds one copy of each (an `async fn` keeps a second copy of its
    /// arguments beside the locals they move into).
    #[allow(clippy::manual_async_fn)] // the point: see above
    fn run(mut self, mut conn: Connection) -> impl std::future::Future<Output = ()> + Send {
        async move { self.serve(&mut conn).await }
    }

    async fn serve(&mut self, conn: &mut Connection) {
        let relay = Arc::clone(&self.relay);
        let limits = &relay.config.limits;
        let stop = relay.stop_subscribers.clone();
        // One timer for the session's deadline (first frame, then token
        // expiry) and the keepalive's, set to whichever comes first.
        let mut deadline = Instant::now() + limits.first_frame_timeout;
        let mut timer_kind = Timer::FirstFrame;
        let mut keepalive = Keepalive::new(limits.ping_interval, limits.dead_peer_timeout);
        let next = |kind: Timer, deadline: Instant, keepalive: &Keepalive| match kind {
            Timer::Off => keepalive.deadline(),
            _ => keepalive.deadline().min(deadline),
        };
        let timer = sleep_until(next(timer_kind, deadline, &keepalive));
        tokio::pin!(timer);
        // More queued events than one batch: the next batch is written after
        // the client's frames have had their turn.
        let mut more_queued = false;
        // Waited on by every turn of the loop: made once, so a wake-up for an
        // event does not register and unregister them again.
        let outbox = Arc::clone(&self.outbox);
        let stopping = stop.cancelled();
        let overflowed = outbox.overflowed();
        tokio::pin!(stopping, overflowed);
        let mut socket = GatedRead::new(&outbox);

        let end: Option<(u16, &'static str)> = loop {
            // Each arm queues what to send and may ask to close after sending it.
            let close_after: Option<(u16, &'static str)> = tokio::select! {
                biased;
                _ = &mut stopping => break Some(Box::pin(self.going_away(conn)).await),
                _ = &mut overflowed => break Some(self.slow()),
                _ = &mut timer => {
                    if timer_kind != Timer::Off && Instant::now() >= deadline {
                        break Some(match timer_kind {
                            Timer::FirstFrame => (close::POLICY, "no frame within the first-frame timeout"),
                            _ => (close::TOKEN_INVALID, "token expired"),
                        });
                    }
                    match keepalive.fire() {
                        KeepaliveAction::Dead => {
                            tracing::debug!(id = self.id, "subscriber answered no ping; closing");
                            break Some((close::GOING_AWAY, "no answer to pings"));
                        }
                        KeepaliveAction::Ping => conn.queue(Message::Ping(Default::default())),
                        KeepaliveAction::Wait => {}
                    }
                    timer.as_mut().reset(next(timer_kind, deadline, &keepalive));
                    None
                }
                // Queued events come before the socket's read side: a wake-up
                // for an event writes it without reading first (the read is
                // polled once after, when the task waits again).
                _ = self.outbox.ready(), if !more_queued => {
                    more_queued = self.drain(conn, BATCH);
                    None
                }
                incoming = std::future::poll_fn(|cx| socket.poll(conn, &outbox, cx)) => {
                    let text = match &incoming {
                        Incoming::Gone => break None,
                        Incoming::TooLarge | Incoming::InvalidUtf8 => break incoming.ending(),
                        Incoming::Control => {
                            keepalive.seen();
                            continue;
                        }
                        Incoming::Text(t) => Some(t.as_str()),
                        Incoming::Binary => None,
                    };
                    keepalive.seen();
                    // What the answer sends (a `subscribed`, a replay) goes before
                    // any live event: from here events queue behind it.
                    self.outbox.unsettle();
                    if timer_kind == Timer::FirstFrame {
                        timer_kind = Timer::Off;
                    }
                    // Boxed, as every rare or long path below: the task's own future
                    // holds only what an idle connection waits on.
                    let outcome = Box::pin(self.on_frame(text)).await;
                    if let Some(expiry) = self.new_deadline.take() {
                        deadline = expiry;
                        timer_kind = Timer::Expiry;
                    }
                    timer.as_mut().reset(next(timer_kind, deadline, &keepalive));
                    if outcome.flush_queue_first {
                        more_queued = self.drain(conn, usize::MAX);
                    }
                    for reply in outcome.replies {
                        conn.queue(reply);
                    }
                    outcome.close
                }
                _ = std::future::ready(()), if more_queued => {
                    more_queued = self.drain(conn, BATCH);
                    None
                }
            };
            if conn.has_queued() {
                self.outbox.unsettle();
                // Most writes complete at once; only one that would wait needs
                // the watch for an overflow, the shutdown and a dead peer.
                let written = match conn.write().now_or_never() {
                    Some(done) => done.map_err(|_| Cut::Failed),
                    None => {
                        Box::pin(write(conn, &self.outbox, &stop, limits.dead_peer_timeout)).await
                    }
                };
                if let Err(cut) = written {
                    break match cut {
                        Cut::Overflow => Some(self.slow()),
                        Cut::Shutdown => Some(Box::pin(self.going_away(conn)).await),
                        Cut::Failed => None,
                    };
                }
            }
            if close_after.is_some() {
                break close_after;
            }
            if !more_queued {
                // Everything written: events may go straight to the socket again.
                self.outbox.settle();
            }
        };

        // Stop receiving before saying goodbye, so nothing more is queued.
        self.outbox.close();
        for channel in std::mem::take(&mut self.subs) {
            relay.presence.leave(&channel, self.id);
            relay.engine.unsubscribe(channel, self.id).await;
        }
        if let Some((code, reason)) = end {
            Box::pin(conn.close(code, reason)).await;
        }
    }

    /// Moves up to `max` queued events from the outbox to the connection,
    /// and says whether more are waiting.
    fn drain(&mut self, conn: &mut Connection, max: usize) -> bool {
        if self.outbox.take_flush() {
            // A direct write left the rest of a frame in the socket's keeping.
            conn.flush_later();
        }
        self.outbox.drain_into(conn, max)
    }

    fn slow(&self) -> (u16, &'static str) {
        tracing::info!(
            id = self.id,
            "slow subscriber: outgoing queue overflowed; closing with 4408"
        );
        (
            close::SLOW_CONSUMER,
            "too slow: outgoing queue overflowed; resume with since",
        )
    }

    /// At shutdown: finish the write in progress (the frames it had not
    /// handed to the socket yet come first) and send what is queued (for at
    /// most [`SHUTDOWN_FLUSH`]), then the caller closes with 1001.
    async fn going_away(&mut self, conn: &mut Connection) -> (u16, &'static str) {
        self.outbox.unsettle();
        self.drain(conn, usize::MAX);
        let _ = tokio::time::timeout(SHUTDOWN_FLUSH, conn.write()).await;
        (close::GOING_AWAY, "relay shutting down")
    }

    /// Handles one data frame (`None`: a binary frame).
    async fn on_frame(&mut self, text: Option<&str>) -> Outcome {
        if self.warned && self.bucket.is_full() {
            self.warned = false;
        }
        if !self.bucket.try_take() {
            if self.warned {
                self.relay.metrics.subscriber_error(ErrorCode::RateLimited);
                return Outcome {
                    close: Some((close::RATE_LIMITED, "too many frames; rate limit exceeded")),
                    ..Default::default()
                };
            }
            self.warned = true;
            let l = &self.relay.config.limits;
            let message = format!(
                "more than {} frames per second (burst {}); slow down or be closed with 4429",
                l.client_frames_per_sec, l.client_frames_burst
            );
            return self.error(ErrorCode::RateLimited, None, message);
        }
        let Some(text) = text else {
            return self.error(
                ErrorCode::Invalid,
                None,
                "binary frames are not accepted; send JSON text frames".into(),
            );
        };
        match parse_client_frame(text) {
            Err(e) => {
                self.relay.metrics.subscriber_error(e.code);
                Outcome::reply(ServerFrame::from_error(&e))
            }
            Ok(ClientFrame::Auth { token }) => self.auth(&token).await,
            Ok(ClientFrame::Subscribe { channel, since }) => self.subscribe(channel, since).await,
            Ok(ClientFrame::Unsubscribe { channel }) => {
                if let Some(i) = self.subs.iter().position(|c| *c == channel) {
                    self.subs.swap_remove(i);
                    self.relay.presence.leave(&channel, self.id);
                    self.relay
                        .engine
                        .unsubscribe(channel.clone(), self.id)
                        .await;
                }
                Outcome {
                    flush_queue_first: true,
                    ..Outcome::reply(ServerFrame::Unsubscribed { channel })
                }
            }
        }
    }

    fn may_subscribe(&self, channel: &str) -> bool {
        self.relay
            .config
            .anonymous_channels
            .iter()
            .any(|c| c == channel)
            || self.claims.as_ref().is_some_and(|c| c.grants(channel))
    }

    async fn auth(&mut self, token: &str) -> Outcome {
        let relay = Arc::clone(&self.relay);
        let l = &relay.config.limits;
        let claims = match verify(
            token,
            relay.keys.secrets(),
            l.token_leeway,
            l.max_token_bytes,
        ) {
            Ok(c) => c,
            Err(e) => {
                relay.metrics.auth_failure(Role::subscriber);
                let mut out = self.error(ErrorCode::Unauthorized, None, e.to_string());
                out.close = Some((close::TOKEN_INVALID, "token invalid"));
                return out;
            }
        };
        if let Some(old) = &self.claims {
            if old.sub != claims.sub {
                relay.metrics.auth_failure(Role::subscriber);
                let mut out = self.error(
                    ErrorCode::Forbidden,
                    None,
                    "a connection cannot change its subject; reconnect with the new token".into(),
                );
                out.close = Some((close::FORBIDDEN, "token subject changed"));
                return out;
            }
        }
        let leeway = l.token_leeway.min(rtet_protocol::token::MAX_LEEWAY);
        let expires_ms = claims
            .exp
            .saturating_add(leeway.as_secs())
            .saturating_mul(1000);
        let remaining = Duration::from_millis(expires_ms.saturating_sub(now_millis()));
        let max = relay.config.max_token_lifetime;
        if remaining > max + leeway {
            relay.metrics.auth_failure(Role::subscriber);
            let message = format!(
                "token is valid for longer than the relay allows ({}); issue shorter-lived tokens",
                humantime::format_duration(max)
            );
            let mut out = self.error(ErrorCode::Unauthorized, None, message);
            out.close = Some((close::TOKEN_INVALID, "token invalid"));
            return out;
        }
        self.new_deadline = Some(Instant::now() + remaining);
        let mut replies = vec![text(&ServerFrame::AuthOk {
            sub: claims.sub.clone(),
            exp: claims.exp,
        })];
        let old = self.claims.replace(Box::new(claims));
        // A fresh token may grant less: drop what it no longer grants, and
        // take the channel's presence seat again where it changed (a member
        // no longer, or one now); the new seat comes with a new `presence` frame.
        let mut kept = Vec::with_capacity(self.subs.len());
        for channel in std::mem::take(&mut self.subs) {
            if self.may_subscribe(&channel) {
                let before = seat_and_view(old.as_deref(), &channel);
                let (seat, view) = seat_and_view(self.claims.as_deref(), &channel);
                if before != (seat.clone(), view) {
                    relay.presence.leave(&channel, self.id);
                    relay
                        .presence
                        .join(&channel, self.id, seat, view, &self.outbox);
                }
                kept.push(channel);
            } else {
                relay.presence.leave(&channel, self.id);
                relay.engine.unsubscribe(channel.clone(), self.id).await;
                replies.push(text(&ServerFrame::Unsubscribed { channel }));
            }
        }
        self.subs = kept;
        Outcome {
            flush_queue_first: replies.len() > 1,
            replies,
            close: None,
        }
    }

    /// Reserves replay bytes: at most `--max-replay-bytes`, and no more than
    /// this connection's and its address's budgets hold.
    fn reserve_replay(&mut self) -> usize {
        let from_connection = self
            .replay_budget
            .take_up_to(self.relay.config.max_replay_bytes);
        let from_address = self.relay.reserve_replay(self.client, from_connection);
        self.replay_budget.give_back(from_connection - from_address);
        from_address
    }

    /// Returns reserved replay bytes that were not sent.
    fn give_back_replay(&mut self, unused: usize) {
        self.replay_budget.give_back(unused);
        self.relay.give_back_replay(self.client, unused);
    }

    async fn subscribe(&mut self, channel: String, since: Option<Since>) -> Outcome {
        if self.subs.contains(&channel) {
            let message = format!("already subscribed to {channel}");
            return self.error(ErrorCode::Invalid, Some(&channel), message);
        }
        if !self.may_subscribe(&channel) {
            return if self.claims.is_none() {
                let message = format!("channel {channel} needs a token; send auth first");
                self.error(ErrorCode::Unauthorized, Some(&channel), message)
            } else {
                let message = format!("token does not grant {channel}");
                self.error(ErrorCode::Forbidden, Some(&channel), message)
            };
        }
        let max = self.relay.config.limits.max_subscriptions;
        if self.subs.len() >= max {
            let message = format!("at most {max} subscriptions per connection");
            return self.error(ErrorCode::Forbidden, Some(&channel), message);
        }
        // Replayed bytes are charged to the subscriber: reserve what the one-replay
        // bound, this connection's budget and its address's budget allow, give back the rest.
        let allowance = if since.is_some() {
            self.reserve_replay()
        } else {
            0
        };
        let result = self
            .relay
            .engine
            .subscribe(
                channel.clone(),
                since,
                self.id,
                Arc::clone(&self.outbox),
                allowance,
            )
            .await;
        let replayed = result
            .as_ref()
            .map_or(0, |s| s.replay.iter().map(|f| f.len()).sum::<usize>());
        self.give_back_replay(allowance.saturating_sub(replayed));
        match result {
            Err(e) => {
                if let Some(budget) = e.budget() {
                    self.relay.metrics.budget_refused(budget);
                }
                self.error(e.code(), Some(&channel), e.to_string())
            }
            Ok(s) => {
                let m = &self.relay.metrics;
                m.deliveries.inc_by(s.replay.len() as u64);
                m.replay_bytes.inc_by(replayed as u64);
                if s.replay_cut {
                    m.replays_cut.inc();
                    tracing::debug!(id = self.id, %channel, "replay over the replay bound or budget: not recovered");
                }
                let mut replies = Vec::with_capacity(1 + s.replay.len());
                replies.push(text(&ServerFrame::Subscribed {
                    channel: channel.clone(),
                    epoch: s.epoch,
                    seq: s.seq,
                    recovered: s.recovered,
                }));
                replies.extend(s.replay.into_iter().map(Message::Text));
                // The `presence` frame follows from the outbox, after these replies.
                let (seat, view) = seat_and_view(self.claims.as_deref(), &channel);
                self.relay
                    .presence
                    .join(&channel, self.id, seat, view, &self.outbox);
                // Most connections hold one or two channels: grow one at a time.
                self.subs.reserve_exact(1);
                self.subs.push(channel);
                Outcome {
                    replies,
                    ..Default::default()
                }
            }
        }
    }
}
