//! The SSH side of Gatehouse: the front door that authenticates users, the
//! dialer that logs into targets with short-lived certificates, and the
//! channel proxy between them.
//!
//! **Invariant:** this is the only crate that speaks SSH. Peer input never
//! panics it: `unwrap`, `expect`, `panic!` and indexing are denied outside
//! tests.
//!
//! The entry point is [`run`], which takes an already bound listener so that
//! callers (and tests) choose the address, port 0 included.

mod admission;
mod connection;
mod error;
mod forward;
#[doc(hidden)]
pub mod fuzz;
pub mod keys;
mod lines;
mod metered;
mod proxy;
mod pump;
mod recording;
mod reevaluate;
mod registry;
mod reload;
mod server;
mod shared;
mod sign_in;
pub mod upstream;

pub use error::{Error, Side};
pub use sign_in::NoWay;

/// Locks a mutex whose data stays meaningful after a panic elsewhere (counts,
/// slots, a channel's recording state), instead of poisoning every later
/// caller: the gateway must not panic on a lock.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
pub use server::{Incoming, run, run_with};
