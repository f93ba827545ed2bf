//! The relay's settings: command-line flags, `RTET_*` environment variables
//! and a TOML file, merged as flags > environment > file > defaults.
//!
//! [`Settings`] is what a user can write (every field optional, the same
//! names in all three places); [`Config`] is the resolved, checked result the
//! server runs with. Tests build a [`Config`] directly with [`Config::new`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use ipnet::IpNet;
use rtet_protocol::{token::MAX_LEEWAY, validate_channel, Limits};
use serde::Deserialize;
use thiserror::Error;

pub use rtet_protocol::keys::MIN_KEY_LEN;

/// The environment variable holding one API key (the whole value is the key).
pub const API_KEY_ENV: &str = "RTET_API_KEY";

/// The longest `--max-token-lifetime` the relay takes.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// The shortest dedupe window the protocol allows.
pub const MIN_DEDUPE_WINDOW: Duration = Duration::from_secs(600);

/// The most runtime worker threads a configuration may ask for: a typo of a
/// few digits should be refused, not start a hundred thousand threads.
pub const MAX_WORKER_THREADS: usize = 1024;

/// A configuration the relay refuses to start with.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The flags could not be parsed, or `--help`/`--version` was asked for:
    /// the binary lets clap print it and exit with clap's code.
    #[error(transparent)]
    Cli(#[from] clap::Error),
    /// No API key at all: make one and give it by file or environment.
    #[error("no API key: make one with `openssl rand -hex 32 > relay.key` (readable only by the relay's user) and give it with --api-key-file relay.key, or set RTET_API_KEY")]
    NoKey,
    /// A key the protocol refuses (too short, an example key, ...); the message says why.
    #[error("API key number {index} {problem}")]
    BadKey {
        index: usize,
        problem: rtet_protocol::keys::KeyError,
    },
    /// The key file could not be read; check the path and permissions.
    #[error("cannot read API key file {path}: {source} (make one with: openssl rand -hex 32 > {path}; chmod 600 {path})", path = path.display())]
    ReadKeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The key file can be read by every local user, so the key is not secret.
    #[error("API key file {path} is readable by every local user; chmod 600 it (or 640 with the relay's group)")]
    KeyFileReadable { path: PathBuf },
    /// The config file could not be read; check the path and permissions.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings; the message names the key.
    #[error("config file {path} is invalid: {message}")]
    ParseFile { path: PathBuf, message: String },
    /// A setting has a value the relay cannot use; the message says which and why.
    #[error("invalid setting {name}: {message}")]
    Invalid { name: &'static str, message: String },
}

/// Every setting, as flags, `RTET_*` environment variables and TOML keys.
/// Unset fields fall back to the next source, then to the documented default.
#[derive(Debug, Default, Clone, Parser, Deserialize)]
#[command(
    name = "rtet-relay",
    version,
    about = "Relay for rtet: real-time events for WordPress.",
    long_about = "Relay for rtet: real-time events for WordPress.\n\n\
        Publishers (the PHP extension, or POST /api/send-event) send events with an API key; \
        browsers subscribe on /ws. One port serves HTTP and both WebSocket endpoints.\n\n\
        Every option can also be set by its environment variable or as a key of the TOML file \
        given with --config (the option's name with '_' for '-', e.g. history_age = \"10m\"; \
        lists as arrays: api_keys, allowed_origins, anonymous_channels, trusted_proxies). \
        Precedence: flags, then environment, then file, then defaults. \
        Durations take units: 500ms, 25s, 10m."
)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// TOML file with any of these settings.
    #[arg(long, env = "RTET_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on, for HTTP and both WebSocket endpoints.
    #[arg(long, env = "RTET_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// API key for publishers and for signing subscriber tokens; repeat to accept several
    /// (key rotation). At least 32 characters; make one with `openssl rand -hex 32`. A key on the
    /// command line is visible to every local user (ps): prefer --api-key-file, or RTET_API_KEY
    /// (one key) or RTET_API_KEYS (a comma-separated list) in the environment. Keys from
    /// flags, environment and --api-key-file are all accepted; the config file's keys only
    /// when none of those gives one. Required.
    #[arg(
        long = "api-key",
        env = "RTET_API_KEYS",
        value_name = "KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    #[serde(default)]
    pub api_keys: Vec<String>,

    /// File holding the API key (one per line for rotation; blank lines and lines starting
    /// with # are ignored). It must not be readable by every local user.
    /// [default: none]
    #[arg(long, env = "RTET_API_KEY_FILE", value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Origin a browser may connect to /ws from (scheme, host and port, as browsers send it);
    /// repeat for several.
    /// Requests without an Origin header are not refused. [default: none, meaning any origin]
    #[arg(
        long = "allowed-origin",
        env = "RTET_ALLOWED_ORIGINS",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub allowed_origins: Vec<String>,

    /// Channel that subscribers may join without a token; repeat for several.
    #[arg(
        long = "anonymous-channel",
        env = "RTET_ANONYMOUS_CHANNELS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub anonymous_channels: Vec<String>,

    /// Events kept per channel for replay with `since`.
    #[arg(long, env = "RTET_HISTORY_SIZE", value_name = "EVENTS")]
    pub history_size: Option<usize>,

    /// Age after which history events are dropped.
    #[arg(long, env = "RTET_HISTORY_AGE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub history_age: Option<Duration>,

    /// How long an acked (channel, id) pair is remembered, so a retried publish is not
    /// delivered twice. The protocol promises at least 10 minutes.
    #[arg(long, env = "RTET_DEDUPE_WINDOW", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub dedupe_window: Option<Duration>,

    /// Largest WebSocket frame or HTTP publish body, in bytes.
    #[arg(long, env = "RTET_MAX_FRAME_BYTES", value_name = "BYTES")]
    pub max_frame_bytes: Option<usize>,

    /// Largest subscriber token, in bytes.
    #[arg(long, env = "RTET_MAX_TOKEN_BYTES", value_name = "BYTES")]
    pub max_token_bytes: Option<usize>,

    /// Longest a subscriber token may still be valid for (its `exp` from now); tokens that
    /// live longer are refused, so a leaked token cannot serve for years.
    #[arg(long, env = "RTET_MAX_TOKEN_LIFETIME", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub max_token_lifetime: Option<Duration>,

    /// How deep an event's `data` may nest arrays and objects; deeper events are refused with
    /// `invalid`.
    #[arg(long, env = "RTET_MAX_DATA_DEPTH", value_name = "LEVELS")]
    pub max_data_depth: Option<usize>,

    /// Subscriptions one connection may hold.
    #[arg(long, env = "RTET_MAX_SUBSCRIPTIONS", value_name = "N")]
    pub max_subscriptions: Option<usize>,

    /// Presence members listed per channel; a channel with more members shows every subscriber
    /// counts only (members and anonymous subscribers), no identities.
    #[arg(long, env = "RTET_MAX_PRESENCE_MEMBERS", value_name = "N")]
    pub max_presence_members: Option<usize>,

    /// Frames per second a subscriber may send, sustained.
    #[arg(long, env = "RTET_CLIENT_FRAMES_PER_SEC", value_name = "N")]
    pub client_frames_per_sec: Option<u32>,

    /// Frames a subscriber may send in a burst.
    #[arg(long, env = "RTET_CLIENT_FRAMES_BURST", value_name = "N")]
    pub client_frames_burst: Option<u32>,

    /// Publishes per second for one API key, over all its connections and HTTP.
    #[arg(long, env = "RTET_PUBLISHES_PER_SEC", value_name = "N")]
    pub publishes_per_sec: Option<u32>,

    /// Open WebSocket connections from one client IP.
    #[arg(long, env = "RTET_CONNECTIONS_PER_IP", value_name = "N")]
    pub connections_per_ip: Option<usize>,

    /// Open WebSocket connections in total; more are answered 503.
    #[arg(long, env = "RTET_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Connections being opened at once: from their first bytes through the TLS handshake and
    /// the request headers to the WebSocket upgrade or the first HTTP answer. Opening buffers
    /// are large and short-lived; bounding how many exist at once bounds the memory a burst of
    /// connections leaves behind. More wait in the handshake queue.
    #[arg(long, env = "RTET_MAX_HANDSHAKES", value_name = "N")]
    pub max_handshakes: Option<usize>,

    /// Of `--max-handshakes`, the slots connections from one client address (per /64 for IPv6)
    /// may hold at once; its further connections wait in the handshake queue for one of its own
    /// slots. So clients that send a few bytes and stall hold at most this many slots per
    /// address, and everyone else keeps connecting. Not applied to a `--trusted-proxy` peer:
    /// the address behind it is known only after the request headers, and the proxy bounds its
    /// own clients.
    #[arg(long, env = "RTET_HANDSHAKES_PER_IP", value_name = "N")]
    pub handshakes_per_ip: Option<usize>,

    /// Connections waiting for one of `--max-handshakes` to finish. When the queue is full, or
    /// a connection has waited the handshake timeout (10 s), it is answered 503 with
    /// Retry-After (over TLS: closed).
    #[arg(long, env = "RTET_HANDSHAKE_QUEUE", value_name = "N")]
    pub handshake_queue: Option<usize>,

    /// Channels the relay holds at once; publishing to or subscribing to a new channel beyond
    /// this is refused `rate_limited` (HTTP 429) until idle channels are forgotten.
    #[arg(long, env = "RTET_MAX_CHANNELS", value_name = "N")]
    pub max_channels: Option<usize>,

    /// Bytes of encoded events held in all channels' history together (with about 100 bytes of
    /// bookkeeping per event on top). When full, a publish is refused `rate_limited` (HTTP 429)
    /// until history ages out.
    #[arg(long, env = "RTET_MAX_HISTORY_BYTES", value_name = "BYTES")]
    pub max_history_bytes: Option<usize>,

    /// (channel, id) pairs remembered for dedupe in all channels together (about 200 bytes
    /// each). When full, a publish is refused `rate_limited` (HTTP 429) until entries pass the
    /// dedupe window.
    #[arg(long, env = "RTET_MAX_DEDUPE_ENTRIES", value_name = "N")]
    pub max_dedupe_entries: Option<usize>,

    /// Bytes of history one subscribe may replay; a `since` further back than this gets
    /// `recovered: false` and no replay (the client refetches).
    #[arg(long, env = "RTET_MAX_REPLAY_BYTES", value_name = "BYTES")]
    pub max_replay_bytes: Option<usize>,

    /// Bytes of history replayed to one connection per minute (all at once, then refilled over
    /// the minute); a subscribe beyond it gets `recovered: false` and no replay.
    #[arg(long, env = "RTET_REPLAY_BYTES_PER_CONNECTION", value_name = "BYTES")]
    pub replay_bytes_per_connection: Option<usize>,

    /// Bytes of history replayed to one client address (IPv6: one /64) per minute, over all
    /// its connections; a subscribe beyond it gets `recovered: false` and no replay.
    #[arg(long, env = "RTET_REPLAY_BYTES_PER_IP", value_name = "BYTES")]
    pub replay_bytes_per_ip: Option<usize>,

    /// Frames queued for one subscriber; a subscriber that falls this far behind is
    /// disconnected with close code 4408 and resumes with `since`.
    #[arg(long, env = "RTET_SUBSCRIBER_QUEUE", value_name = "FRAMES")]
    pub subscriber_queue: Option<usize>,

    /// A subscriber must send its first frame within this, or is closed with 1008.
    #[arg(long, env = "RTET_FIRST_FRAME_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub first_frame_timeout: Option<Duration>,

    /// Interval between WebSocket pings from the relay.
    #[arg(long, env = "RTET_PING_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub ping_interval: Option<Duration>,

    /// A connection from which nothing (not even a pong) arrives for this long is closed.
    #[arg(long, env = "RTET_DEAD_PEER_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub dead_peer_timeout: Option<Duration>,

    /// Clock leeway when checking token expiry; at most 60s.
    #[arg(long, env = "RTET_TOKEN_LEEWAY", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub token_leeway: Option<Duration>,

    /// How long a client may take to send the body of `POST /api/send-event`; slower ones are
    /// answered 408.
    #[arg(long, env = "RTET_HTTP_BODY_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub http_body_timeout: Option<Duration>,

    /// On SIGTERM/SIGINT, how long to wait for in-flight publishes and subscriber queues.
    #[arg(long, env = "RTET_SHUTDOWN_GRACE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,

    /// Address or CIDR range of a reverse proxy in front of the relay (e.g. 127.0.0.1 for nginx on
    /// the same host); repeat for several. From these peers only, the client is the right-most
    /// X-Forwarded-For address that is not itself a trusted proxy, else X-Real-IP; from any other
    /// peer those headers are ignored. [default: none, the TCP peer address is the client]
    #[arg(
        long = "trusted-proxy",
        env = "RTET_TRUSTED_PROXIES",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub trusted_proxies: Vec<String>,

    /// A separate address for `GET /metrics` (e.g. 127.0.0.1:9090, reachable only by the
    /// monitoring system); when set, the main port does not serve it.
    /// [default: none, /metrics on the main port as --metrics-token says]
    #[arg(long, env = "RTET_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Bearer token that `GET /metrics` on the main port requires (prefer the environment
    /// variable: the command line is visible to every local user).
    /// [default: none, /metrics answers only loopback clients that came through no proxy]
    #[arg(
        long,
        env = "RTET_METRICS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,

    /// Where channels' seq, history and dedupe live: `memory` (this process only), or a Redis
    /// server shared by several relay nodes: `redis://[:PASSWORD@]HOST:PORT/DB`, `rediss://...`
    /// (TLS), `redis+unix:///PATH?db=N` or `unix:///PATH` (prefer the environment variable for a
    /// password: the command line is visible to every local user).
    #[arg(long, env = "RTET_ENGINE", value_name = "URL", hide_env_values = true)]
    pub engine: Option<String>,

    /// Threads that run connections and the fan-out of events. When several relay nodes (or
    /// other busy processes) share a machine, give each its share of the cores: more busy
    /// threads than cores make the fan-out write each subscriber fewer events at a time, which
    /// costs CPU per delivery (BENCHMARKS.md, "Several nodes").
    /// [default: none, one per CPU]
    #[arg(long, env = "RTET_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<usize>,

    /// PEM certificate chain, to serve wss:// and https:// (with --tls-key). [default: none, plain]
    #[arg(long, env = "RTET_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert. [default: none]
    #[arg(long, env = "RTET_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Certificate and key files for serving TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The resolved configuration the server runs with.
