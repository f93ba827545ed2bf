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
//! Its connection task is woken through one [`AtomicWaker`] and three flags
//! (frames queued, overflowed, the socket woke it) rather than a `Notify`
//! for each: a task that is woken for an event registers again with a
//! compare-and-swap and no lock.
//!
//! The outbox is also the waker the task gives its socket's read side
//! ([`Wake`] for `Arc<Outbox>`), so the task knows whether the socket woke
//! it and polls the read side only then (see [`Outbox::socket_woken`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake};

use futures_util::task::AtomicWaker;
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

/// [`Outbox::signals`]: frames were queued since the task last looked.
const FRAMES: u8 = 1;
/// [`Outbox::signals`]: the queue overflowed (it stays so).
const OVERFLOWED: u8 = 2;
/// [`Outbox::signals`]: the socket woke the task through the outbox as its waker.
const SOCKET: u8 = 4;

/// One subscriber connection's queue of outgoing event frames.
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    capacity: usize,
    /// What the connection task has to look at: [`FRAMES`], [`OVERFLOWED`], [`SOCKET`].
    signals: AtomicU8,
    /// The connection task, woken when a signal is raised.
    task: AtomicWaker,
}

impl Outbox {
    /// An empty queue holding at most `capacity` frames.
    pub fn new(capacity: usize) -> Self {
        Outbox {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            signals: AtomicU8::new(0),
            task: AtomicWaker::new(),
        }
    }

    /// Raises `signal` and wakes the connection task.
    fn raise(&self, signal: u8) {
        self.signals.fetch_or(signal, Ordering::AcqRel);
        self.task.wake();
    }

    /// Ready when `signal` is raised (clearing it if `consume`); otherwise the
    /// task is woken when it is.
    fn poll_signal(&self, cx: &mut Context<'_>, signal: u8, consume: bool) -> Poll<()> {
        let raised = |signals: &AtomicU8| {
            if consume {
                signals.fetch_and(!signal, Ordering::AcqRel) & signal != 0
            } else {
                signals.load(Ordering::Acquire) & signal != 0
            }
        };
        if raised(&self.signals) {
            return Poll::Ready(());
        }
        self.task.register(cx.waker());
        // Raised between the first look and the registration: its wake-up may have been missed.
        if raised(&self.signals) {
            return Poll::Ready(());
        }
        Poll::Pending
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
            self.raise(OVERFLOWED);
            return Push::Overflowed;
        }
        let was_empty = inner.frames.is_empty();
        inner.frames.push_back(frame);
        drop(inner);
        if was_empty {
            self.raise(FRAMES);
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
        self.raise(OVERFLOWED);
    }

    /// Moves up to `max` queued frames into `out`, and says whether more are waiting.
    pub fn drain_into(&self, out: &mut impl Extend<Utf8Bytes>, max: usize) -> bool {
        let mut inner = self.lock();
        let n = inner.frames.len().min(max);
        out.extend(inner.frames.drain(..n));
        if inner.frames.is_empty() {
            // An idle subscriber holds no queue: the next frame allocates one.
            inner.frames = VecDeque::new();
            return false;
        }
        true
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

    /// Ready when frames were queued since the last time it was (so frames
    /// may be waiting). One connection task polls it.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_signal(cx, FRAMES, true)
    }

    /// Resolves when frames may be waiting (see [`Outbox::poll_ready`]).
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// Resolves when the queue has overflowed (at once, ever after).
    pub async fn overflowed(&self) {
        std::future::poll_fn(|cx| self.poll_signal(cx, OVERFLOWED, false)).await
    }

    /// Registers `cx`'s task to be woken when the socket wakes the outbox (as
    /// its [`Wake`]r), and says whether it did since the last call. The task
    /// registers before it looks, so a wake-up after the look wakes it again.
    pub fn socket_woken(&self, cx: &mut Context<'_>) -> bool {
        self.task.register(cx.waker());
        self.signals.fetch_and(!SOCKET, Ordering::AcqRel) & SOCKET != 0
    }
}

/// The waker a connection task gives its socket's read side: it notes the
/// wake-up for [`Outbox::socket_woken`] and wakes the task.
impl Wake for Outbox {
    fn wake(self: Arc<Self>) {
        self.raise(SOCKET);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.raise(SOCKET);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    #[test]
    fn overflows_once_then_drops() {
        let q = Outbox::new(2);
        assert_eq!(q.push("a".into()), Push::Queued);
        assert_eq!(q.push("b".into()), Push::Queued);
        assert_eq!(q.push("c".into()), Push::Overflowed);
        assert_eq!(q.push("d".into()), Push::Dropped);
        assert!(q.is_overflowed());
        assert!(
            q.lock().frames.is_empty(),
            "an overflowed queue holds nothing"
        );
    }

    #[test]
    fn an_emptied_queue_keeps_no_memory() {
        let q = Outbox::new(1000);
        for _ in 0..50 {
            q.push("event".into());
        }
        let mut out = Vec::new();
        assert!(q.drain_into(&mut out, 20), "more are waiting");
        assert!(q.lock().frames.capacity() >= 30, "still holding the rest");
        assert!(!q.drain_into(&mut out, 1000), "none are left");
        assert_eq!(out.len(), 50);
        assert_eq!(
            q.lock().frames.capacity(),
            0,
            "an idle subscriber holds no queue"
        );
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_task_is_woken_once_for_frames_queued_while_it_waits_and_for_an_overflow() {
        let q = Outbox::new(2);
        let wakes = std::sync::Arc::new(Wakes::default());
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let woken = || wakes.0.load(Ordering::SeqCst);

        assert!(q.poll_ready(&mut cx).is_pending(), "nothing queued yet");
        q.push("1".into());
        q.push("2".into());
        assert_eq!(woken(), 1, "woken for the first frame of an empty queue");
        assert!(q.poll_ready(&mut cx).is_ready());
        assert!(q.poll_ready(&mut cx).is_pending(), "the signal is used up");

        // A frame queued before the task looks is not missed.
        let mut out = Vec::new();
        q.drain_into(&mut out, 10);
        q.push("3".into());
        assert!(q.poll_ready(&mut cx).is_ready());

        let overflowed =
            |cx: &mut Context<'_>| std::pin::pin!(q.overflowed()).as_mut().poll(cx).is_ready();
        assert!(!overflowed(&mut cx));
        let before = woken();
        q.push("4".into());
        assert_eq!(q.push("5".into()), Push::Overflowed);
        assert_eq!(woken(), before + 1, "woken for the overflow");
        assert!(overflowed(&mut cx));
        assert!(overflowed(&mut cx), "an overflow stays");
    }

    #[test]
    fn the_socket_wakes_the_task_through_the_outbox_and_is_seen_once() {
        let q = Arc::new(Outbox::new(2));
        let wakes = Arc::new(Wakes::default());
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let socket = std::task::Waker::from(Arc::clone(&q));

        assert!(!q.socket_woken(&mut cx), "the socket has not woken it yet");
        socket.wake_by_ref();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the task is woken");
        assert!(q.socket_woken(&mut cx), "and sees that the socket woke it");
        assert!(!q.socket_woken(&mut cx), "once");
        // A wake-up after the task looked wakes it again: it registered first.
        socket.wake();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
        assert!(q.socket_woken(&mut cx));
        // The socket's wake-ups are not frames.
        assert!(q.poll_ready(&mut cx).is_pending());
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
