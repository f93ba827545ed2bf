//! `rtet-bench`: parses flags, raises the fd limit, and runs the scenarios of
//! the library against rtet-relay, the Node `ws` peer and nginx with nchan
//! (all started here, `compare`), against rtet-relays it starts (`soak`,
//! `presence`) or against one relay already running (`flood`, `latency`,
//! `idle`). `probe` is the probe subscribers' process, which `compare`,
//! `latency`, `nodes` and `presence` start themselves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use rtet_bench::nchan;
use rtet_bench::nodes::{self, Acks, Measured, Round, Setup};
use rtet_bench::probe::{self, Probing};
use rtet_bench::publisher::Plan;
use rtet_bench::report::{self, group, Settings, Side};
use rtet_bench::scenario::{self, Delivery, Fleet, Idle};
use rtet_bench::spawn;
use rtet_bench::sys;
use rtet_bench::target::{Dialect, Target};

/// Load tool for rtet-relay, measured against a Node.js relay on the npm `ws`
/// package and nginx with the nchan module in the same run. Loopback only;
/// every run is bounded in count and time.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start rtet-relay, the Node peer and nginx with nchan, run every
    /// measurement on each (a fresh process per measurement) and print the
    /// comparison table.
    Compare(CompareArgs),
    /// Flood one running relay: deliveries per second.
    Flood(OneArgs),
    /// Fixed event rate on one running relay: latency percentiles.
    Latency(OneArgs),
    /// Idle connections on one running relay: memory per connection (needs --pid).
    Idle(OneArgs),
    /// Start rtet-relay, hold many subscribed connections for minutes under a
    /// steady publish rate, and report the relay's memory and descriptors over
    /// time and whether every event reached every subscriber once.
    Soak(SoakArgs),
    /// Start rtet-relay as one node on its memory engine, one node on Redis,
    /// and two nodes on one Redis (publisher on the first, subscribers split
    /// over both, probes on the second), each on fresh processes per
    /// measurement, interleaved, in rounds: publish acks/s from one pipelined
    /// publisher, flood deliveries/s, latency of probes and load subscribers
    /// at fixed rates, Redis CPU per 1,000 publishes.
    Nodes(NodesArgs),
    /// Start rtet-relay and measure presence: memory per member and relay CPU
    /// per join/leave beside plain subscriptions (a fresh relay for each),
    /// and probe subscribers' latency at rest and during join/leave storms.
    Presence(PresenceArgs),
    /// Probe subscribers (started by `compare`, `latency`, `nodes` and
    /// `presence`, one process for all probes): see the library's `probe`
    /// module for the line protocol on stdin and stdout.
    Probe(ProbeArgs),
}

#[derive(Args)]
struct ProbeArgs {
    /// The relay's address (loopback).
    #[arg(long)]
    addr: SocketAddr,
    /// Its protocol.
    #[arg(long, value_enum)]
    dialect: Dialect,
    /// The channel.
    #[arg(long, default_value = "public")]
    channel: String,
    /// Probe subscribers.
    #[arg(long, default_value_t = 5)]
    count: usize,
    /// The run's clock origin, µs of CLOCK_MONOTONIC.
    #[arg(long)]
    clock_origin: u64,
    /// Time events numbered this and up.
    #[arg(long, default_value_t = 0)]
    time_from: u64,
    /// Pin this process to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
}

#[derive(Args)]
struct SoakArgs {
    /// Minutes to publish for.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Subscribed connections to hold (capped by the fd limit).
    #[arg(long, default_value_t = 15_000)]
    connections: usize,
    /// Events per second, published steadily to the subscribers' channel.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Seconds between samples of the relay's memory and descriptors.
    #[arg(long, default_value_t = 60)]
    sample_secs: u64,
    /// Padding bytes in each event's data.
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// Source addresses to spread connections over: 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, default_value_t = 16)]
    sources: usize,
    /// The rtet-relay binary (default: next to this executable).
    #[arg(long)]
    relay_bin: Option<PathBuf>,
    /// Extra flags for rtet-relay (repeatable), after the bench's own limit flags.
    #[arg(long = "relay-arg", allow_hyphen_values = true)]
    relay_args: Vec<String>,
}

#[derive(Args)]
struct NodesArgs {
    /// Events the pipelined publisher sends for the acks measurement (no subscribers).
    #[arg(long, default_value_t = 100_000)]
    publishes: u64,
    /// Subscribers for the flood measurement.
    #[arg(long, default_value_t = 10_000)]
    flood_subscribers: usize,
    /// Events to flood at most.
    #[arg(long, default_value_t = 2_000)]
    flood_events: u64,
    /// Seconds to flood at most.
    #[arg(long, default_value_t = 20)]
    flood_secs: u64,
    /// Flood flow control: stay at most this many events ahead of the subscribers' average.
    #[arg(long, default_value_t = 16)]
    lag: u64,
    /// Events per second for the latency measurements; several
    /// (comma-separated) make one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    rate: Vec<f64>,
    /// Load subscribers for the latency measurements: one count for every
    /// rate, or one per rate (comma-separated, in --rate's order).
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    rate_subscribers: Vec<usize>,
    /// Seconds of each latency measurement (the first second is warm-up, not timed).
    #[arg(long, default_value_t = 10)]
    rate_secs: u64,
    /// Probe subscribers in a separate process during the latency
    /// measurements, pinned to a CPU of their own where there are two or
    /// more; on node B in the two-node setup (0: none).
    #[arg(long, default_value_t = 5)]
    probes: usize,
    /// Times to run every measurement on every setup, interleaved; the table
    /// shows each round's figures.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Unacked publishes in flight at most.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Source addresses to spread connections over: 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, default_value_t = 16)]
    sources: usize,
    /// Padding bytes in each event's data (the frame is about 130 bytes more).
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// The setups to measure, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "memory,redis,redis2"
    )]
    only: Vec<Setup>,
    /// The rtet-relay binary (default: next to this executable).
    #[arg(long)]
    relay_bin: Option<PathBuf>,
    /// Extra flags for rtet-relay (repeatable), after the bench's own limit flags.
    #[arg(long = "relay-arg", allow_hyphen_values = true)]
    relay_args: Vec<String>,
    /// The redis-server executable.
    #[arg(long, default_value = "redis-server")]
    redis_server: String,
}

