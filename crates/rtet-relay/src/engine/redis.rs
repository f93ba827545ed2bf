//! The Redis engine: several relay nodes share one Redis, which holds each
//! channel's `epoch`, `seq`, history and dedupe records; each node keeps its
//! own subscribers in a [`Hub`] and receives, over Redis pub/sub, only the
//! channels it has local subscribers for.
//!
//! The client is redis-rs (crate `redis`): the most used Rust client, kept
//! by the Redis organisation, with a tokio connection manager that
//! reconnects by itself and multiplexes concurrent commands on one
//! connection, Lua scripts run by SHA, a pub/sub connection that can be
//! split into a sink and a stream, and TLS through rustls (the TLS stack the
//! relay already uses). It speaks RESP for us.
//!
//! Layout, one hash tag per channel so that every key of a channel lands in
//! one Redis Cluster slot:
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `rtet:{CHANNEL}:meta` | hash | `epoch`, `seq` |
//! | `rtet:{CHANNEL}:stream` | stream | the history: entry id `SEQ-0`, fields `f` (the encoded event) and `t` (ms) |
//! | `rtet:{CHANNEL}:dedupe:ID` | string | the `seq` an event id got, for the dedupe window |
//! | `rtet:{CHANNEL}:live` | pub/sub channel | `EPOCH:SEQ:FRAME` for every stored event |
//! | `rtet:{CHANNEL}:presence` | sorted set | the nodes with a part in the channel's presence, scored by when that part expires (ms) |
//! | `rtet:{CHANNEL}:presence:NODE` | hash | one node's part: `sub` → encoded `info` per member, and `""` → its anonymous count |
//!
//! Each node holds three connections: commands (the connection manager),
//! pub/sub, and one for publishes only, which the publish worker owns and
//! reconnects itself, so that pipelines sent one after another run in that
//! order (see `publish_worker`).
//!
//! One publish is one Lua script ([`PUBLISH_SCRIPT`]), so `seq`, history,
//! dedupe and the pub/sub message agree. The meta hash and stream expire
//! after the longer of the history age and dedupe window without a publish
//! (a node with local subscribers refreshes them), so idle channels vanish;
//! a channel that comes back gets a new epoch.
//!
//! Presence ([`PRESENCE_SCRIPT`]): every presence tick each node writes
//! its part of every channel it has presence in (whole when it changed,
//! else it renews the part's expiry of [`PRESENCE_EXPIRY`]) and reads back
//! the union of the parts that have not expired. A node that dies without withdrawing its part (killed, cut off)
//! drops out of every channel's presence after that expiry.
//!
//! Every reply is treated as hostile: sizes are bounded, anything that does
//! not parse is counted as an error and never panics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use redis::Value;
use rtet_protocol::frames::encode_event;
use rtet_protocol::{Member, MemberInfo, PublishFrame, Since};
use tokio::sync::{mpsc, oneshot};
use tungstenite::Utf8Bytes;

use super::hub::Hub;
use super::{
    new_epoch, BoxFuture, Engine, EngineError, EngineErrors, EngineStats, History, LocalPresence,
    Published, SharedPresence, SubscriberId, Subscription,
};
use crate::config::{Config, RedisUrl};
use crate::outbox::Outbox;
use rtet_protocol::sync::lock;

/// Publishes sent to Redis in one pipeline at most.
const BATCH: usize = 512;

/// Pipelines of publishes sent and not yet answered, at most. Publishes that
/// arrive while pipelines are out go at once in the next one, so an event
/// waits for no earlier round trip; beyond this many, they wait (bounding the
/// answers this node has to hold).
const PIPELINES_IN_FLIGHT: usize = 64;

/// Events read from a stream in one command at most (a gap, a catch-up).
const READ_MAX: usize = 10_000;

/// How long one command may take before it counts as failed.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest wait between two attempts to reconnect pub/sub.
const RECONNECT_MAX: Duration = Duration::from_secs(1);

/// Stores one event and announces it; see the module docs for the keys.
///
/// KEYS: meta, stream, dedupe. ARGV: live channel, a fresh epoch, history
/// size, key lifetime (ms), dedupe window (ms), now (ms), the encoded event
/// before its seq, the encoded event after it.
/// Returns `{seq, duplicate (0/1)}`.
pub const PUBLISH_SCRIPT: &str = r#"
local meta, stream, dedupe = KEYS[1], KEYS[2], KEYS[3]
local old = redis.call('GET', dedupe)
if old then return {tonumber(old), 1} end
if redis.call('HSETNX', meta, 'epoch', ARGV[2]) == 1 then redis.call('DEL', stream) end
local epoch = redis.call('HGET', meta, 'epoch')
local seq = redis.call('HINCRBY', meta, 'seq', 1)
local frame = ARGV[7] .. seq .. ARGV[8]
local keep = tonumber(ARGV[3])
if keep > 0 then
  local added = redis.pcall('XADD', stream, 'MAXLEN', keep, seq .. '-0', 'f', frame, 't', ARGV[6])
  if type(added) == 'table' and added.err then
    -- The stream is ahead of the meta hash (it was tampered with): history starts again here.
    redis.call('DEL', stream)
    redis.call('XADD', stream, 'MAXLEN', keep, seq .. '-0', 'f', frame, 't', ARGV[6])
  end
  redis.call('PEXPIRE', stream, ARGV[4])
end
redis.call('SET', dedupe, seq, 'PX', ARGV[5])
redis.call('PEXPIRE', meta, ARGV[4])
redis.call('PUBLISH', ARGV[1], epoch .. ':' .. seq .. ':' .. frame)
return {seq, 0}
"#;

/// The channel's epoch (created if missing) and `seq`, and its history after
/// a `seq`, read at one instant.
///
/// KEYS: meta, stream. ARGV: a fresh epoch, key lifetime (ms), the `seq`
/// after which to read (-1: read nothing), entries to read at most.
/// Returns `{epoch, seq, entries}`.
pub const SNAPSHOT_SCRIPT: &str = r#"
local meta, stream = KEYS[1], KEYS[2]
if redis.call('HSETNX', meta, 'epoch', ARGV[1]) == 1 then
  redis.call('DEL', stream)
  redis.call('PEXPIRE', meta, ARGV[2])
