//! Every frame of the protocol ("Publishers", "Subscribers", "HTTP publish").
//!
//! Frames a peer *receives* are parsed into typed values with an error that
//! already carries the protocol's error code and a message for the sender.
//! The relay's hot path, an `event` frame, is encoded by [`encode_event`] once
//! per event so that the same bytes go to every subscriber.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

use crate::names::{validate_channel, validate_event, validate_id};
use crate::token::MemberInfo;

/// Why encoding a frame cannot fail: serde_json fails only for a map with
/// non-string keys, a failing writer or a `Serialize` impl that errors; the
/// frames hold strings, numbers, `Value`s and `RawValue`s (already JSON) and
/// are written to a `String`. A failure would be a bug here, and sending an
/// empty frame instead would hide it.
const ENCODES: &str = "frames of strings, numbers and JSON values always encode";

/// Error codes of `error` and `nack` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, an unknown `type`, a bad name or a missing field.
    Invalid,
    /// No valid token where one is needed.
    Unauthorized,
    /// The token (or anonymous access) does not grant this, or a limit of count was reached.
    Forbidden,
    /// Too many frames or publishes per second.
    RateLimited,
    /// A frame or an event's data is over the size limit.
    TooLarge,
}

impl ErrorCode {
    /// The code as it appears on the wire, e.g. `rate_limited`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Invalid => "invalid",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
        }
    }
}

/// A frame that could not be accepted: what to answer, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{code:?}: {message}")]
pub struct FrameError {
    /// The code for the `error` or `nack` frame.
    pub code: ErrorCode,
    /// A human-readable reason, safe to send back.
    pub message: String,
    /// The publish id, when the frame had one (a `nack` echoes it).
    pub id: Option<String>,
    /// The channel the frame was about, when known.
    pub channel: Option<String>,
}

impl FrameError {
    /// An `invalid` error with a message.
    pub fn invalid(message: impl Into<String>) -> Self {
        FrameError {
            code: ErrorCode::Invalid,
            message: message.into(),
            id: None,
            channel: None,
        }
    }
}

/// Where a subscriber wants its replay to start: after `seq` in history `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Since {
    /// The epoch the client last saw for the channel.
    pub epoch: String,
    /// The last `seq` the client received.
    pub seq: u64,
}

/// Frames a subscriber sends to `/ws`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Authenticate (or re-authenticate) with a subscriber token.
    Auth { token: String },
    /// Subscribe to a channel, optionally replaying history after `since`.
    Subscribe {
        channel: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Since>,
    },
    /// Stop receiving a channel's events.
    Unsubscribe { channel: String },
}

/// Parses a subscriber's frame. Names are checked too, so a `subscribe` to a
/// malformed channel is `invalid` here, before any permission check.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| FrameError::invalid(format!("frame is not JSON: {e}")))?;
    let Some(kind) = value.as_object().map(|o| o.get("type")) else {
        return Err(FrameError::invalid("frame is not a JSON object"));
    };
    match kind.and_then(|k| k.as_str()) {
        Some("auth" | "subscribe" | "unsubscribe") => {}
        Some(other) => {
            return Err(FrameError::invalid(format!(
                "unknown frame type {:?}; expected auth, subscribe or unsubscribe",
                truncate(other, 64)
            )))
        }
        None => return Err(FrameError::invalid("frame has no string field \"type\"")),
    }
    let frame: ClientFrame = serde_json::from_value(value)
        .map_err(|e| FrameError::invalid(format!("malformed frame: {e}")))?;
    if let ClientFrame::Subscribe { channel, .. } | ClientFrame::Unsubscribe { channel } = &frame {
        validate_channel(channel).map_err(|e| FrameError {
            code: ErrorCode::Invalid,
            message: e.to_string(),
            id: None,
            channel: Some(truncate(channel, 128)),
        })?;
    }
    Ok(frame)
}

/// A `publish` frame: one event for one channel, from a publisher.
#[derive(Debug, Clone)]
pub struct PublishFrame {
    /// Publisher-made id; (channel, id) is the idempotency key.
    pub id: String,
    /// Target channel.
    pub channel: String,
    /// Event name.
    pub event: String,
    /// Any JSON value, kept as the publisher's exact bytes.
    pub data: Box<RawValue>,
    /// Milliseconds since the epoch; the relay sets it when absent.
    pub ts: Option<u64>,
}

