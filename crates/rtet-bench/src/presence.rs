//! Presence load (`rtet-bench presence`): what presence costs the relay, and
//! whether a join/leave storm on presence channels slows event delivery on
//! other channels ("Presence" in `docs/protocol.md`).
//!
//! - [`cost`]: `N` connections, each authenticated with a token of its own
//!   user, all subscribe to their channel at once (joins), then all
//!   unsubscribe (leaves). Read from `/proc`: the relay's resident memory
//!   before the joins and after them and one event to every channel (so
//!   what a connection keeps once it has sent frames is in both kinds), and
//!   its CPU time over each phase, until the presence frames it causes have
//!   all arrived. The same connections with
//!   [`Kind::Plain`] tokens (the channel granted, no presence) on a fresh
//!   relay are the baseline: the difference is what presence adds.
//! - [`window`]: probe subscribers (a separate, pinned process) on the
//!   anonymous channel get a steady stream of events for a few seconds,
//!   while nothing else happens (at rest) or while a [`Storm`] of
//!   connections comes, joins a presence channel, stays a moment and goes.
//!   Their publish→deliver latency, window by window, is the measurement.
//!
//! A token is signed here with the relay's API key, as WordPress signs
//! its visitors' tokens: `sub` a user, `info` a display name and an avatar
//! URL of a realistic size.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use rtet_protocol::frames::parse_server_frame;
use rtet_protocol::{Claims, ClientFrame, MemberInfo, ServerFrame};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{connect, source_ip, Ws};
use crate::probe::{ProbeOutcome, Probes, Probing};
use crate::publisher::{publish, Plan, Published};
use crate::subscriber::Shared;
use crate::sys;
use crate::target::Target;
use crate::wire::Clock;

/// How long one connection may take to open and authenticate.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a phase (every join, every leave) may take at most.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

/// A phase is over once no presence frame arrived for this long (three
/// presence ticks): the coalesced frames it caused have all been sent.
const QUIET: Duration = Duration::from_millis(300);

/// What a subscription's token says about presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The token makes its user a presence member of the channel.
    Presence,
    /// The token grants the channel, nothing about presence.
    Plain,
}

impl Kind {
    /// The name used in tables.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Presence => "presence members",
            Kind::Plain => "plain subscriptions",
        }
    }
}

/// A subscriber token for user `user` on `channel`, valid for an hour.
pub fn token(key: &str, kind: Kind, user: usize, channel: &str) -> Result<String> {
    let sub = format!("{}", 100_000 + user);
    let mut claims = Claims::new(sub.clone(), Vec::new(), Duration::from_secs(3600));
    match kind {
        Kind::Presence => {
            claims.presence = vec![channel.to_owned()];
            claims.info = Some(MemberInfo {
                name: format!("Reader {sub}"),
                avatar: Some(format!(
                    "https://secure.gravatar.com/avatar/{:032x}?s=48&d=mm&r=g",
                    user as u128 * 0x9e37_79b9_7f4a_7c15
                )),
            });
        }
        Kind::Plain => claims.channels = vec![channel.to_owned()],
    }
    rtet_protocol::token::sign(key.as_bytes(), &claims).context("signing a token")
}

/// Connects from `source`, sends `auth` with `token` and waits for `auth_ok`.
pub async fn open_authed(target: &Target, source: IpAddr, token: String) -> Result<Ws> {
    let mut ws = connect(&target.subscribe_url(), source, None).await?;
    ws.send(Message::text(serde_json::to_string(&ClientFrame::Auth {
        token,
    })?))
    .await?;
    loop {
        match next_frame(&mut ws).await? {
            ServerFrame::AuthOk { .. } => return Ok(ws),
            ServerFrame::Error { code, message, .. } => bail!("auth refused: {code:?}: {message}"),
            _ => {}
        }
    }
}

/// The next frame from the relay (pings are answered by tungstenite).
async fn next_frame(ws: &mut Ws) -> Result<ServerFrame> {
    loop {
        let Some(msg) = ws.next().await else {
            bail!("closed by the relay");
        };
        if let Message::Text(text) = msg? {
            return parse_server_frame(&text).map_err(|e| anyhow::anyhow!("{}", e.message));
        }
    }
}

