//! ArcSight ESM: models (lenient decoding), and the Service Layer REST client.
pub mod client;
pub mod decode;
pub mod error;
pub mod model;
pub mod retry;

pub use client::{EsmClient, EsmConfig, EsmStats, EventsFetch, OpStats};
pub use decode::{ApiDialect, Dialect};
pub use error::{EsmError, TransportKind};
pub use retry::{Jitter, RetryPolicy};
