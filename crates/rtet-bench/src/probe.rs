//! Probe subscribers: a few subscribers in a separate process (`rtet-bench
//! probe`), pinned to a core of their own where the machine has one, that
//! time deliveries beside the load subscribers. The load tool's thousand
//! subscribers queue behind each other on its cores, so their latency
//! includes the tool's own queueing; a probe's is what one subscriber feels.
//!
//! The parent talks to the probe process over its stdin and stdout, one line
//! at a time:
//!
//! - probe → parent `ready` once every probe is open (and, on rtet-relay, subscribed);
//! - parent → probe `stop SENT` once the run is over (`SENT` events were published);
//! - probe → parent `tally RECEIVED GAPS REPEATS CLOSED`, then `hist MICROS COUNT`
//!   for each recorded latency, then `end`.
//!
//! Both ends read the same clock ([`Clock::from_origin`] over `CLOCK_MONOTONIC`).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::subscriber::{self, latency_histogram, Shared};
use crate::target::Target;
use crate::wire::Clock;

/// How long the probe process may take to open its subscribers, and to
/// report once told to stop.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the probes saw, over all of them.
#[derive(Debug)]
pub struct ProbeOutcome {
    /// Probe subscribers.
    pub count: usize,
    /// Events they received.
    pub received: u64,
    /// `sent × count`.
    pub expected: u64,
    /// Lost events (including those missing at the end).
    pub gaps: u64,
    /// Duplicated or reordered events.
    pub repeats: u64,
    /// Probes the relay closed before the end.
    pub closed: u64,
    /// Publish-to-receipt latency, µs, of the timed events.
    pub latency: Histogram<u64>,
    /// Where the probes ran: e.g. "probes pinned to CPU 1, load tool to CPU 0".
    pub placement: String,
}

impl ProbeOutcome {
    /// Every probe got every event once, in order.
    pub fn complete(&self) -> bool {
        self.expected > 0 && self.received == self.expected && self.gaps == 0 && self.repeats == 0
    }
}

/// How to start the probe process.
#[derive(Debug, Clone)]
pub struct Probing {
    /// The rtet-bench executable.
    pub exe: std::path::PathBuf,
    /// Probe subscribers.
    pub count: usize,
    /// The CPU to pin them to, if any.
    pub cpu: Option<usize>,
    /// The CPUs to pin the load tool to while the probes run (empty: not pinned).
    pub load_cpus: Vec<usize>,
    /// Every CPU the load tool may use otherwise.
    pub all_cpus: Vec<usize>,
    /// Said in the report: where the probes and the load ran.
    pub placement: String,
}

/// A running probe process.
pub struct Probes {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    count: usize,
    placement: String,
}

impl Probes {
    /// Starts `exe probe` against `target`, on the run's `clock`, timing events
    /// numbered `time_from` and up; returns once every probe is open.
    pub async fn start(
        probing: &Probing,
        target: &Target,
        clock: Clock,
        time_from: u64,
    ) -> Result<Probes> {
        let mut cmd = Command::new(&probing.exe);
        cmd.arg("probe")
            .arg("--addr")
            .arg(target.addr.to_string())
            .arg("--dialect")
            .arg(target.dialect.flag())
            .arg("--channel")
            .arg(&target.channel)
            .arg("--count")
            .arg(probing.count.to_string())
            .arg("--clock-origin")
            .arg(clock.origin().to_string())
            .arg("--time-from")
            .arg(time_from.to_string());
        if let Some(cpu) = probing.cpu {
            cmd.arg("--cpu").arg(cpu.to_string());
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} probe", probing.exe.display()))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let first = tokio::time::timeout(PROBE_TIMEOUT, lines.next_line())
            .await
            .context("the probes did not open in time")??;
        if first.as_deref() != Some("ready") {
            bail!("the probe process did not get ready: {first:?}");
        }
        Ok(Probes {
            child,
            stdin,
            lines,
            count: probing.count,
            placement: probing.placement.clone(),
        })
    }

    /// The probes counted as subscribers of the channel (for nchan's count).
    pub fn count(&self) -> usize {
        self.count
    }

