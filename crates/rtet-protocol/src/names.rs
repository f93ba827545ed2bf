//! Name rules (protocol: "Names"). Each check returns an error whose message
//! says what was wrong, so that it can go straight into an `error`/`nack` frame
//! or a PHP exception.

use thiserror::Error;

/// Longest channel name.
pub const CHANNEL_MAX: usize = 128;
/// Longest event name.
pub const EVENT_MAX: usize = 64;
/// Longest event id.
pub const ID_MAX: usize = 64;

/// A name that breaks its rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name is empty; the caller must supply one.
    #[error("{kind} name is empty")]
    Empty { kind: &'static str },
    /// The name is longer than its rule allows; the caller must shorten it.
    #[error("{kind} name is {len} characters long; the limit is {max}")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    /// The name contains a character outside its rule's alphabet.
    #[error("{kind} name {name:?} contains {ch:?}; allowed are {allowed}")]
    BadChar {
        kind: &'static str,
        name: String,
        ch: char,
        allowed: &'static str,
    },
}

fn check(
    kind: &'static str,
    name: &str,
    max: usize,
    allowed: &'static str,
    extra: &[u8],
) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || (c.is_ascii() && extra.contains(&(*c as u8)))))
    {
        let shown: String = name.chars().take(max).collect();
        return Err(NameError::BadChar {
            kind,
            name: shown,
            ch,
            allowed,
        });
    }
    // Only ASCII is left, so bytes are characters.
    if name.len() > max {
        return Err(NameError::TooLong {
            kind,
            len: name.len(),
            max,
        });
    }
    Ok(())
}

/// Channel: 1–128 characters of `[A-Za-z0-9_.:@-]`.
pub fn validate_channel(name: &str) -> Result<(), NameError> {
    check(
        "channel",
        name,
        CHANNEL_MAX,
        "A-Z a-z 0-9 _ . : @ -",
        b"_.:@-",
    )
}

/// Event: 1–64 characters of `[A-Za-z0-9_.:-]`.
pub fn validate_event(name: &str) -> Result<(), NameError> {
    check("event", name, EVENT_MAX, "A-Z a-z 0-9 _ . : -", b"_.:-")
}

/// Event id: 1–64 characters of `[A-Za-z0-9_.:-]`.
pub fn validate_id(name: &str) -> Result<(), NameError> {
    check("id", name, ID_MAX, "A-Z a-z 0-9 _ . : -", b"_.:-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_examples() {
        for c in ["public", "user.42", "role.administrator", "a@b:c-d_e"] {
            assert_eq!(validate_channel(c), Ok(()), "{c}");
        }
        for e in ["post_published", "woo.order_paid", "a:b-c"] {
            assert_eq!(validate_event(e), Ok(()), "{e}");
        }
        assert_eq!(validate_id("01JD5Q8ZK3T0000000000000000"), Ok(()));
    }

    #[test]
    fn enforces_length_limits_exactly() {
        assert_eq!(validate_channel(&"a".repeat(128)), Ok(()));
        assert!(matches!(
            validate_channel(&"a".repeat(129)),
            Err(NameError::TooLong {
                len: 129,
                max: 128,
                ..
            })
        ));
        assert_eq!(validate_event(&"a".repeat(64)), Ok(()));
        assert!(validate_event(&"a".repeat(65)).is_err());
        assert!(validate_id(&"a".repeat(65)).is_err());
        assert_eq!(
            validate_channel(""),
            Err(NameError::Empty { kind: "channel" })
        );
    }

    #[test]
    fn refuses_characters_outside_the_alphabet() {
        assert!(validate_event("user@x").is_err(), "@ is for channels only");
        assert!(validate_channel("user@x").is_ok());
        for bad in ["a b", "a/b", "é", "a\0", "a*", "a\n"] {
            let err = validate_channel(bad).unwrap_err();
            assert!(err.to_string().contains("contains"), "{err}");
        }
    }
}