/// Counts, over every connection of a measurement.
#[derive(Default)]
pub struct Tally {
    /// `subscribed` answers.
    pub subscribed: AtomicU64,
    /// `unsubscribed` answers.
    pub unsubscribed: AtomicU64,
    /// `presence`, `join`, `leave` and `presence_count` frames.
    pub presence_frames: AtomicU64,
    /// `event` frames.
    pub events: AtomicU64,
    /// `error` frames.
    pub errors: AtomicU64,
    /// Connections the relay closed.
    pub closed: AtomicU64,
    /// The first `error` frame or failure.
    pub first_error: Mutex<Option<String>>,
}

impl Tally {
    fn note(&self, frame: &ServerFrame) {
        let counter = match frame {
            ServerFrame::Subscribed { .. } => &self.subscribed,
            ServerFrame::Unsubscribed { .. } => &self.unsubscribed,
            ServerFrame::Presence { .. }
            | ServerFrame::PresenceCount { .. }
            | ServerFrame::Join { .. }
            | ServerFrame::Leave { .. } => &self.presence_frames,
            ServerFrame::Event { .. } => &self.events,
            ServerFrame::Error { code, message, .. } => {
                self.fail(format!("{code:?}: {message}"));
                &self.errors
            }
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn fail(&self, why: String) {
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(why);
        }
    }

    fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|f| f.clone())
    }
}

/// What every connection of [`cost`] is told to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Wait,
    Join,
    Leave,
    Close,
}

/// Holds `ws` on `channel`: subscribes when the phase turns to `Join`,
/// unsubscribes on `Leave`, closes on `Close`; notes every frame in `tally`.
async fn drive(mut ws: Ws, channel: String, mut phase: watch::Receiver<Phase>, tally: Arc<Tally>) {
    loop {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
                let frame = match *phase.borrow_and_update() {
                    Phase::Wait => continue,
                    Phase::Join => ClientFrame::Subscribe { channel: channel.clone(), since: None },
                    Phase::Leave => ClientFrame::Unsubscribe { channel: channel.clone() },
                    Phase::Close => break,
                };
                let text = serde_json::to_string(&frame).expect("a client frame encodes");
                if ws.send(Message::text(text)).await.is_err() {
                    tally.closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(frame) = parse_server_frame(&text) {
                        tally.note(&frame);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    tally.closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
        }
    }
    let _ = ws.close(None).await;
}

/// How subscriptions spread over channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Channels.
    pub channels: usize,
    /// Subscriptions (users) per channel.
    pub per_channel: usize,
}

impl Shape {
    /// Subscriptions in all.
    pub fn total(self) -> usize {
        self.channels * self.per_channel
    }

    /// E.g. "1 channel of 10,000", "1,000 channels of 10".
    pub fn label(self) -> String {
        format!(
            "{} channel{} of {}",
            crate::report::group(self.channels as u64),
            if self.channels == 1 { "" } else { "s" },
            crate::report::group(self.per_channel as u64)
        )
    }

    /// The channel of subscription `i`.
    fn channel(self, i: usize) -> String {
        format!("post.{}", 1 + i / self.per_channel.max(1))
    }
}

/// What [`cost`] measured on one relay.
#[derive(Debug, Clone)]
pub struct Cost {
    /// Presence members or plain subscriptions.
    pub kind: Kind,
    /// How they spread over channels.
    pub shape: Shape,
    /// Connections opened and authenticated.
    pub connections: usize,
    /// Connections that failed to open, and why the first did.
    pub failed: usize,
    /// The first failure or `error` frame.
    pub error: Option<String>,
    /// `subscribed` and `unsubscribed` answers received.
    pub subscribed: u64,
    /// See [`Cost::subscribed`].
    pub unsubscribed: u64,
    /// Events received (one per connection: see [`cost`]).
    pub events: u64,
    /// Presence frames the connections received over both phases.
    pub presence_frames: u64,
    /// Connections the relay closed.
    pub closed: u64,
    /// The relay's VmRSS with every connection open and authenticated, KiB.
    pub rss_before_kib: u64,
    /// The same with every connection subscribed and sent one event, KiB.
    pub rss_joined_kib: u64,
    /// Relay CPU seconds from the first `subscribe` to the last presence frame it caused.
    pub join_cpu_secs: f64,
    /// Relay CPU seconds from the first `unsubscribe` to the last presence frame it caused.
    pub leave_cpu_secs: f64,
    /// Wall time of each phase, to its last answer.
    pub join_secs: f64,
    /// See [`Cost::join_secs`].
    pub leave_secs: f64,
}