#[derive(Args)]
struct PresenceArgs {
    /// Members in the one-channel shape.
    #[arg(long, default_value_t = 10_000)]
    members: usize,
    /// Channels in the many-channels shape.
    #[arg(long, default_value_t = 1_000)]
    channels: usize,
    /// Members per channel in the many-channels shape.
    #[arg(long, default_value_t = 10)]
    per_channel: usize,
    /// Cost measurements of each shape and kind, interleaved (plain, presence, plain, ...).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Clients in a join/leave storm.
    #[arg(long, default_value_t = 5_000)]
    storm_connections: usize,
    /// Seconds from a storm's first arrival to its last client's close.
    #[arg(long, default_value_t = 5.0)]
    storm_secs: f64,
    /// Milliseconds each storm client stays subscribed.
    #[arg(long, default_value_t = 1_000)]
    storm_dwell_ms: u64,
    /// Rounds of storm windows (each: at rest, then churn and visits of
    /// presence members and of plain subscriptions), interleaved.
    #[arg(long, default_value_t = 1)]
    storm_rounds: usize,
    /// Presence channels a storm spreads over.
    #[arg(long, default_value_t = 10)]
    storm_channels: usize,
    /// Events per second to the probes during each latency window.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Seconds of warm-up (untimed) before each latency window.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Probe subscribers, in a separate process pinned to a CPU of their own.
    #[arg(long, default_value_t = 5)]
    probes: usize,
    /// Padding bytes in each event's data.
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// Source addresses to spread connections over: 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, default_value_t = 16)]
    sources: usize,
    /// WebSocket handshakes in flight at once while opening connections.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// The rtet-relay binary (default: next to this executable).
    #[arg(long)]
    relay_bin: Option<PathBuf>,
    /// Extra flags for rtet-relay (repeatable), after the bench's own limit flags.
    #[arg(long = "relay-arg", allow_hyphen_values = true)]
    relay_args: Vec<String>,
    /// The measurements to run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "cost,storm")]
    only: Vec<PresenceMeasure>,
}

/// One measurement of `presence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PresenceMeasure {
    /// Memory per member and CPU per join/leave, beside plain subscriptions.
    Cost,
    /// Probe latency at rest and during join/leave storms.
    Storm,
}

#[derive(Args, Clone)]
struct Load {
    /// Subscribers for the flood measurement.
    #[arg(long, default_value_t = 10_000)]
    flood_subscribers: usize,
    /// Events to flood at most.
    #[arg(long, default_value_t = 2_000)]
    flood_events: u64,
    /// Seconds to flood at most.
    #[arg(long, default_value_t = 20)]
    flood_secs: u64,
    /// Flood flow control: stay at most this many events ahead of the subscribers' average.
    #[arg(long, default_value_t = 16)]
    lag: u64,
    /// Unacked publishes in flight at most.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Events per second for the latency measurement; several (comma-separated)
    /// make one run each.
    #[arg(long, value_delimiter = ',', default_value = "100,300,1000")]
    rate: Vec<f64>,
    /// Subscribers for the latency measurement.
    #[arg(long, default_value_t = 1_000)]
    rate_subscribers: usize,
    /// Seconds of the latency measurement (the first second is warm-up, not timed).
    #[arg(long, default_value_t = 10)]
    rate_secs: u64,
    /// Idle connections for the memory measurement (capped by the fd limit).
    #[arg(long, default_value_t = 50_000)]
    idle_connections: usize,
    /// After the idle memory: events published at once to every idle
    /// connection, then the memory again once all have read them (0: none).
    #[arg(long, default_value_t = 50)]
    idle_burst: u64,
    /// Padding bytes in each event of that burst.
    #[arg(long, default_value_t = 500)]
    idle_burst_bytes: usize,
    /// Source addresses to spread connections over: 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, default_value_t = 16)]
    sources: usize,
    /// WebSocket handshakes in flight at once while opening connections.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Padding bytes in each event's data (the frame is about 130 bytes more).
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// Probe subscribers in a separate process during the latency runs,
    /// pinned to a CPU of their own where there are two or more (0: none).
    #[arg(long, default_value_t = 5)]
    probes: usize,
}

#[derive(Args)]
struct CompareArgs {
    #[command(flatten)]
    load: Load,
    /// The rtet-relay binary (default: next to this executable).
    #[arg(long)]
    relay_bin: Option<PathBuf>,
    /// Extra flags for rtet-relay (repeatable), after the bench's own limit flags.
    #[arg(long = "relay-arg", allow_hyphen_values = true)]
    relay_args: Vec<String>,
    /// The Node peer's script.
    #[arg(long, default_value = "bench/node-ws-peer/server.js")]
    node_script: PathBuf,
    /// The node executable.
    #[arg(long, default_value = "node")]
    node: String,
    /// Leave the Node peer out.
    #[arg(long)]
    skip_node: bool,
    /// The nginx executable (with the nchan module, `libnginx-mod-nchan`).
    #[arg(long, default_value = "nginx")]
    nginx: String,
    /// The nchan module nginx loads.
    #[arg(long, default_value = nchan::DEBIAN_MODULE)]
    nchan_module: PathBuf,
    /// Leave nginx with nchan out.
    #[arg(long)]
    skip_nchan: bool,
    /// Pin each relay under test (every thread of rtet-relay, nginx's master
    /// and workers, node) to these CPUs, comma-separated; default: not
    /// pinned. On loopback a delivery's cost depends on where the relay runs
    /// relative to the subscriber reading it (the sender's `sendto` also runs
    /// the receiver's TCP input and wakes it), so this makes every relay
    /// share the cores with the load tool and the probes the same way.
    #[arg(long, value_delimiter = ',')]
    relay_cpus: Vec<usize>,
    /// The measurements to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "idle,flood,latency"
    )]
    only: Vec<Measure>,
}