#[derive(Clone)]
pub struct Config {
    /// Where the binary binds (tests bind their own listener and ignore this).
    pub listen: SocketAddr,
    /// Accepted API keys, each at least [`MIN_KEY_LEN`] characters. Never logged.
    pub api_keys: Vec<String>,
    /// Allowed `Origin` values for `/ws`, normalised (lower case, no trailing `/`); empty: any.
    pub allowed_origins: Vec<String>,
    /// Channels open to subscribers without a token.
    pub anonymous_channels: Vec<String>,
    /// The protocol's limits (frame size, rates, history, queue, timeouts, ...).
    pub limits: Limits,
    /// Open WebSocket connections in total.
    pub max_connections: usize,
    /// Connections being opened at once (TLS handshake, request headers, upgrade).
    pub max_handshakes: usize,
    /// Of those, the ones one client address (not a trusted proxy) holds at once.
    pub handshakes_per_ip: usize,
    /// Connections waiting for an opening slot; more are answered 503.
    pub handshake_queue: usize,
    /// Channels held at once.
    pub max_channels: usize,
    /// Bytes of encoded events in all channels' history together.
    pub max_history_bytes: usize,
    /// (channel, id) pairs remembered in all channels together.
    pub max_dedupe_entries: usize,
    /// Bytes one subscribe may replay.
    pub max_replay_bytes: usize,
    /// Replay bytes per connection per minute.
    pub replay_bytes_per_connection: usize,
    /// Replay bytes per client address per minute.
    pub replay_bytes_per_ip: usize,
    /// Grace period at shutdown.
    pub shutdown_grace: Duration,
    /// Time allowed for the body of an HTTP publish.
    pub http_body_timeout: Duration,
    /// Longest remaining lifetime of a subscriber token.
    pub max_token_lifetime: Duration,
    /// A separate address serving `/metrics`; then the main port does not.
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer token that `/metrics` on the main port requires; none: loopback only.
    pub metrics_token: Option<String>,
    /// Reverse proxies whose forwarding headers name the client; empty: the TCP peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Serve TLS with these files; none: plain TCP.
    pub tls: Option<TlsFiles>,
    /// Where channels' seq, history and dedupe live.
    pub engine: EngineChoice,
    /// Runtime worker threads; none: one per CPU. Read by the binary, which builds the runtime.
    pub worker_threads: Option<usize>,
}

