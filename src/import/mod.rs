//! The run loop: selection by a ledger of delivered versions, pages, state, works, schedule, shutdown.
//!
//! The only module that knows the order of the steps; each step (ESM client, converter,
//! delivery, platform) knows nothing of the ones after it.

pub mod adapters;
pub mod daemon;
pub(crate) mod ports;
pub mod run;
pub mod state;
mod verify;

#[cfg(test)]
mod tests;

pub use verify::VERIFY_BATCH;
