//! Property tests of every decoder that takes outside input: frames from
//! clients, publishers and the relay, `since`, names, tokens, relay URLs.
//! Each decoder must refuse what is not valid with an error (never panic),
//! and what it accepts must mean what it says (encode → decode is the
//! identity, a name is valid exactly when the rule says so).
//!
//! The suite runs 64 cases per property; `PROPTEST_CASES=100000 cargo test
//! -p rtet-protocol --release --test properties` is the long run.

use std::time::Duration;

use proptest::prelude::*;
use rtet_protocol::frames::{
    parse_client_frame, parse_publish, parse_server_frame, HttpPublishRequest,
};
use rtet_protocol::names::{CHANNEL_MAX, EVENT_MAX};
use rtet_protocol::token::{self, Claims};
use rtet_protocol::{
    validate_channel, validate_event, validate_id, ClientFrame, ErrorCode, RelayUrl, Since,
};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    // Failures print their minimal input; nothing is written into the source tree.
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings mostly near the name alphabets, sometimes anything.
fn name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_.:@-]{0,140}",
        "[A-Za-z0-9_.:@ /é\\x00-\\x1f-]{0,70}",
        any::<String>(),
    ]
}

fn channel() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:@-]{1,128}"
}

fn ascii_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:-]{1,64}"
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    "type|channel|since|epoch|seq|token|id|event|data|ts".prop_map(String::from),
                    any::<String>()
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects shaped like frames, with fields of the right or a wrong type.
fn frame_like() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("auth"),
            Just("subscribe"),
            Just("unsubscribe"),
            Just("publish"),
            Just("ack"),
            Just("event"),
            Just("x")
        ],
        prop::option::of(json_value()),
        prop::option::of(name_like()),
        prop::option::of(json_value()),
    )
        .prop_map(|(kind, since, channel, data)| {
            let mut o = serde_json::Map::new();
            o.insert("type".into(), kind.into());
            if let Some(c) = channel {
                o.insert("channel".into(), c.clone().into());
                o.insert("id".into(), c.clone().into());
                o.insert("event".into(), c.into());
            }
            if let Some(s) = since {
                o.insert("since".into(), s);
            }
            if let Some(d) = data {
                o.insert("data".into(), d.clone());
                o.insert("token".into(), d);
            }
            serde_json::Value::Object(o).to_string()
        })
}

