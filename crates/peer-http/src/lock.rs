//! Small helpers shared by modules that otherwise know nothing of each other.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m` even if a holder panicked. Every mutex in the connector guards plain data
/// (counters, the state, what a ping reports): a poisoned lock only means another thread
/// panicked mid-update, and the data is still usable, so the panic is not spread.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
