//! Accepting connections, routing, and shutting down in order.
//!
//! [`run`] takes a bound listener and a shutdown future (mini-redis style), so
//! the binary and the tests start the relay the same way. One port serves
//! HTTP/1.1 and both WebSocket endpoints, over plain TCP or TLS.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::batched_writes::BatchedWrites;
use crate::client_addr::{is_trusted_proxy, limit_key};
use crate::config::EngineChoice;
use crate::config::{Config, ConfigError, TlsFiles};
use crate::direct::{Direct, SharedTcp};
use crate::engine::{Engine, MemoryEngine, MemoryEngineConfig, RedisEngine, RedisEngineConfig};
use crate::state::Relay;
use crate::{http, publisher, subscriber};

/// How long a client may take to send its first bytes, to send its request
/// headers or finish a TLS handshake, and how long it may wait for an opening
/// slot (`--max-handshakes`).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection refused for a full handshake queue has to read its
/// 503 before it is closed.
pub const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// How often the engine drops aged history and forgets empty channels.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(1);
/// Maintenance rounds between handing freed memory back to the system.
const TRIM_EVERY: u32 = 10;

/// Why the relay could not start.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The configuration is unusable; the message says what to change.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The TLS certificate or key could not be loaded; check the files.
    #[error("TLS: {0}")]
    Tls(String),
    /// The engine could not be set up; check `--engine`.
    #[error("engine: {0}")]
    Engine(String),
    /// The metrics address could not be bound; check `--metrics-listen`.
    #[error("cannot listen for metrics on {addr}: {source}")]
    MetricsListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Serves the relay on `listener` with the engine `config.engine` names
/// until `shutdown` resolves, then stops accepting, answers in-flight
/// publishes, and closes subscribers with 1001.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future,
) -> Result<(), ServeError> {
    let engine: Arc<dyn Engine> = match &config.engine {
        EngineChoice::Memory => Arc::new(MemoryEngine::new(MemoryEngineConfig::from(&config))),
        EngineChoice::Redis(url) => {
            let engine = RedisEngine::connect(url, RedisEngineConfig::from(&config))
                .await
                .map_err(|e| ServeError::Engine(e.to_string()))?;
            if engine.is_up() {
                tracing::info!(engine = %url, "Redis engine connected");
            } else {
                tracing::warn!(engine = %url, "Redis engine not reachable yet; /healthz answers 503 until it is");
            }
            Arc::new(engine)
        }
    };
    run_with_engine(listener, config, engine, shutdown).await
}

