//! The rtet relay: publishers send events over `/publish` (or
//! `POST /api/send-event`), browsers receive them over `/ws`. The wire format
//! is `docs/protocol.md`, implemented by the `rtet-protocol` crate.
//!
//! # Layout
//!
//! - [`config`]: flags, `RTET_*` environment and TOML file, merged into a [`Config`].
//! - [`server`]: accepts connections (plain or TLS), routes, and shuts down in order.
//! - [`state`]: what all connections share: keys, rate limits, connection counts.
//! - [`client_addr`]: who a client is behind trusted proxies, and the per-IP limits' key.
//! - [`publisher`]: the `/publish` WebSocket: auth before upgrade, ack/nack per publish.
//! - [`subscriber`]: the `/ws` WebSocket: tokens, subscriptions, replay, limits, keepalive.
//! - [`http`]: `/healthz`, `/metrics` and `POST /api/send-event`.
//! - [`publish`]: one checked event through the key's rate budget into the engine,
//!   for both publisher endpoints.
//! - [`connection`]: the socket side of a WebSocket connection: reads, queued writes, close.
//! - [`batched_writes`]: every connection's socket, with a write buffer that is freed once written.
//! - [`upgrade`]: the WebSocket handshake, so the socket under tungstenite is the relay's.
//! - [`frame_writer`]: that socket; the relay writes its text frames there itself.
//! - [`frame_splitter`]: beneath it, a client's large frames reach tungstenite in pieces.
//! - [`keepalive`]: pings and dead-peer detection for both endpoints.
//! - [`engine`]: the [`Engine`](engine::Engine) trait (seq, history, dedupe, fan-out)
//!   and its in-memory implementation.
//! - [`presence`]: presence members and counts per channel, coalesced per tick.
//! - [`outbox`]: a subscriber's bounded outgoing queue and the slow-consumer policy.
//! - [`metrics`]: the `rtet_*` Prometheus metrics.
//!
//! Start a relay in-process (as the tests and the benchmark do):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let config = rtet_relay::Config::new(["0123456789abcdef0123456789abcdef"]);
//! rtet_relay::run(listener, config, tokio::signal::ctrl_c()).await?;
//! # Ok(()) }
//! ```

pub mod batched_writes;
pub mod client_addr;
pub mod config;
pub mod connection;
pub mod direct;
pub mod engine;
pub mod frame_splitter;
pub mod frame_writer;
pub mod http;
pub mod keepalive;
pub mod metrics;
pub mod outbox;
pub mod presence;
pub mod publish;
pub mod publisher;
pub mod server;
pub mod state;
pub mod subscriber;
pub mod upgrade;

pub use config::{Config, ConfigError, EngineChoice, RedisUrl, Settings};
pub use server::{run, run_with_engine, ServeError};
