//! The comparison table: rtet-relay beside the Node peer, with ratios and the
//! issue's targets.

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

/// The settings the table's row names quote.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Flood subscribers.
    pub flood_subscribers: usize,
    /// Latency-run subscribers.
    pub rate_subscribers: usize,
    /// Latency runs' events per second; the target applies at 1,000.
    pub rates: Vec<f64>,
    /// Idle connections measured (asked for, capped by the fd limit).
    pub idle_connections: usize,
    /// Whether the fd limit capped them.
    pub idle_capped: bool,
    /// Handshakes in flight while opening.
    pub in_flight: usize,
}

struct Row {
    name: String,
    rtet: Option<f64>,
    node: Option<f64>,
    unit: &'static str,
    higher_is_better: bool,
    target: String,
    met: Option<bool>,
    /// A note beside the verdict (e.g. measured at a smaller scale than the target's).
    note: String,
}

fn num(v: f64, unit: &str) -> String {
    match unit {
        "ms" => format!("{v:.2} ms"),
        "KiB" => format!("{v:.1} KiB"),
        _ => group(v.round() as u64),
    }
}

/// 1234567 as "1,234,567".
pub fn group(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(row: &Row) -> String {
    match (row.rtet, row.node) {
        (Some(r), Some(n)) if r > 0.0 && n > 0.0 => {
            let (x, better) = if row.higher_is_better {
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

fn completeness(d: &Delivery) -> String {
    let mut s = format!("{} / {}", group(d.delivered), group(d.expected));
    if d.closed > 0 {
        let _ = write!(s, ", {} closed", group(d.closed as u64));
    }
    if d.open_failed > 0 {
        let _ = write!(s, ", {} failed to open", group(d.open_failed as u64));
    }
    if d.published.nacked > 0 {
        let _ = write!(s, ", {} nacked", group(d.published.nacked));
    }
    s
}

/// The latency run number `i` of a side, if it ran.
fn run(side: &Side, i: usize) -> Option<&Delivery> {
    side.latency.get(i).and_then(|d| d.as_ref())
}

/// The markdown table for two sides.
pub fn table(rtet: &Side, node: &Side, s: &Settings) -> String {
    let lat = |side: &Side, i: usize, q: f64| {
        run(side, i)
            .and_then(|d| d.latency.as_ref())
            .filter(|h| !h.is_empty())
            .map(|h| pct(h, q))
    };
    let flood = |side: &Side| side.flood.as_ref().map(|d| d.per_sec());
    let flood_cpu = |side: &Side| side.flood.as_ref().and_then(|d| d.per_relay_cpu_sec());
    let kib = |side: &Side| side.idle.as_ref().map(|i| i.bytes_per_conn() / 1024.0);
    let conns = |side: &Side| side.idle.as_ref().map(|i| i.open_per_sec);
    let idle_n = rtet
        .idle
        .as_ref()
        .map(|i| i.connections)
        .unwrap_or(s.idle_connections);
    let mut rows = vec![
        Row {
            name: format!(
                "deliveries/s, flood to {} subscribers",
                group(s.flood_subscribers as u64)
            ),
            rtet: flood(rtet),
            node: flood(node),
            unit: "",
            higher_is_better: true,
            target: "≥ 3× node".into(),
            met: flood(rtet).zip(flood(node)).map(|(r, n)| r >= 3.0 * n),
            note: String::new(),
        },
        Row {
            name: "deliveries per relay CPU-second, same flood".into(),
            rtet: flood_cpu(rtet),
            node: flood_cpu(node),
            unit: "",
            higher_is_better: true,
            target: String::new(),
            met: None,
            note: String::new(),
        },
        Row {
            name: format!(
                "relay RSS per idle connection, {} connections",
                group(idle_n as u64)
            ),
            rtet: kib(rtet),
            node: kib(node),
            unit: "KiB",
            higher_is_better: false,
            target: "< 16 KiB at 50,000".into(),
            met: kib(rtet).map(|v| v < 16.0),
            note: match (idle_n < 50_000, s.idle_capped) {
                (true, true) => format!(" (at {}: the fd limit)", group(idle_n as u64)),
                (true, false) => format!(" (at {})", group(idle_n as u64)),
                _ => String::new(),
            },
        },
        Row {
            name: format!("connections opened/s ({} in flight)", s.in_flight),
            rtet: conns(rtet),
            node: conns(node),
            unit: "",
            higher_is_better: true,
            target: String::new(),
            met: None,
            note: String::new(),
        },
    ];
    let mut latency_rows = Vec::new();
    for (i, &rate) in s.rates.iter().enumerate() {
        let at = format!(
            "{} events/s to {} subscribers",
            group(rate as u64),
            group(s.rate_subscribers as u64)
        );
        let targeted = rate == 1_000.0 && s.rate_subscribers == 1_000;
        for (q, name) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")] {
            let with_target = targeted && name == "p99";
            latency_rows.push(Row {
                name: format!("latency {name}, {at}"),
                rtet: lat(rtet, i, q),
                node: lat(node, i, q),
                unit: "ms",
                higher_is_better: false,
                target: if with_target {
                    "< 5 ms".into()
                } else {
                    String::new()
                },
                met: lat(rtet, i, q).filter(|_| with_target).map(|v| v < 5.0),
                note: String::new(),
            });
        }
        latency_rows.push(Row {
            name: format!("deliveries/s sustained, {at}"),
            rtet: run(rtet, i).map(|d| d.per_sec()),
            node: run(node, i).map(|d| d.per_sec()),
            unit: "",
            higher_is_better: true,
            target: format!(
                "{} offered",
                group((rate * s.rate_subscribers as f64) as u64)
            ),
            met: None,
            note: String::new(),
        });
    }
    rows.splice(2..2, latency_rows);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| measurement | rtet-relay | node ws | rtet vs node | target | met |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|---|---|");
    for row in &rows {
        let cell = |v: Option<f64>| v.map(|v| num(v, row.unit)).unwrap_or_else(|| "–".into());
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {}{} |",
            row.name,
            cell(row.rtet),
            cell(row.node),
            ratio(row),
            row.target,
            met,
            if met.is_empty() {
                ""
            } else {
                row.note.as_str()
            }
        );
    }
    let check = |name: &str, f: &dyn Fn(&Side) -> Option<String>| {
        format!(
            "| {name} | {} | {} | | | |\n",
            f(rtet).unwrap_or_else(|| "–".into()),
            f(node).unwrap_or_else(|| "–".into())
        )
    };
    out.push_str(&check("flood: delivered / expected", &|side| {
        side.flood.as_ref().map(completeness)
    }));
    for (i, &rate) in s.rates.iter().enumerate() {
        let name = format!("{} events/s: delivered / expected", group(rate as u64));
        out.push_str(&check(&name, &|side| run(side, i).map(completeness)));
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
    out
}
