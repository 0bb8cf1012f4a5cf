//! ArcSight ESM: models (lenient decoding), and the Service Layer REST client.
pub mod model;
