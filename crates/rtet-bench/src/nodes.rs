//! `rtet-bench nodes`: rtet-relay on its memory engine, on Redis, and as two
//! nodes on one Redis, measured in rounds; what one round measured on one
//! setup, and the table that shows every round's figure side by side, so the
//! noise of a shared machine is in plain sight beside the differences.

use std::fmt::Write;
use std::time::Duration;

use anyhow::{bail, Result};
use hdrhistogram::Histogram;

use crate::publisher::Published;
use crate::report::{group, Tally};
use crate::scenario::Delivery;

/// How the relay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Setup {
    /// One node, its in-memory engine.
    Memory,
    /// One node on Redis.
    Redis,
    /// Two nodes on one Redis: the publisher on node A, the load subscribers
    /// split over A and B, the probes on B.
    Redis2,
}

impl Setup {
    /// The name used in tables.
    pub fn label(self) -> &'static str {
        match self {
            Setup::Memory => "memory engine, 1 node",
            Setup::Redis => "Redis engine, 1 node",
            Setup::Redis2 => "Redis engine, 2 nodes",
        }
    }

    /// Relay nodes it runs.
    pub fn nodes(self) -> usize {
        match self {
            Setup::Redis2 => 2,
            Setup::Memory | Setup::Redis => 1,
        }
    }
}

/// The worker threads each of `nodes` relay nodes sharing a machine of
/// `cpus` CPUs runs with: its share of them, as an operator gives nodes that
/// share a machine (more busy runtime threads than cores make the fan-out
/// write in smaller batches: BENCHMARKS.md, "Several nodes").
pub fn threads_per_node(cpus: usize, nodes: usize) -> usize {
    (cpus / nodes.max(1)).max(1)
}

/// One latency measurement's load: events per second to that many subscribers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyLoad {
    /// Events per second.
    pub rate: f64,
    /// Load subscribers.
    pub subscribers: usize,
}

impl LatencyLoad {
    /// "1,000 events/s to 1,000 subscribers".
    pub fn label(&self) -> String {
        format!(
            "{} events/s to {} subscribers",
            group(self.rate as u64),
            group(self.subscribers as u64)
        )
    }
}

/// Pairs `--rate` with `--rate-subscribers`: one subscriber count serves
/// every rate, or there is one count per rate, in the same order.
pub fn latency_loads(rates: &[f64], subscribers: &[usize]) -> Result<Vec<LatencyLoad>> {
    if rates.is_empty() || subscribers.is_empty() {
        bail!("--rate and --rate-subscribers need a value each");
    }
    if let Some(r) = rates.iter().find(|r| !(r.is_finite() && **r >= 1.0)) {
        bail!("--rate {r}: a latency run needs at least 1 event/s");
    }
    if subscribers.contains(&0) {
        bail!("--rate-subscribers 0: a latency run needs a subscriber");
    }
    let each = match subscribers {
        [one] => vec![*one; rates.len()],
        many if many.len() == rates.len() => many.to_vec(),
        many => bail!(
            "--rate-subscribers has {} values for {} rates: give one for all, or one per rate",
            many.len(),
            rates.len()
        ),
    };
    Ok(rates
        .iter()
        .zip(each)
        .map(|(&rate, subscribers)| LatencyLoad { rate, subscribers })
        .collect())
}

/// The acks run: one pipelined publisher, no subscriber.
#[derive(Debug)]
pub struct Acks {
    /// What the publisher did.
    pub published: Published,
    /// From the first publish to the last answer.
    pub took: Duration,
    /// Redis's CPU seconds over the run (Redis setups).
    pub redis_cpu_secs: Option<f64>,
}

impl Acks {
    /// Publishes acked per second.
    pub fn per_sec(&self) -> f64 {
        self.published.acked as f64 / self.took.as_secs_f64().max(1e-9)
    }

    /// Redis's CPU milliseconds per 1,000 acked publishes.
    pub fn redis_ms_per_1000(&self) -> Option<f64> {
        self.redis_cpu_secs
            .map(|c| c * 1e6 / self.published.acked.max(1) as f64)
    }

    /// Every publish sent was acked.
    pub fn complete(&self) -> bool {
        let p = &self.published;
        p.sent > 0 && p.acked == p.sent && p.nacked == 0
    }
}

/// What one round measured on one setup (`None`: that measurement failed).
#[derive(Debug, Default)]
pub struct Round {
    /// The acks run.
    pub acks: Option<Acks>,
    /// The flood.
    pub flood: Option<Delivery>,
    /// The latency runs, one per [`Settings::loads`] entry, in order.
    pub latency: Vec<Option<Delivery>>,
}

