//! The publisher core of `rtet.so`: everything the PHP extension does that
//! is not PHP. No Zend types appear here, so `cargo test` covers it against
//! a real relay without PHP.
//!
//! # Layout
//!
//! - [`config`]: the relay, the key, and every limit and timeout, with defaults.
//! - [`Publisher`] (this file): the handle the PHP thread uses: enqueue
//!   (never waits on the network), flush, stats, shutdown.
//! - [`Pool`] (this file): one publisher per relay (URL + key) per process,
//!   and the fork check that gives a forked child fresh state.
//! - `sender`: the background thread (one per publisher) that owns the
//!   WebSocket to `/publish`: pipelining, acks, reconnects, resends.
//! - [`spool`]: the disk spool for overflow and for what a process could not
//!   deliver before it ended.
//!
//! # Threads and fork safety
//!
//! The PHP thread and the sender share a [`Shared`] (a queue under a mutex,
//! counters as atomics). A process that forks keeps the parent's memory but
//! not its sender thread, and a mutex that thread held at the moment of the
//! fork stays locked forever in the child. So [`Pool`] remembers the pid it
//! was made in; a child that finds a foreign pool forgets it (never drops
//! it, never locks anything in it) and starts from nothing. The parent's
//! queued events are the parent's to deliver.

pub mod config;
mod sender;
pub mod spool;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use config::Config;
use thiserror::Error;

/// Why the publisher could not do what was asked.
#[derive(Debug, Error)]
pub enum Error {
    /// The relay URL, key or an option is unusable; fix the configuration.
    #[error("{0}")]
    Config(String),
    /// The background sender thread could not be started (resource limits).
    #[error("cannot start the sender thread: {0}")]
    Thread(String),
    /// TLS cannot be set up (the CA file is unreadable or not PEM); fix the
    /// configuration; nothing is sent to a `wss://` relay until then.
    #[error("{0}")]
    Tls(String),
    /// One connection attempt failed; the sender retries after a pause.
    #[error("{0}")]
    Connect(String),
    /// A spool file is not one (a line cut off, not UTF-8, not a `publish`
    /// frame); it is set aside as `*.corrupt` and never sent.
    #[error("{0}")]
    CorruptSpool(String),
}

/// One event for one channel, as it travels through queue, spool and socket.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event id, echoed in the relay's ack.
    pub id: String,
    /// The channel, echoed in the relay's ack.
    pub channel: String,
    /// The encoded `publish` frame, sent as is.
    pub frame: String,
    /// When it was enqueued (µs since the epoch), to name spool files in order.
    pub at_us: u64,
    /// The spool file it was read from, if any (sender-local id).
    pub(crate) origin: Option<u64>,
}

impl Event {
    /// An event ready to enqueue.
    pub fn new(id: String, channel: String, frame: String) -> Self {
        Event {
            id,
            channel,
            frame,
            at_us: now_us(),
            origin: None,
        }
    }

    /// The memory the event holds: its slot in a queue and its strings.
    pub(crate) fn held_bytes(&self) -> usize {
        std::mem::size_of::<Event>()
            + self.id.capacity()
            + self.channel.capacity()
            + self.frame.capacity()
    }
}

