//! What every connector of the workspace shares (docs/design.md, Layout).

pub mod metrics;
pub mod platform;
pub mod schedule;
pub mod telemetry;
