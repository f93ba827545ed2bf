//! The protocol vectors (`tests/protocol-vectors/` at the repository root)
//! against this crate. The plugin's PHP and the browser client's JS are
//! tested against the same files, so a rule changed here without changing
//! the files fails this test, and a file changed fails every copy that did
//! not follow.

use std::time::Duration;

use rtet_protocol::frames::{parse_client_frame, parse_publish, parse_server_frame};
use rtet_protocol::limits::{
    DEFAULT_TOKEN_TTL, MAX_CHANNELS_PER_PUBLISH, MIN_API_KEY_LEN, MIN_TOKEN_TTL,
};
use rtet_protocol::names::{CHANNEL_MAX, EVENT_MAX, ID_MAX};
use rtet_protocol::token::{
    self, Claims, TokenError, MAX_LEEWAY, MAX_MEMBER_AVATAR_BYTES, MAX_MEMBER_NAME_CHARS,
};
use rtet_protocol::{
    close, is_event_id, new_event_id, validate_channel, validate_event, validate_id, ErrorCode,
    Limits, NameError, RelayUrl, ServerFrame, EVENT_ID_PATTERN,
};
use serde_json::{json, Value};

fn load(text: &str) -> Value {
    serde_json::from_str(text).expect("a vector file is JSON")
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string"))
        .collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is a string in {v}"))
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is a number in {v}"))
}

#[test]
fn names_follow_the_vectors() {
    let v = load(include_str!("../../../tests/protocol-vectors/names.json"));
    type Check = fn(&str) -> Result<(), NameError>;
    let rules: [(&str, Check, usize, &str); 3] = [
        ("channel", validate_channel, CHANNEL_MAX, "A-Za-z0-9_.:@-"),
        ("event", validate_event, EVENT_MAX, "A-Za-z0-9_.:-"),
        ("id", validate_id, ID_MAX, "A-Za-z0-9_.:-"),
    ];
    for (kind, check, max, alphabet) in rules {
        let rule = &v[kind];
        assert_eq!(u64_of(rule, "max") as usize, max, "{kind} max");
        assert_eq!(str_of(rule, "alphabet"), alphabet, "{kind} alphabet");
        let valid = strings(&rule["valid"]);
        assert!(
            valid.contains(&"a".repeat(max).as_str()),
            "{kind}: the longest name is listed"
        );
        for name in valid {
            assert_eq!(check(name), Ok(()), "{kind} {name:?} is valid");
        }
        let invalid = strings(&rule["invalid"]);
        for must in ["", &"a".repeat(max + 1), "a b", "a/b", "a\0", "é"] {
            assert!(
                invalid.contains(&must),
                "{kind}: {must:?} is listed as invalid"
            );
        }
        for name in invalid {
            assert!(check(name).is_err(), "{kind} {name:?} is invalid");
        }
    }
}

#[test]
fn limits_are_the_crates_constants() {
    let v = load(include_str!("../../../tests/protocol-vectors/limits.json"));
    let l = Limits::default();
    let want = json!({
        "max_frame_bytes": l.max_frame_bytes,
        "max_token_bytes": l.max_token_bytes,
        "min_api_key_length": MIN_API_KEY_LEN,
        "max_channels_per_publish": MAX_CHANNELS_PER_PUBLISH,
        "channel_max_length": CHANNEL_MAX,
        "event_max_length": EVENT_MAX,
        "id_max_length": ID_MAX,
        "token_max_leeway_secs": MAX_LEEWAY.as_secs(),
        "token_default_ttl_secs": DEFAULT_TOKEN_TTL.as_secs(),
        "token_min_ttl_secs": MIN_TOKEN_TTL.as_secs(),
        "max_subscriptions": l.max_subscriptions,
        "client_frames_per_sec": l.client_frames_per_sec,
        "client_frames_burst": l.client_frames_burst,
        "publishes_per_sec_per_key": l.publishes_per_sec_per_key,
        "connections_per_ip": l.connections_per_ip,
        "history_events": l.history_events,
        "history_age_secs": l.history_age.as_secs(),
        "dedupe_window_secs": l.dedupe_window.as_secs(),
        "subscriber_queue_frames": l.subscriber_queue_frames,
        "first_frame_timeout_secs": l.first_frame_timeout.as_secs(),
        "ping_interval_secs": l.ping_interval.as_secs(),
        "dead_peer_timeout_secs": l.dead_peer_timeout.as_secs(),
        "max_presence_members": l.max_presence_members,
        "member_name_max_chars": MAX_MEMBER_NAME_CHARS,
        "member_avatar_max_bytes": MAX_MEMBER_AVATAR_BYTES,
    });
    let mut got = v.clone();
    got.as_object_mut().expect("an object").remove("about");
    assert_eq!(got, want);
}

