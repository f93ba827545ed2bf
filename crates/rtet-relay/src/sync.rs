//! Locking shared state.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, also after a panic in another holder: every critical section in
/// the relay leaves its state consistent, so a poisoned lock is still usable,
/// and one panicking task must not take every connection down with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
