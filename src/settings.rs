//! php.ini directives and `rtet_configure()` options, turned into the
//! publisher core's [`Config`].
//!
//! | directive                 | default            | what                                              |
//! |---------------------------|--------------------|---------------------------------------------------|
//! | `rtet.relay_url`          | (empty)            | relay base URL: `ws://`, `wss://`, `http://`, `https://` |
//! | `rtet.api_key`            | (empty)            | publisher API key (never shown by phpinfo)        |
//! | `rtet.connect_timeout_ms` | 1000               | one connection attempt, TCP + TLS + upgrade       |
//! | `rtet.queue_limit`        | 10000              | events in memory before new ones go to the spool (while the relay is unreachable they go there at once) |
//! | `rtet.spool_dir`          | (empty: `$TMPDIR/rtet-spool`) | spool directory (0700, files 0600)     |
//! | `rtet.shutdown_timeout_ms`| 2000               | wait for acks at process end, then spool the rest |
//! | `rtet.ca_file`            | (empty)            | extra CA certificate (PEM) for `wss://`           |
//! | `rtet.verify_tls`         | 1                  | verify the relay's certificate and host name; 0 is insecure (no checks at all), for tests only |
//! | `rtet.max_frame_bytes`    | 65536              | the relay's frame limit; larger events are refused here |
//! | `rtet.reconnect_max_ms`   | 5000               | longest pause between reconnect attempts          |
//!
//! `rtet_configure($url, $key, $options)` takes the same settings as options
//! without the `rtet.` prefix (`connect_timeout_ms`, `queue_limit`, ...) and
//! overrides the directives for the rest of the process.

use std::path::PathBuf;
use std::time::Duration;

use ext_php_rs::flags::IniEntryPermission;
use ext_php_rs::types::{ZendHashTable, Zval};
use ext_php_rs::zend::{ExecutorGlobals, IniEntryDef, IniEntryDefs};
use rtet_publisher::Config;

use crate::errors::{Error, Result};

/// Every directive with its default.
pub static INI_ENTRIES: IniEntryDefs<11> = IniEntryDefs::new([
    IniEntryDef::new(c"rtet.relay_url", c"", IniEntryPermission::All),
    IniEntryDef::new(c"rtet.api_key", c"", IniEntryPermission::All),
    IniEntryDef::new(c"rtet.connect_timeout_ms", c"1000", IniEntryPermission::All),
    IniEntryDef::new(c"rtet.queue_limit", c"10000", IniEntryPermission::All),
    IniEntryDef::new(c"rtet.spool_dir", c"", IniEntryPermission::All),
    IniEntryDef::new(
        c"rtet.shutdown_timeout_ms",
        c"2000",
        IniEntryPermission::All,
    ),
    IniEntryDef::new(c"rtet.ca_file", c"", IniEntryPermission::All),
    IniEntryDef::new(c"rtet.verify_tls", c"1", IniEntryPermission::All),
    IniEntryDef::new(c"rtet.max_frame_bytes", c"65536", IniEntryPermission::All),
    IniEntryDef::new(c"rtet.reconnect_max_ms", c"5000", IniEntryPermission::All),
    IniEntryDef::end(),
]);

/// The current value of one directive (`None` when unset or not registered).
pub fn ini(name: &str) -> Option<String> {
    let eg = ExecutorGlobals::get();
    // SAFETY: `EG(ini_directives)` is valid for the life of a request; its
    // entries are `zend_ini_entry` pointers owned by the table.
    unsafe {
        let table = eg.ini_directives.as_ref()?;
        let zv = table.get(name)?;
        let entry = zv.ptr::<ext_php_rs::ffi::zend_ini_entry>()?.as_ref()?;
        let value = entry.value.as_ref()?;
        Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
    }
}

fn parse_bool(s: &str) -> bool {
    matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "1" | "on" | "yes" | "true"
    )
}

