//! The engine: per-channel sequence numbers, history, dedupe and fan-out,
//! behind one small trait so that storage can change without touching the
//! connection code.
//!
//! [`MemoryEngine`] keeps everything in this process; its channel lock is
//! also its fan-out, so a publish is queued to every subscriber before the
//! next one on the channel gets its `seq`. [`RedisEngine`] lets several
//! relay nodes serve one site: Redis holds `seq`, `epoch`, history and dedupe
//! (the broker), and each node keeps its own subscribers in a [`Hub`], fed
//! by Redis pub/sub. That is why every call is async and takes owned values,
//! and why the engine, not the connection, decides `seq`, `epoch` and `recovered`.

pub mod hub;
mod memory;
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rtet_protocol::{ErrorCode, PublishFrame, Since};
use thiserror::Error;
use tungstenite::Utf8Bytes;

pub use self::redis::{RedisEngine, RedisEngineConfig};
pub use hub::Hub;
pub use memory::{MemoryEngine, MemoryEngineConfig};

use crate::outbox::Outbox;

/// A boxed future, so the trait can be used as `dyn Engine`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Identifies one subscriber connection inside the engine.
pub type SubscriberId = u64;

/// The result of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The event's `seq` in its channel (the original one for a duplicate).
    pub seq: u64,
    /// The (channel, id) pair was seen within the dedupe window; nothing was delivered.
    pub duplicate: bool,
}

/// The result of a subscribe: what to answer, and what to replay first.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The channel's current epoch.
    pub epoch: String,
    /// The channel's latest `seq` at the moment of subscribing.
    pub seq: u64,
    /// Whether every event after `since` is in `replay`.
    pub recovered: bool,
    /// Encoded `event` frames to send before any live event, in `seq` order.
    pub replay: Vec<Utf8Bytes>,
    /// History held every event after `since`, but more bytes of them than
    /// the subscriber may be sent: `recovered` is false and nothing is replayed.
    pub replay_cut: bool,
}

/// One channel's history, for inspection (metrics, tests, tools).
#[derive(Debug, Clone)]
pub struct History {
    /// The channel's epoch.
    pub epoch: String,
    /// Its latest `seq`.
    pub seq: u64,
    /// The encoded events it still holds, oldest first.
    pub events: Vec<Utf8Bytes>,
}

/// A fresh random epoch: 12 characters of `[A-Za-z0-9]`.
pub(crate) fn new_epoch() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 12)
}

/// Failed operations of an engine with a backing store, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineErrors {
    /// Publishes refused because the store failed.
    pub publish: u64,
    /// Subscribes refused because the store failed.
    pub subscribe: u64,
    /// History reads that failed.
    pub history: u64,
    /// Losses of the pub/sub connection and gaps that could not be read.
    pub pubsub: u64,
    /// Health checks and housekeeping that failed.
    pub maintain: u64,
    /// Replies from the store that did not parse or were over a size bound.
    pub corrupt: u64,
}

impl EngineErrors {
    /// Each count with its `op` label, as `/metrics` shows them.
    pub fn by_op(&self) -> [(&'static str, u64); 6] {
        [
            ("publish", self.publish),
            ("subscribe", self.subscribe),
            ("history", self.history),
            ("pubsub", self.pubsub),
            ("maintain", self.maintain),
            ("corrupt", self.corrupt),
        ]
    }
}

/// Totals over all channels, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Channels held.
    pub channels: usize,
    /// Events in all histories.
    pub history_events: usize,
    /// Bytes of encoded events in all histories.
    pub history_bytes: usize,
    /// Subscriptions over all channels.
    pub subscriptions: usize,
    /// Remembered (channel, id) pairs over all channels.
    pub dedupe_entries: usize,
    /// The backing store cannot be reached: publishes are refused, `/healthz` answers 503.
    pub down: bool,
    /// Event frames the engine's hub handed to subscribers (written or
    /// queued), since it started. Counted there rather than per publish: the
    /// fan-out finishes after the publish is answered, and on Redis it feeds
    /// events from every node.
    pub fed_deliveries: u64,
    /// Subscribers whose queue overflowed with such a frame, since it started.
    pub fed_overflows: u64,
    /// Failed operations of the backing store.
    pub errors: EngineErrors,
}

/// Why the engine refused a request. Each is a global budget that frees
/// itself as history ages out, dedupe entries pass their window and idle
/// channels are forgotten, so each is answered `rate_limited` (HTTP 429):
/// "retry later", never "invalid".
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineError {
    /// The channel does not exist and the relay already holds its maximum of channels.
    #[error("the relay holds its maximum of {max} channels; retry later")]
    TooManyChannels { max: usize },
    /// All channels' history together holds its maximum of bytes.
    #[error("the relay's history holds its maximum of {max} bytes; retry later")]
    HistoryFull { max: usize },
    /// The dedupe window holds its maximum of (channel, id) pairs.
    #[error("the relay remembers its maximum of {max} event ids; retry later")]
    DedupeFull { max: usize },
    /// The backing store failed (not possible in memory); the client retries later.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
}

