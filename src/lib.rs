//! arcsight-incidents: imports ArcSight ESM cases into OpenCTI.
//!
//! Data flows one way (see `docs/design.md`):
//! settings -> esm (client) -> esm::model -> convert -> stix::Bundle -> delivery -> import (state).
//! The run loop in [`import`] is the only module that knows the order of these steps.

pub mod cli;
pub mod convert;
pub mod delivery;
pub mod import;
mod manifest;
pub mod metadata;
pub mod metrics;
pub mod settings;
pub mod stix;

// Shared with the stream connector; re-exported under their former paths.
pub use esm_client as esm;
pub use opencti_client as opencti;
pub use peer_http::{http, redact, tls};
// The runtime's logging, under its former path (settings build its `LogLevel`).
pub use connector_runtime::telemetry;

/// The crates whose logs are the connector's own (`CONNECTOR_LOG_LEVEL` applies to them, every
/// other crate logs at `warn` at most): this one and the workspace crates it runs.
pub(crate) const LOG_TARGETS: &[&str] = &[
    "arcsight_incidents",
    "connector_runtime",
    "esm_client",
    "opencti_client",
    "peer_http",
];