impl PublishFrame {
    /// Encodes the frame as the JSON text a publisher sends.
    pub fn encode(&self) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            id: &'a str,
            channel: &'a str,
            event: &'a str,
            data: &'a RawValue,
            #[serde(skip_serializing_if = "Option::is_none")]
            ts: Option<u64>,
        }
        serde_json::to_string(&Wire {
            kind: "publish",
            id: &self.id,
            channel: &self.channel,
            event: &self.event,
            data: &self.data,
            ts: self.ts,
        })
        .expect(ENCODES)
    }

    /// Checks the three names of the frame.
    pub fn validate(&self) -> Result<(), FrameError> {
        let fail = |e: crate::NameError| FrameError {
            code: ErrorCode::Invalid,
            message: e.to_string(),
            id: Some(truncate(&self.id, 64)),
            channel: Some(truncate(&self.channel, 128)),
        };
        validate_id(&self.id).map_err(fail)?;
        validate_channel(&self.channel).map_err(fail)?;
        validate_event(&self.event).map_err(fail)
    }
}

impl PartialEq for PublishFrame {
    /// Equal when every field is, comparing `data` by its exact bytes.
    fn eq(&self, other: &Self) -> bool {
        (
            &self.id,
            &self.channel,
            &self.event,
            self.data.get(),
            self.ts,
        ) == (
            &other.id,
            &other.channel,
            &other.event,
            other.data.get(),
            other.ts,
        )
    }
}

/// JSON `null`, the data of an event that has none.
pub fn null_data() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("null is JSON")
}

/// Parses a publisher's frame and checks its names.
pub fn parse_publish(text: &str) -> Result<PublishFrame, FrameError> {
    #[derive(Deserialize)]
    struct Loose {
        #[serde(rename = "type")]
        kind: Option<serde_json::Value>,
        id: Option<serde_json::Value>,
        channel: Option<String>,
        event: Option<String>,
        data: Option<Box<RawValue>>,
        ts: Option<u64>,
    }
    let loose: Loose = match serde_json::from_str(text) {
        Ok(l) => l,
        Err(e) if e.is_data() => {
            return Err(FrameError::invalid(format!("malformed frame: {e}")));
        }
        Err(e) => return Err(FrameError::invalid(format!("frame is not JSON: {e}"))),
    };
    let id = loose
        .id
        .as_ref()
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    match loose.kind.as_ref().and_then(|k| k.as_str()) {
        Some("publish") => {}
        Some(other) => {
            return Err(FrameError {
                id,
                ..FrameError::invalid(format!(
                    "unknown frame type {:?}; publishers send \"publish\"",
                    truncate(other, 64)
                ))
            })
        }
        None => return Err(FrameError::invalid("frame has no string field \"type\"")),
    }
    let missing = |field: &str| FrameError {
        id: id.clone(),
        channel: loose.channel.clone(),
        ..FrameError::invalid(format!("publish frame has no string field {field:?}"))
    };
    let frame = PublishFrame {
        id: id.clone().ok_or_else(|| missing("id"))?,
        channel: loose.channel.clone().ok_or_else(|| missing("channel"))?,
        event: loose.event.clone().ok_or_else(|| missing("event"))?,
        data: loose.data.unwrap_or_else(null_data),
        ts: loose.ts,
    };
    frame.validate()?;
    Ok(frame)
}

/// Frames the relay sends, to publishers (`ack`, `nack`) and to subscribers
/// (the rest). Clients decode them with [`parse_server_frame`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The event with this id is stored in the channel's history as `seq`.
    Ack {
        id: String,
        channel: String,
        seq: u64,
    },
    /// The event with this id was refused.
    Nack {
        id: String,
        code: ErrorCode,
        message: String,
    },
    /// The token was accepted; it expires at `exp` (seconds since the epoch).
    AuthOk { sub: String, exp: u64 },
    /// Subscribed; `seq` is the channel's latest at that moment.
    Subscribed {
        channel: String,
        epoch: String,
        seq: u64,
        recovered: bool,
    },
    /// One event of a channel.
    Event {
        channel: String,
        seq: u64,
        id: String,
        event: String,
        data: serde_json::Value,
        ts: u64,
    },
    /// The subscription is gone.
    Unsubscribed { channel: String },
    /// A channel's whole presence: sent after `subscribed` to a subscriber
    /// shown presence there, and again whenever the list starts or stops
    /// being kept (the member cap). It replaces what the client held.
    /// `members` is there only for members, and only while the channel has
    /// no more members than the cap; `member_count` counts users (not
    /// connections), `anonymous` the other subscriber connections.
    Presence {
        channel: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        members: Option<Vec<Member>>,
        member_count: usize,
        anonymous: usize,
    },
    /// The counts changed (coalesced: at most one per channel per tick).
    PresenceCount {
        channel: String,
        member_count: usize,
        anonymous: usize,
    },
    /// Users who became members (coalesced), for members while the list is
    /// kept. Adding a member the client already lists replaces it.
    Join {
        channel: String,
        members: Vec<Member>,
    },
    /// Users who are no longer members (their last connection left), for
    /// members while the list is kept. A `sub` the client does not list is ignored.
    Leave { channel: String, subs: Vec<String> },
    /// Something the client sent was refused; the connection stays open.
    Error {
        code: ErrorCode,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        message: String,
    },
}