/// One measurement of `compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Measure {
    /// Memory per idle connection and connections per second.
    Idle,
    /// Deliveries per second.
    Flood,
    /// Latency at a fixed rate.
    Latency,
}

#[derive(Args)]
struct OneArgs {
    #[command(flatten)]
    load: Load,
    /// The relay's address (loopback).
    #[arg(long)]
    addr: SocketAddr,
    /// Its protocol.
    #[arg(long, value_enum, default_value_t = Dialect::Rtet)]
    dialect: Dialect,
    /// The publisher API key (rtet dialect).
    #[arg(long, env = "RTET_BENCH_API_KEY")]
    api_key: Option<String>,
    /// The relay's process id, for its memory (idle).
    #[arg(long)]
    pid: Option<u32>,
    /// The channel to use (an anonymous channel on rtet-relay).
    #[arg(long, default_value = "public")]
    channel: String,
}

/// Limit flags that let one loopback client load rtet-relay: the defaults
/// are sized for browsers on the internet (1,000 connections per IP, 16 of
/// them opening at once, 10,000 publishes/s per key, 20 frames/s per client).
/// One address may use every handshake slot (`--max-handshakes`, 256).
const RELAY_LOAD_FLAGS: &[&str] = &[
    "--connections-per-ip",
    "1000000",
    "--handshakes-per-ip",
    "256",
    "--max-connections",
    "1000000",
    "--publishes-per-sec",
    "1000000000",
];

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::Probe(args) = &cli.command {
        return probe_process(args);
    }
    let nofile = sys::raise_nofile(1 << 20)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Compare(args) => compare(args, nofile).await,
            Command::Flood(args) => {
                let target = one_target(&args)?;
                let d = flood(&target, std::slice::from_ref(&target), &args.load).await?;
                print_delivery("flood", &d);
                Ok(())
            }
            Command::Latency(args) => {
                let target = one_target(&args)?;
                let probing = probing(args.load.probes)?;
                for &rate in &args.load.rate {
                    let all = std::slice::from_ref(&target);
                    let d = latency(&target, all, &args.load, rate, probing.as_ref()).await?;
                    print_delivery(&format!("latency at {rate} events/s"), &d);
                }
                Ok(())
            }
            Command::Idle(args) => {
                let n = idle_count(args.load.idle_connections, nofile);
                let i = idle(&one_target(&args)?, &args.load, n).await?;
                print_idle(&i);
                Ok(())
            }
            Command::Soak(args) => soak(args, nofile).await,
            Command::Nodes(args) => nodes(args).await,
            Command::Presence(args) => presence(args, nofile).await,
            Command::Probe(_) => unreachable!("handled before the runtime starts"),
        }
    })
}

