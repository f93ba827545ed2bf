//! What a publisher needs to know: where the relay is, the key, and the
//! limits and timeouts of the queue, the spool and the connection.
//!
//! [`SETTINGS`] is the one definition of every setting and its default, as
//! text: the extension registers its php.ini directives from it,
//! [`Config::new`] applies its defaults through the same parser that reads
//! php.ini ([`Config::set`]), and a test checks the stub's docblock
//! (`php/rtet.stub.php`) and `packaging/rtet.ini` against it.

use std::ffi::CStr;
use std::path::PathBuf;
use std::time::Duration;

use rtet_protocol::RelayUrl;
use sha2::{Digest, Sha256};

use crate::Error;

/// How a setting's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text; written in quotes in php.ini.
    Text,
    /// A non-negative integer.
    Int,
    /// `1`/`0` (also `on`/`off`, `yes`/`no`, `true`/`false`).
    Bool,
}

/// One php.ini directive.
#[derive(Debug)]
pub struct Setting {
    /// The directive, `rtet.<option>`.
    pub ini: &'static CStr,
    /// Its default as php.ini text.
    pub default: &'static CStr,
    /// How its value is written.
    pub kind: Kind,
    /// What it does, for the docs.
    pub about: &'static str,
}

impl Setting {
    /// The directive as text (`rtet.queue_limit`).
    pub fn name(&self) -> &'static str {
        self.ini.to_str().unwrap_or("")
    }

    /// The `rtet_configure()` option name: the directive without `rtet.`.
    pub fn option(&self) -> &'static str {
        let name = self.name();
        name.strip_prefix("rtet.").unwrap_or(name)
    }

    /// The default as text.
    pub fn default_text(&self) -> &'static str {
        self.default.to_str().unwrap_or("")
    }

    /// Whether `rtet_configure()` takes it as an option (URL and key are its arguments).
    pub fn is_option(&self) -> bool {
        !matches!(self.option(), "relay_url" | "api_key")
    }
}

/// Every directive and its default: the one definition (see the module doc).
pub const SETTINGS: [Setting; 12] = [
    Setting {
        ini: c"rtet.relay_url",
        default: c"",
        kind: Kind::Text,
        about: "relay base URL: ws://, wss://, http:// or https://, optionally with a path prefix",
    },
    Setting {
        ini: c"rtet.api_key",
        default: c"",
        kind: Kind::Text,
        about: "publisher API key (never shown by phpinfo)",
    },
    Setting {
        ini: c"rtet.connect_timeout_ms",
        default: c"1000",
        kind: Kind::Int,
        about: "one connection attempt: TCP, TLS and upgrade",
    },
    Setting {
        ini: c"rtet.queue_limit",
        default: c"10000",
        kind: Kind::Int,
        about: "events in memory before new ones go to the spool",
    },
    Setting {
        ini: c"rtet.queue_limit_bytes",
        default: c"16777216",
        kind: Kind::Int,
        about: "bytes of frames in memory before new events go to the spool",
    },
    Setting {
        ini: c"rtet.spool_dir",
        default: c"",
        kind: Kind::Text,
        about: "spool directory; empty: a private one per user, $TMPDIR/rtet-spool-<uid>",
    },
    Setting {
        ini: c"rtet.shutdown_timeout_ms",
        default: c"2000",
        kind: Kind::Int,
        about: "wait for acks at process end, then spool the rest",
    },
    Setting {
        ini: c"rtet.ca_file",
        default: c"",
        kind: Kind::Text,
        about: "extra CA certificate (PEM) trusted for wss://",
    },
    Setting {
        ini: c"rtet.verify_tls",
        default: c"1",
        kind: Kind::Bool,
        about: "verify the relay's certificate and host name; 0 is insecure, for tests only",
    },
    Setting {
        ini: c"rtet.max_frame_bytes",
        default: c"65536",
        kind: Kind::Int,
        about: "the relay's frame limit; larger events are refused at once",
    },
    Setting {
        ini: c"rtet.reconnect_max_ms",
        default: c"5000",
        kind: Kind::Int,
        about: "longest pause between reconnect attempts",
    },
    Setting {
        ini: c"rtet.max_inflight",
        default: c"1024",
        kind: Kind::Int,
        about: "frames sent but not yet acked before the sender waits for acks",
    },
];

