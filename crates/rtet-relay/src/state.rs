//! What every connection shares: configuration, the engine, presence, metrics, API
//! keys, rate limiters, connection counts and the shutdown signals.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client_addr::{client_addr, limit_key};
use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::{Metrics, Role, RoleLabel};
use crate::presence::Presence;
use rtet_protocol::sync::lock;

/// A token bucket: `rate` per second sustained, up to `burst` at once.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> Self {
        TokenBucket {
            tokens: f64::from(burst),
            last: Instant::now(),
            rate: f64::from(rate),
            burst: f64::from(burst),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self) -> bool {
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes as many tokens as there are, up to `n` (a budget of bytes to reserve).
    pub fn take_up_to(&mut self, n: usize) -> usize {
        self.refill();
        let taken = self.tokens.max(0.0).min(n as f64).floor();
        self.tokens -= taken;
        taken as usize
    }

    /// Returns `n` reserved tokens that were not used.
    pub fn give_back(&mut self, n: usize) {
        self.tokens = (self.tokens + n as f64).min(self.burst);
    }

    /// Whether the bucket is (nearly) full again, i.e. the client has been quiet.
    pub fn is_full(&mut self) -> bool {
        self.refill();
        self.tokens >= self.burst - 1.0
    }
}

/// One of the configured API keys, as found by [`ApiKeys::find`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId(usize);

impl KeyId {
    /// The key's position in the configuration (0 for the first), for logs.
    pub fn index(self) -> usize {
        self.0
    }
}

/// The API keys, kept as SHA-256 digests and compared in constant time, each
/// with the publish rate budget all its connections share.
pub struct ApiKeys {
    keys: Vec<String>,
    digests: Vec<[u8; 32]>,
    budgets: Vec<Mutex<TokenBucket>>,
}

impl ApiKeys {
    /// Wraps the configured keys; each may publish `rate` events per second.
    pub fn new(keys: &[String], rate: u32) -> Self {
        ApiKeys {
            keys: keys.to_vec(),
            digests: keys
                .iter()
                .map(|k| Sha256::digest(k.as_bytes()).into())
                .collect(),
            budgets: keys
                .iter()
                .map(|_| Mutex::new(TokenBucket::new(rate, rate)))
                .collect(),
        }
    }

    /// The key equal to `presented`. Every key is compared, each in constant
    /// time over fixed-size digests, so timing reveals nothing.
    pub fn find(&self, presented: &str) -> Option<KeyId> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (i, k) in self.digests.iter().enumerate() {
            if bool::from(k.ct_eq(&digest)) && found.is_none() {
                found = Some(KeyId(i));
            }
        }
        found
    }

    /// Takes one publish from the key's rate budget.
    pub fn take_publish(&self, key: KeyId) -> bool {
        // A `KeyId` comes only from `find`, so it indexes an existing budget.
        lock(&self.budgets[key.0]).try_take()
    }

    /// The keys as HS256 secrets for token verification.
    pub fn secrets(&self) -> &[String] {
        &self.keys
    }
}

/// Why a connection was refused before its upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many connections from this IP: answer 429.
    PerIp,
    /// Too many connections in total: answer 503.
    Total,
    /// The engine cannot deliver (its store is unreachable): answer 503 with
    /// `Retry-After`, so a balancer tries another node and a client retries.
    EngineDown,
}

/// Seconds a client refused with [`Refusal::EngineDown`] is asked to wait
/// (`Retry-After`) before it tries this node again.
pub const ENGINE_DOWN_RETRY_AFTER_SECS: u32 = 1;

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::PerIp => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from this address\n",
            )
                .into_response(),
            Refusal::Total => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay is at its connection limit\n",
            )
                .into_response(),
            Refusal::EngineDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(
                    header::RETRY_AFTER,
                    ENGINE_DOWN_RETRY_AFTER_SECS.to_string(),
                )],
                "the relay cannot deliver: its engine is unavailable; retry soon\n",
            )
                .into_response(),
        }
    }
}

/// State shared by every connection and request.
pub struct Relay {
    /// The configuration.
    pub config: Config,
    /// Fan-out and history.
    pub engine: Arc<dyn Engine>,
    /// Who is subscribed where (members and counts): this node's
    /// subscribers, shown with the other nodes' when the engine shares presence.
    pub presence: Presence,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// API keys and their publish rate budgets.
    pub keys: ApiKeys,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Replay bytes each client address may still be sent (see [`Relay::reserve_replay`]).
    replay_per_ip: Mutex<HashMap<IpAddr, TokenBucket>>,
    total: AtomicUsize,
    next_id: AtomicU64,
    /// Publisher connections, awaited first at shutdown.
    pub publishers: TaskTracker,
    /// Subscriber connections, closed after the publishers.
    pub subscribers: TaskTracker,
    /// Plain HTTP connections (requests in flight).
    pub http: TaskTracker,
    /// Cancelled when the relay stops accepting.
    pub stop_accepting: CancellationToken,
    /// Cancelled to make publishers answer what they have read and close.
    pub stop_publishers: CancellationToken,
    /// Cancelled to close subscribers with 1001.
    pub stop_subscribers: CancellationToken,
}

impl Relay {
    /// Shared state for `config` and `engine`.
    pub fn new(config: Config, engine: Arc<dyn Engine>) -> Self {
        Relay {
            keys: ApiKeys::new(&config.api_keys, config.limits.publishes_per_sec_per_key),
            presence: if engine.shares_presence() {
                Presence::shared(config.limits.max_presence_members)
            } else {
                Presence::new(config.limits.max_presence_members)
            },
            config,
            metrics: Metrics::new(engine.stores_locally()),
            engine,
            per_ip: Mutex::new(HashMap::new()),
            replay_per_ip: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            publishers: TaskTracker::new(),
            subscribers: TaskTracker::new(),
            http: TaskTracker::new(),
            stop_accepting: CancellationToken::new(),
            stop_publishers: CancellationToken::new(),
            stop_subscribers: CancellationToken::new(),
        }
    }

