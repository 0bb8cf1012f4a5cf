//! What every connector of the workspace shares (docs/design.md, Layout).

pub mod alloc;
pub mod check;
pub mod metadata;
pub mod metrics;
pub mod platform;
pub mod schedule;
pub mod settings;
pub mod telemetry;