/// Applies one setting (by its option name) to `cfg`, from text.
fn apply(cfg: &mut Config, name: &str, value: &str) -> std::result::Result<(), String> {
    let int = |v: &str| -> std::result::Result<u64, String> {
        v.trim()
            .parse::<u64>()
            .map_err(|_| format!("{name} must be a non-negative integer, not {v:?}"))
    };
    match name {
        "connect_timeout_ms" => cfg.connect_timeout = Duration::from_millis(int(value)?.max(1)),
        "queue_limit" => {
            cfg.queue_limit = usize::try_from(int(value)?).map_err(|e| e.to_string())?;
            if cfg.queue_limit == 0 {
                return Err("queue_limit must be at least 1".into());
            }
        }
        "spool_dir" => {
            cfg.spool_dir = if value.is_empty() {
                rtet_publisher::config::default_spool_dir()
            } else {
                PathBuf::from(value)
            }
        }
        "shutdown_timeout_ms" => cfg.shutdown_timeout = Duration::from_millis(int(value)?),
        "ca_file" => cfg.ca_file = (!value.is_empty()).then(|| PathBuf::from(value)),
        "verify_tls" => cfg.verify_tls = parse_bool(value),
        "max_frame_bytes" => {
            cfg.max_frame_bytes = usize::try_from(int(value)?).map_err(|e| e.to_string())?
        }
        "reconnect_max_ms" => {
            cfg.reconnect_max = Duration::from_millis(int(value)?.max(1));
            cfg.reconnect_min = cfg.reconnect_min.min(cfg.reconnect_max);
        }
        other => return Err(format!("unknown option {other:?}")),
    }
    Ok(())
}

/// Option names `rtet_configure()` accepts (the directives without `rtet.`).
pub const OPTIONS: [&str; 8] = [
    "connect_timeout_ms",
    "queue_limit",
    "spool_dir",
    "shutdown_timeout_ms",
    "ca_file",
    "verify_tls",
    "max_frame_bytes",
    "reconnect_max_ms",
];

/// A config for `url` and `key` with the directives applied. A directive
/// with an unusable value keeps its default (php.ini is no place to throw).
pub fn from_ini(url: String, key: String) -> Config {
    let mut cfg = Config::new(url, key);
    for name in OPTIONS {
        if let Some(v) = ini(&format!("rtet.{name}")) {
            let _ = apply(&mut cfg, name, &v);
        }
    }
    cfg
}

/// The config that php.ini alone gives, if it names a relay and a key.
pub fn ini_config() -> Option<Config> {
    let url = ini("rtet.relay_url").unwrap_or_default();
    let key = ini("rtet.api_key").unwrap_or_default();
    if url.trim().is_empty() || key.is_empty() {
        return None;
    }
    Some(from_ini(url.trim().to_owned(), key))
}

fn option_text(name: &str, v: &Zval) -> Result<String> {
    if let Some(b) = v.bool() {
        return Ok(if b { "1".into() } else { "0".into() });
    }
    if let Some(i) = v.long() {
        if i < 0 {
            return Err(Error::arg(format!("option {name} must not be negative")));
        }
        return Ok(i.to_string());
    }
    if let Some(f) = v.double() {
        if !(f.is_finite() && f >= 0.0) {
            return Err(Error::arg(format!(
                "option {name} must be a non-negative number"
            )));
        }
        return Ok((f as u64).to_string());
    }
    if let Some(s) = v.str() {
        return Ok(s.to_owned());
    }
    if v.is_null() {
        return Ok(String::new());
    }
    Err(Error::arg(format!(
        "option {name} must be a string, an int or a bool"
    )))
}

/// The config `rtet_configure()` asks for: directives, then `options` over them.
pub fn from_call(url: &str, key: &str, options: Option<&ZendHashTable>) -> Result<Config> {
    let mut cfg = from_ini(url.trim().to_owned(), key.to_owned());
    if let Some(options) = options {
        for (k, v) in options {
            let name = k.to_string();
            if !OPTIONS.contains(&name.as_str()) {
                return Err(Error::arg(format!(
                    "unknown option {name:?}; known: {}",
                    OPTIONS.join(", ")
                )));
            }
            let text = option_text(&name, v)?;
            apply(&mut cfg, &name, &text).map_err(Error::arg)?;
        }
    }
    cfg.validate()?;
    Ok(cfg)
}
