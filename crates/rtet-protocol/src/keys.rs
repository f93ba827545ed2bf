//! What makes an API key usable. The key authenticates publishers and signs
//! subscriber tokens, so anyone who knows it can publish to every channel and
//! read every channel (`role.administrator` included). A key copied from an
//! example is public, whatever its length; the relay refuses to start with
//! one, and the plugin refuses to save one. Both are checked against
//! `tests/protocol-vectors/keys.json`.

use thiserror::Error;

/// The shortest API key (it is also the HS256 secret for tokens); defined
/// with the protocol's other limits.
pub use crate::limits::MIN_API_KEY_LEN as MIN_KEY_LEN;

/// Parts of keys copied from examples and never changed. A key containing
/// one (compared without case, ignoring `-` and `_`) is refused.
pub const PLACEHOLDER_PARTS: &[&str] = &[
    "changeme",
    "replaceme",
    "yourkey",
    "yourapikey",
    "example",
    "placeholder",
    "secret",
    "password",
    "xxxxxxxx",
];

/// The longest run of one repeated character a key may hold; a longer run
/// means the key was typed, not generated.
pub const MAX_REPEAT: usize = 7;

/// How to make a good key, for messages.
pub const HOW_TO_MAKE_ONE: &str = "openssl rand -hex 32";

/// Why a key is refused. The messages never contain the key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// Shorter than [`MIN_KEY_LEN`].
    #[error("is {len} characters long; keys must have at least {MIN_KEY_LEN} (make one with: {HOW_TO_MAKE_ONE})")]
    TooShort { len: usize },
    /// Holds a space, a control character or a non-ASCII character (it must fit an HTTP header).
    #[error("must be printable ASCII without spaces (make one with: {HOW_TO_MAKE_ONE})")]
    NotPrintable,
    /// Contains one of [`PLACEHOLDER_PARTS`].
    #[error("contains {part:?}: it looks like an example key (make one with: {HOW_TO_MAKE_ONE})")]
    Placeholder { part: &'static str },
    /// Repeats one character more than [`MAX_REPEAT`] times in a row.
    #[error("repeats one character too often to be random (make one with: {HOW_TO_MAKE_ONE})")]
    Repetitive,
}

/// Checks a key against every rule above.
pub fn check_key(key: &str) -> Result<(), KeyError> {
    let len = key.chars().count();
    if len < MIN_KEY_LEN {
        return Err(KeyError::TooShort { len });
    }
    if !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(KeyError::NotPrintable);
    }
    let folded: String = key
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if let Some(part) = PLACEHOLDER_PARTS.iter().find(|p| folded.contains(*p)) {
        return Err(KeyError::Placeholder { part });
    }
    let mut run = 0;
    let mut last = None;
    for b in key.bytes() {
        run = if Some(b) == last { run + 1 } else { 1 };
        last = Some(b);
        if run > MAX_REPEAT {
            return Err(KeyError::Repetitive);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_pass() {
        assert_eq!(
            check_key("3f9c2a7b1e8d4c6a0b5f9e2d7c1a8b3e4f6d0c9a2b7e1f5d8c3a6b0e9f4d2c7a"),
            Ok(())
        );
        assert_eq!(check_key("test-key-0123456789abcdef0123456789"), Ok(()));
    }

    #[test]
    fn example_keys_are_refused_whatever_their_length() {
        assert_eq!(
            check_key("CHANGE-ME-use-openssl-rand-hex-32-to-make-one"),
            Err(KeyError::Placeholder { part: "changeme" })
        );
        assert_eq!(
            check_key("your_api_key_goes_here_0123456789abcdef"),
            Err(KeyError::Placeholder { part: "yourapikey" })
        );
        assert!(matches!(
            check_key("My-Super-Secret-Key-For-The-Relay-2024"),
            Err(KeyError::Placeholder { part: "secret" })
        ));
        assert_eq!(check_key(&"a".repeat(40)), Err(KeyError::Repetitive));
        assert_eq!(
            check_key("0123456789abcdef 0123456789abcdef"),
            Err(KeyError::NotPrintable)
        );
        assert_eq!(check_key("short"), Err(KeyError::TooShort { len: 5 }));
    }

    /// The shared vectors the plugin's PHP copy of these rules is tested with.
    #[test]
    fn the_rules_match_the_shared_key_vectors() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/protocol-vectors/keys.json"
        );
        let text = std::fs::read_to_string(path).expect("tests/protocol-vectors/keys.json");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["min_length"], MIN_KEY_LEN);
        assert_eq!(v["max_repeat"], MAX_REPEAT);
        let parts: Vec<&str> = v["placeholders"]
            .as_array()
            .expect("placeholders")
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        assert_eq!(parts, PLACEHOLDER_PARTS);
        for case in v["refused"].as_array().expect("refused") {
            let key = case["key"].as_str().expect("key");
            assert!(check_key(key).is_err(), "refused: {}", case["why"]);
        }
        for key in v["accepted"].as_array().expect("accepted") {
            let key = key.as_str().expect("key");
            assert_eq!(check_key(key), Ok(()), "accepted: {key}");
        }
    }

    #[test]
    fn messages_never_contain_the_key() {
        let key = "CHANGE-ME-use-openssl-rand-hex-32-to-make-one";
        let message = check_key(key).unwrap_err().to_string();
        assert!(!message.contains(key), "{message}");
        assert!(message.contains(HOW_TO_MAKE_ONE), "{message}");
    }
}