/// Like [`run`], with any [`Engine`].
pub async fn run_with_engine(
    listener: TcpListener,
    config: Config,
    engine: Arc<dyn Engine>,
    shutdown: impl Future,
) -> Result<(), ServeError> {
    config.validate()?;
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::MetricsListen { addr, source })?,
        ),
        None => None,
    };
    let handshakes = Arc::new(Handshakes::new(&config));
    let relay = Arc::new(Relay::new(config, engine));
    let app = router(Arc::clone(&relay));
    if let Some(listener) = metrics_listener {
        serve_metrics(listener, Arc::clone(&relay));
    }
    if let Ok(addr) = listener.local_addr() {
        let scheme = if tls.is_some() {
            "https/wss"
        } else {
            "http/ws"
        };
        tracing::info!(%addr, scheme, "rtet-relay listening");
    }

    let maintenance = tokio::spawn({
        let relay = Arc::clone(&relay);
        async move {
            let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
            let mut round: u32 = 0;
            loop {
                tick.tick().await;
                relay.engine.maintain();
                round = round.wrapping_add(1);
                if round.is_multiple_of(TRIM_EVERY) {
                    // Off the runtime's threads: a trim just after a burst
                    // takes milliseconds, which no subscriber task should wait.
                    tokio::task::spawn_blocking(give_back_memory);
                }
                relay.forget_refilled_replay_budgets();
            }
        }
    });

    let presence = tokio::spawn({
        let relay = Arc::clone(&relay);
        async move {
            let mut tick = tokio::time::interval(crate::presence::PRESENCE_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // With shared presence, frames wait for Redis: while it does
                // not answer, nothing is sent (and nothing lost: the changes
                // stay pending until a sync succeeds).
                if relay.presence.shares() && sync_presence(&relay).await.is_err() {
                    continue;
                }
                let flushed = relay.presence.flush();
                relay
                    .metrics
                    .slow_consumers
                    .inc_by(flushed.overflowed as u64);
            }
        }
    });

    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = relay.stop_accepting.clone();
        let tls = tls.clone();
        let handshakes = Arc::clone(&handshakes);
        let metrics_relay = Arc::clone(&relay);
        relay.http.spawn(async move {
            // A connection costs no buffer until it has something to say.
            tokio::select! {
                said = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.readable()) => {
                    if said.is_err() {
                        return;
                    }
                }
                _ = stop.cancelled() => return,
            }
            let slot = tokio::select! {
                slot = handshakes.enter(peer.ip()) => slot,
                _ = stop.cancelled() => return,
            };
            let Some(slot) = slot else {
                metrics_relay.metrics.refused("handshakes");
                tracing::debug!(%peer, "refused: handshake queue full or waited too long");
                if tls.is_none() {
                    Box::pin(refuse_busy(stream)).await;
                }
                return;
            };
            drop(metrics_relay);
            // Boxed: a connection waiting in the queue holds only the small future above.
            Box::pin(open(stream, peer, app, stop, tls, slot)).await;
        });
    }

    drop(listener);
    tracing::info!("shutting down: answering in-flight publishes");
    let grace = relay.config.shutdown_grace;
    relay.stop_accepting.cancel();
    relay.stop_publishers.cancel();
    relay.http.close();
    relay.publishers.close();
    let _ = tokio::time::timeout(grace, async {
        tokio::join!(relay.http.wait(), relay.publishers.wait())
    })
    .await;
    // Events this node acked reach its own subscribers before they are closed.
    let _ = tokio::time::timeout(grace, relay.engine.settle()).await;
    tracing::info!("shutting down: closing subscribers with 1001");
    relay.stop_subscribers.cancel();
    relay.subscribers.close();
    let _ = tokio::time::timeout(grace, relay.subscribers.wait()).await;
    maintenance.abort();
    presence.abort();
    if relay.presence.shares() {
        // Withdraws this node's members from the other nodes' view at once
        // rather than after the expiry.
        let _ = tokio::time::timeout(grace, sync_presence(&relay)).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Writes this node's part of every channel's presence to the engine's
/// store and takes back every channel's presence over all nodes.
async fn sync_presence(relay: &Relay) -> Result<(), crate::engine::EngineError> {
    let parts = relay.presence.local_parts();
    match relay
        .engine
        .sync_presence(parts.clone(), relay.presence.cap())
        .await
    {
        Ok(shared) => {
            relay.presence.apply_shared(&parts, shared);
            Ok(())
        }
        Err(e) => {
            relay.presence.sync_failed(&parts);
            Err(e)
        }
    }
}

/// Hands memory freed after a burst (many connections, a large replay) back
/// to the system. glibc's allocator keeps freed memory in its arenas, so the
/// relay's RSS would otherwise stay at its peak for good (after 50 events of
/// 500 bytes to 19,488 idle connections: 4.7 KiB per connection instead of
/// 3.0, BENCHMARKS.md "Memory once a burst has been read"). A trim walks
/// each arena under its lock: 0.1 ms on a quiet relay, about 2 ms just
/// after that burst.
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Serves `/metrics` and `/healthz` on their own listener (`--metrics-listen`)
/// until the relay stops accepting.
fn serve_metrics(listener: TcpListener, relay: Arc<Relay>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics listening");
    }
    let app = Router::new()
        .route("/metrics", get(http::metrics))
        .route("/healthz", get(http::healthz))
        .with_state(Arc::clone(&relay));
    let stop = relay.stop_accepting.clone();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            relay.http.spawn(serve_http(
                stream,
                peer,
                app.clone(),
                stop.clone(),
                None,
                None,
            ));
        }
    });
}

/// The routes of the one port.
fn router(relay: Arc<Relay>) -> Router {
    // A publish over HTTP holds a body for a while, so it counts in the connection limits;
    // /healthz and /metrics answer at once and must keep answering when the relay is full.
    let counted = axum::middleware::from_fn_with_state(Arc::clone(&relay), http::admit);
    Router::new()
        .route("/api/send-event", post(http::send_event))
        .route_layer(counted)
        .route("/healthz", get(http::healthz))
        .route("/metrics", get(http::guarded_metrics))
        .route("/publish", get(publisher::upgrade))
        .route("/ws", get(subscriber::upgrade))
        .with_state(relay)
}

