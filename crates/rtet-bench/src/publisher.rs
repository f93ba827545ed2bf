//! The publisher: one connection to the publish endpoint (a WebSocket, or
//! keep-alive HTTP for nchan), pipelined publishes under an ack window, sent either as fast as the window (and, in flood mode,
//! the subscribers' progress) allows, or at a fixed rate.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use rtet_protocol::{frames::parse_server_frame, ServerFrame};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{connect, Ws};
use crate::nchan;
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

impl Answers {
    fn ack(&self, window: &Semaphore) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        window.add_permits(1);
    }

    fn nack(&self, window: &Semaphore, why: String) {
        self.nacked.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_nack.lock() {
            first.get_or_insert(why);
        }
        window.add_permits(1);
    }
}

/// Where publishes go: a WebSocket (rtet-relay, the Node peer), or one
/// keep-alive HTTP connection carrying pipelined POSTs (nchan). One
/// connection either way, so the relay sees the events in publish order.
enum Outlet {
    Ws(SplitSink<Ws, Message>),
    Http { write: OwnedWriteHalf, path: String },
}

impl Outlet {
    /// Sends one publish; false when the connection is gone.
    async fn send(&mut self, frame: String) -> bool {
        match self {
            Outlet::Ws(sink) => sink.send(Message::text(frame)).await.is_ok(),
            Outlet::Http { write, path } => {
                write.write_all(&nchan::post(path, &frame)).await.is_ok()
            }
        }
    }

    async fn close(self) {
        match self {
            Outlet::Ws(mut sink) => {
                let _ = sink.close().await;
            }
            Outlet::Http { mut write, .. } => {
                let _ = write.shutdown().await;
            }
        }
    }
}

/// Opens the publisher connection and starts the task that reads its
/// answers (acks and nacks), each of which returns a permit to `window`.
async fn open_outlet(
    target: &Target,
    window: Arc<Semaphore>,
    answers: Arc<Answers>,
) -> Result<(Outlet, JoinHandle<()>)> {
    if target.dialect == Dialect::Nchan {
        let stream = TcpStream::connect(target.addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let reader = tokio::spawn(async move {
            let mut answers_in = nchan::AnswerReader::new(read);
            // 201: delivered to subscribers; 202: queued with none listening.
            while let Ok(Some(answer)) = answers_in.next().await {
                if (200..300).contains(&answer.status) {
                    answers.ack(&window);
                } else {
                    let body = String::from_utf8_lossy(&answer.body).into_owned();
                    answers.nack(&window, format!("HTTP {}: {}", answer.status, body.trim()));
                }
            }
        });
        let path = target.publish_path();
        return Ok((Outlet::Http { write, path }, reader));
    }
    let bearer = match target.dialect {
        Dialect::Rtet => target.api_key.as_deref(),
        _ => None,
    };
    let ws = connect(
        &target.publish_url(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        bearer,
    )
    .await?;
    let (sink, mut stream) = ws.split();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Text(text) = msg else { continue };
            match parse_server_frame(&text) {
                Ok(ServerFrame::Ack { .. }) => answers.ack(&window),
                Ok(ServerFrame::Nack { code, message, .. }) => {
                    answers.nack(&window, format!("{code:?}: {message}"))
                }
                _ => {}
            }
        }
    });
    Ok((Outlet::Ws(sink), reader))
}

/// Publishes `plan` to `target`; `run` makes the event ids unique per run.
pub async fn publish(
    target: &Target,
    plan: &Plan,
    shared: &Shared,
    run: &str,
) -> Result<Published> {
    let window = Arc::new(Semaphore::new(plan.window.max(1)));
    let answers = Arc::new(Answers::default());
    let (mut outlet, reader) = open_outlet(target, window.clone(), answers.clone()).await?;

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
        if !outlet.send(frame).await {
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
    outlet.close().await;
    out.acked = answers.acked.load(Ordering::Relaxed);
    out.nacked = answers.nacked.load(Ordering::Relaxed);
    out.first_nack = answers.first_nack.lock().ok().and_then(|f| f.clone());
    Ok(out)
}
