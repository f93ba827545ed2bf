//! Subscriber tokens ("Subscriber tokens"): HS256 JWTs signed with one of the
//! relay's API keys. Anything but HS256 is refused, `none` included; `exp` is
//! required; a token with an `nbf` in the future is not valid yet; clock
//! leeway is capped at 60 seconds; tokens are at most 4 KiB.

use std::time::Duration;

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The largest clock leeway the protocol allows.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// The claims of a subscriber token.
///
/// `presence`, `presence_counts` and `info` are optional ("Presence"): a
/// token without them is an ordinary subscriber token, and signing one
/// leaves them out, so such tokens are the same bytes as before presence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who holds the token (a WordPress user id; empty for a visitor).
    #[serde(default)]
    pub sub: String,
    /// The exact channels the holder may subscribe to.
    pub channels: Vec<String>,
    /// Issued at, seconds since the epoch.
    #[serde(default)]
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// Channels on which the holder is a presence member: listed to the
    /// other members with its `info`, and shown the member list. Each is
    /// also granted for subscribing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub presence: Vec<String>,
    /// Channels whose presence counts (members, anonymous subscribers) the
    /// holder is shown, without any member's identity ("N people reading").
    /// Each is also granted for subscribing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub presence_counts: Vec<String>,
    /// What other members see of the holder; checked by [`MemberInfo::check`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<MemberInfo>,
}

/// Longest display name in a member's `info`, in characters.
pub const MAX_MEMBER_NAME_CHARS: usize = 64;

/// Longest avatar URL in a member's `info`, in bytes.
pub const MAX_MEMBER_AVATAR_BYTES: usize = 512;

/// What other presence members see of a member: a display name and an
/// avatar URL, nothing else (unknown fields are dropped, never relayed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Display name, 1 to [`MAX_MEMBER_NAME_CHARS`] characters, no control characters.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// An `https://` or `http://` URL of at most [`MAX_MEMBER_AVATAR_BYTES`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
}

impl MemberInfo {
    /// Checks the bounds browsers rely on: a short name without control
    /// characters, and an avatar that is an http(s) URL of bounded size (so a
    /// `javascript:` or `data:` URL never reaches an `<img src>`).
    pub fn check(&self) -> Result<(), String> {
        let chars = self.name.chars().count();
        if chars > MAX_MEMBER_NAME_CHARS {
            return Err(format!(
                "info.name is {chars} characters; the limit is {MAX_MEMBER_NAME_CHARS}"
            ));
        }
        if self.name.chars().any(char::is_control) {
            return Err("info.name has control characters".into());
        }
        if let Some(avatar) = &self.avatar {
            if avatar.len() > MAX_MEMBER_AVATAR_BYTES {
                return Err(format!(
                    "info.avatar is {} bytes; the limit is {MAX_MEMBER_AVATAR_BYTES}",
                    avatar.len()
                ));
            }
            let parsed =
                url::Url::parse(avatar).map_err(|e| format!("info.avatar is not a URL: {e}"))?;
            if !matches!(parsed.scheme(), "https" | "http")
                || avatar.chars().any(char::is_whitespace)
            {
                return Err("info.avatar must be an https:// or http:// URL".into());
            }
        }
        Ok(())
    }
}

impl Claims {
    /// Claims for `channels`, issued now and valid for `ttl`.
    pub fn new(sub: impl Into<String>, channels: Vec<String>, ttl: Duration) -> Self {
        let now = now_secs();
        Claims {
            sub: sub.into(),
            channels,
            iat: now,
            exp: now + ttl.as_secs(),
            ..Claims::default()
        }
    }

    /// Whether the token grants subscribing to `channel` (listed in
    /// `channels`, `presence` or `presence_counts`).
    pub fn grants(&self, channel: &str) -> bool {
        self.channels
            .iter()
            .chain(&self.presence)
            .chain(&self.presence_counts)
            .any(|c| c == channel)
    }

    /// Whether the holder is a presence member of `channel`: granted
    /// presence there and someone (a non-empty `sub`); a visitor is never listed.
    pub fn is_member_of(&self, channel: &str) -> bool {
        !self.sub.is_empty() && self.presence.iter().any(|c| c == channel)
    }

    /// Whether the holder is shown `channel`'s presence counts (members are shown them too).
    pub fn sees_counts_of(&self, channel: &str) -> bool {
        self.is_member_of(channel) || self.presence_counts.iter().any(|c| c == channel)
    }

    /// Checks the presence claims: channel names and the member `info`.
    pub fn check_presence(&self) -> Result<(), String> {
        for channel in self.presence.iter().chain(&self.presence_counts) {
            crate::names::validate_channel(channel)
                .map_err(|e| format!("presence channel: {e}"))?;
        }
        match &self.info {
            Some(info) => info.check(),
            None => Ok(()),
        }
    }
}

