//! The socket side of one WebSocket connection.
//!
//! Both endpoints' loops go through a [`Connection`] (as mini-redis's
//! `Handler` goes through its `Connection`), so each loop reads as its
//! protocol: it gets [`Incoming`] values instead of tungstenite's messages and
//! errors, queues answers, and writes them in one batch. What a write did not
//! get to stays queued, so a write cut short (a slow consumer, a shutdown)
//! loses nothing it could still send.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use rtet_protocol::{close, ServerFrame};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::{Message, Utf8Bytes};

use crate::upgrade::Socket;

/// Longest we wait to hand a close frame to a peer that is not reading.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the peer sent, as the protocol sees it.
#[derive(Debug)]
pub enum Incoming {
    /// A text frame.
    Text(Utf8Bytes),
    /// A binary frame (the protocol answers them with `invalid`).
    Binary,
    /// A ping or a pong: the peer is alive; tungstenite answers pings itself.
    Control,
    /// A frame larger than the configured maximum: close with 1009.
    TooLarge,
    /// A text frame that is not valid UTF-8: close with 1007.
    InvalidUtf8,
    /// The peer closed, or the connection failed: nothing more to read or say.
    Gone,
}

impl Incoming {
    /// The close frame a read that ends the connection calls for (`None`: just
    /// end it, the peer is gone).
    pub fn ending(&self) -> Option<(u16, &'static str)> {
        match self {
            Incoming::TooLarge => Some((close::TOO_LARGE, "frame too large")),
            Incoming::InvalidUtf8 => Some((close::INVALID_DATA, "text frame is not valid UTF-8")),
            _ => None,
        }
    }
}

/// A WebSocket plus the frames queued for it and not yet handed to the socket.
pub struct Connection {
    socket: Socket,
    unsent: VecDeque<Message>,
    /// The socket holds bytes to write even with nothing queued here (the
    /// rest of a frame the fan-out wrote in part, [`crate::direct`]).
    must_flush: bool,
}

impl Connection {
    /// Takes ownership of an upgraded socket.
    pub fn new(socket: Socket) -> Self {
        Connection {
            socket,
            unsent: VecDeque::new(),
            must_flush: false,
        }
    }

    /// Waits for the peer's next message.
    pub async fn read(&mut self) -> Incoming {
        classify(self.socket.next().await)
    }

    /// Polls for the peer's next message (what [`Connection::read`] awaits).
    pub fn poll_read(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Incoming> {
        self.socket.poll_next_unpin(cx).map(classify)
    }

    /// The next message if one has already arrived, without waiting.
    pub fn read_ready(&mut self) -> Option<Incoming> {
        self.socket.next().now_or_never().map(classify)
    }

    /// Queues a message for the next [`Connection::write`].
    pub fn queue(&mut self, message: Message) {
        self.unsent.push_back(message);
    }

    /// Queues a protocol frame.
    pub fn queue_frame(&mut self, frame: &ServerFrame) {
        self.queue(Message::Text(frame.encode().into()));
    }

    /// Makes the next [`Connection::write`] flush the socket even with
    /// nothing queued.
    pub fn flush_later(&mut self) {
        self.must_flush = true;
    }

    /// Whether frames (or a flush) are waiting for a write.
    pub fn has_queued(&self) -> bool {
        !self.unsent.is_empty() || self.must_flush
    }

    /// Hands every queued frame to the socket and flushes. A frame leaves the
    /// queue only once the socket took it, so when this future is dropped
    /// half-way the frames it had not handed over are still queued.
    ///
    /// Text frames are framed by the relay ([`crate::frame_writer`]), so
    /// tungstenite's buffer never grows to hold one.
    pub async fn write(&mut self) -> Result<(), tungstenite::Error> {
        while let Some(frame) = self.unsent.front() {
            match frame {
                Message::Text(text) => {
                    let payload = Bytes::from(text.clone());
                    if self.socket.get_ref().tungstenite_holds() {
                        // The socket was backed up: tungstenite's bytes go first.
                        self.socket.flush().await?;
                    }
                    std::future::poll_fn(|cx| self.socket.get_mut().poll_frame_done(cx)).await?;
                    self.socket.get_mut().start_text_frame(payload);
                }
                _ => self.socket.feed(frame.clone()).await?,
            }
            self.unsent.pop_front();
        }
        // An idle connection keeps no queue: the next batch allocates its own.
        self.unsent = VecDeque::new();
        self.socket.flush().await?;
        self.must_flush = false;
        Ok(())
    }

    /// Sends a close frame with `code` and `reason` (waiting at most
    /// [`CLOSE_TIMEOUT`] for it) and lets the connection end. Frames still
    /// queued are dropped: a caller that wants them sent writes first.
    pub async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = Message::Close(Some(CloseFrame {
            code: code.into(),
            reason: Utf8Bytes::from_static(reason),
        }));
        self.unsent.clear();
        self.queue(frame);
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.write()).await;
    }
}

/// Queues already encoded event frames.
impl Extend<Utf8Bytes> for Connection {
    fn extend<I: IntoIterator<Item = Utf8Bytes>>(&mut self, events: I) {
        self.unsent.extend(events.into_iter().map(Message::Text));
    }
}

/// Maps what the socket gave to what the protocol cares about.
fn classify(message: Option<Result<Message, tungstenite::Error>>) -> Incoming {
    match message {
        Some(Ok(Message::Text(t))) => Incoming::Text(t),
        Some(Ok(Message::Binary(_))) => Incoming::Binary,
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Control,
        // tungstenite never reads a raw frame; a peer's fragments arrive as one message.
        Some(Ok(Message::Close(_) | Message::Frame(_))) | None => Incoming::Gone,
        Some(Err(tungstenite::Error::Capacity(_))) => Incoming::TooLarge,
        Some(Err(tungstenite::Error::Utf8(_))) => Incoming::InvalidUtf8,
        Some(Err(_)) => Incoming::Gone,
    }
}
