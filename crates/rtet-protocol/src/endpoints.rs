//! Where a part connects, given the relay URL a site owner configured
//! (protocol: "Endpoints"). One rule for the extension, the plugin's HTTP
//! fallback and the browser client, checked against
//! `tests/protocol-vectors/relay-urls.json`.
//!
//! The rule:
//! - The scheme is `ws`, `wss`, `http` or `https`, in any case. `ws`/`http`
//!   name a plain relay, `wss`/`https` a TLS one; WebSocket endpoints use
//!   `ws`/`wss`, the HTTP publish endpoint `http`/`https`.
//! - A host is required. User info, a query and a fragment are refused: the
//!   key travels in a header, never in the URL, and nothing else is meant.
//! - A path is a prefix (a relay behind a proxy at `/rtet`). A trailing `/`,
//!   and a trailing endpoint path (`/ws`, `/publish`, `/api/send-event`),
//!   are dropped, so any endpoint URL of a relay names that relay.
//! - A default port (80 for `ws`/`http`, 443 for `wss`/`https`) is dropped;
//!   another port is kept for both WebSocket and HTTP endpoints.
//! - Host names are lowercased (the `url` crate's WHATWG parsing).

use thiserror::Error;
use url::Url;

/// Path of the publisher WebSocket endpoint.
pub const PUBLISH_PATH: &str = "/publish";
/// Path of the subscriber (browser) WebSocket endpoint.
pub const SUBSCRIBE_PATH: &str = "/ws";
/// Path of the HTTP publish endpoint.
pub const HTTP_PUBLISH_PATH: &str = "/api/send-event";
/// Path of the health check.
pub const HEALTH_PATH: &str = "/healthz";

/// A relay URL that names no usable relay; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("relay URL {url:?}: {reason}")]
pub struct RelayUrlError {
    /// The URL as given (trimmed).
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed relay URL: its base, from which every endpoint is derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl {
    /// `true` for `wss`/`https`.
    tls: bool,
    /// `host` or `host:port` (port only when not the default), IPv6 in brackets.
    authority: String,
    /// The path prefix without a trailing `/` (empty for none).
    prefix: String,
}

impl RelayUrl {
    /// Parses a relay URL as a site owner writes it.
    pub fn parse(given: &str) -> Result<Self, RelayUrlError> {
        let text = given.trim();
        let fail = |reason: &str| RelayUrlError {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        // The WHATWG parser quietly repairs what a person most likely did not
        // mean (`ws:host`, `ws:///host`, backslashes, embedded tabs); a relay
        // URL is configuration, so those are refused instead.
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(fail(
                "has no scheme; write ws://, wss://, http:// or https://",
            ));
        };
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            _ => return Err(fail("scheme must be ws, wss, http or https")),
        };
        if rest.is_empty() || rest.starts_with(['/', '\\']) {
            return Err(fail("has no host"));
        }
        if text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '\\' | '<' | '>' | '"'))
        {
            return Err(fail(
                "contains a space, a control character, a backslash, <, > or \"",
            ));
        }
        let url = Url::parse(text).map_err(|e| fail(&format!("is not a URL ({e})")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(fail(
                "must not carry user info (user@host); the key goes in the settings, not the URL",
            ));
        }
        if url.query().is_some() {
            return Err(fail("must not have a query (?...)"));
        }
        if url.fragment().is_some() {
            return Err(fail("must not have a fragment (#...)"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            _ => return Err(fail("has no host")),
        };
        // `Url::port()` is `None` for the scheme's default port; `ws` and
        // `http` share 80 and `wss` and `https` share 443, so dropping it is
        // right for both endpoint kinds.
        let authority = match url.port() {
            Some(0) => return Err(fail("port 0 is not a port a relay listens on")),
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let mut prefix = url.path().trim_end_matches('/').to_owned();
        for endpoint in [PUBLISH_PATH, SUBSCRIBE_PATH, HTTP_PUBLISH_PATH] {
            if let Some(rest) = prefix.strip_suffix(endpoint) {
                prefix = rest.trim_end_matches('/').to_owned();
                break;
            }
        }
        Ok(RelayUrl {
            tls,
            authority,
            prefix,
        })
    }

    fn ws(&self, path: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}{path}", self.authority, self.prefix)
    }

    fn http(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}{path}", self.authority, self.prefix)
    }

    /// The publisher WebSocket endpoint (the extension connects here).
    pub fn publish_ws_url(&self) -> String {
        self.ws(PUBLISH_PATH)
    }

    /// The subscriber WebSocket endpoint (browsers connect here).
    pub fn subscribe_url(&self) -> String {
        self.ws(SUBSCRIBE_PATH)
    }

    /// The HTTP publish endpoint (the plugin's fallback without the extension).
    pub fn http_publish_url(&self) -> String {
        self.http(HTTP_PUBLISH_PATH)
    }

    /// The health check endpoint.
    pub fn health_url(&self) -> String {
        self.http(HEALTH_PATH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_prefix_is_kept_and_an_endpoint_path_is_not() {
        let r = RelayUrl::parse("https://Example.COM/rtet/ws/").unwrap();
        assert_eq!(r.publish_ws_url(), "wss://example.com/rtet/publish");
        assert_eq!(r.subscribe_url(), "wss://example.com/rtet/ws");
        assert_eq!(
            r.http_publish_url(),
            "https://example.com/rtet/api/send-event"
        );
        assert_eq!(r.health_url(), "https://example.com/rtet/healthz");
    }

    #[test]
    fn repairs_the_whatwg_parser_would_make_are_refused() {
        for bad in [
            "ws:relay.example",
            "ws:///relay.example",
            "ws://a\\b",
            "ws://h/a\tb",
        ] {
            assert!(RelayUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
