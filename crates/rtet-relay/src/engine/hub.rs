//! The hub: this node's subscribers per channel, and the fan-out of one
//! encoded event frame to each of their [`Outbox`]es.
//!
//! It knows nothing of where events come from (a broker in another process,
//! pub/sub, a stream): whoever feeds it calls [`Hub::deliver`] for one channel
//! from one place at a time, in `seq` order. Channels are spread over shards,
//! each its own lock, so a hot channel's fan-out does not stall subscribes
//! and deliveries on every other channel.
//!
//! A subscriber with `since` is added *held*: live frames for it are kept
//! aside until its replay has been read (up to some `seq` S), then
//! [`Hub::release`] drops the kept frames with `seq <= S` and queues the
//! rest. From then on it is only ever sent frames with `seq > S`, so no event
//! is both replayed and delivered live, and none falls between the two.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tungstenite::Utf8Bytes;

use super::SubscriberId;
use crate::outbox::{Outbox, Push};
use rtet_protocol::sync::lock;

/// Shards of the channel map: enough that two hot channels rarely share a lock.
const SHARDS: usize = 64;

/// One local subscriber of one channel.
struct Local {
    outbox: Arc<Outbox>,
    /// Frames kept back while the subscriber's replay is read; `None` once released.
    held: Option<Vec<(u64, Utf8Bytes)>>,
    /// The lowest `seq` this subscriber may still be sent (one more than its replay's last).
    floor: u64,
}

type Channels = HashMap<String, HashMap<SubscriberId, Local>>;

/// What a delivery did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fanout {
    /// Subscribers the frame was queued (or held) for.
    pub delivered: usize,
    /// Subscribers whose queue overflowed with it.
    pub overflowed: usize,
}

/// This node's subscribers, sharded by channel.
pub struct Hub {
    shards: Box<[Mutex<Channels>]>,
    subscriptions: AtomicUsize,
    delivered: AtomicU64,
    overflowed: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    /// A hub without subscribers.
    pub fn new() -> Self {
        Hub {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            subscriptions: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
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
            outbox,
            held: Some(Vec::new()),
            floor: 0,
        };
        if subs.insert(id, local).is_none() {
            self.subscriptions.fetch_add(1, Ordering::Relaxed);
        }
        first
    }

    /// Ends the hold: frames with `seq <= replayed_up_to` are dropped (they
    /// are in the replay, or came before it), later ones are queued in order,
    /// and from now on only frames with a larger `seq` reach the subscriber.
    pub fn release(&self, channel: &str, id: SubscriberId, replayed_up_to: u64) {
        let mut shard = lock(self.shard(channel));
        let Some(local) = shard.get_mut(channel).and_then(|s| s.get_mut(&id)) else {
            return;
        };
        local.floor = replayed_up_to.saturating_add(1);
        for (seq, frame) in local.held.take().unwrap_or_default() {
            if seq >= local.floor {
                local.outbox.push(frame);
            }
        }
    }

    /// Removes a subscriber. Returns whether the channel has no local
    /// subscriber left (the node may stop receiving it).
    pub fn remove(&self, channel: &str, id: SubscriberId) -> bool {
        let mut shard = lock(self.shard(channel));
        let Entry::Occupied(mut subs) = shard.entry(channel.to_owned()) else {
            return false;
        };
        if subs.get_mut().remove(&id).is_some() {
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        if subs.get().is_empty() {
            subs.remove();
            true
        } else {
            false
        }
    }

    /// Queues `frame` (the channel's event number `seq`) for every local
    /// subscriber that has not had it yet, without waiting.
    pub fn deliver(&self, channel: &str, seq: u64, frame: &Utf8Bytes) -> Fanout {
        let mut shard = lock(self.shard(channel));
        let mut out = Fanout::default();
        let Some(subs) = shard.get_mut(channel) else {
            return out;
        };
        for local in subs.values_mut() {
            if seq < local.floor {
                continue;
            }
            match &mut local.held {
                Some(held) => {
                    held.push((seq, frame.clone()));
                    if held.len() > local.outbox.capacity() {
                        // It would overflow the queue at release: overflow it now.
                        held.clear();
                        local.outbox.force_overflow();
                        out.overflowed += 1;
                        continue;
                    }
                    out.delivered += 1;
                }
                None => match local.outbox.push(frame.clone()) {
                    Push::Queued => out.delivered += 1,
                    Push::Overflowed => out.overflowed += 1,
                    Push::Dropped => {}
                },
            }
        }
        drop(shard);
        self.delivered
            .fetch_add(out.delivered as u64, Ordering::Relaxed);
        self.overflowed
            .fetch_add(out.overflowed as u64, Ordering::Relaxed);
        out
    }

    /// Frames queued and queues overflowed by [`Hub::deliver`] since the hub was made.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.delivered.load(Ordering::Relaxed),
            self.overflowed.load(Ordering::Relaxed),
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
        for local in subs.values() {
            local.outbox.force_overflow();
        }
        subs.len()
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
        hub.deliver("c", 5, &"5 again".into());
        hub.deliver("c", 7, &"7".into());
        assert_eq!(frames(&q), ["7"], "never below its floor");
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