/// The probe process: pinned first (threads started later inherit it), then
/// its own small runtime.
fn probe_process(args: &ProbeArgs) -> Result<()> {
    if let Some(cpu) = args.cpu {
        sys::pin_process(&[cpu]).with_context(|| format!("pinning the probes to CPU {cpu}"))?;
    }
    if !args.addr.ip().is_loopback() {
        bail!("the bench only drives loopback addresses");
    }
    let target = Target {
        addr: args.addr,
        dialect: args.dialect,
        api_key: None,
        channel: args.channel.clone(),
        pid: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(probe::serve(
        &target,
        args.count,
        rtet_bench::wire::Clock::from_origin(args.clock_origin),
        args.time_from,
        tokio::io::BufReader::new(tokio::io::stdin()),
        tokio::io::stdout(),
    ))
}

/// Where `count` probes run (none for 0).
fn probing(count: usize) -> Result<Option<Probing>> {
    if count == 0 {
        return Ok(None);
    }
    let exe = std::env::current_exe().context("finding this executable for the probes")?;
    let p = probe::placement(&exe, count);
    eprintln!(
        "{count} probe subscribers in a separate process: {}",
        p.placement
    );
    Ok(Some(p))
}

/// The probes' placement, with "the relay on any" made true of `--relay-cpus`.
fn relays_placed(placement: &str, relay_cpus: &[usize]) -> String {
    if relay_cpus.is_empty() {
        return placement.to_owned();
    }
    let cpus = relay_cpus
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let pinned = format!("each relay pinned to CPU {cpus}");
    if placement.contains("the relay on any") {
        placement.replace("the relay on any", &pinned)
    } else {
        format!("{placement}; {pinned}")
    }
}

fn one_target(args: &OneArgs) -> Result<Target> {
    if !args.addr.ip().is_loopback() {
        bail!("the bench only drives loopback addresses");
    }
    Ok(Target {
        addr: args.addr,
        dialect: args.dialect,
        api_key: args.api_key.clone(),
        channel: args.channel.clone(),
        pid: args.pid,
    })
}

/// Idle connections that fit under the fd limit of the bench and of the relay
/// (which inherits it), with room for everything else they hold open.
fn idle_count(asked: usize, nofile: u64) -> usize {
    asked.min((nofile as usize).saturating_sub(512))
}

/// The flood: the publisher on `publish_to`, the subscribers spread over `subscribe_to`.
async fn flood(publish_to: &Target, subscribe_to: &[Target], load: &Load) -> Result<Delivery> {
    let fleet = Fleet {
        subscribers: load.flood_subscribers,
        sources: load.sources,
        in_flight: load.in_flight,
    };
    let plan = Plan {
        events: load.flood_events,
        max_duration: Duration::from_secs(load.flood_secs),
        rate: None,
        window: load.window,
        lag: Some((load.lag, 0)),
        payload_bytes: load.payload_bytes,
        drain: Duration::from_secs(5),
        drain_cap: Duration::from_secs(60),
    };
    scenario::deliver_across(
        publish_to,
        subscribe_to,
        fleet,
        &plan,
        None,
        Duration::from_secs(5),
        Duration::from_secs(60),
        None,
    )
    .await
}

/// A fixed rate: the publisher on `publish_to`, the subscribers spread over
/// `subscribe_to`, the probes (if any) on its last node.
async fn latency(
    publish_to: &Target,
    subscribe_to: &[Target],
    load: &Load,
    rate: f64,
    probing: Option<&Probing>,
) -> Result<Delivery> {
    let fleet = Fleet {
        subscribers: load.rate_subscribers,
        sources: load.sources,
        in_flight: load.in_flight,
    };
    let events = (rate * load.rate_secs as f64) as u64;
    let plan = Plan {
        events,
        max_duration: Duration::from_secs(load.rate_secs + 5),
        rate: Some(rate),
        window: events.max(1) as usize,
        lag: None,
        payload_bytes: load.payload_bytes,
        drain: Duration::from_secs(5),
        drain_cap: Duration::from_secs(15),
    };
    let warmup = rate as u64;
    scenario::deliver_across(
        publish_to,
        subscribe_to,
        fleet,
        &plan,
        Some(warmup),
        Duration::from_secs(5),
        Duration::from_secs(15),
        probing,
    )
    .await
}

async fn idle(target: &Target, load: &Load, n: usize) -> Result<Idle> {
    let fleet = Fleet {
        subscribers: n,
        sources: load.sources,
        in_flight: load.in_flight,
    };
    let burst = (load.idle_burst > 0).then_some(scenario::Burst {
        events: load.idle_burst,
        payload_bytes: load.idle_burst_bytes,
    });
    scenario::idle(target, fleet, Duration::from_secs(2), burst).await
}

fn print_delivery(what: &str, d: &Delivery) {
    println!(
        "{what}: {} subscribers ({} failed to open{}), {} connections/s",
        d.subscribers,
        d.open_failed,
        d.open_error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default(),
        group(d.open_per_sec as u64)
    );
    println!(
        "  published {} (acked {}, nacked {}{}), delivered {} of {} in {:.2} s: {} deliveries/s; gaps {}, repeats {}, closed {}",
        d.published.sent,
        d.published.acked,
        d.published.nacked,
        d.published.first_nack.as_deref().map(|e| format!(": {e}")).unwrap_or_default(),
        group(d.delivered),
        group(d.expected),
        d.elapsed.as_secs_f64(),
        group(d.per_sec() as u64),
        d.gaps,
        d.repeats,
        d.closed
    );
    if let Some(cpu) = d.bench_cpu_secs {
        println!("  bench (client) CPU {cpu:.2} s in the same span");
    }
    if let Some(cpu) = d.relay_cpu_secs {
        println!(
            "  relay CPU {cpu:.2} s: {} deliveries per relay CPU-second",
            group(d.per_relay_cpu_sec().unwrap_or(0.0) as u64)
        );
    }
    let percentiles = |h: &hdrhistogram::Histogram<u64>| {
        format!(
            "p50 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3} ({} samples)",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.value_at_quantile(0.999) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
            h.len()
        )
    };
    if let Some(h) = d.latency.as_ref().filter(|h| !h.is_empty()) {
        println!("  load subscribers' latency ms: {}", percentiles(h));
    }
    if let Some(p) = &d.probes {
        println!(
            "  {} probes ({}): delivered {} of {}, gaps {}, repeats {}, closed {}; latency ms: {}",
            p.count,
            p.placement,
            group(p.received),
            group(p.expected),
            p.gaps,
            p.repeats,
            p.closed,
            percentiles(&p.latency)
        );
    }
}

fn print_idle(i: &Idle) {
    println!(
        "idle: {} connections ({} failed{}), {} connections/s; relay RSS {} KiB -> {} KiB: {:.1} KiB per connection",
        i.connections,
        i.failed,
        i.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default(),
        group(i.open_per_sec as u64),
        group(i.before_kib),
        group(i.after_kib),
        i.bytes_per_conn() / 1024.0
    );
    if let Some(b) = &i.after_burst {
        let per_conn = |x: Option<f64>| {
            x.map(|x| format!("{:.1} KiB", x / 1024.0))
                .unwrap_or_else(|| "not measured (events missing)".into())
        };
        println!(
            "  after {} events of {} padding bytes to each (delivered {} of {}): relay RSS {} KiB just after, {} per connection; {} KiB {} s after, {} per connection",
            b.burst.events,
            b.burst.payload_bytes,
            group(b.delivered),
            group(b.expected),
            group(b.kib_at_once),
            per_conn(i.bytes_per_conn_just_after_burst()),
            group(b.kib),
            scenario::GIVE_BACK_WAIT.as_secs(),
            per_conn(i.bytes_per_conn_after_burst()),
        );
    }
}

async fn compare(args: CompareArgs, nofile: u64) -> Result<()> {
    let load = args.load.clone();
    let idle_n = idle_count(load.idle_connections, nofile);
    let load_at_start = sys::load_average();
    eprintln!("machine: {}", sys::machine());
    eprintln!("fd limit (RLIMIT_NOFILE) for the bench and the relays it starts: {nofile}");
    if idle_n < load.idle_connections {
        eprintln!(
            "idle connections capped at {idle_n} (asked {}): the hard fd limit here is {nofile}",
            load.idle_connections
        );
    }
    let relay_bin = args
        .relay_bin
        .clone()
        .unwrap_or_else(spawn::default_relay_bin);
    let mut relay_flags: Vec<String> = RELAY_LOAD_FLAGS.iter().map(|s| s.to_string()).collect();
    relay_flags.extend(args.relay_args.iter().cloned());

    let mut sides: Vec<(Dialect, Side)> = vec![(Dialect::Rtet, Side::default())];
    if !args.skip_node {
        sides.push((Dialect::NodeWs, Side::default()));
    }
    if !args.skip_nchan {
        sides.push((Dialect::Nchan, Side::default()));
    }
    // nginx gets as many workers as rtet-relay has runtime threads: one per core.
    let workers = sys::cpus();
    let probing = probing(load.probes)?;
    let relay_cpus = args.relay_cpus.clone();
    let start = |dialect: Dialect| {
        let relay_bin = relay_bin.clone();
        let relay_flags = relay_flags.clone();
        let node = args.node.clone();
        let script = args.node_script.clone();
        let nginx = args.nginx.clone();
        let module = args.nchan_module.clone();
        let relay_cpus = relay_cpus.clone();
        async move {
            let running = match dialect {
                Dialect::Rtet => spawn::start_relay(&relay_bin, &relay_flags).await,
                Dialect::NodeWs => spawn::start_node(&node, &script).await,
                Dialect::Nchan => spawn::start_nchan(&nginx, &module, workers, nofile).await,
            }?;
            if let (false, Some(pid)) = (relay_cpus.is_empty(), running.child.id()) {
                sys::pin_tree(pid, &relay_cpus).with_context(|| {
                    format!("pinning {} to CPUs {relay_cpus:?}", dialect.label())
                })?;
            }
            Ok::<_, anyhow::Error>(running)
        }
    };
    // One job per measurement (and per latency rate), each on a fresh process.
    let mut jobs: Vec<(Measure, usize)> = Vec::new();
    for measure in &args.only {
        match measure {
            Measure::Latency => jobs.extend((0..load.rate.len()).map(|i| (Measure::Latency, i))),
            m => jobs.push((*m, 0)),
        }
    }
    for (dialect, side) in sides.iter_mut() {
        let label = dialect.label();
        side.latency = load.rate.iter().map(|_| None).collect();
        for &(measure, i) in &jobs {
            let r = start(*dialect).await?;
            match measure {
                Measure::Idle => {
                    eprintln!("== {label}: {idle_n} idle connections");
                    match idle(&r.target, &load, idle_n).await {
                        Ok(i) => {
                            print_idle(&i);
                            side.idle = Some(i);
                        }
                        Err(e) => eprintln!("{label}: idle measurement failed: {e:#}"),
                    }
                }
                Measure::Flood => {
                    eprintln!(
                        "== {label}: flood to {} subscribers",
                        load.flood_subscribers
                    );
                    match flood(&r.target, std::slice::from_ref(&r.target), &load).await {
                        Ok(d) => {
                            print_delivery("flood", &d);
                            side.flood = Some(d);
                        }
                        Err(e) => eprintln!("{label}: flood failed: {e:#}"),
                    }
                }
                Measure::Latency => {
                    let rate = load.rate[i];
                    eprintln!(
                        "== {label}: {rate} events/s to {} subscribers for {} s",
                        load.rate_subscribers, load.rate_secs
                    );
                    let all = std::slice::from_ref(&r.target);
                    match latency(&r.target, all, &load, rate, probing.as_ref()).await {
                        Ok(d) => {
                            print_delivery("latency", &d);
                            side.latency[i] = Some(d);
                        }
                        Err(e) => eprintln!("{label}: latency failed: {e:#}"),
                    }
                }
            }
            // A fresh process per measurement: memory and queues start clean.
            r.stop().await;
        }
    }
    let mut side_of = |dialect: Dialect| {
        sides
            .iter_mut()
            .find(|(d, _)| *d == dialect)
            .map(|(_, s)| std::mem::take(s))
            .unwrap_or_default()
    };
    let measured = report::Sides {
        rtet: side_of(Dialect::Rtet),
        node: side_of(Dialect::NodeWs),
        nchan: side_of(Dialect::Nchan),
    };
    let settings = Settings {
        flood_subscribers: load.flood_subscribers,
        rate_subscribers: load.rate_subscribers,
        rates: load.rate.clone(),
        idle_connections: idle_n,
        idle_capped: idle_n < load.idle_connections,
        in_flight: load.in_flight,
        probes: load.probes,
        probe_placement: probing
            .as_ref()
            .map(|p| relays_placed(&p.placement, &relay_cpus)),
        nchan_workers: workers,
    };
    println!();
    print!("{}", report::table(&measured, &settings));
    println!();
    print_run_footer(
        Some(&load_at_start),
        "; Debian: apt-get install nginx libnginx-mod-nchan",
        "npm ci --prefix bench/node-ws-peer && ",
    );
    Ok(())
}

/// The lines every report ends with: the machine, the 1-minute load average
/// at the start and end of the run when it was taken (the bench shares the
/// cores with whatever else runs), and the command that reproduces the run.
/// `packages` names Debian packages the run needs (after the repository
/// root, e.g. "; Debian: apt-get install redis-server"), `prepare` a step
/// between the build and the run, ending in " && ".
fn print_run_footer(load_at_start: Option<&str>, packages: &str, prepare: &str) {
    println!("machine: {}", sys::machine());
    if let Some(load_at_start) = load_at_start {
        println!(
            "1-minute load average: {load_at_start} at the start, {} at the end",
            sys::load_average()
        );
    }
    let argv: Vec<String> = std::env::args().collect();
    println!(
        "reproduce (from the repository root{packages}): cargo build --release -p rtet-relay -p rtet-bench && {prepare}{} {}",
        argv[0],
        argv[1..].join(" ")
    );
}

/// One sample of the relay process during a soak.
struct SoakSample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
    cpu_secs: f64,
}

