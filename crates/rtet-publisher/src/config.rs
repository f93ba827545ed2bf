//! What a publisher needs to know: where the relay is, the key, and the
//! limits and timeouts of the queue, the spool and the connection.

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::Error;

/// One relay as a publisher sees it. Every field has a default except the
/// URL and the key; the extension fills them from php.ini and `rtet_configure()`.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// The relay's base URL (`ws://`, `wss://`, `http://` or `https://`), or
    /// its full `/publish` URL. `http` maps to `ws` and `https` to `wss`.
    pub relay_url: String,
    /// The publisher API key, sent as `Authorization: Bearer`. Never logged.
    pub api_key: String,
    /// How long one connection attempt (TCP, TLS and upgrade) may take. Default 1 s.
    pub connect_timeout: Duration,
    /// Events held in memory before new ones go to the spool file. Default 10,000.
    pub queue_limit: usize,
    /// Where spool files live; created (mode 0700) when missing.
    /// Default `$TMPDIR/rtet-spool`.
    pub spool_dir: PathBuf,
    /// How long process end waits for acks before spooling the rest. Default 2 s.
    pub shutdown_timeout: Duration,
    /// Extra CA certificate (PEM) trusted for `wss://`, e.g. a private CA. Default none.
    pub ca_file: Option<PathBuf>,
    /// Verify the relay's certificate and host name. Default true; turning it
    /// off is for development only.
    pub verify_tls: bool,
    /// Largest publish frame the relay accepts, in bytes. Default 64 KiB (the protocol's).
    pub max_frame_bytes: usize,
    /// First reconnect delay; doubles up to `reconnect_max`, with full jitter. Default 100 ms.
    pub reconnect_min: Duration,
    /// Largest reconnect delay. Default 5 s.
    pub reconnect_max: Duration,
    /// Frames sent but not yet acked before the sender waits for acks. Default 1,024.
    pub max_inflight: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("relay_url", &self.relay_url)
            .field("api_key", &"<redacted>")
            .field("connect_timeout", &self.connect_timeout)
            .field("queue_limit", &self.queue_limit)
            .field("spool_dir", &self.spool_dir)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("ca_file", &self.ca_file)
            .field("verify_tls", &self.verify_tls)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A config with every default, for `relay_url` and `api_key`.
    pub fn new(relay_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Config {
            relay_url: relay_url.into(),
            api_key: api_key.into(),
            connect_timeout: Duration::from_millis(1000),
            queue_limit: 10_000,
            spool_dir: default_spool_dir(),
            shutdown_timeout: Duration::from_millis(2000),
            ca_file: None,
            verify_tls: true,
            max_frame_bytes: rtet_protocol::Limits::default().max_frame_bytes,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_millis(5000),
            max_inflight: 1024,
        }
    }

    /// The pool key: one background sender per (URL, key) in a process.
    pub fn pool_key(&self) -> (String, String) {
        (self.relay_url.clone(), self.api_key.clone())
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
        publish_url(&self.relay_url)
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
        if self.queue_limit == 0 {
            return Err(Error::Config("queue_limit must be at least 1".into()));
        }
        if self.max_inflight == 0 {
            return Err(Error::Config("max_inflight must be at least 1".into()));
        }
        Ok(())
    }
}

/// `$TMPDIR/rtet-spool`.
pub fn default_spool_dir() -> PathBuf {
    std::env::temp_dir().join("rtet-spool")
}

/// Turns a relay URL as a site owner writes it into the `/publish` WebSocket URL.
pub fn publish_url(relay_url: &str) -> Result<String, Error> {
    let url = relay_url.trim();
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        Error::Config(format!(
            "relay URL {url:?} has no scheme (ws://, wss://, http:// or https://)"
        ))
    })?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => {
            return Err(Error::Config(format!(
                "relay URL scheme {other:?} is not ws, wss, http or https"
            )))
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return Err(Error::Config(format!(
            "relay URL {url:?} has no usable host"
        )));
    }
    if path.contains(['?', '#']) {
        return Err(Error::Config(format!(
            "relay URL {url:?} must not have a query or fragment"
        )));
    }
    let path = path.trim_end_matches('/');
    let path = if path.ends_with("/publish") {
        path.to_owned()
    } else {
        format!("{path}/publish")
    };
    Ok(format!("{scheme}://{authority}{path}"))
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
            assert_eq!(publish_url(given).unwrap(), want);
        }
        for bad in [
            "",
            "relay.example",
            "ftp://x",
            "ws://",
            "ws://a b",
            "ws://h/?q=1",
        ] {
            assert!(publish_url(bad).is_err(), "{bad}");
        }
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
