//! Global memory budgets (history bytes, dedupe entries; channels are in
//! publisher.rs): a spent budget refuses with "retry later" (`rate_limited`,
//! HTTP 429), `/metrics` shows what is held, and what ages out is given back.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Data that makes an event of about 10 KB.
fn ten_kb() -> serde_json::Value {
    json!("x".repeat(10_000))
}

#[tokio::test]
async fn a_full_history_budget_refuses_publishes_as_retry_later_until_history_ages_out() {
    let mut cfg = config();
    cfg.max_history_bytes = 25_000;
    cfg.limits.history_age = Duration::from_secs(1);
    let relay = start(cfg).await;
    let mut p = relay.publisher().await;
    assert_eq!(publish(&mut p, "1", "a", ten_kb()).await["type"], "ack");
    assert_eq!(publish(&mut p, "2", "b", ten_kb()).await["type"], "ack");
    let nack = publish(&mut p, "3", "c", ten_kb()).await;
    assert_eq!(
        (
            nack["type"].as_str(),
            nack["code"].as_str(),
            nack["id"].as_str()
        ),
        (Some("nack"), Some("rate_limited"), Some("3")),
        "{nack}"
    );
    assert!(
        nack["message"].as_str().unwrap().contains("history"),
        "the message names the budget: {nack}"
    );
    let (status, body) = relay
        .send_event(
            Some(KEY),
            &json!({"type":"e","channel":"d","data": ten_kb()}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));

    let held = relay.metric("rtet_history_bytes").await;
    assert!(
        held > 20_000.0 && held <= 25_000.0,
        "history holds {held} bytes"
    );
    assert_eq!(
        relay
            .metric("rtet_budget_refusals_total{budget=\"history_bytes\"}")
            .await,
        2.0
    );
    assert_eq!(
        relay
            .metric("rtet_nacks_total{code=\"rate_limited\"}")
            .await,
        2.0
    );

    // Aged out (history_age 1s, housekeeping every second): the bytes are free again,
    // and the refused event, sent again first, is taken.
    relay.wait_metric("rtet_history_bytes", 0.0).await;
    let ack = publish(&mut p, "3", "c", ten_kb()).await;
    assert_eq!(
        (ack["type"].as_str(), ack["seq"].as_u64()),
        (Some("ack"), Some(1))
    );
}

#[tokio::test]
async fn a_full_dedupe_budget_refuses_new_ids_but_acks_retries_and_shows_in_metrics() {
    let mut cfg = config();
    cfg.max_dedupe_entries = 2;
    let relay = start(cfg).await;
    let mut p = relay.publisher().await;
    assert_eq!(publish(&mut p, "1", "a", json!(1)).await["type"], "ack");
    assert_eq!(publish(&mut p, "2", "b", json!(1)).await["type"], "ack");
    assert_eq!(relay.metric("rtet_dedupe_entries").await, 2.0);
    let nack = publish(&mut p, "3", "a", json!(1)).await;
    assert_eq!(
        (nack["type"].as_str(), nack["code"].as_str()),
        (Some("nack"), Some("rate_limited")),
        "{nack}"
    );
    // A publisher that lost an ack retries on a new connection: still recognised.
    let mut p = relay.publisher().await;
    let again = publish(&mut p, "1", "a", json!(1)).await;
    assert_eq!(
        (again["type"].as_str(), again["seq"].as_u64()),
        (Some("ack"), Some(1))
    );
    assert_eq!(relay.metric("rtet_dedupe_entries").await, 2.0);
    assert_eq!(
        relay
            .metric("rtet_budget_refusals_total{budget=\"dedupe_entries\"}")
            .await,
        1.0
    );
}