impl Cost {
    /// Relay memory per subscription, bytes.
    pub fn bytes_per_sub(&self) -> f64 {
        (self.rss_joined_kib as f64 - self.rss_before_kib as f64) * 1024.0
            / self.connections.max(1) as f64
    }

    /// Relay CPU per join or leave, µs.
    pub fn us_per_op(&self) -> f64 {
        (self.join_cpu_secs + self.leave_cpu_secs) * 1e6 / (2 * self.connections.max(1)) as f64
    }

    /// Every connection opened, joined, got its event and left, and none was closed or refused.
    pub fn complete(&self) -> bool {
        let n = self.connections as u64;
        self.failed == 0
            && self.error.is_none()
            && self.closed == 0
            && self.subscribed == n
            && self.events == n
            && self.unsubscribed == n
    }
}

/// Opens `shape.total()` connections to `target` (a relay whose pid and API
/// key it knows), each authenticated as its own user with a `kind` token
/// for its channel, and measures the joins and then the leaves.
pub async fn cost(
    target: &Target,
    kind: Kind,
    shape: Shape,
    sources: usize,
    in_flight: usize,
) -> Result<Cost> {
    let pid = target
        .pid
        .context("the presence cost needs the relay's pid")?;
    let key = target.api_key.as_deref().context("the relay's API key")?;
    let n = shape.total();
    let tokens: Vec<String> = (0..n)
        .map(|i| token(key, kind, i, &shape.channel(i)))
        .collect::<Result<_>>()?;

    let gate = Arc::new(Semaphore::new(in_flight.max(1)));
    let tally = Arc::new(Tally::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::Wait);
    let mut opening = JoinSet::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let permit = gate.clone().acquire_owned().await?;
        let target = target.clone();
        opening.spawn(async move {
            let opened = tokio::time::timeout(
                OPEN_TIMEOUT,
                open_authed(&target, source_ip(i, sources), token),
            )
            .await
            .context("timed out")
            .and_then(|r| r);
            drop(permit);
            opened.map(|ws| (i, ws))
        });
    }
    let mut held = JoinSet::new();
    let (mut connections, mut failed) = (0, 0);
    while let Some(joined) = opening.join_next().await {
        match joined.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok((i, ws)) => {
                connections += 1;
                held.spawn(drive(ws, shape.channel(i), phase_rx.clone(), tally.clone()));
            }
            Err(e) => {
                failed += 1;
                tally.fail(format!("opening: {e:#}"));
            }
        }
    }
    if connections == 0 {
        bail!(
            "no connection opened: {}",
            tally.first_error().unwrap_or_default()
        );
    }
    // Let the handshakes' garbage settle before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before_kib = sys::rss_kib(pid)?;

    let expected = connections as u64;
    let (join_cpu_secs, join_secs) = run_phase(
        pid,
        &phase_tx,
        Phase::Join,
        &tally,
        &tally.subscribed,
        expected,
    )
    .await?;
    // One event to every channel, as a subscriber gets in its first minutes:
    // what its connection keeps after sending its first frames is then in
    // both kinds, and the difference is presence's own.
    prime(target, key, shape).await?;
    let primed = Instant::now();
    while tally.events.load(Ordering::Relaxed) + tally.closed.load(Ordering::Relaxed) < expected
        && primed.elapsed() < PHASE_TIMEOUT
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(QUIET).await;
    let rss_joined_kib = sys::rss_kib(pid)?;
    let (leave_cpu_secs, leave_secs) = run_phase(
        pid,
        &phase_tx,
        Phase::Leave,
        &tally,
        &tally.unsubscribed,
        expected,
    )
    .await?;
    let _ = phase_tx.send(Phase::Close);
    while held.join_next().await.is_some() {}

    Ok(Cost {
        kind,
        shape,
        connections,
        failed,
        error: tally.first_error(),
        subscribed: tally.subscribed.load(Ordering::Relaxed),
        unsubscribed: tally.unsubscribed.load(Ordering::Relaxed),
        events: tally.events.load(Ordering::Relaxed),
        presence_frames: tally.presence_frames.load(Ordering::Relaxed),
        closed: tally.closed.load(Ordering::Relaxed),
        rss_before_kib,
        rss_joined_kib,
        join_cpu_secs,
        leave_cpu_secs,
        join_secs,
        leave_secs,
    })
}

