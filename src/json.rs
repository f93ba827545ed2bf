//! PHP values to JSON, by PHP's own `json_encode()`.
//!
//! Why not a Rust serializer: the contract is "the JSON `json_encode()`
//! makes of the same value", and PHP's encoder is the only thing that is
//! that by construction: key order, list-or-map detection of arrays,
//! `JsonSerializable`, which properties of an object are visible,
//! `serialize_precision` for floats, enums, and its error cases (NAN/INF,
//! resources, invalid UTF-8, recursion, depth). A re-implementation would
//! drift on one of those. The call costs well under a microsecond for small
//! values. Flags: `JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE` (smaller
//! frames; the same value after decoding as `json_encode($v)`), and no
//! `JSON_THROW_ON_ERROR`, so that a failure is read from
//! `json_last_error()` and thrown as `Rtet\Exception` while an exception
//! from the caller's own `jsonSerialize()` propagates unchanged.

use ext_php_rs::types::Zval;
use ext_php_rs::zend::ExecutorGlobals;

use crate::call::call;
use crate::errors::{Error, Result};

/// `JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE`.
pub const FLAGS: i64 = 64 | 256;

/// Encodes `value` as `json_encode($value, FLAGS)` does.
pub fn encode(value: Option<&Zval>) -> Result<String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok("null".to_owned());
    };
    let ret = call("json_encode", &[value, &FLAGS])?;
    if ExecutorGlobals::has_exception() {
        return Err(Error::Pending);
    }
    if let Some(s) = ret.zend_str() {
        return Ok(String::from_utf8_lossy(s.as_bytes()).into_owned());
    }
    let code = call("json_last_error", &[])
        .ok()
        .and_then(|z| z.long())
        .unwrap_or(0);
    let msg = call("json_last_error_msg", &[])
        .ok()
        .and_then(|z| z.string())
        .unwrap_or_else(|| "unknown error".to_owned());
    let what = match code {
        1 => "it is nested too deeply",
        5 | 10 => "it contains a string that is not UTF-8",
        6 => "it contains itself (recursion)",
        7 => "it contains NAN or INF",
        8 => "it contains a value JSON has no type for (a resource or closure)",
        9 => "it has a property name JSON cannot hold",
        _ => "json_encode() refused it",
    };
    Err(Error::data(format!(
        "data cannot be encoded as JSON: {what} ({msg}, JSON error {code})"
    )))
}