impl Round {
    /// A round whose measurements are still to run, for `loads` latency loads.
    pub fn new(loads: usize) -> Round {
        Round {
            latency: (0..loads).map(|_| None).collect(),
            ..Round::default()
        }
    }

    /// Every measurement ran, every publish was acked, and every event reached
    /// every subscriber (probes included) once, in order.
    pub fn complete(&self) -> bool {
        self.acks.as_ref().is_some_and(Acks::complete)
            && self.flood.as_ref().is_some_and(Delivery::complete)
            && self
                .latency
                .iter()
                .all(|d| d.as_ref().is_some_and(Delivery::complete))
    }
}

/// One setup's rounds, in the order they ran.
#[derive(Debug)]
pub struct Measured {
    /// The setup.
    pub setup: Setup,
    /// Its rounds.
    pub rounds: Vec<Round>,
}

/// The settings the table's row names quote.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The acks run's publish window.
    pub window: usize,
    /// Flood subscribers.
    pub flood_subscribers: usize,
    /// The latency loads, in order.
    pub loads: Vec<LatencyLoad>,
    /// Probe subscribers in each latency run (0: none).
    pub probes: usize,
    /// Where the probes ran, as said under the table.
    pub probe_placement: Option<String>,
    /// `--worker-threads` of each node of the two-node setup; none: the
    /// bench's `--relay-arg`s set it.
    pub threads_per_node: Option<usize>,
}

/// One figure of a round, if it was measured.
type Figure<'a> = &'a dyn Fn(&Round) -> Option<f64>;

/// A percentile of a latency histogram, ms.
fn pct(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
}

/// Latency run `i` of a round, if it ran.
fn latency_run(r: &Round, i: usize) -> Option<&Delivery> {
    r.latency.get(i)?.as_ref()
}

/// The probes' latency percentile `q` in latency run `i`, ms.
fn probe_ms(r: &Round, i: usize, q: f64) -> Option<f64> {
    pct(&latency_run(r, i)?.probes.as_ref()?.latency, q)
}

/// The load subscribers' latency percentile `q` in latency run `i`, ms.
fn load_ms(r: &Round, i: usize, q: f64) -> Option<f64> {
    pct(latency_run(r, i)?.latency.as_ref()?, q)
}

/// Every round's figure, in round order (see [`values_cell`]).
fn rounds_cell(rounds: &[Round], f: Figure, show: &dyn Fn(f64) -> String, unit: &str) -> String {
    let values: Vec<Option<f64>> = rounds.iter().map(f).collect();
    values_cell(&values, show, unit)
}

/// Values joined by " · ", with the unit once at the end; a missing value
/// shows "–", a cell without any "-".
fn values_cell(values: &[Option<f64>], show: &dyn Fn(f64) -> String, unit: &str) -> String {
    if values.iter().all(Option::is_none) {
        return "-".into();
    }
    let shown: Vec<String> = values
        .iter()
        .map(|v| v.map_or_else(|| "–".into(), show))
        .collect();
    format!("{}{unit}", shown.join(" · "))
}