/// Publishes one event to each of `shape`'s channels and waits for the acks.
async fn prime(target: &Target, key: &str, shape: Shape) -> Result<()> {
    let mut ws = connect(
        &target.publish_url(),
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        Some(key),
    )
    .await
    .context("the publisher connection")?;
    let run = format!(
        "c{}.{}",
        std::process::id(),
        crate::wire::Clock::start().origin()
    );
    let pad = crate::wire::padding(100);
    for c in 0..shape.channels {
        let channel = shape.channel(c * shape.per_channel);
        ws.send(Message::text(crate::wire::publish_frame(
            &run, &channel, c as u64, 0, &pad,
        )))
        .await?;
    }
    let mut acked = 0;
    while acked < shape.channels {
        match tokio::time::timeout(PHASE_TIMEOUT, next_frame(&mut ws))
            .await
            .context("waiting for acks")??
        {
            ServerFrame::Ack { .. } => acked += 1,
            ServerFrame::Nack { code, message, .. } => {
                bail!("publish refused: {code:?}: {message}")
            }
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// Tells every connection to do `phase` and waits until `expected` have
/// answered (in `answers`, or with an error or a close) and then no presence
/// frame arrived for [`QUIET`]. Returns the relay's CPU seconds over it and
/// the wall seconds to the last answer.
async fn run_phase(
    pid: u32,
    phase_tx: &watch::Sender<Phase>,
    phase: Phase,
    tally: &Tally,
    answers: &AtomicU64,
    expected: u64,
) -> Result<(f64, f64)> {
    let cpu_before = sys::cpu_secs_precise(pid)?;
    let start = Instant::now();
    let _ = phase_tx.send(phase);
    let mut answered_at: Option<Duration> = None;
    let mut frames = tally.presence_frames.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while start.elapsed() < PHASE_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = tally.presence_frames.load(Ordering::Relaxed);
        if now != frames {
            frames = now;
            last_change = Instant::now();
        }
        let over = answers.load(Ordering::Relaxed)
            + tally.errors.load(Ordering::Relaxed)
            + tally.closed.load(Ordering::Relaxed);
        if over < expected {
            continue;
        }
        let at = *answered_at.get_or_insert_with(|| start.elapsed());
        let quiet_since = last_change.max(start + at);
        if quiet_since.elapsed() >= QUIET {
            break;
        }
    }
    let cpu = sys::cpu_secs_precise(pid)? - cpu_before;
    let answered = answered_at.unwrap_or_else(|| start.elapsed());
    Ok((cpu, answered.as_secs_f64()))
}

/// How a storm's clients come and go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Page views: each client connects, authenticates and subscribes on
    /// arrival, and closes its connection to leave.
    Visits,
    /// Joins and leaves only: the connections are open and authenticated
    /// before the window; each subscribes on arrival and unsubscribes to
    /// leave, and they close after the window.
    Churn,
}

impl Style {
    /// The name used in tables.
    pub fn label(self) -> &'static str {
        match self {
            Style::Visits => "visits (connect, join, close)",
            Style::Churn => "churn (subscribe, unsubscribe on open connections)",
        }
    }
}

/// A join/leave storm: `connections` clients arrive evenly over
/// `secs - dwell`, each subscribes to one of `channels` channels with a
/// `kind` token, stays `dwell`, and leaves as `style` says.
#[derive(Debug, Clone, Copy)]
pub struct Storm {
    /// Clients in all.
    pub connections: usize,
    /// From the first arrival to the last client's leave.
    pub secs: f64,
    /// How long each client stays subscribed.
    pub dwell: Duration,
    /// Channels they spread over (client `i` on channel `i % channels`).
    pub channels: usize,
    /// Presence members or plain subscribers.
    pub kind: Kind,
    /// Page views, or joins and leaves on open connections.
    pub style: Style,
    /// Source addresses to spread the clients over.
    pub sources: usize,
    /// Handshakes in flight at once while opening [`Style::Churn`]'s connections.
    pub in_flight: usize,
}

impl Storm {
    fn channel(&self, i: usize) -> String {
        format!("post.{}", 1 + i % self.channels.max(1))
    }
}

