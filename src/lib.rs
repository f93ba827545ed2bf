//! `rtet.so`: the PHP extension. Thin glue between PHP and the publisher
//! core (`crates/rtet-publisher`): it validates, turns PHP values into JSON
//! and owned Rust data, and hands them over. Nothing Zend-owned leaves a call.
//!
//! # Layout
//!
//! - this file: the PHP functions, the module (startup, shutdown, phpinfo)
//!   and the process state (the pool of publishers, the configured relay).
//! - [`settings`]: php.ini directives and `rtet_configure()` options.
//! - [`json`]: PHP values to JSON through PHP's own `json_encode()`.
//! - [`errors`]: `Rtet\Exception` and its codes.
//! - [`call`]: calling a PHP function (`json_encode`) by name.
//!
//! # Lifecycle
//!
//! Module startup only registers directives, functions and the class: no
//! thread, no socket, so php-fpm's master forks clean workers. The first
//! `rtet_configure()`, `rtet_send_event()` or `rtet_flush()` in a process
//! starts that relay's publisher (claiming its spool). Request shutdown does
//! nothing that waits. Module shutdown (process end) gives each publisher
//! `rtet.shutdown_timeout_ms` for acks, then spools the rest.
#![deny(clippy::unwrap_used)]
#![cfg_attr(windows, feature(abi_vectorcall))]

pub mod call;
pub mod errors;
pub mod json;
pub mod settings;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ext_php_rs::boxed::ZBox;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendHashTable, Zval};
use ext_php_rs::zend::ModuleEntry;
use ext_php_rs::{info_table_end, info_table_header, info_table_row, info_table_start};
use rtet_protocol::limits::{MAX_CHANNELS_PER_PUBLISH, MIN_TOKEN_TTL};
use rtet_protocol::{validate_channel, validate_event, validate_id};
use rtet_publisher::{Config, Event, Pool, Publisher};

use errors::{Error, Result, RtetException};

/// The process's state. Only the PHP thread locks it, and never across a
/// call, so a forked child never finds it held.
struct State {
    /// One publisher per relay; a forked child replaces its parent's.
    pool: Option<Pool>,
    /// Set by `rtet_configure()`; overrides php.ini for the rest of the process.
    configured: Option<Config>,
    /// php.ini's config, read once per request when `rtet_configure()` was not called.
    ini_cache: Option<Option<Config>>,
}

static STATE: Mutex<State> = Mutex::new(State {
    pool: None,
    configured: None,
    ini_cache: None,
});

fn state() -> MutexGuard<'static, State> {
    rtet_protocol::sync::lock(&STATE)
}

impl State {
    /// The relay this process sends to: `rtet_configure()`'s, else php.ini's.
    fn config(&mut self) -> Option<Config> {
        if let Some(c) = &self.configured {
            return Some(c.clone());
        }
        self.ini_cache
            .get_or_insert_with(settings::ini_config)
            .clone()
    }

    fn pool(&mut self) -> &mut Pool {
        Pool::current(&mut self.pool)
    }

    /// The started publisher for the current relay.
    fn publisher(&mut self) -> Result<&Publisher> {
        let cfg = self.config().ok_or_else(Error::not_configured)?;
        let pool = self.pool();
        if pool.get(&cfg).is_none() {
            let (_, warnings) = pool.get_or_start(&cfg)?;
            for w in warnings {
                ext_php_rs::error::php_error(&ext_php_rs::flags::ErrorType::Warning, &w);
            }
        }
        pool.get(&cfg)
            .ok_or_else(|| Error::internal("the publisher vanished"))
    }
}

extern "C" {
    /// PHP's own logger, what `error_log($message)` calls: the `error_log`
    /// file or syslog when set, else the SAPI's log (stderr for the CLI,
    /// php-fpm's log). It needs no running script, so it also serves at
    /// request and module shutdown. Not in ext-php-rs's bindings.
    fn php_log_err_with_severity(message: *const std::ffi::c_char, syslog_type: std::ffi::c_int);
}

/// `LOG_NOTICE`, the severity `error_log()` uses.
const LOG_NOTICE: std::ffi::c_int = 5;

/// Writes one line to PHP's error log.
fn php_log(line: &str) {
    if let Ok(c) = std::ffi::CString::new(line.replace('\0', "")) {
        // SAFETY: a valid NUL-terminated string that PHP only reads during the call.
        unsafe { php_log_err_with_severity(c.as_ptr(), LOG_NOTICE) };
    }
}

/// Writes failures the senders recorded (nacks, spool trouble) to PHP's error log.
fn log_failures(st: &mut State) {
    let lines: Vec<String> = match &st.pool {
        Some(pool) if pool.belongs_to_this_process() => pool
            .publishers()
            .iter()
            .flat_map(|p| p.take_log())
            .collect(),
        _ => return,
    };
    for line in lines {
        php_log(&line);
    }
}

