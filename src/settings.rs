//! php.ini directives and `rtet_configure()` options, turned into the
//! publisher core's [`Config`].
//!
//! The directives, their defaults and what each does are defined once, in
//! [`rtet_publisher::config::SETTINGS`]; this module registers them with PHP
//! and reads them. `rtet_configure($url, $key, $options)` takes the same
//! settings as options without the `rtet.` prefix (`connect_timeout_ms`,
//! `queue_limit`, ...) and overrides the directives for the rest of the process.

use ext_php_rs::flags::IniEntryPermission;
use ext_php_rs::types::{ZendHashTable, Zval};
use ext_php_rs::zend::{ExecutorGlobals, IniEntryDef, IniEntryDefs};
use rtet_publisher::config::{self, SETTINGS};
use rtet_publisher::Config;

use crate::errors::{Error, Result};

/// Every directive with its default, ended by PHP's terminator entry.
pub static INI_ENTRIES: IniEntryDefs<{ SETTINGS.len() + 1 }> = IniEntryDefs::new(ini_entries());

const fn ini_entries() -> [IniEntryDef; SETTINGS.len() + 1] {
    let mut out = [const { IniEntryDef::end() }; SETTINGS.len() + 1];
    let mut i = 0;
    while i < SETTINGS.len() {
        out[i] = IniEntryDef::new(
            SETTINGS[i].ini,
            SETTINGS[i].default,
            IniEntryPermission::All,
        );
        i += 1;
    }
    out
}

/// Hands the current value of one directive to `read` (`None`, and `read`
/// not called, when unset or not registered). The value is PHP's own string,
/// borrowed, not copied: `rtet_configure()` reads every directive on each
/// call, which a site makes on every request that publishes.
fn with_ini<T>(name: &str, read: impl FnOnce(&str) -> T) -> Option<T> {
    let eg = ExecutorGlobals::get();
    // SAFETY: `EG(ini_directives)` is valid for the life of a request; its
    // entries are `zend_ini_entry` pointers owned by the table, and the value
    // is only borrowed for the call to `read`.
    unsafe {
        let table = eg.ini_directives.as_ref()?;
        let zv = table.get(name)?;
        let entry = zv.ptr::<ext_php_rs::ffi::zend_ini_entry>()?.as_ref()?;
        let value = entry.value.as_ref()?;
        Some(read(&String::from_utf8_lossy(value.as_bytes())))
    }
}

/// The current value of one directive (`None` when unset or not registered).
pub fn ini(name: &str) -> Option<String> {
    with_ini(name, str::to_owned)
}

/// A config for `url` and `key` with the directives applied. A directive
/// with an unusable value keeps its default (php.ini is no place to throw).
pub fn from_ini(url: String, key: String) -> Config {
    let mut cfg = Config::new(url, key);
    for setting in SETTINGS.iter().filter(|s| s.is_option()) {
        // An unusable value keeps the default; see the doc above.
        with_ini(setting.name(), |v| cfg.set(setting.option(), v));
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
            if !config::options().any(|o| o == name) {
                return Err(Error::arg(format!(
                    "unknown option {name:?}; known: {}",
                    config::options().collect::<Vec<_>>().join(", ")
                )));
            }
            let text = option_text(&name, v)?;
            cfg.set(&name, &text)?;
        }
    }
    cfg.validate()?;
    Ok(cfg)
}