/// The engine the relay runs with (`--engine`).
#[derive(Clone, PartialEq, Eq)]
pub enum EngineChoice {
    /// This process's memory: one relay node.
    Memory,
    /// A Redis server shared by every node; the URL may hold a password.
    Redis(RedisUrl),
}

impl EngineChoice {
    /// Parses `memory` or a Redis URL the client accepts; the error never repeats a password.
    pub fn parse(text: &str) -> Result<EngineChoice, ConfigError> {
        let text = text.trim();
        if text == "memory" {
            return Ok(EngineChoice::Memory);
        }
        let invalid = |why: String| ConfigError::Invalid {
            name: "engine",
            message: format!(
                "{} {why}; expected memory, redis://[:PASSWORD@]HOST:PORT/DB, rediss://..., \
                 redis+unix:///PATH or unix:///PATH",
                RedisUrl(text.to_owned())
            ),
        };
        let scheme = text.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("redis" | "rediss" | "redis+unix" | "unix")) {
            return Err(invalid("is not a known engine".into()));
        }
        // The client's own message may quote the URL, password and all: say only that it failed.
        redis::Client::open(text)
            .map_err(|_| invalid("is not a Redis URL the client takes".into()))?;
        Ok(EngineChoice::Redis(RedisUrl(text.to_owned())))
    }
}

