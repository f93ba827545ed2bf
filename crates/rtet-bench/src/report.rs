//! The comparison table: rtet-relay beside the Node peer, with ratios and the
//! issue's targets.

use std::fmt::Write;

use crate::scenario::{Delivery, Idle};

/// Everything measured on one relay.
#[derive(Debug, Default)]
pub struct Side {
    /// Flood: deliveries per second to many subscribers.
    pub flood: Option<Delivery>,
    /// Fixed rate: latency.
    pub latency: Option<Delivery>,
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
    /// Latency-run events per second.
    pub rate: f64,
    /// Idle connections asked for.
    pub idle_connections: usize,
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

/// The markdown table for two sides.
pub fn table(rtet: &Side, node: &Side, s: &Settings) -> String {
    let lat = |side: &Side, q: f64| {
        side.latency
            .as_ref()
            .and_then(|d| d.latency.as_ref())
            .filter(|h| !h.is_empty())
            .map(|h| pct(h, q))
    };
    let flood = |side: &Side| side.flood.as_ref().map(|d| d.per_sec());
    let flood_cpu = |side: &Side| side.flood.as_ref().and_then(|d| d.per_relay_cpu_sec());
    let kib = |side: &Side| side.idle.as_ref().map(|i| i.bytes_per_conn() / 1024.0);
    let sustained = |side: &Side| side.latency.as_ref().map(|d| d.per_sec());
    let conns = |side: &Side| side.idle.as_ref().map(|i| i.open_per_sec);
    let idle_n = rtet
        .idle
        .as_ref()
        .map(|i| i.connections)
        .unwrap_or(s.idle_connections);
    let rows = vec![
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
                "latency p50, {} events/s to {} subscribers",
                group(s.rate as u64),
                group(s.rate_subscribers as u64)
            ),
            rtet: lat(rtet, 0.5),
            node: lat(node, 0.5),
            unit: "ms",
            higher_is_better: false,
            target: String::new(),
            met: None,
            note: String::new(),
        },
        Row {
            name: "latency p99, same run".into(),
            rtet: lat(rtet, 0.99),
            node: lat(node, 0.99),
            unit: "ms",
            higher_is_better: false,
            target: "< 5 ms".into(),
            met: lat(rtet, 0.99).map(|v| v < 5.0),
            note: String::new(),
        },
        Row {
            name: "latency p99.9, same run".into(),
            rtet: lat(rtet, 0.999),
            node: lat(node, 0.999),
            unit: "ms",
            higher_is_better: false,
            target: String::new(),
            met: None,
            note: String::new(),
        },
        Row {
            name: "sustained deliveries/s in the latency run".into(),
            rtet: sustained(rtet),
            node: sustained(node),
            unit: "",
            higher_is_better: true,
            target: format!(
                "{} offered",
                group((s.rate * s.rate_subscribers as f64) as u64)
            ),
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
            note: if idle_n < 50_000 {
                format!(" (at {}: fd limit)", group(idle_n as u64))
            } else {
                String::new()
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
    out.push_str(&check("latency run: delivered / expected", &|side| {
        side.latency.as_ref().map(completeness)
    }));
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
