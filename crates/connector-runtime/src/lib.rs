//! What every connector of the workspace shares (docs/design.md, Layout).

pub mod metadata;
pub mod settings;
