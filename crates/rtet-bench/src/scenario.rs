//! The measurements. Each one is bounded in count and in time and returns
//! plain numbers; [`crate::report`] turns them into the table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;

use crate::nchan;
use crate::probe::{ProbeOutcome, Probes, Probing};
use crate::publisher::{publish, Plan, Published};
use crate::subscriber::{self, latency_histogram, open_many, Shared};
use crate::sys::{self, cpu_secs, tree_cpu_secs, tree_rss_kib};
use crate::target::{Dialect, Target};
use crate::wire::Clock;

/// How long nchan may take to count every opened socket as a subscriber.
const NCHAN_SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(60);

/// How subscribers are opened.
#[derive(Debug, Clone, Copy)]
pub struct Fleet {
    /// Subscriber connections.
    pub subscribers: usize,
    /// Source addresses to spread them over (127.0.0.1..=127.0.0.N).
    pub sources: usize,
    /// Handshakes in flight at once while opening.
    pub in_flight: usize,
}

/// The outcome of subscribers plus a publisher.
#[derive(Debug)]
pub struct Delivery {
    /// Subscribers that opened and subscribed.
    pub subscribers: usize,
    /// Subscribers that failed to open, and why the first did.
    pub open_failed: usize,
    /// The first open failure.
    pub open_error: Option<String>,
    /// Connections opened per second while setting up.
    pub open_per_sec: f64,
    /// What the publisher did.
    pub published: Published,
    /// Events received, over all subscribers.
    pub delivered: u64,
    /// `published.sent × subscribers`: what every subscriber should have got.
    pub expected: u64,
    /// Lost events seen as gaps in `n`, over all subscribers.
    pub gaps: u64,
    /// Duplicated or reordered events, over all subscribers.
    pub repeats: u64,
    /// Subscribers the relay closed (or that failed) before the end.
    pub closed: usize,
    /// From the first publish to the last receipt.
    pub elapsed: Duration,
    /// Latency (µs), publish to receipt, when measured, over the load subscribers.
    pub latency: Option<Histogram<u64>>,
    /// What the probe subscribers (a separate process) saw, when there were any.
    pub probes: Option<ProbeOutcome>,
    /// CPU seconds the relay's processes used from the first publish to the end
    /// (when its pid is known): the client shares the machine, so this says
    /// what each delivery cost the relay itself.
    pub relay_cpu_secs: Option<f64>,
    /// CPU seconds this (client) process used in the same span.
    pub bench_cpu_secs: Option<f64>,
}

