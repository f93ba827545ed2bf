//! The comparison table: rtet-relay beside the Node peer and nginx with
//! nchan, with ratios and issue 11's targets.

use std::fmt::Write;

use crate::scenario::{Delivery, Idle};

/// Everything measured on one relay.
#[derive(Debug, Default)]
pub struct Side {
    /// Flood: deliveries per second to many subscribers.
    pub flood: Option<Delivery>,
    /// Fixed rates: latency, one run per rate in [`Settings::rates`] order.
    pub latency: Vec<Option<Delivery>>,
    /// Idle connections: memory and connection rate.
    pub idle: Option<Idle>,
}

/// The three relays of one run (a side left out is empty).
#[derive(Debug, Default)]
pub struct Sides {
    /// rtet-relay.
    pub rtet: Side,
    /// The Node `ws` peer.
    pub node: Side,
    /// nginx with nchan.
    pub nchan: Side,
}

/// The settings the table's row names quote.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Flood subscribers.
    pub flood_subscribers: usize,
    /// Latency-run subscribers.
    pub rate_subscribers: usize,
    /// Latency runs' events per second.
    pub rates: Vec<f64>,
    /// Idle connections measured (asked for, capped by the fd limit).
    pub idle_connections: usize,
    /// Whether the fd limit capped them.
    pub idle_capped: bool,
    /// Handshakes in flight while opening.
    pub in_flight: usize,
    /// Probe subscribers in the latency runs (0: none).
    pub probes: usize,
    /// Where the probes ran, as said under the table.
    pub probe_placement: Option<String>,
    /// nginx worker processes.
    pub nchan_workers: usize,
}

/// How a row's figure is judged against a target.
#[derive(Clone, Copy)]
enum Goal {
    /// No target.
    None,
    /// At most this much.
    AtMost(f64),
    /// At least this many times the Node peer's.
    TimesNode(f64),
}

struct Row {
    name: String,
    /// rtet-relay, node ws, nginx nchan.
    values: [Option<f64>; 3],
    unit: &'static str,
    higher_is_better: bool,
    /// A target of its own, besides being ahead of nchan where `vs_nchan`.
    goal: Goal,
    /// The target includes "ahead of nchan" on this row.
    vs_nchan: bool,
    /// A note beside the verdict (e.g. measured at a smaller scale than the target's).
    note: String,
}

impl Row {
    fn plain(name: String, values: [Option<f64>; 3], unit: &'static str, higher: bool) -> Row {
        Row {
            name,
            values,
            unit,
            higher_is_better: higher,
            goal: Goal::None,
            vs_nchan: false,
            note: String::new(),
        }
    }

    fn target(&self) -> String {
        let mut parts = Vec::new();
        match self.goal {
            Goal::None => {}
            Goal::AtMost(v) => parts.push(format!("≤ {}", num(v, self.unit))),
            Goal::TimesNode(x) => parts.push(format!("≥ {x}× node")),
        }
        if self.vs_nchan {
            parts.push(if self.higher_is_better {
                "> nchan".to_owned()
            } else {
                "< nchan".to_owned()
            });
        }
        parts.join(", ")
    }

    /// Whether rtet-relay met every target of the row that could be judged.
    fn met(&self) -> Option<bool> {
        let [rtet, node, nchan] = self.values;
        let rtet = rtet?;
        let mut verdicts = Vec::new();
        match self.goal {
            Goal::None => {}
            Goal::AtMost(v) => verdicts.push(rtet <= v),
            Goal::TimesNode(x) => {
                if let Some(n) = node {
                    verdicts.push(rtet >= x * n);
                }
            }
        }
        if self.vs_nchan {
            if let Some(c) = nchan {
                verdicts.push(if self.higher_is_better {
                    rtet > c
                } else {
                    rtet < c
                });
            }
        }
        if verdicts.is_empty() {
            None
        } else {
            Some(verdicts.iter().all(|v| *v))
        }
    }
}

fn num(v: f64, unit: &str) -> String {
    match unit {
        "ms" => format!("{v:.2} ms"),
        "µs" => format!("{v:.1} µs"),
        "KiB" => format!("{v:.1} KiB"),
        _ => group(v.round() as u64),
    }
}