end
local epoch = redis.call('HGET', meta, 'epoch')
local seq = tonumber(redis.call('HGET', meta, 'seq') or '0')
local after = tonumber(ARGV[3])
local entries = {}
if after >= 0 and after < seq then
  entries = redis.call('XRANGE', stream, (after + 1) .. '-0', '+', 'COUNT', ARGV[4])
end
return {epoch, seq, entries}
"#;

/// How long a node's part of a channel's presence outlives its last
/// write or renewal: a node renews it every presence tick, so only a node that
/// stopped (killed, cut off from Redis) lets it expire.
pub const PRESENCE_EXPIRY: Duration = Duration::from_secs(5);

/// Rewrites this node's part of one channel's presence and reads the
/// channel's presence over every node whose part has not expired.
///
/// KEYS: the channel's presence sorted set. ARGV: the key prefix of the
/// parts (`rtet:{CHANNEL}:presence:`), this node's id, now (ms), the expiry
/// (ms), members to list at most, `keep` (only renew the part's expiry) or
/// this node's anonymous count followed by `sub`, encoded `info` per member
/// of this node. The parts' keys share the channel's hash tag, so they live
/// in the sorted set's cluster slot.
/// Returns `{member_count, anonymous, listed (0/1), lost (0/1), sub, info, ...}`,
/// `lost` when a part to keep was not there.
pub const PRESENCE_SCRIPT: &str = r#"
local nodes, prefix, node = KEYS[1], ARGV[1], ARGV[2]
local now, expiry, cap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local mine = prefix .. node
local lost = 0
if ARGV[6] == 'keep' then
  if redis.call('PEXPIRE', mine, expiry) == 1 then
    redis.call('ZADD', nodes, now + expiry, node)
  else
    lost = 1
  end
elseif #ARGV > 6 or tonumber(ARGV[6]) > 0 then
  redis.call('DEL', mine)
  redis.call('HSET', mine, '', ARGV[6])
  for i = 7, #ARGV, 2 do redis.call('HSET', mine, ARGV[i], ARGV[i + 1]) end
  redis.call('PEXPIRE', mine, expiry)
  redis.call('ZADD', nodes, now + expiry, node)
else
  redis.call('DEL', mine)
  redis.call('ZREM', nodes, node)
end
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', nodes, '-inf', now)) do
  redis.call('DEL', prefix .. gone)
end
redis.call('ZREMRANGEBYSCORE', nodes, '-inf', now)
if redis.call('ZCARD', nodes) > 0 then redis.call('PEXPIRE', nodes, expiry) end
local members, count, anonymous = {}, 0, 0
for _, n in ipairs(redis.call('ZRANGE', nodes, 0, -1)) do
  local part = redis.call('HGETALL', prefix .. n)
  for i = 1, #part, 2 do
    if part[i] == '' then
      anonymous = anonymous + (tonumber(part[i + 1]) or 0)
    elseif members[part[i]] == nil then
      members[part[i]] = part[i + 1]
      count = count + 1
    end
  end
end
local out = {count, anonymous, 0, lost}
if count <= cap then
  out[3] = 1
  for sub, info in pairs(members) do
    out[#out + 1] = sub
    out[#out + 1] = info
  end
end
return out
"#;

/// The longest `sub` read back from presence (a token's `sub` is bounded by
/// the token's size; anything longer was not written by a relay).
const MAX_SUB_BYTES: usize = 4096;

/// Bounds and lifetimes of the Redis engine, taken from the relay's [`Config`].
#[derive(Debug, Clone)]
pub struct RedisEngineConfig {
    /// Events kept per channel.
    pub history_events: usize,
    /// Age after which an event is no longer replayed.
    pub history_age: Duration,
    /// How long an acked (channel, id) is remembered.
    pub dedupe_window: Duration,
    /// The largest encoded event Redis may hand back (larger ones are refused as corrupt).
    pub max_event_bytes: usize,
}

impl From<&Config> for RedisEngineConfig {
    fn from(config: &Config) -> Self {
        RedisEngineConfig {
            history_events: config.limits.history_events,
            history_age: config.limits.history_age,
            dedupe_window: config.limits.dedupe_window,
            // The frame limit bounds the data; names, seq and ts add less than 1 KiB.
            max_event_bytes: config.limits.max_frame_bytes.saturating_add(1024),
        }
    }
}

fn meta_key(channel: &str) -> String {
    format!("rtet:{{{channel}}}:meta")
}
fn stream_key(channel: &str) -> String {
    format!("rtet:{{{channel}}}:stream")
}
fn dedupe_key(channel: &str, id: &str) -> String {
    format!("rtet:{{{channel}}}:dedupe:{id}")
}
fn presence_key(channel: &str) -> String {
    format!("rtet:{{{channel}}}:presence")
}
fn presence_part_prefix(channel: &str) -> String {
    format!("rtet:{{{channel}}}:presence:")
}
fn live_name(channel: &str) -> String {
    format!("rtet:{{{channel}}}:live")
}
/// The channel a pub/sub name belongs to.
fn channel_of_live(name: &str) -> Option<&str> {
    name.strip_prefix("rtet:{")?.strip_suffix("}:live")
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    rtet_protocol::clock::unix_ms()
}

/// Errors per operation, for `rtet_engine_errors_total{op}`.
#[derive(Default)]
struct ErrorCounts {
    publish: AtomicU64,
    subscribe: AtomicU64,
    history: AtomicU64,
    pubsub: AtomicU64,
    maintain: AtomicU64,
    corrupt: AtomicU64,
}

/// The last event delivered to this node's hub for a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    epoch: String,
    seq: u64,
}

/// One publish waiting for its turn in a pipeline.
struct Queued {
    channel: String,
    id: String,
    prefix: String,
    suffix: String,
    done: oneshot::Sender<Result<Published, EngineError>>,
}

struct Inner {
    config: RedisEngineConfig,
    client: redis::Client,
    conn: ConnectionManager,
    hub: Hub,
    publish_script: redis::Script,
    snapshot_script: redis::Script,
    presence_script: redis::Script,
    /// This node's name in presence (random, fresh at every start).
    node: String,
    /// The pub/sub connection's command half; none while it is down.
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    /// Per channel, the last event handed to the hub.
    cursors: Mutex<HashMap<String, Cursor>>,
    commands_up: AtomicBool,
    pubsub_up: AtomicBool,
    /// Woken when commands or pub/sub come up.
    came_up: tokio::sync::Notify,
    /// Per channel with local subscribers, the highest `seq` this node acked
    /// that has not reached the hub yet.
    acked: Mutex<HashMap<String, u64>>,
    /// Woken when the hub was handed events.
    fed: tokio::sync::Notify,
    errors: ErrorCounts,
}

/// Channels' history and dedupe in Redis, fan-out through this node's [`Hub`].
pub struct RedisEngine {
    inner: Arc<Inner>,
    queue: mpsc::UnboundedSender<Queued>,
}

impl RedisEngine {
    /// An engine on the Redis at `url`. It connects in the background and
    /// keeps reconnecting: a Redis that is down makes the engine unhealthy,
    /// not the relay fail to start. Must be called inside a tokio runtime.
    pub fn new(url: &RedisUrl, config: RedisEngineConfig) -> Result<RedisEngine, EngineError> {
        let client = redis::Client::open(url.expose())
            .map_err(|_| EngineError::Unavailable(format!("{url} is not a usable Redis URL")))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(RECONNECT_MAX);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(|e| EngineError::Unavailable(format!("Redis client: {e}")))?;
        let inner = Arc::new(Inner {
            config,
            client,
            conn,
            hub: Hub::new(),
            publish_script: redis::Script::new(PUBLISH_SCRIPT),
            snapshot_script: redis::Script::new(SNAPSHOT_SCRIPT),
            presence_script: redis::Script::new(PRESENCE_SCRIPT),
            node: new_epoch(),
            sink: tokio::sync::Mutex::new(None),
            cursors: Mutex::new(HashMap::new()),
            commands_up: AtomicBool::new(false),
            pubsub_up: AtomicBool::new(false),
            came_up: tokio::sync::Notify::new(),
            acked: Mutex::new(HashMap::new()),
            fed: tokio::sync::Notify::new(),
            errors: ErrorCounts::default(),
        });
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(publish_worker(Arc::clone(&inner), rx));
        tokio::spawn(feed(Arc::clone(&inner)));
        tokio::spawn({
            let inner = Arc::clone(&inner);
            async move { inner.check().await }
        });
        Ok(RedisEngine { inner, queue })
    }

    /// [`RedisEngine::new`], then waits (at most the connect timeout) for
    /// Redis to answer commands and pub/sub, so a node that starts next to
    /// a running Redis is healthy from its first request.
    pub async fn connect(
        url: &RedisUrl,
        config: RedisEngineConfig,
    ) -> Result<RedisEngine, EngineError> {
        let engine = RedisEngine::new(url, config)?;
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, async {
            while !engine.is_up() {
                let woken = engine.inner.came_up.notified();
                if engine.is_up() {
                    break;
                }
                woken.await;
            }
        })
        .await;
        Ok(engine)
    }
}

