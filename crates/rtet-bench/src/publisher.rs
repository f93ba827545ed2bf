//! The publisher: one connection to the publish endpoint, pipelined publishes
//! under an ack window, sent either as fast as the window (and, in flood mode,
//! the subscribers' progress) allows, or at a fixed rate.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::{SinkExt, StreamExt};
use rtet_protocol::{frames::parse_server_frame, ServerFrame};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::connect;
use crate::subscriber::Shared;
use crate::target::{Dialect, Target};
use crate::wire::{padding, publish_frame};

/// How to publish.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Events to publish at most.
    pub events: u64,
    /// Stop publishing after this long even if `events` were not all sent.
    pub max_duration: Duration,
    /// Events per second; `None` floods.
    pub rate: Option<f64>,
    /// Publishes sent but not yet acked, at most. An ack means the relay has
    /// queued the event for every subscriber, so this bounds work in the relay.
    pub window: usize,
    /// Flood flow control: `(lag, subscribers)` keeps the publisher at most
    /// `lag` events ahead of the subscribers' average, so the measurement is
    /// what the relay delivers, not how much it can buffer (rtet-relay drops
    /// a subscriber whose queue overflows; the Node peer buffers without bound).
    pub lag: Option<(u64, u64)>,
    /// Padding bytes in each event's data.
    pub payload_bytes: usize,
    /// After the last publish, how long to wait for outstanding acks without any arriving.
    pub drain: Duration,
    /// After the last publish, how long to wait for outstanding acks at most.
    pub drain_cap: Duration,
}

/// What the publisher did.
#[derive(Debug, Default, Clone)]
pub struct Published {
    /// Publish frames sent.
    pub sent: u64,
    /// Acks received.
    pub acked: u64,
    /// Nacks received.
    pub nacked: u64,
    /// The first nack's code and message.
    pub first_nack: Option<String>,
    /// When the first publish was sent, on the run's clock (µs).
    pub first_us: u64,
    /// When the last publish was sent, on the run's clock (µs).
    pub last_us: u64,
}

/// Counters the ack reader shares with the writer.
#[derive(Default)]
struct Answers {
    acked: AtomicU64,
    nacked: AtomicU64,
    first_nack: Mutex<Option<String>>,
}

/// Publishes `plan` to `target`; `run` makes the event ids unique per run.
pub async fn publish(
    target: &Target,
    plan: &Plan,
    shared: &Shared,
    run: &str,
) -> Result<Published> {
    let bearer = match target.dialect {
        Dialect::Rtet => target.api_key.as_deref(),
        Dialect::NodeWs => None,
    };
    let ws = connect(
        &target.publish_url(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        bearer,
    )
    .await?;
    let (mut sink, mut stream) = ws.split();
    let window = Arc::new(Semaphore::new(plan.window.max(1)));
    let answers = Arc::new(Answers::default());

    let reader = {
        let window = window.clone();
        let answers = answers.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                match parse_server_frame(&text) {
                    Ok(ServerFrame::Ack { .. }) => {
                        answers.acked.fetch_add(1, Ordering::Relaxed);
                        window.add_permits(1);
                    }
                    Ok(ServerFrame::Nack { code, message, .. }) => {
                        answers.nacked.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut first) = answers.first_nack.lock() {
                            first.get_or_insert_with(|| format!("{code:?}: {message}"));
                        }
                        window.add_permits(1);
                    }
                    _ => {}
                }
            }
        })
    };

    let pad = padding(plan.payload_bytes);
    let start = Instant::now();
    let deadline = start + plan.max_duration;
    let mut out = Published {
        first_us: shared.clock.now_us(),
        ..Published::default()
    };
    'publishing: for n in 0..plan.events {
        if let Some(rate) = plan.rate {
            tokio::time::sleep_until((start + Duration::from_secs_f64(n as f64 / rate)).into())
                .await;
        }
        if Instant::now() >= deadline {
            break;
        }
        match tokio::time::timeout_at(deadline.into(), window.acquire()).await {
            Ok(Ok(permit)) => permit.forget(),
            _ => break,
        }
        if let Some((lag, subscribers)) = plan.lag {
            while shared.delivered.load() < n.saturating_sub(lag) * subscribers {
                if Instant::now() >= deadline {
                    break 'publishing;
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }
        let now = shared.clock.now_us();
        let frame = publish_frame(run, &target.channel, n, now, &pad);
        if sink.send(Message::text(frame)).await.is_err() {
            break;
        }
        if n == 0 {
            out.first_us = now;
        }
        out.last_us = now;
        out.sent += 1;
    }

    // Wait for the outstanding answers while they keep coming (a relay far
    // behind is still working), at most `drain` without any progress.
    let answered =
        || answers.acked.load(Ordering::Relaxed) + answers.nacked.load(Ordering::Relaxed);
    let mut last = answered();
    let mut last_change = Instant::now();
    let drain_start = Instant::now();
    while last < out.sent
        && last_change.elapsed() < plan.drain
        && drain_start.elapsed() < plan.drain_cap
        && !reader.is_finished()
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = answered();
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
    reader.abort();
    let _ = sink.close().await;
    out.acked = answers.acked.load(Ordering::Relaxed);
    out.nacked = answers.nacked.load(Ordering::Relaxed);
    out.first_nack = answers.first_nack.lock().ok().and_then(|f| f.clone());
    Ok(out)
}
