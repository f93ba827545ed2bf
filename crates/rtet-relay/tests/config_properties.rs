//! Property tests of the relay's configuration decoder: a TOML file is
//! outside input (an operator's typo, a file another tool wrote). Whatever it
//! holds, loading it must end in a configuration the relay can run with or in
//! a `ConfigError` that says why, never in a panic, and never in a zero limit
//! or an unusable key slipping through.
//!
//! The suite runs 64 cases per property; `PROPTEST_CASES=100000 cargo test
//! -p rtet-relay --release --test config_properties` is the long run.

use std::io::Write;

use proptest::prelude::*;
use rtet_relay::config::Settings;
use rtet_relay::Config;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Loads `text` the way `--config FILE` does.
fn load(text: &str) -> Result<Config, rtet_relay::config::ConfigError> {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(text.as_bytes()).expect("writing it");
    let settings = Settings::from_file(file.path())?;
    Config::resolve(Settings::default(), Some(settings))
}

/// A TOML value for any setting: numbers at and beyond the edges, durations
/// good and bad, strings, lists, and the wrong types.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("9223372036854775807".to_owned()),
        (1u64..100_000).prop_map(|n| n.to_string()),
        Just("\"0s\"".to_owned()),
        Just("\"10s\"".to_owned()),
        Just("\"99999999999d\"".to_owned()),
        "[a-z0-9 ]{0,8}".prop_map(|s| format!("{s:?}")),
        Just("[]".to_owned()),
        Just("[\"public\", \"\"]".to_owned()),
        Just("true".to_owned()),
        Just("1.5".to_owned()),
    ]
}

const VALID_KEY: &str = "k3J9qXv2Lm8Pz4Rt6Wy1Bn5Cd7Fg0Hs2";

proptest! {
    #![proptest_config(config())]

    /// Any text at all: refused with an error or accepted, never a panic.
    #[test]
    fn any_file_text_loads_or_is_refused(text in any::<String>()) {
        let _ = load(&text);
    }

    /// Known settings with any values: what is accepted satisfies the
    /// relay's own rules (every limit positive, the key usable).
    #[test]
    fn accepted_settings_are_ones_the_relay_can_run_with(
        picks in proptest::collection::vec((0usize..64, value()), 0..12),
    ) {
        let names: Vec<&str> = Settings::defaults().iter().map(|(n, _)| *n).collect();
        let mut text = format!("api_keys = [{VALID_KEY:?}]\n");
        let mut seen = std::collections::HashSet::new();
        for (i, v) in &picks {
            let name = names[i % names.len()];
            if seen.insert(name) {
                text.push_str(&format!("{name} = {v}\n"));
            }
        }
        if let Ok(config) = load(&text) {
            prop_assert!(config.validate().is_ok(), "accepted but invalid:\n{text}");
            let l = &config.limits;
            prop_assert!(l.max_frame_bytes > 0 && l.max_token_bytes > 0, "{text}");
            prop_assert!(l.connections_per_ip > 0 && config.max_connections > 0, "{text}");
            prop_assert!(config.max_history_bytes > 0 && config.max_dedupe_entries > 0, "{text}");
            prop_assert!(!l.ping_interval.is_zero() && !l.dead_peer_timeout.is_zero(), "{text}");
            prop_assert!(l.max_subscriptions > 0 && !l.first_frame_timeout.is_zero(), "{text}");
            prop_assert_eq!(config.api_keys.clone(), vec![VALID_KEY.to_owned()]);
        }
    }

    /// A key from the file is held to the key rules whatever it is.
    #[test]
    fn keys_from_a_file_follow_the_key_rules(key in any::<String>()) {
        let text = format!("api_keys = [{}]\n", toml_string(&key));
        if load(&text).is_ok() {
            prop_assert!(rtet_protocol::keys::check_key(&key).is_ok(), "accepted key {key:?}");
        }
    }
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