/// Splits an encoded event around its `seq`, so the script can put the
/// number it assigns in between without decoding anything.
fn split_frame(event: &PublishFrame, ts: u64) -> (String, String) {
    let frame = encode_event(&event.channel, 0, &event.id, &event.event, &event.data, ts);
    // The channel is a quoted name without quotes, so the first `,"seq":0,` is the field.
    let marker = ",\"seq\":0,";
    let at = frame.find(marker).expect("an encoded event has a seq");
    let prefix = frame[..at + marker.len() - 2].to_owned();
    let suffix = frame[at + marker.len() - 1..].to_owned();
    (prefix, suffix)
}

/// Loads `script` into Redis's script cache, through `conn` (so it comes
/// after everything already sent on it).
async fn load_script(
    conn: &mut impl redis::aio::ConnectionLike,
    script: &str,
) -> redis::RedisResult<()> {
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(script)
        .query_async::<String>(conn)
        .await
        .map(drop)
}

/// Whether `replies` say Redis no longer had a script cached (it restarted,
/// or its script cache was flushed): then that script ran for none of them.
fn lost_script(replies: &[Value]) -> bool {
    replies
        .iter()
        .any(|v| matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT"))
}

fn unavailable(e: &redis::RedisError) -> EngineError {
    EngineError::Unavailable(format!("Redis: {}", e.category()))
}

fn corrupt(what: &str) -> EngineError {
    EngineError::Unavailable(format!("Redis answered something unexpected ({what})"))
}

/// Takes the queued publishes in order, sends them as pipelines of
/// `EVALSHA`s on a connection of its own (many events per round trip, and
/// up to [`PIPELINES_IN_FLIGHT`] round trips at once), and answers each
/// publish in the order it was queued.
///
/// Order: Redis runs what one connection sends in the order sent, and a
/// pipeline is sent (handed to the connection's writer) on the first poll
/// of its request, which this worker makes before it builds the next one.
/// A reconnect happens only here, with nothing else being sent, so no
/// pipeline can overtake another on a new connection.
async fn publish_worker(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Queued>) {
    use futures_util::stream::FuturesOrdered;
    type Sent = BoxFuture<'static, (Vec<Queued>, redis::RedisResult<Vec<Value>>)>;
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut in_flight: FuturesOrdered<Sent> = FuturesOrdered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        let mut batch = Vec::with_capacity(BATCH);
        tokio::select! {
            biased;
            Some((batch, replies)) = in_flight.next() => {
                let alone = in_flight.is_empty();
                let results = inner.answer_batch(&batch, replies, &mut conn, alone).await;
                for (queued, result) in batch.into_iter().zip(results) {
                    let _ = queued.done.send(result);
                }
            }
            // A lost connection's pipelines are answered (they fail) before
            // anything is sent on a new one, so none can overtake them;
            // publishes queued meanwhile wait for the new connection.
            n = rx.recv_many(&mut batch, BATCH),
                if open && in_flight.len() < PIPELINES_IN_FLIGHT && (conn.is_some() || in_flight.is_empty()) => {
                if n == 0 {
                    open = false;
                    continue;
                }
                if conn.is_none() {
                    conn = inner.publish_connection().await;
                }
                let Some(c) = conn.clone() else {
                    let e = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::NotConnected));
                    inner.publish_failed(batch.len());
                    for queued in batch {
                        let _ = queued.done.send(Err(unavailable(&e)));
                    }
                    continue;
                };
                let mut sent: Sent = Box::pin(inner.send_batch(c, batch));
                // The first poll hands the pipeline to the connection's writer.
                let first = std::future::poll_fn(|cx| std::task::Poll::Ready(sent.as_mut().poll(cx))).await;
                match first {
                    std::task::Poll::Ready(done) => in_flight.push_back(Box::pin(std::future::ready(done))),
                    std::task::Poll::Pending => in_flight.push_back(sent),
                }
            }
        }
    }
}

