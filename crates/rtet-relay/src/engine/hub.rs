//! The hub: this node's subscribers per channel, and the fan-out of each
//! event to them.
//!
//! It knows nothing of where events come from (a broker in another process,
//! pub/sub, a stream): whoever feeds it calls [`Hub::deliver`] for one channel
//! from one place at a time, in `seq` order. Channels are spread over shards,
//! each its own lock, so a hot channel's fan-out does not stall subscribes
//! and deliveries on every other channel.
//!
//! A channel's subscribers are kept in *chunks* of at most [`CHUNK`]. A
//! delivery only appends the event to each chunk's pending list and, if the
//! chunk's writer is not already running, starts it: a task that hands every
//! pending event to each of the chunk's subscribers in turn
//! ([`Outbox::offer`]), straight to the socket of each one that is caught up.
//! So an event to 1,000 subscribers costs one task wake-up per chunk instead
//! of one per subscriber, the chunks are written in parallel on the
//! runtime's threads, and a chunk that finds several events pending (the
//! publisher outran it) hands each subscriber all of them in one write;
//! deliveries made inside [`burst`] (a publisher's pipelined frames) start
//! their writers together at its end, so those go out in one write too. A
//! subscriber is in one chunk of a channel, so it gets the channel's events
//! in order.
//!
//! A subscriber with `since` is added *held*: live frames for it are kept
//! aside until its replay has been read (up to some `seq` S), then
//! [`Hub::release`] drops the kept frames with `seq <= S` and queues the
//! rest. From then on it is only ever sent frames with `seq > S`, so no event
//! is both replayed and delivered live, and none falls between the two.
//! Whatever a chunk's writer has pending goes through the same test, so an
//! event delivered before a subscriber joined is never sent to it live
//! unless it came after the subscriber's replay.

use std::cell::RefCell;
use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tungstenite::Utf8Bytes;

use super::SubscriberId;
use crate::outbox::{Outbox, Outgoing, Push};
use rtet_protocol::sync::lock;

/// Shards of the channel map: enough that two hot channels rarely share a lock.
const SHARDS: usize = 64;

/// Most subscribers of a channel one fan-out task writes to. Small enough
/// that a 1,000-subscriber channel is written by as many tasks as it takes
/// to keep every runtime thread busy; large enough that a wake-up is shared
/// by many writes.
pub const CHUNK: usize = 64;

/// One local subscriber of one channel.
struct Local {
    id: SubscriberId,
    outbox: Arc<Outbox>,
    /// Frames kept back while the subscriber's replay is read; `None` once released.
    held: Option<Vec<(u64, Utf8Bytes)>>,
    /// The lowest `seq` this subscriber may still be sent (one more than its replay's last).
    floor: u64,
}

/// Events delivered to a chunk and not yet handed to its subscribers.
#[derive(Default)]
struct Pending {
    events: Vec<(u64, Outgoing)>,
    /// A writer task is running for the chunk (it takes what is pending until none is).
    writing: bool,
}

/// Up to [`CHUNK`] subscribers of one channel and the events on their way to them.
#[derive(Default)]
struct Chunk {
    /// Held by the writer while it hands a batch to each subscriber, so a
    /// subscriber removed (unsubscribed) is never sent anything after.
    members: Mutex<Vec<Local>>,
    pending: Mutex<Pending>,
}

/// One channel's local subscribers.
#[derive(Default)]
struct Channel {
    chunks: Vec<Arc<Chunk>>,
    /// Which chunk each subscriber is in.
    placed: HashMap<SubscriberId, usize>,
}

type Channels = HashMap<String, Channel>;

/// What the chunks' writers share: the hub's totals, and how many are running.
#[derive(Default)]
struct Totals {
    /// Events handed to subscribers, over the hub's life.
    delivered: AtomicU64,
    /// Queues overflowed, over the hub's life.
    overflowed: AtomicU64,
    /// Chunk writers running.
    writers: AtomicUsize,
    /// Notified when the last running writer finishes.
    all_written: tokio::sync::Notify,
}