fn soak_sample(pid: u32, start: std::time::Instant) -> Result<SoakSample> {
    Ok(SoakSample {
        at: start.elapsed(),
        rss_kib: sys::rss_kib(pid)?,
        fds: sys::fd_count(pid)?,
        cpu_secs: sys::cpu_secs(pid)?,
    })
}

async fn soak(args: SoakArgs, nofile: u64) -> Result<()> {
    let connections = idle_count(args.connections, nofile);
    eprintln!("machine: {}", sys::machine());
    if connections < args.connections {
        eprintln!(
            "connections capped at {connections} (asked {}): the hard fd limit here is {nofile}",
            args.connections
        );
    }
    let relay_bin = args.relay_bin.unwrap_or_else(spawn::default_relay_bin);
    let mut flags: Vec<String> = RELAY_LOAD_FLAGS.iter().map(|s| s.to_string()).collect();
    flags.extend(args.relay_args.iter().cloned());
    let relay = spawn::start_relay(&relay_bin, &flags).await?;
    let pid = relay.target.pid.context("the soak needs the relay's pid")?;
    let start = std::time::Instant::now();
    let first = soak_sample(pid, start)?;

    // Sample the relay while the scenario runs, until it ends.
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let every = Duration::from_secs(args.sample_secs.max(1));
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = done_rx.changed() => break,
            }
            match soak_sample(pid, start) {
                Ok(s) => {
                    eprintln!(
                        "  {:>5.0} s: relay RSS {} KiB, {} fds, CPU {:.1} s",
                        s.at.as_secs_f64(),
                        group(s.rss_kib),
                        s.fds,
                        s.cpu_secs
                    );
                    samples.push(s);
                }
                Err(e) => {
                    eprintln!("  the relay is gone: {e}");
                    break;
                }
            }
        }
        samples
    });

    let secs = args.minutes * 60;
    let events = (args.rate * secs as f64) as u64;
    eprintln!(
        "== soak: {connections} subscribers, {} events/s for {} min ({events} events)",
        args.rate, args.minutes
    );
    let fleet = Fleet {
        subscribers: connections,
        sources: args.sources,
        in_flight: 256,
    };
    let plan = Plan {
        events,
        max_duration: Duration::from_secs(secs + 30),
        rate: Some(args.rate),
        window: 4_096,
        lag: None,
        payload_bytes: args.payload_bytes,
        drain: Duration::from_secs(10),
        drain_cap: Duration::from_secs(60),
    };
    let outcome = scenario::deliver(
        &relay.target,
        fleet,
        &plan,
        Some(args.rate as u64),
        Duration::from_secs(10),
        Duration::from_secs(60),
        None,
    )
    .await;
    // The subscribers are closed now: what the relay holds after they left.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = soak_sample(pid, start);
    let _ = done_tx.send(true);
    let samples = sampler.await.unwrap_or_default();
    let d = outcome?;
    print_delivery("soak", &d);
    println!();
    println!("| when | relay RSS | relay fds | relay CPU s |");
    println!("|---|---:|---:|---:|");
    let row = |label: &str, s: &SoakSample| {
        println!(
            "| {label} | {} KiB | {} | {:.1} |",
            group(s.rss_kib),
            s.fds,
            s.cpu_secs
        )
    };
    row("start (no subscribers)", &first);
    for s in &samples {
        row(&format!("{:.0} s", s.at.as_secs_f64()), s);
    }
    match &after {
        Ok(s) => row("end (subscribers closed)", s),
        Err(e) => println!("| end | relay gone: {e} | | |"),
    }
    println!();
    println!(
        "every event to every subscriber once, in order: {}",
        if d.complete() { "yes" } else { "NO" }
    );
    print_run_footer(None, "", "");
    relay.stop().await;
    if d.complete() && after.is_ok() {
        Ok(())
    } else {
        bail!("the soak lost, repeated or refused events, or the relay died")
    }
}