/// 1234567 as "1,234,567".
pub fn group(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// rtet-relay's figure against another's: "2.00× better".
fn ratio(rtet: Option<f64>, other: Option<f64>, higher_is_better: bool) -> String {
    match (rtet, other) {
        (Some(r), Some(n)) if r > 0.0 && n > 0.0 => {
            let (x, better) = if higher_is_better {
                (r / n, r >= n)
            } else {
                (n / r, r <= n)
            };
            let x = if better { x } else { 1.0 / x };
            format!("{x:.2}× {}", if better { "better" } else { "worse" })
        }
        _ => "–".into(),
    }
}

fn pct(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// The counts behind a "delivered / expected" cell, summable over runs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Events received, over all subscribers.
    pub delivered: u64,
    /// What every subscriber should have got.
    pub expected: u64,
    /// Lost events.
    pub missing: u64,
    /// Duplicated or reordered events.
    pub repeated: u64,
    /// Subscribers closed before the end.
    pub closed: u64,
    /// Subscribers that failed to open.
    pub failed_to_open: u64,
    /// Publishes refused.
    pub nacked: u64,
}

impl Tally {
    /// The load subscribers of a run (and its publisher's nacks).
    pub fn of_load(d: &Delivery) -> Tally {
        Tally {
            delivered: d.delivered,
            expected: d.expected,
            missing: d.gaps,
            repeated: d.repeats,
            closed: d.closed as u64,
            failed_to_open: d.open_failed as u64,
            nacked: d.published.nacked,
        }
    }

    /// The probe subscribers of a run, if it had any.
    pub fn of_probes(d: &Delivery) -> Option<Tally> {
        let p = d.probes.as_ref()?;
        Some(Tally {
            delivered: p.received,
            expected: p.expected,
            missing: p.gaps,
            repeated: p.repeats,
            closed: p.closed,
            ..Tally::default()
        })
    }

    /// Both runs' counts together.
    pub fn plus(self, o: Tally) -> Tally {
        Tally {
            delivered: self.delivered + o.delivered,
            expected: self.expected + o.expected,
            missing: self.missing + o.missing,
            repeated: self.repeated + o.repeated,
            closed: self.closed + o.closed,
            failed_to_open: self.failed_to_open + o.failed_to_open,
            nacked: self.nacked + o.nacked,
        }
    }
}

/// "DELIVERED / EXPECTED", then whatever went wrong: ", 3 missing".
impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} / {}", group(self.delivered), group(self.expected))?;
        for (n, what) in [
            (self.missing, "missing"),
            (self.repeated, "repeated"),
            (self.closed, "closed"),
            (self.failed_to_open, "failed to open"),
            (self.nacked, "nacked"),
        ] {
            if n > 0 {
                write!(f, ", {} {what}", group(n))?;
            }
        }
        Ok(())
    }
}

/// The latency run number `i` of a side, if it ran.
fn run(side: &Side, i: usize) -> Option<&Delivery> {
    side.latency.get(i).and_then(|d| d.as_ref())
}

/// The probes' p99 target at `rate` events/s to 1,000 subscribers (issue 11).
fn probe_p99_goal(rate: f64, subscribers: usize) -> Goal {
    match (rate as u64, subscribers) {
        (100, 1_000) => Goal::AtMost(2.0),
        (300, 1_000) => Goal::AtMost(5.0),
        _ => Goal::None,
    }
}

