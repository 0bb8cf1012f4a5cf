//! arcsight-stream: keeps an ArcSight ESM Active List exactly in sync with the indicators of an
//! OpenCTI live stream (issue 21; docs/design.md, "The stream connector").
//!
//! Data flows one way:
//! live stream (opencti_client::stream) -> stream_core (events, patterns, ledger)
//! -> engine (batched, coalesced Active List writes) -> position saved in the platform.
//! The engine is the only module that knows the order of these steps; `cli` wires it.

pub mod cli;
pub mod engine;
pub mod manifest;
pub mod metadata;
pub mod metrics;
pub mod settings;

/// The crates whose logs are the connector's own (`CONNECTOR_LOG_LEVEL` applies to them).
pub const LOG_TARGETS: &[&str] = &[
    "arcsight_stream",
    "connector_runtime",
    "esm_client",
    "opencti_client",
    "peer_http",
];
