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
//!
//! On a plain TCP connection an event need not wake the task at all: while
//! the task is *settled* (it holds nothing to write and the queue is empty)
//! [`Outbox::offer`] writes the event's frame straight to the socket
//! ([`crate::direct`]). The task unsettles under the queue's lock before it
//! answers a client frame or writes anything, and settles again only once it
//! has written everything, so a direct frame never overtakes one the task
//! holds, and nothing the task must send first (a `subscribed`, a replay) is
//! overtaken by a live event.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tungstenite::Utf8Bytes;

use crate::direct::{wire_frame, Direct, Written};

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

/// What [`Outbox::offer`] did with a subscriber's share of events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offered {
    /// Events written to the socket or queued for the task.
    pub delivered: usize,
    /// This offer overflowed the queue: count the slow consumer once.
    pub overflowed: bool,
}

/// An event on its way to subscribers: its text, for the queues (and the
/// held frames of a subscriber still reading its replay), and its WebSocket
/// frame, built once for every socket that takes it directly.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub text: Utf8Bytes,
    wire: Bytes,
}

impl Outgoing {
    /// The event whose frame's payload is `text`.
    pub fn new(text: Utf8Bytes) -> Self {
        Outgoing {
            wire: wire_frame(&text),
            text,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<Utf8Bytes>,
    overflowed: bool,
    closed: bool,
    /// The task holds nothing to write: an offer may write to the socket itself.
    settled: bool,
    /// A direct write left part of a frame in the socket's keeping: the task must flush.
    must_flush: bool,
    /// The socket, on a plain TCP connection (let go of when the queue closes,
    /// so the socket closes with its connection, not when the hub lets go).
    direct: Option<Arc<Direct>>,
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
    /// An empty queue holding at most `capacity` frames, whose events are
    /// always queued for the task.
    pub fn new(capacity: usize) -> Self {
        Outbox::with_socket(capacity, None)
    }

    /// An empty queue holding at most `capacity` frames, for a connection
    /// whose events may be written to `direct` by whoever offers them.
    pub fn with_socket(capacity: usize, direct: Option<Arc<Direct>>) -> Self {
        Outbox {
            inner: Mutex::new(Inner {
                direct,
                ..Inner::default()
            }),
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
        let (push, signal) = self.queue(&mut inner, frame);
        drop(inner);
        if let Some(signal) = signal {
            self.raise(signal);
        }
        push
    }

    /// Queues `frame` behind those waiting, under the lock: the task is no
    /// longer settled. Says what to raise once the lock is let go: the
    /// overflow, or frames in a queue that was empty.
    fn queue(&self, inner: &mut Inner, frame: Utf8Bytes) -> (Push, Option<u8>) {
        inner.settled = false;
        if inner.frames.len() >= self.capacity {
            inner.overflowed = true;
            inner.frames.clear();
            inner.frames.shrink_to_fit();
            return (Push::Overflowed, Some(OVERFLOWED));
        }
        let was_empty = inner.frames.is_empty();
        inner.frames.push_back(frame);
        (Push::Queued, was_empty.then_some(FRAMES))
    }

    /// Sends events in order without waiting: while the task is settled, as
    /// many as the socket takes at once straight to it (one write); the rest
    /// queued for the task, and so are all later ones until the task has
    /// written them and settled again.
    pub fn offer(&self, events: &[&Outgoing]) -> Offered {
        let mut inner = self.lock();
        let mut out = Offered::default();
        if inner.overflowed || inner.closed {
            return out;
        }
        let mut rest = events;
        let mut signal = 0;
        if let (true, Some(direct)) = (inner.settled, &inner.direct) {
            let written = match events {
                [one] => direct.try_write_frames(&[&one.wire]),
                _ => {
                    let wires: Vec<&Bytes> = events.iter().map(|e| &e.wire).collect();
                    direct.try_write_frames(&wires)
                }
            };
            let taken = match written {
                Written::Whole(n) => n,
                Written::Part(n) => {
                    // The rest of that frame waits in the socket for the task's flush.
                    inner.must_flush = true;
                    inner.settled = false;
                    signal |= FRAMES;
                    n + 1
                }
            };
            out.delivered = taken;
            rest = &events[taken..];
        }
        for event in rest {
            match self.queue(&mut inner, event.text.clone()) {
                (Push::Overflowed, s) => {
                    out.overflowed = true;
                    signal |= s.unwrap_or(0);
                    break;
                }
                (_, s) => {
                    out.delivered += 1;
                    signal |= s.unwrap_or(0);
                }
            }
        }
        drop(inner);
        if signal != 0 {
            self.raise(signal);
        }
        out
    }

    /// The task is about to write, or to do what must reach the socket
    /// before later events (answer a client frame): events are queued until
    /// [`Outbox::settle`].
    pub fn unsettle(&self) {
        self.lock().settled = false;
    }

    /// The task has written everything it held: events may go straight to
    /// the socket again, unless some are queued or a direct write's rest
    /// waits for a flush (the task sees to those first).
    pub fn settle(&self) {
        let mut inner = self.lock();
        if inner.frames.is_empty() && !inner.must_flush && !inner.closed && !inner.overflowed {
            inner.settled = true;
        }
    }

    /// Whether a direct write left part of a frame for the task to flush
    /// (asked once: the answer is cleared).
    pub fn take_flush(&self) -> bool {
        std::mem::take(&mut self.lock().must_flush)
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
        inner.settled = false;
        inner.frames = VecDeque::new();
        drop(inner);
        self.raise(OVERFLOWED);
    }

    /// Moves up to `max` queued frames into `out`, and says whether more are waiting.
    pub fn drain_into(&self, out: &mut impl Extend<Utf8Bytes>, max: usize) -> bool {
        let mut inner = self.lock();
        inner.settled = false;
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
        inner.settled = false;
        inner.frames = VecDeque::new();
        inner.direct = None;
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

    fn offer(q: &Outbox, text: &str) -> Offered {
        q.offer(&[&Outgoing::new(text.into())])
    }

    #[tokio::test]
    async fn events_go_to_the_socket_only_while_the_task_is_settled_with_nothing_queued() {
        use tokio::io::AsyncReadExt;
        let (direct, mut peer) = crate::direct::tests::socket_pair().await;
        let q = Outbox::with_socket(10, Some(direct));
        let mut out = Vec::new();
        let queued = |q: &Outbox, out: &mut Vec<Utf8Bytes>| q.drain_into(out, 10);
        offer(&q, "a");
        assert_eq!(q.lock().frames.len(), 1, "a task starts unsettled");
        queued(&q, &mut out);
        offer(&q, "b");
        q.settle();
        offer(&q, "c");
        assert_eq!(
            q.lock().frames.len(),
            2,
            "b is still queued: c waits behind it"
        );
        queued(&q, &mut out);
        q.settle();
        assert_eq!(offer(&q, "d").delivered, 1);
        assert!(q.lock().frames.is_empty(), "d went to the socket");
        q.unsettle();
        offer(&q, "e");
        assert_eq!(q.lock().frames.len(), 1, "the task is answering a client");
        queued(&q, &mut out);
        q.settle();
        // Several at once go in one write.
        let (f, g) = (Outgoing::new("f".into()), Outgoing::new("g".into()));
        assert_eq!(q.offer(&[&f, &g]).delivered, 2);
        q.push("presence".into());
        offer(&q, "h");
        assert_eq!(
            q.lock().frames.len(),
            2,
            "a pushed frame unsettles the task too"
        );
        queued(&q, &mut out);
        q.close();
        assert_eq!(offer(&q, "i"), Offered::default(), "closed: dropped");
        let queued: Vec<&str> = out.iter().map(|f| f.as_str()).collect();
        assert_eq!(queued, ["a", "b", "c", "e", "presence", "h"]);
        let mut received = Vec::new();
        // The queue let go of the socket at close: the peer sees its end.
        peer.read_to_end(&mut received).await.unwrap();
        assert_eq!(crate::direct::tests::texts(&received), ["d", "f", "g"]);
    }

    #[tokio::test]
    async fn what_the_socket_does_not_take_waits_in_the_queue_and_so_does_what_follows() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (direct, mut peer) = crate::direct::tests::socket_pair().await;
        let mut io = crate::direct::SharedTcp(Arc::clone(&direct));
        let q = Outbox::with_socket(1_000, Some(direct));
        q.settle();
        // Events of 100 KB until the socket stops taking them (almost always
        // inside one: a frame written in part).
        let big = |i: usize| Outgoing::new(format!("{i:03}{}", "x".repeat(100_000)).into());
        let mut sent = 0;
        while q.lock().settled {
            assert_eq!(q.offer(&[&big(sent)]).delivered, 1);
            sent += 1;
            assert!(sent < 1_000, "the socket never stopped taking");
        }
        if q.take_flush() {
            assert!(
                q.lock().frames.is_empty(),
                "the frame's rest is the socket's"
            );
        } else {
            assert_eq!(
                q.lock().frames.len(),
                1,
                "the socket took none of it: queued"
            );
        }
        offer(&q, "after");
        assert_eq!(
            q.lock().frames.back().map(|f| f.as_str().to_owned()),
            Some("after".to_owned()),
            "queued behind what went before"
        );
        q.settle();
        assert!(
            !q.lock().settled,
            "nothing is sent directly until the queue is empty"
        );
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            peer.read_to_end(&mut received).await.unwrap();
            received
        });
        // The task: the frame's rest first, then what was queued.
        io.flush().await.unwrap();
        let mut out = Vec::new();
        q.drain_into(&mut out, 10);
        for text in &out {
            io.write_all(&crate::direct::wire_frame(text))
                .await
                .unwrap();
        }
        io.shutdown().await.unwrap();
        let got = crate::direct::tests::texts(&reader.await.unwrap());
        assert_eq!(got.len(), sent + 1);
        for (i, text) in got[..sent].iter().enumerate() {
            assert!(
                text.starts_with(&format!("{i:03}x")),
                "event {i} whole and in order"
            );
        }
        assert_eq!(got[sent], "after");
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