impl std::fmt::Debug for EngineChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineChoice::Memory => f.write_str("memory"),
            EngineChoice::Redis(url) => write!(f, "{url}"),
        }
    }
}

/// A Redis URL. `Display` and `Debug` show it with any password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL itself, password included: for the client only, never for a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = &self.0;
        // The user info is what lies between "://" and the last '@' before the path.
        let Some((scheme, rest)) = url.split_once("://") else {
            return f.write_str(url);
        };
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => write!(f, "{scheme}://***@{}", &rest[at + 1..]),
            None => f.write_str(url),
        }
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Debug for Config {
    /// Like a derived `Debug`, but the keys are shown only by count.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .field("allowed_origins", &self.allowed_origins)
            .field("anonymous_channels", &self.anonymous_channels)
            .field("limits", &self.limits)
            .field("max_connections", &self.max_connections)
            .field("max_handshakes", &self.max_handshakes)
            .field("handshakes_per_ip", &self.handshakes_per_ip)
            .field("handshake_queue", &self.handshake_queue)
            .field("max_channels", &self.max_channels)
            .field("max_history_bytes", &self.max_history_bytes)
            .field("max_dedupe_entries", &self.max_dedupe_entries)
            .field("max_replay_bytes", &self.max_replay_bytes)
            .field(
                "replay_bytes_per_connection",
                &self.replay_bytes_per_connection,
            )
            .field("replay_bytes_per_ip", &self.replay_bytes_per_ip)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("http_body_timeout", &self.http_body_timeout)
            .field("max_token_lifetime", &self.max_token_lifetime)
            .field("metrics_listen", &self.metrics_listen)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "[redacted]"),
            )
            .field("trusted_proxies", &self.trusted_proxies)
            .field("tls", &self.tls)
            .field("engine", &self.engine)
            .field("worker_threads", &self.worker_threads)
            .finish()
    }
}