impl ServerFrame {
    /// Encodes the frame as JSON text.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect(ENCODES)
    }

    /// The `error` frame for a refused client frame.
    pub fn from_error(err: &FrameError) -> Self {
        ServerFrame::Error {
            code: err.code,
            channel: err.channel.clone(),
            message: err.message.clone(),
        }
    }

    /// The `nack` frame for a refused publish.
    pub fn nack_from_error(err: &FrameError) -> Self {
        ServerFrame::Nack {
            id: err.id.clone().unwrap_or_default(),
            code: err.code,
            message: err.message.clone(),
        }
    }
}

/// A presence member as the other members see it: who (the token's `sub`)
/// and the token's `info`, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The user (the token's `sub`); one member however many connections it has.
    pub sub: String,
    /// Display name and avatar from the token.
    #[serde(default)]
    pub info: MemberInfo,
}

/// Parses a frame from the relay (for clients: the publisher core, tests, the bench).
pub fn parse_server_frame(text: &str) -> Result<ServerFrame, FrameError> {
    serde_json::from_str(text).map_err(|e| FrameError::invalid(format!("bad server frame: {e}")))
}

/// Encodes one `event` frame. The relay calls this once per event and sends
/// the same bytes to every subscriber; `data` is copied as the publisher sent it.
pub fn encode_event(
    channel: &str,
    seq: u64,
    id: &str,
    event: &str,
    data: &RawValue,
    ts: u64,
) -> String {
    #[derive(Serialize)]
    struct Wire<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        channel: &'a str,
        seq: u64,
        id: &'a str,
        event: &'a str,
        data: &'a RawValue,
        ts: u64,
    }
    serde_json::to_string(&Wire {
        kind: "event",
        channel,
        seq,
        id,
        event,
        data,
        ts,
    })
    .expect(ENCODES)
}

/// The body of `POST /api/send-event` (the original blog recipe's shape).
#[derive(Debug, Clone, Deserialize)]
pub struct HttpPublishRequest {
    /// The event name (the recipe calls it `type`).
    #[serde(rename = "type")]
    pub event: String,
    /// Any JSON value; `null` when absent.
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    /// Target channel; `public` when absent.
    #[serde(default)]
    pub channel: Option<String>,
    /// Event id; the relay makes one when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Milliseconds since the epoch; the relay sets it when absent.
    #[serde(default)]
    pub ts: Option<u64>,
    /// The API key, for clients that cannot set an `Authorization` header.
    #[serde(default, rename = "apiKey")]
    pub api_key: Option<String>,
}

impl HttpPublishRequest {
    /// Parses the body; errors are `invalid` with a reason.
    pub fn parse(body: &[u8]) -> Result<Self, FrameError> {
        serde_json::from_slice(body)
            .map_err(|e| FrameError::invalid(format!("bad request body: {e}")))
    }

    /// Turns the request into a publish frame (filling `channel` and `id`) and checks its names.
    pub fn into_publish(self) -> Result<PublishFrame, FrameError> {
        let frame = PublishFrame {
            id: self.id.unwrap_or_else(crate::new_event_id),
            channel: self.channel.unwrap_or_else(|| "public".to_owned()),
            event: self.event,
            data: self.data.unwrap_or_else(null_data),
            ts: self.ts,
        };
        frame.validate()?;
        Ok(frame)
    }
}

