//! The documentation states the defaults of the one definition
//! (`Limits::default()`, `Config::new`, shown by `Settings::defaults()`).

use rtet_protocol::Limits;

fn read(doc: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(doc);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The cells of every Markdown table row in `text`.
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// `n` with thousands separators, as the documents write numbers (10,000).
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn the_protocol_default_limits_table_matches_the_protocol_crate() {
    let l = Limits::default();
    let minutes = |d: std::time::Duration| format!("{} minutes", d.as_secs() / 60);
    let expected = [
        ("frame size", format!("{} KiB", l.max_frame_bytes / 1024)),
        ("subscriptions per connection", grouped(l.max_subscriptions)),
        (
            &*format!("client frames per second (burst {})", l.client_frames_burst),
            grouped(l.client_frames_per_sec as usize),
        ),
        (
            "publishes per second per publisher key",
            grouped(l.publishes_per_sec_per_key as usize),
        ),
        ("connections per client IP", grouped(l.connections_per_ip)),
        (
            "history per channel",
            format!(
                "{} events or {}",
                grouped(l.history_events),
                minutes(l.history_age)
            ),
        ),
        (
            "outgoing queue per subscriber",
            format!("at least {} frames", grouped(l.subscriber_queue_frames)),
        ),
    ];
    let rows = rows(&read("protocol.md"));
    for (limit, default) in expected {
        let row = rows
            .iter()
            .find(|r| r.first().map(String::as_str) == Some(limit))
            .unwrap_or_else(|| panic!("docs/protocol.md has no row for {limit:?}"));
        assert_eq!(row.get(1), Some(&default), "docs/protocol.md: {limit}");
    }
}

#[test]
fn the_security_limits_table_lists_every_setting_with_its_default() {
    let rows = rows(&read("security.md"));
    let command = rtet_relay::Settings::command_with_defaults();
    let defaults = rtet_relay::Settings::defaults();
    let flag_of = |name: &str| {
        command
            .get_arguments()
            .find(|a| a.get_id().as_str() == name)
            .and_then(|a| a.get_long())
            .unwrap_or_else(|| panic!("no flag for {name}"))
            .to_owned()
    };
    for (name, value) in &defaults {
        let flag = format!("`--{}`", flag_of(name));
        let row = rows
            .iter()
            .find(|r| r.first() == Some(&flag))
            .unwrap_or_else(|| panic!("docs/security.md has no row for {flag}"));
        assert_eq!(
            row.get(1),
            Some(&format!("`{value}`")),
            "docs/security.md: the default of {flag}"
        );
    }
    // No row for a setting that is gone or has no default value.
    let listed: Vec<String> = defaults
        .iter()
        .map(|(name, _)| format!("`--{}`", flag_of(name)))
        .collect();
    for row in rows.iter().filter(|r| r[0].starts_with("`--")) {
        assert!(
            listed.contains(&row[0]),
            "docs/security.md lists {}",
            row[0]
        );
    }
}

#[test]
fn the_security_fixed_bounds_match_the_code() {
    let rows = rows(&read("security.md"));
    let secs = |d: std::time::Duration| format!("{} s", d.as_secs());
    let expected = [
        (
            "body read to find `apiKey` (no `Authorization` header)",
            format!("{} KiB", rtet_relay::http::BODY_KEY_MAX_BYTES / 1024),
        ),
        (
            "request headers, TLS handshake",
            secs(rtet_relay::server::HANDSHAKE_TIMEOUT),
        ),
        (
            "a refused connection reading its 503",
            secs(rtet_relay::server::REFUSAL_LINGER),
        ),
        (
            "a connection's written bytes the peer has not read, beyond one frame",
            format!("{} KiB", rtet_relay::batched_writes::COLLECT_MAX / 1024),
        ),
        (
            "a subscriber's read buffer, kept between frames",
            format!("{} B", rtet_relay::subscriber::READ_BUFFER),
        ),
        (
            "delivering queued events at shutdown",
            secs(rtet_relay::subscriber::SHUTDOWN_FLUSH),
        ),
        (
            "a Redis command's answer (Redis engine)",
            secs(rtet_relay::engine::redis::RESPONSE_TIMEOUT),
        ),
        (
            "shortest dedupe window",
            format!(
                "{} minutes",
                rtet_relay::config::MIN_DEDUPE_WINDOW.as_secs() / 60
            ),
        ),
        (
            "longest `--max-token-lifetime`",
            format!(
                "{} days",
                rtet_relay::config::MAX_TOKEN_LIFETIME.as_secs() / 86_400
            ),
        ),
    ];
    for (bound, value) in expected {
        let row = rows
            .iter()
            .find(|r| r.first().map(String::as_str) == Some(bound))
            .unwrap_or_else(|| panic!("docs/security.md has no row for {bound:?}"));
        assert_eq!(row.get(1), Some(&value), "docs/security.md: {bound}");
    }
}

#[test]
fn the_memory_budget_and_replay_bound_tables_match_the_relay_defaults() {
    let c = rtet_relay::Config::new(Vec::<String>::new());
    let expected = [
        ("history bytes, all channels", c.max_history_bytes),
        ("dedupe entries, all channels", c.max_dedupe_entries),
        ("channels", c.max_channels),
        ("bytes one subscribe replays", c.max_replay_bytes),
        (
            "bytes per connection per minute",
            c.replay_bytes_per_connection,
        ),
        ("bytes per client address per minute", c.replay_bytes_per_ip),
    ];
    let rows = rows(&read("protocol.md"));
    for (budget, default) in expected {
        let row = rows
            .iter()
            .find(|r| r.first().map(String::as_str) == Some(budget))
            .unwrap_or_else(|| panic!("docs/protocol.md has no row for {budget:?}"));
        assert_eq!(
            row.get(1),
            Some(&grouped(default)),
            "docs/protocol.md: {budget}"
        );
    }
}

#[test]
fn the_presence_bounds_table_matches_the_code() {
    use rtet_protocol::token::{MAX_MEMBER_AVATAR_BYTES, MAX_MEMBER_NAME_CHARS};
    let expected = [
        (
            "members listed per channel",
            grouped(Limits::default().max_presence_members),
        ),
        ("`info.name`", format!("{MAX_MEMBER_NAME_CHARS} characters")),
        ("`info.avatar`", format!("{MAX_MEMBER_AVATAR_BYTES} bytes")),
        (
            "presence tick (coalescing)",
            format!("{} ms", rtet_relay::presence::PRESENCE_TICK.as_millis()),
        ),
    ];
    let rows = rows(&read("protocol.md"));
    for (bound, value) in expected {
        let row = rows
            .iter()
            .find(|r| r.first().map(String::as_str) == Some(bound))
            .unwrap_or_else(|| panic!("docs/protocol.md has no row for {bound:?}"));
        assert_eq!(row.get(1), Some(&value), "docs/protocol.md: {bound}");
    }
}
