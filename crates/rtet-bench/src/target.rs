//! What the bench drives: an address, and the dialect spoken there.

use std::net::SocketAddr;

/// The protocol spoken by the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// rtet-relay: publishers authenticate with a Bearer key and get acks;
    /// subscribers send `subscribe` and wait for `subscribed`.
    Rtet,
    /// The Node `ws` peer: no auth, no subscribe; every publisher message is
    /// broadcast as is and acked.
    NodeWs,
    /// nginx with the nchan module: subscribers open a WebSocket on
    /// `/sub/CHANNEL` and are subscribed on upgrade; publishers POST the event
    /// body to `/pub/CHANNEL`, and the HTTP answer is the ack.
    Nchan,
}

impl Dialect {
    /// The name used in tables.
    pub fn label(self) -> &'static str {
        match self {
            Dialect::Rtet => "rtet-relay",
            Dialect::NodeWs => "node ws",
            Dialect::Nchan => "nginx nchan",
        }
    }

    /// The value of `--dialect` that names it.
    pub fn flag(self) -> &'static str {
        match self {
            Dialect::Rtet => "rtet",
            Dialect::NodeWs => "node-ws",
            Dialect::Nchan => "nchan",
        }
    }
}

/// A relay to measure.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where it listens (loopback only).
    pub addr: SocketAddr,
    /// How to talk to it.
    pub dialect: Dialect,
    /// The publisher API key (rtet only).
    pub api_key: Option<String>,
    /// The channel every subscriber joins and every event goes to; an
    /// anonymous channel on rtet-relay (`public` by default).
    pub channel: String,
    /// The relay's process id, for reading its memory and CPU (with its
    /// child processes': nginx's workers).
    pub pid: Option<u32>,
}

impl Target {
    /// The subscriber endpoint's URL.
    pub fn subscribe_url(&self) -> String {
        match self.dialect {
            Dialect::Nchan => format!("ws://{}/sub/{}", self.addr, self.channel),
            _ => format!("ws://{}/ws", self.addr),
        }
    }

    /// The publisher endpoint's URL (WebSocket; nchan: the HTTP path, see
    /// [`Target::publish_path`]).
    pub fn publish_url(&self) -> String {
        format!("ws://{}/publish", self.addr)
    }

    /// nchan's publisher location for the channel: a POST publishes.
    pub fn publish_path(&self) -> String {
        format!("/pub/{}", self.channel)
    }
}