impl Config {
    /// The defaults, with these API keys: the one place the relay's own
    /// defaults are written (the protocol's come from [`Limits::default`]).
    /// Call [`Config::validate`] before use if the keys come from a user.
    pub fn new<K: Into<String>>(api_keys: impl IntoIterator<Item = K>) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            api_keys: api_keys.into_iter().map(Into::into).collect(),
            allowed_origins: Vec::new(),
            anonymous_channels: vec!["public".to_owned()],
            limits: Limits::default(),
            max_connections: 200_000,
            max_handshakes: 256,
            handshakes_per_ip: 16,
            handshake_queue: 65_536,
            max_channels: 100_000,
            max_history_bytes: 128 * 1024 * 1024,
            max_dedupe_entries: 500_000,
            max_replay_bytes: 1024 * 1024,
            replay_bytes_per_connection: 4 * 1024 * 1024,
            replay_bytes_per_ip: 16 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
            http_body_timeout: Duration::from_secs(10),
            max_token_lifetime: Duration::from_secs(24 * 3600),
            metrics_listen: None,
            metrics_token: None,
            trusted_proxies: Vec::new(),
            tls: None,
            engine: EngineChoice::Memory,
            worker_threads: None,
        }
    }

    /// Parses flags and environment, reads the file named by `--config`/`RTET_CONFIG`,
    /// and resolves everything.
    pub fn from_args<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut cli = Settings::from_arg_matches(
            &Settings::command_with_defaults().try_get_matches_from(args)?,
        )?;
        if let Some(key) = std::env::var_os(API_KEY_ENV) {
            cli.api_keys.push(key.to_string_lossy().into_owned());
        }
        let file = match &cli.config {
            Some(path) => Some(Settings::from_file(path)?),
            None => None,
        };
        Config::resolve(cli, file)
    }

    /// Merges flags/environment (`cli`, which clap already merged) over the file over defaults.
    pub fn resolve(cli: Settings, file: Option<Settings>) -> Result<Config, ConfigError> {
        let file = file.unwrap_or_default();
        let d = Config::new(Vec::<String>::new());
        let dl = &d.limits;
        fn pick<T>(a: Option<T>, b: Option<T>, default: T) -> T {
            a.or(b).unwrap_or(default)
        }
        fn pick_list(a: Vec<String>, b: Vec<String>, default: Vec<String>) -> Vec<String> {
            let chosen = if !a.is_empty() {
                a
            } else if !b.is_empty() {
                b
            } else {
                default
            };
            chosen
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        }
        let limits = Limits {
            max_frame_bytes: pick(
                cli.max_frame_bytes,
                file.max_frame_bytes,
                dl.max_frame_bytes,
            ),
            max_token_bytes: pick(
                cli.max_token_bytes,
                file.max_token_bytes,
                dl.max_token_bytes,
            ),
            max_subscriptions: pick(
                cli.max_subscriptions,
                file.max_subscriptions,
                dl.max_subscriptions,
            ),
            client_frames_per_sec: pick(
                cli.client_frames_per_sec,
                file.client_frames_per_sec,
                dl.client_frames_per_sec,
            ),
            client_frames_burst: pick(
                cli.client_frames_burst,
                file.client_frames_burst,
                dl.client_frames_burst,
            ),
            publishes_per_sec_per_key: pick(
                cli.publishes_per_sec,
                file.publishes_per_sec,
                dl.publishes_per_sec_per_key,
            ),
            connections_per_ip: pick(
                cli.connections_per_ip,
                file.connections_per_ip,
                dl.connections_per_ip,
            ),
            history_events: pick(cli.history_size, file.history_size, dl.history_events),
            history_age: pick(cli.history_age, file.history_age, dl.history_age),
            subscriber_queue_frames: pick(
                cli.subscriber_queue,
                file.subscriber_queue,
                dl.subscriber_queue_frames,
            ),
            dedupe_window: pick(cli.dedupe_window, file.dedupe_window, dl.dedupe_window),
            first_frame_timeout: pick(
                cli.first_frame_timeout,
                file.first_frame_timeout,
                dl.first_frame_timeout,
            ),
            ping_interval: pick(cli.ping_interval, file.ping_interval, dl.ping_interval),
            dead_peer_timeout: pick(
                cli.dead_peer_timeout,
                file.dead_peer_timeout,
                dl.dead_peer_timeout,
            ),
            token_leeway: pick(cli.token_leeway, file.token_leeway, dl.token_leeway),
            max_data_depth: pick(cli.max_data_depth, file.max_data_depth, dl.max_data_depth),
            max_presence_members: pick(
                cli.max_presence_members,
                file.max_presence_members,
                dl.max_presence_members,
            ),
        };
        let tls = match (cli.tls_cert.or(file.tls_cert), cli.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "tls_cert/tls_key",
                    message: "give both a certificate and a key, or neither".into(),
                })
            }
        };
        let mut cli_keys = cli.api_keys;
        if let Some(path) = &cli.api_key_file {
            cli_keys.extend(read_key_file(path)?);
        }
        let mut file_keys = file.api_keys;
        if let Some(path) = &file.api_key_file {
            file_keys.extend(read_key_file(path)?);
        }
        let config = Config {
            listen: pick(cli.listen, file.listen, d.listen),
            api_keys: pick_list(cli_keys, file_keys, Vec::new()),
            allowed_origins: pick_list(cli.allowed_origins, file.allowed_origins, Vec::new())
                .iter()
                .map(|o| normalize_origin(o))
                .collect(),
            anonymous_channels: pick_list(
                cli.anonymous_channels,
                file.anonymous_channels,
                d.anonymous_channels.clone(),
            ),
            limits,
            max_connections: pick(cli.max_connections, file.max_connections, d.max_connections),
            max_handshakes: pick(cli.max_handshakes, file.max_handshakes, d.max_handshakes),
            handshakes_per_ip: pick(
                cli.handshakes_per_ip,
                file.handshakes_per_ip,
                d.handshakes_per_ip,
            ),
            handshake_queue: pick(cli.handshake_queue, file.handshake_queue, d.handshake_queue),
            max_channels: pick(cli.max_channels, file.max_channels, d.max_channels),
            max_history_bytes: pick(
                cli.max_history_bytes,
                file.max_history_bytes,
                d.max_history_bytes,
            ),
            max_dedupe_entries: pick(
                cli.max_dedupe_entries,
                file.max_dedupe_entries,
                d.max_dedupe_entries,
            ),
            max_replay_bytes: pick(
                cli.max_replay_bytes,
                file.max_replay_bytes,
                d.max_replay_bytes,
            ),
            replay_bytes_per_connection: pick(
                cli.replay_bytes_per_connection,
                file.replay_bytes_per_connection,
                d.replay_bytes_per_connection,
            ),
            replay_bytes_per_ip: pick(
                cli.replay_bytes_per_ip,
                file.replay_bytes_per_ip,
                d.replay_bytes_per_ip,
            ),
            shutdown_grace: pick(cli.shutdown_grace, file.shutdown_grace, d.shutdown_grace),
            http_body_timeout: pick(
                cli.http_body_timeout,
                file.http_body_timeout,
                d.http_body_timeout,
            ),
            max_token_lifetime: pick(
                cli.max_token_lifetime,
                file.max_token_lifetime,
                d.max_token_lifetime,
            ),
            metrics_listen: cli.metrics_listen.or(file.metrics_listen),
            metrics_token: cli.metrics_token.or(file.metrics_token),
            trusted_proxies: pick_list(cli.trusted_proxies, file.trusted_proxies, Vec::new())
                .iter()
                .map(|p| parse_proxy(p))
                .collect::<Result<_, _>>()?,
            tls,
            engine: match cli.engine.or(file.engine) {
                Some(text) => EngineChoice::parse(&text)?,
                None => d.engine.clone(),
            },
            worker_threads: cli.worker_threads.or(file.worker_threads),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks what the relay cannot run with: no key, a short or example key, a bad
    /// anonymous channel name, a zero limit or a leeway above 60 s.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.api_keys.is_empty() {
            return Err(ConfigError::NoKey);
        }
        for (i, key) in self.api_keys.iter().enumerate() {
            rtet_protocol::keys::check_key(key).map_err(|problem| ConfigError::BadKey {
                index: i + 1,
                problem,
            })?;
        }
        for channel in &self.anonymous_channels {
            validate_channel(channel).map_err(|e| ConfigError::Invalid {
                name: "anonymous_channels",
                message: e.to_string(),
            })?;
        }
        let l = &self.limits;
        let positive: [(&'static str, bool); 20] = [
            ("max_frame_bytes", l.max_frame_bytes > 0),
            ("max_token_bytes", l.max_token_bytes > 0),
            ("client_frames_per_sec", l.client_frames_per_sec > 0),
            ("client_frames_burst", l.client_frames_burst > 0),
            ("publishes_per_sec", l.publishes_per_sec_per_key > 0),
            ("connections_per_ip", l.connections_per_ip > 0),
            ("subscriber_queue", l.subscriber_queue_frames > 0),
            ("ping_interval", !l.ping_interval.is_zero()),
            ("dead_peer_timeout", !l.dead_peer_timeout.is_zero()),
            ("max_channels", self.max_channels > 0),
            ("max_connections", self.max_connections > 0),
            ("max_handshakes", self.max_handshakes > 0),
            ("handshakes_per_ip", self.handshakes_per_ip > 0),
            ("max_subscriptions", l.max_subscriptions > 0),
            ("first_frame_timeout", !l.first_frame_timeout.is_zero()),
            ("http_body_timeout", !self.http_body_timeout.is_zero()),
            ("max_token_lifetime", !self.max_token_lifetime.is_zero()),
            ("max_data_depth", l.max_data_depth > 0),
            ("max_history_bytes", self.max_history_bytes > 0),
            ("max_dedupe_entries", self.max_dedupe_entries > 0),
        ];
        for (name, ok) in positive {
            if !ok {
                return Err(ConfigError::Invalid {
                    name,
                    message: "must be greater than zero".into(),
                });
            }
        }
        if let Some(n) = self.worker_threads {
            if !(1..=MAX_WORKER_THREADS).contains(&n) {
                return Err(ConfigError::Invalid {
                    name: "worker_threads",
                    message: format!("must be 1 to {MAX_WORKER_THREADS}"),
                });
            }
        }
        if l.dedupe_window < MIN_DEDUPE_WINDOW {
            return Err(ConfigError::Invalid {
                name: "dedupe_window",
                message: "the protocol promises at least 10m".into(),
            });
        }
        if self.max_token_lifetime > MAX_TOKEN_LIFETIME {
            return Err(ConfigError::Invalid {
                name: "max_token_lifetime",
                message: format!(
                    "at most {}: subscriber tokens are short-lived",
                    humantime::format_duration(MAX_TOKEN_LIFETIME)
                ),
            });
        }
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.len() < MIN_KEY_LEN)
        {
            return Err(ConfigError::Invalid {
                name: "metrics_token",
                message: format!("at least {MIN_KEY_LEN} characters (try: openssl rand -hex 32)"),
            });
        }
        if l.token_leeway > MAX_LEEWAY {
            return Err(ConfigError::Invalid {
                name: "token_leeway",
                message: format!("the protocol allows at most {}s", MAX_LEEWAY.as_secs()),
            });
        }
        Ok(())
    }
}