/// This node's subscribers, sharded by channel.
pub struct Hub {
    shards: Box<[Mutex<Channels>]>,
    subscriptions: AtomicUsize,
    totals: Arc<Totals>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Chunk {
    /// Hands what is pending to every member, batch after batch, until
    /// nothing is; then marks the chunk as no longer being written.
    fn write(&self, totals: &Totals) {
        let mut batch = Vec::new();
        loop {
            {
                let mut pending = lock(&self.pending);
                if pending.events.is_empty() {
                    pending.writing = false;
                    // Keep no list while idle: the next event allocates one.
                    pending.events = Vec::new();
                    drop(pending);
                    if totals.writers.fetch_sub(1, Ordering::AcqRel) == 1 {
                        totals.all_written.notify_waiters();
                    }
                    return;
                }
                std::mem::swap(&mut batch, &mut pending.events);
            }
            self.hand_out(&batch, totals);
            batch.clear();
        }
    }

    /// Hands `batch` (in `seq` order) to every member: what is past its
    /// floor, held while its replay is read, offered otherwise.
    fn hand_out(&self, batch: &[(u64, Outgoing)], totals: &Totals) {
        let (mut delivered, mut overflowed) = (0u64, 0u64);
        let mut offer: Vec<&Outgoing> = Vec::with_capacity(batch.len());
        let mut members = lock(&self.members);
        for local in members.iter_mut() {
            let due = batch.iter().filter(|(seq, _)| *seq >= local.floor);
            match &mut local.held {
                Some(held) => {
                    held.extend(due.map(|(seq, e)| (*seq, e.text.clone())));
                    if held.len() > local.outbox.capacity() {
                        // It would overflow the queue at release: overflow it now.
                        held.clear();
                        local.outbox.force_overflow();
                        overflowed += 1;
                    }
                }
                None => {
                    offer.clear();
                    offer.extend(due.map(|(_, e)| e));
                    if offer.is_empty() {
                        continue;
                    }
                    let done = local.outbox.offer(&offer);
                    delivered += done.delivered as u64;
                    overflowed += u64::from(done.overflowed);
                }
            }
        }
        drop(members);
        totals.delivered.fetch_add(delivered, Ordering::Relaxed);
        totals.overflowed.fetch_add(overflowed, Ordering::Relaxed);
    }
}

/// Starts `chunk`'s writer: a task on the runtime, or here and now where
/// there is no runtime (the engines' unit tests). Inside [`burst`], once the
/// burst has been handed over, at once: the burst is all there is. A writer
/// a lone delivery starts (the Redis engine's pub/sub reader hands the hub
/// one message at a time) yields first, so the delivering thread finishes
/// what it is doing and the events it delivers meanwhile go out in the same
/// write (BENCHMARKS.md, "Bursts instead of a yield": without it the flood
/// on Redis is about 15% slower).
fn start_writer(chunk: Arc<Chunk>, totals: Arc<Totals>) {
    let now = DUE.with(move |due| match due.borrow_mut().as_mut() {
        Some(due) => {
            due.push((chunk, totals));
            None
        }
        None => Some((chunk, totals)),
    });
    if let Some((chunk, totals)) = now {
        spawn_writer(chunk, totals, true);
    }
}

/// Runs `chunk`'s writer on the runtime (after one yield if `yield_first`),
/// or here and now where there is none.
fn spawn_writer(chunk: Arc<Chunk>, totals: Arc<Totals>, yield_first: bool) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                if yield_first {
                    tokio::task::yield_now().await;
                }
                chunk.write(&totals)
            });
        }
        Err(_) => chunk.write(&totals),
    }
}

/// A chunk whose writer is due, with the totals it counts into.
type DueWriter = (Arc<Chunk>, Arc<Totals>);

thread_local! {
    /// Chunk writers due while [`burst`] runs on this thread; `None` outside one.
    static DUE: RefCell<Option<Vec<DueWriter>>> = const { RefCell::new(None) };
}