/// Why a token was refused (or could not be made).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Larger than the token limit; the issuer must grant fewer channels.
    #[error("token is {len} bytes; the limit is {max}")]
    TooLarge { len: usize, max: usize },
    /// Not a JWT, or its claims are missing or of the wrong type; the client needs a new token.
    #[error("token is malformed: {0}")]
    Malformed(String),
    /// Signed with an algorithm other than HS256 (or none).
    #[error("token algorithm is not HS256")]
    Algorithm,
    /// The signature matches none of the relay's keys.
    #[error("token signature does not match")]
    Signature,
    /// Expired (beyond the leeway); the client must fetch a fresh token.
    #[error("token has expired")]
    Expired,
    /// Its `nbf` (not before) is in the future (beyond the leeway).
    #[error("token is not valid yet (nbf is in the future)")]
    NotYetValid,
    /// The key or claims could not be used to sign.
    #[error("cannot sign token: {0}")]
    Sign(String),
}

pub use crate::clock::unix_secs as now_secs;

/// Signs `claims` with `key` as an HS256 JWT.
pub fn sign(key: &[u8], claims: &Claims) -> Result<String, TokenError> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key),
    )
    .map_err(|e| TokenError::Sign(e.to_string()))
}

/// Checks `token` against each of `keys` (so keys can rotate) and returns its
/// claims. `leeway` is capped at [`MAX_LEEWAY`].
pub fn verify<K: AsRef<[u8]>>(
    token: &str,
    keys: &[K],
    leeway: Duration,
    max_bytes: usize,
) -> Result<Claims, TokenError> {
    verify_at(token, keys, leeway, max_bytes, now_secs())
}

/// [`verify`] as of `now` (seconds since the epoch), so that a token's
/// expiry can be checked against a fixed clock (the protocol vectors do).
pub fn verify_at<K: AsRef<[u8]>>(
    token: &str,
    keys: &[K],
    leeway: Duration,
    max_bytes: usize,
    now: u64,
) -> Result<Claims, TokenError> {
    if token.len() > max_bytes {
        return Err(TokenError::TooLarge {
            len: token.len(),
            max: max_bytes,
        });
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| {
        // An algorithm jsonwebtoken does not know (`none`) fails header
        // parsing; it is still a refused algorithm, not a malformed token.
        match header_alg(token) {
            Some(alg) if alg != "HS256" => TokenError::Algorithm,
            _ => map_error(e.into_kind()),
        }
    })?;
    if header.alg != Algorithm::HS256 {
        return Err(TokenError::Algorithm);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    // `exp` must be present; it is compared with `now` below rather than
    // with jsonwebtoken's own clock.
    validation.set_required_spec_claims(&["exp"]);
    validation.validate_exp = false;
    let leeway = leeway.min(MAX_LEEWAY).as_secs();
    // An `nbf`, when the token has one, is checked by jsonwebtoken (against
    // the system clock, with the same leeway): a token minted for later is
    // not valid yet.
    validation.validate_nbf = true;
    validation.leeway = leeway;
    let mut last = TokenError::Signature;
    for key in keys {
        match jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(key.as_ref()),
            &validation,
        ) {
            Ok(data) if data.claims.exp.saturating_add(leeway) < now => {
                return Err(TokenError::Expired)
            }
            Ok(data) => {
                return match data.claims.check_presence() {
                    Ok(()) => Ok(data.claims),
                    Err(problem) => Err(TokenError::Malformed(problem)),
                }
            }
            Err(e) => {
                last = map_error(e.into_kind());
                if last != TokenError::Signature {
                    // The signature matched this key; the token itself is bad.
                    return Err(last);
                }
            }
        }
    }
    Err(last)
}

/// The `alg` a token's header names, if the header is base64url JSON with one.
fn header_alg(token: &str) -> Option<String> {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("alg")?.as_str().map(str::to_owned)
}

