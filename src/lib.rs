//! arcsight-incidents: imports ArcSight ESM cases into OpenCTI.
//!
//! Data flows one way (see `docs/design.md`):
//! settings -> esm (client) -> esm::model -> convert -> stix::Bundle -> delivery -> import (state).
//! The run loop in [`import`] is the only module that knows the order of these steps.

pub mod cli;
pub mod convert;
pub mod delivery;
pub mod esm;
pub mod http;
pub mod import;
pub mod metadata;
pub mod metrics;
pub mod opencti;
pub mod redact;
pub mod settings;
pub mod stix;
pub mod telemetry;
pub mod tls;
mod util;
