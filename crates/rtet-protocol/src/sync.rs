//! A lock helper every part uses. It lives here because every crate of the
//! workspace depends on this one; it is not part of the wire protocol.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, taking the data back from a poisoned one. Callers keep
/// their data valid between statements, so a panic in another thread while
/// it held the lock leaves the data usable, and one failed request must not
/// make every later one fail.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
