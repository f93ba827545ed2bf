//! Keepalive for both endpoints: when to ping, and when a silent peer counts as dead.

use std::time::Duration;

/// Ping schedule and dead-peer detection for one connection, driven by one
/// timer: it fires at the next ping or at the moment the peer would count as
/// dead, whichever comes first.
#[derive(Debug, Clone)]
pub struct Keepalive {
    ping_every: Duration,
    dead_after: Duration,
    last_seen: tokio::time::Instant,
    last_ping: tokio::time::Instant,
}

/// What to do when the keepalive timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveAction {
    /// Send a ping now.
    Ping,
    /// Nothing has arrived for the dead-peer timeout: close.
    Dead,
    /// Nothing yet (the peer spoke since the timer was set).
    Wait,
}

impl Keepalive {
    /// A schedule starting now.
    pub fn new(ping_every: Duration, dead_after: Duration) -> Self {
        let now = tokio::time::Instant::now();
        Keepalive {
            ping_every,
            dead_after,
            last_seen: now,
            last_ping: now,
        }
    }

    /// The peer sent something (a frame, a pong).
    pub fn seen(&mut self) {
        self.last_seen = tokio::time::Instant::now();
    }

    /// When the timer should fire next.
    pub fn deadline(&self) -> tokio::time::Instant {
        (self.last_ping + self.ping_every).min(self.last_seen + self.dead_after)
    }

    /// Decides what the firing timer means (and records a ping as sent).
    pub fn fire(&mut self) -> KeepaliveAction {
        let now = tokio::time::Instant::now();
        if now >= self.last_seen + self.dead_after {
            KeepaliveAction::Dead
        } else if now >= self.last_ping + self.ping_every {
            self.last_ping = now;
            KeepaliveAction::Ping
        } else {
            KeepaliveAction::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pings_on_schedule_and_declares_silence_dead_at_the_timeout() {
        let mut k = Keepalive::new(Duration::from_secs(25), Duration::from_secs(60));
        let start = tokio::time::Instant::now();
        tokio::time::sleep_until(k.deadline()).await;
        assert_eq!(k.fire(), KeepaliveAction::Ping);
        tokio::time::sleep_until(k.deadline()).await;
        assert_eq!(k.fire(), KeepaliveAction::Ping);
        tokio::time::sleep_until(k.deadline()).await;
        assert_eq!(k.fire(), KeepaliveAction::Dead);
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(60),
            "exactly at 60 s, not at the next ping"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_answers_stays_alive() {
        let mut k = Keepalive::new(Duration::from_secs(25), Duration::from_secs(60));
        for _ in 0..10 {
            tokio::time::sleep_until(k.deadline()).await;
            assert_eq!(k.fire(), KeepaliveAction::Ping);
            k.seen();
        }
    }
}