    /// A new connection id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The API key in an `Authorization: Bearer` header, if it is one of ours.
    pub fn bearer_key(&self, headers: &HeaderMap) -> Option<KeyId> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let (scheme, key) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        self.keys.find(key.trim())
    }

    /// The client's IP: the TCP peer, or whom a trusted proxy forwarded for
    /// (see [`client_addr`](crate::client_addr::client_addr)).
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        client_addr(peer.ip(), headers, &self.config.trusted_proxies)
    }

    /// Reserves up to `want` bytes of replay from the client address's
    /// budget (per /64 for IPv6, like the connection limit) and returns how
    /// many it got. Every connection from one address shares this, so
    /// opening more connections does not buy more history; the budget
    /// outlives the connections until it has refilled, so reconnecting does
    /// not either. Give back what the replay did not use.
    pub fn reserve_replay(&self, ip: IpAddr, want: usize) -> usize {
        let per_minute = self.config.replay_bytes_per_ip;
        lock(&self.replay_per_ip)
            .entry(limit_key(ip))
            .or_insert_with(|| replay_bucket(per_minute))
            .take_up_to(want)
    }

    /// Returns replay bytes reserved with [`Relay::reserve_replay`] and not sent.
    pub fn give_back_replay(&self, ip: IpAddr, unused: usize) {
        if let Some(bucket) = lock(&self.replay_per_ip).get_mut(&limit_key(ip)) {
            bucket.give_back(unused);
        }
    }

    /// Forgets the replay budgets that have refilled (housekeeping), so the
    /// map holds only addresses that replayed within the last minute or so.
    pub fn forget_refilled_replay_budgets(&self) {
        lock(&self.replay_per_ip).retain(|_, bucket| !bucket.is_full());
    }

    /// Refuses a WebSocket upgrade while the engine cannot deliver, so a
    /// passive balancer (`proxy_next_upstream http_503`) moves the client to
    /// a node that can. Connections already open stay: they get what the
    /// engine delivers once it is back.
    pub fn engine_ready(&self) -> Result<(), Refusal> {
        if self.engine.is_up() {
            Ok(())
        } else {
            self.metrics.refused("engine_down");
            Err(Refusal::EngineDown)
        }
    }

    /// Counts a new WebSocket connection, or refuses it when a limit is reached.
    /// IPv6 clients count per /64 ([`limit_key`]).
    pub fn admit(self: &Arc<Self>, ip: IpAddr, role: Role) -> Result<ConnGuard, Refusal> {
        let ip = limit_key(ip);
        {
            let mut per_ip = lock(&self.per_ip);
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= self.config.limits.connections_per_ip {
                self.metrics.refused("per_ip");
                return Err(Refusal::PerIp);
            }
            if self.total.fetch_add(1, Ordering::AcqRel) >= self.config.max_connections {
                self.total.fetch_sub(1, Ordering::AcqRel);
                self.metrics.refused("max_connections");
                return Err(Refusal::Total);
            }
            *n += 1;
        }
        self.metrics
            .connections
            .get_or_create(&RoleLabel { role })
            .inc();
        Ok(ConnGuard {
            relay: Arc::clone(self),
            ip,
            role,
        })
    }
}

/// A replay budget of `per_minute` bytes: all of it at once, refilled over a minute.
pub fn replay_bucket(per_minute: usize) -> TokenBucket {
    let burst = u32::try_from(per_minute).unwrap_or(u32::MAX);
    TokenBucket::new((burst / 60).max(1), burst)
}

/// Holds a connection's place in the counts; releases it when dropped.
pub struct ConnGuard {
    relay: Arc<Relay>,
    ip: IpAddr,
    role: Role,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut per_ip = lock(&self.relay.per_ip);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        self.relay.total.fetch_sub(1, Ordering::AcqRel);
        self.relay
            .metrics
            .connections
            .get_or_create(&RoleLabel { role: self.role })
            .dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_refuses_others() {
        let keys = ApiKeys::new(&["a".repeat(32), "b".repeat(40)], 1);
        assert_eq!(keys.find(&"a".repeat(32)).map(KeyId::index), Some(0));
        assert_eq!(keys.find(&"b".repeat(40)).map(KeyId::index), Some(1));
        assert_eq!(keys.find(&"a".repeat(31)), None);
        assert_eq!(keys.find(""), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_byte_budget_reserves_what_is_left_and_takes_back_what_was_not_used() {
        let mut b = replay_bucket(6_000);
        assert_eq!(b.take_up_to(4_000), 4_000);
        assert_eq!(b.take_up_to(4_000), 2_000, "only what is left");
        assert_eq!(b.take_up_to(1), 0);
        b.give_back(1_500);
        assert_eq!(b.take_up_to(4_000), 1_500);
        tokio::time::advance(std::time::Duration::from_secs(30)).await;
        assert_eq!(b.take_up_to(6_000), 3_000, "half a minute refills half");
        b.give_back(1_000_000);
        assert!(b.is_full(), "never more than the budget");
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_burst_then_rate() {
        let mut b = TokenBucket::new(2, 3);
        assert!(b.try_take() && b.try_take() && b.try_take());
        assert!(!b.try_take());
        tokio::time::advance(std::time::Duration::from_millis(500)).await;
        assert!(b.try_take());
        assert!(!b.try_take());
    }
}
