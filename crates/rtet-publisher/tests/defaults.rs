//! The extension's settings are defined once, in `config::SETTINGS`; the
//! texts that must repeat them (the stub's docblock for IDEs, the packaged
//! `rtet.ini`) are checked against it here. `php/tests/api_test.php` checks
//! the stub's signatures against the built extension.

use rtet_publisher::config::{Kind, Setting, SETTINGS};

const STUB: &str = include_str!("../../../php/rtet.stub.php");
const INI: &str = include_str!("../../../packaging/rtet.ini");

fn written(s: &Setting) -> String {
    match s.kind {
        Kind::Text => format!("\"{}\"", s.default_text()),
        Kind::Int | Kind::Bool => s.default_text().to_owned(),
    }
}

/// The `rtet.*` directives a text names, with the value it gives each.
fn directives<'a>(lines: impl Iterator<Item = &'a str>, prefix: &str) -> Vec<(String, String)> {
    lines
        .filter_map(|l| l.strip_prefix(prefix))
        .filter(|l| l.starts_with("rtet."))
        .map(|l| {
            let (name, rest) = l.split_once(" = ").unwrap_or((l, ""));
            // The stub adds ": what it does" after the value.
            let value = match rest.split_once(": ") {
                Some((v, _)) => v,
                None => rest,
            };
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect()
}

fn want() -> Vec<(String, String)> {
    SETTINGS
        .iter()
        .map(|s| (s.name().to_owned(), written(s)))
        .collect()
}

#[test]
fn the_stub_lists_every_directive_with_its_default() {
    assert_eq!(directives(STUB.lines(), " * - "), want());
}

#[test]
fn the_packaged_ini_lists_every_directive_with_its_default() {
    assert_eq!(directives(INI.lines(), ";"), want());
}

#[test]
fn the_stubs_token_lifetime_is_the_protocols_default() {
    let ttl = rtet_protocol::limits::DEFAULT_TOKEN_TTL.as_secs();
    let param = "int $ttl = ";
    let at = STUB
        .find(param)
        .expect("the stub declares rtet_sign_token()'s $ttl with a default");
    let default: String = STUB[at + param.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert_eq!(
        default,
        ttl.to_string(),
        "rtet_sign_token()'s $ttl defaults to {ttl}"
    );
}

#[test]
fn every_option_is_a_directive_and_applies_its_default() {
    let mut cfg = rtet_publisher::Config::new("ws://127.0.0.1:1", "k");
    for s in SETTINGS.iter().filter(|s| s.is_option()) {
        assert!(s.name().starts_with("rtet."), "{}", s.name());
        cfg.set(s.option(), s.default_text())
            .unwrap_or_else(|e| panic!("{}: {e}", s.name()));
    }
    assert_eq!(cfg, rtet_publisher::Config::new("ws://127.0.0.1:1", "k"));
}