/// The processes of one `nodes` setup: Redis (unless memory) and its relay nodes.
struct Started {
    redis: Option<spawn::RedisServer>,
    nodes: Vec<spawn::Running>,
}

/// `--worker-threads` for each node of `setup`: where several nodes share
/// the machine, their share of its CPUs, unless the relay flags set it.
fn node_threads(setup: Setup, flags: &[String]) -> Option<usize> {
    let set = flags.iter().any(|f| f.starts_with("--worker-threads"));
    (setup.nodes() > 1 && !set).then(|| nodes::threads_per_node(sys::cpus(), setup.nodes()))
}

impl Started {
    async fn start(
        setup: Setup,
        relay_bin: &std::path::Path,
        flags: &[String],
        redis_bin: &str,
    ) -> Result<Started> {
        let redis = match setup {
            Setup::Memory => None,
            Setup::Redis | Setup::Redis2 => Some(spawn::start_redis(redis_bin).await?),
        };
        let mut node_flags = flags.to_vec();
        if let Some(r) = &redis {
            node_flags.extend(["--engine".to_owned(), r.url()]);
        }
        if let Some(n) = node_threads(setup, flags) {
            node_flags.extend(["--worker-threads".to_owned(), n.to_string()]);
        }
        let mut nodes = Vec::new();
        for _ in 0..setup.nodes() {
            nodes.push(spawn::start_relay(relay_bin, &node_flags).await?);
        }
        Ok(Started { redis, nodes })
    }

    /// The node the publisher uses.
    fn publisher(&self) -> &Target {
        &self.nodes[0].target
    }

    /// The nodes subscribers spread over (the probes go on the last).
    fn subscribers(&self) -> Vec<Target> {
        self.nodes.iter().map(|n| n.target.clone()).collect()
    }