/// Answers of `POST /api/send-event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HttpPublishReply {
    /// `200`: stored as `seq` in `channel`.
    Ok {
        ok: bool,
        id: String,
        channel: String,
        seq: u64,
    },
    /// `4xx`: refused.
    Err {
        ok: bool,
        code: ErrorCode,
        message: String,
    },
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_subscriber_frames() {
        assert_eq!(
            parse_client_frame(r#"{"type":"auth","token":"abc"}"#),
            Ok(ClientFrame::Auth {
                token: "abc".into()
            })
        );
        assert_eq!(
            parse_client_frame(
                r#"{"type":"subscribe","channel":"public","since":{"epoch":"k3j9","seq":41},"extra":1}"#
            ),
            Ok(ClientFrame::Subscribe {
                channel: "public".into(),
                since: Some(Since {
                    epoch: "k3j9".into(),
                    seq: 41
                })
            })
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"unsubscribe","channel":"public"}"#),
            Ok(ClientFrame::Unsubscribe {
                channel: "public".into()
            })
        );
    }

    #[test]
    fn refuses_malformed_subscriber_frames_as_invalid() {
        for bad in [
            "not json",
            "[1,2]",
            r#"{"channel":"public"}"#,
            r#"{"type":"dance"}"#,
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","channel":"bad channel"}"#,
            r#"{"type":"subscribe","channel":"public","since":{"seq":"x"}}"#,
        ] {
            let err = parse_client_frame(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::Invalid, "{bad}");
            assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn publish_round_trips_with_data_bytes_kept() {
        let text = r#"{"type":"publish","id":"01JD5Q","channel":"public","event":"post_published","data":{"id":7,"title":"Hello","z":1,"a":2},"ts":1764262800000}"#;
        let frame = parse_publish(text).unwrap();
        assert_eq!(frame.data.get(), r#"{"id":7,"title":"Hello","z":1,"a":2}"#);
        assert_eq!(frame.ts, Some(1764262800000));
        assert_eq!(parse_publish(&frame.encode()).unwrap(), frame);
    }

    #[test]
    fn publish_without_data_carries_null() {
        let frame =
            parse_publish(r#"{"type":"publish","id":"a","channel":"c","event":"e"}"#).unwrap();
        assert_eq!(frame.data.get(), "null");
        assert_eq!(frame.ts, None);
    }

    #[test]
    fn bad_publishes_are_invalid_and_keep_their_id_for_the_nack() {
        let err =
            parse_publish(r#"{"type":"publish","id":"x1","channel":"no spaces","event":"e"}"#)
                .unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        assert_eq!(err.id.as_deref(), Some("x1"));
        let err = parse_publish(r#"{"type":"publish","id":"x2","channel":"c"}"#).unwrap_err();
        assert!(err.message.contains("event"), "{}", err.message);
        assert_eq!(err.id.as_deref(), Some("x2"));
        assert_eq!(parse_publish("{").unwrap_err().code, ErrorCode::Invalid);
        assert_eq!(
            parse_publish(r#"{"type":"subscribe"}"#).unwrap_err().code,
            ErrorCode::Invalid
        );
    }

    #[test]
    fn encoded_event_decodes_to_the_same_event() {
        let data = RawValue::from_string(r#"{"b":1,"a":[true,null]}"#.into()).unwrap();
        let text = encode_event("public", 42, "01JD", "post_published", &data, 1764262800000);
        assert!(text.contains(r#""data":{"b":1,"a":[true,null]}"#), "{text}");
        assert_eq!(
            parse_server_frame(&text).unwrap(),
            ServerFrame::Event {
                channel: "public".into(),
                seq: 42,
                id: "01JD".into(),
                event: "post_published".into(),
                data: serde_json::json!({"b":1,"a":[true,null]}),
                ts: 1764262800000,
            }
        );
    }

    #[test]
    fn server_frames_match_the_documented_json() {
        let cases = [
            (
                ServerFrame::Ack {
                    id: "01".into(),
                    channel: "public".into(),
                    seq: 42,
                },
                r#"{"type":"ack","id":"01","channel":"public","seq":42}"#,
            ),
            (
                ServerFrame::Nack {
                    id: "01".into(),
                    code: ErrorCode::TooLarge,
                    message: "m".into(),
                },
                r#"{"type":"nack","id":"01","code":"too_large","message":"m"}"#,
            ),
            (
                ServerFrame::Subscribed {
                    channel: "public".into(),
                    epoch: "k3j9".into(),
                    seq: 44,
                    recovered: true,
                },
                r#"{"type":"subscribed","channel":"public","epoch":"k3j9","seq":44,"recovered":true}"#,
            ),
            (
                ServerFrame::Error {
                    code: ErrorCode::Forbidden,
                    channel: Some("user.7".into()),
                    message: "m".into(),
                },
                r#"{"type":"error","code":"forbidden","channel":"user.7","message":"m"}"#,
            ),
            (
                ServerFrame::AuthOk {
                    sub: "42".into(),
                    exp: 1764266400,
                },
                r#"{"type":"auth_ok","sub":"42","exp":1764266400}"#,
            ),
            (
                ServerFrame::Unsubscribed {
                    channel: "public".into(),
                },
                r#"{"type":"unsubscribed","channel":"public"}"#,
            ),
        ];
        for (frame, json) in cases {
            assert_eq!(frame.encode(), json);
            assert_eq!(parse_server_frame(json).unwrap(), frame);
        }
    }

    #[test]
    fn http_publish_accepts_the_blog_recipe_body() {
        let req = HttpPublishRequest::parse(
            br#"{"type":"post_published","data":{"id":7},"apiKey":"secret"}"#,
        )
        .unwrap();
        assert_eq!(req.api_key.as_deref(), Some("secret"));
        let frame = req.into_publish().unwrap();
        assert_eq!(frame.channel, "public");
        assert_eq!(frame.event, "post_published");
        assert_eq!(frame.data.get(), r#"{"id":7}"#);
        assert!(crate::validate_id(&frame.id).is_ok());
        let err = HttpPublishRequest::parse(br#"{"type":"bad name"}"#)
            .unwrap()
            .into_publish()
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
    }
}