/// Opens one connection holding a handshake slot: TLS if configured, then HTTP.
async fn open(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    stop: CancellationToken,
    tls: Option<TlsAcceptor>,
    slot: Slot,
) {
    match tls {
        None => {
            // Plain TCP: shared with the fan-out, which writes events straight
            // to the socket of a subscriber that is caught up.
            let shared = SharedTcp(Arc::new(Direct::new(stream)));
            serve_http(shared.clone(), peer, app, stop, Some(slot), Some(shared)).await
        }
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_http(stream, peer, app, stop, Some(slot), None).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// Bounds the connections being opened at once (`--max-handshakes`), those
/// one client address holds (`--handshakes-per-ip`), and those waiting for a
/// slot (`--handshake-queue`). Opening a connection takes buffers (hyper's
/// request buffer, TLS state, the upgrade) that are freed once it is open;
/// many at once leave the allocator's memory fragmented, so a burst of
/// openings would cost every connection that stays. The cap per address
/// keeps clients that send a byte and stall (slowloris) from one address
/// from holding every slot.
struct Handshakes {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    per_address: usize,
    trusted: Vec<IpNet>,
    /// The slots of each address with a connection being opened or waiting.
    addresses: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
}

/// Counts one connection in the queue while it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a connection being opened holds: one of the relay's slots and, from
/// an address that is not a trusted proxy, one of its address's.
struct Slot {
    _slot: OwnedSemaphorePermit,
    _own: Option<OwnSlot>,
}

/// A connection's place among its address's slots (held or awaited). The
/// address's entry is forgotten when its last connection lets go.
struct OwnSlot {
    handshakes: Arc<Handshakes>,
    address: IpAddr,
    slots: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
}

impl OwnSlot {
    fn try_take(&mut self) -> bool {
        self.held = Arc::clone(&self.slots).try_acquire_owned().ok();
        self.held.is_some()
    }

    async fn take(&mut self) {
        if self.held.is_none() {
            self.held = Arc::clone(&self.slots).acquire_owned().await.ok();
        }
    }
}

impl Drop for OwnSlot {
    fn drop(&mut self) {
        self.held.take();
        let mut addresses = rtet_protocol::sync::lock(&self.handshakes.addresses);
        // The map's copy and ours: nobody else holds or awaits this address's slots.
        if Arc::strong_count(&self.slots) == 2 {
            addresses.remove(&self.address);
        }
    }
}

impl Handshakes {
    fn new(config: &Config) -> Self {
        Handshakes {
            slots: Arc::new(Semaphore::new(config.max_handshakes)),
            waiting: AtomicUsize::new(0),
            queue: config.handshake_queue,
            per_address: config.handshakes_per_ip,
            trusted: config.trusted_proxies.clone(),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// The slots of `peer`'s address (per /64 for IPv6); none for a trusted
    /// proxy, whose clients are known only after their request headers.
    fn own_slots(self: &Arc<Self>, peer: IpAddr) -> Option<OwnSlot> {
        if is_trusted_proxy(peer, &self.trusted) {
            return None;
        }
        let address = limit_key(peer);
        let slots = Arc::clone(
            rtet_protocol::sync::lock(&self.addresses)
                .entry(address)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_address))),
        );
        Some(OwnSlot {
            handshakes: Arc::clone(self),
            address,
            slots,
            held: None,
        })
    }

    /// A slot for one connection from `peer` being opened: at once, or after
    /// waiting in the queue (for one of its address's slots, then one of the
    /// relay's) for at most [`HANDSHAKE_TIMEOUT`]. `None`: the queue is full,
    /// or no slot freed in time.
    async fn enter(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let mut own = self.own_slots(peer);
        if own.as_mut().is_none_or(OwnSlot::try_take) {
            if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
                return Some(Slot {
                    _slot: slot,
                    _own: own,
                });
            }
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let _waiting = Waiting(&self.waiting);
        let slot = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            if let Some(own) = own.as_mut() {
                own.take().await;
            }
            Arc::clone(&self.slots).acquire_owned().await.ok()
        })
        .await
        .ok()??;
        Some(Slot {
            _slot: slot,
            _own: own,
        })
    }
}

/// The body of the answer to a connection refused for a full handshake queue.
const BUSY: &str = "the relay is busy opening other connections; retry soon\n";

/// Answers 503 without reading the request (so it costs no request buffer),
/// then reads and drops what the client sent for at most [`REFUSAL_LINGER`]:
/// closing with unread bytes would reset the connection, and the client
/// could lose the answer.
async fn refuse_busy(mut stream: TcpStream) {
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
             retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BUSY}",
            BUSY.len()
        );
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 256];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Serves HTTP/1.1 (with upgrades) on one connection until it ends or the
/// relay stops. `slot` (a connection being opened) is given back once the
/// first request is answered (a WebSocket upgrade or an HTTP response).
/// `direct`, the same socket when it is plain TCP, goes with each request
/// (an extension) for the subscriber endpoint's fan-out.
async fn serve_http<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    stop: CancellationToken,
    slot: Option<Slot>,
    direct: Option<SharedTcp>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slot = Arc::new(Mutex::new(slot));
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(direct) = &direct {
            req.extensions_mut().insert(direct.clone());
        }
        let answered = app.clone().oneshot(req);
        let slot = Arc::clone(&slot);
        async move {
            let response = answered.await;
            rtet_protocol::sync::lock(&slot).take();
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(TokioIo::new(BatchedWrites::new(stream)), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Loads the certificate chain and key into a TLS acceptor (HTTP/1.1 only).
fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        ServeError::Tls(format!("{what} {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| err("cannot read certificate", &files.cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err("bad certificate", &files.cert, &e))?;
    if certs.is_empty() {
        return Err(err("no certificate in", &files.cert, &"empty"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| err("cannot read private key", &files.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