/// The markdown table for the three relays (a relay left out shows "–").
pub fn table(sides: &Sides, s: &Settings) -> String {
    let all = [&sides.rtet, &sides.node, &sides.nchan];
    let each = |f: &dyn Fn(&Side) -> Option<f64>| all.map(f);
    let load_lat = |side: &Side, i: usize, q: f64| {
        run(side, i)
            .and_then(|d| d.latency.as_ref())
            .filter(|h| !h.is_empty())
            .map(|h| pct(h, q))
    };
    let probe_lat = |side: &Side, i: usize, q: f64| {
        run(side, i)
            .and_then(|d| d.probes.as_ref())
            .filter(|p| !p.latency.is_empty())
            .map(|p| pct(&p.latency, q))
    };
    let cpu_us = |d: &Delivery| d.per_relay_cpu_sec().filter(|v| *v > 0.0).map(|v| 1e6 / v);
    let idle_n = sides
        .rtet
        .idle
        .as_ref()
        .map(|i| i.connections)
        .unwrap_or(s.idle_connections);
    let mut rows = vec![
        Row {
            goal: Goal::TimesNode(3.0),
            vs_nchan: true,
            ..Row::plain(
                format!(
                    "deliveries/s, flood to {} subscribers",
                    group(s.flood_subscribers as u64)
                ),
                each(&|side| side.flood.as_ref().map(|d| d.per_sec())),
                "",
                true,
            )
        },
        Row {
            vs_nchan: true,
            ..Row::plain(
                "relay CPU per delivery, same flood".into(),
                each(&|side| side.flood.as_ref().and_then(cpu_us)),
                "µs",
                false,
            )
        },
    ];
    for (i, &rate) in s.rates.iter().enumerate() {
        let at = format!(
            "{} events/s to {} subscribers",
            group(rate as u64),
            group(s.rate_subscribers as u64)
        );
        for (q, name) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")] {
            if s.probes > 0 {
                rows.push(Row {
                    goal: if name == "p99" {
                        probe_p99_goal(rate, s.rate_subscribers)
                    } else {
                        Goal::None
                    },
                    vs_nchan: name == "p99",
                    ..Row::plain(
                        format!("latency {name}, {} probes, {at}", s.probes),
                        each(&|side| probe_lat(side, i, q)),
                        "ms",
                        false,
                    )
                });
            }
            rows.push(Row::plain(
                format!("latency {name}, load tool's subscribers, {at}"),
                each(&|side| load_lat(side, i, q)),
                "ms",
                false,
            ));
        }
        rows.push(Row {
            vs_nchan: true,
            ..Row::plain(
                format!("relay CPU per delivery, {at}"),
                each(&|side| run(side, i).and_then(cpu_us)),
                "µs",
                false,
            )
        });
        rows.push(Row {
            note: format!(
                " ({} offered)",
                group((rate * s.rate_subscribers as f64) as u64)
            ),
            ..Row::plain(
                format!("deliveries/s sustained, {at}"),
                each(&|side| run(side, i).map(|d| d.per_sec())),
                "",
                true,
            )
        });
    }
    rows.push(Row {
        goal: Goal::AtMost(4.0),
        note: if s.idle_capped {
            format!(" (at {}: the fd limit)", group(idle_n as u64))
        } else {
            String::new()
        },
        ..Row::plain(
            format!(
                "relay RSS per idle connection, {} connections",
                group(idle_n as u64)
            ),
            each(&|side| side.idle.as_ref().map(|i| i.bytes_per_conn() / 1024.0)),
            "KiB",
            false,
        )
    });
    if let Some(b) = sides
        .rtet
        .idle
        .as_ref()
        .and_then(|i| i.after_burst.as_ref())
    {
        let what = format!(
            "{} events of {} bytes each",
            b.burst.events, b.burst.payload_bytes
        );
        let kib_per_conn = |bytes: fn(&Idle) -> Option<f64>| {
            each(&|side| side.idle.as_ref().and_then(bytes).map(|b| b / 1024.0))
        };
        rows.push(Row::plain(
            format!("relay RSS per connection just after {what}"),
            kib_per_conn(Idle::bytes_per_conn_just_after_burst),
            "KiB",
            false,
        ));
        rows.push(Row {
            goal: Goal::AtMost(4.0),
            ..Row::plain(
                format!(
                    "relay RSS per connection idle again, {} s after {what}",
                    crate::scenario::GIVE_BACK_WAIT.as_secs()
                ),
                kib_per_conn(Idle::bytes_per_conn_after_burst),
                "KiB",
                false,
            )
        });
    }
    rows.push(Row::plain(
        format!("connections opened/s ({} in flight)", s.in_flight),
        each(&|side| side.idle.as_ref().map(|i| i.open_per_sec)),
        "",
        true,
    ));

    let mut out = String::new();
    let _ = writeln!(
        out,
        "| measurement | rtet-relay | node ws | nginx nchan ({} workers) | rtet vs node | rtet vs nchan | target | met |",
        s.nchan_workers
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|---|---|");
    for row in &rows {
        let cell = |v: Option<f64>| v.map(|v| num(v, row.unit)).unwrap_or_else(|| "–".into());
        let [rtet, node, nchan] = row.values;
        let met = match row.met() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {}{} |",
            row.name,
            cell(rtet),
            cell(node),
            cell(nchan),
            ratio(rtet, node, row.higher_is_better),
            ratio(rtet, nchan, row.higher_is_better),
            row.target(),
            met,
            row.note
        );
    }
    let check = |name: &str, f: &dyn Fn(&Side) -> Option<String>| {
        let [a, b, c] = all.map(|side| f(side).unwrap_or_else(|| "–".into()));
        format!("| {name} | {a} | {b} | {c} | | | | |\n")
    };
    out.push_str(&check("flood: delivered / expected", &|side| {
        side.flood.as_ref().map(|d| Tally::of_load(d).to_string())
    }));
    for (i, &rate) in s.rates.iter().enumerate() {
        let name = format!("{} events/s: delivered / expected", group(rate as u64));
        out.push_str(&check(&name, &|side| {
            run(side, i).map(|d| Tally::of_load(d).to_string())
        }));
        if s.probes > 0 {
            let name = format!(
                "{} events/s, probes: delivered / expected",
                group(rate as u64)
            );
            out.push_str(&check(&name, &|side| {
                run(side, i)
                    .and_then(Tally::of_probes)
                    .map(|t| t.to_string())
            }));
        }
    }
    out.push_str(&check("idle: connections opened / asked", &|side| {
        side.idle.as_ref().map(|i| {
            format!(
                "{} / {}",
                group(i.connections as u64),
                group((i.connections + i.failed) as u64)
            )
        })
    }));
    if let Some(placement) = &s.probe_placement {
        let _ = writeln!(out, "\nProbes: {placement}.");
    }
    out
}