fn string_arg(name: &str, v: &Zval) -> Result<String> {
    match v.zend_str() {
        Some(s) => std::str::from_utf8(s.as_bytes())
            .map(str::to_owned)
            .map_err(|_| Error::name(format!("{name} is not valid UTF-8"))),
        None => Err(Error::arg(format!("{name} must be a string"))),
    }
}

/// The channels argument: one name or a list of names, checked, duplicates dropped.
fn channels_arg(v: Option<&Zval>) -> Result<Vec<String>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(vec!["public".to_owned()]);
    };
    let mut out: Vec<String> = Vec::new();
    if let Some(arr) = v.array() {
        for (_, c) in arr {
            let c = string_arg("a channel", c)?;
            validate_channel(&c).map_err(|e| Error::name(e.to_string()))?;
            if !out.contains(&c) {
                out.push(c);
            }
            if out.len() > MAX_CHANNELS_PER_PUBLISH {
                return Err(Error::arg(format!(
                    "an event may go to at most {MAX_CHANNELS_PER_PUBLISH} channels"
                )));
            }
        }
        if out.is_empty() {
            return Err(Error::name("the channel list is empty"));
        }
    } else {
        let c = string_arg("the channel", v)?;
        validate_channel(&c).map_err(|e| Error::name(e.to_string()))?;
        out.push(c);
    }
    Ok(out)
}

fn send_event(
    event: &Zval,
    data: Option<&Zval>,
    channels: Option<&Zval>,
    options: Option<&ZendHashTable>,
) -> Result<String> {
    let event = string_arg("the event name", event)?;
    validate_event(&event).map_err(|e| Error::name(e.to_string()))?;
    let channels = channels_arg(channels)?;
    let mut id = None;
    let mut ts = None;
    if let Some(options) = options {
        for (k, v) in options {
            match k.to_string().as_str() {
                "id" => {
                    let s = string_arg("option id", v)?;
                    validate_id(&s).map_err(|e| Error::name(e.to_string()))?;
                    id = Some(s);
                }
                "ts" => {
                    let t = v.long().filter(|t| *t >= 0).ok_or_else(|| {
                        Error::arg("option ts must be a non-negative int (ms since the epoch)")
                    })?;
                    ts = Some(t as u64);
                }
                other => {
                    return Err(Error::arg(format!(
                        "unknown option {other:?}; known: id, ts"
                    )))
                }
            }
        }
    }
    let id = id.unwrap_or_else(rtet_protocol::new_event_id);
    let data = json::encode(data)?;
    let mut st = state();
    let max = match &st.configured {
        Some(c) => c.max_frame_bytes,
        None => st
            .config()
            .map(|c| c.max_frame_bytes)
            .ok_or_else(Error::not_configured)?,
    };
    let mut events = Vec::with_capacity(channels.len());
    for channel in channels {
        let frame = rtet_publisher::publish_frame(&id, &channel, &event, &data, ts);
        if frame.len() > max {
            return Err(Error::too_large(format!(
                "the event is {} bytes as a frame; the relay's limit is {max} bytes",
                frame.len()
            )));
        }
        events.push(Event::new(id.clone(), channel, frame));
    }
    st.publisher()?.enqueue(events);
    log_failures(&mut st);
    Ok(id)
}

/// Sets the relay (and options) for the rest of this process and starts its
/// publisher, which delivers any spool earlier processes left for it.
#[php_function]
pub fn rtet_configure(
    relay_url: &str,
    api_key: &str,
    options: Option<&ZendHashTable>,
) -> PhpResult<()> {
    let cfg = settings::from_call(relay_url, api_key, options)?;
    let mut st = state();
    st.configured = Some(cfg);
    st.publisher()?;
    log_failures(&mut st);
    Ok(())
}

/// Validates, encodes and enqueues one event; returns its id. Never waits on the network.
#[php_function]
pub fn rtet_send_event(
    event: &Zval,
    data: Option<&Zval>,
    channels: Option<&Zval>,
    options: Option<&ZendHashTable>,
) -> PhpResult<String> {
    Ok(send_event(event, data, channels, options)?)
}

/// Waits up to `$timeout` seconds until every event of this process's relays is acked.
#[php_function]
#[php(defaults(timeout = 1.0))]
pub fn rtet_flush(timeout: f64) -> PhpResult<bool> {
    if !(timeout.is_finite() && timeout >= 0.0) {
        return Err(Error::arg("timeout must be a non-negative number of seconds").into());
    }
    let timeout = Duration::from_secs_f64(timeout.min(86_400.0));
    let mut st = state();
    if st.config().is_some() {
        // Starting the publisher claims the spool, which this flush then waits for.
        st.publisher()?;
    }
    let ok = st.pool().flush(timeout);
    log_failures(&mut st);
    Ok(ok)
}