#[test]
fn relay_urls_map_as_the_vectors_say() {
    let v = load(include_str!(
        "../../../tests/protocol-vectors/relay-urls.json"
    ));
    for case in v["valid"].as_array().expect("valid") {
        let given = str_of(case, "relay_url");
        let r = RelayUrl::parse(given).unwrap_or_else(|e| panic!("{given:?}: {e}"));
        assert_eq!(
            r.publish_ws_url(),
            str_of(case, "publish_ws_url"),
            "{given:?}"
        );
        assert_eq!(
            r.subscribe_url(),
            str_of(case, "subscribe_url"),
            "{given:?}"
        );
        assert_eq!(
            r.http_publish_url(),
            str_of(case, "http_publish_url"),
            "{given:?}"
        );
        assert_eq!(r.health_url(), str_of(case, "health_url"), "{given:?}");
        // Every endpoint URL names the same relay again.
        for endpoint in [r.publish_ws_url(), r.subscribe_url(), r.http_publish_url()] {
            assert_eq!(RelayUrl::parse(&endpoint).as_ref(), Ok(&r), "{endpoint}");
        }
    }
    for case in v["invalid"].as_array().expect("invalid") {
        let given = str_of(case, "relay_url");
        assert!(
            RelayUrl::parse(given).is_err(),
            "{given:?} is refused: {}",
            str_of(case, "why")
        );
    }
}

#[test]
fn tokens_are_signed_byte_for_byte_and_refused_as_the_vectors_say() {
    let v = load(include_str!("../../../tests/protocol-vectors/tokens.json"));
    let leeway = Duration::from_secs(u64_of(&v, "leeway_secs"));
    let max = u64_of(&v, "max_token_bytes") as usize;
    assert_eq!(leeway, MAX_LEEWAY);
    assert_eq!(max, Limits::default().max_token_bytes);
    let header = str_of(&v, "header_json");
    let order: Vec<&str> = strings(&v["claim_order"]);
    for case in v["valid"].as_array().expect("valid") {
        let key = str_of(case, "key");
        let claims: Claims = serde_json::from_value(case["claims"].clone()).expect("claims");
        let token = token::sign(key.as_bytes(), &claims).expect("signs");
        assert_eq!(token, str_of(case, "token"), "{}", str_of(case, "why"));
        let payload = serde_json::to_string(&claims).expect("claims encode");
        assert_eq!(payload, str_of(case, "payload_json"));
        let at: Vec<usize> = order
            .iter()
            .map(|k| payload.find(&format!("\"{k}\":")).expect(k))
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "claims in the order {order:?}: {payload}"
        );
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
        assert_eq!(B64.decode(parts[0]).expect("b64"), header.as_bytes());
        assert_eq!(B64.decode(parts[1]).expect("b64"), payload.as_bytes());
        let now = u64_of(case, "now");
        assert_eq!(
            token::verify_at(&token, &[key], leeway, max, now),
            Ok(claims),
            "{}",
            str_of(case, "why")
        );
    }
    for case in v["invalid"].as_array().expect("invalid") {
        let why = str_of(case, "why");
        let got = token::verify_at(
            str_of(case, "token"),
            &[str_of(case, "key")],
            leeway,
            max,
            u64_of(case, "now"),
        );
        let kind = match &got {
            Err(TokenError::Signature) => "signature",
            Err(TokenError::Expired) => "expired",
            Err(TokenError::Algorithm) => "algorithm",
            Err(TokenError::Malformed(_)) => "malformed",
            Err(TokenError::TooLarge { .. }) => "too_large",
            other => panic!("{why}: {other:?}"),
        };
        assert_eq!(kind, str_of(case, "error"), "{why}");
    }
}