impl Inner {
    /// Whether `replies` say Redis no longer has `script` cached (it restarted,
    /// or its script cache was flushed) and loading it again worked, so the
    /// caller may send its pipeline once more.
    async fn reloaded_after_noscript(&self, replies: &[Value], script: &str) -> bool {
        if !lost_script(replies) {
            return false;
        }
        let mut conn = self.conn.clone();
        load_script(&mut conn, script).await.is_ok()
    }

    fn key_lifetime_ms(&self) -> u64 {
        let c = &self.config;
        c.history_age.max(c.dedupe_window).as_millis() as u64
    }

    fn set_commands_up(&self, up: bool) {
        let was = self.commands_up.swap(up, Ordering::Relaxed);
        if up {
            self.came_up.notify_waiters();
        }
        if was != up {
            if up {
                tracing::info!("Redis engine: commands answered");
            } else {
                tracing::warn!("Redis engine: Redis unreachable");
            }
        }
    }

    /// A connection for publishes only, or none if Redis cannot be reached.
    async fn publish_connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_pipeline_buffer_size(PIPELINES_IN_FLIGHT + 2);
        match self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(mut c) => match load_script(&mut c, PUBLISH_SCRIPT).await {
                Ok(()) => Some(c),
                Err(e) => {
                    tracing::debug!(error = %e, "Redis engine: loading the publish script");
                    self.set_commands_up(false);
                    None
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "Redis engine: publish connection");
                self.set_commands_up(false);
                None
            }
        }
    }

    fn publish_failed(&self, events: usize) {
        self.set_commands_up(false);
        self.errors
            .publish
            .fetch_add(events as u64, Ordering::Relaxed);
    }

    /// Sends one pipeline of publishes; the batch comes back with the replies.
    fn send_batch(
        self: &Arc<Self>,
        mut conn: redis::aio::MultiplexedConnection,
        batch: Vec<Queued>,
    ) -> impl std::future::Future<Output = (Vec<Queued>, redis::RedisResult<Vec<Value>>)> + Send + 'static
    {
        let pipe = self.publish_pipeline(&batch);
        async move {
            let replies = pipe.query_async(&mut conn).await;
            (batch, replies)
        }
    }

    /// One `EVALSHA` of the publish script per queued publish.
    fn publish_pipeline(&self, batch: &[Queued]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let lifetime = self.key_lifetime_ms().to_string();
        let dedupe = (self.config.dedupe_window.as_millis() as u64).to_string();
        let now = now_ms().to_string();
        let keep = self.config.history_events.to_string();
        for q in batch {
            pipe.cmd("EVALSHA")
                .arg(self.publish_script.get_hash())
                .arg(3)
                .arg(meta_key(&q.channel))
                .arg(stream_key(&q.channel))
                .arg(dedupe_key(&q.channel, &q.id))
                .arg(live_name(&q.channel))
                .arg(new_epoch())
                .arg(&keep)
                .arg(&lifetime)
                .arg(&dedupe)
                .arg(&now)
                .arg(&q.prefix)
                .arg(&q.suffix);
        }
        pipe
    }

    /// A result per publish of `batch`, in order, from Redis's `replies`.
    /// A connection that failed is dropped (`conn` set to none) so the
    /// worker reconnects.
    ///
    /// Redis without the script (its cache was flushed while this node was
    /// connected; a new connection loads it first) ran nothing of the batch.
    /// The script is loaded again, and the batch sent again only if it is
    /// `alone` (no later pipeline out): a later one may already have run,
    /// with the script another node loaded, and the batch must not come after
    /// it. Otherwise its publishes are refused, for the publisher to retry.
    async fn answer_batch(
        &self,
        batch: &[Queued],
        replies: redis::RedisResult<Vec<Value>>,
        conn: &mut Option<redis::aio::MultiplexedConnection>,
        alone: bool,
    ) -> Vec<Result<Published, EngineError>> {
        let mut replies = replies;
        let mut retried = false;
        let replies = loop {
            let values = match replies {
                Ok(v) => v,
                Err(e) => {
                    // An answer that is late does not break the connection (a
                    // later answer still pairs with its request); anything else does.
                    if !e.is_timeout() {
                        *conn = None;
                    }
                    self.publish_failed(batch.len());
                    return batch.iter().map(|_| Err(unavailable(&e))).collect();
                }
            };
            self.set_commands_up(true);
            let no_script = lost_script(&values);
            let Some(c) = conn.as_mut().filter(|_| no_script && !retried) else {
                break values;
            };
            retried = true;
            if load_script(c, PUBLISH_SCRIPT).await.is_err() || !alone {
                break values;
            }
            replies = self.publish_pipeline(batch).query_async(c).await;
        };
        let mut out = Vec::with_capacity(batch.len());
        for (i, _) in batch.iter().enumerate() {
            let result = match replies.get(i) {
                Some(Value::Array(items)) => match (items.first(), items.get(1)) {
                    (Some(Value::Int(seq)), Some(Value::Int(dup))) if *seq > 0 => {
                        if *dup == 0 && self.hub.has(&batch[i].channel) {
                            let mut acked = lock(&self.acked);
                            let top = acked.entry(batch[i].channel.clone()).or_insert(0);
                            *top = (*top).max(*seq as u64);
                        }
                        Ok(Published {
                            seq: *seq as u64,
                            duplicate: *dup == 1,
                        })
                    }
                    _ => {
                        self.errors.corrupt.fetch_add(1, Ordering::Relaxed);
                        Err(corrupt("publish reply"))
                    }
                },
                Some(Value::ServerError(e)) => {
                    tracing::warn!(code = e.code(), "Redis refused a publish");
                    Err(EngineError::Unavailable(format!(
                        "Redis refused the publish: {}",
                        e.code()
                    )))
                }
                _ => Err(corrupt("publish reply")),
            };
            if result.is_err() {
                self.errors.publish.fetch_add(1, Ordering::Relaxed);
            }
            out.push(result);
        }
        out
    }

    /// Rewrites this node's part of each channel's presence and reads back
    /// each channel's presence over every node, in one pipeline.
    async fn sync_presence(
        &self,
        local: &[LocalPresence],
        cap: usize,
    ) -> Result<Vec<SharedPresence>, EngineError> {
        if local.is_empty() {
            return Ok(Vec::new());
        }
        let expiry = PRESENCE_EXPIRY.as_millis() as u64;
        for attempt in 1..=2 {
            let now = now_ms();
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for part in local {
                let cmd = pipe
                    .cmd("EVALSHA")
                    .arg(self.presence_script.get_hash())
                    .arg(1)
                    .arg(presence_key(&part.channel))
                    .arg(presence_part_prefix(&part.channel))
                    .arg(&self.node)
                    .arg(now)
                    .arg(expiry)
                    .arg(cap);
                if part.unchanged {
                    cmd.arg("keep");
                } else {
                    cmd.arg(part.anonymous);
                    for (sub, info) in &part.members {
                        cmd.arg(sub).arg(info);
                    }
                }
            }
            let mut conn = self.conn.clone();
            let replies: Vec<Value> = match pipe.query_async(&mut conn).await {
                Ok(v) => v,
                Err(e) => {
                    self.errors.maintain.fetch_add(1, Ordering::Relaxed);
                    return Err(unavailable(&e));
                }
            };
            // Every part is rewritten whole, so running them all again is harmless.
            if attempt == 1
                && self
                    .reloaded_after_noscript(&replies, PRESENCE_SCRIPT)
                    .await
            {
                continue;
            }
            let mut out = Vec::with_capacity(local.len());
            for i in 0..local.len() {
                match replies.get(i).and_then(|v| parse_presence(v, cap)) {
                    Some(shared) => out.push(shared),
                    None => {
                        self.errors.corrupt.fetch_add(1, Ordering::Relaxed);
                        return Err(corrupt("presence reply"));
                    }
                }
            }
            return Ok(out);
        }
        Err(corrupt("presence script not loadable"))
    }

    /// The channel's epoch and seq, and its history after `after` (when given), at one instant.
    async fn snapshot(
        &self,
        channel: &str,
        after: Option<u64>,
        count: usize,
    ) -> Result<(String, u64, Vec<(u64, u64, Utf8Bytes)>), EngineError> {
        let mut conn = self.conn.clone();
        let reply: Value = self
            .snapshot_script
            .key(meta_key(channel))
            .key(stream_key(channel))
            .arg(new_epoch())
            .arg(self.key_lifetime_ms())
            .arg(after.map_or(-1, |a| a.min(i64::MAX as u64) as i64))
            .arg(count.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| {
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    self.set_commands_up(false);
                }
                unavailable(&e)
            })?;
        self.set_commands_up(true);
        let parsed = (|| {
            let Value::Array(parts) = reply else {
                return None;
            };
            let epoch = match parts.first()? {
                Value::BulkString(b) => std::str::from_utf8(b).ok()?.to_owned(),
                _ => return None,
            };
            if epoch.is_empty() || epoch.len() > 64 {
                return None;
            }
            let seq = match parts.get(1)? {
                Value::Int(n) if *n >= 0 => *n as u64,
                _ => return None,
            };
            // Corrupt history is history lost: nothing is replayed from it.
            let entries = self.parse_entries(parts.get(2)?).unwrap_or_else(|| {
                self.errors.corrupt.fetch_add(1, Ordering::Relaxed);
                Vec::new()
            });
            Some((epoch, seq, entries))
        })();
        parsed.ok_or_else(|| {
            self.errors.corrupt.fetch_add(1, Ordering::Relaxed);
            corrupt("snapshot")
        })
    }

    /// Stream entries as `(seq, ms, frame)`; `None` if any is malformed or too large.
    fn parse_entries(&self, value: &Value) -> Option<Vec<(u64, u64, Utf8Bytes)>> {
        let Value::Array(entries) = value else {
            return None;
        };
        let mut out = Vec::with_capacity(entries.len().min(READ_MAX));
        for entry in entries {
            let Value::Array(pair) = entry else {
                return None;
            };
            let seq = match pair.first()? {
                Value::BulkString(id) => {
                    let id = std::str::from_utf8(id).ok()?;
                    id.split_once('-')?.0.parse::<u64>().ok()?
                }
                _ => return None,
            };
            let Value::Array(fields) = pair.get(1)? else {
                return None;
            };
            let (mut frame, mut at) = (None, 0);
            for kv in fields.chunks(2) {
                match kv {
                    [Value::BulkString(k), Value::BulkString(v)] if k == b"f" => {
                        if v.len() > self.config.max_event_bytes {
                            return None;
                        }
                        frame = Some(String::from_utf8(v.clone()).ok()?);
                    }
                    [Value::BulkString(k), Value::BulkString(v)] if k == b"t" => {
                        at = std::str::from_utf8(v).ok()?.parse().ok()?;
                    }
                    _ => {}
                }
            }
            out.push((seq, at, Utf8Bytes::from(frame?)));
        }
        Some(out)
    }

    /// Events `from..=to` of the channel from its stream, if history still
    /// holds every one of them (none aged out); `None` otherwise.
    async fn read_range(
        &self,
        channel: &str,
        from: u64,
        to: u64,
    ) -> Result<Option<Vec<(u64, Utf8Bytes)>>, EngineError> {
        if from > to {
            return Ok(Some(Vec::new()));
        }
        let want = to - from + 1;
        if want > READ_MAX as u64 {
            return Ok(None);
        }
        let mut conn = self.conn.clone();
        let reply: Value = redis::cmd("XRANGE")
            .arg(stream_key(channel))
            .arg(format!("{from}-0"))
            .arg(format!("{to}-0"))
            .arg("COUNT")
            .arg(want)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let Some(entries) = self.parse_entries(&reply) else {
            self.errors.corrupt.fetch_add(1, Ordering::Relaxed);
            return Err(corrupt("stream entries"));
        };
        Ok(self.contiguous(entries, from, to))
    }

    /// `entries` if they are exactly `from..=to` and none is older than the history age.
    fn contiguous(
        &self,
        entries: Vec<(u64, u64, Utf8Bytes)>,
        from: u64,
        to: u64,
    ) -> Option<Vec<(u64, Utf8Bytes)>> {
        let oldest = now_ms().saturating_sub(self.config.history_age.as_millis() as u64);
        let mut expected = from;
        let mut out = Vec::with_capacity(entries.len());
        for (seq, at, frame) in entries {
            if seq != expected || at < oldest {
                return None;
            }
            expected += 1;
            out.push((seq, frame));
        }
        (expected == to + 1).then_some(out)
    }

    /// Hands one pub/sub message to the hub: in order, each once, gaps
    /// filled from the stream, history that changed under the subscribers said.
    async fn on_message(&self, channel: &str, epoch: &str, seq: u64, frame: Utf8Bytes) {
        let cursor = lock(&self.cursors).get(channel).cloned();
        let Some(cursor) = cursor else {
            if self.hub.has(channel) {
                lock(&self.cursors).insert(
                    channel.to_owned(),
                    Cursor {
                        epoch: epoch.to_owned(),
                        seq,
                    },
                );
                self.hub.deliver(channel, seq, &frame);
                self.fed_up_to(channel, seq);
            }
            return;
        };
        if cursor.epoch != epoch {
            self.history_changed(channel, epoch, seq);
            return;
        }
        if seq <= cursor.seq {
            return;
        }
        if seq > cursor.seq + 1 {
            match self.read_range(channel, cursor.seq + 1, seq - 1).await {
                Ok(Some(missed)) => {
                    for (s, f) in &missed {
                        self.hub.deliver(channel, *s, f);
                    }
                }
                Ok(None) => {
                    self.history_changed(channel, epoch, seq);
                    return;
                }
                Err(_) => {
                    self.errors.pubsub.fetch_add(1, Ordering::Relaxed);
                    self.history_changed(channel, epoch, seq);
                    return;
                }
            }
        }
        self.hub.deliver(channel, seq, &frame);
        if let Some(c) = lock(&self.cursors).get_mut(channel) {
            if c.epoch == epoch {
                c.seq = c.seq.max(seq);
            }
        }
        self.fed_up_to(channel, seq);
    }

    /// Notes that the hub has the channel's events up to `seq`.
    fn fed_up_to(&self, channel: &str, seq: u64) {
        let mut acked = lock(&self.acked);
        if acked.get(channel).is_some_and(|top| *top <= seq) {
            acked.remove(channel);
            drop(acked);
            self.fed.notify_waiters();
        }
    }

    /// Whether every event acked here has reached the hub (or has nobody here to reach).
    fn settled(&self) -> bool {
        let cursors = lock(&self.cursors);
        let mut acked = lock(&self.acked);
        // An ack can be noted after its pub/sub message was already handed on.
        acked.retain(|channel, top| {
            self.hub.has(channel) && cursors.get(channel).is_none_or(|c| c.seq < *top)
        });
        acked.is_empty()
    }

    /// The channel's events cannot be handed on in order (a new epoch, or a
    /// gap history no longer holds): its local subscribers are disconnected
    /// to resume with `since`, which tells them `recovered: false`.
    fn history_changed(&self, channel: &str, epoch: &str, seq: u64) {
        let n = self.hub.disconnect_all(channel);
        self.fed_up_to(channel, u64::MAX);
        tracing::info!(
            channel,
            subscribers = n,
            "channel history changed; subscribers resume"
        );
        lock(&self.cursors).insert(
            channel.to_owned(),
            Cursor {
                epoch: epoch.to_owned(),
                seq,
            },
        );
    }

    /// After pub/sub was down: every followed channel continues from its
    /// stream where its cursor stands. Fails (to be tried again) if Redis
    /// does not answer for a channel.
    async fn catch_up(&self) -> Result<(), EngineError> {
        let followed: Vec<(String, Cursor)> = lock(&self.cursors)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (channel, cursor) in followed {
            let (epoch, seq, entries) = self
                .snapshot(&channel, Some(cursor.seq), READ_MAX)
                .await
                .inspect_err(|_| {
                self.errors.pubsub.fetch_add(1, Ordering::Relaxed);
            })?;
            if epoch != cursor.epoch || seq < cursor.seq {
                self.history_changed(&channel, &epoch, seq);
                continue;
            }
            for (s, _at, f) in entries.iter().filter(|(s, _, _)| *s <= seq) {
                self.on_message(&channel, &epoch, *s, f.clone()).await;
            }
            // What the read could not reach (trimmed, or more than one read) is lost here.
            let reached = lock(&self.cursors).get(&channel).map_or(0, |c| c.seq);
            if reached < seq {
                self.history_changed(&channel, &epoch, seq);
            }
        }
        Ok(())
    }

    /// Whether Redis answers a PING; updates the health flag.
    async fn check(&self) -> bool {
        let mut conn = self.conn.clone();
        let ok = redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok();
        self.set_commands_up(ok);
        ok
    }

    /// Keeps the keys of channels this node serves from expiring while they are quiet.
    async fn refresh(&self) {
        let channels = self.hub.channels();
        if channels.is_empty() {
            return;
        }
        let lifetime = self.key_lifetime_ms();
        let mut pipe = redis::pipe();
        for c in &channels {
            pipe.cmd("PEXPIRE").arg(meta_key(c)).arg(lifetime).ignore();
            pipe.cmd("PEXPIRE")
                .arg(stream_key(c))
                .arg(lifetime)
                .ignore();
        }
        let mut conn = self.conn.clone();
        if pipe.query_async::<()>(&mut conn).await.is_err() {
            self.errors.maintain.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A presence script's reply: `{member_count, anonymous, listed, lost, sub, info, ...}`.
/// A member whose `sub` or `info` breaks the token rules (Redis was written
/// to by someone else) is left out of the list but still counted.
fn parse_presence(value: &Value, cap: usize) -> Option<SharedPresence> {
    let Value::Array(items) = value else {
        return None;
    };
    let int = |v: Option<&Value>| match v {
        Some(Value::Int(n)) if *n >= 0 => Some(*n as usize),
        _ => None,
    };
    let member_count = int(items.first())?;
    let anonymous = int(items.get(1))?;
    let listed = int(items.get(2))? == 1;
    let lost = int(items.get(3))? == 1;
    let rest = items.get(4..).unwrap_or_default();
    if !listed || member_count > cap {
        return Some(SharedPresence {
            members: None,
            member_count,
            anonymous,
            lost,
        });
    }
    if rest.len() != member_count * 2 {
        return None;
    }
    let text = |v: &Value| match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok().map(str::to_owned),
        _ => None,
    };
    let mut members: Vec<Member> = rest
        .chunks_exact(2)
        .filter_map(|pair| {
            let sub = text(&pair[0]).filter(|s| !s.is_empty() && s.len() <= MAX_SUB_BYTES)?;
            let info: MemberInfo = serde_json::from_str(&text(&pair[1])?).ok()?;
            info.check().ok()?;
            Some(Member { sub, info })
        })
        .collect();
    members.sort_by(|a, b| a.sub.cmp(&b.sub));
    Some(SharedPresence {
        members: Some(members),
        member_count,
        anonymous,
        lost,
    })
}

/// A pub/sub message's payload: `EPOCH:SEQ:FRAME`.
fn parse_live(payload: &[u8], max: usize) -> Option<(String, u64, Utf8Bytes)> {
    if payload.len() > max {
        return None;
    }
    let text = std::str::from_utf8(payload).ok()?;
    let (epoch, rest) = text.split_once(':')?;
    let (seq, frame) = rest.split_once(':')?;
    if epoch.is_empty() || epoch.len() > 64 {
        return None;
    }
    Some((
        epoch.to_owned(),
        seq.parse().ok()?,
        Utf8Bytes::from(frame.to_owned()),
    ))
}

/// Runs the pub/sub connection for the life of the engine: connect,
/// subscribe to every channel with local subscribers, catch up from the
/// streams, hand messages to the hub; on loss, all over again.
async fn feed(inner: Arc<Inner>) {
    let mut delay = Duration::from_millis(50);
    loop {
        let pubsub = match inner.client.get_async_pubsub().await {
            Ok(p) => p,
            Err(_) => {
                inner.pubsub_up.store(false, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        {
            // Held while subscribing all, so no subscribe of a new channel slips between.
            let mut current = inner.sink.lock().await;
            let channels = inner.hub.channels();
            let names: Vec<String> = channels.iter().map(|c| live_name(c)).collect();
            if !names.is_empty() && !answered(sink.subscribe(&names)).await {
                inner.errors.pubsub.fetch_add(1, Ordering::Relaxed);
                drop(current);
                tokio::time::sleep(delay).await;
                continue;
            }
            *current = Some(sink);
        }
        inner.pubsub_up.store(true, Ordering::Relaxed);
        inner.came_up.notify_waiters();
        // Messages wait in the connection meanwhile; their repeats are dropped after.
        while inner.catch_up().await.is_err() {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RECONNECT_MAX);
        }
        delay = Duration::from_millis(50);
        let max = inner.config.max_event_bytes.saturating_add(128);
        while let Some(msg) = stream.next().await {
            let name = msg.get_channel_name();
            let Some(channel) = channel_of_live(name) else {
                continue;
            };
            match parse_live(msg.get_payload_bytes(), max) {
                Some((epoch, seq, frame)) => inner.on_message(channel, &epoch, seq, frame).await,
                None => {
                    inner.errors.corrupt.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // The connection is gone: nothing is subscribed any more.
        inner.pubsub_up.store(false, Ordering::Relaxed);
        inner.errors.pubsub.fetch_add(1, Ordering::Relaxed);
        *inner.sink.lock().await = None;
        tracing::warn!("Redis engine: pub/sub connection lost; reconnecting");
    }
}

impl Engine for RedisEngine {
    fn publish<'a>(
        &'a self,
        event: &'a PublishFrame,
        ts: u64,
    ) -> BoxFuture<'a, Result<Published, EngineError>> {
        // Queued now, at the call, so publishes keep the order they were made
        // in even when their answers are awaited later.
        let (prefix, suffix) = split_frame(event, ts);
        let (done, answer) = oneshot::channel();
        let queued = Queued {
            channel: event.channel.clone(),
            id: event.id.clone(),
            prefix,
            suffix,
            done,
        };
        let sent = self.queue.send(queued).is_ok();
        Box::pin(async move {
            if !sent {
                return Err(EngineError::Unavailable("engine stopped".into()));
            }
            answer
                .await
                .unwrap_or_else(|_| Err(EngineError::Unavailable("engine stopped".into())))
        })
    }

    fn subscribe(
        &self,
        channel: String,
        since: Option<Since>,
        subscriber: SubscriberId,
        outbox: Arc<Outbox>,
        max_replay_bytes: usize,
    ) -> BoxFuture<'_, Result<Subscription, EngineError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            {
                // Interest first: the hub holds live events for this subscriber
                // and, for the first one here, Redis sends the channel to this node
                // before the replay is read.
                let mut sink = inner.sink.lock().await;
                let first = inner.hub.add_held(&channel, subscriber, outbox);
                if first {
                    let subscribed = match sink.as_mut() {
                        Some(s) => answered(s.subscribe(live_name(&channel))).await,
                        None => false,
                    };
                    if !subscribed {
                        inner.hub.remove(&channel, subscriber);
                        inner.errors.subscribe.fetch_add(1, Ordering::Relaxed);
                        return Err(EngineError::Unavailable(
                            "Redis pub/sub is unreachable".into(),
                        ));
                    }
                }
            }
            let after = since.as_ref().map(|s| s.seq);
            let count = inner.config.history_events.clamp(1, READ_MAX);
            let (epoch, seq, entries) = match inner.snapshot(&channel, after, count).await {
                Ok(s) => s,
                Err(e) => {
                    inner.errors.subscribe.fetch_add(1, Ordering::Relaxed);
                    drop_interest(&inner, &channel, subscriber).await;
                    return Err(e);
                }
            };
            lock(&inner.cursors)
                .entry(channel.clone())
                .or_insert_with(|| Cursor {
                    epoch: epoch.clone(),
                    seq,
                });
            let mut replay_cut = false;
            let (recovered, replay) = match &since {
                None => (false, Vec::new()),
                Some(s) if s.epoch != epoch || s.seq > seq => (false, Vec::new()),
                Some(s) => match inner.contiguous(entries, s.seq + 1, seq) {
                    Some(events) => {
                        let bytes: usize = events.iter().map(|(_, f)| f.len()).sum();
                        if bytes > max_replay_bytes {
                            replay_cut = true;
                            (false, Vec::new())
                        } else {
                            (true, events.into_iter().map(|(_, f)| f).collect())
                        }
                    }
                    None => (false, Vec::new()),
                },
            };
            inner.hub.release(&channel, subscriber, seq);
            Ok(Subscription {
                epoch,
                seq,
                recovered,
                replay,
                replay_cut,
            })
        })
    }

    fn unsubscribe(&self, channel: String, subscriber: SubscriberId) -> BoxFuture<'_, ()> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { drop_interest(&inner, &channel, subscriber).await })
    }

    fn history(&self, channel: String) -> BoxFuture<'_, Option<History>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let count = inner.config.history_events.clamp(1, READ_MAX);
            match inner.snapshot(&channel, Some(0), count).await {
                Ok((epoch, seq, entries)) => {
                    let oldest =
                        now_ms().saturating_sub(inner.config.history_age.as_millis() as u64);
                    Some(History {
                        epoch,
                        seq,
                        events: entries
                            .into_iter()
                            .filter(|(_, at, _)| *at >= oldest)
                            .map(|(_, _, f)| f)
                            .collect(),
                    })
                }
                Err(_) => {
                    inner.errors.history.fetch_add(1, Ordering::Relaxed);
                    None
                }
            }
        })
    }

    fn stats(&self) -> EngineStats {
        let e = &self.inner.errors;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (fed_deliveries, fed_overflows) = self.inner.hub.totals();
        EngineStats {
            fed_deliveries,
            fed_overflows,
            channels: self.inner.hub.channels().len(),
            subscriptions: self.inner.hub.subscriptions(),
            down: !self.is_up(),
            errors: EngineErrors {
                publish: get(&e.publish),
                subscribe: get(&e.subscribe),
                history: get(&e.history),
                pubsub: get(&e.pubsub),
                maintain: get(&e.maintain),
                corrupt: get(&e.corrupt),
            },
            ..EngineStats::default()
        }
    }

    fn maintain(&self) {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            if inner.check().await {
                inner.refresh().await;
            } else {
                inner.errors.maintain.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    fn settle(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                let fed = self.inner.fed.notified();
                if self.inner.settled() {
                    break;
                }
                fed.await;
            }
            self.inner.hub.written().await;
        })
    }

    fn stores_locally(&self) -> bool {
        false
    }

    fn shares_presence(&self) -> bool {
        true
    }

    fn sync_presence(
        &self,
        local: Vec<LocalPresence>,
        cap: usize,
    ) -> BoxFuture<'_, Result<Vec<SharedPresence>, EngineError>> {
        Box::pin(async move { self.inner.sync_presence(&local, cap).await })
    }

    fn is_up(&self) -> bool {
        self.inner.commands_up.load(Ordering::Relaxed)
            && self.inner.pubsub_up.load(Ordering::Relaxed)
    }
}

