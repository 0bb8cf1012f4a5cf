//! Pure core of the `arcsight-stream` connector: no I/O, no clock, no network.
//! The binary feeds it bytes, event JSON and the current time; it answers with
//! SSE items, decoded events and the Active List changes to make.
pub mod event;
pub mod ledger;
pub mod pattern;
pub mod policy;
pub mod sse;