fn map_error(kind: ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::Algorithm,
        other => TokenError::Malformed(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER: &[u8] = b"fedcba9876543210fedcba9876543210";
    const MAX: usize = 4096;
    const LEEWAY: Duration = Duration::from_secs(60);

    fn claims(exp_offset: i64) -> Claims {
        let now = now_secs() as i64;
        Claims {
            sub: "42".into(),
            channels: vec!["public".into(), "user.42".into()],
            iat: now as u64,
            exp: (now + exp_offset) as u64,
            ..Claims::default()
        }
    }

    #[test]
    fn presence_claims_grant_subscribing_and_a_visitor_is_never_a_member() {
        let c = Claims {
            presence: vec!["post.1.editors".into()],
            presence_counts: vec!["post.1".into()],
            info: Some(MemberInfo {
                name: "Alice".into(),
                avatar: Some("https://example.com/a.png".into()),
            }),
            ..claims(300)
        };
        let back = verify(&sign(KEY, &c).unwrap(), &[KEY], LEEWAY, MAX).unwrap();
        assert_eq!(back, c);
        assert!(back.grants("post.1.editors") && back.grants("post.1"));
        assert!(back.is_member_of("post.1.editors") && !back.is_member_of("post.1"));
        assert!(back.sees_counts_of("post.1") && back.sees_counts_of("post.1.editors"));
        let visitor = Claims {
            sub: String::new(),
            ..back
        };
        assert!(!visitor.is_member_of("post.1.editors"));
    }

    #[test]
    fn a_token_without_presence_claims_signs_as_before() {
        let token = sign(KEY, &claims(300)).unwrap();
        let body = token.split('.').nth(1).unwrap();
        let json = String::from_utf8(B64.decode(body).unwrap()).unwrap();
        assert!(
            !json.contains("presence") && !json.contains("info"),
            "{json}"
        );
    }

    #[test]
    fn member_info_out_of_bounds_makes_the_token_malformed() {
        let with = |name: &str, avatar: Option<&str>| Claims {
            presence: vec!["room".into()],
            info: Some(MemberInfo {
                name: name.into(),
                avatar: avatar.map(str::to_owned),
            }),
            ..claims(300)
        };
        let refused = |c: Claims| {
            matches!(
                verify(&sign(KEY, &c).unwrap(), &[KEY], LEEWAY, MAX),
                Err(TokenError::Malformed(_))
            )
        };
        assert!(!refused(with(
            &"é".repeat(64),
            Some("http://x.example/a.png")
        )));
        assert!(refused(with(&"é".repeat(65), None)), "name too long");
        assert!(refused(with("a\u{7}b", None)), "control character");
        assert!(
            refused(with("a", Some("javascript:alert(1)"))),
            "not http(s)"
        );
        assert!(
            refused(with("a", Some("data:image/png;base64,AA"))),
            "not http(s)"
        );
        let long = format!("https://x.example/{}", "a".repeat(MAX_MEMBER_AVATAR_BYTES));
        assert!(refused(with("a", Some(&long))), "avatar too long");
        let bad_channel = Claims {
            presence: vec!["no spaces".into()],
            ..claims(300)
        };
        assert!(refused(bad_channel));
    }

    #[test]
    fn signed_token_verifies_with_any_of_the_keys() {
        let c = claims(300);
        let token = sign(KEY, &c).unwrap();
        assert_eq!(verify(&token, &[KEY], LEEWAY, MAX), Ok(c.clone()));
        assert_eq!(verify(&token, &[OTHER, KEY], LEEWAY, MAX), Ok(c.clone()));
        assert!(c.grants("user.42") && !c.grants("user.7"));
    }

    #[test]
    fn wrong_key_is_a_signature_error() {
        let token = sign(OTHER, &claims(300)).unwrap();
        assert_eq!(
            verify(&token, &[KEY], LEEWAY, MAX),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn expiry_honours_the_leeway_and_caps_it_at_60s() {
        let token = sign(KEY, &claims(-30)).unwrap();
        assert!(
            verify(&token, &[KEY], LEEWAY, MAX).is_ok(),
            "within 60 s leeway"
        );
        assert_eq!(
            verify(&token, &[KEY], Duration::ZERO, MAX),
            Err(TokenError::Expired)
        );
        let old = sign(KEY, &claims(-120)).unwrap();
        assert_eq!(
            verify(&old, &[KEY], Duration::from_secs(3600), MAX),
            Err(TokenError::Expired),
            "leeway is capped at 60 s"
        );
    }

    #[test]
    fn a_token_with_a_future_nbf_is_not_valid_yet() {
        let sign_nbf = |nbf: u64| {
            let claims = serde_json::json!({
                "sub": "1", "channels": ["public"], "exp": now_secs() + 3600, "nbf": nbf
            });
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(KEY),
            )
            .unwrap()
        };
        assert_eq!(
            verify(&sign_nbf(now_secs() + 600), &[KEY], LEEWAY, MAX),
            Err(TokenError::NotYetValid)
        );
        assert!(
            verify(&sign_nbf(now_secs() + 30), &[KEY], LEEWAY, MAX).is_ok(),
            "within the leeway"
        );
        assert!(verify(&sign_nbf(now_secs() - 10), &[KEY], LEEWAY, MAX).is_ok());
    }

    #[test]
    fn exp_is_required() {
        let no_exp = serde_json::json!({"sub": "1", "channels": ["public"]});
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &no_exp,
            &EncodingKey::from_secret(KEY),
        )
        .unwrap();
        assert!(matches!(
            verify(&token, &[KEY], LEEWAY, MAX),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let body = format!(
            r#"{{"sub":"1","channels":["public"],"exp":{}}}"#,
            now_secs() + 300
        );
        let none = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            B64.encode(body)
        );
        assert!(verify(&none, &[KEY], LEEWAY, MAX).is_err());
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(300),
            &EncodingKey::from_secret(KEY),
        )
        .unwrap();
        assert_eq!(
            verify(&hs512, &[KEY], LEEWAY, MAX),
            Err(TokenError::Algorithm)
        );
    }

    #[test]
    fn oversized_and_garbage_tokens_are_refused() {
        let big = "a".repeat(MAX + 1);
        assert_eq!(
            verify(&big, &[KEY], LEEWAY, MAX),
            Err(TokenError::TooLarge {
                len: MAX + 1,
                max: MAX
            })
        );
        assert!(matches!(
            verify("abc.def", &[KEY], LEEWAY, MAX),
            Err(TokenError::Malformed(_))
        ));
    }
}