    /// Redis's CPU seconds so far.
    fn redis_cpu(&self) -> Option<f64> {
        let pid = self.redis.as_ref()?.child.id()?;
        sys::cpu_secs(pid).ok()
    }

    async fn stop(self) {
        for n in self.nodes {
            n.stop().await;
        }
    }
}

/// The measurements of `nodes`, in the order they run.
#[derive(Clone, Copy)]
enum NodesMeasure {
    /// One pipelined publisher, no subscriber: publish acks/s.
    Acks,
    /// Deliveries per second.
    Flood,
    /// Latency at the latency load of this index.
    Latency(usize),
}

/// One pipelined publisher on the first node and no subscriber: how fast
/// publishes are acked, and Redis's CPU meanwhile.
async fn acks_only(started: &Started, args: &NodesArgs) -> Result<Acks> {
    let shared = rtet_bench::subscriber::Shared {
        delivered: Default::default(),
        clock: rtet_bench::wire::Clock::start(),
    };
    let plan = Plan {
        events: args.publishes,
        max_duration: Duration::from_secs(120),
        rate: None,
        window: args.window,
        lag: None,
        payload_bytes: args.payload_bytes,
        drain: Duration::from_secs(5),
        drain_cap: Duration::from_secs(60),
    };
    let run = format!("acks.{}.{}", std::process::id(), shared.clock.now_us());
    let redis_before = started.redis_cpu();
    let start = std::time::Instant::now();
    let published =
        rtet_bench::publisher::publish(started.publisher(), &plan, &shared, &run).await?;
    let took = start.elapsed();
    Ok(Acks {
        published,
        took,
        redis_cpu_secs: started.redis_cpu().zip(redis_before).map(|(a, b)| a - b),
    })
}

async fn nodes(args: NodesArgs) -> Result<()> {
    let load_at_start = sys::load_average();
    eprintln!("machine: {}", sys::machine());
    let loads = nodes::latency_loads(&args.rate, &args.rate_subscribers)?;
    let relay_bin = args
        .relay_bin
        .clone()
        .unwrap_or_else(spawn::default_relay_bin);
    let mut flags: Vec<String> = RELAY_LOAD_FLAGS.iter().map(|s| s.to_string()).collect();
    flags.extend(args.relay_args.iter().cloned());
    let load = Load {
        flood_subscribers: args.flood_subscribers,
        flood_events: args.flood_events,
        flood_secs: args.flood_secs,
        lag: args.lag,
        window: args.window,
        rate: args.rate.clone(),
        // Each latency load sets its own (`loads`).
        rate_subscribers: 0,
        rate_secs: args.rate_secs,
        idle_connections: 0,
        idle_burst: 0,
        idle_burst_bytes: 0,
        sources: args.sources,
        in_flight: 256,
        payload_bytes: args.payload_bytes,
        probes: args.probes,
    };
    let probing = probing(args.probes)?;
    let mut measured: Vec<Measured> = args
        .only
        .iter()
        .map(|&setup| Measured {
            setup,
            rounds: Vec::new(),
        })
        .collect();
    let mut jobs = vec![NodesMeasure::Acks, NodesMeasure::Flood];
    jobs.extend((0..loads.len()).map(NodesMeasure::Latency));
    let rounds = args.rounds.max(1);
    // Round by round, measurement by measurement, each setup in turn on
    // fresh processes, so the setups meet the machine's load at about the
    // same time.
    for round in 1..=rounds {
        for m in measured.iter_mut() {
            m.rounds.push(Round::new(loads.len()));
        }
        for &job in &jobs {
            for m in measured.iter_mut() {
                let label = format!("{}, round {round} of {rounds}", m.setup.label());
                let this = m.rounds.last_mut().expect("a round was pushed above");
                let started =
                    Started::start(m.setup, &relay_bin, &flags, &args.redis_server).await?;
                let (publisher, subscribers) = (started.publisher(), started.subscribers());
                match job {
                    NodesMeasure::Acks => {
                        eprintln!(
                            "== {label}: {} publishes, one pipelined publisher (window {})",
                            args.publishes, args.window
                        );
                        match acks_only(&started, &args).await {
                            Ok(a) => {
                                let p = &a.published;
                                eprintln!(
                                    "  acked {} of {} (nacked {}{}) in {:.2} s: {} acks/s; Redis CPU {}",
                                    group(p.acked),
                                    group(p.sent),
                                    p.nacked,
                                    p.first_nack.as_deref().map(|e| format!(": {e}")).unwrap_or_default(),
                                    a.took.as_secs_f64(),
                                    group(a.per_sec() as u64),
                                    a.redis_cpu_secs.map_or("-".into(), |c| format!("{c:.2} s"))
                                );
                                this.acks = Some(a);
                            }
                            Err(e) => eprintln!("{label}: acks failed: {e:#}"),
                        }
                    }
                    NodesMeasure::Flood => {
                        eprintln!(
                            "== {label}: flood to {} subscribers",
                            load.flood_subscribers
                        );
                        match flood(publisher, &subscribers, &load).await {
                            Ok(d) => {
                                print_delivery("flood", &d);
                                this.flood = Some(d);
                            }
                            Err(e) => eprintln!("{label}: flood failed: {e:#}"),
                        }
                    }
                    NodesMeasure::Latency(i) => {
                        let at = loads[i];
                        eprintln!("== {label}: {} for {} s", at.label(), load.rate_secs);
                        let load = Load {
                            rate_subscribers: at.subscribers,
                            ..load.clone()
                        };
                        match latency(publisher, &subscribers, &load, at.rate, probing.as_ref())
                            .await
                        {
                            Ok(d) => {
                                print_delivery("latency", &d);
                                this.latency[i] = Some(d);
                            }
                            Err(e) => eprintln!("{label}: latency failed: {e:#}"),
                        }
                    }
                }
                started.stop().await;
            }
        }
    }
    let settings = nodes::Settings {
        window: args.window,
        flood_subscribers: args.flood_subscribers,
        loads,
        probes: args.probes,
        probe_placement: probing.as_ref().map(|p| p.placement.clone()),
        threads_per_node: node_threads(Setup::Redis2, &flags),
    };
    println!();
    print!("{}", nodes::table(&measured, &settings));
    println!();
    print_run_footer(
        Some(&load_at_start),
        "; Debian: apt-get install redis-server",
        "",
    );
    if !nodes::complete(&measured) {
        bail!("a measurement failed, or lost, repeated or refused events (see the table)");
    }
    Ok(())
}