/// A subscriber token (HS256 JWT) for `$channels`, signed with the configured key.
#[php_function]
#[php(defaults(subject = "".to_string(), ttl = 300))]
pub fn rtet_sign_token(
    channels: &ZendHashTable,
    subject: String,
    ttl: i64,
    presence: Option<&ZendHashTable>,
) -> PhpResult<String> {
    Ok(sign_token(channels, subject, ttl, presence)?)
}

fn sign_token(
    channels: &ZendHashTable,
    subject: String,
    ttl: i64,
    presence: Option<&ZendHashTable>,
) -> Result<String> {
    let min = MIN_TOKEN_TTL.as_secs();
    if ttl < 0 || ttl.unsigned_abs() < min {
        return Err(Error::arg(format!("ttl must be at least {min} second(s)")));
    }
    let list = channel_list("a channel", channels)?;
    let key = state()
        .config()
        .map(|c| c.api_key)
        .ok_or_else(Error::not_configured)?;
    let mut claims =
        rtet_protocol::Claims::new(subject, list, Duration::from_secs(ttl.unsigned_abs()));
    if let Some(presence) = presence {
        presence_claims(presence, &mut claims)?;
    }
    let token = rtet_protocol::token::sign(key.as_bytes(), &claims)
        .map_err(|e| Error::internal(e.to_string()))?;
    let max = rtet_protocol::Limits::default().max_token_bytes;
    if token.len() > max {
        return Err(Error::too_large(format!(
            "the token is {} bytes; the relay accepts at most {max}: grant fewer channels",
            token.len()
        )));
    }
    Ok(token)
}

/// A PHP list of channel names, each checked.
fn channel_list(what: &str, list: &ZendHashTable) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (_, c) in list {
        let c = string_arg(what, c)?;
        validate_channel(&c).map_err(|e| Error::name(e.to_string()))?;
        out.push(c);
    }
    Ok(out)
}

/// The presence claims of `rtet_sign_token()`'s fourth argument:
/// `['presence' => [channels], 'presence_counts' => [channels],
/// 'info' => ['name' => ..., 'avatar' => ...]]`, checked by the relay's own
/// rule ([`rtet_protocol::Claims::check_presence`]) before anything is signed,
/// so a token the relay would refuse is never made.
fn presence_claims(options: &ZendHashTable, claims: &mut rtet_protocol::Claims) -> Result<()> {
    for (k, v) in options {
        let key = k.to_string();
        let list = || {
            v.array()
                .ok_or_else(|| Error::arg(format!("presence option {key} must be an array")))
        };
        match key.as_str() {
            "presence" => claims.presence = channel_list("a presence channel", list()?)?,
            "presence_counts" => {
                claims.presence_counts = channel_list("a presence_counts channel", list()?)?
            }
            "info" => {
                let mut info = rtet_protocol::token::MemberInfo::default();
                for (field, value) in list()? {
                    match field.to_string().as_str() {
                        "name" => info.name = string_arg("info name", value)?,
                        "avatar" => info.avatar = Some(string_arg("info avatar", value)?),
                        other => {
                            return Err(Error::arg(format!(
                                "unknown info field {other:?}: only name and avatar"
                            )))
                        }
                    }
                }
                claims.info = Some(info);
            }
            other => {
                return Err(Error::arg(format!(
                    "unknown presence option {other:?}: presence, presence_counts or info"
                )))
            }
        }
    }
    claims.check_presence().map_err(Error::arg)
}

/// Counters of the current relay's publisher.
#[php_function]
pub fn rtet_stats() -> PhpResult<ZBox<ZendHashTable>> {
    let mut st = state();
    let cfg = st.config();
    let started = cfg
        .as_ref()
        .and_then(|c| st.pool().get(c))
        .map(Publisher::stats);
    let s = started.clone().unwrap_or_default();
    let mut ht = ZendHashTable::new();
    let put = |ht: &mut ZendHashTable, k: &str, v: u64| {
        let _ = ht.insert(k, i64::try_from(v).unwrap_or(i64::MAX));
    };
    let _ = ht.insert("connected", s.connected);
    put(&mut ht, "queued", s.queued);
    put(&mut ht, "sent", s.sent);
    put(&mut ht, "acked", s.acked);
    put(&mut ht, "nacked", s.nacked);
    put(&mut ht, "spooled", s.spooled);
    put(&mut ht, "reconnects", s.reconnects);
    match &s.last_error {
        Some(e) => {
            let _ = ht.insert("last_error", e.as_str());
        }
        None => {
            let _ = ht.insert("last_error", ());
        }
    }
    put(&mut ht, "enqueued", s.enqueued);
    put(&mut ht, "rate_limited", s.rate_limited);
    put(&mut ht, "spool_claimed", s.spool_claimed);
    put(&mut ht, "spool_corrupt", s.spool_corrupt);
    put(&mut ht, "connects", s.connects);
    let _ = ht.insert("started", started.is_some());
    match &cfg {
        Some(c) => {
            let _ = ht.insert("relay_url", c.relay_url.as_str());
        }
        None => {
            let _ = ht.insert("relay_url", ());
        }
    }
    let _ = ht.insert("pid", i64::from(std::process::id()));
    log_failures(&mut st);
    Ok(ht)
}

