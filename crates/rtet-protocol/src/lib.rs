//! The rtet wire protocol (see `docs/protocol.md`), shared by the relay, the
//! publisher core and the PHP extension so they cannot drift apart.
//!
//! # Layout
//!
//! - [`names`]: the rules for channel, event and id names.
//! - [`frames`]: every JSON frame of the protocol, parsed and encoded with serde.
//! - [`keys`]: what makes an API key usable (length, no example keys).
//! - [`limits`]: the default limits from the protocol's table, in one struct.
//! - [`token`]: HS256 subscriber tokens (JWT): signing and checking.
//! - [`close`]: WebSocket close codes the relay uses.
//! - [`endpoints`]: the relay URL a site owner configures, and every endpoint URL derived from it.
//! - [`new_event_id`]: the event ids publishers make (ULIDs).
//! - [`clock`], [`sync`]: the epoch clock and the poison-tolerant lock every
//!   crate of the workspace shares.
//!
//! `tests/protocol-vectors/` at the repository root holds the same rules as
//! data (names, limits, URLs, tokens, frames, ids); `tests/vectors.rs` checks
//! them against this crate, and the plugin's PHP and the browser client's JS
//! are tested against the same files.
//!
//! Nothing here does I/O; everything is testable with plain strings.

pub mod clock;
pub mod close;
pub mod endpoints;
pub mod frames;
pub mod keys;
pub mod limits;
pub mod names;
pub mod sync;
pub mod token;

pub use endpoints::{RelayUrl, RelayUrlError};
pub use frames::{ClientFrame, ErrorCode, FrameError, Member, PublishFrame, ServerFrame, Since};
pub use limits::Limits;
pub use names::{validate_channel, validate_event, validate_id, NameError};
pub use token::{Claims, MemberInfo, TokenError};

/// Makes a new event id: a ULID, which sorts by creation time and fits the id rule.
///
/// The 80 random bits come from a generator seeded from the OS once per
/// thread and process. A forked child (a php-fpm worker, `pcntl_fork()`)
/// inherits its parent's generator state, so it would make the very ids its
/// parent makes, and the relay would drop the child's events as duplicates;
/// a changed pid therefore means a fresh seed. (`rand` 0.9's thread generator,
/// which `Ulid::new()` uses, no longer reseeds after a fork by itself.)
pub fn new_event_id() -> String {
    new_event_id_for(std::process::id())
}

/// The format of the ids [`new_event_id`] makes, as a regular expression: a
/// ULID in Crockford's base32 (upper case, no I, L, O, U), 26 characters,
/// the first at most `7` (48 bits of milliseconds). PHP's fallback id maker
/// follows it too.
pub const EVENT_ID_PATTERN: &str = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$";

/// Whether `id` has the format of [`EVENT_ID_PATTERN`].
pub fn is_event_id(id: &str) -> bool {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let b = id.as_bytes();
    b.len() == 26 && (b'0'..=b'7').contains(&b[0]) && b.iter().all(|c| ALPHABET.contains(c))
}

thread_local! {
    static ID_RNG: std::cell::RefCell<Option<(u32, rand::rngs::StdRng)>> =
        const { std::cell::RefCell::new(None) };
}

fn new_event_id_for(pid: u32) -> String {
    use rand::{Rng, SeedableRng};
    let ms = clock::unix_ms();
    let random = ID_RNG.with_borrow_mut(|slot| {
        let rng = match slot {
            Some((seeded_in, rng)) if *seeded_in == pid => rng,
            _ => &mut slot.insert((pid, rand::rngs::StdRng::from_os_rng())).1,
        };
        rng.random::<u128>()
    });
    ulid::Ulid::from_parts(ms, random).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_fit_the_id_rule_and_sort_by_time() {
        let a = new_event_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_event_id();
        assert!(
            validate_id(&a).is_ok() && validate_id(&b).is_ok(),
            "{a} {b}"
        );
        assert!(is_event_id(&a) && is_event_id(&b), "{a} {b}");
        assert!(a < b, "{a} then {b}");
    }

    #[test]
    fn a_new_process_gets_a_fresh_generator_not_a_copy_of_the_old_one() {
        // Simulate what a fork leaves: the same thread-local state, another pid.
        // Copying a seeded generator (as fork does) repeats its sequence; the
        // pid check must replace it, so the ids of "before" and "after" differ
        // even when made in the same millisecond.
        let pid = std::process::id();
        let before: Vec<String> = (0..100).map(|_| new_event_id_for(pid)).collect();
        let saved = ID_RNG.with_borrow(|s| s.clone());
        let parent_next: Vec<String> = (0..100).map(|_| new_event_id_for(pid)).collect();
        ID_RNG.with_borrow_mut(|s| *s = saved);
        let child_next: Vec<String> = (0..100)
            .map(|_| new_event_id_for(pid.wrapping_add(1)))
            .collect();
        let random_part = |v: &[String]| v.iter().map(|s| s[10..].to_owned()).collect::<Vec<_>>();
        assert_ne!(random_part(&parent_next), random_part(&child_next));
        let all: std::collections::HashSet<_> = before
            .iter()
            .chain(&parent_next)
            .chain(&child_next)
            .collect();
        assert_eq!(all.len(), 300);
    }
}