async fn presence(args: PresenceArgs, nofile: u64) -> Result<()> {
    use rtet_bench::presence::{self as p, EventFeed, Kind, Shape, Storm, Style};
    let load_at_start = sys::load_average();
    eprintln!("machine: {}", sys::machine());
    let shapes = [
        Shape {
            channels: 1,
            per_channel: args.members,
        },
        Shape {
            channels: args.channels,
            per_channel: args.per_channel,
        },
    ];
    // The bench holds every connection of one measurement at once, and so
    // does the relay (a fresh one per cost measurement): each within the
    // fd limit, with room for everything else they hold open.
    let most = shapes
        .iter()
        .map(|s| s.total())
        .chain([args.storm_connections])
        .max()
        .unwrap_or(0);
    eprintln!("fd limit (RLIMIT_NOFILE) for the bench and the relays it starts: {nofile}");
    if idle_count(most, nofile) < most {
        bail!(
            "{most} connections do not fit under the fd limit of {nofile} (with 512 spare): \
             ask for fewer (--members, --channels × --per-channel, --storm-connections)"
        );
    }
    let relay_bin = args
        .relay_bin
        .clone()
        .unwrap_or_else(spawn::default_relay_bin);
    let mut flags: Vec<String> = RELAY_LOAD_FLAGS.iter().map(|s| s.to_string()).collect();
    flags.extend(args.relay_args.iter().cloned());

    let mut costs = Vec::new();
    if args.only.contains(&PresenceMeasure::Cost) {
        for _ in 0..args.rounds.max(1) {
            for shape in shapes {
                for kind in [Kind::Plain, Kind::Presence] {
                    eprintln!("== cost: {}, {}", shape.label(), kind.label());
                    let relay = spawn::start_relay(&relay_bin, &flags).await?;
                    let c = p::cost(&relay.target, kind, shape, args.sources, args.in_flight).await;
                    relay.stop().await;
                    let c = c?;
                    eprintln!(
                        "  {} connections ({} failed{}): {:.0} B per subscription, {:.1} µs per join or leave (joins {:.2} s, leaves {:.2} s of wall time), {} presence frames",
                        c.connections,
                        c.failed,
                        c.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default(),
                        c.bytes_per_sub(),
                        c.us_per_op(),
                        c.join_secs,
                        c.leave_secs,
                        group(c.presence_frames)
                    );
                    costs.push(c);
                }
            }
        }
    }

    let mut windows = Vec::new();
    if args.only.contains(&PresenceMeasure::Storm) {
        let exe = std::env::current_exe().context("finding this executable for the probes")?;
        let probing = probe::placement(&exe, args.probes.max(1));
        eprintln!("probes: {}", probing.placement);
        let relay = spawn::start_relay(&relay_bin, &flags).await?;
        let feed = EventFeed {
            rate: args.rate,
            warmup_secs: args.warmup_secs,
            secs: args.storm_secs,
            payload_bytes: args.payload_bytes,
        };
        let storm = |kind: Kind, style: Style| Storm {
            connections: args.storm_connections,
            secs: args.storm_secs,
            dwell: Duration::from_millis(args.storm_dwell_ms),
            channels: args.storm_channels,
            kind,
            style,
            sources: args.sources,
            in_flight: args.in_flight,
        };
        // Interleaved, so that whatever else the machine does falls on every kind of window.
        let mut plan = Vec::new();
        for _ in 0..args.storm_rounds.max(1) {
            plan.push(None);
            for style in [Style::Churn, Style::Visits] {
                for kind in [Kind::Presence, Kind::Plain] {
                    plan.push(Some(storm(kind, style)));
                }
            }
        }
        plan.push(None);
        for s in plan {
            eprintln!(
                "== window: {}",
                s.map_or("at rest".into(), |s| format!(
                    "storm of {}, {}",
                    s.kind.label(),
                    s.style.label()
                ))
            );
            let w = p::window(&relay.target, &probing, feed, s).await;
            let w = match w {
                Ok(w) => w,
                Err(e) => {
                    relay.stop().await;
                    return Err(e);
                }
            };
            eprintln!(
                "  probes p99 {:.3} ms, {} of {} delivered",
                w.probes.latency.value_at_quantile(0.99) as f64 / 1000.0,
                w.probes.received,
                w.probes.expected
            );
            if let Some((_, o)) = &w.storm {
                if let Some(e) = &o.error {
                    eprintln!("  storm: {} failed; the first: {e}", o.failed);
                }
            }
            windows.push(w);
        }
        relay.stop().await;
    }

    println!();
    if !costs.is_empty() {
        print!("{}", p::cost_table(&costs));
        println!();
    }
    if !windows.is_empty() {
        println!(
            "probes: {} subscribers of the anonymous channel, {} events/s, the first {} s of each window untimed",
            args.probes.max(1),
            args.rate,
            args.warmup_secs
        );
        print!("{}", p::storm_table(&windows));
        println!();
    }
    print_run_footer(Some(&load_at_start), "", "");
    let incomplete =
        costs.iter().any(|c| !c.complete()) || windows.iter().any(|w| !w.probes.complete());
    if incomplete {
        bail!("a measurement lost connections, answers or events (see the tables)");
    }
    Ok(())
}