/// What a storm's clients saw.
#[derive(Debug, Clone, Default)]
pub struct StormOutcome {
    /// Clients that were subscribed.
    pub joined: u64,
    /// Clients that failed (to open, to be subscribed or to leave).
    pub failed: u64,
    /// The first failure or `error` frame.
    pub error: Option<String>,
    /// Presence frames the clients received.
    pub presence_frames: u64,
    /// Clients the relay closed while they stayed.
    pub closed: u64,
    /// From the first arrival to the last leave.
    pub elapsed: Duration,
}

/// Opens and authenticates [`Style::Churn`]'s connections, before its window.
pub async fn open_storm(target: &Target, storm: Storm) -> Result<Vec<Ws>> {
    let key = target.api_key.as_deref().context("the relay's API key")?;
    let gate = Arc::new(Semaphore::new(storm.in_flight.max(1)));
    let mut opening = JoinSet::new();
    for i in 0..storm.connections {
        let token = token(key, storm.kind, i, &storm.channel(i))?;
        let permit = gate.clone().acquire_owned().await?;
        let target = target.clone();
        opening.spawn(async move {
            let opened = tokio::time::timeout(
                OPEN_TIMEOUT,
                open_authed(&target, source_ip(i, storm.sources), token),
            )
            .await
            .context("timed out")
            .and_then(|r| r);
            drop(permit);
            opened.map(|ws| (i, ws))
        });
    }
    let mut conns: Vec<Option<Ws>> = (0..storm.connections).map(|_| None).collect();
    while let Some(joined) = opening.join_next().await {
        let (i, ws) = joined??;
        conns[i] = Some(ws);
    }
    Ok(conns.into_iter().flatten().collect())
}

/// Sends `frame` and reads until an answer `answered` accepts (an `error`
/// frame fails), noting presence frames in `tally`.
async fn ask(
    ws: &mut Ws,
    frame: &ClientFrame,
    answered: fn(&ServerFrame) -> bool,
    tally: &Tally,
) -> Result<()> {
    ws.send(Message::text(serde_json::to_string(frame)?))
        .await?;
    loop {
        let f = next_frame(ws).await?;
        if answered(&f) {
            return Ok(());
        }
        if let ServerFrame::Error { code, message, .. } = f {
            bail!("refused: {code:?}: {message}");
        }
        tally.note(&f);
    }
}

/// Runs `storm` against `target` (its API key signs the tokens); `held`
/// are [`Style::Churn`]'s connections from [`open_storm`], returned once
/// every client has left (so closing them is not part of the storm).
pub async fn run_storm(
    target: &Target,
    storm: Storm,
    held: Vec<Ws>,
) -> Result<(StormOutcome, Vec<Ws>)> {
    let key = target.api_key.as_deref().context("the relay's API key")?;
    let arrivals = (storm.secs - storm.dwell.as_secs_f64()).max(0.0);
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let mut held = held.into_iter();
    let mut clients = JoinSet::new();
    for i in 0..storm.connections {
        let channel = storm.channel(i);
        let conn = match storm.style {
            Style::Churn => match held.next() {
                Some(ws) => Ok(ws),
                None => break,
            },
            Style::Visits => Err(token(key, storm.kind, i, &channel)?),
        };
        let at = start + Duration::from_secs_f64(arrivals * i as f64 / storm.connections as f64);
        let (target, tally) = (target.clone(), tally.clone());
        clients.spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let subscribe = ClientFrame::Subscribe {
                channel: channel.clone(),
                since: None,
            };
            let subscribed = |f: &ServerFrame| matches!(f, ServerFrame::Subscribed { .. });
            let visit = async {
                let mut ws = match conn {
                    Ok(ws) => ws,
                    Err(token) => open_authed(&target, source_ip(i, storm.sources), token).await?,
                };
                ask(&mut ws, &subscribe, subscribed, &tally).await?;
                Ok::<_, anyhow::Error>(ws)
            };
            let mut ws = tokio::time::timeout(OPEN_TIMEOUT, visit)
                .await
                .context("timed out joining")??;
            tally.subscribed.fetch_add(1, Ordering::Relaxed);
            let leave = tokio::time::sleep_until((at + storm.dwell).into());
            tokio::pin!(leave);
            loop {
                tokio::select! {
                    _ = &mut leave => break,
                    msg = ws.next() => match msg {
                        Some(Ok(Message::Text(text))) => {
                            if let Ok(frame) = parse_server_frame(&text) {
                                tally.note(&frame);
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => {
                            tally.closed.fetch_add(1, Ordering::Relaxed);
                            return Ok(None);
                        }
                    },
                }
            }
            match storm.style {
                Style::Visits => {
                    let _ = ws.close(None).await;
                    Ok(None)
                }
                Style::Churn => {
                    let unsubscribe = ClientFrame::Unsubscribe { channel };
                    let unsubscribed =
                        |f: &ServerFrame| matches!(f, ServerFrame::Unsubscribed { .. });
                    tokio::time::timeout(
                        OPEN_TIMEOUT,
                        ask(&mut ws, &unsubscribe, unsubscribed, &tally),
                    )
                    .await
                    .context("timed out leaving")??;
                    Ok(Some(ws))
                }
            }
        });
    }
    let mut out = StormOutcome::default();
    let mut kept = Vec::new();
    while let Some(joined) = clients.join_next().await {
        match joined.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(ws) => kept.extend(ws),
            Err(e) => {
                out.failed += 1;
                tally.fail(format!("{e:#}"));
            }
        }
    }
    out.elapsed = start.elapsed();
    out.joined = tally.subscribed.load(Ordering::Relaxed);
    out.presence_frames = tally.presence_frames.load(Ordering::Relaxed);
    out.closed = tally.closed.load(Ordering::Relaxed);
    out.error = tally.first_error();
    Ok((out, kept))
}