#[test]
fn frames_parse_as_the_vectors_say() {
    let v = load(include_str!("../../../tests/protocol-vectors/frames.json"));
    for case in v["client"]["valid"].as_array().expect("client valid") {
        let text = str_of(case, "text");
        let frame = parse_client_frame(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            serde_json::to_value(&frame).expect("encodes"),
            case["frame"],
            "{text}"
        );
    }
    for case in v["client"]["invalid"].as_array().expect("client invalid") {
        let text = str_of(case, "text");
        let err = parse_client_frame(text).expect_err(text);
        assert_eq!(err.code.as_str(), str_of(case, "code"), "{text}");
        assert_eq!(err.channel.as_deref(), case["channel"].as_str(), "{text}");
    }
    for case in v["publisher"]["valid"].as_array().expect("publisher valid") {
        let text = str_of(case, "text");
        let frame = parse_publish(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let encoded: Value = serde_json::from_str(&frame.encode()).expect("JSON");
        assert_eq!(encoded, case["frame"], "{text}");
    }
    for case in v["publisher"]["invalid"]
        .as_array()
        .expect("publisher invalid")
    {
        let text = str_of(case, "text");
        let err = parse_publish(text).expect_err(text);
        assert_eq!(err.code.as_str(), str_of(case, "code"), "{text}");
        assert_eq!(err.id.as_deref(), case["id"].as_str(), "{text}");
    }
    for case in v["server"].as_array().expect("server") {
        let text = str_of(case, "text");
        let frame = parse_server_frame(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let want: ServerFrame = serde_json::from_value(case["frame"].clone()).expect("frame");
        assert_eq!(frame, want, "{text}");
        if !matches!(frame, ServerFrame::Event { .. }) {
            assert_eq!(frame.encode(), text, "the relay writes exactly this");
        }
    }
    let codes: Vec<&str> = strings(&v["error_codes"]);
    let ours: Vec<&str> = [
        ErrorCode::Invalid,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::TooLarge,
    ]
    .map(ErrorCode::as_str)
    .to_vec();
    assert_eq!(codes, ours);
    assert_eq!(
        v["close_codes"],
        json!({
            "going_away": close::GOING_AWAY, "policy": close::POLICY, "too_large": close::TOO_LARGE,
            "token_invalid": close::TOKEN_INVALID, "forbidden": close::FORBIDDEN,
            "slow_consumer": close::SLOW_CONSUMER, "rate_limited": close::RATE_LIMITED,
        })
    );
}

#[test]
fn event_ids_have_the_documented_format() {
    let v = load(include_str!(
        "../../../tests/protocol-vectors/event-ids.json"
    ));
    assert_eq!(str_of(&v, "pattern"), EVENT_ID_PATTERN);
    assert_eq!(u64_of(&v, "length"), 26);
    for case in v["examples"].as_array().expect("examples") {
        let id = str_of(case, "id");
        assert!(is_event_id(id), "{id}");
        let ulid = ulid::Ulid::from_string(id).expect("a ULID");
        assert_eq!(ulid.timestamp_ms(), u64_of(case, "ms"), "{id}");
        assert_eq!(ulid.to_string(), id, "canonical form");
    }
    for id in strings(&v["invalid"]) {
        assert!(!is_event_id(id), "{id:?}");
    }
    for _ in 0..100 {
        let id = new_event_id();
        assert!(is_event_id(&id), "{id}");
    }
}