impl Delivery {
    /// Deliveries per second: events received by all subscribers, per second
    /// from the first publish to the last receipt.
    pub fn per_sec(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Deliveries per CPU-second of the relay process.
    pub fn per_relay_cpu_sec(&self) -> Option<f64> {
        self.relay_cpu_secs
            .filter(|s| *s > 0.0)
            .map(|s| self.delivered as f64 / s)
    }

    /// True when every subscriber got every published event, once, in order.
    pub fn complete(&self) -> bool {
        self.open_failed == 0
            && self.published.sent > 0
            && self.published.nacked == 0
            && self.delivered == self.expected
            && self.gaps == 0
            && self.repeats == 0
            && self.probes.as_ref().is_none_or(|p| p.complete())
    }
}

/// Opens the fleet, publishes `plan`, waits for the deliveries to arrive
/// (until all are in, nothing arrived for `quiet`, or `drain_cap` passed),
/// and tallies. `time_from`: record latency for events with `n` at or above it.
/// `probing`: probe subscribers in a separate process beside the load (they
/// time from `time_from`, or from the first event).
pub async fn deliver(
    target: &Target,
    fleet: Fleet,
    plan: &Plan,
    time_from: Option<u64>,
    quiet: Duration,
    drain_cap: Duration,
    probing: Option<&Probing>,
) -> Result<Delivery> {
    deliver_across(
        target,
        std::slice::from_ref(target),
        fleet,
        plan,
        time_from,
        quiet,
        drain_cap,
        probing,
    )
    .await
}

/// [`deliver`] with the publisher on `publish_to` and the subscribers spread
/// evenly over `subscribe_to` (relay nodes sharing an engine); the relay CPU
/// is that of every node together. Probes subscribe on the last node.
#[allow(clippy::too_many_arguments)]
pub async fn deliver_across(
    publish_to: &Target,
    subscribe_to: &[Target],
    fleet: Fleet,
    plan: &Plan,
    time_from: Option<u64>,
    quiet: Duration,
    drain_cap: Duration,
    probing: Option<&Probing>,
) -> Result<Delivery> {
    let target = publish_to;
    let shared = Arc::new(Shared {
        delivered: Default::default(),
        clock: Clock::start(),
    });
    let opened = open_across(subscribe_to, fleet).await;
    let subscribers = opened.conns.len();
    let open_per_sec = opened.per_sec();
    if subscribers == 0 {
        bail!(
            "no subscriber could connect to {}: {}",
            target.addr,
            opened.first_error.unwrap_or_default()
        );
    }
    // The load tool keeps off the probes' CPU until this returns.
    let _pinned = match probing.filter(|p| !p.load_cpus.is_empty()) {
        Some(p) => {
            Some(sys::Pinned::to(&p.load_cpus, &p.all_cpus).context("pinning the load tool")?)
        }
        None => None,
    };
    let probes = match probing {
        Some(p) => {
            let node = subscribe_to.last().unwrap_or(target);
            Some(Probes::start(p, node, shared.clock, time_from.unwrap_or(0)).await?)
        }
        None => None,
    };
    if target.dialect == Dialect::Nchan {
        let all = subscribers + probes.as_ref().map_or(0, |p| p.count());
        nchan::wait_subscribed(target, all as u64, NCHAN_SUBSCRIBE_TIMEOUT).await?;
    }
    let (stop_tx, mut readers) = subscriber::read_all(opened.conns, &shared, time_from);
    // Unique per run, so a relay that outlives one run (`rtet-bench latency
    // --addr …` with several rates) does not dedupe the next run's ids.
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = format!(
        "b{}.{}.{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    let mut plan = plan.clone();
    if let Some((lag, _)) = plan.lag {
        plan.lag = Some((lag, subscribers as u64));
    }
    let pids = relay_pids(publish_to, subscribe_to);
    let cpu_before = pids_cpu_secs(&pids);
    let bench_before = cpu_secs(std::process::id()).ok();
    let published = publish(target, &plan, &shared, &run)
        .await
        .context("publishing")?;
    let expected = published.sent * subscribers as u64;

    await_deliveries(&shared, expected, quiet, drain_cap).await;
    let relay_cpu_secs = pids_cpu_secs(&pids)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let bench_cpu_secs = cpu_secs(std::process::id())
        .ok()
        .zip(bench_before)
        .map(|(after, before)| after - before);
    let _ = stop_tx.send(true);
    let probes = match probes {
        Some(p) => Some(p.finish(published.sent).await.context("the probes")?),
        None => None,
    };

    let mut out = Delivery {
        subscribers,
        open_failed: opened.failed,
        open_error: opened.first_error,
        open_per_sec,
        expected,
        published,
        delivered: 0,
        gaps: 0,
        repeats: 0,
        closed: 0,
        elapsed: Duration::ZERO,
        latency: time_from.map(|_| latency_histogram()),
        probes,
        relay_cpu_secs,
        bench_cpu_secs,
    };
    let mut last_us = 0;
    while let Some(joined) = readers.join_next().await {
        let tally = joined.context("a subscriber task failed")?;
        out.delivered += tally.received;
        // Events missing at the end of the stream are gaps too.
        out.gaps += tally.gaps
            + out
                .published
                .sent
                .saturating_sub(tally.received + tally.gaps);
        out.repeats += tally.repeats;
        out.closed += usize::from(tally.closed);
        last_us = last_us.max(tally.last_us);
        if let (Some(all), Some(one)) = (out.latency.as_mut(), tally.latency.as_ref()) {
            all.add(one).context("merging latency histograms")?;
        }
    }
    out.elapsed = Duration::from_micros(last_us.saturating_sub(out.published.first_us));
    Ok(out)
}

/// Waits until `expected` deliveries are in, nothing arrived for `quiet`, or
/// `cap` passed; returns the deliveries counted by then.
async fn await_deliveries(shared: &Shared, expected: u64, quiet: Duration, cap: Duration) -> u64 {
    let start = Instant::now();
    let mut last = shared.delivered.load();
    let mut last_change = Instant::now();
    while last < expected && start.elapsed() < cap && last_change.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = shared.delivered.load();
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
    last
}

/// Opens `fleet.subscribers` spread evenly over `nodes`, one node after another.
async fn open_across(nodes: &[Target], fleet: Fleet) -> subscriber::Opened {
    let mut all = subscriber::Opened {
        conns: Vec::with_capacity(fleet.subscribers),
        elapsed: Duration::ZERO,
        failed: 0,
        first_error: None,
    };
    let count = nodes.len().max(1);
    for (k, node) in nodes.iter().enumerate() {
        let n = fleet.subscribers / count + usize::from(k < fleet.subscribers % count);
        let opened = open_many(node, n, fleet.sources, fleet.in_flight).await;
        all.conns.extend(opened.conns);
        all.elapsed += opened.elapsed;
        all.failed += opened.failed;
        if all.first_error.is_none() {
            all.first_error = opened.first_error;
        }
    }
    all
}

/// The distinct relay processes among the publisher's and the subscribers' nodes.
fn relay_pids(publish_to: &Target, subscribe_to: &[Target]) -> Vec<u32> {
    let mut pids: Vec<u32> = std::iter::once(publish_to)
        .chain(subscribe_to)
        .filter_map(|t| t.pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// CPU seconds of these processes (with their children) together; `None`
/// when there are none or one cannot be read.
fn pids_cpu_secs(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| tree_cpu_secs(p).ok()).sum()
}

/// Relay memory for idle connections.
#[derive(Debug, Clone)]
pub struct Idle {
    /// Connections that opened (and subscribed, on rtet-relay).
    pub connections: usize,
    /// Connections that failed to open, and why the first did.
    pub failed: usize,
    /// The first failure.
    pub error: Option<String>,
    /// Connections opened per second.
    pub open_per_sec: f64,
    /// The relay's VmRSS (over its processes) before opening, KiB.
    pub before_kib: u64,
    /// The relay's VmRSS (over its processes) with every connection open and idle, KiB.
    pub after_kib: u64,
    /// With a burst: the relay's VmRSS once every connection has read the
    /// burst and is idle again, KiB, and whether every event arrived.
    pub after_burst: Option<AfterBurst>,
}

/// A burst of events to every idle connection, then idle again: what the
/// relay keeps of the burst (buffers sized by it that it does not give back).
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    /// Events published at once (pipelined, without a rate).
    pub events: u64,
    /// Padding bytes in each event's data.
    pub payload_bytes: usize,
}

/// How long after a burst was read the relay's memory is read the second
/// time. Allocators give freed memory back on a timer, not at once:
/// rtet-relay hands glibc's freed memory back every 10 s (`TRIM_EVERY` in
/// its `server.rs`), so what a relay holds once idle again is read after that.
pub const GIVE_BACK_WAIT: Duration = Duration::from_secs(12);

/// What the relay kept after a [`Burst`].
#[derive(Debug, Clone)]
pub struct AfterBurst {
    /// The burst.
    pub burst: Burst,
    /// The relay's VmRSS (over its processes) `settle` after the burst was
    /// read, KiB.
    pub kib_at_once: u64,
    /// The relay's VmRSS (over its processes) [`GIVE_BACK_WAIT`] after the
    /// burst was read, KiB.
    pub kib: u64,
    /// Events received over all connections, and how many were due.
    pub delivered: u64,
    pub expected: u64,
}

impl Idle {
    /// Relay memory per idle connection, in bytes.
    pub fn bytes_per_conn(&self) -> f64 {
        (self.after_kib.saturating_sub(self.before_kib) * 1024) as f64
            / self.connections.max(1) as f64
    }

    /// Relay memory per idle connection [`GIVE_BACK_WAIT`] after the burst,
    /// in bytes (`None` without a burst, or when not every event arrived).
    pub fn bytes_per_conn_after_burst(&self) -> Option<f64> {
        self.after_burst_per_conn(|b| b.kib)
    }

    /// Relay memory per idle connection just after the burst (`settle`
    /// after the last event was read), in bytes.
    pub fn bytes_per_conn_just_after_burst(&self) -> Option<f64> {
        self.after_burst_per_conn(|b| b.kib_at_once)
    }

    fn after_burst_per_conn(&self, kib: impl Fn(&AfterBurst) -> u64) -> Option<f64> {
        let b = self.after_burst.as_ref()?;
        (b.delivered == b.expected).then(|| {
            (kib(b).saturating_sub(self.before_kib) * 1024) as f64 / self.connections.max(1) as f64
        })
    }
}

/// Opens `fleet.subscribers` idle subscribers, waits `settle`, and reads the
/// relay's resident memory before and after; with a `burst`, publishes it,
/// waits until every connection has read it, and reads the memory `settle`
/// and [`GIVE_BACK_WAIT`] later. The target must carry a pid.
pub async fn idle(
    target: &Target,
    fleet: Fleet,
    settle: Duration,
    burst: Option<Burst>,
) -> Result<Idle> {
    let pid = target
        .pid
        .context("the idle measurement needs the relay's pid")?;
    let before_kib = tree_rss_kib(pid)?;
    let opened = open_many(target, fleet.subscribers, fleet.sources, fleet.in_flight).await;
    if target.dialect == Dialect::Nchan {
        nchan::wait_subscribed(target, opened.conns.len() as u64, NCHAN_SUBSCRIBE_TIMEOUT).await?;
    }
    tokio::time::sleep(settle).await;
    let after_kib = tree_rss_kib(pid)?;
    let mut result = Idle {
        connections: opened.conns.len(),
        failed: opened.failed,
        error: opened.first_error.clone(),
        open_per_sec: opened.per_sec(),
        before_kib,
        after_kib,
        after_burst: None,
    };
    if let Some(burst) = burst {
        result.after_burst = Some(after_burst(target, opened.conns, burst, settle, pid).await?);
    }
    Ok(result)
}

/// Publishes `burst` to the open `conns`, waits until they have read it all
/// (or nothing arrived for 10 s), and reads the relay's memory `settle` and
/// [`GIVE_BACK_WAIT`] later, with every connection still open.
async fn after_burst(
    target: &Target,
    conns: Vec<crate::conn::Ws>,
    burst: Burst,
    settle: Duration,
    pid: u32,
) -> Result<AfterBurst> {
    let shared = Arc::new(Shared {
        delivered: Default::default(),
        clock: Clock::start(),
    });
    let count = conns.len() as u64;
    let (stop_tx, mut readers) = subscriber::read_all(conns, &shared, None);
    let plan = Plan {
        events: burst.events,
        max_duration: Duration::from_secs(60),
        rate: None,
        window: burst.events.max(1) as usize,
        lag: None,
        payload_bytes: burst.payload_bytes,
        drain: Duration::from_secs(10),
        drain_cap: Duration::from_secs(60),
    };
    let published = publish(
        target,
        &plan,
        &shared,
        &format!("burst{}", std::process::id()),
    )
    .await
    .context("publishing the burst")?;
    let expected = published.sent * count;
    let delivered =
        await_deliveries(&shared, expected, Duration::from_secs(10), Duration::MAX).await;
    let read_at = tokio::time::Instant::now();
    tokio::time::sleep(settle).await;
    let kib_at_once = tree_rss_kib(pid)?;
    tokio::time::sleep_until(read_at + GIVE_BACK_WAIT.max(settle)).await;
    let kib = tree_rss_kib(pid)?;
    let _ = stop_tx.send(true);
    while readers.join_next().await.is_some() {}
    Ok(AfterBurst {
        burst,
        kib_at_once,
        kib,
        delivered,
        expected,
    })
}