impl Settings {
    /// The defaults [`Config::new`] and [`Limits::default`] give, as
    /// `(setting, value)` in the form flags and files take. `--help` shows
    /// them and the documentation is checked against them, so each default is
    /// written once. Settings without a default value (keys, origins, TLS
    /// files, trusted proxies) say what their absence means in their help.
    pub fn defaults() -> Vec<(&'static str, String)> {
        let c = Config::new(Vec::<String>::new());
        let l = &c.limits;
        let duration = |d: Duration| humantime::format_duration(d).to_string();
        vec![
            ("listen", c.listen.to_string()),
            ("anonymous_channels", c.anonymous_channels.join(",")),
            ("history_size", l.history_events.to_string()),
            ("history_age", duration(l.history_age)),
            ("dedupe_window", duration(l.dedupe_window)),
            ("max_frame_bytes", l.max_frame_bytes.to_string()),
            ("max_token_bytes", l.max_token_bytes.to_string()),
            ("max_token_lifetime", duration(c.max_token_lifetime)),
            ("max_data_depth", l.max_data_depth.to_string()),
            ("max_subscriptions", l.max_subscriptions.to_string()),
            ("max_presence_members", l.max_presence_members.to_string()),
            ("client_frames_per_sec", l.client_frames_per_sec.to_string()),
            ("client_frames_burst", l.client_frames_burst.to_string()),
            ("publishes_per_sec", l.publishes_per_sec_per_key.to_string()),
            ("connections_per_ip", l.connections_per_ip.to_string()),
            ("max_connections", c.max_connections.to_string()),
            ("max_handshakes", c.max_handshakes.to_string()),
            ("handshakes_per_ip", c.handshakes_per_ip.to_string()),
            ("handshake_queue", c.handshake_queue.to_string()),
            ("max_channels", c.max_channels.to_string()),
            ("max_history_bytes", c.max_history_bytes.to_string()),
            ("max_dedupe_entries", c.max_dedupe_entries.to_string()),
            ("max_replay_bytes", c.max_replay_bytes.to_string()),
            (
                "replay_bytes_per_connection",
                c.replay_bytes_per_connection.to_string(),
            ),
            ("replay_bytes_per_ip", c.replay_bytes_per_ip.to_string()),
            ("subscriber_queue", l.subscriber_queue_frames.to_string()),
            ("first_frame_timeout", duration(l.first_frame_timeout)),
            ("ping_interval", duration(l.ping_interval)),
            ("dead_peer_timeout", duration(l.dead_peer_timeout)),
            ("token_leeway", duration(l.token_leeway)),
            ("shutdown_grace", duration(c.shutdown_grace)),
            ("http_body_timeout", duration(c.http_body_timeout)),
            ("engine", format!("{:?}", c.engine)),
        ]
    }

