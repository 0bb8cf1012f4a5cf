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
pub mod telemetry;

// Shared with the stream connector; re-exported under their former paths.
pub use esm_client as esm;
pub use opencti_client as opencti;
pub use peer_http::{http, redact, tls};
