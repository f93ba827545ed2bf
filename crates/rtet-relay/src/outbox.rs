//! A subscriber's bounded outgoing queue.
//!
//! The engine pushes encoded events here without ever waiting; the
//! subscriber's connection task drains it into the socket. When a subscriber
//! falls `capacity` frames behind, the queue *overflows*: it refuses further
//! frames and wakes the connection task, which closes the connection with
//! [`rtet_protocol::close::SLOW_CONSUMER`] (4408). The client resumes with `since`, so nothing
//! is lost silently and one slow browser never delays the others.
//!
//! It is a mutex around a `VecDeque` rather than a channel because an idle
//! subscriber must cost almost nothing: an empty `VecDeque` does not allocate.
//!
//! On a plain TCP connection a frame need not wake the task at all: while the
//! task is *idle* (it holds nothing to write, and the queue is empty) a push
//! writes the frame's bytes straight to the socket ([`crate::direct`]). The
//! task gives up idleness under the queue's lock before it takes frames or
//! answers a client frame, and takes it back only once it has written
//! everything, so a direct frame never overtakes one the task holds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;
use tungstenite::Bytes;

use crate::direct::{wire_frame, Direct, Written};

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Written to the socket (all of it, or the rest is the task's to finish).
    Sent,
    /// Queued for sending.
    Queued,
    /// The queue was full: this push overflowed it. Count the slow consumer once.
    Overflowed,
    /// Dropped: the queue had already overflowed or its connection is gone.
    Dropped,
}

#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<Utf8Bytes>,
    overflowed: bool,
    closed: bool,
    /// The task holds nothing to write: a push may write to the socket itself.
    idle: bool,
    /// A direct write left part of a frame: the task must flush.
    must_flush: bool,
    /// The socket, on a plain TCP connection (dropped when the queue closes).
    direct: Option<Arc<Direct>>,
}

/// An event frame on its way to subscribers: its text, for the queues, and
/// its WebSocket frame, built the first time a socket takes it directly so
/// that one event is encoded once however many subscribers it reaches.
pub struct Outgoing<'a> {
    text: &'a Utf8Bytes,
    wire: std::cell::OnceCell<Bytes>,
}

impl<'a> Outgoing<'a> {
    /// The frame carrying `text`.
    pub fn new(text: &'a Utf8Bytes) -> Self {
        Outgoing {
            text,
            wire: std::cell::OnceCell::new(),
        }
    }

    fn wire(&self) -> &Bytes {
        self.wire.get_or_init(|| wire_frame(self.text))
    }
}

/// One subscriber connection's queue of outgoing event frames.
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    capacity: usize,
    /// Woken when frames were queued.
    ready: Notify,
    /// Woken once, when the queue overflows.
    overflow: Notify,
}

impl Outbox {
    /// An empty queue holding at most `capacity` frames, for a connection
    /// whose frames may be written to `direct` by whoever pushes them.
    pub fn new(capacity: usize, direct: Option<Arc<Direct>>) -> Self {
        Outbox {
            inner: Mutex::new(Inner {
                direct,
                ..Inner::default()
            }),
            capacity: capacity.max(1),
            ready: Notify::new(),
            overflow: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        rtet_protocol::sync::lock(&self.inner)
    }

    /// Sends a frame without waiting: straight to the socket while the task
    /// is idle and the socket takes it, else queued for the task.
    pub fn push(&self, frame: &Outgoing<'_>) -> Push {
        let mut inner = self.lock();
        if inner.overflowed || inner.closed {
            return Push::Dropped;
        }
        if inner.idle {
            if let Some(direct) = &inner.direct {
                match direct.try_write_frame(frame.wire()) {
                    Written::Whole => return Push::Sent,
                    Written::Part => {
                        inner.idle = false;
                        inner.must_flush = true;
                        drop(inner);
                        self.ready.notify_one();
                        return Push::Sent;
                    }
                    // Queued below, for the task: later frames wait behind it
                    // even once the socket has room again.
                    Written::Not => inner.idle = false,
                }
            }
        }
        let frame = frame.text.clone();
        if inner.frames.len() >= self.capacity {
            inner.overflowed = true;
            inner.frames.clear();
            inner.frames.shrink_to_fit();
            drop(inner);
            self.overflow.notify_one();
            return Push::Overflowed;
        }
        let was_empty = inner.frames.is_empty();
        inner.frames.push_back(frame);
        drop(inner);
        if was_empty {
            self.ready.notify_one();
        }
        Push::Queued
    }

    /// Frames it holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Overflows the queue as if a frame had not fit: its connection closes
    /// with 4408 and the client resumes with `since`. For a subscriber that
    /// cannot be sent what follows in order (held frames over capacity, history
    /// that changed under it).
    pub fn force_overflow(&self) {
        let mut inner = self.lock();
        if inner.overflowed || inner.closed {
            return;
        }
        inner.overflowed = true;
        inner.frames = VecDeque::new();
        drop(inner);
        self.overflow.notify_one();
    }

    /// Moves up to `max` queued frames into `out`. The task is no longer
    /// idle: it holds them until [`Outbox::idle`].
    pub fn drain_into(&self, out: &mut Vec<Utf8Bytes>, max: usize) {
        let mut inner = self.lock();
        inner.idle = false;
        let n = inner.frames.len().min(max);
        out.extend(inner.frames.drain(..n));
        if inner.frames.is_empty() && inner.frames.capacity() > 64 {
            // Give back the memory of a burst; idle subscribers should stay small.
            inner.frames.shrink_to_fit();
        }
    }

    /// The task is about to write, or to do what must reach the socket before
    /// later frames (answer a subscribe): frames wait in the queue until [`Outbox::idle`].
    pub fn occupy(&self) {
        self.lock().idle = false;
    }

    /// The task has written everything it held: frames may go straight to
    /// the socket again, unless some are queued (the task takes those first).
    pub fn idle(&self) {
        let mut inner = self.lock();
        if inner.frames.is_empty() && !inner.must_flush {
            inner.idle = true;
        }
    }

    /// Whether a direct write left part of a frame for the task to flush
    /// (asked once: the answer is cleared).
    pub fn take_flush(&self) -> bool {
        std::mem::take(&mut self.lock().must_flush)
    }

    /// Whether frames are waiting.
    pub fn has_frames(&self) -> bool {
        !self.lock().frames.is_empty()
    }

    /// Whether the queue overflowed (the subscriber is too slow).
    pub fn is_overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Marks the queue closed: its connection is ending, so later pushes are dropped.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.idle = false;
        inner.frames = VecDeque::new();
        // The socket closes with its connection, not when the hub lets go of this queue.
        inner.direct = None;
    }