/// Whether a pub/sub command succeeded within the response timeout (a
/// connection that went silent must not hold every subscribe behind it).
async fn answered(command: impl std::future::Future<Output = redis::RedisResult<()>>) -> bool {
    matches!(
        tokio::time::timeout(RESPONSE_TIMEOUT, command).await,
        Ok(Ok(()))
    )
}

/// Removes a local subscriber; the channel's last one here stops this node's pub/sub for it.
async fn drop_interest(inner: &Inner, channel: &str, subscriber: SubscriberId) {
    let mut sink = inner.sink.lock().await;
    if inner.hub.remove(channel, subscriber) {
        lock(&inner.cursors).remove(channel);
        if let Some(s) = sink.as_mut() {
            if !answered(s.unsubscribe(live_name(channel))).await {
                inner.errors.pubsub.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtet_protocol::frames::parse_publish;

    #[test]
    fn the_frame_splits_around_its_seq() {
        let frame = parse_publish(
            r#"{"type":"publish","id":"a","channel":"c","event":"e","data":{"seq":0,"x":",\"seq\":0,"}}"#,
        )
        .unwrap();
        let (prefix, suffix) = split_frame(&frame, 5);
        let whole = format!("{prefix}42{suffix}");
        assert_eq!(
            whole,
            encode_event("c", 42, "a", "e", &frame.data, 5),
            "the seq lands where encode_event puts it"
        );
    }

    #[test]
    fn presence_replies_parse_and_hostile_members_are_counted_never_listed() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            Value::Int(3),
            Value::Int(2),
            Value::Int(1),
            Value::Int(0),
            bulk("b"),
            bulk(r#"{"name":"B"}"#),
            bulk("a"),
            bulk(r#"{"name":"A","avatar":"https://example.com/a.png"}"#),
            bulk("evil"),
            bulk(r#"{"name":"E","avatar":"javascript:alert(1)"}"#),
        ]);
        let shared = parse_presence(&reply, 10).unwrap();
        let listed: Vec<&str> = shared
            .members
            .iter()
            .flatten()
            .map(|m| m.sub.as_str())
            .collect();
        assert_eq!(listed, ["a", "b"]);
        assert_eq!((shared.member_count, shared.anonymous), (3, 2));
        // Over the cap: counts only, whatever the store sent.
        assert_eq!(parse_presence(&reply, 2).unwrap().members, None);
        // Lengths that disagree, negative counts, not an array: refused.
        let short = Value::Array(vec![
            Value::Int(2),
            Value::Int(0),
            Value::Int(1),
            Value::Int(0),
            bulk("a"),
        ]);
        assert_eq!(parse_presence(&short, 10), None);
        let negative = Value::Array(vec![
            Value::Int(-1),
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
        ]);
        assert_eq!(parse_presence(&negative, 10), None);
        assert_eq!(parse_presence(&bulk("x"), 10), None);
    }

    #[test]
    fn live_payloads_parse_and_hostile_ones_do_not() {
        let (epoch, seq, frame) = parse_live(b"abc:7:{\"x\":1}", 100).unwrap();
        assert_eq!(
            (epoch.as_str(), seq, frame.as_str()),
            ("abc", 7, "{\"x\":1}")
        );
        assert!(parse_live(b"abc:x:{}", 100).is_none());
        assert!(parse_live(b"abc", 100).is_none());
        assert!(parse_live(b":1:{}", 100).is_none());
        assert!(parse_live(&[b'a'; 200], 100).is_none());
        assert!(parse_live(b"a:1:\xff", 100).is_none());
    }

    #[test]
    fn every_key_of_a_channel_shares_its_hash_tag() {
        for key in [
            meta_key("post.1"),
            stream_key("post.1"),
            dedupe_key("post.1", "x"),
            live_name("post.1"),
        ] {
            assert!(key.contains("{post.1}"), "{key}");
        }
        assert_eq!(channel_of_live(&live_name("a:b@c")), Some("a:b@c"));
    }
}
