//! ArcSight ESM: models (lenient decoding), and the Service Layer REST client, shared by the
//! connectors of the workspace. It knows nothing of STIX nor of the platform.
pub mod client;
pub mod decode;
pub mod error;
pub mod model;
pub mod retry;
mod setting_names;

/// The Active List service, at the path the stream connector names it by.
pub use client::services::active_lists;
pub use client::{EsmClient, EsmConfig, EsmStats, EventsFetch, OpStats};
pub use decode::{ApiDialect, Dialect};
pub use error::{EsmError, TransportKind};
pub use retry::{Jitter, RetryPolicy};
pub use setting_names::SettingNames;

// The shared peer helpers, at the paths the modules use.
use peer_http::{http, redact};
