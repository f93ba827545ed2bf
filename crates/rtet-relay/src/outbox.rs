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

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;
use tungstenite::Utf8Bytes;

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
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
    /// An empty queue holding at most `capacity` frames.
    pub fn new(capacity: usize) -> Self {
        Outbox {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            overflow: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        rtet_protocol::sync::lock(&self.inner)
    }

    /// Queues a frame without waiting.
    pub fn push(&self, frame: Utf8Bytes) -> Push {
        let mut inner = self.lock();
        if inner.overflowed || inner.closed {
            return Push::Dropped;
        }
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

    /// Moves up to `max` queued frames into `out`.
    pub fn drain_into(&self, out: &mut Vec<Utf8Bytes>, max: usize) {
        let mut inner = self.lock();
        let n = inner.frames.len().min(max);
        out.extend(inner.frames.drain(..n));
        if inner.frames.is_empty() {
            // An idle subscriber holds no queue: the next frame allocates one.
            inner.frames = VecDeque::new();
        }
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
        inner.frames = VecDeque::new();
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

    #[test]
    fn overflows_once_then_drops() {
        let q = Outbox::new(2);
        assert_eq!(q.push("a".into()), Push::Queued);
        assert_eq!(q.push("b".into()), Push::Queued);
        assert_eq!(q.push("c".into()), Push::Overflowed);
        assert_eq!(q.push("d".into()), Push::Dropped);
        assert!(q.is_overflowed());
        assert!(!q.has_frames());
    }

    #[test]
    fn an_emptied_queue_keeps_no_memory() {
        let q = Outbox::new(1000);
        for _ in 0..50 {
            q.push("event".into());
        }
        let mut out = Vec::new();
        q.drain_into(&mut out, 20);
        assert!(q.lock().frames.capacity() >= 30, "still holding the rest");
        q.drain_into(&mut out, 1000);
        assert_eq!(out.len(), 50);
        assert_eq!(
            q.lock().frames.capacity(),
            0,
            "an idle subscriber holds no queue"
        );
    }

    #[test]
    fn drains_in_order() {
        let q = Outbox::new(10);
        for s in ["1", "2", "3"] {
            q.push(s.into());
        }
        let mut out = Vec::new();
        q.drain_into(&mut out, 2);
        q.drain_into(&mut out, 10);
        let got: Vec<&str> = out.iter().map(|b| b.as_str()).collect();
        assert_eq!(got, ["1", "2", "3"]);
        q.close();
        assert_eq!(q.push("4".into()), Push::Dropped);
    }
}