/// One relay as a publisher sees it. Every field has a default (from
/// [`SETTINGS`]) except the URL and the key; the extension fills them from
/// php.ini and `rtet_configure()`.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// The relay's URL as configured; [`RelayUrl`] says which forms it takes.
    pub relay_url: String,
    /// The publisher API key, sent as `Authorization: Bearer`. Never logged.
    pub api_key: String,
    /// How long one connection attempt (TCP, TLS and upgrade) may take.
    pub connect_timeout: Duration,
    /// Events held in memory before new ones go to the spool file.
    pub queue_limit: usize,
    /// Bytes of frames held in memory before new ones go to the spool file,
    /// so that a slow relay cannot make one worker hold `queue_limit` large events.
    pub queue_limit_bytes: usize,
    /// Where spool files live (see [`crate::spool`] for what it must be).
    pub spool_dir: PathBuf,
    /// How long process end waits for acks before spooling the rest.
    pub shutdown_timeout: Duration,
    /// Extra CA certificate (PEM) trusted for `wss://`, e.g. a private CA.
    pub ca_file: Option<PathBuf>,
    /// Verify the relay's certificate and host name. Turning it off is for
    /// development only.
    pub verify_tls: bool,
    /// Largest publish frame the relay accepts, in bytes (the protocol's by default).
    pub max_frame_bytes: usize,
    /// First reconnect delay; doubles up to `reconnect_max`, with full jitter. 100 ms.
    pub reconnect_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// Frames sent but not yet acked before the sender waits for acks.
    pub max_inflight: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("relay_url", &self.relay_url)
            .field("api_key", &"<redacted>")
            .field("connect_timeout", &self.connect_timeout)
            .field("queue_limit", &self.queue_limit)
            .field("queue_limit_bytes", &self.queue_limit_bytes)
            .field("spool_dir", &self.spool_dir)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("ca_file", &self.ca_file)
            .field("verify_tls", &self.verify_tls)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .finish_non_exhaustive()
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Some(true),
        "0" | "off" | "no" | "false" | "" => Some(false),
        _ => None,
    }
}

impl Config {
    /// A config with every default of [`SETTINGS`], for `relay_url` and `api_key`.
    pub fn new(relay_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        let mut cfg = Config {
            relay_url: relay_url.into(),
            api_key: api_key.into(),
            connect_timeout: Duration::ZERO,
            queue_limit: 0,
            queue_limit_bytes: 0,
            spool_dir: PathBuf::new(),
            shutdown_timeout: Duration::ZERO,
            ca_file: None,
            verify_tls: true,
            max_frame_bytes: 0,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::ZERO,
            max_inflight: 0,
        };
        for s in SETTINGS.iter().filter(|s| s.is_option()) {
            // Every default parses: `defaults_apply_and_match_the_protocol` tests it.
            let _ = cfg.set(s.option(), s.default_text());
        }
        cfg
    }

    /// Applies one option (a directive without `rtet.`) from its text.
    pub fn set(&mut self, option: &str, value: &str) -> Result<(), Error> {
        let int = |v: &str| -> Result<u64, Error> {
            v.trim().parse::<u64>().map_err(|_| {
                Error::Config(format!(
                    "{option} must be a non-negative integer, not {v:?}"
                ))
            })
        };
        let size = |v: &str| -> Result<usize, Error> {
            usize::try_from(int(v)?)
                .map_err(|_| Error::Config(format!("{option} is too large: {v}")))
        };
        let at_least_one = |n: usize| -> Result<usize, Error> {
            if n == 0 {
                return Err(Error::Config(format!("{option} must be at least 1")));
            }
            Ok(n)
        };
        match option {
            "connect_timeout_ms" => {
                self.connect_timeout = Duration::from_millis(int(value)?.max(1))
            }
            "queue_limit" => self.queue_limit = at_least_one(size(value)?)?,
            "queue_limit_bytes" => self.queue_limit_bytes = at_least_one(size(value)?)?,
            "spool_dir" => {
                self.spool_dir = if value.is_empty() {
                    default_spool_dir()
                } else {
                    PathBuf::from(value)
                }
            }
            "shutdown_timeout_ms" => self.shutdown_timeout = Duration::from_millis(int(value)?),
            "ca_file" => self.ca_file = (!value.is_empty()).then(|| PathBuf::from(value)),
            "verify_tls" => {
                self.verify_tls = parse_bool(value).ok_or_else(|| {
                    Error::Config(format!("verify_tls must be 1 or 0, not {value:?}"))
                })?
            }
            "max_frame_bytes" => self.max_frame_bytes = at_least_one(size(value)?)?,
            "reconnect_max_ms" => {
                self.reconnect_max = Duration::from_millis(int(value)?.max(1));
                self.reconnect_min = Duration::from_millis(100).min(self.reconnect_max);
            }
            "max_inflight" => self.max_inflight = at_least_one(size(value)?)?,
            other => {
                return Err(Error::Config(format!(
                    "unknown option {other:?}; known: {}",
                    options().collect::<Vec<_>>().join(", ")
                )))
            }
        }
        Ok(())
    }

