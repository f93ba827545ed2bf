//! Subscriber connections: opened in bulk, then each one counts its
//! deliveries, checks their order and, when asked, times them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rtet_protocol::{frames::parse_server_frame, ClientFrame, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{connect, source_ip, Ws};
use crate::target::{Dialect, Target};
use crate::wire::{self, scan, Clock};

/// How long one subscriber may take to connect and be subscribed.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens one subscriber: connects from source address `index % sources` and,
/// on rtet-relay, subscribes to the target's channel and waits for `subscribed`.
pub async fn open(target: &Target, index: usize, sources: usize) -> Result<Ws> {
    let mut ws = connect(&target.subscribe_url(), source_ip(index, sources), None).await?;
    if target.dialect == Dialect::Rtet {
        let subscribe = ClientFrame::Subscribe {
            channel: target.channel.clone(),
            since: None,
        };
        ws.send(Message::text(serde_json::to_string(&subscribe)?))
            .await?;
        loop {
            let Some(msg) = ws.next().await else {
                bail!("closed before subscribed");
            };
            if let Message::Text(text) = msg? {
                match parse_server_frame(&text) {
                    Ok(ServerFrame::Subscribed { .. }) => break,
                    Ok(ServerFrame::Error { code, message, .. }) => {
                        bail!("subscribe refused: {code:?}: {message}")
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(ws)
}

/// Subscribers opened in bulk, and how that went.
pub struct Opened {
    /// The open, subscribed connections.
    pub conns: Vec<Ws>,
    /// Wall time from the first connect to the last `subscribed`.
    pub elapsed: Duration,
    /// Connections that failed (see `first_error`).
    pub failed: usize,
    /// The first failure's reason.
    pub first_error: Option<String>,
}

impl Opened {
    /// Connections opened (and subscribed) per second.
    pub fn per_sec(&self) -> f64 {
        self.conns.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Opens `n` subscribers with at most `in_flight` handshakes at a time.
pub async fn open_many(target: &Target, n: usize, sources: usize, in_flight: usize) -> Opened {
    let start = Instant::now();
    let gate = Arc::new(Semaphore::new(in_flight.max(1)));
    let mut set = JoinSet::new();
    for i in 0..n {
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        let target = target.clone();
        set.spawn(async move {
            let result = tokio::time::timeout(OPEN_TIMEOUT, open(&target, i, sources))
                .await
                .context("timed out")
                .and_then(|r| r);
            drop(permit);
            result
        });
    }
    let mut opened = Opened {
        conns: Vec::with_capacity(n),
        elapsed: Duration::ZERO,
        failed: 0,
        first_error: None,
    };
    while let Some(joined) = set.join_next().await {
        match joined.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(ws) => opened.conns.push(ws),
            Err(e) => {
                opened.failed += 1;
                opened.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    opened.elapsed = start.elapsed();
    opened
}

/// What one subscriber saw.
#[derive(Debug)]
pub struct Tally {
    /// Bench events received.
    pub received: u64,
    /// Events whose `n` skipped ahead of the next expected one (lost events).
    pub gaps: u64,
    /// Events whose `n` was at or below one already seen (duplicates, reordering).
    pub repeats: u64,
    /// Frames that were not bench events (errors, other frames).
    pub other: u64,
    /// The relay closed the connection or it failed before the end.
    pub closed: bool,
    /// When the last event arrived, on the run's clock (µs).
    pub last_us: u64,
    /// Publish-to-receipt latency in µs, when asked for.
    pub latency: Option<Histogram<u64>>,
}

/// A counter that many tasks bump at a million times a second: sharded over
/// cache lines so the two cores do not fight over one.
pub struct Counter {
    shards: Box<[Padded]>,
}

#[repr(align(128))]
struct Padded(AtomicU64);

impl Default for Counter {
    fn default() -> Self {
        Counter {
            shards: (0..64).map(|_| Padded(AtomicU64::new(0))).collect(),
        }
    }
}

impl Counter {
    /// Adds one, on the shard of `key` (e.g. a subscriber's index).
    pub fn bump(&self, key: usize) {
        self.shards[key % self.shards.len()]
            .0
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The total (exact once the bumping tasks are quiet).
    pub fn load(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

/// State shared by every subscriber of a run.
pub struct Shared {
    /// Deliveries so far, over all subscribers (the publisher's flow control).
    pub delivered: Counter,
    /// The run's clock.
    pub clock: Clock,
}

/// A histogram for latencies from 1 µs to 60 s at 2 significant digits (1%).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
}

/// Starts a [`run`] task for each of `conns` (numbered in order), all
/// stopped by the returned sender; the set yields their tallies.
pub fn read_all(
    conns: Vec<Ws>,
    shared: &Arc<Shared>,
    time_from: Option<u64>,
) -> (watch::Sender<bool>, JoinSet<Tally>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = JoinSet::new();
    for (i, ws) in conns.into_iter().enumerate() {
        readers.spawn(run(ws, i, shared.clone(), stop_rx.clone(), time_from));
    }
    (stop_tx, readers)
}

/// Reads `ws` until `stop` turns true or the connection ends; times the
/// events numbered `time_from` and up, when given (earlier ones are warm-up).
///
/// After the handshake the socket is read directly, not through tungstenite:
/// the load tool shares the machine with the relay under test, and parsing
/// server frames (unmasked, unfragmented text) out of one large buffer costs
/// a fraction of a general WebSocket stream per frame, which leaves more of
/// the two cores to the relay. Pings are answered; close frames end the read.
pub async fn run(
    ws: Ws,
    index: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    time_from: Option<u64>,
) -> Tally {
    let mut tally = Tally {
        received: 0,
        gaps: 0,
        repeats: 0,
        other: 0,
        closed: false,
        last_us: 0,
        latency: time_from.map(|_| latency_histogram()),
    };
    // Nothing was published before every subscriber was open, so tungstenite
    // holds no unread frame that handing over the socket could lose.
    let mut stream = ws.into_inner();
    let mut next = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    // Registered once: a fresh wait per read would lock the channel's waiter list each time.
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    'reading: loop {
        if end == buf.len() {
            if start > 0 {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            } else {
                buf.resize(buf.len() * 2, 0);
            }
        }
        let read = tokio::select! {
            biased;
            _ = &mut stopped => break,
            r = stream.read(&mut buf[end..]) => r,
        };
        match read {
            Ok(0) | Err(_) => {
                tally.closed = true;
                break;
            }
            Ok(n) => end += n,
        }
        while let Some(frame) = wire::parse_frame(&buf[start..end]) {
            let payload = &buf[start + frame.header..start + frame.header + frame.len];
            match frame.opcode {
                wire::OP_TEXT => {
                    let now = shared.clock.now_us();
                    let found = std::str::from_utf8(payload).ok().and_then(scan);
                    let Some((n, t)) = found else {
                        tally.other += 1;
                        start += frame.header + frame.len;
                        continue;
                    };
                    tally.received += 1;
                    tally.last_us = now;
                    shared.delivered.bump(index);
                    if n > next {
                        tally.gaps += n - next;
                    } else if n < next {
                        tally.repeats += 1;
                    }
                    next = next.max(n + 1);
                    if let (Some(h), Some(from)) = (tally.latency.as_mut(), time_from) {
                        if n >= from {
                            h.saturating_record(now.saturating_sub(t).max(1));
                        }
                    }
                }
                wire::OP_CLOSE => {
                    tally.closed = true;
                    break 'reading;
                }
                wire::OP_PING => {
                    let pong = wire::client_frame(wire::OP_PONG, payload);
                    if stream.write_all(&pong).await.is_err() {
                        tally.closed = true;
                        break 'reading;
                    }
                }
                _ => tally.other += 1,
            }
            start += frame.header + frame.len;
        }
        if start == end {
            start = 0;
            end = 0;
        }
    }
    // Say goodbye politely; the relay may already be gone.
    let _ = stream
        .write_all(&wire::client_frame(wire::OP_CLOSE, &[0x03, 0xe8]))
        .await;
    tally
}