/// The markdown table: one column per setup, each cell every round's figure.
/// Below each probe percentile, what Redis adds to it: the Redis setup's
/// figure minus the memory engine's in the same round (the setups of a round
/// run interleaved, so they meet the machine's load at about the same time).
pub fn table(measured: &[Measured], s: &Settings) -> String {
    // What Redis adds is shown where both the memory engine and a Redis setup ran.
    let memory = measured
        .iter()
        .find(|m| m.setup == Setup::Memory)
        .filter(|_| measured.iter().any(|m| m.setup != Setup::Memory));
    let count = |v: f64| group(v.round() as u64);
    let ms = |v: f64| format!("{v:.2}");
    let signed_ms = |v: f64| format!("{v:+.2}");
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let figure_row = |name: String, f: Figure, show: &dyn Fn(f64) -> String, unit: &str| {
        let cells = measured
            .iter()
            .map(|m| rounds_cell(&m.rounds, f, show, unit))
            .collect();
        (name, cells)
    };
    rows.push(figure_row(
        format!(
            "publish acks/s, one pipelined publisher (window {})",
            s.window
        ),
        &|r| r.acks.as_ref().map(Acks::per_sec),
        &count,
        "",
    ));
    // Only the acks run: during the others Redis also serves the subscribes.
    rows.push(figure_row(
        "Redis CPU per 1,000 publishes (acks run)".into(),
        &|r| r.acks.as_ref()?.redis_ms_per_1000(),
        &|v| format!("{v:.1}"),
        " ms",
    ));
    rows.push(figure_row(
        format!(
            "deliveries/s, flood to {} subscribers",
            group(s.flood_subscribers as u64)
        ),
        &|r| r.flood.as_ref().map(Delivery::per_sec),
        &count,
        "",
    ));
    rows.push(figure_row(
        "deliveries per relay CPU-second (all nodes), same flood".into(),
        &|r| r.flood.as_ref()?.per_relay_cpu_sec(),
        &count,
        "",
    ));
    for (i, load) in s.loads.iter().enumerate() {
        let at = load.label();
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
            if s.probes > 0 {
                rows.push(figure_row(
                    format!("publish→deliver latency {name}, {} probes, {at}", s.probes),
                    &|r| probe_ms(r, i, q),
                    &ms,
                    " ms",
                ));
                if let Some(memory) = memory {
                    let cells = measured
                        .iter()
                        .map(|m| {
                            if m.setup == Setup::Memory {
                                return "-".into();
                            }
                            let per_round = |k: usize| {
                                let redis = probe_ms(m.rounds.get(k)?, i, q)?;
                                let base = probe_ms(memory.rounds.get(k)?, i, q)?;
                                Some(redis - base)
                            };
                            let values: Vec<Option<f64>> =
                                (0..m.rounds.len()).map(per_round).collect();
                            values_cell(&values, &signed_ms, " ms")
                        })
                        .collect();
                    rows.push((
                        format!(
                            "added by Redis to the probes' {name} (minus the memory engine's, same round)"
                        ),
                        cells,
                    ));
                }
            }
            rows.push(figure_row(
                format!("publish→deliver latency {name}, load tool's subscribers, {at}"),
                &|r| load_ms(r, i, q),
                &ms,
                " ms",
            ));
        }
    }

    let sum_cell = |f: &dyn Fn(&Round) -> Option<Tally>| -> Vec<String> {
        measured
            .iter()
            .map(|m| {
                let tallies: Vec<Tally> = m.rounds.iter().filter_map(f).collect();
                if tallies.is_empty() {
                    return "-".into();
                }
                let missing_runs = m.rounds.len() - tallies.len();
                let sum = tallies.into_iter().fold(Tally::default(), Tally::plus);
                if missing_runs > 0 {
                    format!("{sum}, {missing_runs} run(s) failed")
                } else {
                    sum.to_string()
                }
            })
            .collect()
    };
    rows.push((
        "acks run: acked / sent".into(),
        sum_cell(&|r| {
            r.acks.as_ref().map(|a| Tally {
                delivered: a.published.acked,
                expected: a.published.sent,
                nacked: a.published.nacked,
                ..Tally::default()
            })
        }),
    ));
    rows.push((
        "flood: delivered / expected".into(),
        sum_cell(&|r| r.flood.as_ref().map(Tally::of_load)),
    ));
    for (i, load) in s.loads.iter().enumerate() {
        rows.push((
            format!("{}: delivered / expected", load.label()),
            sum_cell(&|r| latency_run(r, i).map(Tally::of_load)),
        ));
        if s.probes > 0 {
            rows.push((
                format!("{}, probes: delivered / expected", load.label()),
                sum_cell(&|r| latency_run(r, i).and_then(Tally::of_probes)),
            ));
        }
    }

    let header = measured
        .iter()
        .map(|m| m.setup.label())
        .collect::<Vec<_>>()
        .join(" | ");
    let mut out = format!(
        "| measurement | {header} |\n|---|{}\n",
        "--:|".repeat(measured.len())
    );
    for (name, cells) in rows {
        let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
    }
    let rounds = measured.iter().map(|m| m.rounds.len()).max().unwrap_or(0);
    if rounds > 1 {
        let _ = writeln!(
            out,
            "\nEach figure: rounds 1 to {rounds} in the order they ran, the setups interleaved within each; the delivered / expected rows are the sums over the rounds."
        );
    }
    if s.probes > 0 {
        let _ = writeln!(
            out,
            "\nProbes: {} subscribers in a separate process, on the one node, or on node B (the node the publisher is not on) with two nodes; {}.",
            s.probes,
            s.probe_placement.as_deref().unwrap_or("not pinned")
        );
    }
    if measured.iter().any(|m| m.setup.nodes() > 1) {
        let threads = s.threads_per_node.map_or_else(
            || "as the --relay-arg given says".to_owned(),
            |n| format!("{n}, its share of the machine's CPUs"),
        );
        let _ = writeln!(out, "\nTwo nodes: each runs --worker-threads {threads}.");
    }
    out
}