    /// Makes the next [`Outbox::ready`] resolve at once (frames are still waiting).
    pub fn wake(&self) {
        self.ready.notify_one();
    }

    /// Resolves when frames may be waiting (a wake-up is kept if nobody waited yet).
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Resolves when the queue has overflowed.
    pub async fn overflowed(&self) {
        self.overflow.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(q: &Outbox, text: &str) -> Push {
        q.push(&Outgoing::new(&text.into()))
    }

    #[test]
    fn overflows_once_then_drops() {
        let q = Outbox::new(2, None);
        assert_eq!(push(&q, "a"), Push::Queued);
        assert_eq!(push(&q, "b"), Push::Queued);
        assert_eq!(push(&q, "c"), Push::Overflowed);
        assert_eq!(push(&q, "d"), Push::Dropped);
        assert!(q.is_overflowed());
        assert!(!q.has_frames());
    }

    #[tokio::test]
    async fn frames_go_to_the_socket_only_while_the_task_is_idle_with_nothing_queued() {
        use tokio::io::AsyncReadExt;
        let (direct, mut peer) = crate::direct::tests::socket_pair().await;
        let q = Outbox::new(10, Some(direct));
        assert_eq!(push(&q, "a"), Push::Queued, "a task starts busy");
        let mut out = Vec::new();
        q.drain_into(&mut out, 10);
        assert_eq!(push(&q, "b"), Push::Queued, "it holds a frame it took");
        q.idle();
        assert_eq!(
            push(&q, "c"),
            Push::Queued,
            "b is still queued: it goes first"
        );
        q.drain_into(&mut out, 10);
        q.idle();
        assert_eq!(push(&q, "d"), Push::Sent);
        q.occupy();
        assert_eq!(
            push(&q, "e"),
            Push::Queued,
            "the task is answering a client"
        );
        q.drain_into(&mut out, 10);
        q.idle();
        assert_eq!(push(&q, "f"), Push::Sent);
        q.close();
        assert_eq!(push(&q, "g"), Push::Dropped);
        let queued: Vec<&str> = out.iter().map(|f| f.as_str()).collect();
        assert_eq!(queued, ["a", "b", "c", "e"]);
        let mut received = Vec::new();
        // The queue let go of the socket at close: the peer sees its end.
        peer.read_to_end(&mut received).await.unwrap();
        assert_eq!(crate::direct::tests::texts(&received), ["d", "f"]);
    }

    #[tokio::test]
    async fn once_a_frame_waits_in_the_queue_later_ones_wait_behind_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (direct, mut peer) = crate::direct::tests::socket_pair().await;
        let mut io = crate::direct::DirectIo(Arc::clone(&direct));
        let q = Outbox::new(10, Some(direct));
        q.idle();
        // The connection's own writer fills the socket and stops inside a frame.
        let own = crate::direct::wire_frame(&"z".repeat(50_000_000).into());
        let n = io.write(&own).await.unwrap();
        assert!(n < own.len(), "the socket took all of 50 MB");
        assert_eq!(push(&q, "a"), Push::Queued, "not inside the other frame");
        // The peer reads everything while the writer finishes its frame.
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            peer.read_to_end(&mut received).await.unwrap();
            received
        });
        io.write_all(&own[n..]).await.unwrap();
        assert_eq!(
            push(&q, "b"),
            Push::Queued,
            "a is queued: b may not overtake it"
        );
        q.close();
        io.shutdown().await.unwrap();
        drop(io);
        let received = reader.await.unwrap();
        assert_eq!(
            crate::direct::tests::texts(&received).len(),
            1,
            "only the writer's own frame"
        );
    }

    #[test]
    fn drains_in_order() {
        let q = Outbox::new(10, None);
        for s in ["1", "2", "3"] {
            push(&q, s);
        }
        let mut out = Vec::new();
        q.drain_into(&mut out, 2);
        q.drain_into(&mut out, 10);
        let got: Vec<&str> = out.iter().map(|b| b.as_str()).collect();
        assert_eq!(got, ["1", "2", "3"]);
        q.close();
        assert_eq!(push(&q, "4"), Push::Dropped);
    }
}