/// Runs `hand_over` (which must not wait: it is one thread's synchronous
/// work, such as a publisher connection handing the engine every frame
/// that arrived in one read), and starts the chunk writers its deliveries
/// need only once it returns. So each writer finds the whole burst pending
/// and gives each subscriber all of it in one write, where a writer started
/// by the burst's first event would be taken at once by another runtime
/// thread and write the events one by one. A single event is written as
/// soon as it is handed over: nothing waits for a burst that is not there.
pub fn burst<R>(hand_over: impl FnOnce() -> R) -> R {
    /// Starts the writers due, even if `hand_over` panicked: a writer counted
    /// and never started would hold up [`Hub::written`] for ever.
    struct Starts(bool);
    impl Drop for Starts {
        fn drop(&mut self) {
            if !self.0 {
                return; // an outer burst starts them
            }
            let due = DUE.with(|due| due.borrow_mut().take()).unwrap_or_default();
            for (chunk, totals) in due {
                spawn_writer(chunk, totals, false);
            }
        }
    }
    let outermost = DUE.with(|due| {
        let mut due = due.borrow_mut();
        if due.is_some() {
            return false;
        }
        *due = Some(Vec::new());
        true
    });
    let _starts = Starts(outermost);
    hand_over()
}

impl Hub {
    /// A hub without subscribers.
    pub fn new() -> Self {
        Hub {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            subscriptions: AtomicUsize::new(0),
            totals: Arc::default(),
        }
    }

    fn shard(&self, channel: &str) -> &Mutex<Channels> {
        let mut h = DefaultHasher::new();
        channel.hash(&mut h);
        &self.shards[(h.finish() as usize) % self.shards.len()]
    }

    /// Adds a subscriber whose live frames are held until [`Hub::release`].
    /// Returns whether it is the channel's first local subscriber (the node
    /// must then start receiving the channel). A subscriber already present
    /// is held again (a repeated subscribe replays again).
    pub fn add_held(&self, channel: &str, id: SubscriberId, outbox: Arc<Outbox>) -> bool {
        let mut shard = lock(self.shard(channel));
        let first = !shard.contains_key(channel);
        let subs = shard.entry(channel.to_owned()).or_default();
        let local = Local {
            id,
            outbox,
            held: Some(Vec::new()),
            floor: 0,
        };
        if let Some(&at) = subs.placed.get(&id) {
            let mut members = lock(&subs.chunks[at].members);
            if let Some(m) = members.iter_mut().find(|m| m.id == id) {
                *m = local;
            }
            return first;
        }
        let at = match subs
            .chunks
            .iter()
            .position(|c| lock(&c.members).len() < CHUNK)
        {
            Some(at) => at,
            None => {
                subs.chunks.push(Arc::default());
                subs.chunks.len() - 1
            }
        };
        lock(&subs.chunks[at].members).push(local);
        subs.placed.insert(id, at);
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
        first
    }

    /// Ends the hold: frames with `seq <= replayed_up_to` are dropped (they
    /// are in the replay, or came before it), later ones are queued in order,
    /// and from now on only frames with a larger `seq` reach the subscriber.
    pub fn release(&self, channel: &str, id: SubscriberId, replayed_up_to: u64) {
        let shard = lock(self.shard(channel));
        let Some(subs) = shard.get(channel) else {
            return;
        };
        let Some(&at) = subs.placed.get(&id) else {
            return;
        };
        let mut members = lock(&subs.chunks[at].members);
        let Some(local) = members.iter_mut().find(|m| m.id == id) else {
            return;
        };
        local.floor = replayed_up_to.saturating_add(1);
        let (mut queued, mut overflowed) = (0, 0);
        for (seq, frame) in local.held.take().unwrap_or_default() {
            if seq >= local.floor {
                match local.outbox.push(frame) {
                    Push::Queued => queued += 1,
                    Push::Overflowed => overflowed += 1,
                    Push::Dropped => {}
                }
            }
        }
        self.totals.delivered.fetch_add(queued, Ordering::Relaxed);
        self.totals
            .overflowed
            .fetch_add(overflowed, Ordering::Relaxed);
    }

    /// Removes a subscriber. Returns whether the channel has no local
    /// subscriber left (the node may stop receiving it). Once it returns,
    /// nothing more of the channel is handed to the subscriber.
    pub fn remove(&self, channel: &str, id: SubscriberId) -> bool {
        let mut shard = lock(self.shard(channel));
        let Entry::Occupied(mut entry) = shard.entry(channel.to_owned()) else {
            return false;
        };
        let subs = entry.get_mut();
        if let Some(at) = subs.placed.remove(&id) {
            let emptied = {
                let mut members = lock(&subs.chunks[at].members);
                members.retain(|m| m.id != id);
                members.is_empty()
            };
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
            if emptied {
                // The last chunk takes the emptied one's place.
                subs.chunks.swap_remove(at);
                if at < subs.chunks.len() {
                    for m in lock(&subs.chunks[at].members).iter() {
                        subs.placed.insert(m.id, at);
                    }
                }
            }
        }
        if subs.placed.is_empty() {
            entry.remove();
            true
        } else {
            false
        }
    }