/// Encodes a `publish` frame around `data_json`, which must already be JSON
/// (the extension gets it from PHP's own `json_encode`). The three names
/// must have passed the protocol's checks, whose alphabets need no escaping
/// in JSON; that is what makes writing the frame by hand safe and cheap.
pub fn publish_frame(
    id: &str,
    channel: &str,
    event: &str,
    data_json: &str,
    ts: Option<u64>,
) -> String {
    let mut s =
        String::with_capacity(64 + id.len() + channel.len() + event.len() + data_json.len());
    s.push_str(r#"{"type":"publish","id":""#);
    s.push_str(id);
    s.push_str(r#"","channel":""#);
    s.push_str(channel);
    s.push_str(r#"","event":""#);
    s.push_str(event);
    s.push_str(r#"","data":"#);
    s.push_str(data_json);
    if let Some(ts) = ts {
        s.push_str(r#","ts":"#);
        s.push_str(&ts.to_string());
    }
    s.push('}');
    s
}

pub use rtet_protocol::clock::unix_us as now_us;

/// Events in memory, oldest first, and the bytes of their frames (bounded
/// by [`Config::queue_limit_bytes`] as their number is by [`Config::queue_limit`]).
#[derive(Default)]
pub(crate) struct MemQueue {
    events: VecDeque<Event>,
    bytes: usize,
}

impl MemQueue {
    pub fn push_back(&mut self, ev: Event) {
        self.bytes += ev.frame.len();
        self.events.push_back(ev);
    }

    pub fn pop_front(&mut self) -> Option<Event> {
        let ev = self.events.pop_front()?;
        self.bytes -= ev.frame.len();
        shrink_when_empty(&mut self.events);
        Some(ev)
    }

    /// Takes every event out, oldest first, and the queue's memory with them.
    pub fn take_all(&mut self) -> Vec<Event> {
        self.bytes = 0;
        std::mem::take(&mut self.events).into()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Whether one more event of `frame_len` bytes would pass either limit.
    fn full_for(&self, frame_len: usize, cfg: &Config) -> bool {
        self.events.len() >= cfg.queue_limit
            || (!self.events.is_empty() && self.bytes + frame_len > cfg.queue_limit_bytes)
    }
}

/// Slots a drained queue keeps: a request's few events fit without the
/// queue growing again, while what a burst made it grow to is given back.
const IDLE_SLOTS: usize = 64;

/// Gives back a drained queue's memory beyond [`IDLE_SLOTS`], so that one
/// burst does not stay in a long-lived php-fpm worker for the rest of its
/// life.
pub(crate) fn shrink_when_empty<T>(q: &mut VecDeque<T>) {
    if q.is_empty() && q.capacity() > IDLE_SLOTS {
        q.shrink_to(IDLE_SLOTS);
    }
}

impl From<Vec<Event>> for MemQueue {
    fn from(events: Vec<Event>) -> Self {
        MemQueue {
            bytes: events.iter().map(|e| e.frame.len()).sum(),
            events: events.into(),
        }
    }
}

/// What the PHP thread and the sender share.
pub(crate) struct Queue {
    /// Events in memory, oldest first.
    pub mem: MemQueue,
    /// The overflow file being written, when the queue is over its limit.
    pub overflow: Option<spool::SpoolFile>,
    /// Spool files claimed from ended processes, to deliver first.
    pub claimed: VecDeque<spool::SpoolFile>,
    /// Overflow files of this process that are complete, oldest first.
    pub sealed: VecDeque<spool::SpoolFile>,
    /// While true, new events go to the overflow file so that order is kept.
    pub spooling: bool,
}

/// Counters and state visible in `rtet_stats()`.
#[derive(Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub nacked: AtomicU64,
    pub spooled: AtomicU64,
    pub spool_claimed: AtomicU64,
    pub spool_corrupt: AtomicU64,
    pub connects: AtomicU64,
    pub reconnects: AtomicU64,
    pub rate_limited: AtomicU64,
    pub enqueued: AtomicU64,
}

pub(crate) struct Shared {
    pub cfg: Config,
    pub tag: String,
    pub q: Mutex<Queue>,
    /// New events (or a stop) for the sender.
    pub wake: tokio::sync::Notify,
    /// A flush or a stop: retry the connection now instead of after the backoff.
    pub kick: tokio::sync::Notify,
    pub stop: AtomicBool,
    /// Wakes the sender for a stop.
    pub stop_n: tokio::sync::Notify,
    /// Events enqueued or claimed and not yet acked or finally refused.
    pub pending: AtomicU64,
    pub progress: Mutex<()>,
    pub progress_cv: Condvar,
    pub connected: AtomicBool,
    /// The relay is unreachable (the last connection attempt failed or the
    /// connection broke; set under the `q` lock). While it is, new events go
    /// straight to the spool,
    /// so that a process killed before the relay is back (php-fpm's SIGTERM
    /// skips module shutdown) leaves them on disk for the next one.
    pub down: AtomicBool,
    pub c: Counters,
    pub last_error: Mutex<Option<String>>,
    /// Failures (nacks, spool problems) for the PHP thread to log.
    pub log: Mutex<Vec<String>>,
}

pub(crate) use rtet_protocol::sync::lock;

impl Shared {
    pub fn set_error(&self, msg: impl std::fmt::Display) {
        *lock(&self.last_error) = Some(msg.to_string());
    }

    pub fn log(&self, msg: String) {
        let mut log = lock(&self.log);
        if log.len() < 1000 {
            log.push(msg);
        }
    }

    /// `n` events are done (acked, refused, or handed to the spool at the end).
    pub fn resolved(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.pending.fetch_sub(n, Ordering::AcqRel);
        let _g = lock(&self.progress);
        self.progress_cv.notify_all();
    }
}

/// A snapshot of one publisher's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Whether the sender has an open connection to the relay now.
    pub connected: bool,
    /// Events not yet acked: in memory, in flight, or in spool files this process holds.
    pub queued: u64,
    /// Events accepted by `rtet_send_event` in this process (one per channel).
    pub enqueued: u64,
    /// Frames written to the relay, resends included.
    pub sent: u64,
    /// Events the relay acked.
    pub acked: u64,
    /// Events the relay refused for good (`invalid`, `too_large`, `forbidden`).
    pub nacked: u64,
    /// `rate_limited` answers; those events are sent again after a pause.
    pub rate_limited: u64,
    /// Events written to spool files (queue overflow, relay unreachable, or
    /// unacked at process end).
    pub spooled: u64,
    /// Events claimed from spool files that ended processes left behind.
    pub spool_claimed: u64,
    /// Spool files set aside as corrupt.
    pub spool_corrupt: u64,
    /// Successful connections to the relay.
    pub connects: u64,
    /// Connections after the first one.
    pub reconnects: u64,
    /// The last connection or relay error, if any.
    pub last_error: Option<String>,
}

/// What happened at process end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every event was acked within the shutdown timeout.
    pub delivered_all: bool,
    /// Events left on disk for a later process (spooled at the end, or
    /// earlier while the relay was unreachable, and still unacked).
    pub spooled: u64,
    /// Failures recorded and not yet taken with [`Publisher::take_log`],
    /// those of the final wait included, for PHP to log.
    pub log: Vec<String>,
}

/// One relay's background sender and its queue, as the PHP thread sees it.
pub struct Publisher {
    shared: Arc<Shared>,
    done: Option<mpsc::Receiver<()>>,
}

impl Publisher {
    /// Claims the relay's spool files left by ended processes and starts the
    /// sender thread. Returns warnings about corrupt spool files for PHP.
    pub fn start(cfg: Config) -> Result<(Publisher, Vec<String>), Error> {
        cfg.validate()?;
        let tag = cfg.spool_tag();
        let mut warnings = Vec::new();
        let mut claimed = VecDeque::new();
        let mut claimed_events = 0;
        let mut corrupt = 0;
        let dir_ok = match spool::ensure_dir(&cfg.spool_dir) {
            Ok(()) => true,
            // A refusal names the directory and the reason itself.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                warnings.push(format!("rtet: {e}"));
                false
            }
            Err(e) => {
                warnings.push(format!(
                    "rtet: cannot use the spool directory {}: {e}",
                    cfg.spool_dir.display()
                ));
                false
            }
        };
        let found = if dir_ok {
            spool::claim(&cfg.spool_dir, &tag)
        } else {
            Ok(spool::Claimed::default())
        };
        match found {
            Ok(c) => {
                corrupt = c.corrupt;
                warnings.extend(c.warnings);
                for f in c.files {
                    claimed_events += f.events;
                    claimed.push_back(f);
                }
            }
            Err(e) => warnings.push(format!(
                "rtet: cannot read the spool directory {}: {e}",
                cfg.spool_dir.display()
            )),
        }
        let shared = Arc::new(Shared {
            cfg,
            tag,
            q: Mutex::new(Queue {
                mem: MemQueue::default(),
                overflow: None,
                claimed,
                sealed: VecDeque::new(),
                spooling: false,
            }),
            wake: tokio::sync::Notify::new(),
            kick: tokio::sync::Notify::new(),
            stop: AtomicBool::new(false),
            stop_n: tokio::sync::Notify::new(),
            pending: AtomicU64::new(claimed_events),
            progress: Mutex::new(()),
            progress_cv: Condvar::new(),
            connected: AtomicBool::new(false),
            down: AtomicBool::new(false),
            c: Counters::default(),
            last_error: Mutex::new(None),
            log: Mutex::new(Vec::new()),
        });
        shared
            .c
            .spool_claimed
            .store(claimed_events, Ordering::Relaxed);
        shared.c.spool_corrupt.store(corrupt, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let for_thread = shared.clone();
        std::thread::Builder::new()
            .name("rtet-sender".into())
            .spawn(move || {
                sender::run(for_thread);
                drop(tx);
            })
            .map_err(|e| Error::Thread(e.to_string()))?;
        Ok((
            Publisher {
                shared,
                done: Some(rx),
            },
            warnings,
        ))
    }

    /// The configuration this publisher was started with.
    pub fn config(&self) -> &Config {
        &self.shared.cfg
    }

    /// Queues events (one per channel of one `rtet_send_event`). Never waits
    /// on the network; past the queue limits (count or bytes), and while the relay is
    /// unreachable, the events go to the overflow spool file (a local
    /// append). Never fails: an event that cannot be spooled stays in memory.
    pub fn enqueue(&self, events: Vec<Event>) {
        let n = events.len() as u64;
        self.shared.pending.fetch_add(n, Ordering::AcqRel);
        self.shared.c.enqueued.fetch_add(n, Ordering::Relaxed);
        let mut q = lock(&self.shared.q);
        // Read under the lock: the sender flips it under the lock too, when it
        // moves the queue to disk, so no event lands behind that move.
        let down = self.shared.down.load(Ordering::Relaxed);
        for ev in events {
            if q.spooling || down || q.mem.full_for(ev.frame.len(), &self.shared.cfg) {
                match self.overflow(&mut q, &ev) {
                    Ok(()) => {
                        q.spooling = true;
                        self.shared.c.spooled.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(e) => {
                        let msg = format!(
                            "rtet: cannot write the spool file in {}: {e}; keeping the event in memory",
                            self.shared.cfg.spool_dir.display()
                        );
                        self.shared.set_error(msg.clone());
                        self.shared.log(msg);
                        if q.overflow.is_none() && q.sealed.is_empty() {
                            q.spooling = false;
                        } else {
                            // Order: older events are on disk; this one must wait behind them.
                            // Keep it in memory anyway; losing it is worse than reordering.
                        }
                    }
                }
            }
            q.mem.push_back(ev);
        }
        drop(q);
        self.shared.wake.notify_one();
    }

    fn overflow(&self, q: &mut Queue, ev: &Event) -> std::io::Result<()> {
        if q.overflow.is_none() {
            q.overflow = Some(spool::create(
                &self.shared.cfg.spool_dir,
                &self.shared.tag,
                ev.at_us,
                None,
                std::iter::empty(),
            )?);
        }
        match q.overflow.as_mut() {
            Some(f) => f.append(&ev.frame),
            None => Err(std::io::Error::other("no overflow file")),
        }
    }

    /// Waits until every event this publisher holds is acked (or refused for
    /// good), at most `timeout`. Also cuts short a reconnect backoff.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.shared.kick.notify_one();
        self.shared.wake.notify_one();
        let mut g = lock(&self.shared.progress);
        loop {
            if self.shared.pending.load(Ordering::Acquire) == 0 {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = match self.shared.progress_cv.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.c;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            connected: self.shared.connected.load(Ordering::Relaxed),
            queued: self.shared.pending.load(Ordering::Acquire),
            enqueued: get(&c.enqueued),
            sent: get(&c.sent),
            acked: get(&c.acked),
            nacked: get(&c.nacked),
            rate_limited: get(&c.rate_limited),
            spooled: get(&c.spooled),
            spool_claimed: get(&c.spool_claimed),
            spool_corrupt: get(&c.spool_corrupt),
            connects: get(&c.connects),
            reconnects: get(&c.reconnects),
            last_error: lock(&self.shared.last_error).clone(),
        }
    }

    /// Failures since the last call, for the PHP thread to log.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.shared.log))
    }

    /// Process end: waits up to the shutdown timeout for acks, then stops the
    /// sender, which writes what is left to a spool file for a later process.
    pub fn shutdown(&mut self) -> ShutdownReport {
        let delivered_all = self.flush(self.shared.cfg.shutdown_timeout);
        // Nothing is enqueued during shutdown, so this is 0 when all was delivered.
        let left = self.shared.pending.load(Ordering::Acquire);
        self.shared.stop.store(true, Ordering::Release);
        self.shared.stop_n.notify_one();
        if let Some(done) = self.done.take() {
            // The sender answers within moments (it only writes a file); the
            // bound guards against a wedged thread at process end.
            match done.recv_timeout(Duration::from_secs(5)) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
        }
        // If the sender died or is wedged, spool what is still in memory here.
        if let Ok(mut q) = self.shared.q.try_lock() {
            let rest = q.mem.take_all();
            drop(q);
            sender::spool_events(&self.shared, rest.iter());
        }
        ShutdownReport {
            delivered_all,
            spooled: left,
            log: self.take_log(),
        }
    }
}

fn same_relay(a: &Config, b: &Config) -> bool {
    a.relay_url == b.relay_url && a.api_key == b.api_key
}

/// One publisher per relay (URL + key) in this process.
pub struct Pool {
    pid: u32,
    publishers: Vec<Publisher>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new()
    }
}

impl Pool {
    /// An empty pool for this process.
    pub fn new() -> Self {
        Pool {
            pid: std::process::id(),
            publishers: Vec::new(),
        }
    }

    /// Returns this process's pool in `slot`. A pool made by another process
    /// (this one is a fork of it) is forgotten, never dropped: its mutexes may
    /// be locked by a thread that does not exist here, and its events are the
    /// parent's to deliver.
    pub fn current(slot: &mut Option<Pool>) -> &mut Pool {
        let pid = std::process::id();
        if let Some(old) = slot.take_if(|p| p.pid != pid) {
            std::mem::forget(old);
        }
        slot.get_or_insert_with(Pool::new)
    }

    /// Whether this pool was made by this process (not inherited through a fork).
    pub fn belongs_to_this_process(&self) -> bool {
        self.pid == std::process::id()
    }

    /// The publisher for `cfg`'s relay, if started.
    pub fn get(&self, cfg: &Config) -> Option<&Publisher> {
        self.publishers.iter().find(|p| same_relay(p.config(), cfg))
    }

    /// The publisher for `cfg`'s relay, started (and the spool claimed) on
    /// first use. Returns warnings for PHP from a fresh start.
    pub fn get_or_start(&mut self, cfg: &Config) -> Result<(&Publisher, Vec<String>), Error> {
        if let Some(i) = self
            .publishers
            .iter()
            .position(|p| same_relay(p.config(), cfg))
        {
            return Ok((&self.publishers[i], Vec::new()));
        }
        let (p, warnings) = Publisher::start(cfg.clone())?;
        self.publishers.push(p);
        let last = self.publishers.len() - 1;
        Ok((&self.publishers[last], warnings))
    }

    /// Every started publisher.
    pub fn publishers(&self) -> &[Publisher] {
        &self.publishers
    }

    /// Waits until every publisher's events are acked, at most `timeout` in all.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.publishers
            .iter()
            .all(|p| p.flush(deadline.saturating_duration_since(Instant::now())))
    }

    /// Process end for every publisher (they wait in parallel).
    pub fn shutdown(&mut self) -> Vec<ShutdownReport> {
        let pubs = std::mem::take(&mut self.publishers);
        std::thread::scope(|s| {
            let handles: Vec<_> = pubs
                .into_iter()
                .map(|mut p| s.spawn(move || p.shutdown()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drained_queue_gives_back_what_a_burst_made_it_grow_to() {
        let mut q = MemQueue::default();
        for n in 0..10_000 {
            q.push_back(Event::new(n.to_string(), "public".into(), "{}".into()));
        }
        assert!(q.events.capacity() >= 10_000);
        let mut popped = 0;
        while q.pop_front().is_some() {
            popped += 1;
        }
        assert_eq!((popped, q.bytes), (10_000, 0));
        assert!(q.events.capacity() <= IDLE_SLOTS, "{}", q.events.capacity());

        for n in 0..10_000 {
            q.push_back(Event::new(n.to_string(), "public".into(), "{}".into()));
        }
        assert_eq!(q.take_all().len(), 10_000);
        assert_eq!(q.events.capacity(), 0);
    }

    #[test]
    fn hand_written_frames_parse_as_the_protocol_says() {
        let text = publish_frame(
            "01JD",
            "user.42",
            "woo.order_paid",
            r#"{"a":[1,"\u00e9/"]}"#,
            Some(7),
        );
        let f = rtet_protocol::frames::parse_publish(&text).unwrap();
        assert_eq!(
            (f.id.as_str(), f.channel.as_str(), f.event.as_str()),
            ("01JD", "user.42", "woo.order_paid")
        );
        assert_eq!(f.data.get(), r#"{"a":[1,"\u00e9/"]}"#);
        assert_eq!(f.ts, Some(7));
        let f = rtet_protocol::frames::parse_publish(&publish_frame("a", "b", "c", "null", None))
            .unwrap();
        assert_eq!((f.data.get(), f.ts), ("null", None));
    }
}