/// One latency window: probes timed over a steady publish, with or without a storm.
#[derive(Debug)]
pub struct Window {
    /// The storm that ran meanwhile, if any, and what its clients saw.
    pub storm: Option<(Storm, StormOutcome)>,
    /// What the publisher did.
    pub published: Published,
    /// What the probes saw.
    pub probes: ProbeOutcome,
    /// Relay CPU seconds over the window.
    pub relay_cpu_secs: f64,
}

/// How a [`window`] publishes.
#[derive(Debug, Clone, Copy)]
pub struct EventFeed {
    /// Events per second to the probes' channel.
    pub rate: f64,
    /// Seconds of warm-up before the timed part (not timed).
    pub warmup_secs: f64,
    /// Seconds timed: the storm runs in this part.
    pub secs: f64,
    /// Padding bytes in each event's data.
    pub payload_bytes: usize,
}

/// Publishes `feed` to the probes on `target`'s channel and, after the
/// warm-up, runs `storm` at the same time; the probes time the events
/// published after the warm-up.
pub async fn window(
    target: &Target,
    probing: &Probing,
    feed: EventFeed,
    storm: Option<Storm>,
) -> Result<Window> {
    let pid = target.pid.context("the window needs the relay's pid")?;
    let shared = Shared {
        delivered: Default::default(),
        clock: Clock::start(),
    };
    let held = match storm {
        Some(s) if s.style == Style::Churn => open_storm(target, s).await?,
        _ => Vec::new(),
    };
    let warm_events = (feed.rate * feed.warmup_secs) as u64;
    let events = warm_events + (feed.rate * feed.secs) as u64;
    let probes = Probes::start(probing, target, shared.clock, warm_events).await?;
    // The load tool (and the storm's clients) keep off the probes' CPU meanwhile.
    let _pinned = if probing.load_cpus.is_empty() {
        None
    } else {
        Some(sys::Pinned::to(&probing.load_cpus, &probing.all_cpus).context("pinning")?)
    };
    let plan = Plan {
        events,
        max_duration: Duration::from_secs_f64(feed.warmup_secs + feed.secs + 10.0),
        rate: Some(feed.rate),
        window: events.max(1) as usize,
        lag: None,
        payload_bytes: feed.payload_bytes,
        drain: Duration::from_secs(5),
        drain_cap: Duration::from_secs(15),
    };
    let run = format!("p{}.{}", std::process::id(), shared.clock.now_us());
    let cpu_before = sys::cpu_secs_precise(pid)?;
    let storming = async {
        match storm {
            Some(s) => {
                tokio::time::sleep(Duration::from_secs_f64(feed.warmup_secs)).await;
                run_storm(target, s, held)
                    .await
                    .map(|(o, kept)| Some((s, o, kept)))
            }
            None => Ok(None),
        }
    };
    let (published, storm) = tokio::join!(publish(target, &plan, &shared, &run), storming);
    let relay_cpu_secs = sys::cpu_secs_precise(pid)? - cpu_before;
    let published = published.context("publishing")?;
    let probes = probes.finish(published.sent).await.context("the probes")?;
    // The churn's connections close after the window.
    let storm = storm?.map(|(s, o, _kept)| (s, o));
    Ok(Window {
        storm,
        published,
        probes,
        relay_cpu_secs,
    })
}