impl EngineError {
    /// The protocol code to answer with: `rate_limited`, "try again later" (HTTP 429).
    pub fn code(&self) -> ErrorCode {
        ErrorCode::RateLimited
    }

    /// The budget that is spent, as `/metrics` names it (none for a store that is down).
    pub fn budget(&self) -> Option<&'static str> {
        match self {
            EngineError::TooManyChannels { .. } => Some("channels"),
            EngineError::HistoryFull { .. } => Some("history_bytes"),
            EngineError::DedupeFull { .. } => Some("dedupe_entries"),
            EngineError::Unavailable(_) => None,
        }
    }
}

/// This node's part of one channel's presence, as it shares it with the other nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPresence {
    /// The channel.
    pub channel: String,
    /// The members (`sub`, encoded `info`) with a subscription on this node.
    pub members: Vec<(String, String)>,
    /// The other subscriptions on this node.
    pub anonymous: usize,
    /// The part is as last written: only its expiry is renewed (members
    /// and anonymous are not sent).
    pub unchanged: bool,
}

/// One channel's presence over every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPresence {
    /// The members (`sub`, `info`), sorted by `sub`; none when there are
    /// more than the cap the store was asked for.
    pub members: Option<Vec<rtet_protocol::Member>>,
    /// Distinct members (users).
    pub member_count: usize,
    /// The other subscriptions, summed over the nodes.
    pub anonymous: usize,
    /// The store did not hold this node's part, though it was sent as
    /// unchanged (the store lost it): it is to be written whole again.
    pub lost: bool,
}

/// Fan-out and history for every channel.
pub trait Engine: Send + Sync + 'static {
    /// Stores the event (assigning the next `seq`, unless (channel, id) is a
    /// duplicate) and queues it for every subscriber of the channel. Events
    /// published one after another get increasing `seq` in that order.
    /// `ts` is the event's time in milliseconds, already defaulted by the caller.
    fn publish<'a>(
        &'a self,
        event: &'a PublishFrame,
        ts: u64,
    ) -> BoxFuture<'a, Result<Published, EngineError>>;

    /// Registers `outbox` for the channel's live events and returns what to
    /// replay after `since`. No event is both replayed and queued, and none
    /// falls between the two. A replay is all or nothing: when the events
    /// after `since` come to more than `max_replay_bytes`, none is replayed
    /// and `recovered` is false (the client refetches, as for lost history).
    fn subscribe(
        &self,
        channel: String,
        since: Option<Since>,
        subscriber: SubscriberId,
        outbox: Arc<Outbox>,
        max_replay_bytes: usize,
    ) -> BoxFuture<'_, Result<Subscription, EngineError>>;

    /// Stops queueing the channel's events for this subscriber.
    fn unsubscribe(&self, channel: String, subscriber: SubscriberId) -> BoxFuture<'_, ()>;

    /// The channel's history, if the channel exists.
    fn history(&self, channel: String) -> BoxFuture<'_, Option<History>>;

    /// Totals for `/metrics`.
    fn stats(&self) -> EngineStats;

    /// Periodic housekeeping: drop aged history and dedupe entries, forget
    /// channels that hold nothing.
    fn maintain(&self);

    /// Whether the engine can deliver: its backing store (if any) answers.
    /// A node that cannot must not look healthy to a load balancer.
    fn is_up(&self) -> bool {
        true
    }

    /// Resolves once every event this node acked so far has been handed to
    /// this node's subscribers (written to their sockets or queued).
    /// Shutdown waits for it before closing subscribers.
    fn settle(&self) -> BoxFuture<'_, ()>;

    /// Whether history and dedupe records live in this process (their totals
    /// in [`EngineStats`] mean something); on a shared store they live there,
    /// and the store's own tools measure them.
    fn stores_locally(&self) -> bool {
        true
    }

    /// Whether presence is shared with other nodes through this engine's
    /// store ([`Engine::sync_presence`]); otherwise it is this node's alone.
    fn shares_presence(&self) -> bool {
        false
    }

    /// Writes this node's part of each channel's presence (an empty part
    /// withdraws it) and reads back each channel's presence over every node,
    /// in the same order, listing at most `cap` members. Only called when
    /// [`Engine::shares_presence`].
    fn sync_presence(
        &self,
        _local: Vec<LocalPresence>,
        _cap: usize,
    ) -> BoxFuture<'_, Result<Vec<SharedPresence>, EngineError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}