    /// Tells the probes `sent` events were published, and collects what they saw.
    pub async fn finish(mut self, sent: u64) -> Result<ProbeOutcome> {
        self.stdin
            .write_all(format!("stop {sent}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        let mut out = ProbeOutcome {
            count: self.count,
            received: 0,
            expected: sent * self.count as u64,
            gaps: 0,
            repeats: 0,
            closed: 0,
            latency: latency_histogram(),
            placement: self.placement,
        };
        let read = async {
            while let Some(line) = self.lines.next_line().await? {
                let fields: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .map(|f| f.parse().context("a probe line's number"))
                    .collect::<Result<_>>()?;
                match (line.split_whitespace().next(), fields.as_slice()) {
                    (Some("tally"), [received, gaps, repeats, closed]) => {
                        out.received = *received;
                        out.gaps = *gaps;
                        out.repeats = *repeats;
                        out.closed = *closed;
                    }
                    (Some("hist"), [micros, count]) => {
                        out.latency.saturating_record_n(*micros, *count);
                    }
                    (Some("end"), []) => return Ok(()),
                    _ => bail!("an unexpected line from the probes: {line:?}"),
                }
            }
            bail!("the probe process ended without its report")
        };
        tokio::time::timeout(PROBE_TIMEOUT, read)
            .await
            .context("the probes did not report in time")??;
        let _ = self.child.wait().await;
        Ok(out)
    }
}

/// The probe process's side: opens `count` subscribers to `target`, says
/// `ready` on `output`, reads deliveries until `input` says `stop SENT`, then
/// reports (see the module's doc).
pub async fn serve(
    target: &Target,
    count: usize,
    clock: Clock,
    time_from: u64,
    input: impl AsyncBufRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
) -> Result<()> {
    let mut conns = Vec::with_capacity(count);
    for i in 0..count {
        conns.push(subscriber::open(target, i, 1).await?);
    }
    let shared = Arc::new(Shared {
        delivered: Default::default(),
        clock,
    });
    let (stop_tx, mut readers) = subscriber::read_all(conns, &shared, Some(time_from));
    output.write_all(b"ready\n").await?;
    output.flush().await?;

    let mut lines = input.lines();
    let sent: u64 = loop {
        let Some(line) = lines.next_line().await? else {
            bail!("the parent closed the probes' input without saying stop");
        };
        if let Some(n) = line.strip_prefix("stop ") {
            break n.trim().parse().context("stop SENT")?;
        }
    };
    // Events still on their way: wait until each probe has all (or a quiet second).
    let expected = sent * count as u64;
    let mut last = shared.delivered.load();
    let mut quiet = tokio::time::Instant::now();
    while last < expected && quiet.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = shared.delivered.load();
        if now != last {
            last = now;
            quiet = tokio::time::Instant::now();
        }
    }
    let _ = stop_tx.send(true);

    let (mut received, mut gaps, mut repeats, mut closed) = (0u64, 0u64, 0u64, 0u64);
    let mut latency = latency_histogram();
    while let Some(joined) = readers.join_next().await {
        let tally = joined.context("a probe task failed")?;
        received += tally.received;
        gaps += tally.gaps + sent.saturating_sub(tally.received + tally.gaps);
        repeats += tally.repeats;
        closed += u64::from(tally.closed);
        if let Some(h) = tally.latency.as_ref() {
            latency.add(h).context("merging latency histograms")?;
        }
    }
    let mut report = format!("tally {received} {gaps} {repeats} {closed}\n");
    for v in latency.iter_recorded() {
        report.push_str(&format!(
            "hist {} {}\n",
            v.value_iterated_to(),
            v.count_at_value()
        ));
    }
    report.push_str("end\n");
    output.write_all(report.as_bytes()).await?;
    output.flush().await?;
    Ok(())
}

/// Where to put the probes on this machine: with two or more CPUs allowed,
/// the probes get the last one and the load tool the others; `None` and the
/// reason in `placement` when pinning is not possible.
pub fn placement(exe: &Path, count: usize) -> Probing {
    let cpus = crate::sys::allowed_cpus().unwrap_or_default();
    match cpus.split_last() {
        Some((&probe_cpu, rest)) if !rest.is_empty() => Probing {
            exe: exe.to_owned(),
            count,
            cpu: Some(probe_cpu),
            load_cpus: rest.to_vec(),
            all_cpus: cpus.clone(),
            placement: format!(
                "probes pinned to CPU {probe_cpu}, load tool to CPU {}; the relay on any",
                rest.iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        },
        _ => Probing {
            exe: exe.to_owned(),
            count,
            cpu: None,
            load_cpus: Vec::new(),
            all_cpus: cpus.clone(),
            placement: format!(
                "probes not pinned apart: this process may use {} CPU(s)",
                cpus.len()
            ),
        },
    }
}