/// What `build.rs` recorded: the commit and the PHP this `rtet.so` was built for.
const BUILD_COMMIT: &str = env!("RTET_BUILD_COMMIT");
const BUILD_PHP_VERSION: &str = env!("RTET_BUILD_PHP_VERSION");
const BUILD_PHP_API: &str = env!("RTET_BUILD_PHP_API");

/// The extension's version and what it was built from and for, e.g.
/// `0.1.0 (commit 0a3ed57c1a2b; PHP 8.2.29, API 20220829)`. It starts with
/// `phpversion('rtet')`.
#[php_function]
pub fn rtet_version() -> String {
    format!(
        "{} (commit {BUILD_COMMIT}; PHP {BUILD_PHP_VERSION}, API {BUILD_PHP_API})",
        env!("CARGO_PKG_VERSION")
    )
}

extern "C" fn startup(_ty: i32, module_number: i32) -> i32 {
    IniEntryDef_register(module_number);
    0
}

#[allow(non_snake_case)]
fn IniEntryDef_register(module_number: i32) {
    ext_php_rs::zend::IniEntryDef::register(settings::INI_ENTRIES.as_slice(), module_number);
}

/// Request end: log the failures recorded so far, forget php.ini's config
/// (it may change between requests). Never waits.
extern "C" fn request_shutdown(_ty: i32, _module_number: i32) -> i32 {
    let _ = catch_unwind(|| {
        if let Ok(mut st) = STATE.try_lock() {
            log_failures(&mut st);
            st.ini_cache = None;
        }
    });
    0
}

/// Process end: a bounded wait for acks, then the rest goes to the spool;
/// failures recorded until then (nacks during that wait) are logged.
extern "C" fn module_shutdown(_ty: i32, _module_number: i32) -> i32 {
    let _ = catch_unwind(|| {
        let mut st = state();
        let pool = Pool::current(&mut st.pool);
        for report in pool.shutdown() {
            for line in &report.log {
                php_log(line);
            }
        }
    });
    0
}

/// The phpinfo() section: version, relay URL, connection state, counters. Never the key.
extern "C" fn module_info(_module: *mut ModuleEntry) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let mut st = state();
        let cfg = st.config();
        let stats = cfg
            .as_ref()
            .and_then(|c| st.pool().get(c))
            .map(Publisher::stats);
        info_table_start!();
        info_table_header!("rtet support", "enabled");
        info_table_row!("version", env!("CARGO_PKG_VERSION"));
        info_table_row!("built from commit", BUILD_COMMIT);
        info_table_row!("built for PHP", BUILD_PHP_VERSION);
        info_table_row!("built for PHP API", BUILD_PHP_API);
        info_table_row!(
            "relay URL",
            cfg.as_ref()
                .map(|c| c.relay_url.replace('\0', ""))
                .unwrap_or_else(|| "(not configured)".into())
        );
        info_table_row!(
            "API key",
            if cfg.is_some() {
                "set (hidden)"
            } else {
                "not set"
            }
        );
        let state_text = match &stats {
            None => "not started".to_owned(),
            Some(s) if s.connected => "connected".to_owned(),
            Some(_) => "disconnected".to_owned(),
        };
        info_table_row!("connection", state_text);
        if let Some(s) = stats {
            for (k, v) in [
                ("queued", s.queued),
                ("sent", s.sent),
                ("acked", s.acked),
                ("nacked", s.nacked),
                ("spooled", s.spooled),
                ("reconnects", s.reconnects),
            ] {
                info_table_row!(k, v.to_string());
            }
            if let Some(e) = s.last_error {
                info_table_row!("last error", e.replace('\0', ""));
            }
        }
        info_table_end!();
    }));
}

#[php_module]
#[php(startup = startup)]
pub fn get_module(module: ModuleBuilder) -> ModuleBuilder {
    module
        .class::<RtetException>()
        .function(wrap_function!(rtet_configure))
        .function(wrap_function!(rtet_send_event))
        .function(wrap_function!(rtet_flush))
        .function(wrap_function!(rtet_sign_token))
        .function(wrap_function!(rtet_stats))
        .function(wrap_function!(rtet_version))
        .request_shutdown_function(request_shutdown)
        .shutdown_function(module_shutdown)
        .info_function(module_info)
}