    /// A short, stable name for this relay and key in spool file names. It is
    /// a hash, so the key cannot be read back from a file name.
    pub fn spool_tag(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"rtet-spool-v1\0");
        h.update(self.relay_url.as_bytes());
        h.update(b"\0");
        h.update(self.api_key.as_bytes());
        h.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The WebSocket URL of the relay's `/publish` endpoint.
    pub fn publish_url(&self) -> Result<String, Error> {
        RelayUrl::parse(&self.relay_url)
            .map(|r| r.publish_ws_url())
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), Error> {
        self.publish_url()?;
        if self.api_key.is_empty() {
            return Err(Error::Config("the API key is empty".into()));
        }
        if self.api_key.chars().any(|c| c.is_control() || c == ' ') {
            return Err(Error::Config(
                "the API key contains spaces or control characters".into(),
            ));
        }
        if self.queue_limit == 0 || self.queue_limit_bytes == 0 || self.max_inflight == 0 {
            return Err(Error::Config(
                "queue_limit, queue_limit_bytes and max_inflight must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// The option names `rtet_configure()` takes, in [`SETTINGS`] order.
pub fn options() -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .filter(|s| s.is_option())
        .map(Setting::option)
}

/// `$TMPDIR/rtet-spool-<uid>`: one directory per user, which
/// [`crate::spool::ensure_dir`] creates private (0700) and refuses when it is
/// not (another user made it first, or it is a link). A per-user name keeps
/// users of one machine out of each other's way; the checks keep a planted
/// directory from being used. A shared `/tmp` lets another local user block
/// spooling by creating the name first (never inject events): set
/// `rtet.spool_dir` to a directory of the PHP user's own where that matters.
pub fn default_spool_dir() -> PathBuf {
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("rtet-spool-{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_map_to_the_publish_endpoint() {
        for (given, want) in [
            ("ws://127.0.0.1:8090", "ws://127.0.0.1:8090/publish"),
            ("http://127.0.0.1:8090/", "ws://127.0.0.1:8090/publish"),
            ("https://relay.example/rt", "wss://relay.example/rt/publish"),
            ("wss://relay.example/publish", "wss://relay.example/publish"),
        ] {
            assert_eq!(Config::new(given, "k").publish_url().unwrap(), want);
        }
        for bad in [
            "",
            "relay.example",
            "ftp://x",
            "ws://",
            "ws://a b",
            "ws://h/?q=1",
        ] {
            assert!(Config::new(bad, "k").publish_url().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_apply_and_match_the_protocol() {
        let mut cfg = Config::new("ws://h:1", "k");
        for s in SETTINGS.iter().filter(|s| s.is_option()) {
            cfg.set(s.option(), s.default_text())
                .unwrap_or_else(|e| panic!("{}: {e}", s.name()));
        }
        assert_eq!(cfg, Config::new("ws://h:1", "k"));
        assert_eq!(
            cfg.max_frame_bytes,
            rtet_protocol::Limits::default().max_frame_bytes
        );
        assert_eq!(
            (cfg.queue_limit, cfg.connect_timeout, cfg.max_inflight),
            (10_000, Duration::from_secs(1), 1024)
        );
        assert!(cfg.verify_tls && cfg.ca_file.is_none());
        assert_eq!(cfg.spool_dir, default_spool_dir());
        assert!(cfg.set("queue_limit", "0").is_err());
        assert!(cfg.set("verify_tls", "maybe").is_err());
        assert!(cfg.set("nope", "1").is_err());
    }

    #[test]
    fn spool_tag_depends_on_url_and_key_but_shows_neither() {
        let a = Config::new("ws://h:1", "k".repeat(32));
        let b = Config::new("ws://h:1", "j".repeat(32));
        assert_ne!(a.spool_tag(), b.spool_tag());
        assert_eq!(a.spool_tag().len(), 16);
        assert!(!format!("{a:?}").contains("kkkk"));
    }
}