/// Milliseconds with three decimals, from µs.
fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// The cost table: one row per measurement, then per shape the difference
/// between presence members and plain subscriptions (the mean over rounds).
pub fn cost_table(rows: &[Cost]) -> String {
    use crate::report::group;
    let mut out = String::new();
    out.push_str("| shape | subscriptions | relay RSS before → joined | per subscription | relay CPU joins + leaves | per join or leave | presence frames sent | all joined and left |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---|\n");
    for c in rows {
        out.push_str(&format!(
            "| {} | {} {} | {} → {} KiB | {} B | {:.3} + {:.3} s | {:.1} µs | {} | {} |\n",
            c.shape.label(),
            group(c.connections as u64),
            c.kind.label(),
            group(c.rss_before_kib),
            group(c.rss_joined_kib),
            group(c.bytes_per_sub().max(0.0) as u64),
            c.join_cpu_secs,
            c.leave_cpu_secs,
            c.us_per_op(),
            group(c.presence_frames),
            if c.complete() { "yes" } else { "NO" }
        ));
    }
    let mut shapes: Vec<Shape> = Vec::new();
    for c in rows {
        if !shapes.contains(&c.shape) {
            shapes.push(c.shape);
        }
    }
    out.push('\n');
    out.push_str("| shape | presence adds per member: memory | presence adds per join or leave: relay CPU |\n");
    out.push_str("|---|---:|---:|\n");
    for shape in shapes {
        let mean = |kind: Kind, f: &dyn Fn(&Cost) -> f64| {
            let of: Vec<f64> = rows
                .iter()
                .filter(|c| c.shape == shape && c.kind == kind)
                .map(f)
                .collect();
            (!of.is_empty()).then(|| of.iter().sum::<f64>() / of.len() as f64)
        };
        let diff = |f: &dyn Fn(&Cost) -> f64| {
            mean(Kind::Presence, f)
                .zip(mean(Kind::Plain, f))
                .map(|(p, q)| p - q)
        };
        let bytes = diff(&|c: &Cost| c.bytes_per_sub());
        let us = diff(&|c: &Cost| c.us_per_op());
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            shape.label(),
            bytes.map_or("?".into(), |b| format!("{b:+.0} B")),
            us.map_or("?".into(), |u| format!("{u:+.1} µs")),
        ));
    }
    out
}

/// The storm table: one row per window, in the order they ran.
pub fn storm_table(windows: &[Window]) -> String {
    use crate::report::group;
    let mut out = String::new();
    out.push_str("| window | probes' latency p50 / p99 / p99.9 / max ms | probe deliveries | relay CPU s | storm clients joined (failed) | presence frames to storm clients |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|\n");
    for w in windows {
        let p = &w.probes;
        let (what, joined, frames) = match &w.storm {
            Some((s, o)) => (
                format!(
                    "storm, {}: {} {} over {} channels in {:.1} s (each stays {:.1} s)",
                    s.style.label(),
                    group(s.connections as u64),
                    s.kind.label(),
                    s.channels,
                    o.elapsed.as_secs_f64(),
                    s.dwell.as_secs_f64()
                ),
                format!("{} ({})", group(o.joined), o.failed),
                group(o.presence_frames),
            ),
            None => ("at rest".to_owned(), "".to_owned(), "".to_owned()),
        };
        out.push_str(&format!(
            "| {what} | {} / {} / {} / {} | {} / {}{} | {:.2} | {joined} | {frames} |\n",
            ms(p.latency.value_at_quantile(0.5)),
            ms(p.latency.value_at_quantile(0.99)),
            ms(p.latency.value_at_quantile(0.999)),
            ms(p.latency.max()),
            group(p.received),
            group(p.expected),
            if p.complete() { "" } else { " (INCOMPLETE)" },
            w.relay_cpu_secs,
        ));
    }
    out
}