    /// Hands `frame` (the channel's event number `seq`) to every local
    /// subscriber that has not had it yet, without waiting: each chunk's
    /// writer sends it (see the module's notes).
    pub fn deliver(&self, channel: &str, seq: u64, frame: &Utf8Bytes) {
        let shard = lock(self.shard(channel));
        let Some(subs) = shard.get(channel) else {
            return;
        };
        let event = Outgoing::new(frame.clone());
        for chunk in &subs.chunks {
            let start = {
                let mut pending = lock(&chunk.pending);
                pending.events.push((seq, event.clone()));
                !std::mem::replace(&mut pending.writing, true)
            };
            if start {
                self.totals.writers.fetch_add(1, Ordering::AcqRel);
                start_writer(Arc::clone(chunk), Arc::clone(&self.totals));
            }
        }
    }

    /// Resolves once every event delivered so far has been handed to its
    /// subscribers (written to their sockets or queued): no chunk has
    /// anything pending. Shutdown waits for it before closing subscribers.
    pub async fn written(&self) {
        loop {
            let done = self.totals.all_written.notified();
            if self.totals.writers.load(Ordering::Acquire) == 0 {
                return;
            }
            done.await;
        }
    }

    /// Events handed to subscribers, and queues overflowed, since the hub was made.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.totals.delivered.load(Ordering::Relaxed),
            self.totals.overflowed.load(Ordering::Relaxed),
        )
    }

    /// Disconnects every local subscriber of the channel as slow consumers
    /// (close 4408): they resume with `since` and learn from `recovered`
    /// whether anything was lost. For history that changed under them (a new epoch).
    pub fn disconnect_all(&self, channel: &str) -> usize {
        let shard = lock(self.shard(channel));
        let Some(subs) = shard.get(channel) else {
            return 0;
        };
        for chunk in &subs.chunks {
            for local in lock(&chunk.members).iter() {
                local.outbox.force_overflow();
            }
        }
        subs.placed.len()
    }

    /// Whether the channel has local subscribers.
    pub fn has(&self, channel: &str) -> bool {
        lock(self.shard(channel)).contains_key(channel)
    }

    /// Every channel with local subscribers.
    pub fn channels(&self) -> Vec<String> {
        self.shards
            .iter()
            .flat_map(|s| lock(s).keys().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Local subscriptions over all channels.
    pub fn subscriptions(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(q: &Outbox) -> Vec<String> {
        let mut out = Vec::new();
        q.drain_into(&mut out, usize::MAX);
        out.iter().map(|f| f.as_str().to_owned()).collect()
    }

    #[test]
    fn a_held_subscriber_gets_only_what_follows_its_replay() {
        let hub = Hub::new();
        let q = Arc::new(Outbox::new(10));
        assert!(hub.add_held("c", 1, Arc::clone(&q)), "first on the channel");
        hub.deliver("c", 4, &"4".into());
        hub.deliver("c", 5, &"5".into());
        hub.deliver("c", 6, &"6".into());
        assert!(frames(&q).is_empty(), "held while the replay is read");
        hub.release("c", 1, 5);
        assert_eq!(frames(&q), ["6"]);
        assert_eq!(hub.totals(), (1, 0), "the released frame is counted, once");
        hub.deliver("c", 5, &"5 again".into());
        hub.deliver("c", 7, &"7".into());
        assert_eq!(frames(&q), ["7"], "never below its floor");
        assert_eq!(hub.totals(), (2, 0));
        assert!(hub.remove("c", 1), "last one gone");
        assert!(!hub.has("c"));
    }

    #[test]
    fn the_second_subscriber_is_not_first_and_the_last_removal_says_so() {
        let hub = Hub::new();
        let q = Arc::new(Outbox::new(10));
        assert!(hub.add_held("c", 1, Arc::clone(&q)));
        assert!(!hub.add_held("c", 2, Arc::clone(&q)));
        assert_eq!(hub.subscriptions(), 2);
        assert!(!hub.remove("c", 1));
        assert!(hub.remove("c", 2));
        assert_eq!(hub.subscriptions(), 0);
    }

    #[test]
    fn every_chunk_of_a_large_channel_gets_every_event_in_order_and_a_removed_one_nothing() {
        let hub = Hub::new();
        let n = CHUNK * 3 + 5;
        let queues: Vec<Arc<Outbox>> = (0..n).map(|_| Arc::new(Outbox::new(100))).collect();
        for (id, q) in queues.iter().enumerate() {
            hub.add_held("c", id as SubscriberId, Arc::clone(q));
            hub.release("c", id as SubscriberId, 0);
        }
        hub.deliver("c", 1, &"1".into());
        assert!(!hub.remove("c", 7), "others are left");
        hub.deliver("c", 2, &"2".into());
        for (id, q) in queues.iter().enumerate() {
            let expected: &[&str] = if id == 7 { &["1"] } else { &["1", "2"] };
            assert_eq!(frames(q), expected, "subscriber {id}");
        }
        assert_eq!(hub.totals(), (2 * n as u64 - 1, 0));
        // Emptying a chunk moves another into its place; every member is still found.
        for id in 0..CHUNK {
            hub.remove("c", id as SubscriberId);
        }
        hub.deliver("c", 3, &"3".into());
        for (id, q) in queues.iter().enumerate() {
            assert_eq!(frames(q).len(), usize::from(id >= CHUNK), "subscriber {id}");
        }
        assert_eq!(hub.subscriptions(), n - CHUNK);
        for id in CHUNK..n {
            hub.remove("c", id as SubscriberId);
        }
        assert!(!hub.has("c"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_the_runtime_the_chunks_are_written_by_tasks_in_order() {
        let hub = Hub::new();
        let n = CHUNK * 4;
        let queues: Vec<Arc<Outbox>> = (0..n).map(|_| Arc::new(Outbox::new(1_000))).collect();
        for (id, q) in queues.iter().enumerate() {
            hub.add_held("c", id as SubscriberId, Arc::clone(q));
            hub.release("c", id as SubscriberId, 0);
        }
        for seq in 1..=500u64 {
            hub.deliver("c", seq, &seq.to_string().into());
        }
        let expected: Vec<String> = (1..=500).map(|s| s.to_string()).collect();
        for q in &queues {
            let mut got = Vec::new();
            let all = async {
                while got.len() < expected.len() {
                    got.extend(frames(q));
                    tokio::task::yield_now().await;
                }
            };
            tokio::time::timeout(std::time::Duration::from_secs(10), all)
                .await
                .expect("every event arrives");
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn a_burst_is_handed_to_subscribers_once_it_is_all_delivered() {
        let hub = Hub::new();
        let q = Arc::new(Outbox::new(100));
        hub.add_held("c", 1, Arc::clone(&q));
        hub.release("c", 1, 0);
        // No runtime here: outside a burst a writer writes at once.
        hub.deliver("c", 1, &"1".into());
        assert_eq!(frames(&q), ["1"]);
        burst(|| {
            hub.deliver("c", 2, &"2".into());
            burst(|| hub.deliver("c", 3, &"3".into()));
            assert!(
                frames(&q).is_empty(),
                "an inner burst leaves the start to the outer"
            );
            hub.deliver("c", 4, &"4".into());
            assert!(
                frames(&q).is_empty(),
                "nothing is written while the burst is handed over"
            );
        });
        assert_eq!(frames(&q), ["2", "3", "4"]);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            burst(|| {
                hub.deliver("c", 5, &"5".into());
                panic!("a publish went wrong");
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(
            frames(&q),
            ["5"],
            "what was delivered before a panic is still written"
        );
        assert_eq!(hub.totals().0, 5);
        burst(|| hub.deliver("c", 6, &"6".into()));
        assert_eq!(frames(&q), ["6"], "the next burst starts afresh");
    }

    #[test]
    fn a_hold_longer_than_the_queue_overflows_it() {
        let hub = Hub::new();
        let q = Arc::new(Outbox::new(2));
        hub.add_held("c", 1, Arc::clone(&q));
        for seq in 1..=3 {
            hub.deliver("c", seq, &"x".into());
        }
        assert!(q.is_overflowed());
    }
}