/// Every round of every setup is complete (see [`Round::complete`]).
pub fn complete(measured: &[Measured]) -> bool {
    measured
        .iter()
        .all(|m| !m.rounds.is_empty() && m.rounds.iter().all(Round::complete))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ProbeOutcome;
    use crate::subscriber::latency_histogram;

    fn histogram(us: u64) -> Histogram<u64> {
        let mut h = latency_histogram();
        h.record_n(us, 100).expect("in bounds");
        h
    }

    /// A latency run of `sent` events to `subscribers` load subscribers and
    /// two probes, every event delivered, each latency the given one.
    fn run(sent: u64, subscribers: usize, load_us: u64, probe_us: u64) -> Delivery {
        Delivery {
            subscribers,
            open_failed: 0,
            open_error: None,
            open_per_sec: 1000.0,
            published: Published {
                sent,
                acked: sent,
                ..Published::default()
            },
            delivered: sent * subscribers as u64,
            expected: sent * subscribers as u64,
            gaps: 0,
            repeats: 0,
            closed: 0,
            elapsed: Duration::from_secs(1),
            latency: Some(histogram(load_us)),
            probes: Some(ProbeOutcome {
                count: 2,
                received: sent * 2,
                expected: sent * 2,
                gaps: 0,
                repeats: 0,
                closed: 0,
                latency: histogram(probe_us),
                placement: String::new(),
            }),
            relay_cpu_secs: Some(0.5),
            bench_cpu_secs: None,
        }
    }

    fn acks(sent: u64, acked: u64, redis_cpu_secs: Option<f64>) -> Acks {
        Acks {
            published: Published {
                sent,
                acked,
                ..Published::default()
            },
            took: Duration::from_secs(2),
            redis_cpu_secs,
        }
    }

    /// A round with every measurement: acks, a flood of 10 events to 10
    /// subscribers, and one latency run with these latencies.
    fn round(load_us: u64, probe_us: u64, redis_cpu_secs: Option<f64>) -> Round {
        Round {
            acks: Some(acks(1000, 1000, redis_cpu_secs)),
            flood: Some(run(10, 10, 5_000, 5_000)),
            latency: vec![Some(run(100, 10, load_us, probe_us))],
        }
    }

    fn settings() -> Settings {
        Settings {
            window: 16,
            flood_subscribers: 10,
            loads: vec![LatencyLoad {
                rate: 100.0,
                subscribers: 10,
            }],
            probes: 2,
            probe_placement: Some("probes pinned to CPU 1".into()),
            threads_per_node: Some(1),
        }
    }

    /// The cells of the row whose name starts with `name`, after the name.
    fn cells(table: &str, name: &str) -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("| {name}")))
            .unwrap_or_else(|| panic!("no row {name:?} in\n{table}"));
        line.split('|')
            .map(str::trim)
            .skip(2)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    }

    #[test]
    fn one_subscriber_count_serves_every_rate_or_each_rate_has_its_own() {
        let loads = latency_loads(&[100.0, 1000.0], &[1000]).expect("valid");
        assert_eq!(
            loads,
            vec![
                LatencyLoad {
                    rate: 100.0,
                    subscribers: 1000
                },
                LatencyLoad {
                    rate: 1000.0,
                    subscribers: 1000
                }
            ]
        );
        let loads = latency_loads(&[100.0, 1000.0], &[100, 1000]).expect("valid");
        assert_eq!(loads[0].subscribers, 100);
        assert_eq!(loads[1].subscribers, 1000);
        assert_eq!(loads[0].label(), "100 events/s to 100 subscribers");
        assert_eq!(loads[1].label(), "1,000 events/s to 1,000 subscribers");
    }

    #[test]
    fn nodes_sharing_a_machine_split_its_cpus_and_each_has_at_least_one() {
        assert_eq!(threads_per_node(2, 2), 1);
        assert_eq!(threads_per_node(8, 2), 4);
        assert_eq!(threads_per_node(3, 2), 1);
        assert_eq!(threads_per_node(1, 2), 1);
        assert_eq!(threads_per_node(4, 1), 4);
    }

    #[test]
    fn latency_loads_that_cannot_run_are_refused_with_the_flag_named() {
        let err = |rates: &[f64], subs: &[usize]| {
            latency_loads(rates, subs).expect_err("refused").to_string()
        };
        assert!(err(&[100.0, 1000.0, 10.0], &[100, 1000]).contains("2 values for 3 rates"));
        assert!(err(&[0.0], &[100]).contains("--rate 0"));
        assert!(err(&[f64::NAN], &[100]).contains("--rate"));
        assert!(err(&[100.0], &[0]).contains("--rate-subscribers 0"));
        assert!(err(&[], &[100]).contains("need a value"));
    }

    #[test]
    fn every_round_shows_and_redis_added_latency_is_taken_within_each_round() {
        let measured = vec![
            Measured {
                setup: Setup::Memory,
                rounds: vec![round(20_000, 1_000, None), round(20_000, 3_000, None)],
            },
            Measured {
                setup: Setup::Redis,
                rounds: vec![
                    round(30_000, 1_500, Some(0.014)),
                    round(30_000, 2_900, Some(0.016)),
                ],
            },
        ];
        let t = table(&measured, &settings());
        assert!(
            t.starts_with("| measurement | memory engine, 1 node | Redis engine, 1 node |"),
            "{t}"
        );
        let at = "100 events/s to 10 subscribers";
        // Read back as the bench's histograms keep them: 3,000 µs as 3.01 ms.
        assert_eq!(
            cells(&t, &format!("publish→deliver latency p99, 2 probes, {at}")),
            ["1.00 · 3.01 ms", "1.50 · 2.91 ms"]
        );
        // Round 2's Redis probe p99 is below round 2's memory one, though
        // above round 1's: the difference is taken within a round.
        assert_eq!(
            cells(&t, "added by Redis to the probes' p99"),
            ["-", "+0.50 · -0.10 ms"]
        );
        assert_eq!(
            cells(
                &t,
                &format!("publish→deliver latency p99, load tool's subscribers, {at}")
            ),
            ["20.09 · 20.09 ms", "30.08 · 30.08 ms"]
        );
        assert_eq!(cells(&t, "publish acks/s"), ["500 · 500", "500 · 500"]);
        assert_eq!(
            cells(&t, "Redis CPU per 1,000 publishes"),
            ["-", "14.0 · 16.0 ms"]
        );
        assert!(t.contains("rounds 1 to 2"), "{t}");
        assert!(t.contains("on node B"), "{t}");
        assert!(complete(&measured));
    }

    #[test]
    fn a_missing_round_shows_as_a_dash_and_the_run_is_not_complete() {
        let mut failed = round(30_000, 1_500, Some(0.014));
        failed.latency[0] = None;
        let measured = vec![
            Measured {
                setup: Setup::Memory,
                rounds: vec![round(20_000, 1_000, None), round(20_000, 1_000, None)],
            },
            Measured {
                setup: Setup::Redis2,
                rounds: vec![round(30_000, 1_500, Some(0.014)), failed],
            },
        ];
        let t = table(&measured, &settings());
        assert_eq!(
            cells(&t, "added by Redis to the probes' p50"),
            ["-", "+0.50 · – ms"]
        );
        assert_eq!(
            cells(&t, "100 events/s to 10 subscribers: delivered / expected"),
            ["2,000 / 2,000", "1,000 / 1,000, 1 run(s) failed"]
        );
        assert!(!complete(&measured));
    }

    #[test]
    fn delivered_rows_sum_the_rounds_and_name_what_went_wrong() {
        let mut lossy = round(20_000, 1_000, None);
        if let Some(d) = lossy.latency[0].as_mut() {
            d.delivered -= 3;
            d.gaps = 3;
            if let Some(p) = d.probes.as_mut() {
                p.repeats = 1;
            }
        }
        let mut nacked = round(20_000, 1_000, None);
        nacked.acks = Some(acks(1000, 998, None));
        if let Some(a) = nacked.acks.as_mut() {
            a.published.nacked = 2;
        }
        let clean = vec![Measured {
            setup: Setup::Memory,
            rounds: vec![round(20_000, 1_000, None), round(20_000, 1_000, None)],
        }];
        assert!(complete(&clean));
        let measured = vec![Measured {
            setup: Setup::Memory,
            rounds: vec![round(20_000, 1_000, None), lossy, nacked],
        }];
        let t = table(&measured, &settings());
        assert_eq!(
            cells(&t, "100 events/s to 10 subscribers: delivered / expected"),
            ["2,997 / 3,000, 3 missing"]
        );
        assert_eq!(
            cells(
                &t,
                "100 events/s to 10 subscribers, probes: delivered / expected"
            ),
            ["600 / 600, 1 repeated"]
        );
        assert_eq!(
            cells(&t, "acks run: acked / sent"),
            ["2,998 / 3,000, 2 nacked"]
        );
        assert_eq!(cells(&t, "flood: delivered / expected"), ["300 / 300"]);
        assert!(!complete(&measured));
        // Only the memory engine measured: no row of what Redis adds.
        assert!(!t.contains("added by Redis"), "{t}");
    }
}
