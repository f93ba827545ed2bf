//! The one exception class of the extension, `Rtet\Exception`, and its codes.
//!
//! Every error a PHP caller can cause is thrown as `Rtet\Exception` with one
//! of the codes below (also class constants, e.g. `Rtet\Exception::INVALID_NAME`).
//! An exception thrown by the caller's own `JsonSerializable::jsonSerialize()`
//! propagates unchanged.

use ext_php_rs::class::RegisteredClass;
use ext_php_rs::exception::PhpException;
use ext_php_rs::prelude::*;
use ext_php_rs::zend::ce;

/// `Rtet\Exception`: what the extension throws.
#[php_class]
#[php(name = "Rtet\\Exception")]
#[php(extends(ce = ce::exception, stub = "\\Exception"))]
#[derive(Default)]
pub struct RtetException;

#[php_impl]
impl RtetException {
    /// A bad event, channel or id name (see the protocol's name rules).
    pub const INVALID_NAME: i64 = 1;
    /// The data cannot be JSON: NAN or INF, a resource, invalid UTF-8, recursion, too deep.
    pub const INVALID_DATA: i64 = 2;
    /// The encoded event is over the relay's frame limit (64 KiB by default), or a token over 4 KiB.
    pub const TOO_LARGE: i64 = 3;
    /// No relay URL or API key: call `rtet_configure()` or set `rtet.relay_url` and `rtet.api_key`.
    pub const NOT_CONFIGURED: i64 = 4;
    /// A bad argument or option (URL, key, option name or value, timeout, ttl).
    pub const INVALID_ARGUMENT: i64 = 5;
    /// The background sender could not be started.
    pub const INTERNAL: i64 = 6;
}

/// An error on its way to PHP as `Rtet\Exception`, or a pending PHP exception.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Throw `Rtet\Exception` with this code and message.
    #[error("{1}")]
    Rtet(i64, String),
    /// A PHP exception is already pending (thrown by user code); let it propagate.
    #[error("a PHP exception is pending")]
    Pending,
}

impl Error {
    pub fn name(msg: impl Into<String>) -> Self {
        Error::Rtet(RtetException::INVALID_NAME, msg.into())
    }
    pub fn data(msg: impl Into<String>) -> Self {
        Error::Rtet(RtetException::INVALID_DATA, msg.into())
    }
    pub fn too_large(msg: impl Into<String>) -> Self {
        Error::Rtet(RtetException::TOO_LARGE, msg.into())
    }
    pub fn not_configured() -> Self {
        Error::Rtet(
            RtetException::NOT_CONFIGURED,
            "rtet is not configured: call rtet_configure() or set rtet.relay_url and rtet.api_key"
                .into(),
        )
    }
    pub fn arg(msg: impl Into<String>) -> Self {
        Error::Rtet(RtetException::INVALID_ARGUMENT, msg.into())
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Rtet(RtetException::INTERNAL, msg.into())
    }
}

impl From<Error> for PhpException {
    fn from(e: Error) -> Self {
        match e {
            Error::Rtet(code, msg) => PhpException::new(
                msg,
                i32::try_from(code).unwrap_or(0),
                RtetException::get_metadata().ce(),
            ),
            // `throw()` leaves an already pending exception alone, so this one is never seen.
            Error::Pending => PhpException::from_message("rtet: exception pending".into()),
        }
    }
}

impl From<rtet_publisher::Error> for Error {
    fn from(e: rtet_publisher::Error) -> Self {
        match e {
            rtet_publisher::Error::Config(m) => Error::arg(m),
            e @ (rtet_publisher::Error::Thread(_)
            | rtet_publisher::Error::Tls(_)
            | rtet_publisher::Error::Connect(_)
            | rtet_publisher::Error::CorruptSpool(_)) => Error::internal(e.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