fn model_valid(name: &str, max: usize, extra: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn names_are_valid_exactly_when_the_rule_says(name in name_like()) {
        prop_assert_eq!(validate_channel(&name).is_ok(), model_valid(&name, CHANNEL_MAX, "_.:@-"));
        prop_assert_eq!(validate_event(&name).is_ok(), model_valid(&name, EVENT_MAX, "_.:-"));
        prop_assert_eq!(validate_id(&name).is_ok(), model_valid(&name, EVENT_MAX, "_.:-"));
    }

    #[test]
    fn any_text_is_a_client_frame_or_an_invalid_error(text in prop_oneof![any::<String>(), frame_like()]) {
        match parse_client_frame(&text) {
            Ok(frame) => {
                let again = serde_json::to_string(&frame).expect("encodes");
                prop_assert_eq!(parse_client_frame(&again), Ok(frame));
            }
            Err(e) => prop_assert_eq!(e.code, ErrorCode::Invalid),
        }
    }

    #[test]
    fn subscribe_with_any_since_round_trips(channel in channel(), epoch in any::<String>(), seq in any::<u64>()) {
        let frame = ClientFrame::Subscribe { channel, since: Some(Since { epoch, seq }) };
        let text = serde_json::to_string(&frame).expect("encodes");
        prop_assert_eq!(parse_client_frame(&text), Ok(frame));
    }

    #[test]
    fn a_since_seq_that_is_not_a_u64_is_invalid(seq in prop_oneof![
        (i64::MIN..0).prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("fractional", |f| f.is_finite() && f.fract() != 0.0).prop_map(|f| f.to_string()),
        (1u32..1000).prop_map(|n| format!("1844674407370955{n:04}0")),
        any::<String>().prop_map(|s| serde_json::Value::from(s).to_string()),
    ]) {
        let text = format!(r#"{{"type":"subscribe","channel":"public","since":{{"epoch":"e","seq":{seq}}}}}"#);
        prop_assert_eq!(parse_client_frame(&text).map_err(|e| e.code), Err(ErrorCode::Invalid));
    }

    #[test]
    fn any_text_is_a_publish_or_an_invalid_error(text in prop_oneof![any::<String>(), frame_like()]) {
        match parse_publish(&text) {
            Ok(frame) => {
                prop_assert!(frame.validate().is_ok());
                prop_assert_eq!(parse_publish(&frame.encode()).ok(), Some(frame));
            }
            Err(e) => prop_assert_eq!(e.code, ErrorCode::Invalid),
        }
    }

    #[test]
    fn publishes_with_any_data_round_trip(id in ascii_name(), channel in channel(), event in ascii_name(), data in json_value(), ts in prop::option::of(any::<u64>())) {
        let data = data.to_string();
        let ts = ts.map(|t| format!(",\"ts\":{t}")).unwrap_or_default();
        let text = format!(r#"{{"type":"publish","id":"{id}","channel":"{channel}","event":"{event}","data":{data}{ts}}}"#);
        let frame = parse_publish(&text).expect("valid");
        // The data's bytes are kept exactly (floats included), so the frame encodes to the same text.
        prop_assert_eq!(frame.data.get(), data.as_str());
        prop_assert_eq!(frame.encode(), text);
    }

    #[test]
    fn any_text_is_a_server_frame_or_an_error(text in prop_oneof![any::<String>(), frame_like()]) {
        if let Ok(frame) = parse_server_frame(&text) {
            prop_assert_eq!(parse_server_frame(&frame.encode()), Ok(frame));
        }
    }

    #[test]
    fn any_http_body_is_a_request_or_an_invalid_error(body in prop_oneof![any::<Vec<u8>>(), frame_like().prop_map(String::into_bytes)]) {
        if let Ok(req) = HttpPublishRequest::parse(&body) {
            if let Ok(frame) = req.into_publish() {
                prop_assert!(frame.validate().is_ok());
            }
        }
    }

    #[test]
    fn signed_tokens_verify_to_their_claims(sub in any::<String>(), channels in prop::collection::vec(channel(), 0..8), iat in 0u64..(1 << 40), ttl in 1u64..100_000, key in "[ -~]{32,64}") {
        let claims = Claims { sub, channels, iat, exp: iat + ttl, ..Claims::default() };
        let token = token::sign(key.as_bytes(), &claims).expect("signs");
        let got = token::verify_at(&token, &[key.as_bytes()], Duration::ZERO, usize::MAX, iat);
        prop_assert_eq!(got, Ok(claims.clone()));
        prop_assert!(token::verify_at(&token, &[key.as_bytes()], Duration::ZERO, usize::MAX, iat + ttl + 1).is_err(), "expired");
    }

    #[test]
    fn a_changed_token_never_verifies(at in any::<prop::sample::Index>(), to in any::<u8>()) {
        let key = b"0123456789abcdef0123456789abcdef";
        let claims = Claims { sub: "42".into(), channels: vec!["public".into()], iat: 1, exp: 1 << 40, ..Claims::default() };
        let token = token::sign(key, &claims).expect("signs");
        let mut bytes = token.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != to);
        bytes[i] = to;
        let changed = String::from_utf8_lossy(&bytes).into_owned();
        // base64url has four spellings of a final 2-bit group; a change that
        // decodes to the same bytes is the same token, and only it may verify.
        if let Ok(c) = token::verify_at(&changed, &[key], Duration::ZERO, 4096, 2) {
            prop_assert_eq!(c, claims);
            prop_assert_eq!(changed.split('.').count(), 3);
        }
    }

    #[test]
    fn any_text_is_a_token_or_an_error(text in prop_oneof![any::<String>(), "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,43}"]) {
        prop_assert!(token::verify_at(&text, &[b"0123456789abcdef0123456789abcdef"], Duration::from_secs(60), 4096, 2).is_err());
    }

    #[test]
    fn a_parsed_relay_url_names_the_same_relay_from_each_endpoint(text in prop_oneof![
        any::<String>(),
        "(ws|wss|http|https|WS|ftp)://[a-z0-9.:@?#\\[\\]/ -]{0,30}",
    ]) {
        if let Ok(r) = RelayUrl::parse(&text) {
            for endpoint in [r.publish_ws_url(), r.subscribe_url(), r.http_publish_url()] {
                prop_assert_eq!(RelayUrl::parse(&endpoint), Ok(r.clone()));
            }
        }
    }
}