    /// The command line parser, its help showing every default from [`Settings::defaults`].
    /// (The defaults are not clap defaults: an unset flag must leave room for the
    /// environment and the file.)
    pub fn command_with_defaults() -> clap::Command {
        let mut command = Settings::command();
        for (name, value) in Settings::defaults() {
            command = command.mut_arg(name, |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                arg.help(format!("{help} [default: {value}]"))
            });
        }
        command
    }

    /// Reads a TOML file of settings.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

/// The keys in a key file: one per line, blank lines and `#` comments
/// skipped. A file every local user may read is refused: its key is no secret.
fn read_key_file(path: &Path) -> Result<Vec<String>, ConfigError> {
    let error = |source| ConfigError::ReadKeyFile {
        path: path.to_owned(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(error)?.permissions().mode();
        if mode & 0o004 != 0 {
            return Err(ConfigError::KeyFileReadable {
                path: path.to_owned(),
            });
        }
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// A trusted proxy as written: a CIDR range (`10.0.0.0/8`) or one address (`127.0.0.1`).
fn parse_proxy(text: &str) -> Result<IpNet, ConfigError> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| ConfigError::Invalid {
            name: "trusted_proxies",
            message: format!("{text:?} is neither an address nor a CIDR range (like 10.0.0.0/8)"),
        })
}

/// Lower-cases an origin and drops a trailing `/`, so `https://Example.com/`
/// matches the browser's `https://example.com`.
pub fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn parse(args: &[&str]) -> Settings {
        Settings::try_parse_from(std::iter::once("rtet-relay").chain(args.iter().copied()))
            .expect("flags parse")
    }

    #[test]
    fn the_engine_is_memory_or_a_redis_url_and_a_password_is_never_shown() {
        let c = Config::resolve(parse(&["--api-key", KEY]), None).unwrap();
        assert_eq!(c.engine, EngineChoice::Memory);
        for url in [
            "redis://127.0.0.1:6379/0",
            "rediss://cache.example:6380/2",
            "redis+unix:///run/redis.sock",
            "unix:///run/redis.sock",
        ] {
            let c = Config::resolve(parse(&["--api-key", KEY, "--engine", url]), None).unwrap();
            assert!(matches!(c.engine, EngineChoice::Redis(_)), "{url}");
        }
        let secret = "redis://:hunter2-secret@10.0.0.5:6379/1";
        let c = Config::resolve(parse(&["--api-key", KEY, "--engine", secret]), None).unwrap();
        let EngineChoice::Redis(url) = &c.engine else {
            panic!("redis")
        };
        assert_eq!(url.expose(), secret, "the client gets the password");
        assert_eq!(url.to_string(), "redis://***@10.0.0.5:6379/1");
        assert!(!format!("{c:?}").contains("hunter2"));
        for bad in [
            "postgres://x",
            "redis",
            "redis://:pw-secret@host:notaport/0",
            "memroy",
        ] {
            let err = Config::resolve(parse(&["--api-key", KEY, "--engine", bad]), None)
                .unwrap_err()
                .to_string();
            assert!(err.contains("engine"), "{bad}: {err}");
            assert!(!err.contains("pw-secret"), "{bad}: {err}");
        }
        let file: Settings = toml::from_str("engine = \"redis://127.0.0.1:1/0\"").unwrap();
        let c = Config::resolve(parse(&["--api-key", KEY]), Some(file)).unwrap();
        assert!(matches!(c.engine, EngineChoice::Redis(_)), "from the file");
    }

    #[test]
    fn defaults_match_the_protocol_table() {
        let c = Config::resolve(parse(&["--api-key", KEY]), None).unwrap();
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.anonymous_channels, vec!["public"]);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8090");
        assert!(c.allowed_origins.is_empty());
    }

    #[test]
    fn flags_beat_file_and_file_beats_defaults() {
        let file: Settings = toml::from_str(&format!(
            "api_keys = [\"{KEY}\"]\nhistory_size = 5\nhistory_age = \"30s\"\nmax_subscriptions = 3\nallowed_origins = [\"https://A.example/\"]\nworker_threads = 2\n"
        ))
        .unwrap();
        let c = Config::resolve(parse(&["--history-size", "7"]), Some(file)).unwrap();
        assert_eq!(c.limits.history_events, 7, "flag wins");
        assert_eq!(c.limits.history_age, Duration::from_secs(30), "file wins");
        assert_eq!(c.limits.max_subscriptions, 3);
        assert_eq!(c.limits.client_frames_burst, 50, "default");
        assert_eq!(c.allowed_origins, vec!["https://a.example"]);
        assert_eq!(c.api_keys, vec![KEY]);
        assert_eq!(c.worker_threads, Some(2), "file wins");
        assert_eq!(
            Config::new([KEY]).worker_threads,
            None,
            "default: one per CPU"
        );
    }

    #[test]
    fn refuses_missing_and_short_keys() {
        assert!(matches!(
            Config::resolve(parse(&[]), None),
            Err(ConfigError::NoKey)
        ));
        assert!(matches!(
            Config::resolve(parse(&["--api-key", "short"]), None),
            Err(ConfigError::BadKey {
                index: 1,
                problem: rtet_protocol::keys::KeyError::TooShort { len: 5 }
            })
        ));
    }

    #[test]
    fn refuses_a_dedupe_window_under_ten_minutes_and_a_leeway_over_60s() {
        let short = parse(&["--api-key", KEY, "--dedupe-window", "5m"]);
        assert!(matches!(
            Config::resolve(short, None),
            Err(ConfigError::Invalid {
                name: "dedupe_window",
                ..
            })
        ));
        let leeway = parse(&["--api-key", KEY, "--token-leeway", "2m"]);
        assert!(Config::resolve(leeway, None).is_err());
    }

    #[test]
    fn trusted_proxies_take_addresses_and_ranges_from_flags_env_lists_and_files() {
        let c = Config::resolve(
            parse(&[
                "--api-key",
                KEY,
                "--trusted-proxy",
                "127.0.0.1",
                "--trusted-proxy",
                "10.0.0.0/8,::1",
            ]),
            None,
        )
        .unwrap();
        let shown: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        let file: Settings = toml::from_str("trusted_proxies = [\"192.168.0.0/16\"]").unwrap();
        let c = Config::resolve(parse(&["--api-key", KEY]), Some(file)).unwrap();
        assert_eq!(
            c.trusted_proxies,
            vec!["192.168.0.0/16".parse::<IpNet>().unwrap()]
        );
        assert!(
            Config::new([KEY]).trusted_proxies.is_empty(),
            "none by default"
        );
        let bad = parse(&["--api-key", KEY, "--trusted-proxy", "nginx"]);
        assert!(matches!(
            Config::resolve(bad, None),
            Err(ConfigError::Invalid {
                name: "trusted_proxies",
                ..
            })
        ));
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        assert!(toml::from_str::<Settings>("histroy_size = 5").is_err());
    }

    #[test]
    fn debug_never_shows_keys() {
        let c = Config::new([KEY]);
        assert!(!format!("{c:?}").contains(KEY));
    }
}
